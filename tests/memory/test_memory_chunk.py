"""The chunkwise WY/UT form against the naive spec (relative error vs float64), gradients, dispatch."""

from __future__ import annotations

import pytest
import torch

from aura.memory import gdn2_chunk, gdn2_chunk_naive, gdn2_recurrent

from .conftest import make_inputs, rel_err

SHAPES = [(1, 1, 1, 32, 32), (2, 3, 2, 16, 8), (3, 2, 1, 8, 24)]


@pytest.fixture(autouse=True)
def _torch_form(monkeypatch):
    """This module tests the torch chunk form; on a CPU ``auto`` would pick the C kernel (own tests)."""
    monkeypatch.setenv("AURA_MEMORY_BACKEND", "torch")


@pytest.mark.parametrize("T", [1, 63, 64, 65, 520])
@pytest.mark.parametrize("B,H,K,V", [(2, 1, 32, 32), (1, 3, 16, 8), (3, 2, 8, 24)])
def test_chunk_matches_naive(gen, T, B, H, K, V):
    q, k, v, g, b, w, S0 = make_inputs(B, T, H, K, V, gen=gen)
    o_ref, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    o, S = gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    assert o.dtype == torch.float64 and S.dtype == torch.float64
    assert rel_err(o, o_ref) <= 1e-10 and rel_err(S, S_ref) <= 1e-10
    f = [x.float() for x in (q, k, v, g, b, w, S0)]
    o32, S32 = gdn2_chunk(*f[:6], initial_state=f[6], output_final_state=True)
    assert o32.dtype == torch.float32 and S32.dtype == torch.float32
    assert rel_err(o32, o_ref) <= 1e-4 and rel_err(S32, S_ref) <= 1e-4


@pytest.mark.parametrize("g_min", [-5.0, -20.0, -200.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_strong_decay_stays_finite_and_exact(gen, g_min, dtype):
    # Cumulative decays reach hundreds per chunk: naive e^{-Gamma} factors would overflow.
    q, k, v, g, b, w, S0 = make_inputs(2, 130, 2, 16, 16, gen=gen, g_min=g_min)
    o_ref, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    x = [t.to(dtype) for t in (q, k, v, g, b, w, S0)]
    o, S = gdn2_chunk(*x[:6], initial_state=x[6], output_final_state=True)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert rel_err(o, o_ref) <= tol and rel_err(S, S_ref) <= tol


@pytest.mark.parametrize("chunk_size", [1, 4, 16, 128])
def test_other_chunk_sizes(gen, chunk_size):
    q, k, v, g, b, w, S0 = make_inputs(2, 37, 2, 8, 8, gen=gen)
    o_ref, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    o, S = gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True, chunk_size=chunk_size)
    assert rel_err(o, o_ref) <= 1e-10 and rel_err(S, S_ref) <= 1e-10


@pytest.mark.parametrize("split", [1, 64, 100])
def test_split_sequence_equals_one_pass(gen, split):
    q, k, v, g, b, w, S0 = make_inputs(2, 150, 2, 16, 16, gen=gen)
    o, S = gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    first = [x[:, :split] for x in (q, k, v, g, b, w)]
    second = [x[:, split:] for x in (q, k, v, g, b, w)]
    o1, S1 = gdn2_chunk(*first, initial_state=S0, output_final_state=True)
    o2, S2 = gdn2_chunk(*second, initial_state=S1, output_final_state=True)
    assert rel_err(torch.cat([o1, o2], 1), o) <= 1e-12 and rel_err(S2, S) <= 1e-12


def test_gradients_match_naive(gen):
    inputs = make_inputs(2, 70, 2, 8, 6, gen=gen, requires_grad=True)
    q, k, v, g, b, w, S0 = inputs

    def loss(fn):
        o, S = fn(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
        weights = torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)
        return (o * weights).sum() + S.square().sum()

    ref = torch.autograd.grad(loss(gdn2_recurrent), inputs)
    got = torch.autograd.grad(loss(gdn2_chunk), inputs)
    for name, a, r in zip("q k v g b w S0".split(), got, ref):
        assert rel_err(a, r) <= 1e-10, name


def test_gradcheck_float64(gen):
    q, k, v, g, b, w, S0 = make_inputs(1, 6, 1, 3, 2, gen=gen)
    # keep gates away from the [0, 1] / g <= 0 borders so finite differences stay valid inputs
    g = -0.1 - 0.8 * g.abs() / g.abs().max()
    b, w = 0.1 + 0.8 * b, 0.1 + 0.8 * w
    args = [x.detach().requires_grad_() for x in (q, k, v, g, b, w, S0)]

    def fn(q, k, v, g, b, w, S0):
        return gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True, chunk_size=4)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_backend_choice(gen, monkeypatch):
    q, k, v, g, b, w, _ = make_inputs(1, 5, 1, 4, 4, gen=gen, state=False)
    with pytest.raises(ValueError, match="argument 'backend' must be one of"):
        gdn2_chunk(q, k, v, g, b, w, backend="triton")
    with pytest.raises(ValueError, match="backend='fla' cannot run here"):
        gdn2_chunk(q, k, v, g, b, w, backend="fla")
    monkeypatch.setenv("AURA_MEMORY_BACKEND", "torch")
    o, _ = gdn2_chunk(q, k, v, g, b, w)
    assert rel_err(o, gdn2_recurrent(q, k, v, g, b, w)[0]) < 1e-12
    monkeypatch.setenv("AURA_MEMORY_BACKEND", "bogus")
    with pytest.raises(ValueError, match="'bogus'"):
        gdn2_chunk(q, k, v, g, b, w)
    for bad in (0, 48, 2.0, True):
        with pytest.raises(ValueError, match="argument 'chunk_size'"):
            gdn2_chunk(q, k, v, g, b, w, chunk_size=bad)


