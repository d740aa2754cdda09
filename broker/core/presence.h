/* broker/core/presence.h - who is in a channel, and the events about it.
 *
 * Owns: a channel's members (presence_t, hung off chan_t when its namespace
 * has presence on), join/leave events, the grace period before a leave, and
 * tiered presence for big channels. A member is a user id (an anonymous
 * connection is a member by its client id); several connections of one user
 * are one member with a connection count. The first connection joins, the
 * last one leaves, after namespace.presence_grace, so a phone that drops and
 * comes back within the grace does not flap. Every change is O(1) but the
 * fan-out of its event. Above namespace.presence_tier members, replies carry
 * a count and a bounded sample, and join/leave events are merged into one
 * presence_batch per second; once a channel has a batch pending, its events
 * go into it until it is flushed, so no event overtakes another. The
 * channel's presence seq counts the changes (a join, a leave, an info
 * update) and is on every event and answer. A member's info comes from its
 * token, and presence_set_info() replaces it. With the shared engine
 * (cluster_routes()), this file still counts the local connections and
 * applies the grace, but the members of every node, the seq and the events
 * are the engine's (core/cluster_presence.c): changes are written there and
 * the events it announces come back through presence_remote_event().
 * Loop thread only. */
#ifndef HERALD_PRESENCE_H
#define HERALD_PRESENCE_H

#include <jansson.h>
#include <stdint.h>

struct chan;
struct sess;

/* Members listed at most in a reply or a batch above the tier. */
#define PRESENCE_SAMPLE 100
/* The largest info a member may set (presence_update), as compact JSON. */
#define PRESENCE_INFO_MAX 1024

typedef struct presence presence_t;

/* presence_join() - @s subscribed to @c (whose namespace has presence on).
 * Return: 0, or -ENOMEM. */
int presence_join(struct chan *c, struct sess *s);

/* presence_leave() - @s is no longer subscribed to @c. */
void presence_leave(struct chan *c, struct sess *s);

/* presence_free() - drop @c's presence (the channel is going). */
void presence_free(struct chan *c);

/* presence_json() - {"members":[...],"count":N,"connections":M,"seq":S} (with
 * "tiered":true and a sample above the tier). Return: a new reference. */
json_t *presence_json(const struct chan *c);

/* presence_set_info() - replace the info of @s's member of @c (its user, or
 * its client id when anonymous) with @info (taken; NULL: none) and announce
 * it to the channel's other connections (a presence_update event, or an
 * entry of the next presence_batch).
 * @seq: [out] on 0, the channel's presence seq after the change.
 * Return: 0, or PROTO_E_NOT_SUBSCRIBED when @s is not a member (@info is
 * released either way). */
int presence_set_info(struct chan *c, struct sess *s, json_t *info, uint64_t *seq);

/* presence_stats_json() - {"members":N,"connections":M}, O(1). */
json_t *presence_stats_json(const struct chan *c);

/* presence_count() - members now (0 without presence). */
uint32_t presence_count(const struct chan *c);

/* presence_tick() - announce leaves whose grace has passed and flush the
 * batched events of tiered channels (call often: every 250 ms). */
void presence_tick(void);

/* presence_resync() - write every local member of @c to the shared engine
 * again (cluster_presence.c, after a reconnection). */
void presence_resync(struct chan *c);

/* presence_remote_event() - the shared engine announced a change of @c's
 * presence: @kind 0 join, 1 leave, 2 info update, the channel's @seq and
 * member @count after it, the member's fields @member (borrowed); sent to
 * @c's subscribers but @except (may be NULL), or batched above the tier. */
void presence_remote_event(struct chan *c, int kind, uint64_t seq, uint64_t count, json_t *member,
                           const struct sess *except);

#endif
