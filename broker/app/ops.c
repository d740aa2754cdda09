/* broker/app/ops.c - see ops.h.
 *
 * DESIGN: each op is a row of one table: its handler, whether it needs a
 * prior connect, how it finds its channel and which permission it needs.
 * ops_handle() runs the prologue every op shares (decode, id, op name,
 * connect, the per-connection rate limit, the channel and the permission)
 * once, so a handler starts with everything checked and only does its own
 * job; a channel the prologue opened is dropped again afterwards if nothing
 * came to hold it. */
#include "app/ops.h"
#include "app/history.h"
#include "app/seats.h"
#include "app/commerce.h"
#include "app/tickets.h"
#include "app/state.h"
#include "core/channel.h"
#include "core/presence.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "core/cluster_signal.h"
#include "core/publish.h"
#include "core/pubpipe.h"
#include "auth/auth.h"
#include "auth/ratelimit.h"
#include "herald.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How an op finds its channel: not at all, by name only (the handler
 * validates more before it opens one), an existing one (NULL if none), or
 * opened (created if missing). */
enum op_chan { CH_NONE = 0, CH_NAME, CH_FIND, CH_OPEN };
/* What an opened channel must allow the connection: nothing more, reading
 * (the subscribe rules), or publishing over WebSocket. */
enum op_perm { PERM_NONE = 0, PERM_READ, PERM_PUBLISH };

/* One request on its way through its handler. */
typedef struct op_req {
    sess_t *s;
    const json_t *msg;
    const json_t *id;
    const char *name;             /* the "channel" field, with CH_NAME and up */
    size_t len;
    chan_t *c;                    /* with CH_FIND (may be NULL) and CH_OPEN */
    sub_t *sub;                   /* @s's subscription to @c, or NULL */
    char reason[PROTO_REASON_MAX];
} op_req_t;

struct op_def {
    enum proto_op op;
    void (*handler)(op_req_t *q);
    uint8_t needs_connect;
    uint8_t chan;                 /* enum op_chan */
    uint8_t perm;                 /* enum op_perm, with CH_OPEN */
};

static void fail(op_req_t *q, int code, const char *reason)
{
    sess_send_error(q->s, q->id, code, reason);
}

/* A failed authentication: tell the client, count it against its address,
 * and close the connection once the error is out. */
static void refuse(sess_t *s, const json_t *id, int code, const char *reason)
{
    srv.stats.auth_failures++;
    rl_auth_failed(s->peer);
    sess_send_error(s, id, code, reason);
    sess_close(s, CLOSE_UNAUTHORIZED, 1);
}

static void op_connect(op_req_t *q)
{
    sess_t *s = q->s;
    const json_t *msg = q->msg, *id = q->id;
    char *reason = q->reason;
    const char *token = NULL;
    size_t toklen = 0;
    json_t *m;
    int r;

    if (s->connected) {
        sess_send_error(s, id, PROTO_E_ALREADY_CONNECTED, "this connection already sent connect");
        return;
    }
    if ((r = msg_get_str(msg, "token", &token, &toklen, reason)) > 1) { sess_send_error(s, id, r, reason); return; }
    if (r == 1 && s->url_token) {
        token = s->url_token;
        toklen = strlen(token);
    }
    {
        const char *key;
        if ((r = msg_get_str(msg, "apikey", &key, NULL, reason)) > 1) { sess_send_error(s, id, r, reason); return; }
        if (r == 0) {
            /* Operator tools (the admin page) connect with an API key. */
            if ((r = auth_apikey_ident(key, &s->ident, reason))) { refuse(s, id, r, reason); return; }
            token = NULL;
        }
    }
    if (s->ident.user) {
        /* identified by an API key above */
    } else if (token) {
        if ((r = auth_token(token, toklen, &s->ident, reason))) { refuse(s, id, r, reason); return; }
    } else if (!srv.cfg.anonymous) {
        refuse(s, id, PROTO_E_UNAUTHORIZED, "a token is required (auth.anonymous is off)");
        return;
    }
    free(s->url_token);
    s->url_token = NULL;
    s->connected = 1;
    if (s->ident.user) seats_user_connected(s->ident.user);
    m = msg_reply("connected", id);
    if (m) {
        json_object_set_new(m, "client", json_string(s->id));
        if (s->ident.user) json_object_set_new(m, "user", json_string(s->ident.user));
        if (s->ident.exp) json_object_set_new(m, "expires", json_integer(s->ident.exp));
        json_object_set_new(m, "version", json_string(HERALD_VERSION));
        json_object_set_new(m, "ping_interval", json_integer(srv.cfg.ping_interval_ms / 1000));
    }
    sess_send(s, m);
}

