/* storage/engine_presence.c - presence in the Redis engine (engine.h):
 * the scripts that keep a channel's members per node, the per-node leases,
 * the reads, and the parsing of the events they announce; and the
 * cluster-wide occupancy of channels the webhooks' channel.occupied and
 * channel.vacated report, kept per node under the same leases.
 *
 * Owns: the presence and occupancy keys and scripts below. Does not own:
 * the connections or the requests' life (engine_redis.c), what a member
 * means to a channel (core/presence.c, core/cluster_presence.c), when a
 * node's occupancy changes (core/cluster_occ.c). */
#include "engine.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Presence keys, under the prefix P, for channel C and node N (a node's id
 * is drawn at random when it starts and again when its command connection
 * comes back):
 *   P pm:C    hash member -> the member's JSON ({"user":..,"info":..});
 *   P pk:C    hash member -> how many nodes have it;
 *   P q:C N   hash member -> its connections on node N;
 *   P pn:C    set of the nodes with members of C;
 *   P pc:N    set of the channels where N has members;
 *   P nodes   sorted set node -> the ms (Redis' clock) its lease ends;
 *   P m:C     field pseq: the channel's presence seq;
 *   P pw:C    hash member -> the webhooks of its presence.member_removed
 *             (newline-separated), for the leave pbeat makes for a dead node;
 *   P on:C    set of the nodes with local subscribers of C (written only
 *             when some webhook wants channel.occupied or channel.vacated);
 *   P oc:N    set of the channels where N has local subscribers;
 *   P ow:C    the webhooks of C's channel.vacated (newline-separated), for
 *             the vacated pbeat makes when it reaps C's last node.
 * Events go out on P f:C, the publications' fan-out key, so every node
 * sees them in the same order: "P<kind>:<seq>:<count>:<client>\n<json>",
 * kind j (join), l (leave) or u (info update). The q, pm, pc, on, oc and
 * ow keys of other channels and nodes are named inside the scripts:
 * presence needs a single Redis (not Redis Cluster), as the rest of the
 * engine does. */
#define PRES_EVENT_LUA \
    "local function pres_event(meta, pk, fan, kind, client, json)\n" \
    "  local seq = redis.call('HINCRBY', meta, 'pseq', 1)\n" \
    "  redis.call('PUBLISH', fan, 'P' .. kind .. ':' .. seq .. ':' .. redis.call('HLEN', pk) .. ':' .. client .. '\\n' .. json)\n" \
    "end\n"

/* KEYS: m, pm, pk, q, pn, pc, f, nodes. ARGV: member, count, mode (add:
 * count is a change; set: count is the node's number; drop: the member
 * leaves this node), the member's JSON, node, channel, client id, then the
 * key prefix and the webhooks (names separated by newlines, "": none) of
 * presence.member_added and of presence.member_removed: a join or a leave
 * queues their events (wh_event()), and a member's removal webhooks are
 * kept in P pw:C for the leave a dead node's reaping makes.
 * With set, a member present already takes the given JSON (no event): a
 * resync writes what the node holds. A node without a lease (taken for
 * dead) writes nothing: what it would write could never be dropped.
 * Returns 1; 0 when a drop found nothing; -1 when the node has no lease. */
const char engine_pconn_lua[] =
    PRES_EVENT_LUA
    ENGINE_EVENT_LUA
    "local mem = ARGV[1]\n"
    "local PW = ARGV[8] .. 'pw:' .. ARGV[6]\n"
    "local function pres_hook(kind, list)\n"
    "  if not list or list == '' then return end\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "  wh_event(ARGV[8], wh_split(list), ARGV[6], 'E', 0, cjson.encode({type = kind, channel = ARGV[6],\n"
    "           user = string.sub(mem, 3), ts = now}), now)\n"
    "end\n"
    "if ARGV[3] == 'drop' then\n"
    "  if redis.call('HEXISTS', KEYS[4], mem) == 0 then return 0 end\n"
    "  redis.call('HDEL', KEYS[4], mem)\n"
    "  if redis.call('HLEN', KEYS[4]) == 0 then\n"
    "    redis.call('SREM', KEYS[5], ARGV[5]); redis.call('SREM', KEYS[6], ARGV[6])\n"
    "  end\n"
    "  if redis.call('HINCRBY', KEYS[3], mem, -1) <= 0 then\n"
    "    redis.call('HDEL', KEYS[3], mem)\n"
    "    local j = redis.call('HGET', KEYS[2], mem) or ARGV[4]\n"
    "    redis.call('HDEL', KEYS[2], mem)\n"
    "    pres_event(KEYS[1], KEYS[3], KEYS[7], 'l', ARGV[7], j)\n"
    "    local w = redis.call('HGET', PW, mem)\n"
    "    redis.call('HDEL', PW, mem)\n"
    "    pres_hook('presence.member_removed', w or ARGV[10])\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "if not redis.call('ZSCORE', KEYS[8], ARGV[5]) then return -1 end\n"
    "local fresh = redis.call('HEXISTS', KEYS[4], mem) == 0\n"
    "local n = tonumber(ARGV[2])\n"
    "if ARGV[3] == 'add' then n = redis.call('HINCRBY', KEYS[4], mem, n) end\n"
    "if n < 0 then n = 0 end\n"
    "redis.call('HSET', KEYS[4], mem, n)\n"
    "if ARGV[3] == 'set' and redis.call('HEXISTS', KEYS[2], mem) == 1 then redis.call('HSET', KEYS[2], mem, ARGV[4]) end\n"
    "if fresh then\n"
    "  redis.call('SADD', KEYS[5], ARGV[5]); redis.call('SADD', KEYS[6], ARGV[6])\n"
    "  if redis.call('HINCRBY', KEYS[3], mem, 1) == 1 then\n"
    "    redis.call('HSET', KEYS[2], mem, ARGV[4])\n"
    "    pres_event(KEYS[1], KEYS[3], KEYS[7], 'j', ARGV[7], ARGV[4])\n"
    "    if ARGV[10] ~= '' then redis.call('HSET', PW, mem, ARGV[10]) end\n"
    "    pres_hook('presence.member_added', ARGV[9])\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* Queues event @kind ("channel.occupied" or "channel.vacated") of channel
 * @ch for the webhooks in @list (newline-separated; ""/false: none), timed
 * by Redis' clock as the presence events are. Needs ENGINE_EVENT_LUA.
 * Returns 1 when it queued something, else 0. */
#define OCC_EVENT_LUA \
    "local function occ_event(pfx, kind, list, ch)\n" \
    "  if not list or list == '' then return 0 end\n" \
    "  local t = redis.call('TIME')\n" \
    "  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "  wh_event(pfx, wh_split(list), ch, 'E', 0, cjson.encode({type = kind, channel = ch, ts = ms}), ms)\n" \
    "  return 1\n" \
    "end\n"

/* KEYS: on:C, oc:N, nodes, ow:C. ARGV: prefix, node, channel, "1" (the
 * node has local subscribers of C now) or "0" (no longer), the webhooks of
 * channel.occupied and of channel.vacated (newline-separated, "": none).
 * The node joining an empty P on:C queues channel.occupied; the last node
 * leaving it queues channel.vacated (with the webhooks kept in P ow:C, else
 * the given ones). Adding needs the node's lease, as presence does (what a
 * node without one writes could never be reaped); leaving does not.
 * Returns 1 when an event was queued, 0 when none, -1 when the node has no
 * lease (nothing written). */
const char engine_occ_lua[] =
    ENGINE_EVENT_LUA
    OCC_EVENT_LUA
    "local P, N, C = ARGV[1], ARGV[2], ARGV[3]\n"
    "if ARGV[4] == '0' then\n"
    "  if redis.call('SREM', KEYS[1], N) == 0 then return 0 end\n"
    "  redis.call('SREM', KEYS[2], C)\n"
    "  if redis.call('SCARD', KEYS[1]) > 0 then return 0 end\n"
    "  local w = redis.call('GET', KEYS[4])\n"
    "  redis.call('DEL', KEYS[4])\n"
    "  return occ_event(P, 'channel.vacated', w or ARGV[6], C)\n"
    "end\n"
    "if not redis.call('ZSCORE', KEYS[3], N) then return -1 end\n"
    "if ARGV[6] ~= '' then redis.call('SET', KEYS[4], ARGV[6]) end\n"
    "if redis.call('SADD', KEYS[1], N) == 0 then return 0 end\n"
    "redis.call('SADD', KEYS[2], C)\n"
    "if redis.call('SCARD', KEYS[1]) > 1 then return 0 end\n"
    "return occ_event(P, 'channel.occupied', ARGV[5], C)\n";

/* KEYS: m, pm, pk, f. ARGV: member, its new JSON, client id. Returns the
 * seq of the update, or 0 when the member is not present. */
const char engine_pinfo_lua[] =
    PRES_EVENT_LUA
    "if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "pres_event(KEYS[1], KEYS[3], KEYS[4], 'u', ARGV[3], ARGV[2])\n"
    "return tonumber(redis.call('HGET', KEYS[1], 'pseq'))\n";

/* KEYS: m, pm, pn. ARGV: "P q:C " (the node hashes without the node),
 * limit (0: none). Returns {seq, members, connections, then the JSON and
 * the connections of each member listed}. */
const char engine_pread_lua[] =
    "local seq = tonumber(redis.call('HGET', KEYS[1], 'pseq') or '0')\n"
    "local conns, total = {}, 0\n"
    "for _, n in ipairs(redis.call('SMEMBERS', KEYS[3])) do\n"
    "  local h = redis.call('HGETALL', ARGV[1] .. n)\n"
    "  for i = 1, #h, 2 do\n"
    "    local v = tonumber(h[i + 1])\n"
    "    conns[h[i]] = (conns[h[i]] or 0) + v\n"
    "    total = total + v\n"
    "  end\n"
    "end\n"
    "local all = redis.call('HGETALL', KEYS[2])\n"
    "local out = {seq, #all / 2, total}\n"
    "local lim = tonumber(ARGV[2])\n"
    "for i = 1, #all, 2 do\n"
    "  if lim > 0 and (i + 1) / 2 > lim then break end\n"
    "  out[#out + 1] = all[i + 1]\n"
    "  out[#out + 1] = conns[all[i]] or 0\n"
    "end\n"
    "return out\n";

/* KEYS: nodes. ARGV: prefix, node, lease ms, a former id of this node to
 * drop now ("": none). Renews the node's lease and drops the members of
 * every node whose lease ended (at most 10 nodes a call), announcing the
 * leaves of members no other node has (and queueing their
 * presence.member_removed webhook events, P pw:C), and its occupancy:
 * channels no other node occupies are vacated (channel.vacated for the
 * webhooks in P ow:C). ZREM comes first, so a dead node is processed once
 * whichever nodes beat. Returns 1 if the node had a lease,
 * 0 if it had none (its first beat, or it was taken for dead). */
const char engine_pbeat_lua[] =
    PRES_EVENT_LUA
    ENGINE_EVENT_LUA
    OCC_EVENT_LUA
    "local P = ARGV[1]\n"
    "local function reap(d)\n"
    "  redis.call('ZREM', KEYS[1], d)\n"
    "  local nk = P .. 'pc:' .. d\n"
    "  for _, ch in ipairs(redis.call('SMEMBERS', nk)) do\n"
    "    local q = P .. 'q:' .. ch .. ' ' .. d\n"
    "    local pk, pm = P .. 'pk:' .. ch, P .. 'pm:' .. ch\n"
    "    local h = redis.call('HGETALL', q)\n"
    "    redis.call('DEL', q)\n"
    "    redis.call('SREM', P .. 'pn:' .. ch, d)\n"
    "    for i = 1, #h, 2 do\n"
    "      if redis.call('HINCRBY', pk, h[i], -1) <= 0 then\n"
    "        redis.call('HDEL', pk, h[i])\n"
    "        local j = redis.call('HGET', pm, h[i]) or '{}'\n"
    "        redis.call('HDEL', pm, h[i])\n"
    "        pres_event(P .. 'm:' .. ch, pk, P .. 'f:' .. ch, 'l', '', j)\n"
    "        local w = redis.call('HGET', P .. 'pw:' .. ch, h[i])\n"
    "        if w then\n"
    "          local t = redis.call('TIME')\n"
    "          local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "          redis.call('HDEL', P .. 'pw:' .. ch, h[i])\n"
    "          wh_event(P, wh_split(w), ch, 'E', 0, cjson.encode({type = 'presence.member_removed', channel = ch,\n"
    "                   user = string.sub(h[i], 3), ts = ms}), ms)\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  redis.call('DEL', nk)\n"
    "  local ok = P .. 'oc:' .. d\n"
    "  for _, ch in ipairs(redis.call('SMEMBERS', ok)) do\n"
    "    local on = P .. 'on:' .. ch\n"
    "    if redis.call('SREM', on, d) == 1 and redis.call('SCARD', on) == 0 then\n"
    "      local w = redis.call('GET', P .. 'ow:' .. ch)\n"
    "      redis.call('DEL', P .. 'ow:' .. ch)\n"
    "      occ_event(P, 'channel.vacated', w, ch)\n"
    "    end\n"
    "  end\n"
    "  redis.call('DEL', ok)\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local known = redis.call('ZSCORE', KEYS[1], ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])\n"
    "if ARGV[4] ~= '' then reap(ARGV[4]) end\n"
    "for _, d in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 10)) do reap(d) end\n"
    "if known then return 1 end\n"
    "return 0\n";


/* Writes "<prefix><kind>:<chan>[ <node>]" into @buf. Return: its length, or 0 if too long. */
static size_t pkey(const engine_t *e, const char *kind, const char *chan, size_t len, const char *node, char *buf,
                   size_t buflen)
{
    size_t kl = strlen(kind), nl = node ? strlen(node) : 0;
    size_t n = e->prefixlen + kl + len + (node ? 1 + nl : 0);

    if (n > buflen) return 0;
    memcpy(buf, e->prefix, e->prefixlen);
    memcpy(buf + e->prefixlen, kind, kl);
    memcpy(buf + e->prefixlen + kl, chan, len);
    if (node) {
        buf[e->prefixlen + kl + len] = ' ';
        memcpy(buf + e->prefixlen + kl + len + 1, node, nl);
    }
    return n;
}

#define PKEY_MAX (64 + 4 + 256 + 1 + 64)

void engine_finish_presence(req_t *q, const redisReply *r)
{
    int status = 0;

    if (!r) status = status_of_drop(q->e);
    else if (r->type == REDIS_REPLY_ERROR) {
        hlog(LOG_ERROR, "engine", "redis presence script failed: %s", r->str);
        status = -EIO;
    }
    if (q->script == SCRIPT_PCONN) {
        if (!status && r->type == REDIS_REPLY_INTEGER && r->integer == -1) status = ENGINE_E_NO_LEASE;
        if (q->cb.done) q->cb.done(q->arg, status, 0);
    } else if (q->script == SCRIPT_OCC) {
        if (!status && r->type == REDIS_REPLY_INTEGER && r->integer == -1) status = ENGINE_E_NO_LEASE;
        if (q->cb.done) q->cb.done(q->arg, status, status ? 0 : int_of(r));
    } else if (q->script == SCRIPT_PINFO) {
        q->cb.done(q->arg, status, status ? 0 : int_of(r));
    } else if (q->script == SCRIPT_PBEAT) {
        q->cb.beat(q->arg, status, !status && int_of(r) == 1);
    } else {
        struct engine_presence pr;
        memset(&pr, 0, sizeof pr);
        if (!status && (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || (r->elements - 3) % 2)) {
            hlog(LOG_ERROR, "engine", "redis presence read: unexpected reply");
            status = -EIO;
        }
        if (!status) {
            pr.seq = int_of(r->element[0]);
            pr.count = int_of(r->element[1]);
            pr.conns = int_of(r->element[2]);
            pr.n = (r->elements - 3) / 2;
            if (pr.n && !(pr.members = calloc(pr.n, sizeof *pr.members))) status = -ENOMEM;
            for (size_t i = 0; !status && i < pr.n; i++) {
                const redisReply *j = r->element[3 + 2 * i];
                pr.members[i].json = j->type == REDIS_REPLY_STRING ? j->str : "{}";
                pr.members[i].len = j->type == REDIS_REPLY_STRING ? j->len : 2;
                pr.members[i].conns = int_of(r->element[4 + 2 * i]);
            }
            if (status) pr.n = 0;
        }
        q->cb.pres(q->arg, status, &pr);
        free(pr.members);
    }
}

int engine_presence_conn(engine_t *e, const char *chan, size_t len, const char *node, const struct engine_member *m,
                         int mode, int64_t count, engine_done_cb cb, void *arg)
{
    static const char *const modes[] = { "add", "set", "drop" };
    char k[8][PKEY_MAX], num[24];
    const char *argv[21];
    size_t lens[21];
    static const char *const kinds[] = { "m:", "pm:", "pk:", "q:", "pn:", NULL, "f:", NULL };
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    for (int i = 0; i < 8; i++) {
        if (i == 5) lens[3 + i] = pkey(e, "pc:", node, strlen(node), NULL, k[i], PKEY_MAX);
        else if (i == 7) lens[3 + i] = pkey(e, "nodes", "", 0, NULL, k[i], PKEY_MAX);
        else lens[3 + i] = pkey(e, kinds[i], chan, len, i == 3 ? node : NULL, k[i], PKEY_MAX);
        if (!lens[3 + i]) return -ENAMETOOLONG;
        argv[3 + i] = k[i];
    }
    snprintf(num, sizeof num, "%lld", (long long)count);
    argv[11] = m->key; lens[11] = m->keylen;
    argv[12] = num; lens[12] = strlen(num);
    argv[13] = modes[mode]; lens[13] = strlen(modes[mode]);
    argv[14] = m->json; lens[14] = m->jsonlen;
    argv[15] = node; lens[15] = strlen(node);
    argv[16] = chan; lens[16] = len;
    argv[17] = m->client; lens[17] = m->clientlen;
    argv[18] = e->prefix; lens[18] = e->prefixlen;
    argv[19] = m->wh_added ? m->wh_added : ""; lens[19] = strlen(argv[19]);
    argv[20] = m->wh_removed ? m->wh_removed : ""; lens[20] = strlen(argv[20]);
    if ((rc = engine_eval_send(e, SCRIPT_PCONN, 8, 21, argv, lens, &q))) return rc;
    q->cb.done = cb;
    q->arg = arg;
    return 0;
}

int engine_occupancy(engine_t *e, const char *chan, size_t len, const char *node, int occupied,
                     const char *wh_occupied, const char *wh_vacated, engine_done_cb cb, void *arg)
{
    char k[4][PKEY_MAX];
    const char *argv[13];
    size_t lens[13];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    lens[3] = pkey(e, "on:", chan, len, NULL, k[0], PKEY_MAX);
    lens[4] = pkey(e, "oc:", node, strlen(node), NULL, k[1], PKEY_MAX);
    lens[5] = pkey(e, "nodes", "", 0, NULL, k[2], PKEY_MAX);
    lens[6] = pkey(e, "ow:", chan, len, NULL, k[3], PKEY_MAX);
    for (int i = 0; i < 4; i++) {
        if (!lens[3 + i]) return -ENAMETOOLONG;
        argv[3 + i] = k[i];
    }
    argv[7] = e->prefix; lens[7] = e->prefixlen;
    argv[8] = node; lens[8] = strlen(node);
    argv[9] = chan; lens[9] = len;
    argv[10] = occupied ? "1" : "0"; lens[10] = 1;
    argv[11] = wh_occupied ? wh_occupied : ""; lens[11] = strlen(argv[11]);
    argv[12] = wh_vacated ? wh_vacated : ""; lens[12] = strlen(argv[12]);
    if ((rc = engine_eval_send(e, SCRIPT_OCC, 4, 13, argv, lens, &q))) return rc;
    q->cb.done = cb;
    q->arg = arg;
    return 0;
}

int engine_presence_info(engine_t *e, const char *chan, size_t len, const struct engine_member *m, engine_done_cb cb,
                         void *arg)
{
    char k[4][PKEY_MAX];
    static const char *const kinds[] = { "m:", "pm:", "pk:", "f:" };
    const char *argv[10];
    size_t lens[10];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    for (int i = 0; i < 4; i++) {
        if (!(lens[3 + i] = pkey(e, kinds[i], chan, len, NULL, k[i], PKEY_MAX))) return -ENAMETOOLONG;
        argv[3 + i] = k[i];
    }
    argv[7] = m->key; lens[7] = m->keylen;
    argv[8] = m->json; lens[8] = m->jsonlen;
    argv[9] = m->client; lens[9] = m->clientlen;
    if ((rc = engine_eval_send(e, SCRIPT_PINFO, 4, 10, argv, lens, &q))) return rc;
    q->cb.done = cb;
    q->arg = arg;
    return 0;
}

int engine_presence_read(engine_t *e, const char *chan, size_t len, unsigned limit, engine_presence_cb cb, void *arg)
{
    char k[4][PKEY_MAX], num[24];
    static const char *const kinds[] = { "m:", "pm:", "pn:" };
    const char *argv[8];
    size_t lens[8];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    for (int i = 0; i < 3; i++) {
        if (!(lens[3 + i] = pkey(e, kinds[i], chan, len, NULL, k[i], PKEY_MAX))) return -ENAMETOOLONG;
        argv[3 + i] = k[i];
    }
    /* "P q:C " with the space the node ids follow. */
    if (!(lens[6] = pkey(e, "q:", chan, len, "", k[3], PKEY_MAX))) return -ENAMETOOLONG;
    argv[6] = k[3];
    snprintf(num, sizeof num, "%u", limit);
    argv[7] = num; lens[7] = strlen(num);
    if ((rc = engine_eval_send(e, SCRIPT_PREAD, 3, 8, argv, lens, &q))) return rc;
    q->cb.pres = cb;
    q->arg = arg;
    return 0;
}

int engine_presence_beat(engine_t *e, const char *node, unsigned lease_ms, const char *old_node, engine_beat_cb cb,
                         void *arg)
{
    char k[PKEY_MAX], num[24];
    const char *argv[8];
    size_t lens[8];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    lens[3] = pkey(e, "nodes", "", 0, NULL, k, PKEY_MAX);
    argv[3] = k;
    snprintf(num, sizeof num, "%u", lease_ms);
    argv[4] = e->prefix; lens[4] = e->prefixlen;
    argv[5] = node; lens[5] = strlen(node);
    argv[6] = num; lens[6] = strlen(num);
    argv[7] = old_node ? old_node : ""; lens[7] = strlen(argv[7]);
    if ((rc = engine_eval_send(e, SCRIPT_PBEAT, 1, 8, argv, lens, &q))) return rc;
    q->cb.beat = cb;
    q->arg = arg;
    return 0;
}

/* A presence event on a fan-out key: "P<kind>:<seq>:<count>:<client>\n<json>". */
int engine_on_presence_msg(engine_t *e, const char *chan, size_t len, const char *p, size_t n)
{
    const char *end = p + n, *nl;
    char *num_end;
    uint64_t seq, count;
    int kind = p[1];

    if (p[2] != ':' || (kind != 'j' && kind != 'l' && kind != 'u')) return -1;
    p += 3;
    seq = strtoull(p, &num_end, 10);
    if (num_end == p || num_end >= end || *num_end != ':') return -1;
    p = num_end + 1;
    count = strtoull(p, &num_end, 10);
    if (num_end == p || num_end >= end || *num_end != ':') return -1;
    p = num_end + 1;
    if (!(nl = memchr(p, '\n', (size_t)(end - p)))) return -1;
    e->ev.on_presence(e->ev.ctx, chan, len, kind, seq, count, p, (size_t)(nl - p), nl + 1, (size_t)(end - nl - 1));
    return 0;
}

