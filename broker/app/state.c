/* broker/app/state.c - see state.h.
 *
 * DESIGN: the storage thread applies a request's operations inside the
 * channel's write transaction and writes their effect, with absolute values
 * and versions, as the publication: {"changes":[{"key","value","version"} |
 * {"key","deleted":true}],"reset":true?}. A delta therefore never depends
 * on the one before it being applied twice or not at all, which is what lets
 * a snapshot be taken at an offset S while later deltas are in flight: the
 * subscriber gets the snapshot, then exactly the deltas after S (held back
 * meanwhile, as for a history replay; see chan_replay_end()).
 * With the shared engine (core/cluster_state.h) the same snapshot is read
 * from Redis with the offset it is at, in one script, once the channel is in
 * step with the engine (cluster_when_synced()), so the deltas delivered
 * after it are exactly those after that offset; the page filters then run on
 * the loop over the keys the engine returned. */
#include "app/state.h"
#include "app/history.h"
#include "core/presence.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "core/cluster_state.h"
#include "net/conns.h"
#include "net/http.h"
#include "herald.h"
#include "mpack.h"
#include "record.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(char *reason, size_t i, const char *what)
{
    snprintf(reason, PROTO_REASON_MAX, "ops[%zu]: %s", i, what);
    return PROTO_E_BAD_FIELD;
}

