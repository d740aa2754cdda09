/* common/hmap.h - an open-addressing hash map from byte strings to pointers.
 *
 * Owns: its slot array. Does not own: keys or values. A key is borrowed: it
 * must stay valid and unchanged while its entry is in the map, which is why
 * callers store the key inside the value (chan->name). Linear probing with
 * backward-shift deletion keeps lookups O(1) on average without tombstones;
 * the table doubles at 3/4 load and never shrinks below its first size.
 * Not thread-safe. */
#ifndef HERALD_HMAP_H
#define HERALD_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap_slot {
    uint64_t hash;      /* 0 marks an empty slot; real hashes are forced non-zero */
    const void *key;
    size_t keylen;
    void *value;
};

typedef struct hmap {
    struct hmap_slot *slots;
    size_t cap;         /* power of two */
    size_t count;
    uint8_t seed[16];
} hmap_t;

/* hmap_init() - an empty map in caller storage with room for about @hint
 * entries before it grows; the hash seed is random per map.
 * Return: 0, or -ENOMEM. */
int hmap_init(hmap_t *m, size_t hint);

/* hmap_deinit() - frees the slots; keys and values are the caller's. */
void hmap_deinit(hmap_t *m);

/* hmap_get() - the value stored under @key, or NULL. */
void *hmap_get(const hmap_t *m, const void *key, size_t keylen);

/* hmap_put() - store @value under @key, which must not be present yet.
 * Return: 0, or -ENOMEM (the map is unchanged). */
int hmap_put(hmap_t *m, const void *key, size_t keylen, void *value);

/* hmap_del() - remove @key. Return: its value, or NULL if absent. */
void *hmap_del(hmap_t *m, const void *key, size_t keylen);

/* hmap_next() - iterate: start with *@pos = 0; each call returns the next
 * value and advances *@pos, or NULL at the end. The map must not change
 * during an iteration. */
void *hmap_next(const hmap_t *m, size_t *pos);

#endif
