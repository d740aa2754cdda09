/* bench/loop.c - see loop.h.
 *
 * Both drivers (run.c, staterun.c) end a run the same way, and for the same
 * reason in the same order: the peers are closed politely first, what the
 * driver holds next, and the loop's own handles only once every connection
 * has reported its close, because a handle closed earlier would let
 * uv_run() return with connections still open. A peer that does not close
 * within 3 s is aborted, so every run ends. */
#include "loop.h"
#include "proc.h"
#include "hc_nats.h"

#include <signal.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

static const struct loop_driver *drv;
static uv_signal_t sig_int;
static int sched_fd = -1;              /* timerfd: wakes the loop when the next request is due */
static uv_poll_t sched_poll;

int loop_fd_limit(unsigned need, unsigned n, const char *what)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl)) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr, "herald-bench: %u %s need about %u file descriptors, but the limit is %llu "
                "(raise the hard limit: ulimit -Hn)\n", n, what, need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

void bench_fail(const char *fmt, ...)
{
    va_list ap;

    if (!B.fatal[0]) {
        va_start(ap, fmt);
        vsnprintf(B.fatal, sizeof B.fatal, fmt, ap);
        va_end(ap);
    }
    B.exit_code = 1;
    bench_done();
}

void bench_wake_at(uint64_t t_ns)
{
    struct itimerspec its = { { 0, 0 }, { (time_t)(t_ns / 1000000000ULL), (long)(t_ns % 1000000000ULL) } };

    if (sched_fd >= 0) timerfd_settime(sched_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void on_sched(uv_poll_t *h, int status, int events)
{
    uint64_t n;

    (void)h; (void)status; (void)events;
    if (read(sched_fd, &n, sizeof n) < 0) { /* EAGAIN: a spurious wakeup */ }
    drv->due();
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)h; (void)signum;
    bench_fail("interrupted");
    B.exit_code = 130;
}

static void on_teardown_timeout(uv_timer_t *t)
{
    (void)t;
    for (uint32_t i = 0; i < B.npeers; i++)
        if (B.peers[i].c) herald_client_abort(B.peers[i].c);
}

static void on_watchdog(uv_timer_t *t)
{
    if (B.phase < PH_TEARDOWN) {
        bench_fail("the run exceeded its time bound (a bug, or the broker stopped answering)");
        return;
    }
    on_teardown_timeout(t);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void bench_done(void)
{
    if (B.phase == PH_DONE) return;
    if (B.phase != PH_TEARDOWN) {
        if (B.phase == PH_RUN || B.phase == PH_DRAIN) {
            step_t *st = &B.steps[B.cur];
            if (!st->t_end) { st->t_end = uv_hrtime(); proc_cpu_stop(st); }
        }
        B.phase = PH_TEARDOWN;
        if (B.tty && !B.o.quiet) fprintf(stderr, "\r\033[K");
        uv_timer_stop(&B.tick);
        uv_timer_stop(&B.progress);
        uv_check_stop(&B.check);
        if (sched_fd >= 0) uv_poll_stop(&sched_poll);
        for (uint32_t i = 0; i < B.npeers; i++)
            if (B.peers[i].c) herald_close(B.peers[i].c, 1000, "bench done");
        if (drv->stop) drv->stop();
        if (B.phase == PH_DONE) return;     /* stop() finished the teardown */
        uv_timer_start(&B.phase_timer, on_teardown_timeout, 3000, 0);
    }
    if (B.live || (drv->closing && drv->closing())) return;
    B.phase = PH_DONE;
    close_handle((uv_handle_t *)&B.tick);
    close_handle((uv_handle_t *)&B.progress);
    close_handle((uv_handle_t *)&B.check);
    close_handle((uv_handle_t *)&B.phase_timer);
    close_handle((uv_handle_t *)&B.watchdog);
    close_handle((uv_handle_t *)&sig_int);
    if (sched_fd >= 0) close_handle((uv_handle_t *)&sched_poll);
    herald_ctx_free(B.hctx);
    B.hctx = NULL;
}

int loop_start(const struct loop_driver *d, uint64_t bound_ms)
{
    drv = d;
    B.copts.encoding = B.o.enc;
    B.copts.connect_timeout_ms = (unsigned)(B.o.connect_timeout * 1000);
    B.tty = isatty(2);

    uv_loop_init(&B.loop);
    if (herald_ctx_new(&B.loop, &B.hctx)) return -1;
    if (B.o.target == TARGET_NATS) hc_ctx_speak_nats(B.hctx);
    uv_timer_init(&B.loop, &B.tick);
    uv_timer_init(&B.loop, &B.progress);
    uv_timer_init(&B.loop, &B.watchdog);
    uv_timer_init(&B.loop, &B.phase_timer);
    uv_check_init(&B.loop, &B.check);
    uv_signal_init(&B.loop, &sig_int);
    uv_signal_start(&sig_int, on_sigint, SIGINT);
    uv_check_start(&B.check, d->check);
    sched_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (sched_fd >= 0) {
        uv_poll_init(&B.loop, &sched_poll, sched_fd);
        uv_poll_start(&sched_poll, UV_READABLE, on_sched);
    }
    uv_timer_start(&B.tick, d->tick, 1, 1);
    if (B.tty && !B.o.quiet) uv_timer_start(&B.progress, d->progress, 500, 500);
    B.t0 = uv_hrtime();
    uv_timer_start(&B.watchdog, on_watchdog, bound_ms, 0);
    return 0;
}

void loop_run(void)
{
    uv_run(&B.loop, UV_RUN_DEFAULT);
    if (B.hctx) {           /* the loop stopped early: should not happen */
        herald_ctx_free(B.hctx);
        uv_run(&B.loop, UV_RUN_NOWAIT);
    }
    uv_loop_close(&B.loop);
    if (sched_fd >= 0) close(sched_fd);
    sched_fd = -1;
    if (!B.setup_end) B.setup_end = uv_hrtime();
}
