/* broker/core/cluster_occ.h - the webhooks' channel.occupied and
 * channel.vacated once for the whole cluster ([engine] type = redis;
 * docs/cluster.md#webhooks).
 *
 * Owns: telling the engine that this node has local subscribers of a
 * channel, or no longer has (engine_occupancy()), under its presence id,
 * and writing that again under a new id. Does not own: the node's id and
 * lease, or the reaping of dead nodes (core/cluster_presence.c,
 * storage/engine_presence.c), when a channel's local occupancy changes
 * (core/channel.c, through webhook_on_occupancy()), delivery (core/webhook.c).
 * DESIGN: Redis keeps per channel the set of nodes with local subscribers
 * and per node the set of its channels, as presence keeps members: the
 * first node in queues channel.occupied, the last node out queues
 * channel.vacated, in the script that changes the set, so each goes out
 * once whatever the number of nodes. A node that dies keeps its place
 * until its lease ends; whichever node reaps it vacates the channels no
 * other node holds. When the node takes a new id (its command connection
 * came back, or it was taken for dead), cluster_presence.c's rotate()
 * writes its occupied channels again under the new id before it drops the
 * old one, so a channel that stayed occupied gets no event, and one that
 * emptied meanwhile is vacated then. Nothing is written for a channel no
 * webhook wants these events of, so users without such webhooks pay
 * nothing. Loop thread only. */
#ifndef HERALD_CLUSTER_OCC_H
#define HERALD_CLUSTER_OCC_H

#include "core/channel.h"

/* cluster_occ_change() - @c (one cluster_routes() takes) got its first
 * local subscriber (@occupied 1) or lost its last (0): write it to the
 * engine when some webhook wants channel.occupied or channel.vacated of @c.
 * Failures are logged; the write made under the next id repairs them. */
void cluster_occ_change(chan_t *c, int occupied);

/* cluster_occ_resync() - write @c's occupancy again under the node's new
 * id, if it has local subscribers (cluster_presence.c's rotate()). */
void cluster_occ_resync(chan_t *c);

#endif
