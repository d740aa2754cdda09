/* protocol/msg.h - the Herald message model and its two encodings.
 *
 * Owns: turning client frames into messages (a JSON object as a jansson
 * value, whichever encoding it arrived in), turning messages into frames, the
 * op names, the typed field accessors, and the client-visible error codes.
 * Does not own: what an op does (broker/). docs/protocol.md is the normative
 * description; the code table below maps one-to-one to its error table. */
#ifndef HERALD_MSG_H
#define HERALD_MSG_H

#include <jansson.h>
#include <stdint.h>
#include "wbuf.h"
#include "json.h"

enum proto_enc { PROTO_JSON = 0, PROTO_MSGPACK = 1, PROTO_NENC };

/* Error codes carried in {"op":"error","code":N} and REST error bodies. */
enum proto_err {
    PROTO_E_INTERNAL = 100,          /* the broker failed; retrying may work */
    PROTO_E_MALFORMED = 101,         /* not one valid JSON/MessagePack object */
    PROTO_E_UNKNOWN_OP = 102,        /* "op" names no operation */
    PROTO_E_BAD_FIELD = 103,         /* a field is missing or has the wrong type */
    PROTO_E_BAD_CHANNEL = 104,       /* channel name breaks the naming rules */
    PROTO_E_NOT_CONNECTED = 105,     /* an op other than connect/ping before connect */
    PROTO_E_ALREADY_CONNECTED = 106, /* a second connect on one connection */
    PROTO_E_ALREADY_SUBSCRIBED = 107,
    PROTO_E_NOT_SUBSCRIBED = 108,
    PROTO_E_TOO_LARGE = 109,         /* REST body over max_message_size */
    PROTO_E_LIMIT = 110,             /* subscriptions per connection or channel count at its cap */
    PROTO_E_STORAGE = 111,           /* the history store is full or failed: not published */
    PROTO_E_NO_HISTORY = 112,        /* history asked of a namespace that keeps none */
    PROTO_E_UNAUTHORIZED = 113,      /* no valid identity: missing, invalid or expired token */
    PROTO_E_FORBIDDEN = 114,         /* the identity may not do this */
    PROTO_E_RATE_LIMITED = 115,      /* too many messages or requests */
    PROTO_E_DISABLED = 116,          /* presence, signals or state asked of a namespace without them */
    PROTO_E_CONFLICT = 117,          /* a state cas found another version: nothing was applied */
    PROTO_E_NOT_INTEGER = 118,       /* a state incr on a value that is not an integer, or overflowing */
    PROTO_E_SEATS_TAKEN = 119,       /* a seat hold found seats held by others or booked: nothing held */
    PROTO_E_UNKNOWN_SEAT = 120,      /* seats or a section the event's seat map does not have */
    PROTO_E_NOT_HELD = 121,          /* confirm/release of seats this user does not hold (or expired) */
    PROTO_E_UNKNOWN_ORDER = 122,     /* commerce: no order has this id */
    PROTO_E_BAD_TRANSITION = 123,    /* commerce: the order's status does not lead to the one asked for */
    PROTO_E_OUT_OF_STOCK = 124,      /* commerce: an order's lines exceed the stock: nothing reserved */
    PROTO_E_ORDER_EXISTS = 125,      /* commerce: an order with this id was already created */
    PROTO_E_UNKNOWN_TICKET = 128,    /* tickets: no ticket has this id (bulk: "unknown" names them) */
    PROTO_E_TICKET_EXISTS = 129,     /* tickets: a ticket with this id was already created */
    PROTO_E_IDEM_MISMATCH = 132,     /* an idempotency key seen within its window with another request: not published */
    PROTO_E_ENGINE_UNAVAILABLE = 133, /* [engine] type = redis and Redis cannot be reached: nothing was published */
    PROTO_E_OVERLOADED = 135,        /* the broker is past its capacity (its storage is behind): nothing was done;
                                        retry after a backoff */
};

enum proto_op {
    OP_UNKNOWN = 0,
    OP_CONNECT,
    OP_SUBSCRIBE,
    OP_UNSUBSCRIBE,
    OP_PUBLISH,
    OP_PING,
    OP_HISTORY,
    OP_REFRESH,
    OP_PRESENCE,
    OP_PRESENCE_STATS,
    OP_SIGNAL,
    OP_STATE,
    OP_SEATS,
    OP_PRESENCE_UPDATE,
};

/* proto_err_name() - the short name of @code ("malformed"), for logs and docs. */
const char *proto_err_name(int code);

/* proto_err_http_status() - the HTTP status a REST answer carries with
 * error @code (docs/rest-api.md): 400 for bad requests, 401, 403, 404 for
 * what the namespace does not offer, 409 for conflicts with the current
 * state, 413, 422 for a well-formed request the state cannot take, 429, 503
 * for limits and overload (135), 507 for a store that cannot commit, 500 for anything else
 * (PROTO_E_INTERNAL, and a negative errno). */
unsigned proto_err_http_status(int code);

/* proto_op_parse() - the op named by @s, or OP_UNKNOWN. */
enum proto_op proto_op_parse(const char *s);

/* msg_decode() - decode one client message of @len bytes in @enc.
 * @out: [out] a new reference to a JSON object, on success.
 * @reason: [out] why not, on failure (PROTO_REASON_MAX bytes).
 * Return: 0, or PROTO_E_MALFORMED (not decodable, or not an object). */
int msg_decode(enum proto_enc enc, const void *buf, size_t len, json_t **out, char *reason);

/* msg_encode() - append @msg in @enc to @b. */
void msg_encode(enum proto_enc enc, const json_t *msg, wbuf_t *b);

/* msg_error() - a new {"op":"error","code","reason"} object, with @id when not
 * NULL. Return: a new reference, or NULL if out of memory. */
json_t *msg_error(const json_t *id, int code, const char *reason);

/* msg_reply() - a new {"op":@op} object with @id when not NULL. */
json_t *msg_reply(const char *op, const json_t *id);

/* Field accessors. Each returns 0 and sets *out, 1 if the field is absent
 * (out untouched), or PROTO_E_BAD_FIELD with @reason filled if present with
 * the wrong type. */
int msg_get_str(const json_t *msg, const char *field, const char **out, size_t *len, char *reason);
int msg_get_int(const json_t *msg, const char *field, int64_t *out, char *reason);
int msg_get_bool(const json_t *msg, const char *field, int *out, char *reason);

/* msg_get_id() - the optional request id: an integer or a string of at most
 * 128 bytes. Return: 0 (*out is a borrowed reference or NULL when absent),
 * or PROTO_E_BAD_FIELD. */
int msg_get_id(const json_t *msg, const json_t **out, char *reason);

/* msg_get_channel() - the required "channel" field, validated.
 * Return: 0, PROTO_E_BAD_FIELD (absent/not a string) or PROTO_E_BAD_CHANNEL. */
int msg_get_channel(const json_t *msg, const char **out, size_t *len, char *reason);

#endif
