/* broker/net/peer.h - who a connection's client is.
 *
 * Owns: the client address of an HTTP request or WebSocket handshake: the
 * TCP peer, or, when that peer is a trusted reverse proxy
 * (server.trusted_proxies), the address its forwarding header names, read
 * from X-Forwarded-For or, without one, Forwarded (RFC 7239 "for="). The
 * chain is walked from the right: each trusted proxy's entry names the hop
 * before it, and the first hop that is not a trusted proxy is the client.
 * Entries to its left came from the client itself and are never believed.
 * Does not own: which addresses are trusted (auth/ratelimit.c decides, as it
 * owns the address blocks) or what the address is used for (limits, the
 * cool-off, logs). Loop thread only. */
#ifndef HERALD_PEER_H
#define HERALD_PEER_H

#include <stddef.h>

struct lws;

/* Room for any address peer_client_addr() writes, NUL included. */
#define PEER_ADDR_LEN 46

/* peer_client_addr() - the client address of @wsi into @out (@len bytes, at
 * least PEER_ADDR_LEN), while @wsi's request headers are still held (an HTTP
 * request's callback, a WebSocket handshake up to LWS_CALLBACK_ESTABLISHED).
 * When the TCP peer is a trusted proxy and its header is missing, or the
 * entry it names is not an address ("unknown", an obfuscated name), the
 * last trusted hop is the answer: the proxy's own address at worst.
 * Return: 1 when the address came from a forwarding header, 0 when it is
 * the TCP peer, -1 when not even that is known (@out is then ""). */
int peer_client_addr(struct lws *wsi, char *out, size_t len);

/* peer_forwarded_pick() - the walk itself, on header values already read:
 * from the TCP peer @peer (canonical text) through the entries of @xff (an
 * X-Forwarded-For value) or, when @xff is NULL, @fwd (a Forwarded value),
 * right to left while the current hop is a trusted proxy. Either may be NULL.
 * @out: [out] the client address, canonical text (@len bytes).
 * Return: 1 when the answer is not @peer, 0 when it is. */
int peer_forwarded_pick(const char *peer, const char *xff, const char *fwd, char *out, size_t len);

#endif
