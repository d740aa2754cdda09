/* broker/core/cluster_seats.h - seat maps through the shared engine
 * ([engine] type = redis; storage/engine_seats.c, docs/cluster.md).
 *
 * Owns: the loop-side glue for a seat request on a seat map that
 * cluster_routes() takes, this node's share of hold expiry (the sweep,
 * which any node may run under a lease; it also keeps the node marked
 * alive), and the counts of its users' connections that release on
 * disconnect looks at across nodes. Does not own: validating the
 * request (app/seats.c), the seat rules (engine_seats.c's script, the same
 * as storage/seatmap.c's), delivering the deltas and notices (they are
 * publications: core/cluster.c delivers them in offset order on every
 * node). Loop thread only. */
#ifndef HERALD_CLUSTER_SEATS_H
#define HERALD_CLUSTER_SEATS_H

#include "core/channel.h"
#include "core/pubpipe.h"
#include "net/reply.h"

/* cluster_seats() - run the seat request of @ops (taken; one custom
 * operation whose argument is a seat_req_t, storage/seatmap.h) on seat map
 * @c for @origin (taken) in the engine. The answer is the one the LMDB
 * engine gives (pubpipe_custom_report(), @ops' done() first), or
 * PROTO_E_ENGINE_UNAVAILABLE (503) when Redis cannot be reached.
 * Return: 0, or -ENOMEM (@ops freed, @origin cleared, no answer). */
int cluster_seats(chan_t *c, pub_ops_t *ops, origin_t *origin);

/* cluster_seats_tick() - ask the engine to free expired holds, if no sweep
 * of this node is in flight (called every quarter second while the
 * engine runs and the seats namespace has state). */
void cluster_seats_tick(void);

/* cluster_seats_conn() - count a connection of @user that opened (@delta
 * 1) or closed (-1) on this node, in the engine, so that another node's
 * release on disconnect waits while the user is connected here. Nothing
 * is answered; with Redis down the count is missed. */
void cluster_seats_conn(const char *user, int delta);

#endif
