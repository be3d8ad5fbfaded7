#!/usr/bin/env bash
# Issue 13's two-goal group (libero_10 tasks 0 and 1, LIVING_ROOM_SCENE2) on the GPU machine: every arm on
# init states 0-19 of both tasks, the instruction at step 0 only (K = 1), and the visible reference on the
# same episodes. The checkpoints come from the 2-core CPU (nothing here trains):
#   ckpt      cpu01u's backbone (benchmarks/results/libero_transient_cpu01u/run.sh: the shipped libero-vla
#             fine-tuned with --blank-instruction 0.2 on fresh-layout demos of the two tasks)
#   aura_j20  AuraMem restoring the instruction's context, gate trained with --gate-margin 0.2
#   kv2       the KV-cache arm on the same context targets (both: libero_transient_cpu01c/run.sh)
# Run from the repo root after scripts/libero_gpu.sh (docs/libero_gpu.md): `bash
# benchmarks/results/libero_transient_gpu01/run.sh` (the shipped checkpoints: the backbone is
# checkpoints/libero-vla-blind, AuraMem and KV this folder's aura_j20/ and kv2/); WORK gets eval/ and eval_visible/ and pipeline.status (for scripts/gpu_poll.sh). Both
# evaluations resume from their episodes.jsonl.
# What ran (2026-12-07, one H100 machine, 16 cores; 347 s + 79 s): CK=/tmp/h13c holding byte-identical
# copies of those three (cpu01u's backbone /tmp/t01u/ckpt, model.safetensors sha256 ff6c6bb6...a577c, is
# checkpoints/libero-vla-blind), carried in a device call and polled with scripts/gpu_poll.sh; eval/,
# eval_visible/ and pipeline.log are what came back.
set -uo pipefail
# CK: a folder with ckpt/, aura_j20/ and kv2/ (what ran); unset: the shipped copies of the same files
R=benchmarks/results/libero_transient_gpu01
if [ -n "${CK:-}" ]; then BACKBONE=$CK/ckpt AURA_CK=$CK/aura_j20 KV_CK=$CK/kv2
else BACKBONE=checkpoints/libero-vla-blind AURA_CK=$R/aura_j20 KV_CK=$R/kv2; fi
for d in "$BACKBONE" "$AURA_CK" "$KV_CK"; do
    [ -f "$d/model.safetensors" ] || { echo "$d/model.safetensors: missing (run from the repo root, or set CK)" >&2; exit 2; }
done
WORK=${WORK:-/tmp/aura-transient2}
WORKERS=${WORKERS:-15}
DEVICE=${DEVICE:-cuda}
mkdir -p "$WORK"
echo running >"$WORK/pipeline.status"
BB=(--backbone libero_vla --backbone-arg "checkpoint=$BACKBONE" --backbone-arg "device=$DEVICE"
    --backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false
    --backbone-arg threads=1)
aura eval libero --tasks 0,1 --init-states 0-19 --instruction-steps 1 \
    --arms base,always,aura,random,periodic,kv,oracle "${BB[@]}" --checkpoint "$AURA_CK" \
    --kv-checkpoint "$KV_CK" --workers "$WORKERS" --out "$WORK/eval" &&
    aura eval libero --tasks 0,1 --init-states 0-19 --arms base "${BB[@]}" --workers "$WORKERS" \
        --out "$WORK/eval_visible"
rc=$?
[ $rc = 0 ] && echo done >"$WORK/pipeline.status" || echo "failed $rc" >"$WORK/pipeline.status"
tar -C "$WORK" -cf "$WORK/results.tar" --exclude='*.mp4' eval eval_visible 2>/dev/null
exit $rc
