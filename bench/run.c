/* bench/run.c - see run.h: one benchmark run of a scenario built on
 * connections: connections, the publishing schedule, measurement.
 *
 * Owns: the peers (subscriber, publisher and idle connections), the phases of
 * a run (setup, run, drain), the open-loop schedule (bench_pump(), which
 * staterun.c uses too), per publication bookkeeping and the latency
 * histograms. Does not own: flags (main.c), what the scenario does on top
 * (its struct bench_scenario, scenario.h: the driver calls its callbacks at
 * each event and never names one), the loop's handles and the end of a run
 * (loop.c), REST connections (rest.c), output (report.c).
 *
 * DESIGN: open loop without coordinated omission. Publication i of a step is
 * due at t_start + i/rate. Whenever the loop runs (a 1 ms timer, and a check
 * handle after every poll) every publication now due is sent, stamped with
 * its *scheduled* time, so a stall in the bench or the broker shows up as
 * latency instead of silently lowering the rate. The payload carries that
 * timestamp and a sequence number; subscribers compute latency against the
 * read time of the bytes that held the pub (same process, same clock).
 *
 * Exact delivery counts: each publication is counted once per subscriber
 * that receives it (rec[seq]). When its ack arrives, the number of
 * subscribers of its channel that are alive and subscribed at that moment is
 * added to `expected`; at the end of a step `received` sums rec[] over the
 * acknowledged publications only, so the two are comparable exactly. A step
 * ends after its duration plus a drain that waits until every ack is in and
 * every expected delivery arrived, bounded by --drain-timeout.
 *
 * With --readers the subscribers live in reader processes (readers.c): this
 * driver never opens them, counts them ready when their reader says so, takes
 * recv_all from the readers' running counts for the drain, and judges a step
 * only once every reader has sent its received count and histogram. */
#include "run.h"
#include "loop.h"
#include "nodes.h"
#include "proc.h"
#include "readers.h"
#include "report.h"
#include "rest.h"
#include "scenario.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bench B;
static const struct bench_scenario *S;  /* the scenario run, B.o.sc */
static unsigned rest_ready, rest_live;
static uint64_t *sent_ts;              /* per publication: its timestamp (scheduled or actual) */
static uint64_t setup_deadline;
static int connect_stopped;            /* a ramp: --duration passed, start no more */
static uint32_t lost_subs, lost_pubs, lost_idle;
static int ran;                        /* setup finished: there is something to report */

static void finish_step(step_t *st);
static void start_step(int i);

/* ---- helpers ---- */

void bench_count_close(int code)
{
    for (int i = 0; i < B.ncloses; i++)
        if (B.closes[i].code == code) { B.closes[i].n++; return; }
    if (B.ncloses < MAX_CLOSE_CODES) B.closes[B.ncloses++] = (struct close_count){ code, 1 };
}

const char *bench_chan(uint32_t i, size_t *len)
{
    const char *s = B.chan_names + (size_t)i * B.chan_stride;
    *len = strlen(s);
    return s;
}

uint32_t bench_chan_of(uint64_t seq)
{
    return (uint32_t)(seq % B.o.channels);
}

static const char hexd[] = "0123456789abcdef";

size_t bench_payload(uint64_t seq, uint64_t ts_ns, const unsigned char **out)
{
    uint64_t rel = ts_ns - B.t0;

    for (int i = 11; i >= 0; i--, rel >>= 4) B.raw[i] = hexd[rel & 15];
    for (int i = 19; i >= 12; i--, seq >>= 4) B.raw[i] = hexd[seq & 15];
    *out = B.payload;
    return herald_encode_str(B.o.enc, B.raw, B.o.size, B.payload, B.o.size + 16);
}

static int unhex(const char *s, int n, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i], d;
        if (c - '0' < 10) d = c - '0';
        else if (c - 'a' < 6) d = c - 'a' + 10;
        else return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

int bench_payload_read(const void *data, size_t len, uint64_t *ts, uint64_t *seq)
{
    const char *s;
    size_t sl;

    if (herald_decode_str(B.o.enc, data, len, &s, &sl) || sl < 20 || unhex(s, 12, ts) || unhex(s + 12, 8, seq))
        return -1;
    return 0;
}

