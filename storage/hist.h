/* storage/hist.h - durable per-channel publication logs in LMDB.
 *
 * Owns: the LMDB environment under <data_dir>/history and everything in it:
 *   "meta"  format version and the next channel id;
 *   "chans" channel name -> chan record (id, last offset, first stored offset, epoch);
 *   "log"   (channel id, offset), both big-endian so keys sort -> entry;
 *   "state" (channel id, key) -> version and value, for state channels;
 *   "aux"   (channel id, key) -> value: rows a state channel's custom
 *           operations keep beside its state but never publish (a waitlist);
 *           and under the bare channel id (no key) the channel's version
 *           floor: the highest version any deleted key had, so that a key
 *           created again starts above it and a key's versions never repeat
 *           within the channel's epoch (no ABA for cas);
 *   "timers" (due ms, channel id, key) -> channel name: when a custom
 *           operation asked to be run again (a seat hold's expiry);
 *   "idem"  (channel id, idempotency key) -> (ts, offset[, digest]): the
 *           publication a client's idempotency key made, so a retry is
 *           answered with it, and the digest of the request that made it
 *           (HIST_IDEM_DIGEST bytes), so a different request reusing the key
 *           is told apart; records written before the digest existed hold
 *           16 bytes and match any request;
 *   "idem_age" (ts, channel id, key) -> nothing: the same keys by age, for
 *           hist_idem_prune();
 *   "wh_out" (webhook name, NUL, event id) -> event: each webhook's queue of
 *           events still to deliver (storage/outbox.c, docs/webhooks.md);
 *   "wh_dead" the same key -> why, then the event: its dead letters.
 * An entry is 8 bytes of big-endian ts (ms since the epoch) followed by the
 * publication's record: a MessagePack map of its fields ({"ts":..,"data":..}
 * and whatever later features attach), stored in one encoding so replay
 * copies it instead of re-encoding it (protocol/record.h).
 *
 * Threads: hist_write_batch(), hist_prune() and hist_sync() belong to one
 * storage thread (LMDB allows one writer). hist_read(), hist_info() and
 * hist_load() may run on any thread at the same time (the env is opened with
 * MDB_NOTLS). Growing the map needs no transaction open in the process, so
 * every transaction runs under a read lock and the resize under the write lock.
 * Nothing here is called on the event loop except hist_open()/hist_close()
 * and hist_load() at start. MDB_val pointers never leave this file: what is
 * returned is copied. */
#ifndef HERALD_HIST_H
#define HERALD_HIST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_FORMAT_VERSION 1
#define HIST_EPOCH_LEN 16

/* Outcomes callers handle (positive); failures are negative errno values. */
enum {
    HIST_E_FULL = 1,              /* the map is at history.map_size_max */
    HIST_E_CONFLICT,              /* a state cas found another version */
    HIST_E_NOT_INTEGER,           /* a state incr found a value that is not an integer, or overflowed */
    HIST_E_REFUSED,               /* a custom operation refused; hist_write_t.result says why */
    HIST_E_CHECK,                 /* hist_write_t.check refused the write; check_result says why */
};

/* The most bytes of an idempotency key. */
#define HIST_IDEM_MAX 64
/* The bytes of the request digest kept with an idempotency key (SHA-256). */
#define HIST_IDEM_DIGEST 32

/* One operation on a channel's keyed state (state channels). */
enum hist_op_type { HIST_OP_SET = 1, HIST_OP_INCR, HIST_OP_CAS, HIST_OP_DELETE, HIST_OP_RESET, HIST_OP_CUSTOM };

/* A custom operation: domain rules (seat maps) that read and change a state
 * channel inside its write transaction, through the hist_tx_*() calls below.
 * It returns 0, HIST_E_REFUSED (after hist_tx_result() with the reason), or
 * the failing hist_tx_*() call's code. It runs on the storage thread. */
typedef struct hist_tx hist_tx_t;
typedef int (*hist_custom_fn)(hist_tx_t *tx, const void *arg);

typedef struct hist_state_op {
    enum hist_op_type type;
    const char *key;              /* UTF-8, 1..HIST_KEY_MAX bytes; unused by RESET */
    size_t keylen;
    const unsigned char *val;     /* SET, CAS: the new value as MessagePack */
    size_t vallen;
    int64_t by;                   /* INCR */
    uint64_t version;             /* CAS: the version the key must have (0: absent) */
    hist_custom_fn custom;        /* CUSTOM: the operation, and its argument */
    const void *arg;
} hist_state_op_t;

