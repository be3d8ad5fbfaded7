"""KDA, Gated DeltaNet and DeltaNet as reductions of GDN-2: exact, and equal to their own textbook forms."""

from __future__ import annotations

import pytest
import torch

from aura.memory import gdn2_recurrent
from aura.memory.rules import delta_rule, delta_rule_step, expand_gates

from .conftest import make_inputs, rel_err


def _textbook(rule, q, k, v, g, beta, S0, scale):
    """Each rule's own update, written from its paper's formula (independent of the GDN-2 code)."""
    B, T, H, K = q.shape
    S = S0.clone()
    eye = torch.eye(K, dtype=torch.float64)
    o = torch.zeros(B, T, H, v.shape[-1], dtype=torch.float64)
    for t in range(T):
        for i in range(B):
            for h in range(H):
                kt, bt = k[i, t, h], beta[i, t, h]
                erase = eye - bt * torch.outer(kt, kt)
                if rule == "kda":  # (I - beta k k^T) Diag(alpha) S + beta k v^T
                    A = erase @ torch.diag(g[i, t, h].exp())
                elif rule == "gdn":  # alpha (I - beta k k^T) S + beta k v^T
                    A = g[i, t, h].exp() * erase
                else:  # DeltaNet: (I - beta k k^T) S + beta k v^T
                    A = erase
                S[i, h] = A @ S[i, h] + bt * torch.outer(kt, v[i, t, h])
                o[i, t, h] = S[i, h].T @ (scale * q[i, t, h])
    return o, S


def _rule_inputs(gen, rule):
    q, k, v, g, b, _, S0 = make_inputs(2, 20, 2, 6, 5, gen=gen)
    beta = b[..., 0]
    g = {"kda": g, "gdn": g[..., 0], "deltanet": None}[rule]
    return q, k, v, g, beta, S0


@pytest.mark.parametrize("rule", ["kda", "gdn", "deltanet"])
@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_reduction_matches_textbook(gen, rule, mode):
    q, k, v, g, beta, S0 = _rule_inputs(gen, rule)
    o, S = delta_rule(rule, q, k, v, g=g, beta=beta, initial_state=S0, output_final_state=True, mode=mode)
    gg = torch.zeros_like(q) if g is None else g
    o_ref, S_ref = _textbook(rule, q, k, v, gg, beta, S0, q.shape[-1] ** -0.5)
    assert rel_err(o, o_ref) <= 1e-12 and rel_err(S, S_ref) <= 1e-12


@pytest.mark.parametrize("rule", ["kda", "gdn", "deltanet"])
def test_reduction_is_exact(gen, rule):
    # The broadcast views run the very same arithmetic as materialised gates: bit-identical results.
    q, k, v, g, beta, S0 = _rule_inputs(gen, rule)
    ge, be, we = expand_gates(rule, q, v, g=g, beta=beta)
    assert torch.equal(be[..., 0], beta) and torch.equal(we[..., -1], beta)
    full = [x.contiguous().clone() for x in (ge, be, we)]
    o1, S1 = delta_rule(
        rule, q, k, v, g=g, beta=beta, initial_state=S0, output_final_state=True, mode="recurrent"
    )
    o2, S2 = gdn2_recurrent(q, k, v, *full, initial_state=S0, output_final_state=True)
    assert torch.equal(o1, o2) and torch.equal(S1, S2)
    S = S0.clone()
    for t in range(3):
        step_g = None if g is None else g[:, t]
        o, S = delta_rule_step(rule, q[:, t], k[:, t], v[:, t], S, g=step_g, beta=beta[:, t])
        assert rel_err(o, o1[:, t]) <= 1e-12


def test_gdn2_passes_through(gen):
    q, k, v, g, b, w, S0 = make_inputs(1, 9, 1, 4, 3, gen=gen)
    o, _ = delta_rule("gdn2", q, k, v, g=g, b=b, w=w, initial_state=S0)
    assert rel_err(o, gdn2_recurrent(q, k, v, g, b, w, initial_state=S0)[0]) <= 1e-12


def test_rule_argument_errors(gen):
    q, k, v, g, beta, _ = _rule_inputs(gen, "kda")
    with pytest.raises(ValueError, match="argument 'rule' must be one of"):
        delta_rule("mamba", q, k, v, g=g, beta=beta)
    with pytest.raises(ValueError, match="rule 'kda' needs argument 'beta'"):
        delta_rule("kda", q, k, v, g=g)
    with pytest.raises(ValueError, match="rule 'deltanet' does not take argument 'g'"):
        delta_rule("deltanet", q, k, v, g=g, beta=beta)
    with pytest.raises(ValueError, match=r"argument 'g' has shape \(2, 20, 2\), expected \(2, 20, 2, 6\)"):
        delta_rule("kda", q, k, v, g=g[..., 0], beta=beta)
    with pytest.raises(ValueError, match=r"argument 'beta' has shape \(2, 20, 2, 6\), expected \(2, 20, 2\)"):
        delta_rule("gdn", q, k, v, g=g[..., 0], beta=g)
    with pytest.raises(ValueError, match="argument 'mode'"):
        delta_rule("kda", q, k, v, g=g, beta=beta, mode="fast")
