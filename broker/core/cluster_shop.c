/* broker/core/cluster_shop.c - see cluster_shop.h. */
#include "core/cluster_shop.h"
#include "core/cluster.h"
#include "core/cluster_op.h"
#include "herald.h"
#include "engine.h"
#include "shop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const action_names[] = {
    [SHOP_STOCK_SET] = "set", [SHOP_STOCK_ADJUST] = "adjust", [SHOP_ORDER_CREATE] = "create",
    [SHOP_ORDER_MOVE] = "move", [SHOP_ORDER_GET] = "get", [SHOP_PAYMENT] = "pay",
};

int cluster_shop_admin(const chan_t *c)
{
    const char *admin = srv.cfg.commerce_admin_channel;
    return srv.cfg.commerce_enabled && strlen(admin) == c->namelen && !memcmp(admin, c->name, c->namelen);
}

static void keep_of(const ns_config_t *ns, struct engine_keep *k)
{
    k->size = ns->history ? ns->history_size : 0;
    k->ttl_ms = ns->history ? ns->history_ttl_ms : 0;
}

/* What the stock channel's namespace (@ns) and the namespaces notified keep;
 * a state namespace takes no notification, as on LMDB (txnotify.h). */
static void keeps(const ns_config_t *ns, struct engine_shop_keep *k)
{
    const config_t *cfg = &srv.cfg;
    char probe[sizeof cfg->commerce_orders_ns + 2];
    const ns_config_t *o, *u = config_ns(cfg, "user:_", 6);
    const ns_config_t *a = config_ns(cfg, cfg->commerce_admin_channel, strlen(cfg->commerce_admin_channel));
    int n = snprintf(probe, sizeof probe, "%s:x", cfg->commerce_orders_ns);

    o = config_ns(cfg, probe, n > 0 ? (size_t)n : 0);
    keep_of(ns, &k->stock);
    keep_of(o, &k->order);
    keep_of(u, &k->user);
    keep_of(a, &k->admin);
    k->notify_order = !o->state;
    k->notify_user = !u->state;
    k->notify_admin = !a->state;
}

/* Redis' cjson writes an empty Lua table as {}: "allowed" is a list (the
 * next statuses of a final one: none). */
static void fix_lists(json_t *o)
{
    json_t *v = json_object_get(o, "allowed");
    if (json_is_object(v) && !json_object_size(v)) json_object_set_new(o, "allowed", json_array());
}

/* The notifications as app/commerce.c's done() reads them (ops->side). */
static hist_side_t *sides_of(const struct engine_shop_res *res, const char *epoch)
{
    hist_side_t *head = NULL, **tail = &head;

    for (size_t i = 0; i < res->nsides; i++) {
        hist_side_t *s = calloc(1, sizeof *s + res->sides[i].len + 1);
        if (!s) break;
        s->offset = res->sides[i].offset;
        s->chanlen = res->sides[i].len;
        memcpy(s->chan, res->sides[i].chan, s->chanlen);
        snprintf(s->epoch, sizeof s->epoch, "%s", epoch);
        *tail = s;
        tail = &s->next;
    }
    return head;
}

static void on_applied(void *arg, const struct engine_shop_res *res)
{
    cluster_op_t *x = arg;
    chan_t *c = x->chan;
    json_t *result = NULL;
    hist_side_t *side = NULL;

    if (res->status) {
        /* The script may have run before the connection went: say so. */
        cluster_op_unavailable(x, res->status == -ECANCELED ? "" : "; the connection failed while the "
                    "request was in flight, so it may or may not have been applied");
    } else if (!(result = json_loadb(res->result, res->resultlen, 0, NULL)) || !json_is_object(result)) {
        if (x->ops->done) x->ops->done(c, x->ops, PROTO_E_INTERNAL, NULL);
        reply_error(&x->origin, 0, PROTO_E_INTERNAL, "the commerce script gave an unreadable answer", NULL);
    } else {
        fix_lists(result);
        if (!res->refused) x->ops->side = side = sides_of(res, res->epoch);
        pubpipe_custom_report(c, x->ops, &x->origin, res->offset, res->refused ? NULL : res->rec,
                              res->refused ? 0 : res->reclen, result);
        x->ops->side = NULL;
        if (!res->refused) {
            /* Counted where published, as sides_fanout() counts them on one node. */
            if (!res->unchanged) {
                srv.stats.publications++;
                metrics.ns_publications[stats_ns_index(c->ns)]++;
            }
            for (hist_side_t *s = side; s; s = s->next) {
                const ns_config_t *ns = config_ns(&srv.cfg, s->chan, s->chanlen);
                if (s->chanlen <= 4 || memcmp(s->chan, "sys:", 4)) srv.stats.publications++;
                metrics.ns_publications[stats_ns_index(ns)]++;
            }
        }
        hist_sides_free(side);
    }
    json_decref(result);
    cluster_op_free(x);
}

