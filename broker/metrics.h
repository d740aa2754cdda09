/* broker/metrics.h - what the broker counts, and GET /metrics.
 *
 * Owns: the latency and batch-size histograms, the per-reason disconnect
 * counters, and the rendering of every metric (these plus srv.stats, the
 * gauges read from the registry, the store and /proc) in the Prometheus text
 * exposition format. Counting is a plain increment on the loop thread: no
 * lock, no allocation. Loop thread only. */
#ifndef HERALD_METRICS_H
#define HERALD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "wbuf.h"

/* A cumulative histogram over fixed upper bounds, as Prometheus wants it. */
typedef struct histo {
    const double *bounds;         /* ascending upper bounds; +Inf is implicit */
    size_t n;
    uint64_t counts[24];          /* counts[i]: observations <= bounds[i]; counts[n]: the rest */
    double sum;
    uint64_t count;
} histo_t;

void histo_observe(histo_t *h, double v);

/* Disconnect reasons, by the close code the session ended with. */
enum disc_reason {
    DISC_CLIENT = 0,              /* the client closed, or the network did */
    DISC_SHUTDOWN, DISC_SLOW_CONSUMER, DISC_UNAUTHORIZED, DISC_TOKEN_EXPIRED,
    DISC_CONNECT_TIMEOUT, DISC_TOO_BIG, DISC_TOO_MANY, DISC_INTERNAL,
    DISC_NREASONS
};

struct herald_metrics {
    histo_t publish_fanout_seconds;   /* publication accepted -> fanned out */
    histo_t commit_seconds;           /* one group commit, in the storage thread */
    histo_t commit_batch;             /* publications per group commit */
    uint64_t disconnects[DISC_NREASONS];
    uint64_t bytes_in, bytes_out;     /* WebSocket payload bytes */
    uint64_t frames_out;              /* messages written to sockets */
    uint64_t writes;                  /* socket writes of WebSocket frames */
    uint64_t *ns_publications;        /* per configured namespace, then the template */
    unsigned conn_enc[2];             /* open sessions per encoding */
    /* Seat map requests by action (enum seat_action, 0 unused) and outcome:
     * [0] applied, [1] refused by the seats' state (taken, not held, ...),
     * [2] failed (storage). */
    uint64_t seat_requests[9][3];
};

extern struct herald_metrics metrics;

/* metrics_init() - set up the histograms and per-namespace counters.
 * Return: 0, or -ENOMEM. */
int metrics_init(void);
void metrics_deinit(void);

/* metrics_disconnect() - count a session that ended with @close_code. */
void metrics_disconnect(uint16_t close_code);

/* metrics_ns_index() - the slot of ns_publications for namespace @ns. */
size_t metrics_ns_index(const void *ns);

/* metrics_render() - append the whole exposition to @b. */
void metrics_render(wbuf_t *b);

#endif
