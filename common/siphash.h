/* common/siphash.h - SipHash-1-3, a keyed hash for tables whose keys come from
 * clients (channel names): with a random key chosen at start, nobody outside
 * can craft names that all land in one bucket. */
#ifndef HERALD_SIPHASH_H
#define HERALD_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* siphash13() - hash @len bytes of @data with the 16-byte @key. */
uint64_t siphash13(const void *data, size_t len, const uint8_t key[16]);

#endif
