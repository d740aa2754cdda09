/* storage/engine_tls.c - TLS to Redis for hiredis 0.14, which has none: an
 * in-process bridge on the broker's loop.
 *
 * Owns: the TLS context (trusted CAs, client certificate, verification), a
 * private directory with one listening unix socket per slot, and each
 * bridged connection: the unix socket hiredis connected to, the TCP socket
 * to Redis, its TLS session and the two buffers between them. Does not
 * own: the hiredis contexts, reconnecting, backoff or the connect and
 * command timeouts (engine_redis.c, and engine_webhooks.c for the
 * delivery threads' connections).
 * DESIGN: hiredis 0.14 reads and writes its socket itself and cannot adopt
 * one, so it connects (redisAsyncConnectUnix) to a unix socket in a
 * directory only this user may enter (mkdtemp: 0700); the bridge accepts
 * it, checks with SO_PEERCRED that the peer is this very process, connects
 * to Redis and forwards the bytes both ways through a non-blocking OpenSSL
 * session. Everything runs on the loop with uv_poll: no thread, no lock,
 * no blocking call (the TCP connect is non-blocking and the handshake
 * moves a step each time the socket allows); the CPU that TLS costs is
 * spent on the loop, beside hiredis' own parsing. A thread would keep that
 * CPU off the loop, but add a hand-off per command and the locking to
 * prove; at Redis' rates the crypto is small next to the syscalls.
 * Other threads' blocking hiredis connections (the webhook delivery
 * threads: one each, a small script a few times a second) come through
 * the same way, on a slot of their own (ENGINE_TLS_SLOT_THREADS): its
 * socket accepts any number of connections, each bridged on the loop to a
 * TLS connection of its own, so a thread's blocking call waits on its own
 * unix socket and never on the loop. The path is fixed when the bridge is
 * made, before any such thread starts; until the engine routes the slot
 * (its first address resolved) a connection waits in the backlog, so a
 * thread that comes early is served late, not refused.
 * Each direction has one buffer of BUF bytes; a full buffer stops reading
 * the side that fills it, so a slow side cannot grow memory.
 * A failure on the Redis side (refused, handshake, verification, reset)
 * closes the unix side: hiredis sees a disconnect and engine_redis.c's
 * reconnect-with-backoff takes over. A closed unix side (hiredis let the
 * connection go, or its connect timeout did) closes the TLS side. A failure
 * is logged as an error the first time it happens and as a debug line
 * when it repeats on the retries; the bridge forgets what it logged once
 * Redis answered through it. */
#include "engine_tls.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF (64 * 1024)
#define NLOGGED 4
/* A slot's listen backlog: room for every webhook's delivery thread
 * (WEBHOOK_MAX, broker/config.h) connecting before the first route. */
#define BACKLOG 64

struct slot {
    engine_tls_t *t;
    int fd;                       /* listening, or -1 */
    uv_poll_t poll;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct sockaddr_storage to;   /* where the next accepted connection goes */
    socklen_t tolen;
    char name[INET6_ADDRSTRLEN + 8]; /* to, as "ip:port" for the logs */
};

/* One hiredis connection carried to Redis. */
struct pair {
    struct pair *next;
    engine_tls_t *t;
    int lfd, rfd;                 /* local (hiredis), remote (Redis) */
    uv_poll_t lpoll, rpoll;
    int handles;                  /* of lpoll and rpoll, not closed yet */
    SSL *ssl;
    int connecting;               /* the TCP connect is in flight */
    int handshaken;
    int answered;                 /* Redis sent bytes through: the route works */
    int want_write;               /* the last TLS call waits for the TCP socket to be writable */
    int closing;
    char name[INET6_ADDRSTRLEN + 8];
    size_t up_off, up_len;        /* up: from hiredis, to Redis */
    size_t down_off, down_len;    /* down: from Redis, to hiredis */
    unsigned char up[BUF], down[BUF];
};

