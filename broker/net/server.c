/* broker/net/server.c - see server.h. */
#include "net/server.h"
#include "net/http.h"
#include "net/session.h"
#include "net/frame.h"
#include "net/peer.h"
#include "msg.h"
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

/* Refuses a WebSocket handshake with an HTTP answer, so that a browser sees
 * a status rather than a connection reset: @status with the error body the
 * REST API uses ({"error":{"code","reason"}}), then the connection closes.
 * Return: 1 (answered), or -1 (hang up: the headers did not fit). */
static int refuse_handshake(struct lws *wsi, unsigned status, int code, const char *reason)
{
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    char body[384];
    int n = snprintf(body, sizeof body, "{\"error\":{\"code\":%d,\"reason\":\"%s\"}}\n", code, reason);

    if (http_add_common_headers(wsi, status, "application/json", (size_t)n, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:", (const unsigned char *)"close", 5,
                                    &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    /* The answer is a few hundred bytes on a fresh connection: the kernel
     * takes it at once, before lws closes the socket. */
    lws_write(wsi, (unsigned char *)body, (size_t)n, LWS_WRITE_HTTP_FINAL);
    return 1;
}

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

int server_over_capacity(void)
{
    return srv.open_connections > srv.max_connections;
}

/* Whether the subprotocol lws will pick for this handshake is one of
 * Herald's: lws takes the first entry of Sec-WebSocket-Protocol that names
 * any protocol of ours, and "http" (protocols[0], for plain HTTP) is one.
 * No header at all is fine: JSON. */
static int subprotocol_ok(struct lws *wsi)
{
    char list[512], *save = NULL, *tok;
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);

    if (n <= 0) return 1;
    if (n >= (int)sizeof list || lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) < 0) return 0;
    for (tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (!strcmp(tok, "herald.json") || !strcmp(tok, "herald.msgpack")) return 1;
        if (!strcmp(tok, "http")) return 0;
    }
    return 0;
}

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: a WebSocket handshake's headers
 * arrived. Refused with an HTTP status: 404 for a path other than /ws, 400
 * for subprotocols Herald does not speak, 403 for an Origin not allowed,
 * 429 for a client behind a trusted proxy that is over its connect rate or
 * cooling off (one connecting directly was refused at accept).
 * Return: 0 to go on, 1 when refused (lws then ends the request). */
