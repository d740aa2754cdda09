/* bench/ssefan.c - the sse scenario: fan-out of one channel to N Server-Sent
 * Events streams and to N WebSocket subscribers, in the same run.
 *
 * Owns: its entry (struct bench_scenario, scenario.h), its driver (the
 * streams, the WebSocket subscribers and the publisher, the open-loop
 * schedule, the drain), the accounting per kind of client and its report.
 * Does not own: the WebSocket protocol (the client library, clients/), the
 * file-descriptor limit (loop.c's loop_fd_limit()), flags (main.c),
 * histograms (hist.c).
 *
 * DESIGN: every client, of both kinds, subscribes to the same channel
 * <ns>:sse-<RUN>, so each publication is fanned out by the broker to both
 * kinds at once and their figures are comparable: same publications, same
 * moment, same broker load. One WebSocket publisher sends --rate publications
 * per second on an open-loop schedule (publication i is due at
 * start + i/rate and carries that scheduled time, so a stall shows up as
 * latency rather than as a lower rate; a 1 ms timer sends what is due).
 * The data is a JSON string: 16 hex digits of scheduled time (ns since the
 * bench started), 8 of sequence number, then padding up to --size bytes.
 * An SSE stream is a plain TCP connection reading GET /api/sse?channel=...
 * (the broker answers with a raw event stream, Connection: close); its
 * `pub` events carry the same JSON as a WebSocket `pub`, from which the
 * offset and the payload are read. A delivery's latency is the time the
 * bytes holding it were read minus its scheduled time. Each client checks
 * that offsets come in order without a gap or a duplicate. After --duration
 * the run drains until every client has every acknowledged publication or
 * --drain-timeout passes; anything missing then fails the run.
 *
 * Everything runs on the loop's thread. */
#include "scenario.h"
#include "loop.h"
#include "report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { K_SSE = 0, K_WS = 1, NKINDS };
enum { SP_SETUP = 0, SP_RUN, SP_DRAIN, SP_TEARDOWN, SP_DONE };
enum { C_NEW = 0, C_CONNECTING, C_HEADERS, C_WAIT_SUB, C_READY, C_CLOSED };

/* One SSE stream. */
struct ssec {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t state;
    uint64_t last_off;
    uint64_t t_connect;
    char *buf;
    uint32_t len, cap;
};

/* One WebSocket subscriber. */
struct wsc {
    herald_client_t *c;
    uint8_t state;
    uint64_t last_off;
    uint64_t t_connect;
};

struct kind {
    const char *name;
    uint32_t n, started, ready, failed, lost, closed;
    uint64_t delivered, gaps, dups, bad, out_of_run;
    uint64_t t_last_rx;
    hist_t *lat, *connect;
};

static struct {
    char channel[96];
    size_t chlen;
    char request[512];          /* the SSE GET, the same for every stream */
    size_t reqlen;
    struct ssec *sse;
    struct wsc *ws;
    struct kind k[NKINDS];
    herald_client_t *pub;
    int pub_ready, pub_closed;
    int phase;
    uint32_t inflight;          /* connection attempts under way */
    uint64_t setup_start, setup_end;
    uint64_t t_start, t_end, total, published, acked, pub_errors;
    char *payload;              /* the JSON string being published */
    size_t plen;
    uv_timer_t tick, bound;
    uint32_t live;              /* TCP handles and clients not yet closed */
    char first_error[240];
    uint64_t t_teardown;
} S;

static herald_opts_t wsopts;
static void teardown(void);

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
    teardown();
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
    va_list ap;

    if (S.first_error[0]) return;
    va_start(ap, fmt);
    vsnprintf(S.first_error, sizeof S.first_error, fmt, ap);
    va_end(ap);
}

/* Reads 16 + 8 hex digits at @s (@n bytes): the scheduled time and sequence number. */
static int payload_read(const char *s, size_t n, uint64_t *ts, uint64_t *seq)
{
    uint64_t v = 0;

    if (n < 24) return -1;
    for (int i = 0; i < 24; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        v = v << 4 | (uint64_t)d;
        if (i == 15) { *ts = v; v = 0; }
    }
    *seq = v;
    return 0;
}

/* One delivery of @kind with @offset and payload @s (@n bytes), read at @rx;
 * @last: the client's last offset. */