struct engine_tls {
    uv_loop_t *loop;
    SSL_CTX *ctx;
    char host[256];               /* the name (or address) verified */
    int host_is_ip;
    int verify;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct slot slots[ENGINE_TLS_SLOTS];
    struct pair *pairs;
    unsigned handles;             /* slot polls and pairs not closed yet */
    int freeing;
    /* The failures logged as errors since Redis last answered (a ring): a
     * failed attempt may end in one of a few ways (an alert, or the reset
     * that follows it), and the slots interleave. */
    char logged[NLOGGED][200];
    unsigned nlogged;
};

/* ---- the TLS context ---- */

static int has(const char *s) { return s && *s; }

/* The reason of the last OpenSSL error, in words, into @buf. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = 0, x;
    const char *r;

    while ((x = ERR_get_error())) e = x;
    if (!e) {
        snprintf(buf, len, "unknown TLS error");
        return buf;
    }
    r = ERR_reason_error_string(e);
    if (r) snprintf(buf, len, "%s", r);
    else ERR_error_string_n(e, buf, len);
    return buf;
}

/* Whether @path can be read; if not, says why in @err under @what. */
static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");

    if (f) {
        fclose(f);
        return 1;
    }
    snprintf(err, errlen, "[engine] %s %s cannot be read: %s", what, path, strerror(errno));
    return 0;
}

/* A client context as @c says: TLS 1.2 or later, partial writes (the
 * bridge writes what the socket takes and keeps the rest), the peer
 * verified unless told not to. Return: it, or NULL with @err. */
