#!/usr/bin/env bash
# make_dmg.sh APP OUT.dmg: a compressed disk image holding APP (dist/braingui.app) and a link to
# /Applications (drag to install). packaging/build.sh calls it on macOS after the PyInstaller build.
#
# Signing and notarisation (needed so Gatekeeper opens a downloaded app without a warning; the build
# signs ad hoc otherwise): build with BRAINGUI_CODESIGN_IDENTITY="Developer ID Application: ..." (the
# spec passes it to PyInstaller, which signs every binary), then after this script:
#   xcrun notarytool submit OUT.dmg --keychain-profile PROFILE --wait && xcrun stapler staple OUT.dmg
set -euo pipefail
APP=${1:?usage: make_dmg.sh APP.app OUT.dmg}
OUT=${2:?usage: make_dmg.sh APP.app OUT.dmg}
[ -d "$APP" ] || { echo "make_dmg.sh: $APP not found" >&2; exit 1; }
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ditto "$APP" "$STAGE/$(basename "$APP")"   # ditto keeps symlinks, extended attributes and signatures
ln -s /Applications "$STAGE/Applications"
rm -f "$OUT"
# ULMO (LZMA) is the smallest format macOS 10.15+ opens; UDZO for older systems
hdiutil create -volname "braingui" -srcfolder "$STAGE" -fs HFS+ -format "${DMG_FORMAT:-ULMO}" -ov "$OUT"
hdiutil verify "$OUT"
