"""KV-cache attention arm: every step appends (k_t, v_t); the read is causal softmax attention.

    [q_t; k_t; v_t] = W_qkv z_t
    o_t = sum_{i<=t} softmax_i(s q_t . k_i - lambda (t - i)) v_i,     s = d_key^-1/2
    a_t = a_t^base + W_o o_t                (W_o = 0 at init, like AuraMem's W_c)

with a learned recency slope lambda = softplus(lambda_raw) >= 0 (ALiBi-style) so the latest of similar keys
can win. The cache grows by (d_key + d_val) * 4 B per step (``aura.contract.StateLayout.kv_bytes_per_step``):
256 B at d = 32, 25.6 MB after 100,000 steps. This is the paper's always-write KV baseline.

Two forms with one result: :meth:`KVAttentionArm.forward` over a whole sequence ``[B, T, .]`` (training) and
:meth:`KVAttentionArm.step` one step at a time against a :class:`KVCache` (closed-loop evaluation).
Checkpoints are directories ``model.safetensors`` + ``config.json`` (format ``aura-kv``,
``aura.checkpoint``: no pickle, weights digest checked). A fresh arm has W_o = 0: a_t = a_t^base exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aura.baselines.common import ArmOutput
from aura.checkpoint import (
    CONFIG,
    CheckpointError,
    load_weights,
    read_config,
    recorded_weights_sha256,
    save_checkpoint,
)
from aura.contract import StateLayout
from aura.layer_config import OUTPUTS

CHECKPOINT_FORMAT = "aura-kv"


@dataclass
class KVConfig:
    d_model: int
    d_action: int
    d_key: int = 32
    d_val: int = 32
    output: str = "action"  # what d_action outputs: "action" or "context" (AuraMemConfig.output)

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ValueError(f"KVConfig.output must be one of {OUTPUTS}, got {self.output!r}")
        for f in dataclasses.fields(self):
            if f.name == "output":
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"KVConfig.{f.name} must be a positive int, got {value!r}")

    @property
    def bytes_per_step(self) -> int:
        """(d_key + d_val) * 4: what one append adds to the cache (256 B at 32 x 32)."""
        return StateLayout(1, self.d_key, self.d_val).kv_bytes_per_step


class KVCache:
    """The keys and values appended so far for a batch: ``keys [B, t, K]``, ``vals [B, t, V]``.

    Stored in buffers that double when full, so ``T`` appends cost O(T) copies, not O(T^2)."""

    def __init__(
        self, batch: int, d_key: int, d_val: int, dtype=torch.float32, device=None, capacity: int = 64
    ):
        self._k = torch.zeros(batch, capacity, d_key, dtype=dtype, device=device)
        self._v = torch.zeros(batch, capacity, d_val, dtype=dtype, device=device)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        if self.length == self._k.shape[1]:  # full: double the buffers
            self._k = torch.cat([self._k, torch.zeros_like(self._k)], 1)
            self._v = torch.cat([self._v, torch.zeros_like(self._v)], 1)
        self._k[:, self.length] = k
        self._v[:, self.length] = v
        self.length += 1

    @property
    def keys(self) -> torch.Tensor:
        return self._k[:, : self.length]

    @property
    def vals(self) -> torch.Tensor:
        return self._v[:, : self.length]


class KVAttentionArm(nn.Module):
    def __init__(self, d_model: int, d_action: int, d_key: int = 32, d_val: int = 32, output: str = "action"):
        super().__init__()
        self.config = KVConfig(d_model, d_action, d_key, d_val, output)
        self.d_key, self.d_val = d_key, d_val
        self.qkv = nn.Linear(d_model, 2 * d_key + d_val)
        self.slope_raw = nn.Parameter(torch.tensor(-3.0))
        # The same correction form as AuraMem's head: a fresh arm returns the base action exactly, so
        # training starts from the base policy instead of a random offset on every action.
        self.head = nn.Linear(d_val, d_action, bias=False)
        nn.init.zeros_(self.head.weight)
        self.meta: dict = {}
        self.weights_sha256: str | None = None

    def bytes_at(self, steps: int) -> int:
        """Cache bytes after ``steps`` appends."""
        return steps * self.config.bytes_per_step

    def _qkv(self, z: torch.Tensor):
        return torch.split(self.qkv(z), [self.d_key, self.d_key, self.d_val], dim=-1)

    def forward(self, z: torch.Tensor, base: torch.Tensor) -> ArmOutput:
        """z [B, T, d_model], base [B, T, A] -> actions [B, T, A]; every step writes (appends)."""
        t_len = z.shape[1]
        q, k, v = self._qkv(z)
        scores = q @ k.transpose(1, 2) * self.d_key**-0.5  # [B, T, T]
        pos = torch.arange(t_len, device=z.device, dtype=z.dtype)
        age = pos[:, None] - pos[None, :]
        scores = scores - F.softplus(self.slope_raw) * age
        scores = scores.masked_fill(age < 0, float("-inf"))
        o = torch.softmax(scores, dim=-1) @ v
        write = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        return ArmOutput(base + self.head(o), write)

    def init_cache(self, batch: int = 1, dtype=torch.float32, device=None) -> KVCache:
        return KVCache(batch, self.d_key, self.d_val, dtype=dtype, device=device)

    def step(self, z: torch.Tensor, base: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """One step: append (k_t, v_t) to ``cache`` (in place), read over all t + 1 entries.

        z [B, d_model], base [B, A] -> (a_t [B, A], cache). Equals row t of :meth:`forward` on the same
        sequence (same scores, same slope; up to float rounding of the reductions)."""
        q, k, v = self._qkv(z)
        cache.append(k, v)
        keys, vals = cache.keys, cache.vals  # [B, t+1, K], [B, t+1, V]
        t = cache.length - 1
        age = t - torch.arange(cache.length, device=z.device, dtype=z.dtype)  # t - i
        scores = torch.einsum("bk,bik->bi", q, keys) * self.d_key**-0.5 - F.softplus(self.slope_raw) * age
        o = torch.einsum("bi,biv->bv", torch.softmax(scores, dim=-1), vals)
        return base + self.head(o), cache

    def save(self, path, meta: dict | None = None) -> None:
        """Write ``path/model.safetensors`` and ``path/config.json`` (format ``aura-kv``)."""
        config = dataclasses.asdict(self.config)
        if self.config.output == "action":  # left out: older code loads an action checkpoint unchanged
            del config["output"]
        save_checkpoint(self, config, path, CHECKPOINT_FORMAT, meta)

    @classmethod
    def load(cls, path, map_location: str = "cpu") -> KVAttentionArm:
        """Load a checkpoint directory; raises CheckpointError naming the file on any mismatch."""
        data, meta = read_config(path, CHECKPOINT_FORMAT)
        try:
            config = KVConfig(**data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{Path(path) / CONFIG}: bad config: {exc}") from None
        model = cls(config.d_model, config.d_action, config.d_key, config.d_val, config.output)
        tensors, digest = load_weights(path, model.state_dict(), recorded_weights_sha256(path))
        model.load_state_dict(tensors)
        model.meta, model.weights_sha256 = meta, digest
        return model.to(map_location)
