/* storage/engine_int.h - what engine_redis.c and engine_presence.c share:
 * the engine's structs, the command requests, the presence scripts. Not for
 * use outside storage/engine_*.c. */
#ifndef HERALD_ENGINE_INT_H
#define HERALD_ENGINE_INT_H

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "engine_tls.h"

enum { SCRIPT_PUB, SCRIPT_READ, SCRIPT_PCONN, SCRIPT_PINFO, SCRIPT_PREAD, SCRIPT_PBEAT, SCRIPT_SOPS, SCRIPT_SREAD,
       SCRIPT_SEATS, SCRIPT_SWEEP, SCRIPT_SCONN, SCRIPT_SHOP, SCRIPT_TICKETS, SCRIPT_WHEV,
       SCRIPT_VSTAT, SCRIPT_VLIST, SCRIPT_OCC, NSCRIPTS };
/* A request that is a plain command, not a script: engine_signal()'s PUBLISH. */
#define REQ_SIGNAL NSCRIPTS
/* ... and engine_views_subs()'s HSET or HDEL. */
#define REQ_VSUBS (NSCRIPTS + 1)

/* The presence scripts and the occupancy script (engine_presence.c) and
 * the state scripts (engine_state.c), loaded with the others. */
extern const char engine_pconn_lua[], engine_pinfo_lua[], engine_pread_lua[], engine_pbeat_lua[];
extern const char engine_occ_lua[];
extern const char engine_sops_lua[], engine_sread_lua[];
/* The seat map script (engine_seats.c): SCRIPT_SEATS, SCRIPT_SWEEP and
 * SCRIPT_SCONN all run it (the first loads it, the others find it loaded). */
extern const char engine_seats_lua[];
/* The commerce script (engine_shop.c): SCRIPT_SHOP. */
extern const char engine_shop_lua[];
/* The tickets script (engine_tickets.c): SCRIPT_TICKETS. */
extern const char engine_tickets_lua[];
/* The operator views' scripts (engine_views.c): SCRIPT_VSTAT, SCRIPT_VLIST. */
extern const char engine_vstat_lua[], engine_vlist_lua[];

/* A Lua function the scripts that publish share: append record @rec at
 * offset @off to stream @s (when @keep > 0), trimmed to @keep entries and
 * @ttl ms (0: no age limit) before @now, then PUBLISH "<off>:<epoch>:<rec>"
 * on fan-out key @f. */
#define ENGINE_APPEND_LUA \
    "local function append(s, f, off, epoch, rec, keep, ttl, now)\n" \
    "  keep = tonumber(keep); ttl = tonumber(ttl)\n" \
    "  if keep > 0 then\n" \
    "    redis.call('XADD', s, 'MAXLEN', keep, off .. '-1', 'r', rec, 't', now)\n" \
    "    if ttl > 0 then\n" \
    "      local cutoff = tonumber(now) - ttl\n" \
    "      for _ = 1, 100 do\n" \
    "        local old = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)\n" \
    "        if #old == 0 or tonumber(old[1][2][4]) >= cutoff then break end\n" \
    "        redis.call('XDEL', s, old[1][1])\n" \
    "      end\n" \
    "      redis.call('PEXPIRE', s, ttl)\n" \
    "    end\n" \
    "  end\n" \
    "  redis.call('PUBLISH', f, off .. ':' .. epoch .. ':' .. rec)\n" \
    "end\n"

/* The one Lua function every script that makes webhook events calls
 * (docs/cluster.md#webhooks), so an event is queued in the same script as
 * what it reports: an acknowledged publication always has its events.
 * wh_event(pfx, hooks, chan, kind, off, body, ts): for each webhook name in the
 * table @hooks, take the next event id from P wseq (one counter for every
 * webhook, as the LMDB store's) and queue the event in that webhook's queue:
 * member id with score id in the sorted set P wq:NAME, and in the hash
 * P we:NAME the field id -> "<kind><ts>:<off>:<#chan>:<chan><body>". @kind
 * is 'P' (a publication: @body its record, MessagePack, @off its offset) or
 * 'E' (another event: @body a JSON object, @off 0); @pfx is the key prefix.
 * The counter starts at Redis' clock in microseconds (about 1.8e15, exact
 * in Lua and in a score up to 2^53), not at 1, so that a Redis that lost
 * its data never hands out again an id a receiver has seen and
 * de-duplicates on; ids are written with %d (Lua's own number to string
 * would round them to 14 digits). wh_split(s) makes the table @hooks of
 * webhook names separated by newlines (which no name holds), as the nodes
 * pass them.
 * Queues are sorted sets, not streams, so a dead letter revived goes back
 * under its own id, before the later events of its channel (an XADD cannot
 * go below a stream's last id). Returns nothing. */
