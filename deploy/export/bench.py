"""Per-step latency and memory growth of the deploy runtime (the library of ``aura bench runtime``).

CPU (ONNX Runtime runner, the path ``aura run`` uses; one intra-op thread): median / p99 of the full runtime
step (graph + exact commit of the requested writes) and its weight-bandwidth floor

    floor = weight bytes read per step (the ONNX initializers) / measured memcpy bandwidth

(memcpy bandwidth = bytes copied per second by numpy over a 256 MiB buffer, i.e. one DRAM read + write per
byte), target: median within 2x of the floor. Then the resident-set growth over ``--soak-steps`` steps after
warm-up (target <= 64 KiB over 1,000,000).

CUDA (when torch sees a GPU): the torch CUDA-graph runner, fused Triton step and eager twin; latency is the
host's wall time per step (pinned H2D, replay, D2H, stream sync), target <= 20 us on an H100 at d_model
4096; GPU memory growth over ``--cuda-soak-steps`` replays (``torch.cuda.memory_allocated`` and the driver's
free memory; target 0 bytes).

Without ``--model``, an AURA-sized step (``--d-model``, 32 x 32 state, one head) with random weights is
exported first (that needs torch; the runtime measurement itself does not).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def memcpy_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Bytes copied per second (best of ``repeats``) by numpy between two ``nbytes`` buffers."""
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best


def weight_bytes(onnx_path) -> int:
    """Bytes of the graph's initializers (weights and constants) read once per step."""
    import onnx

    model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    total = 0
    for t in model.graph.initializer:
        total += (
            int(np.prod(t.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        )
    for node in model.graph.node:  # Constant nodes hold small tensors too
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                dt = onnx.helper.tensor_dtype_to_np_dtype(a.t.data_type)
                total += int(np.prod(a.t.dims, dtype=np.int64)) * dt.itemsize
    return total


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _inputs(spec, n: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, spec.d_model)).astype(np.float32),
        rng.standard_normal((n, spec.d_action)).astype(np.float32),
    )


