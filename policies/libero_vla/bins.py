"""The binned action head's bins: per-dimension quantile edges fitted on the training targets, decode, loss.

Why: the expert's actions are multimodal where it decides (the symmetric gripper's yaw target is chosen mod
pi nearest the current yaw, so near-identical images get +1 in some demos and -1 in others). A regression
head (L1 / L2) answers with a value between the modes (~0: the hand stalls); a classifier over bins, decoded
at its most probable bin, commits to one mode (RT-1, OpenVLA).

Bins of dimension d (B = ``action_bins``), from its training targets {a_d} (labelled frames only):

    V_d  = {v : P(a_d = v) >= 1/B}                              atoms (the heaviest (B-1)//2): e.g. the
                                                                gripper's -1 / +1, a rotation saturated at +-1
    E_d  = unique(quantile(a_d, j / B') for j < B'  U  V_d  U  nextafter(V_d, +inf))
                                                                quantile edges, dense where the data is (B' <=
                                                                B the largest with |E_d| <= B - 1), and each
                                                                atom in a bin of its own, [v, v + ulp)
    bin_d(a) = #{e in E_d : e <= a}  in 0 .. |E_d|              (searchsorted right)
    v_d,b    = mean{a_d : bin_d(a_d) = b},  valid_d,b = (that set is non-empty)

Duplicate quantiles are merged, so each dimension has at most B bins (the gripper 2); the edges are padded to
B - 1 with ``PAD_EDGE`` (finite: a checkpoint holds no inf) and the padded / empty bins are invalid: masked
out of the loss's softmax and never decoded. A head predicts logits l [K, 7, B];

    loss   = sum_{valid (k, d)} CE(l[k, d] over valid bins, bin_d(a_t+k,d)) / (7 |{k valid}|)
    decode = a[k, d] = v_d,b*  with b* = argmax_{b: valid_d,b} l[k, d, b]

(the same masks as the L1 loss: past a demo's end and NaN labels of 'unlabelled' files). The fitted tensors
are buffers of the network (``LiberoVLANet.set_bins``), so checkpoints and the ONNX graph carry them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

PAD_EDGE = 1e30  # above any action: no target ever reaches a padded bin
MASKED_LOGIT = -1e4  # an invalid bin's logit in the decode's argmax and in the loss


class Bins(NamedTuple):
    edges: np.ndarray  # [D, B-1] float32, sorted, padded with PAD_EDGE
    values: np.ndarray  # [D, B] float32, the mean target of each bin (0 where empty)
    valid: np.ndarray  # [D, B] float32, 1 where a bin holds training targets

    def counts(self) -> list[int]:
        """Distinct (valid) bins per dimension."""
        return [int(v) for v in self.valid.sum(1)]


def atoms(a: np.ndarray, n_bins: int) -> np.ndarray:
    """Values of ``a`` holding >= 1/B of its mass, the heaviest (B-1)//2 of them, sorted (float32)."""
    uniq, count = np.unique(a, return_counts=True)
    heavy = np.flatnonzero(count * n_bins >= len(a))
    heavy = heavy[np.argsort(-count[heavy], kind="stable")][: (n_bins - 1) // 2]
    return np.sort(uniq[heavy])


def dim_edges(a: np.ndarray, n_bins: int) -> np.ndarray:
    """Sorted float32 edges of one dimension's targets ``a`` (module docstring), at most ``n_bins - 1``."""
    a = np.asarray(a, np.float32)
    v = atoms(a, n_bins)
    own = np.concatenate([v, np.nextafter(v, np.float32(np.inf))])  # [v, v + ulp): the atom's own bin
    for b in range(n_bins, 0, -1):  # the finest quantile grid that fits beside the atoms' edges
        q = np.quantile(a, np.arange(1, b) / b).astype(np.float32)
        edges = np.unique(np.concatenate([q, own]))
        if len(edges) <= n_bins - 1:
            return edges
    raise AssertionError("unreachable: at most (B-1)//2 atoms, two edges each")


def fit_bins(actions: np.ndarray, n_bins: int) -> Bins:
    """Bins of each column of ``actions`` [N, D] (finite: the labelled frames); module docstring."""
    actions = np.asarray(actions, np.float32)
    if n_bins < 2:
        raise ValueError(f"action_bins must be >= 2, got {n_bins}")
    if actions.ndim != 2 or len(actions) == 0 or not np.isfinite(actions).all():
        raise ValueError(f"bins need finite targets [N, D] with N >= 1, got {actions.shape}")
    d = actions.shape[1]
    edges = np.full((d, n_bins - 1), PAD_EDGE, np.float32)
    values = np.zeros((d, n_bins), np.float32)
    valid = np.zeros((d, n_bins), np.float32)
    for j in range(d):
        e = dim_edges(actions[:, j], n_bins)
        edges[j, : len(e)] = e
        idx = np.searchsorted(e, actions[:, j], side="right")
        count = np.bincount(idx, minlength=n_bins)
        total = np.bincount(idx, weights=actions[:, j].astype(np.float64), minlength=n_bins)
        values[j] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        valid[j] = count > 0
    return Bins(edges, values, valid)


def bin_index(target: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """[..., D] targets -> [..., D] int64 bin indices, #{edges_d <= target_d} (``edges`` [D, B-1])."""
    return (target.unsqueeze(-1) >= edges).sum(-1)


def masked_logits(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[..., D, B] logits with the invalid bins (``valid`` [D, B] == 0) at ``MASKED_LOGIT``, >= float32."""
    return torch.where(valid > 0, logits.to(torch.promote_types(logits.dtype, torch.float32)), MASKED_LOGIT)


def decode(logits: torch.Tensor, values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[..., D, B] logits -> [..., D] actions: the value of each (…, d)'s most probable valid bin."""
    idx = masked_logits(logits, valid).argmax(-1, keepdim=True)
    return torch.gather(values.expand(logits.shape), -1, idx).squeeze(-1)


def bins_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, edges, valid) -> torch.Tensor:
    """Cross-entropy of each target's bin, averaged over the unmasked (chunk step, dimension) pairs.

    ``logits`` [N, K, D, B], ``target`` [N, K, D] (raw actions), ``mask`` [N, K] (1 = supervised).
    """
    d, b = logits.shape[-2:]
    ce = F.cross_entropy(
        masked_logits(logits, valid).reshape(-1, b), bin_index(target, edges).reshape(-1), reduction="none"
    ).view(mask.shape + (d,))
    return (ce * mask[..., None]).sum() / (mask.sum() * d).clamp(min=1)
