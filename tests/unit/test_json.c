/* tests/unit/test_json.c - protocol/json.c: parsing, emitting, escaping,
 * shortest round-trip reals, integer range, depth limit, refusals. */
#include "unit.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>

#include "json.h"

static json_t *decode_ok(const char *text)
{
    char reason[PROTO_REASON_MAX] = "";
    json_t *v = NULL;
    int r = json_decode(text, strlen(text), &v, reason);
    if (r) print_error("json_decode(%s) failed: %s\n", text, reason);
    assert_int_equal(r, 0);
    assert_non_null(v);
    return v;
}

static void decode_fails(const void *text, size_t len)
{
    char reason[PROTO_REASON_MAX];
    json_t *v = NULL;

    memset(reason, 0, sizeof reason);
    if (json_decode(text, len, &v, reason) == 0) {
        print_error("json_decode(%.*s) should fail\n", (int)len, (const char *)text);
        json_decref(v);
        fail();
    }
    assert_null(v);
    assert_true(reason[0] != '\0');
    assert_true(strlen(reason) < PROTO_REASON_MAX);
}

/* Emits @v and returns the text as a new NUL-terminated string. */
static char *emit(const json_t *v)
{
    wbuf_t b;
    char *s;

    wbuf_init(&b);
    json_emit(&b, v);
    assert_false(b.oom);
    s = malloc(b.len + 1);
    assert_non_null(s);
    memcpy(s, b.p, b.len);
    s[b.len] = '\0';
    wbuf_deinit(&b);
    return s;
}

static char *emit_real(double d)
{
    json_t *v = json_real(d);
    char *s;
    assert_non_null(v);
    s = emit(v);
    json_decref(v);
    return s;
}

/* decode(text) -> emit -> must give @want exactly -> decode -> equal. */
static void round_trip(const char *text, const char *want)
{
    json_t *v = decode_ok(text), *v2;
    char *out = emit(v);

    if (strcmp(out, want)) print_error("emit(%s) = %s, want %s\n", text, out, want);
    assert_string_equal(out, want);
    v2 = decode_ok(out);
    assert_true(json_equal(v, v2));
    json_decref(v2);
    json_decref(v);
    free(out);
}

static void test_round_trips(void **state)
{
    (void)state;
    round_trip("null", "null");
    round_trip("true", "true");
    round_trip("false", "false");
    round_trip("0", "0");
    round_trip("-17", "-17");
    round_trip("\"\"", "\"\"");
    round_trip("[]", "[]");
    round_trip("{}", "{}");
    round_trip(" [ 1 , 2 ,\n3 ] ", "[1,2,3]");
    round_trip("{\"op\":\"publish\",\"id\":4,\"channel\":\"chat:room1\",\"data\":{\"text\":\"hello\"}}",
               "{\"op\":\"publish\",\"id\":4,\"channel\":\"chat:room1\",\"data\":{\"text\":\"hello\"}}");
    round_trip("{\"a\":[1,2.5,\"x\",null,true,false,{\"b\":[]}]}",
               "{\"a\":[1,2.5,\"x\",null,true,false,{\"b\":[]}]}");
    round_trip("1.5e3", "1500.0");
    round_trip("1E2", "100.0");
}

static void test_integers(void **state)
{
    json_t *v;
    (void)state;

    round_trip("9223372036854775807", "9223372036854775807");
    round_trip("-9223372036854775808", "-9223372036854775808");
    v = decode_ok("[9223372036854775807,-9223372036854775808]");
    assert_true(json_is_integer(json_array_get(v, 0)));
    assert_int_equal(json_integer_value(json_array_get(v, 0)), INT64_MAX);
    assert_int_equal(json_integer_value(json_array_get(v, 1)), INT64_MIN);
    json_decref(v);

    decode_fails("9223372036854775808", 19);
    decode_fails("-9223372036854775809", 20);
    decode_fails("18446744073709551616", 20);
    decode_fails("[99999999999999999999999]", 25);
}

