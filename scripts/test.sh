#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The PDF report tests read the PDF back with pdftotext (poppler-utils); they skip without it.
if ! command -v pdftotext >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "braingui: installing poppler-utils (pdftotext, for the PDF report tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends poppler-utils >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends poppler-utils >/dev/null 2>&1; } \
        || echo "braingui: could not install poppler-utils; the PDF text tests will be skipped"
fi
. .venv/bin/activate
export QT_QPA_PLATFORM=offscreen
python -m pytest -q "$@"
