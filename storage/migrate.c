/* storage/migrate.c - see migrate.h.
 *
 * DESIGN: two passes over one LMDB read transaction, so both see the same
 * store. The first pass counts the data of kinds not carried and,
 * unless told to skip them, stops before Redis sees a single write. The
 * second walks the channel records in name order and, per channel, appends
 * its commands to hiredis' output buffer (redisAppendCommandArgv) and reads
 * the replies back a batch at a time: one round trip per batch, not per
 * key. A channel's meta hash is written after its stream and state, so a
 * channel whose writes failed part way has no offset a node would take. */
#include "migrate.h"
#include "hist_int.h"
#include "datadir.h"
#include "mpack.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Commands, or bytes of them, sent before their replies are read. */
#define BATCH_CMDS 1024
#define BATCH_BYTES (8u << 20)
#define PROGRESS_MS 1000
/* A key: prefix (64), a short tag, a channel (255), a space, an idempotency key. */
#define KEY_MAX (64 + 4 + 256 + 1 + HIST_IDEM_MAX + 1)

struct mig {
    const migrate_opts_t *o;
    migrate_report_t *r;
    char *err;
    size_t errlen;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi chans, log, state, aux, timers, idem, wh_out, wh_dead;
    redisContext *rc;
    size_t pending, pending_bytes;
    int sent;                     /* a write went out: a failure leaves the prefix partly written */
    char first_error[256];        /* the first error reply of a batch */
    int64_t now_ms;
    int64_t started_ms, progress_ms;
};

static const char *const left_names[MIGRATE_LEFT_N] = {
    [MIGRATE_LEFT_TIMERS] = "timers other than seat holds",
    [MIGRATE_LEFT_AUX] = "rows beside a state that no adapter owns",
    [MIGRATE_LEFT_IDEM_OLD] = "idempotency keys without a request digest",
};

const char *migrate_left_name(int k)
{
    return k >= 0 && k < MIGRATE_LEFT_N ? left_names[k] : "?";
}

static int64_t now_ms(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(struct mig *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, m->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the store ---- */

static int store_open(struct mig *m, datadir_t *dd)
{
    char path[4200];
    struct stat st;
    int rc, version;

    if (stat(m->o->data_dir, &st)) return fail(m, "data directory %s: %s", m->o->data_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return fail(m, "data directory %s: not a directory", m->o->data_dir);
    if ((rc = datadir_read_format(m->o->data_dir, &version, m->err, m->errlen))) {
        if (rc == 1) fail(m, "%s is not a Herald data directory (no FORMAT)", m->o->data_dir);
        return -1;
    }
    snprintf(path, sizeof path, "%s/history", m->o->data_dir);
    if (access(path, R_OK)) return fail(m, "%s: no history store to migrate: %s", path, strerror(errno));
    /* Only the lock can fail datadir_open() from here on: a refusal to
     * report as "in use". */
    if (access(m->o->data_dir, R_OK | W_OK | X_OK))
        return fail(m, "data directory %s: not readable and writable (its LOCK is taken as a broker takes it): %s",
                    m->o->data_dir, strerror(errno));
    /* The broker's own lock: held by a running broker, and held here until
     * the end, so no broker starts on the directory meanwhile. */
    if (datadir_open(dd, m->o->data_dir, m->err, m->errlen)) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", m->err);
        fail(m, "%s; stop that broker first: migrate reads a store nothing writes to", tmp);
        return MIGRATE_E_IN_USE;
    }
    if ((rc = mdb_env_create(&m->env)) || (rc = mdb_env_set_maxdbs(m->env, 16)) ||
        (rc = mdb_env_open(m->env, path, MDB_RDONLY | MDB_NOTLS, 0600)))
        return fail(m, "%s: cannot open: %s", path, mdb_strerror(rc));
    if ((rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &m->txn)))
        return fail(m, "%s: cannot begin a transaction: %s", path, mdb_strerror(rc));
    if ((rc = mdb_dbi_open(m->txn, "chans", 0, &m->chans)) || (rc = mdb_dbi_open(m->txn, "log", 0, &m->log)) ||
        (rc = mdb_dbi_open(m->txn, "state", 0, &m->state)) || (rc = mdb_dbi_open(m->txn, "aux", 0, &m->aux)) ||
        (rc = mdb_dbi_open(m->txn, "timers", 0, &m->timers)) || (rc = mdb_dbi_open(m->txn, "idem", 0, &m->idem)) ||
        (rc = mdb_dbi_open(m->txn, "wh_out", 0, &m->wh_out)) ||
        (rc = mdb_dbi_open(m->txn, "wh_dead", 0, &m->wh_dead)))
        return fail(m, "%s: %s", path, rc == MDB_NOTFOUND ? "not a Herald history store of this version "
                    "(its databases are missing)" : mdb_strerror(rc));
    return 0;
}

static void store_close(struct mig *m)
{
    if (m->txn) mdb_txn_abort(m->txn);
    if (m->env) mdb_env_close(m->env);
}

/* Calls @fn for each row of @dbi whose key starts with @pfx (@plen bytes;
 * 0: every row). @fn returns 0 to go on. Return: 0, @fn's code, or -1. */
static int each(struct mig *m, MDB_dbi dbi, const void *pfx, size_t plen,
                int (*fn)(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg), void *arg)
{
    MDB_cursor *cur;
    MDB_val k = { plen, (void *)pfx }, v;
    int rc, r = 0;

    if ((rc = mdb_cursor_open(m->txn, dbi, &cur))) return fail(m, "reading the store: %s", mdb_strerror(rc));
    for (rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, pfx, plen))) break;
        if ((r = fn(m, &k, &v, arg))) break;
    }
    mdb_cursor_close(cur);
    if (r) return r;
    if (rc && rc != MDB_NOTFOUND) return fail(m, "reading the store: %s", mdb_strerror(rc));
    return 0;
}

