/* clients/herald_session.h - a Herald connection that survives the broker
 * (installed ABI, prefix herald_session_).
 *
 * A session owns one herald_client_t at a time and replaces it when it is
 * lost: it reconnects with exponential backoff and jitter, sends the
 * current token, and resubscribes every channel with "since" = the epoch and
 * last offset it delivered, so that each channel's publications reach
 * on_pub exactly once and in offset order across any number of reconnects.
 * When the broker cannot give back what was missed (the log was trimmed past
 * the last offset, or it is another epoch), on_lost says so before the
 * channel goes on: the application reloads its view some other way.
 *
 * Which ends are retried: everything but herald_session_close() and a
 * refused connect (HERALD_E_REFUSED: a bad token) when no on_token callback
 * can supply another token. herald_session_opts_t.max_attempts bounds the
 * failed attempts in a row (0: retry forever).
 *
 * Threads: as herald_client.h: the context's loop thread only. Errors: as
 * herald_client.h (0, UV_*, HERALD_E_*). A call that fails fires no callback. */
#ifndef HERALD_SESSION_H
#define HERALD_SESSION_H

#include "herald_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct herald_session herald_session_t;

typedef struct herald_session_opts {
    herald_opts_t client;       /* for every connection: encoding, timeouts, the first token (copied) */
    unsigned backoff_min_ms;    /* the delay before the first retry; 0 = 250 */
    unsigned backoff_max_ms;    /* the delay doubles per failed attempt up to this; 0 = 10000 */
    unsigned max_attempts;      /* failed attempts in a row before giving up; 0 = never give up */
} herald_session_opts_t;

typedef struct herald_session_callbacks {
    /* A connection opened (@reconnect 0 for the first). Subscriptions are resent by the session;
     * anything else (presence, publishing) the application redoes here. May be NULL. */
    void (*on_open)(herald_session_t *s, const herald_msg_t *connected, int reconnect, void *ud);
    /* The connection was lost (@info as for herald_client_t) and the session retries in
     * @retry_ms. May be NULL. */
    void (*on_disconnect)(herald_session_t *s, const herald_close_info_t *info, unsigned retry_ms, void *ud);
    /* A subscribe (first or resumed) was answered: @reply is the "subscribed" reply (its
     * has_recovered/recovered tell a resume's outcome; state channels carry their snapshot).
     * Publications the reply carries are delivered to on_pub right after, exactly as live ones.
     * May be NULL. */
    void (*on_subscribed)(herald_session_t *s, const herald_msg_t *reply, int resumed, void *ud);
    /* "Not recovered": the broker could not give back every publication after @last_offset of
     * @channel (@chlen bytes): its log no longer holds them, or it is a new epoch. Publications
     * that it still has follow in on_pub; anything between is gone. May be NULL. */
    void (*on_lost)(herald_session_t *s, const char *channel, size_t chlen, uint64_t last_offset,
                    const herald_msg_t *reply, void *ud);
    /* One publication of a subscribed channel: every one exactly once, in offset order per
     * channel, whether live or recovered after a reconnect. For recovered ones (carried by a
     * subscribe reply) `raw` is NULL and reply_to/from are not available. */
    void (*on_pub)(herald_session_t *s, const herald_msg_t *pub, void *ud);
    /* A subscribe was refused (@err: the error reply): the session forgets the channel.
     * May be NULL. */
    void (*on_sub_error)(herald_session_t *s, const char *channel, size_t chlen, const herald_msg_t *err,
                         void *ud);
    /* Every other push or reply without a callback (join, leave, refreshed, ...). A "snapshot"
     * push (a lagging state-channel subscriber resynchronised, docs/protocol.md) also moves the
     * channel's position to the snapshot's offset: later deltas continue from it. May be NULL. */
    void (*on_reply)(herald_session_t *s, const herald_msg_t *m, void *ud);
    /* A token for the next connect, and for "refresh_required": return one (borrowed; copied
     * before the call returns) or NULL to keep the current one. May be NULL. */
    const char *(*on_token)(herald_session_t *s, void *ud);
    /* The session is finished: after herald_session_close() (@info->err 0), or because it gave
     * up (@info of the last connection). Called exactly once; the session is freed when it
     * returns. */
    void (*on_close)(herald_session_t *s, const herald_close_info_t *info, void *ud);
} herald_session_callbacks_t;

