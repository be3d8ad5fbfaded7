"""Fixtures for the LIBERO pixel backbone: a tiny synthetic demo directory in ``sim/libero/demos.py``'s
layout, and untrained checkpoints (tiny, and the default architecture) with their ONNX
export."""

from __future__ import annotations

import json

import numpy as np
import pytest

LANGUAGES = ("put the black bowl on the plate", "open the top drawer and put the bowl inside")


def write_demo_file(path, task: int, lengths, size: int = 32, compressed: bool = True, seed: int = 0) -> None:
    """One task file: random images, smooth proprio and actions (learnable from the proprio)."""
    import h5py

    rng = np.random.default_rng([seed, task])
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs.update(language=LANGUAGES[task % len(LANGUAGES)], task_id=task, total=int(sum(lengths)),
                          num_demos=len(lengths), image_size=size, env_args=json.dumps({}))  # fmt: skip
        for i, t in enumerate(lengths):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = t
            phase = np.linspace(0, np.pi, t)[:, None] + rng.uniform(0, 1, (1, 1))
            state = np.concatenate([0.1 * np.sin(phase + np.arange(3)), np.tile([np.pi - 0.01, 0, 0], (t, 1)),
                                    0.02 + 0.01 * np.cos(phase) * [1, -1]], axis=1)  # fmt: skip
            action = np.concatenate([np.cos(phase + np.arange(6)), np.where(phase > 2, 1.0, -1.0)], axis=1)
            g.create_dataset("actions", data=action)
            obs = g.create_group("obs")
            img = dict(compression="gzip", compression_opts=4, chunks=True) if compressed else {}
            for cam in ("agentview_rgb", "eye_in_hand_rgb"):
                obs.create_dataset(cam, data=rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8), **img)
            obs.create_dataset("state", data=state.astype(np.float32))


@pytest.fixture(scope="session")
def tiny_demos(tmp_path_factory):
    """Two task files (one gzip-chunked: the fast decoder; one contiguous: h5py's path), 3 + 2 demos."""
    d = tmp_path_factory.mktemp("demos")
    write_demo_file(d / "task0_demo.hdf5", 0, [14, 11, 9], compressed=True)
    write_demo_file(d / "task1_demo.hdf5", 1, [12, 10], compressed=False)
    return d


def _random_stats(net, seed: int = 0) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    net.set_stats(torch.randn(11, generator=g) * 0.1, torch.rand(11, generator=g) + 0.5,
                  torch.randn(7, generator=g) * 0.1, torch.rand(7, generator=g) + 0.5)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_model_config):
    """An untrained tiny checkpoint (random weights and normalisation statistics)."""
    import torch

    from policies.libero_vla.checkpoint import save_checkpoint
    from policies.libero_vla.model import LiberoVLANet

    torch.manual_seed(0)
    net = LiberoVLANet(tiny_model_config)
    _random_stats(net)
    return save_checkpoint(net, tmp_path_factory.mktemp("tiny_ckpt"), {"note": "untrained test fixture"})


@pytest.fixture(scope="session")
def default_ckpt(tmp_path_factory):
    """An untrained checkpoint of the default (deployed) architecture: 128 px, d_model 256, K = 8."""
    import torch

    from policies.libero_vla.checkpoint import save_checkpoint
    from policies.libero_vla.model import LiberoVLANet, ModelConfig

    torch.manual_seed(0)
    net = LiberoVLANet(ModelConfig())
    _random_stats(net, 1)
    for p in net.parameters():  # FiLM and the head start at ~0: perturb so parity sees every path
        p.data.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return save_checkpoint(net, tmp_path_factory.mktemp("default_ckpt"))


@pytest.fixture(scope="session")
def default_onnx(default_ckpt, tmp_path_factory):
    """(exported .onnx path, the torch net it came from)."""
    from deploy.export.backbone_graph import export_graph
    from policies.libero_vla.checkpoint import load_checkpoint

    net, _ = load_checkpoint(default_ckpt)
    return export_graph(net, tmp_path_factory.mktemp("onnx") / "backbone.onnx"), net


@pytest.fixture
def make_observation():
    """``make_observation(size, seed, language)`` -> a LiberoEnv-style observation dict."""

    def make(size: int = 32, seed: int = 0, language: str = LANGUAGES[0]) -> dict:
        rng = np.random.default_rng(seed)
        return {
            "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "state": np.array([0.1, 0.0, 0.6, 3.1, 0.0, 0.1, 0.03, -0.03], dtype=np.float32),
            "language": language,
        }

    return make


@pytest.fixture
def train_tiny(tiny_demos, tiny_vla_fields):
    """``train_tiny(out, **TrainConfig fields)``: a CPU run of the tiny model on the tiny demos."""
    from policies.libero_vla.train import TrainConfig, train

    def run(out, **kw):
        fields = dict(
            demos=str(tiny_demos),
            out=str(out),
            batch=8,
            device="cpu",
            log_every=5,
            warmup=5,
            shift=2,
            progress=False,
            threads=1,
            model=dict(tiny_vla_fields),
            command="pytest tiny run",
        )
        fields.update(kw)
        return train(TrainConfig(**fields))

    return run


@pytest.fixture
def assert_onnx_backbone_is_torch_free():
    """A checker: the ONNX backbone of ``path`` runs a call in a fresh interpreter that imports no torch."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def check(path, image_size: int, d_model: int) -> None:
        code = f"""
import sys, numpy as np
from policies.factory import make_backbone
cfg = "policies.libero_vla.onnx_backbone:LiberoVLAOnnxConfig"
b = make_backbone(cfg, {{"model": {str(path)!r}, "threads": 1}})
img = np.zeros(({image_size}, {image_size}, 3), np.uint8)
z, a = b(dict(image=img, wrist_image=img, state=np.zeros(8, np.float32), language="open the drawer"))
assert z.shape == ({d_model},) and a.shape == (7,)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "[]"

    return check


@pytest.fixture
def torch_and_onnx_backbones():
    """``pair(ckpt, onnx_path)`` -> (torch backbone, ONNX backbone) of one checkpoint, gripper not snapped
    (so actions compare as the networks give them); the ONNX one passes the contract check and both
    declare the same spec but for the torch one's context input."""
    import dataclasses

    from policies.backbone import check_backbone
    from policies.factory import make_backbone

    def pair(ckpt, onnx_path):
        opts = {"binarize_gripper": False}
        tb = make_backbone("libero_vla", {"checkpoint": str(ckpt), "device": "cpu", **opts})
        onnx_cfg = "policies.libero_vla.onnx_backbone:LiberoVLAOnnxConfig"
        ob = make_backbone(onnx_cfg, {"model": str(onnx_path), "threads": 1, **opts})
        check_backbone(ob)
        # the same spec, but for the context input: the ONNX graph reads token ids and takes none
        assert ob.spec == dataclasses.replace(tb.spec, d_context=0) and tb.spec.d_context > 0
        return tb, ob

    return pair
