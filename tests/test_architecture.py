"""Imports point one way (docs/ARCHITECTURE.md, "Folder -> what it may import"): every module's imports,
module level and inside functions, are read with ast and checked against the table."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("aura", "policies", "deploy", "sim", "cli")
# Most specific first: a module belongs to the first part whose prefix it has.
PARTS = (
    "aura.contract",
    "aura.schedules",
    "aura",
    "policies",
    "deploy.runtime",
    "deploy.export",
    "deploy",
    "sim",
    "cli",
)
MAY_IMPORT = {
    "aura.contract": set(),
    "aura.schedules": set(),
    "aura": {"aura", "aura.contract", "aura.schedules"},
    "policies": {"policies"},
    "deploy.runtime": {"deploy.runtime", "aura.contract"},
    "deploy.export": {
        "deploy.export",
        "deploy.runtime",
        "aura",
        "aura.contract",
        "aura.schedules",
        "policies",
    },
    "deploy": set(),  # the package's __init__ (its docstring), nothing else
    "sim": {"sim", "aura", "aura.contract", "aura.schedules", "policies", "deploy.runtime", "deploy.export"},
    "cli": set(PARTS),
}
# Third-party packages a part may import (None: any). The runtime `aura run` loads is numpy + ONNX Runtime /
# TensorRT only; the contract and schedules are what it shares with the torch side.
THIRD_PARTY = {
    "aura.contract": set(),
    "aura.schedules": {"numpy"},
    "deploy.runtime": {"numpy", "onnxruntime", "tensorrt"},
}
# Modules `aura run` loads outside deploy/runtime: no torch at all, not even inside a function.
TORCH_FREE = (
    "policies/backbone.py",
    "policies/factory.py",
    "policies/noise/__init__.py",
    "sim/robots.py",
    "sim/synthetic/robot.py",
    "sim/synthetic/env.py",
    "sim/synthetic/generator.py",
    "sim/synthetic/config.py",
    "policies/libero_vla/__init__.py",
    "policies/libero_vla/config.py",
    "policies/libero_vla/onnx_backbone.py",
    "policies/libero_vla/runtime.py",
    "policies/libero_vla/text.py",
    "policies/libero_vla/execution.py",
    "cli/__init__.py",
    "cli/run.py",
    "cli/common.py",
)


def part_of(module: str) -> str | None:
    for part in PARTS:
        if module == part or module.startswith(part + "."):
            return part
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file; relative imports resolved against it."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from aura import contract` imports aura.contract: name the submodules too
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def source_files():
    return sorted(p for top in OURS for p in (ROOT / top).rglob("*.py"))


def violations(path: Path) -> list[str]:
    me = part_of(module_name(path))
    bad = []
    for line, mod in imports(path):
        top = mod.split(".")[0]
        if top in OURS:
            target = part_of(mod)
            if target == "deploy" and mod == "deploy":  # `from deploy import x` names the bare package
                continue
            if target not in MAY_IMPORT[me] and target != me:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {me} imports {mod} ({target})")
        elif me in THIRD_PARTY and top not in sys.stdlib_module_names and top not in THIRD_PARTY[me]:
            bad.append(f"{path.relative_to(ROOT)}:{line}: {me} imports third-party {mod}")
    rel = str(path.relative_to(ROOT))
    if rel in TORCH_FREE:
        bad += [
            f"{rel}:{line}: imports {mod} (must stay torch-free)"
            for line, mod in imports(path)
            if mod.split(".")[0] in ("torch", "triton")
        ]
    return bad


def test_every_module_belongs_to_a_part():
    files = source_files()
    assert len(files) > 50
    assert all(part_of(module_name(p)) for p in files)


@pytest.mark.parametrize("top", OURS)
def test_no_forbidden_import_arrows(top):
    bad = [v for p in source_files() if p.relative_to(ROOT).parts[0] == top for v in violations(p)]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_forbidden_arrow(tmp_path, monkeypatch):
    """A planted aura -> sim import and a torch import in the runtime are both reported."""
    fake = tmp_path / "aura" / "bad.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from sim.synthetic import generate\n")
    rt = tmp_path / "deploy" / "runtime" / "bad.py"
    rt.parent.mkdir(parents=True)
    rt.write_text("import torch\nfrom . import state\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations(fake) == [
        "aura/bad.py:2: aura imports sim.synthetic (sim)",
        "aura/bad.py:2: aura imports sim.synthetic.generate (sim)",
    ]
    assert violations(rt) == ["deploy/runtime/bad.py:1: deploy.runtime imports third-party torch"]
