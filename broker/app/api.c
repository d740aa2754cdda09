/* broker/app/api.c - see api.h.
 *
 * DESIGN: every endpoint is a row of one table: method, path (exact, or a
 * prefix and suffix around a {target}), what it needs (an admin key, a valid
 * channel name, a body) and its handlers. api_on_request() runs what every
 * request shares once: the open endpoints first (health, readiness, the
 * admin page, the OpenAPI description: no rate limit, no key), then the API
 * key and the rate limit (the key's own when a valid key is sent, else the
 * address's), then the table: 404 for no such path, 405 for a known path
 * with the wrong method, 403 where an admin key is needed, 400 for a bad
 * channel name, 411/413/415 for a body that cannot be taken. A handler
 * starts with all of that checked. */
#include "app/api.h"
#include "app/adapters.h"
#include "app/batch.h"
#include "app/carts.h"
#include "app/commerce.h"
#include "app/admin.h"
#include "app/history.h"
#include "app/metrics.h"
#include "app/seats.h"
#include "app/tickets.h"
#include "tickets_db.h"
#include "app/sse.h"
#include "app/state.h"
#include "app/static.h"
#include "core/channel.h"
#include "core/presence.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "core/publish.h"
#include "core/pubpipe.h"
#include "core/webhook.h"
#include "net/http.h"
#include "net/server.h"
#include "auth/auth.h"
#include "auth/ratelimit.h"
#include "herald.h"
#include "chname.h"
#include "msg.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    R_OPEN = 1 << 0,              /* before the rate limit and the API key: probes, the admin page, static files */
    R_ADMIN = 1 << 1,             /* needs an admin key (when keys are configured) */
    R_CHANNEL = 1 << 2,           /* the target is a channel name; sys: needs an admin key */
    R_BODY = 1 << 3,              /* reads a body with a Content-Length, then calls on_body */
    R_BODY_ENC = 1 << 4,          /* ... in JSON or MessagePack, by Content-Type */
    R_PROBE = 1 << 5,             /* answered in the connection reserve beyond max_connections:
                                   * health, readiness, and the metrics that say why it is full */
    R_SEGMENT = 1 << 6,           /* the {target} is one path segment (no '/'), so the paths below it
                                   * are other routes' (or nobody's), not this one's */
};

/* on_request returns this to have the body read (R_BODY routes). */
#define READ_BODY 1

struct route {
    uint8_t method;               /* enum http_method */
    uint8_t flags;
    const char *prefix;           /* the path, or what comes before {target} */
    const char *suffix;           /* NULL: an exact path; else what follows {target} ("" for nothing) */
    const char *action;           /* copied into r->action */
    /* Headers in (target in r->target). Return: 0 (answered or parked),
     * READ_BODY, or -1 to close. */
    int (*on_request)(http_req_t *r);
    int (*on_body)(http_req_t *r);  /* R_BODY: the body is in */
};

/* Operator endpoints need an admin key once keys are configured. */
static int is_admin(const http_req_t *r)
{
    return auth_rest_open() || (r->key && r->key->admin);
}

static int forbid_non_admin(http_req_t *r)
{
    srv.stats.rest_unauthorized++;
    return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this endpoint needs an admin API key");
}

/* Answers @r after the failure of an operation that had parked it. */
static int oom(http_req_t *r)
{
    return http_respond_error(r, 500, PROTO_E_INTERNAL, "out of memory");
}

/* Opens the channel r->target: 0, or -1 after answering (503 at
 * limits.max_channels, 500 out of memory). */
static int open_target(http_req_t *r, chan_t **c, int *rc)
{
    int e = chan_open(r->target, strlen(r->target), c);

    if (!e) return 0;
    *rc = e == PROTO_E_LIMIT ? http_respond_error(r, 0, PROTO_E_LIMIT, "limit reached: limits.max_channels")
                             : oom(r);
    return -1;
}

/* ---- operator endpoints ---- */

static int health(http_req_t *r)
{
    unsigned status;
    json_t *v = admin_health(&status);
    return http_respond_json(r, status, v);
}

extern const unsigned char openapi_json[];
extern const size_t openapi_json_len;

/* GET /api/openapi.json: docs/openapi.json, compiled in. Open like the probes:
 * it describes the API and holds nothing about this broker's data. */
static int openapi_doc(http_req_t *r)
{
    return http_respond(r, 200, "application/json", openapi_json, openapi_json_len);
}

static int ready(http_req_t *r)
{
    int rc;
    if (http_await(r)) return -1;
    if ((rc = admin_ready(r->serial)))
        return http_respond_json(r, 503, json_pack("{s:s,s:[s]}", "status", "not_ready", "reasons",
                                                   rc == -ESHUTDOWN ? "stopping" : "storage: no store"));
    return 0;
}

extern const unsigned char admin_page_html[];
extern const size_t admin_page_html_len;

/* GET /admin: the page holds no data; it asks for an admin key itself and
 * reads everything over the WebSocket. */
static int admin_page(http_req_t *r)
{
    r->csp = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
             "connect-src 'self' ws: wss:; img-src 'self' data:";
    return http_respond(r, 200, "text/html; charset=utf-8", admin_page_html, admin_page_html_len);
}

/* GET /herald.js, /widgets/...: files embedded at build time. /widgets and
 * /widgets/ are the index. */
static int static_page(http_req_t *r)
{
    const char *path = r->path;
    const struct static_file *f;

    if (!strcmp(path, "/widgets") || !strcmp(path, "/widgets/")) path = "/widgets/index.html";
    if (!(f = static_find(path))) return http_respond_error(r, 404, PROTO_E_BAD_FIELD, "no such file");
    return static_serve(r, f);
}

static int metrics_page(http_req_t *r)
{
    wbuf_reset(&srv.enc);
    metrics_render(&srv.enc);
    if (srv.enc.oom) return oom(r);
    return http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", srv.enc.p, srv.enc.len);
}

