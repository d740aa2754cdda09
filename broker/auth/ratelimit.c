/* broker/auth/ratelimit.c - see ratelimit.h. */
#include "auth/ratelimit.h"
#include "herald.h"
#include "hmap.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int bucket_take_n(bucket_t *b, double rate, double burst, double n, uint64_t now_ms)
{
    if (rate <= 0) return 1;
    if (b->last_ms == 0) {
        b->tokens = burst;
    } else if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst) b->tokens = burst;
    }
    b->last_ms = now_ms;
    if (b->tokens < n) return 0;
    b->tokens -= n;
    return 1;
}

int bucket_take(bucket_t *b, double rate, double burst, uint64_t now_ms)
{
    return bucket_take_n(b, rate, burst, 1.0, now_ms);
}

uint64_t bucket_wait_ms(const bucket_t *b, double rate, uint64_t now_ms)
{
    double have = b->tokens;
    (void)now_ms;
    if (rate <= 0 || have >= 1.0) return 0;
    return (uint64_t)((1.0 - have) * 1000.0 / rate) + 1;
}

struct cidr {
    int family;
    unsigned char addr[16];
    unsigned bits;
};

typedef struct peer {
    char key[INET6_ADDRSTRLEN];
    size_t keylen;
    bucket_t connects, rest;
    unsigned sessions;
    unsigned failures;
    uint64_t failures_since_ms;
    uint64_t cooloff_until_ms;
    uint64_t last_ms;
} peer_t;

static struct {
    struct cidr *exempt;
    size_t nexempt;
    struct cidr *proxies;         /* server.trusted_proxies */
    size_t nproxies;
    hmap_t peers;
    bucket_t *keys;               /* one per srv.cfg.apikeys[i] */
    int ready;
} rl;

static uint64_t now_ms(void) { return uv_now(&srv.loop); }

static int parse_cidr(const char *s, struct cidr *c)
{
    char buf[64];
    char *slash;
    unsigned max;

    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    slash = strchr(buf, '/');
    if (slash) *slash++ = '\0';
    if (inet_pton(AF_INET, buf, c->addr) == 1) { c->family = AF_INET; max = 32; }
    else if (inet_pton(AF_INET6, buf, c->addr) == 1) { c->family = AF_INET6; max = 128; }
    else return -1;
    if (slash) {
        char *end;
        unsigned long b = strtoul(slash, &end, 10);
        if (*end || !*slash || b > max) return -1;
        c->bits = (unsigned)b;
    } else {
        c->bits = max;
    }
    return 0;
}

static int cidr_match(const struct cidr *c, int family, const unsigned char *a)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (family != c->family) return 0;
    if (memcmp(a, c->addr, full)) return 0;
    if (rest && ((a[full] ^ c->addr[full]) & (0xff << (8 - rest)))) return 0;
    return 1;
}

/* Parses the comma-separated addresses or CIDR blocks of @option (value
 * @value) into *@out. Return: 0, or -1 with @err naming where the option
 * was set. */
static int parse_list(const char *option, const char *value, struct cidr **out, size_t *n, char *err, size_t errlen)
{
    char list[512], where[sizeof srv.cfg.config_path + 16], *save = NULL, *tok;

    snprintf(list, sizeof list, "%s", value);
    if (!strcasecmp(list, "none")) return 0;
    for (tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        struct cidr c, *grown;
        if (parse_cidr(tok, &c)) {
            if (config_where(&srv.cfg, option, where, sizeof where) > 0) strcat(where, ": ");
            else where[0] = '\0';
            snprintf(err, errlen, "%s%s: \"%s\" is not an address or CIDR block", where, option, tok);
            return -1;
        }
        if (!(grown = realloc(*out, (*n + 1) * sizeof *grown))) { snprintf(err, errlen, "out of memory"); return -1; }
        *out = grown;
        (*out)[(*n)++] = c;
    }
    return 0;
}