/* herald_session_new() - start a session: connect now, retry as described above.
 * @url: [in] copied. @opts: [in] copied (with the token); NULL for defaults. @cb: [in] copied.
 * @out: [out] the session, owned by the library until on_close returns.
 * Return: 0, or UV_ENOMEM (no callback fires). */
int herald_session_new(herald_ctx_t *ctx, const herald_url_t *url, const herald_session_opts_t *opts,
                       const herald_session_callbacks_t *cb, void *ud, herald_session_t **out);

/* herald_session_subscribe() - keep @channel (@chlen bytes, copied) subscribed from now on:
 * at once if a connection is open, else on the next. With @epoch (@epoch_len bytes, copied)
 * the first subscribe is a recovery from offset @since of that epoch (an earlier run's
 * position); with @epoch NULL it starts at the channel's present offset.
 * Return: 0; UV_EEXIST if the session already has @channel; UV_ENOMEM; HERALD_E_STATE after
 * herald_session_close(). */
int herald_session_subscribe(herald_session_t *s, const char *channel, size_t chlen, const char *epoch,
                             size_t epoch_len, uint64_t since);

/* herald_session_subscribe_token() - as herald_session_subscribe(), with a subscribe token
 * (@token, NUL-terminated, copied; NULL for none) sent with every subscribe of @channel, for
 * namespaces where subscribing needs a grant (docs/security.md). The token is reused as is
 * on reconnects: a grant that must outlive the token's exp is better put in the connect
 * token's "channels" claim. Return: as herald_session_subscribe(). */
int herald_session_subscribe_token(herald_session_t *s, const char *channel, size_t chlen, const char *epoch,
                                   size_t epoch_len, uint64_t since, const char *token);

/* herald_session_unsubscribe() - forget @channel; if a connection is open, unsubscribe.
 * No on_pub for it follows this call. Return: 0; UV_ENOENT if the session does not have it. */
int herald_session_unsubscribe(herald_session_t *s, const char *channel, size_t chlen);

/* herald_session_position() - the epoch (*@epoch, @epoch_len bytes, valid until the session's
 * next callback) and the last offset delivered of @channel: what to pass to
 * herald_session_subscribe() in a later run. Return: 0; UV_ENOENT if unknown or not yet
 * subscribed. */
int herald_session_position(const herald_session_t *s, const char *channel, size_t chlen, const char **epoch,
                            size_t *epoch_len, uint64_t *offset);

/* herald_session_client() - the open connection, to publish or send other requests on; NULL
 * while disconnected. Valid until the session's next callback (it changes across reconnects);
 * never close it directly. */
herald_client_t *herald_session_client(const herald_session_t *s);

/* herald_session_pause() - flow control for the session's connections, as
 * herald_client_pause() (herald_client.h, which says what a paused client does
 * and does not do): no more on_pub (nor other callbacks carrying messages) and
 * no more reading, until herald_session_resume(). A connection made while
 * paused (a reconnect) starts paused: it resubscribes, and the replies wait
 * with the rest. A paused session's connection that the broker drops (4000 as
 * a slow consumer, or silent past its ping timeout) is noticed on resume, and
 * the session then reconnects and recovers from the channel's history as after
 * any loss. After a 4000 expect on_lost: the queue the broker dropped was over
 * limits.send_queue_max, and a recovery reply carries at most half of that
 * (docs/protocol.md, subscribe), so the newest publications follow on_lost.
 * Return: 0; HERALD_E_STATE after herald_session_close(). */
int herald_session_pause(herald_session_t *s);

/* herald_session_resume() - undo herald_session_pause(): what the connection kept is
 * delivered first, in order, from the loop (never inside this call), then it reads again.
 * Return: 0; HERALD_E_STATE after herald_session_close(). */
int herald_session_resume(herald_session_t *s);

/* herald_session_paused() - 1 between herald_session_pause() and herald_session_resume(). */
int herald_session_paused(const herald_session_t *s);

/* herald_session_close() - stop: close the connection cleanly (or cancel the retry timer);
 * on_close follows. Calling it again is harmless. */
void herald_session_close(herald_session_t *s);

/* herald_backoff_ms() - the delay before retry number @attempt (0-based): the doubling of @min
 * capped at @max, with "equal jitter" (a uniform random value in [d/2, d]) so that clients
 * dropped together do not come back together. @rnd: any 32-bit random value. */
unsigned herald_backoff_ms(unsigned attempt, unsigned min, unsigned max, uint32_t rnd);

#ifdef __cplusplus
}
#endif
#endif
