"""Torch CUDA-graph runner for GPU development machines (imports torch; the deploy runtime does not).

One step = one CUDA-graph replay of ``H2D(features, base_action) -> step -> D2H(action, write, gate_prob)``
on buffers allocated once, so GPU memory is fixed for the life of the runner (``aura bench runtime``
measures ``torch.cuda.memory_allocated`` and the driver's free memory over 100,000 steps). The state lives
on the GPU in two buffers; graph ``i`` reads ``states[i]`` and writes ``states[1 - i]`` (the step always
writes ``where(write, S~, S)``), and the runner alternates the graphs: ping-pong without a copy.

``fused=True`` captures :class:`deploy.fused_step.FusedStep` (two Triton kernels); ``fused=False`` captures
the eager ``AuraMem.step`` (its naive twin, ~60 small kernels). A ``readout="mlp"`` layer runs only eager (the
fused step refuses it, naming the option). On this runner the GPU state is authoritative:
its writes are not bit-identical to the numpy replay of the journal (the GPU fuses multiply-adds), so use
the ONNX Runtime / TensorRT runners where the journal must be bit-exact.

Host round trip (what a control loop waits for): ``graph.replay()`` + stream sync has a fixed cost even
for a one-kernel graph; ``launch="driver"`` calls ``cuGraphLaunch`` through ctypes (cheaper) and
``wait="spin"`` polls the fused tail's completion token in pinned memory instead of synchronising the
stream (cheaper still; the H200 numbers are in docs/deploy.md, "Measured costs"). Spinning needs the fused
step with zero-copy outputs (memcpy nodes would run after the token is written); other configurations
synchronise the stream.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np
import torch

SPIN_TIMEOUT_S = 1.0  # a step not done by then is a fault (a hung or failed kernel), not a slow step


def _driver_graph_launch():
    """``cuGraphLaunch`` from the CUDA driver via ctypes, or None where libcuda cannot be loaded."""
    try:
        fn = ctypes.CDLL("libcuda.so.1").cuGraphLaunch
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
    return fn


class CudaGraphRunner:
    def __init__(
        self,
        layer,
        fused: bool = True,
        device: str = "cuda",
        zero_copy: bool = True,
        launch: str = "driver",
        wait: str = "spin",
        **fused_options,
    ):
        if not torch.cuda.is_available():
            raise RuntimeError("CudaGraphRunner needs a CUDA device")
        if launch not in ("driver", "torch") or wait not in ("spin", "sync"):
            raise ValueError(
                f"CudaGraphRunner: launch must be driver|torch, wait spin|sync; got {launch}, {wait}"
            )
        self.layer = layer = layer.to(device).eval()
        cfg = self.cfg = layer.config
        self.fused = fused
        # zero_copy: the fused kernels read features / write actions straight from pinned host memory
        # (mapped under UVA), so the graph holds no memcpy nodes. The eager twin always copies.
        self.zero_copy = zero_copy and fused
        f32, dev = torch.float32, torch.device(device)
        n_state = cfg.heads * (cfg.d_key + 1) * cfg.d_val
        self.h_z = torch.zeros(cfg.d_model, dtype=f32, pin_memory=True)
        self.h_base = torch.zeros(cfg.d_action, dtype=f32, pin_memory=True)
        self.h_action = torch.zeros(cfg.d_action, dtype=f32, pin_memory=True)
        self.h_write = torch.zeros(1, dtype=torch.int8, pin_memory=True)
        self.h_prob = torch.zeros(1, dtype=f32, pin_memory=True)
        self.h_skip = torch.zeros(cfg.d_action, dtype=f32, pin_memory=True)
        self.z = torch.zeros(cfg.d_model, dtype=f32, device=dev)
        self.base = torch.zeros(cfg.d_action, dtype=f32, device=dev)
        self.states = [torch.zeros(n_state, dtype=f32, device=dev) for _ in range(2)]
        self.action = torch.zeros(cfg.d_action, dtype=f32, device=dev)
        self.skip = torch.zeros(cfg.d_action, dtype=f32, device=dev)
        self.write = torch.zeros(1, dtype=torch.int8, device=dev)
        self.prob = torch.zeros(1, dtype=f32, device=dev)
        hk, hv = cfg.heads * cfg.d_key, cfg.heads * cfg.d_val
        self.decay, self.key = torch.zeros(hk, device=dev), torch.zeros(hk, device=dev)
        self.delta, self.aux = torch.zeros(hv, device=dev), torch.zeros(hv, device=dev)
        if fused:
            from deploy.export.fused_step import FusedStep

            self.kernel = FusedStep(layer, **fused_options)
        self.cur = 0
        # Warm up on a side stream (compiles the Triton kernels, lets cuBLAS choose), then capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for i in (0, 1, 0):
                self._body(i)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        self.graphs = []
        for i in (0, 1):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g), torch.no_grad():
                self._body(i)
            self.graphs.append(g)
        for s in self.states:
            s.zero_()
        torch.cuda.synchronize()
        # numpy views of the pinned buffers, made once: torch indexing / .numpy() cost microseconds per call.
        self._np_z, self._np_base = self.h_z.numpy(), self.h_base.numpy()
        self._np_action, self._np_write, self._np_prob = (
            self.h_action.numpy(),
            self.h_write.numpy(),
            self.h_prob.numpy(),
        )
        self._stream = torch.cuda.current_stream()
        driver = _driver_graph_launch() if launch == "driver" else None
        exec_of = getattr(torch.cuda.CUDAGraph, "raw_cuda_graph_exec", None)
        if driver is not None and exec_of is not None:
            execs = [ctypes.c_void_p(g.raw_cuda_graph_exec()) for g in self.graphs]
            stream = ctypes.c_void_p(self._stream.cuda_stream)
            self._launchers = [lambda e=e: driver(e, stream) for e in execs]
        else:  # no libcuda / an older torch: torch's replay (a few us more per step)
            self._launchers = [lambda g=g: (g.replay(), 0)[1] for g in self.graphs]
        self.launch = "driver" if driver is not None and exec_of is not None else "torch"
        self.wait = "spin" if wait == "spin" and self.zero_copy else "sync"
        if self.zero_copy:
            self._np_token, self._np_done = self.kernel.token.numpy(), self.kernel.done.numpy()
        self._token = 0

    def _body(self, i: int) -> None:
        cfg = self.cfg
        if self.zero_copy:
            self.kernel(
                self.h_z,
                self.h_base,
                self.states[i],
                self.states[1 - i],
                self.h_action,
                self.h_skip,
                self.h_write,
                self.h_prob,
                self.decay,
                self.key,
                self.delta,
                self.aux,
            )
            return
        self.z.copy_(self.h_z, non_blocking=True)
        self.base.copy_(self.h_base, non_blocking=True)
        src, dst = self.states[i], self.states[1 - i]
        if self.fused:
            self.kernel(
                self.z,
                self.base,
                src,
                dst,
                self.action,
                self.skip,
                self.write,
                self.prob,
                self.decay,
                self.key,
                self.delta,
                self.aux,
            )
        else:
            shape = (1, cfg.heads, cfg.d_key + 1, cfg.d_val)
            o = self.layer.step(self.z[None], self.base[None], src.view(shape))
            dst.copy_(o.state.reshape(-1))
            self.action.copy_(o.action.reshape(-1))
            self.write.copy_(o.write.reshape(-1))
            self.prob.copy_(o.gate_prob.reshape(-1))
        self.h_action.copy_(self.action, non_blocking=True)
        self.h_write.copy_(self.write, non_blocking=True)
        self.h_prob.copy_(self.prob, non_blocking=True)

    @property
    def state(self) -> torch.Tensor:
        cfg = self.cfg
        return self.states[self.cur].view(1, cfg.heads, cfg.d_key + 1, cfg.d_val)

    def load_state(self, state) -> None:
        self.states[self.cur].copy_(torch.as_tensor(state).reshape(-1))

    def step(self, features: np.ndarray, base_action: np.ndarray) -> tuple[np.ndarray, bool, float]:
        """One replay; returns (action, write, gate_prob) read from pinned host buffers."""
        np.copyto(self._np_z, features.reshape(-1))
        np.copyto(self._np_base, base_action.reshape(-1))
        if self.wait == "spin":
            self._token = self._token % 0x7FFFFFFF + 1
            self._np_token[0] = self._token
        rc = self._launchers[self.cur]()
        if rc:
            raise RuntimeError(f"CudaGraphRunner: cuGraphLaunch failed with CUresult {rc}")
        if self.wait == "spin":
            self._spin(self._token)
        else:
            self._stream.synchronize()
        self.cur ^= 1
        return self._np_action, bool(self._np_write[0]), float(self._np_prob[0])

    def _spin(self, token: int) -> None:
        done = self._np_done
        for _ in range(4096):  # the normal case: done within microseconds, no clock reads
            if done[0] == token:
                return
        t0 = time.perf_counter()
        while done[0] != token:
            if time.perf_counter() - t0 > SPIN_TIMEOUT_S:
                self._stream.synchronize()  # surfaces the step's CUDA error, if there is one
                if done[0] != token:
                    raise RuntimeError(
                        f"CudaGraphRunner: step not completed after {SPIN_TIMEOUT_S} s "
                        f"(token {token}, saw {int(done[0])})"
                    )
