/* bench/presence.c - the presence scenario: member churn on one channel and
 * the join/leave events it makes the broker send.
 *
 * Owns: its entry (struct bench_scenario, scenario.h), the churn schedule,
 * each member's state (in, leaving, out, joining), the match between events
 * and the operations that caused them, the wait for the broker's member
 * count, its steps and phases on top of run.c's connections, the per-step
 * presence figures in step_t, and its part of the report. Does not own:
 * opening the connections and counting them (run.c, its driver), the
 * report's frame (report.c), flags in general (main.c).
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
#include "run.h"
#include "loop.h"
#include "proc.h"
#include "report.h"
#include "scenario.h"

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
static uint32_t lost;           /* connections closed during the run */
static int64_t final_members = -1, final_connections = -1;   /* presence_stats after the last step */
static uint64_t setup_events;   /* events seen before the first step (setup joins) */
static double presence_wait;    /* seconds from all subscribed to presence_stats agreeing */

static void start_step(int i);
static void pump(void);

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

/* Members, then watchers: every connection subscribes to the one channel. */
static void plan(void)
{
    B.nsubs = B.o.members + B.o.watchers;
    B.o.channels = 1;
    B.npubs = 0;
    B.npeers = B.nsubs;
    B.nsteps = B.o.nrates;
}

/* Waiting for the broker to count every member, the barrier and the final
 * count, each bounded by --drain-timeout plus the time the setup joins take
 * to fan out. */
static uint64_t time_bound(void)
{
    return (uint64_t)((3 * B.o.drain_timeout + B.npeers / 500.0 + 5) * 1000);
}

static int init(void)
{
    uint32_t n = want_members(), cap = 16;

    /* Watchers come last, so they subscribe after most members and see few
     * of the setup joins. */
    for (uint32_t i = 0; i < B.npeers; i++) B.peers[i].kind = i < B.o.members ? PEER_MEMBER : PEER_WATCHER;

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

static void fini(void)
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

/* Every connection subscribes to the channel itself: its client id must be
 * known first, to tell whose join or leave an event is. */
static int on_open(peer_t *p, const herald_msg_t *connected)
{
    uint32_t i = idx_of(p);
    int r;

    bench_peer_opened(p);
    if (parse_client(connected->client, connected->client_len, &mem[i].client)) {
        bench_setup_failure(p, HERALD_E_PROTOCOL, "the connected reply has no hex client id");
        return 1;
    }
    table_put(mem[i].client, i);
    if ((r = herald_subscribe(p->c, chan, chan_len, on_setup_subscribed, p, NULL)))
        bench_setup_failure(p, r, "subscribe");
    return 1;
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
    if (pphase == PP_WAIT) presence_wait = (double)(uv_hrtime() - wait_start) / 1e9;
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
        final_members = m->members;
        final_connections = m->connections;
        if (m->members != want_members() || m->connections != want_members())
            bench_fail("after the run the broker counts %lld members and %lld connections in %s; expected %u",
                       (long long)m->members, (long long)m->connections, chan, want_members());
        else
            bench_done();
    }
}

static void setup_done(void)
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

static void pump(void)
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
            proc_cpu_stop(st);
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

