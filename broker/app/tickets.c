/* broker/app/tickets.c - see tickets.h.
 *
 * DESIGN: as in app/commerce.c, every ticket request is one custom state
 * operation: queued to the storage thread, applied all or none in the
 * dashboard channel's transaction (storage/tickets_db.c), its change published
 * there as a state delta with an offset, and only then answered. Everything
 * that does not need stored state (ids, types, lengths, statuses) is checked
 * here first, so a bad request writes nothing and costs no commit.
 * Each change's timeline entries (and "ticket.changed" webhook events) are
 * written by the storage side in that same transaction
 * (storage/tickets_db.c, hist_tx_publish()): an acknowledged change has its
 * timeline entry, a refused one has none, whatever crashes when. */
#include "app/tickets.h"
#include "app/fields.h"
#include "auth/auth.h"
#include "core/channel.h"
#include "core/pubpipe.h"
#include "tickets_db.h"
#include "chname.h"
#include "herald.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TITLE_MAX 200
#define TEXT_MAX 4000             /* a description or a comment */

/* A request on its way through the store; owned by its pub_ops_t. */
typedef struct tk_job {
    tickets_req_t req;
    char id[TICKET_ID_MAX + 1];
    char status[16];
    char assignee[AUTH_USER_MAX + 1];
    char by[AUTH_USER_MAX + 1];
    const char *hooks[WEBHOOK_MAX]; /* webhooks of ticket.changed (names in srv.cfg) */
} tk_job_t;

static const struct { const char *name; enum tickets_action action; } actions[] = {
    { "create", TICKETS_CREATE }, { "status", TICKETS_STATUS }, { "assign", TICKETS_ASSIGN },
    { "comment", TICKETS_COMMENT }, { "bulk_status", TICKETS_BULK_STATUS }, { "get", TICKETS_GET },
};

static const char *const priorities[] = { "low", "normal", "high", "urgent" };

int tickets_enabled(void)
{
    return srv.cfg.tickets_enabled;
}

const char *tickets_board(void)
{
    return srv.cfg.tickets_dashboard_channel;
}

int tickets_is_board(const char *name, size_t len)
{
    return tickets_enabled() && strlen(srv.cfg.tickets_dashboard_channel) == len &&
           !memcmp(name, srv.cfg.tickets_dashboard_channel, len);
}

/* Writes the ticket's timeline channel "{ns}:{id}" into @out.
 * Return: 0, or -1 if it is not a valid channel name. */
static int timeline_channel(const char *id, char *out, size_t len)
{
    int n = snprintf(out, len, "%s:%s", srv.cfg.tickets_timeline_ns, id);
    return n < 0 || (size_t)n >= len || !chname_valid(out, (size_t)n, NULL) ? -1 : 0;
}

/* A user id (an agent, a requester, a comment's author): as a token's
 * "sub", so an agent console can compare it with its own identity. */
static int user_ok(const json_t *v)
{
    return json_is_string(v) && auth_user_valid(json_string_value(v), json_string_length(v));
}

static int text_ok(const json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) >= 1 && json_string_length(v) <= max;
}

/* Only the fields named in @known (NULL-terminated) may appear in @body:
 * a misspelt field is refused rather than silently dropped. */
static int only_fields(const json_t *body, const char *const *known, char *reason)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)body, k, v) {
        size_t i;
        for (i = 0; known[i] && strcmp(k, known[i]); i++) {}
        if (!known[i]) {
            snprintf(reason, PROTO_REASON_MAX, "unknown field \"%.64s\"", k);
            return PROTO_E_BAD_FIELD;
        }
    }
    return 0;
}

/* "by": absent, or who made the change (copied into @j). */
static int take_by(tk_job_t *j, const json_t *body, char *reason)
{
    const json_t *by = json_object_get(body, "by");

    if (!by) return 0;
    if (!user_ok(by)) return field_bad(reason, "field \"by\" must be the agent's user id: 1-128 bytes without ',' or '#'");
    memcpy(j->by, json_string_value(by), json_string_length(by) + 1);
    j->req.by = j->by;
    return 0;
}

static int take_status(tk_job_t *j, const json_t *body, char *reason)
{
    const json_t *st = json_object_get(body, "status");

    if (!json_is_string(st) || !tickets_status_valid(json_string_value(st)))
        return field_bad(reason, "field \"status\" must be one of open, in_progress, closed");
    snprintf(j->status, sizeof j->status, "%s", json_string_value(st));
    j->req.status = j->status;
    return 0;
}

