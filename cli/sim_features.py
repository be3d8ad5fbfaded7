"""Run a backbone over recorded demonstrations and write `aura train` sequences (safetensors).

For every demo of --demos (a directory of task*_demo.hdf5 files from `aura sim demos`, or one file) the
backbone sees each recorded observation (cameras, proprio, the instruction; a privileged backbone also the
simulator restored to the recorded state) and its features z_t and base action are stored next to the
demonstrator's action as the target: --out FILE holds features [N, T, d_model], base_actions and
target_actions [N, T, 7] (NaN on padding). Train the memory on it with `aura train --data FILE`.

--instruction-steps K (the transient-instruction variant, issue 13): the backbone sees the instruction at
demo steps t < K only and the empty string after, as `LiberoEnv(task, instruction_steps=K)` and `aura eval
libero --instruction-steps K` hand it to a policy, so the stored features and base actions are the deployed
policy's; the targets stay the demonstrator's actions. K is recorded in the file's metadata
(``aura.features``) and in the JSON record next to it. Default: the instruction at every step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aura.training.data import save_sequences
from cli.common import add_backbone_arguments, add_instruction_steps_argument
from sim.libero.features import FEATURES_META_KEY, demo_files, extract


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demos", required=True, help="directory of task*_demo.hdf5 files, or one file")
    add_backbone_arguments(parser, "libero_expert", "registered backbone name or module:Class")
    parser.add_argument("--out", required=True, help="sequence file to write (.safetensors)")
    add_instruction_steps_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from policies.factory import make_backbone, parse_fields

    out = Path(args.out)
    from sim.libero.env import check_instruction_steps

    check_instruction_steps(args.instruction_steps, "--instruction-steps")  # before loading the backbone
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory (give a .safetensors file path)")
    files = demo_files(Path(args.demos))
    fields = parse_fields(args.backbone_arg)
    backbone = make_backbone(args.backbone, fields)
    arrays, record = extract(
        backbone, files, progress=not args.quiet, instruction_steps=args.instruction_steps
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    record.update(backbone=args.backbone, d_model=backbone.spec.d_model, shape=list(arrays["features"].shape))
    meta = dict(
        instruction_steps=record["instruction_steps"],
        backbone=args.backbone,
        backbone_args=fields,
        demos=str(args.demos),
    )
    save_sequences(
        out,
        arrays["features"],
        arrays["base_actions"],
        arrays["target_actions"],
        metadata={FEATURES_META_KEY: json.dumps(meta)},
    )
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    n, t, d = arrays["features"].shape
    seen = "always" if args.instruction_steps is None else f"at steps t < {args.instruction_steps}"
    print(
        f"wrote {out}: {n} sequences x {t} steps x {d} features ({record['steps']} supervised steps) "
        f"from {len(files)} file(s), the instruction {seen}; record {out.with_suffix('.json')}"
    )
    return 0
