"""Turn transient-instruction sequences into context targets: the memory restores the backbone's context.

--data FILE is an `aura sim rollouts` or `aura sim features --instruction-steps K` file (features z_t
recorded with the instruction blanked after K steps). --out FILE keeps z_t and replaces the actions with
the backbone's context vectors (sim.libero.context): base = c_t, the context the backbone sees at step t
(l(instruction) at t < K, l("") after), target = l(instruction). `aura train --data OUT` then trains an
AuraMem whose output is the context (its config's output = "context"), and `aura eval libero` runs the
frozen backbone on the memory's c-hat_t. The backbone (default: the one recorded in FILE) must take a
context (libero_vla's torch backbone: its text embedding).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import add_backbone_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="rollouts / features sequence file (.safetensors)")
    add_backbone_arguments(parser, None, "backbone name; unset: the one --data was recorded with")
    parser.add_argument("--out", required=True, help="context-target sequence file to write (.safetensors)")


def run(args: argparse.Namespace) -> int:
    from policies.factory import make_backbone, parse_fields
    from sim.libero.context import source_settings, write_context_sequences
    from sim.libero.features import sequence_header

    data, out = Path(args.data), Path(args.out)
    if out.resolve() == data.resolve():
        raise ValueError(f"--out {out}: is --data (write the context targets to a new file)")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory (give a .safetensors file path)")
    name, fields = args.backbone, parse_fields(args.backbone_arg)
    if name is None:
        if not data.is_file():
            raise ValueError(f"--data {data}: no such file")
        settings = source_settings(data, sequence_header(data))  # the header only: the arrays are read once
        name = settings.get("backbone")
        if not name:
            raise ValueError(f"--data {data}: records no backbone; give --backbone")
        fields = dict(settings.get("backbone_args") or {}, **fields)
    summary = write_context_sequences(data, make_backbone(name, fields), out)
    out.with_suffix(".json").write_text(
        json.dumps(dict(summary, backbone=name, backbone_args=fields), indent=1)
    )
    print(
        f"wrote {out}: {summary['rows']} sequences x {summary['steps']} steps, context targets of "
        f"{summary['d_context']} dims for {summary['tasks']} instruction(s) ({summary['labelled_steps']} "
        f"labelled steps), instruction at t < {summary['instruction_steps']}"
    )
    return 0
