"""How large can the GDN-2 state get, and the norm guard the runtime can rely on.

One step is S_t = A_t D_t S_{t-1} + k_t (w_t * v_t)^T with A_t = I - k_t (b_t * k_t)^T, D_t = Diag(alpha_t).
For unit k, b in [0, 1]^{d_k} and alpha in (0, 1]:

* A_t has eigenvalues 1 (d_k - 1 times) and 1 - m, m = sum_d b_d k_d^2 in [0, 1], but it is non-normal. With
  rho^2 = sum_d b_d^2 k_d^2 - m^2 (the spread of b under the weights k_d^2),
  ||A_t||_2^2 = (tau + sqrt(tau^2 - 4 (1 - m)^2)) / 2, tau = (1 - m)^2 + 1 + rho^2   (``transition_norm``).
  rho^2 <= m (1 - m), and maximising over m (at m = 1/3, b binary) gives sup ||A_t||_2 = 2 / sqrt(3) = 1.1547.
* Per-step growth is therefore bounded: ||S_t||_F <= (2/sqrt(3)) ||S_{t-1}||_F + ||w_t * v_t||. Not uniformly:
  the products are worse than any single factor. Alternating k_1 = (c, s), b_1 = e_1 and k_2 = (s, c),
  b_2 = e_2 with c^2 = 1/6 (no decay) makes A_2 A_1 have eigenvalue 5/4, so ||S|| grows like (sqrt(5)/2)^t
  = 1.118^t: float32 overflows after about 800 steps, float64 after about 6,400 (``adversarial_cycle``).
  The asymptotic worst rate (joint spectral radius) lies in [sqrt(5)/2, 2/sqrt(3)].
* With b = beta 1 (KDA, Gated DeltaNet, DeltaNet; beta in [0, 1]) A_t is symmetric with eigenvalues in
  [0, 1], so ||A_t D_t||_2 <= 1 and ||S_t||_F <= ||S_{t-1}||_F + beta_t ||v_t||: no exponential growth.
* If every channel decays (alpha_d <= a < sqrt(3)/2 each step), then ||A_t D_t||_2 <= r = 2a/sqrt(3) < 1 and
  ||S_t||_F <= max(||S_0||_F, max_t ||w_t * v_t|| / (1 - r)) for all t.

So GDN-2 itself gives the runtime no bound. The guard does: ``clamp_state_norm(S, max_norm)`` rescales each
head's S so that ||S||_F <= max_norm, and multiplies by exactly 1.0 (bit-identical) below the threshold.
It is a runtime safety net (``gdn2_step(..., max_norm=)``, ``gdn2_recurrent(..., max_norm=)``): choose
max_norm well above the norms seen in training, where the chunk form runs unguarded. For a factored write
record, fold the scale into the factors: decay * scale and delta * scale (``state_norm_scale``; this is
what ``aura.memory.gdn2_write`` returns).
"""

from __future__ import annotations

import math

import torch

SUP_TRANSITION_NORM = 2 / math.sqrt(3)  # sup ||I - k (b*k)^T||_2 over unit k, b in [0, 1]^K
CYCLE_RATE = math.sqrt(5) / 2  # per-step growth of ``adversarial_cycle``


def transition_norm(k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ||I - k (b*k)^T||_2 for unit k (closed form above); k, b ``[..., K]`` -> ``[...]``."""
    p = k * k
    m = (b * p).sum(-1)
    rho2 = (b * b * p).sum(-1) - m * m
    tau = (1 - m) ** 2 + 1 + rho2
    return ((tau + (tau * tau - 4 * (1 - m) ** 2).clamp_min(0).sqrt()) / 2).sqrt()


def state_norm_scale(state: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Per-head factor min(1, max_norm / ||S||_F), shape ``[B, H, 1, 1]`` for S ``[B, H, K, V]``.

    Exportable (torch.onnx dynamo, opset 18): no branch on values, and the norm is sqrt(sum(S * S)), plain
    ops that export as they are, so the steps, the layer (through ``gdn2_write``) and its ONNX graph share
    this one definition. Exactly 1.0 when ||S||_F <= max_norm, so applying it is a no-op there.
    """
    if not (isinstance(max_norm, (int, float)) and not isinstance(max_norm, bool) and max_norm > 0):
        raise ValueError(f"argument 'max_norm' must be a positive float, got {max_norm!r}")
    if not math.isfinite(max_norm):
        raise ValueError(f"argument 'max_norm' must be finite, got {max_norm!r}")
    norm = torch.sqrt((state * state).sum(dim=(-2, -1), keepdim=True))
    return (max_norm / norm.clamp_min(torch.finfo(state.dtype).tiny)).clamp(max=1.0)


def clamp_state_norm(state: torch.Tensor, max_norm: float) -> torch.Tensor:
    """S * min(1, max_norm / ||S||_F) per head (a new tensor; see the module docstring)."""
    return state * state_norm_scale(state, max_norm)


def adversarial_cycle(steps: int, batch: int, d_key: int, d_val: int, dtype=torch.float64, generator=None):
    """Inputs (q, k, v, g, b, w) ``[batch, steps, 1, .]`` of the growing 2-cycle, in the first two key dims.

    w = 1, no decay, random v (so the growing mode is excited); q = k.
    """
    c, s = math.sqrt(1 / 6), math.sqrt(5 / 6)
    k = torch.zeros(steps, d_key, dtype=dtype)
    b = torch.zeros(steps, d_key, dtype=dtype)
    k[0::2, 0], k[0::2, 1], b[0::2, 0] = c, s, 1.0
    k[1::2, 0], k[1::2, 1], b[1::2, 1] = s, c, 1.0
    k = k[None, :, None].expand(batch, steps, 1, d_key)
    b = b[None, :, None].expand(batch, steps, 1, d_key)
    v = torch.randn(batch, steps, 1, d_val, dtype=dtype, generator=generator)
    g = torch.zeros_like(k)
    w = torch.ones_like(v)
    return k, k, v, g, b, w
