/* bench/staterun.c - see staterun.h.
 *
 * Phases: PH_SETUP opens the REST pool, lets the scenario define its channel
 * over REST, then connects the viewers (at most --concurrency attempts at
 * once), each subscribing to the channel. PH_RUN is one step: open loop at
 * the step's rate (request i due at t_start + i/rate, stamped with that
 * scheduled time, as in run.c) or, at rate 0, the scenario's own closed loop.
 * PH_DRAIN waits, up to --drain-timeout, for the scenario to say every answer
 * and delivery is in; PH_HOLD is the scenario's checks (REST reads of the
 * broker's state), bounded too; then the next step or PH_TEARDOWN.
 *
 * A viewer that the broker closes mid-run is counted (disconnects, by close
 * code) and left closed: for a state channel that is itself a finding, since
 * the broker is meant to conflate a slow viewer rather than drop it. */
#include "staterun.h"
#include "loop.h"
#include "proc.h"
#include "report.h"
#include "run.h"
#include "scenario.h"
#include "val.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct bench_scenario *S;   /* the scenario run, B.o.sc */
static http_pool_t *pool;
static unsigned pool_ready;
static int pool_live;                  /* the pool exists (not yet freed) */
static int prepared, ran;
static uint64_t setup_deadline, check_deadline;
static uint32_t lost;
static void (*after_fn)(void);

static void start_step(int i);
static void fill_connections(void);

/* ---- failures ---- */

static void setup_failure(int err, const char *reason)
{
    bench_setup_error(err, reason);
    bench_fail("cannot set up viewers on %s: %s", B.url.name, B.first_err_text);
}

/* ---- REST ---- */

static void pool_on_connected(void *ud)
{
    (void)ud;
    if (++pool_ready == B.o.clients && B.phase == PH_SETUP) S->prepare();
}

static void pool_on_failed(void *ud, int err)
{
    (void)ud;
    if (B.phase < PH_TEARDOWN) bench_fail("REST connections to %s failed: %s", B.url.name, herald_strerror(err));
}

static void pool_on_closed(void *ud)
{
    (void)ud;
    pool_live = 0;
    pool = NULL;
    if (B.phase == PH_TEARDOWN) bench_done();
}

static const http_events_t pool_events = { pool_on_connected, pool_on_failed, pool_on_closed };

int srun_request(const char *method, const char *target, const char *body, size_t blen, http_done_cb cb, void *arg)
{
    if (!pool || B.phase >= PH_TEARDOWN) return HERALD_E_STATE;
    return http_request(pool, method, target, body, blen, cb, arg);
}

uint64_t srun_in_flight(void) { return http_in_flight(pool); }

int srun_rest_code(const char *body, size_t len)
{
    val_t v, err, code;
    int64_t n;

    if (!body) return 0;
    val_init(&v, HERALD_JSON, body, len);
    if (val_map_get(&v, "error", &err) || val_map_get(&err, "code", &code) || val_int(&code, &n)) return 0;
    return (int)n;
}

void srun_rest_error(const char *what, int status, const char *body, size_t len)
{
    if ((status == 0 && B.phase >= PH_TEARDOWN) || status == HTTP_CANCELLED) return;
    if (B.sf.rest_errors++) return;
    if (status == 0)
        snprintf(B.sf.first_error, sizeof B.sf.first_error, "%s: no answer (connection lost)", what);
    else
        snprintf(B.sf.first_error, sizeof B.sf.first_error, "%s: HTTP %d %.*s", what, status,
                 (int)(len > 150 ? 150 : len), body ? body : "");
}

/* ---- viewers ---- */

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud);
static void on_reply(herald_client_t *c, const herald_msg_t *m, void *ud);
static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud);
static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud);

static const herald_callbacks_t callbacks = { on_open, on_reply, on_pub, on_close };

int srun_live(uint32_t v) { return B.peers[v].state == PS_READY; }

uint32_t srun_viewers_live(void) { return B.ready - lost; }

static uint32_t scan_pos;

void srun_scan_reset(void) { scan_pos = 0; }

int srun_scan_behind(uint64_t off)
{
    for (; scan_pos < B.npeers; scan_pos++)
        if (B.peers[scan_pos].state == PS_READY && B.peers[scan_pos].last_off < off) return 1;
    return 0;
}

static void check_setup_done(void)
{
    if (B.phase != PH_SETUP || !prepared || B.ready < B.npeers) return;
    ran = 1;
    B.setup_end = uv_hrtime();
    start_step(0);
}