#define HIST_KEY_MAX 256

/* The most webhooks one channel's publication event goes to (config WEBHOOK_MAX fits). */
#define HIST_HOOKS_MAX 16

/* How the store treats a channel a custom operation publishes to
 * (hist_tx_publish()), as the target policy (hist_write_t.target) says. */
typedef struct hist_target {
    int refused;                  /* nonzero: custom operations may not publish there (EINVAL) */
    int history;                  /* 0: its namespace keeps no history: nothing is stored, the loop numbers it */
    uint32_t keep;                /* with history: entries to keep (0: no bound) */
    uint64_t base_offset;         /* if the channel is not stored: its last offset so far (as hist_write_t's) */
    char epoch[HIST_EPOCH_LEN + 1]; /* ... and its epoch; "": a new one */
    size_t nhooks;                /* webhooks that get a "publication" event for it (stored ones only) */
    const char *hooks[HIST_HOOKS_MAX]; /* their names, living as long as the policy's owner says */
} hist_target_t;
typedef void (*hist_target_fn)(const char *chan, size_t len, hist_target_t *out);

/* A publication a custom operation made on another channel, handed back
 * with its write (hist_write_t.side) in the order it was made. */
typedef struct hist_side {
    struct hist_side *next;
    uint64_t offset;              /* the offset assigned; 0 when its namespace keeps no history */
    int64_t ts;
    void *user;                   /* the caller's, untouched by the store */
    char epoch[HIST_EPOCH_LEN + 1]; /* with an offset: the stored log's epoch */
    const unsigned char *rec;     /* the record (MessagePack map), in this allocation */
    size_t reclen;
    size_t chanlen;
    char chan[];                  /* NUL-terminated, then the record */
} hist_side_t;

/* hist_sides_free() - free a list of side publications; NULL is a no-op. */
void hist_sides_free(hist_side_t *s);

typedef struct hist hist_t;

struct hist_opts {
    const char *dir;              /* the data directory; the env lives in dir/history */
    size_t map_size;              /* initial map size */
    size_t map_size_max;          /* the map never grows past this */
    int nosync;                   /* durability = interval: commits do not fsync */
};

/* A channel's log as stored. */
typedef struct hist_chan {
    uint64_t last_offset;         /* last offset assigned */
    uint64_t first_offset;        /* oldest offset still stored; > last_offset when none is */
    int64_t last_ts;              /* ts of the last publication */
    char epoch[HIST_EPOCH_LEN + 1];
} hist_chan_t;

/* One publication to append. The caller fills the inputs; hist_write_batch()
 * fills the outputs. */
typedef struct hist_write {
    const char *chan;             /* [in] channel name (valid) */
    size_t chanlen;
    const unsigned char *rec;     /* [in] record (MessagePack map) */
    size_t reclen;
    int64_t ts;                   /* [in] */
    uint32_t keep;                /* [in] entries to keep in this channel (history_size) */
    uint64_t base_offset;         /* [in] if the channel is not stored yet: its last offset so far */
    const char *epoch;            /* [in] if the channel is not stored yet: its epoch */
    const hist_state_op_t *ops;   /* [in] state operations, applied all or none; then the
                                     record is built here: {"ts","data":{"changes":[..],"reset":b}} */
    size_t nops;
    const char *idem_key;         /* [in] a client's idempotency key (1..HIST_IDEM_MAX bytes), or NULL: if the
                                     channel has a publication made with it at most idem_window_ms before ts,
                                     nothing is appended and duplicate is set; else the key is remembered */
    size_t idem_len;
    int64_t idem_window_ms;       /* [in] with idem_key */
    const unsigned char *idem_digest; /* [in] with idem_key: HIST_IDEM_DIGEST bytes naming the request (the
                                     caller's digest of what it publishes), kept with the key; or NULL:
                                     nothing kept, and any request matches */
    hist_target_fn target;        /* [in] with a custom op that publishes elsewhere (hist_tx_publish()):
                                     how each target channel is stored; NULL: stored, no keep bound, no hooks */
    const char *const *hooks;     /* [in] webhooks (names) that get a "publication" event for this
                                     publication, queued in the same transaction (hist_outbox_*) */
    size_t nhooks;
    uint64_t check_offset;        /* [in] nonzero: before appending, check() is called with the record at this
                                     offset of the channel (NULL, 0 when it is not stored); a nonzero return
                                     refuses the write (status HIST_E_CHECK, check_result = the return) */
    int (*check)(const unsigned char *rec, size_t len, const unsigned char *target, size_t tlen);
    int check_result;             /* [out] with HIST_E_CHECK */
    int duplicate;                /* [out] with idem_key and status 0: the key was seen; offset is the
                                     publication it made then (which may no longer be stored) */
    int idem_differs;             /* [out] with duplicate: the key was seen with another idem_digest (both
                                     known), so this is not a retry but a reuse; nothing was appended */
    int status;                   /* [out] 0, HIST_E_FULL, HIST_E_CONFLICT, HIST_E_NOT_INTEGER, HIST_E_REFUSED,
                                     HIST_E_CHECK or -errno */
    size_t failed_op;             /* [out] with HIST_E_CONFLICT / HIST_E_NOT_INTEGER: which op */
    uint64_t conflict_version;    /* [out] with HIST_E_CONFLICT: the key's version now (0: absent) */
    json_t *result;               /* [out] what a custom op reported (hist_tx_result()), on success or
                                     with HIST_E_REFUSED; the caller owns the reference */
    unsigned char *state_rec;     /* [out] with ops and status 0: the record written (malloc'd;
                                     the caller frees it), MessagePack */
    size_t state_reclen;
    int unchanged;                /* [out] with ops and status 0: they changed nothing, so nothing was
                                     appended; offset is the channel's last (0: none yet) */
    hist_side_t *side;            /* [out] with status 0: what custom ops published on other channels, in
                                     order, committed with this write (also when it is unchanged); the
                                     caller frees it with hist_sides_free() */
    uint64_t offset;              /* [out] the offset assigned, when status is 0 */
    char stored_epoch[HIST_EPOCH_LEN + 1]; /* [out] the stored log's epoch, when status is 0 */
} hist_write_t;

