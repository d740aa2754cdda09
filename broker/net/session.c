/* broker/net/session.c - see session.h.
 *
 * DESIGN: a session's queue is a ring of frame references, bounded in bytes
 * by limits.send_queue_max. On LWS_CALLBACK_SERVER_WRITEABLE we write either
 * the first frame straight from its shared buffer (when it is alone or too
 * big to batch), or as many frames as fit in write_batch_max, copied into
 * srv.batch, as one WebSocket frame; and again while the kernel keeps up. Copying a few hundred bytes is far
 * cheaper than the send() and epoll_ctl() each extra write would cost, and
 * srv.batch is safe to reuse at once because libwebsockets copies whatever
 * the kernel did not take. If more is queued we ask for another callback
 * rather than calling lws_send_pipe_choked(), which costs a poll() each time.
 * At the end of a loop turn, sess_flush_dirty() writes to every connection
 * that got something; those writes go to the kernel together, one io_uring
 * system call for the lot (net/sendring.h), with the same bytes a
 * lws_write() would have sent: the WebSocket header is ours (ws_header()),
 * and the rest of a send the kernel took only in part goes to lws as raw
 * bytes, which it finishes before writing anything else. */
#include "net/session.h"
#include "net/conns.h"
#include "net/peer.h"
#include "net/sendring.h"
#include "herald.h"
#include "clock.h"
#include "rand.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MIN 16
/* Frames written per writable callback at most. */
#define SESS_WRITES_PER_CALLBACK 16
/* A reassembly buffer bigger than this is freed after use, so one large
 * message does not pin memory on an otherwise idle connection. */
#define RX_KEEP 4096
/* A session still open this long after its close began is dropped, close
 * frame sent or not. The same bound libwebsockets gives a close frame's
 * answer (PENDING_TIMEOUT_CLOSE_ACK), which covers the peer that never
 * answers: lws reports the session closed as it sends the frame, so the
 * session is gone from srv.sessions by then. */
#define CLOSE_TIMEOUT_MS 5000

static const char *close_reason(uint16_t code)
{
    switch (code) {
    case CLOSE_GOING_AWAY: return "server shutting down";
    case CLOSE_TOO_BIG: return "message too large";
    case CLOSE_INTERNAL: return "internal error";
    case CLOSE_SLOW_CONSUMER: return "slow consumer: send queue full";
    case CLOSE_CONNECT_TIMEOUT: return "no connect message in time";
    case CLOSE_UNAUTHORIZED: return "unauthorized";
    case CLOSE_TOKEN_EXPIRED: return "token expired";
    case CLOSE_TOO_MANY: return "too many connections from this address";
    default: return "";
    }
}

void sess_on_established(sess_t *s, struct lws *wsi)
{
    const struct lws_protocols *p = lws_get_protocol(wsi);

    memset(s, 0, sizeof *s);
    s->kind = SESS_KIND_WS;
    s->wsi = wsi;
    /* herald.msgpack is binary; herald.json, and a client that asked for no
     * subprotocol (bound to protocols[0]), speak JSON. */
    s->enc = (p && p->name && !strcmp(p->name, "herald.msgpack")) ? PROTO_MSGPACK : PROTO_JSON;
    s->created_ms = uv_now(&srv.loop);
    s->last_rx_ms = s->created_ms;
    rand_hex(s->id, sizeof s->id - 1);
    if (conn_register(s, &s->serial)) sess_close(s, CLOSE_INTERNAL, 0);
    peer_client_addr(wsi, s->peer, sizeof s->peer);
    s->exempt = (uint8_t)rl_exempt(s->peer);
    if (rl_session_open(s->peer) == RL_TOO_MANY) sess_close(s, CLOSE_TOO_MANY, 0);
    else s->peer_counted = 1;
    {
        /* Browsers cannot set headers on a WebSocket: the token may come in the URL. */
        char buf[8192];
        const char *t = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
        if (t && *t) s->url_token = strdup(t);
    }
    s->next = srv.sessions;
    if (srv.sessions) srv.sessions->prev = s;
    srv.sessions = s;
    srv.nsessions++;
    srv.stats.connections_total++;
    metrics.conn_enc[s->enc]++;
    if (srv.stopping) sess_close(s, CLOSE_GOING_AWAY, 0);
}

