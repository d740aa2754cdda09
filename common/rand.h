/* common/rand.h - random bytes for identifiers (client ids, channel epochs,
 * hash seeds), read from the kernel. Not for keys: nothing here is secret. */
#ifndef HERALD_RAND_H
#define HERALD_RAND_H

#include <stddef.h>

/* rand_bytes() - fill @n bytes at @out. Falls back to a time- and
 * counter-based mix if /dev/urandom cannot be read, so callers never fail.
 * Thread-safe. */
void rand_bytes(void *out, size_t n);

/* rand_hex() - write @n random hex digits and a NUL to @out (n + 1 bytes). */
void rand_hex(char *out, size_t n);

#endif