/* A stored publication, as returned by hist_read(). */
typedef struct hist_entry {
    uint64_t offset;
    int64_t ts;
    const unsigned char *rec;     /* points into the hist_result's buffer */
    size_t len;
} hist_entry_t;

typedef struct hist_result {
    hist_chan_t chan;             /* the channel at the time of the read */
    int found;                    /* 0: the channel has no stored log */
    hist_entry_t *entries;
    size_t n;
    unsigned char *buf;           /* owns the records */
} hist_result_t;

/* Retention of one channel, asked for by hist_prune(). */
struct hist_policy {
    uint32_t keep;                /* entries; 0 = the channel's namespace has no history */
    uint64_t ttl_ms;              /* entries older than this go */
};
typedef void (*hist_policy_fn)(void *ctx, const char *chan, size_t len, struct hist_policy *out);

/* hist_open() - open or create the environment under @o->dir/history.
 * @err: [out] on failure, a message for the operator.
 * Return: 0 and *@out, or -1: unreadable, not Herald's (no format record), a
 * format version this build does not read, or an LMDB error. */
int hist_open(hist_t **out, const struct hist_opts *o, char *err, size_t errlen);

/* hist_close() - close the environment; no other call may be running. */
void hist_close(hist_t *h);

/* hist_load() - call @fn once per stored channel (at start, to rebuild the
 * in-memory registry). @fn returns 0 to go on, nonzero to stop with that value.
 * Return: 0, @fn's nonzero value, or -EIO. */
int hist_load(hist_t *h, int (*fn)(void *ctx, const char *name, size_t len, const hist_chan_t *c), void *ctx);

/* hist_write_batch() - append @n publications in one transaction: each gets
 * the next offset of its channel, and the oldest entries beyond each item's
 * @keep are deleted. An item refused by its own conditions (state ops, its
 * check) or answered by its idempotency key appends nothing; the others go on. Grows the map on MDB_MAP_FULL up to map_size_max.
 * All items succeed or all fail with the same status.
 * Return: 0, HIST_E_FULL, or -errno (-EIO, -ENOSPC, -ENOMEM). Storage thread. */
int hist_write_batch(hist_t *h, hist_write_t *w, size_t n);

/* hist_read() - entries of channel @name with offsets in (@after, @upto]
 * (@upto 0 = no bound), at most @limit of them: the oldest first, or with
 * @reverse the newest first.
 * @res: [out] free with hist_result_free(); filled on success.
 * Return: 0, or -errno. Any thread. */
int hist_read(hist_t *h, const char *name, size_t len, uint64_t after, uint64_t upto, size_t limit,
              int reverse, hist_result_t *res);
void hist_result_free(hist_result_t *res);

