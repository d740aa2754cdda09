/* broker/net/sse.c - see sse.h.
 *
 * DESIGN: an event stream is a session like any other to the fan-out: it
 * is subscribed with its JSON encoding and gets a reference to the same
 * JSON frame every JSON WebSocket subscriber gets. Rewriting that frame as
 * SSE text costs a copy of its bytes at write time, which the WebSocket
 * path pays too (it copies queued frames into one batch); a third encoding
 * made per publication would cost an encode for every publication of a
 * channel with one stream among its subscribers, and could not carry the
 * id, which is per stream. The live publication's JSON starts with
 * {"op":"pub","channel":"<name>" (protocol/record.c writes it so, and names
 * need no escaping), so the channel is read off the frame without parsing
 * it; only the rare other messages (the subscribed reply that carries a
 * replay) are parsed. */
#include "net/sse.h"
#include "net/frame.h"
#include "herald.h"
#include "chname.h"
#include "hist.h"
#include "msg.h"
#include "wbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct sse_chan {
    uint64_t offset;              /* last offset delivered */
    char epoch[HIST_EPOCH_LEN + 1];
    uint16_t namelen;
    char name[CHNAME_MAX + 1];
};

struct sse_stream {
    sess_t sess;                  /* the subscriber: first, so a sess_t * is its stream */
    unsigned n;
    struct sse_chan ch[];
};

/* The text of the writes, reused: written whole before the next one is
 * made (libwebsockets copies what the kernel does not take). */
static wbuf_t out;

static uint32_t format_queue(sess_t *s, size_t max, unsigned char **buf, size_t *len);
static int heartbeat_due(const sess_t *s, uint64_t now);
static int write_heartbeat(sess_t *s);
static int peer_gone(const sess_t *s);
static void on_closed(sess_t *s);

/* What the session calls to write this stream (net/session.h). */
static const struct sess_stream_ops sse_ops = {
    .format = format_queue,
    .heartbeat_due = heartbeat_due,
    .heartbeat = write_heartbeat,
    .peer_gone = peer_gone,
    .closed = on_closed,
};

/* The stream a stream session belongs to (its first member). */
static struct sse_stream *stream_of(const sess_t *s)
{
    return (struct sse_stream *)(void *)s;
}

#define PUB_PREFIX "{\"op\":\"pub\",\"channel\":\""

int sse_open(http_req_t *r, unsigned nchan, sess_t **out_sess)
{
    struct sse_stream *st = calloc(1, sizeof *st + nchan * sizeof st->ch[0]);
    unsigned char buf[LWS_PRE + 32];
    int n, rc;

    if (!st) return -ENOMEM;
    st->n = nchan;
    if ((rc = sess_on_stream(&st->sess, r->wsi, &sse_ops))) {
        free(st);
        return rc;
    }
    r->stream = &st->sess;
    if (http_stream_start(r, "text/event-stream")) return -EIO;   /* freed when the connection closes */
    /* The retry: hint first: EventSource waits this long before it
     * reconnects, with Last-Event-ID set to the last id it saw. */
    n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE, "retry: %u\n\n", srv.cfg.sse_retry_ms);
    if (lws_write(r->wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP) < n) return -EIO;
    *out_sess = &st->sess;
    return 0;
}

void sse_set_channel(sess_t *s, unsigned i, const char *name, size_t len, const char *epoch, uint64_t offset)
{
    struct sse_chan *c = &stream_of(s)->ch[i];

    if (len > CHNAME_MAX) len = CHNAME_MAX;
    memcpy(c->name, name, len);
    c->name[len] = '\0';
    c->namelen = (uint16_t)len;
    snprintf(c->epoch, sizeof c->epoch, "%s", epoch);
    c->offset = offset;
}

static struct sse_chan *find(struct sse_stream *st, const char *name, size_t len)
{
    for (unsigned i = 0; i < st->n; i++)
        if (st->ch[i].namelen == len && !memcmp(st->ch[i].name, name, len)) return &st->ch[i];
    return NULL;
}

/* One event: the id (the whole cursor) when @with_id, then its name and its
 * data, one line: the JSON carries no raw line breaks. */
static void put_event(struct sse_stream *st, const char *event, const void *data, size_t len, int with_id)
{
    if (with_id) {
        wbuf_put(&out, "id: ", 4);
        for (unsigned i = 0; i < st->n; i++)
            wbuf_printf(&out, "%s%llu:%s", i ? "," : "", (unsigned long long)st->ch[i].offset, st->ch[i].epoch);
        wbuf_putc(&out, '\n');
    }
    wbuf_printf(&out, "event: %s\ndata: ", event);
    wbuf_put(&out, data, len);
    wbuf_put(&out, "\n\n", 2);
    metrics.sse_events++;
}

static void put_json(struct sse_stream *st, const char *event, json_t *v, int with_id)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;

    if (!s) {
        out.oom = 1;
        return;
    }
    put_event(st, event, s, strlen(s), with_id);
    free(s);
}

/* The reply to a stream's subscription: "subscribed", then "unrecovered"
 * when the position the stream resumed from is gone (another epoch, or
 * trimmed from history), then the publications it carries, each an event
 * with the id that follows it. */
