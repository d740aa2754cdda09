/* broker/app/admin.c - see admin.h. */
#include "app/admin.h"
#include "app/storage_watch.h"
#include "core/channel.h"
#include "core/presence.h"
#include "core/publish.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "core/pubpipe.h"
#include "core/webhook.h"
#include "net/http.h"
#include "net/server.h"
#include "herald.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SYS_STATS "sys:stats"
#define TOP_N 10

json_t *admin_health(unsigned *status)
{
    struct storage_status st;
    json_t *v, *reasons = json_array();

    storage_watch_status(&st);
    storage_watch_reasons(reasons);
    *status = srv.stopping ? 503 : 200;
    v = json_pack("{s:s,s:s,s:I,s:I,s:I,s:s}",
                  "status", srv.stopping ? "stopping" : json_array_size(reasons) ? "degraded" : "ok",
                  "version", HERALD_VERSION,
                  "uptime_s", (json_int_t)((clock_wall_ms() - (int64_t)srv.started_ms) / 1000),
                  "connections", (json_int_t)srv.nsessions,
                  "channels", (json_int_t)chan_count(),
                  "storage", st.status);
    if (v && json_array_size(reasons)) json_object_set(v, "reasons", reasons);
    json_decref(reasons);
    return v;
}

int admin_ready(uint64_t serial)
{
    struct storage_status st;
    const char *why = NULL;

    if (srv.stopping) return -ESHUTDOWN;
    /* With a shared engine, a node that cannot reach it can neither publish
     * nor deliver: out of rotation until it can. */
    if (!cluster_ready(&why)) {
        http_finish_json(serial, 503, json_pack("{s:s,s:[s]}", "status", "not_ready", "reasons", why));
        return 0;
    }
    /* A store at 95% is about to refuse publications even if a tiny write
     * still fits: take the broker out of rotation before that. */
    storage_watch_tick();
    storage_watch_status(&st);
    if (st.level >= 3) {
        json_t *reasons = json_array();
        storage_watch_reasons(reasons);
        http_finish_json(serial, 503, json_pack("{s:s,s:o}", "status", "not_ready", "reasons", reasons));
        return 0;
    }
    return pubpipe_probe(serial);
}

int admin_set_log_level(const char *level)
{
    enum log_level l;
    if (log_level_parse(level, &l)) return -1;
    log_set_level(l);
    server_log_level_changed();
    srv.cfg.log_level = l;
    hlog(LOG_INFO, "server", "log level set to %s", log_level_name(l));
    return 0;
}

/* ---- channel statistics: figures from the registry now, history sizes
 * read from the store on the thread pool ---- */

struct chan_row {
    char *name;
    size_t len;
    uint32_t subscribers;
    double rate;
    uint64_t last_offset;
    char epoch[HIST_EPOCH_LEN + 1];
    int history, stored;
    uint64_t entries, bytes;
    int has_presence;
    uint32_t members;
};

typedef struct stats_job {
    uv_work_t work;
    uint64_t serial;
    int single;                   /* one channel: answer the object, not a page */
    uint64_t next_cursor;         /* 0: no more */
    struct chan_row *rows;
    size_t n;
} stats_job_t;

static void row_fill(struct chan_row *r, const chan_t *c)
{
    r->len = c->namelen;
    r->name = strndup(c->name, c->namelen);
    r->subscribers = c->nsubs;
    r->rate = chan_rate(c);
    r->last_offset = c->last_offset;
    memcpy(r->epoch, c->epoch, sizeof r->epoch);
    r->history = c->ns->history;
    r->stored = c->stored;
    r->has_presence = c->ns->presence;
    r->members = presence_count(c);
}

static void stats_work(uv_work_t *w)
{
    stats_job_t *j = w->data;
    hist_t *h = pubpipe_store();

    for (size_t i = 0; i < j->n && h; i++)
        if (j->rows[i].stored && j->rows[i].name)
            hist_stat(h, j->rows[i].name, j->rows[i].len, &j->rows[i].entries, &j->rows[i].bytes);
}

