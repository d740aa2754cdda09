/* broker/app/state.h - state channels: a keyed state per channel, changed by
 * atomic operations, read as a snapshot then followed as deltas.
 *
 * Owns: parsing state operations (set, incr, cas, delete, reset) from a
 * request, handing them to the storage thread (which applies them all or
 * none, in the same transaction as the channel's log, and writes the delta
 * as the publication), snapshots for subscribers and for GET
 * /api/channels/{channel}/state, and the conflation of a slow subscriber's
 * deltas into a fresh snapshot. Loop thread only. */
#ifndef HERALD_STATE_H
#define HERALD_STATE_H

#include <jansson.h>
#include <stdint.h>

#include "core/channel.h"
#include "hist.h"
#include "core/pubpipe.h"

/* Most operations in one request. */
#define STATE_OPS_MAX 100

/* state_parse() - read @ops_json (an array of {"op":..,"key":..,...}).
 * @out: [out] on success; hand it to pubpipe_state(), or free it with
 * pub_ops_free().
 * Return: 0, or PROTO_E_BAD_FIELD with @reason. */
int state_parse(const json_t *ops_json, pub_ops_t **out, char *reason);

/* state_subscribed() - answer a subscribe of @s to state channel @c: a
 * snapshot in the reply ("state"), then the deltas after it; with @since
 * and a log that still holds what was missed, the missed deltas instead.
 * A subscription with a filter (chan_sub_filter(), set before this call)
 * always gets a snapshot of the keys its filter accepts (also on a resync),
 * never the unfiltered log.
 * Return: 0, or -ENOMEM. */
struct history_since;
int state_subscribed(sess_t *s, chan_t *c, const json_t *id, const struct history_since *since, int presence);

/* A page request of GET /api/channels/{channel}/state. */
struct state_page {
    char prefix[HIST_KEY_MAX + 1];
    char after[HIST_KEY_MAX + 1]; /* the cursor: the last key of the previous page */
    char field[64];               /* with value: only objects whose field equals it */
    char value[256];
    char q[256];                  /* only values whose JSON text contains this */
    unsigned limit;
};

/* state_list() - answer HTTP request @serial with a page of @c's state.
 * Return: 0, or -ENOMEM. */
int state_list(chan_t *c, const struct state_page *page, uint64_t serial);

/* state_on_drained() - @s has drained after falling behind: each of its
 * state subscriptions marked stale gets a fresh snapshot in place of the
 * deltas it missed (sess_hooks.on_drained). */
void state_on_drained(sess_t *s);

/* state_on_gap() - the shared engine lost deltas of state channel @c
 * (cluster_set_state_gap()): every subscriber of @c gets a fresh snapshot,
 * as state_resync(). */
void state_on_gap(chan_t *c);

/* state_resync() - @s fell behind on @c: its pending deltas were dropped;
 * send it a fresh snapshot ({"op":"snapshot",...}) and deltas after it. */
void state_resync(sess_t *s, chan_t *c);

#endif