/* hist_prune() - delete expired entries (by @policy's ttl and keep), visiting
 * channels in name order from where the last call stopped, doing at most
 * @budget deletions. A channel whose log is empty and whose last publication
 * is older than its ttl is forgotten; @gone (may be NULL) is called with its
 * name so the caller can drop it too.
 * Return: deletions done (>= 0), or -errno. Storage thread. */
int hist_prune(hist_t *h, int64_t now_ms, unsigned budget, hist_policy_fn policy, void *pctx,
               void (*gone)(void *ctx, const char *name, size_t len), void *gctx);

/* A key of a channel's state, as returned by hist_state_read(). */
typedef struct hist_kv {
    const char *key;              /* point into the result's buffer */
    size_t keylen;
    uint64_t version;
    const unsigned char *val;     /* MessagePack */
    size_t vallen;
} hist_kv_t;

typedef struct hist_state {
    hist_chan_t chan;             /* the channel's log at the snapshot */
    int found;
    hist_kv_t *kv;
    size_t n;
    int more;                     /* keys remain after the last one returned */
    unsigned char *buf;
} hist_state_t;

/* hist_state_read() - a consistent snapshot of channel @name's state: the
 * keys starting with @prefix that sort after @after (NULL: from the first),
 * at most @limit (0: all), with the channel's last offset at that moment.
 * Return: 0, or -errno. Any thread. */
int hist_state_read(hist_t *h, const char *name, size_t len, const char *prefix, size_t plen,
                    const char *after, size_t alen, size_t limit, hist_state_t *out);
void hist_state_free(hist_state_t *s);

/* ---- custom operations: calls valid only inside a hist_custom_fn ----
 * They return 0 or a storage error code, which the operation must return
 * unchanged (a full map is grown and the whole batch retried). Values are
 * JSON (jansson); the store keeps them as MessagePack. */

/* hist_tx_get() - the state key @key: *@val (a new reference) and *@version,
 * or *@val NULL when the key is absent. */
int hist_tx_get(hist_tx_t *tx, const char *key, size_t klen, json_t **val, uint64_t *version);
/* hist_tx_put() - set @key to @val (its version + 1, or, when absent, the
 * channel's version floor + 1); part of the delta. */
int hist_tx_put(hist_tx_t *tx, const char *key, size_t klen, const json_t *val);
/* hist_tx_del() - delete @key (absent: nothing); part of the delta. */
int hist_tx_del(hist_tx_t *tx, const char *key, size_t klen);
/* hist_tx_scan() - call @fn for each state key starting with @prefix, in key
 * order, with its value (borrowed); @fn returns 0 to go on, or a code that
 * stops the scan and is returned. @fn must not change the state. */
int hist_tx_scan(hist_tx_t *tx, const char *prefix, size_t plen,
                 int (*fn)(void *ctx, const char *key, size_t klen, json_t *val), void *ctx);
/* hist_tx_aux_get(), _put(), _del() - the channel's unpublished rows. */
int hist_tx_aux_get(hist_tx_t *tx, const char *key, size_t klen, json_t **val);
int hist_tx_aux_put(hist_tx_t *tx, const char *key, size_t klen, const json_t *val);
int hist_tx_aux_del(hist_tx_t *tx, const char *key, size_t klen);
/* hist_tx_timer_set(), _del() - remember that the channel's @key is due at
 * @at_ms (see hist_timers_due()), or forget it. */
int hist_tx_timer_set(hist_tx_t *tx, int64_t at_ms, const char *key, size_t klen);
int hist_tx_timer_del(hist_tx_t *tx, int64_t at_ms, const char *key, size_t klen);
/* hist_tx_now() - the write's timestamp (ms since the epoch). */
int64_t hist_tx_now(const hist_tx_t *tx);
/* hist_tx_result() - hand @res (taken) to the caller as hist_write_t.result. */
void hist_tx_result(hist_tx_t *tx, json_t *res);
/* hist_tx_refuse() - report a refusal: @details (taken; NULL: a new object)
 * gains "code" and "reason" and becomes the result. For a custom operation
 * to `return hist_tx_refuse(...)`. Return: HIST_E_REFUSED. */
int hist_tx_refuse(hist_tx_t *tx, int code, const char *reason, json_t *details);
/* hist_tx_take_result() - take back what hist_tx_result() was last handed
 * (the caller owns it; NULL if nothing), so an operation built from others
 * can extend their report. */
json_t *hist_tx_take_result(hist_tx_t *tx);

