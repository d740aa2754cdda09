/* tests/fuzz/fuzz_client.c - libFuzzer target: what the C client library
 * reads from a server (clients/hc_codec.c), which a client must survive
 * whatever the server (or something pretending to be one) sends.
 *
 * The first byte picks the reader: 0 one JSON message (hc_json_parse), 1
 * one MessagePack message (hc_mpack_parse), 2 and 3 a "publications" array
 * in JSON or MessagePack walked to its end (hc_pubs_start/hc_pubs_next), as
 * herald_pubs_next() does for a recovery reply. The rest is copied into a
 * buffer of exactly its size, so AddressSanitizer sees any read past it.
 * Checked besides memory safety: every view a reader returns lies inside
 * the input (the reason inside the scratch buffer), a MessagePack reader
 * never claims more bytes than it was given, a walk moves forward on every
 * element, and a message that reads has publications the walk accepts or
 * refuses without overrunning them. Any violation abort()s. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hc_codec.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const unsigned char *lo, *hi;

static void inside(const void *v, size_t len)
{
    const unsigned char *p = v;
    if (!p) {
        CHECK(len == 0);
        return;
    }
    CHECK(p >= lo && p <= hi && len <= (size_t)(hi - p));
}

static void views_inside(const herald_msg_t *m, const char *scratch)
{
    inside(m->channel, m->channel_len);
    inside(m->data, m->data_len);
    inside(m->client, m->client_len);
    inside(m->user, m->user_len);
    inside(m->epoch, m->epoch_len);
    inside(m->publications, m->publications_len);
    inside(m->state, m->state_len);
    inside(m->changes, m->changes_len);
    if (m->reason) {
        /* Unescaped into the scratch buffer, or a view of the input. */
        const char *r = m->reason;
        if (!(scratch && r >= scratch && r < scratch + HC_REASON_MAX)) inside(r, m->reason_len);
        else CHECK(m->reason_len <= HC_REASON_MAX);
    }
}

/* Walks a publications array as herald_pubs_next() does. */
static void walk(herald_encoding_t enc, const unsigned char *p, size_t n)
{
    const unsigned char *pp, *e = p + n;
    uint32_t left;
    herald_msg_t m;
    int r;

    if (hc_pubs_start(enc, p, n, &pp, &left)) return;
    CHECK(pp >= p && pp <= e);
    for (size_t steps = 0;; steps++) {
        const unsigned char *before = pp;
        r = hc_pubs_next(enc, &pp, e, &left, &m);
        if (r <= 0) break;
        CHECK(pp > before && pp <= e);
        CHECK(steps <= n);
        views_inside(&m, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char scratch[HC_REASON_MAX];
    herald_msg_t m;
    unsigned char *buf;
    size_t n, used = 0;
    int mode;

    if (size < 1) return 0;
    mode = data[0] & 3;
    n = size - 1;
    if (!(buf = malloc(n ? n : 1))) return 0;
    memcpy(buf, data + 1, n);
    lo = buf;
    hi = buf + n;
    memset(&m, 0, sizeof m);       /* as herald_client.c does before each message */
    switch (mode) {
    case 0:
        if (hc_json_parse((const char *)buf, n, &m, scratch) == 0) {
            views_inside(&m, scratch);
            if (m.publications) walk(HERALD_JSON, m.publications, m.publications_len);
        }
        break;
    case 1:
        if (hc_mpack_parse(buf, n, &m, &used) == 0) {
            CHECK(used > 0 && used <= n);
            views_inside(&m, scratch);
            if (m.publications) walk(HERALD_MSGPACK, m.publications, m.publications_len);
        }
        break;
    default:
        walk(mode == 2 ? HERALD_JSON : HERALD_MSGPACK, buf, n);
        break;
    }
    free(buf);
    return 0;
}
