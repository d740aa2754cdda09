/* storage/hist_int.h - what the files of the history store share inside
 * storage/ (hist.c the logs and state, outbox.c the webhook queues); nothing
 * outside storage/ includes it. */
#ifndef HERALD_HIST_INT_H
#define HERALD_HIST_INT_H

#include "hist.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

struct hist {
    MDB_env *env;
    MDB_dbi meta, chans, log, state, aux, timers, idem, idem_age;
    MDB_dbi wh_out, wh_dead;      /* webhook queues (outbox.c) */
    pthread_rwlock_t lock;        /* read: any transaction; write: map resize */
    size_t map_max;
    char prune_after[256];        /* hist_prune() resumes after this channel name */
    size_t prune_after_len;
};

static inline void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)v; v >>= 8; }
}

static inline uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

/* hist_int_grow() - double the map up to its cap: 0, HIST_E_FULL or -errno. */
int hist_int_grow(hist_t *h);
/* hist_int_chan_decode() - a "chans" value (@len bytes at @data) as the
 * channel's id and log (storage/migrate.c reads the store itself).
 * Return: 0, or -1 for a record of another version or size. */
int hist_int_chan_decode(const void *data, size_t len, uint64_t *id, hist_chan_t *c);
/* hist_int_write_err() - a write transaction's LMDB code as -errno. */
int hist_int_write_err(hist_t *h, int rc);
/* hist_int_mdb_err() - an LMDB code as -errno. */
int hist_int_mdb_err(int rc);

/* A webhook queue row taken apart (hist_int_ob_row()); pointers into the
 * row, valid as long as the MDB_val it came from. */
typedef struct hist_ob_row {
    const char *hook;             /* the webhook's name (NUL-terminated in the key) */
    uint64_t id;
    int64_t ts;
    int kind;                     /* enum hist_ob_kind */
    uint64_t offset;
    unsigned attempts;
    int64_t first_ms, last_ms;
    const char *chan;
    size_t chanlen;
    const unsigned char *body;
    size_t len;
    const char *why;              /* dead letters: why it was given up */
    size_t whylen;
} hist_ob_row_t;

/* hist_int_ob_row() - parse a "wh_out" (@dead 0) or "wh_dead" row (key @k,
 * @klen bytes; value @v, @vlen bytes) as outbox.c wrote it (storage/migrate.c
 * carries the queues into the redis engine). Return: 0, or -1 when malformed. */
int hist_int_ob_row(const void *k, size_t klen, const void *v, size_t vlen, int dead, hist_ob_row_t *out);

/* hist_int_outbox_put() - queue one event for each of the @n webhooks
 * @hooks inside @txn (see hist_outbox_add()). Return: 0 or an MDB code. */
int hist_int_outbox_put(hist_t *h, MDB_txn *txn, const char *const *hooks, size_t n, int64_t ts, int kind,
                        const char *chan, size_t chanlen, uint64_t offset, const void *body, size_t len);

#endif
