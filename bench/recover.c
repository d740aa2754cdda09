/* bench/recover.c - the recover scenario: subscribers drop, publishing goes
 * on, they come back with `since` and must get every missed publication
 * exactly once.
 *
 * Owns: the disconnect/reconnect cycles, each subscriber's recovery state
 * (the epoch and offset it resumes from, what it lost for good, what it
 * received), the checks on recovery replies and on every delivery, and the
 * figures in B.rf. Does not own: connections and publishing in general
 * (run.c), output (report.c), flags (main.c).
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
#include "bench.h"
#include "loop.h"

#include <stdlib.h>
#include <string.h>

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

#define RF B.rf

static struct rsub *rs(const peer_t *p) { return &subs[p - B.peers]; }

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

int rec_init(void)
{
    subs = calloc(B.nsubs ? B.nsubs : 1, sizeof *subs);
    cycles = calloc(B.o.cycles, sizeof *cycles);
    picked = malloc(((size_t)B.nsubs * B.o.cycles + 1) * sizeof *picked);
    pool = malloc((B.nsubs + 1) * sizeof *pool);
    RF.recovery = hist_new();
    RF.per_reply = hist_new();
    rng = ((uint64_t)uv_hrtime() << 1) | 1;
    chan = bench_chan(0, &chan_len);
    snprintf(RF.channel, sizeof RF.channel, "%s", chan);
    return subs && cycles && picked && pool && RF.recovery && RF.per_reply ? 0 : -1;
}

void rec_free(void)
{
    free(subs);
    free(cycles);
    free(picked);
    free(pool);
    free(off_of_seq);
    hist_free(RF.recovery);
    hist_free(RF.per_reply);
    RF.recovery = RF.per_reply = NULL;
}

static void keep_epoch(struct rsub *r, const herald_msg_t *m)
{
    size_t n = m->epoch_len < sizeof r->epoch ? m->epoch_len : sizeof r->epoch - 1;

    memcpy(r->epoch, m->epoch ? m->epoch : "", n);
    r->epoch_len = (uint8_t)n;
}

void rec_on_setup_subscribed(peer_t *p, const herald_msg_t *m)
{
    struct rsub *r = rs(p);

    r->first_off = m->offset;
    r->state = R_LIVE;
    keep_epoch(r, m);
}

/* ---- the schedule ---- */

void rec_start(step_t *st)
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
        RF.dropped++;
        herald_client_abort(p->c);      /* on_close follows: rec_on_close() */
    }
    cy->state = 1;
    RF.cycles_run++;
}

static void on_recovered(herald_client_t *c, const herald_msg_t *m, void *arg);

static void reconnect_failed(peer_t *p, const char *why)
{
    struct rsub *r = rs(p);

    r->state = R_DEAD;
    RF.reconnect_failures++;
    if (!RF.first_failure[0]) snprintf(RF.first_failure, sizeof RF.first_failure, "%s", why);
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
        RF.reconnections++;
        if ((err = bench_reconnect(p))) reconnect_failed(p, herald_strerror(err));
    }
    cy->state = 2;
}

void rec_tick(uint64_t now)
{
    if (B.phase != PH_RUN && B.phase != PH_DRAIN) return;
    for (uint32_t i = 0; i < next_cycle; i++)
        if (cycles[i].state == 1 && now >= cycles[i].up_at) bring_back(&cycles[i]);
    if (next_cycle < B.o.cycles && now >= cycles[next_cycle].down_at && B.phase == PH_RUN)
        drop(&cycles[next_cycle++]);
}

/* ---- connections ---- */

int rec_on_open(peer_t *p)
{
    struct rsub *r = rs(p);
    int err;

    if (r->state != R_RECONNECTING) return 0;
    r->state = R_RECOVERING;
    r->since = p->last_off;
    err = herald_subscribe_since(p->c, chan, chan_len, r->epoch, r->epoch_len, p->last_off, on_recovered, NULL, NULL);
    if (err) {
        reconnect_failed(p, herald_strerror(err));
        herald_close(p->c, 1000, "bench: subscribe failed");
    }
    return 1;
}

