/* storage/seatmap.h - seat maps: the rules of a seat map's state, applied
 * inside its channel's write transaction.
 *
 * Owns: the layout of a seat map channel (state keys "seat:<id>" and
 * "section:<name>", the unpublished waitlists "wait:<section>" and the hold
 * expiry timers) and every transition of a seat (free -> held -> booked,
 * held -> free, a freed seat -> offered to the head of its section's
 * waitlist), each of which updates the seat and its section's counts in the
 * same transaction, so the two can never disagree.
 * DESIGN: the rules run on the storage thread as a custom state operation
 * (hist_custom_fn), because all-or-nothing across several seats needs the
 * check and the change in one transaction; the loop only validates the
 * request's shape (broker/seats.c). Storage thread only. */
#ifndef HERALD_SEATMAP_H
#define HERALD_SEATMAP_H

#include <jansson.h>
#include <stdint.h>

#include "hist.h"

#define SEAT_ID_MAX 64            /* seat ids, section names, event ids */
#define SEAT_REQ_MAX 100          /* seats in one hold/confirm/release */
#define SEAT_MAP_MAX 20000        /* seats in one event's map */

enum seat_action {
    SEAT_DEFINE = 1,              /* replace the map with @seats */
    SEAT_ADD,                     /* add or update @seats, keep the others */
    SEAT_HOLD,
    SEAT_CONFIRM,
    SEAT_RELEASE,
    SEAT_EXPIRE,                  /* a hold's timer fired (internal) */
    SEAT_WAIT,                    /* join a section's waitlist */
    SEAT_UNWAIT,
    SEAT_POSITION,                /* read one's place in a section's waitlist */
};

typedef struct seat_req {
    enum seat_action action;
    const char *user;             /* the user acted for (all but DEFINE, ADD, EXPIRE) */
    json_t *seats;                /* DEFINE, ADD: [{"id","section","price_class"?}]; else seat ids */
    const char *section;          /* WAIT, UNWAIT, POSITION */
    int64_t ttl_ms;               /* HOLD */
    int64_t offer_ttl_ms;         /* how long a waitlist offer holds its seat */
    unsigned waitlist_max;        /* WAIT */
    int cancel;                   /* RELEASE: seats the user booked go too (the backend's cancellation) */
    int lenient;                  /* RELEASE: skip seats the user does not hold (release on disconnect) */
    int64_t at_ms;                /* EXPIRE: when the timer was due */
    /* Who hears of a booking or an expiry, in the same transaction (borrowed from the loop): */
    const char *feed;             /* the organiser's feed channel of issued tickets, or NULL */
    const char *const *hooks_booked;  /* webhooks that get "seat.booked" */
    size_t nhooks_booked;
    const char *const *hooks_expired; /* webhooks that get "seat.expired" */
    size_t nhooks_expired;
} seat_req_t;

/* seatmap_apply() - run @req (a seat_req_t) in @tx. On success the result
 * (hist_tx_result) holds what the requester is told ("seats", "expires",
 * "position", "waiting", "offered", "sections"), "offers": [{"user","seat",
 * "section","expires"}], the waitlist offers made, and "expired": [{"user",
 * "seat","section","expires","offer"}], the holds that ran out (freed by their
 * timer, or an expired hold another user took), for the broker to notify.
 * A HOLD of a seat the user already holds keeps the later of the two
 * expiries; "expires" is then the earliest expiry of the listed seats.
 * POSITION changes nothing: "position" (1-based; 0: not waiting) and
 * "waiting" (the waitlist's length). Refusals carry {"code","reason"} and
 * "seats" or "section".
 * A CONFIRM is all or none: every listed seat is booked, or (one not held
 * by the user, or its hold expired) none. One that books publishes, in its
 * transaction, {"type":"ticket_issued","event","channel","seats","holder",
 * "booked_at"} on "user:{holder}" and on @feed, and queues a "seat.booked"
 * webhook event of the same fields; each hold that ran out queues a
 * "seat.expired" event {"event","channel","seat","section","holder",
 * "expires","offer"}. Each entry of "expired", then of "offers", is told to
 * its user on "user:{user}" in the same transaction: {"type":"seat_expired"
 * | "seat_offer","event","channel","seat","section","expires","offer"?}.
 * Return: 0, HIST_E_REFUSED, or a storage code (see hist_custom_fn). */
int seatmap_apply(hist_tx_t *tx, const void *req);

#endif
