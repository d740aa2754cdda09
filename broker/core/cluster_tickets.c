/* broker/core/cluster_tickets.c - see cluster_tickets.h. */
#include "core/cluster_tickets.h"
#include "core/cluster.h"
#include "core/cluster_op.h"
#include "herald.h"
#include "engine.h"
#include "chname.h"
#include "mpack.h"
#include "tickets_db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const action_names[] = {
    [TICKETS_CREATE] = "create", [TICKETS_STATUS] = "status", [TICKETS_ASSIGN] = "assign",
    [TICKETS_COMMENT] = "comment", [TICKETS_BULK_STATUS] = "bulk_status", [TICKETS_GET] = "get",
};

/* What the dashboard's namespace and the timelines' namespace keep. */
static void keeps(const ns_config_t *ns, const char *tl, struct engine_tickets_keep *k)
{
    char probe[CHNAME_MAX + 1];
    const ns_config_t *t;

    snprintf(probe, sizeof probe, "%s:_", tl);
    t = config_ns(&srv.cfg, probe, strlen(probe));
    k->board.size = ns->history ? ns->history_size : 0;
    k->board.ttl_ms = ns->history ? ns->history_ttl_ms : 0;
    k->timeline.size = t->history ? t->history_size : 0;
    k->timeline.ttl_ms = t->history ? t->history_ttl_ms : 0;
    /* As on one node: a state namespace takes only its own deltas. */
    k->notify = !t->state;
}

/* The timeline entries the script published, as the list pubpipe.c hands a
 * custom operation's done() (app/tickets.c names them in the answer).
 * Return: the list (hist_sides_free()), or NULL (none, or out of memory:
 * the answer then names none; the entries were published all the same). */
static hist_side_t *sides_of(const struct engine_tickets_res *res)
{
    hist_side_t *head = NULL, **tail = &head;

    for (size_t i = 0; i < res->nsides; i++) {
        const struct engine_side *e = &res->sides[i];
        hist_side_t *s = calloc(1, sizeof *s + e->len + 1);
        if (!s) break;
        memcpy(s->chan, e->chan, e->len);
        s->chanlen = e->len;
        s->offset = e->offset;
        *tail = s;
        tail = &s->next;
    }
    return head;
}

static void on_applied(void *arg, const struct engine_tickets_res *res)
{
    cluster_op_t *x = arg;
    chan_t *c = x->chan;
    char reason[PROTO_REASON_MAX];
    json_t *result = NULL;
    hist_side_t *sides;

    if (res->status) {
        /* The script may have run before the connection went: say so. */
        cluster_op_unavailable(x, res->status == -ECANCELED ? "" : "; the connection failed while the "
                    "request was in flight, so it may or may not have been applied");
    } else if (mpack_decode(res->result, res->resultlen, &result, reason) || !json_is_object(result)) {
        if (x->ops->done) x->ops->done(c, x->ops, PROTO_E_INTERNAL, NULL);
        reply_error(&x->origin, 0, PROTO_E_INTERNAL, "the tickets script gave an unreadable answer", NULL);
    } else {
        sides = res->refused ? NULL : sides_of(res);
        x->ops->side = sides;
        pubpipe_custom_report(c, x->ops, &x->origin, res->offset, res->refused ? NULL : res->rec,
                              res->refused ? 0 : res->reclen, result);
        x->ops->side = NULL;
        hist_sides_free(sides);
        if (!res->refused && !res->unchanged) {
            /* Counted as one node counts them: the delta, then each timeline entry in its namespace. */
            srv.stats.publications += 1 + res->nsides;
            metrics.ns_publications[stats_ns_index(c->ns)]++;
            for (size_t i = 0; i < res->nsides; i++) {
                const ns_config_t *ns = config_ns(&srv.cfg, res->sides[i].chan, res->sides[i].len);
                metrics.ns_publications[stats_ns_index(ns)]++;
            }
        }
    }
    json_decref(result);
    cluster_op_free(x);
}

/* The status machine as the script reads it ({"open": ["in_progress",
 * "closed"], ...}), walked from "open" through tickets_next(), so the two
 * engines cannot disagree on it. Return: a new reference, or NULL. */
