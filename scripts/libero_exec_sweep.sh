#!/usr/bin/env bash
# Which chunk execution drives the frozen libero-vla backbone best on LIBERO-Long? The base arm under several
# execution settings (policies/libero_vla/execution.py), on the same (task, init state, seed), after
# scripts/libero_gpu.sh set LIBERO up (docs/libero_gpu.md). The variants run at the same time, splitting the
# workers, so one start-up covers them all; each is an `aura eval libero` results folder (resumed if present).
#
#   WORK=/tmp/aura-exec bash scripts/libero_exec_sweep.sh            # the variants below, init states 0-9
#   VARIANTS="ol4:execution=open_loop,n_action_steps=4" INITS=10-49 bash scripts/libero_exec_sweep.sh
#
# VARIANTS: space-separated NAME:FIELD=VALUE[,FIELD=VALUE...] (LiberoVLAConfig fields). Output:
# $WORK/NAME/{episodes.jsonl,summary.md,summary.json}, a table of all of them on stdout, and
# $WORK/sweep.tar (the summaries and episode lines: small enough to come back from the GPU machine).
set -euo pipefail

WORK=${WORK:-runs/libero_exec_sweep}
CKPT=${CKPT:-checkpoints/libero-vla}
DEVICE=${DEVICE:-cuda}
TASKS=${TASKS:-0-9}
INITS=${INITS:-0-9}
WORKERS=${WORKERS:-15}
MAX_STEPS=${MAX_STEPS:-520}
AURA=${AURA:-aura}
VARIANTS=${VARIANTS:-"ol8:execution=open_loop,n_action_steps=8 ol4:execution=open_loop,n_action_steps=4 ens_new:execution=ensemble,ensemble_decay=-1.0"}

read -r -a specs <<<"$VARIANTS"
n=${#specs[@]}
per=$((WORKERS / n > 0 ? WORKERS / n : 1))
mkdir -p "$WORK"
pids=()
for spec in "${specs[@]}"; do
    name=${spec%%:*}
    fields=${spec#*:}
    args=(--backbone libero_vla --backbone-arg "checkpoint=$CKPT" --backbone-arg "device=$DEVICE"
        --backbone-arg threads=1)
    IFS=, read -r -a kv <<<"$fields"
    for f in "${kv[@]}"; do args+=(--backbone-arg "$f"); done
    echo "[sweep] $name: ${kv[*]} ($per workers)"
    $AURA eval libero --tasks "$TASKS" --init-states "$INITS" --arms base "${args[@]}" \
        --max-steps "$MAX_STEPS" --workers "$per" --out "$WORK/$name" >"$WORK/$name.log" 2>&1 &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done

python3 - "$WORK" "${specs[@]}" <<'EOF'
import json, sys
from pathlib import Path

work = Path(sys.argv[1])
print("| variant | fields | episodes | success | Wilson 95 % | mean steps |")
print("|---|---|---|---|---|---|")
for spec in sys.argv[2:]:
    name, _, fields = spec.partition(":")
    path = work / name / "summary.json"  # aura eval libero's own summary of the variant
    rows = [r for r in json.loads(path.read_text())["rows"] if r["task"] == "all"] if path.exists() else []
    if not rows or not rows[0]["episodes"]:
        print(f"| {name} | {fields} | 0 | - | - | - |")
        continue
    r = rows[0]
    n, k, (lo, hi) = r["episodes"], r["successes"], r["ci95"]
    print(f"| {name} | {fields} | {n} | {k}/{n} {100 * k / n:.1f} % | {100 * lo:.0f}-{100 * hi:.0f} % "
          f"| {r['steps']:.0f} |")
EOF
tar -cf "$WORK/sweep.tar" -C "$WORK" $(cd "$WORK" && ls -d ./*.log ./*/episodes.jsonl ./*/summary.* ./*/config.json 2>/dev/null)
echo "[sweep] $WORK/sweep.tar"
exit $rc
