"""Run GDN-2 memories for many steps and report the largest state norm ||S||_F: random gates, DeltaNet-like
gates, repeated and colinear keys, and the adversarial 2-cycle that grows like (sqrt(5)/2)^t, with and
without the norm guard; float32 and float64. Prints a table and writes JSON with --json (also while it
runs, so a stopped run leaves partial results). docs/memory.md has the results."""

from __future__ import annotations

import argparse
import math

from cli.bench_memory import at_least, torch_device

DTYPES = ("float32", "float64")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=1_000_000, help="steps per run")
    parser.add_argument("--runs", type=int, default=16, help="independent runs per case, batched")
    parser.add_argument("--d", type=int, default=32, help="d_key = d_val")
    parser.add_argument(
        "--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES, help="state dtypes, in turn"
    )
    parser.add_argument(
        "--max-norm", type=float, default=1e3, help="the guard's threshold in the guarded case"
    )
    parser.add_argument("--block", type=int, default=1000, help="steps whose inputs are drawn at once")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs, in [0, 2**63)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 suits its small ops)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here as JSON")


def run(args: argparse.Namespace) -> int:
    for name in ("steps", "runs", "d", "block", "threads"):
        at_least(f"--{name}", getattr(args, name))
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be in [0, 2**63), got {args.seed}")
    if not (math.isfinite(args.max_norm) and args.max_norm > 0):
        raise ValueError(f"--max-norm must be a positive finite number, got {args.max_norm}")
    device = torch_device("--device", args.device)
    from aura.bench.stability import bench_stability

    bench_stability(
        args.steps,
        args.runs,
        d=args.d,
        dtypes=tuple(args.dtypes),
        max_norm=args.max_norm,
        block=args.block,
        seed=args.seed,
        threads=args.threads,
        device=str(device),
        json_path=args.json,
    )
    return 0
