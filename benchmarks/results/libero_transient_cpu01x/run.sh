#!/usr/bin/env bash
# The CPU check of the blind-rollout data for issue 13 (docs/libero.md). Needs /tmp/t01 from the first
# CPU check (its command is in docs/libero.md: demos of libero_10 tasks 0/1, features with K = 1, AuraMem).
set -uo pipefail
cd /work/main
W=/tmp/t01; X=/tmp/t01x
BB=(--backbone libero_vla --checkpoint checkpoints/libero-vla --backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false)
echo "[x $(date +%T)] rollouts train"
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 10 "${BB[@]}" --instruction-steps 1 --beta 0.3 --max-steps 300 \
  --exclude-demos $W/demos/demos.json --workers 2 --out $X/rollouts --quiet | tail -4
echo "[x $(date +%T)] rollouts held-out"
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 4 "${BB[@]}" --instruction-steps 1 --beta 0 --max-steps 300 \
  --placement-base $((2**31 + 5000)) --exclude-demos $W/demos/demos.json --workers 2 --out $X/heldout --quiet | tail -4
echo "[x $(date +%T)] train"
for r in linear mlp; do
  .venv/bin/aura train --data $W/features.safetensors --data $X/rollouts/rollouts.safetensors --out $X/aura_$r --readout $r \
    --dense-steps 300 --lr 3e-4 --gate-steps 100 --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 --threads 1 --seed 0 --quiet >$X/train_$r.log 2>&1 &
done
wait
tail -n 2 $X/train_*.log
echo "[x $(date +%T)] ablation"
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $W/aura_linear --checkpoint $W/aura_mlp \
  --checkpoint $X/aura_linear --checkpoint $X/aura_mlp --instruction-steps 1 --json $X/ablation.json
echo "[x $(date +%T)] done"
