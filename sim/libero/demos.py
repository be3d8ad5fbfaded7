"""Demonstration files: LIBERO's robomimic-style HDF5 layout, the evaluation-split check, job files.

Recording (``sim.libero.recording``, ``aura sim demos``) keeps each job's successful episodes in one file,
``OUT/task{t}_b{batch}_demo.hdf5`` (a job that kept none leaves ``task{t}_b{batch}_empty.json``)::

    data                      attrs: env_name, env_args (JSON), problem_info (JSON), bddl_file_name,
                                     language, task_id, total (samples), num_demos, image_size, source,
                                     render (JSON: quality, culling, MSAA samples, triangles drawn),
                                     placements, action_noise (JSON: DART sigma, tau [, transit]; {} = none),
                                     batch, tries, complete
    data/demo_i               attrs: num_samples, init_state (-1 when fresh), placement_seed (-1 when
                                     fixed), seed, nearest_init_task, nearest_init_state, nearest_init_mm
                                     (the nearest fixed init state of any task of the same scene:
                                     ``LiberoEnv.nearest_scene_init_state``)
      layout [S] (the flattened MuJoCo state right after reset, before the wait steps)
      actions [T, 7]  rewards [T]  dones [T]  states [T, S] (MuJoCo flattened)  robot_states [T, 9]
      executed_actions [T, 7]   (only with action noise: what the env ran; ``actions`` = the clean labels)
      obs/agentview_rgb [T, H, W, 3]  obs/eye_in_hand_rgb [T, H, W, 3]    (upright, as LiberoEnv gives)
      obs/state [T, 8]  obs/ee_pos [T, 3]  obs/ee_ori [T, 3]  obs/ee_states [T, 6]
      obs/gripper_states [T, 2]  obs/joint_states [T, 7]

``obs[t]`` is what the policy saw before ``actions[t]``; ``rewards[t]``/``dones[t]`` follow it.
Unlike LIBERO's released files the images are stored upright (LIBERO's are bottom row first).

Split. LIBERO's 50 fixed init states are the evaluation set: every kept demo records its layout and its
distance to the nearest fixed init state (``nearest_init_mm``); :func:`verify_split` refuses a file with a
demo on a fixed init state or within ``SPLIT_MIN_MM`` of one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim.libero.env import quat2axisangle

SPLIT_MIN_MM = 1.0  # a training layout closer than this to a fixed init state counts as that state
# Camera videos: gzip 4 in h5py's auto chunks (~8x smaller than raw renders; policies.libero_vla.data
# inflates such chunks in threads)
IMAGE_DATASET = dict(compression="gzip", compression_opts=4, chunks=True)


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
            for key in ("init_state", "seed", "placement_seed", "nearest_init_task", "nearest_init_state"):
                g.attrs[key] = int(d.get(key, -1))
            g.attrs["nearest_init_mm"] = float(d.get("nearest_init_mm", 0.0))
            if "layout" in d:
                g.create_dataset("layout", data=d["layout"])
            g.create_dataset("actions", data=d["actions"])
            if len(d.get("executed", ())):  # DART demos: what ran; ``actions`` are the clean labels
                g.create_dataset("executed_actions", data=d["executed"])
            g.create_dataset("rewards", data=np.asarray(d["rewards"], dtype=np.float64))
            g.create_dataset("dones", data=np.asarray(d["dones"], dtype=np.uint8))
            g.create_dataset("states", data=d["states"])
            raw = d["raw"]  # eef pos 3, eef quat 4, gripper 2, joints 7
            g.create_dataset(
                "robot_states", data=np.concatenate([raw[:, 7:9], raw[:, 0:3], raw[:, 3:7]], axis=1)
            )
            o = g.create_group("obs")
            if "image" in d:
                o.create_dataset("agentview_rgb", data=d["image"], **IMAGE_DATASET)
            if "wrist_image" in d:
                o.create_dataset("eye_in_hand_rgb", data=d["wrist_image"], **IMAGE_DATASET)
            ori = np.stack([quat2axisangle(q) for q in raw[:, 3:7]])
            o.create_dataset("state", data=d["state"].astype(np.float32))
            o.create_dataset("ee_pos", data=raw[:, 0:3])
            o.create_dataset("ee_ori", data=ori)
            o.create_dataset("ee_states", data=np.concatenate([raw[:, 0:3], ori], axis=1))
            o.create_dataset("gripper_states", data=raw[:, 7:9])
            o.create_dataset("joint_states", data=raw[:, 9:16])
    tmp.replace(path)


def job_file(out, task: int, batch: int, kept: int = 1) -> Path:
    """A job's demo file, or (``kept=0``) the marker of a job that kept nothing (no demo file to train on)."""
    return Path(out) / (
        f"task{task}_b{batch:03d}_demo.hdf5" if kept else f"task{task}_b{batch:03d}_empty.json"
    )


def finished_job(out, task: int, batch: int) -> dict | None:
    """The summary of a job that finished before (a complete demo file or an empty marker), else None."""
    import h5py

    empty = job_file(out, task, batch, kept=0)
    if empty.is_file():
        return dict(json.loads(empty.read_text()), resumed=True)
    try:
        with h5py.File(job_file(out, task, batch), "r") as f:
            a = dict(f["data"].attrs)
    except (OSError, KeyError):
        return None
    if not a.get("complete"):
        return None
    n, tries = int(a["num_demos"]), int(a.get("tries", 0))
    return dict(
        task=task,
        batch=batch,
        demos=n,
        tries=tries,
        file=str(job_file(out, task, batch)),
        tried=[],
        dropped=[],
        steps=[],
        resumed=True,
        action_noise=json.loads(a.get("action_noise", "{}")),
        wall_s=0.0,
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
