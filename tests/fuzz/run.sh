#!/bin/sh
# tests/fuzz/run.sh SECONDS - build the libFuzzer targets (if needed) and run
# each for SECONDS (default 60), one after the other.
#
# Crash inputs go to tests/fuzz/artifacts/<target>-crash-*; new interesting
# inputs go to <builddir>/corpus/<target>, not into the checked-in seeds.
# Exits non-zero if any target crashed (or failed to build).
#
# Needs clang with libFuzzer (Debian: clang-14, libclang-rt-14-dev) and the
# libraries the fuzzed code uses (jansson, msgpack-c, OpenSSL; libuv's headers). Builds with
# meson (-Dfuzz=true in $FUZZ_BUILD, default build-fuzz) when meson can
# configure the project; otherwise (or with FUZZ_NO_MESON=1) compiles the
# targets directly with clang into <builddir>-direct.
set -u

secs=${1:-60}
case $secs in ''|*[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;; esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
targets="fuzz_json fuzz_msgpack fuzz_chname fuzz_jwt fuzz_client"
ntargets=$(echo $targets | wc -w)
# The one broker source fuzzed (fuzz_jwt); as in meson.build, one place to change.
jwt_c=$root/broker/auth/jwt.c
cc=${CC:-clang}
command -v "$cc" >/dev/null 2>&1 || cc=clang-14
command -v "$cc" >/dev/null 2>&1 || { echo "run.sh: clang not found" >&2; exit 2; }

bindir=""
build_meson() {
    [ "${FUZZ_NO_MESON:-0}" = 1 ] && return 1
    command -v meson >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1 || return 1
    if [ ! -f "$build/build.ninja" ]; then
        CC=$cc meson setup "$build" "$root" -Dfuzz=true -Dtests=true >"$build.setup.log" 2>&1 || {
            echo "run.sh: meson setup failed (see $build.setup.log); building directly" >&2
            rm -rf "$build"
            return 1
        }
    fi
    # Only the fuzz targets: the rest of the tree need not build for this.
    ninja -C "$build" $(for t in $targets; do printf 'tests/fuzz/%s ' "$t"; done) || return 1
    bindir=$build/tests/fuzz
}

build_direct() {
    out=$build-direct
    mkdir -p "$out"
    flags="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    flags="$flags -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I$root/protocol"
    libs=$(pkg-config --cflags --libs jansson msgpack 2>/dev/null || echo "-ljansson -lmsgpackc")
    src="$root/protocol/json.c $root/protocol/mpack.c $root/protocol/msg.c $root/protocol/record.c $root/protocol/chname.c $root/protocol/wbuf.c"
    for t in $targets; do
        s=$src
        l=$libs
        [ "$t" = fuzz_chname ] && s="$root/protocol/chname.c"
        if [ "$t" = fuzz_client ]; then
            s="-I$root/clients $(pkg-config --cflags libuv 2>/dev/null) $root/clients/hc_codec.c"
            l=""
        fi
        if [ "$t" = fuzz_jwt ]; then
            s="-I$root/broker $jwt_c"
            l=$(pkg-config --cflags --libs jansson libcrypto 2>/dev/null || echo "-ljansson -lcrypto")
        fi
        # shellcheck disable=SC2086
        "$cc" $flags -o "$out/$t" "$here/$t.c" $s $l -lm || return 1
    done
    bindir=$out
}

if ! build_meson; then
    build_direct || { echo "run.sh: build failed" >&2; echo "0 passed, $ntargets failed"; exit 2; }
fi

mkdir -p "$here/artifacts"
failed=""
for t in $targets; do
    work=$build/corpus/$t
    mkdir -p "$work"
    dict=""
    [ -f "$here/$t.dict" ] && dict="-dict=$here/$t.dict"
    echo "=== $t for ${secs}s"
    # shellcheck disable=SC2086
    "$bindir/$t" -max_total_time="$secs" -max_len=4096 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$t-" $dict "$work" "$here/corpus/$t"
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "=== $t: FAILED (exit $rc); inputs in $here/artifacts/" >&2
        failed="$failed $t"
    else
        echo "=== $t: ok"
    fi
done

# One result per target, in the form .ci/run adds up.
nfailed=$(echo $failed | wc -w)
if [ -n "$failed" ]; then
    echo "fuzz: crashes in:$failed" >&2
    echo "$((ntargets - nfailed)) passed, $nfailed failed"
    exit 1
fi
echo "fuzz: all targets ran ${secs}s without a crash"
echo "$ntargets passed, 0 failed"
