/* broker/app/commerce.c - see commerce.h.
 *
 * DESIGN: like a seat request (app/seats.c), every commerce request is one
 * custom state operation: queued to the storage thread, applied all or none
 * in the stock channel's transaction (storage/shop.c), its stock delta
 * published with an offset, and only then answered. Everything that does
 * not need stored state (ids, quantities, statuses, tracking fields) is
 * checked here first, so a bad request writes nothing and costs no commit.
 * The notifications (the order's channel, its owner's, the admins') and
 * the order.* webhook events are written by the operation in the same
 * transaction (storage/shop.c): acknowledged means all of them are stored,
 * and the answer names each channel with the offset it got. */
#include "app/commerce.h"
#include "app/fields.h"
#include "auth/auth.h"
#include "core/channel.h"
#include "core/pubpipe.h"
#include "shop.h"
#include "chname.h"
#include "herald.h"
#include "log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A request on its way through the store; owned by its pub_ops_t. */
typedef struct com_job {
    shop_req_t req;
    char order[SHOP_ID_MAX + 1];
    char owner[AUTH_USER_MAX + 1];
    char status[32];
    char event[SHOP_EVENT_MAX + 1];
    char event_type[32];
    const char *hooks_created[WEBHOOK_MAX]; /* webhooks of order.created / order.status (names in srv.cfg) */
    const char *hooks_status[WEBHOOK_MAX];
} com_job_t;

static const struct { const char *name; enum shop_action action; } actions[] = {
    { "stock_set", SHOP_STOCK_SET }, { "stock_adjust", SHOP_STOCK_ADJUST }, { "order_create", SHOP_ORDER_CREATE },
    { "order_status", SHOP_ORDER_MOVE }, { "order_get", SHOP_ORDER_GET },
};

static const char *const tracking_fields[] = { "carrier", "tracking_number", "eta", "note" };
#define TRACKING_FIELD_MAX 512

int commerce_enabled(void)
{
    return srv.cfg.commerce_enabled;
}

const char *commerce_stock_channel(void)
{
    return srv.cfg.commerce_stock_channel;
}

int commerce_is_store(const char *name, size_t len)
{
    return commerce_enabled() && strlen(srv.cfg.commerce_stock_channel) == len &&
           !memcmp(name, srv.cfg.commerce_stock_channel, len);
}

/* Writes the order's channel "{ns}:{order}#{owner}" into @out.
 * Return: 0, or -1 if it is not a valid channel name. */
static int order_channel(const char *order, const char *owner, char *out, size_t len)
{
    int n = snprintf(out, len, "%s:%s#%s", srv.cfg.commerce_orders_ns, order, owner);
    return n < 0 || (size_t)n >= len || !chname_valid(out, (size_t)n, NULL) ? -1 : 0;
}

static void job_free(void *p)
{
    com_job_t *j = p;
    if (!j) return;
    json_decref(j->req.items);
    json_decref(j->req.tracking);
    free(j);
}

/* {"<sku>": integer in [min, SHOP_QTY_MAX]}, 1-SHOP_LINES_MAX SKUs. */
static int check_counts(const json_t *m, const char *field, json_int_t min, char *reason)
{
    const char *sku;
    json_t *v;

    if (!json_is_object(m) || !json_object_size(m) || json_object_size(m) > SHOP_LINES_MAX) {
        snprintf(reason, PROTO_REASON_MAX, "field \"%s\" must be an object of 1 to %d SKUs, each with an integer",
                 field, SHOP_LINES_MAX);
        return PROTO_E_BAD_FIELD;
    }
    json_object_foreach((json_t *)m, sku, v) {
        if (!field_id_ok(sku, strlen(sku), SHOP_ID_MAX)) {
            snprintf(reason, PROTO_REASON_MAX, "%s: \"%.64s\" is not a SKU (1-64 letters, digits, '_', '-' or '.')",
                     field, sku);
            return PROTO_E_BAD_FIELD;
        }
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > SHOP_QTY_MAX) {
            snprintf(reason, PROTO_REASON_MAX, "%s.%s must be an integer from %lld to %d", field, sku,
                     (long long)min, SHOP_QTY_MAX);
            return PROTO_E_BAD_FIELD;
        }
    }
    return 0;
}