/* refresh {token}: a new token for the same user, without reconnecting. */
static void op_refresh(op_req_t *q)
{
    sess_t *s = q->s;
    const json_t *msg = q->msg, *id = q->id;
    char *reason = q->reason;
    const char *token;
    size_t toklen;
    ident_t fresh = { 0 };
    json_t *m;
    int r;

    if ((r = msg_get_str(msg, "token", &token, &toklen, reason))) {
        sess_send_error(s, id, PROTO_E_BAD_FIELD, r == 1 ? "field \"token\" is required" : reason);
        return;
    }
    if ((r = auth_token(token, toklen, &fresh, reason))) {
        srv.stats.auth_failures++;
        rl_auth_failed(s->peer);
        sess_send_error(s, id, r, reason);
        return;
    }
    if (!s->ident.user || strcmp(fresh.user, s->ident.user)) {
        ident_clear(&fresh);
        srv.stats.auth_failures++;
        sess_send_error(s, id, PROTO_E_FORBIDDEN, "the new token is for another user");
        return;
    }
    ident_clear(&s->ident);
    s->ident = fresh;
    s->refresh_sent = 0;
    m = msg_reply("refreshed", id);
    if (m && s->ident.exp) json_object_set_new(m, "expires", json_integer(s->ident.exp));
    sess_send(s, m);
}

/* The sender of a WebSocket publication, set by the server, never by the client. */
static json_t *sender(sess_t *s)
{
    json_t *f = json_object();
    if (!f) return NULL;
    if (s->ident.user) json_object_set_new(f, "user", json_string(s->ident.user));
    json_object_set_new(f, "client", json_string(s->id));
    if (s->ident.info) json_object_set(f, "info", s->ident.info);
    return f;
}

/* Reads "since": {"epoch": "...", "offset": N}. Return: 0 or PROTO_E_BAD_FIELD. */
static int get_since(const json_t *msg, struct history_since *out, char *reason)
{
    json_t *v = json_object_get(msg, "since"), *e, *o;

    memset(out, 0, sizeof *out);
    if (!v) return 0;
    e = json_object_get(v, "epoch");
    o = json_object_get(v, "offset");
    if (!json_is_object(v) || !json_is_string(e) || !json_is_integer(o) || json_integer_value(o) < 0 ||
        json_string_length(e) != HIST_EPOCH_LEN) {
        snprintf(reason, PROTO_REASON_MAX,
                 "field \"since\" must be {\"epoch\": <epoch string from a reply>, \"offset\": <integer >= 0>}");
        return PROTO_E_BAD_FIELD;
    }
    out->set = 1;
    memcpy(out->epoch, json_string_value(e), HIST_EPOCH_LEN + 1);
    out->offset = (uint64_t)json_integer_value(o);
    return 0;
}

