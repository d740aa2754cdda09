/* broker/net/http.h - one HTTP request on the broker's port, as transport.
 *
 * Owns: http_req_t (one request's state, kept in libwebsockets' per-session
 * data): its headers and query, its body (assembled up to
 * limits.max_message_size), its response (status line, the headers every
 * response carries, CORS, the request log line), CORS preflights, and the
 * guards against pipelined requests. A request whose answer comes later (a
 * publication waiting for its commit, a history read) is parked with
 * http_await() under a conns.h serial and answered with http_finish*(); if
 * the client has gone by then, the answer is dropped.
 * Does not own: routes or what they do (app/api.c, through struct
 * http_hooks). Every error body is {"error":{"code":N,"reason":"..."}} with
 * the codes of docs/protocol.md.
 * Loop thread only. */
#ifndef HERALD_HTTP_H
#define HERALD_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define HTTP_KIND 0x4854          /* marks per-session data as an http_req_t */

enum http_method { HTTP_OTHER = 0, HTTP_GET, HTTP_POST, HTTP_PUT, HTTP_DELETE };

struct lws;
struct sess;

typedef struct http_req {
    uint16_t kind;                /* HTTP_KIND while a request is in flight */
    uint8_t method;               /* enum http_method */
    uint8_t enc;                  /* request body encoding (enum proto_enc) */
    uint8_t too_large;            /* the body went over limits.max_message_size */
    uint8_t close_after;          /* answered before the body was read: close */
    uint8_t pipelined;            /* another request came before this one was answered: ignore it, close */
    uint8_t body_done;            /* the body was taken: lws 4.1.6 repeats BODY_COMPLETION when
                                     pipelined bytes follow it */
    unsigned char *body;
    size_t blen, bcap;
    unsigned char *resp;          /* FRAME_HEADROOM + status line, headers and body */
    size_t resp_len;
    struct lws *wsi;
    uint64_t serial;              /* conns.h key while an answer is awaited */
    const apikey_t *key;          /* the API key the request carried, if any (set by the router) */
    unsigned retry_after;         /* seconds, for a 429 or a 503 (Retry-After); 0: none */
    char cors_origin[256];        /* the request's Origin when CORS allows it */
    char peer[46];                /* client address (net/peer.h: behind a trusted proxy, the one it names) */
    const char *method_name;      /* for the request log */
    char path[128];
    uint64_t start_ns;
    const char *csp;              /* Content-Security-Policy to send, or NULL */
    const char *cache;            /* Cache-Control to send; NULL: no-store */
    const char *etag;             /* ETag to send (quoted), or NULL */
    /* The router's, for a request whose body is still to come: non-NULL
     * route means "read the body, then call on_body"; the target (a
     * channel name) and action were parsed from the path. */
    const void *route;
    char target[256];
    char action[24];              /* the longest is "waitlist_position" */
    /* Non-NULL: this response is a Server-Sent Events stream whose session
     * this is (net/sse.c): writable callbacks go to it, and it is freed
     * with the connection. */
    struct sess *stream;
} http_req_t;

/* What the router does with a request. */
struct http_hooks {
    /* The request line and headers of @r arrived for @uri. Answer now
     * (http_respond*), park it (http_await), or set r->route to have the
     * body read. Return: 0, or -1 to close. */
    int (*on_request)(http_req_t *r, const char *uri);
    /* The body of a request with a route is complete (r->body, r->blen;
     * r->too_large if it was cut). Return: 0, or -1 to close. */
    int (*on_body)(http_req_t *r);
};

/* http_set_hooks() - install @h (copied) before the first request. */
void http_set_hooks(const struct http_hooks *h);

/* The lws callback's cases (net/server.c). Return: 0, or -1 to close. */
int http_on_request(http_req_t *r, struct lws *wsi, const char *uri);
int http_on_body(http_req_t *r, const void *in, size_t len);
int http_on_body_complete(http_req_t *r);
int http_on_writable(http_req_t *r);
/* http_on_closed() - free what @r holds; @r may be NULL. */
void http_on_closed(http_req_t *r);

/* http_add_common_headers() - the status line (with a reason phrase, also
 * for the statuses libwebsockets has none for: 422, 426, 429...),
 * Content-Type @type and Content-Length @len, into the header buffer *@p
 * (advanced; @end bounds it), as lws_add_http_common_headers() does.
 * Return: 0, or -1 when it does not fit. */
