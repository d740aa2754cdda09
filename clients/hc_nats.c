/* clients/hc_nats.c - see hc_nats.h: NATS core's client protocol, read and written.
 *
 * DESIGN: NATS is a line protocol: an operation name, arguments separated by
 * blanks, CRLF, and for MSG a payload of the announced length followed by
 * CRLF. Over WebSocket a frame need not hold whole operations (nats-server
 * cuts its output where it likes), so the reader works on a byte stream: it
 * says how much one operation takes, or that the bytes end inside it, and
 * the caller keeps the rest for the next frame. hc_ctx_speak_nats() itself
 * is in herald_client.c, next to the context it marks. */
#include "hc_nats.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The longest line before a payload: INFO carries the server's description,
 * a few hundred bytes; anything far longer is not NATS. */
#define LINE_MAX_BYTES (64 * 1024)

static int blank(unsigned char c) { return c == ' ' || c == '\t'; }

/* The next blank-separated token in [*s, e): its start and length; *s moves past it. */
static size_t token(const unsigned char **s, const unsigned char *e, const unsigned char **tok)
{
    const unsigned char *p = *s;
    while (p < e && blank(*p)) p++;
    *tok = p;
    while (p < e && !blank(*p)) p++;
    *s = p;
    return (size_t)(p - *tok);
}

static int word_is(const unsigned char *w, size_t wl, const char *name)
{
    return wl == strlen(name) && !strncasecmp((const char *)w, name, wl);
}

/* MSG <subject> <sid> [reply-to] <#bytes>: the line's arguments in [a, le). */
static long read_msg(const unsigned char *p, size_t n, const unsigned char *a, const unsigned char *le,
                     size_t max, struct hc_nats_msg *m, const char **why)
{
    const unsigned char *t[5];
    size_t tl[5], nt = 0, bytes = 0, head = (size_t)(le - p) + 2;

    while (nt < 5 && (tl[nt] = token(&a, le, &t[nt])) > 0) nt++;
    if (nt < 3 || nt > 4) {
        *why = "MSG without subject, sid and size";
        return -1;
    }
    for (size_t i = 0; i < tl[nt - 1]; i++) {
        unsigned d = (unsigned)t[nt - 1][i] - '0';
        if (d > 9 || bytes > (SIZE_MAX - 9) / 10) {
            *why = "MSG with a bad size";
            return -1;
        }
        bytes = bytes * 10 + d;
    }
    if (bytes > max) return -2;
    if (n < head + bytes + 2) return 0;
    if (p[head + bytes] != '\r' || p[head + bytes + 1] != '\n') {
        *why = "MSG payload not followed by CRLF";
        return -1;
    }
    m->op = HN_MSG;
    m->subject = (const char *)t[0];
    m->subject_len = tl[0];
    m->payload = p + head;
    m->len = bytes;
    return (long)(head + bytes + 2);
}

long hc_nats_next(const unsigned char *p, size_t n, size_t max, struct hc_nats_msg *m, const char **why)
{
    const unsigned char *le = memmem(p, n, "\r\n", 2), *a = p, *w;
    size_t wl;

    memset(m, 0, sizeof *m);
    if (!le) {
        if (n <= LINE_MAX_BYTES) return 0;
        *why = "a line far too long";
        return -1;
    }
    wl = token(&a, le, &w);
    if (word_is(w, wl, "MSG")) return read_msg(p, n, a, le, max, m, why);
    while (a < le && blank(*a)) a++;
    m->payload = a;
    m->len = (size_t)(le - a);
    if (word_is(w, wl, "PING")) m->op = HN_PING;
    else if (word_is(w, wl, "PONG")) m->op = HN_PONG;
    else if (word_is(w, wl, "INFO")) m->op = HN_INFO;
    else if (word_is(w, wl, "+OK")) m->op = HN_OK;
    else if (word_is(w, wl, "-ERR")) m->op = HN_ERR;
    else {
        *why = "an unknown operation";
        return -1;
    }
    return (long)(le + 2 - p);
}

size_t hc_nats_connect(unsigned char *out, size_t cap)
{
    /* verbose off: no +OK per operation; headers off: MSG, never HMSG;
     * no_responders needs headers, so it is off too. */
    static const char s[] = "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,"
                            "\"headers\":false,\"no_responders\":false,\"echo\":true,"
                            "\"lang\":\"c\",\"version\":\"herald-bench\",\"protocol\":1,"
                            "\"name\":\"herald-bench\"}\r\nPING\r\n";
    if (cap >= sizeof s - 1) memcpy(out, s, sizeof s - 1);
    return sizeof s - 1;
}

size_t hc_nats_sub(const char *subject, size_t slen, uint64_t sid, unsigned char *out, size_t cap)
{
    char tail[32];
    int tn = snprintf(tail, sizeof tail, " %llu\r\n", (unsigned long long)sid);
    size_t need = 4 + slen + (size_t)tn;

    if (need > cap) return need;
    memcpy(out, "SUB ", 4);
    memcpy(out + 4, subject, slen);
    memcpy(out + 4 + slen, tail, (size_t)tn);
    return need;
}

size_t hc_nats_pub(const char *subject, size_t slen, const void *data, size_t len, unsigned char *out, size_t cap)
{
    char mid[32];
    int mn = snprintf(mid, sizeof mid, " %zu\r\n", len);
    size_t need = 4 + slen + (size_t)mn + len + 2;

    if (need > cap) return need;
    memcpy(out, "PUB ", 4);
    memcpy(out + 4, subject, slen);
    memcpy(out + 4 + slen, mid, (size_t)mn);
    memcpy(out + 4 + slen + (size_t)mn, data, len);
    memcpy(out + need - 2, "\r\n", 2);
    return need;
}
