#!/usr/bin/env bash
# Start-up time of the frozen app (Linux): `--version` wall time, and the time from launch to a
# visible main window under Xvfb (polled with xwininfo every 20 ms).
#
#   bash packaging/measure_startup.sh [APP_EXECUTABLE] [RUNS]     # default dist/braingui/braingui, 5 runs
#
# Needs xvfb-run and xwininfo (Debian: xvfb, x11-utils) for the window part. Each run starts the app
# with an empty environment (no Python on PATH) and a throw-away config folder.
set -euo pipefail
cd "$(dirname "$0")/.."
INNER=""
if [ "${1:-}" = --inner ]; then INNER=1; shift; fi
APP=${1:-dist/braingui/braingui}
RUNS=${2:-5}
TITLE_PREFIX="braingui "
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

if [ -z "$INNER" ]; then
    printf -- '--version:'
    for _ in $(seq "$RUNS"); do
        t0=$(now)
        env -i HOME="$HOME" "$APP" --version >/dev/null
        printf ' %s' "$(secs "$t0" "$(now)")"
    done
    echo " s"
    if ! command -v xvfb-run >/dev/null 2>&1 || ! command -v xwininfo >/dev/null 2>&1; then
        echo "window: skipped (needs xvfb-run and xwininfo)"
        exit 0
    fi
    exec xvfb-run -a -s "-screen 0 1920x1080x24" bash "$0" --inner "$APP" "$RUNS"
fi
CFG=$(mktemp -d)
trap 'rm -rf "$CFG"' EXIT
printf 'window (Xvfb %s):' "$DISPLAY"
for _ in $(seq "$RUNS"); do
    t0=$(now)
    env -i HOME="$HOME" DISPLAY="$DISPLAY" XAUTHORITY="${XAUTHORITY:-}" XDG_CONFIG_HOME="$CFG" "$APP" >/dev/null 2>&1 &
    pid=$!
    shown=""
    for _ in $(seq 3000); do  # at most 60 s
        if xwininfo -root -tree 2>/dev/null | grep -q "\"$TITLE_PREFIX"; then
            id=$(xwininfo -root -tree | grep "\"$TITLE_PREFIX" | head -n 1 | awk '{print $1}')
            if xwininfo -id "$id" 2>/dev/null | grep -q IsViewable; then shown=$(now); break; fi
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -n "$shown" ]; then printf ' %s' "$(secs "$t0" "$shown")"; else printf ' (no window)'; fi
done
echo " s"
