/* tests/unit/test_msg.c - protocol/msg.c: decoding client messages in both
 * encodings, the pub encoder, field accessors, op names, error objects. */
#include "unit.h"

#include <msgpack.h>

#include "msg.h"
#include "record.h"

static json_t *decode(enum proto_enc enc, const void *buf, size_t len)
{
    char reason[PROTO_REASON_MAX] = "";
    json_t *v = NULL;
    int r = msg_decode(enc, buf, len, &v, reason);
    if (r) print_error("msg_decode: %s\n", reason);
    assert_int_equal(r, 0);
    assert_true(json_is_object(v));
    return v;
}

static void decode_refused(enum proto_enc enc, const void *buf, size_t len)
{
    char reason[PROTO_REASON_MAX];
    json_t *v = NULL;
    memset(reason, 0, sizeof reason);
    assert_int_equal(msg_decode(enc, buf, len, &v, reason), PROTO_E_MALFORMED);
    assert_null(v);
    assert_true(reason[0] != '\0');
}

static void test_decode_json(void **state)
{
    static const char *not_objects[] = { "[]", "1", "\"op\"", "null", "true", "[{\"op\":\"ping\"}]", "2.5" };
    const char *ping = "{\"op\":\"ping\",\"id\":5}";
    json_t *v;
    (void)state;

    v = decode(PROTO_JSON, ping, strlen(ping));
    assert_string_equal(json_string_value(json_object_get(v, "op")), "ping");
    assert_int_equal(json_integer_value(json_object_get(v, "id")), 5);
    json_decref(v);
    for (size_t i = 0; i < sizeof not_objects / sizeof not_objects[0]; i++)
        decode_refused(PROTO_JSON, not_objects[i], strlen(not_objects[i]));
    decode_refused(PROTO_JSON, "{\"op\":", 6);
    decode_refused(PROTO_JSON, "", 0);
    /* A MessagePack message on a JSON connection is not JSON. */
    decode_refused(PROTO_JSON, "\x81\xa2op\xa4ping", 9);
}

static void test_decode_msgpack(void **state)
{
    /* docs/protocol.md §8 */
    static const unsigned char sub[] = {
        0x83, 0xa2, 0x6f, 0x70, 0xa9, 0x73, 0x75, 0x62, 0x73, 0x63, 0x72, 0x69, 0x62, 0x65, 0xa2, 0x69,
        0x64, 0x02, 0xa7, 0x63, 0x68, 0x61, 0x6e, 0x6e, 0x65, 0x6c, 0xaa, 0x63, 0x68, 0x61, 0x74, 0x3a,
        0x72, 0x6f, 0x6f, 0x6d, 0x31,
    };
    static const unsigned char not_objects[][3] = { { 0x90 }, { 0x01 }, { 0xa1, 'x' }, { 0xc0 }, { 0x91, 0x80 } };
    static const size_t not_len[] = { 1, 1, 2, 1, 2 };
    json_t *v;
    (void)state;

    v = decode(PROTO_MSGPACK, sub, sizeof sub);
    assert_string_equal(json_string_value(json_object_get(v, "op")), "subscribe");
    assert_int_equal(json_integer_value(json_object_get(v, "id")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "channel")), "chat:room1");
    json_decref(v);
    for (size_t i = 0; i < sizeof not_len / sizeof not_len[0]; i++)
        decode_refused(PROTO_MSGPACK, not_objects[i], not_len[i]);
    decode_refused(PROTO_MSGPACK, "{\"op\":\"ping\"}", 13);
    decode_refused(PROTO_MSGPACK, "", 0);
}

static char *pub_json(const char *chan, uint64_t off, int64_t ts, const json_t *data)
{
    wbuf_t b;
    char *s;
    wbuf_init(&b);
    rec_encode_pub(PROTO_JSON, chan, strlen(chan), off, ts, data, &b);
    assert_false(b.oom);
    s = strndup((const char *)b.p, b.len);
    assert_non_null(s);
    wbuf_deinit(&b);
    return s;
}

