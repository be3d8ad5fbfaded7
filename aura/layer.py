"""AuraMem: a constant-size gated-delta memory with an action-surprise write gate around a frozen backbone.

Per step t, from backbone features z_t [B, d_model] and base action a_t^base [B, d_action], per head
(s = d_k^-1/2, l2n(x) = x * rsqrt(sum x^2 + 1e-6)):

    q_t = l2n(W_q z_t),  k_t = l2n(W_k z_t),  v_t = W_v z_t
    g_t = -exp(A_log) * softplus(W_g z_t + dt_bias)   log-decay, alpha_t = exp(g_t) in (0, 1]
    b_t = sigmoid(W_b z_t)  (erase),  w_t = sigmoid(W_w z_t)  (write strength)       [rule "gdn2"]

    candidate   S' = Diag(alpha_t) S_{t-1};  u_t = w_t * v_t - S'^T (b_t * k_t);  S~_t = S' + k_t u_t^T
    gate        p_t = gate(u_t, ..., z_t)  (aura.gate);  write_t = p_t > tau
                (training with train_margin m: p_t > tau + m (2 U_t - 1), U_t ~ U(0, 1) per sequence and step)
    guard       S~_t <- c_t S~_t, c_t = min(1, max_state_norm / ||S~_t||_F) per head (1 below the bound)
    state       (S_t, aux_t) = (S~_t, w_t * v_t) if write_t else (S_{t-1}, aux_{t-1})   (skipped, not * 0)
    read        r_t = S_t^T (s q_t)          (after the optional write; on a skip r_t = S_{t-1}^T s q_t)
    action      a_t = a_t^base + W_c [r_t^1; ...; r_t^H],   W_c = 0 at init, so a fresh AuraMem == backbone
                readout="mlp" adds W_2 GELU(W_1 [z_t ; r_t] + b_1) + b_2 (W_2 = b_2 = 0 at init; aura.readout)

Rules (``rule=``): "gdn2" as above; "kda": b = w = beta_t 1 with beta_t = sigmoid(W_beta z_t) per head;
"gdn": additionally one decay per head; "deltanet": additionally g = 0.

State: ONE float32 tensor [B, H, d_key + 1, d_val]. Rows 0..d_key-1 hold S; row d_key holds aux, the
last value written (w * v of the latest write; 0 before the first). The gate reads it as the novelty
reference ||w_t v_t - aux||, so a write of what was just written looks unsurprising. Size: 4,224 B at
32 x 32, one head.

The step is exportable (torch.onnx dynamo, opset 18): no branching on tensor values, no F.normalize.
Each step also returns the write in factored form (decay, key, delta = u, aux) such that on a write
``S_new = decay[..., :, None] * S + key[..., :, None] * delta[..., None, :]`` bit-exactly (it is how S~ is
computed here) and the aux row becomes ``aux``; a journal can replay a write from 2K + 2V floats per head.

The sequence API ``forward`` runs the same step core over time (the gate reads S_{t-1}, so the gated
recurrence is sequential); see docs/layer.md for what is chunked.

The options above (rule, tau, estimator, train_margin, max_state_norm, readout) are fields of
``AuraMemConfig``, defined in ``aura/layer_config.py`` with the state's layout and size, and re-exported here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aura.checkpoint import (
    CONFIG,
    CheckpointError,
    load_weights,
    read_config,
    recorded_weights_sha256,
    save_checkpoint,
)
from aura.contract import RULES
from aura.gate import SurpriseGate, logistic_noise, straight_through
from aura.layer_config import ESTIMATORS, READOUT_HIDDEN, AuraMemConfig
from aura.memory import gdn2_chunk, gdn2_write
from aura.readout import READOUTS, make_readout

CHECKPOINT_FORMAT = "aura-mem"
# AuraMemConfig and its constants live in aura.layer_config; they stay importable from here.
__all__ = [
    "ESTIMATORS",
    "READOUTS",
    "READOUT_HIDDEN",
    "RULES",
    "AuraMem",
    "AuraMemConfig",
    "CheckpointError",
    "SeqOutput",
    "StepOutput",
]


class Proj(NamedTuple):
    """Per-token projections; leading dims [...] then [H, K] (q, k, g, b) or [H, V] (v, w)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    g: torch.Tensor
    b: torch.Tensor
    w: torch.Tensor


