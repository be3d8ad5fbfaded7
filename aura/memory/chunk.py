"""Chunkwise (WY / UT) form of Gated DeltaNet-2 in pure PyTorch, and the dispatch to fla on CUDA.

Within a chunk of C tokens that starts from state S, let Gamma_r = sum_{i<=r} g_i (per key channel,
chunk-local) and write rows as tokens. Unrolling the recurrence (see ``aura.memory.naive``) gives

    T      = tril((B*K*e^Gamma)(K*e^-Gamma)^T, -1)         pairwise erase interactions, decayed
    [W, U] = (I + T)^{-1} [B*K*e^Gamma, W_g*V]             forward substitution (unit lower triangular)
    U_new  = U - W S                                       the true per-token deltas u_t
    O      = s (Q*e^Gamma) S + tril(s (Q*e^Gamma)(K*e^-Gamma)^T) U_new
    S     <- Diag(e^{Gamma_C}) S + (K*e^{Gamma_C - Gamma})^T U_new

Two implementations of this algebra: ``aura.memory.chunk_fast.GDN2Chunk`` (what ``gdn2_chunk`` runs on a
CPU: an autograd Function with a hand-derived backward, blocks of chunks at a time; see that module) and
:func:`gdn2_chunk_naive` below, its naive twin (everything batched over all chunks, differentiated by
autograd; fla's ``naive_chunk_*``), which the tests compare it with. ``gdn2_chunk`` also runs the naive
twin on a GPU without fla.

Numerics: e^-Gamma overflows for strong decays, so the pairwise decays e^{Gamma_r - Gamma_i} (always <= 1
for i <= r) are factored around a reference per sub-block of rows: e^{Gamma_r - P} e^{P - Gamma_i}, with P
the cumulative decay at the sub-block's first row. The sub-block size c is the largest power of two with
c * max|g| <= E (E = 40 in float32, 500 in float64), so no factor exceeds e^E; strong decays only cost
speed, never accuracy. T not a multiple of C is padded with identity steps (k = q = 0, g = 0, b = w = 0).
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from aura.memory import cpu_fast, fla_graph
from aura.memory.chunk_fast import gdn2_chunk_fast
from aura.memory.validate import (
    check_chunk_size,
    check_scale,
    check_sequence,
    check_values,
    compute_dtype,
    finish_value_check,
    sequence_tensors,
    start_value_check,
)

BACKENDS = ("auto", "torch", "fla", "c")
# Set AURA_MEMORY_BACKEND=torch to force the torch path where a call site cannot pass backend=.
ENV_BACKEND = "AURA_MEMORY_BACKEND"
# E: the largest exponent a decay factor may reach, per compute dtype (see the module docstring).
EXP_LIMIT = {torch.float32: 40.0, torch.float64: 500.0}
# The torch form's default chunk on a CPU: fastest for training at d = 32 (docs/memory.md, "Benchmarks").
CPU_CHUNK = 16


@functools.lru_cache(maxsize=1)
def fla_chunk_gdn2():
    """fla's ``chunk_gdn2`` if fla-core imports (it needs Triton), else None."""
    try:
        from fla.ops.gdn2 import chunk_gdn2
    except Exception:  # ImportError, or Triton failing to initialise on a machine without a GPU
        return None
    return chunk_gdn2


def resolve_backend(backend: str, q: torch.Tensor, ct: torch.dtype, chunk_size: int) -> str:
    """``auto``: 'fla' on CUDA with fla-core importable (float32 or lower precision, chunk 64); 'c' on a
    CPU where the C kernel builds (``aura.memory.cpu_fast``); else 'torch'."""
    env = os.environ.get(ENV_BACKEND)
    if backend == "auto" and env:
        backend = env
    if backend not in BACKENDS:
        raise ValueError(f"gdn2_chunk: argument 'backend' must be one of {BACKENDS}, got {backend!r}")
    if backend == "c" or (backend == "auto" and not q.is_cuda):
        c_ok = q.device.type == "cpu" and cpu_fast.available()
        if backend == "c" and not c_ok:
            why = "inputs are not on the CPU" if q.device.type != "cpu" else "the C kernel did not build"
            raise ValueError(f"gdn2_chunk: backend='c' cannot run here: {why} (see cpu_fast's warning)")
        return "c" if c_ok else "torch"
    fla_ok = q.is_cuda and ct == torch.float32 and chunk_size == 64 and fla_chunk_gdn2() is not None
    if backend == "fla" and not fla_ok:
        why = (
            "inputs are not on CUDA"
            if not q.is_cuda
            else "a float64 input"
            if ct != torch.float32
            else f"chunk_size={chunk_size} (fla needs 64)"
            if chunk_size != 64
            else "fla-core (with Triton) is not importable"
        )
        raise ValueError(f"gdn2_chunk: backend='fla' cannot run here: {why}")
    if backend == "auto":
        return "fla" if fla_ok else "torch"
    return backend


