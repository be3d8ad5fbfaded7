"""Files of ``aura sim rollouts`` (``sim.libero.rollouts``): one HDF5 file per episode, the merged sequence
file, the split checks and the summary table.

Episode file ``OUT/episodes/task{t}_k{k:04d}.hdf5``, in the demo files' split layout, so
``sim.libero.demos.verify_split`` checks it (no fixed init state, layout > 1 mm from all 50)::

    data                  attrs: record (JSON: the episode's record), render (JSON), complete
    data/demo_0           attrs: init_state (-1), placement_seed, seed, nearest_init_state, nearest_init_mm
      layout [S]                                 flattened MuJoCo state right after the reset
      features [T, d]  base_actions [T, 7]  target_actions [T, 7] (NaN: unsupervised)
      executed_actions [T, 7]  expert_executed [T] (uint8)
      expert_stage [T] (int16, an index into the record's stage_names)
      with images (``aura sim rollouts --images``), the demo files' training layout too:
      actions [T, 7] (= target_actions, NaN: unsupervised)
      obs/agentview_rgb, obs/eye_in_hand_rgb [T, S, S, 3] uint8 (what the backbone saw), obs/state [T, 8]
    data attrs language, task_id (as in demo files, so ``policies.libero_vla.data.load_demos`` reads it),
      unlabelled_rows = "nan" (its NaN label rows are unsupervised, not corrupt)

It is written to a temporary name and renamed, so an existing file is a finished episode.

``OUT/rollouts.safetensors`` (``aura train --data``): ``features [N, T, d]``, ``base_actions``,
``target_actions [N, T, 7]`` padded as ``sim.libero.features.pad`` does (last step repeated, NaN targets),
plus arrays ``aura.training.data`` ignores: ``executed_actions`` (NaN padded), ``expert_executed`` (0
padded), ``expert_stage [N, T]`` (int32 into the metadata's ``stage_names``, -1 padded), and per
episode ``episode_task``, ``episode_k``, ``episode_placement_seed``, ``episode_success``, ``episode_steps``
(int64) and ``episode_labelled_fraction`` (float32). Header metadata ``aura.rollouts`` holds the JSON of
stage names and settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA_FILE = "rollouts.safetensors"
META_KEY = "aura.rollouts"
# the shipped checkpoint's demo seeds (libero_vla_e56/demos.json holds the same 588 tries)
DEFAULT_DEMOS_RECORD = Path("benchmarks/results/libero_vla/demos.json")


def episode_file(out, task: int, k: int) -> Path:
    return Path(out) / "episodes" / f"task{task}_k{k:04d}.hdf5"


def write_episode(
    path: Path, arrays: dict, layout: np.ndarray, record: dict, render: dict, observed: dict | None = None
) -> None:
    import h5py

    from policies.libero_vla.data import UNLABELLED_ATTR
    from sim.libero.demos import IMAGE_DATASET

    tmp = path.with_suffix(".hdf5.tmp")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["record"] = json.dumps(record)
        data.attrs["render"] = json.dumps(render)
        data.attrs["language"] = record["language"]
        data.attrs["task_id"] = int(record["task"])
        g = data.create_group("demo_0")
        for key in ("init_state", "placement_seed", "seed", "nearest_init_task", "nearest_init_state"):
            g.attrs[key] = int(record[key])
        g.attrs["nearest_init_mm"] = float(record["nearest_init_mm"])
        g.attrs["num_samples"] = int(record["steps"])
        g.create_dataset("layout", data=layout)
        for name, value in arrays.items():
            g.create_dataset(name, data=value)
        if observed:
            data.attrs[UNLABELLED_ATTR] = "nan"  # NaN labels are unsupervised rows, not corruption
            g.create_dataset("actions", data=arrays["target_actions"])
            o = g.create_group("obs")
            o.create_dataset("agentview_rgb", data=observed["image"], **IMAGE_DATASET)
            o.create_dataset("eye_in_hand_rgb", data=observed["wrist_image"], **IMAGE_DATASET)
            o.create_dataset("state", data=np.asarray(observed["state"], np.float32))
        data.attrs["complete"] = 1
    tmp.replace(path)


def read_episode_record(path: Path) -> dict | None:
    """The record of a finished episode file, else None (missing, unreadable or incomplete)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if not f["data"].attrs.get("complete"):
                return None
            return json.loads(f["data"].attrs["record"])
    except (OSError, KeyError, ValueError):
        return None


def read_episode(path: Path) -> tuple[dict, dict]:
    import h5py

    with h5py.File(path, "r") as f:
        g = f["data/demo_0"]
        names = (
            "features",
            "base_actions",
            "target_actions",
            "executed_actions",
            "expert_executed",
            "expert_stage",
        )
        return {n: g[n][()] for n in names}, json.loads(f["data"].attrs["record"])


