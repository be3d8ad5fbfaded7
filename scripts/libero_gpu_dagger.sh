#!/usr/bin/env bash
# One DAgger round for the LIBERO pixel backbone on the GPU machine, after scripts/libero_gpu.sh has set
# LIBERO up (docs/libero_vla.md, "DAgger"):
#   demos:    DEMOS_PER_TASK > 0 records fresh expert demos here (`aura sim demos`, as the backbone's own
#             pipeline): DAgger trains on the aggregate, expert states and the policy's together
#   rollouts: the frozen backbone (ACTOR) drives libero_10 on fresh placements, the scripted expert labels
#             every visited state as a shadow, camera frames kept (`aura sim rollouts --images`); per-task
#             counts weighted towards the tasks it fails (TASK_EPISODES); BETA of the episodes are the
#             expert's own
#   train:    `aura train backbone` on rollouts + demos (+ DEMOS given): from INIT (fine-tune) or, with
#             INIT empty, from scratch
#   eval:     the base arm on all 500 fixed init states (never trained on), results packed under $WORK/results
# Measured 2026-12-06 (benchmarks/results/libero_vla_dagger1): fine-tuning the shipped checkpoint on 147
# rollouts alone at lr 3e-4 collapsed it from 58 % to 4 % (weights moved 20-54 % of their norm): hence the
# aggregate with demos and a fine-tuning lr 10x lower by default. Measured 2026-12-07
# (benchmarks/results/libero_vla_dagger2): the aggregate (544 demos + 122 rollouts) fine-tuned at lr 2e-4
# still fell from 60.8 % to 42.2 %: the shadow expert's labels on the policy's states do not fit.
# Every step is resumable ($WORK/<step>.done; rollouts, training and evaluation resume inside the step).
# Run it in the background and poll its log (a device call lasts at most 10 minutes), copying
# $WORK/eval/episodes.jsonl and $WORK/ckpt/{config.json,model.safetensors} into each call's $OUT as they
# appear (a machine given back takes /tmp with it; `aura eval libero` resumes a carried episodes.jsonl):
#   setsid nohup bash scripts/libero_gpu_dagger.sh >/tmp/aura-dagger.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
WORK=${WORK:-/tmp/aura-dagger}
ACTOR=${ACTOR:-checkpoints/libero-vla} # the backbone that drives the rollouts
INIT=${INIT-$ACTOR}                    # fine-tuned from; empty: train from scratch on the aggregate
TASKS=${TASKS:-0-9}
PER_TASK=${PER_TASK:-6}
# weighted by the shipped backbone's open-loop failures (benchmarks/results/libero_vla_open_loop):
# tasks 7-9 solve 26-28 %, 0/3/5 56-60 %, 1/2/4 68-76 %, 6 90 %
TASK_EPISODES=${TASK_EPISODES-7-9=30 0,3,5=12 6=3}
BETA=${BETA:-0.2}                      # per-episode probability that the expert drives
DEMOS=${DEMOS:-}                       # optional demo directory trained on together with the rollouts
DEMOS_PER_TASK=${DEMOS_PER_TASK:-0}    # > 0: record that many fresh demos per task here and train on them
WORKERS=${WORKERS:-15}
TRAIN_S=${TRAIN_S:-150}                # training time limit, seconds (loading included)
if [ -n "$INIT" ]; then # fine-tuning: 10x below the 3e-4 that collapsed the first round
    TRAIN_ARGS=${TRAIN_ARGS:---lr 3e-5 --warmup 100}
else # from scratch: the first training's settings
    TRAIN_ARGS=${TRAIN_ARGS:---lr 6e-4 --warmup 300}
fi
EPISODES=${EPISODES:-50}               # fixed init states per task in the evaluation
# the deployed execution: open-loop chunks of 8, one network call per chunk (the same actions as with
# fresh features; docs/libero_vla.md); rollouts act the same way, so they visit the states the eval will
EXEC_ARGS=${EXEC_ARGS:---backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false}
DEVICE=${DEVICE:-cuda}
AURA=${AURA:-aura}
mkdir -p "$WORK/results"
# shellcheck source=scripts/lib/steps.sh
. scripts/lib/steps.sh
echo running >"$WORK/pipeline.status"

demos() { record_demos "$WORK/demos" "$DEMOS_PER_TASK" 6; }
rollouts() {
    local overrides=() item
    for item in $TASK_EPISODES; do overrides+=(--task-episodes "$item"); done
    # shellcheck disable=SC2086
    $AURA sim rollouts --tasks "$TASKS" --per-task "$PER_TASK" "${overrides[@]}" --images --beta "$BETA" \
        --checkpoint "$ACTOR" --backbone-arg "device=$DEVICE" $EXEC_ARGS --workers "$WORKERS" \
        --out "$WORK/rollouts" --quiet
    local rc=$?
    cp "$WORK/rollouts/rollouts.json" "$WORK/results/rollouts.json" 2>/dev/null
    [ "$rc" -eq 0 ] || [ -s "$WORK/rollouts/rollouts.safetensors" ] # a few lost episodes do not stop it
}
train() {
    local resume=() init=() data=("$WORK/rollouts/episodes")
    [ -e "$WORK/ckpt/config.json" ] && resume=(--resume)
    [ -n "$INIT" ] && init=(--init "$INIT")
    [ -n "$DEMOS" ] && data+=("$DEMOS")
    [ "$DEMOS_PER_TASK" -gt 0 ] && data+=("$WORK/demos")
    # shellcheck disable=SC2086
    $AURA train backbone --demos "${data[@]}" "${init[@]}" --out "$WORK/ckpt" --device "$DEVICE" \
        --time-limit "$TRAIN_S" --fit-to-time --no-progress "${resume[@]}" $TRAIN_ARGS
}
evaluate() {
    # shellcheck disable=SC2086
    $AURA eval libero --tasks "$TASKS" --episodes "$EPISODES" --arms base --backbone libero_vla \
        --backbone-arg "checkpoint=$WORK/ckpt" --backbone-arg "device=$DEVICE" --backbone-arg threads=1 \
        --workers "$WORKERS" --out "$WORK/eval" $EXEC_ARGS
}
pack() {
    cp "$WORK/ckpt/model.safetensors" "$WORK/results/model.safetensors"
    local f files=()
    for f in "$WORK"/ckpt/config.json "$WORK"/ckpt/train.jsonl "$WORK"/eval/summary.json "$WORK"/eval/summary.md \
        "$WORK"/eval/config.json "$WORK"/eval/*.png "$WORK"/eval/episodes*.jsonl "$WORK"/results/rollouts.json \
        "$WORK"/demos/demos.json; do
        [ -e "$f" ] && files+=("${f#"$WORK"/}")
    done
    tar -C "$WORK" -cf "$WORK/results/results.tar" "${files[@]}" || return 1
    ls -la "$WORK/results"
}

[ "$DEMOS_PER_TASK" -gt 0 ] && step demos demos
step rollouts rollouts
step train train
step eval evaluate
step pack pack
echo "done" >"$WORK/pipeline.status"
log "all steps done"
