/* broker/app/commerce.h - the commerce adapter: orders with a lifecycle and
 * stock per SKU, for shop backends over REST (/api/commerce/...).
 *
 * Owns: validating each commerce request and turning it into one custom
 * state operation on the stock channel ([adapter commerce] stock_channel),
 * which storage/shop.c applies in that channel's write transaction together
 * with the notifications of an order's creation or change (on the order's
 * channel {orders_namespace}:{order}#{owner}, readable only by its owner and
 * privileged identities: the broker's '#user' rule; on the owner's personal
 * channel user:{owner}; on the admin channel) and the order.* webhook
 * events; and naming those channels, with their offsets, in the answer.
 * Does not own: the routes (app/api.c lists them) or the rules (storage/).
 * Loop thread only. */
#ifndef HERALD_APP_COMMERCE_H
#define HERALD_APP_COMMERCE_H

#include <jansson.h>
#include <stddef.h>

#include "net/reply.h"

/* commerce_enabled() - whether [adapter commerce] enabled = on. */
int commerce_enabled(void);

/* commerce_stock_channel() - the stock channel's name (static). */
const char *commerce_stock_channel(void);

/* commerce_is_store() - whether channel @name is the stock channel, which
 * changes through commerce requests only (generic state ops are refused). */
int commerce_is_store(const char *name, size_t len);

/* commerce_request() - carry out @action for @origin (taken):
 * "stock_set" (@body {"stock": {"<sku>": count}}), "stock_adjust" (@body
 * {"adjust": {"<sku>": delta}}), "order_create" (@body {"id","owner",
 * "lines":[{"sku","qty"}]}), "order_status" (@order, @body {"status",
 * "tracking"?}) or "order_get" (@order; @body unused).
 * The answer comes from the pipeline after commit: the stock channel's
 * "offset", "stock" (the counts that changed), "order" and, for a
 * transition, "from", "restored"; and "notified": [{"channel","offset"}],
 * the channels told in the same transaction and where.
 * @reason: [out] on failure (PROTO_REASON_MAX bytes).
 * Return: 0, or PROTO_E_BAD_FIELD, PROTO_E_DISABLED, PROTO_E_LIMIT,
 * PROTO_E_INTERNAL (@origin cleared). */
int commerce_request(const char *action, const char *order, const json_t *body, origin_t *origin, char *reason);

/* commerce_payment() - a payment provider's webhook: @body (@len raw
 * bytes, as signed) with the signature header @sig ("t=<unix seconds>,
 * v1=<hex HMAC-SHA256 of "<t>.<body>">", several v1= allowed for secret
 * rotation). Checks the signature against [adapter commerce]
 * webhook_secret in constant time and the timestamp against
 * webhook_tolerance, then applies the event ({"id","type","data":
 * {"order"}}) for @origin (taken): "payment.succeeded" moves the order to
 * PAID, "payment.failed" to PAYMENT_FAILED (its stock given back); other
 * types are answered {"ignored": true} at once, without a commit. The
 * answer (storage/shop.h, SHOP_PAYMENT) never refuses a well-signed event,
 * so the provider stops retrying; an event for an unknown order is kept and
 * reported on the admin channel.
 * @reason: [out] on failure (PROTO_REASON_MAX bytes).
 * Return: 0; PROTO_E_DISABLED (no secret configured); PROTO_E_UNAUTHORIZED
 * (missing or bad signature, stale timestamp); PROTO_E_MALFORMED,
 * PROTO_E_BAD_FIELD; PROTO_E_LIMIT, PROTO_E_INTERNAL (@origin cleared). */
int commerce_payment(const unsigned char *body, size_t len, const char *sig, origin_t *origin, char *reason);

#endif
