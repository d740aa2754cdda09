/* storage/engine_seats.c - seat maps in the Redis engine (engine.h): the
 * script that runs a seat request with the rules of storage/seatmap.c and
 * publishes its delta and its notices, and the sweep that frees expired
 * holds.
 *
 * Owns: the seat map keys and the script below. Does not own: the
 * connections or the requests' life (engine_redis.c), the state keys'
 * layout (engine_state.c, shared: a seat map is a state channel whose keys
 * are "seat:<id>" and "section:<name>", so its snapshot reads are the state
 * reads), validating requests or answering them (app/seats.c,
 * core/cluster_seats.c).
 * Keys, under the prefix P, besides the state keys of channel C:
 *   P sw:C:<section>  list: the section's waitlist (user ids, oldest first);
 *   P sx:C            sorted set: seat id -> when its hold expires (ms);
 *   P sxmaps          sorted set: C -> the earliest expiry in P sx:C;
 *   P sxlease         the sweep lease: the id of the node that sweeps;
 *   P alive:<node>    set by each node's sweep call, expiring: the node lives;
 *   P uc:<user>       hash: node -> the user's connections there, for release
 *                     on disconnect (not while the user is on another live
 *                     node).
 * DESIGN: one script per request (Redis runs it alone, so the check and the
 * change are one step, as a seat request is one LMDB write transaction): it
 * reads what it needs into a table, refuses before writing anything (Redis
 * does not roll a script back), applies the change in the table, then writes
 * the touched keys and publishes the delta through the same append() as a
 * publication, then each notice as its user channel's next offset (a
 * booking's ticket also as the organiser's feed channel's next offset,
 * req.feed, as seatmap.c's txnotify() on LMDB). The
 * expiry of a hold is an entry in P sx:C: the sweep (the same script, mode
 * 'x') frees each due hold in its own delta. Every node calls it every
 * quarter second; the node that holds the lease (SET NX PX) sweeps and
 * renews it, the others return at once, so sweeping costs one node's work,
 * and a node that died stops holding the lease within lease_ms. A hold is
 * freed exactly once however many nodes sweep: each freeing is one script,
 * which removes the entry it frees. Values are MessagePack made by Redis'
 * cmsgpack from Lua tables: their keys' order is not hist.c's, their
 * meaning is. */
#include "engine.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ARGV: prefix, mode ('r' a request, 'x' a sweep, 'c' a connection count),
 * the map's keep and ttl, an epoch for the map if it has none, the user
 * channels' keep and ttl, notify (0/1), an epoch for a user channel that has
 * none; then for 'r' the request (JSON), the feed channel's keep and ttl and
 * an epoch for it if it has none; or node, lease ms, max, offer ttl ms,
 * alive ms for 'x'.
 * Returns for 'r': {0, offset, epoch, unchanged (0/1), record, report}, or
 * {1, 0, '', 1, '', refusal}, report and refusal as MessagePack. For 'x':
 * {1, holds freed}, or {0, 0} when another node holds the lease. Mode 'c'
 * (user, node, delta after the common arguments) counts a user's
 * connections on a node: {1, count now}. */
