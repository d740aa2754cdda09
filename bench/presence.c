/* bench/presence.c - the presence scenario: member churn on one channel and
 * the join/leave events it makes the broker send.
 *
 * Owns: the churn schedule, each member's state (in, leaving, out, joining),
 * the match between events and the operations that caused them, the wait for
 * the broker's member count, and the per-step presence figures in step_t.
 * Does not own: connections and phases in general (run.c), output
 * (report.c), flags (main.c).
 *
 * DESIGN: --members connections subscribe to NS:presence-bench, then
 * --watchers more (never churned). Once every subscribe is acknowledged the
 * bench polls presence_stats until the broker counts them all, then pings
 * every watcher: a connection's messages arrive in the order the broker
 * produced them, so once a watcher's pong is in, every setup join meant for
 * it is too, and counting can start from zero.
 *
 * Churn is open loop like the publishing scenarios: operation i of a step is
 * due at t_start + i/rate and takes the next member that is in; it sends
 * `unsubscribe` stamped with its scheduled time, and when that is
 * acknowledged (plus --rejoin-delay) the same member sends `subscribe`. So
 * one operation is one leave and one join, and each watcher should see
 * exactly acked leaves + acked joins events when the broker announces every
 * change individually (presence_grace 0, below presence_tier).
 *
 * Latency: each member remembers the send time of its last RING operations
 * (even numbers are leaves, odd ones joins). A watcher keeps, per member, the
 * next operation it has not yet seen; an event of that member's is matched
 * to the first operation of its kind from there, and its latency is the
 * watcher's read time minus that operation's send time. Batched events
 * (presence_batch, above the tier) are counted by their totals and have no
 * latency. */
#include "bench.h"
#include "loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RING 16

enum { M_IN = 0, M_LEAVING, M_OUT, M_JOINING, M_GONE };
enum { PP_CONNECT = 0, PP_WAIT, PP_SETTLE, PP_BARRIER, PP_STEPS, PP_FINAL };

struct member {
    uint64_t client;            /* the connection's client id, as a number */
    uint64_t ts[RING];          /* send time of operation k at ts[k % RING] */
    uint32_t nops;              /* operations started: leaves and joins */
    uint8_t state;              /* M_* */
    uint8_t step;               /* the step its current operation belongs to */
};

static struct member *mem;      /* one per peer; watchers use only .client */
static uint32_t *next_op;       /* watchers x members: next operation not yet seen */
static uint64_t *wseen;         /* per watcher: events seen in the current step */
static uint32_t *table;         /* client id -> peer index + 1, open addressing */
static uint32_t table_mask;
static uint32_t *rq;            /* rejoin queue (with --rejoin-delay): member indexes */
static uint64_t *rq_at;         /* ... and when each is due */
static uint32_t rq_head, rq_len;
static uint32_t cursor;         /* next member to try for a leave */
static uint64_t outstanding;    /* operations started whose member is not back in */
static int pphase;
static uint64_t deadline, next_query, wait_start;
static int stats_inflight, setup_batches;
static uint64_t settle_until;
static uint32_t barrier_left;
static int64_t last_members = -1, last_conns = -1;
static char chan[96];
static size_t chan_len;

static void start_step(int i);

const char *pres_channel(size_t *len)
{
    *len = chan_len;
    return chan;
}

static uint32_t nmembers(void) { return B.o.members; }
static uint32_t want_members(void) { return B.o.members + B.o.watchers; }
static uint32_t idx_of(const peer_t *p) { return (uint32_t)(p - B.peers); }

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int parse_client(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || n == 0 || n > 16) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i], d;
        if (c - '0' < 10) d = c - '0';
        else if ((c | 0x20) - 'a' < 6) d = (c | 0x20) - 'a' + 10;
        else return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static void table_put(uint64_t client, uint32_t idx)
{
    uint32_t h = (uint32_t)mix(client) & table_mask;

    while (table[h]) h = (h + 1) & table_mask;
    table[h] = idx + 1;
}

/* The member whose client id is @client, or -1 (a watcher, or unknown). */
static long table_get(uint64_t client)
{
    uint32_t h = (uint32_t)mix(client) & table_mask;

    while (table[h]) {
        uint32_t i = table[h] - 1;
        if (mem[i].client == client) return i < nmembers() ? (long)i : -1;
        h = (h + 1) & table_mask;
    }
    return -1;
}

