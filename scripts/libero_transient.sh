#!/usr/bin/env bash
# Issue 13, LIBERO-Long with a transient instruction, on the GPU machine after scripts/libero_gpu.sh has set
# LIBERO up (docs/libero.md, "A transient instruction"): the living_room_scene2 group (five pick-X-into-the-
# basket tasks in one scene, chance 1/5), the instruction shown at steps t < K only.
#   demos     scripted-expert demos of the group on fresh placements (never the fixed init states)
#   split     no demo on (or within 1 mm of) a fixed init state of the scene's tasks
#   backbone  the libero_vla pixel backbone trained on them, the instruction always visible
#   features  its features / base actions on the demos with the instruction at t < K only (aura sim features
#             --instruction-steps K): what the deployed policy gets; the targets are the demos' actions
#             (skipped with TEACHER=backbone and ROLLOUTS > 0: then they train nothing)
#   rollouts  the backbone drives the group with the instruction at t < K only (aura sim rollouts
#             --instruction-steps K): a blind policy's own states, where the goal shows in nothing but the
#             first K steps (in demos the arm's motion reveals it, which a read-out learns without memory).
#             TEACHER labels them: "expert", the shadow expert (BETA of the episodes it drives; on the 2-core
#             CPU memory then carried the goal offline but its corrections broke the closed loop), or
#             "backbone", the same backbone with the instruction visible (BETA of the episodes it drives;
#             sim/libero/labels.py); docs/libero.md "Closed loop on the CPU". ROLLOUTS=0: demos only
#   context   (OUTPUT=context, the default) the rollouts' (and features') targets turned into the backbone's
#             context (aura sim context-data: base c_t = l(instruction at t), target l(instruction)): AuraMem
#             restores the instruction and the frozen backbone acts on it (docs/layer.md, "What the read-out
#             outputs"); OUTPUT=action: the paper's additive action correction (no gain closed loop on the CPU)
#   train     AuraMem (READOUT read-out; auto: both, the better on held-out sequences) and the KV-cache arm
#             on the demo features + the rollouts (TEACHER=backbone: the rollouts alone, whose labels are
#             the visible policy's, not the demos' expert actions), in parallel, make_libero_aura.sh's flags
#   check     the arms' held-out action error next to the blind base action's (results/check.json)
#   models    results/models.tar: the backbone, AuraMem and KV checkpoints (~12 MB), so that a session whose
#             device time runs out in the evaluations can hand them to the next one (below)
#   ablation  HELDOUT more rollouts per task (the backbone always drives), held out from all training: each
#             AuraMem checkpoint's action error there with its gate, no writes, writes at t < K only, and
#             every step (benchmarks/memory_ablation.py -> results/ablation.json): memory, or a read-out of z_t?
#   eval      base, always, aura, random, periodic (at AURA's budget), kv, oracle (writes exactly at t < K)
#             with --instruction-steps K on init states 0..EPISODES-1 of each task
#   visible   the reference: the base arm with the instruction always visible, same episodes
#   pack      results.tar (+ the backbone's weights) under $WORK/results: what a device call brings back
# Every step is resumable: a finished step leaves $WORK/<step>.done and is skipped on a rerun; the demos,
# the backbone training and both evaluations resume inside the step too. Run it in the background (it
# outlives a device call) and poll its log:
#   WORK=/tmp/aura-transient setsid nohup bash scripts/libero_transient.sh >/tmp/aura-transient.log 2>&1 &
# Over two sessions: bring results/models.tar back (scripts/gpu_poll.sh mirrors it as soon as it exists); in
# the next session, before starting the pipeline there, unpack it into a fresh WORK and mark the steps before
# the evaluations done, e.g.
#   mkdir -p $WORK && tar -xf models.tar -C $WORK && for s in demos split backbone features rollouts context \
#       train check models ablation; do echo 0 >$WORK/$s.done; done
# (results/demos.json, split.json and check.json come back from the first session next to it).
# Sizes come from the environment; the defaults fit one 30-minute session on a 16-core H100/H200 machine
# (~3 min demos, 5 min backbone, ~1 min rollouts, ~3 min features + training, ~8 min evaluations; estimated,
# not measured). The 2-core CPU smoke run:
#   WORK=/tmp/aura-transient-smoke PER_TASK=1 TRIES_PER_JOB=1 WORKERS=2 DEVICE=cpu TRAIN_S=30 ROLLOUTS=1 HELDOUT=1 \
#       TRAIN_ARGS="--batch 16 --threads 2" DENSE_STEPS=2 HELD_STEPS=2 GATE_STEPS=2 KV_STEPS=2 TRAIN_THREADS=1 \
#       EPISODES=1 MAX_STEPS=20 AURA=.venv/bin/aura PYTHON=.venv/bin/python bash scripts/libero_transient.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
WORK=${WORK:-/tmp/aura-transient}
TASKS=${TASKS:-living_room_scene2}
K=${K:-1}                       # instruction steps: the policy sees the instruction at steps t < K
PER_TASK=${PER_TASK:-100}       # demos kept per task (the expert needs ~100-170 steps per demo here)
TASK_DEMOS=${TASK_DEMOS:-}      # more for some tasks, e.g. "153=120" (aura sim demos --task-demos)
TRIES_PER_JOB=${TRIES_PER_JOB:-6}  # episodes per demo job (one file each)
WORKERS=${WORKERS:-15}          # env worker processes
TRAIN_S=${TRAIN_S:-300}         # backbone training time limit, seconds (loading included)
# extra `aura train backbone` options; by default a fifth of the samples without the instruction, so the
# blind policy (after step K) still acts: trained only with one, the shipped libero_10 backbone given ""
# failed every episode of libero_10 tasks 0/1 (0/28, every arm) that it solved 3 of 4 times with it
TRAIN_ARGS=${TRAIN_ARGS---blank-instruction 0.2}
# The backbone's execution, the same in the features and both evaluations: open-loop chunks of 8, the network
# once per chunk (z_t held between plans), as the other GPU scripts deploy it (docs/libero_vla.md); with
# K < 8 the first plan's features, made while the instruction was visible, are held until step 8.
# fresh_features=true runs the network every step (this step's z_t; the evaluations then outgrow 8 minutes).
EXEC_ARGS=${EXEC_ARGS:---backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false}
OUTPUT=${OUTPUT:-context}       # what AuraMem outputs: context (restores the backbone's instruction) | action
READOUT=${READOUT:-}            # AuraMem's read-out (unset: linear with OUTPUT=context, else auto): linear (the paper's a_base + W_c r), mlp (aura/readout.py),
                                # or auto: train both, keep the lower held-out action error (readout.json). On
                                # demos alone auto picked a memory-free mlp; with the blind rollouts in the data
                                # the mlp's gain comes from memory too (CPU check, docs/libero.md), and the
                                # ablation step reports both read-outs with and without writes
