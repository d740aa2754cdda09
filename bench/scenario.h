/* bench/scenario.h - what a herald-bench scenario is: its flags and help, the
 * callbacks its driver calls during a run, and its part of the report.
 *
 * Owns: struct bench_scenario, the bits that name herald-bench's flags
 * (BF_*), and the list of scenarios, bench_scenarios[] (scenarios.c). Does
 * not own: parsing the flags (main.c), the run (run.c, staterun.c), the
 * frame of the report (report.c), and what any one scenario does: each
 * scenario file (pubs.c, conns.c, presence.c, recover.c, scores.c, seats.c,
 * commerce.c, ssefan.c)
 * defines its own entry.
 *
 * DESIGN: main.c, the drivers and report.c know a scenario only through its
 * entry, the run's B.o.sc, and never name one: the arrows go from the
 * scenarios to the drivers' headers (bench.h, loop.h, run.h, staterun.h,
 * report.h) and never back, so a scenario is added by writing one file and
 * listing its entry in scenarios.c. A scenario runs on one of two drivers,
 * named by its `run` member: run.c (connections that subscribe, publish or
 * idle) or staterun.c (REST writes to one state channel and its viewers).
 * Some callbacks are called by both drivers, some by one; each says which.
 * A NULL callback means the driver's default, where one is described, and
 * "nothing" otherwise.
 *
 * Everything here runs on the loop's thread, except main.c's members (flags
 * and help), which run before the loop exists. */
#ifndef BENCH_SCENARIO_H
#define BENCH_SCENARIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench.h"

/* herald-bench's flags, in the order of main.c's table and of --help. */
enum bench_flag {
    BF_URL = 0, BF_PUBLISH_URL, BF_DURATION, BF_ENCODING, BF_JSON, BF_SVG, BF_SIZE, BF_SUBSCRIBERS, BF_CHANNELS, BF_RATE,
    BF_PUBLISH, BF_PUBLISHERS, BF_WINDOW, BF_P99MAX, BF_CONNECTIONS, BF_PID, BF_CONCURRENCY, BF_CONNECT_TIMEOUT,
    BF_DRAIN_TIMEOUT, BF_SETTLE, BF_QUIET, BF_NAMESPACE, BF_MEMBERS, BF_WATCHERS, BF_CHURN, BF_REJOIN_DELAY,
    BF_FRACTION, BF_OUTAGE, BF_CYCLES, BF_EXPECT_UNRECOVERED, BF_VIEWERS, BF_CLIENTS, BF_SEATS, BF_SECTION, BF_HOT,
    BF_TTL, BF_SKUS, BF_STOCK, BF_ORDERS, BF_SECRET, BF_SSE, BF_READERS, BF_TARGET, BF_HELP,
    BF_N
};
_Static_assert(BF_N <= 64, "a scenario's flags are the bits of a uint64_t");

/* BF(RATE) - the bit of --rate in a set of flags. */
#define BF(name) (1ull << BF_##name)

/* The flags every scenario takes. */
#define BF_COMMON                                                                                              \
    (BF(URL) | BF(DURATION) | BF(ENCODING) | BF(JSON) | BF(PID) | BF(CONCURRENCY) | BF(CONNECT_TIMEOUT) |      \
     BF(QUIET) | BF(HELP))

struct bench_scenario {
    /* ---- flags and help: main.c ---- */
    const char *name;           /* the first argument: herald-bench NAME */
    const char *summary;        /* one paragraph for --help, wrapped there */
    const char *example;        /* one command line for NAME --help */
    const char *notes;          /* printed as it is after the flags by NAME --help; NULL: none */
    uint64_t flags;             /* the flags it takes, BF() bits; any other is an error */
    /* Its defaults, over main.c's common ones, before the flags are read. */
    void (*defaults)(struct opts *o);
    /* The flags as given (@given: BF() bits): complete what depends on
     * them, check what one flag cannot check alone. Return: 0, or -1 with
     * the reason in @why (of @n bytes): main.c prints it, exit status 2. */
    int (*check_opts)(struct opts *o, uint64_t given, char *why, size_t n);
    /* Its driver, bench_run() (run.h) or srun() (staterun.h): the whole
     * run, report included. Return: the exit status. Required. */
    int (*run)(void);

    /* ---- a run: both drivers ---- */
    /* B.peers exists (and, in run.c, the channels' names): allocate the
     * scenario's state. Return: 0, or -1 (out of memory: exit status 1). */
    int (*init)(void);
    void (*free)(void);
    /* A connection's setup subscribe was answered with op subscribed;
     * p->last_off is its offset. */
    void (*on_subscribed)(peer_t *p, const herald_msg_t *subscribed);
    /* A pub reached @p. run.c: replaces the driver's own check and count of
     * the delivery (NULL: a publication of the run's schedule). staterun.c:
     * required; called from PH_RUN to PH_HOLD, after B.deliveries++. */
    void (*on_pub)(peer_t *p, const herald_msg_t *pub);
    /* A step begins: st->t_start, the CPU clocks and st->rate are set (and
     * in run.c st->total, from --rate); set st->rate to 0 for a closed loop
     * that the scenario drives itself, and send what the step starts with.
     * The driver then sends what the open-loop schedule has due. */
    void (*start_step)(step_t *st);
    /* After the step's duration: 1 once every answer and every delivery the
     * step waits for is in. The driver bounds the wait by --drain-timeout.
     * run.c's default: every publication answered and every expected
     * delivery of an acknowledged one arrived. Required in staterun.c. */
    int (*drained)(const step_t *st);
    /* The drain is over (st->t_drained set). run.c: st->done and
     * st->seq_end are set; judge the step and end the run with bench_done()
     * or bench_fail() (NULL: the driver counts the step's deliveries,
     * judges it by --p99-max, and goes on to the next step or ends the
     * run). staterun.c, required: read the broker's state, judge the step,
     * then call srun_checked(st), or bench_fail(). */
    void (*step_end)(step_t *st);
    /* The progress line on a terminal, every 500 ms. run.c: after setup,
     * the whole line, starting with "\r\033[K" (NULL: step, rate, sent,
     * acked, delivered and p99 in PH_RUN and PH_DRAIN). staterun.c,
     * required: the scenario's counters in the middle of the driver's line. */
    void (*progress)(FILE *f, const step_t *st);