def merge(out: Path, wanted: list[tuple[int, int]], base: dict) -> dict:
    """Merge the finished episodes of ``wanted`` into ``OUT/rollouts.safetensors``, checking each split."""
    from safetensors.numpy import save_file

    from sim.libero.demos import verify_split
    from sim.libero.features import pad

    eps = []
    for t, k in wanted:
        path = episode_file(out, t, k)
        if read_episode_record(path) is not None:
            verify_split(path)  # ValueError naming the file: a fixed init state never reaches the data
            eps.append(read_episode(path))
    doc: dict = dict(args=base, data=None, episodes=[r for _, r in eps], missing=len(wanted) - len(eps))
    if not eps:
        return doc
    stage_names = sorted({s for _, r in eps for s in r["stage_names"]})
    arrays = pad([(a["features"], a["base_actions"], a["target_actions"]) for a, _ in eps])
    n, t_max = arrays["features"].shape[:2]
    executed = np.full((n, t_max, 7), np.nan, np.float32)
    by_expert = np.zeros((n, t_max), np.uint8)
    stage = np.full((n, t_max), -1, np.int32)
    for i, (a, r) in enumerate(eps):
        steps = len(a["features"])
        executed[i, :steps] = a["executed_actions"]
        by_expert[i, :steps] = a["expert_executed"]
        remap = np.array([stage_names.index(s) for s in r["stage_names"]], np.int32)
        stage[i, :steps] = remap[a["expert_stage"]]
    recs = [r for _, r in eps]
    arrays.update(
        executed_actions=executed,
        expert_executed=by_expert,
        expert_stage=stage,
        episode_task=np.array([r["task"] for r in recs], np.int64),
        episode_k=np.array([r["k"] for r in recs], np.int64),
        episode_placement_seed=np.array([r["placement_seed"] for r in recs], np.int64),
        episode_success=np.array([r["success"] for r in recs], np.int64),
        episode_steps=np.array([r["steps"] for r in recs], np.int64),
        episode_labelled_fraction=np.array([r["labelled_fraction"] for r in recs], np.float32),
    )
    path = Path(out) / DATA_FILE
    tmp = path.with_suffix(".safetensors.tmp")
    meta = dict(stage_names=stage_names, args=base)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in arrays.items()},
        str(tmp),
        metadata={META_KEY: json.dumps(meta)},
    )
    tmp.replace(path)
    labelled = np.isfinite(arrays["target_actions"]).all(-1)
    doc.update(
        data=str(path),
        shape=list(arrays["features"].shape),
        stage_names=stage_names,
        supervised_steps=int(labelled.sum()),
        steps=int(sum(r["steps"] for r in recs)),
        min_nearest_mm=float(min(r["nearest_init_mm"] for r in recs)),
        tasks=summary_rows(recs),
    )
    return doc


def summary_rows(recs: list[dict]) -> list[dict]:
    rows = []
    for t in sorted({r["task"] for r in recs}):
        mine = [r for r in recs if r["task"] == t]
        steps = sum(r["steps"] for r in mine)
        rows.append(
            dict(
                task=t,
                episodes=len(mine),
                successes=sum(r["success"] for r in mine),
                mean_steps=steps / len(mine),
                labelled_fraction=sum(r["labelled"] for r in mine) / steps,
                expert_executed_fraction=sum(r["expert_executed_fraction"] * r["steps"] for r in mine)
                / steps,
                expert_errors=sum(r["expert_error"] is not None for r in mine),
            )
        )
    return rows


def print_summary(doc: dict) -> None:
    """The per-task table (rich) on stderr."""
    from rich.console import Console
    from rich.table import Table

    teacher = (doc.get("args") or {}).get("teacher") or "expert"  # --teacher backbone: the teacher drove
    table = Table(title="aura sim rollouts")
    for col in (
        "task",
        "episodes",
        "successes",
        "mean steps",
        "labelled",
        f"{teacher} executed",
        "expert errors",
    ):
        table.add_column(col, justify="right")
    for r in doc.get("tasks", []):
        table.add_row(
            str(r["task"]),
            str(r["episodes"]),
            f"{r['successes']}/{r['episodes']}",
            f"{r['mean_steps']:.0f}",
            f"{100 * r['labelled_fraction']:.1f} %",
            f"{100 * r['expert_executed_fraction']:.1f} %",
            str(r["expert_errors"]),
        )
    Console(stderr=True).print(table)


def check_disjoint(record: Path, tasks: list[int], per_task: int, placement_base: int) -> int:
    """ValueError if a rollout's placement seed was used by the demos recorded in ``record`` (an
    ``aura sim demos`` demos.json, or its directory); returns how many demo seeds were compared."""
    from sim.libero.rollouts import rollout_placement_seed

    path = Path(record)
    if path.is_dir():
        path = path / "demos.json"
    try:
        doc = json.loads(path.read_text())
        used = {
            (j["task"], e["placement_seed"]) for j in doc["jobs"] for e in j["tried"] if "placement_seed" in e
        }
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--exclude-demos {path}: not a readable demos.json ({err})") from None
    clash = [
        (t, k)
        for t in tasks
        for k in range(per_task)
        if (t, rollout_placement_seed(placement_base, t, k)) in used
    ]
    if clash:
        t, k = clash[0]
        raise ValueError(
            f"--placement-base {placement_base}: {len(clash)} rollout(s) reuse a demo's placement seed from "
            f"{path} (first: task {t} k {k}); choose another base"
        )
    return len(used)
