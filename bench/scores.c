/* bench/scores.c - the scores scenario: score updates fanned out to the
 * viewers of one state channel, and whether every viewer ends at the score.
 *
 * Owns: its entry (struct bench_scenario, scenario.h), the updates (open
 * loop, through REST), each viewer's view of the score, the per-step figures
 * (step_t) and run-wide ones (B.sf) of this scenario, and its part of the
 * report. Does not own: connections and phases (staterun.c, its driver),
 * flags in general (main.c), the report's frame (report.c).
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
#include "report.h"
#include "scenario.h"
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

static void on_subscribed(peer_t *p, const herald_msg_t *m)
{
    /* Nothing is written while the viewers subscribe, so every reply should
     * be at offset0; the view follows the reply's offset either way. */
    if (m->offset != B.sf.offset0) B.sf.bad_replies++;
    views[p - B.peers].score = score_at(m->offset);
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

static void on_pub(peer_t *p, const herald_msg_t *m)
{
    struct view *w = &views[p - B.peers];
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

static void on_snapshot(peer_t *p, const herald_msg_t *m)
{
    struct view *w = &views[p - B.peers];

    w->score = score_at(m->offset);
    w->snap = 1;
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

static void step_end(step_t *st)
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

/* ---- flags ---- */

static void defaults(struct opts *o)
{
    o->size = 0;
    o->rates[0] = 100;
    o->viewers = 10000;
    snprintf(o->ns, sizeof o->ns, "scores");
}

/* The updates go over --publishers HTTP connections (--clients for seats). */
static int check_opts(struct opts *o, uint64_t given, char *why, size_t n)
{
    if (o->viewers == 0) {
        snprintf(why, n, "scores needs --viewers >= 1");
        return -1;
    }
    o->clients = given & BF(PUBLISHERS) ? o->publishers : 4;
    return srun_check_rates(o, why, n);
}

/* ---- the report ---- */

static void human_head(FILE *f)
{
    fprintf(f, "\n  channel %s: %u viewers; updates: POST /api/channels/{channel}/state over %u HTTP connections",
            B.sf.channel, B.nsubs, B.o.clients);
}

static void human_body(FILE *f)
{
    const struct state_figures *sf = &B.sf;
    const step_t *last = &B.steps[B.nsteps - 1];
    int best = report_best_step();
    char a[32], b[32], c[32];

    fprintf(f, "\n%7s %8s %8s %8s %11s %11s %8s %7s %8s %8s %8s %8s %8s %8s %6s %6s  %s\n", "rate/s", "sent",
            "acked", "upd/s", "expected", "received", "deliv/s", "snaps", "p50ms", "p90ms", "p99ms", "p99.9ms",
            "maxms", "ackp99", "bench%", "broker%", "ok");
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        fprintf(f, "%7.0f %8llu %8llu %8.1f %11llu %11llu %8s %7llu", st->rate, (unsigned long long)st->published,
                (unsigned long long)st->acked, srun_answers_per_sec(st, st->acked), (unsigned long long)st->expected,
                (unsigned long long)st->received, report_si(report_dps(st), a, sizeof a),
                (unsigned long long)st->snapshots);
        report_lat_row(f, st->lat);
        fprintf(f, " %8.2f %6.0f %6s  %s\n", report_ms(hist_percentile(st->ack, 99)), st->bench_cpu,
                st->broker_cpu >= 0 ? (snprintf(b, sizeof b, "%.0f", st->broker_cpu), b) : "-",
                st->sustained ? "yes" : "no");
        fprintf(f, "        after the step: broker score %lld at offset %llu; snapshots replaced %llu deltas; viewers: ",
                (long long)st->broker_score, (unsigned long long)st->broker_offset, (unsigned long long)st->skipped);
        srun_viewers(f, st);
        fprintf(f, "%s\n", st->mismatches || st->unreadable ? "; DELTAS WITH WRONG OR UNREADABLE VALUES" : "");
    }
    fprintf(f, "(upd/s: acked updates per second; expected: acked updates x live viewers; received: deltas;\n"
               " snaps: snapshots sent to conflated viewers, which replace the deltas they skipped;\n"
               " unverifiable: at the broker's offset through a snapshot, whose state the bench cannot read)\n");
    if (best >= 0)
        fprintf(f, "\nmax sustained rate: %s updates/s = %s deliveries/s to %u viewers\n",
                report_si(B.steps[best].rate, a, sizeof a), report_si(report_dps(&B.steps[best]), c, sizeof c), B.nsubs);
    else
        fprintf(f, "\nmax sustained rate: none of the rates met the criteria (see herald-bench scores --help)\n");
    fprintf(f, "at the end: %u of %u viewers converged on score %lld (%u more at the offset through a snapshot, "
               "%u diverged); gaps %llu, duplicates %llu\n", last->converged, B.nsubs, (long long)last->broker_score,
            last->unverifiable, last->diverged, (unsigned long long)sf->gaps, (unsigned long long)sf->dups);
}

static void json_body(FILE *f)
{
    const struct opts *o = &B.o;
    const struct state_figures *sf = &B.sf;
    const step_t *last = &B.steps[B.nsteps - 1];

    fprintf(f, ",\"namespace\":\"%s\",\"channel\":\"%s\",\"viewers\":%u,\"publishers\":%u,\"offset0\":%llu,"
               "\"score0\":%lld,\"steps\":[", o->ns, sf->channel, B.nsubs, o->clients,
            (unsigned long long)sf->offset0, (long long)sf->score0);
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        fprintf(f, "%s{\"rate\":%.0f,\"seconds\":%.3f,\"updates_sent\":%llu,\"updates_acked\":%llu,"
                   "\"update_errors\":%llu,\"updates_per_sec\":%.1f,\"expected\":%llu,\"received\":%llu,"
                   "\"delivery_ratio\":%.6f,\"deliveries_per_sec\":%.1f,\"mismatches\":%llu,\"late\":%llu,"
                   "\"broker_score\":%lld,",
                i ? "," : "", st->rate, report_step_secs(st), (unsigned long long)st->published,
                (unsigned long long)st->acked, (unsigned long long)st->pub_errors, srun_answers_per_sec(st, st->acked),
                (unsigned long long)st->expected, (unsigned long long)st->received,
                st->expected ? (double)st->received / (double)st->expected : 0, report_dps(st),
                (unsigned long long)st->mismatches, (unsigned long long)st->late, (long long)st->broker_score);
        srun_json_step(f, st);
        report_json_step_end(f, "latency_ms", st);
    }
    fprintf(f, "]");
    report_json_max_sustained(f, "max_sustained_rate", "max_sustained_deliveries_per_sec", report_dps);
    fprintf(f, ",\"p99_max_ms\":%g,\"gaps\":%llu,\"duplicates\":%llu,\"bad_replies\":%llu,\"stale_reads\":%llu,"
               "\"stale_max\":%llu,\"final\":{\"broker_score\":%lld,\"broker_offset\":%llu,\"viewers\":%u,\"converged\":%u,"
               "\"unverifiable\":%u,\"diverged\":%u}", o->p99_max_ms, (unsigned long long)sf->gaps,
            (unsigned long long)sf->dups, (unsigned long long)sf->bad_replies, (unsigned long long)sf->stale_reads,
            (unsigned long long)sf->stale_max, (long long)last->broker_score,
            (unsigned long long)last->broker_offset, B.nsubs, last->converged, last->unverifiable, last->diverged);
}

