"""Closed-loop `aura train` data: a frozen backbone drives LIBERO-Long on fresh layouts, the expert labels.

Each episode (task, k) lays the scene out afresh from placement seed --placement-base + task * 10007 + k
(never one of LIBERO's 50 fixed init states, the evaluation set; checked against the demos record of
--exclude-demos). The backbone (--backbone, default libero_vla from --checkpoint) executes its base action;
with --beta P the scripted expert executes instead with probability P per episode or per step
(--beta-mode; DAgger mixing). The expert runs as a shadow every step on the real simulator state, and its
action is the target; where it is undefined (plan finished, raised, non-finite) the target is NaN
(unsupervised). OUT/episodes/ holds one file per episode (a rerun skips them); OUT/rollouts.safetensors
is the sequence file for `aura train --data` (features, base_actions, target_actions; also executed
actions, expert stage and per-episode success, steps, labelled fraction, placement seed);
OUT/rollouts.json the record. With --images each episode file also keeps both camera videos, the
proprio and the labels in the demo layout, so `aura train backbone --demos DEMOS OUT/episodes` trains the
pixel backbone on the aggregated data (DAgger). With --instruction-steps K (the transient-instruction
variant) the backbone gets the instruction at steps t < K only and the expert labels with the goal, or
with --teacher backbone the same backbone with the instruction visible does: AuraMem's data for issue 13.
Math and semantics: sim/libero/rollouts.py, sim/libero/labels.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import add_backbone_arguments, add_instruction_steps_argument, at_least, per_task_counts
from sim.libero.env import MAX_STEPS
from sim.libero.render import add_render_argument
from sim.libero.rollouts import BETA_MODES, PLACEMENT_BASE, TEACHERS
from sim.libero.rollouts_io import DEFAULT_DEMOS_RECORD
from sim.libero.tasks import TASKS_HELP, parse_tasks

# the path field of each shipped pixel backbone's config, filled from --checkpoint
PATH_FIELDS = {"libero_vla": "checkpoint", "libero_vla_onnx": "model"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="0-9", help=TASKS_HELP)
    parser.add_argument("--per-task", type=int, default=10, help="rollouts per task")
    parser.add_argument(
        "--task-episodes",
        action="append",
        default=[],
        metavar="TASKS=N",
        help="N rollouts for these tasks instead of --per-task (repeatable), e.g. 7-9=60",
    )
    add_backbone_arguments(
        parser, "libero_vla", "frozen backbone that acts (registered name or module:Class)"
    )
    parser.add_argument(
        "--checkpoint",
        default="checkpoints/libero-vla",
        help="libero_vla: checkpoint directory; libero_vla_onnx: the exported .onnx file",
    )
    parser.add_argument("--beta", type=float, default=0.0, help="probability that the expert executes")
    parser.add_argument(
        "--beta-mode", choices=BETA_MODES, default="episode", help="draw beta per episode or step"
    )
    parser.add_argument(
        "--placement-base",
        type=int,
        default=PLACEMENT_BASE,
        help="first placement seed (disjoint from demos)",
    )
    parser.add_argument(
        "--exclude-demos",
        default=None,
        help="demos.json (or its dir) whose placement seeds must not be reused "
        f"(default {DEFAULT_DEMOS_RECORD} when present)",
    )
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS, help="steps per episode at most")
    parser.add_argument("--image-size", type=int, default=128, help="rendered image side in pixels")
    add_render_argument(parser)
    parser.add_argument(
        "--images",
        action="store_true",
        help="also store camera frames + proprio + labels (training data for aura train backbone)",
    )
    add_instruction_steps_argument(parser)
    parser.add_argument(
        "--teacher",
        choices=TEACHERS,
        default="expert",
        help="who labels the visited states: the scripted expert (shadow), or with --instruction-steps the "
        "acting backbone itself with the instruction visible (sim.libero.labels)",
    )
    parser.add_argument("--seed", type=int, default=0, help="episode seed (beta draws)")
    parser.add_argument("--workers", type=int, default=1, help="episodes run in parallel")
    parser.add_argument("--retries", type=int, default=2, help="retries of a crashed or failing episode")
    parser.add_argument(
        "--episode-timeout", type=float, default=3600.0, help="seconds before a worker is killed"
    )
    parser.add_argument("--out", default="runs/libero_rollouts", help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def episode_counts(args: argparse.Namespace, tasks: list[int]) -> dict[int, int]:
    """Rollouts per task: --per-task, overridden by each --task-episodes TASKS=N (tasks within --tasks)."""
    return per_task_counts(tasks, args.per_task, args.task_episodes, "--task-episodes", args.tasks)


def backbone_fields(args: argparse.Namespace) -> dict:
    """--backbone-arg fields, with --checkpoint as the shipped backbones' path field (checked here)."""
    from policies.factory import config_fields, parse_fields, resolve

    fields = parse_fields(args.backbone_arg)
    key = PATH_FIELDS.get(args.backbone)
    if key is not None and key not in fields:
        path = Path(args.checkpoint)
        want_file = key == "model"
        if not (path.is_file() if want_file else path.is_dir()):
            what = "an exported .onnx file" if want_file else "a checkpoint directory"
            raise ValueError(
                f"--checkpoint {path}: not {what} (no such {'file' if want_file else 'directory'})"
            )
        fields[key] = str(path)
    known = config_fields(resolve(args.backbone)[0])
    if known is not None and "threads" in known and "threads" not in fields:
        # One intra-op thread per worker: the env renders on the same cores. Measured on the 2-core CPU,
        # libero_vla per call: 14 ms with 1 thread, 126 ms with torch's default 2, 680 ms next to the env.
        fields["threads"] = 1
    return fields


