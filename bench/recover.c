/* bench/recover.c - the recover scenario: subscribers drop, publishing goes
 * on, they come back with `since` and must get every missed publication
 * exactly once.
 *
 * Owns: its entry (struct bench_scenario, scenario.h), the
 * disconnect/reconnect cycles, each subscriber's recovery state (the epoch
 * and offset it resumes from, what it lost for good, what it received), the
 * checks on recovery replies and on every delivery, the run's figures
 * (struct recover_figures) and its part of the report. Does not own:
 * connections and publishing in general (run.c, its driver), the report's
 * frame (report.c), flags in general (main.c).
 *
 * DESIGN: --subscribers connections subscribe to NS:RUNID-0 and one WebSocket
 * publisher publishes there at --rate, open loop (run.c's schedule). The run
 * is cut into --cycles equal slots; in the middle of each, an outage of
 * --outage seconds: at its start a random --fraction of the subscribers that
 * are live is aborted (TCP dropped, no close handshake), at its end each of
 * them opens a new connection and subscribes with since = {the epoch of its
 * last subscribe reply, the last offset it saw}.
 *
 * Checks. Every subscriber keeps the last offset it saw (peer_t.last_off).
 * A delivery, live `pub` or an element of a reply's publications, must carry
 * last_off + 1: a lower offset is a duplicate (not counted as received), a
 * higher one leaves a gap. A recovery reply must say "recovered": true, keep
 * the epoch, and its publications must run from since + 1 to the reply's
 * offset; live pubs then continue from offset + 1 (protocol.md, subscribe).
 * A "recovered": false reply is followed as a client would: what lies before
 * its tail is counted as unrecoverable, not as a gap, and the subscriber
 * goes on from the reply's offset. Every payload carries the publication's
 * sequence number: the first offset a sequence number is seen with (or its
 * ack's offset) is remembered, and any other offset for it is a mismatch,
 * so each publication has one offset and reaches a subscriber at most once.
 *
 * At the end every subscriber should have received every offset from its
 * first subscribe to the last acknowledged one, minus what it lost for good:
 * `expected` sums that, `received` counts the deliveries that advanced a
 * subscriber, and the drain waits (up to --drain-timeout) until they agree. */
#include "run.h"
#include "loop.h"
#include "report.h"
#include "scenario.h"

#include <stdlib.h>
#include <string.h>

/* The run's figures, for the report. */
struct recover_figures {
    char channel[96];
    uint64_t last_offset;       /* the highest acknowledged offset: every subscriber should end there */
    unsigned cycles_run;
    uint64_t dropped;           /* subscriber connections aborted by the bench */
    uint64_t reconnections;     /* reconnects started */
    uint64_t reconnect_failures;/* reconnects that did not get a subscribe reply */
    uint64_t refused;           /* ... of which the subscribe was answered with an error */
    uint64_t recovered_true, recovered_false;
    uint64_t missed;            /* offsets published while away: sum of reply offset - since offset */
    uint64_t recovered_pubs;    /* publications delivered in "recovered": true replies */
    uint64_t unrecoverable;     /* offsets neither in a "recovered": false reply nor delivered live */
    uint64_t tail_pubs;         /* publications delivered in "recovered": false replies */
    uint64_t gaps, dups;        /* per subscriber, offsets skipped / seen again */
    uint64_t mismatches;        /* a payload's sequence number seen with two offsets */
    uint64_t epoch_mismatches;  /* "recovered": true with another epoch than the one given */
    uint64_t bad_replies;       /* no "recovered", unreadable publications, an offset behind the subscriber */
    uint64_t unexpected_closes; /* subscribers closed by the broker (or the network) */
    uint64_t expected, received;/* deliveries over all subscribers, live and in replies */
    uint64_t live, from_replies;
    uint64_t behind;            /* subscribers short of last_offset when the drain ended */
    uint64_t pending_connect;   /* reconnects still opening their connection when the drain ended */
    uint64_t pending_reply;     /* ... and still waiting for their subscribe reply */
    hist_t *recovery;           /* reconnect start -> subscribe reply read, ns */
    hist_t *per_reply;          /* publications in each recovery reply */
    char first_failure[160];    /* the first reconnect failure, for the message */
};