static void on_push(peer_t *p, const herald_msg_t *m)
{
    step_t *st = &B.steps[B.cur];
    uint64_t client;
    uint32_t w;
    long i;

    if (m->op != HERALD_OP_JOIN && m->op != HERALD_OP_LEAVE && m->op != HERALD_OP_PRESENCE_BATCH) return;
    B.deliveries++;
    if (pphase != PP_STEPS || !st->lat) {
        if (p->kind == PEER_WATCHER && pphase < PP_STEPS) setup_events++;
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

static void on_lost(peer_t *p, const herald_close_info_t *info)
{
    uint32_t i = idx_of(p);

    if (i < nmembers() && (mem[i].state == M_LEAVING || mem[i].state == M_OUT || mem[i].state == M_JOINING))
        op_failed(i);
    else if (i < nmembers())
        mem[i].state = M_GONE;
    if (++lost == B.npeers)
        bench_fail("every connection was closed during the run (last: code %d, %s)", info->code,
                   info->err ? herald_strerror(info->err) : info->reason);
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
    proc_cpu_start();
    pump();
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

/* Presence runs its own phases: the wait for the broker's count, the
 * barrier, the steps and the final count. */
static int tick(uint64_t now)
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
        pump();
        /* pump() may have just ended the run phase with a later clock. */
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
    return 1;
}

static void progress(FILE *f, const step_t *st)
{
    double el;

    if (B.phase == PH_RUN || B.phase == PH_DRAIN) {
        el = (double)(uv_hrtime() - st->t_start) / 1e9;
        fprintf(f, "\r\033[K  step %d/%d  churn %.0f/s  %5.1fs  leaves %llu  joins %llu  in flight %llu  "
                "events %llu  p99 %.2f ms%s", B.cur + 1, B.nsteps, st->rate, el,
                (unsigned long long)st->leaves_acked, (unsigned long long)st->joins_acked,
                (unsigned long long)outstanding, (unsigned long long)B.deliveries,
                (double)hist_percentile(B.interval, 99) / 1e6, B.phase == PH_DRAIN ? "  (draining)" : "");
        hist_reset(B.interval);
    } else if (B.phase == PH_HOLD) {
        fprintf(f, "\r\033[K  waiting for the broker's presence count  %4.1fs",
                (double)(uv_hrtime() - B.setup_end) / 1e9);
    }
}

/* ---- flags ---- */

static void defaults(struct opts *o)
{
    o->rates[0] = 100;
    snprintf(o->ns, sizeof o->ns, "chat");
}

static int check_opts(struct opts *o, uint64_t given, char *why, size_t n)
{
    (void)given;
    if ((uint64_t)o->members * o->watchers <= 50000000ULL) return 0;
    snprintf(why, n, "--members x --watchers is over 50 million (each watcher tracks every member)");
    return -1;
}

/* ---- the report ---- */

static void human_head(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, "\n  channel %.*s: %u churned members + %u watchers; rejoin ", (int)chan_len, chan, o->members,
            o->watchers);
    if (o->rejoin_delay > 0) fprintf(f, "%g s after the leave's ack", o->rejoin_delay);
    else fprintf(f, "as soon as the leave is acked");
}

static void human_body(FILE *f)
{
    const struct opts *o = &B.o;
    int best = report_best_step();
    char a[32], b[32];

    fprintf(f, "presence: the broker counted all %u members %.2f s after the last subscribe was acknowledged; "
               "watchers saw %llu setup events\n", o->members + o->watchers, presence_wait,
            (unsigned long long)setup_events);
    fprintf(f, "\n%8s %8s %8s %8s %6s %9s %10s %10s %7s %8s %8s %8s %8s %9s %6s %7s  %s\n", "churn/s", "target/s",
            "leaves", "joins", "errors", "changes/s", "events/w", "expected", "batches", "p50ms", "p99ms", "maxms",
            "ackp99", "fanout/s", "bench%", "broker%", "ok");
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        double fan = st->t_drained > st->t_start ? st->member_events / ((double)(st->t_drained - st->t_start) / 1e9) : 0;
        if (!st->lat) continue;
        fprintf(f, "%8.0f %8.0f %8llu %8llu %6llu %9.1f %10llu %10llu %7llu", st->rate, 2 * st->rate,
                (unsigned long long)st->leaves_acked, (unsigned long long)st->joins_acked,
                (unsigned long long)(st->op_errors + st->starved), changes_per_sec(st),
                (unsigned long long)st->ev_seen_min, (unsigned long long)st->ev_expected,
                (unsigned long long)st->ev_batches);
        if (st->lat->count)
            fprintf(f, " %8.2f %8.2f %8.2f", report_ms(hist_percentile(st->lat, 50)),
                    report_ms(hist_percentile(st->lat, 99)), report_ms(st->lat->max));
        else
            fprintf(f, " %8s %8s %8s", "-", "-", "-");
        fprintf(f, " %8.2f %9s %6.0f %7s  %s\n", report_ms(hist_percentile(st->ack, 99)), report_si(fan, a, sizeof a),
                st->bench_cpu, st->broker_cpu >= 0 ? (snprintf(b, sizeof b, "%.0f", st->broker_cpu), b) : "-",
                st->sustained ? "yes" : "no");
        if (st->ev_unmatched || st->starved || st->op_errors)
            fprintf(f, "  step %.0f/s: %llu events matched no operation, %llu operations dropped (no member free), "
                       "%llu failed\n", st->rate, (unsigned long long)st->ev_unmatched,
                    (unsigned long long)st->starved, (unsigned long long)st->op_errors);
    }
    fprintf(f, "(events/w: the fewest join+leave events any watcher saw, batch totals included; expected: acked\n"
               " leaves + joins, exact with presence_grace 0; fanout/s: events delivered to the churned members)\n");
    if (best >= 0)
        fprintf(f, "\nmax sustained churn: %.0f operations/s = %.0f joins+leaves/s\n", B.steps[best].rate,
                changes_per_sec(&B.steps[best]));
    else
        fprintf(f, "\nmax sustained churn: none of the rates met the criteria (see herald-bench presence --help)\n");
    if (final_members >= 0)
        fprintf(f, "final presence_stats: %lld members, %lld connections (expected %u): %s\n",
                (long long)final_members, (long long)final_connections, o->members + o->watchers,
                final_members == o->members + o->watchers && final_connections == o->members + o->watchers
                    ? "ok" : "WRONG");
    else
        fprintf(f, "final presence_stats: not read\n");
}