def test_auto_on_cpu_takes_the_c_kernel(gen, monkeypatch):
    from aura.memory import cpu_fast

    if not cpu_fast.available():
        pytest.skip("needs a C compiler (the C kernel did not build)")
    monkeypatch.delenv("AURA_MEMORY_BACKEND")
    q, k, v, g, b, w, S0 = make_inputs(2, 70, 2, 8, 8, gen=gen)
    want = cpu_fast.gdn2_cpu(q, k, v, g, b, w, None, S0, True)
    for backend in ("auto", "c"):
        got = gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True, backend=backend)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), backend
    torch_form = gdn2_chunk(q, k, v, g, b, w, initial_state=S0, output_final_state=True, backend="torch")
    assert rel_err(torch_form[0], want[0]) <= 1e-10 and not torch.equal(torch_form[0], want[0])
    with pytest.raises(ValueError, match="argument 'g' .* must be <= 0"):
        gdn2_chunk(q, k, v, -g, b, w)  # the C route validates values like every other


def test_half_precision_inputs_accumulate_in_float32(gen):
    q, k, v, g, b, w, S0 = make_inputs(2, 70, 1, 16, 16, gen=gen)
    o_ref, _ = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0)
    x = [t.bfloat16() for t in (q, k, v, g, b, w)]
    o, S = gdn2_chunk(*x, initial_state=S0.float(), output_final_state=True)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert rel_err(o, o_ref) <= 3e-2  # bf16 rounding of the inputs themselves dominates


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_naive_twin_matches_spec(gen, chunk_size):
    # gdn2_chunk_naive (all chunks batched, autograd) is the reference the fast backward is tested against.
    q, k, v, g, b, w, S0 = make_inputs(2, 70, 2, 8, 8, gen=gen, g_min=-30.0)
    o_ref, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    o, S = gdn2_chunk_naive(q, k, v, g, b, w, 8**-0.5, S0, True, chunk_size)
    assert rel_err(o, o_ref) <= 1e-10 and rel_err(S, S_ref) <= 1e-10


def test_naive_chunk_form_contract(gen):
    """gdn2_chunk_naive takes gdn2_recurrent's arguments (and chunk_size): dtypes, no final state, errors."""
    q, k, v, g, b, w, S0 = make_inputs(2, 37, 2, 8, 4, gen=gen)
    o, S = gdn2_chunk_naive(q, k, v, g, b, w)
    assert S is None and rel_err(o, gdn2_recurrent(q, k, v, g, b, w)[0]) <= 1e-10
    x = [t.bfloat16() for t in (q, k, v, g, b, w)]
    o16, S32 = gdn2_chunk_naive(*x, initial_state=S0.float(), output_final_state=True, chunk_size=16)
    assert o16.dtype == torch.bfloat16 and S32.dtype == torch.float32
    for bad in (0, 48, 2.0, True):
        with pytest.raises(ValueError, match="gdn2_chunk_naive: argument 'chunk_size'"):
            gdn2_chunk_naive(q, k, v, g, b, w, chunk_size=bad)
    with pytest.raises(ValueError, match="gdn2_chunk_naive: argument 'g' .* must be <= 0"):
        gdn2_chunk_naive(q, k, v, -g, b, w)
    o_nv, _ = gdn2_chunk_naive(q, k, v, -g, b, w, validate=False)  # no value check: runs
    assert o_nv.shape == o.shape