int state_parse(const json_t *ops_json, pub_ops_t **out, char *reason)
{
    pub_ops_t *s;
    wbuf_t vals;
    size_t *val_off, i;
    json_t *o;

    if (!json_is_array(ops_json) || json_array_size(ops_json) == 0 || json_array_size(ops_json) > STATE_OPS_MAX) {
        snprintf(reason, PROTO_REASON_MAX, "field \"ops\" must be a list of 1 to %d operations", STATE_OPS_MAX);
        return PROTO_E_BAD_FIELD;
    }
    if (!(s = calloc(1, sizeof *s)) || !(s->ops = calloc(json_array_size(ops_json), sizeof *s->ops)) ||
        !(val_off = calloc(json_array_size(ops_json), sizeof *val_off))) {
        if (s) free(s->ops);
        free(s);
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    s->request = json_incref((json_t *)ops_json);
    wbuf_init(&vals);
    json_array_foreach(ops_json, i, o) {
        hist_state_op_t *op = &s->ops[i];
        const char *name = json_string_value(json_object_get(o, "op"));
        json_t *key = json_object_get(o, "key"), *v;
        int r = 0;

        if (!json_is_object(o) || !name) { r = bad(reason, i, "each operation is an object with \"op\""); goto fail; }
        if (!strcmp(name, "set")) op->type = HIST_OP_SET;
        else if (!strcmp(name, "incr")) op->type = HIST_OP_INCR;
        else if (!strcmp(name, "cas")) op->type = HIST_OP_CAS;
        else if (!strcmp(name, "delete")) op->type = HIST_OP_DELETE;
        else if (!strcmp(name, "reset")) op->type = HIST_OP_RESET;
        else { r = bad(reason, i, "\"op\" must be set, incr, cas, delete or reset"); goto fail; }
        if (op->type != HIST_OP_RESET) {
            if (!json_is_string(key) || json_string_length(key) == 0 || json_string_length(key) > HIST_KEY_MAX ||
                memchr(json_string_value(key), 0, json_string_length(key))) {
                r = bad(reason, i, "\"key\" must be a string of 1 to 256 bytes");
                goto fail;
            }
            op->key = json_string_value(key);
            op->keylen = json_string_length(key);
        }
        if (op->type == HIST_OP_SET || op->type == HIST_OP_CAS) {
            if (!(v = json_object_get(o, "value"))) { r = bad(reason, i, "\"value\" is required"); goto fail; }
            val_off[i] = vals.len;
            mpack_emit(&vals, v);
            op->vallen = vals.len - val_off[i];
        }
        if (op->type == HIST_OP_CAS) {
            v = json_object_get(o, "version");
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                r = bad(reason, i, "cas needs \"version\": the key's current version (0: the key must not exist)");
                goto fail;
            }
            op->version = (uint64_t)json_integer_value(v);
        }
        if (op->type == HIST_OP_INCR) {
            v = json_object_get(o, "by");
            if (!v) op->by = 1;
            else if (json_is_integer(v)) op->by = json_integer_value(v);
            else { r = bad(reason, i, "\"by\" must be an integer"); goto fail; }
        }
        continue;
fail:
        wbuf_deinit(&vals);
        free(val_off);
        pub_ops_free(s);
        return r;
    }
    if (vals.oom) {
        wbuf_deinit(&vals);
        free(val_off);
        pub_ops_free(s);
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    s->n = json_array_size(ops_json);
    s->vals = vals.p;                          /* now stable: point the ops into it */
    for (i = 0; i < s->n; i++)
        if (s->ops[i].vallen) s->ops[i].val = s->vals + val_off[i];
    free(val_off);
    *out = s;
    return 0;
}

/* ---- snapshots ---- */

enum snap_kind { SNAP_SUBSCRIBE, SNAP_RESYNC, SNAP_LIST };

typedef struct snap_job {
    uv_work_t work;
    enum snap_kind kind;
    chan_t *chan;                 /* held through chan->inflight */
    uint64_t serial;              /* the session, or the HTTP request */
    json_t *id;
    int presence, recovery;
    struct state_page page;
    int rc;
    hist_state_t st;
    json_t *items;                /* SNAP_LIST: the filtered page, built off the loop */
    json_t *pres;                 /* shared engine: the members of every node, for the subscribe answer */
    int keep_chan;                /* answered before the read started: the caller still holds chan and drops it */
    struct history_since since;   /* shared engine, SNAP_SUBSCRIBE: the client's position, decided once in step */
    chan_match_fn match;          /* SNAP_SUBSCRIBE, SNAP_RESYNC: the subscriber's filter, or NULL */
    char match_arg[CHAN_FILTER_ARG_MAX + 1];
} snap_job_t;

/* Keeps only the keys of @st that @match(@arg) accepts (off the loop). */
static void snap_filter(hist_state_t *st, chan_match_fn match, const char *arg)
{
    size_t n = 0;

    for (size_t i = 0; i < st->n; i++) {
        char reason[PROTO_REASON_MAX];
        json_t *v = NULL;
        int keep = !mpack_decode(st->kv[i].val, st->kv[i].vallen, &v, reason) &&
                   match(arg, st->kv[i].key, st->kv[i].keylen, v);
        json_decref(v);
        if (keep) st->kv[n++] = st->kv[i];
    }
    st->n = n;
}

/* Whether the value (MessagePack) passes the page's filters. */
static int matches(const struct state_page *p, const hist_kv_t *kv, json_t **decoded)
{
    char reason[PROTO_REASON_MAX];
    json_t *v = NULL;

    if (!*p->field && !*p->q) return 1;
    if (mpack_decode(kv->val, kv->vallen, &v, reason)) return 0;
    if (*p->field) {
        json_t *f = json_is_object(v) ? json_object_get(v, p->field) : NULL;
        char num[64];
        const char *s = NULL;
        if (json_is_string(f)) s = json_string_value(f);
        else if (json_is_integer(f)) { snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(f)); s = num; }
        else if (json_is_boolean(f)) s = json_is_true(f) ? "true" : "false";
        if (!s || strcmp(s, p->value)) { json_decref(v); return 0; }
    }
    if (*p->q) {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        int hit = text && (strstr(text, p->q) || (kv->keylen && memmem(kv->key, kv->keylen, p->q, strlen(p->q))));
        free(text);
        if (!hit) { json_decref(v); return 0; }
    }
    *decoded = v;
    return 1;
}

