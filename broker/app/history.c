/* broker/app/history.c - see history.h. */
#include "app/history.h"
#include "app/admin.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "core/presence.h"
#include "core/pubpipe.h"
#include "net/conns.h"
#include "herald.h"
#include "record.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum job_kind { JOB_SUBSCRIBE, JOB_QUERY };

typedef struct job {
    uv_work_t work;
    enum job_kind kind;
    chan_t *chan;                 /* held through chan->inflight */
    origin_t origin;
    uint64_t last;                /* the snapshot: chan->last_offset when asked */
    uint64_t upto;                /* read offsets up to here */
    uint64_t after;
    unsigned limit;
    int reverse;
    int recovery;                 /* JOB_SUBSCRIBE: since was given */
    int recoverable;              /* ... and the read can recover it (epoch matches, window fits) */
    int presence;                 /* JOB_SUBSCRIBE: the reply carries the members */
    json_t *pres;                 /* ... as the shared engine listed them (a reference), or NULL: this node's */
    uint64_t thread;              /* JOB_QUERY: only publications replying to this offset */
    unsigned page_limit;          /* JOB_QUERY with a thread: the page's limit (j->limit is the read's) */
    uint64_t since_offset;
    uint64_t before;              /* JOB_QUERY through the engine: the page's before */
    int engine;                   /* read from the shared engine (core/cluster.h), not LMDB */
    int ahead;                    /* JOB_SUBSCRIBE through the engine: since is past this node's offset */
    char epoch[HIST_EPOCH_LEN + 1]; /* JOB_QUERY through the engine: the channel's epoch as read */
    int rc;
    hist_result_t res;
} job_t;

/* Encodes @res's entries [lo, hi) of read order into @b as a list, in read
 * order or reversed. */
static void encode_list(enum proto_enc enc, const hist_result_t *res, size_t lo, size_t hi, int reversed, wbuf_t *b)
{
    rec_array_open(enc, (uint32_t)(hi - lo), b);
    for (size_t k = 0; k < hi - lo; k++) {
        const hist_entry_t *e = &res->entries[reversed ? hi - 1 - k : lo + k];
        rec_array_sep(enc, (uint32_t)k, b);
        rec_publication(enc, e->offset, e->rec, e->len, b);
    }
    rec_array_close(enc, b);
}

/* Chooses which entries fit in @budget bytes: a prefix of read order, or
 * with @keep_suffix a suffix. Return: 1 if some were left out. */
static int pick(enum proto_enc enc, const hist_result_t *res, size_t budget, int keep_suffix, size_t *lo, size_t *hi)
{
    size_t total = 0, n = res->n;
    wbuf_t tmp;

    wbuf_init(&tmp);
    *lo = 0;
    *hi = n;
    for (size_t k = 0; k < n; k++) {
        const hist_entry_t *e = &res->entries[keep_suffix ? n - 1 - k : k];
        wbuf_reset(&tmp);
        rec_publication(enc, e->offset, e->rec, e->len, &tmp);
        total += tmp.len + 1;
        if (total > budget) {
            if (keep_suffix) *lo = n - k;
            else *hi = k;
            break;
        }
    }
    wbuf_deinit(&tmp);
    return *hi - *lo < n;
}

static size_t reply_budget(void) { return srv.cfg.send_queue_max / 2; }

/* Sends a reply object @head with the list appended under "publications". */
static void send_with_list(sess_t *s, json_t *head, const hist_result_t *res, size_t lo, size_t hi, int reversed)
{
    enum proto_enc enc = (enum proto_enc)s->enc;
    frame_t *f;

    wbuf_reset(&srv.enc);
    rec_encode_open(enc, head, "publications", &srv.enc);
    if (res) encode_list(enc, res, lo, hi, reversed, &srv.enc);
    else rec_array_open(enc, 0, &srv.enc), rec_array_close(enc, &srv.enc);
    rec_encode_close(enc, &srv.enc);
    json_decref(head);
    if (srv.enc.oom || !(f = frame_new(srv.enc.p, srv.enc.len))) {
        sess_close(s, CLOSE_INTERNAL, 0);
        return;
    }
    sess_push(s, f);
    frame_unref(f);
}

/* The members of every node, read from the shared engine for the subscribe
 * subscribed_now() answers (resume() sets it around the call), or NULL. */
static json_t *fetched_presence;

