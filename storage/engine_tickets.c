/* storage/engine_tickets.c - the support-tickets adapter in the Redis
 * engine (engine.h): the script that runs a ticket request with the rules
 * of storage/tickets_db.c and publishes the dashboard's delta and the
 * changed tickets' timeline entries.
 *
 * Owns: the tickets' unpublished rows in Redis and the script below. Does
 * not own: the connections or the requests' life (engine_redis.c), the
 * state keys' layout (engine_state.c, shared: the dashboard is a state
 * channel whose keys are "ticket:<id>", so listing, filtering and
 * snapshots are the state reads), validating requests or answering them
 * (app/tickets.c, core/cluster_tickets.c).
 * Keys, under the prefix P, besides the state keys of the dashboard C:
 *   P ta:C   hash: the rows tickets_db.c keeps beside the state in LMDB's
 *            aux table: "seq" (the last generated id's number) and
 *            "comment:<id>:<n>" (each comment, as MessagePack).
 * DESIGN: one script per request (Redis runs it alone, so the check and the
 * change are one step, as a ticket request is one LMDB write transaction):
 * it reads the tickets it needs, refuses before writing anything (Redis
 * does not roll a script back), applies the change to its copies, writes the
 * touched keys and rows, publishes the delta through the same append() as a
 * publication, then each changed ticket's timeline entry as the next offset
 * of its channel "{timeline_ns}:{id}", each queued for the webhooks that
 * want that channel's publications (req.hp), as LMDB queues them. A ticket's value and the reports are
 * MessagePack written by the script itself in a fixed field order (Redis'
 * cmsgpack orders a table's fields by its hash and cannot write a null,
 * which "assignee" and "from" need). The "ticket.changed" webhook event of
 * each entry is queued right after it, in the same script (events(), through
 * engine_int.h's wh_event()): an acknowledged change always has its events,
 * a refused one none. Webhook events are JSON (Redis' cjson), as LMDB's. */
#include "engine.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ARGV: prefix, the dashboard channel, its keep and ttl, an epoch for it if
 * it has none, the timelines' keep and ttl, notify (0/1: 0 when the
 * timelines' namespace is a state one, which takes only its own deltas),
 * an epoch for a timeline that has none, the request (JSON: engine.h).
 * Returns {0, offset, epoch, unchanged (0/1), record, report, timelines}
 * (timelines: channel, offset, ... as published), or {1, 0, '', 1, '',
 * refusal, {}}; report and refusal as MessagePack. */