int pres_init(void)
{
    uint32_t n = want_members(), cap = 16;

    snprintf(chan, sizeof chan, "%s:presence-bench", B.o.ns);
    chan_len = strlen(chan);
    while (cap < 2 * n) cap *= 2;
    table_mask = cap - 1;
    mem = calloc(n ? n : 1, sizeof *mem);
    table = calloc(cap, sizeof *table);
    next_op = calloc((size_t)B.o.watchers * nmembers() + 1, sizeof *next_op);
    wseen = calloc(B.o.watchers + 1, sizeof *wseen);
    rq = malloc((nmembers() + 1) * sizeof *rq);
    rq_at = malloc((nmembers() + 1) * sizeof *rq_at);
    return mem && table && next_op && wseen && rq && rq_at ? 0 : -1;
}

void pres_free(void)
{
    free(mem);
    free(table);
    free(next_op);
    free(wseen);
    free(rq);
    free(rq_at);
}

/* ---- setup ---- */

static void on_setup_subscribed(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    peer_t *p = arg;
    char why[200];

    (void)c;
    if (m->op == HERALD_OP_SUBSCRIBED) {
        bench_peer_ready(p);
        return;
    }
    snprintf(why, sizeof why, "subscribe to %s refused with error %d: %.*s", chan, m->code, (int)m->reason_len,
             m->reason ? m->reason : "");
    bench_setup_failure(p, HERALD_E_PROTOCOL, why);
}

void pres_on_open(peer_t *p, const herald_msg_t *connected)
{
    uint32_t i = idx_of(p);
    int r;

    if (parse_client(connected->client, connected->client_len, &mem[i].client)) {
        bench_setup_failure(p, HERALD_E_PROTOCOL, "the connected reply has no hex client id");
        return;
    }
    table_put(mem[i].client, i);
    if ((r = herald_subscribe(p->c, chan, chan_len, on_setup_subscribed, p, NULL)))
        bench_setup_failure(p, r, "subscribe");
}

static peer_t *stats_peer(void)
{
    for (uint32_t i = B.npeers; i-- > 0;)
        if (B.peers[i].state == PS_READY) return &B.peers[i];
    return NULL;
}

static void on_stats(herald_client_t *c, const herald_msg_t *m, void *arg);

static void query_stats(void)
{
    peer_t *p = stats_peer();

    if (!p) { bench_fail("no connection left to ask presence_stats"); return; }
    if (herald_presence_stats(p->c, chan, chan_len, on_stats, NULL, NULL)) {
        bench_fail("cannot send presence_stats");
        return;
    }
    stats_inflight = 1;
}

static void on_pong(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    (void)c; (void)m; (void)arg;
    if (pphase == PP_BARRIER && --barrier_left == 0) start_step(0);
}

static void start_barrier(void)
{
    pphase = PP_BARRIER;
    barrier_left = 1;           /* held until every ping is sent */
    for (uint32_t i = nmembers(); i < B.npeers; i++)
        if (B.peers[i].state == PS_READY && herald_ping(B.peers[i].c, on_pong, NULL, NULL) == 0) barrier_left++;
    if (--barrier_left == 0) start_step(0);
}

static void on_stats(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    (void)c; (void)arg;
    stats_inflight = 0;
    if (B.phase >= PH_TEARDOWN) return;
    if (m->op != HERALD_OP_PRESENCE_STATS) {
        if (m->code == 116)
            bench_fail("namespace %s has no presence: start the broker with --ns %s.presence=on "
                       "--ns %s.join_leave=on", B.o.ns, B.o.ns, B.o.ns);
        else
            bench_fail("presence_stats on %s refused with error %d: %.*s", chan, m->code, (int)m->reason_len,
                       m->reason ? m->reason : "");
        return;
    }
    last_members = m->members;
    last_conns = m->connections;
    if (pphase == PP_WAIT) B.presence_wait = (double)(uv_hrtime() - wait_start) / 1e9;
    if (pphase == PP_WAIT && m->members == want_members() && m->connections == want_members()) {
        /* Above the tier the setup joins are still in the broker's pending
         * batch; let it go out (the broker flushes at least once a second)
         * before the barrier, or it would be counted as churn. */
        if (setup_batches) {
            pphase = PP_SETTLE;
            settle_until = uv_hrtime() + 1100000000ULL;
        } else {
            start_barrier();
        }
    } else if (pphase == PP_FINAL) {
        B.final_members = m->members;
        B.final_connections = m->connections;
        if (m->members != want_members() || m->connections != want_members())
            bench_fail("after the run the broker counts %lld members and %lld connections in %s; expected %u",
                       (long long)m->members, (long long)m->connections, chan, want_members());
        else
            bench_done();
    }
}

