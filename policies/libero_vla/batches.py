"""Training batches of the LIBERO pixel policy, on the device: the demos as tensors, the shift augmentation,
and the normalisation statistics (and action bins) fitted on them. ``train.py`` runs the optimisation.

Data: every frame of every demo (``data.load_demos``) lives on the device as uint8 (an H200 holds ~30 GB of
128-px video easily), and so do the chunk targets; a step gathers a random batch with a random shift
augmentation (DrQ: each image moved by up to ``shift`` px, borders replicated) in one indexing kernel, so no
data-loader process exists.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from policies.libero_vla.bins import fit_bins
from policies.libero_vla.model import LiberoVLANet, proprio_features

__all__ = ["DeviceData", "fit_stats", "shifted"]


def shifted(images: torch.Tensor, idx: torch.Tensor, pad: int, gen) -> torch.Tensor:
    """``images[idx]`` [B, S, S, 3], each moved by an integer (dy, dx) in [-pad, pad]^2, edges replicated."""
    if pad <= 0:
        return images[idx]
    b, s = idx.shape[0], images.shape[1]
    d = torch.randint(-pad, pad + 1, (2, b, 1), device=idx.device, generator=gen)
    ar = torch.arange(s, device=idx.device)[None]
    rows, cols = (ar + d[0]).clamp_(0, s - 1), (ar + d[1]).clamp_(0, s - 1)
    return images[idx[:, None, None], rows[:, :, None], cols[:, None, :]]


class DeviceData:
    """The demos as device tensors, and random augmented batches of them (module docstring)."""

    def __init__(self, demos, chunk: int, tokenizer, device):
        t0 = time.perf_counter()
        self.image = torch.from_numpy(demos.image).to(device)
        self.wrist = torch.from_numpy(demos.wrist_image).to(device)
        self.state = torch.from_numpy(demos.state).to(device)
        targets, valid = demos.chunk_targets(chunk)
        self.target = torch.from_numpy(np.ascontiguousarray(targets)).to(device)
        self.valid = torch.from_numpy(valid).to(device)
        self.tokens = torch.from_numpy(np.stack([tokenizer(t) for t in demos.languages])).to(device)
        self.blank = torch.from_numpy(tokenizer("")).to(device)
        self.task = torch.from_numpy(demos.frame_task).to(device)
        self.n = demos.frames
        self.upload_s = time.perf_counter() - t0

    def batch(self, b: int, shift: int, gen, blank: float = 0.0) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(0, self.n, (b,), device=self.image.device, generator=gen)
        tokens = self.tokens[self.task[idx]]
        if blank > 0:  # drawn only when asked, so runs without it keep their random stream
            drop = torch.rand(b, device=idx.device, generator=gen) < blank
            tokens = torch.where(drop[:, None], self.blank, tokens)
        return (
            shifted(self.image, idx, shift, gen),
            shifted(self.wrist, idx, shift, gen),
            self.state[idx],
            tokens,
            self.target[idx],
            self.valid[idx],
        )


def fit_stats(net: LiberoVLANet, demos) -> None:
    """Normalisation statistics from the demos' labelled frames (floors keep near-constant dims from
    exploding)."""
    feats = proprio_features(torch.from_numpy(demos.state).double())
    act = torch.from_numpy(demos.action[demos.labelled]).double()
    net.set_stats(feats.mean(0), feats.std(0).clamp(min=1e-3), act.mean(0), act.std(0).clamp(min=1e-2))
    if net.config.action_head == "bins":
        net.set_bins(*fit_bins(demos.action[demos.labelled], net.config.action_bins))