static void test_encode_pub_json(void **state)
{
    json_t *data = json_pack("{s:s}", "text", "hello");
    char *s;
    (void)state;

    s = pub_json("chat:room1", 42, 1795242265885LL, data);
    assert_string_equal(s, "{\"op\":\"pub\",\"channel\":\"chat:room1\",\"offset\":42,\"ts\":1795242265885,"
                           "\"data\":{\"text\":\"hello\"}}");
    free(s);
    json_decref(data);

    s = pub_json("news", 1, 1795048543773LL, json_true());
    assert_string_equal(s, "{\"op\":\"pub\",\"channel\":\"news\",\"offset\":1,\"ts\":1795048543773,\"data\":true}");
    free(s);

    s = pub_json("a", UINT64_MAX, INT64_MIN, json_null());
    assert_string_equal(s, "{\"op\":\"pub\",\"channel\":\"a\",\"offset\":18446744073709551615,"
                           "\"ts\":-9223372036854775808,\"data\":null}");
    free(s);

    data = json_pack("{s:s,s:f}", "t", "line1\nline2", "x", 0.1);
    s = pub_json("dm:alice,bob", 7, 0, data);
    assert_string_equal(s, "{\"op\":\"pub\",\"channel\":\"dm:alice,bob\",\"offset\":7,\"ts\":0,"
                           "\"data\":{\"t\":\"line1\\nline2\",\"x\":0.1}}");
    assert_null(strchr(s, '\n'));   /* §2.1: never a raw newline */
    free(s);
    json_decref(data);
}

static void test_encode_pub_msgpack(void **state)
{
    /* docs/protocol.md §8, byte for byte. */
    static const unsigned char doc[] = {
        0x85, 0xa2, 0x6f, 0x70, 0xa3, 0x70, 0x75, 0x62, 0xa7, 0x63, 0x68, 0x61, 0x6e, 0x6e, 0x65, 0x6c,
        0xa4, 0x6e, 0x65, 0x77, 0x73, 0xa6, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x01, 0xa2, 0x74, 0x73,
        0xcf, 0x00, 0x00, 0x01, 0xa1, 0xf1, 0x3b, 0x16, 0x1d, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xc3,
    };
    json_t *data = json_pack("{s:[i,s]}", "k", -3, "v");
    msgpack_unpacked u;
    size_t off = 0;
    int seen = 0;
    wbuf_t b;
    (void)state;

    wbuf_init(&b);
    rec_encode_pub(PROTO_MSGPACK, "news", 4, 1, 1795048543773LL, json_true(), &b);
    assert_bytes_equal(b.p, b.len, doc, sizeof doc);

    wbuf_reset(&b);
    rec_encode_pub(PROTO_MSGPACK, "scores:game-7", 13, 300, 1700000000000LL, data, &b);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)b.p, b.len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, b.len);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(u.data.via.map.size, 5);
    for (uint32_t i = 0; i < 5; i++) {
        msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
        assert_int_equal(k->type, MSGPACK_OBJECT_STR);
#define KEY(s) (k->via.str.size == strlen(s) && !memcmp(k->via.str.ptr, s, strlen(s)))
        if (KEY("op")) {
            assert_true(v->type == MSGPACK_OBJECT_STR && v->via.str.size == 3 && !memcmp(v->via.str.ptr, "pub", 3));
            seen |= 1;
        } else if (KEY("channel")) {
            assert_true(v->type == MSGPACK_OBJECT_STR && v->via.str.size == 13);
            assert_memory_equal(v->via.str.ptr, "scores:game-7", 13);
            seen |= 2;
        } else if (KEY("offset")) {
            assert_true(v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == 300);
            seen |= 4;
        } else if (KEY("ts")) {
            assert_true(v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == 1700000000000ULL);
            seen |= 8;
        } else if (KEY("data")) {
            assert_true(v->type == MSGPACK_OBJECT_MAP && v->via.map.size == 1);
            seen |= 16;
        } else {
            fail_msg("unexpected key %.*s", (int)k->via.str.size, k->via.str.ptr);
        }
#undef KEY
    }
    assert_int_equal(seen, 31);
    msgpack_unpacked_destroy(&u);

    /* And our own decoder reads it back with the same data. */
    {
        json_t *m = decode(PROTO_MSGPACK, b.p, b.len);
        assert_true(json_equal(json_object_get(m, "data"), data));
        assert_int_equal(json_integer_value(json_object_get(m, "offset")), 300);
        json_decref(m);
    }
    wbuf_deinit(&b);
    json_decref(data);
}