static void delivered(int kind, uint64_t *last, uint64_t offset, const char *s, size_t n, uint64_t rx)
{
    struct kind *k = &S.k[kind];
    uint64_t ts = 0, seq = 0;

    if (payload_read(s, n, &ts, &seq) || seq >= S.published) { k->bad++; return; }
    if (offset <= *last) k->dups++;
    else if (*last && offset != *last + 1) k->gaps += offset - *last - 1;
    if (offset > *last) *last = offset;
    if (S.phase != SP_RUN && S.phase != SP_DRAIN) { k->out_of_run++; return; }
    k->delivered++;
    hist_record(k->lat, rx > B.t0 + ts ? rx - (B.t0 + ts) : 0);
    if (rx > k->t_last_rx) k->t_last_rx = rx;
}

/* ---- setup: starting connections ---- */

static void start_more(void);

static void setup_check(void)
{
    if (S.phase != SP_SETUP) return;
    if (S.k[K_SSE].started < S.k[K_SSE].n || S.k[K_WS].started < S.k[K_WS].n || S.inflight || !S.pub_ready) return;
    S.setup_end = uv_hrtime();
    if (S.k[K_SSE].failed || S.k[K_WS].failed) {
        fail("%u SSE streams and %u WebSocket subscribers failed to set up; first: %s", S.k[K_SSE].failed,
             S.k[K_WS].failed, S.first_error);
        return;
    }
    S.phase = SP_RUN;
    S.t_start = uv_hrtime();
}

static void conn_done(int kind, int ok, uint64_t t_connect)
{
    struct kind *k = &S.k[kind];

    S.inflight--;
    if (ok) {
        k->ready++;
        hist_record(k->connect, uv_hrtime() - t_connect);
    } else {
        k->failed++;
    }
    start_more();
    setup_check();
}

/* ---- SSE streams ---- */

static void sse_closed(uv_handle_t *h)
{
    struct ssec *c = h->data;
    free(c->buf);
    c->buf = NULL;
    S.live--;
    if (S.phase == SP_TEARDOWN) teardown();
}

static void sse_close(struct ssec *c, const char *why)
{
    uint8_t was = c->state;
    struct kind *k = &S.k[K_SSE];

    if (c->state == C_CLOSED) return;
    c->state = C_CLOSED;
    k->closed++;
    uv_close((uv_handle_t *)&c->tcp, sse_closed);
    if (S.phase >= SP_TEARDOWN) return;
    if (was != C_READY) {
        note_error("an SSE stream: %s", why);
        conn_done(K_SSE, 0, 0);
    } else {
        k->lost++;
        note_error("an SSE stream was closed: %s", why);
    }
}

static void sse_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *out)
{
    struct ssec *c = h->data;
    (void)sugg;
    if (c->cap - c->len < 2048) {
        uint32_t ncap = c->cap ? c->cap * 2 : 4096;
        char *nb = realloc(c->buf, ncap);
        if (!nb) { *out = uv_buf_init(NULL, 0); return; }
        c->buf = nb;
        c->cap = ncap;
    }
    *out = uv_buf_init(c->buf + c->len, c->cap - c->len);
}

/* The value of the line "@name: ..." in event @e (@n bytes), or NULL. */
static const char *field(const char *e, size_t n, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = e, *end = e + n, *eol;

    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl + 1 && !memcmp(p, name, nl) && p[nl] == ':' && p[nl + 1] == ' ') {
            *len = (size_t)(eol - p) - nl - 2;
            return p + nl + 2;
        }
        p = eol + 1;
    }
    return NULL;
}

/* One event (the lines before a blank line, @n bytes at @e). */
static void sse_event(struct ssec *c, const char *e, size_t n, uint64_t rx)
{
    size_t elen = 0, dlen = 0;
    const char *ev = field(e, n, "event", &elen), *data = field(e, n, "data", &dlen), *p, *end;

    if (!ev) return;                            /* retry:, a comment */
    end = data ? data + dlen : NULL;
    if (elen == 3 && !memcmp(ev, "pub", 3)) {
        uint64_t off;
        if (!data || !(p = memmem(data, dlen, "\"offset\":", 9))) { S.k[K_SSE].bad++; return; }
        off = strtoull(p + 9, NULL, 10);
        if (!(p = memmem(data, dlen, "\"data\":\"", 8))) { S.k[K_SSE].bad++; return; }
        p += 8;
        delivered(K_SSE, &c->last_off, off, p, (size_t)(end - p), rx);
    } else if (elen == 10 && !memcmp(ev, "subscribed", 10)) {
        if (c->state == C_WAIT_SUB) {
            if (data && (p = memmem(data, dlen, "\"offset\":", 9))) c->last_off = strtoull(p + 9, NULL, 10);
            c->state = C_READY;
            conn_done(K_SSE, 1, c->t_connect);
        }
    } else if (elen == 12 && !memcmp(ev, "herald-error", 12)) {
        note_error("an SSE stream got herald-error %.*s", (int)(dlen > 150 ? 150 : dlen), data ? data : "");
    }
}