void pres_setup_done(void)
{
    uint64_t now = uv_hrtime();

    B.phase = PH_HOLD;
    pphase = PP_WAIT;
    wait_start = now;
    /* Joins fan out to everyone already in: with individual events that is
     * N^2/2 deliveries before the count settles, so allow for them. */
    deadline = now + (uint64_t)((B.o.drain_timeout + 5 + B.npeers / 500.0) * 1e9);
    next_query = now;
}

/* ---- churn ---- */

static void on_leave_ack(herald_client_t *c, const herald_msg_t *m, void *arg);
static void on_join_ack(herald_client_t *c, const herald_msg_t *m, void *arg);

static void op_failed(uint32_t i)
{
    B.steps[mem[i].step].op_errors++;
    mem[i].state = M_GONE;
    outstanding--;
}

static void send_join(uint32_t i)
{
    struct member *mb = &mem[i];
    peer_t *p = &B.peers[i];

    mb->ts[mb->nops % RING] = uv_hrtime();
    mb->nops++;
    mb->state = M_JOINING;
    B.steps[mb->step].joins_sent++;
    if (p->state != PS_READY || herald_subscribe(p->c, chan, chan_len, on_join_ack, NULL, NULL)) op_failed(i);
}

static void record_ack(struct member *mb, const herald_msg_t *m)
{
    step_t *st = &B.steps[mb->step];
    uint64_t sent = mb->ts[(mb->nops - 1) % RING];

    if (st->ack) hist_record(st->ack, m->rx_ns > sent ? m->rx_ns - sent : 0);
    if (m->rx_ns > st->t_last_ack) st->t_last_ack = m->rx_ns;
}

static void on_leave_ack(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    uint32_t i = idx_of(herald_client_ud(c));
    struct member *mb = &mem[i];

    (void)arg;
    if (m->op != HERALD_OP_UNSUBSCRIBED) { op_failed(i); return; }
    B.steps[mb->step].leaves_acked++;
    record_ack(mb, m);
    mb->state = M_OUT;
    if (B.o.rejoin_delay <= 0) {
        send_join(i);
        return;
    }
    rq[(rq_head + rq_len) % (nmembers() + 1)] = i;
    rq_at[(rq_head + rq_len) % (nmembers() + 1)] = m->rx_ns + (uint64_t)(B.o.rejoin_delay * 1e9);
    rq_len++;
}

static void on_join_ack(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    uint32_t i = idx_of(herald_client_ud(c));
    struct member *mb = &mem[i];

    (void)arg;
    if (m->op != HERALD_OP_SUBSCRIBED) { op_failed(i); return; }
    B.steps[mb->step].joins_acked++;
    record_ack(mb, m);
    mb->state = M_IN;
    outstanding--;
}

/* Starts one operation scheduled at @ts: the next member that is in leaves. */
static void start_leave(step_t *st, uint64_t ts)
{
    uint32_t n = nmembers();

    for (uint32_t tries = 0; tries < n; tries++) {
        uint32_t i = cursor;
        struct member *mb = &mem[i];
        cursor = (cursor + 1) % n;
        if (mb->state != M_IN || B.peers[i].state != PS_READY) continue;
        mb->ts[mb->nops % RING] = ts;
        mb->nops++;
        mb->state = M_LEAVING;
        mb->step = (uint8_t)B.cur;
        st->leaves_sent++;
        outstanding++;
        if (herald_unsubscribe(B.peers[i].c, chan, chan_len, on_leave_ack, NULL, NULL)) op_failed(i);
        return;
    }
    st->starved++;          /* every member is busy: this operation is dropped */
}

