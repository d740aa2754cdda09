/* broker/core/pubpipe.h - the way of a publication from its publisher to its
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
 * of a message a crash could erase. A custom state operation (an adapter's)
 * may publish on other channels in its transaction (hist_tx_publish()):
 * those come back with its outcome and are fanned out right after it, in
 * order. The storage thread also prunes expired
 * history and, with durability = interval, flushes to disk on a timer.
 * Admission control: while the oldest write queued for the storage thread
 * and not yet committed is older than history.max_queue_delay, a new write
 * from a client is refused at once with PROTO_E_OVERLOADED (core/admit.h
 * says why), so an overload bounds the wait instead of growing a queue.
 * Loop thread, except where noted. */
#ifndef HERALD_PUBPIPE_H
#define HERALD_PUBPIPE_H

#include <jansson.h>
#include <stdint.h>

#include "core/channel.h"
#include "net/reply.h"
#include "hist.h"

/* Operations on a state channel, owned by the publication that carries
 * them (app/state.c parses generic ones, app/seats.c builds custom ones). */
typedef struct pub_ops {
    hist_state_op_t *ops;
    size_t n;
    json_t *request;              /* holds the strings the ops point into */
    unsigned char *vals;          /* the values, as MessagePack */
    /* A custom operation's argument (app/seats.c), freed with the ops. */
    void *custom;
    void (*custom_free)(void *custom);
    /* Called on the loop once the outcome is known (@code 0 or a PROTO_E_*
     * code), before the requester is answered; may edit @result (the custom
     * operation's report, or NULL), which then goes into the answer. */
    void (*done)(chan_t *c, struct pub_ops *ops, int code, json_t *result);
    const char *reply_op;         /* the WebSocket reply's op; NULL: "updated" */
    /* During done() with code 0: what the custom operation published on
     * other channels (hist_tx_publish()), in order, each with its offset
     * (also for channels without history: numbered by then); else NULL. */
    const hist_side_t *side;
} pub_ops_t;

/* A custom operation on a state channel, for pubpipe_custom(). */
typedef struct pub_custom {
    hist_custom_fn apply;         /* runs on the storage thread with @arg */
    const void *arg;              /* points into @custom */
    void *custom;                 /* the request, freed with @custom_free when the operation is done */
    void (*custom_free)(void *custom);
    void (*done)(chan_t *c, pub_ops_t *ops, int code, json_t *result);   /* pub_ops_t.done */
    const char *reply_op;         /* pub_ops_t.reply_op */
    const char *need_state;       /* non-NULL: the channel's namespace must have state = on; else the
                                     request is refused (PROTO_E_DISABLED) with this reason */
} pub_custom_t;

/* What a publication carries besides its data, and the conditions of its
 * write. Everything is borrowed for the call that takes it. */
typedef struct pub_meta {
    const json_t *from;           /* the sender; NULL: the server */
    uint64_t reply_to;            /* the offset it answers; 0: none */
    const char *kind;             /* NULL: a plain message; else "reaction", "edit" or "delete" (static) */
    int check_author;             /* the publication at reply_to must be by @from's author (an edit or
                                     delete by someone who may not moderate), checked in the write
                                     transaction; else refused (PROTO_E_FORBIDDEN) */
    const char *idem_key;         /* the client's idempotency key (1..HIST_IDEM_MAX bytes), or NULL */
    size_t idem_len;
} pub_meta_t;

/* pub_ops_free() - free @ops and what it holds; NULL is a no-op. */
void pub_ops_free(pub_ops_t *ops);

/* pubpipe_start() - open the history store under the data directory, load its
 * channels into the registry and start the storage thread.
 * Return: 0, or -1 (logged). */
int pubpipe_start(void);

/* pubpipe_stop() - commit what is queued, stop the storage thread, deliver
 * the last outcomes and close the store. */
void pubpipe_stop(void);

/* pubpipe_publish() - publish @data (borrowed) on @c for @origin (taken),
 * with @meta (borrowed; NULL: a plain message from the server). The outcome
 * comes through the origin's reply (net/reply.h), later for a history
 * channel, before this returns otherwise: "published" with the offset (and
 * "duplicate": true when @meta's idempotency key answered it), or an error
 * (PROTO_E_IDEM_MISMATCH with the key's "offset" when the key was kept with
 * another request's digest: SHA-256 of the channel and the canonical JSON
 * of @data).
 * On a history channel, while pubpipe_admit() refuses, the outcome is
 * PROTO_E_OVERLOADED, told before this returns (nothing is stored or fanned
 * out), after which @c may be gone.
 * @meta's idempotency key and author check need a history channel. Use
 * publish() (core/publish.h), which checks the request first.
 * Return: 0, or -ENOMEM (no outcome will come; @origin was cleared). */
int pubpipe_publish(chan_t *c, const json_t *data, const pub_meta_t *meta, origin_t *origin);

