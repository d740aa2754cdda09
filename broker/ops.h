/* broker/ops.h - what each client op does.
 *
 * Owns: the dispatch from a decoded client message to its effect and reply,
 * and the delivery of a publication's outcome to whoever published it.
 * Does not own: decoding (protocol/msg.c), queues (session.c), channels
 * (channel.c), the storage path (pubpipe.c) or history reads (history.c).
 * Errors go back to the client as {"op":"error"} replies with the request's
 * id; a bad message never closes the connection by itself.
 * Loop thread only. */
#ifndef HERALD_OPS_H
#define HERALD_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "session.h"

struct pub_origin;
struct chan;

/* ops_handle() - decode and carry out one complete client message. */
void ops_handle(sess_t *s, const unsigned char *buf, size_t len);

/* ops_publish() - publish @data on channel @name for @origin (WebSocket or
 * REST; its id reference is taken), sent by @from (NULL: the server). On 0 the outcome comes later through
 * ops_pub_done().
 * @reason: [out] on a PROTO_E_* failure, why (PROTO_REASON_MAX bytes).
 * Return: 0, or a PROTO_E_* code (PROTO_E_INTERNAL when out of memory). */
int ops_publish(const char *name, size_t len, const json_t *data, const json_t *from, uint64_t reply_to,
                const char *kind, struct pub_origin *origin, char *reason);

/* ops_get_reply() - read a publication's optional "reply_to" (an offset >= 1)
 * and "kind" ("message", the default, "reaction", "edit" or "delete"; the
 * last three need reply_to). *@kind is NULL for a plain message.
 * Return: 0, or PROTO_E_BAD_FIELD with @reason. */
int ops_get_reply(const json_t *msg, uint64_t *reply_to, const char **kind, char *reason);

/* The outcome of a publication or state change, for ops_pub_done(). */
struct pub_outcome {
    int code;                     /* 0, or a PROTO_E_* code */
    uint64_t offset;              /* with code 0 */
    const char *reason;           /* with a code */
    const unsigned char *state_rec; /* a state change's record (its changes go in the reply), or NULL */
    size_t state_reclen;
    const json_t *extra;          /* fields added to the reply, or to the error (a conflict's "version",
                                     the "seats" a hold found taken), or NULL */
    const char *reply_op;         /* the WebSocket reply's op; NULL: "published" or "updated" */
};

/* ops_pub_done() - tell @origin the outcome @out of its publication on @c. */
void ops_pub_done(const struct pub_origin *origin, struct chan *c, const struct pub_outcome *out);

#endif
