/* storage/hist.c - see hist.h.
 *
 * DESIGN: offsets are assigned here, inside the write transaction, from the
 * stored chan record, so a batch that fails to commit leaves no gap: nothing
 * was assigned. Retention by count costs one delete per append (the entry
 * that fell out of the window); retention by age runs in hist_prune() with a
 * budget, resuming where it stopped, so no transaction grows with the data. */
#include "hist.h"
#include "hist_int.h"
#include "datadir.h"
#include "rand.h"
#include "mpack.h"
#include "wbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define CHAN_REC_LEN 56
#define CHAN_REC_VERSION 1
/* Deletions one append may do when history_size shrank; the pruner does the rest. */
#define KEEP_DELETES_PER_WRITE 16

struct chan_rec {
    uint64_t id;
    hist_chan_t c;
};

static void rec_encode(unsigned char out[CHAN_REC_LEN], const struct chan_rec *r)
{
    memset(out, 0, CHAN_REC_LEN);
    out[0] = CHAN_REC_VERSION;
    put_be64(out + 8, r->id);
    put_be64(out + 16, r->c.last_offset);
    put_be64(out + 24, r->c.first_offset);
    put_be64(out + 32, (uint64_t)r->c.last_ts);
    memcpy(out + 40, r->c.epoch, HIST_EPOCH_LEN);
}

static int rec_decode(const MDB_val *v, struct chan_rec *r)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size != CHAN_REC_LEN || p[0] != CHAN_REC_VERSION) return -1;
    r->id = get_be64(p + 8);
    r->c.last_offset = get_be64(p + 16);
    r->c.first_offset = get_be64(p + 24);
    r->c.last_ts = (int64_t)get_be64(p + 32);
    memcpy(r->c.epoch, p + 40, HIST_EPOCH_LEN);
    r->c.epoch[HIST_EPOCH_LEN] = '\0';
    return 0;
}

static void log_key(unsigned char k[16], uint64_t id, uint64_t off)
{
    put_be64(k, id);
    put_be64(k + 8, off);
}

/* Maps LMDB's codes to errno values; MDB_MAP_FULL is handled by callers. */
static int mdb_err(int rc)
{
    if (rc == ENOMEM || rc == ENOSPC || rc == EIO || rc == EACCES) return -rc;
    if (rc > 0 && rc < 1000) return -rc;          /* a plain errno */
    return -EIO;
}

/* Free bytes below which an EIO from a write transaction is taken for a
 * full disk. */
#define FULL_DISK_SLACK (1024 * 1024)

/* mdb_err() for the outcome of a write transaction. LMDB reports a short
 * pwrite() at commit, which is how a filling disk usually shows, as EIO
 * (only a write that fails outright gives ENOSPC): when the store's
 * filesystem is (nearly) out of space, say so instead. */
static int write_err(hist_t *h, int rc)
{
    struct statvfs vfs;
    int fd;

    if (rc == EIO && mdb_env_get_fd(h->env, &fd) == 0 && fstatvfs(fd, &vfs) == 0 &&
        (unsigned long long)vfs.f_bavail * vfs.f_frsize < FULL_DISK_SLACK)
        return -ENOSPC;
    return mdb_err(rc);
}

static int open_dbs(hist_t *h, int create, char *err, size_t errlen)
{
    unsigned flags = create ? MDB_CREATE : 0;
    MDB_txn *txn;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_txn_begin(h->env, NULL, 0, &txn))) {
        snprintf(err, errlen, "cannot begin a transaction: %s", mdb_strerror(rc));
        return -1;
    }
    if ((rc = mdb_dbi_open(txn, "meta", flags, &h->meta)) ||
        (rc = mdb_dbi_open(txn, "chans", flags, &h->chans)) ||
        (rc = mdb_dbi_open(txn, "log", flags, &h->log)) ||
        (rc = mdb_dbi_open(txn, "state", MDB_CREATE, &h->state)) ||
        (rc = mdb_dbi_open(txn, "aux", MDB_CREATE, &h->aux)) ||
        (rc = mdb_dbi_open(txn, "timers", MDB_CREATE, &h->timers)) ||
        (rc = mdb_dbi_open(txn, "idem", MDB_CREATE, &h->idem)) ||
        (rc = mdb_dbi_open(txn, "idem_age", MDB_CREATE, &h->idem_age)) ||
        (rc = mdb_dbi_open(txn, "wh_out", MDB_CREATE, &h->wh_out)) ||
        (rc = mdb_dbi_open(txn, "wh_dead", MDB_CREATE, &h->wh_dead))) {
        mdb_txn_abort(txn);
        snprintf(err, errlen, "%s",
                 rc == MDB_NOTFOUND ? "not a Herald history store (its databases are missing)" : mdb_strerror(rc));
        return -1;
    }
    k.mv_data = "version";
    k.mv_size = 7;
    if (create) {
        unsigned char ver[4] = { 0, 0, 0, HIST_FORMAT_VERSION }, next[8];
        put_be64(next, 1);
        v.mv_data = ver;
        v.mv_size = 4;
        rc = mdb_put(txn, h->meta, &k, &v, 0);
        if (!rc) {
            MDB_val nk = { 7, "next_id" }, nv = { 8, next };
            rc = mdb_put(txn, h->meta, &nk, &nv, 0);
        }
    } else {
        rc = mdb_get(txn, h->meta, &k, &v);
        if (rc == MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            snprintf(err, errlen, "not a Herald history store (no format version)");
            return -1;
        }
        if (!rc && (v.mv_size != 4 || ((unsigned char *)v.mv_data)[3] != HIST_FORMAT_VERSION)) {
            unsigned got = v.mv_size == 4 ? ((unsigned char *)v.mv_data)[3] : 0;
            mdb_txn_abort(txn);
            snprintf(err, errlen, "history format version %u %s; this herald (%s) reads history format version "
                     "%d: run a herald that reads version %u, or restore the backup taken before the upgrade", got,
                     got > HIST_FORMAT_VERSION ? "was written by a newer herald" : "is not one this herald reads",
                     HERALD_VERSION, HIST_FORMAT_VERSION, got);
            return -1;
        }
    }
    if (rc || (rc = mdb_txn_commit(txn))) {
        if (rc) snprintf(err, errlen, "%s", mdb_strerror(rc));
        return -1;
    }
    return 0;
}

int hist_open(hist_t **out, const struct hist_opts *o, char *err, size_t errlen)
{
    char path[4200];
    hist_t *h = calloc(1, sizeof *h);
    MDB_stat st;
    MDB_envinfo info;
    int rc, fresh;

    if (!h) { snprintf(err, errlen, "out of memory"); return -1; }
    pthread_rwlock_init(&h->lock, NULL);
    h->map_max = o->map_size_max;
    snprintf(path, sizeof path, "%s/history", o->dir);
    if (mkdir(path, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    if ((rc = mdb_env_create(&h->env)) || (rc = mdb_env_set_maxdbs(h->env, 16)) ||
        (rc = mdb_env_set_mapsize(h->env, o->map_size)) || (rc = mdb_env_set_maxreaders(h->env, 256))) {
        snprintf(err, errlen, "%s: %s", path, mdb_strerror(rc));
        goto fail;
    }
    rc = mdb_env_open(h->env, path, MDB_NOTLS | (o->nosync ? MDB_NOSYNC : 0), 0600);
    if (rc) {
        snprintf(err, errlen, "%s: cannot open: %s", path, mdb_strerror(rc));
        goto fail;
    }
    mdb_env_stat(h->env, &st);
    fresh = st.ms_entries == 0;                  /* the named databases live in the main one */
    if (open_dbs(h, fresh, err, errlen)) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err);
        snprintf(err, errlen, "%s: %s", path, tmp);
        goto fail;
    }
    mdb_env_info(h->env, &info);
    if (info.me_mapsize > h->map_max) h->map_max = info.me_mapsize;
    *out = h;
    return 0;
fail:
    if (h->env) mdb_env_close(h->env);
    pthread_rwlock_destroy(&h->lock);
    free(h);
    return -1;
}