uint64_t bench_pub_pos(const herald_msg_t *m, uint64_t seq)
{
    return B.o.target == TARGET_NATS ? seq / B.o.channels + 1 : m->offset;
}

void bench_order(uint64_t *last, uint64_t pos, uint64_t *gaps, uint64_t *dups)
{
    if (pos != *last + 1) {
        if (pos <= *last) (*dups)++;
        else *gaps += pos - *last - 1;
    }
    *last = pos;
}

static step_t *step_of(uint64_t seq)
{
    for (int i = B.cur; i > 0; i--)
        if (seq >= B.steps[i].seq_start) return &B.steps[i];
    return &B.steps[0];
}

/* A new publication number, with room in the per-publication arrays. */
static int new_seq(uint64_t ts, uint64_t *seq)
{
    if (B.nseq == B.seq_cap) {
        uint64_t ncap = B.seq_cap ? B.seq_cap * 2 : 65536;
        uint32_t *r = realloc(B.rec, ncap * sizeof *r);
        uint8_t *a;
        uint64_t *t;
        if (r) B.rec = r;
        a = r ? realloc(B.acked, ncap) : NULL;
        if (a) B.acked = a;
        t = a ? realloc(sent_ts, ncap * sizeof *t) : NULL;
        if (!t) return -1;
        sent_ts = t;
        memset(B.rec + B.seq_cap, 0, (ncap - B.seq_cap) * sizeof *B.rec);
        memset(B.acked + B.seq_cap, 0, ncap - B.seq_cap);
        B.seq_cap = ncap;
    }
    *seq = B.nseq++;
    sent_ts[*seq] = ts;
    return 0;
}

/* ---- publishing ---- */

static void on_pub_ack(herald_client_t *c, const herald_msg_t *m, void *arg);
static void ack(uint64_t seq, int ok, uint64_t rx_ns);

static int ws_publish(peer_t *p, uint64_t seq)
{
    const unsigned char *data;
    size_t dlen = bench_payload(seq, sent_ts[seq], &data), chlen;
    const char *chan = bench_chan(bench_chan_of(seq), &chlen);

    return herald_publish(p->c, chan, chlen, data, dlen, on_pub_ack, (void *)(uintptr_t)seq, NULL);
}

void bench_publish_one(step_t *st, uint64_t ts, peer_t *via)
{
    uint64_t seq;

    if (new_seq(ts, &seq)) {
        bench_fail("out of memory for publication records");
        return;
    }
    st->published++;
    B.outstanding++;
    if (B.o.publish == PUB_REST) {
        rest_submit(B.rest, seq, ts);
        return;
    }
    if (!via) {
        for (uint32_t tries = 0; tries < B.npubs; tries++) {
            peer_t *p = &B.peers[B.nsubs + B.next_pub];
            B.next_pub = (B.next_pub + 1) % B.npubs;
            if (p->state == PS_READY) { via = p; break; }
        }
    }
    if (!via || ws_publish(via, seq)) ack(seq, REST_FAILED, uv_hrtime());
}

/* @ok: REST_OK acknowledged, REST_SHED refused as overloaded (error 135),
 * REST_FAILED otherwise (rest.h names them for both transports). */
static void count_ack(uint64_t seq, int ok, uint64_t rx_ns)
{
    step_t *st = step_of(seq);

    B.outstanding--;
    if (ok != REST_OK) {
        /* Not acknowledged: nothing is expected of it, so it is not a lost delivery. */
        st->pub_errors++;
        st->pub_shed += ok == REST_SHED;
    } else {
        B.acked[seq] = 1;
        st->acked++;
        st->expected += B.chan_live[bench_chan_of(seq)];
        hist_record(st->ack, rx_ns > sent_ts[seq] ? rx_ns - sent_ts[seq] : 0);
    }
}

/* Publication @seq was answered over REST, or could not be sent. */
static void ack(uint64_t seq, int ok, uint64_t rx_ns)
{
    count_ack(seq, ok, rx_ns);
    if (S->on_ack) S->on_ack(seq, NULL, NULL);
}

