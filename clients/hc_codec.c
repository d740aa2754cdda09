/* clients/hc_codec.c - see hc_codec.h.
 *
 * DESIGN: Herald writes `pub` pushes field by field in a fixed order
 * (protocol/msg.c: op, channel, offset, ts, data). The readers try that exact
 * shape first, which costs a few compares per message, and fall back to a
 * general key-by-key scan for anything else (replies built as objects, key
 * order not guaranteed). Both are strict about structure but take values they
 * do not know as opaque, so a newer broker adding fields is still read. */
#include "hc_codec.h"

#include <stddef.h>
#include <string.h>

herald_op_t hc_op_parse(const char *s, size_t len)
{
    static const struct { const char *name; herald_op_t op; } ops[] = {
        { "pub", HERALD_OP_PUB }, { "published", HERALD_OP_PUBLISHED },
        { "subscribed", HERALD_OP_SUBSCRIBED }, { "unsubscribed", HERALD_OP_UNSUBSCRIBED },
        { "connected", HERALD_OP_CONNECTED }, { "pong", HERALD_OP_PONG }, { "error", HERALD_OP_ERROR },
        { "join", HERALD_OP_JOIN }, { "leave", HERALD_OP_LEAVE }, { "presence_batch", HERALD_OP_PRESENCE_BATCH },
        { "presence", HERALD_OP_PRESENCE }, { "presence_stats", HERALD_OP_PRESENCE_STATS },
        { "updated", HERALD_OP_UPDATED }, { "snapshot", HERALD_OP_SNAPSHOT }, { "seats", HERALD_OP_SEATS },
        { "refresh_required", HERALD_OP_REFRESH_REQUIRED }, { "refreshed", HERALD_OP_REFRESHED },
        { "history", HERALD_OP_HISTORY },
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strlen(ops[i].name) == len && !memcmp(ops[i].name, s, len)) return ops[i].op;
    return HERALD_OP_UNKNOWN;
}

