/* broker/server.h - the event loop, libwebsockets on it, signals, shutdown.
 *
 * Owns: srv.loop, the lws context and vhost, the signal and timer handles,
 * the connection cap, and the order of startup and shutdown. The one lws
 * callback lives here and is a switch whose cases each call one function of
 * session.c (WebSocket) or rest.c (HTTP).
 * Shutdown (SIGINT/SIGTERM): refuse new connections, ask every session to
 * flush its queue and close with 1001, wait until all have closed or
 * server.shutdown_timeout has passed, then destroy lws in the two steps its
 * foreign-loop mode needs (../shared/notes/lws-on-uv.md). */
#ifndef HERALD_SERVER_H
#define HERALD_SERVER_H

/* server_run() - start everything from srv.cfg, run until shut down. The
 * token keys are loaded before (auth_init(), main.c); server_run() frees them.
 * Return: the process exit code (0 after a clean shutdown). */
int server_run(void);

#endif
