#!/usr/bin/env bash
# Set up .venv with braingui and its test tools on a fresh machine (idempotent).
# Installs the CPU build torch==2.13.0 first when no torch is present, so pip does not pull a
# multi-GB CUDA build; GPU users install their own CUDA torch (pyproject accepts a range).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
if ! python -c "import torch" >/dev/null 2>&1; then
    python -m pip install -q "torch==2.13.0" \
        || python -m pip install -q --index-url https://download.pytorch.org/whl/cpu "torch>=2.2,<3"
fi
python -m pip install -q -e ".[test]"
