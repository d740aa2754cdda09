/* broker/herald.h - the broker's process-wide state.
 *
 * Owns: struct herald, the one instance `srv` (as Redis has `server`). Every
 * field is touched on the loop thread only. Modules keep their own state
 * inside it rather than in file-level globals, so shutdown can find and free
 * everything from one place. */
#ifndef HERALD_HERALD_H
#define HERALD_HERALD_H

#include <stdint.h>
#include <uv.h>
#include <libwebsockets.h>

#include "config.h"
#include "datadir.h"
#include "hmap.h"
#include "wbuf.h"

struct sess;

struct herald_stats {
    uint64_t connections_total;   /* WebSocket sessions accepted */
    uint64_t connections_refused; /* TCP connections refused at the cap or while stopping */
    uint64_t messages_in;         /* client messages received */
    uint64_t publications;        /* publications accepted (WS + REST) */
    uint64_t deliveries;          /* publication frames queued to subscribers */
    uint64_t slow_consumers;      /* connections closed with 4000 */
    uint64_t storage_failures;    /* publications refused because the store failed or was full */
    uint64_t auth_failures;       /* invalid, missing or foreign tokens */
    uint64_t permission_denied;   /* subscribes, publishes and reads refused by the namespace rules */
    uint64_t rate_limited;        /* WebSocket messages refused by limits.messages_per_second */
    uint64_t rest_rate_limited;   /* REST requests answered 429 */
    uint64_t connects_limited;    /* TCP connections refused by connects_per_second or a cooloff */
    uint64_t rest_unauthorized;   /* REST requests answered 401 or 403 */
    uint64_t origins_refused;     /* WebSocket handshakes from an Origin not allowed */
};

struct herald {
    config_t cfg;
    uv_loop_t loop;
    struct lws_context *lws;
    struct lws_vhost *vhost;
    uv_signal_t sig_int, sig_term, sig_hup;
    uv_timer_t tick;              /* once a second: connect timeouts */
    uv_timer_t stop_timer;        /* bounds the flush on shutdown */
    int stopping;                 /* 0 running, 1 flushing, 2 tearing down */
    int exit_code;
    datadir_t data;
    uint64_t started_ms;

    unsigned max_connections;     /* effective cap (config or file limit) */
    unsigned open_connections;    /* accepted TCP connections still open */

    struct sess *sessions;        /* every WebSocket session, doubly linked */
    unsigned nsessions;
    struct sess *dirty;           /* sessions with frames queued this loop turn */
    uv_check_t flush;             /* writes them out at the end of the turn */
    uv_timer_t flush_timer;       /* wakes the loop for sessions left to coalesce */
    unsigned coalesce_ms;         /* current gap between one connection's writes (session.c) */
    uv_timer_t tune;              /* adjusts coalesce_ms to how busy the loop is */
    uint64_t tune_cpu_ns, tune_at_ns;

    hmap_t channels;              /* name -> chan_t */
    hmap_t subs;                  /* (sess, chan) -> sub_t */
    hmap_t conns;                 /* serial -> sess_t or rest_req_t (conns.h) */
    uint64_t next_serial;

    wbuf_t enc;                   /* scratch for encoding one message */
    unsigned char *batch;         /* FRAME_HEADROOM + write_batch_max: coalesced writes */

    struct herald_stats stats;
};

extern struct herald srv;

#endif
