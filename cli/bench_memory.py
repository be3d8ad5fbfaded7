"""Time the memory rule's forms against each other: the naive loop, the torch chunk form and, on a CPU,
the fused C kernel; on CUDA also fla's chunk_gdn2 called directly and gdn2_chunk dispatching to it.
Shapes B64 T520 and B16 T4096 (H1, d32), forward and fwd+bwd; prints a table and the speed-ups, and
writes JSON with --json. docs/memory.md has the results and how to read them."""

from __future__ import annotations

import argparse

DTYPES = ("float32", "bfloat16", "float16", "float64")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, or cuda[:N] (adds fla's rows with fla-core)")
    parser.add_argument(
        "--dtype", choices=DTYPES, default=None, help="input dtype; unset: float32 on cpu, bfloat16 on cuda"
    )
    parser.add_argument("--reps", type=int, default=5, help="timed calls per chunk, kernel and fla row")
    parser.add_argument("--naive-reps", type=int, default=2, help="timed calls per naive row")
    parser.add_argument(
        "--chunk-sizes",
        type=int,
        nargs="+",
        default=None,
        metavar="C",
        help="torch chunk sizes, powers of two; unset: the torch form's default on the device",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads; unset: torch's default")
    parser.add_argument("--quick", action="store_true", help="only B64 T520 (smoke runs)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here as JSON")


def at_least(option: str, value: int | None, low: int = 1) -> None:
    """``ValueError`` naming ``option`` unless ``value`` is None or >= ``low``."""
    if value is not None and value < low:
        raise ValueError(f"{option} must be >= {low}, got {value}")


def torch_device(option: str, text: str):
    """``text`` as a ``torch.device``: cpu, or cuda where CUDA is available; else ``ValueError`` naming
    ``option``."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"{option} must be cpu or cuda[:N], got {text!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{option} must be cpu or cuda[:N], got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option} {text}: CUDA is not available here")
    return device


def run(args: argparse.Namespace) -> int:
    for option, value in (
        ("--reps", args.reps),
        ("--naive-reps", args.naive_reps),
        ("--threads", args.threads),
    ):
        at_least(option, value)
    for c in args.chunk_sizes or ():
        if c < 1 or c & (c - 1):
            raise ValueError(f"--chunk-sizes must be powers of two >= 1, got {c}")
    device = torch_device("--device", args.device)
    from aura.bench.memory import bench_memory

    bench_memory(
        device,
        args.dtype,
        reps=args.reps,
        naive_reps=args.naive_reps,
        chunk_sizes=args.chunk_sizes,
        threads=args.threads,
        quick=args.quick,
        json_path=args.json,
    )
    return 0
