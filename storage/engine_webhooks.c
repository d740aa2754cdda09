/* storage/engine_webhooks.c - see engine_webhooks.h. The scripts go by
 * EVAL (Redis keeps a script it ran in its cache, so a restart or a SCRIPT
 * FLUSH needs no second path); a webhook posts at most a few batches a
 * second, so their text on the wire costs nothing that matters. */
#include "engine_webhooks.h"
#include "log.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

/* At most one "unreachable" line per webhook per this long. */
#define DOWN_LOG_MS 10000
/* The most events one read or pick brings back from Redis. */
#define READ_MAX 1000
/* A dead-letter retry or delete of "all" moves at most this many per call (as outbox.c). */
#define BULK_MAX 100000
/* The most arguments of a script: a batch's ids (at most 100) and a few more. */
#define ARGS_MAX 110

enum { K_LEASE, K_Q, K_EV, K_ATT, K_DQ, K_DEV, K_DWHY, K_HELD, K_RETRY, NKEYS };
static const char *const key_names[NKEYS] = { "wl:", "wq:", "we:", "wa:", "wdq:", "wd:", "wdr:", "wh:", "wr:" };

struct whq {
    redisContext *c;
    char host[1024];
    int port;                     /* 0: unix socket at host */
    char *password;
    unsigned database;
    unsigned connect_timeout_ms, command_timeout_ms;
    unsigned lease_ms;
    uint64_t renewed_ms;          /* the last renewal that held (monotonic ms) */
    int held;                     /* the last lease call found it ours */
    uint64_t down_logged_ms;
    char hook[65];
    char token[33];               /* this thread's lease value */
    char key[NKEYS][64 + 5 + 65];
};

/* ARGV[1] the token, ARGV[2] the TTL, ARGV[3] "1" to take the retry flag.
 * Returns {1 held | 2 taken now | 0 another's, retry asked}. */
static const char lease_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "local got = 0\n"
    "if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); got = 1\n"
    "elseif not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); got = 2 end\n"
    "local retry = 0\n"
    "if got > 0 and ARGV[3] == '1' then retry = redis.call('DEL', KEYS[2]) end\n"
    "return {got, retry}\n";

/* Gives the lease back when it is ours. */
static const char unlease_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* KEYS: the id set, the event hash, the attempts hash. ARGV: after, count.
 * Returns id, event, attempts for each id above after, in order. */
