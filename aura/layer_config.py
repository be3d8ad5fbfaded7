"""AuraMemConfig: the configuration of ``aura.layer.AuraMem``, its validation and JSON form, and the
deployable state's layout and size derived from it.

The options (rule, gate threshold and estimator, norm guard, read-out) are what ``aura/layer.py``'s module
docstring describes; a checkpoint's config.json holds ``to_dict()`` (``aura.checkpoint``). Kept apart from
the layer so the configuration can be read and checked without building a module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from aura.contract import RULES, StateLayout
from aura.readout import READOUTS

ESTIMATORS = ("st", "gumbel")
READOUT_HIDDEN = 128
OUTPUTS = ("action", "context")
__all__ = ["ESTIMATORS", "OUTPUTS", "READOUT_HIDDEN", "AuraMemConfig"]


@dataclass
class AuraMemConfig:
    d_model: int
    d_key: int = 32
    d_val: int = 32
    d_action: int = 7
    heads: int = 1
    rule: str = "gdn2"
    threshold: float = 0.5  # tau: write iff p_t > tau at inference
    estimator: str = "st"  # training: "st" straight-through on p > tau; "gumbel": logistic noise first
    # Training only: while the gate trains, each sequence and step draws its threshold from
    # tau + U(-m, m), m = train_margin, so a write the loss needs is only sure with p_t > tau + m and a
    # harmful one only sure to be skipped with p_t < tau - m: inputs the gate has not seen get that much room
    # at inference (p_t > tau). Why: with straight-through a kept write's own gradient vanishes once the
    # read-out fits it, so the write cost alone pulls p_t down to tau (docs/layer.md, "The gate's margin").
    train_margin: float = 0.0
    gate_hidden: int = 16
    gate_z_features: int = 8
    # Norm guard on each head's S after a write (aura/memory/guard.py: GDN-2 alone gives no bound; an
    # adversarial input cycle grows ||S|| by 1.118x per step). None disables it. The runtime may rely on
    # ||S_t||_F <= max_state_norm (up to fp32 rounding) for every head and step.
    max_state_norm: float | None = 1.0e4
    # The action's read-out (aura/readout.py): "linear" a^base + W_c r (the paper's), "mlp" adds
    # W_2 GELU(W_1 [z; r] + b_1) + b_2 with readout_hidden units. The gate's move signals read W_c only.
    readout: str = "linear"
    readout_hidden: int = READOUT_HIDDEN
    # What the read-out's d_action outputs are (docs/layer.md): "action", a_t = a^base + correction (the
    # paper's), or "context", c-hat_t = c_t + correction, the conditioning vector a frozen backbone acts on
    # (policies.backbone's d_context); AuraMem computes the same either way, its user feeds the output on.
    output: str = "action"

    def __post_init__(self):
        for name in ("d_model", "d_key", "d_val", "d_action", "heads", "gate_hidden", "readout_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AuraMemConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.gate_z_features, int) or self.gate_z_features < 0:
            raise ValueError(
                f"AuraMemConfig.gate_z_features must be an int >= 0, got {self.gate_z_features!r}"
            )
        if self.max_state_norm is not None:
            if not (isinstance(self.max_state_norm, (int, float)) and 0 < self.max_state_norm < math.inf):
                raise ValueError(
                    f"AuraMemConfig.max_state_norm must be a positive finite float or None, "
                    f"got {self.max_state_norm!r}"
                )
            self.max_state_norm = float(self.max_state_norm)
        if self.rule not in RULES:
            raise ValueError(f"AuraMemConfig.rule must be one of {RULES}, got {self.rule!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"AuraMemConfig.readout must be one of {READOUTS}, got {self.readout!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"AuraMemConfig.output must be one of {OUTPUTS}, got {self.output!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"AuraMemConfig.estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.0 < float(self.threshold) < 1.0):
            raise ValueError(f"AuraMemConfig.threshold must be in (0, 1), got {self.threshold!r}")
        self.threshold = float(self.threshold)
        m, room = self.train_margin, min(self.threshold, 1.0 - self.threshold)
        if not (isinstance(m, (int, float)) and not isinstance(m, bool) and 0.0 <= m < room):
            raise ValueError(
                f"AuraMemConfig.train_margin must be in [0, min(tau, 1 - tau)) = [0, {room:g}), got {m!r}"
            )
        self.train_margin = float(m)

    def to_dict(self) -> dict:
        """The fields as JSON. A default (linear) read-out is left out, so such a checkpoint's config.json
        is the same as before the option existed (older code loads it); a missing field loads as linear. The
        default output ("action") is left out the same way."""
        d = dataclasses.asdict(self)
        if self.readout == "linear" and self.readout_hidden == READOUT_HIDDEN:
            del d["readout"], d["readout_hidden"]
        if self.output == "action":  # likewise: older code loads an action-output checkpoint unchanged
            del d["output"]
        if self.train_margin == 0.0:  # and a checkpoint trained without a margin
            del d["train_margin"]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> AuraMemConfig:
        if not isinstance(data, dict):
            raise ValueError(f"AuraMemConfig must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"AuraMemConfig: unknown field(s) {unknown}")
        return cls(**data)

    @property
    def layout(self) -> StateLayout:
        """The deployable state's layout (``aura.contract``)."""
        return StateLayout(self.heads, self.d_key, self.d_val)

    @property
    def state_shape(self) -> tuple[int, int, int]:
        return self.layout.dims

    @property
    def state_bytes(self) -> int:
        """heads * (d_key * d_val + d_val) * 4: 4,224 at 32 x 32."""
        return self.layout.state_bytes
