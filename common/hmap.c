/* common/hmap.c - see hmap.h. */
#include "hmap.h"
#include "siphash.h"
#include "rand.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t hash_of(const hmap_t *m, const void *key, size_t len)
{
    uint64_t h = siphash13(key, len, m->seed);
    return h ? h : 1;
}

int hmap_init(hmap_t *m, size_t hint)
{
    size_t cap = 16;
    while (cap * 3 / 4 < hint) cap <<= 1;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) return -ENOMEM;
    m->cap = cap;
    m->count = 0;
    rand_bytes(m->seed, sizeof m->seed);
    return 0;
}

void hmap_deinit(hmap_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static struct hmap_slot *find(const hmap_t *m, uint64_t h, const void *key, size_t len)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct hmap_slot *s = &m->slots[i];
        if (!s->hash) return NULL;
        if (s->hash == h && s->keylen == len && !memcmp(s->key, key, len)) return s;
    }
}

void *hmap_get(const hmap_t *m, const void *key, size_t keylen)
{
    struct hmap_slot *s = find(m, hash_of(m, key, keylen), key, keylen);
    return s ? s->value : NULL;
}

static void insert_slot(struct hmap_slot *slots, size_t cap, const struct hmap_slot *e)
{
    size_t mask = cap - 1, i = e->hash & mask;
    while (slots[i].hash) i = (i + 1) & mask;
    slots[i] = *e;
}

static int grow(hmap_t *m)
{
    size_t ncap = m->cap * 2;
    struct hmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash) insert_slot(ns, ncap, &m->slots[i]);
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int hmap_put(hmap_t *m, const void *key, size_t keylen, void *value)
{
    struct hmap_slot e = { hash_of(m, key, keylen), key, keylen, value };
    if ((m->count + 1) * 4 > m->cap * 3) {
        int r = grow(m);
        if (r) return r;
    }
    insert_slot(m->slots, m->cap, &e);
    m->count++;
    return 0;
}

void *hmap_del(hmap_t *m, const void *key, size_t keylen)
{
    struct hmap_slot *s = find(m, hash_of(m, key, keylen), key, keylen);
    size_t mask = m->cap - 1, i, j;
    void *value;

    if (!s) return NULL;
    value = s->value;
    i = (size_t)(s - m->slots);
    /* Backward-shift: pull later entries of the probe run into the hole when
     * the hole lies between their home slot and where they sit now. */
    for (j = (i + 1) & mask; m->slots[j].hash; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    memset(&m->slots[i], 0, sizeof m->slots[i]);
    m->count--;
    return value;
}

void *hmap_next(const hmap_t *m, size_t *pos)
{
    while (*pos < m->cap) {
        struct hmap_slot *s = &m->slots[(*pos)++];
        if (s->hash) return s->value;
    }
    return NULL;
}
