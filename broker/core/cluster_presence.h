/* broker/core/cluster_presence.h - presence across nodes on the shared
 * engine ([engine] type = redis; docs/cluster.md#presence).
 *
 * Owns: this node's id in the engine and its lease (a heartbeat every
 * engine.presence_heartbeat renews it; a node whose lease ended, two
 * heartbeats without one, has its members dropped by whichever node beats
 * next, so within three heartbeats), the writes of the local members
 * (core/presence.c counts them and applies the grace), the events the
 * engine announces, and the presence answers read from the engine.
 * DESIGN: the engine keeps per channel the members and, per node, their
 * connections; a member joins when its first node has it and leaves when
 * its last drops it, in one script, so join and leave go out once per user
 * whichever nodes its connections use, on the channel's fan-out key, in one
 * order for every node. Members are written only under a live lease, so
 * nothing a node writes can outlive it. When the command connection comes
 * back, or the node finds it was taken for dead, it takes a new id (with
 * its lease), writes its members again under it and drops its old id:
 * members that left meanwhile leave, the others stay without an event.
 * Loop thread only. */
#ifndef HERALD_CLUSTER_PRESENCE_H
#define HERALD_CLUSTER_PRESENCE_H

#include <jansson.h>
#include <stdint.h>

#include "core/channel.h"
#include "net/reply.h"
#include "engine.h"

/* cluster_presence_start() / _stop() - the heartbeat timer (cluster.c
 * calls them with the engine). */
void cluster_presence_start(void);
void cluster_presence_stop(void);

/* cluster_presence_node() - this node's id in the engine now, and in
 * *@gen a number that changes with it (a new id after the command
 * connection came back or the lease was lost). Anything written under the
 * id after its lease is written in the same order on the command
 * connection, as the members are. */
const char *cluster_presence_node(unsigned *gen);

/* cluster_presence_no_lease() - a write made under the id of generation
 * @gen found the node without a lease (ENGINE_E_NO_LEASE: taken for dead):
 * if that id is still the node's, take a new one and write everything again. */
void cluster_presence_no_lease(unsigned gen);

/* cluster_presence_hooks() - the names of the webhooks that want event @ev
 * (WH_EV_*) on @c, separated by '\n', into @buf of @cap bytes ("" for
 * none), as the engine's scripts take them. */
void cluster_presence_hooks(const chan_t *c, unsigned ev, char *buf, size_t cap);

/* cluster_presence_on_cmd() - the command connection came up (@up 1):
 * take a new id and write every local member again. */
void cluster_presence_on_cmd(int up);

/* cluster_presence_on_event() - engine_events.on_presence. */
void cluster_presence_on_event(const char *chan, size_t len, int kind, uint64_t seq, uint64_t count,
                               const char *client, size_t clientlen, const char *json, size_t jsonlen);

/* cluster_presence_conn() - member @key (@anon: a client id) of @c, with
 * @info (borrowed, may be NULL), changed on this node as @mode
 * (enum engine_pres_mode) and @count say, for connection @client. Failures
 * are logged: the resync after a reconnection repairs them. */
void cluster_presence_conn(chan_t *c, const char *key, size_t keylen, int anon, const json_t *info,
                           const char *client, int mode, int64_t count);

/* cluster_presence_info() - set @s's member info of @c to @info (borrowed)
 * and answer @origin (taken) "presence_updated" with the seq, or an error
 * (PROTO_E_NOT_SUBSCRIBED, PROTO_E_ENGINE_UNAVAILABLE). Return: 0 or -ENOMEM. */
int cluster_presence_info(chan_t *c, const char *key, size_t keylen, int anon, const json_t *info,
                          const char *client, origin_t *origin);

/* cluster_presence_read() - answer @origin (taken) with channel @name's
 * members on every node: @op "presence" ({"channel","members","count",
 * "connections","seq"}, "tiered" and a sample above @tier) or
 * "presence_stats" ({"channel","members","connections"}), or error
 * PROTO_E_ENGINE_UNAVAILABLE (503). Return: 0, or -ENOMEM. */
int cluster_presence_read(const char *name, size_t len, unsigned tier, int stats, origin_t *origin);

/* cluster_presence_fetch() - read channel @name's members on every node
 * (as the "presence" answer, without "channel") and give them to @cb
 * (borrowed; NULL: the engine failed). Return: 0 (@cb comes later, once);
 * -ENOTCONN, -ENOMEM (no callback). */
int cluster_presence_fetch(const char *name, size_t len, unsigned tier, void (*cb)(void *arg, json_t *pres),
                           void *arg);

#endif
