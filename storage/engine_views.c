/* storage/engine_views.c - the operator views in the Redis engine
 * (engine.h): a channel's figures across every node, the list of the
 * channels Redis knows, and each node's count of its local subscribers.
 *
 * Owns: the subscriber-count keys and the two read scripts below. Does not
 * own: the connections or the requests' life (engine_redis.c), the other
 * keys it reads (engine_redis.c's m and s, engine_presence.c's pk and
 * nodes), when counts are written (core/cluster_views.c) or how the
 * answers look (app/admin.c).
 * Keys, under the prefix P, for channel C and node N:
 *   P sn:C   hash N -> N's local subscribers of C (absent: none). A node
 *            writes its own field only, after its lease (P nodes,
 *            engine_presence.c) was renewed on the same connection. The
 *            reads count only the nodes whose lease is live; they delete
 *            the fields of nodes that have no lease at all (reaped: dead,
 *            or a former id). A lease that ended but is not reaped yet may
 *            still be renewed by its node, which then writes nothing again:
 *            its fields are skipped, not deleted. A reaped node that was
 *            only stalled learns it at its next beat and takes a new id
 *            (core/cluster_presence.c), under which it writes every count.
 * DESIGN: the reads are scripts so that a channel's offset, epoch, stream
 * length, member count and subscriber sum are one consistent picture, and
 * the lease check uses Redis' clock, as the leases do. The list walks the
 * meta hashes (P m:*, one per channel that was ever published to or
 * subscribed to) with SCAN, a bounded number of rounds per call, so one
 * page never blocks Redis for long; the cursor it hands back names the SCAN
 * position and how many matches of that SCAN batch were already listed. */
#include "engine.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SCAN rounds one list call makes at most, and the COUNT hint of each:
 * about 10,000 keys looked at per call (6-9 ms of Redis with 100,000 keys). */
#define LIST_ROUNDS 10
#define LIST_COUNT 1000
/* The low bits of a list cursor: matches of the SCAN batch already listed. */
#define SKIP_BITS 20

/* The figures of one channel, shared by both scripts: {name, known (the
 * meta hash exists), epoch, last offset, stream entries, stream bytes
 * (Redis' MEMORY USAGE estimate), members, subscribers on live nodes}. */
#define VIEWS_ROW_LUA \
    "local P = ARGV[1]\n" \
    "local t = redis.call('TIME')\n" \
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n" \
    "local lease = {}\n" \
    "local function lease_of(n)\n" \
    "  if lease[n] == nil then lease[n] = tonumber(redis.call('ZSCORE', P .. 'nodes', n) or '-1') end\n" \
    "  return lease[n]\n" \
    "end\n" \
    "local function row(out, ch, hist)\n" \
    "  local mk = P .. 'm:' .. ch\n" \
    "  local m = redis.call('HMGET', mk, 'offset', 'epoch')\n" \
    "  local sk = P .. 'sn:' .. ch\n" \
    "  local h = redis.call('HGETALL', sk)\n" \
    "  local subs = 0\n" \
    "  for i = 1, #h, 2 do\n" \
    "    local l = lease_of(h[i])\n" \
    "    if l > now then subs = subs + tonumber(h[i + 1])\n" \
    "    elseif l < 0 then redis.call('HDEL', sk, h[i]) end\n" \
    "  end\n" \
    "  local len, bytes = 0, 0\n" \
    "  if hist then\n" \
    "    local s = P .. 's:' .. ch\n" \
    "    len = redis.call('XLEN', s)\n" \
    "    if len > 0 then bytes = redis.call('MEMORY', 'USAGE', s) or 0 end\n" \
    "  end\n" \
    "  out[#out + 1] = ch\n" \
    "  out[#out + 1] = redis.call('EXISTS', mk)\n" \
    "  out[#out + 1] = m[2] or ''\n" \
    "  out[#out + 1] = tonumber(m[1] or '0')\n" \
    "  out[#out + 1] = len\n" \
    "  out[#out + 1] = bytes\n" \
    "  out[#out + 1] = redis.call('HLEN', P .. 'pk:' .. ch)\n" \
    "  out[#out + 1] = subs\n" \
    "end\n"
#define ROW_FIELDS 8

/* KEYS: m, s, pk, sn, nodes (named so Redis knows them; the row names them
 * again). ARGV: prefix, channel, "1" to read the stream. Returns one row. */
