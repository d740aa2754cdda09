/* broker/ops.c - see ops.h. */
#include "ops.h"
#include "channel.h"
#include "herald.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int ops_publish(const char *name, size_t len, const json_t *data, uint64_t *offset, char *reason)
{
    chan_t *c;
    int r = chan_open(name, len, &c);

    if (r == PROTO_E_LIMIT) {
        snprintf(reason, PROTO_REASON_MAX, "the broker holds limits.max_channels (%u) channels",
                 srv.cfg.max_channels);
        return r;
    }
    if (r == 0) r = chan_publish(c, data, offset);
    if (r) {
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    return 0;
}

static void op_connect(sess_t *s, const json_t *id)
{
    json_t *m;

    if (s->connected) {
        sess_send_error(s, id, PROTO_E_ALREADY_CONNECTED, "this connection already sent connect");
        return;
    }
    s->connected = 1;
    m = msg_reply("connected", id);
    if (m) {
        json_object_set_new(m, "client", json_string(s->id));
        json_object_set_new(m, "version", json_string(HERALD_VERSION));
        json_object_set_new(m, "ping_interval", json_integer(srv.cfg.ping_interval_ms / 1000));
    }
    sess_send(s, m);
}

static void op_subscribe(sess_t *s, const json_t *msg, const json_t *id)
{
    char reason[PROTO_REASON_MAX];
    const char *name;
    size_t len;
    chan_t *c;
    json_t *m;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return; }
    r = chan_open(name, len, &c);
    if (r == 0) r = chan_subscribe(s, c);
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
    m = msg_reply("subscribed", id);
    if (m) {
        json_object_set_new(m, "channel", json_stringn(name, len));
        json_object_set_new(m, "offset", json_integer((json_int_t)c->last_offset));
    }
    sess_send(s, m);
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
    const char *name;
    size_t len;
    uint64_t offset;
    json_t *data, *m;
    int r;

    if ((r = msg_get_channel(msg, &name, &len, reason))) { sess_send_error(s, id, r, reason); return; }
    data = json_object_get(msg, "data");
    if (!data) { sess_send_error(s, id, PROTO_E_BAD_FIELD, "field \"data\" is required"); return; }
    if ((r = ops_publish(name, len, data, &offset, reason))) { sess_send_error(s, id, r, reason); return; }
    m = msg_reply("published", id);
    if (m) {
        json_object_set_new(m, "channel", json_stringn(name, len));
        json_object_set_new(m, "offset", json_integer((json_int_t)offset));
    }
    sess_send(s, m);
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
    switch (op) {
    case OP_CONNECT: op_connect(s, id); break;
    case OP_SUBSCRIBE: op_subscribe(s, msg, id); break;
    case OP_UNSUBSCRIBE: op_unsubscribe(s, msg, id); break;
    case OP_PUBLISH: op_publish(s, msg, id); break;
    case OP_PING: sess_send(s, msg_reply("pong", id)); break;
    case OP_UNKNOWN: break;
    }
out:
    json_decref(msg);
}
