"""Demonstrations from a backbone's actions (the scripted expert by default) in LIBERO's robomimic HDF5
layout, on fresh scene layouts (training data) or LIBERO's fixed init states.

Placements. ``placements="fresh"`` (the default for training data) lays each episode's scene out afresh
from the task's BDDL regions (``LiberoEnv.reset(options={"placement_seed": s})``), never from LIBERO's 50
fixed init states, which are the evaluation set: every kept demo records its layout and its distance to the
nearest fixed init state (``nearest_init_mm``; ``verify_split`` refuses a file with one within 1 mm).
``placements="fixed"`` tries init states ``start, start+1, ...`` (for analysis, not for training).

Work is split into jobs (task, shard): a shard keeps ``quota`` successful demos, trying placement seeds
``seed * 1_000_003 + task * 10_007 + shard + k * shards`` (k = 0, 1, ...) up to ``max_tries``; each job
writes its own file atomically, so an interrupted run resumes by skipping the finished jobs' files. A
privileged backbone runs camera-free first and only its successes are replayed with the cameras
(``first_pass="camera-free"``; the env is deterministic, so the replay reproduces the episode, which is
checked); ``first_pass="cameras"`` renders every try (cheaper when most tries succeed: rendering is most of
a step's cost). File ``OUT/task{t}_demo.hdf5`` (one shard) or ``OUT/task{t}_s{k}_demo.hdf5``::

    data                      attrs: env_name, env_args (JSON), problem_info (JSON), bddl_file_name,
                                     language, task_id, total (samples), num_demos, image_size, source,
                                     render (JSON: quality, culling, MSAA samples, triangles drawn),
                                     placements, shard, shards, quota, tries, complete
    data/demo_i               attrs: num_samples, init_state (-1 when fresh), placement_seed (-1 when
                                     fixed), seed, nearest_init_state, nearest_init_mm
      layout [S] (the flattened MuJoCo state right after reset, before the wait steps)
      actions [T, 7]  rewards [T]  dones [T]  states [T, S] (MuJoCo flattened)  robot_states [T, 9]
      obs/agentview_rgb [T, H, W, 3]  obs/eye_in_hand_rgb [T, H, W, 3]    (upright, as LiberoEnv gives)
      obs/state [T, 8]  obs/ee_pos [T, 3]  obs/ee_ori [T, 3]  obs/ee_states [T, 6]
      obs/gripper_states [T, 2]  obs/joint_states [T, 7]

``obs[t]`` is what the policy saw before ``actions[t]``; ``rewards[t]``/``dones[t]`` follow it.
Unlike LIBERO's released files the images are stored upright (LIBERO's are bottom row first).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sim.libero.env import N_INIT_STATES, quat2axisangle

SPLIT_MIN_MM = 1.0  # a training layout closer than this to a fixed init state counts as that state


def placement_seed(seed: int, task: int, shard: int, k: int, shards: int) -> int:
    """The placement seed of try ``k`` of shard ``shard`` of ``task`` (module docstring)."""
    return (seed * 1_000_003 + task * 10_007 + shard + k * shards) % 2**32


def rollout(env, backbone, episode: dict, seed: int, actions=None) -> dict:
    """One episode: the backbone's base action acts (``actions=None``) or ``actions`` are replayed.
    ``episode`` is LiberoEnv's reset options: ``{"init_state": i}`` or ``{"placement_seed": s}``."""
    obs, _ = env.reset(seed=seed, options=episode)
    if actions is None:
        backbone.reset()
    keys = ("image", "wrist_image", "state")
    ep = {k: [] for k in (*keys, "actions", "rewards", "dones", "states", "raw")}
    success, t = False, 0
    while True:
        if actions is None:
            a = backbone(env.observation(obs, backbone.spec.privileged))[1].astype(np.float64)
        else:
            a = actions[t]
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
        obs, reward, success, truncated, _ = env.step(a)
        ep["actions"].append(np.asarray(a, dtype=np.float64))
        ep["rewards"].append(reward)
        ep["dones"].append(bool(success or truncated))
        t += 1
        if success or truncated or (actions is not None and t == len(actions)):
            break
    out = {k: np.asarray(v) for k, v in ep.items() if len(v)}
    out["success"], out["steps"], out["layout"] = bool(success), t, env.layout.copy()
    return out


