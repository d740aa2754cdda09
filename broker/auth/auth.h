/* broker/auth/auth.h - who a connection is, and what it may do.
 *
 * Owns: the token verification keys (from [auth]), connection identities
 * (ident_t), the channel permission rules of each namespace, user-scoped
 * channel names, and REST API keys ([apikey NAME]).
 *
 * Rules, in order, for a channel c in namespace ns:
 *  1. A user-scoped channel admits only its users: the names after the last
 *     '#' (`orders:1234#alice`), or with ns.user_list the whole name after
 *     "ns:" (`dm:alice,bob`). Anonymous connections never pass.
 *  2. ns.subscribe: anyone | authenticated | granted. A grant is the token's
 *     "channels" claim (exact names or "ns:*"), or a subscribe token: a JWT
 *     signed by the backend with "sub" = the connection's user and "channel"
 *     = the channel.
 *  3. ns.publish (WebSocket): anyone | authenticated | subscribers | granted |
 *     server (nobody over WebSocket: REST with an API key only).
 * A token with "role": "admin" or "service" passes every rule.
 * The namespace "sys" is the broker's own (sys:stats): only admins may
 * subscribe (anyone in development mode), and nobody publishes there.
 * The namespace "user" holds personal channels: user:<id> admits only that
 * user, and only the server (REST, or a privileged token) publishes there.
 * Loop thread only. */
#ifndef HERALD_AUTH_H
#define HERALD_AUTH_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"

typedef struct ident {
    char *user;                   /* the token's "sub"; NULL: anonymous */
    json_t *info;                 /* the token's "info" object, or NULL */
    json_t *channels;             /* the token's "channels" array, or NULL */
    int privileged;               /* "role": "admin" or "service" */
    int admin;                    /* "role": "admin" */
    int moderator;                /* "role": "moderator" (see auth_may_moderate()) */
    int64_t exp;                  /* the token's "exp" (unix seconds); 0: none */
} ident_t;

/* auth_init() outcome: a key file named in auth.public_keys cannot be read or
 * used. It is a bad setting like any other (exit status 2). */
#define AUTH_E_KEY_FILE 1

/* auth_init() - load the token keys named in srv.cfg's [auth]; config
 * validation has already refused a short hmac_secret and anonymous = off
 * without keys. Call auth_deinit() afterwards, also when it fails.
 * @err: [out] on failure, why; for AUTH_E_KEY_FILE "WHERE: auth.public_keys:
 *       FILE: reason", WHERE being config_where()'s "PATH:LINE" or "--public-keys".
 * Return: 0; AUTH_E_KEY_FILE; -ENOMEM. */
int auth_init(char *err, size_t errlen);
void auth_deinit(void);

/* auth_has_keys() - whether any token key is configured. */
int auth_has_keys(void);

/* auth_apikey_ident() - identify a WebSocket connection by an API key's
 * @secret (its operator tools: the admin page): @id becomes "apikey:NAME",
 * an admin when the key is. Return: 0, or PROTO_E_UNAUTHORIZED. */
int auth_apikey_ident(const char *secret, ident_t *id, char *reason);

/* auth_dev_mode() - no API keys and anonymous connections allowed: the
 * embedded default, where operator data is open to whoever reaches the port. */
int auth_dev_mode(void);

/* auth_token() - verify a connection token and fill @id (cleared first).
 * @reason: [out] why not (PROTO_REASON_MAX bytes).
 * Return: 0, or PROTO_E_UNAUTHORIZED. */
int auth_token(const char *token, size_t len, ident_t *id, char *reason);

/* auth_user_valid() - whether @user (@len bytes) may be a user id: 1 to
 * AUTH_USER_MAX bytes without ',', '#' or NUL, the rule for a token's "sub"
 * and for the users a backend names (seat maps). Any thread. */
#define AUTH_USER_MAX 128
int auth_user_valid(const char *user, size_t len);

/* ident_clear() - free what @id holds and zero it. */
void ident_clear(ident_t *id);

/* auth_may_subscribe() - whether @id may subscribe to the channel @name
 * (@len bytes, a valid name) of namespace @ns (config_ns() of it);
 * @sub_token (may be NULL) is a per-channel subscribe token. *@granted is
 * set when the permission came from a grant (it then also covers
 * ns.publish = granted).
 * Return: 0, PROTO_E_UNAUTHORIZED (an identity is needed) or PROTO_E_FORBIDDEN,
 * with @reason filled. */
int auth_may_subscribe(const ident_t *id, const char *name, size_t len, const ns_config_t *ns,
                       const char *sub_token, size_t toklen, int *granted, char *reason);

/* auth_may_publish() - whether @id may publish to channel @name of @ns over
 * WebSocket, being @subscribed or not, @granted by a subscribe token or not.
 * Return: 0, PROTO_E_UNAUTHORIZED or PROTO_E_FORBIDDEN, with @reason. */
int auth_may_publish(const ident_t *id, const char *name, size_t len, const ns_config_t *ns, int subscribed,
                     int granted, char *reason);

/* auth_may_read() - whether @id may read channel @name of @ns (history,
 * presence, state) without subscribing: the subscribe rules. Return as
 * auth_may_subscribe(). */
int auth_may_read(const ident_t *id, const char *name, size_t len, const ns_config_t *ns, char *reason);

/* auth_check_name() - the naming rule of user_list namespaces: the users
 * after "ns:" are listed sorted (byte order) and each once, so one set of
 * users has one channel (`dm:alice,bob`, never `dm:bob,alice`). Other
 * namespaces have no such rule. @name is a valid channel name.
 * @reason: [out] with PROTO_E_BAD_CHANNEL, why and the canonical name.
 * Return: 0, or PROTO_E_BAD_CHANNEL. */
int auth_check_name(const char *name, size_t len, char *reason);

/* auth_may_moderate() - whether @id may edit or delete other users'
 * publications in namespace @ns: a privileged token ("role": "admin" or
 * "service"), or "role": "moderator" where @ns has moderators = on. */
int auth_may_moderate(const ident_t *id, const ns_config_t *ns);

/* auth_is_sys() - whether channel @name is in the broker's own namespace
 * "sys": operator data, readable with the admin scope only, on every path
 * (in development mode by anyone), and published by the broker alone. */
int auth_is_sys(const char *name, size_t len);

/* auth_origin_listed() - whether @origin is one of the comma-separated
 * origins in @list (case-insensitive, blanks around commas ignored). */
int auth_origin_listed(const char *list, const char *origin);

/* REST API keys. With none configured the REST API is open. */
int auth_rest_open(void);

/* auth_apikey() - the key whose secret is in the Authorization header value
 * @hdr ("Bearer <secret>"), compared in constant time; NULL if none matches. */
const apikey_t *auth_apikey(const char *hdr);

/* auth_key_may_publish() - whether key @k may publish to channel @name. */
int auth_key_may_publish(const apikey_t *k, const char *name, size_t len);

#endif
