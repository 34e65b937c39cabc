#!/usr/bin/env bash
# Regenerate the app screenshots in this folder (no screen needed; Xvfb gives the real xcb look).
#
#   bash docs/screenshots/make_screenshots.sh [MODELS_DIR]
#
# MODELS_DIR: a folder of model bundles (default: the demo bundles shipped in braingui/models, trained by
# training/; the app says "research demonstration - not for clinical use" next to their results).
# The real case, Brats18_TCIA02_135_1, is one of the two BraTS cases held out from the segmentation
# model's training; it is read from ../shared/data/brats2018 and never copied here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=docs/screenshots
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export PYTHONPATH=. XDG_CONFIG_HOME="$TMP/config" XDG_DATA_HOME="$TMP/data"
PY=.venv/bin/python
MODELS=${1:-braingui/models}
if command -v xvfb-run >/dev/null; then RUN=(xvfb-run -a -s "-screen 0 1600x1000x24"); else RUN=(env QT_QPA_PLATFORM=offscreen); fi
$PY -m braingui.app demo-case "$TMP/demo" >/dev/null
for plane in axial coronal sagittal; do
    "${RUN[@]}" $PY -m braingui.app --case "$TMP/demo" --models "$MODELS" --plane "$plane" --screenshot "$OUT/demo_$plane.png"
done
BRATS=../shared/data/brats2018/Brats18_TCIA02_135_1
if [ -d "$BRATS" ]; then
    # the real case with its expert reference labels, before any analysis (an empty models folder)
    mkdir -p "$TMP/none"
    BRAINGUI_BUNDLED_MODELS="$TMP/none" "${RUN[@]}" $PY -m braingui.app --case "$BRATS" --models "$TMP/none" \
        --screenshot "$OUT/app_real_case_reference.png" || true   # exits 1: no models, by design
    "${RUN[@]}" $PY -m braingui.app --case "$BRATS" --models "$MODELS" --screenshot "$OUT/app_real_case_analysis.png"
fi
ls -la "$OUT"
