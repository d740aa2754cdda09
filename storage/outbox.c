/* storage/outbox.c - the webhooks' durable queues and dead letters in the
 * history environment (see hist.h, "webhook queues").
 *
 * Owns: the "wh_out" and "wh_dead" databases and the event id counter (meta
 * "next_ev"). Does not own: delivery (broker/core/webhook.c) or which
 * webhook wants what (broker/config.c).
 *
 * DESIGN: a queued event is (webhook name, NUL, big-endian id) -> be64 ts,
 * a kind byte, be64 offset, be16 channel length, [attempts], channel, body.
 * The attempts part (be32 count, be64 first and be64 last attempt, ms) is
 * there only when the kind byte has OB_TRIED set: an event is written
 * without it and rewritten with it after its first failed post, so the count
 * survives a restart. ob_parse() is the one reader of that format. A
 * publication's body is its stored record (MessagePack), written in the
 * publication's own transaction, so the event exists exactly when the
 * publication does; other events carry JSON. The JSON a receiver sees is
 * built when the event is read, so the queue stores each payload once. A dead
 * letter is be16 reason length, reason, then the queued value unchanged, so
 * reviving one restores it byte for byte under the same id. */
#include "hist.h"
#include "hist_int.h"
#include "mpack.h"
#include "chname.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OB_HDR 19                 /* ts 8, kind 1, offset 8, channel length 2 */
#define OB_TRIED 0x80             /* kind flag: the attempts part follows the header */
#define OB_EXT 20                 /* attempts 4, first attempt 8, last attempt 8 */
#define BULK_MAX 100000           /* revive/drop of "all" moves at most this many per call */

/* (hook, NUL, id) into @buf (at least 65 + 8 bytes). */
static MDB_val ob_key(unsigned char *buf, const char *hook, uint64_t id)
{
    size_t hl = strlen(hook);
    MDB_val k;

    memcpy(buf, hook, hl);
    buf[hl] = '\0';
    put_be64(buf + hl + 1, id);
    k.mv_data = buf;
    k.mv_size = hl + 9;
    return k;
}

/* Whether @k is a key of @hook; its id in *@id. */
static int ob_key_of(const MDB_val *k, const char *hook, uint64_t *id)
{
    size_t hl = strlen(hook);

    if (k->mv_size != hl + 9 || memcmp(k->mv_data, hook, hl) || ((unsigned char *)k->mv_data)[hl]) return 0;
    *id = get_be64((unsigned char *)k->mv_data + hl + 1);
    return 1;
}

int hist_int_outbox_put(hist_t *h, MDB_txn *txn, const char *const *hooks, size_t n, int64_t ts, int kind,
                        const char *chan, size_t chanlen, uint64_t offset, const void *body, size_t len)
{
    MDB_val nk = { 7, "next_ev" }, nv, k, v;
    unsigned char nb[8], kb[80], *p;
    uint64_t next = 1;
    int rc;

    if (chanlen > 0xffff) return EINVAL;
    rc = mdb_get(txn, h->meta, &nk, &nv);
    if (rc == 0 && nv.mv_size == 8) next = get_be64(nv.mv_data);
    else if (rc && rc != MDB_NOTFOUND) return rc;
    for (size_t i = 0; i < n; i++) {
        if (strlen(hooks[i]) > 64) return EINVAL;
        k = ob_key(kb, hooks[i], next++);
        v.mv_size = OB_HDR + chanlen + len;
        if ((rc = mdb_put(txn, h->wh_out, &k, &v, MDB_RESERVE))) return rc;
        p = v.mv_data;
        put_be64(p, (uint64_t)ts);
        p[8] = (unsigned char)kind;
        put_be64(p + 9, offset);
        p[17] = (unsigned char)(chanlen >> 8);
        p[18] = (unsigned char)chanlen;
        memcpy(p + OB_HDR, chan, chanlen);
        memcpy(p + OB_HDR + chanlen, body, len);
    }
    put_be64(nb, next);
    nv.mv_size = 8;
    nv.mv_data = nb;
    return mdb_put(txn, h->meta, &nk, &nv, 0);
}

