"""aura bench runtime pieces on the tiny graph (the 1,000,000-step soak lives in the benchmark, not here)."""

from deploy.export.bench import bench_cpu, memcpy_bandwidth, weight_bytes


def test_weight_bytes_counts_the_parameters(tiny_onnx):
    path, module = tiny_onnx
    params = sum(p.numel() * 4 for p in module.parameters())
    assert params <= weight_bytes(path) <= params + 4096  # plus a few small constants


def test_bench_cpu_reports_latency_and_floor(tiny_onnx):
    path, _ = tiny_onnx
    res = bench_cpu(path, steps=300, soak_steps=0)
    assert 0 < res["latency_us_median"] <= res["latency_us_p99"]
    assert res["floor_us"] > 0 and res["median_over_floor"] > 0
    assert memcpy_bandwidth(1 << 20, 2) > 1e8


def test_smaps_attribution_finds_a_fresh_anonymous_allocation():
    import os

    import numpy as np

    from deploy.export.soak import mapping_growth, smaps_by_mapping

    before = smaps_by_mapping(os.getpid())
    # above glibc's largest dynamic mmap threshold (32 MiB on 64-bit): after earlier tests freed big
    # mmap'd blocks the threshold rises, and a 16 MiB block would come from the brk heap instead
    size = 64 << 20
    buf = np.random.default_rng().random(size // 8)  # malloc serves this from a private anonymous mmap
    after = smaps_by_mapping(os.getpid())
    grown = {r["mapping"]: r["bytes"] for r in mapping_growth(before, after)}
    assert buf.nbytes == size and grown.get("anon rw-p", 0) >= size
    assert mapping_growth(after, after) == []
