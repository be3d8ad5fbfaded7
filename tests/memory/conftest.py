"""Fresh random GDN-2 inputs (no fixed seed: every run draws new ones; failures print the seed)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F


def _l2(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def make_inputs(B, T, H, K, V, dtype=torch.float64, gen=None, g_min=-1.0, requires_grad=False, state=True):
    """q, k unit-norm; g in [g_min, 0]; b, w in [0, 1]; a random initial state."""
    kw = {"dtype": dtype, "generator": gen}
    q = _l2(torch.randn(B, T, H, K, **kw))
    k = _l2(torch.randn(B, T, H, K, **kw))
    v = torch.randn(B, T, H, V, **kw)
    g = g_min * torch.rand(B, T, H, K, **kw)
    b = torch.rand(B, T, H, K, **kw)
    w = torch.rand(B, T, H, V, **kw)
    S0 = torch.randn(B, H, K, V, **kw) if state else None
    out = [q, k, v, g, b, w, S0]
    if requires_grad:
        out = [x.requires_grad_() if x is not None else None for x in out]
    return out


@pytest.fixture
def gen(request):
    seed = random.SystemRandom().randrange(2**31)
    request.node.user_properties.append(("seed", seed))
    print(f"random seed {seed}")
    return torch.Generator().manual_seed(seed)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))