void hist_close(hist_t *h)
{
    if (!h) return;
    mdb_env_close(h->env);
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

int hist_load(hist_t *h, int (*fn)(void *, const char *, size_t, const hist_chan_t *), void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc, r = 0;

    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn))) goto out;
    if ((rc = mdb_cursor_open(txn, h->chans, &cur))) { mdb_txn_abort(txn); goto out; }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct chan_rec cr;
        if (rec_decode(&v, &cr)) continue;       /* a record of a newer version: skip it */
        if ((r = fn(ctx, k.mv_data, k.mv_size, &cr.c))) break;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND) rc = 0;
out:
    pthread_rwlock_unlock(&h->lock);
    if (r) return r;
    return rc ? mdb_err(rc) : 0;
}

/* Doubles the map, capped at map_max. Return: 0, HIST_E_FULL at the cap, -errno. */
static int grow_map(hist_t *h)
{
    MDB_envinfo info;
    size_t size;
    int rc;

    pthread_rwlock_wrlock(&h->lock);
    mdb_env_info(h->env, &info);
    if (info.me_mapsize >= h->map_max) {
        pthread_rwlock_unlock(&h->lock);
        return HIST_E_FULL;
    }
    size = info.me_mapsize * 2;
    if (size > h->map_max || size < info.me_mapsize) size = h->map_max;
    rc = mdb_env_set_mapsize(h->env, size);
    pthread_rwlock_unlock(&h->lock);
    return rc ? mdb_err(rc) : 0;
}

int hist_int_grow(hist_t *h) { return grow_map(h); }
int hist_int_chan_decode(const void *data, size_t len, uint64_t *id, hist_chan_t *c)
{
    MDB_val v = { len, (void *)data };
    struct chan_rec cr;
    if (rec_decode(&v, &cr)) return -1;
    *id = cr.id;
    *c = cr.c;
    return 0;
}
int hist_int_write_err(hist_t *h, int rc) { return write_err(h, rc); }
int hist_int_mdb_err(int rc) { return mdb_err(rc); }

/* ---- state channels ---- */

/* One request's view of a channel's state inside the write transaction:
 * what the generic ops and the custom ones (hist_tx_*) share. Every change
 * goes through tx_put()/tx_del(), which also append it to the delta. */
struct hist_tx {
    hist_t *h;
    MDB_txn *txn;
    uint64_t id;                  /* the channel */
    hist_write_t *w;
    wbuf_t changes;               /* MessagePack: the delta's change maps */
    uint32_t nchanges;
    uint64_t floor;               /* the version floor (see hist.h "aux"), once loaded */
    uint8_t floor_loaded, floor_dirty;
    uint64_t *next_id;            /* the batch's next channel id, for targets of hist_tx_publish() */
    int *id_used;
    hist_side_t **side_tail;      /* where the next side publication goes in w->side */
};

/* (channel id, key) as a key of "state" or "aux". */
static MDB_val state_key(unsigned char *buf, uint64_t id, const char *key, size_t keylen)
{
    MDB_val k;
    put_be64(buf, id);
    if (keylen) memcpy(buf + 8, key, keylen);
    k.mv_size = 8 + keylen;
    k.mv_data = buf;
    return k;
}

/* The channel's version floor: every version a deleted key of the channel
 * ever had is at or below it. Return: 0 or an MDB code. */
static int floor_load(hist_tx_t *tx)
{
    unsigned char kb[8];
    MDB_val k = state_key(kb, tx->id, NULL, 0), v;
    int rc;

    if (tx->floor_loaded) return 0;
    rc = mdb_get(tx->txn, tx->h->aux, &k, &v);
    if (rc && rc != MDB_NOTFOUND) return rc;
    tx->floor = rc == 0 && v.mv_size == 8 ? get_be64(v.mv_data) : 0;
    tx->floor_loaded = 1;
    return 0;
}

/* A key at @version is going away: the floor rises to it. */
static int floor_raise(hist_tx_t *tx, uint64_t version)
{
    int rc = floor_load(tx);
    if (!rc && version > tx->floor) {
        tx->floor = version;
        tx->floor_dirty = 1;
    }
    return rc;
}

static int floor_store(hist_tx_t *tx)
{
    unsigned char kb[8], vb[8];
    MDB_val k = state_key(kb, tx->id, NULL, 0), v = { 8, vb };

    if (!tx->floor_dirty) return 0;
    put_be64(vb, tx->floor);
    return mdb_put(tx->txn, tx->h->aux, &k, &v, 0);
}

/* The version a change of a key now at @version (@present) takes: one more,
 * or above the floor for a key that is new or created again. Return: 0 or
 * an MDB code. */
static int next_version(hist_tx_t *tx, uint64_t version, int present, uint64_t *out)
{
    int rc;
    if (present) {
        *out = version + 1;
        return 0;
    }
    if ((rc = floor_load(tx))) return rc;
    *out = tx->floor + 1;
    return 0;
}

/* Reads a stored state value into its version and MessagePack bytes. */
static int kv_parse(const MDB_val *v, uint64_t *version, const unsigned char **val, size_t *vallen)
{
    if (v->mv_size < 9) return -1;
    *version = get_be64(v->mv_data);
    *val = (const unsigned char *)v->mv_data + 8;
    *vallen = v->mv_size - 8;
    return 0;
}

/* Looks @key up: *@old NULL when absent. Return: 0 or an MDB/errno code. */
static int tx_lookup(hist_tx_t *tx, const char *key, size_t klen, uint64_t *version, const unsigned char **old,
                     size_t *oldlen)
{
    unsigned char kbuf[8 + HIST_KEY_MAX];
    MDB_val k = state_key(kbuf, tx->id, key, klen), v;
    int rc = mdb_get(tx->txn, tx->h->state, &k, &v);

    *version = 0;
    *old = NULL;
    *oldlen = 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    return kv_parse(&v, version, old, oldlen) ? EIO : 0;
}

/* Stores @key = @val (MessagePack) at @version and records the change. */
static int tx_put(hist_tx_t *tx, const char *key, size_t klen, uint64_t version, const unsigned char *val,
                  size_t vallen)
{
    unsigned char kbuf[8 + HIST_KEY_MAX];
    MDB_val k = state_key(kbuf, tx->id, key, klen), v = { 8 + vallen, NULL };
    int rc = mdb_put(tx->txn, tx->h->state, &k, &v, MDB_RESERVE);

    if (rc) return rc;
    put_be64(v.mv_data, version);
    memcpy((unsigned char *)v.mv_data + 8, val, vallen);
    mpack_put_map(&tx->changes, 3);
    mpack_put_str(&tx->changes, "key", 3);
    mpack_put_str(&tx->changes, key, klen);
    mpack_put_str(&tx->changes, "value", 5);
    wbuf_put(&tx->changes, val, vallen);
    mpack_put_str(&tx->changes, "version", 7);
    mpack_put_uint(&tx->changes, version);
    tx->nchanges++;
    return tx->changes.oom ? ENOMEM : 0;
}

/* Deletes @key (present, at @version) and records the change. */
static int tx_del(hist_tx_t *tx, const char *key, size_t klen, uint64_t version)
{
    unsigned char kbuf[8 + HIST_KEY_MAX];
    MDB_val k = state_key(kbuf, tx->id, key, klen);
    int rc = mdb_del(tx->txn, tx->h->state, &k, NULL);

    if (rc || (rc = floor_raise(tx, version))) return rc;
    mpack_put_map(&tx->changes, 2);
    mpack_put_str(&tx->changes, "key", 3);
    mpack_put_str(&tx->changes, key, klen);
    mpack_put_str(&tx->changes, "deleted", 7);
    mpack_put_bool(&tx->changes, 1);
    tx->nchanges++;
    return tx->changes.oom ? ENOMEM : 0;
}

/* Deletes every row of channel @id in @dbi (its state, or its aux rows);
 * with @maxver, *@maxver is the highest version among the state rows. */
