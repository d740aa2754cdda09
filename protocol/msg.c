/* protocol/msg.c - see msg.h. */
#include "msg.h"
#include "mpack.h"
#include "chname.h"

#include <stdio.h>
#include <string.h>

static const struct { int code; const char *name; } err_names[] = {
    { PROTO_E_INTERNAL, "internal" },
    { PROTO_E_MALFORMED, "malformed" },
    { PROTO_E_UNKNOWN_OP, "unknown_op" },
    { PROTO_E_BAD_FIELD, "bad_field" },
    { PROTO_E_BAD_CHANNEL, "bad_channel" },
    { PROTO_E_NOT_CONNECTED, "not_connected" },
    { PROTO_E_ALREADY_CONNECTED, "already_connected" },
    { PROTO_E_ALREADY_SUBSCRIBED, "already_subscribed" },
    { PROTO_E_NOT_SUBSCRIBED, "not_subscribed" },
    { PROTO_E_TOO_LARGE, "too_large" },
    { PROTO_E_LIMIT, "limit" },
    { PROTO_E_STORAGE, "storage" },
    { PROTO_E_NO_HISTORY, "no_history" },
    { PROTO_E_UNAUTHORIZED, "unauthorized" },
    { PROTO_E_FORBIDDEN, "forbidden" },
    { PROTO_E_RATE_LIMITED, "rate_limited" },
    { PROTO_E_DISABLED, "disabled" },
    { PROTO_E_CONFLICT, "conflict" },
    { PROTO_E_NOT_INTEGER, "not_integer" },
    { PROTO_E_SEATS_TAKEN, "seats_taken" },
    { PROTO_E_UNKNOWN_SEAT, "unknown_seat" },
    { PROTO_E_NOT_HELD, "not_held" },
    { PROTO_E_UNKNOWN_ORDER, "unknown_order" },
    { PROTO_E_BAD_TRANSITION, "bad_transition" },
    { PROTO_E_OUT_OF_STOCK, "out_of_stock" },
    { PROTO_E_ORDER_EXISTS, "order_exists" },
    { PROTO_E_UNKNOWN_TICKET, "unknown_ticket" },
    { PROTO_E_TICKET_EXISTS, "ticket_exists" },
    { PROTO_E_IDEM_MISMATCH, "idempotency_mismatch" },
    { PROTO_E_ENGINE_UNAVAILABLE, "engine_unavailable" },
    { PROTO_E_OVERLOADED, "overloaded" },
};

const char *proto_err_name(int code)
{
    for (size_t i = 0; i < sizeof err_names / sizeof err_names[0]; i++)
        if (err_names[i].code == code) return err_names[i].name;
    return "unknown";
}

static const struct { const char *name; enum proto_op op; } op_names[] = {
    { "connect", OP_CONNECT },
    { "subscribe", OP_SUBSCRIBE },
    { "unsubscribe", OP_UNSUBSCRIBE },
    { "publish", OP_PUBLISH },
    { "ping", OP_PING },
    { "history", OP_HISTORY },
    { "refresh", OP_REFRESH },
    { "presence", OP_PRESENCE },
    { "presence_stats", OP_PRESENCE_STATS },
    { "signal", OP_SIGNAL },
    { "state", OP_STATE },
    { "seats", OP_SEATS },
    { "presence_update", OP_PRESENCE_UPDATE },
};

unsigned proto_err_http_status(int code)
{
    switch (code) {
    case PROTO_E_MALFORMED: case PROTO_E_BAD_FIELD: case PROTO_E_BAD_CHANNEL: return 400;
    case PROTO_E_UNAUTHORIZED: return 401;
    case PROTO_E_FORBIDDEN: return 403;
    case PROTO_E_NO_HISTORY: case PROTO_E_DISABLED: case PROTO_E_UNKNOWN_ORDER:
    case PROTO_E_UNKNOWN_TICKET: return 404;
    case PROTO_E_CONFLICT: case PROTO_E_SEATS_TAKEN: case PROTO_E_NOT_HELD: case PROTO_E_BAD_TRANSITION:
    case PROTO_E_OUT_OF_STOCK: case PROTO_E_ORDER_EXISTS: case PROTO_E_TICKET_EXISTS: case PROTO_E_IDEM_MISMATCH:
        return 409;
    case PROTO_E_TOO_LARGE: return 413;
    case PROTO_E_NOT_INTEGER: case PROTO_E_UNKNOWN_SEAT: return 422;
    case PROTO_E_RATE_LIMITED: return 429;
    case PROTO_E_LIMIT: case PROTO_E_ENGINE_UNAVAILABLE: case PROTO_E_OVERLOADED: return 503;
    case PROTO_E_STORAGE: return 507;
    default: return 500;
    }
}