const char engine_seats_lua[] =
    ENGINE_STATE_CACHED_LUA
    ENGINE_APPEND_LUA
    ENGINE_MP_LUA
    ENGINE_EVENT_LUA
    "local P, mode = ARGV[1], ARGV[2]\n"
    "local skeep, sttl, ep1 = ARGV[3], ARGV[4], ARGV[5]\n"
    "local ukeep, uttl, unote, ep2 = ARGV[6], ARGV[7], ARGV[8], ARGV[9]\n"
    "local fkeep, fttl, ep3 = 0, 0, ''\n"
    "local WH = {booked = {}, expired = {}, map = {}, user = {}, feed = {}}\n"
    "local function hooks(j)\n"
    "  if not j or j == '' then return end\n"
    "  local ok, t = pcall(cjson.decode, j)\n"
    "  if not ok or type(t) ~= 'table' then return end\n"
    "  for k, _ in pairs(WH) do if type(t[k]) == 'table' then WH[k] = t[k] end end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local function record(data)\n"
    "  return '\\130' .. mstr('ts') .. mint(now) .. mstr('data') .. data\n"
    "end\n"
    "local function pub(chan, rec, keep, ttl, e, hooks)\n"
    "  local m = P .. 'm:' .. chan\n"
    "  local off = redis.call('HINCRBY', m, 'offset', 1)\n"
    "  local epoch = redis.call('HGET', m, 'epoch')\n"
    "  if not epoch then epoch = e; redis.call('HSET', m, 'epoch', epoch) end\n"
    "  append(P .. 's:' .. chan, P .. 'f:' .. chan, off, epoch, rec, keep, ttl, now)\n"
    "  if #hooks > 0 then wh_event(P, hooks, chan, 'P', off, rec, now) end\n"
    "  return off, epoch\n"
    "end\n"
    "local function named(chan)\n"
    "  return #chan > 0 and #chan <= 255 and not string.find(chan, '[^%w_%-%.:@,#=/~]')\n"
    "end\n"
    "local function notify(chan, data)\n"
    "  if unote ~= '1' or not named(chan) then return end\n"
    "  pub(chan, record(cmsgpack.pack(data)), ukeep, uttl, ep2, WH.user)\n"
    "end\n"
    "local function same(a, b)\n"
    "  for k, v in pairs(a) do if b[k] ~= v then return false end end\n"
    "  for k, v in pairs(b) do if a[k] ~= v then return false end end\n"
    "  return true\n"
    "end\n"
    "local function copy(a)\n"
    "  local b = {}\n"
    "  for k, v in pairs(a) do b[k] = v end\n"
    "  return b\n"
    "end\n"
    "local function reindex(chan)\n"
    "  local first = redis.call('ZRANGE', P .. 'sx:' .. chan, 0, 0, 'WITHSCORES')\n"
    "  if #first > 0 then redis.call('ZADD', P .. 'sxmaps', first[2], chan)\n"
    "  else redis.call('ZREM', P .. 'sxmaps', chan) end\n"
    "end\n"
    "local function apply(chan, req)\n"
    "  local ST, SK, SX, M = P .. 'st:' .. chan, P .. 'sk:' .. chan, P .. 'sx:' .. chan, P .. 'm:' .. chan\n"
    "  local event = string.match(chan, '^[^:]*:(.*)$') or chan\n"
    "  local floor = tonumber(redis.call('HGET', M, 'sfloor') or '0')\n"
    "  local cache, touched, changes = {}, {}, {}\n"
    "  local secs, dirty, dlist = {}, {}, {}\n"
    "  local wl, wdirty, timers = {}, {}, {}\n"
    "  local expired, offers, res = {}, {}, {}\n"
    "  local a, user = req.a, req.user\n"
    "  local function get(k) return state_cached(cache, ST, k) end\n"
    "  local function put(k, val)\n"
    "    local c = get(k)\n"
    "    local nv = floor + 1\n"
    "    if c[2] then nv = c[1] + 1 end\n"
    "    local enc = cmsgpack.pack(val)\n"
    "    c[1], c[2], c[3] = nv, val, enc\n"
    "    touched[#touched + 1] = k\n"
    "    changes[#changes + 1] = '\\131' .. mstr('key') .. mstr(k) .. mstr('value') .. enc .. mstr('version')\n"
    "                            .. mint(nv)\n"
    "  end\n"
    "  local function del(k)\n"
    "    local c = get(k)\n"
    "    if not c[2] then return end\n"
    "    if c[1] > floor then floor = c[1] end\n"
    "    c[2], c[3] = false, nil\n"
    "    touched[#touched + 1] = k\n"
    "    changes[#changes + 1] = '\\130' .. mstr('key') .. mstr(k) .. mstr('deleted') .. '\\195'\n"
    "  end\n"
    "  local function section(name)\n"
    "    local s = secs[name]\n"
    "    if s == nil then s = get('section:' .. name)[2]; secs[name] = s end\n"
    "    return s\n"
    "  end\n"
    "  local function mark(name)\n"
    "    if not dirty[name] then dirty[name] = true; dlist[#dlist + 1] = name end\n"
    "  end\n"
    "  local function move(name, from, to)\n"
    "    if from and to and from == to then return end\n"
    "    local s = section(name)\n"
    "    if not s then return end\n"
    "    if from then s[from] = (s[from] or 0) - 1 end\n"
    "    if to then s[to] = (s[to] or 0) + 1 end\n"
    "    mark(name)\n"
    "  end\n"
    "  local function live(v) return v.status == 'held' and (v.expires or 0) > now end\n"
    "  local function refuse(code, reason, field, val)\n"
    "    local r = {code = code, reason = reason}\n"
    "    if field then r[field] = val end\n"
    "    return {1, 0, '', 1, '', cmsgpack.pack(r)}\n"
    "  end\n"
    "  local function waitlist(sect)\n"
    "    local q = wl[sect]\n"
    "    if not q then q = redis.call('LRANGE', P .. 'sw:' .. chan .. ':' .. sect, 0, -1); wl[sect] = q end\n"
    "    return q\n"
    "  end\n"
    "  local function hold_seat(id, v, who, untl, offer)\n"
    "    local old = v.status\n"
    "    v.status, v.holder, v.expires = 'held', who, untl\n"
    "    if offer then v.offer = true else v.offer = nil end\n"
    "    put('seat:' .. id, v)\n"
    "    timers[id] = untl\n"
    "    move(v.section, old, 'held')\n"
    "  end\n"
    "  local function offer(id, v, who)\n"
    "    local untl = now + req.offer_ttl\n"
    "    hold_seat(id, v, who, untl, true)\n"
    "    offers[#offers + 1] = {user = who, seat = id, section = v.section, expires = untl}\n"
    "  end\n"
    "  local function note_expired(id, v)\n"
    "    expired[#expired + 1] = {user = v.holder or '', seat = id, section = v.section, expires = v.expires or 0,\n"
    "                             offer = v.offer == true}\n"
    "  end\n"
    "  local function free_seat(id, v)\n"
    "    local old = v.status\n"
    "    if old == 'held' then timers[id] = false end\n"
    "    local q = waitlist(v.section)\n"
    "    if #q > 0 then\n"
    "      local who = table.remove(q, 1)\n"
    "      wdirty[v.section] = true\n"
    "      local s = section(v.section)\n"
    "      if s then s.waiting = (s.waiting or 0) - 1; mark(v.section) end\n"
    "      return offer(id, v, who)\n"
    "    end\n"
    "    v.status, v.holder, v.expires, v.offer = 'free', nil, nil, nil\n"
    "    put('seat:' .. id, v)\n"
    "    move(v.section, old, 'free')\n"
    "  end\n"
    "  local function load()\n"
    "    local vals, unknown = {}, {}\n"
    "    for i, id in ipairs(req.seats) do\n"
    "      local v = get('seat:' .. id)[2]\n"
    "      if not v then unknown[#unknown + 1] = id end\n"
    "      vals[i] = v\n"
    "    end\n"
    "    return vals, unknown\n"
    "  end\n"
    "  local function scan(pfx)\n"
    "    return redis.call('ZRANGEBYLEX', SK, '[' .. pfx, '[' .. pfx .. '\\255')\n"
    "  end\n"
    "  if a == 'hold' then\n"
    "    local vals, unknown = load()\n"
    "    if #unknown > 0 then return refuse(120, \"seats not in the event's seat map\", 'seats', unknown) end\n"
    "    local taken = {}\n"
    "    for i, v in ipairs(vals) do\n"
    "      local st, mine = v.status, v.holder == user\n"
    "      local avail = st == 'free' or (st == 'held' and (mine or not live(v)))\n"
    "      if avail and not mine and st == 'held' then avail = #waitlist(v.section) == 0 end\n"
    "      if not avail then taken[#taken + 1] = req.seats[i] end\n"
    "    end\n"
    "    if #taken > 0 then\n"
    "      return refuse(119, 'seats held by another user or booked; none was held', 'seats', taken)\n"
    "    end\n"
    "    local untl = now + req.ttl\n"
    "    local earliest = untl\n"
    "    for i, v in ipairs(vals) do\n"
    "      local id, at = req.seats[i], untl\n"
    "      if v.status == 'held' then\n"
    "        if v.holder == user then\n"
    "          if (v.expires or 0) > at then at = v.expires end\n"
    "        else\n"
    "          note_expired(id, v)\n"
    "        end\n"
    "      end\n"
    "      hold_seat(id, v, user, at, false)\n"
    "      if i == 1 or at < earliest then earliest = at end\n"
    "    end\n"
    "    res.seats, res.expires = req.seats, earliest\n"
    "  elseif a == 'confirm' or a == 'release' then\n"
    "    local vals, unknown = load()\n"
    "    local mine = false\n"
    "    for _, v in pairs(vals) do\n"
    "      if v and v.holder == user and v.status == 'held' then mine = true end\n"
    "    end\n"
    "    if req.away and mine then\n"
    "      -- Release on disconnect: not while the user is connected to another live node.\n"
    "      local uc = P .. 'uc:' .. user\n"
    "      local f = redis.call('HGETALL', uc)\n"
    "      for i = 1, #f, 2 do\n"
    "        if f[i] ~= req.node and tonumber(f[i + 1]) > 0 then\n"
    "          if redis.call('EXISTS', P .. 'alive:' .. f[i]) == 1 then\n"
    "            res.seats, res.elsewhere, res.offers, res.expired = {}, true, {}, {}\n"
    "            local last = tonumber(redis.call('HGET', M, 'offset') or '0')\n"
    "            local none = record('\\129' .. mstr('changes') .. '\\221' .. be(0, 4))\n"
    "            return {0, last, redis.call('HGET', M, 'epoch') or '', 1, none, cmsgpack.pack(res)}\n"
    "          end\n"
    "          redis.call('HDEL', uc, f[i])\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    if #unknown > 0 and not req.lenient then\n"
    "      return refuse(120, \"seats not in the event's seat map\", 'seats', unknown)\n"
    "    end\n"
    "    local not_held, done = {}, {}\n"
    "    for i, id in ipairs(req.seats) do\n"
    "      local v = vals[i]\n"
    "      if v then\n"
    "        local mine, ok = v.holder == user, false\n"
    "        if a == 'confirm' then ok = mine and live(v)\n"
    "        else ok = mine and (v.status == 'held' or (req.cancel and v.status == 'booked')) end\n"
    "        if not ok then not_held[#not_held + 1] = id end\n"
    "      end\n"
    "    end\n"
    "    if #not_held > 0 and not req.lenient then\n"
    "      if a == 'confirm' then\n"
    "        return refuse(121, 'seats not held by this user, or whose hold expired; none was booked', 'seats',\n"
    "                      not_held)\n"
    "      end\n"
    "      return refuse(121, 'seats not held by this user; none was released', 'seats', not_held)\n"
    "    end\n"
    "    for i, id in ipairs(req.seats) do\n"
    "      local v = vals[i]\n"
    "      if v and v.holder == user then\n"
    "        if a == 'confirm' then\n"
    "          timers[id] = false\n"
    "          v.status, v.expires, v.offer = 'booked', nil, nil\n"
    "          put('seat:' .. id, v)\n"
    "          move(v.section, 'held', 'booked')\n"
    "          done[#done + 1] = id\n"
    "        elseif v.status == 'held' or (req.cancel and v.status == 'booked') then\n"
    "          free_seat(id, v)\n"
    "          done[#done + 1] = id\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    res.seats = done\n"
    "  elseif a == 'expire' then\n"
    "    local id = req.seat\n"
    "    local v = get('seat:' .. id)[2]\n"
    "    if v and v.status == 'held' and v.expires == req.at and req.at <= now then\n"
    "      note_expired(id, v)\n"
    "      free_seat(id, v)\n"
    "      res.seats = {id}\n"
    "    else\n"
    "      if v and v.status == 'held' then timers[id] = v.expires else timers[id] = false end\n"
    "      res.seats = {}\n"
    "    end\n"
    "  elseif a == 'waitlist' or a == 'waitlist_leave' or a == 'waitlist_position' then\n"
    "    local sect = req.section\n"
    "    local s = section(sect)\n"
    "    if not s and a ~= 'waitlist_leave' then\n"
    "      return refuse(120, \"no such section in the event's seat map\", 'section', sect)\n"
    "    end\n"
    "    res.section = sect\n"
    "    if s then\n"
    "      local q = waitlist(sect)\n"
    "      local pos = 0\n"
    "      for i, u in ipairs(q) do if u == user then pos = i; break end end\n"
    "      if a == 'waitlist_position' then\n"
    "        res.position, res.waiting = pos, #q\n"
    "      elseif a == 'waitlist_leave' then\n"
    "        if pos > 0 then\n"
    "          table.remove(q, pos)\n"
    "          wdirty[sect] = true\n"
    "          s.waiting = (s.waiting or 0) - 1\n"
    "          mark(sect)\n"
    "        end\n"
    "      elseif pos > 0 then\n"
    "        res.position = pos\n"
    "      else\n"
    "        local fid, fv\n"
    "        if (s.free or 0) > 0 then\n"
    "          for _, k in ipairs(scan('seat:')) do\n"
    "            local v = get(k)[2]\n"
    "            if v and v.section == sect and v.status == 'free' then fid, fv = string.sub(k, 6), v; break end\n"
    "          end\n"
    "        end\n"
    "        if fid then\n"
    "          offer(fid, fv, user)\n"
    "          res.offered, res.expires = fid, fv.expires\n"
    "        elseif #q >= req.waitlist_max then\n"
    "          return refuse(110, 'the waitlist of section ' .. sect .. ' is full (waitlist_max ' ..\n"
    "                        req.waitlist_max .. ')')\n"
    "        else\n"
    "          q[#q + 1] = user\n"
    "          wdirty[sect] = true\n"
    "          s.waiting = (s.waiting or 0) + 1\n"
    "          mark(sect)\n"
    "          res.position = #q\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  elseif a == 'define' or a == 'add' then\n"
    "    local seats, order, olds, wanted = {}, {}, {}, {}\n"
    "    for _, k in ipairs(scan('seat:')) do\n"
    "      local id = string.sub(k, 6)\n"
    "      seats[id] = get(k)[2]\n"
    "      order[#order + 1] = id\n"
    "    end\n"
    "    for _, k in ipairs(scan('section:')) do olds[string.sub(k, 9)] = get(k)[2] end\n"
    "    for _, d in ipairs(req.seats) do wanted[d.id] = d end\n"
    "    if a == 'define' then\n"
    "      local in_use = {}\n"
    "      for _, id in ipairs(order) do\n"
    "        if not wanted[id] and seats[id].status ~= 'free' then in_use[#in_use + 1] = id end\n"
    "      end\n"
    "      if #in_use > 0 then\n"
    "        return refuse(119, 'seats held or booked cannot be left out of the map', 'seats', in_use)\n"
    "      end\n"
    "      for _, id in ipairs(order) do\n"
    "        if not wanted[id] then del('seat:' .. id) end\n"
    "      end\n"
    "    end\n"
    "    for _, d in ipairs(req.seats) do\n"
    "      local old = seats[d.id]\n"
    "      local nv\n"
    "      if old then nv = copy(old) else nv = {status = 'free'}; order[#order + 1] = d.id end\n"
    "      if old and old.section ~= d.section then del('seat:' .. d.id) end\n"
    "      nv.section, nv.price_class = d.section, d.price_class\n"
    "      if not old or not same(old, nv) then put('seat:' .. d.id, nv) end\n"
    "      seats[d.id] = nv\n"
    "    end\n"
    "    if a == 'define' then\n"
    "      order = {}\n"
    "      for _, d in ipairs(req.seats) do order[#order + 1] = d.id end\n"
    "    end\n"
    "    local counts, n = {}, 0\n"
    "    for _, id in ipairs(order) do\n"
    "      local v = seats[id]\n"
    "      local c = counts[v.section]\n"
    "      if not c then\n"
    "        c = {total = 0, free = 0, held = 0, booked = 0, waiting = #waitlist(v.section)}\n"
    "        counts[v.section] = c\n"
    "      end\n"
    "      c.total = c.total + 1\n"
    "      c[v.status] = (c[v.status] or 0) + 1\n"
    "      n = n + 1\n"
    "    end\n"
    "    for name, _ in pairs(olds) do\n"
    "      if not counts[name] then\n"
    "        del('section:' .. name)\n"
    "        wl[name] = {}\n"
    "        wdirty[name] = true\n"
    "      end\n"
    "    end\n"
    "    for name, c in pairs(counts) do\n"
    "      secs[name] = c\n"
    "      if not olds[name] or not same(c, olds[name]) then mark(name) end\n"
    "    end\n"
    "    for _, id in ipairs(order) do\n"
    "      local v = seats[id]\n"
    "      if v.status == 'free' and counts[v.section].waiting > 0 then free_seat(id, v) end\n"
    "    end\n"
    "    res.seats, res.sections = n, counts\n"
    "  else\n"
    "    return redis.error_reply('unknown seat action')\n"
    "  end\n"
    "  for _, name in ipairs(dlist) do\n"
    "    local s = secs[name]\n"
    "    if s then put('section:' .. name, s) end\n"
    "  end\n"
    "  res.offers, res.expired = offers, expired\n"
    "  local rec = record('\\129' .. mstr('changes') .. '\\221' .. be(#changes, 4) .. table.concat(changes))\n"
    "  if #changes == 0 then\n"
    "    for id, at in pairs(timers) do\n"
    "      if at then redis.call('ZADD', SX, at, id) else redis.call('ZREM', SX, id) end\n"
    "    end\n"
    "    reindex(chan)\n"
    "    return {0, tonumber(redis.call('HGET', M, 'offset') or '0'), redis.call('HGET', M, 'epoch') or '', 1, rec,\n"
    "            cmsgpack.pack(res)}\n"
    "  end\n"
    "  local seen = {}\n"
    "  for _, k in ipairs(touched) do\n"
    "    if not seen[k] then\n"
    "      seen[k] = true\n"
    "      local c = cache[k]\n"
    "      if c[2] then\n"
    "        redis.call('HSET', ST, k, c[1] .. ':' .. c[3])\n"
    "        redis.call('ZADD', SK, 0, k)\n"
    "      else\n"
    "        redis.call('HDEL', ST, k)\n"
    "        redis.call('ZREM', SK, k)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  for sect, _ in pairs(wdirty) do\n"
    "    local key, q = P .. 'sw:' .. chan .. ':' .. sect, wl[sect]\n"
    "    redis.call('DEL', key)\n"
    "    for i = 1, #q, 1000 do redis.call('RPUSH', key, unpack(q, i, math.min(i + 999, #q))) end\n"
    "  end\n"
    "  for id, at in pairs(timers) do\n"
    "    if at then redis.call('ZADD', SX, at, id) else redis.call('ZREM', SX, id) end\n"
    "  end\n"
    "  reindex(chan)\n"
    "  redis.call('HSET', M, 'sfloor', floor)\n"
    "  local off, epoch = pub(chan, rec, skeep, sttl, ep1, WH.map)\n"
    "  if a == 'confirm' and #res.seats > 0 then\n"
    "    local t = {type = 'ticket_issued', event = event, channel = chan, seats = res.seats, holder = user,\n"
    "               booked_at = now}\n"
    "    notify('user:' .. user, t)\n"
    "    local feed = req.feed\n"
    "    if type(feed) == 'string' and feed ~= chan and named(feed) then\n"
    "      pub(feed, record(cmsgpack.pack(t)), fkeep, fttl, ep3, WH.feed)\n"
    "    end\n"
    "    if #WH.booked > 0 then\n"
    "      wh_event(P, WH.booked, chan, 'E', 0, cjson.encode({type = 'seat.booked', event = event, channel = chan,\n"
    "            seats = res.seats, holder = user, booked_at = now}), now)\n"
    "    end\n"
    "  end\n"
    "  for _, o in ipairs(expired) do\n"
    "    notify('user:' .. o.user, {type = 'seat_expired', event = event, channel = chan, seat = o.seat,\n"
    "                               section = o.section, expires = o.expires, offer = o.offer})\n"
    "    if #WH.expired > 0 then\n"
    "      wh_event(P, WH.expired, chan, 'E', 0, cjson.encode({type = 'seat.expired', event = event, channel = chan,\n"
    "            seat = o.seat, section = o.section, holder = o.user, expires = o.expires, offer = o.offer == true}),\n"
    "            now)\n"
    "    end\n"
    "  end\n"
    "  for _, o in ipairs(offers) do\n"
    "    notify('user:' .. o.user, {type = 'seat_offer', event = event, channel = chan, seat = o.seat,\n"
    "                               section = o.section, expires = o.expires})\n"
    "  end\n"
    "  return {0, off, epoch, 0, rec, cmsgpack.pack(res)}\n"
    "end\n"
    "if mode == 'r' then\n"
    "  local req = cjson.decode(ARGV[10])\n"
    "  fkeep, fttl, ep3 = ARGV[11], ARGV[12], ARGV[13]\n"
    "  hooks(ARGV[14])\n"
    "  return apply(req.chan, req)\n"
    "end\n"
    "if mode == 'c' then\n"
    "  local k = P .. 'uc:' .. ARGV[10]\n"
    "  local n = redis.call('HINCRBY', k, ARGV[11], tonumber(ARGV[12]))\n"
    "  if n <= 0 then redis.call('HDEL', k, ARGV[11]) else redis.call('PEXPIRE', k, 86400000) end\n"
    "  return {1, n}\n"
    "end\n"
    "local node, lease, max = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])\n"
    "hooks(ARGV[15])\n"
    "redis.call('SET', P .. 'alive:' .. node, 1, 'PX', tonumber(ARGV[14]))\n"
    "local L = P .. 'sxlease'\n"
    "if not redis.call('SET', L, node, 'NX', 'PX', lease) then\n"
    "  if redis.call('GET', L) ~= node then return {0, 0} end\n"
    "  redis.call('PEXPIRE', L, lease)\n"
    "end\n"
    "local freed, left = 0, max\n"
    "for _, chan in ipairs(redis.call('ZRANGEBYSCORE', P .. 'sxmaps', '-inf', now, 'LIMIT', 0, max)) do\n"
    "  if left <= 0 then break end\n"
    "  local due = redis.call('ZRANGEBYSCORE', P .. 'sx:' .. chan, '-inf', now, 'WITHSCORES', 'LIMIT', 0, left)\n"
    "  if #due == 0 then\n"
    "    reindex(chan)\n"
    "  end\n"
    "  for i = 1, #due, 2 do\n"
    "    local r = apply(chan, {a = 'expire', chan = chan, seat = due[i], at = tonumber(due[i + 1]),\n"
    "                           offer_ttl = tonumber(ARGV[13])})\n"
    "    if r[4] == 0 then freed = freed + 1 end\n"
    "    left = left - 1\n"
    "  end\n"
    "end\n"
    "return {1, freed}\n";

