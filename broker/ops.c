/* broker/ops.c - see ops.h. */
#include "ops.h"
#include "channel.h"
#include "conns.h"
#include "herald.h"
#include "history.h"
#include "presence.h"
#include "state.h"
#include "mpack.h"
#include "pubpipe.h"
#include "rest.h"
#include "auth.h"
#include "ratelimit.h"
#include "seats.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ops_publish(const char *name, size_t len, const json_t *data, const json_t *from, uint64_t reply_to,
                const char *kind, struct pub_origin *origin, char *reason)
{
    chan_t *c;
    int r = chan_open(name, len, &c);

    if (r == PROTO_E_LIMIT) {
        snprintf(reason, PROTO_REASON_MAX, "the broker holds limits.max_channels (%u) channels",
                 srv.cfg.max_channels);
        json_decref(origin->id);
        origin->id = NULL;
        return r;
    }
    if (r == 0 && c->ns->state) {
        snprintf(reason, PROTO_REASON_MAX, "a state channel changes through state operations, not publish");
        json_decref(origin->id);
        origin->id = NULL;
        chan_maybe_drop(c);
        return PROTO_E_DISABLED;
    }
    if (r == 0) {
        if (reply_to && reply_to > c->last_offset) {
            snprintf(reason, PROTO_REASON_MAX, "reply_to %llu is not an offset of this channel (last is %llu)",
                     (unsigned long long)reply_to, (unsigned long long)c->last_offset);
            json_decref(origin->id);
            origin->id = NULL;
            chan_maybe_drop(c);
            return PROTO_E_BAD_FIELD;
        }
        r = pubpipe_publish(c, data, from, reply_to, kind, origin);
        if (r) chan_maybe_drop(c);
    } else {
        json_decref(origin->id);
        origin->id = NULL;
    }
    if (r) {
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    return 0;
}

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

/* REST status of a publication's failure. */
static int pub_status(int code)
{
    switch (code) {
    case PROTO_E_STORAGE: return 507;
    case PROTO_E_CONFLICT: case PROTO_E_SEATS_TAKEN: case PROTO_E_NOT_HELD: return 409;
    case PROTO_E_NOT_INTEGER: case PROTO_E_UNKNOWN_SEAT: return 422;
    case PROTO_E_LIMIT: return 503;
    default: return 500;
    }
}

void ops_pub_done(const struct pub_origin *o, chan_t *c, const struct pub_outcome *out)
{
    json_t *m;
    sess_t *s;

    if (out->code) srv.stats.storage_failures += out->code == PROTO_E_STORAGE;
    switch (o->kind) {
    case ORIGIN_WS:
        if (!(s = conn_find(o->serial))) return;
        if (out->code) {
            m = msg_error(o->id, out->code, out->reason ? out->reason : "publication failed");
            if (m && out->extra) json_object_update_missing(m, (json_t *)out->extra);
            sess_send(s, m);
            return;
        }
        m = msg_reply(out->reply_op ? out->reply_op : out->state_rec ? "updated" : "published", o->id);
        if (m) {
            json_object_set_new(m, "channel", json_stringn(c->name, c->namelen));
            json_object_set_new(m, "offset", json_integer((json_int_t)out->offset));
            if (out->state_rec) add_state_changes(m, out->state_rec, out->state_reclen);
            if (out->extra) json_object_update_missing(m, (json_t *)out->extra);
        }
        sess_send(s, m);
        return;
    case ORIGIN_REST:
        if (out->code) {
            m = json_pack("{s:{s:i,s:s}}", "error", "code", out->code, "reason",
                          out->reason ? out->reason : "publication failed");
            if (m && out->extra) json_object_update_missing(json_object_get(m, "error"), (json_t *)out->extra);
            rest_finish_json(o->serial, pub_status(out->code), m);
            return;
        }
        m = json_pack("{s:s%,s:I}", "channel", c->name, (size_t)c->namelen, "offset", (json_int_t)out->offset);
        if (m && out->state_rec) add_state_changes(m, out->state_rec, out->state_reclen);
        if (m && out->extra) json_object_update_missing(m, (json_t *)out->extra);
        rest_finish_json(o->serial, 200, m);
        return;
    case ORIGIN_NONE:
        return;
    }
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

int ops_get_reply(const json_t *msg, uint64_t *reply_to, const char **kind, char *reason)
{
    static const char *const kinds[] = { "reaction", "edit", "delete" };
    const char *k;
    int64_t r = 0;
    int rc;

    *reply_to = 0;
    *kind = NULL;
    if ((rc = msg_get_int(msg, "reply_to", &r, reason)) > 1 || (rc == 0 && r < 1)) {
        snprintf(reason, PROTO_REASON_MAX, "field \"reply_to\" must be the offset (>= 1) of a publication");
        return PROTO_E_BAD_FIELD;
    }
    *reply_to = (uint64_t)r;
    if ((rc = msg_get_str(msg, "kind", &k, NULL, reason)) > 1) return rc;
    if (rc == 1 || !strcmp(k, "message")) return 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(k, kinds[i])) {
            if (!*reply_to) {
                snprintf(reason, PROTO_REASON_MAX, "a %s needs \"reply_to\": the offset it refers to", k);
                return PROTO_E_BAD_FIELD;
            }
            *kind = kinds[i];
            return 0;
        }
    snprintf(reason, PROTO_REASON_MAX, "field \"kind\" must be message, reaction, edit or delete");
    return PROTO_E_BAD_FIELD;
}

static void op_connect(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
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
static void op_refresh(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
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

static void op_subscribe(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    struct history_since since;
    int64_t n = 0;
    const char *name, *token;
    size_t len, toklen = 0;
    int granted = 0, want_presence = 0;
    chan_t *c;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return; }
    if ((r = msg_get_int(msg, "history", &n, reason)) > 1 || n < 0 || n > HISTORY_LIMIT_MAX) {
        sess_send_error(s, id, PROTO_E_BAD_FIELD, "field \"history\" must be an integer from 0 to 1000");
        return;
    }
    if ((r = get_since(msg, &since, reason))) { sess_send_error(s, id, r, reason); return; }
    if ((r = msg_get_bool(msg, "presence", &want_presence, reason)) > 1) { sess_send_error(s, id, r, reason); return; }
    if ((r = msg_get_str(msg, "token", &token, &toklen, reason)) > 1) { sess_send_error(s, id, r, reason); return; }
    if (r == 1) token = NULL;
    r = chan_open(name, len, &c);
    if (r == 0 && (r = auth_may_subscribe(&s->ident, c, token, toklen, &granted, reason))) {
        if (token) rl_auth_failed(s->peer);
        srv.stats.permission_denied++;
        chan_maybe_drop(c);
        sess_send_error(s, id, r, reason);
        return;
    }
    if (r == 0) r = chan_subscribe(s, c);
    if (r == 0 && granted) chan_sub(s, c)->granted = 1;
    switch (r) {
    case 0: break;
    case PROTO_E_ALREADY_SUBSCRIBED:
        sess_send_error(s, id, r, "already subscribed to this channel");
        return;
    case PROTO_E_LIMIT:
        snprintf(reason, sizeof reason, "limit reached: %u subscriptions per connection, %u channels",
                 srv.cfg.max_subscriptions, srv.cfg.max_channels);
        sess_send_error(s, id, r, reason);
        return;
    default:
        sess_send_error(s, id, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    if (c->ns->state ? state_subscribed(s, c, id, &since, want_presence)
                     : history_subscribed(s, c, id, (unsigned)n, &since, want_presence)) {
        chan_unsubscribe(s, c);
        sess_send_error(s, id, PROTO_E_INTERNAL, "out of memory");
    }
}

static void op_unsubscribe(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    const char *name;
    size_t len;
    chan_t *c;
    json_t *m;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return; }
    c = chan_find(name, len);
    if (!c || chan_unsubscribe(s, c)) {
        sess_send_error(s, id, PROTO_E_NOT_SUBSCRIBED, "not subscribed to this channel");
        return;
    }
    m = msg_reply("unsubscribed", id);
    if (m) json_object_set_new(m, "channel", json_stringn(name, len));
    sess_send(s, m);
}

static void op_publish(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    struct pub_origin origin = { ORIGIN_WS, s->serial, id ? json_incref((json_t *)id) : NULL };
    const char *name, *kind;
    uint64_t reply_to;
    size_t len;
    json_t *data, *from;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) goto fail;
    data = json_object_get(msg, "data");
    if (!data) {
        r = PROTO_E_BAD_FIELD;
        snprintf(reason, sizeof reason, "field \"data\" is required");
        goto fail;
    }
    {
        sub_t *sub;
        chan_t *c;
        r = chan_open(name, len, &c);
        if (r) {
            snprintf(reason, sizeof reason, r == PROTO_E_LIMIT ? "limit reached: limits.max_channels" : "out of memory");
            r = r == PROTO_E_LIMIT ? r : PROTO_E_INTERNAL;
            goto fail;
        }
        sub = chan_sub(s, c);
        if ((r = auth_may_publish(&s->ident, c, sub != NULL, sub && sub->granted, reason))) {
            srv.stats.permission_denied++;
            chan_maybe_drop(c);
            goto fail;
        }
    }
    if ((r = ops_get_reply(msg, &reply_to, &kind, reason))) goto fail;
    from = sender(s);
    r = ops_publish(name, len, data, from, reply_to, kind, &origin, reason);
    json_decref(from);
    if (r) sess_send_error(s, id, r, reason);
    return;
fail:
    json_decref(origin.id);
    sess_send_error(s, id, r, reason);
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

/* Finds @msg's channel and checks that @s may read it. Return: the channel,
 * or NULL after replying with an error. */
static chan_t *readable(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    const char *name;
    size_t len;
    chan_t *c;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return NULL; }
    if ((r = chan_open(name, len, &c))) {
        sess_send_error(s, id, r == PROTO_E_LIMIT ? r : PROTO_E_INTERNAL,
                        r == PROTO_E_LIMIT ? "limit reached: limits.max_channels" : "out of memory");
        return NULL;
    }
    if ((r = auth_may_read(&s->ident, c, reason))) {
        srv.stats.permission_denied++;
        chan_maybe_drop(c);
        sess_send_error(s, id, r, reason);
        return NULL;
    }
    return c;
}

static void op_history(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    struct history_page page;
    struct pub_origin origin = { ORIGIN_WS, s->serial, NULL };
    chan_t *c;
    int r;

    if ((r = get_page(msg, &page, reason))) {
        sess_send_error(s, id, r, reason);
        return;
    }
    if (!(c = readable(s, msg, id))) return;
    origin.id = id ? json_incref((json_t *)id) : NULL;
    r = history_query(c, &page, &origin);
    json_decref(origin.id);                    /* still ours if history_query() failed */
    chan_maybe_drop(c);
    if (r == PROTO_E_NO_HISTORY) sess_send_error(s, id, r, "this channel's namespace keeps no history");
    else if (r) sess_send_error(s, id, PROTO_E_INTERNAL, "out of memory");
}

/* presence / presence_stats {channel} */
static void op_presence(sess_t *s, const json_t *msg, const json_t *id, int stats)
{
    chan_t *c = readable(s, msg, id);
    json_t *m, *p;

    if (!c) return;
    if (!c->ns->presence) {
        chan_maybe_drop(c);
        sess_send_error(s, id, PROTO_E_DISABLED, "this channel's namespace has no presence");
        return;
    }
    p = stats ? presence_stats_json(c) : presence_json(c);
    m = msg_reply(stats ? "presence_stats" : "presence", id);
    if (m && p) {
        json_object_set_new(m, "channel", json_stringn(c->name, c->namelen));
        json_object_update(m, p);
    }
    json_decref(p);
    chan_maybe_drop(c);
    sess_send(s, m);
}

/* signal {channel, data}: an ephemeral event for the channel's other
 * subscribers (typing indicators): not stored, no offset, no reply. */
static void op_signal(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    const char *name;
    size_t len;
    json_t *data, *ev, *from;
    chan_t *c;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return; }
    if (!(data = json_object_get(msg, "data"))) {
        sess_send_error(s, id, PROTO_E_BAD_FIELD, "field \"data\" is required");
        return;
    }
    c = chan_find(name, len);
    if (!c || !chan_sub(s, c)) {
        sess_send_error(s, id, PROTO_E_NOT_SUBSCRIBED, "signals go to a channel you are subscribed to");
        return;
    }
    if (!c->ns->signals) {
        sess_send_error(s, id, PROTO_E_DISABLED, "this channel's namespace does not allow signals");
        return;
    }
    if (!bucket_take(&s->sig_bucket, c->ns->signal_rate, c->ns->signal_rate, uv_now(&srv.loop))) {
        srv.stats.rate_limited++;
        snprintf(reason, sizeof reason, "more than %u signals per second (namespace signal_rate)", c->ns->signal_rate);
        sess_send_error(s, id, PROTO_E_RATE_LIMITED, reason);
        return;
    }
    from = json_object();
    if (from) {
        if (s->ident.user) json_object_set_new(from, "user", json_string(s->ident.user));
        json_object_set_new(from, "client", json_string(s->id));
    }
    ev = json_pack("{s:s,s:s%,s:o,s:O}", "op", "signal", "channel", c->name, (size_t)c->namelen,
                   "from", from ? from : json_null(), "data", data);
    if (!ev || chan_broadcast(c, ev, s)) sess_send_error(s, id, PROTO_E_INTERNAL, "out of memory");
    json_decref(ev);
}

/* state {channel, ops}: atomic operations on a state channel. */
static void op_state(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    struct pub_origin origin = { ORIGIN_WS, s->serial, NULL };
    state_ops_t *ops;
    const char *name;
    size_t len;
    sub_t *sub;
    chan_t *c;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return; }
    if ((r = chan_open(name, len, &c))) {
        sess_send_error(s, id, r == PROTO_E_LIMIT ? r : PROTO_E_INTERNAL,
                        r == PROTO_E_LIMIT ? "limit reached: limits.max_channels" : "out of memory");
        return;
    }
    if (!c->ns->state) {
        chan_maybe_drop(c);
        sess_send_error(s, id, PROTO_E_DISABLED, "this channel's namespace is not a state namespace");
        return;
    }
    if (seats_is_map(c->name, c->namelen)) {
        chan_maybe_drop(c);
        srv.stats.permission_denied++;
        sess_send_error(s, id, PROTO_E_FORBIDDEN, "a seat map changes through seat operations only (the seats op)");
        return;
    }
    sub = chan_sub(s, c);
    if ((r = auth_may_publish(&s->ident, c, sub != NULL, sub && sub->granted, reason)) ||
        (r = state_parse(json_object_get(msg, "ops"), &ops, reason))) {
        if (r == PROTO_E_FORBIDDEN || r == PROTO_E_UNAUTHORIZED) srv.stats.permission_denied++;
        chan_maybe_drop(c);
        sess_send_error(s, id, r, reason);
        return;
    }
    origin.id = id ? json_incref((json_t *)id) : NULL;
    if (pubpipe_state(c, ops, &origin)) {
        chan_maybe_drop(c);
        sess_send_error(s, id, PROTO_E_INTERNAL, "out of memory");
    }
}

