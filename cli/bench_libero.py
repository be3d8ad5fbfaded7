"""Steady-state LIBERO env throughput with N parallel workers, and where a step's time goes.

Each worker builds a LiberoEnv (task tasks[i % len(tasks)]), resets, waits at a barrier so all workers step
at the same time, then runs --steps steps camera-free and --steps steps with the cameras on, driven by a
backbone's base action (the scripted expert by default). Prints aggregate env-steps/s of each phase (steps
of all workers / wall time of the slowest), per-step ms and the render share. Env creation and resets are
excluded; `aura eval libero` reports end-to-end throughput including them.
"""

from __future__ import annotations

import argparse
import json

from cli.common import at_least
from sim.libero.bench import run_throughput
from sim.libero.render import add_render_argument
from sim.libero.tasks import TASKS_HELP, parse_tasks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="env worker processes")
    p.add_argument("--steps", type=int, default=60, help="steps per worker and phase")
    p.add_argument("--tasks", default="0,1", help="tasks, one per worker in turn: " + TASKS_HELP)
    p.add_argument("--cameras", default="image,wrist_image", help="cameras of the 'cameras' phase")
    p.add_argument("--image-size", type=int, default=128, help="rendered image side in pixels")
    p.add_argument("--backbone", default="libero_expert", help="backbone whose base action drives the arm")
    add_render_argument(p)
    p.add_argument("--lp-threads", type=int, default=None, help="LP_NUM_THREADS for the workers")
    p.add_argument("--no-cull", action="store_true", help="robosuite's renderer (baseline; faithful only)")
    p.add_argument("--json", default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    at_least(args, 1, "workers", "steps", "image_size")
    if args.no_cull and args.render != "faithful":
        raise ValueError("--no-cull measures the faithful baseline; drop --render")
    args.tasks = parse_tasks(args.tasks, "--tasks")
    summary = run_throughput(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0