/* GET /api/channels?prefix=&cursor=&limit= */
static int channel_list(http_req_t *r)
{
    char buf[320], pfx[300];
    const char *prefix = http_query(r, "prefix=", buf, sizeof buf);
    uint64_t cursor = 0, limit = 100;

    snprintf(pfx, sizeof pfx, "%s", prefix ? prefix : "");
    if (http_query_uint(r, "cursor=", &cursor) || http_query_uint(r, "limit=", &limit) || limit < 1 || limit > 1000)
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "cursor must be an integer >= 0, limit from 1 to 1000");
    if (http_await(r)) return -1;
    if (admin_channels(r->serial, pfx, cursor, (unsigned)limit)) return oom(r);
    return 0;
}

/* GET /api/channels/{channel} */
static int channel_stats(http_req_t *r)
{
    if (http_await(r)) return -1;
    if (admin_channel(r->serial, r->target, strlen(r->target))) return oom(r);
    return 0;
}

/* POST /api/admin/log?level=debug */
static int set_log_level(http_req_t *r)
{
    char buf[40];
    const char *lv = http_query(r, "level=", buf, sizeof buf);

    r->close_after = 0;                    /* no body is expected: the connection may go on */
    if (!lv || admin_set_log_level(lv))
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "level must be error, warn, info or debug");
    return http_respond_json(r, 200, json_pack("{s:s}", "level", log_level_name((enum log_level)log_current_level)));
}

/* ---- webhooks (docs/webhooks.md) ---- */

/* GET /api/webhooks */
static int webhooks_status(http_req_t *r)
{
    return http_respond_json(r, 200, webhook_status());
}

/* The answer to a dead-letter request that could not be handed over. */
static int dead_refused(http_req_t *r, int rc)
{
    if (rc == 1) return http_respond_error(r, 404, PROTO_E_BAD_FIELD, "no such webhook");
    return oom(r);
}

/* Reads ?id= (absent: 0, all). Return: 0, or -1 after answering 400. */
static int dead_id(http_req_t *r, uint64_t *id, int *rc)
{
    *id = 0;
    if (http_query_uint(r, "id=", id)) {
        *rc = http_respond_error(r, 400, PROTO_E_BAD_FIELD, "id must be an event id (an integer >= 1)");
        return -1;
    }
    return 0;
}

/* GET /api/webhooks/{name}/dead?after=&limit= */
static int webhooks_dead_list(http_req_t *r)
{
    uint64_t after = 0, limit = 100;
    int rc;

    if (http_query_uint(r, "after=", &after) || http_query_uint(r, "limit=", &limit) || limit < 1 || limit > 100)
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "after must be an integer >= 0, limit from 1 to 100");
    if (!config_webhook(&srv.cfg, r->target)) return dead_refused(r, 1);
    if (http_await(r)) return -1;
    if ((rc = webhook_dead_list(r->serial, r->target, after, (unsigned)limit))) {
        http_finish_error(r->serial, 500, PROTO_E_INTERNAL, "out of memory");
        return 0;
    }
    return 0;
}

/* POST /api/webhooks/{name}/dead/retry?id= and DELETE /api/webhooks/{name}/dead?id= */
static int webhooks_dead_act(http_req_t *r)
{
    uint64_t id;
    int rc;

    r->close_after = 0;                    /* no body is expected: the connection may go on */
    if (dead_id(r, &id, &rc)) return rc;
    if (!config_webhook(&srv.cfg, r->target)) return dead_refused(r, 1);
    if (http_await(r)) return -1;
    rc = r->method == HTTP_DELETE ? webhook_dead_delete(r->serial, r->target, id)
                                  : webhook_dead_retry(r->serial, r->target, id);
    if (rc) http_finish_error(r->serial, 500, PROTO_E_INTERNAL, "out of memory");
    return 0;
}

/* ---- channels ---- */

/* The Idempotency-Key header of @r into @buf (@len bytes): its length,
 * 0 when absent, or -1 after answering 400 when it is empty or longer than
 * @max bytes (the answer is in *@rc). */
static int idem_header(http_req_t *r, char *buf, size_t len, size_t max, int *rc)
{
    int n = http_header(r, "idempotency-key:", buf, len);

    if (n < 0) return 0;
    if (n == 0 || (size_t)n > max) {
        char reason[96];
        snprintf(reason, sizeof reason, "the Idempotency-Key header must be 1 to %zu bytes", max);
        *rc = http_respond_error(r, 400, PROTO_E_BAD_FIELD, reason);
        return -1;
    }
    return n;
}

