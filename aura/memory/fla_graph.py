"""fla's ``chunk_gdn2`` forward replayed from a CUDA graph, for dispatched calls that record no autograd.

At AURA's sizes fla's forward is host-bound: its Python and kernel launches take longer on the host than
its kernels take on the GPU (docs/memory.md, "Dispatch overhead", has the numbers). For a call that
records no autograd graph (grad mode off, or no input requires grad) with a shape seen before,
``gdn2_chunk`` instead copies the inputs into static buffers (one multi-tensor copy), replays a captured
graph of fla's forward, and returns copies of the static outputs. The kernels and their inputs are the
same, so the outputs are bit-identical to the direct call (tested on CUDA).

Costs and limits, stated because they are not free: each cached shape keeps its static inputs and fla's
intermediates in the graph's private memory pool (about 3x the inputs), at most ``MAX_GRAPHS`` shapes per
process (least recently used dropped first); the first call of a shape warms fla up on a side stream and
captures, which costs far more than a replayed call (docs/memory.md). A capture that fails is logged once
and that shape runs eagerly from then on. Calls made while the caller is capturing its own graph run
eagerly (into that capture). ``AURA_FLA_GRAPHS=0`` turns the whole path off.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

import torch

from aura.memory.validate import raw_stream

log = logging.getLogger(__name__)

ENV = "AURA_FLA_GRAPHS"
MAX_GRAPHS = 4
ENABLED = True  # a process-wide switch beside the environment variable (benchmarks flip it)
GRAPHS: OrderedDict[tuple, Entry] = OrderedDict()
FAILED: set[tuple] = set()
_LOCK = threading.Lock()  # static buffers are shared: copy, replay and read-out must not interleave


class Entry:
    """One cached shape: the captured graph, its static input buffers and its static outputs o, S."""

    __slots__ = ("graph", "inputs", "o", "S")

    def __init__(self, graph, inputs, o, S):
        self.graph, self.inputs, self.o, self.S = graph, inputs, o, S


def eligible(tensors: dict[str, torch.Tensor]) -> bool:
    """True when the call records no autograd graph, the path is on, and no capture is under way."""
    if not ENABLED or os.environ.get(ENV, "1") == "0":
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors.values()):
        return False
    return not torch.cuda.is_current_stream_capturing()


def capture(fla, xs: list[torch.Tensor], scale: float, final: bool) -> Entry:
    """Warm fla up on a side stream (Triton compiles there), then graph its forward on static copies of xs."""
    static = [x.detach().clone() for x in xs]
    S0 = static[6] if len(static) == 7 else None

    def forward():
        return fla(*static[:6], scale=scale, initial_state=S0, output_final_state=final)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(2):  # Triton compiles and autotunes here, outside the capture
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        o, S = forward()
    return Entry(graph, static, o, S)


def forward(fla, xs: list[torch.Tensor], scale: float, final: bool):
    """``fla(q, k, v, g, b, w, scale=, initial_state=xs[6] if given, output_final_state=final)`` through a
    cached graph; None when this shape cannot be graphed (the caller then calls fla directly).

    ``xs``: q, k, v, g, b, w and optionally the float32 initial state, all on the current CUDA device.
    """
    dev = xs[0].get_device()
    key = (dev, raw_stream(dev), scale, final, tuple([(x.shape, x.dtype) for x in xs]))
    with _LOCK:
        entry = GRAPHS.get(key)
        if entry is None:
            if key in FAILED:
                return None
            try:
                entry = capture(fla, xs, scale, final)
            except Exception as err:  # an op fla runs that graphs do not allow: run this shape eagerly
                FAILED.add(key)
                log.warning("aura.memory: fla's forward could not be graphed for shapes %s (%s); "
                            "running it directly", [tuple(x.shape) for x in xs], err)  # fmt: skip
                return None
            GRAPHS[key] = entry
            while len(GRAPHS) > MAX_GRAPHS:
                GRAPHS.popitem(last=False)
        else:
            GRAPHS.move_to_end(key)
        torch._foreach_copy_(entry.inputs, xs)
        entry.graph.replay()
        return entry.o.clone(), (entry.S.clone() if final else None)
