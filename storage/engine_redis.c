/* storage/engine_redis.c - the Redis engine (engine.h): hiredis on the
 * broker's loop, the Lua scripts, the key layout.
 *
 * Owns: the two connections (commands, subscriptions), their reconnection
 * with backoff and their timeouts, the scripts and their replies. Does not
 * own: channels, subscribers or what a publication means to them
 * (core/cluster.c).
 * Keys, under the configured prefix P and channel name C:
 *   P m:C  hash {offset, epoch}: the channel's last offset and its epoch,
 *          the epoch drawn by a node at the channel's first publication or
 *          first subscription (whichever comes first);
 *   P s:C  stream of records, entry id "<offset>-1", fields r (the record,
 *          MessagePack as protocol/record.h) and t (ms), trimmed to the
 *          namespace's history_size and history_ttl, and expiring with it;
 *   P f:C  the pub/sub channel a publication is announced on:
 *          "<offset>:<epoch>:<record>"; also presence events ("P...",
 *          engine_presence.c) and signals ("S:<payload>", PUBLISHed by
 *          engine_signal() without a script: nothing is stored). Whatever
 *          else arrives there is logged (at most every 10 s) and dropped;
 *   P i:C K  (a space, which channel names never hold, before the client's
 *          idempotency key K) "<digest hex>:<offset>", expiring after
 *          history.idempotency_window.
 * Presence keys and scripts are engine_presence.c's; state keys and scripts
 * engine_state.c's; the operator views' engine_views.c's.
 * hiredis 0.14 resolves host names with a blocking getaddrinfo(), so names
 * are resolved here with uv_getaddrinfo() and hiredis is given the address;
 * it has no command timeout either, so a watchdog drops a connection whose
 * oldest pending command waited longer than command_timeout. Its libuv
 * adapter ignores a poll error (libuv then stops polling), so a refused
 * connect or a reset connection would never reach hiredis: this file has
 * its own glue, which hands such errors to hiredis to find. TCP keepalive
 * finds a Redis host that vanished without a word. hiredis 0.14 has no TLS
 * either: with [engine] tls = on each connection goes to a unix socket of
 * engine_tls.c's bridge, which carries it to Redis over TLS; to this file
 * it is a connection like another (a TLS failure is a disconnect). The
 * webhook delivery threads' own connections (engine_webhooks.c) go to the
 * bridge's third socket, routed here with the command connection; this
 * file only hands out its path (engine_thread_address()). */
#include "engine.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <netdb.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define WATCHDOG_MS 250
/* At most one "malformed message" line per this long (the rest are counted). */
#define MALFORMED_LOG_MS 10000

/* KEYS: meta, stream, fan-out, idempotency key. ARGV: record, keep, ttl_ms,
 * now_ms, epoch to use if the channel has none, reply_to, the request's
 * digest ("": no idempotency key), the key's window in ms, "1" to check
 * that the publication at reply_to has the record's author. Returns
 * {offset, epoch}; {-1, last} when reply_to is beyond the last offset;
 * {-2, offset} when the key answered the same request, {-3, offset}
 * another request; {-4, reply_to} when that publication is no longer
 * kept, {-5, reply_to} when another author made it. The author is the
 * record's from.user, else (anonymous) from.client, as rec_same_author().
 * Then, when the publication goes to webhooks: ARGV[10] the key prefix,
 * ARGV[11] the channel, ARGV[12..] the webhooks' names (ENGINE_EVENT_LUA). */
static const char pub_lua[] =
    ENGINE_APPEND_LUA
    ENGINE_EVENT_LUA
    "local function author(rec)\n"
    "  local ok, r = pcall(cmsgpack.unpack, rec)\n"
    "  if not ok or type(r) ~= 'table' or type(r.from) ~= 'table' then return nil end\n"
    "  if type(r.from.user) == 'string' then return 'u:' .. r.from.user end\n"
    "  if type(r.from.client) == 'string' then return 'c:' .. r.from.client end\n"
    "  return nil\n"
    "end\n"
    "if ARGV[7] ~= '' then\n"
    "  local seen = redis.call('GET', KEYS[4])\n"
    "  if seen then\n"
    "    local dg, o = string.match(seen, '^(%x+):(%d+)$')\n"
    "    if dg == ARGV[7] then return {-2, tonumber(o)} end\n"
    "    return {-3, tonumber(o)}\n"
    "  end\n"
    "end\n"
    "local last = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')\n"
    "local rt = tonumber(ARGV[6])\n"
    "if rt > 0 and rt > last then return {-1, last} end\n"
    "if ARGV[9] == '1' then\n"
    "  local t = redis.call('XRANGE', KEYS[2], rt .. '-1', rt .. '-1')\n"
    "  if #t == 0 then return {-4, rt} end\n"
    "  local a = author(ARGV[1])\n"
    "  if not a or a ~= author(t[1][2][2]) then return {-5, rt} end\n"
    "end\n"
    "local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)\n"
    "if ARGV[7] ~= '' then redis.call('SET', KEYS[4], ARGV[7] .. ':' .. off, 'PX', ARGV[8]) end\n"
    "local epoch = redis.call('HGET', KEYS[1], 'epoch')\n"
    "if not epoch then epoch = ARGV[5]; redis.call('HSET', KEYS[1], 'epoch', epoch) end\n"
    "append(KEYS[2], KEYS[3], off, epoch, ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"
    "if #ARGV > 11 then wh_event(ARGV[10], {unpack(ARGV, 12)}, ARGV[11], 'P', off, ARGV[1], ARGV[4]) end\n"
    "return {off, epoch}\n";

/* KEYS: meta, stream. ARGV: after, upto (0: the last), before (0: none),
 * limit, reverse ("1"), the epoch the channel takes now if it has none
 * ("": none; a subscription's position read, so that its subscribers learn
 * the epoch the first publication keeps). Returns {epoch, last, first, then
 * offset, record, ts for each entry}. */
