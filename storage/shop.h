/* storage/shop.h - the commerce adapter's rules: orders and stock,
 * applied inside the stock channel's write transaction.
 *
 * Owns: the layout of the stock channel (one state key per SKU whose value
 * is the integer count available, published as a delta on every change) and
 * of its unpublished "order:<id>" rows (owner, lines, status, whether stock
 * is reserved, tracking, times), and every rule between them: an order
 * reserves all its lines or none, stock never goes below zero, the status
 * moves only along the lifecycle (shop_next()), and PAYMENT_FAILED or
 * CANCELLED give back exactly what was reserved, once.
 * DESIGN: orders live beside the stock in one channel because reserving
 * stock and creating the order must be one transaction; a custom state
 * operation (hist_custom_fn) is the only code that runs inside one. The
 * loop validates each request's shape first (app/commerce.c), so what
 * reaches the transaction can only fail on stored state. The notifications
 * of a create or status change (the order's channel, its owner's user:
 * channel, the admin channel) and its webhook events are written in the
 * same transaction (hist_tx_publish(), hist_tx_event()): a change is never
 * committed without them, nor they without it.
 * Storage thread only, except shop_next() and shop_status_valid(). */
#ifndef HERALD_SHOP_H
#define HERALD_SHOP_H

#include <jansson.h>
#include <stdint.h>

#include "hist.h"

#define SHOP_ID_MAX 64        /* order ids and SKUs */
#define SHOP_LINES_MAX 100    /* lines of one order; SKUs in one stock request */
#define SHOP_QTY_MAX 1000000000 /* the most of one SKU in stock or on one line */
#define SHOP_EVENT_MAX 128        /* a payment provider's event id */

enum shop_action {
    SHOP_STOCK_SET = 1,            /* items: {"sku": count}: set each count */
    SHOP_STOCK_ADJUST,             /* items: {"sku": delta}: add each delta, all or none, never below zero */
    SHOP_ORDER_CREATE,             /* order, owner, lines: reserve every line and create the order */
    SHOP_ORDER_MOVE,               /* order, status, tracking: a lifecycle transition */
    SHOP_ORDER_GET,                /* order: read it (changes nothing) */
    SHOP_PAYMENT,                  /* event, event_type, order, status, window_ms: a payment provider's event */
};

typedef struct shop_req {
    enum shop_action action;
    const char *order;            /* CREATE, MOVE, GET: the order id */
    const char *owner;            /* CREATE: the user the order belongs to (a token's "sub") */
    const char *status;           /* MOVE: the status to move to (shop_status_valid()) */
    json_t *items;                /* STOCK_*: {"sku": integer}; CREATE: lines [{"sku","qty"}], distinct SKUs */
    json_t *tracking;             /* MOVE: {"carrier","tracking_number","eta","note"} (each optional), or NULL */
    const char *event;            /* PAYMENT: the provider's event id (1-SHOP_EVENT_MAX bytes) */
    const char *event_type;       /* PAYMENT: "payment.succeeded" (status PAID) or "payment.failed" (PAYMENT_FAILED) */
    int64_t window_ms;            /* PAYMENT: an event id seen less than this long ago is a duplicate */
    /* Who hears of a change, in the same transaction (the loop's configuration, borrowed): */
    const char *orders_ns;        /* order channels are "{orders_ns}:{id}#{owner}" */
    const char *admin_channel;    /* every create and status change, and unmatched payments */
    const char *const *hooks_created; /* webhooks that get "order.created" */
    size_t nhooks_created;
    const char *const *hooks_status;  /* webhooks that get "order.status" */
    size_t nhooks_status;
} shop_req_t;

/* shop_status_valid() - whether @s is one of the order statuses. Any thread. */
int shop_status_valid(const char *s);

/* shop_next() - the statuses an order in status @s may move to, as a
 * NULL-terminated list of static strings (empty for a final status, NULL for
 * an unknown one). Any thread. */
const char *const *shop_next(const char *s);

/* shop_apply() - run @req (a shop_req_t) in @tx, the stock channel's
 * write transaction. On success the result (hist_tx_result) holds "order"
 * (the order as stored, for CREATE, MOVE and GET), "from" (MOVE: the status
 * it left), "restored" (MOVE: {"sku": count} given back to stock, when any)
 * and "stock" ({"sku": count} of every SKU whose count changed). Refusals
 * carry {"code","reason"} and: PROTO_E_OUT_OF_STOCK "short": [{"sku",
 * "wanted","available"}] (a SKU never stocked has 0); PROTO_E_BAD_TRANSITION
 * "status" (current) and "allowed" (the next ones); PROTO_E_UNKNOWN_ORDER;
 * PROTO_E_ORDER_EXISTS "status".
 * PAYMENT never refuses (a provider must not retry forever): its result is
 * "event" (the row remembered in aux "event:<id>": {"id","type","order",
 * "at","outcome"}) and either "duplicate": true (seen within the window;
 * nothing changed), "unmatched": true (no such order: the event is kept and
 * reported), "ignored": true with "status" and "allowed" (the order's status
 * does not lead there, e.g. a repeat "succeeded" for a PAID order), or what
 * MOVE reports.
 * A CREATE, a MOVE, or a PAYMENT that moved the order publishes
 * {"type":"order_created"|"order_status","order","owner","status","at",
 * "lines" (create) | "from", "tracking"?, "restored"?, "payment_event"?} on
 * the order's channel, "user:{owner}" and @admin_channel, and queues
 * "order.created" / "order.status" webhook events of the same fields; an
 * unmatched PAYMENT publishes {"type":"payment_unmatched","event",
 * "event_type","order"} on @admin_channel.
 * Return: 0, HIST_E_REFUSED, or a storage code (see hist_custom_fn). */
int shop_apply(hist_tx_t *tx, const void *req);

#endif
