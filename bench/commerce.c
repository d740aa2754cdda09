/* bench/commerce.c - the commerce scenarios: `orders`, orders per second
 * through the commerce adapter's state machine with stock reservation, and
 * `payments`, signed payment webhooks ingested per second.
 *
 * Owns: their entries (struct bench_scenario, scenario.h), their driver (a
 * pool of keep-alive HTTP connections on B.loop running closed loops, with a
 * time bound), the check of the broker's stock after the run, and their
 * report. Does not own: HTTP (http.c), flags (main.c), histograms (hist.c).
 *
 * DESIGN: both are closed loops of --clients HTTP connections with one
 * request in flight each. The broker applies every commerce write in one LMDB
 * write transaction on its storage thread and answers after the commit, so
 * what is measured is the rate the broker sustains with K requests
 * outstanding, and latency is from a request's send to its answer. They run
 * on a driver of their own rather than staterun.c's because there are no
 * viewers to connect or verify: what is checked is the broker's stock against
 * what the bench sold.
 *
 * orders: the run's SKUs (b<RUN>-<i>, --skus of them) are set to --stock
 * units each. Each client then loops until --duration is over: create an
 * order for one unit of a random SKU (one SKU: every order contends for the
 * same key), then move it to PAID, or, every 10th order, to PAYMENT_FAILED,
 * which gives the unit back in the same transaction. A create refused with
 * 409 code 124 (sold out) is counted, not an error: with a small --stock it is
 * what is measured. An order's latency runs from its create's send to its
 * transition's answer. After the run every SKU's count is read back (GET
 * /api/channels/{stock channel}/state) and must be --stock minus the units of
 * the orders created and not given back; any difference is an oversell or a
 * lost reservation and fails the run.
 *
 * payments: one SKU gets --stock units and --orders orders are created
 * (setup, not timed). Each client then posts events signed as the broker
 * checks them, "Herald-Signature: t=<unix s>,v1=<hex>" with HMAC-SHA256 of
 * "<t>.<body>" keyed with --secret (OpenSSL), computed per request as a
 * provider would: event i is payment.succeeded for order i, or every 5th
 * payment.failed (which gives the unit back); every 10th request re-sends the
 * id of an event already answered, which the broker must answer
 * "duplicate": true without changing anything. It runs until --duration is
 * over or every order has had its event. Each answer must be the documented
 * one (applied with the expected status, or duplicate), and the stock must
 * end at --stock - orders + failed ones.
 *
 * Everything runs on the loop's thread. */
#include "scenario.h"
#include "http.h"
#include "report.h"
#include "val.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STOCK_CHUNK 100         /* SKUs per PUT /api/commerce/stock (the broker's limit) */
#define FAIL_EVERY 10           /* orders: every 10th order's payment fails */
#define PAY_FAIL_EVERY 5        /* payments: every 5th event is payment.failed */
#define DUP_EVERY 10            /* payments: every 10th request re-sends an answered event */
#define STOCK_CHANNEL "stock:all"

enum { CP_SETUP = 0, CP_RUN, CP_DRAIN, CP_CHECK, CP_DONE };

/* One client's closed loop. */
struct slot {
    uint32_t idx;
    uint64_t order;             /* orders: the order in flight; payments: the event's order */
    uint32_t sku;
    uint64_t t0;                /* its first request's send */
    uint64_t t_req;             /* the request in flight's send */
    int fail;                   /* the order's payment fails */
    int dup;                    /* payments: the request re-sends an answered event */
};

static struct {
    int payments;               /* which scenario runs */
    http_pool_t *pool;
    uv_timer_t timer;           /* end of the run phase, then the time bound */
    int timer_open;
    int phase;
    struct slot *slots;
    uint64_t t_setup, t_start, t_end, t_last;
    uint64_t next;              /* next order (orders) or event (payments) */
    uint64_t created, paid, failed, sold_out, setup_created;
    uint64_t events, applied, duplicates;   /* payments */
    uint64_t *answered, nanswered;          /* payments: orders whose event was answered applied */
    int64_t *sold;              /* per SKU: units created and not given back */
    hist_t *lat, *lat_create, *lat_move;
    uint64_t errors;
    char first_error[240];
    uint64_t checked, mismatches;
    char first_mismatch[200];
    char cursor[160];
    uint64_t rng;
    char prefix[32];            /* b<RUN>- */
} C;