static void json_body(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, ",\"namespace\":\"%s\",\"channel\":\"%.*s\",\"members\":%u,\"watchers\":%u,\"rejoin_delay_s\":%g,"
               "\"presence_wait_s\":%.3f,\"setup_events\":%llu,\"steps\":[", o->ns, (int)chan_len, chan, o->members,
            o->watchers, o->rejoin_delay, presence_wait, (unsigned long long)setup_events);
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        double s = report_step_secs(st);
        if (!st->lat) continue;
        fprintf(f, "%s{\"churn\":%.0f,\"target_changes_per_sec\":%.0f,\"seconds\":%.3f,\"operations\":%llu,"
                   "\"leaves_sent\":%llu,\"leaves_acked\":%llu,\"joins_sent\":%llu,\"joins_acked\":%llu,"
                   "\"op_errors\":%llu,\"starved\":%llu,\"changes_per_sec\":%.1f,",
                i ? "," : "", st->rate, 2 * st->rate, s, (unsigned long long)st->total,
                (unsigned long long)st->leaves_sent, (unsigned long long)st->leaves_acked,
                (unsigned long long)st->joins_sent, (unsigned long long)st->joins_acked,
                (unsigned long long)st->op_errors, (unsigned long long)st->starved, changes_per_sec(st));
        fprintf(f, "\"events\":{\"expected_per_watcher\":%llu,\"seen_min\":%llu,\"seen_max\":%llu,"
                   "\"seen_mean\":%.1f,\"ratio_min\":%.6f,\"joins\":%llu,\"leaves\":%llu,\"batches\":%llu,"
                   "\"unmatched\":%llu},\"member_events\":%llu,\"member_events_per_sec\":%.1f,"
                   "\"drain_seconds\":%.3f,\"bench_cpu_pct\":%.1f,",
                (unsigned long long)st->ev_expected, (unsigned long long)st->ev_seen_min,
                (unsigned long long)st->ev_seen_max, o->watchers ? (double)st->ev_seen_sum / o->watchers : 0,
                st->ev_expected ? (double)st->ev_seen_min / (double)st->ev_expected : 0,
                (unsigned long long)st->ev_joins, (unsigned long long)st->ev_leaves,
                (unsigned long long)st->ev_batches, (unsigned long long)st->ev_unmatched,
                (unsigned long long)st->member_events,
                st->t_drained > st->t_start ? st->member_events / ((double)(st->t_drained - st->t_start) / 1e9) : 0,
                st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
        if (st->broker_cpu >= 0) fprintf(f, "\"broker_cpu_pct\":%.1f,", st->broker_cpu);
        report_json_step_end(f, "event_latency_ms", st);
    }
    fprintf(f, "]");
    report_json_max_sustained(f, "max_sustained_churn", "max_sustained_changes_per_sec", changes_per_sec);
    fprintf(f, ",\"p99_max_ms\":%g,\"final_presence\":{\"expected\":%u,", o->p99_max_ms, o->members + o->watchers);
    if (final_members >= 0)
        fprintf(f, "\"members\":%lld,\"connections\":%lld,\"ok\":%s}", (long long)final_members,
                (long long)final_connections,
                final_members == o->members + o->watchers && final_connections == o->members + o->watchers
                    ? "true" : "false");
    else
        fprintf(f, "\"members\":null,\"connections\":null,\"ok\":false}");
}