/* Adds the keys of @st (one chunk of the listing, in key order) that pass
 * the page's filters to j->items, up to the page's limit; when the page
 * fills, sets j->st.more (if keys remain) and the cursor j->page.after. */
static void page_take(snap_job_t *j, const hist_state_t *st)
{
    const struct state_page *p = &j->page;

    j->st.chan = st->chan;
    j->st.found = st->found;
    for (size_t i = 0; i < st->n && json_array_size(j->items) < p->limit; i++) {
        json_t *v = NULL;
        char reason[PROTO_REASON_MAX];
        if (!matches(p, &st->kv[i], &v)) continue;
        if (!v && mpack_decode(st->kv[i].val, st->kv[i].vallen, &v, reason)) continue;
        json_array_append_new(j->items, json_pack("{s:s%,s:o,s:I}", "key", st->kv[i].key, st->kv[i].keylen,
                                                  "value", v, "version", (json_int_t)st->kv[i].version));
        if (json_array_size(j->items) == p->limit && (i + 1 < st->n || st->more)) j->st.more = 1;
    }
    if (json_array_size(j->items) == p->limit) {
        json_t *last = json_array_get(j->items, json_array_size(j->items) - 1);
        snprintf(j->page.after, sizeof j->page.after, "%s", json_string_value(json_object_get(last, "key")));
    }
}

static void snap_work(uv_work_t *w)
{
    snap_job_t *j = w->data;
    const struct state_page *p = &j->page;

    if (j->kind != SNAP_LIST) {
        j->rc = hist_state_read(pubpipe_store(), j->chan->name, j->chan->namelen, "", 0, NULL, 0, 0, &j->st);
        if (!j->rc && j->match) snap_filter(&j->st, j->match, j->match_arg);
        return;
    }
    /* A filtered page scans on from the cursor until it has @limit matches
     * (or the prefix ends), so its cost is off the loop. */
    j->items = json_array();
    {
        char after[HIST_KEY_MAX + 1];
        size_t alen = strlen(p->after);
        int more = 1;
        memcpy(after, p->after, alen + 1);
        while (more && json_array_size(j->items) < p->limit) {
            hist_state_t st;
            j->rc = hist_state_read(pubpipe_store(), j->chan->name, j->chan->namelen, p->prefix, strlen(p->prefix),
                                    alen ? after : NULL, alen, 256, &st);
            if (j->rc) return;
            more = st.more;
            page_take(j, &st);
            if (st.n) {
                alen = st.kv[st.n - 1].keylen;
                memcpy(after, st.kv[st.n - 1].key, alen);
                after[alen] = '\0';
            }
            hist_state_free(&st);
        }
    }
}

/* Appends the snapshot as a map {key: {"value":..,"version":..}} in @enc. */
static void encode_state(enum proto_enc enc, const hist_state_t *st, wbuf_t *b)
{
    if (enc == PROTO_MSGPACK) mpack_put_map(b, (uint32_t)st->n);
    else wbuf_putc(b, '{');
    for (size_t i = 0; i < st->n; i++) {
        const hist_kv_t *kv = &st->kv[i];
        if (enc == PROTO_MSGPACK) {
            mpack_put_str(b, kv->key, kv->keylen);
            mpack_put_map(b, 2);
            mpack_put_str(b, "value", 5);
            wbuf_put(b, kv->val, kv->vallen);
            mpack_put_str(b, "version", 7);
            mpack_put_uint(b, kv->version);
        } else {
            if (i) wbuf_putc(b, ',');
            json_emit_str(b, kv->key, kv->keylen);
            wbuf_put(b, ":{\"value\":", 10);
            rec_value(PROTO_JSON, kv->val, kv->vallen, b);
            wbuf_printf(b, ",\"version\":%llu}", (unsigned long long)kv->version);
        }
    }
    if (enc == PROTO_JSON) wbuf_putc(b, '}');
}

