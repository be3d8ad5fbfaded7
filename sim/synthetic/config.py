"""Configurations of the controlled synthetic benchmark (``easy``, ``hard``).

Each step shows one of four kinds of observation, drawn independently per step:

| kind | x_t holds | answer |
|---|---|---|
| real event (``event_rate``; always at t = 0) | symbol one-hot + event marker | becomes a new symbol |
| distractor (``distractor_rate``) | symbol one-hot + distractor marker | must not change |
| query (rate ``query_rate``) | query marker | action must be the latest real event's symbol |
| background (the rest) | nothing | - |

x_t = [symbol part (8) | marker (4) | nuisance (``d_nuisance``)] + Gaussian noise: ``symbol_noise`` on the
symbol part, ``marker_noise`` on the marker, unit * ``nuisance_scale`` on the nuisance dims. The distractor
marker is at angle ``distractor_angle_deg`` from the event marker (90 = orthogonal; smaller = closer).
The frozen random encoder (``policies.random_encoder``) maps x_t to the features z_t [d_model].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

N_SYMBOLS = 8
D_MARKER = 4


@dataclass(frozen=True)
class SyntheticConfig:
    name: str = "custom"
    horizon: int = 128
    event_rate: float = 0.06
    distractor_rate: float = 0.06
    query_rate: float = 0.08
    symbol_amp: float = 1.0
    symbol_noise: float = 0.15
    marker_amp: float = 2.0
    marker_noise: float = 0.2
    distractor_angle_deg: float = 90.0
    d_nuisance: int = 8
    nuisance_scale: float = 0.5
    d_model: int = 64
    d_hidden: int = 128
    encoder_seed: int = 0

    def __post_init__(self):
        if not isinstance(self.horizon, int) or self.horizon < 2:
            raise ValueError(f"SyntheticConfig.horizon must be an int >= 2, got {self.horizon!r}")
        rates = (self.event_rate, self.distractor_rate, self.query_rate)
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError(f"SyntheticConfig: rates {rates} must be >= 0 and sum to <= 1")
        for name in ("symbol_noise", "marker_noise", "nuisance_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"SyntheticConfig.{name} must be >= 0")
        if not 0 <= self.distractor_angle_deg <= 180:
            raise ValueError("SyntheticConfig.distractor_angle_deg must be in [0, 180]")

    @property
    def d_obs(self) -> int:
        return N_SYMBOLS + D_MARKER + self.d_nuisance

    def replace(self, **changes) -> SyntheticConfig:
        return dataclasses.replace(self, **changes)


CONFIGS: dict[str, SyntheticConfig] = {
    # Clean symbols, distractors orthogonal to events: near-saturated.
    "easy": SyntheticConfig(
        name="easy", horizon=96, event_rate=0.06, distractor_rate=0.06, query_rate=0.08,
        symbol_noise=0.15, marker_noise=0.2, distractor_angle_deg=90.0,
    ),
    # Noisier symbols (single-shot Bayes accuracy below 1), distractors closer to events and more of them,
    # rarer events over a longer horizon (longer event-to-query delays).
    "hard": SyntheticConfig(
        name="hard", horizon=128, event_rate=0.04, distractor_rate=0.10, query_rate=0.08,
        symbol_noise=0.35, marker_noise=0.3, distractor_angle_deg=45.0,
    ),
}  # fmt: skip


def get_config(name: str, horizon: int | None = None) -> SyntheticConfig:
    if name not in CONFIGS:
        raise ValueError(f"--config must be one of {sorted(CONFIGS)}, got {name!r}")
    cfg = CONFIGS[name]
    return cfg if horizon is None else cfg.replace(horizon=horizon)
