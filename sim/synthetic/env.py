"""``SyntheticRecallEnv``: the controlled synthetic benchmark as a ``gymnasium.Env``.

Observations are the raw vectors x_t [d_obs]; the frozen random encoder (``make_backbone``) turns them
into features z_t and a constant base action, as a VLA backbone would. The action is 8 logits (one per
symbol). On a query step the reward is 1 if argmax(action) is the latest real event's symbol, else 0;
other steps give 0. An episode is truncated after ``horizon`` steps. ``reset(seed=s)`` plays the stream
``generate(cfg, 1, s)``, so the env and the batch generator produce the same streams.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from policies.random_encoder import RandomEncoderBackbone
from sim.synthetic.config import N_SYMBOLS, SyntheticConfig, get_config
from sim.synthetic.generator import KIND_NAMES, QUERY, encoder_for, generate


def backbone_fields(cfg: SyntheticConfig | str = "hard") -> dict:
    """The registered ``random_encoder`` backbone's fields for ``cfg``: the encoder ``encoder_for(cfg)``."""
    cfg = get_config(cfg) if isinstance(cfg, str) else cfg
    enc = encoder_for(cfg)
    return dict(
        d_obs=enc.d_obs,
        d_model=enc.d_model,
        d_hidden=enc.d_hidden,
        seed=enc.seed,
        gain=enc.gain,
        d_action=N_SYMBOLS,
    )


def make_backbone(cfg: SyntheticConfig | str = "hard") -> RandomEncoderBackbone:
    """observation -> (features [d_model], base action zeros [8]) with the config's frozen encoder."""
    cfg = get_config(cfg) if isinstance(cfg, str) else cfg
    return RandomEncoderBackbone(encoder_for(cfg), N_SYMBOLS)


class SyntheticRecallEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, config: SyntheticConfig | str = "hard", horizon: int | None = None):
        cfg = get_config(config) if isinstance(config, str) else config
        self.cfg = cfg if horizon is None else cfg.replace(horizon=horizon)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.cfg.d_obs,), np.float32)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (N_SYMBOLS,), np.float32)
        self._ep = None
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        stream_seed = seed if seed is not None else int(self.np_random.integers(2**63 - 1))
        self._ep = generate(self.cfg, 1, stream_seed, encode=False)
        self._t = 0
        return self._ep.obs[0, 0].copy(), self._info()

    def step(self, action):
        if self._ep is None:
            raise RuntimeError("SyntheticRecallEnv: call reset() before step()")
        if self._t >= self.cfg.horizon:
            raise RuntimeError("SyntheticRecallEnv: episode is over; call reset()")
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (N_SYMBOLS,):
            raise ValueError(f"SyntheticRecallEnv.step: action must have shape ({N_SYMBOLS},), got {a.shape}")
        t = self._t
        valid = bool(np.isfinite(a).all())  # a non-finite action is never a correct answer
        is_query = self._ep.kind[0, t] == QUERY
        correct = bool(is_query and valid and int(np.argmax(a)) == int(self._ep.target[0, t]))
        self._t += 1
        truncated = self._t >= self.cfg.horizon
        info = self._info(t)
        info.update(query=bool(is_query), correct=correct, invalid_action=not valid)
        obs = self._ep.obs[0, min(self._t, self.cfg.horizon - 1)].copy()
        return obs, float(correct), False, truncated, info

    def _info(self, t: int | None = None) -> dict:
        t = self._t if t is None else t
        ep = self._ep
        return {
            "t": t,
            "kind": KIND_NAMES[int(ep.kind[0, t])],
            "answer": int(ep.answer[0, t]),
            "target": int(ep.target[0, t]),
        }
