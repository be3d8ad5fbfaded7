"""Fixed write schedules: the always-write, random and periodic arms that a learned gate is compared with.

The budget-matched arms get exactly ``n`` writes in an episode of ``T`` steps, where ``n`` is what the AURA
gate spent on the same episode:

* random:   ``n`` distinct steps drawn uniformly from ``[0, T)``;
* periodic: ``t_i = floor((i + 1/2) T / n)``, i = 0..n-1: evenly spaced, each write in the middle of its
  ``T / n`` slice. Centred rather than ``floor(i T / n)`` because the latter always writes at t = 0, which
  hands the periodic arm the episode's first observation (where a task shows its instruction) for free:
  an advantage of phase, not of spacing.

One definition for the synthetic benchmark and LIBERO (numpy only; no torch).
"""

from __future__ import annotations

import numpy as np


def random_schedule(n: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct steps drawn uniformly from ``[0, horizon)`` (all of them if ``n >= horizon``),
    sorted."""
    horizon = max(int(horizon), 0)
    return np.sort(rng.choice(horizon, size=min(int(n), horizon), replace=False))


def periodic_schedule(n: int, horizon: int) -> np.ndarray:
    """``n`` steps evenly spaced over ``[0, horizon)``: ``floor((i + 1/2) T / n)`` (module docstring)."""
    n, horizon = min(int(n), int(horizon)), int(horizon)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.floor((np.arange(n) + 0.5) * horizon / n).astype(np.int64)


def budget_matched(n_writes: np.ndarray, horizon: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random and periodic ``[N, T]`` bool schedules with exactly ``n_writes[i]`` writes in row ``i``."""
    rng = np.random.default_rng(seed)
    n = len(n_writes)
    rand = np.zeros((n, horizon), dtype=bool)
    per = np.zeros((n, horizon), dtype=bool)
    for i, c in enumerate(np.clip(n_writes, 0, horizon).astype(int)):
        rand[i, random_schedule(c, horizon, rng)] = True
        per[i, periodic_schedule(c, horizon)] = True
    return rand, per
