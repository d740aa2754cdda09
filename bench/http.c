/* bench/http.c - see http.h.
 *
 * A request lives in one malloc'd block holding the whole HTTP message, from
 * http_request() until its callback has returned. A request that fails on
 * its connection is answered (status 0) from that connection's close
 * callback, so no callback ever runs inside http_request().
 *
 * A connection has one uv_write_t. libuv calls a write's callback on the
 * loop turn after the write finished, and over loopback the broker's answer
 * can be read before that, so a connection whose write callback is still due
 * waits for it (HC_ANSWERED) before it takes the next request: reusing the
 * request while libuv still holds it corrupts libuv's queue. Most requests
 * go out whole with uv_try_write() and need no uv_write_t at all. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { HC_CONNECTING = 0, HC_IDLE, HC_BUSY, HC_ANSWERED, HC_CLOSED };

/* At most this many reconnects over the pool's life: a broker that keeps
 * closing connections is a failure to report, not to retry forever. */
#define MAX_RECONNECTS 1000

struct req {
    struct req *next;
    http_done_cb cb;
    void *arg;
    size_t len;
    char buf[];                 /* the request: line, headers, body */
};

typedef struct hconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct http_pool *pool;
    int state;
    int ever_connected;
    int writing;                /* wreq is with libuv: its callback has not run yet */
    int in_idle;                /* on the idle list (possibly stale: see take_idle()) */
    struct req *cur;            /* the request in flight */
    char *rx;
    size_t rxlen, rxcap;
    struct hconn *next_idle;
} hconn_t;

struct http_pool {
    uv_loop_t *loop;
    const herald_url_t *url;
    const http_events_t *ev;
    void *ud;
    hconn_t *conns;
    unsigned n, open;           /* connections, and handles not yet closed */
    hconn_t *idle, *idle_tail;  /* FIFO, so that every connection keeps being used */
    struct req *qhead, *qtail;  /* waiting for a connection */
    uint64_t in_flight, reconnects;
    int failed;                 /* no more requests: it could not connect */
    int closing;                /* http_pool_close() was called */
};

static void conn_start(hconn_t *hc);
static void send_req(hconn_t *hc, struct req *r);

static void answer(http_pool_t *p, struct req *r, int status, const char *body, size_t len, uint64_t rx)
{
    p->in_flight--;
    r->cb(r->arg, status, body, len, rx);
    free(r);
}

static uint64_t fail_queue(http_pool_t *p, int status)
{
    uint64_t n = 0;

    while (p->qhead) {
        struct req *r = p->qhead;
        p->qhead = r->next;
        if (!p->qhead) p->qtail = NULL;
        answer(p, r, status, NULL, 0, uv_hrtime());
        n++;
    }
    return n;
}

static void pool_failed(http_pool_t *p, int err)
{
    if (p->failed || p->closing) return;
    p->failed = 1;
    fail_queue(p, 0);
    if (p->ev->on_failed) p->ev->on_failed(p->ud, err);
}

static void on_closed(uv_handle_t *h)
{
    hconn_t *hc = h->data;
    http_pool_t *p = hc->pool;
    struct req *r = hc->cur;

    hc->state = HC_CLOSED;
    hc->cur = NULL;
    free(hc->rx);
    hc->rx = NULL;
    hc->rxlen = hc->rxcap = 0;
    if (r) answer(p, r, 0, NULL, 0, uv_hrtime());
    if (!p->closing && !p->failed && hc->ever_connected && p->reconnects < MAX_RECONNECTS) {
        p->reconnects++;
        conn_start(hc);
        return;
    }
    if (!p->closing) pool_failed(p, HERALD_E_PROTOCOL);
    if (--p->open == 0 && p->closing) {
        const http_events_t *ev = p->ev;
        void *ud = p->ud;
        free(p->conns);
        free(p);
        if (ev->on_closed) ev->on_closed(ud);
    }
}

/* Drops the connection; a request in flight is answered from on_closed(). */
static void conn_fail(hconn_t *hc, int err)
{
    if (hc->state == HC_CLOSED || uv_is_closing((uv_handle_t *)&hc->tcp)) return;
    hc->state = HC_CLOSED;
    uv_close((uv_handle_t *)&hc->tcp, on_closed);
    /* Last: the user's on_failed may close the whole pool from inside. */
    if (!hc->ever_connected && !hc->pool->closing) pool_failed(hc->pool, err);
}

/* The next idle connection, or NULL. A connection that closed (and maybe
 * reopened) while on the list left a stale entry; it is skipped here, and
 * in_idle keeps one connection from being listed twice, which would put two
 * requests on it at once. */
