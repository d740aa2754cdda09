/* broker/net/reply.h - answer a request on the transport it came from.
 *
 * Owns: origin_t, who asked (a WebSocket request by its id, an HTTP request,
 * or nobody: the broker itself), and the one way of answering it, so that a
 * feature computes its answer once and never asks which transport carries
 * it. An origin of kind ORIGIN_CALL is a request inside the broker (one
 * item of a REST batch): its answer goes to the function reply_set_call()
 * registered, with the origin's serial. On WebSocket an answer is {"op":<op>,"id":<id>, ...fields}, an error
 * {"op":"error","id","code","reason", ...}; over HTTP the fields are the
 * body of a 200, an error is {"error":{"code","reason", ...}} with the
 * status proto_err_http_status() gives (and Retry-After: 1 with 135,
 * overloaded). An origin that has gone (closed
 * connection) gets nothing.
 * Ownership, one rule for every taker: an origin_t holds a reference to its
 * id. A function documented as taking an origin owns it from the call on,
 * success or failure (on failure it has cleared it), so the caller answers
 * a failure with the id it borrowed from the request, and may always call
 * origin_clear() afterwards, which is then a no-op.
 * Loop thread only. */
#ifndef HERALD_REPLY_H
#define HERALD_REPLY_H

#include <jansson.h>
#include <stdint.h>

#include "msg.h"
#include "wbuf.h"

enum origin_kind { ORIGIN_NONE = 0, ORIGIN_WS, ORIGIN_REST, ORIGIN_CALL };

typedef struct origin {
    enum origin_kind kind;
    uint64_t serial;              /* conn_find() key of the session or HTTP request; ORIGIN_CALL: the
                                     caller's own tag */
    json_t *id;                   /* the WebSocket request id (a reference), or NULL */
} origin_t;

/* origin_clear() - drop @o's id reference (the request will not be answered
 * through @o any more). */
void origin_clear(origin_t *o);

/* reply_ok() - answer @o with @op and @fields (reference taken; NULL: out
 * of memory, which closes a session or answers 500). */
void reply_ok(const origin_t *o, const char *op, json_t *fields);

/* reply_error() - tell @o its request failed with @code and @reason, and the
 * fields of @extra (borrowed, may be NULL) added. @status: the HTTP status,
 * or 0 for proto_err_http_status(@code). */
void reply_error(const origin_t *o, unsigned status, int code, const char *reason, const json_t *extra);

/* reply_set_call() - where answers to ORIGIN_CALL origins go: @fn gets the
 * origin's serial and either @code 0 with @fields (borrowed; NULL: out of
 * memory) or a PROTO_E_* @code with @reason and @fields the error's extra
 * fields (borrowed, may be NULL). Set once at start (app/batch.c); without
 * it such answers are dropped. A list answer (reply_list()) is dropped. */
typedef void (*reply_call_fn)(uint64_t serial, int code, const char *reason, const json_t *fields);
void reply_set_call(reply_call_fn fn);

/* reply_list() - answer @o with @op, the fields of @head (reference taken),
 * and under @key a list that @emit appends in the encoding given (called
 * once per encoding the answer needs; @ctx is its own). */
typedef void (*reply_emit_fn)(enum proto_enc enc, wbuf_t *b, void *ctx);
void reply_list(const origin_t *o, const char *op, json_t *head, const char *key, reply_emit_fn emit, void *ctx);

#endif