const char engine_vstat_lua[] =
    VIEWS_ROW_LUA
    "local out = {}\n"
    "row(out, ARGV[2], ARGV[3] == '1')\n"
    "return out\n";

/* ARGV: prefix, the MATCH pattern (P m:<escaped name prefix>*), the SCAN
 * cursor, matches of its batch to skip (listed by the page before), the
 * limit, the COUNT hint, the rounds. Other keys are named inside, as the
 * presence scripts do. Returns {SCAN cursor to go on from, matches of its
 * batch to skip, then a row per channel}: {"0", 0, ...} at the end. */
const char engine_vlist_lua[] =
    VIEWS_ROW_LUA
    "local cur, skip, lim = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local out, n, cut = {'0', 0}, 0, #P + 3\n"
    "for _ = 1, tonumber(ARGV[7]) do\n"
    "  local r = redis.call('SCAN', cur, 'MATCH', ARGV[2], 'COUNT', ARGV[6])\n"
    "  local ks = r[2]\n"
    "  for i = skip + 1, #ks do\n"
    "    if n == lim then\n"
    "      out[1] = cur; out[2] = i - 1\n"
    "      return out\n"
    "    end\n"
    "    if redis.call('TYPE', ks[i]).ok == 'hash' then\n"
    "      row(out, string.sub(ks[i], cut), true)\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "  cur, skip = r[1], 0\n"
    "  if cur == '0' then return out end\n"
    "  if n == lim then break end\n"
    "end\n"
    "out[1] = cur\n"
    "return out\n";

/* Writes "<prefix><kind><chan>" into @buf. Return: its length, or 0 if too long. */
static size_t vkey(const engine_t *e, const char *kind, const char *chan, size_t len, char *buf, size_t buflen)
{
    size_t kl = strlen(kind), n = e->prefixlen + kl + len;

    if (n > buflen) return 0;
    memcpy(buf, e->prefix, e->prefixlen);
    memcpy(buf + e->prefixlen, kind, kl);
    memcpy(buf + e->prefixlen + kl, chan, len);
    return n;
}

#define VKEY_MAX (64 + 3 + 256)

int engine_views_stat(engine_t *e, const char *chan, size_t len, int history, engine_views_cb cb, void *arg)
{
    static const char *const kinds[] = { "m:", "s:", "pk:", "sn:" };
    char k[5][VKEY_MAX];
    const char *argv[11];
    size_t lens[11];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    for (int i = 0; i < 4; i++) {
        if (!(lens[3 + i] = vkey(e, kinds[i], chan, len, k[i], VKEY_MAX))) return -ENAMETOOLONG;
        argv[3 + i] = k[i];
    }
    lens[7] = vkey(e, "nodes", "", 0, k[4], VKEY_MAX);
    argv[7] = k[4];
    argv[8] = e->prefix; lens[8] = e->prefixlen;
    argv[9] = chan; lens[9] = len;
    argv[10] = history ? "1" : "0"; lens[10] = 1;
    if ((rc = engine_eval_send(e, SCRIPT_VSTAT, 5, 11, argv, lens, &q))) return rc;
    q->cb.views = cb;
    q->arg = arg;
    return 0;
}

int engine_views_list(engine_t *e, const char *prefix, uint64_t cursor, unsigned limit, engine_views_cb cb,
                      void *arg)
{
    char pat[2 * (64 + 2 + 256) + 2], nums[5][24];
    const char *argv[10];
    size_t lens[10], n = 0, plen = strlen(prefix);
    req_t *q = NULL;

    if (!engine_up(e)) return -ENOTCONN;
    if (plen > 256) return -ENAMETOOLONG;
    /* MATCH takes a glob: the prefixes' own *?[]\ are escaped. */
    for (int part = 0; part < 3; part++) {
        const char *s = part == 0 ? e->prefix : part == 1 ? "m:" : prefix;
        size_t sl = part == 0 ? e->prefixlen : part == 1 ? 2 : plen;
        for (size_t i = 0; i < sl; i++) {
            if (strchr("*?[]\\", s[i])) pat[n++] = '\\';
            pat[n++] = s[i];
        }
    }
    pat[n++] = '*';
    snprintf(nums[0], sizeof nums[0], "%llu", (unsigned long long)(cursor >> SKIP_BITS));
    snprintf(nums[1], sizeof nums[1], "%llu", (unsigned long long)(cursor & ((1u << SKIP_BITS) - 1)));
    snprintf(nums[2], sizeof nums[2], "%u", limit);
    snprintf(nums[3], sizeof nums[3], "%u", LIST_COUNT);
    snprintf(nums[4], sizeof nums[4], "%u", LIST_ROUNDS);
    argv[3] = e->prefix; lens[3] = e->prefixlen;
    argv[4] = pat; lens[4] = n;
    for (int i = 0; i < 5; i++) { argv[5 + i] = nums[i]; lens[5 + i] = strlen(nums[i]); }
    {
        int rc = engine_eval_send(e, SCRIPT_VLIST, 0, 10, argv, lens, &q);
        if (rc) return rc;
    }
    q->cb.views = cb;
    q->arg = arg;
    return 0;
}