static const char range_lua[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  out[#out + 1] = id\n"
    "  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''\n"
    "  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''\n"
    "end\n"
    "return out\n";

/* The deliverer's writes open with this check of the lease (KEYS[1], ARGV[1]). */
#define FENCE "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end\n"

/* KEYS: lease, queue, attempts. ARGV: token, now, ids. Returns each id's attempts now (0: gone). */
static const char tried_lua[] =
    FENCE
    "local out = {}\n"
    "for i = 3, #ARGV do\n"
    "  local id, a, f = ARGV[i], 0, ARGV[2]\n"
    "  if redis.call('ZSCORE', KEYS[2], id) then\n"
    "    local v = redis.call('HGET', KEYS[3], id)\n"
    "    if v then\n"
    "      local x, y = string.match(v, '^(%d+):(%d+):')\n"
    "      if x then a = tonumber(x); f = y end\n"
    "    end\n"
    "    a = a + 1\n"
    "    redis.call('HSET', KEYS[3], id, a .. ':' .. f .. ':' .. ARGV[2])\n"
    "  end\n"
    "  out[#out + 1] = a\n"
    "end\n"
    "return out\n";

/* KEYS: lease, queue, events, attempts. ARGV: token, ids. Returns how many went. */
static const char ack_lua[] =
    FENCE
    "local n = 0\n"
    "for i = 2, #ARGV do\n"
    "  n = n + redis.call('ZREM', KEYS[2], ARGV[i])\n"
    "  redis.call('HDEL', KEYS[3], ARGV[i])\n"
    "  redis.call('HDEL', KEYS[4], ARGV[i])\n"
    "end\n"
    "return n\n";

/* KEYS: lease, queue, events, attempts, dead set, dead events, dead why.
 * ARGV: token, why, ids. Returns how many moved. */
static const char bury_lua[] =
    FENCE
    "local n = 0\n"
    "for i = 3, #ARGV do\n"
    "  local id = ARGV[i]\n"
    "  local v = redis.call('HGET', KEYS[3], id)\n"
    "  if redis.call('ZSCORE', KEYS[2], id) and v then\n"
    "    local a = redis.call('HGET', KEYS[4], id) or '0:0:0'\n"
    "    redis.call('ZADD', KEYS[5], id, id)\n"
    "    redis.call('HSET', KEYS[6], id, v)\n"
    "    redis.call('HSET', KEYS[7], id, a .. ':' .. ARGV[2])\n"
    "    redis.call('ZREM', KEYS[2], id)\n"
    "    redis.call('HDEL', KEYS[3], id)\n"
    "    redis.call('HDEL', KEYS[4], id)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* KEYS: queue, events, dead set, dead events, dead why, held, retry flag.
 * ARGV: id (0: all, up to the bulk limit), "1" to revive (else delete),
 * the bulk limit. A revived event goes back under its id with its
 * attempts afresh, and the deliverer is told to try every channel now.
 * Returns how many. */
static const char dead_lua[] =
    "local ids\n"
    "if ARGV[1] == '0' then ids = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1)\n"
    "elseif redis.call('ZSCORE', KEYS[3], ARGV[1]) then ids = {ARGV[1]}\n"
    "else ids = {} end\n"
    "for _, id in ipairs(ids) do\n"
    "  if ARGV[2] == '1' then\n"
    "    local v = redis.call('HGET', KEYS[4], id)\n"
    "    if v then\n"
    "      redis.call('ZADD', KEYS[1], id, id)\n"
    "      redis.call('HSET', KEYS[2], id, v)\n"
    "    end\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[3], id)\n"
    "  redis.call('HDEL', KEYS[4], id)\n"
    "  redis.call('HDEL', KEYS[5], id)\n"
    "end\n"
    "if ARGV[2] == '1' and #ids > 0 then\n"
    "  redis.call('DEL', KEYS[6])\n"
    "  redis.call('SET', KEYS[7], '1')\n"
    "end\n"
    "return #ids\n";

/* KEYS: id set, event hash. Returns {count, the oldest event or ''}. */
static const char depth_lua[] =
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "local f = redis.call('ZRANGE', KEYS[1], 0, 0)\n"
    "local v = ''\n"
    "if #f > 0 then v = redis.call('HGET', KEYS[2], f[1]) or '' end\n"
    "return {n, v}\n";

/* KEYS: lease, held. ARGV: token, channel, value ("": forget it). */
static const char held_lua[] =
    FENCE
    "if ARGV[3] == '' then return redis.call('HDEL', KEYS[2], ARGV[2]) end\n"
    "return redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])\n";

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000u; }

static struct timeval tv_of(unsigned ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

static void drop_conn(whq_t *q)
{
    if (q->c) redisFree(q->c);
    q->c = NULL;
    q->held = 0;
}

/* Logs that Redis cannot be reached, at most every DOWN_LOG_MS. */
static void log_down(whq_t *q, const char *why)
{
    uint64_t now = mono_ms();

    if (q->down_logged_ms && now - q->down_logged_ms < DOWN_LOG_MS) return;
    q->down_logged_ms = now;
    hlog(LOG_WARN, "webhook", "%s: redis unreachable (%s): delivery pauses until it is back", q->hook, why);
}

/* A reply of a handshake command that must succeed. */
static int handshake_ok(whq_t *q, redisReply *r, const char *what)
{
    int ok = r && r->type != REDIS_REPLY_ERROR;

    if (!ok) {
        char why[200];
        snprintf(why, sizeof why, "%s failed: %s", what, r ? r->str : q->c->errstr);
        log_down(q, why);
    }
    if (r) freeReplyObject(r);
    return ok;
}

static int ensure_conn(whq_t *q)
{
    struct timeval ct = tv_of(q->connect_timeout_ms), cmd = tv_of(q->command_timeout_ms);

    if (q->c) return 0;
    q->c = q->port ? redisConnectWithTimeout(q->host, q->port, ct) : redisConnectUnixWithTimeout(q->host, ct);
    if (!q->c || q->c->err) {
        log_down(q, q->c ? q->c->errstr : "out of memory");
        drop_conn(q);
        return -EIO;
    }
    redisSetTimeout(q->c, cmd);
    if (*q->password && !handshake_ok(q, redisCommand(q->c, "AUTH %s", q->password), "AUTH")) goto fail;
    if (q->database && !handshake_ok(q, redisCommand(q->c, "SELECT %u", q->database), "SELECT")) goto fail;
    if (q->down_logged_ms) hlog(LOG_INFO, "webhook", "%s: redis reachable again", q->hook);
    q->down_logged_ms = 0;
    return 0;
fail:
    drop_conn(q);
    return -EIO;
}

/* EVAL of @script with @nkeys keys (indexes into q->key) and @nargs
 * arguments. Return: 0 and *@out (the caller frees it); -EIO (the
 * connection is dropped, or the script failed: logged). */
static int eval(whq_t *q, const char *script, int nkeys, const int *keys, int nargs, const char *const *args,
                const size_t *lens, redisReply **out)
{
    const char *argv[3 + NKEYS + ARGS_MAX];
    size_t alen[3 + NKEYS + ARGS_MAX];
    char nk[8];
    int argc = 0;
    redisReply *r;

    *out = NULL;
    if (nkeys > NKEYS || nargs > ARGS_MAX) return -EINVAL;
    if (ensure_conn(q)) return -EIO;
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[argc] = "EVAL"; alen[argc++] = 4;
    argv[argc] = script; alen[argc++] = strlen(script);
    argv[argc] = nk; alen[argc++] = strlen(nk);
    for (int i = 0; i < nkeys; i++) { argv[argc] = q->key[keys[i]]; alen[argc++] = strlen(q->key[keys[i]]); }
    for (int i = 0; i < nargs; i++) { argv[argc] = args[i]; alen[argc++] = lens ? lens[i] : strlen(args[i]); }
    r = redisCommandArgv(q->c, argc, argv, alen);
    if (!r) {
        log_down(q, q->c->errstr[0] ? q->c->errstr : "no answer");
        drop_conn(q);
        return -EIO;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        hlog(LOG_ERROR, "webhook", "%s: redis script failed: %s", q->hook, r->str);
        freeReplyObject(r);
        return -EIO;
    }
    *out = r;
    return 0;
}

static uint64_t num_of(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (r->type == REDIS_REPLY_STRING) return strtoull(r->str, NULL, 10);
    return 0;
}

int whq_new(const struct engine_conf *conf, const char *hook, unsigned lease_ms, whq_t **out)
{
    whq_t *q;
    unsigned char rnd[16];
    static const char hex[] = "0123456789abcdef";

    if (strlen(hook) > 64 || strlen(conf->prefix) > 64) return -EINVAL;
    if (!(q = calloc(1, sizeof *q))) return -ENOMEM;
    if (!strncmp(conf->address, "unix:", 5)) {
        snprintf(q->host, sizeof q->host, "%s", conf->address + 5);
    } else {
        const char *colon = strrchr(conf->address, ':'), *h = conf->address;
        size_t hl;
        if (!colon) goto bad;
        hl = (size_t)(colon - h);
        if (*h == '[') { h++; hl -= 2; }
        if (!hl || hl >= sizeof q->host) goto bad;
        memcpy(q->host, h, hl);
        q->port = atoi(colon + 1);
        if (q->port <= 0 || q->port > 65535) goto bad;
    }
    if (!(q->password = strdup(conf->password ? conf->password : ""))) {
        free(q);
        return -ENOMEM;
    }
    q->database = conf->database;
    q->connect_timeout_ms = conf->connect_timeout_ms ? conf->connect_timeout_ms : 1000;
    q->command_timeout_ms = conf->command_timeout_ms ? conf->command_timeout_ms : 1000;
    q->lease_ms = lease_ms ? lease_ms : 5000;
    snprintf(q->hook, sizeof q->hook, "%s", hook);
    for (int k = 0; k < NKEYS; k++) snprintf(q->key[k], sizeof q->key[k], "%s%s%s", conf->prefix, key_names[k], hook);
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL)) {
        uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)q;
        memcpy(rnd, &t, sizeof t);
        memcpy(rnd + 8, &t, sizeof t);
    }
    for (size_t i = 0; i < sizeof rnd; i++) {
        q->token[2 * i] = hex[rnd[i] >> 4];
        q->token[2 * i + 1] = hex[rnd[i] & 15];
    }
    *out = q;
    return 0;