def gdn2_chunk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
    *,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise GDN-2, same contract as :func:`aura.memory.gdn2_recurrent`; differentiable by autograd.

    ``backend``: ``"auto"`` uses fla's Triton ``chunk_gdn2`` on CUDA when fla-core is installed and the
    inputs are not float64, and on a CPU the fused C kernel (``aura.memory.cpu_fast``: the same rule token
    by token, forward and backward; see docs/memory.md for its speed) when a C compiler built it; else the
    torch chunk form here. ``"torch"`` forces the torch form (as does the environment variable
    ``AURA_MEMORY_BACKEND=torch``); ``"fla"`` and ``"c"`` require theirs. ``chunk_size`` is a power of
    two (fla accepts only 64; the C kernel ignores it); None means 64, except for the torch form on a CPU,
    where it means ``CPU_CHUNK`` (the fastest there). Sequences shorter than a chunk use the next power of
    two >= T.
    """
    fn = "gdn2_chunk"
    (B, T, H, K, V), _ = check_sequence(fn, q, k, v, g, b, w, initial_state, False)
    s = check_scale(fn, scale, K)
    default_chunk = chunk_size is None
    chunk_size = check_chunk_size(fn, 64 if default_chunk else chunk_size)
    ct = compute_dtype(q, k, v, g, b, w, initial_state)
    tensors = sequence_tensors(q, k, v, g, b, w, initial_state)
    route = resolve_backend(backend, q, ct, chunk_size)
    if route == "fla":
        # The value check (one fused Triton launch on CUDA) is queued first and read back only after fla's
        # kernels are launched, so its host sync overlaps fla's work instead of stalling before it.
        started = start_value_check(tensors) if validate else None
        S0 = None if initial_state is None else initial_state.float()
        out = None
        if fla_graph.eligible(tensors):  # no autograd: replay fla's forward from a CUDA graph
            xs = [q, k, v, g, b, w] if S0 is None else [q, k, v, g, b, w, S0]
            out = fla_graph.forward(fla_chunk_gdn2(), xs, s, output_final_state)
        if out is None:
            out = fla_chunk_gdn2()(
                q, k, v, g, b, w, scale=s, initial_state=S0, output_final_state=output_final_state
            )
        if started is not None:
            finish_value_check(fn, tensors, started)
        return out
    if route == "c":  # the kernel's forward checks the values as it loads them (no second pass)
        return cpu_fast.run(fn, tensors, s, ct, output_final_state, validate)
    stats = check_values(fn, tensors) if validate else None
    g_min = stats["g"][0] if stats is not None else float(g.detach().min())
    if q.device.type == "cpu":
        if default_chunk:
            chunk_size = CPU_CHUNK
        o, S = _chunk_fast(q, k, v, g, b, w, s, initial_state, chunk_size, ct, g_min)
    else:
        # A GPU without fla: the naive twin (autograd), the form verified against float64 on a GPU. The
        # hand-written backward is tuned for CPUs and has not been run on a GPU yet.
        o, S = _chunks_autograd(q, k, v, g, b, w, s, initial_state, chunk_size, ct, g_min)
        o = o.to(q.dtype)
    return o, (S if output_final_state else None)


def _chunk_fast(q, k, v, g, b, w, s, initial_state, chunk_size, ct, g_min):
    """The torch chunk form with its hand-written backward (:class:`aura.memory.chunk_fast.GDN2Chunk`)."""
    T = q.shape[1]
    C = min(chunk_size, 1 << (T - 1).bit_length())
    c = sub_block(C, g_min, ct)
    return gdn2_chunk_fast(q, k, v, g, b, w, s, initial_state, C, c, EXP_LIMIT[ct], ct)


def sub_block(C: int, g_min: float, ct: torch.dtype) -> int:
    """Largest power-of-two sub-block c <= C whose decay range c * |g_min| stays within e^E (EXP_LIMIT)."""
    c = C
    while c > 1 and c * -g_min > EXP_LIMIT[ct]:
        c //= 2
    return c


def gdn2_chunk_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    *,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunkwise algebra in plain PyTorch ops, differentiated by autograd: the naive chunk form.

    Same contract as :func:`aura.memory.gdn2_recurrent` (o in q's dtype, S_T in the compute dtype, float64
    if any input is float64, else float32); ``chunk_size`` is a power of two (sequences shorter than a
    chunk use the next power of two >= T). It is the twin the fast chunk form (``chunk_fast``) is tested
    against, and what ``gdn2_chunk`` runs on a GPU without fla.
    """
    fn = "gdn2_chunk_naive"
    (B, T, H, K, V), stats = check_sequence(fn, q, k, v, g, b, w, initial_state, validate)
    s = check_scale(fn, scale, K)
    chunk_size = check_chunk_size(fn, chunk_size)
    ct = compute_dtype(q, k, v, g, b, w, initial_state)
    g_min = stats["g"][0] if stats is not None else float(g.detach().min())
    o, S = _chunks_autograd(q, k, v, g, b, w, s, initial_state, chunk_size, ct, g_min)
    return o.to(q.dtype), (S if output_final_state else None)


