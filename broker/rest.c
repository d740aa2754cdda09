/* broker/rest.c - see rest.h. */
#include "rest.h"
#include "channel.h"
#include "chname.h"
#include "conns.h"
#include "herald.h"
#include "history.h"
#include "ops.h"
#include "admin.h"
#include "presence.h"
#include "state.h"
#include "seats.h"
#include "adapters.h"
#include "metrics.h"
#include "auth.h"
#include "ratelimit.h"
#include "pubpipe.h"
#include "frame.h"
#include "msg.h"
#include "json.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ROUTE_NONE = 0, ROUTE_PUBLISH, ROUTE_STATE, ROUTE_SCOREBOARD, ROUTE_SEATS };

static void reset(rest_req_t *r)
{
    conn_unregister(&r->serial);
    free(r->body);
    free(r->resp);
    memset(r, 0, sizeof *r);
}

void rest_on_closed(rest_req_t *r)
{
    if (r && r->kind == REST_KIND) reset(r);
}

static int add_hdr(struct lws *wsi, const char *name, const char *value, unsigned char **p, unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)value,
                                       (int)strlen(value), p, end);
}

/* Headers every API response carries. */
static int common_headers(rest_req_t *r, struct lws *wsi, unsigned status, unsigned char **p, unsigned char *end)
{
    char num[16];

    if (add_hdr(wsi, "cache-control:", "no-store", p, end) ||
        add_hdr(wsi, "x-content-type-options:", "nosniff", p, end) ||
        add_hdr(wsi, "x-frame-options:", "DENY", p, end) ||
        add_hdr(wsi, "referrer-policy:", "no-referrer", p, end))
        return -1;
    if (r->cors_origin[0] &&
        (add_hdr(wsi, "access-control-allow-origin:", r->cors_origin, p, end) ||
         add_hdr(wsi, "vary:", "Origin", p, end)))
        return -1;
    if (status == 401 && add_hdr(wsi, "www-authenticate:", "Bearer realm=\"herald\"", p, end)) return -1;
    if (status == 429 && r->retry_after) {
        snprintf(num, sizeof num, "%u", r->retry_after);
        if (add_hdr(wsi, "retry-after:", num, p, end)) return -1;
    }
    if (r->close_after && add_hdr(wsi, "connection:", "close", p, end)) return -1;
    return 0;
}

static void log_request(rest_req_t *r, unsigned status)
{
    int errors = status >= 400;
    if (srv.cfg.log_requests == LOG_REQ_OFF || (srv.cfg.log_requests == LOG_REQ_ERRORS && !errors)) return;
    hlog(errors && status >= 500 ? LOG_WARN : LOG_INFO, "rest", "%s %s %s -> %u (%.1f ms)", r->peer, r->method,
         r->path, status, (double)(clock_mono_ns() - r->start_ns) / 1e6);
}

/* Sends the status line and headers now and queues @body for the writable
 * callback. Return: 0, or -1 to close. */
