/* bench/rest.c - see rest.h. */
#include "rest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { RC_CONNECTING = 0, RC_IDLE, RC_BUSY, RC_CLOSED };

struct item {
    uint64_t seq, ts;
};

typedef struct rest_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct rest_pool *pool;
    int state;
    int ever_connected;
    int close_after;           /* the server said Connection: close */
    uint64_t seq;              /* the request in flight */
    char *rx;
    size_t rxlen, rxcap;
    char *tx;
    size_t txcap;
    struct rest_conn *next_idle;
} rest_conn_t;

struct rest_pool {
    uv_loop_t *loop;
    const herald_url_t *url;
    herald_encoding_t enc;
    size_t data_max;
    const rest_events_t *ev;
    rest_conn_t *conns;
    unsigned n, open;
    rest_conn_t *idle;
    struct item *q;            /* ring of queued publications */
    size_t qhead, qlen, qcap;
    int closing;
    int released;              /* rest_pool_close() was called: free when all are closed */
    uint64_t http_errors, reconnects;
};

static void conn_start(rest_conn_t *rc);

static void pool_free(rest_pool_t *p)
{
    free(p->q);
    free(p->conns);
    free(p);
}

static void on_conn_closed(uv_handle_t *h)
{
    rest_conn_t *rc = h->data;
    rest_pool_t *p = rc->pool;

    rc->state = RC_CLOSED;
    free(rc->rx);
    free(rc->tx);
    rc->rx = rc->tx = NULL;
    rc->rxlen = rc->rxcap = rc->txcap = 0;
    if (!p->closing && p->reconnects < 1000) {   /* reconnect in place of the broken one */
        p->reconnects++;
        conn_start(rc);
        return;
    }
    if (!p->closing) {
        p->closing = 1;
        p->ev->on_failed(HERALD_E_PROTOCOL);
    }
    p->ev->on_closed();
    if (--p->open == 0 && p->released) pool_free(p);
}

/* Takes @rc off the idle list, if it is on it: a connection the broker
 * closed while idle reconnects and becomes idle again, and must not then be
 * listed twice (two requests would go out on it at once). */
static void idle_remove(rest_conn_t *rc)
{
    for (rest_conn_t **pp = &rc->pool->idle; *pp; pp = &(*pp)->next_idle)
        if (*pp == rc) {
            *pp = rc->next_idle;
            rc->next_idle = NULL;
            return;
        }
}

/* Drops the connection; its request in flight, if any, failed. */
static void conn_fail(rest_conn_t *rc, int err)
{
    rest_pool_t *p = rc->pool;
    int was_busy = rc->state == RC_BUSY;

    if (rc->state == RC_CLOSED || uv_is_closing((uv_handle_t *)&rc->tcp)) return;
    if (rc->state == RC_IDLE) idle_remove(rc);
    /* Close before telling the owner: its callbacks may close the whole
     * pool, which must then find this connection already closing. */
    rc->state = RC_CLOSED;
    uv_close((uv_handle_t *)&rc->tcp, on_conn_closed);
    if (was_busy) p->ev->on_answer(rc->seq, 0, uv_hrtime());
    if (!rc->ever_connected && !p->closing) {
        p->closing = 1;          /* a pool that cannot connect is not retried */
        p->ev->on_failed(err);
    }
}

static void send_next(rest_conn_t *rc);

static void make_idle(rest_conn_t *rc)
{
    rest_pool_t *p = rc->pool;
    rc->state = RC_IDLE;
    if (p->qlen) { send_next(rc); return; }
    rc->next_idle = p->idle;
    p->idle = rc;
}

static void on_write(uv_write_t *req, int status)
{
    rest_conn_t *rc = req->data;
    if (status < 0) conn_fail(rc, status);
}

static int reserve(char **buf, size_t *cap, size_t need)
{
    size_t ncap = *cap ? *cap : 1024;
    char *np;
    if (*cap >= need) return 0;
    while (ncap < need) ncap *= 2;
    if (!(np = realloc(*buf, ncap))) return -1;
    *buf = np;
    *cap = ncap;
    return 0;
}

