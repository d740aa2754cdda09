/* broker/core/pubpipe.c - see pubpipe.h. */
#include "core/pubpipe.h"
#include "core/cluster.h"
#include "core/cluster_state.h"
#include "core/admit.h"
#include "mpack.h"
#include "net/http.h"
#include "herald.h"
#include "record.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A batch is cut at whichever comes first; LMDB's dirty-page limit and the
 * latency of the batch's first publication both want it bounded. */
#define BATCH_MAX_PUBS 4096
#define BATCH_MAX_BYTES (8u << 20)
/* How often the storage thread prunes, and how much per round. */
#define PRUNE_EVERY_MS 1000
#define PRUNE_BUDGET 2000
/* How often the storage thread looks for due timers, and how many per look. */
#define TIMERS_EVERY_MS 250
#define TIMERS_MAX 1000

typedef struct pub {
    struct pub *next;
    chan_t *chan;                 /* held: chan->inflight counts us; NULL for a probe */
    uint64_t submit_ns;           /* arrival, for the publish-to-fan-out histogram */
    uint64_t commit_ns;           /* first of a batch: how long its commit took */
    uint32_t batch_n;             /* first of a batch: publications in it */
    origin_t origin;
    uint8_t want[PROTO_NENC];     /* encodings the channel's subscribers used at submit */
    frame_t *frames[PROTO_NENC];  /* encoded by the storage thread after commit */
    hist_write_t w;
    pub_ops_t *sops;       /* state operations, when this is a state change */
    const char *hooks[WEBHOOK_MAX]; /* webhooks that get this publication (names in srv.cfg) */
    int event;                    /* no channel: a webhook event (rec holds its JSON), not a probe */
    size_t reclen;
    unsigned char rec[];
} pub_t;

struct gone {
    struct gone *next;
    size_t len;
    char name[];
};

/* A channel the store forgot (hist_prune()) while the loop kept it for its
 * subscribers: its offsets go on from the loop's, so a side publication
 * (hist_tx_publish()) that starts its log again must continue them too. */
struct hint {
    struct hint *next;
    uint64_t last_offset;
    char epoch[HIST_EPOCH_LEN + 1];
    size_t len;
    char name[];
};

/* A due timer, reported by the storage thread. */
struct due {
    struct due *next;
    int64_t at;
    size_t chanlen, keylen;
    char data[];                  /* the channel name, then the key */
};

static struct {
    hist_t *store;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    uv_async_t async;
    int running, stop;
    /* loop -> storage thread, under mu */
    pub_t *todo, **todo_tail;
    /* loop only: writes held back by pubpipe_hold() until pubpipe_release() */
    pub_t *held, **held_tail;
    unsigned holds;
    /* storage thread -> loop, under mu */
    pub_t *done, **done_tail;
    struct gone *gone;
    struct due *due;              /* storage thread -> loop, under mu */
    int due_busy;                 /* a report is out: do not look again */
    void (*on_due)(int64_t, const char *, size_t, const char *, size_t);
    struct hint *hints;           /* changed by the loop under mu; read by the storage thread under mu */
    /* The submit time (clock_mono_ns()) of the oldest write queued or in
     * flight and not yet committed; 0: none. Written under mu by both
     * threads, read by the loop without it for admission control
     * (core/admit.h): a stale value only moves a refusal by one write. */
    _Atomic uint64_t oldest_ns;
    admit_log_t shed_log;         /* loop only */
} pp;

hist_t *pubpipe_store(void) { return pp.store; }

void pub_ops_free(pub_ops_t *o)
{
    if (!o) return;
    free(o->ops);
    free(o->vals);
    if (o->custom_free) o->custom_free(o->custom);
    json_decref(o->request);
    free(o);
}

/* Outcomes of the author check of an edit or a delete (hist_write_t.check). */
enum { AUTHOR_OTHER = 1, AUTHOR_GONE };

/* Storage thread: whether the publication @rec may edit or delete @target. */
static int author_check(const unsigned char *rec, size_t len, const unsigned char *target, size_t tlen)
{
    if (!target) return AUTHOR_GONE;
    return rec_same_author(rec, len, target, tlen) ? 0 : AUTHOR_OTHER;
}

static void pub_free(pub_t *p)
{
    pub_ops_free(p->sops);
    hist_sides_free(p->w.side);
    free(p->w.state_rec);
    json_decref(p->w.result);
    for (int e = 0; e < PROTO_NENC; e++) frame_unref(p->frames[e]);
    json_decref(p->origin.id);
    free(p);
}

/* The outcome of a publication or state change. */
struct pub_outcome {
    int code;                     /* 0, or a PROTO_E_* code */
    uint64_t offset;              /* with code 0 */
    const char *reason;           /* with a code */
    const unsigned char *state_rec; /* a state change's record (its changes go in the reply), or NULL */
    size_t state_reclen;
    const json_t *extra;          /* fields added to the reply, or to the error (a conflict's "version",
                                     the "seats" a hold found taken), or NULL */
    const char *reply_op;         /* the WebSocket reply's op; NULL: "published" or "updated" */
};

/* Adds the "changes" (and "reset") of a state change's record to @m. */
static void add_state_changes(json_t *m, const unsigned char *rec, size_t len)
{
    char reason[PROTO_REASON_MAX];
    json_t *r = NULL, *data, *ch;

    if (mpack_decode(rec, len, &r, reason)) {
        json_object_set_new(m, "changes", json_array());
        return;
    }
    data = json_object_get(r, "data");
    ch = json_object_get(data, "changes");
    json_object_set(m, "changes", ch ? ch : json_array());
    if (json_is_true(json_object_get(data, "reset"))) json_object_set_new(m, "reset", json_true());
    json_decref(r);
}