/* The integer fields of presence replies and batches. */
static void hc_presence_int(const char *k, size_t kl, int64_t v, herald_msg_t *m)
{
    static const struct { const char *name; size_t off; } f[] = {
        { "members", offsetof(herald_msg_t, members) }, { "connections", offsetof(herald_msg_t, connections) },
        { "count", offsetof(herald_msg_t, count) }, { "joins_total", offsetof(herald_msg_t, joins_total) },
        { "leaves_total", offsetof(herald_msg_t, leaves_total) },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (strlen(f[i].name) == kl && !memcmp(f[i].name, k, kl)) {
            *(int64_t *)((char *)m + f[i].off) = v;
            return;
        }
}

/* ---- JSON ---- */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* Returns the first byte after the string starting at @p (a '"'), or NULL. */
static const char *skip_jstr(const char *p, const char *e)
{
    /* memchr() for the closing quote, a word or a vector at a time: payload
     * strings are most of what a subscriber parses (herald-bench's JSON
     * readers spent 40% of their time here byte by byte). A quote preceded
     * by an odd run of backslashes is escaped; a run never reaches back
     * past @p, which follows the opening quote or an escaped quote. */
    for (p++; p < e;) {
        const char *q = memchr(p, '"', (size_t)(e - p)), *b;
        if (!q) return NULL;
        for (b = q; b > p && b[-1] == '\\'; b--) {}
        if (!((q - b) & 1)) return q + 1;
        p = q + 1;
    }
    return NULL;
}

/* Returns the first byte after the JSON value at @p, or NULL if malformed. */
static const char *skip_jvalue(const char *p, const char *e)
{
    int depth = 0;

    p = skip_ws(p, e);
    if (p >= e) return NULL;
    if (*p != '{' && *p != '[') {
        if (*p == '"') return skip_jstr(p, e);
        while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
        return p;
    }
    for (; p < e; p++) {
        switch (*p) {
        case '"':
            if (!(p = skip_jstr(p, e))) return NULL;
            p--;
            break;
        case '{': case '[': depth++; break;
        case '}': case ']':
            if (--depth == 0) return p + 1;
            break;
        default: break;
        }
    }
    return NULL;
}

static int parse_int(const char *p, const char *e, int64_t *out, const char **end)
{
    int neg = 0;
    uint64_t v = 0;
    const char *s;

    if (p < e && *p == '-') { neg = 1; p++; }
    s = p;
    while (p < e && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == s) return -1;
    if (p < e && (*p == '.' || *p == 'e' || *p == 'E')) return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    *end = p;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Unescapes the JSON string body [@s, @e) into @out (HC_REASON_MAX bytes).
 * \u escapes become UTF-8; surrogate pairs are kept as two 3-byte sequences,
 * which is enough for a human-readable reason. */
static size_t unescape(const char *s, const char *e, char *out)
{
    size_t n = 0;

    while (s < e && n + 4 < HC_REASON_MAX) {
        char c = *s++;
        if (c != '\\' || s >= e) { out[n++] = c; continue; }
        c = *s++;
        switch (c) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4 && s < e; i++) {
                int h = hexval(*s++);
                cp = cp * 16 + (unsigned)(h < 0 ? 0 : h);
            }
            if (cp < 0x80) out[n++] = (char)cp;
            else if (cp < 0x800) {
                out[n++] = (char)(0xc0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            } else {
                out[n++] = (char)(0xe0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: out[n++] = c; break;
        }
    }
    out[n] = '\0';
    return n;
}

#define LIT(s) s, sizeof(s) - 1

static int starts(const char *p, const char *e, const char *lit, size_t n)
{
    return (size_t)(e - p) >= n && !memcmp(p, lit, n);
}

/* The shape protocol/record.c writes for a pub:
 * {"op":"pub","channel":"NAME","offset":N,"ts":N,"data":VALUE[,"from":VALUE]} */
static int json_pub_fast(const char *p, size_t n, herald_msg_t *m)
{
    const char *e = p + n, *q;
    int64_t v;

    if (!starts(p, e, LIT("{\"op\":\"pub\",\"channel\":\""))) return -1;
    p += sizeof("{\"op\":\"pub\",\"channel\":\"") - 1;
    if (!(q = memchr(p, '"', (size_t)(e - p)))) return -1;
    m->channel = p;
    m->channel_len = (size_t)(q - p);
    p = q;
    if (!starts(p, e, LIT("\",\"offset\":")) || parse_int(p + 11, e, &v, &p)) return -1;
    m->offset = (uint64_t)v;
    if (!starts(p, e, LIT(",\"ts\":")) || parse_int(p + 6, e, &m->ts, &p)) return -1;
    if (!starts(p, e, LIT(",\"data\":"))) return -1;
    p += 8;
    /* The value is skipped rather than assumed to run to the closing brace:
     * a broker may add fields after it, and then the general reader takes over. */
    if (!(q = skip_jvalue(p, e))) return -1;
    m->data = p;
    m->data_len = (size_t)(q - p);
    /* A WebSocket publication names its sender after the data. */
    if (starts(q, e, LIT(",\"from\":")) && !(q = skip_jvalue(q + 8, e))) return -1;
    q = skip_ws(q, e);
    if (q >= e || *q != '}' || skip_ws(q + 1, e) != e) return -1;
    m->op = HERALD_OP_PUB;
    return 0;
}

int hc_json_parse(const char *p, size_t n, herald_msg_t *m, char *scratch)
{
    const char *e = p + n;

    if (json_pub_fast(p, n, m) == 0) return 0;
    memset(m, 0, sizeof *m);
    p = skip_ws(p, e);
    if (p >= e || *p++ != '{') return -1;
    for (;;) {
        const char *k, *ke, *v, *ve;
        size_t kl;

        p = skip_ws(p, e);
        if (p < e && *p == '}') break;
        if (p >= e || *p != '"' || !(ke = skip_jstr(p, e))) return -1;
        k = p + 1;
        kl = (size_t)(ke - 1 - k);
        p = skip_ws(ke, e);
        if (p >= e || *p++ != ':') return -1;
        v = skip_ws(p, e);
        if (!(ve = skip_jvalue(v, e))) return -1;
        if (*v == '"') {
            const char *s = v + 1;
            size_t sl = (size_t)(ve - 1 - s);
            if (kl == 2 && !memcmp(k, "op", 2)) m->op = hc_op_parse(s, sl);
            else if (kl == 7 && !memcmp(k, "channel", 7)) { m->channel = s; m->channel_len = sl; }
            else if (kl == 6 && !memcmp(k, "client", 6)) { m->client = s; m->client_len = sl; }
            else if (kl == 4 && !memcmp(k, "user", 4)) { m->user = s; m->user_len = sl; }
            else if (kl == 5 && !memcmp(k, "epoch", 5)) { m->epoch = s; m->epoch_len = sl; }
            else if (kl == 6 && !memcmp(k, "reason", 6) && scratch) {
                m->reason_len = unescape(s, ve - 1, scratch);
                m->reason = scratch;
            }
        } else if (*v == '-' || (*v >= '0' && *v <= '9')) {
            int64_t iv;
            const char *ie;
            if (parse_int(v, ve, &iv, &ie) == 0) {
                if (kl == 2 && !memcmp(k, "id", 2)) { m->has_id = 1; m->id = (uint64_t)iv; }
                else if (kl == 6 && !memcmp(k, "offset", 6)) m->offset = (uint64_t)iv;
                else if (kl == 2 && !memcmp(k, "ts", 2)) m->ts = iv;
                else if (kl == 4 && !memcmp(k, "code", 4)) m->code = (int)iv;
                else if (kl == 13 && !memcmp(k, "ping_interval", 13)) m->ping_interval = iv;
                else hc_presence_int(k, kl, iv, m);
            }
        }
        if (kl == 4 && !memcmp(k, "data", 4)) { m->data = v; m->data_len = (size_t)(ve - v); }
        else if (kl == 5 && !memcmp(k, "state", 5)) { m->state = v; m->state_len = (size_t)(ve - v); }
        else if (kl == 7 && !memcmp(k, "changes", 7)) { m->changes = v; m->changes_len = (size_t)(ve - v); }
        else if (kl == 12 && !memcmp(k, "publications", 12)) {
            m->publications = v;
            m->publications_len = (size_t)(ve - v);
        } else if (kl == 9 && !memcmp(k, "recovered", 9) && (*v == 't' || *v == 'f')) {
            m->has_recovered = 1;
            m->recovered = *v == 't';
        }
        p = skip_ws(ve, e);
        if (p < e && *p == ',') { p++; continue; }
        if (p < e && *p == '}') break;
        return -1;
    }
    return 0;
}

/* ---- MessagePack ---- */

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Reads a str header at *@pp. Return: 0 with the body in @s/@len, or -1. */
static int mp_str(const unsigned char **pp, const unsigned char *e, const char **s, size_t *len)
{
    const unsigned char *p = *pp;
    size_t n;

    if (p >= e) return -1;
    if ((*p & 0xe0) == 0xa0) { n = *p & 0x1f; p += 1; }
    else if (*p == 0xd9 && e - p >= 2) { n = p[1]; p += 2; }
    else if (*p == 0xda && e - p >= 3) { n = (size_t)be(p + 1, 2); p += 3; }
    else if (*p == 0xdb && e - p >= 5) { n = (size_t)be(p + 1, 4); p += 5; }
    else return -1;
    if ((size_t)(e - p) < n) return -1;
    *s = (const char *)p;
    *len = n;
    *pp = p + n;
    return 0;
}

/* Reads an integer at *@pp. Return: 0, 1 if the value is not an integer (not
 * consumed), -1 if truncated. */
static int mp_int(const unsigned char **pp, const unsigned char *e, int64_t *out)
{
    const unsigned char *p = *pp;
    static const int width[] = { 1, 2, 4, 8 };
    unsigned t;

    if (p >= e) return -1;
    t = *p;
    if (t <= 0x7f) { *out = t; *pp = p + 1; return 0; }
    if (t >= 0xe0) { *out = (int8_t)t; *pp = p + 1; return 0; }
    if (t >= 0xcc && t <= 0xcf) {
        int w = width[t - 0xcc];
        if (e - p < 1 + w) return -1;
        *out = (int64_t)be(p + 1, w);
        *pp = p + 1 + w;
        return 0;
    }
    if (t >= 0xd0 && t <= 0xd3) {
        int w = width[t - 0xd0];
        uint64_t v;
        if (e - p < 1 + w) return -1;
        v = be(p + 1, w);
        if (w < 8 && (v >> (w * 8 - 1))) v |= ~0ULL << (w * 8);   /* sign-extend */
        *out = (int64_t)v;
        *pp = p + 1 + w;
        return 0;
    }
    return 1;
}

/* Skips one value; nesting is walked with a counter of items still owed,
 * not recursion. Return: the byte after it, or NULL if truncated/invalid. */
static const unsigned char *mp_skip(const unsigned char *p, const unsigned char *e)
{
    uint64_t owed = 1;

    while (owed) {
        unsigned t;
        uint64_t n = 0, items = 0;

        if (p >= e) return NULL;
        t = *p;
        owed--;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) { p++; continue; }
        if ((t & 0xf0) == 0x80) { items = 2 * (uint64_t)(t & 0x0f); p++; }
        else if ((t & 0xf0) == 0x90) { items = t & 0x0f; p++; }
        else if ((t & 0xe0) == 0xa0) { n = t & 0x1f; p++; }
        else {
            int hl;
            switch (t) {
            case 0xc4: case 0xd9: hl = 1; break;
            case 0xc5: case 0xda: hl = 2; break;
            case 0xc6: case 0xdb: hl = 4; break;
            case 0xc7: hl = 1; break;
            case 0xc8: hl = 2; break;
            case 0xc9: hl = 4; break;
            case 0xca: n = 4; hl = 0; break;
            case 0xcb: n = 8; hl = 0; break;
            case 0xcc: case 0xd0: n = 1; hl = 0; break;
            case 0xcd: case 0xd1: n = 2; hl = 0; break;
            case 0xce: case 0xd2: n = 4; hl = 0; break;
            case 0xcf: case 0xd3: n = 8; hl = 0; break;
            case 0xd4: n = 2; hl = 0; break;
            case 0xd5: n = 3; hl = 0; break;
            case 0xd6: n = 5; hl = 0; break;
            case 0xd7: n = 9; hl = 0; break;
            case 0xd8: n = 17; hl = 0; break;
            case 0xdc: case 0xde: hl = -2; break;
            case 0xdd: case 0xdf: hl = -4; break;
            default: return NULL;
            }
            p++;
            if (hl > 0) {
                if (e - p < hl) return NULL;
                n = be(p, hl);
                p += hl;
                if (t >= 0xc7 && t <= 0xc9) n += 1;       /* ext: the type byte */
            } else if (hl < 0) {
                if (e - p < -hl) return NULL;
                items = be(p, -hl);
                p += -hl;
                if (t == 0xde || t == 0xdf) items *= 2;
            }
        }
        if ((uint64_t)(e - p) < n) return NULL;
        p += n;
        if (items > (uint64_t)(e - p)) return NULL;  /* each item takes at least a byte */
        owed += items;
    }
    return p;
}

static int mp_map(const unsigned char **pp, const unsigned char *e, uint32_t *n)
{
    const unsigned char *p = *pp;

    if (p >= e) return -1;
    if ((*p & 0xf0) == 0x80) { *n = *p & 0x0f; *pp = p + 1; return 0; }
    if (*p == 0xde && e - p >= 3) { *n = (uint32_t)be(p + 1, 2); *pp = p + 3; return 0; }
    if (*p == 0xdf && e - p >= 5) { *n = (uint32_t)be(p + 1, 4); *pp = p + 5; return 0; }
    return -1;
}

static int key_is(const char *k, size_t kl, const char *lit)
{
    return strlen(lit) == kl && !memcmp(k, lit, kl);
}

int hc_mpack_parse(const unsigned char *p, size_t n, herald_msg_t *m, size_t *used)
{
    const unsigned char *start = p, *e = p + n;
    uint32_t count;

    if (mp_map(&p, e, &count)) return -1;
    for (uint32_t i = 0; i < count; i++) {
        const char *k, *s;
        size_t kl, sl;
        const unsigned char *v;
        int64_t iv;
        int r;

        if (mp_str(&p, e, &k, &kl)) return -1;
        v = p;
        if (p < e && ((*p & 0xe0) == 0xa0 || (*p >= 0xd9 && *p <= 0xdb))) {
            if (mp_str(&p, e, &s, &sl)) return -1;
            if (key_is(k, kl, "op")) m->op = hc_op_parse(s, sl);
            else if (key_is(k, kl, "channel")) { m->channel = s; m->channel_len = sl; }
            else if (key_is(k, kl, "reason")) { m->reason = s; m->reason_len = sl; }
            else if (key_is(k, kl, "client")) { m->client = s; m->client_len = sl; }
            else if (key_is(k, kl, "user")) { m->user = s; m->user_len = sl; }
            else if (key_is(k, kl, "epoch")) { m->epoch = s; m->epoch_len = sl; }
        } else if ((r = mp_int(&p, e, &iv)) == 0) {
            if (key_is(k, kl, "id")) { m->has_id = 1; m->id = (uint64_t)iv; }
            else if (key_is(k, kl, "offset")) m->offset = (uint64_t)iv;
            else if (key_is(k, kl, "ts")) m->ts = iv;
            else if (key_is(k, kl, "code")) m->code = (int)iv;
            else if (key_is(k, kl, "ping_interval")) m->ping_interval = iv;
            else hc_presence_int(k, kl, iv, m);
        } else if (r < 0 || !(p = mp_skip(p, e))) {
            return -1;
        }
        if (key_is(k, kl, "data")) { m->data = v; m->data_len = (size_t)(p - v); }
        else if (key_is(k, kl, "state")) { m->state = v; m->state_len = (size_t)(p - v); }
        else if (key_is(k, kl, "changes")) { m->changes = v; m->changes_len = (size_t)(p - v); }
        else if (key_is(k, kl, "publications")) { m->publications = v; m->publications_len = (size_t)(p - v); }
        else if (key_is(k, kl, "recovered") && (*v == 0xc2 || *v == 0xc3)) {
            m->has_recovered = 1;
            m->recovered = *v == 0xc3;
        }
    }
    *used = (size_t)(p - start);
    return 0;
}

/* ---- requests ---- */

static size_t put_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0, i = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) out[i++] = tmp[--n];
    return i;
}

