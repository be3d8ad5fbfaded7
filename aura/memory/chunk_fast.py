"""The chunkwise GDN-2 form as one ``torch.autograd.Function`` with a hand-derived backward (CPU speed).

Inputs are in fla's layout ``[B, T, H, D]``; the work runs on chunk-major ``[G, B*H, C, D]`` blocks of G
chunks of C tokens at a time (so a block's tensors stay in cache), in the compute dtype. Per chunk, with
state S at its start, Gamma = cumsum(g) (chunk-local), R = e^Gamma, kb = b*k, kq = s*q, and the decayed
pair products Pair(x, y)_{ri} = sum_d x_rd y_id e^{Gamma_rd - Gamma_id}:

    T   = strict_tril(Pair(kb, k)),   Aqk = tril(Pair(kq, k)),   A = (I + T)^{-1}
    xb  = kb*R,  xq = kq*R,  kt = k*e^{Gamma_C - Gamma},  d = e^{Gamma_C}
    r_n = w*v - xb_n S_n,  u_n = A_n r_n          (the true per-token deltas)
    S_{n+1} = Diag(d_n) S_n + kt_n^T u_n
    O_n = xq_n S_n + Aqk_n u_n

Backward (o-gradient dO, final-state gradient dS_N), one reverse pass over chunks:

    du_n = Aqk_n^T dO_n + kt_n dS_{n+1},  dr_n = A_n^T du_n
    dS_n = Diag(d_n) dS_{n+1} + xq_n^T dO_n - xb_n^T dr_n
    d(w*v) = dr,  dxb = -dr S^T,  dxq = dO S^T,  dkt = u dS_{n+1}^T,  dd = rowsum(S_n * dS_{n+1})
    dT = -strict_tril(dr u^T)      (from u = A r: dA = du r^T and dT = -A^T dA A^T = -dr u^T)
    dAqk = tril(dO u^T)

and Pair's adjoint: for P = Pair(x, y), dx_r = sum_i dP_ri y_i e^{Gamma_r - Gamma_i},
dy_i = sum_r dP_ri x_r e^{Gamma_r - Gamma_i}, and its Gamma-gradient is x*dx (rows) - y*dy (columns).
Collecting every use of Gamma (R in xb, xq; e^{-Gamma} in kt; Gamma_C in kt and d) gives, per token,
dGamma = kb*dkb + kq*dkq - k*(dk_pair + dk_kt), plus dGamma_C = sum_r k*dk_kt + d*dd at the chunk's last
token; dg is the reverse cumulative sum of dGamma within the chunk, plus dGamma_C on every token.

Only A, Aqk, the chunk-start states and u are kept for the backward; the rest is recomputed there.
Numerics: the pair factors are split around a reference per sub-block of c rows (see ``pair_factors``):
with c*max|g| <= E every factor stays <= e^E, so strong decays only shrink c (more, smaller products).
The naive twin of this code is ``aura.memory.chunk.gdn2_chunk_naive`` (the same algebra through autograd).
"""

from __future__ import annotations

import functools
import os

import torch
from torch.autograd.function import once_differentiable

# Tokens (G*B*H*C) per block of chunks processed together, so that a block's tensors stay in cache: the
# fastest block size measured at d = 32, and faster than all chunks at once (docs/memory.md, "Benchmarks").
GROUP_TOKENS = int(os.environ.get("AURA_CHUNK_GROUP_TOKENS", 4096))


def unit_lower_inverse(T: torch.Tensor) -> torch.Tensor:
    """(I + T)^{-1} for T ``[..., C, C]`` whose strictly lower triangle is used (the rest is ignored).

    Solved as A^T (I + T)^T = I on the transposed (column-major) view, the layout LAPACK's trsm takes
    without a copy: faster than solving (I + T) A = I (docs/memory.md, "Benchmarks").
    """
    eye = torch.eye(T.shape[-1], dtype=T.dtype, device=T.device).expand_as(T)
    return torch.linalg.solve_triangular(T.mT, eye, upper=True, left=False, unitriangular=True).mT


