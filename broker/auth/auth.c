/* broker/auth/auth.c - see auth.h.
 *
 * The rules read a channel as a target: its name and its namespace's
 * options, whether or not the broker holds it (auth/ sits below the
 * channel registry and never sees a chan_t). */
#include "auth/auth.h"
#include "herald.h"
#include "auth/jwt.h"
#include "msg.h"
#include "chname.h"
#include "log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static jwt_keys_t *keys;

/* What a rule is asked about: a channel by name, with its namespace. */
struct target {
    const char *name;
    size_t namelen;
    const ns_config_t *ns;
};

int auth_init(char *err, size_t errlen)
{
    char list[sizeof srv.cfg.public_keys], *save = NULL, *path;
    char where[sizeof srv.cfg.config_path + 16], why[1280];
    int r;

    if ((r = jwt_keys_new(&keys))) { snprintf(err, errlen, "out of memory"); return r; }
    /* config_parse_args() refused a secret too short for jwt_keys_add_secret(). */
    if (*srv.cfg.hmac_secret && (r = jwt_keys_add_secret(keys, NULL, (const unsigned char *)srv.cfg.hmac_secret,
                                                          strlen(srv.cfg.hmac_secret)))) {
        snprintf(err, errlen, "auth.hmac_secret: %s", strerror(-r));
        return r;
    }
    strcpy(list, srv.cfg.public_keys);
    for (path = strtok_r(list, ",", &save); path; path = strtok_r(NULL, ",", &save)) {
        while (*path == ' ') path++;
        if (!*path) continue;
        if ((r = jwt_keys_add_pem_file(keys, NULL, path, why, sizeof why))) {
            if (r == -ENOMEM) { snprintf(err, errlen, "%s", why); return r; }
            if (config_where(&srv.cfg, "auth.public_keys", where, sizeof where) > 0)
                snprintf(err, errlen, "%s: auth.public_keys: %s", where, why);
            else
                snprintf(err, errlen, "auth.public_keys: %s", why);
            return AUTH_E_KEY_FILE;
        }
    }
    /* Since config validation saw a key named when anonymous is off, and
     * every key named has loaded, somebody can connect. */
    return 0;
}

void auth_deinit(void)
{
    jwt_keys_free(keys);
    keys = NULL;
}

int auth_has_keys(void) { return keys && jwt_keys_count(keys) > 0; }

void ident_clear(ident_t *id)
{
    free(id->user);
    json_decref(id->info);
    json_decref(id->channels);
    memset(id, 0, sizeof *id);
}

/* Whether @value (@len bytes) is one of the comma-separated entries of
 * @list (compared exactly; blanks around commas ignored). */
static int csv_has(const char *list, const char *value, size_t len)
{
    for (const char *p = list; *p; ) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && *p == ' ') { p++; n--; }
        while (n && p[n - 1] == ' ') n--;
        if (n && n == len && !memcmp(p, value, n)) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* Whether the "aud" claim @aud (a string or an array of strings, RFC 7519
 * section 4.1.3) names one of the accepted audiences. */
static int audience_ok(const json_t *aud)
{
    size_t i;
    json_t *e;

    if (json_is_string(aud)) return csv_has(srv.cfg.audience, json_string_value(aud), json_string_length(aud));
    if (!json_is_array(aud)) return 0;
    json_array_foreach(aud, i, e)
        if (json_is_string(e) && csv_has(srv.cfg.audience, json_string_value(e), json_string_length(e))) return 1;
    return 0;
}

/* The broker's policy on a token whose signature and time claims jwt.c has
 * checked (jwt.c leaves policy to its caller): auth.require_exp,
 * auth.issuer, auth.audience, and an iat no later than now + leeway, since
 * a token issued in the future comes from a skewed or forged clock.
 * Return: 0, or -1 with @reason. */
