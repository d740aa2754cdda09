/* storage/tickets_db.c - see tickets_db.h. */
#include "tickets_db.h"
#include "msg.h"
#include "txnotify.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define TICKET_KEY "ticket:"
#define COMMENT_KEY "comment:"
#define SEQ_KEY "seq"

/* The status machine. Closing is allowed from either open status (a
 * duplicate or spam ticket is closed without being worked on); a closed
 * ticket only reopens, so its history stays readable as open -> ... ->
 * closed -> open -> ... */
static const char *const s_open[] = { "in_progress", "closed", NULL };
static const char *const s_in_progress[] = { "open", "closed", NULL };
static const char *const s_closed[] = { "open", NULL };

static const struct { const char *status; const char *const *next; } machine[] = {
    { "open", s_open }, { "in_progress", s_in_progress }, { "closed", s_closed },
};

const char *const *tickets_next(const char *s)
{
    for (size_t i = 0; s && i < sizeof machine / sizeof machine[0]; i++)
        if (!strcmp(machine[i].status, s)) return machine[i].next;
    return NULL;
}

int tickets_status_valid(const char *s)
{
    return tickets_next(s) != NULL;
}

static int may_move(const char *from, const char *to)
{
    const char *const *next = tickets_next(from);
    for (size_t i = 0; next && next[i]; i++)
        if (!strcmp(next[i], to)) return 1;
    return 0;
}

static json_t *allowed_list(const char *from)
{
    const char *const *next = tickets_next(from);
    json_t *a = json_array();
    for (size_t i = 0; a && next && next[i]; i++) json_array_append_new(a, json_string(next[i]));
    return a;
}

static int ticket_key(char *buf, size_t len, const char *id)
{
    int n = snprintf(buf, len, TICKET_KEY "%s", id);
    return n < 0 || (size_t)n >= len ? 0 : n;
}

/* *@t: a new reference to ticket @id, or NULL when there is none. */
static int ticket_get(hist_tx_t *tx, const char *id, json_t **t)
{
    char key[sizeof TICKET_KEY + TICKET_ID_MAX];
    int klen = ticket_key(key, sizeof key, id);
    uint64_t version;
    int rc;

    *t = NULL;
    if (!klen) return 0;
    rc = hist_tx_get(tx, key, (size_t)klen, t, &version);
    if (!rc && *t && !json_is_object(*t)) {
        json_decref(*t);
        *t = NULL;
    }
    return rc;
}

static int ticket_put(hist_tx_t *tx, const json_t *t)
{
    char key[sizeof TICKET_KEY + TICKET_ID_MAX];
    int klen = ticket_key(key, sizeof key, json_string_value(json_object_get(t, "id")));
    return klen ? hist_tx_put(tx, key, (size_t)klen, t) : -EINVAL;
}

static int comment_key(char *buf, size_t len, const char *id, json_int_t n)
{
    int k = snprintf(buf, len, COMMENT_KEY "%s:%lld", id, (long long)n);
    return k < 0 || (size_t)k >= len ? 0 : k;
}

/* CREATE: the id given, or the next generated one ("T000001", ...: zero
 * padded so the board's key order is the order they were made in). */