enum { R_SETUP = 0, R_LIVE, R_AWAY, R_RECONNECTING, R_RECOVERING, R_DEAD };

struct rsub {
    uint64_t first_off;         /* offset of its first subscribe reply: it expects every one after */
    uint64_t since;             /* the offset it resumed from in its current recovery */
    uint64_t received;          /* deliveries that advanced last_off */
    uint64_t lost;              /* offsets a "recovered": false reply could not give back */
    uint64_t t_reconnect;
    char epoch[24];
    uint8_t epoch_len;
    uint8_t state;              /* R_* */
};

struct cycle {
    uint64_t down_at, up_at;
    uint32_t first, n;          /* its subscribers: picked[first .. first + n) */
    uint32_t back;              /* how many of them have reconnected */
    uint8_t state;              /* 0 pending, 1 away, 2 all reconnected */
};

static struct rsub *subs;
static struct cycle *cycles;
static uint32_t *picked;        /* subscriber indexes dropped, cycle after cycle */
static uint32_t *pool;          /* scratch for drawing them */
static uint64_t *off_of_seq;    /* per publication: the offset it was seen with, 0 if not yet */
static uint64_t nseq_cap;
static uint64_t rng;
static uint32_t next_cycle;
static const char *chan;
static size_t chan_len;
static struct recover_figures rf;

static struct rsub *rs(const peer_t *p) { return &subs[p - B.peers]; }

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

/* The subscribers on the one channel, then the WebSocket publisher; one step. */
static void plan(void)
{
    B.nsubs = B.o.subscribers;
    B.o.channels = 1;
    B.npubs = B.o.publish == PUB_WS ? B.o.publishers : 0;
    B.npeers = B.nsubs + B.npubs;
    B.nsteps = 1;
}

/* The last reconnects may take their whole connect timeout. */
static uint64_t time_bound(void)
{
    return (uint64_t)((B.o.connect_timeout + B.npeers / 500.0) * 1000);
}

static int init(void)
{
    subs = calloc(B.nsubs ? B.nsubs : 1, sizeof *subs);
    cycles = calloc(B.o.cycles, sizeof *cycles);
    picked = malloc(((size_t)B.nsubs * B.o.cycles + 1) * sizeof *picked);
    pool = malloc((B.nsubs + 1) * sizeof *pool);
    rf.recovery = hist_new();
    rf.per_reply = hist_new();
    rng = ((uint64_t)uv_hrtime() << 1) | 1;
    chan = bench_chan(0, &chan_len);
    snprintf(rf.channel, sizeof rf.channel, "%s", chan);
    return subs && cycles && picked && pool && rf.recovery && rf.per_reply ? 0 : -1;
}

static void fini(void)
{
    free(subs);
    free(cycles);
    free(picked);
    free(pool);
    free(off_of_seq);
    hist_free(rf.recovery);
    hist_free(rf.per_reply);
    rf.recovery = rf.per_reply = NULL;
}

static void keep_epoch(struct rsub *r, const herald_msg_t *m)
{
    size_t n = m->epoch_len < sizeof r->epoch ? m->epoch_len : sizeof r->epoch - 1;

    memcpy(r->epoch, m->epoch ? m->epoch : "", n);
    r->epoch_len = (uint8_t)n;
}

static void on_subscribed(peer_t *p, const herald_msg_t *m)
{
    struct rsub *r = rs(p);

    r->first_off = m->offset;
    r->state = R_LIVE;
    keep_epoch(r, m);
}

/* ---- the schedule ---- */

static void start_step(step_t *st)
{
    double slot = B.o.duration / B.o.cycles;

    nseq_cap = st->total + 1;
    if (!(off_of_seq = calloc(nseq_cap, sizeof *off_of_seq))) {
        bench_fail("out of memory");
        return;
    }
    /* Each outage sits in the middle of its slot, so publishing goes on
     * before and after it (main.c checks that --outage fits a slot). */
    for (unsigned i = 0; i < B.o.cycles; i++) {
        cycles[i].down_at = st->t_start + (uint64_t)(((double)i * slot + (slot - B.o.outage) / 2) * 1e9);
        cycles[i].up_at = cycles[i].down_at + (uint64_t)(B.o.outage * 1e9);
    }
}

