/* protocol/chname.h - channel name rules.
 *
 * A channel name is 1..CHNAME_MAX bytes of ASCII letters, digits and
 * `_ - . : @ , # = / ~`. A name with a ':' is `namespace:rest`: the namespace
 * (before the first ':') is 1..CHNAME_NS_MAX bytes of letters, digits, '_' and
 * '-', and the rest is not empty. A name without ':' lives in the default
 * namespace. Later features give per-namespace options and read user ids
 * from the rest (`dm:alice,bob`), which is why ',', '#' and '@' are allowed. */
#ifndef HERALD_CHNAME_H
#define HERALD_CHNAME_H

#include <stddef.h>

#define CHNAME_MAX 255
#define CHNAME_NS_MAX 64

/* chname_valid() - whether @len bytes at @s form a valid channel name.
 * @why: [out] if invalid and not NULL, a static reason for the client.
 * Return: 1 if valid, 0 if not. */
int chname_valid(const char *s, size_t len, const char **why);

/* chname_namespace() - length of @s's namespace ("" -> 0); @s must be valid. */
size_t chname_namespace(const char *s, size_t len);

#endif