/* The @n webhook names @names as a JSON list; NULL: out of memory (which
 * json_object_set_new() then refuses). */
static json_t *names_json(const char *const *names, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_string(names[i]));
    return a;
}

/* Sets "hp" in @o: the webhooks that get each publication of the script as
 * a "publication" event, by the kind of channel ("stock": @c, "order": in
 * namespace @ons, "user", "admin": channel @admin), found by namespace as
 * pubpipe.c's target_policy() finds them for hist_tx_publish() on LMDB.
 * Nothing when no webhook wants any. Return: 0, or -1 (out of memory). */
static int pub_hooks(json_t *o, const chan_t *c, const char *ons, const char *admin)
{
    static const char *const kinds[4] = { "stock", "order", "user", "admin" };
    const char *chans[4] = { c->name, ons, "user:", admin }, *names[WEBHOOK_MAX];
    size_t lens[4] = { c->namelen, strlen(ons), 5, strlen(admin) }, n, total = 0;
    char probe[sizeof srv.cfg.commerce_orders_ns + 2];
    json_t *hp;

    if (!srv.cfg.nwebhooks) return 0;
    /* The orders' channels are "{ons}:{order}#{owner}": the namespace is @ons. */
    lens[1] = (size_t)snprintf(probe, sizeof probe, "%.*s:", (int)(sizeof probe - 2), ons);
    chans[1] = probe;
    if (!(hp = json_object())) return -1;
    for (int k = 0; k < 4; k++) {
        if (!(n = config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, chans[k], lens[k], names))) continue;
        total += n;
        if (json_object_set_new(hp, kinds[k], names_json(names, n))) {
            json_decref(hp);
            return -1;
        }
    }
    if (!total) {
        json_decref(hp);
        return 0;
    }
    return json_object_set_new(o, "hp", hp);
}

/* The request as the script reads it (engine_shop()). */
static char *request_json(const chan_t *c, const shop_req_t *r)
{
    const config_t *cfg = &srv.cfg;
    json_t *o = json_pack("{s:s,s:s%,s:s,s:s}", "a", action_names[r->action], "chan", c->name, (size_t)c->namelen,
                          "ons", r->orders_ns ? r->orders_ns : cfg->commerce_orders_ns, "admin",
                          r->admin_channel ? r->admin_channel : cfg->commerce_admin_channel);
    char *s;

    if (!o) return NULL;
    if (r->order) json_object_set_new(o, "order", json_string(r->order));
    if (r->owner) json_object_set_new(o, "owner", json_string(r->owner));
    if (r->status) json_object_set_new(o, "status", json_string(r->status));
    if (r->tracking) json_object_set(o, "tracking", r->tracking);
    if (r->action == SHOP_ORDER_CREATE) json_object_set(o, "lines", r->items);
    if (r->action == SHOP_STOCK_SET || r->action == SHOP_STOCK_ADJUST) {
        /* A list, so the script sees the request's order (Lua tables have none). */
        json_t *items = json_array(), *v;
        const char *sku;
        json_object_foreach(r->items, sku, v) json_array_append_new(items, json_pack("[s,O]", sku, v));
        json_object_set_new(o, "items", items);
    }
    /* The webhooks app/commerce.c chose, as shop.c reads them on LMDB, and
     * those of the publications; a request that cannot carry them is not
     * sent (its events would be lost). */
    if ((r->nhooks_created && json_object_set_new(o, "hc", names_json(r->hooks_created, r->nhooks_created))) ||
        (r->nhooks_status && json_object_set_new(o, "hs", names_json(r->hooks_status, r->nhooks_status))) ||
        pub_hooks(o, c, json_string_value(json_object_get(o, "ons")), json_string_value(json_object_get(o, "admin")))) {
        json_decref(o);
        return NULL;
    }
    if (r->action == SHOP_PAYMENT) {
        json_object_set_new(o, "event", json_string(r->event));
        json_object_set_new(o, "event_type", json_string(r->event_type));
        json_object_set_new(o, "window", json_integer(r->window_ms));
    }
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int cluster_shop(chan_t *c, pub_ops_t *ops, origin_t *origin)
{
    const shop_req_t *r = ops->ops[0].arg;
    struct engine_shop_keep k;
    cluster_op_t *x;
    char *req;
    int rc;

    if ((unsigned)r->action >= sizeof action_names / sizeof *action_names || !action_names[r->action])
        return cluster_op_refuse(c, ops, origin, PROTO_E_INTERNAL, "unknown commerce action");
    if (!(req = request_json(c, r))) {
        pub_ops_free(ops);
        origin_clear(origin);
        return -ENOMEM;
    }
    if (!(x = cluster_op_new(c, ops, origin))) {
        free(req);
        return -ENOMEM;
    }
    keeps(c->ns, &k);
    rc = engine_shop(cluster_engine(), req, strlen(req), &k, on_applied, x);
    free(req);
    if (rc) cluster_op_not_sent(x, rc, NULL);
    return 0;
}
