/* bench/scores.c - the scores scenario: score updates fanned out to the
 * viewers of one state channel, and whether every viewer ends at the score.
 *
 * Owns: the updates (open loop, through REST), each viewer's view of the
 * score, and the per-step figures (step_t) and run-wide ones (B.sf) of this
 * scenario. Does not own: connections and phases (staterun.c), flags
 * (main.c), output (report.c).
 *
 * DESIGN: the channel is NS:bench-RUNID (namespace `scores`, state = on), new
 * for each run. Update i of a step is due at t_start + i/rate and goes out as
 *   POST /api/channels/NS:bench-RUNID/state
 *   {"ops":[{"op":"incr","key":"score:home","by":1},{"op":"set","key":"t","value":T}]}
 * with T its scheduled time (ns since the bench started), so every delta
 * carries the time it was due and a viewer's latency is its read time minus
 * T, without matching deltas to requests. With --size, a third op sets the
 * key "pad" to a string of that many bytes, for bigger deltas. The scoreboard adapter
 * (POST /api/scoreboards/{game}/score) makes the same incr but cannot carry
 * T; the client library has no way to send a `state` op over WebSocket.
 *
 * Views. A viewer's view is its offset (in B.peers[v].last_off) and its
 * score. Deltas carry absolute values, so a delta sets the score it names.
 * When the broker conflates a slow viewer it sends a snapshot instead of the
 * deltas it skipped; the client library passes on the snapshot's offset but
 * not its "state", so the bench sets the view from what it knows: the bench
 * is the channel's only writer and every update adds exactly 1, hence the
 * score at offset N is score0 + (N - offset0). The same formula checks every
 * delta's value (a mismatch is a broker bug). After each step the bench
 * reads the channel with GET .../state and compares: a viewer has converged
 * when it is at the broker's offset with the broker's score; one whose last
 * message was a snapshot is counted apart (unverifiable), since its score
 * was inferred rather than read. */
#include "staterun.h"
#include "loop.h"
#include "val.h"

#include <stdlib.h>
#include <string.h>

struct view {
    int64_t score;
    uint8_t snap;               /* the last message was a snapshot: the score is inferred */
};

static struct view *views;
static char path[160];          /* /api/channels/CHANNEL/state */
static char *upd;               /* an update's body, rewritten for each */
static size_t upd_cap;
static uint64_t max_off;        /* the highest offset an update's answer named */
static uint64_t outstanding;    /* updates sent and not answered */
static int checked_fail;        /* a step's checks found something wrong */
static step_t *checking;
static unsigned rereads;        /* of the current check */

/* A GET may show the state a little behind what the broker has already
 * acknowledged and delivered; the check reads again, this often, before it
 * judges the viewers against an older state. */
#define REREAD_MAX 40
#define REREAD_MS 50

static int init(void)
{
    snprintf(B.sf.channel, sizeof B.sf.channel, "%s:bench-%s", B.o.ns, B.run_id);
    snprintf(path, sizeof path, "/api/channels/%s/state", B.sf.channel);
    views = calloc(B.o.viewers ? B.o.viewers : 1, sizeof *views);
    upd_cap = 256 + B.o.size;
    upd = malloc(upd_cap);
    return views && upd ? 0 : -1;
}

static void fini(void)
{
    free(views);
    free(upd);
}

static int64_t score_at(uint64_t off)
{
    return B.sf.score0 + (int64_t)(off - B.sf.offset0);
}

/* Reads "offset" and the value of score:home (absent: 0) from a GET .../state page. */
static int read_state(const char *body, size_t len, uint64_t *off, int64_t *score)
{
    val_t v, o, items, it, k, val;
    val_it_t w;
    int64_t n;
    int r;

    val_init(&v, HERALD_JSON, body, len);
    if (val_map_get(&v, "offset", &o) || val_int(&o, &n) || n < 0 || val_map_get(&v, "items", &items) ||
        val_arr_begin(&items, &w))
        return -1;
    *off = (uint64_t)n;
    *score = 0;
    while ((r = val_arr_next(&w, &it)) == 1)
        if (!val_map_get(&it, "key", &k) && val_str_is(&k, "score:home")) {
            if (val_map_get(&it, "value", &val) || val_int(&val, score)) return -1;
        }
    return r;
}

