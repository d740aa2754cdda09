/* protocol/record.c - see record.h. */
#include "record.h"
#include "mpack.h"
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void rec_build(wbuf_t *b, int64_t ts, const json_t *data, const json_t *from, uint64_t reply_to, const char *kind)
{
    mpack_put_map(b, 2 + (from != NULL) + (reply_to != 0) + (kind != NULL));
    mpack_put_str(b, "ts", 2);
    mpack_put_int(b, ts);
    mpack_put_str(b, "data", 4);
    mpack_emit(b, data);
    if (from) {
        mpack_put_str(b, "from", 4);
        mpack_emit(b, from);
    }
    if (reply_to) {
        mpack_put_str(b, "reply_to", 8);
        mpack_put_uint(b, reply_to);
    }
    if (kind) {
        mpack_put_str(b, "kind", 4);
        mpack_put_str(b, kind, strlen(kind));
    }
}

/* A bounds-checked reader over a record. Records are ours, but they come back
 * from disk, so a damaged one must fail cleanly rather than overrun. */
struct rd {
    const unsigned char *p, *end;
};

static int rd_u(struct rd *r, int n, uint64_t *v)
{
    if (r->end - r->p < n) return -1;
    *v = 0;
    for (int i = 0; i < n; i++) *v = *v << 8 | *r->p++;
    return 0;
}

/* Reads a map or array header; *is_map tells which. */
static int rd_container(struct rd *r, uint32_t *n, int *is_map)
{
    unsigned char t;
    uint64_t v;

    if (r->p >= r->end) return -1;
    t = *r->p++;
    if (t >= 0x80 && t <= 0x8f) { *n = t & 15; *is_map = 1; return 0; }
    if (t >= 0x90 && t <= 0x9f) { *n = t & 15; *is_map = 0; return 0; }
    if (t == 0xde || t == 0xdc) { if (rd_u(r, 2, &v)) return -1; *n = (uint32_t)v; *is_map = t == 0xde; return 0; }
    if (t == 0xdf || t == 0xdd) { if (rd_u(r, 4, &v)) return -1; *n = (uint32_t)v; *is_map = t == 0xdf; return 0; }
    return -1;
}

/* Reads a string header; returns its bytes in *s, *len. */
static int rd_str(struct rd *r, const char **s, size_t *len)
{
    unsigned char t;
    uint64_t v;

    if (r->p >= r->end) return -1;
    t = *r->p++;
    if (t >= 0xa0 && t <= 0xbf) v = t & 31;
    else if (t == 0xd9) { if (rd_u(r, 1, &v)) return -1; }
    else if (t == 0xda) { if (rd_u(r, 2, &v)) return -1; }
    else if (t == 0xdb) { if (rd_u(r, 4, &v)) return -1; }
    else return -1;
    if ((uint64_t)(r->end - r->p) < v) return -1;
    *s = (const char *)r->p;
    *len = (size_t)v;
    r->p += v;
    return 0;
}

/* Transcodes one MessagePack value to JSON text. */
static int to_json(struct rd *r, wbuf_t *b, int depth)
{
    unsigned char t;
    uint64_t u;
    char tmp[32];
    const char *s;
    size_t len;
    uint32_t n;
    int is_map;

    if (r->p >= r->end || depth > PROTO_MAX_DEPTH) return -1;
    t = *r->p;
    if ((t >= 0x80 && t <= 0x9f) || t == 0xdc || t == 0xdd || t == 0xde || t == 0xdf) {
        if (rd_container(r, &n, &is_map)) return -1;
        wbuf_putc(b, is_map ? '{' : '[');
        for (uint32_t i = 0; i < n; i++) {
            if (i) wbuf_putc(b, ',');
            if (is_map) {
                if (rd_str(r, &s, &len)) return -1;
                json_emit_str(b, s, len);
                wbuf_putc(b, ':');
            }
            if (to_json(r, b, depth + 1)) return -1;
        }
        wbuf_putc(b, is_map ? '}' : ']');
        return 0;
    }
    if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb)) {
        if (rd_str(r, &s, &len)) return -1;
        json_emit_str(b, s, len);
        return 0;
    }
    r->p++;
    if (t <= 0x7f) { wbuf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%u", t)); return 0; }
    if (t >= 0xe0) { wbuf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%d", (int8_t)t)); return 0; }
    switch (t) {
    case 0xc0: wbuf_put(b, "null", 4); return 0;
    case 0xc2: wbuf_put(b, "false", 5); return 0;
    case 0xc3: wbuf_put(b, "true", 4); return 0;
    case 0xca: {
        union { uint32_t u; float f; } cv;
        if (rd_u(r, 4, &u)) return -1;
        cv.u = (uint32_t)u;
        if (!isfinite(cv.f)) return -1;
        json_emit_real(b, cv.f);
        return 0;
    }
    case 0xcb: {
        union { uint64_t u; double d; } cv;
        if (rd_u(r, 8, &cv.u)) return -1;
        if (!isfinite(cv.d)) return -1;
        json_emit_real(b, cv.d);
        return 0;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        if (rd_u(r, 1 << (t - 0xcc), &u)) return -1;
        wbuf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)u));
        return 0;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int nb = 1 << (t - 0xd0);
        int64_t v;
        if (rd_u(r, nb, &u)) return -1;
        if (nb < 8 && (u >> (nb * 8 - 1)) & 1) u |= ~(uint64_t)0 << (nb * 8);
        memcpy(&v, &u, sizeof v);
        wbuf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v));
        return 0;
    }
    default:
        return -1;
    }
}