static int rows_clear(MDB_txn *txn, MDB_dbi dbi, uint64_t id, uint64_t *maxver)
{
    unsigned char kb[8];
    MDB_val k = { 8, kb }, v;
    MDB_cursor *cur;
    int rc;

    put_be64(kb, id);
    if ((rc = mdb_cursor_open(txn, dbi, &cur))) return rc;
    /* After mdb_cursor_del() the cursor already stands on the next key:
     * MDB_NEXT returns it (LMDB keeps a "just deleted" flag for this). */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 8 || get_be64(k.mv_data) != id) break;
        if (maxver && v.mv_size >= 8 && get_be64(v.mv_data) > *maxver) *maxver = get_be64(v.mv_data);
        if ((rc = mdb_cursor_del(cur, 0))) break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int key_ok(size_t klen) { return klen >= 1 && klen <= HIST_KEY_MAX; }

int hist_tx_get(hist_tx_t *tx, const char *key, size_t klen, json_t **val, uint64_t *version)
{
    char reason[PROTO_REASON_MAX];
    const unsigned char *old;
    size_t oldlen;
    int rc;

    *val = NULL;
    if (!key_ok(klen)) return EINVAL;
    if ((rc = tx_lookup(tx, key, klen, version, &old, &oldlen)) || !old) return rc;
    return mpack_decode(old, oldlen, val, reason) ? EIO : 0;
}

int hist_tx_put(hist_tx_t *tx, const char *key, size_t klen, const json_t *val)
{
    const unsigned char *old;
    size_t oldlen;
    uint64_t version;
    wbuf_t b;
    int rc;

    if (!key_ok(klen)) return EINVAL;
    if ((rc = tx_lookup(tx, key, klen, &version, &old, &oldlen)) ||
        (rc = next_version(tx, version, old != NULL, &version)))
        return rc;
    wbuf_init(&b);
    mpack_emit(&b, val);
    rc = b.oom ? ENOMEM : tx_put(tx, key, klen, version, b.p, b.len);
    wbuf_deinit(&b);
    return rc;
}

int hist_tx_del(hist_tx_t *tx, const char *key, size_t klen)
{
    const unsigned char *old;
    size_t oldlen;
    uint64_t version;
    int rc;

    if (!key_ok(klen)) return EINVAL;
    if ((rc = tx_lookup(tx, key, klen, &version, &old, &oldlen)) || !old) return rc;
    return tx_del(tx, key, klen, version);
}