def _chunks_autograd(q, k, v, g, b, w, s, initial_state, chunk_size, ct, g_min):
    """:func:`gdn2_chunk_naive` after its checks: ``s`` the scale, ``ct`` the compute dtype, ``g_min``
    the smallest g (sets the sub-block size). Returns o in ``ct`` and the final state."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = min(chunk_size, 1 << (T - 1).bit_length())
    N = -(-T // C)
    pad = N * C - T
    c = sub_block(C, g_min, ct)
    L = C // c

    def chunks(x):  # [B, T, H, D] -> [B, H, N, C, D], zero-padded: identity steps
        x = x.to(ct).transpose(1, 2)
        return F.pad(x, (0, 0, 0, pad)).reshape(B, H, N, C, x.shape[-1])

    q, k, v, g, b, w = (chunks(x) for x in (q, k, v, g, b, w))
    gam = g.cumsum(-2)  # Gamma_r, chunk-local
    gam_C = gam[..., -1:, :]
    if L == 1:  # the reference is the chunk start: row factors are e^Gamma itself
        P = None
        row = gam.exp()
        col = (-gam).clamp(max=EXP_LIMIT[ct]).exp().unsqueeze(-3)  # [B, H, N, 1, C, K]
    else:
        # P_R: cumulative decay at the first row of sub-block R; rows use e^{Gamma_r - P_R} <= 1, and the
        # diagonal entry (i = r) is e^0 even when c = 1 and a single g_r is below -E.
        P = gam[..., ::c, :].unsqueeze(-2)  # [B, H, N, L, 1, K]
        row = (gam.reshape(B, H, N, L, c, K) - P).exp().reshape(B, H, N, C, K)
        # Columns relative to each P_R: <= e^E up to the end of sub-block R; later columns are masked
        # below and merely clamped here so they stay finite.
        col = (P - gam.unsqueeze(-3)).clamp(max=EXP_LIMIT[ct]).exp()  # [B, H, N, L, C, K]
    Xb = b * k * row  # (b*k) e^{Gamma_r - P_R}
    Xq = (s * q) * row
    Yt = (k.unsqueeze(-3) * col).transpose(-1, -2)  # [B, H, N, L, K, C]
    # Causal masks as multiplications (one pass each, no copy of the product); rows r, columns i.
    r = torch.arange(C, device=q.device)
    strict = (r[:, None] > r[None, :]).to(ct)
    Tm = ((Xb.reshape(B, H, N, L, c, K) @ Yt).reshape(B, H, N, C, C)) * strict
    Aqk = ((Xq.reshape(B, H, N, L, c, K) @ Yt).reshape(B, H, N, C, C)) * (
        strict + torch.eye(C, dtype=ct, device=q.device)
    )
    if P is not None:  # back to the chunk start: e^{Gamma_r} = e^{Gamma_r - P_R} e^{P_R}
        e_P = P.exp()
        Xb = (Xb.reshape(B, H, N, L, c, K) * e_P).reshape(B, H, N, C, K)
        Xq = (Xq.reshape(B, H, N, L, c, K) * e_P).reshape(B, H, N, C, K)
    WU = torch.linalg.solve_triangular(Tm, torch.cat([Xb, w * v], dim=-1), upper=False, unitriangular=True)
    Wm, U = WU[..., :K], WU[..., K:]
    k_tail = (k * (gam_C - gam).exp()).transpose(-1, -2)  # [B, H, N, K, C]
    d_C = gam_C.exp().transpose(-1, -2)  # [B, H, N, K, 1]

    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(ct)
    starts, deltas = [], []
    # unbind, not U[:, :, n]: each select's backward would zero-fill and add a full-size gradient.
    for U_n, W_n, d_n, kt_n in zip(U.unbind(2), Wm.unbind(2), d_C.unbind(2), k_tail.unbind(2)):
        u = U_n - W_n @ S
        starts.append(S)
        deltas.append(u)
        S = d_n * S + kt_n @ u
    S_start = torch.stack(starts, dim=2)  # [B, H, N, K, V]
    U_new = torch.stack(deltas, dim=2)  # [B, H, N, C, V]
    o = Xq @ S_start + Aqk @ U_new
    o = o.reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)
    return o, S
