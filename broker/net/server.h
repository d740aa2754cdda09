/* broker/net/server.h - libwebsockets on the broker's libuv loop: the one lws
 * callback, the context and its vhost, the Origin check.
 *
 * Owns: srv.lws and srv.vhost, and the callback, a switch whose cases each
 * call one function of session.c (WebSocket) or http.c (HTTP). Refuses TCP
 * connections beyond the connection cap and its probe reserve, while
 * stopping and by connect rate (but for trusted proxies, whose clients are
 * limited one by one), and answers the WebSocket handshakes it refuses with
 * an HTTP status: another path, a connection in the probe reserve, no
 * subprotocol of Herald's, a foreign Origin, a proxied client over its
 * limits.
 * Does not own: the process lifecycle (main.c starts, signals and stops;
 * ../shared/notes/lws-on-uv.md explains why lws is destroyed in two steps).
 * Loop thread only. */
#ifndef HERALD_SERVER_H
#define HERALD_SERVER_H

/* Descriptors kept back from the connection cap for listeners, the data
 * directory, logs and LMDB. */
#define FD_RESERVE 64

/* Connections accepted beyond limits.max_connections so that health and
 * readiness probes are answered when the broker is full: an orchestrator
 * that cannot reach /api/health kills a broker that is merely busy. In the
 * reserve, WebSocket upgrades and other requests get 503. Taken from
 * FD_RESERVE. */
#define PROBE_RESERVE 8

struct server_hooks {
    /* While stopping (srv.stopping == 1), the last WebSocket session closed. */
    void (*on_last_session)(void);
};

/* server_start() - check server.bind, create the lws context on srv.loop and
 * listen, with @h (copied) for the lifecycle events.
 * Return: 0, or -1 (logged: a bad or foreign address, a port in use). */
int server_start(const struct server_hooks *h);

/* server_log_level_changed() - make libwebsockets' own log mask follow the
 * current log level (log_current_level): its notices and details at debug,
 * only its warnings and errors otherwise. Call after every change of level. */
void server_log_level_changed(void);

/* server_over_capacity() - whether more TCP connections are open than
 * limits.max_connections allows, i.e. the one asking is in the probe
 * reserve and may only be a health or readiness probe. */
int server_over_capacity(void);

/* server_destroy() - lws_context_destroy(): the first call, inside the loop,
 * starts closing lws's handles; the second, after uv_run() returns, frees
 * the context. Harmless when server_start() never created it. */
void server_destroy(void);

#endif
