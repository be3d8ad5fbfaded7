"""Per-step latency and memory growth of the deploy runtime: ONNX Runtime on the CPU, CUDA-graph runners.

CPU: median / p99 of the full runtime step (graph + exact commit) against its weight-bandwidth floor
(weight bytes / memcpy bandwidth; target median <= 2x the floor), then RSS growth over --soak-steps.
CUDA (when torch sees a GPU): the CUDA-graph runner, fused Triton step and eager twin; host wall time per
step and GPU memory growth over --cuda-soak-steps replays. Without --model an AURA-sized step (--d-model,
32 x 32 state) with random weights is exported first (that needs torch; the measured runtime does not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from deploy.export.bench import bench_cpu, bench_cuda, export_random_step


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="ONNX step graph (default: export an AURA-sized one)")
    parser.add_argument("--checkpoint", default=None, help="AuraMem checkpoint for the CUDA runners")
    parser.add_argument("--d-model", type=int, default=4096, help="AURA-sized step when no model/checkpoint")
    parser.add_argument("--steps", type=int, default=20_000, help="timed steps per runner")
    parser.add_argument("--soak-steps", type=int, default=1_000_000, help="CPU RSS soak (0: skip)")
    parser.add_argument("--cuda-soak-steps", type=int, default=100_000, help="CUDA memory soak (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the CPU (ONNX Runtime) measurement")
    parser.add_argument("--skip-cuda", action="store_true", help="skip the CUDA-graph runners")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--out", default="runs/bench", help="where an exported model is written")


def run(args: argparse.Namespace) -> int:
    for name in ("d_model", "steps", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("soak_steps", "cuda_soak_steps"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    result = {"host": platform.node(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    rows = []
    if not args.skip_cpu:
        model = (
            Path(args.model) if args.model else export_random_step(args.checkpoint, args.d_model, args.out)
        )
        print(f"CPU: ONNX Runtime on {model}, {args.steps} timed steps ...", flush=True)
        cpu = bench_cpu(model, args.steps, args.soak_steps, args.threads)
        result["cpu"] = cpu
        rows.append(
            (
                f"CPU ORT ({cpu['threads']} thread)",
                cpu["latency_us_median"],
                cpu["latency_us_p99"],
                f"floor {cpu['floor_us']:.1f} us ({cpu['weight_bytes']} B / "
                f"{cpu['memcpy_bytes_per_s'] / 1e9:.1f} GB/s): x{cpu['median_over_floor']:.2f} (<= 2)",
                cpu.get("rss_growth_bytes"),
            )
        )
    cuda = False
    if not args.skip_cuda:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
        if not cuda:
            print("CUDA: no torch CUDA device here; skipping the CUDA-graph runners")
    if cuda:
        print("CUDA: torch CUDA-graph runners ...", flush=True)
        res = bench_cuda(args.d_model, args.steps, args.cuda_soak_steps, args.checkpoint)
        result["cuda"] = res
        for r in res:
            if "error" in r:
                rows.append((r["runner"], float("nan"), float("nan"), r["error"][:60], None))
                continue
            rows.append(
                (
                    f"{r['runner']} {r['device']}",
                    r["latency_us_median"],
                    r["latency_us_p99"],
                    f"GPU {r['gpu_us_per_replay']:.1f} us/replay (target <= 20 us wall)",
                    r.get("memory_allocated_growth_bytes"),
                )
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"\n{'runner':<38} {'median us':>10} {'p99 us':>10}  {'mem growth B':>12}  note")
    for name, med, p99, note, growth in rows:
        print(f"{name:<38} {med:>10.1f} {p99:>10.1f}  {'-' if growth is None else growth:>12}  {note}")
    return 0