bad:
    free(q);
    return -EINVAL;
}

void whq_close(whq_t *q)
{
    if (q->c && q->held) {
        /* Given back, so another node takes over at once, not after the TTL. */
        static const int keys[] = { K_LEASE };
        const char *args[] = { q->token };
        redisReply *r;
        if (!eval(q, unlease_lua, 1, keys, 1, args, NULL, &r)) freeReplyObject(r);
    }
    drop_conn(q);
}

void whq_free(whq_t *q)
{
    if (!q) return;
    whq_close(q);
    free(q->password);
    free(q);
}

static int lease(whq_t *q, int take_retry, int *fresh, int *retry)
{
    static const int keys[] = { K_LEASE, K_RETRY };
    char ttl[16];
    const char *args[] = { q->token, ttl, take_retry ? "1" : "0" };
    redisReply *r;
    int rc, got;

    *fresh = *retry = 0;
    snprintf(ttl, sizeof ttl, "%u", q->lease_ms);
    if ((rc = eval(q, lease_lua, 2, keys, 3, args, NULL, &r))) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return -EIO;
    }
    got = (int)num_of(r->element[0]);
    *retry = num_of(r->element[1]) > 0;
    freeReplyObject(r);
    /* Taken now, or held but lost in between (another took it and let it go). */
    *fresh = got == 2 || (got == 1 && !q->held);
    q->held = got > 0;
    if (q->held) q->renewed_ms = mono_ms();
    return q->held;
}