static void run_slot(struct slot *s);
static void start_check(void);

static uint64_t rnd(void)
{
    C.rng ^= C.rng << 13;
    C.rng ^= C.rng >> 7;
    C.rng ^= C.rng << 17;
    return C.rng;
}

static void error_at(const char *what, int status, const char *body, size_t len)
{
    if (status == HTTP_CANCELLED) return;
    if (C.errors++) return;
    if (status == 0) snprintf(C.first_error, sizeof C.first_error, "%s: no answer (connection lost)", what);
    else snprintf(C.first_error, sizeof C.first_error, "%s: HTTP %d %.*s", what, status,
                  (int)(len > 160 ? 160 : len), body ? body : "");
}

static int rest_code(const char *body, size_t len)
{
    val_t v, err, code;
    int64_t n;

    if (!body) return 0;
    val_init(&v, HERALD_JSON, body, len);
    if (val_map_get(&v, "error", &err) || val_map_get(&err, "code", &code) || val_int(&code, &n)) return 0;
    return (int)n;
}

static void on_timer_closed(uv_handle_t *h) { (void)h; }

/* The end: close the pool; the loop ends once everything is closed. */
static void finish(void)
{
    if (C.phase == CP_DONE) return;
    C.phase = CP_DONE;
    if (C.timer_open) {
        C.timer_open = 0;
        uv_close((uv_handle_t *)&C.timer, on_timer_closed);
    }
    if (C.pool) http_pool_close(C.pool);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;

    if (!B.fatal[0]) {
        va_start(ap, fmt);
        vsnprintf(B.fatal, sizeof B.fatal, fmt, ap);
        va_end(ap);
    }
    B.exit_code = 1;
    finish();
}

static void on_bound(uv_timer_t *t)
{
    (void)t;
    fail("time bound exceeded in phase %d (%llu requests in flight)", C.phase,
         (unsigned long long)http_in_flight(C.pool));
}

static void drained_maybe(void)
{
    if (C.phase == CP_DRAIN && http_in_flight(C.pool) == 0) start_check();
}

static void on_run_over(uv_timer_t *t)
{
    (void)t;
    if (C.phase != CP_RUN) return;
    C.phase = CP_DRAIN;
    C.t_end = uv_hrtime();
    /* From now on the timer bounds the drain and the check. */
    uv_timer_start(&C.timer, on_bound, 30000, 0);
    drained_maybe();
}

static void start_run(void)
{
    C.phase = CP_RUN;
    C.t_start = uv_hrtime();
    uv_timer_start(&C.timer, on_run_over, (uint64_t)(B.o.duration * 1000), 0);
    for (unsigned i = 0; i < B.o.clients; i++) run_slot(&C.slots[i]);
}

static int req(const char *method, const char *target, const char *hdr, const char *body, size_t len,
               http_done_cb cb, void *arg)
{
    int r = http_request_hdr(C.pool, method, target, hdr, body, len, cb, arg);
    if (r) fail("%s %s: %s", method, target, herald_strerror(r));
    return r;
}

/* ---- setup: the stock ---- */

static uint32_t stock_next;

static void put_stock(void);

static void on_stock_set(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    (void)arg; (void)rx;
    if (C.phase == CP_DONE) return;
    if (status == 0) { fail("no answer from the broker at %s", B.url.name); return; }
    if (status == 404 && rest_code(body, len) == 116) {
        fail("the broker's commerce adapter is off: start it with --commerce on");
        return;
    }
    if (status != 200) { fail("setting the stock: HTTP %d %.*s", status, (int)(len > 200 ? 200 : len), body); return; }
    put_stock();
}

static void start_payments_setup(void);

