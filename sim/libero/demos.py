"""Demonstrations from a backbone's actions (the scripted expert by default) in LIBERO's robomimic HDF5
layout.

For each task, init states 0, 1, ... are tried until ``--per-task`` successful episodes are kept.
Each try first runs the expert camera-free (rendering is ~100x the physics cost on a software GL);
only a success is replayed with the cameras on - the env is deterministic, so the replay of the
recorded actions reproduces the episode, which is checked (a replay that does not end in success at
the same step is dropped and reported). One file per task, ``OUT/task{t}_demo.hdf5``::

    data                      attrs: env_name, env_args (JSON), problem_info (JSON), bddl_file_name,
                                     language, task_id, total (samples), num_demos, image_size, source,
                                     render (JSON: quality, culling, MSAA samples, triangles drawn)
    data/demo_i               attrs: num_samples, init_state, seed
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


def rollout(env, backbone, init_state: int, seed: int, actions=None) -> dict:
    """One episode: the backbone's base action acts (``actions=None``) or ``actions`` are replayed."""
    obs, _ = env.reset(seed=seed, options={"init_state": init_state})
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
    out["success"], out["steps"] = bool(success), t
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
            g.attrs["init_state"] = int(d["init_state"])
            g.attrs["seed"] = int(d["seed"])
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


def record_task(p: dict) -> dict:
    """Worker job: record ``p['per_task']`` demos of task ``p['task']`` into ``p['out']``."""
    from policies.factory import make_backbone
    from sim.libero.env import LiberoEnv

    t0 = time.perf_counter()
    task = p["task"]
    env = LiberoEnv(
        task,
        image_size=p["image_size"],
        cameras=("image", "wrist_image"),
        render_quality=p.get("render", "faithful"),
    )
    backbone = make_backbone(p.get("backbone", "libero_expert"), p.get("backbone_args"))
    # A backbone that sees pixels needs the cameras in its own pass; a privileged one runs camera-free
    # first (rendering is most of a step's cost) and only its successes are replayed with the cameras.
    render_first = bool(backbone.spec.cameras)
    demos, tried, dropped, expert_steps = [], [], [], []
    try:
        for init in range(p["start"], N_INIT_STATES):
            if len(demos) >= p["per_task"]:
                break
            env.set_cameras(render_first)
            first = rollout(env, backbone, init, p["seed"])
            tried.append(dict(init_state=init, success=first["success"], steps=first["steps"]))
            if not first["success"]:
                print(f"[demos] task {task} init {init}: expert failed ({first['steps']} steps)", flush=True)
                continue
            expert_steps.append(first["steps"])
            if render_first:
                ep = first
            else:
                env.set_cameras(True)
                ep = rollout(env, backbone, init, p["seed"], actions=first["actions"])
            if not (ep["success"] and ep["steps"] == first["steps"]):
                dropped.append(init)
                print(f"[demos] task {task} init {init}: replay diverged, dropped", flush=True)
                continue
            ep.update(init_state=init, seed=p["seed"])
            demos.append(ep)
            print(
                f"[demos] task {task} init {init}: kept demo {len(demos)}/{p['per_task']} "
                f"({ep['steps']} steps)",
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
        )
        path = Path(p["out"]) / f"task{task}_demo.hdf5"
        if demos:
            write_task_file(path, demos, meta)
    finally:
        env.close()
    ok = sum(t["success"] for t in tried)
    return dict(
        task=task,
        demos=len(demos),
        file=str(path) if demos else None,
        tried=tried,
        dropped=dropped,
        expert_success=f"{ok}/{len(tried)}",
        mean_steps=float(np.mean(expert_steps)) if expert_steps else None,
        wall_s=time.perf_counter() - t0,
    )


class _TaskScheduler:
    def __init__(self, jobs, retries: int):
        self.queue, self.retries, self.results, self.errors = list(jobs), retries, [], []

    def next_job(self):
        return self.queue.pop(0) if self.queue else None

    def finished(self, job, result):
        self.results.append(result)

    def failed(self, job, error):
        self.errors.append(dict(task=job.key[0], attempt=job.attempt, error=error))
        print(f"[demos] task {job.key[0]} attempt {job.attempt} failed: {error.splitlines()[0]}", flush=True)
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
    start: int = 0,
    image_size: int = 128,
    render: str = "faithful",
    seed: int = 0,
    workers: int = 2,
    backbone: str = "libero_expert",
    backbone_args: dict | None = None,
) -> dict:
    """Record ``per_task`` successful demos of each task in ``workers`` processes; ``OUT/demos.json``."""
    from sim.libero.workers import Job, run_local

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = dict(
        per_task=per_task,
        start=start,
        image_size=image_size,
        seed=seed,
        out=str(out),
        render=render,
        backbone=backbone,
        backbone_args=backbone_args or {},
    )
    sched = _TaskScheduler([Job((t,), dict(base, task=t)) for t in tasks], retries=1)
    t0 = time.perf_counter()
    run_local(sched, record_task, min(workers, len(tasks)))
    results = sorted(sched.results, key=lambda r: r["task"])
    doc = dict(results=results, errors=sched.errors, args=base, wall_s=time.perf_counter() - t0)
    (out / "demos.json").write_text(json.dumps(doc, indent=1))
    return doc