static json_t *subscribed_head(chan_t *c, const json_t *id, uint64_t offset, int presence, json_t *pres)
{
    json_t *m = msg_reply("subscribed", id);
    if (!m) return NULL;
    json_object_set_new(m, "channel", json_stringn(c->name, c->namelen));
    json_object_set_new(m, "offset", json_integer((json_int_t)offset));
    json_object_set_new(m, "epoch", json_string(c->epoch));
    if (presence && pres) json_object_set(m, "presence", pres);
    else if (presence) json_object_set_new(m, "presence", c->ns->presence ? presence_json(c) : json_null());
    return m;
}

static void work_read(uv_work_t *w)
{
    job_t *j = w->data;
    j->rc = hist_read(pubpipe_store(), j->chan->name, j->chan->namelen, j->after, j->upto, j->limit,
                      j->reverse, &j->res);
}

/* A recovery whose offset is past what this node delivered so far: with
 * the redis engine, a client that saw offset K on another node may come
 * here before K's announcement does. The engine's position says whether K
 * exists: then the client missed nothing (its live pushes start after K);
 * else the answer is LMDB's for an offset it never had: "recovered": false
 * and the kept tail, up to the engine's last offset. */
static void finish_ahead(sess_t *s, sub_t *sub, job_t *j)
{
    uint64_t top = j->res.chan.last_offset;
    int same = !strcmp(j->res.chan.epoch, j->chan->epoch) && top >= j->since_offset;
    json_t *head = subscribed_head(j->chan, j->origin.id, same ? j->since_offset : top, j->presence, j->pres);
    size_t lo = 0, hi = 0;

    if (!head) { sess_close(s, CLOSE_INTERNAL, 0); return; }
    json_object_set_new(head, "recovered", json_boolean(same));
    if (!same) pick((enum proto_enc)s->enc, &j->res, reply_budget(), 0, &lo, &hi);
    send_with_list(s, head, same ? NULL : &j->res, lo, hi, 1);
    chan_replay_end_at(sub, same ? j->since_offset : top);
}

static void finish_subscribe(job_t *j)
{
    sess_t *s = conn_find(j->origin.serial);
    sub_t *sub = s ? chan_sub(s, j->chan) : NULL;
    size_t lo, hi;
    int cut, recovered;
    json_t *head;

    if (!sub) return;                              /* gone, or unsubscribed meanwhile */
    if (j->rc) {
        hlog(LOG_WARN, "storage", "history read for %s failed: %s", j->chan->name, strerror(-j->rc));
        if (j->engine) sess_send_error(s, j->origin.id, PROTO_E_ENGINE_UNAVAILABLE, "reading history from the redis "
                                       "engine failed");
        else sess_send_error(s, j->origin.id, PROTO_E_STORAGE, "reading history failed");
        chan_unsubscribe(s, j->chan);
        return;
    }
    if (j->ahead) {
        finish_ahead(s, sub, j);
        return;
    }
    /* Recovery reads go oldest first; keep the newest if they do not all fit. */
    cut = pick((enum proto_enc)s->enc, &j->res, reply_budget(), !j->reverse, &lo, &hi);
    recovered = j->recovery && j->recoverable && !cut && j->res.n == j->upto - j->since_offset &&
                (j->res.n == 0 || j->res.entries[0].offset == j->since_offset + 1);
    head = subscribed_head(j->chan, j->origin.id, j->upto, j->presence, j->pres);
    if (head && j->recovery) json_object_set_new(head, "recovered", json_boolean(recovered));
    if (!head) { sess_close(s, CLOSE_INTERNAL, 0); return; }
    send_with_list(s, head, &j->res, lo, hi, j->reverse);
    chan_replay_end(sub);
}

/* Keeps only the entries replying to @thread, at most @limit of them, in
 * read order. Return: 1 if more entries than that replied to it. */
static int filter_thread(hist_result_t *res, uint64_t thread, unsigned limit)
{
    size_t n = 0;
    int more = 0;

    for (size_t i = 0; i < res->n; i++) {
        if (rec_reply_to(res->entries[i].rec, res->entries[i].len) != thread) continue;
        if (n == limit) { more = 1; break; }
        res->entries[n++] = res->entries[i];
    }
    res->n = n;
    return more;
}

/* The page a query answers (@ctx, a job): its entries cut to the reply
 * budget in the encoding of the answer. */
static void emit_page(enum proto_enc enc, wbuf_t *b, void *ctx)
{
    const job_t *j = ctx;
    size_t lo, hi;

    pick(enc, &j->res, reply_budget(), 0, &lo, &hi);
    encode_list(enc, &j->res, lo, hi, 0, b);
}