static int create(hist_tx_t *tx, const tickets_req_t *r)
{
    const char *given = json_string_value(json_object_get(r->ticket, "id"));
    char id[TICKET_ID_MAX + 1];
    int64_t now = hist_tx_now(tx);
    json_t *t, *seq = NULL;
    int rc;

    if (given) {
        snprintf(id, sizeof id, "%s", given);
    } else {
        json_int_t n;
        if ((rc = hist_tx_aux_get(tx, SEQ_KEY, sizeof SEQ_KEY - 1, &seq))) return rc;
        n = json_is_integer(seq) ? json_integer_value(seq) + 1 : 1;
        json_decref(seq);
        /* A generated id may meet one a backend chose: skip past it. */
        for (;; n++) {
            snprintf(id, sizeof id, "T%06lld", (long long)n);
            if ((rc = ticket_get(tx, id, &t))) return rc;
            if (!t) break;
            json_decref(t);
        }
        if (!(seq = json_integer(n))) return -ENOMEM;
        rc = hist_tx_aux_put(tx, SEQ_KEY, sizeof SEQ_KEY - 1, seq);
        json_decref(seq);
        if (rc) return rc;
    }
    if ((rc = ticket_get(tx, id, &t))) return rc;
    if (t) return hist_tx_refuse(tx, PROTO_E_TICKET_EXISTS, "a ticket with this id exists: nothing changed",
                         json_pack("{s:o}", "ticket", t));
    t = json_pack("{s:s,s:O,s:O,s:s,s:O,s:O,s:n,s:I,s:I,s:i}", "id", id,
                  "title", json_object_get(r->ticket, "title"),
                  "description", json_object_get(r->ticket, "description"), "status", "open",
                  "priority", json_object_get(r->ticket, "priority"),
                  "requester", json_object_get(r->ticket, "requester"), "assignee",
                  "created", (json_int_t)now, "updated", (json_int_t)now, "comments", 0);
    if (!t) return -ENOMEM;
    if ((rc = ticket_put(tx, t))) { json_decref(t); return rc; }
    hist_tx_result(tx, json_pack("{s:o}", "ticket", t));
    return 0;
}

static int unknown(hist_tx_t *tx)
{
    return hist_tx_refuse(tx, PROTO_E_UNKNOWN_TICKET, "no ticket has this id", NULL);
}

static void touch(json_t *t, int64_t now, const char *by)
{
    json_object_set_new(t, "updated", json_integer(now));
    if (by) json_object_set_new(t, "updated_by", json_string(by));
}

static int status(hist_tx_t *tx, const tickets_req_t *r)
{
    char from[16], why[PROTO_REASON_MAX];
    json_t *t;
    int rc;

    if ((rc = ticket_get(tx, r->id, &t))) return rc;
    if (!t) return unknown(tx);
    snprintf(from, sizeof from, "%s", json_is_string(json_object_get(t, "status")) ?
             json_string_value(json_object_get(t, "status")) : "");
    if (!may_move(from, r->status)) {
        snprintf(why, sizeof why, "a ticket in status %s cannot become %s: nothing changed", from, r->status);
        json_decref(t);
        return hist_tx_refuse(tx, PROTO_E_BAD_TRANSITION, why, json_pack("{s:s,s:o}", "status", from, "allowed",
                                                                  allowed_list(from)));
    }
    json_object_set_new(t, "status", json_string(r->status));
    touch(t, hist_tx_now(tx), r->by);
    if ((rc = ticket_put(tx, t))) { json_decref(t); return rc; }
    hist_tx_result(tx, json_pack("{s:o,s:s}", "ticket", t, "from", from));
    return 0;
}

static int assign(hist_tx_t *tx, const tickets_req_t *r)
{
    json_t *t, *from;
    int rc;

    if ((rc = ticket_get(tx, r->id, &t))) return rc;
    if (!t) return unknown(tx);
    from = json_incref(json_object_get(t, "assignee"));
    json_object_set_new(t, "assignee", r->assignee ? json_string(r->assignee) : json_null());
    touch(t, hist_tx_now(tx), r->by);
    if ((rc = ticket_put(tx, t))) { json_decref(from); json_decref(t); return rc; }
    hist_tx_result(tx, json_pack("{s:o,s:o}", "ticket", t, "from", from ? from : json_null()));
    return 0;
}

static int comment(hist_tx_t *tx, const tickets_req_t *r)
{
    char key[sizeof COMMENT_KEY + TICKET_ID_MAX + 24];
    int64_t now = hist_tx_now(tx);
    json_int_t n;
    json_t *t, *row;
    int klen, rc;

    if ((rc = ticket_get(tx, r->id, &t))) return rc;
    if (!t) return unknown(tx);
    n = json_integer_value(json_object_get(t, "comments")) + 1;
    if (!(klen = comment_key(key, sizeof key, r->id, n))) { json_decref(t); return -EINVAL; }
    row = json_pack("{s:I,s:O,s:O,s:I}", "n", n, "author", json_object_get(r->comment, "author"), "text",
                    json_object_get(r->comment, "text"), "at", (json_int_t)now);
    if (!row) { json_decref(t); return -ENOMEM; }
    json_object_set_new(t, "comments", json_integer(n));
    touch(t, now, json_string_value(json_object_get(r->comment, "author")));
    if ((rc = hist_tx_aux_put(tx, key, (size_t)klen, row)) || (rc = ticket_put(tx, t))) {
        json_decref(row);
        json_decref(t);
        return rc;
    }
    hist_tx_result(tx, json_pack("{s:o,s:o}", "ticket", t, "comment", row));
    return 0;
}

