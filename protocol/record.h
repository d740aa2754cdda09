/* protocol/record.h - a publication's record, and the frames built from it.
 *
 * Owns: the record format and its transcoding into pushes and replies. A
 * record is a MessagePack map of a publication's fields other than its
 * channel and offset: {"ts":<ms>,"data":<value>} now, and later "from",
 * "reply_to", "kind". The same bytes are stored in the history log and used
 * to build live pushes, so a replayed publication is byte-for-byte the push a
 * live subscriber got. For MessagePack subscribers the record's entries are
 * copied verbatim after the "op"/"channel"/"offset" entries; for JSON ones
 * they are transcoded without building a tree. */
#ifndef HERALD_RECORD_H
#define HERALD_RECORD_H

#include <jansson.h>
#include <stdint.h>
#include "msg.h"
#include "wbuf.h"

/* rec_build() - append the record {"ts":@ts,"data":@data} to @b, with
 * "from":@from when @from is not NULL, "reply_to":@reply_to when not 0, and
 * "kind":@kind when not NULL. */
void rec_build(wbuf_t *b, int64_t ts, const json_t *data, const json_t *from, uint64_t reply_to, const char *kind);

/* rec_reply_to() - a record's "reply_to", or 0. */
uint64_t rec_reply_to(const unsigned char *rec, size_t len);

/* rec_same_author() - whether the records @rec and @orig have the same
 * author: their "from" names the same user, or, both being anonymous
 * (without "user"), the same client id. A record without "from" (the
 * server's) has no author: 0. Any thread. */
int rec_same_author(const unsigned char *rec, size_t len, const unsigned char *orig, size_t olen);

/* rec_pub() - append the push {"op":"pub","channel","offset",<record>} in @enc.
 * Return: 0, or -1 if @rec is not a well-formed record (nothing useful written). */
int rec_pub(enum proto_enc enc, const char *chan, size_t chlen, uint64_t offset,
            const unsigned char *rec, size_t len, wbuf_t *b);

/* rec_encode_pub() - append the push {"op":"pub","channel","offset","ts","data"}
 * of a publication without extra fields: rec_build() then rec_pub(), the
 * path every publication takes, for callers that start from the data. */
void rec_encode_pub(enum proto_enc enc, const char *chan, size_t chlen, uint64_t offset, int64_t ts,
                    const json_t *data, wbuf_t *b);

/* rec_publication() - append {"offset":@offset,<record>} in @enc, the shape of
 * one element of a reply's "publications" list. Return: 0, or -1 as above. */
int rec_publication(enum proto_enc enc, uint64_t offset, const unsigned char *rec, size_t len, wbuf_t *b);

/* rec_value() - append one MessagePack value @val in @enc (copied, or
 * transcoded to JSON). Return: 0, or -1 if @val is not well-formed. */
int rec_value(enum proto_enc enc, const unsigned char *val, size_t len, wbuf_t *b);


/* rec_encode_open() - append @obj in @enc with one more entry still to come:
 * the caller appends that entry's key and value, then calls
 * rec_encode_close(). Lets a reply carry a list built from records without
 * decoding them. */
void rec_encode_open(enum proto_enc enc, const json_t *obj, const char *key, wbuf_t *b);
void rec_encode_close(enum proto_enc enc, wbuf_t *b);

/* Array framing for such a list. */
void rec_array_open(enum proto_enc enc, uint32_t n, wbuf_t *b);
void rec_array_sep(enum proto_enc enc, uint32_t i, wbuf_t *b);   /* before element i */
void rec_array_close(enum proto_enc enc, wbuf_t *b);

#endif