int whq_lease(whq_t *q, int *fresh, int *retry) { return lease(q, 1, fresh, retry); }

int whq_renew(whq_t *q)
{
    int fresh, retry, rc;

    if (!q->held) return 0;
    if (mono_ms() - q->renewed_ms < q->lease_ms / 3) return 1;
    /* A retry asked for meanwhile is left for the next round's whq_lease(). */
    rc = lease(q, 0, &fresh, &retry);
    return rc > 0 ? !fresh : rc;
}

/* A queued value "<kind><ts>:<offset>:<#chan>:<chan><body>" taken apart. */
struct wv {
    int kind;
    int64_t ts;
    uint64_t offset;
    const char *chan, *body;
    size_t chanlen, len;
};

static int parse_value(const char *p, size_t len, struct wv *v)
{
    const char *end = p + len;
    char *q;
    unsigned long long cl;

    if (len < 2 || (p[0] != HIST_OB_PUBLICATION && p[0] != HIST_OB_EVENT)) return -1;
    v->kind = p[0];
    v->ts = strtoll(p + 1, &q, 10);
    if (q >= end || *q != ':') return -1;
    v->offset = strtoull(q + 1, &q, 10);
    if (q >= end || *q != ':') return -1;
    cl = strtoull(q + 1, &q, 10);
    if (q >= end || *q != ':' || cl > (unsigned long long)(end - q - 1)) return -1;
    v->chan = q + 1;
    v->chanlen = (size_t)cl;
    v->body = v->chan + cl;
    v->len = (size_t)(end - v->body);
    return 0;
}