int sess_on_stream(sess_t *s, struct lws *wsi, const struct sess_stream_ops *ops)
{
    memset(s, 0, sizeof *s);
    s->kind = SESS_KIND_WS;
    s->wsi = wsi;
    s->enc = PROTO_JSON;          /* the fan-out's JSON frames, rewritten as SSE text at write time */
    s->stream = ops;
    s->created_ms = uv_now(&srv.loop);
    s->last_rx_ms = s->last_write_ms = s->created_ms;
    rand_hex(s->id, sizeof s->id - 1);
    peer_client_addr(wsi, s->peer, sizeof s->peer);
    s->exempt = (uint8_t)rl_exempt(s->peer);
    if (rl_session_open(s->peer) == RL_TOO_MANY) return PROTO_E_RATE_LIMITED;
    s->peer_counted = 1;
    if (conn_register(s, &s->serial)) {
        rl_session_close(s->peer);
        return -ENOMEM;
    }
    s->next = srv.sessions;
    if (srv.sessions) srv.sessions->prev = s;
    srv.sessions = s;
    srv.nsessions++;
    metrics.sse_streams++;
    metrics.sse_connects++;
    return 0;
}

static struct sess_hooks hooks;

void sess_set_hooks(const struct sess_hooks *h) { hooks = *h; }

static void queue_clear(sess_t *s)
{
    while (s->qlen) {
        s->q[s->qhead] = frame_unref(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) & (s->qcap - 1);
        s->qlen--;
    }
    s->qbytes = 0;
    s->qhead = 0;
}

static void request_write(sess_t *s)
{
    if (!s->write_pending) {
        s->write_pending = 1;
        lws_callback_on_writable(s->wsi);
    }
}

/* Queues @s for the end-of-turn flush. */
static void mark_dirty(sess_t *s)
{
    if (!s->dirty) {
        s->dirty = 1;
        s->dirty_next = srv.dirty;
        srv.dirty = s;
    }
}

void sess_close(sess_t *s, uint16_t code, int flush)
{
    if (s->close_code) return;
    s->close_code = code;
    if (!s->close_started) s->close_at_ms = uv_now(&srv.loop);
    s->flush_then_close = (uint8_t)(flush ? 1 : 0);
    if (!flush) queue_clear(s);
    request_write(s);
}

/* The wait wheel: connections gathering before their next write
 * (should_wait()), filed by the loop millisecond they are due, so that a
 * loop turn looks at those due then, not at every connection that waits
 * (walking 10,000 waiting sessions twice a turn was 6% of a busy broker,
 * all cache misses). The span bounds the longest wait. */
#define WHEEL_SLOTS 4096u
static sess_t *wheel[WHEEL_SLOTS];
static uint64_t wheel_at;         /* loop ms up to which due slots were taken */
static uint64_t wheel_armed;      /* loop ms srv.flush_timer fires at (0: not armed) */
static unsigned nwaiting;

unsigned sess_waiting(void)
{
    return nwaiting;
}

/* Files @s to be written at loop time @due, moved to be after @now and
 * within the span. Return: the time it is filed for. */
static uint64_t wheel_add(sess_t *s, uint64_t due, uint64_t now)
{
    sess_t **head;

    if (due <= now) due = now + 1;
    if (due - now >= WHEEL_SLOTS) due = now + WHEEL_SLOTS - 1;
    s->wait_slot = (uint16_t)(due & (WHEEL_SLOTS - 1));
    head = &wheel[s->wait_slot];
    s->wait_prev = NULL;
    s->wait_next = *head;
    if (*head) (*head)->wait_prev = s;
    *head = s;
    s->waiting = 1;
    nwaiting++;
    return due;
}

static void wheel_del(sess_t *s)
{
    if (!s->waiting) return;
    if (s->wait_prev) s->wait_prev->wait_next = s->wait_next;
    else wheel[s->wait_slot] = s->wait_next;
    if (s->wait_next) s->wait_next->wait_prev = s->wait_prev;
    s->wait_prev = s->wait_next = NULL;
    s->waiting = 0;
    nwaiting--;
}

/* Moves the connections due by @now onto srv.dirty. A slot holds only
 * those due at one time: every entry is filed less than the span ahead of
 * the pass that files it, and every pass takes what is due first. */
static void wheel_take(uint64_t now)
{
    uint64_t n = now > wheel_at ? now - wheel_at : 0;

    if (n > WHEEL_SLOTS) n = WHEEL_SLOTS;
    for (uint64_t t = wheel_at + 1; n-- && nwaiting; t++) {
        sess_t **head = &wheel[t & (WHEEL_SLOTS - 1)];
        while (*head) {
            sess_t *s = *head;
            wheel_del(s);
            mark_dirty(s);
        }
    }
    if (now > wheel_at) wheel_at = now;
}

/* Wakes the loop when the first waiting connection is due: at @first if it
 * is sooner than the timer (an entry filed this pass), else at the next
 * filled slot once the timer has fired. */