/* Writes @s as a JSON string literal; returns its length (writing only if
 * @out is not NULL). */
static size_t json_str(const char *s, size_t len, unsigned char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

#define PUT(c) do { if (out) out[n] = (unsigned char)(c); n++; } while (0)
    PUT('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { PUT('\\'); PUT(c); }
        else if (c < 0x20) { PUT('\\'); PUT('u'); PUT('0'); PUT('0'); PUT(hex[c >> 4]); PUT(hex[c & 15]); }
        else PUT(c);
    }
    PUT('"');
#undef PUT
    return n;
}

static size_t mp_str_hdr(size_t len, unsigned char *h)
{
    if (len < 32) { h[0] = (unsigned char)(0xa0 | len); return 1; }
    if (len < 256) { h[0] = 0xd9; h[1] = (unsigned char)len; return 2; }
    if (len < 65536) { h[0] = 0xda; h[1] = (unsigned char)(len >> 8); h[2] = (unsigned char)len; return 3; }
    h[0] = 0xdb;
    for (int i = 0; i < 4; i++) h[1 + i] = (unsigned char)(len >> (24 - 8 * i));
    return 5;
}

size_t herald_encode_str(herald_encoding_t enc, const char *s, size_t len, void *out, size_t cap)
{
    unsigned char h[5];
    size_t need;

    if (enc == HERALD_JSON) {
        need = json_str(s, len, NULL);
        if (need <= cap) json_str(s, len, out);
        return need;
    }
    need = mp_str_hdr(len, h);
    if (need + len > cap) return need + len;
    memcpy(out, h, need);
    memcpy((unsigned char *)out + need, s, len);
    return need + len;
}