/* POST /api/publish: the body {"channel","data",...} has arrived. */
static int publish_post(http_req_t *r)
{
    /* Big enough for any header lws keeps, so an over-long key is refused, not missed. */
    char reason[PROTO_REASON_MAX], idem[4096];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    const char *name;
    pub_meta_t meta;
    size_t len;
    json_t *msg = NULL, *data;
    int code, ilen, rc;

    if (r->too_large) return http_respond_error(r, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
    if ((ilen = idem_header(r, idem, sizeof idem, HIST_IDEM_MAX, &rc)) < 0) return rc;
    if ((code = msg_decode((enum proto_enc)r->enc, r->body ? r->body : (unsigned char *)"", r->blen, &msg, reason)))
        return http_respond_error(r, 400, code, reason);
    if ((code = msg_get_channel(msg, &name, &len, reason))) goto bad;
    if (!(data = json_object_get(msg, "data"))) {
        code = PROTO_E_BAD_FIELD;
        snprintf(reason, sizeof reason, "field \"data\" is required");
        goto bad;
    }
    if (r->key && !auth_key_may_publish(r->key, name, len)) {
        srv.stats.rest_unauthorized++;
        json_decref(msg);
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this API key may not publish to this namespace");
    }
    if ((code = publish_parse_meta(msg, &meta, reason))) goto bad;
    if (ilen > 0) {
        /* The header and the field name the same thing: both may be sent
         * (a client library and its caller), but not differently. */
        if (meta.idem_key && (meta.idem_len != (size_t)ilen || memcmp(meta.idem_key, idem, (size_t)ilen))) {
            code = PROTO_E_BAD_FIELD;
            snprintf(reason, sizeof reason, "the Idempotency-Key header and the field \"idempotency_key\" differ");
            goto bad;
        }
        meta.idem_key = idem;
        meta.idem_len = (size_t)ilen;
    }
    if (http_await(r)) { json_decref(msg); return -1; }
    origin.serial = r->serial;
    code = publish(name, len, data, &meta, &origin, reason);
    json_decref(msg);
    /* On 0, the pipeline answers when the outcome is known. */
    return code ? http_respond_error(r, 0, code, reason) : 0;
bad:
    json_decref(msg);
    return http_respond_error(r, 400, code, reason);
}

/* POST /api/publish/batch: the body {"items":[...]} has arrived. The key's
 * rate limit took one request at the headers; the batch counts as its items. */
static int publish_batch_post(http_req_t *r)
{
    char reason[PROTO_REASON_MAX], idem[4096];
    json_t *msg = NULL;
    unsigned retry = 0;
    size_t n;
    int code, ilen, rc;

    if (r->too_large) return http_respond_error(r, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
    if ((ilen = idem_header(r, idem, sizeof idem, BATCH_IDEM_MAX, &rc)) < 0) return rc;
    if ((code = msg_decode((enum proto_enc)r->enc, r->body ? r->body : (unsigned char *)"", r->blen, &msg, reason)))
        return http_respond_error(r, 400, code, reason);
    if ((code = batch_check(msg, &n, reason))) {
        json_decref(msg);
        return http_respond_error(r, 400, code, reason);
    }
    if (r->key && n > 1 && rl_key(r->key, (unsigned)n - 1, r->peer, &retry) != RL_OK) {
        json_decref(msg);
        srv.stats.rest_rate_limited++;
        r->retry_after = retry;
        return http_respond_error(r, 429, PROTO_E_RATE_LIMITED,
                                  "too many requests with this API key ([apikey] requests_per_minute; "
                                  "a batch counts as its items): nothing was published");
    }
    /* Admitted or refused as a whole: its items are held and commit together. */
    if ((code = pubpipe_admit(&(origin_t){ ORIGIN_REST, 0, NULL }, reason))) {
        json_decref(msg);
        r->retry_after = 1;
        return http_respond_error(r, 0, code, reason);
    }
    if (http_await(r)) { json_decref(msg); return -1; }
    rc = batch_publish(r->serial, msg, r->key, ilen > 0 ? idem : NULL, (size_t)(ilen > 0 ? ilen : 0));
    json_decref(msg);
    if (rc) http_finish_error(r->serial, 500, PROTO_E_INTERNAL, "out of memory");
    return 0;
}

/* GET /api/channels/{channel}/history?since=&before=&limit=&reverse=&thread= */
static int channel_history(http_req_t *r)
{
    struct history_page page = { 0, 0, 100, 0, 0 };
    origin_t origin = { ORIGIN_REST, 0, NULL };
    uint64_t limit = 100;
    char rev[32];   /* lws copies the whole "reverse=..." fragment here */
    const char *rv;
    chan_t *c;
    int rc;

    if (http_query_uint(r, "since=", &page.since) || http_query_uint(r, "before=", &page.before) ||
        http_query_uint(r, "thread=", &page.thread) ||
        http_query_uint(r, "limit=", &limit) || limit < 1 || limit > HISTORY_LIMIT_MAX)
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD,
                                  "since and before must be integers >= 0, limit from 1 to 1000");
    page.limit = (unsigned)limit;
    if ((rv = http_query(r, "reverse=", rev, sizeof rev))) {
        if (!strcmp(rv, "true") || !strcmp(rv, "1")) page.reverse = 1;
        else if (strcmp(rv, "false") && strcmp(rv, "0"))
            return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "reverse must be true or false");
    }
    if (open_target(r, &c, &rc)) return rc;
    if (http_await(r)) { chan_maybe_drop(c); return -1; }
    origin.serial = r->serial;
    rc = history_query(c, &page, &origin);
    chan_maybe_drop(c);
    if (rc == PROTO_E_NO_HISTORY)
        return http_respond_error(r, 404, PROTO_E_NO_HISTORY, "this channel's namespace keeps no history");
    if (rc == PROTO_E_ENGINE_UNAVAILABLE)
        return http_respond_error(r, 503, rc, "the redis engine is unavailable (see /api/health/ready)");
    return rc ? oom(r) : 0;
}

/* GET /api/channels/{channel}/presence */
static int channel_presence(http_req_t *r)
{
    const char *name = r->target;
    size_t len = strlen(name);
    chan_t *c = chan_find(name, len);
    json_t *v;

    if (c ? !c->ns->presence : !config_ns(&srv.cfg, name, len)->presence)
        return http_respond_error(r, 404, PROTO_E_DISABLED, "this channel's namespace has no presence");
    if (cluster_on()) {
        /* Members of every node: the engine answers. */
        origin_t origin = { ORIGIN_REST, 0, NULL };
        if (http_await(r)) return -1;
        origin.serial = r->serial;
        if (cluster_presence_read(name, len, (c ? c->ns : config_ns(&srv.cfg, name, len))->presence_tier, 0,
                                  &origin))
            http_finish_error(r->serial, 500, PROTO_E_INTERNAL, "out of memory");
        return 0;
    }
    if (!c) return http_respond_json(r, 200, json_pack("{s:s%,s:[],s:i,s:i}", "channel", name, len, "members",
                                                       "count", 0, "connections", 0));
    v = presence_json(c);
    if (v) json_object_set_new(v, "channel", json_stringn(name, len));
    return http_respond_json(r, 200, v);
}

static int state_enabled(http_req_t *r)
{
    return config_ns(&srv.cfg, r->target, strlen(r->target))->state;
}

