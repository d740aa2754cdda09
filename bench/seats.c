/* bench/seats.c - the seats scenario: seat holds per second under contention,
 * and whether the seat map stays consistent.
 *
 * Owns: its entry (struct bench_scenario, scenario.h), the seat map the
 * bench defines, the holds and releases (REST), each viewer's view of the
 * seats, the checks of the map after each step, this scenario's figures in
 * step_t and B.sf, and its part of the report. Does not own: connections
 * and phases (staterun.c, its driver), flags in general (main.c), the
 * report's frame (report.c).
 *
 * DESIGN: the event is bench-RUNID, its map the state channel
 * seats:bench-RUNID, defined with PUT /api/events/{event}/seats (the first
 * 500 seats) and POST for the rest, since one request body must fit the
 * broker's max_message_size. Seat i is "S<k>-<j>", in section "S<k>" with
 * k = i / --section and j = i % --section + 1. Holds pick 2 to 4 distinct
 * seats at random from the hot region, the first --hot share of the seats:
 *   POST /api/events/{event}/hold {"user":"u<n>","seats":[...],"ttl":T}
 * Hold n is made for user "u<n>", a new user for every hold, so a viewer's
 * delta naming holder u<n> tells which hold it shows, and its latency is the
 * read time minus hold n's send time. A successful hold is released at once
 * (POST .../release, same user and seats), so the map does not fill up; a
 * 409 seats_taken is the contention being measured, not an error.
 *
 * Without --rate the --clients run closed loops: each sends a hold, and
 * after its answer (and the release, if it succeeded) the next, until the
 * step's duration is over. With --rate, hold i is due at t_start + i/rate
 * whatever came back (open loop), queued for a free connection if needed.
 *
 * Checks after each step, once no request is in flight: every seat is read
 * with GET /api/channels/{channel}/state?prefix=seat: (pages of 1000, by
 * cursor) and every section with ?prefix=section:. Each seat must have a
 * known status (a held or booked one a holder) and its own section; each
 * section's total/free/held/booked must equal what its seats say. That no
 * seat is held by two users needs no check: the state has one value per
 * seat. Each viewer's view must then equal the broker's, seat by seat; a
 * viewer that received a snapshot cannot be compared (the client library
 * does not pass a snapshot's state on) and is counted as unverifiable. A
 * read whose pages carry different offsets, or an offset below the last
 * acknowledged write, is not one current snapshot of the map: it is read
 * again (REREAD_MAX times at most) before anything is judged. */
#include "staterun.h"
#include "loop.h"
#include "report.h"
#include "scenario.h"
#include "val.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEAT_FREE = 0, SEAT_HELD, SEAT_BOOKED, SEAT_BAD, SEAT_MISSING };

#define CHUNK 500               /* seats per PUT/POST of the map */
#define PICK_MAX 4

struct hold {
    uint64_t ts;                /* hold sent (scheduled, open loop) */
    uint64_t rel_ts;            /* release sent */
    uint32_t seat[PICK_MAX];
    uint8_t n;
    int32_t slot;               /* closed loop: the client running it; -1 in open loop */
};

struct section_count {
    uint32_t total, n[3];       /* seats read, by SEAT_FREE/HELD/BOOKED */
    uint8_t seen;               /* its section: key was read */
};

static struct hold *holds;
static uint64_t nholds, holds_cap;
static uint8_t *vstat;          /* viewers x seats: each viewer's view */
static uint8_t *vsnap;          /* per viewer: a snapshot replaced its view */
static uint8_t *bstat;          /* the broker's statuses, from the last check */
static struct section_count *counts;
static uint64_t outstanding, max_off;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t setup_next;     /* next seat to define */
static char base[120];          /* /api/events/EVENT */
static char state_path[160];    /* /api/channels/CHANNEL/state */
static char cursor[160];        /* the next page's cursor, percent-encoded */
static int reading_sections;
static step_t *checking;
static int failed_checks;
static unsigned rereads;        /* of the current check */
static uint64_t read_lo, read_hi;   /* the lowest and highest page offset of the current read */

/* A GET may show the map a little behind what the broker has already
 * acknowledged, and the pages of one read may come from different moments;
 * the check reads the whole map again, this often, before it judges a read
 * that is not one consistent, current snapshot. */
#define REREAD_MAX 40
#define REREAD_MS 50

static uint32_t nseats(void) { return B.o.seats; }

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int seat_name(uint32_t i, char *out, size_t cap)
{
    return snprintf(out, cap, "S%u-%u", i / B.o.section, i % B.o.section + 1);
}

