/* broker/app/ops.h - what each client op does.
 *
 * Owns: the op table (connect, ping, refresh, subscribe, unsubscribe,
 * publish, history, presence, presence_stats, signal, state, seats) and the
 * prologue every op shares, from a decoded client message to its effect and
 * reply, and what the application lets go of when a session closes.
 * Does not own: decoding (protocol/msg.c), queues (net/session.c), channels
 * (core/channel.c), publishing (core/publish.c), history reads (history.c).
 * Errors go back to the client as {"op":"error"} replies with the request's
 * id; a bad message never closes the connection by itself.
 * Loop thread only. */
#ifndef HERALD_OPS_H
#define HERALD_OPS_H

#include <stddef.h>

#include "net/session.h"

/* ops_handle() - decode and carry out one complete client message
 * (sess_hooks.on_message). */
void ops_handle(sess_t *s, const unsigned char *buf, size_t len);

/* ops_on_closed() - @s is closing: drop its subscriptions, and release its
 * user's seat holds where the namespace says so (sess_hooks.on_closed). */
void ops_on_closed(sess_t *s);

#endif
