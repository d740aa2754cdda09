/* storage/engine_shop.c - the commerce adapter in the Redis engine
 * (engine.h): the script that runs one commerce request with the rules of
 * storage/shop.c, publishes the stock delta and the order notifications.
 *
 * Owns: the order and payment-event keys and the script below. Does not own:
 * the connections or the requests' life (engine_redis.c), the state keys'
 * layout (engine_state.c, shared: the stock channel is a state channel whose
 * keys are the SKUs, so its snapshot reads are the state reads), validating
 * requests or answering them (app/commerce.c, core/cluster_shop.c).
 * Keys, under the prefix P, besides the state keys of the stock channel C:
 *   P so:C          hash: order id -> the order row as JSON (shop.c's row:
 *                   id, owner, status, lines, reserved, created, updated,
 *                   tracking, history), kept for good as LMDB keeps it;
 *   P se:C:<event>  a payment provider's event row as JSON, expiring after
 *                   the duplicate window ([adapter commerce] webhook_window):
 *                   on LMDB the row outlives the window but is read only
 *                   within it, so the expiry changes no answer.
 * DESIGN: one script per request, as engine_seats.c: Redis runs it alone, so
 * the check and the change are one step, as a commerce request is one LMDB
 * write transaction. It refuses before writing anything (Redis does not roll
 * a script back), then writes the touched SKUs and the order, publishes the
 * stock delta through the same append() as a publication, then each
 * notification (the order's channel, user:{owner}, the admin channel) as its
 * channel's next offset, in shop.c's order, so every node delivers them in
 * the same order. Each publication is queued in the same script for the
 * webhooks that want its channel's publications (req.hp), as LMDB queues a
 * hist_tx_publish()'s. "reserved" in the order row makes giving stock back happen
 * once, as on LMDB: a second cancel finds the order final and is refused.
 * The order.* webhook events are made in one place, the Lua function
 * events(), after the notifications, through the wh_event() every script
 * that queues webhook events shares (engine_int.h): an acknowledged create
 * or move always has its events, a refused one none. Rows are JSON (Redis' cjson) so
 * that an empty tracking object stays an object; the notifications are
 * MessagePack written here, field by field, in shop.c's order. */
#include "engine.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ARGV: prefix, the request (JSON, engine_shop()), the stock channel's keep
 * and ttl and an epoch for it if it has none, then four per notified
 * namespace (orders, user, admin): keep, ttl, on (0/1: 0 for a state
 * namespace, which takes only its own deltas) and an epoch for a channel
 * that has none.
 * Returns {0, offset, epoch, unchanged (0/1), record, report, sides}, or
 * {1, 0, '', 1, '', refusal, {}}; report and refusal as JSON, sides a flat
 * list of channel, offset for each notification published. */
