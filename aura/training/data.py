"""Training data for ``aura train``: (features, base actions, target actions) sequences.

A data file is safetensors (or HDF5 with h5py) holding three float arrays with one sequence per row:

    features        [N, T, d_model]
    base_actions    [N, T, d_action]
    target_actions  [N, T, d_action]   NaN rows mark steps without supervision

Loading checks names, ranks, shapes and finiteness and raises ValueError naming the file and array.

``load_many`` reads several such files (``aura train --data A --data B``), e.g. demo features of length T1
with closed-loop rollouts of length T2: every file is checked by ``load_sequences``, d_model and d_action
must agree (ValueError naming both files), and each file is padded to the longest T the way ``aura sim
features`` / ``aura sim rollouts`` pad their own sequences: features and base_actions repeat the row's last
step, target_actions are NaN (unsupervised, so a padded step adds nothing to the action loss). The rows are
then concatenated along N in the order given. One file gives exactly ``load_sequences``' arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

NAMES = ("features", "base_actions", "target_actions")


def load_sequences(path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file")
    arrays: dict[str, np.ndarray] = {}
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                for name in NAMES:
                    if name in f:
                        arrays[name] = np.asarray(f[name], dtype=np.float32)
        except OSError as exc:
            raise ValueError(f"--data {path}: not a readable HDF5 file ({exc})") from None
    else:
        from safetensors.numpy import load_file

        try:
            raw = load_file(str(path))
        except Exception as exc:  # safetensors' own error types
            raise ValueError(f"--data {path}: not a readable safetensors file ({exc})") from None
        arrays = {k: v.astype(np.float32, copy=False) for k, v in raw.items() if k in NAMES}
    missing = [n for n in NAMES if n not in arrays]
    if missing:
        raise ValueError(f"--data {path}: missing array(s) {missing} (needs {list(NAMES)})")
    f, b, t = (arrays[n] for n in NAMES)
    if f.ndim != 3 or b.ndim != 3 or t.ndim != 3:
        raise ValueError(f"--data {path}: arrays must be [N, T, D]; got {f.shape}, {b.shape}, {t.shape}")
    if f.shape[:2] != b.shape[:2] or b.shape != t.shape:
        raise ValueError(
            f"--data {path}: shapes disagree: features {f.shape}, base_actions {b.shape},"
            f" target_actions {t.shape}"
        )
    if not np.isfinite(f).all() or not np.isfinite(b).all():
        raise ValueError(f"--data {path}: features / base_actions contain non-finite values")
    sup = np.isfinite(t).all(-1)
    if not sup.any():
        raise ValueError(f"--data {path}: target_actions has no supervised (all-finite) step")
    return arrays


def load_many(paths) -> dict[str, np.ndarray]:
    """``load_sequences`` for each path, padded to the longest T (module docstring) and stacked along N."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("--data: no file given")
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:  # its rows would sit in both the training and the held-out split
            raise ValueError(f"--data {path}: given more than once")
        seen.add(path.resolve())
    loaded = [load_sequences(p) for p in paths]
    first = loaded[0]
    for path, arrays in zip(paths[1:], loaded[1:]):
        for name in ("features", "base_actions"):
            if arrays[name].shape[2] != first[name].shape[2]:
                raise ValueError(
                    f"--data {path}: {name} {arrays[name].shape} and --data {paths[0]}: {name}"
                    f" {first[name].shape} differ in the last dimension (d_model / d_action must agree)"
                )
    if len(loaded) == 1:
        return first
    t_max = max(a["features"].shape[1] for a in loaded)
    return {n: np.concatenate([pad_time(a[n], t_max, n == "target_actions") for a in loaded]) for n in NAMES}


def pad_time(x: np.ndarray, t: int, nan: bool) -> np.ndarray:
    """[N, T, D] -> [N, t, D]: NaN steps (targets) or the last step repeated (features, base actions). The
    one padding rule of sequence files: ``aura sim features`` / ``aura sim rollouts`` pad with it too."""
    extra = t - x.shape[1]
    if extra == 0:
        return x
    if nan:
        fill = np.full((x.shape[0], extra, x.shape[2]), np.nan, x.dtype)
    else:
        fill = np.repeat(x[:, -1:], extra, axis=1)
    return np.concatenate([x, fill], axis=1)


def save_sequences(path, features, base_actions, target_actions, metadata: dict | None = None) -> None:
    """Write the three arrays as safetensors; ``metadata`` (str -> str) goes into the file's header."""
    from safetensors.numpy import save_file

    save_file(
        {
            "features": np.ascontiguousarray(features, dtype=np.float32),
            "base_actions": np.ascontiguousarray(base_actions, dtype=np.float32),
            "target_actions": np.ascontiguousarray(target_actions, dtype=np.float32),
        },
        str(path),
        metadata=metadata,
    )


class SequenceSampler:
    """batches(step) -> (z, base, target) torch tensors: random rows, seeded by (seed, step)."""

    def __init__(self, arrays: dict[str, np.ndarray], batch: int, seed: int = 0):
        self.arrays, self.batch, self.seed = arrays, batch, seed
        self.n = arrays["features"].shape[0]

    def __call__(self, step: int):
        rng = np.random.default_rng([self.seed, step])
        idx = rng.choice(self.n, size=min(self.batch, self.n), replace=False)
        return tuple(torch.from_numpy(self.arrays[n][idx]) for n in NAMES)
