/* storage/txnotify.h - the notifications an adapter's custom operation
 * (storage/shop.c, seatmap.c, tickets_db.c) writes on other channels inside
 * its own write transaction.
 *
 * Owns: turning a JSON value into a server publication on a named channel
 * (record built as for any publication, hist_tx_publish()), and the rule the
 * adapters share for targets that cannot take one: a name that is not a
 * valid channel (an id too long for "user:{id}") or a state channel (which
 * changes only by its own operations; the configuration refuses such feeds
 * at start) is skipped, so a notification never costs the change itself.
 * Storage thread only, inside a custom operation. */
#ifndef HERALD_TXNOTIFY_H
#define HERALD_TXNOTIFY_H

#include <jansson.h>

#include "hist.h"

/* txnotify() - publish @data (borrowed) on channel @name (NUL-terminated;
 * NULL or "" for none) in @tx.
 * Return: 0 (published, or skipped as above), ENOMEM, or a storage code. */
int txnotify(hist_tx_t *tx, const char *name, const json_t *data);

#endif
