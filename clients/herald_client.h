/* clients/herald_client.h - the Herald C client library (installed ABI, prefix herald_).
 *
 * A non-blocking WebSocket client on a libuv loop that speaks Herald protocol
 * v1 (docs/protocol.md) in JSON or MessagePack. The WebSocket layer is our own
 * RFC 6455 client over uv_tcp_t: the handshake, client-side masking, frame
 * parsing with fragmentation, ping -> pong and the close handshake.
 *
 * Model: a context (herald_ctx_t) per loop owns what all its clients share
 * (one read buffer, scratch space, the mask generator); clients are cheap, so
 * one process on one core can drive tens of thousands. Incoming bytes are read
 * into the shared buffer and parsed in place: a connection holds bytes of its
 * own only when a frame arrives split across reads. Messages are handed to
 * callbacks as views (herald_msg_t) into that memory, without building a tree
 * and without a malloc per message; `pub` messages as Herald writes them take
 * a fast path. Outgoing frames are appended to the connection's buffer and
 * flushed once per loop iteration, so many sends cost one write(); a turn
 * that reads for long also flushes them once they are 2 ms old. A program
 * that cannot keep up pauses a client (herald_client_pause()): it stops
 * reading, so TCP pushes back on the broker.
 *
 * Threads: everything here runs on the context's loop thread; nothing is
 * thread-safe. Errors: 0 is success; failures are negative, either libuv's
 * UV_* codes (UV_ENOMEM, UV_ECONNREFUSED, ...) or the HERALD_E_* below. A
 * call that fails fires no callback. TLS (wss://) runs through OpenSSL on
 * memory BIOs, so it shares the loop, the buffers and the batching of ws://.
 * Reconnecting and resuming subscriptions: herald_session.h. Not supported:
 * permessage-deflate, string request ids (this library numbers its requests). */
#ifndef HERALD_CLIENT_H
#define HERALD_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Library failures (negative, disjoint from libuv's UV_* range). */
enum {
    HERALD_E_URL = -30001,       /* the URL is not ws://host[:port][/path] */
    HERALD_E_HANDSHAKE = -30002, /* the server refused or botched the WebSocket upgrade */
    HERALD_E_PROTOCOL = -30003,  /* a WebSocket or Herald protocol violation by the server */
    HERALD_E_TIMEOUT = -30004,   /* connect or close took longer than its timeout */
    HERALD_E_STATE = -30005,     /* the call is not allowed in the client's current state */
    HERALD_E_ABORTED = -30006,   /* herald_client_abort(), or herald_close() before open */
    HERALD_E_TOO_LARGE = -30007, /* a server message over herald_opts_t.max_message */
    HERALD_E_REFUSED = -30008,   /* Herald answered "connect" with an error (113: no valid token);
                                    herald_close_info_t.reason carries the code and reason */
    HERALD_E_TLS = -30009,       /* wss://: the TLS handshake failed or the server's certificate did
                                    not verify (herald_close_info_t.reason says why); or, from
                                    herald_ctx_set_tls(), the CA file could not be loaded */
};

typedef enum herald_encoding { HERALD_JSON = 0, HERALD_MSGPACK = 1 } herald_encoding_t;

/* What a server message is. */
typedef enum herald_op {
    HERALD_OP_UNKNOWN = 0,
    HERALD_OP_CONNECTED,
    HERALD_OP_SUBSCRIBED,
    HERALD_OP_UNSUBSCRIBED,
    HERALD_OP_PUBLISHED,
    HERALD_OP_PONG,
    HERALD_OP_ERROR,
    HERALD_OP_PUB,
    /* Presence (namespaces with presence on); appended, so the values above keep their numbers. */
    HERALD_OP_JOIN,             /* push: a member joined (client or user) */
    HERALD_OP_LEAVE,            /* push: a member left (client or user) */
    HERALD_OP_PRESENCE_BATCH,   /* push above the tier: joins_total, leaves_total, count */
    HERALD_OP_PRESENCE,         /* reply to "presence": count, connections (the member list is not read) */
    HERALD_OP_PRESENCE_STATS,   /* reply to "presence_stats": members, connections */
    /* State channels and seat maps; appended like presence. */
    HERALD_OP_UPDATED,          /* reply to "state": channel, offset, changes */
    HERALD_OP_SNAPSHOT,         /* push: a fresh snapshot after the subscriber lagged: channel, offset,
                                   epoch, state; deltas after offset follow */
    HERALD_OP_SEATS,            /* reply to "seats": channel, offset, changes (and the action's fields) */
    /* Tokens and history; appended like presence. */
    HERALD_OP_REFRESH_REQUIRED, /* push: the connection's token expires soon (see herald_callbacks_t.on_token) */
    HERALD_OP_REFRESHED,        /* reply to "refresh" */
    HERALD_OP_HISTORY,          /* reply to "history": channel, offset, epoch, publications (read `raw` for "next") */
} herald_op_t;