def run(args: argparse.Namespace) -> int:
    from policies.factory import make_backbone
    from sim.libero.env import check_instruction_steps
    from sim.libero.rollouts import check_teacher, collect_rollouts
    from sim.libero.rollouts_io import check_disjoint, print_summary

    tasks = parse_tasks(args.tasks, "--tasks")
    check_instruction_steps(args.instruction_steps, "--instruction-steps")  # before loading the backbone
    check_teacher(args.teacher, args.instruction_steps)
    at_least(args, 1, "per_task", "workers", "max_steps")
    at_least(args, 0, "retries", "placement_base")
    if not 16 <= args.image_size <= 1024:
        raise ValueError(f"--image-size must be in 16..1024, got {args.image_size}")
    if not 0.0 <= args.beta <= 1.0:
        raise ValueError(f"--beta must be in [0, 1], got {args.beta}")
    counts = episode_counts(args, tasks)
    most = max(counts.values())
    if most > 10_007:
        raise ValueError(
            f"--per-task/--task-episodes must be <= 10007 (placement seeds of tasks would overlap), "
            f"got {most}"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    demos = args.exclude_demos or (DEFAULT_DEMOS_RECORD if DEFAULT_DEMOS_RECORD.is_file() else None)
    compared = check_disjoint(Path(demos), tasks, most, args.placement_base) if demos else 0
    fields = backbone_fields(args)
    spec = make_backbone(args.backbone, fields).spec  # fail here, naming the option, not in every worker
    if spec.image_size and spec.image_size != args.image_size:
        raise ValueError(
            f"--image-size {args.image_size}: backbone {args.backbone} reads {spec.image_size} px"
        )
    if args.images and not {"image", "wrist_image"} <= set(spec.cameras):
        raise ValueError(
            f"--images: backbone {args.backbone} reads cameras {tuple(spec.cameras)}, not both "
            "image and wrist_image (nothing to store for aura train backbone)"
        )
    if spec.d_action != 7:
        raise ValueError(f"--backbone {args.backbone}: d_action {spec.d_action}, LIBERO actions are 7-d")
    doc = collect_rollouts(
        tasks,
        out,
        per_task=counts,
        backbone=args.backbone,
        backbone_args=fields,
        beta=args.beta,
        beta_mode=args.beta_mode,
        placement_base=args.placement_base,
        max_steps=args.max_steps,
        image_size=args.image_size,
        render=args.render,
        images=args.images,
        instruction_steps=args.instruction_steps,
        teacher=args.teacher,
        seed=args.seed,
        workers=args.workers,
        retries=args.retries,
        episode_timeout=args.episode_timeout,
        progress=not args.quiet,
    )
    doc["this_run"]["exclude_demos"] = dict(record=str(demos) if demos else None, seeds_compared=compared)
    (out / "rollouts.json").write_text(json.dumps(doc, indent=1))
    print_summary(doc)
    run_ = doc["this_run"]
    if run_["env_steps"]:
        r = {k: v for k, v in run_.items() if k.endswith("_s") or k.endswith("_step")}
        print(
            f"[rollouts] this run: {run_['episodes']} episodes, {run_['env_steps']} env steps in "
            f"{r['wall_s']:.1f} s with {args.workers} worker(s): {r['s_per_env_step']:.3f} s per env step "
            f"end to end; inside an episode {r['episode_s_per_env_step']:.3f} s = backbone "
            f"{r['backbone_s_per_step']:.3f} + expert {r['expert_s_per_step']:.3f} + env (physics and "
            f"render) {r['env_s_per_step']:.3f}"
        )
    if doc["data"]:
        print(
            f"[rollouts] wrote {doc['data']}: {doc['shape'][0]} sequences x {doc['shape'][1]} steps x "
            f"{doc['shape'][2]} features, {doc['supervised_steps']}/{doc['steps']} steps labelled; "
            f"record {out / 'rollouts.json'}"
        )
    else:
        print(f"[rollouts] no finished episode in {out}; record {out / 'rollouts.json'}")
    return 1 if run_["failed"] or doc["missing"] else 0
