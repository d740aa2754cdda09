/* broker/app/admin.h - what operators see: health, readiness, channel
 * statistics, the runtime log level, and the sys:stats channel.
 *
 * Owns: the answers of GET /api/health, /api/health/ready, /api/channels,
 * /api/channels/{channel} and POST /api/admin/log (api.c routes them and
 * checks credentials), and the once-a-second sys:stats publication that the
 * admin page (GET /admin) draws, with its last 10 minutes kept in memory
 * (with the redis engine it names this node: its figures are the node's).
 * Loop thread only. */
#ifndef HERALD_ADMIN_H
#define HERALD_ADMIN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/channel.h"

/* admin_health() - the liveness body; *@status is 200, or 503 once stopping.
 * "status" is "ok", "degraded" (with "reasons": storage over 75%) or
 * "stopping". Return: a new reference, or NULL. */
json_t *admin_health(unsigned *status);

/* admin_ready() - start the readiness check for HTTP request @serial, which
 * gets its answer through http_finish(): 503 when the store is 95% full or a
 * small write transaction fails, 200 otherwise. Return: 0, or -errno
 * (answer 503 now). */
int admin_ready(uint64_t serial);

/* admin_channels() - a page of channel statistics for request @serial:
 * channels whose name starts with @prefix, from the opaque @cursor (0 first),
 * at most @limit. With the redis engine: the channels Redis knows, with the
 * cluster's figures and this node's under "node" (storage/engine_views.c),
 * a page possibly short with a next cursor, or 503 (133) when Redis cannot
 * be read. Return: 0, or -ENOMEM. */
int admin_channels(uint64_t serial, const char *prefix, uint64_t cursor, unsigned limit);

/* admin_channel() - the statistics of one channel for request @serial
 * (404 if the broker does not know it). With the redis engine, a channel it
 * routes is read from Redis as admin_channels() says (404 when neither
 * Redis nor this node knows it); the node's own sys channels are answered
 * here. Return: 0, or -ENOMEM. */
int admin_channel(uint64_t serial, const char *name, size_t len);

/* admin_set_log_level() - change the log level now. Return: 0, or -1 if
 * @level names none. */
int admin_set_log_level(const char *level);

/* admin_tick() - once a second: storage figures and alerts, sys:stats.
 * sys:stats is published every second when the sys namespace keeps no
 * history (the default; the top-channel lists and warnings only while
 * someone is subscribed), else only while someone is subscribed. */
void admin_tick(void);

/* What admin_recent() is asked for: offsets in (@after, @before) (@before 0:
 * no bound), at most @limit entries and @max_bytes of data, taken from the
 * newest end when @newest (else the oldest), listed newest first when
 * @desc (else oldest first). */
struct admin_range {
    uint64_t after, before;
    unsigned limit;
    size_t max_bytes;
    int newest, desc;
};

/* admin_recent() - the recent publications of @c that @q asks for, from
 * memory, as [{"offset","ts","data"}], when @c is sys:stats and its
 * namespace keeps no history: they serve as its history (subscribe with
 * "history", the history op, GET .../history).
 * @more: [out] 1 when entries in range were left out (limit or bytes).
 * Return: a new reference (possibly empty), or NULL when @c is not that
 * channel (or out of memory): the caller answers as for any channel
 * without history. */
json_t *admin_recent(const chan_t *c, const struct admin_range *q, int *more);

/* admin_deinit() - drop what admin_recent() keeps (at shutdown). */
void admin_deinit(void);

#endif
