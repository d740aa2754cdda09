/* broker/core/cluster_seats.c - see cluster_seats.h. */
#include "core/cluster_seats.h"
#include "core/cluster.h"
#include "core/cluster_op.h"
#include "herald.h"
#include "engine.h"
#include "mpack.h"
#include "seatmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SWEEP_LEASE_MS 1000       /* a dead sweeper's lease ends within this */
#define SWEEP_MAX 200             /* holds freed per sweep: bounds one script's run */
#define ALIVE_MS 3000             /* a node whose sweep calls stop is dead after this (release on disconnect) */

static struct {
    int sweeping;                 /* a sweep of this node is in flight */
    char node[96];                /* this node's id in Redis (host, pid and start time) */
} cs;

/* This node's id in Redis, made once: unique across machines (the host
 * name) and across restarts (the pid and the monotonic clock). */
static const char *node_id(void)
{
    char host[41] = "";

    if (!cs.node[0]) {
        if (gethostname(host, sizeof host - 1)) host[0] = '\0';
        host[sizeof host - 1] = '\0';
        snprintf(cs.node, sizeof cs.node, "%s-%x-%llx", host, (unsigned)getpid(), (unsigned long long)uv_hrtime());
    }
    return cs.node;
}

static const char *const action_names[] = {
    [SEAT_DEFINE] = "define", [SEAT_ADD] = "add", [SEAT_HOLD] = "hold", [SEAT_CONFIRM] = "confirm",
    [SEAT_RELEASE] = "release", [SEAT_EXPIRE] = "expire", [SEAT_WAIT] = "waitlist",
    [SEAT_UNWAIT] = "waitlist_leave", [SEAT_POSITION] = "waitlist_position",
};

/* What the seats namespace (the map), the user namespace (the notices) and
 * the namespace of @feed (the organiser's feed channel, or NULL) keep. */
/* The webhooks the seat script queues events for, as it reads them:
 * {"booked":[..],"expired":[..]} (seat.booked and seat.expired, any seat
 * map's: config_webhooks_for() of channel ""), then the publication events
 * of what it publishes: "map" (the seat maps' deltas), "user" (the notices
 * on user:{id}, when published) and "feed" (the organiser's @feed, or
 * NULL), as the LMDB store queues them (pubpipe.c's target_policy()).
 * Into @buf; NULL when no webhook wants any of it. Loop thread. */
#define SEAT_HOOKS_MAX (5 * WEBHOOK_MAX * 70 + 64)
static const char *seat_hooks(const char *feed, int notify, char *buf, size_t cap)
{
    static const char *const kinds[5] = { "booked", "expired", "map", "user", "feed" };
    const unsigned ev[5] = { WH_EV_SEAT_BOOKED, WH_EV_SEAT_EXPIRED, WH_EV_PUBLICATION, WH_EV_PUBLICATION,
                             WH_EV_PUBLICATION };
    const char *chans[5] = { "", "", "seats:_", notify ? "user:_" : NULL, feed };
    const char *names[WEBHOOK_MAX];
    size_t n, total = 0, at = 0;

    if (!srv.cfg.nwebhooks) return NULL;
    at += (size_t)snprintf(buf + at, cap - at, "{");
    for (int k = 0; k < 5; k++) {
        n = chans[k] ? config_webhooks_for(&srv.cfg, ev[k], chans[k], strlen(chans[k]), names) : 0;
        total += n;
        at += (size_t)snprintf(buf + at, cap - at, "%s\"%s\":[", k ? "," : "", kinds[k]);
        /* Webhook names are letters, digits, '_' and '-': nothing to escape. */
        for (size_t i = 0; i < n; i++) at += (size_t)snprintf(buf + at, cap - at, "%s\"%s\"", i ? "," : "", names[i]);
        at += (size_t)snprintf(buf + at, cap - at, "]");
    }
    snprintf(buf + at, cap - at, "}");
    return total ? buf : NULL;
}

static void keeps(const ns_config_t *ns, const char *feed, struct engine_seats_keep *k, char *hooks)
{
    const ns_config_t *u = config_ns(&srv.cfg, "user:_", 6);
    const ns_config_t *f = feed ? config_ns(&srv.cfg, feed, strlen(feed)) : NULL;

    k->map.size = ns->history ? ns->history_size : 0;
    k->map.ttl_ms = ns->history ? ns->history_ttl_ms : 0;
    k->user.size = u->history ? u->history_size : 0;
    k->user.ttl_ms = u->history ? u->history_ttl_ms : 0;
    k->feed.size = f && f->history ? f->history_size : 0;
    k->feed.ttl_ms = f && f->history ? f->history_ttl_ms : 0;
    /* As on one node: a state namespace takes only its own deltas. */
    k->notify = !u->state;
    k->hooks = seat_hooks(feed, k->notify, hooks, SEAT_HOOKS_MAX);
}

