"""The gated delta rule family (Gated DeltaNet-2 and its exact reductions), in fla's layout.

Public API (ARCHITECTURE.md section 1):

- ``gdn2_recurrent(q, k, v, g, b, w, scale=None, initial_state=None, output_final_state=False)``: naive spec.
- ``gdn2_chunk(..., chunk_size=None, backend="auto")``: chunkwise WY/UT form (torch; fla on CUDA, the fused
  C kernel of ``cpu_fast`` on a CPU).
- ``gdn2_step(q, k, v, g, b, w, state, scale=None)``: one batched step for inference.
- ``delta_rule(rule, q, k, v, g=, beta=, b=, w=)`` / ``delta_rule_step``: "gdn2" | "kda" | "gdn" | "deltanet"
  as exact parameterisations of the same code (``expand_gates``).
- ``state_bytes(d_key, d_val, heads=1)``: bytes of the deployable float32 state.
"""

from aura.memory.chunk import gdn2_chunk
from aura.memory.naive import gdn2_recurrent, gdn2_step, state_bytes
from aura.memory.rules import RULES, delta_rule, delta_rule_step, expand_gates

__all__ = [
    "RULES",
    "delta_rule",
    "delta_rule_step",
    "expand_gates",
    "gdn2_chunk",
    "gdn2_recurrent",
    "gdn2_step",
    "state_bytes",
]
