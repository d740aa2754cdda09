/* storage/shop.c - see shop.h.
 *
 * An order row is {"id","owner","status","lines":[{"sku","qty"}],
 * "reserved": bool, "created","updated" (ms), "tracking": {...} (the last
 * one given), "history": [{"status","at","tracking"?}]}. "reserved" is what
 * makes restoring happen once: it is set when the lines are taken from
 * stock and cleared when they are given back, in the same transaction. */
#include "shop.h"
#include "txnotify.h"
#include "msg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ORDER_KEY "order:"
#define EVENT_KEY "event:"

/* The lifecycle: each status and where it may go. REFUNDED follows any
 * status once paid (goods that shipped may be refunded without coming back,
 * so a refund restores no stock); RETURNED only follows DELIVERED. */
static const char *const s_pending[] = { "PAID", "PAYMENT_FAILED", "CANCELLED", NULL };
static const char *const s_paid[] = { "PROCESSING", "CANCELLED", "REFUNDED", NULL };
static const char *const s_processing[] = { "PICKING", "CANCELLED", "REFUNDED", NULL };
static const char *const s_picking[] = { "PACKED", "REFUNDED", NULL };
static const char *const s_packed[] = { "SHIPPED", "REFUNDED", NULL };
static const char *const s_shipped[] = { "DELIVERED", "REFUNDED", NULL };
static const char *const s_delivered[] = { "RETURNED", "REFUNDED", NULL };
static const char *const s_returned[] = { "REFUNDED", NULL };
static const char *const s_final[] = { NULL };

static const struct { const char *status; const char *const *next; } lifecycle[] = {
    { "PENDING", s_pending }, { "PAID", s_paid }, { "PROCESSING", s_processing }, { "PICKING", s_picking },
    { "PACKED", s_packed }, { "SHIPPED", s_shipped }, { "DELIVERED", s_delivered }, { "RETURNED", s_returned },
    { "PAYMENT_FAILED", s_final }, { "CANCELLED", s_final }, { "REFUNDED", s_final },
};

const char *const *shop_next(const char *s)
{
    for (size_t i = 0; s && i < sizeof lifecycle / sizeof lifecycle[0]; i++)
        if (!strcmp(lifecycle[i].status, s)) return lifecycle[i].next;
    return NULL;
}

int shop_status_valid(const char *s)
{
    return shop_next(s) != NULL;
}

struct ctx {
    hist_tx_t *tx;
    const shop_req_t *r;
    json_t *stock;                /* {"sku": count} changed by this request */
};

/* The count of @sku in stock (0 if never stocked). */
static int stock_get(hist_tx_t *tx, const char *sku, json_int_t *count)
{
    json_t *v = NULL;
    uint64_t version;
    int rc = hist_tx_get(tx, sku, strlen(sku), &v, &version);
    *count = rc || !json_is_integer(v) ? 0 : json_integer_value(v);
    json_decref(v);
    return rc;
}

static int stock_put(struct ctx *c, const char *sku, json_int_t count)
{
    json_t *v = json_integer(count);
    int rc = v ? hist_tx_put(c->tx, sku, strlen(sku), v) : -ENOMEM;
    json_decref(v);
    if (!rc) json_object_set_new(c->stock, sku, json_integer(count));
    return rc;
}

static int order_key(char *buf, size_t len, const char *id)
{
    int n = snprintf(buf, len, ORDER_KEY "%s", id);
    return n < 0 || (size_t)n >= len ? 0 : n;
}

static int order_get(hist_tx_t *tx, const char *id, json_t **o)
{
    char key[sizeof ORDER_KEY + SHOP_ID_MAX];
    int klen = order_key(key, sizeof key, id);
    int rc;

    *o = NULL;
    if (!klen) return 0;
    rc = hist_tx_aux_get(tx, key, (size_t)klen, o);
    if (!rc && *o && !json_is_object(*o)) {
        json_decref(*o);
        *o = NULL;
    }
    return rc;
}

static int order_put(hist_tx_t *tx, const char *id, const json_t *o)
{
    char key[sizeof ORDER_KEY + SHOP_ID_MAX];
    int klen = order_key(key, sizeof key, id);
    return klen ? hist_tx_aux_put(tx, key, (size_t)klen, o) : -EINVAL;
}

/* STOCK_SET and STOCK_ADJUST: all or none; an adjustment that would take a
 * SKU below zero refuses the whole request, naming the SKUs. */
