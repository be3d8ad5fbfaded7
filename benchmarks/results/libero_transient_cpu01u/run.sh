#!/usr/bin/env bash
# Issue 13 on the 2-core CPU, closed loop, backbone teacher, with a backbone that must use the instruction
# more: the shipped 55.6-epoch backbone fine-tuned with a fifth of its samples blind (--blank-instruction 0.2,
# the transient pipeline's default; cpu01b/cpu01t used 0.5 on the 33-epoch one) on the 42 fresh-layout demos
# of libero_10 tasks 0/1 in /tmp/t01; then as cpu01t: 24 + 8 blind rollouts (K = 1) labelled by the same
# backbone with the instruction visible, AuraMem linear / mlp on the rollouts, the ablation, and 4 init
# states per task closed loop (base / aura / oracle blind after step 0; base with the instruction visible).
set -uo pipefail
cd /work/main
W=/tmp/t01; X=/tmp/t01u; K=1
mkdir -p $X
EXEC=(--backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false)
BB=(--backbone libero_vla --backbone-arg checkpoint=$X/ckpt --backbone-arg device=cpu "${EXEC[@]}")
T=(--instruction-steps $K --teacher backbone)
echo "[u $(date +%T)] fine-tune"
[ -e $X/ckpt/config.json ] || .venv/bin/aura train backbone --demos $W/demos --init checkpoints/libero-vla --out $X/ckpt \
  --blank-instruction 0.2 --steps 4000 --batch 32 --lr 1e-4 --warmup 50 --time-limit ${FT_S:-900} --fit-to-time \
  --device cpu --no-progress 2>&1 | tail -2
echo "[u $(date +%T)] rollouts"
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 12 "${BB[@]}" "${T[@]}" --beta 0.3 --max-steps 300 \
  --exclude-demos $W/demos/demos.json --workers 2 --out $X/rollouts --quiet | tail -1
.venv/bin/aura sim rollouts --tasks 0,1 --per-task 4 "${BB[@]}" "${T[@]}" --beta 0 --max-steps 300 \
  --placement-base $((2**31 + 5000)) --exclude-demos $W/demos/demos.json --workers 2 --out $X/heldout --quiet | tail -1
echo "[u $(date +%T)] train"
for r in linear mlp; do
  .venv/bin/aura train --data $X/rollouts/rollouts.safetensors --out $X/aura_$r --readout $r \
    --dense-steps 300 --lr 3e-4 --gate-steps 100 --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 --threads 1 \
    --seed 0 --quiet >$X/train_$r.log 2>&1 &
done
wait
echo "[u $(date +%T)] ablation"
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $X/aura_linear \
  --checkpoint $X/aura_mlp --instruction-steps $K --json $X/ablation.json
best=$(.venv/bin/python -c "import json; r=json.load(open('$X/ablation.json'))['rows']; print(min(r, key=lambda k: r[k]['gate']))")
echo "[u $(date +%T)] eval with $best"
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --instruction-steps $K --arms base,aura,oracle "${BB[@]}" \
  --backbone-arg threads=1 --checkpoint $best --workers 2 --out $X/eval 2>&1 | grep -E "^\| |this run" | tail -14
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --arms base "${BB[@]}" --backbone-arg threads=1 --workers 2 \
  --out $X/eval_visible 2>&1 | grep -E "^\| |this run" | tail -6
echo "[u $(date +%T)] done"
