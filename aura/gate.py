"""Write gates for AuraMem: the action-surprise gate and the Skip-RNN ablation.

Action-surprise gate (the AURA gate). Writing z_t is worth its cost only if it would change an action.
The gate therefore reads the quantities that carry that, computed from the candidate update before it
is applied (one head shown, s = d_k^-1/2, W_c^h the correction head's columns for head h):

    u_t     = w_t * v_t - S'^T (b_t * k_t)              delta-rule residual: memory's prediction error on z_t
    e_t     = ||u_t||                                    how wrong the memory is about z_t
    m_t     = s ||W_c^h u_t||                            bound on the action move at any unit query later
                                                         (a write adds u_t (k_t . s q) to the read at query q)
    da_t    = ||W_c (r_t^write - r_t^skip)||             the exact move of the current action if written
    n_t     = ||w_t * v_t - aux_{t-1}||                  novelty w.r.t. the last written value (state row d_k)

    p_t = sigmoid(MLP([log(e + eps), log(m + eps), log(da + eps), log(n + eps), P z_t]))

P z_t is a small linear view of the features (the gate must also recognise the *kind* of observation).
With ``readout="mlp"`` (aura.readout) W_c is the read-out's linear part only: m_t bounds and da_t measures the
move of W_c r_t, and the move of the MLP term W_2 GELU(W_1 [z_t; r_t] + b_1) is not among the signals.
The signals are detached: the gate learns to use the memory, the memory learns from the action loss,
and the gate's own parameters receive the closed-loop gradient through the straight-through mask.

Skip-RNN gate (Campos et al. 2018), the ablation: state-driven with a uniform write cost. With the
accumulator u~ (the probability mass gathered since the last write),

    write_t = round(u~_t);  du_t = sigmoid(w_p . vec(state_t) + b_p)
    u~_{t+1} = write_t du_t + (1 - write_t)(u~_t + min(du_t, 1 - u~_t))

so it writes on a schedule set by the state alone; it cannot look at z_t.
"""

from __future__ import annotations

import math

import torch
from torch import nn

EPS = 1e-3


def straight_through(prob: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """Mask m = hard + (p - sg(p)): the forward value is exactly ``hard`` (0/1), the gradient is dm/dp = 1."""
    return hard.to(prob.dtype) + (prob - prob.detach())


def logistic_noise(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None = None):
    """Logistic(0, 1) noise: the Gumbel-sigmoid perturbation of a logit (difference of two Gumbels)."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    u = u.clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


class SurpriseGate(nn.Module):
    """p_t = P(write | z_t, S_{t-1}) from the residual / action-move signals above (see module doc)."""

    def __init__(
        self, d_model: int, heads: int, hidden: int = 16, z_features: int = 8, init_open: float = 2.0
    ):
        super().__init__()
        self.heads = heads
        self.n_signals = 3 * heads + 1
        self.z_proj = nn.Linear(d_model, z_features) if z_features > 0 else None
        self.mlp = nn.Sequential(
            nn.Linear(self.n_signals + max(z_features, 0), hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )
        # Start open so the memory gets writes (and gradients) before sparsity closes the gate.
        self.set_start(init_open)

    def set_start(self, logit: float) -> None:
        """Set the output layer's bias, the offset of every write logit (2: starts open, 0: undecided)."""
        with torch.no_grad():
            self.mlp[-1].bias.fill_(logit)

    @staticmethod
    def signals(
        u: torch.Tensor,
        d_read: torch.Tensor,
        wv: torch.Tensor,
        aux: torch.Tensor,
        w_c: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """[B, 3H+1] log-signals. u, d_read, wv, aux: [B, H, V]; w_c: [A, H*V] (the correction weight)."""
        b, h, v = u.shape
        with torch.no_grad():  # detached by design (module doc); also keeps them off the autograd tape
            wc = w_c.reshape(w_c.shape[0], h, v)
            err = _norm(u)  # [B, H]
            move_bound = scale * _norm(torch.einsum("ahv,bhv->bha", wc, u))  # [B, H]
            move_now = _norm(torch.einsum("ahv,bhv->ba", wc, d_read))[:, None]  # [B, 1]
            novelty = _norm(wv - aux)  # [B, H]
            feats = torch.cat([err, move_bound, move_now, novelty], dim=-1)
            return torch.log(feats + EPS)

    def z_features(self, z: torch.Tensor) -> torch.Tensor | None:
        return None if self.z_proj is None else self.z_proj(z)

    def forward(self, signals: torch.Tensor, z_feat: torch.Tensor | None) -> torch.Tensor:
        """The write logit [B] from the signals and ``z_features(z)``."""
        x = signals if z_feat is None else torch.cat([signals, z_feat], dim=-1)
        return self.mlp(x).squeeze(-1)


class SkipGate(nn.Module):
    """Skip-RNN update-probability increment du_t = sigmoid(w_p . vec(state) + b_p) (module doc)."""

    def __init__(self, state_numel: int, init_increment: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(state_numel, 1)
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.fill_(math.log(init_increment / (1 - init_increment)))

    def increment(self, state: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(state.flatten(1)).squeeze(-1))

    @staticmethod
    def advance(acc: torch.Tensor, write: torch.Tensor, du: torch.Tensor) -> torch.Tensor:
        """u~_{t+1} = write du + (1 - write)(u~ + min(du, 1 - u~))."""
        return write * du + (1 - write) * (acc + torch.minimum(du, 1 - acc))


def _norm(x: torch.Tensor) -> torch.Tensor:
    # sqrt with an inner epsilon keeps the gradient finite at 0 (not that it matters once detached).
    return torch.sqrt((x * x).sum(-1) + 1e-12)
