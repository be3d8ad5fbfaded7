"""The Jetson projection of ``aura bench runtime``: computed from the graphs' weight bytes and the boards'
memory bandwidth, never measured on a Jetson (the measured CPU numbers are printed next to it).

    floor = weight bytes read per step / peak memory bandwidth

A lower bound: activations, compute and launch overhead are not counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from deploy.export.bench import weight_bytes

# Peak memory bandwidth in bytes/s, as collected in shared/notes/anchors.md (deploy targets).
JETSON_BANDWIDTH = (
    ("Orin Nano 8GB", 68.0e9),
    ("Orin Nano 8GB Super", 102.0e9),
    ("Orin NX 16GB", 102.4e9),
    ("AGX Orin 64GB", 204.8e9),
    ("Thor", 273.0e9),
)
PROJECTION_LABEL = (
    "Jetson PROJECTION, not a measurement: weight-bandwidth floor = weight bytes read per step / peak "
    "memory bandwidth (a lower bound: activations, compute and launch overhead are not counted)"
)


def fp16_weight_bytes(onnx_path) -> int:
    """``weight_bytes`` with every float32 initializer stored as float16 (what an FP16 engine reads)."""
    import onnx

    model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    fp32 = sum(
        int(np.prod(t.dims, dtype=np.int64)) * 4
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    )
    return weight_bytes(onnx_path) - fp32 // 2


def export_default_backbone(checkpoint, out) -> Path:
    """Export a backbone checkpoint (default: the shipped checkpoints/libero-vla) to ``out``; needs torch."""
    from deploy.export.backbone_graph import export_graph
    from policies.libero_vla.checkpoint import load_checkpoint

    if not Path(checkpoint).is_dir():
        raise ValueError(f"--backbone-checkpoint {checkpoint}: not a directory (or give --backbone-model)")
    net, _ = load_checkpoint(checkpoint, device="cpu")
    print(f"exporting the backbone {checkpoint} to {out} ...", flush=True)
    return export_graph(net, out)


def bench_backbone_cpu(model, steps: int = 200, threads: int = 1, warmup: int = 10) -> dict:
    """Median / p99 of one backbone graph call (``session.run`` on prepared inputs) with ONNX Runtime."""
    from deploy.export.backbone_graph import random_frames
    from policies.libero_vla.onnx_backbone import open_session
    from policies.libero_vla.runtime import OUTPUTS

    sess, interface = open_session(model, threads=threads)
    frames = random_frames(interface, 16)
    names = list(OUTPUTS)
    for i in range(warmup):
        sess.run(names, frames[i % len(frames)])
    lat = np.empty(steps, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(steps):
        t0 = clock()
        sess.run(names, frames[i % len(frames)])
        lat[i] = clock() - t0
    lat /= 1000.0
    return {
        "runner": "onnxruntime",
        "threads": threads,
        "steps": steps,
        "latency_us_median": float(np.median(lat)),
        "latency_us_p99": float(np.percentile(lat, 99)),
        "weight_bytes": weight_bytes(model),
    }


def jetson_projection(step_model, backbone_model, cpu: dict | None = None, backbone_cpu: dict | None = None):
    """The floors of the memory step (fp32: the journal replays it exactly) and of the backbone (fp32 and
    an FP16 engine) on each Jetson of ``JETSON_BANDWIDTH``, with this host's measured CPU numbers."""
    step_b, bb_b, bb16_b = (
        weight_bytes(step_model),
        weight_bytes(backbone_model),
        fp16_weight_bytes(backbone_model),
    )
    devices = [
        {
            "device": name,
            "bandwidth_bytes_per_s": bw,
            "step_floor_us": step_b / bw * 1e6,
            "backbone_floor_us_fp32": bb_b / bw * 1e6,
            "backbone_floor_us_fp16": bb16_b / bw * 1e6,
        }
        for name, bw in JETSON_BANDWIDTH
    ]
    host = {}
    if cpu is not None:
        host.update(step_median_us=cpu["latency_us_median"], memcpy_bytes_per_s=cpu["memcpy_bytes_per_s"])
        host["step_floor_us"] = step_b / cpu["memcpy_bytes_per_s"] * 1e6
    if backbone_cpu is not None:
        host["backbone_median_us"] = backbone_cpu["latency_us_median"]
        host["backbone_p99_us"] = backbone_cpu["latency_us_p99"]
        if cpu is not None:
            host["backbone_floor_us"] = bb_b / cpu["memcpy_bytes_per_s"] * 1e6
            host["step_over_backbone"] = cpu["latency_us_median"] / backbone_cpu["latency_us_median"]
    return {
        "label": PROJECTION_LABEL,
        "step_model": os.fspath(step_model),
        "backbone_model": os.fspath(backbone_model),
        "step_weight_bytes": step_b,
        "backbone_weight_bytes": bb_b,
        "backbone_weight_bytes_fp16": bb16_b,
        "devices": devices,
        "cpu_measured": host,
    }


def jetson_table(proj: dict) -> list[str]:
    """The projection as a markdown table, this host's measured CPU row first."""
    sb, bb, b16 = proj["step_weight_bytes"], proj["backbone_weight_bytes"], proj["backbone_weight_bytes_fp16"]
    lines = [
        proj["label"],
        f"| device | GB/s | memory step us (fp32, {sb:,} B) | backbone us (fp32, {bb:,} B) "
        f"| backbone us (FP16 engine, {b16:,} B) | step / backbone |",
        "|---|---|---|---|---|---|",
    ]
    h, nan = proj["cpu_measured"], float("nan")
    if h:
        step = f"{h['step_median_us']:.1f} (floor {h['step_floor_us']:.1f})" if "step_median_us" in h else "-"
        bbone = f"{h['backbone_median_us']:.1f}" if "backbone_median_us" in h else "-"
        bbone += f" (floor {h['backbone_floor_us']:.1f})" if "backbone_floor_us" in h else ""
        ratio = f"{100 * h['step_over_backbone']:.2f} %" if "step_over_backbone" in h else "-"
        gbs = h.get("memcpy_bytes_per_s", nan) / 1e9
        lines.append(
            f"| this CPU, ORT 1 thread: MEASURED median | {gbs:.1f} (memcpy) | {step} | {bbone} | - "
        )
        lines[-1] += f"| {ratio} |"
    for d in proj["devices"]:
        s, b, f = d["step_floor_us"], d["backbone_floor_us_fp32"], d["backbone_floor_us_fp16"]
        gbs = d["bandwidth_bytes_per_s"] / 1e9
        row = f"| {d['device']}: projected floor | {gbs:.1f} | {s:.2f} | {b:.1f} | {f:.1f} "
        lines.append(row + f"| {100 * s / b:.2f} % |")
    return lines
