/* broker/core/channel.c - see channel.h. */
#include "core/channel.h"
#include "core/cluster.h"
#include "herald.h"
#include "clock.h"
#include "rand.h"
#include "record.h"
#include "core/presence.h"
#include "mpack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct chan_events chan_events;

int chan_registry_init(void)
{
    int r = hmap_init(&srv.channels, 1024);
    if (r) return r;
    r = hmap_init(&srv.subs, 1024);
    if (r) hmap_deinit(&srv.channels);
    return r;
}

/* Channels of the broker's own sys namespace now registered: chan_count()
 * leaves them out, so the admin page's own feed is not a user channel. */
static size_t nsys;

static void chan_free(chan_t *c)
{
    /* Subscriptions are gone (the caller checked), so nothing is held. */
    presence_free(c);
    cluster_chan_free(c);
    free(c->filters);
    free(c->members);
    free(c->subs);
    free(c);
}

void chan_registry_deinit(void)
{
    size_t pos = 0;
    chan_t *c;

    while ((c = hmap_next(&srv.channels, &pos))) chan_free(c);
    nsys = 0;
    hmap_deinit(&srv.channels);
    hmap_deinit(&srv.subs);
}


int chan_is_sys(const chan_t *c)
{
    return c->namelen > 4 && !memcmp(c->name, "sys:", 4);
}

size_t chan_count(void) { return srv.channels.count - nsys; }

/* Two one-second buckets: cheap to bump on every publication, no timer. */
void chan_count_pub(chan_t *c)
{
    uint64_t sec = uv_now(&srv.loop) / 1000;
    if (sec != c->rate_sec_at) {
        c->rate_prev = sec == c->rate_sec_at + 1 ? c->rate_sec : 0;
        c->rate_sec = 0;
        c->rate_sec_at = sec;
    }
    c->rate_sec++;
}

double chan_rate(const chan_t *c)
{
    uint64_t sec = uv_now(&srv.loop) / 1000;
    if (sec == c->rate_sec_at) return c->rate_prev;
    if (sec == c->rate_sec_at + 1) return c->rate_sec;
    return 0;
}

chan_t *chan_find(const char *name, size_t len)
{
    return hmap_get(&srv.channels, name, len);
}

int chan_open(const char *name, size_t len, chan_t **out)
{
    chan_t *c = chan_find(name, len);

    if (c) { *out = c; return 0; }
    if (srv.channels.count >= srv.cfg.max_channels) return PROTO_E_LIMIT;
    c = calloc(1, sizeof *c + len + 1);
    if (!c) return -ENOMEM;
    memcpy(c->name, name, len);
    c->namelen = (uint16_t)len;
    c->ns = config_ns(&srv.cfg, name, len);
    rand_hex(c->epoch, HIST_EPOCH_LEN);
    if (hmap_put(&srv.channels, c->name, len, c)) { free(c); return -ENOMEM; }
    nsys += (size_t)chan_is_sys(c);
    *out = c;
    return 0;
}

int chan_maybe_drop(chan_t *c)
{
    /* A channel without history keeps its offsets in memory only, so it stays
     * while it has any; one with history can be reloaded from the store. */
    int keep_offsets = c->ns->history ? c->stored : c->last_offset > 0;

    /* With a shared engine the offsets live in the engine, not here. */
    if (cluster_routes(c)) keep_offsets = 0;

    if (c->nsubs || c->inflight || keep_offsets || presence_count(c)) return 0;
    hmap_del(&srv.channels, c->name, c->namelen);
    nsys -= (size_t)chan_is_sys(c);
    chan_free(c);
    return 1;
}

static void maybe_drop(chan_t *c) { chan_maybe_drop(c); }

