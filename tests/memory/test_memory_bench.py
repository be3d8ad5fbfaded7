"""`aura bench memory` runs end to end on a small shape and writes its JSON (numbers are not asserted)."""

from __future__ import annotations

import json

import torch

from aura.cli import main as aura_main
from aura.memory import bench, cpu_fast

# The C kernel's row is there whenever it builds on this machine (cpu_fast.available()).
KERNEL = ["cpu_kernel"] if cpu_fast.available() else []


def test_run_bench_rows_and_ratios():
    rows = bench.run_bench(
        torch.device("cpu"),
        torch.float32,
        reps=1,
        naive_reps=1,
        chunk_sizes=[16, 64],
        shapes=[(2, 70, 1, 8, 8)],
        log=lambda *_: None,
    )
    impls = {(r["impl"], r["mode"]) for r in rows}
    names = ["naive", "torch_chunk16", "torch_chunk64", *KERNEL]
    assert impls == {(i, m) for i in names for m in ("fwd", "fwd+bwd")}
    assert all(r["median_ms"] > 0 for r in rows)
    ratios = bench._ratios(rows)
    assert {r["what"] for r in ratios} == {f"naive / {i}" for i in names[1:]}


def test_cli_writes_json(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SHAPES", [(2, 40, 1, 8, 8)])
    out = tmp_path / "bench.json"
    assert aura_main(["bench", "memory", "--reps", "1", "--naive-reps", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    n = 1 + len(KERNEL)  # implementations besides naive: torch_chunk16 and the C kernel
    assert data["device_type"] == "cpu" and len(data["rows"]) == 2 * (n + 1) and len(data["ratios"]) == 2 * n