/* Skips one MessagePack value without producing anything. */
static int skip(struct rd *r, int depth)
{
    wbuf_t sink;
    int rc;
    /* Records are small; transcoding into a scratch buffer is the simplest
     * correct skip and only runs for fields a caller does not want. */
    (void)depth;
    wbuf_init(&sink);
    rc = to_json(r, &sink, 0);
    wbuf_deinit(&sink);
    return rc;
}

/* Writes the record's entries as `"k":v,...` (JSON) or verbatim (MessagePack),
 * after @nprefix entries already written by the caller. */
static int rec_entries(enum proto_enc enc, const unsigned char *rec, size_t len, uint32_t nprefix, wbuf_t *b)
{
    struct rd r = { rec, rec + len };
    uint32_t n;
    int is_map;

    if (rd_container(&r, &n, &is_map) || !is_map) return -1;
    if (enc == PROTO_MSGPACK) {
        /* The map header was written by the caller with the total count. */
        (void)nprefix;
        wbuf_put(b, r.p, (size_t)(r.end - r.p));
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t slen;
        if (i || nprefix) wbuf_putc(b, ',');
        if (rd_str(&r, &s, &slen)) return -1;
        json_emit_str(b, s, slen);
        wbuf_putc(b, ':');
        if (to_json(&r, b, 1)) return -1;
    }
    return r.p == r.end ? 0 : -1;
}

static int rec_count(const unsigned char *rec, size_t len, uint32_t *n)
{
    struct rd r = { rec, rec + len };
    int is_map;
    return rd_container(&r, n, &is_map) || !is_map ? -1 : 0;
}

int rec_pub(enum proto_enc enc, const char *chan, size_t chlen, uint64_t offset,
            const unsigned char *rec, size_t len, wbuf_t *b)
{
    uint32_t n;

    if (rec_count(rec, len, &n)) return -1;
    if (enc == PROTO_MSGPACK) {
        mpack_put_map(b, n + 3);
        mpack_put_str(b, "op", 2);
        mpack_put_str(b, "pub", 3);
        mpack_put_str(b, "channel", 7);
        mpack_put_str(b, chan, chlen);
        mpack_put_str(b, "offset", 6);
        mpack_put_uint(b, offset);
    } else {
        /* Channel names need no escaping (chname.h). */
        wbuf_put(b, "{\"op\":\"pub\",\"channel\":\"", 23);
        wbuf_put(b, chan, chlen);
        wbuf_printf(b, "\",\"offset\":%llu", (unsigned long long)offset);
    }
    if (rec_entries(enc, rec, len, 3, b)) return -1;
    if (enc == PROTO_JSON) wbuf_putc(b, '}');
    return 0;
}

int rec_value(enum proto_enc enc, const unsigned char *val, size_t len, wbuf_t *b)
{
    struct rd r = { val, val + len };
    if (enc == PROTO_MSGPACK) {
        wbuf_put(b, val, len);
        return 0;
    }
    return to_json(&r, b, 1) || r.p != r.end ? -1 : 0;
}

void rec_encode_pub(enum proto_enc enc, const char *chan, size_t chlen, uint64_t offset, int64_t ts,
                    const json_t *data, wbuf_t *b)
{
    wbuf_t rec;

    wbuf_init(&rec);
    rec_build(&rec, ts, data, NULL, 0, NULL);
    if (rec.oom || rec_pub(enc, chan, chlen, offset, rec.p, rec.len, b)) b->oom = 1;
    wbuf_deinit(&rec);
}

int rec_publication(enum proto_enc enc, uint64_t offset, const unsigned char *rec, size_t len, wbuf_t *b)
{
    uint32_t n;

    if (rec_count(rec, len, &n)) return -1;
    if (enc == PROTO_MSGPACK) {
        mpack_put_map(b, n + 1);
        mpack_put_str(b, "offset", 6);
        mpack_put_uint(b, offset);
    } else {
        wbuf_printf(b, "{\"offset\":%llu", (unsigned long long)offset);
    }
    if (rec_entries(enc, rec, len, 1, b)) return -1;
    if (enc == PROTO_JSON) wbuf_putc(b, '}');
    return 0;
}