static json_t *row_json(const struct chan_row *r)
{
    json_t *o = json_pack("{s:s%,s:I,s:o,s:f,s:I,s:s}", "channel", r->name, r->len,
                          "subscribers", (json_int_t)r->subscribers,
                          "presence", r->has_presence ? json_integer(r->members) : json_null(),
                          "publications_per_second", r->rate, "last_offset", (json_int_t)r->last_offset,
                          "epoch", r->epoch);
    if (!o) return NULL;
    if (r->history)
        json_object_set_new(o, "history", json_pack("{s:I,s:I}", "length", (json_int_t)r->entries,
                                                     "bytes", (json_int_t)r->bytes));
    else
        json_object_set_new(o, "history", json_null());
    return o;
}

static void stats_done(uv_work_t *w, int status)
{
    stats_job_t *j = w->data;
    json_t *body;

    (void)status;
    if (j->single) {
        body = row_json(&j->rows[0]);
    } else {
        json_t *list = json_array();
        for (size_t i = 0; i < j->n; i++) json_array_append_new(list, row_json(&j->rows[i]));
        body = json_pack("{s:o,s:o}", "channels", list,
                         "next_cursor", j->next_cursor ? json_integer((json_int_t)j->next_cursor) : json_null());
    }
    http_finish_json(j->serial, body ? 200 : 500, body);
    for (size_t i = 0; i < j->n; i++) free(j->rows[i].name);
    free(j->rows);
    free(j);
}

static int submit(stats_job_t *j)
{
    j->work.data = j;
    if (uv_queue_work(&srv.loop, &j->work, stats_work, stats_done)) {
        for (size_t i = 0; i < j->n; i++) free(j->rows[i].name);
        free(j->rows);
        free(j);
        return -ENOMEM;
    }
    return 0;
}

/* ---- channel statistics across nodes: with the redis engine, the
 * figures every node shares are read from Redis (storage/engine_views.c),
 * and this node's own beside them under "node" ---- */

/* What this node alone knows of a channel: its id, its subscribers, its
 * members, the rate it received publications at. */
static json_t *node_json(const chan_t *c, const ns_config_t *ns)
{
    unsigned gen;
    const char *id = cluster_presence_node(&gen);

    return json_pack("{s:s,s:I,s:o,s:f}", "id", id, "subscribers", (json_int_t)(c ? c->nsubs : 0),
                     "presence", ns->presence ? json_integer(c ? presence_count(c) : 0) : json_null(),
                     "publications_per_second", c ? chan_rate(c) : 0.0);
}

/* The answer for one channel: the LMDB fields, their values the cluster's
 * (but publications_per_second, which only a node measures), and "node". */
static json_t *view_json(const struct engine_chanstat *r)
{
    const ns_config_t *ns = config_ns(&srv.cfg, r->name, r->len);
    const chan_t *c = chan_find(r->name, r->len);
    json_t *o = json_pack("{s:s%,s:I,s:o,s:f,s:I,s:s}", "channel", r->name, r->len,
                          "subscribers", (json_int_t)r->subscribers,
                          "presence", ns->presence ? json_integer((json_int_t)r->members) : json_null(),
                          "publications_per_second", c ? chan_rate(c) : 0.0,
                          "last_offset", (json_int_t)r->last_offset, "epoch", r->epoch);

    if (!o) return NULL;
    json_object_set_new(o, "history", ns->history ? json_pack("{s:I,s:I}", "length", (json_int_t)r->length,
                                                              "bytes", (json_int_t)r->bytes) : json_null());
    json_object_set_new(o, "node", node_json(c, ns));
    return o;
}

struct view_req {
    uint64_t serial;
    int single;
};

static void on_views(void *arg, int status, const struct engine_chanstat *rows, size_t n, uint64_t next)
{
    struct view_req *v = arg;
    json_t *body;

    if (status) {
        /* Stale figures would be worse than none. */
        http_finish_error(v->serial, 503, PROTO_E_ENGINE_UNAVAILABLE, status == -ENOMEM ? "out of memory" :
                          "reading the channel from the redis engine failed (see /api/health/ready)");
        free(v);
        return;
    }
    if (v->single) {
        if (!rows[0].known && !chan_find(rows[0].name, rows[0].len))
            http_finish_error(v->serial, 404, PROTO_E_BAD_CHANNEL, "the broker does not know this channel");
        else {
            body = view_json(&rows[0]);
            http_finish_json(v->serial, body ? 200 : 500, body);
        }
        free(v);
        return;
    }
    body = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(body, view_json(&rows[i]));
    body = json_pack("{s:o,s:o}", "channels", body, "next_cursor", next ? json_integer((json_int_t)next) : json_null());
    http_finish_json(v->serial, body ? 200 : 500, body);
    free(v);
}

