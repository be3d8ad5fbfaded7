"""The frozen torch backbone: a trained :class:`LiberoVLANet` behind ``policies.backbone``'s contract.

Frozen means: every parameter has ``requires_grad=False``, the module is in eval mode (dropout off), and
each call runs under ``torch.no_grad()``; the outputs are numpy float32, so nothing downstream can reach the
weights. The per-call logic (validation, tokens, chunk execution) is :class:`ChunkedBackbone`'s, shared
with the ONNX backbone.
"""

from __future__ import annotations

import numpy as np
import torch

from policies.backbone import BackboneError
from policies.libero_vla.checkpoint import load_checkpoint
from policies.libero_vla.model import LiberoVLANet
from policies.libero_vla.runtime import INPUTS, ChunkedBackbone


def resolve_device(device: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; "cuda" without a GPU is a BackboneError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackboneError("libero_vla: device='cuda' but torch sees no CUDA device (use 'auto' or 'cpu')")
    return torch.device(device)


class TorchBackbone(ChunkedBackbone):
    """``(observation) -> (z_t, a_t)`` with a frozen LiberoVLANet (module docstring)."""

    def __init__(self, net: LiberoVLANet, device: str | torch.device = "cpu", **execution):
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.net = net.to(self.device).eval().requires_grad_(False)
        super().__init__(net.config.interface(), self._infer, **execution)

    @classmethod
    def from_checkpoint(
        cls, checkpoint, device: str = "auto", threads: int = 0, **execution
    ) -> TorchBackbone:
        if threads and threads > 0:
            torch.set_num_threads(int(threads))
        dev = resolve_device(device)
        net, data = load_checkpoint(checkpoint, device=str(dev))
        backbone = cls(net, dev, **execution)
        backbone.checkpoint, backbone.checkpoint_config = str(checkpoint), data
        return backbone

    def _infer(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            args = [torch.from_numpy(inputs[k]).to(self.device, non_blocking=True) for k in INPUTS]
            z, actions = self.net(*args)
        return z.cpu().numpy(), actions.cpu().numpy()
