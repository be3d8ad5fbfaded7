"""`LiberoEnv`: a gymnasium.Env over LIBERO tasks: LIBERO-Long (libero_10, ids 0-9) and the other suites'.

``task_id`` is an id or a name (``sim.libero.tasks.resolve_task``: ``3``, ``"libero_90:NAME"``,
``"libero_90:51"``); ``env.task_id`` is the id, ``env.task_name`` the suite-qualified name.
One episode is ``(task_id, init_state, seed)``: reset loads LIBERO's fixed init state ``init_state``
(0..49), runs ``wait_steps`` no-op steps (zero delta pose, gripper open) so that objects thrown by
the state load settle, then hands control to the policy for at most ``max_steps`` steps.

Observation (a ``gymnasium.spaces.Dict``):

* ``image`` - third-person ``agentview`` camera, ``uint8 [S, S, 3]``;
* ``wrist_image`` - ``robot0_eye_in_hand`` camera, ``uint8 [S, S, 3]``;
* ``state`` - 8-d proprio ``float32``: end-effector position (3), its orientation as an axis-angle
  vector (3, from the xyzw quaternion), gripper finger positions (2).

MuJoCo's offscreen frames come out bottom row first; they are flipped vertically here so row 0 is
the top of the picture (no left-right mirror: that is the camera's true view).

Reproducibility: LIBERO re-draws fixture placements (a few cm; not part of the init state) at every
reset from ``np.random``; ``reset`` seeds it with ``seed`` first, so (task, init state, seed) fixes the
episode bit for bit.

Action: 7-d in ``[-1, 1]`` (OSC delta position, delta rotation, gripper with -1 = open), clipped.
``terminated`` is the task's own BDDL goal predicate (``_check_success``); ``truncated`` is the
``max_steps`` limit. Rendering costs far more than physics on a software GL (docs/libero.md), so only the
requested cameras are rendered, none during the reset/wait steps, into an offscreen buffer of exactly the
image size (pixel-identical to LIBERO's 640x480 buffer, less to clear), with geoms outside the camera's view
culled (pixel-identical, ``sim.libero.render``). ``render_quality="fast"`` draws decimated render
meshes instead, ``"fastest"`` also without multisampling (different pixels, same physics; recorded in
``render_info``). ``cameras=()`` is a
camera-free env whose success predicate still works. ``raw_env`` is LIBERO's ``OffScreenRenderEnv`` and
``raw_obs`` its latest observation dict (object poses for privileged policies).
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.libero.tasks import N_TASKS, SUITE, resolve_task, scene_tasks, task_name, task_spec  # noqa: F401  (N_TASKS, SUITE: the env's constants too)

N_INIT_STATES = 50
WAIT_STEPS = 10
MAX_STEPS = 520
CAMERAS = {"image": "agentview", "wrist_image": "robot0_eye_in_hand"}
NOOP = np.array([0, 0, 0, 0, 0, 0, -1.0])


def check_instruction_steps(k, option: str = "instruction_steps") -> int | None:
    """``k`` as an int (None stays None: the instruction at every step); anything but an int >= 1 is a
    ValueError naming ``option``. The one check of the variant's K, for the env, the features and the CLIs."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{option} must be >= 1 (an integer), got {k!r}")
    return int(k)


def instruction_at(language: str, instruction_steps: int | None, step: int) -> str:
    """The instruction a policy sees at policy step ``step`` (0 = the first after reset): ``language`` at
    steps ``t < instruction_steps``, ``""`` from then on; always ``language`` when ``instruction_steps`` is
    None. The one definition of the transient-instruction variant (issue 13), shared by
    :meth:`LiberoEnv.observation` and ``sim.libero.features`` (demo step t = policy step t)."""
    return language if instruction_steps is None or step < instruction_steps else ""


def quat2axisangle(q: np.ndarray) -> np.ndarray:
    """Axis-angle vector ``theta * u`` of an xyzw quaternion (``theta`` in ``[0, pi]``)."""
    x, y, z, w = (float(v) for v in q)
    if w < 0:  # q and -q are the same rotation; pick the one with theta <= pi
        x, y, z, w = -x, -y, -z, -w
    s = np.sqrt(max(1.0 - w * w, 0.0))
    if s < 1e-8:
        return np.zeros(3)
    return np.array([x, y, z]) / s * 2.0 * np.arccos(min(w, 1.0))