/* "<attempts>:<first>:<last>[:<why>]" into its parts; zeros when empty. */
static const char *parse_att(const char *s, unsigned *att, int64_t *first, int64_t *last)
{
    char *q;

    *att = 0;
    *first = *last = 0;
    if (!*s) return s;
    *att = (unsigned)strtoul(s, &q, 10);
    if (*q == ':') *first = strtoll(q + 1, &q, 10);
    if (*q == ':') *last = strtoll(q + 1, &q, 10);
    return *q == ':' ? q + 1 : q;
}

/* The entries above @after of the queue (@dead 0) or dead letters: at most
 * @count. Return: 0 and *@out (triplets id, value, attempts); -EIO. */
static int range(whq_t *q, int dead, uint64_t after, size_t count, redisReply **out)
{
    int keys[3] = { dead ? K_DQ : K_Q, dead ? K_DEV : K_EV, dead ? K_DWHY : K_ATT };
    char a[24], c[24];
    const char *args[] = { a, c };
    int rc;

    snprintf(a, sizeof a, "%llu", (unsigned long long)after);
    snprintf(c, sizeof c, "%zu", count);
    if ((rc = eval(q, range_lua, 3, keys, 2, args, NULL, out))) return rc;
    if ((*out)->type != REDIS_REPLY_ARRAY || (*out)->elements % 3) {
        freeReplyObject(*out);
        return -EIO;
    }
    return 0;
}

int whq_pick(whq_t *q, uint64_t after, size_t scan_max, size_t max,
             int (*want)(void *ctx, const char *chan, size_t chanlen, unsigned attempts), void *ctx,
             hist_ob_item_t **out, size_t *nout, uint64_t *last_seen)
{
    hist_ob_item_t *items;
    redisReply *r;
    size_t n = 0;
    int rc;

    *out = NULL;
    *nout = 0;
    *last_seen = after;
    if (!max) return 0;
    if (scan_max > READ_MAX) scan_max = READ_MAX;
    if ((rc = range(q, 0, after, scan_max, &r))) return rc;
    if (!(items = calloc(max, sizeof *items))) {
        freeReplyObject(r);
        return -ENOMEM;
    }
    for (size_t i = 0; i + 2 < r->elements && n < max; i += 3) {
        const redisReply *id = r->element[i], *val = r->element[i + 1], *att = r->element[i + 2];
        unsigned attempts;
        int64_t first, last;
        struct wv v;
        int w;
        *last_seen = num_of(id);
        if (val->type != REDIS_REPLY_STRING || parse_value(val->str, val->len, &v)) continue;
        parse_att(att->type == REDIS_REPLY_STRING ? att->str : "", &attempts, &first, &last);
        /* Ordered by the channel the LMDB queue orders it by: its header's
         * (every script names it), else the JSON event's "channel", which
         * only the decoded item knows. An event is decoded only when taken. */
        if (v.chanlen && v.chanlen < sizeof items[n].chan) {
            if ((w = want(ctx, v.chan, v.chanlen, attempts)) < 0) break;
            if (!w) continue;
            hist_ob_item_fill(&items[n++], *last_seen, v.ts, v.kind, v.offset, v.chan, v.chanlen, v.body, v.len,
                              attempts, first, last);
            continue;
        }
        hist_ob_item_fill(&items[n], *last_seen, v.ts, v.kind, v.offset, v.chan, v.chanlen, v.body, v.len,
                          attempts, first, last);
        if ((w = want(ctx, items[n].chan, items[n].chanlen, attempts)) > 0) {
            n++;
            continue;
        }
        json_decref(items[n].event);
        memset(&items[n], 0, sizeof items[n]);
        if (w < 0) break;
    }
    freeReplyObject(r);
    *out = items;
    *nout = n;
    return 0;
}

