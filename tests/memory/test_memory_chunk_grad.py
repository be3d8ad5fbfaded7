"""The hand-written backward of the torch chunk form (aura.memory.chunk_fast) against autograd twins."""

from __future__ import annotations

import pytest
import torch

from aura.memory import gdn2_chunk, gdn2_chunk_naive, gdn2_recurrent
from aura.memory.chunk import CPU_CHUNK, EXP_LIMIT, sub_block
from aura.memory.chunk_fast import gdn2_chunk_fast, unit_lower_inverse

from .conftest import make_inputs, rel_err

NAMES = "q k v g b w S0".split()


@pytest.fixture(autouse=True)
def _torch_form(monkeypatch):
    """This module tests the torch chunk form; on a CPU ``auto`` would pick the C kernel (own tests)."""
    monkeypatch.setenv("AURA_MEMORY_BACKEND", "torch")


def _fast(q, k, v, g, b, w, S0, C, group=None, c=None):
    ct = (
        torch.float64
        if torch.float64 in (q.dtype, S0.dtype if S0 is not None else q.dtype)
        else torch.float32
    )
    T, K = q.shape[1], q.shape[-1]
    C = min(C, 1 << (T - 1).bit_length())
    c = sub_block(C, float(g.detach().min()), ct) if c is None else c
    return gdn2_chunk_fast(q, k, v, g, b, w, K**-0.5, S0, C, c, EXP_LIMIT[ct], ct, group=group)


def _loss(o, S):
    weights = torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)
    return (o * weights).sum() + S.square().sum()


def _grads(fn, inputs):
    o, S = fn(*inputs)
    return (o, S), torch.autograd.grad(_loss(o, S), inputs)


@pytest.mark.parametrize(
    "B,T,H,K,V,C,group",
    [
        (2, 70, 2, 8, 6, 16, 1),
        (1, 64, 1, 16, 16, 32, 2),
        (3, 33, 2, 8, 8, 32, 64),
        (2, 100, 1, 32, 32, 64, 1),
    ],
)
def test_fast_backward_matches_autograd_twin(gen, B, T, H, K, V, C, group):
    inputs = make_inputs(B, T, H, K, V, gen=gen, requires_grad=True)

    def twin(q, k, v, g, b, w, S0):  # the same algebra, differentiated by autograd
        C_ = min(C, 1 << (T - 1).bit_length())
        return gdn2_chunk_naive(q, k, v, g, b, w, K**-0.5, S0, True, C_)

    (o_ref, S_ref), ref = _grads(twin, inputs)
    (o, S), got = _grads(lambda *x: _fast(*x, C, group), inputs)
    assert rel_err(o, o_ref) <= 1e-12 and rel_err(S, S_ref) <= 1e-12
    for name, a, r in zip(NAMES, got, ref):
        assert rel_err(a, r) <= 1e-11, name


@pytest.mark.parametrize("g_min", [-20.0, -200.0])
def test_strong_decay_gradients(gen, g_min):
    # Chunk-wide decays far beyond e^40: the sub-block factoring (c < C) must hold in the backward too.
    inputs = make_inputs(2, 75, 2, 8, 8, gen=gen, requires_grad=True, g_min=g_min)
    _, ref = _grads(lambda *x: gdn2_recurrent(*x[:6], initial_state=x[6], output_final_state=True), inputs)
    _, got = _grads(lambda *x: _fast(*x, 32), inputs)
    for name, a, r in zip(NAMES, got, ref):
        assert rel_err(a, r) <= 1e-9, name
    f32 = [x.detach().float().requires_grad_() for x in inputs]
    _, got32 = _grads(lambda *x: _fast(*x, 32), f32)
    for name, a, r in zip(NAMES, got32, ref):
        assert torch.isfinite(a).all() and rel_err(a, r) <= 1e-3, name


def test_float32_gradients_match_float64_spec(gen):
    inputs = make_inputs(4, 130, 1, 32, 32, gen=gen, requires_grad=True)
    _, ref = _grads(lambda *x: gdn2_recurrent(*x[:6], initial_state=x[6], output_final_state=True), inputs)
    f32 = [x.detach().float().requires_grad_() for x in inputs]
    _, got = _grads(lambda *x: gdn2_chunk(*x[:6], initial_state=x[6], output_final_state=True), f32)
    for name, a, r in zip(NAMES, got, ref):
        assert a.dtype == torch.float32 and rel_err(a, r) <= 1e-4, name