#define ENGINE_EVENT_LUA \
    "local function wh_event(pfx, hooks, chan, kind, off, body, ts)\n" \
    "  for _, h in ipairs(hooks) do\n" \
    "    local id = redis.call('INCR', pfx .. 'wseq')\n" \
    "    if id == 1 then\n" \
    "      local t = redis.call('TIME')\n" \
    "      id = tonumber(t[1]) * 1000000 + tonumber(t[2])\n" \
    "      redis.call('SET', pfx .. 'wseq', string.format('%d', id))\n" \
    "    end\n" \
    "    local sid = string.format('%d', id)\n" \
    "    redis.call('ZADD', pfx .. 'wq:' .. h, sid, sid)\n" \
    "    redis.call('HSET', pfx .. 'we:' .. h, sid,\n" \
    "               kind .. ts .. ':' .. off .. ':' .. #chan .. ':' .. chan .. body)\n" \
    "  end\n" \
    "end\n" \
    "local function wh_split(s)\n" \
    "  local t = {}\n" \
    "  for n in string.gmatch(s or '', '[^\\n]+') do t[#t + 1] = n end\n" \
    "  return t\n" \
    "end\n"

/* A state key of hash @st as {version, value or false (no such key)}, read
 * once per script run and kept in @cache, which the caller's writes update
 * in place (engine_shop.c, engine_seats.c: their get()). A stored value is
 * "<version>:<MessagePack>", as engine_state.c writes it. */
#define ENGINE_STATE_CACHED_LUA \
    "local function state_cached(cache, st, k)\n" \
    "  local c = cache[k]\n" \
    "  if c == nil then\n" \
    "    local v = redis.call('HGET', st, k)\n" \
    "    if v then\n" \
    "      local p = string.find(v, ':', 1, true)\n" \
    "      c = {tonumber(string.sub(v, 1, p - 1)), cmsgpack.unpack(string.sub(v, p + 1))}\n" \
    "    else\n" \
    "      c = {0, false}\n" \
    "    end\n" \
    "    cache[k] = c\n" \
    "  end\n" \
    "  return c\n" \
    "end\n"

/* MessagePack writers (be, mstr, mint) and the one integer reader (mdec)
 * the scripts that build deltas need (engine_state.c, engine_seats.c). */
#define ENGINE_MP_LUA \
    "local LIM = 2 ^ 53\n" \
    "local function be(n, bytes)\n" \
    "  local t = {}\n" \
    "  for i = bytes, 1, -1 do t[i] = string.char(n % 256); n = math.floor(n / 256) end\n" \
    "  return table.concat(t)\n" \
    "end\n" \
    "local function mstr(s)\n" \
    "  local n = #s\n" \
    "  if n < 32 then return string.char(160 + n) .. s end\n" \
    "  if n < 256 then return '\\217' .. string.char(n) .. s end\n" \
    "  if n < 65536 then return '\\218' .. be(n, 2) .. s end\n" \
    "  return '\\219' .. be(n, 4) .. s\n" \
    "end\n" \
    "local function mint(n)\n" \
    "  if n >= 0 then\n" \
    "    if n < 128 then return string.char(n) end\n" \
    "    return '\\207' .. be(n, 8)\n" \
    "  end\n" \
    "  if n >= -32 then return string.char(256 + n) end\n" \
    "  local m, t = -n - 1, {}\n" \
    "  for i = 8, 1, -1 do t[i] = string.char(255 - m % 256); m = math.floor(m / 256) end\n" \
    "  return '\\211' .. table.concat(t)\n" \
    "end\n" \
    "local ISZ = {[204]=1, [205]=2, [206]=4, [207]=8, [208]=1, [209]=2, [210]=4, [211]=8}\n" \
    "local function mdec(v)\n" \
    "  local b = v:byte(1)\n" \
    "  if not b then return nil end\n" \
    "  if b < 128 or b >= 224 then\n" \
    "    if #v ~= 1 then return nil end\n" \
    "    if b < 128 then return b end\n" \
    "    return b - 256\n" \
    "  end\n" \
    "  local sz = ISZ[b]\n" \
    "  if not sz or #v ~= sz + 1 then return nil end\n" \
    "  local neg = b >= 208 and v:byte(2) >= 128\n" \
    "  local n = 0\n" \
    "  for i = 2, sz + 1 do\n" \
    "    local x = v:byte(i)\n" \
    "    if neg then x = 255 - x end\n" \
    "    n = n * 256 + x\n" \
    "  end\n" \
    "  if n > LIM then return nil end\n" \
    "  if neg then n = -n - 1 end\n" \
    "  return n\n" \
    "end\n"

struct conn {
    engine_t *e;
    int is_sub;
    redisAsyncContext *ac;
    int up;                       /* connected and through the handshake */
    int resolving;
    unsigned handshake_left;      /* replies still awaited before up */
    unsigned backoff_ms;
    unsigned fails;               /* attempts failed since it was last up */
    unsigned inflight;            /* commands awaiting a reply (command connection) */
    uint64_t progress_ms;         /* the last reply, or when inflight went from 0 to 1 */
    int timed_out;                /* dropped by the watchdog: pending calls get -ETIMEDOUT */
    uv_timer_t timer;             /* connect timeout, then the retry */
    uv_getaddrinfo_t gai;
};