/* Starts a views read; answers 503 itself when Redis is down. */
static int views_start(uint64_t serial, const char *name, size_t len, const char *prefix, uint64_t cursor,
                       unsigned limit)
{
    struct view_req *v = calloc(1, sizeof *v);
    int rc;

    if (!v) return -ENOMEM;
    v->serial = serial;
    v->single = name != NULL;
    rc = name ? engine_views_stat(cluster_engine(), name, len, config_ns(&srv.cfg, name, len)->history, on_views, v)
              : engine_views_list(cluster_engine(), prefix, cursor, limit, on_views, v);
    if (!rc) return 0;
    free(v);
    if (rc == -ENOMEM) return rc;
    if (rc == -ENAMETOOLONG)
        http_finish_error(serial, 400, name ? PROTO_E_BAD_CHANNEL : PROTO_E_BAD_FIELD, "name too long for the engine");
    else
        http_finish_error(serial, 503, PROTO_E_ENGINE_UNAVAILABLE,
                          "the redis engine is unavailable (see /api/health/ready)");
    return 0;
}

int admin_channels(uint64_t serial, const char *prefix, uint64_t cursor, unsigned limit)
{
    size_t plen = strlen(prefix), pos = (size_t)cursor;
    stats_job_t *j;
    chan_t *c;

    /* Every channel Redis knows, with the cluster's figures; the node's own
     * sys channels are asked for by name. */
    if (cluster_on()) return views_start(serial, NULL, 0, prefix, cursor, limit);
    j = calloc(1, sizeof *j);

    if (!j || !(j->rows = calloc(limit, sizeof *j->rows))) {
        free(j);
        return -ENOMEM;
    }
    j->serial = serial;
    /* The cursor is a position in the registry's table: cheap, stateless,
     * and stable while the table does not grow between pages. */
    while (j->n < limit && (c = hmap_next(&srv.channels, &pos)))
        if (c->namelen >= plen && !memcmp(c->name, prefix, plen)) row_fill(&j->rows[j->n++], c);
    if (j->n == limit) {
        size_t probe = pos;
        while ((c = hmap_next(&srv.channels, &probe)))
            if (c->namelen >= plen && !memcmp(c->name, prefix, plen)) { j->next_cursor = pos; break; }
    }
    return submit(j);
}

int admin_channel(uint64_t serial, const char *name, size_t len)
{
    chan_t *c = chan_find(name, len);
    stats_job_t *j;

    if (cluster_routes_name(name, len)) return views_start(serial, name, len, NULL, 0, 0);
    if (!c) {
        http_finish_error(serial, 404, PROTO_E_BAD_CHANNEL, "the broker does not know this channel");
        return 0;
    }
    if (!(j = calloc(1, sizeof *j)) || !(j->rows = calloc(1, sizeof *j->rows))) {
        free(j);
        return -ENOMEM;
    }
    j->serial = serial;
    j->single = 1;
    row_fill(&j->rows[0], c);
    j->n = 1;
    return submit(j);
}

/* ---- sys:stats ---- */

static struct {
    uint64_t messages_in, deliveries, publications, bytes_out;
    uint64_t at_ms;
} last;

/* The last RECENT_MAX sys:stats publications, kept in memory when the sys
 * namespace keeps no history (the default): what a subscribe with
 * "history": N gets, so that the admin page fills its 10-minute charts on
 * load without the broker writing (and syncing) its own feed to disk. */
#define RECENT_MAX 600
static struct {
    struct recent {
        uint64_t offset;
        int64_t ts;
        json_t *data;
        size_t size;              /* the data's JSON size, for the reply's byte cap */
    } r[RECENT_MAX];
    size_t head, n;               /* oldest at r[head] */
} recent;

