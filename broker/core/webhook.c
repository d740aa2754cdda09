/* broker/core/webhook.c - see webhook.h. */
#include "core/webhook.h"
#include "core/cluster.h"
#include "core/cluster_occ.h"
#include "core/pubpipe.h"
#include "core/whpost.h"
#include "engine_webhooks.h"
#include "chname.h"
#include "net/http.h"
#include "herald.h"
#include "clock.h"
#include "log.h"
#include "rand.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long an idle thread sleeps before looking at its queue anyway. */
#define IDLE_LOOK_MS 1000
/* The same under the redis engine: events published on other nodes come
 * without a kick, so the deliverer looks this often (one small script). */
#define IDLE_LOOK_REDIS_MS 200
/* How often the queue depth is counted. */
#define DEPTH_EVERY_MS 500
/* The most queued events one delivery round looks at to find those whose
 * channel is not held by a failure (docs/webhooks.md, "Ordering"). */
#define SCAN_MAX 10000
/* Buckets of the held-channel table. */
#define HELD_BUCKETS 256

/* A channel whose events wait for a retry: its later events are held too,
 * other channels' events go on. Delivery thread only. */
struct held {
    struct held *next;
    int64_t next_try_ms;          /* its next post (wall ms) */
    unsigned attempts;            /* of its oldest queued event */
    int alone;                    /* failed in a batch with other channels: from
                                   * now on posted in batches of its own, so its
                                   * failure does not hold theirs */
    size_t len;
    char name[];
};

enum cmd_kind { CMD_LIST = 1, CMD_RETRY, CMD_DELETE };

/* A REST request for a webhook's thread. */
struct cmd {
    struct cmd *next;
    enum cmd_kind kind;
    uint64_t serial;
    uint64_t id, after;
    unsigned limit;
    unsigned status;              /* the answer: HTTP status and body */
    json_t *res;
};

struct wh {
    const webhook_conf_t *conf;
    whpost_t http;                /* its HTTP client (delivery thread) */
    whq_t *rq;                    /* the redis engine's queue (delivery thread); NULL: the LMDB store's */
    int leader;                   /* rq: this thread holds the delivery lease (delivery thread) */
    int lost;                     /* rq: the lease went during a post (delivery thread) */
    struct held *held[HELD_BUCKETS];  /* delivery thread only */
    uv_thread_t thread;
    uv_mutex_t mu;                /* everything below */
    uv_cond_t cv;
    int kick, stop, started;
    int exited;                   /* the delivery thread is done (under wh.mu) */
    struct cmd *cmds, **cmds_tail;
    struct webhook_stats st;
    unsigned attempts;            /* the most attempts of a held channel's event */
    size_t nheld;                 /* channels held by a failure */
    int64_t next_try_ms;          /* the earliest next post of a held channel; 0: none */
    /* Delivery thread only: every queued event up to skip_upto belongs to a
     * channel held until at least skip_until, so until then a round looks
     * only past it (a kick per commit must not rescan a long held backlog). */
    uint64_t skip_upto;
    int64_t skip_until;
    int64_t last_success_ms, last_error_ms, oldest_ms;
    uint64_t dead_depth;
    char last_error[256];
};

static const double latency_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                         900, 3600 };

static struct {
    struct wh *hooks;
    size_t n;
    uv_async_t async;
    uv_mutex_t mu;                /* done, and each hook's exited */
    struct cmd *done;
    int running;
    void (*stopped)(void);        /* webhook_stop()'s @done, while its threads end */
} wh;

static int stopping(struct wh *w)
{
    int s;
    uv_mutex_lock(&w->mu);
    s = w->stop;
    uv_mutex_unlock(&w->mu);
    return s;
}

/* Asked during a post's waits: under the redis engine it also keeps the
 * delivery lease, and gives the post up when the lease is lost (another
 * node delivers now). */
static int stopping_cb(void *arg)
{
    struct wh *w = arg;

    if (stopping(w)) return 1;
    if (w->rq && w->leader && whq_renew(w->rq) != 1) {
        w->lost = 1;
        return 1;
    }
    return 0;
}

/* ---- the queue: the LMDB store's, or the redis engine's (delivery thread) ---- */

static int q_pick(struct wh *w, uint64_t after, size_t scan_max, size_t max,
                  int (*want)(void *ctx, const char *chan, size_t chanlen, unsigned attempts), void *ctx,
                  hist_ob_item_t **out, size_t *nout, uint64_t *last_seen)
{
    if (w->rq) return whq_pick(w->rq, after, scan_max, max, want, ctx, out, nout, last_seen);
    return hist_outbox_pick(pubpipe_store(), w->conf->name, after, scan_max, max, want, ctx, out, nout, last_seen);
}

static int q_tried(struct wh *w, const uint64_t *ids, size_t n, int64_t now, unsigned *att)
{
    if (w->rq) return whq_tried(w->rq, ids, n, now, att);
    return hist_outbox_tried(pubpipe_store(), w->conf->name, ids, n, now, att);
}