static const char read_lua[] =
    "local last = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')\n"
    "local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''\n"
    "if epoch == '' and ARGV[6] ~= '' then\n"
    "  epoch = ARGV[6]\n"
    "  redis.call('HSET', KEYS[1], 'epoch', epoch)\n"
    "end\n"
    "local upto = tonumber(ARGV[2])\n"
    "if upto == 0 or upto > last then upto = last end\n"
    "local before = tonumber(ARGV[3])\n"
    "if before > 0 and before - 1 < upto then upto = before - 1 end\n"
    "local after = tonumber(ARGV[1])\n"
    "local limit = tonumber(ARGV[4])\n"
    "local first = last + 1\n"
    "local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "if #f > 0 then first = tonumber(string.match(f[1][1], '^(%d+)')) end\n"
    "local out = {epoch, last, first}\n"
    "if upto > after and limit > 0 then\n"
    "  local ents\n"
    "  if ARGV[5] == '1' then\n"
    "    ents = redis.call('XREVRANGE', KEYS[2], upto .. '-1', (after + 1) .. '-1', 'COUNT', limit)\n"
    "  else\n"
    "    ents = redis.call('XRANGE', KEYS[2], (after + 1) .. '-1', upto .. '-1', 'COUNT', limit)\n"
    "  end\n"
    "  for _, e in ipairs(ents) do\n"
    "    out[#out + 1] = tonumber(string.match(e[1], '^(%d+)'))\n"
    "    out[#out + 1] = e[2][2]\n"
    "    out[#out + 1] = tonumber(e[2][4])\n"
    "  end\n"
    "end\n"
    "return out\n";

/* ARGV: the key prefix, the channel, the event (a JSON object), now (ms),
 * then the webhooks' names: queues the event for each (ENGINE_EVENT_LUA). */
static const char whev_lua[] =
    ENGINE_EVENT_LUA
    "wh_event(ARGV[1], {unpack(ARGV, 5)}, ARGV[2], 'E', 0, ARGV[3], ARGV[4])\n"
    "return #ARGV - 4\n";

static const char *const scripts[NSCRIPTS] = { pub_lua, read_lua, engine_pconn_lua, engine_pinfo_lua, engine_pread_lua,
                                               engine_pbeat_lua, engine_sops_lua, engine_sread_lua,
                                               engine_seats_lua, engine_seats_lua, engine_seats_lua,
                                               engine_shop_lua, engine_tickets_lua, whev_lua,
                                               engine_vstat_lua, engine_vlist_lua, engine_occ_lua };

static uint64_t now_ms(engine_t *e) { return uv_now(e->loop); }

static void conn_connect(struct conn *c);

static void on_conn_timer(uv_timer_t *t) { conn_connect(t->data); }

/* ---- hiredis on the loop ---- */

struct rpoll {
    uv_poll_t handle;
    redisAsyncContext *ac;        /* NULL once hiredis let go of the context */
    int events;                   /* UV_READABLE | UV_WRITABLE hiredis wants */
};

static void rpoll_on(uv_poll_t *h, int status, int events)
{
    struct rpoll *p = h->data;

    if (status < 0) {
        /* POLLERR (libuv stopped the handle): a read or a write makes
         * hiredis see the socket's error and close the connection. */
        events = p->events & UV_WRITABLE ? UV_WRITABLE : UV_READABLE;
    }
    if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
    if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac && status < 0 && p->events) uv_poll_start(&p->handle, p->events, rpoll_on);
}

static void rpoll_set(void *data, int add, int ev)
{
    struct rpoll *p = data;

    p->events = add ? p->events | ev : p->events & ~ev;
    if (p->events) uv_poll_start(&p->handle, p->events, rpoll_on);
    else uv_poll_stop(&p->handle);
}

static void rpoll_add_read(void *data) { rpoll_set(data, 1, UV_READABLE); }
static void rpoll_del_read(void *data) { rpoll_set(data, 0, UV_READABLE); }
static void rpoll_add_write(void *data) { rpoll_set(data, 1, UV_WRITABLE); }
static void rpoll_del_write(void *data) { rpoll_set(data, 0, UV_WRITABLE); }

static void rpoll_closed(uv_handle_t *h) { free(h->data); }

/* hiredis frees the context: the handle goes on the next loop turn. */
static void rpoll_cleanup(void *data)
{
    struct rpoll *p = data;

    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, rpoll_closed);
}

static int rpoll_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct rpoll *p = calloc(1, sizeof *p);

    if (!p) return -ENOMEM;
    if (uv_poll_init(loop, &p->handle, ac->c.fd)) {
        free(p);
        return -EIO;
    }
    p->handle.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = rpoll_add_read;
    ac->ev.delRead = rpoll_del_read;
    ac->ev.addWrite = rpoll_add_write;
    ac->ev.delWrite = rpoll_del_write;
    ac->ev.cleanup = rpoll_cleanup;
    return 0;
}

/* ---- connection life ---- */

