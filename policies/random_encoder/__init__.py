"""The frozen random "backbone" of the controlled synthetic benchmark.

Weights are drawn with numpy from a seed, so the same encoder exists with and without torch:

    h = tanh(x W_1 / sqrt(d_obs) * gain + b_1),   z = h W_2 / sqrt(d_hidden)

``RandomEncoder`` is the numpy encoder (used by the torch-free deploy runtime); ``RandomEncoderBackbone``
maps an observation to (features, base action) with a constant base action (the backbone has no memory,
so it cannot know the answer: its action is uniform logits, zeros); ``TorchRandomEncoder`` is a thin
torch wrapper holding the same weights as buffers.
"""

from policies.random_encoder.encoder import (
    RandomEncoder,
    RandomEncoderBackbone,
    RandomEncoderConfig,
    TorchRandomEncoder,
)

__all__ = ["RandomEncoder", "RandomEncoderBackbone", "RandomEncoderConfig", "TorchRandomEncoder"]