int hist_tx_scan(hist_tx_t *tx, const char *prefix, size_t plen,
                 int (*fn)(void *, const char *, size_t, json_t *), void *ctx)
{
    unsigned char kbuf[8 + HIST_KEY_MAX];
    MDB_val k, v;
    MDB_cursor *cur;
    int rc;

    if (plen > HIST_KEY_MAX) return EINVAL;
    k = state_key(kbuf, tx->id, prefix, plen);
    if ((rc = mdb_cursor_open(tx->txn, tx->h->state, &cur))) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char reason[PROTO_REASON_MAX];
        const unsigned char *kp = k.mv_data, *val;
        size_t vallen;
        uint64_t version;
        json_t *j = NULL;

        if (k.mv_size < 8 + plen || get_be64(kp) != tx->id || memcmp(kp + 8, prefix, plen)) break;
        if (kv_parse(&v, &version, &val, &vallen) || mpack_decode(val, vallen, &j, reason)) { rc = EIO; break; }
        rc = fn(ctx, (const char *)kp + 8, k.mv_size - 8, j);
        json_decref(j);
        if (rc) break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int hist_tx_aux_get(hist_tx_t *tx, const char *key, size_t klen, json_t **val)
{
    char reason[PROTO_REASON_MAX];
    unsigned char kbuf[8 + HIST_KEY_MAX];
    MDB_val k, v;
    int rc;

    *val = NULL;
    if (!key_ok(klen)) return EINVAL;
    k = state_key(kbuf, tx->id, key, klen);
    rc = mdb_get(tx->txn, tx->h->aux, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    return mpack_decode(v.mv_data, v.mv_size, val, reason) ? EIO : 0;
}

int hist_tx_aux_put(hist_tx_t *tx, const char *key, size_t klen, const json_t *val)
{
    unsigned char kbuf[8 + HIST_KEY_MAX];
    MDB_val k, v;
    wbuf_t b;
    int rc;

    if (!key_ok(klen)) return EINVAL;
    k = state_key(kbuf, tx->id, key, klen);
    wbuf_init(&b);
    mpack_emit(&b, val);
    v.mv_size = b.len;
    v.mv_data = b.p;
    rc = b.oom ? ENOMEM : mdb_put(tx->txn, tx->h->aux, &k, &v, 0);
    wbuf_deinit(&b);
    return rc;
}

int hist_tx_aux_del(hist_tx_t *tx, const char *key, size_t klen)
{
    unsigned char kbuf[8 + HIST_KEY_MAX];
    MDB_val k;
    int rc;

    if (!key_ok(klen)) return EINVAL;
    k = state_key(kbuf, tx->id, key, klen);
    rc = mdb_del(tx->txn, tx->h->aux, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* (due ms, channel id, key) as a key of "timers": due times sort first. */
static MDB_val timer_key(unsigned char *buf, int64_t at, uint64_t id, const char *key, size_t klen)
{
    MDB_val k;
    put_be64(buf, (uint64_t)at);
    put_be64(buf + 8, id);
    memcpy(buf + 16, key, klen);
    k.mv_size = 16 + klen;
    k.mv_data = buf;
    return k;
}

int hist_tx_timer_set(hist_tx_t *tx, int64_t at_ms, const char *key, size_t klen)
{
    unsigned char kbuf[16 + HIST_KEY_MAX];
    MDB_val k, v = { tx->w->chanlen, (void *)tx->w->chan };

    if (!key_ok(klen) || at_ms < 0) return EINVAL;
    k = timer_key(kbuf, at_ms, tx->id, key, klen);
    return mdb_put(tx->txn, tx->h->timers, &k, &v, 0);
}

int hist_tx_timer_del(hist_tx_t *tx, int64_t at_ms, const char *key, size_t klen)
{
    unsigned char kbuf[16 + HIST_KEY_MAX];
    MDB_val k;
    int rc;

    if (!key_ok(klen) || at_ms < 0) return EINVAL;
    k = timer_key(kbuf, at_ms, tx->id, key, klen);
    rc = mdb_del(tx->txn, tx->h->timers, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int64_t hist_tx_now(const hist_tx_t *tx) { return tx->w->ts; }

void hist_tx_result(hist_tx_t *tx, json_t *res)
{
    json_decref(tx->w->result);
    tx->w->result = res;
}

int hist_tx_refuse(hist_tx_t *tx, int code, const char *reason, json_t *details)
{
    json_t *res = details ? details : json_object();
    if (res) {
        json_object_set_new(res, "code", json_integer(code));
        json_object_set_new(res, "reason", json_string(reason));
    }
    hist_tx_result(tx, res);
    return HIST_E_REFUSED;
}

json_t *hist_tx_take_result(hist_tx_t *tx)
{
    json_t *res = tx->w->result;
    tx->w->result = NULL;
    return res;
}

void hist_sides_free(hist_side_t *s)
{
    while (s) {
        hist_side_t *next = s->next;
        free(s);
        s = next;
    }
}

const char *hist_tx_chan(const hist_tx_t *tx, size_t *len)
{
    *len = tx->w->chanlen;
    return tx->w->chan;
}

/* Appends @rec at the next offset of the stored channel @chan inside the
 * operation's transaction, as write_one() does for a publication of its
 * own; *@off and @epoch get what was assigned. Return: 0 or an MDB code. */
static int side_store(hist_tx_t *tx, const char *chan, size_t len, const unsigned char *rec, size_t reclen,
                      const hist_target_t *t, uint64_t *off, char *epoch)
{
    unsigned char key[16], recbuf[CHAN_REC_LEN], *val;
    MDB_val k = { len, (void *)chan }, v, lk = { 16, key }, lv;
    struct chan_rec cr;
    int rc, deletes = 0;

    rc = mdb_get(tx->txn, tx->h->chans, &k, &v);
    if (rc == 0 && rec_decode(&v, &cr) == 0) {
        /* stored: its offsets continue */
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        /* Not stored: a new log, continuing what the policy knows of the
         * channel (one the store forgot while the loop kept it), as
         * write_one() does with the loop's base_offset. */
        memset(&cr, 0, sizeof cr);
        cr.id = (*tx->next_id)++;
        *tx->id_used = 1;
        cr.c.last_offset = t->base_offset;
        cr.c.first_offset = t->base_offset + 1;
        if (strlen(t->epoch) == HIST_EPOCH_LEN) memcpy(cr.c.epoch, t->epoch, HIST_EPOCH_LEN + 1);
        else rand_hex(cr.c.epoch, HIST_EPOCH_LEN);
    } else {
        return rc;
    }
    *off = cr.c.last_offset + 1;
    log_key(key, cr.id, *off);
    lv.mv_size = 8 + reclen;
    if ((rc = mdb_put(tx->txn, tx->h->log, &lk, &lv, MDB_RESERVE))) return rc;
    val = lv.mv_data;
    put_be64(val, (uint64_t)tx->w->ts);
    memcpy(val + 8, rec, reclen);
    if (cr.c.first_offset > cr.c.last_offset) cr.c.first_offset = *off;
    cr.c.last_offset = *off;
    cr.c.last_ts = tx->w->ts;
    while (t->keep && *off - cr.c.first_offset + 1 > t->keep && deletes < KEEP_DELETES_PER_WRITE) {
        log_key(key, cr.id, cr.c.first_offset);
        rc = mdb_del(tx->txn, tx->h->log, &lk, NULL);
        if (rc && rc != MDB_NOTFOUND) return rc;
        cr.c.first_offset++;
        deletes++;
    }
    rec_encode(recbuf, &cr);
    v.mv_size = CHAN_REC_LEN;
    v.mv_data = recbuf;
    if ((rc = mdb_put(tx->txn, tx->h->chans, &k, &v, 0))) return rc;
    if (t->nhooks && (rc = hist_int_outbox_put(tx->h, tx->txn, t->hooks, t->nhooks, tx->w->ts, HIST_OB_PUBLICATION,
                                                chan, len, *off, rec, reclen)))
        return rc;
    memcpy(epoch, cr.c.epoch, HIST_EPOCH_LEN + 1);
    return 0;
}

int hist_tx_publish(hist_tx_t *tx, const char *chan, size_t len, const unsigned char *rec, size_t reclen,
                    uint64_t *offset)
{
    hist_target_t t = { .history = 1 };
    hist_side_t *s;
    int rc;

    if (offset) *offset = 0;
    if (!len || len > 255 || !tx->side_tail ||
        (len == tx->w->chanlen && !memcmp(chan, tx->w->chan, len)))
        return EINVAL;
    if (tx->w->target) tx->w->target(chan, len, &t);
    if (t.refused) return EINVAL;
    if (t.nhooks > HIST_HOOKS_MAX) t.nhooks = HIST_HOOKS_MAX;
    if (!(s = calloc(1, sizeof *s + len + 1 + reclen))) return ENOMEM;
    memcpy(s->chan, chan, len);
    s->chanlen = len;
    memcpy(s->chan + len + 1, rec, reclen);
    s->rec = (const unsigned char *)s->chan + len + 1;
    s->reclen = reclen;
    s->ts = tx->w->ts;
    if (t.history && (rc = side_store(tx, chan, len, rec, reclen, &t, &s->offset, s->epoch))) {
        free(s);
        return rc;
    }
    *tx->side_tail = s;
    tx->side_tail = &s->next;
    if (offset) *offset = s->offset;
    return 0;
}

int hist_tx_event(hist_tx_t *tx, const char *const *hooks, size_t n, const json_t *ev)
{
    char *text;
    int rc;

    if (!n) return 0;
    if (!json_is_object(ev)) return EINVAL;
    if (!(text = json_dumps(ev, JSON_COMPACT))) return ENOMEM;
    rc = hist_int_outbox_put(tx->h, tx->txn, hooks, n, tx->w->ts, HIST_OB_EVENT, "", 0, 0, text, strlen(text));
    free(text);
    return rc;
}

/* Applies @w's ops to channel @id inside @txn and builds the record of the
 * change into @out. Return: 0; HIST_E_CONFLICT / HIST_E_NOT_INTEGER (w->failed_op
 * set); HIST_E_REFUSED (w->result says why); or an MDB/errno code. */
static int apply_ops(hist_t *h, MDB_txn *txn, uint64_t id, hist_write_t *w, wbuf_t *out, uint64_t *next_id,
                     int *id_used)
{
    hist_tx_t tx = { .h = h, .txn = txn, .id = id, .w = w, .next_id = next_id, .id_used = id_used,
                     .side_tail = &w->side };
    int reset = 0, rc = 0;

    wbuf_init(&tx.changes);
    for (size_t i = 0; i < w->nops && !rc; i++) {
        const hist_state_op_t *op = &w->ops[i];
        uint64_t version = 0;
        const unsigned char *old = NULL;
        size_t oldlen = 0;

        if (op->type == HIST_OP_RESET) {
            uint64_t maxver = 0;
            /* The floor goes with the aux rows and comes back raised. */
            if ((rc = floor_load(&tx)) || (rc = rows_clear(txn, h->state, id, &maxver)) ||
                (rc = rows_clear(txn, h->aux, id, NULL)))
                break;
            tx.floor_dirty = 1;
            if (maxver > tx.floor) tx.floor = maxver;
            /* A reset makes the earlier changes of this request moot. */
            wbuf_reset(&tx.changes);
            tx.nchanges = 0;
            reset = 1;
            continue;
        }
        if (op->type == HIST_OP_CUSTOM) {
            if ((rc = op->custom(&tx, op->arg)) == HIST_E_REFUSED) w->failed_op = i;
            continue;
        }
        if ((rc = tx_lookup(&tx, op->key, op->keylen, &version, &old, &oldlen))) break;
        switch (op->type) {
        case HIST_OP_CAS:
            if (version != op->version) {
                w->failed_op = i;
                w->conflict_version = version;
                rc = HIST_E_CONFLICT;
                break;
            }
            /* fall through */
        case HIST_OP_SET: {
            uint64_t nv;
            if (!(rc = next_version(&tx, version, old != NULL, &nv)))
                rc = tx_put(&tx, op->key, op->keylen, nv, op->val, op->vallen);
            break;
        }
        case HIST_OP_INCR: {
            char reason[PROTO_REASON_MAX];
            json_t *cur = NULL;
            int64_t n = 0;
            wbuf_t nv;
            if (old) {
                if (mpack_decode(old, oldlen, &cur, reason) || !json_is_integer(cur)) {
                    json_decref(cur);
                    w->failed_op = i;
                    rc = HIST_E_NOT_INTEGER;
                    break;
                }
                n = json_integer_value(cur);
                json_decref(cur);
            }
            if ((op->by > 0 && n > INT64_MAX - op->by) || (op->by < 0 && n < INT64_MIN - op->by)) {
                w->failed_op = i;
                rc = HIST_E_NOT_INTEGER;
                break;
            }
            n += op->by;
            if ((rc = next_version(&tx, version, old != NULL, &version))) break;
            wbuf_init(&nv);
            mpack_put_int(&nv, n);
            rc = nv.oom ? ENOMEM : tx_put(&tx, op->key, op->keylen, version, nv.p, nv.len);
            wbuf_deinit(&nv);
            break;
        }
        case HIST_OP_DELETE:
            if (old) rc = tx_del(&tx, op->key, op->keylen, version);   /* absent: no change */
            break;
        default:
            break;
        }
    }
    if (!rc) rc = floor_store(&tx);
    w->unchanged = !rc && !tx.nchanges && !reset;
    if (!rc) {
        mpack_put_map(out, 2);
        mpack_put_str(out, "ts", 2);
        mpack_put_int(out, w->ts);
        mpack_put_str(out, "data", 4);
        mpack_put_map(out, reset ? 2 : 1);
        mpack_put_str(out, "changes", 7);
        mpack_put_array(out, tx.nchanges);
        wbuf_put(out, tx.changes.p, tx.changes.len);
        if (reset) {
            mpack_put_str(out, "reset", 5);
            mpack_put_bool(out, 1);
        }
        if (out->oom || tx.changes.oom) rc = ENOMEM;
    }
    wbuf_deinit(&tx.changes);
    return rc;
}

/* The key of channel @id's idempotency key @w->idem_key in "idem" (@age 0)
 * or, at @ts, in "idem_age". */
static MDB_val idem_key(unsigned char *buf, int age, int64_t ts, uint64_t id, const hist_write_t *w)
{
    MDB_val k;
    size_t o = 0;

    if (age) { put_be64(buf, (uint64_t)ts); o = 8; }
    put_be64(buf + o, id);
    memcpy(buf + o + 8, w->idem_key, w->idem_len);
    k.mv_size = o + 8 + w->idem_len;
    k.mv_data = buf;
    return k;
}

/* Looks @w's idempotency key up in channel @id. Return: 0 (a duplicate
 * when w->duplicate is set; *@old_ts is then or otherwise the time of a
 * remembered, expired use, or 0), or an MDB code. */
static int idem_lookup(hist_t *h, MDB_txn *txn, uint64_t id, hist_write_t *w, int64_t *old_ts)
{
    unsigned char kb[16 + HIST_IDEM_MAX];
    MDB_val k = idem_key(kb, 0, 0, id, w), v;
    int rc = mdb_get(txn, h->idem, &k, &v);

    *old_ts = 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    if (v.mv_size < 16) return 0;
    *old_ts = (int64_t)get_be64(v.mv_data);
    if (*old_ts >= w->ts - w->idem_window_ms) {
        w->duplicate = 1;
        w->offset = get_be64((unsigned char *)v.mv_data + 8);
        /* A record from before digests (16 bytes), or a request without
         * one, cannot be compared: it is taken for a retry, as it was. */
        w->idem_differs = w->idem_digest && v.mv_size == 16 + HIST_IDEM_DIGEST &&
                          memcmp((unsigned char *)v.mv_data + 16, w->idem_digest, HIST_IDEM_DIGEST);
    }
    return 0;
}

/* Remembers that @w's idempotency key made offset @off of channel @id,
 * replacing a use of it at @old_ts (0: none). Return: 0 or an MDB code. */
static int idem_remember(hist_t *h, MDB_txn *txn, uint64_t id, const hist_write_t *w, uint64_t off, int64_t old_ts)
{
    unsigned char kb[16 + HIST_IDEM_MAX], ab[24 + HIST_IDEM_MAX], vb[16 + HIST_IDEM_DIGEST];
    MDB_val k = idem_key(kb, 0, 0, id, w), v = { 16, vb }, a, none = { 0, "" };
    int rc;

    if (old_ts) {
        a = idem_key(ab, 1, old_ts, id, w);
        if ((rc = mdb_del(txn, h->idem_age, &a, NULL)) && rc != MDB_NOTFOUND) return rc;
    }
    put_be64(vb, (uint64_t)w->ts);
    put_be64(vb + 8, off);
    if (w->idem_digest) {
        memcpy(vb + 16, w->idem_digest, HIST_IDEM_DIGEST);
        v.mv_size += HIST_IDEM_DIGEST;
    }
    if ((rc = mdb_put(txn, h->idem, &k, &v, 0))) return rc;
    a = idem_key(ab, 1, w->ts, id, w);
    return mdb_put(txn, h->idem_age, &a, &none, 0);
}

/* Appends one item inside @txn. Return: 0 or an MDB/errno code. */
static int write_one(hist_t *h, MDB_txn *txn, hist_write_t *w, uint64_t *next_id, int *id_used)
{
    unsigned char key[16], recbuf[CHAN_REC_LEN], *val;
    MDB_val k = { w->chanlen, (void *)w->chan }, v, lk, lv;
    struct chan_rec cr;
    uint64_t off;
    int64_t idem_old = 0;
    int rc, deletes = 0;

    rc = mdb_get(txn, h->chans, &k, &v);
    if (rc == 0 && rec_decode(&v, &cr) == 0) {
        /* stored */
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        memset(&cr, 0, sizeof cr);
        cr.id = (*next_id)++;
        *id_used = 1;
        cr.c.last_offset = w->base_offset;
        cr.c.first_offset = w->base_offset + 1;
        if (w->epoch && strlen(w->epoch) == HIST_EPOCH_LEN) memcpy(cr.c.epoch, w->epoch, HIST_EPOCH_LEN + 1);
        else rand_hex(cr.c.epoch, HIST_EPOCH_LEN);
    } else {
        return rc;
    }
    off = cr.c.last_offset + 1;
    if (w->idem_key) {
        if ((rc = idem_lookup(h, txn, cr.id, w, &idem_old))) return rc;
        if (w->duplicate) {
            /* A retry: answered with what the key made, nothing appended. A
             * new channel's id is simply not used (it cannot be a retry). */
            memcpy(w->stored_epoch, cr.c.epoch, HIST_EPOCH_LEN + 1);
            return 0;
        }
    }
    if (w->check_offset) {
        const unsigned char *target = NULL;
        size_t tlen = 0;
        log_key(key, cr.id, w->check_offset);
        lk.mv_size = 16;
        lk.mv_data = key;
        rc = mdb_get(txn, h->log, &lk, &lv);
        if (rc && rc != MDB_NOTFOUND) return rc;
        if (rc == 0 && lv.mv_size >= 8) {
            target = (const unsigned char *)lv.mv_data + 8;
            tlen = lv.mv_size - 8;
        }
        if ((w->check_result = w->check(w->rec, w->reclen, target, tlen))) {
            w->status = HIST_E_CHECK;
            w->offset = 0;
            return 0;
        }
    }
    if (w->nops) {
        /* State ops run in a nested transaction: a request that fails (a cas
         * conflict, say) leaves no trace, and the batch around it goes on. */
        MDB_txn *child;
        wbuf_t rec;
        if ((rc = mdb_txn_begin(h->env, txn, 0, &child))) return rc;
        wbuf_init(&rec);
        rc = apply_ops(h, child, cr.id, w, &rec, next_id, id_used);
        if (rc) {
            /* What the ops published went with the child transaction. */
            hist_sides_free(w->side);
            w->side = NULL;
        }
        if (rc == HIST_E_CONFLICT || rc == HIST_E_NOT_INTEGER || rc == HIST_E_REFUSED) {
            mdb_txn_abort(child);
            wbuf_deinit(&rec);
            w->status = rc;
            w->offset = 0;
            return 0;                          /* a new channel's id is simply not used */
        }
        if (rc) mdb_txn_abort(child);
        if (rc || (rc = mdb_txn_commit(child))) {
            /* MDB_MAP_FULL among them: the batch is retried in a bigger map. */
            wbuf_deinit(&rec);
            return rc;
        }
        w->state_rec = rec.p;                  /* handed over: the caller frees it */
        w->state_reclen = rec.len;
        w->rec = rec.p;
        w->reclen = rec.len;
        if (w->unchanged) {
            /* Nothing to tell subscribers: no entry, no offset. A new
             * channel's id is simply not used. */
            w->offset = cr.c.last_offset;
            memcpy(w->stored_epoch, cr.c.epoch, HIST_EPOCH_LEN + 1);
            return 0;
        }
    }
    log_key(key, cr.id, off);
    lk.mv_size = 16;
    lk.mv_data = key;
    lv.mv_size = 8 + w->reclen;
    if ((rc = mdb_put(txn, h->log, &lk, &lv, MDB_RESERVE))) return rc;
    val = lv.mv_data;
    put_be64(val, (uint64_t)w->ts);
    memcpy(val + 8, w->rec, w->reclen);
    if (cr.c.first_offset > cr.c.last_offset) cr.c.first_offset = off;
    cr.c.last_offset = off;
    cr.c.last_ts = w->ts;
    /* Keep at most w->keep entries: normally this deletes exactly the one
     * that just fell out of the window. */
    while (w->keep && off - cr.c.first_offset + 1 > w->keep && deletes < KEEP_DELETES_PER_WRITE) {
        log_key(key, cr.id, cr.c.first_offset);
        rc = mdb_del(txn, h->log, &lk, NULL);
        if (rc && rc != MDB_NOTFOUND) return rc;
        cr.c.first_offset++;
        deletes++;
    }
    rec_encode(recbuf, &cr);
    v.mv_size = CHAN_REC_LEN;
    v.mv_data = recbuf;
    if ((rc = mdb_put(txn, h->chans, &k, &v, 0))) return rc;
    if (w->idem_key && (rc = idem_remember(h, txn, cr.id, w, off, idem_old))) return rc;
    /* The webhooks' events go in with the publication, or not at all. */
    if (w->nhooks && (rc = hist_int_outbox_put(h, txn, w->hooks, w->nhooks, w->ts, HIST_OB_PUBLICATION, w->chan,
                                                w->chanlen, off, w->rec, w->reclen)))
        return rc;
    w->offset = off;
    memcpy(w->stored_epoch, cr.c.epoch, HIST_EPOCH_LEN + 1);
    return 0;
}

int hist_write_batch(hist_t *h, hist_write_t *w, size_t n)
{
    for (;;) {
        MDB_val nk = { 7, "next_id" }, nv;
        unsigned char nb[8];
        uint64_t next_id = 1;
        MDB_txn *txn;
        int rc, id_used = 0, status;

        pthread_rwlock_rdlock(&h->lock);
        rc = mdb_txn_begin(h->env, NULL, 0, &txn);
        if (!rc) {
            rc = mdb_get(txn, h->meta, &nk, &nv);
            if (rc == 0 && nv.mv_size == 8) next_id = get_be64(nv.mv_data);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
            for (size_t i = 0; i < n; i++) {
                w[i].status = 0;
                w[i].unchanged = 0;
                w[i].duplicate = 0;
                w[i].check_result = 0;
                free(w[i].state_rec);
                w[i].state_rec = NULL;
                hist_sides_free(w[i].side);
                w[i].side = NULL;
                json_decref(w[i].result);      /* from an attempt that did not commit */
                w[i].result = NULL;
            }
            for (size_t i = 0; !rc && i < n; i++) rc = write_one(h, txn, &w[i], &next_id, &id_used);
            if (!rc && id_used) {
                put_be64(nb, next_id);
                nv.mv_size = 8;
                nv.mv_data = nb;
                rc = mdb_put(txn, h->meta, &nk, &nv, 0);
            }
            if (rc) mdb_txn_abort(txn);
            else rc = mdb_txn_commit(txn);
        }
        pthread_rwlock_unlock(&h->lock);

        if (rc == MDB_MAP_FULL) {
            if ((status = grow_map(h)) == 0) continue;   /* retry the batch in a bigger map */
        } else {
            status = rc ? write_err(h, rc) : 0;
        }
        for (size_t i = 0; i < n; i++) {
            if (status || (w[i].status != HIST_E_CONFLICT && w[i].status != HIST_E_NOT_INTEGER &&
                           w[i].status != HIST_E_REFUSED && w[i].status != HIST_E_CHECK))
                w[i].status = status;
            if (w[i].status) w[i].duplicate = 0;
            if (w[i].status) {
                w[i].offset = 0;
                free(w[i].state_rec);
                w[i].state_rec = NULL;
                hist_sides_free(w[i].side);
                w[i].side = NULL;
                if (w[i].status != HIST_E_REFUSED) {
                    json_decref(w[i].result);
                    w[i].result = NULL;
                }
            }
        }
        return status;
    }
}

/* Makes room for @need elements of @elem bytes in the array *@p of *@cap,
 * doubling. Readers copy what they find out of the transaction into such
 * arrays. Return: 0, or -1 (out of memory; the array is unchanged). */
static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t nc = *cap ? *cap : (elem == 1 ? 4096 : 16);
    void *np;

    if (need <= *cap) return 0;
    while (nc < need) nc *= 2;
    if (!(np = realloc(*p, nc * elem))) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

/* A read of one channel: the read lock, a read transaction, and the
 * channel's record if it is stored. The readers below share this opening
 * and its closing. */
struct chan_read {
    MDB_txn *txn;
    MDB_cursor *cur;              /* the reader's cursor, closed with it */
    struct chan_rec cr;
    int found;
};

/* Return: 0 (check ->found), or an MDB code with nothing left open. */
static int chan_read_open(hist_t *h, const char *name, size_t len, struct chan_read *rd)
{
    MDB_val k = { len, (void *)name }, v;
    int rc;

    memset(rd, 0, sizeof *rd);
    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &rd->txn))) {
        pthread_rwlock_unlock(&h->lock);
        return rc;
    }
    rc = mdb_get(rd->txn, h->chans, &k, &v);
    if (rc == 0 && rec_decode(&v, &rd->cr) == 0) rd->found = 1;
    else if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(rd->txn);
        pthread_rwlock_unlock(&h->lock);
        return rc;
    }
    return 0;
}

static void chan_read_close(hist_t *h, struct chan_read *rd)
{
    if (rd->cur) mdb_cursor_close(rd->cur);
    mdb_txn_abort(rd->txn);
    pthread_rwlock_unlock(&h->lock);
}

int hist_read(hist_t *h, const char *name, size_t len, uint64_t after, uint64_t upto, size_t limit,
              int reverse, hist_result_t *res)
{
    MDB_val lk, lv;
    unsigned char key[16];
    size_t cap = 0, used = 0, ecap = 0;
    struct chan_read rd;
    MDB_cursor_op op;
    int rc;

    memset(res, 0, sizeof *res);
    if ((rc = chan_read_open(h, name, len, &rd))) return mdb_err(rc);
    if (!rd.found) goto out;
    res->found = 1;
    res->chan = rd.cr.c;
    if (upto == 0 || upto > rd.cr.c.last_offset) upto = rd.cr.c.last_offset;
    if (limit == 0 || after >= upto) goto out;
    if ((rc = mdb_cursor_open(rd.txn, h->log, &rd.cur))) goto out;
    lk.mv_size = 16;
    lk.mv_data = key;
    if (!reverse) {
        log_key(key, rd.cr.id, after + 1);
        rc = mdb_cursor_get(rd.cur, &lk, &lv, MDB_SET_RANGE);
        op = MDB_NEXT;
    } else {
        log_key(key, rd.cr.id, upto);
        rc = mdb_cursor_get(rd.cur, &lk, &lv, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(rd.cur, &lk, &lv, MDB_LAST);
        else if (rc == 0 && (get_be64(lk.mv_data) != rd.cr.id || get_be64((unsigned char *)lk.mv_data + 8) > upto))
            rc = mdb_cursor_get(rd.cur, &lk, &lv, MDB_PREV);
        op = MDB_PREV;
    }
    for (; rc == 0 && res->n < limit; rc = mdb_cursor_get(rd.cur, &lk, &lv, op)) {
        const unsigned char *kp = lk.mv_data;
        uint64_t off;
        if (lk.mv_size != 16 || get_be64(kp) != rd.cr.id || lv.mv_size < 8) break;
        off = get_be64(kp + 8);
        if (off <= after || off > upto) break;
        if (grow((void **)&res->entries, &ecap, res->n + 1, sizeof *res->entries) ||
            grow((void **)&res->buf, &cap, used + lv.mv_size - 8, 1)) {
            rc = ENOMEM;
            break;
        }
        memcpy(res->buf + used, (unsigned char *)lv.mv_data + 8, lv.mv_size - 8);
        res->entries[res->n].offset = off;
        res->entries[res->n].ts = (int64_t)get_be64(lv.mv_data);
        res->entries[res->n].rec = (const unsigned char *)(uintptr_t)used;   /* fixed up below */
        res->entries[res->n].len = lv.mv_size - 8;
        used += lv.mv_size - 8;
        res->n++;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    for (size_t i = 0; i < res->n; i++)
        res->entries[i].rec = res->buf + (uintptr_t)res->entries[i].rec;
out:
    chan_read_close(h, &rd);
    if (rc) {
        hist_result_free(res);
        return mdb_err(rc);
    }
    return 0;
}

void hist_result_free(hist_result_t *res)
{
    free(res->entries);
    free(res->buf);
    memset(res, 0, sizeof *res);
}

/* Whether channel @id has state rows: its record must then stay, whatever
 * its log's retention, or the rows would lose their channel. */
static int has_state(hist_t *h, MDB_txn *txn, uint64_t id)
{
    unsigned char kb[8];
    MDB_val k = { 8, kb }, v;
    MDB_cursor *cur;
    int rc, found = 0;

    put_be64(kb, id);
    if (mdb_cursor_open(txn, h->state, &cur)) return 1;      /* unsure: keep it */
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size >= 8 && get_be64(k.mv_data) == id) found = 1;
    else if (rc && rc != MDB_NOTFOUND) found = 1;
    mdb_cursor_close(cur);
    return found;
}

struct gone_name {
    struct gone_name *next;
    size_t len;
    char name[];
};

int hist_prune(hist_t *h, int64_t now_ms, unsigned budget, hist_policy_fn policy, void *pctx,
               void (*gone)(void *, const char *, size_t), void *gctx)
{
    struct gone_name *gone_list = NULL;
    unsigned char key[16];
    MDB_val k, v, lk = { 16, key }, lv;
    MDB_cursor *cur = NULL;
    MDB_txn *txn;
    unsigned deleted = 0, visited = 0;
    int rc;

    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, 0, &txn))) goto out_unlock;
    if ((rc = mdb_cursor_open(txn, h->chans, &cur))) { mdb_txn_abort(txn); goto out_unlock; }
    if (h->prune_after_len) {
        k.mv_size = h->prune_after_len;
        k.mv_data = h->prune_after;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == h->prune_after_len && !memcmp(k.mv_data, h->prune_after, k.mv_size))
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    /* Visit at most one pass over the channels per call, and a bounded number. */
    while (rc == 0 && deleted < budget && visited < budget) {
        struct chan_rec cr;
        struct hist_policy pol;
        int changed = 0;

        visited++;
        /* Remember where we are now: after mdb_cursor_del() k points at freed space. */
        if (k.mv_size <= sizeof h->prune_after) {
            memcpy(h->prune_after, k.mv_data, k.mv_size);
            h->prune_after_len = k.mv_size;
        }
        if (rec_decode(&v, &cr)) goto next;
        policy(pctx, k.mv_data, k.mv_size, &pol);
        while (cr.c.first_offset <= cr.c.last_offset && deleted < budget) {
            int expired = pol.keep == 0 || cr.c.last_offset - cr.c.first_offset + 1 > pol.keep;
            log_key(key, cr.id, cr.c.first_offset);
            if (!expired) {
                rc = mdb_get(txn, h->log, &lk, &lv);
                if (rc == MDB_NOTFOUND) { rc = 0; expired = 1; }   /* a hole: step over it */
                else if (rc) goto abort;
                else expired = lv.mv_size >= 8 &&
                               (int64_t)get_be64(lv.mv_data) < now_ms - (int64_t)pol.ttl_ms;
                if (!expired) break;
            }
            rc = mdb_del(txn, h->log, &lk, NULL);
            if (rc && rc != MDB_NOTFOUND) goto abort;
            rc = 0;
            cr.c.first_offset++;
            deleted++;
            changed = 1;
        }
        if (cr.c.first_offset > cr.c.last_offset && (pol.keep == 0 || cr.c.last_ts < now_ms - (int64_t)pol.ttl_ms) &&
            !has_state(h, txn, cr.id)) {
            /* Nothing stored and nothing recent: forget the channel. Its next
             * publication starts a new log under a new epoch. */
            struct gone_name *g = malloc(sizeof *g + k.mv_size);
            if (g) {
                g->len = k.mv_size;
                memcpy(g->name, k.mv_data, k.mv_size);
                g->next = gone_list;
                gone_list = g;
            }
            if ((rc = mdb_cursor_del(cur, 0))) goto abort;
            /* Its aux rows (the version floor among them) go with it: the
             * next publication starts a new epoch, where versions may start over. */
            if ((rc = rows_clear(txn, h->aux, cr.id, NULL))) goto abort;
            deleted++;
        } else if (changed) {
            unsigned char recbuf[CHAN_REC_LEN];
            MDB_val nv = { CHAN_REC_LEN, recbuf };
            rec_encode(recbuf, &cr);
            if ((rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT))) goto abort;
        }
next:
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {                    /* wrapped around: start over next time */
        h->prune_after_len = 0;
        rc = 0;
    }
    if (rc) goto abort;
    mdb_cursor_close(cur);
    rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&h->lock);
    if (rc == MDB_MAP_FULL) {
        /* Deleting needs pages too; grow if we can, else try again later. */
        grow_map(h);
        deleted = 0;
        rc = 0;
    }
    while (gone_list) {
        struct gone_name *g = gone_list;
        gone_list = g->next;
        if (!rc && gone) gone(gctx, g->name, g->len);
        free(g);
    }
    return rc ? write_err(h, rc) : (int)deleted;