/* Answers a history query: {"channel","epoch","offset","next","publications"}. */
static void query_reply(job_t *j)
{
    size_t lo, hi;
    /* "next" is computed on the JSON encoding, which is the larger: a page
     * cut there may still fit whole in MessagePack, never the reverse. */
    int cut = pick(PROTO_JSON, &j->res, reply_budget(), 0, &lo, &hi);
    json_t *head = json_object(), *next = json_null();
    uint64_t last_off = 0;

    if (hi > lo) last_off = j->res.entries[hi - 1].offset;
    /* More may follow the last entry returned when the page was full or cut. */
    if (hi > lo && (cut || j->res.n == j->limit)) {
        uint64_t first = j->res.found ? j->res.chan.first_offset : 1;
        if (!j->reverse) next = json_pack("{s:I}", "since", (json_int_t)last_off);
        else if (last_off > first) next = json_pack("{s:I,s:b}", "before", (json_int_t)last_off, "reverse", 1);
    }
    if (head) {
        json_object_set_new(head, "channel", json_stringn(j->chan->name, j->chan->namelen));
        json_object_set_new(head, "epoch", json_string(j->engine ? j->epoch : j->chan->epoch));
        json_object_set_new(head, "offset", json_integer((json_int_t)j->last));
        json_object_set_new(head, "next", next ? next : json_null());
    } else {
        json_decref(next);
    }
    reply_list(&j->origin, "history", head, "publications", emit_page, j);
}

static void finish_query(job_t *j)
{
    if (!j->rc && j->thread) {
        /* The read covered the whole window, so whether a next page exists
         * is known: a full page says so only when more replies followed. */
        int more = filter_thread(&j->res, j->thread, j->page_limit);
        j->limit = more ? (unsigned)j->res.n : (unsigned)j->res.n + 1;
    }
    if (j->rc && j->engine) {
        hlog(LOG_WARN, "cluster", "history read for %s failed: %s", j->chan->name, strerror(-j->rc));
        reply_error(&j->origin, 0, PROTO_E_ENGINE_UNAVAILABLE, "reading history from the redis engine failed", NULL);
        return;
    }
    if (j->rc) {
        hlog(LOG_WARN, "storage", "history read for %s failed: %s", j->chan->name, strerror(-j->rc));
        /* 503, not the 507 of a publication: nothing was lost, a retry may read. */
        reply_error(&j->origin, 503, PROTO_E_STORAGE, "reading history failed", NULL);
        return;
    }
    query_reply(j);
}

static void job_done(job_t *j)
{
    if (j->kind == JOB_SUBSCRIBE) finish_subscribe(j);
    else finish_query(j);
    hist_result_free(&j->res);
    json_decref(j->origin.id);
    json_decref(j->pres);
    free(j);
}

static void after_read(uv_work_t *w, int status)
{
    job_t *j = w->data;
    chan_t *c = j->chan;

    if (status) j->rc = status == UV_ECANCELED ? -ECANCELED : -EIO;
    job_done(j);
    c->inflight--;
    chan_maybe_drop(c);
}

/* The engine's answer (core/cluster.c holds the channel meanwhile). */
static void after_engine_read(void *arg, int status, hist_result_t *res)
{
    job_t *j = arg;

    j->rc = status;
    if (!status) {
        j->res = *res;                             /* taken: the engine frees an empty result */
        memset(res, 0, sizeof *res);
        if (j->kind == JOB_QUERY) {
            j->last = j->res.chan.last_offset;
            memcpy(j->epoch, j->res.chan.epoch, HIST_EPOCH_LEN + 1);
        }
    }
    job_done(j);
}

/* A read through the shared engine: a subscribe's replay reads the range
 * known from the channel's position here; a query reads the channel's
 * position with its page, atomically, since this node may have none. */
static int submit_engine(job_t *j)
{
    struct engine_range r = { j->after, j->upto, 0, j->limit, j->reverse };
    int rc;

    if (j->kind == JOB_QUERY) {
        r.upto = 0;
        r.before = j->before;
    }
    j->engine = 1;
    rc = cluster_read(j->chan, &r, after_engine_read, j);
    return rc > 0 ? -ENOTCONN : rc;
}

static int submit(job_t *j)
{
    if (cluster_routes(j->chan)) return submit_engine(j);
    j->work.data = j;
    j->chan->inflight++;
    if (uv_queue_work(&srv.loop, &j->work, work_read, after_read)) {
        j->chan->inflight--;
        return -ENOMEM;
    }
    return 0;
}

