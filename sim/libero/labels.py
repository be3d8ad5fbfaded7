"""Who labels a rollout's visited states (``aura sim rollouts --teacher``).

``expert`` (default): the scripted expert run as a shadow on the same simulator (``ShadowExpert``):
e_t = expert.act(x_t) at its current plan phase, undefined (NaN) where its plan finished or broke.

``backbone`` (the transient-instruction variant, issue 13): the acting backbone itself with the instruction
always visible. With o_t the observation, l the task's instruction and l_t = l for t < k, "" after::

    z_t, b_t = pi(o_t, l_t)        what the blind policy sees and does (the memory arm's base)
    _,   e_t = pi'(o_t, l)         the label: a second instance of the same backbone, same weights and
                                   execution (its own chunk queue / ensemble), reset with it

so e_t - b_t is exactly what the instruction would change at this state, and a memory that stores the goal
at t < k can at best turn the blind policy back into the visible one (ceiling: the visible arm). Unlike the
expert's label it is defined on every state and never out of phase with the policy's own plan (the expert,
on a blind policy's states, is often in another phase: its labels close the gripper on 28 % of held-out
steps where the policy itself does on 57 %, and corrections fitted to them broke the closed loop:
docs/libero.md).
"""

from __future__ import annotations

import numpy as np

TEACHERS = ("expert", "backbone")


class ShadowExpert:
    """``ScriptedExpert`` stepped once per env step on the real observation; ``None`` where undefined."""

    def __init__(self, task: int, expert=None):
        from policies.libero_expert import ScriptedExpert

        self.expert = expert if expert is not None else ScriptedExpert(task)
        self.error: str | None = None

    def reset(self, raw_env) -> None:
        self.expert.reset(raw_env)
        self.error = None

    def __call__(self, raw_env, raw_obs: dict) -> tuple[np.ndarray | None, str]:
        """(expert action or None, stage). Called every step, whoever acts, so the plan stays in phase."""
        if self.error is not None:
            return None, "error"
        if self.expert.finished:
            return None, "done"
        try:
            a = np.asarray(self.expert.act(raw_env, raw_obs), dtype=np.float64)
        except Exception as err:  # the plan generator is dead after raising: unsupervised from here on
            self.error = f"{type(err).__name__}: {err}"
            return None, "error"
        if self.expert.finished:  # StopIteration inside act: the returned action only holds the pose
            return None, "done"
        stage = self.expert.stage
        if a.shape != (7,) or not np.isfinite(a).all():
            return None, stage
        return a, stage


class VisibleTeacher:
    """The acting backbone's twin that always sees the instruction: ``e_t = pi'(o_t, l)``."""

    def __init__(self, backbone):
        self.backbone = backbone

    def reset(self) -> None:
        self.backbone.reset()

    def __call__(self, observation: dict, language: str) -> np.ndarray:
        _, action = self.backbone(dict(observation, language=language))
        return np.asarray(action, dtype=np.float64)
