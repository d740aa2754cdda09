/* storage/engine_tls.h - TLS to Redis for a hiredis without TLS (0.14): an
 * in-process bridge on the broker's loop (engine_tls.c). Used by
 * engine_redis.c only. */
#ifndef HERALD_ENGINE_TLS_H
#define HERALD_ENGINE_TLS_H

#include <stddef.h>
#include <uv.h>

typedef struct engine_tls engine_tls_t;

/* The routes, each a unix socket of its own: the engine's command and
 * subscription connections (one connection each, routed before it
 * connects), and the blocking connections of other threads (the webhook
 * delivery threads, engine_webhooks.c: any number, routed wherever the
 * command connection was routed last). Each connection accepted on a
 * slot gets its own TLS connection to Redis. */
#define ENGINE_TLS_SLOT_CMD 0
#define ENGINE_TLS_SLOT_SUB 1
#define ENGINE_TLS_SLOT_THREADS 2
#define ENGINE_TLS_SLOTS 3

struct engine_tls_conf {
    const char *ca;               /* PEM file of the CAs that may sign Redis' certificate; "" or NULL: the system store */
    const char *cert;             /* PEM client certificate (Redis tls-auth-clients); "" or NULL: none */
    const char *key;              /* its PEM private key; set exactly when cert is */
    const char *server_name;      /* SNI and the name verified; "" or NULL: @host of engine_tls_new() */
    int verify;                   /* 0: Redis' certificate is not verified (tests only) */
};

/* engine_tls_ctx_check() - load @conf's CA, certificate and key as the
 * bridge would, to refuse bad files before anything runs: unreadable, not
 * PEM, a key that is not the certificate's.
 * Return: 0; -EINVAL with @err (naming the file and what is wrong). Any
 * thread; touches no loop. */
int engine_tls_ctx_check(const struct engine_tls_conf *conf, char *err, size_t errlen);

/* engine_tls_new() - a bridge on @loop to Redis at @host (name or address,
 * for the name verified and SNI when @conf has no server_name): a private
 * directory (0700) with one unix socket per slot, listening.
 * @out: [out] the bridge; engine_tls_free() it. Written only on success.
 * Return: 0; -EINVAL (bad files, as engine_tls_ctx_check()), -EIO (no
 * directory or socket), -ENOMEM; with @err. Loop thread only. */
int engine_tls_new(uv_loop_t *loop, const struct engine_tls_conf *conf, const char *host, engine_tls_t **out,
                   char *err, size_t errlen);

/* engine_tls_route() - the unix socket that hiredis connects to for @slot
 * (0 .. ENGINE_TLS_SLOTS - 1); what connects there next is carried over
 * TLS to @ip (a numeric address) port @port. A connection accepted earlier
 * keeps its own route. A slot accepts nothing before its first route:
 * what connects earlier waits in the socket's backlog.
 * Return: the socket's path, valid until engine_tls_free(). Loop thread only. */
const char *engine_tls_route(engine_tls_t *t, int slot, const char *ip, int port);

/* engine_tls_path() - the unix socket of @slot, routed or not: fixed from
 * engine_tls_new() until engine_tls_free(), so a copy may be handed to
 * other threads, which connect there with blocking calls of their own
 * (the bridge's side stays on the loop). Loop thread only. */
const char *engine_tls_path(const engine_tls_t *t, int slot);

/* engine_tls_free() - close the sockets and every bridged connection
 * (hiredis sees them closed), remove the directory; the memory goes once
 * the loop has closed the handles. NULL is a no-op. Loop thread only. */
void engine_tls_free(engine_tls_t *t);

#endif
