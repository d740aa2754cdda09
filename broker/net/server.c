/* broker/net/server.c - see server.h. */
#include "net/server.h"
#include "net/http.h"
#include "net/session.h"
#include "net/frame.h"
#include "auth/auth.h"
#include "auth/ratelimit.h"
#include "herald.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* lws's per-session data is either a WebSocket session or an HTTP request;
 * the first field of each tells which (SESS_KIND_WS / HTTP_KIND). */
union pss {
    uint16_t kind;
    sess_t ws;
    http_req_t http;
};

static struct server_hooks hooks;

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
            if (srv.stopping == 1 && srv.nsessions == 0 && hooks.on_last_session) hooks.on_last_session();
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        return http_on_request(&p->http, wsi, in);
    case LWS_CALLBACK_HTTP_BODY:
        return http_on_body(&p->http, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return http_on_body_complete(&p->http);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_on_writable(&p->http);
    case LWS_CALLBACK_CLOSED_HTTP:
        http_on_closed(p ? &p->http : NULL);   /* user can be NULL here */
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

/* Resolves server.bind and makes sure it is an address of this machine by
 * binding a throwaway socket to it: lws, given an address that is not ours,
 * logs an error and still creates a vhost, one that listens nowhere.
 * @numeric: [out] the address as a literal, which is what lws is given.
 * Return: 0, or -1 (logged). */
static int check_bind(char *numeric, size_t len)
{
    struct addrinfo hints, *res = NULL;
    int rc, fd, one = 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if ((rc = getaddrinfo(srv.cfg.bind, NULL, &hints, &res)) || !res) {
        hlog(LOG_ERROR, "server", "cannot listen on %s: %s", srv.cfg.bind,
             rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, numeric, (socklen_t)len, NULL, 0, NI_NUMERICHOST);
    fd = rc ? -1 : socket(res->ai_family, SOCK_STREAM, 0);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* Port 0: only the address is in question here; a port in use is
         * found (and reported) when lws binds it. */
        if (bind(fd, res->ai_addr, res->ai_addrlen)) rc = errno;
        close(fd);
    } else if (!rc) {
        rc = errno;
    }
    freeaddrinfo(res);
    if (rc) {
        hlog(LOG_ERROR, "server", "cannot listen on %s: %s", srv.cfg.bind,
             rc == EADDRNOTAVAIL ? "not an address of this machine" : strerror(rc));
        return -1;
    }
    return 0;
}

int server_start(const struct server_hooks *h)
{
    struct lws_context_creation_info info;
    void *foreign_loops[1] = { &srv.loop };
    size_t pss = sizeof(union pss);
    size_t tx = srv.cfg.write_batch_max + FRAME_HEADROOM;
    int lvl = LLL_ERR | LLL_WARN;
    char addr[INET6_ADDRSTRLEN];

    hooks = *h;
    if (check_bind(addr, sizeof addr)) return -1;

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
    info.iface = addr;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    info.options &= ~LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    if (!strchr(addr, ':')) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
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
    {
        /* The last line of a start: where a person goes first. A wildcard
         * bind is reached at the loopback address; IPv6 literals go in []. */
        const char *host = !strcmp(srv.cfg.bind, "0.0.0.0") ? "127.0.0.1" : !strcmp(srv.cfg.bind, "::") ? "::1"
                                                                                                          : srv.cfg.bind;
        int v6 = strchr(host, ':') != NULL;
        hlog(LOG_INFO, "server", "widgets: %s://%s%s%s:%d/widgets/ (admin page: /admin)",
             *srv.cfg.tls_cert ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "",
             lws_get_vhost_listen_port(srv.vhost));
    }
    return 0;
}

void server_destroy(void)
{
    if (srv.lws) lws_context_destroy(srv.lws);
}