static void wheel_arm(uint64_t now, uint64_t first)
{
    uint64_t at = 0;

    if (!nwaiting) return;
    if (wheel_armed > now) {
        if (!first || first >= wheel_armed) return;
        at = first;
    } else {
        for (uint64_t t = now + 1; t < now + WHEEL_SLOTS; t++)
            if (wheel[t & (WHEEL_SLOTS - 1)]) { at = t; break; }
        if (!at) return;
    }
    wheel_armed = at;
    uv_timer_start(&srv.flush_timer, sess_flush_timer_cb, at - now, 0);
}

/* Takes @s off srv.dirty and the wait wheel (it is closing for good). */
static void unmark_dirty(sess_t *s)
{
    wheel_del(s);
    if (!s->dirty) return;
    for (sess_t **pp = &srv.dirty; *pp; pp = &(*pp)->dirty_next)
        if (*pp == s) { *pp = s->dirty_next; break; }
    s->dirty = 0;
}

static int queue_grow(sess_t *s)
{
    uint32_t ncap = s->qcap ? s->qcap * 2 : QUEUE_MIN;
    frame_t **nq = malloc(ncap * sizeof *nq);

    if (!nq) return -ENOMEM;
    /* Unroll the ring so that it starts at 0 in the new array. */
    for (uint32_t i = 0; i < s->qlen; i++) nq[i] = s->q[(s->qhead + i) & (s->qcap - 1)];
    free(s->q);
    s->q = nq;
    s->qcap = ncap;
    s->qhead = 0;
    return 0;
}

void sess_push(sess_t *s, frame_t *f)
{
    /* A session flushing before its close still takes messages (the outcome
     * of a publication it made, say); one closing for cause does not. */
    if ((s->close_code && !s->flush_then_close) || s->close_started) return;
    /* One message alone may exceed the cap (a big snapshot); a backlog may not. */
    if (s->qlen && s->qbytes + f->len > srv.cfg.send_queue_max) {
        srv.stats.slow_consumers++;
        hlog(LOG_INFO, "ws", "closing client %s: send queue over %zu bytes (slow consumer)", s->id,
             srv.cfg.send_queue_max);
        sess_close(s, CLOSE_SLOW_CONSUMER, 0);
        return;
    }
    if (s->qlen == s->qcap && queue_grow(s)) {
        sess_close(s, CLOSE_INTERNAL, 0);
        return;
    }
    s->q[(s->qhead + s->qlen) & (s->qcap - 1)] = frame_ref(f);
    s->qlen++;
    s->qbytes += f->len;
    /* No lws_callback_on_writable() here: arming POLLOUT and disarming it
     * after the write costs two epoll_ctl() calls per connection per turn,
     * more than the send() itself. sess_flush_dirty() writes directly. */
    mark_dirty(s);
}

frame_t *sess_encode(enum proto_enc enc, const json_t *msg)
{
    wbuf_reset(&srv.enc);
    msg_encode(enc, msg, &srv.enc);
    if (srv.enc.oom) return NULL;
    return frame_new(srv.enc.p, srv.enc.len);
}

void sess_send(sess_t *s, json_t *msg)
{
    frame_t *f = msg ? sess_encode((enum proto_enc)s->enc, msg) : NULL;

    json_decref(msg);
    if (!f) { sess_close(s, CLOSE_INTERNAL, 0); return; }
    sess_push(s, f);
    frame_unref(f);
}

void sess_send_error(sess_t *s, const json_t *id, int code, const char *reason)
{
    sess_send(s, msg_error(id, code, reason));
}

/* libwebsockets 4.1.6 declares this only in a private header, but exports it.
 * We need it because Debian builds lws with _DEBUG, and there a callback
 * that returns -1 on a libuv loop is closed twice in a row ("uv repeat
 * test"): the second call sees the close frame still waiting and kills the
 * socket, so the client never gets our close code (it sees 1006). Starting
 * the close ourselves takes lws's polite path: it sends the close frame
 * with the code and reason set below, waits for the peer's answer (5 s at
 * most), then closes. Under libuv the wsi is freed later, from a uv close
 * callback, but LWS_CALLBACK_CLOSED may already have run when this returns:
 * callers must not touch the session afterwards. */
void lws_close_free_wsi(struct lws *wsi, enum lws_close_status reason, const char *caller);

/* Starts the close of @s with s->close_code. Return: 0, for the callback
 * (-1 for an event stream: the callback then ends its connection). */
static int do_close(sess_t *s)
{
    const char *why = close_reason(s->close_code);
    enum lws_close_status code = (enum lws_close_status)s->close_code;

    if (!s->close_at_ms) s->close_at_ms = uv_now(&srv.loop);
    s->close_started = 1;
    queue_clear(s);
    /* An event stream has no close frame: ending the response is its close
     * (the -1 makes libwebsockets drop the connection). */
    if (s->stream) return -1;
    lws_close_reason(s->wsi, code, (unsigned char *)why, strlen(why));
    lws_close_free_wsi(s->wsi, code, "herald");
    return 0;
}

