/* broker/core/cluster_signal.c - see cluster_signal.h. */
#include "core/cluster_signal.h"
#include "core/cluster.h"
#include "herald.h"
#include "log.h"
#include "net/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most one "malformed signal" line per this long (the rest are counted). */
#define MALFORMED_LOG_MS 10000

struct sig_ctx {
    origin_t origin;
};

static void unavailable(const origin_t *o, const char *maybe)
{
    char why[PROTO_REASON_MAX];
    snprintf(why, sizeof why, "the redis engine is unavailable (see /api/health/ready): the signal was not sent%s",
             maybe);
    reply_error(o, 0, PROTO_E_ENGINE_UNAVAILABLE, why, NULL);
}

static void on_sent(void *arg, int status, uint64_t receivers)
{
    struct sig_ctx *x = arg;
    (void)receivers;

    /* Success has no answer, as on one node. */
    if (status && status != -ECANCELED)
        unavailable(&x->origin, " or may have been: the connection failed while it was in flight");
    origin_clear(&x->origin);
    free(x);
}

int cluster_signal(chan_t *c, const json_t *from, const json_t *data, origin_t *origin)
{
    json_t *body = json_pack("{s:O,s:O}", "from", from, "data", data);
    struct sig_ctx *x = NULL;
    char *payload = NULL;
    size_t n = 0;
    int rc;

    if (!engine_up(cluster_engine())) {
        json_decref(body);
        unavailable(origin, "");
        origin_clear(origin);
        return 0;
    }
    if (body) n = json_dumpb(body, NULL, 0, JSON_COMPACT);
    if (!body || !n || !(payload = malloc(n)) || json_dumpb(body, payload, n, JSON_COMPACT) != n ||
        !(x = malloc(sizeof *x))) {
        json_decref(body);
        free(payload);
        origin_clear(origin);
        return -ENOMEM;
    }
    json_decref(body);
    x->origin = *origin;
    origin->id = NULL;
    rc = engine_signal(cluster_engine(), c->name, c->namelen, payload, n, on_sent, x);
    free(payload);
    if (rc) {
        if (rc == -ENOTCONN) unavailable(&x->origin, "");
        origin_clear(&x->origin);
        free(x);
        return rc == -ENOTCONN ? 0 : -ENOMEM;
    }
    return 0;
}

static void malformed(const chan_t *c, const char *why)
{
    static uint64_t last_ms, unlogged;
    uint64_t now = uv_now(&srv.loop);

    if (last_ms && now - last_ms < MALFORMED_LOG_MS) {
        unlogged++;
        return;
    }
    hlog(LOG_WARN, "cluster", "dropped a malformed signal for %s from the engine: %s (%llu more since the last "
         "such line)", c->name, why, (unsigned long long)unlogged);
    last_ms = now ? now : 1;
    unlogged = 0;
}

void cluster_signal_on_event(const char *name, size_t len, const char *payload, size_t n)
{
    chan_t *c = chan_find(name, len);
    json_t *body, *from, *data, *client, *user, *ev;
    sess_t *except = NULL;
    size_t clen;

    if (!c || !c->nsubs) return;
    if (!(body = json_loadb(payload, n, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(body)) {
        malformed(c, "not a JSON object");
        json_decref(body);
        return;
    }
    from = json_object_get(body, "from");
    data = json_object_get(body, "data");
    client = json_object_get(from, "client");
    user = json_object_get(from, "user");
    if (!json_is_object(from) || !data || !json_is_string(client) || (user && !json_is_string(user)) ||
        json_object_size(from) != (user ? 2u : 1u) || json_object_size(body) != 2) {
        malformed(c, "not {\"from\":{\"user\"?,\"client\"},\"data\"}");
        json_decref(body);
        return;
    }
    /* A node's namespaces are its own: one with signals off delivers none. */
    if (!c->ns->signals) {
        json_decref(body);
        return;
    }
    /* The sender, on its own node, is left out as on one node. */
    clen = json_string_length(client);
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (strlen(c->members[i]->id) == clen && !memcmp(c->members[i]->id, json_string_value(client), clen)) {
            except = c->members[i];
            break;
        }
    ev = json_pack("{s:s,s:s%,s:O,s:O}", "op", "signal", "channel", c->name, (size_t)c->namelen, "from", from,
                   "data", data);
    if (!ev || chan_broadcast(c, ev, except))
        hlog(LOG_WARN, "cluster", "out of memory delivering a signal of %s", c->name);
    json_decref(ev);
    json_decref(body);
}
