"""The fused C kernel (aura.memory.cpu_fast) against the float64 naive spec; gradients; build cache."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from aura.memory import cpu_fast, gdn2_recurrent

from .conftest import make_inputs, rel_err

pytestmark = pytest.mark.skipif(not cpu_fast.available(), reason="needs a C compiler")

NAMES = "q k v g b w S0".split()


def _loss(o, S):
    """Every output element and the final state carry gradient (weights differ per element)."""
    weights = torch.linspace(-1, 1, o.numel(), dtype=torch.float64).reshape(o.shape)
    return (o.double() * weights).sum() + S.double().square().sum()


def _run(fn, inputs):
    o, S = fn(*inputs[:6], None, inputs[6], True)
    leaves = [x for x in inputs if x is not None]
    return o, S, torch.autograd.grad(_loss(o, S), leaves)


def _reference(inputs):
    ref = [None if x is None else x.detach().double().requires_grad_() for x in inputs]
    return _run(gdn2_recurrent, ref)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize(
    "B,T,H,K,V",
    [
        (2, 1, 2, 8, 8),
        (3, 63, 1, 32, 32),
        (2, 64, 2, 7, 12),
        (1, 65, 3, 16, 5),
        (2, 520, 1, 32, 32),
        (1, 70, 1, 40, 33),
    ],
)
def test_forward_matches_naive(gen, dtype, tol, B, T, H, K, V):
    inputs = [x.to(dtype) for x in make_inputs(B, T, H, K, V, gen=gen)]
    q, k, v, g, b, w, S0 = inputs
    with torch.no_grad():
        o, S = cpu_fast.gdn2_cpu(q, k, v, g, b, w, None, S0, True)
        o_ref, S_ref = gdn2_recurrent(*(x.double() for x in inputs[:6]), None, S0.double(), True)
    assert o.dtype == dtype and S.dtype == dtype and o.shape == (B, T, H, V)
    assert rel_err(o, o_ref) <= tol and rel_err(S, S_ref) <= tol
    o0, none = cpu_fast.gdn2_cpu(q, k, v, g, b, w)  # zero initial state, no final state
    o0_ref, _ = gdn2_recurrent(*(x.double() for x in inputs[:6]))
    assert none is None and rel_err(o0.detach(), o0_ref) <= tol


@pytest.mark.parametrize(
    "B,T,H,K,V,chunk",
    [(2, 130, 2, 8, 6, 64), (1, 65, 1, 32, 32, 64), (3, 21, 2, 5, 9, 4), (1, 1, 1, 3, 2, 64)],
)
def test_gradients_match_naive(gen, monkeypatch, B, T, H, K, V, chunk):
    monkeypatch.setattr(cpu_fast, "CHUNK", chunk)  # small chunks: many checkpoints at a small T
    inputs = make_inputs(B, T, H, K, V, gen=gen, requires_grad=True)
    o, S, grads = _run(cpu_fast.gdn2_cpu, inputs)
    o_ref, S_ref, ref = _reference(inputs)
    assert rel_err(o.detach(), o_ref.detach()) <= 1e-10 and rel_err(S.detach(), S_ref.detach()) <= 1e-10
    for name, got, want in zip(NAMES, grads, ref):
        assert rel_err(got, want) <= 1e-10, name


def test_gradients_float32(gen):
    inputs = [x.float().requires_grad_() for x in make_inputs(2, 100, 2, 16, 24, gen=gen)]
    _, _, grads = _run(cpu_fast.gdn2_cpu, inputs)
    _, _, ref = _reference(inputs)
    for name, got, want in zip(NAMES, grads, ref):
        assert got.dtype == torch.float32 and rel_err(got, want) <= 1e-4, name


def test_gradcheck(gen, monkeypatch):
    monkeypatch.setattr(cpu_fast, "CHUNK", 3)
    q, k, v, g, b, w, S0 = make_inputs(1, 7, 2, 3, 4, gen=gen, requires_grad=True)

    def fn(q, k, v, g, b, w, S0):
        return cpu_fast.gdn2_cpu(q, k, v, g, b, w, 0.7, S0, True)

    assert torch.autograd.gradcheck(fn, (q, k, v, g, b, w, S0))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_strong_decay_stays_finite(gen, dtype, tol):
    """g down to -200 (e^g underflows to 0 in float32), b = w = 1: the hardest erase and write."""
    q, k, v, g, b, w, S0 = make_inputs(2, 90, 2, 8, 8, gen=gen, g_min=-200.0)
    b, w = torch.ones_like(b), torch.ones_like(w)
    inputs = [x.to(dtype).requires_grad_() for x in (q, k, v, g, b, w, S0)]
    o, S, grads = _run(cpu_fast.gdn2_cpu, inputs)
    o_ref, S_ref, ref = _reference(inputs)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    assert rel_err(o.detach(), o_ref.detach()) <= tol and rel_err(S.detach(), S_ref.detach()) <= tol
    for name, got, want in zip(NAMES, grads, ref):
        assert torch.isfinite(got).all(), name
        if dtype == torch.float64:
            assert rel_err(got, want) <= tol, name


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 4e-16), (torch.float32, 2.5e-7)])
def test_kernel_exp_matches_libm(gen, dtype, tol):
    """The kernel's vectorised e^g against torch's in float64, over the decay range and its edges."""
    x = torch.cat(
        [
            -torch.rand(10_000, generator=gen, dtype=torch.float64) * 120,
            torch.tensor([0.0, -1e-30, -0.34657359, -0.34657360, -86.9, -87.1, -103.0, -200.0, -745.0]),
            torch.tensor([-707.9, -708.1, -1e4, float("-inf"), 0.5, 3.0]),
        ]
    ).to(dtype)
    got, want = cpu_fast.kernel_exp(x).double(), x.double().exp()
    tiny = torch.finfo(dtype).tiny  # below it the kernel flushes to 0 (absolute error < tiny)
    err = (got - want).abs() / want.clamp_min(tiny)
    assert float(err[want >= tiny].max()) <= tol
    assert bool((got[want < tiny] <= tiny).all())
    nan = cpu_fast.kernel_exp(torch.tensor([float("nan"), -1.0], dtype=dtype))
    assert torch.isnan(nan[0]) and nan[1] == pytest.approx(0.36787944117144233, rel=tol)


def test_dtypes_follow_the_other_forms(gen):
    """o in q's dtype; the state and the compute in float64 if any input is float64, else float32."""
    q, k, v, g, b, w, S0 = make_inputs(1, 10, 1, 4, 4, gen=gen)
    o, S = cpu_fast.gdn2_cpu(q.float(), k.float(), v.float(), g.float(), b.float(), w.float(), None, S0, True)
    assert o.dtype == torch.float32 and S.dtype == torch.float64
    half = [x.bfloat16() for x in (q, k, v, g, b, w)]
    o, S = cpu_fast.gdn2_cpu(*half, output_final_state=True)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    o_ref, S_ref = gdn2_recurrent(*half, output_final_state=True)
    assert rel_err(S, S_ref) <= 1e-5


