/* broker/app/seats.h - seat maps: the requests of the REST adapter
 * (/api/events/{event}/...) and of the seats op, hold expiry, waitlist offer
 * notifications and release on disconnect.
 *
 * Owns: validating a seat request and turning it into one custom state
 * operation on the channel seats:{event} (storage/seatmap.c applies it in the
 * channel's transaction); queueing an expiry for each hold timer the store
 * reports due; publishing a waitlist offer (seat_offer) and the end of a hold
 * (seat_expired) on the user's personal channel user:{id}; and, in
 * namespaces with seat_release_on_disconnect, which seats each user holds
 * through their own WebSocket sessions, so that their last disconnect
 * releases them once seat_release_grace has passed without a reconnect.
 * Loop thread only. */
#ifndef HERALD_SEATS_H
#define HERALD_SEATS_H

#include <jansson.h>
#include <stddef.h>

#include "core/channel.h"
#include "core/pubpipe.h"

#define SEATS_NS "seats"

/* seats_init() - start taking the store's due hold timers. */
void seats_init(void);

/* seats_deinit() - forget every user's holds (at exit; nothing is released). */
void seats_deinit(void);

/* seats_channel() - write "seats:<event>" into @out (@len bytes).
 * Return: 0, or -1 if @event (@elen bytes) is not a valid event id. */
int seats_channel(const char *event, size_t elen, char *out, size_t len);

/* seats_is_map() - whether channel @name is a seat map (namespace "seats"),
 * which changes only through seat requests. */
int seats_is_map(const char *name, size_t len);

/* seats_request() - carry out seat @action ("define", "add", "hold",
 * "confirm", "release", "waitlist", "waitlist_leave" or "waitlist_position")
 * described by @body on seat map @chan, for @user (the WebSocket session's
 * user; NULL: take "user" from @body, as the backend does over REST, which
 * must pass auth_user_valid()), answering @origin (its id reference is
 * taken). @backend: the request comes over REST, where confirm is always
 * allowed and release also cancels bookings; holds made with @user set (and
 * not @backend) are the ones a disconnect releases.
 * @reason: [out] on a PROTO_E_* failure (PROTO_REASON_MAX bytes).
 * Return: 0 (the answer comes from the pipeline), or a PROTO_E_* code. */
int seats_request(const char *chan, const char *action, const json_t *body, const char *user, int backend,
                  origin_t *origin, char *reason);

/* seats_filter() - read the "filter" of a subscribe to channel @name:
 * {"section": "<name>"} on a seat map, which selects the seats of that
 * section and its counts (seats_match_section()). @arg: [out] the section
 * (CHAN_FILTER_ARG_MAX + 1 bytes).
 * Return: 0, or PROTO_E_BAD_FIELD with @reason. */
int seats_filter(const char *name, size_t len, const json_t *filter, char *arg, char *reason);

/* seats_match_section() - a chan_match_fn: whether a change of @key belongs
 * to section @arg: its "section:<arg>" counts, its seats (by the value's
 * "section"), and every removed seat (a client drops it if it shows it).
 * Any thread. */
int seats_match_section(const char *arg, const char *key, size_t klen, const json_t *value);

/* seats_user_connected(), seats_user_disconnected() - a connection of @user
 * was established / closed. After the last close, where the namespace says
 * so, the seats the user holds through WebSocket holds are released once
 * seat_release_grace passes without a new connection of that user
 * (seats_tick()); with a grace of 0, at once. Not while the broker shuts
 * down: the holds then wait for the user, or expire. Under the redis
 * engine the connections are also counted in Redis, and the release waits
 * while the user is connected to another node (docs/cluster.md#seat-maps). */
void seats_user_connected(const char *user);
void seats_user_disconnected(const char *user);

/* seats_tick() - release the holds of users whose grace is over, and under
 * the redis engine ask for a sweep of expired holds (cluster_seats_tick());
 * called every quarter second. */
void seats_tick(void);

#endif