/* PUT the next chunk of SKUs, or go on once all are set. */
static void put_stock(void)
{
    uint32_t nskus = C.payments ? 1 : B.o.skus;
    char body[STOCK_CHUNK * 48 + 32];
    size_t n = 0;

    if (stock_next >= nskus) {
        if (C.payments) start_payments_setup();
        else start_run();
        return;
    }
    n += (size_t)snprintf(body + n, sizeof body - n, "{\"stock\":{");
    for (uint32_t i = stock_next; i < nskus && i < stock_next + STOCK_CHUNK; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "%s\"%s%u\":%u", i > stock_next ? "," : "", C.prefix, i,
                              B.o.stock);
    n += (size_t)snprintf(body + n, sizeof body - n, "}}");
    stock_next += STOCK_CHUNK;
    req("PUT", "/api/commerce/stock", NULL, body, n, on_stock_set, NULL);
}

/* ---- orders ---- */

static void on_moved(void *arg, int status, const char *body, size_t len, uint64_t rx);
static void on_created(void *arg, int status, const char *body, size_t len, uint64_t rx);

static void send_create(struct slot *s)
{
    char body[200];
    int n;

    n = snprintf(body, sizeof body, "{\"id\":\"%so%llu\",\"owner\":\"u%llu\",\"lines\":[{\"sku\":\"%s%u\",\"qty\":1}]}",
                 C.prefix, (unsigned long long)s->order, (unsigned long long)(s->order % 1000), C.prefix, s->sku);
    s->t_req = uv_hrtime();
    req("POST", "/api/commerce/orders", NULL, body, (size_t)n, on_created, s);
}

static void on_created(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    struct slot *s = arg;
    char target[160], mv[64];
    int n;

    if (C.phase == CP_DONE) return;
    if (status == 200) {
        hist_record(C.lat_create, rx - s->t_req);
        if (C.phase == CP_SETUP) C.setup_created++;
        else C.created++;
        C.sold[s->sku]++;
        if (C.phase == CP_SETUP) { run_slot(s); return; }
        snprintf(target, sizeof target, "/api/commerce/orders/%so%llu/status", C.prefix, (unsigned long long)s->order);
        n = snprintf(mv, sizeof mv, "{\"status\":\"%s\"}", s->fail ? "PAYMENT_FAILED" : "PAID");
        s->t_req = uv_hrtime();
        req("POST", target, NULL, mv, (size_t)n, on_moved, s);
        return;
    }
    if (status == 409 && rest_code(body, len) == 124) C.sold_out++;
    else error_at("POST /api/commerce/orders", status, body, len);
    C.t_last = rx;
    run_slot(s);
}

static void on_moved(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    struct slot *s = arg;

    if (C.phase == CP_DONE) return;
    if (status == 200) {
        hist_record(C.lat_move, rx - s->t_req);
        hist_record(C.lat, rx - s->t0);
        if (s->fail) { C.failed++; C.sold[s->sku]--; }
        else C.paid++;
    } else {
        error_at("POST /api/commerce/orders/{order}/status", status, body, len);
    }
    C.t_last = rx;
    run_slot(s);
}

/* ---- payments ---- */

/* The event of order @i: "e<RUN>-<i>". */
static int event_body(uint64_t i, char *out, size_t cap)
{
    return snprintf(out, cap, "{\"id\":\"%se%llu\",\"type\":\"%s\",\"data\":{\"order\":\"%so%llu\"}}", C.prefix,
                    (unsigned long long)i, i % PAY_FAIL_EVERY == PAY_FAIL_EVERY - 1 ? "payment.failed" :
                    "payment.succeeded", C.prefix, (unsigned long long)i);
}

static void on_paid_event(void *arg, int status, const char *body, size_t len, uint64_t rx);