static void op_subscribe(op_req_t *q)
{
    sess_t *s = q->s;
    const json_t *msg = q->msg, *id = q->id;
    char *reason = q->reason;
    struct history_since since;
    int64_t n = 0;
    const char *token;
    size_t toklen = 0;
    int granted = 0, want_presence = 0;
    const json_t *filter = json_object_get(msg, "filter");
    char section[CHAN_FILTER_ARG_MAX + 1];
    chan_t *c;
    int r;

    if (filter && (r = seats_filter(q->name, q->len, filter, section, reason))) { fail(q, r, reason); return; }
    if ((r = msg_get_int(msg, "history", &n, reason)) > 1 || n < 0 || n > HISTORY_LIMIT_MAX) {
        fail(q, PROTO_E_BAD_FIELD, "field \"history\" must be an integer from 0 to 1000");
        return;
    }
    if ((r = get_since(msg, &since, reason))) { fail(q, r, reason); return; }
    if ((r = msg_get_bool(msg, "presence", &want_presence, reason)) > 1) { fail(q, r, reason); return; }
    if ((r = msg_get_str(msg, "token", &token, &toklen, reason)) > 1) { fail(q, r, reason); return; }
    if (r == 1) token = NULL;
    r = chan_open(q->name, q->len, &c);
    if (r == 0 && (r = auth_may_subscribe(&s->ident, c->name, c->namelen, c->ns, token, toklen, &granted, reason))) {
        if (token) rl_auth_failed(s->peer);
        srv.stats.permission_denied++;
        chan_maybe_drop(c);
        fail(q, r, reason);
        return;
    }
    if (r == 0 && filter && !c->ns->state) {
        chan_maybe_drop(c);
        fail(q, PROTO_E_DISABLED, "seat maps need [namespace " SEATS_NS "] state = on in the configuration");
        return;
    }
    if (r == 0) r = chan_subscribe(s, c);
    if (r == 0 && granted) chan_sub(s, c)->granted = 1;
    if (r == 0 && filter && chan_sub_filter(chan_sub(s, c), seats_match_section, section)) {
        chan_unsubscribe(s, c);
        fail(q, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    switch (r) {
    case 0: break;
    case PROTO_E_ALREADY_SUBSCRIBED:
        fail(q, r, "already subscribed to this channel");
        return;
    case PROTO_E_LIMIT:
        snprintf(reason, PROTO_REASON_MAX, "limit reached: %u subscriptions per connection, %u channels",
                 srv.cfg.max_subscriptions, srv.cfg.max_channels);
        fail(q, r, reason);
        return;
    default:
        fail(q, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    r = c->ns->state ? state_subscribed(s, c, id, &since, want_presence)
                     : history_subscribed(s, c, id, (unsigned)n, &since, want_presence);
    if (r) {
        chan_unsubscribe(s, c);
        if (r == PROTO_E_ENGINE_UNAVAILABLE) fail(q, r, "the redis engine is unavailable (see /api/health/ready)");
        else fail(q, PROTO_E_INTERNAL, "out of memory");
    }
}

static void op_unsubscribe(op_req_t *q)
{
    json_t *m;

    if (!q->c || chan_unsubscribe(q->s, q->c)) {
        fail(q, PROTO_E_NOT_SUBSCRIBED, "not subscribed to this channel");
        return;
    }
    q->c = NULL;                               /* it may be gone now */
    m = msg_reply("unsubscribed", q->id);
    if (m) json_object_set_new(m, "channel", json_stringn(q->name, q->len));
    sess_send(q->s, m);
}

static void op_publish(op_req_t *q)
{
    origin_t origin = { ORIGIN_WS, q->s->serial, NULL };
    json_t *data = json_object_get(q->msg, "data"), *from;
    pub_meta_t meta;
    int r;

    if (!data) { fail(q, PROTO_E_BAD_FIELD, "field \"data\" is required"); return; }
    if ((r = publish_parse_meta(q->msg, &meta, q->reason))) { fail(q, r, q->reason); return; }
    /* An edit or a delete must be of the sender's own publication, unless
     * the sender may moderate; the pipeline checks the original's "from". */
    meta.check_author = publish_is_edit(meta.kind) && !auth_may_moderate(&q->s->ident, q->c->ns);
    origin.id = q->id ? json_incref((json_t *)q->id) : NULL;
    meta.from = from = sender(q->s);
    r = publish(q->name, q->len, data, &meta, &origin, q->reason);
    json_decref(from);
    if (r) fail(q, r, q->reason);
}

/* Reads the paging fields shared by the history op and REST. */
static int get_page(const json_t *msg, struct history_page *p, char *reason)
{
    int64_t since = 0, before = 0, limit = 100, thread = 0;
    int reverse = 0, r;

    if ((r = msg_get_int(msg, "since", &since, reason)) > 1 || since < 0) goto bad;
    if ((r = msg_get_int(msg, "before", &before, reason)) > 1 || before < 0) goto bad;
    if ((r = msg_get_int(msg, "limit", &limit, reason)) > 1 || limit < 1 || limit > HISTORY_LIMIT_MAX) goto bad;
    if ((r = msg_get_bool(msg, "reverse", &reverse, reason)) > 1) goto bad;
    if ((r = msg_get_int(msg, "thread", &thread, reason)) > 1 || thread < 0) goto bad;
    p->thread = (uint64_t)thread;
    p->since = (uint64_t)since;
    p->before = (uint64_t)before;
    p->limit = (unsigned)limit;
    p->reverse = reverse;
    return 0;
bad:
    snprintf(reason, PROTO_REASON_MAX, "\"since\", \"before\" and \"thread\" must be integers >= 0, \"limit\" 1 to %d, "
             "\"reverse\" a boolean", HISTORY_LIMIT_MAX);
    return PROTO_E_BAD_FIELD;
}

static void op_history(op_req_t *q)
{
    struct history_page page;
    origin_t origin = { ORIGIN_WS, q->s->serial, NULL };
    int r;

    if ((r = get_page(q->msg, &page, q->reason))) { fail(q, r, q->reason); return; }
    origin.id = q->id ? json_incref((json_t *)q->id) : NULL;
    r = history_query(q->c, &page, &origin);
    origin_clear(&origin);                     /* still ours if history_query() failed */
    if (r == PROTO_E_NO_HISTORY) fail(q, r, "this channel's namespace keeps no history");
    else if (r == PROTO_E_ENGINE_UNAVAILABLE) fail(q, r, "the redis engine is unavailable (see /api/health/ready)");
    else if (r) fail(q, PROTO_E_INTERNAL, "out of memory");
}

/* presence / presence_stats {channel} */
static void presence_reply(op_req_t *q, int stats)
{
    json_t *m, *p;

    if (!q->c->ns->presence) {
        fail(q, PROTO_E_DISABLED, "this channel's namespace has no presence");
        return;
    }
    if (cluster_routes(q->c)) {
        /* Members of every node: the engine answers. */
        origin_t origin = { ORIGIN_WS, q->s->serial, q->id ? json_incref((json_t *)q->id) : NULL };
        if (cluster_presence_read(q->c->name, q->c->namelen, q->c->ns->presence_tier, stats, &origin))
            fail(q, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    p = stats ? presence_stats_json(q->c) : presence_json(q->c);
    m = msg_reply(stats ? "presence_stats" : "presence", q->id);
    if (m && p) {
        json_object_set_new(m, "channel", json_stringn(q->c->name, q->c->namelen));
        json_object_update(m, p);
    }
    json_decref(p);
    sess_send(q->s, m);
}

static void op_presence(op_req_t *q) { presence_reply(q, 0); }
static void op_presence_stats(op_req_t *q) { presence_reply(q, 1); }

/* signal {channel, data}: an ephemeral event for the channel's other
 * subscribers (typing indicators): not stored, no offset, no reply. */
static void op_signal(op_req_t *q)
{
    sess_t *s = q->s;
    json_t *data = json_object_get(q->msg, "data"), *ev, *from;
    chan_t *c = q->c;

    if (!data) { fail(q, PROTO_E_BAD_FIELD, "field \"data\" is required"); return; }
    if (!c || !q->sub) { fail(q, PROTO_E_NOT_SUBSCRIBED, "signals go to a channel you are subscribed to"); return; }
    if (!c->ns->signals) { fail(q, PROTO_E_DISABLED, "this channel's namespace does not allow signals"); return; }
    if (!bucket_take(&s->sig_bucket, c->ns->signal_rate, c->ns->signal_rate, uv_now(&srv.loop))) {
        srv.stats.rate_limited++;
        snprintf(q->reason, PROTO_REASON_MAX, "more than %u signals per second (namespace signal_rate)",
                 c->ns->signal_rate);
        fail(q, PROTO_E_RATE_LIMITED, q->reason);
        return;
    }
    from = json_object();
    if (from) {
        if (s->ident.user) json_object_set_new(from, "user", json_string(s->ident.user));
        json_object_set_new(from, "client", json_string(s->id));
    }
    if (cluster_routes(c)) {
        /* Every node's subscribers, through the engine (the sender's node too). */
        origin_t origin = { ORIGIN_WS, s->serial, q->id ? json_incref((json_t *)q->id) : NULL };
        int r = cluster_signal(c, from ? from : json_null(), data, &origin);
        json_decref(from);
        if (r) fail(q, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    ev = json_pack("{s:s,s:s%,s:o,s:O}", "op", "signal", "channel", c->name, (size_t)c->namelen,
                   "from", from ? from : json_null(), "data", data);
    if (!ev || chan_broadcast(c, ev, s)) fail(q, PROTO_E_INTERNAL, "out of memory");
    json_decref(ev);
}

/* presence_update {channel, info}: the connection's member sets its own
 * info ("away", "busy"), seen by the channel like a join. */
static void op_presence_update(op_req_t *q)
{
    sess_t *s = q->s;
    json_t *info = json_object_get(q->msg, "info"), *m;
    chan_t *c = q->c;
    uint64_t seq = 0;
    size_t size;
    int r;

    if (!info || !(json_is_object(info) || json_is_null(info))) {
        fail(q, PROTO_E_BAD_FIELD, "field \"info\" must be an object, or null to clear it");
        return;
    }
    if (!c || !q->sub) { fail(q, PROTO_E_NOT_SUBSCRIBED, "presence_update needs a subscription to the channel"); return; }
    if (!c->ns->presence) { fail(q, PROTO_E_DISABLED, "this channel's namespace has no presence"); return; }
    if ((size = json_dumpb(info, NULL, 0, JSON_COMPACT)) > PRESENCE_INFO_MAX) {
        snprintf(q->reason, PROTO_REASON_MAX, "field \"info\" is %zu bytes as JSON; at most %d", size,
                 PRESENCE_INFO_MAX);
        fail(q, PROTO_E_BAD_FIELD, q->reason);
        return;
    }
    if (!bucket_take(&s->pres_bucket, c->ns->signal_rate, c->ns->signal_rate, uv_now(&srv.loop))) {
        srv.stats.rate_limited++;
        snprintf(q->reason, PROTO_REASON_MAX, "more than %u presence updates per second (namespace signal_rate)",
                 c->ns->signal_rate);
        fail(q, PROTO_E_RATE_LIMITED, q->reason);
        return;
    }
    if (cluster_routes(c)) {
        const char *key = s->ident.user ? s->ident.user : s->id;
        origin_t origin = { ORIGIN_WS, s->serial, q->id ? json_incref((json_t *)q->id) : NULL };
        /* The local member keeps the info too, for the resyncs. */
        if ((r = presence_set_info(c, s, json_is_null(info) ? NULL : json_incref(info), &seq))) {
            origin_clear(&origin);
            fail(q, r, "not a member of this channel's presence");
            return;
        }
        if (cluster_presence_info(c, key, strlen(key), !s->ident.user, json_is_null(info) ? NULL : info, s->id,
                                  &origin))
            fail(q, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    if ((r = presence_set_info(c, s, json_is_null(info) ? NULL : json_incref(info), &seq))) {
        fail(q, r, "not a member of this channel's presence");
        return;
    }
    m = msg_reply("presence_updated", q->id);
    if (m) {
        json_object_set_new(m, "channel", json_stringn(c->name, c->namelen));
        json_object_set_new(m, "seq", json_integer((json_int_t)seq));
    }
    sess_send(s, m);
}

/* state {channel, ops}: atomic operations on a state channel. */
static void op_state(op_req_t *q)
{
    origin_t origin = { ORIGIN_WS, q->s->serial, NULL };
    pub_ops_t *ops;
    int r;

    if (!q->c->ns->state) {
        fail(q, PROTO_E_DISABLED, "this channel's namespace is not a state namespace");
        return;
    }
    if (seats_is_map(q->c->name, q->c->namelen)) {
        srv.stats.permission_denied++;
        fail(q, PROTO_E_FORBIDDEN, "a seat map changes through seat operations only (the seats op)");
        return;
    }
    if (commerce_is_store(q->c->name, q->c->namelen)) {
        srv.stats.permission_denied++;
        fail(q, PROTO_E_FORBIDDEN, "the commerce stock channel changes through /api/commerce/... only");
        return;
    }
    if (tickets_is_board(q->c->name, q->c->namelen)) {
        srv.stats.permission_denied++;
        fail(q, PROTO_E_FORBIDDEN, "the tickets dashboard changes through /api/tickets only");
        return;
    }
    if ((r = state_parse(json_object_get(q->msg, "ops"), &ops, q->reason))) { fail(q, r, q->reason); return; }
    origin.id = q->id ? json_incref((json_t *)q->id) : NULL;
    if (pubpipe_state(q->c, ops, &origin)) fail(q, PROTO_E_INTERNAL, "out of memory");
}

/* seats {channel, action, ...}: a seat request for the connection's user. */
static void op_seats(op_req_t *q)
{
    origin_t origin = { ORIGIN_WS, q->s->serial, NULL };
    const char *action;
    int r;

    if (!seats_is_map(q->name, q->len)) {
        fail(q, PROTO_E_BAD_CHANNEL, "seat operations go to a seat map: seats:{event}");
        return;
    }
    if ((r = msg_get_str(q->msg, "action", &action, NULL, q->reason))) {
        fail(q, PROTO_E_BAD_FIELD, r == 1 ? "field \"action\" is required" : q->reason);
        return;
    }
    if (!q->s->ident.user) {
        srv.stats.permission_denied++;
        fail(q, PROTO_E_UNAUTHORIZED, "seat operations need an authenticated user (a token)");
        return;
    }
    if (!strcmp(action, "define") || !strcmp(action, "add")) {
        srv.stats.permission_denied++;
        fail(q, PROTO_E_FORBIDDEN, "the seat map is defined by the backend (PUT /api/events/{event}/seats)");
        return;
    }
    if (!strcmp(action, "confirm") && !q->c->ns->seat_client_confirm) {
        srv.stats.permission_denied++;
        fail(q, PROTO_E_FORBIDDEN, "bookings are confirmed by the backend (namespace seat_client_confirm is off)");
        return;
    }
    origin.id = q->id ? json_incref((json_t *)q->id) : NULL;
    if ((r = seats_request(q->c->name, action, q->msg, q->s->ident.user, 0, &origin, q->reason))) fail(q, r, q->reason);
}

static void op_ping(op_req_t *q)
{
    sess_send(q->s, msg_reply("pong", q->id));
}

static const struct op_def ops[] = {
    { OP_CONNECT,        op_connect,        0, CH_NONE, PERM_NONE },
    { OP_PING,           op_ping,           0, CH_NONE, PERM_NONE },
    { OP_REFRESH,        op_refresh,        1, CH_NONE, PERM_NONE },
    { OP_SUBSCRIBE,      op_subscribe,      1, CH_NAME, PERM_NONE },
    { OP_UNSUBSCRIBE,    op_unsubscribe,    1, CH_FIND, PERM_NONE },
    { OP_PUBLISH,        op_publish,        1, CH_OPEN, PERM_PUBLISH },
    { OP_HISTORY,        op_history,        1, CH_OPEN, PERM_READ },
    { OP_PRESENCE,       op_presence,       1, CH_OPEN, PERM_READ },
    { OP_PRESENCE_STATS, op_presence_stats, 1, CH_OPEN, PERM_READ },
    { OP_SIGNAL,         op_signal,         1, CH_FIND, PERM_NONE },
    { OP_PRESENCE_UPDATE, op_presence_update, 1, CH_FIND, PERM_NONE },
    { OP_STATE,          op_state,          1, CH_OPEN, PERM_PUBLISH },
    { OP_SEATS,          op_seats,          1, CH_OPEN, PERM_PUBLISH },
};

static const struct op_def *op_find(enum proto_op op)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (ops[i].op == op) return &ops[i];
    return NULL;
}

/* Finds the op's channel and checks its permission. Return: 0, or -1 after
 * answering with an error. */
static int prologue_channel(op_req_t *q, const struct op_def *d)
{
    int r;

    if ((r = msg_get_channel(q->msg, &q->name, &q->len, q->reason)) ||
        (r = auth_check_name(q->name, q->len, q->reason))) {
        fail(q, r, q->reason);
        return -1;
    }
    if (d->chan == CH_NAME) return 0;
    if (d->chan == CH_FIND) {
        q->c = chan_find(q->name, q->len);
        q->sub = q->c ? chan_sub(q->s, q->c) : NULL;
        return 0;
    }
    if ((r = chan_open(q->name, q->len, &q->c))) {
        q->c = NULL;
        fail(q, r == PROTO_E_LIMIT ? r : PROTO_E_INTERNAL,
             r == PROTO_E_LIMIT ? "limit reached: limits.max_channels" : "out of memory");
        return -1;
    }
    /* Held while the handler runs: what it calls may drop the channel when
     * it fails (publish(), seats_request()), and the epilogue drops it. */
    q->c->inflight++;
    q->sub = chan_sub(q->s, q->c);
    switch (d->perm) {
    case PERM_READ:
        r = auth_may_read(&q->s->ident, q->c->name, q->c->namelen, q->c->ns, q->reason);
        break;
    case PERM_PUBLISH:
        r = auth_may_publish(&q->s->ident, q->c->name, q->c->namelen, q->c->ns, q->sub != NULL,
                             q->sub && q->sub->granted, q->reason);
        break;
    default:
        r = 0;
    }
    if (r) {
        srv.stats.permission_denied++;
        fail(q, r, q->reason);
        return -1;
    }
    return 0;
}

void ops_handle(sess_t *s, const unsigned char *buf, size_t len)
{
    op_req_t q = { .s = s };
    const struct op_def *d = NULL;
    const char *opname;
    json_t *msg = NULL;
    int r;

    if ((r = msg_decode((enum proto_enc)s->enc, buf, len, &msg, q.reason))) {
        sess_send_error(s, NULL, r, q.reason);
        return;
    }
    q.msg = msg;
    if ((r = msg_get_id(msg, &q.id, q.reason))) {
        sess_send_error(s, NULL, r, q.reason);
        goto out;
    }
    r = msg_get_str(msg, "op", &opname, NULL, q.reason);
    if (r == 1) {
        fail(&q, PROTO_E_BAD_FIELD, "field \"op\" is required");
        goto out;
    }
    if (r) { fail(&q, r, q.reason); goto out; }
    if (!(d = op_find(proto_op_parse(opname)))) {
        snprintf(q.reason, sizeof q.reason, "unknown op \"%.64s\"", opname);
        fail(&q, PROTO_E_UNKNOWN_OP, q.reason);
        goto out;
    }
    if (!s->connected && d->needs_connect) {
        fail(&q, PROTO_E_NOT_CONNECTED, "send connect first");
        goto out;
    }
    if (!s->exempt && !bucket_take(&s->msg_bucket, srv.cfg.messages_per_second,
                                   2.0 * srv.cfg.messages_per_second, uv_now(&srv.loop))) {
        srv.stats.rate_limited++;
        snprintf(q.reason, sizeof q.reason, "more than %u messages per second (limits.messages_per_second)",
                 srv.cfg.messages_per_second);
        fail(&q, PROTO_E_RATE_LIMITED, q.reason);
        goto out;
    }
    if (d->chan != CH_NONE && prologue_channel(&q, d)) goto out;
    d->handler(&q);
out:
    /* A channel the prologue opened that nothing came to hold goes again. */
    if (q.c && d && d->chan == CH_OPEN) {
        q.c->inflight--;
        chan_maybe_drop(q.c);
    }
    json_decref(msg);
}

void ops_on_closed(sess_t *s)
{
    chan_unsubscribe_all(s);
    if (s->connected && s->ident.user) seats_user_disconnected(s->ident.user);
}
