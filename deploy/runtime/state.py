"""The deployable memory state and the exact numpy write that both the runtime and the journal apply.

State layout (``aura.contract``; docs/ARCHITECTURE.md section 2): one float32 array ``[1, H, K + 1, V]``;
rows ``0..K-1`` hold the fast-weight matrix S, row ``K`` the auxiliary vector. A write is carried in factored
form (alpha_t = ``decay``, k_t = ``key``, u_t = ``delta``, the new aux row ``aux``):

    S_t = Diag(alpha_t) S_{t-1} + k_t u_t^T        (elementwise: decay[:, None] * S + key[:, None] * delta)
    state[K, :] = aux

ONNX Runtime, TensorRT and torch may fuse that multiply-add into an FMA, so their ``new_state`` can differ
from this one in the last bit. The runtime therefore owns the authoritative state and applies every
committed write with :func:`apply_write`, always as the same three rounded numpy operations; the
journal replays the same function, which makes recovery bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aura.contract import StateLayout

F32 = np.dtype("<f4")


@dataclass(frozen=True)
class StateSpec(StateLayout):
    """The contract's state layout (``aura.contract.StateLayout``: heads H, d_key K, d_val V, bytes) at
    batch 1, as the runtime holds it."""

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, *self.dims)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=F32)


class WriteRecord:
    """Preallocated views onto one factored write: ``decay``/``key`` ``[H, K]``, ``delta``/``aux`` ``[H, V]``.

    All four live in one contiguous float32 buffer so the journal can checksum and write it in one go.
    """

    def __init__(self, spec: StateSpec, buffer: np.ndarray | None = None):
        self.spec = spec
        if buffer is None:
            buffer = np.zeros(spec.record_floats, dtype=F32)
        if buffer.dtype != F32 or buffer.shape != (spec.record_floats,) or not buffer.flags.c_contiguous:
            raise ValueError(f"WriteRecord buffer must be contiguous float32 [{spec.record_floats}]")
        self.flat = buffer
        h, k, v = spec.heads, spec.d_key, spec.d_val
        o = 0
        self.decay = buffer[o : o + h * k].reshape(h, k)
        o += h * k
        self.key = buffer[o : o + h * k].reshape(h, k)
        o += h * k
        self.delta = buffer[o : o + h * v].reshape(h, v)
        o += h * v
        self.aux = buffer[o : o + h * v].reshape(h, v)

    def fill(self, decay: np.ndarray, key: np.ndarray, delta: np.ndarray, aux: np.ndarray) -> None:
        """Copy a write (any leading batch-1 axes) into this record's buffer."""
        for dst, src in ((self.decay, decay), (self.key, key), (self.delta, delta), (self.aux, aux)):
            np.copyto(dst, np.reshape(src, dst.shape), casting="no")


def apply_write(
    state: np.ndarray, record: WriteRecord, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    """``out = write(state)`` as three separately rounded float32 ops; ``out`` may be ``state`` (in place).

    ``scratch`` is an ``[H, K, V]`` float32 work array; pass a preallocated one to keep the control loop
    allocation-free.
    """
    spec = record.spec
    k = spec.d_key
    if out is None:
        out = state
    if scratch is None:
        scratch = np.empty((spec.heads, k, spec.d_val), dtype=F32)
    s_in = state[0, :, :k, :]
    s_out = out[0, :, :k, :]
    np.multiply(record.decay[:, :, None], s_in, out=s_out)
    np.multiply(record.key[:, :, None], record.delta[:, None, :], out=scratch)
    np.add(s_out, scratch, out=s_out)
    out[0, :, k, :] = record.aux
    return out
