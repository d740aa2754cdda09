/* broker/core/whpost.c - see whpost.h. */
#include "core/whpost.h"
#include "herald.h"
#include "clock.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The most of a response read: its status line is all that counts. */
#define RESPONSE_MAX 8192
/* Slices a blocking wait is cut into, so that a stop is seen quickly. */
#define SLICE_MS 100

/* Waits up to the deadline for @events on @fd, in slices that notice a stop.
 * Return: 1 ready, 0 timed out or stopping, -1 error. */
static int wait_fd(whpost_t *w, int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = { fd, events, 0 };
        int64_t left = deadline - (int64_t)(clock_mono_ns() / 1000000);
        int r;
        if (left <= 0 || w->stopping(w->arg)) return 0;
        r = poll(&p, 1, (int)(left < SLICE_MS ? left : SLICE_MS));
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* Opens a connection to the webhook's host before @deadline.
 * Return: the socket, or -1 with @err. */
static int dial(whpost_t *w, int64_t deadline, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *a;
    int fd = -1, rc;

    if ((rc = getaddrinfo(w->conf->host, w->conf->port, &hints, &res))) {
        snprintf(err, errlen, "cannot resolve %.100s: %s", w->conf->host, gai_strerror(rc));
        return -1;
    }
    snprintf(err, errlen, "cannot connect to %.100s:%s", w->conf->host, w->conf->port);
    for (a = res; a; a = a->ai_next) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if ((fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol)) < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS && wait_fd(w, fd, POLLOUT, deadline) == 1 &&
            !getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && !soerr)
            break;
        if (soerr) snprintf(err, errlen, "cannot connect to %.100s:%s: %s", w->conf->host, w->conf->port, strerror(soerr));
        else if ((int64_t)(clock_mono_ns() / 1000000) >= deadline)
            snprintf(err, errlen, "timed out connecting to %.100s:%s", w->conf->host, w->conf->port);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* One request's connection: a socket, and its TLS session for https. */
struct conn {
    whpost_t *w;
    int fd;
    SSL *ssl;
    int64_t deadline;
};

/* Waits for what the TLS session @rc asked for (SSL_ERROR_WANT_*).
 * Return: 1 go on, 0 timed out or stopping, -1 a TLS or socket error. */
static int tls_wait(struct conn *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) return wait_fd(c->w, c->fd, POLLIN, c->deadline);
    if (e == SSL_ERROR_WANT_WRITE) return wait_fd(c->w, c->fd, POLLOUT, c->deadline);
    return -1;
}

/* Describes the last TLS failure of @c into @err. */
static void tls_error(struct conn *c, char *err, size_t errlen)
{
    long vr = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_last_error();
    char buf[200];

    if (vr != X509_V_OK) {
        snprintf(err, errlen, "TLS: the certificate of %.100s is not trusted: %s", c->w->conf->host,
                 X509_verify_cert_error_string(vr));
        return;
    }
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(err, errlen, "TLS handshake with %.100s failed: %.60s", c->w->conf->host, buf);
    } else {
        snprintf(err, errlen, "TLS handshake with %.100s failed: connection closed", c->w->conf->host);
    }
}

/* Starts TLS on @c: SNI (for a name, not an address), and the peer's
 * certificate verified against the trusted CAs and @host (name or IP).
 * Return: 0, or -1 with @err. */
static int tls_start(struct conn *c, char *err, size_t errlen)
{
    const webhook_conf_t *cf = c->w->conf;
    unsigned char addr[16];
    int ip = inet_pton(AF_INET, cf->host, addr) == 1 || inet_pton(AF_INET6, cf->host, addr) == 1, rc, r;

    ERR_clear_error();
    if (!(c->ssl = SSL_new(c->w->tls)) || !SSL_set_fd(c->ssl, c->fd)) {
        snprintf(err, errlen, "TLS: out of memory");
        return -1;
    }
    if (ip ? !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), cf->host)
           : !SSL_set_tlsext_host_name(c->ssl, cf->host) || !SSL_set1_host(c->ssl, cf->host)) {
        snprintf(err, errlen, "TLS: cannot set the host to verify");
        return -1;
    }
    while ((rc = SSL_connect(c->ssl)) != 1) {
        if ((r = tls_wait(c, rc)) == 1) continue;
        if (r == 0) snprintf(err, errlen, "timed out in the TLS handshake with %.100s", cf->host);
        else tls_error(c, err, errlen);
        return -1;
    }
    return 0;
}

/* Writes @len bytes of @p before the deadline. Return: 0, or -1. */
static int send_all(struct conn *c, const char *p, size_t len)
{
    while (len) {
        if (c->ssl) {
            size_t k = 0;
            int rc;
            ERR_clear_error();
            if ((rc = SSL_write_ex(c->ssl, p, len, &k)) == 1) { p += k; len -= k; continue; }
            if (tls_wait(c, rc) != 1) return -1;
        } else {
            ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL);
            if (k > 0) { p += k; len -= (size_t)k; continue; }
            if (k < 0 && errno != EAGAIN && errno != EINTR) return -1;
            if (wait_fd(c->w, c->fd, POLLOUT, c->deadline) != 1) return -1;
        }
    }
    return 0;
}

/* Reads what is there, up to @cap bytes, waiting until the deadline.
 * Return: bytes read (> 0), 0 at the end of the answer, -1 an error, -2 timed out. */