static int respond_typed(rest_req_t *r, struct lws *wsi, unsigned status, const char *type, const void *body,
                         size_t len)
{
    unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;

    log_request(r, status);
    conn_unregister(&r->serial);
    free(r->resp);
    r->resp = malloc(FRAME_HEADROOM + len + 1);
    if (!r->resp) return -1;
    memcpy(r->resp + FRAME_HEADROOM, body, len);
    r->resp_len = len;
    if (lws_add_http_common_headers(wsi, status, type, len, &p, end) ||
        common_headers(r, wsi, status, &p, end) ||
        (r->csp && add_hdr(wsi, "content-security-policy:", r->csp, &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int respond(rest_req_t *r, struct lws *wsi, unsigned status, const void *body, size_t len)
{
    return respond_typed(r, wsi, status, "application/json", body, len);
}

/* A CORS preflight: 204 with what the API accepts, when the Origin may call it. */
static int preflight(rest_req_t *r, struct lws *wsi)
{
    unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;

    if (lws_add_http_common_headers(wsi, 204, "application/json", 0, &p, end) ||
        common_headers(r, wsi, 204, &p, end) ||
        (r->cors_origin[0] &&
         (add_hdr(wsi, "access-control-allow-methods:", "GET, POST, PUT, DELETE, OPTIONS", &p, end) ||
          add_hdr(wsi, "access-control-allow-headers:", "Authorization, Content-Type", &p, end) ||
          add_hdr(wsi, "access-control-max-age:", "600", &p, end))) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    r->kind = 0;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Fills r->cors_origin with the request's Origin if server.cors_origins allows it. */
static void cors(rest_req_t *r, struct lws *wsi)
{
    char origin[256];

    r->cors_origin[0] = '\0';
    if (!*srv.cfg.cors_origins || lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0) return;
    if (!strcmp(srv.cfg.cors_origins, "*")) strcpy(r->cors_origin, "*");
    else if (auth_origin_listed(srv.cfg.cors_origins, origin)) snprintf(r->cors_origin, sizeof r->cors_origin, "%s", origin);
}

static int respond_json(rest_req_t *r, struct lws *wsi, unsigned status, json_t *v)
{
    wbuf_reset(&srv.enc);
    if (v) json_emit(&srv.enc, v);
    json_decref(v);
    if (!v || srv.enc.oom) return -1;
    wbuf_putc(&srv.enc, '\n');
    return respond(r, wsi, status, srv.enc.p, srv.enc.len);
}

/* The HTTP status of a Herald error code (docs/protocol.md, section 6). */
static unsigned status_of(int code)
{
    switch (code) {
    case PROTO_E_MALFORMED: case PROTO_E_BAD_FIELD: case PROTO_E_BAD_CHANNEL: return 400;
    case PROTO_E_TOO_LARGE: return 413;
    case PROTO_E_LIMIT: return 503;
    case PROTO_E_STORAGE: return 507;
    case PROTO_E_NO_HISTORY: case PROTO_E_DISABLED: return 404;
    case PROTO_E_UNAUTHORIZED: return 401;
    case PROTO_E_FORBIDDEN: return 403;
    case PROTO_E_RATE_LIMITED: return 429;
    default: return 500;
    }
}

static int respond_error(rest_req_t *r, struct lws *wsi, unsigned status, int code, const char *reason)
{
    json_t *e = json_pack("{s:{s:i,s:s}}", "error", "code", code, "reason", reason);
    return respond_json(r, wsi, status, e);
}

void rest_finish(uint64_t serial, unsigned status, const void *body, size_t len)
{
    rest_req_t *r = conn_find(serial);
    if (!r) return;
    if (!body) {
        if (respond_error(r, r->wsi, 500, PROTO_E_INTERNAL, "out of memory")) lws_set_timeout(r->wsi, 1, LWS_TO_KILL_ASYNC);
        return;
    }
    if (respond(r, r->wsi, status, body, len)) lws_set_timeout(r->wsi, 1, LWS_TO_KILL_ASYNC);
}

void rest_finish_json(uint64_t serial, unsigned status, json_t *v)
{
    rest_req_t *r = conn_find(serial);
    if (!r) { json_decref(v); return; }
    if (respond_json(r, r->wsi, status, v)) lws_set_timeout(r->wsi, 1, LWS_TO_KILL_ASYNC);
}

void rest_finish_error(uint64_t serial, unsigned status, int code, const char *reason)
{
    rest_finish_json(serial, status, json_pack("{s:{s:i,s:s}}", "error", "code", code, "reason", reason));
}

/* Parks @r until rest_finish() answers it. Return: 0, or -1 to close. */
static int await(rest_req_t *r)
{
    return conn_register(r, &r->serial) ? -1 : 0;
}

static int query_uint(struct lws *wsi, const char *name, uint64_t *out);
static int await(rest_req_t *r);

static int health(rest_req_t *r, struct lws *wsi)
{
    unsigned status;
    json_t *v = admin_health(&status);
    return respond_json(r, wsi, status, v);
}

extern const unsigned char admin_page_html[];
extern const size_t admin_page_html_len;

/* GET /admin: the page holds no data; it asks for an admin key itself and
 * reads everything over the WebSocket. */
static int admin_page(rest_req_t *r, struct lws *wsi)
{
    r->csp = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
             "connect-src 'self' ws: wss:; img-src 'self' data:";
    return respond_typed(r, wsi, 200, "text/html; charset=utf-8", admin_page_html, admin_page_html_len);
}

/* Operator endpoints need an admin key once keys are configured. */
static int is_admin(const rest_req_t *r)
{
    return auth_rest_open() || (r->key && r->key->admin);
}

static int forbid_non_admin(rest_req_t *r, struct lws *wsi)
{
    srv.stats.rest_unauthorized++;
    return respond_error(r, wsi, 403, PROTO_E_FORBIDDEN, "this endpoint needs an admin API key");
}

static int ready(rest_req_t *r, struct lws *wsi)
{
    int rc;
    if (await(r)) return -1;
    if ((rc = admin_ready(r->serial)))
        return respond_json(r, wsi, 503, json_pack("{s:s,s:[s]}", "status", "not_ready", "reasons",
                                                   rc == -ESHUTDOWN ? "stopping" : "storage: no store"));
    return 0;
}

static int metrics_page(rest_req_t *r, struct lws *wsi)
{
    wbuf_reset(&srv.enc);
    metrics_render(&srv.enc);
    if (srv.enc.oom) return respond_error(r, wsi, 500, PROTO_E_INTERNAL, "out of memory");
    return respond_typed(r, wsi, 200, "text/plain; version=0.0.4; charset=utf-8", srv.enc.p, srv.enc.len);
}

/* GET /api/channels?prefix=&cursor=&limit= */
static int channel_list(rest_req_t *r, struct lws *wsi)
{
    char buf[320];
    const char *prefix = lws_get_urlarg_by_name(wsi, "prefix=", buf, sizeof buf);
    char pfx[300];
    uint64_t cursor = 0, limit = 100;

    snprintf(pfx, sizeof pfx, "%s", prefix ? prefix : "");
    if (query_uint(wsi, "cursor=", &cursor) || query_uint(wsi, "limit=", &limit) || limit < 1 || limit > 1000)
        return respond_error(r, wsi, 400, PROTO_E_BAD_FIELD, "cursor must be an integer >= 0, limit from 1 to 1000");
    if (await(r)) return -1;
    if (admin_channels(r->serial, pfx, cursor, (unsigned)limit))
        return respond_error(r, wsi, 500, PROTO_E_INTERNAL, "out of memory");
    return 0;
}

/* POST /api/admin/log?level=debug */
static int set_log_level(rest_req_t *r, struct lws *wsi)
{
    char buf[40];
    const char *lv = lws_get_urlarg_by_name(wsi, "level=", buf, sizeof buf);
    if (!lv || admin_set_log_level(lv))
        return respond_error(r, wsi, 400, PROTO_E_BAD_FIELD, "level must be error, warn, info or debug");
    return respond_json(r, wsi, 200, json_pack("{s:s}", "level", log_level_name((enum log_level)log_current_level)));
}

/* Reads the media type of the request; -1 if it is neither JSON nor MessagePack. */
static int body_encoding(struct lws *wsi)
{
    char ct[128];
    int n = lws_hdr_copy(wsi, ct, sizeof ct, WSI_TOKEN_HTTP_CONTENT_TYPE);
    char *semi;

    if (n <= 0) return PROTO_JSON;          /* no Content-Type: take it as JSON */
    if ((semi = strchr(ct, ';'))) *semi = '\0';
    for (char *e = ct + strlen(ct); e > ct && (e[-1] == ' ' || e[-1] == '\t'); ) *--e = '\0';
    if (!strcasecmp(ct, "application/json")) return PROTO_JSON;
    if (!strcasecmp(ct, "application/msgpack") || !strcasecmp(ct, "application/x-msgpack") ||
        !strcasecmp(ct, "application/vnd.msgpack"))
        return PROTO_MSGPACK;
    return -1;
}

/* Reads query parameter @name ("since=") as an unsigned integer into *@out.
 * Return: 0 (absent or read), -1 if present but not a number. */
static int query_uint(struct lws *wsi, const char *name, uint64_t *out)
{
    char buf[32], *end;
    const char *v = lws_get_urlarg_by_name(wsi, name, buf, sizeof buf);
    unsigned long long n;

    if (!v) return 0;
    if (!*v || *v == '-') return -1;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (*end || errno) return -1;
    *out = n;
    return 0;
}

/* GET /api/channels/{channel}/history?since=&before=&limit=&reverse= */
static int channel_history(rest_req_t *r, struct lws *wsi, const char *name, size_t len)
{
    struct history_page page = { 0, 0, 100, 0, 0 };
    struct pub_origin origin = { ORIGIN_REST, 0, NULL };
    uint64_t limit = 100;
    char rev[32];   /* lws copies the whole "reverse=..." fragment here */
    const char *why;
    const char *rv;
    chan_t *c;
    int rc;

    if (!chname_valid(name, len, &why)) return respond_error(r, wsi, 400, PROTO_E_BAD_CHANNEL, why);
    if (query_uint(wsi, "since=", &page.since) || query_uint(wsi, "before=", &page.before) ||
        query_uint(wsi, "thread=", &page.thread) ||
        query_uint(wsi, "limit=", &limit) || limit < 1 || limit > HISTORY_LIMIT_MAX)
        return respond_error(r, wsi, 400, PROTO_E_BAD_FIELD,
                             "since and before must be integers >= 0, limit from 1 to 1000");
    page.limit = (unsigned)limit;
    if ((rv = lws_get_urlarg_by_name(wsi, "reverse=", rev, sizeof rev))) {
        if (!strcmp(rv, "true") || !strcmp(rv, "1")) page.reverse = 1;
        else if (strcmp(rv, "false") && strcmp(rv, "0"))
            return respond_error(r, wsi, 400, PROTO_E_BAD_FIELD, "reverse must be true or false");
    }
    if ((rc = chan_open(name, len, &c)) == PROTO_E_LIMIT)
        return respond_error(r, wsi, 503, PROTO_E_LIMIT, "limit reached: limits.max_channels");
    if (rc) return respond_error(r, wsi, 500, PROTO_E_INTERNAL, "out of memory");
    if (await(r)) { chan_maybe_drop(c); return -1; }
    origin.serial = r->serial;
    rc = history_query(c, &page, &origin);
    chan_maybe_drop(c);
    if (rc == PROTO_E_NO_HISTORY)
        return respond_error(r, wsi, 404, PROTO_E_NO_HISTORY, "this channel's namespace keeps no history");
    if (rc) return respond_error(r, wsi, 500, PROTO_E_INTERNAL, "out of memory");
    return 0;
}

/* Routes /api/channels/... : {channel}/history now; later the channel itself. */
/* GET or POST /api/channels/{channel}/state */
static int state_route(rest_req_t *r, struct lws *wsi, const char *name, size_t len, int is_get)
{
    struct state_page page;
    char buf[300];
    const char *why, *v;
    uint64_t limit = 100;
    chan_t *c;
    int rc;

    if (!chname_valid(name, len, &why)) return respond_error(r, wsi, 400, PROTO_E_BAD_CHANNEL, why);
    if (!config_ns(&srv.cfg, name, len)->state)
        return respond_error(r, wsi, 404, PROTO_E_DISABLED, "this channel's namespace is not a state namespace");
    if (!is_get) {
        /* POST: the body ({"ops":[...]}) follows; state_post() runs it. */
        if (r->key && !auth_key_may_publish(r->key, name, len))
            return respond_error(r, wsi, 403, PROTO_E_FORBIDDEN, "this API key may not change this namespace");
        if (seats_is_map(name, len))
            return respond_error(r, wsi, 403, PROTO_E_FORBIDDEN,
                                 "a seat map changes through seat operations only (/api/events/{event}/...)");
        if (len >= sizeof r->state_chan) return respond_error(r, wsi, 400, PROTO_E_BAD_CHANNEL, "channel name too long");
        memcpy(r->state_chan, name, len);
        r->state_chan[len] = '\0';
        r->route = ROUTE_STATE;
        r->enc = PROTO_JSON;
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
            return respond_error(r, wsi, 411, PROTO_E_BAD_FIELD, "send the body with a Content-Length");
        r->close_after = 0;
        return 0;
    }
    memset(&page, 0, sizeof page);
    if (query_uint(wsi, "limit=", &limit) || limit < 1 || limit > 1000)
        return respond_error(r, wsi, 400, PROTO_E_BAD_FIELD, "limit must be from 1 to 1000");
    page.limit = (unsigned)limit;
    if ((v = lws_get_urlarg_by_name(wsi, "prefix=", buf, sizeof buf))) snprintf(page.prefix, sizeof page.prefix, "%s", v);
    if ((v = lws_get_urlarg_by_name(wsi, "cursor=", buf, sizeof buf))) snprintf(page.after, sizeof page.after, "%s", v);
    if ((v = lws_get_urlarg_by_name(wsi, "field=", buf, sizeof buf))) snprintf(page.field, sizeof page.field, "%s", v);
    if ((v = lws_get_urlarg_by_name(wsi, "value=", buf, sizeof buf))) snprintf(page.value, sizeof page.value, "%s", v);
    if ((v = lws_get_urlarg_by_name(wsi, "q=", buf, sizeof buf))) snprintf(page.q, sizeof page.q, "%s", v);
    if (*page.field && !lws_get_urlarg_by_name(wsi, "value=", buf, sizeof buf))
        return respond_error(r, wsi, 400, PROTO_E_BAD_FIELD, "field= needs value=");
    if ((rc = chan_open(name, len, &c))) return respond_error(r, wsi, rc == PROTO_E_LIMIT ? 503 : 500, rc, "cannot open channel");
    if (await(r)) { chan_maybe_drop(c); return -1; }
    rc = state_list(c, &page, r->serial);
    chan_maybe_drop(c);
    return rc ? respond_error(r, wsi, 500, PROTO_E_INTERNAL, "out of memory") : 0;
}

/* The body of POST /api/channels/{channel}/state, or of a scoreboard call,
 * has arrived: run its operations on r->state_chan. */
static int state_post(rest_req_t *r, struct lws *wsi)
{
    char reason[PROTO_REASON_MAX];
    struct pub_origin origin = { ORIGIN_REST, 0, NULL };
    size_t len = strlen(r->state_chan);
    state_ops_t *ops;
    json_t *msg = NULL, *list;
    chan_t *c;
    int code;

    if (r->too_large) return respond_error(r, wsi, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
    if (r->blen || r->route != ROUTE_SCOREBOARD || strcmp(r->adapter_action, "reset")) {
        if ((code = msg_decode(PROTO_JSON, r->body ? r->body : (unsigned char *)"", r->blen, &msg, reason)))
            return respond_error(r, wsi, 400, code, reason);
    }
    if (r->route == ROUTE_SCOREBOARD) {
        if (!(list = scoreboard_ops(r->adapter_action, msg, reason))) {
            json_decref(msg);
            return respond_error(r, wsi, 400, PROTO_E_BAD_FIELD, reason);
        }
    } else {
        list = json_incref(json_object_get(msg, "ops"));
    }
    code = state_parse(list, &ops, reason);
    json_decref(list);
    json_decref(msg);
    if (code) return respond_error(r, wsi, status_of(code), code, reason);
    if ((code = chan_open(r->state_chan, len, &c))) {
        state_ops_free(ops);
        return respond_error(r, wsi, status_of(code), code, "cannot open channel");
    }
    if (await(r)) { state_ops_free(ops); chan_maybe_drop(c); return -1; }
    origin.serial = r->serial;
    if (pubpipe_state(c, ops, &origin)) {
        chan_maybe_drop(c);
        return respond_error(r, wsi, 500, PROTO_E_INTERNAL, "out of memory");
    }
    return 0;
}

/* POST /api/scoreboards/{game}/score|reset, PUT /api/scoreboards/{game}/teams */
static int scoreboard_route(rest_req_t *r, struct lws *wsi, const char *rest, int is_post, int is_put)
{
    const char *slash = strrchr(rest, '/');
    const char *action = slash ? slash + 1 : "";

    if (!slash || scoreboard_channel(rest, (size_t)(slash - rest), r->state_chan, sizeof r->state_chan))
        return respond_error(r, wsi, 404, PROTO_E_BAD_FIELD, "use /api/scoreboards/{game}/score, /teams or /reset");
    if (!strcmp(action, "teams") ? !is_put : !is_post)
        return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, !strcmp(action, "teams") ? "use PUT" : "use POST");
    if (strcmp(action, "score") && strcmp(action, "teams") && strcmp(action, "reset"))
        return respond_error(r, wsi, 404, PROTO_E_BAD_FIELD, "no such scoreboard action (score, teams, reset)");
    if (!config_ns(&srv.cfg, r->state_chan, strlen(r->state_chan))->state)
        return respond_error(r, wsi, 404, PROTO_E_DISABLED,
                             "scoreboards need [namespace scores] state = on in the configuration");
    if (r->key && !auth_key_may_publish(r->key, r->state_chan, strlen(r->state_chan)))
        return respond_error(r, wsi, 403, PROTO_E_FORBIDDEN, "this API key may not change the scores namespace");
    snprintf(r->adapter_action, sizeof r->adapter_action, "%s", action);
    r->route = ROUTE_SCOREBOARD;
    r->enc = PROTO_JSON;
    r->close_after = 0;
    /* A reset may come without a body; then nothing else will arrive. */
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) {
        if (!strcmp(action, "reset")) return state_post(r, wsi);
        return respond_error(r, wsi, 411, PROTO_E_BAD_FIELD, "send the body with a Content-Length");
    }
    return 0;
}

/* /api/events/{event}/seats (PUT: define, POST: add), .../hold, .../confirm,
 * .../release, .../waitlist and .../waitlist/leave (POST). */
static int events_route(rest_req_t *r, struct lws *wsi, const char *rest, int is_post, int is_put)
{
    static const struct { const char *path, *action; } paths[] = {
        { "hold", "hold" }, { "confirm", "confirm" }, { "release", "release" },
        { "waitlist", "waitlist" }, { "waitlist/leave", "waitlist_leave" },
    };
    const char *slash = strchr(rest, '/'), *path = slash ? slash + 1 : "", *action = NULL;

    if (!slash || seats_channel(rest, (size_t)(slash - rest), r->state_chan, sizeof r->state_chan))
        return respond_error(r, wsi, 404, PROTO_E_BAD_FIELD,
                             "use /api/events/{event}/seats, /hold, /confirm, /release, /waitlist or /waitlist/leave "
                             "(event ids are 1-64 letters, digits, '_', '-' or '.')");
    if (!strcmp(path, "seats")) {
        if (!is_put && !is_post) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use PUT (define) or POST (add)");
        action = is_put ? "define" : "add";
    } else {
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
            if (!strcmp(path, paths[i].path)) action = paths[i].action;
        if (!action)
            return respond_error(r, wsi, 404, PROTO_E_BAD_FIELD,
                                 "no such seat map action (seats, hold, confirm, release, waitlist, waitlist/leave)");
        if (!is_post) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use POST");
    }
    if (!config_ns(&srv.cfg, r->state_chan, strlen(r->state_chan))->state)
        return respond_error(r, wsi, 404, PROTO_E_DISABLED,
                             "seat maps need [namespace " SEATS_NS "] state = on in the configuration");
    if (r->key && !auth_key_may_publish(r->key, r->state_chan, strlen(r->state_chan)))
        return respond_error(r, wsi, 403, PROTO_E_FORBIDDEN, "this API key may not change the seats namespace");
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return respond_error(r, wsi, 411, PROTO_E_BAD_FIELD, "send the body with a Content-Length");
    snprintf(r->adapter_action, sizeof r->adapter_action, "%s", action);
    r->route = ROUTE_SEATS;
    r->enc = PROTO_JSON;
    r->close_after = 0;
    return 0;
}

/* The body of a seat map request has arrived. */
static int seats_post(rest_req_t *r, struct lws *wsi)
{
    char reason[PROTO_REASON_MAX];
    struct pub_origin origin = { ORIGIN_REST, 0, NULL };
    json_t *msg = NULL;
    int code;

    if (r->too_large) return respond_error(r, wsi, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
    if ((code = msg_decode(PROTO_JSON, r->body ? r->body : (unsigned char *)"", r->blen, &msg, reason)))
        return respond_error(r, wsi, 400, code, reason);
    if (await(r)) { json_decref(msg); return -1; }
    origin.serial = r->serial;
    code = seats_request(r->state_chan, r->adapter_action, msg, NULL, 1, &origin, reason);
    json_decref(msg);
    return code ? respond_error(r, wsi, status_of(code), code, reason) : 0;
}

/* GET /api/channels/{channel}/presence */
static int channel_presence(rest_req_t *r, struct lws *wsi, const char *name, size_t len)
{
    const char *why;
    chan_t *c;
    json_t *v;

    if (!chname_valid(name, len, &why)) return respond_error(r, wsi, 400, PROTO_E_BAD_CHANNEL, why);
    c = chan_find(name, len);
    if (c ? !c->ns->presence : !config_ns(&srv.cfg, name, len)->presence)
        return respond_error(r, wsi, 404, PROTO_E_DISABLED, "this channel's namespace has no presence");
    if (!c) return respond_json(r, wsi, 200, json_pack("{s:s%,s:[],s:i,s:i}", "channel", name, len, "members",
                                                       "count", 0, "connections", 0));
    v = presence_json(c);
    if (v) json_object_set_new(v, "channel", json_stringn(name, len));
    return respond_json(r, wsi, 200, v);
}

static int channels_route(rest_req_t *r, struct lws *wsi, const char *rest, int is_get)
{
    static const char suffix[] = "/history", psuffix[] = "/presence";
    size_t n = strlen(rest), sl = sizeof suffix - 1, pl = sizeof psuffix - 1;
    const char *why;

    if (n > pl && !strcmp(rest + n - pl, psuffix)) {
        if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
        return channel_presence(r, wsi, rest, n - pl);
    }
    if (n > 6 && !strcmp(rest + n - 6, "/state")) return state_route(r, wsi, rest, n - 6, is_get);
    if (n > sl && !strcmp(rest + n - sl, suffix)) {
        if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
        return channel_history(r, wsi, rest, n - sl);
    }
    if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
    if (!chname_valid(rest, n, &why)) return respond_error(r, wsi, 400, PROTO_E_BAD_CHANNEL, why);
    if (!is_admin(r)) return forbid_non_admin(r, wsi);
    if (await(r)) return -1;
    if (admin_channel(r->serial, rest, n)) return respond_error(r, wsi, 500, PROTO_E_INTERNAL, "out of memory");
    return 0;
}

int rest_on_http(rest_req_t *r, struct lws *wsi, const char *uri)
{
    int is_post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    int is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    int is_options = lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0;
    char cl[32], auth[600];
    unsigned retry = 0;
    int enc;

    if (r->kind == REST_KIND) {
        /* HTTP pipelining: this request came before the last one was
         * answered (its answer may wait on a commit). Herald answers one
         * request at a time: the earlier one is answered, then the
         * connection closes, and this one is never acted on, so the client
         * can safely send it again. Its body is ignored. */
        r->pipelined = 1;
        r->close_after = 1;
        return 0;
    }
    reset(r);
    r->kind = REST_KIND;
    r->wsi = wsi;
    r->start_ns = clock_mono_ns();
    r->method = is_get ? "GET" : is_post ? "POST" : is_options ? "OPTIONS" : "other";
    snprintf(r->path, sizeof r->path, "%s", uri);
    lws_get_peer_simple(wsi, r->peer, sizeof r->peer);
    cors(r, wsi);
    /* A body we will not read must not be taken for the next request. */
    r->close_after = is_post || lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0;
    if (is_options) return preflight(r, wsi);
    if (!strcmp(uri, "/api/health")) {
        if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
        return health(r, wsi);
    }
    if (!strcmp(uri, "/api/health/ready")) {
        if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
        return ready(r, wsi);
    }
    if (!strcmp(uri, "/admin")) {
        if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
        return admin_page(r, wsi);
    }
    switch (rl_rest(r->peer, &retry)) {
    case RL_OK: break;
    default:
        srv.stats.rest_rate_limited++;
        r->retry_after = retry;
        return respond_error(r, wsi, 429, PROTO_E_RATE_LIMITED,
                             "too many requests from this address (limits.rest_per_minute)");
    }
    if (!auth_rest_open() && strncmp(uri, "/ws", 3)) {
        if (lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) <= 0 ||
            !(r->key = auth_apikey(auth))) {
            srv.stats.rest_unauthorized++;
            rl_auth_failed(r->peer);
            return respond_error(r, wsi, 401, PROTO_E_UNAUTHORIZED,
                                 "send an API key: Authorization: Bearer <key>");
        }
    }
    if (!strcmp(uri, "/ws"))
        return respond_error(r, wsi, 426, PROTO_E_BAD_FIELD,
                             "this is the WebSocket endpoint: connect with a WebSocket client");
    if (!strncmp(uri, "/api/channels/", 14)) return channels_route(r, wsi, uri + 14, is_get);
    if (!strncmp(uri, "/api/events/", 12))
        return events_route(r, wsi, uri + 12, is_post, lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0);
    if (!strncmp(uri, "/api/scoreboards/", 17))
        return scoreboard_route(r, wsi, uri + 17, is_post, lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0);
    if (!strcmp(uri, "/api/channels")) {
        if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
        return is_admin(r) ? channel_list(r, wsi) : forbid_non_admin(r, wsi);
    }
    if (!strcmp(uri, "/metrics")) {
        if (!is_get) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use GET");
        return is_admin(r) ? metrics_page(r, wsi) : forbid_non_admin(r, wsi);
    }
    if (!strcmp(uri, "/api/admin/log")) {
        if (!is_post) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use POST");
        r->close_after = 0;
        return is_admin(r) ? set_log_level(r, wsi) : forbid_non_admin(r, wsi);
    }
    if (strcmp(uri, "/api/publish")) return respond_error(r, wsi, 404, PROTO_E_BAD_FIELD, "no such endpoint");
    if (!is_post) return respond_error(r, wsi, 405, PROTO_E_BAD_FIELD, "use POST");

    /* Answer before reading the body when the headers already tell us it
     * will be refused, and close; route stays NONE, so the body that follows
     * is ignored rather than published. */
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0 ||
        lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return respond_error(r, wsi, 411, PROTO_E_BAD_FIELD,
                             "send the body with a Content-Length (chunked bodies are not accepted)");
    if ((enc = body_encoding(wsi)) < 0)
        return respond_error(r, wsi, 415, PROTO_E_MALFORMED,
                             "Content-Type must be application/json or application/msgpack");
    r->enc = (uint8_t)enc;
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        strtoull(cl, NULL, 10) > srv.cfg.max_message_size)
        return respond_error(r, wsi, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
    r->route = ROUTE_PUBLISH;
    r->close_after = 0;
    return 0;                              /* the body follows */
}

int rest_on_body(rest_req_t *r, struct lws *wsi, const void *in, size_t len)
{
    (void)wsi;
    if (r->kind != REST_KIND || r->route == ROUTE_NONE || r->too_large || r->pipelined || len == 0)
        return 0;
    if (r->blen + len > srv.cfg.max_message_size) {
        /* A chunked body with no Content-Length: keep reading, answer 413 at the end. */
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->blen = r->bcap = 0;
        return 0;
    }
    if (r->blen + len > r->bcap) {
        size_t ncap = r->bcap ? r->bcap * 2 : 1024;
        unsigned char *p;
        while (ncap < r->blen + len) ncap *= 2;
        if (!(p = realloc(r->body, ncap))) return -1;
        r->body = p;
        r->bcap = ncap;
    }
    memcpy(r->body + r->blen, in, len);
    r->blen += len;
    return 0;
}

static int publish(rest_req_t *r, struct lws *wsi)
{
#define get_reply ops_get_reply
    char reason[PROTO_REASON_MAX];
    struct pub_origin origin = { ORIGIN_REST, 0, NULL };
    const char *name, *kind = NULL;
    uint64_t reply_to = 0;
    size_t len;
    json_t *msg = NULL, *data;
    int code;

    if (r->too_large)
        return respond_error(r, wsi, 413, PROTO_E_TOO_LARGE, "body larger than limits.max_message_size");
    if ((code = msg_decode((enum proto_enc)r->enc, r->body ? r->body : (unsigned char *)"", r->blen, &msg, reason)))
        return respond_error(r, wsi, 400, code, reason);
    if ((code = msg_get_channel(msg, &name, &len, reason))) goto bad;
    if (!(data = json_object_get(msg, "data"))) {
        code = PROTO_E_BAD_FIELD;
        snprintf(reason, sizeof reason, "field \"data\" is required");
        goto bad;
    }
    if (r->key && !auth_key_may_publish(r->key, name, len)) {
        srv.stats.rest_unauthorized++;
        json_decref(msg);
        return respond_error(r, wsi, 403, PROTO_E_FORBIDDEN, "this API key may not publish to this namespace");
    }
    if (await(r)) { json_decref(msg); return -1; }
    origin.serial = r->serial;
    if ((code = get_reply(msg, &reply_to, &kind, reason))) goto bad;
    if ((code = ops_publish(name, len, data, NULL, reply_to, kind, &origin, reason))) {
        json_decref(msg);
        return respond_error(r, wsi, status_of(code), code, reason);
    }
    json_decref(msg);
    return 0;                              /* ops_pub_done() answers */
bad:
    json_decref(msg);
    return respond_error(r, wsi, 400, code, reason);
}

int rest_on_body_complete(rest_req_t *r, struct lws *wsi)
{
    /* lws 4.1.6 repeats this callback while pipelined bytes follow the
     * body (and its state for the next request is then unsound): take the
     * body once, and treat a repeat as pipelining, answered by closing
     * after the answer in progress. A repeat after the answer went out
     * closes at once. */
    if (r->kind != REST_KIND) return -1;
    if (r->body_done) {
        r->pipelined = 1;
        r->close_after = 1;
        return 0;
    }
    if (r->pipelined) return 0;
    r->body_done = 1;
    if (r->route == ROUTE_STATE || r->route == ROUTE_SCOREBOARD) return state_post(r, wsi);
    if (r->route == ROUTE_SEATS) return seats_post(r, wsi);
    if (r->route != ROUTE_PUBLISH) return 0;
    return publish(r, wsi);
}

int rest_on_writable(rest_req_t *r, struct lws *wsi)
{
    int close_after;

    if (r->kind != REST_KIND || !r->resp) return 0;
    if (lws_write(wsi, r->resp + FRAME_HEADROOM, r->resp_len, LWS_WRITE_HTTP_FINAL) < (int)r->resp_len)
        return -1;
    close_after = r->close_after;
    reset(r);
    if (close_after) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