static void pop(sess_t *s, uint32_t n)
{
    while (n--) {
        frame_t *f = s->q[s->qhead];
        s->qbytes -= f->len;
        frame_unref(f);
        s->qhead = (s->qhead + 1) & (s->qcap - 1);
        s->qlen--;
    }
    if (s->qlen == 0 && s->qcap > 4 * QUEUE_MIN) {
        /* A burst grew the ring; give the memory back once it has drained. */
        free(s->q);
        s->q = NULL;
        s->qcap = 0;
        s->qhead = 0;
    }
}

/* The frames one write takes from the head of @s's queue (non-empty), and
 * their payload bytes in *@len: the first alone, from its shared buffer
 * (*@single = 1), when it is alone or too big to batch; otherwise as many
 * as fit in write_batch_max, newline-separated in JSON (batch_copy()). */
static uint32_t batch_span(const sess_t *s, size_t *len, int *single)
{
    size_t max = srv.cfg.write_batch_max;
    frame_t *f = s->q[s->qhead];
    uint32_t n;

    *single = s->qlen == 1 || f->len >= max;
    if (*single) {
        *len = f->len;
        return 1;
    }
    *len = 0;
    for (n = 0; n < s->qlen; n++) {
        f = s->q[(s->qhead + n) & (s->qcap - 1)];
        if (*len + f->len + 1 > max) break;
        if (n && s->enc == PROTO_JSON) (*len)++;
        *len += f->len;
    }
    return n;
}

/* Copies the first @n queued frames of @s into @dst, as batch_span() counted them. */
static void batch_copy(const sess_t *s, uint32_t n, unsigned char *dst)
{
    for (uint32_t i = 0; i < n; i++) {
        frame_t *f = s->q[(s->qhead + i) & (s->qcap - 1)];
        if (i && s->enc == PROTO_JSON) *dst++ = '\n';
        memcpy(dst, frame_payload(f), f->len);
        dst += f->len;
    }
}

/* After a write of @n frames (@len payload bytes) went out, whichever way. */
static void wrote(sess_t *s, uint32_t n, size_t len)
{
    /* A session flushing its queue before its close is making progress:
     * the close timeout counts from its last write, so a client that reads
     * slowly but steadily gets everything (shutdown_timeout bounds that). */
    if (s->close_code) s->close_at_ms = uv_now(&srv.loop);
    metrics.writes++;
    metrics.frames_out += n;
    metrics.bytes_out += len;
    pop(s, n);
    if (s->nstale && s->qbytes < srv.cfg.send_queue_max / 4 && hooks.on_drained) hooks.on_drained(s);
}

/* Writes one WebSocket frame from the head of the queue: the first frame
 * alone, straight from its shared buffer, when it is alone or too big to
 * batch; otherwise as many queued frames as fit in write_batch_max, copied
 * into srv.batch. Return: 0, or -1 if the write failed. */
static int write_batch(sess_t *s)
{
    if (s->stream) {
        /* A stream: its frames are rewritten as its own text (net/sse.c's
         * events), as many as fit in write_batch_max, in one write. */
        unsigned char *out;
        size_t len;
        uint32_t n = s->stream->format(s, srv.cfg.write_batch_max, &out, &len);
        if (!n || (len && lws_write(s->wsi, out, len, LWS_WRITE_HTTP) < (int)len)) return -1;
        if (s->close_code) s->close_at_ms = uv_now(&srv.loop);
        s->last_write_ms = uv_now(&srv.loop);
        pop(s, n);           /* counted in herald_sse_events_total, not in the WebSocket counters */
        return 0;
    }
    enum lws_write_protocol type = s->enc == PROTO_MSGPACK ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
    size_t len;
    int single;
    uint32_t n = batch_span(s, &len, &single);
    unsigned char *out = single ? frame_payload(s->q[s->qhead]) : srv.batch + FRAME_HEADROOM;

    if (!single) batch_copy(s, n, out);
    if (lws_write(s->wsi, out, len, type) < (int)len) return -1;
    wrote(s, n, len);
    return 0;
}

void sess_on_peer_close(sess_t *s)
{
    if (!s->close_at_ms) s->close_at_ms = uv_now(&srv.loop);
    s->close_started = 1;
    queue_clear(s);
}

void sess_on_pong(sess_t *s)
{
    s->last_rx_ms = uv_now(&srv.loop);
}

