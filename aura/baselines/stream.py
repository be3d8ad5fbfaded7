"""Three-gate persistent stream: a state vector with write, forget and read gates (the gated concept
stream of continuous latent reasoning, reduced to its gating):

    i_t, f_t, o_t = sigmoid(W_{i,f,o} z_t)          write, forget and read gates (input-driven)
    h_t = f_t * h_{t-1} + i_t * tanh(W_c z_t)        written every step (densely)
    a_t = a_t^base + W_a (o_t * h_t)

The gates depend on the input only, so the sequential part is one fused multiply-add per step (a diagonal
linear recurrence) and everything else is batched over time. d_state = 1056 floats matches AuraMem's
4,224 B at 32 x 32.
"""

from __future__ import annotations

import torch
from torch import nn

from aura.baselines.common import ArmOutput


class ThreeGateStream(nn.Module):
    def __init__(self, d_model: int, d_action: int, d_state: int = 1056):
        super().__init__()
        self.d_state = d_state
        self.inp = nn.Linear(d_model, 4 * d_state)
        self.head = nn.Linear(d_state, d_action)
        with torch.no_grad():
            self.inp.bias[d_state : 2 * d_state].fill_(5.0)  # forget gate starts open: f ~ 0.993, long memory

    @property
    def state_bytes(self) -> int:
        return self.d_state * 4

    def forward(self, z: torch.Tensor, base: torch.Tensor) -> ArmOutput:
        bsz, t_len, _ = z.shape
        pre = self.inp(z)
        i, f, o = torch.sigmoid(pre[..., : 3 * self.d_state]).chunk(3, dim=-1)
        x = i * torch.tanh(pre[..., 3 * self.d_state :])
        h = z.new_zeros(bsz, self.d_state)
        hs = []
        # unbind once: indexing [:, t] of a tensor that needs grad costs a full-size gradient per step
        for f_t, x_t in zip(f.unbind(1), x.unbind(1)):
            h = torch.addcmul(x_t, f_t, h)
            hs.append(h)
        y = o * torch.stack(hs, 1)
        write = torch.ones(bsz, t_len, dtype=torch.bool, device=z.device)
        return ArmOutput(base + self.head(y), write)
