#!/usr/bin/env bash
# Wait up to SECONDS for a background pipeline on the GPU machine (scripts/libero_gpu_pipeline.sh,
# libero_gpu_dagger.sh, libero_panel.sh: they write WORK/pipeline.status), copying its results into this
# device call's $OUT every 5 s while it runs: a machine given back (idle 30 s, the session's time spent)
# takes /tmp with it, but a call cut short still returns $OUT. At most 8 files come back from a call.
#   usage: bash scripts/gpu_poll.sh WORK LOG SECONDS FILE...   (FILEs relative to WORK)
#   e.g.:  bash scripts/gpu_poll.sh /tmp/aura-dagger /tmp/aura-dagger.log 540 ckpt/config.json \
#              ckpt/model.safetensors ckpt/train.jsonl eval/episodes.jsonl eval/summary.md eval/success.png \
#              results/rollouts.json
set -u
if [ $# -lt 3 ]; then
    echo "usage: $0 WORK LOG SECONDS FILE..." >&2
    exit 2
fi
WORK=$1 LOG=$2 WAIT=$3
shift 3
OUT=${OUT:?this runs in a device call, where \$OUT is set}
end=$((SECONDS + WAIT))
mirror() {
    local f
    for f in "$@"; do
        [ -e "$WORK/$f" ] && cp -f "$WORK/$f" "$OUT/"
    done
    [ -e "$LOG" ] && cp -f "$LOG" "$OUT/pipeline.log"
}
while [ $SECONDS -lt $end ]; do
    mirror "$@"
    grep -q -E "^(done|failed)" "$WORK/pipeline.status" 2>/dev/null && break
    sleep 5
done
mirror "$@"
tail -n 30 "$LOG"
echo "status: $(cat "$WORK/pipeline.status" 2>/dev/null || echo none)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv,noheader
exit 0
