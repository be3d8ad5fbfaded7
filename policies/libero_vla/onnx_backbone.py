"""The LIBERO pixel backbone on an exported ONNX graph, through ONNX Runtime: numpy + onnxruntime, no torch.

``aura export backbone CKPT --out model.onnx`` (``deploy.export.backbone_graph``) writes the graph of
``policies.libero_vla.runtime`` (uint8 images, state, token ids -> features [1, d_model], actions [1, K, 7];
a binned-head graph also outputs its logits, which this backbone does not fetch: the graph decodes) and
stores the :class:`NetInterface` (sizes, tokenizer) as JSON in the file's metadata under
``aura.libero_vla``, so the .onnx file is all this backbone needs. Tokenizer, input checks and chunk
execution are the same numpy code the torch backbone runs (:class:`ChunkedBackbone`), so both give the same
actions up to the graph's float error (<= 1e-4, checked at export; with the bins head the logits are, and an
argmax near-tie can pick a neighbouring bin in one runtime, docs/libero_vla.md).

    make_backbone("libero_vla_onnx", {"model": "runs/vla/model.onnx", "threads": 2})
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from policies.backbone import BackboneError
from policies.libero_vla.execution import DEFAULT_EXECUTION, EXECUTIONS
from policies.libero_vla.runtime import (
    INPUTS,
    LOGITS,
    OUTPUTS,
    CheckpointError,
    ChunkedBackbone,
    NetInterface,
)

META_KEY = "aura.libero_vla"
PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def open_session(path, threads: int = 0, provider: str = "cpu") -> tuple[ort.InferenceSession, NetInterface]:
    """(session, interface) of an exported backbone graph; CheckpointError names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing (export one with `aura export backbone CKPT --out {path.name}`)"
        )
    if provider not in ("auto", *PROVIDERS):
        raise BackboneError(f"libero_vla_onnx: provider must be auto, cpu or cuda, got {provider!r}")
    available = ort.get_available_providers()
    if provider == "auto":
        provider = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads and threads > 0:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(
            str(path), opts, providers=[p for p in PROVIDERS[provider] if p in available]
        )
    except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise CheckpointError(f"{path}: not a loadable ONNX graph ({type(err).__name__}: {err})") from None
    meta = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    if meta is None:
        raise CheckpointError(f"{path}: no {META_KEY!r} metadata (not written by `aura export backbone`)")
    try:
        interface = NetInterface.from_dict(json.loads(meta))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad {META_KEY!r} metadata ({err})") from None
    names_in, names_out = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
    outputs_ok = sorted(names_out) in (sorted(OUTPUTS), sorted((*OUTPUTS, LOGITS)))  # bins head: + logits
    if sorted(names_in) != sorted(INPUTS) or not outputs_ok:
        raise CheckpointError(
            f"{path}: graph has inputs {names_in} / outputs {names_out}, "
            f"expected {list(INPUTS)} / {list(OUTPUTS)}"
        )
    return sess, interface


class OnnxBackbone(ChunkedBackbone):
    """``(observation) -> (z_t, a_t)`` with an ONNX Runtime session (module docstring)."""

    def __init__(self, path, threads: int = 0, provider: str = "cpu", **execution):
        self.session, interface = open_session(path, threads, provider)
        self.path = str(path)
        super().__init__(interface, self._infer, **execution)

    def _infer(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feats, actions = self.session.run(list(OUTPUTS), inputs)
        return feats, actions


@dataclass
class LiberoVLAOnnxConfig:
    """The ``libero_vla_onnx`` backbone: ``model`` is the .onnx file; the execution fields are
    ``LiberoVLAConfig``'s; ``threads`` > 0 sets ONNX Runtime's intra-op threads; ``provider``: cpu, cuda or
    auto."""

    model: str = ""
    threads: int = 0
    provider: str = "cpu"
    execution: str = DEFAULT_EXECUTION
    n_action_steps: int | None = None
    ensemble_decay: float = 0.01
    binarize_gripper: bool = True
    fresh_features: bool = True

    def build(self) -> OnnxBackbone:
        if not self.model:
            raise BackboneError("libero_vla_onnx: set model= to a .onnx file from `aura export backbone`")
        if self.execution not in EXECUTIONS:
            raise BackboneError(
                f"libero_vla_onnx: execution must be one of {EXECUTIONS}, got {self.execution!r}"
            )
        return OnnxBackbone(
            self.model,
            self.threads,
            self.provider,
            execution=self.execution,
            n_action_steps=self.n_action_steps,
            ensemble_decay=self.ensemble_decay,
            binarize_gripper=self.binarize_gripper,
            fresh_features=self.fresh_features,
        )
