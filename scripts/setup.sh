#!/usr/bin/env bash
# Install tgdmat into the active Python environment (use a venv if you like).
# torch is installed first and pinned so that pip takes the CPU build and never a CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[dev]"