static SSL_CTX *ctx_new(const struct engine_tls_conf *c, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    char why[160];

    ERR_clear_error();
    if (has(c->ca) && !readable("tls_ca", c->ca, err, errlen)) return NULL;
    if (has(c->cert) != has(c->key)) {
        snprintf(err, errlen, "[engine] tls_cert and tls_key go together");
        return NULL;
    }
    if (has(c->cert) && (!readable("tls_cert", c->cert, err, errlen) || !readable("tls_key", c->key, err, errlen)))
        return NULL;
    if (!(ctx = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errlen, "[engine] cannot make a TLS context: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Redis killed or restarted closes without close_notify: an end like
     * another (a reply cut short is an incomplete RESP reply, which hiredis
     * never takes for a whole one), not a protocol error to log. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(ctx, c->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (has(c->ca) ? SSL_CTX_load_verify_locations(ctx, c->ca, NULL) != 1
                   : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "[engine] tls_ca %s: no CA certificate could be loaded (%s)",
                 has(c->ca) ? c->ca : "(the system store)", ssl_reason(why, sizeof why));
        goto fail;
    }
    if (has(c->cert)) {
        if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
            snprintf(err, errlen, "[engine] tls_cert %s: not a PEM certificate (%s)", c->cert,
                     ssl_reason(why, sizeof why));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == SSL_R_NO_PRIVATE_KEY_ASSIGNED) {
                ERR_clear_error();
                snprintf(err, errlen, "[engine] tls_key %s is not the private key of tls_cert %s", c->key, c->cert);
            } else {
                snprintf(err, errlen, "[engine] tls_key %s: not a PEM private key (%s)", c->key,
                         ssl_reason(why, sizeof why));
            }
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int engine_tls_ctx_check(const struct engine_tls_conf *conf, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(conf, err, errlen);

    if (!ctx) return -EINVAL;
    SSL_CTX_free(ctx);
    return 0;
}

/* ---- failures ---- */

/* Logs @fmt for a failed route: an error when it is news, a debug line when
 * it was logged since Redis last answered (each retry fails alike). */
static void route_failed(engine_tls_t *t, const char *fmt, ...)
{
    char msg[sizeof t->logged[0]];
    va_list ap;
    int repeat = 0;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (unsigned i = 0; i < NLOGGED && i < t->nlogged; i++) repeat |= !strcmp(msg, t->logged[i]);
    hlog(repeat ? LOG_DEBUG : LOG_ERROR, "engine", "redis over TLS: %s; retrying", msg);
    if (!repeat) memcpy(t->logged[t->nlogged++ % NLOGGED], msg, sizeof msg);
}

/* ---- a bridged connection ---- */

static void t_release(engine_tls_t *t)
{
    if (--t->handles || !t->freeing) return;
    SSL_CTX_free(t->ctx);
    free(t);
}

static void on_pair_closed(uv_handle_t *h)
{
    struct pair *p = h->data;

    if (--p->handles) return;
    SSL_free(p->ssl);
    t_release(p->t);
    free(p);
}

/* Closes both sides of @p. @clean: Redis' side is healthy, so it is told
 * (close_notify) that the session ends. */
static void pair_close(struct pair *p, int clean)
{
    engine_tls_t *t = p->t;

    if (p->closing) return;
    p->closing = 1;
    for (struct pair **pp = &t->pairs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (clean && p->handshaken) {
        ERR_clear_error();
        SSL_shutdown(p->ssl);                   /* one try: the socket goes next */
    }
    ERR_clear_error();
    uv_close((uv_handle_t *)&p->lpoll, on_pair_closed);
    close(p->lfd);
    uv_close((uv_handle_t *)&p->rpoll, on_pair_closed);
    close(p->rfd);
}

/* What went wrong with @p's TLS session after a call returned @err. */
static void describe(struct pair *p, int err, char *buf, size_t len)
{
    long v = SSL_get_verify_result(p->ssl);
    char why[160];

    if (p->t->verify && v != X509_V_OK) {
        ERR_clear_error();
        snprintf(buf, len, "the certificate of %.100s is not trusted: %.80s", p->t->host, X509_verify_cert_error_string(v));
    } else if (err == SSL_ERROR_SSL) {
        snprintf(buf, len, "TLS %s with %s failed: %s", p->handshaken ? "session" : "handshake", p->name,
                 ssl_reason(why, sizeof why));
    } else if (err == SSL_ERROR_SYSCALL && errno) {
        snprintf(buf, len, "TLS %s with %s failed: %s", p->handshaken ? "session" : "handshake", p->name,
                 strerror(errno));
    } else {
        ERR_clear_error();
        snprintf(buf, len, "%s closed the connection%s", p->name, p->handshaken ? "" : " in the TLS handshake");
    }
}

/* A TLS call on @p returned @rc (<= 0) and it is not a wait: log, close. */
static void tls_failed(struct pair *p, int rc)
{
    int err = SSL_get_error(p->ssl, rc);
    char msg[240];

    describe(p, err, msg, sizeof msg);
    if (p->answered && (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL))
        hlog(LOG_DEBUG, "engine", "redis over TLS: %s", msg); /* a restart: engine_redis.c says it */
    else
        route_failed(p->t, "%s", msg);
    pair_close(p, 0);
}

static void pair_pump(struct pair *p);
static void on_local(uv_poll_t *h, int status, int events);
static void on_remote(uv_poll_t *h, int status, int events);

static void set_polls(struct pair *p)
{
    int lev = (p->up_off + p->up_len < BUF ? UV_READABLE : 0) | (p->down_len ? UV_WRITABLE : 0);
    int rev = p->connecting ? UV_WRITABLE
            : (p->down_off + p->down_len < BUF ? UV_READABLE : 0) | (p->want_write ? UV_WRITABLE : 0);

    if (lev) uv_poll_start(&p->lpoll, lev, on_local);
    else uv_poll_stop(&p->lpoll);
    if (rev) uv_poll_start(&p->rpoll, rev, on_remote);
    else uv_poll_stop(&p->rpoll);
}

/* Reads what hiredis wrote into up. Return: 0, or -1 (@p closed). */
static int read_local(struct pair *p)
{
    if (p->up_off) {                            /* after a partial TLS write only */
        memmove(p->up, p->up + p->up_off, p->up_len);
        p->up_off = 0;
    }
    while (p->up_off + p->up_len < BUF) {
        ssize_t n = read(p->lfd, p->up + p->up_off + p->up_len, BUF - p->up_off - p->up_len);
        if (n > 0) {
            p->up_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        /* hiredis let the connection go (or its socket failed). */
        pair_close(p, 1);
        return -1;
    }
    return 0;
}

/* Writes down to hiredis. Return: 0, or -1 (@p closed). */
static int write_local(struct pair *p)
{
    while (p->down_len) {
        ssize_t n = send(p->lfd, p->down + p->down_off, p->down_len, MSG_NOSIGNAL);
        if (n > 0) {
            p->down_off += (size_t)n;
            p->down_len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        pair_close(p, 1);
        return -1;
    }
    if (!p->down_len) p->down_off = 0;
    return 0;
}

/* Moves what it can both ways, then polls for what is left: hiredis -> up,
 * the handshake, up -> TLS, TLS -> down, down -> hiredis. uv_poll is level
 * triggered, so one pass per event loses nothing. */
static void pair_pump(struct pair *p)
{
    int rc;

    if (p->closing) return;
    /* Read even while connecting: hiredis writes its handshake at once, and
     * a readable socket left unread would wake the (level-triggered) loop
     * again and again until the connect ends. */
    if (read_local(p)) return;
    if (p->connecting) {
        set_polls(p);
        return;
    }
    p->want_write = 0;
    if (!p->handshaken) {
        ERR_clear_error();
        if ((rc = SSL_do_handshake(p->ssl)) != 1) {
            int err = SSL_get_error(p->ssl, rc);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                tls_failed(p, rc);
                return;
            }
            p->want_write = err == SSL_ERROR_WANT_WRITE;
            set_polls(p);
            return;
        }
        p->handshaken = 1;
        hlog(LOG_DEBUG, "engine", "redis over TLS: %s with %s (%s)", SSL_get_version(p->ssl), p->name,
             SSL_get_cipher_name(p->ssl));
    }
    while (p->up_len) {
        ERR_clear_error();
        rc = SSL_write(p->ssl, p->up + p->up_off, (int)p->up_len);
        if (rc > 0) {
            p->up_off += (size_t)rc;
            p->up_len -= (size_t)rc;
            continue;
        }
        if (SSL_get_error(p->ssl, rc) == SSL_ERROR_WANT_WRITE) p->want_write = 1;
        else if (SSL_get_error(p->ssl, rc) != SSL_ERROR_WANT_READ) {
            tls_failed(p, rc);
            return;
        }
        break;
    }
    if (!p->up_len) p->up_off = 0;
    if (p->down_off) {                          /* after a partial write to hiredis only */
        memmove(p->down, p->down + p->down_off, p->down_len);
        p->down_off = 0;
    }
    while (p->down_off + p->down_len < BUF) {
        ERR_clear_error();
        rc = SSL_read(p->ssl, p->down + p->down_off + p->down_len, (int)(BUF - p->down_off - p->down_len));
        if (rc > 0) {
            p->down_len += (size_t)rc;
            if (!p->answered) {
                p->answered = 1;
                p->t->nlogged = 0;
            }
            continue;
        }
        if (SSL_get_error(p->ssl, rc) == SSL_ERROR_WANT_WRITE) p->want_write = 1;
        else if (SSL_get_error(p->ssl, rc) != SSL_ERROR_WANT_READ) {
            /* Hand hiredis what came before (a last error reply), then close. */
            int e = errno;
            if (write_local(p)) return;
            errno = e;
            tls_failed(p, rc);
            return;
        }
        break;
    }
    if (write_local(p)) return;
    set_polls(p);
}

static void on_local(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    pair_pump(h->data);
}

static void on_remote(uv_poll_t *h, int status, int events)
{
    struct pair *p = h->data;
    (void)events;

    if (p->connecting) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(p->rfd, SOL_SOCKET, SO_ERROR, &soerr, &sl)) soerr = errno;
        if (!soerr && status < 0) soerr = -status;
        if (soerr) {
            route_failed(p->t, "cannot connect to redis at %s: %s", p->name, strerror(soerr));
            pair_close(p, 0);
            return;
        }
        p->connecting = 0;
    }
    pair_pump(p);
}

/* Where the session checks it is talking to the right server: SNI and the
 * name for a name, the address for an address; nothing when not verifying. */
static int set_peer(engine_tls_t *t, SSL *ssl)
{
    if (!t->host_is_ip && !SSL_set_tlsext_host_name(ssl, t->host)) return -1;
    if (!t->verify) return 0;
    if (t->host_is_ip) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t->host) == 1 ? 0 : -1;
    return SSL_set1_host(ssl, t->host) == 1 ? 0 : -1;
}

/* A TCP socket to Redis: no Nagle delay (a command is one write), and
 * keepalive to find a Redis host that vanished without a word, as hiredis
 * does for its own TCP connections (engine_redis.c). */
static int tcp_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), on = 1, idle = 15, intvl = 5, cnt = 3;

    if (fd < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    return fd;
}

/* Carries hiredis' socket @lfd (taken) to @s's route. */
static void pair_start(struct slot *s, int lfd)
{
    engine_tls_t *t = s->t;
    struct pair *p = calloc(1, sizeof *p);
    int rfd = -1;

    if (!p || (rfd = tcp_socket(s->to.ss_family)) < 0 || !(p->ssl = SSL_new(t->ctx)) ||
        !SSL_set_fd(p->ssl, rfd) || set_peer(t, p->ssl)) {
        hlog(LOG_ERROR, "engine", "redis over TLS: cannot start a connection: %s",
             !p ? "out of memory" : rfd < 0 ? strerror(errno) : "TLS setup failed");
        if (p) SSL_free(p->ssl);
        ERR_clear_error();
        free(p);
        if (rfd >= 0) close(rfd);
        close(lfd);
        return;
    }
    SSL_set_connect_state(p->ssl);
    p->t = t;
    p->lfd = lfd;
    p->rfd = rfd;
    memcpy(p->name, s->name, sizeof p->name);
    uv_poll_init(t->loop, &p->lpoll, lfd);
    uv_poll_init(t->loop, &p->rpoll, rfd);
    p->lpoll.data = p->rpoll.data = p;
    p->handles = 2;
    t->handles++;                               /* released when both polls closed */
    p->next = t->pairs;
    t->pairs = p;
    if (connect(rfd, (struct sockaddr *)&s->to, s->tolen)) {
        if (errno != EINPROGRESS) {
            route_failed(t, "cannot connect to redis at %s: %s", p->name, strerror(errno));
            pair_close(p, 0);
            return;
        }
        p->connecting = 1;
    }
    pair_pump(p);
}

/* ---- the listening sockets ---- */

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct slot *s = h->data;
    (void)status;
    (void)events;

    for (;;) {
        struct ucred cr = { 0 };
        socklen_t l = sizeof cr;
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                hlog(LOG_WARN, "engine", "redis over TLS: accept on %s: %s", s->path, strerror(errno));
            return;
        }
        /* The directory keeps others out; this keeps out even this user's
         * other processes: only hiredis, in here, is bridged. */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) || cr.pid != getpid()) {
            hlog(LOG_WARN, "engine", "redis over TLS: refused a connection to %s from process %d", s->path,
                 (int)cr.pid);
            close(fd);
            continue;
        }
        if (!s->tolen) {                        /* no route yet: cannot happen through engine_tls_route() */
            close(fd);
            continue;
        }
        pair_start(s, fd);
    }
}