/* Parses "S<k>-<j>" (@n bytes) into a seat index. Return: 0, or -1. */
static int seat_parse(const char *s, size_t n, uint32_t *out)
{
    uint64_t k = 0, j = 0;
    size_t i = 1;

    if (n < 4 || s[0] != 'S') return -1;
    for (; i < n && s[i] >= '0' && s[i] <= '9' && k < 1000000; i++) k = k * 10 + (uint64_t)(s[i] - '0');
    if (i == 1 || i >= n || s[i] != '-') return -1;
    for (i++; i < n && s[i] >= '0' && s[i] <= '9' && j < 1000000; i++) j = j * 10 + (uint64_t)(s[i] - '0');
    if (i != n || j == 0 || j > B.o.section || k * B.o.section + j - 1 >= nseats()) return -1;
    *out = (uint32_t)(k * B.o.section + j - 1);
    return 0;
}

static int section_parse(const char *s, size_t n, uint32_t *out)
{
    uint64_t k = 0;

    if (n < 2 || s[0] != 'S') return -1;
    for (size_t i = 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || k > 1000000) return -1;
        k = k * 10 + (uint64_t)(s[i] - '0');
    }
    if (k >= B.sf.sections) return -1;
    *out = (uint32_t)k;
    return 0;
}

static int status_of(const val_t *v)
{
    if (val_str_is(v, "free")) return SEAT_FREE;
    if (val_str_is(v, "held")) return SEAT_HELD;
    if (val_str_is(v, "booked")) return SEAT_BOOKED;
    return SEAT_BAD;
}

static int init(void)
{
    snprintf(B.sf.event, sizeof B.sf.event, "bench-%s", B.run_id);
    snprintf(B.sf.channel, sizeof B.sf.channel, "seats:%s", B.sf.event);
    snprintf(base, sizeof base, "/api/events/%s", B.sf.event);
    snprintf(state_path, sizeof state_path, "/api/channels/%s/state", B.sf.channel);
    B.sf.sections = (nseats() + B.o.section - 1) / B.o.section;
    B.sf.hot_seats = (uint32_t)(B.o.hot * nseats() + 0.5);
    if (B.sf.hot_seats < 2) B.sf.hot_seats = 2;
    if (B.sf.hot_seats > nseats()) B.sf.hot_seats = nseats();
    rng ^= (uint64_t)uv_hrtime();
    vstat = calloc((size_t)B.o.viewers * nseats() + 1, 1);
    vsnap = calloc(B.o.viewers + 1, 1);
    bstat = malloc(nseats());
    counts = calloc(B.sf.sections, sizeof *counts);
    return vstat && vsnap && bstat && counts ? 0 : -1;
}

static void fini(void)
{
    free(holds);
    free(vstat);
    free(vsnap);
    free(bstat);
    free(counts);
}

/* ---- the map ---- */

static void define_next(void);

static void on_defined(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    val_t v, o;
    int64_t off;
    int code = srun_rest_code(body, len);

    (void)arg; (void)rx;
    if (status == 404 && code == 116) {
        bench_fail("seats is not a state namespace: start the broker with --ns seats.state=on");
        return;
    }
    if (status == 404) {
        bench_fail("the broker has no seat maps: PUT %s/seats answered 404: %.*s", base,
                   (int)(len > 150 ? 150 : len), body ? body : "");
        return;
    }
    val_init(&v, HERALD_JSON, body, len);
    if (status != 200 || val_map_get(&v, "offset", &o) || val_int(&o, &off) || off < 0) {
        bench_fail("defining the seat map (%s/seats) answered %d: %.*s", base, status,
                   (int)(len > 200 ? 200 : len), body ? body : "");
        return;
    }
    B.sf.offset0 = max_off = (uint64_t)off;
    if (setup_next < nseats()) define_next();
    else srun_prepared();
}

static void define_next(void)
{
    uint32_t end = setup_next + CHUNK < nseats() ? setup_next + CHUNK : nseats();
    size_t cap = 32 + (size_t)(end - setup_next) * 64, n;
    char *body = malloc(cap), target[160];
    const char *method = setup_next == 0 ? "PUT" : "POST";
    int r;

    if (!body) { bench_fail("out of memory"); return; }
    n = (size_t)snprintf(body, cap, "{\"seats\":[");
    for (uint32_t i = setup_next; i < end; i++) {
        n += (size_t)snprintf(body + n, cap - n, "%s{\"id\":\"", i > setup_next ? "," : "");
        n += (size_t)seat_name(i, body + n, cap - n);
        n += (size_t)snprintf(body + n, cap - n, "\",\"section\":\"S%u\"}", i / B.o.section);
    }
    n += (size_t)snprintf(body + n, cap - n, "]}");
    setup_next = end;
    snprintf(target, sizeof target, "%s/seats", base);
    r = srun_request(method, target, body, n, on_defined, NULL);
    free(body);
    if (r) bench_fail("cannot send %s %s: %s", method, target, herald_strerror(r));
}

static void prepare(void)
{
    define_next();
}

