/* broker/auth/ratelimit.h - token buckets, per-client-address limits, and
 * the per-API-key REST limit.
 *
 * Owns: struct bucket (a token bucket in caller storage), the table of
 * client addresses with their buckets and counters (srv-wide), and the list of
 * addresses the per-address limits skip (limits.rate_limit_exempt, loopback
 * by default), and the trust decision for reverse proxies
 * (server.trusted_proxies: whose forwarding headers name the client; the
 * headers themselves are read in net/peer.c).
 * An address's entry is created on first use and dropped once it has been
 * idle long enough that all its buckets are full again, so the table holds
 * only addresses seen recently. Each [apikey NAME] has one bucket of its
 * own (requests_per_minute), made at rl_init(). Loop thread only. */
#ifndef HERALD_RATELIMIT_H
#define HERALD_RATELIMIT_H

#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* A token bucket: @rate tokens per second, at most @burst banked. */
typedef struct bucket {
    double tokens;
    uint64_t last_ms;
} bucket_t;

/* bucket_take() - take one token if there is one at @now_ms.
 * Return: 1 if taken, 0 if the bucket is empty. A @rate of 0 means no limit. */
int bucket_take(bucket_t *b, double rate, double burst, uint64_t now_ms);

/* bucket_take_n() - take @n tokens if there are that many at @now_ms, else
 * none. Return: 1 if taken, 0 if not. A @rate of 0 means no limit. */
int bucket_take_n(bucket_t *b, double rate, double burst, double n, uint64_t now_ms);

/* bucket_wait_ms() - how long until the bucket has a token again. */
uint64_t bucket_wait_ms(const bucket_t *b, double rate, uint64_t now_ms);

/* Per-address limits. @addr is a textual IPv4 or IPv6 address. */
enum rl_verdict { RL_OK = 0, RL_LIMITED, RL_COOLOFF, RL_TOO_MANY };

/* rl_init() outcome: limits.rate_limit_exempt or server.trusted_proxies
 * holds something that is not an address or CIDR block (a bad setting:
 * exit status 2). */
#define RL_E_SETTING 1

/* rl_init() - set up the address table and parse limits.rate_limit_exempt
 * and server.trusted_proxies. Call rl_deinit() afterwards, also on failure.
 * @err: [out] on failure, why; for RL_E_SETTING "WHERE: OPTION: \"X\" is
 *       not an address or CIDR block" (WHERE as config_where() says it).
 * Return: 0, RL_E_SETTING, or -1 (out of memory). */
int rl_init(char *err, size_t errlen);
void rl_deinit(void);

/* rl_exempt() - whether @addr is in the exempt list. */
int rl_exempt(const char *addr);

/* rl_trusted_proxy() - whether @addr is in server.trusted_proxies: a reverse
 * proxy whose X-Forwarded-For / Forwarded header is believed. */
int rl_trusted_proxy(const char *addr);

/* rl_addr_canon() - the IPv4 or IPv6 address in the @len bytes at @in (no
 * port, no brackets), in canonical text form into @out (@outlen bytes, at
 * least INET6_ADDRSTRLEN), so that one client always has one table key.
 * Return: 0, or -1 if @in is not an address. */
int rl_addr_canon(const char *in, size_t len, char *out, size_t outlen);

/* rl_connect() - a new TCP connection from @addr: RL_OK, RL_LIMITED
 * (limits.connects_per_second) or RL_COOLOFF (too many failed
 * authentications lately). */
enum rl_verdict rl_connect(const char *addr);

/* rl_rest() - a REST request from @addr: RL_OK, RL_LIMITED
 * (limits.rest_per_minute; *@retry_s says when to retry) or RL_COOLOFF. */
enum rl_verdict rl_rest(const char *addr, unsigned *retry_s);

/* rl_key() - @n REST requests (a batch counts its items) with API key @k
 * (one of srv.cfg.apikeys) from @addr: RL_OK, RL_LIMITED (the key's
 * requests_per_minute; nothing is taken then, and *@retry_s says when @n
 * fit again) or RL_COOLOFF (@addr is cooling off after failed
 * authentications: refused whatever the key; *@retry_s as well). A key is limited instead of its address (limits.rest_per_minute
 * is for browsers, not a backend behind one address); rate_limit_exempt
 * addresses skip it, like the other per-connection limits. */
enum rl_verdict rl_key(const apikey_t *k, unsigned n, const char *addr, unsigned *retry_s);

/* rl_session_open() / rl_session_close() - count WebSocket sessions per
 * address for limits.connections_per_ip. open returns RL_TOO_MANY at the cap
 * (and counts nothing then). */
enum rl_verdict rl_session_open(const char *addr);
void rl_session_close(const char *addr);

/* rl_auth_failed() - a failed authentication from @addr; after
 * auth.failures_max of them within the cooloff the address is refused for
 * auth.cooloff. Return: 1 if the address is now cooling off. */
int rl_auth_failed(const char *addr);

/* rl_sweep() - drop idle entries (call about once a second). */
void rl_sweep(void);

/* rl_peer() - the textual address of the peer of socket @fd into @out. */
int rl_peer(int fd, char *out, size_t len);

#endif