/* The error a refused state request gets: PROTO_E_CONFLICT (with the
 * key's "version" in *@extra) or PROTO_E_NOT_INTEGER for @status
 * HIST_E_CONFLICT or HIST_E_NOT_INTEGER at op @failed; @why gets the reason. */
static int state_refusal(const pub_ops_t *ops, int status, size_t failed, uint64_t conflict_version, char *why,
                         json_t **extra)
{
    const hist_state_op_t *op = &ops->ops[failed];

    if (status == HIST_E_CONFLICT) {
        snprintf(why, PROTO_REASON_MAX, "ops[%zu]: key \"%.*s\" is at version %llu, not %llu; nothing was applied",
                 failed, (int)op->keylen, op->key, (unsigned long long)conflict_version,
                 (unsigned long long)op->version);
        *extra = json_pack("{s:I}", "version", (json_int_t)conflict_version);
        return PROTO_E_CONFLICT;
    }
    snprintf(why, PROTO_REASON_MAX, "ops[%zu]: key \"%.*s\" does not hold an integer, or it would overflow; "
             "nothing was applied", failed, (int)op->keylen, op->key);
    return PROTO_E_NOT_INTEGER;
}

/* Tells @o the outcome @out of its publication on @c: {"op":"published" |
 * "updated" | reply_op, "channel", "offset", ...} or an error, on whichever
 * transport it came (net/reply.h). */
static void report(const origin_t *o, chan_t *c, const struct pub_outcome *out)
{
    json_t *m;

    if (out->code) {
        srv.stats.storage_failures += out->code == PROTO_E_STORAGE;
        reply_error(o, 0, out->code, out->reason ? out->reason : "publication failed", out->extra);
        return;
    }
    if (o->kind == ORIGIN_NONE) return;
    m = json_pack("{s:s%,s:I}", "channel", c->name, (size_t)c->namelen, "offset", (json_int_t)out->offset);
    if (m && out->state_rec) add_state_changes(m, out->state_rec, out->state_reclen);
    if (m && out->extra) json_object_update_missing(m, (json_t *)out->extra);
    reply_ok(o, out->reply_op ? out->reply_op : out->state_rec ? "updated" : "published", m);
}

/* ---- storage thread ---- */

static void policy(void *ctx, const char *name, size_t len, struct hist_policy *out)
{
    /* The configuration is immutable once the broker runs, so reading it from
     * this thread is safe. */
    const ns_config_t *ns = config_ns(&srv.cfg, name, len);
    (void)ctx;
    out->keep = ns->history ? ns->history_size : 0;
    out->ttl_ms = ns->history_ttl_ms;
}

_Static_assert(WEBHOOK_MAX <= HIST_HOOKS_MAX, "a side publication's webhooks must fit hist_target_t");

/* Storage thread: how a channel a custom operation publishes to is stored
 * (hist_target_fn). State channels take only their own operations' deltas. */
static void target_policy(const char *name, size_t len, hist_target_t *out)
{
    const ns_config_t *ns = config_ns(&srv.cfg, name, len);

    out->refused = ns->state;
    out->history = ns->history;
    out->keep = ns->history_size;
    out->nhooks = srv.cfg.nwebhooks ? config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, name, len, out->hooks) : 0;
    uv_mutex_lock(&pp.mu);
    for (struct hint *h = pp.hints; h; h = h->next)
        if (h->len == len && !memcmp(h->name, name, len)) {
            out->base_offset = h->last_offset;
            memcpy(out->epoch, h->epoch, HIST_EPOCH_LEN + 1);
            break;
        }
    uv_mutex_unlock(&pp.mu);
}

/* Loop: forget the hint of channel @c (it is stored again), if any. */
static void hint_drop(const chan_t *c)
{
    struct hint **pp_h, *h;

    if (!pp.hints) return;                     /* only the loop writes the list */
    for (pp_h = &pp.hints; (h = *pp_h); pp_h = &h->next)
        if (h->len == c->namelen && !memcmp(h->name, c->name, h->len)) {
            uv_mutex_lock(&pp.mu);
            *pp_h = h->next;
            uv_mutex_unlock(&pp.mu);
            free(h);
            return;
        }
}

/* Loop: the store forgot @c, which stays in memory with its offsets. */
static void hint_add(const chan_t *c)
{
    struct hint *h;

    hint_drop(c);
    if (!(h = malloc(sizeof *h + c->namelen))) return;
    h->last_offset = c->last_offset;
    memcpy(h->epoch, c->epoch, HIST_EPOCH_LEN + 1);
    h->len = c->namelen;
    memcpy(h->name, c->name, c->namelen);
    uv_mutex_lock(&pp.mu);
    h->next = pp.hints;
    pp.hints = h;
    uv_mutex_unlock(&pp.mu);
}

static void on_gone(void *ctx, const char *name, size_t len)
{
    struct gone *g = malloc(sizeof *g + len);
    (void)ctx;
    if (!g) return;
    g->len = len;
    memcpy(g->name, name, len);
    uv_mutex_lock(&pp.mu);
    g->next = pp.gone;
    pp.gone = g;
    uv_mutex_unlock(&pp.mu);
}

static void collect_due(void *ctx, int64_t at, const char *chan, size_t chanlen, const char *key, size_t klen)
{
    struct due ***tail = ctx, *d = malloc(sizeof *d + chanlen + klen);
    if (!d) return;
    d->next = NULL;
    d->at = at;
    d->chanlen = chanlen;
    d->keylen = klen;
    memcpy(d->data, chan, chanlen);
    memcpy(d->data + chanlen, key, klen);
    **tail = d;
    *tail = &d->next;
}

