#!/bin/sh
# scripts/deps.sh - install what Herald needs from Debian bookworm's packages:
# the build and run-time dependencies, plus what the test suite uses.
# Safe to run again: apt-get skips what is installed. Uses sudo when not root.
set -eu

BUILD="meson ninja-build pkg-config gcc libc6-dev
       libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libmsgpack-dev liblmdb-dev
       libjansson-dev libssl-dev libinih-dev liburing-dev libhiredis-dev"
TEST="libcmocka-dev python3 python3-pytest python3-websockets python3-msgpack python3-requests python3-yaml
      clang libclang-rt-14-dev curl valgrind openssl chromium systemd redis-server nats-server"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=""
for p in $BUILD $TEST; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node and npm for the browser test (tests/browser): Debian's, unless a node
# with npm is already there (NodeSource's nodejs bundles npm and conflicts
# with Debian's npm package).
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
echo "deps: all installed"

# playwright-core, pinned by tests/browser/package-lock.json; it drives
# Debian's /usr/bin/chromium (no browser download).
if npm ci --prefix "$(dirname "$0")/../tests/browser" --no-audit --no-fund --loglevel=error; then
    echo "deps: tests/browser/node_modules installed"
else
    # Everything else still builds and runs; the browser test reports itself skipped.
    echo "deps: WARNING: npm ci failed; tests/e2e/test_admin_page.py will skip its browser checks" >&2
fi
# ws, pinned by tests/js/package-lock.json: the WebSocket of herald.js's Node tests.
if npm ci --prefix "$(dirname "$0")/../tests/js" --no-audit --no-fund --loglevel=error; then
    echo "deps: tests/js/node_modules installed"
else
    echo "deps: WARNING: npm ci failed; tests/e2e/test_js_client.py will skip its Node broker tests" >&2
fi