/* Drops @s's socket from lws's own loop, without a close frame. */
static void kill_socket(sess_t *s)
{
    s->killed = 1;
    s->close_started = 1;
    queue_clear(s);
    unmark_dirty(s);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/* Writes a keepalive ping carrying "hk" and the sequence number, from our
 * own buffer: lws's per-connection control buffer holds the payload of a
 * client's ping until its pong is out, and must not be touched. */
static void send_ping(sess_t *s, uint64_t now)
{
    unsigned char buf[LWS_PRE + 16], *p = buf + LWS_PRE;
    uint32_t seq = ++s->ping_seq;

    s->ping_sent_ms = now;
    /* A write while lws holds a partial would corrupt its count; a peer
     * that is not reading is found by the hangup instead. */
    if (lws_partial_buffered(s->wsi)) return;
    p[0] = 'h';
    p[1] = 'k';
    for (int i = 0; i < 4; i++) p[2 + i] = (unsigned char)(seq >> (24 - 8 * i));
    if (lws_write(s->wsi, p, 6, LWS_WRITE_PING) < 6) kill_socket(s);
}

/* Whether the peer took bytes from the socket's send queue since the last
 * call. Our own writes are no measure of that: the kernel signals room to
 * write only once much of a large send buffer has drained, which at a slow
 * reader's pace can take longer than the close timeout. */
static int reader_progressed(sess_t *s)
{
    int fd = (int)lws_get_socket_fd(s->wsi), queued = 0, was = (int)s->outq;

    if (fd < 0 || ioctl(fd, SIOCOUTQ, &queued) < 0) return 0;
    s->outq = (uint32_t)queued;
    return queued < was;
}

void sess_tick(sess_t *s, uint64_t now)
{
    uint64_t every = srv.cfg.ping_interval_ms;

    if (s->killed) return;
    if (s->close_code || s->close_started) {
        if (s->close_code && s->flush_then_close && !s->close_started && reader_progressed(s))
            s->close_at_ms = now;
        if (now - s->close_at_ms >= CLOSE_TIMEOUT_MS) {
            hlog(LOG_INFO, "ws", "client %s: close not done after %d s (not reading?): dropping the connection",
                 s->id, CLOSE_TIMEOUT_MS / 1000);
            srv.stats.close_timeouts++;
            kill_socket(s);
        }
        return;
    }
    if (s->stream) {
        /* A stream's client never speaks: it is kept alive (and a dead one
         * found) by the stream's heartbeats, not pings. */
        if (s->stream->peer_gone(s) || (s->qlen == 0 && !lws_partial_buffered(s->wsi) &&
                                        s->stream->heartbeat_due(s, now) && s->stream->heartbeat(s)))
            kill_socket(s);
        return;
    }
    if (!every) return;
    if (now - s->last_rx_ms >= 2 * every + 5000) {
        hlog(LOG_INFO, "ws", "closing client %s: no answer to pings for %llu s", s->id,
             (unsigned long long)((now - s->last_rx_ms) / 1000));
        s->silent = 1;
        s->close_at_ms = now;
        kill_socket(s);
        return;
    }
    if (now - s->last_rx_ms >= every && (s->ping_sent_ms <= s->last_rx_ms || now - s->ping_sent_ms >= every))
        send_ping(s, now);
}

/* Whether @s should wait to gather more before writing: it wrote less than
 * srv.coalesce_ms ago and has less than half a batch queued. An idle
 * connection therefore writes at once; a streaming one writes at most once
 * per coalesce_ms, each write carrying everything that arrived meanwhile. */
static int should_wait(const sess_t *s, uint64_t now)
{
    return srv.coalesce_ms && now - s->last_write_ms < srv.coalesce_ms &&
           s->qbytes < srv.cfg.write_batch_max / 2;
}

/* Writes the header of an unmasked, final WebSocket frame of @len payload
 * bytes (text, or binary for MessagePack) into the bytes just before @end.
 * Return: the header's size (2, 4 or 10). */
static size_t ws_header(unsigned char *end, size_t len, int binary)
{
    unsigned char op = 0x80 | (binary ? 0x2 : 0x1);

    if (len < 126) {
        end[-2] = op;
        end[-1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        end[-4] = op;
        end[-3] = 126;
        end[-2] = (unsigned char)(len >> 8);
        end[-1] = (unsigned char)len;
        return 4;
    }
    end[-10] = op;
    end[-9] = 127;
    for (int i = 0; i < 8; i++) end[-1 - i] = (unsigned char)(len >> (8 * i));
    return 10;
}

/* The outcome of a send ring_queue() made (net/sendring.h calls this for
 * each, in order, once the ring is submitted). */
static void ring_done(void *owner, const unsigned char *buf, size_t len, int res)
{
    sess_t *s = owner;
    uint32_t n = s->ring_n;
    size_t hlen = s->ring_hlen;
    frame_t *held = s->ring_frame;
    int partial = res >= 0 && (size_t)res < len;

    s->ring_n = 0;
    s->ring_hlen = 0;
    s->ring_frame = NULL;
    if (res < 0 && res != -EAGAIN) {
        hlog(LOG_DEBUG, "ws", "client %s: write failed: %s", s->id, strerror(-res));
        kill_socket(s);
    } else if (partial && res > 0 && !s->killed) {
        /* Part of it went. The rest goes to libwebsockets as raw bytes: it
         * sends them before anything else it writes on this connection
         * (its own pongs and close frame included), so the frame arrives
         * whole, and lws_partial_buffered() holds our later writes back
         * until it has. srv.batch has room for a whole send (main.c). */
        unsigned char *p = srv.batch + FRAME_HEADROOM;
        size_t rest = len - (size_t)res;
        memcpy(p, buf + res, rest);
        if (lws_write(s->wsi, p, rest, LWS_WRITE_RAW) < (int)rest) kill_socket(s);
    }
    if (s->killed || s->close_started || s->qlen < n) {
        /* Closed while the send waited in the ring: its queue is gone. */
    } else if (res == -EAGAIN || res == 0) {
        /* The socket was full: nothing went, the frames stay queued, and
         * the writable callback takes over once it drains. */
        request_write(s);
    } else {
        metrics.writes_batched++;
        wrote(s, n, len - hlen);
        if (s->qlen || partial) request_write(s);
    }
    if (held) frame_unref(held);
}

static void ring_submit(void)
{
    if (!sendring_pending()) return;
    metrics.send_batches++;
    sendring_submit(ring_done);
}

/* Queues the write that write_batch() would make for @s on the send ring
 * instead, to go with the rest of this flush pass in one system call.
 * The frames stay queued (and referenced) until ring_done().
 * Return: 1 if queued, 0 if @s must be written the usual way (no ring, an
 * event stream, lws still holds part of an earlier write, or a single
 * message bigger than a batch). */
static int ring_queue(sess_t *s)
{
    size_t len, hlen;
    unsigned char *buf;
    uint32_t n;
    int single, binary = s->enc == PROTO_MSGPACK;

    if (!sendring_ready() || s->stream) return 0;
    /* Make room for one whole batch first: submitting empties the arena,
     * and what its callbacks do (a resync's snapshot queued, a close) may
     * change @s, so @s is looked at only afterwards. */
    if (sendring_full() || sendring_room() < srv.cfg.write_batch_max + 10) ring_submit();
    /* An empty queue may have no ring at all (pop() frees a grown one). A
     * single message bigger than a batch takes the usual way: the arena
     * and srv.batch (for a partial send's rest) hold one batch. */
    if (s->close_code || s->close_started || !s->qlen || lws_partial_buffered(s->wsi) ||
        s->q[s->qhead]->len > srv.cfg.write_batch_max)
        return 0;
    n = batch_span(s, &len, &single);
    if (single) {
        /* Sent from its shared buffer: its header goes in the headroom, the
         * same bytes for every recipient (net/frame.h). */
        frame_t *f = s->q[s->qhead];
        hlen = ws_header(frame_payload(f), len, binary);
        buf = frame_payload(f) - hlen;
        s->ring_frame = frame_ref(f);   /* a close may clear the queue before the send */
    } else {
        hlen = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
        if (!(buf = sendring_stage(hlen + len))) return 0;   /* room was made above */
        batch_copy(s, n, buf + hlen);
        ws_header(buf + hlen, len, binary);
    }
    if (sendring_add(lws_get_socket_fd(s->wsi), buf, hlen + len, s)) {
        /* Not full (checked above): cannot happen. */
        if (s->ring_frame) s->ring_frame = frame_unref(s->ring_frame);
        return 0;
    }
    s->ring_n = n;
    s->ring_hlen = (uint8_t)hlen;
    return 1;
}

void sess_coalesce_adjust(void)
{
    struct timespec ts;
    uint64_t cpu, now = uv_hrtime(), elapsed, busy_pct;
    unsigned ms = srv.coalesce_ms;

    /* Wall time the loop spent working, waits in poll left out: what
     * delays every connection's writes, whether the loop ran on the CPU
     * then or waited for it (the storage thread or another process on
     * the same core: the loop is behind either way, and gathering longer
     * is how it catches up). Its own CPU time where libuv cannot tell the
     * idle time, which would count every wait as work. */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    cpu = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    elapsed = now - srv.tune_at_ns;
    if (srv.tune_at_ns && elapsed) {
        uint64_t busy = metrics.loop_busy_ok ? metrics.loop_busy_ns - srv.tune_busy_ns : cpu - srv.tune_cpu_ns;
        busy_pct = busy >= elapsed ? 100 : busy * 100 / elapsed;
        /* Writes cost a syscall each (and one more for the reader), so when
         * the loop is nearly always busy, gather longer and write less often;
         * when it has time to spare, go back towards writing every turn. */
        if (srv.tune_writes) {
            uint64_t cost = srv.tune_write_ns / srv.tune_writes;
            srv.write_cost_ns = srv.write_cost_ns ? (3 * srv.write_cost_ns + cost) / 4 : cost;
        }
        if (busy_pct >= 80) {
            /* Stepping up, bounded by coalesce_max, is enough when writing
             * is not what fills the loop. When it is (a big fan-out, dear
             * writes to remote or sleeping readers), each step would leave
             * the loop overloaded for another period while queues grow;
             * the gap at which this period's writers fit the write share
             * at their measured cost is known, so go there at once,
             * bounded by the latency goal instead. Coming down while still
             * busy goes by steps: a period with a long gap sees fewer
             * writers than there are. */
            unsigned step = ms >= srv.cfg.coalesce_max_ms ? srv.cfg.coalesce_max_ms : ms ? ms + ms / 2 + 1 : 2;
            unsigned target, need = 0;
            if (step > srv.cfg.coalesce_max_ms) step = srv.cfg.coalesce_max_ms;
            if (srv.cfg.latency_goal_ms > srv.cfg.coalesce_max_ms) {
                need = sess_coalesce_need_ms(srv.tune_writers, srv.write_cost_ns);
                if (need > srv.cfg.latency_goal_ms) need = srv.cfg.latency_goal_ms;
            }
            target = need > step ? need : step;
            ms = target >= ms ? target : (ms * 2 / 3 > target ? ms * 2 / 3 : target);
        } else if (busy_pct < 50) {
            ms = ms * 2 / 3;
        }
        srv.coalesce_ms = ms;
    }
    /* 0 is never a period's mark: a new session (zeroed) counts at once. */
    srv.tune_gen = srv.tune_gen == UINT16_MAX ? 1 : srv.tune_gen + 1;
    srv.tune_writers = 0;
    srv.tune_writes = 0;
    srv.tune_write_ns = 0;
    srv.tune_cpu_ns = cpu;
    srv.tune_busy_ns = metrics.loop_busy_ns;
    srv.tune_at_ns = now;
}

/* Counts a write made by a flush pass for the cost measure above. */
static void count_write(sess_t *s)
{
    srv.tune_writes++;
    if (s->tune_gen != srv.tune_gen) {
        s->tune_gen = srv.tune_gen;
        srv.tune_writers++;
    }
}

void sess_flush_dirty(void)
{
    sess_t *s;
    uint64_t now = uv_now(&srv.loop), first = 0, t0 = uv_hrtime();

    wheel_take(now);
    s = srv.dirty;
    srv.dirty = NULL;
    while (s) {
        sess_t *next = s->dirty_next;
        s->dirty = 0;
        s->dirty_next = NULL;
        if (!s->close_code && !s->close_started && !s->write_pending && should_wait(s, now)) {
            /* Already waiting: what arrived joins the write it waits for. */
            if (!s->waiting) {
                uint64_t due = wheel_add(s, s->last_write_ms + srv.coalesce_ms, now);
                if (!first || due < first) first = due;
            }
            s = next;
            continue;
        }
        wheel_del(s);
        if (s->close_code || s->close_started) {
            /* Closing goes through the writable callback, in order. */
            if (!s->close_started) request_write(s);
        } else if (!s->write_pending && ring_queue(s)) {
            s->last_write_ms = now;    /* written when the ring is submitted, below */
            count_write(s);
        } else if (!s->write_pending) {
            /* Write what the socket takes now. Partial writes are buffered
             * by lws (lws_partial_buffered()), which then arms POLLOUT
             * itself; the writable callback takes over from there, and
             * for connections whose socket is full anyway. */
            for (int i = 0; i < SESS_WRITES_PER_CALLBACK && s->qlen && !lws_partial_buffered(s->wsi); i++) {
                if (write_batch(s)) {
                    /* The socket is gone: let lws close it from its own loop. */
                    kill_socket(s);
                    break;
                }
            }
            s->last_write_ms = now;
            count_write(s);
            if (s->qlen && !s->close_started) request_write(s);
        }
        s = next;
    }
    ring_submit();
    srv.tune_write_ns += uv_hrtime() - t0;
    /* A timer makes sure the loop comes round for those left to gather
     * even if nothing else happens. */
    wheel_arm(now, first);
}

void sess_flush_timer_cb(uv_timer_t *t)
{
    (void)t;
    wheel_armed = 0;
    /* Nothing to do here: the check handle runs after this turn's timers. */
}

int sess_on_writable(sess_t *s)
{
    s->write_pending = 0;
    if (s->close_started) return 0;
    if (s->close_code && (!s->flush_then_close || s->qlen == 0)) return do_close(s);
    /* Keep writing while the kernel takes everything: lws_partial_buffered()
     * says lws had to keep some back, and costs no syscall, unlike
     * lws_send_pipe_choked(). Writing again while lws holds a partial would
     * corrupt its count, so the check comes before every write. The bound
     * keeps one busy connection from starving the others. */
    for (int i = 0; i < SESS_WRITES_PER_CALLBACK && s->qlen && !lws_partial_buffered(s->wsi); i++) {
        if (write_batch(s)) {
            hlog(LOG_DEBUG, "ws", "client %s: write failed", s->id);
            return -1;
        }
    }
    /* Ask again when more is queued, or to send the close frame after the
     * flush: libwebsockets calls back only once its own buffer has drained. */
    if (s->qlen || s->close_code) request_write(s);
    return 0;
}

static int handle(sess_t *s, const unsigned char *buf, size_t len)
{
    srv.stats.messages_in++;
    hooks.on_message(s, buf, len);
    return 0;
}

int sess_on_receive(sess_t *s, const void *in, size_t len)
{
    int first = lws_is_first_fragment(s->wsi), final = lws_is_final_fragment(s->wsi);
    size_t max = srv.cfg.max_message_size;

    if (s->close_code || s->killed) return 0;   /* closing: ignore further input */
    s->last_rx_ms = uv_now(&srv.loop);
    metrics.bytes_in += len;
    if (first && final && s->rxlen == 0) {
        /* The common case: the whole message in one callback, parsed in place. */
        if (len > max) { s->close_code = CLOSE_TOO_BIG; return do_close(s); }
        return handle(s, in, len);
    }
    if (s->rxlen + len > max) {
        s->close_code = CLOSE_TOO_BIG;
        return do_close(s);
    }
    if (s->rxlen + len > s->rxcap) {
        size_t ncap = s->rxcap ? s->rxcap : 1024;
        unsigned char *p;
        while (ncap < s->rxlen + len) ncap *= 2;
        if (ncap > max) ncap = max;
        p = realloc(s->rx, ncap);
        if (!p) { s->close_code = CLOSE_INTERNAL; return do_close(s); }
        s->rx = p;
        s->rxcap = ncap;
    }
    memcpy(s->rx + s->rxlen, in, len);
    s->rxlen += len;
    if (!final) return 0;
    len = s->rxlen;
    s->rxlen = 0;
    handle(s, s->rx, len);
    if (s->rxcap > RX_KEEP) {
        free(s->rx);
        s->rx = NULL;
        s->rxcap = 0;
    }
    return 0;
}

static enum disc_reason disc_reason(const sess_t *s)
{
    if (s->silent) return DISC_PING_TIMEOUT;
    switch (s->close_code) {
    case 0: return DISC_CLIENT;
    case CLOSE_GOING_AWAY: return DISC_SHUTDOWN;
    case CLOSE_SLOW_CONSUMER: return DISC_SLOW_CONSUMER;
    case CLOSE_UNAUTHORIZED: return DISC_UNAUTHORIZED;
    case CLOSE_TOKEN_EXPIRED: return DISC_TOKEN_EXPIRED;
    case CLOSE_CONNECT_TIMEOUT: return DISC_CONNECT_TIMEOUT;
    case CLOSE_TOO_BIG: return DISC_TOO_BIG;
    case CLOSE_TOO_MANY: return DISC_TOO_MANY;
    default: return DISC_INTERNAL;
    }
}

void sess_on_closed(sess_t *s)
{
    if (s->stream) {
        metrics.sse_streams--;
    } else {
        metrics.conn_enc[s->enc]--;
        metrics.disconnects[disc_reason(s)]++;
    }
    unmark_dirty(s);
    conn_unregister(&s->serial);
    if (s->peer_counted) rl_session_close(s->peer);
    /* The application lets go of the session (its subscriptions, seat
     * holds) while the identity is still known: presence keys members by
     * user id. */
    if (hooks.on_closed) hooks.on_closed(s);
    ident_clear(&s->ident);
    free(s->url_token);
    s->url_token = NULL;
    queue_clear(s);
    free(s->q);
    free(s->rx);
    s->q = NULL;
    s->rx = NULL;
    if (s->prev) s->prev->next = s->next;
    else srv.sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    srv.nsessions--;
    s->kind = 0;
}