/* One server message, as a view. Every pointer points into the library's
 * receive buffers and is valid only until the callback that received it
 * returns; strings are NOT NUL-terminated. Fields a message does not carry are
 * 0 / NULL. */
typedef struct herald_msg {
    herald_op_t op;
    int has_id;                 /* 1 if the message carried an integer "id" */
    uint64_t id;
    const char *channel;        /* subscribed, unsubscribed, published, pub */
    size_t channel_len;
    uint64_t offset;            /* subscribed, published, pub */
    int64_t ts;                 /* pub: broker's accept time, ms since the epoch */
    const void *data;           /* pub: the encoded "data" value, in the connection's */
    size_t data_len;            /*      encoding (JSON text or MessagePack bytes) */
    int code;                   /* error: the protocol error code (101..110) */
    const char *reason;         /* error: the reason, unescaped */
    size_t reason_len;
    const char *client;         /* connected: this connection's client id */
    size_t client_len;
    int64_t ping_interval;      /* connected: seconds */
    uint64_t rx_ns;             /* when the bytes holding it were read (uv_hrtime() clock) */
    /* Presence. join/leave name the member in `client` (anonymous) or `user`. */
    const char *user;           /* join, leave: the member's user id */
    size_t user_len;
    int64_t members;            /* presence_stats: members now */
    int64_t connections;        /* presence_stats, presence: subscribed connections */
    int64_t count;              /* presence, presence_batch: members now */
    int64_t joins_total;        /* presence_batch: joins merged into it */
    int64_t leaves_total;       /* presence_batch: leaves merged into it */
    /* Recovery and history (subscribe with "since" or "history"); appended like presence. */
    const char *epoch;          /* subscribed: the channel's epoch (16 hex digits) */
    size_t epoch_len;
    int has_recovered;          /* subscribed: 1 if the reply carried "recovered" (a subscribe with since) */
    int recovered;              /* subscribed: its value, 1 true or 0 false */
    const void *publications;   /* subscribed: the encoded "publications" array, read it with */
    size_t publications_len;    /*   herald_pubs_init() / herald_pubs_next() */
    /* State channels (docs/protocol.md, state); appended. Encoded values, as `data`. */
    const void *state;          /* subscribed (to a state channel), snapshot: the encoded "state" map */
    size_t state_len;           /*   {key: {"value":..,"version":..}} */
    const void *changes;        /* updated, seats: the encoded "changes" array of the delta */
    size_t changes_len;
    /* The whole message as the server encoded it (one JSON object, or one MessagePack map), for
     * callers that read fields this view does not have; appended. */
    const void *raw;
    size_t raw_len;
} herald_msg_t;

/* How a connection ended, given to on_close. */
typedef struct herald_close_info {
    int code;                   /* WebSocket close code the server sent; 1005 if its close frame
                                   had none; 1006 if the connection ended without a close frame */
    const char *reason;         /* the close reason (NUL-terminated, may be ""); valid during the callback */
    int err;                    /* 0 for an orderly close, else why it failed: UV_* or HERALD_E_* */
    int was_open;               /* 1 if the client had reached on_open */
} herald_close_info_t;

typedef struct herald_ctx herald_ctx_t;
typedef struct herald_client herald_client_t;

/* A per-request callback, given to the request functions. Called once with
 * the reply to that request (its result, or op HERALD_OP_ERROR), matched by
 * id; not called if the connection closes first. @arg is what was passed with
 * the request. */
typedef void (*herald_reply_cb)(herald_client_t *c, const herald_msg_t *reply, void *arg);