const char engine_shop_lua[] =
    ENGINE_STATE_CACHED_LUA
    ENGINE_APPEND_LUA
    ENGINE_MP_LUA
    ENGINE_EVENT_LUA
    "local P, req = ARGV[1], cjson.decode(ARGV[2])\n"
    "local skeep, sttl, ep0 = ARGV[3], ARGV[4], ARGV[5]\n"
    "local T = {order = {ARGV[6], ARGV[7], ARGV[8], ARGV[9]}, user = {ARGV[10], ARGV[11], ARGV[12], ARGV[13]},\n"
    "           admin = {ARGV[14], ARGV[15], ARGV[16], ARGV[17]}}\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local C, a = req.chan, req.a\n"
    "local ST, SK, M, O = P .. 'st:' .. C, P .. 'sk:' .. C, P .. 'm:' .. C, P .. 'so:' .. C\n"
    "local floor = tonumber(redis.call('HGET', M, 'sfloor') or '0')\n"
    "local QMAX = 1000000000\n"
    "local NEXT = {PENDING = {'PAID', 'PAYMENT_FAILED', 'CANCELLED'}, PAID = {'PROCESSING', 'CANCELLED', 'REFUNDED'},\n"
    "  PROCESSING = {'PICKING', 'CANCELLED', 'REFUNDED'}, PICKING = {'PACKED', 'REFUNDED'},\n"
    "  PACKED = {'SHIPPED', 'REFUNDED'}, SHIPPED = {'DELIVERED', 'REFUNDED'}, DELIVERED = {'RETURNED', 'REFUNDED'},\n"
    "  RETURNED = {'REFUNDED'}, PAYMENT_FAILED = {}, CANCELLED = {}, REFUNDED = {}}\n"
    "local cache, touched, changes, stock, sides = {}, {}, {}, {}, {}\n"
    "local function record(data)\n"
    "  return '\\130' .. mstr('ts') .. mint(now) .. mstr('data') .. data\n"
    "end\n"
    /* @which: the kind of channel ('stock', 'order', 'user', 'admin') whose
     * publication webhooks (req.hp[which], as the node found them for its
     * namespace) get this publication, as hist_tx_publish() queues them. */
    "local HP = req.hp or {}\n"
    "local function pub(chan, rec, keep, ttl, e, which)\n"
    "  local m = P .. 'm:' .. chan\n"
    "  local off = redis.call('HINCRBY', m, 'offset', 1)\n"
    "  local epoch = redis.call('HGET', m, 'epoch')\n"
    "  if not epoch then epoch = e; redis.call('HSET', m, 'epoch', epoch) end\n"
    "  append(P .. 's:' .. chan, P .. 'f:' .. chan, off, epoch, rec, keep, ttl, now)\n"
    "  local hooks = HP[which]\n"
    "  if type(hooks) == 'table' and #hooks > 0 then wh_event(P, hooks, chan, 'P', off, rec, now) end\n"
    "  return off, epoch\n"
    "end\n"
    "local function named(chan)\n"
    "  return #chan > 0 and #chan <= 255 and not string.find(chan, '[^%w_%-%.:@,#=/~]')\n"
    "end\n"
    /* A SKU's state key: {version, count or false}; a value that is not an
     * integer counts as 0, as shop.c's stock_get() reads it. */
    "local function get(k) return state_cached(cache, ST, k) end\n"
    "local function count(sku)\n"
    "  local v = get(sku)[2]\n"
    "  if type(v) == 'number' and v == math.floor(v) then return v end\n"
    "  return 0\n"
    "end\n"
    "local function put(sku, n)\n"
    "  local c = get(sku)\n"
    "  local nv = floor + 1\n"
    "  if c[2] ~= false then nv = c[1] + 1 end\n"
    "  local enc = mint(n)\n"
    "  c[1], c[2], c[3] = nv, n, enc\n"
    "  touched[#touched + 1] = sku\n"
    "  stock[sku] = n\n"
    "  changes[#changes + 1] = '\\131' .. mstr('key') .. mstr(sku) .. mstr('value') .. enc .. mstr('version')\n"
    "                          .. mint(nv)\n"
    "end\n"
    "local function refuse(code, reason, r)\n"
    "  r = r or {}\n"
    "  r.code, r.reason = code, reason\n"
    "  return {1, 0, '', 1, '', cjson.encode(r), {}}\n"
    "end\n"
    "local function oget(id)\n"
    "  local v = redis.call('HGET', O, id)\n"
    "  if v then return cjson.decode(v) end\n"
    "  return nil\n"
    "end\n"
    "local function leads(cur, to)\n"
    "  for _, s in ipairs(NEXT[cur] or {}) do if s == to then return true end end\n"
    "  return false\n"
    "end\n"
    "local function allowed(cur)\n"
    "  local l = {}\n"
    "  for i, s in ipairs(NEXT[cur] or {}) do l[i] = s end\n"
    "  return l\n"
    "end\n"
    "local function hentry(status)\n"
    "  local h = {status = status, at = now}\n"
    "  if req.tracking then h.tracking = req.tracking end\n"
    "  return h\n"
    "end\n"
    /* A MessagePack map of @kv ({key, encoded value} pairs, in order). */
    "local function mmap(kv)\n"
    "  local out = {string.char(128 + #kv)}\n"
    "  for _, p in ipairs(kv) do out[#out + 1] = mstr(p[1]) .. p[2] end\n"
    "  return table.concat(out)\n"
    "end\n"
    /* A value decoded from JSON: an empty table was an object here (tracking). */
    "local function mval(v)\n"
    "  if type(v) == 'table' and next(v) == nil then return '\\128' end\n"
    "  return cmsgpack.pack(v)\n"
    "end\n"
    "local function side(which, chan, data)\n"
    "  local k = T[which]\n"
    "  if k[3] ~= '1' or not named(chan) then return end\n"
    "  local off = pub(chan, record(data), k[1], k[2], k[4], which)\n"
    "  sides[#sides + 1] = chan\n"
    "  sides[#sides + 1] = off\n"
    "end\n"
    /* The order.* webhook event of a create or a change of status (@r: the
     * report, for "from" and "restored"), made here and only here: shop.c's
     * notification with "type" replaced, queued for the webhooks the node
     * named (req.hc: order.created, req.hs: order.status). Under channel ""
     * as on LMDB (hist_tx_event()): the event names none, so every order
     * event of a webhook goes out in one order, the order Redis ran them. */
    "local function events(kind, o, r)\n"
    "  local hooks = req.hs\n"
    "  if kind == 'order.created' then hooks = req.hc end\n"
    "  if type(hooks) ~= 'table' or #hooks == 0 then return end\n"
    "  local ev = {type = kind, order = o.id, owner = o.owner, status = o.status, at = o.updated}\n"
    "  if kind == 'order.created' then ev.lines = o.lines else ev.from = r.from end\n"
    "  if a == 'pay' then ev.payment_event = req.event end\n"
    "  if req.tracking then ev.tracking = req.tracking end\n"
    "  if r.restored then ev.restored = r.restored end\n"
    "  wh_event(P, hooks, '', 'E', 0, cjson.encode(ev), now)\n"
    "end\n"
    "local res\n"
    "local function move(o)\n"
    "  local cur = o.status\n"
    "  if not leads(cur, req.status) then\n"
    "    return refuse(123, 'an order in status ' .. (cur or '?') .. ' cannot become ' .. req.status,\n"
    "                  {status = cur, allowed = allowed(cur)})\n"
    "  end\n"
    "  local restored, any = {}, false\n"
    "  if (req.status == 'PAYMENT_FAILED' or req.status == 'CANCELLED') and o.reserved == true then\n"
    "    for _, l in ipairs(o.lines or {}) do\n"
    "      if type(l.sku) == 'string' then\n"
    "        put(l.sku, count(l.sku) + l.qty)\n"
    "        restored[l.sku] = l.qty\n"
    "        any = true\n"
    "      end\n"
    "    end\n"
    "    o.reserved = false\n"
    "  end\n"
    "  o.status, o.updated = req.status, now\n"
    "  if req.tracking then o.tracking = req.tracking end\n"
    "  o.history = o.history or {}\n"
    "  o.history[#o.history + 1] = hentry(req.status)\n"
    "  res = {order = o, from = cur, stock = stock}\n"
    "  if any then res.restored = restored end\n"
    "  return nil\n"
    "end\n"
    "if a == 'set' then\n"
    "  for _, it in ipairs(req.items) do put(it[1], it[2]) end\n"
    "  res = {stock = stock}\n"
    "elseif a == 'adjust' then\n"
    "  local short = {}\n"
    "  for _, it in ipairs(req.items) do\n"
    "    local have = count(it[1])\n"
    "    if have + it[2] < 0 or have + it[2] > QMAX then\n"
    "      short[#short + 1] = {sku = it[1], available = have, adjust = it[2]}\n"
    "    end\n"
    "  end\n"
    "  if #short > 0 then\n"
    "    return refuse(124, 'the adjustment would take stock below zero (or past the maximum): nothing changed',\n"
    "                  {short = short})\n"
    "  end\n"
    "  for _, it in ipairs(req.items) do put(it[1], count(it[1]) + it[2]) end\n"
    "  res = {stock = stock}\n"
    "elseif a == 'create' then\n"
    "  local o = oget(req.order)\n"
    "  if o then return refuse(125, 'an order with this id exists: nothing changed', {status = o.status}) end\n"
    "  local short = {}\n"
    "  for _, l in ipairs(req.lines) do\n"
    "    local have = count(l.sku)\n"
    "    if have < l.qty then short[#short + 1] = {sku = l.sku, wanted = l.qty, available = have} end\n"
    "  end\n"
    "  if #short > 0 then\n"
    "    return refuse(124, 'not enough stock for every line: nothing reserved', {short = short})\n"
    "  end\n"
    "  for _, l in ipairs(req.lines) do put(l.sku, count(l.sku) - l.qty) end\n"
    "  o = {id = req.order, owner = req.owner, status = 'PENDING', lines = req.lines, reserved = true,\n"
    "       created = now, updated = now, history = {{status = 'PENDING', at = now}}}\n"
    "  res = {order = o, stock = stock}\n"
    "elseif a == 'move' then\n"
    "  local o = oget(req.order)\n"
    "  if not o then return refuse(122, 'no order has this id') end\n"
    "  local r = move(o)\n"
    "  if r then return r end\n"
    "elseif a == 'get' then\n"
    "  local o = oget(req.order)\n"
    "  if not o then return refuse(122, 'no order has this id') end\n"
    "  res = {order = o}\n"
    "elseif a == 'pay' then\n"
    "  local ek = P .. 'se:' .. C .. ':' .. req.event\n"
    "  local seen = redis.call('GET', ek)\n"
    "  if seen then\n"
    "    local row = cjson.decode(seen)\n"
    "    if now - (tonumber(row.at) or 0) <= req.window then res = {duplicate = true, event = row} end\n"
    "  end\n"
    "  if not res then\n"
    "    local o, outcome = oget(req.order), nil\n"
    "    if not o then\n"
    "      outcome, res = 'unknown_order', {unmatched = true}\n"
    "    elseif leads(o.status, req.status) then\n"
    "      outcome = req.status\n"
    "      move(o)\n"
    "    else\n"
    "      outcome, res = 'ignored', {ignored = true, status = o.status, allowed = allowed(o.status)}\n"
    "    end\n"
    "    local row = {id = req.event, type = req.event_type, order = req.order, at = now, outcome = outcome}\n"
    "    redis.call('SET', ek, cjson.encode(row), 'PX', math.max(req.window, 0) + 1000)\n"
    "    res.event = row\n"
    "  end\n"
    "else\n"
    "  return redis.error_reply('unknown commerce action')\n"
    "end\n"
    /* Everything checked: write, then publish. */
    "local seen = {}\n"
    "for _, k in ipairs(touched) do\n"
    "  if not seen[k] then\n"
    "    seen[k] = true\n"
    "    local c = cache[k]\n"
    "    redis.call('HSET', ST, k, c[1] .. ':' .. c[3])\n"
    "    redis.call('ZADD', SK, 0, k)\n"
    "  end\n"
    "end\n"
    "if res.order and a ~= 'get' then redis.call('HSET', O, res.order.id, cjson.encode(res.order)) end\n"
    "local rec = record('\\129' .. mstr('changes') .. '\\221' .. be(#changes, 4) .. table.concat(changes))\n"
    "local off, epoch, unchanged\n"
    "if #changes == 0 then\n"
    "  off, epoch = tonumber(redis.call('HGET', M, 'offset') or '0'), redis.call('HGET', M, 'epoch') or ''\n"
    "  unchanged = 1\n"
    "else\n"
    "  redis.call('HSET', M, 'sfloor', floor)\n"
    "  off, epoch = pub(C, rec, skeep, sttl, ep0, 'stock')\n"
    "  unchanged = 0\n"
    "end\n"
    /* The notifications, in shop.c's notify() order and fields. */
    "if a == 'pay' and res.unmatched then\n"
    "  side('admin', req.admin, mmap({{'type', mstr('payment_unmatched')}, {'event', mstr(req.event)},\n"
    "                                {'event_type', mstr(req.event_type)}, {'order', mstr(req.order)}}))\n"
    "elseif res.order and (a == 'create' or res.from) then\n"
    "  local o = res.order\n"
    "  local kv = {{'type', mstr(a == 'create' and 'order_created' or 'order_status')}, {'order', mstr(o.id)},\n"
    "              {'owner', mstr(o.owner)}, {'status', mstr(o.status)}}\n"
    "  if a == 'create' then kv[#kv + 1] = {'lines', cmsgpack.pack(o.lines)}\n"
    "  else kv[#kv + 1] = {'from', mstr(res.from)} end\n"
    "  if a == 'pay' then kv[#kv + 1] = {'payment_event', mstr(req.event)} end\n"
    "  if req.tracking then kv[#kv + 1] = {'tracking', mval(req.tracking)} end\n"
    "  if res.restored then kv[#kv + 1] = {'restored', cmsgpack.pack(res.restored)} end\n"
    "  kv[#kv + 1] = {'at', mint(o.updated)}\n"
    "  local data = mmap(kv)\n"
    "  if req.ons then side('order', req.ons .. ':' .. o.id .. '#' .. o.owner, data) end\n"
    "  side('user', 'user:' .. o.owner, data)\n"
    "  side('admin', req.admin, data)\n"
    "  events(a == 'create' and 'order.created' or 'order.status', o, res)\n"
    "end\n"
    "return {0, off, epoch, unchanged, rec, cjson.encode(res), sides}\n";