static int stock_change(struct ctx *c)
{
    const char *sku;
    json_t *v, *shorts = json_array();
    int rc = 0;

    if (!shorts) return -ENOMEM;
    if (c->r->action == SHOP_STOCK_ADJUST) {
        json_object_foreach(c->r->items, sku, v) {
            json_int_t have;
            if ((rc = stock_get(c->tx, sku, &have))) goto out;
            if (have + json_integer_value(v) < 0 || have + json_integer_value(v) > SHOP_QTY_MAX)
                json_array_append_new(shorts, json_pack("{s:s,s:I,s:I}", "sku", sku, "available", (json_int_t)have,
                                                        "adjust", json_integer_value(v)));
        }
        if (json_array_size(shorts)) {
            rc = hist_tx_refuse(c->tx, PROTO_E_OUT_OF_STOCK, "the adjustment would take stock below zero (or past the "
                        "maximum): nothing changed", json_pack("{s:O}", "short", shorts));
            goto out;
        }
    }
    json_object_foreach(c->r->items, sku, v) {
        json_int_t have = 0;
        if (c->r->action == SHOP_STOCK_ADJUST && (rc = stock_get(c->tx, sku, &have))) goto out;
        if ((rc = stock_put(c, sku, have + json_integer_value(v)))) goto out;
    }
out:
    json_decref(shorts);
    return rc;
}

static json_t *history_entry(const char *status, int64_t at, const json_t *tracking)
{
    json_t *h = json_pack("{s:s,s:I}", "status", status, "at", (json_int_t)at);
    if (h && tracking) json_object_set(h, "tracking", (json_t *)tracking);
    return h;
}

/* CREATE: every line reserved, or none (PROTO_E_OUT_OF_STOCK naming each
 * short SKU). */
static int order_create(struct ctx *c)
{
    json_t *o, *line, *shorts = NULL;
    int64_t now = hist_tx_now(c->tx);
    size_t i;
    int rc;

    if ((rc = order_get(c->tx, c->r->order, &o))) return rc;
    if (o) {
        rc = hist_tx_refuse(c->tx, PROTO_E_ORDER_EXISTS, "an order with this id exists: nothing changed",
                    json_pack("{s:O}", "status", json_object_get(o, "status")));
        json_decref(o);
        return rc;
    }
    if (!(shorts = json_array())) return -ENOMEM;
    json_array_foreach(c->r->items, i, line) {
        const char *sku = json_string_value(json_object_get(line, "sku"));
        json_int_t want = json_integer_value(json_object_get(line, "qty")), have;
        if ((rc = stock_get(c->tx, sku, &have))) goto out;
        if (have < want)
            json_array_append_new(shorts, json_pack("{s:s,s:I,s:I}", "sku", sku, "wanted", want, "available", have));
    }
    if (json_array_size(shorts)) {
        rc = hist_tx_refuse(c->tx, PROTO_E_OUT_OF_STOCK, "not enough stock for every line: nothing reserved",
                    json_pack("{s:O}", "short", shorts));
        goto out;
    }
    json_array_foreach(c->r->items, i, line) {
        const char *sku = json_string_value(json_object_get(line, "sku"));
        json_int_t have;
        if ((rc = stock_get(c->tx, sku, &have)) ||
            (rc = stock_put(c, sku, have - json_integer_value(json_object_get(line, "qty")))))
            goto out;
    }
    o = json_pack("{s:s,s:s,s:s,s:O,s:b,s:I,s:I,s:[o]}", "id", c->r->order, "owner", c->r->owner, "status", "PENDING",
                  "lines", c->r->items, "reserved", 1, "created", (json_int_t)now, "updated", (json_int_t)now,
                  "history", history_entry("PENDING", now, NULL));
    if (!o) { rc = -ENOMEM; goto out; }
    if (!(rc = order_put(c->tx, c->r->order, o)))
        hist_tx_result(c->tx, json_pack("{s:o,s:O}", "order", o, "stock", c->stock));
    else json_decref(o);
out:
    json_decref(shorts);
    return rc;
}

/* Gives back the lines of order @o, once. */
static int restore(struct ctx *c, json_t *o, json_t *restored)
{
    json_t *line;
    size_t i;
    int rc;

    if (!json_is_true(json_object_get(o, "reserved"))) return 0;
    json_array_foreach(json_object_get(o, "lines"), i, line) {
        const char *sku = json_string_value(json_object_get(line, "sku"));
        json_int_t have, qty = json_integer_value(json_object_get(line, "qty"));
        if (!sku) continue;
        if ((rc = stock_get(c->tx, sku, &have)) || (rc = stock_put(c, sku, have + qty))) return rc;
        json_object_set_new(restored, sku, json_integer(qty));
    }
    json_object_set_new(o, "reserved", json_false());
    return 0;
}

