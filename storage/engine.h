/* storage/engine.h - the engine interface: where a channel's offsets, epoch
 * and history live when they are shared by several Herald nodes.
 *
 * Owns: the calls the loop-side glue (core/cluster.c) makes on a shared
 * engine, and what they report back. The embedded LMDB engine (hist.h,
 * driven by core/pubpipe.c) stays off this interface for now: its publish
 * path has no extra hop or copy. There is one shared engine, Redis
 * (engine_redis.c, presence in engine_presence.c, state channels in
 * engine_state.c, seat maps in engine_seats.c, the commerce adapter in
 * engine_shop.c, the support-tickets adapter in engine_tickets.c, the
 * operator views in engine_views.c; TLS to Redis in engine_tls.c).
 * DESIGN: the Redis engine keeps two connections on the broker's loop: one
 * for commands (a Lua script per publication and per read, by EVALSHA) and
 * one for pub/sub (SUBSCRIBE to the fan-out key of each channel that has
 * local subscribers). Each publication assigns the channel's next offset,
 * appends its record to the channel's stream under the id "<offset>-1" and
 * PUBLISHes "<offset>:<epoch>:<record>" in one script, so every node sees the
 * same offsets in the same order. A connection that fails is retried with
 * backoff; while the command connection is down, calls fail at once.
 * Loop thread only; every callback runs on the loop. */
#ifndef HERALD_ENGINE_H
#define HERALD_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "hist.h"

typedef struct engine engine_t;

/* Outcomes (positive) besides 0 and negative errno values. */
enum {
    ENGINE_E_REPLY_TO = 1,        /* engine_publish(): reply_to is beyond the channel's last offset */
    ENGINE_E_DUPLICATE,           /* engine_publish(): the idempotency key answered this request before */
    ENGINE_E_IDEM_MISMATCH,       /* engine_publish(): the idempotency key was used for another request */
    ENGINE_E_AUTHOR_GONE,         /* engine_publish(): the publication at reply_to is no longer kept */
    ENGINE_E_AUTHOR_OTHER,        /* engine_publish(): the publication at reply_to has another author */
    ENGINE_E_NO_LEASE,            /* engine_presence_conn(), engine_occupancy(): the node has no lease (taken for
                                     dead): nothing written */
    ENGINE_E_CONFLICT,            /* engine_state_ops(): a cas found another version: nothing applied */
    ENGINE_E_NOT_INTEGER,         /* engine_state_ops(): an incr found no integer, or would overflow */
};

struct engine_conf {
    const char *address;          /* HOST:PORT, [V6]:PORT or unix:PATH (already checked) */
    const char *password;         /* "" or NULL: no AUTH */
    unsigned database;
    const char *prefix;           /* before every key and pub/sub channel */
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms;
    int tls;                      /* TLS to Redis (engine_tls.c); needs HOST:PORT */
    const char *tls_ca;           /* "" or NULL: the system's CA store */
    const char *tls_cert;         /* client certificate and its key; "" or NULL: none */
    const char *tls_key;
    const char *tls_server_name;  /* "" or NULL: the address' host */
    int tls_verify;               /* 0: Redis' certificate is not checked (tests) */
};

/* What the engine tells its owner; every member is required. */
struct engine_events {
    void *ctx;
    /* The command connection came up (@up 1: scripts loaded) or went down (0). */
    void (*on_cmd)(void *ctx, int up);
    /* The subscription connection came up (@up 1: the owner subscribes
     * again to every channel it needs) or went down (0: every subscription
     * is gone with it). */
    void (*on_sub)(void *ctx, int up);
    /* SUBSCRIBE of @chan took effect: publications from now on arrive. */
    void (*on_subscribed)(void *ctx, const char *chan, size_t len);
    /* A publication of @chan arrived: @offset, @epoch (HIST_EPOCH_LEN
     * bytes, NUL-terminated), the record. All borrowed for the call. */
    void (*on_message)(void *ctx, const char *chan, size_t len, uint64_t offset, const char *epoch,
                       const unsigned char *rec, size_t reclen);
    /* A presence event of @chan arrived, in its order among the channel's
     * publications: @kind 'j' (join), 'l' (leave), 'u' (info update), the
     * channel's presence @seq after it and its member @count, the @client
     * id of the connection that caused it ("" for a leave the engine made
     * for a dead node) and the member's JSON. All borrowed for the call. */
    void (*on_presence)(void *ctx, const char *chan, size_t len, int kind, uint64_t seq, uint64_t count,
                        const char *client, size_t clientlen, const char *json, size_t jsonlen);
    /* A signal of @chan arrived (engine_signal() on some node, this one
     * included): its payload as that call gave it, unchecked (anyone who
     * can PUBLISH in Redis can put bytes there). Borrowed for the call. */
    void (*on_signal)(void *ctx, const char *chan, size_t len, const char *payload, size_t n);
};

