"""``aura export backbone CKPT --out model.onnx``: the LIBERO pixel backbone's graph, its checks and parity.

The graph (opset 18, static shapes, batch 1) is ``LiberoVLANet.forward`` traced by
``torch.onnx.export(dynamo=True)``:

    image u8 [1,S,S,3], wrist_image u8 [1,S,S,3], state f32 [1,8], tokens i64 [1,L]
      -> features f32 [1, d_model], actions f32 [1, K, 7]  (+ logits f32 [1, K, 7, B] with the bins head)

(image casting, normalisation and the normalisation statistics are inside the graph; the tokenizer and the
chunk execution are the numpy code both backbones share). The backbone interface (sizes, tokenizer) is
stored as JSON in the file's metadata (``aura.libero_vla``), which is what ``LiberoVLAOnnxConfig`` reads.
Checks: ``onnx.checker.check_model(full_check=True)``, then parity: torch and ONNX Runtime run the same
frames (``--frames DEMO.hdf5``: ``n`` evenly spaced frames of a demo file, as a policy sees them; otherwise
random images, states and instructions) and the max abs error on features and actions must be <= 1e-4.
With the binned action head (``action_head="bins"``) the graph decodes (argmax bin -> its value) and also
outputs the logits: the check is then on features and logits, and the report counts the decoded actions
that differ (``actions_differ``): where two bins' logits are within the runtimes' float error of each other,
the argmax may pick a different bin in each, so a differing action is a near-tie, not a broken graph.

This module imports torch; the ONNX backbone (``policies.libero_vla.onnx_backbone``) never does.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from policies.libero_vla.runtime import INPUTS, LOGITS, OUTPUTS, NetInterface, TokenCache, prepare

TOLERANCE = 1e-4
META_KEY = "aura.libero_vla"  # = policies.libero_vla.onnx_backbone.META_KEY (not imported: needs onnxruntime)


def output_names(net) -> list[str]:
    """The graph's outputs: features, actions (+ logits with the bins head)."""
    return [*OUTPUTS, LOGITS] if net.config.action_head == "bins" else list(OUTPUTS)


def export_graph(net, path, opset: int = 18, metadata: dict | None = None) -> Path:
    """Export ``net`` (a LiberoVLANet) to ``path``; run onnx's full checker; returns the path."""
    import onnx
    import torch

    from deploy.export.trt_check import cast_uint8_inputs
    from policies.libero_vla.model import example_inputs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    names = output_names(net)
    graph = _with_logits(net) if LOGITS in names else net
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            example_inputs(net.config, 1),
            dynamo=True,
            opset_version=opset,
            input_names=list(INPUTS),
            output_names=names,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    if not any(o.domain in ("", "ai.onnx") and o.version == opset for o in model.opset_import):
        raise RuntimeError(f"exporter produced opsets {[(o.domain, o.version) for o in model.opset_import]}")
    cast_uint8_inputs(model)  # TensorRT takes uint8 images only straight into a Cast (trt_check.py)
    meta = {
        META_KEY: json.dumps(net.config.interface().to_dict()),
        "aura.action_head": net.config.action_head,
    }
    meta.update({f"aura.{k}": str(v) for k, v in (metadata or {}).items()})
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, os.fspath(path))
    onnx.checker.check_model(os.fspath(path), full_check=True)
    return path


def _with_logits(net):
    """``net`` returning (features, actions, logits): the bins head's graph (module docstring)."""
    import torch

    class WithLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, image, wrist_image, state, tokens):
            return self.net(image, wrist_image, state, tokens, return_logits=True)

    return WithLogits().eval()