static int subscribed_now(sess_t *s, chan_t *c, const json_t *id, unsigned n, const struct history_since *since,
                          int presence)
{
    unsigned keep = c->ns->history ? c->ns->history_size : 0;
    uint64_t upto = c->last_offset;
    sub_t *sub = chan_sub(s, c);
    json_t *head, *list;
    job_t *j;
    int more;

    if (n == 0 && !since->set) {                   /* a plain subscribe */
        head = subscribed_head(c, id, upto, presence, fetched_presence);
        sess_send(s, head);
        return head ? 0 : -ENOMEM;
    }
    /* The broker's own feed keeps its recent past in memory instead. */
    if (!keep && !since->set &&
        (list = admin_recent(c, &(struct admin_range){ 0, 0, n, srv.cfg.send_queue_max / 2, 1, 0 }, &more))) {
        head = subscribed_head(c, id, upto, presence, fetched_presence);
        if (!head) {
            json_decref(list);
            return -ENOMEM;
        }
        json_object_set_new(head, "publications", list);
        sess_send(s, head);
        return 0;
    }
    if (cluster_routes(c) && since->set && !strcmp(since->epoch, c->epoch) && since->offset > upto) {
        if (!(j = calloc(1, sizeof *j))) return -ENOMEM;
        j->kind = JOB_SUBSCRIBE;
        j->ahead = j->recovery = 1;
        j->presence = presence;
        j->pres = fetched_presence ? json_incref(fetched_presence) : NULL;
        j->chan = c;
        j->origin.kind = ORIGIN_WS;
        j->origin.serial = s->serial;
        j->origin.id = id ? json_incref((json_t *)id) : NULL;
        j->since_offset = since->offset;
        j->limit = keep;                           /* the kept tail, newest first, up to the last */
        j->reverse = 1;
        if (submit(j)) {
            json_decref(j->origin.id);
            json_decref(j->pres);
            free(j);
            return -ENOMEM;
        }
        chan_replay_start(sub);
        return 0;
    }
    if (!keep || !pubpipe_store() || upto == 0 ||
        (since->set && !strcmp(since->epoch, c->epoch) && since->offset == upto)) {
        /* Nothing to read: no history kept, nothing published, or the client
         * has seen everything. */
        head = subscribed_head(c, id, upto, presence, fetched_presence);
        if (head && since->set)
            json_object_set_new(head, "recovered",
                                json_boolean(!strcmp(since->epoch, c->epoch) && since->offset == upto));
        if (!head) return -ENOMEM;
        send_with_list(s, head, NULL, 0, 0, 0);
        return 0;
    }
    if (!(j = calloc(1, sizeof *j))) return -ENOMEM;
    j->kind = JOB_SUBSCRIBE;
    j->presence = presence;
    j->pres = fetched_presence ? json_incref(fetched_presence) : NULL;
    j->chan = c;
    j->origin.kind = ORIGIN_WS;
    j->origin.serial = s->serial;
    j->origin.id = id ? json_incref((json_t *)id) : NULL;
    j->last = j->upto = upto;
    if (since->set) {
        j->recovery = 1;
        j->since_offset = since->offset;
        j->recoverable = !strcmp(since->epoch, c->epoch) && since->offset < upto && upto - since->offset <= keep;
    }
    if (j->recoverable) {
        j->after = since->offset;
        j->limit = (unsigned)(upto - since->offset);
        j->reverse = 0;
    } else {
        /* The last N, or for a recovery that cannot succeed, the kept tail. */
        j->after = 0;
        j->limit = since->set ? keep : (n < keep ? n : keep);
        j->reverse = 1;
    }
    if (submit(j)) {
        json_decref(j->origin.id);
        json_decref(j->pres);
        free(j);
        return -ENOMEM;
    }
    chan_replay_start(sub);
    return 0;
}

/* A subscribe waiting for its channel to be in step with the shared engine. */
struct parked {
    uint64_t serial;
    json_t *id;
    unsigned n;
    struct history_since since;
    int presence;
    int fetched;                  /* the members were read (fetched_presence) */
    chan_t *chan;                 /* while they are read (held) */
};

static void resume(chan_t *c, void *arg, int ok);

/* The members of every node came for a parked subscribe (@pres NULL: the
 * engine failed): answer it as resume() does, the channel in step. */
static void resume_with_presence(void *arg, json_t *pres)
{
    struct parked *p = arg;
    chan_t *c = p->chan;

    p->fetched = 1;
    fetched_presence = pres;
    resume(c, p, pres ? 1 : 0);
    fetched_presence = NULL;
    c->inflight--;
    chan_maybe_drop(c);
}

