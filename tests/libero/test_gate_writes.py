"""benchmarks/gate_writes.py: where an evaluation's arms wrote (run as a script)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gate_writes.py"


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)


def test_gate_writes_counts_the_instruction_step_and_later_writes(tmp_path):
    rng = np.random.default_rng()
    n, k, t = int(rng.integers(5, 12)), int(rng.integers(1, 4)), 30
    rows, late = [], {}
    for i in range(n):
        p = rng.uniform(0.0, 0.4, t)
        p[:k] = rng.uniform(0.55, 0.95, k)
        steps = [0]
        if i % 3 == 0:  # a later write now and then
            s = int(rng.integers(k, t))
            steps.append(s)
            p[s] = 0.7
            late[f"0/{i}"] = [s]
        rows.append(dict(task=0, init_state=i, seed=0, arm="aura", status="ok", success=True,
                         write_steps=steps, gate_probs=p.round(3).tolist(), instruction_steps=k))  # fmt: skip
        rows.append(dict(task=0, init_state=i, seed=0, arm="random", status="ok", success=False,
                         write_steps=[k + 2], instruction_steps=k))  # fmt: skip
    rows.append(dict(task=0, init_state=0, seed=0, arm="aura", status="crashed", success=False))
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"task": 0, "init')  # torn last line
    r = _run(path, "--json", tmp_path / "w.json")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["k"] == k
    aura, rand = doc["arms"]["aura"], doc["arms"]["random"]
    before = [p for row in rows if row.get("gate_probs") for p in row["gate_probs"][:k]]
    assert (aura["episodes"], aura["wrote_before_k"], aura["first_write"]) == (n, n, 0)
    assert aura["writes_after"] == late and aura["episodes_writing_after"] == len(late)
    assert aura["p_before_min"] == min(before) and aura["p_before_max"] == max(before)
    assert (rand["wrote_before_k"], rand["first_write"], rand["episodes_writing_after"]) == (0, k + 2, n)
    assert "p_before_min" not in rand
    one = _run(f"{path}:random")
    assert one.returncode == 0 and "| random |" in one.stdout and "| aura |" not in one.stdout


def test_gate_writes_needs_one_k(tmp_path):
    rows = [dict(task=0, init_state=i, seed=0, arm="aura", status="ok", success=True, write_steps=[0],
                 instruction_steps=i + 1) for i in range(2)]  # fmt: skip
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = _run(path)
    assert r.returncode != 0 and "give --instruction-steps K" in r.stderr
    assert _run(path, "--instruction-steps", 1).returncode == 0
    assert "--instruction-steps must be >= 1" in _run(path, "--instruction-steps", 0).stderr


def test_gate_writes_without_k_counts_writes_and_the_chunks_they_fall_in(tmp_path):
    rng = np.random.default_rng()
    n, chunk = int(rng.integers(6, 15)), int(rng.integers(2, 9))
    rows = []
    for i in range(n):
        m = int(rng.integers(0, 6)) if i % 4 else 0  # every 4th episode never writes
        steps = sorted(rng.choice(100, size=m, replace=False).tolist())
        rows.append(
            dict(task=1, init_state=i, seed=0, arm="aura", status="ok", success=True, write_steps=steps)
        )
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = _run(path, "--chunk", chunk, "--json", tmp_path / "w.json")
    assert r.returncode == 0, r.stderr
    assert "K: none recorded" in r.stdout
    doc = json.loads((tmp_path / "w.json").read_text())
    aura = doc["arms"]["aura"]
    assert doc["k"] is None and "wrote_before_k" not in aura
    assert aura["no_write"] == sum(not row["write_steps"] for row in rows) >= (n + 3) // 4
    assert aura["writes"] == sum(len(row["write_steps"]) for row in rows)
    assert aura["chunks_written"] == sum(len({s // chunk for s in row["write_steps"]}) for row in rows)
    assert "--chunk must be >= 1" in _run(path, "--chunk", 0).stderr
