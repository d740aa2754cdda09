/* broker/core/webhook.h - outbound webhooks: events queued durably in the
 * history store, delivered as signed HTTP POSTs, retried, then dead-lettered
 * (docs/webhooks.md).
 *
 * Owns: one delivery thread per [webhook NAME] section, its retry state (the
 * channels held by a failure) and counters. Does not own: the HTTP(S)
 * client it posts with (core/whpost.c), the queues and the attempt counts
 * stored with each event (storage/outbox.c; under the redis engine
 * storage/engine_webhooks.c, with the lease), what gets queued with a publication (the
 * publish pipeline asks config_webhooks_for() and writes the events in the
 * publication's transaction), or the REST routes (app/api.c).
 *
 * DESIGN: each webhook delivers the events of one channel strictly in queue
 * (event id) order, and nothing more: a round posts up to batch_size of the
 * oldest events whose channel is not held. A failed post holds the channels
 * of its events until their retry (backoff with full jitter); their later
 * events wait behind them, other channels' events go on. A channel that
 * failed in a batch with others is then posted in batches of its own, so a
 * receiver refusing one channel cannot hold the rest. The attempt count
 * lives with each queued event in the store (a kill -9 keeps it); the held
 * table is memory only (after a restart every channel is tried once at once).
 * The delivery threads never touch the loop: they read and write the queues
 * through their own LMDB transactions and hand results of REST requests back
 * through one uv_async.
 * Under the redis engine (docs/cluster.md#webhooks) the queues, attempt
 * counts, held channels and dead letters live in Redis
 * (storage/engine_webhooks.c): the scripts that publish queue the events
 * (wh_event(), storage/engine_int.h), every node runs the delivery threads,
 * each with its own synchronous hiredis connection, and one thread per
 * webhook across the nodes delivers: the holder of the webhook's lease,
 * renewed every round and during a post (stopping_cb), lost within
 * [engine] webhook_lease when its node dies. The deliverer's writes check
 * the lease in the same script, so a node that lost it changes nothing; the
 * held table is stored in Redis as well, so the next holder loads it and
 * the backoff goes on. The REST requests run on any node's thread, against
 * Redis. Loop thread unless noted. */
#ifndef HERALD_WEBHOOK_H
#define HERALD_WEBHOOK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/channel.h"
#include "stats.h"

/* webhook_start() - start a delivery thread for each configured webhook
 * (after pubpipe_start()). Return: 0, or -1 (logged). */
int webhook_start(void);

/* webhook_stop() - stop the delivery threads (before pubpipe_stop() and
 * cluster_stop()); an event in flight stays queued and is delivered again
 * after a restart. The threads end while the loop runs (under the redis
 * engine each gives its lease back first, through the TLS bridge on the
 * loop when [engine] tls = on): the loop is never blocked waiting for them.
 * @done: called on the loop once they ended and all is freed, when this
 * returns 1. Return: 0, stopped now (@done is not called; also when there
 * was nothing to stop); 1, @done comes later. Loop thread. */
int webhook_stop(void (*done)(void));

/* webhook_kick() - tell the delivery threads new events may be queued. Any thread. */
void webhook_kick(void);

/* webhook_on_occupancy() - queue channel.occupied (@occupied 1) or
 * channel.vacated (0) for @c, for the webhooks that want it; under the
 * redis engine, tell the cluster-wide occupancy instead (cluster_occ.h),
 * which queues them once for the whole cluster. */
void webhook_on_occupancy(chan_t *c, int occupied);

/* webhook_on_member() - queue presence.member_added (@added 1) or
 * presence.member_removed for @user (@len bytes) of @c. */
void webhook_on_member(chan_t *c, const char *user, size_t len, int added);

/* webhook_status() - {"webhooks":[{name,url,events,queue_depth,lag_ms,
 * dead_letters,last_success,last_error,...}]}: a new reference, or NULL. */
json_t *webhook_status(void);

/* webhook_health() - [{name,state ("ok"/"failing"),queue_depth,lag_ms,
 * dead_letters,failing_channels,last_success,last_error}], one per running
 * webhook, for the admin page's feed (sys:stats): a new reference, or NULL. */
json_t *webhook_health(void);

/* Dead-letter requests, answered on the parked HTTP request @serial
 * (http_finish*) once the webhook's thread has done them.
 * Return: 0; 1 when there is no webhook @name (nothing answered); -ENOMEM. */
int webhook_dead_list(uint64_t serial, const char *name, uint64_t after, unsigned limit);
int webhook_dead_retry(uint64_t serial, const char *name, uint64_t id);   /* @id 0: all */
int webhook_dead_delete(uint64_t serial, const char *name, uint64_t id);  /* @id 0: all */

/* Counters of one webhook, for GET /metrics. */
struct webhook_stats {
    const char *name;
    uint64_t deliveries;          /* events delivered (2xx) */
    uint64_t failures;            /* failed posts (each attempt) */
    uint64_t retries;             /* posts holding an event that had failed before */
    uint64_t dead;                /* events moved to the dead letters */
    uint64_t depth;               /* events queued */
    uint64_t dead_depth;          /* events in the dead letters now (filled by webhook_stats()) */
    uint64_t held;                /* channels waiting for a retry (filled by webhook_stats()) */
    double lag_s;                 /* age of the oldest queued event (filled by webhook_stats()) */
    histo_t latency;              /* from an event's queueing to its delivery, seconds */
};

/* webhook_stats() - a copy of webhook @i's counters. Return: 0, or -1 past the last. */
int webhook_stats(size_t i, struct webhook_stats *out);

#endif