/* hist_tx_publish() - append the publication @rec (@reclen bytes of a
 * record, a MessagePack map as rec_build() makes) to channel @chan (@len
 * bytes; a valid name, not the operation's own channel) in this transaction:
 * it takes the channel's next offset (a channel not stored yet starts a log
 * after the policy's base_offset, under its epoch or a new one), the oldest entries beyond the target policy's
 * keep go, and the policy's webhooks get a "publication" event with it. A
 * channel whose namespace keeps no history (the policy says so) stores
 * nothing: the publication is handed back for the loop to number and fan
 * out. If the operation refuses or fails, none of it happened.
 * @offset: [out] the offset assigned, 0 for a channel without history; may be NULL.
 * Return: 0, EINVAL (the own channel, one the policy refuses, or a name of 0
 * or > 255 bytes), or a storage code. */
int hist_tx_publish(hist_tx_t *tx, const char *chan, size_t len, const unsigned char *rec, size_t reclen,
                    uint64_t *offset);
/* hist_tx_event() - queue the webhook event @ev (a JSON object with its
 * "type"; borrowed) for the @n webhooks @hooks in this transaction: it is
 * delivered if and only if the operation commits. Return: 0, EINVAL (not
 * an object), ENOMEM, or a storage code. */
int hist_tx_event(hist_tx_t *tx, const char *const *hooks, size_t n, const json_t *ev);
/* hist_tx_chan() - the operation's own channel (its name, *@len bytes). */
const char *hist_tx_chan(const hist_tx_t *tx, size_t *len);

/* hist_timers_due() - call @fn for the timers due at or before @now_ms,
 * oldest first, at most @max of them; *@next_ms is then the time of the
 * first one not reported (0: none). A timer stays until an operation
 * deletes it. Return: 0, or -errno. Any thread. */
int hist_timers_due(hist_t *h, int64_t now_ms, size_t max,
                    void (*fn)(void *ctx, int64_t at_ms, const char *chan, size_t chanlen, const char *key, size_t klen),
                    void *ctx, int64_t *next_ms);

/* hist_idem_prune() - forget idempotency keys remembered before @before_ms,
 * oldest first, at most @budget of them.
 * Return: keys forgotten (>= 0), or -errno. Storage thread. */
int hist_idem_prune(hist_t *h, int64_t before_ms, unsigned budget);

/* ---- webhook queues (storage/outbox.c) ----
 * Each webhook has a queue of events in delivery order, keyed by an id that
 * one counter (meta "next_ev") hands out across all webhooks: an event's id
 * never changes, so a receiver can de-duplicate on it. The queue calls open
 * their own transactions and may run on any thread: LMDB lets one writer in
 * at a time, so a delivery thread's small writes wait for (or hold up, for
 * one small commit) the storage thread's batch. */
enum hist_ob_kind { HIST_OB_PUBLICATION = 'P', HIST_OB_EVENT = 'E' };

/* An event as read back from a queue. */
typedef struct hist_ob_item {
    uint64_t id;
    int64_t ts;                   /* when it was queued, ms since the epoch */
    json_t *event;                /* {"id","type","ts",...}: the caller owns it */
    unsigned attempts;            /* failed posts so far (persisted: survives a restart) */
    int64_t first_attempt, last_attempt;  /* of those posts, ms since the epoch; 0: none */
    char chan[256];               /* the channel it is ordered with ("" none): its
                                   * publication's, else its JSON "channel" */
    size_t chanlen;
    char error[256];              /* dead letters: why it was given up (the last error) */
} hist_ob_item_t;

/* hist_outbox_add() - queue the event @json (@len bytes of a JSON object
 * with its "type") at @ts for each of the @n webhooks @hooks, in one
 * transaction of its own. Return: 0, HIST_E_FULL, -EINVAL (not a JSON
 * object), -errno. Storage thread. */
int hist_outbox_add(hist_t *h, const char *const *hooks, size_t n, int64_t ts, const char *json, size_t len);

/* hist_outbox_read() - up to @max events of webhook @hook's queue (@dead 0)
 * or dead letters (@dead 1) with ids above @after, oldest first.
 * @out: [out] an array the caller frees with hist_ob_items_free(); *@nout its length.
 * Return: 0, -ENOMEM, -EIO. Any thread. */
int hist_outbox_read(hist_t *h, const char *hook, int dead, uint64_t after, size_t max, hist_ob_item_t **out,
                     size_t *nout);
