/* broker/pubpipe.h - the way of a publication from its publisher to its
 * subscribers: through the history store when its namespace keeps history,
 * straight to fan-out when it does not.
 *
 * Owns: the storage thread and the queues between it and the loop.
 * DESIGN: publications to history channels queue on the loop; the storage
 * thread takes everything queued as one batch, commits it in one LMDB
 * transaction (group commit: one fsync for the whole batch), encodes each
 * publication's pushes, and hands the batch back through a uv_async. While it
 * commits, the next batch gathers, so the pipeline never idles under load and
 * the loop never waits on the disk. Only after the commit is a publication
 * fanned out and acknowledged, so no subscriber sees and no publisher is told
 * of a message a crash could erase. The storage thread also prunes expired
 * history and, with durability = interval, flushes to disk on a timer.
 * Loop thread, except where noted. */
#ifndef HERALD_PUBPIPE_H
#define HERALD_PUBPIPE_H

#include <jansson.h>
#include <stdint.h>

#include "channel.h"
#include "hist.h"

/* Who to tell the outcome of a publication. */
enum pub_origin_kind { ORIGIN_NONE = 0, ORIGIN_WS, ORIGIN_REST };

struct pub_origin {
    enum pub_origin_kind kind;
    uint64_t serial;              /* conn_find() key of the session or HTTP request */
    json_t *id;                   /* the WebSocket request id (a reference), or NULL */
};

/* pubpipe_start() - open the history store under the data directory, load its
 * channels into the registry and start the storage thread.
 * Return: 0, or -1 (logged). */
int pubpipe_start(void);

/* pubpipe_stop() - commit what is queued, stop the storage thread, deliver
 * the last outcomes and close the store. */
void pubpipe_stop(void);

/* pubpipe_publish() - publish @data (borrowed) on @c for @origin (its id
 * reference is taken), with the sender @from (borrowed; NULL for the server),
 * @reply_to (0: none) and @kind (NULL: a plain message). The outcome comes through ops_pub_done(), later for a
 * history channel, before this returns otherwise.
 * Return: 0, or -ENOMEM (no outcome will come; the id reference is dropped). */
int pubpipe_publish(chan_t *c, const json_t *data, const json_t *from, uint64_t reply_to, const char *kind,
                    struct pub_origin *origin);

/* pubpipe_state() - apply the state operations @ops (taken) to state channel
 * @c for @origin (its id reference is taken); see state.h.
 * Return: 0, or -ENOMEM (no outcome will come). */
struct state_ops;
int pubpipe_state(chan_t *c, struct state_ops *ops, struct pub_origin *origin);

/* pubpipe_timers() - have @due called on the loop for each timer of the
 * store that is due (hist_timers_due(); seat hold expiries). The storage
 * thread looks every quarter second, and not again until the loop has taken
 * the last report, so an expiry queued meanwhile is not reported twice. */
void pubpipe_timers(void (*due)(int64_t at_ms, const char *chan, size_t chanlen, const char *key, size_t klen));

/* pubpipe_probe() - check that the store can commit, for GET
 * /api/health/ready: the storage thread runs a small write transaction and
 * the HTTP request @serial gets 200 or 503. Return: 0, -EIO (no store), -ENOMEM. */
int pubpipe_probe(uint64_t serial);

/* pubpipe_store() - the history store, for reads (any thread). */
hist_t *pubpipe_store(void);

#endif
