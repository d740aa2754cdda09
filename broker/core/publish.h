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
#include "core/pubpipe.h"
#include "net/reply.h"

/* publish() - publish @data (borrowed) on channel @name for @origin (taken),
 * with @meta (borrowed: sender, reply_to, kind, author check, idempotency
 * key; NULL: a plain message from the server; see pubpipe.h). On 0 the
 * outcome comes from the pipeline (pubpipe.h): later for a history channel,
 * unless it was refused at once as overloaded (PROTO_E_OVERLOADED, told
 * before this returns, like every outcome on a channel without history). An @origin of kind
 * ORIGIN_NONE is the broker itself: only it may publish in "sys:".
 * @reason: [out] on a PROTO_E_* failure, why (PROTO_REASON_MAX bytes).
 * Return: 0, or a PROTO_E_* code: PROTO_E_BAD_CHANNEL (a user_list name out
 * of order), PROTO_E_FORBIDDEN ("sys:"; an author check in a namespace
 * without history, where the original's author is not known),
 * PROTO_E_BAD_FIELD (reply_to beyond the channel; an idempotency key in a
 * namespace without history), PROTO_E_DISABLED (a state channel),
 * PROTO_E_LIMIT, PROTO_E_INTERNAL (out of memory); on failure @origin was
 * cleared. */
int publish(const char *name, size_t len, const json_t *data, const pub_meta_t *meta, origin_t *origin,
            char *reason);

/* publish_parse_meta() - read a publication's optional fields from @msg into
 * @meta (zeroed first; its pointers borrow from @msg): "reply_to" (an
 * offset >= 1), "kind" ("message", the default, "reaction", "edit" or
 * "delete"; the last three need reply_to; meta->kind is NULL for a plain
 * message, else a static string) and "idempotency_key" (a string of 1 to
 * HIST_IDEM_MAX bytes). The caller sets meta->from and meta->check_author.
 * Return: 0, or PROTO_E_BAD_FIELD with @reason. */
int publish_parse_meta(const json_t *msg, pub_meta_t *meta, char *reason);

/* publish_is_edit() - whether @kind (from publish_parse_meta()) edits or
 * deletes the publication it refers to. */
int publish_is_edit(const char *kind);

#endif