static void sse_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct ssec *c = s->data;
    uint64_t rx = uv_hrtime();
    char *p, *q, *end;

    (void)b;
    if (nread == 0) return;
    if (nread < 0) { sse_close(c, nread == UV_EOF ? "the broker ended it" : uv_strerror((int)nread)); return; }
    c->len += (uint32_t)nread;
    p = c->buf;
    end = c->buf + c->len;
    if (c->state == C_HEADERS) {
        if (!(q = memmem(p, (size_t)(end - p), "\r\n\r\n", 4))) return;
        if (end - p < 12 || memcmp(p, "HTTP/1.1 200", 12)) {
            char why[200];
            q = memmem(p, (size_t)(end - p), "\r\n", 2);
            snprintf(why, sizeof why, "answered %.*s", (int)(q - p > 100 ? 100 : q - p), p);
            sse_close(c, why);
            return;
        }
        c->state = C_WAIT_SUB;
        p = q + 4;
    }
    while (p < end && (q = memmem(p, (size_t)(end - p), "\n\n", 2))) {
        sse_event(c, p, (size_t)(q - p) + 1, rx);
        if (c->state == C_CLOSED) return;
        p = q + 2;
    }
    c->len = (uint32_t)(end - p);
    memmove(c->buf, p, c->len);
}

static void sse_written(uv_write_t *w, int status)
{
    struct ssec *c = w->data;
    if (status < 0) sse_close(c, uv_strerror(status));
}

static void sse_connected(uv_connect_t *r, int status)
{
    struct ssec *c = r->data;
    uv_buf_t b = uv_buf_init(S.request, (unsigned)S.reqlen);
    int e;

    if (status == UV_ECANCELED || c->state == C_CLOSED) return;
    if (status < 0) { sse_close(c, uv_strerror(status)); return; }
    c->state = C_HEADERS;
    c->wreq.data = c;
    if ((e = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, sse_written)) ||
        (e = uv_read_start((uv_stream_t *)&c->tcp, sse_alloc, sse_read)))
        sse_close(c, uv_strerror(e));
}

static void sse_start(struct ssec *c)
{
    int e;

    c->tcp.data = c->creq.data = c;
    c->state = C_CONNECTING;
    c->t_connect = uv_hrtime();
    uv_tcp_init(&B.loop, &c->tcp);
    S.live++;
    if ((e = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&B.url.addr, sse_connected)))
        sse_close(c, uv_strerror(e));
}

/* ---- WebSocket subscribers and the publisher ---- */

static void ws_subscribed(herald_client_t *hc, const herald_msg_t *m, void *arg)
{
    struct wsc *w = arg;
    (void)hc;
    if (w->state != C_WAIT_SUB) return;
    if (m->op != HERALD_OP_SUBSCRIBED) {
        note_error("a WebSocket subscribe was answered with error %d", m->code);
        w->state = C_CLOSED;
        herald_close(w->c, 1000, "");
        conn_done(K_WS, 0, 0);
        return;
    }
    w->last_off = m->offset;
    w->state = C_READY;
    conn_done(K_WS, 1, w->t_connect);
}

static void ws_open(herald_client_t *hc, const herald_msg_t *m, void *ud)
{
    struct wsc *w = ud;
    (void)m;
    w->state = C_WAIT_SUB;
    if (herald_subscribe(hc, S.channel, S.chlen, ws_subscribed, w, NULL)) {
        w->state = C_CLOSED;
        herald_close(hc, 1000, "");
        conn_done(K_WS, 0, 0);
    }
}

