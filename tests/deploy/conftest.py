"""Fixtures for the deploy tests: a tiny step module with AuraMem's step contract, exported once to ONNX.

The tiny module follows docs/ARCHITECTURE.md sections 2-3 (state [1, H, K+1, V], factored write record,
``torch.where`` so a non-write is bit-identical) with small random weights, so the runtime can be tested
without a trained checkpoint and with a gate that writes on roughly half of the steps.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

TINY = SimpleNamespace(d_model=24, d_action=5, heads=2, d_key=8, d_val=8)


def make_tiny_step(seed: int = 0, dims=TINY):
    import torch
    from torch import nn

    from aura.memory import gdn2_step  # noqa: F401  (the spec the tiny step's update follows)

    class TinyStep(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            h, k, v = dims.heads, dims.d_key, dims.d_val
            self.h, self.k, self.v = h, k, v
            self.proj = nn.Parameter(torch.randn(dims.d_model, h * (3 * k + 3 * v), generator=g) * 0.3)
            self.gate = nn.Parameter(torch.randn(dims.d_model, generator=g) * 0.3)
            self.head = nn.Parameter(torch.randn(h * v, dims.d_action, generator=g) * 0.3)

        def step(self, z, base, state):
            h, k, v = self.h, self.k, self.v
            p = (z @ self.proj).reshape(1, h, 3 * k + 3 * v)
            q, kk, g, b = p[..., :k], p[..., k : 2 * k], p[..., 2 * k : 3 * k], None
            vv, w, b = p[..., 3 * k : 3 * k + v], p[..., 3 * k + v : 3 * k + 2 * v], p[..., 3 * k + 2 * v :]
            q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + 1e-6)
            kk = kk * torch.rsqrt((kk * kk).sum(-1, keepdim=True) + 1e-6)
            decay = torch.exp(-nn.functional.softplus(g))
            b, w = torch.sigmoid(b[..., :k]), torch.sigmoid(w)
            S, aux = state[:, :, :k, :], state[:, :, k, :]
            read = torch.einsum("bhkv,bhk->bhv", S, q * k**-0.5)
            gate_prob = torch.sigmoid(z @ self.gate + read.abs().sum((-1, -2)) * 0.1)
            write = gate_prob > 0.5
            S1 = decay[..., None] * S
            delta = w * vv - torch.einsum("bhkv,bhk->bhv", S1, b * kk)
            new_S = S1 + kk[..., None] * delta[..., None, :]
            new_aux = 0.9 * aux + 0.1 * vv
            updated = torch.cat([new_S, new_aux[:, :, None, :]], dim=2)
            new_state = torch.where(write[:, None, None, None], updated, state)
            new_read = torch.einsum("bhkv,bhk->bhv", new_state[:, :, :k], q * k**-0.5)
            action = base + new_read.reshape(1, h * v) @ self.head
            return SimpleNamespace(
                action=action,
                state=new_state,
                write=write,
                gate_prob=gate_prob,
                decay=decay,
                key=kk,
                delta=delta,
                aux=new_aux,
            )

        def skip_action(self, z, base, state):
            h, k, v = self.h, self.k, self.v
            p = (z @ self.proj).reshape(1, h, 3 * k + 3 * v)
            q = p[..., :k]
            q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + 1e-6)
            read = torch.einsum("bhkv,bhk->bhv", state[:, :, :k, :], q * k**-0.5)
            return base + read.reshape(1, h * v) @ self.head

    return TinyStep().eval()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """(path, torch module) of the tiny step exported with deploy.export."""
    from deploy.export.step_graph import export_step

    module = make_tiny_step()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_step(
        module,
        path,
        d_model=TINY.d_model,
        d_action=TINY.d_action,
        heads=TINY.heads,
        d_key=TINY.d_key,
        d_val=TINY.d_val,
    )
    return path, module


@pytest.fixture
def rng():
    return np.random.default_rng(0)