static int q_ack(struct wh *w, const uint64_t *ids, size_t n)
{
    if (w->rq) return whq_ack(w->rq, ids, n);
    return hist_outbox_ack(pubpipe_store(), w->conf->name, ids, n);
}

static int q_bury(struct wh *w, const uint64_t *ids, size_t n, const char *why)
{
    if (w->rq) return whq_bury(w->rq, ids, n, why);
    return hist_outbox_bury(pubpipe_store(), w->conf->name, ids, n, why);
}

static int q_depth(struct wh *w, int dead, uint64_t *n, int64_t *oldest)
{
    if (w->rq) return whq_depth(w->rq, dead, n, oldest);
    return hist_outbox_depth(pubpipe_store(), w->conf->name, dead, n, oldest);
}

/* What a queue call's failure says, for the logs. */
static const char *q_err(int rc)
{
    if (rc == HIST_E_FULL) return "the store is full";
    if (rc == WHQ_E_LOST) return "the delivery lease went to another node";
    return strerror(rc < 0 ? -rc : rc);
}

/* ---- delivery (delivery thread) ---- */

/* The longest wait of the backoff after @attempts failures:
 * min(retry_max, retry_base * 2^(attempts-1)). */
static int64_t backoff_cap_ms(const webhook_conf_t *c, unsigned attempts)
{
    uint64_t cap = c->retry_base_ms;

    for (unsigned i = 1; i < attempts && cap < c->retry_max_ms; i++) cap *= 2;
    return (int64_t)(cap > c->retry_max_ms ? c->retry_max_ms : cap);
}

/* Full jitter: a uniform delay in [0, backoff_cap_ms()]. */
static int64_t backoff_ms(const webhook_conf_t *c, unsigned attempts)
{
    uint64_t cap = (uint64_t)backoff_cap_ms(c, attempts), r;

    rand_bytes(&r, sizeof r);
    return (int64_t)(r % (cap + 1));
}

static void count_depth(struct wh *w)
{
    uint64_t n = 0, dn = 0, held = 0;
    int64_t oldest = 0, dold;

    if (q_depth(w, 0, &n, &oldest) || q_depth(w, 1, &dn, &dold)) return;
    /* A node that does not deliver reports the deliverer's held channels. */
    if (w->rq && !w->leader && whq_held_count(w->rq, &held)) return;
    uv_mutex_lock(&w->mu);
    w->st.depth = n;
    w->oldest_ms = oldest;
    w->dead_depth = dn;
    if (w->rq && !w->leader) w->nheld = (size_t)held;
    uv_mutex_unlock(&w->mu);
}

/* ---- held channels (delivery thread) ---- */

static size_t held_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;                 /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)name[i]) * 16777619u;
    return h % HELD_BUCKETS;
}

static struct held *held_find(struct wh *w, const char *name, size_t len)
{
    for (struct held *e = w->held[held_hash(name, len)]; e; e = e->next)
        if (e->len == len && !memcmp(e->name, name, len)) return e;
    return NULL;
}

/* The entry of channel @name, made when missing. Return: it, or NULL out of memory. */
static struct held *held_get(struct wh *w, const char *name, size_t len)
{
    struct held *e = held_find(w, name, len);
    size_t b;

    if (e) return e;
    if (!(e = calloc(1, sizeof *e + len + 1))) return NULL;
    memcpy(e->name, name, len);
    e->len = len;
    b = held_hash(name, len);
    e->next = w->held[b];
    w->held[b] = e;
    return e;
}

/* Under the redis engine a held channel is also kept in Redis, so that a
 * node taking the delivery over continues its backoff; these two keep it. */
static void held_store(struct wh *w, const struct held *e)
{
    int rc;

    if (w->rq && w->leader && (rc = whq_held_put(w->rq, e->name, e->len, e->next_try_ms, e->attempts, e->alone)))
        hlog(LOG_WARN, "webhook", "%s: storing the retry of %.*s failed: %s", w->conf->name, (int)e->len, e->name,
             q_err(rc));
}

static void held_unstore(struct wh *w, const char *name, size_t len)
{
    if (w->rq && w->leader) whq_held_del(w->rq, name, len);   /* a failure leaves a stale backoff only */
}

static void held_drop(struct wh *w, const char *name, size_t len)
{
    for (struct held **pp = &w->held[held_hash(name, len)]; *pp; pp = &(*pp)->next)
        if ((*pp)->len == len && !memcmp((*pp)->name, name, len)) {
            struct held *e = *pp;
            *pp = e->next;
            held_unstore(w, e->name, e->len);
            free(e);
            return;
        }
}

/* Forgets the held channels whose retry is due at @now: called when a round
 * found nothing to post, so they have no events left (those dead-lettered
 * were their last), or none within SCAN_MAX, which lose only their backoff. */
static void held_prune(struct wh *w, int64_t now)
{
    for (size_t b = 0; b < HELD_BUCKETS; b++)
        for (struct held **pp = &w->held[b]; *pp;) {
            struct held *e = *pp;
            if (e->next_try_ms <= now) {
                *pp = e->next;
                held_unstore(w, e->name, e->len);
                free(e);
            } else {
                pp = &e->next;
            }
        }
}