/* GET /api/channels/{channel}/state?prefix=&cursor=&limit=&field=&value=&q= */
static int state_get(http_req_t *r)
{
    struct state_page page;
    char buf[300];
    const char *v;
    uint64_t limit = 100;
    chan_t *c;
    int rc;

    if (!state_enabled(r))
        return http_respond_error(r, 404, PROTO_E_DISABLED, "this channel's namespace is not a state namespace");
    memset(&page, 0, sizeof page);
    if (http_query_uint(r, "limit=", &limit) || limit < 1 || limit > 1000)
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "limit must be from 1 to 1000");
    page.limit = (unsigned)limit;
    if ((v = http_query(r, "prefix=", buf, sizeof buf))) snprintf(page.prefix, sizeof page.prefix, "%s", v);
    if ((v = http_query(r, "cursor=", buf, sizeof buf))) snprintf(page.after, sizeof page.after, "%s", v);
    if ((v = http_query(r, "field=", buf, sizeof buf))) snprintf(page.field, sizeof page.field, "%s", v);
    if ((v = http_query(r, "value=", buf, sizeof buf))) snprintf(page.value, sizeof page.value, "%s", v);
    if ((v = http_query(r, "q=", buf, sizeof buf))) snprintf(page.q, sizeof page.q, "%s", v);
    if (*page.field && !http_query(r, "value=", buf, sizeof buf))
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "field= needs value=");
    if (open_target(r, &c, &rc)) return rc;
    if (http_await(r)) { chan_maybe_drop(c); return -1; }
    rc = state_list(c, &page, r->serial);
    chan_maybe_drop(c);
    return rc ? oom(r) : 0;
}

/* POST /api/channels/{channel}/state: check, then read {"ops":[...]}. */
static int state_post_check(http_req_t *r)
{
    size_t len = strlen(r->target);

    if (!state_enabled(r))
        return http_respond_error(r, 404, PROTO_E_DISABLED, "this channel's namespace is not a state namespace");
    if (r->key && !auth_key_may_publish(r->key, r->target, len))
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this API key may not change this namespace");
    if (seats_is_map(r->target, len))
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN,
                                  "a seat map changes through seat operations only (/api/events/{event}/...)");
    if (commerce_is_store(r->target, len))
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN,
                                  "the commerce stock channel changes through /api/commerce/... only");
    if (tickets_is_board(r->target, len))
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "the tickets dashboard changes through /api/tickets only");
    return READ_BODY;
}

/* Runs the state operations @list (taken) on r->target for @r. */
static int run_state_ops(http_req_t *r, json_t *list)
{
    char reason[PROTO_REASON_MAX];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    pub_ops_t *ops;
    chan_t *c;
    int code, rc;

    code = state_parse(list, &ops, reason);
    json_decref(list);
    if (code) return http_respond_error(r, 0, code, reason);
    if (open_target(r, &c, &rc)) { pub_ops_free(ops); return rc; }
    if (http_await(r)) { pub_ops_free(ops); chan_maybe_drop(c); return -1; }
    origin.serial = r->serial;
    if (pubpipe_state(c, ops, &origin)) {
        chan_maybe_drop(c);
        return oom(r);
    }
    return 0;
}

/* Decodes the JSON body of @r into *@msg. Return: 0, or -1/1 after answering
 * (the value to return from the handler is in *@rc). */
