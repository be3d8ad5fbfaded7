#!/usr/bin/env bash
# Follow-up: the same AuraMem (mlp) with the rollouts' gripper labels replaced by the base's gripper (the
# correction is not taught to open / close), then the aura arm closed loop on the same 8 episodes.
set -uo pipefail
cd /work/main
X=/tmp/t01b
BB=(--backbone libero_vla --backbone-arg checkpoint=$X/ckpt --backbone-arg device=cpu --backbone-arg execution=open_loop --backbone-arg n_action_steps=8 --backbone-arg fresh_features=false)
# the rollouts with their gripper label replaced by the base action's gripper (NaN rows stay NaN)
.venv/bin/python - <<'PY'
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
p = "/tmp/t01b/rollouts/rollouts.safetensors"
a = load_file(p)
with safe_open(p, "np") as f:
    meta = f.metadata()
y = a["target_actions"].copy()
ok = ~(y != y).any(-1)
y[..., 6] = a["base_actions"][..., 6]
y[~ok] = float("nan")
a["target_actions"] = y
save_file(a, "/tmp/t01b/rollouts_gripbase.safetensors", metadata=meta)
PY
echo "[g $(date +%T)] train"
.venv/bin/aura train --data $X/features.safetensors --data $X/rollouts_gripbase.safetensors --out $X/aura_mlp_grip --readout mlp \
  --dense-steps 300 --lr 3e-4 --gate-steps 100 --gate-lr 1e-3 --batch 8 --sparsity 1.0 --budget 0.02 --threads 2 --seed 0 --quiet >$X/train_mlp_grip.log 2>&1
.venv/bin/python benchmarks/memory_ablation.py --data $X/heldout/rollouts.safetensors --checkpoint $X/aura_mlp --checkpoint $X/aura_mlp_grip --instruction-steps 1 --json $X/ablation_grip.json
echo "[g $(date +%T)] eval"
.venv/bin/aura eval libero --tasks 0,1 --episodes 4 --instruction-steps 1 --arms aura "${BB[@]}" --backbone-arg threads=1 \
  --checkpoint $X/aura_mlp_grip --workers 2 --out $X/eval_grip 2>&1 | grep -E "^\| |this run" | tail -6
echo "[g $(date +%T)] done"