/* "lines": 1-SHOP_LINES_MAX {"sku","qty"} with qty >= 1 and distinct SKUs. */
static int check_lines(const json_t *lines, char *reason)
{
    size_t i, k;
    json_t *l;

    if (!json_is_array(lines) || !json_array_size(lines) || json_array_size(lines) > SHOP_LINES_MAX) {
        snprintf(reason, PROTO_REASON_MAX, "field \"lines\" must be a list of 1 to %d {\"sku\",\"qty\"}",
                 SHOP_LINES_MAX);
        return PROTO_E_BAD_FIELD;
    }
    json_array_foreach(lines, i, l) {
        const json_t *sku = json_object_get(l, "sku"), *qty = json_object_get(l, "qty");
        if (!json_is_object(l) || json_object_size(l) != 2 || !json_is_string(sku) ||
            !field_id_ok(json_string_value(sku), json_string_length(sku), SHOP_ID_MAX)) {
            snprintf(reason, PROTO_REASON_MAX, "lines[%zu] must be {\"sku\",\"qty\"}: a SKU of 1-64 letters, digits, "
                     "'_', '-' or '.'", i);
            return PROTO_E_BAD_FIELD;
        }
        if (!json_is_integer(qty) || json_integer_value(qty) < 1 || json_integer_value(qty) > SHOP_QTY_MAX) {
            snprintf(reason, PROTO_REASON_MAX, "lines[%zu].qty must be an integer from 1 to %d", i, SHOP_QTY_MAX);
            return PROTO_E_BAD_FIELD;
        }
        for (k = 0; k < i; k++)
            if (json_equal(sku, json_object_get(json_array_get(lines, k), "sku"))) {
                snprintf(reason, PROTO_REASON_MAX, "lines[%zu]: SKU \"%s\" is listed twice", i,
                         json_string_value(sku));
                return PROTO_E_BAD_FIELD;
            }
    }
    return 0;
}

/* "tracking": absent, or an object of the known fields, each a string. */
static int check_tracking(const json_t *t, char *reason)
{
    const char *k;
    json_t *v;

    if (!t) return 0;
    if (!json_is_object(t)) return field_bad(reason, "field \"tracking\" must be an object: {\"carrier\","
                                               "\"tracking_number\",\"eta\",\"note\"}, each optional");
    json_object_foreach((json_t *)t, k, v) {
        size_t i;
        for (i = 0; i < sizeof tracking_fields / sizeof tracking_fields[0]; i++)
            if (!strcmp(k, tracking_fields[i])) break;
        if (i == sizeof tracking_fields / sizeof tracking_fields[0]) {
            snprintf(reason, PROTO_REASON_MAX, "tracking.%.64s: unknown field (carrier, tracking_number, eta, note)", k);
            return PROTO_E_BAD_FIELD;
        }
        if (!json_is_string(v) || json_string_length(v) > TRACKING_FIELD_MAX) {
            snprintf(reason, PROTO_REASON_MAX, "tracking.%s must be a string of at most %d bytes", k,
                     TRACKING_FIELD_MAX);
            return PROTO_E_BAD_FIELD;
        }
    }
    return 0;
}

/* The change has committed with its notifications (pub_ops_t.done): name
 * each channel told, with the offset it got, in the answer. */
static void job_done(chan_t *c, pub_ops_t *ops, int code, json_t *result)
{
    com_job_t *j = ops->custom;
    json_t *notified;

    (void)c;
    if (code || !result || !ops->side) return;
    if (j->req.action == SHOP_PAYMENT && json_is_true(json_object_get(result, "unmatched")))
        /* Kept in the store (aux "event:<id>"), and told to the admins: a
         * payment for an order the shop never created here needs a person. */
        hlog(LOG_WARN, "commerce", "payment event %s (%s) names unknown order %s: kept, not applied", j->event,
             j->event_type, j->order);
    if (!(notified = json_array())) return;
    for (const hist_side_t *s = ops->side; s; s = s->next)
        json_array_append_new(notified, json_pack("{s:s%,s:I}", "channel", s->chan, s->chanlen, "offset",
                                                  (json_int_t)s->offset));
    json_object_set_new(result, "notified", notified);
}