const char engine_tickets_lua[] =
    ENGINE_APPEND_LUA
    ENGINE_MP_LUA
    ENGINE_EVENT_LUA
    "local P, chan = ARGV[1], ARGV[2]\n"
    "local bkeep, bttl, ep1 = ARGV[3], ARGV[4], ARGV[5]\n"
    "local tkeep, tttl, tnote, ep2 = ARGV[6], ARGV[7], ARGV[8], ARGV[9]\n"
    "local req = cjson.decode(ARGV[10])\n"
    "local NULL = cjson.null\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ST, SK, M, AUX = P .. 'st:' .. chan, P .. 'sk:' .. chan, P .. 'm:' .. chan, P .. 'ta:' .. chan\n"
    "-- MessagePack in a fixed field order (cmsgpack's follows the table's hash and\n"
    "-- drops nulls): a ticket's fields as tickets_db.c makes them, then the rest.\n"
    "local ORDER = {'type', 'id', 'n', 'title', 'description', 'status', 'priority', 'requester', 'assignee',\n"
    "               'author', 'text', 'created', 'updated', 'comments', 'updated_by', 'from', 'to', 'bulk',\n"
    "               'ticket', 'comment', 'by', 'at'}\n"
    "local RANK = {}\n"
    "for i, k in ipairs(ORDER) do RANK[k] = i end\n"
    "local AMT = {}\n"
    "local function arr(a) return setmetatable(a or {}, AMT) end\n"
    "local function before(a, b)\n"
    "  local ra, rb = RANK[a] or 1000, RANK[b] or 1000\n"
    "  if ra ~= rb then return ra < rb end\n"
    "  return a < b\n"
    "end\n"
    "local function enc(v)\n"
    "  if v == nil or v == NULL then return '\\192' end\n"
    "  local ty = type(v)\n"
    "  if ty == 'boolean' then\n"
    "    if v then return '\\195' end\n"
    "    return '\\194'\n"
    "  end\n"
    "  if ty == 'number' then return mint(v) end\n"
    "  if ty == 'string' then return mstr(v) end\n"
    "  local out = {}\n"
    "  if getmetatable(v) == AMT then\n"
    "    if #v < 16 then out[1] = string.char(144 + #v) else out[1] = '\\221' .. be(#v, 4) end\n"
    "    for i = 1, #v do out[i + 1] = enc(v[i]) end\n"
    "    return table.concat(out)\n"
    "  end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, before)\n"
    "  if #keys < 16 then out[1] = string.char(128 + #keys) else out[1] = '\\223' .. be(#keys, 4) end\n"
    "  for _, k in ipairs(keys) do out[#out + 1] = mstr(k) .. enc(v[k]) end\n"
    "  return table.concat(out)\n"
    "end\n"
    "local function record(data)\n"
    "  return '\\130' .. mstr('ts') .. mint(now) .. mstr('data') .. data\n"
    "end\n"
    "-- @hooks: the webhooks that get this publication (req.hp.board for the\n"
    "-- dashboard, req.hp.tl for a timeline, as the node found them for the\n"
    "-- namespace), queued as hist_tx_publish() queues them on LMDB.\n"
    "local HP = req.hp or {}\n"
    "local function pub(c, rec, keep, ttl, e, hooks)\n"
    "  local m = P .. 'm:' .. c\n"
    "  local off = redis.call('HINCRBY', m, 'offset', 1)\n"
    "  local epoch = redis.call('HGET', m, 'epoch')\n"
    "  if not epoch then epoch = e; redis.call('HSET', m, 'epoch', epoch) end\n"
    "  append(P .. 's:' .. c, P .. 'f:' .. c, off, epoch, rec, keep, ttl, now)\n"
    "  if type(hooks) == 'table' and #hooks > 0 then wh_event(P, hooks, c, 'P', off, rec, now) end\n"
    "  return off, epoch\n"
    "end\n"
    "local function named(c)\n"
    "  return #c > 0 and #c <= 255 and not string.find(c, '[^%w_%-%.:@,#=/~]')\n"
    "end\n"
    "-- The status machine: tickets_db.c's tickets_next(), as the request brings it.\n"
    "local NEXT = req.next\n"
    "local function may(from, to)\n"
    "  for _, s in ipairs(NEXT[from] or {}) do if s == to then return true end end\n"
    "  return false\n"
    "end\n"
    "local function allowed(from)\n"
    "  local a = arr()\n"
    "  for i, s in ipairs(NEXT[from] or {}) do a[i] = s end\n"
    "  return a\n"
    "end\n"
    "-- The \"ticket.changed\" webhook event of a timeline entry (@name its channel,\n"
    "-- @id its ticket), as tickets_db.c's tell() queues it: the entry's fields, its\n"
    "-- type as \"change\", then \"type\", \"ticket\" (the id) and \"channel\"; none for\n"
    "-- a name tell() cannot write (256 bytes or more), one whether or not the entry\n"
    "-- was published. Ordered by its channel, as LMDB orders it by \"channel\".\n"
    "local function events(name, id, entry)\n"
    "  local hooks = req.hooks\n"
    "  if type(hooks) ~= 'table' or #hooks == 0 or #name >= 256 then return end\n"
    "  local ev = {}\n"
    "  for k, v in pairs(entry) do ev[k] = v end\n"
    "  ev.change, ev.type, ev.ticket, ev.channel = entry.type, 'ticket.changed', id, name\n"
    "  wh_event(P, hooks, name, 'E', 0, cjson.encode(ev), now)\n"
    "end\n"
    "local floor = tonumber(redis.call('HGET', M, 'sfloor') or '0')\n"
    "local cache, changes, touched, aux = {}, {}, {}, {}\n"
    "local function get(id)\n"
    "  local k = 'ticket:' .. id\n"
    "  local c = cache[k]\n"
    "  if c == nil then\n"
    "    local v = redis.call('HGET', ST, k)\n"
    "    c = {0, false, false}\n"
    "    if v then\n"
    "      local p = string.find(v, ':', 1, true)\n"
    "      local tk = cmsgpack.unpack(string.sub(v, p + 1))\n"
    "      if type(tk) ~= 'table' then tk = false elseif tk.assignee == nil then tk.assignee = NULL end\n"
    "      c = {tonumber(string.sub(v, 1, p - 1)), tk, true}\n"
    "    end\n"
    "    cache[k] = c\n"
    "  end\n"
    "  return c\n"
    "end\n"
    "local function put(tk)\n"
    "  local k = 'ticket:' .. tk.id\n"
    "  local c = get(tk.id)\n"
    "  local nv = floor + 1\n"
    "  if c[3] then nv = c[1] + 1 end\n"
    "  local e = enc(tk)\n"
    "  c[1], c[2], c[3], c[4] = nv, tk, true, e\n"
    "  touched[#touched + 1] = k\n"
    "  changes[#changes + 1] = '\\131' .. mstr('key') .. mstr(k) .. mstr('value') .. e .. mstr('version')\n"
    "                          .. mint(nv)\n"
    "end\n"
    "local function touch(tk, by)\n"
    "  tk.updated = now\n"
    "  if by then tk.updated_by = by end\n"
    "end\n"
    "local function refuse(code, reason, details)\n"
    "  local r = details or {}\n"
    "  r.code, r.reason = code, reason\n"
    "  return {1, 0, '', 1, '', enc(r), {}}\n"
    "end\n"
    "local a, res, entries = req.a, nil, {}\n"
    "if a == 'create' then\n"
    "  local id = req.ticket.id\n"
    "  if type(id) ~= 'string' then\n"
    "    local n = tonumber(redis.call('HGET', AUX, 'seq') or '0') + 1\n"
    "    -- A generated id may meet one a backend chose: skip past it.\n"
    "    while true do\n"
    "      id = string.format('T%06d', n)\n"
    "      if not get(id)[2] then break end\n"
    "      n = n + 1\n"
    "    end\n"
    "    aux.seq = n\n"
    "  end\n"
    "  local c = get(id)\n"
    "  if c[2] then return refuse(129, 'a ticket with this id exists: nothing changed', {ticket = c[2]}) end\n"
    "  local f = req.ticket\n"
    "  local tk = {id = id, title = f.title, description = f.description, status = 'open', priority = f.priority,\n"
    "              requester = f.requester, assignee = NULL, created = now, updated = now, comments = 0}\n"
    "  put(tk)\n"
    "  res = {ticket = tk}\n"
    "  entries[1] = {id, {type = 'created', ticket = tk}, now}\n"
    "elseif a == 'bulk_status' then\n"
    "  local found, unknown, refused, from = {}, arr(), arr(), {}\n"
    "  for i, id in ipairs(req.ids) do\n"
    "    local tk = get(id)[2]\n"
    "    if not tk then\n"
    "      unknown[#unknown + 1] = id\n"
    "    else\n"
    "      if not may(tk.status, req.status) then\n"
    "        refused[#refused + 1] = {id = id, status = tk.status, allowed = allowed(tk.status)}\n"
    "      end\n"
    "      found[i] = tk\n"
    "    end\n"
    "  end\n"
    "  if #unknown > 0 then\n"
    "    return refuse(128, 'some ids name no ticket: nothing changed', {unknown = unknown, refused = refused})\n"
    "  end\n"
    "  if #refused > 0 then\n"
    "    return refuse(123, #refused .. ' of the ' .. #req.ids .. ' tickets cannot become ' .. req.status ..\n"
    "                  ': nothing changed', {refused = refused})\n"
    "  end\n"
    "  local list = arr()\n"
    "  for i, tk in ipairs(found) do\n"
    "    from[tk.id] = tk.status\n"
    "    tk.status = req.status\n"
    "    touch(tk, req.by)\n"
    "    put(tk)\n"
    "    list[i] = tk\n"
    "    entries[i] = {tk.id, {type = 'status', from = from[tk.id], to = tk.status, bulk = true}, tk.updated}\n"
    "  end\n"
    "  res = {tickets = list, from = from}\n"
    "else\n"
    "  local tk = get(req.id)[2]\n"
    "  if not tk then return refuse(128, 'no ticket has this id') end\n"
    "  if a == 'get' then\n"
    "    local n, list = tonumber(tk.comments) or 0, arr()\n"
    "    local k = 1\n"
    "    if n > 100 then k = n - 100 + 1 end\n"
    "    for i = k, n do\n"
    "      local v = redis.call('HGET', AUX, 'comment:' .. req.id .. ':' .. i)\n"
    "      if v then list[#list + 1] = cmsgpack.unpack(v) end\n"
    "    end\n"
    "    local none = record('\\129' .. mstr('changes') .. '\\144')\n"
    "    local last = tonumber(redis.call('HGET', M, 'offset') or '0')\n"
    "    return {0, last, redis.call('HGET', M, 'epoch') or '', 1, none,\n"
    "            enc({ticket = tk, comments = list}), {}}\n"
    "  elseif a == 'status' then\n"
    "    local from = tk.status\n"
    "    if type(from) ~= 'string' then from = '' end\n"
    "    if not may(from, req.status) then\n"
    "      return refuse(123, 'a ticket in status ' .. from .. ' cannot become ' .. req.status ..\n"
    "                    ': nothing changed',\n"
    "                    {status = from, allowed = allowed(from)})\n"
    "    end\n"
    "    tk.status = req.status\n"
    "    touch(tk, req.by)\n"
    "    res = {ticket = tk, from = from}\n"
    "    entries[1] = {tk.id, {type = 'status', from = from, to = tk.status}, now}\n"
    "  elseif a == 'assign' then\n"
    "    local from = tk.assignee\n"
    "    tk.assignee = req.assignee or NULL\n"
    "    touch(tk, req.by)\n"
    "    res = {ticket = tk, from = from}\n"
    "    entries[1] = {tk.id, {type = 'assigned', from = from, to = tk.assignee}, now}\n"
    "  elseif a == 'comment' then\n"
    "    local n = (tonumber(tk.comments) or 0) + 1\n"
    "    local row = {n = n, author = req.comment.author, text = req.comment.text, at = now}\n"
    "    tk.comments = n\n"
    "    touch(tk, req.comment.author)\n"
    "    aux['comment:' .. tk.id .. ':' .. n] = enc(row)\n"
    "    res = {ticket = tk, comment = row}\n"
    "    entries[1] = {tk.id, {type = 'comment', comment = row}, now}\n"
    "  else\n"
    "    return redis.error_reply('unknown tickets action')\n"
    "  end\n"
    "  put(tk)\n"
    "end\n"
    "-- Nothing was refused: write, publish the board's delta, then each\n"
    "-- changed ticket's timeline entry as its channel's next offset.\n"
    "for _, k in ipairs(touched) do\n"
    "  local c = cache[k]\n"
    "  redis.call('HSET', ST, k, c[1] .. ':' .. c[4])\n"
    "  redis.call('ZADD', SK, 0, k)\n"
    "end\n"
    "for k, v in pairs(aux) do redis.call('HSET', AUX, k, v) end\n"
    "local rec = record('\\129' .. mstr('changes') .. '\\221' .. be(#changes, 4) .. table.concat(changes))\n"
    "local off, epoch = pub(chan, rec, bkeep, bttl, ep1, HP.board)\n"
    "local sides = {}\n"
    "for _, e in ipairs(entries) do\n"
    "  local id, entry = e[1], e[2]\n"
    "  if req.by then entry.by = req.by end\n"
    "  entry.at = e[3]\n"
    "  local name = req.tl .. ':' .. id\n"
    "  if tnote == '1' and named(name) then\n"
    "    sides[#sides + 1] = name\n"
    "    sides[#sides + 1] = pub(name, record(enc(entry)), tkeep, tttl, ep2, HP.tl)\n"
    "  end\n"
    "  events(name, id, entry)\n"
    "end\n"
    "return {0, off, epoch, 0, rec, enc(res), sides}\n";