static int slot_listen(engine_tls_t *t, struct slot *s, int i)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    s->t = t;
    s->fd = -1;
    if (snprintf(s->path, sizeof s->path, "%s/%d", t->dir, i) >= (int)sizeof s->path) return -ENAMETOOLONG;
    memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
    if ((s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) return -errno;
    if (bind(s->fd, (struct sockaddr *)&sa, sizeof sa) || listen(s->fd, BACKLOG)) {
        int r = -errno;
        close(s->fd);
        s->fd = -1;
        return r;
    }
    uv_poll_init(t->loop, &s->poll, s->fd);
    s->poll.data = s;
    t->handles++;
    return 0;                                   /* accepting from the first route on */
}

int engine_tls_new(uv_loop_t *loop, const struct engine_tls_conf *conf, const char *host, engine_tls_t **out,
                   char *err, size_t errlen)
{
    engine_tls_t *t = calloc(1, sizeof *t);
    const char *tmp = getenv("TMPDIR");
    const char *name = has(conf->server_name) ? conf->server_name : host;
    unsigned char addr[16];
    int r;

    if (!t) {
        snprintf(err, errlen, "[engine] tls: out of memory");
        return -ENOMEM;
    }
    if (!(t->ctx = ctx_new(conf, err, errlen))) {
        free(t);
        return -EINVAL;
    }
    t->loop = loop;
    t->verify = conf->verify;
    snprintf(t->host, sizeof t->host, "%s", name);
    t->host_is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    /* Room for "/N" after the directory in a sun_path; a long TMPDIR falls back to /tmp. */
    if (!tmp || !*tmp || strlen(tmp) + sizeof "/herald-redis-tls-XXXXXX/0" > sizeof t->dir) tmp = "/tmp";
    snprintf(t->dir, sizeof t->dir, "%s/herald-redis-tls-XXXXXX", tmp);
    if (!mkdtemp(t->dir)) {
        snprintf(err, errlen, "[engine] tls: cannot make a private directory in %s: %s", tmp, strerror(errno));
        SSL_CTX_free(t->ctx);
        free(t);
        return -EIO;
    }
    for (int i = 0; i < ENGINE_TLS_SLOTS; i++)
        if ((r = slot_listen(t, &t->slots[i], i))) {
            snprintf(err, errlen, "[engine] tls: cannot listen on %s: %s", t->slots[i].path, strerror(-r));
            engine_tls_free(t);
            return -EIO;
        }
    if (!t->verify)
        hlog(LOG_WARN, "engine", "[engine] tls_verify = off: the Redis server's certificate is not checked; anyone "
             "on the path can pose as it (for tests only)");
    *out = t;
    return 0;
}