/* Looks for due timers unless the loop still holds the last report. */
static void check_timers(void)
{
    struct due *list = NULL, **tail = &list;
    int64_t next;
    int busy, rc;

    uv_mutex_lock(&pp.mu);
    busy = pp.due_busy || !pp.on_due;
    uv_mutex_unlock(&pp.mu);
    if (busy) return;
    if ((rc = hist_timers_due(pp.store, clock_wall_ms(), TIMERS_MAX, collect_due, &tail, &next)))
        hlog(LOG_WARN, "storage", "reading due timers failed: %s", strerror(-rc));
    if (!list) return;
    uv_mutex_lock(&pp.mu);
    pp.due = list;
    pp.due_busy = 1;
    uv_mutex_unlock(&pp.mu);
}

static void commit_batch(pub_t *batch, hist_write_t **ws, size_t *wcap, wbuf_t *enc)
{
    uint64_t t0 = clock_mono_ns();
    pub_t *p, *first = NULL;
    size_t n = 0;
    int rc;

    /* Readiness probes write on their own; they prove the store can commit.
     * Webhook events that no publication carries are small writes of their own. */
    for (p = batch; p; p = p->next)
        if (!p->chan && p->event)
            p->w.status = hist_outbox_add(pp.store, p->w.hooks, p->w.nhooks, p->w.ts, (const char *)p->rec, p->reclen);
        else if (!p->chan) p->w.status = hist_probe(pp.store, clock_wall_ms());
        else {
            n++;
            if (!first) first = p;
        }
    if (!n) return;
    if (n > *wcap) {
        hist_write_t *nw = realloc(*ws, n * sizeof *nw);
        if (!nw) {
            for (p = batch; p; p = p->next) p->w.status = -ENOMEM;
            return;
        }
        *ws = nw;
        *wcap = n;
    }
    n = 0;
    for (p = batch; p; p = p->next)
        if (p->chan) (*ws)[n++] = p->w;
    rc = hist_write_batch(pp.store, *ws, n);
    first->commit_ns = clock_mono_ns() - t0;
    first->batch_n = (uint32_t)n;
    if (rc) hlog(LOG_WARN, "storage", "commit of %zu publications failed: %s", n,
                 rc == HIST_E_FULL ? "history map is at history.map_size_max" : strerror(-rc));
    n = 0;
    for (p = batch; p; p = p->next) {
        if (!p->chan) continue;
        p->w = (*ws)[n++];
        if (p->w.status || p->w.unchanged || p->w.duplicate) continue;
        /* Encode the pushes here, off the loop. A state change's record was
         * built by the store (it holds the values the ops produced). */
        for (int e = 0; e < PROTO_NENC; e++) {
            const unsigned char *rec = p->w.state_rec ? p->w.state_rec : p->rec;
            size_t reclen = p->w.state_rec ? p->w.state_reclen : p->reclen;
            if (!p->want[e]) continue;
            wbuf_reset(enc);
            if (!rec_pub((enum proto_enc)e, p->chan->name, p->chan->namelen, p->w.offset, rec, reclen, enc) &&
                !enc->oom)
                p->frames[e] = frame_new(enc->p, enc->len);
        }
    }
}

static void storage_main(void *arg)
{
    hist_write_t *ws = NULL;
    size_t wcap = 0;
    uint64_t next_prune = clock_mono_ns() / 1000000 + PRUNE_EVERY_MS, next_sync = 0;

    pthread_setname_np(pthread_self(), "herald-store");   /* top -H, perf, /proc/PID/task */
    uint64_t next_timers = clock_mono_ns() / 1000000;
    wbuf_t enc;

    (void)arg;
    wbuf_init(&enc);
    uv_mutex_lock(&pp.mu);
    for (;;) {
        uint64_t now = clock_mono_ns() / 1000000, wake;
        pub_t *batch = NULL, **tail = &batch;
        size_t npubs = 0, bytes = 0;

        if (!pp.todo) {
            if (pp.stop) break;
            wake = next_prune < next_timers ? next_prune : next_timers;
            if (srv.cfg.durability == DURABILITY_INTERVAL && next_sync && next_sync < wake) wake = next_sync;
            if (wake > now) uv_cond_timedwait(&pp.cv, &pp.mu, (wake - now) * 1000000ULL);
        }
        /* Take what is queued, up to a batch's bounds. */
        while (pp.todo && npubs < BATCH_MAX_PUBS && bytes < BATCH_MAX_BYTES) {
            pub_t *p = pp.todo;
            pp.todo = p->next;
            p->next = NULL;
            *tail = p;
            tail = &p->next;
            npubs++;
            bytes += p->reclen;
        }
        if (!pp.todo) pp.todo_tail = &pp.todo;
        uv_mutex_unlock(&pp.mu);

        if (batch) {
            commit_batch(batch, &ws, &wcap, &enc);
            if (chan_events.on_committed) chan_events.on_committed();
            if (srv.cfg.durability == DURABILITY_INTERVAL && !next_sync)
                next_sync = clock_mono_ns() / 1000000 + srv.cfg.sync_interval_ms;
        }
        now = clock_mono_ns() / 1000000;
        if (next_sync && now >= next_sync) {
            int rc = hist_sync(pp.store);
            if (rc) hlog(LOG_WARN, "storage", "sync failed: %s", strerror(-rc));
            next_sync = 0;
        }
        if (now >= next_prune) {
            int rc = hist_prune(pp.store, clock_wall_ms(), PRUNE_BUDGET, policy, NULL, on_gone, NULL), rk;
            if (rc < 0) hlog(LOG_WARN, "storage", "pruning history failed: %s", strerror(-rc));
            /* Idempotency keys are forgotten by age, as their window ends. */
            rk = hist_idem_prune(pp.store, clock_wall_ms() - (int64_t)srv.cfg.idempotency_window_ms, PRUNE_BUDGET);
            if (rk < 0) hlog(LOG_WARN, "storage", "pruning idempotency keys failed: %s", strerror(-rk));
            if (rk >= PRUNE_BUDGET) rc = PRUNE_BUDGET;
            /* Keep pruning back to back while there is a backlog. */
            next_prune = now + (rc >= PRUNE_BUDGET ? 10 : PRUNE_EVERY_MS);
        }

        if (now >= next_timers) {
            check_timers();
            next_timers = now + TIMERS_EVERY_MS;
        }

        uv_mutex_lock(&pp.mu);
        /* The batch is committed: the oldest write still waiting is the
         * first one queued behind it. */
        atomic_store_explicit(&pp.oldest_ns, pp.todo ? pp.todo->submit_ns : 0, memory_order_relaxed);
        if (batch) {
            *pp.done_tail = batch;
            pp.done_tail = tail;
        }
        if (batch || pp.gone || pp.due) uv_async_send(&pp.async);
    }
    uv_mutex_unlock(&pp.mu);
    if (srv.cfg.durability == DURABILITY_INTERVAL) hist_sync(pp.store);
    free(ws);
    wbuf_deinit(&enc);
}