int engine_tickets(engine_t *e, const char *chan, size_t len, const char *req, size_t reqlen,
                   const struct engine_tickets_keep *k, engine_tickets_cb cb, void *arg)
{
    char nums[4][24], ep1[HIST_EPOCH_LEN + 1], ep2[HIST_EPOCH_LEN + 1];
    const unsigned v[4] = { k->board.size, k->board.ttl_ms, k->timeline.size, k->timeline.ttl_ms };
    const char *argv[13];
    size_t lens[13];
    req_t *q = NULL;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    for (int i = 0; i < 4; i++) snprintf(nums[i], sizeof nums[i], "%u", v[i]);
    engine_random_epoch(ep1);
    engine_random_epoch(ep2);
    argv[3] = e->prefix; lens[3] = e->prefixlen;
    argv[4] = chan; lens[4] = len;
    argv[5] = nums[0]; argv[6] = nums[1]; argv[7] = ep1;
    argv[8] = nums[2]; argv[9] = nums[3]; argv[10] = k->notify ? "1" : "0"; argv[11] = ep2;
    for (int i = 5; i <= 11; i++) lens[i] = strlen(argv[i]);
    argv[12] = req; lens[12] = reqlen;
    if ((rc = engine_eval_send(e, SCRIPT_TICKETS, 0, 13, argv, lens, &q))) return rc;
    q->cb.tickets = cb;
    q->arg = arg;
    return 0;
}

