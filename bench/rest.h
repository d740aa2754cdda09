/* bench/rest.h - REST publishers: POST /api/publish over keep-alive HTTP/1.1.
 *
 * Owns: a pool of plain TCP connections to the broker, each with at most one
 * request in flight (libwebsockets' HTTP server answers one request at a
 * time, so pipelining would buy nothing), and the queue of publications
 * waiting for a free connection. A publication's timestamp is fixed when it
 * is queued, so time spent waiting for a connection counts as latency. Does
 * not own: payloads, channels and accounting (its owner, run.c, through
 * struct rest_events). */
#ifndef BENCH_REST_H
#define BENCH_REST_H

#include <stdint.h>
#include <uv.h>
#include "herald_client.h"

typedef struct rest_pool rest_pool_t;

/* What the pool asks of its owner, and tells it. Called on the loop's
 * thread, never from inside rest_pool_new(). */
enum { REST_FAILED = 0, REST_OK = 1, REST_SHED = 2 };

typedef struct rest_events {
    void (*on_connected)(void);         /* a connection opened for the first time */
    void (*on_failed)(int err);         /* a connection never opened, or reconnects ran out */
    void (*on_closed)(void);            /* a connection closed for good (once for each) */
    /* Publication @seq was answered at @rx_ns (uv_hrtime()): @ok is
     * REST_OK with status 200, REST_SHED with a 503 carrying error 135 (the
     * broker refused it as overloaded), REST_FAILED if it failed otherwise,
     * or was never sent (then possibly from inside rest_submit() or
     * rest_pool_close()). */
    void (*on_answer)(uint64_t seq, int ok, uint64_t rx_ns);
    /* What to publish as @seq with timestamp @ts_ns: on channel *@chan
     * (*@chlen bytes, under 256), the encoded data *@data, valid until the
     * next call. Return: the data's length. */
    size_t (*payload)(uint64_t seq, uint64_t ts_ns, const unsigned char **data, const char **chan, size_t *chlen);
} rest_events_t;

/* rest_pool_new() - start @n connections to @url, for publications whose
 * data is a string of at most @data_max bytes before encoding. @url and @ev
 * are borrowed and must outlive the pool. Return: 0, or UV_ENOMEM (nothing
 * started). */
int rest_pool_new(uv_loop_t *loop, const herald_url_t *url, herald_encoding_t enc, unsigned n, size_t data_max,
                  const rest_events_t *ev, rest_pool_t **out);

/* rest_submit() - publish @seq (payload timestamp @ts_ns) on a free
 * connection, or queue it. The outcome goes to ev->on_answer. */
void rest_submit(rest_pool_t *p, uint64_t seq, uint64_t ts_ns);

/* rest_pool_close() - close every connection; the pool frees itself once all
 * are closed, calling ev->on_closed for each. */
void rest_pool_close(rest_pool_t *p);

/* rest_stats() - requests answered with a non-200 status, and reconnects. */
void rest_stats(const rest_pool_t *p, uint64_t *http_errors, uint64_t *reconnects);

#endif
