"""The memory-rule benchmark behind ``aura bench memory``: the naive loop vs the torch chunk form and the C
kernel (vs fla on CUDA).

Shapes (fla layout): B64 T520 H1 d32 and B16 T4096 H1 d32. Rows report the median wall time over ``reps``
timed calls after a warm-up (CUDA: synchronised before and after each call). On CUDA it also times fla's
``chunk_gdn2`` called directly and ``gdn2_chunk`` dispatching to it; their ratio is the dispatch overhead
(validation, one host sync). On a CPU with a C compiler it times ``cpu_kernel``: the fused C kernel
(``aura.memory.cpu_fast``) through ``gdn2_chunk(backend="c")``, value check included, as
``backend="auto"`` runs on a CPU. Forward and fwd+bwd rows; :func:`bench_memory` prints a table and writes
JSON. The command line is ``cli/bench_memory.py``; results and their reading are in docs/memory.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from aura.memory import cpu_fast, gdn2_chunk, gdn2_recurrent
from aura.memory.chunk import CPU_CHUNK, fla_chunk_gdn2

SHAPES = [(64, 520, 1, 32, 32), (16, 4096, 1, 32, 32)]


def make_inputs(B, T, H, K, V, device, dtype, seed=0):
    """Unit q, k; g ~ -U(0, 0.5) (decays like a freshly initialised layer's); b, w ~ U(0, 1)."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen)

    q, k = F.normalize(r(B, T, H, K), dim=-1), F.normalize(r(B, T, H, K), dim=-1)
    v = r(B, T, H, V)
    g = -0.5 * torch.rand(B, T, H, K, generator=gen)
    b, w = torch.rand(B, T, H, K, generator=gen), torch.rand(B, T, H, V, generator=gen)
    return [x.to(device=device, dtype=dtype) for x in (q, k, v, g, b, w)]


def _time(fn, reps, device):
    fn()  # warm-up (also Triton compilation on CUDA)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def _impls(device, chunk_sizes):
    impls = {"naive": lambda *x: gdn2_recurrent(*x)}
    for c in chunk_sizes:
        impls[f"torch_chunk{c}"] = lambda *x, c=c: gdn2_chunk(*x, chunk_size=c, backend="torch")
    if device.type == "cpu" and cpu_fast.available():
        # through gdn2_chunk, as users call it: the value check (fused into the kernel) is part of the cost
        impls["cpu_kernel"] = lambda *x: gdn2_chunk(*x, backend="c")
    fla = fla_chunk_gdn2() if device.type == "cuda" else None  # importing fla costs seconds: CUDA only
    if fla is not None:
        impls["fla_direct"] = lambda *x: fla(*x)
        impls["aura_dispatch"] = lambda *x: gdn2_chunk(*x, backend="auto")
        impls["aura_dispatch_novalidate"] = lambda *x: gdn2_chunk(*x, backend="auto", validate=False)
    return impls


def run_bench(
    device, dtype, reps, naive_reps, chunk_sizes, shapes=SHAPES, modes=("fwd", "fwd+bwd"), log=print
):
    """Time every implementation on every shape and mode; one row (median and min ms) per combination.

    ``reps`` timed calls per row (``naive_reps`` for the naive loop), after one warm-up call each.
    """
    rows = []
    impls = _impls(device, chunk_sizes)
    for B, T, H, K, V in shapes:
        xs = make_inputs(B, T, H, K, V, device, dtype)
        do = torch.randn(B, T, H, V, device=device, dtype=dtype)
        for mode in modes:
            for name, fn in impls.items():
                n = naive_reps if name == "naive" else reps
                if mode == "fwd":

                    def call(fn=fn, xs=xs):
                        with torch.no_grad():
                            fn(*xs)
                else:
                    leaves = [x.detach().requires_grad_() for x in xs]

                    def call(fn=fn, leaves=leaves, do=do):
                        for x in leaves:
                            x.grad = None
                        o, _ = fn(*leaves)
                        o.backward(do)

                med, best = _time(call, n, device)
                row = {"impl": name, "B": B, "T": T, "H": H, "K": K, "V": V, "mode": mode}
                row.update({"median_ms": med, "min_ms": best, "reps": n})
                rows.append(row)
                log(f"  {name:>14} B{B} T{T} H{H} d{K} {mode:>7}: {med:9.2f} ms (min {best:.2f})")
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """naive / chunk and naive / C kernel speedups and the dispatch overhead, per shape and mode."""
    out = []
    index = {(r["impl"], r["B"], r["T"], r["mode"]): r["median_ms"] for r in rows}
    for (impl, B, T, mode), ms in index.items():
        naive = index.get(("naive", B, T, mode))
        if (impl.startswith("torch_chunk") or impl == "cpu_kernel") and naive:
            out.append({"what": f"naive / {impl}", "B": B, "T": T, "mode": mode, "ratio": naive / ms})
        if impl.startswith("aura_dispatch") and ("fla_direct", B, T, mode) in index:
            ratio = ms / index[("fla_direct", B, T, mode)]
            out.append({"what": f"{impl} / fla_direct", "B": B, "T": T, "mode": mode, "ratio": ratio})
    return out


def bench_memory(
    device: torch.device,
    dtype_name: str | None = None,
    reps: int = 5,
    naive_reps: int = 2,
    chunk_sizes: list[int] | None = None,
    threads: int | None = None,
    quick: bool = False,
    json_path: str | None = None,
) -> dict:
    """The whole benchmark: header, rows (``SHAPES``, or its first shape if ``quick``), ratios, a table,
    and the result as JSON at ``json_path`` if given. Returns the result.

    ``dtype_name`` defaults to bfloat16 on CUDA and float32 elsewhere; ``chunk_sizes`` to gdn2_chunk's
    default chunk on the device; ``threads`` sets torch's CPU threads (None: leave them).
    """
    dtype_name = dtype_name or ("bfloat16" if device.type == "cuda" else "float32")
    if threads is not None:
        torch.set_num_threads(threads)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    n_threads = torch.get_num_threads()
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    head = f"aura bench memory on {dev_name}, {dtype_name}, torch {torch.__version__}, threads {n_threads}"
    print(head + load)
    shapes = SHAPES[:1] if quick else SHAPES
    chunk_sizes = chunk_sizes or [CPU_CHUNK if device.type == "cpu" else 64]
    rows = run_bench(device, getattr(torch, dtype_name), reps, naive_reps, chunk_sizes, shapes)
    result = {
        "device": dev_name,
        "device_type": device.type,
        "dtype": dtype_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "fla": device.type == "cuda" and fla_chunk_gdn2() is not None,
        "rows": rows,
        "ratios": ratios(rows),
    }
    _print_table(result)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {json_path}")
    return result


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"GDN-2 memory rule on {result['device']} ({result['dtype']}), median ms")
    for col in ("impl", "shape", "mode", "median ms", "min ms"):
        table.add_column(col)
    for r in result["rows"]:
        shape = f"B{r['B']} T{r['T']} H{r['H']} d{r['K']}"
        table.add_row(r["impl"], shape, r["mode"], f"{r['median_ms']:.2f}", f"{r['min_ms']:.2f}")
    console = Console(width=120)
    console.print(table)
    for r in result["ratios"]:
        console.print(f"{r['what']:>45}  B{r['B']} T{r['T']} {r['mode']:>7}: {r['ratio']:.2f}x")
