#!/usr/bin/env bash
# The CI performance gate (see README.md, "CI gate").
#
# Runs `cobench run --quick`, judges the deterministic tier against the committed baseline
# with `cobench compare`, prints the Markdown report whatever the outcome (then the time tier
# as information), and exits with the deterministic verdict.
#
# usage: bench-reports/ci-gate.sh COBENCH_BIN [BASELINE]
#   COBENCH_BIN  the cobench binary, built as the baseline was:
#                cargo build --release -p cobench  →  target/release/cobench
#   BASELINE     defaults to baseline.json beside this script
# environment:
#   COBENCH_THRESHOLD  relative threshold, default 3%
#   COBENCH_OUT        directory to keep results.json in (default: a fresh temporary one)
#   COBENCH_FILTER     only run benchmarks whose name contains this (tests use it to stay quick)
# exit status: 0 no regression; 1 a regression, or a benchmark missing or incomparable;
#              2 the tool failed (valgrind missing, unreadable file, ...)
set -euo pipefail

bin=${1:?usage: ci-gate.sh COBENCH_BIN [BASELINE]}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
baseline=${2:-$here/baseline.json}
threshold=${COBENCH_THRESHOLD:-3%}
out=${COBENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
results=$out/results.json

# A failure to measure exits here with cobench's status 2 (set -e).
if [ -n "${COBENCH_FILTER:-}" ]; then
    "$bin" run --quick --filter "$COBENCH_FILTER" --out "$results"
else
    "$bin" run --quick --out "$results"
fi

status=0
"$bin" compare "$baseline" "$results" --tier deterministic --threshold "$threshold" || status=$?

echo
echo "_Time tier below is information only: wall-clock figures are not gated._"
echo
"$bin" compare "$baseline" "$results" --tier time --threshold "$threshold" || true

exit "$status"
