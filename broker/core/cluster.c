/* broker/core/cluster.c - see cluster.h. */
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "core/cluster_shop.h"
#include "core/cluster_signal.h"
#include "core/webhook.h"
#include "core/cluster_views.h"
#include "herald.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most entries a gap read asks for: a gap longer than this is reported
 * "unrecovered" past what was read. */
#define GAP_READ_MAX 1000
/* How often channels whose read failed try again. */
#define RETRY_MS 1000
/* Announcements a channel buffers behind a read; past this the buffer is
 * dropped: the read (or the next) finds them in the stream, or reports
 * them lost, as for any gap. */
#define BUF_MAX 10000

enum cl_state {
    CL_IDLE,                      /* not subscribed in the engine (it is down, or no local subscriber) */
    CL_SUBSCRIBING,               /* SUBSCRIBE sent, not confirmed yet */
    CL_READING,                   /* a read of the position (and of a gap) is in flight */
    CL_RETRY,                     /* subscribed; the read failed and is tried again */
    CL_LIVE,                      /* in step: announcements are delivered as they come */
};

struct cl_msg {
    struct cl_msg *next;
    uint64_t offset;
    char epoch[HIST_EPOCH_LEN + 1];
    size_t len;
    unsigned char rec[];
};

struct cl_wait {
    struct cl_wait *next;
    cluster_synced_fn fn;
    void *arg;
};

typedef struct cl_chan {
    struct cl_chan *next, *prev;  /* every channel with state, for the reconnections */
    chan_t *chan;
    enum cl_state state;
    int known;                    /* chan->last_offset and chan->epoch are a position delivered here */
    unsigned gen;                 /* bumped when a read in flight no longer matters */
    struct cl_msg *buf, **buf_tail;
    unsigned nbuf;
    struct cl_wait *waits, **waits_tail;
} cl_chan_t;

static struct {
    engine_t *engine;
    cl_chan_t *all;
    uv_timer_t retry;
    int timer_on;
} cl;

int cluster_on(void) { return cl.engine != NULL; }

engine_t *cluster_engine(void) { return cl.engine; }

void cluster_foreach(void (*fn)(chan_t *c))
{
    for (cl_chan_t *x = cl.all; x; x = x->next) fn(x->chan);
}

/* The sys namespace stays on each node (sys:stats is each node's own), but
 * for the commerce admin channel, which hears every node's orders. */
int cluster_routes(const chan_t *c) { return cl.engine && (!chan_is_sys(c) || cluster_shop_admin(c)); }

int cluster_routes_name(const char *name, size_t len)
{
    const char *admin = srv.cfg.commerce_admin_channel;

    if (!cl.engine) return 0;
    if (len <= 4 || memcmp(name, "sys:", 4)) return 1;
    return srv.cfg.commerce_enabled && strlen(admin) == len && !memcmp(admin, name, len);
}

int cluster_ready(const char **why)
{
    if (!cl.engine) return 1;
    if (!engine_up(cl.engine)) {
        *why = "engine: redis is unreachable (command connection down)";
        return 0;
    }
    if (!engine_sub_up(cl.engine)) {
        *why = "engine: redis is unreachable (subscription connection down)";
        return 0;
    }
    return 1;
}

int cluster_conn_up(int sub) { return sub ? engine_sub_up(cl.engine) : engine_up(cl.engine); }

/* ---- delivery ---- */

static void deliver(chan_t *c, uint64_t offset, const char *epoch, const unsigned char *rec, size_t len)
{
    frame_t *frames[PROTO_NENC] = { NULL };
    uint64_t delivered = srv.stats.deliveries;

    if (!c->epoch[0] || strcmp(c->epoch, epoch)) memcpy(c->epoch, epoch, HIST_EPOCH_LEN + 1);
    if (chan_fanout(c, offset, rec, len, frames))
        hlog(LOG_WARN, "cluster", "out of memory fanning out %s offset %llu", c->name, (unsigned long long)offset);
    /* chan_fanout() counts the process-wide total; the difference is this namespace's share. */
    metrics.ns_deliveries[stats_ns_index(c->ns)] += srv.stats.deliveries - delivered;
    chan_count_pub(c);
}

/* Tells every subscriber of @c that what lies between (@old_epoch,
 * @old_offset) and (@epoch, @last) cannot be delivered: they are at @last
 * now, and publications after it follow. */