static void on_subscribed(peer_t *p, const herald_msg_t *m)
{
    /* The map is all free when the viewers subscribe (nothing holds yet),
     * which is the view they start from. */
    (void)p;
    if (m->offset != B.sf.offset0) B.sf.bad_replies++;
}

/* ---- holds and releases ---- */

static step_t *step_of_hold(uint64_t n)
{
    for (int i = B.cur; i > 0; i--)
        if (n >= B.steps[i].seq_start) return &B.steps[i];
    return &B.steps[0];
}

static size_t seats_json(const struct hold *h, char *out, size_t cap)
{
    size_t n = 0;

    for (unsigned k = 0; k < h->n; k++) {
        n += (size_t)snprintf(out + n, cap - n, "%s\"", k ? "," : "");
        n += (size_t)seat_name(h->seat[k], out + n, cap - n);
        n += (size_t)snprintf(out + n, cap - n, "\"");
    }
    return n;
}

static void send_hold(step_t *st, uint64_t ts, int32_t slot);

/* A closed-loop client goes on with its next hold while the step runs. */
static void next_hold(const struct hold *h)
{
    if (h->slot >= 0 && B.phase == PH_RUN) send_hold(&B.steps[B.cur], uv_hrtime(), h->slot);
}

static void note_offset(const char *body, size_t len)
{
    val_t v, o;
    int64_t off;

    val_init(&v, HERALD_JSON, body, len);
    if (!val_map_get(&v, "offset", &o) && !val_int(&o, &off) && (uint64_t)off > max_off) max_off = (uint64_t)off;
}

static void on_release(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    uint64_t n = (uint64_t)(uintptr_t)arg;
    struct hold *h = &holds[n];
    step_t *st = step_of_hold(n);

    outstanding--;
    if (status == 200) {
        st->releases_ok++;
        note_offset(body, len);
        hist_record(st->rel, rx > h->rel_ts ? rx - h->rel_ts : 0);
    } else {
        /* Cancelled at a drain's end, or failed: its seats stay held until the ttl. */
        B.sf.unreleased += h->n;
        srun_rest_error("POST .../release", status, body, len);
    }
    next_hold(h);
}

static void on_hold(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    uint64_t n = (uint64_t)(uintptr_t)arg;
    struct hold *h = &holds[n];
    step_t *st = step_of_hold(n);
    char req[PICK_MAX * 24 + 96], target[160];
    size_t k;
    int r;

    outstanding--;
    if (status == 200 || (status == 409 && srun_rest_code(body, len) == 119)) {
        hist_record(st->ack, rx > h->ts ? rx - h->ts : 0);
        if (rx > st->t_last_ack) st->t_last_ack = rx;
    }
    if (status != 200) {
        if (status == 409 && srun_rest_code(body, len) == 119) st->taken++;
        else {
            st->pub_errors++;
            srun_rest_error("POST .../hold", status, body, len);
        }
        next_hold(h);
        return;
    }
    st->acked++;
    st->seats_held += h->n;
    note_offset(body, len);
    k = (size_t)snprintf(req, sizeof req, "{\"user\":\"u%llu\",\"seats\":[", (unsigned long long)n);
    k += seats_json(h, req + k, sizeof req - k);
    k += (size_t)snprintf(req + k, sizeof req - k, "]}");
    h->rel_ts = uv_hrtime();
    st->releases++;
    snprintf(target, sizeof target, "%s/release", base);
    if ((r = srun_request("POST", target, req, k, on_release, arg))) {
        B.sf.unreleased += h->n;
        srun_rest_error("POST .../release", 0, NULL, 0);
        next_hold(h);
        return;
    }
    outstanding++;
}

static void send_hold(step_t *st, uint64_t ts, int32_t slot)
{
    char body[PICK_MAX * 24 + 96], target[160];
    struct hold *h;
    uint32_t hot = B.sf.hot_seats;
    size_t k;
    int r;

    if (nholds == holds_cap) {
        uint64_t ncap = holds_cap ? holds_cap * 2 : 65536;
        struct hold *nh = realloc(holds, ncap * sizeof *nh);
        if (!nh) { bench_fail("out of memory for hold records"); return; }
        holds = nh;
        holds_cap = ncap;
    }
    h = &holds[nholds];
    h->ts = ts;
    h->slot = slot;
    h->n = (uint8_t)(2 + rnd() % 3);
    if (h->n > hot) h->n = (uint8_t)hot;
    for (unsigned i = 0; i < h->n; i++) {
        uint32_t s;
        unsigned j;
        do {
            s = (uint32_t)(rnd() % hot);
            for (j = 0; j < i && h->seat[j] != s; j++) {}
        } while (j < i);
        h->seat[i] = s;
    }
    k = (size_t)snprintf(body, sizeof body, "{\"user\":\"u%llu\",\"seats\":[", (unsigned long long)nholds);
    k += seats_json(h, body + k, sizeof body - k);
    k += (size_t)snprintf(body + k, sizeof body - k, "],\"ttl\":%u}", B.o.ttl);
    snprintf(target, sizeof target, "%s/hold", base);
    st->published++;
    if ((r = srun_request("POST", target, body, k, on_hold, (void *)(uintptr_t)nholds))) {
        st->pub_errors++;
        srun_rest_error("POST .../hold", 0, NULL, 0);
        return;
    }
    nholds++;
    outstanding++;
}

