/* clients/herald_client.c - see herald_client.h.
 *
 * Owns: contexts, clients, their sockets and buffers, the RFC 6455 client
 * side (handshake, masking, framing, control frames) and request/reply
 * matching, and the glue of the NATS dialect (hc_ctx_speak_nats(): its
 * connect, its PING-answered requests, its byte stream across frames). Does
 * not own: message syntax (hc_codec.c, hc_nats.c).
 *
 * DESIGN: receive. Every read lands in the context's shared buffer and is
 * parsed there; a client copies bytes into its own rx buffer only when a
 * frame is cut by the end of a read, and the next read is then appended to
 * that buffer directly (alloc_cb hands out its tail). So an idle client owns
 * no receive memory, and a busy one parses in place with no malloc per
 * message. Fragmented messages are reassembled in a per-client buffer that
 * is kept for reuse.
 *
 * Send: frames are appended (masked while copying) to the client's output
 * buffer and the client joins the context's dirty list; a uv_prepare_t
 * flushes the list just before the loop polls, so everything a callback or
 * timer queued in one loop iteration goes out in one write. A loop turn that
 * reads much (a context whose subscribers are far behind their streams:
 * libuv reads up to 32 x 64 KiB per socket per turn) can last seconds, and
 * what was queued in it would wait that long: a publisher's requests, a new
 * connection's upgrade, a pong. So a read also flushes the list once the
 * last flush is FLUSH_MAX_WAIT_NS old (docs/benchmarks.md, "Recovery
 * replies under overload"). A flush tries
 * uv_try_write() first and hands only the remainder to uv_write(), swapping
 * in a second buffer so sends can keep appending while that write is in
 * flight.
 *
 * Flow control: herald_client_pause() stops reading the socket and stops
 * delivering what was already read, between two messages. What a read
 * brought in behind the pause has to outlive that read, since the shared
 * buffer belongs to the next read of any client: the rest of the WebSocket
 * message being delivered goes to the client's held buffer (its Herald
 * messages, without framing), the frames after it stay in the rx buffer as a
 * cut frame does, and with wss:// the plaintext OpenSSL has not yet given out
 * stays in OpenSSL. Resume delivers them in that order, then reads again. It
 * does so from the context's uv_idle_t, never inside herald_client_resume():
 * a callback that resumes is still inside a delivery, and re-entering it
 * would deliver out of order.
 *
 * Lifetime: a client is freed only from the close callback of its last libuv
 * handle, never inside a read or user callback, so user code may close or
 * abort any client (itself included) from any callback. */
#include "herald_client.h"
#include "hc_codec.h"
#include "hc_nats.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define RBUF_SIZE (64 * 1024)
#define RX_KEEP (64 * 1024)        /* rx/reassembly buffers above this are freed when empty */
#define OUT_KEEP (256 * 1024)      /* output buffers above this are freed when drained */
#define HANDSHAKE_MAX 8192
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* A NATS server writes INFO as soon as the upgrade is done, in practice in
 * the same write as its 101; a server silent this long after the upgrade is
 * another protocol waiting for its own first message. */
#define NATS_INFO_MS 3000

enum state {
    ST_TCP = 0,       /* TCP connecting */
    ST_UPGRADE,       /* HTTP upgrade sent, waiting for 101 */
    ST_CONNECTING,    /* Herald connect sent */
    ST_OPEN,
    ST_CLOSING,       /* close frame sent or received; waiting for EOF */
    ST_DONE,          /* handles closing */
};

enum { WS_CONT = 0x0, WS_TEXT = 0x1, WS_BIN = 0x2, WS_CLOSE = 0x8, WS_PING = 0x9, WS_PONG = 0xa };

typedef struct obuf {
    unsigned char *p;
    size_t len, cap;
} obuf_t;

struct pending {
    uint64_t id;
    herald_reply_cb cb;
    void *arg;
    uint8_t op;                    /* NATS: the op of the reply its PONG stands for */
};

struct herald_ctx {
    uv_loop_t *loop;
    uv_prepare_t prep;
    herald_client_t *dirty;        /* clients with output to flush, doubly linked */
    unsigned char *rbuf;           /* RBUF_SIZE: every read starts here */
    unsigned char *scratch;        /* encoding one request */
    size_t scratch_cap;
    char reason[HC_REASON_MAX];    /* an unescaped JSON error reason */
    uint64_t rng;                  /* xorshift state for mask keys */
    uint64_t now;                  /* uv_hrtime() of the read being parsed */
    uint64_t flushed;              /* uv_hrtime() of the last flush of the dirty list */
    SSL_CTX *tls;                  /* for wss:// clients; made on first use or by herald_ctx_set_tls() */
    uint8_t nats;                  /* hc_ctx_speak_nats(): new clients speak NATS */
    uv_idle_t idle;                /* runs while clients wait on the resume list */
    herald_client_t *resumed;      /* clients resumed, to deliver what they kept and read again */
    uint8_t handles;               /* prep and idle, until both are closed */
};

struct herald_client {
    uv_tcp_t tcp;
    uv_timer_t timer;              /* connect timeout, then close timeout */
    uv_connect_t creq;
    uv_write_t wreq;
    herald_ctx_t *ctx;
    herald_callbacks_t cb;
    void *ud;
    herald_opts_t opts;

    uint8_t state;
    uint8_t enc;
    uint8_t writing;               /* a uv_write of wr is in flight */
    uint8_t sent_close, got_close;
    uint8_t was_open;
    uint8_t handles;               /* libuv handles not yet closed */
    uint8_t frag_op;               /* opcode of the message being reassembled, 0 if none */
    herald_client_t *dnext, *dprev;
    uint8_t dirty;

    obuf_t out, wr;                /* appending / in flight */
    unsigned char *rx;             /* bytes of a frame cut by a read */
    size_t rxlen, rxcap, rxneed;
    unsigned char *msg;            /* reassembly of a fragmented message */
    size_t msglen, msgcap;

    struct pending *pend;          /* ring of requests awaiting replies */
    uint32_t phead, plen, pcap;
    uint32_t pholes;               /* entries of the ring answered out of order (id 0), not yet at its head */
    uint64_t next_id;

    int close_code, err;
    char close_reason[128];
    char *token;                   /* opts.token, copied; sent in connect */
    SSL *ssl;                      /* wss://: the TLS session over memory BIOs; NULL for ws:// */
    BIO *rbio, *wbio;              /* ciphertext in (from the socket) and out (to the socket) */
    obuf_t tout;                   /* wss://: ciphertext waiting to be written */
    uint8_t tls_done;              /* the TLS handshake completed */
    char accept[32];               /* expected Sec-WebSocket-Accept */

    /* NATS (hc_nats.h): its byte stream is not cut at frames, so a frame's
     * unfinished operation waits in nrx for the next; each PING sent
     * remembers the last request id before it (a mark), and its PONG
     * answers the requests up to that id. */
    uint8_t nats, got_info, ping_due;
    unsigned char *nrx;
    size_t nrxlen, nrxcap;
    uint64_t *marks;
    uint32_t mhead, mlen, mcap;

    /* Flow control (herald_client_pause()). */
    uint8_t paused;                /* the application asked for no more messages */
    uint8_t rstopped;              /* the pause stopped reading (uv_read_stop) */
    uint8_t listed;                /* on the context's resume list */
    herald_client_t *rnext, *rprev;
    unsigned char *held;           /* the rest of a message whose delivery a pause cut */
    size_t heldlen, heldcap;
    uint64_t held_ns;              /* when the kept bytes were read, for their rx_ns */
};

const char *herald_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case HERALD_E_URL: return "bad URL (expected ws://host[:port][/path] or wss://...)";
    case HERALD_E_HANDSHAKE: return "WebSocket upgrade refused or invalid";
    case HERALD_E_PROTOCOL: return "protocol violation by the server";
    case HERALD_E_TIMEOUT: return "timed out";
    case HERALD_E_STATE: return "not allowed in this state";
    case HERALD_E_ABORTED: return "aborted";
    case HERALD_E_TOO_LARGE: return "server message too large";
    case HERALD_E_REFUSED: return "connect refused by the server";
    case HERALD_E_TLS: return "TLS handshake or certificate verification failed";
    default: return err < 0 ? uv_strerror(err) : "unknown error";
    }
}

/* ---- URL ---- */

