/* storage/engine_webhooks.h - the webhooks' queues, dead letters, held
 * channels and delivery lease in Redis, for the delivery threads of
 * broker/core/webhook.c under [engine] type = redis (docs/cluster.md#webhooks).
 *
 * Owns: one synchronous hiredis connection per webhook (used by that
 * webhook's delivery thread only: never the loop's connections), its
 * reconnection, the lease and the scripts below. Does not own: what gets
 * queued (the publishing scripts call ENGINE_EVENT_LUA, engine_int.h),
 * delivery, backoff and ordering decisions (broker/core/webhook.c).
 * Keys, under the prefix P and webhook name N:
 *   P wseq    the event id counter, one for every webhook (INCR);
 *   P wq:N    sorted set of queued event ids (score = id: delivery order);
 *   P we:N    hash id -> "<kind><ts>:<offset>:<#chan>:<chan><body>";
 *   P wa:N    hash id -> "<attempts>:<first>:<last>" once a post failed;
 *   P wdq:N, P wd:N, P wdr:N  the dead letters: the same sorted set and
 *             event hash, and id -> "<attempts>:<first>:<last>:<why>";
 *   P wl:N    the delivery lease: a random token of the holding thread,
 *             with a TTL of [engine] webhook_lease;
 *   P wh:N    hash channel -> "<next try ms>:<attempts>:<alone>": the
 *             channels held by a failure, so a node taking over continues
 *             their backoff;
 *   P wr:N    set by an operator's retry of dead letters on any node: the
 *             deliverer forgets its held channels (as the LMDB path does).
 * DESIGN: one deliverer per webhook at a time, the holder of P wl:N (SET NX
 * PX, renewed while it delivers, also during a post). Every write of the
 * deliverer (attempt counts, acknowledgements, dead letters, held channels)
 * is a script that first checks the lease is still its own, so a node that
 * lost it (paused, cut off) changes nothing; a post it had in flight may
 * reach the receiver again from the new holder (at least once, the event id
 * is the receiver's de-duplication key). Reading and the dead-letter routes
 * work from any node. Any thread, one whq_t per thread. */
#ifndef HERALD_ENGINE_WEBHOOKS_H
#define HERALD_ENGINE_WEBHOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "hist.h"

typedef struct whq whq_t;

/* Outcomes besides 0 and negative errno values. */
enum { WHQ_E_LOST = 1 };          /* the lease is another thread's (or nobody's): nothing written */

/* whq_new() - the queue of webhook @hook (a name of at most 64 bytes) in
 * the Redis @conf names (copied; the address already checked), with a
 * lease of @lease_ms. Connects lazily. Return: 0 and *@out; -ENOMEM, -EINVAL. */
int whq_new(const struct engine_conf *conf, const char *hook, unsigned lease_ms, whq_t **out);

/* whq_close() - give the lease back if held, and close the connection (a
 * later call connects again). Blocks for at most the command timeout. */
void whq_close(whq_t *q);

/* whq_free() - whq_close(), then free @q. NULL: no-op. */
void whq_free(whq_t *q);

/* whq_lease() - take or renew the lease. @fresh: [out] 1 when it was just
 * taken (the caller loads the held channels); @retry: [out] 1 when an
 * operator retried dead letters since the last call (the caller forgets
 * its held channels). Return: 1 held, 0 another's, -EIO (Redis unreachable;
 * the lease is lost within its TTL). */
int whq_lease(whq_t *q, int *fresh, int *retry);

/* whq_renew() - renew the lease if a third of it went by since the last
 * renewal, for the waits of a post. Return: 1 held, 0 lost, -EIO. */
int whq_renew(whq_t *q);

/* The calls below answer as their hist_outbox_*() namesakes (hist.h), on
 * the Redis queue; those that write need the lease (WHQ_E_LOST otherwise). */
int whq_pick(whq_t *q, uint64_t after, size_t scan_max, size_t max,
             int (*want)(void *ctx, const char *chan, size_t chanlen, unsigned attempts), void *ctx,
             hist_ob_item_t **out, size_t *nout, uint64_t *last_seen);
int whq_tried(whq_t *q, const uint64_t *ids, size_t n, int64_t now_ms, unsigned *attempts);
int whq_ack(whq_t *q, const uint64_t *ids, size_t n);
int whq_bury(whq_t *q, const uint64_t *ids, size_t n, const char *why);
/* Without the lease: */
int whq_read(whq_t *q, int dead, uint64_t after, size_t max, hist_ob_item_t **out, size_t *nout);
int whq_revive(whq_t *q, uint64_t id);   /* count >= 0, or -errno */
int whq_drop(whq_t *q, uint64_t id);     /* count >= 0, or -errno */
int whq_depth(whq_t *q, int dead, uint64_t *n, int64_t *oldest_ts);

/* Held channels (with the lease): whq_held_put() stores channel @chan's
 * retry, whq_held_del() forgets it; whq_held_load() calls @fn for each
 * stored (without the lease). Return: 0, WHQ_E_LOST, -EIO, -ENOMEM. */
int whq_held_put(whq_t *q, const char *chan, size_t len, int64_t next_try_ms, unsigned attempts, int alone);
int whq_held_del(whq_t *q, const char *chan, size_t len);
int whq_held_load(whq_t *q, void (*fn)(void *ctx, const char *chan, size_t len, int64_t next_try_ms,
                                        unsigned attempts, int alone), void *ctx);
/* whq_held_count() - how many channels are held (for the status routes of
 * nodes that do not deliver). Return: 0 and *@n, or -EIO. */
int whq_held_count(whq_t *q, uint64_t *n);

#endif