abort:
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
out_unlock:
    pthread_rwlock_unlock(&h->lock);
    while (gone_list) {
        struct gone_name *g = gone_list;
        gone_list = g->next;
        free(g);
    }
    return mdb_err(rc);
}

int hist_state_read(hist_t *h, const char *name, size_t len, const char *prefix, size_t plen,
                    const char *after, size_t alen, size_t limit, hist_state_t *out)
{
    unsigned char kb[8 + HIST_KEY_MAX + 1];
    MDB_val sk, sv;
    size_t cap = 0, used = 0, kcap = 0;
    struct chan_read rd;
    int rc;

    memset(out, 0, sizeof *out);
    if (plen > HIST_KEY_MAX || alen > HIST_KEY_MAX) return -EINVAL;
    if ((rc = chan_read_open(h, name, len, &rd))) return mdb_err(rc);
    if (!rd.found) goto out;
    out->found = 1;
    out->chan = rd.cr.c;
    if ((rc = mdb_cursor_open(rd.txn, h->state, &rd.cur))) goto out;
    /* Start at the prefix, or just after @after when it sorts later. */
    put_be64(kb, rd.cr.id);
    if (after && (alen > plen || memcmp(after, prefix, plen) >= 0)) {
        memcpy(kb + 8, after, alen);
        kb[8 + alen] = '\0';                   /* the smallest key greater than @after */
        sk.mv_size = 8 + alen + 1;
    } else {
        memcpy(kb + 8, prefix, plen);
        sk.mv_size = 8 + plen;
    }
    sk.mv_data = kb;
    for (rc = mdb_cursor_get(rd.cur, &sk, &sv, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(rd.cur, &sk, &sv, MDB_NEXT)) {
        const unsigned char *kp = sk.mv_data, *val;
        size_t klen = sk.mv_size - 8, vallen;
        uint64_t version;

        if (sk.mv_size < 8 || get_be64(kp) != rd.cr.id) break;
        if (klen < plen || memcmp(kp + 8, prefix, plen)) break;   /* past the prefix */
        if (limit && out->n == limit) { out->more = 1; break; }
        if (kv_parse(&sv, &version, &val, &vallen)) continue;
        if (grow((void **)&out->kv, &kcap, out->n + 1, sizeof *out->kv) ||
            grow((void **)&out->buf, &cap, used + klen + vallen, 1)) {
            rc = ENOMEM;
            break;
        }
        memcpy(out->buf + used, kp + 8, klen);
        memcpy(out->buf + used + klen, val, vallen);
        out->kv[out->n].key = (const char *)(uintptr_t)used;
        out->kv[out->n].keylen = klen;
        out->kv[out->n].version = version;
        out->kv[out->n].val = (const unsigned char *)(uintptr_t)(used + klen);
        out->kv[out->n].vallen = vallen;
        used += klen + vallen;
        out->n++;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    for (size_t i = 0; i < out->n; i++) {
        out->kv[i].key = (const char *)out->buf + (uintptr_t)out->kv[i].key;
        out->kv[i].val = out->buf + (uintptr_t)out->kv[i].val;
    }
out:
    chan_read_close(h, &rd);
    if (rc) {
        hist_state_free(out);
        return mdb_err(rc);
    }
    return 0;
}

void hist_state_free(hist_state_t *s)
{
    free(s->kv);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

int hist_idem_prune(hist_t *h, int64_t before_ms, unsigned budget)
{
    MDB_cursor *cur = NULL;
    MDB_txn *txn;
    MDB_val k, v;
    unsigned n = 0;
    int rc;

    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, 0, &txn))) goto out;
    if ((rc = mdb_cursor_open(txn, h->idem_age, &cur))) { mdb_txn_abort(txn); goto out; }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < budget;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *kp = k.mv_data;
        MDB_val ik, iv;
        if (k.mv_size < 16 || (int64_t)get_be64(kp) >= before_ms) break;
        /* "idem" holds the key's last use: forget it only if this is that use. */
        ik.mv_size = k.mv_size - 8;
        ik.mv_data = (void *)(kp + 8);
        rc = mdb_get(txn, h->idem, &ik, &iv);
        if (rc == 0 && iv.mv_size >= 16 && !memcmp(iv.mv_data, kp, 8)) rc = mdb_del(txn, h->idem, &ik, NULL);
        if (rc && rc != MDB_NOTFOUND) break;
        if ((rc = mdb_cursor_del(cur, 0))) break;
        n++;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        goto out;
    }
    rc = mdb_txn_commit(txn);