/* engine_redis_start() - connect to Redis as @conf says (copied) on @loop;
 * connecting goes on in the background, so Redis may be down now.
 * Return: 0 and *@out; -ENOMEM, -EINVAL (a bad address, with @err). */
int engine_redis_start(uv_loop_t *loop, const struct engine_conf *conf, const struct engine_events *ev,
                       engine_t **out, char *err, size_t errlen);

/* engine_stop() - close both connections (pending calls get -ECANCELED) and
 * free @e once its handles are closed; with tls = on, the bridge too, so
 * every thread connecting to engine_thread_address() stops first. NULL is
 * a no-op. */
void engine_stop(engine_t *e);

/* engine_thread_address() - where a blocking hiredis connection of another
 * thread reaches this Redis (the webhook delivery threads,
 * engine_webhooks.c): [engine] address as configured, or with tls = on
 * "unix:" and a socket of the TLS bridge, which carries each connection
 * there over TLS of its own (engine_tls.c). Fixed from
 * engine_redis_start() until engine_stop(): copy it before starting the
 * threads, and stop them before engine_stop(). A connection there fails
 * like one to Redis (a disconnect) when Redis cannot be reached over TLS.
 * Loop thread. */
const char *engine_thread_address(const engine_t *e);

/* engine_up() - whether the command connection is up (publish, read). */
int engine_up(const engine_t *e);

/* engine_sub_up() - whether the subscription connection is up. */
int engine_sub_up(const engine_t *e);

/* The outcome of engine_publish(): @status 0 with the @offset assigned and
 * the channel's @epoch; ENGINE_E_REPLY_TO with @offset the channel's last;
 * ENGINE_E_DUPLICATE or ENGINE_E_IDEM_MISMATCH with @offset the one the
 * idempotency key made (nothing was published); ENGINE_E_AUTHOR_GONE or
 * ENGINE_E_AUTHOR_OTHER with @offset the reply_to the author check refused;
 * or -ENOTCONN / -ETIMEDOUT / -EIO / -ECANCELED (the publication may or may
 * not have been made: the connection went down while it was in flight). */
typedef void (*engine_pub_cb)(void *arg, int status, uint64_t offset, const char *epoch);

/* What engine_publish() keeps of a publication. */
struct engine_keep {
    unsigned size;                /* entries kept in the stream; 0: none (history off) */
    unsigned ttl_ms;              /* entries older than this go; 0: no age limit */
};

/* A publication's idempotency key: kept in the engine for @window_ms with
 * the offset it made and @digest, the request's (hist.h's HIST_IDEM_DIGEST
 * bytes), so a retry on any node is answered and not published again. */
struct engine_idem {
    const char *key;
    size_t len;                   /* 1..HIST_IDEM_MAX */
    const unsigned char *digest;
    int64_t window_ms;
};

/* What a publication asks besides its record. */
struct engine_pubopts {
    uint64_t reply_to;            /* refused (ENGINE_E_REPLY_TO) when beyond the last offset; 0: none */
    int check_author;             /* with reply_to: the publication there must have the record's author */
    const struct engine_idem *idem; /* the idempotency key, or NULL */
    const char *const *hooks;     /* the webhooks that get the publication (queued by the same script,
                                     docs/cluster.md#webhooks); at most WEBHOOKS_MAX */
    size_t nhooks;
};

