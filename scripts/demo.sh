#!/usr/bin/env bash
# The AURA main job: the deployed robot loop on LIBERO-Long, torch-free from camera frames to action.
#   1. set up .venv (scripts/setup.sh);
#   2. record one scripted-expert demo of the task (a fresh layout, never an evaluation init state): the
#      LIBERO frames the backbone's parity check runs on;
#   3. export the shipped backbone (checkpoints/libero-vla) to ONNX: parity over 100 LIBERO frames and the
#      TensorRT 10.3 parser check;
#   4. export the shipped memory + gate (checkpoints/libero-aura) to ONNX: 10,000-step parity, TensorRT check;
#   5. aura run on LIBERO: camera frames -> backbone graph -> memory step graph -> flash budget / journal ->
#      action, in a process that never imports torch; prints success, writes, bytes, pages and the projected
#      flash lifetime, the step time split, and writes OUT/run/timeline.png and OUT/run/videos/*.mp4.
#   TASK=6 EPISODES=2 OUT=runs/demo bash scripts/demo.sh        (DEMO=synthetic: the synthetic benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/demo}
TASK=${TASK:-6}
EPISODES=${EPISODES:-2}
bash scripts/setup.sh
AURA=.venv/bin/aura
T0=$SECONDS
mkdir -p "$OUT"
if [ "${DEMO:-libero}" = synthetic ]; then
    CKPT=${CKPT:-checkpoints/synthetic-hard}
    echo "[demo] exporting $CKPT -> $OUT/model.onnx"
    $AURA export "$CKPT" --out "$OUT/model.onnx" --json "$OUT/export.json"
    echo "[demo] aura run: $EPISODES episodes of the synthetic benchmark (hard), ONNX Runtime, crash-safe journal"
    $AURA run --model "$OUT/model.onnx" --env synthetic:hard --episodes "$EPISODES" --out "$OUT/run"
    echo "[demo] done in $((SECONDS - T0)) s after set-up"
    exit 0
fi
for ckpt in checkpoints/libero-vla checkpoints/libero-aura; do
    if [ ! -f "$ckpt/config.json" ]; then
        echo "demo: no checkpoint at $ckpt (expected $ckpt/config.json and model.safetensors)" >&2
        exit 2
    fi
done
echo "[demo] 1/4 LIBERO frames for the backbone's parity check: a scripted-expert demo of task $TASK (fresh layout)"
rm -rf "$OUT/frames"
$AURA sim demos --tasks "$TASK" --per-task 1 --tries-per-job 1 --workers 1 --first-pass cameras --seed 7 \
    --out "$OUT/frames"
for FRAMES in "$OUT/frames/task${TASK}"_b*_demo.hdf5; do break; done
echo "[demo] 2/4 backbone checkpoints/libero-vla -> $OUT/backbone.onnx (parity over 100 LIBERO frames)"
$AURA export backbone checkpoints/libero-vla --out "$OUT/backbone.onnx" --frames "$FRAMES" --check-trt \
    --json "$OUT/backbone_export.json"
echo "[demo] 3/4 memory + gate checkpoints/libero-aura -> $OUT/step.onnx (10,000-step parity)"
$AURA export checkpoints/libero-aura --out "$OUT/step.onnx" --check-trt --json "$OUT/step_export.json"
echo "[demo] 4/4 aura run: $EPISODES episodes of libero_10 task $TASK (init states 0..$((EPISODES - 1))), torch-free,"
echo "       camera frames -> backbone graph -> memory step graph -> flash budget / journal -> action"
rm -rf "$OUT/run"
$AURA run --model "$OUT/step.onnx" --env "libero:$TASK" --backbone libero_vla_onnx \
    --backbone-arg "model=$OUT/backbone.onnx" --backbone-arg threads=1 --episodes "$EPISODES" --max-steps 520 \
    --out "$OUT/run" --media
echo "[demo] done in $((SECONDS - T0)) s after set-up: $OUT/run (episodes.jsonl, timeline.png, videos/)"