/* Builds the body of one publish request into @out; returns its length. */
static size_t build_body(const rest_pool_t *p, const struct item *it, char *out)
{
    const unsigned char *data;
    const char *chan;
    size_t chlen, n = 0, dlen = p->ev->payload(it->seq, it->ts, &data, &chan, &chlen);

    if (p->enc == HERALD_JSON) {
        memcpy(out + n, "{\"channel\":\"", 12); n += 12;
        memcpy(out + n, chan, chlen); n += chlen;
        memcpy(out + n, "\",\"data\":", 9); n += 9;
        memcpy(out + n, data, dlen); n += dlen;
        out[n++] = '}';
        return n;
    }
    out[n++] = (char)0x82;
    out[n++] = (char)0xa7; memcpy(out + n, "channel", 7); n += 7;
    out[n++] = (char)0xd9; out[n++] = (char)chlen;      /* channel names are < 256 bytes */
    memcpy(out + n, chan, chlen); n += chlen;
    out[n++] = (char)0xa4; memcpy(out + n, "data", 4); n += 4;
    memcpy(out + n, data, dlen); n += dlen;
    return n;
}

static void send_next(rest_conn_t *rc)
{
    rest_pool_t *p = rc->pool;
    struct item it = p->q[p->qhead];
    size_t room = 512 + strlen(p->url->host) + 300 + p->data_max * 6 + 16, hl, bl;
    uv_buf_t b;
    int n;

    p->qhead = (p->qhead + 1) % p->qcap;
    p->qlen--;
    if (reserve(&rc->tx, &rc->txcap, 2 * room)) { p->ev->on_answer(it.seq, 0, uv_hrtime()); make_idle(rc); return; }
    /* The body goes in the second half first, so its length is known for the header. */
    bl = build_body(p, &it, rc->tx + room);
    hl = (size_t)snprintf(rc->tx, room, "POST /api/publish HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
                          "Content-Length: %zu\r\n\r\n", p->url->host,
                          p->enc == HERALD_JSON ? "application/json" : "application/msgpack", bl);
    memmove(rc->tx + hl, rc->tx + room, bl);
    rc->seq = it.seq;
    rc->state = RC_BUSY;
    rc->rxlen = 0;
    b = uv_buf_init(rc->tx, (unsigned)(hl + bl));
    n = uv_try_write((uv_stream_t *)&rc->tcp, &b, 1);
    if (n == (int)b.len) return;
    if (n < 0 && n != UV_EAGAIN) { conn_fail(rc, n); return; }
    if (n < 0) n = 0;
    b = uv_buf_init(rc->tx + n, b.len - (unsigned)n);
    rc->wreq.data = rc;
    if ((n = uv_write(&rc->wreq, (uv_stream_t *)&rc->tcp, &b, 1, on_write))) conn_fail(rc, n);
}

static void on_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
    rest_conn_t *rc = h->data;
    (void)sugg;
    if (reserve(&rc->rx, &rc->rxcap, rc->rxlen + 4096)) { *buf = uv_buf_init(NULL, 0); return; }
    *buf = uv_buf_init(rc->rx + rc->rxlen, (unsigned)(rc->rxcap - rc->rxlen));
}

static const char *find_header(const char *s, const char *end, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = s; p && p < end; p = memchr(p, '\n', (size_t)(end - p)), p = p ? p + 1 : NULL)
        if ((size_t)(end - p) > nl && !strncasecmp(p, name, nl)) return p + nl;
    return NULL;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    rest_conn_t *rc = s->data;
    const char *hend, *cl;
    size_t need, body;
    int status, shed;
    uint64_t now;

    (void)buf;
    if (nread == 0) return;
    if (nread < 0) { conn_fail(rc, (int)nread); return; }
    now = uv_hrtime();
    rc->rxlen += (size_t)nread;
    while (rc->rxlen) {
        if (rc->state != RC_BUSY) { conn_fail(rc, HERALD_E_PROTOCOL); return; }
        hend = memmem(rc->rx, rc->rxlen, "\r\n\r\n", 4);
        if (!hend) return;
        if (rc->rxlen < 12 || strncmp(rc->rx, "HTTP/1.1 ", 9)) { conn_fail(rc, HERALD_E_PROTOCOL); return; }
        status = atoi(rc->rx + 9);
        cl = find_header(rc->rx, hend, "content-length:");
        body = cl ? strtoul(cl, NULL, 10) : 0;
        need = (size_t)(hend + 4 - rc->rx) + body;
        if (rc->rxlen < need) return;
        rc->close_after = find_header(rc->rx, hend, "connection: close") != NULL;
        /* Refused as overloaded (error 135): shed, not lost. */
        shed = status == 503 && memmem(hend + 4, body, "\"code\":135", 10) != NULL;
        memmove(rc->rx, rc->rx + need, rc->rxlen - need);
        rc->rxlen -= need;
        if (status != 200) rc->pool->http_errors++;
        rc->state = RC_IDLE;
        rc->pool->ev->on_answer(rc->seq, status == 200 ? REST_OK : shed ? REST_SHED : REST_FAILED, now);
        if (rc->close_after) { conn_fail(rc, 0); return; }
        if (rc->state == RC_IDLE) make_idle(rc);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    rest_conn_t *rc = req->data;
    int r;

    if (status == UV_ECANCELED) return;
    if (status < 0) { conn_fail(rc, status); return; }
    uv_tcp_nodelay(&rc->tcp, 1);
    if ((r = uv_read_start((uv_stream_t *)&rc->tcp, on_alloc, on_read))) { conn_fail(rc, r); return; }
    if (!rc->ever_connected) {
        rc->ever_connected = 1;
        rc->pool->ev->on_connected();
    }
    make_idle(rc);
}