static void (*state_gap)(chan_t *c);

void cluster_set_state_gap(void (*fn)(chan_t *c)) { state_gap = fn; }

static void unrecovered(chan_t *c, const char *old_epoch, uint64_t old_offset, const char *epoch, uint64_t last)
{
    json_t *m;

    if (c->ns->state && state_gap) {
        /* A state channel's subscribers need not the lost deltas but the
         * state after them: a fresh snapshot each. */
        hlog(LOG_WARN, "cluster", "%s: deltas after %s/%llu up to %s/%llu are no longer in the engine's history; "
             "subscribers get a snapshot", c->name, old_epoch, (unsigned long long)old_offset, epoch,
             (unsigned long long)last);
        state_gap(c);
        return;
    }
    m = json_pack("{s:s,s:s%,s:s,s:I,s:{s:s,s:I}}", "op", "unrecovered", "channel", c->name,
                          (size_t)c->namelen, "epoch", epoch, "offset", (json_int_t)last, "last", "epoch",
                          old_epoch, "offset", (json_int_t)old_offset);

    hlog(LOG_WARN, "cluster", "%s: publications after %s/%llu up to %s/%llu are no longer in the engine's history; "
         "subscribers are told", c->name, old_epoch, (unsigned long long)old_offset, epoch,
         (unsigned long long)last);
    if (m) chan_broadcast(c, m, NULL);
    json_decref(m);
}

static void drop_buffer(cl_chan_t *x);

static void buffer(cl_chan_t *x, uint64_t offset, const char *epoch, const unsigned char *rec, size_t len)
{
    struct cl_msg *m;

    if (x->nbuf >= BUF_MAX) {
        hlog(LOG_WARN, "cluster", "%s: %u announcements wait for a read of the engine; dropped (the read recovers "
             "them from the stream)", x->chan->name, x->nbuf);
        drop_buffer(x);
    }
    m = malloc(sizeof *m + len);

    if (!m) {
        /* The gap this leaves is found, and read, when the next one comes. */
        hlog(LOG_WARN, "cluster", "out of memory buffering %s offset %llu", x->chan->name, (unsigned long long)offset);
        return;
    }
    m->next = NULL;
    m->offset = offset;
    memcpy(m->epoch, epoch, HIST_EPOCH_LEN + 1);
    m->len = len;
    memcpy(m->rec, rec, len);
    *x->buf_tail = m;
    x->buf_tail = &m->next;
    x->nbuf++;
}

static void start_read(cl_chan_t *x);

/* One announcement for a channel in step, or buffered behind a read. */
static void take(cl_chan_t *x, uint64_t offset, const char *epoch, const unsigned char *rec, size_t len)
{
    chan_t *c = x->chan;

    if (x->state != CL_LIVE) {
        buffer(x, offset, epoch, rec, len);
        return;
    }
    if (c->epoch[0] && strcmp(c->epoch, epoch)) {
        /* Another log: Redis lost the channel's meta (a flush, a restore). */
        buffer(x, offset, epoch, rec, len);
        start_read(x);
        return;
    }
    if (offset <= c->last_offset) return;      /* already delivered (read with the position) */
    if (offset > c->last_offset + 1) {
        buffer(x, offset, epoch, rec, len);
        start_read(x);
        return;
    }
    deliver(c, offset, epoch, rec, len);
}

/* Delivers what was buffered behind a read, which just set the channel's
 * epoch: announcements of another epoch are stale (the read is the
 * engine's word), and are dropped rather than sent to read again. */
static void drain(cl_chan_t *x)
{
    struct cl_msg *m = x->buf;

    x->buf = NULL;
    x->buf_tail = &x->buf;
    x->nbuf = 0;
    while (m) {
        struct cl_msg *next = m->next;
        if (!x->chan->epoch[0] || !strcmp(m->epoch, x->chan->epoch)) take(x, m->offset, m->epoch, m->rec, m->len);
        free(m);
        m = next;
    }
}

static void drop_buffer(cl_chan_t *x)
{
    while (x->buf) {
        struct cl_msg *m = x->buf;
        x->buf = m->next;
        free(m);
    }
    x->buf_tail = &x->buf;
    x->nbuf = 0;
}