/* pubpipe_admit() - whether a write for @origin may be queued for the
 * storage thread now: refused while the oldest write queued and not yet
 * committed is older than history.max_queue_delay (0: never). The
 * broker's own writes (@origin of kind ORIGIN_NONE) and writes queued
 * during a hold (pubpipe_hold(): the holder asks once, first) are always
 * admitted. A refusal counts in srv.stats.publications_shed and is logged
 * at most once a second. pubpipe_publish() and pubpipe_state() ask it
 * themselves; a caller that must refuse several writes as one (a REST
 * batch) asks it first.
 * @reason: [out] on PROTO_E_OVERLOADED, why (PROTO_REASON_MAX bytes).
 * Return: 0 (admitted), or PROTO_E_OVERLOADED. */
int pubpipe_admit(const origin_t *origin, char *reason);

/* pubpipe_hold() / pubpipe_release() - publications and state changes
 * queued between a hold and its release reach the storage thread together,
 * so they commit in one transaction (unless the queue already holds more
 * than a batch's bounds). Holds nest; the outermost release hands them
 * over. Publications to channels without history are not held (they never
 * reach the store). A caller must release in the same loop turn. */
void pubpipe_hold(void);
void pubpipe_release(void);

/* pubpipe_state() - apply the state operations @ops (taken) to state channel
 * @c for @origin (taken), all or none, in the channel's write transaction;
 * the effect is published as a delta (app/state.c describes it). A channel
 * the shared engine routes (cluster_routes()) goes to cluster_state(). While
 * pubpipe_admit() refuses, the outcome is PROTO_E_OVERLOADED, told (to
 * @ops' done(), then @origin) before this returns, after which @ops is freed
 * and @c may be gone.
 * Return: 0, or -ENOMEM (no outcome will come; @ops freed, @origin cleared). */
int pubpipe_state(chan_t *c, pub_ops_t *ops, origin_t *origin);

/* pubpipe_state_report() - answer @origin (borrowed) for state operations
 * @ops (borrowed) on @c the way pubpipe_state() does, calling @ops' done()
 * first: @status 0 with @offset and the delta record @rec (its "changes" go
 * in the reply), or HIST_E_CONFLICT / HIST_E_NOT_INTEGER at op @failed_op
 * (@conflict_version: the key's version now). For the shared engine's
 * state path (core/cluster_state.c), so both engines answer alike. */
void pubpipe_state_report(chan_t *c, pub_ops_t *ops, const origin_t *origin, int status, size_t failed_op,
                          uint64_t conflict_version, uint64_t offset, const unsigned char *rec, size_t reclen);

/* pubpipe_custom_report() - answer @origin (borrowed) for custom operation
 * @ops (borrowed) on @c as pubpipe_state() answers one the store ran:
 * @result (borrowed; NULL: none) is the operation's report, or a refusal
 * {"code","reason",...}; with no refusal, @offset and the delta record @rec
 * go into the answer. @ops' done() is called first. For the shared engine's
 * seat maps (core/cluster_seats.c), so both engines answer alike. */
void pubpipe_custom_report(chan_t *c, pub_ops_t *ops, const origin_t *origin, uint64_t offset,
                           const unsigned char *rec, size_t reclen, const json_t *result);

/* pubpipe_custom() - run @pc's custom operation on state channel @name
 * (opened here) for @origin (taken): one pub_ops_t of one HIST_OP_CUSTOM op,
 * through pubpipe_state(). What it publishes on other channels
 * (hist_tx_publish()) commits with it and is fanned out after its own
 * delta, in order; channels of namespaces without history get it fanned
 * out without being stored, numbered on the loop.
 * Return: 0 (the outcome comes through @origin), or PROTO_E_LIMIT
 * (limits.max_channels), PROTO_E_DISABLED (@pc->need_state), PROTO_E_INTERNAL
 * (out of memory), with @reason filled, @pc->custom freed and @origin cleared. */
int pubpipe_custom(const char *name, const pub_custom_t *pc, origin_t *origin, char *reason);

/* pubpipe_timers() - have @due called on the loop for each timer of the
 * store that is due (hist_timers_due(); seat hold expiries). The storage
 * thread looks every quarter second, and not again until the loop has taken
 * the last report, so an expiry queued meanwhile is not reported twice. */
void pubpipe_timers(void (*due)(int64_t at_ms, const char *chan, size_t chanlen, const char *key, size_t klen));

/* pubpipe_probe() - check that the store can commit, for GET
 * /api/health/ready: the storage thread runs a small write transaction and
 * the HTTP request @serial gets 200 or 503. Return: 0, -EIO (no store), -ENOMEM. */
int pubpipe_probe(uint64_t serial);

/* pubpipe_event() - queue the webhook event @ev (borrowed; a JSON object
 * with its "type") for the @n webhooks @hooks (names that live as long as
 * the configuration): the storage thread writes it to their queues in a
 * small transaction of its own (at-least-once from then on; docs/webhooks.md).
 * Return: 0 (also without a store: nothing is queued), or -ENOMEM. */
int pubpipe_event(const char *const *hooks, size_t n, const json_t *ev);

/* pubpipe_store() - the history store, for reads (any thread). */
hist_t *pubpipe_store(void);

#endif
