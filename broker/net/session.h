/* broker/net/session.h - one WebSocket connection: its inbound reassembly,
 * its outbound queue, its keepalive pings and its closing (bounded in time).
 *
 * Owns: sess_t, which libwebsockets allocates as the connection's
 * per-session data and frees after LWS_CALLBACK_CLOSED, so a session never
 * outlives its wsi and is never freed while a callback can reach it. The
 * outbound queue holds references to shared frames; when the connection is
 * writable everything queued is sent as one WebSocket frame (JSON messages
 * joined by '\n', MessagePack objects back to back), which turns the cost of
 * fan-out from a syscall per message into a syscall per batch.
 * Does not own: subscriptions (core/channel.c: it keeps them in the
 * session's subs[] and nstale) or what messages mean (app/ops.c). The
 * transport never calls up: what happens on a message, a close and a
 * drained queue is what main.c puts in struct sess_hooks.
 * Loop thread only. */
#ifndef HERALD_SESSION_H
#define HERALD_SESSION_H

#include <jansson.h>
#include <stdint.h>
#include <libwebsockets.h>
#include <uv.h>

#include "auth/auth.h"
#include "net/frame.h"
#include "msg.h"
#include "auth/ratelimit.h"

/* WebSocket close codes Herald sends (docs/protocol.md). */
enum {
    CLOSE_GOING_AWAY = 1001,      /* broker shutting down */
    CLOSE_INVALID_UTF8 = 1007,    /* sent by libwebsockets itself */
    CLOSE_TOO_BIG = 1009,         /* message over limits.max_message_size */
    CLOSE_INTERNAL = 1011,        /* out of memory handling the connection */
    CLOSE_SLOW_CONSUMER = 4000,   /* send queue over limits.send_queue_max */
    CLOSE_UNAUTHORIZED = 4001,    /* connect refused: no valid token */
    CLOSE_CONNECT_TIMEOUT = 4002, /* no connect within websocket.connect_timeout */
    CLOSE_TOKEN_EXPIRED = 4003,   /* the token expired and no refresh came */
    CLOSE_TOO_MANY = 4008,        /* limits.connections_per_ip reached */
};

#define SESS_KIND_WS 0x5753       /* marks per-session data as a sess_t */

struct sub;

typedef struct sess {
    uint16_t kind;                /* SESS_KIND_WS once established */
    uint8_t enc;                  /* enum proto_enc */
    uint8_t connected : 1;        /* connect op done */
    uint8_t write_pending : 1;    /* lws_callback_on_writable() already asked */
    uint8_t flush_then_close : 1; /* close with close_code once the queue is empty */
    uint8_t close_started : 1;    /* the close frame is on its way: write nothing more */
    uint8_t dirty : 1;            /* on srv.dirty: flush at the end of this loop turn */
    uint8_t killed : 1;           /* the close timeout passed: lws drops the socket */
    uint8_t silent : 1;           /* dropped for not answering pings (no close frame) */
    uint8_t waiting : 1;          /* gathering before its next write: on the wait wheel (session.c) */
    uint16_t close_code;          /* nonzero: closing with this code */
    uint16_t tune_gen;            /* srv.tune_gen when it last wrote from a flush pass */
    uint16_t wait_slot;           /* its slot on the wait wheel, while waiting */
    struct lws *wsi;
    struct sess *prev, *next;     /* srv.sessions */
    struct sess *dirty_next;      /* srv.dirty */
    struct sess *wait_prev, *wait_next;   /* its slot's list on the wait wheel */
    uint64_t created_ms;
    uint64_t last_write_ms;       /* loop time of the last data write */
    uint64_t last_rx_ms;          /* loop time the peer was last heard from (any frame, a pong) */
    uint64_t ping_sent_ms;        /* loop time of our last keepalive ping, 0: none yet */
    uint64_t close_at_ms;         /* loop time the close began, or of the last write while flushing before it */
    uint32_t ping_seq;            /* number of keepalive pings sent */
    uint32_t outq;                /* bytes in the socket's send queue at the last tick, while flushing to close */

    frame_t **q;                  /* ring of queued frames */
    uint32_t qcap, qhead, qlen;
    uint32_t ring_n;              /* frames in the send queued on net/sendring.h, until it completes */
    uint8_t ring_hlen;            /* ... and the WebSocket header bytes it starts with */
    struct frame *ring_frame;     /* ... and the frame it sends from, referenced until then (or NULL) */
    size_t qbytes;

    unsigned char *rx;            /* reassembly of a fragmented message */
    size_t rxlen, rxcap;

    struct sub **subs;            /* this session's subscriptions, dense */
    uint32_t nsubs, subscap;

    uint64_t serial;              /* conns.h key while the session lives */
    char id[17];                  /* client id given in "connected" */

    ident_t ident;                /* who: set by connect and refresh */
    bucket_t msg_bucket;          /* limits.messages_per_second */
    bucket_t sig_bucket;          /* namespace signal_rate */
    bucket_t pres_bucket;         /* namespace signal_rate, for presence_update */
    char *url_token;              /* ?token= of the WebSocket URL, until connect */
    uint8_t refresh_sent : 1;     /* refresh_required sent for the current token */
    uint8_t peer_counted : 1;     /* counted in limits.connections_per_ip */
    uint8_t exempt : 1;           /* its address is in limits.rate_limit_exempt */
    uint32_t nstale;              /* state subscriptions waiting for a fresh snapshot */
    char peer[46];                /* client address (net/peer.h: behind a trusted proxy, the one it names) */
    /* Non-NULL: this session is a stream on an HTTP response (a
     * Server-Sent Events stream, net/sse.c), not a WebSocket: its queue is
     * written through these operations, it is kept alive by them instead of
     * pings, and it closes by ending the response. */
    const struct sess_stream_ops *stream;
} sess_t;

