/* bench/val.c - see val.h.
 *
 * DESIGN: no tree is built. A JSON value is skipped by scanning for the end
 * of its string, number or literal, or by counting brackets outside strings
 * for an object or array; a MessagePack value by reading its header and
 * counting the items it still owes. A walk over a map or array reads one
 * item at a time in place. The bench reads a few fields of each delta, so a
 * scan that stops early costs less than a full parse. */
#include "val.h"

#include <string.h>

/* ---- JSON ---- */

static const unsigned char *ws(const unsigned char *p, const unsigned char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* The first byte after the string whose opening quote is at @p, or NULL. */
static const unsigned char *jstr_end(const unsigned char *p, const unsigned char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') { p++; continue; }
        if (*p == '"') return p + 1;
    }
    return NULL;
}

/* The first byte after the JSON value at @p (no leading whitespace), or NULL. */
static const unsigned char *jval_end(const unsigned char *p, const unsigned char *e)
{
    unsigned depth = 0;

    if (p >= e) return NULL;
    if (*p == '"') return jstr_end(p, e);
    if (*p != '{' && *p != '[') {
        const unsigned char *s = p;
        while (p < e && (*p == '-' || *p == '+' || *p == '.' || (*p >= '0' && *p <= '9') ||
                         (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            p++;
        return p > s ? p : NULL;
    }
    while (p < e) {
        switch (*p) {
        case '"':
            if (!(p = jstr_end(p, e))) return NULL;
            continue;
        case '{': case '[':
            depth++;
            break;
        case '}': case ']':
            if (--depth == 0) return p + 1;
            break;
        default:
            break;
        }
        p++;
    }
    return NULL;
}

/* Reads the next item of a JSON container walk: a key (maps only) and a value. */
static int jnext(val_it_t *it, int map, const char **key, size_t *klen, val_t *out)
{
    const unsigned char *p = ws(it->p, it->e), *q;

    if (p >= it->e) return -1;
    if (*p == (map ? '}' : ']')) { it->p = p; return 0; }
    if (it->started) {
        if (*p != ',') return -1;
        p = ws(p + 1, it->e);
    }
    if (map) {
        if (p >= it->e || *p != '"' || !(q = jstr_end(p, it->e))) return -1;
        *key = (const char *)p + 1;
        *klen = (size_t)(q - p - 2);
        p = ws(q, it->e);
        if (p >= it->e || *p != ':') return -1;
        p = ws(p + 1, it->e);
    }
    if (!(q = jval_end(p, it->e))) return -1;
    out->p = p;
    out->e = q;
    out->enc = HERALD_JSON;
    it->p = q;
    it->started = 1;
    return 1;
}

/* ---- MessagePack ---- */

enum { MP_OTHER = 0, MP_INT, MP_STR, MP_ARR, MP_MAP };

static uint64_t be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    while (n--) v = v << 8 | *p++;
    return v;
}

/* Reads the header of the value at @p. @kind: MP_*. @len: a str's bytes, an
 * array's elements, a map's entries, or the payload bytes of anything else.
 * @hl: the header's own size. Return: 0, or -1 if truncated or unknown. */
static int mp_head(const unsigned char *p, const unsigned char *e, int *kind, uint64_t *len, unsigned *hl)
{
    unsigned t, w = 0;

    if (p >= e) return -1;
    t = *p;
    *hl = 1;
    *len = 0;
    *kind = MP_OTHER;
    if (t <= 0x7f || t >= 0xe0) { *kind = MP_INT; return 0; }
    if ((t & 0xf0) == 0x80) { *kind = MP_MAP; *len = t & 0x0f; return 0; }
    if ((t & 0xf0) == 0x90) { *kind = MP_ARR; *len = t & 0x0f; return 0; }
    if ((t & 0xe0) == 0xa0) { *kind = MP_STR; *len = t & 0x1f; return 0; }
    switch (t) {
    case 0xc0: case 0xc2: case 0xc3: return 0;                      /* nil, false, true */
    case 0xc4: case 0xc5: case 0xc6: w = 1u << (t - 0xc4); break;   /* bin 8/16/32 */
    case 0xc7: case 0xc8: case 0xc9: w = 1u << (t - 0xc7); break;   /* ext 8/16/32 */
    case 0xca: *len = 4; return 0;
    case 0xcb: *len = 8; return 0;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        *kind = MP_INT; *len = 1u << (t - 0xcc); return 0;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        *kind = MP_INT; *len = 1u << (t - 0xd0); return 0;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:          /* fixext: type byte + 1..16 */
        *len = 1 + (1u << (t - 0xd4)); return 0;
    case 0xd9: case 0xda: case 0xdb: *kind = MP_STR; w = 1u << (t - 0xd9); break;
    case 0xdc: case 0xdd: *kind = MP_ARR; w = 2u << (t - 0xdc); break;
    case 0xde: case 0xdf: *kind = MP_MAP; w = 2u << (t - 0xde); break;
    default: return -1;                                             /* 0xc1 is never used */
    }
    if ((size_t)(e - p) < 1 + w) return -1;
    *len = be(p + 1, w);
    *hl = 1 + w;
    if (t >= 0xc7 && t <= 0xc9) (*len)++;                           /* ext: its type byte */
    return 0;
}

/* The first byte after the MessagePack value at @p, or NULL. Nested values
 * are counted, not recursed into. */
static const unsigned char *mval_end(const unsigned char *p, const unsigned char *e)
{
    uint64_t owed = 1, len;
    unsigned hl;
    int kind;

    while (owed--) {
        if (mp_head(p, e, &kind, &len, &hl)) return NULL;
        p += hl;
        if (kind == MP_ARR || kind == MP_MAP) {
            uint64_t items = kind == MP_MAP ? 2 * len : len;
            if (items > (uint64_t)(e - p)) return NULL;             /* each item takes a byte at least */
            owed += items;
        } else {
            if (len > (uint64_t)(e - p)) return NULL;
            p += len;
        }
    }
    return p;
}

/* ---- the API ---- */

void val_init(val_t *v, herald_encoding_t enc, const void *data, size_t len)
{
    const unsigned char *p = data, *e = p + len;

    v->enc = enc;
    if (enc == HERALD_JSON) {
        p = ws(p, e);
        while (e > p && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t')) e--;
    }
    v->p = p;
    v->e = e;
}

static int begin(const val_t *v, val_it_t *it, int map)
{
    memset(it, 0, sizeof *it);
    it->enc = v->enc;
    it->e = v->e;
    if (v->enc == HERALD_JSON) {
        if (v->p >= v->e || *v->p != (map ? '{' : '[')) return -1;
        it->p = v->p + 1;
        return 0;
    }
    {
        uint64_t len;
        unsigned hl;
        int kind;
        if (mp_head(v->p, v->e, &kind, &len, &hl) || kind != (map ? MP_MAP : MP_ARR) || len > UINT32_MAX)
            return -1;
        it->p = v->p + hl;
        it->left = (uint32_t)len;
    }
    return 0;
}

int val_arr_begin(const val_t *a, val_it_t *it) { return begin(a, it, 0); }
int val_map_begin(const val_t *m, val_it_t *it) { return begin(m, it, 1); }

/* Takes the next MessagePack value of @it into @out. Return: 0, or -1 (malformed). */
static int mnext(val_it_t *it, val_t *out)
{
    const unsigned char *q;

    if (!(q = mval_end(it->p, it->e))) return -1;
    *out = (val_t){ it->p, q, HERALD_MSGPACK };
    it->p = q;
    return 0;
}

int val_arr_next(val_it_t *it, val_t *out)
{
    if (it->enc == HERALD_JSON) return jnext(it, 0, NULL, NULL, out);
    if (!it->left) return 0;
    if (mnext(it, out)) return -1;
    it->left--;
    return 1;
}

int val_map_next(val_it_t *it, const char **key, size_t *klen, val_t *out)
{
    val_t k;

    if (it->enc == HERALD_JSON) return jnext(it, 1, key, klen, out);
    if (!it->left) return 0;
    /* Herald's map keys are strings. */
    if (mnext(it, &k) || val_str(&k, key, klen) || mnext(it, out)) return -1;
    it->left--;
    return 1;
}

int val_map_get(const val_t *m, const char *key, val_t *out)
{
    size_t kl = strlen(key), l;
    const char *k;
    val_it_t it;
    val_t v;
    int r;

    if (val_map_begin(m, &it)) return -1;
    while ((r = val_map_next(&it, &k, &l, &v)) == 1)
        if (l == kl && !memcmp(k, key, kl)) {
            *out = v;
            return 0;
        }
    return r < 0 ? -1 : 1;
}

int val_int(const val_t *v, int64_t *out)
{
    const unsigned char *p = v->p;

    if (v->enc == HERALD_JSON) {
        uint64_t n = 0;
        int neg = 0;
        if (p < v->e && *p == '-') { neg = 1; p++; }
        if (p >= v->e) return -1;
        for (; p < v->e; p++) {
            if (*p < '0' || *p > '9' || n > (UINT64_MAX - 9) / 10) return -1;
            n = n * 10 + (uint64_t)(*p - '0');
        }
        if (n > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;
        *out = neg ? (int64_t)(0 - n) : (int64_t)n;
        return 0;
    }
    {
        uint64_t len;
        unsigned hl;
        int kind;
        if (mp_head(p, v->e, &kind, &len, &hl) || kind != MP_INT || (size_t)(v->e - p) < hl + len) return -1;
        if (*p <= 0x7f) *out = *p;
        else if (*p >= 0xe0) *out = (int8_t)*p;
        else if (*p <= 0xcf) {
            uint64_t u = be(p + 1, (unsigned)len);
            if (u > INT64_MAX) return -1;
            *out = (int64_t)u;
        } else {
            uint64_t u = be(p + 1, (unsigned)len);
            unsigned bits = 8 * (unsigned)len;
            if (bits < 64 && (u >> (bits - 1))) u |= ~0ULL << bits;   /* sign-extend */
            *out = (int64_t)u;
        }
    }
    return 0;
}

int val_str(const val_t *v, const char **s, size_t *len)
{
    if (v->enc == HERALD_JSON) {
        if (v->e - v->p < 2 || *v->p != '"' || v->e[-1] != '"' || memchr(v->p, '\\', (size_t)(v->e - v->p)))
            return -1;
        *s = (const char *)v->p + 1;
        *len = (size_t)(v->e - v->p) - 2;
        return 0;
    }
    {
        uint64_t n;
        unsigned hl;
        int kind;
        if (mp_head(v->p, v->e, &kind, &n, &hl) || kind != MP_STR || (uint64_t)(v->e - v->p) < hl + n) return -1;
        *s = (const char *)v->p + hl;
        *len = (size_t)n;
    }
    return 0;
}

int val_str_is(const val_t *v, const char *lit)
{
    const char *s;
    size_t n;
    return !val_str(v, &s, &n) && n == strlen(lit) && !memcmp(s, lit, n);
}

int val_is_true(const val_t *v)
{
    if (v->enc == HERALD_JSON) return v->e - v->p == 4 && !memcmp(v->p, "true", 4);
    return v->e - v->p == 1 && *v->p == 0xc3;
}

int val_is_null(const val_t *v)
{
    if (v->enc == HERALD_JSON) return v->e - v->p == 4 && !memcmp(v->p, "null", 4);
    return v->e - v->p == 1 && *v->p == 0xc0;
}