enum proto_op proto_op_parse(const char *s)
{
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++)
        if (!strcmp(op_names[i].name, s)) return op_names[i].op;
    return OP_UNKNOWN;
}

int msg_decode(enum proto_enc enc, const void *buf, size_t len, json_t **out, char *reason)
{
    json_t *v = NULL;
    int r = enc == PROTO_MSGPACK ? mpack_decode(buf, len, &v, reason)
                                 : json_decode(buf, len, &v, reason);
    if (r) return PROTO_E_MALFORMED;
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(reason, PROTO_REASON_MAX, "a message must be an object (a JSON object or MessagePack map)");
        return PROTO_E_MALFORMED;
    }
    *out = v;
    return 0;
}

void msg_encode(enum proto_enc enc, const json_t *msg, wbuf_t *b)
{
    if (enc == PROTO_MSGPACK) mpack_emit(b, msg);
    else json_emit(b, msg);
}

json_t *msg_reply(const char *op, const json_t *id)
{
    json_t *m = json_object();
    if (!m) return NULL;
    json_object_set_new(m, "op", json_string(op));
    if (id) json_object_set(m, "id", (json_t *)id);
    return m;
}

json_t *msg_error(const json_t *id, int code, const char *reason)
{
    json_t *m = msg_reply("error", id);
    if (!m) return NULL;
    json_object_set_new(m, "code", json_integer(code));
    json_object_set_new(m, "reason", json_string(reason ? reason : proto_err_name(code)));
    return m;
}

static int wrong_type(char *reason, const char *field, const char *want)
{
    snprintf(reason, PROTO_REASON_MAX, "field \"%s\" must be %s", field, want);
    return PROTO_E_BAD_FIELD;
}

int msg_get_str(const json_t *msg, const char *field, const char **out, size_t *len, char *reason)
{
    json_t *v = json_object_get(msg, field);
    if (!v) return 1;
    if (!json_is_string(v)) return wrong_type(reason, field, "a string");
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return 0;
}

int msg_get_int(const json_t *msg, const char *field, int64_t *out, char *reason)
{
    json_t *v = json_object_get(msg, field);
    if (!v) return 1;
    if (!json_is_integer(v)) return wrong_type(reason, field, "an integer");
    *out = json_integer_value(v);
    return 0;
}

int msg_get_bool(const json_t *msg, const char *field, int *out, char *reason)
{
    json_t *v = json_object_get(msg, field);
    if (!v) return 1;
    if (!json_is_boolean(v)) return wrong_type(reason, field, "a boolean");
    *out = json_is_true(v);
    return 0;
}

int msg_get_id(const json_t *msg, const json_t **out, char *reason)
{
    json_t *v = json_object_get(msg, "id");
    *out = NULL;
    if (!v) return 0;
    if (json_is_integer(v) || (json_is_string(v) && json_string_length(v) <= 128)) {
        *out = v;
        return 0;
    }
    return wrong_type(reason, "id", "an integer or a string of at most 128 bytes");
}

int msg_get_channel(const json_t *msg, const char **out, size_t *len, char *reason)
{
    const char *why;
    int r = msg_get_str(msg, "channel", out, len, reason);
    if (r == 1) {
        snprintf(reason, PROTO_REASON_MAX, "field \"channel\" is required");
        return PROTO_E_BAD_FIELD;
    }
    if (r) return r;
    if (!chname_valid(*out, *len, &why)) {
        snprintf(reason, PROTO_REASON_MAX, "%s", why);
        return PROTO_E_BAD_CHANNEL;
    }
    return 0;
}