void hist_ob_items_free(hist_ob_item_t *items, size_t n);
/* hist_ob_item_fill() - fill @it as the queue readers do from an event
 * kept elsewhere (the redis engine's queues, storage/engine_webhooks.c): @kind
 * an enum hist_ob_kind, @body (@len bytes) a publication's record
 * (MessagePack) or another event's JSON; @it->event is a new reference. */
void hist_ob_item_fill(hist_ob_item_t *it, uint64_t id, int64_t ts, int kind, uint64_t offset, const char *chan,
                       size_t chanlen, const void *body, size_t len, unsigned attempts, int64_t first_ms,
                       int64_t last_ms);

/* hist_outbox_pick() - the events of @hook's queue with ids above @after
 * that @want takes, oldest first: @want sees each queued event's channel
 * (@chan, @chanlen bytes, the one hist_ob_item_t.chan holds) and persisted
 * attempts and answers 1 take, 0 skip or -1 stop. Stops after @max taken or
 * @scan_max looked at. @want runs inside a read transaction: it must not
 * call the store.
 * @out: [out] as hist_outbox_read(). @last_seen: [out] the highest id looked
 * at (@after when none). Return: 0, -ENOMEM, -EIO. Any thread. */
int hist_outbox_pick(hist_t *h, const char *hook, uint64_t after, size_t scan_max, size_t max,
                     int (*want)(void *ctx, const char *chan, size_t chanlen, unsigned attempts), void *ctx,
                     hist_ob_item_t **out, size_t *nout, uint64_t *last_seen);

/* hist_outbox_tried() - count one more failed post, at @now_ms, for each of
 * the @n queued events @ids of @hook (persisted with the event: a restart
 * keeps it). @attempts: [out] @n counts, each event's attempts so far (0 for
 * one no longer queued). Return: 0, HIST_E_FULL, -ENOMEM, -errno. Any thread. */
int hist_outbox_tried(hist_t *h, const char *hook, const uint64_t *ids, size_t n, int64_t now_ms,
                      unsigned *attempts);

/* hist_outbox_ack() - forget the @n events @ids of @hook's queue (delivered). */
int hist_outbox_ack(hist_t *h, const char *hook, const uint64_t *ids, size_t n);
/* hist_outbox_bury() - move the @n events @ids from @hook's queue to its
 * dead letters, saying @why. Return: 0, HIST_E_FULL, -errno. Any thread. */
int hist_outbox_bury(hist_t *h, const char *hook, const uint64_t *ids, size_t n, const char *why);
/* hist_outbox_revive() - move dead letter @id (0: all of them, up to 100000)
 * back into @hook's queue, under its id, so it is delivered in id order,
 * with its attempts reset to 0.
 * Return: how many moved (>= 0; 0 when @id is not a dead letter), -ENOSPC
 * (the map is at history.map_size_max), or -errno. Any thread. */
int hist_outbox_revive(hist_t *h, const char *hook, uint64_t id);
/* hist_outbox_drop() - delete dead letter @id (0: all, up to 100000).
 * Return: how many (>= 0), or -errno. Any thread. */
int hist_outbox_drop(hist_t *h, const char *hook, uint64_t id);
/* hist_outbox_depth() - how many events @hook's queue (@dead 0) or dead
 * letters (@dead 1) hold, and when the oldest was queued (0: none).
 * Return: 0, -errno. Any thread. */
int hist_outbox_depth(hist_t *h, const char *hook, int dead, uint64_t *n, int64_t *oldest_ts);

/* hist_sync() - flush committed transactions to disk (durability = interval). */
int hist_sync(hist_t *h);

/* hist_usage() - the map's size, the bytes in use and the entries stored in
 * all logs. Any thread; reads only LMDB's meta pages. */
void hist_usage(hist_t *h, size_t *map_size, size_t *used, uint64_t *entries);

/* hist_probe() - a small write transaction (the readiness check): proves
 * the store can still commit. Return: 0, HIST_E_FULL or -errno. Storage thread. */
int hist_probe(hist_t *h, int64_t now_ms);

/* hist_stat() - how many entries channel @name's log holds and their bytes.
 * Return: 0 (zeros for a channel without a log), or -errno. Any thread. */
int hist_stat(hist_t *h, const char *name, size_t len, uint64_t *entries, uint64_t *bytes);

/* hist_backup() - write a consistent, compacted copy of the environment at
 * @src_dir (a data directory, possibly in use by a running broker) into the
 * empty or new directory @dest_dir, as a data directory a broker can start on.
 * Return: 0, or -1 with @err filled. */
int hist_backup(const char *src_dir, const char *dest_dir, char *err, size_t errlen);

#endif