void pres_pump(void)
{
    step_t *st = &B.steps[B.cur];
    uint64_t now, el, due, dur = (uint64_t)(B.o.duration * 1e9), wake = 0;
    unsigned burst = 0;

    if (pphase != PP_STEPS || (B.phase != PH_RUN && B.phase != PH_DRAIN)) return;
    now = uv_hrtime();
    while (rq_len && rq_at[rq_head] <= now) {
        uint32_t i = rq[rq_head];
        rq_head = (rq_head + 1) % (nmembers() + 1);
        rq_len--;
        if (mem[i].state == M_OUT) send_join(i);
    }
    if (B.phase == PH_RUN) {
        el = now - st->t_start;
        due = el >= dur ? st->total : (uint64_t)((double)el * st->rate / 1e9) + 1;
        if (due > st->total) due = st->total;
        while (st->leaves_sent + st->starved < due && burst++ < 50000 && B.phase == PH_RUN)
            start_leave(st, st->t_start + (uint64_t)((double)(st->leaves_sent + st->starved) * 1e9 / st->rate));
        if (el >= dur && st->leaves_sent + st->starved >= st->total) {
            st->t_end = now;
            bench_cpu_stop(st);
            B.phase = PH_DRAIN;
        } else {
            wake = st->leaves_sent + st->starved < st->total
                       ? st->t_start + (uint64_t)((double)(st->leaves_sent + st->starved) * 1e9 / st->rate)
                       : st->t_start + dur;
        }
    }
    if (rq_len && (!wake || rq_at[rq_head] < wake)) wake = rq_at[rq_head];
    if (wake) bench_wake_at(wake);
}

/* ---- events ---- */

/* Matches an individual event of member @i seen by watcher @w to the first
 * operation of its kind (even: leave, odd: join) the watcher has not seen. */
static void match_event(step_t *st, uint32_t w, uint32_t i, int join, uint64_t rx)
{
    struct member *mb = &mem[i];
    uint32_t *k = &next_op[(size_t)w * nmembers() + i];
    uint32_t op = *k;

    if ((op & 1u) != (unsigned)join) op++;
    if (op >= mb->nops) { st->ev_unmatched++; return; }
    *k = op + 1;
    if (mb->nops - op <= RING) {
        uint64_t sent = mb->ts[op % RING];
        hist_record(st->lat, rx > sent ? rx - sent : 0);
        hist_record(B.interval, rx > sent ? rx - sent : 0);
    }
}

void pres_on_push(peer_t *p, const herald_msg_t *m)
{
    step_t *st = &B.steps[B.cur];
    uint64_t client;
    uint32_t w;
    long i;

    if (m->op != HERALD_OP_JOIN && m->op != HERALD_OP_LEAVE && m->op != HERALD_OP_PRESENCE_BATCH) return;
    B.deliveries++;
    if (pphase != PP_STEPS || !st->lat) {
        if (p->kind == PEER_WATCHER && pphase < PP_STEPS) B.setup_events++;
        if (m->op == HERALD_OP_PRESENCE_BATCH && pphase < PP_STEPS) setup_batches = 1;
        return;
    }
    if (p->kind != PEER_WATCHER) {
        st->member_events++;
        return;
    }
    w = idx_of(p) - nmembers();
    if (m->op == HERALD_OP_PRESENCE_BATCH) {
        st->ev_batches++;
        st->ev_joins += (uint64_t)(m->joins_total > 0 ? m->joins_total : 0);
        st->ev_leaves += (uint64_t)(m->leaves_total > 0 ? m->leaves_total : 0);
        wseen[w] += (uint64_t)(m->joins_total > 0 ? m->joins_total : 0) +
                    (uint64_t)(m->leaves_total > 0 ? m->leaves_total : 0);
        return;
    }
    /* The bench connects anonymously, so every member is named by client. */
    if (parse_client(m->client, m->client_len, &client) || (i = table_get(client)) < 0) {
        st->ev_unmatched++;
        return;
    }
    if (m->op == HERALD_OP_JOIN) st->ev_joins++;
    else st->ev_leaves++;
    wseen[w]++;
    match_event(st, w, (uint32_t)i, m->op == HERALD_OP_JOIN, m->rx_ns);
}

void pres_on_close(peer_t *p)
{
    uint32_t i = idx_of(p);

    if (i < nmembers() && (mem[i].state == M_LEAVING || mem[i].state == M_OUT || mem[i].state == M_JOINING))
        op_failed(i);
    else if (i < nmembers())
        mem[i].state = M_GONE;
}

/* ---- steps ---- */