static void json_errors(FILE *f)
{
    srun_json_errors(f, "updates");
}

const struct bench_scenario bench_scores = {
    .name = "scores",
    .summary = "one state channel (a scoreboard), N viewers, open-loop score updates over REST at a target "
               "rate; delivery latency, snapshots (conflation), and whether every viewer ends at the broker's score",
    .example = "herald-bench scores --url ws://127.0.0.1:8080/ws --viewers 10000 --rate 20,40,80 --publishers 32 "
               "--p99-max 1000",
    .notes = "\nThe namespace needs state on, e.g.\n"
             "  herald --ns scores.state=on\n"
             "Update i of a step is due at start + i/rate and goes out as POST /api/channels/CH/state\n"
             "with {\"op\":\"incr\",\"key\":\"score:home\"} and {\"op\":\"set\",\"key\":\"t\"} = its scheduled\n"
             "time; a viewer's latency is its read time minus t. A snapshot (a conflated viewer catching\n"
             "up) resets the viewer's view. After each step GET /api/channels/CH/state gives the broker's\n"
             "score; a viewer converged when it is at that offset with that score. A step is sustained\n"
             "when >= 99.9% of the updates were acked, >= 99.9% of acked updates x viewers arrived as\n"
             "deltas, p99 <= --p99-max, and every viewer converged. The run fails (exit 1) if a viewer\n"
             "does not converge, or a delta is lost, repeated or carries a wrong score. --encoding is\n"
             "the viewers'; REST bodies are JSON.\n",
    .flags = BF_COMMON | BF(SVG) | BF(SIZE) | BF(RATE) | BF(PUBLISHERS) | BF(P99MAX) | BF(DRAIN_TIMEOUT) |
             BF(NAMESPACE) | BF(VIEWERS),
    .defaults = defaults,
    .check_opts = check_opts,
    .run = srun,
    .init = init,
    .free = fini,
    .on_subscribed = on_subscribed,
    .on_pub = on_pub,
    .start_step = start_step,
    .drained = drained,
    .step_end = step_end,
    .progress = progress,
    .prepare = prepare,
    .on_snapshot = on_snapshot,
    .send = send_update,
    .report_head = human_head,
    .report_body = human_body,
    .report_tail = srun_report_tail,
    .report_json = json_body,
    .report_json_errors = json_errors,
    .chart_rate = "target updates/s",
};
