/* storage/engine_state.c - state channels in the Redis engine (engine.h):
 * the scripts that apply a request's operations and publish its delta, and
 * the snapshot read.
 *
 * Owns: the state keys and scripts below. Does not own: the connections or
 * the requests' life (engine_redis.c), parsing requests or answering them
 * (app/state.c, core/cluster_state.c).
 * Keys, under the prefix P, for channel C:
 *   P st:C   hash key -> "<version>:<value as MessagePack>";
 *   P sk:C   sorted set of the keys, all at score 0, so ZRANGEBYLEX pages
 *            them in byte order as LMDB does;
 *   P m:C    (the channel's meta hash, engine_redis.c) field sfloor: the
 *            version floor, raised by deletes and resets, so a key created
 *            again never takes a version it had before in this epoch.
 * DESIGN: the ops script applies the whole request to a table first and
 * writes nothing until every op passed (Redis does not roll a script back),
 * then publishes the delta as the channel's next offset through the same
 * append() as a publication, so every node delivers the deltas in the same
 * order as any publication. The delta carries absolute values and versions,
 * built here as MessagePack, the same record hist.c writes. Redis' Lua has
 * only doubles: integers are exact up to 2^53, and an incr that would leave
 * that range is refused (hist.c refuses only past int64). */
#include "engine.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: m, s, f, st, sk. ARGV: keep, ttl_ms, now_ms, epoch to use if the
 * channel has none, then four per op: type (s set, i incr, c cas, d
 * delete, r reset), key, value (MessagePack; set, cas), number (incr: by;
 * cas: version). Returns {0, offset, epoch, unchanged (0/1), record};
 * {-1, op index, version now} on a cas conflict; {-2, op index} when an
 * incr finds no integer or would leave the exact range. When the delta goes
 * to webhooks, one more argument after the ops (so #ARGV - 4 is not a
 * multiple of 4): the key prefix, the channel and the webhooks' names,
 * separated by newlines (which neither a prefix, a channel nor a webhook
 * name holds), for wh_event(). */
const char engine_sops_lua[] =
    ENGINE_APPEND_LUA
    ENGINE_MP_LUA
    ENGINE_EVENT_LUA
    "local floor = tonumber(redis.call('HGET', KEYS[1], 'sfloor') or '0')\n"
    "local cur, reset, changes = {}, false, {}\n"
    "local function get(k)\n"
    "  local c = cur[k]\n"
    "  if c ~= nil then\n"
    "    if c then return c[1], c[2] end\n"
    "    return 0, nil\n"
    "  end\n"
    "  if reset then return 0, nil end\n"
    "  local v = redis.call('HGET', KEYS[4], k)\n"
    "  if not v then return 0, nil end\n"
    "  local p = string.find(v, ':', 1, true)\n"
    "  return tonumber(string.sub(v, 1, p - 1)), string.sub(v, p + 1)\n"
    "end\n"
    "local function put(k, ver, old, val)\n"
    "  local nv = floor + 1\n"
    "  if old then nv = ver + 1 end\n"
    "  cur[k] = {nv, val}\n"
    "  changes[#changes + 1] = '\\131' .. mstr('key') .. mstr(k) .. mstr('value') .. val .. mstr('version') .. mint(nv)\n"
    "end\n"
    "local nops = math.floor((#ARGV - 4) / 4)\n"
    "for i = 0, nops - 1 do\n"
    "  local t, k, val, num = ARGV[5 + 4 * i], ARGV[6 + 4 * i], ARGV[7 + 4 * i], ARGV[8 + 4 * i]\n"
    "  if t == 'r' then\n"
    "    if not reset then\n"
    "      for _, v in ipairs(redis.call('HVALS', KEYS[4])) do\n"
    "        local ver = tonumber(string.match(v, '^(%d+):'))\n"
    "        if ver > floor then floor = ver end\n"
    "      end\n"
    "    end\n"
    "    for _, c in pairs(cur) do\n"
    "      if c and c[1] > floor then floor = c[1] end\n"
    "    end\n"
    "    cur, reset, changes = {}, true, {}\n"
    "  else\n"
    "    local ver, old = get(k)\n"
    "    if t == 'c' then\n"
    "      if ver ~= tonumber(num) then return {-1, i, ver} end\n"
    "      put(k, ver, old, val)\n"
    "    elseif t == 's' then\n"
    "      put(k, ver, old, val)\n"
    "    elseif t == 'i' then\n"
    "      local n, by = 0, tonumber(num)\n"
    "      if old then n = mdec(old) end\n"
    "      if not n or not by or by > LIM or by < -LIM then return {-2, i} end\n"
    "      n = n + by\n"
    "      if n > LIM or n < -LIM then return {-2, i} end\n"
    "      put(k, ver, old, mint(n))\n"
    "    elseif t == 'd' and old then\n"
    "      if ver > floor then floor = ver end\n"
    "      cur[k] = false\n"
    "      changes[#changes + 1] = '\\130' .. mstr('key') .. mstr(k) .. mstr('deleted') .. '\\195'\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local data = '\\129'\n"
    "if reset then data = '\\130' end\n"
    "data = data .. mstr('changes') .. '\\221' .. be(#changes, 4) .. table.concat(changes)\n"
    "if reset then data = data .. mstr('reset') .. '\\195' end\n"
    "local rec = '\\130' .. mstr('ts') .. mint(tonumber(ARGV[3])) .. mstr('data') .. data\n"
    "local last = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')\n"
    "if #changes == 0 and not reset then\n"
    "  return {0, last, redis.call('HGET', KEYS[1], 'epoch') or '', 1, rec}\n"
    "end\n"
    "if reset then redis.call('DEL', KEYS[4], KEYS[5]) end\n"
    "for k, c in pairs(cur) do\n"
    "  if c then\n"
    "    redis.call('HSET', KEYS[4], k, c[1] .. ':' .. c[2])\n"
    "    redis.call('ZADD', KEYS[5], 0, k)\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[4], k)\n"
    "    redis.call('ZREM', KEYS[5], k)\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'sfloor', floor)\n"
    "local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)\n"
    "local epoch = redis.call('HGET', KEYS[1], 'epoch')\n"
    "if not epoch then epoch = ARGV[4]; redis.call('HSET', KEYS[1], 'epoch', epoch) end\n"
    "append(KEYS[2], KEYS[3], off, epoch, rec, ARGV[1], ARGV[2], ARGV[3])\n"
    "if #ARGV > 4 + 4 * nops then\n"
    "  local w = wh_split(ARGV[#ARGV])\n"
    "  if #w > 2 then wh_event(w[1], {unpack(w, 3)}, w[2], 'P', off, rec, ARGV[3]) end\n"
    "end\n"
    "return {0, off, epoch, 0, rec}\n";