static void test_encode_both(void **state)
{
    const char *txt = "{\"op\":\"publish\",\"id\":\"req-1\",\"channel\":\"x\",\"data\":[1,2.5,\"\\u0000\",{}]}";
    json_t *m = decode(PROTO_JSON, txt, strlen(txt));
    (void)state;

    for (int e = 0; e < PROTO_NENC; e++) {
        wbuf_t b;
        json_t *back;
        wbuf_init(&b);
        msg_encode((enum proto_enc)e, m, &b);
        back = decode((enum proto_enc)e, b.p, b.len);
        assert_true(json_equal(back, m));
        json_decref(back);
        wbuf_deinit(&b);
    }
    json_decref(m);
}

static void test_get_id(void **state)
{
    char reason[PROTO_REASON_MAX];
    char s128[130];
    const json_t *id;
    json_t *m;
    (void)state;

    m = json_pack("{s:s}", "op", "ping");
    id = (const json_t *)1;
    assert_int_equal(msg_get_id(m, &id, reason), 0);
    assert_null(id);
    json_decref(m);

    m = json_pack("{s:I}", "id", (json_int_t)INT64_MIN);
    assert_int_equal(msg_get_id(m, &id, reason), 0);
    assert_ptr_equal(id, json_object_get(m, "id"));
    json_decref(m);

    memset(s128, 'i', 128);
    s128[128] = '\0';
    m = json_pack("{s:s}", "id", s128);
    assert_int_equal(msg_get_id(m, &id, reason), 0);
    assert_ptr_equal(id, json_object_get(m, "id"));
    json_decref(m);

    m = json_pack("{s:s}", "id", "");
    assert_int_equal(msg_get_id(m, &id, reason), 0);
    json_decref(m);

    s128[128] = 'i';
    s128[129] = '\0';
    m = json_pack("{s:s}", "id", s128);
    reason[0] = '\0';
    assert_int_equal(msg_get_id(m, &id, reason), PROTO_E_BAD_FIELD);
    assert_null(id);
    assert_non_null(strstr(reason, "id"));
    json_decref(m);

    /* 128 bytes, not 128 characters: 43 three-byte characters are 129 bytes. */
    {
        char u[43 * 3 + 1] = "";
        for (int i = 0; i < 43; i++) strcat(u, "\xe2\x82\xac");
        m = json_pack("{s:s}", "id", u);
        assert_int_equal(msg_get_id(m, &id, reason), PROTO_E_BAD_FIELD);
        json_decref(m);
    }

    m = json_pack("{s:f}", "id", 1.0);
    assert_int_equal(msg_get_id(m, &id, reason), PROTO_E_BAD_FIELD);
    json_decref(m);
    m = json_pack("{s:[i]}", "id", 1);
    assert_int_equal(msg_get_id(m, &id, reason), PROTO_E_BAD_FIELD);
    json_decref(m);
    m = json_pack("{s:{}}", "id");
    assert_int_equal(msg_get_id(m, &id, reason), PROTO_E_BAD_FIELD);
    json_decref(m);
    m = json_pack("{s:b}", "id", 1);
    assert_int_equal(msg_get_id(m, &id, reason), PROTO_E_BAD_FIELD);
    json_decref(m);
    m = json_pack("{s:n}", "id");
    assert_int_equal(msg_get_id(m, &id, reason), PROTO_E_BAD_FIELD);
    json_decref(m);
}

