/* tests/unit/fakews.h - the server side of a fake Herald WebSocket endpoint
 * for client library tests (test_client_flush.c, test_client_pause.c): plain
 * blocking sockets on a thread of the test, speaking just enough RFC 6455
 * (the upgrade, masked client frames, unmasked server frames) and answering
 * "connect" with "connected". Does not own: what a test's server streams. */
#ifndef HERALD_TEST_FAKEWS_H
#define HERALD_TEST_FAKEWS_H

#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* One client frame, masked as RFC 6455 requires, at @p (@n bytes).
 * Return: the frame's length, 0 if incomplete; the payload is unmasked in
 * place into @pl / @pll. */
static inline size_t client_frame(unsigned char *p, size_t n, unsigned char **pl, size_t *pll)
{
    size_t h = 2, len;

    if (n < 2 || !(p[1] & 0x80)) return 0;
    len = p[1] & 0x7f;
    if (len == 126) {
        if (n < 4) return 0;
        len = (size_t)p[2] << 8 | p[3];
        h = 4;
    } else if (len == 127) {
        return 0;                 /* nothing these tests send is that long */
    }
    if (n < h + 4 + len) return 0;
    for (size_t i = 0; i < len; i++) p[h + 4 + i] ^= p[h + i % 4];
    *pl = p + h + 4;
    *pll = len;
    return h + 4 + len;
}

/* An unmasked server text frame of @s (under 64 KiB) into @out. Return: its length. */
static inline size_t server_frame(unsigned char *out, const char *s, size_t len)
{
    size_t h = 2;

    out[0] = 0x81;
    if (len < 126) {
        out[1] = (unsigned char)len;
    } else {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        h = 4;
    }
    memcpy(out + h, s, len);
    return h + len;
}

/* Reads until @buf holds a whole client frame or the socket's timeout. */
static inline int read_frame(int fd, unsigned char *buf, size_t cap, size_t *have, unsigned char **pl, size_t *pll)
{
    size_t fl;

    while (!(fl = client_frame(buf, *have, pl, pll))) {
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n <= 0) return -1;
        *have += (size_t)n;
    }
    memmove(buf, buf + fl, *have - fl);       /* the payload is used before the next read */
    *have -= fl;
    return 0;
}

static inline int handshake(int fd)
{
    char req[4096], resp[512], keybuf[128];
    unsigned char md[20], b64[64], frame[4096], *pl;
    const char *k, *ke;
    size_t have = 0, pll;
    unsigned mdlen;
    int kl;

    while (have < sizeof req - 1) {
        ssize_t n = recv(fd, req + have, sizeof req - 1 - have, 0);
        if (n <= 0) return -1;
        have += (size_t)n;
        req[have] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    if (!(k = strcasestr(req, "\r\nSec-WebSocket-Key:"))) return -1;
    k += 20;
    while (*k == ' ') k++;
    if (!(ke = strstr(k, "\r\n"))) return -1;
    kl = snprintf(keybuf, sizeof keybuf, "%.*s%s", (int)(ke - k), k, WS_GUID);
    if (!EVP_Digest(keybuf, (size_t)kl, md, &mdlen, EVP_sha1(), NULL)) return -1;
    EVP_EncodeBlock(b64, md, (int)mdlen);
    kl = snprintf(resp, sizeof resp,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: herald.json\r\n\r\n", (char *)b64);
    if (send(fd, resp, (size_t)kl, MSG_NOSIGNAL) != kl) return -1;

    /* The client sends "connect" only once it has the 101, so nothing else is buffered. */
    have = 0;
    if (read_frame(fd, frame, sizeof frame, &have, &pl, &pll)) return -1;
    if (!memmem(pl, pll, "\"op\":\"connect\"", 14)) return -1;
    k = "{\"op\":\"connected\",\"id\":0,\"client\":\"t1\",\"ping_interval\":25}";
    have = server_frame(frame, k, strlen(k));
    return send(fd, frame, have, MSG_NOSIGNAL) == (ssize_t)have ? 0 : -1;
}

#endif