static void test_escaping(void **state)
{
    static const char in[] = "a\"b\\c/\n\r\t\b\f\x01\x1f\x7f";
    wbuf_t b;
    json_t *v;
    char *out;
    (void)state;

    wbuf_init(&b);
    json_emit_str(&b, in, sizeof in - 1);
    assert_bytes_equal(b.p, b.len, "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"",
                       strlen("\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\""));
    wbuf_deinit(&b);

    /* Every control character comes out escaped and reads back. */
    for (int c = 0; c < 0x20; c++) {
        char s[3] = { 'x', (char)c, 'y' };
        json_t *back;
        wbuf_init(&b);
        json_emit_str(&b, s, 3);
        for (size_t i = 0; i < b.len; i++) assert_true(b.p[i] >= 0x20);
        assert_null(memchr(b.p, '\n', b.len));
        back = NULL;
        {
            char reason[PROTO_REASON_MAX];
            assert_int_equal(json_decode(b.p, b.len, &back, reason), 0);
        }
        assert_int_equal(json_string_length(back), 3);
        assert_memory_equal(json_string_value(back), s, 3);
        json_decref(back);
        wbuf_deinit(&b);
    }

    /* NUL inside a string value: decoded (JSON_ALLOW_NUL) and re-escaped. */
    v = decode_ok("\"a\\u0000b\"");
    assert_int_equal(json_string_length(v), 3);
    assert_memory_equal(json_string_value(v), "a\0b", 3);
    out = emit(v);
    assert_string_equal(out, "\"a\\u0000b\"");
    free(out);
    json_decref(v);

    /* Escapes in the input come out in the short forms. */
    round_trip("\"\\u0041\\/\\n\\u000a\\\"\"", "\"A/\\n\\n\\\"\"");
}

static void test_unicode_passthrough(void **state)
{
    (void)state;
    /* é € U+1F600 raw UTF-8 pass through unchanged; escaped ones come out raw. */
    round_trip("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    round_trip("\"\\u00e9\\u20ac\\ud83d\\ude00\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    round_trip("{\"\xc3\xbc\":\"\xe2\x80\xa8\"}", "{\"\xc3\xbc\":\"\xe2\x80\xa8\"}");
}

static void expect_real(double d, const char *want)
{
    char *s = emit_real(d), got[64];

    /* Copied out and freed first, so a failing check leaks nothing. */
    snprintf(got, sizeof got, "%s", s);
    free(s);
    if (strcmp(got, want)) print_error("json_emit_real(%.17g) = %s, want %s\n", d, got, want);
    assert_string_equal(got, want);
}

static void test_real_fixed(void **state)
{
    (void)state;
    expect_real(0.1, "0.1");
    expect_real(2.0, "2.0");
    expect_real(-2.0, "-2.0");
    expect_real(0.0, "0.0");
    expect_real(-0.0, "-0.0");
    expect_real(1e300, "1e+300");
    expect_real(1.5, "1.5");
    expect_real(100.0, "100.0");
    expect_real(0.1 + 0.2, "0.30000000000000004");            /* 17 digits */
    expect_real(1.0 / 3.0, "0.3333333333333333");             /* 16 digits */
    expect_real(DBL_MAX, "1.7976931348623157e+308");
    expect_real(DBL_MIN, "2.2250738585072014e-308");
    expect_real(9007199254740993.0, "9007199254740992.0");     /* 2^53 + 1 rounds to 2^53 */
}

/* The smallest subnormals read back from far fewer than 15 digits; the
 * protocol (docs/protocol.md §2.2) promises the shortest form. */
static void test_real_subnormal_shortest(void **state)
{
    (void)state;
    expect_real(5e-324, "5e-324");
    expect_real(1e-320, "1e-320");
    expect_real(-5e-324, "-5e-324");
}

/* Significant digits of a %g-style number: sign, point, exponent, leading and
 * trailing zeros do not count. */
static int sig_digits(const char *s)
{
    char d[64];
    size_t n = 0, start = 0;

    for (; *s && *s != 'e' && *s != 'E'; s++)
        if (*s >= '0' && *s <= '9') d[n++] = *s;
    while (start < n && d[start] == '0') start++;
    while (n > start && d[n - 1] == '0') n--;
    return n > start ? (int)(n - start) : 1;
}

static int shortest_digits(double d)
{
    char tmp[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, d);
        if (strtod(tmp, NULL) == d) return sig_digits(tmp);
    }
    return 17;
}

/* One random double per bit pattern: emitted text reads back bit-identical,
 * stays a real, and (for normal numbers) uses the fewest digits possible. */