typedef struct herald_callbacks {
    /* The Herald "connected" reply arrived: the client may now subscribe and publish. */
    void (*on_open)(herald_client_t *c, const herald_msg_t *connected, void *ud);
    /* A reply or error with no per-request callback, including errors without id, and every
     * push other than "pub" (join, leave, presence_batch). May be NULL. */
    void (*on_reply)(herald_client_t *c, const herald_msg_t *m, void *ud);
    /* A "pub" push. May be NULL. */
    void (*on_pub)(herald_client_t *c, const herald_msg_t *m, void *ud);
    /* The connection is finished (failed to connect, closed by either side, or
     * aborted). Called exactly once per client created by herald_client_new();
     * the client is freed when it returns, so @c must not be used afterwards. */
    void (*on_close)(herald_client_t *c, const herald_close_info_t *info, void *ud);
    /* The broker sent "refresh_required": the connection's token expires soon (docs/security.md).
     * Return a new token for the same user (borrowed: copied before the call returns) and the
     * library sends "refresh" with it, and uses it from then on; or NULL to do nothing now (then
     * call herald_refresh() once a token is at hand, or the broker closes with 4003 at expiry).
     * The "refresh_required" message itself, and the "refreshed" reply, then go to on_reply.
     * May be NULL (appended: older initialisers leave it NULL). */
    const char *(*on_token)(herald_client_t *c, void *ud);
} herald_callbacks_t;

/* A parsed, resolved ws:// or wss:// URL, computed once and shared by many clients. */
typedef struct herald_url {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[256];             /* for the Host header: "host:port" */
    char path[256];             /* "/ws" when the URL has no path */
    char name[80];              /* numeric address and port, for messages */
    int port;
    int tls;                    /* 1 for wss:// */
    char sni[256];              /* wss://: the name sent as SNI and that the certificate must be for;
                                   herald_url_parse() sets the URL's host. A caller may replace it
                                   (a broker reached by address whose certificate names a host).
                                   An IP address is not sent as SNI and must be in the certificate's
                                   IP addresses */
} herald_url_t;

/* TLS settings of a context, for its wss:// clients. */
typedef struct herald_tls_opts {
    const char *ca_file;        /* PEM file of trusted CA certificates; NULL with ca_path NULL: the
                                   system's default CA store */
    const char *ca_path;        /* a directory of hashed CA certificates, or NULL */
    int insecure;               /* 1: do not verify the certificate or its name (testing only) */
} herald_tls_opts_t;

typedef struct herald_opts {
    herald_encoding_t encoding; /* subprotocol herald.json or herald.msgpack */
    unsigned connect_timeout_ms;/* TCP + upgrade + Herald connect; 0 = 10000 */
    unsigned close_timeout_ms;  /* wait for the server's close frame / EOF; 0 = 2000 */
    size_t max_message;         /* largest server message accepted; 0 = 16 MiB */
    const char *token;          /* NULL, or a JWT sent in "connect" (docs/security.md); copied by
                                   herald_client_new(), so it may be freed once that returns */
} herald_opts_t;

/* herald_url_parse() - parse and resolve "ws://host[:port][/path]" (port 80 by
 * default) or "wss://host[:port][/path]" (TLS, port 443 by default); the path
 * is /ws by default. Resolution uses getaddrinfo() and may block: call it once
 * at start, not per connection. The first address is used.
 * @s: [in] the URL, NUL-terminated, borrowed for the call only.
 * @url: [out] filled on success; plain data the caller owns (copy it freely).
 * Return: 0; HERALD_E_URL (bad syntax or another scheme); a UV_EAI_* code if
 * the host does not resolve. */
int herald_url_parse(const char *s, herald_url_t *url);

/* herald_ctx_new() - a context on @loop for clients to share. It starts a
 * uv_prepare_t on @loop that flushes queued output before the loop polls
 * (and reads flush it too when it has waited 2 ms in a long turn).
 * @out: [out] the context; the caller frees it with herald_ctx_free().
 * Return: 0, or UV_ENOMEM. */
int herald_ctx_new(uv_loop_t *loop, herald_ctx_t **out);

/* herald_ctx_set_tls() - how @ctx's wss:// clients verify servers: clients created afterwards
 * use @o (NULL: the system's CAs, verification on, which is also what a context without this
 * call uses). The CA file is read now. @o: [in] borrowed for the call only.
 * Return: 0; HERALD_E_TLS if the CA file or directory cannot be loaded (the previous
 * settings stay); UV_ENOMEM. */