def test_thread_count_does_not_change_a_bit(gen):
    inputs = [x.float().requires_grad_() for x in make_inputs(3, 70, 3, 8, 8, gen=gen)]
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            o, S, grads = _run(cpu_fast.gdn2_cpu, inputs)
            results.append((o, S, *grads))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(x, y) for x, y in zip(results[0], other))


def test_build_cache_reuses_and_repairs(tmp_path):
    cc = cpu_fast._compiler()
    cached = cpu_fast.library_path(cc)
    assert cached.exists()  # available() built or found it
    path = cpu_fast.library_path(cc, tmp_path)
    shutil.copy(cached, path)
    assert cpu_fast.build(tmp_path) == (path, False)  # found: not recompiled
    path.write_bytes(b"")  # a truncated file (say, from a full disk) must not crash the loader
    lib = cpu_fast.load(tmp_path)
    assert lib.gdn2_abi_version() == cpu_fast.ABI_VERSION and path.stat().st_size > 0
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("broken", ["compiler", "cache"])
def test_unavailable_warns_once_and_falls_back(monkeypatch, caplog, tmp_path, broken):
    if broken == "compiler":
        monkeypatch.setenv("CC", "/nonexistent/aura-cc")
        why = "no C compiler"
    else:  # the cache directory cannot be created (a file is in the way)
        (tmp_path / "file").write_text("")
        monkeypatch.setenv(cpu_fast.ENV_CACHE, str(tmp_path / "file" / "kernels"))
        why = "failed"
    cpu_fast._library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="aura.memory.cpu_fast"):
            assert not cpu_fast.available() and not cpu_fast.available()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and why in warnings[0].getMessage()
    finally:
        cpu_fast._library.cache_clear()
    monkeypatch.undo()
    assert cpu_fast.available()
