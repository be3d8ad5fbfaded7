#!/usr/bin/env bash
# Issue 13 on the 2-core CPU, closed loop, with the backbone teacher (`aura sim rollouts --teacher backbone`):
# the same blind-tuned backbone as libero_transient_cpu01b ($X0/ckpt: the shipped backbone of 2026-12-02
# fine-tuned with --blank-instruction 0.5 on the 42 fresh-layout demos of libero_10 tasks 0/1 in /tmp/t01),
# rollouts blind after K = 1 labelled by that backbone with the instruction visible (30 % of the training
# episodes driven by it), AuraMem (linear, mlp) on the rollouts alone, the ablation on held-out rollouts, and
# the closed loop (base / aura / oracle, blind after step 0; the visible arm is cpu01b's eval_visible, the
# same backbone and settings). Results in benchmarks/results/libero_transient_cpu01t (docs/libero.md).
set -uo pipefail
cd /work/main
W=/tmp/t01; X0=/tmp/t01b; X=/tmp/t01t; K=1
mkdir -p $X
EXEC=(--backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false)
BB=(--backbone libero_vla --backbone-arg checkpoint=$X0/ckpt --backbone-arg device=cpu "${EXEC[@]}")
T=(--instruction-steps $K --teacher backbone)
echo "[t $(date +%T)] rollouts"
.venv/bin/aura sim rollouts --tasks 0,1 --per-task ${PER_TASK:-12} "${BB[@]}" "${T[@]}" --beta 0.3 --max-steps 300 \
  --exclude-demos $W/demos/demos.json --workers 2 --out $X/rollouts --quiet | tail -2
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 4 "${BB[@]}" "${T[@]}" --beta 0 --max-steps 300 \
  --placement-base $((2**31 + 5000)) --exclude-demos $W/demos/demos.json --workers 2 --out $X/heldout --quiet | tail -2
echo "[t $(date +%T)] train"
for r in linear mlp; do
  .venv/bin/aura train --data $X/rollouts/rollouts.safetensors --out $X/aura_$r --readout $r \
    --dense-steps 300 --lr 3e-4 --gate-steps 100 --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 --threads 1 \
    --seed 0 --quiet >$X/train_$r.log 2>&1 &
done
wait
echo "[t $(date +%T)] ablation"
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $X/aura_linear \
  --checkpoint $X/aura_mlp --instruction-steps $K --json $X/ablation.json
best=$(.venv/bin/python -c "import json; r=json.load(open('$X/ablation.json'))['rows']; print(min(r, key=lambda k: r[k]['gate']))")
echo "[t $(date +%T)] eval with $best"
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --instruction-steps $K --arms base,aura,oracle "${BB[@]}" \
  --backbone-arg threads=1 --checkpoint $best --workers 2 --out $X/eval 2>&1 | grep -E "^\| |this run" | tail -14
echo "[t $(date +%T)] done"
