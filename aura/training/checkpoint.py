"""AuraMem checkpoints: a directory with ``model.safetensors`` and ``config.json``.

config.json = {"format": "aura-mem", "format_version": 1, "config": AuraMemConfig fields, "meta": {...}}.
Loading never unpickles anything; it checks the format, the config, and every tensor's name, shape,
dtype and finiteness against a freshly built model, and raises ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from aura.layer import AuraMem, AuraMemConfig, CheckpointError

FORMAT = "aura-mem"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_checkpoint(model: AuraMem, path, meta: dict | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: t.detach().to("cpu", torch.float32).contiguous() for name, t in model.state_dict().items()
    }
    save_file(
        tensors, str(path / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    )
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "meta": meta or {},
    }
    (path / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def read_config(path) -> tuple[AuraMemConfig, dict]:
    """The config and meta of a checkpoint directory (no weights read)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory (expected {CONFIG} and {WEIGHTS})")
    cfg_file = path / CONFIG
    try:
        doc = json.loads(cfg_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{cfg_file}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(
            f"{cfg_file}: not an {FORMAT} checkpoint config (format={_get(doc, 'format')!r})"
        )
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_file}: format_version {doc.get('format_version')!r} is not supported"
            f" (expected {FORMAT_VERSION})"
        )
    try:
        config = AuraMemConfig.from_dict(doc.get("config"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_file}: bad config: {exc}") from None
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{cfg_file}: meta must be a JSON object")
    return config, meta


def load_checkpoint(path, map_location: str = "cpu") -> AuraMem:
    path = Path(path)
    config, meta = read_config(path)
    model = AuraMem(config)
    expected = model.state_dict()
    w_file = path / WEIGHTS
    if not w_file.is_file():
        raise CheckpointError(f"{w_file}: missing")
    tensors = {}
    try:
        with safe_open(str(w_file), framework="pt", device="cpu") as f:
            names = set(f.keys())
            for name in names & set(expected):
                tensors[name] = f.get_tensor(name)
    except Exception as exc:  # safetensors raises its own error types for truncated / garbage files
        raise CheckpointError(f"{w_file}: corrupt or not a safetensors file ({exc})") from None
    missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{w_file}: does not match config.json (missing {missing}, unexpected {unexpected})"
        )
    for name, ref in expected.items():
        t = tensors[name]
        if t.shape != ref.shape:
            raise CheckpointError(
                f"{w_file}: {name} has shape {tuple(t.shape)}, config needs {tuple(ref.shape)}"
            )
        if t.dtype != torch.float32:
            raise CheckpointError(f"{w_file}: {name} has dtype {t.dtype}, expected torch.float32")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{w_file}: {name} contains non-finite values")
    model.load_state_dict(tensors)
    model.meta = meta
    model.eval()
    return model.to(map_location)


def _get(doc, key):
    return doc.get(key) if isinstance(doc, dict) else None