/* Runs @fn in a write transaction, growing the map when it is full; what
 * @fn counted goes in *@count. Return: 0, HIST_E_FULL, or -errno. */
static int write_tx(hist_t *h, int (*fn)(hist_t *h, MDB_txn *txn, void *arg, int *count), void *arg, int *count)
{
    for (;;) {
        MDB_txn *txn;
        int rc, g;

        *count = 0;
        pthread_rwlock_rdlock(&h->lock);
        rc = mdb_txn_begin(h->env, NULL, 0, &txn);
        if (!rc) {
            rc = fn(h, txn, arg, count);
            if (rc) mdb_txn_abort(txn);
            else rc = mdb_txn_commit(txn);
        }
        pthread_rwlock_unlock(&h->lock);
        if (rc == MDB_MAP_FULL) {
            if ((g = hist_int_grow(h)) == 0) continue;
            return g;
        }
        if (rc == EINVAL) return -EINVAL;
        return rc ? hist_int_write_err(h, rc) : 0;
    }
}

struct add_arg {
    const char *const *hooks;
    size_t n;
    int64_t ts;
    const char *json;
    size_t len;
};

static int add_fn(hist_t *h, MDB_txn *txn, void *arg, int *count)
{
    struct add_arg *a = arg;
    (void)count;
    return hist_int_outbox_put(h, txn, a->hooks, a->n, a->ts, HIST_OB_EVENT, "", 0, 0, a->json, a->len);
}

int hist_outbox_add(hist_t *h, const char *const *hooks, size_t n, int64_t ts, const char *json, size_t len)
{
    struct add_arg a = { hooks, n, ts, json, len };
    int count;

    if (!n) return 0;
    return write_tx(h, add_fn, &a, &count);
}

/* A queued value taken apart; the pointers point into it. */
struct ob_rec {
    int64_t ts;
    int kind;                     /* enum hist_ob_kind, without OB_TRIED */
    uint64_t offset;
    unsigned attempts;
    int64_t first_ms, last_ms;
    const char *chan;
    size_t chanlen;
    const unsigned char *body;
    size_t len;
};

/* Parses the queued value @p (@len bytes). Return: 0, or -1 when malformed. */
static int ob_parse(const unsigned char *p, size_t len, struct ob_rec *r)
{
    size_t ext, chanlen;

    if (len < OB_HDR) return -1;
    ext = p[8] & OB_TRIED ? OB_EXT : 0;
    chanlen = (size_t)p[17] << 8 | p[18];
    if (len < OB_HDR + ext + chanlen) return -1;
    r->ts = (int64_t)get_be64(p);
    r->kind = p[8] & ~OB_TRIED;
    r->offset = get_be64(p + 9);
    r->attempts = 0;
    r->first_ms = r->last_ms = 0;
    if (ext) {
        r->attempts = (unsigned)p[19] << 24 | (unsigned)p[20] << 16 | (unsigned)p[21] << 8 | p[22];
        r->first_ms = (int64_t)get_be64(p + 23);
        r->last_ms = (int64_t)get_be64(p + 31);
    }
    r->chan = (const char *)p + OB_HDR + ext;
    r->chanlen = chanlen;
    r->body = p + OB_HDR + ext + chanlen;
    r->len = len - OB_HDR - ext - chanlen;
    return 0;
}

int hist_int_ob_row(const void *k, size_t klen, const void *v, size_t vlen, int dead, hist_ob_row_t *out)
{
    const unsigned char *kp = k, *p = v;
    const unsigned char *nul = memchr(kp, 0, klen);
    struct ob_rec r;
    size_t el = 0;

    if (!nul || nul == kp || (size_t)(nul - kp) + 9 != klen) return -1;
    memset(out, 0, sizeof *out);
    out->hook = k;
    out->id = get_be64(nul + 1);
    if (dead) {
        if (vlen < 2 || vlen < 2 + (el = (size_t)p[0] << 8 | p[1])) return -1;
        out->why = (const char *)p + 2;
        out->whylen = el;
        p += 2 + el;
        vlen -= 2 + el;
    }
    if (ob_parse(p, vlen, &r)) return -1;
    out->ts = r.ts;
    out->kind = r.kind;
    out->offset = r.offset;
    out->attempts = r.attempts;
    out->first_ms = r.first_ms;
    out->last_ms = r.last_ms;
    out->chan = r.chan;
    out->chanlen = r.chanlen;
    out->body = r.body;
    out->len = r.len;
    return 0;
}

