"""``ScriptedExpert``: the privileged waypoint expert for the 10 libero_10 tasks and pick-and-place siblings.

Contract (docs/ARCHITECTURE.md section 4)::

    expert = ScriptedExpert(task_id)
    expert.reset(raw_env)               # after the 10 no-op wait steps
    action = expert.act(raw_env, obs)   # each step, np.ndarray (7,) in [-1, 1]

``task_id`` is ``sim.libero.tasks``' id: libero_10's 0-9 have their plans by id; any other id (another
suite's task, e.g. LIBERO-90's LIVING_ROOM_SCENE2 basket tasks) gets its plan from the task's BDDL goal at
``reset`` (``plans.plan_for``), which raises ValueError for a goal it has no plan for. The plan is a
generator; ``act`` stores the new observation where the skills read it and advances it by one action.
When the plan is exhausted the expert holds its pose with the gripper as it was (a safe,
logged fallback rather than an exception).
"""

from __future__ import annotations

import logging

import numpy as np

from policies.libero_expert.plans import plan_for
from policies.libero_expert.scene import Scene
from policies.libero_expert.skills import Ctx, servo, settle

log = logging.getLogger(__name__)


class ScriptedExpert:
    """Reads simulator poses of LIBERO's raw env (never images) and emits OSC_POSE delta actions."""

    def __init__(self, task_id: int):
        if isinstance(task_id, bool) or not isinstance(task_id, (int, np.integer)) or task_id < 0:
            raise ValueError(f"task_id must be an int >= 0 (sim.libero.tasks' ids), got {task_id!r}")
        self.task_id = int(task_id)
        self._ctx: Ctx | None = None
        self._plan = None
        self._hold: np.ndarray | None = None
        self.finished = False

    def reset(self, raw_env) -> None:
        """Bind to ``raw_env`` for a new episode (call after LIBERO's no-op wait steps)."""
        obs = raw_env._get_observations() if hasattr(raw_env, "_get_observations") else None
        if obs is None:
            obs = raw_env.env._get_observations()
        scene = Scene(raw_env)
        plan = plan_for(self.task_id, scene.goal, scene.inner.objects_dict)
        self._ctx = Ctx(raw=raw_env, scene=scene, obs=obs)
        self._plan = self._run(plan)
        self._hold = None
        self.finished = False

    def _run(self, plan):
        yield from settle(self._ctx)
        yield from plan(self._ctx)

    def act(self, raw_env, obs: dict) -> np.ndarray:
        if self._ctx is None or self._ctx.raw is not raw_env:
            raise ValueError("ScriptedExpert.act: call reset(raw_env) with this env first")
        if not isinstance(obs, dict) or "robot0_eef_pos" not in obs:
            raise ValueError("ScriptedExpert.act: obs must be the raw env's observation dict")
        ctx = self._ctx
        ctx.obs = obs
        ctx.step += 1
        ctx.tol = 0.0  # a skill that servos to a goal with a tolerance sets it again (skills.move)
        if not self.finished:
            try:
                a = next(self._plan)
                return np.clip(np.asarray(a, dtype=float), -1.0, 1.0)
            except StopIteration:
                self.finished = True
                log.info("task %d: plan finished at step %d; holding pose", self.task_id, ctx.step)
        if self._hold is None:
            self._hold = ctx.eef.copy()
        a, _, _ = servo(ctx, self._hold, ctx.yaw_now(), ctx.grip)
        return np.clip(a, -1.0, 1.0)

    @property
    def goal_tolerance(self) -> float:
        """Position tolerance (m) of the goal the last action servoed to; 0 outside ``move`` (hold, grip,
        push, plan finished). DART recordings perturb only steps above a threshold of it (transit)."""
        return 0.0 if self._ctx is None or self.finished else float(self._ctx.tol)

    @property
    def stage(self) -> str:
        """Name of the innermost running skill (for logs and failure reports)."""
        g = self._plan
        name = "done" if self.finished else "?"
        while g is not None and not self.finished:
            name = g.gi_code.co_name if hasattr(g, "gi_code") else name
            g = getattr(g, "gi_yieldfrom", None)
        return name
