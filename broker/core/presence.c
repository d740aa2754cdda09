/* broker/core/presence.c - see presence.h. */
#include "core/presence.h"
#include "core/channel.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "herald.h"
#include "net/session.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct member {
    struct member *pend_prev, *pend_next;  /* the pending-leave list, while leave_at is set */
    struct chan *chan;
    uint32_t conns;
    uint64_t leave_at;            /* loop ms when the leave is announced; 0: present */
    json_t *info;                 /* from the user's token, or NULL */
    uint8_t anon;                 /* key is a client id, not a user id */
    size_t keylen;
    char key[];
} member_t;

struct presence {
    hmap_t members;               /* key -> member_t */
    uint32_t conns;               /* subscribed connections */
    uint64_t seq;                 /* changes of the member set or of an info so far */
    json_t *joins, *leaves, *updates; /* batched events, in order (each a sample) */
    uint32_t njoins, nleaves, nupdates; /* ... and how many there were in all */
    struct presence *batch_next;  /* on the list of presences with a batch to flush */
    uint8_t batched;
    struct chan *chan;
    uint64_t cluster_count;       /* with the shared engine: the members of every node, as of the last event */
};

static member_t *pending;         /* members waiting out their grace */
static struct presence *batches;  /* presences with events to flush */

enum pres_event { EV_JOIN, EV_LEAVE, EV_UPDATE };
static const char *const event_op[] = { "join", "leave", "presence_update" };

uint32_t presence_count(const struct chan *c)
{
    return c->pres ? (uint32_t)c->pres->members.count : 0;
}

static json_t *member_json(const member_t *m, int with_conns)
{
    json_t *o = json_object();
    if (!o) return NULL;
    if (m->anon) json_object_set_new(o, "client", json_stringn(m->key, m->keylen));
    else json_object_set_new(o, "user", json_stringn(m->key, m->keylen));
    if (m->info) json_object_set(o, "info", m->info);
    if (with_conns) json_object_set_new(o, "connections", json_integer(m->conns));
    return o;
}

static int tiered(const struct chan *c)
{
    return c->pres->members.count > c->ns->presence_tier;
}

static void announce_json(struct chan *c, json_t *ev, enum pres_event kind, uint64_t seq, int tier,
                          const sess_t *except);

/* Whether a batched event of @kind would only be counted (its sample is full). */
static int sample_full(const struct presence *p, enum pres_event kind)
{
    const json_t *list = kind == EV_JOIN ? p->joins : kind == EV_LEAVE ? p->leaves : p->updates;
    return list && json_array_size(list) >= PRESENCE_SAMPLE;
}

/* Counts a change of @c's presence and announces it: @m joined, left or
 * changed its info. The event goes out now, or into the channel's batch when
 * the channel is above the tier or already has a batch pending: an event sent
 * alone while earlier ones wait in a batch would overtake them, and a client
 * applying events in arrival order would end up wrong (a join followed by
 * the batched leave it came after). Every event and every presence answer
 * carries the channel's presence seq, so clients can also tell which of two
 * events came last and which events an answer already includes. */
static void announce(struct chan *c, member_t *m, enum pres_event kind, const sess_t *except)
{
    uint64_t seq = ++c->pres->seq;
    int tier = tiered(c), counted_only;
    json_t *ev = NULL;

    if (!c->ns->join_leave) return;
    /* Past a batch's sample an event is only counted: build nothing. */
    counted_only = (tier || c->pres->batched) && sample_full(c->pres, kind);
    if (!counted_only && !(ev = member_json(m, 0))) return;
    announce_json(c, ev, kind, seq, tier, except);
}

/* Sends or batches event @ev (the member's fields; taken; NULL: only
 * counted in the batch) of @kind with @seq; @tier: the channel is above
 * its presence tier. */
static void announce_json(struct chan *c, json_t *ev, enum pres_event kind, uint64_t seq, int tier,
                          const sess_t *except)
{
    struct presence *p = c->pres;

    if (tier || p->batched) {
        json_t **list = kind == EV_JOIN ? &p->joins : kind == EV_LEAVE ? &p->leaves : &p->updates;
        uint32_t *total = kind == EV_JOIN ? &p->njoins : kind == EV_LEAVE ? &p->nleaves : &p->nupdates;
        if (!*list) *list = json_array();
        if (ev && *list && json_array_size(*list) < PRESENCE_SAMPLE) {
            if (kind == EV_UPDATE && !json_object_get(ev, "info")) json_object_set_new(ev, "info", json_null());
            json_object_set_new(ev, "seq", json_integer((json_int_t)seq));
            json_array_append(*list, ev);
        }
        json_decref(ev);
        (*total)++;
        if (!p->batched) {
            p->batched = 1;
            p->batch_next = batches;
            batches = p;
        }
        return;
    }
    if (!ev) return;
    if (kind == EV_UPDATE && !json_object_get(ev, "info")) json_object_set_new(ev, "info", json_null());
    json_object_set_new(ev, "op", json_string(event_op[kind]));
    json_object_set_new(ev, "channel", json_stringn(c->name, c->namelen));
    json_object_set_new(ev, "seq", json_integer((json_int_t)seq));
    chan_broadcast(c, ev, except);
    json_decref(ev);
}