/* Queues @j (taken) on the stock channel for @origin (taken). */
static int submit(com_job_t *j, origin_t *origin, char *reason)
{
    const config_t *cfg = &srv.cfg;
    pub_custom_t pc = { .apply = shop_apply, .arg = &j->req, .custom = j, .custom_free = job_free,
                        .done = job_done, .reply_op = "commerce" };

    /* The storage thread reads these: the configuration outlives every request. */
    j->req.orders_ns = cfg->commerce_orders_ns;
    j->req.admin_channel = cfg->commerce_admin_channel;
    if (cfg->nwebhooks) {
        j->req.nhooks_created = config_webhooks_for(cfg, WH_EV_ORDER_CREATED, "", 0, j->hooks_created);
        j->req.nhooks_status = config_webhooks_for(cfg, WH_EV_ORDER_STATUS, "", 0, j->hooks_status);
        j->req.hooks_created = j->hooks_created;
        j->req.hooks_status = j->hooks_status;
    }
    return pubpipe_custom(cfg->commerce_stock_channel, &pc, origin, reason);
}

int commerce_request(const char *action, const char *order, const json_t *body, origin_t *origin, char *reason)
{
    com_job_t *j = NULL;
    size_t i;
    int r = PROTO_E_BAD_FIELD;

    if (!commerce_enabled()) {
        snprintf(reason, PROTO_REASON_MAX, "the commerce adapter is off: [adapter commerce] enabled = on");
        r = PROTO_E_DISABLED;
        goto fail;
    }
    for (i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (!strcmp(action, actions[i].name)) break;
    if (i == sizeof actions / sizeof actions[0]) { field_bad(reason, "no such commerce action"); goto fail; }
    if (!(j = calloc(1, sizeof *j))) { r = field_oom(reason); goto fail; }
    j->req.action = actions[i].action;
    if (j->req.action != SHOP_ORDER_GET && !json_is_object(body)) {
        field_bad(reason, "the body must be a JSON object");
        goto fail;
    }
    switch (j->req.action) {
    case SHOP_STOCK_SET:
        if ((r = check_counts(json_object_get(body, "stock"), "stock", 0, reason))) goto fail;
        j->req.items = json_deep_copy(json_object_get(body, "stock"));
        break;
    case SHOP_STOCK_ADJUST:
        if ((r = check_counts(json_object_get(body, "adjust"), "adjust", -SHOP_QTY_MAX, reason))) goto fail;
        j->req.items = json_deep_copy(json_object_get(body, "adjust"));
        break;
    case SHOP_ORDER_CREATE: {
        const json_t *id = json_object_get(body, "id"), *owner = json_object_get(body, "owner");
        char name[CHNAME_MAX + 1];
        if (!json_is_string(id) || !field_id_ok(json_string_value(id), json_string_length(id), SHOP_ID_MAX)) {
            r = field_bad(reason, "field \"id\" must be an order id: 1-64 letters, digits, '_', '-' or '.'");
            goto fail;
        }
        if (!json_is_string(owner) || !auth_user_valid(json_string_value(owner), json_string_length(owner))) {
            r = field_bad(reason, "field \"owner\" must be the user the order belongs to, as in a token's \"sub\": "
                    "1-128 bytes without ',' or '#'");
            goto fail;
        }
        if ((r = check_lines(json_object_get(body, "lines"), reason))) goto fail;
        memcpy(j->order, json_string_value(id), json_string_length(id) + 1);
        memcpy(j->owner, json_string_value(owner), json_string_length(owner) + 1);
        if (order_channel(j->order, j->owner, name, sizeof name)) {
            r = field_bad(reason, "the order's channel {namespace}:{id}#{owner} would not be a valid channel name: "
                    "choose a shorter id or owner without spaces or control characters");
            goto fail;
        }
        j->req.order = j->order;
        j->req.owner = j->owner;
        j->req.items = json_deep_copy(json_object_get(body, "lines"));
        break;
    }
    case SHOP_ORDER_MOVE: {
        const json_t *st = json_object_get(body, "status");
        if (!json_is_string(st) || !shop_status_valid(json_string_value(st))) {
            r = field_bad(reason, "field \"status\" must be one of PAID, PAYMENT_FAILED, PROCESSING, PICKING, PACKED, "
                    "SHIPPED, DELIVERED, CANCELLED, REFUNDED, RETURNED");
            goto fail;
        }
        if ((r = check_tracking(json_object_get(body, "tracking"), reason))) goto fail;
        snprintf(j->status, sizeof j->status, "%s", json_string_value(st));
        j->req.status = j->status;
        if (json_object_get(body, "tracking") && !(j->req.tracking = json_deep_copy(json_object_get(body, "tracking")))) {
            r = field_oom(reason);
            goto fail;
        }
    }
        /* fall through */
    case SHOP_PAYMENT:                 /* commerce_payment() builds these */
    case SHOP_ORDER_GET:
        if (!order || !field_id_ok(order, strlen(order), SHOP_ID_MAX)) {
            r = field_bad(reason, "an order id is 1-64 letters, digits, '_', '-' or '.'");
            goto fail;
        }
        snprintf(j->order, sizeof j->order, "%s", order);
        j->req.order = j->order;
        break;
    }
    if ((j->req.action == SHOP_STOCK_SET || j->req.action == SHOP_STOCK_ADJUST || j->req.action == SHOP_ORDER_CREATE) &&
        !j->req.items) {
        r = field_oom(reason);
        goto fail;
    }
    return submit(j, origin, reason);
fail:
    job_free(j);
    origin_clear(origin);
    return r;
}

/* ---- payment webhooks ---- */

/* Event ids go into store keys and log lines: visible ASCII only. */
static int printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~') return 0;
    return 1;
}

