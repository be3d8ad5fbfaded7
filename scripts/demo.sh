#!/usr/bin/env bash
# The AURA deploy demo: set up .venv, export the shipped synthetic-hard checkpoint to an ONNX per-step graph
# (onnx full check + 10,000-step torch vs ONNX Runtime parity), then run the torch-free control loop on the
# synthetic benchmark and print the episode summary (writes, bytes, flash projection, latency, accuracy).
#   CKPT=checkpoints/synthetic-hard OUT=runs/demo EPISODES=5 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${CKPT:-checkpoints/synthetic-hard}
OUT=${OUT:-runs/demo}
EPISODES=${EPISODES:-5}
bash scripts/setup.sh
if [ ! -f "$CKPT/config.json" ]; then
    echo "demo: no checkpoint at $CKPT (expected $CKPT/config.json and model.safetensors)" >&2
    exit 2
fi
mkdir -p "$OUT"
echo "[demo] exporting $CKPT -> $OUT/model.onnx"
.venv/bin/aura export "$CKPT" --out "$OUT/model.onnx" --json "$OUT/export.json"
echo "[demo] aura run: $EPISODES episodes of the synthetic benchmark (hard), ONNX Runtime, crash-safe journal"
rm -rf "$OUT/run"
.venv/bin/aura run --model "$OUT/model.onnx" --env synthetic:hard --episodes "$EPISODES" --out "$OUT/run"
echo "[demo] per-step log: $OUT/run/steps.jsonl; episode summaries: $OUT/run/episodes.jsonl"
