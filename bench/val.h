/* bench/val.h - reading values the broker sends, in JSON or MessagePack, as views.
 *
 * Owns: nothing. These functions walk bytes the caller holds (a pub's "data",
 * a REST response body) and never allocate or copy: a val_t names one encoded
 * value, and what is read out of it points into the same bytes, so it is
 * valid as long as they are. The client library hands a pub's "data" over as
 * encoded bytes and leaves reading it to the application; the state-channel
 * scenarios need to look inside ({"changes":[{"key","value","version"}]}) in
 * whichever encoding the viewers speak, and inside the REST answers (JSON).
 *
 * Strings are returned raw: a JSON string with a backslash escape is refused
 * by val_str() rather than unescaped, which is enough for the keys, seat ids
 * and statuses the bench itself chose. */
#ifndef BENCH_VAL_H
#define BENCH_VAL_H

#include <stddef.h>
#include <stdint.h>
#include "herald_client.h"

/* One encoded value: [p, e) holds it and nothing after it. */
typedef struct val {
    const unsigned char *p, *e;
    herald_encoding_t enc;
} val_t;

/* A walk over the elements of an array or the entries of a map. */
typedef struct val_it {
    const unsigned char *p, *e;
    uint32_t left;              /* MessagePack: items still to read */
    int started;                /* JSON: the first item was read */
    herald_encoding_t enc;
} val_it_t;

/* val_init() - @v names the @len bytes at @data, which hold exactly one value
 * in @enc (leading and trailing JSON whitespace allowed). */
void val_init(val_t *v, herald_encoding_t enc, const void *data, size_t len);

/* val_map_get() - the value under @key in the map @m.
 * @out: [out] written only when found.
 * Return: 0 found; 1 not in the map; -1 if @m is not a map or is malformed. */
int val_map_get(const val_t *m, const char *key, val_t *out);

/* val_arr_begin() / val_arr_next() - the elements of the array @a, in order.
 * Return of begin: 0, or -1 if @a is not an array. Return of next: 1 with
 * @out filled, 0 after the last element, -1 if malformed. */
int val_arr_begin(const val_t *a, val_it_t *it);
int val_arr_next(val_it_t *it, val_t *out);

/* val_map_begin() / val_map_next() - the entries of the map @m: @key and
 * @klen name the key's bytes (raw, see above), @out its value.
 * Returns as for arrays. */
int val_map_begin(const val_t *m, val_it_t *it);
int val_map_next(val_it_t *it, const char **key, size_t *klen, val_t *out);

/* val_int() - @v as an integer. Return: 0, or -1 if it is not one. */
int val_int(const val_t *v, int64_t *out);

/* val_str() - @v as a string: its bytes, not NUL-terminated.
 * Return: 0, or -1 if it is not a string (or a JSON string with escapes). */
int val_str(const val_t *v, const char **s, size_t *len);

/* val_str_is() - 1 if @v is the string @lit. */
int val_str_is(const val_t *v, const char *lit);

/* val_is_true() / val_is_null() - 1 if @v is true / null. */
int val_is_true(const val_t *v);
int val_is_null(const val_t *v);

#endif