/* The most webhooks one event goes to (config.h's WEBHOOK_MAX, which
 * storage/ does not include). */
#define WEBHOOKS_MAX 16

/* engine_publish() - publish record @rec (copied) on @chan: next offset,
 * append, trim by @keep, PUBLISH, all or nothing, as @o says. @ts is the
 * record's time (ms). @cb gets the outcome later, exactly once.
 * Return: 0; -ENOTCONN (the command connection is down; no callback);
 * -ENOMEM. */
int engine_publish(engine_t *e, const char *chan, size_t len, const unsigned char *rec, size_t reclen, int64_t ts,
                   const struct engine_keep *keep, const struct engine_pubopts *o, engine_pub_cb cb, void *arg);

/* A range of a channel's stream, as history.h pages it. */
struct engine_range {
    uint64_t after;               /* offsets > after */
    uint64_t upto;                /* ... <= upto; 0: up to the last */
    uint64_t before;              /* ... < before; 0: no bound */
    unsigned limit;               /* at most this many; 0: only the channel's position, and a
                                     channel without an epoch takes one now (a subscription's
                                     read: its subscribers learn the epoch publications keep) */
    int reverse;                  /* newest first */
};

/* The outcome of engine_read(): @status 0 and @res (the callee frees it
 * after the call; the callback may steal entries and buf by zeroing them):
 * res->chan.epoch ("" when never published), last_offset, first_offset
 * (the oldest kept; last_offset + 1 when none), found, entries. Else a
 * negative errno as for engine_pub_cb, with @res empty. */
typedef void (*engine_read_cb)(void *arg, int status, hist_result_t *res);

/* engine_read() - read @r of @chan's stream and its position, atomically.
 * Return: 0 (@cb comes later, once); -ENOTCONN (no callback); -ENOMEM. */
int engine_read(engine_t *e, const char *chan, size_t len, const struct engine_range *r, engine_read_cb cb,
                void *arg);

/* engine_subscribe() / engine_unsubscribe() - start or stop receiving the
 * publications of @chan on the subscription connection. Subscribing again
 * after the connection came back is the owner's job (on_sub).
 * Return: 0; -ENOTCONN (the subscription connection is down); -ENOMEM. */
int engine_subscribe(engine_t *e, const char *chan, size_t len);
int engine_unsubscribe(engine_t *e, const char *chan, size_t len);

/* @status 0 or a negative errno as for engine_pub_cb; @value: what the call
 * documents. */
typedef void (*engine_done_cb)(void *arg, int status, uint64_t value);

/* engine_signal() - announce @payload (@n bytes, copied) on @chan's
 * fan-out key as a signal: not stored, no offset; it reaches the nodes
 * subscribed to @chan now (on_signal), in its place among the channel's
 * publications. @cb (may be NULL) gets value the number of Redis
 * subscribers that got it, or a negative errno (the connection went: it
 * may or may not have been announced). Return: 0; -ENOTCONN (no
 * callback); -ENOMEM; -ENAMETOOLONG. */
/* engine_webhook_event() - queue event @json (@jlen bytes, a JSON object,
 * copied) of channel @chan for the @n webhooks @hooks (names, at most
 * WEBHOOKS_MAX), with time @now (ms), in one script (ENGINE_EVENT_LUA), for
 * events that are not a publication's (channel.occupied, presence). @cb
 * (may be NULL) gets value: the webhooks queued for. Return: 0; -ENOTCONN
 * (no callback); -EINVAL; -ENOMEM. */
int engine_webhook_event(engine_t *e, const char *const *hooks, size_t n, const char *chan, size_t len,
                         const char *json, size_t jlen, int64_t now, engine_done_cb cb, void *arg);

int engine_signal(engine_t *e, const char *chan, size_t len, const char *payload, size_t n, engine_done_cb cb,
                  void *arg);

/* ---- presence (docs/cluster.md#presence) ---- */

