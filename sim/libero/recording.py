"""Recording demonstrations (``aura sim demos``): a backbone's actions (the scripted expert by default) on
fresh scene layouts, never LIBERO's fixed init states, in jobs that many workers share and a rerun resumes.

Placements. ``placements="fresh"`` lays each episode's scene out afresh from the task's BDDL regions
(``LiberoEnv.reset(options={"placement_seed": s})`` with ``s = placement_seed(seed, task, k)`` for try k),
never from LIBERO's 50 fixed init states, which are the evaluation set (``sim.libero.demos.verify_split``).
``placements="fixed"`` tries init states ``start, start+1, ...`` (for analysis, not for training).

Jobs. A job is (task, batch): ``tries`` consecutive episodes of one task, whose successes go into one file
(``sim.libero.demos.job_file``). The scheduler hands the next batch to the task furthest from its target,
counting in-flight jobs at the task's success rate so far, until every task has ``per_task`` demos; a task
whose expert often fails just gets more batches. Finished jobs' files are counted, not redone, on a rerun.
Each worker keeps its env across jobs of the same task.

First pass. A privileged backbone runs camera-free first and only its successes are replayed with the
cameras (``first_pass="camera-free"``; the env is deterministic, so the replay reproduces the episode,
which is checked); ``first_pass="cameras"`` renders every try (cheaper when most tries succeed: rendering
is most of a step's cost); ``auto`` renders first only for backbones that see pixels.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sim.libero.action_noise import ActionNoise, episode_rng
from sim.libero.demos import finished_job, job_file, write_task_file
from sim.libero.env import N_INIT_STATES


def placement_seed(seed: int, task: int, k: int) -> int:
    """The placement seed of try ``k`` (0, 1, ...; < 10,007) of ``task`` (module docstring)."""
    return (seed * 1_000_003 + task * 10_007 + k) % 2**32


def rollout(env, backbone, episode: dict, seed: int, actions=None, noise=None) -> dict:
    """One episode: the backbone's base action acts (``actions=None``) or ``actions`` are replayed.
    ``episode`` is LiberoEnv's reset options: ``{"init_state": i}`` or ``{"placement_seed": s}``.
    ``noise`` (a ``sim.libero.action_noise.NoiseProcess``, acting only): the env executes the perturbed
    action, ``actions`` records the backbone's clean one and ``executed`` what ran (DART); replay
    ``executed`` to reproduce such an episode; transit-only noise reads the backbone's ``goal_tolerance``."""
    obs, _ = env.reset(seed=seed, options=episode)
    if actions is None:
        backbone.reset()
    perturb = noise is not None and actions is None
    keys = ("image", "wrist_image", "state")
    ep = {k: [] for k in (*keys, "actions", "executed", "rewards", "dones", "states", "raw")}
    success, t = False, 0
    while True:
        if actions is None:
            a = backbone(env.observation(obs, backbone.spec.privileged))[1].astype(np.float64)
        else:
            a = actions[t]
        run = noise.perturb(a, getattr(backbone, "goal_tolerance", None)) if perturb else a
        for k in keys:
            if k in obs and (k == "state" or env.cameras_on):
                ep[k].append(obs[k])
        raw = env.raw_obs
        ep["raw"].append(
            np.concatenate(
                [
                    raw["robot0_eef_pos"],
                    raw["robot0_eef_quat"],
                    raw["robot0_gripper_qpos"],
                    raw["robot0_joint_pos"],
                ]
            )
        )
        ep["states"].append(env.raw_env.env.sim.get_state().flatten())
        obs, reward, success, truncated, _ = env.step(run)
        ep["actions"].append(np.asarray(a, dtype=np.float64))
        if perturb:
            ep["executed"].append(run)
        ep["rewards"].append(reward)
        ep["dones"].append(bool(success or truncated))
        t += 1
        if success or truncated or (actions is not None and t == len(actions)):
            break
    out = {k: np.asarray(v) for k, v in ep.items() if len(v)}
    out["success"], out["steps"], out["layout"] = bool(success), t, env.layout.copy()
    return out


