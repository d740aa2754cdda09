/* clients/cli/out.h - how herald-cli prints what the broker said.
 *
 * Owns: the two output forms: JSON lines (--json; messages as the broker
 * encoded them, one per line, so they can be piped into jq) and text for a
 * person. Does not own: what to print (the subcommands). Every line is
 * flushed as it is written, so `sub | grep` sees publications at once. */
#ifndef HERALD_CLI_OUT_H
#define HERALD_CLI_OUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "herald_client.h"

/* out_flush() - flush stdout. When it cannot be written any more (a reader
 * like `head` went away, or the disk is full) herald-cli exits at once: 0
 * for a closed pipe (the reader has what it wanted), 3 otherwise, with a
 * message. Every out_* function ends with it. */
void out_flush(void);

/* out_raw() - print @m as the broker sent it (one JSON line). */
void out_raw(const herald_msg_t *m);

/* out_line() - print @n bytes at @p and a newline. */
void out_line(const void *p, size_t n);

/* out_parse() - @m as a jansson tree (the CLI speaks JSON).
 * Return: a new reference the caller decrefs, or NULL if it does not parse. */
json_t *out_parse(const herald_msg_t *m);

/* out_pub() - one publication: with @json, the line
 * {"op":"pub","channel":..,"offset":..,"ts":..,"data":..} (@data is the
 * encoded JSON value, @dlen bytes); otherwise "TIME CHANNEL #OFFSET DATA". */
void out_pub(int json, const char *channel, size_t chlen, uint64_t offset, int64_t ts, const void *data,
             size_t dlen);

/* out_ts() - @ts (ms since the epoch) as local "YYYY-MM-DD HH:MM:SS.mmm" into @buf (32 bytes). */
void out_ts(int64_t ts, char *buf);

/* out_value() - print "PREFIX" then @v as compact JSON, then a newline. */
void out_value(const char *prefix, const json_t *v);

/* out_fields() - text form of a reply object @j: "key: value" per field
 * other than op and id, values as compact JSON. */
void out_fields(const json_t *j);

/* out_reply() - print a reply (@raw, @len bytes of JSON): as is with @json,
 * otherwise with out_fields(). */
void out_reply(int json, const void *raw, size_t len);

#endif