static int json_body(http_req_t *r, json_t **msg, int *rc)
{
    char reason[PROTO_REASON_MAX];
    int code;

    if (r->too_large) {
        *rc = http_respond_error(r, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
        return -1;
    }
    if ((code = msg_decode(PROTO_JSON, r->body ? r->body : (unsigned char *)"", r->blen, msg, reason))) {
        *rc = http_respond_error(r, 400, code, reason);
        return -1;
    }
    return 0;
}

/* The body of POST /api/channels/{channel}/state has arrived. */
static int state_post(http_req_t *r)
{
    json_t *msg = NULL, *list;
    int rc;

    if (json_body(r, &msg, &rc)) return rc;
    list = json_incref(json_object_get(msg, "ops"));
    json_decref(msg);
    return run_state_ops(r, list);
}

/* ---- adapters: scoreboards ---- */

/* /api/scoreboards/{game}/score|teams|reset: check, then read the body. */
static int scoreboard_check(http_req_t *r)
{
    char game[sizeof r->target];

    snprintf(game, sizeof game, "%s", r->target);
    if (scoreboard_channel(game, strlen(game), r->target, sizeof r->target))
        return http_respond_error(r, 404, PROTO_E_BAD_FIELD, "use /api/scoreboards/{game}/score, /teams or /reset");
    if (!state_enabled(r))
        return http_respond_error(r, 404, PROTO_E_DISABLED,
                                  "scoreboards need [namespace scores] state = on in the configuration");
    if (r->key && !auth_key_may_publish(r->key, r->target, strlen(r->target)))
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this API key may not change the scores namespace");
    return READ_BODY;
}

/* The body of a scoreboard call has arrived (a reset may have none). */
static int scoreboard_post(http_req_t *r)
{
    char reason[PROTO_REASON_MAX];
    json_t *msg = NULL, *list;
    int rc;

    if ((r->blen || r->too_large || strcmp(r->action, "reset")) && json_body(r, &msg, &rc)) return rc;
    list = scoreboard_ops(r->action, msg, reason);
    json_decref(msg);
    if (!list) return http_respond_error(r, 400, PROTO_E_BAD_FIELD, reason);
    return run_state_ops(r, list);
}

/* POST /api/scoreboards/{game}/reset may come without a body. */
static int scoreboard_reset_check(http_req_t *r)
{
    int rc = scoreboard_check(r);
    if (rc == READ_BODY && http_content_length(r) < 0 && !http_chunked(r)) {
        r->close_after = 0;                /* nothing follows: the connection may go on */
        return scoreboard_post(r);
    }
    return rc;
}

/* ---- adapters: seat maps ---- */

/* /api/events/{event}/seats, /hold, ...: check, then read the body. */
static int seats_check(http_req_t *r)
{
    char event[sizeof r->target];

    snprintf(event, sizeof event, "%s", r->target);
    if (seats_channel(event, strlen(event), r->target, sizeof r->target))
        return http_respond_error(r, 404, PROTO_E_BAD_FIELD,
                                  "use /api/events/{event}/seats, /hold, /confirm, /release, /waitlist, "
                                  "/waitlist/leave or /waitlist/position (event ids are 1-64 letters, digits, "
                                  "'_', '-' or '.')");
    if (!state_enabled(r))
        return http_respond_error(r, 404, PROTO_E_DISABLED,
                                  "seat maps need [namespace " SEATS_NS "] state = on in the configuration");
    if (r->key && !auth_key_may_publish(r->key, r->target, strlen(r->target)))
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this API key may not change the seats namespace");
    return READ_BODY;
}

/* The body of a seat map request has arrived. */
static int seats_post(http_req_t *r)
{
    char reason[PROTO_REASON_MAX];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    json_t *msg = NULL;
    int code, rc;

    if (json_body(r, &msg, &rc)) return rc;
    if (http_await(r)) { json_decref(msg); return -1; }
    origin.serial = r->serial;
    code = seats_request(r->target, r->action, msg, NULL, 1, &origin, reason);
    json_decref(msg);
    return code ? http_respond_error(r, 0, code, reason) : 0;
}

/* GET /api/events/{event}/waitlist/position?user=..&section=..: the same
 * read as POST with {"user","section"}, for a backend that would rather GET. */
static int seats_position_get(http_req_t *r)
{
    char reason[PROTO_REASON_MAX], user[300], section[300];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    const char *u, *sec;
    json_t *msg;
    int code, rc;

    if ((rc = seats_check(r)) != READ_BODY) return rc;
    u = http_query(r, "user=", user, sizeof user);
    sec = http_query(r, "section=", section, sizeof section);
    if (!(msg = json_object())) return oom(r);
    if (u) json_object_set_new(msg, "user", json_string(u));
    if (sec) json_object_set_new(msg, "section", json_string(sec));
    if (http_await(r)) { json_decref(msg); return -1; }
    origin.serial = r->serial;
    code = seats_request(r->target, "waitlist_position", msg, NULL, 1, &origin, reason);
    json_decref(msg);
    return code ? http_respond_error(r, 0, code, reason) : 0;
}

/* ---- adapters: commerce ---- */

/* /api/commerce/...: the adapter must be on, and an API key must be one
 * that may publish to the stock channel. */
static int commerce_check(http_req_t *r)
{
    const char *stock = commerce_stock_channel();

    if (!commerce_enabled())
        return http_respond_error(r, 404, PROTO_E_DISABLED,
                                  "the commerce adapter is off: [adapter commerce] enabled = on in the configuration");
    if (r->key && !auth_key_may_publish(r->key, stock, strlen(stock))) {
        srv.stats.rest_unauthorized++;
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this API key may not change the commerce stock channel");
    }
    return READ_BODY;
}

/* Runs r->action with @body (borrowed; NULL for a read) on order r->target. */
static int commerce_run(http_req_t *r, const json_t *body)
{
    char reason[PROTO_REASON_MAX];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    int code;

    if (http_await(r)) return -1;
    origin.serial = r->serial;
    code = commerce_request(r->action, r->target, body, &origin, reason);
    return code ? http_respond_error(r, 0, code, reason) : 0;
}

static int commerce_post(http_req_t *r)
{
    json_t *msg = NULL;
    int rc;

    if (json_body(r, &msg, &rc)) return rc;
    rc = commerce_run(r, msg);
    json_decref(msg);
    return rc;
}

/* POST /api/commerce/payments: a payment provider's webhook. Open to the
 * API key check (a provider has no key): the HMAC signature over the raw
 * body is its authentication (app/commerce.c). */
static int commerce_payment_post(http_req_t *r)
{
    char reason[PROTO_REASON_MAX], sig[512];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    int code;

    if (r->too_large) return http_respond_error(r, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
    if (http_await(r)) return -1;
    origin.serial = r->serial;
    code = commerce_payment(r->body ? r->body : (const unsigned char *)"", r->blen,
                            http_header(r, "herald-signature:", sig, sizeof sig) < 0 ? NULL : sig, &origin, reason);
    if (code == PROTO_E_UNAUTHORIZED) srv.stats.rest_unauthorized++;
    return code ? http_respond_error(r, 0, code, reason) : 0;
}

/* POST /api/commerce/carts/{user}/events: the adapter must be on, and an
 * API key must be one that may publish to the user's channel. */
static int cart_check(http_req_t *r)
{
    char reason[PROTO_REASON_MAX], chan[CHNAME_MAX + 1];

    if (!commerce_enabled())
        return http_respond_error(r, 404, PROTO_E_DISABLED,
                                  "the commerce adapter is off: [adapter commerce] enabled = on in the configuration");
    if (carts_channel(r->target, chan, sizeof chan, reason))
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, reason);
    if (r->key && !auth_key_may_publish(r->key, chan, strlen(chan))) {
        srv.stats.rest_unauthorized++;
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this API key may not publish to the user namespace");
    }
    return READ_BODY;
}

static int cart_post(http_req_t *r)
{
    char reason[PROTO_REASON_MAX];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    json_t *msg = NULL;
    int code, rc;

    if (json_body(r, &msg, &rc)) return rc;
    if (http_await(r)) { json_decref(msg); return -1; }
    origin.serial = r->serial;
    code = carts_event(r->target, msg, &origin, reason);
    json_decref(msg);
    return code ? http_respond_error(r, 0, code, reason) : 0;
}

/* GET /api/commerce/orders/{order}. */
static int commerce_get(http_req_t *r)
{
    int rc = commerce_check(r);
    return rc != READ_BODY ? rc : commerce_run(r, NULL);
}

/* ---- adapters: support tickets ---- */

/* /api/tickets...: the adapter must be on, and an API key must be one that
 * may publish to the dashboard channel. */
static int tickets_check(http_req_t *r)
{
    const char *board = tickets_board();

    if (!tickets_enabled())
        return http_respond_error(r, 404, PROTO_E_DISABLED,
                                  "the tickets adapter is off: [adapter tickets] enabled = on in the configuration");
    if (r->key && !auth_key_may_publish(r->key, board, strlen(board))) {
        srv.stats.rest_unauthorized++;
        return http_respond_error(r, 403, PROTO_E_FORBIDDEN, "this API key may not change the tickets dashboard");
    }
    return READ_BODY;
}

/* Runs r->action with @body (borrowed; NULL for a read) on ticket r->target. */
static int tickets_run(http_req_t *r, const json_t *body)
{
    char reason[PROTO_REASON_MAX];
    origin_t origin = { ORIGIN_REST, 0, NULL };
    int code;

    if (http_await(r)) return -1;
    origin.serial = r->serial;
    code = tickets_request(r->action, r->target, body, &origin, reason);
    return code ? http_respond_error(r, 0, code, reason) : 0;
}

static int tickets_post(http_req_t *r)
{
    json_t *msg = NULL;
    int rc;

    if (json_body(r, &msg, &rc)) return rc;
    rc = tickets_run(r, msg);
    json_decref(msg);
    return rc;
}

/* GET /api/tickets/{id}. */
static int tickets_get(http_req_t *r)
{
    int rc = tickets_check(r);
    return rc != READ_BODY ? rc : tickets_run(r, NULL);
}

/* GET /api/tickets?status=|assignee=|priority=&q=&cursor=&limit=: the
 * dashboard's state query (app/state.c) over its "ticket:" keys. */
static int tickets_list(http_req_t *r)
{
    static const char *const fields[] = { "status", "assignee", "priority" };
    const char *board = tickets_board(), *v;
    struct state_page page;
    char buf[300], q[16];
    uint64_t limit = 100;
    chan_t *c;
    int rc;

    if (!tickets_enabled())
        return http_respond_error(r, 404, PROTO_E_DISABLED,
                                  "the tickets adapter is off: [adapter tickets] enabled = on in the configuration");
    memset(&page, 0, sizeof page);
    if (http_query_uint(r, "limit=", &limit) || limit < 1 || limit > 1000)
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "limit must be from 1 to 1000");
    page.limit = (unsigned)limit;
    snprintf(page.prefix, sizeof page.prefix, "ticket:");
    if ((v = http_query(r, "cursor=", buf, sizeof buf))) snprintf(page.after, sizeof page.after, "%s", v);
    if ((v = http_query(r, "q=", buf, sizeof buf))) snprintf(page.q, sizeof page.q, "%s", v);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        snprintf(q, sizeof q, "%s=", fields[i]);
        if (!(v = http_query(r, q, buf, sizeof buf))) continue;
        if (*page.field)
            return http_respond_error(r, 400, PROTO_E_BAD_FIELD,
                                      "filter by one of status=, assignee=, priority= at a time (q= searches)");
        snprintf(page.field, sizeof page.field, "%s", fields[i]);
        snprintf(page.value, sizeof page.value, "%s", v);
    }
    if (*page.field && !strcmp(page.field, "status") && !tickets_status_valid(page.value))
        return http_respond_error(r, 400, PROTO_E_BAD_FIELD, "status must be one of open, in_progress, closed");
    if ((rc = chan_open(board, strlen(board), &c)))
        return rc == PROTO_E_LIMIT ? http_respond_error(r, 0, PROTO_E_LIMIT, "limit reached: limits.max_channels")
                                   : oom(r);
    if (http_await(r)) { chan_maybe_drop(c); return -1; }
    rc = state_list(c, &page, r->serial);
    chan_maybe_drop(c);
    return rc ? oom(r) : 0;
}