int engine_views_subs(engine_t *e, const char *chan, size_t len, const char *node, uint32_t count)
{
    char key[VKEY_MAX], num[16];
    const char *argv[4];
    size_t lens[4];
    req_t *q;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    if (!(lens[1] = vkey(e, "sn:", chan, len, key, sizeof key))) return -ENAMETOOLONG;
    snprintf(num, sizeof num, "%u", count);
    argv[0] = count ? "HSET" : "HDEL"; lens[0] = 4;
    argv[1] = key;
    argv[2] = node; lens[2] = strlen(node);
    argv[3] = num; lens[3] = strlen(num);
    if (!(q = req_new(e, REQ_VSUBS, count ? 4 : 3, argv, lens))) return -ENOMEM;
    q->cb.done = NULL;
    if ((rc = req_send(q))) free(q);
    return rc;
}

/* Fills @row from the ROW_FIELDS replies at @r. Return: 0, or -1 when they
 * are not what the scripts return. */
static int row_of(const redisReply *const *r, struct engine_chanstat *row)
{
    if (r[0]->type != REDIS_REPLY_STRING || r[2]->type != REDIS_REPLY_STRING) return -1;
    row->name = r[0]->str;
    row->len = r[0]->len;
    row->known = int_of(r[1]) != 0;
    snprintf(row->epoch, sizeof row->epoch, "%.*s", (int)r[2]->len, r[2]->str);
    row->last_offset = int_of(r[3]);
    row->length = int_of(r[4]);
    row->bytes = int_of(r[5]);
    row->members = int_of(r[6]);
    row->subscribers = int_of(r[7]);
    return 0;
}

void engine_finish_views(req_t *q, const redisReply *r)
{
    struct engine_chanstat *rows = NULL;
    size_t n = 0, first;
    uint64_t next = 0;
    int status = 0;

    if (q->script == REQ_VSUBS) {
        /* Nothing waits for a count: a write lost with its connection is
         * written again under the node's next id (core/cluster_views.c). */
        if (r && r->type == REDIS_REPLY_ERROR)
            hlog(LOG_WARN, "engine", "redis refused a subscriber count: %s", r->str);
        return;
    }
    first = q->script == SCRIPT_VLIST ? 2 : 0;
    if (!r) {
        status = status_of_drop(q->e);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements < first || (r->elements - first) % ROW_FIELDS ||
               (q->script == SCRIPT_VSTAT && r->elements != ROW_FIELDS)) {
        hlog(LOG_ERROR, "engine", "redis views script failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        status = -EIO;
    } else {
        n = (r->elements - first) / ROW_FIELDS;
        if (n && !(rows = calloc(n, sizeof *rows))) status = -ENOMEM;
        for (size_t i = 0; !status && i < n; i++)
            if (row_of((const redisReply *const *)r->element + first + i * ROW_FIELDS, &rows[i])) status = -EIO;
        if (!status && first) {
            uint64_t scan = int_of(r->element[0]), skip = int_of(r->element[1]);
            /* A cursor past what the low bits hold cannot be handed on:
             * such a Redis (2^43 buckets) does not exist. */
            next = (scan << SKIP_BITS) | (skip & ((1u << SKIP_BITS) - 1));
        }
        if (status == -EIO) hlog(LOG_ERROR, "engine", "redis views script failed: unexpected reply");
    }
    if (status) n = 0;
    q->cb.views(q->arg, status, rows, n, next);
    free(rows);
}
