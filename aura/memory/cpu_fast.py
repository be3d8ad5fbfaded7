"""Gated DeltaNet-2 on the CPU through a fused C kernel (``cpu_kernel.c``), forward and backward.

The rule, per head, with state S in R^{d_k x d_v} (rows are key dimensions), as in ``aura.memory.naive``:

    a_t = exp(g_t),  S' = Diag(a_t) S_{t-1},  kb_t = b_t * k_t
    u_t = w_t * v_t - S'^T kb_t,  S_t = S' + k_t u_t^T,  o_t = S_t^T (s q_t)

The kernel runs this recurrence token by token with S (32 x 32 at AURA's size: 4 KB in float32) in a
local buffer that stays in L1, two fused passes over S per token. At d = 32 this beats the chunkwise form,
whose cost on a CPU is many small tensor ops rather than arithmetic. a_t is computed inside the kernel
(its own vectorised exp), so a call runs no torch op big enough to wake torch's OpenMP threads, which
would then spin on the second core while the kernel's threads need it. Forward saves S at the start of
every ``CHUNK`` tokens (and S_T); backward recomputes each chunk's states from its checkpoint (never running
the recurrence backwards: dividing by a_t is unstable) and applies, token by token in reverse, with
incoming dS = dL/dS_t (dS_T given, or 0):

    dq_t = s S_t do_t;   dS += s q_t do_t^T;   dk_t = dS u_t;   du = dS^T k_t
    dw_t = du * v_t;     dv_t = du * w_t;      dS' = dS - kb_t du^T
    dkb = -S' du  (db_t = dkb * k_t,  dk_t += dkb * b_t);   dg_t = a_t * rowsum(S_{t-1} * dS')
    dS <- Diag(a_t) dS'                         (dL/dS_{t-1}; after t = 1 it is d initial_state)

The library is compiled on first use with the system C compiler (``$CC`` or ``cc``; no torch headers,
so the build takes seconds: docs/memory.md, "The CPU kernel") into a cache directory
(``AURA_KERNEL_CACHE``, default ``~/.cache/aura/kernels``) under a name hashing source, flags, compiler
version and CPU, so an edit or another machine rebuilds it. It is built to a temporary name and renamed
into place (atomic, so concurrent builds and crashes never leave a partial file under the final name); a
cached file that fails to load is rebuilt once. ``available()`` says whether the kernel can be used; when
it cannot (no compiler, build error), it logs one warning with the reason and callers fall back to the
torch chunk form. Work is split over ``torch.get_num_threads()`` Python threads, whole sequences (batch
row, head) per thread: ctypes releases the GIL during the call, and each sequence is computed by one
thread with the same code, so results are bit-identical whatever the thread count.

The forward also checks the values (the rules of ``aura.memory.validate``) as it loads each row, one
flag per argument and sequence; only when a flag is set does the exact torch check run, to name the
argument. A separate check would read every input a second time (docs/memory.md has what that costs).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import itertools
import logging
import os
import platform
import shutil
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from aura.memory.validate import check_scale, check_sequence, check_values, compute_dtype, sequence_tensors

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernel.c")
HEADERS = (SOURCE.with_name("cpu_kernel_ops.h"),)  # included by SOURCE; part of the cache key
# Not -ffast-math: it drops NaN/inf semantics and reassociates sums, which the float64 checks would see.
# No -fopenmp: torch ships its own libgomp, and two OpenMP runtimes in one process clash.
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno")
ABI_VERSION = 5
ENV_CACHE = "AURA_KERNEL_CACHE"
# Tokens between checkpoints: the backward's scratch is CHUNK states (64 x 4 KB at d = 32, float32), sized
# to stay in a 512 KB L2 while a chunk is back-propagated.
CHUNK = 64
# Bit i of the forward's per-sequence value flags names argument i (cpu_kernel.c: F_Q.. F_S0).
FLAG_NAMES = ("q", "k", "v", "g", "b", "w", "initial_state")
_DTYPES = {torch.float32: ("f32", ctypes.c_float), torch.float64: ("f64", ctypes.c_double)}
_build_lock = threading.Lock()


class BuildError(RuntimeError):
    """The kernel could not be compiled or loaded (the message says why)."""


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "aura" / "kernels")


def compiler() -> str:
    """The C compiler's path: ``$CC`` or ``cc`` on PATH, else :class:`BuildError`."""
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise BuildError(f"no C compiler ('{cc}' is not on PATH; set $CC)")
    return path


