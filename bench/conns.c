/* bench/conns.c - the connection scenarios: connect (the ramp) and idle
 * (connections held open).
 *
 * Owns: their entries (struct bench_scenario, scenario.h), idle's hold and
 * its readings of the broker's and the bench's memory, and their part of
 * the report. Does not own: opening the connections and counting them
 * (run.c, their driver), flags in general (main.c), the report's frame
 * (report.c).
 *
 * connect measures setup itself: its connections neither subscribe nor
 * publish, and the run ends when the last attempt has succeeded or failed.
 * idle opens them all, waits --settle for the broker to settle, reads its
 * VmRSS (--pid) against the reading taken before the first connection, and
 * holds them until --duration has passed too. */
#include "run.h"
#include "loop.h"
#include "proc.h"
#include "report.h"
#include "scenario.h"

#include <unistd.h>

static long rss_before = -1, rss_after = -1;   /* the broker's, bytes; -1 if unknown */
static long bench_rss = -1;
static int rss_read;
static uint64_t hold_end;

/* Connections only: nothing subscribes or publishes, one step (setup). */
static void plan(void)
{
    B.nsubs = 0;
    B.npubs = 0;
    B.npeers = B.o.connections;
    B.nsteps = 1;
}

/* The histogram of a one-step chart: connect latency. */
static const hist_t *chart_latency(const char **what)
{
    *what = "connect";
    return B.connect_lat;
}

/* ---- connect ---- */

static void connect_setup_done(void)
{
    bench_done();
}

/* Setup is the whole run, so "none" would say nothing. */
static void connect_tail(FILE *f)
{
    report_disconnects(f, 0);
    report_errors(f);
}

const struct bench_scenario bench_connect = {
    .name = "connect",
    .summary = "connection ramp: TCP connect + WebSocket upgrade + Herald connect per second",
    .example = "herald-bench connect --connections 5000 --concurrency 256",
    .flags = BF_COMMON | BF(SVG) | BF(CONNECTIONS),
    .run = bench_run,
    .plan = plan,
    .ramp = 1,
    .setup_done = connect_setup_done,
    .report_tail = connect_tail,
    .chart_latency = chart_latency,
};

/* ---- idle ---- */

static int idle_init(void)
{
    if (B.o.pid) rss_before = proc_rss(B.o.pid);
    return 0;
}

static void idle_setup_done(void)
{
    B.phase = PH_HOLD;
    hold_end = B.setup_end + (uint64_t)((B.o.duration > B.o.settle ? B.o.duration : B.o.settle) * 1e9);
}

static int idle_tick(uint64_t now)
{
    if (B.phase != PH_HOLD) return 0;
    if (!rss_read && now - B.setup_end >= (uint64_t)(B.o.settle * 1e9)) {
        rss_read = 1;
        if (B.o.pid) rss_after = proc_rss(B.o.pid);
        bench_rss = proc_rss(getpid());
    }
    if (rss_read && now >= hold_end) bench_done();
    return 1;
}

static void idle_progress(FILE *f, const step_t *st)
{
    (void)st;
    if (B.phase == PH_HOLD)
        fprintf(f, "\r\033[K  holding %u connections  %4.1fs", B.ready, (double)(uv_hrtime() - B.setup_end) / 1e9);
}

static void idle_human(FILE *f)
{
    if (rss_before > 0 && rss_after > 0 && B.ready)
        fprintf(f, "broker RSS: %.1f MiB before, %.1f MiB with %u connections: %.0f bytes (%.2f KiB) per connection\n",
                rss_before / 1048576.0, rss_after / 1048576.0, B.ready,
                (double)(rss_after - rss_before) / B.ready, (double)(rss_after - rss_before) / B.ready / 1024);
    else
        fprintf(f, "broker RSS: not measured (pass --pid PID of the broker)\n");
    if (bench_rss > 0) fprintf(f, "bench RSS: %.1f MiB\n", bench_rss / 1048576.0);
}

static void idle_json(FILE *f)
{
    fprintf(f, ",\"pid\":%d,\"broker_rss_before\":%ld,\"broker_rss_after\":%ld,", B.o.pid, rss_before, rss_after);
    if (rss_before > 0 && rss_after > 0 && B.ready)
        fprintf(f, "\"bytes_per_connection\":%.1f,", (double)(rss_after - rss_before) / B.ready);
    else
        fprintf(f, "\"bytes_per_connection\":null,");
    fprintf(f, "\"bench_rss\":%ld", bench_rss);
}

const struct bench_scenario bench_idle = {
    .name = "idle",
    .summary = "N idle connections held open; with --pid, the broker's memory per connection",
    .example = "herald-bench idle --connections 19500 --pid $(pgrep -n herald) --duration 5",
    .flags = BF_COMMON | BF(SVG) | BF(CONNECTIONS) | BF(SETTLE),
    .run = bench_run,
    .init = idle_init,
    .plan = plan,
    .setup_done = idle_setup_done,
    .tick = idle_tick,
    .progress = idle_progress,
    .report_body = idle_human,
    .report_json = idle_json,
    .chart_latency = chart_latency,
};