/* KEYS: m, st, sk. ARGV: prefix, after ("": from the first), limit (0:
 * all). Keys hold no 0xff byte (they are UTF-8), so "[prefix\xff" bounds
 * the prefix's range. Returns {epoch, last offset, more (0/1), then key,
 * version, value for each key}. */
const char engine_sread_lua[] =
    "local function blt(a, b)\n"
    "  for i = 1, math.min(#a, #b) do\n"
    "    local x, y = a:byte(i), b:byte(i)\n"
    "    if x ~= y then return x < y end\n"
    "  end\n"
    "  return #a < #b\n"
    "end\n"
    "local p, after, lim = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local min, max = '-', '+'\n"
    "if p ~= '' then min = '[' .. p; max = '[' .. p .. '\\255' end\n"
    "if after ~= '' and not blt(after, p) then min = '(' .. after end\n"
    "local ks\n"
    "if lim > 0 then ks = redis.call('ZRANGEBYLEX', KEYS[3], min, max, 'LIMIT', 0, lim + 1)\n"
    "else ks = redis.call('ZRANGEBYLEX', KEYS[3], min, max) end\n"
    "local more = 0\n"
    "if lim > 0 and #ks > lim then more = 1; ks[#ks] = nil end\n"
    "local out = {redis.call('HGET', KEYS[1], 'epoch') or '', tonumber(redis.call('HGET', KEYS[1], 'offset') or '0'),\n"
    "             more}\n"
    "for _, k in ipairs(ks) do\n"
    "  local v = redis.call('HGET', KEYS[2], k)\n"
    "  if v then\n"
    "    local q = string.find(v, ':', 1, true)\n"
    "    out[#out + 1] = k\n"
    "    out[#out + 1] = tonumber(string.sub(v, 1, q - 1))\n"
    "    out[#out + 1] = string.sub(v, q + 1)\n"
    "  end\n"
    "end\n"
    "return out\n";

#define SKEY_MAX (64 + 3 + 256)

