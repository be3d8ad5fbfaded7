#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and runs lint, format check and the default test suite.
# Heavy runs are behind markers: `.venv/bin/pytest -m slow` / `-m gpu_heavy`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