/* A member as presence stores it: @key ("u:<user>" or "c:<client id>"),
 * its JSON ({"user":..,"info":..} or {"client":..}) and the client id of
 * the connection acting for it (named in the event, so that connection's
 * node can leave it out as one node does). */
struct engine_member {
    const char *key;
    size_t keylen;
    const char *json;
    size_t jsonlen;
    const char *client;
    size_t clientlen;
    /* engine_presence_conn(): the webhooks that get presence.member_added and
     * presence.member_removed on this channel, names separated by '\n'
     * (NULL: none), queued by the presence scripts with the join or leave
     * (docs/cluster.md#webhooks). */
    const char *wh_added, *wh_removed;
};

enum engine_pres_mode {
    ENGINE_PRES_ADD,              /* the node's connections of the member change by @count (join if new) */
    ENGINE_PRES_SET,              /* the node has @count connections of the member (join if new): resync */
    ENGINE_PRES_DROP,             /* the member is no longer on the node (leave if on no other) */
};

/* engine_presence_conn() - record member @m of @chan on node @node as
 * @mode says; the join or leave it makes is announced on the channel's
 * fan-out key. @node must hold a lease (engine_presence_beat()), else
 * nothing is written. @cb (may be NULL) gets the outcome, value 0: 0,
 * ENGINE_E_NO_LEASE, or a negative errno. Return: 0; -ENOTCONN (no
 * callback); -ENOMEM; -ENAMETOOLONG. */
int engine_presence_conn(engine_t *e, const char *chan, size_t len, const char *node, const struct engine_member *m,
                         int mode, int64_t count, engine_done_cb cb, void *arg);

/* engine_presence_info() - replace the JSON of member @m of @chan and
 * announce it. @cb gets value the channel's presence seq after it, or 0
 * when @m is on no node. Return: as engine_presence_conn(). */
int engine_presence_info(engine_t *e, const char *chan, size_t len, const struct engine_member *m, engine_done_cb cb,
                         void *arg);

/* What engine_presence_read() found: the channel's presence seq, its
 * members and connections on every node, and up to the limit of members
 * (JSON and connections; borrowed for the callback). */
struct engine_presence {
    uint64_t seq, count, conns;
    size_t n;
    struct { const char *json; size_t len; uint64_t conns; } *members;
};
typedef void (*engine_presence_cb)(void *arg, int status, const struct engine_presence *p);

/* engine_presence_read() - @chan's members on every node, at most @limit
 * listed (0: all). Return: as engine_presence_conn(). */
int engine_presence_read(engine_t *e, const char *chan, size_t len, unsigned limit, engine_presence_cb cb, void *arg);

/* engine_occupancy() - node @node has local subscribers of @chan now
 * (@occupied 1) or no longer (0), in the cluster-wide occupancy the
 * webhooks' channel.occupied and channel.vacated report
 * (docs/cluster.md#webhooks): the first node in queues channel.occupied for
 * the webhooks @wh_occupied, the last node out channel.vacated for
 * @wh_vacated (names separated by '\n'; NULL or "": none), in the same
 * script. A dead node's channels are left by engine_presence_beat()'s
 * reaping. @node must hold a lease to be added (not to leave). @cb (may be
 * NULL) gets value 1 when an event was queued (else 0), status 0,
 * ENGINE_E_NO_LEASE (nothing written) or a negative errno. Return: 0;
 * -ENOTCONN (no callback); -ENOMEM; -ENAMETOOLONG. */
int engine_occupancy(engine_t *e, const char *chan, size_t len, const char *node, int occupied,
                     const char *wh_occupied, const char *wh_vacated, engine_done_cb cb, void *arg);

/* @known: whether @node still had a lease (0 on its first beat, or when
 * another node took it for dead and dropped its members). */
typedef void (*engine_beat_cb)(void *arg, int status, int known);

/* engine_presence_beat() - renew @node's lease for @lease_ms, drop the
 * members and the occupancy of @old_node (NULL: none; a former id of this
 * node) and of every node whose lease ended, announcing their leaves once
 * (and queueing channel.vacated for the channels no other node occupies).
 * Return: as engine_presence_conn(). */
