#!/usr/bin/env bash
# Renders a costress HTML report with headless Chromium and saves a screenshot, so that a
# person (or CI) can look at the page as a browser draws it.
#
#   stress/scripts/render-html.sh REPORT.html [SHOT.png] [WIDTHxHEIGHT]
#
# Without a report path it first runs a short costress (`mixed` for 2 s) to make one. The
# screenshot defaults to REPORT.png beside the report, the window to 1280x2000. Chromium
# comes from the distribution (`apt-get install -y chromium`); the page needs no network.
set -euo pipefail

report=${1:-}
if [ -z "$report" ]; then
    report=$(mktemp -d)/costress.html
    cargo run --quiet --release -p costress -- mixed --duration 2s --quiet --html "$report"
fi
shot=${2:-${report%.html}.png}
size=${3:-1280x2000}

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "render-html: no Chromium found; install it with: apt-get install -y chromium" >&2
    exit 1
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: Chromium refuses to run its sandbox as root, which CI machines are.
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --screenshot="$shot" --window-size="${size/x/,}" "file://$(realpath "$report")" \
    >/dev/null 2>&1
test -s "$shot"
echo "$shot"
