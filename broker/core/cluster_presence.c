/* broker/core/cluster_presence.c - see cluster_presence.h. */
#include "core/cluster_presence.h"
#include "core/cluster.h"
#include "core/cluster_occ.h"
#include "core/presence.h"
#include "herald.h"
#include "log.h"
#include "net/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    char node[17];                /* this node's id in the engine */
    char old[17];                 /* a former id to drop at the next beat, or "" */
    uv_timer_t beat;
    int timer_on;
    int leased;                   /* a beat found our lease: a later "none" means we were taken for dead */
    unsigned gen;                 /* bumped with each new id */
} cp;

static void rotate(void);

static void new_id(void)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[8];

    if (uv_random(NULL, NULL, b, sizeof b, 0, NULL)) {
        uint64_t t = uv_hrtime();
        memcpy(b, &t, sizeof b);
    }
    for (size_t i = 0; i < sizeof b; i++) {
        cp.node[2 * i] = hex[b[i] >> 4];
        cp.node[2 * i + 1] = hex[b[i] & 15];
    }
    cp.node[16] = '\0';
    cp.leased = 0;
    cp.gen++;
}

const char *cluster_presence_node(unsigned *gen)
{
    *gen = cp.gen;
    return cp.node;
}

static unsigned lease_ms(void) { return 2 * srv.cfg.engine_presence_heartbeat_ms; }

void cluster_presence_no_lease(unsigned gen)
{
    /* Taken for dead (a stall longer than the lease): start again under a
     * new id, once per id. */
    if (gen == cp.gen) {
        hlog(LOG_WARN, "cluster", "this node's presence lease in redis had ended; writing its members again");
        rotate();
    }
}

static void on_conn_done(void *arg, int status, uint64_t value)
{
    (void)value;
    if (status == ENGINE_E_NO_LEASE) {
        cluster_presence_no_lease((unsigned)(uintptr_t)arg);
        return;
    }
    if (status && status != -ECANCELED)
        hlog(LOG_WARN, "cluster", "writing a presence change to redis failed (%s); it is written again when the "
             "connection is back", strerror(-status));
}

void cluster_presence_hooks(const chan_t *c, unsigned ev, char *buf, size_t cap)
{
    const char *names[WEBHOOK_MAX];
    size_t n = config_webhooks_for(&srv.cfg, ev, c->name, c->namelen, names), at = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? "\n" : "", names[i]);
}

void cluster_presence_conn(chan_t *c, const char *key, size_t keylen, int anon, const json_t *info,
                           const char *client, int mode, int64_t count)
{
    char mkey[2 + 1024], added[WEBHOOK_MAX * 66], removed[WEBHOOK_MAX * 66];
    json_t *j;
    char *js;
    struct engine_member m;
    int rc;

    if (!cluster_engine() || keylen > sizeof mkey - 2) return;
    mkey[0] = anon ? 'c' : 'u';
    mkey[1] = ':';
    memcpy(mkey + 2, key, keylen);
    j = json_pack("{s:s%}", anon ? "client" : "user", key, keylen);
    if (j && info) json_object_set((json_t *)j, "info", (json_t *)info);
    js = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!js) {
        hlog(LOG_WARN, "cluster", "out of memory writing a presence change of %s", c->name);
        return;
    }
    m = (struct engine_member){ mkey, keylen + 2, js, strlen(js), client, strlen(client), NULL, NULL };
    if (srv.cfg.nwebhooks) {
        /* The presence script queues the webhook events of a join or a leave
         * with it (docs/cluster.md#webhooks). */
        cluster_presence_hooks(c, WH_EV_MEMBER_ADDED, added, sizeof added);
        cluster_presence_hooks(c, WH_EV_MEMBER_REMOVED, removed, sizeof removed);
        m.wh_added = added;
        m.wh_removed = removed;
    }
    rc = engine_presence_conn(cluster_engine(), c->name, c->namelen, cp.node, &m, mode, count, on_conn_done,
                              (void *)(uintptr_t)cp.gen);
    if (rc && rc != -ENOTCONN)
        hlog(LOG_WARN, "cluster", "cannot write a presence change of %s to redis (%s)", c->name, strerror(-rc));
    free(js);
}

/* ---- info updates ---- */

struct info_ctx {
    origin_t origin;
    char chan[];
};