static void retry_later(struct conn *c)
{
    engine_t *e = c->e;
    if (e->stopping) return;
    c->fails++;
    uv_timer_start(&c->timer, on_conn_timer, c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void unsubs_clear(engine_t *e)
{
    while (e->unsubs) {
        struct unsub *u = e->unsubs;
        e->unsubs = u->next;
        free(u);
    }
}

/* The first failure to connect is an error; while Redis stays away, one
 * in 12 (about a minute at the longest backoff) repeats it, the others are
 * debug lines. */
static enum log_level fail_level(const struct conn *c)
{
    return c->fails % 12 == 0 ? LOG_ERROR : LOG_DEBUG;
}

static const char *conn_name(const struct conn *c) { return c->is_sub ? "subscription" : "command"; }

static void went_down(struct conn *c)
{
    engine_t *e = c->e;
    int was_up = c->up;

    c->ac = NULL;
    c->up = 0;
    c->inflight = 0;
    if (c->is_sub) unsubs_clear(e);
    if (was_up) {
        hlog(LOG_ERROR, "engine", "redis %s connection to %s lost; reconnecting", conn_name(c),
             e->port ? e->host : "unix socket");
        if (c->is_sub) e->ev.on_sub(e->ev.ctx, 0);
        else e->ev.on_cmd(e->ev.ctx, 0);
    }
    retry_later(c);
}

static void now_up(struct conn *c)
{
    engine_t *e = c->e;

    uv_timer_stop(&c->timer);                   /* the connect timeout covers the handshake too */
    c->up = 1;
    c->fails = 0;
    c->backoff_ms = BACKOFF_MIN_MS;
    hlog(LOG_INFO, "engine", "redis %s connection up (%s%s%d%s)", conn_name(c), e->host, e->port ? ":" : "",
         e->port, e->tls ? ", TLS" : "");
    if (c->is_sub) e->ev.on_sub(e->ev.ctx, 1);
    else e->ev.on_cmd(e->ev.ctx, 1);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    (void)status;
    if (!c || c->ac != ac) return;
    went_down(c);
}

/* A handshake reply (AUTH, SELECT, SCRIPT LOAD). */
static void on_handshake(redisAsyncContext *ac, void *r, void *priv)
{
    struct conn *c = ac->data;
    redisReply *reply = r;
    intptr_t script = (intptr_t)priv;

    if (!c || !reply) return;                   /* going down */
    if (reply->type == REDIS_REPLY_ERROR) {
        hlog(fail_level(c), "engine", "redis %s connection: %s refused: %s", conn_name(c),
             script >= 0 ? "SCRIPT LOAD" : "AUTH/SELECT/PING", reply->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (script >= 0 && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(c->e->sha[script], reply->str, 41);
    if (--c->handshake_left == 0) now_up(c);
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv);

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct conn *c = ac->data;
    engine_t *e;

    if (!c) return;
    e = c->e;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns. */
        hlog(fail_level(c), "engine", "cannot connect to redis at %s%s%.0d (%s connection): %s; retrying", e->host,
             e->port ? ":" : "", e->port, conn_name(c), ac->errstr);
        c->ac = NULL;
        retry_later(c);
        return;
    }
}

/* Queues the handshake on a connection still connecting: hiredis 0.14
 * finishes connecting only once something is to be written, and sends
 * these first. The connection is up when the last of them answers. */
static void handshake(struct conn *c)
{
    redisAsyncContext *ac = c->ac;
    engine_t *e = c->e;

    c->handshake_left = 0;
    if (e->password && *e->password) {
        redisAsyncCommand(ac, on_handshake, (void *)(intptr_t)-1, "AUTH %s", e->password);
        c->handshake_left++;
    }
    if (!c->is_sub) {
        if (e->database) {
            redisAsyncCommand(ac, on_handshake, (void *)(intptr_t)-1, "SELECT %u", e->database);
            c->handshake_left++;
        }
        for (intptr_t i = 0; i < NSCRIPTS; i++) {
            redisAsyncCommand(ac, on_handshake, (void *)i, "SCRIPT LOAD %s", scripts[i]);
            c->handshake_left++;
        }
    }
    redisAsyncCommand(ac, on_handshake, (void *)(intptr_t)-1, "PING");
    c->handshake_left++;
}

static void start_ac(struct conn *c, const char *addr)
{
    engine_t *e = c->e;
    redisAsyncContext *ac;

    /* The delivery threads' connections (engine_thread_address()) go where
     * the command connection goes: the address as last resolved. */
    if (e->tls && !c->is_sub) engine_tls_route(e->tls, ENGINE_TLS_SLOT_THREADS, addr, e->port);
    ac = e->tls ? redisAsyncConnectUnix(engine_tls_route(e->tls, c->is_sub ? ENGINE_TLS_SLOT_SUB : ENGINE_TLS_SLOT_CMD,
                                                         addr, e->port))
       : e->port ? redisAsyncConnect(addr, e->port) : redisAsyncConnectUnix(e->host);

    if (!ac || ac->err) {
        if (ac) {
            hlog(fail_level(c), "engine", "cannot connect to redis at %s%s%.0d (%s connection): %s; retrying", e->host,
             e->port ? ":" : "", e->port, conn_name(c), ac->errstr);
            redisAsyncFree(ac);
        }
        retry_later(c);
        return;
    }
    ac->data = c;
    /* A dead peer that sends nothing is found in about half a minute (over
     * TLS, the bridge's TCP socket has the same keepalive). */
    if (e->port && !e->tls) redisEnableKeepAlive(&ac->c);
    if (rpoll_attach(ac, e->loop)) {
        redisAsyncFree(ac);
        retry_later(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->timed_out = 0;
    handshake(c);
    uv_timer_start(&c->timer, on_conn_timer, e->connect_timeout_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct conn *c = g->data;
    engine_t *e = c->e;
    char ip[INET6_ADDRSTRLEN];

    c->resolving = 0;
    if (e->stopping || status) {
        if (status && !e->stopping)
            hlog(fail_level(c), "engine", "cannot resolve redis host %s: %s; retrying", e->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        retry_later(c);
        return;
    }
    if (res->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip, sizeof ip);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    start_ac(c, ip);
}

/* Starts a connection attempt; also the connect timeout's callback, which
 * abandons the attempt in flight first. */
static void conn_connect(struct conn *c)
{
    engine_t *e = c->e;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM };

    if (e->stopping) return;
    if (c->ac) {
        /* Connected nowhere within connect_timeout (the peer may be a
         * black hole that never answers the SYN). */
        redisAsyncContext *ac = c->ac;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(ac->c.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || !soerr) soerr = ETIMEDOUT;
        hlog(fail_level(c), "engine", "cannot connect to redis at %s%s%.0d (%s connection): %s; retrying", e->host,
             e->port ? ":" : "", e->port, conn_name(c), soerr == ETIMEDOUT ? "no answer within "
             "engine.connect_timeout" : strerror(soerr));
        ac->data = NULL;
        c->ac = NULL;
        redisAsyncFree(ac);
        retry_later(c);
        return;
    }
    if (!e->port) {
        start_ac(c, NULL);
        return;
    }
    c->gai.data = c;
    if (uv_getaddrinfo(e->loop, &c->gai, on_resolved, e->host, NULL, &hints)) {
        retry_later(c);
        return;
    }
    c->resolving = 1;
}

/* Drops the command connection when its oldest command waits too long:
 * Redis is stuck or the network ate the reply. */
static void on_watchdog(uv_timer_t *t)
{
    engine_t *e = t->data;
    struct conn *c = &e->cmd;

    if (!c->ac || !c->up || !c->inflight || now_ms(e) - c->progress_ms < e->command_timeout_ms) return;
    hlog(LOG_ERROR, "engine", "redis did not answer within engine.command_timeout (%ums); reconnecting",
         e->command_timeout_ms);
    c->timed_out = 1;
    redisAsyncFree(c->ac);                      /* pending calls fail; on_disconnect reconnects */
}

/* ---- commands ---- */

req_t *req_new(engine_t *e, int script, int argc, const char *const *argv, const size_t *lens)
{
    size_t bytes = 0;
    req_t *q;
    char *p;

    for (int i = 0; i < argc; i++) bytes += lens[i];
    q = calloc(1, sizeof *q + bytes + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + 8);
    if (!q) return NULL;
    q->e = e;
    q->script = script;
    q->argc = argc;
    p = q->buf;
    q->argvlen = (size_t *)(void *)(((uintptr_t)p + 7) & ~(uintptr_t)7);
    q->argv = (const char **)(void *)(q->argvlen + argc);
    p = (char *)(q->argv + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        q->argv[i] = p;
        q->argvlen[i] = lens[i];
        p += lens[i];
    }
    return q;
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv);

int req_send(req_t *q)
{
    struct conn *c = &q->e->cmd;

    if (!c->up || !c->ac) return -ENOTCONN;
    if (redisAsyncCommandArgv(c->ac, on_reply, q, q->argc, q->argv, q->argvlen) != REDIS_OK) return -ENOTCONN;
    if (!c->inflight++) c->progress_ms = now_ms(q->e);
    return 0;
}

int engine_eval_send(engine_t *e, int script, int nkeys, int argc, const char **argv, size_t *lens, req_t **out)
{
    char nk[8];
    req_t *q;
    int rc;

    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVALSHA"; lens[0] = 7;
    argv[1] = e->sha[script]; lens[1] = 40;
    argv[2] = nk; lens[2] = strlen(nk);
    if (!(q = req_new(e, script, argc, argv, lens))) return -ENOMEM;
    *out = q;
    if ((rc = req_send(q))) free(q);
    return rc;
}

int status_of_drop(engine_t *e)
{
    return e->stopping ? -ECANCELED : e->cmd.timed_out ? -ETIMEDOUT : -EIO;
}

uint64_t int_of(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (r->type == REDIS_REPLY_STRING) return strtoull(r->str, NULL, 10);
    return 0;
}

static void finish_pub(req_t *q, const redisReply *r)
{
    char epoch[HIST_EPOCH_LEN + 1] = "";

    if (!r) {
        q->cb.pub(q->arg, status_of_drop(q->e), 0, epoch);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER) {
        hlog(LOG_ERROR, "engine", "redis publish script failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        q->cb.pub(q->arg, -EIO, 0, epoch);
        return;
    }
    if (r->element[0]->integer < 0) {
        long long k = r->element[0]->integer;
        q->cb.pub(q->arg, k == -2 ? ENGINE_E_DUPLICATE : k == -3 ? ENGINE_E_IDEM_MISMATCH :
                  k == -4 ? ENGINE_E_AUTHOR_GONE : k == -5 ? ENGINE_E_AUTHOR_OTHER : ENGINE_E_REPLY_TO,
                  int_of(r->element[1]), epoch);
        return;
    }
    if (r->element[1]->type == REDIS_REPLY_STRING) snprintf(epoch, sizeof epoch, "%s", r->element[1]->str);
    q->cb.pub(q->arg, 0, (uint64_t)r->element[0]->integer, epoch);
}

static void finish_read(req_t *q, const redisReply *r)
{
    hist_result_t res;
    size_t n, bytes = 0;

    memset(&res, 0, sizeof res);
    if (!r) {
        q->cb.read(q->arg, status_of_drop(q->e), &res);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || (r->elements - 3) % 3) {
        hlog(LOG_ERROR, "engine", "redis read script failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        q->cb.read(q->arg, -EIO, &res);
        return;
    }
    if (r->element[0]->type == REDIS_REPLY_STRING)
        snprintf(res.chan.epoch, sizeof res.chan.epoch, "%s", r->element[0]->str);
    res.found = res.chan.epoch[0] != '\0';
    res.chan.last_offset = int_of(r->element[1]);
    res.chan.first_offset = int_of(r->element[2]);
    n = (r->elements - 3) / 3;
    for (size_t i = 0; i < n; i++) bytes += r->element[3 + 3 * i + 1]->len;
    if (n && (!(res.entries = calloc(n, sizeof *res.entries)) || !(res.buf = malloc(bytes ? bytes : 1)))) {
        free(res.entries);
        memset(&res, 0, sizeof res);
        q->cb.read(q->arg, -ENOMEM, &res);
        return;
    }
    bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *rec = r->element[3 + 3 * i + 1];
        hist_entry_t *en = &res.entries[i];
        en->offset = int_of(r->element[3 + 3 * i]);
        en->ts = (int64_t)int_of(r->element[3 + 3 * i + 2]);
        if (rec->type == REDIS_REPLY_STRING) memcpy(res.buf + bytes, rec->str, rec->len);
        en->rec = res.buf + bytes;
        en->len = rec->type == REDIS_REPLY_STRING ? rec->len : 0;
        bytes += en->len;
    }
    res.n = n;
    q->cb.read(q->arg, 0, &res);
    hist_result_free(&res);
}

static void finish_signal(req_t *q, const redisReply *r)
{
    int status = 0;

    if (!r) {
        status = status_of_drop(q->e);
    } else if (r->type != REDIS_REPLY_INTEGER) {
        hlog(LOG_ERROR, "engine", "redis %s failed: %s",
             q->script == SCRIPT_WHEV ? "queueing a webhook event" : "PUBLISH of a signal",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        status = -EIO;
    }
    if (q->cb.done) q->cb.done(q->arg, status, status ? 0 : int_of(r));
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    req_t *q = priv;
    engine_t *e = q->e;
    redisReply *reply = r;
    (void)ac;

    if (e->cmd.inflight) e->cmd.inflight--;
    e->cmd.progress_ms = now_ms(e);
    if (reply && reply->type == REDIS_REPLY_ERROR && !strncmp(reply->str, "NOSCRIPT", 8) && !q->retried &&
        q->script >= 0 && q->script < NSCRIPTS) {
        /* The script cache was emptied: EVAL loads it again. */
        q->retried = 1;
        q->argv[0] = "EVAL";
        q->argvlen[0] = 4;
        q->argv[1] = scripts[q->script];
        q->argvlen[1] = strlen(scripts[q->script]);
        if (req_send(q) == 0) return;
        reply = NULL;
    }
    if (q->script == REQ_SIGNAL || q->script == SCRIPT_WHEV) finish_signal(q, reply);
    else if (q->script == SCRIPT_PUB) finish_pub(q, reply);
    else if (q->script == SCRIPT_READ) finish_read(q, reply);
    else if (q->script == SCRIPT_SOPS || q->script == SCRIPT_SREAD) engine_finish_state(q, reply);
    else if (q->script >= SCRIPT_SEATS && q->script <= SCRIPT_SCONN) engine_finish_seats(q, reply);
    else if (q->script == SCRIPT_SHOP) engine_finish_shop(q, reply);
    else if (q->script == SCRIPT_TICKETS) engine_finish_tickets(q, reply);
    else if (q->script == SCRIPT_VSTAT || q->script == SCRIPT_VLIST || q->script == REQ_VSUBS)
        engine_finish_views(q, reply);
    else engine_finish_presence(q, reply);
    free(q);
}

/* Fills the keys of @chan: "<prefix><kind>:<chan>" for m, s, f. */
static int keys_of(engine_t *e, const char *chan, size_t len, char *buf, size_t buflen, size_t klen[3])
{
    static const char kinds[3] = { 'm', 's', 'f' };
    size_t each = e->prefixlen + 2 + len;

    if (3 * each > buflen) return -ENAMETOOLONG;
    for (int i = 0; i < 3; i++) {
        char *k = buf + (size_t)i * each;
        memcpy(k, e->prefix, e->prefixlen);
        k[e->prefixlen] = kinds[i];
        k[e->prefixlen + 1] = ':';
        memcpy(k + e->prefixlen + 2, chan, len);
        klen[i] = each;
    }
    return 0;
}

void engine_random_epoch(char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[HIST_EPOCH_LEN / 2];

    if (uv_random(NULL, NULL, b, sizeof b, 0, NULL)) {
        uint64_t t = uv_hrtime();
        memcpy(b, &t, sizeof b < sizeof t ? sizeof b : sizeof t);
    }
    for (size_t i = 0; i < sizeof b; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[HIST_EPOCH_LEN] = '\0';
}

int engine_publish(engine_t *e, const char *chan, size_t len, const unsigned char *rec, size_t reclen, int64_t ts,
                   const struct engine_keep *keep, const struct engine_pubopts *o, engine_pub_cb cb, void *arg)
{
    const struct engine_idem *idem = o->idem;
    uint64_t reply_to = o->reply_to;
    static const char hex[] = "0123456789abcdef";
    char keys[3 * (64 + 2 + 256)], nums[5][24], epoch[HIST_EPOCH_LEN + 1];
    char ikey[64 + 2 + 256 + 1 + HIST_IDEM_MAX], digest[2 * HIST_IDEM_DIGEST];
    const char *argv[18 + WEBHOOKS_MAX];
    size_t lens[18 + WEBHOOKS_MAX], klen[3], ilen = e->prefixlen + 2;
    int argc = 16;
    req_t *q;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    if ((rc = keys_of(e, chan, len, keys, sizeof keys, klen))) return rc;
    if (idem && (idem->len > HIST_IDEM_MAX || ilen + len + 1 + idem->len > sizeof ikey)) return -ENAMETOOLONG;
    /* Without a key the fourth key is only named (Redis wants every key a
     * script touches declared); the script does not touch it. */
    memcpy(ikey, e->prefix, e->prefixlen);
    memcpy(ikey + e->prefixlen, "i:", 2);
    if (idem) {
        memcpy(ikey + ilen, chan, len);
        ikey[ilen + len] = ' ';
        memcpy(ikey + ilen + len + 1, idem->key, idem->len);
        ilen += len + 1 + idem->len;
        for (size_t i = 0; i < HIST_IDEM_DIGEST; i++) {
            digest[2 * i] = hex[idem->digest[i] >> 4];
            digest[2 * i + 1] = hex[idem->digest[i] & 15];
        }
    }
    engine_random_epoch(epoch);
    snprintf(nums[0], sizeof nums[0], "%u", keep->size);
    snprintf(nums[1], sizeof nums[1], "%u", keep->ttl_ms);
    snprintf(nums[2], sizeof nums[2], "%lld", (long long)ts);
    snprintf(nums[3], sizeof nums[3], "%llu", (unsigned long long)reply_to);
    snprintf(nums[4], sizeof nums[4], "%lld", (long long)(idem && idem->window_ms > 0 ? idem->window_ms : 1));
    argv[0] = "EVALSHA"; lens[0] = 7;
    argv[1] = e->sha[SCRIPT_PUB]; lens[1] = 40;
    argv[2] = "4"; lens[2] = 1;
    argv[3] = keys; lens[3] = klen[0];
    argv[4] = keys + klen[0]; lens[4] = klen[1];
    argv[5] = keys + 2 * klen[0]; lens[5] = klen[2];
    argv[6] = ikey; lens[6] = ilen;
    argv[7] = (const char *)rec; lens[7] = reclen;
    for (int i = 0; i < 3; i++) { argv[8 + i] = nums[i]; lens[8 + i] = strlen(nums[i]); }
    argv[11] = epoch; lens[11] = HIST_EPOCH_LEN;
    argv[12] = nums[3]; lens[12] = strlen(nums[3]);
    argv[13] = digest; lens[13] = idem ? sizeof digest : 0;
    argv[14] = nums[4]; lens[14] = strlen(nums[4]);
    argv[15] = o->check_author && reply_to ? "1" : "0"; lens[15] = 1;
    if (o->nhooks && o->nhooks <= WEBHOOKS_MAX) {
        argv[16] = e->prefix; lens[16] = e->prefixlen;
        argv[17] = chan; lens[17] = len;
        for (size_t i = 0; i < o->nhooks; i++) { argv[18 + i] = o->hooks[i]; lens[18 + i] = strlen(o->hooks[i]); }
        argc = 18 + (int)o->nhooks;
    }
    if (!(q = req_new(e, SCRIPT_PUB, argc, argv, lens))) return -ENOMEM;
    q->cb.pub = cb;
    q->arg = arg;
    if ((rc = req_send(q))) free(q);
    return rc;
}

int engine_read(engine_t *e, const char *chan, size_t len, const struct engine_range *r, engine_read_cb cb,
                void *arg)
{
    char keys[3 * (64 + 2 + 256)], nums[4][24];
    const char *argv[9];
    size_t lens[9], klen[3];
    req_t *q;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    if ((rc = keys_of(e, chan, len, keys, sizeof keys, klen))) return rc;
    snprintf(nums[0], sizeof nums[0], "%llu", (unsigned long long)r->after);
    snprintf(nums[1], sizeof nums[1], "%llu", (unsigned long long)r->upto);
    snprintf(nums[2], sizeof nums[2], "%llu", (unsigned long long)r->before);
    snprintf(nums[3], sizeof nums[3], "%u", r->limit);
    argv[0] = "EVALSHA"; lens[0] = 7;
    argv[1] = e->sha[SCRIPT_READ]; lens[1] = 40;
    argv[2] = "2"; lens[2] = 1;
    argv[3] = keys; lens[3] = klen[0];
    argv[4] = keys + klen[0]; lens[4] = klen[1];
    for (int i = 0; i < 4; i++) { argv[5 + i] = nums[i]; lens[5 + i] = strlen(nums[i]); }
    /* The last arguments: reverse, one byte; the epoch to draw. */
    {
        const char *av[11];
        size_t lv[11];
        char epoch[HIST_EPOCH_LEN + 1];
        memcpy(av, argv, sizeof argv);
        memcpy(lv, lens, sizeof lens);
        av[9] = r->reverse ? "1" : "0";
        lv[9] = 1;
        if (r->limit == 0) engine_random_epoch(epoch);
        av[10] = epoch;
        lv[10] = r->limit == 0 ? HIST_EPOCH_LEN : 0;
        if (!(q = req_new(e, SCRIPT_READ, 11, av, lv))) return -ENOMEM;
    }
    q->cb.read = cb;
    q->arg = arg;
    if ((rc = req_send(q))) free(q);
    return rc;
}

int engine_webhook_event(engine_t *e, const char *const *hooks, size_t n, const char *chan, size_t len,
                         const char *json, size_t jlen, int64_t now, engine_done_cb cb, void *arg)
{
    const char *argv[7 + WEBHOOKS_MAX];
    size_t lens[7 + WEBHOOKS_MAX];
    char ts[24];
    req_t *q;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    if (!n || n > WEBHOOKS_MAX) return -EINVAL;
    snprintf(ts, sizeof ts, "%lld", (long long)now);
    argv[0] = "EVALSHA"; lens[0] = 7;
    argv[1] = e->sha[SCRIPT_WHEV]; lens[1] = 40;
    argv[2] = "0"; lens[2] = 1;
    argv[3] = e->prefix; lens[3] = e->prefixlen;
    argv[4] = chan; lens[4] = len;
    argv[5] = json; lens[5] = jlen;
    argv[6] = ts; lens[6] = strlen(ts);
    for (size_t i = 0; i < n; i++) { argv[7 + i] = hooks[i]; lens[7 + i] = strlen(hooks[i]); }
    if (!(q = req_new(e, SCRIPT_WHEV, 7 + (int)n, argv, lens))) return -ENOMEM;
    q->cb.done = cb;
    q->arg = arg;
    if ((rc = req_send(q))) free(q);
    return rc;
}

int engine_signal(engine_t *e, const char *chan, size_t len, const char *payload, size_t n, engine_done_cb cb,
                  void *arg)
{
    char key[64 + 2 + 256];
    const char *argv[3];
    size_t lens[3];
    char *msg;
    req_t *q;
    int rc;

    if (!engine_up(e)) return -ENOTCONN;
    if (e->prefixlen + 2 + len > sizeof key) return -ENAMETOOLONG;
    memcpy(key, e->prefix, e->prefixlen);
    memcpy(key + e->prefixlen, "f:", 2);
    memcpy(key + e->prefixlen + 2, chan, len);
    if (!(msg = malloc(n + 2))) return -ENOMEM;
    msg[0] = 'S';
    msg[1] = ':';
    memcpy(msg + 2, payload, n);
    argv[0] = "PUBLISH"; lens[0] = 7;
    argv[1] = key; lens[1] = e->prefixlen + 2 + len;
    argv[2] = msg; lens[2] = n + 2;
    q = req_new(e, REQ_SIGNAL, 3, argv, lens);
    free(msg);
    if (!q) return -ENOMEM;
    q->cb.done = cb;
    q->arg = arg;
    if ((rc = req_send(q))) free(q);
    return rc;
}

/* ---- subscriptions ---- */

/* A message on a fan-out key that no node sent (anyone who can PUBLISH in
 * Redis can send one): logged, at most one line per MALFORMED_LOG_MS with
 * how many went unlogged, so garbage cannot flood the log. */
static void malformed(engine_t *e, const char *name, size_t len, const char *why)
{
    static uint64_t last_ms, unlogged;
    uint64_t now = now_ms(e);

    if (last_ms && now - last_ms < MALFORMED_LOG_MS) {
        unlogged++;
        return;
    }
    hlog(LOG_WARN, "engine", "dropped a malformed message on redis channel %.*s: %s (%llu more since the last such "
         "line)", (int)len, name, why, (unsigned long long)unlogged);
    last_ms = now ? now : 1;
    unlogged = 0;
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct conn *c = ac->data;
    redisReply *reply = r;
    engine_t *e;
    const redisReply *kind, *name, *msg;
    const char *p, *end, *colon;
    char *num_end;
    uint64_t off;
    char epoch[HIST_EPOCH_LEN + 1];
    (void)priv;

    if (!c || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
    e = c->e;
    kind = reply->element[0];
    name = reply->element[1];
    msg = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || name->type != REDIS_REPLY_STRING) return;
    if (name->len < e->prefixlen + 2 || memcmp(name->str, e->prefix, e->prefixlen)) return;
    if (!strcmp(kind->str, "unsubscribe")) {
        for (struct unsub **pp = &e->unsubs, *u; (u = *pp); pp = &u->next)
            if (u->len == name->len && !memcmp(u->name, name->str, u->len)) {
                const char *argv[2] = { "SUBSCRIBE", u->name };
                size_t lens[2] = { 9, u->len };
                *pp = u->next;
                if (u->resubscribe) redisAsyncCommandArgv(ac, on_sub_reply, NULL, 2, argv, lens);
                free(u);
                break;
            }
        return;
    }
    if (!strcmp(kind->str, "subscribe")) {
        /* The confirmation of a SUBSCRIBE that an UNSUBSCRIBE already
         * follows: not the subscription the owner waits for. */
        for (struct unsub *u = e->unsubs; u; u = u->next)
            if (u->len == name->len && !memcmp(u->name, name->str, u->len)) return;
        e->ev.on_subscribed(e->ev.ctx, name->str + e->prefixlen + 2, name->len - e->prefixlen - 2);
        return;
    }
    if (strcmp(kind->str, "message") || msg->type != REDIS_REPLY_STRING) return;
    p = msg->str;
    end = p + msg->len;
    if (msg->len > 2 && p[0] == 'P') {
        if (engine_on_presence_msg(e, name->str + e->prefixlen + 2, name->len - e->prefixlen - 2, p, msg->len))
            malformed(e, name->str, name->len, "not a presence event");
        return;
    }
    if (msg->len >= 2 && p[0] == 'S' && p[1] == ':') {
        e->ev.on_signal(e->ev.ctx, name->str + e->prefixlen + 2, name->len - e->prefixlen - 2, p + 2, msg->len - 2);
        return;
    }
    /* A publication: digits only, then ':' (strtoull would take a sign or spaces). */
    if (p == end || *p < '0' || *p > '9') {
        malformed(e, name->str, name->len, "neither a publication, a presence event nor a signal");
        return;
    }
    off = strtoull(p, &num_end, 10);
    if (num_end >= end || *num_end != ':' || off == 0) {
        malformed(e, name->str, name->len, "a publication without an offset");
        return;
    }
    p = num_end + 1;
    colon = memchr(p, ':', (size_t)(end - p));
    if (!colon || colon - p != HIST_EPOCH_LEN) {
        malformed(e, name->str, name->len, "a publication without an epoch");
        return;
    }
    memcpy(epoch, p, HIST_EPOCH_LEN);
    epoch[HIST_EPOCH_LEN] = '\0';
    p = colon + 1;
    e->ev.on_message(e->ev.ctx, name->str + e->prefixlen + 2, name->len - e->prefixlen - 2, off, epoch,
                     (const unsigned char *)p, (size_t)(end - p));
}

static int sub_command(engine_t *e, const char *verb, const char *chan, size_t len)
{
    char key[64 + 2 + 256];
    const char *argv[2] = { verb, key };
    size_t lens[2] = { strlen(verb), e->prefixlen + 2 + len };

    int subscribing = verb[0] == 'S';
    struct unsub *u;

    if (!engine_sub_up(e)) return -ENOTCONN;
    if (lens[1] > sizeof key) return -ENAMETOOLONG;
    memcpy(key, e->prefix, e->prefixlen);
    memcpy(key + e->prefixlen, "f:", 2);
    memcpy(key + e->prefixlen + 2, chan, len);
    for (u = e->unsubs; u; u = u->next)
        if (u->len == lens[1] && !memcmp(u->name, key, u->len)) {
            /* Sent when the pending UNSUBSCRIBE is confirmed (or not at all). */
            u->resubscribe = subscribing;
            return 0;
        }
    if (!subscribing) {
        if (!(u = malloc(sizeof *u + lens[1]))) return -ENOMEM;
        u->resubscribe = 0;
        u->len = lens[1];
        memcpy(u->name, key, lens[1]);
        u->next = e->unsubs;
        e->unsubs = u;
    }
    return redisAsyncCommandArgv(e->sub.ac, on_sub_reply, NULL, 2, argv, lens) == REDIS_OK ? 0 : -ENOMEM;
}

int engine_subscribe(engine_t *e, const char *chan, size_t len) { return sub_command(e, "SUBSCRIBE", chan, len); }

int engine_unsubscribe(engine_t *e, const char *chan, size_t len) { return sub_command(e, "UNSUBSCRIBE", chan, len); }

/* ---- start and stop ---- */

int engine_up(const engine_t *e) { return e && !e->stopping && e->cmd.up; }

int engine_sub_up(const engine_t *e) { return e && !e->stopping && e->sub.up; }

static void conn_init(engine_t *e, struct conn *c, int is_sub)
{
    c->e = e;
    c->is_sub = is_sub;
    c->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(e->loop, &c->timer);
    c->timer.data = c;
    e->open_handles++;
}

int engine_redis_start(uv_loop_t *loop, const struct engine_conf *conf, const struct engine_events *ev,
                       engine_t **out, char *err, size_t errlen)
{
    engine_t *e = calloc(1, sizeof *e);
    char host[1024];
    const char *why;
    int port;

    if (!e) return -ENOMEM;
    if (!strncmp(conf->address, "unix:", 5)) {
        port = 0;
        snprintf(host, sizeof host, "%s", conf->address + 5);
    } else {
        const char *colon = strrchr(conf->address, ':');
        const char *h = conf->address;
        size_t hl;
        why = "expected HOST:PORT or unix:PATH";
        if (!colon) goto bad;
        hl = (size_t)(colon - h);
        if (*h == '[') { h++; hl -= 2; }
        if (!hl || hl >= sizeof host) goto bad;
        memcpy(host, h, hl);
        host[hl] = '\0';
        port = atoi(colon + 1);
        if (port <= 0 || port > 65535) goto bad;
    }
    snprintf(e->host, sizeof e->host, "%s", host);
    e->port = port;
    e->loop = loop;
    if (conf->tls) {
        struct engine_tls_conf tc = { conf->tls_ca, conf->tls_cert, conf->tls_key, conf->tls_server_name,
                                      conf->tls_verify };
        int rc;
        if (!port) {
            snprintf(err, errlen, "[engine] tls = on needs a HOST:PORT address, not a unix socket");
            free(e);
            return -EINVAL;
        }
        if ((rc = engine_tls_new(loop, &tc, host, &e->tls, err, errlen))) {
            free(e);
            return rc;
        }
        snprintf(e->thread_address, sizeof e->thread_address, "unix:%s",
                 engine_tls_path(e->tls, ENGINE_TLS_SLOT_THREADS));
    } else {
        snprintf(e->thread_address, sizeof e->thread_address, "%s", conf->address);
    }
    e->ev = *ev;
    e->password = strdup(conf->password ? conf->password : "");
    e->prefix = strdup(conf->prefix);
    if (!e->password || !e->prefix || strlen(e->prefix) > 64) {
        engine_tls_free(e->tls);
        free(e->password);
        free(e->prefix);
        free(e);
        return -ENOMEM;
    }
    e->prefixlen = strlen(e->prefix);
    e->database = conf->database;
    e->connect_timeout_ms = conf->connect_timeout_ms ? conf->connect_timeout_ms : 1000;
    e->command_timeout_ms = conf->command_timeout_ms ? conf->command_timeout_ms : 1000;
    conn_init(e, &e->cmd, 0);
    conn_init(e, &e->sub, 1);
    uv_timer_init(loop, &e->watchdog);
    e->watchdog.data = e;
    e->open_handles++;
    uv_timer_start(&e->watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    conn_connect(&e->cmd);
    conn_connect(&e->sub);
    *out = e;
    return 0;
bad:
    snprintf(err, errlen, "[engine] address = \"%s\": %s", conf->address, why);
    free(e);
    return -EINVAL;
}

const char *engine_thread_address(const engine_t *e) { return e->thread_address; }

static void on_handle_closed(uv_handle_t *h)
{
    engine_t *e = h->data;
    if (--e->open_handles) return;
    unsubs_clear(e);
    free(e->password);
    free(e->prefix);
    free(e);
}

static void conn_close(struct conn *c)
{
    engine_t *e = c->e;

    if (c->resolving) uv_cancel((uv_req_t *)&c->gai);
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->up = 0;
        ac->data = NULL;                         /* no on_disconnect work while freeing */
        redisAsyncFree(ac);
    }
    uv_timer_stop(&c->timer);
    c->timer.data = e;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void engine_stop(engine_t *e)
{
    if (!e) return;
    e->stopping = 1;
    conn_close(&e->cmd);
    conn_close(&e->sub);
    engine_tls_free(e->tls);                    /* after hiredis let its sockets go */
    e->tls = NULL;
    uv_timer_stop(&e->watchdog);
    uv_close((uv_handle_t *)&e->watchdog, on_handle_closed);
}