static void test_get_channel(void **state)
{
    char reason[PROTO_REASON_MAX];
    const char *name;
    size_t len;
    json_t *m;
    (void)state;

    m = json_pack("{s:s}", "channel", "chat:room1");
    assert_int_equal(msg_get_channel(m, &name, &len, reason), 0);
    assert_string_equal(name, "chat:room1");
    assert_int_equal(len, 10);
    json_decref(m);

    m = json_pack("{s:s}", "op", "subscribe");
    reason[0] = '\0';
    assert_int_equal(msg_get_channel(m, &name, &len, reason), PROTO_E_BAD_FIELD);
    assert_non_null(strstr(reason, "channel"));
    json_decref(m);

    m = json_pack("{s:i}", "channel", 5);
    reason[0] = '\0';
    assert_int_equal(msg_get_channel(m, &name, &len, reason), PROTO_E_BAD_FIELD);
    assert_non_null(strstr(reason, "channel"));
    json_decref(m);

    m = json_pack("{s:n}", "channel");
    assert_int_equal(msg_get_channel(m, &name, &len, reason), PROTO_E_BAD_FIELD);
    json_decref(m);

    static const char *bad[] = { "", "chat room", ":x", "chat:", "\xc3\xbcn\xc3\xaf", "a\"b", "a\\b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = json_pack("{s:s}", "channel", bad[i]);
        reason[0] = '\0';
        assert_int_equal(msg_get_channel(m, &name, &len, reason), PROTO_E_BAD_CHANNEL);
        assert_true(reason[0] != '\0');
        json_decref(m);
    }
    /* An embedded NUL must not hide the rest of the name. */
    m = json_object();
    json_object_set_new(m, "channel", json_stringn("ok\0 bad", 7));
    assert_int_equal(msg_get_channel(m, &name, &len, reason), PROTO_E_BAD_CHANNEL);
    json_decref(m);
}

static void test_get_typed(void **state)
{
    json_t *m = json_pack("{s:s,s:I,s:b,s:f}", "s", "str", "i", (json_int_t)-9, "b", 1, "f", 1.5);
    char reason[PROTO_REASON_MAX];
    const char *s;
    size_t len;
    int64_t i = 0;
    int b = 0;
    (void)state;

    assert_int_equal(msg_get_str(m, "s", &s, &len, reason), 0);
    assert_string_equal(s, "str");
    assert_int_equal(len, 3);
    assert_int_equal(msg_get_str(m, "s", &s, NULL, reason), 0);
    assert_int_equal(msg_get_str(m, "zz", &s, &len, reason), 1);
    assert_int_equal(msg_get_str(m, "i", &s, &len, reason), PROTO_E_BAD_FIELD);
    assert_int_equal(msg_get_int(m, "i", &i, reason), 0);
    assert_int_equal(i, -9);
    assert_int_equal(msg_get_int(m, "f", &i, reason), PROTO_E_BAD_FIELD);   /* 1.5 is no integer */
    assert_int_equal(msg_get_int(m, "zz", &i, reason), 1);
    assert_int_equal(msg_get_bool(m, "b", &b, reason), 0);
    assert_int_equal(b, 1);
    assert_int_equal(msg_get_bool(m, "i", &b, reason), PROTO_E_BAD_FIELD);
    assert_int_equal(msg_get_bool(m, "zz", &b, reason), 1);
    json_decref(m);
}

static void test_op_parse(void **state)
{
    (void)state;
    assert_int_equal(proto_op_parse("connect"), OP_CONNECT);
    assert_int_equal(proto_op_parse("subscribe"), OP_SUBSCRIBE);
    assert_int_equal(proto_op_parse("unsubscribe"), OP_UNSUBSCRIBE);
    assert_int_equal(proto_op_parse("publish"), OP_PUBLISH);
    assert_int_equal(proto_op_parse("ping"), OP_PING);
    assert_int_equal(proto_op_parse(""), OP_UNKNOWN);
    assert_int_equal(proto_op_parse("PING"), OP_UNKNOWN);
    assert_int_equal(proto_op_parse("pub"), OP_UNKNOWN);       /* server-only */
    assert_int_equal(proto_op_parse("connected"), OP_UNKNOWN);
    assert_int_equal(proto_op_parse("ping "), OP_UNKNOWN);
}

