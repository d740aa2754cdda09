/* protocol/mpack.c - see mpack.h. */
#include "mpack.h"

#include <math.h>
#include <stdio.h>

struct rd {
    const unsigned char *p, *end;
    char *reason;
};

static int fail(struct rd *r, const char *why)
{
    if (!r->reason[0]) snprintf(r->reason, PROTO_REASON_MAX, "invalid MessagePack: %s", why);
    return -1;
}

static int need(struct rd *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n ? 0 : fail(r, "truncated");
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Reads an n-byte big-endian length after the type byte. */
static int rd_len(struct rd *r, int n, size_t *len)
{
    if (need(r, (size_t)n)) return -1;
    *len = (size_t)be(r->p, n);
    r->p += n;
    return 0;
}

static json_t *rd_value(struct rd *r, int depth);

static json_t *rd_str(struct rd *r, size_t len)
{
    json_t *s;
    if (need(r, len)) return NULL;
    s = json_stringn((const char *)r->p, len);   /* NULL if not UTF-8 */
    if (!s) { fail(r, "string is not valid UTF-8"); return NULL; }
    r->p += len;
    return s;
}

static json_t *rd_array(struct rd *r, size_t n, int depth)
{
    json_t *a;
    if (depth >= PROTO_MAX_DEPTH) { fail(r, "nesting too deep"); return NULL; }
    /* Every element takes at least one byte: a count beyond what remains is a lie. */
    if (n > (size_t)(r->end - r->p)) { fail(r, "array count exceeds the data"); return NULL; }
    a = json_array();
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *e = rd_value(r, depth + 1);
        if (!e || json_array_append_new(a, e)) { json_decref(a); return NULL; }
    }
    return a;
}