/* ---- pass 1: what is not carried ---- */

/* The adapters' rows beside a state, by key: what each becomes in Redis. */
enum aux_kind { AUX_FLOOR, AUX_WAIT, AUX_ORDER, AUX_PAYEVENT, AUX_SEQ, AUX_COMMENT, AUX_OTHER };

static enum aux_kind aux_kind(const char *key, size_t klen, size_t *skip)
{
    static const struct { const char *p; enum aux_kind k; } kinds[] = {
        { "wait:", AUX_WAIT }, { "order:", AUX_ORDER }, { "event:", AUX_PAYEVENT }, { "comment:", AUX_COMMENT },
    };
    *skip = 0;
    if (!klen) return AUX_FLOOR;
    if (klen == 3 && !memcmp(key, "seq", 3)) return AUX_SEQ;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t pl = strlen(kinds[i].p);
        if (klen > pl && !memcmp(key, kinds[i].p, pl)) {
            *skip = kinds[i].k == AUX_COMMENT ? 0 : pl;   /* comments keep their whole key */
            return kinds[i].k;
        }
    }
    return AUX_OTHER;
}

static int count_aux(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    size_t skip;

    (void)v;
    (void)arg;
    if (k->mv_size < 8 || aux_kind((const char *)k->mv_data + 8, k->mv_size - 8, &skip) == AUX_OTHER)
        m->r->left[MIGRATE_LEFT_AUX]++;
    return 0;
}

/* Seat holds' expiries are carried; a timer of another kind would not be. */
static int count_timer(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    (void)v;
    (void)arg;
    if (k->mv_size <= 16 + 5 || memcmp((const char *)k->mv_data + 16, "seat:", 5))
        m->r->left[MIGRATE_LEFT_TIMERS]++;
    return 0;
}

/* How long an idempotency key remembered at @ts still answers: > 0 ms. */
static int64_t idem_left(const struct mig *m, const MDB_val *v)
{
    if (v->mv_size < 16) return 0;
    return (int64_t)get_be64(v->mv_data) + m->o->idem_window_ms - m->now_ms;
}

static int count_idem(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    (void)k;
    (void)arg;
    if (idem_left(m, v) > 0 && v->mv_size != 16 + HIST_IDEM_DIGEST) m->r->left[MIGRATE_LEFT_IDEM_OLD]++;
    return 0;
}

