"""The memory rule's value check as ONE Triton launch, for the CUDA dispatch to fla.

The torch check (``aura.memory.validate``: one ``aminmax`` per tensor, a stack per dtype, a pinned copy)
is exact but its host time is a large fraction of fla's own forward at AURA's sizes (docs/memory.md,
"Validation" and "Dispatch overhead"). Here one kernel tests every element of every argument against its
rule,

    finite:         x - x == 0           (false for NaN and +-inf)
    g (log-decay):  finite and g <= 0
    b, w (gates):   0 <= x <= 1          (false for NaN)

and every program that finds a violation in argument i stores the call's ``epoch`` into slot i of a small
pinned host buffer (plain stores of one value, no zeroing between calls). The kernel also says when it is
done: each program, after a CTA barrier, adds 1 to a device counter with a system-scope acquire-release
atomic, and the last one (it reads ``num_programs - 1``) resets the counter and stores ``epoch`` into the
``done`` slot. The host spins on that slot instead of recording and waiting on a CUDA event (which costs
more host time), so the read overlaps fla's kernels. It yields only pass / fail per argument; on a
failure the exact torch check runs to name the argument and its numbers. Naive twin: the torch check
(tests/memory/test_memory_value_flags.py compares both, on CUDA and in Triton's interpreter).

Launch cost is the point of this module (it adds to every dispatched call), and Triton's Python launcher
(binding, specialisation key, cache lookup) costs more host time than the kernel takes on the GPU. So the
kernel is compiled without value specialisation (sizes, epoch, pointer alignment), which makes one compiled
variant per (device, dtypes, rules), and after the first launch of a variant its compiled kernel is
launched directly (``_fast_run``). The JIT path (``check_kernel``) stays the fallback and the reference
(``launch(..., fast=False)``; both tested on CUDA).
"""

from __future__ import annotations

import functools
import threading
import time

import torch
import triton
import triton.language as tl
from triton import knobs

from aura.memory.validate import raw_stream

SLOTS = 8
DONE = SLOTS  # index of the completion slot in the pinned buffer
_DONE = tl.constexpr(DONE)  # the same, as the kernel may read it
KIND = {"g": 2, "b": 3, "w": 3}  # every other argument: 1 (finite); 0 marks an unused slot
BLOCK = 2048
WAIT_S = 0.05  # spin this long for the done slot before synchronising the device


@triton.jit
def _flag(x_ptr, n, offs, out_ptr, epoch, KIND: tl.constexpr):
    if KIND > 0:
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m, other=0)
        if not x.dtype.is_fp64():
            x = x.to(tl.float32)  # exact for half types, and their arithmetic is not native everywhere
        if KIND == 1:
            bad = (x - x) != 0
        elif KIND == 2:
            bad = ((x - x) != 0) | (x > 0)
        else:
            bad = ~((x >= 0) & (x <= 1))
        if tl.max((bad & m).to(tl.int32), axis=0) > 0:
            tl.store(out_ptr, epoch)


_N = [f"n{i}" for i in range(SLOTS)]


