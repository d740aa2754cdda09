/* broker/app/adapters.h - REST adapters: domain endpoints that backends call,
 * translated into state operations on a state channel.
 *
 * Owns: the scoreboard adapter, the worked example of an adapter (see
 * docs/rest-api.md): POST /api/scoreboards/{game}/score {"team","points"},
 * PUT /api/scoreboards/{game}/teams {"home":..,"away":..} and
 * POST /api/scoreboards/{game}/reset act on the state channel scores:{game},
 * whose keys are "teams" (an object of team names) and "score:<team>"
 * (integers). An adapter validates its domain input and produces an op list;
 * app/api.c runs it like POST /api/channels/{channel}/state. Loop thread only. */
#ifndef HERALD_ADAPTERS_H
#define HERALD_ADAPTERS_H

#include <jansson.h>
#include <stddef.h>

#define SCOREBOARD_NS "scores"

/* scoreboard_ops() - the state operations for @action ("score", "teams" or
 * "reset") with request body @body (may be NULL for reset).
 * Return: a new reference to the ops array, or NULL with @reason (a
 * PROTO_E_BAD_FIELD matter). */
json_t *scoreboard_ops(const char *action, const json_t *body, char *reason);

/* scoreboard_channel() - write "scores:<game>" into @out (@len bytes);
 * 0 if @game (of @glen bytes) is a valid game id, -1 if not. */
int scoreboard_channel(const char *game, size_t glen, char *out, size_t len);

#endif
