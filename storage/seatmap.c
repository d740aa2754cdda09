/* storage/seatmap.c - see seatmap.h.
 *
 * A seat value is {"section","price_class"?,"status"} plus, when held,
 * "holder" and "expires" (and "offer": true for a waitlist offer), or, when
 * booked, "holder". A section value is {"total","free","held","booked",
 * "waiting"}. A hold whose "expires" has passed no longer counts as held for
 * confirm or for anyone wanting the seat, even before its timer has freed it:
 * the timer only makes the change visible. */
#include "seatmap.h"
#include "txnotify.h"
#include "msg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SEAT_KEY "seat:"
#define SECTION_KEY "section:"
#define WAIT_KEY "wait:"

struct ctx {
    hist_tx_t *tx;
    const seat_req_t *r;
    int64_t now;
    json_t *sections;             /* name -> counts, loaded on first use */
    json_t *dirty;                /* names of sections whose counts changed */
    json_t *offers;
    json_t *expired;              /* holds (and offers) that ran out: [{"user","seat","section","expires","offer"}] */
};

static size_t mkkey(char *buf, size_t len, const char *prefix, const char *id)
{
    int n = snprintf(buf, len, "%s%s", prefix, id);
    return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

static const char *str(const json_t *o, const char *field)
{
    const char *s = json_string_value(json_object_get(o, field));
    return s ? s : "";
}

static int64_t num(const json_t *o, const char *field) { return json_integer_value(json_object_get(o, field)); }

static int refuse(struct ctx *c, int code, const char *reason, const char *field, json_t *val)
{
    json_t *res = json_pack("{s:i,s:s}", "code", code, "reason", reason);
    if (res && field) json_object_set(res, field, val);
    hist_tx_result(c->tx, res);
    return HIST_E_REFUSED;
}

static int get_seat(struct ctx *c, const char *id, json_t **v)
{
    char key[sizeof SEAT_KEY + SEAT_ID_MAX];
    uint64_t version;
    size_t klen = mkkey(key, sizeof key, SEAT_KEY, id);
    *v = NULL;
    return klen ? hist_tx_get(c->tx, key, klen, v, &version) : 0;
}

static int put_seat(struct ctx *c, const char *id, const json_t *v)
{
    char key[sizeof SEAT_KEY + SEAT_ID_MAX];
    size_t klen = mkkey(key, sizeof key, SEAT_KEY, id);
    return hist_tx_put(c->tx, key, klen, v);
}

static int seat_timer(struct ctx *c, const char *id, int64_t at, int set)
{
    char key[sizeof SEAT_KEY + SEAT_ID_MAX];
    size_t klen = mkkey(key, sizeof key, SEAT_KEY, id);
    return set ? hist_tx_timer_set(c->tx, at, key, klen) : hist_tx_timer_del(c->tx, at, key, klen);
}

/* Whether seat @v is held, by anyone, with a hold that has not expired. */
static int live_hold(const struct ctx *c, const json_t *v)
{
    return !strcmp(str(v, "status"), "held") && num(v, "expires") > c->now;
}

/* The counts of section @name (cached for the request); NULL if absent. */
static int section(struct ctx *c, const char *name, json_t **counts)
{
    char key[sizeof SECTION_KEY + SEAT_ID_MAX];
    uint64_t version;
    size_t klen;
    int rc;

    if ((*counts = json_object_get(c->sections, name))) return 0;
    if (!(klen = mkkey(key, sizeof key, SECTION_KEY, name))) return 0;
    if ((rc = hist_tx_get(c->tx, key, klen, counts, &version)) || !*counts) return rc;
    json_object_set_new(c->sections, name, *counts);
    return 0;
}

static void bump(json_t *counts, const char *field, int by)
{
    json_object_set_new(counts, field, json_integer(num(counts, field) + by));
}

/* A seat of section @name went from status @from to @to (NULL: none). */
static int move(struct ctx *c, const char *name, const char *from, const char *to)
{
    json_t *counts;
    int rc;

    if ((from && to && !strcmp(from, to)) || (rc = section(c, name, &counts))) return 0;
    if (!counts) return 0;
    if (from) bump(counts, from, -1);
    if (to) bump(counts, to, 1);
    json_object_set_new(c->dirty, name, json_true());
    return 0;
}

static int flush_sections(struct ctx *c)
{
    const char *name;
    json_t *v;
    int rc;

    json_object_foreach(c->dirty, name, v) {
        char key[sizeof SECTION_KEY + SEAT_ID_MAX];
        size_t klen = mkkey(key, sizeof key, SECTION_KEY, name);
        json_t *counts = json_object_get(c->sections, name);
        if (counts && klen && (rc = hist_tx_put(c->tx, key, klen, counts))) return rc;
    }
    return 0;
}

/* Holds seat @id (value @v, changed in place) for @user until @until. */
static int hold_seat(struct ctx *c, const char *id, json_t *v, const char *user, int64_t until, int offer)
{
    const char *sect = str(v, "section");
    char old[16];
    int rc;

    snprintf(old, sizeof old, "%s", str(v, "status"));
    if (!strcmp(old, "held") && (rc = seat_timer(c, id, num(v, "expires"), 0))) return rc;
    json_object_set_new(v, "status", json_string("held"));
    json_object_set_new(v, "holder", json_string(user));
    json_object_set_new(v, "expires", json_integer(until));
    if (offer) json_object_set_new(v, "offer", json_true());
    else json_object_del(v, "offer");
    if ((rc = put_seat(c, id, v)) || (rc = seat_timer(c, id, until, 1))) return rc;
    return move(c, sect, old, "held");
}

/* The section's waitlist: an array of user ids, oldest first. */
static int waitlist(struct ctx *c, const char *sect, json_t **q)
{
    char key[sizeof WAIT_KEY + SEAT_ID_MAX];
    size_t klen = mkkey(key, sizeof key, WAIT_KEY, sect);
    int rc = hist_tx_aux_get(c->tx, key, klen, q);
    if (!rc && !json_is_array(*q)) {
        json_decref(*q);
        *q = json_array();
    }
    return rc;
}

static int waitlist_store(struct ctx *c, const char *sect, const json_t *q)
{
    char key[sizeof WAIT_KEY + SEAT_ID_MAX];
    size_t klen = mkkey(key, sizeof key, WAIT_KEY, sect);
    return json_array_size(q) ? hist_tx_aux_put(c->tx, key, klen, q) : hist_tx_aux_del(c->tx, key, klen);
}

/* Offers seat @id (@v, not held by anyone now) to @user: a short hold, and
 * an entry in "offers" for the broker to notify the user. */
static int offer(struct ctx *c, const char *id, json_t *v, const char *user)
{
    int64_t until = c->now + c->r->offer_ttl_ms;
    int rc = hold_seat(c, id, v, user, until, 1);
    if (!rc)
        json_array_append_new(c->offers, json_pack("{s:s,s:s,s:s,s:I}", "user", user, "seat", id, "section",
                                                   str(v, "section"), "expires", (json_int_t)until));
    return rc;
}

/* Seat @id (@v) was held by someone whose hold ran out at "expires": an
 * entry in "expired", for the broker to tell that user. */
static void expired(struct ctx *c, const char *id, const json_t *v)
{
    json_array_append_new(c->expired, json_pack("{s:s,s:s,s:s,s:I,s:b}", "user", str(v, "holder"), "seat", id,
                                                "section", str(v, "section"), "expires", (json_int_t)num(v, "expires"),
                                                "offer", json_is_true(json_object_get(v, "offer"))));
}

/* Seat @id (@v) is no longer held or booked: it goes to the head of its
 * section's waitlist if anyone waits, else it becomes free. */
static int free_seat(struct ctx *c, const char *id, json_t *v)
{
    const char *sect = str(v, "section");
    char old[16];
    json_t *q = NULL, *counts;
    int rc;

    snprintf(old, sizeof old, "%s", str(v, "status"));
    if (!strcmp(old, "held") && (rc = seat_timer(c, id, num(v, "expires"), 0))) return rc;
    if ((rc = waitlist(c, sect, &q))) return rc;
    if (json_array_size(q)) {
        char user[256];
        snprintf(user, sizeof user, "%s", json_string_value(json_array_get(q, 0)));
        json_array_remove(q, 0);
        rc = waitlist_store(c, sect, q);
        json_decref(q);
        if (rc || (rc = section(c, sect, &counts))) return rc;
        if (counts) {
            bump(counts, "waiting", -1);
            json_object_set_new(c->dirty, sect, json_true());
        }
        /* Counted as a move held -> held when it was held: no change there. */
        return offer(c, id, v, user);
    }
    json_decref(q);
    json_object_set_new(v, "status", json_string("free"));
    json_object_del(v, "holder");
    json_object_del(v, "expires");
    json_object_del(v, "offer");
    if ((rc = put_seat(c, id, v))) return rc;
    return move(c, sect, old, "free");
}

/* Loads the requested seats into @vals (same order); unknown ones go to @unknown. */
static int load(struct ctx *c, json_t *vals, json_t *unknown)
{
    size_t i;
    json_t *id;
    int rc;

    json_array_foreach(c->r->seats, i, id) {
        json_t *v;
        if ((rc = get_seat(c, json_string_value(id), &v))) return rc;
        if (!v) json_array_append(unknown, id);
        json_array_append_new(vals, v ? v : json_null());
    }
    return 0;
}

static int do_hold(struct ctx *c, json_t *res)
{
    json_t *vals = json_array(), *unknown = json_array(), *taken = json_array(), *v;
    int64_t until = c->now + c->r->ttl_ms, earliest = until;
    size_t i;
    int rc;

    if ((rc = load(c, vals, unknown))) goto out;
    if (json_array_size(unknown)) {
        rc = refuse(c, PROTO_E_UNKNOWN_SEAT, "seats not in the event's seat map", "seats", unknown);
        goto out;
    }
    json_array_foreach(vals, i, v) {
        const char *st = str(v, "status");
        int mine = !strcmp(str(v, "holder"), c->r->user);
        int avail = !strcmp(st, "free") || (!strcmp(st, "held") && (mine ? 1 : !live_hold(c, v)));
        if (avail && !mine && !strcmp(st, "held")) {
            /* An expired hold not yet freed: its seat belongs to the waitlist first. */
            json_t *q = NULL;
            if ((rc = waitlist(c, str(v, "section"), &q))) goto out;
            avail = json_array_size(q) == 0;
            json_decref(q);
        }
        if (!avail) json_array_append(taken, json_array_get(c->r->seats, i));
    }
    if (json_array_size(taken)) {
        rc = refuse(c, PROTO_E_SEATS_TAKEN, "seats held by another user or booked; none was held", "seats", taken);
        goto out;
    }
    json_array_foreach(vals, i, v) {
        const char *id = json_string_value(json_array_get(c->r->seats, i));
        int64_t at = until;
        if (!strcmp(str(v, "status"), "held")) {
            /* A re-hold by the holder extends and never shortens: a page that
             * asks again with a short ttl must not cut a long hold short. */
            if (!strcmp(str(v, "holder"), c->r->user)) {
                if (num(v, "expires") > at) at = num(v, "expires");
            } else {
                expired(c, id, v);             /* an expired hold not yet freed, taken over */
            }
        }
        if ((rc = hold_seat(c, id, v, c->r->user, at, 0))) goto out;
        if (i == 0 || at < earliest) earliest = at;
    }
    json_object_set(res, "seats", c->r->seats);
    json_object_set_new(res, "expires", json_integer(earliest));
out:
    json_decref(vals);
    json_decref(unknown);
    json_decref(taken);
    return rc;
}

/* CONFIRM and RELEASE: seats the user holds (or, for a cancellation, booked). */
static int do_confirm_release(struct ctx *c, json_t *res)
{
    const seat_req_t *r = c->r;
    json_t *vals = json_array(), *unknown = json_array(), *not_held = json_array(), *done = json_array(), *v;
    size_t i;
    int rc;

    if ((rc = load(c, vals, unknown))) goto out;
    if (json_array_size(unknown) && !r->lenient) {
        rc = refuse(c, PROTO_E_UNKNOWN_SEAT, "seats not in the event's seat map", "seats", unknown);
        goto out;
    }
    json_array_foreach(vals, i, v) {
        int mine = !json_is_null(v) && !strcmp(str(v, "holder"), r->user), ok;
        if (json_is_null(v)) continue;
        if (r->action == SEAT_CONFIRM) ok = mine && live_hold(c, v);
        else ok = mine && (!strcmp(str(v, "status"), "held") || (r->cancel && !strcmp(str(v, "status"), "booked")));
        if (!ok) json_array_append(not_held, json_array_get(r->seats, i));
    }
    if (json_array_size(not_held) && !r->lenient) {
        rc = refuse(c, PROTO_E_NOT_HELD, r->action == SEAT_CONFIRM
                    ? "seats not held by this user, or whose hold expired; none was booked"
                    : "seats not held by this user; none was released", "seats", not_held);
        goto out;
    }
    json_array_foreach(vals, i, v) {
        json_t *id = json_array_get(r->seats, i);
        const char *sid = json_string_value(id);
        if (json_is_null(v) || strcmp(str(v, "holder"), r->user)) continue;
        if (r->action == SEAT_CONFIRM) {
            if ((rc = seat_timer(c, sid, num(v, "expires"), 0))) goto out;
            json_object_set_new(v, "status", json_string("booked"));
            json_object_del(v, "expires");
            json_object_del(v, "offer");
            if ((rc = put_seat(c, sid, v)) || (rc = move(c, str(v, "section"), "held", "booked"))) goto out;
        } else {
            const char *st = str(v, "status");
            if (strcmp(st, "held") && !(r->cancel && !strcmp(st, "booked"))) continue;
            if ((rc = free_seat(c, sid, v))) goto out;
        }
        json_array_append(done, id);
    }
    json_object_set(res, "seats", done);
out:
    json_decref(vals);
    json_decref(unknown);
    json_decref(not_held);
    json_decref(done);
    return rc;
}

static int do_expire(struct ctx *c, json_t *res)
{
    const char *id = json_string_value(json_array_get(c->r->seats, 0));
    json_t *v = NULL;
    int rc;

    if (!id || (rc = seat_timer(c, id, c->r->at_ms, 0)) || (rc = get_seat(c, id, &v))) return id ? rc : EINVAL;
    /* Only the hold this timer was set for, and only once it is over. */
    if (v && !strcmp(str(v, "status"), "held") && num(v, "expires") == c->r->at_ms && c->r->at_ms <= c->now) {
        expired(c, id, v);
        rc = free_seat(c, id, v);
        json_object_set_new(res, "seats", json_pack("[s]", id));
    } else {
        json_object_set_new(res, "seats", json_array());
    }
    json_decref(v);
    return rc;
}

struct find_free {
    const char *section;
    char id[SEAT_ID_MAX + 1];
    json_t *v;
};

static int find_free_cb(void *ctx, const char *key, size_t klen, json_t *v)
{
    struct find_free *f = ctx;
    if (!strcmp(str(v, "section"), f->section) && !strcmp(str(v, "status"), "free") &&
        klen - (sizeof SEAT_KEY - 1) <= SEAT_ID_MAX) {
        memcpy(f->id, key + sizeof SEAT_KEY - 1, klen - (sizeof SEAT_KEY - 1));
        f->id[klen - (sizeof SEAT_KEY - 1)] = '\0';
        f->v = json_deep_copy(v);
        return -1;                             /* found: stop */
    }
    return 0;
}

static int do_wait(struct ctx *c, json_t *res)
{
    const seat_req_t *r = c->r;
    json_t *counts, *q = NULL, *u;
    size_t i;
    int rc;

    if ((rc = section(c, r->section, &counts))) return rc;
    if (!counts) {
        json_t *s = json_string(r->section);
        rc = refuse(c, PROTO_E_UNKNOWN_SEAT, "no such section in the event's seat map", "section", s);
        json_decref(s);
        return rc;
    }
    json_object_set_new(res, "section", json_string(r->section));
    if ((rc = waitlist(c, r->section, &q))) return rc;
    json_array_foreach(q, i, u)
        if (!strcmp(json_string_value(u), r->user)) {
            json_object_set_new(res, "position", json_integer((json_int_t)i + 1));
            goto out;
        }
    if (num(counts, "free") > 0) {
        struct find_free f = { .section = r->section };
        rc = hist_tx_scan(c->tx, SEAT_KEY, sizeof SEAT_KEY - 1, find_free_cb, &f);
        if (rc == -1 && f.v) {
            rc = offer(c, f.id, f.v, r->user);
            json_object_set_new(res, "offered", json_string(f.id));
            json_object_set_new(res, "expires", json_integer(num(f.v, "expires")));
            json_decref(f.v);
            goto out;
        }
        json_decref(f.v);
        if (rc) goto out;                     /* the counts said free, yet none was: use the queue */
    }
    if (json_array_size(q) >= r->waitlist_max) {
        char why[PROTO_REASON_MAX];
        snprintf(why, sizeof why, "the waitlist of section %s is full (waitlist_max %u)", r->section, r->waitlist_max);
        rc = refuse(c, PROTO_E_LIMIT, why, NULL, NULL);
        goto out;
    }
    json_array_append_new(q, json_string(r->user));
    if ((rc = waitlist_store(c, r->section, q))) goto out;
    bump(counts, "waiting", 1);
    json_object_set_new(c->dirty, r->section, json_true());
    json_object_set_new(res, "position", json_integer((json_int_t)json_array_size(q)));
out:
    json_decref(q);
    return rc;
}

static int do_unwait(struct ctx *c, json_t *res)
{
    json_t *counts, *q = NULL, *u;
    size_t i;
    int rc;

    json_object_set_new(res, "section", json_string(c->r->section));
    if ((rc = section(c, c->r->section, &counts)) || !counts || (rc = waitlist(c, c->r->section, &q))) return rc;
    json_array_foreach(q, i, u)
        if (!strcmp(json_string_value(u), c->r->user)) {
            json_array_remove(q, i);
            if (!(rc = waitlist_store(c, c->r->section, q))) {
                bump(counts, "waiting", -1);
                json_object_set_new(c->dirty, c->r->section, json_true());
            }
            break;
        }
    json_decref(q);
    return rc;
}

/* POSITION: where the user stands in the section's waitlist; a read. */
static int do_position(struct ctx *c, json_t *res)
{
    json_t *counts, *q = NULL, *u;
    size_t i, pos = 0;
    int rc;

    if ((rc = section(c, c->r->section, &counts))) return rc;
    if (!counts) {
        json_t *s = json_string(c->r->section);
        rc = refuse(c, PROTO_E_UNKNOWN_SEAT, "no such section in the event's seat map", "section", s);
        json_decref(s);
        return rc;
    }
    if ((rc = waitlist(c, c->r->section, &q))) return rc;
    json_array_foreach(q, i, u)
        if (!strcmp(json_string_value(u), c->r->user)) {
            pos = i + 1;
            break;
        }
    json_object_set_new(res, "section", json_string(c->r->section));
    json_object_set_new(res, "position", json_integer((json_int_t)pos));
    json_object_set_new(res, "waiting", json_integer((json_int_t)json_array_size(q)));
    json_decref(q);
    return 0;
}

/* ---- defining the map ---- */

/* Gathers the keys under a prefix into an object {name after the prefix: value}. */
struct collect {
    size_t skip;                  /* the prefix's length */
    json_t *into;
};

static int collect_cb(void *ctx, const char *key, size_t klen, json_t *v)
{
    struct collect *c = ctx;
    char name[SEAT_ID_MAX + 1];
    size_t n = klen - c->skip;
    if (n > SEAT_ID_MAX) return 0;
    memcpy(name, key + c->skip, n);
    name[n] = '\0';
    json_object_set(c->into, name, v);
    return 0;
}

static int do_define(struct ctx *c, json_t *res)
{
    const seat_req_t *r = c->r;
    json_t *seats = json_object(), *old_sections = json_object(), *counts = json_object(), *in_use = json_array();
    json_t *wanted = json_object(), *d, *v;
    const char *id, *name;
    size_t i;
    int rc;

    json_array_foreach(r->seats, i, d) json_object_set(wanted, str(d, "id"), d);
    struct collect cs = { sizeof SEAT_KEY - 1, seats }, cn = { sizeof SECTION_KEY - 1, old_sections };
    if ((rc = hist_tx_scan(c->tx, SEAT_KEY, cs.skip, collect_cb, &cs)) ||
        (rc = hist_tx_scan(c->tx, SECTION_KEY, cn.skip, collect_cb, &cn)))
        goto out;
    if (r->action == SEAT_DEFINE) {
        json_object_foreach(seats, id, v)
            if (!json_object_get(wanted, id) && strcmp(str(v, "status"), "free"))
                json_array_append_new(in_use, json_string(id));
        if (json_array_size(in_use)) {
            rc = refuse(c, PROTO_E_SEATS_TAKEN, "seats held or booked cannot be left out of the map", "seats", in_use);
            goto out;
        }
        json_object_foreach(seats, id, v)
            if (!json_object_get(wanted, id)) {
                char key[sizeof SEAT_KEY + SEAT_ID_MAX];
                if ((rc = hist_tx_del(c->tx, key, mkkey(key, sizeof key, SEAT_KEY, id)))) goto out;
            }
    }
    json_array_foreach(r->seats, i, d) {
        json_t *old = json_object_get(seats, str(d, "id")), *nv;
        nv = old ? json_deep_copy(old) : json_pack("{s:s}", "status", "free");
        /* A seat that changes section is removed, then written anew: a view
         * of one section (a filtered subscription) then drops it. */
        if (old && strcmp(str(old, "section"), str(d, "section"))) {
            char key[sizeof SEAT_KEY + SEAT_ID_MAX];
            if ((rc = hist_tx_del(c->tx, key, mkkey(key, sizeof key, SEAT_KEY, str(d, "id"))))) {
                json_decref(nv);
                goto out;
            }
        }
        json_object_set(nv, "section", json_object_get(d, "section"));
        if (json_object_get(d, "price_class")) json_object_set(nv, "price_class", json_object_get(d, "price_class"));
        else json_object_del(nv, "price_class");
        if (!old || !json_equal(old, nv)) rc = put_seat(c, str(d, "id"), nv);
        json_object_set_new(seats, str(d, "id"), nv);   /* the map as it now is */
        if (rc) goto out;
    }
    if (r->action == SEAT_DEFINE) {
        json_t *kept = json_object();
        json_object_foreach(wanted, id, d) json_object_set(kept, id, json_object_get(seats, id));
        json_decref(seats);
        seats = kept;
    }
    /* Recount every section from the seats themselves. */
    json_object_foreach(seats, id, v) {
        const char *sect = str(v, "section");
        json_t *n = json_object_get(counts, sect);
        if (!n) {
            json_t *q = NULL;
            if ((rc = waitlist(c, sect, &q))) goto out;
            n = json_pack("{s:i,s:i,s:i,s:i,s:I}", "total", 0, "free", 0, "held", 0, "booked", 0, "waiting",
                          (json_int_t)json_array_size(q));
            json_decref(q);
            json_object_set_new(counts, sect, n);
        }
        bump(n, "total", 1);
        bump(n, str(v, "status"), 1);
    }
    json_object_foreach(old_sections, name, v)
        if (!json_object_get(counts, name)) {
            char key[sizeof SECTION_KEY + SEAT_ID_MAX], wkey[sizeof WAIT_KEY + SEAT_ID_MAX];
            if ((rc = hist_tx_del(c->tx, key, mkkey(key, sizeof key, SECTION_KEY, name))) ||
                (rc = hist_tx_aux_del(c->tx, wkey, mkkey(wkey, sizeof wkey, WAIT_KEY, name))))
                goto out;
        }
    json_object_foreach(counts, name, v) {
        json_object_set(c->sections, name, v);
        if (!json_equal(v, json_object_get(old_sections, name))) json_object_set_new(c->dirty, name, json_true());
    }
    /* New free seats go to those already waiting in their section. */
    json_object_foreach(seats, id, v) {
        json_t *n = json_object_get(counts, str(v, "section"));
        if (strcmp(str(v, "status"), "free") || num(n, "waiting") <= 0) continue;
        if ((rc = free_seat(c, id, v))) goto out;
    }
    json_object_set_new(res, "seats", json_integer((json_int_t)json_object_size(seats)));
    json_object_set(res, "sections", counts);
out:
    json_decref(seats);
    json_decref(old_sections);
    json_decref(counts);
    json_decref(in_use);
    json_decref(wanted);
    return rc;
}

/* The seat map's channel and event id ("seats:{event}"), as JSON strings. */
static json_t *chan_name(struct ctx *c, int event_only)
{
    size_t len;
    const char *name = hist_tx_chan(c->tx, &len), *colon = memchr(name, ':', len);

    if (event_only && colon) return json_stringn(colon + 1, len - (size_t)(colon + 1 - name));
    return json_stringn(name, len);
}

/* A confirm booked @seats: the ticket goes to its holder and the
 * organiser's feed, and to the webhooks, with the booking. */
static int ticket(struct ctx *c, json_t *seats)
{
    char name[300];
    json_t *data = json_pack("{s:s,s:o,s:o,s:O,s:s,s:I}", "type", "ticket_issued", "event", chan_name(c, 1),
                             "channel", chan_name(c, 0), "seats", seats, "holder", c->r->user, "booked_at",
                             (json_int_t)c->now), *ev;
    int rc = 0, n = snprintf(name, sizeof name, "user:%s", c->r->user);

    if (!data) return ENOMEM;
    if (n > 0 && (size_t)n < sizeof name) rc = txnotify(c->tx, name, data);
    if (!rc && c->r->feed) rc = txnotify(c->tx, c->r->feed, data);
    if (!rc && c->r->nhooks_booked) {
        if ((ev = json_deep_copy(data))) {
            json_object_set_new(ev, "type", json_string("seat.booked"));
            rc = hist_tx_event(c->tx, c->r->hooks_booked, c->r->nhooks_booked, ev);
            json_decref(ev);
        } else {
            rc = ENOMEM;
        }
    }
    json_decref(data);
    return rc;
}

/* Tells each holder whose hold ran out (seat_expired), then each user
 * offered a seat (seat_offer), on their user:{id} channel: expiries first, so
 * a seat's old holder hears of it before its new one. */
static int waitlist_news(struct ctx *c)
{
    static const char *const what[2] = { "seat_expired", "seat_offer" };
    json_t *lists[2] = { c->expired, c->offers }, *o;
    size_t i;
    int rc = 0;

    for (int k = 0; k < 2 && !rc; k++)
        json_array_foreach(lists[k], i, o) {
            char name[300];
            json_t *data = json_pack("{s:s,s:o,s:o,s:O,s:O,s:O}", "type", what[k], "event", chan_name(c, 1),
                                     "channel", chan_name(c, 0), "seat", json_object_get(o, "seat"), "section",
                                     json_object_get(o, "section"), "expires", json_object_get(o, "expires"));
            int n = snprintf(name, sizeof name, "user:%s", json_string_value(json_object_get(o, "user")));
            if (!data) return ENOMEM;
            if (json_object_get(o, "offer")) json_object_set(data, "offer", json_object_get(o, "offer"));
            if (n > 0 && (size_t)n < sizeof name) rc = txnotify(c->tx, name, data);
            json_decref(data);
            if (rc) break;
        }
    return rc;
}

/* Each hold that ran out in this request, to the webhooks that want it. */
static int expiry_events(struct ctx *c)
{
    json_t *e;
    size_t i;
    int rc = 0;

    json_array_foreach(c->expired, i, e) {
        json_t *ev = json_pack("{s:s,s:o,s:o,s:O,s:O,s:O,s:O,s:b}", "type", "seat.expired", "event", chan_name(c, 1),
                               "channel", chan_name(c, 0), "seat", json_object_get(e, "seat"), "section",
                               json_object_get(e, "section"), "holder", json_object_get(e, "user"), "expires",
                               json_object_get(e, "expires"), "offer", json_is_true(json_object_get(e, "offer")));
        if (!ev) return ENOMEM;
        rc = hist_tx_event(c->tx, c->r->hooks_expired, c->r->nhooks_expired, ev);
        json_decref(ev);
        if (rc) break;
    }
    return rc;
}

int seatmap_apply(hist_tx_t *tx, const void *arg)
{
    struct ctx c = { .tx = tx, .r = arg, .now = hist_tx_now(tx) };
    json_t *res = json_object();
    int rc;

    c.sections = json_object();
    c.dirty = json_object();
    c.offers = json_array();
    c.expired = json_array();
    if (!res || !c.sections || !c.dirty || !c.offers || !c.expired) {
        rc = ENOMEM;
        goto out;
    }
    switch (c.r->action) {
    case SEAT_DEFINE:
    case SEAT_ADD: rc = do_define(&c, res); break;
    case SEAT_HOLD: rc = do_hold(&c, res); break;
    case SEAT_CONFIRM:
    case SEAT_RELEASE: rc = do_confirm_release(&c, res); break;
    case SEAT_EXPIRE: rc = do_expire(&c, res); break;
    case SEAT_WAIT: rc = do_wait(&c, res); break;
    case SEAT_UNWAIT: rc = do_unwait(&c, res); break;
    case SEAT_POSITION: rc = do_position(&c, res); break;
    default: rc = EINVAL; break;
    }
    if (!rc) rc = flush_sections(&c);
    if (!rc && c.r->action == SEAT_CONFIRM && json_array_size(json_object_get(res, "seats")))
        rc = ticket(&c, json_object_get(res, "seats"));
    if (!rc) rc = waitlist_news(&c);
    if (!rc && c.r->nhooks_expired) rc = expiry_events(&c);
    if (!rc) {
        json_object_set(res, "offers", c.offers);
        json_object_set(res, "expired", c.expired);
        hist_tx_result(tx, res);
        res = NULL;
    }
out:
    json_decref(res);
    json_decref(c.sections);
    json_decref(c.dirty);
    json_decref(c.offers);
    json_decref(c.expired);
    return rc;
}