static void pending_remove(member_t *m)
{
    if (m->pend_prev) m->pend_prev->pend_next = m->pend_next;
    else pending = m->pend_next;
    if (m->pend_next) m->pend_next->pend_prev = m->pend_prev;
    m->pend_prev = m->pend_next = NULL;
    m->leave_at = 0;
}

static void member_free(member_t *m)
{
    json_decref(m->info);
    free(m);
}

int presence_join(struct chan *c, sess_t *s)
{
    const char *key = s->ident.user ? s->ident.user : s->id;
    size_t len = strlen(key);
    struct presence *p = c->pres;
    member_t *m;

    if (!p) {
        if (!(p = calloc(1, sizeof *p))) return -ENOMEM;
        if (hmap_init(&p->members, 16)) { free(p); return -ENOMEM; }
        p->chan = c;
        c->pres = p;
    }
    p->conns++;
    if ((m = hmap_get(&p->members, key, len))) {
        /* Another connection of a present user, or one back within the
         * grace: no event either way. */
        m->conns++;
        if (m->leave_at) pending_remove(m);
        if (cluster_routes(c)) cluster_presence_conn(c, key, len, m->anon, m->info, s->id, ENGINE_PRES_ADD, 1);
        return 0;
    }
    if (!(m = calloc(1, sizeof *m + len + 1))) { p->conns--; return -ENOMEM; }
    memcpy(m->key, key, len);
    m->keylen = len;
    m->anon = !s->ident.user;
    m->info = s->ident.info ? json_incref(s->ident.info) : NULL;
    m->chan = c;
    m->conns = 1;
    if (hmap_put(&p->members, m->key, len, m)) { member_free(m); p->conns--; return -ENOMEM; }
    if (cluster_routes(c)) {
        /* The engine announces the join, once for all nodes. */
        cluster_presence_conn(c, key, len, m->anon, m->info, s->id, ENGINE_PRES_ADD, 1);
        return 0;
    }
    announce(c, m, EV_JOIN, s);
    if (chan_events.on_member) chan_events.on_member(c, m->key, m->keylen, 1);
    return 0;
}

/* Removes @m and announces the leave to everyone but @except (the leaving
 * connection itself, when it is still subscribed). */
static void drop_member(struct chan *c, member_t *m, const sess_t *except)
{
    hmap_del(&c->pres->members, m->key, m->keylen);
    if (cluster_routes(c))
        cluster_presence_conn(c, m->key, m->keylen, m->anon, m->info, except ? except->id : "", ENGINE_PRES_DROP, 0);
    else
        announce(c, m, EV_LEAVE, except);
    if (chan_events.on_member) chan_events.on_member(c, m->key, m->keylen, 0);
    member_free(m);
}

void presence_leave(struct chan *c, sess_t *s)
{
    const char *key = s->ident.user ? s->ident.user : s->id;
    member_t *m = hmap_get(&c->pres->members, key, strlen(key));

    if (!m || !m->conns) return;
    c->pres->conns--;
    m->conns--;
    /* The engine counts this node's connections; the member itself goes
     * with drop_member(), now or after the grace. */
    if (cluster_routes(c) && (m->conns || c->ns->presence_grace_ms))
        cluster_presence_conn(c, key, strlen(key), m->anon, m->info, s->id, ENGINE_PRES_ADD, -1);
    if (m->conns) return;
    if (!c->ns->presence_grace_ms) {
        drop_member(c, m, s);
        return;
    }
    m->leave_at = uv_now(&srv.loop) + c->ns->presence_grace_ms;
    m->pend_next = pending;
    m->pend_prev = NULL;
    if (pending) pending->pend_prev = m;
    pending = m;
}