static void recent_add(uint64_t offset, int64_t ts, json_t *data)
{
    struct recent *e;

    if (recent.n == RECENT_MAX) {
        json_decref(recent.r[recent.head].data);
        recent.head = (recent.head + 1) % RECENT_MAX;
        recent.n--;
    }
    e = &recent.r[(recent.head + recent.n) % RECENT_MAX];
    e->offset = offset;
    e->ts = ts;
    e->data = json_incref(data);
    e->size = json_dumpb(data, NULL, 0, JSON_COMPACT) + 40;
    recent.n++;
}

json_t *admin_recent(const chan_t *c, const struct admin_range *q, int *more)
{
    size_t take = 0, bytes = 0, first = 0, count = 0, lo;
    json_t *list;

    *more = 0;
    if (c->ns->history || c->namelen != strlen(SYS_STATS) || memcmp(c->name, SYS_STATS, c->namelen))
        return NULL;
    /* The entries in range, [first, first + count) of the ring, oldest first;
     * offsets grow along the ring, and only fanned-out ones are answered. */
    for (size_t i = 0; i < recent.n; i++) {
        uint64_t off = recent.r[(recent.head + i) % RECENT_MAX].offset;
        if (off <= q->after || (q->before && off >= q->before) || off > c->last_offset) continue;
        if (!count) first = i;
        count++;
    }
    /* Take from the requested end, within the limit and the byte budget. */
    while (take < count && take < q->limit) {
        size_t i = q->newest ? first + count - 1 - take : first + take;
        const struct recent *e = &recent.r[(recent.head + i) % RECENT_MAX];
        if (bytes + e->size > q->max_bytes) break;
        bytes += e->size;
        take++;
    }
    *more = take < count;
    if (!(list = json_array())) return NULL;
    lo = q->newest ? first + count - take : first;
    for (size_t k = 0; k < take; k++) {
        size_t i = q->desc ? lo + take - 1 - k : lo + k;
        const struct recent *e = &recent.r[(recent.head + i) % RECENT_MAX];
        json_array_append_new(list, json_pack("{s:I,s:I,s:O}", "offset", (json_int_t)e->offset,
                                              "ts", (json_int_t)e->ts, "data", e->data));
    }
    return list;
}

void admin_deinit(void)
{
    while (recent.n) {
        json_decref(recent.r[recent.head].data);
        recent.head = (recent.head + 1) % RECENT_MAX;
        recent.n--;
    }
    recent.head = 0;
}

struct top { const chan_t *c; double v; };

/* Keeps the @n best of @top in descending order of v. */
static void top_insert(struct top *top, size_t *n, const chan_t *c, double v)
{
    size_t i;
    if (v <= 0 || (*n == TOP_N && v <= top[TOP_N - 1].v)) return;
    if (*n < TOP_N) (*n)++;
    for (i = *n - 1; i > 0 && top[i - 1].v < v; i--) top[i] = top[i - 1];
    top[i].c = c;
    top[i].v = v;
}

static void warning_to_json(void *ctx, int64_t ts, int level, const char *component, const char *msg)
{
    json_array_append_new(ctx, json_pack("{s:I,s:s,s:s,s:s}", "ts", (json_int_t)ts, "level",
                                         log_level_name((enum log_level)level), "component", component, "msg", msg));
}