static void start_step(int i)
{
    step_t *st = &B.steps[i];

    pphase = PP_STEPS;
    B.cur = i;
    if (!(st->lat = hist_new()) || !(st->ack = hist_new())) {
        bench_fail("out of memory");
        return;
    }
    hist_reset(B.interval);
    memset(wseen, 0, (B.o.watchers + 1) * sizeof *wseen);
    st->rate = B.o.rates[i];
    st->total = (uint64_t)llround(st->rate * B.o.duration);
    B.phase = PH_RUN;
    st->t_start = uv_hrtime();
    bench_cpu_start();
    pres_pump();
}

static int watchers_caught_up(const step_t *st)
{
    uint64_t want = st->leaves_acked + st->joins_acked;

    for (uint32_t w = 0; w < B.o.watchers; w++)
        if (B.peers[nmembers() + w].state == PS_READY && wseen[w] < want) return 0;
    return 1;
}

static double changes_per_sec(const step_t *st)
{
    uint64_t end = st->t_last_ack > st->t_end ? st->t_last_ack : st->t_end;
    return end > st->t_start ? (double)(st->leaves_acked + st->joins_acked) / ((double)(end - st->t_start) / 1e9) : 0;
}

static void finish_step(step_t *st)
{
    uint64_t ops = 2 * st->total;
    int live = 0;

    st->t_drained = uv_hrtime();
    st->done = 1;
    st->ev_expected = st->leaves_acked + st->joins_acked;
    st->ev_seen_min = UINT64_MAX;
    for (uint32_t w = 0; w < B.o.watchers; w++) {
        if (B.peers[nmembers() + w].state != PS_READY) continue;
        live++;
        if (wseen[w] < st->ev_seen_min) st->ev_seen_min = wseen[w];
        if (wseen[w] > st->ev_seen_max) st->ev_seen_max = wseen[w];
        st->ev_seen_sum += wseen[w];
    }
    if (!live) st->ev_seen_min = 0;
    /* A broker that falls behind shows it as a growing ack latency (the
     * leaves are stamped with their scheduled time), event latency, and a
     * rate that counts up to the last ack: 85% leaves room for the tail of
     * a short step. */
    st->sustained = st->leaves_acked + st->joins_acked >= ops - ops / 1000 &&
                    changes_per_sec(st) >= 0.85 * (double)ops / B.o.duration &&
                    (!live || st->ev_seen_min >= st->ev_expected - st->ev_expected / 1000) &&
                    (double)hist_percentile(st->ack, 99) / 1e6 <= B.o.p99_max_ms &&
                    (double)hist_percentile(st->lat, 99) / 1e6 <= B.o.p99_max_ms;
    if (B.cur + 1 < B.nsteps && B.exit_code == 0) {
        start_step(B.cur + 1);
        return;
    }
    pphase = PP_FINAL;
    B.phase = PH_HOLD;
    deadline = uv_hrtime() + (uint64_t)((B.o.drain_timeout + 5) * 1e9);
    query_stats();
}

void pres_tick(uint64_t now)
{
    switch (pphase) {
    case PP_WAIT:
        if (now > deadline) {
            bench_fail("the broker still counts %lld members (%lld connections) in %s %.1f s after every subscribe "
                       "was acknowledged; expected %u", (long long)last_members, (long long)last_conns, chan,
                       (double)(now - wait_start) / 1e9, want_members());
        } else if (!stats_inflight && now >= next_query) {
            next_query = now + 100000000ULL;
            query_stats();
        }
        break;
    case PP_SETTLE:
        if (now >= settle_until) start_barrier();
        break;
    case PP_BARRIER:
        if (now > deadline) bench_fail("watchers did not answer a ping in time before the churn");
        break;
    case PP_STEPS: {
        step_t *st = &B.steps[B.cur];
        pres_pump();
        /* pres_pump() may have just ended the run phase with a later clock. */
        now = uv_hrtime();
        if (B.phase == PH_DRAIN &&
            ((outstanding == 0 && watchers_caught_up(st)) || now - st->t_end >= (uint64_t)(B.o.drain_timeout * 1e9)))
            finish_step(st);
        break;
    }
    case PP_FINAL:
        if (now > deadline) bench_fail("presence_stats after the run was not answered in time");
        break;
    default:
        break;
    }
}

double pres_changes_per_sec(const step_t *st)
{
    return changes_per_sec(st);
}

uint64_t pres_outstanding(void)
{
    return outstanding;
}