static void on_pub_ack(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    peer_t *p = herald_client_ud(c);

    count_ack((uint64_t)(uintptr_t)arg, m->op == HERALD_OP_PUBLISHED                   ? REST_OK
              : m->op == HERALD_OP_ERROR && m->code == 135 ? REST_SHED
                                                           : REST_FAILED,
              m->rx_ns);
    if (S->on_ack) S->on_ack((uint64_t)(uintptr_t)arg, m, p);
}

void bench_end_run(step_t *st, uint64_t now)
{
    st->t_end = now;
    proc_cpu_stop(st);
    if (B.o.readers) readers_cpu_stop(st);
    B.phase = PH_DRAIN;
}

void bench_pump(step_t *st, void (*send)(step_t *st, uint64_t ts), unsigned burst_max)
{
    uint64_t now, el, due, dur = (uint64_t)(B.o.duration * 1e9);
    unsigned burst = 0;

    if (B.phase != PH_RUN || st->rate <= 0) return;
    now = uv_hrtime();
    el = now - st->t_start;
    due = el >= dur ? st->total : (uint64_t)((double)el * st->rate / 1e9) + 1;
    if (due > st->total) due = st->total;
    /* Bounded bursts keep the loop reading while catching up; what is left
     * goes out on the next turn with its original scheduled time. */
    while (st->published < due && burst++ < burst_max && B.phase == PH_RUN)
        send(st, st->t_start + (uint64_t)((double)st->published * 1e9 / st->rate));
    if (B.phase != PH_RUN) return;
    if (el >= dur && st->published == st->total) {
        bench_end_run(st, now);
        return;
    }
    /* A libuv timer would add up to a millisecond of sending delay. */
    bench_wake_at(st->published < st->total ? st->t_start + (uint64_t)((double)st->published * 1e9 / st->rate)
                                            : st->t_start + dur);
}

static void publish_due(step_t *st, uint64_t ts)
{
    bench_publish_one(st, ts, NULL);
}

/* Sends every publication of the current step that is due by now. */
static void pump(void)
{
    bench_pump(&B.steps[B.cur], publish_due, 50000);
}

static void on_due(void)
{
    if (S->pump) S->pump();
    else pump();
}

static uint64_t step_outstanding(const step_t *st)
{
    return st->published - st->acked - st->pub_errors;
}

/* Every publication answered, every expected delivery in. */
static int drained(const step_t *st)
{
    return step_outstanding(st) == 0 && st->recv_all >= st->expected;
}

static void on_tick(uv_timer_t *t)
{
    step_t *st = &B.steps[B.cur];
    uint64_t now = uv_hrtime();

    (void)t;
    if (B.phase == PH_SETUP) {
        if (now > setup_deadline)
            bench_fail("connection setup did not finish in time: %u of %u connections ready", B.ready, B.npeers);
        return;
    }
    if (S->tick && S->tick(now)) return;
    if (B.phase == PH_RUN) {
        if (st->rate > 0) pump();
        else if (now - st->t_start >= (uint64_t)(B.o.duration * 1e9))    /* closed loop: time is up */
            bench_end_run(st, now);
    }
    /* pump() may have ended the run just now, after @now was read: t_end is then later than @now. */
    if (B.phase == PH_DRAIN && !st->done &&
        ((S->drained ? S->drained(st) : drained(st)) ||
         (now > st->t_end && now - st->t_end >= (uint64_t)(B.o.drain_timeout * 1e9))))
        finish_step(st);
}

static void on_check(uv_check_t *h)
{
    (void)h;
    if (S->pump) S->pump();
    else if (B.phase == PH_RUN && B.steps[B.cur].rate > 0) pump();
}

static void judge_step(step_t *st);

static void finish_step(step_t *st)
{
    st->t_drained = uv_hrtime();
    st->seq_end = B.nseq;
    st->done = 1;
    if (S->step_end) {
        S->step_end(st);
        return;
    }
    /* The readers' deliveries are counted in their processes: ask for them first. */
    if (B.o.readers) readers_collect(st, judge_step);
    else judge_step(st);
}

/* The step's deliveries are all counted (st->received already holds the
 * readers' share, if any): judge it and go on. */
