/* tests/fuzz/fuzz_msgpack.c - libFuzzer target: client messages in
 * MessagePack. Besides the round trips of fuzz_common.h, whatever our decoder
 * accepts must be one complete object to msgpack-c too, with the same value
 * (a differential check against an independent reader). msgpack-c is only
 * asked about inputs we accepted: it sizes allocations from the counts that
 * headers claim, which we have checked against the data by then; and only
 * about values nested at most MSGPACK_C_MAX_DEPTH deep, the most msgpack-c's
 * unpacker reads (its MSGPACK_EMBED_STACK_SIZE is 32; deeper input gets
 * MSGPACK_UNPACK_PARSE_ERROR, although §2.2 allows 64 levels). */
#include "fuzz_common.h"

#include <msgpack.h>
#include "../msgpack_same.h"

#define MSGPACK_C_MAX_DEPTH 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char reason[PROTO_REASON_MAX];
    json_t *m = NULL;

    fuzz_one(PROTO_MSGPACK, data, size);

    if (msg_decode(PROTO_MSGPACK, data, size, &m, reason) == 0 && !json_depth_ok(m, MSGPACK_C_MAX_DEPTH)) {
        json_decref(m);
    } else if (m) {
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpack_return r;

        msgpack_unpacked_init(&u);
        r = msgpack_unpack_next(&u, (const char *)data, size, &off);
        FUZZ_CHECK(r == MSGPACK_UNPACK_SUCCESS, "msgpack-c refuses what we accepted (%d)", (int)r);
        FUZZ_CHECK(off == size, "msgpack-c read %zu of %zu bytes", off, size);
        FUZZ_CHECK(msgpack_same(&u.data, m), "msgpack-c reads a different value");
        msgpack_unpacked_destroy(&u);
        json_decref(m);
    }
    return 0;
}