const char *engine_tls_route(engine_tls_t *t, int slot, const char *ip, int port)
{
    struct slot *s = &t->slots[slot];
    struct sockaddr_in *v4 = (struct sockaddr_in *)&s->to;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->to;

    if (!s->tolen) uv_poll_start(&s->poll, UV_READABLE, on_accept);
    memset(&s->to, 0, sizeof s->to);
    if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        s->tolen = sizeof *v6;
        snprintf(s->name, sizeof s->name, "[%s]:%d", ip, port);
    } else {
        inet_pton(AF_INET, ip, &v4->sin_addr);
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        s->tolen = sizeof *v4;
        snprintf(s->name, sizeof s->name, "%s:%d", ip, port);
    }
    return s->path;
}

const char *engine_tls_path(const engine_tls_t *t, int slot) { return t->slots[slot].path; }

static void on_slot_closed(uv_handle_t *h)
{
    struct slot *s = h->data;
    t_release(s->t);
}

void engine_tls_free(engine_tls_t *t)
{
    unsigned held;

    if (!t) return;
    t->freeing = 1;
    /* One hold while closing, so the last close callback cannot free @t
     * under this loop. */
    t->handles++;
    for (int i = 0; i < ENGINE_TLS_SLOTS; i++) {
        struct slot *s = &t->slots[i];
        if (s->fd < 0 && !s->t) continue;
        if (s->fd >= 0) {
            uv_close((uv_handle_t *)&s->poll, on_slot_closed);
            close(s->fd);
            s->fd = -1;
        }
        if (*s->path) unlink(s->path);
    }
    while (t->pairs) pair_close(t->pairs, 1);
    rmdir(t->dir);
    held = --t->handles;
    if (!held) {
        SSL_CTX_free(t->ctx);
        free(t);
    }
}