/* BULK_STATUS: every ticket is read and checked before any is written, so
 * one unknown id or refused transition leaves all of them as they were. */
static int bulk_status(hist_tx_t *tx, const tickets_req_t *r)
{
    size_t n = json_array_size(r->ids), i;
    json_t *found = json_array(), *unknown_ids = json_array(), *refused = json_array(), *from = json_object(), *id;
    int64_t now = hist_tx_now(tx);
    int rc = -ENOMEM;

    if (!found || !unknown_ids || !refused || !from) goto out;
    json_array_foreach(r->ids, i, id) {
        json_t *t;
        const char *cur;
        if ((rc = ticket_get(tx, json_string_value(id), &t))) goto out;
        if (!t) {
            json_array_append(unknown_ids, id);
            json_array_append_new(found, json_null());
            continue;
        }
        cur = json_string_value(json_object_get(t, "status"));
        if (!may_move(cur, r->status))
            json_array_append_new(refused, json_pack("{s:O,s:s?,s:o}", "id", id, "status", cur, "allowed",
                                                     allowed_list(cur)));
        json_array_append_new(found, t);
    }
    if (json_array_size(unknown_ids)) {
        rc = hist_tx_refuse(tx, PROTO_E_UNKNOWN_TICKET, "some ids name no ticket: nothing changed",
                    json_pack("{s:O,s:O}", "unknown", unknown_ids, "refused", refused));
        goto out;
    }
    if (json_array_size(refused)) {
        char why[PROTO_REASON_MAX];
        snprintf(why, sizeof why, "%zu of the %zu tickets cannot become %s: nothing changed",
                 json_array_size(refused), n, r->status);
        rc = hist_tx_refuse(tx, PROTO_E_BAD_TRANSITION, why, json_pack("{s:O}", "refused", refused));
        goto out;
    }
    for (i = 0; i < n; i++) {
        json_t *t = json_array_get(found, i);
        json_object_set(from, json_string_value(json_object_get(t, "id")), json_object_get(t, "status"));
        json_object_set_new(t, "status", json_string(r->status));
        touch(t, now, r->by);
        if ((rc = ticket_put(tx, t))) goto out;
    }
    hist_tx_result(tx, json_pack("{s:O,s:O}", "tickets", found, "from", from));
    rc = 0;
out:
    json_decref(found);
    json_decref(unknown_ids);
    json_decref(refused);
    json_decref(from);
    return rc;
}

static int read_one(hist_tx_t *tx, const tickets_req_t *r)
{
    char key[sizeof COMMENT_KEY + TICKET_ID_MAX + 24];
    json_t *t, *comments;
    json_int_t n, k;
    int rc;

    if ((rc = ticket_get(tx, r->id, &t))) return rc;
    if (!t) return unknown(tx);
    if (!(comments = json_array())) { json_decref(t); return -ENOMEM; }
    n = json_integer_value(json_object_get(t, "comments"));
    for (k = n > TICKET_COMMENTS_READ ? n - TICKET_COMMENTS_READ + 1 : 1; k <= n; k++) {
        json_t *row = NULL;
        int klen = comment_key(key, sizeof key, r->id, k);
        if (klen && (rc = hist_tx_aux_get(tx, key, (size_t)klen, &row))) {
            json_decref(comments);
            json_decref(t);
            return rc;
        }
        if (row) json_array_append_new(comments, row);
    }
    hist_tx_result(tx, json_pack("{s:o,s:o}", "ticket", t, "comments", comments));
    return 0;
}

/* Adds @ev (borrowed; it gains "by" and, if absent, "at") to ticket @id's
 * timeline channel "{timeline_ns}:{id}" in the transaction, and queues it
 * as a "ticket.changed" webhook event (with "ticket": @id). */
