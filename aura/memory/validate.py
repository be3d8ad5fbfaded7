"""Argument checking shared by every entry point of the memory rule.

Bad input must never pass silently: each check raises ``ValueError`` naming the function, the argument
and its shape. Value checks (finite, ``g <= 0``, ``b, w`` in [0, 1]) are fused into one reduction with a
single host sync; only when it fails are the arguments inspected one by one to name the culprit.
"""

from __future__ import annotations

import functools
import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
STATE_DTYPES = (torch.float32, torch.float64)
_FLOAT_SET = frozenset(FLOAT_DTYPES)


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _check_tensor(fn: str, name: str, x, ndim: int, layout: str, dtypes=FLOAT_DTYPES) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{fn}: argument '{name}' must be a torch.Tensor {layout}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(
            f"{fn}: argument '{name}' has shape {_shape(x)} ({x.dim()} dims), expected {ndim} dims {layout}"
        )
    if x.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(
            f"{fn}: argument '{name}' (shape {_shape(x)}) has dtype {x.dtype}, expected one of {names}"
        )


def _check_same(
    fn: str, name: str, x: torch.Tensor, expected: tuple[int, ...], layout: str, ref: str
) -> None:
    if _shape(x) != expected:
        raise ValueError(
            f"{fn}: argument '{name}' has shape {_shape(x)}, expected {expected} = {layout} (from {ref})"
        )