/* Fills the arguments both modes share (argv[3..11]; @nums: room for the
 * numbers' text, alive until sent) and sends EVALSHA of @script.
 * Return: as engine_eval_send(). */
static int send_script(engine_t *e, int script, int argc, const char **argv, size_t *lens,
                       const struct engine_seats_keep *k, char (*nums)[24], req_t **q)
{
    char ep1[HIST_EPOCH_LEN + 1], ep2[HIST_EPOCH_LEN + 1];
    const unsigned v[4] = { k->map.size, k->map.ttl_ms, k->user.size, k->user.ttl_ms };

    for (int i = 0; i < 4; i++) snprintf(nums[i], sizeof nums[i], "%u", v[i]);
    engine_random_epoch(ep1);
    engine_random_epoch(ep2);
    argv[3] = e->prefix; lens[3] = e->prefixlen;
    argv[4] = script == SCRIPT_SEATS ? "r" : script == SCRIPT_SWEEP ? "x" : "c"; lens[4] = 1;
    argv[5] = nums[0]; argv[6] = nums[1]; argv[7] = ep1;
    argv[8] = nums[2]; argv[9] = nums[3]; argv[10] = k->notify ? "1" : "0"; argv[11] = ep2;
    for (int i = 5; i <= 11; i++) lens[i] = strlen(argv[i]);
    return engine_eval_send(e, script, 0, argc, argv, lens, q);
}

