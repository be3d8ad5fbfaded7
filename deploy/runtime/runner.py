"""What every deploy runner shares: the step contract, input checks, the safe fallback and the exact commit.

The per-step graph (``aura.contract.STEP_INPUTS`` -> ``STEP_OUTPUTS``; docs/ARCHITECTURE.md section 3) maps

    features z_t [1, d_model], base_action a_t^base [1, d_action], state S_{t-1} [1, H, K+1, V]
      -> action a_t, new_state, write (bool), gate_prob p_t, decay alpha_t, key k_t, delta u_t, aux,
         action_skip (the action had the write not been made: a_t^base + W_c S_{t-1}^T s q_t, plus the MLP
         term of the read-out, aura.readout, for a readout="mlp" model)

A runner executes it into preallocated buffers (:meth:`StepRunner.step`), then the control loop decides
whether the requested write is committed (the flash budget may refuse it) and calls either
:meth:`StepRunner.commit`, which applies the factored write with :func:`deploy.runtime.state.apply_write`. The
runtime's state is therefore exactly what the journal replays, whatever the backend fused. A refused write
calls :meth:`StepRunner.suppress` instead: the state stays and the action becomes ``action_skip``, so the
action always matches the state the robot's memory really holds.

Safe fallback (documented, logged and counted by the loop, never silent): non-finite features, a
non-finite base action, or a graph that returns a non-finite action or gate -> the step returns the base
action, requests no write, and leaves the state untouched. Wrong type, shape or dtype is an
:class:`~deploy.runtime.errors.InputError` naming the tensor: that is a wiring bug, not a sensor glitch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.runtime.errors import InputError
from deploy.runtime.state import F32, StateSpec, WriteRecord, apply_write


@dataclass(frozen=True)
class ModelSpec:
    d_model: int
    d_action: int
    state: StateSpec


@dataclass
class StepResult:
    """One step's outcome; ``action`` is a view into the runner's buffer (valid until the next step)."""

    action: np.ndarray
    write: bool = False
    gate_prob: float = 0.0
    fallback: str | None = None


def check_tensor(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    """Accept ``value`` shaped ``shape`` or ``shape[1:]`` (batch 1 implied), float32; else InputError."""
    if not isinstance(value, np.ndarray):
        raise InputError(f"{name}: expected a numpy.ndarray, got {type(value).__name__}")
    if value.dtype != F32:
        raise InputError(f"{name}: expected dtype float32, got {value.dtype}")
    if value.shape != shape and value.shape != shape[1:]:
        raise InputError(f"{name}: expected shape {shape} or {shape[1:]}, got {value.shape}")
    return value


class StepRunner:
    """Buffers, checks, fallback and commit; subclasses implement :meth:`_execute` for one backend.

    ``digest`` (a :class:`deploy.runtime.digest.ModelDigest`, set by the backend after verifying the model
    file) identifies the model: the journal records it and refuses a journal written by another model.
    ``model_info`` is what the run record (OUT/run.json) says about the model.
    """

    digest = None
    model_info: dict = {}

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        st = spec.state
        self.features = np.zeros((1, spec.d_model), dtype=F32)
        self.base_action = np.zeros((1, spec.d_action), dtype=F32)
        # Ping-pong: the graph reads states[cur] and writes its new_state into states[1 - cur].
        self.states = [st.zeros(), st.zeros()]
        self.cur = 0
        self.action = np.zeros((1, spec.d_action), dtype=F32)
        self.action_skip = np.zeros((1, spec.d_action), dtype=F32)
        self.write = np.zeros((1,), dtype=np.bool_)
        self.gate_prob = np.zeros((1,), dtype=F32)
        self.record = WriteRecord(st)
        self._scratch = np.empty((st.heads, st.d_key, st.d_val), dtype=F32)
        self._result = StepResult(action=self.action[0])
        self.fallbacks = 0

    # -- backend hook ----------------------------------------------------------------------------------
    def _execute(self) -> None:
        """Run the graph on ``features``, ``base_action``, ``states[cur]`` into the output buffers."""
        raise NotImplementedError

    # -- public API ------------------------------------------------------------------------------------
    @property
    def model_id(self) -> str | None:
        """sha256 hex identifying the model (None when the backend could not tell)."""
        return None if self.digest is None else self.digest.sha256

    @property
    def state(self) -> np.ndarray:
        """The authoritative state ``[1, H, K+1, V]`` (read-only by convention; use load_state)."""
        return self.states[self.cur]

    def load_state(self, state: np.ndarray) -> None:
        check_tensor("state", state, self.spec.state.shape)
        np.copyto(self.states[self.cur], state.reshape(self.spec.state.shape))

    def step(self, features: np.ndarray, base_action: np.ndarray) -> StepResult:
        """Execute one step; the write it requests is applied only by :meth:`commit`."""
        check_tensor("features", features, self.features.shape)
        check_tensor("base_action", base_action, self.base_action.shape)
        res = self._result
        np.copyto(self.base_action[0], base_action.reshape(-1))
        res.fallback = None
        if not np.isfinite(base_action).all():
            res.fallback = "nonfinite_base_action"
        elif not np.isfinite(features).all():
            res.fallback = "nonfinite_features"
        else:
            np.copyto(self.features[0], features.reshape(-1))
            self._execute()
            if not (np.isfinite(self.action).all() and np.isfinite(self.gate_prob[0])):
                res.fallback = "nonfinite_output"
        if res.fallback is not None:
            self.fallbacks += 1
            np.copyto(self.action, self.base_action)
            res.write, res.gate_prob = False, float("nan")
            return res
        res.write = bool(self.write[0])
        res.gate_prob = float(self.gate_prob[0])
        return res

    def commit(self) -> None:
        """Apply the write requested by the last step to the state (exact numpy update), then swap."""
        nxt = 1 - self.cur
        apply_write(self.states[self.cur], self.record, out=self.states[nxt], scratch=self._scratch)
        self.cur = nxt

    def suppress(self) -> None:
        """Refuse the write requested by the last step: keep the state, act as if no write was made."""
        np.copyto(self.action, self.action_skip)

    def close(self) -> None:
        """Release backend resources (sessions, device memory)."""