/* CREATE: a copy of the ticket's fields, defaults filled in. */
static int check_create(tk_job_t *j, const json_t *body, char *reason)
{
    static const char *const known[] = { "id", "title", "description", "priority", "requester", NULL };
    const json_t *id = json_object_get(body, "id"), *pr = json_object_get(body, "priority");
    const json_t *desc = json_object_get(body, "description");
    char name[CHNAME_MAX + 1];
    size_t i;
    int r;

    if ((r = only_fields(body, known, reason))) return r;
    if (id && (!json_is_string(id) || !field_id_ok(json_string_value(id), json_string_length(id), TICKET_ID_MAX)))
        return field_bad(reason, "field \"id\" must be a ticket id: 1-64 letters, digits, '_', '-' or '.' (or absent: "
                   "the broker numbers it)");
    if (id && !strcmp(json_string_value(id), "bulk"))
        return field_bad(reason, "\"bulk\" is not a ticket id: /api/tickets/bulk/status is the bulk update");
    if (id && timeline_channel(json_string_value(id), name, sizeof name))
        return field_bad(reason, "the ticket's timeline channel {namespace}:{id} would not be a valid channel name");
    if (!text_ok(json_object_get(body, "title"), TITLE_MAX))
        return field_bad(reason, "field \"title\" must be a string of 1 to 200 bytes");
    if (desc && !json_is_string(desc)) return field_bad(reason, "field \"description\" must be a string");
    if (desc && json_string_length(desc) > TEXT_MAX)
        return field_bad(reason, "field \"description\" must be at most 4000 bytes");
    if (!user_ok(json_object_get(body, "requester")))
        return field_bad(reason, "field \"requester\" must be the user who asked: 1-128 bytes without ',' or '#'");
    for (i = 0; pr && i < sizeof priorities / sizeof priorities[0]; i++)
        if (json_is_string(pr) && !strcmp(json_string_value(pr), priorities[i])) break;
    if (pr && i == sizeof priorities / sizeof priorities[0])
        return field_bad(reason, "field \"priority\" must be one of low, normal, high, urgent");
    if (!(j->req.ticket = json_pack("{s:O,s:s,s:O,s:s}", "title", json_object_get(body, "title"), "description",
                                    desc ? json_string_value(desc) : "", "requester",
                                    json_object_get(body, "requester"), "priority",
                                    pr ? json_string_value(pr) : "normal")))
        return field_oom(reason);
    if (id) json_object_set(j->req.ticket, "id", (json_t *)id);
    return 0;
}

static int check_bulk(tk_job_t *j, const json_t *body, char *reason)
{
    static const char *const known[] = { "ids", "status", "by", NULL };
    const json_t *ids = json_object_get(body, "ids"), *id;
    size_t i, k;
    int r;

    if ((r = only_fields(body, known, reason))) return r;
    if (!json_is_array(ids) || !json_array_size(ids) || json_array_size(ids) > TICKET_BULK_MAX)
        return field_bad(reason, "field \"ids\" must be a list of 1 to 100 ticket ids");
    json_array_foreach(ids, i, id) {
        if (!json_is_string(id) || !field_id_ok(json_string_value(id), json_string_length(id), TICKET_ID_MAX)) {
            snprintf(reason, PROTO_REASON_MAX, "ids[%zu] must be a ticket id: 1-64 letters, digits, '_', '-' or '.'",
                     i);
            return PROTO_E_BAD_FIELD;
        }
        for (k = 0; k < i; k++)
            if (json_equal((json_t *)id, json_array_get(ids, k))) {
                snprintf(reason, PROTO_REASON_MAX, "ids[%zu]: \"%s\" is listed twice", i, json_string_value(id));
                return PROTO_E_BAD_FIELD;
            }
    }
    if ((r = take_status(j, body, reason)) || (r = take_by(j, body, reason))) return r;
    if (!(j->req.ids = json_deep_copy(ids))) return field_oom(reason);
    return 0;
}

/* The request's one ticket, from the path. */
static int take_id(tk_job_t *j, const char *id, char *reason)
{
    if (!id || !field_id_ok(id, strlen(id), TICKET_ID_MAX)) return field_bad(reason, "a ticket id is 1-64 letters, digits, '_', '-' or '.'");
    snprintf(j->id, sizeof j->id, "%s", id);
    j->req.id = j->id;
    return 0;
}

static void job_free(void *p)
{
    tk_job_t *j = p;
    if (!j) return;
    json_decref(j->req.ticket);
    json_decref(j->req.comment);
    json_decref(j->req.ids);
    free(j);
}

/* pub_ops_t.done: after the commit, before the answer: name the timeline
 * entries the change wrote, each with its offset ("timeline"). */