/* Reads the channel's scores (GET .../state); @cb gets the answer. */
static void get_scores(http_done_cb cb)
{
    char target[200];
    int r;

    snprintf(target, sizeof target, "%s?prefix=score:&limit=1000", path);
    if ((r = srun_request("GET", target, NULL, 0, cb, NULL)))
        bench_fail("cannot send GET %s: %s", target, herald_strerror(r));
}

static void on_initial(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    (void)arg; (void)rx;
    if (status == 404 && srun_rest_code(body, len) == 116) {
        bench_fail("namespace %s is not a state namespace: start the broker with --ns %s.state=on", B.o.ns, B.o.ns);
        return;
    }
    if (status != 200 || read_state(body, len, &B.sf.offset0, &B.sf.score0)) {
        bench_fail("GET %s?prefix=score: answered %d: %.*s", path, status, (int)(len > 200 ? 200 : len),
                   body ? body : "");
        return;
    }
    max_off = B.sf.offset0;
    srun_prepared();
}

static void prepare(void)
{
    get_scores(on_initial);
}

static void on_subscribed(uint32_t v, const herald_msg_t *m)
{
    /* Nothing is written while the viewers subscribe, so every reply should
     * be at offset0; the view follows the reply's offset either way. */
    if (m->offset != B.sf.offset0) B.sf.bad_replies++;
    views[v].score = score_at(m->offset);
}

/* ---- updates ---- */

static void on_update(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    uint64_t ts = B.t0 + (uint64_t)(uintptr_t)arg;
    step_t *st = srun_step_of(ts);
    val_t v, o;
    int64_t off;

    outstanding--;
    if (status != 200) {
        st->pub_errors++;
        srun_rest_error("POST .../state", status, body, len);
        return;
    }
    val_init(&v, HERALD_JSON, body, len);
    if (!val_map_get(&v, "offset", &o) && !val_int(&o, &off) && (uint64_t)off > max_off) max_off = (uint64_t)off;
    st->acked++;
    st->expected += srun_viewers_live();
    if (rx > st->t_last_ack) st->t_last_ack = rx;
    hist_record(st->ack, rx > ts ? rx - ts : 0);
}

static void send_update(step_t *st, uint64_t ts)
{
    int n, r;

    n = snprintf(upd, upd_cap, "{\"ops\":[{\"op\":\"incr\",\"key\":\"score:home\",\"by\":1},"
                 "{\"op\":\"set\",\"key\":\"t\",\"value\":%llu}", (unsigned long long)(ts - B.t0));
    if (B.o.size) {
        /* --size: a bigger change, e.g. a play-by-play line, in the same delta. */
        n += snprintf(upd + n, upd_cap - (size_t)n, ",{\"op\":\"set\",\"key\":\"pad\",\"value\":\"");
        memset(upd + n, 'x', B.o.size);
        n += (int)B.o.size;
        n += snprintf(upd + n, upd_cap - (size_t)n, "\"}");
    }
    n += snprintf(upd + n, upd_cap - (size_t)n, "]}");
    st->published++;
    if ((r = srun_request("POST", path, upd, (size_t)n, on_update, (void *)(uintptr_t)(ts - B.t0)))) {
        st->pub_errors++;
        srun_rest_error("POST .../state", 0, herald_strerror(r), strlen(herald_strerror(r)));
        return;
    }
    outstanding++;
}

static void start_step(step_t *st)
{
    (void)st;
    srun_scan_reset();
}

/* ---- viewers ---- */