/* Reads an integer value (any MessagePack int encoding). */
static int rd_int(struct rd *r, int64_t *v)
{
    unsigned char t;
    uint64_t u;

    if (r->p >= r->end) return -1;
    t = *r->p++;
    if (t <= 0x7f) { *v = t; return 0; }
    if (t >= 0xe0) { *v = (int8_t)t; return 0; }
    if (t >= 0xcc && t <= 0xcf) {
        if (rd_u(r, 1 << (t - 0xcc), &u) || u > INT64_MAX) return -1;
        *v = (int64_t)u;
        return 0;
    }
    if (t >= 0xd0 && t <= 0xd3) {
        int nb = 1 << (t - 0xd0);
        if (rd_u(r, nb, &u)) return -1;
        if (nb < 8 && (u >> (nb * 8 - 1)) & 1) u |= ~(uint64_t)0 << (nb * 8);
        memcpy(v, &u, sizeof *v);
        return 0;
    }
    return -1;
}

/* Reads the integer field @key of a record into *@v. Return: 0, or -1 if
 * the record has no such integer field. */
static int int_field(const unsigned char *rec, size_t len, const char *key, int64_t *v)
{
    struct rd r = { rec, rec + len };
    size_t klen = strlen(key);
    uint32_t n;
    int is_map;

    if (rd_container(&r, &n, &is_map) || !is_map) return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t slen;
        if (rd_str(&r, &s, &slen)) return -1;
        if (slen == klen && !memcmp(s, key, klen)) return rd_int(&r, v);
        if (skip(&r, 1)) return -1;
    }
    return -1;
}

uint64_t rec_reply_to(const unsigned char *rec, size_t len)
{
    int64_t v;
    return int_field(rec, len, "reply_to", &v) || v < 0 ? 0 : (uint64_t)v;
}

/* Reads a record's "from": its "user" (*@anon 0) or, without one, its
 * "client" (*@anon 1). Return: 0, or -1 if it has no from (the server's). */
static int author(const unsigned char *rec, size_t len, const char **who, size_t *wlen, int *anon)
{
    struct rd r = { rec, rec + len };
    const char *client = NULL;
    size_t clen = 0;
    uint32_t n, m;
    int is_map;

    if (rd_container(&r, &n, &is_map) || !is_map) return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t slen;
        if (rd_str(&r, &s, &slen)) return -1;
        if (slen != 4 || memcmp(s, "from", 4)) {
            if (skip(&r, 1)) return -1;
            continue;
        }
        if (rd_container(&r, &m, &is_map) || !is_map) return -1;
        for (uint32_t j = 0; j < m; j++) {
            const char *k, *v;
            size_t klen, vlen;
            if (rd_str(&r, &k, &klen)) return -1;
            if ((klen == 4 && !memcmp(k, "user", 4)) || (klen == 6 && !memcmp(k, "client", 6))) {
                if (rd_str(&r, &v, &vlen)) return -1;
                if (klen == 4) {
                    *who = v;
                    *wlen = vlen;
                    *anon = 0;
                    return 0;
                }
                client = v;
                clen = vlen;
            } else if (skip(&r, 1)) {
                return -1;
            }
        }
        if (!client) return -1;
        *who = client;
        *wlen = clen;
        *anon = 1;
        return 0;
    }
    return -1;
}

int rec_same_author(const unsigned char *rec, size_t len, const unsigned char *orig, size_t olen)
{
    const char *a, *b;
    size_t alen, blen;
    int aanon, banon;

    if (author(rec, len, &a, &alen, &aanon) || author(orig, olen, &b, &blen, &banon)) return 0;
    return aanon == banon && alen == blen && !memcmp(a, b, alen);
}

void rec_encode_open(enum proto_enc enc, const json_t *obj, const char *key, wbuf_t *b)
{
    const char *k;
    json_t *v;
    int first = 1;

    if (enc == PROTO_MSGPACK) {
        mpack_put_map(b, (uint32_t)json_object_size(obj) + 1);
        json_object_foreach((json_t *)obj, k, v) {
            mpack_put_str(b, k, strlen(k));
            mpack_emit(b, v);
        }
        mpack_put_str(b, key, strlen(key));
        return;
    }
    wbuf_putc(b, '{');
    json_object_foreach((json_t *)obj, k, v) {
        if (!first) wbuf_putc(b, ',');
        first = 0;
        json_emit_str(b, k, strlen(k));
        wbuf_putc(b, ':');
        json_emit(b, v);
    }
    if (!first) wbuf_putc(b, ',');
    json_emit_str(b, key, strlen(key));
    wbuf_putc(b, ':');
}

void rec_encode_close(enum proto_enc enc, wbuf_t *b)
{
    if (enc == PROTO_JSON) wbuf_putc(b, '}');
}

void rec_array_open(enum proto_enc enc, uint32_t n, wbuf_t *b)
{
    if (enc == PROTO_MSGPACK) mpack_put_array(b, n);
    else wbuf_putc(b, '[');
}

void rec_array_sep(enum proto_enc enc, uint32_t i, wbuf_t *b)
{
    if (enc == PROTO_JSON && i) wbuf_putc(b, ',');
}

void rec_array_close(enum proto_enc enc, wbuf_t *b)
{
    if (enc == PROTO_JSON) wbuf_putc(b, ']');
}