static void subscribed(struct sse_stream *st, json_t *m)
{
    const char *name = json_string_value(json_object_get(m, "channel"));
    const char *epoch = json_string_value(json_object_get(m, "epoch"));
    json_t *pubs = json_incref(json_object_get(m, "publications")), *e;
    struct sse_chan *c = name ? find(st, name, strlen(name)) : NULL;
    uint64_t upto = (uint64_t)json_integer_value(json_object_get(m, "offset"));
    size_t i;

    json_object_del(m, "publications");
    json_object_del(m, "id");
    put_json(st, "subscribed", m, 0);
    if (!c || !epoch) {
        json_decref(pubs);
        return;
    }
    /* A fresh stream starts at the reply's position (with the redis engine
     * the node may not have known it when the stream opened). */
    if (!json_object_get(m, "recovered") && !json_array_size(pubs)) c->offset = upto;
    if (json_is_false(json_object_get(m, "recovered"))) {
        /* The client's position is lost: say so, with where it was and
         * where the channel is, and move the cursor to just before what
         * follows (the publications history still holds), so that a
         * reconnect from this id does not report the same loss again. */
        e = json_array_get(pubs, 0);
        uint64_t first = e ? (uint64_t)json_integer_value(json_object_get(e, "offset")) : upto + 1;
        json_t *d = json_pack("{s:s,s:s,s:I,s:{s:s,s:I}}", "channel", name, "epoch", epoch, "offset",
                              (json_int_t)upto, "last_event", "epoch", c->epoch, "offset", (json_int_t)c->offset);
        snprintf(c->epoch, sizeof c->epoch, "%s", epoch);
        c->offset = first ? first - 1 : 0;
        put_json(st, "unrecovered", d, 1);
        json_decref(d);
    }
    snprintf(c->epoch, sizeof c->epoch, "%s", epoch);
    json_array_foreach(pubs, i, e) {
        json_t *p = json_object();
        json_int_t off = json_integer_value(json_object_get(e, "offset"));
        if (!p || json_object_set_new(p, "op", json_string("pub")) ||
            json_object_set_new(p, "channel", json_string(name)) || json_object_update(p, e)) {
            json_decref(p);
            out.oom = 1;
            break;
        }
        if (off > 0) c->offset = (uint64_t)off;
        put_json(st, "pub", p, 1);
        json_decref(p);
    }
    json_decref(pubs);
}

/* The redis engine's "unrecovered" push (docs/protocol.md): the stream's
 * cursor moves to the position it names, which the publications that
 * follow continue, and the event tells where the stream was. */
static void lost(struct sse_stream *st, json_t *m)
{
    const char *name = json_string_value(json_object_get(m, "channel"));
    const char *epoch = json_string_value(json_object_get(m, "epoch"));
    json_int_t at = json_integer_value(json_object_get(m, "offset"));
    struct sse_chan *c = name ? find(st, name, strlen(name)) : NULL;
    json_t *d;

    if (!c || !epoch) return;
    d = json_pack("{s:s,s:s,s:I,s:{s:s,s:I}}", "channel", name, "epoch", epoch, "offset", at, "last_event", "epoch",
                  c->epoch, "offset", (json_int_t)c->offset);
    snprintf(c->epoch, sizeof c->epoch, "%s", epoch);
    c->offset = at > 0 ? (uint64_t)at : 0;
    put_json(st, "unrecovered", d, 1);
    json_decref(d);
}

static void format_frame(struct sse_stream *st, frame_t *f)
{
    const char *p = (const char *)frame_payload(f), *end;
    size_t len = f->len, pl = sizeof PUB_PREFIX - 1;
    json_t *m;
    const char *op;

    if (f->offset && len > pl && !memcmp(p, PUB_PREFIX, pl) && (end = memchr(p + pl, '"', len - pl))) {
        struct sse_chan *c = find(st, p + pl, (size_t)(end - (p + pl)));
        if (c) c->offset = f->offset;
        put_event(st, "pub", p, len, 1);
        return;
    }
    if (!(m = json_loadb(p, len, 0, NULL))) return;
    op = json_string_value(json_object_get(m, "op"));
    if (op && !strcmp(op, "subscribed")) subscribed(st, m);
    else if (op && !strcmp(op, "unrecovered")) lost(st, m);
    /* "error" is the name EventSource gives its own connection errors. */
    else if (op) put_event(st, !strcmp(op, "error") ? "herald-error" : op, p, len, 0);
    json_decref(m);
}

static uint32_t format_queue(sess_t *s, size_t max, unsigned char **buf, size_t *len)
{
    uint32_t n;

    if (!out.p) wbuf_init(&out);
    wbuf_reset(&out);
    if (wbuf_reserve(&out, FRAME_HEADROOM)) return 0;
    out.len = FRAME_HEADROOM;
    for (n = 0; n < s->qlen && (n == 0 || out.len - FRAME_HEADROOM < max); n++)
        format_frame(stream_of(s), s->q[(s->qhead + n) & (s->qcap - 1)]);
    if (out.oom) return 0;
    *buf = out.p + FRAME_HEADROOM;
    *len = out.len - FRAME_HEADROOM;
    return n;
}

static int heartbeat_due(const sess_t *s, uint64_t now)
{
    return srv.cfg.sse_heartbeat_ms && now - s->last_write_ms >= srv.cfg.sse_heartbeat_ms;
}

static int write_heartbeat(sess_t *s)
{
    static const char hb[] = ": heartbeat\n\n";
    unsigned char buf[LWS_PRE + sizeof hb];

    memcpy(buf + LWS_PRE, hb, sizeof hb - 1);
    s->last_write_ms = uv_now(&srv.loop);
    return lws_write(s->wsi, buf + LWS_PRE, sizeof hb - 1, LWS_WRITE_HTTP) < (int)(sizeof hb - 1) ? -1 : 0;
}

static int peer_gone(const sess_t *s)
{
    int fd = (int)lws_get_socket_fd(s->wsi);
    ssize_t n;
    char c;

    if (fd < 0) return 0;
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void on_closed(sess_t *s)
{
    struct sse_stream *st = stream_of(s);

    sess_on_closed(s);
    free(st);
}