static json_t *machine(void)
{
    const char *todo[8] = { "open" };
    size_t n = 1;
    json_t *m = json_object();

    for (size_t i = 0; m && i < n; i++) {
        const char *const *next = tickets_next(todo[i]);
        json_t *a = json_array();
        for (size_t k = 0; a && next && next[k]; k++) {
            size_t j;
            json_array_append_new(a, json_string(next[k]));
            for (j = 0; j < n && strcmp(todo[j], next[k]); j++) {}
            if (j == n && n < sizeof todo / sizeof *todo) todo[n++] = next[k];
        }
        if (!a || json_object_set_new(m, todo[i], a)) {
            json_decref(m);
            return NULL;
        }
    }
    return m;
}

/* The @n webhook names @names as a JSON list; NULL: out of memory (which
 * json_object_set_new() then refuses). */
static json_t *names_json(const char *const *names, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_string(names[i]));
    return a;
}

/* Sets "hp" in @o: the webhooks that get the script's publications as
 * "publication" events, "board" (the dashboard @c's) and "tl" (the
 * timelines', namespace @tl), found by namespace as pubpipe.c's
 * target_policy() finds them for hist_tx_publish() on LMDB. Nothing when no
 * webhook wants either. Return: 0, or -1 (out of memory). */
static int pub_hooks(json_t *o, const chan_t *c, const char *tl)
{
    const char *names[WEBHOOK_MAX];
    char probe[sizeof srv.cfg.tickets_timeline_ns + 2];
    size_t nb, nt;
    int pl = snprintf(probe, sizeof probe, "%.*s:", (int)(sizeof probe - 2), tl);
    json_t *hp;

    if (!srv.cfg.nwebhooks) return 0;
    nb = config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, c->name, c->namelen, names);
    if (!(hp = json_object()) || (nb && json_object_set_new(hp, "board", names_json(names, nb)))) goto fail;
    nt = config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, probe, (size_t)pl, names);
    if (nt && json_object_set_new(hp, "tl", names_json(names, nt))) goto fail;
    if (!nb && !nt) {
        json_decref(hp);
        return 0;
    }
    return json_object_set_new(o, "hp", hp);
fail:
    json_decref(hp);
    return -1;
}

/* The request as the script reads it (engine_tickets()). */
static char *request_json(const chan_t *c, const tickets_req_t *r)
{
    json_t *o = json_pack("{s:s,s:s,s:o?}", "a", action_names[r->action], "tl",
                          r->timeline_ns ? r->timeline_ns : "ticket", "next", machine());
    char *s;

    if (!o || !json_object_get(o, "next")) {
        json_decref(o);
        return NULL;
    }
    if (r->id) json_object_set_new(o, "id", json_string(r->id));
    if (r->status) json_object_set_new(o, "status", json_string(r->status));
    if (r->assignee) json_object_set_new(o, "assignee", json_string(r->assignee));
    if (r->by) json_object_set_new(o, "by", json_string(r->by));
    if (r->ticket) json_object_set(o, "ticket", r->ticket);
    if (r->comment) json_object_set(o, "comment", r->comment);
    if (r->ids) json_object_set(o, "ids", r->ids);
    /* The webhooks app/tickets.c chose, as tickets_db.c reads them on LMDB,
     * and those of the publications; a request that cannot carry them is not
     * sent (its events would be lost). */
    if ((r->nhooks && json_object_set_new(o, "hooks", names_json(r->hooks, r->nhooks))) ||
        (r->action != TICKETS_GET && pub_hooks(o, c, r->timeline_ns ? r->timeline_ns : "ticket"))) {
        json_decref(o);
        return NULL;
    }
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int cluster_tickets(chan_t *c, pub_ops_t *ops, origin_t *origin)
{
    const tickets_req_t *r = ops->ops[0].arg;
    struct engine_tickets_keep k;
    cluster_op_t *x;
    char *req;
    int rc;

    if ((unsigned)r->action >= sizeof action_names / sizeof *action_names || !action_names[r->action])
        return cluster_op_refuse(c, ops, origin, PROTO_E_INTERNAL, "unknown tickets action");
    if (!(req = request_json(c, r))) {
        pub_ops_free(ops);
        origin_clear(origin);
        return -ENOMEM;
    }
    if (!(x = cluster_op_new(c, ops, origin))) {
        free(req);
        return -ENOMEM;
    }
    keeps(c->ns, r->timeline_ns ? r->timeline_ns : "ticket", &k);
    rc = engine_tickets(cluster_engine(), c->name, c->namelen, req, strlen(req), &k, on_applied, x);
    free(req);
    if (rc) cluster_op_not_sent(x, rc, NULL);
    return 0;
}