static void start_step(step_t *st)
{
    srun_scan_reset();
    st->seq_start = nholds;
    if (st->rate > 0) return;
    for (unsigned c = 0; c < B.o.clients && B.phase == PH_RUN; c++) send_hold(st, uv_hrtime(), (int32_t)c);
}

static void send_open(step_t *st, uint64_t ts)
{
    send_hold(st, ts, -1);
}

/* ---- viewers ---- */

static void on_pub(peer_t *p, const herald_msg_t *m)
{
    step_t *cur = &B.steps[B.cur];
    uint8_t *view = vstat + (size_t)(p - B.peers) * nseats();
    val_t d, changes, c, k, val, f;
    val_it_t it;
    const char *s;
    size_t sl;
    uint64_t timed = UINT64_MAX;
    int r;

    if (m->offset <= p->last_off) {
        B.sf.dups++;
        return;
    }
    if (m->offset != p->last_off + 1) B.sf.gaps += m->offset - p->last_off - 1;
    p->last_off = m->offset;
    cur->received++;
    val_init(&d, B.o.enc, m->data, m->data_len);
    r = val_map_get(&d, "changes", &changes) ? -1 : val_arr_begin(&changes, &it);
    while (r == 0 && (r = val_arr_next(&it, &c)) == 1) {
        uint32_t i;
        int stt;
        r = 0;
        if (val_map_get(&c, "key", &k) || val_str(&k, &s, &sl)) { r = -1; break; }
        if (sl < 5 || memcmp(s, "seat:", 5)) continue;            /* section counts: not tracked */
        if (seat_parse(s + 5, sl - 5, &i)) { r = -1; break; }
        if (!val_map_get(&c, "deleted", &f) && val_is_true(&f)) { view[i] = SEAT_BAD; continue; }
        if (val_map_get(&c, "value", &val) || val_map_get(&val, "status", &f)) { r = -1; break; }
        stt = status_of(&f);
        view[i] = (uint8_t)stt;
        if (stt == SEAT_HELD && timed == UINT64_MAX && !val_map_get(&val, "holder", &f) && !val_str(&f, &s, &sl) &&
            sl > 1 && s[0] == 'u') {
            uint64_t n = 0;
            size_t j = 1;
            for (; j < sl && s[j] >= '0' && s[j] <= '9'; j++) n = n * 10 + (uint64_t)(s[j] - '0');
            if (j == sl && n < nholds) timed = n;
        }
    }
    if (r < 0) cur->unreadable++;
    if (timed != UINT64_MAX) {
        /* The delta of hold n: timed from its send. Releases are not timed
         * (a freed seat names no holder). */
        step_t *st = step_of_hold(timed);
        uint64_t ts = holds[timed].ts;
        if (!st->done) {
            hist_record(st->lat, m->rx_ns > ts ? m->rx_ns - ts : 0);
            hist_record(B.interval, m->rx_ns > ts ? m->rx_ns - ts : 0);
        }
    }
    if (m->rx_ns > cur->t_last_rx) cur->t_last_rx = m->rx_ns;
}

static void on_snapshot(peer_t *p, const herald_msg_t *m)
{
    (void)m;
    vsnap[p - B.peers] = 1;
}

/* ---- checks ---- */