static int count_left(struct mig *m)
{
    int rc;

    if ((rc = each(m, m->timers, NULL, 0, count_timer, NULL)) || (rc = each(m, m->aux, NULL, 0, count_aux, NULL)) ||
        (rc = each(m, m->idem, NULL, 0, count_idem, NULL)))
        return rc;
    for (int i = 0; i < MIGRATE_LEFT_N; i++)
        if (m->r->left[i]) return 1;
    return 0;
}

/* ---- Redis ---- */

static int redis_check(struct mig *m, redisReply *rep, const char *what)
{
    if (!rep) return fail(m, "Redis: %s: %s", what, m->rc->errstr[0] ? m->rc->errstr : "no reply");
    if (rep->type == REDIS_REPLY_ERROR) {
        fail(m, "Redis: %s: %.*s", what, (int)rep->len, rep->str);
        freeReplyObject(rep);
        return -1;
    }
    return 0;
}

static int redis_open(struct mig *m)
{
    struct timeval tv = { m->o->timeout_ms / 1000, (m->o->timeout_ms % 1000) * 1000 };
    redisReply *rep;

    m->rc = m->o->port ? redisConnectWithTimeout(m->o->host, m->o->port, tv)
                       : redisConnectUnixWithTimeout(m->o->host, tv);
    if (!m->rc) return fail(m, "Redis: out of memory");
    if (m->rc->err) {
        if (m->o->port) return fail(m, "cannot reach Redis at %s:%d: %s", m->o->host, m->o->port, m->rc->errstr);
        return fail(m, "cannot reach Redis at unix:%s: %s", m->o->host, m->rc->errstr);
    }
    redisSetTimeout(m->rc, tv);
    if (m->o->password && *m->o->password) {
        rep = redisCommand(m->rc, "AUTH %s", m->o->password);
        if (redis_check(m, rep, "AUTH")) return -1;
        freeReplyObject(rep);
    }
    rep = redisCommand(m->rc, "SELECT %u", m->o->database);
    if (redis_check(m, rep, "SELECT")) return -1;
    freeReplyObject(rep);
    return 0;
}

/* Refuses a prefix that holds any key: nodes may have used it (channels'
 * offsets, node leases), and their numbering would collide with what is
 * carried. */