static void test_real_random(void **state)
{
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    int n = 0, not_shortest = 0;
    (void)state;

    while (n < 200000) {
        uint64_t bits = test_rand(&rng);
        char reason[PROTO_REASON_MAX];
        json_t *v = NULL;
        double d, back;
        char *s;

        /* Half of the samples from "ordinary" magnitudes, which random bit
         * patterns rarely hit. */
        if (n & 1) bits = (bits & 0x800fffffffffffffULL) | ((uint64_t)(1023 - 40 + (int)(bits >> 52 & 63)) << 52);
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        n++;
        s = emit_real(d);
        if (json_decode(s, strlen(s), &v, reason)) {
            print_error("emitted %s for %a does not parse: %s\n", s, d, reason);
            fail();
        }
        if (!json_is_real(v)) { print_error("%s reads back as a non-real\n", s); fail(); }
        back = json_real_value(v);
        if (memcmp(&back, &d, sizeof d)) {
            print_error("%a emitted as %s reads back as %a\n", d, s, back);
            fail();
        }
        if (fpclassify(d) == FP_NORMAL || d == 0) {
            if (sig_digits(s) != shortest_digits(d)) {
                if (not_shortest++ < 5)
                    print_error("%a emitted as %s: %d digits, %d suffice\n", d, s, sig_digits(s),
                                shortest_digits(d));
            }
        }
        json_decref(v);
        free(s);
    }
    assert_int_equal(not_shortest, 0);
}

static void nested(char *buf, int depth, char open, char close)
{
    memset(buf, open, (size_t)depth);
    memset(buf + depth, close, (size_t)depth);
    buf[2 * depth] = '\0';
}

static void test_depth(void **state)
{
    char buf[2 * (PROTO_MAX_DEPTH + 2) + 16];
    json_t *v;
    (void)state;

    nested(buf, PROTO_MAX_DEPTH, '[', ']');
    v = decode_ok(buf);
    json_decref(v);
    nested(buf, PROTO_MAX_DEPTH + 1, '[', ']');
    decode_fails(buf, strlen(buf));

    /* Objects count the same: {"a":{"a":...{}}} */
    {
        char obj[PROTO_MAX_DEPTH * 8 + 16];
        for (int depth = PROTO_MAX_DEPTH; depth <= PROTO_MAX_DEPTH + 1; depth++) {
            size_t n = 0;
            for (int i = 0; i < depth - 1; i++) { memcpy(obj + n, "{\"a\":", 5); n += 5; }
            memcpy(obj + n, "{}", 2);
            n += 2;
            for (int i = 0; i < depth - 1; i++) obj[n++] = '}';
            obj[n] = '\0';
            if (depth == PROTO_MAX_DEPTH) json_decref(decode_ok(obj));
            else decode_fails(obj, n);
        }
    }
    assert_true(json_depth_ok(json_null(), 0));
}

static void test_refusals(void **state)
{
    static const char *bad[] = {
        "", " ", "{", "}", "[1,]", "[1 2]", "{\"a\"}", "{\"a\":}", "{'a':1}", "{a:1}", "nul", "tru",
        "01", "1.", ".5", "-", "+1", "1e", "NaN", "Infinity", "-Infinity", "1e999", "-1e999",
        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00x\"", "[1] 2", "{} {}", "//x\n1",
        "\"tab\there\"", "[\"\x01\"]", "{\"a\":1,}", "{\"\\u0000\":1}",
    };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) decode_fails(bad[i], strlen(bad[i]));
    /* Invalid UTF-8: a lone continuation byte, an overlong '/', a UTF-16 surrogate, > U+10FFFF. */
    decode_fails("\"\x80\"", 3);
    decode_fails("\"\xc0\xaf\"", 4);
    decode_fails("\"\xed\xa0\x80\"", 5);
    decode_fails("\"\xf4\x90\x80\x80\"", 6);
    decode_fails("\"\xff\"", 3);
    /* A raw NUL outside a string, and one after a complete value. */
    decode_fails("[0,\0]", 5);
    decode_fails("{}\0", 3);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    decode_fails("{\"a\":1,\"a\":2}", 13);
    decode_fails("{\"a\":1,\"b\":{\"c\":1,\"c\":1}}", 25);
    decode_fails("{\"\\u0061\":1,\"a\":2}", 18);   /* same key, once escaped */
    json_decref(decode_ok("{\"a\":1,\"b\":{\"a\":2}}"));   /* same key, different objects */
}

static void test_depth_ok(void **state)
{
    json_t *v = decode_ok("[[[1]],{\"a\":[]}]");
    (void)state;
    assert_true(json_depth_ok(v, 3));
    assert_false(json_depth_ok(v, 2));
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_unicode_passthrough),
        cmocka_unit_test(test_real_fixed),
        cmocka_unit_test(test_real_subnormal_shortest),
        cmocka_unit_test(test_real_random),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_depth_ok),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
