/* broker/herald.h - the broker's process-wide state.
 *
 * Owns: struct herald, the one instance `srv` (as Redis has `server`),
 * defined in main.c. Every field is touched on the loop thread only, but
 * srv.cfg, which is immutable once the broker runs and is read by the
 * storage thread too. Shared fields live here (the loop, the settings, the
 * session list, the channel and subscription maps, the scratch encoder);
 * modules with state of their own that no other module reads keep it in a
 * file-level struct (the storage pipeline, presence, rate limits, seats). */
#ifndef HERALD_HERALD_H
#define HERALD_HERALD_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "stats.h"
#include "datadir.h"
#include "hmap.h"
#include "wbuf.h"

struct sess;
struct lws_context;
struct lws_vhost;


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
    uint64_t tune_cpu_ns, tune_at_ns, tune_busy_ns;
    uint16_t tune_gen;            /* counts tune periods: marks a session's first write in one */
    uint32_t tune_writers;        /* sessions that wrote in this period */
    uint64_t tune_writes;         /* writes made by the flush passes in this period */
    uint64_t tune_write_ns;       /* loop time those passes took */
    uint64_t write_cost_ns;       /* loop time per write, smoothed over periods (0: none yet) */

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