static int token_policy(const json_t *claims, int64_t now, unsigned leeway, char *reason)
{
    const json_t *iat = json_object_get(claims, "iat"), *iss = json_object_get(claims, "iss");

    if (srv.cfg.require_exp && !json_object_get(claims, "exp")) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: it has no \"exp\" (auth.require_exp)");
        return -1;
    }
    /* jwt_verify() has checked that an iat is a number in 0..JWT_MAX_TIME. */
    if (iat && (json_is_integer(iat) ? json_integer_value(iat) > now + (int64_t)leeway
                                     : (long double)json_real_value(iat) > (long double)now + leeway)) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: \"iat\" is in the future (beyond auth.leeway)");
        return -1;
    }
    if (*srv.cfg.issuer &&
        !(json_is_string(iss) && csv_has(srv.cfg.issuer, json_string_value(iss), json_string_length(iss)))) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: %s (auth.issuer)",
                 iss ? "\"iss\" is not an accepted issuer" : "it has no \"iss\"");
        return -1;
    }
    if (*srv.cfg.audience && !audience_ok(json_object_get(claims, "aud"))) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: %s (auth.audience)",
                 json_object_get(claims, "aud") ? "\"aud\" does not name this service" : "it has no \"aud\"");
        return -1;
    }
    return 0;
}

/* Verifies @token and returns its claims (a new reference), or NULL with @reason. */
static json_t *verify(const char *token, size_t len, char *reason)
{
    json_t *claims = NULL;
    const char *why = NULL;
    int64_t now = (int64_t)time(NULL);
    int r;

    if (!auth_has_keys()) {
        snprintf(reason, PROTO_REASON_MAX, "tokens are not accepted: the broker has no token keys configured");
        return NULL;
    }
    r = jwt_verify(keys, token, len, now, srv.cfg.leeway_ms / 1000, &claims, &why);
    if (r) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: %s", why ? why : jwt_err_name(r));
        return NULL;
    }
    if (token_policy(claims, now, srv.cfg.leeway_ms / 1000, reason)) {
        json_decref(claims);
        return NULL;
    }
    return claims;
}

int auth_token(const char *token, size_t len, ident_t *id, char *reason)
{
    json_t *claims = verify(token, len, reason), *v;
    const char *role;

    ident_clear(id);
    if (!claims) return PROTO_E_UNAUTHORIZED;
    v = json_object_get(claims, "sub");
    if (!json_is_string(v) || !auth_user_valid(json_string_value(v), json_string_length(v))) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: \"sub\" must be a user id of 1-128 bytes without ',' or '#'");
        goto fail;
    }
    id->user = strdup(json_string_value(v));
    v = json_object_get(claims, "info");
    if (v && !json_is_object(v)) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: \"info\" must be an object");
        goto fail;
    }
    id->info = v ? json_incref(v) : NULL;
    v = json_object_get(claims, "channels");
    if (v) {
        size_t i;
        json_t *e;
        if (!json_is_array(v)) goto bad_channels;
        json_array_foreach(v, i, e) if (!json_is_string(e)) goto bad_channels;
        id->channels = json_incref(v);
    }
    role = json_string_value(json_object_get(claims, "role"));
    id->admin = role && !strcmp(role, "admin");
    id->privileged = id->admin || (role && !strcmp(role, "service"));
    id->moderator = role && !strcmp(role, "moderator");
    v = json_object_get(claims, "exp");
    /* jwt_verify() has refused an exp that is not a number in
     * 0..JWT_MAX_TIME. Checked again because converting a real beyond int64
     * is undefined (json_number_value() turns an exp of 2^63 - 1 into the
     * real 2^63), and refusing beats a connection whose exp went wrong. */
    if (v && !(json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) <= (double)JWT_MAX_TIME)) {
        snprintf(reason, PROTO_REASON_MAX, "invalid token: \"exp\" is not a time from 1970 to 9999");
        goto fail;
    }
    id->exp = json_is_integer(v) ? json_integer_value(v) : (int64_t)json_number_value(v);
    json_decref(claims);
    if (!id->user) { ident_clear(id); snprintf(reason, PROTO_REASON_MAX, "out of memory"); return PROTO_E_INTERNAL; }
    return 0;
bad_channels:
    snprintf(reason, PROTO_REASON_MAX, "invalid token: \"channels\" must be a list of channel names or \"ns:*\"");