/* Writes @r as a queued value into @p, which has ob_size(@r) bytes; the
 * attempts part only when @r->attempts is above 0. */
static size_t ob_size(const struct ob_rec *r)
{
    return OB_HDR + (r->attempts ? OB_EXT : 0) + r->chanlen + r->len;
}

static void ob_write(unsigned char *p, const struct ob_rec *r)
{
    size_t ext = r->attempts ? OB_EXT : 0;

    put_be64(p, (uint64_t)r->ts);
    p[8] = (unsigned char)(r->kind | (ext ? OB_TRIED : 0));
    put_be64(p + 9, r->offset);
    p[17] = (unsigned char)(r->chanlen >> 8);
    p[18] = (unsigned char)r->chanlen;
    if (ext) {
        p[19] = (unsigned char)(r->attempts >> 24);
        p[20] = (unsigned char)(r->attempts >> 16);
        p[21] = (unsigned char)(r->attempts >> 8);
        p[22] = (unsigned char)r->attempts;
        put_be64(p + 23, (uint64_t)r->first_ms);
        put_be64(p + 31, (uint64_t)r->last_ms);
    }
    /* memmove: a caller may rewrite a value over a copy of itself. */
    memmove(p + OB_HDR + ext, r->chan, r->chanlen);
    memmove(p + OB_HDR + ext + r->chanlen, r->body, r->len);
}

/* The event @r stands for, with its @id; NULL when its body does not decode. */
static json_t *ob_event(uint64_t id, const struct ob_rec *r)
{
    char reason[PROTO_REASON_MAX], ids[24];
    json_t *ev = NULL;

    if (r->kind == HIST_OB_PUBLICATION) {
        /* The stored record: {"ts","data", and "from", "reply_to", "kind" when set}. */
        if (mpack_decode(r->body, r->len, &ev, reason) || !json_is_object(ev)) {
            json_decref(ev);
            return NULL;
        }
        json_object_set_new(ev, "type", json_string("publication"));
        json_object_set_new(ev, "channel", json_stringn(r->chan, r->chanlen));
        json_object_set_new(ev, "offset", json_integer((json_int_t)r->offset));
    } else {
        ev = json_loadb((const char *)r->body, r->len, 0, NULL);
        if (!json_is_object(ev)) {
            json_decref(ev);
            return NULL;
        }
    }
    if (!json_object_get(ev, "ts")) json_object_set_new(ev, "ts", json_integer((json_int_t)r->ts));
    snprintf(ids, sizeof ids, "%llu", (unsigned long long)id);
    json_object_set_new(ev, "id", json_string(ids));
    return ev;
}

/* Fills @it from the queued value @r of event @id: its event (a stand-in
 * when it no longer decodes: it still occupies its place, so it is delivered
 * as what is known of it and can be acknowledged), its attempts and the
 * channel it is ordered with. */
static void ob_item(hist_ob_item_t *it, uint64_t id, const struct ob_rec *r)
{
    json_t *ch;

    it->id = id;
    it->ts = r->ts;
    it->attempts = r->attempts;
    it->first_attempt = r->first_ms;
    it->last_attempt = r->last_ms;
    if (!(it->event = ob_event(id, r))) {
        char ids[24];
        snprintf(ids, sizeof ids, "%llu", (unsigned long long)id);
        it->event = json_pack("{s:s,s:s,s:I}", "type", "undecodable", "id", ids, "ts", (json_int_t)it->ts);
    }
    it->chanlen = 0;
    if (r->chanlen && r->chanlen < sizeof it->chan) {
        memcpy(it->chan, r->chan, r->chanlen);
        it->chanlen = r->chanlen;
    } else if ((ch = json_object_get(it->event, "channel")) && json_is_string(ch) &&
               json_string_length(ch) < sizeof it->chan) {
        it->chanlen = json_string_length(ch);
        memcpy(it->chan, json_string_value(ch), it->chanlen);
    }
    it->chan[it->chanlen] = '\0';
}

