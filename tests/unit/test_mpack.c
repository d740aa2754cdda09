/* tests/unit/test_mpack.c - protocol/mpack.c against msgpack-c: what we emit
 * msgpack-c reads back as the same values, what msgpack-c packs we decode to
 * the right jansson values, and everything §2.2 refuses is refused. */
#include "unit.h"

#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include "../msgpack_same.h"

#include "mpack.h"

/* ---- helpers ---- */

static json_t *dec_ok(const void *buf, size_t len)
{
    char reason[PROTO_REASON_MAX] = "";
    json_t *v = NULL;
    int r = mpack_decode(buf, len, &v, reason);
    if (r) print_error("mpack_decode failed: %s\n", reason);
    assert_int_equal(r, 0);
    assert_non_null(v);
    return v;
}

#define DEC_OK(...) ({ static const unsigned char b_[] = { __VA_ARGS__ }; dec_ok(b_, sizeof b_); })

static void dec_fails_why(const void *buf, size_t len, const char *why)
{
    char reason[PROTO_REASON_MAX];
    json_t *v = NULL;

    memset(reason, 0, sizeof reason);
    if (mpack_decode(buf, len, &v, reason) == 0) {
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        print_error("mpack_decode should fail (%s) but gave %s\n", why ? why : "", t ? t : "?");
        free(t);
        json_decref(v);
        fail();
    }
    assert_true(reason[0] != '\0');
    if (why && !strstr(reason, why)) {
        print_error("reason \"%s\" does not mention \"%s\"\n", reason, why);
        fail();
    }
}

#define DEC_FAILS(why, ...)                                                    \
    do {                                                                       \
        static const unsigned char b_[] = { __VA_ARGS__ };                     \
        dec_fails_why(b_, sizeof b_, (why));                                   \
    } while (0)

static void emit_to(wbuf_t *b, const json_t *v)
{
    wbuf_init(b);
    mpack_emit(b, v);
    assert_false(b->oom);
}

#define EMITS(v, ...)                                                          \
    do {                                                                       \
        static const unsigned char w_[] = { __VA_ARGS__ };                     \
        wbuf_t b_;                                                             \
        json_t *v_ = (v);                                                      \
        emit_to(&b_, v_);                                                      \
        assert_bytes_equal(b_.p, b_.len, w_, sizeof w_);                       \
        wbuf_deinit(&b_);                                                      \
        json_decref(v_);                                                       \
    } while (0)


/* Emits @v, reads it with msgpack-c (exactly one object, no bytes left) and
 * with mpack_decode; both must give back @v. */
static void check_emit(json_t *v)
{
    msgpack_unpacked u;
    size_t off = 0;
    wbuf_t b;
    json_t *back;

    emit_to(&b, v);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)b.p, b.len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, b.len);
    assert_true(msgpack_same(&u.data, v));
    msgpack_unpacked_destroy(&u);
    back = dec_ok(b.p, b.len);
    assert_true(json_equal(back, v));
    json_decref(back);
    wbuf_deinit(&b);
    json_decref(v);
}

static json_t *str_of(size_t n, char fill)
{
    char *s = malloc(n + 1);
    json_t *v;
    assert_non_null(s);
    memset(s, fill, n);
    v = json_stringn(s, n);
    free(s);
    assert_non_null(v);
    return v;
}

/* ---- emitting ---- */

