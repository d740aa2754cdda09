/* storage/tickets_db.h - the support-tickets adapter's rules, applied inside
 * the dashboard channel's write transaction.
 *
 * Owns: the layout of the dashboard state channel (one state key
 * "ticket:<id>" per ticket, whose value is the ticket: {"id","title",
 * "description","status","priority","requester","assignee","created",
 * "updated","comments"}, published as a delta on every change), its
 * unpublished rows ("comment:<id>:<n>" for each comment, "seq" for the
 * generated ids) and every rule between them: the status machine
 * (tickets_next()), ids unique, a bulk status update all or none.
 * DESIGN: a ticket is keyed state so that agents' consoles get every
 * create and change as a state delta, and the existing state query pages,
 * filters and searches the board. Comments are kept as rows beside it
 * (not in the ticket) so a long conversation does not make every delta of
 * that ticket long; the ticket carries their count. The loop validates each
 * request's shape first (app/tickets.c), so what reaches the transaction
 * can only fail on stored state. Each change also adds its entry to the
 * changed tickets' timeline channels ("{timeline_ns}:{id}", hist_tx_publish())
 * and queues its "ticket.changed" webhook events in the same transaction,
 * so a change is stored with its timeline entry or not at all.
 * Storage thread only, except tickets_next() and tickets_status_valid(). */
#ifndef HERALD_TICKETS_DB_H
#define HERALD_TICKETS_DB_H

#include <jansson.h>
#include <stdint.h>

#include "hist.h"

#define TICKET_ID_MAX 64          /* ticket ids: letters, digits, '_', '-', '.' */
#define TICKET_BULK_MAX 100       /* tickets in one bulk status update */
#define TICKET_COMMENTS_READ 100  /* the most recent comments a read returns */

enum tickets_action {
    TICKETS_CREATE = 1,           /* ticket (the new ticket's fields; "id" may be absent: generated) */
    TICKETS_STATUS,               /* id, status, by */
    TICKETS_ASSIGN,               /* id, assignee (NULL: unassign), by */
    TICKETS_COMMENT,              /* id, comment {"author","text"} */
    TICKETS_BULK_STATUS,          /* ids, status, by */
    TICKETS_GET,                  /* id: read the ticket and its latest comments (changes nothing) */
};

typedef struct tickets_req {
    enum tickets_action action;
    const char *id;               /* STATUS, ASSIGN, COMMENT, GET: the ticket */
    const char *status;           /* STATUS, BULK_STATUS: "open", "in_progress" or "closed" */
    const char *assignee;         /* ASSIGN: the agent, or NULL to unassign */
    const char *by;               /* STATUS, ASSIGN, BULK_STATUS: who made the change, or NULL */
    json_t *ticket;               /* CREATE: {"id"?,"title","description","priority","requester"} checked */
    json_t *comment;              /* COMMENT: {"author","text"} checked */
    json_t *ids;                  /* BULK_STATUS: 1-TICKET_BULK_MAX distinct ids */
    const char *timeline_ns;      /* the timelines' namespace: "{timeline_ns}:{id}" (NULL: "ticket") */
    const char *const *hooks;     /* webhooks that get "ticket.changed", and how many */
    size_t nhooks;
} tickets_req_t;

/* tickets_status_valid() - whether @s is a ticket status. Any thread. */
int tickets_status_valid(const char *s);

/* tickets_next() - the statuses a ticket in status @s may move to, as a
 * NULL-terminated list of static strings, or NULL for an unknown status:
 * open -> in_progress | closed, in_progress -> open | closed, closed -> open
 * (a reopen). A ticket never "moves" to the status it has. Any thread. */
const char *const *tickets_next(const char *s);

/* tickets_apply() - run @req (a tickets_req_t) in @tx, the dashboard
 * channel's write transaction. On success the result (hist_tx_result)
 * holds "ticket" (as stored; CREATE, STATUS, ASSIGN, COMMENT, GET), "from"
 * (STATUS: the status it left; ASSIGN: the previous assignee or null),
 * "comment" (COMMENT: the row stored, with its "n"), "comments" (GET: the
 * latest TICKET_COMMENTS_READ, oldest first), or for BULK_STATUS "tickets"
 * (each as stored, in the order asked) and "from" ({"<id>": status}).
 * Refusals carry {"code","reason"} and: PROTO_E_UNKNOWN_TICKET (BULK:
 * "unknown": the ids); PROTO_E_TICKET_EXISTS "ticket"; PROTO_E_BAD_TRANSITION
 * "status" and "allowed" (BULK: "refused": [{"id","status","allowed"}]).
 * A bulk update with unknown ids reports those first, with any refused
 * transitions beside them. Nothing is written when it refuses. A change
 * (not GET) publishes one timeline entry per changed ticket:
 * {"type":"created","ticket"}, {"type":"status","from","to","bulk"?},
 * {"type":"assigned","from","to"} or {"type":"comment","comment"}, each with
 * "at" and "by" (when given); the webhook event is the entry with "type":
 * "ticket.changed", "change" (the entry's type), "ticket" (the id) and
 * "channel".
 * Return: 0, HIST_E_REFUSED, or a storage code (see hist_custom_fn). */
int tickets_apply(hist_tx_t *tx, const void *req);

#endif