def _episodes(p: dict):
    """The reset options job ``p`` tries, in order (module docstring)."""
    lo = p["batch"] * p["tries"]
    if p.get("placements", "fresh") == "fixed":
        for init in range(p.get("start", 0) + lo, min(p.get("start", 0) + lo + p["tries"], N_INIT_STATES)):
            yield {"init_state": init}
        return
    for k in range(lo, lo + p["tries"]):
        yield {"placement_seed": placement_seed(p["seed"], p["task"], k)}


_ENV: dict = {}  # one env per worker process, kept across jobs of the same task


def _env(task: int, image_size: int, render: str):
    from sim.libero.env import LiberoEnv

    key = (task, image_size, render)
    if _ENV.get("key") != key:
        if _ENV.get("env") is not None:
            _ENV["env"].close()  # each holds 1.6-2.7 GB
        _ENV["env"] = LiberoEnv(
            task, image_size=image_size, cameras=("image", "wrist_image"), render_quality=render
        )
        _ENV["key"] = key
    return _ENV["env"]


def resumed_job(out, task: int, batch: int, noise: ActionNoise) -> dict | None:
    """``finished_job``, refusing one recorded under other action noise than ``noise``: a resumed set must
    not mix two recipes (the scheduler checks every finished job before it starts any)."""
    done = finished_job(out, task, batch)
    want = noise.recorded()
    if done is not None and done.get("action_noise", {}) != want:
        where = done.get("file") or job_file(out, task, batch, kept=0)
        raise ValueError(
            f"{where}: recorded with action noise {done.get('action_noise', {})}, this run asks for {want}: "
            "record into another --out"
        )
    return done


def record_task(p: dict) -> dict:
    """Worker job: try ``p['tries']`` episodes of task ``p['task']`` (batch ``p['batch']``), keep the
    successes in one file (module docstring)."""
    from policies.factory import make_backbone

    t0 = time.perf_counter()
    task, batch = p["task"], p["batch"]
    noise = ActionNoise(**p.get("action_noise", {}))
    noise_doc = noise.recorded()
    done = resumed_job(p["out"], task, batch, noise)
    if done is not None:
        return done
    env = _env(task, p["image_size"], p.get("render", "faithful"))
    backbone = make_backbone(p.get("backbone", "libero_expert"), p.get("backbone_args"))
    first_pass = p.get("first_pass", "auto")
    render_first = first_pass == "cameras" or (first_pass == "auto" and bool(backbone.spec.cameras))
    demos, tried, dropped, steps = [], [], [], []
    for episode in _episodes(p):
        what = ", ".join(f"{k} {v}" for k, v in episode.items())
        env.set_cameras(render_first)
        jitter = noise.process(episode_rng(p["seed"], task, episode)) if noise.on else None
        first = rollout(env, backbone, episode, p["seed"], noise=jitter)
        tried.append(dict(episode, success=first["success"], steps=first["steps"]))
        if not first["success"]:
            print(f"[demos] task {task} {what}: failed ({first['steps']} steps)", flush=True)
            continue
        steps.append(first["steps"])
        if render_first:
            ep = first
        else:
            env.set_cameras(True)
            ep = rollout(env, backbone, episode, p["seed"], actions=first.get("executed", first["actions"]))
            # the replay executed what the first pass did; the labels stay the backbone's clean actions
            ep.update({k: first[k] for k in ("actions", "executed") if k in first})
        if not (ep["success"] and ep["steps"] == first["steps"]):
            dropped.append(episode)
            print(f"[demos] task {task} {what}: replay diverged, dropped", flush=True)
            continue
        near_task, nearest, dist = env.nearest_scene_init_state(ep["layout"])
        ep.update(
            init_state=env.init_state,
            placement_seed=episode.get("placement_seed", -1),
            seed=p["seed"],
            nearest_init_task=near_task,
            nearest_init_state=nearest,
            nearest_init_mm=1000 * dist,
        )
        demos.append(ep)
        print(
            f"[demos] task {task} {what}: kept ({ep['steps']} steps, {1000 * dist:.0f} mm from init state "
            f"{nearest}{'' if near_task == task else f' of task {near_task}'})",
            flush=True,
        )
    result = dict(
        task=task,
        batch=batch,
        demos=len(demos),
        tries=len(tried),
        tried=tried,
        dropped=dropped,
        steps=steps,
        action_noise=noise_doc,
        wall_s=time.perf_counter() - t0,
    )
    if not demos:
        job_file(p["out"], task, batch, kept=0).write_text(json.dumps(dict(result, file=None)))
        return dict(result, file=None)
    inner = env.raw_env.env
    meta = dict(
        env_name=env.raw_env.problem_name,
        env_args=dict(
            env_name=env.raw_env.problem_name,
            type=1,
            env_kwargs=dict(
                bddl_file_name=inner.bddl_file_name,
                camera_heights=p["image_size"],
                camera_widths=p["image_size"],
                camera_names=["agentview", "robot0_eye_in_hand"],
                control_freq=20,
                controller="OSC_POSE",
            ),
        ),
        problem_info=dict(
            problem_name=env.raw_env.problem_name,
            domain_name=env.raw_env.domain_name,
            language_instruction=env.language,
        ),
        bddl_file_name=inner.bddl_file_name,
        language=env.language,
        task_id=task,
        image_size=p["image_size"],
        source=f"aura backbone {p.get('backbone', 'libero_expert')} (policies/)",
        render=env.render_info,
        placements=p.get("placements", "fresh"),
        action_noise=noise_doc,
        batch=batch,
        tries=len(tried),
        complete=1,
    )
    path = job_file(p["out"], task, batch)
    write_task_file(path, demos, meta)
    return dict(result, file=str(path))


