/* broker/app/sse.c - see sse.h. */
#include "app/sse.h"
#include "app/history.h"
#include "app/seats.h"
#include "core/channel.h"
#include "net/sse.h"
#include "auth/auth.h"
#include "auth/ratelimit.h"
#include "herald.h"
#include "chname.h"
#include "msg.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest Last-Event-ID accepted: a position per channel. */
#define LAST_ID_MAX (SSE_CHANNELS_MAX * (20 + 1 + HIST_EPOCH_LEN + 1))

/* The channels of a request, checked. */
struct want {
    unsigned n;
    char names[SSE_CHANNELS_MAX][CHNAME_MAX + 1];
    chan_t *chans[SSE_CHANNELS_MAX];
    struct history_since since[SSE_CHANNELS_MAX];
};

/* Reads the repeated channel= parameters into @w. Return: 0, or the
 * PROTO_E_* code with @reason. */
static int get_channels(http_req_t *r, struct want *w, char *reason)
{
    char buf[CHNAME_MAX + 2];
    const char *why;
    int too_long;

    for (unsigned i = 0;; i++) {
        const char *v = http_query_nth(r, "channel=", i, buf, sizeof buf, &too_long);
        size_t len;
        if (!v && too_long) {
            snprintf(reason, PROTO_REASON_MAX, "a channel name is longer than %d bytes", CHNAME_MAX);
            return PROTO_E_BAD_CHANNEL;
        }
        if (!v) break;
        if (i == SSE_CHANNELS_MAX) {
            snprintf(reason, PROTO_REASON_MAX, "at most %d channels per stream", SSE_CHANNELS_MAX);
            return PROTO_E_BAD_FIELD;
        }
        len = strlen(v);
        if (!chname_valid(v, len, &why)) {
            snprintf(reason, PROTO_REASON_MAX, "channel \"%.64s\": %s", v, why);
            return PROTO_E_BAD_CHANNEL;
        }
        if (auth_check_name(v, len, reason)) return PROTO_E_BAD_CHANNEL;
        for (unsigned j = 0; j < i; j++)
            if (!strcmp(w->names[j], v)) {
                snprintf(reason, PROTO_REASON_MAX, "channel \"%.64s\" is named twice", v);
                return PROTO_E_BAD_FIELD;
            }
        memcpy(w->names[i], v, len + 1);
        w->n = i + 1;
    }
    if (!w->n) {
        snprintf(reason, PROTO_REASON_MAX, "name at least one channel: /api/sse?channel=NAME");
        return PROTO_E_BAD_FIELD;
    }
    if (w->n > srv.cfg.max_subscriptions) {
        snprintf(reason, PROTO_REASON_MAX, "limit reached: %u subscriptions per connection",
                 srv.cfg.max_subscriptions);
        return PROTO_E_LIMIT;
    }
    return 0;
}

/* Reads the resume position: the Last-Event-ID header (what EventSource
 * sends when it reconnects, so it wins), else ?lastEventId=. It is an id
 * this endpoint gave: "OFFSET:EPOCH" per channel, comma-separated, in the
 * order of the request's channels. Return: 0 (none, or read into
 * w->since), or PROTO_E_BAD_FIELD with @reason. */
static int get_last_id(http_req_t *r, struct want *w, char *reason)
{
    char buf[LAST_ID_MAX + 16], *v = buf, *p, *save = NULL;
    unsigned i = 0;

    /* http_query() returns where in buf the value starts. */
    if (http_header(r, "last-event-id:", buf, sizeof buf) < 0 &&
        !(v = (char *)http_query(r, "lastEventId=", buf, sizeof buf)))
        return 0;
    if (!*v) return 0;                         /* EventSource sends an empty one before any id */
    for (p = strtok_r(v, ",", &save); p; p = strtok_r(NULL, ",", &save), i++) {
        char *colon = strchr(p, ':'), *end;
        unsigned long long off;
        if (i == w->n || !colon || colon == p || *p == '-' || strlen(colon + 1) > HIST_EPOCH_LEN) goto bad;
        *colon = '\0';
        errno = 0;
        off = strtoull(p, &end, 10);
        if (*end || errno) goto bad;
        w->since[i].set = 1;
        w->since[i].offset = off;
        memcpy(w->since[i].epoch, colon + 1, strlen(colon + 1) + 1);
    }
    if (i == w->n) return 0;
bad:
    snprintf(reason, PROTO_REASON_MAX,
             "Last-Event-ID must be an id of this stream: OFFSET:EPOCH for each channel, comma-separated, "
             "in the order of the channel parameters");
    return PROTO_E_BAD_FIELD;
}

