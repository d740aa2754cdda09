/* tests/fuzz/fuzz_common.h - the round-trip oracle shared by fuzz_json and
 * fuzz_msgpack.
 *
 * A message that decodes must survive the trip through both encodings
 * unchanged (docs/protocol.md §2.2: a JSON subscriber and a MessagePack
 * subscriber receive the same value), encoding must be deterministic, JSON
 * output must never hold a raw newline (§2.1, frames are split on '\n'),
 * and the `pub` push built around a value must decode back to it. Any
 * violation abort()s, which libFuzzer reports as a crash. */
#ifndef HERALD_FUZZ_COMMON_H
#define HERALD_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "record.h"

#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s: ", #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const char *const enc_name[PROTO_NENC] = { "json", "msgpack" };

/* Decodes @len bytes at @buf in @enc, which must succeed, and returns the message. */
static json_t *must_decode(enum proto_enc enc, const unsigned char *buf, size_t len, const char *what)
{
    char reason[PROTO_REASON_MAX];
    json_t *v = NULL;
    int r;

    memset(reason, 0, sizeof reason);
    r = msg_decode(enc, buf, len, &v, reason);
    FUZZ_CHECK(r == 0 && v, "%s: our own %s output does not decode: %s", what, enc_name[enc], reason);
    return v;
}

static void check_message(const json_t *m)
{
    wbuf_t out[PROTO_NENC], again;

    for (int e = 0; e < PROTO_NENC; e++) {
        json_t *back;

        wbuf_init(&out[e]);
        msg_encode((enum proto_enc)e, m, &out[e]);
        FUZZ_CHECK(!out[e].oom, "out of memory encoding %s", enc_name[e]);
        if (e == PROTO_JSON)
            FUZZ_CHECK(!memchr(out[e].p, '\n', out[e].len), "raw newline in JSON output");
        back = must_decode((enum proto_enc)e, out[e].p, out[e].len, "msg_encode");
        FUZZ_CHECK(json_equal(back, m), "%s round trip changed the message", enc_name[e]);

        /* Encoding what we decoded gives the same bytes again. */
        wbuf_init(&again);
        msg_encode((enum proto_enc)e, back, &again);
        FUZZ_CHECK(again.len == out[e].len && !memcmp(again.p, out[e].p, again.len),
                   "%s encoding is not stable across a round trip", enc_name[e]);
        wbuf_deinit(&again);
        json_decref(back);
    }

    /* The same message relayed as a publication's data, when the extra level
     * of nesting still fits. */
    if (json_depth_ok(m, PROTO_MAX_DEPTH - 1)) {
        for (int e = 0; e < PROTO_NENC; e++) {
            json_t *pub;
            wbuf_t b;

            wbuf_init(&b);
            rec_encode_pub((enum proto_enc)e, "fuzz:chan", 9, 42, 1795242265885LL, m, &b);
            FUZZ_CHECK(!b.oom, "out of memory encoding pub");
            if (e == PROTO_JSON) FUZZ_CHECK(!memchr(b.p, '\n', b.len), "raw newline in JSON pub");
            pub = must_decode((enum proto_enc)e, b.p, b.len, "rec_encode_pub");
            FUZZ_CHECK(json_object_size(pub) == 5, "pub has %zu keys", json_object_size(pub));
            FUZZ_CHECK(json_equal(json_object_get(pub, "data"), m), "%s pub changed the data", enc_name[e]);
            FUZZ_CHECK(json_integer_value(json_object_get(pub, "offset")) == 42, "pub offset");
            json_decref(pub);
            wbuf_deinit(&b);
        }
    }
    for (int e = 0; e < PROTO_NENC; e++) wbuf_deinit(&out[e]);
}

/* The whole target for one encoding. */
static void fuzz_one(enum proto_enc enc, const uint8_t *data, size_t size)
{
    char reason[PROTO_REASON_MAX];
    json_t *m = NULL;

    memset(reason, 0x55, sizeof reason);
    if (msg_decode(enc, data, size, &m, reason)) {
        FUZZ_CHECK(m == NULL, "failed decode set *out");
        FUZZ_CHECK(memchr(reason, '\0', sizeof reason) && reason[0], "reason not set or not terminated");
        return;
    }
    FUZZ_CHECK(json_is_object(m), "msg_decode returned a non-object");
    FUZZ_CHECK(json_depth_ok(m, PROTO_MAX_DEPTH), "msg_decode accepted nesting over the limit");
    check_message(m);
    json_decref(m);
}

#endif