void hist_ob_item_fill(hist_ob_item_t *it, uint64_t id, int64_t ts, int kind, uint64_t offset, const char *chan,
                       size_t chanlen, const void *body, size_t len, unsigned attempts, int64_t first_ms,
                       int64_t last_ms)
{
    struct ob_rec r = { ts, kind, offset, attempts, first_ms, last_ms, chan, chanlen, body, len };

    ob_item(it, id, &r);
}

void hist_ob_items_free(hist_ob_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) json_decref(items[i].event);
    free(items);
}

int hist_outbox_read(hist_t *h, const char *hook, int dead, uint64_t after, size_t max, hist_ob_item_t **out,
                     size_t *nout)
{
    unsigned char kb[80];
    hist_ob_item_t *items = NULL;
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t n = 0;
    uint64_t id;
    int rc;

    *out = NULL;
    *nout = 0;
    if (strlen(hook) > 64) return 0;
    if (max && !(items = calloc(max, sizeof *items))) return -ENOMEM;
    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn))) goto out;
    if ((rc = mdb_cursor_open(txn, dead ? h->wh_dead : h->wh_out, &cur))) { mdb_txn_abort(txn); goto out; }
    k = ob_key(kb, hook, after + 1);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && n < max && ob_key_of(&k, hook, &id);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *p = v.mv_data;
        size_t len = v.mv_size;
        hist_ob_item_t *it = &items[n];
        struct ob_rec r;
        if (dead) {
            size_t el;
            if (len < 2 || len < 2 + (el = (size_t)p[0] << 8 | p[1])) continue;
            snprintf(it->error, sizeof it->error, "%.*s", (int)el, (const char *)p + 2);
            p += 2 + el;
            len -= 2 + el;
        }
        if (ob_parse(p, len, &r)) continue;
        ob_item(it, id, &r);
        n++;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
out:
    pthread_rwlock_unlock(&h->lock);
    if (rc) {
        hist_ob_items_free(items, n);
        return hist_int_mdb_err(rc);
    }
    *out = items;
    *nout = n;
    return 0;
}

/* The channel a queued event is ordered with: the one in its header, else
 * the "channel" of its JSON body; "" when it has none. */
static size_t ob_channel(const struct ob_rec *r, char *buf, size_t cap)
{
    json_t *ev, *ch;
    size_t n = 0;

    if (r->chanlen) {
        n = r->chanlen < cap ? r->chanlen : cap - 1;
        memcpy(buf, r->chan, n);
    } else if (r->kind != HIST_OB_PUBLICATION && (ev = json_loadb((const char *)r->body, r->len, 0, NULL))) {
        if ((ch = json_object_get(ev, "channel")) && json_is_string(ch) && json_string_length(ch) < cap) {
            n = json_string_length(ch);
            memcpy(buf, json_string_value(ch), n);
        }
        json_decref(ev);
    }
    buf[n] = '\0';
    return n;
}

int hist_outbox_pick(hist_t *h, const char *hook, uint64_t after, size_t scan_max, size_t max,
                     int (*want)(void *ctx, const char *chan, size_t chanlen, unsigned attempts), void *ctx,
                     hist_ob_item_t **out, size_t *nout, uint64_t *last_seen)
{
    unsigned char kb[80];
    hist_ob_item_t *items = NULL;
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t n = 0, seen = 0;
    uint64_t id;
    int rc;

    *out = NULL;
    *nout = 0;
    *last_seen = after;
    if (strlen(hook) > 64 || !max) return 0;
    if (!(items = calloc(max, sizeof *items))) return -ENOMEM;
    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn))) goto out;
    if ((rc = mdb_cursor_open(txn, h->wh_out, &cur))) { mdb_txn_abort(txn); goto out; }
    k = ob_key(kb, hook, after + 1);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && n < max && seen < scan_max && ob_key_of(&k, hook, &id);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), seen++) {
        struct ob_rec r;
        char chan[CHNAME_MAX + 1];
        size_t cl;
        int w;
        *last_seen = id;
        if (ob_parse(v.mv_data, v.mv_size, &r)) continue;
        cl = ob_channel(&r, chan, sizeof chan);
        if ((w = want(ctx, chan, cl, r.attempts)) < 0) break;
        if (w) ob_item(&items[n++], id, &r);
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
out:
    pthread_rwlock_unlock(&h->lock);
    if (rc) {
        hist_ob_items_free(items, n);
        return hist_int_mdb_err(rc);
    }
    *out = items;
    *nout = n;
    return 0;
}