int engine_seats(engine_t *e, const char *req, size_t len, const struct engine_seats_keep *k, engine_seats_cb cb,
                 void *arg)
{
    const char *argv[17];
    size_t lens[17];
    char nums[4][24], feed[2][24], ep3[HIST_EPOCH_LEN + 1];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    argv[12] = req; lens[12] = len;
    /* The organiser's feed: its own namespace's history, and its own epoch
     * should this booking be its first publication. */
    snprintf(feed[0], sizeof feed[0], "%u", k->feed.size);
    snprintf(feed[1], sizeof feed[1], "%u", k->feed.ttl_ms);
    engine_random_epoch(ep3);
    argv[13] = feed[0]; argv[14] = feed[1]; argv[15] = ep3;
    argv[16] = k->hooks ? k->hooks : "";
    for (int i = 13; i < 17; i++) lens[i] = strlen(argv[i]);
    if ((rc = send_script(e, SCRIPT_SEATS, 17, argv, lens, k, nums, &q))) return rc;
    q->cb.seats = cb;
    q->arg = arg;
    return 0;
}

int engine_seats_sweep(engine_t *e, const char *node, unsigned lease_ms, unsigned max, int64_t offer_ttl_ms,
                       unsigned alive_ms, const struct engine_seats_keep *k, engine_done_cb cb, void *arg)
{
    const char *argv[18];
    size_t lens[18];
    char nums[4][24], more[4][24];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    snprintf(more[0], sizeof more[0], "%u", lease_ms);
    snprintf(more[1], sizeof more[1], "%u", max ? max : 1);
    snprintf(more[2], sizeof more[2], "%lld", (long long)offer_ttl_ms);
    snprintf(more[3], sizeof more[3], "%u", alive_ms ? alive_ms : 1);
    argv[12] = node; lens[12] = strlen(node);
    for (int i = 0; i < 4; i++) { argv[13 + i] = more[i]; lens[13 + i] = strlen(more[i]); }
    argv[17] = k->hooks ? k->hooks : ""; lens[17] = strlen(argv[17]);
    if ((rc = send_script(e, SCRIPT_SWEEP, 18, argv, lens, k, nums, &q))) return rc;
    q->cb.done = cb;
    q->arg = arg;
    return 0;
}