/* ---- the table ---- */

static const struct route routes[] = {
    { HTTP_GET,  R_OPEN | R_PROBE, "/api/health", NULL, NULL, health, NULL },
    { HTTP_GET,  R_OPEN | R_PROBE, "/api/health/ready", NULL, NULL, ready, NULL },
    { HTTP_GET,  R_OPEN, "/api/openapi.json", NULL, NULL, openapi_doc, NULL },
    { HTTP_GET,  R_OPEN, "/admin", NULL, NULL, admin_page, NULL },
    { HTTP_GET,  R_OPEN, "/herald.js", NULL, NULL, static_page, NULL },
    { HTTP_GET,  R_OPEN, "/herald.d.ts", NULL, NULL, static_page, NULL },
    { HTTP_GET,  R_OPEN, "/widgets", NULL, NULL, static_page, NULL },
    { HTTP_GET,  R_OPEN, "/widgets/", NULL, NULL, static_page, NULL },
    { HTTP_GET,  R_OPEN, "/widgets/", "", NULL, static_page, NULL },
    /* Open to the API key check: a stream is a subscriber, identified by
     * its token and checked per channel like a WebSocket subscribe. */
    { HTTP_GET,  R_OPEN, "/api/sse", NULL, NULL, sse_get, NULL },
    { HTTP_POST, R_BODY | R_BODY_ENC, "/api/publish", NULL, NULL, NULL, publish_post },
    { HTTP_POST, R_BODY | R_BODY_ENC, "/api/publish/batch", NULL, NULL, NULL, publish_batch_post },
    { HTTP_GET,  R_ADMIN, "/api/channels", NULL, NULL, channel_list, NULL },
    { HTTP_GET,  R_ADMIN | R_PROBE, "/metrics", NULL, NULL, metrics_page, NULL },
    { HTTP_POST, R_ADMIN, "/api/admin/log", NULL, NULL, set_log_level, NULL },
    { HTTP_GET,  R_ADMIN, "/api/webhooks", NULL, NULL, webhooks_status, NULL },
    { HTTP_GET,  R_ADMIN, "/api/webhooks/", "/dead", NULL, webhooks_dead_list, NULL },
    { HTTP_DELETE, R_ADMIN, "/api/webhooks/", "/dead", NULL, webhooks_dead_act, NULL },
    { HTTP_POST, R_ADMIN, "/api/webhooks/", "/dead/retry", NULL, webhooks_dead_act, NULL },
    { HTTP_GET,  R_CHANNEL, "/api/channels/", "/history", NULL, channel_history, NULL },
    { HTTP_GET,  R_CHANNEL, "/api/channels/", "/presence", NULL, channel_presence, NULL },
    { HTTP_GET,  R_CHANNEL, "/api/channels/", "/state", NULL, state_get, NULL },
    { HTTP_POST, R_CHANNEL | R_BODY, "/api/channels/", "/state", NULL, state_post_check, state_post },
    { HTTP_GET,  R_CHANNEL | R_ADMIN, "/api/channels/", "", NULL, channel_stats, NULL },
    { HTTP_POST, R_BODY, "/api/scoreboards/", "/score", "score", scoreboard_check, scoreboard_post },
    { HTTP_PUT,  R_BODY, "/api/scoreboards/", "/teams", "teams", scoreboard_check, scoreboard_post },
    { HTTP_POST, R_BODY, "/api/scoreboards/", "/reset", "reset", scoreboard_reset_check, scoreboard_post },
    { HTTP_PUT,  R_BODY, "/api/events/", "/seats", "define", seats_check, seats_post },
    { HTTP_POST, R_BODY, "/api/events/", "/seats", "add", seats_check, seats_post },
    { HTTP_POST, R_BODY, "/api/events/", "/hold", "hold", seats_check, seats_post },
    { HTTP_POST, R_BODY, "/api/events/", "/confirm", "confirm", seats_check, seats_post },
    { HTTP_POST, R_BODY, "/api/events/", "/release", "release", seats_check, seats_post },
    { HTTP_POST, R_BODY, "/api/events/", "/waitlist", "waitlist", seats_check, seats_post },
    { HTTP_POST, R_BODY, "/api/events/", "/waitlist/leave", "waitlist_leave", seats_check, seats_post },
    { HTTP_POST, R_BODY, "/api/events/", "/waitlist/position", "waitlist_position", seats_check, seats_post },
    { HTTP_GET,  0, "/api/events/", "/waitlist/position", "waitlist_position", seats_position_get, NULL },
    { HTTP_PUT,  R_BODY, "/api/commerce/stock", NULL, "stock_set", commerce_check, commerce_post },
    { HTTP_POST, R_BODY, "/api/commerce/stock", NULL, "stock_adjust", commerce_check, commerce_post },
    { HTTP_POST, R_BODY, "/api/commerce/orders", NULL, "order_create", commerce_check, commerce_post },
    { HTTP_POST, R_BODY, "/api/commerce/orders/", "/status", "order_status", commerce_check, commerce_post },
    { HTTP_GET,  R_SEGMENT, "/api/commerce/orders/", "", "order_get", commerce_get, NULL },
    { HTTP_POST, R_BODY | R_SEGMENT, "/api/commerce/carts/", "/events", "cart_event", cart_check, cart_post },
    { HTTP_POST, R_OPEN | R_BODY, "/api/commerce/payments", NULL, "payment", NULL, commerce_payment_post },
    { HTTP_GET,  0, "/api/tickets", NULL, NULL, tickets_list, NULL },
    { HTTP_POST, R_BODY, "/api/tickets", NULL, "create", tickets_check, tickets_post },
    /* Before /api/tickets/{id}/status, which the same path would match with id "bulk". */
    { HTTP_POST, R_BODY, "/api/tickets/bulk/status", NULL, "bulk_status", tickets_check, tickets_post },
    { HTTP_POST, R_BODY | R_SEGMENT, "/api/tickets/", "/status", "status", tickets_check, tickets_post },
    { HTTP_POST, R_BODY | R_SEGMENT, "/api/tickets/", "/assign", "assign", tickets_check, tickets_post },
    { HTTP_POST, R_BODY | R_SEGMENT, "/api/tickets/", "/comments", "comment", tickets_check, tickets_post },
    { HTTP_GET,  R_SEGMENT, "/api/tickets/", "", "get", tickets_get, NULL },
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* A path under a family of routes that matches none of them gets the
 * family's own 404, which says what the family offers. */
static const struct { const char *prefix, *reason; } families[] = {
    { "/api/scoreboards/", "no such scoreboard action (score, teams, reset)" },
    { "/api/webhooks/", "no such webhook action (dead, dead/retry)" },
    { "/api/events/", "no such seat map action (seats, hold, confirm, release, waitlist, waitlist/leave)" },
    { "/api/commerce/", "no such commerce endpoint (stock, orders, orders/{order}, orders/{order}/status, "
                        "carts/{user}/events)" },
    { "/api/tickets/", "no such tickets endpoint ({id}, {id}/status, {id}/assign, {id}/comments, bulk/status)" },
};

/* Whether @uri is @rt's path; the {target} then goes in @target (@len bytes). */
static int path_match(const struct route *rt, const char *uri, char *target, size_t len)
{
    size_t pl = strlen(rt->prefix), ul = strlen(uri), sl, tl;

    if (!rt->suffix) return !strcmp(uri, rt->prefix);
    sl = strlen(rt->suffix);
    if (ul <= pl + sl || strncmp(uri, rt->prefix, pl) || strcmp(uri + ul - sl, rt->suffix)) return 0;
    tl = ul - pl - sl;
    if ((rt->flags & R_SEGMENT) && memchr(uri + pl, '/', tl)) return 0;
    if (tl >= len) tl = len - 1;             /* too long for any name: the checks refuse it */
    memcpy(target, uri + pl, tl);
    target[tl] = '\0';
    return 1;
}

static int wrong_method(http_req_t *r, const char *uri)
{
    static const char *const names[] = { "", "GET", "POST", "PUT", "DELETE" };
    char reason[64] = "use ";
    unsigned seen = 0;

    for (size_t i = 0; i < NROUTES; i++) {
        char t[sizeof r->target];
        if (!path_match(&routes[i], uri, t, sizeof t) || (seen & 1u << routes[i].method)) continue;
        if (seen) strcat(reason, " or ");
        strcat(reason, names[routes[i].method]);
        seen |= 1u << routes[i].method;
    }
    return http_respond_error(r, 405, PROTO_E_BAD_FIELD, reason);
}

/* Checks what an R_BODY route's headers say of its body. Return: 0, or
 * nonzero after answering (the value is in *@rc). */
static int body_refused(http_req_t *r, const struct route *rt, int *rc)
{
    long long cl = http_content_length(r);
    int enc = PROTO_JSON;

    /* Answer before reading a body the headers already condemn, and close
     * (r->close_after stays set): r->route stays NULL, so the body that
     * follows is ignored rather than acted on. */
    if (http_chunked(r) || cl < 0) {
        *rc = http_respond_error(r, 411, PROTO_E_BAD_FIELD,
                                 "send the body with a Content-Length (chunked bodies are not accepted)");
        return 1;
    }
    if ((rt->flags & R_BODY_ENC) && (enc = http_body_encoding(r)) < 0) {
        *rc = http_respond_error(r, 415, PROTO_E_MALFORMED,
                                 "Content-Type must be application/json or application/msgpack");
        return 1;
    }
    if ((unsigned long long)cl > srv.cfg.max_message_size) {
        *rc = http_respond_error(r, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
        return 1;
    }
    r->enc = (uint8_t)enc;
    return 0;
}

/* Runs route @rt for @r. */
static int run(http_req_t *r, const struct route *rt)
{
    const char *why;
    int rc;

    if ((rt->flags & R_ADMIN) && !(rt->flags & R_CHANNEL) && !is_admin(r)) return forbid_non_admin(r);
    if (rt->flags & R_CHANNEL) {
        size_t len = strlen(r->target);
        char reason[PROTO_REASON_MAX];
        if (!chname_valid(r->target, len, &why)) return http_respond_error(r, 400, PROTO_E_BAD_CHANNEL, why);
        if (auth_check_name(r->target, len, reason)) return http_respond_error(r, 400, PROTO_E_BAD_CHANNEL, reason);
        /* Operator data (sys:stats names the busiest channels, private
         * ones included) needs the admin scope on every path. */
        if (((rt->flags & R_ADMIN) || auth_is_sys(r->target, len)) && !is_admin(r)) return forbid_non_admin(r);
    }
    if (rt->action) snprintf(r->action, sizeof r->action, "%s", rt->action);
    if (!(rt->flags & R_BODY)) return rt->on_request(r);
    if (rt->on_request && (rc = rt->on_request(r)) != READ_BODY) return rc;
    if (body_refused(r, rt, &rc)) return rc;
    r->route = rt;
    r->close_after = 0;
    return 0;                              /* the body follows */
}

static int on_request(http_req_t *r, const char *uri)
{
    char auth[600];
    enum rl_verdict v;
    unsigned retry = 0;
    int known = 0;

    if (server_over_capacity()) {
        /* This connection is in the probe reserve: only probes are served. */
        for (size_t i = 0; i < NROUTES && !known; i++)
            known = (routes[i].flags & R_PROBE) && routes[i].method == r->method &&
                    path_match(&routes[i], uri, r->target, sizeof r->target);
        if (!known) {
            srv.stats.over_capacity++;
            r->close_after = 1;
            return http_respond_error(r, 503, PROTO_E_LIMIT,
                                      "the broker is at limits.max_connections: try again later");
        }
        known = 0;
    }
    for (size_t i = 0; i < NROUTES; i++) {
        if (!(routes[i].flags & R_OPEN) || !path_match(&routes[i], uri, r->target, sizeof r->target)) continue;
        if (routes[i].method != r->method) return wrong_method(r, uri);
        return run(r, &routes[i]);
    }
    /* A request with a valid API key counts against the key's own limit:
     * limits.rest_per_minute is for browsers, and a backend's requests
     * would share an address. Any other request counts against its address,
     * before its key is looked at (a guesser is limited, then cooled off). */
    if (!auth_rest_open() && strncmp(uri, "/ws", 3) && http_authorization(r, auth, sizeof auth) >= 0)
        r->key = auth_apikey(auth);
    if (r->key && (v = rl_key(r->key, 1, r->peer, &retry)) != RL_OK) {
        srv.stats.rest_rate_limited++;
        r->retry_after = retry;
        return http_respond_error(r, 429, PROTO_E_RATE_LIMITED,
                                  v == RL_COOLOFF ? "too many requests from this address (limits.rest_per_minute)"
                                                  : "too many requests with this API key ([apikey] requests_per_minute)");
    }
    if (!r->key && rl_rest(r->peer, &retry) != RL_OK) {
        srv.stats.rest_rate_limited++;
        r->retry_after = retry;
        return http_respond_error(r, 429, PROTO_E_RATE_LIMITED,
                                  "too many requests from this address (limits.rest_per_minute)");
    }
    if (!auth_rest_open() && strncmp(uri, "/ws", 3)) {
        if (!r->key) {
            srv.stats.rest_unauthorized++;
            rl_auth_failed(r->peer);
            return http_respond_error(r, 401, PROTO_E_UNAUTHORIZED, "send an API key: Authorization: Bearer <key>");
        }
    }
    if (!strcmp(uri, "/ws"))
        return http_respond_error(r, 426, PROTO_E_BAD_FIELD,
                                  "this is the WebSocket endpoint: connect with a WebSocket client");
    for (size_t i = 0; i < NROUTES; i++) {
        if (!path_match(&routes[i], uri, r->target, sizeof r->target)) continue;
        if (routes[i].method == r->method) return run(r, &routes[i]);
        known = 1;
    }
    if (known) return wrong_method(r, uri);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strncmp(uri, families[i].prefix, strlen(families[i].prefix)))
            return http_respond_error(r, 404, PROTO_E_BAD_FIELD, families[i].reason);
    return http_respond_error(r, 404, PROTO_E_BAD_FIELD, "no such endpoint");
}

static int on_body(http_req_t *r)
{
    return ((const struct route *)r->route)->on_body(r);
}

void api_init(void)
{
    static const struct http_hooks hooks = { on_request, on_body };
    http_set_hooks(&hooks);
    batch_init();
}
