"""Policies and memory arms for the LIBERO harness.

A *policy* turns the env's observation into ``(a_t^base, z_t)``: the backbone's base action and its
features. Until a learned backbone exists the base action is the scripted expert's and the features
are privileged: ``z_t = P [proprio_t; object poses_t]`` with a fixed random projection ``P``
(Gaussian, seed 0, scaled by ``1/sqrt(in)``), objects sorted by name and zero-padded to
``MAX_OBJECTS``.

A *memory arm* wraps ``aura.layer.AuraMem`` and decides when to write:

===========  ====================================================================================
``base``     no memory: ``a_t = a_t^base``, no writes
``always``   write every step
``aura``     the AURA gate: write iff ``p_t > tau``
``random``   exactly ``n`` writes at uniformly drawn steps of ``[0, T)``   (budget-matched)
``periodic`` ``n`` writes evenly spaced over ``[0, T)``                    (budget-matched)
===========  ====================================================================================

``n`` and ``T`` are the AURA arm's write count and episode length on the same (task, init state), so
the random and periodic arms spend the same write budget. Every arm but ``base`` applies
``a_t = a_t^base + c_t`` (``c_t = 0`` for a fresh AuraMem, so success then equals ``base``; writes and
bytes are still the gate's real decisions). Bytes count a dense rewrite of the state per write
(``AuraMemConfig.state_bytes``).
"""

from __future__ import annotations

import numpy as np

from sim.libero.env import NOOP, proprio

ARMS = ("base", "always", "aura", "random", "periodic")
BUDGET_ARMS = ("random", "periodic")
POLICIES = ("expert", "noop")
MAX_OBJECTS = 12
FEATURE_IN = 8 + 7 * MAX_OBJECTS


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

    def __call__(self, raw_obs: dict) -> np.ndarray:
        x = np.concatenate([proprio(raw_obs), object_poses(raw_obs)]).astype(np.float32)
        return self.matrix @ x


class PrivilegedPolicy:
    """Base action from the scripted expert (``expert``) or a hold-still no-op (``noop``), with
    privileged features. Needs no camera."""

    cameras: tuple[str, ...] = ()

    def __init__(self, name: str, task_id: int, d_model: int, seed: int = 0):
        if name not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {name!r}")
        self.name = name
        self.features = FeatureProjection(d_model, seed)
        self.expert = None
        if name == "expert":
            try:
                from policies.libero_expert import ScriptedExpert
            except ImportError:  # the package's __init__ may not re-export it
                from policies.libero_expert.expert import ScriptedExpert

            self.expert = ScriptedExpert(task_id)

    def reset(self, env) -> None:
        if self.expert is not None:
            self.expert.reset(env.raw_env)

    def __call__(self, env, obs) -> tuple[np.ndarray, np.ndarray]:
        base = NOOP.copy() if self.expert is None else self.expert.act(env.raw_env, env.raw_obs)
        return np.asarray(base, dtype=np.float32), self.features(env.raw_obs)


def random_schedule(n: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct steps drawn uniformly from ``[0, horizon)`` (all of them if ``n >= horizon``)."""
    horizon = max(int(horizon), 0)
    return np.sort(rng.choice(horizon, size=min(int(n), horizon), replace=False))


def periodic_schedule(n: int, horizon: int) -> np.ndarray:
    """``n`` steps evenly spaced over ``[0, horizon)``: ``floor((i + 1/2) T / n)``."""
    n, horizon = min(int(n), int(horizon)), int(horizon)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.floor((np.arange(n) + 0.5) * horizon / n).astype(np.int64)


class MemoryArm:
    """One arm's per-episode state. ``step(z, base) -> (action, wrote, gate_prob)``."""

    def __init__(self, arm: str, model=None):
        if arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
        if arm != "base" and model is None:
            raise ValueError(f"arm {arm!r} needs an AuraMem model")
        self.arm, self.model = arm, model
        self.bytes_per_write = 0 if model is None else int(model.config.state_bytes)
        self.schedule: set[int] = set()
        self.state = None
        self.t = 0

    def reset(self, schedule=None) -> None:
        if self.arm in BUDGET_ARMS:
            if schedule is None:
                raise ValueError(f"arm {self.arm!r} needs a write schedule (the AURA arm's budget)")
            self.schedule = {int(s) for s in schedule}
        self.state = None if self.model is None else self.model.init_state(1)
        self.t = 0

    def step(self, z: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, bool, float]:
        t, self.t = self.t, self.t + 1
        if self.model is None:
            return base, False, 0.0
        import torch

        zt = torch.as_tensor(z, dtype=torch.float32)[None]
        bt = torch.as_tensor(base, dtype=torch.float32)[None]
        with torch.no_grad():
            if self.arm == "aura":
                out = self.model.step(zt, bt, self.state)
                action, wrote, prob = out.action[0], bool(out.write[0]), float(out.gate_prob[0])
            else:
                force = torch.tensor([[self.arm == "always" or t in self.schedule]])
                out = self.model(zt[:, None], bt[:, None], self.state, schedule=force)
                action, wrote, prob = out.action[0, 0], bool(out.write[0, 0]), float(out.gate_prob[0, 0])
        self.state = out.state
        a = action.numpy().astype(np.float64)
        if not np.all(np.isfinite(a)):  # documented fallback: never send a non-finite action
            return base.astype(np.float64), wrote, prob
        return a, wrote, prob


def build_model(checkpoint: str | None, d_model: int, seed: int):
    """A trained AuraMem from ``checkpoint`` or a fresh one (``c_t = 0``) seeded with ``seed``."""
    import torch

    from aura.layer import AuraMem, AuraMemConfig

    if checkpoint:
        model = AuraMem.load(checkpoint)
    else:
        torch.manual_seed(seed)
        model = AuraMem(AuraMemConfig(d_model=d_model, d_action=7))
    return model.eval()