ROLLOUTS=${ROLLOUTS:-30}        # rollouts per task for AuraMem's data, <= 5000 (0: the demo features only)
BETA=${BETA:-0.3}               # the fraction of those episodes the teacher drives (DAgger's beta, per episode)
# who labels the rollouts (aura sim rollouts --teacher): backbone (the visible policy; its corrections kept
# the closed loop working on the CPU where the expert's broke it: docs/libero.md) | expert
TEACHER=${TEACHER:-backbone}
HELDOUT=${HELDOUT:-5}           # held-out rollouts per task for the memory ablation (0: no ablation step)
DENSE_STEPS=${DENSE_STEPS:-600} # AuraMem phase 1 (every step written)
# then writes at t < K only (unset: 3000 with OUTPUT=context at lr 1e-3, the CPU check's, else 600): the read-out learns to read the instruction step's
HELD_STEPS=${HELD_STEPS:-}      # write, held (aura train --held-steps; 0: none, the earlier recipe)
AURA_LR=${AURA_LR:-}            # AuraMem's phase-1 / held lr (unset: 1e-3 with OUTPUT=context, else 3e-4)
# AuraMem phase 2 (the gate in the loop; after a held phase the gate alone), its lr and write cost. Unset with
# OUTPUT=context: 400 steps at 3e-3, sparsity 0.1 - with the straight-through estimator a kept write's own
# gradient vanishes once the read-out is fitted to it, so the sparsity term alone pulls p_0 down to tau:
# at 1.0 the CPU check's p_0 was >= 0.532 on held-out rollouts and fell under tau on 3 of 8 evaluation
# episodes of task 0; at 0.1 it is >= 0.594, later steps <= 0.399, one write per episode; at 0 it is
# >= 0.895 but later writes appear (1.88 per sequence). Else 200 steps at 1e-3, sparsity 1.0 (the panel's)
GATE_STEPS=${GATE_STEPS:-}
GATE_LR=${GATE_LR:-}
SPARSITY=${SPARSITY:-}
# the gate phase's threshold drawn from tau + U(-M, M) per step (aura train --gate-margin; unset: 0.2 with
# OUTPUT=context, else 0): on the CPU check the one write's p_0 went from >= 0.594 to >= 0.740 on held-out
# rollouts and it wrote once in each of task 0's 8 evaluation episodes, where at margin 0 it missed the
# t = 0 write in 3 and wrote 43-45 times in two others (docs/layer.md, "The gate's margin")
GATE_MARGIN=${GATE_MARGIN:-}
# the KV arm (unset: 3000 steps at 3e-3 with OUTPUT=context, where 600 at 1e-3 got halfway on the
# CPU check, `aura train`'s validation mse 0.073 vs the blind 0.148, and 3000 at 3e-3 reached 0.0022; else 600 at
# scripts/make_libero_aura.sh's 3e-5 - the panel trained it at 3e-4)
KV_STEPS=${KV_STEPS:-}
KV_LR=${KV_LR:-}
BATCH=${BATCH:-8}               # sequences per step, both arms
BUDGET=${BUDGET:-0.02}          # AURA's target write rate per step (~3-4 writes in a 150-200-step episode)
TRAIN_THREADS=${TRAIN_THREADS:-5}  # torch threads of each training (AuraMem x2 with auto, KV: in parallel)
EPISODES=${EPISODES:-20}        # fixed init states 0..N-1 per task in both evaluations (issue 13: >= 20)
MAX_STEPS=${MAX_STEPS:-300}     # policy steps per episode (the expert: 98-169 mean per task, 2026-12-06)
DEVICE=${DEVICE:-cuda}
AURA=${AURA:-aura}
PYTHON=${PYTHON:-python3}       # the interpreter with this repo's packages (split and check steps)
case "$OUTPUT" in
context) READOUT=${READOUT:-linear} HELD_STEPS=${HELD_STEPS:-3000} AURA_LR=${AURA_LR:-1e-3} \
    GATE_STEPS=${GATE_STEPS:-400} GATE_LR=${GATE_LR:-3e-3} SPARSITY=${SPARSITY:-0.1} GATE_MARGIN=${GATE_MARGIN:-0.2} \
    KV_STEPS=${KV_STEPS:-3000} KV_LR=${KV_LR:-3e-3} ;;