static void held_clear(struct wh *w)
{
    for (size_t b = 0; b < HELD_BUCKETS; b++)
        while (w->held[b]) {
            struct held *e = w->held[b];
            w->held[b] = e->next;
            free(e);
        }
}

/* Publishes the held table's summary for webhook_status() and the wait of
 * wh_main(): how many channels are held, the most attempts, the earliest retry. */
static void held_summary(struct wh *w)
{
    size_t n = 0;
    unsigned most = 0;
    int64_t first = 0;

    for (size_t b = 0; b < HELD_BUCKETS; b++)
        for (struct held *e = w->held[b]; e; e = e->next) {
            n++;
            if (e->attempts > most) most = e->attempts;
            if (!first || e->next_try_ms < first) first = e->next_try_ms;
        }
    uv_mutex_lock(&w->mu);
    w->nheld = n;
    w->attempts = most;
    w->next_try_ms = first;
    uv_mutex_unlock(&w->mu);
}

/* What one delivery round takes from the queue (hist_outbox_pick()'s @want).
 * The choice depends on the channel alone, so a channel's events are either
 * all skipped or taken oldest first: that is what keeps each channel in
 * order. A held channel whose retry is not due is skipped; a channel that
 * failed together with others goes in a batch of its own. */
struct round {
    struct wh *w;
    int64_t now;
    int mode;                     /* 0 undecided, 1 mixed, 2 one channel (alone) */
    char chan[CHNAME_MAX + 1];    /* mode 2: that channel */
    size_t chanlen;
};

static int want(void *ctx, const char *chan, size_t len, unsigned attempts)
{
    struct round *r = ctx;
    struct held *e = held_find(r->w, chan, len);

    (void)attempts;
    if (e && e->next_try_ms > r->now) return 0;
    if (!r->mode) {
        r->mode = e && e->alone && len < sizeof r->chan ? 2 : 1;
        if (r->mode == 2) {
            memcpy(r->chan, chan, len);
            r->chanlen = len;
        }
        return 1;
    }
    if (r->mode == 2) return len == r->chanlen && !memcmp(chan, r->chan, len);
    return !(e && e->alone);
}

/* How many distinct channels the @n items hold. */
static size_t count_channels(const hist_ob_item_t *items, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < i; j++)
            if (items[j].chanlen == items[i].chanlen && !memcmp(items[j].chan, items[i].chan, items[i].chanlen)) break;
        k += j == i;
    }
    return k;
}

/* After a failed post of @items: counts the attempt with each event (in the
 * store), dead-letters those out of attempts or too old, and holds their
 * channels until a retry with backoff. */
static void failed(struct wh *w, hist_ob_item_t *items, size_t n, const char *err, int64_t now)
{
    const webhook_conf_t *c = w->conf;
    unsigned att[100];
    uint64_t ids[100], dead = 0;
    size_t nchan = count_channels(items, n);
    int rc;

    for (size_t i = 0; i < n; i++) ids[i] = items[i].id;
    if ((rc = q_tried(w, ids, n, now, att))) {
        /* The count could not be stored: it is kept for this run only. */
        hlog(LOG_WARN, "webhook", "%s: storing the attempt count failed: %s", c->name, q_err(rc));
        for (size_t i = 0; i < n; i++) att[i] = items[i].attempts + 1;
    }
    for (size_t i = 0; i < n; i++) {
        struct held *e;
        if (att[i] >= c->max_attempts || now - items[i].ts >= (int64_t)c->max_age_ms) {
            char why[300];
            snprintf(why, sizeof why, "gave up after %u attempt%s: %s", att[i], att[i] == 1 ? "" : "s", err);
            if ((rc = q_bury(w, &items[i].id, 1, why)))
                hlog(LOG_WARN, "webhook", "%s: moving event %llu to the dead letters failed: %s", c->name,
                     (unsigned long long)items[i].id, q_err(rc));
            else {
                hlog(LOG_WARN, "webhook", "%s: event %llu dead-lettered (%s)", c->name,
                     (unsigned long long)items[i].id, why);
                dead++;
            }
        }
        if (!(e = held_get(w, items[i].chan, items[i].chanlen))) continue;
        /* The channel's oldest event in the batch sets its backoff (a due
         * entry's next_try_ms is at most @now; one set here is above it). */
        if (e->next_try_ms <= now) {
            e->attempts = att[i];
            e->next_try_ms = now + 1 + backoff_ms(c, att[i] ? att[i] : 1);
            if (nchan > 1) e->alone = 1;
            held_store(w, e);
        }
        if (nchan > 1) e->alone = 1;
    }
    uv_mutex_lock(&w->mu);
    w->st.dead += dead;
    uv_mutex_unlock(&w->mu);
}

/* A channel whose oldest event failed before but that is not held here -
 * the broker restarted, or a round pruned its backoff - waits until that
 * event's stored last attempt plus the longest wait its backoff could have
 * drawn (the draw itself is not stored with the LMDB queue): a restart must
 * not post at once to a receiver that was failing, and may only ever wait
 * longer, never shorter, than without it. Such channels are held now and
 * their events left out of this round. Return: how many of the @n items
 * stay, in order, at the front of @items. */
