"""KV-cache attention arm: every step appends (k_t, v_t); the read is causal softmax attention.

    o_t = sum_{i<=t} softmax_i(s q_t . k_i - lambda (t - i)) v_i,   a_t = a_t^base + W o_t

with a learned recency slope lambda >= 0 (ALiBi-style) so the latest of similar keys can win. The cache
grows by (d_key + d_val) * 4 B per step: 256 B at d = 32, 25.6 MB after 100,000 steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aura.baselines.common import ArmOutput


class KVAttentionArm(nn.Module):
    def __init__(self, d_model: int, d_action: int, d_key: int = 32, d_val: int = 32):
        super().__init__()
        self.d_key, self.d_val = d_key, d_val
        self.qkv = nn.Linear(d_model, 2 * d_key + d_val)
        self.slope_raw = nn.Parameter(torch.tensor(-3.0))
        self.head = nn.Linear(d_val, d_action)

    def bytes_at(self, steps: int) -> int:
        return steps * (self.d_key + self.d_val) * 4

    def forward(self, z: torch.Tensor, base: torch.Tensor) -> ArmOutput:
        t_len = z.shape[1]
        q, k, v = torch.split(self.qkv(z), [self.d_key, self.d_key, self.d_val], dim=-1)
        scores = q @ k.transpose(1, 2) * self.d_key**-0.5  # [B, T, T]
        pos = torch.arange(t_len, device=z.device, dtype=z.dtype)
        age = pos[:, None] - pos[None, :]
        scores = scores - F.softplus(self.slope_raw) * age
        scores = scores.masked_fill(age < 0, float("-inf"))
        o = torch.softmax(scores, dim=-1) @ v
        write = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        return ArmOutput(base + self.head(o), write)