int rl_init(char *err, size_t errlen)
{
    if (hmap_init(&rl.peers, 256)) { snprintf(err, errlen, "out of memory"); return -1; }
    rl.ready = 1;
    if (srv.cfg.napikeys && !(rl.keys = calloc(srv.cfg.napikeys, sizeof *rl.keys))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (parse_list("limits.rate_limit_exempt", srv.cfg.rate_limit_exempt, &rl.exempt, &rl.nexempt, err, errlen) ||
        parse_list("server.trusted_proxies", srv.cfg.trusted_proxies, &rl.proxies, &rl.nproxies, err, errlen))
        return RL_E_SETTING;
    return 0;
}

void rl_deinit(void)
{
    size_t pos = 0;
    peer_t *p;

    if (!rl.ready) return;
    while ((p = hmap_next(&rl.peers, &pos))) free(p);
    hmap_deinit(&rl.peers);
    free(rl.keys);
    free(rl.exempt);
    free(rl.proxies);
    memset(&rl, 0, sizeof rl);
}

/* Whether the textual address @addr is in one of the @n blocks of @list. */
static int listed(const struct cidr *list, size_t n, const char *addr)
{
    unsigned char a[16];
    int family;

    if (inet_pton(AF_INET, addr, a) == 1) family = AF_INET;
    else if (inet_pton(AF_INET6, addr, a) == 1) family = AF_INET6;
    else return 0;
    /* An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d. */
    if (family == AF_INET6 && !memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
        memmove(a, a + 12, 4);
        family = AF_INET;
    }
    for (size_t i = 0; i < n; i++)
        if (cidr_match(&list[i], family, a)) return 1;
    return 0;
}

int rl_exempt(const char *addr)
{
    return listed(rl.exempt, rl.nexempt, addr);
}

int rl_trusted_proxy(const char *addr)
{
    return listed(rl.proxies, rl.nproxies, addr);
}

int rl_addr_canon(const char *in, size_t len, char *out, size_t outlen)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char a[16];

    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, in, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1) return inet_ntop(AF_INET, a, out, (socklen_t)outlen) ? 0 : -1;
    if (inet_pton(AF_INET6, buf, a) == 1) return inet_ntop(AF_INET6, a, out, (socklen_t)outlen) ? 0 : -1;
    return -1;
}

static peer_t *peer_get(const char *addr, int create)
{
    size_t len = strlen(addr);
    peer_t *p;

    if (len >= sizeof p->key) return NULL;
    p = hmap_get(&rl.peers, addr, len);
    if (p || !create) return p;
    if (!(p = calloc(1, sizeof *p))) return NULL;
    memcpy(p->key, addr, len);
    p->keylen = len;
    if (hmap_put(&rl.peers, p->key, len, p)) { free(p); return NULL; }
    return p;
}

static int cooling(peer_t *p, uint64_t now)
{
    return p->cooloff_until_ms && now < p->cooloff_until_ms;
}

enum rl_verdict rl_connect(const char *addr)
{
    uint64_t now = now_ms();
    double rate = srv.cfg.connects_per_second;
    peer_t *p;

    if (rl_exempt(addr)) return RL_OK;
    if (!(p = peer_get(addr, 1))) return RL_OK;      /* out of memory: fail open, keep serving */
    p->last_ms = now;
    if (cooling(p, now)) return RL_COOLOFF;
    if (!bucket_take(&p->connects, rate, rate * 2, now)) return RL_LIMITED;
    return RL_OK;
}

enum rl_verdict rl_rest(const char *addr, unsigned *retry_s)
{
    uint64_t now = now_ms();
    double rate = srv.cfg.rest_per_minute / 60.0;
    peer_t *p;

    if (rl_exempt(addr)) return RL_OK;
    if (!(p = peer_get(addr, 1))) return RL_OK;
    p->last_ms = now;
    if (cooling(p, now)) {
        *retry_s = (unsigned)((p->cooloff_until_ms - now) / 1000 + 1);
        return RL_COOLOFF;
    }
    /* The whole minute's allowance may be spent at once. */
    if (!bucket_take(&p->rest, rate, srv.cfg.rest_per_minute, now)) {
        *retry_s = (unsigned)(bucket_wait_ms(&p->rest, rate, now) / 1000 + 1);
        return RL_LIMITED;
    }
    return RL_OK;
}

