#!/usr/bin/env bash
# Issue 13 on the 2-core CPU, with AuraMem restoring the backbone's context (docs/layer.md, "What the read-out
# outputs"): cpu01u's backbone and rollouts (/tmp/t01u: benchmarks/results/libero_transient_cpu01u/run.sh) and
# cpu01h's 48 more rollouts (/tmp/h13/rollouts2: benchmarks/results/libero_transient_cpu01h/run.sh), turned into
# context targets (aura sim context-data); AuraMem (linear read-out, the held recipe) and the KV arm trained on
# them; the held-out ablation; then tasks 0 and 1, init states 0-7, blind after step 0, every arm, and the
# visible reference on the same episodes.
set -uo pipefail
cd /work/main
X=/tmp/t01u; H=/tmp/h13; C=/tmp/c13; K=1
D=benchmarks/results/libero_transient_cpu01c
mkdir -p $C
for f in $X/rollouts $X/heldout $H/rollouts2; do
  .venv/bin/aura sim context-data --data $f/rollouts.safetensors --out $C/$(basename $(dirname $f))_$(basename $f).safetensors
done
DATA=(--data $C/t01u_rollouts.safetensors --data $C/h13_rollouts2.safetensors)
.venv/bin/aura train "${DATA[@]}" --out $C/aura_lin3 --readout linear --dense-steps 300 --held-steps 3000 --lr 1e-3 \
  --gate-only --gate-steps 200 --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 --threads 2 --seed 0 --quiet | tail -1
# the same with the gate phase at sparsity 0.1, 400 steps, gate lr 3e-3 (p_0 clears tau with a margin)
.venv/bin/aura train "${DATA[@]}" --out $C/aura_lin9 --readout linear --dense-steps 300 --held-steps 3000 --lr 1e-3 \
  --gate-only --gate-steps 400 --gate-lr 3e-3 --batch 8 --sparsity 0.1 --budget 0.02 --threads 1 --seed 0 --quiet | tail -1
# the same with the threshold drawn from tau + U(-0.2, 0.2) while the gate trains (--gate-margin 0.2)
.venv/bin/aura train "${DATA[@]}" --out $C/aura_j20 --readout linear --dense-steps 300 --held-steps 3000 --lr 1e-3 \
  --gate-only --gate-steps 400 --gate-lr 3e-3 --batch 8 --sparsity 0.1 --gate-margin 0.2 --budget 0.02 --threads 2 \
  --seed 0 --quiet | tail -1
# the gate phase's margin (docs/layer.md): sparsity 0, and logistic noise (--estimator gumbel) at sparsity 1.0
.venv/bin/aura train "${DATA[@]}" --out $C/aura_lin8 --readout linear --dense-steps 300 --held-steps 3000 --lr 1e-3 \
  --gate-only --gate-steps 400 --gate-lr 3e-3 --batch 8 --sparsity 0 --budget 0.02 --threads 1 --seed 0 --quiet | tail -1
.venv/bin/aura train "${DATA[@]}" --out $C/aura_lin5 --readout linear --dense-steps 300 --held-steps 3000 --lr 1e-3 \
  --gate-only --gate-steps 400 --gate-lr 3e-3 --estimator gumbel --batch 8 --sparsity 1.0 --budget 0.02 --threads 1 \
  --seed 0 --quiet | tail -1
# the KV arm: 600 steps at 1e-3 (validation mse 0.073), then 3000 at 3e-3 (0.0022), the one evaluated
.venv/bin/aura train --arm kv "${DATA[@]}" --out $C/kv --kv-steps 600 --lr 1e-3 --batch 8 --threads 1 --seed 0 \
  --quiet | tail -1
.venv/bin/aura train --arm kv "${DATA[@]}" --out $C/kv2 --kv-steps 3000 --lr 3e-3 --batch 8 --threads 1 --seed 0 \
  --quiet | tail -1
.venv/bin/python benchmarks/memory_ablation.py --data $C/t01u_heldout.safetensors --checkpoint $C/aura_lin3 \
  --checkpoint $C/aura_lin9 --checkpoint $C/aura_j20 --checkpoint $C/aura_lin8 --checkpoint $C/aura_lin5 --instruction-steps $K \
  --windows 0-1,1-8,8-300 --json $D/ablation.json | grep -v per-dimension
EXEC=(--backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false)
BB=(--backbone libero_vla --backbone-arg checkpoint=$X/ckpt --backbone-arg device=cpu "${EXEC[@]}" --backbone-arg threads=1)
.venv/bin/aura eval libero --tasks 0,1 --init-states 0-7 --instruction-steps $K \
  --arms base,always,aura,random,periodic,oracle "${BB[@]}" --checkpoint $C/aura_lin3 --workers 2 --out $C/eval |
  grep -E "^\| " | tail -9
.venv/bin/aura eval libero --tasks 0,1 --init-states 0-7 --instruction-steps $K --arms aura,kv "${BB[@]}" \
  --checkpoint $C/aura_lin9 --kv-checkpoint $C/kv2 --workers 2 --out $C/eval_b | grep -E "^\| " | tail -6
# the margin-trained gate on task 0 (where aura_lin3 missed the write on init states 2, 5, 6)
.venv/bin/aura eval libero --tasks 0 --init-states 0-7 --instruction-steps $K --arms aura "${BB[@]}" \
  --checkpoint $C/aura_j20 --workers 2 --out $C/eval_j20 | grep -E "^\| " | tail -3
# init states 8-19 of the margin-trained gate, the blind base and the oracle, here on the CPU: the same
# episodes as the GPU machine's (libero_transient_gpu01), compared pairwise with benchmarks/paired_libero.py
# (docs/libero.md); random/periodic/kv/always at 8-19 were started after it and stopped once the GPU table
# came back, so they are not in eval_8_19/
.venv/bin/aura eval libero --tasks 0,1 --init-states 8-19 --instruction-steps $K --arms aura,base,oracle "${BB[@]}" \
  --checkpoint $C/aura_j20 --workers 2 --out $C/eval_8_19 | grep -E "^\| " | tail -3
for a in aura base oracle; do
  .venv/bin/python benchmarks/paired_libero.py $C/eval_8_19/episodes.jsonl:$a \
    benchmarks/results/libero_transient_gpu01/eval/episodes.jsonl:$a | tail -1
done
.venv/bin/python benchmarks/gate_writes.py $C/eval_j20/episodes.jsonl
.venv/bin/python benchmarks/gate_writes.py $C/eval_b/episodes.jsonl:aura
.venv/bin/aura eval libero --tasks 0,1 --init-states 0-7 --arms base "${BB[@]}" --workers 2 --out $C/eval_visible |
  grep -E "^\| " | tail -3
