"""The gated delta rule family (Gated DeltaNet-2 and its exact reductions), in fla's layout.

Public names by form, as fla's ``ops/<rule>/__init__.py`` lists them (ARCHITECTURE.md section 1;
docs/memory.md has the contracts). The spec is the naive recurrence; every other form is tested against it.

Spec (naive):
- ``gdn2_recurrent(q, k, v, g, b, w, scale=None, initial_state=None, output_final_state=False)``: the naive
  recurrence, token by token (fla's ``naive_recurrent_*``). ``naive.py``.
- ``gdn2_chunk_naive(..., chunk_size=64)``: the chunkwise WY/UT algebra in plain PyTorch ops, autograd
  (fla's ``naive_chunk_*``): the twin of the fast chunk form. ``chunk.py``.

Step and write:
- ``gdn2_step(q, k, v, g, b, w, state, scale=None)``: one checked batched step with its read. ``naive.py``.
- ``gdn2_write(k, v, g, b, w, state, *, max_norm=None) -> (decay, delta, new_state)``: one write in
  factored form, exportable (the layer's write). ``naive.py``.

Fast forms:
- ``gdn2_chunk(..., chunk_size=None, backend="auto")``: the chunk form with dispatch: fla's Triton
  ``chunk_gdn2`` on CUDA, the fused C kernel on a CPU, else the torch chunk form with its hand-written
  backward (``chunk_fast``). ``chunk.py``.
- ``gdn2_cpu(q, k, v, g, b, w, scale=None, initial_state=None, output_final_state=False)``: the fused C
  kernel, forward and backward (fla's ``fused_recurrent_*``, on the CPU). ``cpu_fast.py``.

Rules:
- ``delta_rule(rule, q, k, v, g=, beta=, b=, w=)`` / ``delta_rule_step``: each of ``RULES`` = "gdn2" |
  "kda" | "gdn" | "deltanet" as an exact parameterisation of the same code (``expand_gates``). ``rules.py``.

Sizes and the norm guard:
- ``state_bytes(d_key, d_val, heads=1)``: bytes of the deployable float32 state. ``naive.py``.
- ``state_norm_scale(S, max_norm)`` / ``clamp_state_norm(S, max_norm)``: the per-head factor
  min(1, max_norm / ||S||_F) and S scaled by it (bit-identical below the threshold). ``guard.py``.
"""

from aura.memory.chunk import gdn2_chunk, gdn2_chunk_naive
from aura.memory.cpu_fast import gdn2_cpu
from aura.memory.guard import clamp_state_norm, state_norm_scale
from aura.memory.naive import gdn2_recurrent, gdn2_step, gdn2_write, state_bytes
from aura.memory.rules import RULES, delta_rule, delta_rule_step, expand_gates

__all__ = [
    "RULES",
    "clamp_state_norm",
    "delta_rule",
    "delta_rule_step",
    "expand_gates",
    "gdn2_chunk",
    "gdn2_chunk_naive",
    "gdn2_cpu",
    "gdn2_recurrent",
    "gdn2_step",
    "gdn2_write",
    "state_bytes",
    "state_norm_scale",
]