/* The decimal ids of @ids into @buf (24 bytes each) and @args from @at. */
static void id_args(const uint64_t *ids, size_t n, char (*buf)[24], const char **args, int at)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(buf[i], sizeof buf[i], "%llu", (unsigned long long)ids[i]);
        args[at + (int)i] = buf[i];
    }
}

int whq_tried(whq_t *q, const uint64_t *ids, size_t n, int64_t now_ms, unsigned *attempts)
{
    static const int keys[] = { K_LEASE, K_Q, K_ATT };
    char buf[100][24], now[24];
    const char *args[102];
    redisReply *r;
    int rc;

    if (n > 100) return -EINVAL;
    args[0] = q->token;
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    args[1] = now;
    id_args(ids, n, buf, args, 2);
    if ((rc = eval(q, tried_lua, 3, keys, 2 + (int)n, args, NULL, &r))) return rc;
    if (r->type == REDIS_REPLY_INTEGER) rc = WHQ_E_LOST;
    else if (r->type != REDIS_REPLY_ARRAY || r->elements != n) rc = -EIO;
    else
        for (size_t i = 0; i < n; i++) attempts[i] = (unsigned)num_of(r->element[i]);
    freeReplyObject(r);
    if (rc == WHQ_E_LOST) q->held = 0;
    return rc;
}

/* Runs a fenced script on @ids. Return: 0, WHQ_E_LOST, -EIO. */
static int fenced_ids(whq_t *q, const char *script, const int *keys, int nkeys, const char *extra,
                      const uint64_t *ids, size_t n)
{
    char buf[100][24];
    const char *args[102];
    int at = 1, rc;
    redisReply *r;

    if (n > 100) return -EINVAL;
    args[0] = q->token;
    if (extra) args[at++] = extra;
    id_args(ids, n, buf, args, at);
    if ((rc = eval(q, script, nkeys, keys, at + (int)n, args, NULL, &r))) return rc;
    rc = r->type == REDIS_REPLY_INTEGER && r->integer < 0 ? WHQ_E_LOST : 0;
    freeReplyObject(r);
    if (rc) q->held = 0;
    return rc;
}

int whq_ack(whq_t *q, const uint64_t *ids, size_t n)
{
    static const int keys[] = { K_LEASE, K_Q, K_EV, K_ATT };
    return fenced_ids(q, ack_lua, keys, 4, NULL, ids, n);
}

int whq_bury(whq_t *q, const uint64_t *ids, size_t n, const char *why)
{
    static const int keys[] = { K_LEASE, K_Q, K_EV, K_ATT, K_DQ, K_DEV, K_DWHY };
    char w[251];

    /* As the LMDB store: a reason of at most 250 bytes. */
    snprintf(w, sizeof w, "%s", why);
    return fenced_ids(q, bury_lua, keys, 7, w, ids, n);
}

int whq_read(whq_t *q, int dead, uint64_t after, size_t max, hist_ob_item_t **out, size_t *nout)
{
    hist_ob_item_t *items = NULL;
    redisReply *r;
    size_t n = 0;
    int rc;

    *out = NULL;
    *nout = 0;
    if (max > READ_MAX) max = READ_MAX;
    if (!max) return 0;
    if ((rc = range(q, dead, after, max, &r))) return rc;
    if (!(items = calloc(max, sizeof *items))) {
        freeReplyObject(r);
        return -ENOMEM;
    }
    for (size_t i = 0; i + 2 < r->elements && n < max; i += 3) {
        const redisReply *val = r->element[i + 1], *att = r->element[i + 2];
        unsigned attempts;
        int64_t first, last;
        const char *why;
        struct wv v;
        if (val->type != REDIS_REPLY_STRING || parse_value(val->str, val->len, &v)) continue;
        why = parse_att(att->type == REDIS_REPLY_STRING ? att->str : "", &attempts, &first, &last);
        hist_ob_item_fill(&items[n], num_of(r->element[i]), v.ts, v.kind, v.offset, v.chan, v.chanlen, v.body,
                          v.len, attempts, first, last);
        if (dead) snprintf(items[n].error, sizeof items[n].error, "%s", why);
        n++;
    }
    freeReplyObject(r);
    *out = items;
    *nout = n;
    return 0;
}