struct tried_arg {
    const char *hook;
    const uint64_t *ids;
    size_t n;
    int64_t now;
    unsigned *attempts;
};

static int tried_fn(hist_t *h, MDB_txn *txn, void *arg, int *count)
{
    struct tried_arg *a = arg;
    unsigned char kb[80];

    for (size_t i = 0; i < a->n; i++) {
        MDB_val k = ob_key(kb, a->hook, a->ids[i]), v;
        struct ob_rec r;
        unsigned char *copy;
        int rc = mdb_get(txn, h->wh_out, &k, &v);
        a->attempts[i] = 0;
        if (rc == MDB_NOTFOUND) continue;
        if (rc) return rc;
        /* The rewrite may move the value: parse a copy of it. */
        if (!(copy = malloc(v.mv_size))) return ENOMEM;
        memcpy(copy, v.mv_data, v.mv_size);
        if (ob_parse(copy, v.mv_size, &r)) {
            free(copy);
            continue;
        }
        if (r.attempts < 0xffffffffu) r.attempts++;
        if (!r.first_ms) r.first_ms = a->now;
        r.last_ms = a->now;
        v.mv_size = ob_size(&r);
        if ((rc = mdb_put(txn, h->wh_out, &k, &v, MDB_RESERVE))) {
            free(copy);
            return rc;
        }
        ob_write(v.mv_data, &r);
        free(copy);
        a->attempts[i] = r.attempts;
        ++*count;
    }
    return 0;
}

int hist_outbox_tried(hist_t *h, const char *hook, const uint64_t *ids, size_t n, int64_t now_ms,
                      unsigned *attempts)
{
    struct tried_arg a = { hook, ids, n, now_ms, attempts };
    int count;

    return strlen(hook) > 64 ? -EINVAL : write_tx(h, tried_fn, &a, &count);
}

struct ids_arg {
    const char *hook;
    const uint64_t *ids;
    size_t n;
    const char *why;
};

static int ack_fn(hist_t *h, MDB_txn *txn, void *arg, int *count)
{
    struct ids_arg *a = arg;
    unsigned char kb[80];

    for (size_t i = 0; i < a->n; i++) {
        MDB_val k = ob_key(kb, a->hook, a->ids[i]);
        int rc = mdb_del(txn, h->wh_out, &k, NULL);
        if (rc && rc != MDB_NOTFOUND) return rc;
        *count += !rc;
    }
    return 0;
}

int hist_outbox_ack(hist_t *h, const char *hook, const uint64_t *ids, size_t n)
{
    struct ids_arg a = { hook, ids, n, NULL };
    int count;
    return strlen(hook) > 64 ? -EINVAL : write_tx(h, ack_fn, &a, &count);
}

static int bury_fn(hist_t *h, MDB_txn *txn, void *arg, int *count)
{
    struct ids_arg *a = arg;
    size_t el = strlen(a->why);
    unsigned char kb[80];

    if (el > 250) el = 250;
    for (size_t i = 0; i < a->n; i++) {
        MDB_val k = ob_key(kb, a->hook, a->ids[i]), v, d;
        unsigned char *p;
        int rc = mdb_get(txn, h->wh_out, &k, &v);
        if (rc == MDB_NOTFOUND) continue;
        if (rc) return rc;
        d.mv_size = 2 + el + v.mv_size;
        if ((rc = mdb_put(txn, h->wh_dead, &k, &d, MDB_RESERVE))) return rc;
        p = d.mv_data;
        p[0] = (unsigned char)(el >> 8);
        p[1] = (unsigned char)el;
        memcpy(p + 2, a->why, el);
        /* @v stays valid: nothing of wh_out was written since the get. */
        memcpy(p + 2 + el, v.mv_data, v.mv_size);
        if ((rc = mdb_del(txn, h->wh_out, &k, NULL))) return rc;
        ++*count;
    }
    return 0;
}