static void judge_step(step_t *st)
{
    uint64_t received = 0;
    double lost;

    for (uint64_t s = st->seq_start; s < st->seq_end; s++)
        if (B.acked[s]) received += B.rec[s];
    st->received += received;
    received = st->received;
    lost = st->expected ? 1.0 - (double)received / (double)st->expected : 0;
    st->sustained = st->expected > 0 && lost <= 0.001 &&
                    (double)hist_percentile(st->lat, 99) / 1e6 <= B.o.p99_max_ms &&
                    st->acked >= st->published - st->published / 1000;
    if (B.cur + 1 < B.nsteps && B.exit_code == 0) start_step(B.cur + 1);
    else bench_done();
}

static void start_step(int i)
{
    step_t *st = &B.steps[i];

    B.cur = i;
    st->seq_start = B.nseq;
    if (!(st->lat = hist_new()) || !(st->ack = hist_new())) {
        bench_fail("out of memory");
        return;
    }
    hist_reset(B.interval);
    B.phase = PH_RUN;
    st->t_start = uv_hrtime();
    proc_cpu_start();
    if (B.o.readers) readers_cpu_start();
    st->rate = B.o.rates[i];
    st->total = (uint64_t)llround(st->rate * B.o.duration);
    if (S->start_step) S->start_step(st);
    pump();
}

/* ---- connections ---- */

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud);
static void on_reply(herald_client_t *c, const herald_msg_t *m, void *ud);
static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud);
static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud);

static const herald_callbacks_t callbacks = { on_open, on_reply, on_pub, on_close };

static void fill_connections(void);

static void setup_done(void)
{
    ran = 1;
    B.setup_end = uv_hrtime();
    if (S->setup_done) S->setup_done();
    else start_step(0);
}

static void check_setup_done(void)
{
    if (B.phase != PH_SETUP) return;
    if (S->ramp) {
        if (B.inflight == 0 && (B.next_peer == B.npeers || connect_stopped)) {
            if (B.ready == 0) bench_fail("no connection succeeded: %s", B.first_err_text);
            else setup_done();
        }
        return;
    }
    if (B.ready == B.npeers && (B.o.publish != PUB_REST || !B.rest || rest_ready == B.o.publishers))
        setup_done();
}

void bench_peer_ready(peer_t *p)
{
    p->state = PS_READY;
    B.inflight--;
    B.ready++;
    fill_connections();
    check_setup_done();
}

void bench_setup_error(int err, const char *reason)
{
    const char *what;

    B.setup_failed++;
    if (B.first_err) return;
    B.first_err = err ? err : HERALD_E_PROTOCOL;
    what = herald_strerror(B.first_err);
    /* A reason that only repeats the error's name adds nothing. */
    if (reason && (!*reason || !strcmp(reason, what))) reason = NULL;
    snprintf(B.first_err_text, sizeof B.first_err_text, "%.60s%s%.96s", what, reason ? ": " : "",
             reason ? reason : "");
}

void bench_setup_failure(peer_t *p, int err, const char *reason)
{
    (void)p;
    bench_setup_error(err, reason);
    if (S->ramp) {
        fill_connections();
        check_setup_done();
        return;
    }
    bench_fail("cannot set up connections to %s: %s", p ? nodes_peer_url(p)->name : B.url.name, B.first_err_text);
}

int bench_peer_open(peer_t *p, const herald_callbacks_t *cb)
{
    int r;

    p->state = PS_CONNECTING;
    p->t_connect = uv_hrtime();
    if ((r = herald_client_new(B.hctx, nodes_peer_url(p), &B.copts, cb, p, &p->c))) {
        p->c = NULL;
        p->state = PS_CLOSED;
        return r;
    }
    B.live++;
    return 0;
}

static void start_peer(peer_t *p)
{
    int r;

    B.inflight++;
    if ((r = bench_peer_open(p, &callbacks))) {
        B.inflight--;
        bench_setup_failure(p, r, NULL);
    }
}

int bench_reconnect(peer_t *p)
{
    return bench_peer_open(p, &callbacks);
}

static void fill_connections(void)
{
    if (S->ramp && !connect_stopped &&
        uv_hrtime() - B.setup_start >= (uint64_t)(B.o.duration * 1e9))
        connect_stopped = 1;
    while (B.phase == PH_SETUP && !connect_stopped && B.inflight < B.o.concurrency && B.next_peer < B.npeers)
        start_peer(&B.peers[B.next_peer++]);
}

