/* tests/unit/test_chname.c - protocol/chname.c against docs/protocol.md §5. */
#include "unit.h"

#include "chname.h"

static int valid(const char *s) { return chname_valid(s, strlen(s), NULL); }

static void expect_invalid(const char *s, size_t len)
{
    const char *why = NULL;
    assert_int_equal(chname_valid(s, len, &why), 0);
    assert_non_null(why);
    assert_true(why[0] != '\0');
}

static void test_doc_examples(void **state)
{
    static const char *ok[] = {
        "news", "chat:room1", "dm:alice,bob", "orders:1234#alice", "seats:event-9/section-a",
        "scores:game-7", "orders:1234", "a", "A_b-c.d", "x:y:z", "ns:a:", "user@host", "k=v", "~home",
        "a/b/c", "ns_1-x:rest", "0",
    };
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (!valid(ok[i])) print_error("%s should be valid\n", ok[i]);
        assert_true(valid(ok[i]));
    }
    expect_invalid("", 0);
    expect_invalid("chat room", 9);
    expect_invalid(":x", 2);
    expect_invalid("chat:", 5);
    expect_invalid("\xc3\xbcn\xc3\xaf", 6);
    expect_invalid(":", 1);
    expect_invalid("::", 2);
}

/* Every byte value, alone and after a namespace. */
static void test_every_byte(void **state)
{
    const char *allowed_name = "_-.:@,#=/~";
    (void)state;

    for (int c = 0; c < 256; c++) {
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        int in_name = alnum || (c && strchr(allowed_name, c));
        int in_ns = alnum || c == '_' || c == '-';
        char s[8];

        /* "a<c>b": no namespace unless c is ':' (then "a:b", valid). */
        s[0] = 'a'; s[1] = (char)c; s[2] = 'b';
        assert_int_equal(chname_valid(s, 3, NULL), in_name);
        if (!in_name) expect_invalid(s, 3);
        /* "ns:a<c>": c in the rest. */
        memcpy(s, "ns:a", 4); s[4] = (char)c;
        assert_int_equal(chname_valid(s, 5, NULL), in_name);
        /* "a<c>:x": c in the namespace. */
        s[0] = 'a'; s[1] = (char)c; s[2] = ':'; s[3] = 'x';
        if (c == ':') assert_int_equal(chname_valid(s, 4, NULL), 1);   /* "a::x": ns "a", rest ":x" */
        else assert_int_equal(chname_valid(s, 4, NULL), in_ns);
        if (!in_ns && c != ':') expect_invalid(s, 4);
    }
}

static void test_each_punctuation(void **state)
{
    const char *punct = "_-.@,#=/~";
    char s[16];
    (void)state;
    for (const char *p = punct; *p; p++) {
        snprintf(s, sizeof s, "x%cy", *p);
        assert_true(valid(s));
        snprintf(s, sizeof s, "%c", *p);
        assert_true(valid(s));
        snprintf(s, sizeof s, "ns:%c", *p);
        assert_true(valid(s));
        snprintf(s, sizeof s, "n%c:r", *p);
        assert_int_equal(valid(s), *p == '_' || *p == '-');
        snprintf(s, sizeof s, "%c:r", *p);
        assert_int_equal(valid(s), *p == '_' || *p == '-');
    }
}

static void test_lengths(void **state)
{
    char buf[CHNAME_MAX + 8];
    (void)state;

    memset(buf, 'a', sizeof buf);
    assert_true(chname_valid(buf, 1, NULL));
    assert_true(chname_valid(buf, CHNAME_MAX, NULL));
    assert_int_equal(CHNAME_MAX, 255);
    expect_invalid(buf, CHNAME_MAX + 1);
    expect_invalid(buf, CHNAME_MAX + 7);

    /* Namespace of 64 ok, 65 refused; with the total at 255 and 256. */
    assert_int_equal(CHNAME_NS_MAX, 64);
    buf[64] = ':';
    assert_true(chname_valid(buf, 66, NULL));
    assert_true(chname_valid(buf, CHNAME_MAX, NULL));
    expect_invalid(buf, CHNAME_MAX + 1);
    assert_int_equal(chname_namespace(buf, 66), 64);
    buf[64] = 'a';
    buf[65] = ':';
    expect_invalid(buf, 67);
    buf[65] = 'a';
    buf[0] = ':';
    expect_invalid(buf, 10);
    /* The name may be 254 bytes after a one-byte namespace. */
    memset(buf, 'b', sizeof buf);
    buf[1] = ':';
    assert_true(chname_valid(buf, CHNAME_MAX, NULL));
    assert_int_equal(chname_namespace(buf, CHNAME_MAX), 1);
}

static void test_nul_and_non_ascii(void **state)
{
    (void)state;
    expect_invalid("ab\0cd", 5);
    expect_invalid("\0", 1);
    expect_invalid("ns:a\0", 5);
    expect_invalid("n\0s:a", 5);
    expect_invalid("caf\xc3\xa9", 5);
    expect_invalid("\x7f", 1);
    expect_invalid("\xff", 1);
    expect_invalid("ns:\x80", 4);
    expect_invalid("tab\there", 8);
    expect_invalid("nl\n", 3);
    /* The length is what counts, not a terminating NUL: a prefix is valid. */
    assert_true(chname_valid("abc def", 3, NULL));
}

static void test_reasons_differ(void **state)
{
    const char *w1 = NULL, *w2 = NULL, *w3 = NULL, *w4 = NULL, *w5 = NULL;
    char big[300];
    (void)state;

    memset(big, 'a', sizeof big);
    assert_false(chname_valid("", 0, &w1));
    assert_false(chname_valid(big, 256, &w2));
    assert_false(chname_valid("a b", 3, &w3));
    assert_false(chname_valid(":x", 2, &w4));
    assert_false(chname_valid("x:", 2, &w5));
    assert_true(w1 && w2 && w3 && w4 && w5);
    assert_string_not_equal(w1, w2);
    assert_string_not_equal(w3, w4);
    assert_string_not_equal(w4, w5);
    /* A valid name leaves @why alone. */
    w1 = "untouched";
    assert_true(chname_valid("ok", 2, &w1));
    assert_string_equal(w1, "untouched");
}

static void test_namespace(void **state)
{
    (void)state;
    assert_int_equal(chname_namespace("news", 4), 0);
    assert_int_equal(chname_namespace("chat:room1", 10), 4);
    assert_int_equal(chname_namespace("a:b:c", 5), 1);
    assert_int_equal(chname_namespace("", 0), 0);
    /* Only the first @len bytes are looked at. */
    assert_int_equal(chname_namespace("abc:d", 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_examples),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_each_punctuation),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_nul_and_non_ascii),
        cmocka_unit_test(test_reasons_differ),
        cmocka_unit_test(test_namespace),
    };
    return cmocka_run_group_tests_name("chname", tests, NULL, NULL);
}
