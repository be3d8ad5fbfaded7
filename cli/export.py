"""Export a checkpoint's per-step graph to ONNX (opset 18, static shapes, batch 1), check it, run parity.

The graph is AuraMem.step traced by torch.onnx (dynamo) and checked with onnx.checker(full_check=True).
Parity: torch and ONNX Runtime each run --parity-steps recurrent steps on the same random inputs, each on
its own state; it prints the max abs error and write-flag disagreements (targets <= 1e-5 and 0) and the
deployed path (the runtime's exact numpy commit) against torch. --check-trt checks the graph against
TensorRT 10.3's ONNX parser rules (op types, dtypes, constant axes, opset, IR; deploy/export/trt_check.py)
without TensorRT: its problems are printed one per line and the command exits 1. --trt also builds a
TensorRT engine (needs TensorRT, i.e. a Jetson); --fp16 lets it pick fp16 kernels.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from deploy.export.step_graph import export_checkpoint, graph_digest, parity


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="AuraMem checkpoint directory (model.safetensors + config.json)")
    parser.add_argument("--out", required=True, help="where to write the ONNX per-step graph")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--parity-steps", type=int, default=10_000, help="0 skips the parity run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the export/parity report here")
    parser.add_argument(
        "--check-trt", action="store_true", help="check the graph against TensorRT 10.3's ONNX parser rules"
    )
    parser.add_argument("--trt", default=None, metavar="ENGINE", help="also build a TensorRT engine (Jetson)")
    parser.add_argument("--fp16", action="store_true", help="TensorRT: allow fp16 kernels")
    parser.add_argument("--workspace-mb", type=int, default=256, help="TensorRT builder workspace limit")


def _check_args(args: argparse.Namespace) -> None:
    if not 9 <= args.opset <= 20:
        raise ValueError(f"--opset must be in 9..20 (what TensorRT 10 parses), got {args.opset}")
    if args.parity_steps < 0:
        raise ValueError(f"--parity-steps must be >= 0, got {args.parity_steps}")
    if args.workspace_mb < 1:
        raise ValueError(f"--workspace-mb must be >= 1, got {args.workspace_mb}")
    for option, value in (("--out", args.out), ("--json", args.json), ("--trt", args.trt)):
        if value is not None and Path(value).is_dir():
            raise ValueError(f"{option} {value}: is a directory (give a file path)")


def check_trt_cli(path, report: dict) -> bool:
    """``--check-trt``: print the TensorRT parser check (problems one per line), record it in ``report``."""
    from deploy.export.trt_check import SOURCE, check_report

    passed, lines = check_report(path)
    print("\n".join(lines), flush=True)
    report["trt_check"] = {"passed": passed, "rules": SOURCE, "lines": lines}
    return passed


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    module, path = export_checkpoint(args.checkpoint, args.out, args.opset)
    size = path.stat().st_size
    digest = graph_digest(path)
    print(f"wrote {path} ({size / 1024:.1f} KiB, opset {args.opset}, onnx.checker full_check passed)")
    print(f"graph sha256 {digest} (sealed in the file; aura run verifies it at load)")
    report = {
        "onnx": os.fspath(path),
        "bytes": size,
        "opset": args.opset,
        "checker": "full_check passed",
        "sha256": digest,
    }
    ok = True
    if args.check_trt:
        ok = check_trt_cli(path, report)
    if args.parity_steps > 0:
        from rich.console import Console
        from rich.table import Table

        print(f"parity: torch vs ONNX Runtime over {args.parity_steps} recurrent steps ...", flush=True)
        par = parity(module, path, steps=args.parity_steps, seed=args.seed)
        report["parity"] = par
        ok = ok and par["passed"]
        table = Table(title=f"parity over {par['steps']} steps ({par['writes_torch']} writes in torch)")
        for col in ("path", "max abs error", "write disagreements", "target"):
            table.add_column(col)
        table.add_row(
            "ONNX graph, own new_state",
            f"{par['max_abs_err']:.3g}",
            str(par["write_disagreements"]),
            "<= 1e-5, 0",
        )
        rt = par["runtime_max_abs_err_by_output"]
        table.add_row(
            "runtime (numpy commit)",
            f"{max(rt.values()):.3g}",
            str(par["runtime_write_disagreements"]),
            "(reported)",
        )
        Console().print(table)
        print(
            f"max abs error: {par['max_abs_err']:.3g}  write-flag disagreements: {par['write_disagreements']}"
            f"  -> {'PASS' if ok else 'FAIL'}"
        )
    if args.trt:
        from deploy.runtime.trt_runner import build_engine

        try:
            build_engine(path, args.trt, fp16=args.fp16, workspace_mb=args.workspace_mb)
        except ImportError as err:
            raise ValueError(
                f"--trt: TensorRT is not importable here ({err}); "
                "build the engine on the Jetson (docs/deploy.md)"
            ) from err
        report["engine"] = args.trt
        print(f"wrote TensorRT engine {args.trt}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if ok else 1