@triton.jit(do_not_specialize=[*_N, "epoch"], do_not_specialize_on_alignment=[f"x{i}" for i in range(SLOTS)])
def check_kernel(
    x0, x1, x2, x3, x4, x5, x6, x7,
    n0, n1, n2, n3, n4, n5, n6, n7,
    out_ptr, count_ptr, epoch,
    K0: tl.constexpr, K1: tl.constexpr, K2: tl.constexpr, K3: tl.constexpr,
    K4: tl.constexpr, K5: tl.constexpr, K6: tl.constexpr, K7: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _flag(x0, n0, offs, out_ptr + 0, epoch, K0)
    _flag(x1, n1, offs, out_ptr + 1, epoch, K1)
    _flag(x2, n2, offs, out_ptr + 2, epoch, K2)
    _flag(x3, n3, offs, out_ptr + 3, epoch, K3)
    _flag(x4, n4, offs, out_ptr + 4, epoch, K4)
    _flag(x5, n5, offs, out_ptr + 5, epoch, K5)
    _flag(x6, n6, offs, out_ptr + 6, epoch, K6)
    _flag(x7, n7, offs, out_ptr + 7, epoch, K7)
    tl.debug_barrier()  # every thread's flag store precedes the release below
    if tl.atomic_add(count_ptr, 1, sem="acq_rel", scope="sys") == tl.num_programs(0) - 1:
        tl.atomic_xchg(count_ptr, 0, sem="relaxed", scope="gpu")  # ready for the next call on this stream
        tl.store(out_ptr + _DONE, epoch)


# (device, stream, thread) -> (pinned slots, their numpy view, device counter)
_PER_STREAM: dict[tuple, tuple] = {}
COMPILED: dict[tuple, object] = {}  # (device, dtypes, rules) -> Triton CompiledKernel
_EPOCH = [0]


def supported(tensors: dict[str, torch.Tensor]) -> bool:
    """On CUDA (or the CPU under the interpreter), contiguous, at most ``SLOTS`` arguments."""
    return len(tensors) <= SLOTS and all(t.is_contiguous() for t in tensors.values())


@functools.lru_cache(maxsize=64)
def _kinds(names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(KIND.get(n, 1) for n in names) + (0,) * (SLOTS - len(names))


def launch(tensors: dict[str, torch.Tensor], fast: bool = True):
    """Queue the check on the current stream; returns ``(slots, epoch, view)`` for :func:`bad_arguments`.

    Slot i == epoch marks argument i bad once slot ``DONE`` == epoch. Host time matters here (it adds to
    every dispatched call), hence the cached buffers, rule codes and compiled kernels; ``fast=False``
    always goes through Triton's JIT launcher.
    """
    xs = list(tensors.values())
    first = xs[0]
    cuda = first.is_cuda
    dev = first.get_device()
    stream = raw_stream(dev) if cuda else 0
    # one buffer and counter per (device, stream, thread): concurrent callers never share slots
    key = (dev, stream, threading.get_ident())
    held = _PER_STREAM.get(key)
    if held is None:
        out = torch.zeros(SLOTS + 1, dtype=torch.int32, pin_memory=cuda)
        count = torch.zeros(1, dtype=torch.int32, device=first.device)
        # with unified addressing a pinned buffer's host address is also its device address
        held = _PER_STREAM[key] = (out, out.numpy(), count, out.data_ptr(), count.data_ptr())
    out, view, count, out_ptr, count_ptr = held
    _EPOCH[0] = epoch = _EPOCH[0] % 0x7FFFFFFF + 1
    pad = SLOTS - len(xs)
    ns = [t.numel() for t in xs] + [0] * pad
    grid = -(-max(ns) // BLOCK)  # not triton.cdiv: its call is host time on every dispatch
    kinds = _kinds(tuple(tensors))
    # int arguments are typed i32 or i64 by value, so the width is part of the variant
    variant = (dev, tuple([t.dtype for t in xs]), kinds, max(ns) >= 1 << 31)
    kernel = COMPILED.get(variant) if fast else None
    # the direct launch takes addresses (ints), which spares the launcher a data_ptr() call and a driver
    # pointer query per argument; unused slots get 0 (never read: their rule code is 0)
    if kernel is None or not _fast_run(
        kernel, grid, stream, ([t.data_ptr() for t in xs] + [0] * pad, ns, out_ptr, count_ptr, epoch, kinds)
    ):
        xs += [first] * pad
        kernel = check_kernel[(grid,)](*xs, *ns, out, count, epoch, *kinds, BLOCK=BLOCK)
        if fast and cuda and all(hasattr(kernel, a) for a in ("run", "function", "packed_metadata")):
            COMPILED[variant] = kernel
    return out, epoch, view


def _fast_run(kernel, grid: int, stream: int, parts: tuple) -> bool:
    """Launch a compiled variant as Triton's JIT would, minus its per-call binding. False: use the JIT.

    Valid because the variant key holds everything the kernel was specialised on (device, argument dtypes,
    the constexpr rule codes; no value or alignment specialisation). A launch hook (a profiler) keeps the
    JIT, which feeds it; Triton's hook slots are chains that are empty unless one is installed.
    """
    enter, leave = knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook
    if getattr(enter, "calls", enter) or getattr(leave, "calls", leave):
        return False
    ptrs, ns, out_ptr, count_ptr, epoch, kinds = parts
    kernel.run(
        grid, 1, 1, stream, kernel.function, kernel.packed_metadata, None, None, None,
        *ptrs, *ns, out_ptr, count_ptr, epoch, *kinds, BLOCK,
    )  # fmt: skip
    return True


def bad_arguments(tensors: dict[str, torch.Tensor], slots: torch.Tensor, epoch: int, view) -> list[str]:
    """Names whose slot holds this call's epoch, once the kernel has marked itself done.

    Spins on the pinned ``done`` slot; after ``WAIT_S`` (work queued earlier on the stream can delay the
    check) it falls back to synchronising the device, and a kernel that still has not finished is an error.
    """
    if view[DONE] != epoch:
        deadline = time.perf_counter() + WAIT_S
        while view[DONE] != epoch and time.perf_counter() < deadline:
            pass
        if view[DONE] != epoch and slots.is_pinned():
            torch.cuda.synchronize()
        if view[DONE] != epoch:
            raise RuntimeError("aura.memory value check: the check kernel did not complete")
    return [name for i, name in enumerate(tensors) if view[i] == epoch]