int hist_outbox_bury(hist_t *h, const char *hook, const uint64_t *ids, size_t n, const char *why)
{
    struct ids_arg a = { hook, ids, n, why };
    int count;
    return strlen(hook) > 64 ? -EINVAL : write_tx(h, bury_fn, &a, &count);
}

struct one_arg {
    const char *hook;
    uint64_t id;                  /* 0: all */
    int revive;                   /* 1: back to the queue; 0: delete */
};

/* Moves (or deletes) the dead letters of a->hook. */
static int dead_fn(hist_t *h, MDB_txn *txn, void *arg, int *count)
{
    struct one_arg *a = arg;
    unsigned char kb[80];
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t id;
    int rc;

    if ((rc = mdb_cursor_open(txn, h->wh_dead, &cur))) return rc;
    k = ob_key(kb, a->hook, a->id ? a->id : 1);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && *count < BULK_MAX && ob_key_of(&k, a->hook, &id);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *p = v.mv_data;
        size_t el;
        if (a->id && id != a->id) break;
        struct ob_rec r;
        /* A revived event starts its attempts afresh: max_attempts counts
         * from the retry an operator asked for. */
        if (a->revive && v.mv_size >= 2 && v.mv_size >= 2 + (el = (size_t)p[0] << 8 | p[1]) &&
            !ob_parse(p + 2 + el, v.mv_size - 2 - el, &r)) {
            MDB_val q;
            r.attempts = 0;
            q.mv_size = ob_size(&r);
            if ((rc = mdb_put(txn, h->wh_out, &k, &q, MDB_RESERVE))) break;
            ob_write(q.mv_data, &r);
        }
        if ((rc = mdb_cursor_del(cur, 0))) break;
        ++*count;
        if (a->id) break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int hist_outbox_revive(hist_t *h, const char *hook, uint64_t id)
{
    struct one_arg a = { hook, id, 1 };
    int count, rc = strlen(hook) > 64 ? -EINVAL : write_tx(h, dead_fn, &a, &count);
    if (rc) return rc == HIST_E_FULL ? -ENOSPC : rc;
    return count;
}

int hist_outbox_drop(hist_t *h, const char *hook, uint64_t id)
{
    struct one_arg a = { hook, id, 0 };
    int count, rc = strlen(hook) > 64 ? -EINVAL : write_tx(h, dead_fn, &a, &count);
    if (rc) return rc == HIST_E_FULL ? -ENOSPC : rc;
    return count;
}

int hist_outbox_depth(hist_t *h, const char *hook, int dead, uint64_t *n, int64_t *oldest_ts)
{
    unsigned char kb[80];
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t id;
    int rc;

    *n = 0;
    *oldest_ts = 0;
    if (strlen(hook) > 64) return 0;
    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn))) goto out;
    if ((rc = mdb_cursor_open(txn, dead ? h->wh_dead : h->wh_out, &cur))) { mdb_txn_abort(txn); goto out; }
    k = ob_key(kb, hook, 1);
    /* Counting walks the queue: it is meant to stay short, and a long one is
     * what an operator asking for its depth wants to know about. */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && ob_key_of(&k, hook, &id);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *p = v.mv_data;
        size_t len = v.mv_size, el;
        if (dead) {
            if (len < 2 || len < 2 + (el = (size_t)p[0] << 8 | p[1])) continue;
            p += 2 + el;
            len -= 2 + el;
        }
        if (!*n && len >= 8) *oldest_ts = (int64_t)get_be64(p);
        ++*n;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
out:
    pthread_rwlock_unlock(&h->lock);
    return rc ? hist_int_mdb_err(rc) : 0;
}
