"""The fused C kernel (aura.memory.cpu_fast) against the float64 naive spec; gradients; its fused value
check against the torch rules; build cache."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from aura.memory import cpu_fast, gdn2_chunk, gdn2_recurrent

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


ARGS = "q k v g b w initial_state".split()
NAN, INF = float("nan"), float("inf")


def _kernel_flags(xs: dict) -> torch.Tensor:
    """The forward's per-sequence flags, straight from the kernel (float32 unless an input is float64)."""
    ct = torch.float64 if any(x.dtype == torch.float64 for x in xs.values()) else torch.float32
    args = [xs[n].to(ct).contiguous() for n in ARGS[:6]]
    with torch.no_grad():
        return cpu_fast.GDN2CPU.apply(*args, xs["initial_state"].to(ct), 0.5, ct)[2]


def _naive_flags(xs: dict) -> torch.Tensor:
    """The same flags from the torch rules, argument by argument: bit i per (batch row, head)."""
    B, _, H, _ = xs["q"].shape
    flags = torch.zeros(B, H, dtype=torch.int32)
    for i, name in enumerate(ARGS):
        x = xs[name].double()
        if name == "g":
            ok = torch.isfinite(x) & (x <= 0)
        elif name in ("b", "w"):
            ok = (x >= 0) & (x <= 1)
        else:
            ok = torch.isfinite(x)
        bad = (~ok).any(-1).any(-1 if name == "initial_state" else 1)  # -> [B, H]
        flags |= bad.to(torch.int32) << i
    return flags.reshape(-1)


def _inputs(gen, B, T, H, K, V, dtype=torch.float32) -> dict:
    return dict(zip(ARGS, (x.to(dtype) for x in make_inputs(B, T, H, K, V, gen=gen))))


# K != V, rows that are not whole vectors (8 float32 / 4 float64 lanes), H > 1, T in {1, 65}
SHAPES = [(2, 1, 2, 8, 8), (3, 65, 1, 32, 32), (2, 65, 2, 7, 12), (1, 1, 3, 9, 5), (2, 65, 3, 33, 3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,T,H,K,V", SHAPES)
def test_valid_inputs_never_flag(gen, dtype, B, T, H, K, V):
    xs = _inputs(gen, B, T, H, K, V, dtype)
    big = torch.finfo(dtype).max
    # the rules' edges are valid: g = 0 and -0.0, gates at exactly 0 and 1, the largest finite values
    # (1e-40: a float32 subnormal; 1 - 2^-24: the float32 just below 1)
    edges = [("g", 0.0), ("g", -0.0), ("g", -big), ("b", 0.0), ("b", 1.0), ("w", 0.0), ("w", -0.0)]
    edges += [("b", 1e-40), ("w", 1 - 2**-24)]
    for name, val in edges:
        xs[name].view(-1)[int(torch.randint(xs[name].numel(), (1,), generator=gen))] = val
    for name, val in (("w", 1.0), ("q", big), ("k", -big), ("v", big), ("initial_state", -big)):
        xs[name].view(-1)[-1] = val
    flags = _kernel_flags(xs)
    assert flags.shape == (B * H,) and not flags.any() and cpu_fast.flagged(flags) == []


def test_flags_match_the_torch_rules(gen):
    """Random violations in random arguments and sequences: the kernel's flags, bit for bit."""
    B, T, H, K, V = 4, 65, 2, 7, 12
    # 1e-40 / -1e-40: float32 subnormals (x - x^2 must keep their sign); 1 + 2^-23: just above 1
    bad = {"q": [NAN, INF, -INF], "g": [NAN, INF, -INF, 0.25, 1e-40], "b": [NAN, 1.5, -0.1, INF, -1e-40]}
    bad["b"] += [-INF, 1 + 2**-23]
    bad["k"] = bad["v"] = bad["initial_state"] = bad["q"]
    bad["w"] = bad["b"]
    for dtype in (torch.float32, torch.float64):
        for _ in range(6):
            xs = _inputs(gen, B, T, H, K, V, dtype)
            for _ in range(int(torch.randint(1, 6, (1,), generator=gen))):
                name = ARGS[int(torch.randint(len(ARGS), (1,), generator=gen))]
                vals = bad[name]
                x = xs[name].view(-1)
                x[int(torch.randint(x.numel(), (1,), generator=gen))] = vals[
                    int(torch.randint(len(vals), (1,), generator=gen))
                ]
            assert torch.equal(_kernel_flags(xs), _naive_flags(xs))


PLANTED = [(n, x) for n in "q k v g b w".split() for x in (NAN, INF, -INF)]
PLANTED += [("g", 0.25), ("b", 1.5), ("w", -0.1), ("initial_state", INF), ("initial_state", NAN)]


@pytest.mark.parametrize("name,value", PLANTED)
def test_planted_bad_value_raises_like_the_torch_path(gen, name, value):
    """Through gdn2_chunk on the 'c' route: the torch path's exact message, wherever the value sits (a
    random element; the last element of a row at the last token; the last sequence, which another
    thread than the caller's may compute)."""
    B, T, H, K, V = 3, 65, 2, 7, 12
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for where in ("random", "row end, last token", "last sequence"):
            xs = _inputs(gen, B, T, H, K, V)
            x = xs[name]
            idx = [int(torch.randint(n, (1,), generator=gen)) for n in x.shape]
            if where == "row end, last token":
                idx[-1] = x.shape[-1] - 1
                if name != "initial_state":
                    idx[1] = T - 1
            elif where == "last sequence":
                idx[0] = B - 1
                idx[1 if name == "initial_state" else 2] = H - 1
            x[tuple(idx)] = value
            assert cpu_fast.flagged(_kernel_flags(xs)) == [name], where
            args = [xs[n] for n in ARGS[:6]]
            with pytest.raises(ValueError) as torch_path:
                gdn2_chunk(*args, initial_state=xs["initial_state"], backend="torch")
            assert f"argument '{name}'" in str(torch_path.value)
            with pytest.raises(ValueError) as c_path:
                gdn2_chunk(*args, initial_state=xs["initial_state"], backend="c")
            assert str(c_path.value) == str(torch_path.value), where
            gdn2_chunk(*args, initial_state=xs["initial_state"], backend="c", validate=False)  # no raise
    finally:
        torch.set_num_threads(before)


def test_flag_without_a_torch_failure_still_raises(gen, monkeypatch):
    """Were the exact check ever to pass what the kernel flagged, the call must still fail loudly."""
    xs = _inputs(gen, 2, 9, 1, 8, 8)
    xs["w"][1, 4, 0, 3] = 2.0
    monkeypatch.setattr(cpu_fast, "check_values", lambda fn, tensors: {})
    with pytest.raises(ValueError, match="gdn2_chunk: the C kernel flagged argument 'w'"):
        gdn2_chunk(*(xs[n] for n in ARGS[:6]), initial_state=xs["initial_state"], backend="c")


def test_build_cache_reuses_and_repairs(tmp_path):
    cc = cpu_fast.compiler()
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
    cpu_fast.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="aura.memory.cpu_fast"):
            assert not cpu_fast.available() and not cpu_fast.available()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and why in warnings[0].getMessage()
    finally:
        cpu_fast.library.cache_clear()
    monkeypatch.undo()
    assert cpu_fast.available()
