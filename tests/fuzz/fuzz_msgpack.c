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

#define MSGPACK_C_MAX_DEPTH 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const msgpack_object *o, const json_t *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_is_null(v);
    case MSGPACK_OBJECT_BOOLEAN: return json_is_boolean(v) && (int)o->via.boolean == json_is_true(v);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_is_integer(v) && json_integer_value(v) >= 0 && (uint64_t)json_integer_value(v) == o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_is_integer(v) && json_integer_value(v) == o->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
        double d = json_real_value(v);
        return json_is_real(v) && !memcmp(&d, &o->via.f64, sizeof d);
    }
    case MSGPACK_OBJECT_STR:
        /* msgpack-c may give an empty string a NULL pointer. */
        return json_is_string(v) && json_string_length(v) == o->via.str.size &&
               (o->via.str.size == 0 || !memcmp(json_string_value(v), o->via.str.ptr, o->via.str.size));
    case MSGPACK_OBJECT_ARRAY:
        if (!json_is_array(v) || json_array_size(v) != o->via.array.size) return 0;
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!same(&o->via.array.ptr[i], json_array_get(v, i))) return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        if (!json_is_object(v) || json_object_size(v) != o->via.map.size) return 0;
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            char *key;
            json_t *e;
            if (k->type != MSGPACK_OBJECT_STR) return 0;
            key = k->via.str.size ? strndup(k->via.str.ptr, k->via.str.size) : strdup("");
            FUZZ_CHECK(key != NULL, "out of memory");
            e = json_object_get(v, key);
            free(key);
            if (!e || !same(&o->via.map.ptr[i].val, e)) return 0;
        }
        return 1;
    default: return 0;
    }
}

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
        FUZZ_CHECK(same(&u.data, m), "msgpack-c reads a different value");
        msgpack_unpacked_destroy(&u);
        json_decref(m);
    }
    return 0;
}
