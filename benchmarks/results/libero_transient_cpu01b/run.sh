#!/usr/bin/env bash
# Issue 13 on the 2-core CPU, closed loop: the shipped backbone fine-tuned to act without the instruction
# (--blank-instruction 0.5 on the 42 fresh-layout demos of libero_10 tasks 0/1 from /tmp/t01), then the
# transient pipeline's data (demo features + blind rollouts, K = 1), AuraMem (linear and mlp), the ablation
# on held-out rollouts, and a small closed-loop evaluation (base / aura / oracle blind after step 0; base with
# the instruction visible). Needs /tmp/t01 (docs/libero.md, "Measured first, on the 2-core CPU"); results in
# benchmarks/results/libero_transient_cpu01b (docs/libero.md, "Closed loop on the CPU").
set -uo pipefail
cd /work/main
W=/tmp/t01; X=/tmp/t01b; K=1
EXEC=(--backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false)
BB=(--backbone libero_vla --backbone-arg checkpoint=$X/ckpt --backbone-arg device=cpu "${EXEC[@]}")
echo "[x $(date +%T)] fine-tune"
[ -e $X/ckpt/config.json ] || .venv/bin/aura train backbone --demos $W/demos --init checkpoints/libero-vla --out $X/ckpt \
  --blank-instruction 0.5 --steps 4000 --batch 32 --lr 1e-4 --warmup 50 --time-limit 1080 --fit-to-time \
  --device cpu --no-progress 2>&1 | tail -3
echo "[x $(date +%T)] features"
.venv/bin/aura sim features --demos $W/demos "${BB[@]}" --instruction-steps $K --out $X/features.safetensors --quiet | tail -1
echo "[x $(date +%T)] rollouts"
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 10 "${BB[@]}" --instruction-steps $K --beta 0.3 --max-steps 300 \
  --exclude-demos $W/demos/demos.json --workers 2 --out $X/rollouts --quiet | tail -2
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 4 "${BB[@]}" --instruction-steps $K --beta 0 --max-steps 300 \
  --placement-base $((2**31 + 5000)) --exclude-demos $W/demos/demos.json --workers 2 --out $X/heldout --quiet | tail -2
echo "[x $(date +%T)] train"
for r in linear mlp; do
  .venv/bin/aura train --data $X/features.safetensors --data $X/rollouts/rollouts.safetensors --out $X/aura_$r --readout $r \
    --dense-steps 300 --lr 3e-4 --gate-steps 100 --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 --threads 1 \
    --seed 0 --quiet >$X/train_$r.log 2>&1 &
done
wait
echo "[x $(date +%T)] ablation"
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $X/aura_linear \
  --checkpoint $X/aura_mlp --instruction-steps $K --json $X/ablation.json
best=$(.venv/bin/python -c "import json; r=json.load(open('$X/ablation.json'))['rows']; print(min(r, key=lambda k: r[k]['gate']))")
echo "[x $(date +%T)] eval with $best"
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --instruction-steps $K --arms base,aura,oracle "${BB[@]}" \
  --backbone-arg threads=1 --checkpoint $best --workers 2 --out $X/eval 2>&1 | grep -E "^\| |this run" | tail -14
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --arms base "${BB[@]}" --backbone-arg threads=1 --workers 2 \
  --out $X/eval_visible 2>&1 | grep -E "^\| |this run" | tail -6
echo "[x $(date +%T)] done"