int engine_seats_conn(engine_t *e, const char *node, const char *user, int delta, engine_done_cb cb, void *arg)
{
    static const struct engine_seats_keep none;
    const char *argv[15];
    size_t lens[15];
    char nums[4][24], d[16];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    snprintf(d, sizeof d, "%d", delta);
    argv[12] = user; lens[12] = strlen(user);
    argv[13] = node; lens[13] = strlen(node);
    argv[14] = d; lens[14] = strlen(d);
    if ((rc = send_script(e, SCRIPT_SCONN, 15, argv, lens, &none, nums, &q))) return rc;
    q->cb.done = cb;
    q->arg = arg;
    return 0;
}

static void finish_request(req_t *q, const redisReply *r)
{
    struct engine_seats_res res;

    memset(&res, 0, sizeof res);
    if (!r) {
        res.status = status_of_drop(q->e);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 || r->element[0]->type != REDIS_REPLY_INTEGER ||
               r->element[4]->type != REDIS_REPLY_STRING || r->element[5]->type != REDIS_REPLY_STRING) {
        hlog(LOG_ERROR, "engine", "redis seat script failed: %s",
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
        res.result = (const unsigned char *)r->element[5]->str;
        res.resultlen = r->element[5]->len;
    }
    q->cb.seats(q->arg, &res);
}

/* The answer of a sweep or of a connection count (SCRIPT_SWEEP, SCRIPT_SCONN). */
static void finish_sweep(req_t *q, const redisReply *r)
{
    int status = 0;

    if (!r) {
        status = status_of_drop(q->e);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        hlog(LOG_ERROR, "engine", "redis seat expiry sweep or connection count failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        status = -EIO;
    }
    if (q->cb.done) q->cb.done(q->arg, status, status ? 0 : int_of(r->element[1]));
}

void engine_finish_seats(req_t *q, const redisReply *r)
{
    if (q->script == SCRIPT_SEATS) finish_request(q, r);
    else finish_sweep(q, r);
}