static void publish_stats(void)
{
    uint64_t now = uv_now(&srv.loop);
    double dt = last.at_ms && now > last.at_ms ? (double)(now - last.at_ms) / 1000.0 : 0;
    struct top by_subs[TOP_N], by_rate[TOP_N];
    size_t nsubs = 0, nrate = 0, pos = 0;
    struct storage_status st;
    origin_t origin = { ORIGIN_NONE, 0, NULL };
    char reason[PROTO_REASON_MAX];
    json_t *data, *ts, *tr, *warn;
    chan_t *c, *sys = chan_find(SYS_STATS, strlen(SYS_STATS));
    const ns_config_t *ns = config_ns(&srv.cfg, SYS_STATS, strlen(SYS_STATS));
    int watched = sys && sys->nsubs;

    if (srv.stopping) return;
    /* Without history the feed costs a small message a second and no disk,
     * so it runs always and the page finds the last 10 minutes in memory.
     * An operator who keeps sys history gets it only while someone looks,
     * as every sample would be written and synced. */
    if (!watched && ns->history) {
        last.at_ms = 0;                        /* nobody looks: no scan, no publication */
        return;
    }
    /* One pass over the registry, only while someone is subscribed. */
    while (watched && (c = hmap_next(&srv.channels, &pos))) {
        if (c == sys) continue;
        top_insert(by_subs, &nsubs, c, c->nsubs);
        top_insert(by_rate, &nrate, c, chan_rate(c));
    }
    ts = json_array();
    tr = json_array();
    for (size_t i = 0; i < nsubs; i++)
        json_array_append_new(ts, json_pack("{s:s%,s:I}", "channel", by_subs[i].c->name, (size_t)by_subs[i].c->namelen,
                                            "subscribers", (json_int_t)by_subs[i].v));
    for (size_t i = 0; i < nrate; i++)
        json_array_append_new(tr, json_pack("{s:s%,s:f}", "channel", by_rate[i].c->name, (size_t)by_rate[i].c->namelen,
                                            "rate", by_rate[i].v));
    warn = json_array();
    if (watched) log_recent(warning_to_json, warn);
    storage_watch_status(&st);
    data = json_pack("{s:I,s:I,s:s,s:{s:I,s:I,s:I},s:I,s:I,s:{s:f,s:f,s:f,s:f},s:o,s:o,"
                     "s:{s:I,s:I,s:I,s:f,s:f,s:s},s:o}",
                     "ts", (json_int_t)clock_wall_ms(),
                     "uptime_s", (json_int_t)((clock_wall_ms() - (int64_t)srv.started_ms) / 1000),
                     "version", HERALD_VERSION,
                     "connections", "total", (json_int_t)srv.nsessions, "json", (json_int_t)metrics.conn_enc[0],
                     "msgpack", (json_int_t)metrics.conn_enc[1],
                     "subscriptions", (json_int_t)srv.subs.count,
                     "channels", (json_int_t)chan_count(),
                     "rates", "messages_in", dt ? (double)(srv.stats.messages_in - last.messages_in) / dt : 0.0,
                     "deliveries", dt ? (double)(srv.stats.deliveries - last.deliveries) / dt : 0.0,
                     "publications", dt ? (double)(srv.stats.publications - last.publications) / dt : 0.0,
                     "bytes_out", dt ? (double)(metrics.bytes_out - last.bytes_out) / dt : 0.0,
                     "top_by_subscribers", ts, "top_by_rate", tr,
                     "storage", "map_size", (json_int_t)st.map_size, "used", (json_int_t)st.used,
                     "map_max", (json_int_t)st.map_max, "map_pct", st.map_pct, "fs_pct", st.fs_pct,
                     "status", st.status,
                     "warnings", warn);
    /* Webhook health: a few figures per webhook, read under their locks. */
    if (data && srv.cfg.nwebhooks) json_object_set_new(data, "webhooks", webhook_health());
    /* Several nodes: every figure above is this node's; say which node. */
    if (data && cluster_on()) {
        unsigned gen;
        json_object_set_new(data, "node", json_pack("{s:s,s:s}", "id", cluster_presence_node(&gen), "scope", "node"));
    }
    if (data && publish(SYS_STATS, strlen(SYS_STATS), data, NULL, &origin, reason))
        hlog(LOG_DEBUG, "admin", "sys:stats not published: %s", reason);
    else if (data && !ns->history && (sys = chan_find(SYS_STATS, strlen(SYS_STATS))))
        /* Without history the fan-out was synchronous: last_offset is this one. */
        recent_add(sys->last_offset, clock_wall_ms(), data);
    json_decref(data);
    last.messages_in = srv.stats.messages_in;
    last.deliveries = srv.stats.deliveries;
    last.publications = srv.stats.publications;
    last.bytes_out = metrics.bytes_out;
    last.at_ms = now;
}

void admin_tick(void)
{
    storage_watch_tick();
    publish_stats();
}