/* Aborts a random --fraction of the live subscribers. */
static void drop(struct cycle *cy)
{
    uint32_t live = 0, want = (uint32_t)(B.o.fraction * B.nsubs + 0.5);

    for (uint32_t i = 0; i < B.nsubs; i++)
        if (subs[i].state == R_LIVE && B.peers[i].state == PS_READY && B.peers[i].c) pool[live++] = i;
    if (want > live) want = live;
    cy->first = (uint32_t)(cycles == cy ? 0 : cy[-1].first + cy[-1].n);
    cy->n = want;
    /* A partial Fisher-Yates shuffle: the first @want of the pool. */
    for (uint32_t k = 0; k < want; k++) {
        uint32_t j = k + (uint32_t)(rnd() % (live - k)), t = pool[k];
        pool[k] = pool[j];
        pool[j] = t;
        picked[cy->first + k] = pool[k];
    }
    for (uint32_t k = 0; k < want; k++) {
        peer_t *p = &B.peers[picked[cy->first + k]];
        rs(p)->state = R_AWAY;
        p->state = PS_OPEN;
        rf.dropped++;
        herald_client_abort(p->c);      /* on_close follows: this file's on_close() */
    }
    cy->state = 1;
    rf.cycles_run++;
}

static void on_recovered(herald_client_t *c, const herald_msg_t *m, void *arg);

static void reconnect_failed(peer_t *p, const char *why)
{
    struct rsub *r = rs(p);

    r->state = R_DEAD;
    rf.reconnect_failures++;
    if (!rf.first_failure[0]) snprintf(rf.first_failure, sizeof rf.first_failure, "%s", why);
}

/* Reconnects the cycle's subscribers whose old connection is gone. */
static void bring_back(struct cycle *cy)
{
    for (uint32_t k = cy->back; k < cy->n; k++) {
        peer_t *p = &B.peers[picked[cy->first + k]];
        struct rsub *r = rs(p);
        int err;
        if (p->c) return;               /* its abort has not completed yet: next tick */
        cy->back++;
        r->t_reconnect = uv_hrtime();
        r->state = R_RECONNECTING;
        rf.reconnections++;
        if ((err = bench_reconnect(p))) reconnect_failed(p, herald_strerror(err));
    }
    cy->state = 2;
}

/* The cycles; then the driver goes on with the step. */
static int tick(uint64_t now)
{
    if (B.phase != PH_RUN && B.phase != PH_DRAIN) return 0;
    for (uint32_t i = 0; i < next_cycle; i++)
        if (cycles[i].state == 1 && now >= cycles[i].up_at) bring_back(&cycles[i]);
    if (next_cycle < B.o.cycles && now >= cycles[next_cycle].down_at && B.phase == PH_RUN)
        drop(&cycles[next_cycle++]);
    return 0;
}

/* ---- connections ---- */

/* A reconnected subscriber resubscribes with since; a new one is the
 * driver's to subscribe. */
static int on_open(peer_t *p, const herald_msg_t *connected)
{
    struct rsub *r = rs(p);
    int err;

    (void)connected;
    if (p->kind != PEER_SUB || r->state != R_RECONNECTING) return 0;
    r->state = R_RECOVERING;
    r->since = p->last_off;
    err = herald_subscribe_since(p->c, chan, chan_len, r->epoch, r->epoch_len, p->last_off, on_recovered, NULL, NULL);
    if (err) {
        reconnect_failed(p, herald_strerror(err));
        herald_close(p->c, 1000, "bench: subscribe failed");
    }
    return 1;
}

static int on_close(peer_t *p, const herald_close_info_t *info)
{
    struct rsub *r = rs(p);
    char why[160];

    if (p->kind != PEER_SUB) return 0;
    switch (r->state) {
    case R_AWAY:
        return 1;                       /* the bench's own abort */
    case R_RECONNECTING: case R_RECOVERING:
        snprintf(why, sizeof why, "reconnect closed (code %d): %s", info->code,
                 info->err ? herald_strerror(info->err) : info->reason);
        reconnect_failed(p, why);
        return 1;
    case R_DEAD:
        return 1;                       /* already counted */
    case R_LIVE:
        r->state = R_DEAD;
        rf.unexpected_closes++;
        return 0;                       /* run.c counts it as a disconnect */
    default:
        return 0;                       /* setup: run.c's setup failure */
    }
}