static void on_subscribed(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    peer_t *p = arg;
    (void)c;
    if (m->op != HERALD_OP_SUBSCRIBED) {
        char why[160];
        snprintf(why, sizeof why, "subscribe refused with error %d: %.*s", m->code, (int)m->reason_len,
                 m->reason ? m->reason : "");
        p->state = PS_OPEN;
        bench_setup_failure(p, HERALD_E_PROTOCOL, why);
        return;
    }
    p->last_off = m->offset;
    B.chan_live[p->chan]++;
    if (S->on_subscribed) S->on_subscribed(p, m);
    bench_peer_ready(p);
}

void bench_remote_ready(uint32_t n, const hist_t *connect, uint32_t k, uint32_t nreaders)
{
    for (uint32_t i = k; i < B.nsubs; i += nreaders) {
        B.peers[i].state = PS_READY;
        B.chan_live[B.peers[i].chan]++;
    }
    B.ready += n;
    hist_add(B.connect_lat, connect);
    check_setup_done();
}

void bench_remote_lost(uint32_t chan, int code)
{
    if (B.phase >= PH_TEARDOWN || chan >= B.o.channels) return;
    B.disconnects++;
    bench_count_close(code);
    B.chan_live[chan]--;
    if (++lost_subs == B.nsubs)
        bench_fail("every subscriber connection was closed during the run (last: code %d)", code);
}

void bench_peer_opened(peer_t *p)
{
    hist_record(B.connect_lat, uv_hrtime() - p->t_connect);
}

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    peer_t *p = ud;
    size_t len;
    const char *ch;
    int r;

    p->state = PS_OPEN;
    if (S->on_open && S->on_open(p, m)) return;
    bench_peer_opened(p);
    if (p->kind != PEER_SUB) { bench_peer_ready(p); return; }
    ch = bench_chan(p->chan, &len);
    if ((r = herald_subscribe(c, ch, len, on_subscribed, p, NULL))) bench_setup_failure(p, r, "subscribe");
}

static void on_reply(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    (void)c;
    if (m->op == HERALD_OP_ERROR) B.protocol_errors++;
    else if (S->on_push) S->on_push(ud, m);
}

static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    peer_t *p = ud;
    uint64_t ts, seq, at;
    step_t *st;

    (void)c;
    if (S->on_pub) {
        S->on_pub(p, m);
        return;
    }
    B.deliveries++;
    if (bench_payload_read(m->data, m->data_len, &ts, &seq) || seq >= B.nseq) {
        /* Herald's offset still says where it stood; with NATS the payload was all there was. */
        if (B.o.target != TARGET_NATS) bench_order(&p->last_off, m->offset, &B.steps[B.cur].gaps, &B.steps[B.cur].dups);
        B.bad_payload++;
        return;
    }
    bench_order(&p->last_off, bench_pub_pos(m, seq), &B.steps[B.cur].gaps, &B.steps[B.cur].dups);
    B.rec[seq]++;
    st = step_of(seq);
    st->recv_all++;
    if (m->rx_ns > st->t_last_rx) st->t_last_rx = m->rx_ns;
    at = B.t0 + ts;
    if (st->done) {
        /* Past the drain timeout: not counted as received, but reported,
         * so a stalled connection is told apart from a lost message. */
        st->late++;
        if (m->rx_ns > at && m->rx_ns - at > st->late_max) st->late_max = m->rx_ns - at;
        return;
    }
    hist_record(st->lat, m->rx_ns > at ? m->rx_ns - at : 0);
    hist_record(B.interval, m->rx_ns > at ? m->rx_ns - at : 0);
}

