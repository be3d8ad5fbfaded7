"""`aura eval libero`: closed-loop LIBERO-Long evaluation of memory arms.

An episode is (task, init state, arm, seed). Per episode one JSON line is appended to
``OUT/episodes[.shard-i-of-n].jsonl`` (task, init_state, arm, status, success, steps, writes, write_steps,
the bytes / pages / lifetime of ``sim.libero.arms.episode_bytes``, subgoals and subgoal_steps of
``sim.libero.subgoals``, gate_prob_mean, the gated arm's per-step gate_probs and gate_threshold of
``sim.libero.arms.gate_fields``, instruction_steps (K, None: the instruction at every step), wall_s,
attempt, ...), failed attempts included (status ``error``). A rerun with
the same ``OUT`` resumes: episodes with an ``ok`` record are skipped. ``--shard i/n`` takes every n-th
(task, init state) pair, with all its arms (the budget-matched arms need the AURA arm's write count
of the same pair). Crashed or failing episodes are retried ``--retries`` times and recorded, never
fatal. At the end ``summary.json``/``summary.md`` (Wilson 95 % intervals) and plots are written from
every JSONL in ``OUT``, and env-steps/s of this run is printed.

Test hook: ``AURA_LIBERO_CRASH_ONCE=task:init:arm:MODE:MARKER[;...]`` makes the worker running that
episode exit hard (MODE ``exit``), raise (``raise``) or hang (``hang``: 120 s, for --episode-timeout)
once - it creates MARKER first - to exercise recovery end to end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.libero.env import MAX_STEPS
from sim.libero.pins import pin
from sim.libero.scheduler import EvalScheduler

_CACHE: dict = {}


def _crash_hook(p: dict) -> None:
    for spec in filter(None, os.environ.get("AURA_LIBERO_CRASH_ONCE", "").split(";")):
        task, init, arm, mode, marker = spec.split(":", 4)
        if (int(task), int(init), arm) == (p["task"], p["init_state"], p["arm"]) and not os.path.exists(
            marker
        ):
            Path(marker).touch()
            if mode == "raise":
                raise RuntimeError(f"injected failure ({spec})")
            if mode == "hang":  # then runs normally: without a timeout the test fails, it does not stall
                time.sleep(120)
                return
            os._exit(17)


def run_episode(p: dict) -> dict:
    """Run one episode in this process (envs and models are cached across calls)."""
    from policies.factory import make_backbone
    from sim.libero.arms import (
        MemoryArm,
        build_kv_model,
        build_model,
        context_actor,
        episode_bytes,
        gate_fields,
    )
    from sim.libero.env import LiberoEnv
    from sim.libero.subgoals import SubgoalTracker

    t0 = time.perf_counter()
    _crash_hook(p)
    cams = tuple(p["cameras"])
    render = p.get("render", "faithful")
    k = p.get("instruction_steps")
    env_key = (p["task"], p["image_size"], cams, p["max_steps"], render, k)
    if _CACHE.get("env_key") != env_key:
        if _CACHE.get("env") is not None:
            _CACHE["env"].close()  # one env per worker: each holds 1.6-2.7 GB
        _CACHE["env"] = LiberoEnv(
            p["task"],
            image_size=p["image_size"],
            cameras=cams,
            max_steps=p["max_steps"],
            render_quality=render,
            instruction_steps=k,
        )
        _CACHE["env_key"] = env_key
    env = _CACHE["env"]
    model = None
    if p["arm"] != "base":
        # one AuraMem and one KV model per worker, kept across the arms of a (task, init state) pair
        kind, ckpt = ("kv", p.get("kv_checkpoint")) if p["arm"] == "kv" else ("mem", p["checkpoint"])
        models = _CACHE.setdefault("models", {})
        model_key = (ckpt, p["d_model"], p["seed"])
        if models.get(kind, (None,))[0] != model_key:
            build = build_kv_model if kind == "kv" else build_model
            models[kind] = (model_key, build(ckpt, p["d_model"], p["seed"]))
        model = models[kind][1]
    d_model = model.config.d_model if model is not None else p["d_model"]
    backbone_key = (p["backbone"], json.dumps(p["backbone_args"], sort_keys=True), d_model, p["seed"])
    if _CACHE.get("backbone_key") != backbone_key:
        _CACHE["backbone"] = make_backbone(
            p["backbone"], p["backbone_args"], defaults={"d_model": d_model, "seed": p["seed"]}
        )
        _CACHE["backbone_key"] = backbone_key
    backbone = _CACHE["backbone"]
    privileged = backbone.spec.privileged
    arm = MemoryArm(p["arm"], model)
    actor = context_actor(p["arm"], backbone, model)  # None unless the AuraMem outputs a context
    obs, _ = env.reset(seed=p["seed"], options={"init_state": p["init_state"]})
    backbone.reset()
    arm.reset(p.get("schedule"))
    if actor is not None:
        actor.reset()
    subgoals = SubgoalTracker(env.raw_env)
    subgoals.observe(0)  # tau_j indexes observations: s_0 is the one after reset
    write_steps, probs, frames = [], [], []
    success, t_env = False, 0.0
    for t in range(p["max_steps"]):
        if p.get("video"):
            frames.append(obs["image"])
        o = env.observation(obs, privileged)
        z, base = backbone(o)
        if actor is None:
            action, wrote, prob = arm.step(z, base)
        else:
            context, wrote, prob = arm.step(z, actor.context(o))
            action = actor.act(o, context)
        if wrote:
            write_steps.append(t)
        probs.append(prob)
        ts = time.perf_counter()
        obs, _, success, truncated, _ = env.step(action)
        t_env += time.perf_counter() - ts
        subgoals.observe(env.steps)
        if success or truncated:
            break
    rec = dict(
        status="ok",
        success=bool(success),
        steps=env.steps,
        writes=len(write_steps),
        **episode_bytes(p["arm"], model, env.steps, len(write_steps), **flash_model(p)),
        write_steps=write_steps,
        subgoals=subgoals.names,
        subgoal_steps=subgoals.steps,
        gate_prob_mean=float(np.mean(probs)) if probs else 0.0,
        **gate_fields(p["arm"], model, probs),
        instruction_steps=k,
        env_step_s=t_env,
        wall_s=time.perf_counter() - t0,
        pid=os.getpid(),
    )
    if p.get("video"):
        from sim.libero.report import write_contact_sheet, write_video

        frames.append(obs["image"])
        write_video(Path(p["video"]), frames, write_steps)
        rec["video"] = p["video"]
        rec["contact_sheet"] = str(
            write_contact_sheet(Path(p["video"]).with_suffix(".png"), frames, write_steps)
        )
    return rec


@dataclass
class EvalPlan:
    """What ``aura eval libero`` runs: (task, init state) pairs x arms, the backbone, the memory model, and
    how (workers or Ray, shard, retries, rendering). See the module docstring for the results layout."""

    tasks: list[int]
    init_states: list[int]
    arms: list[str]
    out: Path
    backbone: str = "libero_expert"
    backbone_args: dict = field(default_factory=dict)
    checkpoint: str | None = None
    kv_checkpoint: str | None = None
    d_model: int = 64
    seed: int = 0
    workers: int = 2
    ray: str | None = None
    shard: tuple[int, int] = (0, 1)
    fresh: bool = False
    retries: int = 2
    episode_timeout: float = 1800.0
    max_steps: int = MAX_STEPS
    cameras: tuple[str, ...] = ()
    image_size: int = 128
    render: str = "faithful"
    video: int = 0
    budget_rate: float = 0.1
    instruction_steps: int | None = None  # the transient-instruction variant: the goal at t < k only
    flash: dict | None = None  # FlashConfig fields (None: the default part) the pages and lifetimes assume
    control_hz: float | None = None  # the control rate of the lifetime projection (None: CONTROL_HZ)


def flash_model(settings: dict) -> dict:
    """``episode_bytes`` / ``summarize`` keywords from a payload or a results dir's config.json: the
    FlashConfig and control rate the run pinned (absent: the defaults)."""
    from deploy.runtime.budget import FlashConfig

    out = {}
    if settings.get("flash"):
        out["flash"] = FlashConfig(**settings["flash"])
    if settings.get("control_hz"):
        out["control_hz"] = float(settings["control_hz"])
    return out


def rebuild_summary(out_dir: Path, throughput: dict | None = None) -> dict:
    """summary.json / summary.md / plots from every episodes*.jsonl in ``out_dir``, under the flash model its
    config.json pinned; prints the table."""
    from sim.libero.report import print_table, read_records, write_summary

    cfg = Path(out_dir) / "config.json"
    settings = json.loads(cfg.read_text()) if cfg.is_file() else {}
    summary = write_summary(
        read_records(sorted(Path(out_dir).glob("episodes*.jsonl"))),
        Path(out_dir),
        throughput,
        **flash_model(settings),
    )
    print_table(summary)
    return summary


def _pin_configuration(plan: EvalPlan, out_dir: Path) -> None:
    # the settings that change an episode (sim.libero.pins); the optional ones only when set
    pinned = dict(
        backbone=plan.backbone, max_steps=plan.max_steps, checkpoint=plan.checkpoint, d_model=plan.d_model
    )
    if plan.kv_checkpoint:  # only pinned when set, so results dirs from before the kv arm still resume
        pinned["kv_checkpoint"] = plan.kv_checkpoint
    if plan.backbone_args:
        pinned["backbone_args"] = plan.backbone_args
    if plan.render != "faithful":  # only pinned when set, so results dirs from before the option still resume
        pinned["render"] = plan.render
    if plan.instruction_steps is not None:  # likewise
        pinned["instruction_steps"] = plan.instruction_steps
    if plan.flash is not None:  # likewise: pages and lifetimes of one results dir assume one flash part
        pinned["flash"] = plan.flash
    if plan.control_hz is not None:
        pinned["control_hz"] = plan.control_hz
    optional = ("kv_checkpoint", "backbone_args", "render", "instruction_steps", "flash", "control_hz")
    started = any(out_dir.glob("episodes*.jsonl"))
    pin(out_dir / "config.json", pinned, optional, started, "results")  # sim.libero.pins


def run_evaluation(plan: EvalPlan) -> int:
    """Run (or resume) ``plan``; write the records, the summary and plots; 1 if an episode failed for good."""
    from sim.libero.workers import run_local, run_ray

    out_dir = Path(plan.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    shard_i, shard_n = plan.shard
    name = "episodes.jsonl" if shard_n == 1 else f"episodes.shard-{shard_i}-of-{shard_n}.jsonl"
    out = out_dir / name
    if plan.fresh and out.exists():
        out.unlink()
    _pin_configuration(plan, out_dir)
    # init-state-major: an evaluation cut short (a device call's time limit) has as many episodes of
    # every task, so its per-task rates stay comparable
    pairs = [(t, i) for i in plan.init_states for t in plan.tasks][shard_i::shard_n]
    done = {}
    from sim.libero.report import read_records

    for r in read_records([out]):
        if r.get("status") == "ok":
            done[(r["task"], r["init_state"], r["arm"], r["seed"])] = r
    video_dir = out_dir / "videos"
    if plan.video:
        video_dir.mkdir(exist_ok=True)
    base = dict(
        backbone=plan.backbone,
        backbone_args=plan.backbone_args,
        seed=plan.seed,
        image_size=plan.image_size,
        cameras=list(plan.cameras),
        render=plan.render,
        max_steps=plan.max_steps,
        checkpoint=plan.checkpoint,
        kv_checkpoint=plan.kv_checkpoint,
        d_model=plan.d_model,
        video_states=plan.video,
        video_dir=str(video_dir),
        instruction_steps=plan.instruction_steps,
        flash=plan.flash,
        control_hz=plan.control_hz,
    )
    sched = EvalScheduler(pairs, plan.arms, base, done, plan.retries, out, plan.budget_rate)
    print(
        f"[eval] {len(pairs)} pairs x {len(plan.arms)} arms: {sched.total} episodes to run "
        f"({len(pairs) * len(plan.arms) - sched.total} already done in {out}); shard {shard_i}/{shard_n}; "
        f"backbone {plan.backbone}; cameras {list(plan.cameras) or 'none'} ({plan.render} rendering); "
        + (f"ray {plan.ray}" if plan.ray else f"{plan.workers} local workers")
    )
    t0 = time.perf_counter()
    if sched.total == 0:
        pass  # everything was done: only the summary is rebuilt
    elif plan.ray:
        run_ray(sched, run_episode, plan.ray, plan.workers, timeout=plan.episode_timeout)
    else:
        run_local(sched, run_episode, plan.workers, timeout=plan.episode_timeout)
    wall = time.perf_counter() - t0
    ok = [r for r in sched.new if r["status"] == "ok"]
    steps = sum(r["steps"] for r in ok)
    throughput = dict(
        episodes=len(ok),
        env_steps=steps,
        wall_s=wall,
        env_steps_per_s=steps / wall if wall > 0 else 0.0,
        workers=plan.workers,
        cameras=list(plan.cameras),
        image_size=plan.image_size,
        render=plan.render,
    )
    rebuild_summary(out_dir, throughput)
    print(
        f"[eval] this run: {len(ok)} episodes, {steps} env steps in {wall:.1f} s = "
        f"{throughput['env_steps_per_s']:.1f} env-steps/s (incl. env creation and resets); "
        f"results {out}, summary {out_dir / 'summary.md'}"
    )
    failed = [r for r in sched.new if r["status"] != "ok" and r.get("final")]
    return 1 if failed else 0