class _DemoScheduler:
    """Hands out (task, batch) jobs until every task has its target of demos kept: next the task furthest
    from its target, counting in-flight jobs at the task's success rate so far. Tasks whose expert often
    fails simply get more batches; the last job to finish is one batch, not a whole task."""

    def __init__(self, targets: dict, max_batches: dict, base: dict, retries: int = 1):
        self.targets, self.max_batches, self.base, self.retries = targets, max_batches, base, retries
        tasks = list(targets)
        self.kept = dict.fromkeys(tasks, 0)
        self.tries = dict.fromkeys(tasks, 0)
        self.inflight = dict.fromkeys(tasks, 0)
        self.next_batch = dict.fromkeys(tasks, 0)
        self.results, self.errors, self.retry = [], [], []
        noise = ActionNoise(**base.get("action_noise", {}))
        for t in tasks:  # resume: count what finished before
            while (r := resumed_job(base["out"], t, self.next_batch[t], noise)) is not None:
                self._count(r)
                self.next_batch[t] += 1

    def _count(self, r: dict) -> None:
        self.results.append(r)
        self.kept[r["task"]] += r["demos"]
        self.tries[r["task"]] += r["tries"]

    def _need(self, t: int) -> float:
        rate = (self.kept[t] + 1.8) / (self.tries[t] + 2)  # prior: the expert succeeds ~90 % of the time
        return self.targets[t] - self.kept[t] - self.inflight[t] * rate * self.base["tries"]

    def next_job(self):
        from sim.libero.workers import Job

        if self.retry:
            return self.retry.pop(0)
        ready = [t for t in self.kept if self._need(t) > 0 and self.next_batch[t] < self.max_batches[t]]
        if not ready:
            return None
        t = max(ready, key=self._need)
        b = self.next_batch[t]
        self.next_batch[t] += 1
        self.inflight[t] += 1
        return Job((t, b), dict(self.base, task=t, batch=b))

    def finished(self, job, result):
        self.inflight[job.key[0]] -= 1
        self._count(result)

    def failed(self, job, error):
        self.errors.append(dict(task=job.key[0], batch=job.key[1], attempt=job.attempt, error=error))
        print(
            f"[demos] task {job.key[0]} batch {job.key[1]} attempt {job.attempt} failed: "
            f"{error.splitlines()[0]}",
            flush=True,
        )
        if job.attempt <= self.retries:
            job.attempt += 1
            self.retry.append(job)
        else:
            self.inflight[job.key[0]] -= 1

    def open(self):
        return bool(self.retry) or any(
            self._need(t) > 0 and self.next_batch[t] < self.max_batches[t] for t in self.kept
        )


