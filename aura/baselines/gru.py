"""Dense GRU arm: h_t = GRU(z_t, h_{t-1}) written every step; a_t = a_t^base + W h_t."""

from __future__ import annotations

import torch
from torch import nn

from aura.baselines.common import ArmOutput


class GRUArm(nn.Module):
    def __init__(self, d_model: int, d_action: int, hidden: int = 128):
        super().__init__()
        self.hidden = hidden
        self.rnn = nn.GRU(d_model, hidden, batch_first=True)
        self.head = nn.Linear(hidden, d_action)

    @property
    def state_bytes(self) -> int:
        return self.hidden * 4

    def forward(self, z: torch.Tensor, base: torch.Tensor) -> ArmOutput:
        h, _ = self.rnn(z)
        write = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        return ArmOutput(base + self.head(h), write)