/* ---- loop ---- */

static void finish_probe(pub_t *p)
{
    if (p->w.status == 0) {
        http_finish_json(p->origin.serial, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    hlog(LOG_WARN, "storage", "readiness probe: the store cannot commit (%s)",
         p->w.status == HIST_E_FULL ? "map at history.map_size_max" : strerror(-p->w.status));
    http_finish_json(p->origin.serial, 503, json_pack("{s:s,s:[s]}", "status", "not_ready", "reasons",
                     p->w.status == HIST_E_FULL ? "storage: the history map is full (history.map_size_max)"
                                                : "storage: a write transaction failed"));
}

static void unstored_event(chan_t *c, uint64_t offset, const unsigned char *rec, size_t reclen);

/* Opens the channel of each side publication of @p (held until its fan-out)
 * and numbers those of namespaces without history after the channel's last
 * offset, so that done() can name every offset in the answer. */
static void sides_open(pub_t *p)
{
    for (hist_side_t *s = p->w.side; s; s = s->next) {
        chan_t *c;
        int r = chan_open(s->chan, s->chanlen, &c);
        if (r) {
            /* Stored or not, nobody is subscribed to a channel that is not registered. */
            hlog(LOG_WARN, "storage", "cannot open %s to fan out a side publication: %s", s->chan,
                 r == PROTO_E_LIMIT ? "limits.max_channels" : "out of memory");
            continue;
        }
        c->inflight++;
        s->user = c;
        if (s->offset) continue;
        s->offset = c->last_offset + 1;
        for (hist_side_t *e = p->w.side; e != s; e = e->next)
            if (e->user == c && !e->epoch[0]) s->offset++;
    }
}

/* Fans out @p's side publications in order, after its own. */
static void sides_fanout(pub_t *p)
{
    for (hist_side_t *s = p->w.side; s; s = s->next) {
        chan_t *c = s->user;
        frame_t *frames[PROTO_NENC] = { NULL };
        uint64_t delivered = srv.stats.deliveries;

        if (!c) continue;
        s->user = NULL;
        c->inflight--;
        if (s->epoch[0]) {
            if (!c->stored || memcmp(c->epoch, s->epoch, HIST_EPOCH_LEN)) {
                /* The store started the channel's log (its first stored
                 * publication): its epoch and offsets are the channel's now. */
                if (c->last_offset >= s->offset) c->last_offset = s->offset - 1;
                memcpy(c->epoch, s->epoch, HIST_EPOCH_LEN + 1);
            }
            if (!c->stored) hint_drop(c);
            c->stored = 1;
        } else {
            /* Numbered by sides_open(); should a done() callback have
             * published there meanwhile, the next offset, never a used one. */
            if (s->offset <= c->last_offset) s->offset = c->last_offset + 1;
            if (srv.cfg.nwebhooks) unstored_event(c, s->offset, s->rec, s->reclen);
        }
        if (chan_fanout(c, s->offset, s->rec, s->reclen, frames))
            hlog(LOG_WARN, "server", "out of memory fanning out %s offset %llu", c->name,
                 (unsigned long long)s->offset);
        if (!chan_is_sys(c)) srv.stats.publications++;
        metrics.ns_publications[stats_ns_index(c->ns)]++;
        metrics.ns_deliveries[stats_ns_index(c->ns)] += srv.stats.deliveries - delivered;
        chan_count_pub(c);
        chan_maybe_drop(c);
    }
}

static void finish(pub_t *p)
{
    chan_t *c = p->chan;

    if (!c) {
        if (!p->event) finish_probe(p);
        else if (p->w.status)
            hlog(LOG_WARN, "storage", "queueing a webhook event failed: %s",
                 p->w.status == HIST_E_FULL ? "history map is at history.map_size_max" : strerror(-p->w.status));
        pub_free(p);
        return;
    }
    if (p->batch_n) {
        histo_observe(&metrics.commit_seconds, (double)p->commit_ns / 1e9);
        histo_observe(&metrics.commit_batch, p->batch_n);
    }
    c->inflight--;
    const unsigned char *rec = p->w.state_rec ? p->w.state_rec : p->rec;
    size_t reclen = p->w.state_rec ? p->w.state_reclen : p->reclen;
    struct pub_outcome out = { .offset = p->w.offset, .state_rec = p->sops ? rec : NULL, .state_reclen = reclen,
                               .reply_op = p->sops ? p->sops->reply_op : NULL };
    json_t *extra = NULL;
    char why[PROTO_REASON_MAX];

    why[0] = '\0';
    if (p->w.status == 0 && p->w.duplicate && p->w.idem_differs) {
        /* Not a retry: the key is being reused for another request. */
        out.code = PROTO_E_IDEM_MISMATCH;
        snprintf(why, sizeof why, "idempotency key \"%.*s\" was used on this channel within "
                 "history.idempotency_window for a different request (it made offset %llu): nothing was published",
                 (int)p->w.idem_len, p->w.idem_key, (unsigned long long)p->w.offset);
        extra = json_pack("{s:I}", "offset", (json_int_t)p->w.offset);
    } else if (p->w.status == 0 && p->w.duplicate) {
        extra = json_pack("{s:b}", "duplicate", 1);   /* answered with the key's offset; nothing to fan out */
    } else if (p->w.status == 0 && p->w.unchanged) {
        extra = json_incref(p->w.result);      /* answered, with the channel's offset; nothing to fan out */
    } else if (p->w.status == 0) {
        if (!c->stored) hint_drop(c);
        c->stored = c->ns->history && pp.store;
        if (memcmp(c->epoch, p->w.stored_epoch, HIST_EPOCH_LEN))
            memcpy(c->epoch, p->w.stored_epoch, HIST_EPOCH_LEN + 1);
        extra = json_incref(p->w.result);
    } else if (p->w.status == HIST_E_CONFLICT || p->w.status == HIST_E_NOT_INTEGER) {
        out.code = state_refusal(p->sops, p->w.status, p->w.failed_op, p->w.conflict_version, why, &extra);
    } else if (p->w.status == HIST_E_CHECK) {
        out.code = PROTO_E_FORBIDDEN;
        srv.stats.permission_denied++;
        if (p->w.check_result == AUTHOR_GONE)
            snprintf(why, sizeof why, "offset %llu is no longer stored, so its author cannot be checked: only "
                     "moderators may edit or delete it", (unsigned long long)p->w.check_offset);
        else
            snprintf(why, sizeof why, "offset %llu is another user's publication: you may edit or delete only "
                     "your own", (unsigned long long)p->w.check_offset);
    } else if (p->w.status == HIST_E_REFUSED && p->w.result) {
        /* A custom operation said why: {"code","reason", and its details}. */
        out.code = (int)json_integer_value(json_object_get(p->w.result, "code"));
        snprintf(why, sizeof why, "%s", json_string_value(json_object_get(p->w.result, "reason")) ?
                 json_string_value(json_object_get(p->w.result, "reason")) : "refused");
        extra = json_deep_copy(p->w.result);
        json_object_del(extra, "code");
        json_object_del(extra, "reason");
        if (!out.code) out.code = PROTO_E_INTERNAL;
    } else {
        out.code = PROTO_E_STORAGE;
        snprintf(why, sizeof why, "%s", p->w.status == HIST_E_FULL ? "the history store is full (history.map_size_max)"
                                                                   : "the history store failed to commit the publication");
    }
    if (out.code == 0 && p->w.side) sides_open(p);
    if (p->sops && p->sops->done) {
        p->sops->side = out.code ? NULL : p->w.side;
        p->sops->done(c, p->sops, out.code, extra);
        p->sops->side = NULL;
    }
    out.reason = why[0] ? why : NULL;
    out.extra = extra;
    /* The publisher hears of its publication before it sees it as a
     * subscriber, so a client can match the echo to its request. */
    report(&p->origin, c, &out);
    json_decref(extra);
    if (out.code == 0 && !p->w.unchanged && !p->w.duplicate) {
        uint64_t delivered = srv.stats.deliveries;
        if (chan_fanout(c, p->w.offset, rec, reclen, p->frames))
            hlog(LOG_WARN, "server", "out of memory fanning out %s offset %llu", c->name,
                 (unsigned long long)p->w.offset);
        /* sys:stats counts under namespace="sys" only, not as traffic. */
        if (!chan_is_sys(c)) srv.stats.publications++;
        metrics.ns_publications[stats_ns_index(c->ns)]++;
        /* chan_fanout() counts the process-wide total; the difference is this namespace's share. */
        metrics.ns_deliveries[stats_ns_index(c->ns)] += srv.stats.deliveries - delivered;
        chan_count_pub(c);
        histo_observe(&metrics.publish_fanout_seconds, (double)(clock_mono_ns() - p->submit_ns) / 1e9);
    }
    /* What the operation published elsewhere committed with it: out after its own delta. */
    if (out.code == 0) sides_fanout(p);
    chan_maybe_drop(c);
    pub_free(p);
}

static void on_async(uv_async_t *a)
{
    pub_t *done;
    struct gone *gone;
    struct due *due;

    (void)a;
    uv_mutex_lock(&pp.mu);
    done = pp.done;
    pp.done = NULL;
    pp.done_tail = &pp.done;
    gone = pp.gone;
    pp.gone = NULL;
    due = pp.due;
    pp.due = NULL;
    uv_mutex_unlock(&pp.mu);

    while (done) {
        pub_t *p = done;
        done = p->next;
        finish(p);
    }
    while (gone) {
        struct gone *g = gone;
        chan_t *c = chan_find(g->name, g->len);
        gone = g->next;
        /* The store forgot this channel's log: the next publication starts a
         * new one, under a new epoch unless the channel is still in memory. */
        if (c && !c->inflight) {
            c->stored = 0;
            if (!chan_maybe_drop(c) && c->ns->history && c->last_offset) hint_add(c);
        }
        free(g);
    }
    if (due) {
        while (due) {
            struct due *d = due;
            due = d->next;
            if (pp.on_due && !srv.stopping) pp.on_due(d->at, d->data, d->chanlen, d->data + d->chanlen, d->keylen);
            free(d);
        }
        /* What was just queued is committed before the next look. */
        uv_mutex_lock(&pp.mu);
        pp.due_busy = 0;
        uv_mutex_unlock(&pp.mu);
    }
}

void pubpipe_timers(void (*due)(int64_t, const char *, size_t, const char *, size_t))
{
    uv_mutex_lock(&pp.mu);
    pp.on_due = due;
    uv_mutex_unlock(&pp.mu);
}

/* Hands @p to the storage thread (or to the held list, during a hold). */
static void queue_push(pub_t *p)
{
    if (!p->submit_ns) p->submit_ns = clock_mono_ns();
    if (pp.holds) {
        *pp.held_tail = p;
        pp.held_tail = &p->next;
        return;
    }
    uv_mutex_lock(&pp.mu);
    /* Nothing older waits: this one is the oldest until it commits. */
    if (!atomic_load_explicit(&pp.oldest_ns, memory_order_relaxed))
        atomic_store_explicit(&pp.oldest_ns, p->submit_ns, memory_order_relaxed);
    *pp.todo_tail = p;
    pp.todo_tail = &p->next;
    uv_cond_signal(&pp.cv);
    uv_mutex_unlock(&pp.mu);
}

/* Fills what the store needs to append @p to @c's log, and queues it. */
static void queue_write(pub_t *p, chan_t *c, int64_t ts)
{
    p->w.chan = c->name;
    p->w.chanlen = c->namelen;
    p->w.ts = ts;
    p->w.keep = c->ns->history_size;
    p->w.base_offset = c->last_offset;
    p->w.epoch = c->epoch;
    p->w.target = target_policy;
    if (srv.cfg.nwebhooks) {
        p->w.nhooks = config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, c->name, c->namelen, p->hooks);
        p->w.hooks = p->hooks;
    }
    for (int e = 0; e < PROTO_NENC; e++) p->want[e] = c->nenc[e] > 0;
    c->inflight++;
    queue_push(p);
}

int pubpipe_event(const char *const *hooks, size_t n, const json_t *ev)
{
    char *text;
    size_t len;
    pub_t *p;

    if (!pp.store || !n) return 0;
    if (n > WEBHOOK_MAX) n = WEBHOOK_MAX;
    if (!(text = json_dumps(ev, JSON_COMPACT))) return -ENOMEM;
    len = strlen(text);
    if (!(p = calloc(1, sizeof *p + len))) {
        free(text);
        return -ENOMEM;
    }
    memcpy(p->rec, text, len);
    free(text);
    p->reclen = len;
    p->event = 1;
    memcpy(p->hooks, hooks, n * sizeof *hooks);
    p->w.hooks = p->hooks;
    p->w.nhooks = n;
    p->w.ts = clock_wall_ms();
    queue_push(p);
    return 0;
}

/* A publication on a channel without history has no transaction to carry
 * its webhook event: the event is queued by a write of its own. */
static void unstored_event(chan_t *c, uint64_t offset, const unsigned char *rec, size_t reclen)
{
    const char *hooks[WEBHOOK_MAX];
    char reason[PROTO_REASON_MAX];
    size_t n = config_webhooks_for(&srv.cfg, WH_EV_PUBLICATION, c->name, c->namelen, hooks);
    json_t *ev = NULL;

    if (!n || mpack_decode(rec, reclen, &ev, reason) || !json_is_object(ev)) {
        json_decref(ev);
        return;
    }
    json_object_set_new(ev, "type", json_string("publication"));
    json_object_set_new(ev, "channel", json_stringn(c->name, c->namelen));
    json_object_set_new(ev, "offset", json_integer((json_int_t)offset));
    if (pubpipe_event(hooks, n, ev))
        hlog(LOG_WARN, "storage", "out of memory queueing a webhook event of %.*s", (int)c->namelen, c->name);
    json_decref(ev);
}

void pubpipe_hold(void)
{
    if (!pp.holds++) {
        pp.held = NULL;
        pp.held_tail = &pp.held;
    }
}

void pubpipe_release(void)
{
    if (!pp.holds || --pp.holds || !pp.held) return;
    uv_mutex_lock(&pp.mu);
    if (!atomic_load_explicit(&pp.oldest_ns, memory_order_relaxed))
        atomic_store_explicit(&pp.oldest_ns, pp.held->submit_ns, memory_order_relaxed);
    *pp.todo_tail = pp.held;
    pp.todo_tail = pp.held_tail;
    uv_cond_signal(&pp.cv);
    uv_mutex_unlock(&pp.mu);
    pp.held = NULL;
    pp.held_tail = &pp.held;
}

/* The digest kept with an idempotency key: SHA-256 of the channel name, a
 * NUL, and @data as compact JSON with sorted keys, so the same data sent
 * in JSON or MessagePack, with its keys in any order, is the same request.
 * Return: 0, or -ENOMEM. */
static int idem_digest(const chan_t *c, const json_t *data, unsigned char *out)
{
    char *text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = text && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, c->name, c->namelen) && EVP_DigestUpdate(ctx, "", 1) &&
             EVP_DigestUpdate(ctx, text, strlen(text)) && EVP_DigestFinal_ex(ctx, out, NULL);

    EVP_MD_CTX_free(ctx);
    free(text);
    return ok ? 0 : -ENOMEM;
}