static int grow(void **arr, uint32_t *cap, size_t elem, uint32_t need)
{
    uint32_t ncap = *cap ? *cap : 4;
    void *p;

    if (need <= *cap) return 0;
    while (ncap < need) ncap *= 2;
    p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return -ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static void remove_sub(sub_t *sub);

int chan_subscribe(sess_t *s, chan_t *c)
{
    const void *key[2] = { s, c };
    uint32_t mcap = c->cap, scap = s->subscap;
    sub_t *sub;
    int r = 0;

    if (hmap_get(&srv.subs, key, sizeof key)) return PROTO_E_ALREADY_SUBSCRIBED;
    if (s->nsubs >= srv.cfg.max_subscriptions) { r = PROTO_E_LIMIT; goto fail; }
    sub = malloc(sizeof *sub);
    if (!sub) { r = -ENOMEM; goto fail; }
    /* Both arrays grow together so members[] and subs[] keep one capacity. */
    if (grow((void **)&c->members, &mcap, sizeof *c->members, c->nsubs + 1) ||
        grow((void **)&c->subs, &c->cap, sizeof *c->subs, c->nsubs + 1) ||
        grow((void **)&s->subs, &scap, sizeof *s->subs, s->nsubs + 1)) {
        free(sub);
        r = -ENOMEM;
        goto fail;
    }
    s->subscap = scap;
    memset(sub, 0, sizeof *sub);
    sub->key[0] = s;
    sub->key[1] = c;
    sub->chan = c;
    sub->sess = s;
    if (hmap_put(&srv.subs, sub->key, sizeof sub->key, sub)) { free(sub); r = -ENOMEM; goto fail; }
    sub->chan_idx = c->nsubs;
    c->members[c->nsubs] = s;
    c->subs[c->nsubs++] = sub;
    if (c->nsubs == 1 && chan_events.on_occupancy) chan_events.on_occupancy(c, 1);
    if (c->nsubs == 1 && cluster_routes(c)) cluster_occupancy(c, 1);
    c->nenc[s->enc]++;
    sub->sess_idx = s->nsubs;
    s->subs[s->nsubs++] = sub;
    if (c->ns->presence && presence_join(c, s)) {
        remove_sub(sub);
        return -ENOMEM;
    }
    return 0;
fail:
    maybe_drop(c);
    return r;
}

/* ---- filters ---- */

int chan_sub_filter(sub_t *sub, chan_match_fn match, const char *arg)
{
    chan_t *c = sub->chan;
    chan_filter_t *f = NULL, **nf;

    for (uint32_t i = 0; i < c->nfilters; i++)
        if (c->filters[i]->match == match && !strcmp(c->filters[i]->arg, arg)) { f = c->filters[i]; break; }
    if (!f) {
        if (!(f = calloc(1, sizeof *f))) return -ENOMEM;
        if (!(nf = realloc(c->filters, (c->nfilters + 1) * sizeof *nf))) { free(f); return -ENOMEM; }
        c->filters = nf;
        f->idx = c->nfilters;
        c->filters[c->nfilters++] = f;
        f->match = match;
        snprintf(f->arg, sizeof f->arg, "%s", arg);
    }
    f->refs++;
    f->nenc[sub->sess->enc]++;
    sub->filter = f;
    c->nfiltered++;
    return 0;
}

static void filter_unref(chan_t *c, chan_filter_t *f, int enc)
{
    c->nfiltered--;
    f->nenc[enc]--;
    if (--f->refs) return;
    c->filters[f->idx] = c->filters[--c->nfilters];
    c->filters[f->idx]->idx = f->idx;
    free(f);
}

/* The push of publication @offset (record @r, decoded) with only the changes
 * @f accepts, per encoding its subscribers use, into @out; all NULL when it
 * accepts none. Return: 0, or -ENOMEM. */
static int filter_frames(chan_t *c, const chan_filter_t *f, uint64_t offset, const json_t *r, frame_t *out[PROTO_NENC])
{
    const json_t *data = json_object_get(r, "data"), *ch;
    json_t *keep = json_array(), *fr = NULL;
    wbuf_t rec;
    size_t i;
    int rc = -ENOMEM;

    wbuf_init(&rec);
    memset(out, 0, PROTO_NENC * sizeof *out);
    if (!keep) goto out;
    json_array_foreach(json_object_get(data, "changes"), i, ch) {
        const json_t *key = json_object_get(ch, "key");
        if (json_is_string(key) &&
            f->match(f->arg, json_string_value(key), json_string_length(key), json_object_get(ch, "value")))
            json_array_append(keep, (json_t *)ch);
    }
    rc = 0;
    if (!json_array_size(keep) && !json_is_true(json_object_get(data, "reset"))) goto out;
    rc = -ENOMEM;
    if (!(fr = json_pack("{s:O,s:{s:O}}", "ts", json_object_get(r, "ts"), "data", "changes", keep))) goto out;
    if (json_is_true(json_object_get(data, "reset")))
        json_object_set_new(json_object_get(fr, "data"), "reset", json_true());
    mpack_emit(&rec, fr);
    if (rec.oom) goto out;
    for (int e = 0; e < PROTO_NENC; e++) {
        if (!f->nenc[e]) continue;
        wbuf_reset(&srv.enc);
        if (rec_pub((enum proto_enc)e, c->name, c->namelen, offset, rec.p, rec.len, &srv.enc) || srv.enc.oom ||
            !(out[e] = frame_new(srv.enc.p, srv.enc.len)))
            goto out;
        out[e]->offset = offset;
    }
    rc = 0;
out:
    if (rc)
        for (int e = 0; e < PROTO_NENC; e++) out[e] = frame_unref(out[e]);
    json_decref(keep);
    json_decref(fr);
    wbuf_deinit(&rec);
    return rc;
}

static void remove_sub(sub_t *sub)
{
    chan_t *c = sub->chan;
    sess_t *s = sub->sess;
    uint32_t i = sub->chan_idx, last = c->nsubs - 1;

    if (c->pres) presence_leave(c, s);
    c->members[i] = c->members[last];
    c->subs[i] = c->subs[last];
    c->subs[i]->chan_idx = i;
    c->nsubs--;
    c->nenc[s->enc]--;
    if (!c->nsubs && chan_events.on_occupancy) chan_events.on_occupancy(c, 0);
    if (!c->nsubs && cluster_routes(c)) cluster_occupancy(c, 0);

    i = sub->sess_idx;
    last = s->nsubs - 1;
    s->subs[i] = s->subs[last];
    s->subs[i]->sess_idx = i;
    s->nsubs--;

    if (sub->replaying) c->nreplaying--;
    if (sub->skip_upto) c->nskipping--;
    if (sub->filter) filter_unref(c, sub->filter, s->enc);
    if (sub->stale) s->nstale--;
    for (uint32_t k = 0; k < sub->nheld; k++) frame_unref(sub->held[k]);
    free(sub->held);
    hmap_del(&srv.subs, sub->key, sizeof sub->key);
    free(sub);
    maybe_drop(c);
}

int chan_unsubscribe(sess_t *s, chan_t *c)
{
    const void *key[2] = { s, c };
    sub_t *sub = hmap_get(&srv.subs, key, sizeof key);

    if (!sub) return PROTO_E_NOT_SUBSCRIBED;
    remove_sub(sub);
    return 0;
}

void chan_unsubscribe_all(sess_t *s)
{
    while (s->nsubs) remove_sub(s->subs[s->nsubs - 1]);
    free(s->subs);
    s->subs = NULL;
    s->subscap = 0;
}

static void hold(sub_t *sub, frame_t *f);

int chan_broadcast(chan_t *c, const json_t *msg, const sess_t *except)
{
    frame_t *f[PROTO_NENC] = { NULL };
    int rc = 0;

    for (int e = 0; e < PROTO_NENC; e++) {
        if (!c->nenc[e]) continue;
        if (!(f[e] = sess_encode((enum proto_enc)e, msg))) { rc = -ENOMEM; goto out; }
    }
    for (uint32_t i = 0; i < c->nsubs; i++) {
        sess_t *s = c->members[i];
        if (s == except) continue;
        /* A subscriber still waiting for its replay gets the event after it. */
        if (c->subs[i]->replaying) hold(c->subs[i], f[s->enc]);
        else sess_push(s, f[s->enc]);
    }
out:
    for (int e = 0; e < PROTO_NENC; e++) frame_unref(f[e]);
    return rc;
}

sub_t *chan_sub(sess_t *s, chan_t *c)
{
    const void *key[2] = { s, c };
    return hmap_get(&srv.subs, key, sizeof key);
}

void chan_replay_start(sub_t *sub)
{
    if (!sub->replaying) {
        sub->replaying = 1;
        sub->chan->nreplaying++;
    }
}

void chan_replay_end(sub_t *sub)
{
    chan_replay_end_at(sub, 0);
}

/* Whether queueing @f would put state subscriber @s (of @c) behind: then
 * its deltas stop and a fresh snapshot replaces them once it has drained
 * (session.c). Only a queue that holds something can drain: a large delta
 * to an idle subscriber is simply sent. */
static int state_lags(const chan_t *c, const sess_t *s, const frame_t *f)
{
    return c->ns->state && s->qbytes && s->qbytes + f->len > srv.cfg.send_queue_max / 2;
}

static void mark_stale(sub_t *sub)
{
    if (sub->stale) return;
    sub->stale = 1;
    sub->sess->nstale++;
}

void chan_replay_end_at(sub_t *sub, uint64_t at)
{
    chan_t *c = sub->chan;

    if (!sub->replaying) return;
    sub->replaying = 0;
    c->nreplaying--;
    /* What was held was fanned out after the read began: it follows the
     * replay, but a snapshot may already cover the first of it. On a state
     * channel, what was held while a slow snapshot read ran can itself be
     * too much: the rest then waits for the next snapshot, as in
     * chan_fanout(), instead of closing the subscriber as slow. */
    for (uint32_t k = 0; k < sub->nheld; k++) {
        frame_t *f = sub->held[k];
        /* Events (offset 0: join, leave, signal) always follow. */
        if (!f->offset) sess_push(sub->sess, f);
        else if (f->offset > at && !sub->stale) {
            if (state_lags(c, sub->sess, f)) mark_stale(sub);
            else sess_push(sub->sess, f);
        }
        frame_unref(f);
    }
    if (at > c->last_offset && !sub->skip_upto) {
        sub->skip_upto = at;
        c->nskipping++;
    }
    free(sub->held);
    sub->held = NULL;
    sub->nheld = sub->heldcap = 0;
}

/* Keeps @f for a subscriber whose replay is still being read. */
static void hold(sub_t *sub, frame_t *f)
{
    if (sub->nheld == sub->heldcap) {
        uint32_t ncap = sub->heldcap ? sub->heldcap * 2 : 8;
        frame_t **nh = realloc(sub->held, ncap * sizeof *nh);
        if (!nh) { sess_close(sub->sess, CLOSE_INTERNAL, 0); return; }
        sub->held = nh;
        sub->heldcap = ncap;
    }
    sub->held[sub->nheld++] = frame_ref(f);
}

/* Frees the filtered frames of one fan-out (@n filters). */
static void filtered_free(frame_t *(*ff)[PROTO_NENC], uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        for (int e = 0; e < PROTO_NENC; e++) frame_unref(ff[i][e]);
    free(ff);
}

int chan_fanout(chan_t *c, uint64_t offset, const unsigned char *rec, size_t reclen, frame_t *frames[PROTO_NENC])
{
    frame_t *own[PROTO_NENC] = { NULL };
    frame_t *(*ff)[PROTO_NENC] = NULL;         /* per filter of c->filters, per encoding */
    uint32_t plain[PROTO_NENC];                /* unfiltered subscribers per encoding */
    uint64_t skipped = 0;

    for (int e = 0; e < PROTO_NENC; e++) {
        plain[e] = c->nenc[e];
        for (uint32_t i = 0; i < c->nfilters; i++) plain[e] -= c->filters[i]->nenc[e];
    }
    for (int e = 0; e < PROTO_NENC; e++) {
        if (!plain[e] || frames[e]) continue;
        wbuf_reset(&srv.enc);
        if (rec_pub((enum proto_enc)e, c->name, c->namelen, offset, rec, reclen, &srv.enc) || srv.enc.oom ||
            !(own[e] = frame_new(srv.enc.p, srv.enc.len))) {
            for (int k = 0; k < e; k++) frame_unref(own[k]);
            return -ENOMEM;
        }
    }
    if (c->nfilters) {
        /* One decode of the delta, then one filtered push per filter and encoding. */
        char reason[PROTO_REASON_MAX];
        json_t *r = NULL;
        int rc = mpack_decode(rec, reclen, &r, reason) ? -ENOMEM : 0;
        if (!rc && !(ff = calloc(c->nfilters, sizeof *ff))) rc = -ENOMEM;
        for (uint32_t i = 0; !rc && i < c->nfilters; i++) rc = filter_frames(c, c->filters[i], offset, r, ff[i]);
        json_decref(r);
        if (rc) {
            if (ff) filtered_free(ff, c->nfilters);
            for (int e = 0; e < PROTO_NENC; e++) frame_unref(own[e]);
            return rc;
        }
    }
    if (offset > c->last_offset) c->last_offset = offset;
    for (int e = 0; e < PROTO_NENC; e++) {
        if (frames[e]) frames[e]->offset = offset;
        if (own[e]) own[e]->offset = offset;
    }
    /* sess_push() may close a slow consumer, but closing only marks the
     * session; it leaves members[] unchanged while we walk it. The fast loop
     * is the common case; the other handles replays, snapshots and state. */
    if (!c->nreplaying && !c->nskipping && !c->ns->state && !c->nfiltered) {
        for (uint32_t i = 0; i < c->nsubs; i++) {
            sess_t *s = c->members[i];
            sess_push(s, frames[s->enc] ? frames[s->enc] : own[s->enc]);
        }
    } else {
        for (uint32_t i = 0; i < c->nsubs; i++) {
            sess_t *s = c->members[i];
            sub_t *sub = c->subs[i];
            frame_t *f = frames[s->enc] ? frames[s->enc] : own[s->enc];
            if (sub->filter) f = ff[sub->filter->idx][s->enc];
            if (sub->skip_upto) {
                if (offset <= sub->skip_upto) continue;
                sub->skip_upto = 0;
                c->nskipping--;
            }
            if (!f) {                          /* nothing of this delta passes its filter */
                skipped++;
                continue;
            }
            if (sub->replaying) hold(sub, f);
            else if (sub->stale) continue;     /* a fresh snapshot will replace these */
            /* A state subscriber that lags is not cut off: it converges
             * through a fresh snapshot instead. */
            else if (state_lags(c, s, f)) mark_stale(sub);
            else sess_push(s, f);
        }
    }
    /* The broker's own feed (sys:stats to the admin page) is not traffic. */
    if (!chan_is_sys(c)) srv.stats.deliveries += c->nsubs - skipped;
    for (int e = 0; e < PROTO_NENC; e++) frame_unref(own[e]);
    if (ff) filtered_free(ff, c->nfilters);
    return 0;
}