/* How a stream session (sess_on_stream()) writes. The session keeps the
 * queue, its bound and the write scheduling; the stream turns queued frames
 * into its own wire text. Loop thread. */
struct sess_stream_ops {
    /* The text of frames from the head of @s's queue, at least one and then
     * as many as fit in @max bytes; *@buf (LWS_PRE headroom before it) and
     * *@len say where (*@len may be 0). Return: frames taken, 0 if out of
     * memory (the connection is then dropped). */
    uint32_t (*format)(sess_t *s, size_t max, unsigned char **buf, size_t *len);
    /* Whether the stream wants a keep-alive write now (nothing is queued). */
    int (*heartbeat_due)(const sess_t *s, uint64_t now);
    /* Write the keep-alive. Return: 0, or -1 if the write failed. */
    int (*heartbeat)(sess_t *s);
    /* Whether the client has closed its end: an HTTP response is not read
     * while it is written, so the tick asks. */
    int (*peer_gone)(const sess_t *s);
    /* The connection is gone: close the session (sess_on_closed()) and free
     * what holds it. Called by net/http.c. */
    void (*closed)(sess_t *s);
};

/* What the layers above do with a session's events. */
struct sess_hooks {
    /* A complete message arrived (@buf is valid during the call only). */
    void (*on_message)(sess_t *s, const unsigned char *buf, size_t len);
    /* The connection is gone; the session is freed after the call, and its
     * identity is still set during it. May be NULL. */
    void (*on_closed)(sess_t *s);
    /* A session with state subscriptions marked stale (s->nstale) has
     * drained its queue below a quarter of limits.send_queue_max: time for
     * fresh snapshots. May be NULL. */
    void (*on_drained)(sess_t *s);
};

/* sess_set_hooks() - install @h (copied) before the first connection. */
void sess_set_hooks(const struct sess_hooks *h);

/* sess_on_established() - initialise @s in the per-session data of @wsi. */
void sess_on_established(sess_t *s, struct lws *wsi);

/* sess_on_stream() - initialise @s (the caller's storage, which must stay
 * put until sess_on_closed()) as a stream on the HTTP connection @wsi,
 * written through @ops (static; net/sse.c's event stream). It is listed in
 * srv.sessions and conns.h like a WebSocket session, counted in
 * limits.connections_per_ip; the caller marks it connected.
 * Return: 0; PROTO_E_RATE_LIMITED at limits.connections_per_ip; -ENOMEM.
 * On failure nothing is listed and sess_on_closed() must not be called. */
int sess_on_stream(sess_t *s, struct lws *wsi, const struct sess_stream_ops *ops);

/* sess_on_receive() - a piece of an incoming message. Return: 0, or -1 to
 * make libwebsockets close the connection (a close reason is already set). */
int sess_on_receive(sess_t *s, const void *in, size_t len);

/* sess_on_writable() - send what is queued. Return: 0, or -1 to close. */
int sess_on_writable(sess_t *s);

/* sess_on_closed() - the connection is gone: drop subscriptions and queue. */
void sess_on_closed(sess_t *s);

