#!/bin/sh
# scripts/test.sh [BUILD-DIR [MESON-SETUP-ARGS...]] - build, then run the whole
# suite: C unit tests (meson test, cmocka) and end-to-end tests (pytest
# driving the real herald binary). Ends with the line "N passed, N failed".
# Exit status: 0 when nothing failed. HERALD_E2E, when set, names the e2e
# test files to run instead of all of tests/e2e (space-separated).
set -u
cd "$(dirname "$0")/.."
dir=${1:-build}
[ $# -gt 0 ] && shift

if ! scripts/build.sh "$dir" "$@"; then
    echo "build failed"
    echo "0 passed, 1 failed"
    exit 1
fi

logs="$dir/test-logs"
mkdir -p "$logs"
meson test -C "$dir" --print-errorlogs --num-processes 2
HERALD_BIN="$PWD/$dir/broker/herald" HERALD_BENCH="$PWD/$dir/bench/herald-bench" \
    /usr/bin/python3 -m pytest ${HERALD_E2E:-tests/e2e} -q -p no:cacheprovider --junitxml="$logs/e2e.xml"

# Sum both runners' results into one line.
/usr/bin/python3 - "$dir/meson-logs/testlog.json" "$logs/e2e.xml" <<'PY'
import json, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line).get("result")
        if r == "OK" or r == "EXPECTEDFAIL": passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
except FileNotFoundError:
    failed += 1
try:
    root = ET.parse(sys.argv[2]).getroot()
    for s in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        t, f, e, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        passed += t - f - e - sk; failed += f + e; skipped += sk
except (FileNotFoundError, ET.ParseError):
    failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
PY
