"""Executing action chunks: temporal ensembling (ACT) or open-loop queues (OpenVLA-OFT); numpy only.

The network predicts a chunk ``A_t = (a_t|t, a_t+1|t, ..., a_t+K-1|t)`` at every planning step t.

``ensemble`` (ACT, Zhao et al. 2023): plan every step; the executed action averages every chunk that
covers step t, oldest first,

    a_t = sum_i w_i a_t|t_i / sum_i w_i,    w_i = exp(-m i),  i = 0 for the oldest of the <= K chunks

(m = ``decay``; m = 0.01 as ACT and LeRobot: almost a plain mean, which smooths the single-frame policy's
jitter; m < 0 would favour the newest chunk).

``open_loop`` (OpenVLA-OFT): plan when the queue is empty, then execute ``n_action_steps`` (<= K) actions of
that chunk without looking; the network runs once per ``n_action_steps`` steps.

Post-processing (:func:`finish`): clip to [-1, 1], and optionally snap the gripper to its sign (-1 open,
+1 close; the scripted demos only ever use +-1, and an averaged 0.1 would half-close the fingers).
"""

from __future__ import annotations

from collections import deque

import numpy as np

EXECUTIONS = ("ensemble", "open_loop")
# the one default of both backbones' configs: open-loop measured better on libero_10 (docs/libero_vla.md)
DEFAULT_EXECUTION = "open_loop"


class ChunkExecutor:
    """One episode's chunk bookkeeping; ``reset()`` between episodes (module docstring for the math)."""

    def __init__(
        self, chunk: int, mode: str = DEFAULT_EXECUTION, n_action_steps: int | None = None, decay=0.01
    ):
        if mode not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {mode!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        n = chunk if n_action_steps is None else n_action_steps
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= chunk:
            raise ValueError(f"n_action_steps must be an int in [1, {chunk}], got {n_action_steps!r}")
        self.chunk, self.mode, self.n_action_steps, self.decay = int(chunk), mode, int(n), float(decay)
        self._plans: deque[tuple[int, np.ndarray]] = deque(maxlen=self.chunk)  # (planned at step, chunk)
        self._queue: deque[np.ndarray] = deque()
        self.t = 0

    def reset(self) -> None:
        self._plans.clear()
        self._queue.clear()
        self.t = 0

    def queued(self) -> int:
        """Actions still queued (open-loop) or chunks still covering a future step (ensemble)."""
        return len(self._queue) if self.mode == "open_loop" else len(self._plans)

    def needs_plan(self) -> bool:
        """Whether the network must run before :meth:`pop` (always in ensemble mode)."""
        return self.mode == "ensemble" or not self._queue

    def push(self, chunk: np.ndarray) -> None:
        """Record the chunk planned at the current step (``[K, d_action]``)."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[0] != self.chunk:
            raise ValueError(f"chunk must be [{self.chunk}, d_action], got {chunk.shape}")
        if self.mode == "ensemble":
            self._plans.append((self.t, chunk))
        else:
            self._queue.extend(chunk[: self.n_action_steps])

    def pop(self) -> np.ndarray:
        """The action of the current step; advances the step counter."""
        if self.mode == "open_loop":
            if not self._queue:
                raise RuntimeError("ChunkExecutor.pop: the queue is empty; push a chunk first")
            action = self._queue.popleft()
        else:
            live = [c[self.t - t0] for t0, c in self._plans if 0 <= self.t - t0 < self.chunk]
            if not live:
                raise RuntimeError("ChunkExecutor.pop: no chunk covers this step; push a chunk first")
            w = np.exp(-self.decay * np.arange(len(live)))  # live is oldest first
            action = (w[:, None] * np.stack(live)).sum(0) / w.sum()
        self.t += 1
        return np.asarray(action, dtype=np.float32)


def finish(action: np.ndarray, binarize_gripper: bool = True, gripper: int = 6) -> np.ndarray:
    """Clip to [-1, 1]; snap the gripper dimension to -1 / +1 if asked (module docstring)."""
    out = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
    if binarize_gripper and out.shape[-1] > gripper:
        out[..., gripper] = np.where(out[..., gripper] > 0, 1.0, -1.0)
    return out
