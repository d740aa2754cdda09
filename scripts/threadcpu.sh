#!/bin/sh
# scripts/threadcpu.sh PID [SECONDS] - the CPU each thread of process PID
# used over the next SECONDS (default 5), in percent of one core, summed by
# thread name: herald (the event loop), herald-store, herald-sendN,
# herald-webhook (docs/operations.md, "Threads and cores"). How
# docs/benchmarks.md measures what server.threads moves off the loop.
# Reads /proc/PID/task/*/stat (utime + stime, fields 14 and 15) twice.
set -eu
pid=${1:?usage: threadcpu.sh PID [SECONDS]}
secs=${2:-5}
[ -d "/proc/$pid" ] || { echo "threadcpu.sh: no process $pid" >&2; exit 1; }
snap() {
    for t in /proc/"$pid"/task/*; do
        # The name may hold spaces: take the fields after the last ')'.
        printf '%s %s\n' "$(cat "$t/comm" 2>/dev/null | tr ' ' _)" \
            "$(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{print $12 + $13}')"
    done
}
a=$(snap)
sleep "$secs"
b=$(snap)
hz=$(getconf CLK_TCK)
printf '%s\n--\n%s\n' "$a" "$b" | awk -v hz="$hz" -v secs="$secs" '
    $0 == "--" { after = 1; next }
    NF == 2 && $2 != "" { if (after) b[$1] += $2; else a[$1] += $2 }
    END { for (n in b) printf "%s %.1f\n", n, (b[n] - a[n]) * 100 / hz / secs }' | sort
