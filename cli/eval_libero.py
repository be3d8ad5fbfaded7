"""Closed-loop LIBERO-Long evaluation of memory arms around a frozen backbone.

--tasks takes libero_10 ids, suite-qualified names (libero_90:NAME) and task groups (sim.libero.tasks);
records keep each task's id (other suites' ids are printed with their names at the start).

An episode is (task, init state, arm, seed); one JSON line per episode goes to
OUT/episodes[.shard-i-of-n].jsonl, failed attempts included. A rerun with the same OUT resumes (episodes with
an ok record are skipped); --shard i/n takes every n-th (task, init state) pair with all its arms (the
budget-matched arms need the AURA arm's write count of the same pair); crashed episodes are retried
--retries times. At the end summary.json / summary.md (Wilson 95 % intervals) and plots are written from
every JSONL in OUT.
--backbone: libero_expert (scripted expert, privileged features), libero_noop, any registered name or
module:Class (fields via --backbone-arg); the cameras rendered are the ones it declares unless --cameras.
--arms kv is the always-write KV-cache baseline; --kv-checkpoint loads it (from `aura train --arm kv`).
Each record and the summary count bytes per episode (journal, dense rewrite, KV), flash pages and the
projected lifetime at 20 Hz (sim.libero.arms.episode_bytes); write_positions.png shows where the arms
write against the sub-task boundaries (first step each BDDL goal predicate holds); gate_prob.png the aura
arm's per-step gate probability (records' gate_probs) against tau, with the instruction steps t < K shaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import add_backbone_arguments, add_instruction_steps_argument, at_least, int_list
from sim.libero.arms import ARMS, DEFAULT_ARMS
from sim.libero.env import CAMERAS, MAX_STEPS, N_INIT_STATES, check_instruction_steps
from sim.libero.evaluate import EvalPlan, rebuild_summary, run_evaluation
from sim.libero.render import add_render_argument
from sim.libero.scheduler import parse_shard
from sim.libero.tasks import N_TASKS, TASKS_HELP, parse_tasks, task_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="0-9", help=TASKS_HELP)
    parser.add_argument("--episodes", type=int, default=N_INIT_STATES, help="init states 0..N-1 per task")
    parser.add_argument(
        "--init-states", default=None, help="explicit init states, e.g. 0-4,10 (overrides --episodes)"
    )
    parser.add_argument(
        "--arms",
        default=None,
        help=f"comma list of {', '.join(ARMS)} (default: {','.join(DEFAULT_ARMS)}, and oracle with "
        "--instruction-steps)",
    )
    add_instruction_steps_argument(parser)
    add_backbone_arguments(parser, "libero_expert", "registered backbone name or module:Class")
    parser.add_argument("--checkpoint", default=None, help="trained AuraMem checkpoint dir (default: fresh)")
    parser.add_argument(
        "--kv-checkpoint", default=None, help="trained KV arm dir (aura train --arm kv; default: fresh)"
    )
    parser.add_argument(
        "--d-model",
        type=int,
        default=None,
        help="feature size of a fresh AuraMem (default: the checkpoint's, else the backbone's)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="episode seed (LIBERO RNG, model init, schedules)"
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel env worker processes")
    parser.add_argument("--ray", default=None, metavar="ADDRESS", help="run episodes as Ray tasks on ADDRESS")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th (task, init state) pair from i")
    parser.add_argument("--out", default="runs/libero_eval", help="results directory (resumed if present)")
    parser.add_argument("--fresh", action="store_true", help="discard this shard's earlier results")
    parser.add_argument("--retries", type=int, default=2, help="extra attempts for a crashed/failed episode")
    parser.add_argument(
        "--episode-timeout", type=float, default=1800.0, help="seconds before a worker is killed"
    )
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS, help="policy steps per episode")
    parser.add_argument(
        "--flash-config",
        default=None,
        help="JSON file with FlashConfig fields for the pages and lifetimes (docs/deploy.md; default part)",
    )
    parser.add_argument(
        "--control-hz", type=float, default=None, help="control rate of the lifetime projection (default 20)"
    )
    parser.add_argument(
        "--cameras", default=None, help="cameras to render (default: what the backbone needs)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="rendered image side in pixels (default: the backbone's, else 128)",
    )
    add_render_argument(parser)
    parser.add_argument(
        "--video", type=int, default=0, help="record MP4s for init states 0..N-1 of each task"
    )
    parser.add_argument(
        "--budget-rate", type=float, default=0.1, help="writes/step of random/periodic w/o aura"
    )
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from OUT")


def _memory_d_model(args: argparse.Namespace) -> tuple[int | None, list[tuple[str, str, object]]]:
    """The checkpoints' d_model and their (option, path, config)s, after loading them here, in the main
    process, before any worker starts.

    A missing, corrupt (weights_sha256 mismatch) or mis-sized checkpoint is one error line, not a crash
    in every worker of every episode.
    """
    d_model, loaded = args.d_model, []
    if args.checkpoint:
        from aura.layer import AuraMem

        config = AuraMem.load(args.checkpoint).config  # CheckpointError names the file
        loaded.append(("--checkpoint", args.checkpoint, config))
        if config.output == "action" and config.d_action != 7:
            raise ValueError(
                f"--checkpoint {args.checkpoint}: an AuraMem with d_action={config.d_action}; LIBERO needs 7"
            )
        d_model = config.d_model
    if args.kv_checkpoint:
        from aura.baselines.kv import KVAttentionArm

        kv = KVAttentionArm.load(args.kv_checkpoint).config  # CheckpointError names the file
        loaded.append(("--kv-checkpoint", args.kv_checkpoint, kv))
        if kv.output == "action" and kv.d_action != 7:
            raise ValueError(
                f"--kv-checkpoint {args.kv_checkpoint}: a KV arm with d_action={kv.d_action}; LIBERO needs 7"
            )
        if d_model is not None and kv.d_model != d_model:
            source = f"--checkpoint {args.checkpoint}" if args.checkpoint else "--d-model"
            raise ValueError(
                f"--kv-checkpoint {args.kv_checkpoint}: d_model={kv.d_model}, but {source} gives {d_model}"
            )
        d_model = kv.d_model
    return d_model, loaded


def _check_context(args: argparse.Namespace, spec, loaded) -> None:
    """A memory that outputs a context (sim.libero.context) needs a backbone taking that many dims;
    ``loaded``: ``_memory_d_model``'s (option, path, config)s."""
    for option, path, config in loaded:
        if config.output == "context" and config.d_action != spec.d_context:
            raise ValueError(
                f"{option} {path}: outputs a context of {config.d_action} dims, but --backbone "
                f"{args.backbone} takes {spec.d_context} (spec.d_context: libero_vla's torch backbone's)"
            )


