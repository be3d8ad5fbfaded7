"""`aura eval libero`: closed-loop LIBERO-Long evaluation of memory arms.

An episode is (task, init state, arm, seed). Per episode one JSON line is appended to
``OUT/episodes[.shard-i-of-n].jsonl`` (task, init_state, arm, status, success, steps, writes, bytes,
wall_s, write_steps, attempt, ...), failed attempts included (status ``error``). A rerun with the same
``OUT`` resumes: episodes with an ``ok`` record are skipped. ``--shard i/n`` takes every n-th
(task, init state) pair, with all its arms (the budget-matched arms need the AURA arm's write count
of the same pair). Crashed or failing episodes are retried ``--retries`` times and recorded, never
fatal. At the end ``summary.json``/``summary.md`` (Wilson 95 % intervals) and plots are written from
every JSONL in ``OUT``, and env-steps/s of this run is printed.

Test hook: ``AURA_LIBERO_CRASH_ONCE=task:init:arm:MODE:MARKER[;...]`` makes the worker running that
episode exit hard (MODE ``exit``) or raise (``raise``) once - it creates MARKER first - to exercise
recovery end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from sim.libero.arms import ARMS, BUDGET_ARMS, POLICIES, periodic_schedule, random_schedule
from sim.libero.env import CAMERAS, MAX_STEPS, N_INIT_STATES, N_TASKS

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
            os._exit(17)


def run_episode(p: dict) -> dict:
    """Run one episode in this process (envs and models are cached across calls)."""
    from sim.libero.arms import MemoryArm, PrivilegedPolicy, build_model
    from sim.libero.env import LiberoEnv

    t0 = time.perf_counter()
    _crash_hook(p)
    cams = tuple(p["cameras"])
    render = p.get("render", "faithful")
    env_key = (p["task"], p["image_size"], cams, p["max_steps"], render)
    if _CACHE.get("env_key") != env_key:
        if _CACHE.get("env") is not None:
            _CACHE["env"].close()  # one env per worker: each holds 1.6-2.7 GB
        _CACHE["env"] = LiberoEnv(
            p["task"],
            image_size=p["image_size"],
            cameras=cams,
            max_steps=p["max_steps"],
            render_quality=render,
        )
        _CACHE["env_key"] = env_key
    env = _CACHE["env"]
    model = None
    if p["arm"] != "base":
        model_key = (p["checkpoint"], p["d_model"], p["seed"])
        if _CACHE.get("model_key") != model_key:
            _CACHE["model"], _CACHE["model_key"] = (
                build_model(p["checkpoint"], p["d_model"], p["seed"]),
                model_key,
            )
        model = _CACHE["model"]
    d_model = model.config.d_model if model is not None else p["d_model"]
    policy = PrivilegedPolicy(p["policy"], p["task"], d_model, seed=p["seed"])
    arm = MemoryArm(p["arm"], model)
    obs, _ = env.reset(seed=p["seed"], options={"init_state": p["init_state"]})
    policy.reset(env)
    arm.reset(p.get("schedule"))
    write_steps, probs, frames = [], [], []
    success, t_env = False, 0.0
    for t in range(p["max_steps"]):
        if p.get("video"):
            frames.append(obs["image"])
        base, z = policy(env, obs)
        action, wrote, prob = arm.step(z, base)
        if wrote:
            write_steps.append(t)
        probs.append(prob)
        ts = time.perf_counter()
        obs, _, success, truncated, _ = env.step(action)
        t_env += time.perf_counter() - ts
        if success or truncated:
            break
    rec = dict(
        status="ok",
        success=bool(success),
        steps=env.steps,
        writes=len(write_steps),
        bytes=len(write_steps) * arm.bytes_per_write,
        write_steps=write_steps,
        gate_prob_mean=float(np.mean(probs)) if probs else 0.0,
        env_step_s=t_env,
        wall_s=time.perf_counter() - t0,
        pid=os.getpid(),
    )
    if p.get("video"):
        from sim.libero.report import write_video

        frames.append(obs["image"])
        write_video(Path(p["video"]), frames, write_steps)
        rec["video"] = p["video"]
    return rec


def _ints(text: str, hi: int, name: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            a, _, b = part.partition("-")
            lo_, hi_ = int(a), int(b) if b else int(a)
        except ValueError:
            raise ValueError(f"{name}: cannot parse {part!r} (use e.g. 0,2,5-9)") from None
        if not 0 <= lo_ <= hi_ < hi:
            raise ValueError(f"{name}: {part!r} is outside 0..{hi - 1}")
        out.extend(range(lo_, hi_ + 1))
    return sorted(set(out))


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


class EvalScheduler:
    """Jobs in (task, init state, arm) order; random/periodic wait for the AURA arm of their pair."""

    def __init__(self, pairs, arms, base: dict, done: dict, retries: int, out, budget_rate: float, log=print):
        from sim.libero.workers import Job

        self.base, self.done, self.retries, self.out, self.log = base, done, retries, out, log
        self.budget_rate = budget_rate
        self.queue = [
            Job((t, i, a), {}) for t, i in pairs for a in arms if (t, i, a, base["seed"]) not in done
        ]
        self.need_aura = "aura" in arms
        self.dead: set[tuple] = set()
        self.new: list[dict] = []
        self.total = len(self.queue)

    def _budget(self, t: int, i: int):
        """Write schedule of the budget arms from the AURA arm's episode, or None if not yet known."""
        if self.need_aura:
            rec = self.done.get((t, i, "aura", self.base["seed"]))
            if rec is None:
                return None
            n, horizon = rec["writes"], rec["steps"]
        else:
            horizon = self.base["max_steps"]
            n = round(self.budget_rate * horizon)
        return n, horizon

    def next_job(self):
        for k, job in enumerate(self.queue):
            t, i, arm = job.key
            payload = dict(self.base, task=t, init_state=i, arm=arm)
            if arm in BUDGET_ARMS:
                if (t, i) in self.dead:
                    self.queue.pop(k)
                    why = "the AURA arm failed: no write budget"
                    self._record(job, dict(status="error", error=why, success=False, final=True), final=True)
                    return self.next_job()
                budget = self._budget(t, i)
                if budget is None:
                    continue
                n, horizon = budget
                if arm == "random":
                    rng = np.random.default_rng([self.base["seed"], t, i])
                    payload["schedule"] = random_schedule(n, horizon, rng).tolist()
                else:
                    payload["schedule"] = periodic_schedule(n, horizon).tolist()
            if self.base.get("video_states", 0) > i and self.base.get("video_dir"):
                payload["video"] = str(Path(self.base["video_dir"]) / f"task{t}_init{i}_{arm}.mp4")
            job.payload = payload
            return self.queue.pop(k)
        return None

    def _record(self, job, result: dict, final: bool) -> None:
        t, i, arm = job.key
        rec = dict(task=t, init_state=i, arm=arm, seed=self.base["seed"], policy=self.base["policy"])
        rec.update(attempt=job.attempt, **result)
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.new.append(rec)
        if rec["status"] == "ok":
            self.done[(t, i, arm, self.base["seed"])] = rec
        n_done = sum(1 for r in self.new if r["status"] == "ok") + len(
            [r for r in self.new if r["status"] != "ok" and r.get("final")]
        )
        what = "success" if rec.get("success") else "fail"
        if rec["status"] != "ok":
            what = f"{rec['status']} (attempt {job.attempt}): {rec.get('error', '').splitlines()[0][:120]}"
        self.log(
            f"[eval] {n_done}/{self.total} task {t} init {i} {arm:<8} {what}"
            + (
                f" steps {rec['steps']} writes {rec['writes']} {rec['wall_s']:.1f} s"
                if rec["status"] == "ok"
                else ""
            )
        )

    def finished(self, job, result: dict) -> None:
        self._record(job, result, final=True)

    def failed(self, job, error: str) -> bool:
        final = job.attempt > self.retries
        self._record(job, dict(status="error", error=error, success=False, final=final), final=final)
        if final:
            if job.key[2] == "aura":
                self.dead.add(job.key[:2])
            return False
        job.attempt += 1
        self.queue.insert(0, job)
        return True

    def open(self) -> bool:
        return bool(self.queue)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sim.libero.render import add_render_argument

    parser.add_argument("--tasks", default="0-9", help="libero_10 task ids, e.g. 0,2,5-9 (default all)")
    parser.add_argument("--episodes", type=int, default=N_INIT_STATES, help="init states 0..N-1 per task")
    parser.add_argument(
        "--init-states", default=None, help="explicit init states, e.g. 0-4,10 (overrides --episodes)"
    )
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {', '.join(ARMS)}")
    parser.add_argument("--policy", default="expert", choices=POLICIES, help="base policy (expert: scripted)")
    parser.add_argument("--checkpoint", default=None, help="trained AuraMem checkpoint dir (default: fresh)")
    parser.add_argument("--d-model", type=int, default=64, help="feature size of a fresh AuraMem")
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
    parser.add_argument("--cameras", default=None, help="cameras to render (default: what the policy needs)")
    parser.add_argument("--image-size", type=int, default=128, help="rendered image side in pixels")
    add_render_argument(parser)
    parser.add_argument(
        "--video", type=int, default=0, help="record MP4s for init states 0..N-1 of each task"
    )
    parser.add_argument(
        "--budget-rate", type=float, default=0.1, help="writes/step of random/periodic w/o aura"
    )
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from OUT")


