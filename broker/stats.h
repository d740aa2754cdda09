/* broker/stats.h - what the broker counts.
 *
 * Owns: the process-wide counters (struct herald_stats, kept in srv.stats)
 * and the histograms, per-reason disconnect and per-namespace publication
 * counters (struct herald_metrics, the one instance `metrics`). Every layer
 * bumps them with a plain increment: no lock, no allocation, no call upward.
 * Does not own: the Prometheus rendering (app/metrics.c) or what a close
 * code means (net/session.c maps its codes to enum disc_reason).
 * Loop thread only. */
#ifndef HERALD_STATS_H
#define HERALD_STATS_H

#include <stddef.h>
#include <stdint.h>

struct herald_stats {
    uint64_t connections_total;   /* WebSocket sessions accepted */
    uint64_t connections_refused; /* TCP connections refused at the cap or while stopping */
    uint64_t messages_in;         /* client messages received */
    uint64_t publications;        /* publications accepted (WS + REST) */
    uint64_t deliveries;          /* publication frames queued to subscribers */
    uint64_t slow_consumers;      /* connections closed with 4000 */
    uint64_t storage_failures;    /* publications refused because the store failed or was full */
    uint64_t publications_shed;   /* writes refused with 135 because the storage thread was too far behind */
    uint64_t auth_failures;       /* invalid, missing or foreign tokens */
    uint64_t permission_denied;   /* subscribes, publishes and reads refused by the namespace rules */
    uint64_t rate_limited;        /* WebSocket messages refused by limits.messages_per_second */
    uint64_t rest_rate_limited;   /* REST requests answered 429 */
    uint64_t connects_limited;    /* TCP connections refused by connects_per_second or a cooloff */
    uint64_t rest_unauthorized;   /* REST requests answered 401 or 403 */
    uint64_t origins_refused;     /* WebSocket handshakes from an Origin not allowed */
    uint64_t close_timeouts;      /* closing sessions dropped after the 5 s close timeout */
    uint64_t over_capacity;       /* upgrades and requests answered 503 in the probe reserve */
};

/* A cumulative histogram over fixed upper bounds, as Prometheus wants it. */
typedef struct histo {
    const double *bounds;         /* ascending upper bounds; +Inf is implicit */
    size_t n;
    uint64_t counts[24];          /* counts[i]: observations <= bounds[i]; counts[n]: the rest */
    double sum;
    uint64_t count;
} histo_t;

/* histo_observe() - count @v in @h. */
void histo_observe(histo_t *h, double v);

/* Why a WebSocket session ended (net/session.c maps its close code here). */
enum disc_reason {
    DISC_CLIENT = 0,              /* the client closed, or the network did */
    DISC_SHUTDOWN, DISC_SLOW_CONSUMER, DISC_UNAUTHORIZED, DISC_TOKEN_EXPIRED,
    DISC_CONNECT_TIMEOUT, DISC_TOO_BIG, DISC_TOO_MANY, DISC_INTERNAL, DISC_PING_TIMEOUT,
    DISC_NREASONS
};

struct herald_metrics {
    histo_t publish_fanout_seconds;   /* publication accepted -> fanned out */
    histo_t commit_seconds;           /* one group commit, in the storage thread */
    histo_t commit_batch;             /* publications per group commit */
    histo_t loop_turn_seconds;        /* the working part of each loop iteration (loopwatch.c) */
    uint32_t loop_busy_ppm;           /* share of the last second the loop worked, per million */
    uint64_t loop_busy_ns;            /* the loop's working time so far, waits left out (loopwatch.c) */
    int loop_busy_ok;                 /* ... measured that way: libuv gives the idle time */
    uint64_t disconnects[DISC_NREASONS];
    uint64_t bytes_in, bytes_out;     /* WebSocket payload bytes */
    uint64_t frames_out;              /* messages written to sockets */
    uint64_t writes;                  /* socket writes of WebSocket frames */
    uint64_t writes_batched;          /* ... of them, handed to the kernel together (net/sendring.h) */
    uint64_t send_batches;            /* ... in this many system calls */
    uint64_t *ns_publications;        /* per configured namespace, then the template, then the
                                         built-in sys namespace (srv.cfg.ns_sys) */
    uint64_t *ns_deliveries;          /* the fan-out count, indexed like ns_publications */
    unsigned conn_enc[2];             /* open sessions per encoding */
    unsigned sse_streams;             /* open Server-Sent Events streams (not in conn_enc) */
    uint64_t sse_connects;            /* Server-Sent Events streams started */
    uint64_t sse_events;              /* events written to Server-Sent Events streams */
    /* Seat map requests by action (enum seat_action, 0 unused) and outcome:
     * [0] applied, [1] refused by the seats' state (taken, not held, ...),
     * [2] failed (storage). */
    uint64_t seat_requests[10][3];  /* [enum seat_action][ok, refused, failed] */
};

extern struct herald_metrics metrics;

struct config;

/* stats_init() - set up the histograms and the per-namespace counters of
 * @cfg (borrowed: it must outlive the counters; the broker's srv.cfg).
 * Return: 0, or -ENOMEM. */
int stats_init(const struct config *cfg);
void stats_deinit(void);

/* stats_ns_index() - the slot of metrics.ns_publications for namespace @ns
 * (a pointer into the configuration stats_init() was given). */
size_t stats_ns_index(const void *ns);

#endif