void srun_prepared(void)
{
    if (B.phase != PH_SETUP) return;
    prepared = 1;
    B.setup_start = uv_hrtime();       /* connection figures count the viewers only */
    fill_connections();
    check_setup_done();
}

static void on_subscribed(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    peer_t *p = arg;
    char why[200];

    (void)c;
    if (m->op != HERALD_OP_SUBSCRIBED) {
        snprintf(why, sizeof why, "subscribe to %s refused with error %d: %.*s", B.sf.channel, m->code,
                 (int)m->reason_len, m->reason ? m->reason : "");
        setup_failure(HERALD_E_PROTOCOL, why);
        return;
    }
    p->last_off = m->offset;
    S->on_subscribed(p, m);
    p->state = PS_READY;
    B.inflight--;
    B.ready++;
    fill_connections();
    check_setup_done();
}

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    peer_t *p = ud;
    int r;

    (void)m;
    p->state = PS_OPEN;
    hist_record(B.connect_lat, uv_hrtime() - p->t_connect);
    if ((r = herald_subscribe(c, B.sf.channel, strlen(B.sf.channel), on_subscribed, p, NULL)))
        setup_failure(r, "subscribe");
}

static int our_channel(const herald_msg_t *m)
{
    size_t n = strlen(B.sf.channel);
    return m->channel_len == n && !memcmp(m->channel, B.sf.channel, n);
}

/* A snapshot replaces the viewer's view up to its offset: the offsets it
 * jumps over are counted as skipped, not as gaps. */
static void on_snapshot(peer_t *p, const herald_msg_t *m)
{
    step_t *cur = &B.steps[B.cur];

    cur->snapshots++;
    if (m->offset > p->last_off) cur->skipped += m->offset - p->last_off;
    p->last_off = m->offset;
    S->on_snapshot(p, m);
}

static void on_reply(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    (void)c;
    if (m->op == HERALD_OP_ERROR) {
        B.protocol_errors++;
        return;
    }
    /* A lagging viewer's fresh snapshot (state channels conflate instead of
     * closing a slow reader). Its "state" is in m->state; the scenarios only
     * need its offset. */
    if (m->op == HERALD_OP_SNAPSHOT && m->channel && our_channel(m) && B.phase >= PH_RUN && B.phase < PH_TEARDOWN)
        on_snapshot(ud, m);
}

static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    (void)c;
    B.deliveries++;
    if (B.phase >= PH_RUN && B.phase < PH_TEARDOWN) S->on_pub(ud, m);
}

static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    peer_t *p = ud;
    int prev = p->state;

    (void)c;
    B.live--;
    p->state = PS_CLOSED;
    p->c = NULL;
    if (B.phase >= PH_TEARDOWN) {
        if (B.phase == PH_TEARDOWN) bench_done();
        return;
    }
    if (prev != PS_READY) {
        B.inflight--;
        setup_failure(info->err, info->reason);
        return;
    }
    B.disconnects++;
    bench_count_close(info->code);
    B.steps[B.cur].viewers_lost++;
    if (++lost == B.npeers)
        bench_fail("every viewer was closed during the run (last: code %d, %s)", info->code,
                   info->err ? herald_strerror(info->err) : info->reason);
}

static void start_peer(peer_t *p)
{
    int r;

    p->kind = PEER_SUB;
    B.inflight++;
    if ((r = bench_peer_open(p, &callbacks))) {
        B.inflight--;
        setup_failure(r, NULL);
    }
}

static void fill_connections(void)
{
    while (B.phase == PH_SETUP && B.inflight < B.o.concurrency && B.next_peer < B.npeers)
        start_peer(&B.peers[B.next_peer++]);
}

/* ---- steps ---- */

step_t *srun_step_of(uint64_t ts)
{
    for (int i = B.cur; i > 0; i--)
        if (ts >= B.steps[i].t_start) return &B.steps[i];
    return &B.steps[0];
}

/* Sends what is due by now (open loop), or ends the step's run phase. */
static void pump(void)
{
    step_t *st = &B.steps[B.cur];
    uint64_t now, dur = (uint64_t)(B.o.duration * 1e9);

    if (B.phase != PH_RUN) return;
    if (st->rate > 0) {
        bench_pump(st, S->send, 20000);
        return;
    }
    /* Closed loop: the scenario sends; only the step's time is kept here. */
    now = uv_hrtime();
    if (now - st->t_start >= dur) bench_end_run(st, now);
    else bench_wake_at(st->t_start + dur);
}