action) READOUT=${READOUT:-auto} HELD_STEPS=${HELD_STEPS:-600} AURA_LR=${AURA_LR:-3e-4} \
    GATE_STEPS=${GATE_STEPS:-200} GATE_LR=${GATE_LR:-1e-3} SPARSITY=${SPARSITY:-1.0} GATE_MARGIN=${GATE_MARGIN:-0} \
    KV_STEPS=${KV_STEPS:-600} KV_LR=${KV_LR:-3e-5} ;;
*)
    echo "OUTPUT=$OUTPUT: context or action" >&2
    exit 2
    ;;
esac
if [ "$ROLLOUTS" -gt 5000 ]; then # the held-out rollouts' placement seeds start 5000 above the training ones'
    echo "ROLLOUTS=$ROLLOUTS: at most 5000 (the ablation's held-out placements would repeat training ones)" >&2
    exit 2
fi
if [ "$HELDOUT" -gt 0 ] && [ ! -f benchmarks/memory_ablation.py ]; then
    # fail before the GPU work, not after it: a snapshot made without it (docs/libero_gpu.md) lacks it
    echo "HELDOUT=$HELDOUT needs benchmarks/memory_ablation.py in this tree ($PWD); add it or set HELDOUT=0" >&2
    exit 2
fi
mkdir -p "$WORK/results"
# shellcheck source=scripts/lib/steps.sh
. scripts/lib/steps.sh
echo running >"$WORK/pipeline.status"
# shellcheck disable=SC2206
BB=(--backbone libero_vla --backbone-arg "checkpoint=$WORK/ckpt" --backbone-arg "device=$DEVICE" $EXEC_ARGS)