/* The timelines the script published: channel, offset, ... (@r's elements,
 * borrowed); NULL with *@n 0 when there are none. Return: 0 or -ENOMEM. */
static int sides_of(const redisReply *r, struct engine_side **out, size_t *n)
{
    struct engine_side *s;

    *out = NULL;
    *n = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) return 0;
    if (!(s = calloc(r->elements / 2, sizeof *s))) return -ENOMEM;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING) continue;
        s[*n].chan = r->element[i]->str;
        s[*n].len = r->element[i]->len;
        s[*n].offset = int_of(r->element[i + 1]);
        (*n)++;
    }
    *out = s;
    return 0;
}

void engine_finish_tickets(req_t *q, const redisReply *r)
{
    struct engine_tickets_res res;
    struct engine_side *sides = NULL;

    memset(&res, 0, sizeof res);
    if (!r) {
        res.status = status_of_drop(q->e);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 || r->element[0]->type != REDIS_REPLY_INTEGER ||
               r->element[4]->type != REDIS_REPLY_STRING || r->element[5]->type != REDIS_REPLY_STRING) {
        hlog(LOG_ERROR, "engine", "redis tickets script failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        res.status = -EIO;
    } else if (sides_of(r->element[6], &sides, &res.nsides)) {
        res.status = -ENOMEM;
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
        res.sides = sides;
    }
    q->cb.tickets(q->arg, &res);
    free(sides);
}
