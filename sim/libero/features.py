"""A backbone run over recorded demonstrations: the (features, base actions, target actions) sequences that
``aura train --data`` reads (``aura.training.data``).

For demo ``i`` of ``T_i`` steps in a ``sim.libero.demos`` HDF5 file, step t gives the backbone the
observation the policy saw before ``actions[t]``::

    {image: agentview_rgb[t], wrist_image: eye_in_hand_rgb[t], state: state[t], language: the file's}

and, for a privileged backbone, the simulator restored to ``states[t]`` (a camera-free env of the task, state
set with MuJoCo's flattened state and forwarded). Then ``features[i, t], base_actions[i, t] = backbone(obs)``
and ``target_actions[i, t] = actions[t]`` (the demonstrator's). Sequences are padded to the longest demo by
repeating the last step's features and base action with NaN targets (unsupervised), so a padded step
teaches nothing. The backbone is reset at the start of every demo.

With ``instruction_steps=k`` (the transient-instruction variant, issue 13) ``language`` is the file's at steps
t < k and ``""`` from step k on (``sim.libero.env.instruction_at``: what ``LiberoEnv(task,
instruction_steps=k)`` hands a policy at its step t, and demo step t is that policy step), so the features and
base actions are those the deployed policy gets; the targets stay the demonstrator's actions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CAMERA_KEYS = {"image": "agentview_rgb", "wrist_image": "eye_in_hand_rgb"}
# the safetensors header key of `aura sim features` files: JSON with instruction_steps (K or null), backbone
FEATURES_META_KEY = "aura.features"


def sequence_header(path) -> dict[str, str]:
    """The safetensors header metadata of an ``aura train`` sequence file ({} for HDF5 or a missing file),
    without reading its arrays."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors' own error types
        raise ValueError(f"--data {path}: not a readable safetensors file ({err})") from None


def recorded_settings(meta: dict[str, str]) -> dict | None:
    """The settings an ``aura sim rollouts`` (``aura.rollouts``: its ``args``) or ``aura sim features``
    (``aura.features``) file recorded in its header ``meta`` (instruction_steps, backbone, its arguments);
    None for a file neither wrote."""
    from sim.libero.rollouts_io import META_KEY as ROLLOUTS_META_KEY

    if ROLLOUTS_META_KEY in meta:
        return json.loads(meta[ROLLOUTS_META_KEY])["args"]
    if FEATURES_META_KEY in meta:
        return json.loads(meta[FEATURES_META_KEY])
    return None


def demo_files(demos: Path) -> list[Path]:
    """The task files of a demo directory (``task{t}_demo.hdf5``), or the one file given."""
    demos = Path(demos)
    files = [demos] if demos.is_file() else sorted(demos.glob("task*_demo.hdf5"))
    if not files:
        raise ValueError(f"--demos {demos}: no task*_demo.hdf5 files")
    return files


class _PrivilegedReplay:
    """A camera-free env per task whose simulator is set to recorded states (for privileged backbones)."""

    def __init__(self):
        self.env = None

    def observation(self, task: int, flat_state: np.ndarray, obs: dict) -> dict:
        from sim.libero.env import LiberoEnv

        if self.env is None or self.env.task_id != task:
            if self.env is not None:
                self.env.close()
            self.env = LiberoEnv(task, cameras=())
            self.env.reset()
        inner = self.env.raw_env.env
        inner.sim.set_state_from_flattened(flat_state)
        inner.sim.forward()
        raw = inner._get_observations(force_update=True)
        return dict(obs, sim=self.env.raw_env, raw=raw, task_id=task)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


def extract(
    backbone, files: list[Path], progress: bool = True, instruction_steps: int | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Run ``backbone`` over every demo of ``files``; returns the three arrays and a per-file record.
    ``instruction_steps=k``: the instruction at steps t < k only (module docstring); None: at every step."""
    import h5py
    from tqdm.auto import tqdm

    from sim.libero.env import check_instruction_steps, instruction_at

    k = check_instruction_steps(instruction_steps, "--instruction-steps")
    spec = backbone.spec
    replay = _PrivilegedReplay() if spec.privileged else None
    seqs = []
    record = {"files": [], "demos": 0, "steps": 0, "instruction_steps": k}
    try:
        for path in files:
            try:
                f = h5py.File(path, "r")
            except OSError as err:
                raise ValueError(f"--demos {path}: not a readable HDF5 file ({err})") from None
            with f:
                data = f["data"]
                language = str(data.attrs.get("language", ""))
                task = int(data.attrs.get("task_id", -1))
                names = sorted(data, key=lambda n: int(n.split("_")[-1]))
                for name in tqdm(names, desc=path.name, disable=not progress, leave=False):
                    g = data[name]
                    missing = [CAMERA_KEYS[c] for c in spec.cameras if CAMERA_KEYS[c] not in g["obs"]]
                    if missing:
                        raise ValueError(f"--demos {path}: {name} has no {missing} (the backbone reads them)")
                    arrays = {c: g["obs"][CAMERA_KEYS[c]][()] for c in spec.cameras}
                    state, actions = g["obs"]["state"][()], g["actions"][()]
                    flat = g["states"][()] if replay is not None else None
                    backbone.reset()
                    z, base = [], []
                    for t in range(len(actions)):
                        obs = {c: arrays[c][t] for c in spec.cameras}
                        obs.update(state=state[t].astype(np.float32), language=instruction_at(language, k, t))
                        if replay is not None:
                            obs = replay.observation(task, flat[t], obs)
                        zt, bt = backbone(obs)
                        z.append(zt)
                        base.append(bt)
                    seqs.append((np.stack(z), np.stack(base), actions.astype(np.float32)))
                    record["demos"] += 1
                    record["steps"] += len(actions)
                record["files"].append(dict(file=str(path), task=task, demos=len(names), language=language))
    finally:
        if replay is not None:
            replay.close()
    return pad(seqs), record


def pad(seqs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack variable-length sequences: repeat the last features / base action, NaN targets (docstring;
    ``aura.training.data.pad_time``)."""
    from aura.training.data import NAMES, pad_time

    t_max = max(len(s[0]) for s in seqs)
    return {
        name: np.stack([pad_time(s[i][None], t_max, name == "target_actions")[0] for s in seqs]).astype(
            np.float32
        )
        for i, name in enumerate(NAMES)
    }