static void start_step(int i)
{
    step_t *st = &B.steps[i];

    B.cur = i;
    if (!(st->lat = hist_new()) || !(st->ack = hist_new()) || !(st->rel = hist_new())) {
        bench_fail("out of memory");
        return;
    }
    hist_reset(B.interval);
    B.phase = PH_RUN;
    st->rate = B.o.nrates ? B.o.rates[i] : 0;
    st->total = (uint64_t)llround(st->rate * B.o.duration);
    st->t_start = uv_hrtime();
    proc_cpu_start();
    S->start_step(st);
    pump();
}

static void on_after(uv_timer_t *t)
{
    void (*fn)(void) = after_fn;

    (void)t;
    after_fn = NULL;
    if (fn && B.phase == PH_HOLD) fn();
}

void srun_after(unsigned ms, void (*fn)(void))
{
    after_fn = fn;
    uv_timer_start(&B.phase_timer, on_after, ms, 0);
}

void srun_checked(step_t *st)
{
    if (B.phase != PH_HOLD) return;
    st->done = 1;
    if (B.cur + 1 < B.nsteps && B.exit_code == 0) start_step(B.cur + 1);
    else bench_done();
}

static void on_check(uv_check_t *h)
{
    (void)h;
    pump();
}

static void on_tick(uv_timer_t *t)
{
    step_t *st = &B.steps[B.cur];
    uint64_t now = uv_hrtime();

    (void)t;
    if (B.phase == PH_SETUP) {
        if (now > setup_deadline)
            bench_fail(prepared ? "viewer setup did not finish in time: %u of %u viewers subscribed"
                                : "the REST setup did not finish in time (%u of %u viewers)", B.ready, B.npeers);
        return;
    }
    if (B.phase == PH_RUN) pump();
    if (B.phase == PH_DRAIN &&
        (S->drained(st) || now - st->t_end >= (uint64_t)(B.o.drain_timeout * 1e9))) {
        st->t_drained = now;
        /* Requests that never got a connection by now are given up: the
         * checks must not wait behind them, and the next step must not
         * start with the last one's backlog. */
        B.sf.cancelled += http_cancel_queued(pool);
        B.phase = PH_HOLD;
        check_deadline = now + (uint64_t)((B.o.drain_timeout + 10) * 1e9);
        S->step_end(st);
        return;
    }
    if (B.phase == PH_HOLD && now > check_deadline)
        bench_fail("the checks after step %d got no answer in time", B.cur + 1);
}

static void on_progress(uv_timer_t *t)
{
    step_t *st = &B.steps[B.cur];

    (void)t;
    if (B.phase == PH_SETUP) {
        if (prepared) fprintf(stderr, "\r\033[K  connecting viewers %u/%u", B.ready, B.npeers);
        else fprintf(stderr, "\r\033[K  setting up %s over REST", B.sf.channel);
        return;
    }
    if (B.phase < PH_RUN || B.phase > PH_HOLD) return;
    fprintf(stderr, "\r\033[K  step %d/%d  %5.1fs  ", B.cur + 1, B.nsteps, (double)(uv_hrtime() - st->t_start) / 1e9);
    S->progress(stderr, st);
    fprintf(stderr, "  p99 %.2f ms%s", (double)hist_percentile(B.interval, 99) / 1e6,
            B.phase == PH_DRAIN ? "  (draining)" : B.phase == PH_HOLD ? "  (checking)" : "");
    hist_reset(B.interval);
}

/* ---- start and stop ---- */

static void stop_pool(void)
{
    after_fn = NULL;
    if (!pool) return;
    B.rest_reconnects = http_reconnects(pool);
    http_pool_close(pool);       /* may free it and call pool_on_closed() at once */
}

static int pool_closing(void) { return pool_live; }

static const struct loop_driver driver = { on_tick, on_check, pump, on_progress, stop_pool, pool_closing };

