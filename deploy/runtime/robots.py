"""The robot protocol (reset, observe, act) of the control loop, and the numpy robots it ships with.

A *robot* is anything with

    reset(seed) -> None          start an episode
    observe() -> observation     the current observation (whatever its backbone understands)
    act(action) -> bool          apply an action [d_action] float32; True when the episode is over

and optionally ``stats() -> dict`` (merged into the episode summary), ``close()``, and ``backbone``: the
backbone it is meant to be driven with, as ``(name, fields)`` for ``policies.factory.make_backbone`` (used
when ``aura run`` gets no ``--backbone``). The backbone maps an observation to
``(features [d_model], base_action [d_action])`` (``policies.backbone``). :class:`GymRobot` adapts any
``gymnasium.Env``; a real robot implements the three methods itself.

:class:`NoiseRobot` is a self-contained numpy robot for smoke tests and benchmarks: its observation already
is ``(features, base_action)`` (AR(1) features with rare cue events, a fixed linear base policy), for the
``noise`` backbone. Robots by name (``--env``) are resolved in ``sim.robots``. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Robot(Protocol):
    def reset(self, seed: int | None = None) -> None: ...

    def observe(self) -> Any: ...

    def act(self, action: np.ndarray) -> bool: ...


class GymRobot:
    """Adapts a ``gymnasium.Env`` to the protocol; keeps the last observation, reward and info."""

    def __init__(self, env):
        self.env = env
        self.obs = None
        self.info: dict = {}
        self.episode_return = 0.0
        self.queries = self.correct = 0

    def reset(self, seed: int | None = None) -> None:
        self.obs, self.info = self.env.reset(seed=seed)
        self.episode_return = 0.0
        self.queries = self.correct = 0

    def observe(self):
        return self.obs

    def act(self, action: np.ndarray) -> bool:
        self.obs, reward, terminated, truncated, self.info = self.env.step(action)
        self.episode_return += float(reward)
        self.queries += bool(self.info.get("query", False))
        self.correct += bool(self.info.get("correct", False))
        return bool(terminated or truncated)

    def stats(self) -> dict:
        """Episode return, and query accuracy where the env reports ``query`` / ``correct`` in its info."""
        out = {"return": self.episode_return}
        if self.queries:
            out.update(queries=self.queries, accuracy=self.correct / self.queries)
        return out

    def close(self) -> None:
        self.env.close()


class NoiseRobot:
    """Numpy-only stand-in robot: AR(1) features with cue events every ~``1 / cue_rate`` steps.

    The observation is ``(features, base_action)`` already, so drive it with the ``noise`` backbone.
    Buffers are preallocated: stepping it allocates nothing, so it does not disturb memory measurements.
    """

    def __init__(
        self, d_model: int, d_action: int, episode_steps: int = 500, cue_rate: float = 0.02, seed: int = 0
    ):
        self.d_model, self.d_action, self.episode_steps, self.cue_rate = (
            d_model,
            d_action,
            episode_steps,
            cue_rate,
        )
        rng = np.random.default_rng(seed)
        self.policy = (rng.standard_normal((d_model, d_action)) / np.sqrt(d_model)).astype(np.float32)
        self.cues = rng.standard_normal((8, d_model)).astype(np.float32)
        self.features = np.zeros(d_model, dtype=np.float32)
        self.base = np.zeros(d_action, dtype=np.float32)
        self._noise = np.zeros(d_model, dtype=np.float32)
        self.rng = rng
        self.t = 0
        self.backbone = ("noise", {"d_model": d_model, "d_action": d_action})

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.features[:] = self.rng.standard_normal(self.d_model, dtype=np.float32)
        np.matmul(self.features, self.policy, out=self.base)

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        return self.features, self.base

    def act(self, action: np.ndarray) -> bool:
        self.t += 1
        self.rng.standard_normal(self.d_model, dtype=np.float32, out=self._noise)
        self.features *= np.float32(0.9)
        self._noise *= np.float32(0.436)  # sqrt(1 - 0.9^2): unit stationary variance
        self.features += self._noise
        if self.rng.random() < self.cue_rate:
            self.features += self.cues[self.rng.integers(len(self.cues))]
        np.matmul(self.features, self.policy, out=self.base)
        return self.t >= self.episode_steps
