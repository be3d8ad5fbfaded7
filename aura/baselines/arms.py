"""AuraMem-based arms: the learned action-surprise gate (AURA), always-write (dense GDN-2), fixed
schedules (oracle / random / periodic, applied to a trained memory), and the Skip-RNN gate ablation."""

from __future__ import annotations

import torch
from torch import nn

from aura.baselines.common import ArmOutput
from aura.gate import SkipGate, straight_through
from aura.layer import AuraMem


class AuraArm(nn.Module):
    """``mode``: "gate" (learned gate, trained with the write cost below), "dense" (write every step) or
    "prefix" (write exactly at t < ``prefix``: the oracle schedule of the transient-instruction variant, where
    only the first steps carry the goal; trains a read-out of a state written once and held).

    Write cost (gate mode): sparsity * mean_t p_t + budget_weight * mean_b relu(rate_b - budget), where
    rate_b is the sequence's write rate (value of the straight-through mask: the true rate, gradient via p).
    """

    def __init__(
        self,
        model: AuraMem,
        mode: str = "gate",
        sparsity: float = 0.0,
        budget: float | None = None,
        budget_weight: float = 1.0,
        prefix: int = 0,
    ):
        super().__init__()
        if mode not in ("gate", "dense", "prefix"):
            raise ValueError(f"AuraArm: mode must be 'gate', 'dense' or 'prefix', got {mode!r}")
        if mode == "prefix" and prefix < 1:
            raise ValueError(f"AuraArm: mode 'prefix' needs prefix >= 1 written steps, got {prefix}")
        self.model, self.mode, self.prefix = model, mode, prefix
        self.sparsity, self.budget, self.budget_weight = sparsity, budget, budget_weight
        self.generator: torch.Generator | None = None

    def forward(self, z, base, schedule=None) -> ArmOutput:
        if schedule is None and self.mode == "dense":
            schedule = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        elif schedule is None and self.mode == "prefix":
            schedule = (torch.arange(z.shape[1], device=z.device) < self.prefix).expand(z.shape[:2])
        if schedule is not None:
            out = self.model.forward_fixed(z, base, schedule)  # chunkwise
            return ArmOutput(out.action, out.write, None, None)
        out = self.model(z, base, generator=self.generator)
        penalty = None
        if schedule is None:
            penalty = self.sparsity * out.gate_prob.mean()
            if self.budget is not None:
                rate = out.write_mask.mean(1)
                penalty = penalty + self.budget_weight * torch.relu(rate - self.budget).mean()
        return ArmOutput(out.action, out.write, out.gate_prob, penalty)


class SkipRNNArm(nn.Module):
    """GDN-2 memory written on the Skip-RNN schedule (aura.gate.SkipGate); write cost ``cost`` per write."""

    def __init__(self, model: AuraMem, cost: float = 0.05):
        super().__init__()
        self.model, self.cost = model, cost
        self.gate = SkipGate(model.init_state(1).numel())

    def forward(self, z, base) -> ArmOutput:
        m_ = self.model
        bsz, t_len, _ = z.shape
        state = m_.init_state(bsz, dtype=z.dtype, device=z.device)
        acc = z.new_ones(bsz)  # u~_1 = 1: write the first step
        actions, writes, probs, masks = [], [], [], []
        for t in range(t_len):
            p = m_.project(z[:, t])
            new_state = m_.candidate(p, state)[-1]
            hard = acc > 0.5  # round(u~)
            mask = straight_through(acc, hard) if self.training else hard.to(z.dtype)
            mb = mask[:, None, None, None]
            state = mb * new_state + (1 - mb) * state
            actions.append(base[:, t] + m_.correction(m_.read(state, p.q), z[:, t]))
            writes.append(hard)
            probs.append(acc.detach().clamp(0, 1))
            masks.append(mask)
            acc = SkipGate.advance(acc, mask, self.gate.increment(state))
        mask = torch.stack(masks, 1)
        return ArmOutput(
            torch.stack(actions, 1), torch.stack(writes, 1), torch.stack(probs, 1), self.cost * mask.mean()
        )
