"""benchmarks/libero_failures.py: the failures of an evaluation by sub-goals reached (run as a script)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "libero_failures.py"


def test_failures_count_the_subgoals_each_failure_reached(tmp_path):
    rng = np.random.default_rng()
    goals = ["in a basket", "in b basket"]
    rows, want = [], {}
    for i in range(int(rng.integers(20, 50))):
        task, ok = i % 2, bool(rng.random() < 0.4)
        steps = [int(s) if rng.random() < 0.5 else None for s in rng.integers(1, 500, 2)]
        if ok:
            steps = [10, 20]
        rows.append(
            dict(
                task=task,
                init_state=i,
                seed=0,
                arm="base",
                status="ok",
                success=ok,
                subgoals=goals,
                subgoal_steps=steps,
            )
        )
        if not ok:
            r = sum(s is not None for s in steps)
            want.setdefault(task, {}).setdefault(str(r), 0)
            want[task][str(r)] += 1
    rows.append(
        dict(
            task=0,
            init_state=999,
            seed=0,
            arm="aura",
            status="ok",
            success=False,
            subgoals=goals,
            subgoal_steps=[None, None],
        )
    )  # another arm: filtered out by :base
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "f.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), f"{path}:base", "--json", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| task | success |" in run.stdout
    doc = json.loads(out.read_text())["tasks"]
    for task in (0, 1):
        got = doc[str(task)]
        assert got["episodes"] == sum(r["task"] == task and r["arm"] == "base" for r in rows)
        assert got["reached"] == want.get(task, {})