int pubpipe_admit(const origin_t *origin, char *reason)
{
    uint64_t oldest, now, n;

    /* The broker's own writes (sys:stats, seat hold expiries) are few and
     * nobody would retry them; the items of a held batch were admitted
     * with it (POST /api/publish/batch asks once, before the hold). */
    if (origin->kind == ORIGIN_NONE || pp.holds || !pp.running) return 0;
    oldest = atomic_load_explicit(&pp.oldest_ns, memory_order_relaxed);
    now = oldest ? clock_mono_ns() : 0;
    if (!oldest || !admit_shed(oldest, now, srv.cfg.max_queue_delay_ms)) {
        if (pp.shed_log.shedding && admit_log_end(&pp.shed_log, now ? now : clock_mono_ns(), &n))
            hlog(LOG_WARN, "storage", "overloaded no more: writes are admitted again (%llu refused since the last "
                 "report, %llu since start)", (unsigned long long)n, (unsigned long long)srv.stats.publications_shed);
        return 0;
    }
    srv.stats.publications_shed++;
    if ((n = admit_log_note(&pp.shed_log, now)))
        hlog(LOG_WARN, "storage", "overloaded: refused %llu writes with error 135 (%llu since start): the oldest "
             "uncommitted write is %llu ms old, over history.max_queue_delay (%u ms)", (unsigned long long)n,
             (unsigned long long)srv.stats.publications_shed, (unsigned long long)((now - oldest) / 1000000),
             srv.cfg.max_queue_delay_ms);
    snprintf(reason, PROTO_REASON_MAX, "the broker is past its capacity (its storage is %llu ms behind, over "
             "history.max_queue_delay): nothing was done; retry after a backoff",
             (unsigned long long)((now - oldest) / 1000000));
    return PROTO_E_OVERLOADED;
}

