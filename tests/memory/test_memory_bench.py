"""`aura bench memory` runs end to end on a small shape and writes its JSON (numbers are not asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from aura.bench import memory as bench
from aura.memory import cpu_fast
from cli import main as aura_main

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
    ratios = bench.ratios(rows)
    assert {r["what"] for r in ratios} == {f"naive / {i}" for i in names[1:]}


def test_cli_writes_json(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SHAPES", [(2, 40, 1, 8, 8)])
    out = tmp_path / "bench.json"
    assert aura_main(["bench", "memory", "--reps", "1", "--naive-reps", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    n = 1 + len(KERNEL)  # implementations besides naive: torch_chunk16 and the C kernel
    assert data["device_type"] == "cpu" and len(data["rows"]) == 2 * (n + 1) and len(data["ratios"]) == 2 * n


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--reps", "0"], "--reps must be >= 1, got 0"),
        (["--naive-reps", "-1"], "--naive-reps must be >= 1, got -1"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--chunk-sizes", "16", "48"], "--chunk-sizes must be powers of two >= 1, got 48"),
        (["--device", "tpu"], "--device must be cpu or cuda[:N], got 'tpu'"),
    ],
)
def test_cli_rejects_bad_options_in_one_line(capsys, argv, message):
    assert aura_main(["bench", "memory", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"aura bench memory: {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
def test_cli_cuda_without_cuda(capsys):
    assert aura_main(["bench", "memory", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available here" in capsys.readouterr().err