/* Calls the waits of @x with @ok (cluster_synced_fn). Each wait holds the
 * channel (inflight), so a wait that unsubscribes its client cannot free
 * it under the others; with @drop the channel is dropped after the last if
 * nothing else needs it (then @x may be gone). */
static void run_waits(cl_chan_t *x, int ok, int drop)
{
    struct cl_wait *w = x->waits;
    chan_t *c = x->chan;

    x->waits = NULL;
    x->waits_tail = &x->waits;
    while (w) {
        struct cl_wait *next = w->next;
        w->fn(c, w->arg, ok);
        c->inflight--;
        free(w);
        w = next;
    }
    if (drop) chan_maybe_drop(c);
}

/* ---- reads of the position ---- */

struct read_ctx {
    chan_t *chan;
    unsigned gen;
};

static void retry_soon(void);

static void on_position(void *arg, int status, hist_result_t *res)
{
    struct read_ctx *r = arg;
    chan_t *c = r->chan;
    cl_chan_t *x = c->cl;

    if (!x || x->gen != r->gen || x->state != CL_READING) goto out;
    if (status) {
        if (status != -ECANCELED)               /* not when stopping */
            hlog(LOG_WARN, "cluster", "reading the position of %s failed (%s); trying again", c->name,
                 strerror(-status));
        x->state = CL_RETRY;
        retry_soon();
        goto out;
    }
    if (!x->known) {
        c->last_offset = res->chan.last_offset;
        memcpy(c->epoch, res->chan.epoch, HIST_EPOCH_LEN + 1);
        x->known = 1;
    } else if (c->epoch[0] && strcmp(c->epoch, res->chan.epoch)) {
        /* Another log (Redis lost the channel): nothing of it continues
         * ours. The subscribers start the new log from its beginning,
         * read again from there like any gap. */
        char old[HIST_EPOCH_LEN + 1];
        uint64_t old_off = c->last_offset;
        memcpy(old, c->epoch, sizeof old);
        memcpy(c->epoch, res->chan.epoch, HIST_EPOCH_LEN + 1);
        c->last_offset = 0;
        unrecovered(c, old, old_off, c->epoch, 0);
        start_read(x);
        goto out;
    } else {
        /* The stream holds a contiguous run of offsets up to the last (it
         * is trimmed from its head only): what follows ours, from the
         * first entry read past it. */
        uint64_t from = c->last_offset, top = res->chan.last_offset, first = top + 1;
        size_t i = 0;
        while (i < res->n && res->entries[i].offset <= from) i++;
        if (i < res->n) first = res->entries[i].offset;
        if (top > from && first > from + 1) {
            /* Told before what follows, with the position it follows. */
            char old[HIST_EPOCH_LEN + 1];
            memcpy(old, c->epoch[0] ? c->epoch : res->chan.epoch, sizeof old);
            memcpy(c->epoch, res->chan.epoch, HIST_EPOCH_LEN + 1);
            c->last_offset = first - 1;
            unrecovered(c, old, from, c->epoch, c->last_offset);
        }
        for (; i < res->n; i++)
            deliver(c, res->entries[i].offset, res->chan.epoch, res->entries[i].rec, res->entries[i].len);
        if (c->last_offset < top) {
            /* The read stopped at its limit: read on from here. */
            start_read(x);
            goto out;
        }
    }
    x->state = CL_LIVE;
    run_waits(x, 1, 0);
    drain(x);
out:
    c->inflight--;
    chan_maybe_drop(c);
    free(r);
}

/* Reads @x's position, and when it had one, what it missed since. */
static void start_read(cl_chan_t *x)
{
    chan_t *c = x->chan;
    struct read_ctx *r = malloc(sizeof *r);
    struct engine_range rg = { 0 };
    int rc;

    x->state = CL_READING;
    x->gen++;
    if (!r) {
        x->state = CL_RETRY;
        retry_soon();
        return;
    }
    r->chan = c;
    r->gen = x->gen;
    if (x->known) {
        rg.after = c->last_offset;
        rg.limit = c->ns->history ? (c->ns->history_size < GAP_READ_MAX ? c->ns->history_size : GAP_READ_MAX) : 0;
    }
    c->inflight++;
    if ((rc = engine_read(cl.engine, c->name, c->namelen, &rg, on_position, r))) {
        c->inflight--;
        free(r);
        x->state = CL_RETRY;
        retry_soon();
    }
}

