"""``aura run --env libero:TASK[:INIT]``: a LIBERO task as a robot of the torch-free control loop.

``TASK`` is a libero_10 id (``3``) or a suite-qualified name (``libero_90:NAME`` or ``libero_90:INDEX``,
``sim.libero.tasks``), e.g.
``libero:libero_90:LIVING_ROOM_SCENE2_pick_up_the_milk_and_put_it_in_the_basket:7``.

Episode ``i`` (reset with seed ``s = --seed + i``) starts from LIBERO's fixed init state ``INIT`` when given,
else from init state ``s mod 50``; the observation is the backbone's dict (``policies.backbone``: both
cameras, proprio, the instruction); an episode ends on LIBERO's success predicate or after ``max_steps``.
``stats()`` adds ``success`` and the steps to the episode summary, and the time spent in the simulator
(physics + rendering) as ``sim_ms_mean``. With ``keep_frames`` (``aura run --media`` sets it) the episode's
agentview frames are kept and :meth:`write_video` writes them as an MP4 with the write events marked
(``sim.libero.report``).

Nothing here imports torch: LiberoEnv reads LIBERO's task table through ``sim.libero.tasks``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sim.libero.env import CAMERAS, MAX_STEPS, N_INIT_STATES, LiberoEnv
from sim.libero.tasks import SUITES, resolve_task


def parse_spec(rest: str) -> tuple[int, int | None]:
    """``"TASK[:INIT]"`` -> (task id, init state or None); ValueError naming ``--env``."""
    parts = rest.split(":") if rest else []
    if parts and parts[0] in SUITES:  # SUITE:NAME[:INIT]
        parts = [":".join(parts[:2]), *parts[2:]]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"--env libero:{rest}: expected libero:TASK[:INIT] (TASK an id or SUITE:NAME)")
    task = resolve_task(parts[0], option=f"--env libero:{rest}")
    init = int(parts[1]) if len(parts) > 1 else None
    if init is not None and not 0 <= init < N_INIT_STATES:
        raise ValueError(f"--env libero:{rest}: INIT must be in 0..{N_INIT_STATES - 1}")
    return task, init


class LiberoRobot:
    """The robot protocol (``deploy.runtime.robots.Robot``) over :class:`LiberoEnv` (module docstring)."""

    backbone = None  # no default: LIBERO needs a pixel backbone (aura run --backbone libero_vla_onnx ...)

    def __init__(
        self,
        task: int,
        init_state: int | None = None,
        *,
        image_size: int = 128,
        cameras: tuple[str, ...] = tuple(CAMERAS),
        max_steps: int = MAX_STEPS,
        render: str = "faithful",
        keep_frames: bool = False,
    ):
        self.env = LiberoEnv(
            task, image_size=image_size, cameras=tuple(cameras), max_steps=max_steps, render_quality=render
        )
        self.task, self.fixed_init = task, init_state
        self.keep_frames = keep_frames
        self.frames: list[np.ndarray] = []
        self.obs: dict | None = None
        self.success = False
        self.sim_s = 0.0

    def reset(self, seed: int | None = None) -> None:
        seed = 0 if seed is None else int(seed)
        init = self.fixed_init if self.fixed_init is not None else seed % N_INIT_STATES
        self.obs, _ = self.env.reset(seed=seed, options={"init_state": init})
        self.success, self.sim_s = False, 0.0
        self.frames = [self.obs["image"]] if self.keep_frames and "image" in self.obs else []

    def observe(self) -> dict:
        return self.env.observation(self.obs)

    def act(self, action: np.ndarray) -> bool:
        t0 = time.perf_counter()
        self.obs, _, self.success, truncated, _ = self.env.step(np.asarray(action, dtype=np.float64))
        self.sim_s += time.perf_counter() - t0
        if self.frames:
            self.frames.append(self.obs["image"])
        return bool(self.success or truncated)

    def stats(self) -> dict:
        steps = self.env.steps
        return {
            "success": bool(self.success),
            "task": self.task,
            "init_state": self.env.init_state,
            "sim_ms_mean": 1000 * self.sim_s / steps if steps else 0.0,
        }

    def write_video(self, path, write_steps: list[int]) -> Path | None:
        """The episode's agentview MP4 with the timeline of ``write_steps`` (None without frames)."""
        if not self.frames:
            return None
        from sim.libero.report import write_video

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_video(Path(path), self.frames, write_steps)
        return Path(path)

    def close(self) -> None:
        self.env.close()