/* Whether one of the v1= signatures in @sig is the HMAC of "<t>.<body>". */
static int signature_ok(const char *sig, const unsigned char *body, size_t len, long long *t)
{
    const char *key = srv.cfg.commerce_webhook_secret, *p, *ts = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE], want[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    char tbuf[32];
    unsigned char *msg;
    int found = 0;

    /* t= first: it is part of what is signed. */
    for (p = sig; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        while (*p == ' ') p++;
        if (!strncmp(p, "t=", 2)) ts = p + 2;
    }
    if (!ts) return 0;
    snprintf(tbuf, sizeof tbuf, "%.*s", (int)strcspn(ts, ","), ts);
    if (!*tbuf || strspn(tbuf, "0123456789") != strlen(tbuf) || strlen(tbuf) > 12) return 0;
    *t = atoll(tbuf);
    /* HMAC() is one-shot: the signed text is "<t>.<body>", built once. */
    if (!(msg = malloc(strlen(tbuf) + 1 + len + 1))) return 0;
    memcpy(msg, tbuf, strlen(tbuf));
    msg[strlen(tbuf)] = '.';
    if (len) memcpy(msg + strlen(tbuf) + 1, body, len);
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), msg, strlen(tbuf) + 1 + len, mac, &maclen)) {
        free(msg);
        return 0;
    }
    free(msg);
    for (p = sig; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        size_t n, i;
        while (*p == ' ') p++;
        if (strncmp(p, "v1=", 3)) continue;
        n = strcspn(p + 3, ",");
        if (n != 2 * (size_t)maclen) continue;
        for (i = 0; i < maclen; i++) {
            unsigned v;
            if (sscanf(p + 3 + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", p[4 + 2 * i]) ||
                !strchr("0123456789abcdefABCDEF", p[3 + 2 * i]))
                break;
            want[i] = (unsigned char)v;
        }
        /* Constant time: how much of a forged signature matches must not show in the timing. */
        if (i == maclen && !CRYPTO_memcmp(want, mac, maclen)) found = 1;
    }
    return found;
}

