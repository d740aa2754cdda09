/* protocol/json.c - see json.h. */
#include "json.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int json_depth_ok(const json_t *v, int max)
{
    const char *k;
    json_t *e;
    size_t i;

    if (json_is_object(v) || json_is_array(v)) {
        if (max <= 0) return 0;
        if (json_is_object(v)) {
            json_object_foreach((json_t *)v, k, e)
                if (!json_depth_ok(e, max - 1)) return 0;
        } else {
            json_array_foreach(v, i, e)
                if (!json_depth_ok(e, max - 1)) return 0;
        }
    }
    return 1;
}

int json_decode(const void *buf, size_t len, json_t **out, char *reason)
{
    json_error_t err;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

    if (!v) {
        snprintf(reason, PROTO_REASON_MAX, "invalid JSON at byte %d: %.100s", err.position, err.text);
        return -1;
    }
    /* Nesting needs at least one byte per level, so short texts cannot be too
     * deep and skip the walk. */
    if (len > PROTO_MAX_DEPTH && !json_depth_ok(v, PROTO_MAX_DEPTH)) {
        json_decref(v);
        snprintf(reason, PROTO_REASON_MAX, "nesting deeper than %d levels", PROTO_MAX_DEPTH);
        return -1;
    }
    *out = v;
    return 0;
}

static const char hexdig[] = "0123456789abcdef";

void json_emit_str(wbuf_t *b, const char *s, size_t len)
{
    size_t run = 0;

    /* Worst case every byte becomes \u00XX: reserve once, then write freely. */
    if (wbuf_reserve(b, len * 6 + 2)) return;
    b->p[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') { run++; continue; }
        memcpy(b->p + b->len, s + i - run, run);
        b->len += run;
        run = 0;
        b->p[b->len++] = '\\';
        switch (c) {
        case '"': b->p[b->len++] = '"'; break;
        case '\\': b->p[b->len++] = '\\'; break;
        case '\n': b->p[b->len++] = 'n'; break;
        case '\r': b->p[b->len++] = 'r'; break;
        case '\t': b->p[b->len++] = 't'; break;
        case '\b': b->p[b->len++] = 'b'; break;
        case '\f': b->p[b->len++] = 'f'; break;
        default:
            b->p[b->len++] = 'u'; b->p[b->len++] = '0'; b->p[b->len++] = '0';
            b->p[b->len++] = (unsigned char)hexdig[c >> 4];
            b->p[b->len++] = (unsigned char)hexdig[c & 15];
        }
    }
    memcpy(b->p + b->len, s + len - run, run);
    b->len += run;
    b->p[b->len++] = '"';
}

void json_emit_real(wbuf_t *b, double d)
{
    char tmp[40];
    int n = 0;

    /* Any decimal of 15 significant digits or fewer maps to exactly one
     * normal double, so for normal values the first precision that reads
     * back is 15 (or 16, 17) and %g trims it to the shortest form. Subnormals
     * carry fewer digits: search those from 1. */
    for (int prec = fabs(d) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) break;
    }
    wbuf_put(b, tmp, (size_t)n);
    if (!strpbrk(tmp, ".eEn")) wbuf_put(b, ".0", 2);
}

static void emit(wbuf_t *b, const json_t *v)
{
    char tmp[24];
    const char *k;
    json_t *e;
    size_t i;
    int first = 1;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        wbuf_putc(b, '{');
        json_object_foreach((json_t *)v, k, e) {
            if (!first) wbuf_putc(b, ',');
            first = 0;
            json_emit_str(b, k, strlen(k));
            wbuf_putc(b, ':');
            emit(b, e);
        }
        wbuf_putc(b, '}');
        break;
    case JSON_ARRAY:
        wbuf_putc(b, '[');
        json_array_foreach(v, i, e) {
            if (i) wbuf_putc(b, ',');
            emit(b, e);
        }
        wbuf_putc(b, ']');
        break;
    case JSON_STRING:
        json_emit_str(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        wbuf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v)));
        break;
    case JSON_REAL:
        json_emit_real(b, json_real_value(v));
        break;
    case JSON_TRUE: wbuf_put(b, "true", 4); break;
    case JSON_FALSE: wbuf_put(b, "false", 5); break;
    case JSON_NULL: wbuf_put(b, "null", 4); break;
    }
}

void json_emit(wbuf_t *b, const json_t *v) { emit(b, v); }