def run(args: argparse.Namespace) -> int:
    try:
        tasks = _ints(args.tasks, N_TASKS, "--tasks")
        inits = _ints(args.init_states, N_INIT_STATES, "--init-states") if args.init_states else None
        if inits is None:
            if not 1 <= args.episodes <= N_INIT_STATES:
                raise ValueError(f"--episodes must be in 1..{N_INIT_STATES}, got {args.episodes}")
            inits = list(range(args.episodes))
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        if not arms or any(a not in ARMS for a in arms):
            raise ValueError(f"--arms must be a comma list of {ARMS}, got {args.arms!r}")
        shard_i, shard_n = parse_shard(args.shard)
        cams = tuple(c for c in (args.cameras or "").split(",") if c)
        if any(c not in CAMERAS for c in cams):
            raise ValueError(f"--cameras must be among {list(CAMERAS)}, got {args.cameras!r}")
        if args.video and "image" not in cams:
            cams = ("image",) + cams
        if args.workers < 1 or args.retries < 0 or not 1 <= args.max_steps <= 10_000:
            raise ValueError("need --workers >= 1, --retries >= 0 and --max-steps in 1..10000")
    except ValueError as e:
        print(f"aura eval libero: {e}", file=sys.stderr)
        return 2
    from sim.libero.report import print_table, read_records, write_summary

    if args.checkpoint is None and any(a in arms for a in ("aura", "random", "periodic")):
        # A fresh gate is untrained: it writes on most steps, so the aura arm and its budget-matched arms
        # then measure plumbing, not gating. Say so rather than let the table pass as a gate result.
        print(
            "aura eval libero: warning: no --checkpoint, so the AURA gate is untrained (a fresh AuraMem "
            "writes on most steps and adds no correction); its write counts say nothing about gating",
            file=sys.stderr,
        )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "episodes.jsonl" if shard_n == 1 else f"episodes.shard-{shard_i}-of-{shard_n}.jsonl"
    out = out_dir / name
    if args.summary_only:
        summary = write_summary(read_records(sorted(out_dir.glob("episodes*.jsonl"))), out_dir)
        print_table(summary)
        return 0
    if args.fresh and out.exists():
        out.unlink()
    # Records are keyed by (task, init state, arm, seed): resuming under another configuration would
    # mix incomparable episodes, so the settings that change an episode are pinned per results dir.
    pinned = dict(
        policy=args.policy, max_steps=args.max_steps, checkpoint=args.checkpoint, d_model=args.d_model
    )
    if args.render != "faithful":  # only pinned when set, so results dirs from before the option still resume
        pinned["render"] = args.render
    cfg_path = out_dir / "config.json"
    if cfg_path.is_file() and any(out_dir.glob("episodes*.jsonl")):
        old = json.loads(cfg_path.read_text())
        diff = {k: (old.get(k), v) for k, v in pinned.items() if old.get(k) != v}
        if diff:
            print(f"aura eval libero: {out_dir} holds results of another configuration {diff} (was, now); "
                  "use another --out", file=sys.stderr)  # fmt: skip
            return 2
    cfg_path.write_text(json.dumps(pinned, indent=1))
    pairs = [(t, i) for t in tasks for i in inits][shard_i::shard_n]
    done = {}
    for r in read_records([out]):
        if r.get("status") == "ok":
            done[(r["task"], r["init_state"], r["arm"], r["seed"])] = r
    video_dir = out_dir / "videos"
    if args.video:
        video_dir.mkdir(exist_ok=True)
    base = dict(policy=args.policy, seed=args.seed, image_size=args.image_size, cameras=list(cams))
    base.update(render=args.render)
    base.update(max_steps=args.max_steps, checkpoint=args.checkpoint, d_model=args.d_model)
    base.update(video_states=args.video, video_dir=str(video_dir))
    sched = EvalScheduler(pairs, arms, base, done, args.retries, out, args.budget_rate)
    print(
        f"[eval] {len(pairs)} pairs x {len(arms)} arms: {sched.total} episodes to run "
        f"({len(pairs) * len(arms) - sched.total} already done in {out}); shard {shard_i}/{shard_n}; "
        f"cameras {list(cams) or 'none'} ({args.render} rendering); "
        + (f"ray {args.ray}" if args.ray else f"{args.workers} local workers")
    )
    from sim.libero.workers import run_local, run_ray

    t0 = time.perf_counter()
    try:
        if sched.total == 0:
            pass  # everything was done: only the summary is rebuilt
        elif args.ray:
            run_ray(sched, run_episode, args.ray, args.workers)
        else:
            run_local(sched, run_episode, args.workers, timeout=args.episode_timeout)
    except RuntimeError as e:
        print(f"aura eval libero: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    ok = [r for r in sched.new if r["status"] == "ok"]
    steps = sum(r["steps"] for r in ok)
    throughput = dict(
        episodes=len(ok), env_steps=steps, wall_s=wall, env_steps_per_s=steps / wall if wall > 0 else 0.0,
        workers=args.workers, cameras=list(cams), image_size=args.image_size, render=args.render,
    )  # fmt: skip
    summary = write_summary(read_records(sorted(out_dir.glob("episodes*.jsonl"))), out_dir, throughput)
    print_table(summary)
    print(
        f"[eval] this run: {len(ok)} episodes, {steps} env steps in {wall:.1f} s = "
        f"{throughput['env_steps_per_s']:.1f} env-steps/s (incl. env creation and resets); "
        f"results {out}, summary {out_dir / 'summary.md'}"
    )
    failed = [r for r in sched.new if r["status"] != "ok" and r.get("final")]
    return 1 if failed else 0
