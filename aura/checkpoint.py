"""Checkpoints: a directory with ``model.safetensors`` and ``config.json``, for any module with a config.

config.json = {"format": FORMAT, "format_version": 1, "config": {config fields}, "meta": {...},
"weights_sha256": sha256 of model.safetensors}. Loading never unpickles anything: :func:`read_config` checks
the format and version, :func:`load_weights` checks every tensor's name, shape, dtype and finiteness against
the freshly built module's and then the file's sha256 against ``weights_sha256`` (so a flipped weight byte
that still parses is refused too), and both raise :class:`CheckpointError` naming the file. Checkpoints
saved before the digest existed have no ``weights_sha256`` and load unverified. The module that owns the
config (``aura.layer.AuraMem``) builds itself from the config between the two calls, so this module knows
no model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupt, or does not match the model it is loaded into."""


def save_checkpoint(module: torch.nn.Module, config: dict, path, fmt: str, meta: dict | None = None) -> Path:
    """Write ``path/model.safetensors`` (float32, CPU) and ``path/config.json``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: t.detach().to("cpu", torch.float32).contiguous() for name, t in module.state_dict().items()
    }
    save_file(tensors, str(path / WEIGHTS), metadata={"format": fmt, "format_version": str(FORMAT_VERSION)})
    digest = hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest()
    doc = {"format": fmt, "format_version": FORMAT_VERSION, "config": config, "meta": meta or {}}
    doc["weights_sha256"] = digest
    (path / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def recorded_weights_sha256(path) -> str | None:
    """The ``weights_sha256`` config.json recorded at save (None for checkpoints older than it)."""
    try:
        doc = json.loads((Path(path) / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    value = doc.get("weights_sha256") if isinstance(doc, dict) else None
    if value is not None and not (isinstance(value, str) and len(value) == 64):
        raise CheckpointError(f"{Path(path) / CONFIG}: weights_sha256 must be 64 hex digits, got {value!r}")
    return value


def read_config(path, fmt: str) -> tuple[dict, dict]:
    """The ``config`` and ``meta`` objects of a checkpoint directory of format ``fmt`` (no weights read)."""
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
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise CheckpointError(f"{cfg_file}: not an {fmt} checkpoint config (format={_get(doc, 'format')!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_file}: format_version {doc.get('format_version')!r} is not supported"
            f" (expected {FORMAT_VERSION})"
        )
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{cfg_file}: meta must be a JSON object")
    return doc.get("config"), meta


def load_weights(
    path, expected: dict[str, torch.Tensor], sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, sha256) of ``path/model.safetensors``, checked against ``expected`` (a module's state_dict)
    and, when given, against ``sha256`` (the digest recorded at save). The bytes are read once: what is
    hashed is what is loaded."""
    w_file = Path(path) / WEIGHTS
    if not w_file.is_file():
        raise CheckpointError(f"{w_file}: missing")
    data = w_file.read_bytes()
    try:
        loaded = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types for truncated / garbage files
        raise CheckpointError(f"{w_file}: corrupt or not a safetensors file ({exc})") from None
    names = set(loaded)
    tensors = {name: loaded[name] for name in names & set(expected)}
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
    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256:
        raise CheckpointError(
            f"{w_file}: sha256 {actual[:16]}... does not match the weights_sha256 {sha256[:16]}... recorded "
            f"in {CONFIG} at save: the weights are corrupt or were replaced"
        )
    return tensors, actual


def _get(doc, key):
    return doc.get(key) if isinstance(doc, dict) else None
