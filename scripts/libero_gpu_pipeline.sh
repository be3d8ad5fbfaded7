#!/usr/bin/env bash
# The LIBERO-Long backbone pipeline on the GPU machine, after scripts/libero_gpu.sh has set LIBERO up:
#   demos (fresh placements) -> split check -> train backbone -> evaluate the base arm on all 500 fixed
#   init states -> three videos -> ONNX export with parity -> results packed under $WORK/results.
# Every step is resumable: a finished step leaves $WORK/<step>.done and is skipped on a rerun; the demos,
# training and evaluation resume inside the step too (finished demo jobs, the last saved training state,
# finished episodes). Run it in the background (it outlives a device call) and poll its log:
#   setsid nohup bash scripts/libero_gpu_pipeline.sh >/tmp/aura-work/pipeline.log 2>&1 &
# Sizes come from the environment (defaults: the issue's full run; the 2-core smoke test sets tiny ones).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
WORK=${WORK:-/tmp/aura-work}
TASKS=${TASKS:-0-9}
PER_TASK=${PER_TASK:-55}        # demos kept per task (>= 50)
TASK_DEMOS=${TASK_DEMOS:-}      # more for some tasks, e.g. "7-9=90" (aura sim demos --task-demos)
DEMO_ARGS=${DEMO_ARGS:-}        # extra `aura sim demos` options, e.g. "--noise-pos 0.2" (DART)
TRIES_PER_JOB=${TRIES_PER_JOB:-6}  # episodes per demo job (one file each)
WORKERS=${WORKERS:-16}          # env worker processes
TRAIN_S=${TRAIN_S:-420}         # training time limit, seconds (loading included)
TRAIN_ARGS=${TRAIN_ARGS:-}      # extra `aura train backbone` options
EPISODES=${EPISODES:-50}        # fixed init states per task in the evaluation
# base-arm execution: open-loop chunks of 8 (65.0 % vs 50.2 % ensembled on the same 329 episodes,
# docs/libero_vla.md); fresh_features=false runs the network once per chunk - the same actions, 8x less GPU
EVAL_ARGS=${EVAL_ARGS:---backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false}
VIDEO_TASKS=${VIDEO_TASKS-0,4,8} # empty: no videos step (make them on the CPU from the checkpoint)
EXPORT=${EXPORT:-1}             # 0: no ONNX export step (export on the machine that deploys it)
DEVICE=${DEVICE:-cuda}
AURA=${AURA:-aura}
mkdir -p "$WORK/results"
# shellcheck source=scripts/lib/steps.sh
. scripts/lib/steps.sh
echo running >"$WORK/pipeline.status"

evaluate() {
    # shellcheck disable=SC2086
    $AURA eval libero --tasks "$TASKS" --episodes "$EPISODES" --arms base --backbone libero_vla \
        --backbone-arg "checkpoint=$WORK/ckpt" --backbone-arg "device=$DEVICE" --backbone-arg threads=1 \
        --workers "$WORKERS" --out "$WORK/eval" $EVAL_ARGS
}
videos() {
    # shellcheck disable=SC2086
    $AURA eval libero --tasks "$VIDEO_TASKS" --init-states 0 --arms base --backbone libero_vla \
        --backbone-arg "checkpoint=$WORK/ckpt" --backbone-arg "device=$DEVICE" --backbone-arg threads=1 \
        --workers 3 --video 1 --out "$WORK/eval_videos" $EVAL_ARGS
}
export_onnx() {
    local frames
    for frames in "$WORK"/demos/task*_demo.hdf5; do break; done
    $AURA export backbone "$WORK/ckpt" --out "$WORK/libero_vla.onnx" --frames "$frames" \
        --json "$WORK/results/export.json"
}
pack() {
    # what comes back from the machine: at most 8 files of 16 MiB
    cp "$WORK/ckpt/model.safetensors" "$WORK/results/model.safetensors"
    local f files=()
    for f in "$WORK"/ckpt/config.json "$WORK"/ckpt/train.jsonl "$WORK"/eval/summary.json "$WORK"/eval/summary.md \
        "$WORK"/eval/config.json "$WORK"/eval/*.png "$WORK"/eval/episodes*.jsonl "$WORK"/results/demos.json \
        "$WORK"/results/split.json "$WORK"/results/export.json; do
        [ -e "$f" ] && files+=("${f#"$WORK"/}") # train.jsonl is missing when training ran < --log-every steps
    done
    tar -C "$WORK" -cf "$WORK/results/results.tar" "${files[@]}" || return 1
    if [ -d "$WORK/eval_videos/videos" ]; then
        tar -C "$WORK/eval_videos" -cf "$WORK/results/videos.tar" videos || return 1
    fi
    ls -la "$WORK/results"
}

step demos demos_step
step split split_check
step train train_backbone_step
step eval evaluate
[ -n "$VIDEO_TASKS" ] && step videos videos
[ "$EXPORT" = 1 ] && step export export_onnx
step pack pack
echo "done" >"$WORK/pipeline.status"
log "all steps done"