/* Refuses a write of @c at once (pubpipe_admit() said so): @ops' done()
 * hears of it, then @origin (taken), as finish() would tell them; @ops is
 * freed and @c dropped if nothing else holds it. */
static void refuse(chan_t *c, pub_ops_t *ops, origin_t *origin, const char *reason)
{
    if (ops && ops->done) ops->done(c, ops, PROTO_E_OVERLOADED, NULL);
    reply_error(origin, 0, PROTO_E_OVERLOADED, reason, NULL);
    origin_clear(origin);
    pub_ops_free(ops);
    chan_maybe_drop(c);
}

int pubpipe_publish(chan_t *c, const json_t *data, const pub_meta_t *meta, origin_t *origin)
{
    static const pub_meta_t plain;
    char reason[PROTO_REASON_MAX];
    int64_t ts = clock_wall_ms();
    size_t klen;
    pub_t *p;

    if (!meta) meta = &plain;
    /* Checked before any work: a refusal must cost the overloaded loop little. */
    if (c->ns->history && pp.store && pubpipe_admit(origin, reason)) {
        refuse(c, NULL, origin, reason);
        return 0;
    }
    klen = meta->idem_key ? meta->idem_len + HIST_IDEM_DIGEST : 0;
    wbuf_reset(&srv.enc);
    rec_build(&srv.enc, ts, data, meta->from, meta->reply_to, meta->kind);
    if (srv.enc.oom || !(p = calloc(1, sizeof *p + srv.enc.len + klen))) {
        origin_clear(origin);
        return -ENOMEM;
    }
    memcpy(p->rec, srv.enc.p, srv.enc.len);
    p->reclen = srv.enc.len;
    if (meta->idem_key) {
        /* Kept after the record, with the request's digest: the request
         * that named them is gone by the commit. */
        unsigned char *dg = p->rec + p->reclen + meta->idem_len;
        memcpy(p->rec + p->reclen, meta->idem_key, meta->idem_len);
        p->w.idem_key = (const char *)p->rec + p->reclen;
        p->w.idem_len = meta->idem_len;
        p->w.idem_window_ms = srv.cfg.idempotency_window_ms;
        if (idem_digest(c, data, dg)) {
            free(p);
            origin_clear(origin);
            return -ENOMEM;
        }
        p->w.idem_digest = dg;
    }
    if (meta->check_author && meta->reply_to) {
        p->w.check_offset = meta->reply_to;
        p->w.check = author_check;
    }
    p->chan = c;
    p->submit_ns = clock_mono_ns();
    p->origin = *origin;
    origin->id = NULL;

    if (cluster_routes(c)) {
        /* A shared engine numbers, keeps and announces it; this node
         * delivers it when the engine's announcement comes back. */
        struct engine_idem idem = { p->w.idem_key, p->w.idem_len, p->w.idem_digest,
                                    (int64_t)srv.cfg.idempotency_window_ms };
        struct engine_pubopts o = { meta->reply_to, meta->check_author, p->w.idem_key ? &idem : NULL };
        int rc = cluster_publish(c, p->rec, p->reclen, ts, &o, &p->origin);
        free(p);
        return rc;
    }
    if (!c->ns->history || !pp.store) {
        /* No history: the offset lives in memory and the fan-out is now. */
        p->w.offset = c->last_offset + 1;
        if (srv.cfg.nwebhooks) unstored_event(c, p->w.offset, p->rec, p->reclen);
        memcpy(p->w.stored_epoch, c->epoch, HIST_EPOCH_LEN + 1);
        c->inflight++;
        finish(p);
        return 0;
    }
    p->w.rec = p->rec;
    p->w.reclen = p->reclen;
    queue_write(p, c, ts);
    return 0;
}

