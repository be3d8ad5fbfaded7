"""Backbones by name: a registry of config dataclasses, as LeRobot's ``policies/factory.py`` keeps policies.

Each backbone folder under ``policies/`` defines a config dataclass with a ``build()`` method that returns the
backbone (``policies.backbone.Backbone``). :data:`BUILTIN` names them; a user's own backbone is reached as
``module:Attr`` (a config dataclass or any callable returning a backbone) or registered at run time with
:func:`register_backbone`. Modules are imported only when their backbone is built, so ``aura run`` with a
numpy backbone never imports torch.

    backbone = make_backbone("random_encoder", {"d_model": 64})
    backbone = make_backbone("mypkg.robots:MyBackbone", {"checkpoint": "ckpt/"})
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

from policies.backbone import Backbone, BackboneError, check_backbone

# name -> ("module:ConfigClass", preset fields). Adding a backbone = a folder under policies/ + one line here.
BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "noise": ("policies.noise:NoiseConfig", {}),
    "random_encoder": ("policies.random_encoder:RandomEncoderConfig", {}),
    "libero_expert": ("policies.libero_expert.backbone:PrivilegedConfig", {"policy": "expert"}),
    "libero_noop": ("policies.libero_expert.backbone:PrivilegedConfig", {"policy": "noop"}),
    "libero_vla": ("policies.libero_vla:LiberoVLAConfig", {}),
    "libero_vla_onnx": ("policies.libero_vla.onnx_backbone:LiberoVLAOnnxConfig", {}),
}
_REGISTERED: dict[str, tuple[Any, dict[str, Any]]] = {}


def register_backbone(name: str, **preset):
    """Class decorator: make the config dataclass (or backbone factory) available as ``name``."""

    def deco(target):
        _REGISTERED[name] = (target, dict(preset))
        return target

    return deco


def backbone_names() -> list[str]:
    return sorted({*BUILTIN, *_REGISTERED})


def import_target(path: str, option: str) -> Any:
    """The object ``module:Attr`` names (a user's backbone or robot); ValueError naming ``option``."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{option} {path!r}: expected a registered name or module:Attr")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{option} {path!r}: cannot import module {module_name!r} ({err})") from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{option} {path!r}: module {module_name!r} has no attribute {attr!r}") from None


def resolve(name: str, option: str = "--backbone") -> tuple[Any, dict[str, Any]]:
    """(config class or factory, preset fields) for a registered name or ``module:Attr``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        target, preset = BUILTIN[name]
        return import_target(target, option), dict(preset)
    if ":" in name:
        return import_target(name, option), {}
    raise BackboneError(
        f"{option}: unknown backbone {name!r} (choose from {backbone_names()} or module:Class)"
    )


def config_fields(target) -> set[str] | None:
    """Field names of a config dataclass, or None when ``target`` is a plain factory."""
    return {f.name for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else None


def make_backbone(
    name: str,
    args: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    option: str = "--backbone",
) -> Backbone:
    """Build backbone ``name`` with fields ``args``; ``defaults`` fill only fields its config declares.

    ``defaults`` is how a harness offers context (e.g. the memory model's ``d_model``) without knowing the
    backbone: only config dataclasses that declare such a field are given it (a plain factory never is).
    Errors name ``option``.
    """
    target, fields = resolve(name, option)
    args = dict(args or {})
    known = config_fields(target)
    for key, value in (defaults or {}).items():
        if known is not None and key in known and key not in args and key not in fields:
            fields[key] = value
    fields.update(args)
    if known is not None:
        unknown = sorted(set(fields) - known)
        if unknown:
            raise BackboneError(f"{option} {name}: unknown field(s) {unknown} (it takes {sorted(known)})")
    try:
        made = target(**fields)
        backbone = made.build() if known is not None else made
    except BackboneError:
        raise
    except (TypeError, ValueError) as err:
        raise BackboneError(f"{option} {name}: {err}") from err
    return check_backbone(backbone, f"{option} {name}")


def parse_fields(items: list[str] | None, option: str = "--backbone-arg") -> dict[str, Any]:
    """``["d_model=64", "policy=noop"]`` -> ``{"d_model": 64, "policy": "noop"}`` (JSON values, else
    strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise BackboneError(f"{option} {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out