@pytest.mark.parametrize("c", [4, 2])  # c < C: the sub-block (strong decay) path
def test_gradcheck_fast_function(gen, c):
    # T = 7 with C = 4: two blocks of one chunk each (group=1), the second one partial (zero-padded)
    q, k, v, g, b, w, S0 = make_inputs(1, 7, 1, 3, 2, gen=gen)
    g = -0.1 - 0.8 * g.abs() / g.abs().max()  # keep g < 0 and gates inside (0, 1) under perturbation
    b, w = 0.1 + 0.8 * b, 0.1 + 0.8 * w
    args = [x.detach().requires_grad_() for x in (q, k, v, g, b, w, S0)]
    C, group = 4, 1

    def fn(q, k, v, g, b, w, S0):
        return gdn2_chunk_fast(
            q, k, v, g, b, w, 0.7, S0, C, c, EXP_LIMIT[torch.float64], torch.float64, group
        )

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_without_initial_state_or_final_state_gradient(gen):
    q, k, v, g, b, w, _ = make_inputs(2, 37, 1, 8, 8, gen=gen, state=False, requires_grad=True)
    xs = (q, k, v, g, b, w)
    o_ref, _ = gdn2_recurrent(*xs)
    o, S = gdn2_chunk(*xs, chunk_size=16, output_final_state=True)
    assert S is not None and rel_err(o, o_ref) <= 1e-12
    dO = torch.randn_like(o)
    ref = torch.autograd.grad(o_ref, xs, dO)
    got = torch.autograd.grad(o, xs, dO)
    for name, a, r in zip(NAMES, got, ref):
        assert rel_err(a, r) <= 1e-11, name


def test_mixed_dtypes_and_broadcast_gates(gen):
    q, k, v, g, b, w, S0 = make_inputs(2, 45, 2, 8, 8, gen=gen)
    beta = b[..., :1].detach()  # a per-token scalar gate, broadcast (stride 0) over K and V
    xs = [x.bfloat16().requires_grad_() for x in (q, k, v, g)]
    beta = beta.bfloat16().requires_grad_()
    S0f = S0.float().requires_grad_()
    o, S = gdn2_chunk(
        *xs, beta.expand_as(xs[0]), beta.expand_as(xs[2]), initial_state=S0f, output_final_state=True
    )
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    grads = torch.autograd.grad(_loss(o.float(), S), [*xs, beta, S0f])
    ref_in = [x.detach().double().requires_grad_() for x in (*xs, beta, S0f)]
    o_r, S_r = gdn2_recurrent(
        *ref_in[:4],
        ref_in[4].expand_as(ref_in[0]),
        ref_in[4].expand_as(ref_in[2]),
        initial_state=ref_in[5],
        output_final_state=True,
    )
    ref = torch.autograd.grad(_loss(o_r, S_r), ref_in)
    for a, r, x in zip(grads, ref, (*xs, beta, S0f)):
        assert a.dtype == x.dtype and a.shape == x.shape and rel_err(a, r) <= 3e-2


def test_default_chunk_on_cpu_is_cpu_chunk(gen):
    q, k, v, g, b, w, S0 = make_inputs(1, 70, 1, 8, 8, gen=gen)
    o1, S1 = gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    o2, S2 = gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True, chunk_size=CPU_CHUNK)
    assert torch.equal(o1, o2) and torch.equal(S1, S2)


@pytest.mark.parametrize("C", [1, 2, 16, 64])
def test_unit_lower_inverse(gen, C):
    T = torch.randn(5, C, C, generator=gen, dtype=torch.float64) / C**0.5
    T_upper = T.triu()  # must be ignored: only the strict lower triangle is read
    A = unit_lower_inverse(T.tril(-1) + T_upper)
    L = torch.eye(C, dtype=T.dtype) + T.tril(-1)
    assert torch.equal(A.triu(1), torch.zeros_like(A.triu(1)))
    assert rel_err(A @ L, torch.eye(C, dtype=T.dtype).expand_as(A)) <= 1e-13
