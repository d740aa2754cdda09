/* broker/net/sse.h - a Server-Sent Events stream: a long-lived HTTP
 * response (text/event-stream) that carries a session's messages as events.
 *
 * Owns: struct sse_stream, which holds the stream's session (a sess_t, so
 * core/channel.c subscribes and fans out to it exactly as to a WebSocket
 * session: a reference to the shared JSON frame per publication, no
 * allocation and no encoding per subscriber), its channels in request order
 * and its cursor: the last epoch and offset delivered per channel, which is
 * every event's id. The SSE text is made at write time from the shared JSON
 * frames, in the session's reusable write buffer: a publication becomes
 * "id: <cursor>\nevent: pub\ndata: <the pub JSON>\n\n"; the subscribed reply
 * of a subscription becomes "event: subscribed", an "event: unrecovered" when
 * the resume position is no longer in history, and one "event: pub" per
 * replayed publication (docs/protocol.md, "Server-Sent Events").
 * Does not own: which channels a stream subscribes to, or who may
 * (app/sse.c); the queue and its bound (net/session.c).
 * Loop thread only. */
#ifndef HERALD_SSE_H
#define HERALD_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "net/http.h"
#include "net/session.h"

/* Most channels one stream may carry. */
#define SSE_CHANNELS_MAX 16

/* sse_open() - answer @r with 200 text/event-stream and the retry: hint,
 * and make it a stream of @nchan channels (1..SSE_CHANNELS_MAX), whose
 * session goes in *@out; name its channels with sse_set_channel() before
 * subscribing it. The stream is freed when the connection closes.
 * Return: 0; PROTO_E_RATE_LIMITED (limits.connections_per_ip: nothing was
 * sent, answer with 429); -ENOMEM (nothing sent); -EIO (the headers could
 * not be written: close the connection). */
int sse_open(http_req_t *r, unsigned nchan, sess_t **out);

/* sse_set_channel() - channel @i of stream @s is @name (@len bytes), and
 * its cursor starts at @epoch (copied) and @offset: where the client is. */
void sse_set_channel(sess_t *s, unsigned i, const char *name, size_t len, const char *epoch, uint64_t offset);

/* The stream's writing (its events, ": heartbeat" comments, finding a
 * client that left without a read, freeing it when the connection closes)
 * is reached by the session through struct sess_stream_ops
 * (net/session.h), so the session does not know it is SSE. */

#endif