/* Writes "<prefix><kind><chan>" into @buf. Return: its length, or 0 if too long. */
static size_t skey(const engine_t *e, const char *kind, const char *chan, size_t len, char *buf)
{
    size_t kl = strlen(kind), n = e->prefixlen + kl + len;

    if (n > SKEY_MAX) return 0;
    memcpy(buf, e->prefix, e->prefixlen);
    memcpy(buf + e->prefixlen, kind, kl);
    memcpy(buf + e->prefixlen + kl, chan, len);
    return n;
}

int engine_state_ops(engine_t *e, const char *chan, size_t len, const hist_state_op_t *ops, size_t n, int64_t ts,
                     const struct engine_keep *keep, const char *const *hooks, size_t nhooks, engine_state_cb cb,
                     void *arg)
{
    static const char *const kinds[] = { "m:", "s:", "f:", "st:", "sk:" };
    static const char types[] = { [HIST_OP_SET] = 's', [HIST_OP_INCR] = 'i', [HIST_OP_CAS] = 'c',
                                  [HIST_OP_DELETE] = 'd', [HIST_OP_RESET] = 'r' };
    char k[5][SKEY_MAX], head[3][24], epoch[HIST_EPOCH_LEN + 1], (*nums)[24] = NULL;
    int argc = 3 + 5 + 4 + 4 * (int)n + (nhooks ? 1 : 0), rc;
    char *wh = NULL;
    const char **argv = NULL;
    size_t *lens = NULL;
    req_t *q = NULL;

    if (!engine_up(e)) return -ENOTCONN;
    for (size_t i = 0; i < n; i++)
        if (ops[i].type < HIST_OP_SET || ops[i].type > HIST_OP_RESET) return -EINVAL;
    if (!(argv = calloc((size_t)argc, sizeof *argv)) || !(lens = calloc((size_t)argc, sizeof *lens)) ||
        !(nums = calloc(n ? n : 1, sizeof *nums))) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < 5; i++) {
        if (!(lens[3 + i] = skey(e, kinds[i], chan, len, k[i]))) { rc = -ENAMETOOLONG; goto out; }
        argv[3 + i] = k[i];
    }
    engine_random_epoch(epoch);
    snprintf(head[0], sizeof head[0], "%u", keep->size);
    snprintf(head[1], sizeof head[1], "%u", keep->ttl_ms);
    snprintf(head[2], sizeof head[2], "%lld", (long long)ts);
    for (int i = 0; i < 3; i++) { argv[8 + i] = head[i]; lens[8 + i] = strlen(head[i]); }
    argv[11] = epoch; lens[11] = HIST_EPOCH_LEN;
    for (size_t i = 0; i < n; i++) {
        const hist_state_op_t *op = &ops[i];
        int a = 12 + 4 * (int)i;
        if (op->type == HIST_OP_INCR) snprintf(nums[i], sizeof nums[i], "%lld", (long long)op->by);
        else snprintf(nums[i], sizeof nums[i], "%llu", (unsigned long long)op->version);
        argv[a] = &types[op->type]; lens[a] = 1;
        argv[a + 1] = op->key ? op->key : ""; lens[a + 1] = op->key ? op->keylen : 0;
        argv[a + 2] = op->val ? (const char *)op->val : ""; lens[a + 2] = op->val ? op->vallen : 0;
        argv[a + 3] = nums[i]; lens[a + 3] = strlen(nums[i]);
    }
    if (nhooks) {
        /* "<prefix>\n<channel>\n<name>\n<name>...": the script's last argument. */
        size_t wl = e->prefixlen + 1 + len, at;
        for (size_t i = 0; i < nhooks; i++) wl += 1 + strlen(hooks[i]);
        if (!(wh = malloc(wl + 1))) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(wh, e->prefix, e->prefixlen);
        wh[e->prefixlen] = '\n';
        memcpy(wh + e->prefixlen + 1, chan, len);
        at = e->prefixlen + 1 + len;
        for (size_t i = 0; i < nhooks; i++) at += (size_t)sprintf(wh + at, "\n%s", hooks[i]);
        argv[argc - 1] = wh;
        lens[argc - 1] = at;
    }
    if ((rc = engine_eval_send(e, SCRIPT_SOPS, 5, argc, argv, lens, &q))) goto out;
    q->cb.sops = cb;
    q->arg = arg;
out:
    free(argv);
    free(lens);
    free(nums);
    free(wh);
    return rc;
}