static int on_upgrade(struct lws *wsi)
{
    char uri[64], client[PEER_ADDR_LEN];

    /* WebSocket lives at /ws only. */
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws"))
        return refuse_handshake(wsi, 404, PROTO_E_BAD_FIELD, "no WebSocket endpoint here: connect to /ws");
    /* A connection in the probe reserve is for health and readiness only. */
    if (server_over_capacity()) {
        srv.stats.over_capacity++;
        return refuse_handshake(wsi, 503, PROTO_E_LIMIT, "the broker is at limits.max_connections: try again later");
    }
    if (!subprotocol_ok(wsi))
        return refuse_handshake(wsi, 400, PROTO_E_BAD_FIELD,
                                "unknown subprotocol: offer herald.json or herald.msgpack (or none)");
    if (!origin_allowed(wsi))
        return refuse_handshake(wsi, 403, PROTO_E_FORBIDDEN, "this Origin is not allowed (server.allowed_origins)");
    /* Behind a trusted proxy the client is known only now. */
    if (peer_client_addr(wsi, client, sizeof client) == 1 && rl_connect(client) != RL_OK) {
        srv.stats.connects_limited++;
        return refuse_handshake(wsi, 429, PROTO_E_RATE_LIMITED,
                                "too many connections or failed authentications from this address");
    }
    return 0;
}

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    union pss *p = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
        char addr[64];
        if (srv.stopping || srv.open_connections >= srv.max_connections + PROBE_RESERVE) {
            srv.stats.connections_refused++;
            return 1;
        }
        /* in carries the accepted socket. A trusted proxy carries many
         * clients: they are limited one by one once their requests say who
         * they are (on_upgrade(), the REST router). */
        if (!rl_peer((int)(intptr_t)in, addr, sizeof addr) && !rl_trusted_proxy(addr) && rl_connect(addr) != RL_OK) {
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
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return on_upgrade(wsi);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* on_upgrade() has answered every refusal; this only guards lws's
         * binding (a client offering "http" alone), silently. */
        return !strcmp(lws_get_protocol(wsi) && lws_get_protocol(wsi)->name ? lws_get_protocol(wsi)->name : "",
                       "http") && lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) > 0;
    case LWS_CALLBACK_ESTABLISHED:
        sess_on_established(&p->ws, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return p->kind == SESS_KIND_WS ? sess_on_receive(&p->ws, in, len) : 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->kind == SESS_KIND_WS ? sess_on_writable(&p->ws) : 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (p && p->kind == SESS_KIND_WS) sess_on_pong(&p->ws);
        return 0;
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
        /* An event stream is a session too: the last one may end a stop. */
        if (srv.stopping == 1 && srv.nsessions == 0 && hooks.on_last_session) hooks.on_last_session();
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* Built at start: tx_packet_size follows write_batch_max so a coalesced
 * frame goes out in one send() instead of as lws-buffered partials. */
static struct lws_protocols protocols[4];

/* libwebsockets' keepalive, off (server_start() says why). */
static const lws_retry_bo_t no_validity = { .secs_since_valid_ping = 0, .secs_since_valid_hangup = 0 };

static void on_lws_log(int level, const char *line)
{
    enum log_level l = level == LLL_ERR ? LOG_ERROR : level == LLL_WARN ? LOG_WARN
                     : level == LLL_NOTICE || level == LLL_USER ? LOG_INFO : LOG_DEBUG;
    /* lws notices are chatty start-up details: keep them at debug. */
    if (level == LLL_NOTICE) l = LOG_DEBUG;
    hlog(l, "lws", "%s", line);
}

void server_log_level_changed(void)
{
    int lvl = LLL_ERR | LLL_WARN;

    /* lws filters its lines itself before calling on_lws_log(): its mask
     * must follow Herald's level, or debug set at run time shows none. */
    if (log_current_level >= LOG_DEBUG) lvl |= LLL_NOTICE | LLL_INFO;
    lws_set_log_level(lvl, on_lws_log);
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
    char addr[INET6_ADDRSTRLEN];

    hooks = *h;
    if (check_bind(addr, sizeof addr)) return -1;

    server_log_level_changed();

    if (tx < srv.cfg.max_message_size + 64) tx = srv.cfg.max_message_size + 64;
    /* A small rx buffer keeps idle connections cheap; larger messages
     * arrive in several RECEIVE callbacks and are reassembled in session.c. */
    protocols[0] = (struct lws_protocols){ "http", on_lws, pss, 2048, 0, NULL, tx };
    protocols[1] = (struct lws_protocols){ "herald.json", on_lws, pss, 2048, 1, NULL, tx };
    protocols[2] = (struct lws_protocols){ "herald.msgpack", on_lws, pss, 2048, 2, NULL, tx };
    protocols[3] = (struct lws_protocols){ NULL, NULL, 0, 0, 0, NULL, 0 };

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
    /* No fd_limit_per_thread: below the open file limit it switches lws
     * to searching its connection table on every event (main.c's
     * set_fd_limit() lowers the limit itself instead). */
    if (*srv.cfg.tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = srv.cfg.tls_cert;
        info.ssl_private_key_filepath = srv.cfg.tls_key;
    }
    info.timeout_secs = 20;
    /* lws reads a socket into this one per-thread buffer, at most its size
     * per readiness event: 4 KiB by default starves a busy publisher. */
    info.pt_serv_buf_size = 256 * 1024;
    /* A policy of zeros turns libwebsockets' own keepalive ("validity")
     * off: session.c sends the keepalive pings itself (sess_tick() says
     * why). Without one, lws applies its default (ping after 300 s, hang up
     * after 310 s), which keeps a timer per connection in one sorted list
     * and re-inserts it at every pong by walking that list: O(connections)
     * per connect and per pong, 60% of the loop's time when 19,500 clients
     * connect (docs/benchmarks.md, "Connection rate"). */
    info.retry_and_idle_policy = &no_validity;
    /* HTTP/1.1 only over TLS: a REST answer is written as headers and body
     * in one buffer (http.c), which an HTTP/2 stream cannot take. */
    info.alpn = "http/1.1";

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
    /* An IPv6 address goes in brackets in a URL (RFC 3986). */
    {
        int v6 = strchr(srv.cfg.bind, ':') != NULL;
        hlog(LOG_INFO, "server", "listening on %s port %d (%s://%s%s%s:%d/ws)", srv.cfg.bind,
             lws_get_vhost_listen_port(srv.vhost), *srv.cfg.tls_cert ? "wss" : "ws", v6 ? "[" : "", srv.cfg.bind,
             v6 ? "]" : "", lws_get_vhost_listen_port(srv.vhost));
    }
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