fail:
    json_decref(claims);
    ident_clear(id);
    return PROTO_E_UNAUTHORIZED;
}

/* Whether @user is in the comma-separated list of @len bytes at @list. */
static int in_list(const char *list, size_t len, const char *user)
{
    size_t ulen = strlen(user);
    const char *p = list, *end = list + len;

    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (n == ulen && !memcmp(p, user, n)) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* The users a channel name admits: 1 and the list if it is user-scoped. */
static int is_personal(const struct target *c)
{
    return c->namelen > 5 && !memcmp(c->name, "user:", 5);
}

static int user_scope(const struct target *c, const char **list, size_t *len)
{
    const char *colon = memchr(c->name, ':', c->namelen), *hash;

    /* user:<id> is that user's personal channel, always. */
    if ((c->ns->user_list || is_personal(c)) && colon) {
        *list = colon + 1;
        *len = (size_t)(c->name + c->namelen - *list);
        return 1;
    }
    hash = memrchr(c->name, '#', c->namelen);
    if (hash) {
        *list = hash + 1;
        *len = (size_t)(c->name + c->namelen - *list);
        return 1;
    }
    return 0;
}

static int check_scope(const ident_t *id, const struct target *c, char *reason)
{
    const char *list;
    size_t len;

    if (!user_scope(c, &list, &len) || id->privileged) return 0;
    if (!id->user) {
        snprintf(reason, PROTO_REASON_MAX, "this channel is private to its users: connect with a token");
        return PROTO_E_UNAUTHORIZED;
    }
    if (!in_list(list, len, id->user)) {
        snprintf(reason, PROTO_REASON_MAX, "this channel is private to other users");
        return PROTO_E_FORBIDDEN;
    }
    return 0;
}

/* One user of a list, for sorting. */
struct list_item {
    const char *p;
    size_t n;
};

static int item_cmp(const void *a, const void *b)
{
    const struct list_item *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

int auth_check_name(const char *name, size_t len, char *reason)
{
    const ns_config_t *ns = config_ns(&srv.cfg, name, len);
    const char *colon = memchr(name, ':', len), *p, *end = name + len;
    /* A valid name is at most CHNAME_MAX bytes, so it lists fewer users. */
    struct list_item items[CHNAME_MAX / 2 + 1];
    size_t n = 0, w = 0, out = 0;
    char canon[CHNAME_MAX + 1];
    int ok = 1;

    if (!ns->user_list || !colon) return 0;
    for (p = colon + 1; p <= end && n < sizeof items / sizeof items[0];) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t k = comma ? (size_t)(comma - p) : (size_t)(end - p);
        items[n].p = p;
        items[n].n = k;
        if (!k || (n && item_cmp(&items[n - 1], &items[n]) >= 0)) ok = 0;
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    if (ok) return 0;
    /* Say which name the same users have: sorted, each once, no empty one. */
    qsort(items, n, sizeof items[0], item_cmp);
    for (size_t i = 0; i < n; i++)
        if (items[i].n && (!w || item_cmp(&items[w - 1], &items[i]))) items[w++] = items[i];
    memcpy(canon, name, (size_t)(colon + 1 - name));
    out = (size_t)(colon + 1 - name);
    for (size_t i = 0; i < w; i++) {
        if (i) canon[out++] = ',';
        memcpy(canon + out, items[i].p, items[i].n);
        out += items[i].n;
    }
    canon[out] = '\0';
    if (!w)
        snprintf(reason, PROTO_REASON_MAX, "a channel of a user_list namespace names its users after \"%.*s:\"",
                 (int)(colon - name), name);
    else
        snprintf(reason, PROTO_REASON_MAX, "a user_list channel lists its users sorted and each once: use \"%.*s\"",
                 (int)(PROTO_REASON_MAX - 80), canon);
    return PROTO_E_BAD_CHANNEL;
}

int auth_may_moderate(const ident_t *id, const ns_config_t *ns)
{
    return id->privileged || (id->moderator && ns->moderators);
}

/* Whether the token's "channels" claim grants @c. */
static int claim_grants(const ident_t *id, const struct target *c)
{
    size_t i;
    json_t *e;

    if (!id->channels) return 0;
    json_array_foreach(id->channels, i, e) {
        const char *g = json_string_value(e);
        size_t gl = json_string_length(e);
        if (gl == c->namelen && !memcmp(g, c->name, gl)) return 1;
        /* "ns:*" grants the whole namespace. */
        if (gl >= 2 && g[gl - 1] == '*' && g[gl - 2] == ':' && c->namelen >= gl - 1 &&
            !memcmp(g, c->name, gl - 1))
            return 1;
    }
    return 0;
}

/* Whether @tok is a valid subscribe token for @id and @c. */
static int token_grants(const ident_t *id, const struct target *c, const char *tok, size_t len, char *reason)
{
    json_t *claims, *sub, *ch;
    int ok;

    if (!id->user) return 0;
    if (!(claims = verify(tok, len, reason))) return 0;
    sub = json_object_get(claims, "sub");
    ch = json_object_get(claims, "channel");
    ok = json_is_string(sub) && !strcmp(json_string_value(sub), id->user) && json_is_string(ch) &&
         json_string_length(ch) == c->namelen && !memcmp(json_string_value(ch), c->name, c->namelen);
    if (!ok) snprintf(reason, PROTO_REASON_MAX, "the subscribe token is for another user or channel");
    json_decref(claims);
    return ok;
}

int auth_dev_mode(void) { return srv.cfg.napikeys == 0 && srv.cfg.anonymous; }

int auth_is_sys(const char *name, size_t len)
{
    return len > 4 && !memcmp(name, "sys:", 4);
}

static int is_sys(const struct target *c)
{
    return auth_is_sys(c->name, c->namelen);
}

int auth_apikey_ident(const char *secret, ident_t *id, char *reason)
{
    char hdr[600];
    const apikey_t *k;

    ident_clear(id);
    snprintf(hdr, sizeof hdr, "Bearer %s", secret);
    if (!(k = auth_apikey(hdr))) {
        snprintf(reason, PROTO_REASON_MAX, "unknown API key");
        return PROTO_E_UNAUTHORIZED;
    }
    if (asprintf(&id->user, "apikey:%s", k->name) < 0) {
        id->user = NULL;
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    id->admin = id->privileged = k->admin;
    return 0;
}

static int may_subscribe(const ident_t *id, const struct target *c, const char *sub_token, size_t toklen,
                         int *granted, char *reason)
{
    int r;

    *granted = 0;
    if (is_sys(c)) {
        if (id->admin || auth_dev_mode()) return 0;
        snprintf(reason, PROTO_REASON_MAX, "the sys namespace is for operators: connect with an admin API key");
        return id->user ? PROTO_E_FORBIDDEN : PROTO_E_UNAUTHORIZED;
    }
    if ((r = check_scope(id, c, reason))) return r;
    if (id->privileged) return 0;
    if (sub_token) {
        char why[PROTO_REASON_MAX];
        if (!token_grants(id, c, sub_token, toklen, why)) {
            snprintf(reason, PROTO_REASON_MAX, "%s", why);
            return PROTO_E_FORBIDDEN;
        }
        *granted = 1;
        return 0;
    }
    switch (c->ns->subscribe) {
    case SUB_ANYONE:
        return 0;
    case SUB_AUTHENTICATED:
        if (id->user) return 0;
        snprintf(reason, PROTO_REASON_MAX, "subscribing here needs an authenticated connection");
        return PROTO_E_UNAUTHORIZED;
    default:
        if (claim_grants(id, c)) { *granted = 1; return 0; }
        snprintf(reason, PROTO_REASON_MAX, "subscribing here needs a grant: the token's channels claim or a subscribe token");
        return id->user ? PROTO_E_FORBIDDEN : PROTO_E_UNAUTHORIZED;
    }
}

int auth_may_subscribe(const ident_t *id, const char *name, size_t len, const ns_config_t *ns,
                       const char *sub_token, size_t toklen, int *granted, char *reason)
{
    struct target t = { name, len, ns };
    return may_subscribe(id, &t, sub_token, toklen, granted, reason);
}

int auth_may_read(const ident_t *id, const char *name, size_t len, const ns_config_t *ns, char *reason)
{
    struct target t = { name, len, ns };
    int granted;
    return may_subscribe(id, &t, NULL, 0, &granted, reason);
}

int auth_may_publish(const ident_t *id, const char *name, size_t len, const ns_config_t *ns, int subscribed,
                     int granted, char *reason)
{
    const struct target *c = &(struct target){ name, len, ns };
    int r;

    if (is_sys(c)) {
        snprintf(reason, PROTO_REASON_MAX, "only the broker publishes in the sys namespace");
        return PROTO_E_FORBIDDEN;
    }
    if (is_personal(c) && !id->privileged) {
        snprintf(reason, PROTO_REASON_MAX, "personal channels carry notifications from the server (REST)");
        return PROTO_E_FORBIDDEN;
    }
    if ((r = check_scope(id, c, reason))) return r;
    if (id->privileged) return 0;
    switch (c->ns->publish) {
    case PUB_ANYONE:
        return 0;
    case PUB_AUTHENTICATED:
        if (id->user) return 0;
        snprintf(reason, PROTO_REASON_MAX, "publishing here needs an authenticated connection");
        return PROTO_E_UNAUTHORIZED;
    case PUB_SUBSCRIBERS:
        if (subscribed) return 0;
        snprintf(reason, PROTO_REASON_MAX, "publishing here is for subscribers of the channel");
        return PROTO_E_FORBIDDEN;
    case PUB_GRANTED:
        if (granted || claim_grants(id, c)) return 0;
        snprintf(reason, PROTO_REASON_MAX, "publishing here needs a grant");
        return id->user ? PROTO_E_FORBIDDEN : PROTO_E_UNAUTHORIZED;
    default:
        snprintf(reason, PROTO_REASON_MAX, "only the server publishes here (REST API)");
        return PROTO_E_FORBIDDEN;
    }
}

int auth_rest_open(void) { return srv.cfg.napikeys == 0; }

int auth_origin_listed(const char *list, const char *origin)
{
    size_t olen = strlen(origin);

    for (const char *p = list; *p; ) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && *p == ' ') { p++; n--; }
        while (n && p[n - 1] == ' ') n--;
        if (n == olen && !strncasecmp(p, origin, n)) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

const apikey_t *auth_apikey(const char *hdr)
{
    const apikey_t *found = NULL;
    size_t len;

    if (!hdr || strncasecmp(hdr, "Bearer ", 7)) return NULL;
    hdr += 7;
    while (*hdr == ' ') hdr++;
    len = strlen(hdr);
    /* Compare with every key, in constant time per key, so the time taken
     * says nothing about how much of a secret matched. */
    for (size_t i = 0; i < srv.cfg.napikeys; i++) {
        const apikey_t *k = &srv.cfg.apikeys[i];
        size_t kl = strlen(k->secret);
        if (kl == len && CRYPTO_memcmp(k->secret, hdr, len) == 0) found = k;
    }
    return found;
}

int auth_key_may_publish(const apikey_t *k, const char *name, size_t len)
{
    char ns[CHNAME_NS_MAX + 1];
    size_t nslen = chname_namespace(name, len);

    if (!strcmp(k->publish, "*")) return 1;
    /* The default namespace (names without ':') is written "-" in the list. */
    if (nslen == 0) {
        strcpy(ns, "-");
    } else {
        memcpy(ns, name, nslen);
        ns[nslen] = '\0';
    }
    return in_list(k->publish, strlen(k->publish), ns);
}

int auth_user_valid(const char *user, size_t len)
{
    /* ',' separates the users of dm:a,b and '#' ends a channel's owner
     * (orders:1234#alice): a user id with either could claim another's channel. */
    return len >= 1 && len <= AUTH_USER_MAX && !memchr(user, '\0', len) && !memchr(user, ',', len) &&
           !memchr(user, '#', len);
}