static void conn_start(rest_conn_t *rc)
{
    int r;

    rc->state = RC_CONNECTING;
    uv_tcp_init(rc->pool->loop, &rc->tcp);
    rc->tcp.data = rc->creq.data = rc;
    if ((r = uv_tcp_connect(&rc->creq, &rc->tcp, (const struct sockaddr *)&rc->pool->url->addr, on_connect))) {
        rc->state = RC_IDLE;       /* nothing in flight to fail */
        conn_fail(rc, r);
    }
}

int rest_pool_new(uv_loop_t *loop, const herald_url_t *url, herald_encoding_t enc, unsigned n, size_t data_max,
                  const rest_events_t *ev, rest_pool_t **out)
{
    rest_pool_t *p = calloc(1, sizeof *p);

    if (!p || !(p->conns = calloc(n, sizeof *p->conns)) || !(p->q = malloc(1024 * sizeof *p->q))) {
        if (p) free(p->conns);
        free(p);
        return UV_ENOMEM;
    }
    p->loop = loop;
    p->url = url;
    p->enc = enc;
    p->data_max = data_max;
    p->ev = ev;
    p->n = p->open = n;
    p->qcap = 1024;
    for (unsigned i = 0; i < n; i++) {
        p->conns[i].pool = p;
        conn_start(&p->conns[i]);
    }
    *out = p;
    return 0;
}

void rest_submit(rest_pool_t *p, uint64_t seq, uint64_t ts_ns)
{
    rest_conn_t *rc;

    if (p->qlen == p->qcap) {
        struct item *nq = malloc(p->qcap * 2 * sizeof *nq);
        if (!nq) { p->ev->on_answer(seq, 0, uv_hrtime()); return; }
        for (size_t i = 0; i < p->qlen; i++) nq[i] = p->q[(p->qhead + i) % p->qcap];
        free(p->q);
        p->q = nq;
        p->qcap *= 2;
        p->qhead = 0;
    }
    p->q[(p->qhead + p->qlen) % p->qcap] = (struct item){ seq, ts_ns };
    p->qlen++;
    if ((rc = p->idle)) {
        p->idle = rc->next_idle;
        send_next(rc);
    }
}

void rest_pool_close(rest_pool_t *p)
{
    p->closing = 1;
    p->released = 1;
    if (p->open == 0) { pool_free(p); return; }
    /* Queued publications were never sent: they fail. */
    while (p->qlen) {
        p->ev->on_answer(p->q[p->qhead].seq, 0, uv_hrtime());
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
    }
    for (unsigned i = 0; i < p->n; i++) {
        rest_conn_t *rc = &p->conns[i];
        if (!uv_is_closing((uv_handle_t *)&rc->tcp)) {
            if (rc->state == RC_BUSY) p->ev->on_answer(rc->seq, 0, uv_hrtime());
            rc->state = RC_CLOSED;
            uv_close((uv_handle_t *)&rc->tcp, on_conn_closed);
        }
    }
}

void rest_stats(const rest_pool_t *p, uint64_t *http_errors, uint64_t *reconnects)
{
    *http_errors = p ? p->http_errors : 0;
    *reconnects = p ? p->reconnects : 0;
}