int commerce_payment(const unsigned char *body, size_t len, const char *sig, origin_t *origin, char *reason)
{
    char why[PROTO_REASON_MAX];
    const json_t *id, *type, *order;
    json_t *ev = NULL;
    com_job_t *j = NULL;
    long long t = 0, now = (long long)time(NULL);
    int r;

    if (!commerce_enabled() || !*srv.cfg.commerce_webhook_secret) {
        snprintf(reason, PROTO_REASON_MAX, "payment webhooks are off: set [adapter commerce] enabled = on and "
                 "webhook_secret");
        r = PROTO_E_DISABLED;
        goto fail;
    }
    if (!sig || !signature_ok(sig, body, len, &t)) {
        snprintf(reason, PROTO_REASON_MAX, "missing or wrong Herald-Signature: t=<unix seconds>,v1=<hex "
                 "HMAC-SHA256 of \"<t>.<body>\">");
        r = PROTO_E_UNAUTHORIZED;
        goto fail;
    }
    if (t < now - (long long)(srv.cfg.commerce_webhook_tolerance_ms / 1000) ||
        t > now + (long long)(srv.cfg.commerce_webhook_tolerance_ms / 1000)) {
        snprintf(reason, PROTO_REASON_MAX, "the signature's timestamp is outside webhook_tolerance: refused as a "
                 "replay");
        r = PROTO_E_UNAUTHORIZED;
        goto fail;
    }
    if ((r = msg_decode(PROTO_JSON, len ? body : (const unsigned char *)"", len, &ev, why))) {
        snprintf(reason, PROTO_REASON_MAX, "%s", why);
        goto fail;
    }
    id = json_object_get(ev, "id");
    type = json_object_get(ev, "type");
    order = json_object_get(json_object_get(ev, "data"), "order");
    r = PROTO_E_BAD_FIELD;
    if (!json_is_string(id) || !json_string_length(id) || json_string_length(id) > SHOP_EVENT_MAX ||
        !printable(json_string_value(id), json_string_length(id))) {
        field_bad(reason, "field \"id\" must be the provider's event id: 1-128 printable ASCII characters, no spaces");
        goto fail;
    }
    if (!json_is_string(type)) { field_bad(reason, "field \"type\" must be the event type, a string"); goto fail; }
    if (strcmp(json_string_value(type), "payment.succeeded") && strcmp(json_string_value(type), "payment.failed")) {
        /* Providers send many kinds of events to one endpoint: the others are
         * acknowledged, so they are not retried, and otherwise left alone. */
        json_decref(ev);
        reply_ok(origin, "commerce", json_pack("{s:b,s:s}", "ignored", 1, "reason", "not a payment event"));
        origin_clear(origin);
        return 0;
    }
    if (!json_is_string(order) || !field_id_ok(json_string_value(order), json_string_length(order), SHOP_ID_MAX)) {
        field_bad(reason, "field \"data.order\" must be an order id: 1-64 letters, digits, '_', '-' or '.'");
        goto fail;
    }
    if (!(j = calloc(1, sizeof *j))) { r = field_oom(reason); goto fail; }
    j->req.action = SHOP_PAYMENT;
    memcpy(j->event, json_string_value(id), json_string_length(id) + 1);
    snprintf(j->event_type, sizeof j->event_type, "%s", json_string_value(type));
    snprintf(j->order, sizeof j->order, "%s", json_string_value(order));
    snprintf(j->status, sizeof j->status, "%s", strcmp(j->event_type, "payment.succeeded") ? "PAYMENT_FAILED" : "PAID");
    j->req.event = j->event;
    j->req.event_type = j->event_type;
    j->req.order = j->order;
    j->req.status = j->status;
    j->req.window_ms = srv.cfg.commerce_webhook_window_ms;
    json_decref(ev);
    return submit(j, origin, reason);
fail:
    json_decref(ev);
    job_free(j);
    origin_clear(origin);
    return r;
}