static void on_retry(uv_timer_t *t)
{
    (void)t;
    cl.timer_on = 0;
    if (!engine_up(cl.engine)) {
        retry_soon();
        return;
    }
    for (cl_chan_t *x = cl.all; x; x = x->next)
        if (x->state == CL_RETRY) start_read(x);
}

static void retry_soon(void)
{
    if (cl.timer_on || srv.stopping) return;
    cl.timer_on = 1;
    uv_timer_start(&cl.retry, on_retry, RETRY_MS, 0);
}

/* ---- engine events ---- */

static void on_cmd(void *ctx, int up)
{
    (void)ctx;
    cluster_presence_on_cmd(up);
    if (!up) return;
    for (cl_chan_t *x = cl.all; x; x = x->next)
        if (x->state == CL_RETRY) start_read(x);
}

static void subscribe(cl_chan_t *x)
{
    if (engine_subscribe(cl.engine, x->chan->name, x->chan->namelen)) {
        x->state = CL_IDLE;                     /* subscribed again when the connection is back */
        return;
    }
    x->state = CL_SUBSCRIBING;
}

static void on_sub(void *ctx, int up)
{
    cl_chan_t *next;
    (void)ctx;
    for (cl_chan_t *x = cl.all; x; x = next) {
        next = x->next;                        /* run_waits() may free x, never another */
        if (!up) {
            /* Every subscription went with the connection. */
            x->state = CL_IDLE;
            x->gen++;
            run_waits(x, 0, 1);
        } else if (x->chan->nsubs) {
            subscribe(x);
        }
    }
}

static void on_subscribed(void *ctx, const char *name, size_t len)
{
    chan_t *c = chan_find(name, len);
    (void)ctx;
    if (c && c->cl && c->cl->state == CL_SUBSCRIBING) start_read(c->cl);
}

static void on_message(void *ctx, const char *name, size_t len, uint64_t offset, const char *epoch,
                       const unsigned char *rec, size_t reclen)
{
    chan_t *c = chan_find(name, len);
    (void)ctx;
    if (!c || !c->cl || c->cl->state == CL_IDLE) return;
    take(c->cl, offset, epoch, rec, reclen);
}

static void on_presence(void *ctx, const char *name, size_t len, int kind, uint64_t seq, uint64_t count,
                        const char *client, size_t clientlen, const char *json, size_t jsonlen)
{
    (void)ctx;
    cluster_presence_on_event(name, len, kind, seq, count, client, clientlen, json, jsonlen);
}

static void on_signal(void *ctx, const char *name, size_t len, const char *payload, size_t n)
{
    (void)ctx;
    cluster_signal_on_event(name, len, payload, n);
}

/* ---- registry hooks ---- */

void cluster_occupancy(chan_t *c, int occupied)
{
    cl_chan_t *x = c->cl;

    if (occupied) {
        if (!x) {
            if (!(x = calloc(1, sizeof *x))) {
                hlog(LOG_WARN, "cluster", "out of memory subscribing to %s in the engine", c->name);
                return;
            }
            x->chan = c;
            x->buf_tail = &x->buf;
            x->waits_tail = &x->waits;
            x->next = cl.all;
            if (cl.all) cl.all->prev = x;
            cl.all = x;
            c->cl = x;
        }
        if (x->state == CL_IDLE) subscribe(x);
        return;
    }
    if (!x) return;
    /* No local subscriber: nothing to deliver, and the position will be
     * read again by the next one. */
    if (x->state != CL_IDLE) engine_unsubscribe(cl.engine, c->name, c->namelen);
    x->state = CL_IDLE;
    x->known = 0;
    x->gen++;
    drop_buffer(x);
    /* Their subscribers are gone (the caller drops the channel). */
    run_waits(x, -1, 0);
}

void cluster_chan_free(chan_t *c)
{
    cl_chan_t *x = c->cl;

    cluster_views_chan_free(c);
    if (!x) return;
    drop_buffer(x);
    if (x->prev) x->prev->next = x->next;
    else cl.all = x->next;
    if (x->next) x->next->prev = x->prev;
    free(x);
    c->cl = NULL;
}