static hconn_t *take_idle(http_pool_t *p)
{
    hconn_t *hc;

    while ((hc = p->idle)) {
        p->idle = hc->next_idle;
        if (!p->idle) p->idle_tail = NULL;
        hc->in_idle = 0;
        if (hc->state == HC_IDLE) return hc;
    }
    return NULL;
}

static void make_idle(hconn_t *hc)
{
    http_pool_t *p = hc->pool;
    struct req *r = p->qhead;

    hc->state = HC_IDLE;
    if (r) {
        p->qhead = r->next;
        if (!p->qhead) p->qtail = NULL;
        send_req(hc, r);
        return;
    }
    if (hc->in_idle) return;
    hc->in_idle = 1;
    hc->next_idle = NULL;
    if (p->idle_tail) p->idle_tail->next_idle = hc;
    else p->idle = hc;
    p->idle_tail = hc;
}

static void on_write(uv_write_t *w, int status)
{
    hconn_t *hc = w->data;

    hc->writing = 0;
    if (status < 0) conn_fail(hc, status);
    else if (hc->state == HC_ANSWERED && !hc->pool->closing) make_idle(hc);
}

static void send_req(hconn_t *hc, struct req *r)
{
    uv_buf_t b = uv_buf_init(r->buf, (unsigned)r->len);
    int n;

    hc->cur = r;
    hc->state = HC_BUSY;
    hc->rxlen = 0;
    n = uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
    if (n == (int)b.len) return;
    if (n < 0 && n != UV_EAGAIN) { conn_fail(hc, n); return; }
    if (n > 0) b = uv_buf_init(r->buf + n, b.len - (unsigned)n);
    hc->wreq.data = hc;
    hc->writing = 1;
    if ((n = uv_write(&hc->wreq, (uv_stream_t *)&hc->tcp, &b, 1, on_write))) {
        hc->writing = 0;
        conn_fail(hc, n);
    }
}

static void on_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
    hconn_t *hc = h->data;
    (void)sugg;

    if (hc->rxcap - hc->rxlen < 4096) {
        size_t ncap = hc->rxcap ? hc->rxcap * 2 : 16384;
        char *n = realloc(hc->rx, ncap);
        if (!n) { *buf = uv_buf_init(NULL, 0); return; }   /* libuv reports UV_ENOBUFS */
        hc->rx = n;
        hc->rxcap = ncap;
    }
    *buf = uv_buf_init(hc->rx + hc->rxlen, (unsigned)(hc->rxcap - hc->rxlen));
}

/* The value of header @name (lower case, with the colon) in [@s, @e), or NULL. */
static const char *header(const char *s, const char *e, const char *name)
{
    size_t nl = strlen(name);

    for (const char *l = s; l < e;) {
        const char *eol = memchr(l, '\n', (size_t)(e - l));
        if ((size_t)(e - l) > nl && !strncasecmp(l, name, nl)) {
            l += nl;
            while (l < e && (*l == ' ' || *l == '\t')) l++;
            return l;
        }
        if (!eol) break;
        l = eol + 1;
    }
    return NULL;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hconn_t *hc = s->data;
    http_pool_t *p = hc->pool;
    const char *hend, *v;
    size_t hlen, blen;
    struct req *r;
    int status, close_after;
    uint64_t now;

    (void)buf;
    if (nread == 0) return;
    if (nread < 0) { conn_fail(hc, (int)nread); return; }
    now = uv_hrtime();
    hc->rxlen += (size_t)nread;
    if (hc->state != HC_BUSY) { conn_fail(hc, HERALD_E_PROTOCOL); return; }
    if (!(hend = memmem(hc->rx, hc->rxlen, "\r\n\r\n", 4))) return;
    hlen = (size_t)(hend + 4 - hc->rx);
    if (hc->rxlen < 12 || strncmp(hc->rx, "HTTP/1.", 7) || header(hc->rx, hend, "transfer-encoding:") ||
        !(v = header(hc->rx, hend, "content-length:"))) {
        conn_fail(hc, HERALD_E_PROTOCOL);
        return;
    }
    status = atoi(hc->rx + 9);
    blen = strtoul(v, NULL, 10);
    if (hc->rxlen < hlen + blen) return;
    if (hc->rxlen > hlen + blen) { conn_fail(hc, HERALD_E_PROTOCOL); return; }   /* one request, one answer */
    v = header(hc->rx, hend, "connection:");
    close_after = v && !strncasecmp(v, "close", 5);
    r = hc->cur;
    hc->cur = NULL;
    hc->state = HC_ANSWERED;
    answer(p, r, status, hc->rx + hlen, blen, now);
    hc->rxlen = 0;
    if (p->closing || hc->state != HC_ANSWERED) return;
    if (close_after) conn_fail(hc, 0);
    else if (!hc->writing) make_idle(hc);       /* else on_write() does it */
}

