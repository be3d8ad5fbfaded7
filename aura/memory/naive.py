"""The Gated DeltaNet-2 rule, written as plainly as possible: the spec every fast form is tested against.

One step, for one head, with state S in R^{d_k x d_v} (rows are key dimensions):

    S'  = Diag(alpha_t) S_{t-1},                      alpha_t = exp(g_t) in (0, 1]^{d_k}
    u_t = w_t * v_t - S'^T (b_t * k_t)                (what the memory should hold minus what it does)
    S_t = S' + k_t u_t^T
        = (I - k_t (b_t * k_t)^T) Diag(alpha_t) S_{t-1} + k_t (w_t * v_t)^T
    o_t = S_t^T (s q_t),                              s = d_k^{-1/2} unless given

b_t in [0, 1]^{d_k} is the erase gate, w_t in [0, 1]^{d_v} the write gate, g_t <= 0 the log-decay.
q and k are expected L2-normalised by the caller (fla's ``use_qk_l2norm_in_kernel=False``).
Tensors use fla's layout: q, k, g, b ``[B, T, H, K]``; v, w ``[B, T, H, V]``; state ``[B, H, K, V]``.
"""

from __future__ import annotations

import torch

from aura.contract import BYTES_PER_ELEMENT, StateLayout
from aura.memory.guard import state_norm_scale
from aura.memory.validate import check_scale, check_sequence, check_step, check_write, compute_dtype


def gdn2_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    *,
    max_norm: float | None = None,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Naive recurrent GDN-2, one token at a time (see the module docstring for the math).

    Computes in float64 if any input is float64, else in float32. Returns ``(o, S_T)``: o ``[B, T, H, V]``
    in q's dtype, and the final state ``[B, H, K, V]`` in the compute dtype if ``output_final_state`` else
    None. ``validate=False`` skips the value checks (finite, g <= 0, gates in [0, 1]), not the shape checks.
    ``max_norm`` applies the norm guard (``aura.memory.guard``) after every step, before the read.
    """
    fn = "gdn2_recurrent"
    (B, T, H, K, V), _ = check_sequence(fn, q, k, v, g, b, w, initial_state, validate)
    s = check_scale(fn, scale, K)
    if max_norm is not None:
        state_norm_scale(q.new_ones(1, 1, 1, 1), max_norm)  # argument check before the loop
    ct = compute_dtype(q, k, v, g, b, w, initial_state)
    q, k, v, g, b, w = (x.to(ct) for x in (q, k, v, g, b, w))
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(ct)
    outs = []
    # unbind, not x[:, t]: the backward of each select would zero-fill a full-size gradient (O(T^2)).
    for q_t, k_t, v_t, g_t, b_t, w_t in zip(*(x.unbind(1) for x in (q, k, v, g, b, w))):
        S = S * g_t.exp().unsqueeze(-1)
        u = w_t * v_t - ((b_t * k_t).unsqueeze(-1) * S).sum(-2)
        S = S + k_t.unsqueeze(-1) * u.unsqueeze(-2)
        if max_norm is not None:
            S = S * state_norm_scale(S, max_norm)
        outs.append(((q_t * s).unsqueeze(-1) * S).sum(-2))
    o = torch.stack(outs, dim=1).to(q.dtype if q.dtype != ct else ct)
    return o, (S if output_final_state else None)


def gdn2_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    state: torch.Tensor,
    scale: float | None = None,
    *,
    out: torch.Tensor | None = None,
    max_norm: float | None = None,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched GDN-2 step for inference: ``(o_t [B, H, V], S_t [B, H, K, V]) = step(..., S_{t-1})``.

    q, k, g, b are ``[B, H, K]``; v, w ``[B, H, V]``; ``state`` is float32 or float64 and sets the compute
    dtype. Without autograd the only allocations of state size are the outputs: the new state is written
    into ``out`` if given (which may be ``state`` itself, for an in-place update in a fixed-memory loop),
    else into one fresh tensor, and the rank-1 update is applied in place (``baddbmm_``), so no
    ``K x V`` temporary exists. With autograd (an input requires grad) it takes the functional path.
    ``max_norm`` rescales each head's new state to ||S_t||_F <= max_norm before the read (the guard of
    ``aura.memory.guard``; bit-identical below the threshold).
    """
    fn = "gdn2_step"
    B, H, K, V = check_step(fn, q, k, v, g, b, w, state, validate)
    s = check_scale(fn, scale, K)
    dt = state.dtype
    BH = B * H
    q_dtype = q.dtype
    q, k, v, g, b, w = (x.to(dt) for x in (q, k, v, g, b, w))
    decay = g.exp().unsqueeze(-1)
    bk = (b * k).reshape(BH, 1, K)
    wv = (w * v).reshape(BH, 1, V)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, g, b, w, state))
    if needs_grad:
        if out is not None:
            raise ValueError(f"{fn}: argument 'out' cannot be used while autograd records (inputs need grad)")
        S1 = (state * decay).reshape(BH, K, V)
        u = torch.baddbmm(wv, bk, S1, alpha=-1)
        new = torch.baddbmm(S1, k.reshape(BH, K, 1), u)
        if max_norm is not None:
            new = new * state_norm_scale(new, max_norm)
    else:
        if out is None:
            out = torch.empty((B, H, K, V), dtype=dt, device=state.device)
        elif not isinstance(out, torch.Tensor) or out.shape != state.shape or out.dtype != dt:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{fn}: argument 'out' has shape {got}, expected {tuple(state.shape)} {dt}")
        elif not out.is_contiguous() or out.device != state.device:
            raise ValueError(
                f"{fn}: argument 'out' (shape {tuple(out.shape)}) must be contiguous on {state.device}"
            )
        torch.mul(state, decay, out=out)
        new = out.view(BH, K, V)
        update_(new, bk, wv, k.reshape(BH, K, 1))
        if max_norm is not None:
            new.mul_(state_norm_scale(new, max_norm))
    o = torch.bmm((q * s).reshape(BH, 1, K), new).reshape(B, H, V)
    return o.to(q_dtype), new.reshape(B, H, K, V)