static int drained(const step_t *st)
{
    (void)st;
    return outstanding == 0 && !srun_scan_behind(max_off);
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Violations found while reading count only if the read is kept (see
 * finish_check()); the first one's text is kept meanwhile in read_violation. */
static uint64_t pending_violations;
static char read_violation[200];

static void violation(const char *fmt, ...)
{
    va_list ap;

    if (pending_violations++) return;
    va_start(ap, fmt);
    vsnprintf(read_violation, sizeof read_violation, fmt, ap);
    va_end(ap);
}

static void read_page(void);

static void start_read(void);

static void finish_check(void)
{
    step_t *st = checking;
    struct state_figures *sf = &B.sf;
    double p99 = (double)hist_percentile(st->ack, 99) / 1e6;
    uint64_t answered = st->acked + st->taken;

    if ((read_lo != read_hi || read_lo < max_off) && rereads < REREAD_MAX) {
        sf->stale_reads++;
        if (max_off > read_lo && max_off - read_lo > sf->stale_max) sf->stale_max = max_off - read_lo;
        rereads++;
        srun_after(REREAD_MS, start_read);
        return;
    }

    for (uint32_t k = 0; k < sf->sections; k++)
        if (!counts[k].seen && counts[k].total) {
            sf->section_mismatches++;
            violation("section S%u has %u seats but no section:S%u key", k, counts[k].total, k);
        }
    for (uint32_t i = 0; i < nseats(); i++)
        if (bstat[i] == SEAT_MISSING) {
            char nm[32];
            seat_name(i, nm, sizeof nm);
            sf->missing_seats++;
            violation("seat %s of the map is missing from GET .../state", nm);
        }
    for (uint32_t v = 0; v < B.npeers; v++) {
        const uint8_t *view = vstat + (size_t)v * nseats();
        if (!srun_live(v)) continue;
        if (vsnap[v]) st->unverifiable++;
        else if (B.peers[v].last_off == st->broker_offset && !memcmp(view, bstat, nseats())) st->converged++;
        else st->diverged++;
    }
    sf->checks++;
    if (sf->held_n > sf->unreleased)
        violation("%llu seats are held after the step, but only %llu were left held by failed releases",
                  (unsigned long long)sf->held_n, (unsigned long long)sf->unreleased);
    if (pending_violations && !sf->first_violation[0])
        snprintf(sf->first_violation, sizeof sf->first_violation, "after step %d: %.170s", B.cur + 1, read_violation);
    sf->violations += pending_violations;
    pending_violations = 0;
    if (sf->violations || st->diverged || st->unreadable || sf->gaps || sf->dups || sf->rest_errors)
        failed_checks = 1;
    st->sustained = st->published > 0 && answered >= st->published - st->published / 1000 &&
                    (st->rate <= 0 || p99 <= B.o.p99_max_ms) && !failed_checks;
    if (B.cur + 1 == B.nsteps && failed_checks && !B.exit_code) {
        B.exit_code = 1;
        snprintf(B.fatal, sizeof B.fatal, "the seat map or a viewer's view of it is wrong, or a request failed "
                 "(see invariants, viewers, errors)%s%s", sf->first_violation[0] ? ": " : "",
                 sf->first_violation[0] ? sf->first_violation : sf->first_error);
    }
    checking = NULL;
    srun_checked(st);
}

static void set_cursor(const val_t *next)
{
    const char *s;
    size_t n, o = 0;
    static const char hex[] = "0123456789ABCDEF";

    cursor[0] = '\0';
    if (val_str(next, &s, &n)) return;
    for (size_t i = 0; i < n && o + 4 < sizeof cursor; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~')
            cursor[o++] = (char)ch;
        else {
            cursor[o++] = '%';
            cursor[o++] = hex[ch >> 4];
            cursor[o++] = hex[ch & 15];
        }
    }
    cursor[o] = '\0';
}

static void seat_item(const val_t *key_v, const val_t *value)
{
    struct state_figures *sf = &B.sf;
    int kl = (int)(key_v->e - key_v->p > 60 ? 60 : key_v->e - key_v->p);
    const char *key = (const char *)key_v->p;
    val_t f;
    const char *s;
    size_t n;
    uint32_t i, k;
    int stt;

    if (val_str(key_v, &s, &n) || n < 5 || seat_parse(s + 5, n - 5, &i)) {
        sf->bad_seats++;
        violation("unknown seat key %.*s in the map", kl, key);
        return;
    }
    if (bstat[i] != SEAT_MISSING) {
        sf->bad_seats++;
        violation("seat key %.*s read twice", kl, key);
        return;
    }
    stt = val_map_get(value, "status", &f) ? SEAT_BAD : status_of(&f);
    if (stt != SEAT_BAD && stt != SEAT_FREE && (val_map_get(value, "holder", &f) || val_str(&f, &s, &n) || !n))
        stt = SEAT_BAD;
    if (val_map_get(value, "section", &f) || val_str(&f, &s, &n) || section_parse(s, n, &k) ||
        k != i / B.o.section)
        stt = SEAT_BAD;
    bstat[i] = (uint8_t)stt;
    sf->seats_read++;
    if (stt == SEAT_BAD) {
        sf->bad_seats++;
        violation("%.*s has a bad status, holder or section: %.*s", kl, key,
                  (int)(value->e - value->p > 100 ? 100 : value->e - value->p), (const char *)value->p);
        return;
    }
    counts[i / B.o.section].total++;
    counts[i / B.o.section].n[stt]++;
    if (stt == SEAT_FREE) sf->free_n++;
    else if (stt == SEAT_HELD) sf->held_n++;
    else sf->booked_n++;
}

static void section_item(const val_t *key_v, const val_t *value)
{
    struct state_figures *sf = &B.sf;
    static const char *names[] = { "total", "free", "held", "booked" };
    int kl = (int)(key_v->e - key_v->p > 60 ? 60 : key_v->e - key_v->p);
    const char *key = (const char *)key_v->p;
    const char *s;
    size_t n;
    uint32_t k;
    int64_t x;
    val_t f;

    sf->sections_read++;
    if (val_str(key_v, &s, &n) || n < 8 || section_parse(s + 8, n - 8, &k)) {
        sf->section_mismatches++;
        violation("unknown section key %.*s", kl, key);
        return;
    }
    counts[k].seen = 1;
    for (int j = 0; j < 4; j++) {
        uint32_t want = j == 0 ? counts[k].total : counts[k].n[j - 1];
        if (val_map_get(value, names[j], &f) || val_int(&f, &x) || x != want) {
            sf->section_mismatches++;
            violation("%.*s: \"%s\" is not %u, the count of its seats: %.*s", kl, key, names[j], want,
                      (int)(value->e - value->p > 100 ? 100 : value->e - value->p), (const char *)value->p);
            return;
        }
    }
}

static void on_page(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    val_t v, items, it, k, val, next, o;
    val_it_t w;
    int64_t off;
    int r;

    (void)arg; (void)rx;
    if (B.phase != PH_HOLD || !checking) return;
    val_init(&v, HERALD_JSON, body, len);
    if (status != 200 || val_map_get(&v, "items", &items) || val_arr_begin(&items, &w) ||
        val_map_get(&v, "next_cursor", &next) || val_map_get(&v, "offset", &o) || val_int(&o, &off)) {
        bench_fail("GET %s?prefix=%s answered %d: %.*s", state_path, reading_sections ? "section:" : "seat:", status,
                   (int)(len > 200 ? 200 : len), body ? body : "");
        return;
    }
    B.sf.pages++;
    if (!reading_sections && !cursor[0]) checking->broker_offset = (uint64_t)off;
    if ((uint64_t)off < read_lo) read_lo = (uint64_t)off;
    if ((uint64_t)off > read_hi) read_hi = (uint64_t)off;
    while ((r = val_arr_next(&w, &it)) == 1) {
        if (val_map_get(&it, "key", &k) || val_map_get(&it, "value", &val)) { r = -1; break; }
        if (reading_sections) section_item(&k, &val);
        else seat_item(&k, &val);
    }
    if (r < 0) {
        bench_fail("GET %s: an item is not {\"key\",\"value\",...}", state_path);
        return;
    }
    if (val_is_null(&next)) {
        cursor[0] = '\0';
        if (reading_sections) { finish_check(); return; }
        reading_sections = 1;
    } else {
        set_cursor(&next);
        if (!cursor[0]) { bench_fail("GET %s: next_cursor is not a string", state_path); return; }
    }
    read_page();
}

static void read_page(void)
{
    char target[400];
    int r;

    snprintf(target, sizeof target, "%s?prefix=%s&limit=1000%s%s", state_path,
             reading_sections ? "section:" : "seat:", cursor[0] ? "&cursor=" : "", cursor);
    if ((r = srun_request("GET", target, NULL, 0, on_page, NULL)))
        bench_fail("cannot send GET %s: %s", target, herald_strerror(r));
}

static void start_read(void)
{
    struct state_figures *sf = &B.sf;

    reading_sections = 0;
    cursor[0] = '\0';
    read_lo = UINT64_MAX;
    read_hi = 0;
    pending_violations = 0;
    read_violation[0] = '\0';
    memset(bstat, SEAT_MISSING, nseats());
    memset(counts, 0, B.sf.sections * sizeof *counts);
    sf->seats_read = sf->free_n = sf->held_n = sf->booked_n = sf->bad_seats = sf->missing_seats = 0;
    sf->sections_read = sf->section_mismatches = 0;
    read_page();
}

static void step_end(step_t *st)
{
    checking = st;
    rereads = 0;
    start_read();
}

static void progress(FILE *f, const step_t *st)
{
    if (st->rate > 0) fprintf(f, "rate %.0f/s  ", st->rate);
    fprintf(f, "holds %llu  ok %llu  taken %llu  released %llu  deltas %llu", (unsigned long long)st->published,
            (unsigned long long)st->acked, (unsigned long long)st->taken, (unsigned long long)st->releases_ok,
            (unsigned long long)st->received);
}

/* ---- flags ---- */

/* Closed loop unless --rate. */
static void defaults(struct opts *o)
{
    o->nrates = 0;
}

static int check_opts(struct opts *o, uint64_t given, char *why, size_t n)
{
    (void)given;
    if ((uint64_t)o->viewers * o->seats > 1000000000ULL) {
        snprintf(why, n, "--viewers x --seats is over a billion (each viewer keeps a view of every seat)");
        return -1;
    }
    return srun_check_rates(o, why, n);
}

/* ---- the report ---- */

static void human_head(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, "\n  %s: %u seats in %u sections, holds of 2-4 from the first %u; %u REST clients (%s); "
               "%u viewers", B.sf.channel, o->seats, B.sf.sections, B.sf.hot_seats, o->clients,
            o->nrates ? "open loop" : "closed loop", B.nsubs);
}

