"""Export a LIBERO pixel-backbone checkpoint to ONNX (opset 18, static shapes, batch 1), with parity.

The graph: image, wrist_image (uint8 [1,S,S,3]), state [1,8], tokens (int64 [1,L]) -> features [1,d_model],
actions [1,K,7]; the backbone interface (sizes, tokenizer) is stored in its metadata, so the file alone is
what `--backbone libero_vla_onnx --backbone-arg model=FILE` needs. Checks: onnx.checker full_check, then
torch vs ONNX Runtime on --n-frames frames (of --frames DEMO.hdf5, else random): max abs error on features
and actions (with the bins head: features and logits, and the decoded actions that differ are counted)
<= 1e-4, else exit 1. --check-trt also checks the graph against TensorRT 10.3's ONNX parser
rules (deploy/export/trt_check.py): problems one per line, exit 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.export import check_trt_cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint directory from `aura train backbone`")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--frames", default=None, help="a demo HDF5 file whose frames the parity check runs")
    parser.add_argument("--n-frames", type=int, default=100, help="frames in the parity check")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random frames (without --frames)")
    parser.add_argument("--json", default=None, help="write the report here")
    parser.add_argument(
        "--check-trt", action="store_true", help="check the graph against TensorRT 10.3's ONNX parser rules"
    )


def run(args: argparse.Namespace) -> int:
    from deploy.export.backbone_graph import export_checkpoint

    if args.n_frames < 1:
        raise ValueError(f"--n-frames must be >= 1, got {args.n_frames}")
    r = export_checkpoint(args.checkpoint, args.out, args.frames, args.n_frames, args.opset, args.seed)
    trt_ok = check_trt_cli(r["onnx"], r) if args.check_trt else True
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=1))
    e = r["max_abs_err_by_output"]
    print("| frames | source | max err features | max err actions | torch ms | ORT ms | MB | parity |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {r['frames']} | {r['frames_source']} | {e['features']:.2e} | {e['actions']:.2e} | "
        f"{r['mean_ms']['torch']:.1f} | {r['mean_ms']['onnxruntime']:.1f} | {r['bytes'] / 1e6:.1f} | "
        f"{'passed' if r['passed'] else 'FAILED'} (<= {r['tolerance']:g}) |"
    )
    if r.get("action_head") == "bins":
        print(
            f"[export] bins head: parity on features and logits (max err logits {e['logits']:.2e}); decoded "
            f"actions differing (argmax near-ties): {r['actions_differ']} of {r['frames']} frames x K x 7, "
            f"in {r['frames_with_differing_actions']} frames"
        )
    ref = r["float64_ref"]
    print(
        f"[export] against a float64 copy ({ref['frames']} frames): torch {ref['torch']:.2e}, "
        f"ONNX Runtime {ref['onnxruntime']:.2e} (float32 rounding when the two are alike)"
    )
    print(f"[export] {r['onnx']}" + (f"; report {args.json}" if args.json else ""))
    return 0 if r["passed"] and trt_ok else 1