out:
    pthread_rwlock_unlock(&h->lock);
    if (rc == MDB_MAP_FULL) { grow_map(h); return 0; }
    return rc ? mdb_err(rc) : (int)n;
}

int hist_sync(hist_t *h)
{
    int rc;
    pthread_rwlock_rdlock(&h->lock);
    rc = mdb_env_sync(h->env, 1);
    pthread_rwlock_unlock(&h->lock);
    return rc ? write_err(h, rc) : 0;
}

void hist_usage(hist_t *h, size_t *map_size, size_t *used, uint64_t *entries)
{
    MDB_envinfo info;
    MDB_stat st, lst;
    MDB_txn *txn;

    pthread_rwlock_rdlock(&h->lock);
    mdb_env_info(h->env, &info);
    mdb_env_stat(h->env, &st);
    *entries = 0;
    if (mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_stat(txn, h->log, &lst) == 0) *entries = lst.ms_entries;
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&h->lock);
    *map_size = info.me_mapsize;
    *used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
}

int hist_probe(hist_t *h, int64_t now_ms)
{
    for (;;) {
        unsigned char v8[8];
        MDB_val k = { 5, "probe" }, v = { 8, v8 };
        MDB_txn *txn;
        int rc, status;

        put_be64(v8, (uint64_t)now_ms);
        pthread_rwlock_rdlock(&h->lock);
        rc = mdb_txn_begin(h->env, NULL, 0, &txn);
        if (!rc) {
            rc = mdb_put(txn, h->meta, &k, &v, 0);
            if (rc) mdb_txn_abort(txn);
            else rc = mdb_txn_commit(txn);
        }
        pthread_rwlock_unlock(&h->lock);
        if (rc != MDB_MAP_FULL) return rc ? write_err(h, rc) : 0;
        if ((status = grow_map(h))) return status;
    }
}

