"""The ``noise`` backbone: the identity on observations that already are ``(features, base_action)``.

It pairs with the numpy noise robot (``deploy.runtime.robots.NoiseRobot``), whose observation is its own
AR(1) features and linear base action, so the runtime can be driven and measured without any model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.backbone import BackboneSpec


class NoiseBackbone:
    """``(features, base_action) -> (features, base_action)``; no camera, no state, no language."""

    def __init__(self, d_model: int, d_action: int):
        self.spec = BackboneSpec(d_model=d_model, d_action=d_action)

    def reset(self) -> None:
        pass

    def __call__(self, observation: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return observation


@dataclass
class NoiseConfig:
    d_model: int
    d_action: int

    def build(self) -> NoiseBackbone:
        return NoiseBackbone(self.d_model, self.d_action)


__all__ = ["NoiseBackbone", "NoiseConfig"]