/* ---- deliveries ---- */

/* One publication reaching subscriber @p, live (@rx set) or in a reply. */
static void deliver(peer_t *p, uint64_t off, const void *data, size_t len, uint64_t rx)
{
    struct rsub *r = rs(p);
    step_t *st = &B.steps[0];
    uint64_t ts, seq;

    B.deliveries++;
    if (off <= p->last_off) {
        rf.dups++;
        return;
    }
    if (off > p->last_off + 1) rf.gaps += off - p->last_off - 1;
    p->last_off = off;
    r->received++;
    if (rx) rf.live++;
    else rf.from_replies++;
    if (bench_payload_read(data, len, &ts, &seq) || seq >= nseq_cap) {
        B.bad_payload++;
        return;
    }
    if (!off_of_seq[seq]) off_of_seq[seq] = off;
    else if (off_of_seq[seq] != off) rf.mismatches++;
    if (rx && st->lat && !st->done) {
        uint64_t at = B.t0 + ts;
        hist_record(st->lat, rx > at ? rx - at : 0);
        hist_record(B.interval, rx > at ? rx - at : 0);
    }
}

static void on_pub(peer_t *p, const herald_msg_t *m)
{
    deliver(p, m->offset, m->data, m->data_len, m->rx_ns ? m->rx_ns : 1);
}

/* An acknowledged publication's offset: the one every subscriber should
 * see its sequence number with. */
static void on_ack(uint64_t seq, const herald_msg_t *m, peer_t *via)
{
    (void)via;
    if (!m || m->op != HERALD_OP_PUBLISHED || seq >= nseq_cap) return;
    if (!off_of_seq[seq]) off_of_seq[seq] = m->offset;
    else if (off_of_seq[seq] != m->offset) rf.mismatches++;
    if (m->offset > rf.last_offset) rf.last_offset = m->offset;
}

static void on_recovered(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    peer_t *p = herald_client_ud(c);
    struct rsub *r = rs(p);
    herald_pubs_t it;
    herald_msg_t pm;
    uint64_t n = 0;
    int recovered, same_epoch, k;

    (void)arg;
    if (m->op != HERALD_OP_SUBSCRIBED) {
        char why[160];
        snprintf(why, sizeof why, "subscribe with since refused with error %d: %.*s", m->code,
                 (int)m->reason_len, m->reason ? m->reason : "");
        rf.refused++;
        reconnect_failed(p, why);
        herald_close(c, 1000, "bench: subscribe refused");
        return;
    }
    hist_record(rf.recovery, m->rx_ns > r->t_reconnect ? m->rx_ns - r->t_reconnect : 0);
    if (m->offset > r->since) rf.missed += m->offset - r->since;
    recovered = m->has_recovered && m->recovered;
    same_epoch = m->epoch_len == r->epoch_len && !memcmp(m->epoch, r->epoch, r->epoch_len);
    if (!m->has_recovered) rf.bad_replies++;
    if (recovered) rf.recovered_true++;
    else rf.recovered_false++;
    if (recovered && !same_epoch) rf.epoch_mismatches++;
    if (!recovered && !same_epoch) {
        /* A new log: its offsets have nothing to do with the old ones. */
        p->last_off = 0;
        r->first_off = 0;
    }
    if (herald_pubs_init(&it, B.o.enc, m)) rf.bad_replies++;
    while ((k = herald_pubs_next(&it, &pm)) == 1) {
        /* After a failed recovery the reply holds what is kept: the
         * offsets before it are lost for good, not a gap. */
        if (!recovered && n == 0 && pm.offset > p->last_off + 1) {
            r->lost += pm.offset - p->last_off - 1;
            rf.unrecoverable += pm.offset - p->last_off - 1;
            p->last_off = pm.offset - 1;
        }
        deliver(p, pm.offset, pm.data, pm.data_len, 0);
        n++;
    }
    if (k < 0) rf.bad_replies++;
    /* The publications end at the reply's offset; pubs go on after it. */
    if (m->offset > p->last_off) {
        if (recovered) {
            rf.gaps += m->offset - p->last_off;
        } else {
            r->lost += m->offset - p->last_off;
            rf.unrecoverable += m->offset - p->last_off;
        }
        p->last_off = m->offset;
    } else if (m->offset < p->last_off) {
        rf.bad_replies++;
    }
    hist_record(rf.per_reply, n);
    if (recovered) rf.recovered_pubs += n;
    else rf.tail_pubs += n;
    keep_epoch(r, m);
    r->state = R_LIVE;
    p->state = PS_READY;
}

