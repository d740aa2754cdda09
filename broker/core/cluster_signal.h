/* broker/core/cluster_signal.h - signals across nodes on the shared engine
 * ([engine] type = redis; docs/cluster.md#signals).
 *
 * Owns: the sending of a `signal` op through the engine and the delivery of
 * the signals it announces to this node's subscribers.
 * DESIGN: a signal is PUBLISHed on the channel's fan-out key (the one its
 * publications use) as {"from":{...},"data":...}, with no script and
 * nothing stored, so it takes no offset and reaches exactly the nodes that
 * have subscribers of the channel, the sender's included; every node
 * delivers it as one node does (core/channel.c chan_broadcast()), leaving
 * out the connection named in "from.client", which is the sender's only on
 * the sender's node. The checks (subscribed, signals on, the per-connection
 * rate) stay with the node that received the op (app/ops.c). A payload that
 * is not what this file sends is logged (at most every 10 s) and dropped.
 * Loop thread only. */
#ifndef HERALD_CLUSTER_SIGNAL_H
#define HERALD_CLUSTER_SIGNAL_H

#include <jansson.h>

#include "core/channel.h"
#include "net/reply.h"

/* cluster_signal() - send signal @data (borrowed) from @from (borrowed: the
 * broker's {"user"?, "client"}) to every subscriber of @c on every node but
 * the connection @from names. No answer on success; @origin (taken) gets
 * error PROTO_E_ENGINE_UNAVAILABLE when Redis cannot be reached (or the
 * connection failed with the signal in flight: it may or may not have
 * gone). Return: 0, or -ENOMEM (@origin was cleared, nothing sent). */
int cluster_signal(chan_t *c, const json_t *from, const json_t *data, origin_t *origin);

/* cluster_signal_on_event() - engine_events.on_signal: deliver @payload
 * (@n bytes, unchecked) to channel @name's local subscribers. */
void cluster_signal_on_event(const char *name, size_t len, const char *payload, size_t n);

#endif
