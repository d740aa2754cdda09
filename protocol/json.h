/* protocol/json.h - Herald's JSON encoding: parsing (via jansson) and emitting.
 *
 * Owns: JSON text <-> jansson values. Does not own: what the values mean
 * (msg.c). We emit JSON ourselves instead of json_dumps() so that encoding
 * writes into the caller's reusable buffer without a malloc per message, and
 * so that doubles come out in their shortest form that reads back exactly
 * (json_dumps prints 0.1 as 0.10000000000000001). */
#ifndef HERALD_JSON_H
#define HERALD_JSON_H

#include <jansson.h>
#include "wbuf.h"

/* Nesting deeper than this is refused in both encodings, so every value the
 * broker accepts can be relayed in either one and no client can make our
 * recursive walkers use unbounded stack. */
#define PROTO_MAX_DEPTH 64

#define PROTO_REASON_MAX 160

/* json_decode() - parse exactly one JSON value from @len bytes at @buf.
 * @out: [out] a new reference on success.
 * @reason: [out] on failure, why, for the client (PROTO_REASON_MAX bytes).
 * Return: 0, or -1 (malformed text, duplicate key, nesting too deep,
 * integer outside int64). */
int json_decode(const void *buf, size_t len, json_t **out, char *reason);

/* json_emit() - append @v as compact JSON text. */
void json_emit(wbuf_t *b, const json_t *v);

/* json_emit_str() - append @len bytes of UTF-8 at @s as a JSON string literal. */
void json_emit_str(wbuf_t *b, const char *s, size_t len);

/* json_emit_real() - append @d in the shortest form that parses back to @d,
 * always with a '.' or exponent so readers keep it a float. */
void json_emit_real(wbuf_t *b, double d);

/* json_depth_ok() - whether @v nests no deeper than @max levels. */
int json_depth_ok(const json_t *v, int max);

#endif
