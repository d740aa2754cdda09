/* clients/cli/rest.c - see rest.h.
 *
 * The answer is read until the connection closes (the request says
 * "Connection: close") or Content-Length bytes of body have arrived, so
 * neither chunked bodies nor keep-alive need handling. https:// goes through
 * OpenSSL with the same verification rules as the client library's wss://
 * (system CAs or --cafile, the host name checked, --insecure to skip). */
#include "rest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define RESP_MAX (64u << 20)

struct conn {
    int fd;
    SSL_CTX *sctx;
    SSL *ssl;
};

static void conn_close(struct conn *k)
{
    if (k->ssl) {
        SSL_shutdown(k->ssl);
        SSL_free(k->ssl);
    }
    if (k->sctx) SSL_CTX_free(k->sctx);
    if (k->fd >= 0) close(k->fd);
}

static int tls_start(const struct cli *g, struct conn *k, const char *host)
{
    unsigned long e;
    char why[256] = "";
    struct in_addr a4;
    struct in6_addr a6;

    if (!(k->sctx = SSL_CTX_new(TLS_client_method()))) goto fail;
    SSL_CTX_set_min_proto_version(k->sctx, TLS1_2_VERSION);
    if (!g->insecure) {
        SSL_CTX_set_verify(k->sctx, SSL_VERIFY_PEER, NULL);
        if (g->cafile ? SSL_CTX_load_verify_locations(k->sctx, g->cafile, NULL) != 1
                      : SSL_CTX_set_default_verify_paths(k->sctx) != 1) {
            cli_err(g, "cannot load CA certificates%s%s", g->cafile ? " from " : "", g->cafile ? g->cafile : "");
            return -1;
        }
    }
    if (!(k->ssl = SSL_new(k->sctx))) goto fail;
    SSL_set_fd(k->ssl, k->fd);
    /* As the client library: a name is SNI and what the certificate is for;
     * an address literal must be among its IP addresses. */
    if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
        if (!g->insecure) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), host);
    } else {
        SSL_set_tlsext_host_name(k->ssl, host);
        if (!g->insecure) SSL_set1_host(k->ssl, host);
    }
    if (SSL_connect(k->ssl) == 1) return 0;
fail:
    e = ERR_get_error();
    if (e) ERR_error_string_n(e, why, sizeof why);
    if (k->ssl && SSL_get_verify_result(k->ssl) != X509_V_OK)
        snprintf(why, sizeof why, "certificate verify failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(k->ssl)));
    cli_err(g, "TLS with %s failed: %s", host, *why ? why : "handshake failed");
    return -1;
}

static int conn_open(const struct cli *g, struct conn *k)
{
    const char *base = g->http_base, *hp;
    char host[512], port[8];
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
    struct timeval tv = { .tv_sec = g->timeout_ms / 1000, .tv_usec = (g->timeout_ms % 1000) * 1000 };
    int tls = !strncasecmp(base, "https://", 8), r;
    size_t hl;

    k->fd = -1;
    hp = base + (tls ? 8 : 7);
    if (*hp == '[') {
        const char *rb = strchr(hp, ']');
        hl = rb ? (size_t)(rb - hp - 1) : 0;
        snprintf(host, sizeof host, "%.*s", (int)hl, hp + 1);
        hp = rb ? rb + 1 : hp + strlen(hp);
    } else {
        hl = strcspn(hp, ":");
        snprintf(host, sizeof host, "%.*s", (int)hl, hp);
        hp += hl;
    }
    snprintf(port, sizeof port, "%s", *hp == ':' ? hp + 1 : tls ? "443" : "80");
    hl = strlen(port);
    if (hl && port[hl - 1] == '/') port[hl - 1] = '\0';
    if ((r = getaddrinfo(host, port, &hints, &res))) {
        cli_err(g, "%s: %s", base, gai_strerror(r));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        k->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (k->fd < 0) continue;
        setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (!connect(k->fd, ai->ai_addr, ai->ai_addrlen)) break;
        r = errno;
        close(k->fd);
        k->fd = -1;
        errno = r;
    }
    freeaddrinfo(res);
    if (k->fd < 0) {
        cli_err(g, "cannot connect to %s: %s", base, strerror(errno));
        return -1;
    }
    return tls ? tls_start(g, k, g->tls_name ? g->tls_name : host) : 0;
}