features() {
    $AURA sim features --demos "$WORK/demos" "${BB[@]}" --instruction-steps "$K" \
        --out "$WORK/features.safetensors" --quiet
}
blind_rollouts() { # OUT PER_TASK BETA [aura sim rollouts options]: the backbone drives, blind from step K
    local out=$1 n=$2 beta=$3
    shift 3
    $AURA sim rollouts --tasks "$TASKS" --per-task "$n" "${BB[@]}" --instruction-steps "$K" --beta "$beta" \
        --max-steps "$MAX_STEPS" --exclude-demos "$WORK/demos/demos.json" --workers "$WORKERS" --out "$out" \
        --teacher "$TEACHER" --quiet "$@"
    [ $? -le 1 ] # 1: an episode failed for good; go on with the rest (rollouts.json says which)
}
rollouts() { blind_rollouts "$WORK/rollouts" "$ROLLOUTS" "$BETA"; }
# the arms' data: the demo features and the rollouts, or the rollouts alone when the backbone labels them
# (the visible policy's actions; the demos' targets are the expert's, another target)
USE_FEATURES=1
[ "$ROLLOUTS" -gt 0 ] && [ "$TEACHER" = backbone ] && USE_FEATURES=0
DATA=() SOURCES=()
[ "$USE_FEATURES" = 1 ] && SOURCES+=("$WORK/features.safetensors")
[ "$ROLLOUTS" -gt 0 ] && SOURCES+=("$WORK/rollouts/rollouts.safetensors")
ctx() { echo "${1%.safetensors}_context.safetensors"; } # the context-target twin of a sequence file
for f in "${SOURCES[@]}"; do DATA+=(--data "$f"); done
MEM_DATA=("${DATA[@]}") # both arms' data: with OUTPUT=context the context targets (sim.libero.context)
if [ "$OUTPUT" = context ]; then
    MEM_DATA=()
    for f in "${SOURCES[@]}"; do MEM_DATA+=(--data "$(ctx "$f")"); done