static void on_applied(void *arg, const struct engine_seats_res *res)
{
    cluster_op_t *x = arg;
    chan_t *c = x->chan;
    char reason[PROTO_REASON_MAX];
    json_t *result = NULL, *secs;

    if (res->status) {
        /* The script may have run before the connection went: say so. */
        cluster_op_unavailable(x, res->status == -ECANCELED ? "" : "; the connection failed while the "
                    "request was in flight, so it may or may not have been applied");
    } else if (mpack_decode(res->result, res->resultlen, &result, reason) || !json_is_object(result)) {
        if (x->ops->done) x->ops->done(c, x->ops, PROTO_E_INTERNAL, NULL);
        reply_error(&x->origin, 0, PROTO_E_INTERNAL, "the seat map script gave an unreadable answer", NULL);
    } else {
        /* Redis' cmsgpack writes an empty table as a list: sections are a map. */
        if ((secs = json_object_get(result, "sections")) && json_is_array(secs) && !json_array_size(secs))
            json_object_set_new(result, "sections", json_object());
        pubpipe_custom_report(c, x->ops, &x->origin, res->offset, res->refused ? NULL : res->rec,
                              res->refused ? 0 : res->reclen, result);
        if (!res->refused && !res->unchanged) {
            srv.stats.publications++;
            metrics.ns_publications[stats_ns_index(c->ns)]++;
        }
    }
    json_decref(result);
    cluster_op_free(x);
}

/* The request as the script reads it (engine_seats()). */
static char *request_json(const chan_t *c, const seat_req_t *r)
{
    json_t *o = json_pack("{s:s,s:s%,s:I,s:I,s:b,s:b}", "a", action_names[r->action], "chan", c->name,
                          (size_t)c->namelen, "offer_ttl", (json_int_t)r->offer_ttl_ms, "waitlist_max",
                          (json_int_t)r->waitlist_max, "cancel", r->cancel, "lenient", r->lenient);
    char *s;

    if (!o) return NULL;
    if (r->user) json_object_set_new(o, "user", json_string(r->user));
    if (r->seats) json_object_set(o, "seats", r->seats);
    if (r->section) json_object_set_new(o, "section", json_string(r->section));
    /* The organiser's feed (app/seats.c made the name, valid); only a
     * booking publishes there. */
    if (r->feed && r->action == SEAT_CONFIRM) json_object_set_new(o, "feed", json_string(r->feed));
    if (r->action == SEAT_HOLD) json_object_set_new(o, "ttl", json_integer(r->ttl_ms));
    /* Release on disconnect: not while the user is connected to another node. */
    if (r->action == SEAT_RELEASE && r->lenient) {
        json_object_set_new(o, "away", json_true());
        json_object_set_new(o, "node", json_string(node_id()));
    }
    if (r->action == SEAT_EXPIRE) {
        json_object_set_new(o, "seat", json_copy(json_array_get(r->seats, 0)));
        json_object_set_new(o, "at", json_integer(r->at_ms));
    }
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int cluster_seats(chan_t *c, pub_ops_t *ops, origin_t *origin)
{
    const seat_req_t *r = ops->ops[0].arg;
    struct engine_seats_keep k;
    char hooks[SEAT_HOOKS_MAX];
    cluster_op_t *x;
    char *req;
    int rc;

    if ((unsigned)r->action >= sizeof action_names / sizeof *action_names || !action_names[r->action])
        return cluster_op_refuse(c, ops, origin, PROTO_E_INTERNAL, "unknown seat action");
    if (!(req = request_json(c, r))) {
        pub_ops_free(ops);
        origin_clear(origin);
        return -ENOMEM;
    }
    if (!(x = cluster_op_new(c, ops, origin))) {
        free(req);
        return -ENOMEM;
    }
    keeps(c->ns, r->action == SEAT_CONFIRM ? r->feed : NULL, &k, hooks);
    rc = engine_seats(cluster_engine(), req, strlen(req), &k, on_applied, x);
    free(req);
    if (rc) cluster_op_not_sent(x, rc, NULL);
    return 0;
}

/* A sweep is done: each hold it freed was one delta this node published. */
static void on_swept(void *arg, int status, uint64_t freed)
{
    const ns_config_t *ns = arg;

    cs.sweeping = 0;
    if (status || !freed) return;
    srv.stats.publications += freed;
    metrics.ns_publications[stats_ns_index(ns)] += freed;
    /* A full sweep may have left due holds behind (an on-sale's wave of
     * expiries): go on now rather than a tick later. */
    if (freed >= SWEEP_MAX) cluster_seats_tick();
}

void cluster_seats_tick(void)
{
    engine_t *e = cluster_engine();
    const ns_config_t *ns;
    struct engine_seats_keep k;
    char hooks[SEAT_HOOKS_MAX];

    if (!e || cs.sweeping || !engine_up(e)) return;
    ns = config_ns(&srv.cfg, "seats:_", 7);
    if (!ns->state) return;
    keeps(ns, NULL, &k, hooks);
    if (!engine_seats_sweep(e, node_id(), SWEEP_LEASE_MS, SWEEP_MAX, ns->seat_offer_ttl_ms, ALIVE_MS, &k, on_swept,
                            (void *)ns))
        cs.sweeping = 1;
}

void cluster_seats_conn(const char *user, int delta)
{
    engine_t *e = cluster_engine();

    /* Redis down: the count is missed, and a release it should have held back
     * goes ahead, as without the count (docs/cluster.md#seat-maps). */
    if (e) engine_seats_conn(e, node_id(), user, delta, NULL, NULL);
}
