/* bench/loop.h - the event loop of a run and how a run ends, for both drivers.
 *
 * Owns: B.loop and the handles every run has (the 1 ms tick, the check
 * handle, the progress timer, the watchdog, the phase timer, SIGINT, the
 * timerfd that wakes the loop on schedule), the file-descriptor limit, and
 * the end of a run: bench_fail() and bench_done() close the peers, let the
 * driver close what else it holds, then close these handles so that
 * uv_run() returns. Does not own: what the handles do (run.c for the
 * publishing scenarios, staterun.c for the state-channel ones, through
 * struct loop_driver), the peers themselves (run.c), output (report.c).
 *
 * Everything here runs on the loop's thread. */
#ifndef BENCH_LOOP_H
#define BENCH_LOOP_H

#include "bench.h"

/* What a driver plugs into the loop. Every member but stop and closing is required. */
struct loop_driver {
    uv_timer_cb tick;               /* every millisecond */
    uv_check_cb check;              /* after every poll of the loop */
    void (*due)(void);              /* the time given to bench_wake_at() has come */
    uv_timer_cb progress;           /* every 500 ms; only on a terminal, without --quiet */
    /* Teardown began and the peers are closing: close the rest (REST
     * connections). May end the teardown at once, by calling bench_done(). */
    void (*stop)(void);
    int (*closing)(void);           /* 1 while something stop() closed is still open */
};

/* loop_fd_limit() - raise the soft limit on open files to the hard limit and
 * check that @need descriptors fit. @n and @what name the connections for the
 * message ("%u viewers need about ..."), printed on stderr when they do not.
 * Return: 0, or -1 (the run cannot start: exit status 2). */
int loop_fd_limit(unsigned need, unsigned n, const char *what);

/* loop_start() - set the client options from the flags (B.copts), initialize
 * B.loop and start the handles: the tick, the check handle, the schedule
 * timerfd, the progress timer and SIGINT (which fails the run with status
 * 130). Sets B.t0. The watchdog fails the run after @bound_ms, or, in
 * teardown, aborts the peers still open. @d must outlive the run.
 * Return: 0, or -1 (out of memory: nothing to run). */
int loop_start(const struct loop_driver *d, uint64_t bound_ms);

/* loop_run() - run the loop until bench_done() has closed everything, then
 * close B.loop. Sets B.setup_end if setup never finished. */
void loop_run(void);

/* bench_wake_at() - call the driver's due() at @t_ns (uv_hrtime()), to the
 * microsecond: libuv timers have millisecond resolution. The latest call wins. */
void bench_wake_at(uint64_t t_ns);

/* bench_fail() - stop the run: record why in B.fatal (the first reason wins),
 * exit status 1, then bench_done(). */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* bench_done() - end the run: close every peer and what the driver holds;
 * once B.live is 0 and the driver's closing() says 0, close the loop's
 * handles. A peer still open after 3 s is aborted. Called again from close
 * callbacks in PH_TEARDOWN to finish; does nothing after that. */
void bench_done(void);

#endif