static void test_emit_ints(void **state)
{
    (void)state;
    EMITS(json_integer(0), 0x00);
    EMITS(json_integer(127), 0x7f);
    EMITS(json_integer(128), 0xcc, 0x80);
    EMITS(json_integer(255), 0xcc, 0xff);
    EMITS(json_integer(256), 0xcd, 0x01, 0x00);
    EMITS(json_integer(65535), 0xcd, 0xff, 0xff);
    EMITS(json_integer(65536), 0xce, 0x00, 0x01, 0x00, 0x00);
    EMITS(json_integer(4294967295LL), 0xce, 0xff, 0xff, 0xff, 0xff);
    EMITS(json_integer(4294967296LL), 0xcf, 0, 0, 0, 1, 0, 0, 0, 0);
    EMITS(json_integer(INT64_MAX), 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    EMITS(json_integer(-1), 0xff);
    EMITS(json_integer(-32), 0xe0);
    EMITS(json_integer(-33), 0xd0, 0xdf);
    EMITS(json_integer(-128), 0xd0, 0x80);
    EMITS(json_integer(-129), 0xd1, 0xff, 0x7f);
    EMITS(json_integer(-32768), 0xd1, 0x80, 0x00);
    EMITS(json_integer(-32769), 0xd2, 0xff, 0xff, 0x7f, 0xff);
    EMITS(json_integer(INT32_MIN), 0xd2, 0x80, 0x00, 0x00, 0x00);
    EMITS(json_integer((int64_t)INT32_MIN - 1), 0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff);
    EMITS(json_integer(INT64_MIN), 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0);
}

static void test_emit_other(void **state)
{
    (void)state;
    EMITS(json_null(), 0xc0);
    EMITS(json_false(), 0xc2);
    EMITS(json_true(), 0xc3);
    EMITS(json_real(1.5), 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0);
    EMITS(json_real(-0.0), 0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0);
    EMITS(json_string(""), 0xa0);
    EMITS(json_string("abc"), 0xa3, 'a', 'b', 'c');
    EMITS(json_stringn("a\0b", 3), 0xa3, 'a', 0, 'b');
    EMITS(json_array(), 0x90);
    EMITS(json_object(), 0x80);
    EMITS(json_pack("[i,s]", 1, "x"), 0x92, 0x01, 0xa1, 'x');
    EMITS(json_pack("{s:n}", "k"), 0x81, 0xa1, 'k', 0xc0);
}

static void test_emit_sizes(void **state)
{
    static const struct { size_t n; unsigned char hdr[5]; size_t hlen; } strs[] = {
        { 31, { 0xbf }, 1 }, { 32, { 0xd9, 32 }, 2 }, { 255, { 0xd9, 0xff }, 2 },
        { 256, { 0xda, 1, 0 }, 3 }, { 65535, { 0xda, 0xff, 0xff }, 3 },
        { 65536, { 0xdb, 0, 1, 0, 0 }, 5 },
    };
    static const struct { size_t n; unsigned char arr[5], map[5]; size_t hlen; } colls[] = {
        { 15, { 0x9f }, { 0x8f }, 1 }, { 16, { 0xdc, 0, 16 }, { 0xde, 0, 16 }, 3 },
        { 65535, { 0xdc, 0xff, 0xff }, { 0xde, 0xff, 0xff }, 3 },
        { 65536, { 0xdd, 0, 1, 0, 0 }, { 0xdf, 0, 1, 0, 0 }, 5 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        json_t *v = str_of(strs[i].n, 'z');
        wbuf_t b;
        emit_to(&b, v);
        assert_int_equal(b.len, strs[i].hlen + strs[i].n);
        assert_memory_equal(b.p, strs[i].hdr, strs[i].hlen);
        wbuf_deinit(&b);
        check_emit(v);
    }
    for (size_t i = 0; i < sizeof colls / sizeof colls[0]; i++) {
        json_t *a = json_array(), *o = json_object();
        wbuf_t b;
        for (size_t k = 0; k < colls[i].n; k++) {
            char key[24];
            snprintf(key, sizeof key, "%zu", k);
            json_array_append_new(a, json_integer((json_int_t)k));
            json_object_set_new(o, key, json_integer((json_int_t)k));
        }
        emit_to(&b, a);
        assert_memory_equal(b.p, colls[i].arr, colls[i].hlen);
        wbuf_deinit(&b);
        emit_to(&b, o);
        assert_memory_equal(b.p, colls[i].map, colls[i].hlen);
        wbuf_deinit(&b);
        check_emit(a);
        check_emit(o);
    }
}

static void test_emit_msgpack_c_reads(void **state)
{
    (void)state;
    check_emit(json_pack("{s:s,s:i,s:s,s:{s:s,s:[i,f,b,n,s]}}", "op", "publish", "id", 4, "channel",
                         "chat:room1", "data", "text", "h\xc3\xa9llo", "list", -5, 0.25, 1, "\xe2\x82\xac"));
    check_emit(json_pack("[I,I,I,I,f,f]", (json_int_t)INT64_MAX, (json_int_t)INT64_MIN, (json_int_t)-33,
                         (json_int_t)200, 1e300, -5e-324));
    check_emit(json_pack("{s:{s:{s:[[[]]]}}}", "a", "b", "c"));
}

/* ---- decoding what msgpack-c packs ---- */

typedef struct { msgpack_sbuffer sb; msgpack_packer pk; } packbuf;

static void pb_init(packbuf *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static json_t *pb_decode(packbuf *p)
{
    json_t *v = dec_ok(p->sb.data, p->sb.size);
    msgpack_sbuffer_destroy(&p->sb);
    return v;
}

static void expect_int(json_t *v, int64_t want)
{
    assert_true(json_is_integer(v));
    if (json_integer_value(v) != want)
        print_error("got %" PRId64 ", want %" PRId64 "\n", (int64_t)json_integer_value(v), want);
    assert_true(json_integer_value(v) == want);
    json_decref(v);
}

#define PACKED_INT(call, want)                                                 \
    do {                                                                       \
        packbuf p_;                                                            \
        pb_init(&p_);                                                          \
        call;                                                                  \
        expect_int(pb_decode(&p_), (want));                                    \
    } while (0)

static void test_decode_ints(void **state)
{
    (void)state;
    PACKED_INT(msgpack_pack_fix_uint8(&p_.pk, 0), 0);
    PACKED_INT(msgpack_pack_fix_uint8(&p_.pk, 255), 255);
    PACKED_INT(msgpack_pack_fix_uint16(&p_.pk, 0), 0);
    PACKED_INT(msgpack_pack_fix_uint16(&p_.pk, 65535), 65535);
    PACKED_INT(msgpack_pack_fix_uint32(&p_.pk, 0), 0);
    PACKED_INT(msgpack_pack_fix_uint32(&p_.pk, UINT32_MAX), UINT32_MAX);
    PACKED_INT(msgpack_pack_fix_uint64(&p_.pk, 0), 0);
    PACKED_INT(msgpack_pack_fix_uint64(&p_.pk, INT64_MAX), INT64_MAX);
    PACKED_INT(msgpack_pack_fix_int8(&p_.pk, INT8_MIN), INT8_MIN);
    PACKED_INT(msgpack_pack_fix_int8(&p_.pk, INT8_MAX), INT8_MAX);
    PACKED_INT(msgpack_pack_fix_int8(&p_.pk, -1), -1);
    PACKED_INT(msgpack_pack_fix_int16(&p_.pk, INT16_MIN), INT16_MIN);
    PACKED_INT(msgpack_pack_fix_int16(&p_.pk, INT16_MAX), INT16_MAX);
    PACKED_INT(msgpack_pack_fix_int16(&p_.pk, -1), -1);
    PACKED_INT(msgpack_pack_fix_int32(&p_.pk, INT32_MIN), INT32_MIN);
    PACKED_INT(msgpack_pack_fix_int32(&p_.pk, INT32_MAX), INT32_MAX);
    PACKED_INT(msgpack_pack_fix_int32(&p_.pk, -1), -1);
    PACKED_INT(msgpack_pack_fix_int64(&p_.pk, INT64_MIN), INT64_MIN);
    PACKED_INT(msgpack_pack_fix_int64(&p_.pk, INT64_MAX), INT64_MAX);
    PACKED_INT(msgpack_pack_fix_int64(&p_.pk, -1), -1);
    /* msgpack-c's own choice of smallest width, positive and negative fixint. */
    for (int64_t v = -40; v <= 140; v++) PACKED_INT(msgpack_pack_int64(&p_.pk, v), v);
    PACKED_INT(msgpack_pack_int64(&p_.pk, INT64_MIN), INT64_MIN);
    PACKED_INT(msgpack_pack_uint64(&p_.pk, (uint64_t)INT64_MAX), INT64_MAX);
    expect_int(DEC_OK(0xe0), -32);
    expect_int(DEC_OK(0xff), -1);
    expect_int(DEC_OK(0x7f), 127);
    /* Non-minimal encodings are still valid MessagePack. */
    expect_int(DEC_OK(0xd0, 0x01), 1);
    expect_int(DEC_OK(0xcd, 0x00, 0x05), 5);
    expect_int(DEC_OK(0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe), -2);
}

static void test_decode_floats(void **state)
{
    packbuf p;
    json_t *v;
    (void)state;

    pb_init(&p);
    msgpack_pack_float(&p.pk, 0.1f);
    v = pb_decode(&p);
    assert_true(json_is_real(v));
    assert_true(json_real_value(v) == (double)0.1f);
    json_decref(v);

    pb_init(&p);
    msgpack_pack_double(&p.pk, 0.1);
    v = pb_decode(&p);
    assert_true(json_is_real(v) && json_real_value(v) == 0.1);
    json_decref(v);

    pb_init(&p);
    msgpack_pack_double(&p.pk, -0.0);
    v = pb_decode(&p);
    assert_true(json_is_real(v) && json_real_value(v) == 0.0 && signbit(json_real_value(v)));
    json_decref(v);

    v = DEC_OK(0xca, 0x3f, 0xc0, 0x00, 0x00);            /* float32 1.5 */
    assert_true(json_is_real(v) && json_real_value(v) == 1.5);
    json_decref(v);
    v = DEC_OK(0xca, 0x00, 0x00, 0x00, 0x01);            /* smallest float32 subnormal */
    assert_true(json_is_real(v) && json_real_value(v) > 0);
    json_decref(v);
    v = DEC_OK(0xcb, 0x00, 0, 0, 0, 0, 0, 0, 0x01);      /* 5e-324 */
    assert_true(json_is_real(v) && json_real_value(v) == 5e-324);
    json_decref(v);
}

static void test_decode_strs_colls(void **state)
{
    packbuf p;
    json_t *v;
    (void)state;

    for (size_t n = 0; n < 100000; n = n < 40 ? n + 1 : n * 3) {
        char *s = malloc(n + 1);
        memset(s, 'q', n);
        pb_init(&p);
        msgpack_pack_str(&p.pk, n);
        msgpack_pack_str_body(&p.pk, s, n);
        v = pb_decode(&p);
        assert_true(json_is_string(v));
        assert_int_equal(json_string_length(v), n);
        assert_memory_equal(json_string_value(v), s, n);
        json_decref(v);
        free(s);
    }
    /* str8/16/32, array16/32 and map16/32 even when a smaller form would do. */
    v = DEC_OK(0xd9, 3, 'a', 'b', 'c');
    assert_string_equal(json_string_value(v), "abc");
    json_decref(v);
    v = DEC_OK(0xda, 0, 3, 'a', 'b', 'c');
    assert_string_equal(json_string_value(v), "abc");
    json_decref(v);
    v = DEC_OK(0xdb, 0, 0, 0, 3, 'a', 'b', 'c');
    assert_string_equal(json_string_value(v), "abc");
    json_decref(v);
    v = DEC_OK(0xdc, 0, 2, 0x01, 0xc0);
    assert_true(json_is_array(v) && json_array_size(v) == 2 && json_is_null(json_array_get(v, 1)));
    json_decref(v);
    v = DEC_OK(0xdd, 0, 0, 0, 2, 0xc2, 0xc3);
    assert_true(json_is_array(v) && json_is_false(json_array_get(v, 0)) && json_is_true(json_array_get(v, 1)));
    json_decref(v);
    v = DEC_OK(0xde, 0, 1, 0xa1, 'k', 0x07);
    assert_int_equal(json_integer_value(json_object_get(v, "k")), 7);
    json_decref(v);
    v = DEC_OK(0xdf, 0, 0, 0, 1, 0xd9, 1, 'k', 0x07);      /* str8 key */
    assert_int_equal(json_integer_value(json_object_get(v, "k")), 7);
    json_decref(v);
    v = DEC_OK(0x81, 0xdb, 0, 0, 0, 1, 'k', 0xc0);         /* str32 key */
    assert_true(json_is_null(json_object_get(v, "k")));
    json_decref(v);
    v = DEC_OK(0xa3, 'a', 0x00, 'b');                      /* NUL inside a value is fine */
    assert_int_equal(json_string_length(v), 3);
    json_decref(v);
    v = DEC_OK(0xa4, 0xf0, 0x9f, 0x98, 0x80);              /* U+1F600 */
    assert_int_equal(json_string_length(v), 4);
    json_decref(v);

    /* Arrays and maps built with msgpack-c at the array16/32 and map16/32 sizes. */
    for (size_t n = 15; n <= 65536; n = n == 15 ? 16 : n == 16 ? 65535 : n + 1) {
        pb_init(&p);
        msgpack_pack_array(&p.pk, n);
        for (size_t i = 0; i < n; i++) msgpack_pack_nil(&p.pk);
        v = pb_decode(&p);
        assert_int_equal(json_array_size(v), n);
        json_decref(v);
        pb_init(&p);
        msgpack_pack_map(&p.pk, n);
        for (size_t i = 0; i < n; i++) {
            char key[16];
            int kl = snprintf(key, sizeof key, "%zu", i);
            msgpack_pack_str(&p.pk, (size_t)kl);
            msgpack_pack_str_body(&p.pk, key, (size_t)kl);
            msgpack_pack_true(&p.pk);
        }
        v = pb_decode(&p);
        assert_int_equal(json_object_size(v), n);
        json_decref(v);
    }

    /* The protocol document's examples (docs/protocol.md §8). */
    v = DEC_OK(0x82, 0xa2, 0x6f, 0x70, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0xa2, 0x69, 0x64, 0x05);
    assert_string_equal(json_string_value(json_object_get(v, "op")), "ping");
    assert_int_equal(json_integer_value(json_object_get(v, "id")), 5);
    json_decref(v);
}

/* ---- refusals ---- */

static void test_refuse_types(void **state)
{
    (void)state;
    DEC_FAILS("bin", 0xc4, 0x01, 0x00);
    DEC_FAILS("bin", 0xc5, 0x00, 0x01, 0x00);
    DEC_FAILS("bin", 0xc6, 0x00, 0x00, 0x00, 0x01, 0x00);
    DEC_FAILS("bin", 0xc4, 0x00);
    DEC_FAILS("ext", 0xc7, 0x01, 0x05, 0x00);
    DEC_FAILS("ext", 0xc8, 0x00, 0x01, 0x05, 0x00);
    DEC_FAILS("ext", 0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 0x00);
    DEC_FAILS("ext", 0xd4, 0x05, 0x00);
    DEC_FAILS("ext", 0xd5, 0x05, 0x00, 0x00);
    DEC_FAILS("ext", 0xd6, 0x05, 0, 0, 0, 0);
    DEC_FAILS("ext", 0xd7, 0x05, 0, 0, 0, 0, 0, 0, 0, 0);
    DEC_FAILS("ext", 0xd8, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    DEC_FAILS("ext", 0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0);   /* the timestamp ext */
    DEC_FAILS("0xc1", 0xc1);
    DEC_FAILS("bin", 0x91, 0xc4, 0x00);                     /* nested */
    DEC_FAILS("bin", 0x81, 0xa1, 'd', 0xc4, 0x00);
}

static void test_refuse_values(void **state)
{
    (void)state;
    DEC_FAILS("int64", 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0);
    DEC_FAILS("int64", 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    DEC_FAILS("NaN", 0xca, 0x7f, 0xc0, 0x00, 0x00);
    DEC_FAILS("NaN", 0xca, 0x7f, 0x80, 0x00, 0x00);          /* +inf float32 */
    DEC_FAILS("NaN", 0xca, 0xff, 0x80, 0x00, 0x00);          /* -inf float32 */
    DEC_FAILS("NaN", 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0);
    DEC_FAILS("NaN", 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0);
    DEC_FAILS("NaN", 0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0);
    DEC_FAILS("NaN", 0xcb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    DEC_FAILS("UTF-8", 0xa1, 0xff);
    DEC_FAILS("UTF-8", 0xa1, 0x80);
    DEC_FAILS("UTF-8", 0xa2, 0xc0, 0xaf);                    /* overlong */
    DEC_FAILS("UTF-8", 0xa3, 0xed, 0xa0, 0x80);              /* surrogate */
    DEC_FAILS("UTF-8", 0xa4, 0xf4, 0x90, 0x80, 0x80);        /* > U+10FFFF */
    DEC_FAILS("UTF-8", 0xa2, 0xe2, 0x82);                    /* cut sequence */
    DEC_FAILS("UTF-8", 0x81, 0xa1, 0xff, 0x01);              /* as a key */
    DEC_FAILS("UTF-8", 0xd9, 0x01, 0xfe);
}

static void test_refuse_keys(void **state)
{
    (void)state;
    DEC_FAILS("not a string", 0x81, 0x01, 0x01);
    DEC_FAILS("not a string", 0x81, 0xc0, 0x01);
    DEC_FAILS("not a string", 0x81, 0xc3, 0x01);
    DEC_FAILS("not a string", 0x81, 0x91, 0x01, 0x01);
    DEC_FAILS("not a string", 0x81, 0x80, 0x01);
    DEC_FAILS("not a string", 0x81, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x01);
    DEC_FAILS("not a string", 0x81, 0xc4, 0x01, 'a', 0x01);  /* bin key */
    DEC_FAILS("duplicate", 0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02);
    DEC_FAILS("duplicate", 0x82, 0xa1, 'a', 0x01, 0xd9, 0x01, 'a', 0x02);   /* same key, other width */
    DEC_FAILS("duplicate", 0x91, 0x83, 0xa1, 'a', 0xc0, 0xa1, 'b', 0xc0, 0xa1, 'a', 0xc0);
    DEC_FAILS("NUL", 0x81, 0xa3, 'a', 0x00, 'b', 0x01);
    json_decref(DEC_OK(0x82, 0xa1, 'a', 0x01, 0xa2, 'a', 'a', 0x02));       /* prefix keys differ */
}

static void test_truncated_and_trailing(void **state)
{
    json_t *v = json_pack("{s:s,s:I,s:s,s:{s:[i,I,f,s,b,n,{s:i}],s:s}}", "op", "publish", "id",
                          (json_int_t)1234567890123LL, "channel", "orders:1234#alice", "data", "list", 1,
                          (json_int_t)-70000, 3.25, "\xc3\xa9t\xc3\xa9", 1, "k", -1, "long",
                          "0123456789012345678901234567890123456789");
    unsigned char *more;
    wbuf_t b;
    (void)state;

    emit_to(&b, v);
    for (size_t cut = 0; cut < b.len; cut++) dec_fails_why(b.p, cut, NULL);
    json_decref(dec_ok(b.p, b.len));
    more = malloc(b.len + 1);
    memcpy(more, b.p, b.len);
    more[b.len] = 0xc0;
    dec_fails_why(more, b.len + 1, "trailing");
    free(more);
    wbuf_deinit(&b);
    json_decref(v);

    DEC_FAILS("trailing", 0xc0, 0xc0);
    DEC_FAILS("trailing", 0x90, 0x00);
    DEC_FAILS("truncated", 0xcd, 0x01);
    DEC_FAILS("truncated", 0xd9);
    DEC_FAILS("truncated", 0xa5, 'a', 'b');
    dec_fails_why("", 0, "truncated");
}

/* Counting allocator: a lying header must be refused before anything is built. */
static size_t n_allocs;
static void *count_malloc(size_t n) { n_allocs++; return malloc(n); }

static void test_huge_counts(void **state)
{
    (void)state;
    json_set_alloc_funcs(count_malloc, free);
    n_allocs = 0;
    DEC_FAILS("exceeds", 0xdd, 0xff, 0xff, 0xff, 0xff);
    DEC_FAILS("exceeds", 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0);
    DEC_FAILS("exceeds", 0xdc, 0xff, 0xff, 0xc0);
    DEC_FAILS("exceeds", 0xdf, 0xff, 0xff, 0xff, 0xff);
    DEC_FAILS("exceeds", 0xde, 0xff, 0xff, 0xa1, 'a', 0xc0);
    DEC_FAILS("exceeds", 0x82, 0xa1, 'a', 0xc0);            /* fixmap of 2 with 3 bytes */
    DEC_FAILS("truncated", 0xdb, 0xff, 0xff, 0xff, 0xff, 'a');
    DEC_FAILS("truncated", 0xda, 0xff, 0xff, 'a');
    assert_int_equal(n_allocs, 0);
    /* Nested: only the outer containers are built. */
    DEC_FAILS("exceeds", 0x91, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0);
    assert_true(n_allocs <= 4);
    json_set_alloc_funcs(malloc, free);
}

static void test_nesting(void **state)
{
    unsigned char buf[4 * (PROTO_MAX_DEPTH + 2)];
    size_t n;
    json_t *v;
    (void)state;

    for (int depth = PROTO_MAX_DEPTH; depth <= PROTO_MAX_DEPTH + 1; depth++) {
        memset(buf, 0x91, (size_t)depth);
        buf[depth] = 0xc0;
        if (depth == PROTO_MAX_DEPTH) json_decref(dec_ok(buf, (size_t)depth + 1));
        else dec_fails_why(buf, (size_t)depth + 1, "deep");

        n = 0;
        for (int i = 0; i < depth; i++) { buf[n++] = 0x81; buf[n++] = 0xa1; buf[n++] = 'a'; }
        buf[n++] = 0x01;
        if (depth == PROTO_MAX_DEPTH) json_decref(dec_ok(buf, n));
        else dec_fails_why(buf, n, "deep");
    }
    /* An empty container at the limit counts as a level too. */
    memset(buf, 0x91, PROTO_MAX_DEPTH);
    buf[PROTO_MAX_DEPTH] = 0x90;
    dec_fails_why(buf, PROTO_MAX_DEPTH + 1, "deep");
    memset(buf, 0x91, PROTO_MAX_DEPTH - 1);
    buf[PROTO_MAX_DEPTH - 1] = 0x90;
    v = dec_ok(buf, PROTO_MAX_DEPTH);
    assert_true(json_depth_ok(v, PROTO_MAX_DEPTH));
    json_decref(v);
}

static void test_put_primitives(void **state)
{
    wbuf_t b;
    (void)state;

    wbuf_init(&b);
    mpack_put_uint(&b, UINT64_MAX);
    mpack_put_map(&b, 70000);
    mpack_put_array(&b, 15);
    mpack_put_bool(&b, 0);
    mpack_put_nil(&b);
    mpack_put_double(&b, 2.0);
    {
        static const unsigned char want[] = {
            0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xdf, 0x00, 0x01, 0x11, 0x70,
            0x9f, 0xc2, 0xc0,
            0xcb, 0x40, 0x00, 0, 0, 0, 0, 0, 0,
        };
        assert_bytes_equal(b.p, b.len, want, sizeof want);
    }
    wbuf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emit_ints),
        cmocka_unit_test(test_emit_other),
        cmocka_unit_test(test_emit_sizes),
        cmocka_unit_test(test_emit_msgpack_c_reads),
        cmocka_unit_test(test_decode_ints),
        cmocka_unit_test(test_decode_floats),
        cmocka_unit_test(test_decode_strs_colls),
        cmocka_unit_test(test_refuse_types),
        cmocka_unit_test(test_refuse_values),
        cmocka_unit_test(test_refuse_keys),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_put_primitives),
    };
    return cmocka_run_group_tests_name("mpack", tests, NULL, NULL);
}
