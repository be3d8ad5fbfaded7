"""KDA, Gated DeltaNet and DeltaNet as exact parameterisations of the GDN-2 code, selectable by name.

Every rule is GDN-2 with restricted gates (``...`` is ``[B, T, H]`` for sequences, ``[B, H]`` for a step):

| rule       | decay g (log alpha)        | erase b                  | write w                  |
|------------|----------------------------|--------------------------|--------------------------|
| "gdn2"     | g ``[..., K]``             | b ``[..., K]``           | w ``[..., V]``           |
| "kda"      | g ``[..., K]``             | beta ``[...]`` on all K  | beta on all V            |
| "gdn"      | g ``[...]`` on all K       | beta on all K            | beta on all V            |
| "deltanet" | 0                          | beta on all K            | beta on all V            |

With b = beta 1 and w = beta 1 the GDN-2 step S_t = (I - k (b*k)^T) Diag(alpha) S + k (w*v)^T becomes
KDA's (I - beta k k^T) Diag(alpha) S + beta k v^T; a scalar alpha makes it Gated DeltaNet's
alpha (I - beta k k^T) S + beta k v^T; alpha = 1 gives DeltaNet. The expansion is a broadcast view
(``expand``), so the reductions are exact: the same floating-point operations run on repeated values.
"""

from __future__ import annotations

import torch

from aura.memory.chunk import gdn2_chunk
from aura.memory.naive import gdn2_recurrent, gdn2_step

RULES = ("gdn2", "kda", "gdn", "deltanet")


def _need(fn, name, x, shape, layout):
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{fn}: argument '{name}' must be a torch.Tensor {layout}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(
            f"{fn}: argument '{name}' has shape {tuple(x.shape)}, expected {tuple(shape)} = {layout}"
        )


def expand_gates(rule, q, v, *, g=None, beta=None, b=None, w=None, fn="expand_gates"):
    """Full GDN-2 gates ``(g [..., K], b [..., K], w [..., V])`` for ``rule`` (table in the module doc).

    ``q`` and ``v`` give the leading shape ``...`` and K, V. Arguments a rule does not take must be None.
    """
    if rule not in RULES:
        raise ValueError(f"{fn}: argument 'rule' must be one of {RULES}, got {rule!r}")
    lead, K, V = tuple(q.shape[:-1]), q.shape[-1], v.shape[-1]
    ell = "[B, T, H]" if len(lead) == 3 else "[B, H]"
    takes = {"gdn2": {"g", "b", "w"}, "kda": {"g", "beta"}, "gdn": {"g", "beta"}, "deltanet": {"beta"}}[rule]
    given = {"g": g, "beta": beta, "b": b, "w": w}
    for name, x in given.items():
        if name in takes and x is None:
            raise ValueError(f"{fn}: rule {rule!r} needs argument '{name}'")
        if name not in takes and x is not None:
            raise ValueError(
                f"{fn}: rule {rule!r} does not take argument '{name}' (it takes {sorted(takes)})"
            )
    if rule == "gdn2":
        _need(fn, "g", g, (*lead, K), ell[:-1] + ", K]")
        _need(fn, "b", b, (*lead, K), ell[:-1] + ", K]")
        _need(fn, "w", w, (*lead, V), ell[:-1] + ", V]")
        return g, b, w
    _need(fn, "beta", beta, lead, ell)
    if rule == "kda":
        _need(fn, "g", g, (*lead, K), ell[:-1] + ", K]")
    elif rule == "gdn":
        _need(fn, "g", g, lead, ell)
        g = g.unsqueeze(-1).expand(*lead, K)
    else:
        g = torch.zeros((), dtype=beta.dtype, device=beta.device).expand(*lead, K)
    beta = beta.unsqueeze(-1)
    return g, beta.expand(*lead, K), beta.expand(*lead, V)


def delta_rule(
    rule: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    g: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    w: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    mode: str = "chunk",
    **chunk_kwargs,
):
    """Run ``rule`` over a sequence in fla layout; ``mode`` is "chunk" (``gdn2_chunk``) or "recurrent"."""
    g, b, w = expand_gates(rule, q, v, g=g, beta=beta, b=b, w=w, fn="delta_rule")
    if mode == "chunk":
        return gdn2_chunk(q, k, v, g, b, w, scale, initial_state, output_final_state, **chunk_kwargs)
    if mode == "recurrent":
        return gdn2_recurrent(q, k, v, g, b, w, scale, initial_state, output_final_state, **chunk_kwargs)
    raise ValueError(f"delta_rule: argument 'mode' must be 'chunk' or 'recurrent', got {mode!r}")


def delta_rule_step(rule, q, k, v, state, *, g=None, beta=None, b=None, w=None, scale=None, **step_kwargs):
    """One step of ``rule`` (q, k ``[B, H, K]``, v ``[B, H, V]``, beta ``[B, H]``); see ``gdn2_step``."""
    g, b, w = expand_gates(rule, q, v, g=g, beta=beta, b=b, w=w, fn="delta_rule_step")
    return gdn2_step(q, k, v, g, b, w, state, scale, **step_kwargs)