/* Who the stream is for: a token in Authorization: Bearer or ?token=
 * (EventSource cannot set headers), or nobody where auth.anonymous allows.
 * Return: 0 with @id filled, or PROTO_E_UNAUTHORIZED with @reason. */
static int get_ident(http_req_t *r, ident_t *id, char *reason)
{
    static char buf[8192];
    const char *tok = NULL;
    int n;

    if ((n = http_authorization(r, buf, sizeof buf)) > 7 && !strncasecmp(buf, "Bearer ", 7)) tok = buf + 7;
    else if ((tok = http_query(r, "token=", buf, sizeof buf)) && !*tok) tok = NULL;
    if (tok) {
        int rc = auth_token(tok, strlen(tok), id, reason);
        if (rc) rl_auth_failed(r->peer);
        return rc;
    }
    if (!srv.cfg.anonymous) {
        snprintf(reason, PROTO_REASON_MAX, "a token is required (auth.anonymous is off): "
                 "Authorization: Bearer <token> or ?token=<token>");
        return PROTO_E_UNAUTHORIZED;
    }
    return 0;
}

static void drop_all(struct want *w)
{
    for (unsigned i = 0; i < w->n; i++)
        if (w->chans[i]) chan_maybe_drop(w->chans[i]);
}

int sse_get(http_req_t *r)
{
    static struct want w;
    char reason[PROTO_REASON_MAX];
    ident_t id;
    sess_t *s;
    int rc;

    memset(&w, 0, sizeof w);
    memset(&id, 0, sizeof id);
    if ((rc = get_channels(r, &w, reason)) || (rc = get_last_id(r, &w, reason)))
        return http_respond_error(r, 0, rc, reason);
    if ((rc = get_ident(r, &id, reason))) return http_respond_error(r, 401, rc, reason);
    for (unsigned i = 0; i < w.n; i++) {
        int granted;
        if ((rc = chan_open(w.names[i], strlen(w.names[i]), &w.chans[i]))) {
            snprintf(reason, PROTO_REASON_MAX, rc == PROTO_E_LIMIT ? "limit reached: limits.max_channels"
                                                                   : "out of memory");
            goto refuse;
        }
        if (w.chans[i]->ns->state) {
            /* A state channel's snapshot and deltas have no place in an
             * event stream of publications. */
            rc = PROTO_E_DISABLED;
            snprintf(reason, PROTO_REASON_MAX, "channel \"%.64s\" is a state channel: read it over WebSocket",
                     w.names[i]);
            goto refuse;
        }
        if ((rc = auth_may_subscribe(&id, w.chans[i]->name, w.chans[i]->namelen, w.chans[i]->ns, NULL, 0,
                                     &granted, reason))) {
            srv.stats.permission_denied++;
            goto refuse;
        }
    }
    if ((rc = sse_open(r, w.n, &s))) {
        if (rc == -EIO) {
            drop_all(&w);
            ident_clear(&id);
            return -1;
        }
        snprintf(reason, PROTO_REASON_MAX, rc == PROTO_E_RATE_LIMITED
                 ? "too many connections from this address (limits.connections_per_ip)" : "out of memory");
        goto refuse;
    }
    s->ident = id;
    /* Connected from the start (the connect timeout is for WebSocket
     * connections that have not said who they are), and a connection of its
     * user as the seat holds count them (app/ops.c's close undoes this). */
    s->connected = 1;
    if (s->ident.user) seats_user_connected(s->ident.user);
    for (unsigned i = 0; i < w.n; i++) {
        chan_t *c = w.chans[i];
        /* Where the client is: its Last-Event-ID, or (a fresh stream) the
         * channel's present, so that an id names every channel's place. */
        if (w.since[i].set) sse_set_channel(s, i, c->name, c->namelen, w.since[i].epoch, w.since[i].offset);
        else sse_set_channel(s, i, c->name, c->namelen, c->epoch, c->last_offset);
        if ((rc = chan_subscribe(s, c)) || history_subscribed(s, c, NULL, 0, &w.since[i], 0)) {
            /* Out of memory, or a limit reached meanwhile: the stream has
             * started, so it ends (EventSource will try again). */
            if (!rc) chan_unsubscribe(s, c);
            for (unsigned j = i + 1; j < w.n; j++) chan_maybe_drop(w.chans[j]);
            sess_close(s, CLOSE_INTERNAL, 0);
            return 0;
        }
    }
    return 0;
refuse:
    drop_all(&w);
    ident_clear(&id);
    return http_respond_error(r, 0, rc, reason);
}