def _plan(args: argparse.Namespace) -> EvalPlan:
    from policies.factory import make_backbone, parse_fields

    tasks = parse_tasks(args.tasks, "--tasks")
    if args.init_states:
        inits = int_list(args.init_states, N_INIT_STATES, "--init-states")
    elif 1 <= args.episodes <= N_INIT_STATES:
        inits = list(range(args.episodes))
    else:
        raise ValueError(f"--episodes must be in 1..{N_INIT_STATES}, got {args.episodes}")
    k = check_instruction_steps(args.instruction_steps, "--instruction-steps")
    text = args.arms if args.arms is not None else ",".join(DEFAULT_ARMS + (("oracle",) if k else ()))
    arms = [a.strip() for a in text.split(",") if a.strip()]
    if not arms or any(a not in ARMS for a in arms):
        raise ValueError(f"--arms must be a comma list of {ARMS}, got {args.arms!r}")
    if "oracle" in arms and k is None:
        raise ValueError("--arms oracle writes at the instruction steps: give --instruction-steps K")
    at_least(args, 1, "workers", "max_steps", "image_size", "d_model")
    at_least(args, 0, "retries", "video", "budget_rate")
    if args.max_steps > 10_000:
        raise ValueError(f"--max-steps must be in 1..10000, got {args.max_steps}")
    if not args.episode_timeout > 0:
        raise ValueError(f"--episode-timeout must be > 0, got {args.episode_timeout}")
    if args.control_hz is not None and not args.control_hz > 0:
        raise ValueError(f"--control-hz must be > 0, got {args.control_hz}")
    flash = None
    if args.flash_config:
        from dataclasses import asdict

        from deploy.runtime.budget import FlashConfig

        flash = asdict(FlashConfig.from_json(args.flash_config))  # errors name the file
    fields = parse_fields(args.backbone_arg)
    d_model, loaded = _memory_d_model(args)
    defaults = {"seed": args.seed} | ({"d_model": d_model} if d_model else {})
    spec = make_backbone(args.backbone, fields, defaults=defaults).spec
    if d_model is not None and arms != ["base"] and spec.d_model != d_model:
        source = (
            f"--checkpoint {args.checkpoint}"
            if args.checkpoint
            else (f"--kv-checkpoint {args.kv_checkpoint}" if args.kv_checkpoint else "--d-model")
        )
        raise ValueError(
            f"--backbone {args.backbone} gives d_model={spec.d_model} features but {source} expects {d_model}"
        )
    if spec.d_action != 7:
        raise ValueError(f"--backbone {args.backbone} gives d_action={spec.d_action}; LIBERO needs 7")
    _check_context(args, spec, loaded)
    cams = tuple(c for c in args.cameras.split(",") if c) if args.cameras is not None else spec.cameras
    if any(c not in CAMERAS for c in cams):
        raise ValueError(f"--cameras must be among {list(CAMERAS)}, got {args.cameras!r}")
    missing = [c for c in spec.cameras if c not in cams]
    if missing:
        raise ValueError(
            f"--cameras {args.cameras!r} leaves out {missing}, which --backbone {args.backbone} reads"
        )
    if args.video and "image" not in cams:
        cams = ("image",) + cams
    image_size = args.image_size or spec.image_size or 128
    if spec.image_size and image_size != spec.image_size:
        raise ValueError(f"--image-size {image_size}: --backbone {args.backbone} needs {spec.image_size}")
    return EvalPlan(
        tasks=tasks,
        init_states=inits,
        arms=arms,
        out=Path(args.out),
        backbone=args.backbone,
        backbone_args=fields,
        checkpoint=args.checkpoint,
        kv_checkpoint=args.kv_checkpoint,
        d_model=d_model or spec.d_model,
        seed=args.seed,
        workers=args.workers,
        ray=args.ray,
        shard=parse_shard(args.shard),
        fresh=args.fresh,
        retries=args.retries,
        episode_timeout=args.episode_timeout,
        max_steps=args.max_steps,
        cameras=cams,
        image_size=image_size,
        render=args.render,
        video=args.video,
        budget_rate=args.budget_rate,
        instruction_steps=k,
        flash=flash,
        control_hz=args.control_hz,
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    if args.summary_only:
        if not any(out.glob("episodes*.jsonl")):
            raise ValueError(f"--out {out}: no episodes*.jsonl to summarise")
        rebuild_summary(out)
        return 0
    plan = _plan(args)
    if args.checkpoint is None and any(a in plan.arms for a in ("aura", "random", "periodic")):
        # A fresh gate is untrained: it writes on most steps, so the aura arm and its budget-matched arms
        # then measure plumbing, not gating. Say so rather than let the table pass as a gate result.
        print(
            "aura eval libero: warning: no --checkpoint, so the AURA gate is untrained (a fresh AuraMem "
            "writes on most steps and adds no correction); its write counts say nothing about gating",
            file=sys.stderr,
        )
    if args.kv_checkpoint is None and "kv" in plan.arms:
        print(
            "aura eval libero: warning: no --kv-checkpoint, so the kv arm is a fresh KV cache with a zero "
            "head: its actions equal the base arm's; only its bytes (256 B appended per step) are real",
            file=sys.stderr,
        )
    named = [t for t in plan.tasks if t >= N_TASKS]  # other suites' ids: say which task each one is
    if named:
        print("[eval] tasks outside libero_10: " + "; ".join(f"{t} = {task_name(t)}" for t in named))
    return run_evaluation(plan)