static void send_snapshot(sess_t *s, snap_job_t *j, sub_t *sub)
{
    enum proto_enc enc = (enum proto_enc)s->enc;
    uint64_t at = j->st.found ? j->st.chan.last_offset : 0;
    json_t *head = msg_reply(j->kind == SNAP_SUBSCRIBE ? "subscribed" : "snapshot",
                             j->kind == SNAP_SUBSCRIBE ? j->id : NULL);
    frame_t *f;

    if (!head) { sess_close(s, CLOSE_INTERNAL, 0); return; }
    json_object_set_new(head, "channel", json_stringn(j->chan->name, j->chan->namelen));
    json_object_set_new(head, "offset", json_integer((json_int_t)at));
    json_object_set_new(head, "epoch", json_string(j->st.found ? j->st.chan.epoch : j->chan->epoch));
    if (j->recovery) json_object_set_new(head, "recovered", json_false());
    if (j->presence)
        json_object_set_new(head, "presence", !j->chan->ns->presence ? json_null()
                                              : j->pres ? json_incref(j->pres) : presence_json(j->chan));
    wbuf_reset(&srv.enc);
    rec_encode_open(enc, head, "state", &srv.enc);
    encode_state(enc, &j->st, &srv.enc);
    rec_encode_close(enc, &srv.enc);
    json_decref(head);
    if (srv.enc.oom || !(f = frame_new(srv.enc.p, srv.enc.len))) { sess_close(s, CLOSE_INTERNAL, 0); return; }
    sess_push(s, f);
    frame_unref(f);
    chan_replay_end_at(sub, at);
}

/* Lets go of @j's channel and frees @j. */
static void snap_free(snap_job_t *j)
{
    j->chan->inflight--;
    if (!j->keep_chan) chan_maybe_drop(j->chan);
    hist_state_free(&j->st);
    json_decref(j->items);
    json_decref(j->pres);
    json_decref(j->id);
    free(j);
}

/* Answers @j with its outcome (j->rc, j->st, j->items) and frees it. */
static void snap_finish(snap_job_t *j)
{
    int shared = cluster_routes(j->chan);

    if (j->kind == SNAP_LIST) {
        if (j->rc) {
            http_finish_error(j->serial, 503, shared ? PROTO_E_ENGINE_UNAVAILABLE : PROTO_E_STORAGE,
                              shared ? "the redis engine is unavailable (see /api/health/ready)"
                                     : "reading the state failed");
        } else {
            json_t *body = json_pack("{s:s%,s:I,s:s,s:o,s:o}", "channel", j->chan->name, (size_t)j->chan->namelen,
                                     "offset", (json_int_t)(j->st.found ? j->st.chan.last_offset : 0),
                                     "epoch", j->st.found ? j->st.chan.epoch : j->chan->epoch,
                                     "items", j->items ? j->items : json_array(),
                                     "next_cursor", j->st.more ? json_string(j->page.after) : json_null());
            j->items = NULL;
            http_finish_json(j->serial, body ? 200 : 500, body);
        }
    } else {
        sess_t *s = conn_find(j->serial);
        sub_t *sub = s ? chan_sub(s, j->chan) : NULL;
        if (sub) {
            if (j->rc) {
                hlog(LOG_WARN, "storage", "state read for %s failed: %s", j->chan->name,
                     j->rc < 0 ? strerror(-j->rc) : "the redis engine is unavailable");
                if (shared)
                    sess_send_error(s, j->id, PROTO_E_ENGINE_UNAVAILABLE,
                                    "the redis engine is unavailable (see /api/health/ready)");
                else
                    sess_send_error(s, j->id, PROTO_E_STORAGE, "reading the state failed");
                chan_unsubscribe(s, j->chan);
            } else {
                send_snapshot(s, j, sub);
            }
        }
    }
    snap_free(j);
}

static void snap_done(uv_work_t *w, int status)
{
    snap_job_t *j = w->data;

    if (status && !j->rc) j->rc = -ECANCELED;
    snap_finish(j);
}

