"""The arm protocol shared by the benchmark and the trainer."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ArmOutput(NamedTuple):
    action: torch.Tensor  # [B, T, A]
    write: torch.Tensor  # [B, T] bool: steps on which the memory was written
    gate_prob: torch.Tensor | None = None  # [B, T] write probability, for gated arms
    penalty: torch.Tensor | None = None  # scalar regulariser added to the action loss (write cost)