int engine_state_read(engine_t *e, const char *chan, size_t len, const char *prefix, size_t plen, const char *after,
                      size_t alen, size_t limit, engine_state_read_cb cb, void *arg)
{
    static const char *const kinds[] = { "m:", "st:", "sk:" };
    char k[3][SKEY_MAX], num[24];
    const char *argv[9];
    size_t lens[9];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    for (int i = 0; i < 3; i++) {
        if (!(lens[3 + i] = skey(e, kinds[i], chan, len, k[i]))) return -ENAMETOOLONG;
        argv[3 + i] = k[i];
    }
    snprintf(num, sizeof num, "%zu", limit);
    argv[6] = prefix ? prefix : ""; lens[6] = prefix ? plen : 0;
    argv[7] = after ? after : ""; lens[7] = after ? alen : 0;
    argv[8] = num; lens[8] = strlen(num);
    if ((rc = engine_eval_send(e, SCRIPT_SREAD, 3, 9, argv, lens, &q))) return rc;
    q->cb.sread = cb;
    q->arg = arg;
    return 0;
}

static void finish_sops(req_t *q, const redisReply *r)
{
    struct engine_state_res res;

    memset(&res, 0, sizeof res);
    if (!r) {
        res.status = status_of_drop(q->e);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
               (r->element[0]->integer == 0 && (r->elements != 5 || r->element[4]->type != REDIS_REPLY_STRING))) {
        hlog(LOG_ERROR, "engine", "redis state script failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        res.status = -EIO;
    } else if (r->element[0]->integer == -1 || r->element[0]->integer == -2) {
        res.status = r->element[0]->integer == -1 ? ENGINE_E_CONFLICT : ENGINE_E_NOT_INTEGER;
        res.failed_op = (size_t)int_of(r->element[1]);
        if (r->elements > 2) res.conflict_version = int_of(r->element[2]);
    } else {
        res.offset = int_of(r->element[1]);
        if (r->element[2]->type == REDIS_REPLY_STRING)
            snprintf(res.epoch, sizeof res.epoch, "%s", r->element[2]->str);
        res.unchanged = int_of(r->element[3]) == 1;
        res.rec = (const unsigned char *)r->element[4]->str;
        res.reclen = r->element[4]->len;
    }
    q->cb.sops(q->arg, &res);
}

static void finish_sread(req_t *q, const redisReply *r)
{
    hist_state_t st;
    size_t n, bytes = 0;
    unsigned char *p;

    memset(&st, 0, sizeof st);
    if (!r) {
        q->cb.sread(q->arg, status_of_drop(q->e), &st);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || (r->elements - 3) % 3) {
        hlog(LOG_ERROR, "engine", "redis state read failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        q->cb.sread(q->arg, -EIO, &st);
        return;
    }
    if (r->element[0]->type == REDIS_REPLY_STRING)
        snprintf(st.chan.epoch, sizeof st.chan.epoch, "%s", r->element[0]->str);
    st.found = st.chan.epoch[0] != '\0';
    st.chan.last_offset = int_of(r->element[1]);
    st.chan.first_offset = st.chan.last_offset + 1;
    st.more = int_of(r->element[2]) == 1;
    n = (r->elements - 3) / 3;
    for (size_t i = 0; i < n; i++) bytes += r->element[3 + 3 * i]->len + r->element[3 + 3 * i + 2]->len;
    if (n && (!(st.kv = calloc(n, sizeof *st.kv)) || !(st.buf = malloc(bytes ? bytes : 1)))) {
        free(st.kv);
        memset(&st, 0, sizeof st);
        q->cb.sread(q->arg, -ENOMEM, &st);
        return;
    }
    p = st.buf;
    for (size_t i = 0; i < n; i++) {
        const redisReply *key = r->element[3 + 3 * i], *val = r->element[3 + 3 * i + 2];
        hist_kv_t *kv = &st.kv[i];
        memcpy(p, key->str, key->len);
        kv->key = (const char *)p;
        kv->keylen = key->len;
        p += key->len;
        memcpy(p, val->str, val->len);
        kv->val = p;
        kv->vallen = val->len;
        p += val->len;
        kv->version = int_of(r->element[3 + 3 * i + 1]);
    }
    st.n = n;
    q->cb.sread(q->arg, 0, &st);
    hist_state_free(&st);
}

void engine_finish_state(req_t *q, const redisReply *r)
{
    if (q->script == SCRIPT_SOPS) finish_sops(q, r);
    else finish_sread(q, r);
}