static size_t restore_backoff(struct wh *w, hist_ob_item_t *items, size_t n, int64_t now)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        hist_ob_item_t *it = &items[i];
        struct held *e = held_find(w, it->chan, it->chanlen);
        if (!e && it->attempts && it->last_attempt) {
            int64_t due = it->last_attempt + backoff_cap_ms(w->conf, it->attempts);
            if (due > now && (e = held_get(w, it->chan, it->chanlen))) {
                e->attempts = it->attempts;
                e->next_try_ms = due;
                held_store(w, e);
            }
        }
        if (e && e->next_try_ms > now) {
            json_decref(it->event);
            continue;
        }
        if (k != i) items[k] = *it;
        k++;
    }
    return k;
}

/* Posts one batch: the oldest events of the channels not held. Return: 1
 * when a batch was posted (delivered or not: more may be due), 0 when
 * nothing is due (the queue is empty or every channel in it waits). */
static int deliver(struct wh *w)
{
    const webhook_conf_t *c = w->conf;
    struct round r = { w, clock_wall_ms(), 0, "", 0 };
    hist_ob_item_t *items;
    uint64_t after = w->skip_upto && r.now < w->skip_until ? w->skip_upto : 0, seen;
    size_t n;
    char idlist[100 * 21], err[200];
    json_t *body, *evs;
    char *text;
    int64_t now;
    size_t il = 0;
    int rc, retry = 0;

    w->lost = 0;
    if ((rc = q_pick(w, after, SCAN_MAX, c->batch_size, want, &r, &items, &n, &seen))) {
        /* Redis being unreachable is logged by the queue, once in a while. */
        if (!w->rq || rc != -EIO)
            hlog(LOG_WARN, "webhook", "%s: reading its queue failed: %s", c->name, q_err(rc));
        return 0;
    }
    if (n && !(n = restore_backoff(w, items, n, r.now))) {
        /* Every channel picked waits out a restored backoff: the next
         * round skips them and looks at the others. */
        hist_ob_items_free(items, 0);
        held_summary(w);
        return 1;
    }
    if (!n) {
        hist_ob_items_free(items, n);
        if (!after) held_prune(w, r.now);
        held_summary(w);
        /* Everything looked at is held: the next rounds start past it
         * until the first held channel is due. */
        w->skip_upto = seen;
        w->skip_until = w->next_try_ms;
        return 0;
    }
    evs = json_array();
    idlist[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        json_array_append(evs, items[i].event);
        retry |= items[i].attempts > 0;
        il += (size_t)snprintf(idlist + il, sizeof idlist - il, "%s%llu", i ? "," : "", (unsigned long long)items[i].id);
    }
    body = json_pack("{s:s,s:o}", "webhook", c->name, "events", evs);
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    uv_mutex_lock(&w->mu);
    w->st.retries += retry;
    uv_mutex_unlock(&w->mu);
    if (!text) snprintf(err, sizeof err, "out of memory");
    rc = text ? whpost_send(&w->http, text, strlen(text), idlist, err, sizeof err) : -1;
    free(text);
    now = clock_wall_ms();
    if (rc == 0) {
        uint64_t ids[100];
        int ar;
        for (size_t i = 0; i < n; i++) {
            ids[i] = items[i].id;
            held_drop(w, items[i].chan, items[i].chanlen);
        }
        ar = q_ack(w, ids, n);
        uv_mutex_lock(&w->mu);
        w->st.deliveries += n;
        w->last_success_ms = now;
        for (size_t i = 0; i < n; i++) histo_observe(&w->st.latency, (double)(now - items[i].ts) / 1000.0);
        uv_mutex_unlock(&w->mu);
        hist_ob_items_free(items, n);
        held_summary(w);
        if (ar) {
            /* Delivered but still queued: it will be delivered again. */
            hlog(LOG_WARN, "webhook", "%s: removing delivered events failed: %s", c->name, q_err(ar));
            return 0;
        }
        return 1;
    }
    if (stopping(w) || w->lost) {              /* cut short by the shutdown or a lost lease: not the receiver's
                                                * failure */
        hist_ob_items_free(items, n);
        return 0;
    }
    uv_mutex_lock(&w->mu);
    w->st.failures++;
    w->last_error_ms = now;
    snprintf(w->last_error, sizeof w->last_error, "%s", err);
    uv_mutex_unlock(&w->mu);
    hlog(LOG_INFO, "webhook", "%s: delivery of %s failed (%s); attempt %u of %u", c->name, idlist, err,
         items[0].attempts + 1, c->max_attempts);
    failed(w, items, n, err, now);
    hist_ob_items_free(items, n);
    held_summary(w);
    if (w->next_try_ms < w->skip_until) w->skip_until = w->next_try_ms;
    return 1;
}

