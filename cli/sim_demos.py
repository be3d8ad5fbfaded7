"""Record demonstrations in LIBERO's robomimic-style HDF5 layout, on fresh scene layouts by default.

The arm is driven by a backbone's base action (--backbone, default the scripted expert libero_expert).
--placements fresh (default) lays every episode's scene out afresh from the task's BDDL regions and never
uses LIBERO's 50 fixed init states (the evaluation set; each demo records its distance to the nearest one);
--placements fixed tries init states --start, --start+1, ... (analysis only, never training data). The work is
split into jobs of --tries-per-job episodes of one task, each writing its own file
(OUT/task{t}_b{batch}_demo.hdf5); the next job goes to the task furthest from its target (--per-task, or
--task-demos TASKS=N to weight the tasks a policy finds hard), so --workers
processes share the work, a task whose expert fails more gets more jobs, and a rerun skips finished jobs.
OUT/demos.json records every try. --noise-pos / --noise-rot perturb the executed actions with correlated
noise while the clean actions are recorded as the labels (DART: demos that show the way back to the
expert's path); --noise-transit M keeps the noise to the expert's transit moves (servo goals with a
tolerance >= M m), so it never has to hover into a precision goal against it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import add_backbone_arguments, at_least, per_task_counts
from sim.libero.action_noise import ActionNoise
from sim.libero.env import N_INIT_STATES
from sim.libero.recording import record_demos
from sim.libero.render import add_render_argument
from sim.libero.tasks import TASKS_HELP, parse_tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="0-9", help=TASKS_HELP)
    parser.add_argument("--per-task", type=int, default=10, help="successful demos to keep per task")
    parser.add_argument(
        "--task-demos",
        action="append",
        default=[],
        metavar="TASKS=N",
        help="fresh placements: keep N demos of these tasks instead of --per-task (repeatable), e.g. 7-9=90",
    )
    parser.add_argument(
        "--placements",
        choices=("fresh", "fixed"),
        default="fresh",
        help="fresh scene layouts (training data) or LIBERO's fixed init states",
    )
    parser.add_argument("--tries-per-job", type=int, default=8, help="episodes per job (one file per job)")
    parser.add_argument(
        "--max-tries",
        type=int,
        default=None,
        help="fresh: episodes per task at most (default 10 x --per-task)",
    )
    parser.add_argument("--start", type=int, default=0, help="fixed: first init state to try")
    parser.add_argument(
        "--first-pass",
        choices=("auto", "camera-free", "cameras"),
        default="auto",
        help="auto: camera-free then a rendered replay for privileged backbones",
    )
    add_backbone_arguments(parser, "libero_expert", "backbone whose actions are recorded")
    parser.add_argument("--image-size", type=int, default=128, help="rendered image side in pixels")
    noise = parser.add_argument_group(
        "action noise (DART)",
        "perturb the executed actions, record the clean ones (sim/libero/action_noise.py)",
    )
    noise.add_argument(
        "--noise-pos", type=float, default=0.0, help="sigma on the 3 position actions (0: off)"
    )
    noise.add_argument(
        "--noise-rot", type=float, default=0.0, help="sigma on the 3 rotation actions (0: off)"
    )
    noise.add_argument("--noise-tau", type=float, default=5.0, help="correlation time in control steps")
    noise.add_argument(
        "--noise-transit",
        type=float,
        default=0.0,
        metavar="M",
        help="perturb only steps whose servo goal tolerance is >= M metres (e.g. 0.015: cruise, lift and "
        "carry, never precision approaches, grasps or releases); 0: every step",
    )
    add_render_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="episode seed (and the base of placement seeds)")
    parser.add_argument("--workers", type=int, default=2, help="jobs recorded in parallel")
    parser.add_argument("--out", default="runs/libero_demos", help="output directory (HDF5 per job)")


def run(args: argparse.Namespace) -> int:
    from policies.factory import make_backbone, parse_fields

    tasks = parse_tasks(args.tasks, "--tasks")
    if not 1 <= args.per_task <= (N_INIT_STATES if args.placements == "fixed" else 10_000):
        raise ValueError(
            f"--per-task must be in 1..{N_INIT_STATES} with fixed placements, got {args.per_task}"
        )
    if not 0 <= args.start < N_INIT_STATES:
        raise ValueError(f"--start must be in 0..{N_INIT_STATES - 1}, got {args.start}")
    at_least(args, 1, "workers", "image_size", "tries_per_job", "max_tries")
    targets = per_task_counts(tasks, args.per_task, args.task_demos, "--task-demos", args.tasks)
    if args.placements == "fixed" and args.task_demos:
        raise ValueError("--task-demos: only with --placements fresh (fixed tries the init states in order)")
    if max(targets.values()) > 10_000:
        raise ValueError(f"--task-demos: at most 10000 demos per task, got {max(targets.values())}")
    backbone_args = parse_fields(args.backbone_arg)
    # fail here, not in every worker: the gate reads the acting backbone's goal_tolerance each step
    if (
        args.noise_transit
        and getattr(make_backbone(args.backbone, backbone_args), "goal_tolerance", None) is None
    ):
        raise ValueError(
            f"--noise-transit: gates on the backbone's goal_tolerance (the scripted expert's goals); "
            f"--backbone {args.backbone} reports none"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    doc = record_demos(
        tasks,
        out,
        per_task=targets,
        tries_per_job=args.tries_per_job,
        placements=args.placements,
        start=args.start,
        max_tries=args.max_tries,
        first_pass=args.first_pass,
        image_size=args.image_size,
        render=args.render,
        seed=args.seed,
        workers=args.workers,
        backbone=args.backbone,
        backbone_args=backbone_args,
        action_noise=ActionNoise(args.noise_pos, args.noise_rot, args.noise_tau, args.noise_transit),
    )
    results = doc["results"]
    print("| task | demos kept | successes / tries | mean steps | files |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['task']} | {r['demos']} | {r['expert_success']} | {r['mean_steps'] or 0:.0f} "
            f"| {len(r['files'])} |"
        )
    print(f"[demos] {sum(r['demos'] for r in results)} demos in {doc['wall_s']:.0f} s; {out / 'demos.json'}")
    short = [r["task"] for r in results if r["demos"] < targets[r["task"]]] + [
        e["task"] for e in doc["errors"]
    ]
    return 1 if short else 0