int engine_presence_beat(engine_t *e, const char *node, unsigned lease_ms, const char *old_node, engine_beat_cb cb,
                         void *arg);

/* ---- state channels (docs/cluster.md#state-channels) ---- */

/* The outcome of engine_state_ops(), borrowed for the callback. */
struct engine_state_res {
    int status;                   /* 0, ENGINE_E_CONFLICT, ENGINE_E_NOT_INTEGER, or a negative errno as for
                                     engine_pub_cb (the ops may or may not have been applied) */
    uint64_t offset;              /* status 0: the delta's offset; when @unchanged, the channel's last */
    char epoch[HIST_EPOCH_LEN + 1]; /* status 0: the channel's epoch ("" when never published) */
    int unchanged;                /* status 0: the ops changed nothing, so nothing was published */
    const unsigned char *rec;     /* status 0: the delta's record, {"ts","data":{"changes":[..],"reset":b}} */
    size_t reclen;
    size_t failed_op;             /* ENGINE_E_CONFLICT / ENGINE_E_NOT_INTEGER: which op */
    uint64_t conflict_version;    /* ENGINE_E_CONFLICT: the key's version now (0: absent) */
};
typedef void (*engine_state_cb)(void *arg, const struct engine_state_res *res);

/* engine_state_ops() - apply state operations @ops (n of them, generic
 * ones only: set, incr, cas, delete, reset; copied) to @chan, all or none,
 * with the version rules of hist.c (a key's version rises by one per
 * change; a key new or created again takes the channel's floor + 1; a
 * deleted key's version and a reset's highest version raise the floor), and
 * publish the delta as the channel's next offset like engine_publish() with
 * @ts and @keep. Integers are exact up to 2^53 in Redis' Lua: an incr whose
 * operand, old value or result is beyond that is refused as
 * ENGINE_E_NOT_INTEGER. The delta's publication event is queued in the same
 * script for the @nhooks webhooks @hooks (names; NULL, 0: none). @cb gets
 * the outcome later, exactly once.
 * Return: 0; -ENOTCONN (no callback); -EINVAL (a custom op); -ENOMEM;
 * -ENAMETOOLONG. */
int engine_state_ops(engine_t *e, const char *chan, size_t len, const hist_state_op_t *ops, size_t n, int64_t ts,
                     const struct engine_keep *keep, const char *const *hooks, size_t nhooks, engine_state_cb cb,
                     void *arg);

/* The outcome of engine_state_read(): @status 0 and @st (the callee frees
 * it after the call; the callback may steal kv and buf by zeroing them),
 * filled as hist_state_read() fills it (st->chan: epoch and last_offset);
 * else a negative errno, @st empty. */
typedef void (*engine_state_read_cb)(void *arg, int status, hist_state_t *st);

/* engine_state_read() - @chan's state keys starting with @prefix that sort
 * (bytewise) after @after (alen 0: from the first), at most @limit (0:
 * all), with the channel's last offset and epoch, read atomically: the
 * snapshot is exactly the state after that offset.
 * Return: 0 (@cb later, once); -ENOTCONN (no callback); -ENOMEM;
 * -ENAMETOOLONG. */
int engine_state_read(engine_t *e, const char *chan, size_t len, const char *prefix, size_t plen, const char *after,
                      size_t alen, size_t limit, engine_state_read_cb cb, void *arg);

/* ---- seat maps (docs/cluster.md#seat-maps) ---- */

/* How engine_seats() and engine_seats_sweep() store what they publish: the
 * seat map's deltas (@map: its namespace's history), the notices on
 * user:{id} (@user: that namespace's; @notify 0: none, as when the user
 * namespace is a state one) and a booking's ticket on the organiser's feed
 * (@feed: the feed channel's namespace's; engine_seats() only). */
struct engine_seats_keep {
    struct engine_keep map, user, feed;
    int notify;
    const char *hooks;            /* {"booked":[names],"expired":[names]}: the webhooks that get seat.booked
                                     and seat.expired, queued by the same script (ENGINE_EVENT_LUA); NULL: none */
};