static json_t *rd_map(struct rd *r, size_t n, int depth)
{
    json_t *o;
    if (depth >= PROTO_MAX_DEPTH) { fail(r, "nesting too deep"); return NULL; }
    if (n > (size_t)(r->end - r->p) / 2) { fail(r, "map count exceeds the data"); return NULL; }
    o = json_object();
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *k = NULL, *v;
        unsigned char t;
        size_t klen;

        if (need(r, 1)) goto bad;
        t = *r->p++;
        if (t >= 0xa0 && t <= 0xbf) klen = t & 0x1f;
        else if (t == 0xd9) { if (rd_len(r, 1, &klen)) goto bad; }
        else if (t == 0xda) { if (rd_len(r, 2, &klen)) goto bad; }
        else if (t == 0xdb) { if (rd_len(r, 4, &klen)) goto bad; }
        else { fail(r, "map key is not a string"); goto bad; }
        if (!(k = rd_str(r, klen))) goto bad;
        if (memchr(json_string_value(k), 0, json_string_length(k))) {
            fail(r, "map key contains a NUL byte");
            goto bad;
        }
        if (json_object_get(o, json_string_value(k))) { fail(r, "duplicate map key"); goto bad; }
        if (!(v = rd_value(r, depth + 1))) goto bad;
        if (json_object_set_new(o, json_string_value(k), v)) goto bad;
        json_decref(k);
        continue;
bad:
        json_decref(k);
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *rd_real(struct rd *r, double d)
{
    if (!isfinite(d)) { fail(r, "NaN or infinite float"); return NULL; }
    return json_real(d);
}

static json_t *rd_value(struct rd *r, int depth)
{
    unsigned char t;
    size_t len;

    if (need(r, 1)) return NULL;
    t = *r->p++;
    if (t <= 0x7f) return json_integer(t);
    if (t >= 0xe0) return json_integer((int8_t)t);
    if (t >= 0x80 && t <= 0x8f) return rd_map(r, t & 0x0f, depth);
    if (t >= 0x90 && t <= 0x9f) return rd_array(r, t & 0x0f, depth);
    if (t >= 0xa0 && t <= 0xbf) return rd_str(r, t & 0x1f);

    switch (t) {
    case 0xc0: return json_null();
    case 0xc2: return json_false();
    case 0xc3: return json_true();
    case 0xca: {
        union { uint32_t u; float f; } cv;
        if (need(r, 4)) return NULL;
        cv.u = (uint32_t)be(r->p, 4);
        r->p += 4;
        return rd_real(r, cv.f);
    }
    case 0xcb: {
        union { uint64_t u; double d; } cv;
        if (need(r, 8)) return NULL;
        cv.u = be(r->p, 8);
        r->p += 8;
        return rd_real(r, cv.d);
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (t - 0xcc);
        uint64_t u;
        if (need(r, (size_t)n)) return NULL;
        u = be(r->p, n);
        r->p += n;
        if (u > INT64_MAX) { fail(r, "integer above the int64 range"); return NULL; }
        return json_integer((json_int_t)u);
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (t - 0xd0);
        uint64_t u;
        int64_t v;
        if (need(r, (size_t)n)) return NULL;
        u = be(r->p, n);
        r->p += n;
        /* Sign-extend the n-byte two's complement value. */
        if (n < 8 && (u >> (n * 8 - 1)) & 1) u |= ~(uint64_t)0 << (n * 8);
        memcpy(&v, &u, sizeof v);
        return json_integer(v);
    }
    case 0xd9: if (rd_len(r, 1, &len)) return NULL; return rd_str(r, len);
    case 0xda: if (rd_len(r, 2, &len)) return NULL; return rd_str(r, len);
    case 0xdb: if (rd_len(r, 4, &len)) return NULL; return rd_str(r, len);
    case 0xdc: if (rd_len(r, 2, &len)) return NULL; return rd_array(r, len, depth);
    case 0xdd: if (rd_len(r, 4, &len)) return NULL; return rd_array(r, len, depth);
    case 0xde: if (rd_len(r, 2, &len)) return NULL; return rd_map(r, len, depth);
    case 0xdf: if (rd_len(r, 4, &len)) return NULL; return rd_map(r, len, depth);
    case 0xc4: case 0xc5: case 0xc6:
        fail(r, "bin type is not supported (JSON cannot carry it)");
        return NULL;
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        fail(r, "ext type is not supported (JSON cannot carry it)");
        return NULL;
    default:
        fail(r, "reserved type byte 0xc1");
        return NULL;
    }
}

int mpack_decode(const void *buf, size_t len, json_t **out, char *reason)
{
    struct rd r = { buf, (const unsigned char *)buf + len, reason };
    json_t *v;

    reason[0] = '\0';
    v = rd_value(&r, 0);
    if (!v) {
        if (!reason[0]) snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return -1;
    }
    if (r.p != r.end) {
        json_decref(v);
        snprintf(reason, PROTO_REASON_MAX, "invalid MessagePack: %zu trailing bytes after the message",
                 (size_t)(r.end - r.p));
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- encoding ---- */

static void put_be(wbuf_t *b, unsigned char type, uint64_t v, int n)
{
    unsigned char tmp[9];
    tmp[0] = type;
    for (int i = n; i >= 1; i--) { tmp[i] = (unsigned char)v; v >>= 8; }
    wbuf_put(b, tmp, (size_t)n + 1);
}

void mpack_put_map(wbuf_t *b, uint32_t n)
{
    if (n < 16) wbuf_putc(b, (unsigned char)(0x80 | n));
    else if (n <= 0xffff) put_be(b, 0xde, n, 2);
    else put_be(b, 0xdf, n, 4);
}

void mpack_put_array(wbuf_t *b, uint32_t n)
{
    if (n < 16) wbuf_putc(b, (unsigned char)(0x90 | n));
    else if (n <= 0xffff) put_be(b, 0xdc, n, 2);
    else put_be(b, 0xdd, n, 4);
}

void mpack_put_str(wbuf_t *b, const char *s, size_t len)
{
    if (len < 32) wbuf_putc(b, (unsigned char)(0xa0 | len));
    else if (len <= 0xff) put_be(b, 0xd9, len, 1);
    else if (len <= 0xffff) put_be(b, 0xda, len, 2);
    else put_be(b, 0xdb, len, 4);
    wbuf_put(b, s, len);
}

void mpack_put_uint(wbuf_t *b, uint64_t v)
{
    if (v <= 0x7f) wbuf_putc(b, (unsigned char)v);
    else if (v <= 0xff) put_be(b, 0xcc, v, 1);
    else if (v <= 0xffff) put_be(b, 0xcd, v, 2);
    else if (v <= 0xffffffffu) put_be(b, 0xce, v, 4);
    else put_be(b, 0xcf, v, 8);
}

void mpack_put_int(wbuf_t *b, int64_t v)
{
    if (v >= 0) { mpack_put_uint(b, (uint64_t)v); return; }
    if (v >= -32) wbuf_putc(b, (unsigned char)(int8_t)v);
    else if (v >= INT8_MIN) put_be(b, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN) put_be(b, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN) put_be(b, 0xd2, (uint64_t)v, 4);
    else put_be(b, 0xd3, (uint64_t)v, 8);
}

void mpack_put_double(wbuf_t *b, double d)
{
    union { double d; uint64_t u; } cv = { .d = d };
    put_be(b, 0xcb, cv.u, 8);
}

void mpack_put_bool(wbuf_t *b, int v) { wbuf_putc(b, v ? 0xc3 : 0xc2); }
void mpack_put_nil(wbuf_t *b) { wbuf_putc(b, 0xc0); }

void mpack_emit(wbuf_t *b, const json_t *v)
{
    const char *k;
    json_t *e;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        mpack_put_map(b, (uint32_t)json_object_size(v));
        json_object_foreach((json_t *)v, k, e) {
            mpack_put_str(b, k, strlen(k));
            mpack_emit(b, e);
        }
        break;
    case JSON_ARRAY:
        mpack_put_array(b, (uint32_t)json_array_size(v));
        json_array_foreach(v, i, e) mpack_emit(b, e);
        break;
    case JSON_STRING: mpack_put_str(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: mpack_put_int(b, json_integer_value(v)); break;
    case JSON_REAL: mpack_put_double(b, json_real_value(v)); break;
    case JSON_TRUE: mpack_put_bool(b, 1); break;
    case JSON_FALSE: mpack_put_bool(b, 0); break;
    case JSON_NULL: mpack_put_nil(b); break;
    }
}
