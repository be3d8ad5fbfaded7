"""CUDA dispatch overhead of ``gdn2_chunk`` -> fla's ``chunk_gdn2``, measured round-robin.

    python benchmarks/dispatch_overhead.py --reps 200 --json runs/dispatch.json

``aura bench memory --device cuda`` times each implementation in its own block; on a busy host the blocks
drift by more than the overhead being measured (fla called directly once came out slower than the dispatch
that wraps it). Here the four calls alternate (direct; the dispatch with value check; without it; with it
but without the CUDA-graph replay of fla's forward, ``aura.memory.fla_graph``, which only forward calls
that record no autograd take), each synchronised before and after, and the medians are compared. Also
prints the host time of starting the value check alone (fused Triton flags vs the exact torch ``aminmax``
path). Needs CUDA and fla-core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from aura.memory import fla_graph
from aura.memory.chunk import fla_chunk_gdn2, gdn2_chunk
from aura.memory.validate import check_sequence, finish_value_check, start_value_check

SHAPES = ((64, 520), (16, 4096))  # (B, T) at H1 d32, as in `aura bench memory`


def inputs(B: int, T: int, grad: bool, dtype=torch.bfloat16, H: int = 1, K: int = 32, V: int = 32):
    gen = torch.Generator(device="cuda").manual_seed(0)

    def r(*s):
        return torch.randn(*s, device="cuda", generator=gen)

    def u(*s):
        return torch.rand(*s, device="cuda", generator=gen)

    xs = [F.normalize(r(B, T, H, K), dim=-1), F.normalize(r(B, T, H, K), dim=-1), r(B, T, H, V)]
    xs += [-0.1 * u(B, T, H, K), u(B, T, H, K), u(B, T, H, V)]
    return [x.to(dtype).requires_grad_(grad) for x in xs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="rounds of the three calls (default 200)")
    parser.add_argument("--json", default=None, help="write the medians here")
    args = parser.parse_args()
    fla = fla_chunk_gdn2()
    if not torch.cuda.is_available() or fla is None:
        raise SystemExit("needs a CUDA GPU and fla-core")

    def eager(*x):  # the dispatch with the CUDA-graph replay of fla's forward switched off
        fla_graph.ENABLED = False
        try:
            return gdn2_chunk(*x, backend="auto")
        finally:
            fla_graph.ENABLED = True

    impls = {
        "fla_direct": lambda *x: fla(*x),
        "aura_dispatch": lambda *x: gdn2_chunk(*x, backend="auto"),
        "aura_dispatch_novalidate": lambda *x: gdn2_chunk(*x, backend="auto", validate=False),
        "aura_dispatch_nograph": eager,
    }
    rows = []
    for B, T in SHAPES:
        for mode in ("fwd", "fwd+bwd"):
            xs = inputs(B, T, grad=mode != "fwd")

            def call(f, xs=xs, mode=mode):
                o, _ = f(*xs)
                if mode != "fwd":
                    o.float().sum().backward()

            for f in impls.values():  # warm-up, Triton compilation
                for _ in range(3):
                    call(f)
            times = {name: [] for name in impls}
            for _ in range(args.reps):
                for name, f in impls.items():
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    call(f)
                    torch.cuda.synchronize()
                    times[name].append((time.perf_counter() - t0) * 1e3)
            if mode == "fwd":  # the graph replay must give fla's own bits
                with torch.no_grad():
                    ours, theirs = gdn2_chunk(*xs, output_final_state=True), fla(*xs, output_final_state=True)
                same = all(torch.equal(a, b) for a, b in zip(ours, theirs))
                print(f"B{B} T{T} fwd: graph-replayed dispatch bit-identical to fla: {same}", flush=True)
            med = {name: statistics.median(t) for name, t in times.items()}
            row = {"B": B, "T": T, "mode": mode, **{f"{n}_ms": m for n, m in med.items()}}
            row["ratio"] = med["aura_dispatch"] / med["fla_direct"]
            row["ratio_novalidate"] = med["aura_dispatch_novalidate"] / med["fla_direct"]
            row["ratio_nograph"] = med["aura_dispatch_nograph"] / med["fla_direct"]
            rows.append(row)
            print(
                f"B{B} T{T} {mode:8s} "
                + "  ".join(f"{n} {m:.3f} ms" for n, m in med.items())
                + f"  ratio {row['ratio']:.3f}x  novalidate {row['ratio_novalidate']:.3f}x"
                + f"  nograph {row['ratio_nograph']:.3f}x",
                flush=True,
            )
    t = dict(zip("q k v g b w".split(), inputs(16, 4096, grad=False)))
    host = {}
    for stats in (False, True):
        for _ in range(5):
            finish_value_check("check", t, start_value_check(t, stats=stats))
        torch.cuda.synchronize()
        n, t0 = 300, time.perf_counter()
        for _ in range(n):
            started = start_value_check(t, stats=stats)
        host[f"stats={stats}"] = (time.perf_counter() - t0) / n * 1e6
        finish_value_check("check", t, started)
        print(f"start_value_check(stats={stats}) host cost {host[f'stats={stats}']:.1f} us/call")
    n, t0 = 2000, time.perf_counter()
    for _ in range(n):
        check_sequence("check", *t.values(), None, False)
    host["check_sequence"] = (time.perf_counter() - t0) / n * 1e6
    print(f"check_sequence (shapes, dtypes, devices) host cost {host['check_sequence']:.1f} us/call")
    if args.json:
        result = {"device": torch.cuda.get_device_name(), "rows": rows, "check_host_us": host}
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