int herald_ctx_set_tls(herald_ctx_t *ctx, const herald_tls_opts_t *o);

/* herald_ctx_loop() - the loop @ctx runs on. */
uv_loop_t *herald_ctx_loop(const herald_ctx_t *ctx);

/* herald_ctx_free() - close the context's handle and free it once closed
 * (run the loop after this call). Every client of @ctx must already have
 * received on_close. */
void herald_ctx_free(herald_ctx_t *ctx);

/* herald_ctx_flush() - write what every client has queued now instead of
 * waiting for the loop's next prepare phase. Never blocks. */
void herald_ctx_flush(herald_ctx_t *ctx);

/* herald_client_new() - start connecting a client: TCP connect, the
 * WebSocket upgrade, then Herald's "connect". on_open fires when Herald
 * answers; on_close fires exactly once when the client is finished, including
 * when connecting fails (then info->was_open is 0).
 * @url: [in] borrowed for the call only. @opts: [in] copied; NULL for defaults.
 * @cb: [in] copied. @ud: handed to every callback.
 * @out: [out] the client, owned by the library until on_close returns.
 * For a wss:// @url the client uses @ctx's TLS settings (herald_ctx_set_tls(),
 * or the system's CAs) and verifies the certificate for @url->sni.
 * Return: 0, or UV_ENOMEM / a uv_tcp_connect() error / HERALD_E_TLS (wss://
 * without herald_ctx_set_tls() and no usable system CA store); no callback
 * fires then. */
int herald_client_new(herald_ctx_t *ctx, const herald_url_t *url, const herald_opts_t *opts,
                      const herald_callbacks_t *cb, void *ud, herald_client_t **out);

/* Accessors. Any time between herald_client_new() and the end of on_close; loop thread. */

/* herald_client_ud() / herald_client_set_ud() - the user pointer given to callbacks. */
void *herald_client_ud(const herald_client_t *c);
void herald_client_set_ud(herald_client_t *c, void *ud);

/* herald_client_encoding() - the encoding the client speaks. */
herald_encoding_t herald_client_encoding(const herald_client_t *c);

/* herald_client_is_open() - 1 between on_open and the start of a close. */
int herald_client_is_open(const herald_client_t *c);

/* herald_client_pending() - requests sent whose replies have not arrived. */
uint32_t herald_client_pending(const herald_client_t *c);

/* herald_client_queued() - bytes waiting to be written to the socket (with wss://, plaintext
 * not yet encrypted plus records not yet written). */
size_t herald_client_queued(const herald_client_t *c);

/* Requests. Each queues one message (flushed by the loop), numbers it with the
 * next id of this connection, and remembers @cb/@arg to call with the reply
 * (replies mostly arrive in request order; a refusal Herald gives at once, such as
 * 115 rate_limited or 135 overloaded, may overtake earlier requests' replies).
 * @cb may be NULL: the reply then goes to on_reply.
 * @channel: [in] @chlen bytes, copied. @id: [out] the request id, may be NULL.
 * Return: 0; HERALD_E_STATE if the client is not open; UV_ENOMEM. */
int herald_subscribe(herald_client_t *c, const char *channel, size_t chlen,
                     herald_reply_cb cb, void *arg, uint64_t *id);
int herald_unsubscribe(herald_client_t *c, const char *channel, size_t chlen,
                       herald_reply_cb cb, void *arg, uint64_t *id);
/* herald_publish() - also takes @data: [in] exactly one encoded value in the
 * client's encoding (JSON text, or MessagePack bytes), @len bytes, copied. The
 * library does not check it; Herald answers a bad value with error 101. */
int herald_publish(herald_client_t *c, const char *channel, size_t chlen, const void *data,
                   size_t len, herald_reply_cb cb, void *arg, uint64_t *id);
/* herald_subscribe_since() - subscribe with "since": {"epoch": @epoch, "offset": @offset},
 * to recover what was published after @offset while the client was away (docs/protocol.md,
 * subscribe). The reply (op HERALD_OP_SUBSCRIBED) has has_recovered set, recovered, epoch,
 * offset, and the publications after @offset in `publications` (see herald_pubs_next()).
 * @epoch: [in] @epoch_len bytes, the epoch of the earlier subscription's reply; copied.
 * Return: as herald_subscribe(). */
int herald_subscribe_since(herald_client_t *c, const char *channel, size_t chlen, const char *epoch,
                           size_t epoch_len, uint64_t offset, herald_reply_cb cb, void *arg, uint64_t *id);
