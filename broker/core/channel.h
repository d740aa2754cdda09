/* broker/core/channel.h - the channel registry, subscriptions and fan-out.
 *
 * Owns: chan_t and sub_t. Channels are found by name in O(1) (srv.channels);
 * a subscription is found by (session, channel) in O(1) (srv.subs). Each
 * channel keeps its subscribers' sessions in a dense array that the fan-out
 * loop walks; removal swaps the last entry into the hole, so subscribe and
 * unsubscribe are O(1) too. A channel stays registered while it has
 * subscribers or has ever been published to (its offsets must keep growing);
 * one that has neither is freed at once.
 * Publishing encodes the message once per encoding that the channel's
 * subscribers use and queues a reference to the same frame on each of them:
 * no allocation and no encoding per subscriber.
 * A subscriber of a state channel may see only part of its state (a filter:
 * one section of a seat map). Subscribers with equal filters share one
 * chan_filter_t, so a delta is filtered and encoded once per (filter,
 * encoding), never per subscriber; a delta with nothing for a filter is not
 * sent to its subscribers at all.
 * Loop thread only. */
#ifndef HERALD_CHANNEL_H
#define HERALD_CHANNEL_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "hist.h"
#include "msg.h"
#include "net/session.h"

/* Whether the change of state key @key (@klen bytes) to @value (NULL: the
 * key was deleted) belongs to the part of the state that filter @arg selects.
 * It must be a pure function: snapshots call it on a worker thread too. */
typedef int (*chan_match_fn)(const char *arg, const char *key, size_t klen, const json_t *value);

#define CHAN_FILTER_ARG_MAX 64

/* One filter and the subscribers of a channel that use it. */
typedef struct chan_filter {
    chan_match_fn match;
    char arg[CHAN_FILTER_ARG_MAX + 1];
    uint32_t refs;                /* subscriptions using it */
    uint32_t idx;                 /* its place in chan.filters */
    uint32_t nenc[PROTO_NENC];    /* ... per encoding */
} chan_filter_t;

typedef struct chan {
    uint64_t last_offset;         /* last offset fanned out; 0 = never published */
    sess_t **members;             /* dense: the fan-out loop reads only this */
    struct sub **subs;            /* parallel to members, for O(1) removal */
    uint32_t nsubs, cap;
    uint32_t nenc[PROTO_NENC];    /* subscribers per encoding */
    uint32_t nreplaying;          /* subscribers still waiting for their history read */
    uint32_t nskipping;           /* subscribers with skip_upto ahead of last_offset */
    uint32_t inflight;            /* holds: publications and reads in flight, an op being handled */
    chan_filter_t **filters;      /* the distinct filters of its subscribers */
    uint32_t nfilters, nfiltered; /* ... and the subscriptions that have one */
    const ns_config_t *ns;        /* its namespace's options */
    struct presence *pres;        /* members, when the namespace has presence */
    struct cl_chan *cl;           /* with a shared engine: its state there (core/cluster.c), or NULL */
    uint32_t views_told;          /* with a shared engine: nsubs as last written there (core/cluster_views.c) */
    uint8_t stored;               /* has a log in the history store */
    uint32_t rate_sec;            /* publications counted in second rate_sec_at ... */
    uint32_t rate_prev;           /* ... and in the second before it */
    uint64_t rate_sec_at;
    char epoch[HIST_EPOCH_LEN + 1];
    uint16_t namelen;
    char name[];                  /* NUL-terminated */
} chan_t;

typedef struct sub {
    const void *key[2];           /* {sess, chan}: the srv.subs key */
    chan_t *chan;
    sess_t *sess;
    uint32_t chan_idx;            /* index in chan->members */
    uint32_t sess_idx;            /* index in sess->subs */
    /* While its history read is in flight, live publications wait here so
     * that they follow the replay in order, with no gap and no duplicate. */
    uint8_t replaying;
    uint8_t granted;              /* subscribed with a grant (it covers publish = granted) */
    uint8_t stale;                /* state channel: deltas dropped while its reader lagged */
    chan_filter_t *filter;        /* state channel: only this part of the state, or NULL */
    uint64_t skip_upto;           /* deliver nothing up to this offset (a snapshot covered it) */
    frame_t **held;
    uint32_t nheld, heldcap;
} sub_t;

/* What core tells whoever watches its channels (the outbound webhooks,
 * wired by main.c); so core/ never calls up into the modules that listen.
 * Set before the storage thread starts; each member may be NULL. */