static void json_errors(FILE *f)
{
    fprintf(f, "\"presence_ops\":%llu,\"starved\":%llu,\"protocol\":%llu", (unsigned long long)REPORT_TOTAL(op_errors),
            (unsigned long long)REPORT_TOTAL(starved), (unsigned long long)B.protocol_errors);
}

static const hist_t *chart_latency(const char **what)
{
    *what = "join/leave event";
    return B.steps[0].lat;
}

const struct bench_scenario bench_presence = {
    .name = "presence",
    .summary = "one channel with N members, open-loop member churn (leave, then rejoin); join/leave events "
               "counted and timed by watcher connections, the broker's presence count checked at the end",
    .example = "herald-bench presence --url ws://127.0.0.1:8080/ws --members 10000 --churn 50,100,200 --watchers 5",
    .notes = "\nThe broker needs presence on for the namespace, e.g.\n"
             "  herald --ns chat.presence=on --ns chat.join_leave=on --ns chat.presence_grace=0\n"
             "Events per watcher are exact (expected = acked leaves + joins) only with presence_grace=0\n"
             "and the channel at or below presence_tier members; above the tier they are counted from\n"
             "presence_batch totals and have no latency. A step is sustained when >= 99.9% of its\n"
             "leaves and joins were acknowledged, at >= 85% of the target joins+leaves/s counted up to\n"
             "the last ack, every watcher saw >= 99.9% of the expected events,\n"
             "and the p99 of both ack latency (a leave counts from its scheduled time) and event\n"
             "latency is <= --p99-max. The run fails (exit 1) unless presence_stats counts\n"
             "--members + --watchers members and connections at the end.\n",
    .flags = BF_COMMON | BF(SVG) | BF(P99MAX) | BF(DRAIN_TIMEOUT) | BF(NAMESPACE) | BF(MEMBERS) | BF(WATCHERS) |
             BF(CHURN) | BF(REJOIN_DELAY),
    .defaults = defaults,
    .check_opts = check_opts,
    .run = bench_run,
    .init = init,
    .free = fini,
    .progress = progress,
    .plan = plan,
    .time_bound = time_bound,
    .on_open = on_open,
    .on_push = on_push,
    .on_lost = on_lost,
    .setup_done = setup_done,
    .tick = tick,
    .pump = pump,
    .report_head = human_head,
    .report_body = human_body,
    .report_json = json_body,
    .report_json_errors = json_errors,
    .chart_step = changes_per_sec,
    .chart_value = "joins+leaves/s",
    .chart_rate = "target churn operations/s",
    .chart_latency = chart_latency,
};