/* seats {channel, action, ...}: a seat request for the connection's user. */
static void op_seats(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    struct pub_origin origin = { ORIGIN_WS, s->serial, NULL };
    const char *name, *action;
    size_t len;
    sub_t *sub;
    chan_t *c;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return; }
    if (!seats_is_map(name, len)) {
        sess_send_error(s, id, PROTO_E_BAD_CHANNEL, "seat operations go to a seat map: seats:{event}");
        return;
    }
    if ((r = msg_get_str(msg, "action", &action, NULL, reason))) {
        sess_send_error(s, id, PROTO_E_BAD_FIELD, r == 1 ? "field \"action\" is required" : reason);
        return;
    }
    if (!s->ident.user) {
        srv.stats.permission_denied++;
        sess_send_error(s, id, PROTO_E_UNAUTHORIZED, "seat operations need an authenticated user (a token)");
        return;
    }
    if ((r = chan_open(name, len, &c))) {
        sess_send_error(s, id, r == PROTO_E_LIMIT ? r : PROTO_E_INTERNAL,
                        r == PROTO_E_LIMIT ? "limit reached: limits.max_channels" : "out of memory");
        return;
    }
    sub = chan_sub(s, c);
    r = auth_may_publish(&s->ident, c, sub != NULL, sub && sub->granted, reason);
    if (!r && (!strcmp(action, "define") || !strcmp(action, "add"))) {
        r = PROTO_E_FORBIDDEN;
        snprintf(reason, sizeof reason, "the seat map is defined by the backend (PUT /api/events/{event}/seats)");
    } else if (!r && !strcmp(action, "confirm") && !c->ns->seat_client_confirm) {
        r = PROTO_E_FORBIDDEN;
        snprintf(reason, sizeof reason, "bookings are confirmed by the backend (namespace seat_client_confirm is off)");
    }
    if (r) {
        if (r == PROTO_E_FORBIDDEN || r == PROTO_E_UNAUTHORIZED) srv.stats.permission_denied++;
        chan_maybe_drop(c);
        sess_send_error(s, id, r, reason);
        return;
    }
    origin.id = id ? json_incref((json_t *)id) : NULL;
    r = seats_request(c->name, action, msg, s->ident.user, 0, &origin, reason);
    chan_maybe_drop(c);
    if (r) sess_send_error(s, id, r, reason);
}

