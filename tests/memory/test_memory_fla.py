"""Parity with fla (fla-core 0.6): its naive spec on CPU, its Triton kernels and our dispatch on CUDA.

Skips say what they need: fla-core (``pip install -e .[gpu]``) and, for the kernels, a CUDA device.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from aura.memory import delta_rule, gdn2_chunk, gdn2_recurrent

from .conftest import make_inputs, rel_err

HAS_FLA = importlib.util.find_spec("fla") is not None
needs_fla = pytest.mark.skipif(not HAS_FLA, reason="needs fla-core (pip install -e .[gpu])")
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device for fla's Triton kernels"
)
# fla's kernels run with TF32 inside; fp32 against the float64 spec measured 1.4e-3 on an H100.
FLA_TOL = 5e-3


@needs_fla
def test_fla_naive_spec_matches_ours(gen):
    from fla.ops.gdn2 import naive_recurrent_gdn2

    q, k, v, g, b, w, S0 = (x.float() for x in make_inputs(2, 70, 2, 16, 8, gen=gen))
    o1, S1 = naive_recurrent_gdn2(q, k, v, g, b, w, None, S0, True)
    o2, S2 = gdn2_recurrent(q, k, v, g, b, w, None, S0, True)
    assert rel_err(o1, o2) <= 1e-6 and rel_err(S1, S2) <= 1e-6


def _cuda(xs, dtype=torch.float32):
    return [x.to("cuda", dtype) for x in xs]


@needs_cuda
@needs_fla
@pytest.mark.parametrize("T", [1, 63, 64, 65, 520])
def test_fla_chunk_and_dispatch_vs_float64(gen, T):
    from fla.ops.gdn2 import chunk_gdn2

    q, k, v, g, b, w, S0 = make_inputs(2, T, 2, 32, 32, gen=gen)
    o_ref, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    x = _cuda((q, k, v, g, b, w, S0))
    o_fla, S_fla = chunk_gdn2(*x[:6], initial_state=x[6], output_final_state=True)
    assert rel_err(o_fla.cpu(), o_ref) <= FLA_TOL and rel_err(S_fla.cpu(), S_ref) <= FLA_TOL
    o_d, S_d = gdn2_chunk(*x[:6], initial_state=x[6], output_final_state=True)  # auto -> fla
    assert torch.equal(o_d, o_fla) and torch.equal(S_d, S_fla)
    o_t, S_t = gdn2_chunk(*x[:6], initial_state=x[6], output_final_state=True, backend="torch")
    assert rel_err(o_t.cpu(), o_ref) <= 1e-4 and rel_err(S_t.cpu(), S_ref) <= 1e-4


@needs_cuda
@needs_fla
def test_fla_gradients_vs_float64(gen):
    inputs = make_inputs(2, 130, 1, 32, 32, gen=gen, requires_grad=True)
    o, S = gdn2_recurrent(*inputs[:6], initial_state=inputs[6], output_final_state=True)
    do = torch.randn_like(o)
    ref = torch.autograd.grad((o * do).sum() + S.sum(), inputs)
    leaves = [x.detach().to("cuda", torch.float32).requires_grad_() for x in inputs]
    o2, S2 = gdn2_chunk(*leaves[:6], initial_state=leaves[6], output_final_state=True, backend="fla")
    got = torch.autograd.grad((o2 * do.to(o2)).sum() + S2.sum(), leaves)
    for name, a, r in zip("q k v g b w S0".split(), got, ref):
        assert rel_err(a.cpu(), r) <= 1e-2, name


@needs_cuda
@needs_fla
def test_fla_kda_and_gdn_match_our_reductions(gen):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    from fla.ops.kda import chunk_kda

    q, k, v, g, b, _, S0 = make_inputs(2, 100, 2, 32, 32, gen=gen)
    beta = b[..., 0]
    x = _cuda((q, k, v, g, beta, S0))
    o_ref, _ = delta_rule("kda", q, k, v, g=g, beta=beta, initial_state=S0)
    o_fla, _ = chunk_kda(x[0], x[1], x[2], x[3], x[4], initial_state=x[5])
    assert rel_err(o_fla.cpu(), o_ref) <= FLA_TOL
    o_ref, _ = delta_rule("gdn", q, k, v, g=g[..., 0], beta=beta, initial_state=S0)
    o_fla, _ = chunk_gated_delta_rule(x[0], x[1], x[2], x[3][..., 0].contiguous(), x[4], initial_state=x[5])
    assert rel_err(o_fla.cpu(), o_ref) <= FLA_TOL


@needs_cuda
@needs_fla
def test_dispatch_bf16(gen):
    q, k, v, g, b, w, _ = make_inputs(4, 200, 1, 32, 32, gen=gen, state=False)
    o_ref, _ = gdn2_recurrent(q, k, v, g, b, w)
    o, S = gdn2_chunk(*_cuda((q, k, v, g, b, w), torch.bfloat16), output_final_state=True)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert rel_err(o.float().cpu(), o_ref) <= 3e-2


def test_graph_path_is_skipped_when_autograd_records_or_switched_off(monkeypatch):
    from aura.memory import fla_graph

    x = {"q": torch.zeros(1, 2, 1, 4, requires_grad=True), "k": torch.zeros(1, 2, 1, 4)}
    assert not fla_graph.eligible(x)  # the backward needs fla's own autograd.Function
    monkeypatch.setenv("AURA_FLA_GRAPHS", "0")
    x["q"] = x["q"].detach()
    assert not fla_graph.eligible(x)


@needs_cuda
@needs_fla
def test_graphed_forward_is_bit_identical_to_the_direct_call(gen, monkeypatch):
    from fla.ops.gdn2 import chunk_gdn2

    from aura.memory import fla_graph

    captures = []
    real_capture = fla_graph.capture
    monkeypatch.setattr(fla_graph, "capture", lambda *a: captures.append(1) or real_capture(*a))
    # bf16, H = 1, d = 32: mostly the benchmark's kernels, so a GPU run compiles little
    cases = [(131, True, torch.bfloat16), (67, False, torch.bfloat16), (131, True, torch.bfloat16)]
    for T, with_state, dtype in cases:
        for _ in range(3):  # fresh values every call: the static buffers must be refreshed each time
            q, k, v, g, b, w, S0 = make_inputs(2, T, 1, 32, 32, gen=gen)
            x = _cuda((q, k, v, g, b, w), dtype)
            S0 = S0.to("cuda", torch.float32) if with_state else None
            with torch.no_grad():
                got = gdn2_chunk(*x, initial_state=S0, output_final_state=True)
            want = chunk_gdn2(*x, initial_state=S0, output_final_state=True)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert len(captures) == 2 and not fla_graph.FAILED  # two shapes captured; the third case reused one
    # a call that records autograd takes fla's own Function and still gets gradients
    leaves = [t.detach().requires_grad_() for t in _cuda((q, k, v, g, b, w), torch.bfloat16)]
    o, _ = gdn2_chunk(*leaves)
    o.float().sum().backward()
    assert all(t.grad is not None for t in leaves) and len(captures) == 2
    # bad input is still caught on the graphed path
    with torch.no_grad(), pytest.raises(ValueError, match="argument 'g'"):
        gdn2_chunk(*_cuda((q, k, v, -g, b, w), torch.bfloat16))