static int conn_write(struct conn *k, const char *p, size_t n)
{
    while (n) {
        ssize_t w = k->ssl ? SSL_write(k->ssl, p, (int)n) : send(k->fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (!k->ssl && w < 0 && errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Return: bytes read, 0 at the end, -1 on error or timeout. */
static ssize_t conn_read(struct conn *k, char *p, size_t n)
{
    for (;;) {
        ssize_t r;
        if (k->ssl) {
            r = SSL_read(k->ssl, p, (int)n);
            if (r > 0) return r;
            return SSL_get_error(k->ssl, (int)r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        }
        r = recv(k->fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        return r;
    }
}

int rest_path_escape(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(out);

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~:@,=", ch)) {
            if (n + 1 >= cap) return -1;
            out[n++] = (char)ch;
        } else {
            if (n + 3 >= cap) return -1;
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
    return 0;
}

void rest_resp_free(struct rest_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
}

/* One attempt of rest_request(); *@retry_after gets the Retry-After header's
 * seconds (0 when absent). */
static int request_once(const struct cli *g, const char *method, const char *path, const char *body,
                        struct rest_resp *resp, unsigned *retry_after)
{
    struct conn k = { .fd = -1 };
    const char *hp = g->http_base + (strncasecmp(g->http_base, "https://", 8) ? 7 : 8);
    char *head = NULL, *buf = NULL, *hend, *cl;
    size_t blen = body ? strlen(body) : 0, len = 0, cap = 0, want = (size_t)-1;
    int hn, status;

    memset(resp, 0, sizeof *resp);
    if (conn_open(g, &k)) goto fail;
    hn = asprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: herald-cli/%s\r\nConnection: close\r\n"
                  "%s%s%s%s%zu\r\n\r\n",
                  method, path, hp, HERALD_VERSION,
                  g->api_key ? "Authorization: Bearer " : "", g->api_key ? g->api_key : "", g->api_key ? "\r\n" : "",
                  body ? "Content-Type: application/json\r\nContent-Length: " : "Content-Length: ", blen);
    if (hn < 0) { head = NULL; goto oom; }
    if (conn_write(&k, head, (size_t)hn) || (blen && conn_write(&k, body, blen))) {
        cli_err(g, "sending to %s failed: %s", g->http_base, strerror(errno));
        goto fail;
    }
    for (;;) {
        ssize_t r;
        if (cap - len < 4096) {
            char *nb;
            cap = cap ? cap * 2 : 16384;
            if (cap > RESP_MAX) {
                cli_err(g, "the answer from %s is too large", g->http_base);
                goto fail;
            }
            if (!(nb = realloc(buf, cap + 1))) goto oom;
            buf = nb;
        }
        r = conn_read(&k, buf + len, cap - len);
        if (r < 0) {
            cli_err(g, "no answer from %s within %u ms", g->http_base, g->timeout_ms);
            goto fail;
        }
        if (r == 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        if (want == (size_t)-1 && (hend = strstr(buf, "\r\n\r\n"))) {
            cl = strcasestr(buf, "\r\ncontent-length:");
            if (cl && cl < hend) want = (size_t)(hend + 4 - buf) + strtoull(cl + 17, NULL, 10);
        }
        if (len >= want) break;
    }
    if (!buf || len < 12 || strncmp(buf, "HTTP/1.", 7) || sscanf(buf + 9, "%3d", &status) != 1 ||
        !(hend = strstr(buf, "\r\n\r\n"))) {
        cli_err(g, "%s answered something that is not HTTP", g->http_base);
        goto fail;
    }
    resp->status = status;
    *retry_after = 0;
    if ((cl = strcasestr(buf, "\r\nretry-after:")) && cl < hend) {
        unsigned long v = strtoul(cl + 14, NULL, 10);
        *retry_after = v > 3600 ? 3600 : (unsigned)v;
    }
    resp->len = len - (size_t)(hend + 4 - buf);
    memmove(buf, hend + 4, resp->len);
    buf[resp->len] = '\0';
    resp->body = buf;
    free(head);
    conn_close(&k);
    return 0;
oom:
    cli_err(g, "out of memory");
fail:
    free(head);
    free(buf);
    conn_close(&k);
    return -1;
}

/* Whether @resp is a refusal made before the broker did anything, so that
 * the same request may be sent again whatever it is: 503 with error 135
 * (overloaded: shed at admission) or 429 (a rate limit). Other 503s (a
 * store that failed, the engine unreachable) may have done part of it. */
static int may_retry(const struct rest_resp *resp)
{
    json_t *j, *e;
    int yes;

    if (resp->status == 429) return 1;
    if (resp->status != 503) return 0;
    j = json_loadb(resp->body, resp->len, 0, NULL);
    e = j ? json_object_get(json_object_get(j, "error"), "code") : NULL;
    yes = json_is_integer(e) && json_integer_value(e) == 135;
    json_decref(j);
    return yes;
}

int rest_request(const struct cli *g, const char *method, const char *path, const char *body,
                 struct rest_resp *resp)
{
    uint64_t waited = 0;
    unsigned retry_after;

    /* Waiting is bounded by --timeout in all: a broker that asks for longer
     * than is left gets its refusal reported at once instead. */
    for (unsigned attempt = 0;; attempt++) {
        uint64_t ms;
        if (request_once(g, method, path, body, resp, &retry_after)) return -1;
        if (!may_retry(resp)) return 0;
        /* Retry-After when given (whole seconds), else a short backoff. */
        ms = retry_after ? retry_after * 1000ull : (attempt < 4 ? 250ull << attempt : 2000);
        if (waited + ms > g->timeout_ms) return 0;
        cli_err(g, "%s %s: HTTP %d (%s), trying again in %.1f s", method, path, resp->status,
                resp->status == 429 ? "rate limited" : "broker overloaded", (double)ms / 1000);
        rest_resp_free(resp);
        usleep((useconds_t)(ms * 1000));
        waited += ms;
    }
}

int rest_check(const struct cli *g, const struct rest_resp *resp)
{
    json_t *j, *e;

    if (resp->status >= 200 && resp->status < 300) return CLI_OK;
    j = json_loadb(resp->body, resp->len, 0, NULL);
    e = j ? json_object_get(j, "error") : NULL;
    if (e && json_is_integer(json_object_get(e, "code")))
        cli_err(g, "error %lld (HTTP %d): %s", (long long)json_integer_value(json_object_get(e, "code")),
                resp->status, json_string_value(json_object_get(e, "reason")) ?: "");
    else
        cli_err(g, "HTTP %d: %.200s", resp->status, resp->body);
    json_decref(j);
    return CLI_E_REFUSED;
}
