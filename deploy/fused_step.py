"""The whole AuraMem step as two Triton kernels (GPU development machines; imports torch and triton).

Same math as ``aura.layer.AuraMem.step`` (rule "gdn2", one head; s = K^-1/2, l2n(x) = x rsqrt(sum x^2 + eps)):

    kernel 1 (split-K GEMV, ~128 programs): P[j] = z[rows j] @ [W_proj | W_gate_z][rows j] (read once)
    kernel 2 (one program, everything else):
        y = sum_j P[j] + bias;  q, k = l2n(.), v;  b, w = sigmoid(.)
        alpha = exp(-exp(A_log) softplus(f + dt_bias))
        S' = Diag(alpha) S;  u = w*v - S'^T (b*k);  S~ = S' + k u^T;  norm guard folded into (alpha, u)
        signals log(eps + [||u||, s||W_c u||, ||W_c (S~ - S)^T s q||, ||w*v - aux||]) ++ z-view -> MLP -> p
        write = p > tau;  (S, aux) <- (S~, w*v) if write
        a = a_base + W_c S^T s q;  a_skip = a_base + W_c S_old^T s q

The AURA-sized step (d_model 4096, 32 x 32 state) reads ~3.3 MB of weights, ~1 us of H100 bandwidth; the
rest is launch latency, so the point is the kernel count: eager ``AuraMem.step`` launches ~60 kernels.
The naive twin is ``AuraMem.step`` itself; tests/deploy/test_fused_step.py compares both against float64.
Runs under ``TRITON_INTERPRET=1`` on the CPU as well (slowly), which is how the CPU test suite checks it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gemv_partial(z_ptr, w_ptr, p_ptr, N: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr):
    pn = tl.program_id(0)
    pk = tl.program_id(1)
    rk = pk * BK + tl.arange(0, BK)
    rn = pn * BN + tl.arange(0, BN)
    z = tl.load(z_ptr + rk)
    w = tl.load(w_ptr + rk[:, None] * N + rn[None, :])
    tl.store(p_ptr + pk * N + rn, tl.sum(z[:, None] * w, axis=0))


@triton.jit
def _seg(p_ptr, bias_ptr, off: tl.constexpr, KS: tl.constexpr, N: tl.constexpr, W: tl.constexpr):
    """Reduce the split-K partials of output columns off .. off + W and add the bias."""
    ks = tl.arange(0, KS)
    cols = off + tl.arange(0, W)
    part = tl.load(p_ptr + ks[:, None] * N + cols[None, :], cache_modifier=".cg")
    return tl.sum(part, axis=0) + tl.load(bias_ptr + cols)


@triton.jit
def _l2n(x):
    return x * (1.0 / tl.sqrt(tl.sum(x * x, axis=0) + 1e-6))


@triton.jit
def _norm(x):
    return tl.sqrt(tl.sum(x * x, axis=0) + 1e-12)


@triton.jit
def _tail(
    p_ptr,
    bias_ptr,
    state_ptr,
    base_ptr,
    alog_ptr,
    dtb_ptr,
    wc_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    out_state_ptr,
    action_ptr,
    skip_ptr,
    write_ptr,
    prob_ptr,
    decay_ptr,
    key_ptr,
    delta_ptr,
    aux_ptr,
    scale,
    tau,
    max_norm,
    n_act,
    KS: tl.constexpr,
    N: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    A_P: tl.constexpr,
    ZF: tl.constexpr,
    HID: tl.constexpr,
):
    q = _l2n(_seg(p_ptr, bias_ptr, 0, KS, N, K))
    k = _l2n(_seg(p_ptr, bias_ptr, K, KS, N, K))
    v = _seg(p_ptr, bias_ptr, 2 * K, KS, N, V)
    f = _seg(p_ptr, bias_ptr, 2 * K + V, KS, N, K)
    bb = _seg(p_ptr, bias_ptr, 3 * K + V, KS, N, K)
    ww = _seg(p_ptr, bias_ptr, 4 * K + V, KS, N, V)
    zf = _seg(p_ptr, bias_ptr, 4 * K + 2 * V, KS, N, ZF)
    rk = tl.arange(0, K)
    rv = tl.arange(0, V)
    x = f + tl.load(dtb_ptr + rk)
    softplus = tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))
    g = -softplus * tl.exp(tl.load(alog_ptr))
    decay = tl.exp(g)
    b = tl.sigmoid(bb)
    w = tl.sigmoid(ww)
    S = tl.load(state_ptr + rk[:, None] * V + rv[None, :])
    aux = tl.load(state_ptr + K * V + rv)
    s_dec = decay[:, None] * S
    wv = w * v
    delta = wv - tl.sum(s_dec * (b * k)[:, None], axis=0)
    s_new = s_dec + k[:, None] * delta[None, :]
    # norm guard, as in AuraMem.candidate: fold c = min(1, max_norm / ||S~||_F) into (decay, delta) and
    # rebuild S~ from them so the journal record replays it; c == 1 below the bound.
    c = tl.minimum(max_norm / tl.maximum(tl.sqrt(tl.sum(tl.sum(s_new * s_new, axis=1), axis=0)), 1e-30), 1.0)
    decay = decay * c
    delta = delta * c
    s_new = decay[:, None] * S + k[:, None] * delta[None, :]
    sq = scale * q
    read_old = tl.sum(S * sq[:, None], axis=0)
    read_new = tl.sum(s_new * sq[:, None], axis=0)
    ra = tl.arange(0, A_P)
    amask = ra < n_act
    wc = tl.load(wc_ptr + ra[:, None] * V + rv[None, :], mask=amask[:, None], other=0.0)
    err = _norm(delta)
    move_bound = scale * _norm(tl.sum(wc * delta[None, :], axis=1))
    move_now = _norm(tl.sum(wc * (read_new - read_old)[None, :], axis=1))
    novelty = _norm(wv - aux)
    # gate MLP: h = SiLU(W1 [log(sig + eps); zf] + b1), logit = W2 h + b2; W1 is [HID, 4 + ZF]
    rh = tl.arange(0, HID)
    ncol: tl.constexpr = 4 + ZF
    h = tl.load(b1_ptr + rh)
    h += tl.load(w1_ptr + rh * ncol + 0) * tl.log(err + 1e-3)
    h += tl.load(w1_ptr + rh * ncol + 1) * tl.log(move_bound + 1e-3)
    h += tl.load(w1_ptr + rh * ncol + 2) * tl.log(move_now + 1e-3)
    h += tl.load(w1_ptr + rh * ncol + 3) * tl.log(novelty + 1e-3)
    rz = tl.arange(0, ZF)
    w1z = tl.load(w1_ptr + rh[:, None] * ncol + 4 + rz[None, :])
    h += tl.sum(w1z * zf[None, :], axis=1)
    h = h * tl.sigmoid(h)
    logit = tl.sum(tl.load(w2_ptr + rh) * h, axis=0) + tl.load(b2_ptr)
    prob = tl.sigmoid(logit)
    write = prob > tau
    s_out = tl.where(write, s_new, S)
    aux_out = tl.where(write, wv, aux)
    tl.store(out_state_ptr + rk[:, None] * V + rv[None, :], s_out)
    tl.store(out_state_ptr + K * V + rv, aux_out)
    base = tl.load(base_ptr + ra, mask=amask, other=0.0)
    read_out = tl.where(write, read_new, read_old)
    tl.store(action_ptr + ra, base + tl.sum(wc * read_out[None, :], axis=1), mask=amask)
    tl.store(skip_ptr + ra, base + tl.sum(wc * read_old[None, :], axis=1), mask=amask)
    tl.store(write_ptr, write.to(tl.int8))
    tl.store(prob_ptr, prob)
    tl.store(decay_ptr + rk, decay)
    tl.store(key_ptr + rk, k)
    tl.store(delta_ptr + rv, delta)
    tl.store(aux_ptr + rv, wv)


@triton.jit
def _step_tail(
    p_ptr,
    bias_ptr,
    state_ptr,
    base_ptr,
    alog_ptr,
    dtb_ptr,
    wc_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    out_state_ptr,
    action_ptr,
    skip_ptr,
    write_ptr,
    prob_ptr,
    decay_ptr,
    key_ptr,
    delta_ptr,
    aux_ptr,
    scale,
    tau,
    max_norm,
    n_act,
    KS: tl.constexpr,
    N: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    A_P: tl.constexpr,
    ZF: tl.constexpr,
    HID: tl.constexpr,
):
    _tail(
        p_ptr,
        bias_ptr,
        state_ptr,
        base_ptr,
        alog_ptr,
        dtb_ptr,
        wc_ptr,
        w1_ptr,
        b1_ptr,
        w2_ptr,
        b2_ptr,
        out_state_ptr,
        action_ptr,
        skip_ptr,
        write_ptr,
        prob_ptr,
        decay_ptr,
        key_ptr,
        delta_ptr,
        aux_ptr,
        scale,
        tau,
        max_norm,
        n_act,
        KS,
        N,
        K,
        V,
        A_P,
        ZF,
        HID,
    )


@triton.jit
def _step_single(
    z_ptr,
    w_ptr,
    count_ptr,
    p_ptr,
    bias_ptr,
    state_ptr,
    base_ptr,
    alog_ptr,
    dtb_ptr,
    wc_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    out_state_ptr,
    action_ptr,
    skip_ptr,
    write_ptr,
    prob_ptr,
    decay_ptr,
    key_ptr,
    delta_ptr,
    aux_ptr,
    scale,
    tau,
    max_norm,
    n_act,
    KS: tl.constexpr,
    N: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    A_P: tl.constexpr,
    ZF: tl.constexpr,
    HID: tl.constexpr,
    BK: tl.constexpr,
    BN: tl.constexpr,
):
    """One launch: each program stores its GEMV partial; the last to arrive (acq_rel count) runs the tail."""
    pn = tl.program_id(0)
    pk = tl.program_id(1)
    rk = pk * BK + tl.arange(0, BK)
    rn = pn * BN + tl.arange(0, BN)
    z = tl.load(z_ptr + rk)
    w = tl.load(w_ptr + rk[:, None] * N + rn[None, :])
    tl.store(p_ptr + pk * N + rn, tl.sum(z[:, None] * w, axis=0))
    total = tl.num_programs(0) * tl.num_programs(1)
    arrived = tl.atomic_add(count_ptr, 1, sem="acq_rel")
    if arrived == total - 1:
        _tail(
            p_ptr,
            bias_ptr,
            state_ptr,
            base_ptr,
            alog_ptr,
            dtb_ptr,
            wc_ptr,
            w1_ptr,
            b1_ptr,
            w2_ptr,
            b2_ptr,
            out_state_ptr,
            action_ptr,
            skip_ptr,
            write_ptr,
            prob_ptr,
            decay_ptr,
            key_ptr,
            delta_ptr,
            aux_ptr,
            scale,
            tau,
            max_norm,
            n_act,
            KS,
            N,
            K,
            V,
            A_P,
            ZF,
            HID,
        )
        tl.atomic_xchg(count_ptr, 0)


class FusedStep:
    """Packed weights of one AuraMem (rule gdn2, one head) and preallocated work buffers for the kernels."""

    def __init__(
        self, layer, ksplit: int | None = None, block_n: int = 64, single: bool = False, tail_warps: int = 1
    ):
        cfg = layer.config
        if cfg.rule != "gdn2" or cfg.heads != 1 or cfg.gate_z_features <= 0:
            raise NotImplementedError(
                f"fused step supports rule 'gdn2', heads 1, gate_z_features > 0 (got {cfg.rule!r}, "
                f"heads {cfg.heads}, gate_z_features {cfg.gate_z_features}); use the eager CUDA graph"
            )
        for name, n in (
            ("d_key", cfg.d_key),
            ("d_val", cfg.d_val),
            ("gate_z_features", cfg.gate_z_features),
            ("gate_hidden", cfg.gate_hidden),
        ):
            if n & (n - 1):
                raise NotImplementedError(f"fused step needs a power-of-two {name}, got {n}")
        dev = layer.proj.weight.device
        d = cfg.d_model
        self.ksplit = ksplit or max(1, min(32, d // 128))
        if d % self.ksplit or (d // self.ksplit) & (d // self.ksplit - 1):
            raise NotImplementedError(f"d_model {d} must split into {self.ksplit} power-of-two row blocks")
        g = layer.gate
        w = torch.cat([layer.proj.weight, g.z_proj.weight], 0).detach().float()  # [N, d]
        bias = torch.cat([layer.proj.bias, g.z_proj.bias], 0).detach().float()
        n = w.shape[0]
        self.block_n = block_n
        self.n_pad = triton.cdiv(n, block_n) * block_n
        self.w = torch.zeros(d, self.n_pad, device=dev)
        self.w[:, :n] = w.t()
        self.bias = torch.zeros(self.n_pad, device=dev)
        self.bias[:n] = bias
        self.a_log = layer.A_log.detach().float().contiguous()
        self.dt_bias = layer.dt_bias.detach().float().contiguous()
        self.wc = layer.head.weight.detach().float().contiguous()  # [A, V]
        self.w1 = g.mlp[0].weight.detach().float().contiguous()
        self.b1 = g.mlp[0].bias.detach().float().contiguous()
        self.w2 = g.mlp[2].weight.detach().float().reshape(-1).contiguous()
        self.b2 = g.mlp[2].bias.detach().float().contiguous()
        self.cfg, self.scale, self.tau = cfg, cfg.d_key**-0.5, float(cfg.threshold)
        # no guard == a bound no fp32 state reaches (c is then exactly 1)
        self.max_norm = 3.0e38 if cfg.max_state_norm is None else float(cfg.max_state_norm)
        self.partial = torch.empty(self.ksplit, self.n_pad, device=dev)
        self.count = torch.zeros(1, dtype=torch.int32, device=dev)
        # single: one launch (arrival counter); else GEMV + tail. A one-warp tail reduces with shuffles only.
        self.single, self.tail_warps = single, tail_warps
        self.a_pad = triton.next_power_of_2(cfg.d_action)

    def __call__(self, z, base, state, out_state, action, skip, write, prob, decay, key, delta, aux) -> None:
        """One step on flat fp32 buffers; ``write`` is int8 [1]. No allocation: safe to capture in a graph.

        z, base, action, skip, write and prob may live in pinned host memory (zero-copy over PCIe).
        """
        cfg = self.cfg
        bk = cfg.d_model // self.ksplit
        tail_args = (
            self.partial,
            self.bias,
            state,
            base,
            self.a_log,
            self.dt_bias,
            self.wc,
            self.w1,
            self.b1,
            self.w2,
            self.b2,
            out_state,
            action,
            skip,
            write,
            prob,
            decay,
            key,
            delta,
            aux,
            self.scale,
            self.tau,
            self.max_norm,
            cfg.d_action,
            self.ksplit,
            self.n_pad,
            cfg.d_key,
            cfg.d_val,
            self.a_pad,
            cfg.gate_z_features,
            cfg.gate_hidden,
        )
        grid = (self.n_pad // self.block_n, self.ksplit)
        if self.single:
            _step_single[grid](z, self.w, self.count, *tail_args, bk, self.block_n, num_warps=self.tail_warps)
        else:
            _gemv_partial[grid](z, self.w, self.partial, self.n_pad, bk, self.block_n)
            _step_tail[(1,)](*tail_args, num_warps=self.tail_warps)