static void ws_pub(herald_client_t *hc, const herald_msg_t *m, void *ud)
{
    struct wsc *w = ud;
    const char *s;
    size_t n;

    (void)hc;
    if (herald_decode_str(HERALD_JSON, m->data, m->data_len, &s, &n)) { S.k[K_WS].bad++; return; }
    delivered(K_WS, &w->last_off, m->offset, s, n, m->rx_ns);
}

static void ws_close(herald_client_t *hc, const herald_close_info_t *info, void *ud)
{
    struct wsc *w = ud;
    uint8_t was = w->state;

    (void)hc;
    w->c = NULL;
    w->state = C_CLOSED;
    S.k[K_WS].closed++;
    S.live--;
    if (S.phase >= SP_TEARDOWN) { teardown(); return; }
    if (was == C_READY) {
        S.k[K_WS].lost++;
        note_error("a WebSocket subscriber was closed: %d %s", info->code, info->reason);
    } else if (was != C_CLOSED) {
        note_error("a WebSocket subscriber could not connect: %s",
                   info->err ? herald_strerror(info->err) : info->reason);
        conn_done(K_WS, 0, 0);
    }
}

static const herald_callbacks_t ws_cb = { .on_open = ws_open, .on_pub = ws_pub, .on_close = ws_close };

static void pub_open(herald_client_t *hc, const herald_msg_t *m, void *ud)
{
    (void)hc; (void)m; (void)ud;
    S.pub_ready = 1;
    setup_check();
}

static void pub_close(herald_client_t *hc, const herald_close_info_t *info, void *ud)
{
    (void)hc; (void)ud;
    S.pub = NULL;
    S.pub_closed = 1;
    S.live--;
    if (S.phase >= SP_TEARDOWN) { teardown(); return; }
    fail("the publisher's connection closed: %s", info->err ? herald_strerror(info->err) : info->reason);
}

static const herald_callbacks_t pub_cb = { .on_open = pub_open, .on_close = pub_close };

static void start_more(void)
{
    while (S.phase == SP_SETUP && S.inflight < B.o.concurrency &&
           (S.k[K_SSE].started < S.k[K_SSE].n || S.k[K_WS].started < S.k[K_WS].n)) {
        /* Alternate the kinds, so neither gets the broker's quieter moments. */
        int kind = S.k[K_SSE].started >= S.k[K_SSE].n ? K_WS
                 : S.k[K_WS].started >= S.k[K_WS].n ? K_SSE
                 : S.k[K_SSE].started <= S.k[K_WS].started ? K_SSE : K_WS;
        uint32_t i = S.k[kind].started++;
        S.inflight++;
        if (kind == K_SSE) {
            sse_start(&S.sse[i]);
        } else {
            struct wsc *w = &S.ws[i];
            w->state = C_CONNECTING;
            w->t_connect = uv_hrtime();
            if (herald_client_new(B.hctx, &B.url, &wsopts, &ws_cb, w, &w->c)) {
                w->c = NULL;
                w->state = C_CLOSED;
                note_error("a WebSocket subscriber could not start");
                conn_done(K_WS, 0, 0);
            } else {
                S.live++;
            }
        }
    }
}

/* ---- the run ---- */

static void on_published(herald_client_t *hc, const herald_msg_t *m, void *arg)
{
    (void)hc; (void)arg;
    if (m->op == HERALD_OP_PUBLISHED) S.acked++;
    else {
        S.pub_errors++;
        note_error("a publication was answered with error %d", m->code);
    }
}

static void publish_due(uint64_t now)
{
    double rate = B.o.rates[0];
    uint64_t due = (uint64_t)((double)(now - S.t_start) * rate / 1e9) + 1;

    if (due > S.total) due = S.total;
    while (S.published < due) {
        uint64_t seq = S.published;
        uint64_t ts = S.t_start + (uint64_t)((double)seq * 1e9 / rate) - B.t0;
        char hex[32];
        snprintf(hex, sizeof hex, "%016llx%08llx", (unsigned long long)ts, (unsigned long long)(seq & 0xffffffffu));
        memcpy(S.payload + 1, hex, 24);
        S.published++;
        if (herald_publish(S.pub, S.channel, S.chlen, S.payload, S.plen, on_published, NULL, NULL)) {
            S.pub_errors++;
            note_error("a publication could not be sent");
        }
    }
}

static int complete(void)
{
    for (int k = 0; k < NKINDS; k++)
        if (S.k[k].delivered < S.acked * (uint64_t)(S.k[k].ready - S.k[k].lost)) return 0;
    return S.acked + S.pub_errors == S.published;
}