def write_task_file(path: Path, demos: list[dict], meta: dict) -> None:
    """Write ``demos`` (from :func:`rollout`, with ``init_state``/``seed``) in the layout above."""
    import h5py

    tmp = path.with_suffix(".hdf5.tmp")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for k, v in meta.items():
            data.attrs[k] = json.dumps(v) if isinstance(v, dict) else v
        data.attrs["total"] = int(sum(len(d["actions"]) for d in demos))
        data.attrs["num_demos"] = len(demos)
        for i, d in enumerate(demos):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = len(d["actions"])
            for key in ("init_state", "seed", "placement_seed", "nearest_init_state"):
                g.attrs[key] = int(d.get(key, -1))
            g.attrs["nearest_init_mm"] = float(d.get("nearest_init_mm", 0.0))
            if "layout" in d:
                g.create_dataset("layout", data=d["layout"])
            g.create_dataset("actions", data=d["actions"])
            g.create_dataset("rewards", data=np.asarray(d["rewards"], dtype=np.float64))
            g.create_dataset("dones", data=np.asarray(d["dones"], dtype=np.uint8))
            g.create_dataset("states", data=d["states"])
            raw = d["raw"]  # eef pos 3, eef quat 4, gripper 2, joints 7
            g.create_dataset(
                "robot_states", data=np.concatenate([raw[:, 7:9], raw[:, 0:3], raw[:, 3:7]], axis=1)
            )
            o = g.create_group("obs")
            img = dict(compression="gzip", compression_opts=4, chunks=True)
            if "image" in d:
                o.create_dataset("agentview_rgb", data=d["image"], **img)
            if "wrist_image" in d:
                o.create_dataset("eye_in_hand_rgb", data=d["wrist_image"], **img)
            ori = np.stack([quat2axisangle(q) for q in raw[:, 3:7]])
            o.create_dataset("state", data=d["state"].astype(np.float32))
            o.create_dataset("ee_pos", data=raw[:, 0:3])
            o.create_dataset("ee_ori", data=ori)
            o.create_dataset("ee_states", data=np.concatenate([raw[:, 0:3], ori], axis=1))
            o.create_dataset("gripper_states", data=raw[:, 7:9])
            o.create_dataset("joint_states", data=raw[:, 9:16])
    tmp.replace(path)


def job_file(out, task: int, shard: int, shards: int) -> Path:
    return Path(out) / (f"task{task}_demo.hdf5" if shards == 1 else f"task{task}_s{shard}_demo.hdf5")


