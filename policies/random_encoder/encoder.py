"""Numpy random encoder (the spec) and its torch wrapper; see the package docstring for the math."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.backbone import BackboneSpec


class RandomEncoder:
    """z = tanh(x W_1 gain / sqrt(d_obs) + b_1) W_2 / sqrt(d_hidden); float32, deterministic from ``seed``."""

    def __init__(self, d_obs: int, d_model: int, d_hidden: int = 128, seed: int = 0, gain: float = 1.5):
        for name, value in (("d_obs", d_obs), ("d_model", d_model), ("d_hidden", d_hidden)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"RandomEncoder: {name} must be a positive int, got {value!r}")
        self.d_obs, self.d_model, self.d_hidden, self.seed, self.gain = d_obs, d_model, d_hidden, seed, gain
        rng = np.random.default_rng([0x5EED, seed])
        self.w1 = (rng.standard_normal((d_obs, d_hidden)) * gain / np.sqrt(d_obs)).astype(np.float32)
        self.b1 = (rng.standard_normal(d_hidden) * 0.1).astype(np.float32)
        self.w2 = (rng.standard_normal((d_hidden, d_model)) / np.sqrt(d_hidden)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.d_obs:
            raise ValueError(f"RandomEncoder: observation has {x.shape[-1]} features, expected {self.d_obs}")
        lead = x.shape[:-1]
        x2 = x.reshape(
            -1, self.d_obs
        )  # 2-D GEMMs: numpy's stacked (3-D @ 2-D) matmul is far slower (docs/synthetic.md)
        z = np.tanh(x2 @ self.w1 + self.b1) @ self.w2
        return z.astype(np.float32, copy=False).reshape(*lead, self.d_model)


class RandomEncoderBackbone:
    """observation -> (features [d_model], base action [d_action]) for the deploy loop; numpy only."""

    def __init__(self, encoder: RandomEncoder, d_action: int = 8):
        self.encoder = encoder
        self.base_action = np.zeros(d_action, dtype=np.float32)
        self.spec = BackboneSpec(d_model=encoder.d_model, d_action=d_action)

    def reset(self) -> None:
        pass  # stateless

    def __call__(self, observation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.encoder(observation), self.base_action.copy()


@dataclass
class RandomEncoderConfig:
    """The registered ``random_encoder`` backbone (``policies.factory``): encoder sizes and seed."""

    d_obs: int
    d_model: int
    d_hidden: int = 128
    seed: int = 0
    gain: float = 1.5
    d_action: int = 8

    def build(self) -> RandomEncoderBackbone:
        enc = RandomEncoder(self.d_obs, self.d_model, self.d_hidden, seed=self.seed, gain=self.gain)
        return RandomEncoderBackbone(enc, self.d_action)


def TorchRandomEncoder(encoder: RandomEncoder):  # noqa: N802 - a factory that reads like the class it builds
    """A frozen ``torch.nn.Module`` holding ``encoder``'s weights as buffers (same math, torch ops)."""
    import torch

    class _TorchRandomEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w1", torch.from_numpy(encoder.w1.copy()))
            self.register_buffer("b1", torch.from_numpy(encoder.b1.copy()))
            self.register_buffer("w2", torch.from_numpy(encoder.w2.copy()))

        def forward(self, x):
            return torch.tanh(x @ self.w1 + self.b1) @ self.w2

    return _TorchRandomEncoder().eval()
