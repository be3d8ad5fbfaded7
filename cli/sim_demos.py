"""Record demonstrations in LIBERO's robomimic-style HDF5 layout (one file per task, OUT/task{t}_demo.hdf5).

The arm is driven by a backbone's base action (--backbone, default the scripted expert libero_expert).
For each task, init states --start, --start+1, ... are tried until --per-task successful episodes are kept;
a privileged backbone runs camera-free first and only its successes are replayed with the cameras (the env
is deterministic; a replay that diverges is dropped and reported). OUT/demos.json records every try.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import add_backbone_arguments, at_least, int_list
from sim.libero.demos import record_demos
from sim.libero.env import N_INIT_STATES, N_TASKS
from sim.libero.render import add_render_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="0-9", help="libero_10 task ids, e.g. 0,2,5-9")
    parser.add_argument("--per-task", type=int, default=10, help="successful demos to keep per task")
    parser.add_argument("--start", type=int, default=0, help="first init state to try")
    add_backbone_arguments(parser, "libero_expert", "backbone whose actions are recorded")
    parser.add_argument("--image-size", type=int, default=128, help="rendered image side in pixels")
    add_render_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="episode seed")
    parser.add_argument("--workers", type=int, default=2, help="tasks recorded in parallel")
    parser.add_argument("--out", default="runs/libero_demos", help="output directory (one HDF5 per task)")


def run(args: argparse.Namespace) -> int:
    from policies.factory import parse_fields

    tasks = int_list(args.tasks, N_TASKS, "--tasks")
    if not 1 <= args.per_task <= N_INIT_STATES:
        raise ValueError(f"--per-task must be in 1..{N_INIT_STATES}, got {args.per_task}")
    if not 0 <= args.start < N_INIT_STATES:
        raise ValueError(f"--start must be in 0..{N_INIT_STATES - 1}, got {args.start}")
    at_least(args, 1, "workers", "image_size")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    doc = record_demos(
        tasks,
        out,
        per_task=args.per_task,
        start=args.start,
        image_size=args.image_size,
        render=args.render,
        seed=args.seed,
        workers=args.workers,
        backbone=args.backbone,
        backbone_args=parse_fields(args.backbone_arg),
    )
    results = doc["results"]
    print("| task | demos kept | success on tried init states | mean steps | file |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['task']} | {r['demos']} | {r['expert_success']} | {r['mean_steps'] or 0:.0f} "
            f"| {r['file']} |"
        )
    print(f"[demos] {sum(r['demos'] for r in results)} demos in {doc['wall_s']:.0f} s; {out / 'demos.json'}")
    short = [r["task"] for r in results if r["demos"] < args.per_task] + [e["task"] for e in doc["errors"]]
    return 1 if short else 0
