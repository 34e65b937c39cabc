#!/usr/bin/env bash
# Build the one-folder braingui app (PyInstaller) from a clean checkout, smoke-test it, archive it.
#
#   bash packaging/build.sh                     # Linux, macOS, Windows (Git Bash); see packaging/README.md
#
# Steps: a build venv (.venv-build/, reused) with CPU torch==2.13.0 when it has no torch, pinned
# PyInstaller, and the project; pyinstaller packaging/braingui.spec -> dist/braingui/; the frozen
# `braingui --version` and (when model bundles are at hand) `braingui --selftest` with an empty
# environment, and the frozen app's --no-gui results compared with the source install's; then the archive: dist/braingui-<version>-linux-<arch>.tar.gz, a .dmg on macOS, the
# Inno Setup installer (or a .zip) on Windows.
#
# Environment (all optional):
#   PYTHON=python3.11        interpreter for the build venv (3.10+; Linux needs a shared libpython)
#   BUILD_VENV=.venv-build   the build venv (an existing venv is reused as it is)
#   TORCH_VARIANT=cpu|cuda   torch to install when the venv has none (default cpu; cuda: 3-5 GB app)
#   TORCH_VERSION=2.13.0     that torch's version
#   TORCH_INDEX_URL=URL      pip index for that torch (default: the PyTorch CPU index for cpu, PyPI's
#                            default wheel for cuda - see packaging/README.md)
#   SELFTEST=auto|1|0        run the frozen --selftest (auto: when bundles are shipped or SELFTEST_MODELS is set)
#   SELFTEST_MODELS=DIR      --models for that self-test and the frozen-vs-source check; "tiny": make tiny
#                            test bundles (tests/inference_helpers.py) for it; "tiny-if-none": tiny bundles
#                            only while braingui/models holds none (CI)
#   ARCHIVE=1|0              make the archive / installer (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENV=${BUILD_VENV:-.venv-build}
TORCH_VARIANT=${TORCH_VARIANT:-cpu}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PYINSTALLER_PINS=${PYINSTALLER_PINS:-"pyinstaller==6.22.3 pyinstaller-hooks-contrib==2026.9"}
SELFTEST=${SELFTEST:-auto}
ARCHIVE=${ARCHIVE:-1}
PIP_QUIET=${PIP_QUIET:--q}

case "$(uname -s)" in
    Linux*) OS=linux ;;
    Darwin*) OS=macos ;;
    MINGW*|MSYS*|CYGWIN*) OS=windows ;;
    *) echo "build.sh: unknown system $(uname -s)" >&2; exit 2 ;;
esac
ARCH=$(uname -m)
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' braingui/__init__.py)
log() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
T_START=$(date +%s)

log "build venv $VENV"
if [ ! -x "$VENV/bin/python" ] && [ ! -x "$VENV/Scripts/python.exe" ]; then
    "$PY" -m venv "$VENV"
fi
if [ -x "$VENV/Scripts/python.exe" ]; then VPY="$VENV/Scripts/python.exe"; else VPY="$VENV/bin/python"; fi
"$VPY" -m pip install $PIP_QUIET --disable-pip-version-check --upgrade pip

if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    log "torch $TORCH_VERSION ($TORCH_VARIANT)"
    if [ "$TORCH_VARIANT" = cpu ] && [ "$OS" != macos ]; then
        # A wheel cache or mirror with the +cpu build first (no network to pytorch.org needed), then the
        # PyTorch CPU index. Never plain PyPI on Linux: that torch is the CUDA build (GBs of nvidia-* wheels).
        "$VPY" -m pip install $PIP_QUIET "torch==$TORCH_VERSION+cpu" 2>/dev/null \
            || "$VPY" -m pip install $PIP_QUIET --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" \
                   "torch==$TORCH_VERSION"
    elif [ "$TORCH_VARIANT" = cuda ] && [ "$OS" = windows ] && [ -z "${TORCH_INDEX_URL:-}" ]; then
        echo "build.sh: PyPI's Windows torch is the CPU build; for CUDA set TORCH_INDEX_URL" \
             "(e.g. https://download.pytorch.org/whl/cu128)" >&2
        exit 2
    elif [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$VPY" -m pip install $PIP_QUIET --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
    else  # macOS (CPU + MPS), or cuda: PyPI's Linux wheel is the CUDA build
        "$VPY" -m pip install $PIP_QUIET "torch==$TORCH_VERSION"
    fi
fi
log "PyInstaller and the project"
"$VPY" -m pip install $PIP_QUIET $PYINSTALLER_PINS
"$VPY" -m pip install $PIP_QUIET -e .
"$VPY" - <<'EOF'
import torch, PyInstaller, braingui
print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), PyInstaller {PyInstaller.__version__}, "
      f"braingui {braingui.__version__}")
EOF
"$VPY" packaging/datafiles.py | sed 's/^/  package data: /'

log "pyinstaller packaging/braingui.spec"
mkdir -p build
T_PYI=$(date +%s)
"$VPY" -m PyInstaller --noconfirm --clean --log-level "${PYI_LOG_LEVEL:-WARN}" \
    --distpath dist --workpath build/pyinstaller packaging/braingui.spec
echo "pyinstaller: $(( $(date +%s) - T_PYI )) s"

