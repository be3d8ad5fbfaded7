"""Vectorised episode generator: the single source of every synthetic stream (the env replays it).

``generate(cfg, n, seed)`` draws n episodes at once from ``numpy.random.default_rng(seed)``; the gymnasium
env plays ``generate(cfg, 1, seed)`` for the seed it is reset with, so env and generator streams agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from policies.random_encoder import RandomEncoder
from sim.synthetic.config import D_MARKER, N_SYMBOLS, SyntheticConfig

BACKGROUND, EVENT, DISTRACTOR, QUERY = 0, 1, 2, 3
KIND_NAMES = ("background", "event", "distractor", "query")


@dataclass
class Episodes:
    obs: np.ndarray  # [n, T, d_obs] float32, raw observations
    features: np.ndarray  # [n, T, d_model] float32, encoder(obs)
    kind: np.ndarray  # [n, T] int8 (BACKGROUND, EVENT, DISTRACTOR, QUERY)
    shown: np.ndarray  # [n, T] int8: symbol shown on events / distractors, -1 elsewhere
    answer: np.ndarray  # [n, T] int8: symbol of the latest real event (defined at every step)
    target: np.ndarray  # [n, T] int8: answer on query steps, -1 elsewhere

    def target_actions(self) -> np.ndarray:
        """[n, T, 8] one-hot target actions on query steps, NaN elsewhere (the `aura train` format)."""
        out = np.full((*self.target.shape, N_SYMBOLS), np.nan, dtype=np.float32)
        rows, cols = np.nonzero(self.target >= 0)
        out[rows, cols] = 0.0
        out[rows, cols, self.target[rows, cols]] = 1.0
        return out


@lru_cache(maxsize=8)
def encoder_for(cfg: SyntheticConfig) -> RandomEncoder:
    return RandomEncoder(cfg.d_obs, cfg.d_model, cfg.d_hidden, seed=cfg.encoder_seed)


def markers(cfg: SyntheticConfig) -> np.ndarray:
    """[4, D_MARKER] marker vectors for background, event, distractor, query."""
    m = np.zeros((4, D_MARKER), dtype=np.float64)
    theta = np.deg2rad(cfg.distractor_angle_deg)
    m[EVENT, 0] = 1.0
    m[DISTRACTOR, 0], m[DISTRACTOR, 1] = np.cos(theta), np.sin(theta)
    m[QUERY, 2] = 1.0
    return m * cfg.marker_amp


def generate(cfg: SyntheticConfig, n: int, seed: int, encode: bool = True) -> Episodes:
    if n < 1:
        raise ValueError(f"generate: n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    t_len = cfg.horizon
    u = rng.random((n, t_len))
    c1 = cfg.event_rate
    c2 = c1 + cfg.distractor_rate
    c3 = c2 + cfg.query_rate
    kind = np.where(u < c1, EVENT, np.where(u < c2, DISTRACTOR, np.where(u < c3, QUERY, BACKGROUND)))
    kind[:, 0] = EVENT  # the answer is defined from the start
    # A real event always changes the answer: symbol_t = (sum of increments in 1..7) mod 8.
    incr = np.where(kind == EVENT, rng.integers(1, N_SYMBOLS, size=(n, t_len)), 0)
    incr[:, 0] = rng.integers(0, N_SYMBOLS, size=n)
    answer = np.cumsum(incr, axis=1) % N_SYMBOLS
    distract = rng.integers(0, N_SYMBOLS, size=(n, t_len))
    shown = np.where(kind == EVENT, answer, np.where(kind == DISTRACTOR, distract, -1))
    obs = np.zeros((n, t_len, cfg.d_obs))
    rows, cols = np.nonzero(shown >= 0)
    obs[rows, cols, shown[rows, cols]] = cfg.symbol_amp
    obs[..., :N_SYMBOLS] += cfg.symbol_noise * rng.standard_normal((n, t_len, N_SYMBOLS))
    obs[..., N_SYMBOLS : N_SYMBOLS + D_MARKER] = markers(cfg)[kind]
    obs[..., N_SYMBOLS : N_SYMBOLS + D_MARKER] += cfg.marker_noise * rng.standard_normal((n, t_len, D_MARKER))
    obs[..., N_SYMBOLS + D_MARKER :] = cfg.nuisance_scale * rng.standard_normal((n, t_len, cfg.d_nuisance))
    obs = obs.astype(np.float32)
    features = encoder_for(cfg)(obs) if encode else np.zeros((n, t_len, 0), np.float32)
    target = np.where(kind == QUERY, answer, -1)
    i8 = np.int8
    return Episodes(obs, features, kind.astype(i8), shown.astype(i8), answer.astype(i8), target.astype(i8))
