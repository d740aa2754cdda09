/* broker/net/http.c - see http.h. */
#include "net/http.h"
#include "net/conns.h"
#include "net/frame.h"
#include "net/peer.h"
#include "net/session.h"
#include "auth/auth.h"
#include "herald.h"
#include "msg.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct http_hooks hooks;

void http_set_hooks(const struct http_hooks *h) { hooks = *h; }

static void reset(http_req_t *r)
{
    conn_unregister(&r->serial);
    free(r->body);
    free(r->resp);
    memset(r, 0, sizeof *r);
}

void http_on_closed(http_req_t *r)
{
    if (!r || r->kind != HTTP_KIND) return;
    if (r->stream) r->stream->stream->closed(r->stream);
    reset(r);
}

static int add_hdr(struct lws *wsi, const char *name, const char *value, unsigned char **p, unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)value,
                                       (int)strlen(value), p, end);
}

/* Reason phrases libwebsockets 4.1 does not know (204, and its 4xx table ends at 417):
 * it writes "HTTP/1.1 426 " with an empty phrase. */
static const char *missing_phrase(unsigned status)
{
    switch (status) {
    case 204: return "No Content";
    case 422: return "Unprocessable Entity";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    default: return NULL;
    }
}

int http_add_common_headers(struct lws *wsi, unsigned status, const char *type, size_t len, unsigned char **p,
                            unsigned char *end)
{
    unsigned char *line = *p, *eol;
    const char *phrase = missing_phrase(status);

    if (lws_add_http_header_status(wsi, status, p, end)) return -1;
    /* Put the phrase into lws's status line, keeping lws's bookkeeping of
     * the status (keep-alive, logging) intact. */
    if (phrase && *p - line > 5 && !memcmp(line, "HTTP/", 5) &&
        (eol = memchr(line, '\r', (size_t)(*p - line))) && eol[-1] == ' ') {
        size_t plen = strlen(phrase);
        if ((size_t)(end - *p) <= plen) return -1;
        memmove(eol + plen, eol, (size_t)(*p - eol));
        memcpy(eol, phrase, plen);
        *p += plen;
    }
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)type,
                                     (int)strlen(type), p, end) ||
        lws_add_http_header_content_length(wsi, (lws_filepos_t)len, p, end))
        return -1;
    return 0;
}

/* Headers every response carries. */
static int common_headers(http_req_t *r, unsigned status, unsigned char **p, unsigned char *end)
{
    struct lws *wsi = r->wsi;
    char num[16];

    if (add_hdr(wsi, "cache-control:", r->cache ? r->cache : "no-store", p, end) ||
        (r->etag && add_hdr(wsi, "etag:", r->etag, p, end)) ||
        add_hdr(wsi, "x-content-type-options:", "nosniff", p, end) ||
        add_hdr(wsi, "x-frame-options:", "DENY", p, end) ||
        add_hdr(wsi, "referrer-policy:", "no-referrer", p, end))
        return -1;
    if (r->cors_origin[0] &&
        (add_hdr(wsi, "access-control-allow-origin:", r->cors_origin, p, end) ||
         add_hdr(wsi, "vary:", "Origin", p, end)))
        return -1;
    if (status == 401 && add_hdr(wsi, "www-authenticate:", "Bearer realm=\"herald\"", p, end)) return -1;
    if ((status == 429 || status == 503) && r->retry_after) {
        snprintf(num, sizeof num, "%u", r->retry_after);
        if (add_hdr(wsi, "retry-after:", num, p, end)) return -1;
    }
    if (r->close_after && add_hdr(wsi, "connection:", "close", p, end)) return -1;
    return 0;
}

static void log_request(http_req_t *r, unsigned status)
{
    int errors = status >= 400;
    if (srv.cfg.log_requests == LOG_REQ_OFF || (srv.cfg.log_requests == LOG_REQ_ERRORS && !errors)) return;
    hlog(errors && status >= 500 ? LOG_WARN : LOG_INFO, "rest", "%s %s %s -> %u (%.1f ms)", r->peer, r->method_name,
         r->path, status, (double)(clock_mono_ns() - r->start_ns) / 1e6);
}