/* Runs a REST request on the queues. */
static void run_cmd(struct wh *w, struct cmd *k)
{
    hist_t *h = pubpipe_store();
    int rc;

    /* Under the redis engine every node answers from Redis, the deliverer or not. */
    if (k->kind == CMD_LIST) {
        hist_ob_item_t *items;
        size_t n;
        json_t *list;
        if ((rc = w->rq ? whq_read(w->rq, 1, k->after, k->limit, &items, &n)
                        : hist_outbox_read(h, w->conf->name, 1, k->after, k->limit, &items, &n))) {
            k->status = 500;
            return;
        }
        list = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, json_pack("{s:I,s:I,s:s,s:I,s:o,s:o,s:O}", "id", (json_int_t)items[i].id,
                                                  "queued_at", (json_int_t)items[i].ts, "error", items[i].error,
                                                  "attempts", (json_int_t)items[i].attempts, "first_attempt",
                                                  items[i].first_attempt ? json_integer(items[i].first_attempt)
                                                                         : json_null(),
                                                  "last_attempt", items[i].last_attempt
                                                                      ? json_integer(items[i].last_attempt)
                                                                      : json_null(),
                                                  "event", items[i].event));
        k->res = json_pack("{s:s,s:o}", "webhook", w->conf->name, "dead_letters", list);
        if (k->res && n == k->limit) json_object_set_new(k->res, "next_after", json_integer((json_int_t)items[n - 1].id));
        hist_ob_items_free(items, n);
        k->status = k->res ? 200 : 500;
        return;
    }
    if (w->rq) rc = k->kind == CMD_RETRY ? whq_revive(w->rq, k->id) : whq_drop(w->rq, k->id);
    else if (k->kind == CMD_RETRY) rc = hist_outbox_revive(h, w->conf->name, k->id);
    else rc = hist_outbox_drop(h, w->conf->name, k->id);
    if (rc < 0) {
        hlog(LOG_WARN, "webhook", "%s: %s dead letters failed: %s", w->conf->name,
             k->kind == CMD_RETRY ? "retrying" : "deleting", strerror(-rc));
        k->status = 500;
        return;
    }
    if (k->id && rc == 0) {
        k->status = 404;
        return;
    }
    if (k->kind == CMD_RETRY) {
        /* An operator's retry is now, for every channel; revived events
         * come back under their old ids, below what was skipped. */
        held_clear(w);
        w->skip_upto = 0;
        held_summary(w);
        uv_mutex_lock(&w->mu);
        w->kick = 1;
        uv_mutex_unlock(&w->mu);
    }
    k->res = json_pack("{s:s,s:i}", "webhook", w->conf->name, k->kind == CMD_RETRY ? "retried" : "deleted", rc);
    k->status = k->res ? 200 : 500;
}

static void held_loaded(void *ctx, const char *chan, size_t len, int64_t next_try_ms, unsigned attempts, int alone)
{
    struct wh *w = ctx;
    struct held *e = len <= CHNAME_MAX ? held_get(w, chan, len) : NULL;

    if (!e) return;
    e->next_try_ms = next_try_ms;
    e->attempts = attempts;
    e->alone = alone;
}

/* Under the redis engine, before a round: take or keep the delivery lease
 * (docs/cluster.md#webhooks). A node that takes it loads the held channels
 * the last deliverer stored, so their backoff goes on; one that lost it
 * forgets its own. Return: whether to deliver (@more, or 1 when the
 * lease was just taken). */
static int lead(struct wh *w, int more)
{
    int fresh, retry, rc = whq_lease(w->rq, &fresh, &retry), was = w->leader;

    if (rc != 1) {
        w->leader = 0;
        if (was) {
            hlog(LOG_INFO, "webhook", "%s: %s", w->conf->name, rc == 0 ? "another node delivers now"
                 : "redis unreachable: not delivering until it is back");
            held_clear(w);
            w->skip_upto = 0;
            held_summary(w);
        }
        return 0;
    }
    w->leader = 1;
    if (!was || fresh || retry) {
        held_clear(w);
        w->skip_upto = 0;
        if (!was || fresh) {
            if (whq_held_load(w->rq, held_loaded, w)) {
                w->leader = 0;                 /* try again at the next round */
                held_clear(w);
                return 0;
            }
            hlog(LOG_INFO, "webhook", "%s: this node delivers now (took the lease)", w->conf->name);
        }
        held_summary(w);
        more = 1;
    }
    return more;
}