def record_demos(
    tasks: list[int],
    out: Path,
    *,
    per_task: int | dict[int, int],
    placements: str = "fresh",
    tries_per_job: int = 8,
    max_tries: int | None = None,
    start: int = 0,
    first_pass: str = "auto",
    image_size: int = 128,
    render: str = "faithful",
    seed: int = 0,
    workers: int = 2,
    backbone: str = "libero_expert",
    backbone_args: dict | None = None,
    action_noise: ActionNoise | None = None,
) -> dict:
    """Record at least ``per_task`` successful demos of each task (an int, or a dict task -> count) in jobs
    of ``tries_per_job`` episodes on ``workers`` processes (resuming finished jobs; at most ``max_tries``
    episodes per task, default 10 x its count, and for fixed placements the init states left after
    ``start``); ``OUT/demos.json``. ``action_noise``: DART perturbations of the executed actions
    (``sim.libero.action_noise``; the recorded labels stay clean)."""
    from sim.libero.workers import run_local

    if placements not in ("fresh", "fixed"):
        raise ValueError(f"--placements must be 'fresh' or 'fixed', got {placements!r}")
    if first_pass not in ("auto", "camera-free", "cameras"):
        raise ValueError(f"--first-pass must be auto, camera-free or cameras, got {first_pass!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    targets = per_task if isinstance(per_task, dict) else dict.fromkeys(tasks, per_task)
    if set(targets) != set(tasks):
        raise ValueError(f"per_task: counts for tasks {sorted(targets)}, recording {sorted(tasks)}")
    budget = {
        t: (N_INIT_STATES - start) if placements == "fixed" else (max_tries or 10 * n)
        for t, n in targets.items()
    }
    base = dict(
        tries=tries_per_job,
        placements=placements,
        start=start,
        first_pass=first_pass,
        image_size=image_size,
        seed=seed,
        out=str(out),
        render=render,
        backbone=backbone,
        backbone_args=backbone_args or {},
        action_noise=(action_noise or ActionNoise()).as_dict(),
    )
    sched = _DemoScheduler(targets, {t: -(-b // tries_per_job) for t, b in budget.items()}, base)
    t0 = time.perf_counter()
    if sched.open():
        run_local(sched, record_task, workers)
    rows = []
    for t in tasks:
        mine = [r for r in sched.results if r["task"] == t]
        steps = [s for r in mine for s in r.get("steps", [])]
        rows.append(
            dict(
                task=t,
                demos=sched.kept[t],
                tries=sched.tries[t],
                expert_success=f"{sched.kept[t]}/{sched.tries[t]}",
                files=sorted(r["file"] for r in mine if r.get("file")),
                mean_steps=float(np.mean(steps)) if steps else None,
            )
        )
    doc = dict(
        results=rows,
        jobs=sorted(sched.results, key=lambda r: (r["task"], r["batch"])),
        errors=sched.errors,
        args=dict(base, per_task=per_task, max_tries=max_tries or budget),
        wall_s=time.perf_counter() - t0,
    )
    (out / "demos.json").write_text(json.dumps(doc, indent=1))
    return doc
