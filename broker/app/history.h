/* broker/app/history.h - reading channel history for clients.
 *
 * Owns: the three ways history is read: a `subscribe` that asks for the last
 * N publications or for recovery `since` an offset, the `history` op, and
 * GET /api/channels/{channel}/history. Reads run on libuv's thread pool in an
 * LMDB read transaction, never on the loop; with the redis engine they are
 * one script on the engine's command connection (core/cluster.h). A subscription that waits for its
 * replay holds the live publications that arrive meanwhile
 * (chan_replay_start) and releases them after the reply, so the subscriber
 * sees the replay, then live publications, with no gap and no duplicate.
 * A reply carries at most half of limits.send_queue_max of publications, so a
 * replay can never make its own reader a slow consumer.
 * Loop thread only. */
#ifndef HERALD_HISTORY_H
#define HERALD_HISTORY_H

#include <jansson.h>
#include <stdint.h>

#include "core/channel.h"
#include "core/pubpipe.h"

/* Hard cap on the entries one read returns. */
#define HISTORY_LIMIT_MAX 1000

struct history_since {
    int set;
    char epoch[HIST_EPOCH_LEN + 1];
    uint64_t offset;
};

/* history_subscribed() - reply to a subscribe of @s to @c (already made; @id
 * borrowed). With @n > 0 or @since->set the reply carries publications: it may
 * come later, after a read; live publications wait for it. With @presence
 * it carries the channel's members ("presence", null without presence).
 * With a shared engine (core/cluster.h) the reply waits until the node
 * knows the channel's position, and reads go to the engine.
 * Return: 0; PROTO_E_ENGINE_UNAVAILABLE (the engine is down); -ENOMEM (the
 * caller replies with an error). */
int history_subscribed(sess_t *s, chan_t *c, const json_t *id, unsigned n, const struct history_since *since,
                       int presence);

/* A page request of the history op and of the REST endpoint. */
struct history_page {
    uint64_t since;               /* only offsets > since (0: from the oldest) */
    uint64_t before;              /* only offsets < before (0: up to the newest) */
    unsigned limit;               /* 1..HISTORY_LIMIT_MAX */
    int reverse;                  /* newest first */
    uint64_t thread;              /* only publications whose reply_to is this (0: all); pages
                                     like the rest, within the kept window */
};

/* history_query() - read a page of @c's history for @origin (WS: the reply is
 * {"op":"history",...}; REST: a JSON response). Takes @origin->id.
 * Return: 0, PROTO_E_NO_HISTORY, PROTO_E_ENGINE_UNAVAILABLE (the shared
 * engine is down; @origin stays the caller's), or -ENOMEM. */
int history_query(chan_t *c, const struct history_page *page, origin_t *origin);

#endif