static int dead_op(whq_t *q, uint64_t id, int revive)
{
    static const int keys[] = { K_Q, K_EV, K_DQ, K_DEV, K_DWHY, K_HELD, K_RETRY };
    char ids[24], bulk[24];
    const char *args[] = { ids, revive ? "1" : "0", bulk };
    redisReply *r;
    int rc;

    snprintf(ids, sizeof ids, "%llu", (unsigned long long)id);
    snprintf(bulk, sizeof bulk, "%d", BULK_MAX);
    if ((rc = eval(q, dead_lua, 7, keys, 3, args, NULL, &r))) return rc;
    rc = r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -EIO;
    freeReplyObject(r);
    return rc;
}

int whq_revive(whq_t *q, uint64_t id) { return dead_op(q, id, 1); }

int whq_drop(whq_t *q, uint64_t id) { return dead_op(q, id, 0); }

int whq_depth(whq_t *q, int dead, uint64_t *n, int64_t *oldest_ts)
{
    int keys[2] = { dead ? K_DQ : K_Q, dead ? K_DEV : K_EV };
    redisReply *r;
    struct wv v;
    int rc;

    *n = 0;
    *oldest_ts = 0;
    if ((rc = eval(q, depth_lua, 2, keys, 0, NULL, NULL, &r))) return rc;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        *n = num_of(r->element[0]);
        if (r->element[1]->type == REDIS_REPLY_STRING && !parse_value(r->element[1]->str, r->element[1]->len, &v))
            *oldest_ts = v.ts;
    } else {
        rc = -EIO;
    }
    freeReplyObject(r);
    return rc;
}

static int held_set(whq_t *q, const char *chan, size_t len, const char *val)
{
    static const int keys[] = { K_LEASE, K_HELD };
    const char *args[] = { q->token, chan, val };
    size_t lens[] = { strlen(q->token), len, strlen(val) };
    redisReply *r;
    int rc;

    if ((rc = eval(q, held_lua, 2, keys, 3, args, lens, &r))) return rc;
    rc = r->type == REDIS_REPLY_INTEGER && r->integer < 0 ? WHQ_E_LOST : 0;
    freeReplyObject(r);
    if (rc) q->held = 0;
    return rc;
}

int whq_held_put(whq_t *q, const char *chan, size_t len, int64_t next_try_ms, unsigned attempts, int alone)
{
    char val[64];

    snprintf(val, sizeof val, "%lld:%u:%d", (long long)next_try_ms, attempts, alone ? 1 : 0);
    return held_set(q, chan, len, val);
}

int whq_held_del(whq_t *q, const char *chan, size_t len) { return held_set(q, chan, len, ""); }

int whq_held_load(whq_t *q, void (*fn)(void *ctx, const char *chan, size_t len, int64_t next_try_ms,
                                        unsigned attempts, int alone), void *ctx)
{
    static const char all_lua[] = "return redis.call('HGETALL', KEYS[1])\n";
    static const int keys[] = { K_HELD };
    redisReply *r;
    int rc;

    if ((rc = eval(q, all_lua, 1, keys, 0, NULL, NULL, &r))) return rc;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            long long next;
            unsigned att;
            int alone;
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                sscanf(v->str, "%lld:%u:%d", &next, &att, &alone) != 3)
                continue;
            fn(ctx, k->str, k->len, (int64_t)next, att, alone);
        }
    freeReplyObject(r);
    return 0;
}

int whq_held_count(whq_t *q, uint64_t *n)
{
    static const char len_lua[] = "return redis.call('HLEN', KEYS[1])\n";
    static const int keys[] = { K_HELD };
    redisReply *r;
    int rc;

    *n = 0;
    if ((rc = eval(q, len_lua, 1, keys, 0, NULL, NULL, &r))) return rc;
    *n = num_of(r);
    freeReplyObject(r);
    return 0;
}