static void on_connect(uv_connect_t *req, int status)
{
    hconn_t *hc = req->data;
    int e;

    if (status == UV_ECANCELED) return;
    if (status < 0) { conn_fail(hc, status); return; }
    uv_tcp_nodelay(&hc->tcp, 1);
    if ((e = uv_read_start((uv_stream_t *)&hc->tcp, on_alloc, on_read))) { conn_fail(hc, e); return; }
    if (!hc->ever_connected) {
        hc->ever_connected = 1;
        if (hc->pool->ev->on_connected) hc->pool->ev->on_connected(hc->pool->ud);
    }
    if (hc->pool->closing) return;
    make_idle(hc);
}

static void conn_start(hconn_t *hc)
{
    int e;

    hc->state = HC_CONNECTING;
    uv_tcp_init(hc->pool->loop, &hc->tcp);
    hc->tcp.data = hc->creq.data = hc;
    if ((e = uv_tcp_connect(&hc->creq, &hc->tcp, (const struct sockaddr *)&hc->pool->url->addr, on_connect)))
        conn_fail(hc, e);
}

int http_pool_new(uv_loop_t *loop, const herald_url_t *url, unsigned n, const http_events_t *ev, void *ud,
                  http_pool_t **out)
{
    http_pool_t *p = calloc(1, sizeof *p);

    if (!p || !(p->conns = calloc(n ? n : 1, sizeof *p->conns))) {
        free(p);
        return UV_ENOMEM;
    }
    p->loop = loop;
    p->url = url;
    p->ev = ev;
    p->ud = ud;
    p->n = p->open = n;
    *out = p;
    for (unsigned i = 0; i < n; i++) {
        p->conns[i].pool = p;
        conn_start(&p->conns[i]);
    }
    return 0;
}

int http_request(http_pool_t *p, const char *method, const char *target, const char *body, size_t blen,
                 http_done_cb cb, void *arg)
{
    return http_request_hdr(p, method, target, NULL, body, blen, cb, arg);
}

int http_request_hdr(http_pool_t *p, const char *method, const char *target, const char *headers,
                     const char *body, size_t blen, http_done_cb cb, void *arg)
{
    size_t room = strlen(method) + strlen(target) + strlen(p->url->host) + (headers ? strlen(headers) : 0) + 160 +
                  blen;
    struct req *r;
    int hl;
    hconn_t *hc;

    if (p->failed || p->closing) return HERALD_E_STATE;
    if (!(r = malloc(sizeof *r + room))) return UV_ENOMEM;
    hl = snprintf(r->buf, room, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s"
                  "Content-Length: %zu\r\n\r\n", method, target, p->url->host, headers ? headers : "", blen);
    if (hl < 0 || (size_t)hl + blen > room) { free(r); return UV_ENOMEM; }
    if (blen) memcpy(r->buf + hl, body, blen);
    r->len = (size_t)hl + blen;
    r->cb = cb;
    r->arg = arg;
    r->next = NULL;
    p->in_flight++;
    if ((hc = take_idle(p))) {
        send_req(hc, r);
        return 0;
    }
    if (p->qtail) p->qtail->next = r;
    else p->qhead = r;
    p->qtail = r;
    return 0;
}

uint64_t http_cancel_queued(http_pool_t *p)
{
    return p ? fail_queue(p, HTTP_CANCELLED) : 0;
}

uint64_t http_in_flight(const http_pool_t *p) { return p ? p->in_flight : 0; }
uint64_t http_reconnects(const http_pool_t *p) { return p ? p->reconnects : 0; }

void http_pool_close(http_pool_t *p)
{
    if (p->closing) return;
    p->closing = 1;
    fail_queue(p, 0);
    p->idle = p->idle_tail = NULL;
    for (unsigned i = 0; i < p->n; i++) {
        hconn_t *hc = &p->conns[i];
        struct req *r = hc->cur;
        hc->cur = NULL;
        if (r) answer(p, r, 0, NULL, 0, uv_hrtime());
        if (hc->state != HC_CLOSED && !uv_is_closing((uv_handle_t *)&hc->tcp)) {
            hc->state = HC_CLOSED;
            uv_close((uv_handle_t *)&hc->tcp, on_closed);
        }
    }
    if (p->open == 0) {
        const http_events_t *ev = p->ev;
        void *ud = p->ud;
        free(p->conns);
        free(p);
        if (ev->on_closed) ev->on_closed(ud);
    }
}
