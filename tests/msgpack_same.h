/* tests/msgpack_same.h - the differential oracle shared by the MessagePack
 * unit test and fuzz target: whether msgpack-c (an independent reader) found
 * the same value in some bytes as our decoder (protocol/mpack.c) did.
 * Header-only, so the fuzz target compiles it with its instrumentation. */
#ifndef HERALD_TEST_MSGPACK_SAME_H
#define HERALD_TEST_MSGPACK_SAME_H

#include <jansson.h>
#include <msgpack.h>
#include <string.h>

/* msgpack_same() - whether msgpack-c's object @o holds the same value as @v. */
static int msgpack_same(const msgpack_object *o, const json_t *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_is_null(v);
    case MSGPACK_OBJECT_BOOLEAN: return json_is_boolean(v) && (int)o->via.boolean == json_is_true(v);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_is_integer(v) && json_integer_value(v) >= 0 &&
               (uint64_t)json_integer_value(v) == o->via.u64;
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
            if (!msgpack_same(&o->via.array.ptr[i], json_array_get(v, i))) return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        if (!json_is_object(v) || json_object_size(v) != o->via.map.size) return 0;
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            const json_t *e;
            if (kv->key.type != MSGPACK_OBJECT_STR) return 0;
            e = json_object_getn(v, kv->key.via.str.size ? kv->key.via.str.ptr : "", kv->key.via.str.size);
            if (!e || !msgpack_same(&kv->val, e)) return 0;
        }
        return 1;
    default: return 0;
    }
}

#endif