int http_respond(http_req_t *r, unsigned status, const char *type, const void *body, size_t len)
{
    unsigned char hdr[2048], *p = hdr, *end = hdr + sizeof hdr - 1;
    struct lws *wsi = r->wsi;
    size_t hlen;

    log_request(r, status);
    conn_unregister(&r->serial);
    free(r->resp);
    r->resp = NULL;
    /* The headers are only built here (lws_finalize_http_header() writes
     * nothing); they go out with the body in http_on_writable(). */
    if (http_add_common_headers(wsi, status, type, len, &p, end) ||
        common_headers(r, status, &p, end) ||
        (r->csp && add_hdr(wsi, "content-security-policy:", r->csp, &p, end)) ||
        lws_finalize_http_header(wsi, &p, end))
        return -1;
    hlen = (size_t)(p - hdr);
    r->resp = malloc(FRAME_HEADROOM + hlen + len + 1);
    if (!r->resp) return -1;
    memcpy(r->resp + FRAME_HEADROOM, hdr, hlen);
    if (len) memcpy(r->resp + FRAME_HEADROOM + hlen, body, len);
    r->resp_len = hlen + len;
    lws_callback_on_writable(wsi);
    return 0;
}

int http_stream_start(http_req_t *r, const char *type)
{
    unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    struct lws *wsi = r->wsi;

    log_request(r, 200);
    /* No Content-Length: the body ends when the connection does. The
     * X-Accel-Buffering header asks nginx-style proxies not to hold events
     * back in their buffers. */
    if (lws_add_http_common_headers(wsi, 200, type, LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        common_headers(r, 200, &p, end) ||
        add_hdr(wsi, "x-accel-buffering:", "no", &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    /* lws would otherwise time the response out as a stalled transfer.
     * (lws_http_mark_sse() does this too, but logs an error on HTTP/1.) */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    return 0;
}

int http_respond_not_modified(http_req_t *r)
{
    unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    struct lws *wsi = r->wsi;

    log_request(r, 304);
    conn_unregister(&r->serial);
    free(r->resp);
    /* The writable callback sends what r->resp holds: nothing here. A 304
     * carries no body, so no Content-Length either (RFC 9110 15.4.5). */
    if (!(r->resp = malloc(FRAME_HEADROOM + 1))) return -1;
    r->resp_len = 0;
    if (lws_add_http_common_headers(wsi, 304, NULL, LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        common_headers(r, 304, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* A CORS preflight: 204 with what the API accepts, when the Origin may call it. */
static int preflight(http_req_t *r)
{
    unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    struct lws *wsi = r->wsi;

    if (http_add_common_headers(wsi, 204, "application/json", 0, &p, end) ||
        common_headers(r, 204, &p, end) ||
        (r->cors_origin[0] &&
         (add_hdr(wsi, "access-control-allow-methods:", "GET, POST, PUT, DELETE, OPTIONS", &p, end) ||
          add_hdr(wsi, "access-control-allow-headers:", "Authorization, Content-Type", &p, end) ||
          add_hdr(wsi, "access-control-max-age:", "600", &p, end))) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    r->kind = 0;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Fills r->cors_origin with the request's Origin if server.cors_origins allows it. */
static void cors(http_req_t *r)
{
    char origin[256];

    r->cors_origin[0] = '\0';
    if (!*srv.cfg.cors_origins || lws_hdr_copy(r->wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0) return;
    if (!strcmp(srv.cfg.cors_origins, "*")) strcpy(r->cors_origin, "*");
    else if (auth_origin_listed(srv.cfg.cors_origins, origin)) snprintf(r->cors_origin, sizeof r->cors_origin, "%s", origin);
}

int http_respond_json(http_req_t *r, unsigned status, json_t *v)
{
    wbuf_reset(&srv.enc);
    if (v) json_emit(&srv.enc, v);
    json_decref(v);
    if (!v || srv.enc.oom) return -1;
    wbuf_putc(&srv.enc, '\n');
    return http_respond(r, status, "application/json", srv.enc.p, srv.enc.len);
}

static json_t *error_body(int code, const char *reason)
{
    /* A negative errno is the broker's own failure, never a client's code. */
    if (code < 0) code = PROTO_E_INTERNAL;
    return json_pack("{s:{s:i,s:s}}", "error", "code", code, "reason", reason);
}

int http_respond_error(http_req_t *r, unsigned status, int code, const char *reason)
{
    return http_respond_json(r, status ? status : proto_err_http_status(code), error_body(code, reason));
}

int http_await(http_req_t *r)
{
    return conn_register(r, &r->serial) ? -1 : 0;
}

void http_finish(uint64_t serial, unsigned status, const char *type, const void *body, size_t len)
{
    http_req_t *r = conn_find(serial);
    int rc;

    if (!r) return;
    rc = body ? http_respond(r, status, type, body, len)
              : http_respond_error(r, 500, PROTO_E_INTERNAL, "out of memory");
    if (rc) lws_set_timeout(r->wsi, 1, LWS_TO_KILL_ASYNC);
}

void http_finish_json(uint64_t serial, unsigned status, json_t *v)
{
    http_req_t *r = conn_find(serial);
    if (!r) { json_decref(v); return; }
    if (http_respond_json(r, status, v)) lws_set_timeout(r->wsi, 1, LWS_TO_KILL_ASYNC);
}

void http_finish_error(uint64_t serial, unsigned status, int code, const char *reason)
{
    http_finish_json(serial, status ? status : proto_err_http_status(code), error_body(code, reason));
}

void http_set_retry_after(uint64_t serial, unsigned seconds)
{
    http_req_t *r = conn_find(serial);
    if (r) r->retry_after = seconds;
}

const char *http_query(http_req_t *r, const char *name, char *buf, size_t len)
{
    return lws_get_urlarg_by_name(r->wsi, name, buf, (int)len);
}

int http_query_uint(http_req_t *r, const char *name, uint64_t *out)
{
    char buf[32], *end;
    const char *v = http_query(r, name, buf, sizeof buf);
    unsigned long long n;

    if (!v) return 0;
    if (!*v || *v == '-') return -1;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (*end || errno) return -1;
    *out = n;
    return 0;
}

const char *http_query_nth(http_req_t *r, const char *name, unsigned n, char *buf, size_t len, int *too_long)
{
    size_t nl = strlen(name);
    char frag[1024];

    *too_long = 0;
    for (int i = 0;; i++) {
        int fl = lws_hdr_fragment_length(r->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (fl <= 0) return NULL;
        /* A parameter longer than frag[] (a long token) is not one of those
         * this is used for. */
        if ((size_t)fl >= sizeof frag || lws_hdr_copy_fragment(r->wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
            continue;
        if ((size_t)fl < nl || strncmp(frag, name, nl) || n--) continue;
        if ((size_t)fl - nl >= len) { *too_long = 1; return NULL; }
        memcpy(buf, frag + nl, (size_t)fl - nl + 1);
        return buf;
    }
}

int http_authorization(http_req_t *r, char *buf, size_t len)
{
    int n = lws_hdr_copy(r->wsi, buf, (int)len, WSI_TOKEN_HTTP_AUTHORIZATION);
    return n > 0 ? n : -1;
}

int http_header(http_req_t *r, const char *name, char *buf, size_t len)
{
    int nlen = (int)strlen(name), n = lws_hdr_custom_length(r->wsi, name, nlen);

    if (n <= 0 || (size_t)n >= len) return -1;
    return lws_hdr_custom_copy(r->wsi, buf, (int)len, name, nlen) < 0 ? -1 : n;
}

int http_if_none_match(http_req_t *r, const char *etag)
{
    char v[512];
    size_t el = strlen(etag);
    const char *p = v;

    if (lws_hdr_copy(r->wsi, v, sizeof v, WSI_TOKEN_HTTP_IF_NONE_MATCH) <= 0) return 0;
    /* A comma-separated list of ETags, maybe weak (W/"..."): a weak match
     * is enough for a GET (RFC 9110 13.1.2). */
    while (*p) {
        p += strspn(p, " \t,");
        if (*p == '*') return 1;
        if (!strncmp(p, "W/", 2)) p += 2;
        if (!strncmp(p, etag, el) && (p[el] == '\0' || p[el] == ',' || p[el] == ' ' || p[el] == '\t')) return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

long long http_content_length(http_req_t *r)
{
    char cl[32];
    if (lws_hdr_total_length(r->wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
        lws_hdr_copy(r->wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return -1;
    return (long long)strtoull(cl, NULL, 10);
}

int http_chunked(http_req_t *r)
{
    return lws_hdr_total_length(r->wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
}

int http_body_encoding(http_req_t *r)
{
    char ct[128];
    int n = lws_hdr_copy(r->wsi, ct, sizeof ct, WSI_TOKEN_HTTP_CONTENT_TYPE);
    char *semi;

    if (n <= 0) return PROTO_JSON;          /* no Content-Type: take it as JSON */
    if ((semi = strchr(ct, ';'))) *semi = '\0';
    for (char *e = ct + strlen(ct); e > ct && (e[-1] == ' ' || e[-1] == '\t'); ) *--e = '\0';
    if (!strcasecmp(ct, "application/json")) return PROTO_JSON;
    if (!strcasecmp(ct, "application/msgpack") || !strcasecmp(ct, "application/x-msgpack") ||
        !strcasecmp(ct, "application/vnd.msgpack"))
        return PROTO_MSGPACK;
    return -1;
}

static enum http_method method_of(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0) return HTTP_GET;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0) return HTTP_POST;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0) return HTTP_PUT;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI) > 0) return HTTP_DELETE;
    return HTTP_OTHER;
}

int http_on_request(http_req_t *r, struct lws *wsi, const char *uri)
{
    static const char *const names[] = { "other", "GET", "POST", "PUT", "DELETE" };
    int is_options = lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0;

    if (r->kind == HTTP_KIND) {
        /* HTTP pipelining: this request came before the last one was
         * answered (its answer may wait on a commit). Herald answers one
         * request at a time: the earlier one is answered, then the
         * connection closes, and this one is never acted on, so the client
         * can safely send it again. Its body is ignored. */
        r->pipelined = 1;
        r->close_after = 1;
        return 0;
    }
    reset(r);
    r->kind = HTTP_KIND;
    r->wsi = wsi;
    r->start_ns = clock_mono_ns();
    r->method = (uint8_t)method_of(wsi);
    r->method_name = is_options ? "OPTIONS" : names[r->method];
    snprintf(r->path, sizeof r->path, "%s", uri);
    peer_client_addr(wsi, r->peer, sizeof r->peer);
    cors(r);
    /* A body we will not read must not be taken for the next request. */
    r->close_after = r->method == HTTP_POST || r->method == HTTP_PUT;
    if (is_options) return preflight(r);
    return hooks.on_request(r, uri);
}

int http_on_body(http_req_t *r, const void *in, size_t len)
{
    if (r->kind != HTTP_KIND || !r->route || r->too_large || r->pipelined || len == 0) return 0;
    if (r->blen + len > srv.cfg.max_message_size) {
        /* A chunked body with no Content-Length: keep reading, answer 413 at the end. */
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->blen = r->bcap = 0;
        return 0;
    }
    if (r->blen + len > r->bcap) {
        size_t ncap = r->bcap ? r->bcap * 2 : 1024;
        unsigned char *p;
        while (ncap < r->blen + len) ncap *= 2;
        if (!(p = realloc(r->body, ncap))) return -1;
        r->body = p;
        r->bcap = ncap;
    }
    memcpy(r->body + r->blen, in, len);
    r->blen += len;
    return 0;
}

int http_on_body_complete(http_req_t *r)
{
    /* lws 4.1.6 repeats this callback while pipelined bytes follow the
     * body (and its state for the next request is then unsound): take the
     * body once, and treat a repeat as pipelining, answered by closing
     * after the answer in progress. A repeat after the answer went out
     * closes at once. */
    if (r->kind != HTTP_KIND) return -1;
    if (r->body_done) {
        r->pipelined = 1;
        r->close_after = 1;
        return 0;
    }
    if (r->pipelined) return 0;
    r->body_done = 1;
    if (!r->route) return 0;               /* answered from the headers: the body is ignored */
    return hooks.on_body(r);
}

int http_on_writable(http_req_t *r)
{
    struct lws *wsi = r->wsi;
    int close_after;

    if (r->kind == HTTP_KIND && r->stream) return sess_on_writable(r->stream);
    if (r->kind != HTTP_KIND || !r->resp) return 0;
    if (lws_write(wsi, r->resp + FRAME_HEADROOM, r->resp_len, LWS_WRITE_HTTP_FINAL) < (int)r->resp_len)
        return -1;
    close_after = r->close_after;
    reset(r);
    if (close_after) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
