"""Training data for ``aura train``: (features, base actions, target actions) sequences.

A data file is safetensors (or HDF5 with h5py) holding three float arrays with one sequence per row:

    features        [N, T, d_model]
    base_actions    [N, T, d_action]
    target_actions  [N, T, d_action]   NaN rows mark steps without supervision

Loading checks names, ranks, shapes and finiteness and raises ValueError naming the file and array.
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