int engine_shop(engine_t *e, const char *req, size_t len, const struct engine_shop_keep *k, engine_shop_cb cb,
                void *arg)
{
    const struct engine_keep *keeps[4] = { &k->stock, &k->order, &k->user, &k->admin };
    const int on[3] = { k->notify_order, k->notify_user, k->notify_admin };
    const char *argv[20];
    size_t lens[20];
    char nums[8][24], eps[4][HIST_EPOCH_LEN + 1];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    for (int i = 0; i < 4; i++) {
        snprintf(nums[2 * i], sizeof nums[0], "%u", keeps[i]->size);
        snprintf(nums[2 * i + 1], sizeof nums[0], "%u", keeps[i]->ttl_ms);
        engine_random_epoch(eps[i]);
    }
    argv[3] = e->prefix; lens[3] = e->prefixlen;
    argv[4] = req; lens[4] = len;
    argv[5] = nums[0]; argv[6] = nums[1]; argv[7] = eps[0];
    for (int i = 0; i < 3; i++) {
        argv[8 + 4 * i] = nums[2 + 2 * i];
        argv[9 + 4 * i] = nums[3 + 2 * i];
        argv[10 + 4 * i] = on[i] ? "1" : "0";
        argv[11 + 4 * i] = eps[1 + i];
    }
    for (int i = 5; i < 20; i++) lens[i] = strlen(argv[i]);
    if ((rc = engine_eval_send(e, SCRIPT_SHOP, 0, 20, argv, lens, &q))) return rc;
    q->cb.shop = cb;
    q->arg = arg;
    return 0;
}