static void on_info(void *arg, int status, uint64_t seq)
{
    struct info_ctx *x = arg;

    if (status)
        cluster_reply_unavailable(&x->origin, "");
    else if (!seq)
        reply_error(&x->origin, 0, PROTO_E_NOT_SUBSCRIBED, "not a member of this channel's presence", NULL);
    else
        reply_ok(&x->origin, "presence_updated", json_pack("{s:s,s:I}", "channel", x->chan, "seq", (json_int_t)seq));
    origin_clear(&x->origin);
    free(x);
}

int cluster_presence_info(chan_t *c, const char *key, size_t keylen, int anon, const json_t *info,
                          const char *client, origin_t *origin)
{
    char mkey[2 + 1024];
    struct info_ctx *x;
    struct engine_member m;
    json_t *j;
    char *js = NULL;
    int rc;

    if (keylen > sizeof mkey - 2) { origin_clear(origin); return -ENAMETOOLONG; }
    if (!(x = malloc(sizeof *x + c->namelen + 1))) { origin_clear(origin); return -ENOMEM; }
    memcpy(x->chan, c->name, c->namelen);
    x->chan[c->namelen] = '\0';
    x->origin = *origin;
    origin->id = NULL;
    mkey[0] = anon ? 'c' : 'u';
    mkey[1] = ':';
    memcpy(mkey + 2, key, keylen);
    j = json_pack("{s:s%}", anon ? "client" : "user", key, keylen);
    if (j && info) json_object_set(j, "info", (json_t *)info);
    if (j) js = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!js) { origin_clear(&x->origin); free(x); return -ENOMEM; }
    m = (struct engine_member){ mkey, keylen + 2, js, strlen(js), client, strlen(client), NULL, NULL };
    rc = engine_presence_info(cluster_engine(), c->name, c->namelen, &m, on_info, x);
    free(js);
    if (rc) {
        if (rc == -ENOTCONN) on_info(x, rc, 0);
        else { origin_clear(&x->origin); free(x); }
        return rc == -ENOTCONN ? 0 : rc;
    }
    return 0;
}

/* ---- reads ---- */

struct read_ctx {
    origin_t origin;
    void (*fetch)(void *arg, json_t *pres); /* instead of answering @origin */
    void *arg;
    unsigned tier;
    int stats;
    size_t len;
    char name[];
};

/* {"members","count","connections","seq"} ("tiered" and a sample above
 * @tier) of @p. Return: a new reference, or NULL. */
static json_t *members_json(const struct engine_presence *p, unsigned tier)
{
    json_t *o, *list = json_array();

    for (size_t i = 0; list && i < p->n && (p->count <= tier || i < PRESENCE_SAMPLE); i++) {
        json_t *m = json_loadb(p->members[i].json, p->members[i].len, 0, NULL);
        if (!m) continue;
        json_object_set_new(m, "connections", json_integer((json_int_t)p->members[i].conns));
        json_array_append_new(list, m);
    }
    o = json_pack("{s:o,s:I,s:I,s:I}", "members", list ? list : json_array(), "count", (json_int_t)p->count,
                  "connections", (json_int_t)p->conns, "seq", (json_int_t)p->seq);
    if (o && p->count > tier) json_object_set_new(o, "tiered", json_true());
    return o;
}

static void on_read(void *arg, const int status, const struct engine_presence *p)
{
    struct read_ctx *x = arg;
    json_t *o;

    if (x->fetch) {
        o = status ? NULL : members_json(p, x->tier);
        x->fetch(x->arg, o);
        json_decref(o);
        goto out;
    }
    if (status) {
        cluster_reply_unavailable(&x->origin, "");
        goto out;
    }
    if (x->stats) {
        reply_ok(&x->origin, "presence_stats", json_pack("{s:s%,s:I,s:I}", "channel", x->name, x->len, "members",
                                                         (json_int_t)p->count, "connections", (json_int_t)p->conns));
        goto out;
    }
    o = members_json(p, x->tier);
    if (o) json_object_set_new(o, "channel", json_stringn(x->name, x->len));
    reply_ok(&x->origin, "presence", o);
out:
    origin_clear(&x->origin);
    free(x);
}

static int read_start(struct read_ctx *x)
{
    int rc = engine_presence_read(cluster_engine(), x->name, x->len,
                                  x->stats ? 1 : (x->tier > PRESENCE_SAMPLE ? x->tier + 1 : 0), on_read, x);
    return rc;
}

