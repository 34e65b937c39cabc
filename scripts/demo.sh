#!/usr/bin/env bash
# Set up (if needed) and start braingui on the built-in synthetic demo case.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec braingui --demo "$@"