static void send_event(struct slot *s)
{
    char body[200], hdr[200], msg[240], hex[EVP_MAX_MD_SIZE * 2 + 1];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    long t = (long)time(NULL);
    int n, m;

    n = event_body(s->order, body, sizeof body);
    m = snprintf(msg, sizeof msg, "%ld.%s", t, body);
    if (!HMAC(EVP_sha256(), B.o.secret, (int)strlen(B.o.secret), (const unsigned char *)msg, (size_t)m, mac,
              &maclen)) {
        fail("HMAC-SHA256 failed (OpenSSL)");
        return;
    }
    for (unsigned i = 0; i < maclen; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    snprintf(hdr, sizeof hdr, "Herald-Signature: t=%ld,v1=%s\r\n", t, hex);
    s->t_req = uv_hrtime();
    req("POST", "/api/commerce/payments", hdr, body, (size_t)n, on_paid_event, s);
}

static void on_paid_event(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    struct slot *s = arg;
    val_t v, x, ev, outcome;
    const char *want = s->order % PAY_FAIL_EVERY == PAY_FAIL_EVERY - 1 ? "PAYMENT_FAILED" : "PAID";

    if (C.phase == CP_DONE) return;
    C.t_last = rx;
    if (status != 200) {
        error_at("POST /api/commerce/payments", status, body, len);
        run_slot(s);
        return;
    }
    val_init(&v, HERALD_JSON, body, len);
    hist_record(C.lat, rx - s->t_req);
    C.events++;
    if (s->dup) {
        if (val_map_get(&v, "duplicate", &x) == 0 && val_is_true(&x)) C.duplicates++;
        else error_at("a re-sent event (want \"duplicate\": true)", status, body, len);
    } else if (val_map_get(&v, "event", &ev) == 0 && val_map_get(&ev, "outcome", &outcome) == 0 &&
               val_str_is(&outcome, want) && val_map_get(&v, "duplicate", &x) != 0) {
        C.applied++;
        if (!strcmp(want, "PAYMENT_FAILED")) { C.failed++; C.sold[0]--; }
        else C.paid++;
        C.answered[C.nanswered++] = s->order;
    } else {
        error_at("a new event (want its outcome applied)", status, body, len);
    }
    run_slot(s);
}

static void start_payments_setup(void)
{
    C.next = 0;
    for (unsigned i = 0; i < B.o.clients; i++) run_slot(&C.slots[i]);
}

/* ---- the loops ---- */

static void run_slot(struct slot *s)
{
    if (C.phase == CP_SETUP) {
        /* payments' setup: create the orders, at full concurrency. */
        if (C.next >= B.o.orders) {
            if (http_in_flight(C.pool) == 0) {
                C.next = 0;
                start_run();
            }
            return;
        }
        s->order = C.next++;
        s->sku = 0;
        send_create(s);
        return;
    }
    if (C.phase != CP_RUN) { drained_maybe(); return; }
    if (!C.payments) {
        s->order = C.next++;
        s->sku = B.o.skus > 1 ? (uint32_t)(rnd() % B.o.skus) : 0;
        s->fail = s->order % FAIL_EVERY == FAIL_EVERY - 1;
        s->t0 = uv_hrtime();
        send_create(s);
        return;
    }
    /* Only an event already answered is re-sent: one still in flight could
     * be applied by either copy, and both answers would look wrong. */
    s->dup = C.nanswered > 0 && (C.events + 1) % DUP_EVERY == 0;
    if (s->dup) {
        s->order = C.answered[rnd() % C.nanswered];
    } else {
        if (C.next >= B.o.orders) {
            /* Every order had its event: the run is over early. */
            if (http_in_flight(C.pool) == 0) on_run_over(NULL);
            return;
        }
        s->order = C.next++;
    }
    send_event(s);
}

/* ---- the check: the broker's stock ---- */

static void get_page(void);

static void mismatch(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mismatch(const char *fmt, ...)
{
    va_list ap;

    if (C.mismatches++) return;
    va_start(ap, fmt);
    vsnprintf(C.first_mismatch, sizeof C.first_mismatch, fmt, ap);
    va_end(ap);
}

static void report_and_finish(void);

static void on_page(void *arg, int status, const char *body, size_t len, uint64_t rx)
{
    val_t v, items, it, key, value, next;
    val_it_t w;
    size_t plen = strlen(C.prefix);
    const char *k, *c;
    size_t kl, cl;
    int64_t n;
    uint32_t nskus = C.payments ? 1 : B.o.skus;

    (void)arg; (void)rx;
    if (C.phase == CP_DONE) return;
    if (status != 200) { fail("reading the stock: HTTP %d %.*s", status, (int)(len > 200 ? 200 : len), body); return; }
    val_init(&v, HERALD_JSON, body, len);
    if (val_map_get(&v, "items", &items) || val_arr_begin(&items, &w)) { fail("reading the stock: no items"); return; }
    while (val_arr_next(&w, &it) == 1) {
        char *end;
        unsigned long i;
        if (val_map_get(&it, "key", &key) || val_str(&key, &k, &kl) || val_map_get(&it, "value", &value) ||
            val_int(&value, &n) || kl <= plen || memcmp(k, C.prefix, plen)) {
            mismatch("an item of the stock that is not one of the run's SKUs");
            continue;
        }
        i = strtoul(k + plen, &end, 10);
        if (end != k + kl || i >= nskus) { mismatch("SKU %.*s is not one of the run's", (int)kl, k); continue; }
        C.checked++;
        if (n != (int64_t)B.o.stock - C.sold[i])
            mismatch("SKU %.*s: the broker has %lld, the bench sold %lld of %u", (int)kl, k, (long long)n,
                     (long long)C.sold[i], B.o.stock);
    }
    if (val_map_get(&v, "next_cursor", &next) == 0 && !val_is_null(&next) && val_str(&next, &c, &cl) == 0 &&
        cl < sizeof C.cursor) {
        memcpy(C.cursor, c, cl);
        C.cursor[cl] = '\0';
        get_page();
        return;
    }
    if (C.checked != nskus) mismatch("%llu of %u SKUs read back", (unsigned long long)C.checked, nskus);
    report_and_finish();
}

static void get_page(void)
{
    char target[300];

    snprintf(target, sizeof target, "/api/channels/" STOCK_CHANNEL "/state?prefix=%s&limit=1000%s%s", C.prefix,
             C.cursor[0] ? "&cursor=" : "", C.cursor);
    req("GET", target, NULL, NULL, 0, on_page, NULL);
}

static void start_check(void)
{
    C.phase = CP_CHECK;
    C.cursor[0] = '\0';
    get_page();
}

/* ---- the report ---- */

static double run_secs(void)
{
    uint64_t end = C.t_last > C.t_end ? C.t_last : C.t_end;
    return end > C.t_start ? (double)(end - C.t_start) / 1e9 : 0;
}

static void print_lat(FILE *f, const char *what, const hist_t *h)
{
    if (!h->count) { fprintf(f, "  %-22s -\n", what); return; }
    fprintf(f, "  %-22s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  (%llu)\n", what, report_ms(hist_percentile(h, 50)),
            report_ms(hist_percentile(h, 99)), report_ms(h->max), (unsigned long long)h->count);
}

static void report_and_finish(void)
{
    double secs = run_secs();
    int ok = !C.errors && !C.mismatches && !B.fatal[0];
    FILE *f = stdout;

    if (!ok) B.exit_code = 1;
    if (B.o.json) {
        fprintf(f, "{\"scenario\":\"%s\",\"url\":\"%s\",\"clients\":%u,\"stock\":%u,\"seconds\":%.3f,",
                C.payments ? "payments" : "orders", report_json_safe(B.o.url), B.o.clients, B.o.stock, secs);
        if (!C.payments) {
            fprintf(f, "\"skus\":%u,\"orders\":%llu,\"paid\":%llu,\"payment_failed\":%llu,\"sold_out\":%llu,"
                       "\"orders_per_sec\":%.1f,\"requests_per_sec\":%.1f,", B.o.skus,
                    (unsigned long long)(C.paid + C.failed), (unsigned long long)C.paid,
                    (unsigned long long)C.failed, (unsigned long long)C.sold_out,
                    secs > 0 ? (double)(C.paid + C.failed) / secs : 0,
                    secs > 0 ? (double)(C.created * 2 + C.sold_out) / secs : 0);
            report_json_lat(f, "order_latency_ms", C.lat);
            fprintf(f, ",");
            report_json_lat(f, "create_latency_ms", C.lat_create);
            fprintf(f, ",");
            report_json_lat(f, "transition_latency_ms", C.lat_move);
        } else {
            fprintf(f, "\"orders\":%llu,\"events\":%llu,\"applied\":%llu,\"paid\":%llu,\"payment_failed\":%llu,"
                       "\"duplicates\":%llu,\"events_per_sec\":%.1f,", (unsigned long long)C.setup_created,
                    (unsigned long long)C.events, (unsigned long long)C.applied, (unsigned long long)C.paid,
                    (unsigned long long)C.failed, (unsigned long long)C.duplicates,
                    secs > 0 ? (double)C.events / secs : 0);
            report_json_lat(f, "event_latency_ms", C.lat);
        }
        fprintf(f, ",\"stock_check\":{\"skus\":%llu,\"mismatches\":%llu,\"first\":", (unsigned long long)C.checked,
                (unsigned long long)C.mismatches);
        if (C.mismatches) fprintf(f, "\"%s\"}", report_json_safe(C.first_mismatch));
        else fprintf(f, "null}");
        fprintf(f, ",\"errors\":%llu,\"first_error\":", (unsigned long long)C.errors);
        if (C.errors) fprintf(f, "\"%s\"", report_json_safe(C.first_error));
        else fprintf(f, "null");
        fprintf(f, ",\"ok\":%s}\n", ok ? "true" : "false");
    } else if (!C.payments) {
        fprintf(f, "herald-bench orders %s  clients %u  skus %u  stock %u each\n", B.o.url, B.o.clients, B.o.skus,
                B.o.stock);
        fprintf(f, "  orders                 %llu in %.2f s: %.1f orders/s (%llu paid, %llu payment failed)\n",
                (unsigned long long)(C.paid + C.failed), secs, secs > 0 ? (double)(C.paid + C.failed) / secs : 0,
                (unsigned long long)C.paid, (unsigned long long)C.failed);
        fprintf(f, "  sold out (409, 124)    %llu\n", (unsigned long long)C.sold_out);
        print_lat(f, "order (create..paid)", C.lat);
        print_lat(f, "create", C.lat_create);
        print_lat(f, "transition", C.lat_move);
    } else {
        fprintf(f, "herald-bench payments %s  clients %u  orders %llu\n", B.o.url, B.o.clients,
                (unsigned long long)C.setup_created);
        fprintf(f, "  events                 %llu in %.2f s: %.1f events/s (%llu applied, %llu duplicates)\n",
                (unsigned long long)C.events, secs, secs > 0 ? (double)C.events / secs : 0,
                (unsigned long long)C.applied, (unsigned long long)C.duplicates);
        print_lat(f, "event", C.lat);
    }
    if (!B.o.json) {
        fprintf(f, "  stock check            %llu SKUs read back, %llu mismatches%s%s\n", (unsigned long long)C.checked,
                (unsigned long long)C.mismatches, C.mismatches ? ": " : "", C.first_mismatch);
        if (C.errors) fprintf(f, "  errors                 %llu, first: %s\n", (unsigned long long)C.errors,
                              C.first_error);
        fprintf(f, "%s\n", ok ? "ok" : "FAILED");
    }
    finish();
}

/* ---- the driver ---- */

static void on_connected(void *ud) { (void)ud; }

static void on_failed(void *ud, int err)
{
    (void)ud;
    fail("cannot reach the broker at %s: %s", B.url.name, herald_strerror(err));
}

static void on_closed(void *ud)
{
    (void)ud;
    C.pool = NULL;
}

static const http_events_t events = { on_connected, on_failed, on_closed };

static int commerce_run(int payments)
{
    int r;

    memset(&C, 0, sizeof C);
    C.payments = payments;
    C.rng = 0x9e3779b97f4a7c15ULL ^ uv_hrtime();
    if ((r = herald_url_parse(B.o.url, &B.url))) {
        fprintf(stderr, "herald-bench: --url %s: %s\n", B.o.url, herald_strerror(r));
        return 2;
    }
    snprintf(B.run_id, sizeof B.run_id, "%08x", (unsigned)(getpid() ^ (uint32_t)uv_hrtime()));
    snprintf(C.prefix, sizeof C.prefix, "b%s-", B.run_id);
    C.slots = calloc(B.o.clients, sizeof *C.slots);
    C.sold = calloc(payments ? 1 : B.o.skus, sizeof *C.sold);
    C.answered = calloc(payments ? B.o.orders : 1, sizeof *C.answered);
    C.lat = hist_new();
    C.lat_create = hist_new();
    C.lat_move = hist_new();
    if (!C.slots || !C.sold || !C.answered || !C.lat || !C.lat_create || !C.lat_move || uv_loop_init(&B.loop)) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < B.o.clients; i++) C.slots[i].idx = i;
    uv_timer_init(&B.loop, &C.timer);
    C.timer_open = 1;
    /* Setup (the stock, payments' orders) is bounded too: 120 s. */
    uv_timer_start(&C.timer, on_bound, 120000, 0);
    if ((r = http_pool_new(&B.loop, &B.url, B.o.clients, &events, NULL, &C.pool))) {
        fprintf(stderr, "herald-bench: %s\n", herald_strerror(r));
        return 1;
    }
    C.t_setup = uv_hrtime();
    put_stock();
    uv_run(&B.loop, UV_RUN_DEFAULT);
    uv_loop_close(&B.loop);
    if (B.fatal[0]) fprintf(stderr, "herald-bench: %s\n", B.fatal);
    if (B.fatal[0] && C.phase != CP_CHECK && B.o.json)
        printf("{\"scenario\":\"%s\",\"ok\":false,\"error\":\"%s\"}\n", payments ? "payments" : "orders",
               report_json_safe(B.fatal));
    fflush(stdout);
    free(C.slots);
    free(C.sold);
    free(C.answered);
    hist_free(C.lat);
    hist_free(C.lat_create);
    hist_free(C.lat_move);
    return B.exit_code;
}

static int orders_run(void) { return commerce_run(0); }
static int payments_run(void) { return commerce_run(1); }

static void commerce_defaults(struct opts *o)
{
    o->clients = 16;
    o->duration = 5;
}

static int orders_check(struct opts *o, uint64_t given, char *why, size_t n)
{
    (void)given;
    if ((uint64_t)o->skus * 48 > 10000000) { snprintf(why, n, "--skus %u: too many", o->skus); return -1; }
    return 0;
}

static int payments_check(struct opts *o, uint64_t given, char *why, size_t n)
{
    if (!(given & BF(SECRET))) {
        snprintf(why, n, "payments needs --secret, the broker's [adapter commerce] webhook_secret");
        return -1;
    }
    if (o->stock < o->orders) {
        snprintf(why, n, "--stock %u is below --orders %u: every order takes one unit", o->stock, o->orders);
        return -1;
    }
    return 0;
}

const struct bench_scenario bench_orders = {
    .name = "orders",
    .summary = "orders per second through the commerce adapter: K REST clients in closed loops each create an "
               "order reserving one unit of a SKU, then move it to PAID (every 10th to PAYMENT_FAILED, which "
               "gives the unit back); one hot SKU (--skus 1) or many; reports orders/s and p50/p99 latency, "
               "then checks that the broker's stock is the initial stock minus what was sold",
    .example = "herald-bench orders --url ws://127.0.0.1:8080/ws --clients 16 --skus 1 --duration 10",
    .notes = "\nThe broker needs [adapter commerce] enabled = on (--commerce on) and, unless the bench runs on\n"
             "loopback (rate_limit_exempt), --rest-per-minute 0. With API keys configured it is refused.\n"
             "A create refused because the SKU sold out (409, code 124) is counted as sold out.\n",
    .flags = BF(URL) | BF(DURATION) | BF(JSON) | BF(QUIET) | BF(HELP) | BF(CLIENTS) | BF(SKUS) | BF(STOCK),
    .defaults = commerce_defaults,
    .check_opts = orders_check,
    .run = orders_run,
};

const struct bench_scenario bench_payments = {
    .name = "payments",
    .summary = "signed payment webhooks ingested per second: --orders orders are created first, then K REST "
               "clients post payment.succeeded / payment.failed events to POST /api/commerce/payments, each "
               "signed with HMAC-SHA256 of \"t.body\" (--secret), every 10th re-sending an answered event id "
               "(must be answered as a duplicate); reports events/s and p50/p99 latency and checks the stock",
    .example = "herald-bench payments --url ws://127.0.0.1:8080/ws --secret whsec_bench --clients 16 --orders 20000",
    .notes = "\nThe broker needs --commerce on and --commerce-webhook-secret equal to --secret. The run ends\n"
             "after --duration or once every order had its event, whichever comes first.\n",
    .flags = BF(URL) | BF(DURATION) | BF(JSON) | BF(QUIET) | BF(HELP) | BF(CLIENTS) | BF(STOCK) | BF(ORDERS) |
             BF(SECRET),
    .defaults = commerce_defaults,
    .check_opts = payments_check,
    .run = payments_run,
};
