/* clients/hc_nats.h - NATS core's client protocol for the client library (internal, not installed).
 *
 * Owns: reading NATS server operations (INFO, MSG, PING, PONG, +OK, -ERR)
 * out of a byte stream and writing the client's (CONNECT, SUB, PUB, PING,
 * PONG), and hc_ctx_speak_nats(), which turns a context's clients into NATS
 * clients. Does not own: WebSocket framing, connections or request matching
 * (herald_client.c), Herald's own messages (hc_codec.c).
 *
 * Why it exists: herald-bench measures NATS (nats-server's WebSocket
 * listener) through the very connections, buffers, frame parsing and
 * callbacks it measures Herald with (docs/benchmarks.md, "Herald and NATS in
 * the same run"), so the two differ only in the broker. It is not part of
 * the installed ABI (herald_client.h): only what the bench needs is mapped.
 *
 * The readers never allocate: they return views into the bytes given. */
#ifndef HERALD_HC_NATS_H
#define HERALD_HC_NATS_H

#include <stddef.h>
#include <stdint.h>
#include "herald_client.h"

/* hc_ctx_speak_nats() - clients created on @ctx from now on speak NATS
 * instead of Herald: no WebSocket subprotocol is asked for, frames are
 * binary (nats-server reads nothing else), and after the upgrade the client
 * sends CONNECT {"verbose":false,"pedantic":false,"headers":false,...} and
 * PING; the server's INFO must come first, and its PONG opens the client
 * (on_open with op HERALD_OP_CONNECTED). Then, on such a client:
 *   - herald_subscribe() sends SUB channel sid; herald_publish() sends
 *     PUB channel n + @data as it is (the payload's bytes); herald_ping()
 *     sends nothing of its own. NATS answers none of them, so the client
 *     sends one PING after each loop turn's requests, and the PONG answers
 *     every request before it, in order: op HERALD_OP_SUBSCRIBED,
 *     HERALD_OP_PUBLISHED or HERALD_OP_PONG, offset 0. A publication
 *     "acknowledged" so has been processed by the server, no more.
 *   - a MSG is an op HERALD_OP_PUB push: channel is its subject, data its
 *     payload, offset and ts 0 (NATS core has neither).
 *   - a -ERR is an op HERALD_OP_ERROR push (code 0, reason its text) to
 *     on_reply, and becomes the close reason if the server then closes.
 *   - every other request returns UV_ENOTSUP.
 * Loop thread only; call it before creating the clients. */
void hc_ctx_speak_nats(herald_ctx_t *ctx);

/* What one server operation is. */
enum hc_nats_op { HN_INFO = 1, HN_MSG, HN_PING, HN_PONG, HN_OK, HN_ERR };

/* One server operation, as views into the bytes read. */
struct hc_nats_msg {
    enum hc_nats_op op;
    const char *subject;        /* MSG */
    size_t subject_len;
    const unsigned char *payload;   /* MSG: the payload; INFO: its JSON; -ERR: its text */
    size_t len;
};

/* hc_nats_next() - read the operation at the start of @n bytes at @p.
 * @max: the largest MSG payload accepted. @m: [out] filled when one is read.
 * Return: the bytes it takes (> 0); 0 if the bytes end inside it (read more,
 * then call again from the same start); -1 if the bytes are not NATS (with a
 * short reason in *@why), -2 if a payload is over @max. */
long hc_nats_next(const unsigned char *p, size_t n, size_t max, struct hc_nats_msg *m, const char **why);

/* hc_nats_connect() - CONNECT {...}\r\nPING\r\n into @out (@cap bytes).
 * Return: bytes written, or the size needed if over @cap. */
size_t hc_nats_connect(unsigned char *out, size_t cap);

/* hc_nats_sub() - SUB @subject @sid\r\n. hc_nats_pub() - PUB @subject @len\r\n,
 * @len bytes of @data, \r\n. Return: as hc_nats_connect(). */
size_t hc_nats_sub(const char *subject, size_t slen, uint64_t sid, unsigned char *out, size_t cap);
size_t hc_nats_pub(const char *subject, size_t slen, const void *data, size_t len, unsigned char *out, size_t cap);

#endif
