/* bench/http.h - requests to the broker's REST API over keep-alive HTTP/1.1.
 *
 * Owns: a pool of plain TCP connections, each with at most one request in
 * flight (libwebsockets' HTTP server answers one request at a time per
 * connection, so pipelining would buy nothing), and the FIFO of requests
 * waiting for a free connection. A request is copied when it is submitted;
 * the caller keeps its own timestamp, so time spent waiting for a connection
 * counts as latency. Bodies are sent as JSON. Responses must carry a
 * Content-Length (the broker's always do); anything else fails the
 * connection. Does not own: what the requests mean (the scenarios).
 *
 * rest.c is the publishing-only sibling of this pool (POST /api/publish with
 * the bench's payloads); this one takes any method, target and body and hands
 * the response back, for the adapters the state-channel scenarios drive.
 * Everything runs on the loop's thread. */
#ifndef BENCH_HTTP_H
#define BENCH_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "herald_client.h"

typedef struct http_pool http_pool_t;

/* The outcome of one request. @status: the HTTP status; 0 if the request
 * got no answer (its connection failed, or the pool was closed);
 * HTTP_CANCELLED if it was still waiting for a connection when
 * http_cancel_queued() was called (it was never sent). @body,
 * @len: the response body, valid during the call only. @rx_ns: when its
 * last bytes were read (uv_hrtime()). @arg: as given to http_request(). */
typedef void (*http_done_cb)(void *arg, int status, const char *body, size_t len, uint64_t rx_ns);

#define HTTP_CANCELLED (-1)

typedef struct http_events {
    void (*on_connected)(void *ud);         /* a connection opened for the first time */
    void (*on_failed)(void *ud, int err);   /* a connection never opened, or reconnects ran out;
                                               the pool takes no more requests */
    void (*on_closed)(void *ud);            /* after http_pool_close(): every connection is
                                               closed and the pool is freed */
} http_events_t;

/* http_pool_new() - start @n connections to @url's host and port.
 * @url, @ev: borrowed; they must outlive the pool. @ud: handed to @ev.
 * @out: [out] the pool, owned by the caller until it closes it.
 * Return: 0, or UV_ENOMEM (nothing started, no event fires). */
int http_pool_new(uv_loop_t *loop, const herald_url_t *url, unsigned n, const http_events_t *ev, void *ud,
                  http_pool_t **out);

/* http_request() - send "@method @target HTTP/1.1" with @blen bytes of @body
 * (JSON; @body may be NULL when @blen is 0) on a free connection, or queue it.
 * Everything is copied. @cb fires exactly once, later, never from inside this call.
 * Return: 0; HERALD_E_STATE if the pool failed or is closing; UV_ENOMEM.
 * A call that fails fires no callback. */
int http_request(http_pool_t *p, const char *method, const char *target, const char *body, size_t blen,
                 http_done_cb cb, void *arg);

/* http_request_hdr() - http_request() with extra header lines: @headers is
 * NULL or complete lines, each ending with "\r\n" ("Herald-Signature: ...\r\n"),
 * copied with the rest. Return: as http_request(). */
int http_request_hdr(http_pool_t *p, const char *method, const char *target, const char *headers,
                     const char *body, size_t blen, http_done_cb cb, void *arg);

/* http_cancel_queued() - answer every request still waiting for a connection
 * with HTTP_CANCELLED, from inside this call; requests already sent are
 * left to finish. Return: how many were cancelled. */
uint64_t http_cancel_queued(http_pool_t *p);

/* http_in_flight() - requests submitted and not yet answered (queued or sent). */
uint64_t http_in_flight(const http_pool_t *p);

/* http_reconnects() - connections reopened after the server closed them or they failed. */
uint64_t http_reconnects(const http_pool_t *p);

/* http_pool_close() - fail every request not yet answered (their callbacks
 * fire with status 0 from inside this call), close every connection, and
 * free the pool once all are closed; ev->on_closed fires then. */
void http_pool_close(http_pool_t *p);

#endif
