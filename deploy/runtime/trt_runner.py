"""TensorRT runner for Jetson (JetPack 6, TensorRT 10.x Python API): fixed device memory, one CUDA graph.

Engine: :func:`build_engine` parses the ONNX step graph (``OnnxParser``), limits the builder workspace
(``MemoryPoolType.WORKSPACE``) and serialises the engine; ``trtexec --onnx=model.onnx --saveEngine=...``
does the same on the command line (docs/deploy.md).

Runtime (:class:`TrtRunner`): every buffer is allocated once with ``cudaMalloc`` / ``cudaMallocHost``
(libcudart through ctypes, so no pycuda / cuda-python is needed): the context is created with
``ExecutionContextAllocationStrategy.USER_MANAGED`` and given its scratch memory explicitly, tensor addresses
are set once, and one CUDA graph holding ``H2D(features, base_action) -> execute_async_v3 -> D2H(outputs)``
is captured and replayed each step. Device memory is therefore constant for the life of the runner.

As on the CPU, the authoritative state is the host numpy state (:mod:`deploy.runtime.runner`): a committed
write is applied exactly in numpy and the 4 KiB state uploaded to the engine's ``state`` input; the engine's
own
``new_state`` goes to a scratch buffer. A non-write costs no transfer.

Integrity: :func:`build_engine` verifies the ONNX graph's sealed digest before parsing those same bytes and
writes ``ENGINE.sha256`` (the engine's sha256 and the digest of the graph it came from); the runner checks
the engine against it before deserialising. An engine without a sidecar (built with trtexec) loads
unverified, and the run record says so.

Nothing here imports tensorrt until a runner or build is requested; tests skip, naming TensorRT, where the
package is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

import numpy as np

from aura.contract import STEP_INPUTS, STEP_OUTPUTS
from deploy.runtime.digest import verify_graph, verify_sidecar, write_sidecar
from deploy.runtime.errors import ModelFileError
from deploy.runtime.runner import ModelSpec, StepRunner
from deploy.runtime.state import StateSpec

_H2D, _D2H = 1, 2
_CAPTURE_THREAD_LOCAL = 1


def trt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def _logger():
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_path, engine_path, *, fp16: bool = False, workspace_mb: int = 256) -> Path:
    """Build and serialise a TensorRT engine for this device from the ONNX step graph."""
    import tensorrt as trt

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise ModelFileError(onnx_path, "ONNX model file not found")
    data = onnx_path.read_bytes()
    source = verify_graph(onnx_path, data)  # the engine is built from exactly the verified bytes
    logger = _logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(onnx_path, f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelFileError(onnx_path, "TensorRT failed to build an engine (see the log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    blob = bytes(serialized)
    engine_path.write_bytes(blob)
    write_sidecar(engine_path, blob, source=source.sha256)
    return engine_path


class _Cuda:
    """The handful of CUDA runtime calls the runner needs, through ctypes; errors raise RuntimeError."""

    def __init__(self):
        name = ctypes.util.find_library("cudart") or "libcudart.so"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError:
            self.lib = ctypes.CDLL("libcudart.so.12")
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p

    def __call__(self, fn: str, *args) -> None:
        err = getattr(self.lib, fn)(*args)
        if err != 0:
            raise RuntimeError(f"{fn} failed: {self.lib.cudaGetErrorString(err).decode()} ({err})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self("cudaMalloc", ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1)))
        return ptr.value

    def malloc_host(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self("cudaMallocHost", ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1)))
        return ptr.value

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream) -> None:
        self(
            "cudaMemcpyAsync",
            ctypes.c_void_p(dst),
            ctypes.c_void_p(src),
            ctypes.c_size_t(nbytes),
            kind,
            stream,
        )


class TrtRunner(StepRunner):
    """TensorRT engine runner with user-managed device memory and CUDA-graph replay."""

    def __init__(self, engine_path: str | os.PathLike, expect: ModelSpec | None = None):
        import tensorrt as trt

        self.path = Path(engine_path)
        if not self.path.is_file():
            raise ModelFileError(self.path, "TensorRT engine file not found")
        self._trt_logger = _logger()
        self._runtime = trt.Runtime(self._trt_logger)
        data = self.path.read_bytes()
        self.digest = verify_sidecar(self.path, data)
        self.model_info = {"path": os.fspath(self.path), "backend": "trt", **self.digest.as_dict()}
        engine = self._runtime.deserialize_cuda_engine(data)
        del data
        if engine is None:
            raise ModelFileError(
                self.path,
                "not a TensorRT engine for this TensorRT version and GPU "
                "(deserialisation failed; rebuild it on this device)",
            )
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        missing = [n for n in STEP_INPUTS + STEP_OUTPUTS if n not in names]
        if missing:
            raise ModelFileError(self.path, f"not an AURA step engine: missing tensors {missing}")
        shapes = {n: tuple(engine.get_tensor_shape(n)) for n in names}
        if any(d < 0 for s in shapes.values() for d in s):
            raise ModelFileError(self.path, f"engine has dynamic shapes {shapes}; export static shapes")
        ss = shapes["state"]
        spec = ModelSpec(shapes["features"][1], shapes["base_action"][1], StateSpec(ss[1], ss[2] - 1, ss[3]))
        if expect is not None and spec != expect:
            raise ModelFileError(self.path, f"engine dimensions {spec} do not match the expected {expect}")
        super().__init__(spec)
        cuda = self._cuda = _Cuda()
        self._stream = ctypes.c_void_p()
        cuda("cudaStreamCreateWithFlags", ctypes.byref(self._stream), 1)
        # Device buffers, one per I/O tensor, allocated once.
        host = {
            "features": self.features,
            "base_action": self.base_action,
            "state": self.states[0],
            "action": self.action,
            "action_skip": self.action_skip,
            "new_state": self.states[1],
            "write": self.write,
            "gate_prob": self.gate_prob,
            "decay": self.record.decay,
            "key": self.record.key,
            "delta": self.record.delta,
            "aux": self.record.aux,
        }
        self._host = host
        self._dev = {n: cuda.malloc(host[n].nbytes) for n in STEP_INPUTS + STEP_OUTPUTS}
        # Pinned staging so the captured copies are true async DMA.
        self._pinned = {}
        for n in STEP_INPUTS + STEP_OUTPUTS:
            if n in ("state", "new_state"):
                continue
            ptr = cuda.malloc_host(host[n].nbytes)
            buf = (ctypes.c_byte * host[n].nbytes).from_address(ptr)
            self._pinned[n] = (ptr, np.frombuffer(buf, dtype=host[n].dtype).reshape(host[n].shape))
        ctx_strategy = trt.ExecutionContextAllocationStrategy.USER_MANAGED
        self.context = engine.create_execution_context(ctx_strategy)
        size = getattr(engine, "device_memory_size_v2", None) or engine.device_memory_size
        self._scratch_dev = cuda.malloc(size)
        if hasattr(self.context, "set_device_memory"):
            self.context.set_device_memory(self._scratch_dev, size)
        else:
            self.context.device_memory = self._scratch_dev
        for n in STEP_INPUTS + STEP_OUTPUTS:
            if not self.context.set_tensor_address(n, self._dev[n]):
                raise ModelFileError(self.path, f"cannot bind tensor {n!r}")
        self._upload_state()
        # TensorRT asks for one enqueue before capture (it may do deferred work on the first).
        self._enqueue()
        cuda("cudaStreamSynchronize", self._stream)
        graph = ctypes.c_void_p()
        cuda("cudaStreamBeginCapture", self._stream, _CAPTURE_THREAD_LOCAL)
        self._enqueue()
        cuda("cudaStreamEndCapture", self._stream, ctypes.byref(graph))
        self._graph = graph
        self._graph_exec = ctypes.c_void_p()
        cuda("cudaGraphInstantiate", ctypes.byref(self._graph_exec), graph, ctypes.c_ulonglong(0))

    def _enqueue(self) -> None:
        cuda, s = self._cuda, self._stream
        for n in ("features", "base_action"):
            ptr, arr = self._pinned[n]
            cuda.memcpy_async(self._dev[n], ptr, arr.nbytes, _H2D, s)
        if not self.context.execute_async_v3(s.value or 0):
            raise RuntimeError(f"{self.path}: TensorRT execute_async_v3 failed")
        for n in STEP_OUTPUTS:
            if n != "new_state":
                ptr, arr = self._pinned[n]
                cuda.memcpy_async(ptr, self._dev[n], arr.nbytes, _D2H, s)

    def _upload_state(self) -> None:
        st = self.state
        self._cuda(
            "cudaMemcpy",
            ctypes.c_void_p(self._dev["state"]),
            ctypes.c_void_p(st.ctypes.data),
            ctypes.c_size_t(st.nbytes),
            _H2D,
        )

    def _execute(self) -> None:
        np.copyto(self._pinned["features"][1], self.features)
        np.copyto(self._pinned["base_action"][1], self.base_action)
        self._cuda("cudaGraphLaunch", self._graph_exec, self._stream)
        self._cuda("cudaStreamSynchronize", self._stream)
        for n in ("action", "action_skip", "write", "gate_prob", "decay", "key", "delta", "aux"):
            np.copyto(self._host[n], self._pinned[n][1].reshape(self._host[n].shape))

    def commit(self) -> None:
        super().commit()
        self._upload_state()

    def load_state(self, state: np.ndarray) -> None:
        super().load_state(state)
        self._upload_state()

    def close(self) -> None:
        cuda = getattr(self, "_cuda", None)
        if cuda is None:
            return
        cuda("cudaGraphExecDestroy", self._graph_exec)
        cuda("cudaGraphDestroy", self._graph)
        self.context = None
        for ptr in list(self._dev.values()) + [self._scratch_dev]:
            cuda("cudaFree", ctypes.c_void_p(ptr))
        for ptr, _ in self._pinned.values():
            cuda("cudaFreeHost", ctypes.c_void_p(ptr))
        cuda("cudaStreamDestroy", self._stream)
        self._cuda = None