int pubpipe_state(chan_t *c, pub_ops_t *ops, origin_t *origin)
{
    char reason[PROTO_REASON_MAX];
    pub_t *p;

    if (cluster_routes(c)) return cluster_state(c, ops, origin);

    if (pp.store && pubpipe_admit(origin, reason)) {
        refuse(c, ops, origin, reason);
        return 0;
    }
    p = calloc(1, sizeof *p);
    if (!p || !pp.store) {
        free(p);
        pub_ops_free(ops);
        origin_clear(origin);
        return -ENOMEM;
    }
    p->chan = c;
    p->submit_ns = clock_mono_ns();
    p->origin = *origin;
    origin->id = NULL;
    p->sops = ops;
    p->w.ops = ops->ops;
    p->w.nops = ops->n;
    queue_write(p, c, clock_wall_ms());
    return 0;
}

void pubpipe_state_report(chan_t *c, pub_ops_t *ops, const origin_t *origin, int status, size_t failed_op,
                          uint64_t conflict_version, uint64_t offset, const unsigned char *rec, size_t reclen)
{
    struct pub_outcome out = { .offset = offset, .state_rec = rec, .state_reclen = reclen, .reply_op = ops->reply_op };
    json_t *extra = NULL;
    char why[PROTO_REASON_MAX];

    if (status) out.code = state_refusal(ops, status, failed_op, conflict_version, why, &extra);
    if (ops->done) ops->done(c, ops, out.code, extra);
    out.reason = out.code ? why : NULL;
    out.extra = extra;
    report(origin, c, &out);
    json_decref(extra);
}

