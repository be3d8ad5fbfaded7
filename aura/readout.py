"""AuraMem's read-out: how the memory read r_t = [r_t^1; ...; r_t^H] becomes the action (``readout=``).

"linear" (the default; the paper's form, and the only one before this option existed):

    a_t = a_t^base + W_c r_t                                          W_c = 0 at init

"mlp" (a non-linear read-out of the read and the current features z_t):

    a_t = a_t^base + W_c r_t + W_2 GELU(W_1 [z_t ; r_t] + b_1) + b_2   W_c = W_2 = b_2 = 0 at init

W_1 [hidden, d_model + H d_val] with hidden = ``readout_hidden``, W_2 [d_action, hidden]; GELU is the exact
(erf) one. Why: the linear term's correction W_c S_t^T s q_t reaches z_t only through the unit query q_t,
so a goal written once (a transient instruction shown at the first step) whose right action depends on
the current state z_t as well may be out of its reach; the MLP sees z_t and r_t together. Both terms start
at exactly 0, so a fresh AuraMem returns a_t^base exactly with either read-out.

The gate (``aura.gate``) reads W_c alone: with "mlp" its action-move signals m_t = s ||W_c^h u_t|| and
da_t = ||W_c (r^write - r^skip)|| measure (and m_t bounds) the linear part's move only; the MLP part's move
is not seen by the gate. W_c keeps its parameter name ``head.weight`` and a "linear" AuraMem has no other
read-out weights, so its checkpoints are unchanged; the MLP's are ``readout.fc1.*`` and ``readout.fc2.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

READOUTS = ("linear", "mlp")


class MLPReadout(nn.Module):
    """W_2 GELU(W_1 [z ; r] + b_1) + b_2 with W_2 and b_2 zero-initialised (module doc)."""

    def __init__(self, d_model: int, d_read: int, d_action: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model + d_read, hidden)
        self.fc2 = nn.Linear(hidden, d_action)
        nn.init.zeros_(self.fc2.weight)  # a fresh read-out adds exactly 0
        nn.init.zeros_(self.fc2.bias)

    def forward(self, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """z [N, d_model], r [N, H * d_val] (flattened heads) -> [N, d_action]."""
        return self.fc2(F.gelu(self.fc1(torch.cat([z, r], dim=-1))))


def make_readout(kind: str, d_model: int, d_read: int, d_action: int, hidden: int) -> MLPReadout | None:
    """The non-linear term of read-out ``kind``: None for "linear" (W_c alone, owned by the layer)."""
    if kind == "linear":
        return None
    if kind == "mlp":
        return MLPReadout(d_model, d_read, d_action, hidden)
    raise ValueError(f"AuraMemConfig.readout must be one of {READOUTS}, got {kind!r}")