def _finished(path: Path) -> dict | None:
    """The summary of a job whose file is complete (written by :func:`record_task`), else None."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            a = dict(f["data"].attrs)
    except (OSError, KeyError):
        return None
    if not a.get("complete"):
        return None
    return dict(
        task=int(a["task_id"]),
        shard=int(a.get("shard", 0)),
        demos=int(a["num_demos"]),
        file=str(path),
        tried=[],
        dropped=[],
        tries=int(a.get("tries", 0)),
        resumed=True,
        expert_success=f"{int(a['num_demos'])}/{int(a.get('tries', 0))}",
        mean_steps=None,
        wall_s=0.0,
    )


def _episodes(p: dict):
    """The reset options a job tries, in order (module docstring)."""
    shard, shards = p.get("shard", 0), p.get("shards", 1)
    if p.get("placements", "fresh") == "fixed":
        for init in range(p.get("start", 0) + shard, N_INIT_STATES, shards):
            yield {"init_state": init}
        return
    for k in range(p["max_tries"]):
        yield {"placement_seed": placement_seed(p["seed"], p["task"], shard, k, shards)}


def record_task(p: dict) -> dict:
    """Worker job: record ``p['quota']`` demos of task ``p['task']``, shard ``p['shard']`` (module doc)."""
    from policies.factory import make_backbone
    from sim.libero.env import LiberoEnv

    t0 = time.perf_counter()
    task, shard, shards = p["task"], p.get("shard", 0), p.get("shards", 1)
    path = job_file(p["out"], task, shard, shards)
    done = _finished(path)
    if done is not None:
        print(f"[demos] task {task} shard {shard}: {path.name} complete, skipped", flush=True)
        return done
    env = LiberoEnv(
        task,
        image_size=p["image_size"],
        cameras=("image", "wrist_image"),
        render_quality=p.get("render", "faithful"),
    )
    backbone = make_backbone(p.get("backbone", "libero_expert"), p.get("backbone_args"))
    first_pass = p.get("first_pass", "auto")
    render_first = first_pass == "cameras" or (first_pass == "auto" and bool(backbone.spec.cameras))
    demos, tried, dropped, expert_steps = [], [], [], []
    try:
        for episode in _episodes(p):
            if len(demos) >= p["quota"]:
                break
            what = ", ".join(f"{k} {v}" for k, v in episode.items())
            env.set_cameras(render_first)
            first = rollout(env, backbone, episode, p["seed"])
            tried.append(dict(episode, success=first["success"], steps=first["steps"]))
            if not first["success"]:
                print(f"[demos] task {task} {what}: failed ({first['steps']} steps)", flush=True)
                continue
            expert_steps.append(first["steps"])
            if render_first:
                ep = first
            else:
                env.set_cameras(True)
                ep = rollout(env, backbone, episode, p["seed"], actions=first["actions"])
            if not (ep["success"] and ep["steps"] == first["steps"]):
                dropped.append(episode)
                print(f"[demos] task {task} {what}: replay diverged, dropped", flush=True)
                continue
            nearest, dist = env.nearest_init_state(ep["layout"])
            ep.update(
                init_state=env.init_state,
                placement_seed=episode.get("placement_seed", -1),
                seed=p["seed"],
                nearest_init_state=nearest,
                nearest_init_mm=1000 * dist,
            )
            demos.append(ep)
            print(
                f"[demos] task {task} {what}: kept demo {len(demos)}/{p['quota']} ({ep['steps']} steps, "
                f"{1000 * dist:.0f} mm from init state {nearest})",
                flush=True,
            )
        meta = dict(
            env_name=env.raw_env.problem_name,
            env_args=dict(
                env_name=env.raw_env.problem_name,
                type=1,
                env_kwargs=dict(
                    bddl_file_name=env.raw_env.env.bddl_file_name,
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
            bddl_file_name=env.raw_env.env.bddl_file_name,
            language=env.language,
            task_id=task,
            image_size=p["image_size"],
            source=f"aura backbone {p.get('backbone', 'libero_expert')} (policies/)",
            render=env.render_info,
            placements=p.get("placements", "fresh"),
            shard=shard,
            shards=shards,
            quota=p["quota"],
            tries=len(tried),
            complete=1,
        )
        if demos:
            write_task_file(path, demos, meta)
    finally:
        env.close()
    ok = sum(t["success"] for t in tried)
    return dict(
        task=task,
        shard=shard,
        demos=len(demos),
        file=str(path) if demos else None,
        tried=tried,
        dropped=dropped,
        tries=len(tried),
        expert_success=f"{ok}/{len(tried)}",
        mean_steps=float(np.mean(expert_steps)) if expert_steps else None,
        wall_s=time.perf_counter() - t0,
    )


def verify_split(path, min_mm: float = SPLIT_MIN_MM) -> dict:
    """Check a demo file against the evaluation set: no demo on a fixed init state, none whose recorded
    layout is within ``min_mm`` of one. Returns {demos, min_nearest_mm}; ValueError naming the file."""
    import h5py

    with h5py.File(path, "r") as f:
        demos = [f["data"][k] for k in f["data"]]
        inits = [int(g.attrs.get("init_state", -1)) for g in demos]
        near = [float(g.attrs.get("nearest_init_mm", 0.0)) for g in demos]
        has_layout = all("layout" in g for g in demos)
    if any(i >= 0 for i in inits) or not has_layout:
        raise ValueError(
            f"{path}: recorded on LIBERO's fixed init states (the evaluation set); record training "
            "demos with --placements fresh"
        )
    if near and min(near) < min_mm:
        raise ValueError(
            f"{path}: a demo's layout is {min(near):.2f} mm from a fixed init state (< {min_mm} mm)"
        )
    return dict(demos=len(demos), min_nearest_mm=min(near) if near else None)


class _TaskScheduler:
    def __init__(self, jobs, retries: int):
        self.queue, self.retries, self.results, self.errors = list(jobs), retries, [], []

    def next_job(self):
        return self.queue.pop(0) if self.queue else None

    def finished(self, job, result):
        self.results.append(result)

    def failed(self, job, error):
        self.errors.append(dict(task=job.key[0], shard=job.key[1], attempt=job.attempt, error=error))
        print(
            f"[demos] task {job.key[0]} shard {job.key[1]} attempt {job.attempt} failed: "
            f"{error.splitlines()[0]}",
            flush=True,
        )
        if job.attempt <= self.retries:
            job.attempt += 1
            self.queue.insert(0, job)

    def open(self):
        return bool(self.queue)


def record_demos(
    tasks: list[int],
    out: Path,
    *,
    per_task: int,
    shards: int = 1,
    placements: str = "fresh",
    start: int = 0,
    max_tries: int | None = None,
    first_pass: str = "auto",
    image_size: int = 128,
    render: str = "faithful",
    seed: int = 0,
    workers: int = 2,
    backbone: str = "libero_expert",
    backbone_args: dict | None = None,
) -> dict:
    """Record ``per_task`` successful demos of each task as ``shards`` jobs per task in ``workers`` processes
    (resuming finished jobs); ``OUT/demos.json`` summarises every job."""
    from sim.libero.workers import Job, run_local

    if placements not in ("fresh", "fixed"):
        raise ValueError(f"--placements must be 'fresh' or 'fixed', got {placements!r}")
    if first_pass not in ("auto", "camera-free", "cameras"):
        raise ValueError(f"--first-pass must be auto, camera-free or cameras, got {first_pass!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quota = -(-per_task // shards)
    base = dict(
        quota=quota,
        shards=shards,
        placements=placements,
        start=start,
        first_pass=first_pass,
        max_tries=max_tries or 6 * quota,
        image_size=image_size,
        seed=seed,
        out=str(out),
        render=render,
        backbone=backbone,
        backbone_args=backbone_args or {},
    )
    jobs = [Job((t, k), dict(base, task=t, shard=k)) for t in tasks for k in range(shards)]
    sched = _TaskScheduler(jobs, retries=1)
    t0 = time.perf_counter()
    run_local(sched, record_task, min(workers, len(jobs)))
    per_task_rows = []
    for t in tasks:
        rows = [r for r in sched.results if r["task"] == t]
        tries = sum(r["tries"] for r in rows)
        kept = sum(r["demos"] for r in rows)
        steps = [r["mean_steps"] for r in rows if r["mean_steps"]]
        per_task_rows.append(
            dict(
                task=t,
                demos=kept,
                tries=tries,
                expert_success=f"{kept}/{tries}",
                files=sorted(r["file"] for r in rows if r["file"]),
                mean_steps=float(np.mean(steps)) if steps else None,
            )
        )
    doc = dict(
        results=per_task_rows,
        jobs=sorted(sched.results, key=lambda r: (r["task"], r["shard"])),
        errors=sched.errors,
        args=base,
        wall_s=time.perf_counter() - t0,
    )
    (out / "demos.json").write_text(json.dumps(doc, indent=1))
    return doc