/* ---- the end ---- */

/* Whether the drain is over: every ack in, every subscriber back and caught
 * up with the last acknowledged offset (the driver stops waiting after
 * --drain-timeout). */
static int drained(const step_t *st)
{
    (void)st;
    if (B.outstanding) return 0;
    for (uint32_t i = 0; i < next_cycle; i++)
        if (cycles[i].state != 2) return 0;
    for (uint32_t i = 0; i < B.nsubs; i++) {
        if (subs[i].state == R_RECONNECTING || subs[i].state == R_RECOVERING) return 0;
        if (subs[i].state == R_LIVE && B.peers[i].last_off < rf.last_offset) return 0;
    }
    return 1;
}

/* Totals the figures, then ends the run: exit status 1 with the first
 * failed check, or 0. */
static void step_end(step_t *st)
{
    uint64_t away = 0;

    for (uint32_t i = 0; i < B.nsubs; i++) {
        if (subs[i].state == R_RECONNECTING) rf.pending_connect++;
        if (subs[i].state == R_RECOVERING) rf.pending_reply++;
        const struct rsub *r = &subs[i];
        /* A subscriber that died is held to what it should have had by then. */
        uint64_t end = r->state == R_LIVE ? rf.last_offset : B.peers[i].last_off;
        if (r->state == R_SETUP) continue;
        if (r->state == R_AWAY || r->state == R_RECONNECTING || r->state == R_RECOVERING) away++;
        if (end > r->first_off + r->lost) rf.expected += end - r->first_off - r->lost;
        rf.received += r->received;
        if (r->state == R_LIVE && B.peers[i].last_off < rf.last_offset) rf.behind++;
    }
    st->expected = rf.expected;
    st->received = rf.received;
    st->gaps = rf.gaps;
    st->dups = rf.dups;
    if (away) rf.reconnect_failures += away;    /* never answered within the drain */

    if (rf.gaps || rf.dups || rf.mismatches)
        bench_fail("delivery check failed: %llu gaps, %llu duplicates, %llu publications seen with two offsets",
                   (unsigned long long)rf.gaps, (unsigned long long)rf.dups, (unsigned long long)rf.mismatches);
    else if (rf.recovered_false && !B.o.expect_unrecovered)
        bench_fail("%llu of %llu recovery replies said \"recovered\": false: more was missed than the broker "
                   "keeps (start it with e.g. --ns %s.history_size=100000) or than fits in half of its "
                   "send_queue_max (or pass --expect-unrecovered)",
                   (unsigned long long)rf.recovered_false,
                   (unsigned long long)(rf.recovered_true + rf.recovered_false), B.o.ns);
    else if (B.o.expect_unrecovered && !rf.recovered_false)
        bench_fail("--expect-unrecovered: every one of the %llu recovery replies said \"recovered\": true",
                   (unsigned long long)rf.recovered_true);
    else if (rf.reconnect_failures)
        bench_fail("%llu reconnections did not recover (first: %s; at the end %llu were still connecting and %llu "
                   "waiting for the subscribe reply)", (unsigned long long)rf.reconnect_failures,
                   rf.first_failure[0] ? rf.first_failure : "no subscribe reply before the drain timeout",
                   (unsigned long long)rf.pending_connect, (unsigned long long)rf.pending_reply);
    else if (rf.epoch_mismatches || rf.bad_replies)
        bench_fail("bad recovery replies: %llu recovered with another epoch, %llu malformed or inconsistent",
                   (unsigned long long)rf.epoch_mismatches, (unsigned long long)rf.bad_replies);
    else if (rf.unexpected_closes)
        bench_fail("%llu subscribers were disconnected by the broker during the run", (unsigned long long)rf.unexpected_closes);
    else if (rf.received != rf.expected || rf.behind)
        bench_fail("deliveries: expected %llu, received %llu; %llu subscribers short of offset %llu after the drain",
                   (unsigned long long)rf.expected, (unsigned long long)rf.received, (unsigned long long)rf.behind,
                   (unsigned long long)rf.last_offset);
    else if (B.bad_payload || st->pub_errors)
        bench_fail("%llu unreadable payloads, %llu failed publications", (unsigned long long)B.bad_payload,
                   (unsigned long long)st->pub_errors);
    else
        bench_done();
}

