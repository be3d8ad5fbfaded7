"""The scripted expert as a backbone with privileged features (``libero_expert``, ``libero_noop``).

Until a backbone that sees pixels exists this is what the LIBERO harness wraps: the base action is the
scripted expert's (``policy="expert"``) or a hold-still no-op with the gripper open (``policy="noop"``), and
the features are privileged, read from the simulator rather than the cameras:

    z_t = P [state_t; object poses_t],   P ~ N(0, 1) [d_model, 8 + 7 M] / sqrt(8 + 7 M)   (numpy, ``seed``)

with the 8-d proprio ``state`` and each movable object's position + xyzw quaternion, objects sorted by name
and zero-padded to ``MAX_OBJECTS`` = M. It needs no camera; it reads ``observation["sim"]`` (LIBERO's raw
env), ``observation["raw"]`` (its observation dict) and ``observation["task_id"]`` (``spec.privileged``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.backbone import BackboneError, BackboneSpec
from policies.libero_expert.expert import ScriptedExpert
from policies.libero_expert.skills import OPEN

POLICIES = ("expert", "noop")
MAX_OBJECTS = 12
FEATURE_IN = 8 + 7 * MAX_OBJECTS
HOLD = np.array([0, 0, 0, 0, 0, 0, OPEN], dtype=np.float32)  # zero delta pose, gripper open


def object_poses(raw_obs: dict) -> np.ndarray:
    """``[MAX_OBJECTS * 7]``: position + xyzw quaternion of each movable object, sorted by name."""
    names = sorted(
        k[:-4]
        for k in raw_obs
        if k.endswith("_pos")
        and not k.startswith("robot0")
        and "_to_robot0" not in k
        and k[:-4] + "_quat" in raw_obs
    )
    out = np.zeros((MAX_OBJECTS, 7))
    for i, n in enumerate(names[:MAX_OBJECTS]):
        out[i, :3] = raw_obs[n + "_pos"]
        out[i, 3:] = raw_obs[n + "_quat"]
    return out.reshape(-1)


class FeatureProjection:
    """``z = P x`` with a fixed Gaussian ``P [d_model, FEATURE_IN] / sqrt(FEATURE_IN)``."""

    def __init__(self, d_model: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.matrix = (rng.standard_normal((d_model, FEATURE_IN)) / np.sqrt(FEATURE_IN)).astype(np.float32)

    def __call__(self, state: np.ndarray, raw_obs: dict) -> np.ndarray:
        x = np.concatenate([state, object_poses(raw_obs)]).astype(np.float32)
        return self.matrix @ x


class PrivilegedBackbone:
    """Scripted-expert (or no-op) base action and privileged features; see the module docstring."""

    def __init__(self, policy: str = "expert", d_model: int = 64, seed: int = 0):
        if policy not in POLICIES:
            raise BackboneError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.spec = BackboneSpec(d_model=d_model, d_action=7, privileged=True)
        self.features = FeatureProjection(d_model, seed)
        self.expert: ScriptedExpert | None = None
        self._bound = None

    def reset(self) -> None:
        self._bound = None  # the expert binds to the episode's env at the first observation

    def __call__(self, observation: dict) -> tuple[np.ndarray, np.ndarray]:
        sim, raw = observation["sim"], observation["raw"]
        if self.policy == "expert":
            task = int(observation["task_id"])
            if self.expert is None or self.expert.task_id != task:
                self.expert = ScriptedExpert(task)
            if self._bound is not sim:
                self.expert.reset(sim)
                self._bound = sim
            base = np.asarray(self.expert.act(sim, raw), dtype=np.float32)
        else:
            base = HOLD.copy()
        return self.features(observation["state"], raw), base

    @property
    def goal_tolerance(self) -> float | None:
        """The expert's ``goal_tolerance`` for the last step (m; 0 before its first step); None for the
        no-op policy, which has no goals (a DART recording that gates on it refuses such a backbone)."""
        if self.policy != "expert":
            return None
        return 0.0 if self.expert is None else self.expert.goal_tolerance


@dataclass
class PrivilegedConfig:
    """The registered ``libero_expert`` / ``libero_noop`` backbones (``policies.factory``)."""

    policy: str = "expert"
    d_model: int = 64
    seed: int = 0

    def build(self) -> PrivilegedBackbone:
        return PrivilegedBackbone(self.policy, self.d_model, self.seed)
