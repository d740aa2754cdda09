/* bench/rest.h - REST publishers: POST /api/publish over keep-alive HTTP/1.1.
 *
 * Owns: a pool of plain TCP connections to the broker, each with at most one
 * request in flight (libwebsockets' HTTP server answers one request at a
 * time, so pipelining would buy nothing), and the queue of publications
 * waiting for a free connection. A publication's timestamp is fixed when it
 * is queued, so time spent waiting for a connection counts as latency. Does
 * not own: payloads, channels and accounting (run.c, through bench.h). */
#ifndef BENCH_REST_H
#define BENCH_REST_H

#include <stdint.h>
#include <uv.h>
#include "herald_client.h"

typedef struct rest_pool rest_pool_t;

/* rest_pool_new() - start @n connections to @url. Each one that connects
 * calls bench_rest_connected(); one that fails to connect calls
 * bench_rest_failed(err). @url is borrowed and must outlive the pool.
 * Return: 0, or UV_ENOMEM (nothing started). */
int rest_pool_new(uv_loop_t *loop, const herald_url_t *url, herald_encoding_t enc, unsigned n,
                  rest_pool_t **out);

/* rest_submit() - publish @seq (payload timestamp @ts_ns) on a free
 * connection, or queue it. The outcome goes to bench_ack(). */
void rest_submit(rest_pool_t *p, uint64_t seq, uint64_t ts_ns);

/* rest_pool_close() - close every connection; the pool frees itself once all
 * are closed, calling bench_rest_closed() for each. */
void rest_pool_close(rest_pool_t *p);

/* rest_stats() - requests answered with a non-200 status, and reconnects. */
void rest_stats(const rest_pool_t *p, uint64_t *http_errors, uint64_t *reconnects);

void bench_rest_connected(void);
void bench_rest_failed(int err);
void bench_rest_closed(void);

#endif