static void progress(FILE *f, const step_t *st)
{
    uint32_t away = 0;
    double el;

    if (B.phase != PH_RUN && B.phase != PH_DRAIN) return;
    el = (double)(uv_hrtime() - st->t_start) / 1e9;
    fprintf(f, "\r\033[K  rate %.0f/s  %5.1fs  acked %llu  delivered %llu ", st->rate, el,
            (unsigned long long)st->acked, (unsigned long long)B.deliveries);
    for (uint32_t i = 0; i < B.nsubs; i++)
        if (subs[i].state >= R_AWAY && subs[i].state <= R_RECOVERING) away++;
    fprintf(f, "  cycle %u/%u  away %u  recovered %llu/%llu  missed %llu  gaps %llu  dups %llu", next_cycle,
            B.o.cycles, away, (unsigned long long)rf.recovered_true,
            (unsigned long long)(rf.recovered_true + rf.recovered_false), (unsigned long long)rf.missed,
            (unsigned long long)rf.gaps, (unsigned long long)rf.dups);
    if (B.phase == PH_DRAIN) fprintf(f, "  (draining)");
}

/* ---- flags ---- */

static void defaults(struct opts *o)
{
    o->duration = 10;
    o->subscribers = 100;
    snprintf(o->ns, sizeof o->ns, "chat");
}

static int check_opts(struct opts *o, uint64_t given, char *why, size_t n)
{
    (void)given;
    if (o->subscribers == 0) snprintf(why, n, "recover needs --subscribers >= 1");
    else if (o->nrates != 1) snprintf(why, n, "recover takes one --rate, not steps");
    else if (o->fraction * o->subscribers + 0.5 < 1)
        snprintf(why, n, "--fraction %g of %u subscribers drops nobody", o->fraction, o->subscribers);
    else if (o->outage >= o->duration / o->cycles)
        snprintf(why, n, "--outage %g must be shorter than --duration / --cycles = %g s", o->outage,
                 o->duration / o->cycles);
    else if (o->rates[0] * o->duration > 1e9)
        snprintf(why, n, "--rate x --duration is over a billion publications");
    else
        return 0;
    return -1;
}

/* ---- the report ---- */

static void human_head(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, "  %u-byte payloads at %.0f/s\n  channel %s: %u subscribers; %u cycles, each dropping %g of them "
               "for %g s", o->size, o->rates[0], rf.channel, B.nsubs, o->cycles, o->fraction, o->outage);
}

