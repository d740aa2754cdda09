/* broker/app/fields.h - the checks the adapters (commerce, carts, seat maps,
 * tickets) make on a request's fields before anything reaches the store,
 * and the way they word a refusal.
 *
 * Owns: what an adapter id is (1..max letters, digits, '_', '-', '.': safe
 * inside a channel name and a state key), and filling @reason for the two
 * refusals every adapter makes (a bad field, no memory).
 * Does not own: each adapter's own fields (app/commerce.c, ...).
 * Any thread; no state. */
#ifndef HERALD_APP_FIELDS_H
#define HERALD_APP_FIELDS_H

#include <stddef.h>

/* field_id_ok() - whether @s (@len bytes; NULL is not) is an adapter id of
 * at most @max bytes. */
int field_id_ok(const char *s, size_t len, size_t max);

/* field_bad() - @what into @reason (PROTO_REASON_MAX bytes).
 * Return: PROTO_E_BAD_FIELD, for `return field_bad(reason, "...")`. */
int field_bad(char *reason, const char *what);

/* field_oom() - "out of memory" into @reason. Return: PROTO_E_INTERNAL. */
int field_oom(char *reason);

#endif