/* The outcome of engine_seats(), borrowed for the callback. */
struct engine_seats_res {
    int status;                   /* 0, or a negative errno as for engine_pub_cb (the request may or may not
                                     have been applied) */
    int refused;                  /* status 0: the seat rules refused it; nothing changed */
    int unchanged;                /* status 0: nothing changed, so nothing was published */
    uint64_t offset;              /* the delta's offset; when unchanged, the channel's last */
    char epoch[HIST_EPOCH_LEN + 1];
    const unsigned char *rec;     /* the delta's record, {"ts","data":{"changes":[..]}} (none when refused) */
    size_t reclen;
    const unsigned char *result;  /* MessagePack: seatmap_apply()'s report ("seats", "expires", "sections",
                                     "offers", "expired"...), or when refused {"code","reason", "seats" or
                                     "section"} */
    size_t resultlen;
};
typedef void (*engine_seats_cb)(void *arg, const struct engine_seats_res *res);

/* engine_seats() - run seat request @req (JSON, @len bytes: {"a": define |
 * add | hold | confirm | release | waitlist | waitlist_leave |
 * waitlist_position, "chan", "user", "seats", "ttl" (ms), "offer_ttl" (ms),
 * "waitlist_max", "cancel", "lenient", "section", "feed" (the organiser's
 * feed channel, [adapter seats] feed with {event} replaced; absent: none),
 * and for a release on disconnect "away": true and "node", see
 * engine_seats_conn()) as one script on the seat map's keys, with the rules
 * of storage/seatmap.c, all or none: the delta takes the channel's next
 * offset like engine_publish() (@k->map), and the ticket_issued,
 * seat_expired and seat_offer notices go out on user:{id} in the same
 * script, each as its channel's next offset; a booking's ticket_issued also
 * goes out on "feed" as its next offset (@k->feed), as on LMDB. Times
 * ("expires", "booked_at", the records' "ts") are Redis' clock.
 * @cb gets the outcome later, exactly once.
 * Return: 0; -ENOTCONN (no callback); -ENOMEM. */
int engine_seats(engine_t *e, const char *req, size_t len, const struct engine_seats_keep *k, engine_seats_cb cb,
                 void *arg);

/* engine_seats_sweep() - mark node @node alive for @alive_ms, then free the
 * holds of every seat map that have expired, at most @max, one delta each
 * (as a seat map request would, waitlist offers of @offer_ttl_ms included),
 * if @node holds or can take the sweep lease (renewed for @lease_ms). Holds
 * expire in the sorted set <prefix>sx:<channel>; <prefix>sxmaps indexes the
 * maps by their earliest expiry. @cb (may be NULL) gets value: the holds
 * freed. Return: 0; -ENOTCONN (no callback); -ENOMEM. */
int engine_seats_sweep(engine_t *e, const char *node, unsigned lease_ms, unsigned max, int64_t offer_ttl_ms,
                       unsigned alive_ms, const struct engine_seats_keep *k, engine_done_cb cb, void *arg);

/* engine_seats_conn() - count @delta (+1, -1) connections of @user on node
 * @node, for release on disconnect: a release request with "away" (the
 * user's last connection to node "node" closed) releases nothing while the
 * user has connections on another node that is alive (its sweep calls keep
 * it so); its report then says "elsewhere": true. @cb (may be NULL) gets
 * value: the count now. Return: 0; -ENOTCONN (no callback); -ENOMEM. */
int engine_seats_conn(engine_t *e, const char *node, const char *user, int delta, engine_done_cb cb, void *arg);

/* ---- the commerce adapter (docs/cluster.md#commerce) ---- */

/* How engine_shop() stores what it publishes: the stock channel's deltas
 * (@stock: its namespace's history), and the notifications on the order's
 * channel (@order: [adapter commerce] orders_namespace's), user:{owner}
 * (@user) and the admin channel (@admin); @notify_*: 0 when that namespace
 * is a state one, which takes only its own deltas (nothing is published
 * there, as on LMDB). */
