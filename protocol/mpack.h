/* protocol/mpack.h - Herald's MessagePack encoding: decoding into jansson
 * values and encoding from them.
 *
 * Owns: MessagePack bytes <-> jansson values. Both encodings share one message
 * model, so only what JSON can also carry is accepted: nil, booleans,
 * integers in int64 range, finite floats, UTF-8 strings, arrays, and maps
 * with string keys. bin and ext types are refused, so a value published in
 * one encoding reaches subscribers of the other unchanged. Floats are relayed
 * as float64.
 *
 * The decoder is our own rather than msgpack-c's because msgpack-c sizes its
 * allocation from the element count an untrusted header claims; here every
 * count is checked against the bytes that remain before anything is built. */
#ifndef HERALD_MPACK_H
#define HERALD_MPACK_H

#include <jansson.h>
#include <stdint.h>
#include "wbuf.h"
#include "json.h"

/* mpack_decode() - decode exactly one MessagePack object from @len bytes.
 * @out: [out] a new reference on success.
 * @reason: [out] on failure, why (PROTO_REASON_MAX bytes).
 * Return: 0, or -1 (truncated, trailing bytes, unsupported type, invalid
 * UTF-8, duplicate or non-string key, nesting deeper than PROTO_MAX_DEPTH). */
int mpack_decode(const void *buf, size_t len, json_t **out, char *reason);

/* mpack_emit() - append @v as MessagePack (smallest encoding of each item). */
void mpack_emit(wbuf_t *b, const json_t *v);

/* Primitive writers, for encoders that build a message field by field. */
void mpack_put_map(wbuf_t *b, uint32_t n);
void mpack_put_array(wbuf_t *b, uint32_t n);
void mpack_put_str(wbuf_t *b, const char *s, size_t len);
void mpack_put_int(wbuf_t *b, int64_t v);
void mpack_put_uint(wbuf_t *b, uint64_t v);
void mpack_put_double(wbuf_t *b, double d);
void mpack_put_bool(wbuf_t *b, int v);
void mpack_put_nil(wbuf_t *b);

#endif
