#!/usr/bin/env bash
# Issue 13 on the 2-core CPU: cpu01u's data (its fine-tuned backbone in /tmp/t01u/ckpt and the 24 + 8 blind
# rollouts, K = 1, labelled by the same backbone with the instruction visible; make them with
# benchmarks/results/libero_transient_cpu01u/run.sh) through AuraMem's held recipe: dense 300, then 300 steps
# written at t < 1 only (--held-steps), then the gate alone for 200 steps starting undecided (--gate-only);
# linear and mlp read-outs, the ablation on the 8 held-out rollouts, and 4 init states per task closed loop
# (base / aura / oracle blind after step 0) with each read-out.
set -uo pipefail
cd /work/main
X=/tmp/t01u; H=/tmp/h13; K=1
D=benchmarks/results/libero_transient_cpu01h
mkdir -p $H
EXEC=(--backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false)
BB=(--backbone libero_vla --backbone-arg checkpoint=$X/ckpt --backbone-arg device=cpu "${EXEC[@]}")
for r in linear mlp; do
  out=$H/aura_held; [ $r = mlp ] && out=$H/aura_held_mlp
  .venv/bin/aura train --data $X/rollouts/rollouts.safetensors --out $out --readout $r --dense-steps 300 \
    --held-steps 300 --gate-only --lr 3e-4 --gate-steps 200 --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 \
    --threads 2 --seed 0 --quiet | tail -1
done
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $H/aura_held \
  --checkpoint $H/aura_held_mlp --instruction-steps $K --json $D/ablation.json
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --instruction-steps $K --arms base,aura,oracle "${BB[@]}" \
  --backbone-arg threads=1 --checkpoint $H/aura_held --workers 2 --out $H/eval 2>&1 | grep -E "^\| " | tail -9
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --instruction-steps $K --arms aura,oracle "${BB[@]}" \
  --backbone-arg threads=1 --checkpoint $H/aura_held_mlp --workers 2 --out $H/eval_mlp 2>&1 | grep -E "^\| " | tail -6
# More data: 48 more blind rollouts (24 per task, half of them driven by the visible teacher, placements of
# their own), then the mlp held recipe on all 72 training rollouts, the ablation and the closed loop again.
W=/tmp/t01
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 24 "${BB[@]}" --instruction-steps $K --teacher backbone --beta 0.5 \
  --max-steps 300 --placement-base $((2**31 + 1000)) --exclude-demos $W/demos/demos.json --workers 2 \
  --out $H/rollouts2 --quiet | tail -1
cp $H/rollouts2/rollouts.json $D/rollouts2/rollouts.json
.venv/bin/aura train --data $X/rollouts/rollouts.safetensors --data $H/rollouts2/rollouts.safetensors \
  --out $H/aura_held_mlp72 --readout mlp --dense-steps 300 --held-steps 300 --gate-only --lr 3e-4 --gate-steps 200 \
  --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 --threads 2 --seed 0 --quiet | tail -1
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $H/aura_held_mlp72 \
  --instruction-steps $K --json $D/ablation_72.json
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --instruction-steps $K --arms aura,oracle "${BB[@]}" \
  --backbone-arg threads=1 --checkpoint $H/aura_held_mlp72 --workers 2 --out $H/eval_mlp72 2>&1 | grep -E "^\| " | tail -6
# Init states 4-7 as well: base / aura / oracle blind after step 0, and the base with the instruction visible.
.venv/bin/aura eval libero --tasks 0,1 --init-states 4-7 --instruction-steps $K --arms base,aura,oracle "${BB[@]}" \
  --backbone-arg threads=1 --checkpoint $H/aura_held_mlp72 --workers 2 --out $H/eval_mlp72b 2>&1 | grep -E "^\| " | tail -9
.venv/bin/aura eval libero --tasks 0,1 --init-states 4-7 --arms base "${BB[@]}" --backbone-arg threads=1 --workers 2 \
  --out $H/eval_visible_b 2>&1 | grep -E "^\| " | tail -3
# Where the correction falls short: task 0's held-out rollouts, per step window.
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $H/aura_held_mlp72 \
  --instruction-steps $K --task 0 --windows 8-40,40-100,100-200,200-300 --json $D/ablation_72_task0.json