static void report_out(void);

static void on_tick(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();

    (void)t;
    if (S.phase == SP_RUN) {
        publish_due(now);
        if (now >= S.t_start + (uint64_t)(B.o.duration * 1e9) && S.published == S.total) {
            S.phase = SP_DRAIN;
            S.t_end = now;
        }
    }
    if (S.phase == SP_DRAIN && (complete() || now > S.t_end + (uint64_t)(B.o.drain_timeout * 1e9))) {
        report_out();
        teardown();
    }
}

static void on_bound(uv_timer_t *t)
{
    (void)t;
    if (S.phase == SP_TEARDOWN) {
        /* Closing takes too long: abort what is left. */
        for (uint32_t i = 0; i < S.k[K_WS].n; i++)
            if (S.ws[i].c) herald_client_abort(S.ws[i].c);
        if (S.pub) herald_client_abort(S.pub);
        return;
    }
    fail("time bound exceeded (phase %d: %u SSE and %u WebSocket ready of %u and %u)", S.phase, S.k[K_SSE].ready,
         S.k[K_WS].ready, S.k[K_SSE].n, S.k[K_WS].n);
}

static void handle_closed(uv_handle_t *h) { (void)h; }

/* Closes everything; called again from close callbacks until all is closed. */
static void teardown(void)
{
    if (S.phase == SP_DONE) return;
    if (S.phase != SP_TEARDOWN) {
        S.phase = SP_TEARDOWN;
        uv_timer_stop(&S.tick);
        uv_timer_start(&S.bound, on_bound, 3000, 3000);
        for (uint32_t i = 0; i < S.k[K_SSE].started; i++)
            if (S.sse[i].state != C_CLOSED) sse_close(&S.sse[i], "teardown");
        for (uint32_t i = 0; i < S.k[K_WS].started; i++)
            if (S.ws[i].c && S.ws[i].state != C_CLOSED) { S.ws[i].state = C_CLOSED; herald_close(S.ws[i].c, 1000, ""); }
        if (S.pub) herald_close(S.pub, 1000, "");
    }
    if (S.live) return;
    S.phase = SP_DONE;
    uv_close((uv_handle_t *)&S.tick, handle_closed);
    uv_close((uv_handle_t *)&S.bound, handle_closed);
    herald_ctx_free(B.hctx);
    B.hctx = NULL;
}

/* ---- the report ---- */

static double secs(uint64_t a, uint64_t b) { return b > a ? (double)(b - a) / 1e9 : 0; }

static double dps(const struct kind *k)
{
    uint64_t end = k->t_last_rx > S.t_end ? k->t_last_rx : S.t_end;
    double s = secs(S.t_start, end);
    return s > 0 ? (double)k->delivered / s : 0;
}

static uint64_t expected(const struct kind *k) { return S.acked * (uint64_t)(k->ready - k->lost); }

static int kind_ok(const struct kind *k)
{
    return !k->gaps && !k->dups && !k->bad && !k->lost && !k->failed && k->delivered == expected(k);
}