APP_DIR=dist/braingui
case "$OS" in
    windows) EXE="$APP_DIR/braingui-cli.exe" ;;
    macos) EXE="dist/braingui.app/Contents/MacOS/braingui-cli" ;;
    *) EXE="$APP_DIR/braingui" ;;
esac
# An empty environment: no Python, no venv on PATH (Windows needs SYSTEMROOT to start anything).
# Qt offscreen everywhere: build machines and CI runners have no GPU, and the window check needs none.
run_frozen() {
    if [ "$OS" = windows ]; then
        env -i HOME="$HOME" SYSTEMROOT="${SYSTEMROOT:-C:\\Windows}" TEMP="${TEMP:-}" TMP="${TMP:-}" \
            USERPROFILE="${USERPROFILE:-}" APPDATA="${APPDATA:-}" LOCALAPPDATA="${LOCALAPPDATA:-}" \
            QT_QPA_PLATFORM=offscreen "$@"
    else
        env -i HOME="$HOME" QT_QPA_PLATFORM=offscreen "$@"
    fi
}

log "smoke test: $EXE --version"
run_frozen "$EXE" --version

HAVE_BUNDLES=$(find braingui/models -name manifest.json 2>/dev/null | head -n 1 || true)
if [ -n "$HAVE_BUNDLES" ] && [ "${SELFTEST_MODELS:-}" = tiny-if-none ]; then
    SELFTEST_MODELS=""  # the shipped bundles are there: test those
fi
if [ "${SELFTEST_MODELS:-}" = tiny ] || [ "${SELFTEST_MODELS:-}" = tiny-if-none ]; then
    log "tiny test bundles (tests/inference_helpers.py) -> build/test-models"
    "$VPY" -c "import pytest" >/dev/null 2>&1 || "$VPY" -m pip install $PIP_QUIET pytest
    rm -rf build/test-models
    "$VPY" -c "import sys; sys.path[:0] = ['tests', '.']; from inference_helpers import make_models_dir; make_models_dir('build/test-models')"
    SELFTEST_MODELS=$ROOT/build/test-models
fi
MODELS_ARGS=()
if [ -n "${SELFTEST_MODELS:-}" ]; then MODELS_ARGS=(--models "$SELFTEST_MODELS"); fi
if [ "$SELFTEST" = 1 ] || { [ "$SELFTEST" = auto ] && { [ -n "$HAVE_BUNDLES" ] || [ -n "${SELFTEST_MODELS:-}" ]; }; }; then
    log "self-test: $EXE --selftest ${MODELS_ARGS[*]+"${MODELS_ARGS[*]}"}"
    T_ST=$(date +%s)
    run_frozen "$EXE" --selftest ${MODELS_ARGS[@]+"${MODELS_ARGS[@]}"} > build/selftest.json
    echo "self-test passed in $(( $(date +%s) - T_ST )) s (report: build/selftest.json)"

    log "frozen vs source: --no-gui on the small synthetic demo case"
    rm -rf build/parity
    run_frozen "$EXE" demo-case --small build/parity/case
    run_frozen "$EXE" --case build/parity/case --no-gui --out build/parity/frozen ${MODELS_ARGS[@]+"${MODELS_ARGS[@]}"}
    "$VPY" -m braingui.app --case build/parity/case --no-gui --out build/parity/source ${MODELS_ARGS[@]+"${MODELS_ARGS[@]}"}
    "$VPY" packaging/compare_results.py build/parity/frozen build/parity/source
else
    echo "self-test skipped: no bundles in braingui/models and no SELFTEST_MODELS (SELFTEST_MODELS=tiny makes test bundles)"
fi

APP_MB=$(du -sm "$APP_DIR" | cut -f1)
echo "app folder: $APP_DIR, ${APP_MB} MB"
if [ "$ARCHIVE" = 1 ]; then
    case "$OS" in
        linux)
            log "archive (tar.gz)"
            OUT="dist/braingui-$VERSION-linux-$ARCH.tar.gz"
            if command -v pigz >/dev/null 2>&1; then
                tar -C dist -cf - braingui | pigz -6 > "$OUT"
            else
                tar -C dist -czf "$OUT" braingui
            fi ;;
        macos)
            log "disk image (.dmg)"
            OUT="dist/braingui-$VERSION-macos-$ARCH.dmg"
            bash packaging/macos/make_dmg.sh dist/braingui.app "$OUT" ;;
        windows)
            ISCC=$(command -v iscc || command -v ISCC.exe || true)
            if [ -z "$ISCC" ] && [ -x "/c/Program Files (x86)/Inno Setup 6/ISCC.exe" ]; then
                ISCC="/c/Program Files (x86)/Inno Setup 6/ISCC.exe"
            fi
            if [ -n "$ISCC" ]; then
                log "installer (Inno Setup)"
                "$ISCC" //Qp "//DAppVersion=$VERSION" packaging/windows/braingui.iss
                OUT="dist/braingui-$VERSION-windows-setup.exe"
            else
                log "archive (.zip; install Inno Setup 6 for the installer)"
                OUT="dist/braingui-$VERSION-windows-$ARCH.zip"
                powershell -NoProfile -Command "Compress-Archive -Force -Path dist/braingui -DestinationPath $OUT"
            fi ;;
    esac
    echo "archive: $OUT, $(du -sm "$OUT" | cut -f1) MB"
fi
echo "build.sh: done in $(( $(date +%s) - T_START )) s"