/* ---- the shared engine ---- */

static void with_presence(void *arg, json_t *pres)
{
    snap_job_t *j = arg;

    j->pres = pres ? json_incref(pres) : NULL;
    if (!pres) j->rc = PROTO_E_ENGINE_UNAVAILABLE;
    snap_finish(j);
}

static void engine_snap_done(void *arg, int status, hist_state_t *st)
{
    snap_job_t *j = arg;

    j->rc = status;
    if (status) {
        snap_finish(j);
        return;
    }
    if (j->kind == SNAP_LIST) {
        j->items = json_array();
        page_take(j, st);
        if (!j->page.limit || json_array_size(j->items) < j->page.limit) j->st.more = 0;
    } else {
        j->st = *st;
        memset(st, 0, sizeof *st);
        if (j->match) snap_filter(&j->st, j->match, j->match_arg);
        /* The answer lists the members of every node, as history.c's. */
        if (j->kind == SNAP_SUBSCRIBE && j->presence && j->chan->ns->presence &&
            !cluster_presence_fetch(j->chan->name, j->chan->namelen, j->chan->ns->presence_tier, with_presence, j))
            return;
    }
    snap_finish(j);
}

/* Reads @j's snapshot or page from the engine (j->chan held); a read that
 * cannot start answers @j at once, as a failed one does. */
static void engine_submit(snap_job_t *j)
{
    const struct state_page *p = &j->page;
    int list = j->kind == SNAP_LIST, filtered = list && (*p->field || *p->q), rc;

    /* A filtered page reads every key after the cursor and filters them
     * here; an unfiltered one reads one more key than it shows. */
    rc = cluster_state_read(j->chan, list ? p->prefix : "", list ? strlen(p->prefix) : 0, list ? p->after : "",
                            list ? strlen(p->after) : 0, list && !filtered ? p->limit : 0, engine_snap_done, j);
    if (rc) {
        /* Answered now, within a caller that holds the channel (the route,
         * the op, or core/cluster.c running its waits), which drops it. */
        j->rc = rc;
        j->keep_chan = 1;
        snap_finish(j);
    }
}

static void engine_synced(chan_t *c, void *arg, int ok)
{
    snap_job_t *j = arg;

    if (ok == 1 && j->kind == SNAP_SUBSCRIBE) {
        sess_t *s = conn_find(j->serial);
        sub_t *sub = s ? chan_sub(s, c) : NULL;
        const struct history_since *since = &j->since;
        if (!sub) {
            snap_free(j);
            return;
        }
        /* Only now is the channel's position known here: a reconnect whose
         * gap the stream holds gets the missed deltas, as on one node. */
        if (since->set && !strcmp(since->epoch, c->epoch) && since->offset <= c->last_offset &&
            c->last_offset - since->offset <= c->ns->history_size) {
            int rc = history_subscribed(s, c, j->id, 0, since, j->presence);
            if (rc) {
                sess_send_error(s, j->id, rc > 0 ? rc : PROTO_E_INTERNAL, rc > 0 ? "the redis engine is unavailable "
                                "(see /api/health/ready)" : "out of memory");
                chan_unsubscribe(s, c);
            }
            snap_free(j);
            return;
        }
        /* In step: live deltas from now on wait behind the snapshot. */
        chan_replay_start(sub);
    }
    if (ok == 1) {
        engine_submit(j);
        return;
    }
    /* -1: the subscriber is gone or unsubscribed; snap_finish() finds no sub. */
    j->rc = PROTO_E_ENGINE_UNAVAILABLE;
    snap_finish(j);
}

/* Starts @j. With the shared engine the answer may come before this
 * returns (a read that cannot start), so callers hold the subscriber's
 * replay first. Return: 0; PROTO_E_ENGINE_UNAVAILABLE or -ENOMEM (@j freed,
 * nothing answered). */
