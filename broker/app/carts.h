/* broker/app/carts.c - cart events of the commerce adapter: a shop backend
 * tells the broker that a user's cart changed (an item added, updated or
 * removed, the cart cleared or checked out), and the broker publishes it on
 * the user's personal channel user:{user}, so every tab and device of that
 * user shows the same cart.
 *
 * Owns: checking a cart event and what it publishes. Keeps no cart: the
 * shop's backend holds the cart, the broker relays its changes (a page that
 * opens reads the cart from the shop, then follows the events). Does not
 * own: the route (app/api.c) or who may read user:{user} (auth/: only that
 * user). Loop thread only. */
#ifndef HERALD_APP_CARTS_H
#define HERALD_APP_CARTS_H

#include <jansson.h>

#include "net/reply.h"

/* The most units of one line of a cart. */
#define CART_QUANTITY_MAX 100000

/* carts_channel() - the channel of @user's cart events, "user:{user}",
 * into @out (@len bytes). Return: 0, or PROTO_E_BAD_FIELD with @reason
 * when @user is not a user id (auth_user_valid()) or makes no valid
 * channel name. */
int carts_channel(const char *user, char *out, size_t len, char *reason);

/* carts_event() - publish the cart event @body (borrowed) of @user on
 * user:{user} for @origin (taken); the pipeline answers {"channel",
 * "offset"}. @body is {"type": "item_added" | "item_updated" (both with
 * "sku" and "quantity", 1..CART_QUANTITY_MAX, and an optional "price", an
 * integer >= 0 in minor units) | "item_removed" (with "sku") | "cleared" |
 * "checked_out" (with an optional "order" id)}; other fields are refused.
 * What is published: {"type":"cart_<type>","user", the fields, "at": ms}.
 * @reason: [out] on failure (PROTO_REASON_MAX bytes).
 * Return: 0, or PROTO_E_BAD_FIELD, PROTO_E_LIMIT, PROTO_E_INTERNAL
 * (@origin cleared). */
int carts_event(const char *user, const json_t *body, origin_t *origin, char *reason);

#endif