static struct read_ctx *read_new(const char *name, size_t len, unsigned tier, int stats)
{
    struct read_ctx *x = calloc(1, sizeof *x + len + 1);

    if (!x) return NULL;
    x->tier = tier;
    x->stats = stats;
    x->len = len;
    memcpy(x->name, name, len);
    x->name[len] = '\0';
    return x;
}

int cluster_presence_read(const char *name, size_t len, unsigned tier, int stats, origin_t *origin)
{
    struct read_ctx *x = read_new(name, len, tier, stats);
    int rc;

    if (!x) { origin_clear(origin); return -ENOMEM; }
    x->origin = *origin;
    origin->id = NULL;
    if ((rc = read_start(x)) == -ENOTCONN) {
        struct engine_presence none = { 0 };
        on_read(x, rc, &none);
        return 0;
    }
    if (rc) { origin_clear(&x->origin); free(x); }
    return rc;
}

int cluster_presence_fetch(const char *name, size_t len, unsigned tier, void (*cb)(void *arg, json_t *pres),
                           void *arg)
{
    struct read_ctx *x = read_new(name, len, tier, 0);
    int rc;

    if (!x) return -ENOMEM;
    x->fetch = cb;
    x->arg = arg;
    if ((rc = read_start(x))) free(x);
    return rc;
}

/* ---- events ---- */

void cluster_presence_on_event(const char *name, size_t len, int kind, uint64_t seq, uint64_t count,
                               const char *client, size_t clientlen, const char *json, size_t jsonlen)
{
    chan_t *c = chan_find(name, len);
    sess_t *except = NULL;
    json_t *m;

    if (!c || !c->nsubs || !c->ns->presence) return;
    if (!(m = json_loadb(json, jsonlen, 0, NULL))) return;
    /* The connection that caused it is left out, as on one node. */
    for (uint32_t i = 0; clientlen && i < c->nsubs; i++)
        if (strlen(c->members[i]->id) == clientlen && !memcmp(c->members[i]->id, client, clientlen)) {
            except = c->members[i];
            break;
        }
    presence_remote_event(c, kind == 'j' ? 0 : kind == 'l' ? 1 : 2, seq, count, m, except);
    json_decref(m);
}

/* ---- the lease ---- */

static void resync_chan(chan_t *c)
{
    presence_resync(c);
    cluster_occ_resync(c);
}

static void on_beat(void *arg, int status, int known)
{
    if (status || (unsigned)(uintptr_t)arg != cp.gen) return;
    if (known) {
        cp.leased = 1;
        cp.old[0] = '\0';
        return;
    }
    if (cp.leased) {
        /* Our lease ended before this beat (the loop or the network
         * stalled): the others dropped our members; write them again. */
        hlog(LOG_WARN, "cluster", "this node's presence lease in redis had ended; writing its members again");
        rotate();
    }
}

static void beat(const char *old)
{
    engine_presence_beat(cluster_engine(), cp.node, lease_ms(), old, on_beat, (void *)(uintptr_t)cp.gen);
}

/* A new id: its lease first (members are written only under a lease),
 * then every local member and occupied channel under it, then the old id
 * dropped, in this order on the command connection, so members still here
 * never leave and channels still occupied here are never vacated. */
static void rotate(void)
{
    if (!cluster_engine() || !engine_up(cluster_engine())) return;
    memcpy(cp.old, cp.node, sizeof cp.old);
    new_id();
    beat(NULL);
    cluster_foreach(resync_chan);
    beat(cp.old);
}

static void on_beat_timer(uv_timer_t *t)
{
    (void)t;
    if (!cluster_engine() || !engine_up(cluster_engine())) return;
    beat(cp.old[0] ? cp.old : NULL);
}

void cluster_presence_on_cmd(int up)
{
    if (up) rotate();
}

void cluster_presence_start(void)
{
    new_id();
    cp.old[0] = '\0';
    uv_timer_init(&srv.loop, &cp.beat);
    cp.timer_on = 1;
    uv_timer_start(&cp.beat, on_beat_timer, srv.cfg.engine_presence_heartbeat_ms,
                   srv.cfg.engine_presence_heartbeat_ms);
}

void cluster_presence_stop(void)
{
    if (!cp.timer_on) return;
    cp.timer_on = 0;
    uv_timer_stop(&cp.beat);
    uv_close((uv_handle_t *)&cp.beat, NULL);
}
