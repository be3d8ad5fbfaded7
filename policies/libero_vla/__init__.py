"""The LIBERO pixel backbone: a small vision-language-action policy trained from scratch, then frozen.

Two cameras (128 px) + 8-d proprio + the instruction (hashed tokens, offline) -> an action chunk of K = 8
(executed by temporal ensembling or open-loop) and the per-step features z_t [256] for AURA's memory.
See docs/libero_vla.md.

* ``LiberoVLAConfig`` (``libero_vla``): the torch backbone from a checkpoint directory.
* ``policies.libero_vla.onnx_backbone.LiberoVLAOnnxConfig``: the same contract on an exported ONNX graph
  through ONNX Runtime, importing no torch.
* ``policies.libero_vla.train``: behaviour cloning on the HDF5 demos of ``aura sim demos``.

This package's ``__init__`` imports no torch, so the ONNX backbone stays torch-free.
"""

from policies.libero_vla.config import LiberoVLAConfig

__all__ = ["LiberoVLAConfig"]