struct engine_shop_keep {
    struct engine_keep stock, order, user, admin;
    int notify_order, notify_user, notify_admin;
};

#define ENGINE_SHOP_SIDES 4       /* notifications of one request, at most (shop.c makes 3) */

/* The outcome of engine_shop(), borrowed for the callback. */
struct engine_shop_res {
    int status;                   /* 0, or a negative errno as for engine_pub_cb (the request may or may not
                                     have been applied) */
    int refused;                  /* status 0: the shop rules refused it; nothing changed */
    int unchanged;                /* status 0: no stock changed, so no delta was published */
    uint64_t offset;              /* the delta's offset; when unchanged, the stock channel's last */
    char epoch[HIST_EPOCH_LEN + 1];
    const unsigned char *rec;     /* the delta's record, {"ts","data":{"changes":[..]}} (none when refused) */
    size_t reclen;
    const char *result;           /* JSON: shop_apply()'s report ("order", "from", "restored", "stock",
                                     "event", "duplicate"...), or when refused {"code","reason",...}; an
                                     empty list in it may come as {} (Redis' cjson) */
    size_t resultlen;
    size_t nsides;                /* the notifications published, in order: */
    struct { const char *chan; size_t len; uint64_t offset; } sides[ENGINE_SHOP_SIDES];
};
typedef void (*engine_shop_cb)(void *arg, const struct engine_shop_res *res);

/* engine_shop() - run commerce request @req (JSON, @len bytes: {"a": set |
 * adjust | create | move | get | pay, "chan" (the stock channel), "items"
 * ([[sku, n], ...] for set and adjust, in the request's order), "order",
 * "owner", "lines" (create), "status", "tracking" (move, pay), "event",
 * "event_type", "window" (ms; pay), "ons" (the orders namespace), "admin"
 * (the admin channel), "hc" and "hs" (the names of the webhooks that get
 * order.created and order.status; absent: none), "hp" ({"stock", "order",
 * "user", "admin": the names of the webhooks that get that channel's
 * publications}; absent: none)}) as one script, with the rules of
 * storage/shop.c, all or none: the stock delta takes the stock channel's
 * next offset like engine_publish() (@k->stock), and the notifications of a
 * create or a change of status go out on the order's channel, user:{owner}
 * and the admin channel in the same script, each as its channel's next
 * offset (an unmatched payment: the admin channel only), followed by its
 * order.* webhook event, queued as shop.c queues it. Times ("created",
 * "updated", "at", the records' "ts") are Redis' clock. @cb gets the outcome
 * later, exactly once. Return: 0; -ENOTCONN (no callback); -ENOMEM. */
int engine_shop(engine_t *e, const char *req, size_t len, const struct engine_shop_keep *k, engine_shop_cb cb,
                void *arg);

/* ---- the support-tickets adapter (docs/cluster.md#support-tickets) ---- */

/* How engine_tickets() stores what it publishes: the dashboard's deltas
 * (@board: its namespace's history) and the timeline entries (@timeline:
 * the timelines' namespace's; @notify 0: none, as when that namespace is a
 * state one). */
struct engine_tickets_keep {
    struct engine_keep board, timeline;
    int notify;
};

/* A timeline entry a ticket request published: its channel and offset. */
struct engine_side {
    const char *chan;
    size_t len;
    uint64_t offset;
};

/* The outcome of engine_tickets(), borrowed for the callback. */
struct engine_tickets_res {
    int status;                   /* 0, or a negative errno as for engine_pub_cb (the request may or may not
                                     have been applied) */
    int refused;                  /* status 0: the ticket rules refused it; nothing changed */
    int unchanged;                /* status 0: nothing changed (a read), so nothing was published */
    uint64_t offset;              /* the delta's offset; when unchanged, the channel's last */
    char epoch[HIST_EPOCH_LEN + 1];
    const unsigned char *rec;     /* the delta's record, {"ts","data":{"changes":[..]}} (none when refused) */
    size_t reclen;
    const unsigned char *result;  /* MessagePack: tickets_apply()'s report ("ticket", "from",
                                     "comment", "comments", "tickets"), or when refused
                                     {"code","reason",...} as tickets_db.h says */
    size_t resultlen;
    const struct engine_side *sides; /* the timeline entries published, in order (status 0, not refused) */
    size_t nsides;
};
typedef void (*engine_tickets_cb)(void *arg, const struct engine_tickets_res *res);