static void report_out(void)
{
    FILE *f = stdout;
    int ok = kind_ok(&S.k[K_SSE]) && kind_ok(&S.k[K_WS]) && !S.pub_errors && S.acked == S.published;

    if (!ok) B.exit_code = 1;
    if (B.o.json) {
        fprintf(f, "{\"scenario\":\"sse\",\"url\":\"%s\",", report_json_safe(B.o.url));
        fprintf(f, "\"channel\":\"%s\",\"rate\":%.1f,\"size\":%u,"
                   "\"seconds\":%.3f,\"setup_seconds\":%.3f,\"published\":%llu,\"acked\":%llu,\"publish_errors\":%llu",
                report_json_safe(S.channel), B.o.rates[0], B.o.size,
                secs(S.t_start, S.t_end), secs(S.setup_start, S.setup_end), (unsigned long long)S.published,
                (unsigned long long)S.acked, (unsigned long long)S.pub_errors);
        for (int i = 0; i < NKINDS; i++) {
            const struct kind *k = &S.k[i];
            fprintf(f, ",\"%s\":{\"clients\":%u,\"ready\":%u,\"failed\":%u,\"lost\":%u,\"delivered\":%llu,"
                       "\"expected\":%llu,\"deliveries_per_sec\":%.1f,\"gaps\":%llu,\"duplicates\":%llu,"
                       "\"unreadable\":%llu,", k->name, k->n, k->ready, k->failed, k->lost,
                    (unsigned long long)k->delivered, (unsigned long long)expected(k), dps(k),
                    (unsigned long long)k->gaps, (unsigned long long)k->dups, (unsigned long long)k->bad);
            report_json_lat(f, "latency_ms", k->lat);
            fprintf(f, ",");
            report_json_lat(f, "connect_ms", k->connect);
            fprintf(f, "}");
        }
        fprintf(f, ",\"first_error\":");
        if (S.first_error[0]) fprintf(f, "\"%s\"", report_json_safe(S.first_error));
        else fprintf(f, "null");
        fprintf(f, ",\"ok\":%s}\n", ok ? "true" : "false");
        return;
    }
    fprintf(f, "herald-bench sse %s  channel %s  rate %.0f/s  size %u\n", B.o.url, S.channel, B.o.rates[0], B.o.size);
    fprintf(f, "  setup       %u SSE streams + %u WebSocket subscribers + 1 publisher in %.2f s\n", S.k[K_SSE].ready,
            S.k[K_WS].ready, secs(S.setup_start, S.setup_end));
    fprintf(f, "  published   %llu, acked %llu in %.2f s\n", (unsigned long long)S.published,
            (unsigned long long)S.acked, secs(S.t_start, S.t_end));
    fprintf(f, "  %-4s %7s %21s %13s %9s %9s %9s %9s %5s %5s %5s\n", "kind", "clients", "delivered/expected",
            "deliveries/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "gaps", "dups", "lost");
    for (int i = 0; i < NKINDS; i++) {
        const struct kind *k = &S.k[i];
        char de[48];
        snprintf(de, sizeof de, "%llu/%llu", (unsigned long long)k->delivered, (unsigned long long)expected(k));
        fprintf(f, "  %-4s %7u %21s %13.0f %9.2f %9.2f %9.2f %9.2f %5llu %5llu %5u\n", k->name, k->ready, de, dps(k),
                report_ms(hist_percentile(k->lat, 50)), report_ms(hist_percentile(k->lat, 90)),
                report_ms(hist_percentile(k->lat, 99)), report_ms(k->lat->max), (unsigned long long)k->gaps,
                (unsigned long long)k->dups, k->lost);
    }
    if (S.first_error[0]) fprintf(f, "  first error: %s\n", S.first_error);
    fprintf(f, "%s\n", ok ? "ok" : "FAILED");
}

/* ---- the entry ---- */

static int sse_run(void)
{
    herald_url_t *u = &B.url;
    int r;
    uint32_t need;

    memset(&S, 0, sizeof S);
    S.k[K_SSE].name = "sse";
    S.k[K_WS].name = "ws";
    S.k[K_SSE].n = B.o.sse;
    S.k[K_WS].n = B.o.subscribers;
    need = S.k[K_SSE].n + S.k[K_WS].n + 64;
    if (loop_fd_limit(need, S.k[K_SSE].n + S.k[K_WS].n, "SSE streams and WebSocket subscribers")) return 2;
    if ((r = herald_url_parse(B.o.url, u))) {
        fprintf(stderr, "herald-bench: --url %s: %s\n", B.o.url, herald_strerror(r));
        return 2;
    }
    snprintf(B.run_id, sizeof B.run_id, "%08x", (unsigned)(getpid() ^ (uint32_t)uv_hrtime()));
    S.chlen = (size_t)snprintf(S.channel, sizeof S.channel, "%s:sse-%s", B.o.ns, B.run_id);
    S.reqlen = (size_t)snprintf(S.request, sizeof S.request,
                                "GET /api/sse?channel=%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
                                S.channel, u->host);
    S.plen = B.o.size + 2;
    S.sse = calloc(S.k[K_SSE].n ? S.k[K_SSE].n : 1, sizeof *S.sse);
    S.ws = calloc(S.k[K_WS].n ? S.k[K_WS].n : 1, sizeof *S.ws);
    S.payload = malloc(S.plen + 1);
    for (int i = 0; i < NKINDS; i++) {
        S.k[i].lat = hist_new();
        S.k[i].connect = hist_new();
        if (!S.k[i].lat || !S.k[i].connect) S.sse = NULL;
    }
    if (!S.sse || !S.ws || !S.payload || uv_loop_init(&B.loop) || herald_ctx_new(&B.loop, &B.hctx)) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return 1;
    }
    memset(S.payload, 'x', S.plen);
    S.payload[0] = S.payload[S.plen - 1] = '"';
    S.payload[S.plen] = '\0';
    S.total = (uint64_t)(B.o.duration * B.o.rates[0]);
    if (!S.total) S.total = 1;
    wsopts = (herald_opts_t){ .encoding = HERALD_JSON, .connect_timeout_ms = (unsigned)(B.o.connect_timeout * 1000) };
    B.t0 = uv_hrtime();
    uv_timer_init(&B.loop, &S.tick);
    uv_timer_init(&B.loop, &S.bound);
    uv_timer_start(&S.tick, on_tick, 1, 1);
    /* Setup, run and drain together are bounded: 120 s of setup at most. */
    uv_timer_start(&S.bound, on_bound,
                   120000 + (uint64_t)(B.o.duration * 1000) + (uint64_t)(B.o.drain_timeout * 1000) + 5000, 0);
    S.setup_start = uv_hrtime();
    if (herald_client_new(B.hctx, u, &wsopts, &pub_cb, NULL, &S.pub)) {
        fprintf(stderr, "herald-bench: cannot start the publisher's connection\n");
        return 1;
    }
    S.live++;
    start_more();
    uv_run(&B.loop, UV_RUN_DEFAULT);
    uv_loop_close(&B.loop);
    if (B.fatal[0]) {
        fprintf(stderr, "herald-bench: %s\n", B.fatal);
        if (B.o.json && S.t_start == 0)
            printf("{\"scenario\":\"sse\",\"ok\":false,\"error\":\"%s\"}\n", report_json_safe(B.fatal));
    }
    fflush(stdout);
    for (int i = 0; i < NKINDS; i++) {
        hist_free(S.k[i].lat);
        hist_free(S.k[i].connect);
    }
    free(S.sse);
    free(S.ws);
    free(S.payload);
    return B.exit_code;
}