def pair_factors(gam: torch.Tensor, c: int, limit: float):
    """Row and column factors of Pair for sub-blocks of c rows, relative to a reference P per sub-block.

    c == C: P = 0 (the chunk start), rows e^Gamma <= 1, columns e^{-Gamma} <= e^{C max|g|} <= e^E;
    gam is overwritten with e^Gamma (the rows) there.
    c < C: P = Gamma at the sub-block's first row; rows e^{Gamma_r - P} <= 1, columns ``[G, M, L, C, K]``
    e^{P - Gamma_i} <= e^E up to the sub-block's end (later columns are masked; clamped to stay finite).
    """
    G, M, C, K = gam.shape
    if c == C:  # -Gamma <= C max|g| <= E: e^Gamma stays a normal number, so 1/e^Gamma is exact enough
        rowf = gam.exp_()  # Gamma itself is not needed again on this path
        return rowf, torch.reciprocal(rowf)
    L = C // c
    P = gam[:, :, ::c].unsqueeze(-2)  # [G, M, L, 1, K]
    rowf = (gam.view(G, M, L, c, K) - P).exp().view(G, M, C, K)
    colf = (P - gam.unsqueeze(2)).clamp(max=limit).exp()
    return rowf, colf


def pair(x: torch.Tensor, y_col: torch.Tensor, rowf: torch.Tensor, c: int) -> torch.Tensor:
    """Pair(x, y) ``[G, M, C, C]`` (c < C) from undecayed rows x and the decayed columns y_col = y * colf."""
    G, M, C, K = x.shape
    return ((x * rowf).view(G, M, C // c, c, K) @ y_col.mT).view(G, M, C, C)


def pair_grad_rows(dP: torch.Tensor, y_col: torch.Tensor, rowf: torch.Tensor, c: int) -> torch.Tensor:
    """dx (undecayed) = sum_i dP_ri y_i e^{Gamma_r - Gamma_i} (c < C)."""
    G, M, C, _ = dP.shape
    return (dP.view(G, M, C // c, c, C) @ y_col).view(G, M, C, -1) * rowf


def pair_grad_cols(dP, xr, colf, c):
    """dy (undecayed) = sum_r dP_ri x_r e^{Gamma_r - Gamma_i}, from the row-decayed xr = x * rowf (c < C)."""
    G, M, C, K = xr.shape
    L = C // c
    return ((dP.view(G, M, L, c, C).mT @ xr.view(G, M, L, c, K)) * colf).sum(2)


class _Layout:
    """Chunk-major views of ``[B, T, H, D]`` tensors: chunk n of sequence (b, h) is ``[n, b*H + h]``.

    Blocks of whole chunks are strided views of the caller's tensors (no copy); the last, partial chunk
    (T not a multiple of C) is gathered into a zero-padded buffer: padding = identity steps.
    """

    def __init__(self, B, T, H, C, group):
        self.B, self.T, self.H, self.C = B, T, H, C
        self.full, self.rem = divmod(T, C)
        blocks = [(n0, min(group, self.full - n0)) for n0 in range(0, self.full, group)]
        self.blocks = blocks + ([(self.full, 1)] if self.rem else [])

    def view5(self, x, n0, G):
        """Chunks n0 .. n0+G-1 (all whole) of x as a ``[G, B, H, C, D]`` view."""
        C = self.C
        return x[:, n0 * C : (n0 + G) * C].unflatten(1, (G, C)).permute(1, 0, 3, 2, 4)

    def chunks(self, x, n0, G, dtype, copy=False):
        """Chunks n0 .. n0+G-1 of x as ``[G, B, H, C, D]`` in dtype: a view when possible, else a copy."""
        if n0 < self.full and x.dtype == dtype and not copy:
            return self.view5(x, n0, G)
        out = torch.empty((G, self.B, self.H, self.C, x.shape[-1]), dtype=dtype, device=x.device)
        if n0 < self.full:
            out.copy_(self.view5(x, n0, G))
        else:
            out[0, :, :, : self.rem].copy_(x[:, self.full * self.C :].permute(0, 2, 1, 3))
            out[0, :, :, self.rem :].zero_()
        return out

    def target(self, dst, n0, G, dtype):
        """Where to write chunks n0 .. of dst: a view of dst, or a buffer for :meth:`flush`."""
        if n0 < self.full:
            return self.view5(dst, n0, G)
        return torch.empty((1, self.B, self.H, self.C, dst.shape[-1]), dtype=dtype, device=dst.device)

    def flush(self, dst, buf, n0):
        if n0 >= self.full:
            dst[:, self.full * self.C :].permute(0, 2, 1, 3).copy_(buf[0, :, :, : self.rem])


def _f5(x, B, H):
    """A chunk-major ``[G, B*H, R, D]`` tensor as ``[G, B, H, R, D]``."""
    G, _, R, D = x.shape
    return x.view(G, B, H, R, D)


def _prep(q5, k5, g5, b5, scale, c, limit, saved=None):
    """The chunk-parallel quantities of a block (see the module docstring) from ``[G, B, H, C, D]`` inputs.

    xb and xq are stacked as the two halves of XBQ ``[G, M, 2C, K]``, so products that share their other
    operand are one larger (faster) matrix product. ``saved`` = (A, Aqk) skips the products (backward).
    """
    G, B, H, C, K = q5.shape
    M = B * H
    opts = {"dtype": q5.dtype, "device": q5.device}

    def new(rows=C):
        return torch.empty((G, M, rows, K), **opts)

    gam = new()
    torch.cumsum(g5, -2, out=_f5(gam, B, H))
    rowf, colf = pair_factors(gam, c, limit)
    R = rowf if c == C else gam.exp()
    XBQ = new(2 * C)
    xb5, xq5 = _f5(XBQ[:, :, :C], B, H), _f5(XBQ[:, :, C:], B, H)
    torch.mul(b5, k5, out=xb5).mul_(_f5(R, B, H))
    zero = torch.zeros((), **opts)
    torch.addcmul(zero, q5, _f5(R, B, H), value=scale, out=xq5)  # s q e^Gamma in one pass
    y_col = new()
    d = R[:, :, -1:]  # e^{Gamma_C}
    if c == C:  # one reference (the chunk start) for every row: xb, xq are Pair's row operands
        torch.mul(k5, _f5(colf, B, H), out=_f5(y_col, B, H))
        kt = y_col * d  # k e^{Gamma_C - Gamma}
        e_tail = None if saved is None else colf * d  # e^{Gamma_C - Gamma} <= 1, for the backward
    else:
        _f5(y_col, B, H).copy_(k5)
        y_col = y_col.unsqueeze(2) * colf
        e_tail = (gam[:, :, -1:] - gam).exp_()
        kt = new()
        torch.mul(k5, _f5(e_tail, B, H), out=_f5(kt, B, H))
    p = {"rowf": rowf, "colf": colf, "R": R, "y_col": y_col, "XBQ": XBQ, "e_tail": e_tail, "kt": kt, "d": d}
    if c != C:  # undecayed row operands for the sub-block products
        kb, kq = new(), new()
        torch.mul(b5, k5, out=_f5(kb, B, H))
        torch.mul(q5, scale, out=_f5(kq, B, H))
        p["kb"], p["kq"] = kb, kq
    if saved is None:
        GM = G * M
        if c == C:
            TA = torch.bmm(XBQ.view(GM, 2 * C, K), y_col.view(GM, C, K).mT).view(G, M, 2 * C, C)
            T, Aqk = TA[:, :, :C], TA[:, :, C:]
        else:
            T, Aqk = pair(kb, y_col, rowf, c), pair(kq, y_col, rowf, c)
        p["A"] = unit_lower_inverse(T)
        p["Aqk"] = Aqk.tril()
    else:
        p["A"], p["Aqk"] = saved
    return p


@functools.lru_cache(maxsize=16)
def _masks(C, dtype, device):
    """[strict lower; lower] masks ``[2C, C]`` for the stacked gradients [dT; dAqk]."""
    r = torch.arange(C, device=device)
    strict = r[:, None] > r[None, :]
    return torch.cat([strict, strict | (r[:, None] == r[None, :])]).to(dtype)


def _grads(p, k5, v5, b5, w5, DD, u, S_st, dS_next, dr, scale, c, out5):
    """Write dq, dk, dv, dg, db, dw of a block into ``out5`` (``[G, B, H, C, D]`` each).

    DD = [-dr; dO] ``[G, M, 2C, V]`` stacks the two row operands that meet S^T and u^T.
    """
    G, M, C, K = p["kt"].shape
    B, H = k5.shape[1:3]
    GM = G * M
    dq5, dk5, dv5, dg5, db5, dw5 = out5
    DD3 = DD.view(GM, 2 * C, -1)
    GBQ = torch.bmm(DD3, S_st.reshape(GM, K, -1).mT).view(G, M, 2 * C, K)  # state terms of [dxb; dxq]
    PTA = torch.bmm(DD3, u.view(GM, C, -1).mT).mul_(_masks(C, u.dtype, u.device))  # [dT; dAqk]
    dk_kt = (u @ dS_next.mT).mul_(p["e_tail"])
    dd = (S_st * dS_next).sum(-1, keepdim=True).mT  # [G, M, 1, K]
    XBQ, R = p["XBQ"], p["R"]
    if c == C:
        GBQ.view(GM, 2 * C, K).baddbmm_(PTA, p["y_col"].view(GM, C, K))  # row-decayed [dxb; dxq]
        dk_in = torch.bmm(PTA.mT, XBQ.view(GM, 2 * C, K)).view(G, M, C, K).mul_(p["colf"])
        gb, gq = GBQ[:, :, :C], GBQ[:, :, C:]
        dgam = torch.mul(XBQ[:, :, :C], gb).addcmul_(XBQ[:, :, C:], gq)  # x*dx (xb = kb R, xq = kq R)
        dkb = gb.mul_(R)  # undecayed
        zero = torch.zeros((), dtype=R.dtype, device=R.device)
        torch.addcmul(zero, _f5(gq, B, H), _f5(R, B, H), value=scale, out=dq5)
    else:
        PT, dAqk = PTA.view(G, M, 2 * C, C)[:, :, :C], PTA.view(G, M, 2 * C, C)[:, :, C:]
        DKBQ = GBQ.view(G, M, 2, C, K).mul_(R.unsqueeze(2))
        DKBQ[:, :, 0].add_(pair_grad_rows(PT, p["y_col"], p["rowf"], c))
        DKBQ[:, :, 1].add_(pair_grad_rows(dAqk, p["y_col"], p["rowf"], c))
        rowf, colf = p["rowf"], p["colf"]
        dk_in = pair_grad_cols(PT, p["kb"] * rowf, colf, c)
        dk_in.add_(pair_grad_cols(dAqk, p["kq"] * rowf, colf, c))
        dkb, dkq = DKBQ[:, :, 0], DKBQ[:, :, 1]  # undecayed
        dgam = torch.addcmul(p["kb"] * dkb, p["kq"], dkq)
        torch.mul(_f5(dkq, B, H), scale, out=dq5)
    dk_in.add_(dk_kt)  # the uses of k whose Gamma enters with a minus sign
    _f5(dgam, B, H).addcmul_(k5, _f5(dk_in, B, H), value=-1)
    kdk = (k5 * _f5(dk_kt, B, H)).sum(-2, keepdim=True).view(G, M, 1, K)
    tot = dgam.sum(-2, keepdim=True).add_(kdk).addcmul_(dd, p["d"])  # sum_r dGamma_r + dGamma_C
    # dg_j = sum_{r >= j} dGamma_r + dGamma_C = tot - sum_{r < j} dGamma_r
    torch.add(_f5(dgam.sub_(dgam.cumsum(-2)), B, H), _f5(tot, B, H), out=dg5)
    torch.addcmul(_f5(dk_in, B, H), b5, _f5(dkb, B, H), out=dk5)
    torch.mul(_f5(dkb, B, H), k5, out=db5)
    torch.mul(_f5(dr, B, H), w5, out=dv5)
    torch.mul(_f5(dr, B, H), v5, out=dw5)


class GDN2Chunk(torch.autograd.Function):
    """``o, S_T = GDN2Chunk.apply(q, k, v, g, b, w, S0, scale, C, c, limit, group, ct)`` in fla's layout.

    q, k, g, b ``[B, T, H, K]``, v, w ``[B, T, H, V]``, S0 ``[B, H, K, V]`` or None (zeros), any float
    dtype; computed in ``ct`` with chunks of C tokens, ``c`` the pair sub-block size, ``limit`` the
    exponent bound E, ``group`` chunks per block. Returns o ``[B, T, H, V]`` in q's dtype and the final
    state ``[B, H, K, V]`` in ``ct``.
    """

    @staticmethod
    def forward(ctx, q, k, v, g, b, w, S0, scale, C, c, limit, group, ct):
        B, T, H, K = q.shape
        V = v.shape[-1]
        M = B * H
        lay = _Layout(B, T, H, C, group)
        o = q.new_empty(B, T, H, V)
        S = q.new_zeros((M, K, V), dtype=ct) if S0 is None else S0.to(ct).reshape(M, K, V)
        r = q.new_empty((M, C, V), dtype=ct)
        saved = []
        keep = any(ctx.needs_input_grad[:7])
        for n0, G in lay.blocks:
            q5, k5, v5, g5, b5, w5 = (lay.chunks(x, n0, G, ct) for x in (q, k, v, g, b, w))
            p = _prep(q5, k5, g5, b5, scale, c, limit)
            xb, xq = p["XBQ"][:, :, :C], p["XBQ"][:, :, C:]
            A, kt, d = p["A"], p["kt"], p["d"].mT
            wv = q.new_empty((G, M, C, V), dtype=ct)
            torch.mul(w5, v5, out=_f5(wv, B, H))
            # S_all[j] is the state at the start of chunk n0 + j; S_all[G] the state after the block
            S_all = q.new_empty((G + 1, M, K, V), dtype=ct)
            S_all[0].copy_(S)
            u = q.new_empty((G, M, C, V), dtype=ct)
            Ss = S_all.unbind(0)
            for j, (wv_j, xb_j, A_j, u_j, d_j, kt_j) in enumerate(
                zip(*(x.unbind(0) for x in (wv, xb, A, u, d, kt)))
            ):
                torch.baddbmm(wv_j, xb_j, Ss[j], alpha=-1, out=r)  # r = w*v - xb S
                torch.bmm(A_j, r, out=u_j)
                torch.mul(Ss[j], d_j, out=Ss[j + 1]).baddbmm_(kt_j.mT, u_j)
            S = S_all[G]
            GM = G * M
            o_g = torch.bmm(xq.flatten(0, 1), S_all[:G].view(GM, K, V))
            o_g.baddbmm_(p["Aqk"].reshape(GM, C, C), u.view(GM, C, V))
            ot = lay.target(o, n0, G, ct)
            ot.copy_(o_g.view(G, B, H, C, V))
            lay.flush(o, ot, n0)
            if keep:  # what is costly to redo; the rest is recomputed in backward
                saved.append((A, p["Aqk"], S_all, u))
        ctx.save_for_backward(q, k, v, g, b, w)
        ctx.blocks, ctx.lay = saved, lay
        ctx.consts = (scale, c, limit, ct, None if S0 is None else S0.dtype)
        return o, S.reshape(B, H, K, V).clone()

    @staticmethod
    @once_differentiable  # the backward is not itself differentiable (no double backward)
    def backward(ctx, dO, dSN):
        scale, c, limit, ct, S0_dtype = ctx.consts
        lay = ctx.lay
        inputs = ctx.saved_tensors
        B, T, H, K = inputs[0].shape
        V = inputs[2].shape[-1]
        M, C = B * H, lay.C
        grads = [torch.empty(x.shape, dtype=x.dtype, device=x.device) for x in inputs]
        dS = dO.new_zeros((M, K, V), dtype=ct) if dSN is None else dSN.to(ct).reshape(M, K, V)
        du = dO.new_empty((M, C, V), dtype=ct)
        for (n0, G), (A, Aqk, S_all, u) in reversed(list(zip(lay.blocks, ctx.blocks))):
            q5, k5, v5, g5, b5, w5 = (lay.chunks(x, n0, G, ct) for x in inputs)
            p = _prep(q5, k5, g5, b5, scale, c, limit, (A, Aqk))
            GM = G * M
            DD = dO.new_empty((G, M, 2 * C, V), dtype=ct)  # [-dr; dO]
            dO_g = DD[:, :, C:]
            _f5(dO_g, B, H).copy_(lay.chunks(dO, n0, G, ct))
            X = torch.bmm(Aqk.reshape(GM, C, C).mT, dO_g.flatten(0, 1)).view(G, M, C, V)
            xq = p["XBQ"][:, :, C:]
            Y = torch.bmm(xq.flatten(0, 1).mT, dO_g.flatten(0, 1)).view(G, M, K, V)
            kt, d, xb = p["kt"], p["d"].mT, p["XBQ"][:, :, :C]
            # dS_all[j + 1] is the gradient of the state after chunk n0 + j
            dS_all = torch.empty_like(S_all)
            dS_all[G].copy_(dS)
            dr = torch.empty_like(u)
            dSs = dS_all.unbind(0)
            per_chunk = list(zip(*(x.unbind(0) for x in (X, Y, kt, A, dr, d, xb))))
            for j in range(G - 1, -1, -1):
                X_j, Y_j, kt_j, A_j, dr_j, d_j, xb_j = per_chunk[j]
                torch.baddbmm(X_j, kt_j, dSs[j + 1], out=du)
                torch.bmm(A_j.mT, du, out=dr_j)
                torch.addcmul(Y_j, dSs[j + 1], d_j, out=dSs[j]).baddbmm_(xb_j.mT, dr_j, alpha=-1)
            torch.neg(dr, out=DD[:, :, :C])
            dS = dS_all[0]
            out5 = [lay.target(x, n0, G, ct) for x in grads]
            _grads(p, k5, v5, b5, w5, DD, u, S_all[:G], dS_all[1:], dr, scale, c, out5)
            for x, buf in zip(grads, out5):
                lay.flush(x, buf, n0)
        dS0 = None if S0_dtype is None else dS.reshape(B, H, K, V).to(S0_dtype)
        return (*grads, dS0, None, None, None, None, None, None)


def gdn2_chunk_fast(q, k, v, g, b, w, scale, S0, C, c, limit, ct, group=None):
    """Apply :class:`GDN2Chunk`; ``group`` defaults to about GROUP_TOKENS tokens per block on a CPU and to
    all chunks at once elsewhere (a GPU wants few, large launches, not cache-sized blocks)."""
    B, T, H, _ = q.shape
    if group is None:
        group = max(1, GROUP_TOKENS // (B * H * C)) if q.device.type == "cpu" else -(-T // C)
    return GDN2Chunk.apply(q, k, v, g, b, w, S0, scale, C, c, limit, group, ct)