static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    peer_t *p = ud;
    int prev = p->state;

    B.live--;
    p->state = PS_CLOSED;
    p->c = NULL;
    if (B.phase >= PH_TEARDOWN) {
        if (B.phase == PH_TEARDOWN && B.live == 0 && rest_live == 0) bench_done();
        return;
    }
    /* E.g. recover's own drops and reconnects, which are not failures of setup. */
    if (S->on_close && S->on_close(p, info)) return;
    if (prev != PS_READY) {
        B.inflight--;
        bench_setup_failure(p, info->err, info->reason);
        return;
    }
    B.disconnects++;
    bench_count_close(info->code);
    if (S->on_lost) {
        S->on_lost(p, info);
    } else if (p->kind == PEER_SUB) {
        B.chan_live[p->chan]--;
        if (++lost_subs == B.nsubs)
            bench_fail("every subscriber connection was closed during the run (last: code %d, %s)", info->code,
                       info->err ? herald_strerror(info->err) : info->reason);
    } else if (p->kind == PEER_PUB) {
        /* Its unanswered publications will never be acknowledged. */
        uint32_t pend = herald_client_pending(c);
        B.outstanding -= pend;
        B.steps[B.cur].pub_errors += pend;
        if (++lost_pubs == B.npubs)
            bench_fail("every publisher connection was closed during the run (last: code %d, %s)", info->code,
                       info->err ? herald_strerror(info->err) : info->reason);
    } else if (++lost_idle == B.npeers) {
        bench_fail("every connection was closed while holding them (last: code %d, %s)", info->code,
                   info->err ? herald_strerror(info->err) : info->reason);
    }
    if (B.phase == PH_SETUP) check_setup_done();
}

/* ---- REST publishers ---- */

static void rest_on_connected(void)
{
    rest_ready++;
    check_setup_done();
}

static void rest_on_failed(int err)
{
    if (B.phase < PH_TEARDOWN)
        bench_fail("REST publisher cannot connect to %s: %s", B.url.name, herald_strerror(err));
}

static void rest_on_closed(void)
{
    rest_live--;
    if (B.phase == PH_TEARDOWN && B.live == 0 && rest_live == 0) bench_done();
}

static size_t rest_payload(uint64_t seq, uint64_t ts_ns, const unsigned char **data, const char **chan,
                           size_t *chlen)
{
    *chan = bench_chan(bench_chan_of(seq), chlen);
    return bench_payload(seq, ts_ns, data);
}

static const rest_events_t rest_events = { rest_on_connected, rest_on_failed, rest_on_closed, ack, rest_payload };

/* ---- progress ---- */

static void on_progress(uv_timer_t *t)
{
    step_t *st = &B.steps[B.cur];
    double el;

    (void)t;
    if (B.phase == PH_SETUP) {
        fprintf(stderr, "\r\033[K  connecting %u/%u (%u failed)", B.ready, B.npeers, B.setup_failed);
    } else if (S->progress) {
        S->progress(stderr, st);
    } else if (B.phase == PH_RUN || B.phase == PH_DRAIN) {
        el = (double)(uv_hrtime() - st->t_start) / 1e9;
        fprintf(stderr, "\r\033[K  step %d/%d  rate %.0f/s  %5.1fs  sent %llu  acked %llu  delivered %llu",
                B.cur + 1, B.nsteps, st->rate, el, (unsigned long long)st->published,
                (unsigned long long)st->acked, (unsigned long long)st->recv_all);
        /* Reader processes keep their latencies until the step ends. */
        if (!B.o.readers) fprintf(stderr, "  p99 %.2f ms", (double)hist_percentile(B.interval, 99) / 1e6);
        fprintf(stderr, "%s", B.phase == PH_DRAIN ? "  (draining)" : "");
        hist_reset(B.interval);
    }
}

/* ---- start and stop ---- */

static void stop_rest(void)
{
    if (B.o.readers) readers_stop();
    if (!B.rest) return;
    rest_stats(B.rest, &B.rest_http_errors, &B.rest_reconnects);
    rest_pool_close(B.rest);
    B.rest = NULL;
}

static int rest_closing(void) { return rest_live != 0; }

static const struct loop_driver driver = { on_tick, on_check, on_due, on_progress, stop_rest, rest_closing };

