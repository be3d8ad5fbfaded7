"""The per-step graph of ``aura export CHECKPOINT --out model.onnx``: export, checks, and the parity run.

The graph (opset 18, static shapes, batch 1) is ``AuraMem.step`` traced by ``torch.onnx.export(dynamo=True)``:

    features [1, d_model], base_action [1, d_action], state [1, H, K+1, V]
      -> action, new_state, write (bool [1]), gate_prob [1], decay [1,H,K], key [1,H,K], delta [1,H,V],
         aux [1,H,V], action_skip [1, d_action] (the action without this step's write, for a refused write)

and is checked with ``onnx.checker.check_model(full_check=True)``. The file seals its own digest
(``aura.graph_sha256``: sha256 of the file's bytes with that value read as zeros;
:mod:`deploy.runtime.digest`), which every runner verifies before loading; a checkpoint's export also records
the checkpoint's ``weights_sha256`` (``aura.weights_sha256``). Parity: torch and ONNX Runtime each run
``--parity-steps`` recurrent steps on the same random inputs, each feeding back its own ``new_state``; the
command prints the max abs error over actions, gate probabilities and states, and the number of write-flag
disagreements (targets: <= 1e-5 in fp32 and 0). It also reports the deployed path (the runtime's exact numpy
commit of the factored record) against torch.

This module imports torch; the runtime (``aura run``) never imports it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from aura.contract import STEP_INPUTS, STEP_OUTPUTS
from deploy.runtime.digest import DIGEST_KEY, PLACEHOLDER, seal, verify_graph

FORMAT_VERSION = 2  # 2: the graph seals its sha256 (aura.graph_sha256)


def export_step(module, path, *, d_model, d_action, heads, d_key, d_val, opset=18, metadata=None) -> Path:
    """Export ``module.step(features, base_action, state)`` to ``path`` and run onnx's full checker."""
    import onnx
    import torch

    class StepGraph(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, features, base_action, state):
            o = self.inner.step(features, base_action, state)
            skip = self.inner.skip_action(features, base_action, state)
            return o.action, o.state, o.write, o.gate_prob, o.decay, o.key, o.delta, o.aux, skip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = (
        torch.zeros(1, d_model),
        torch.zeros(1, d_action),
        torch.zeros(1, heads, d_key + 1, d_val),
    )
    graph = StepGraph(module).eval()
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            args,
            dynamo=True,
            opset_version=opset,
            input_names=list(STEP_INPUTS),
            output_names=list(STEP_OUTPUTS),
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    if model.opset_import[0].version != opset and not any(
        o.domain in ("", "ai.onnx") and o.version == opset for o in model.opset_import
    ):
        raise RuntimeError(f"exporter produced opsets {[(o.domain, o.version) for o in model.opset_import]}")
    meta = {
        "aura.format": str(FORMAT_VERSION),
        "aura.d_model": str(d_model),
        "aura.d_action": str(d_action),
        "aura.heads": str(heads),
        "aura.d_key": str(d_key),
        "aura.d_val": str(d_val),
    }
    meta.update({f"aura.{k}": str(v) for k, v in (metadata or {}).items()})
    meta[DIGEST_KEY] = PLACEHOLDER.decode()  # last, and written over by seal() below
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    data, _ = seal(model.SerializeToString())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    onnx.checker.check_model(os.fspath(path), full_check=True)
    return path


def graph_digest(path) -> str:
    """The sealed sha256 of an exported step graph (verified; ModelFileError if it does not match)."""
    data = Path(path).read_bytes()
    return verify_graph(path, data).sha256


