"""benchmarks/paired_libero.py: the paired comparison of two LIBERO evaluations (run as a script)."""

import json
import subprocess
import sys
from math import comb
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paired_libero.py"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_paired_counts_and_exact_mcnemar(tmp_path):
    rng = np.random.default_rng()
    n = int(rng.integers(20, 60))
    a_ok, b_ok = rng.random(n) < 0.6, rng.random(n) < 0.4
    rows_a = [
        dict(task=i % 3, init_state=i, seed=0, arm="base", status="ok", success=bool(s))
        for i, s in enumerate(a_ok)
    ]
    rows_b = [
        dict(task=i % 3, init_state=i, seed=0, arm="aura", status="ok", success=bool(s))
        for i, s in enumerate(b_ok)
    ]
    rows_b.append(dict(task=0, init_state=999, seed=0, arm="aura", status="ok", success=True))  # unpaired
    rows_b.append(dict(task=0, init_state=0, seed=0, arm="aura", status="crashed", success=False))
    _write(tmp_path / "a.jsonl", rows_a)
    _write(tmp_path / "b.jsonl", rows_a + rows_b)  # two arms in one file, picked by :ARM
    with open(tmp_path / "b.jsonl", "a") as f:
        f.write('{"task": 0, "init_st')  # a killed writer's torn last line is skipped, as aura eval does
    out = tmp_path / "p.json"
    subprocess.run(
        [sys.executable, SCRIPT, f"{tmp_path}/a.jsonl", f"{tmp_path}/b.jsonl:aura", "--json", out],
        check=True,
        capture_output=True,
    )
    res = json.loads(out.read_text())
    b, c = int((a_ok & ~b_ok).sum()), int((b_ok & ~a_ok).sum())
    assert (res["pairs"], res["a_success"], res["b_success"]) == (n, int(a_ok.sum()), int(b_ok.sum()))
    assert (res["a_only"], res["b_only"]) == (b, c)
    want = min(1.0, 2 * sum(comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c)) if b + c else 1.0
    assert abs(res["mcnemar_p"] - want) < 1e-12


def test_paired_refuses_a_missing_arm(tmp_path):
    _write(tmp_path / "a.jsonl", [dict(task=0, init_state=0, seed=0, arm="base", status="ok", success=True)])
    r = subprocess.run(
        [sys.executable, SCRIPT, f"{tmp_path}/a.jsonl", f"{tmp_path}/a.jsonl:kv"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "no ok episodes of arm 'kv'" in r.stderr