static void test_error_shape(void **state)
{
    json_t *id = json_integer(4), *e;
    wbuf_t b;
    (void)state;

    e = msg_error(id, PROTO_E_BAD_CHANNEL, "bad name");
    assert_non_null(e);
    assert_int_equal(json_object_size(e), 4);
    assert_string_equal(json_string_value(json_object_get(e, "op")), "error");
    assert_true(json_equal(json_object_get(e, "id"), id));
    assert_int_equal(json_integer_value(json_object_get(e, "code")), 104);
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "bad name");
    wbuf_init(&b);
    msg_encode(PROTO_JSON, e, &b);
    assert_bytes_equal(b.p, b.len, "{\"op\":\"error\",\"id\":4,\"code\":104,\"reason\":\"bad name\"}",
                       strlen("{\"op\":\"error\",\"id\":4,\"code\":104,\"reason\":\"bad name\"}"));
    wbuf_deinit(&b);
    json_decref(e);

    /* Without id: no "id" key; without a reason: the code's name. */
    e = msg_error(NULL, PROTO_E_MALFORMED, NULL);
    assert_int_equal(json_object_size(e), 3);
    assert_null(json_object_get(e, "id"));
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "malformed");
    json_decref(e);

    e = msg_reply("pong", id);
    assert_int_equal(json_object_size(e), 2);
    assert_string_equal(json_string_value(json_object_get(e, "op")), "pong");
    json_decref(e);
    json_decref(id);

    assert_string_equal(proto_err_name(PROTO_E_INTERNAL), "internal");
    assert_string_equal(proto_err_name(PROTO_E_UNKNOWN_OP), "unknown_op");
    assert_string_equal(proto_err_name(PROTO_E_LIMIT), "limit");
    assert_string_equal(proto_err_name(PROTO_E_IDEM_MISMATCH), "idempotency_mismatch");
    assert_string_equal(proto_err_name(PROTO_E_ENGINE_UNAVAILABLE), "engine_unavailable");
    assert_string_equal(proto_err_name(PROTO_E_OVERLOADED), "overloaded");
    assert_string_equal(proto_err_name(999), "unknown");
    for (int c = PROTO_E_INTERNAL; c <= PROTO_E_LIMIT; c++) assert_string_not_equal(proto_err_name(c), "unknown");
}

/* One table maps every error code to its REST status (docs/rest-api.md);
 * anything it does not know, a negative errno included, is the broker's
 * failure: 500, never a client's 4xx. */
static void test_http_status(void **state)
{
    static const struct { int code; unsigned status; } t[] = {
        { PROTO_E_MALFORMED, 400 }, { PROTO_E_BAD_FIELD, 400 }, { PROTO_E_BAD_CHANNEL, 400 },
        { PROTO_E_UNAUTHORIZED, 401 }, { PROTO_E_FORBIDDEN, 403 },
        { PROTO_E_NO_HISTORY, 404 }, { PROTO_E_DISABLED, 404 },
        { PROTO_E_CONFLICT, 409 }, { PROTO_E_SEATS_TAKEN, 409 }, { PROTO_E_NOT_HELD, 409 },
        { PROTO_E_IDEM_MISMATCH, 409 },
        { PROTO_E_TOO_LARGE, 413 }, { PROTO_E_NOT_INTEGER, 422 }, { PROTO_E_UNKNOWN_SEAT, 422 },
        { PROTO_E_RATE_LIMITED, 429 }, { PROTO_E_LIMIT, 503 }, { PROTO_E_ENGINE_UNAVAILABLE, 503 },
        { PROTO_E_OVERLOADED, 503 },
        { PROTO_E_STORAGE, 507 },
        { PROTO_E_INTERNAL, 500 }, { -12, 500 }, { 0, 500 }, { 999, 500 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (proto_err_http_status(t[i].code) != t[i].status)
            fail_msg("code %d: status %u, want %u", t[i].code, proto_err_http_status(t[i].code), t[i].status);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_json),
        cmocka_unit_test(test_decode_msgpack),
        cmocka_unit_test(test_encode_pub_json),
        cmocka_unit_test(test_encode_pub_msgpack),
        cmocka_unit_test(test_encode_both),
        cmocka_unit_test(test_get_id),
        cmocka_unit_test(test_get_channel),
        cmocka_unit_test(test_get_typed),
        cmocka_unit_test(test_op_parse),
        cmocka_unit_test(test_error_shape),
        cmocka_unit_test(test_http_status),
    };
    return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