int hist_stat(hist_t *h, const char *name, size_t len, uint64_t *entries, uint64_t *bytes)
{
    MDB_val lk, lv;
    unsigned char key[16];
    struct chan_read rd;
    int rc;

    *entries = *bytes = 0;
    if ((rc = chan_read_open(h, name, len, &rd))) return mdb_err(rc);
    if (!rd.found || (rc = mdb_cursor_open(rd.txn, h->log, &rd.cur))) goto out;
    log_key(key, rd.cr.id, 0);
    lk.mv_size = 16;
    lk.mv_data = key;
    for (rc = mdb_cursor_get(rd.cur, &lk, &lv, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(rd.cur, &lk, &lv, MDB_NEXT)) {
        if (lk.mv_size != 16 || get_be64(lk.mv_data) != rd.cr.id) break;
        (*entries)++;
        *bytes += lv.mv_size;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
out:
    chan_read_close(h, &rd);
    return rc ? mdb_err(rc) : 0;
}

int hist_backup(const char *src_dir, const char *dest_dir, char *err, size_t errlen)
{
    char src[4200], dst[4200];
    MDB_env *env = NULL;
    int rc, version;

    snprintf(src, sizeof src, "%s/history", src_dir);
    snprintf(dst, sizeof dst, "%s/history", dest_dir);
    if ((rc = datadir_read_format(src_dir, &version, err, errlen))) {
        if (rc == 1) snprintf(err, errlen, "%s is not a Herald data directory (no FORMAT)", src_dir);
        return -1;
    }
    if (access(src, R_OK)) {
        snprintf(err, errlen, "%s: no history store to back up: %s", src, strerror(errno));
        return -1;
    }
    if (mkdir(dest_dir, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", dest_dir, strerror(errno));
        return -1;
    }
    if (mkdir(dst, 0700)) {
        snprintf(err, errlen, "%s: %s", dst,
                 errno == EEXIST ? "already exists; back up into a new or empty directory" : strerror(errno));
        return -1;
    }
    /* A second process may open a live environment: LMDB's lock file
     * coordinates it with the broker, and the copy runs in one read
     * transaction, so it is a consistent snapshot while writes go on. */
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 12)) ||
        (rc = mdb_env_open(env, src, MDB_RDONLY | MDB_NOTLS, 0600)) ||
        (rc = mdb_env_copy2(env, dst, MDB_CP_COMPACT))) {
        snprintf(err, errlen, "backing up %s to %s: %s", src, dst, mdb_strerror(rc));
        if (env) mdb_env_close(env);
        return -1;
    }
    mdb_env_close(env);
    /* The copy carries its source's marker, whatever version this herald
     * reads: a backup taken with a newer binary before an upgrade must still
     * say what it holds. */
    return datadir_write_format(dest_dir, version, err, errlen);
}

int hist_timers_due(hist_t *h, int64_t now_ms, size_t max,
                    void (*fn)(void *, int64_t, const char *, size_t, const char *, size_t), void *ctx,
                    int64_t *next_ms)
{
    MDB_val k = { 0, NULL }, v;
    MDB_cursor *cur = NULL;
    MDB_txn *txn;
    size_t n = 0;
    int rc;

    *next_ms = 0;
    pthread_rwlock_rdlock(&h->lock);
    if ((rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn))) goto out;
    if ((rc = mdb_cursor_open(txn, h->timers, &cur))) { mdb_txn_abort(txn); goto out; }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *kp = k.mv_data;
        int64_t at;
        if (k.mv_size <= 16) continue;
        at = (int64_t)get_be64(kp);
        if (at > now_ms || n == max) {
            *next_ms = at;
            break;
        }
        fn(ctx, at, v.mv_data, v.mv_size, (const char *)kp + 16, k.mv_size - 16);
        n++;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
out:
    pthread_rwlock_unlock(&h->lock);
    return rc ? mdb_err(rc) : 0;
}