static int prefix_empty(struct mig *m)
{
    char pat[2 * 64 + 2], cursor[32] = "0";
    size_t n = 0;

    for (const char *p = m->o->prefix; *p; p++) {
        if (strchr("*?[]\\", *p)) pat[n++] = '\\';
        pat[n++] = *p;
    }
    pat[n++] = '*';
    pat[n] = '\0';
    do {
        redisReply *rep = redisCommand(m->rc, "SCAN %s MATCH %s COUNT 1000", cursor, pat);
        if (redis_check(m, rep, "SCAN")) return -1;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(rep);
            return fail(m, "Redis: SCAN: unexpected reply");
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        if (rep->element[1]->elements) {
            redisReply *k = rep->element[1]->element[0];
            fail(m, "prefix \"%s\" of Redis database %u is in use (it holds keys, e.g. \"%.*s\"): migrate writes "
                 "only into a prefix no node has used; choose another [engine] prefix, or empty this one",
                 m->o->prefix, m->o->database, (int)k->len, k->str);
            freeReplyObject(rep);
            return MIGRATE_E_IN_USE;
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0"));
    return 0;
}

/* Reads the replies of the commands sent so far. Return: 0, or -1 naming
 * the first error. */
static int drain(struct mig *m)
{
    size_t errors = 0;

    while (m->pending) {
        redisReply *rep = NULL;
        if (redisGetReply(m->rc, (void **)&rep) != REDIS_OK || !rep)
            return fail(m, "Redis: %s", m->rc->errstr[0] ? m->rc->errstr : "connection lost");
        if (rep->type == REDIS_REPLY_ERROR && !errors++)
            snprintf(m->first_error, sizeof m->first_error, "%.*s", (int)rep->len, rep->str);
        freeReplyObject(rep);
        m->pending--;
    }
    m->pending_bytes = 0;
    if (errors)
        return fail(m, "Redis refused %zu write%s (%s)", errors, errors == 1 ? "" : "s", m->first_error);
    return 0;
}

static int cmd(struct mig *m, int argc, const char **argv, const size_t *lens)
{
    for (int i = 0; i < argc; i++) m->pending_bytes += lens[i];
    if (redisAppendCommandArgv(m->rc, argc, argv, lens) != REDIS_OK) return fail(m, "Redis: out of memory");
    m->pending++;
    m->sent = 1;
    if (m->pending >= BATCH_CMDS || m->pending_bytes >= BATCH_BYTES) return drain(m);
    return 0;
}

static void progress(struct mig *m)
{
    int64_t t = now_ms(CLOCK_MONOTONIC);
    if (!m->o->progress || t - m->progress_ms < PROGRESS_MS) return;
    m->progress_ms = t;
    fprintf(m->o->progress, "migrate: %llu channels, %llu publications, %.1f MB so far\n",
            (unsigned long long)m->r->channels, (unsigned long long)m->r->publications, m->r->bytes / 1e6);
    fflush(m->o->progress);
}

/* @buf = P @tag @chan [@sep @sfx]: a key of the engine's layout. Return: its length. */
static size_t mkey(const struct mig *m, char *buf, const char *tag, const char *chan, size_t clen, const char *sep,
                   const char *sfx, size_t slen)
{
    size_t n = strlen(m->o->prefix), tl = strlen(tag);
    memcpy(buf, m->o->prefix, n);
    memcpy(buf + n, tag, tl);
    n += tl;
    memcpy(buf + n, chan, clen);
    n += clen;
    if (sep) {
        buf[n++] = *sep;
        memcpy(buf + n, sfx, slen);
        n += slen;
    }
    return n;
}

/* ---- pass 2: the webhooks' queues ---- */

/* One queued event (@arg points to 0) or dead letter (1), in
 * engine_webhooks.c's keys: the id in the sorted set, the value
 * "<kind><ts>:<offset>:<#chan>:<chan><body>", and "<attempts>:<first>:<last>"
 * (a dead letter's with ":<why>" after it, always there). */
static int put_wh(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    int dead = *(int *)arg;
    hist_ob_row_t r;
    char q[KEY_MAX], e[KEY_MAX], a[KEY_MAX], id[24], head[80], att[80], *val, *aval = NULL;
    size_t hl, hn, vl, an = 0;
    int rc;

    if (hist_int_ob_row(k->mv_data, k->mv_size, v->mv_data, v->mv_size, dead, &r) || (hl = strlen(r.hook)) > 64)
        return fail(m, "a malformed webhook %s row", dead ? "dead letter" : "queue");
    snprintf(id, sizeof id, "%llu", (unsigned long long)r.id);
    hn = (size_t)snprintf(head, sizeof head, "%c%lld:%llu:%zu:", r.kind, (long long)r.ts,
                          (unsigned long long)r.offset, r.chanlen);
    vl = hn + r.chanlen + r.len;
    if (!(val = malloc(vl))) return fail(m, "out of memory");
    memcpy(val, head, hn);
    memcpy(val + hn, r.chan, r.chanlen);
    memcpy(val + hn + r.chanlen, r.body, r.len);
    an = (size_t)snprintf(att, sizeof att, "%u:%lld:%lld", r.attempts, (long long)r.first_ms, (long long)r.last_ms);
    if (dead) {
        if (!(aval = malloc(an + 1 + r.whylen))) { free(val); return fail(m, "out of memory"); }
        memcpy(aval, att, an);
        aval[an] = ':';
        memcpy(aval + an + 1, r.why, r.whylen);
        an += 1 + r.whylen;
    }
    {
        const char *za[4] = { "ZADD", q, id, id };
        size_t zl[4] = { 4, mkey(m, q, dead ? "wdq:" : "wq:", r.hook, hl, NULL, NULL, 0), strlen(id), strlen(id) };
        const char *ha[4] = { "HSET", e, id, val };
        size_t hl2[4] = { 4, mkey(m, e, dead ? "wd:" : "we:", r.hook, hl, NULL, NULL, 0), strlen(id), vl };
        const char *aa[4] = { "HSET", a, id, dead ? aval : att };
        size_t al[4] = { 4, mkey(m, a, dead ? "wdr:" : "wa:", r.hook, hl, NULL, NULL, 0), strlen(id), an };
        rc = cmd(m, 4, za, zl) || cmd(m, 4, ha, hl2) || ((dead || r.attempts) && cmd(m, 4, aa, al));
    }
    free(val);
    free(aval);
    if (rc) return -1;
    if (dead) m->r->wh_dead++;
    else m->r->wh_queued++;
    return 0;
}

/* ---- pass 2: one channel ---- */

struct chan {
    uint64_t id;
    hist_chan_t c;
    const char *name;
    size_t len;
    struct hist_policy pol;
    char key[KEY_MAX];            /* the channel's key being built */
    size_t keylen;
    int64_t cutoff;               /* entries before this ts are past history_ttl (0: no age limit) */
    int front;                    /* no entry written yet: the age cut still applies */
    uint64_t first_kept;
    int64_t newest_ts;            /* of the entries written */
    uint64_t written;
    uint64_t sfloor;              /* the state's version floor (aux row under the bare id) */
};

/* @c->key = P @tag C. */
static void chan_key(struct mig *m, struct chan *c, const char *tag)
{
    c->keylen = mkey(m, c->key, tag, c->name, c->len, NULL, NULL, 0);
}

/* RPUSH a seat waitlist (user ids, oldest first), a thousand at a time as
 * the seat script writes it. */
static int put_waitlist(struct mig *m, const char *key, size_t klen, const json_t *q)
{
    const char *a[1002];
    size_t l[1002], n = json_array_size(q);

    if (!json_is_array(q)) return -1;
    for (size_t i = 0; i < n; i += 1000) {
        int argc = 2;
        a[0] = "RPUSH"; l[0] = 5;
        a[1] = key; l[1] = klen;
        for (size_t j = i; j < n && j < i + 1000; j++, argc++) {
            const json_t *u = json_array_get(q, j);
            if (!json_is_string(u)) return -1;
            a[argc] = json_string_value(u);
            l[argc] = json_string_length(u);
        }
        if (cmd(m, argc, a, l)) return -2;
    }
    return 0;
}

/* One row beside channel @arg's state: the version floor, or an adapter's
 * row in its engine file's keys; rows no adapter owns were counted. */
static int put_aux(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    struct chan *c = arg;
    const char *key = (const char *)k->mv_data + 8, *fkey;
    size_t klen = k->mv_size - 8, skip, fl, n;
    enum aux_kind kind = aux_kind(key, klen, &skip);
    char reason[PROTO_REASON_MAX], rk[KEY_MAX + HIST_KEY_MAX], num[24], *js = NULL;
    json_t *j = NULL;
    int rc = 0;

    fkey = key + skip;
    fl = klen - skip;
    if (kind == AUX_FLOOR) {
        if (v->mv_size == 8) c->sfloor = get_be64(v->mv_data);
        return 0;
    }
    if (kind == AUX_OTHER) return 0;
    if (kind == AUX_COMMENT) {          /* MessagePack on both sides */
        const char *a[4] = { "HSET", rk, key, v->mv_data };
        size_t l[4] = { 4, mkey(m, rk, "ta:", c->name, c->len, NULL, NULL, 0), klen, v->mv_size };
        if (cmd(m, 4, a, l)) return -1;
        m->r->ticket_rows++;
        return 0;
    }
    if (mpack_decode(v->mv_data, v->mv_size, &j, reason))
        return fail(m, "channel %.*s: row %.*s: %s", (int)c->len, c->name, (int)klen, key, reason);
    switch (kind) {
    case AUX_WAIT:
        n = mkey(m, rk, "sw:", c->name, c->len, ":", fkey, fl);
        if ((rc = put_waitlist(m, rk, n, j)) == -1)
            rc = fail(m, "channel %.*s: waitlist %.*s is not a list of user ids", (int)c->len, c->name, (int)fl, fkey);
        if (!rc) m->r->waitlists++;
        break;
    case AUX_ORDER:                     /* JSON, as the commerce script's cjson reads it */
        if (!(js = json_dumps(j, JSON_COMPACT))) { rc = fail(m, "out of memory"); break; }
        {
            const char *a[4] = { "HSET", rk, fkey, js };
            size_t l[4] = { 4, mkey(m, rk, "so:", c->name, c->len, NULL, NULL, 0), fl, strlen(js) };
            rc = cmd(m, 4, a, l);
        }
        if (!rc) m->r->orders++;
        break;
    case AUX_PAYEVENT: {
        /* Read only within the window after its "at"; the script keeps it
         * that long and a second more. One past it is never read again. */
        int64_t left = json_integer_value(json_object_get(j, "at")) + m->o->pay_window_ms + 1000 - m->now_ms;
        if (left <= 0) break;
        if (!(js = json_dumps(j, JSON_COMPACT))) { rc = fail(m, "out of memory"); break; }
        snprintf(num, sizeof num, "%lld", (long long)left);
        {
            const char *a[5] = { "SET", rk, js, "PX", num };
            size_t l[5] = { 3, mkey(m, rk, "se:", c->name, c->len, ":", fkey, fl), strlen(js), 2, strlen(num) };
            rc = cmd(m, 5, a, l);
        }
        if (!rc) m->r->pay_events++;
        break;
    }
    case AUX_SEQ:                       /* a number the tickets script reads with tonumber() */
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(j));
        {
            const char *a[4] = { "HSET", rk, "seq", num };
            size_t l[4] = { 4, mkey(m, rk, "ta:", c->name, c->len, NULL, NULL, 0), 3, strlen(num) };
            rc = cmd(m, 4, a, l);
        }
        if (!rc) m->r->ticket_rows++;
        break;
    default:
        break;
    }
    free(js);
    json_decref(j);
    return rc ? -1 : 0;
}

/* A seat hold's expiry: (due, channel id, "seat:<id>") -> channel name
 * becomes the seat in P sx:C and, the timers coming in due order, the
 * channel's first due time in P sxmaps (NX: the earliest stays). */
static int put_timer(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    const char *key = (const char *)k->mv_data + 16;
    char rk[KEY_MAX], sk[KEY_MAX], at[24];
    size_t klen = k->mv_size - 16;

    (void)arg;
    if (k->mv_size <= 16 + 5 || memcmp(key, "seat:", 5)) return 0;
    if (v->mv_size < 1 || v->mv_size > 255) return fail(m, "a seat timer without its channel");
    snprintf(at, sizeof at, "%lld", (long long)get_be64(k->mv_data));
    {
        const char *a[4] = { "ZADD", rk, at, key + 5 };
        size_t l[4] = { 4, mkey(m, rk, "sx:", v->mv_data, v->mv_size, NULL, NULL, 0), strlen(at), klen - 5 };
        if (cmd(m, 4, a, l)) return -1;
    }
    {
        const char *a[5] = { "ZADD", sk, "NX", at, v->mv_data };
        size_t l[5] = { 4, mkey(m, sk, "sxmaps", "", 0, NULL, NULL, 0), 2, strlen(at), v->mv_size };
        if (cmd(m, 5, a, l)) return -1;
    }
    m->r->seat_holds++;
    return 0;
}

static int put_entry(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    struct chan *c = arg;
    uint64_t off = get_be64((const unsigned char *)k->mv_data + 8);
    char id[32], tsb[24];
    int64_t ts;

    if (k->mv_size != 16 || v->mv_size < 8) return fail(m, "channel %.*s: a malformed log entry", (int)c->len, c->name);
    ts = (int64_t)get_be64(v->mv_data);
    /* The publish script trims by count at each append (XADD MAXLEN) and
     * by age from the oldest entry until one is young enough. */
    if (off < c->first_kept || (c->front && c->cutoff && ts < c->cutoff)) {
        m->r->trimmed++;
        return 0;
    }
    c->front = 0;
    snprintf(id, sizeof id, "%llu-1", (unsigned long long)off);
    snprintf(tsb, sizeof tsb, "%lld", (long long)ts);
    {
        const char *a[7] = { "XADD", c->key, id, "r", (const char *)v->mv_data + 8, "t", tsb };
        size_t l[7] = { 4, c->keylen, strlen(id), 1, v->mv_size - 8, 1, strlen(tsb) };
        if (cmd(m, 7, a, l)) return -1;
    }
    c->newest_ts = ts;
    c->written++;
    m->r->publications++;
    m->r->bytes += v->mv_size - 8;
    progress(m);
    return 0;
}

static int put_state(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    struct chan *c = arg;
    const char *key = (const char *)k->mv_data + 8;
    size_t klen = k->mv_size - 8, vl;
    char *val, zkey[KEY_MAX];
    int n;

    if (klen < 1 || v->mv_size < 9) return fail(m, "channel %.*s: a malformed state row", (int)c->len, c->name);
    if (!(val = malloc(24 + v->mv_size))) return fail(m, "out of memory");
    n = snprintf(val, 24, "%llu:", (unsigned long long)get_be64(v->mv_data));
    memcpy(val + n, (const char *)v->mv_data + 8, v->mv_size - 8);
    vl = (size_t)n + v->mv_size - 8;
    {
        const char *a[4] = { "HSET", c->key, key, val };
        size_t l[4] = { 4, c->keylen, klen, vl };
        n = cmd(m, 4, a, l);
    }
    free(val);
    if (n) return -1;
    /* P sk:C beside P st:C: the same name with "sk:" for "st:". */
    memcpy(zkey, c->key, c->keylen);
    zkey[strlen(m->o->prefix) + 1] = 'k';
    {
        const char *a[4] = { "ZADD", zkey, "0", key };
        size_t l[4] = { 4, c->keylen, 1, klen };
        if (cmd(m, 4, a, l)) return -1;
    }
    m->r->state_keys++;
    m->r->bytes += v->mv_size - 8;
    return 0;
}

static int put_idem(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    static const char hex[] = "0123456789abcdef";
    struct chan *c = arg;
    int64_t left = idem_left(m, v);
    char key[KEY_MAX], val[2 * HIST_IDEM_DIGEST + 24], px[24];
    size_t pl = strlen(m->o->prefix), klen = k->mv_size - 8, n;
    const unsigned char *d = (const unsigned char *)v->mv_data + 16;

    if (left <= 0 || v->mv_size != 16 + HIST_IDEM_DIGEST || klen < 1 || klen > HIST_IDEM_MAX) return 0;
    memcpy(key, m->o->prefix, pl);
    memcpy(key + pl, "i:", 2);
    memcpy(key + pl + 2, c->name, c->len);
    key[pl + 2 + c->len] = ' ';
    memcpy(key + pl + 3 + c->len, (const char *)k->mv_data + 8, klen);
    for (int i = 0; i < HIST_IDEM_DIGEST; i++) {
        val[2 * i] = hex[d[i] >> 4];
        val[2 * i + 1] = hex[d[i] & 15];
    }
    n = 2 * HIST_IDEM_DIGEST;
    n += (size_t)snprintf(val + n, sizeof val - n, ":%llu",
                          (unsigned long long)get_be64((const unsigned char *)v->mv_data + 8));
    snprintf(px, sizeof px, "%lld", (long long)left);
    {
        const char *a[5] = { "SET", key, val, "PX", px };
        size_t l[5] = { 3, pl + 3 + c->len + klen, n, 2, strlen(px) };
        if (cmd(m, 5, a, l)) return -1;
    }
    m->r->idem_keys++;
    return 0;
}

static int put_chan(struct mig *m, const MDB_val *k, const MDB_val *v, void *arg)
{
    struct chan c;
    unsigned char idb[8];
    uint64_t keys_before = m->r->state_keys;
    char offb[24], ttlb[24], floorb[24];
    int rc;

    (void)arg;
    memset(&c, 0, sizeof c);
    if (k->mv_size < 1 || k->mv_size > 255 || hist_int_chan_decode(v->mv_data, v->mv_size, &c.id, &c.c))
        return fail(m, "channel %.*s: a channel record this herald does not read", (int)k->mv_size,
                    (const char *)k->mv_data);
    c.name = k->mv_data;
    c.len = k->mv_size;
    m->o->policy(m->o->policy_ctx, c.name, c.len, &c.pol);
    put_be64(idb, c.id);

    /* The publications, as the stream the publish script would have left. */
    if (c.pol.keep) {
        c.first_kept = c.c.last_offset >= c.pol.keep ? c.c.last_offset - c.pol.keep + 1 : 0;
        c.cutoff = c.pol.ttl_ms ? m->now_ms - (int64_t)c.pol.ttl_ms : 0;
    } else {
        c.first_kept = UINT64_MAX;
    }
    c.front = 1;
    chan_key(m, &c, "s:");
    if ((rc = each(m, m->log, idb, 8, put_entry, &c))) return rc;
    if (c.written && c.pol.ttl_ms) {
        snprintf(ttlb, sizeof ttlb, "%lld", (long long)(c.newest_ts + (int64_t)c.pol.ttl_ms));
        const char *a[3] = { "PEXPIREAT", c.key, ttlb };
        size_t l[3] = { 9, c.keylen, strlen(ttlb) };
        if (cmd(m, 3, a, l)) return -1;
    }

    /* The state, and the version floor deletes raised. */
    chan_key(m, &c, "st:");
    if ((rc = each(m, m->state, idb, 8, put_state, &c))) return rc;
    if (m->r->state_keys > keys_before) m->r->state_channels++;
    if ((rc = each(m, m->aux, idb, 8, put_aux, &c))) return rc;

    if ((rc = each(m, m->idem, idb, 8, put_idem, &c))) return rc;

    /* Last, the offset and epoch nodes number from. */
    chan_key(m, &c, "m:");
    snprintf(offb, sizeof offb, "%llu", (unsigned long long)c.c.last_offset);
    snprintf(floorb, sizeof floorb, "%llu", (unsigned long long)c.sfloor);
    {
        const char *a[8] = { "HSET", c.key, "offset", offb, "epoch", c.c.epoch, "sfloor", floorb };
        size_t l[8] = { 4, c.keylen, 6, strlen(offb), 5, strlen(c.c.epoch), 6, strlen(floorb) };
        if (cmd(m, c.sfloor ? 8 : 6, a, l)) return -1;
    }
    m->r->channels++;
    progress(m);
    return 0;
}

int migrate_run(const migrate_opts_t *o, migrate_report_t *r, char *err, size_t errlen)
{
    struct mig m = { .o = o, .r = r, .err = err, .errlen = errlen };
    datadir_t dd = { NULL, -1 };
    int rc, queued = 0, dead = 1;

    memset(r, 0, sizeof *r);
    if (strlen(o->prefix) > 64) return snprintf(err, errlen, "[engine] prefix: longer than 64 bytes"), -1;
    m.now_ms = now_ms(CLOCK_REALTIME);
    if ((rc = store_open(&m, &dd))) goto out;
    if ((rc = count_left(&m)) < 0) goto out;
    if (rc && !o->skip_unsupported) {
        snprintf(err, errlen, "the store holds data migrate does not carry (listed above); nothing was written. "
                 "Run again with --skip-unsupported to migrate the rest and leave it behind");
        rc = MIGRATE_E_UNSUPPORTED;
        goto out;
    }
    if ((rc = redis_open(&m)) || (rc = prefix_empty(&m))) goto out;
    m.started_ms = m.progress_ms = now_ms(CLOCK_MONOTONIC);
    if ((rc = each(&m, m.chans, NULL, 0, put_chan, NULL)) || (rc = each(&m, m.timers, NULL, 0, put_timer, NULL)) ||
        (rc = each(&m, m.wh_out, NULL, 0, put_wh, &queued)) || (rc = each(&m, m.wh_dead, NULL, 0, put_wh, &dead)) ||
        (rc = drain(&m))) {
        size_t l = strlen(err);
        if (m.sent)
            snprintf(err + l, errlen - l, "; the prefix \"%s\" is now partly written: delete its keys (or choose "
                     "another prefix) before running migrate again", o->prefix);
        rc = -1;
        goto out;
    }
    r->seconds = (now_ms(CLOCK_MONOTONIC) - m.started_ms) / 1000.0;
out:
    if (m.rc) redisFree(m.rc);
    store_close(&m);
    datadir_close(&dd);
    return rc;
}