class StepOutput(NamedTuple):
    action: torch.Tensor  # [B, d_action]
    state: torch.Tensor  # [B, H, K+1, V]
    write: torch.Tensor  # [B] bool
    gate_prob: torch.Tensor  # [B]
    decay: torch.Tensor  # [B, H, K]   alpha = exp(g), as applied on a write
    key: torch.Tensor  # [B, H, K]
    delta: torch.Tensor  # [B, H, V]   u
    aux: torch.Tensor  # [B, H, V]   the new auxiliary row on a write


class SeqOutput(NamedTuple):
    action: torch.Tensor  # [B, T, d_action]
    state: torch.Tensor  # [B, H, K+1, V] after the last step
    write: torch.Tensor  # [B, T] bool
    gate_prob: torch.Tensor  # [B, T]
    write_mask: torch.Tensor  # [B, T] float: == write in value; carries the straight-through gradient


def l2n(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-6)


class AuraMem(nn.Module):
    """The memory layer; see the module docstring for the math."""

    def __init__(self, config: AuraMemConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = AuraMemConfig(**kwargs)
        elif kwargs:
            raise ValueError("pass either an AuraMemConfig or keyword arguments, not both")
        self.config = cfg = config
        h, k, v = cfg.heads, cfg.d_key, cfg.d_val
        self.scale = k**-0.5
        # widths of the fused projection: q, k, v, decay, erase, write
        self.n_g = {"gdn2": h * k, "kda": h * k, "gdn": h, "deltanet": 0}[cfg.rule]
        self.n_b = h * k if cfg.rule == "gdn2" else h
        self.n_w = h * v if cfg.rule == "gdn2" else 0
        self.splits = [h * k, h * k, h * v, self.n_g, self.n_b, self.n_w]
        self.proj = nn.Linear(cfg.d_model, sum(self.splits))
        self.A_log = nn.Parameter(torch.zeros(h))
        # softplus(dt_bias) log-uniform in [1e-3, 1e-1]: alpha starts close to 1 (long memory)
        dt = torch.exp(torch.empty(max(self.n_g, 1)).uniform_(math.log(1e-3), math.log(1e-1)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.head = nn.Linear(h * v, cfg.d_action, bias=False)
        nn.init.zeros_(self.head.weight)  # a fresh wrapper returns the base action exactly
        # None for "linear" (so a linear checkpoint holds exactly the weights it always did)
        self.readout = make_readout(cfg.readout, cfg.d_model, h * v, cfg.d_action, cfg.readout_hidden)
        self.gate = SurpriseGate(cfg.d_model, h, cfg.gate_hidden, cfg.gate_z_features)

    # -- pieces ---------------------------------------------------------------------------------
    def init_state(self, batch: int = 1, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """The empty memory: zeros [batch, H, d_key + 1, d_val]."""
        return torch.zeros((batch, *self.config.state_shape), dtype=dtype, device=device)

    def project(self, z: torch.Tensor) -> Proj:
        """Projections of features z [..., d_model]."""
        cfg = self.config
        h, k, v = cfg.heads, cfg.d_key, cfg.d_val
        lead = z.shape[:-1]
        q, kk, vv, f, bb, ww = torch.split(self.proj(z), self.splits, dim=-1)
        q = l2n(q.reshape(*lead, h, k))
        kk = l2n(kk.reshape(*lead, h, k))
        vv = vv.reshape(*lead, h, v)
        if cfg.rule == "deltanet":
            g = torch.zeros_like(kk)
        else:
            a = torch.exp(self.A_log)
            g = -F.softplus(f + self.dt_bias)
            g = g.reshape(*lead, h, -1) * a[:, None]
            g = g.expand(*lead, h, k)
        if cfg.rule == "gdn2":
            b = torch.sigmoid(bb.reshape(*lead, h, k))
            w = torch.sigmoid(ww.reshape(*lead, h, v))
        else:
            beta = torch.sigmoid(bb)[..., None]
            b, w = beta.expand(*lead, h, k), beta.expand(*lead, h, v)
        return Proj(q, kk, vv, g, b, w)

    def read(self, state: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """r = S^T (s q): [B, H, V]."""
        return torch.einsum("bhkv,bhk->bhv", state[:, :, : self.config.d_key], self.scale * q)

    def correction(self, r: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """a_t - a_t^base from the read r [N, H, V] and, for readout "mlp", the features z [N, d_model]."""
        r = r.flatten(1)
        if self.readout is None:
            return self.head(r)
        if z is None:
            raise ValueError("AuraMem.correction: readout 'mlp' needs the features z_t")
        return self.head(r) + self.readout(z, r)

    def candidate(self, p: Proj, state: torch.Tensor):
        """The write that step t would make: (decay, key, delta, aux_new, full new state).

        ``aura.memory.gdn2_write`` is the GDN-2 step in factored form with the norm guard folded into
        (decay, delta), so a journal replay of (decay, key, delta) is bit-exact (the guard's factor is
        exactly 1.0 below ``max_state_norm``).
        """
        kd = self.config.d_key
        decay, delta, s_new = gdn2_write(
            p.k, p.v, p.g, p.b, p.w, state[:, :, :kd], max_norm=self.config.max_state_norm
        )
        wv = p.w * p.v
        return decay, p.k, delta, wv, torch.cat([s_new, wv[:, :, None, :]], dim=2)

    def _core(self, p, zf, base, state, force=None, allowed=None, generator=None, z=None):
        """One step on projections p, gate features zf = gate.z_features(z_t) and features z = z_t (the
        "mlp" read-out's input). -> (StepOutput, mask)."""
        cfg = self.config
        decay, key, delta, wv, new_state = self.candidate(p, state)
        with torch.no_grad():
            d_read = self.read(new_state, p.q) - self.read(state, p.q)
        sig = SurpriseGate.signals(delta, d_read, wv, state[:, :, cfg.d_key], self.head.weight, self.scale)
        logit = self.gate(sig, zf)
        prob = torch.sigmoid(logit)
        train_gate = self.training and force is None
        tau = cfg.threshold
        if train_gate and cfg.train_margin > 0:  # tau + U(-m, m) per sequence and step (AuraMemConfig)
            u = torch.rand(prob.shape, dtype=prob.dtype, device=prob.device, generator=generator)
            tau = cfg.threshold + cfg.train_margin * (2 * u - 1)
        if force is not None:
            write = force.to(torch.bool)
        elif train_gate and cfg.estimator == "gumbel":
            write = torch.sigmoid(logit + logistic_noise(logit.shape, logit, generator)) > tau
        else:
            write = prob > tau
        if allowed is not None:
            write = write & allowed
        if train_gate:
            m = straight_through(prob, write)
            if allowed is not None:
                m = m * allowed.to(m.dtype)
            mb = m[:, None, None, None]
            state_out = mb * new_state + (1 - mb) * state
        else:
            m = write.to(state.dtype)
            state_out = torch.where(write[:, None, None, None], new_state, state)
        action = base + self.correction(self.read(state_out, p.q), z)
        return StepOutput(action, state_out, write, prob, decay, key, delta, wv), m

    # -- public API -----------------------------------------------------------------------------
    def step(self, z: torch.Tensor, base_action: torch.Tensor, state: torch.Tensor) -> StepOutput:
        """One control step: z [B, d_model], base_action [B, d_action], state [B, H, K+1, V]."""
        out, _ = self._core(self.project(z), self.gate.z_features(z), base_action, state, z=z)
        return out

    def forward(
        self,
        z: torch.Tensor,
        base_action: torch.Tensor,
        state: torch.Tensor | None = None,
        schedule: torch.Tensor | None = None,
        max_writes: int | None = None,
        generator: torch.Generator | None = None,
    ) -> SeqOutput:
        """Sequence API: z [B, T, d_model], base_action [B, T, d_action] -> SeqOutput.

        ``schedule`` [B, T] bool overrides the gate's decisions (always-write, oracle, random and
        periodic arms); the gate's probabilities are still reported. ``max_writes`` is a hard per-sequence
        write budget: once spent, later writes are suppressed.
        """
        bsz, t_len, _ = z.shape
        if state is None:
            state = self.init_state(bsz, dtype=z.dtype, device=z.device)
        spent = torch.zeros(bsz, dtype=torch.long, device=z.device)
        actions, writes, probs, masks = [], [], [], []
        if self.training:  # batched projections: faster, and training needs no bit-exactness
            p_all = [x.unbind(1) for x in self.project(z)]
            zf_all = self.gate.z_features(z)
            zf_all = [None] * t_len if zf_all is None else zf_all.unbind(1)
        for t in range(t_len):
            if self.training:
                p, zf = Proj(*(x[t] for x in p_all)), zf_all[t]
            else:
                # Per step, exactly as ``step`` does, so in eval both APIs agree bit for bit (a batched
                # [B*T, D] GEMM may sum in another order than a [B, D] one).
                p, zf = self.project(z[:, t]), self.gate.z_features(z[:, t])
            allowed = None if max_writes is None else spent < max_writes
            force = None if schedule is None else schedule[:, t]
            out, m = self._core(p, zf, base_action[:, t], state, force, allowed, generator, z[:, t])
            state = out.state
            spent = spent + out.write.long()
            actions.append(out.action)
            writes.append(out.write)
            probs.append(out.gate_prob)
            masks.append(m)
        return SeqOutput(
            torch.stack(actions, 1),
            state,
            torch.stack(writes, 1),
            torch.stack(probs, 1),
            torch.stack(masks, 1),
        )

    def forward_fixed(
        self,
        z: torch.Tensor,
        base_action: torch.Tensor,
        schedule: torch.Tensor,
        state: torch.Tensor | None = None,
    ) -> SeqOutput:
        """Sequence API for a write schedule fixed in advance (always-write, oracle, random, periodic).

        Chunkwise: a skipped step is fed to ``aura.memory.gdn2_chunk`` as g = 0, b = 0, w = 0, which is
        the identity update (decay 1, u = 0), so the whole sequence runs in the WY/UT form. Equals
        ``forward(..., schedule=schedule)`` up to float rounding; ``gate_prob`` is not computed (NaN).
        """
        bsz, t_len, _ = z.shape
        kd = self.config.d_key
        if state is None:
            state = self.init_state(bsz, dtype=z.dtype, device=z.device)
        p = self.project(z)
        on = schedule.to(z.dtype)[..., None, None]
        o, s_fin = gdn2_chunk(
            p.q, p.k, p.v, p.g * on, p.b * on, p.w * on, self.scale, state[:, :, :kd], True, validate=False
        )
        # aux = w * v of the last write (the initial aux if none)
        wv = p.w * p.v
        last = torch.where(schedule, torch.arange(t_len, device=z.device), -1).amax(1)
        aux = torch.where(
            (last >= 0)[:, None, None], wv[torch.arange(bsz), last.clamp(min=0)], state[:, :, kd]
        )
        r, flat_z = o.reshape(bsz * t_len, *o.shape[2:]), z.reshape(bsz * t_len, -1)
        action = base_action + self.correction(r, flat_z).reshape(bsz, t_len, -1)
        new_state = torch.cat([s_fin.to(state.dtype), aux[:, :, None]], dim=2)
        nan = torch.full(schedule.shape, float("nan"), dtype=z.dtype, device=z.device)
        return SeqOutput(action, new_state, schedule.to(torch.bool), nan, schedule.to(z.dtype))

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, path, meta: dict | None = None) -> None:
        """Write ``path/model.safetensors`` and ``path/config.json`` with the weights' sha256."""
        save_checkpoint(self, self.config.to_dict(), path, CHECKPOINT_FORMAT, meta)

    @classmethod
    def load(cls, path, map_location: str = "cpu") -> AuraMem:
        """Load a checkpoint directory; raises CheckpointError naming the file on any mismatch.

        The weights are verified against config.json's ``weights_sha256`` when it has one (older
        checkpoints do not); ``model.weights_sha256`` is the file's digest either way.
        """
        data, meta = read_config(path, CHECKPOINT_FORMAT)
        try:
            config = AuraMemConfig.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{Path(path) / CONFIG}: bad config: {exc}") from None
        model = cls(config)
        recorded = recorded_weights_sha256(path)
        tensors, digest = load_weights(path, model.state_dict(), sha256=recorded)
        model.load_state_dict(tensors)
        model.meta = meta
        model.weights_sha256, model.weights_verified = digest, recorded is not None
        model.eval()
        return model.to(map_location)
