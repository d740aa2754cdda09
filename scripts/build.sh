#!/bin/sh
# scripts/build.sh [DIR [MESON-SETUP-ARGS...]] - configure DIR (default: build)
# the first time, then build it. Extra arguments go to `meson setup` and are
# applied to an existing DIR too.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build}
[ $# -gt 0 ] && shift
if [ -f "$dir/build.ninja" ]; then
    [ $# -gt 0 ] && meson configure "$dir" "$@" >/dev/null
else
    meson setup "$dir" "$@" >/dev/null
fi
ninja -C "$dir"