def random_frames(interface: NetInterface, n: int = 100, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` graph inputs with random images, proprio near LIBERO's range and made-up instructions."""
    rng = np.random.default_rng(seed)
    tokens = TokenCache(interface.tokenizer)
    s = interface.image_size
    words = "put pick open close the black bowl mug plate basket drawer stove on in left right of".split()
    out = []
    for _ in range(n):
        obs = {
            "image": rng.integers(0, 256, (s, s, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (s, s, 3), dtype=np.uint8),
            "state": np.concatenate(
                [rng.normal(0, 0.2, 3), rng.uniform(-np.pi, np.pi, 3), rng.uniform(-0.04, 0.04, 2)]
            ).astype(np.float32),
            "language": " ".join(rng.choice(words, size=int(rng.integers(0, 14)))),
        }
        out.append(prepare(obs, s, tokens))
    return out


def demo_frames(path, interface: NetInterface, n: int = 100) -> list[dict[str, np.ndarray]]:
    """``n`` evenly spaced frames of a demo file (``sim/libero/demos.py`` layout) as graph inputs."""
    from policies.libero_vla.data import read_frames

    tokens = TokenCache(interface.tokenizer)
    return [prepare(obs, interface.image_size, tokens) for obs in read_frames(path, n)]


def parity(net, onnx_path, frames: list[dict[str, np.ndarray]], threads: int = 0, n_ref: int = 10) -> dict:
    """Max abs error torch vs ONNX Runtime on ``frames`` (graph inputs); ``passed`` = the checked outputs
    (features and actions; features and logits with the bins head) all <= 1e-4.

    Bins head: ``actions_differ`` counts the decoded action entries (of frames x K x 7) where the two runtimes
    differ (argmax near-ties, module docstring), ``frames_with_differing_actions`` the frames holding any.
    ``float64_ref``: each runtime's max abs error on the checked outputs against a float64 copy of the
    network on the first ``n_ref`` frames - when torch and ORT disagree, this says whether it is float32
    rounding (both about equally far from float64) or one of them computing something else.
    """
    import copy

    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(os.fspath(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = output_names(net)
    bins = LOGITS in names
    checked = ("features", LOGITS) if bins else OUTPUTS
    err = dict.fromkeys(names, 0.0)
    differ = differ_frames = 0
    t_torch = t_ort = 0.0
    net = net.eval().cpu()

    def run_torch(model, x):
        outs = model(*(torch.from_numpy(x[k]) for k in INPUTS), **({"return_logits": True} if bins else {}))
        return dict(zip(names, (t.numpy() for t in outs)))

    def run_ort(x):
        return dict(zip(names, sess.run(names, x)))

    with torch.no_grad():
        for x in frames:
            t0 = time.perf_counter()
            got = run_torch(net, x)
            t1 = time.perf_counter()
            got_o = run_ort(x)
            t2 = time.perf_counter()
            t_torch, t_ort = t_torch + t1 - t0, t_ort + t2 - t1
            for name in names:
                err[name] = max(err[name], float(np.abs(got[name] - got_o[name]).max()))
            n_diff = int((got["actions"] != got_o["actions"]).sum()) if bins else 0
            differ, differ_frames = differ + n_diff, differ_frames + (n_diff > 0)
        ref = {"torch": 0.0, "onnxruntime": 0.0, "frames": min(n_ref, len(frames))}
        net64 = copy.deepcopy(net).double()
        for x in frames[:n_ref]:
            want = run_torch(net64, x)
            got, got_o = run_torch(net, x), run_ort(x)
            for rname, outs in (("torch", got), ("onnxruntime", got_o)):
                ref[rname] = max(ref[rname], *(float(np.abs(outs[n] - want[n]).max()) for n in checked))
    n = max(len(frames), 1)
    report = {
        "frames": len(frames),
        "action_head": net.config.action_head,
        "checked": list(checked),
        "max_abs_err": max(err[n] for n in checked),
        "max_abs_err_by_output": err,
        "tolerance": TOLERANCE,
        "passed": bool(frames) and max(err[n] for n in checked) <= TOLERANCE,
        "mean_ms": {"torch": 1e3 * t_torch / n, "onnxruntime": 1e3 * t_ort / n},
        "float64_ref": ref,
    }
    if bins:
        report.update(actions_differ=differ, frames_with_differing_actions=differ_frames)
    return report


def export_checkpoint(
    checkpoint, out, frames_path=None, n_frames: int = 100, opset: int = 18, seed=0
) -> dict:
    """Load a backbone checkpoint, export it to ``out``, check parity; returns the report dict."""
    import onnx

    from policies.libero_vla.checkpoint import load_checkpoint

    t0 = time.perf_counter()
    net, data = load_checkpoint(checkpoint, device="cpu")
    meta = {"checkpoint": Path(checkpoint).name, "weights_sha256": data["weights"].get("sha256", "")}
    path = export_graph(net, out, opset=opset, metadata=meta)
    interface = net.config.interface()
    if frames_path:
        frames, source = demo_frames(frames_path, interface, n_frames), str(frames_path)
    else:
        frames, source = random_frames(interface, n_frames, seed), f"random (seed {seed})"
    report = parity(net, path, frames)
    model = onnx.load(os.fspath(path), load_external_data=False)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    report.update(
        onnx=str(path),
        bytes=path.stat().st_size,
        opset=opset,
        checker="full_check passed",
        frames_source=source,
        checkpoint=str(checkpoint),
        interface=interface.to_dict(),
        ops=dict(sorted(ops.items())),
        seconds=time.perf_counter() - t0,
    )
    return report