int cluster_when_synced(chan_t *c, cluster_synced_fn fn, void *arg)
{
    cl_chan_t *x = c->cl;
    struct cl_wait *w;

    if (x && x->state == CL_LIVE) {
        fn(c, arg, 1);
        return 0;
    }
    if (!x || !engine_up(cl.engine) || !engine_sub_up(cl.engine)) return PROTO_E_ENGINE_UNAVAILABLE;
    if (!(w = malloc(sizeof *w))) return -ENOMEM;
    w->next = NULL;
    w->fn = fn;
    w->arg = arg;
    c->inflight++;
    *x->waits_tail = w;
    x->waits_tail = &w->next;
    return 0;
}

struct held_read {
    chan_t *chan;
    engine_read_cb cb;
    void *arg;
};

static void on_read(void *arg, int status, hist_result_t *res)
{
    struct held_read *h = arg;

    h->cb(h->arg, status, res);
    h->chan->inflight--;
    chan_maybe_drop(h->chan);
    free(h);
}

int cluster_read(chan_t *c, const struct engine_range *r, engine_read_cb cb, void *arg)
{
    struct held_read *h = malloc(sizeof *h);
    int rc;

    if (!h) return -ENOMEM;
    h->chan = c;
    h->cb = cb;
    h->arg = arg;
    c->inflight++;
    if ((rc = engine_read(cl.engine, c->name, c->namelen, r, on_read, h))) {
        c->inflight--;
        free(h);
        return rc == -ENOTCONN ? PROTO_E_ENGINE_UNAVAILABLE : rc;
    }
    return 0;
}

/* ---- publishing ---- */

struct pub_ctx {
    chan_t *chan;
    origin_t origin;
    size_t idem_len;
    int hooked;                   /* webhook events were queued with it */
    char idem_key[HIST_IDEM_MAX];
};

void cluster_reply_unavailable(const origin_t *o, const char *maybe)
{
    char why[PROTO_REASON_MAX];
    snprintf(why, sizeof why, "the redis engine is unavailable (see /api/health/ready)%s", maybe);
    reply_error(o, 0, PROTO_E_ENGINE_UNAVAILABLE, why, NULL);
}

static void on_published(void *arg, int status, uint64_t offset, const char *epoch)
{
    struct pub_ctx *p = arg;
    chan_t *c = p->chan;
    (void)epoch;

    if (status == 0) {
        reply_ok(&p->origin, "published", json_pack("{s:s%,s:I}", "channel", c->name, (size_t)c->namelen, "offset",
                                                    (json_int_t)offset));
        srv.stats.publications++;
        metrics.ns_publications[stats_ns_index(c->ns)]++;
        if (p->hooked) webhook_kick();        /* its events are queued: this node may be the deliverer */
    } else if (status == ENGINE_E_DUPLICATE) {
        /* Answered with the key's offset; nothing to fan out. */
        reply_ok(&p->origin, "published", json_pack("{s:s%,s:I,s:b}", "channel", c->name, (size_t)c->namelen,
                                                    "offset", (json_int_t)offset, "duplicate", 1));
    } else if (status == ENGINE_E_IDEM_MISMATCH) {
        char why[PROTO_REASON_MAX];
        json_t *extra = json_pack("{s:I}", "offset", (json_int_t)offset);
        snprintf(why, sizeof why, "idempotency key \"%.*s\" was used on this channel within "
                 "history.idempotency_window for a different request (it made offset %llu): nothing was published",
                 (int)p->idem_len, p->idem_key, (unsigned long long)offset);
        reply_error(&p->origin, 0, PROTO_E_IDEM_MISMATCH, why, extra);
        json_decref(extra);
    } else if (status == ENGINE_E_AUTHOR_GONE || status == ENGINE_E_AUTHOR_OTHER) {
        /* The reasons pubpipe.c gives for the same check in LMDB. */
        char why[PROTO_REASON_MAX];
        srv.stats.permission_denied++;
        if (status == ENGINE_E_AUTHOR_GONE)
            snprintf(why, sizeof why, "offset %llu is no longer stored, so its author cannot be checked: only "
                     "moderators may edit or delete it", (unsigned long long)offset);
        else
            snprintf(why, sizeof why, "offset %llu is another user's publication: you may edit or delete only "
                     "your own", (unsigned long long)offset);
        reply_error(&p->origin, 0, PROTO_E_FORBIDDEN, why, NULL);
    } else if (status == ENGINE_E_REPLY_TO) {
        char why[PROTO_REASON_MAX];
        snprintf(why, sizeof why, "reply_to is not an offset of this channel (last is %llu)",
                 (unsigned long long)offset);
        reply_error(&p->origin, 0, PROTO_E_BAD_FIELD, why, NULL);
    } else {
        /* The script may have run before the connection went: say so. */
        cluster_reply_unavailable(&p->origin, status == -ECANCELED ? "" : "; the connection failed while the publication was in "
                    "flight, so it may or may not have been made");
    }
    origin_clear(&p->origin);
    c->inflight--;
    chan_maybe_drop(c);
    free(p);
}