def _check_device(fn: str, tensors: dict[str, torch.Tensor]) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    first_name, first = next(iter(devices.items()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(f"{fn}: argument '{name}' is on {dev}, but {first_name} is on {first}")


_PINNED: dict[tuple, torch.Tensor] = {}
_RAW_STREAM = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def raw_stream(device: int) -> int:
    """The current CUDA stream's handle on ``device``, through torch's private getter (Triton uses it too):
    it adds to every dispatched call and is a fraction of ``torch.cuda.current_stream()``'s host time
    (docs/memory.md, "Dispatch overhead")."""
    if _RAW_STREAM is not None:
        return _RAW_STREAM(device)
    return torch.cuda.current_stream(device).cuda_stream


@functools.lru_cache(maxsize=1)
def _value_flags_module():
    """``aura.memory.value_flags`` if Triton imports, else None (CPU-only installs: Triton is optional)."""
    try:
        import triton.language  # noqa: F401  (the third-party dependency; our module itself must import)
    except Exception:  # ImportError, or Triton failing to initialise without a GPU
        return None
    from aura.memory import value_flags

    return value_flags


def start_value_check(tensors: dict[str, torch.Tensor], stats: bool = False):
    """Launch the value check without a host sync; ``finish_value_check`` waits for it and raises.

    ``stats=False`` on CUDA (contiguous inputs, Triton importable): one fused Triton launch that yields only
    pass / fail per argument (``aura.memory.value_flags``; the kernel marks its own completion in pinned
    memory). Otherwise, and whenever the caller needs the numbers: one ``aminmax`` per tensor and one stack
    per dtype, copied to pinned host memory without blocking, with an event for when they are there. Either
    way the caller can queue its own kernels before waiting.
    """
    if not stats and all(t.is_cuda for t in tensors.values()):
        flags = _value_flags_module()
        if flags is not None and flags.supported(tensors):
            return "flags", flags.launch(tensors), None
    with torch.no_grad():
        groups: dict[torch.dtype, list[str]] = {}
        for name, t in tensors.items():
            groups.setdefault(t.dtype, []).append(name)
        pending = []
        for dtype, names in groups.items():
            vals = torch.stack([v for name in names for v in torch.aminmax(tensors[name].detach())])
            if vals.is_cuda:
                key = (dtype, vals.numel(), vals.device)
                host = _PINNED.get(key)
                if host is None:
                    host = _PINNED[key] = torch.empty(vals.numel(), dtype=dtype, pin_memory=True)
                host.copy_(vals, non_blocking=True)
                vals = host
            pending.append((names, vals))
        event = None
        if any(t.is_cuda for t in tensors.values()):
            event = torch.cuda.Event()
            event.record()
    return "stats", pending, event


def finish_value_check(fn: str, tensors: dict[str, torch.Tensor], started) -> dict[str, tuple[float, float]]:
    """Wait for ``start_value_check`` and raise ``ValueError`` naming the first bad argument.

    Returns ``{name: (min, max)}``, or ``{}`` after a fused pass / fail check that passed.
    """
    kind, pending, event = started
    if event is not None:
        event.synchronize()
    if kind == "flags":  # the kernel signals its own completion (see value_flags)
        if not _value_flags_module().bad_arguments(tensors, *pending):
            return {}
        # a violation: the exact check finds and names it
        _, pending, event = start_value_check(tensors, stats=True)
        if event is not None:
            event.synchronize()
    stats = {}
    for names, vals in pending:
        flat = vals.tolist()
        for i, name in enumerate(names):
            stats[name] = (float(flat[2 * i]), float(flat[2 * i + 1]))
    for name, t in tensors.items():
        lo, hi = stats[name]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = int((~torch.isfinite(t.detach())).sum())
            raise ValueError(f"{fn}: argument '{name}' (shape {_shape(t)}) has {bad} non-finite values")
        if name == "g" and hi > 0:
            raise ValueError(
                f"{fn}: argument 'g' (shape {_shape(t)}) is a log-decay and must be <= 0, max is {hi:.4g}"
            )
        if name in ("b", "w") and (lo < 0 or hi > 1):
            raise ValueError(
                f"{fn}: argument '{name}' (shape {_shape(t)}) is a gate and must lie in [0, 1], "
                f"range is [{lo:.4g}, {hi:.4g}]"
            )
    return stats


def check_values(fn: str, tensors: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Finite everywhere, ``g <= 0``, ``b`` and ``w`` in [0, 1]. Returns ``{name: (min, max)}``.

    One ``aminmax`` pass per tensor (NaN and +-inf propagate into it) and one host transfer per dtype, so
    the check stays cheap next to the kernels it guards; the slow per-element count runs only on failure.
    """
    return finish_value_check(fn, tensors, start_value_check(tensors, stats=True))


def check_scale(fn: str, scale, K: int) -> float:
    if scale is None:
        return K**-0.5
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: argument 'scale' must be a float or None, got {scale!r}") from None
    if not math.isfinite(s):
        raise ValueError(f"{fn}: argument 'scale' must be finite, got {s}")
    return s


def check_chunk_size(fn: str, chunk_size) -> int:
    """``chunk_size`` if it is a positive power of two, else ``ValueError`` naming ``fn``."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{fn}: argument 'chunk_size' must be a positive power of two, got {chunk_size!r}")
    if chunk_size & (chunk_size - 1):
        raise ValueError(f"{fn}: argument 'chunk_size' must be a power of two, got {chunk_size}")
    return chunk_size


def _sequence_dims(q, k, v, g, b, w, initial_state) -> tuple[int, ...] | None:
    """``(B, T, H, K, V)`` when every shape, dtype and device is right, else None (then the full check runs).

    The dispatch to fla adds this to every call, so the common case is one pass of cheap comparisons; the
    argument-by-argument checks below run only to find and name what is wrong.
    """
    try:
        qs, vs = q.shape, v.shape
        if len(qs) != 4 or len(vs) != 4 or vs[:3] != qs[:3] or 0 in qs or vs[3] < 1:
            return None
        if k.shape != qs or g.shape != qs or b.shape != qs or w.shape != vs:
            return None
        if not {q.dtype, k.dtype, v.dtype, g.dtype, b.dtype, w.dtype} <= _FLOAT_SET:
            return None
        devices = {q.device, k.device, v.device, g.device, b.device, w.device}
        if initial_state is not None:
            if initial_state.shape != (qs[0], qs[2], qs[3], vs[3]) or initial_state.dtype not in STATE_DTYPES:
                return None
            devices.add(initial_state.device)
        if len(devices) != 1:
            return None
    except AttributeError:  # not a tensor
        return None
    return (*qs, vs[3])


def sequence_tensors(q, k, v, g, b, w, initial_state=None) -> dict[str, torch.Tensor]:
    """The sequence arguments by the names the checks and their messages use (the state only if given)."""
    tensors = {"q": q, "k": k, "v": v, "g": g, "b": b, "w": w}
    if initial_state is not None:
        tensors["initial_state"] = initial_state
    return tensors


def check_sequence(fn, q, k, v, g, b, w, initial_state, validate_values: bool = True):
    """Check fla-layout sequence inputs; returns ``((B, T, H, K, V), stats or None)``."""
    dims = _sequence_dims(q, k, v, g, b, w, initial_state)
    if dims is None:  # something is wrong: find it and name it
        dims = _named_sequence_checks(fn, q, k, v, g, b, w, initial_state)
    if not validate_values:
        return dims, None
    return dims, check_values(fn, sequence_tensors(q, k, v, g, b, w, initial_state))


def _named_sequence_checks(fn, q, k, v, g, b, w, initial_state) -> tuple[int, ...]:
    """Argument by argument, raising ``ValueError`` at the first one that is wrong; returns the dims."""
    seq_qk, seq_v = "[B, T, H, K]", "[B, T, H, V]"
    _check_tensor(fn, "q", q, 4, seq_qk)
    B, T, H, K = _shape(q)
    if min(B, T, H, K) < 1:
        raise ValueError(f"{fn}: argument 'q' has shape {_shape(q)}; B, T, H and K must all be >= 1")
    for name, x in (("k", k), ("g", g), ("b", b)):
        _check_tensor(fn, name, x, 4, seq_qk)
        _check_same(fn, name, x, (B, T, H, K), seq_qk, "q")
    _check_tensor(fn, "v", v, 4, seq_v)
    V = v.shape[-1]
    if V < 1:
        raise ValueError(f"{fn}: argument 'v' has shape {_shape(v)}; V must be >= 1")
    _check_same(fn, "v", v, (B, T, H, V), seq_v, "q and v")
    _check_tensor(fn, "w", w, 4, seq_v)
    _check_same(fn, "w", w, (B, T, H, V), seq_v, "q and v")
    if initial_state is not None:
        _check_tensor(fn, "initial_state", initial_state, 4, "[B, H, K, V]", STATE_DTYPES)
        _check_same(fn, "initial_state", initial_state, (B, H, K, V), "[B, H, K, V]", "q and v")
    _check_device(fn, sequence_tensors(q, k, v, g, b, w, initial_state))
    return B, T, H, K, V


def check_step(fn, q, k, v, g, b, w, state, validate_values: bool = True):
    """Check single-step inputs (q, k, g, b ``[B, H, K]``; v, w ``[B, H, V]``); returns ``(B, H, K, V)``."""
    tensors = {"q": q, "k": k, "v": v, "g": g, "b": b, "w": w, "state": state}
    dims = _step_dims(fn, tensors)
    if validate_values:
        check_values(fn, tensors)
    return dims


def check_write(fn, k, v, g, b, w, state):
    """Shapes, dtypes and devices of a factored write (k, g, b ``[B, H, K]``; v, w ``[B, H, V]``; state
    ``[B, H, K, V]``); returns ``(B, H, K, V)``. No value checks: plain Python on the (static) shapes, so
    an ONNX export traces through it."""
    return _step_dims(fn, {"k": k, "v": v, "g": g, "b": b, "w": w, "state": state})


def _step_dims(fn, tensors: dict) -> tuple[int, int, int, int]:
    """The shape checks of one step; the first argument (q, or k for a write) sets B, H and K."""
    st_qk, st_v = "[B, H, K]", "[B, H, V]"
    first = next(iter(tensors))
    x0 = tensors[first]
    _check_tensor(fn, first, x0, 3, st_qk)
    B, H, K = _shape(x0)
    if min(B, H, K) < 1:
        raise ValueError(f"{fn}: argument '{first}' has shape {_shape(x0)}; B, H and K must all be >= 1")
    for name in ("k", "g", "b"):
        if name != first:
            _check_tensor(fn, name, tensors[name], 3, st_qk)
            _check_same(fn, name, tensors[name], (B, H, K), st_qk, first)
    v = tensors["v"]
    _check_tensor(fn, "v", v, 3, st_v)
    V = v.shape[-1]
    ref = f"{first} and v"
    _check_same(fn, "v", v, (B, H, V), st_v, ref)
    _check_tensor(fn, "w", tensors["w"], 3, st_v)
    _check_same(fn, "w", tensors["w"], (B, H, V), st_v, ref)
    _check_tensor(fn, "state", tensors["state"], 4, "[B, H, K, V]", STATE_DTYPES)
    _check_same(fn, "state", tensors["state"], (B, H, K, V), "[B, H, K, V]", ref)
    _check_device(fn, tensors)
    return B, H, K, V


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32 (half inputs are accumulated in float32)."""
    return (
        torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32
    )