int herald_decode_str(herald_encoding_t enc, const void *data, size_t len, const char **s, size_t *slen)
{
    const unsigned char *p = data, *e = p + len;

    if (enc == HERALD_JSON) {
        if (len < 2 || p[0] != '"' || p[len - 1] != '"' || memchr(p + 1, '\\', len - 2)) return -1;
        *s = (const char *)p + 1;
        *slen = len - 2;
        return 0;
    }
    return mp_str(&p, e, s, slen);
}

static void mp_uint(uint64_t v, unsigned char *out, size_t *n)
{
    if (v < 128) { out[(*n)++] = (unsigned char)v; return; }
    out[(*n)++] = 0xcf;
    for (int i = 7; i >= 0; i--) out[(*n)++] = (unsigned char)(v >> (8 * i));
}

/* A JSON object's entries: the bytes between its braces, trimmed. */
static int json_inner(const unsigned char *p, size_t n, const unsigned char **in, size_t *inlen)
{
    const unsigned char *e = p + n;

    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
    if (e - p < 2 || *p != '{' || e[-1] != '}') return -1;
    p++;
    e--;
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
    *in = p;
    *inlen = (size_t)(e - p);
    return 0;
}

/* A MessagePack map's entry count and where its entries start. */
static int mp_map_hdr(const unsigned char *p, size_t n, uint32_t *count, size_t *hdr)
{
    if (n >= 1 && (*p & 0xf0) == 0x80) { *count = *p & 0x0f; *hdr = 1; return 0; }
    if (n >= 3 && *p == 0xde) { *count = (uint32_t)be(p + 1, 2); *hdr = 3; return 0; }
    if (n >= 5 && *p == 0xdf) { *count = (uint32_t)be(p + 1, 4); *hdr = 5; return 0; }
    return -1;
}