static void resume(chan_t *c, void *arg, int ok)
{
    struct parked *p = arg;
    sess_t *s = conn_find(p->serial);

    if (ok == 1 && p->presence && c->ns->presence && !p->fetched && s && chan_sub(s, c)) {
        /* The answer lists the members of every node: one more read. */
        p->chan = c;
        c->inflight++;
        if (cluster_presence_fetch(c->name, c->namelen, c->ns->presence_tier, resume_with_presence, p) == 0) return;
        c->inflight--;
        ok = 0;
    }
    /* ok -1: the client unsubscribed meanwhile; as when a replay's read
     * finds it gone, the subscribe gets no reply. */
    if (ok >= 0 && s && chan_sub(s, c)) {
        int rc = ok ? subscribed_now(s, c, p->id, p->n, &p->since, p->presence) : PROTO_E_ENGINE_UNAVAILABLE;
        if (rc) {
            sess_send_error(s, p->id, rc > 0 ? rc : PROTO_E_INTERNAL,
                            rc > 0 ? "the redis engine is unavailable (see /api/health/ready)" : "out of memory");
            chan_unsubscribe(s, c);
        }
    }
    json_decref(p->id);
    free(p);
}

int history_subscribed(sess_t *s, chan_t *c, const json_t *id, unsigned n, const struct history_since *since,
                       int presence)
{
    struct parked *p;
    int rc;

    if (!cluster_routes(c)) return subscribed_now(s, c, id, n, since, presence);
    /* The reply names the channel's offset and epoch: known once the
     * channel is in step with the engine, which may take a read. */
    if (!(p = calloc(1, sizeof *p))) return -ENOMEM;
    p->serial = s->serial;
    p->id = id ? json_incref((json_t *)id) : NULL;
    p->n = n;
    p->since = *since;
    p->presence = presence;
    if ((rc = cluster_when_synced(c, resume, p))) {
        json_decref(p->id);
        free(p);
    }
    return rc;
}

int history_query(chan_t *c, const struct history_page *page, origin_t *origin)
{
    job_t *j;
    int rc;

    if (!c->ns->history && !page->thread) {
        /* The broker's own feed keeps its recent past in memory. */
        struct admin_range q = { page->since, page->before, page->limit, reply_budget(), page->reverse,
                                 page->reverse };
        int more;
        json_t *list = admin_recent(c, &q, &more), *head, *next = json_null();
        size_t n = list ? json_array_size(list) : 0;
        if (!list) return PROTO_E_NO_HISTORY;
        if (more && n) {
            json_int_t last = json_integer_value(json_object_get(json_array_get(list, n - 1), "offset"));
            next = page->reverse ? json_pack("{s:I,s:b}", "before", last, "reverse", 1) : json_pack("{s:I}", "since", last);
        }
        head = json_pack("{s:s%,s:s,s:I,s:o,s:o}", "channel", c->name, (size_t)c->namelen, "epoch", c->epoch,
                         "offset", (json_int_t)c->last_offset, "next", next ? next : json_null(), "publications", list);
        reply_ok(origin, "history", head);
        origin_clear(origin);
        return 0;
    }
    if (!c->ns->history || !pubpipe_store()) return PROTO_E_NO_HISTORY;
    if (!(j = calloc(1, sizeof *j))) return -ENOMEM;
    j->kind = JOB_QUERY;
    j->chan = c;
    j->origin = *origin;
    origin->id = NULL;
    j->last = j->upto = c->last_offset;
    if (page->before && page->before - 1 < j->upto) j->upto = page->before - 1;
    j->after = page->since;
    j->limit = page->limit;
    j->reverse = page->reverse;
    if (page->thread) {
        /* A thread's replies are found by reading the kept log between the
         * page's bounds (replies come after what they answer), in the
         * page's direction, and keeping the first @limit that match. */
        j->thread = page->thread;
        j->page_limit = page->limit;
        if (j->after < page->thread) j->after = page->thread;
        j->limit = c->ns->history_size;
    }
    j->before = page->before;
    if (j->upto <= j->after && !cluster_routes(c)) j->limit = 0;   /* an empty page, read nothing */
    if ((rc = submit(j))) {
        *origin = j->origin;                       /* still the caller's to answer */
        free(j);
        return rc == -ENOTCONN ? PROTO_E_ENGINE_UNAVAILABLE : -ENOMEM;
    }
    return 0;
}
