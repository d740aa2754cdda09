/* broker/core/cluster_tickets.h - the support-tickets adapter through the
 * shared engine ([engine] type = redis; storage/engine_tickets.c,
 * docs/cluster.md#support-tickets).
 *
 * Owns: the loop-side glue for a ticket request on the dashboard channel
 * that cluster_routes() takes. Does not own: validating the request
 * (app/tickets.c), the ticket rules (engine_tickets.c's script, the same as
 * storage/tickets_db.c's), delivering the deltas and timeline entries (they
 * are publications: core/cluster.c delivers them in offset order on every
 * node), the listing (a state read: core/cluster_state.c). Loop thread only. */
#ifndef HERALD_CLUSTER_TICKETS_H
#define HERALD_CLUSTER_TICKETS_H

#include "core/channel.h"
#include "core/pubpipe.h"
#include "net/reply.h"

/* cluster_tickets() - run the ticket request of @ops (taken; one custom
 * operation whose argument is a tickets_req_t, storage/tickets_db.h) on the
 * dashboard @c for @origin (taken) in the engine. The answer is the one the
 * LMDB engine gives (pubpipe_custom_report(), @ops' done() first, with the
 * timeline entries published as @ops->side), or PROTO_E_ENGINE_UNAVAILABLE
 * (503) when Redis cannot be reached.
 * Return: 0, or -ENOMEM (@ops freed, @origin cleared, no answer). */
int cluster_tickets(chan_t *c, pub_ops_t *ops, origin_t *origin);

#endif