enum rl_verdict rl_key(const apikey_t *k, unsigned n, const char *addr, unsigned *retry_s)
{
    uint64_t now = now_ms();
    double rate = k->requests_per_minute / 60.0, need = n;
    bucket_t *b;
    peer_t *p;

    if (rl_exempt(addr)) return RL_OK;
    /* An address cooling off after failed authentications is refused even
     * with a valid key: else a guesser would learn which guess was right. */
    if ((p = peer_get(addr, 0)) && cooling(p, now)) {
        *retry_s = (unsigned)((p->cooloff_until_ms - now) / 1000 + 1);
        return RL_COOLOFF;
    }
    if (!k->requests_per_minute || !rl.keys || k < srv.cfg.apikeys || k >= srv.cfg.apikeys + srv.cfg.napikeys)
        return RL_OK;
    b = &rl.keys[k - srv.cfg.apikeys];
    /* The whole minute's allowance may be spent at once, as per address. */
    if (bucket_take_n(b, rate, k->requests_per_minute, need, now)) return RL_OK;
    *retry_s = (unsigned)((need - b->tokens) / rate) + 1;     /* tokens come at @rate per second */
    return RL_LIMITED;
}

enum rl_verdict rl_session_open(const char *addr)
{
    peer_t *p;

    if (!srv.cfg.connections_per_ip || rl_exempt(addr)) return RL_OK;
    if (!(p = peer_get(addr, 1))) return RL_OK;
    p->last_ms = now_ms();
    if (p->sessions >= srv.cfg.connections_per_ip) return RL_TOO_MANY;
    p->sessions++;
    return RL_OK;
}

void rl_session_close(const char *addr)
{
    peer_t *p;
    if (!srv.cfg.connections_per_ip || rl_exempt(addr)) return;
    if ((p = peer_get(addr, 0)) && p->sessions) {
        p->sessions--;
        p->last_ms = now_ms();
    }
}

int rl_auth_failed(const char *addr)
{
    uint64_t now = now_ms();
    peer_t *p;

    if (!srv.cfg.auth_failures_max || rl_exempt(addr)) return 0;
    if (!(p = peer_get(addr, 1))) return 0;
    p->last_ms = now;
    if (now - p->failures_since_ms > srv.cfg.auth_cooloff_ms) {
        p->failures = 0;
        p->failures_since_ms = now;
    }
    if (++p->failures >= srv.cfg.auth_failures_max) {
        if (!cooling(p, now))
            hlog(LOG_WARN, "auth", "%s: %u failed authentications, refused for %u s", addr, p->failures,
                 srv.cfg.auth_cooloff_ms / 1000);
        p->cooloff_until_ms = now + srv.cfg.auth_cooloff_ms;
        p->failures = 0;
        return 1;
    }
    return 0;
}

void rl_sweep(void)
{
    uint64_t now = now_ms(), idle = 120000;
    size_t pos = 0;
    peer_t *p, *dead[256];
    size_t ndead = 0;

    if (!rl.ready) return;
    if (srv.cfg.auth_cooloff_ms > idle) idle = srv.cfg.auth_cooloff_ms;
    /* Collect first: the map must not change while it is walked. */
    while ((p = hmap_next(&rl.peers, &pos)) && ndead < 256)
        if (!p->sessions && now - p->last_ms > idle && !cooling(p, now)) dead[ndead++] = p;
    for (size_t i = 0; i < ndead; i++) {
        hmap_del(&rl.peers, dead[i]->key, dead[i]->keylen);
        free(dead[i]);
    }
}

int rl_peer(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    if (getpeername(fd, (struct sockaddr *)&ss, &sl)) return -1;
    if (ss.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len) ? 0 : -1;
    if (ss.ss_family == AF_INET6)
        return inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len) ? 0 : -1;
    return -1;
}