static void human_body(FILE *f)
{
    const struct state_figures *sf = &B.sf;
    char a[32];

    fprintf(f, "\n%7s %8s %8s %8s %8s %6s %8s %8s %8s %8s %8s %8s %8s %8s %6s %6s\n", "rate/s", "holds", "ok",
            "taken", "errors", "taken%", "holds/s", "hp50ms", "hp99ms", "hmaxms", "relp99", "deltas", "dp50ms",
            "dp99ms", "bench%", "broker%");
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        uint64_t answered = st->acked + st->taken;
        if (!st->lat) continue;
        fprintf(f, "%7s %8llu %8llu %8llu %8llu %6.1f %8.0f %8.2f %8.2f %8.2f %8.2f %8llu",
                st->rate > 0 ? report_si(st->rate, a, sizeof a) : "closed", (unsigned long long)st->published,
                (unsigned long long)st->acked, (unsigned long long)st->taken, (unsigned long long)st->pub_errors,
                answered ? 100.0 * (double)st->taken / (double)answered : 0, srun_answers_per_sec(st, answered),
                report_ms(hist_percentile(st->ack, 50)), report_ms(hist_percentile(st->ack, 99)),
                report_ms(st->ack->max), report_ms(hist_percentile(st->rel, 99)), (unsigned long long)st->received);
        if (st->lat->count)
            fprintf(f, " %8.2f %8.2f", report_ms(hist_percentile(st->lat, 50)), report_ms(hist_percentile(st->lat, 99)));
        else fprintf(f, " %8s %8s", "-", "-");
        fprintf(f, " %6.0f %6s\n", st->bench_cpu, st->broker_cpu >= 0 ? (snprintf(a, sizeof a, "%.0f", st->broker_cpu), a) : "-");
        fprintf(f, "        releases %llu of %llu ok; snapshots %llu; viewers: ", (unsigned long long)st->releases_ok,
                (unsigned long long)st->releases, (unsigned long long)st->snapshots);
        srun_viewers(f, st);
        fprintf(f, "\n");
    }
    fprintf(f, "(holds/s: holds answered, ok or 409 seats_taken, per second; h: hold latency; relp99: release\n"
               " latency; deltas: deltas delivered to all viewers; d: a hold's delta reaching a viewer)\n");
    fprintf(f, "invariants after %u check(s), %llu pages: %llu seats read (%llu free, %llu held, %llu booked), %llu bad, "
               "%llu missing; %llu sections, %llu mismatched: %s\n", sf->checks, (unsigned long long)sf->pages,
            (unsigned long long)sf->seats_read, (unsigned long long)sf->free_n, (unsigned long long)sf->held_n,
            (unsigned long long)sf->booked_n, (unsigned long long)sf->bad_seats, (unsigned long long)sf->missing_seats,
            (unsigned long long)sf->sections_read, (unsigned long long)sf->section_mismatches,
            sf->checks && !sf->violations ? "ok" : "WRONG");
    if (sf->unreleased)
        fprintf(f, "%llu seats were left held by releases that failed or were never sent (they expire after "
                   "the ttl)\n", (unsigned long long)sf->unreleased);
    if (sf->first_violation[0]) fprintf(f, "first violation: %s\n", sf->first_violation);
}

