/* broker/net/peer.c - see peer.h. */
#include "net/peer.h"
#include "auth/ratelimit.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The address in one header entry of @len bytes at @p: a bare IPv4 or IPv6
 * address, optionally quoted, an IPv6 address in brackets with an optional
 * port ("[2001:db8::1]:4711"), or an IPv4 address with a port, which some
 * proxies write. Return: 0 with the canonical form in @out, or -1. */
static int entry_addr(const char *p, size_t len, char *out, size_t outlen)
{
    const char *colon;

    while (len && (*p == ' ' || *p == '\t')) { p++; len--; }
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
    if (len >= 2 && p[0] == '"' && p[len - 1] == '"') { p++; len -= 2; }
    if (len && p[0] == '[') {
        const char *close = memchr(p, ']', len);
        return close ? rl_addr_canon(p + 1, (size_t)(close - p - 1), out, outlen) : -1;
    }
    if (!rl_addr_canon(p, len, out, outlen)) return 0;
    /* One colon: an IPv4 address and a port (IPv6 has two or more). */
    colon = memchr(p, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - p) - 1))
        return rl_addr_canon(p, (size_t)(colon - p), out, outlen);
    return -1;
}

/* The "for=" value of one Forwarded element (pairs separated by ';'), or
 * NULL; *@vlen is its length. */
static const char *forwarded_for(const char *el, size_t len, size_t *vlen)
{
    const char *p = el, *end = el + len;

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi ? semi : end;
        while (p < pe && (*p == ' ' || *p == '\t')) p++;
        if (pe - p > 4 && !strncasecmp(p, "for=", 4)) {
            *vlen = (size_t)(pe - p - 4);
            return p + 4;
        }
        p = pe + 1;
    }
    return NULL;
}

int peer_forwarded_pick(const char *peer, const char *xff, const char *fwd, char *out, size_t len)
{
    const char *list = xff ? xff : fwd, *end;
    char cur[PEER_ADDR_LEN];

    snprintf(cur, sizeof cur, "%s", peer);
    if (list) {
        end = list + strlen(list);
        /* Right to left: each entry was appended by the hop after it. */
        while (end > list && rl_trusted_proxy(cur)) {
            const char *start = end, *val;
            size_t vlen;
            char addr[PEER_ADDR_LEN];

            while (start > list && start[-1] != ',') start--;
            val = start;
            vlen = (size_t)(end - start);
            if (!xff && !(val = forwarded_for(start, vlen, &vlen))) break;
            /* A trusted proxy that could not name its client ("unknown",
             * an obfuscated name): keep that proxy as the answer rather
             * than read further left, where the client writes. */
            if (entry_addr(val, vlen, addr, sizeof addr)) break;
            memcpy(cur, addr, sizeof cur);
            end = start > list ? start - 1 : list;
        }
    }
    snprintf(out, len, "%s", cur);
    return strcmp(cur, peer) != 0;
}

/* A copy of header @h of @wsi (malloc'd), or NULL when absent. */
static char *header(struct lws *wsi, enum lws_token_indexes h)
{
    int n = lws_hdr_total_length(wsi, h);
    char *v;

    if (n <= 0 || !(v = malloc((size_t)n + 1))) return NULL;
    if (lws_hdr_copy(wsi, v, n + 1, h) < 0) { free(v); return NULL; }
    return v;
}

/* A copy of the custom header @name ("forwarded:") of @wsi, or NULL. */
static char *custom_header(struct lws *wsi, const char *name)
{
    int nlen = (int)strlen(name), n = lws_hdr_custom_length(wsi, name, nlen);
    char *v;

    if (n <= 0 || !(v = malloc((size_t)n + 1))) return NULL;
    if (lws_hdr_custom_copy(wsi, v, n + 1, name, nlen) < 0) { free(v); return NULL; }
    return v;
}

int peer_client_addr(struct lws *wsi, char *out, size_t len)
{
    char peer[PEER_ADDR_LEN], canon[PEER_ADDR_LEN];
    char *xff, *fwd = NULL;
    int r;

    peer[0] = '\0';
    lws_get_peer_simple(wsi, peer, sizeof peer);
    if (!peer[0]) { if (len) *out = '\0'; return -1; }
    /* lws's text for the peer is inet_ntop()'s: already canonical, but
     * normalise anyway so that both paths give one key per client. */
    if (rl_addr_canon(peer, strlen(peer), canon, sizeof canon)) snprintf(canon, sizeof canon, "%s", peer);
    if (!rl_trusted_proxy(canon)) {
        snprintf(out, len, "%s", canon);
        return 0;
    }
    xff = header(wsi, WSI_TOKEN_X_FORWARDED_FOR);
    if (!xff) fwd = custom_header(wsi, "forwarded:");
    r = peer_forwarded_pick(canon, xff, fwd, out, len);
    free(xff);
    free(fwd);
    return r;
}
