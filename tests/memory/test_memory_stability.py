"""The norm analysis of aura.memory.guard, the guard itself, and a short run of ``aura bench stability``."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from aura.bench.stability import run_stability
from aura.memory import gdn2_recurrent, gdn2_step
from aura.memory.guard import (
    CYCLE_RATE,
    SUP_TRANSITION_NORM,
    adversarial_cycle,
    clamp_state_norm,
    state_norm_scale,
    transition_norm,
)
from cli import main as aura_main

from .conftest import make_inputs, rel_err


def _A(k, b):
    return torch.eye(k.shape[-1], dtype=k.dtype) - k.unsqueeze(-1) * (b * k).unsqueeze(-2)


def test_transition_norm_closed_form_and_sup(gen):
    k = F.normalize(torch.randn(500, 7, dtype=torch.float64, generator=gen), dim=-1)
    for b in (
        torch.rand(500, 7, dtype=torch.float64, generator=gen),
        (torch.rand(500, 7, generator=gen) < 0.5).double(),
    ):
        exact = torch.linalg.matrix_norm(_A(k, b), ord=2)
        assert (exact - transition_norm(k, b)).abs().max() < 1e-12
        assert exact.max() <= SUP_TRANSITION_NORM + 1e-12
    k = torch.full((1, 3), 3**-0.5, dtype=torch.float64)  # m = 1/3 with binary b attains the sup
    b = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    assert abs(float(torch.linalg.matrix_norm(_A(k, b), ord=2)) - SUP_TRANSITION_NORM) < 1e-12
    beta = torch.rand(500, 1, dtype=torch.float64, generator=gen).expand(500, 7)  # reductions: <= 1
    assert torch.linalg.matrix_norm(_A(k.expand(500, 3)[:, :3], beta[:, :3]), ord=2).max() <= 1 + 1e-12


def test_adversarial_cycle_grows_at_the_predicted_rate(gen):
    q, k, v, g, b, w = adversarial_cycle(400, 2, 8, 4, generator=gen)
    norms = []
    S = torch.zeros(2, 1, 8, 4, dtype=torch.float64)
    for t in range(400):
        _, S = gdn2_step(q[:, t], k[:, t], v[:, t], g[:, t], b[:, t], w[:, t], S)
        norms.append(torch.linalg.vector_norm(S, dim=(-2, -1)).min().item())
    slope = (math.log(norms[399]) - math.log(norms[199])) / 200
    assert abs(slope - math.log(CYCLE_RATE)) < 2e-3


def test_guard_bounds_the_adversarial_cycle(gen):
    q, k, v, g, b, w = (x.float() for x in adversarial_cycle(3000, 3, 8, 4, generator=gen))
    S = torch.zeros(3, 1, 8, 4)
    for t in range(3000):
        _, S = gdn2_step(q[:, t], k[:, t], v[:, t], g[:, t], b[:, t], w[:, t], S, out=S, max_norm=50.0)
    n = torch.linalg.vector_norm(S, dim=(-2, -1))
    assert torch.isfinite(S).all() and n.max() <= 50.0 * (1 + 1e-6) and n.min() > 40.0
    o_rec, S_rec = gdn2_recurrent(q, k, v, g, b, w, output_final_state=True, max_norm=50.0)
    assert rel_err(S_rec, S) < 1e-5


def test_guard_is_bit_identical_below_threshold(gen):
    q, k, v, g, b, w, S0 = make_inputs(2, 50, 2, 8, 8, gen=gen, dtype=torch.float32)
    o1, S1 = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    o2, S2 = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True, max_norm=1e6)
    assert torch.equal(o1, o2) and torch.equal(S1, S2)
    assert torch.equal(clamp_state_norm(S1, 1e6), S1)
    clamped = clamp_state_norm(S1, 0.5)
    assert torch.allclose(torch.linalg.vector_norm(clamped, dim=(-2, -1)), torch.tensor(0.5))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_guard_argument(bad):
    with pytest.raises(ValueError, match="argument 'max_norm'"):
        state_norm_scale(torch.ones(1, 1, 2, 2), bad)


def test_reductions_never_expand(gen):
    # b = w = beta 1: ||S_t||_F <= ||S_{t-1}||_F + beta ||v_t|| at every step, whatever the keys.
    q, k, v, g, b, w, S = make_inputs(4, 300, 1, 6, 5, gen=gen, g_min=0.0)
    k = F.normalize(k[:, :1] + 0.02 * k, dim=-1)  # nearly colinear keys
    beta = b[..., :1]
    for t in range(300):
        prev = torch.linalg.vector_norm(S, dim=(-2, -1))
        bt = beta[:, t]
        _, S = gdn2_step(q[:, t], k[:, t], v[:, t], g[:, t], bt.expand_as(b[:, t]), bt.expand_as(w[:, t]), S)
        now = torch.linalg.vector_norm(S, dim=(-2, -1))
        assert (now <= prev + bt[..., 0] * torch.linalg.vector_norm(v[:, t], dim=-1) + 1e-12).all()


def test_decay_floor_gives_a_uniform_bound(gen):
    # alpha <= a < sqrt(3)/2 on every channel: ||S_t|| <= max(||S_0||, max ||w v|| / (1 - 2a/sqrt(3))).
    a = 0.8
    q, k, v, g, b, w = adversarial_cycle(2000, 2, 8, 4, generator=gen)
    g = torch.full_like(g, math.log(a))
    _, S = gdn2_recurrent(q, k, v, g, b, w, output_final_state=True)
    bound = torch.linalg.vector_norm(v, dim=-1).max() / (1 - 2 * a / math.sqrt(3))
    assert torch.linalg.vector_norm(S, dim=(-2, -1)).max() <= bound


def test_stability_bench_short_run(tmp_path):
    cases, _ = run_stability(
        steps=2000, runs=2, d=8, dtype=torch.float32, max_norm=100.0, block=500, progress=False
    )
    assert cases["adversarial_cycle"]["runs_overflowed"] == 2  # float32 overflows after ~800 steps
    assert cases["adversarial_cycle"]["first_overflow_step_le"] <= 1500
    assert cases["adversarial_cycle_guarded"]["runs_overflowed"] == 0
    assert 90.0 < cases["adversarial_cycle_guarded"]["max_norm_F"] <= 100.0 * (1 + 1e-6)
    for name in ("random", "random_nodecay", "b=w=1_nodecay", "repeated_key", "colinear_keys"):
        assert cases[name]["runs_overflowed"] == 0 and 0 < cases[name]["max_norm_F"] < 100
    out = tmp_path / "stab.json"
    argv = ["bench", "stability", "--steps", "300", "--runs", "1", "--d", "4", "--dtypes", "float64"]
    assert aura_main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["steps"] == 300 and "adversarial_cycle" in data["by_dtype"]["float64"]["cases"]


def test_guard_in_the_autograd_step_matches_the_in_place_step(gen):
    q, k, v, g, b, w, S0 = make_inputs(2, 1, 2, 6, 5, gen=gen)
    step = [x[:, 0] for x in (q, k, v, g, b, w)]
    o1, S1 = gdn2_step(*step, S0 * 10, max_norm=3.0)  # no grad: in-place path into a fresh buffer
    leaves = [x.clone().requires_grad_() for x in (*step, S0 * 10)]
    o2, S2 = gdn2_step(*leaves, max_norm=3.0)  # functional path
    assert rel_err(o2, o1) < 1e-12 and rel_err(S2, S1) < 1e-12
    assert abs(float(torch.linalg.vector_norm(S2, dim=(-2, -1)).max()) - 3.0) < 1e-9
    torch.autograd.grad(o2.sum() + S2.sum(), leaves)  # differentiable through the guard


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--runs", "0"], "--runs must be >= 1, got 0"),
        (["--d", "0"], "--d must be >= 1, got 0"),
        (["--block", "-2"], "--block must be >= 1, got -2"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--seed", "-1"], "--seed must be in [0, 2**63), got -1"),
        (["--max-norm", "0"], "--max-norm must be a positive finite number, got 0.0"),
        (["--max-norm", "inf"], "--max-norm must be a positive finite number, got inf"),
        (["--device", "cuda:x"], "--device must be cpu or cuda[:N], got 'cuda:x'"),
    ],
)
def test_stability_cli_rejects_bad_options_in_one_line(capsys, argv, message):
    assert aura_main(["bench", "stability", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"aura bench stability: {message}"