static void wh_main(void *arg)
{
    struct wh *w = arg;
    int64_t next_depth = 0, wait;
    int more = 1;

    pthread_setname_np(pthread_self(), "herald-webhook");   /* top -H, perf, /proc/PID/task */

    for (;;) {
        struct cmd *cmds;
        int64_t now;

        uv_mutex_lock(&w->mu);
        while (!w->stop && !w->cmds && !w->kick && !more) {
            now = clock_wall_ms();
            if (w->next_try_ms && w->next_try_ms <= now) {
                more = 1;                      /* a held channel's retry is due */
                break;
            }
            wait = w->rq ? IDLE_LOOK_REDIS_MS : IDLE_LOOK_MS;
            if (w->next_try_ms > now && w->next_try_ms - now < wait) wait = w->next_try_ms - now;
            if (uv_cond_timedwait(&w->cv, &w->mu, (uint64_t)wait * 1000000ULL) == UV_ETIMEDOUT)
                more = 1;                      /* an idle look: events may have come without a kick */
        }
        if (w->stop) {
            uv_mutex_unlock(&w->mu);
            break;
        }
        cmds = w->cmds;
        w->cmds = NULL;
        w->cmds_tail = &w->cmds;
        if (w->kick) more = 1;
        w->kick = 0;
        uv_mutex_unlock(&w->mu);

        while (cmds) {
            struct cmd *k = cmds;
            cmds = k->next;
            run_cmd(w, k);
            uv_mutex_lock(&wh.mu);
            k->next = wh.done;
            wh.done = k;
            uv_mutex_unlock(&wh.mu);
            uv_async_send(&wh.async);
            more = 1;
        }
        if (w->rq) more = lead(w, more);
        if (more) more = deliver(w);
        now = clock_wall_ms();
        if (now >= next_depth) {
            /* Counting walks the queue: a long backlog is counted less often,
             * so the count never takes more than a tenth of the thread. */
            int64_t took;
            count_depth(w);
            took = clock_wall_ms() - now;
            next_depth = now + (took * 10 > DEPTH_EVERY_MS ? took * 10 : DEPTH_EVERY_MS);
        }
    }
    held_clear(w);
    /* The lease goes back from here, on this thread's own connection, while
     * the loop runs: with [engine] tls = on that connection is carried by
     * the bridge on the loop, which a loop blocked in a join could not do. */
    if (w->rq) whq_close(w->rq);
    uv_mutex_lock(&wh.mu);
    w->exited = 1;
    uv_mutex_unlock(&wh.mu);
    uv_async_send(&wh.async);
}

/* ---- loop ---- */

static void finish_stop(void);

/* Whether every delivery thread that started has ended, or is about to:
 * after saying so it only wakes the loop (uv_async_send), which returns
 * before the join in finish_stop() does, so wh.async is still open then. */
static int all_exited(void)
{
    int all = 1;

    uv_mutex_lock(&wh.mu);
    for (size_t i = 0; i < wh.n; i++)
        if (wh.hooks[i].started && !wh.hooks[i].exited) all = 0;
    uv_mutex_unlock(&wh.mu);
    return all;
}

/* Answers the REST requests the delivery threads ran. */
static void answer_done(void)
{
    struct cmd *done;

    uv_mutex_lock(&wh.mu);
    done = wh.done;
    wh.done = NULL;
    uv_mutex_unlock(&wh.mu);
    while (done) {
        struct cmd *k = done;
        done = k->next;
        if (k->status == 200) http_finish_json(k->serial, 200, k->res);
        else if (k->status == 404) http_finish_error(k->serial, 404, PROTO_E_BAD_FIELD, "no such dead letter");
        else http_finish_error(k->serial, 500, PROTO_E_STORAGE, "the webhook store failed");
        if (k->status != 200) json_decref(k->res);
        free(k);
    }
}

static void on_async(uv_async_t *a)
{
    void (*stopped)(void) = wh.stopped;

    (void)a;
    answer_done();
    if (stopped && all_exited()) {
        finish_stop();
        stopped();
    }
}

void webhook_kick(void)
{
    for (size_t i = 0; i < wh.n; i++) {
        uv_mutex_lock(&wh.hooks[i].mu);
        wh.hooks[i].kick = 1;
        uv_cond_signal(&wh.hooks[i].cv);
        uv_mutex_unlock(&wh.hooks[i].mu);
    }
}

int webhook_start(void)
{
    /* Under tls = on, the engine's bridge, whose socket is fixed by now
     * (cluster_start()) and served from the loop until cluster_stop(),
     * which comes after webhook_stop(). */
    struct engine_conf rconf = {
        .address = cluster_on() ? engine_thread_address(cluster_engine()) : srv.cfg.engine_address,
        .password = srv.cfg.engine_password,
        .database = srv.cfg.engine_database,
        .prefix = srv.cfg.engine_prefix,
        .connect_timeout_ms = srv.cfg.engine_connect_timeout_ms,
        .command_timeout_ms = srv.cfg.engine_command_timeout_ms,
    };

    if (!srv.cfg.nwebhooks) return 0;
    if (!cluster_on() && !pubpipe_store()) {
        hlog(LOG_ERROR, "webhook", "webhooks need the history store");
        return -1;
    }
    if (!(wh.hooks = calloc(srv.cfg.nwebhooks, sizeof *wh.hooks))) return -1;
    uv_mutex_init(&wh.mu);
    uv_async_init(&srv.loop, &wh.async, on_async);
    wh.running = 1;
    for (size_t i = 0; i < srv.cfg.nwebhooks; i++) {
        struct wh *w = &wh.hooks[i];
        w->conf = &srv.cfg.webhooks[i];
        if (whpost_init(&w->http, w->conf, stopping_cb, w)) return -1;
        if (cluster_on() && whq_new(&rconf, w->conf->name, srv.cfg.engine_webhook_lease_ms, &w->rq)) {
            hlog(LOG_ERROR, "webhook", "%s: cannot set up its redis queue", w->conf->name);
            whpost_deinit(&w->http);
            return -1;
        }
        w->st.name = w->conf->name;
        w->st.latency.bounds = latency_bounds;
        w->st.latency.n = sizeof latency_bounds / sizeof latency_bounds[0];
        w->cmds_tail = &w->cmds;
        uv_mutex_init(&w->mu);
        uv_cond_init(&w->cv);
        wh.n++;
        if (uv_thread_create(&w->thread, wh_main, w)) {
            hlog(LOG_ERROR, "webhook", "%s: cannot start its delivery thread", w->conf->name);
            return -1;
        }
        w->started = 1;
        hlog(LOG_INFO, "webhook", "%s: delivering to %s%s", w->conf->name, w->conf->url,
             w->rq ? " (queued in redis: one node at a time delivers, under a lease)" : "");
    }
    return 0;
}