int http_add_common_headers(struct lws *wsi, unsigned status, const char *type, size_t len, unsigned char **p,
                            unsigned char *end);

/* ---- reading the request ---- */

/* http_query() - the value of query parameter @name ("since=") copied into
 * @buf (@len bytes), or NULL if absent. */
const char *http_query(http_req_t *r, const char *name, char *buf, size_t len);

/* http_query_uint() - query parameter @name as an unsigned integer into
 * *@out. Return: 0 (absent: *@out untouched, or read), -1 if not a number. */
int http_query_uint(http_req_t *r, const char *name, uint64_t *out);

/* http_query_nth() - the value of the @n-th (from 0) occurrence of query
 * parameter @name ("channel=") copied into @buf (@len bytes). Return: the
 * value; NULL if there are not that many, or (with *@too_long set) if it
 * does not fit in @buf. Parameters over 1 KiB are not seen. */
const char *http_query_nth(http_req_t *r, const char *name, unsigned n, char *buf, size_t len, int *too_long);

/* http_authorization() - the Authorization header into @buf. Return: its
 * length, or -1 if absent or longer than @len. */
int http_authorization(http_req_t *r, char *buf, size_t len);

/* http_header() - the request header @name (lower case, with its colon:
 * "last-event-id:", "herald-signature:") into @buf. Valid while the request is (headers are
 * kept until it is answered). Return: its length, or -1 if absent, empty or
 * not shorter than @len. */
int http_header(http_req_t *r, const char *name, char *buf, size_t len);

/* http_if_none_match() - whether the request's If-None-Match lists @etag (a
 * quoted ETag) or is "*": the client's copy is current. */
int http_if_none_match(http_req_t *r, const char *etag);

/* http_content_length() - the Content-Length header, or -1 without one. */
long long http_content_length(http_req_t *r);

/* http_chunked() - whether the body comes with a Transfer-Encoding. */
int http_chunked(http_req_t *r);

/* http_body_encoding() - PROTO_JSON or PROTO_MSGPACK from Content-Type (none:
 * JSON), or -1 if it is neither. */
int http_body_encoding(http_req_t *r);

/* ---- answering now (from on_request or on_body) ----
 * Each builds the status line, the headers and @body (copied) into one
 * buffer and writes it whole in the writable callback: one write, so a
 * client never holds a status without its body (a broker killed between two
 * writes left "200 OK" with an empty body for a stored publication).
 * Return: 0, or -1 to close. */
int http_respond(http_req_t *r, unsigned status, const char *type, const void *body, size_t len);
/* http_respond_not_modified() - 304 with r->cache and r->etag, no body. */
int http_respond_not_modified(http_req_t *r);
/* http_respond_json() - @v as JSON (reference taken; NULL: out of memory, -1). */
int http_respond_json(http_req_t *r, unsigned status, json_t *v);
/* http_respond_error() - {"error":{"code","reason"}} with @status; @status 0
 * takes the status of @code from proto_err_http_status(). */
int http_respond_error(http_req_t *r, unsigned status, int code, const char *reason);

/* http_stream_start() - write the status line 200 and the headers of a
 * response of Content-Type @type with no length, whose body follows in
 * pieces until the connection closes (a Server-Sent Events stream: r->stream
 * is set), and lift the connection's timeouts. Return: 0, or -1 to close. */
int http_stream_start(http_req_t *r, const char *type);

/* ---- answering later ---- */

/* http_await() - park @r until http_finish*() answers r->serial.
 * Return: 0, or -1 to close (out of memory). */
int http_await(http_req_t *r);

/* http_finish() - answer the parked request @serial with @status and @body
 * (copied; NULL: a bare 500). Nothing happens if it is gone. */
void http_finish(uint64_t serial, unsigned status, const char *type, const void *body, size_t len);

/* http_finish_json() - the same with a JSON value (reference taken). */
void http_finish_json(uint64_t serial, unsigned status, json_t *v);

/* http_finish_error() - the same with {"error":{"code","reason"}};
 * @status 0 as for http_respond_error(). */
void http_finish_error(uint64_t serial, unsigned status, int code, const char *reason);

/* http_set_retry_after() - have the answer to the awaited request @serial
 * (if it is still there) carry Retry-After: @seconds when it is a 429 or
 * a 503. */
void http_set_retry_after(uint64_t serial, unsigned seconds);

#endif