static void on_pub(uint32_t v, const herald_msg_t *m)
{
    peer_t *p = &B.peers[v];
    struct view *w = &views[v];
    step_t *cur = &B.steps[B.cur], *st;
    val_t d, changes, c, k, val;
    val_it_t it;
    int64_t score = 0, t = 0;
    int has_score = 0, has_t = 0, r;

    if (m->offset <= p->last_off) {
        B.sf.dups++;
        return;
    }
    if (m->offset != p->last_off + 1) B.sf.gaps += m->offset - p->last_off - 1;
    p->last_off = m->offset;
    w->snap = 0;
    val_init(&d, B.o.enc, m->data, m->data_len);
    r = val_map_get(&d, "changes", &changes) ? -1 : val_arr_begin(&changes, &it);
    while (r == 0 && (r = val_arr_next(&it, &c)) == 1) {
        if (val_map_get(&c, "key", &k)) { r = -1; break; }
        if (val_str_is(&k, "score:home")) {
            if (val_map_get(&c, "value", &val) || val_int(&val, &score)) { r = -1; break; }
            has_score = 1;
        } else if (val_str_is(&k, "t")) {
            if (val_map_get(&c, "value", &val) || val_int(&val, &t) || t < 0) { r = -1; break; }
            has_t = 1;
        }
        r = 0;
    }
    if (r < 0 || !has_score || !has_t) {
        cur->unreadable++;
        w->score = score_at(m->offset);
        return;
    }
    if (score != score_at(m->offset)) cur->mismatches++;
    w->score = score;
    st = srun_step_of(B.t0 + (uint64_t)t);
    st->recv_all++;
    if (st->done) {
        /* After the step's checks: not counted as received, but reported. */
        uint64_t at = B.t0 + (uint64_t)t;
        st->late++;
        if (m->rx_ns > at && m->rx_ns - at > st->late_max) st->late_max = m->rx_ns - at;
        return;
    }
    st->received++;
    if (m->rx_ns > st->t_last_rx) st->t_last_rx = m->rx_ns;
    hist_record(st->lat, m->rx_ns > B.t0 + (uint64_t)t ? m->rx_ns - B.t0 - (uint64_t)t : 0);
    hist_record(B.interval, m->rx_ns > B.t0 + (uint64_t)t ? m->rx_ns - B.t0 - (uint64_t)t : 0);
}

static void on_snapshot(uint32_t v, const herald_msg_t *m)
{
    views[v].score = score_at(m->offset);
    views[v].snap = 1;
}

/* ---- the end of a step ---- */

static int drained(const step_t *st)
{
    (void)st;
    return outstanding == 0 && !srun_scan_behind(max_off);
}

static void read_final(void);

static void on_final(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    step_t *st = checking;
    uint64_t off;
    int64_t score;
    double p99;

    (void)arg; (void)rx;
    if (B.phase != PH_HOLD || !st) return;
    if (status != 200 || read_state(body, len, &off, &score)) {
        bench_fail("GET %s?prefix=score: after step %d answered %d: %.*s", path, B.cur + 1, status,
                   (int)(len > 200 ? 200 : len), body ? body : "");
        return;
    }
    if (off < max_off && rereads < REREAD_MAX) {
        B.sf.stale_reads++;
        if (max_off - off > B.sf.stale_max) B.sf.stale_max = max_off - off;
        rereads++;
        srun_after(REREAD_MS, read_final);
        return;
    }
    checking = NULL;
    st->broker_score = score;
    st->broker_offset = off;
    for (uint32_t v = 0; v < B.npeers; v++) {
        if (!srun_live(v)) continue;
        if (B.peers[v].last_off != off || views[v].score != score) st->diverged++;
        else if (views[v].snap) st->unverifiable++;
        else st->converged++;
    }
    p99 = (double)hist_percentile(st->lat, 99) / 1e6;
    st->sustained = st->acked > 0 && st->acked >= st->published - st->published / 1000 &&
                    (double)st->received >= 0.999 * (double)st->expected && p99 <= B.o.p99_max_ms &&
                    st->diverged == 0 && st->viewers_lost == 0 && st->mismatches == 0;
    if (st->diverged || st->mismatches || st->unreadable || B.sf.gaps || B.sf.dups || score != score_at(off))
        checked_fail = 1;
    if (B.cur + 1 == B.nsteps && checked_fail && !B.exit_code) {
        B.exit_code = 1;
        snprintf(B.fatal, sizeof B.fatal, "the viewers did not all converge on the broker's score, or a delta "
                 "was lost, repeated or wrong (see diverged, gaps, duplicates, mismatches)");
    }
    srun_checked(st);
}

static void read_final(void)
{
    get_scores(on_final);
}

static void check(step_t *st)
{
    checking = st;
    rereads = 0;
    read_final();
}

static void progress(FILE *f, const step_t *st)
{
    fprintf(f, "rate %.0f/s  sent %llu  acked %llu  deltas %llu  snapshots %llu", st->rate,
            (unsigned long long)st->published, (unsigned long long)st->acked, (unsigned long long)st->received,
            (unsigned long long)st->snapshots);
}

const struct srun_scenario scores_scenario = {
    init, prepare, on_subscribed, on_pub, on_snapshot, start_step, send_update, drained, check, progress, fini,
};