static void sse_defaults(struct opts *o)
{
    o->subscribers = 1000;
    o->sse = (unsigned)-1;      /* as many as --subscribers, unless given */
    o->rates[0] = 100;
    o->duration = 5;
}

static int sse_check(struct opts *o, uint64_t given, char *why, size_t n)
{
    if (!(given & BF(SSE))) o->sse = o->subscribers;
    if (o->nrates != 1) { snprintf(why, n, "sse takes one --rate"); return -1; }
    if (o->size < 24) { snprintf(why, n, "--size %u: sse needs at least 24 bytes", o->size); return -1; }
    if (!o->sse && !o->subscribers) { snprintf(why, n, "no clients: give --sse or --subscribers"); return -1; }
    if (o->duration * o->rates[0] > 1e7) { snprintf(why, n, "--duration x --rate: at most 10 million publications"); return -1; }
    return 0;
}

const struct bench_scenario bench_sse = {
    .name = "sse",
    .summary = "fan-out to Server-Sent Events streams against WebSocket subscribers in the same run: --sse "
               "streams (GET /api/sse) and --subscribers WebSocket connections on one channel, one publisher at "
               "--rate, open loop; per kind: deliveries/s, p50/p99 delivery latency, and every publication "
               "delivered exactly once, in order",
    .example = "herald-bench sse --url ws://127.0.0.1:8080/ws --subscribers 1000 --sse 1000 --rate 100 --duration 10",
    .notes = "\nEach client needs a file descriptor in the bench and one in the broker: 10,000 of each kind\n"
             "need a hard limit above 20,000 for both processes (ulimit -Hn; the bench raises its soft limit).\n"
             "The channel is <namespace>:sse-<run>; its namespace must not be a state namespace.\n",
    .flags = BF(URL) | BF(DURATION) | BF(JSON) | BF(QUIET) | BF(HELP) | BF(SUBSCRIBERS) | BF(SSE) | BF(RATE) |
             BF(SIZE) | BF(CONCURRENCY) | BF(CONNECT_TIMEOUT) | BF(DRAIN_TIMEOUT) | BF(NAMESPACE),
    .defaults = sse_defaults,
    .check_opts = sse_check,
    .run = sse_run,
};
