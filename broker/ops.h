/* broker/ops.h - what each client op does.
 *
 * Owns: the dispatch from a decoded client message to its effect and reply.
 * Does not own: decoding (protocol/msg.c), queues (session.c) or channels
 * (channel.c). Errors go back to the client as {"op":"error"} replies with
 * the request's id; a bad message never closes the connection by itself.
 * Loop thread only. */
#ifndef HERALD_OPS_H
#define HERALD_OPS_H

#include <stddef.h>
#include <jansson.h>
#include "session.h"

/* ops_handle() - decode and carry out one complete client message. */
void ops_handle(sess_t *s, const unsigned char *buf, size_t len);

/* ops_publish() - publish @data on channel @name, for a WebSocket client or
 * the REST API.
 * @offset: [out] the offset assigned.
 * @reason: [out] on a PROTO_E_* failure, why (PROTO_REASON_MAX bytes).
 * Return: 0, or a PROTO_E_* code (PROTO_E_INTERNAL when out of memory). */
int ops_publish(const char *name, size_t len, const json_t *data, uint64_t *offset, char *reason);

#endif