def bench_cpu(model, steps: int, soak_steps: int, threads: int = 1, warmup_s: float = 20.0) -> dict:
    from deploy.runtime.ort_runner import OrtRunner

    runner = OrtRunner(model, threads=threads)
    feats, bases = _inputs(runner.spec)
    n = len(feats)
    lat = np.empty(steps, dtype=np.float64)
    clock = time.perf_counter_ns
    writes = 0
    # Warm-up. Besides the first steps, ORT/glibc page in memory once, seconds after start (no new threads;
    # docs/deploy.md, "Measured costs"), so the soak below starts after >= 20 s of stepping.
    t_end, i = time.perf_counter() + (warmup_s if soak_steps else 0.0), 0
    while i < 2000 or time.perf_counter() < t_end:
        if runner.step(feats[i % n], bases[i % n]).write:
            runner.commit()
        i += 1
    for i in range(steps):
        t0 = clock()
        if runner.step(feats[i % n], bases[i % n]).write:
            runner.commit()
            writes += 1
        lat[i] = clock() - t0
    lat /= 1000.0
    bw = memcpy_bandwidth()
    wb = weight_bytes(model)
    floor_us = wb / bw * 1e6
    out = {
        "runner": "onnxruntime",
        "threads": threads,
        "steps": steps,
        "write_rate": writes / steps,
        "latency_us_median": float(np.median(lat)),
        "latency_us_p99": float(np.percentile(lat, 99)),
        "weight_bytes": wb,
        "memcpy_bytes_per_s": bw,
        "floor_us": floor_us,
        "median_over_floor": float(np.median(lat)) / floor_us,
        "target_median_over_floor": 2.0,
    }
    if soak_steps:
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        report = max(soak_steps // 10, 1)
        trace = []
        for i in range(soak_steps):
            if runner.step(feats[i % n], bases[i % n]).write:
                runner.commit()
            if (i + 1) % report == 0:
                trace.append(rss_bytes() - rss0)
                print(f"  soak {i + 1}/{soak_steps} steps, RSS growth {trace[-1]} B", flush=True)
        out.update(
            soak_steps=soak_steps,
            rss_growth_bytes=rss_bytes() - rss0,
            rss_growth_trace=trace,
            target_rss_growth_bytes=65536,
            soak_seconds=time.perf_counter() - t0,
        )
    return out


# (name, CudaGraphRunner options): the eager twin and the fused step's launch / I/O variants.
CUDA_VARIANTS = [
    ("fused_2k_zerocopy_spin", {"fused": True, "single": False, "launch": "driver", "wait": "spin"}),
    (
        "fused_1k_zerocopy_spin",
        {"fused": True, "single": True, "ksplit": 32, "block_n": 64, "launch": "driver", "wait": "spin"},
    ),
    (
        "fused_2k_zerocopy_spin_atomic",
        {"fused": True, "single": False, "launch": "driver", "wait": "spin", "echo": "atomic"},
    ),
    ("fused_2k_zerocopy_sync", {"fused": True, "single": False, "launch": "driver", "wait": "sync"}),
    ("fused_2k_zerocopy_replay", {"fused": True, "single": False, "launch": "torch", "wait": "sync"}),
    ("fused_2k_memcpy", {"fused": True, "zero_copy": False, "single": False}),
    ("eager", {"fused": False}),
]


def bench_cuda(d_model: int, steps: int, soak_steps: int, checkpoint=None) -> list[dict]:
    import torch

    from aura.layer import AuraMem
    from deploy.export.cuda_graph import CudaGraphRunner

    if checkpoint:
        layer = AuraMem.load(checkpoint)
    else:
        torch.manual_seed(0)
        layer = AuraMem(d_model=d_model, d_action=7)
        with torch.no_grad():
            layer.head.weight.normal_(0, 0.02)
    results = []
    spec = type("S", (), {"d_model": layer.config.d_model, "d_action": layer.config.d_action})
    feats, bases = _inputs(spec)
    n = len(feats)
    for name, opts in CUDA_VARIANTS:
        try:
            runner = CudaGraphRunner(layer, **opts)
        except Exception as err:  # a variant the toolchain cannot build is reported, not fatal
            results.append({"runner": name, "error": f"{type(err).__name__}: {err}"})
            print(f"  {name}: FAILED to build: {err}", flush=True)
            continue
        lat = np.empty(steps, dtype=np.float64)
        clock = time.perf_counter_ns
        for i in range(1000):
            runner.step(feats[i % n], bases[i % n])
        writes = 0
        for i in range(steps):
            t0 = clock()
            _, w, _ = runner.step(feats[i % n], bases[i % n])
            lat[i] = clock() - t0
            writes += w
        lat /= 1000.0
        # GPU time per replay alone (back to back, no host sync in between)
        g = runner.graphs[0]
        ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ev0.record()
        for _ in range(1000):
            g.replay()
        ev1.record()
        torch.cuda.synchronize()
        gpu_us = ev0.elapsed_time(ev1)  # ms for 1000 replays = us per replay
        res = {
            "runner": name,
            "options": opts,
            "launch": runner.launch,
            "wait": runner.wait,
            "device": torch.cuda.get_device_name(),
            "d_model": layer.config.d_model,
            "steps": steps,
            "write_rate": writes / steps,
            "latency_us_median": float(np.median(lat)),
            "latency_us_p99": float(np.percentile(lat, 99)),
            "gpu_us_per_replay": gpu_us,
            "target_latency_us": 20.0,
        }
        if soak_steps:
            torch.cuda.synchronize()
            alloc0, free0 = torch.cuda.memory_allocated(), torch.cuda.mem_get_info()[0]
            for i in range(soak_steps):
                runner.step(feats[i % n], bases[i % n])
            torch.cuda.synchronize()
            res.update(
                cuda_soak_steps=soak_steps,
                memory_allocated_growth_bytes=torch.cuda.memory_allocated() - alloc0,
                driver_free_memory_drop_bytes=free0 - torch.cuda.mem_get_info()[0],
            )
        results.append(res)
        print(
            f"  {name}: median {res['latency_us_median']:.1f} us, "
            f"p99 {res['latency_us_p99']:.1f} us, GPU {gpu_us:.1f} us/replay",
            flush=True,
        )
        del runner
    return results


def export_random_step(checkpoint, d_model: int, out) -> Path:
    """Export ``checkpoint``'s step, or an AURA-sized one with random weights, to ``out``/step_d<d>.onnx."""
    import torch  # export needs torch; the measured runtime does not

    from aura.layer import AuraMem
    from deploy.export.step_graph import export_layer

    if checkpoint:
        layer = AuraMem.load(checkpoint)
    else:
        torch.manual_seed(0)
        layer = AuraMem(d_model=d_model, d_action=7)
    path = Path(out) / f"step_d{layer.config.d_model}.onnx"
    print(f"exporting a d_model={layer.config.d_model} step to {path} ...", flush=True)
    export_layer(layer, path)
    return path
