/* broker/app/tickets.h - the support-tickets adapter: help-desk tickets
 * for backends over REST (/api/tickets...), shown live to agents.
 *
 * Owns: validating each ticket request and turning it into one custom state
 * operation on the dashboard channel ([adapter tickets] dashboard_channel),
 * which storage/tickets_db.c applies in that channel's write transaction; and,
 * once it has committed, the ticket's timeline publication on
 * {timeline_namespace}:{id} (timeline_notify(), the one place that does it).
 * Does not own: the routes (app/api.c lists them) or the rules (storage/).
 * Loop thread only. */
#ifndef HERALD_APP_TICKETS_H
#define HERALD_APP_TICKETS_H

#include <jansson.h>
#include <stddef.h>

#include "net/reply.h"

/* tickets_enabled() - whether [adapter tickets] enabled = on. */
int tickets_enabled(void);

/* tickets_board() - the dashboard channel's name (static). */
const char *tickets_board(void);

/* tickets_is_board() - whether channel @name (@len bytes) is the dashboard,
 * which changes through ticket requests only (generic state ops are
 * refused). */
int tickets_is_board(const char *name, size_t len);

/* tickets_request() - carry out @action for @origin (taken): "create"
 * (@body {"id"?,"title","description"?,"priority"?,"requester"}), "status"
 * (@id, @body {"status","by"?}), "assign" (@id, @body {"assignee": agent or
 * null,"by"?}), "comment" (@id, @body {"author","text"}), "bulk_status"
 * (@body {"ids":[...],"status","by"?}) or "get" (@id; @body unused).
 * The answer comes from the pipeline after commit: the dashboard's
 * "offset" and "changes", and what storage/tickets_db.h reports ("ticket",
 * "from", "comment", "comments", "tickets"), plus "timeline" (the channels
 * told) for a change.
 * @reason: [out] on failure (PROTO_REASON_MAX bytes).
 * Return: 0, or PROTO_E_BAD_FIELD, PROTO_E_DISABLED, PROTO_E_LIMIT,
 * PROTO_E_INTERNAL (@origin cleared). */
int tickets_request(const char *action, const char *id, const json_t *body, origin_t *origin, char *reason);

#endif
