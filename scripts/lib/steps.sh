# shellcheck shell=bash
# Resumable pipeline steps, sourced by scripts/libero_gpu_pipeline.sh, libero_gpu_dagger.sh and libero_panel.sh.
# Needs WORK set. `step NAME COMMAND...` runs COMMAND once: success leaves $WORK/NAME.done (holding the
# seconds it took) and a rerun skips it; a failure is logged, written to $WORK/pipeline.status and stops
# the pipeline (exit 1).
log() { echo "[pipeline $(date +%H:%M:%S)] $*"; }
step() {
    local name=$1
    shift
    if [ -e "$WORK/$name.done" ]; then
        log "$name: done before, skipped"
        return 0
    fi
    log "$name: start"
    local t0=$SECONDS
    if "$@"; then
        echo "$((SECONDS - t0))" >"$WORK/$name.done"
        log "$name: done in $((SECONDS - t0)) s"
    else
        log "$name: FAILED (exit $?) after $((SECONDS - t0)) s"
        echo "failed $name" >"$WORK/pipeline.status"
        exit 1
    fi
}

# record_demos OUT PER_TASK TRIES: fresh-placement expert demos of $TASKS at the backbone's 128 px on
# $WORKERS processes, as the GPU pipelines record them; $TASK_DEMOS (optional, e.g. "7-9=90 4=70") gives
# some tasks more. Exit 1 of `aura sim demos` (a task kept fewer demos than asked) is not a failure: train
# on what there is, OUT/demos.json says so. $DEMO_SEED (default 0, the backbone's demos) is the base of the
# placement seeds: another value records layouts the backbone never trained on. $DEMO_ARGS adds
# `aura sim demos` options, e.g. "--noise-pos 0.2 --noise-rot 0.1" (DART demos).
record_demos() {
    local overrides=() item
    for item in ${TASK_DEMOS:-}; do overrides+=(--task-demos "$item"); done
    # shellcheck disable=SC2086
    $AURA sim demos --tasks "$TASKS" --per-task "$2" "${overrides[@]}" --tries-per-job "$3" \
        --seed "${DEMO_SEED:-0}" --workers "$WORKERS" --placements fresh --first-pass cameras --image-size 128 \
        --out "$1" ${DEMO_ARGS:-}
    [ $? -le 1 ]
}

# split_check: no demo of $WORK/demos on (or within 1 mm of) a fixed init state of its scene's tasks; the
# numbers go to $WORK/results/split.json. $PYTHON (default python3) is the interpreter with this repo's code.
split_check() {
    "${PYTHON:-python3}" - "$WORK/demos" "$WORK/results/split.json" <<'EOF'
import json, sys
from pathlib import Path
from sim.libero.demos import verify_split
files = sorted(Path(sys.argv[1]).glob("task*_demo.hdf5"))
rows = {f.name: verify_split(f) for f in files}  # raises, naming the file, on a demo from the evaluation set
near = [r["min_nearest_mm"] for r in rows.values() if r["min_nearest_mm"] is not None]
doc = dict(files=len(rows), demos=sum(r["demos"] for r in rows.values()), min_nearest_mm=min(near), per_file=rows)
Path(sys.argv[2]).write_text(json.dumps(doc, indent=1))
print(f"split: {doc['demos']} demos in {doc['files']} files, none on a fixed init state; nearest layout "
      f"{doc['min_nearest_mm']:.1f} mm from one")
EOF
}

# demos_step: record_demos into $WORK/demos ($PER_TASK, $TRIES_PER_JOB), demos.json copied to the results
demos_step() {
    record_demos "$WORK/demos" "$PER_TASK" "$TRIES_PER_JOB"
    local rc=$?
    cp "$WORK/demos/demos.json" "$WORK/results/demos.json"
    return $rc
}

# train_backbone_step: `aura train backbone` on $WORK/demos into $WORK/ckpt for $TRAIN_S seconds (loading
# included; --fit-to-time), resuming a checkpoint there; $TRAIN_ARGS adds options
train_backbone_step() {
    local resume=()
    [ -e "$WORK/ckpt/config.json" ] && resume=(--resume)
    # shellcheck disable=SC2086
    $AURA train backbone --demos "$WORK/demos" --out "$WORK/ckpt" --device "$DEVICE" --time-limit "$TRAIN_S" \
        --fit-to-time --no-progress "${resume[@]}" $TRAIN_ARGS
}
