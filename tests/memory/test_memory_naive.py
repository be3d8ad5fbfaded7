"""The naive spec against an independent matrix-form reference, the single step, validation, state bytes."""

from __future__ import annotations

import pytest
import torch

import aura.memory
from aura.memory import gdn2_recurrent, gdn2_step, state_bytes

from .conftest import make_inputs, rel_err


def _matrix_form(q, k, v, g, b, w, S0, scale):
    """S_t = (I - k (b*k)^T) Diag(exp g) S + k (w*v)^T, o_t = S_t^T (scale q): one head at a time."""
    B, T, H, K = q.shape
    o = torch.zeros(B, T, H, v.shape[-1], dtype=torch.float64)
    S_all = S0.clone()
    eye = torch.eye(K, dtype=torch.float64)
    for bi in range(B):
        for h in range(H):
            S = S_all[bi, h]
            for t in range(T):
                kt = k[bi, t, h]
                A = (eye - torch.outer(kt, b[bi, t, h] * kt)) @ torch.diag(g[bi, t, h].exp())
                S = A @ S + torch.outer(kt, w[bi, t, h] * v[bi, t, h])
                o[bi, t, h] = S.T @ (scale * q[bi, t, h])
            S_all[bi, h] = S
    return o, S_all


@pytest.mark.parametrize("B,T,H,K,V", [(1, 1, 1, 4, 4), (2, 9, 3, 8, 5), (3, 17, 2, 5, 7)])
def test_naive_matches_matrix_form(gen, B, T, H, K, V):
    q, k, v, g, b, w, S0 = make_inputs(B, T, H, K, V, gen=gen)
    o, S = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    o_ref, S_ref = _matrix_form(q, k, v, g, b, w, S0, K**-0.5)
    assert rel_err(o, o_ref) < 1e-12 and rel_err(S, S_ref) < 1e-12


def test_naive_float32_vs_float64(gen):
    q, k, v, g, b, w, S0 = make_inputs(2, 40, 2, 16, 16, gen=gen)
    o64, S64 = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    f = [x.float() for x in (q, k, v, g, b, w, S0)]
    o32, S32 = gdn2_recurrent(*f[:6], initial_state=f[6], output_final_state=True)
    assert o32.dtype == torch.float32 and S32.dtype == torch.float32
    assert rel_err(o32, o64) < 1e-5 and rel_err(S32, S64) < 1e-5


def test_no_final_state_and_zero_initial_state(gen):
    q, k, v, g, b, w, _ = make_inputs(1, 5, 1, 4, 3, gen=gen, state=False)
    o, S = gdn2_recurrent(q, k, v, g, b, w)
    assert S is None and o.shape == (1, 5, 1, 3)
    o2, _ = gdn2_recurrent(q, k, v, g, b, w, initial_state=torch.zeros(1, 1, 4, 3, dtype=torch.float64))
    assert torch.equal(o, o2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_matches_recurrent(gen, dtype):
    q, k, v, g, b, w, S0 = make_inputs(3, 12, 2, 8, 6, gen=gen, dtype=dtype)
    o_ref, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    S, S_inplace = S0.clone(), S0.clone()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for t in range(q.shape[1]):
        args = (q[:, t], k[:, t], v[:, t], g[:, t], b[:, t], w[:, t])
        o, S = gdn2_step(*args, S)
        o2, same = gdn2_step(*args, S_inplace, out=S_inplace)
        assert same.data_ptr() == S_inplace.data_ptr()
        assert rel_err(o, o_ref[:, t]) < tol and torch.equal(o, o2)
    assert rel_err(S, S_ref) < tol and torch.equal(S, S_inplace)


def test_step_autograd_matches_recurrent(gen):
    q, k, v, g, b, w, S0 = make_inputs(2, 4, 1, 4, 3, gen=gen, requires_grad=True)
    o_ref, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    ref = torch.autograd.grad((o_ref.sum() + S_ref.square().sum()), (q, k, v, g, b, w, S0))
    S, outs = S0, []
    for t in range(4):
        o, S = gdn2_step(q[:, t], k[:, t], v[:, t], g[:, t], b[:, t], w[:, t], S)
        outs.append(o)
    got = torch.autograd.grad(torch.stack(outs, 1).sum() + S.square().sum(), (q, k, v, g, b, w, S0))
    for a, r in zip(got, ref):
        assert rel_err(a, r) < 1e-12


def test_state_bytes():
    assert state_bytes(32, 32) == 4224
    assert state_bytes(32, 32, heads=4) == 4 * 4224
    assert state_bytes(16, 8, bytes_per_element=8) == (16 * 8 + 8) * 8
    for bad in [(0, 32), (32, -1), (32.0, 32), (True, 32)]:
        with pytest.raises(ValueError, match="state_bytes: argument"):
            state_bytes(*bad)


def test_public_names_by_form():
    """The package names each form (fla's layout); every name is documented in its docstring."""
    forms = {"gdn2_recurrent", "gdn2_chunk_naive", "gdn2_step", "gdn2_write", "gdn2_chunk", "gdn2_cpu"}
    rules = {"delta_rule", "delta_rule_step", "expand_gates", "RULES"}
    rest = {"state_bytes", "state_norm_scale", "clamp_state_norm"}
    assert set(aura.memory.__all__) == forms | rules | rest
    for name in aura.memory.__all__:
        assert f"``{name}" in aura.memory.__doc__, name
        obj = getattr(aura.memory, name)
        assert name == "RULES" or obj.__doc__, name