static int tell(hist_tx_t *tx, const tickets_req_t *r, const char *id, json_t *ev, json_t *at)
{
    char name[256];
    int n, rc;

    if (r->by) json_object_set_new(ev, "by", json_string(r->by));
    if (!json_object_get(ev, "at")) json_object_set(ev, "at", at);
    n = snprintf(name, sizeof name, "%s:%s", r->timeline_ns ? r->timeline_ns : "ticket", id);
    if (n < 0 || (size_t)n >= sizeof name) return 0;     /* refused at create */
    rc = txnotify(tx, name, ev);
    if (!rc && r->nhooks) {
        json_t *wh = json_deep_copy(ev);
        if (!wh) return ENOMEM;
        json_object_set_new(wh, "change", json_incref(json_object_get(ev, "type")));
        json_object_set_new(wh, "type", json_string("ticket.changed"));
        json_object_set_new(wh, "ticket", json_string(id));
        json_object_set_new(wh, "channel", json_string(name));
        rc = hist_tx_event(tx, r->hooks, r->nhooks, wh);
        json_decref(wh);
    }
    return rc;
}

/* The change in @res committed or nothing does: each changed ticket's
 * timeline entry (and webhook event) goes in the same transaction. */
static int timeline(hist_tx_t *tx, const tickets_req_t *r, const json_t *res)
{
    const json_t *t = json_object_get(res, "ticket");
    json_t *at = json_object_get(t, "updated");
    const char *id = json_string_value(json_object_get(t, "id"));
    json_t *ev = NULL;
    int rc = 0;

    switch (r->action) {
    case TICKETS_CREATE:
        ev = json_pack("{s:s,s:O}", "type", "created", "ticket", t);
        break;
    case TICKETS_STATUS:
        ev = json_pack("{s:s,s:O,s:O}", "type", "status", "from", json_object_get(res, "from"), "to",
                       json_object_get(t, "status"));
        break;
    case TICKETS_ASSIGN:
        ev = json_pack("{s:s,s:O,s:O}", "type", "assigned", "from", json_object_get(res, "from"), "to",
                       json_object_get(t, "assignee"));
        break;
    case TICKETS_COMMENT:
        ev = json_pack("{s:s,s:O}", "type", "comment", "comment", json_object_get(res, "comment"));
        break;
    case TICKETS_BULK_STATUS: {
        const json_t *from = json_object_get(res, "from"), *each;
        size_t i;
        json_array_foreach(json_object_get(res, "tickets"), i, each) {
            const char *eid = json_string_value(json_object_get(each, "id"));
            json_t *e = json_pack("{s:s,s:O,s:O,s:b}", "type", "status", "from", json_object_get(from, eid),
                                  "to", json_object_get(each, "status"), "bulk", 1);
            if (!e || !eid) {
                json_decref(e);
                return ENOMEM;
            }
            rc = tell(tx, r, eid, e, json_object_get(each, "updated"));
            json_decref(e);
            if (rc) return rc;
        }
        return 0;
    }
    case TICKETS_GET:
        return 0;
    }
    if (!ev || !id) {
        json_decref(ev);
        return ENOMEM;
    }
    rc = tell(tx, r, id, ev, at);
    json_decref(ev);
    return rc;
}

int tickets_apply(hist_tx_t *tx, const void *req)
{
    const tickets_req_t *r = req;
    json_t *res;
    int rc;

    switch (r->action) {
    case TICKETS_CREATE: rc = create(tx, r); break;
    case TICKETS_STATUS: rc = status(tx, r); break;
    case TICKETS_ASSIGN: rc = assign(tx, r); break;
    case TICKETS_COMMENT: rc = comment(tx, r); break;
    case TICKETS_BULK_STATUS: rc = bulk_status(tx, r); break;
    case TICKETS_GET: return read_one(tx, r);
    default: return -EINVAL;
    }
    if (!rc && (res = hist_tx_take_result(tx))) {
        rc = timeline(tx, r, res);
        hist_tx_result(tx, res);
    }
    return rc;
}