def parity(module, onnx_path, steps: int = 10_000, seed: int = 0, feature_scale: float = 1.0) -> dict:
    """Torch vs ONNX Runtime over ``steps`` recurrent steps, each side on its own state (see module doc)."""
    import torch

    from deploy.runtime.ort_runner import OrtRunner, load_session, model_spec_from_session

    sess = load_session(onnx_path)
    spec = model_spec_from_session(Path(onnx_path), sess)
    rng = np.random.default_rng(seed)
    feats = (rng.standard_normal((steps, 1, spec.d_model)) * feature_scale).astype(np.float32)
    bases = rng.standard_normal((steps, 1, spec.d_action)).astype(np.float32)
    s_torch = torch.zeros(spec.state.shape)
    s_ort = spec.state.zeros()
    runner = OrtRunner(onnx_path)  # the deployed path: exact numpy commit of the factored record
    err = {"action": 0.0, "action_skip": 0.0, "gate_prob": 0.0, "state": 0.0}
    err_runtime = {"action": 0.0, "state": 0.0}
    flips = runtime_flips = writes = 0
    names = [o.name for o in sess.get_outputs()]
    t0 = time.perf_counter()
    with torch.no_grad():
        for t in range(steps):
            o = module.step(torch.from_numpy(feats[t]), torch.from_numpy(bases[t]), s_torch)
            out = dict(
                zip(names, sess.run(None, {"features": feats[t], "base_action": bases[t], "state": s_ort}))
            )
            a_t, p_t, w_t = o.action.numpy(), o.gate_prob.numpy().reshape(-1), o.write.numpy().reshape(-1)
            skip = module.skip_action(torch.from_numpy(feats[t]), torch.from_numpy(bases[t]), s_torch).numpy()
            s_torch = o.state
            s_ort = out["new_state"]
            err["action"] = max(err["action"], float(np.abs(a_t - out["action"]).max()))
            err["action_skip"] = max(err["action_skip"], float(np.abs(skip - out["action_skip"]).max()))
            err["gate_prob"] = max(err["gate_prob"], float(np.abs(p_t - out["gate_prob"].reshape(-1)).max()))
            err["state"] = max(err["state"], float(np.abs(s_torch.numpy() - s_ort).max()))
            flips += int(bool(w_t[0]) != bool(out["write"].reshape(-1)[0]))
            writes += int(bool(w_t[0]))
            r = runner.step(feats[t][0], bases[t][0])
            if r.write:
                runner.commit()
            runtime_flips += int(r.write != bool(w_t[0]))
            err_runtime["action"] = max(err_runtime["action"], float(np.abs(a_t[0] - r.action).max()))
            err_runtime["state"] = max(
                err_runtime["state"], float(np.abs(s_torch.numpy() - runner.state).max())
            )
    return {
        "steps": steps,
        "writes_torch": writes,
        "max_abs_err": max(err.values()),
        "max_abs_err_by_output": err,
        "write_disagreements": flips,
        "runtime_max_abs_err_by_output": err_runtime,
        "runtime_write_disagreements": runtime_flips,
        "seconds": time.perf_counter() - t0,
        "passed": max(err.values()) <= 1e-5 and flips == 0,
    }


def aura_step_module(layer):
    """AuraMem with the export contract: ``step`` plus ``skip_action`` (the action without this write)."""
    import torch

    class AuraMemStep(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def step(self, z, base_action, state):
            return self.inner.step(z, base_action, state)

        def skip_action(self, z, base_action, state):
            p = self.inner.project(z)
            return base_action + self.inner.correction(self.inner.read(state, p.q), z)

    return AuraMemStep(layer).eval()


def export_layer(layer, out, opset: int = 18, metadata=None):
    """Export an AuraMem's step with its config's static shapes; returns (step module, path)."""
    cfg = layer.config
    module = aura_step_module(layer.eval())
    path = export_step(
        module,
        out,
        d_model=cfg.d_model,
        d_action=cfg.d_action,
        heads=cfg.heads,
        d_key=cfg.d_key,
        d_val=cfg.d_val,
        opset=opset,
        metadata=metadata,
    )
    return module, path


def export_checkpoint(checkpoint, out, opset: int = 18):
    """Load an AuraMem checkpoint directory and export its step; returns (step module, path)."""
    from aura.layer import AuraMem

    layer = AuraMem.load(checkpoint)  # verifies the weights against config.json's weights_sha256
    meta = {"checkpoint": Path(checkpoint).name, "rule": layer.config.rule, "readout": layer.config.readout}
    if getattr(layer, "weights_sha256", None):
        meta["weights_sha256"] = layer.weights_sha256
        # false for a checkpoint saved before config.json recorded the digest: computed, not checked
        meta["weights_verified"] = str(bool(layer.weights_verified)).lower()
    return export_layer(layer, out, opset=opset, metadata=meta)
