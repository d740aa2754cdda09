/* broker/app/seats.c - see seats.h.
 *
 * DESIGN: every seat request becomes one custom state operation, so it takes
 * the same road as any state change: queued to the storage thread, applied
 * all or none in the channel's write transaction, its delta published with
 * an offset, and only then answered. This file checks everything that does
 * not need the stored map (ids, ttl, who may ask), so what reaches the
 * transaction can only fail on the seats' current state. A booking's ticket
 * (user:{holder} and the organiser's feed) and the seat.* webhook events are
 * written by the operation in that transaction (storage/seatmap.c), and so
 * are the waitlist's offer and expiry messages to user:{id}. Under the
 * redis engine the same operation reaches core/cluster_seats.c instead
 * (pubpipe_state() routes it), which runs the same rules as one script in
 * Redis, and hold expiry is the engine's sweep, asked from seats_tick(). */
#include "app/seats.h"
#include "app/fields.h"
#include "auth/auth.h"
#include "core/channel.h"
#include "core/cluster.h"
#include "core/cluster_seats.h"
#include "core/pubpipe.h"
#include "chname.h"
#include "herald.h"
#include "hmap.h"
#include "seatmap.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request on its way through the store; owned by its pub_ops_t. */
typedef struct seat_job {
    seat_req_t req;
    char user[AUTH_USER_MAX + 1];
    char section[SEAT_ID_MAX + 1];
    const char *action;           /* the name the requester used */
    int ws;                       /* asked over the user's own WebSocket session */
    char feed[300];               /* the organiser's feed channel ([adapter seats] feed), or "" */
    const char *hooks_booked[WEBHOOK_MAX];  /* webhooks of seat.booked / seat.expired (names in srv.cfg) */
    const char *hooks_expired[WEBHOOK_MAX];
} seat_job_t;

/* A user known to hold seats over WebSocket, or connected. */
struct seat_user {
    char *name;
    unsigned nconn;
    json_t *holds;                /* {channel: {seat: true}}: seats held over WebSocket in namespaces that
                                     release on disconnect */
    uint64_t release_at;          /* loop ms when the holds go, once the last connection closed; 0: not due */
    struct seat_user *rel_prev, *rel_next; /* on the release list while release_at is set */
};

static hmap_t users;
static int users_ready;
static int any_release;           /* some namespace has seat_release_on_disconnect */
static uint64_t release_grace_ms; /* the seats namespace's seat_release_grace */
/* Users whose last connection closed, oldest first: one grace for every
 * seat map, so the list is in order of release_at. */
static struct seat_user *rel_head, *rel_tail;

static const struct { const char *name; enum seat_action action; } actions[] = {
    { "define", SEAT_DEFINE }, { "add", SEAT_ADD }, { "hold", SEAT_HOLD }, { "confirm", SEAT_CONFIRM },
    { "release", SEAT_RELEASE }, { "waitlist", SEAT_WAIT }, { "waitlist_leave", SEAT_UNWAIT },
    { "waitlist_position", SEAT_POSITION },
};

static int json_id_ok(const json_t *v)
{
    return json_is_string(v) && field_id_ok(json_string_value(v), json_string_length(v), SEAT_ID_MAX);
}