static ssize_t recv_some(struct conn *c, char *buf, size_t cap)
{
    for (;;) {
        int r;
        if (c->ssl) {
            size_t k = 0;
            int rc;
            ERR_clear_error();
            if ((rc = SSL_read_ex(c->ssl, buf, cap, &k)) == 1) return (ssize_t)k;
            if (SSL_get_error(c->ssl, rc) == SSL_ERROR_ZERO_RETURN) return 0;
            if ((r = tls_wait(c, rc)) == 1) continue;
        } else {
            ssize_t k = recv(c->fd, buf, cap, 0);
            if (k >= 0) return k;
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return -1;
            r = wait_fd(c->w, c->fd, POLLIN, c->deadline);
            if (r == 1) continue;
        }
        return r == 0 ? -2 : -1;
    }
}

static void conn_close(struct conn *c)
{
    /* No close_notify: the answer has been read as far as it matters, and
     * waiting for the peer's would only cost time. */
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* The hex HMAC-SHA256 of "<t>.<body>" under the webhook's secret ("" out of memory). */
static void sign(const webhook_conf_t *c, long long t, const char *body, size_t len, char hex[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    char *msg = malloc(len + 32);
    int pl;

    hex[0] = '\0';
    if (!msg) return;
    pl = snprintf(msg, 32, "%lld.", t);
    memcpy(msg + pl, body, len);
    if (HMAC(EVP_sha256(), c->secret, (int)strlen(c->secret), (const unsigned char *)msg, (size_t)pl + len, mac,
             &mlen))
        for (unsigned i = 0; i < mlen && i < 32; i++) sprintf(hex + 2 * i, "%02x", mac[i]);
    free(msg);
}

/* Only the status line of the answer is read (at most RESPONSE_MAX bytes,
 * then the connection is closed): a 2xx is a delivery whatever follows. */
int whpost_send(whpost_t *w, const char *body, size_t blen, const char *ids, char *err, size_t errlen)
{
    const webhook_conf_t *c = w->conf;
    struct conn cn = { w, -1, NULL, (int64_t)(clock_mono_ns() / 1000000) + c->timeout_ms };
    long long t = (long long)(clock_wall_ms() / 1000);
    char head[2048 + 1024], sig[65], resp[RESPONSE_MAX + 1];
    int dflt = !strcmp(c->port, c->tls ? "443" : "80"), hl, status = 0;
    size_t got = 0;
    char *eol;

    sign(c, t, body, blen, sig);
    hl = snprintf(head, sizeof head,
                  "POST %s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: herald/%s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\nHerald-Webhook: %s\r\nHerald-Event-Id: %s\r\n"
                  "Herald-Signature: t=%lld,v1=%s\r\nConnection: close\r\n\r\n",
                  c->path, c->host, dflt ? "" : ":", dflt ? "" : c->port, HERALD_VERSION, blen, c->name, ids, t, sig);
    if (hl < 0 || (size_t)hl >= sizeof head) {
        snprintf(err, errlen, "request head too long");
        return -1;
    }
    if ((cn.fd = dial(w, cn.deadline, err, errlen)) < 0) return -1;
    if (c->tls && tls_start(&cn, err, errlen)) {
        conn_close(&cn);
        return -1;
    }
    if (send_all(&cn, head, (size_t)hl) || send_all(&cn, body, blen)) {
        snprintf(err, errlen, "%s sending the request",
                 (int64_t)(clock_mono_ns() / 1000000) >= cn.deadline ? "timed out" : "connection lost");
        conn_close(&cn);
        return -1;
    }
    while (got < RESPONSE_MAX && !memchr(resp, '\n', got)) {
        ssize_t k = recv_some(&cn, resp + got, RESPONSE_MAX - got);
        if (k > 0) { got += (size_t)k; continue; }
        if (k == -2) {
            snprintf(err, errlen, "timed out after %u ms waiting for the answer", c->timeout_ms);
            conn_close(&cn);
            return -1;
        }
        break;
    }
    conn_close(&cn);
    resp[got] = '\0';
    if ((eol = strchr(resp, '\r')) || (eol = strchr(resp, '\n'))) *eol = '\0';
    if (strncmp(resp, "HTTP/1.", 7) || sscanf(resp + 8, " %3d", &status) != 1 || status < 100) {
        snprintf(err, errlen, "not an HTTP answer%s", got ? "" : " (connection closed)");
        return -1;
    }
    if (status >= 200 && status < 300) return 0;
    if (status >= 300 && status < 400)
        snprintf(err, errlen, "HTTP %d: redirects are not followed", status);
    else
        snprintf(err, errlen, "HTTP %d", status);
    return -1;
}


/* The TLS context of an https webhook: TLS 1.2 or later, the peer verified
 * against @c->ca_file, or the system's CA store when it has none.
 * Return: it, or NULL (logged). */
static SSL_CTX *tls_ctx(const webhook_conf_t *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char buf[200];

    if (!ctx) {
        hlog(LOG_ERROR, "webhook", "%s: cannot make a TLS context", c->name);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (*c->ca_file ? SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL) != 1
                    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        hlog(LOG_ERROR, "webhook", "%s: cannot load the trusted CAs from %s: %s", c->name,
             *c->ca_file ? c->ca_file : "the system store", buf);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}


int whpost_init(whpost_t *w, const webhook_conf_t *c, int (*stopping)(void *arg), void *arg)
{
    w->conf = c;
    w->stopping = stopping;
    w->arg = arg;
    w->tls = NULL;
    if (c->tls && !(w->tls = tls_ctx(c))) return -1;
    return 0;
}

void whpost_deinit(whpost_t *w)
{
    SSL_CTX_free(w->tls);
    w->tls = NULL;
}