int bench_run(void)
{
    struct opts *o = &B.o;
    unsigned conns;
    uint64_t bound_ms;

    S = o->sc;     /* B.url, the publishers' node, was set from the flags by nodes_setup() */
    S->plan();
    if (o->channels == 0) o->channels = 1;
    conns = B.npeers + (o->publish == PUB_REST ? o->publishers : 0);
    if (o->readers) {
        /* The subscribers' descriptors are the readers', each its share; the fork inherits the limit. */
        unsigned own = conns - B.nsubs + o->readers, share = (B.nsubs + o->readers - 1) / o->readers;
        if (loop_fd_limit((own > share ? own : share) + 32, own > share ? own : share, "connections")) return 2;
    } else if (loop_fd_limit(conns + 32, conns, "connections")) {
        return 2;
    }

    snprintf(B.run_id, sizeof B.run_id, "%08x", (unsigned)(getpid() ^ (uint32_t)uv_hrtime()));
    B.chan_stride = 96;
    B.peers = calloc(B.npeers ? B.npeers : 1, sizeof *B.peers);
    B.chan_live = calloc(o->channels, sizeof *B.chan_live);
    B.chan_names = malloc((size_t)o->channels * B.chan_stride);
    B.payload = malloc(o->size + 16);
    B.raw = malloc(o->size);
    B.interval = hist_new();
    B.connect_lat = hist_new();
    if (!B.peers || !B.chan_live || !B.chan_names || !B.payload || !B.raw || !B.interval || !B.connect_lat) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return 1;
    }
    memset(B.raw, 'x', o->size);
    for (unsigned i = 0; i < o->channels; i++)
        /* NATS subjects are tokens separated by dots; ':' and '-' would be legal too, but a
         * NATS user reads bench.RUN.N as the same naming Herald's NAMESPACE:RUN-N is. */
        snprintf(B.chan_names + (size_t)i * B.chan_stride, B.chan_stride,
                 o->target == TARGET_NATS ? "%s.%s.%u" : "%s:%s-%u", o->ns, B.run_id, i);
    for (uint32_t i = 0; i < B.npeers; i++) {
        peer_t *p = &B.peers[i];
        if (i < B.nsubs) {
            p->kind = PEER_SUB;
            /* Spread subscribers so channel k gets subscribers k, k+M, k+2M... */
            p->chan = i % o->channels;
        } else {
            p->kind = i < B.nsubs + B.npubs ? PEER_PUB : PEER_IDLE;
        }
    }
    if (S->init && S->init()) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return 1;
    }
    if (o->readers) {
        if (readers_spawn()) return 1;
        B.next_peer = B.nsubs;          /* the readers connect the subscribers */
    }

    /* Every run ends by itself: connection setup gets its timeout plus time
     * at a pessimistic 500 connections/s, each step its duration and drain. */
    bound_ms = (uint64_t)((o->connect_timeout + B.npeers / 500.0 + 2 +
                           B.nsteps * (o->duration + o->drain_timeout + 1) + o->settle + 10) * 1000);
    if (S->time_bound) bound_ms += S->time_bound();
    if (loop_start(&driver, bound_ms)) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return 1;
    }
    if (o->readers) readers_attach();
    setup_deadline = B.t0 + (uint64_t)((o->connect_timeout + B.npeers / 500.0 + 2) * 1e9);

    B.phase = PH_SETUP;
    B.setup_start = uv_hrtime();
    if (o->publish == PUB_REST) {
        rest_live = o->publishers;
        if (rest_pool_new(&B.loop, &B.url, o->enc, o->publishers, o->size, &rest_events, &B.rest)) {
            rest_live = 0;
            bench_fail("out of memory");
        }
    }
    fill_connections();
    check_setup_done();
    loop_run();
    if (o->readers) readers_reap();

    if (B.fatal[0]) fprintf(stderr, "herald-bench: %s\n", B.fatal);
    if (!B.fatal[0] || ran) report();
    if (!B.exit_code && S->ramp && B.setup_failed) {
        fprintf(stderr, "herald-bench: %u connection attempts failed (first: %s)\n", B.setup_failed,
                B.first_err_text);
        B.exit_code = 1;
    }

    for (int i = 0; i < B.nsteps; i++) {
        hist_free(B.steps[i].lat);
        hist_free(B.steps[i].ack);
    }
    hist_free(B.interval);
    hist_free(B.connect_lat);
    free(B.peers);
    free(B.chan_live);
    free(B.chan_names);
    free(B.payload);
    free(B.raw);
    free(B.rec);
    free(B.acked);
    free(sent_ts);
    if (S->free) S->free();
    return B.exit_code;
}