def proprio(raw_obs: dict) -> np.ndarray:
    """The 8-d ``state`` from LIBERO's raw observation dict."""
    return np.concatenate(
        [
            raw_obs["robot0_eef_pos"],
            quat2axisangle(raw_obs["robot0_eef_quat"]),
            raw_obs["robot0_gripper_qpos"],
        ]
    ).astype(np.float32)


class LiberoEnv(gym.Env):
    """LIBERO task ``task_id`` (an id or a name) from init state ``init_state`` (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task_id: int | str,
        init_state: int = 0,
        seed: int = 0,
        image_size: int = 128,
        cameras: tuple[str, ...] = ("image", "wrist_image"),
        max_steps: int = MAX_STEPS,
        wait_steps: int = WAIT_STEPS,
        render_mode: str | None = None,
        render_quality: str = "faithful",
        instruction_steps: int | None = None,
    ):
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"cameras must be among {list(CAMERAS)}, got {unknown}")
        if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 1024:
            raise ValueError(f"image_size must be an int in [16, 1024], got {image_size!r}")
        if max_steps < 1 or wait_steps < 0:
            raise ValueError(f"need max_steps >= 1 and wait_steps >= 0, got {max_steps}, {wait_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_quality not in ("faithful", "fast", "fastest"):
            raise ValueError(
                f"render_quality must be 'faithful', 'fast' or 'fastest', got {render_quality!r}"
            )
        # The transient-instruction variant (issue 13): the instruction is seen at steps t < k only.
        self.instruction_steps = check_instruction_steps(instruction_steps)
        if render_mode == "rgb_array" and "image" not in cameras:
            raise ValueError("render_mode='rgb_array' returns the 'image' camera: include it in cameras")
        self.task_id = resolve_task(task_id)
        self.task_name = task_name(self.task_id)
        self.language, bddl, self.init_states = task_spec(self.task_id)
        self._scene_states: list | None = None  # (task, init states) of its scene, on first use
        self._check_init(init_state)
        self.init_state, self.seed, self.image_size = int(init_state), int(seed), int(image_size)
        self.placement_seed: int | None = None  # set by reset(options={"placement_seed": s})
        self.layout: np.ndarray | None = None
        self.cameras, self.max_steps, self.wait_steps = tuple(cameras), int(max_steps), int(wait_steps)
        self.render_mode, self.render_quality = render_mode, render_quality
        self.renderer = None  # sim.libero.render.SceneRenderer when cameras are rendered

        from libero.libero.envs import OffScreenRenderEnv

        kw: dict[str, Any] = dict(
            bddl_file_name=bddl,
            camera_heights=self.image_size,
            camera_widths=self.image_size,
            # A soft reset keeps the compiled model (much cheaper than a hard one; docs/libero.md). Every
            # reset (soft or hard) re-draws the placement of fixtures (cabinet, rack: model body_pos, not
            # part of the init state) from np.random, which reset() seeds first - so an episode is a
            # deterministic function of (task, init state, seed). A hard reset consumes the RNG
            # differently while loading the model: same distribution, other draws.
            hard_reset=False,
            horizon=self.wait_steps + self.max_steps + 10,
        )
        if self.cameras:
            kw["camera_names"] = [CAMERAS[c] for c in self.cameras]
        else:
            kw.update(has_offscreen_renderer=False, use_camera_obs=False)
        self.raw_env = OffScreenRenderEnv(**kw)
        if not _OPEN:
            # Registered after robosuite's EGL module (atexit runs last-in first-out), so open envs
            # are closed before robosuite terminates the EGL display.
            atexit.unregister(_close_all)
            atexit.register(_close_all)
        _OPEN.add(self)
        self.raw_env.seed(self.seed)
        if self.cameras:
            self._shrink_offscreen_buffer()
            ctx = self.raw_env.env.sim._render_context_offscreen
            if ctx is not None:
                # Imported here, after ensure_libero() has set MUJOCO_GL / PYOPENGL_PLATFORM.
                from sim.libero.render import SceneRenderer

                self.renderer = SceneRenderer(ctx, render_quality)

        img = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        obs_spaces: dict[str, spaces.Space] = {c: img for c in self.cameras}
        obs_spaces["state"] = spaces.Box(-10.0, 10.0, (8,), np.float32)  # metres / radians: loose but finite
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)
        self.raw_obs: dict[str, np.ndarray] = {}
        self.cameras_on = bool(self.cameras)
        self.steps = 0
        self._episode_ready = False

    def _check_init(self, i) -> None:
        n = len(self.init_states)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
            raise ValueError(f"init_state must be an int in [0, {n}), got {i!r}")

    @property
    def render_info(self) -> dict[str, Any]:
        """How images are rendered, for demo files and eval results: ``quality`` ("faithful" =
        LIBERO's pixels, "fast" = decimated render meshes, "fastest" = the same without MSAA),
        ``culling``, ``cell_m`` (decimation cell), ``msaa_samples``, ``faces`` (triangles of the
        rendered meshes: original, drawn), ``lp_num_threads``."""
        on = self.renderer is not None and self.renderer.installed
        info: dict[str, Any] = dict(quality=self.render_quality, culling=on)
        if self.renderer is not None:
            if self.render_quality != "faithful":
                info["cell_m"] = self.renderer.cell
            info["msaa_samples"] = int(self.raw_env.env.sim.model._model.vis.quality.offsamples)
            info["faces"] = list(self.renderer.faces())
        info["lp_num_threads"] = os.environ.get("LP_NUM_THREADS")
        return info

    def _shrink_offscreen_buffer(self) -> None:
        sim = self.raw_env.env.sim
        if sim._render_context_offscreen is None:
            return
        g = sim.model._model.vis.global_
        g.offwidth = g.offheight = self.image_size
        ctx = sim._render_context_offscreen
        ctx.con.free()
        ctx._set_mujoco_context_and_buffers()

    def object_positions(self, flat_state: np.ndarray) -> np.ndarray:
        """``[n_objects, 3]``: the position of every free-jointed (movable) object in a flattened MuJoCo
        state (``[time, qpos, qvel, ...]``, as ``layout``, the demos' ``states`` and the init states)."""
        m = self.raw_env.env.sim.model._model
        free = np.flatnonzero(m.jnt_type == 0)  # mjJNT_FREE: the objects (the robot is mounted)
        qpos = np.asarray(flat_state)[1 : 1 + m.nq]
        return np.stack([qpos[m.jnt_qposadr[j] : m.jnt_qposadr[j] + 3] for j in free])

    def nearest_init_state(self, flat_state: np.ndarray) -> tuple[int, float]:
        """``(i, d)``: the fixed init state whose object layout is nearest to ``flat_state``, and the largest
        object displacement between them in metres (the evaluation-split check of training data)."""
        return self._nearest(self.object_positions(flat_state), self.init_states)

    def nearest_scene_init_state(self, flat_state: np.ndarray) -> tuple[int, int, float]:
        """``(task, i, d)``: :meth:`nearest_init_state` over the fixed init states of every task of this
        task's scene (``sim.libero.tasks.scene_tasks``: the task group's siblings share the scene, and
        each one's 50 init states are evaluation layouts of it). For a task without siblings it is
        ``(task_id, *nearest_init_state(...))``; what training data records and the split check reads."""
        if self._scene_states is None:  # the siblings' init states, read once per env, not per episode
            own = self.task_id
            self._scene_states = [
                (t, self.init_states if t == own else task_spec(t)[2]) for t in scene_tasks(own)
            ]
        pos = self.object_positions(flat_state)
        return min(((t, *self._nearest(pos, states)) for t, states in self._scene_states), key=lambda r: r[2])

    def _nearest(self, pos: np.ndarray, states) -> tuple[int, float]:
        """(index, largest object displacement in metres) of the state in ``states`` nearest to ``pos``."""
        d = [float(np.abs(self.object_positions(s) - pos).max()) for s in states]
        i = int(np.argmin(d))
        return i, d[i]

    def set_cameras(self, on: bool) -> None:
        """Switch rendering of this env's cameras; while off, image observations are all zeros
        (for rollouts whose images nobody looks at, e.g. a privileged expert's first pass)."""
        inner = self.raw_env.env
        for c in self.cameras:
            inner.modify_observable(f"{CAMERAS[c]}_image", "enabled", on)
        self.cameras_on = bool(on)

    def _image(self, c: str) -> np.ndarray:
        key = f"{CAMERAS[c]}_image"
        if not self.cameras_on or key not in self.raw_obs:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        return np.ascontiguousarray(self.raw_obs[key][::-1])

    def _obs(self) -> dict[str, np.ndarray]:
        out = {c: self._image(c) for c in self.cameras}
        out["state"] = proprio(self.raw_obs)
        return out

    def observation(self, obs: dict[str, np.ndarray], privileged: bool = False) -> dict[str, Any]:
        """A backbone's observation (``policies.backbone``): ``obs`` plus the ``language`` instruction, and
        for a privileged backbone the simulator (``sim``: ``raw_env``, ``raw``: ``raw_obs``, ``task_id``).
        With ``instruction_steps=k`` the instruction is "" from step k on (steps 0..k-1 see it)."""
        language = instruction_at(self.language, self.instruction_steps, self.steps)
        out: dict[str, Any] = dict(obs, language=language)
        if privileged:
            out.update(sim=self.raw_env, raw=self.raw_obs, task_id=self.task_id)
        return out

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "success": success,
            "task_id": self.task_id,
            "init_state": self.init_state,
            "steps": self.steps,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """``options={"init_state": i}`` picks another fixed init state (0..49, the evaluation set);
        ``options={"placement_seed": s}`` instead lays the scene out afresh from the task's BDDL regions
        (np.random seeded with ``s``; ``init_state`` becomes -1), for training data. ``seed`` reseeds
        LIBERO's RNG (fixture placements) for fixed init states. ``layout`` holds the flattened MuJoCo
        state right after the reset, before the wait steps."""
        super().reset(seed=seed)
        if seed is not None:
            self.seed = int(seed)
        options = options or {}
        if "init_state" in options and "placement_seed" in options:
            raise ValueError("reset: give options 'init_state' or 'placement_seed', not both")
        if "init_state" in options:
            self._check_init(options["init_state"])
            self.init_state, self.placement_seed = int(options["init_state"]), None
        elif "placement_seed" in options:
            s = options["placement_seed"]
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < 2**32:
                raise ValueError(f"placement_seed must be an int in [0, 2**32), got {s!r}")
            self.init_state, self.placement_seed = -1, int(s)
        self.raw_env.seed(self.seed if self.placement_seed is None else self.placement_seed)
        keep = self.cameras_on
        self.set_cameras(False)  # reset + state load + wait render nothing
        try:
            self.raw_env.reset()
            # A soft reset keeps robosuite's gripper objects, whose ramped command (current_action)
            # would carry over from the last episode; a hard reset rebuilds them at zero.
            for robot in self.raw_env.env.robots:
                if robot.has_gripper:
                    robot.gripper.current_action = np.zeros(robot.gripper.dof)
            if self.placement_seed is None:
                self.raw_obs = self.raw_env.set_init_state(self.init_states[self.init_state])
            else:  # the reset above sampled a new layout; keep it
                self.raw_obs = self.raw_env.env._get_observations(force_update=True)
            self.layout = self.raw_env.env.sim.get_state().flatten()
            for _ in range(self.wait_steps):
                self.raw_obs, _, _, _ = self.raw_env.step(NOOP)
        finally:
            self.set_cameras(keep)
        if self.cameras and keep:
            self.raw_obs = self.raw_env.env._get_observations(force_update=True)
        self.steps = 0
        self._episode_ready = True
        return self._obs(), self._info(False)

    def step(self, action):
        if not self._episode_ready:
            raise RuntimeError("call reset() before step() (the episode ended or never started)")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (7,):
            raise ValueError(f"action must have shape (7,), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a}")
        self.raw_obs, _, done, _ = self.raw_env.step(np.clip(a, -1.0, 1.0))
        self.steps += 1
        success = bool(done)  # LIBERO's step returns done = the BDDL goal predicate
        truncated = not success and self.steps >= self.max_steps
        if success or truncated:
            self._episode_ready = False
        return self._obs(), float(success), success, truncated, self._info(success)

    def render(self):
        if self.render_mode == "rgb_array" and self.raw_obs:
            return np.ascontiguousarray(self.raw_obs["agentview_image"][::-1])
        return None

    def close(self):
        raw = getattr(self, "raw_env", None)
        if raw is None:
            return
        sim = getattr(raw.env, "sim", None)
        ctx = getattr(sim, "_render_context_offscreen", None)
        if ctx is not None:
            # Free the GL context now, while EGL is alive; left to __del__ at interpreter exit it
            # fails noisily (EGLError tracebacks) because the display is already gone.
            ctx.gl_ctx.make_current()
            ctx.con.free()
            ctx.gl_ctx.free()
        raw.close()
        self.raw_env = None
        _OPEN.discard(self)


_OPEN: weakref.WeakSet = weakref.WeakSet()


def _close_all() -> None:
    for env in list(_OPEN):
        try:
            env.close()
        except Exception:  # best effort at exit; nothing left to report to
            pass