int rec_on_close(peer_t *p, const herald_close_info_t *info)
{
    struct rsub *r = rs(p);
    char why[160];

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
        RF.unexpected_closes++;
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
        RF.dups++;
        return;
    }
    if (off > p->last_off + 1) RF.gaps += off - p->last_off - 1;
    p->last_off = off;
    r->received++;
    if (rx) RF.live++;
    else RF.from_replies++;
    if (bench_payload_read(data, len, &ts, &seq) || seq >= nseq_cap) {
        B.bad_payload++;
        return;
    }
    if (!off_of_seq[seq]) off_of_seq[seq] = off;
    else if (off_of_seq[seq] != off) RF.mismatches++;
    if (rx && st->lat && !st->done) {
        uint64_t at = B.t0 + ts;
        hist_record(st->lat, rx > at ? rx - at : 0);
        hist_record(B.interval, rx > at ? rx - at : 0);
    }
}

void rec_on_pub(peer_t *p, const herald_msg_t *m)
{
    deliver(p, m->offset, m->data, m->data_len, m->rx_ns ? m->rx_ns : 1);
}

void rec_on_ack(uint64_t seq, const herald_msg_t *m)
{
    if (seq >= nseq_cap) return;
    if (!off_of_seq[seq]) off_of_seq[seq] = m->offset;
    else if (off_of_seq[seq] != m->offset) RF.mismatches++;
    if (m->offset > RF.last_offset) RF.last_offset = m->offset;
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
        RF.refused++;
        reconnect_failed(p, why);
        herald_close(c, 1000, "bench: subscribe refused");
        return;
    }
    hist_record(RF.recovery, m->rx_ns > r->t_reconnect ? m->rx_ns - r->t_reconnect : 0);
    if (m->offset > r->since) RF.missed += m->offset - r->since;
    recovered = m->has_recovered && m->recovered;
    same_epoch = m->epoch_len == r->epoch_len && !memcmp(m->epoch, r->epoch, r->epoch_len);
    if (!m->has_recovered) RF.bad_replies++;
    if (recovered) RF.recovered_true++;
    else RF.recovered_false++;
    if (recovered && !same_epoch) RF.epoch_mismatches++;
    if (!recovered && !same_epoch) {
        /* A new log: its offsets have nothing to do with the old ones. */
        p->last_off = 0;
        r->first_off = 0;
    }
    if (herald_pubs_init(&it, B.o.enc, m)) RF.bad_replies++;
    while ((k = herald_pubs_next(&it, &pm)) == 1) {
        /* After a failed recovery the reply holds what is kept: the
         * offsets before it are lost for good, not a gap. */
        if (!recovered && n == 0 && pm.offset > p->last_off + 1) {
            r->lost += pm.offset - p->last_off - 1;
            RF.unrecoverable += pm.offset - p->last_off - 1;
            p->last_off = pm.offset - 1;
        }
        deliver(p, pm.offset, pm.data, pm.data_len, 0);
        n++;
    }
    if (k < 0) RF.bad_replies++;
    /* The publications end at the reply's offset; pubs go on after it. */
    if (m->offset > p->last_off) {
        if (recovered) {
            RF.gaps += m->offset - p->last_off;
        } else {
            r->lost += m->offset - p->last_off;
            RF.unrecoverable += m->offset - p->last_off;
        }
        p->last_off = m->offset;
    } else if (m->offset < p->last_off) {
        RF.bad_replies++;
    }
    hist_record(RF.per_reply, n);
    if (recovered) RF.recovered_pubs += n;
    else RF.tail_pubs += n;
    keep_epoch(r, m);
    r->state = R_LIVE;
    p->state = PS_READY;
}

/* ---- the end ---- */

/* Whether the drain is over: every ack in, every subscriber back and caught
 * up with the last acknowledged offset, or --drain-timeout passed. */

int rec_drained(const step_t *st, uint64_t now)
{
    if (now - st->t_end >= (uint64_t)(B.o.drain_timeout * 1e9)) return 1;
    if (B.outstanding) return 0;
    for (uint32_t i = 0; i < next_cycle; i++)
        if (cycles[i].state != 2) return 0;
    for (uint32_t i = 0; i < B.nsubs; i++) {
        if (subs[i].state == R_RECONNECTING || subs[i].state == R_RECOVERING) return 0;
        if (subs[i].state == R_LIVE && B.peers[i].last_off < RF.last_offset) return 0;
    }
    return 1;
}