static int snap_submit(snap_job_t *j)
{
    if (cluster_routes(j->chan)) {
        int rc;
        j->chan->inflight++;
        if (j->kind == SNAP_LIST) {
            engine_submit(j);
            return 0;
        }
        /* A subscriber's snapshot is taken once live deltas flow in step
         * here, so none between its offset and the channel's position is
         * missed. */
        if ((rc = cluster_when_synced(j->chan, engine_synced, j))) {
            j->chan->inflight--;
            json_decref(j->id);
            free(j);
            return rc;
        }
        return 0;
    }
    j->work.data = j;
    j->chan->inflight++;
    if (!pubpipe_store() || uv_queue_work(&srv.loop, &j->work, snap_work, snap_done)) {
        j->chan->inflight--;
        json_decref(j->id);
        json_decref(j->items);
        free(j);
        return -ENOMEM;
    }
    return 0;
}

int state_subscribed(sess_t *s, chan_t *c, const json_t *id, const struct history_since *since, int presence)
{
    unsigned keep = c->ns->history_size;
    sub_t *sub = chan_sub(s, c);
    snap_job_t *j;

    /* A reconnect whose gap the log still holds gets the missed deltas, as
     * on any channel with history; a filtered one, a fresh filtered snapshot
     * (its log holds whole deltas). */
    if (since->set && !sub->filter && !strcmp(since->epoch, c->epoch) && since->offset <= c->last_offset &&
        c->last_offset - since->offset <= keep)
        return history_subscribed(s, c, id, 0, since, presence);
    if (!(j = calloc(1, sizeof *j))) return -ENOMEM;
    j->kind = SNAP_SUBSCRIBE;
    j->chan = c;
    j->serial = s->serial;
    j->id = id ? json_incref((json_t *)id) : NULL;
    j->presence = presence;
    j->recovery = since->set;
    if (sub->filter) {
        j->match = sub->filter->match;
        memcpy(j->match_arg, sub->filter->arg, sizeof j->match_arg);
    }
    if (cluster_routes(c)) {
        /* The replay starts once the channel is in step (engine_synced()). */
        int rc;
        if (!sub->filter) j->since = *since;
        return (rc = snap_submit(j)) > 0 ? rc : rc ? -ENOMEM : 0;
    }
    if (snap_submit(j)) return -ENOMEM;
    chan_replay_start(sub);
    return 0;
}

void state_on_drained(sess_t *s)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        sub_t *sub = s->subs[i];
        if (!sub->stale) continue;
        sub->stale = 0;
        s->nstale--;
        state_resync(s, sub->chan);
    }
}

void state_on_gap(chan_t *c)
{
    /* Backwards: a resync that fails at once unsubscribes its session,
     * which moves the last subscriber into its place. */
    c->inflight++;
    for (uint32_t i = c->nsubs; i-- > 0;)
        if (i < c->nsubs) state_resync(c->members[i], c);
    c->inflight--;
    chan_maybe_drop(c);
}

void state_resync(sess_t *s, chan_t *c)
{
    sub_t *sub = chan_sub(s, c);
    snap_job_t *j;

    if (!sub || sub->replaying) return;
    if (!(j = calloc(1, sizeof *j))) return;
    j->kind = SNAP_RESYNC;
    j->chan = c;
    j->serial = s->serial;
    if (sub->filter) {
        j->match = sub->filter->match;
        memcpy(j->match_arg, sub->filter->arg, sizeof j->match_arg);
    }
    if (cluster_routes(c)) {
        chan_replay_start(sub);
        if (snap_submit(j)) chan_replay_end(sub);
        return;
    }
    if (snap_submit(j)) return;
    chan_replay_start(sub);
}

int state_list(chan_t *c, const struct state_page *page, uint64_t serial)
{
    snap_job_t *j = calloc(1, sizeof *j);

    if (!j) return -ENOMEM;
    j->kind = SNAP_LIST;
    j->chan = c;
    j->serial = serial;
    j->page = *page;
    return snap_submit(j);
}