void ops_handle(sess_t *s, const unsigned char *buf, size_t len)
{
    char reason[PROTO_REASON_MAX];
    const json_t *id = NULL;
    const char *opname;
    json_t *msg = NULL;
    enum proto_op op;
    int r;

    if ((r = msg_decode((enum proto_enc)s->enc, buf, len, &msg, reason))) {
        sess_send_error(s, NULL, r, reason);
        return;
    }
    if ((r = msg_get_id(msg, &id, reason))) {
        sess_send_error(s, NULL, r, reason);
        goto out;
    }
    r = msg_get_str(msg, "op", &opname, NULL, reason);
    if (r == 1) {
        sess_send_error(s, id, PROTO_E_BAD_FIELD, "field \"op\" is required");
        goto out;
    }
    if (r) { sess_send_error(s, id, r, reason); goto out; }
    op = proto_op_parse(opname);
    if (op == OP_UNKNOWN) {
        snprintf(reason, sizeof reason, "unknown op \"%.64s\"", opname);
        sess_send_error(s, id, PROTO_E_UNKNOWN_OP, reason);
        goto out;
    }
    if (!s->connected && op != OP_CONNECT && op != OP_PING) {
        sess_send_error(s, id, PROTO_E_NOT_CONNECTED, "send connect first");
        goto out;
    }
    if (!s->exempt && !bucket_take(&s->msg_bucket, srv.cfg.messages_per_second,
                                   2.0 * srv.cfg.messages_per_second, uv_now(&srv.loop))) {
        srv.stats.rate_limited++;
        snprintf(reason, sizeof reason, "more than %u messages per second (limits.messages_per_second)",
                 srv.cfg.messages_per_second);
        sess_send_error(s, id, PROTO_E_RATE_LIMITED, reason);
        goto out;
    }
    switch (op) {
    case OP_CONNECT: op_connect(s, msg, id); break;
    case OP_REFRESH: op_refresh(s, msg, id); break;
    case OP_PRESENCE: op_presence(s, msg, id, 0); break;
    case OP_PRESENCE_STATS: op_presence(s, msg, id, 1); break;
    case OP_SIGNAL: op_signal(s, msg, id); break;
    case OP_STATE: op_state(s, msg, id); break;
    case OP_SEATS: op_seats(s, msg, id); break;
    case OP_SUBSCRIBE: op_subscribe(s, msg, id); break;
    case OP_UNSUBSCRIBE: op_unsubscribe(s, msg, id); break;
    case OP_PUBLISH: op_publish(s, msg, id); break;
    case OP_HISTORY: op_history(s, msg, id); break;
    case OP_PING: sess_send(s, msg_reply("pong", id)); break;
    case OP_UNKNOWN: break;
    }
out:
    json_decref(msg);
}