static void job_done(chan_t *c, pub_ops_t *ops, int code, json_t *result)
{
    json_t *told;

    (void)c;
    if (code || !result || ((tk_job_t *)ops->custom)->req.action == TICKETS_GET || !(told = json_array())) return;
    for (const hist_side_t *s = ops->side; s; s = s->next)
        json_array_append_new(told, json_pack("{s:s%,s:I}", "channel", s->chan, s->chanlen, "offset",
                                              (json_int_t)s->offset));
    json_object_set_new(result, "timeline", told);
}

/* Queues @j (taken) on the dashboard channel for @origin (taken). */
static int submit(tk_job_t *j, origin_t *origin, char *reason)
{
    const config_t *cfg = &srv.cfg;
    pub_custom_t pc = { .apply = tickets_apply, .arg = &j->req, .custom = j, .custom_free = job_free,
                        .done = job_done, .reply_op = "tickets" };

    /* The storage thread reads these: the configuration outlives every request. */
    j->req.timeline_ns = cfg->tickets_timeline_ns;
    if (cfg->nwebhooks && j->req.action != TICKETS_GET) {
        j->req.nhooks = config_webhooks_for(cfg, WH_EV_TICKET_CHANGED, "", 0, j->hooks);
        j->req.hooks = j->hooks;
    }
    return pubpipe_custom(cfg->tickets_dashboard_channel, &pc, origin, reason);
}

int tickets_request(const char *action, const char *id, const json_t *body, origin_t *origin, char *reason)
{
    static const char *const status_fields[] = { "status", "by", NULL };
    static const char *const assign_fields[] = { "assignee", "by", NULL };
    static const char *const comment_fields[] = { "author", "text", NULL };
    tk_job_t *j = NULL;
    size_t i;
    int r = PROTO_E_BAD_FIELD;

    if (!tickets_enabled()) {
        snprintf(reason, PROTO_REASON_MAX, "the tickets adapter is off: [adapter tickets] enabled = on");
        r = PROTO_E_DISABLED;
        goto fail;
    }
    for (i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (!strcmp(action, actions[i].name)) break;
    if (i == sizeof actions / sizeof actions[0]) { field_bad(reason, "no such tickets action"); goto fail; }
    if (!(j = calloc(1, sizeof *j))) { r = field_oom(reason); goto fail; }
    j->req.action = actions[i].action;
    if (j->req.action != TICKETS_GET && !json_is_object(body)) {
        field_bad(reason, "the body must be a JSON object");
        goto fail;
    }
    if (j->req.action != TICKETS_CREATE && j->req.action != TICKETS_BULK_STATUS && (r = take_id(j, id, reason)))
        goto fail;
    switch (j->req.action) {
    case TICKETS_CREATE:
        r = check_create(j, body, reason);
        break;
    case TICKETS_STATUS:
        if (!(r = only_fields(body, status_fields, reason)) && !(r = take_status(j, body, reason)))
            r = take_by(j, body, reason);
        break;
    case TICKETS_ASSIGN: {
        const json_t *a = json_object_get(body, "assignee");
        if ((r = only_fields(body, assign_fields, reason))) break;
        if (!a || (!json_is_null(a) && !user_ok(a))) {
            r = field_bad(reason, "field \"assignee\" must be the agent's user id (1-128 bytes without ',' or '#'), or "
                    "null to unassign");
            break;
        }
        if (json_is_string(a)) {
            memcpy(j->assignee, json_string_value(a), json_string_length(a) + 1);
            j->req.assignee = j->assignee;
        }
        r = take_by(j, body, reason);
        break;
    }
    case TICKETS_COMMENT:
        if ((r = only_fields(body, comment_fields, reason))) break;
        if (!user_ok(json_object_get(body, "author"))) {
            r = field_bad(reason, "field \"author\" must be a user id: 1-128 bytes without ',' or '#'");
            break;
        }
        if (!text_ok(json_object_get(body, "text"), TEXT_MAX)) {
            r = field_bad(reason, "field \"text\" must be a string of 1 to 4000 bytes");
            break;
        }
        if (!(j->req.comment = json_pack("{s:O,s:O}", "author", json_object_get(body, "author"), "text",
                                         json_object_get(body, "text"))))
            r = field_oom(reason);
        break;
    case TICKETS_BULK_STATUS:
        r = check_bulk(j, body, reason);
        break;
    case TICKETS_GET:
        r = 0;
        break;
    }
    if (r) goto fail;
    return submit(j, origin, reason);
fail:
    job_free(j);
    origin_clear(origin);
    return r;
}
