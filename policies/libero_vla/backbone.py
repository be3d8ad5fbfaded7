"""The frozen torch backbone: a trained :class:`LiberoVLANet` behind ``policies.backbone``'s contract.

Frozen means: every parameter has ``requires_grad=False``, the module is in eval mode (dropout off), and
each call runs under ``torch.no_grad()``; the outputs are numpy float32, so nothing downstream can reach the
weights. The per-call logic (validation, tokens, chunk execution) is :class:`ChunkedBackbone`'s, shared
with the ONNX backbone.
"""

from __future__ import annotations

import dataclasses

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
        # the text embedding l is the network's context (policies.backbone); observation["context"] replaces l
        self.spec = dataclasses.replace(self.spec, d_context=net.config.d_text)
        self._contexts: dict[str, np.ndarray] = {}

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

    def twin(self) -> TorchBackbone:
        """A second backbone on the same frozen network and execution settings, with its own chunk executor
        (one observes, the other acts on a memory's context: ``sim.libero.arms``)."""
        other = TorchBackbone(self.net, self.device, **self.execution)
        other.checkpoint = getattr(self, "checkpoint", None)
        return other

    def context(self, language: str) -> np.ndarray:
        """c = l(language), the network's text embedding of an instruction: float32 [d_text] (cached)."""
        c = self._contexts.get(language)
        if c is None:
            with torch.no_grad():
                tokens = torch.from_numpy(self._tokens(language)).to(self.device)
                c = self.net.text_embedding(tokens)[0].float().cpu().numpy()
            if len(self._contexts) > 1024:
                self._contexts.clear()
            self._contexts[language] = c
        return c.copy()

    def _infer(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            args = [torch.from_numpy(inputs[k]).to(self.device, non_blocking=True) for k in INPUTS]
            context = inputs.get("context")
            if context is not None:
                context = torch.from_numpy(context).to(self.device)
            z, actions = self.net(*args, context=context)
        return z.cpu().numpy(), actions.cpu().numpy()