/* sess_on_peer_close() - the client sent a close frame: write nothing more;
 * libwebsockets answers it and closes. */
void sess_on_peer_close(sess_t *s);

/* sess_on_pong() - a pong arrived: the peer is alive. */
void sess_on_pong(sess_t *s);

/* sess_tick() - the once-a-second housekeeping of one session at loop time
 * @now: the keepalive and the close timeout.
 * Keepalive (websocket.ping_interval, 0 = off): a session heard nothing
 * from for the interval is sent a ping of our own, from our own buffer, with
 * a payload no client can confuse with its own ("hk" and a sequence number);
 * one heard nothing from for 2 x interval + 5 s is dropped without a close
 * frame (disconnect reason ping_timeout). libwebsockets' own keepalive
 * (retry_and_idle_policy) is not used: in 4.1.6 it writes its ping stamp
 * into the one per-connection buffer that also holds the payload of a
 * client's ping still waiting for its pong, so that pong carried the wrong
 * payload (RFC 6455 5.5.3) and clients gave up with 1011.
 * Close timeout (5 s): a session still open that long after its close
 * began (or, while it flushes its queue before closing, after the peer
 * last took bytes off the socket or we last wrote) is dropped, close frame
 * sent or not: a peer that stopped reading
 * never lets the close frame out, so nothing else would finish the close.
 * (A peer that gets the close frame and never answers it is dropped by
 * libwebsockets, 5 s after the frame went out.)
 * The session may be closed (and freed by libwebsockets) later on the loop,
 * never during the call. */
void sess_tick(sess_t *s, uint64_t now);

/* sess_flush_dirty() - write what this loop turn queued, straight to the
 * sockets that can take it (called from a uv_check handle, once per turn,
 * while srv.dirty or sess_waiting()). A connection that is streaming may
 * wait up to srv.coalesce_ms to gather more into one write; it then waits
 * on a wheel of millisecond slots and srv.flush_timer wakes the loop when
 * the first is due. */
void sess_flush_dirty(void);

/* sess_waiting() - how many connections wait on the wheel to write. */
unsigned sess_waiting(void);
void sess_flush_timer_cb(uv_timer_t *t);

/* The share of the loop's time (percent) the flush passes may take before
 * the write gap is sized to their cost: the rest is for reading, decoding,
 * storing and fanning out publications. */
#define SESS_WRITE_SHARE 50

/* sess_coalesce_adjust() - lengthen srv.coalesce_ms while the loop is busier
 * than 80% of the time, shorten it below 50% (called every 250 ms). While
 * busy, and writing takes more than SESS_WRITE_SHARE percent of the loop's
 * time, it goes at once to the gap that brings the writes back within that
 * share at their measured cost, up to websocket.latency_goal. */
void sess_coalesce_adjust(void);

/* sess_coalesce_need_ms() - the gap, in ms, at which @writers connections
 * each writing once per gap, at @cost_ns of loop time per write, take
 * SESS_WRITE_SHARE percent of the loop (rounded up). Pure: unit-tested. */
static inline unsigned sess_coalesce_need_ms(uint64_t writers, uint64_t cost_ns)
{
    if (cost_ns && writers > UINT64_MAX / 100 / cost_ns) return UINT32_MAX;
    uint64_t ns = writers * cost_ns * 100 / SESS_WRITE_SHARE;
    uint64_t ms = ns / 1000000 + (ns % 1000000 != 0);
    return ms > 0xffffffffu ? 0xffffffffu : (unsigned)ms;
}

/* sess_push() - queue a reference to @f (the caller keeps its own). A queue
 * over limits.send_queue_max closes the session as a slow consumer instead. */
void sess_push(sess_t *s, frame_t *f);

/* sess_send() - encode @msg in the session's encoding and queue it; takes
 * @msg's reference. */
void sess_send(sess_t *s, json_t *msg);

/* sess_send_error() - queue {"op":"error","id","code","reason"}. */
void sess_send_error(sess_t *s, const json_t *id, int code, const char *reason);

/* sess_close() - close @s with @code and @reason. With @flush, queued
 * messages are sent first; without, they are dropped. Safe from anywhere on
 * the loop thread: the close happens in the next writable callback. */
void sess_close(sess_t *s, uint16_t code, int flush);

/* sess_encode() - a new frame holding @msg in @enc, or NULL if out of memory. */
frame_t *sess_encode(enum proto_enc enc, const json_t *msg);

#endif
