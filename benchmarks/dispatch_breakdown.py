"""Where the validated fla dispatch's extra forward time goes (CUDA + fla-core), B64 T520 H1 d32 bf16.

    python benchmarks/dispatch_breakdown.py

Times, interleaved round-robin (400 rounds, each call synchronised before and after), fla's ``chunk_gdn2``
called directly; ``gdn2_chunk`` with and without validation; the value check's pieces called by hand
around the direct call (start + fla + finish; start only; the check on tiny tensors, to separate host from
GPU time); and a plain CUDA event record + synchronize for scale. Prints medians and ratios to the direct
call, then the check kernel's GPU time from the profiler. It breaks down the eager dispatch, so the
CUDA-graph replay of fla's forward (``aura.memory.fla_graph``) is switched off here. The numbers in
docs/memory.md came from this code (run from a scratch copy on the H100 machine, before the graph path
existed).
"""

import statistics
import time

import torch
from dispatch_overhead import inputs  # the script's own folder is on sys.path
from torch.profiler import ProfilerActivity, profile

from aura.memory import fla_graph
from aura.memory import value_flags as vf
from aura.memory.chunk import fla_chunk_gdn2, gdn2_chunk
from aura.memory.validate import finish_value_check, start_value_check


def main() -> None:
    fla = fla_chunk_gdn2()
    if not torch.cuda.is_available() or fla is None:
        raise SystemExit("needs a CUDA GPU and fla-core")
    fla_graph.ENABLED = False

    xs = inputs(64, 520, grad=False)  # the overhead benchmark's bf16 inputs
    t = dict(zip("q k v g b w".split(), xs))
    tiny = {k: v[:1, :1].contiguous() for k, v in t.items()}

    def launch_only():
        start_value_check(t)
        return fla(*xs)

    def tiny_check():
        st = start_value_check(tiny)
        o = fla(*xs)
        finish_value_check("f", tiny, st)
        return o

    def manual():
        st = start_value_check(t)
        o = fla(*xs)
        finish_value_check("f", t, st)
        return o

    ev, on = torch.cuda.Event(), torch.cuda.current_stream()

    def event_only():
        ev.record(on)
        o = fla(*xs)
        ev.synchronize()
        return o

    rr = {
        "direct": lambda: fla(*xs),
        "dispatch": lambda: gdn2_chunk(*xs),
        "novalidate": lambda: gdn2_chunk(*xs, validate=False),
        "manual start+fla+finish": manual,
        "launch only (no finish)": launch_only,
        "tiny-tensor check": tiny_check,
        "event only": event_only,
    }
    for f in rr.values():  # warm-up, Triton compilation
        for _ in range(20):
            f()
    times = {k: [] for k in rr}
    for _ in range(400):
        for k, f in rr.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            f()
            torch.cuda.synchronize()
            times[k].append((time.perf_counter() - t0) * 1e6)
    base = statistics.median(times["direct"])
    for k, v in times.items():
        print(f"{k:28s} {statistics.median(v):8.1f} us  {statistics.median(v) / base:.3f}x")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(50):
            vf.launch(t)
        torch.cuda.synchronize()
    for e in prof.key_averages():
        if "flags" in e.key:
            print("flags kernel GPU time", e.key, round(e.device_time, 1), "us avg")


if __name__ == "__main__":
    main()
