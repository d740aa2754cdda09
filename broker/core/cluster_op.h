/* broker/core/cluster_op.h - one state channel operation in flight through
 * the shared engine ([engine] type = redis): generic state operations
 * (core/cluster_state.c), seat requests (cluster_seats.c), commerce
 * (cluster_shop.c) and ticket requests (cluster_tickets.c).
 *
 * Owns: the context each of them hands the engine (the channel, held
 * through its inflight count, the operations and who asked), and the ways
 * such an operation ends other than with the engine's answer: refused
 * before it reached the engine, not sent (Redis down, out of memory), or
 * the connection lost. Does not own: reading the engine's answer or
 * replying with it (each caller, through pubpipe.h's report functions).
 * Loop thread only. */
#ifndef HERALD_CLUSTER_OP_H
#define HERALD_CLUSTER_OP_H

#include "core/channel.h"
#include "core/pubpipe.h"
#include "net/reply.h"

typedef struct cluster_op {
    chan_t *chan;                 /* held (inflight) until cluster_op_free() */
    pub_ops_t *ops;
    origin_t origin;
} cluster_op_t;

/* cluster_op_refuse() - answer @origin (taken) with @code and @reason for
 * @ops (taken; their done() is told first) on @c, which never reached the
 * engine. Return: 0, what the callers' entry points return then. */
int cluster_op_refuse(chan_t *c, pub_ops_t *ops, origin_t *origin, int code, const char *reason);

/* cluster_op_new() - the context of @ops on @c for @origin, all taken; @c
 * is held. Return: it, or NULL (out of memory: @ops freed, @origin
 * cleared, no answer). */
cluster_op_t *cluster_op_new(chan_t *c, pub_ops_t *ops, origin_t *origin);

/* cluster_op_unavailable() - answer @x with error 133 (engine_unavailable),
 * @maybe appended to the reason; @x's done() is told first. @x stays. */
void cluster_op_unavailable(cluster_op_t *x, const char *maybe);

/* cluster_op_not_sent() - the engine call for @x failed at once with @rc:
 * -ENOTCONN answers 133, anything else 500 with @why (or "out of memory");
 * then @x is freed. */
void cluster_op_not_sent(cluster_op_t *x, int rc, const char *why);

/* cluster_op_free() - let go of @x: its origin, its operations, the hold
 * on its channel (which may then be dropped). */
void cluster_op_free(cluster_op_t *x);

#endif