def gdn2_write(
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    state: torch.Tensor,
    *,
    max_norm: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One GDN-2 write in factored form: ``(decay [B, H, K], delta [B, H, V], new_state [B, H, K, V])``.

    k, g, b are ``[B, H, K]``; v, w ``[B, H, V]``; state S ``[B, H, K, V]``. The op order is fixed (it is
    the layer's write, and a journal replays it): decay = e^g, S' = decay * S (per key row), delta =
    w*v - S'^T (b*k), new = S' + k delta^T. ``max_norm`` folds the norm guard's per-head factor
    c = ``state_norm_scale(new, max_norm)`` into the factors (decay * c, delta * c) and rebuilds new from
    them, so that always ``new == decay[..., :, None] * S + k[..., :, None] * delta[..., None, :]`` bit
    for bit (without the guard too, where S' is that product). c is exactly 1 below the threshold.

    Shapes, dtypes and devices are checked (``ValueError`` naming the argument), values are not, and
    nothing branches on tensor values: exportable by torch.onnx (dynamo, opset 18). For a step with value
    checks and the read, use :func:`gdn2_step`.
    """
    check_write("gdn2_write", k, v, g, b, w, state)
    decay = torch.exp(g)
    s_dec = decay[..., :, None] * state
    wv = w * v
    delta = wv - torch.einsum("bhkv,bhk->bhv", s_dec, b * k)
    new = s_dec + k[..., :, None] * delta[..., None, :]
    if max_norm is not None:
        c = state_norm_scale(new, max_norm)[..., 0]  # [B, H, 1]
        decay, delta = decay * c, delta * c
        new = decay[..., :, None] * state + k[..., :, None] * delta[..., None, :]
    return decay, delta, new


def update_(S: torch.Tensor, bk: torch.Tensor, wv: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """In place, on an already decayed state S' ``[N, K, V]``: u = w*v - S'^T (b*k); S' += k u^T. Returns u.

    ``bk`` is ``[N, 1, K]``, ``wv`` ``[N, 1, V]``, ``k`` ``[N, K, 1]``; no validation (the callers check).
    """
    u = torch.baddbmm(wv, bk, S, alpha=-1)
    S.baddbmm_(k, u)
    return u


def state_bytes(d_key: int, d_val: int, heads: int = 1, *, bytes_per_element: int = 4) -> int:
    """Bytes of AURA's deployable memory state: ``heads * (d_key * d_val + d_val) * bytes_per_element``.

    Per head: the d_key x d_val fast-weight matrix S plus the d_val auxiliary row that ``aura.layer`` keeps
    beside it (the layout of ``aura.contract.StateLayout``, whose ``state_bytes`` this is at 4 bytes per
    element). float32 by default: 4,224 bytes at 32 x 32, one head.
    """
    for name, x in (
        ("d_key", d_key),
        ("d_val", d_val),
        ("heads", heads),
        ("bytes_per_element", bytes_per_element),
    ):
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            raise ValueError(f"state_bytes: argument '{name}' must be a positive int, got {x!r}")
    return StateLayout(heads, d_key, d_val).state_bytes // BYTES_PER_ELEMENT * bytes_per_element
