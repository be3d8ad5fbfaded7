"""Triton kernels of the fused AuraMem step (see ``deploy.export.fused_step`` for the math and the host side).

``_tail`` is the whole step after the projections, for one program; ``_step_tail`` runs it after the split-K
``_gemv_partial`` (two launches), ``_step_single`` folds both into one launch with an arrival counter. The
argument lists are spelled out because ``triton.jit`` functions take no ``*args``.
"""

from __future__ import annotations

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
    base,
    token,
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
    done_ptr,
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
    ECHO: tl.constexpr,
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
    read_out = tl.where(write, read_new, read_old)
    tl.store(action_ptr + ra, base + tl.sum(wc * read_out[None, :], axis=1), mask=amask)
    tl.store(skip_ptr + ra, base + tl.sum(wc * read_old[None, :], axis=1), mask=amask)
    tl.store(write_ptr, write.to(tl.int8))
    tl.store(prob_ptr, prob)
    tl.store(decay_ptr + rk, decay)
    tl.store(key_ptr + rk, k)
    tl.store(delta_ptr + rv, delta)
    tl.store(aux_ptr + rv, wv)
    _echo(done_ptr, token, ECHO)


@triton.jit
def _echo(done_ptr, token, ECHO: tl.constexpr):
    """Completion token for a host that spins instead of synchronising the stream.

    Every output above is stored before the token (CTA barrier, then a system-scope fence or release), so a
    host that sees it sees them. ECHO 2: ``fence.sc.sys`` + a posted store (no PCIe round trip; CUDA only);
    ECHO 1: a system-scope release exchange (also runs in Triton's interpreter).
    """
    tl.debug_barrier()
    if ECHO == 2:
        t = tl.inline_asm_elementwise(
            "fence.sc.sys;\n mov.b32 $0, $1;", "=r,r", [token], dtype=tl.int32, is_pure=False, pack=1
        )
        tl.store(done_ptr, t)
    else:
        tl.atomic_xchg(done_ptr, token, sem="release", scope="sys")


@triton.jit
def _step_tail(
    p_ptr,
    bias_ptr,
    state_ptr,
    base_ptr,
    token_ptr,
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
    done_ptr,
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
    ECHO: tl.constexpr,
):
    # Host-side inputs the tail needs, loaded first so their PCIe round trip overlaps the other loads.
    ra = tl.arange(0, A_P)
    base = tl.load(base_ptr + ra, mask=ra < n_act, other=0.0)
    token = tl.load(token_ptr)
    _tail(
        p_ptr,
        bias_ptr,
        state_ptr,
        base,
        token,
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
        done_ptr,
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
        ECHO,
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
    token_ptr,
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
    done_ptr,
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
    ECHO: tl.constexpr,
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
    if (
        arrived == total - 1
    ):  # host inputs only here: 128 programs reading them over PCIe is slow (docs/deploy.md)
        ra = tl.arange(0, A_P)
        base = tl.load(base_ptr + ra, mask=ra < n_act, other=0.0)
        token = tl.load(token_ptr)
        _tail(
            p_ptr,
            bias_ptr,
            state_ptr,
            base,
            token,
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
            done_ptr,
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
            ECHO,
        )
        tl.atomic_xchg(count_ptr, 0)
