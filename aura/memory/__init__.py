"""The gated delta rule family (Gated DeltaNet-2 and its exact reductions), in fla's layout.

Public API (ARCHITECTURE.md section 1):

- ``gdn2_recurrent(q, k, v, g, b, w, scale=None, initial_state=None, output_final_state=False)``: naive spec.
- ``gdn2_step(q, k, v, g, b, w, state, scale=None)``: one batched step for inference.
- ``state_bytes(d_key, d_val, heads=1)``: bytes of the deployable float32 state.
"""

from aura.memory.naive import gdn2_recurrent, gdn2_step, state_bytes

__all__ = ["gdn2_recurrent", "gdn2_step", "state_bytes"]