static void json_body(FILE *f)
{
    const struct opts *o = &B.o;
    const struct state_figures *sf = &B.sf;

    fprintf(f, ",\"event\":\"%s\",\"channel\":\"%s\",\"seats\":%u,\"sections\":%u,\"section_size\":%u,"
               "\"hot\":%g,\"hot_seats\":%u,\"ttl\":%u,\"clients\":%u,\"viewers\":%u,\"mode\":\"%s\","
               "\"offset0\":%llu,\"steps\":[", sf->event, sf->channel, o->seats, sf->sections, o->section, o->hot,
            sf->hot_seats, o->ttl, o->clients, B.nsubs, o->nrates ? "open" : "closed",
            (unsigned long long)sf->offset0);
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        uint64_t answered = st->acked + st->taken;
        if (!st->lat) continue;
        fprintf(f, "%s{", i ? "," : "");
        if (st->rate > 0) fprintf(f, "\"rate\":%.0f,", st->rate);
        else fprintf(f, "\"rate\":null,");
        fprintf(f, "\"seconds\":%.3f,\"holds_sent\":%llu,\"holds_ok\":%llu,\"holds_taken\":%llu,"
                   "\"hold_errors\":%llu,\"holds_per_sec\":%.1f,\"holds_ok_per_sec\":%.1f,\"taken_ratio\":%.4f,"
                   "\"seats_held\":%llu,\"releases\":%llu,\"releases_ok\":%llu,\"deltas_received\":%llu,"
                   "\"deltas_per_sec\":%.1f,",
                report_step_secs(st), (unsigned long long)st->published, (unsigned long long)st->acked,
                (unsigned long long)st->taken, (unsigned long long)st->pub_errors, srun_answers_per_sec(st, answered),
                srun_answers_per_sec(st, st->acked), answered ? (double)st->taken / (double)answered : 0,
                (unsigned long long)st->seats_held, (unsigned long long)st->releases,
                (unsigned long long)st->releases_ok, (unsigned long long)st->received,
                st->t_last_rx > st->t_start ? st->received / ((double)(st->t_last_rx - st->t_start) / 1e9) : 0);
        srun_json_step(f, st);
        report_json_lat(f, "hold_latency_ms", st->ack);
        fprintf(f, ",");
        report_json_lat(f, "release_latency_ms", st->rel);
        fprintf(f, ",");
        report_json_lat(f, "delta_latency_ms", st->lat);
        fprintf(f, ",\"sustained\":%s}", st->sustained ? "true" : "false");
    }
    fprintf(f, "],\"p99_max_ms\":%g,\"gaps\":%llu,\"duplicates\":%llu,\"bad_replies\":%llu,\"stale_reads\":%llu,"
               "\"stale_max\":%llu,", o->p99_max_ms, (unsigned long long)sf->gaps, (unsigned long long)sf->dups,
            (unsigned long long)sf->bad_replies, (unsigned long long)sf->stale_reads,
            (unsigned long long)sf->stale_max);
    fprintf(f, "\"invariants\":{\"checks\":%u,\"pages\":%llu,\"seats_read\":%llu,\"free\":%llu,\"held\":%llu,"
               "\"booked\":%llu,\"bad_seats\":%llu,\"missing_seats\":%llu,\"sections_read\":%llu,"
               "\"section_mismatches\":%llu,\"unreleased\":%llu,\"violations\":%llu,\"first_violation\":\"%s\","
               "\"ok\":%s}",
            sf->checks, (unsigned long long)sf->pages, (unsigned long long)sf->seats_read,
            (unsigned long long)sf->free_n, (unsigned long long)sf->held_n, (unsigned long long)sf->booked_n,
            (unsigned long long)sf->bad_seats, (unsigned long long)sf->missing_seats,
            (unsigned long long)sf->sections_read, (unsigned long long)sf->section_mismatches,
            (unsigned long long)sf->unreleased, (unsigned long long)sf->violations,
            report_json_safe(sf->first_violation), sf->checks && !sf->violations ? "true" : "false");
}