/* The threads have ended: join them (at once), answer what is left, free. */
static void finish_stop(void)
{
    wh.stopped = NULL;
    for (size_t i = 0; i < wh.n; i++) {
        struct wh *w = &wh.hooks[i];
        if (w->started) uv_thread_join(&w->thread);
        /* Requests not run: their HTTP requests are answered as failed. */
        while (w->cmds) {
            struct cmd *k = w->cmds;
            w->cmds = k->next;
            k->status = 500;
            k->next = wh.done;
            wh.done = k;
        }
        uv_mutex_destroy(&w->mu);
        uv_cond_destroy(&w->cv);
        whpost_deinit(&w->http);
        whq_free(w->rq);                       /* closed by its thread already: nothing sent from the loop */
        w->rq = NULL;
    }
    answer_done();
    uv_close((uv_handle_t *)&wh.async, NULL);
    uv_mutex_destroy(&wh.mu);
    free(wh.hooks);
    wh.hooks = NULL;
    wh.n = 0;
    wh.running = 0;
}

int webhook_stop(void (*done)(void))
{
    if (!wh.running) return 0;
    if (wh.stopped) return 1;                  /* asked again: @done of the first call comes */
    for (size_t i = 0; i < wh.n; i++) {
        struct wh *w = &wh.hooks[i];
        uv_mutex_lock(&w->mu);
        w->stop = 1;
        uv_cond_signal(&w->cv);
        uv_mutex_unlock(&w->mu);
    }
    if (all_exited()) {
        finish_stop();
        return 0;
    }
    /* The loop runs on while they end: a thread's last calls to Redis (the
     * lease given back, a call in flight) may go through the TLS bridge. */
    wh.stopped = done;
    return 1;
}

/* Queues @ev (taken) for the webhooks that want @mask on @c. */
static void queue_event(chan_t *c, unsigned mask, json_t *ev)
{
    const char *hooks[WEBHOOK_MAX];
    size_t n;

    if (!ev) return;
    n = config_webhooks_for(&srv.cfg, mask, c->name, c->namelen, hooks);
    if (n && cluster_on()) {
        /* Under the redis engine, queued in Redis by one script of its own
         * (not a publication's event: nothing to be atomic with). */
        char *text = json_dumps(ev, JSON_COMPACT);
        int rc = text ? engine_webhook_event(cluster_engine(), hooks, n, c->name, c->namelen, text, strlen(text),
                                             clock_wall_ms(), NULL, NULL) : -ENOMEM;
        if (rc)
            hlog(LOG_WARN, "webhook", "an event of %.*s was not queued: %s", (int)c->namelen, c->name,
                 rc == -ENOTCONN ? "redis is unreachable" : strerror(-rc));
        free(text);
    } else if (n && pubpipe_event(hooks, n, ev)) {
        hlog(LOG_WARN, "webhook", "out of memory queueing an event of %.*s", (int)c->namelen, c->name);
    }
    json_decref(ev);
}

void webhook_on_occupancy(chan_t *c, int occupied)
{
    if (!wh.running || srv.stopping) return;
    /* Under the redis engine a channel is occupied and vacated in Redis,
     * once for the whole cluster (cluster_occ.c); this node's own view
     * would give an event per node, and none for a node that died. */
    if (cluster_routes(c)) {
        cluster_occ_change(c, occupied);
        return;
    }
    queue_event(c, occupied ? WH_EV_OCCUPIED : WH_EV_VACATED,
                json_pack("{s:s,s:s%,s:I}", "type", occupied ? "channel.occupied" : "channel.vacated", "channel",
                          c->name, (size_t)c->namelen, "ts", (json_int_t)clock_wall_ms()));
}

void webhook_on_member(chan_t *c, const char *user, size_t len, int added)
{
    /* Under the redis engine a member joins and leaves in Redis, once for
     * every node: the presence scripts queue these events with the join or
     * leave (cluster_presence.c); this node's own view would give an event
     * per node, and none for the members of a node that died. */
    if (!wh.running || srv.stopping || cluster_routes(c)) return;
    queue_event(c, added ? WH_EV_MEMBER_ADDED : WH_EV_MEMBER_REMOVED,
                json_pack("{s:s,s:s%,s:s%,s:I}", "type", added ? "presence.member_added" : "presence.member_removed",
                          "channel", c->name, (size_t)c->namelen, "user", user, len, "ts",
                          (json_int_t)clock_wall_ms()));
}