/* herald_refresh() - replace the connection's token with @token (NUL-terminated, copied):
 * sends "refresh"; the reply is op HERALD_OP_REFRESHED or an error (113 invalid, 114 another
 * user's token). Return: as herald_subscribe(). */
int herald_refresh(herald_client_t *c, const char *token, herald_reply_cb cb, void *arg, uint64_t *id);
/* Options of herald_subscribe_ex(); zero-initialise, then set what is needed. */
typedef struct herald_sub_opts {
    const char *epoch;          /* with since: recover after offset @since of this epoch (as */
    size_t epoch_len;           /*   herald_subscribe_since()); NULL: from the present offset */
    uint64_t since;
    const char *token;          /* NULL, or a subscribe token (a JWT with "channel" = this channel,
                                   docs/security.md) for namespaces where subscribing needs a grant */
} herald_sub_opts_t;
/* herald_subscribe_ex() - subscribe with options @o ([in] NULL for none; its strings are
 * copied into the request). Return: as herald_subscribe(). */
int herald_subscribe_ex(herald_client_t *c, const char *channel, size_t chlen, const herald_sub_opts_t *o,
                        herald_reply_cb cb, void *arg, uint64_t *id);
/* herald_ping() - an application-level ping; the reply is op HERALD_OP_PONG. */
int herald_ping(herald_client_t *c, herald_reply_cb cb, void *arg, uint64_t *id);
/* herald_presence_stats() - ask for @channel's member and connection counts; the reply is
 * op HERALD_OP_PRESENCE_STATS (members, connections) or an error (116: no presence). */
int herald_presence_stats(herald_client_t *c, const char *channel, size_t chlen,
                          herald_reply_cb cb, void *arg, uint64_t *id);

/* herald_state() - atomic operations on state channel @channel: @ops is [in]
 * one encoded array of operations in the client's encoding, @len bytes, copied
 * (e.g. [{"op":"incr","key":"home","by":2}]; docs/protocol.md, state). The
 * reply is op HERALD_OP_UPDATED (offset, changes) or an error (117 conflict,
 * 118 not_integer, ...); subscribers get the delta as a pub.
 * Return: as herald_subscribe(). */
int herald_state(herald_client_t *c, const char *channel, size_t chlen, const void *ops, size_t len,
                 herald_reply_cb cb, void *arg, uint64_t *id);
/* herald_request() - any request: {"op":@op,"id":..,"channel":@channel, and the
 * entries of @fields}. @channel may be NULL. @fields: [in] NULL, or one encoded
 * map in the client's encoding (a JSON object, or a MessagePack map), @flen
 * bytes, copied, whose entries are added to the request. For a seat map:
 * herald_request(c, "seats", "seats:e1", 8, "{\"action\":\"hold\",\"seats\":[\"A1\"],\"ttl\":120}", ...)
 * answered by op HERALD_OP_SEATS or an error (119, 120, 121, ...).
 * Return: as herald_subscribe(); UV_EINVAL if @fields is not an object/map. */
int herald_request(herald_client_t *c, const char *op, const char *channel, size_t chlen, const void *fields,
                   size_t flen, herald_reply_cb cb, void *arg, uint64_t *id);

/* herald_close() - start the WebSocket close handshake with @code (1000 if 0)
 * and @reason (NULL or up to 123 bytes). on_close follows when the server has
 * answered and closed, or after close_timeout_ms. Before on_open this aborts
 * instead (info->err = HERALD_E_ABORTED). Calling it again is harmless. */
void herald_close(herald_client_t *c, int code, const char *reason);

/* herald_client_abort() - drop the TCP connection now, without a close
 * handshake; on_close follows with err HERALD_E_ABORTED. */
void herald_client_abort(herald_client_t *c);