def _cpu_id() -> str:
    """What -march=native depends on: the CPU model and feature flags (Linux), else the platform string."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def library_path(cc: str, directory: Path | None = None) -> Path:
    """Cache path: a hash of the source, flags, compiler version and CPU."""
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"C compiler '{cc}' does not run: {e}") from None
    try:
        source = b"".join(f.read_bytes() for f in (SOURCE, *HEADERS))
    except OSError as e:
        raise BuildError(f"kernel source not readable (installed without package data?): {e}") from None
    h = hashlib.sha256()
    for part in (source, " ".join(FLAGS).encode(), version.encode(), _cpu_id().encode()):
        h.update(part)
        h.update(b"\0")
    return (directory or cache_dir()) / f"gdn2_cpu_{h.hexdigest()[:16]}.so"


def build(directory: Path | None = None, force: bool = False) -> tuple[Path, bool]:
    """Compile the kernel unless cached; returns ``(path, compiled)``. Raises :class:`BuildError`."""
    cc = compiler()
    path = library_path(cc, directory)
    if path.exists() and not force:
        return path, False
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    cmd = [cc, *FLAGS, "-o", str(tmp), str(SOURCE)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise BuildError(f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n{res.stderr[-2000:]}")
        os.replace(tmp, path)
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"compiling {SOURCE.name} failed: {e}") from None
    finally:
        with contextlib.suppress(OSError):  # gone after the rename, or its directory never existed
            tmp.unlink()
    return path, True


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.gdn2_abi_version() != ABI_VERSION:
        raise BuildError(f"{path} has ABI version {lib.gdn2_abi_version()}, expected {ABI_VERSION}")
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for suffix, real in _DTYPES.values():
        fwd, bwd = getattr(lib, f"gdn2_fwd_{suffix}"), getattr(lib, f"gdn2_bwd_{suffix}")
        fwd.argtypes = [p] * 11 + [i64] * 6 + [real, i64, i64]
        bwd.argtypes = [p] * 16 + [i64] * 6 + [real, i64, i64]
        fwd.restype = bwd.restype = ctypes.c_int
        getattr(lib, f"gdn2_exp_{suffix}").argtypes = [p, p, i64]
    return lib


def load(directory: Path | None = None) -> ctypes.CDLL:
    """Build if needed and load; a cached library that fails to load (corrupt, truncated) is rebuilt once."""
    with _build_lock:
        path, compiled = build(directory)
        try:
            return _open(path)
        except (OSError, AttributeError, BuildError) as e:
            if compiled:
                raise BuildError(f"the freshly built {path} does not load: {e}") from None
            log.info("cached kernel %s does not load (%s); rebuilding", path, e)
        path, _ = build(directory, force=True)
        try:
            return _open(path)
        except (OSError, AttributeError) as e:
            raise BuildError(f"the rebuilt {path} does not load: {e}") from None


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernel library, built on the first call; None (after one warning) if it cannot be built."""
    try:
        return load()
    except BuildError as e:
        log.warning("aura.memory.cpu_fast: the C kernel is unavailable, using the torch form: %s", e)
        return None


def available() -> bool:
    """Whether the C kernel is usable here (built and loaded on the first call; the answer is cached)."""
    return library() is not None


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0  # a forked child inherits the pool object but not its threads: it makes its own
# Pieces per thread: the threads pull pieces of sequences as they finish, so one slowed by other work on
# its core (2 shared cores here) does not hold up the call; each sequence is still computed whole by one
# thread with the same code, so the split never changes a bit of the result.
PIECES_PER_THREAD = 4


def _run_split(fn, n_seq: int) -> None:
    """Call ``fn(seq0, seq1)`` over all n_seq sequences, on ``torch.get_num_threads()`` threads."""
    global _pool, _pool_size, _pool_pid
    n = max(1, min(torch.get_num_threads(), n_seq))
    if n == 1:
        if fn(0, n_seq):
            raise MemoryError("gdn2_cpu: the C kernel could not allocate its scratch buffers")
        return
    pieces = min(n_seq, n * PIECES_PER_THREAD)
    bounds = [n_seq * i // pieces for i in range(pieces + 1)]
    ticket = itertools.count()  # next() on a count is atomic under the GIL

    def worker() -> int:
        failed = 0
        while (i := next(ticket)) < pieces:
            failed |= fn(bounds[i], bounds[i + 1])
        return failed

    if _pool is None or _pool_size < n - 1 or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="aura-gdn2")
        _pool_size, _pool_pid = n - 1, os.getpid()
    futures = [_pool.submit(worker) for _ in range(n - 1)]
    failed = worker()
    if failed | any(f.result() for f in futures):
        raise MemoryError("gdn2_cpu: the C kernel could not allocate its scratch buffers")


