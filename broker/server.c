/* broker/server.c - see server.h. */
#include "server.h"
#include "herald.h"
#include "channel.h"
#include "admin.h"
#include "presence.h"
#include "metrics.h"
#include "auth.h"
#include "ratelimit.h"
#include "pubpipe.h"
#include "seats.h"
#include "session.h"
#include "rest.h"
#include "frame.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

struct herald srv;

/* lws's per-session data is either a WebSocket session or an HTTP request;
 * the first field of each tells which (SESS_KIND_WS / REST_KIND). */
union pss {
    uint16_t kind;
    sess_t ws;
    rest_req_t http;
};

/* Descriptors kept back from the connection cap for listeners, the data
 * directory, logs and LMDB. */
#define FD_RESERVE 64

static void stop_begin(void);
static void stop_finish(void);

/* Whether the handshake's Origin is in server.allowed_origins. A request
 * with no Origin is not from a browser page, which is what an Origin
 * allowlist protects against (cross-site WebSocket hijacking): let it through. */
static int origin_allowed(struct lws *wsi)
{
    char origin[256];

    if (!*srv.cfg.allowed_origins || lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0) return 1;
    if (auth_origin_listed(srv.cfg.allowed_origins, origin)) return 1;
    hlog(LOG_INFO, "ws", "refused a WebSocket handshake from Origin %s (server.allowed_origins)", origin);
    srv.stats.origins_refused++;
    return 0;
}

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    union pss *p = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
        char addr[64];
        if (srv.stopping || srv.open_connections >= srv.max_connections) {
            srv.stats.connections_refused++;
            return 1;
        }
        /* in carries the accepted socket. */
        if (!rl_peer((int)(intptr_t)in, addr, sizeof addr) && rl_connect(addr) != RL_OK) {
            srv.stats.connects_limited++;
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_WSI_CREATE:
        srv.open_connections++;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (srv.open_connections) srv.open_connections--;
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        /* WebSocket lives at /ws only. */
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws")) return 1;
        /* lws binds a client that names only our first protocol ("http") to
         * it; Herald's subprotocols are the two herald.* ones, or none. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) > 0 &&
            strcmp(lws_get_protocol(wsi) ? lws_get_protocol(wsi)->name : "", "herald.json") &&
            strcmp(lws_get_protocol(wsi) ? lws_get_protocol(wsi)->name : "", "herald.msgpack"))
            return 1;
        return origin_allowed(wsi) ? 0 : 1;
    }
    case LWS_CALLBACK_ESTABLISHED:
        sess_on_established(&p->ws, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return p->kind == SESS_KIND_WS ? sess_on_receive(&p->ws, in, len) : 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->kind == SESS_KIND_WS ? sess_on_writable(&p->ws) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (p && p->kind == SESS_KIND_WS) sess_on_peer_close(&p->ws);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (p && p->kind == SESS_KIND_WS) {
            sess_on_closed(&p->ws);
            /* Finish from the loop, not from inside lws's own callback. */
            if (srv.stopping == 1 && srv.nsessions == 0) uv_timer_start(&srv.stop_timer, (uv_timer_cb)stop_finish, 0, 0);
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        return rest_on_http(&p->http, wsi, in);
    case LWS_CALLBACK_HTTP_BODY:
        return rest_on_body(&p->http, wsi, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return rest_on_body_complete(&p->http, wsi);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return rest_on_writable(&p->http, wsi);
    case LWS_CALLBACK_CLOSED_HTTP:
        rest_on_closed(p ? &p->http : NULL);   /* user can be NULL here */
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* Built at start: tx_packet_size follows write_batch_max so a coalesced
 * frame goes out in one send() instead of as lws-buffered partials. */
static struct lws_protocols protocols[4];
static lws_retry_bo_t retry_policy;

static void on_lws_log(int level, const char *line)
{
    enum log_level l = level == LLL_ERR ? LOG_ERROR : level == LLL_WARN ? LOG_WARN
                     : level == LLL_NOTICE || level == LLL_USER ? LOG_INFO : LOG_DEBUG;
    /* lws notices are chatty start-up details: keep them at debug. */
    if (level == LLL_NOTICE) l = LOG_DEBUG;
    hlog(l, "lws", "%s", line);
}

/* SIGHUP: take the [log] settings of the config file again, so an operator
 * can turn on debug logging without a restart. */
static void on_hup(uv_signal_t *h, int signum)
{
    char err[512];
    (void)h;
    (void)signum;
    if (config_reload_logging(&srv.cfg, err, sizeof err)) {
        hlog(LOG_WARN, "config", "SIGHUP: %s", err);
        return;
    }
    log_set_level(srv.cfg.log_level);
    log_set_format(srv.cfg.log_format);
    hlog(LOG_INFO, "config", "SIGHUP: log level %s, format %s, requests %s", log_level_name(srv.cfg.log_level),
         srv.cfg.log_format == LOG_FMT_JSON ? "json" : "text",
         srv.cfg.log_requests == LOG_REQ_ALL ? "all" : srv.cfg.log_requests == LOG_REQ_ERRORS ? "errors" : "off");
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    hlog(LOG_INFO, "server", "%s received: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_begin();
}

/* Once a second: connections that never sent connect, tokens about to
 * expire or expired, idle rate-limit entries. */
static void on_tick(uv_timer_t *t)
{
    uint64_t now = uv_now(&srv.loop);
    int64_t wall = clock_wall_ms() / 1000;
    int64_t notice = srv.cfg.refresh_notice_ms / 1000, leeway = srv.cfg.leeway_ms / 1000;

    (void)t;
    for (sess_t *s = srv.sessions; s; s = s->next) {
        if (s->close_code) continue;
        if (!s->connected) {
            if (now - s->created_ms >= srv.cfg.connect_timeout_ms) sess_close(s, CLOSE_CONNECT_TIMEOUT, 1);
            continue;
        }
        if (!s->ident.exp) continue;
        if (wall > s->ident.exp + leeway) {
            hlog(LOG_INFO, "auth", "closing client %s (user %s): token expired", s->id, s->ident.user);
            sess_close(s, CLOSE_TOKEN_EXPIRED, 1);
        } else if (!s->refresh_sent && wall >= s->ident.exp - notice) {
            json_t *m = msg_reply("refresh_required", NULL);
            if (m) json_object_set_new(m, "expires", json_integer(s->ident.exp));
            sess_send(s, m);
            s->refresh_sent = 1;
        }
    }
    rl_sweep();
    admin_tick();
}

static void on_tune(uv_timer_t *t)
{
    (void)t;
    sess_coalesce_adjust();
    presence_tick();
}

static void on_flush(uv_check_t *h)
{
    (void)h;
    if (srv.dirty) sess_flush_dirty();
}

static void close_own_handles(void)
{
    uv_signal_stop(&srv.sig_int);
    uv_signal_stop(&srv.sig_term);
    uv_signal_stop(&srv.sig_hup);
    uv_close((uv_handle_t *)&srv.sig_hup, NULL);
    uv_timer_stop(&srv.tick);
    uv_timer_stop(&srv.stop_timer);
    uv_check_stop(&srv.flush);
    uv_close((uv_handle_t *)&srv.flush, NULL);
    uv_timer_stop(&srv.flush_timer);
    uv_close((uv_handle_t *)&srv.flush_timer, NULL);
    uv_timer_stop(&srv.tune);
    uv_close((uv_handle_t *)&srv.tune, NULL);
    uv_close((uv_handle_t *)&srv.sig_int, NULL);
    uv_close((uv_handle_t *)&srv.sig_term, NULL);
    uv_close((uv_handle_t *)&srv.tick, NULL);
    uv_close((uv_handle_t *)&srv.stop_timer, NULL);
}

static void stop_finish(void)
{
    if (srv.stopping >= 2) return;
    if (srv.nsessions) hlog(LOG_WARN, "server", "shutdown timeout: closing %u connections that did not finish",
                            srv.nsessions);
    srv.stopping = 2;
    /* Commit what is queued and hand out the last outcomes while sessions
     * and requests can still be found. */
    pubpipe_stop();
    if (srv.lws) lws_context_destroy(srv.lws);   /* 1st call: starts closing lws's handles */
    close_own_handles();                         /* uv_run returns once all are closed */
}

static void stop_begin(void)
{
    if (srv.stopping) return;
    srv.stopping = 1;
    for (sess_t *s = srv.sessions; s; s = s->next) sess_close(s, CLOSE_GOING_AWAY, 1);
    if (srv.nsessions == 0) uv_timer_start(&srv.stop_timer, (uv_timer_cb)stop_finish, 0, 0);
    else uv_timer_start(&srv.stop_timer, (uv_timer_cb)stop_finish, srv.cfg.shutdown_timeout_ms, 0);
}

/* Raise the soft descriptor limit to the hard one and size the connection
 * cap below it: at EMFILE libwebsockets spins on accept(). */
static void set_fd_limit(void)
{
    struct rlimit rl;
    unsigned cap;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            hlog(LOG_WARN, "server", "cannot raise the open file limit: %s", strerror(errno));
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    cap = rl.rlim_cur > FD_RESERVE * 2 ? (unsigned)(rl.rlim_cur - FD_RESERVE) : FD_RESERVE;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000) cap = 1000000;
    if (srv.cfg.max_connections && srv.cfg.max_connections < cap) cap = srv.cfg.max_connections;
    else if (srv.cfg.max_connections > cap)
        hlog(LOG_WARN, "server", "limits.max_connections %u is above what the open file limit allows; using %u",
             srv.cfg.max_connections, cap);
    srv.max_connections = cap;
}

static int start_lws(void)
{
    struct lws_context_creation_info info;
    void *foreign_loops[1] = { &srv.loop };
    size_t pss = sizeof(union pss);
    size_t tx = srv.cfg.write_batch_max + FRAME_HEADROOM;
    int lvl = LLL_ERR | LLL_WARN;

    if (log_current_level >= LOG_DEBUG) lvl |= LLL_NOTICE | LLL_INFO;
    lws_set_log_level(lvl, on_lws_log);

    if (tx < srv.cfg.max_message_size + 64) tx = srv.cfg.max_message_size + 64;
    /* A small rx buffer keeps idle connections cheap; larger messages
     * arrive in several RECEIVE callbacks and are reassembled in session.c. */
    protocols[0] = (struct lws_protocols){ "http", on_lws, pss, 2048, 0, NULL, tx };
    protocols[1] = (struct lws_protocols){ "herald.json", on_lws, pss, 2048, 1, NULL, tx };
    protocols[2] = (struct lws_protocols){ "herald.msgpack", on_lws, pss, 2048, 2, NULL, tx };
    protocols[3] = (struct lws_protocols){ NULL, NULL, 0, 0, 0, NULL, 0 };

    retry_policy.secs_since_valid_ping = (uint16_t)(srv.cfg.ping_interval_ms / 1000);
    retry_policy.secs_since_valid_hangup = (uint16_t)(srv.cfg.ping_interval_ms / 1000 * 2 + 5);

    memset(&info, 0, sizeof info);
    info.port = srv.cfg.port;
    info.iface = srv.cfg.bind;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    info.options &= ~LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    if (!strchr(srv.cfg.bind, ':')) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = foreign_loops;
    info.pcontext = &srv.lws;
    info.fd_limit_per_thread = srv.max_connections + FD_RESERVE;
    if (*srv.cfg.tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = srv.cfg.tls_cert;
        info.ssl_private_key_filepath = srv.cfg.tls_key;
    }
    info.timeout_secs = 20;
    /* lws reads a socket into this one per-thread buffer, at most its size
     * per readiness event: 4 KiB by default starves a busy publisher. */
    info.pt_serv_buf_size = 256 * 1024;
    if (srv.cfg.ping_interval_ms) info.retry_and_idle_policy = &retry_policy;

    srv.lws = lws_create_context(&info);
    if (!srv.lws) {
        hlog(LOG_ERROR, "server", "cannot create the libwebsockets context");
        return -1;
    }
    srv.vhost = lws_create_vhost(srv.lws, &info);
    /* With an address that is not ours lws logs the bind error but still
     * returns a vhost, one with no listener. */
    if (!srv.vhost || lws_get_vhost_listen_port(srv.vhost) <= 0) {
        hlog(LOG_ERROR, "server", "cannot listen on %s port %d (in use, or a bad address?)",
             srv.cfg.bind, srv.cfg.port);
        return -1;
    }
    hlog(LOG_INFO, "server", "listening on %s port %d (%s://%s:%d/ws)", srv.cfg.bind,
         lws_get_vhost_listen_port(srv.vhost), *srv.cfg.tls_cert ? "wss" : "ws", srv.cfg.bind,
         lws_get_vhost_listen_port(srv.vhost));
    return 0;
}

int server_run(void)
{
    char err[512];
    int rc = 0;

    srv.started_ms = (uint64_t)clock_wall_ms();
    signal(SIGPIPE, SIG_IGN);
    set_fd_limit();
    if (rl_init(err, sizeof err)) {
        hlog(LOG_ERROR, "auth", "%s", err);
        auth_deinit();
        rl_deinit();
        return 1;
    }
    if (datadir_open(&srv.data, srv.cfg.data_dir, err, sizeof err)) {
        hlog(LOG_ERROR, "storage", "%s", err);
        auth_deinit();
        rl_deinit();
        return 1;
    }
    wbuf_init(&srv.enc);
    srv.batch = malloc(FRAME_HEADROOM + srv.cfg.write_batch_max);
    if (!srv.batch || chan_registry_init() || hmap_init(&srv.conns, 1024) || metrics_init()) {
        hlog(LOG_ERROR, "server", "out of memory at start");
        free(srv.batch);
        datadir_close(&srv.data);
        return 1;
    }

    uv_loop_init(&srv.loop);
    uv_signal_init(&srv.loop, &srv.sig_int);
    uv_signal_init(&srv.loop, &srv.sig_term);
    uv_timer_init(&srv.loop, &srv.tick);
    uv_timer_init(&srv.loop, &srv.stop_timer);
    uv_signal_start(&srv.sig_int, on_signal, SIGINT);
    uv_signal_start(&srv.sig_term, on_signal, SIGTERM);
    uv_signal_init(&srv.loop, &srv.sig_hup);
    uv_signal_start(&srv.sig_hup, on_hup, SIGHUP);
    uv_timer_start(&srv.tick, on_tick, 1000, 1000);
    uv_timer_init(&srv.loop, &srv.flush_timer);
    uv_timer_init(&srv.loop, &srv.tune);
    uv_timer_start(&srv.tune, on_tune, 250, 250);
    uv_check_init(&srv.loop, &srv.flush);
    uv_check_start(&srv.flush, on_flush);
    uv_unref((uv_handle_t *)&srv.flush);

    if (pubpipe_start() || start_lws()) {
        rc = 1;
        srv.stopping = 1;
        stop_finish();
    } else {
        seats_init();
    }
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    if (srv.lws) lws_context_destroy(srv.lws);   /* 2nd call, outside the loop: frees it */
    uv_run(&srv.loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&srv.loop)) hlog(LOG_WARN, "server", "event loop closed with handles still open");

    chan_registry_deinit();
    seats_deinit();
    hmap_deinit(&srv.conns);
    metrics_deinit();
    auth_deinit();
    rl_deinit();
    config_free(&srv.cfg);
    wbuf_deinit(&srv.enc);
    free(srv.batch);
    datadir_close(&srv.data);
    if (rc == 0) hlog(LOG_INFO, "server", "stopped");
    return rc;
}
