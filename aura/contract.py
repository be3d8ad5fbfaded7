"""The contracts AURA's parts share, in one place and without torch (the deploy runtime imports this module).

Rules. Every memory rule is Gated DeltaNet-2 with restricted gates: ``RULES`` names them (aura.memory.rules).

State. The deployable memory is ONE float32 tensor ``[H, d_key + 1, d_val]`` per batch row: rows
``0..d_key-1`` hold the fast-weight matrix S of each head, row ``d_key`` the auxiliary vector aux (the last
value written). Its size is ``H (d_key d_val + d_val) 4`` bytes: 4,224 B at 32 x 32, one head.

Write record. A write is replayable from ``decay`` alpha_t ``[H, K]``, ``key`` k_t ``[H, K]``, ``delta`` u_t
``[H, V]`` and the new ``aux`` ``[H, V]`` (in that order in a record's flat float32 buffer):
``S_t = decay[:, :, None] * S_{t-1} + key[:, :, None] * delta[:, None, :]``, ``state[:, K] = aux``.
A KV cache of the same widths appends ``H (d_key + d_val) 4`` bytes per step instead.

Step graph. The exported per-step graph (batch 1, static shapes) takes ``STEP_INPUTS`` and returns
``STEP_OUTPUTS`` (docs/ARCHITECTURE.md section 3): ``action_skip`` is the action had the write not been made.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES = ("gdn2", "kda", "gdn", "deltanet")

STEP_INPUTS = ("features", "base_action", "state")
STEP_OUTPUTS = ("action", "new_state", "write", "gate_prob", "decay", "key", "delta", "aux", "action_skip")

BYTES_PER_ELEMENT = 4  # float32


@dataclass(frozen=True)
class StateLayout:
    """Shape of the memory: ``heads`` H, ``d_key`` K, ``d_val`` V (module docstring)."""

    heads: int
    d_key: int
    d_val: int

    def __post_init__(self) -> None:
        for name in ("heads", "d_key", "d_val"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{type(self).__name__}.{name} must be a positive int, got {value!r}")

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(H, K + 1, V)``: one batch row of the state tensor."""
        return (self.heads, self.d_key + 1, self.d_val)

    @property
    def state_bytes(self) -> int:
        """H * (K*V + V) * 4; 4,224 at H=1, K=V=32."""
        return self.heads * (self.d_key + 1) * self.d_val * BYTES_PER_ELEMENT

    @property
    def record_floats(self) -> int:
        """decay, key (K each) and delta, aux (V each), per head."""
        return self.heads * (2 * self.d_key + 2 * self.d_val)

    @property
    def kv_bytes_per_step(self) -> int:
        """What one KV-cache append of the same key/value widths costs: H * (K + V) * 4 (256 B at 32x32)."""
        return self.heads * (self.d_key + self.d_val) * BYTES_PER_ELEMENT
