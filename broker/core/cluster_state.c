/* broker/core/cluster_state.c - see cluster_state.h. */
#include "core/cluster_state.h"
#include "core/cluster.h"
#include "core/cluster_op.h"
#include "core/cluster_seats.h"
#include "core/cluster_shop.h"
#include "core/cluster_tickets.h"
#include "herald.h"
#include "clock.h"
#include "seatmap.h"
#include "shop.h"
#include "tickets_db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static void on_applied(void *arg, const struct engine_state_res *res)
{
    cluster_op_t *x = arg;
    chan_t *c = x->chan;

    if (res->status == 0) {
        pubpipe_state_report(c, x->ops, &x->origin, 0, 0, 0, res->offset, res->rec, res->reclen);
        if (!res->unchanged) {
            srv.stats.publications++;
            metrics.ns_publications[stats_ns_index(c->ns)]++;
        }
    } else if (res->status == ENGINE_E_CONFLICT || res->status == ENGINE_E_NOT_INTEGER) {
        pubpipe_state_report(c, x->ops, &x->origin, res->status == ENGINE_E_CONFLICT ? HIST_E_CONFLICT
                             : HIST_E_NOT_INTEGER, res->failed_op, res->conflict_version, 0, NULL, 0);
    } else {
        /* The script may have run before the connection went: say so. */
        cluster_op_unavailable(x, res->status == -ECANCELED ? "" : "; the connection failed while the "
                    "operations were in flight, so they may or may not have been applied");
    }
    cluster_op_free(x);
}

int cluster_state(chan_t *c, pub_ops_t *ops, origin_t *origin)
{
    struct engine_keep keep = { c->ns->history ? c->ns->history_size : 0, c->ns->history ? c->ns->history_ttl_ms : 0 };
    const char *hooks[WEBHOOK_MAX];
    size_t nhooks;
    cluster_op_t *x;
    int rc;

    /* A seat request is one custom operation of seatmap_apply(): its rules run as a script in Redis. */
    if (ops->n == 1 && ops->ops[0].type == HIST_OP_CUSTOM && ops->ops[0].custom == seatmap_apply)
        return cluster_seats(c, ops, origin);
    /* So is a commerce request, of shop_apply(), and a ticket request, of
     * tickets_apply(). */
    if (ops->n == 1 && ops->ops[0].type == HIST_OP_CUSTOM && ops->ops[0].custom == shop_apply)
        return cluster_shop(c, ops, origin);
    if (ops->n == 1 && ops->ops[0].type == HIST_OP_CUSTOM && ops->ops[0].custom == tickets_apply)
        return cluster_tickets(c, ops, origin);
    for (size_t i = 0; i < ops->n; i++)
        if (ops->ops[i].type == HIST_OP_CUSTOM)
            return cluster_op_refuse(c, ops, origin, PROTO_E_DISABLED, "custom state operations other than seat "
                                     "maps, commerce and tickets do not run on the redis engine (docs/cluster.md)");
    if (!(x = cluster_op_new(c, ops, origin))) return -ENOMEM;
    /* Its delta goes to the webhooks as a publication, as on LMDB. */
    nhooks = srv.cfg.nwebhooks ? config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, c->name, c->namelen, hooks) : 0;
    rc = engine_state_ops(cluster_engine(), c->name, c->namelen, ops->ops, ops->n, clock_wall_ms(), &keep, hooks,
                          nhooks, on_applied, x);
    if (rc) cluster_op_not_sent(x, rc, rc == -ENOMEM ? NULL : "channel name too long");
    return 0;
}

struct held {
    chan_t *chan;
    engine_state_read_cb cb;
    void *arg;
};

static void on_read(void *arg, int status, hist_state_t *st)
{
    struct held *h = arg;

    h->cb(h->arg, status, st);
    h->chan->inflight--;
    chan_maybe_drop(h->chan);
    free(h);
}

int cluster_state_read(chan_t *c, const char *prefix, size_t plen, const char *after, size_t alen, size_t limit,
                       engine_state_read_cb cb, void *arg)
{
    struct held *h = malloc(sizeof *h);
    int rc;

    if (!h) return -ENOMEM;
    h->chan = c;
    h->cb = cb;
    h->arg = arg;
    c->inflight++;
    if ((rc = engine_state_read(cluster_engine(), c->name, c->namelen, prefix, plen, after, alen, limit, on_read,
                                h))) {
        c->inflight--;
        free(h);
        /* -ENOTCONN, or a name the key layout cannot hold (-ENAMETOOLONG). */
        return rc == -ENOMEM ? rc : PROTO_E_ENGINE_UNAVAILABLE;
    }
    return 0;
}