static void json_errors(FILE *f)
{
    srun_json_errors(f, "holds");
}

const struct bench_scenario bench_seats = {
    .name = "seats",
    .summary = "one seat map, K REST clients holding 2 to 4 seats from a hot region and releasing them; "
               "holds/s, seats_taken share, hold latency, and the map's invariants checked after each step",
    .example = "herald-bench seats --url ws://127.0.0.1:8080/ws --seats 1000 --hot 0.1 --clients 16 --viewers 10",
    .notes = "\nThe broker needs seat maps and the seats namespace with state on, e.g.\n"
             "  herald --ns seats.state=on\n"
             "The map is defined with PUT /api/events/bench-RUNID/seats (POST for seats past the\n"
             "first 500). Each hold is POST .../hold for a new user u<n> with 2 to 4 distinct seats of\n"
             "the hot region; a successful hold is released at once (POST .../release); 409\n"
             "seats_taken is counted, not an error. After each step every seat and section is read\n"
             "with GET /api/channels/seats:bench-RUNID/state?prefix=seat: and ?prefix=section: (pages\n"
             "of 1000): every seat needs a valid status and its section, each section's counts must\n"
             "equal its seats' statuses, and each viewer's view must equal the broker's. The run\n"
             "fails (exit 1) on any broken invariant, a diverged viewer, seats still held at the end,\n"
             "or a REST answer that is not a documented outcome. --encoding is the viewers'; REST\n"
             "bodies are JSON.\n",
    .flags = BF_COMMON | BF(RATE) | BF(P99MAX) | BF(DRAIN_TIMEOUT) | BF(VIEWERS) | BF(CLIENTS) | BF(SEATS) |
             BF(SECTION) | BF(HOT) | BF(TTL),
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
    .send = send_open,
    .report_head = human_head,
    .report_body = human_body,
    .report_tail = srun_report_tail,
    .report_json = json_body,
    .report_json_errors = json_errors,
};
