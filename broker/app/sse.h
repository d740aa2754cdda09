/* broker/app/sse.h - GET /api/sse: publications of channels as a
 * Server-Sent Events stream (docs/rest-api.md, docs/protocol.md).
 *
 * Owns: what a stream asks for and whether it may: its channels (repeated
 * ?channel=), its identity (a token in Authorization: Bearer or ?token=, or
 * none where auth.anonymous allows), the subscribe permission of each
 * channel (auth_may_subscribe, as for a WebSocket subscribe), and where it
 * resumes (Last-Event-ID header or ?lastEventId=, the id of the last event
 * it saw), which becomes a `since` recovery per channel read through
 * app/history.c exactly as for WebSocket. Everything is checked before the
 * stream starts, so a refusal is an HTTP status with the JSON error body.
 * Does not own: the stream's transport and event text (net/sse.c).
 * Loop thread only. */
#ifndef HERALD_APP_SSE_H
#define HERALD_APP_SSE_H

#include "net/http.h"

/* sse_get() - the route handler of GET /api/sse.
 * Return: 0 (answered with an error, or streaming), or -1 to close. */
int sse_get(http_req_t *r);

#endif