fi
context() {
    local f
    for f in "$@"; do $AURA sim context-data --data "$f" --out "$(ctx "$f")" || return 1; done
}
train_aura() { # READOUT_NAME OUT
    local held=()
    [ "$HELD_STEPS" -gt 0 ] && held=(--held-steps "$HELD_STEPS" --held-k "$K" --gate-only)
    $AURA train "${MEM_DATA[@]}" --out "$2" --readout "$1" "${held[@]}" \
        --dense-steps "$DENSE_STEPS" --lr "$AURA_LR" --gate-steps "$GATE_STEPS" --gate-lr "$GATE_LR" --batch "$BATCH" \
        --sparsity "$SPARSITY" --gate-margin "$GATE_MARGIN" --budget "$BUDGET" --threads "$TRAIN_THREADS" --seed 0 --quiet
}
train_kv() {
    $AURA train --arm kv "${MEM_DATA[@]}" --out "$WORK/kv" --kv-steps "$KV_STEPS" \
        --lr "$KV_LR" --batch "$BATCH" --threads "$TRAIN_THREADS" --seed 0 --quiet
}
train() {
    local readouts=("$READOUT") pids=() r rc=0
    [ "$READOUT" = auto ] && readouts=(linear mlp)
    for r in "${readouts[@]}"; do
        train_aura "$r" "$WORK/aura_$r" >"$WORK/train_aura_$r.log" 2>&1 &
        pids+=($!)
    done
    train_kv >"$WORK/train_kv.log" 2>&1 || rc=1
    for r in "${pids[@]}"; do wait "$r" || rc=1; done
    tail -n 3 "$WORK"/train_aura_*.log "$WORK/train_kv.log"
    [ "$rc" = 0 ] || return 1
    # auto: the read-out with the lower held-out action error (held-out training demos, never the
    # evaluation's init states) becomes the aura arm
    "$PYTHON" - "$WORK" "${readouts[@]}" <<'EOF'
import json, shutil, sys
from pathlib import Path
work, names = Path(sys.argv[1]), sys.argv[2:]
err = {n: json.load(open(work / f"aura_{n}" / "config.json"))["meta"]["training"].get("validation", {})
       .get("action_loss") for n in names}
if None in err.values():  # too few sequences for a held-out split (aura train --val-frac): the paper's form
    best = "linear" if "linear" in names else names[0]
    print(f"no held-out sequences to choose a read-out on; using {best}")
else:
    best = min(err, key=err.get)
shutil.rmtree(work / "aura", ignore_errors=True)
shutil.copytree(work / f"aura_{best}", work / "aura")
(work / "readout.json").write_text(json.dumps(dict(held_out_action_loss=err, chosen=best), indent=1))
print(f"aura arm: read-out {best} (held-out action error {err})")
EOF
}
check() {
    # recorded, not a gate: with the instruction gone the blind base action is the bar to clear
    "$PYTHON" - "$WORK/aura/config.json" "$WORK/kv/config.json" "$WORK/results/check.json" <<'EOF'
import json, sys
doc = {}
for arm, path in (("aura", sys.argv[1]), ("kv", sys.argv[2])):
    v = json.load(open(path))["meta"]["training"].get("validation", {})
    doc[arm] = v
    print(f"{arm}: held-out action error {v.get('action_loss')} (blind base action: {v.get('base_action_loss')}), "
          f"writes per sequence {v.get('writes_per_sequence')}")
json.dump(doc, open(sys.argv[3], "w"), indent=1)
EOF
}
ablation() {
    # placement seeds base + task * 10007 + k: base + 5000 stays clear of the training rollouts' k < ROLLOUTS
    local held="$WORK/rollouts_heldout/rollouts.safetensors" ckpts=() d
    [ -f "$held" ] || blind_rollouts "$WORK/rollouts_heldout" "$HELDOUT" 0 --placement-base $((2 ** 31 + 5000)) ||
        return 1
    if [ "$OUTPUT" = context ]; then
        context "$held" || return 1
        held=$(ctx "$held")
    fi
    for d in "$WORK"/aura_*/; do ckpts+=(--checkpoint "${d%/}"); done
    "$PYTHON" benchmarks/memory_ablation.py --data "$held" "${ckpts[@]}" \
        --instruction-steps "$K" --json "$WORK/results/ablation.json"
}
models() {
    tar -C "$WORK" -cf "$WORK/results/models.tar" ckpt/config.json ckpt/model.safetensors aura kv
}
evaluate() {
    $AURA eval libero --tasks "$TASKS" --instruction-steps "$K" --arms base,always,aura,random,periodic,kv,oracle \
        --episodes "$EPISODES" "${BB[@]}" --backbone-arg threads=1 --checkpoint "$WORK/aura" \
        --kv-checkpoint "$WORK/kv" --max-steps "$MAX_STEPS" --workers "$WORKERS" --out "$WORK/eval"
}
visible() {
    $AURA eval libero --tasks "$TASKS" --arms base --episodes "$EPISODES" "${BB[@]}" --backbone-arg threads=1 \
        --max-steps "$MAX_STEPS" --workers "$WORKERS" --out "$WORK/eval_visible"
}
pack() {
    # what comes back from the machine: results.tar, the backbone's weights, demos.json, split.json, check.json
    cp "$WORK/ckpt/model.safetensors" "$WORK/results/model.safetensors"
    local f files=()
    for f in "$WORK"/ckpt/config.json "$WORK"/ckpt/train.jsonl "$WORK"/features.json "$WORK"/rollouts/rollouts.json \
        "$WORK"/features_context.json "$WORK"/rollouts/rollouts_context.json \
        "$WORK"/aura/model.safetensors "$WORK"/aura/config.json "$WORK"/aura/train.jsonl \
        "$WORK"/kv/model.safetensors "$WORK"/kv/config.json "$WORK"/kv/train.jsonl \
        "$WORK"/train_aura_*.log "$WORK"/train_kv.log "$WORK"/readout.json \
        "$WORK"/eval/summary.json "$WORK"/eval/summary.md "$WORK"/eval/config.json "$WORK"/eval/*.png \
        "$WORK"/eval/episodes*.jsonl "$WORK"/eval_visible/summary.json "$WORK"/eval_visible/summary.md \
        "$WORK"/eval_visible/config.json "$WORK"/eval_visible/*.png "$WORK"/eval_visible/episodes*.jsonl \
        "$WORK"/results/demos.json "$WORK"/results/split.json "$WORK"/results/check.json "$WORK"/results/ablation.json \
        "$WORK"/*.done; do
        [ -e "$f" ] && files+=("${f#"$WORK"/}") # a train.jsonl is missing when training ran < its log interval
    done
    tar -C "$WORK" -cf "$WORK/results/results.tar" "${files[@]}" || return 1
    ls -la "$WORK/results"
}

step demos demos_step
step split split_check
step backbone train_backbone_step
[ "$USE_FEATURES" = 1 ] && step features features
[ "$ROLLOUTS" -gt 0 ] && step rollouts rollouts
[ "$OUTPUT" = context ] && step context context "${SOURCES[@]}"
step train train
step check check
step models models
[ "$HELDOUT" -gt 0 ] && step ablation ablation
step eval evaluate
step visible visible
step pack pack
echo "done" >"$WORK/pipeline.status"
log "all steps done"