void engine_finish_shop(req_t *q, const redisReply *r)
{
    struct engine_shop_res res;
    const redisReply *s;
    size_t n = 0;

    memset(&res, 0, sizeof res);
    if (!r) {
        res.status = status_of_drop(q->e);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 || r->element[0]->type != REDIS_REPLY_INTEGER ||
               r->element[4]->type != REDIS_REPLY_STRING || r->element[5]->type != REDIS_REPLY_STRING ||
               r->element[6]->type != REDIS_REPLY_ARRAY || r->element[6]->elements % 2) {
        hlog(LOG_ERROR, "engine", "redis commerce script failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        res.status = -EIO;
    } else {
        res.refused = r->element[0]->integer == 1;
        res.offset = int_of(r->element[1]);
        if (r->element[2]->type == REDIS_REPLY_STRING)
            snprintf(res.epoch, sizeof res.epoch, "%s", r->element[2]->str);
        res.unchanged = int_of(r->element[3]) == 1;
        res.rec = (const unsigned char *)r->element[4]->str;
        res.reclen = r->element[4]->len;
        res.result = r->element[5]->str;
        res.resultlen = r->element[5]->len;
        s = r->element[6];
        for (size_t i = 0; i + 1 < s->elements && n < ENGINE_SHOP_SIDES; i += 2) {
            if (s->element[i]->type != REDIS_REPLY_STRING) continue;
            res.sides[n].chan = s->element[i]->str;
            res.sides[n].len = s->element[i]->len;
            res.sides[n].offset = int_of(s->element[i + 1]);
            n++;
        }
        res.nsides = n;
    }
    q->cb.shop(q->arg, &res);
}