static int order_move(struct ctx *c)
{
    const char *const *next, *cur;
    json_t *o, *restored = NULL, *allowed, *res;
    char from[32];
    int64_t now = hist_tx_now(c->tx);
    int rc, ok = 0;

    if ((rc = order_get(c->tx, c->r->order, &o))) return rc;
    if (!o) return hist_tx_refuse(c->tx, PROTO_E_UNKNOWN_ORDER, "no order has this id", NULL);
    cur = json_string_value(json_object_get(o, "status"));
    next = shop_next(cur);
    for (size_t i = 0; next && next[i]; i++) ok |= !strcmp(next[i], c->r->status);
    if (!ok) {
        char why[PROTO_REASON_MAX];
        if (!(allowed = json_array())) { json_decref(o); return -ENOMEM; }
        for (size_t i = 0; next && next[i]; i++) json_array_append_new(allowed, json_string(next[i]));
        snprintf(why, sizeof why, "an order in status %s cannot become %s", cur ? cur : "?", c->r->status);
        rc = hist_tx_refuse(c->tx, PROTO_E_BAD_TRANSITION, why, json_pack("{s:s?,s:o}", "status", cur, "allowed", allowed));
        json_decref(o);
        return rc;
    }
    snprintf(from, sizeof from, "%s", cur);
    if (!strcmp(c->r->status, "PAYMENT_FAILED") || !strcmp(c->r->status, "CANCELLED")) {
        if (!(restored = json_object())) { json_decref(o); return -ENOMEM; }
        if ((rc = restore(c, o, restored))) goto out;
    }
    json_object_set_new(o, "status", json_string(c->r->status));
    json_object_set_new(o, "updated", json_integer(now));
    if (c->r->tracking) json_object_set(o, "tracking", c->r->tracking);
    json_array_append_new(json_object_get(o, "history"), history_entry(c->r->status, now, c->r->tracking));
    if ((rc = order_put(c->tx, c->r->order, o))) goto out;
    if (!(res = json_pack("{s:O,s:s,s:O}", "order", o, "from", from, "stock", c->stock))) { rc = -ENOMEM; goto out; }
    if (restored && json_object_size(restored)) json_object_set(res, "restored", restored);
    hist_tx_result(c->tx, res);
out:
    json_decref(restored);
    json_decref(o);
    return rc;
}

/* PAYMENT: remembered by event id for the window, so a provider's retry
 * (or a replay within the signature's tolerance) changes nothing. */
static int payment(struct ctx *c)
{
    char key[sizeof EVENT_KEY + SHOP_EVENT_MAX];
    int klen = snprintf(key, sizeof key, EVENT_KEY "%s", c->r->event);
    int64_t now = hist_tx_now(c->tx);
    json_t *seen = NULL, *o = NULL, *row, *res = NULL;
    const char *const *next;
    const char *outcome;
    int rc, ok = 0;

    if (klen < 0 || (size_t)klen >= sizeof key) return -EINVAL;
    if ((rc = hist_tx_aux_get(c->tx, key, (size_t)klen, &seen))) return rc;
    if (json_is_object(seen) && now - json_integer_value(json_object_get(seen, "at")) <= c->r->window_ms) {
        hist_tx_result(c->tx, json_pack("{s:b,s:o}", "duplicate", 1, "event", seen));
        return 0;
    }
    json_decref(seen);
    if ((rc = order_get(c->tx, c->r->order, &o))) return rc;
    if (!o) {
        outcome = "unknown_order";
        res = json_pack("{s:b}", "unmatched", 1);
    } else {
        next = shop_next(json_string_value(json_object_get(o, "status")));
        for (size_t i = 0; next && next[i]; i++) ok |= !strcmp(next[i], c->r->status);
        if (ok) {
            outcome = c->r->status;
            rc = order_move(c);
            /* order_move() handed its report over: take it back to add the event. */
            res = hist_tx_take_result(c->tx);
        } else {
            json_t *allowed = json_array();
            for (size_t i = 0; next && next[i]; i++) json_array_append_new(allowed, json_string(next[i]));
            outcome = "ignored";
            res = json_pack("{s:b,s:O,s:o}", "ignored", 1, "status", json_object_get(o, "status"), "allowed", allowed);
        }
        json_decref(o);
        if (rc) { json_decref(res); return rc; }
    }
    row = json_pack("{s:s,s:s,s:s,s:I,s:s}", "id", c->r->event, "type", c->r->event_type, "order", c->r->order,
                    "at", (json_int_t)now, "outcome", outcome);
    if (!row || !res) { json_decref(row); json_decref(res); return -ENOMEM; }
    if ((rc = hist_tx_aux_put(c->tx, key, (size_t)klen, row))) { json_decref(row); json_decref(res); return rc; }
    json_object_set_new(res, "event", row);
    hist_tx_result(c->tx, res);
    return 0;
}