int hc_fields_ok(herald_encoding_t enc, const void *p, size_t n)
{
    const unsigned char *in;
    size_t len;
    uint32_t count;

    return enc == HERALD_JSON ? json_inner(p, n, &in, &len) == 0 : mp_map_hdr(p, n, &count, &len) == 0;
}

size_t hc_encode_request(herald_encoding_t enc, const char *op, uint64_t id, const char *channel,
                         size_t chlen, const struct hc_extra *x, unsigned char *out, size_t cap)
{
    static const struct hc_extra none;
    const struct hc_since *since;
    const unsigned char *fin = NULL;
    size_t oplen = strlen(op), need, n = 0, finlen = 0, klen;
    uint32_t fcount = 0, count;

    if (!x) x = &none;
    since = x->since;
    klen = x->data ? strlen(x->dkey) : 0;
    if (x->fields) {
        if (enc == HERALD_JSON) json_inner(x->fields, x->flen, &fin, &finlen);
        else if (mp_map_hdr(x->fields, x->flen, &fcount, &finlen) == 0) {
            fin = (const unsigned char *)x->fields + finlen;
            finlen = x->flen - finlen;
        }
    }
    if (enc == HERALD_JSON) {
        need = 7 + oplen + 7 + 20 + (channel ? 11 + json_str(channel, chlen, NULL) : 0) +
               (x->data ? 4 + klen + x->dlen : 0) + (finlen ? 1 + finlen : 0) +
               (since ? 18 + json_str(since->epoch, since->epoch_len, NULL) + 10 + 20 + 1 : 0) + 1;
        if (need > cap) return need;
        memcpy(out, "{\"op\":\"", 7); n = 7;
        memcpy(out + n, op, oplen); n += oplen;
        memcpy(out + n, "\",\"id\":", 7); n += 7;
        n += put_u64((char *)out + n, id);
        if (channel) {
            memcpy(out + n, ",\"channel\":", 11); n += 11;
            n += json_str(channel, chlen, out + n);
        }
        if (x->data) {
            out[n++] = ','; out[n++] = '"';
            memcpy(out + n, x->dkey, klen); n += klen;
            out[n++] = '"'; out[n++] = ':';
            memcpy(out + n, x->data, x->dlen); n += x->dlen;
        }
        if (finlen) {
            out[n++] = ',';
            memcpy(out + n, fin, finlen); n += finlen;
        }
        if (since) {
            memcpy(out + n, ",\"since\":{\"epoch\":", 18); n += 18;
            n += json_str(since->epoch, since->epoch_len, out + n);
            memcpy(out + n, ",\"offset\":", 10); n += 10;
            n += put_u64((char *)out + n, since->offset);
            out[n++] = '}';
        }
        out[n++] = '}';
        return n;
    }
    count = 2 + (channel ? 1 : 0) + (x->data ? 1 : 0) + fcount + (since ? 1 : 0);
    need = 5 + 3 + 5 + oplen + 3 + 9 + (channel ? 8 + 5 + chlen : 0) + (x->data ? 1 + klen + x->dlen : 0) + finlen +
           (since ? 6 + 1 + 6 + 5 + since->epoch_len + 7 + 9 : 0);
    if (need > cap) return need;
    if (count < 16) out[n++] = (unsigned char)(0x80 | count);
    else {
        out[n++] = 0xdf;
        for (int i = 3; i >= 0; i--) out[n++] = (unsigned char)(count >> (8 * i));
    }
    out[n++] = 0xa2; out[n++] = 'o'; out[n++] = 'p';
    n += mp_str_hdr(oplen, out + n);
    memcpy(out + n, op, oplen); n += oplen;
    out[n++] = 0xa2; out[n++] = 'i'; out[n++] = 'd';
    mp_uint(id, out, &n);
    if (channel) {
        out[n++] = 0xa7; memcpy(out + n, "channel", 7); n += 7;
        n += mp_str_hdr(chlen, out + n);
        memcpy(out + n, channel, chlen); n += chlen;
    }
    if (x->data) {
        out[n++] = (unsigned char)(0xa0 | klen); memcpy(out + n, x->dkey, klen); n += klen;
        memcpy(out + n, x->data, x->dlen); n += x->dlen;
    }
    if (finlen) {
        memcpy(out + n, fin, finlen); n += finlen;
    }
    if (since) {
        out[n++] = 0xa5; memcpy(out + n, "since", 5); n += 5;
        out[n++] = 0x82;
        out[n++] = 0xa5; memcpy(out + n, "epoch", 5); n += 5;
        n += mp_str_hdr(since->epoch_len, out + n);
        memcpy(out + n, since->epoch, since->epoch_len); n += since->epoch_len;
        out[n++] = 0xa6; memcpy(out + n, "offset", 6); n += 6;
        mp_uint(since->offset, out, &n);
    }
    return n;
}