int srun(void)
{
    struct opts *o = &B.o;
    uint64_t bound_ms;
    int r;

    S = o->sc;
    if ((r = herald_url_parse(o->url, &B.url))) {
        fprintf(stderr, "herald-bench: bad --url %s: %s\n", o->url, herald_strerror(r));
        return 2;
    }
    B.npeers = B.nsubs = o->viewers;
    if (loop_fd_limit(o->viewers + o->clients + 32, o->viewers, "viewers")) return 2;
    snprintf(B.run_id, sizeof B.run_id, "%08x", (unsigned)(getpid() ^ (uint32_t)uv_hrtime()));
    B.nsteps = o->nrates ? o->nrates : 1;
    B.peers = calloc(B.npeers ? B.npeers : 1, sizeof *B.peers);
    B.interval = hist_new();
    B.connect_lat = hist_new();
    if (!B.peers || !B.interval || !B.connect_lat || S->init()) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return 1;
    }

    /* Every run ends by itself: the REST setup and the viewers get their
     * connect timeout plus time at a pessimistic 500 connections/s, each
     * step its duration, its drain and its checks. */
    bound_ms = (uint64_t)((2 * o->connect_timeout + B.npeers / 500.0 + 10 +
                           B.nsteps * (o->duration + 2 * o->drain_timeout + 12) + 10) * 1000);
    if (loop_start(&driver, bound_ms)) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return 1;
    }
    setup_deadline = B.t0 + (uint64_t)((2 * o->connect_timeout + B.npeers / 500.0 + 10) * 1e9);

    B.phase = PH_SETUP;
    B.setup_start = uv_hrtime();
    pool_live = 1;
    if (http_pool_new(&B.loop, &B.url, o->clients, &pool_events, NULL, &pool)) {
        pool_live = 0;
        bench_fail("out of memory");
    }
    loop_run();

    if (B.fatal[0]) fprintf(stderr, "herald-bench: %s\n", B.fatal);
    if (!B.fatal[0] || ran) report();

    for (int i = 0; i < B.nsteps; i++) {
        hist_free(B.steps[i].lat);
        hist_free(B.steps[i].ack);
        hist_free(B.steps[i].rel);
    }
    hist_free(B.interval);
    hist_free(B.connect_lat);
    free(B.peers);
    S->free();
    return B.exit_code;
}

/* ---- flags and the report ---- */

int srun_check_rates(const struct opts *o, char *why, size_t n)
{
    for (int i = 0; i < o->nrates; i++)
        if (o->rates[i] * o->duration > 1e8) {
            snprintf(why, n, "--rate x --duration is over 100 million requests");
            return -1;
        }
    return 0;
}

double srun_answers_per_sec(const step_t *st, uint64_t answered)
{
    uint64_t end = st->t_last_ack > st->t_end ? st->t_last_ack : st->t_end;
    return end > st->t_start ? (double)answered / ((double)(end - st->t_start) / 1e9) : 0;
}

void srun_json_step(FILE *f, const step_t *st)
{
    fprintf(f, "\"snapshots\":%llu,\"skipped\":%llu,\"unreadable\":%llu,\"viewers\":{\"converged\":%u,"
               "\"unverifiable\":%u,\"diverged\":%u,\"lost\":%u},\"broker_offset\":%llu,\"drain_seconds\":%.3f,"
               "\"bench_cpu_pct\":%.1f,", (unsigned long long)st->snapshots, (unsigned long long)st->skipped,
            (unsigned long long)st->unreadable, st->converged, st->unverifiable, st->diverged, st->viewers_lost,
            (unsigned long long)st->broker_offset,
            st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
    if (st->broker_cpu >= 0) fprintf(f, "\"broker_cpu_pct\":%.1f,", st->broker_cpu);
}

void srun_viewers(FILE *f, const step_t *st)
{
    fprintf(f, "%u converged, %u unverifiable, %u diverged, %u lost", st->converged, st->unverifiable,
            st->diverged, st->viewers_lost);
}

void srun_report_tail(FILE *f)
{
    report_disconnects(f, 1);
    if (B.sf.stale_reads)
        fprintf(f, "GET .../state was behind the acknowledged writes %llu time(s) (by up to %llu offsets): read "
                   "again\n", (unsigned long long)B.sf.stale_reads, (unsigned long long)B.sf.stale_max);
    if (B.sf.cancelled)
        fprintf(f, "%llu requests were still queued for a REST connection when a drain ended: not sent, "
                   "counted as errors\n", (unsigned long long)B.sf.cancelled);
    if (B.sf.rest_errors || B.protocol_errors) {
        fprintf(f, "errors: %llu REST answers that are not documented outcomes, %llu protocol\n",
                (unsigned long long)B.sf.rest_errors, (unsigned long long)B.protocol_errors);
        if (B.sf.first_error[0]) fprintf(f, "first REST error: %s\n", B.sf.first_error);
    } else {
        report_errors(f);
    }
}

void srun_json_errors(FILE *f, const char *writes)
{
    fprintf(f, "\"%s\":%llu,\"cancelled\":%llu,\"rest\":%llu,\"rest_first\":\"%s\",\"protocol\":%llu,"
               "\"rest_reconnects\":%llu", writes, (unsigned long long)REPORT_TOTAL(pub_errors),
            (unsigned long long)B.sf.cancelled, (unsigned long long)B.sf.rest_errors,
            report_json_safe(B.sf.first_error), (unsigned long long)B.protocol_errors,
            (unsigned long long)B.rest_reconnects);
}