int herald_url_parse(const char *s, herald_url_t *url)
{
    char host[256];
    const char *p, *hs, *he, *slash;
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    int port = 80, r;

    memset(url, 0, sizeof *url);
    if (!strncasecmp(s, "wss://", 6)) {
        url->tls = 1;
        port = 443;
        hs = s + 6;
    } else if (!strncasecmp(s, "ws://", 5)) {
        hs = s + 5;
    } else {
        return HERALD_E_URL;
    }
    slash = strchr(hs, '/');
    he = slash ? slash : hs + strlen(hs);
    if (*hs == '[') {                        /* [v6]:port */
        const char *rb = memchr(hs, ']', (size_t)(he - hs));
        if (!rb) return HERALD_E_URL;
        p = rb + 1;
        if ((size_t)(rb - hs - 1) >= sizeof host) return HERALD_E_URL;
        memcpy(host, hs + 1, (size_t)(rb - hs - 1));
        host[rb - hs - 1] = '\0';
    } else {
        p = memchr(hs, ':', (size_t)(he - hs));
        if (!p) p = he;
        if ((size_t)(p - hs) >= sizeof host) return HERALD_E_URL;
        memcpy(host, hs, (size_t)(p - hs));
        host[p - hs] = '\0';
    }
    if (!*host) return HERALD_E_URL;
    if (p < he) {
        char *end;
        long v;
        if (*p != ':') return HERALD_E_URL;
        v = strtol(p + 1, &end, 10);
        if (end != he || v < 1 || v > 65535) return HERALD_E_URL;
        port = (int)v;
    }
    snprintf(url->path, sizeof url->path, "%s", slash ? slash : "/ws");
    snprintf(url->sni, sizeof url->sni, "%s", host);
    snprintf(url->host, sizeof url->host, "%.*s", (int)(he - hs), hs);
    snprintf(portstr, sizeof portstr, "%d", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if ((r = getaddrinfo(host, portstr, &hints, &res))) {
        switch (r) {
        case EAI_NONAME: return UV_EAI_NONAME;
        case EAI_AGAIN: return UV_EAI_AGAIN;
        default: return UV_EAI_FAIL;
        }
    }
    memcpy(&url->addr, res->ai_addr, res->ai_addrlen);
    url->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    url->port = port;
    if (url->addr.ss_family == AF_INET6) {
        char a[48];
        uv_ip6_name((struct sockaddr_in6 *)&url->addr, a, sizeof a);
        snprintf(url->name, sizeof url->name, "[%s]:%d", a, port);
    } else {
        char a[32];
        uv_ip4_name((struct sockaddr_in *)&url->addr, a, sizeof a);
        snprintf(url->name, sizeof url->name, "%s:%d", a, port);
    }
    return 0;
}

/* ---- context ---- */

static void flush(herald_client_t *c);

static void dirty_del(herald_client_t *c)
{
    if (!c->dirty) return;
    if (c->dprev) c->dprev->dnext = c->dnext;
    else c->ctx->dirty = c->dnext;
    if (c->dnext) c->dnext->dprev = c->dprev;
    c->dnext = c->dprev = NULL;
    c->dirty = 0;
}

static void dirty_add(herald_client_t *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    c->dprev = NULL;
    c->dnext = c->ctx->dirty;
    if (c->dnext) c->dnext->dprev = c;
    c->ctx->dirty = c;
}

/* How long output may wait for a turn's reads to end before a read flushes
 * it: long enough that a normal turn still sends everything in one write
 * per client, short against any latency a user would notice. */
#define FLUSH_MAX_WAIT_NS 2000000ULL

void herald_ctx_flush(herald_ctx_t *ctx)
{
    ctx->flushed = uv_hrtime();
    while (ctx->dirty) {
        herald_client_t *c = ctx->dirty;
        dirty_del(c);
        flush(c);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    herald_ctx_flush(h->data);
}

static void on_idle(uv_idle_t *h);

int herald_ctx_new(uv_loop_t *loop, herald_ctx_t **out)
{
    herald_ctx_t *ctx = calloc(1, sizeof *ctx);

    if (!ctx || !(ctx->rbuf = malloc(RBUF_SIZE))) {
        free(ctx);
        return UV_ENOMEM;
    }
    ctx->loop = loop;
    if (getrandom(&ctx->rng, sizeof ctx->rng, 0) != sizeof ctx->rng) ctx->rng = uv_hrtime();
    ctx->rng |= 1;
    uv_prepare_init(loop, &ctx->prep);
    ctx->prep.data = ctx;
    uv_prepare_start(&ctx->prep, on_prepare);
    uv_unref((uv_handle_t *)&ctx->prep);   /* the prepare alone keeps no loop alive */
    /* Started only while a resumed client waits for it: then it keeps the
     * loop alive and polling without blocking, until the client reads again. */
    uv_idle_init(loop, &ctx->idle);
    ctx->idle.data = ctx;
    ctx->handles = 2;
    *out = ctx;
    return 0;
}

int herald_ctx_set_tls(herald_ctx_t *ctx, const herald_tls_opts_t *o)
{
    SSL_CTX *t = SSL_CTX_new(TLS_client_method());

    if (!t) return UV_ENOMEM;
    SSL_CTX_set_min_proto_version(t, TLS1_2_VERSION);
    if (o && o->insecure) {
        SSL_CTX_set_verify(t, SSL_VERIFY_NONE, NULL);
    } else {
        int own = o && (o->ca_file || o->ca_path);
        SSL_CTX_set_verify(t, SSL_VERIFY_PEER, NULL);
        if (own ? SSL_CTX_load_verify_locations(t, o->ca_file, o->ca_path) != 1
                : SSL_CTX_set_default_verify_paths(t) != 1) {
            ERR_clear_error();
            SSL_CTX_free(t);
            return HERALD_E_TLS;
        }
    }
    SSL_CTX_free(ctx->tls);
    ctx->tls = t;
    return 0;
}

uv_loop_t *herald_ctx_loop(const herald_ctx_t *ctx)
{
    return ctx->loop;
}

static void on_ctx_closed(uv_handle_t *h)
{
    herald_ctx_t *ctx = h->data;

    if (--ctx->handles) return;
    free(ctx->rbuf);
    free(ctx->scratch);
    SSL_CTX_free(ctx->tls);
    free(ctx);
}

void herald_ctx_free(herald_ctx_t *ctx)
{
    if (!ctx) return;
    uv_prepare_stop(&ctx->prep);
    uv_close((uv_handle_t *)&ctx->prep, on_ctx_closed);
    uv_close((uv_handle_t *)&ctx->idle, on_ctx_closed);
}

/* Mask keys need not be cryptographic for a client talking to its own broker
 * (RFC 6455 asks for unpredictability to protect intermediaries); xorshift
 * keeps them cheap at millions of frames per second. */
static uint32_t rng32(herald_ctx_t *ctx)
{
    uint64_t x = ctx->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    ctx->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* ---- buffers ---- */

static int obuf_reserve(obuf_t *b, size_t n)
{
    size_t ncap;
    unsigned char *p;

    if (b->cap - b->len >= n) return 0;
    ncap = b->cap ? b->cap * 2 : 512;
    while (ncap - b->len < n) ncap *= 2;
    if (!(p = realloc(b->p, ncap))) return UV_ENOMEM;
    b->p = p;
    b->cap = ncap;
    return 0;
}

static int reserve(unsigned char **buf, size_t *cap, size_t need)
{
    size_t ncap;
    unsigned char *p;

    if (*cap >= need) return 0;
    ncap = *cap ? *cap * 2 : 4096;
    while (ncap < need) ncap *= 2;
    if (!(p = realloc(*buf, ncap))) return UV_ENOMEM;
    *buf = p;
    *cap = ncap;
    return 0;
}

/* ---- lifecycle ---- */

static void resumed_del(herald_client_t *c)
{
    if (!c->listed) return;
    if (c->rprev) c->rprev->rnext = c->rnext;
    else c->ctx->resumed = c->rnext;
    if (c->rnext) c->rnext->rprev = c->rprev;
    c->rnext = c->rprev = NULL;
    c->listed = 0;
    if (!c->ctx->resumed) uv_idle_stop(&c->ctx->idle);
}

static void resumed_add(herald_client_t *c)
{
    if (c->listed) return;
    c->listed = 1;
    c->rprev = NULL;
    c->rnext = c->ctx->resumed;
    if (c->rnext) c->rnext->rprev = c;
    c->ctx->resumed = c;
    uv_idle_start(&c->ctx->idle, on_idle);
}

static void on_handle_closed(uv_handle_t *h)
{
    herald_client_t *c = h->data;
    herald_close_info_t info;

    if (--c->handles) return;
    dirty_del(c);
    resumed_del(c);
    info.code = c->close_code;
    info.reason = c->close_reason;
    info.err = c->err;
    info.was_open = c->was_open;
    if (c->cb.on_close) c->cb.on_close(c, &info, c->ud);
    free(c->out.p);
    free(c->wr.p);
    free(c->rx);
    free(c->msg);
    free(c->pend);
    free(c->token);
    free(c->tout.p);
    free(c->nrx);
    free(c->marks);
    free(c->held);
    if (c->ssl) SSL_free(c->ssl);          /* frees both BIOs */
    free(c);
}

/* Ends the connection: records why (the first reason wins) and closes the
 * handles; on_close fires from their close callbacks. */
static void finish(herald_client_t *c, int err, int code, const char *reason)
{
    if (c->state == ST_DONE) return;
    c->state = ST_DONE;
    if (!c->close_code) c->close_code = code;
    if (!c->err) c->err = err;
    if (reason && !c->close_reason[0]) snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    dirty_del(c);
    resumed_del(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Appends one masked frame to the output. */
static int send_frame(herald_client_t *c, int opcode, const void *payload, size_t len)
{
    unsigned char *h;
    size_t hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    uint32_t key = rng32(c->ctx);
    unsigned char k[4];
    const unsigned char *src = payload;
    unsigned char *dst;
    uint64_t k8;
    size_t i = 0;

    if (obuf_reserve(&c->out, hl + 4 + len)) return UV_ENOMEM;
    h = c->out.p + c->out.len;
    h[0] = (unsigned char)(0x80 | opcode);
    if (hl == 2) h[1] = (unsigned char)(0x80 | len);
    else if (hl == 4) { h[1] = 0x80 | 126; h[2] = (unsigned char)(len >> 8); h[3] = (unsigned char)len; }
    else {
        h[1] = 0x80 | 127;
        for (int j = 0; j < 8; j++) h[2 + j] = (unsigned char)((uint64_t)len >> (56 - 8 * j));
    }
    memcpy(k, &key, 4);
    memcpy(h + hl, k, 4);
    dst = h + hl + 4;
    /* Mask 8 bytes at a time: the key repeats every 4 bytes from the
     * payload's start, so a doubled key lines up with every 8-byte step. */
    memcpy(&k8, k, 4);
    memcpy((unsigned char *)&k8 + 4, k, 4);
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k8;
        memcpy(dst + i, &v, 8);
    }
    for (; i < len; i++) dst[i] = src[i] ^ k[i & 3];
    c->out.len += hl + 4 + len;
    dirty_add(c);
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    herald_client_t *c = req->data;

    c->writing = 0;
    c->wr.len = 0;
    if (c->wr.cap > OUT_KEEP) {
        free(c->wr.p);
        c->wr.p = NULL;
        c->wr.cap = 0;
    }
    if (c->state == ST_DONE) return;
    if (status < 0) {
        finish(c, status, 1006, uv_strerror(status));
        return;
    }
    if (c->out.len || c->tout.len) dirty_add(c);
}

static int tls_encrypt(herald_client_t *c);

static void nats_ping(herald_client_t *c);

static void flush(herald_client_t *c)
{
    obuf_t *src = &c->out;
    uv_buf_t b;
    obuf_t t;
    int n;

    if (c->state == ST_DONE || c->state == ST_TCP) return;
    if (c->ping_due) nats_ping(c);
    if (c->ssl) {
        if (tls_encrypt(c)) return;
        src = &c->tout;
    }
    if (c->writing || !src->len) return;
    b = uv_buf_init((char *)src->p, (unsigned)src->len);
    n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)src->len) {
        src->len = 0;
        if (src->cap > OUT_KEEP) {
            free(src->p);
            src->p = NULL;
            src->cap = 0;
        }
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        finish(c, n, 1006, uv_strerror(n));
        return;
    }
    if (n < 0) n = 0;
    t = c->wr;                 /* empty: no write is in flight */
    c->wr = *src;
    *src = t;
    src->len = 0;
    b = uv_buf_init((char *)c->wr.p + n, (unsigned)(c->wr.len - (size_t)n));
    c->writing = 1;
    c->wreq.data = c;
    if ((n = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write))) {
        c->writing = 0;
        finish(c, n, 1006, uv_strerror(n));
    }
}

static void on_timer(uv_timer_t *t)
{
    herald_client_t *c = t->data;

    if (c->state == ST_CLOSING) finish(c, c->got_close ? 0 : HERALD_E_TIMEOUT, 1006, "close timed out");
    else if (c->nats && c->state == ST_CONNECTING && !c->got_info)
        finish(c, HERALD_E_PROTOCOL, 1006, "not a NATS server: no INFO after the WebSocket upgrade");
    else finish(c, HERALD_E_TIMEOUT, 1006, "connect timed out");
}

/* ---- requests ---- */

static unsigned char *one_entry_map(herald_encoding_t enc, const char *key, const char *val, size_t *len);

/* Remembers request @id to match with its reply. Return: 0 or UV_ENOMEM. */
static int pend_push(herald_client_t *c, uint64_t id, herald_reply_cb cb, void *arg, uint8_t op)
{
    if (c->plen == c->pcap) {
        uint32_t ncap = c->pcap ? c->pcap * 2 : 8;
        struct pending *np = malloc(ncap * sizeof *np);
        if (!np) return UV_ENOMEM;
        for (uint32_t i = 0; i < c->plen; i++) np[i] = c->pend[(c->phead + i) & (c->pcap - 1)];
        free(c->pend);
        c->pend = np;
        c->pcap = ncap;
        c->phead = 0;
    }
    c->pend[(c->phead + c->plen) & (c->pcap - 1)] = (struct pending){ id, cb, arg, op };
    c->plen++;
    return 0;
}

static int request_x(herald_client_t *c, const char *op, const char *channel, size_t chlen,
                     const struct hc_extra *x, herald_reply_cb cb, void *arg, uint64_t *idp)
{
    herald_ctx_t *ctx = c->ctx;
    uint64_t id;
    size_t n;
    int r;

    if (c->nats) return UV_ENOTSUP;
    id = c->next_id++;
    n = hc_encode_request((herald_encoding_t)c->enc, op, id, channel, chlen, x, ctx->scratch, ctx->scratch_cap);
    if (n > ctx->scratch_cap) {
        if ((r = reserve(&ctx->scratch, &ctx->scratch_cap, n))) return r;
        n = hc_encode_request((herald_encoding_t)c->enc, op, id, channel, chlen, x, ctx->scratch, ctx->scratch_cap);
    }
    /* id 0 is the connect request, answered apart */
    if (id && (r = pend_push(c, id, cb, arg, 0))) return r;
    if ((r = send_frame(c, c->enc == HERALD_MSGPACK ? WS_BIN : WS_TEXT, ctx->scratch, n))) {
        if (id) c->plen--;
        return r;
    }
    if (idp) *idp = id;
    return 0;
}

static int request(herald_client_t *c, const char *op, const char *channel, size_t chlen,
                   const void *data, size_t dlen, const struct hc_since *since, herald_reply_cb cb,
                   void *arg, uint64_t *idp)
{
    struct hc_extra x = { .dkey = "data", .data = data, .dlen = dlen, .since = since };
    return request_x(c, op, channel, chlen, &x, cb, arg, idp);
}

/* ---- NATS (hc_nats.h) ---- */

void hc_ctx_speak_nats(herald_ctx_t *ctx)
{
    ctx->nats = 1;
}

/* One client operation, in a binary frame: nats-server reads no text frames. */
static int nats_send(herald_client_t *c, const unsigned char *p, size_t n)
{
    return send_frame(c, WS_BIN, p, n);
}

/* A request NATS does not answer: it is answered by the PONG of the PING
 * that flush() sends after it, with op @op. @p, @n: its bytes. */
static int nats_request(herald_client_t *c, herald_op_t op, const unsigned char *p, size_t n, herald_reply_cb cb,
                        void *arg, uint64_t *idp)
{
    uint64_t id = c->next_id++;
    int r;

    if ((r = pend_push(c, id, cb, arg, (uint8_t)op))) return r;
    if (n && (r = nats_send(c, p, n))) {
        c->plen--;
        return r;
    }
    c->ping_due = 1;
    dirty_add(c);
    if (idp) *idp = id;
    return 0;
}

/* The PING after a loop turn's requests, and its mark: the last request id
 * before it. Out of memory, the requests stay unanswered and the client's
 * owner sees them pending (herald_client_pending()). */
static void nats_ping(herald_client_t *c)
{
    c->ping_due = 0;
    if (c->state != ST_OPEN) return;
    if (c->mlen == c->mcap) {
        uint32_t ncap = c->mcap ? c->mcap * 2 : 8;
        uint64_t *nm = malloc(ncap * sizeof *nm);
        if (!nm) return;
        for (uint32_t i = 0; i < c->mlen; i++) nm[i] = c->marks[(c->mhead + i) & (c->mcap - 1)];
        free(c->marks);
        c->marks = nm;
        c->mcap = ncap;
        c->mhead = 0;
    }
    if (nats_send(c, (const unsigned char *)"PING\r\n", 6)) return;
    c->marks[(c->mhead + c->mlen) & (c->mcap - 1)] = c->next_id - 1;
    c->mlen++;
}

static int nats_subscribe(herald_client_t *c, const char *channel, size_t chlen, herald_reply_cb cb, void *arg,
                          uint64_t *idp)
{
    herald_ctx_t *ctx = c->ctx;
    size_t n = hc_nats_sub(channel, chlen, c->next_id, ctx->scratch, ctx->scratch_cap);
    int r;

    if (n > ctx->scratch_cap) {
        if ((r = reserve(&ctx->scratch, &ctx->scratch_cap, n))) return r;
        n = hc_nats_sub(channel, chlen, c->next_id, ctx->scratch, ctx->scratch_cap);
    }
    return nats_request(c, HERALD_OP_SUBSCRIBED, ctx->scratch, n, cb, arg, idp);
}

static int nats_publish(herald_client_t *c, const char *channel, size_t chlen, const void *data, size_t len,
                        herald_reply_cb cb, void *arg, uint64_t *idp)
{
    herald_ctx_t *ctx = c->ctx;
    size_t n = hc_nats_pub(channel, chlen, data, len, ctx->scratch, ctx->scratch_cap);
    int r;

    if (n > ctx->scratch_cap) {
        if ((r = reserve(&ctx->scratch, &ctx->scratch_cap, n))) return r;
        n = hc_nats_pub(channel, chlen, data, len, ctx->scratch, ctx->scratch_cap);
    }
    return nats_request(c, HERALD_OP_PUBLISHED, ctx->scratch, n, cb, arg, idp);
}

static int nats_connect(herald_client_t *c)
{
    unsigned char b[512];
    size_t n = hc_nats_connect(b, sizeof b);

    c->next_id = 1;                /* request ids, and sids, start at 1 */
    return n <= sizeof b ? nats_send(c, b, n) : UV_ENOMEM;
}

int herald_state(herald_client_t *c, const char *channel, size_t chlen, const void *ops, size_t len,
                 herald_reply_cb cb, void *arg, uint64_t *id)
{
    struct hc_extra x = { .dkey = "ops", .data = ops, .dlen = len };
    if (c->state != ST_OPEN) return HERALD_E_STATE;
    return request_x(c, "state", channel, chlen, &x, cb, arg, id);
}

int herald_request(herald_client_t *c, const char *op, const char *channel, size_t chlen, const void *fields,
                   size_t flen, herald_reply_cb cb, void *arg, uint64_t *id)
{
    struct hc_extra x = { .fields = fields, .flen = flen };
    if (c->state != ST_OPEN) return HERALD_E_STATE;
    if (fields && !hc_fields_ok((herald_encoding_t)c->enc, fields, flen)) return UV_EINVAL;
    return request_x(c, op, channel, chlen, &x, cb, arg, id);
}

int herald_subscribe(herald_client_t *c, const char *channel, size_t chlen,
                     herald_reply_cb cb, void *arg, uint64_t *id)
{
    if (c->state != ST_OPEN) return HERALD_E_STATE;
    if (c->nats) return nats_subscribe(c, channel, chlen, cb, arg, id);
    return request(c, "subscribe", channel, chlen, NULL, 0, NULL, cb, arg, id);
}

int herald_subscribe_since(herald_client_t *c, const char *channel, size_t chlen, const char *epoch,
                           size_t epoch_len, uint64_t offset, herald_reply_cb cb, void *arg, uint64_t *id)
{
    struct hc_since since = { epoch, epoch_len, offset };

    if (c->state != ST_OPEN) return HERALD_E_STATE;
    return request(c, "subscribe", channel, chlen, NULL, 0, &since, cb, arg, id);
}

int herald_subscribe_ex(herald_client_t *c, const char *channel, size_t chlen, const herald_sub_opts_t *o,
                        herald_reply_cb cb, void *arg, uint64_t *id)
{
    struct hc_since since = { 0 };
    struct hc_extra x = { 0 };
    unsigned char *fields = NULL;
    int r;

    if (c->state != ST_OPEN) return HERALD_E_STATE;
    if (o && o->epoch) {
        since = (struct hc_since){ o->epoch, o->epoch_len, o->since };
        x.since = &since;
    }
    if (o && o->token) {
        if (!(fields = one_entry_map((herald_encoding_t)c->enc, "token", o->token, &x.flen))) return UV_ENOMEM;
        x.fields = fields;
    }
    r = request_x(c, "subscribe", channel, chlen, &x, cb, arg, id);
    free(fields);
    return r;
}

int herald_unsubscribe(herald_client_t *c, const char *channel, size_t chlen,
                       herald_reply_cb cb, void *arg, uint64_t *id)
{
    if (c->state != ST_OPEN) return HERALD_E_STATE;
    return request(c, "unsubscribe", channel, chlen, NULL, 0, NULL, cb, arg, id);
}

int herald_publish(herald_client_t *c, const char *channel, size_t chlen, const void *data,
                   size_t len, herald_reply_cb cb, void *arg, uint64_t *id)
{
    if (c->state != ST_OPEN) return HERALD_E_STATE;
    if (c->nats) return nats_publish(c, channel, chlen, data, len, cb, arg, id);
    return request(c, "publish", channel, chlen, data, len, NULL, cb, arg, id);
}

int herald_refresh(herald_client_t *c, const char *token, herald_reply_cb cb, void *arg, uint64_t *id)
{
    struct hc_extra x = { 0 };
    unsigned char *fields;
    char *copy;
    int r;

    if (c->state != ST_OPEN) return HERALD_E_STATE;
    if (!(copy = strdup(token))) return UV_ENOMEM;
    if (!(fields = one_entry_map((herald_encoding_t)c->enc, "token", token, &x.flen))) {
        free(copy);
        return UV_ENOMEM;
    }
    x.fields = fields;
    r = request_x(c, "refresh", NULL, 0, &x, cb, arg, id);
    free(fields);
    if (r) {
        free(copy);
        return r;
    }
    free(c->token);
    c->token = copy;
    return 0;
}

int herald_ping(herald_client_t *c, herald_reply_cb cb, void *arg, uint64_t *id)
{
    if (c->state != ST_OPEN) return HERALD_E_STATE;
    if (c->nats) return nats_request(c, HERALD_OP_PONG, NULL, 0, cb, arg, id);
    return request(c, "ping", NULL, 0, NULL, 0, NULL, cb, arg, id);
}

int herald_presence_stats(herald_client_t *c, const char *channel, size_t chlen,
                          herald_reply_cb cb, void *arg, uint64_t *id)
{
    if (c->state != ST_OPEN) return HERALD_E_STATE;
    return request(c, "presence_stats", channel, chlen, NULL, 0, NULL, cb, arg, id);
}

int herald_pubs_init(herald_pubs_t *it, herald_encoding_t enc, const herald_msg_t *reply)
{
    memset(it, 0, sizeof *it);
    it->enc = enc;
    if (!reply->publications) return 0;
    it->end = (const unsigned char *)reply->publications + reply->publications_len;
    if (hc_pubs_start(enc, reply->publications, reply->publications_len, &it->p, &it->left)) {
        it->p = it->end;
        return HERALD_E_PROTOCOL;
    }
    return 0;
}

int herald_pubs_next(herald_pubs_t *it, herald_msg_t *pub)
{
    int r;

    if (!it->p) return 0;
    r = hc_pubs_next(it->enc, &it->p, it->end, &it->left, pub);
    return r < 0 ? HERALD_E_PROTOCOL : r;
}

/* ---- receiving ---- */

/* Whether delivery must stop before the next message: a pause applies once
 * the client is open (until then it only waits), and a close lifts it. */
static int held_back(const herald_client_t *c)
{
    return c->paused && c->state == ST_OPEN;
}

/* Stops reading for a pause that applies now. */
static void pause_apply(herald_client_t *c)
{
    if (!held_back(c) || c->rstopped) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->rstopped = 1;
    c->held_ns = c->ctx->now;
}

static void dispatch(herald_client_t *c, herald_msg_t *m)
{
    m->rx_ns = c->ctx->now;
    if (m->op == HERALD_OP_PUB) {
        if (c->cb.on_pub) c->cb.on_pub(c, m, c->ud);
        return;
    }
    if (c->state == ST_CONNECTING && m->has_id && m->id == 0) {
        if (m->op != HERALD_OP_CONNECTED) {
            char why[160];
            snprintf(why, sizeof why, "connect refused: %d %.*s", m->code, (int)m->reason_len,
                     m->reason ? m->reason : "");
            finish(c, m->op == HERALD_OP_ERROR ? HERALD_E_REFUSED : HERALD_E_PROTOCOL, 1006, why);
            return;
        }
        c->state = ST_OPEN;
        c->was_open = 1;
        uv_timer_stop(&c->timer);
        if (c->cb.on_open) c->cb.on_open(c, m, c->ud);
        pause_apply(c);            /* paused before open: it applies from here */
        return;
    }
    if (m->op == HERALD_OP_REFRESH_REQUIRED && c->state == ST_OPEN && c->cb.on_token) {
        /* The callback may close the client; only an open one refreshes. */
        const char *tok = c->cb.on_token(c, c->ud);
        if (tok && c->state == ST_OPEN) {
            int r = herald_refresh(c, tok, NULL, NULL, NULL);
            if (r) {
                finish(c, r, 1006, "out of memory");
                return;
            }
        }
        if (c->state != ST_OPEN) return;
    }
    if (m->has_id && c->plen) {
        /* Replies mostly come in request order, so the match is mostly the
         * ring's head; but a refusal the broker gives at once (a rate limit,
         * 135 overloaded) overtakes the replies it gives after a commit. An
         * entry answered out of order becomes a hole (id 0; ids start at 1)
         * that leaves the ring when it reaches the head. */
        for (uint32_t i = 0; i < c->plen; i++) {
            struct pending *e = &c->pend[(c->phead + i) & (c->pcap - 1)];
            struct pending p;

            if (e->id != m->id) continue;
            p = *e;
            e->id = 0;
            if (i) c->pholes++;
            else {
                c->phead = (c->phead + 1) & (c->pcap - 1);
                c->plen--;
            }
            while (c->plen && c->pend[c->phead].id == 0) {
                c->phead = (c->phead + 1) & (c->pcap - 1);
                c->plen--;
                c->pholes--;
            }
            if (p.cb) { p.cb(c, m, p.arg); return; }
            break;
        }
    }
    if (c->cb.on_reply) c->cb.on_reply(c, m, c->ud);
}

static int nats_on_data(herald_client_t *c, const unsigned char *p, size_t len);

/* Keeps the @n bytes at @p, the undelivered rest of a message, in c->held
 * for the resume; @p may point into c->held itself. Return: 0, or -1 if the
 * client is finished (out of memory). */
static int hold_rest(herald_client_t *c, const unsigned char *p, size_t n, int in_held)
{
    if (in_held) {
        memmove(c->held, p, n);
    } else {
        if (reserve(&c->held, &c->heldcap, n)) {
            finish(c, UV_ENOMEM, 1006, "out of memory");
            return -1;
        }
        memcpy(c->held, p, n);
    }
    c->heldlen = n;
    return 0;
}

/* One complete WebSocket message: one or more Herald messages (NATS: a
 * piece of its byte stream, which records its own errors), delivered until
 * a pause; what a pause leaves is held. @in_held: @p is c->held (a resume).
 * Return: 0, or -1 on a message that does not parse or out of memory. */
static int deliver(herald_client_t *c, const unsigned char *p, size_t len, int in_held)
{
    const unsigned char *e = p + len;
    herald_msg_t m;

    if (c->nats) {
        nats_on_data(c, p, len);
        return 0;
    }
    while (p < e && c->state < ST_CLOSING) {
        if (held_back(c)) return hold_rest(c, p, (size_t)(e - p), in_held);
        memset(&m, 0, sizeof m);
        if (c->enc == HERALD_JSON) {
            const unsigned char *nl = memchr(p, '\n', (size_t)(e - p));
            const unsigned char *end = nl ? nl : e;
            if (end > p) {
                if (hc_json_parse((const char *)p, (size_t)(end - p), &m, c->ctx->reason)) return -1;
                m.raw = p;
                m.raw_len = (size_t)(end - p);
                dispatch(c, &m);
            }
            p = nl ? nl + 1 : e;
        } else {
            size_t used;
            if (hc_mpack_parse(p, (size_t)(e - p), &m, &used)) return -1;
            m.raw = p;
            m.raw_len = used;
            dispatch(c, &m);
            p += used;
        }
    }
    return 0;
}

static int on_message(herald_client_t *c, const unsigned char *p, size_t len)
{
    return deliver(c, p, len, 0);
}

static void protocol_error(herald_client_t *c, int wscode, int err, const char *why)
{
    unsigned char b[2] = { (unsigned char)(wscode >> 8), (unsigned char)wscode };
    if (c->state < ST_CLOSING && c->state >= ST_CONNECTING) {
        send_frame(c, WS_CLOSE, b, 2);
        flush(c);
    }
    finish(c, err, 1006, why);
}

/* What a server that is not NATS said first, printable, for the close reason. */
static void not_nats(herald_client_t *c, const unsigned char *p, size_t n)
{
    char why[128], seen[48];
    size_t k = 0;

    for (size_t i = 0; i < n && k + 1 < sizeof seen; i++) seen[k++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    seen[k] = '\0';
    snprintf(why, sizeof why, "not a NATS server: it did not begin with INFO but with \"%s\"", seen);
    protocol_error(c, 1002, HERALD_E_PROTOCOL, why);
}

/* The requests up to the mark of the PONG just read, answered in order. */
static void nats_pong(herald_client_t *c)
{
    uint64_t mark;

    if (c->state == ST_CONNECTING) {
        herald_msg_t m = { .op = HERALD_OP_CONNECTED, .has_id = 1, .id = 0 };
        dispatch(c, &m);           /* opens the client: the PONG after CONNECT */
        return;
    }
    if (!c->mlen) return;          /* none of ours */
    mark = c->marks[c->mhead];
    c->mhead = (c->mhead + 1) & (c->mcap - 1);
    c->mlen--;
    while (c->plen && c->pend[c->phead].id <= mark && c->state == ST_OPEN) {
        struct pending e = c->pend[c->phead];
        herald_msg_t m = { .op = (herald_op_t)e.op, .has_id = 1, .id = e.id, .rx_ns = c->ctx->now };

        c->phead = (c->phead + 1) & (c->pcap - 1);
        c->plen--;
        if (e.cb) e.cb(c, &m, e.arg);
        else if (c->cb.on_reply) c->cb.on_reply(c, &m, c->ud);
    }
}

static void nats_op(herald_client_t *c, const struct hc_nats_msg *o)
{
    herald_msg_t m;

    switch (o->op) {
    case HN_MSG:
        memset(&m, 0, sizeof m);
        m.op = HERALD_OP_PUB;
        m.channel = o->subject;
        m.channel_len = o->subject_len;
        m.data = o->payload;
        m.data_len = o->len;
        m.raw = o->payload;
        m.raw_len = o->len;
        dispatch(c, &m);
        break;
    case HN_PING: nats_send(c, (const unsigned char *)"PONG\r\n", 6); break;
    case HN_PONG: nats_pong(c); break;
    case HN_ERR: {
        char why[128];
        snprintf(why, sizeof why, "NATS: -ERR %.*s", (int)(o->len > 100 ? 100 : o->len), (const char *)o->payload);
        if (c->state == ST_CONNECTING) {
            finish(c, HERALD_E_REFUSED, 1006, why);
            break;
        }
        /* The server mostly closes after an -ERR: that is why the client ended. */
        if (!c->close_reason[0]) snprintf(c->close_reason, sizeof c->close_reason, "%s", why);
        memset(&m, 0, sizeof m);
        m.op = HERALD_OP_ERROR;
        m.reason = (const char *)o->payload;
        m.reason_len = o->len;
        dispatch(c, &m);
        break;
    }
    default: break;                /* INFO again (cluster changes), +OK */
    }
}

/* One WebSocket message's bytes of the NATS stream: the operations they
 * complete, and what is left of an unfinished one kept for the next.
 * Return: 0, or -1 if the client is finished (the reason is recorded). */
static int nats_on_data(herald_client_t *c, const unsigned char *p, size_t len)
{
    const unsigned char *s = p;
    size_t n = len;
    int in_rx = 0;

    if (c->nrxlen) {
        if (reserve(&c->nrx, &c->nrxcap, c->nrxlen + len)) {
            protocol_error(c, 1011, UV_ENOMEM, "out of memory");
            return -1;
        }
        if (len) memcpy(c->nrx + c->nrxlen, p, len);
        c->nrxlen += len;
        s = c->nrx;
        n = c->nrxlen;
        in_rx = 1;
    }
    while (n && c->state < ST_CLOSING && !held_back(c)) {     /* a pause keeps the rest in nrx */
        struct hc_nats_msg o;
        const char *why = "";
        long used = hc_nats_next(s, n, c->opts.max_message, &o, &why);

        if (used == 0) break;
        if (!c->got_info && (used < 0 || o.op != HN_INFO)) {
            not_nats(c, s, n);
            return -1;
        }
        if (used == -2) {
            protocol_error(c, 1009, HERALD_E_TOO_LARGE, "NATS message too large");
            return -1;
        }
        if (used < 0) {
            char b[96];
            snprintf(b, sizeof b, "NATS protocol error: %s", why);
            protocol_error(c, 1002, HERALD_E_PROTOCOL, b);
            return -1;
        }
        if (o.op == HN_INFO && !c->got_info) {
            /* The wait for INFO is over: the connect timeout runs again for the rest. */
            c->got_info = 1;
            if (c->state == ST_CONNECTING) uv_timer_start(&c->timer, on_timer, c->opts.connect_timeout_ms, 0);
        } else {
            nats_op(c, &o);
        }
        s += (size_t)used;
        n -= (size_t)used;
    }
    if (c->state >= ST_CLOSING) n = 0;
    if (n && in_rx) {
        memmove(c->nrx, s, n);
    } else if (n) {
        if (reserve(&c->nrx, &c->nrxcap, n)) {
            protocol_error(c, 1011, UV_ENOMEM, "out of memory");
            return -1;
        }
        memcpy(c->nrx, s, n);
    }
    c->nrxlen = n;
    if (!n && c->nrxcap > RX_KEEP) {
        free(c->nrx);
        c->nrx = NULL;
        c->nrxcap = 0;
    }
    return 0;
}

static void on_close_frame(herald_client_t *c, const unsigned char *p, size_t n)
{
    c->got_close = 1;
    if (n >= 2) {
        size_t rl = n - 2 < sizeof c->close_reason - 1 ? n - 2 : sizeof c->close_reason - 1;
        c->close_code = p[0] << 8 | p[1];
        memcpy(c->close_reason, p + 2, rl);
        c->close_reason[rl] = '\0';
    } else {
        c->close_code = 1005;
    }
    if (!c->sent_close) {
        /* Echo the code, then wait for the server to close TCP first
         * (RFC 6455 7.1.1), which keeps TIME_WAIT on the server side. */
        c->sent_close = 1;
        send_frame(c, WS_CLOSE, p, n >= 2 ? 2 : 0);
        c->state = ST_CLOSING;
        uv_timer_start(&c->timer, on_timer, c->opts.close_timeout_ms, 0);
    }
    c->state = ST_CLOSING;
}

/* Parses the frames in @p; returns the bytes used (a trailing partial frame
 * is left, and at a pause every frame after it), or -1 if the client is
 * finished. */
static long parse_frames(herald_client_t *c, const unsigned char *p, size_t n)
{
    size_t off = 0;

    while (c->state != ST_DONE && !held_back(c)) {   /* a pause leaves the frames after it */
        const unsigned char *h = p + off;
        size_t avail = n - off, hl = 2;
        uint64_t plen;
        int fin, op;

        if (avail < 2) break;
        fin = h[0] & 0x80;
        op = h[0] & 0x0f;
        if ((h[0] & 0x70) || (h[1] & 0x80)) {
            protocol_error(c, 1002, HERALD_E_PROTOCOL, "reserved bits or masked frame from server");
            return -1;
        }
        plen = h[1] & 0x7f;
        if (plen == 126) {
            if (avail < 4) break;
            plen = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (plen == 127) {
            if (avail < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = plen << 8 | h[2 + i];
            hl = 10;
        }
        if (plen > c->opts.max_message) {
            protocol_error(c, 1009, HERALD_E_TOO_LARGE, "server frame too large");
            return -1;
        }
        if (avail < hl + plen) {
            c->rxneed = hl + (size_t)plen;   /* alloc_cb sizes the next read for it */
            break;
        }
        c->rxneed = 0;
        h += hl;
        off += hl + (size_t)plen;
        if (op >= 0x8) {
            if (!fin || plen > 125) {
                protocol_error(c, 1002, HERALD_E_PROTOCOL, "bad control frame");
                return -1;
            }
            if (op == WS_PING) {
                if (c->state < ST_CLOSING) send_frame(c, WS_PONG, h, (size_t)plen);
            } else if (op == WS_CLOSE) {
                on_close_frame(c, h, (size_t)plen);
            } else if (op != WS_PONG) {
                protocol_error(c, 1002, HERALD_E_PROTOCOL, "unknown control opcode");
                return -1;
            }
            continue;
        }
        if (c->state >= ST_CLOSING) continue;      /* data after a close is ignored */
        if (op == WS_TEXT || op == WS_BIN) {
            if (c->frag_op) {
                protocol_error(c, 1002, HERALD_E_PROTOCOL, "new message inside a fragmented one");
                return -1;
            }
            if (fin) {
                if (on_message(c, h, (size_t)plen)) {
                    protocol_error(c, 1002, HERALD_E_PROTOCOL, "unparsable Herald message");
                    return -1;
                }
                continue;
            }
            c->frag_op = (uint8_t)op;
            c->msglen = 0;
        } else if (op != WS_CONT || !c->frag_op) {
            protocol_error(c, 1002, HERALD_E_PROTOCOL, "unexpected continuation or opcode");
            return -1;
        }
        if (c->msglen + plen > c->opts.max_message) {
            protocol_error(c, 1009, HERALD_E_TOO_LARGE, "server message too large");
            return -1;
        }
        if (reserve(&c->msg, &c->msgcap, c->msglen + (size_t)plen)) {
            protocol_error(c, 1011, UV_ENOMEM, "out of memory");
            return -1;
        }
        memcpy(c->msg + c->msglen, h, (size_t)plen);
        c->msglen += (size_t)plen;
        if (fin) {
            size_t len = c->msglen;
            c->frag_op = 0;
            c->msglen = 0;
            if (on_message(c, c->msg, len)) {
                protocol_error(c, 1002, HERALD_E_PROTOCOL, "unparsable Herald message");
                return -1;
            }
            if (c->msgcap > RX_KEEP) {
                free(c->msg);
                c->msg = NULL;
                c->msgcap = 0;
            }
        }
    }
    return c->state == ST_DONE ? -1 : (long)off;
}

static const char *header(const char *hdrs, const char *end, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = hdrs;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

static int send_connect(herald_client_t *c);

/* Reads the HTTP answer to the upgrade. Returns the header bytes used, 0 if
 * more are needed, -1 if the client is finished. */
static long parse_upgrade(herald_client_t *c, const unsigned char *p, size_t n)
{
    const char *s = (const char *)p, *end, *v;
    const char *proto = c->enc == HERALD_MSGPACK ? "herald.msgpack" : "herald.json";
    char why[128];
    size_t vl;

    end = memmem(s, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > HANDSHAKE_MAX) finish(c, HERALD_E_HANDSHAKE, 1006, "upgrade response too long");
        return n > HANDSHAKE_MAX ? -1 : 0;
    }
    if (n < 12 || strncmp(s, "HTTP/1.1 101", 12)) {
        const char *eol = memchr(s, '\r', (size_t)(end - s));
        snprintf(why, sizeof why, "upgrade refused: %.*s", (int)(eol - s > 80 ? 80 : eol - s), s);
        finish(c, HERALD_E_HANDSHAKE, 1006, why);
        return -1;
    }
    if (!(v = header(s, end, "sec-websocket-accept", &vl)) || vl != strlen(c->accept) ||
        memcmp(v, c->accept, vl)) {
        finish(c, HERALD_E_HANDSHAKE, 1006, "bad Sec-WebSocket-Accept");
        return -1;
    }
    v = header(s, end, "sec-websocket-protocol", &vl);
    if (c->nats) {
        /* NATS asks for no subprotocol; a server that names one is not NATS. */
        if (v) {
            finish(c, HERALD_E_HANDSHAKE, 1006, "not a NATS server: it chose a WebSocket subprotocol");
            return -1;
        }
    } else if (v ? (vl != strlen(proto) || memcmp(v, proto, vl)) : c->enc != HERALD_JSON) {
        finish(c, HERALD_E_HANDSHAKE, 1006, "server did not accept the subprotocol");
        return -1;
    }
    c->state = ST_CONNECTING;
    if (send_connect(c)) {
        finish(c, UV_ENOMEM, 1006, "out of memory");
        return -1;
    }
    return (long)(end + 4 - s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    herald_client_t *c = h->data;
    size_t want;

    (void)suggested;
    if (!c->rxlen || c->ssl) {             /* TLS: ciphertext always lands in rbuf */
        *buf = uv_buf_init((char *)c->ctx->rbuf, RBUF_SIZE);
        return;
    }
    /* A frame is cut: read straight into the client's buffer behind it. */
    want = c->rxlen + 16384;
    if (c->rxneed > want) want = c->rxneed;
    if (reserve(&c->rx, &c->rxcap, want)) {
        *buf = uv_buf_init(NULL, 0);       /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)c->rx + c->rxlen, (unsigned)(c->rxcap - c->rxlen));
}

/* Handles @n bytes of plaintext at @p: either fresh in the context's rbuf,
 * or (p == c->rx) the client's rx buffer, whose tail a read has just filled. */
static void on_bytes(herald_client_t *c, const unsigned char *p, size_t n)
{
    long used = 0;

    if (c->state == ST_UPGRADE) {
        used = parse_upgrade(c, p, n);
        if (used < 0) return;
    }
    if (c->state != ST_UPGRADE) {
        long u = parse_frames(c, p + used, n - (size_t)used);
        if (u < 0) return;
        used += u;
    }
    n -= (size_t)used;
    if (p == c->rx) {
        if (n) memmove(c->rx, c->rx + used, n);
    } else if (n) {
        if (reserve(&c->rx, &c->rxcap, n > 16384 ? n : 16384)) {
            finish(c, UV_ENOMEM, 1006, "out of memory");
            return;
        }
        memcpy(c->rx, p + used, n);
    }
    c->rxlen = n;
    if (!n && c->rxcap > RX_KEEP) {
        free(c->rx);
        c->rx = NULL;
        c->rxcap = 0;
    }
}

static void on_eof(herald_client_t *c, int err)
{
    if (err == UV_EOF && c->state == ST_CLOSING) finish(c, 0, 1006, NULL);
    else if (err == UV_EOF && c->state == ST_UPGRADE)
        finish(c, HERALD_E_HANDSHAKE, 1006,
               "the server closed the connection during the WebSocket upgrade (wrong path or subprotocol?)");
    else if (err == UV_EOF) finish(c, UV_EOF, 1006, "connection closed by the server");
    else finish(c, err, 1006, uv_strerror(err));
}

/* ---- TLS (wss://) ----
 * OpenSSL works on memory BIOs and never touches the socket: ciphertext read
 * by libuv is written into rbio, plaintext comes out of SSL_read() into the
 * same buffers the ws:// path parses; plaintext queued in c->out goes through
 * SSL_write() into wbio, whose bytes are written from c->tout by flush(). So
 * the loop, the batching and the buffers are the same for both schemes. */

static void tls_fail(herald_client_t *c, const char *what)
{
    char why[200] = "";
    unsigned long e = ERR_get_error();
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;

    if (v != X509_V_OK)
        snprintf(why, sizeof why, "%s: certificate verify failed: %s", what, X509_verify_cert_error_string(v));
    else if (e)
        snprintf(why, sizeof why, "%s: %s", what, ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "error");
    else
        snprintf(why, sizeof why, "%s", what);
    ERR_clear_error();
    finish(c, HERALD_E_TLS, 1006, why);
}

/* Moves queued plaintext into TLS records and the records into c->tout.
 * Return: 0, or -1 if the client is finished. */
static int tls_encrypt(herald_client_t *c)
{
    size_t pend;

    if (c->tls_done && c->out.len) {
        int n = SSL_write(c->ssl, c->out.p, (int)c->out.len);   /* a memory BIO takes it all */
        if (n <= 0) {
            tls_fail(c, "TLS write failed");
            return -1;
        }
        c->out.len = 0;
        if (c->out.cap > OUT_KEEP) {
            free(c->out.p);
            c->out.p = NULL;
            c->out.cap = 0;
        }
    }
    while ((pend = BIO_ctrl_pending(c->wbio))) {
        if (obuf_reserve(&c->tout, pend)) {
            finish(c, UV_ENOMEM, 1006, "out of memory");
            return -1;
        }
        c->tout.len += (size_t)BIO_read(c->wbio, c->tout.p + c->tout.len, (int)pend);
    }
    return 0;
}

/* Drives the handshake. Return: 0, or -1 if the client is finished. */
static int tls_handshake(herald_client_t *c)
{
    int r = SSL_do_handshake(c->ssl);

    if (r == 1) {
        c->tls_done = 1;                   /* the upgrade request in c->out may go now */
    } else {
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            tls_fail(c, "TLS handshake failed");
            return -1;
        }
    }
    dirty_add(c);
    return 0;
}

/* Decrypts and handles what OpenSSL holds, until it wants more ciphertext
 * or a pause: then the rest stays in OpenSSL for the resume. */
static void tls_drain(herald_client_t *c)
{
    while (c->state != ST_DONE && !held_back(c)) {
        unsigned char *dst;
        size_t cap;
        int k;

        if (c->rxlen) {                     /* a frame is cut: decrypt behind it */
            size_t want = c->rxlen + 16384;
            if (c->rxneed > want) want = c->rxneed;
            if (reserve(&c->rx, &c->rxcap, want)) {
                finish(c, UV_ENOMEM, 1006, "out of memory");
                return;
            }
            dst = c->rx + c->rxlen;
            cap = c->rxcap - c->rxlen;
        } else {                            /* rbuf's ciphertext is already in rbio */
            dst = c->ctx->rbuf;
            cap = RBUF_SIZE;
        }
        k = SSL_read(c->ssl, dst, (int)(cap > INT32_MAX ? INT32_MAX : cap));
        if (k <= 0) {
            int e = SSL_get_error(c->ssl, k);
            if (e == SSL_ERROR_WANT_READ) break;
            if (e == SSL_ERROR_ZERO_RETURN) on_eof(c, UV_EOF);
            else tls_fail(c, "TLS read failed");
            return;
        }
        if (dst == c->ctx->rbuf) {
            on_bytes(c, dst, (size_t)k);
        } else {
            c->rxlen += (size_t)k;
            on_bytes(c, c->rx, c->rxlen);
        }
    }
    if (c->state != ST_DONE && BIO_ctrl_pending(c->wbio)) dirty_add(c);
}

static void tls_read(herald_client_t *c, const unsigned char *p, size_t n)
{
    if (BIO_write(c->rbio, p, (int)n) != (int)n) {
        finish(c, UV_ENOMEM, 1006, "out of memory");
        return;
    }
    if (!c->tls_done && (tls_handshake(c) || !c->tls_done)) return;
    tls_drain(c);
}

static int tls_start(herald_client_t *c, const herald_url_t *url)
{
    struct in6_addr a6;
    struct in_addr a4;

    if (!c->ctx->tls) {
        int r = herald_ctx_set_tls(c->ctx, NULL);
        if (r) return r;
    }
    if (!(c->ssl = SSL_new(c->ctx->tls)) || !(c->rbio = BIO_new(BIO_s_mem())) || !(c->wbio = BIO_new(BIO_s_mem()))) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        c->ssl = NULL;
        return UV_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    /* A name is sent as SNI and is what the certificate must be for; an
     * address literal is never sent as SNI (RFC 6066) and must be in the
     * certificate's IP addresses. */
    if (inet_pton(AF_INET, url->sni, &a4) == 1 || inet_pton(AF_INET6, url->sni, &a6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), url->sni);
    } else if (*url->sni) {
        SSL_set_tlsext_host_name(c->ssl, url->sni);
        SSL_set1_host(c->ssl, url->sni);
    }
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    herald_client_t *c = s->data;

    if (nread == 0 || c->state == ST_DONE) return;
    if (nread < 0) {
        on_eof(c, (int)nread);
        return;
    }
    c->ctx->now = uv_hrtime();
    if (c->ssl) {
        tls_read(c, (const unsigned char *)buf->base, (size_t)nread);
    } else if (buf->base == (char *)c->ctx->rbuf) {
        on_bytes(c, c->ctx->rbuf, (size_t)nread);
    } else {
        c->rxlen += (size_t)nread;
        on_bytes(c, c->rx, c->rxlen);
    }
    if (c->ctx->dirty && c->ctx->now - c->ctx->flushed >= FLUSH_MAX_WAIT_NS) herald_ctx_flush(c->ctx);
}

/* ---- flow control ---- */

/* A resumed client: delivers what the pause kept, in the order it came
 * (the rest of the cut message, the frames after it, then OpenSSL's
 * plaintext), then reads again. Stops where a callback pauses again. After
 * a close, the kept messages are dropped as a closing client drops any, but
 * the kept frames are still parsed: the server's close frame may be among
 * them. */
static void resume_deliver(herald_client_t *c)
{
    int r;

    if (c->state == ST_DONE || c->paused) return;
    c->ctx->now = c->held_ns;
    if (c->heldlen) {
        size_t n = c->heldlen;

        c->heldlen = 0;                    /* deliver() holds what a new pause leaves */
        if (deliver(c, c->held, n, 1)) {
            protocol_error(c, 1002, HERALD_E_PROTOCOL, "unparsable Herald message");
            return;
        }
        if (!c->heldlen && c->heldcap > RX_KEEP) {
            free(c->held);
            c->held = NULL;
            c->heldcap = 0;
        }
    }
    if (c->nats && c->nrxlen && c->state < ST_DONE && !held_back(c)) nats_on_data(c, c->nrx, 0);
    if (c->rxlen && c->state < ST_DONE && !held_back(c)) on_bytes(c, c->rx, c->rxlen);
    if (c->ssl && c->state < ST_DONE && !held_back(c)) tls_drain(c);
    if (c->state == ST_DONE || held_back(c) || !c->rstopped) return;
    c->rstopped = 0;
    if ((r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))) finish(c, r, 1006, uv_strerror(r));
}

static void on_idle(uv_idle_t *h)
{
    herald_ctx_t *ctx = h->data;
    herald_client_t *c;

    /* A callback may pause and resume again (the client is listed anew and
     * goes on here) or end other clients (finish() unlists them). */
    while ((c = ctx->resumed)) {
        resumed_del(c);
        resume_deliver(c);
    }
}

int herald_client_pause(herald_client_t *c)
{
    if (c->state >= ST_CLOSING) return HERALD_E_STATE;
    c->paused = 1;
    resumed_del(c);                        /* a resume not yet run is void */
    pause_apply(c);
    return 0;
}

int herald_client_resume(herald_client_t *c)
{
    if (c->state == ST_DONE) return HERALD_E_STATE;
    if (!c->paused) return 0;
    c->paused = 0;
    if (c->rstopped || c->heldlen) resumed_add(c);
    return 0;
}

int herald_client_paused(const herald_client_t *c)
{
    return c->paused;
}

/* A map with one string entry, {@key: @val}, in @enc, into a new buffer.
 * Return: the buffer (the caller frees it), or NULL out of memory. */
static unsigned char *one_entry_map(herald_encoding_t enc, const char *key, const char *val, size_t *len)
{
    size_t kl = strlen(key), vl = strlen(val);
    size_t kn = herald_encode_str(enc, key, kl, NULL, 0), vn = herald_encode_str(enc, val, vl, NULL, 0);
    unsigned char *b = malloc(kn + vn + 3), *p = b;

    if (!b) return NULL;
    *p++ = enc == HERALD_JSON ? '{' : 0x81;
    p += herald_encode_str(enc, key, kl, p, kn);
    if (enc == HERALD_JSON) *p++ = ':';
    p += herald_encode_str(enc, val, vl, p, vn);
    if (enc == HERALD_JSON) *p++ = '}';
    *len = (size_t)(p - b);
    return b;
}

static int send_connect(herald_client_t *c)
{
    struct hc_extra x = { 0 };
    unsigned char *fields = NULL;
    int r;

    /* NATS: CONNECT and PING at once, before the server's INFO arrives, so
     * a server that is not NATS but answers anything is told apart at once;
     * one that stays silent, by the shorter wait for INFO. */
    if (c->nats) {
        if (c->opts.connect_timeout_ms > NATS_INFO_MS) uv_timer_start(&c->timer, on_timer, NATS_INFO_MS, 0);
        return nats_connect(c);
    }

    if (c->token) {
        if (!(fields = one_entry_map((herald_encoding_t)c->enc, "token", c->token, &x.flen))) return UV_ENOMEM;
        x.fields = fields;
    }
    r = request_x(c, "connect", NULL, 0, &x, NULL, NULL, NULL);
    free(fields);
    return r;
}

static void on_connect(uv_connect_t *req, int status)
{
    herald_client_t *c = req->data;
    int r;

    if (c->state == ST_DONE) return;
    if (status < 0) {
        finish(c, status, 1006, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = ST_UPGRADE;
    if ((r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))) {
        finish(c, r, 1006, uv_strerror(r));
        return;
    }
    if (c->ssl) {
        tls_handshake(c);          /* the ClientHello; the upgrade request waits for the handshake */
        return;
    }
    dirty_add(c);                  /* the upgrade request is already in c->out */
}

/* Writes the HTTP upgrade request into c->out and remembers the accept value
 * the server must answer with. */
static int build_upgrade(herald_client_t *c, const herald_url_t *url)
{
    unsigned char raw[16], dig[EVP_MAX_MD_SIZE];
    char key[32], concat[96];
    unsigned dlen = 0;
    int n;

    for (int i = 0; i < 4; i++) {
        uint32_t v = rng32(c->ctx);
        memcpy(raw + 4 * i, &v, 4);
    }
    EVP_EncodeBlock((unsigned char *)key, raw, 16);
    snprintf(concat, sizeof concat, "%s" WS_GUID, key);
    if (!EVP_Digest(concat, strlen(concat), dig, &dlen, EVP_sha1(), NULL)) return UV_ENOMEM;
    EVP_EncodeBlock((unsigned char *)c->accept, dig, (int)dlen);
    if (obuf_reserve(&c->out, 256 + sizeof url->host + sizeof url->path)) return UV_ENOMEM;
    n = snprintf((char *)c->out.p, c->out.cap,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                 url->path, url->host, key, c->nats ? "" : "Sec-WebSocket-Protocol: ",
                 c->nats ? "" : c->enc == HERALD_MSGPACK ? "herald.msgpack" : "herald.json", c->nats ? "" : "\r\n");
    c->out.len = (size_t)n;
    return 0;
}

int herald_client_new(herald_ctx_t *ctx, const herald_url_t *url, const herald_opts_t *opts,
                      const herald_callbacks_t *cb, void *ud, herald_client_t **out)
{
    herald_client_t *c = calloc(1, sizeof *c);
    int r;

    if (!c) return UV_ENOMEM;
    c->ctx = ctx;
    c->cb = *cb;
    c->ud = ud;
    if (opts) c->opts = *opts;
    if (c->opts.token && !(c->token = strdup(c->opts.token))) {
        free(c);
        return UV_ENOMEM;
    }
    c->opts.token = NULL;          /* c->token is the copy; the caller's may go away */
    if (!c->opts.connect_timeout_ms) c->opts.connect_timeout_ms = 10000;
    if (!c->opts.close_timeout_ms) c->opts.close_timeout_ms = 2000;
    if (!c->opts.max_message) c->opts.max_message = 16u << 20;
    c->enc = (uint8_t)(c->opts.encoding == HERALD_MSGPACK ? HERALD_MSGPACK : HERALD_JSON);
    c->nats = ctx->nats;
    if ((r = build_upgrade(c, url)) || (url->tls && (r = tls_start(c, url))) ||
        (r = uv_tcp_init(ctx->loop, &c->tcp))) {
        free(c->out.p);
        free(c->token);
        if (c->ssl) SSL_free(c->ssl);
        free(c);
        return r;
    }
    uv_timer_init(ctx->loop, &c->timer);
    c->tcp.data = c->timer.data = c->creq.data = c;
    c->handles = 2;
    if ((r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&url->addr, on_connect))) {
        /* No callback may fire for a failed call: close quietly. */
        c->cb.on_close = NULL;
        c->state = ST_DONE;
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        return r;
    }
    uv_timer_start(&c->timer, on_timer, c->opts.connect_timeout_ms, 0);
    *out = c;
    return 0;
}

void *herald_client_ud(const herald_client_t *c) { return c->ud; }
void herald_client_set_ud(herald_client_t *c, void *ud) { c->ud = ud; }
herald_encoding_t herald_client_encoding(const herald_client_t *c) { return (herald_encoding_t)c->enc; }
int herald_client_is_open(const herald_client_t *c) { return c->state == ST_OPEN; }
uint32_t herald_client_pending(const herald_client_t *c) { return c->plen - c->pholes; }
size_t herald_client_queued(const herald_client_t *c) { return c->out.len + c->tout.len + c->wr.len; }

void herald_close(herald_client_t *c, int code, const char *reason)
{
    unsigned char b[2 + 123];
    size_t rl = reason ? strlen(reason) : 0;

    if (c->state == ST_DONE || c->state == ST_CLOSING) return;
    if (c->state != ST_OPEN) {
        finish(c, HERALD_E_ABORTED, 1006, "closed before open");
        return;
    }
    if (!code) code = 1000;
    if (rl > 123) rl = 123;
    b[0] = (unsigned char)(code >> 8);
    b[1] = (unsigned char)code;
    if (rl) memcpy(b + 2, reason, rl);
    c->sent_close = 1;
    c->state = ST_CLOSING;
    if (send_frame(c, WS_CLOSE, b, 2 + rl)) {
        finish(c, UV_ENOMEM, 1006, "out of memory");
        return;
    }
    uv_timer_start(&c->timer, on_timer, c->opts.close_timeout_ms, 0);
    if (c->paused) {
        /* The close handshake needs the server's answer: read again. */
        c->paused = 0;
        if (c->rstopped || c->heldlen) resumed_add(c);
    }
}

void herald_client_abort(herald_client_t *c)
{
    finish(c, HERALD_E_ABORTED, 1006, "aborted");
}
