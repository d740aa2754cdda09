/* clients/hc_codec.h - Herald messages <-> bytes for the client library (internal).
 *
 * Owns: reading server messages into herald_msg_t views and writing client
 * requests, in JSON and MessagePack. Does not own: WebSocket framing or
 * connections (herald_client.c). The readers never allocate: they scan the
 * bytes once, remember where the fields are, and skip whatever they do not
 * need (nested "data" values are skipped, not decoded). */
#ifndef HERALD_HC_CODEC_H
#define HERALD_HC_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include "herald_client.h"

/* Room for an unescaped JSON error reason; longer reasons are cut. */
#define HC_REASON_MAX 512

/* hc_json_parse() - read the one JSON object in @n bytes at @p.
 * @m: [out] views into @p, and into @scratch (HC_REASON_MAX bytes) for an
 * unescaped reason; with @scratch NULL a reason is not read.
 * Return: 0, or -1 if it is not a Herald message. */
int hc_json_parse(const char *p, size_t n, herald_msg_t *m, char *scratch);

/* hc_mpack_parse() - read the first MessagePack map in @n bytes at @p.
 * @used: [out] its length, so the caller can read the next one.
 * Return: 0, or -1 if it is truncated or not a Herald message. */
int hc_mpack_parse(const unsigned char *p, size_t n, herald_msg_t *m, size_t *used);

/* hc_op_parse() - the op named by @len bytes at @s. */
herald_op_t hc_op_parse(const char *s, size_t len);

/* A subscribe's "since": the epoch and last offset a client saw. */
struct hc_since {
    const char *epoch;
    size_t epoch_len;
    uint64_t offset;
};

/* What a request carries besides op, id and channel; any part may be NULL. */
struct hc_extra {
    const char *dkey;             /* the name of @data's field: "data" (publish), "ops" (state) */
    const void *data;             /* one encoded value */
    size_t dlen;
    const void *fields;           /* one encoded map (checked with hc_fields_ok()): its entries */
    size_t flen;
    const struct hc_since *since;
};

/* hc_fields_ok() - whether @n bytes at @p are one JSON object (@enc JSON, by
 * its first and last non-blank bytes) or begin with a MessagePack map header. */
int hc_fields_ok(herald_encoding_t enc, const void *p, size_t n);

/* hc_encode_request() - write {"op":@op,"id":@id[,"channel":..][,dkey:data]
 * [,fields...][,"since":{"epoch":..,"offset":..}]} in @enc to @out (@cap
 * bytes). @channel and @x may be NULL. Return: bytes written, or the size
 * needed if over @cap. */
size_t hc_encode_request(herald_encoding_t enc, const char *op, uint64_t id, const char *channel,
                         size_t chlen, const struct hc_extra *x, unsigned char *out, size_t cap);

/* hc_pubs_start() - check that @n bytes at @p begin a "publications" array.
 * @left: [out] MessagePack: the elements in it; JSON: 0 (no element read yet).
 * @pp: [out] where the first element starts. Return: 0, or -1. */
int hc_pubs_start(herald_encoding_t enc, const unsigned char *p, size_t n, const unsigned char **pp,
                  uint32_t *left);

/* hc_pubs_next() - read the element at *@pp (the array ends at @e) into @m
 * (offset, ts, data as views) and move *@pp past it.
 * Return: 1 with @m filled; 0 at the end of the array; -1 if malformed. */
int hc_pubs_next(herald_encoding_t enc, const unsigned char **pp, const unsigned char *e, uint32_t *left,
                 herald_msg_t *m);

#endif
