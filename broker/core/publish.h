/* broker/core/publish.h - the one way to publish, and how its outcome is told.
 *
 * Owns: the checks every publication passes whoever makes it (a WebSocket
 * client, a REST backend, a seat offer, the broker's own sys:stats): the
 * channel can be opened, is not a state channel, is not in the broker's
 * own sys namespace unless the broker publishes, and reply_to names an
 * offset it has. Does not own: who may publish (auth/, asked by the caller
 * before) or the storage path and the answer (pubpipe.c).
 * Loop thread only. */
#ifndef HERALD_PUBLISH_H
#define HERALD_PUBLISH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/channel.h"
#include "net/reply.h"

/* publish() - publish @data (borrowed) on channel @name for @origin (taken),
 * sent by @from (borrowed; NULL: the server), replying to offset @reply_to
 * (0: none) as @kind (NULL: a plain message; see publish_parse_reply()). On 0
 * the outcome comes later, from the pipeline (pubpipe.h). An @origin of kind
 * ORIGIN_NONE is the broker itself: only it may publish in "sys:".
 * @reason: [out] on a PROTO_E_* failure, why (PROTO_REASON_MAX bytes).
 * Return: 0, or a PROTO_E_* code (PROTO_E_INTERNAL when out of memory); on
 * failure @origin was cleared. */
int publish(const char *name, size_t len, const json_t *data, const json_t *from, uint64_t reply_to,
            const char *kind, origin_t *origin, char *reason);

/* publish_parse_reply() - read a publication's optional "reply_to" (an
 * offset >= 1) and "kind" ("message", the default, "reaction", "edit" or
 * "delete"; the last three need reply_to) from @msg. *@kind is NULL for a
 * plain message, else a static string.
 * Return: 0, or PROTO_E_BAD_FIELD with @reason. */
int publish_parse_reply(const json_t *msg, uint64_t *reply_to, const char **kind, char *reason);

#endif