static int order_read(struct ctx *c)
{
    json_t *o;
    int rc = order_get(c->tx, c->r->order, &o);

    if (rc) return rc;
    if (!o) return hist_tx_refuse(c->tx, PROTO_E_UNKNOWN_ORDER, "no order has this id", NULL);
    hist_tx_result(c->tx, json_pack("{s:o}", "order", o));
    return 0;
}

/* The change in @res committed or nothing does: its notifications and
 * webhook events go in the same transaction. */
static int notify(struct ctx *c, json_t *res)
{
    const shop_req_t *r = c->r;
    const json_t *order = json_object_get(res, "order");
    const char *owner = json_string_value(json_object_get(order, "owner"));
    const char *id = json_string_value(json_object_get(order, "id"));
    int create = r->action == SHOP_ORDER_CREATE;
    char name[512];
    json_t *data, *ev;
    int rc;

    if (r->action == SHOP_PAYMENT && json_is_true(json_object_get(res, "unmatched"))) {
        if (!(data = json_pack("{s:s,s:s,s:s,s:s}", "type", "payment_unmatched", "event", r->event, "event_type",
                               r->event_type, "order", r->order)))
            return ENOMEM;
        rc = txnotify(c->tx, r->admin_channel, data);
        json_decref(data);
        return rc;
    }
    /* A create, or a change of status (a transition, or a payment that made one). */
    if (!order || !owner || !id || (!create && !json_object_get(res, "from"))) return 0;
    data = json_pack("{s:s,s:s,s:s,s:O}", "type", create ? "order_created" : "order_status", "order", id, "owner",
                     owner, "status", json_object_get(order, "status"));
    if (!data) return ENOMEM;
    if (create) json_object_set(data, "lines", json_object_get(order, "lines"));
    else json_object_set(data, "from", json_object_get(res, "from"));
    if (r->action == SHOP_PAYMENT) json_object_set_new(data, "payment_event", json_string(r->event));
    if (r->tracking) json_object_set(data, "tracking", r->tracking);
    if (json_object_get(res, "restored")) json_object_set(data, "restored", json_object_get(res, "restored"));
    json_object_set(data, "at", json_object_get(order, "updated"));
    rc = 0;
    if (r->orders_ns && snprintf(name, sizeof name, "%s:%s#%s", r->orders_ns, id, owner) < (int)sizeof name)
        rc = txnotify(c->tx, name, data);
    if (!rc && snprintf(name, sizeof name, "user:%s", owner) < (int)sizeof name) rc = txnotify(c->tx, name, data);
    if (!rc) rc = txnotify(c->tx, r->admin_channel, data);
    if (!rc && (create ? r->nhooks_created : r->nhooks_status)) {
        if ((ev = json_deep_copy(data))) {
            json_object_set_new(ev, "type", json_string(create ? "order.created" : "order.status"));
            rc = hist_tx_event(c->tx, create ? r->hooks_created : r->hooks_status,
                               create ? r->nhooks_created : r->nhooks_status, ev);
            json_decref(ev);
        } else {
            rc = ENOMEM;
        }
    }
    json_decref(data);
    return rc;
}

int shop_apply(hist_tx_t *tx, const void *req)
{
    struct ctx c = { tx, req, json_object() };
    int rc;

    if (!c.stock) return -ENOMEM;
    switch (c.r->action) {
    case SHOP_STOCK_SET:
    case SHOP_STOCK_ADJUST:
        if (!(rc = stock_change(&c))) hist_tx_result(tx, json_pack("{s:O}", "stock", c.stock));
        break;
    case SHOP_ORDER_CREATE: rc = order_create(&c); break;
    case SHOP_ORDER_MOVE: rc = order_move(&c); break;
    case SHOP_ORDER_GET: rc = order_read(&c); break;
    case SHOP_PAYMENT: rc = payment(&c); break;
    default: rc = -EINVAL; break;
    }
    if (!rc && c.r->action != SHOP_ORDER_GET && c.r->action >= SHOP_ORDER_CREATE) {
        json_t *res = hist_tx_take_result(tx);
        if (res) {
            rc = notify(&c, res);
            hist_tx_result(tx, res);
        }
    }
    json_decref(c.stock);
    return rc;
}