void presence_free(struct chan *c)
{
    struct presence *p = c->pres;
    size_t pos = 0;
    member_t *m;

    if (!p) return;
    while ((m = hmap_next(&p->members, &pos))) {
        if (m->leave_at) pending_remove(m);
        member_free(m);
    }
    hmap_deinit(&p->members);
    if (p->batched)
        for (struct presence **pp = &batches; *pp; pp = &(*pp)->batch_next)
            if (*pp == p) { *pp = p->batch_next; break; }
    json_decref(p->joins);
    json_decref(p->leaves);
    json_decref(p->updates);
    free(p);
    c->pres = NULL;
}

void presence_tick(void)
{
    static uint64_t last_batch;
    uint64_t now = uv_now(&srv.loop);
    member_t *m = pending;

    while (m) {
        member_t *next = m->pend_next;
        if (m->leave_at <= now) {
            struct chan *c = m->chan;
            pending_remove(m);
            drop_member(c, m, NULL);
            chan_maybe_drop(c);
        }
        m = next;
    }
    /* Leaves are due every tick; batches go out once a second. */
    if (now - last_batch < 1000) return;
    last_batch = now;
    while (batches) {
        struct presence *p = batches;
        struct chan *c = p->chan;
        json_t *ev;

        batches = p->batch_next;
        p->batched = 0;
        ev = json_pack("{s:s,s:s%,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I}", "op", "presence_batch", "channel", c->name,
                       (size_t)c->namelen, "joins", p->joins ? p->joins : json_array(),
                       "leaves", p->leaves ? p->leaves : json_array(),
                       "updates", p->updates ? p->updates : json_array(), "joins_total", (json_int_t)p->njoins,
                       "leaves_total", (json_int_t)p->nleaves, "updates_total", (json_int_t)p->nupdates,
                       "count", (json_int_t)(cluster_routes(c) ? p->cluster_count : p->members.count),
                       "seq", (json_int_t)p->seq);
        p->joins = p->leaves = p->updates = NULL;
        p->njoins = p->nleaves = p->nupdates = 0;
        if (ev) chan_broadcast(c, ev, NULL);
        json_decref(ev);
    }
}

json_t *presence_json(const struct chan *c)
{
    json_t *list = json_array(), *o;
    size_t pos = 0, n = 0;
    int tier;
    member_t *m;

    if (!c->pres) return json_pack("{s:o,s:i,s:i,s:i}", "members", list, "count", 0, "connections", 0, "seq", 0);
    tier = tiered(c);
    while ((m = hmap_next(&c->pres->members, &pos)) && (!tier || n < PRESENCE_SAMPLE)) {
        json_array_append_new(list, member_json(m, 1));
        n++;
    }
    o = json_pack("{s:o,s:I,s:I,s:I}", "members", list, "count", (json_int_t)c->pres->members.count,
                  "connections", (json_int_t)c->pres->conns, "seq", (json_int_t)c->pres->seq);
    if (o && tier) json_object_set_new(o, "tiered", json_true());
    return o;
}

int presence_set_info(struct chan *c, sess_t *s, json_t *info, uint64_t *seq)
{
    const char *key = s->ident.user ? s->ident.user : s->id;
    member_t *m = c->pres ? hmap_get(&c->pres->members, key, strlen(key)) : NULL;

    if (!m || !m->conns) {
        json_decref(info);
        return PROTO_E_NOT_SUBSCRIBED;
    }
    json_decref(m->info);
    m->info = info;
    if (!cluster_routes(c)) announce(c, m, EV_UPDATE, s); /* else the engine does (cluster_presence_info()) */
    *seq = c->pres->seq;
    return 0;
}

json_t *presence_stats_json(const struct chan *c)
{
    return json_pack("{s:I,s:I}", "members", (json_int_t)presence_count(c),
                     "connections", (json_int_t)(c->pres ? c->pres->conns : 0));
}

void presence_resync(struct chan *c)
{
    size_t pos = 0;
    member_t *m;

    if (!c->pres) return;
    while ((m = hmap_next(&c->pres->members, &pos)))
        cluster_presence_conn(c, m->key, m->keylen, m->anon, m->info, "", ENGINE_PRES_SET, m->conns);
}

void presence_remote_event(struct chan *c, int kind, uint64_t seq, uint64_t count, json_t *member,
                           const struct sess *except)
{
    if (!c->pres) return;
    if (seq > c->pres->seq) {
        c->pres->seq = seq;
        c->pres->cluster_count = count;
    }
    if (!c->ns->join_leave) return;
    announce_json(c, json_incref(member), (enum pres_event)kind, seq, count > c->ns->presence_tier, except);
}
