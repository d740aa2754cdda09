/* broker/core/cluster_shop.h - the commerce adapter through the shared
 * engine ([engine] type = redis; storage/engine_shop.c, docs/cluster.md).
 *
 * Owns: the loop-side glue for a commerce request on the stock channel that
 * cluster_routes() takes: the request as the script reads it, and its
 * answer, the one the LMDB engine gives (the notifications named with their
 * offsets by app/commerce.c's done(), from the sides the script reports).
 * Does not own: validating the request (app/commerce.c), the shop rules
 * (engine_shop.c's script, the same as storage/shop.c's), delivering the
 * delta and the notifications (they are publications: core/cluster.c
 * delivers them in offset order on every node). Loop thread only. */
#ifndef HERALD_CLUSTER_SHOP_H
#define HERALD_CLUSTER_SHOP_H

#include "core/channel.h"
#include "core/pubpipe.h"
#include "net/reply.h"

/* cluster_shop() - run the commerce request of @ops (taken; one custom
 * operation whose argument is a shop_req_t, storage/shop.h) on stock
 * channel @c for @origin (taken) in the engine. The answer is the one the
 * LMDB engine gives (pubpipe_custom_report(), @ops' done() first, with
 * ops->side naming each notification and its offset), or
 * PROTO_E_ENGINE_UNAVAILABLE (503) when Redis cannot be reached.
 * Return: 0, or -ENOMEM (@ops freed, @origin cleared, no answer). */
int cluster_shop(chan_t *c, pub_ops_t *ops, origin_t *origin);

/* cluster_shop_admin() - whether @c is the commerce adapter's admin
 * channel: it is shared through the engine even in the sys namespace
 * (whose other channels, sys:stats, stay on each node), so every node's
 * admins hear every node's orders. */
int cluster_shop_admin(const chan_t *c);

#endif