/* Flow control. A consumer that cannot keep up (a slow database, a busy UI
 * thread) pauses the client: the library then stops reading its socket, so
 * the kernel's buffers fill and TCP pushes back on the broker, where
 * Herald applies its own policy to a connection that does not read
 * (docs/protocol.md): a state channel skips intermediate values and sends
 * a fresh snapshot once the client reads again; any other channel closes
 * the connection with 4000 once limits.send_queue_max bytes wait for it.
 *
 * What a paused client does not do: it answers no WebSocket pings (they
 * wait unread like any message), so the broker, hearing nothing from it for
 * 2 x websocket.ping_interval + 5 s, drops it, unless the program sends
 * requests meanwhile; and it learns of the connection's end (a close frame,
 * EOF) only once it resumes and reads that far. A stream that does not read
 * is not an active libuv handle: a loop with nothing else alive (no timer,
 * no other client) returns from uv_run() while a client is paused. Requests
 * (herald_publish(), ...) are still sent while paused; their replies wait
 * with the rest. */

/* herald_client_pause() - deliver no more messages to @c's callbacks and
 * stop reading its socket, until herald_client_resume(). From a callback of
 * @c (on_pub, on_reply, a reply callback, on_open) it takes effect after
 * that callback returns: the messages after it that were already read, in
 * the same read, are kept in the client's memory (copied out of the
 * context's shared buffer; with wss://, also the plaintext OpenSSL holds)
 * and delivered first, in order, on resume. Called before on_open it is
 * remembered and applies once on_open has returned (the handshake and
 * on_open are never held back). Pausing a paused client is harmless.
 * Return: 0; HERALD_E_STATE once a close has begun (herald_close(), the
 * server's close, or the end of the connection). Loop thread. */
int herald_client_pause(herald_client_t *c);

/* herald_client_resume() - undo herald_client_pause(): the messages kept
 * are delivered, oldest first, before any new read, and the client reads
 * again. Never delivers inside this call: the kept messages go out from the
 * context's uv_idle_t in this or the next loop iteration (from a timer
 * callback: the same iteration; from a message callback: the next), so it
 * may be called from any callback, @c's own included. A pause again before
 * they are delivered keeps them. herald_close() on a paused client lifts the
 * pause itself: the close handshake has to read the server's answer, and a
 * closing client delivers no more messages (the kept ones are dropped).
 * Resuming a client that is not paused is harmless.
 * Return: 0; HERALD_E_STATE if the connection has ended (before on_close). */
int herald_client_resume(herald_client_t *c);

/* herald_client_paused() - 1 between herald_client_pause() and
 * herald_client_resume() (or herald_close()), else 0. */
int herald_client_paused(const herald_client_t *c);

/* Reading the "publications" of a reply, one at a time, without allocating. */
typedef struct herald_pubs {
    const unsigned char *p, *end;   /* what is left of the array */
    uint32_t left;                  /* MessagePack: elements left; JSON: 1 once one was read */
    herald_encoding_t enc;
} herald_pubs_t;

/* herald_pubs_init() - start reading @reply's publications (reply->publications, in
 * the connection's encoding @enc). A reply without publications yields none.
 * @it: [out] the iterator; it points into @reply's memory, so it is valid only
 * during the callback that received @reply.
 * Return: 0; HERALD_E_PROTOCOL if "publications" is not an array. */
int herald_pubs_init(herald_pubs_t *it, herald_encoding_t enc, const herald_msg_t *reply);

/* herald_pubs_next() - the next publication, oldest first: @pub gets offset, ts and
 * data (a view, as in a pub push; reply_to and from are not read) with op
 * HERALD_OP_UNKNOWN and rx_ns 0.
 * Return: 1 with *@pub filled; 0 when there are no more; HERALD_E_PROTOCOL if an
 * element is not a map (then the iterator stays at the bad element). */
int herald_pubs_next(herald_pubs_t *it, herald_msg_t *pub);

/* herald_strerror() - a static description of a HERALD_E_* or UV_* code. */
const char *herald_strerror(int err);

/* Helpers for pre-encoding a "data" value to publish. */

/* herald_encode_str() - encode @len bytes of UTF-8 at @s as one string value
 * in @enc (a JSON string literal, escaped, or a MessagePack str) into @out.
 * Return: the bytes written, or the bytes that would be needed if @cap is too
 * small (nothing written then). */
size_t herald_encode_str(herald_encoding_t enc, const char *s, size_t len, void *out, size_t cap);

/* herald_decode_str() - if @data (@len bytes in @enc) is a string value with
 * no JSON escapes, point *@s at its bytes (inside @data) and set *@slen.
 * Return: 0, or -1 if it is not such a string. */
int herald_decode_str(herald_encoding_t enc, const void *data, size_t len, const char **s, size_t *slen);

#ifdef __cplusplus
}
#endif
#endif