/* An UNSUBSCRIBE not confirmed yet. hiredis 0.14 keeps one callback per
 * channel and drops it when an "unsubscribe" reply comes, so a SUBSCRIBE
 * sent before that reply would lose its callback (and every message after
 * it): such a SUBSCRIBE waits here and is sent with the reply. */
struct unsub {
    struct unsub *next;
    int resubscribe;
    size_t len;
    char name[];                  /* the pub/sub channel, prefix included */
};

struct engine {
    uv_loop_t *loop;
    struct unsub *unsubs;
    struct engine_events ev;
    char host[1024];
    int port;                     /* 0: unix socket at host */
    engine_tls_t *tls;            /* TLS to Redis: hiredis connects through this bridge; NULL: plain */
    char thread_address[1100];    /* engine_thread_address(): [engine] address, or "unix:" the bridge's socket */
    char *password;
    unsigned database;
    char *prefix;
    size_t prefixlen;
    unsigned connect_timeout_ms, command_timeout_ms;
    struct conn cmd, sub;
    char sha[NSCRIPTS][41];
    uv_timer_t watchdog;
    int stopping;
    unsigned open_handles;
};

/* A command on the command connection. The arguments are kept so that a
 * NOSCRIPT (Redis restarted, or SCRIPT FLUSH) is answered by sending the
 * same call as EVAL, which loads the script again. */
typedef struct req {
    engine_t *e;
    int script;                   /* SCRIPT_*, REQ_SIGNAL, or -1: a handshake command */
    union {
        engine_pub_cb pub;
        engine_read_cb read;
        engine_done_cb done;
        engine_presence_cb pres;
        engine_beat_cb beat;
        engine_state_cb sops;
        engine_state_read_cb sread;
        engine_seats_cb seats;
        engine_shop_cb shop;
        engine_tickets_cb tickets;
        engine_views_cb views;
    } cb;
    void *arg;
    int retried;
    int argc;
    const char **argv;
    size_t *argvlen;
    char buf[];                   /* the arguments' bytes */
} req_t;

/* req_new() - a request for @script with @argc arguments (copied).
 * Return: the request, or NULL (out of memory). */
req_t *req_new(engine_t *e, int script, int argc, const char *const *argv, const size_t *lens);

/* req_send() - send @q on the command connection; its reply goes to the
 * finish function of its script, which frees nothing (on_reply frees @q).
 * Return: 0; -ENOTCONN (not sent: the caller frees @q). */
int req_send(req_t *q);

/* status_of_drop() - the status a request gets when its connection went
 * before the reply: -ECANCELED (stopping), -ETIMEDOUT or -EIO. */
int status_of_drop(engine_t *e);

/* int_of() - @r (an integer or a decimal string) as a number; 0 otherwise. */
uint64_t int_of(const redisReply *r);

/* engine_eval_send() - send EVALSHA of @script with @nkeys keys: fills
 * argv[0..2] (@argv and @lens have room for @argc, the keys and arguments
 * from index 3). Return: 0 and *@out (set its callback now); -ENOTCONN;
 * -ENOMEM (nothing sent). */
int engine_eval_send(engine_t *e, int script, int nkeys, int argc, const char **argv, size_t *lens, req_t **out);

/* engine_random_epoch() - a fresh epoch (HIST_EPOCH_LEN hex digits and a
 * NUL) into @out, for a channel's first publication. */
void engine_random_epoch(char *out);

/* engine_finish_state() - answer state request @q (SCRIPT_SOPS or
 * SCRIPT_SREAD) with @r (NULL: the connection went). */
void engine_finish_state(req_t *q, const redisReply *r);

/* engine_finish_seats() - answer seat request, sweep or connection count @q
 * (SCRIPT_SEATS, SCRIPT_SWEEP, SCRIPT_SCONN) with @r (NULL: the connection
 * went). */
void engine_finish_seats(req_t *q, const redisReply *r);

/* engine_finish_shop() - answer commerce request @q (SCRIPT_SHOP) with @r
 * (NULL: the connection went). */
void engine_finish_shop(req_t *q, const redisReply *r);
/* engine_finish_tickets() - answer ticket request @q (SCRIPT_TICKETS) with
 * @r (NULL: the connection went). */
void engine_finish_tickets(req_t *q, const redisReply *r);

/* engine_finish_views() - answer a views request @q (SCRIPT_VSTAT,
 * SCRIPT_VLIST, REQ_VSUBS) with @r (NULL: the connection went). */
void engine_finish_views(req_t *q, const redisReply *r);

/* engine_finish_presence() - answer presence or occupancy request @q with
 * @r (NULL: the connection went). */
void engine_finish_presence(req_t *q, const redisReply *r);

/* engine_on_presence_msg() - a presence event (@p, @n bytes, starting with
 * 'P') arrived on @chan's fan-out key: parse it, call on_presence.
 * Return: 0, or -1 when it is malformed (nothing called; the caller logs). */
int engine_on_presence_msg(engine_t *e, const char *chan, size_t len, const char *p, size_t n);

#endif
