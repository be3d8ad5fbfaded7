"""ONNX Runtime runner: preallocated numpy buffers, two IOBindings in ping-pong, one intra-op thread.

Binding ``i`` reads the state from ``states[i]`` and writes ``new_state`` into ``states[1 - i]``; every
other input and output is bound once to the same preallocated buffer, so a step allocates nothing and the
resident memory stays flat (``aura bench runtime`` measures it). ``run_with_iobinding(binding, None)``:
passing a ``RunOptions`` object costs measurably more per call (docs/deploy.md, "Measured costs").

Before ONNX Runtime sees the graph, its sealed digest is checked over the very bytes handed to the session
(:mod:`deploy.runtime.digest`): a model file with a flipped byte is a ModelFileError naming the file.

ONNX Runtime 1.32's telemetry keeps a SQLite database (``~/.cache/Microsoft/DeveloperTools/.onnxruntime/
onnxruntime.db``, with WAL) that it writes while sessions run: flash wear outside the budget, 45 KB in a
30,000-step run. Importing this module sets ``ORT_DISABLE_TELEMETRY=1`` unless the environment sets it; ORT
reads it once, when it is first imported, so import this module first (``aura run`` does).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aura.contract import STEP_INPUTS, STEP_OUTPUTS
from deploy.runtime.digest import ModelDigest, confirm_metadata, verify_graph
from deploy.runtime.errors import ModelFileError
from deploy.runtime.runner import ModelSpec, StepRunner
from deploy.runtime.state import StateSpec

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported; see the docstring
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(bool)": np.bool_}


def _static_shape(path: Path, arg) -> tuple[int, ...]:
    if any(not isinstance(d, int) for d in arg.shape):
        raise ModelFileError(
            path, f"tensor {arg.name!r} has a dynamic shape {arg.shape}; export static shapes"
        )
    return tuple(arg.shape)


def load_verified_session(path: str | os.PathLike, threads: int = 1) -> tuple[object, ModelDigest]:
    """(``InferenceSession`` on the CPU, digest) for ``path``; every failure is a ModelFileError naming it."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "ONNX model file not found")
    data = path.read_bytes()
    digest = verify_graph(path, data)  # before ONNX Runtime parses a byte of it
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        # a flipped byte inside a metadata string parses as protobuf but is not UTF-8 any more: pybind11
        # raises UnicodeDecodeError converting the map, which is the same corruption
        meta = dict(sess.get_modelmeta().custom_metadata_map)
    except Exception as err:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
        raise ModelFileError(path, f"not a loadable ONNX model ({type(err).__name__}: {err})") from err
    confirm_metadata(path, digest, meta)
    return sess, digest


def load_session(path: str | os.PathLike, threads: int = 1):
    """An ``InferenceSession`` for ``path`` (digest verified); see :func:`load_verified_session`."""
    return load_verified_session(path, threads)[0]


def model_spec_from_session(path: Path, sess) -> ModelSpec:
    """Check the step contract's tensor names, dtypes and static shapes; derive the dimensions."""
    ins = {a.name: a for a in sess.get_inputs()}
    outs = {a.name: a for a in sess.get_outputs()}
    missing = [n for n in STEP_INPUTS if n not in ins] + [n for n in STEP_OUTPUTS if n not in outs]
    if missing:
        raise ModelFileError(path, f"not an AURA step graph: missing tensors {missing}")
    shapes = {
        n: _static_shape(path, a) for n, a in {**ins, **outs}.items() if n in STEP_INPUTS + STEP_OUTPUTS
    }
    for name, arg in {**ins, **outs}.items():
        want = "tensor(bool)" if name == "write" else "tensor(float)"
        if name in shapes and arg.type != want:
            raise ModelFileError(path, f"tensor {name!r} has type {arg.type}, expected {want}")
    fs, bs, ss = shapes["features"], shapes["base_action"], shapes["state"]
    if len(fs) != 2 or len(bs) != 2 or len(ss) != 4 or fs[0] != 1 or bs[0] != 1 or ss[0] != 1:
        raise ModelFileError(path, f"expected batch-1 features/base_action/state, got {fs}, {bs}, {ss}")
    st = StateSpec(heads=ss[1], d_key=ss[2] - 1, d_val=ss[3])
    h, k, v = st.heads, st.d_key, st.d_val
    expected = {
        "action": bs,
        "action_skip": bs,
        "new_state": ss,
        "write": (1,),
        "gate_prob": (1,),
        "decay": (1, h, k),
        "key": (1, h, k),
        "delta": (1, h, v),
        "aux": (1, h, v),
    }
    for name, shape in expected.items():
        if int(np.prod(shapes[name])) != int(np.prod(shape)):
            raise ModelFileError(path, f"tensor {name!r} has shape {shapes[name]}, expected {shape}")
    return ModelSpec(d_model=fs[1], d_action=bs[1], state=st)


class OrtRunner(StepRunner):
    """CPU runner over ONNX Runtime; ``threads`` intra-op threads (1: lowest jitter on a busy CPU)."""

    def __init__(self, path: str | os.PathLike, threads: int = 1, expect: ModelSpec | None = None):
        self.path = Path(path)
        self.session, self.digest = load_verified_session(self.path, threads)
        spec = model_spec_from_session(self.path, self.session)
        if expect is not None and spec != expect:
            raise ModelFileError(self.path, f"model dimensions {spec} do not match the expected {expect}")
        super().__init__(spec)
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.model_info = {"path": os.fspath(self.path), "backend": "ort", **self.digest.as_dict()}
        for key in ("checkpoint", "weights_sha256", "weights_verified", "format"):
            if f"aura.{key}" in meta:
                self.model_info[key] = meta[f"aura.{key}"]
        shapes = {a.name: tuple(a.shape) for a in self.session.get_inputs() + self.session.get_outputs()}
        self.bindings = []
        for i in (0, 1):
            b = self.session.io_binding()
            ins = {"features": self.features, "base_action": self.base_action, "state": self.states[i]}
            outs = {
                "action": self.action,
                "new_state": self.states[1 - i],
                "write": self.write,
                "gate_prob": self.gate_prob,
                "decay": self.record.decay,
                "key": self.record.key,
                "delta": self.record.delta,
                "aux": self.record.aux,
                "action_skip": self.action_skip,
            }
            for name, buf in ins.items():
                b.bind_input(name, "cpu", 0, buf.dtype, list(shapes[name]), buf.ctypes.data)
            for name, buf in outs.items():
                b.bind_output(name, "cpu", 0, buf.dtype, list(shapes[name]), buf.ctypes.data)
            self.bindings.append(b)

    def _execute(self) -> None:
        self.session.run_with_iobinding(self.bindings[self.cur], None)

    def close(self) -> None:
        self.bindings = []
        self.session = None