    /* ---- a run: run.c ---- */
    /* Before anything is allocated: set B.nsubs (the first peers, each
     * subscribed to channel i % o->channels), B.npubs (WebSocket
     * publishers, next), B.npeers (the rest are PEER_IDLE), B.nsteps, and
     * o->channels if it is not the flag's. Required. */
    void (*plan)(void);
    /* Milliseconds the run may take beyond the driver's time bound. */
    uint64_t (*time_bound)(void);
    /* Setup is a ramp that is itself the measurement: a connection that
     * fails is counted rather than failing the run, none starts after
     * --duration, setup ends when none is in flight, and the run's exit
     * status is 1 if any failed. */
    int ramp;
    /* A connection opened (op connected, @p is PS_OPEN). Return 1 if the
     * scenario takes it over: the driver then neither counts its connect
     * latency (bench_peer_opened() does) nor subscribes it. 0: the driver
     * does both, or calls a publisher or idle connection ready. */
    int (*on_open)(peer_t *p, const herald_msg_t *connected);
    /* A message for no request of the bench's, other than a pub or an
     * error (which the driver counts), reached @p: a join, a leave, a
     * presence_batch. */
    void (*on_push)(peer_t *p, const herald_msg_t *m);
    /* A publication was answered, after the driver counted it: over
     * WebSocket @published is the reply (any op) and @via its publisher;
     * over REST, or when it could not be sent, both are NULL. */
    void (*on_ack)(uint64_t seq, const herald_msg_t *published, peer_t *via);
    /* A connection closed before teardown. Return 1 if the close is the
     * scenario's own business: the driver then counts nothing. */
    int (*on_close)(peer_t *p, const herald_close_info_t *info);
    /* A ready connection was closed during the run and counted in
     * B.disconnects: replaces the driver's accounting by kind of peer
     * (subscribers, publishers, idle connections, each failing the run
     * once all of them are gone). */
    void (*on_lost)(peer_t *p, const herald_close_info_t *info);
    /* Every connection is set up (B.setup_end is set). NULL: the first step. */
    void (*setup_done)(void);
    /* Every millisecond after setup, first. Return 1 if the scenario ran
     * the tick itself (its own phases): the driver then does nothing more;
     * 0: the driver ends the run phase or the drain of the current step
     * when they are over. */
    int (*tick)(uint64_t now);
    /* Send what is due now and call bench_wake_at() for what is due next;
     * after every poll of the loop and when the wake-up time comes. NULL:
     * the driver's open-loop schedule of publications. */
    void (*pump)(void);

    /* ---- a run: staterun.c, all required ---- */
    /* Every REST connection is open: set the channel up over REST, then
     * call srun_prepared(), or bench_fail() with the reason. */
    void (*prepare)(void);
    /* A snapshot push for the channel reached @p: already counted (step's
     * snapshots, skipped) and p->last_off moved to its offset. */
    void (*on_snapshot)(peer_t *p, const herald_msg_t *snapshot);
    /* Open loop: send the one request due at @ts (its scheduled time). */
    void (*send)(step_t *st, uint64_t ts);

    /* ---- the report: report.c ---- */
    /* The rest of the table's first line, after "herald-bench NAME URL
     * encoding E" (it ends without a newline). */
    void (*report_head)(FILE *f);
    /* The table's body, after the connections line. */
    void (*report_body)(FILE *f);
    /* The lines after the body. NULL: report_disconnects(f, 1), then
     * report_errors(f) (report.h). */
    void (*report_tail)(FILE *f);
    /* --json: the scenario's members, after "connections" (each starting
     * with a comma). */
    void (*report_json)(FILE *f);
    /* --json: the members of "errors". NULL: the publishing errors. */
    void (*report_json_errors)(FILE *f);
    /* --svg with several steps: what is charted per step and under which
     * name (NULL: deliveries/s, report_dps()), and the name of the steps'
     * rate (NULL: "target publishes/s"). */
    double (*chart_step)(const step_t *st);
    const char *chart_value;
    const char *chart_rate;
    /* --svg with one step: the histogram charted by percentile, and in
     * @what the kind of latency it holds, for the title. NULL: the step's
     * delivery latency. */
    const hist_t *(*chart_latency)(const char **what);
};

/* Every scenario, in the order of --help, then NULL (scenarios.c). */
extern const struct bench_scenario *const bench_scenarios[];

#endif