/* ---- the publications of a reply ---- */

int hc_pubs_start(herald_encoding_t enc, const unsigned char *p, size_t n, const unsigned char **pp,
                  uint32_t *left)
{
    const unsigned char *e = p + n;

    *left = 0;
    if (enc == HERALD_JSON) {
        p = (const unsigned char *)skip_ws((const char *)p, (const char *)e);
        if (p >= e || *p != '[') return -1;
        *pp = p + 1;
        return 0;
    }
    if (p >= e) return -1;
    if ((*p & 0xf0) == 0x90) { *left = *p & 0x0f; *pp = p + 1; return 0; }
    if (*p == 0xdc && n >= 3) { *left = (uint32_t)be(p + 1, 2); *pp = p + 3; return 0; }
    if (*p == 0xdd && n >= 5) { *left = (uint32_t)be(p + 1, 4); *pp = p + 5; return 0; }
    return -1;
}

int hc_pubs_next(herald_encoding_t enc, const unsigned char **pp, const unsigned char *e, uint32_t *left,
                 herald_msg_t *m)
{
    const char *p = (const char *)*pp, *ve;
    size_t used;

    memset(m, 0, sizeof *m);
    if (enc != HERALD_JSON) {
        if (!*left) return 0;
        if (hc_mpack_parse(*pp, (size_t)(e - *pp), m, &used)) return -1;
        *pp += used;
        (*left)--;
        return 1;
    }
    /* JSON: @left says whether an element was read, so a comma is due. The
     * array's extent came from skip_jvalue(), so its brackets balance and
     * reaching @e means the ']' was read before. */
    p = skip_ws(p, (const char *)e);
    if (p >= (const char *)e) return 0;
    if (*p == ']') {
        *pp = e;
        return 0;
    }
    if (*left) {
        if (p >= (const char *)e || *p != ',') return -1;
        p = skip_ws(p + 1, (const char *)e);
    }
    if (p >= (const char *)e || *p != '{' || !(ve = skip_jvalue(p, (const char *)e))) return -1;
    if (hc_json_parse(p, (size_t)(ve - p), m, NULL)) return -1;
    *pp = (const unsigned char *)ve;
    *left = 1;
    return 1;
}
