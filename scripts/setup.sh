#!/usr/bin/env bash
# Set up .venv with braingui and its test tools, and the system libraries Qt needs; quick and silent when
# nothing changed. Steps, each skipped while its stamp in .venv matches its inputs (scripts/setup_stamp.py):
#   packages:    the venv, the CPU build torch==2.13.0 first when no torch is present (so pip does not pull
#                a multi-GB CUDA build; GPU users install their own CUDA torch, pyproject accepts a range),
#                then `pip install -e .[test]`. Runs when .venv is missing or pyproject.toml/this file changed.
#   system-libs: the shared libraries of Qt's xcb platform plugin that are not found, installed with apt-get
#                as root on Debian/Ubuntu; otherwise one line names the install command and set-up stops
#                (scripts/qt_system_libs.py).
# Output of pip and apt-get goes to .venv/setup.log and is shown only when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=scripts/setup_stamp.py
PKG_INPUTS=(pyproject.toml scripts/setup.sh)
LIB_INPUTS=(pyproject.toml scripts/setup.sh scripts/qt_system_libs.py)
LOG=.venv/setup.log

fail() {  # print the log and one line, and stop
    [ -f "$LOG" ] && cat "$LOG" >&2
    echo "braingui set-up failed: $* (log: $LOG)" >&2
    exit 1
}
logged() {  # run a command with its output appended to the log; returns its status
    echo "\$ $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

if ! "$PY" "$STAMP" fresh .venv packages "${PKG_INPUTS[@]}"; then
    echo "braingui: setting up .venv (first run, or pyproject.toml or this script changed; log: $LOG)" >&2
    if [ ! -x .venv/bin/python ]; then
        out=$("$PY" -m venv .venv 2>&1) || { echo "$out" >&2; echo "braingui set-up failed: $PY -m venv .venv" >&2; exit 1; }
    fi
    : >"$LOG"
    "$PY" "$STAMP" clear .venv packages
    "$PY" "$STAMP" clear .venv system-libs
    VPY=.venv/bin/python
    logged "$VPY" -m pip install --disable-pip-version-check --upgrade pip || fail "pip install --upgrade pip"
    if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
        logged "$VPY" -m pip install --disable-pip-version-check "torch==2.13.0" \
            || logged "$VPY" -m pip install --disable-pip-version-check \
                --index-url https://download.pytorch.org/whl/cpu "torch>=2.2,<3" \
            || fail "pip install torch"
    fi
    logged "$VPY" -m pip install --disable-pip-version-check -e ".[test]" || fail "pip install -e .[test]"
    "$PY" "$STAMP" write .venv packages "${PKG_INPUTS[@]}"
fi

if ! "$PY" "$STAMP" fresh .venv system-libs "${LIB_INPUTS[@]}"; then
    .venv/bin/python scripts/qt_system_libs.py --log "$LOG" || exit 1
    "$PY" "$STAMP" write .venv system-libs "${LIB_INPUTS[@]}"
fi