def kernel_exp(x: torch.Tensor) -> torch.Tensor:
    """e^x by the kernel's own vectorised exp (float32 or float64 CPU tensor); for its test against torch."""
    x = x.contiguous()
    y = torch.empty_like(x)
    getattr(library(), f"gdn2_exp_{_DTYPES[x.dtype][0]}")(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def _ptr(x: torch.Tensor | None):
    return None if x is None else x.data_ptr()


def flagged(flags: torch.Tensor) -> list[str]:
    """Names of the arguments whose bit is set in any sequence's value flags (``FLAG_NAMES`` order)."""
    if not bool(flags.any()):  # the common case: one small reduction, no Python loop over sequences
        return []
    bits = 0
    for f in flags.tolist():
        bits |= f
    return [name for i, name in enumerate(FLAG_NAMES) if bits >> i & 1]


class GDN2CPU(torch.autograd.Function):
    """``(o, S_T, flags)`` from the C kernel; inputs in the compute dtype, contiguous (see :func:`gdn2_cpu`).

    flags: int32 ``[B H]``, each sequence's value flags (bit i: argument ``FLAG_NAMES[i]`` breaks its rule),
    for :func:`flagged`; not differentiable.
    """

    @staticmethod
    def forward(ctx, q, k, v, g, b, w, S0, scale, o_dtype):
        lib = library()
        B, T, H, K = q.shape
        V = v.shape[-1]
        suffix, real = _DTYPES[q.dtype]
        Cs = CHUNK
        N = -(-T // Cs)
        o = torch.empty(B, T, H, V, dtype=q.dtype)
        ckpt = torch.empty(B, H, N, K, V, dtype=q.dtype)
        S_T = torch.empty(B, H, K, V, dtype=q.dtype)
        flags = torch.empty(B * H, dtype=torch.int32)  # every sequence writes its own entry
        fwd = getattr(lib, f"gdn2_fwd_{suffix}")
        ptrs = [_ptr(x) for x in (q, k, v, g, b, w, S0, o, ckpt, S_T, flags)]
        _run_split(lambda s0, s1: fwd(*ptrs, B, T, H, K, V, Cs, real(scale), s0, s1), B * H)
        ctx.save_for_backward(q, k, v, g, b, w, ckpt)
        ctx.scale, ctx.chunk, ctx.has_S0, ctx.in_dtype = scale, Cs, S0 is not None, q.dtype
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(flags)
        return o.to(o_dtype), S_T, flags

    @staticmethod
    def backward(ctx, do, dST, dflags):
        q, k, v, g, b, w, ckpt = ctx.saved_tensors
        B, T, H, K = q.shape
        V = v.shape[-1]
        ct = ctx.in_dtype
        suffix, real = _DTYPES[ct]
        do = torch.zeros_like(v) if do is None else do.to(ct).contiguous()
        dST = None if dST is None else dST.to(ct).contiguous()
        dq, dk, dg, db = (torch.empty_like(q) for _ in range(4))
        dv, dw = torch.empty_like(v), torch.empty_like(v)
        dS0 = torch.empty(B, H, K, V, dtype=ct) if ctx.has_S0 else None
        bwd = getattr(library(), f"gdn2_bwd_{suffix}")
        ptrs = [_ptr(x) for x in (q, k, v, g, b, w, ckpt, do, dST, dq, dk, dv, dg, db, dw, dS0)]
        _run_split(lambda s0, s1: bwd(*ptrs, B, T, H, K, V, ctx.chunk, real(ctx.scale), s0, s1), B * H)
        return dq, dk, dv, dg, db, dw, dS0, None, None


def gdn2_cpu(
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
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """GDN-2 through the C kernel; same contract as :func:`aura.memory.gdn2_recurrent` on CPU tensors.

    Computes in float64 if any input is float64, else float32. Returns ``(o, S_T)``: o in q's dtype, S_T
    ``[B, H, K, V]`` in the compute dtype if ``output_final_state`` else None. Differentiable in every
    input (including ``initial_state``, and through S_T). Requires :func:`available`.

    ``validate``: the kernel's forward tests every element as it loads it (finite everywhere, g <= 0,
    b and w in [0, 1]); when an argument fails, the exact torch check
    (:func:`aura.memory.validate.check_values`) runs on the inputs and raises its ``ValueError`` (naming
    the argument and its range). The casts to the compute dtype only widen, so the kernel sees the
    caller's values exactly and the two checks agree.
    """
    fn = "gdn2_cpu"
    (B, T, H, K, V), _ = check_sequence(fn, q, k, v, g, b, w, initial_state, False)
    s = check_scale(fn, scale, K)
    if q.device.type != "cpu":
        raise ValueError(f"{fn}: inputs must be on the CPU, got {q.device}")
    if not available():
        raise RuntimeError(f"{fn}: the C kernel is unavailable here (see the warning logged by cpu_fast)")
    ct = compute_dtype(q, k, v, g, b, w, initial_state)
    return run(fn, sequence_tensors(q, k, v, g, b, w, initial_state), s, ct, output_final_state, validate)


def run(fn: str, tensors: dict[str, torch.Tensor], scale: float, ct: torch.dtype, output_final_state: bool,
        validate: bool = True):  # fmt: skip
    """:func:`gdn2_cpu` after its argument checks, for callers that have made them (``gdn2_chunk``):
    ``tensors`` from ``sequence_tensors``, ``scale`` resolved, ``ct`` the compute dtype."""
    q = tensors["q"]
    xs = [tensors[n].to(ct).contiguous() for n in ("q", "k", "v", "g", "b", "w")]
    S0 = tensors.get("initial_state")
    S0 = None if S0 is None else S0.to(ct).contiguous()
    o, S, flags = GDN2CPU.apply(*xs, S0, scale, q.dtype)
    if validate and (bad := flagged(flags)):
        check_values(fn, tensors)
        raise ValueError(
            f"{fn}: the C kernel flagged argument '{bad[0]}' (shape {tuple(tensors[bad[0]].shape)}) as "
            "breaking its value rule, but the exact check passed"
        )
    return o, (S if output_final_state else None)
