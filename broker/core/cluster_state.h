/* broker/core/cluster_state.h - state channels through the shared engine
 * ([engine] type = redis; storage/engine_state.c, docs/cluster.md).
 *
 * Owns: the loop-side glue for a state channel's operations and snapshots
 * when cluster_routes() takes the channel. Does not own: parsing requests
 * and building snapshots (app/state.c), delivering the deltas (they are the
 * channel's publications: core/cluster.c delivers them in offset order on
 * every node). Loop thread only. */
#ifndef HERALD_CLUSTER_STATE_H
#define HERALD_CLUSTER_STATE_H

#include "core/channel.h"
#include "core/pubpipe.h"
#include "net/reply.h"
#include "engine.h"

/* cluster_state() - apply @ops (taken) to state channel @c for @origin
 * (taken) in the engine, all or none; the answer is pubpipe_state()'s
 * ("updated" with the offset and changes, PROTO_E_CONFLICT,
 * PROTO_E_NOT_INTEGER), or PROTO_E_ENGINE_UNAVAILABLE (503) when Redis
 * cannot be reached, PROTO_E_DISABLED for a custom operation other than a
 * seat map's (cluster_seats()) or a ticket request (cluster_tickets()). Return: 0, or -ENOMEM (@ops freed,
 * @origin cleared, no answer). */
int cluster_state(chan_t *c, pub_ops_t *ops, origin_t *origin);

/* cluster_state_read() - engine_state_read() of @c, which is held
 * (inflight) until @cb returns. Return: 0 (@cb later, once);
 * PROTO_E_ENGINE_UNAVAILABLE or -ENOMEM (no callback). */
int cluster_state_read(chan_t *c, const char *prefix, size_t plen, const char *after, size_t alen, size_t limit,
                       engine_state_read_cb cb, void *arg);

#endif
