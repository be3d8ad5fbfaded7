"""The LIBERO pixel policy network: a language-FiLM'd narrow ResNet on two cameras, MLP trunk, chunk head.

Per step, with both 128-px cameras, the 8-d proprio s and the instruction's hashed ids (``text.py``):

    l      = LN(W_2 GELU(W_1 mean_{j: id_j > 0} E[id_j]))                     text embedding [d_text]
    c_v    = [l ; e_v]                                  FiLM condition of camera v (e_v: learned camera id)
    F_v    = ResNet_c_v(x_v / 127.5 - 1)                 shared 4-stage ResNet-18-style CNN, GroupNorm,
                                                          each residual block's 2nd norm FiLM'd:
                                                          h <- GN(h) (1 + gamma_b(c_v)) + beta_b(c_v)
    f_v    = LN(U_v flatten(ReLU(GN(conv1x1(F_v)))))       per-camera projection, keeps the spatial layout
    p      = MLP((pos, R(aa)[:, :2], grip) - mu) / sigma)   proprio; R(aa) = the rotation matrix of the
                                                          axis-angle (continuous where aa flips at pi)
    z_t    = LN(MLP([f_agentview ; f_wrist ; p ; l]))     the per-step features for the memory [d_model]
    A_t    = mu_a + sigma_a (H z_t)                        the action chunk [K, 7], L1-trained
                                                          (``action_head="l1"``, the default), or
    L_t    = H z_t,  A_t[k, d] = v_d,argmax_b L_t[k, d, b]   ``action_head="bins"``: logits [K, 7, B] over
                                                          per-dimension quantile bins, cross-entropy-
                                                          trained, decoded at the most probable bin
                                                          (``bins.py``: edges, values v, the loss)

The CNN is shared by both cameras (BAKU) and told which camera it is looking at through c_v; gamma, beta
start at 0 (identity FiLM). Normalisation statistics (mu, sigma of the proprio features and of the actions)
and the bins (edges, values, which bins are valid) are buffers fitted on the training demos, so checkpoints
and the ONNX graph carry them. The bins head exists only with ``action_head="bins"``: an "l1" network has
exactly the tensors it always had, so older checkpoints (whose config has no ``action_head``) load as "l1".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from policies.libero_vla.bins import decode
from policies.libero_vla.runtime import D_STATE, NetInterface
from policies.libero_vla.text import HashTokenizer

D_PROPRIO_FEATURES = 11  # position 3, first two rotation-matrix columns 6, gripper fingers 2
ACTION_HEADS = ("l1", "bins")


@dataclass
class ModelConfig:
    """Architecture (module docstring). Defaults: ~6.3 M parameters, d_model 256, K = 8."""

    image_size: int = 128
    widths: tuple[int, ...] = (32, 64, 128, 256)
    strides: tuple[int, ...] = (1, 2, 2, 2)  # after the stem's /4: 32, 16, 8, 4 px maps at 128 px input
    blocks: int = 2
    groups: int = 8
    d_spatial: int = 128
    d_camera: int = 256
    d_cam_id: int = 16
    d_text: int = 128
    d_proprio: int = 64
    d_hidden: int = 512
    d_model: int = 256
    chunk: int = 8
    d_action: int = 7
    dropout: float = 0.1
    buckets: int = 4096
    max_tokens: int = 128
    ngram: int = 3
    action_head: str = "l1"  # "l1": regression of the normalised chunk; "bins": logits over action bins
    action_bins: int = 64  # B, bins per action dimension (fewer where the data has fewer distinct values)

    def __post_init__(self) -> None:
        if self.action_head not in ACTION_HEADS:
            raise ValueError(f"action_head must be one of {ACTION_HEADS}, got {self.action_head!r}")
        if int(self.action_bins) < 2:
            raise ValueError(f"action_bins must be >= 2, got {self.action_bins}")
        self.action_bins = int(self.action_bins)
        self.widths, self.strides = tuple(int(w) for w in self.widths), tuple(int(s) for s in self.strides)
        if len(self.widths) != len(self.strides) or not self.widths:
            raise ValueError(f"widths {self.widths} and strides {self.strides} must have the same length")
        if any(w % self.groups for w in (*self.widths, self.d_spatial)):
            raise ValueError(f"every width must be divisible by groups={self.groups}")
        if self.image_size % 4 or self.image_size < 32:
            raise ValueError(f"image_size must be a multiple of 4 and >= 32, got {self.image_size}")

    @property
    def map_size(self) -> int:
        s = self.image_size // 4
        for st in self.strides:
            s = (s + st - 1) // st
        return s

    @property
    def head_outputs(self) -> int:
        """Outputs of the head per (chunk step, action dimension): 1 (l1) or B logits (bins)."""
        return self.action_bins if self.action_head == "bins" else 1

    def tokenizer(self) -> HashTokenizer:
        return HashTokenizer(self.buckets, self.max_tokens, self.ngram)

    def interface(self) -> NetInterface:
        return NetInterface(self.d_model, self.chunk, self.d_action, self.image_size, self.tokenizer())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["strides"] = list(self.widths), list(self.strides)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model field(s) {unknown}")
        return cls(**data)


def rotation_6d(aa: torch.Tensor) -> torch.Tensor:
    """First two columns of R = I + a K + b K^2 (Rodrigues), K = [aa]_x, a = sin t / t, b = (1 - cos t) / t^2.

    ``aa`` [..., 3] -> [..., 6]. Continuous in the rotation (aa = +-pi u is one rotation), unlike aa itself.
    """
    x, y, z = aa.unbind(-1)
    t2 = x * x + y * y + z * z
    t = torch.sqrt(t2 + 1e-12)
    a = torch.sin(t) / t
    b = (1.0 - torch.cos(t)) / (t2 + 1e-12)
    # K^2 = aa aa^T - t^2 I; columns 0 and 1 of R:
    r00, r10, r20 = 1 + b * (x * x - t2), a * z + b * x * y, -a * y + b * x * z
    r01, r11, r21 = -a * z + b * x * y, 1 + b * (y * y - t2), a * x + b * y * z
    return torch.stack([r00, r10, r20, r01, r11, r21], dim=-1)


def proprio_features(state: torch.Tensor) -> torch.Tensor:
    """[..., 8] (pos 3, axis-angle 3, gripper 2) -> [..., 11] (pos, rotation 6-d, gripper)."""
    return torch.cat([state[..., :3], rotation_6d(state[..., 3:6]), state[..., 6:8]], dim=-1)


def group_norm_two_pass(
    x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """GroupNorm with two-pass float32 statistics: mu_g = mean(x_g), then var_g = mean((x_g - mu_g)^2);
    y = (x - mu_g) / sqrt(var_g + eps) * weight + bias. The naive twin of ``F.group_norm``."""
    dt = torch.promote_types(x.dtype, torch.float32)  # bf16 / fp16 / fp32 -> fp32; a float64 copy stays
    xf = x.to(dt).reshape(x.shape[0], groups, -1)
    mean = xf.mean(-1, keepdim=True)
    var = (xf - mean).square().mean(-1, keepdim=True)
    y = ((xf - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return y * weight.to(dt).reshape(shape) + bias.to(dt).reshape(shape)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm``, two-pass on the CPU (``group_norm_two_pass``), torch's fused kernel elsewhere.

    Same parameters and function. On the CPU, torch's fused kernel accumulates the variance in one pass,
    which on some LIBERO frames put the eager network ~1.6e-4 from a float64 copy (ONNX Runtime's
    decomposition: ~1.5e-5), more than the export's 1e-4 parity budget; export and CPU inference run there.
    On CUDA the fused (Welford) kernel is kept for training speed: with the unfused two-pass version (a
    float32 copy, channels-last inputs regrouped, five kernels) a training step took 66.4 ms on the H100,
    with the fused one 39.9 ms (batch 512; docs/libero_vla.md).
    Returns float32, as GroupNorm does under autocast.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            return group_norm_two_pass(x, self.num_groups, self.weight, self.bias, self.eps)
        dt = torch.promote_types(x.dtype, torch.float32)
        return F.group_norm(x.to(dt), self.num_groups, self.weight.to(dt), self.bias.to(dt), self.eps)


class FiLMBlock(nn.Module):
    """ResNet basic block; the second GroupNorm's output is FiLM'd by the condition (module docstring)."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, d_cond: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.gn1 = GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.gn2 = GroupNorm(groups, c_out)
        self.film = nn.Linear(d_cond, 2 * c_out)
        nn.init.zeros_(self.film.weight)  # identity FiLM at init
        nn.init.zeros_(self.film.bias)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), GroupNorm(groups, c_out))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # Under bf16 autocast GroupNorm runs (and returns) float32; casting back to the conv's dtype keeps the
        # elementwise tail in bf16 (half the memory traffic). Without autocast both casts are no-ops.
        c = self.conv1(x)
        h = F.relu(self.gn1(c).to(c.dtype))
        c = self.conv2(h)
        h = self.gn2(c).to(c.dtype)
        gamma, beta = self.film(cond).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + gamma) + beta
        return F.relu(h + (x if self.down is None else self.down(x)))