json_t *webhook_status(void)
{
    json_t *list = json_array();
    int64_t now = clock_wall_ms();

    for (size_t i = 0; i < srv.cfg.nwebhooks; i++) {
        const webhook_conf_t *c = &srv.cfg.webhooks[i];
        struct wh *w = i < wh.n ? &wh.hooks[i] : NULL;
        json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:b,s:s?}", "name", c->name, "url", c->url, "max_attempts",
                              (int)c->max_attempts, "batch_size", (int)c->batch_size, "tls", c->tls, "ca_file",
                              *c->ca_file ? c->ca_file : NULL);
        if (!o) continue;
        if (w) {
            uv_mutex_lock(&w->mu);
            json_object_set_new(o, "queue_depth", json_integer((json_int_t)w->st.depth));
            json_object_set_new(o, "lag_ms", json_integer(w->st.depth && w->oldest_ms ? now - w->oldest_ms : 0));
            json_object_set_new(o, "dead_letters", json_integer((json_int_t)w->dead_depth));
            json_object_set_new(o, "deliveries", json_integer((json_int_t)w->st.deliveries));
            json_object_set_new(o, "failures", json_integer((json_int_t)w->st.failures));
            json_object_set_new(o, "state", json_string(w->nheld || (w->last_error_ms > w->last_success_ms)
                                                            ? "failing" : "ok"));
            json_object_set_new(o, "failing_channels", json_integer((json_int_t)w->nheld));
            json_object_set_new(o, "attempts", json_integer(w->attempts));
            json_object_set_new(o, "next_attempt", w->next_try_ms ? json_integer(w->next_try_ms) : json_null());
            json_object_set_new(o, "last_success", w->last_success_ms ? json_integer(w->last_success_ms) : json_null());
            json_object_set_new(o, "last_error", w->last_error_ms ? json_pack("{s:I,s:s}", "at",
                                (json_int_t)w->last_error_ms, "reason", w->last_error) : json_null());
            uv_mutex_unlock(&w->mu);
        }
        json_array_append_new(list, o);
    }
    return json_pack("{s:o}", "webhooks", list);
}

json_t *webhook_health(void)
{
    json_t *list = json_array();
    int64_t now = clock_wall_ms();

    for (size_t i = 0; i < wh.n && list; i++) {
        struct wh *w = &wh.hooks[i];
        json_t *o;
        uv_mutex_lock(&w->mu);
        o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:o,s:o}", "name", w->conf->name, "state",
                      w->nheld || w->last_error_ms > w->last_success_ms ? "failing" : "ok", "queue_depth",
                      (json_int_t)w->st.depth, "lag_ms",
                      (json_int_t)(w->st.depth && w->oldest_ms ? now - w->oldest_ms : 0), "dead_letters",
                      (json_int_t)w->dead_depth, "failing_channels", (json_int_t)w->nheld, "last_success",
                      w->last_success_ms ? json_integer(w->last_success_ms) : json_null(), "last_error",
                      w->last_error_ms ? json_pack("{s:I,s:s}", "at", (json_int_t)w->last_error_ms, "reason",
                                                   w->last_error)
                                       : json_null());
        uv_mutex_unlock(&w->mu);
        json_array_append_new(list, o);
    }
    return list;
}

static struct wh *find(const char *name)
{
    for (size_t i = 0; i < wh.n; i++)
        if (!strcmp(wh.hooks[i].conf->name, name)) return &wh.hooks[i];
    return NULL;
}

static int submit(uint64_t serial, const char *name, enum cmd_kind kind, uint64_t id, uint64_t after, unsigned limit)
{
    struct wh *w = find(name);
    struct cmd *k;

    if (!w) return 1;
    if (!(k = calloc(1, sizeof *k))) return -ENOMEM;
    k->kind = kind;
    k->serial = serial;
    k->id = id;
    k->after = after;
    k->limit = limit;
    uv_mutex_lock(&w->mu);
    *w->cmds_tail = k;
    w->cmds_tail = &k->next;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
    return 0;
}

int webhook_dead_list(uint64_t serial, const char *name, uint64_t after, unsigned limit)
{
    return submit(serial, name, CMD_LIST, 0, after, limit);
}

int webhook_dead_retry(uint64_t serial, const char *name, uint64_t id)
{
    return submit(serial, name, CMD_RETRY, id, 0, 0);
}

int webhook_dead_delete(uint64_t serial, const char *name, uint64_t id)
{
    return submit(serial, name, CMD_DELETE, id, 0, 0);
}

int webhook_stats(size_t i, struct webhook_stats *out)
{
    struct wh *w;

    if (i >= wh.n) return -1;
    w = &wh.hooks[i];
    uv_mutex_lock(&w->mu);
    *out = w->st;
    out->dead_depth = w->dead_depth;
    out->held = w->nheld;
    out->lag_s = w->st.depth && w->oldest_ms ? (double)(clock_wall_ms() - w->oldest_ms) / 1000.0 : 0;
    uv_mutex_unlock(&w->mu);
    return 0;
}
