#!/bin/sh
# scripts/soak.sh DURATION [KILL_CYCLES] - the long soak: tests/e2e/test_soak.py
# for DURATION seconds (the suite runs it for 35), then KILL_CYCLES (default
# 50) kill -9 cycles under mixed traffic (tests/e2e/test_faults.py; the suite
# runs 3). Prints the soak's figures (RSS slope, reconnects, p99) as JSON and
# leaves them in soak-report.json. Not run by CI.
#
# HERALD_BIN and HERALD_BENCH default to the build/ binaries.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/soak.sh DURATION [KILL_CYCLES]" >&2; exit 2; }
duration=$1
cycles=${2:-50}
case $duration$cycles in *[!0-9]*) echo "DURATION and KILL_CYCLES are whole numbers" >&2; exit 2;; esac
: "${HERALD_BIN:=$PWD/build/broker/herald}"
export HERALD_BIN
report=${HERALD_SOAK_REPORT:-$PWD/soak-report.json}
# Bounded: the soak itself, plus three minutes of setup and draining.
HERALD_SOAK_SECONDS=$duration HERALD_SOAK_REPORT=$report \
    timeout $((duration + 180)) /usr/bin/python3 -m pytest tests/e2e/test_soak.py -q -s -p no:cacheprovider
HERALD_FAULT_CYCLES=$cycles \
    timeout $((cycles * 20 + 120)) /usr/bin/python3 -m pytest tests/e2e/test_faults.py -q -p no:cacheprovider \
    -k kill_9
echo "soak figures: $report"
cat "$report"
