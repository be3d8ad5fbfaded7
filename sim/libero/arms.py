"""Memory arms for the LIBERO harness.

The backbone (``policies.backbone``: any registered one, e.g. the scripted expert with privileged features
``libero_expert``) turns the env's observation into ``(z_t, a_t^base)``. A *memory arm* wraps
``aura.layer.AuraMem`` and decides when to write:

===========  ====================================================================================
``base``     no memory: ``a_t = a_t^base``, no writes
``always``   write every step
``aura``     the AURA gate: write iff ``p_t > tau``
``random``   exactly ``n`` writes at uniformly drawn steps of ``[0, T)``   (budget-matched)
``periodic`` ``n`` writes evenly spaced over ``[0, T)``, centred            (budget-matched)
===========  ====================================================================================

``n`` and ``T`` are the AURA arm's write count and episode length on the same (task, init state), so
the random and periodic arms spend the same write budget (``aura.schedules``). Every arm but ``base`` applies
``a_t = a_t^base + c_t`` (``c_t = 0`` for a fresh AuraMem, so success then equals ``base``; writes and
bytes are still the gate's real decisions). Bytes count a dense rewrite of the state per write
(``AuraMemConfig.state_bytes``).
"""

from __future__ import annotations

import numpy as np

ARMS = ("base", "always", "aura", "random", "periodic")
BUDGET_ARMS = ("random", "periodic")


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