static void human_body(FILE *f)
{
    const struct opts *o = &B.o;
    const struct recover_figures *r = &rf;
    const step_t *st = &B.steps[0];
    const hist_t *h = r->recovery, *n = r->per_reply;
    double s = report_step_secs(st);

    fprintf(f, "\npublished %llu, acked %llu (%.0f/s over %.2f s), errors %llu; last offset %llu\n",
            (unsigned long long)st->published, (unsigned long long)st->acked, s > 0 ? st->acked / s : 0, s,
            (unsigned long long)st->pub_errors, (unsigned long long)r->last_offset);
    fprintf(f, "cycles: %u of %u, %llu subscribers dropped, %llu reconnections, %llu failed\n", r->cycles_run,
            o->cycles, (unsigned long long)r->dropped, (unsigned long long)r->reconnections,
            (unsigned long long)r->reconnect_failures);
    fprintf(f, "recovered: true %llu, false %llu%s\n", (unsigned long long)r->recovered_true,
            (unsigned long long)r->recovered_false,
            o->expect_unrecovered ? " (false expected: --expect-unrecovered)" : "");
    fprintf(f, "missed while away: %llu publications; recovered %llu in replies; unrecoverable %llu "
               "(%llu more in the tails of failed recoveries)\n",
            (unsigned long long)r->missed, (unsigned long long)r->recovered_pubs,
            (unsigned long long)r->unrecoverable, (unsigned long long)r->tail_pubs);
    fprintf(f, "checks: gaps %llu, duplicates %llu, sequence/offset mismatches %llu, epoch mismatches %llu, "
               "bad replies %llu\n", (unsigned long long)r->gaps, (unsigned long long)r->dups,
            (unsigned long long)r->mismatches, (unsigned long long)r->epoch_mismatches,
            (unsigned long long)r->bad_replies);
    if (h && h->count)
        fprintf(f, "recovery latency ms (reconnect -> subscribe reply): p50 %.2f  p99 %.2f  max %.2f\n",
                report_ms(hist_percentile(h, 50)), report_ms(hist_percentile(h, 99)), report_ms(h->max));
    if (n && n->count)
        fprintf(f, "publications per recovery reply: mean %.1f  p50 %llu  p99 %llu  max %llu\n",
                n->sum / (double)n->count, (unsigned long long)hist_percentile(n, 50),
                (unsigned long long)hist_percentile(n, 99), (unsigned long long)n->max);
    fprintf(f, "deliveries: expected %llu, received %llu (%llu live, %llu in replies)%s\n",
            (unsigned long long)r->expected, (unsigned long long)r->received, (unsigned long long)r->live,
            (unsigned long long)r->from_replies, r->behind ? "; some subscribers were still behind" : "");
    if (st->lat && st->lat->count)
        fprintf(f, "live delivery latency ms: p50 %.2f  p99 %.2f  max %.2f\n", report_ms(hist_percentile(st->lat, 50)),
                report_ms(hist_percentile(st->lat, 99)), report_ms(st->lat->max));
    fprintf(f, "bench CPU %.0f%%", st->bench_cpu);
    if (st->broker_cpu >= 0) fprintf(f, ", broker CPU %.0f%%", st->broker_cpu);
    fprintf(f, "\n");
}

/* A histogram of counts (not nanoseconds). */
static void json_counts(FILE *f, const char *key, const hist_t *h)
{
    if (!h || !h->count) { fprintf(f, "\"%s\":null", key); return; }
    fprintf(f, "\"%s\":{\"count\":%llu,\"min\":%llu,\"mean\":%.1f,\"p50\":%llu,\"p99\":%llu,\"max\":%llu}", key,
            (unsigned long long)h->count, (unsigned long long)h->min, h->sum / (double)h->count,
            (unsigned long long)hist_percentile(h, 50), (unsigned long long)hist_percentile(h, 99),
            (unsigned long long)h->max);
}