void pubpipe_custom_report(chan_t *c, pub_ops_t *ops, const origin_t *origin, uint64_t offset,
                           const unsigned char *rec, size_t reclen, const json_t *result)
{
    struct pub_outcome out = { .offset = offset, .state_rec = rec, .state_reclen = reclen, .reply_op = ops->reply_op };
    json_t *extra;
    char why[PROTO_REASON_MAX];

    if (json_object_get(result, "code")) {
        /* As finish() answers a custom operation's refusal. */
        out.code = (int)json_integer_value(json_object_get(result, "code"));
        snprintf(why, sizeof why, "%s", json_string_value(json_object_get(result, "reason")) ?
                 json_string_value(json_object_get(result, "reason")) : "refused");
        extra = json_deep_copy(result);
        json_object_del(extra, "code");
        json_object_del(extra, "reason");
        if (!out.code) out.code = PROTO_E_INTERNAL;
    } else {
        extra = json_deep_copy(result);
    }
    if (ops->done) ops->done(c, ops, out.code, extra);
    out.reason = out.code ? why : NULL;
    out.extra = extra;
    report(origin, c, &out);
    json_decref(extra);
}

int pubpipe_custom(const char *name, const pub_custom_t *pc, origin_t *origin, char *reason)
{
    pub_ops_t *ops = calloc(1, sizeof *ops);
    chan_t *c;
    int r;

    if (!ops || !(ops->ops = calloc(1, sizeof *ops->ops))) {
        free(ops);
        if (pc->custom_free) pc->custom_free(pc->custom);
        origin_clear(origin);
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    ops->n = 1;
    ops->ops[0].type = HIST_OP_CUSTOM;
    ops->ops[0].custom = pc->apply;
    ops->ops[0].arg = pc->arg;
    ops->custom = pc->custom;
    ops->custom_free = pc->custom_free;
    ops->done = pc->done;
    ops->reply_op = pc->reply_op;
    if ((r = chan_open(name, strlen(name), &c))) {
        pub_ops_free(ops);
        origin_clear(origin);
        snprintf(reason, PROTO_REASON_MAX, "%s", r == PROTO_E_LIMIT ? "limit reached: limits.max_channels"
                                                                    : "out of memory");
        return r == PROTO_E_LIMIT ? r : PROTO_E_INTERNAL;
    }
    if (pc->need_state && !c->ns->state) {
        chan_maybe_drop(c);
        pub_ops_free(ops);
        origin_clear(origin);
        snprintf(reason, PROTO_REASON_MAX, "%s", pc->need_state);
        return PROTO_E_DISABLED;
    }
    if (pubpipe_state(c, ops, origin)) {
        chan_maybe_drop(c);
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    return 0;
}

int pubpipe_probe(uint64_t serial)
{
    pub_t *p;

    if (!pp.running) return -EIO;
    if (!(p = calloc(1, sizeof *p))) return -ENOMEM;
    p->origin.kind = ORIGIN_REST;
    p->origin.serial = serial;
    queue_push(p);
    return 0;
}

static int load_chan(void *ctx, const char *name, size_t len, const hist_chan_t *hc)
{
    chan_t *c;
    (void)ctx;
    if (chan_open(name, len, &c)) return -ENOMEM;
    c->last_offset = hc->last_offset;
    memcpy(c->epoch, hc->epoch, HIST_EPOCH_LEN + 1);
    c->stored = 1;
    return 0;
}

int pubpipe_start(void)
{
    struct hist_opts o = {
        .dir = srv.cfg.data_dir,
        .map_size = srv.cfg.map_size,
        .map_size_max = srv.cfg.map_size_max,
        .nosync = srv.cfg.durability == DURABILITY_INTERVAL,
    };
    char err[512];
    int rc;

    pp.todo_tail = &pp.todo;
    pp.done_tail = &pp.done;
    if (hist_open(&pp.store, &o, err, sizeof err)) {
        hlog(LOG_ERROR, "storage", "%s", err);
        return -1;
    }
    /* With a shared engine, channels are the engine's: a log this data
     * directory kept from a single-node past is not loaded (docs/cluster.md). */
    if (!cluster_on() && (rc = hist_load(pp.store, load_chan, NULL))) {
        hlog(LOG_ERROR, "storage", "loading channels from the history store failed: %s", strerror(-rc));
        goto fail;
    }
    hlog(LOG_INFO, "storage", "history store open: %zu channels", chan_count());
    uv_mutex_init(&pp.mu);
    uv_cond_init(&pp.cv);
    uv_async_init(&srv.loop, &pp.async, on_async);
    if (uv_thread_create(&pp.thread, storage_main, NULL)) {
        hlog(LOG_ERROR, "storage", "cannot start the storage thread");
        uv_close((uv_handle_t *)&pp.async, NULL);
        goto fail;
    }
    pp.running = 1;
    return 0;
fail:
    hist_close(pp.store);
    pp.store = NULL;
    return -1;
}

void pubpipe_stop(void)
{
    if (!pp.running) {
        if (pp.store) hist_close(pp.store);
        pp.store = NULL;
        return;
    }
    uv_mutex_lock(&pp.mu);
    pp.stop = 1;
    uv_cond_signal(&pp.cv);
    uv_mutex_unlock(&pp.mu);
    uv_thread_join(&pp.thread);
    pp.running = 0;
    on_async(&pp.async);                       /* the last outcomes */
    uv_close((uv_handle_t *)&pp.async, NULL);
    uv_mutex_destroy(&pp.mu);
    uv_cond_destroy(&pp.cv);
    hist_close(pp.store);
    pp.store = NULL;
    while (pp.hints) {
        struct hint *h = pp.hints;
        pp.hints = h->next;
        free(h);
    }
}