/* Totals the figures, then ends the run: exit status 1 with the first
 * failed check, or 0. */
void rec_finish(step_t *st)
{
    uint64_t away = 0;

    for (uint32_t i = 0; i < B.nsubs; i++) {
        if (subs[i].state == R_RECONNECTING) RF.pending_connect++;
        if (subs[i].state == R_RECOVERING) RF.pending_reply++;
        const struct rsub *r = &subs[i];
        /* A subscriber that died is held to what it should have had by then. */
        uint64_t end = r->state == R_LIVE ? RF.last_offset : B.peers[i].last_off;
        if (r->state == R_SETUP) continue;
        if (r->state == R_AWAY || r->state == R_RECONNECTING || r->state == R_RECOVERING) away++;
        if (end > r->first_off + r->lost) RF.expected += end - r->first_off - r->lost;
        RF.received += r->received;
        if (r->state == R_LIVE && B.peers[i].last_off < RF.last_offset) RF.behind++;
    }
    st->expected = RF.expected;
    st->received = RF.received;
    st->gaps = RF.gaps;
    st->dups = RF.dups;
    if (away) RF.reconnect_failures += away;    /* never answered within the drain */

    if (RF.gaps || RF.dups || RF.mismatches)
        bench_fail("delivery check failed: %llu gaps, %llu duplicates, %llu publications seen with two offsets",
                   (unsigned long long)RF.gaps, (unsigned long long)RF.dups, (unsigned long long)RF.mismatches);
    else if (RF.recovered_false && !B.o.expect_unrecovered)
        bench_fail("%llu of %llu recovery replies said \"recovered\": false: more was missed than the broker "
                   "keeps (start it with e.g. --ns %s.history_size=100000) or than fits in half of its "
                   "send_queue_max (or pass --expect-unrecovered)",
                   (unsigned long long)RF.recovered_false,
                   (unsigned long long)(RF.recovered_true + RF.recovered_false), B.o.ns);
    else if (B.o.expect_unrecovered && !RF.recovered_false)
        bench_fail("--expect-unrecovered: every one of the %llu recovery replies said \"recovered\": true",
                   (unsigned long long)RF.recovered_true);
    else if (RF.reconnect_failures)
        bench_fail("%llu reconnections did not recover (first: %s; at the end %llu were still connecting and %llu "
                   "waiting for the subscribe reply)", (unsigned long long)RF.reconnect_failures,
                   RF.first_failure[0] ? RF.first_failure : "no subscribe reply before the drain timeout",
                   (unsigned long long)RF.pending_connect, (unsigned long long)RF.pending_reply);
    else if (RF.epoch_mismatches || RF.bad_replies)
        bench_fail("bad recovery replies: %llu recovered with another epoch, %llu malformed or inconsistent",
                   (unsigned long long)RF.epoch_mismatches, (unsigned long long)RF.bad_replies);
    else if (RF.unexpected_closes)
        bench_fail("%llu subscribers were disconnected by the broker during the run", (unsigned long long)RF.unexpected_closes);
    else if (RF.received != RF.expected || RF.behind)
        bench_fail("deliveries: expected %llu, received %llu; %llu subscribers short of offset %llu after the drain",
                   (unsigned long long)RF.expected, (unsigned long long)RF.received, (unsigned long long)RF.behind,
                   (unsigned long long)RF.last_offset);
    else if (B.bad_payload || st->pub_errors)
        bench_fail("%llu unreadable payloads, %llu failed publications", (unsigned long long)B.bad_payload,
                   (unsigned long long)st->pub_errors);
    else
        bench_done();
}

void rec_progress(FILE *f)
{
    uint32_t away = 0;

    for (uint32_t i = 0; i < B.nsubs; i++)
        if (subs[i].state >= R_AWAY && subs[i].state <= R_RECOVERING) away++;
    fprintf(f, "  cycle %u/%u  away %u  recovered %llu/%llu  missed %llu  gaps %llu  dups %llu", next_cycle,
            B.o.cycles, away, (unsigned long long)RF.recovered_true,
            (unsigned long long)(RF.recovered_true + RF.recovered_false), (unsigned long long)RF.missed,
            (unsigned long long)RF.gaps, (unsigned long long)RF.dups);
}