static void json_body(FILE *f)
{
    const struct opts *o = &B.o;
    const struct recover_figures *r = &rf;
    const step_t *st = &B.steps[0];
    double s = report_step_secs(st);

    fprintf(f, ",\"namespace\":\"%s\",\"channel\":\"%s\",\"size\":%u,\"subscribers\":%u,\"fraction\":%g,"
               "\"outage_s\":%g,\"cycles\":%u,\"expect_unrecovered\":%s,\"rate\":%.0f,\"seconds\":%.3f,"
               "\"published\":%llu,\"acked\":%llu,\"publish_errors\":%llu,\"publishes_per_sec\":%.1f,"
               "\"last_offset\":%llu,",
            o->ns, r->channel, o->size, B.nsubs, o->fraction, o->outage, o->cycles,
            o->expect_unrecovered ? "true" : "false", st->rate, s, (unsigned long long)st->published,
            (unsigned long long)st->acked, (unsigned long long)st->pub_errors, s > 0 ? st->acked / s : 0,
            (unsigned long long)r->last_offset);
    fprintf(f, "\"cycles_run\":%u,\"dropped\":%llu,\"reconnections\":%llu,\"reconnect_failures\":%llu,"
               "\"refused\":%llu,\"recovered\":{\"true\":%llu,\"false\":%llu},\"missed\":%llu,"
               "\"recovered_publications\":%llu,\"unrecoverable\":%llu,\"tail_publications\":%llu,"
               "\"gaps\":%llu,\"duplicates\":%llu,\"seq_mismatches\":%llu,\"epoch_mismatches\":%llu,"
               "\"bad_replies\":%llu,\"unexpected_closes\":%llu,\"pending_at_end\":{\"connecting\":%llu,\"subscribing\":%llu},",
            r->cycles_run, (unsigned long long)r->dropped, (unsigned long long)r->reconnections,
            (unsigned long long)r->reconnect_failures, (unsigned long long)r->refused,
            (unsigned long long)r->recovered_true, (unsigned long long)r->recovered_false,
            (unsigned long long)r->missed, (unsigned long long)r->recovered_pubs,
            (unsigned long long)r->unrecoverable, (unsigned long long)r->tail_pubs, (unsigned long long)r->gaps,
            (unsigned long long)r->dups, (unsigned long long)r->mismatches, (unsigned long long)r->epoch_mismatches,
            (unsigned long long)r->bad_replies, (unsigned long long)r->unexpected_closes,
            (unsigned long long)r->pending_connect, (unsigned long long)r->pending_reply);
    report_json_lat(f, "recovery_latency_ms", r->recovery);
    fprintf(f, ",");
    json_counts(f, "publications_per_reply", r->per_reply);
    fprintf(f, ",\"deliveries\":{\"expected\":%llu,\"received\":%llu,\"live\":%llu,\"in_replies\":%llu,"
               "\"subscribers_behind\":%llu},",
            (unsigned long long)r->expected, (unsigned long long)r->received, (unsigned long long)r->live,
            (unsigned long long)r->from_replies, (unsigned long long)r->behind);
    report_json_lat(f, "latency_ms", st->lat);
    fprintf(f, ",");
    report_json_lat(f, "ack_latency_ms", st->ack);
    fprintf(f, ",\"drain_seconds\":%.3f,\"bench_cpu_pct\":%.1f",
            st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
    if (st->broker_cpu >= 0) fprintf(f, ",\"broker_cpu_pct\":%.1f", st->broker_cpu);
}

const struct bench_scenario bench_recover = {
    .name = "recover",
    .summary = "one channel, N subscribers, open-loop publishing; in each cycle a fraction of the subscribers "
               "drops, stays away, and resubscribes with since: every missed publication must come back exactly once",
    .example = "herald-bench recover --url ws://127.0.0.1:8080/ws --subscribers 1000 --fraction 0.2 --rate 2000 "
               "--duration 10 --outage 2 --cycles 3",
    .notes = "\nThe channel's namespace must keep history (the broker's default) and enough of it: each\n"
             "outage misses about --rate x --outage publications, and a subscribe with since recovers\n"
             "only when all of them are still kept. The default history_size is 100, so for big runs\n"
             "start the broker with e.g.\n"
             "  herald --ns chat.history_size=100000\n"
             "A recovery reply also has to fit in half of the broker's send_queue_max (4m by default);\n"
             "above that the broker sends the newest part with \"recovered\": false.\n\n"
             "Every subscriber remembers the epoch and the last offset it saw. Checked per subscriber:\n"
             "the reply says \"recovered\": true with the same epoch; its publications and the live pubs\n"
             "after it carry every offset from the last one seen to the last one published exactly\n"
             "once; each payload's sequence number has one offset. Recovery latency runs from the start\n"
             "of the new connection to reading the subscribe reply. The run fails (exit 1) on any gap,\n"
             "duplicate or mismatch, a reply with \"recovered\": false (unless --expect-unrecovered), a\n"
             "reconnection that does not recover, a subscriber the broker disconnects, or deliveries\n"
             "short of the expected count after --drain-timeout.\n",
    .flags = BF_COMMON | BF(SIZE) | BF(SUBSCRIBERS) | BF(RATE) | BF(DRAIN_TIMEOUT) | BF(NAMESPACE) | BF(FRACTION) |
             BF(OUTAGE) | BF(CYCLES) | BF(EXPECT_UNRECOVERED),
    .defaults = defaults,
    .check_opts = check_opts,
    .run = bench_run,
    .init = init,
    .free = fini,
    .on_subscribed = on_subscribed,
    .on_pub = on_pub,
    .start_step = start_step,
    .drained = drained,
    .step_end = step_end,
    .progress = progress,
    .plan = plan,
    .time_bound = time_bound,
    .on_open = on_open,
    .on_ack = on_ack,
    .on_close = on_close,
    .tick = tick,
    .report_head = human_head,
    .report_body = human_body,
    .report_json = json_body,
};
