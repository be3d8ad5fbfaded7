"""The backbone checkpoint directory: ``config.json`` + ``model.safetensors`` (no pickle anywhere).

    CKPT/config.json           {"format": "aura-libero-vla", "version": 1, "model": ModelConfig,
                                "interface": NetInterface, "weights": {file, dtype, sha256, bytes, params},
                                "training": {command, seed, data recipe, log summary}}
    CKPT/model.safetensors     parameters in float16 (half the file: 5.6 M params = 11 MB), the normalisation
                               buffers in float32; loaded back as float32
    CKPT/train_state.*         the optimizer state for ``--resume`` (``policies.libero_vla.train``)

A file that is missing, unreadable, not what config.json says (sha256), or whose tensors do not match the
architecture raises :class:`CheckpointError` naming the file. float16 storage costs nothing measurable:
training runs the matmuls in bfloat16 (8-bit mantissa), float16 keeps 11 bits.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from policies.libero_vla.model import LiberoVLANet, ModelConfig, count_parameters
from policies.libero_vla.runtime import CheckpointError

FORMAT = "aura-libero-vla"
VERSION = 1
CONFIG, WEIGHTS = "config.json", "model.safetensors"
__all__ = ["CheckpointError", "load_checkpoint", "read_config", "save_checkpoint"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous file


def save_checkpoint(
    net: LiberoVLANet, directory, training: dict | None = None, dtype: str = "float16"
) -> Path:
    """Write ``directory/model.safetensors`` and ``config.json`` (module docstring); returns the directory."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    store = getattr(torch, dtype)
    params = {n for n, _ in net.named_parameters()}
    tensors = {
        k: (v.detach().to("cpu", store if k in params else torch.float32)).contiguous()
        for k, v in net.state_dict().items()
    }
    path = d / WEIGHTS
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": str(VERSION)})
    os.chmod(tmp, 0o644)  # safetensors creates its file 0600; a checkpoint is meant to be shared
    os.replace(tmp, path)
    cfg = net.config
    write_json(
        d / CONFIG,
        {
            "format": FORMAT,
            "version": VERSION,
            "model": cfg.to_dict(),
            "interface": cfg.interface().to_dict(),
            "weights": {
                "file": WEIGHTS,
                "dtype": dtype,
                "sha256": sha256(path),
                "bytes": path.stat().st_size,
                "params": count_parameters(net),
            },
            "training": training or {},
        },
    )
    return d


def read_config(directory) -> dict:
    """``config.json`` of a checkpoint directory, checked for format and version."""
    path = Path(directory) / CONFIG
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory (expected {CONFIG} + {WEIGHTS})")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a libero_vla checkpoint)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: format {got!r} is not {FORMAT!r}")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: version {data.get('version')!r}, this code reads {VERSION}")
    return data


def load_checkpoint(directory, device: str = "cpu") -> tuple[LiberoVLANet, dict]:
    """(float32 network in eval mode on ``device``, config.json dict); CheckpointError names a bad file."""
    from safetensors import safe_open

    data = read_config(directory)
    cpath, wpath = Path(directory) / CONFIG, Path(directory) / WEIGHTS
    try:
        cfg = ModelConfig.from_dict(data["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{cpath}: bad model config ({err})") from None
    if not wpath.is_file():
        raise CheckpointError(f"{wpath}: missing")
    want = data.get("weights", {}).get("sha256")
    if want and sha256(wpath) != want:
        raise CheckpointError(f"{wpath}: sha256 differs from {CONFIG}'s (corrupt or replaced file)")
    net = LiberoVLANet(cfg)
    expected = net.state_dict()
    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            got = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as err:  # safetensors raises its own error types for truncated/garbled files
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({type(err).__name__}: {err})") from None
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{wpath}: tensors do not match {CONFIG}'s model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for k, v in expected.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{wpath}: {k} has shape {tuple(got[k].shape)}, the model needs {tuple(v.shape)}"
            )
        if not torch.isfinite(got[k].float()).all():
            raise CheckpointError(f"{wpath}: {k} has non-finite values")
    net.load_state_dict({k: v.float() for k, v in got.items()})
    return net.to(device).eval(), data