/* engine_tickets() - run ticket request @req (JSON, @reqlen bytes: {"a":
 * create | status | assign | comment | bulk_status | get, "id", "status",
 * "assignee" (absent: unassign), "by", "ticket" ({"id"?, "title",
 * "description", "priority", "requester"}), "comment" ({"author","text"}),
 * "ids", "tl" (the timelines' namespace), "next" (the status machine:
 * {"<status>": [the statuses it may move to], ...}, as tickets_next() says),
 * "hooks" (the names of the webhooks that get ticket.changed; absent: none),
 * "hp" ({"board", "tl": the names of the webhooks that get the dashboard's,
 * the timelines' publications}; absent: none)}, checked as app/tickets.c
 * checks it) on dashboard @chan as one script, with the rules of
 * storage/tickets_db.c, all or none: the delta takes the channel's next
 * offset like engine_publish() (@k->board), and each changed ticket's
 * timeline entry goes out on "{tl}:{id}" in the same script as that
 * channel's next offset (@k->timeline), followed by its ticket.changed
 * webhook event, queued as tickets_db.c queues it. Times ("created",
 * "updated", "at", the records' "ts") are Redis' clock. @cb gets the outcome
 * later, exactly once. Return: 0; -ENOTCONN (no callback); -ENOMEM. */
int engine_tickets(engine_t *e, const char *chan, size_t len, const char *req, size_t reqlen,
                   const struct engine_tickets_keep *k, engine_tickets_cb cb, void *arg);

/* ---- operator views (docs/cluster.md#operator-views) ---- */

/* One channel's figures as Redis holds them, across every node. */
struct engine_chanstat {
    const char *name;             /* borrowed for the callback; not NUL-terminated */
    size_t len;
    int known;                    /* the channel's meta hash exists (published or subscribed to once) */
    char epoch[HIST_EPOCH_LEN + 1]; /* "" when none drawn yet */
    uint64_t last_offset;
    uint64_t length, bytes;       /* entries in its stream, and Redis' estimate of their memory */
    uint64_t members;             /* presence members on every node */
    uint64_t subscribers;         /* the sum of the counts of the nodes with a live lease */
};

/* @status 0 and @n rows (borrowed for the call); @next the list's next
 * cursor (0: the end). Else a negative errno as for engine_pub_cb. */
typedef void (*engine_views_cb)(void *arg, int status, const struct engine_chanstat *rows, size_t n, uint64_t next);

/* engine_views_stat() - @chan's figures, its stream's only when @history.
 * Return: 0 (@cb later, once); -ENOTCONN (no callback); -ENOMEM;
 * -ENAMETOOLONG. */
int engine_views_stat(engine_t *e, const char *chan, size_t len, int history, engine_views_cb cb, void *arg);

/* engine_views_list() - the channels whose meta hash Redis holds and whose
 * name starts with @prefix, from @cursor (0: the start; else a @next this
 * call gave), at most @limit, each with its figures. A page may be short,
 * even empty, and still have a @next: it looks at a bounded number of keys.
 * Return: as engine_views_stat(). */
int engine_views_list(engine_t *e, const char *prefix, uint64_t cursor, unsigned limit, engine_views_cb cb,
                      void *arg);

/* engine_views_subs() - record that node @node has @count local
 * subscribers of @chan (0 deletes its field). @node must hold a lease
 * renewed earlier on the command connection (engine_presence_beat()). No
 * callback: a lost write is made again under the node's next id.
 * Return: 0; -ENOTCONN; -ENOMEM; -ENAMETOOLONG. */
int engine_views_subs(engine_t *e, const char *chan, size_t len, const char *node, uint32_t count);

#endif