class Encoder(nn.Module):
    """uint8 [B, S, S, 3] images + condition [B, d_cond] -> feature map [B, C, m, m] (module docstring)."""

    def __init__(self, cfg: ModelConfig, d_cond: int):
        super().__init__()
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 5, 2, 2, bias=False),
            GroupNorm(cfg.groups, w0),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, c = [], w0
        for w, s in zip(cfg.widths, cfg.strides):
            for i in range(cfg.blocks):
                blocks.append(FiLMBlock(c, w, s if i == 0 else 1, cfg.groups, d_cond))
                c = w
        self.blocks = nn.ModuleList(blocks)

    def forward(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # HWC uint8 -> NCHW float in [-1, 1]; the permute leaves a channels-last layout, which convs like.
        x = images.permute(0, 3, 1, 2).to(self.stem[0].weight.dtype) * (1.0 / 127.5) - 1.0
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, cond)
        return x


class LiberoVLANet(nn.Module):
    """(image, wrist_image, state, tokens) -> (features [B, d_model], actions [B, K, d_action])."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.buckets, cfg.d_text, padding_idx=0)
        self.text = nn.Sequential(
            nn.Linear(cfg.d_text, cfg.d_text),
            nn.GELU(),
            nn.Linear(cfg.d_text, cfg.d_text),
            nn.LayerNorm(cfg.d_text),
        )
        self.cam_id = nn.Parameter(torch.randn(2, cfg.d_cam_id) * 0.5)
        self.encoder = Encoder(cfg, cfg.d_text + cfg.d_cam_id)
        c, m = cfg.widths[-1], cfg.map_size
        self.spatial = nn.Sequential(
            nn.Conv2d(c, cfg.d_spatial, 1, bias=False), GroupNorm(cfg.groups, cfg.d_spatial), nn.ReLU()
        )
        self.cam_proj = nn.ModuleList(
            nn.Sequential(nn.Linear(cfg.d_spatial * m * m, cfg.d_camera), nn.LayerNorm(cfg.d_camera))
            for _ in (0, 1)
        )
        self.proprio = nn.Sequential(
            nn.Linear(D_PROPRIO_FEATURES, cfg.d_proprio), nn.GELU(), nn.Linear(cfg.d_proprio, cfg.d_proprio)
        )
        d_in = 2 * cfg.d_camera + cfg.d_proprio + cfg.d_text
        self.trunk = nn.Sequential(
            nn.Linear(d_in, cfg.d_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d_hidden, cfg.d_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d_hidden, cfg.d_model),
            nn.LayerNorm(cfg.d_model),
        )
        self.head = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_hidden),
            nn.GELU(),
            nn.Linear(cfg.d_hidden, cfg.chunk * cfg.d_action * cfg.head_outputs),
        )
        nn.init.normal_(self.head[-1].weight, std=1e-3)
        nn.init.zeros_(self.head[-1].bias)
        for name, n in (("proprio", D_PROPRIO_FEATURES), ("action", cfg.d_action)):
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_scale", torch.ones(n))
        if cfg.action_head == "bins":  # bins.py; uniform placeholders until set_bins (train.py)
            b = cfg.action_bins
            self.register_buffer("bin_edges", torch.linspace(-1, 1, b + 1)[1:-1].repeat(cfg.d_action, 1))
            self.register_buffer("bin_values", torch.linspace(-1, 1, b).repeat(cfg.d_action, 1))
            self.register_buffer("bin_valid", torch.ones(cfg.d_action, b))

    def set_stats(self, proprio_mean, proprio_scale, action_mean, action_scale) -> None:
        """Normalisation statistics (fitted on the training demos by ``train.py``)."""
        for name, v in zip(
            ("proprio_mean", "proprio_scale", "action_mean", "action_scale"),
            (proprio_mean, proprio_scale, action_mean, action_scale),
        ):
            getattr(self, name).copy_(torch.as_tensor(v, dtype=torch.float32))

    def set_bins(self, edges, values, valid) -> None:
        """The bins head's edges [7, B-1], values [7, B] and valid mask [7, B] (``bins.fit_bins``)."""
        for name, v in (("bin_edges", edges), ("bin_values", values), ("bin_valid", valid)):
            getattr(self, name).copy_(torch.as_tensor(v, dtype=torch.float32))

    def text_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens > 0).to(self.embed.weight.dtype)
        bag = (self.embed(tokens) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.text(bag)

    def encode(self, image, wrist_image, state, tokens, proprio_noise: float = 0.0, context=None):
        """(features [B, d_model], head output): the normalised chunk [B, K, d_action] ("l1") or the logits
        [B, K, d_action, action_bins] ("bins"); noise only for training. ``context`` [B, d_text], when given,
        is used as l in place of the tokens' text embedding (a memory's restored instruction)."""
        b = image.shape[0]
        text = self.text_embedding(tokens) if context is None else context.to(self.embed.weight.dtype)
        cams = self.cam_id[:, None, :].expand(2, b, -1).reshape(2 * b, -1)
        cond = torch.cat([text.repeat(2, 1), cams], dim=1)
        fmap = self.spatial(self.encoder(torch.cat([image, wrist_image], dim=0), cond))
        flat = fmap.flatten(1)
        f_a, f_w = self.cam_proj[0](flat[:b]), self.cam_proj[1](flat[b:])
        p = (proprio_features(state.to(self.proprio_mean.dtype)) - self.proprio_mean) / self.proprio_scale
        if proprio_noise > 0:
            p = p + proprio_noise * torch.randn_like(p)
        z = self.trunk(torch.cat([f_a, f_w, self.proprio(p), text], dim=1))
        cfg = self.config
        if cfg.action_head == "l1":
            return z, self.head(z).view(b, cfg.chunk, cfg.d_action)
        return z, self.head(z).view(b, cfg.chunk, cfg.d_action, cfg.action_bins)

    def forward(self, image, wrist_image, state, tokens, return_logits: bool = False, context=None):
        """(features, actions [B, K, d_action]); with ``return_logits`` (bins head only) also the logits
        [B, K, d_action, B] (raw: the decode masks the invalid bins); ``context``: as in :meth:`encode`."""
        z, out = self.encode(image, wrist_image, state, tokens, context=context)
        if self.config.action_head == "l1":
            if return_logits:
                raise ValueError("return_logits: the 'l1' action head has no logits")
            return z, out * self.action_scale + self.action_mean
        actions = decode(out, self.bin_values, self.bin_valid)
        return (z, actions, out) if return_logits else (z, actions)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def example_inputs(cfg: ModelConfig, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the graph's shapes (uint8 images, state, token ids)."""
    g = torch.Generator().manual_seed(seed)
    s = cfg.image_size
    img = torch.randint(0, 256, (batch, s, s, 3), generator=g, dtype=torch.uint8)
    wrist = torch.randint(0, 256, (batch, s, s, 3), generator=g, dtype=torch.uint8)
    state = torch.randn(batch, D_STATE, generator=g)
    tokens = torch.randint(0, cfg.buckets, (batch, cfg.max_tokens), generator=g)
    return img, wrist, state, tokens