int cluster_publish(chan_t *c, const unsigned char *rec, size_t reclen, int64_t ts,
                    const struct engine_pubopts *o, origin_t *origin)
{
    const struct engine_idem *idem = o->idem;
    struct engine_keep keep = { c->ns->history ? c->ns->history_size : 0, c->ns->history ? c->ns->history_ttl_ms : 0 };
    struct engine_pubopts opts = *o;
    const char *hooks[WEBHOOK_MAX];
    struct pub_ctx *p;
    int rc;

    if (!engine_up(cl.engine)) {
        cluster_reply_unavailable(origin, "");
        origin_clear(origin);
        return 0;
    }
    if (!(p = malloc(sizeof *p))) {
        origin_clear(origin);
        return -ENOMEM;
    }
    p->chan = c;
    p->origin = *origin;
    origin->id = NULL;
    p->idem_len = idem && idem->len <= sizeof p->idem_key ? idem->len : 0;
    if (p->idem_len) memcpy(p->idem_key, idem->key, p->idem_len);
    /* The webhooks that want it: the publish script queues their events
     * with the publication (docs/cluster.md#webhooks). */
    opts.nhooks = srv.cfg.nwebhooks ? config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, c->name, c->namelen, hooks) : 0;
    opts.hooks = hooks;
    p->hooked = opts.nhooks > 0;
    c->inflight++;
    rc = engine_publish(cl.engine, c->name, c->namelen, rec, reclen, ts, &keep, &opts, on_published, p);
    if (rc) {
        if (rc == -ENOTCONN) cluster_reply_unavailable(&p->origin, "");
        else reply_error(&p->origin, 0, PROTO_E_INTERNAL, "out of memory", NULL);
        origin_clear(&p->origin);
        c->inflight--;
        free(p);
    }
    return 0;
}

/* ---- start and stop ---- */

int cluster_start(void)
{
    static const struct engine_events ev = { NULL, on_cmd, on_sub, on_subscribed, on_message, on_presence,
                                                   on_signal };
    struct engine_conf conf = {
        .address = srv.cfg.engine_address,
        .password = srv.cfg.engine_password,
        .database = srv.cfg.engine_database,
        .prefix = srv.cfg.engine_prefix,
        .connect_timeout_ms = srv.cfg.engine_connect_timeout_ms,
        .command_timeout_ms = srv.cfg.engine_command_timeout_ms,
        .tls = srv.cfg.engine_tls,
        .tls_ca = srv.cfg.engine_tls_ca,
        .tls_cert = srv.cfg.engine_tls_cert,
        .tls_key = srv.cfg.engine_tls_key,
        .tls_server_name = srv.cfg.engine_tls_server_name,
        .tls_verify = srv.cfg.engine_tls_verify,
    };
    char err[256];

    if (srv.cfg.engine_type != ENGINE_REDIS) return 0;
    uv_timer_init(&srv.loop, &cl.retry);
    if (engine_redis_start(&srv.loop, &conf, &ev, &cl.engine, err, sizeof err)) {
        hlog(LOG_ERROR, "cluster", "%s", err);
        uv_close((uv_handle_t *)&cl.retry, NULL);
        return -1;
    }
    cluster_presence_start();
    cluster_views_start();
    hlog(LOG_INFO, "cluster", "engine: redis at %s (prefix %s); channels are shared with the other nodes",
         srv.cfg.engine_address, srv.cfg.engine_prefix);
    return 0;
}

void cluster_stop(void)
{
    engine_t *e = cl.engine;

    if (!e) return;
    /* Pending calls answer now (-ECANCELED) while their origins can be found. */
    engine_stop(e);
    cl.engine = NULL;
    cluster_presence_stop();
    cluster_views_stop();
    uv_timer_stop(&cl.retry);
    uv_close((uv_handle_t *)&cl.retry, NULL);
}
