"""How much each rendering shortcut changes LIBERO's images, measured on the same states.

For each task one env is reset to init state 0 and driven by seeded random actions; both cameras are
rendered four ways from the same MuJoCo states (robosuite's renderer = LIBERO's pixels, culled (must be
identical), fast, fastest). Prints per task and camera the mean absolute difference in 8-bit levels, the
largest one and the PSNR against the reference.
"""

from __future__ import annotations

import argparse
import json

from cli.common import at_least
from sim.libero.render_check import check_task
from sim.libero.tasks import TASKS_HELP, parse_tasks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", default="0-9", help=TASKS_HELP)
    p.add_argument("--steps", type=int, default=10, help="random-action steps per task")
    p.add_argument("--image-size", type=int, default=128, help="rendered image side in pixels")
    p.add_argument("--json", default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    at_least(args, 1, "steps", "image_size")
    results = []
    for t in parse_tasks(args.tasks, "--tasks"):
        r = check_task(t, args.steps, args.image_size)
        results.append(r)
        for key, d in r["diff"].items():
            print(
                f"task {t} {key:>28}: mean |diff| {d['mad']:.2f}, max {d['max_abs']:.0f}, "
                f"PSNR min {d['psnr_min']:.1f} / mean {d['psnr_mean']:.1f} dB; faces {r['faces']}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0