struct chan_events {
    /* Loop thread: @c got its first subscriber (@occupied 1) or lost its last (0). */
    void (*on_occupancy)(chan_t *c, int occupied);
    /* Loop thread: presence member @user (@len bytes) was added to or removed from @c. */
    void (*on_member)(chan_t *c, const char *user, size_t len, int added);
    /* Storage thread: a batch was committed (events for listeners may have been queued with it). */
    void (*on_committed)(void);
};

extern struct chan_events chan_events;

/* chan_registry_init() - empty registry in srv. Return: 0, or -ENOMEM. */
int chan_registry_init(void);

/* chan_registry_deinit() - free every channel; sessions must be gone. */
void chan_registry_deinit(void);

/* chan_find() - the channel named @name, or NULL. @name must be valid. */
chan_t *chan_find(const char *name, size_t len);

/* chan_open() - the channel named @name, created if missing.
 * Return: 0 and *@out; PROTO_E_LIMIT at limits.max_channels; -ENOMEM. */
int chan_open(const char *name, size_t len, chan_t **out);

/* chan_subscribe() - subscribe @s to @c.
 * Return: 0; PROTO_E_ALREADY_SUBSCRIBED; PROTO_E_LIMIT at
 * limits.max_subscriptions; -ENOMEM. On failure a channel that nothing
 * else holds is freed. */
int chan_subscribe(sess_t *s, chan_t *c);

/* chan_sub_filter() - make @sub (a subscription just made to a state
 * channel, with no filter yet) see only the changes @match(@arg, ...)
 * accepts; @arg is copied (at most CHAN_FILTER_ARG_MAX bytes).
 * Return: 0, or -ENOMEM (the subscription stays unfiltered). */
int chan_sub_filter(sub_t *sub, chan_match_fn match, const char *arg);

/* chan_unsubscribe() - remove @s from @c. Return: 0 or PROTO_E_NOT_SUBSCRIBED.
 * @c may be freed by this call. */
int chan_unsubscribe(sess_t *s, chan_t *c);

/* chan_unsubscribe_all() - remove every subscription of @s. */
void chan_unsubscribe_all(sess_t *s);

/* chan_fanout() - deliver publication @offset of @c, whose record is @rec, to
 * every subscriber, and make it the channel's last offset. @frames holds the
 * encoded push per encoding, or NULL where not encoded yet; missing ones are
 * encoded here, once. The frames are borrowed. Filtered subscribers get the
 * delta with only the changes their filter accepts, built here once per
 * filter and encoding, and nothing when it accepts none.
 * Return: 0, or -ENOMEM (nothing was delivered). */
int chan_fanout(chan_t *c, uint64_t offset, const unsigned char *rec, size_t reclen, frame_t *frames[PROTO_NENC]);

/* chan_broadcast() - push the ephemeral message @msg (borrowed; no offset,
 * not stored) to every subscriber of @c but @except (may be NULL), encoded
 * once per encoding. Subscribers still waiting for a replay are skipped.
 * Return: 0, or -ENOMEM. */
int chan_broadcast(chan_t *c, const json_t *msg, const sess_t *except);

/* chan_sub() - the subscription of @s to @c, or NULL. */
sub_t *chan_sub(sess_t *s, chan_t *c);

/* chan_replay_start() - hold live publications for @sub until chan_replay_end(). */
void chan_replay_start(sub_t *sub);

/* chan_replay_end() - send what was held for @sub (all of it was fanned out
 * after the replay's snapshot, so it follows the replay) and deliver live
 * from now on. */
void chan_replay_end(sub_t *sub);

/* chan_replay_end_at() - the same after a snapshot taken at offset @at:
 * held publications up to @at are dropped (the snapshot has them), and so
 * are any up to @at fanned out later. */
void chan_replay_end_at(sub_t *sub, uint64_t at);

/* chan_maybe_drop() - free @c if nothing needs it: no subscribers, nothing in
 * flight, and neither a stored log nor (for channels without history) an
 * offset to keep. Return: 1 if freed. */
int chan_maybe_drop(chan_t *c);

/* chan_count_pub() - count one publication for chan_rate(). */
void chan_count_pub(chan_t *c);

/* chan_rate() - publications per second over the last whole second. */
double chan_rate(const chan_t *c);

/* chan_count() - channels registered now, but for those of the broker's own
 * sys namespace (chan_is_sys()). */
size_t chan_count(void);

/* chan_is_sys() - whether @c is in the broker's own namespace "sys"
 * (sys:stats): its traffic is kept out of the user-facing counters. */
int chan_is_sys(const chan_t *c);

#endif
