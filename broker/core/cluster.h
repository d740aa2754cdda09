/* broker/core/cluster.h - channels shared by several Herald nodes through
 * the engine ([engine] type = redis; storage/engine.h, docs/cluster.md).
 *
 * Owns: the loop-side glue between the registry (core/channel.c) and the
 * shared engine: publishing through it, subscribing in it to the channels
 * that have local subscribers (first one in: SUBSCRIBE; last one out:
 * UNSUBSCRIBE), and the delivery of what it announces, in offset order.
 * DESIGN: every node, the publishing one included, delivers only what the
 * engine's subscription connection announces, so all nodes deliver the same
 * offsets in the same order. A channel's position (last offset delivered
 * here, epoch) is learnt by a read made after its SUBSCRIBE took effect, so
 * nothing published in between is missed; announcements that arrive while
 * a read is in flight wait in the channel's buffer. An announcement past
 * the next offset (a gap), or of another epoch, makes the channel read what
 * it missed from the stream and deliver it first; what the stream no longer
 * holds is reported to the subscribers with an "unrecovered" push, never
 * skipped silently. When the subscription connection comes back (a Redis
 * restart), every channel subscribes again and reads what it missed the
 * same way. Channels of the broker's own "sys" namespace stay local.
 * Loop thread only. */
#ifndef HERALD_CLUSTER_H
#define HERALD_CLUSTER_H

#include <stdint.h>

#include "core/channel.h"
#include "net/reply.h"
#include "engine.h"

/* cluster_start() - with [engine] type = redis, start the engine
 * (connecting goes on in the background: an unreachable Redis is logged and
 * retried). Return: 0, or -1 (logged). */
int cluster_start(void);

/* cluster_stop() - stop the engine; pending calls fail. */
void cluster_stop(void);

/* cluster_on() - whether the broker runs with a shared engine. */
int cluster_on(void);

/* cluster_engine() - the shared engine, or NULL (cluster_presence.c). */
engine_t *cluster_engine(void);

/* cluster_foreach() - call @fn for every channel with engine state (those
 * with local subscribers or members), for the resyncs. */
void cluster_foreach(void (*fn)(chan_t *c));

/* cluster_routes() - whether @c goes through the shared engine (every
 * channel but the broker's own "sys" ones, when cluster_on(); the commerce
 * adapter's admin channel too, even in "sys": core/cluster_shop.h). */
int cluster_routes(const chan_t *c);

/* cluster_routes_name() - cluster_routes() for a channel by name, known
 * here or not (the operator views ask Redis about channels with no local
 * state). */
int cluster_routes_name(const char *name, size_t len);

/* cluster_ready() - whether both engine connections are up (readiness).
 * @why: [out] when not, a static reason. */
int cluster_ready(const char **why);

/* cluster_conn_up() - whether the engine's subscription (@sub 1) or
 * command (0) connection is up, for /metrics. */
int cluster_conn_up(int sub);

/* cluster_reply_unavailable() - answer @o with error 133 engine_unavailable,
 * the reason "the redis engine is unavailable (see /api/health/ready)"
 * followed by @maybe (what may have happened anyway; "" for nothing). */
void cluster_reply_unavailable(const origin_t *o, const char *maybe);

/* cluster_set_state_gap() - @fn (app/state.c's state_on_gap()) is called
 * in place of the "unrecovered" push when a state channel's deltas between
 * two positions can no longer be read (a gap the stream does not hold, a
 * Redis restart without them): it gives each subscriber a fresh snapshot. */
void cluster_set_state_gap(void (*fn)(chan_t *c));

/* cluster_occupancy() - @c got its first local subscriber (@occupied 1) or
 * lost its last (0): subscribe to it in the engine, or unsubscribe.
 * Called by core/channel.c for channels cluster_routes() takes. */
void cluster_occupancy(chan_t *c, int occupied);

/* cluster_chan_free() - forget @c's state; called when @c is freed. */
void cluster_chan_free(chan_t *c);

/* cluster_publish() - publish record @rec (borrowed) with time @ts on @c
 * through the engine, for @origin (taken): "published" with the offset once
 * the engine assigned it ("duplicate": true when @idem, the idempotency key
 * or NULL, answered it), or PROTO_E_ENGINE_UNAVAILABLE (503) when Redis
 * cannot be reached, PROTO_E_BAD_FIELD when @o's reply_to is beyond the
 * channel, PROTO_E_FORBIDDEN when @o's author check fails (as pubpipe.c's),
 * PROTO_E_IDEM_MISMATCH (with the key's "offset") when @o's idempotency
 * key was used for another request. Return: 0, or -ENOMEM (@origin was
 * cleared). */
int cluster_publish(chan_t *c, const unsigned char *rec, size_t reclen, int64_t ts,
                    const struct engine_pubopts *o, origin_t *origin);

/* Called once @c's position is known here (@ok 1: c->last_offset and
 * c->epoch are the engine's, live deliveries follow them in order) or can
 * no longer be learnt (0: the engine went down; -1: the channel lost its
 * last local subscriber, so whoever waited is gone or unsubscribed: the
 * callee must not touch the subscription). */
typedef void (*cluster_synced_fn)(chan_t *c, void *arg, int ok);

/* cluster_when_synced() - call @fn(@c, @arg, 1) now if @c (which has a
 * local subscriber) is in step with the engine, else once it is.
 * Return: 0; PROTO_E_ENGINE_UNAVAILABLE (the engine is down: no call);
 * -ENOMEM (no call). */
int cluster_when_synced(chan_t *c, cluster_synced_fn fn, void *arg);

/* cluster_read() - engine_read() of @c for history.c; @c is held
 * (inflight) until @cb returns. Return: 0, PROTO_E_ENGINE_UNAVAILABLE, or
 * -ENOMEM; no callback unless 0. */
int cluster_read(chan_t *c, const struct engine_range *r, engine_read_cb cb, void *arg);

#endif