int seats_channel(const char *event, size_t elen, char *out, size_t len)
{
    int n;
    if (!field_id_ok(event, elen, SEAT_ID_MAX)) return -1;
    n = snprintf(out, len, SEATS_NS ":%.*s", (int)elen, event);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int seats_is_map(const char *name, size_t len)
{
    return len > sizeof SEATS_NS && !memcmp(name, SEATS_NS ":", sizeof SEATS_NS);
}

/* "seats": 1-100 distinct seat ids. */
static int check_ids(const json_t *seats, char *reason)
{
    size_t i, j;
    json_t *v;

    if (!json_is_array(seats) || json_array_size(seats) == 0 || json_array_size(seats) > SEAT_REQ_MAX) {
        snprintf(reason, PROTO_REASON_MAX, "field \"seats\" must be a list of 1 to %d seat ids", SEAT_REQ_MAX);
        return PROTO_E_BAD_FIELD;
    }
    json_array_foreach(seats, i, v) {
        if (!json_id_ok(v)) {
            snprintf(reason, PROTO_REASON_MAX, "seats[%zu]: a seat id is 1-64 letters, digits, '_', '-' or '.'", i);
            return PROTO_E_BAD_FIELD;
        }
        for (j = 0; j < i; j++)
            if (json_equal(v, json_array_get(seats, j))) {
                snprintf(reason, PROTO_REASON_MAX, "seats[%zu]: seat \"%s\" is listed twice", i, json_string_value(v));
                return PROTO_E_BAD_FIELD;
            }
    }
    return 0;
}

/* "seats" of a map definition: up to SEAT_MAP_MAX {"id","section","price_class"?}, distinct ids. */
static int check_defs(const json_t *seats, int at_least_one, char *reason)
{
    json_t *seen, *d;
    size_t i;
    int r = 0;

    if (!json_is_array(seats) || json_array_size(seats) > SEAT_MAP_MAX || (at_least_one && !json_array_size(seats))) {
        snprintf(reason, PROTO_REASON_MAX, "field \"seats\" must be a list of %d to %d seats, each "
                 "{\"id\",\"section\",\"price_class\"}", at_least_one, SEAT_MAP_MAX);
        return PROTO_E_BAD_FIELD;
    }
    if (!(seen = json_object())) return field_oom(reason);
    json_array_foreach(seats, i, d) {
        json_t *pc = json_object_get(d, "price_class");
        if (!json_is_object(d) || !json_id_ok(json_object_get(d, "id")) || !json_id_ok(json_object_get(d, "section"))) {
            snprintf(reason, PROTO_REASON_MAX, "seats[%zu]: needs \"id\" and \"section\", each 1-64 letters, "
                     "digits, '_', '-' or '.'", i);
            r = PROTO_E_BAD_FIELD;
            break;
        }
        if (pc && (!json_is_string(pc) || json_string_length(pc) > 64)) {
            snprintf(reason, PROTO_REASON_MAX, "seats[%zu]: \"price_class\" must be a string of at most 64 bytes", i);
            r = PROTO_E_BAD_FIELD;
            break;
        }
        if (json_object_get(seen, json_string_value(json_object_get(d, "id")))) {
            snprintf(reason, PROTO_REASON_MAX, "seats[%zu]: seat \"%s\" is listed twice", i,
                     json_string_value(json_object_get(d, "id")));
            r = PROTO_E_BAD_FIELD;
            break;
        }
        json_object_set_new(seen, json_string_value(json_object_get(d, "id")), json_true());
    }
    json_decref(seen);
    return r;
}

static void job_free(void *p)
{
    seat_job_t *j = p;
    if (!j) return;
    json_decref(j->req.seats);
    free(j);
}

/* ---- who holds what, for release on disconnect ---- */

static struct seat_user *user_get(const char *name, int create)
{
    struct seat_user *u;

    if (!users_ready) {
        if (!create || hmap_init(&users, 64)) return NULL;
        users_ready = 1;
    }
    if ((u = hmap_get(&users, name, strlen(name))) || !create) return u;
    if (!(u = calloc(1, sizeof *u)) || !(u->name = strdup(name)) || !(u->holds = json_object()) ||
        hmap_put(&users, u->name, strlen(u->name), u)) {
        if (u) {
            free(u->name);
            json_decref(u->holds);
        }
        free(u);
        return NULL;
    }
    return u;
}

static void release_unlink(struct seat_user *u)
{
    if (!u->release_at) return;
    if (u->rel_prev) u->rel_prev->rel_next = u->rel_next;
    else rel_head = u->rel_next;
    if (u->rel_next) u->rel_next->rel_prev = u->rel_prev;
    else rel_tail = u->rel_prev;
    u->rel_prev = u->rel_next = NULL;
    u->release_at = 0;
}

/* Puts @u, whose last connection closed, at the end of the release list. */
static void release_later(struct seat_user *u)
{
    u->release_at = uv_now(&srv.loop) + release_grace_ms;
    if (!u->release_at) u->release_at = 1;
    u->rel_prev = rel_tail;
    u->rel_next = NULL;
    if (rel_tail) rel_tail->rel_next = u;
    else rel_head = u;
    rel_tail = u;
}

static void user_drop(struct seat_user *u)
{
    release_unlink(u);
    hmap_del(&users, u->name, strlen(u->name));
    json_decref(u->holds);
    free(u->name);
    free(u);
}

/* Records that @user now holds (@add) or no longer holds @seats on @c. */
static void track(chan_t *c, const char *user, const json_t *seats, int add)
{
    struct seat_user *u;
    json_t *held, *id;
    size_t i;

    if (!user || !c->ns->seat_release_on_disconnect || !(u = user_get(user, add))) return;
    held = json_object_getn(u->holds, c->name, c->namelen);
    if (add && !held) {
        held = json_object();
        json_object_setn_new(u->holds, c->name, c->namelen, held);
    }
    json_array_foreach(seats, i, id) {
        if (add) json_object_set_new(held, json_string_value(id), json_true());
        else if (held) json_object_del(held, json_string_value(id));
    }
    if (held && !json_object_size(held)) json_object_deln(u->holds, c->name, c->namelen);
    if (!u->nconn && !json_object_size(u->holds)) user_drop(u);
    else if (add && !u->nconn && !u->release_at) release_later(u);   /* the session closed meanwhile */
}

/* ---- requests ---- */

/* The outcome is known (pub_ops_t.done): keep track of holds (the offers
 * and expiries were told to their users in the transaction), and shape the
 * report into the answer. */
static void job_done(chan_t *c, pub_ops_t *ops, int code, json_t *result)
{
    seat_job_t *j = ops->custom;
    json_t *list, *o;
    size_t i;

    if ((unsigned)j->req.action < sizeof metrics.seat_requests / sizeof metrics.seat_requests[0])
        metrics.seat_requests[j->req.action][code == 0 ? 0 : code == PROTO_E_STORAGE || code == PROTO_E_INTERNAL ? 2 : 1]++;
    if (code || !result) return;
    if (json_is_true(json_object_get(result, "elsewhere"))) {
        /* Redis engine: the user is connected to another node, so their
         * holds wait; asked again after another grace (docs/cluster.md). */
        json_object_del(result, "elsewhere");
        track(c, j->user, j->req.seats, 1);
        return;
    }
    list = json_object_get(result, "expired");
    json_array_foreach(list, i, o) {
        json_t *one = json_pack("[O]", json_object_get(o, "seat"));
        if (one) track(c, json_string_value(json_object_get(o, "user")), one, 0);
        json_decref(one);
    }
    json_object_del(result, "expired");
    /* An offer is the broker's, not made over the user's sessions: a
     * disconnect does not release it; seat_offer_ttl ends it. */
    list = json_object_get(result, "offers");
    json_array_foreach(list, i, o) {
        json_t *one = json_pack("[O]", json_object_get(o, "seat"));
        if (one) track(c, json_string_value(json_object_get(o, "user")), one, 0);
        json_decref(one);
    }
    json_object_del(result, "offers");
    switch (j->req.action) {
    /* Only a hold made over the user's own WebSocket goes with their
     * connection; a backend's hold for them (or re-hold, during payment,
     * say) stays until it is confirmed, released or expires. */
    case SEAT_HOLD: track(c, j->user, j->req.seats, j->ws); break;
    case SEAT_CONFIRM:
    case SEAT_RELEASE: track(c, j->user, json_object_get(result, "seats"), 0); break;
    default: break;
    }
    if (j->action) json_object_set_new(result, "action", json_string(j->action));
}

/* Writes the organiser's feed channel of seat map @name ([adapter seats]
 * feed, "{event}" replaced) into @out; "" when there is none. */
static void feed_channel(const char *name, char *out, size_t len)
{
    const char *tpl = srv.cfg.seats_feed, *at = strstr(tpl, "{event}"), *event = strchr(name, ':');
    int n;

    event = event ? event + 1 : name;
    n = at ? snprintf(out, len, "%.*s%s%s", (int)(at - tpl), tpl, event, at + 7) : snprintf(out, len, "%s", tpl);
    if (n < 0 || (size_t)n >= len || (n && !chname_valid(out, (size_t)n, NULL))) *out = '\0';
}

/* Queues @j on seat map @name for @origin. Return: 0, or a PROTO_E_* code. */
static int submit(const char *name, seat_job_t *j, origin_t *origin, char *reason)
{
    pub_custom_t pc = { .apply = seatmap_apply, .arg = &j->req, .custom = j, .custom_free = job_free,
                        .done = job_done, .reply_op = "seats",
                        .need_state = "seat maps need [namespace " SEATS_NS "] state = on in the configuration" };

    /* The storage thread reads these: the configuration outlives every request. */
    feed_channel(name, j->feed, sizeof j->feed);
    j->req.feed = *j->feed ? j->feed : NULL;
    if (srv.cfg.nwebhooks) {
        j->req.nhooks_booked = config_webhooks_for(&srv.cfg, WH_EV_SEAT_BOOKED, "", 0, j->hooks_booked);
        j->req.nhooks_expired = config_webhooks_for(&srv.cfg, WH_EV_SEAT_EXPIRED, "", 0, j->hooks_expired);
        j->req.hooks_booked = j->hooks_booked;
        j->req.hooks_expired = j->hooks_expired;
    }
    return pubpipe_custom(name, &pc, origin, reason);
}

int seats_request(const char *chan, const char *action, const json_t *body, const char *user, int backend,
                  origin_t *origin, char *reason)
{
    const ns_config_t *ns = config_ns(&srv.cfg, chan, strlen(chan));
    seat_job_t *j;
    size_t i;
    int r = PROTO_E_BAD_FIELD;

    for (i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (!strcmp(action, actions[i].name)) break;
    if (i == sizeof actions / sizeof actions[0]) {
        field_bad(reason, "\"action\" must be hold, confirm, release, waitlist, waitlist_leave or waitlist_position");
        goto fail;
    }
    if (!(j = calloc(1, sizeof *j))) { r = field_oom(reason); goto fail; }
    j->action = actions[i].name;
    j->req.action = actions[i].action;
    j->req.offer_ttl_ms = ns->seat_offer_ttl_ms;
    j->req.waitlist_max = ns->waitlist_max;
    j->req.cancel = backend;
    j->ws = !backend && user != NULL;
    if (!json_is_object(body)) { field_bad(reason, "the body must be a JSON object"); goto fail_job; }
    if (j->req.action != SEAT_DEFINE && j->req.action != SEAT_ADD) {
        const json_t *u = user ? NULL : json_object_get(body, "user");
        const char *name = user ? user : json_string_value(u);
        size_t len = user ? strlen(user) : json_string_length(u);
        if (!name || !auth_user_valid(name, len)) {
            field_bad(reason, "field \"user\" must be the id of the user acted for, as in a token's \"sub\": "
                "1-128 bytes without ',' or '#'");
            goto fail_job;
        }
        memcpy(j->user, name, len + 1);
        j->req.user = j->user;
    }
    switch (j->req.action) {
    case SEAT_DEFINE:
    case SEAT_ADD:
        if ((r = check_defs(json_object_get(body, "seats"), j->req.action == SEAT_ADD, reason))) goto fail_job;
        break;
    case SEAT_HOLD: {
        json_t *ttl = json_object_get(body, "ttl");
        if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
            json_integer_value(ttl) > (json_int_t)(ns->seat_hold_max_ms / 1000)) {
            snprintf(reason, PROTO_REASON_MAX, "field \"ttl\" must be whole seconds from 1 to %u (seat_hold_max)",
                     ns->seat_hold_max_ms / 1000);
            r = PROTO_E_BAD_FIELD;
            goto fail_job;
        }
        j->req.ttl_ms = (int64_t)json_integer_value(ttl) * 1000;
    }
        /* fall through */
    case SEAT_CONFIRM:
    case SEAT_RELEASE:
        if ((r = check_ids(json_object_get(body, "seats"), reason))) goto fail_job;
        break;
    case SEAT_WAIT:
    case SEAT_UNWAIT:
    case SEAT_POSITION: {
        const json_t *s = json_object_get(body, "section");
        if (!json_id_ok(s)) {
            r = field_bad(reason, "field \"section\" must be a section name: 1-64 letters, digits, '_', '-' or '.'");
            goto fail_job;
        }
        memcpy(j->section, json_string_value(s), json_string_length(s) + 1);
        j->req.section = j->section;
        break;
    }
    default:
        break;
    }
    /* A copy of its own: the storage thread reads it while the loop frees the request. */
    if (json_object_get(body, "seats") && j->req.action != SEAT_WAIT && j->req.action != SEAT_UNWAIT &&
        j->req.action != SEAT_POSITION && !(j->req.seats = json_deep_copy(json_object_get(body, "seats")))) {
        r = field_oom(reason);
        goto fail_job;
    }
    return submit(chan, j, origin, reason);
fail_job:
    job_free(j);
fail:
    origin_clear(origin);
    return r;
}

/* ---- section subscriptions ---- */

int seats_filter(const char *name, size_t len, const json_t *filter, char *arg, char *reason)
{
    const json_t *sec = json_object_get(filter, "section");

    if (!seats_is_map(name, len)) {
        snprintf(reason, PROTO_REASON_MAX, "\"filter\" is for seat maps (seats:{event}): {\"section\": <name>}");
        return PROTO_E_BAD_FIELD;
    }
    if (!json_is_object(filter) || json_object_size(filter) != 1 || !json_id_ok(sec)) {
        snprintf(reason, PROTO_REASON_MAX, "field \"filter\" must be {\"section\": <name>}: a section name of "
                 "1-64 letters, digits, '_', '-' or '.'");
        return PROTO_E_BAD_FIELD;
    }
    memcpy(arg, json_string_value(sec), json_string_length(sec) + 1);
    return 0;
}

int seats_match_section(const char *arg, const char *key, size_t klen, const json_t *value)
{
    static const char sk[] = "section:", seat[] = "seat:";
    size_t alen = strlen(arg);
    const char *in;

    if (klen == sizeof sk - 1 + alen && !memcmp(key, sk, sizeof sk - 1) && !memcmp(key + sizeof sk - 1, arg, alen))
        return 1;
    if (klen <= sizeof seat - 1 || memcmp(key, seat, sizeof seat - 1)) return 0;
    /* A removed seat has no value to tell its section: every view gets it.
     * A seat that changes section is removed first (storage/seatmap.c), so
     * the view it leaves drops it. */
    if (!value) return 1;
    in = json_string_value(json_object_get(value, "section"));
    return in && !strcmp(in, arg);
}

/* ---- expiry ---- */

/* A hold's timer is due (pubpipe_timers()): queue its expiry, which frees
 * the seat only if that hold is still the seat's. */
static void on_due(int64_t at_ms, const char *chan, size_t chanlen, const char *key, size_t klen)
{
    char name[256], reason[PROTO_REASON_MAX];
    origin_t none = { ORIGIN_NONE, 0, NULL };
    seat_job_t *j;

    if (chanlen >= sizeof name || klen <= 5 || memcmp(key, "seat:", 5) || !field_id_ok(key + 5, klen - 5, SEAT_ID_MAX))
        return;
    memcpy(name, chan, chanlen);
    name[chanlen] = '\0';
    if (!(j = calloc(1, sizeof *j)) || !(j->req.seats = json_pack("[s%]", key + 5, klen - 5))) {
        job_free(j);
        return;
    }
    j->req.action = SEAT_EXPIRE;
    j->req.at_ms = at_ms;
    j->req.offer_ttl_ms = config_ns(&srv.cfg, name, chanlen)->seat_offer_ttl_ms;
    if (submit(name, j, &none, reason)) hlog(LOG_WARN, "seats", "cannot expire a hold on %s: %s", name, reason);
}

void seats_init(void)
{
    any_release = srv.cfg.ns_template.seat_release_on_disconnect;
    for (size_t i = 0; i < srv.cfg.nns; i++) any_release |= srv.cfg.ns[i].seat_release_on_disconnect;
    /* Every seat map is in the one namespace "seats", so one grace serves all. */
    release_grace_ms = config_ns(&srv.cfg, SEATS_NS ":x", sizeof SEATS_NS + 1)->seat_release_grace_ms;
    pubpipe_timers(on_due);
}

/* ---- connections ---- */

void seats_user_connected(const char *user)
{
    struct seat_user *u;

    /* Connections are counted only where a disconnect can release holds. */
    if (!any_release) return;
    if (cluster_on()) cluster_seats_conn(user, 1);
    if (!(u = user_get(user, 1))) return;
    u->nconn++;
    release_unlink(u);                         /* back within the grace: the holds stay */
}

/* Releases every seat @u holds over WebSocket, and forgets @u. */
static void release_all(struct seat_user *u)
{
    const char *chan;
    json_t *held;

    /* A shutdown is not a user leaving: their holds wait for them (or expire). */
    if (!srv.stopping) {
        json_object_foreach(u->holds, chan, held) {
            char reason[PROTO_REASON_MAX];
            origin_t none = { ORIGIN_NONE, 0, NULL };
            seat_job_t *j = calloc(1, sizeof *j);
            const char *id;
            json_t *v;
            if (!j || !(j->req.seats = json_array())) { job_free(j); break; }
            json_object_foreach(held, id, v) json_array_append_new(j->req.seats, json_string(id));
            j->req.action = SEAT_RELEASE;
            j->req.lenient = 1;
            j->req.offer_ttl_ms = config_ns(&srv.cfg, chan, strlen(chan))->seat_offer_ttl_ms;
            snprintf(j->user, sizeof j->user, "%s", u->name);
            j->req.user = j->user;
            if (submit(chan, j, &none, reason))
                hlog(LOG_WARN, "seats", "cannot release %s's holds on %s: %s", u->name, chan, reason);
        }
    }
    user_drop(u);
}

void seats_user_disconnected(const char *user)
{
    struct seat_user *u = user_get(user, 0);

    if (any_release && cluster_on()) cluster_seats_conn(user, -1);
    if (!u || (u->nconn && --u->nconn)) return;
    if (!json_object_size(u->holds) || !release_grace_ms || srv.stopping) {
        release_all(u);
        return;
    }
    /* A page reload or a network blip is not a user leaving: wait. */
    release_later(u);
}

void seats_tick(void)
{
    uint64_t now = uv_now(&srv.loop);

    while (rel_head && rel_head->release_at <= now) release_all(rel_head);
    /* Under the redis engine, holds expire through the engine's sweep. */
    if (cluster_on()) cluster_seats_tick();
}

void seats_deinit(void)
{
    struct seat_user *u;
    size_t pos = 0;

    if (!users_ready) return;
    rel_head = rel_tail = NULL;
    while ((u = hmap_next(&users, &pos))) {
        json_decref(u->holds);
        free(u->name);
        free(u);
    }
    hmap_deinit(&users);
    users_ready = 0;
}
