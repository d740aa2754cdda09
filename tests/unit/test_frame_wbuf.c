/* tests/unit/test_frame_wbuf.c - protocol/frame.c (refcounted shared frames
 * with LWS_PRE headroom) and protocol/wbuf.c (growth, sticky out-of-memory). */
#include "unit.h"

#include "net/frame.h"
#include "wbuf.h"

static void test_frame_new(void **state)
{
    char payload[] = "{\"op\":\"pub\"}";
    frame_t *f;
    (void)state;

    assert_int_equal(FRAME_HEADROOM, LWS_PRE);
    f = frame_new(payload, strlen(payload));
    assert_non_null(f);
    assert_int_equal(f->refs, 1);
    assert_int_equal(f->len, strlen(payload));
    assert_ptr_equal(frame_payload(f), f->buf + FRAME_HEADROOM);
    assert_memory_equal(frame_payload(f), payload, strlen(payload));
    /* A copy: changing the source does not change the frame. */
    payload[0] = 'X';
    assert_int_equal(frame_payload(f)[0], '{');
    /* The headroom is ours to write (lws puts the WebSocket header there). */
    memset(f->buf, 0xaa, FRAME_HEADROOM);
    assert_int_equal(frame_payload(f)[0], '{');
    assert_null(frame_unref(f));
}

static void test_frame_refs(void **state)
{
    frame_t *f = frame_new("abc", 3), *g;
    (void)state;

    assert_non_null(f);
    g = frame_ref(f);
    assert_ptr_equal(g, f);
    assert_int_equal(f->refs, 2);
    frame_ref(f);
    assert_int_equal(f->refs, 3);
    assert_null(frame_unref(f));
    assert_int_equal(f->refs, 2);
    assert_null(frame_unref(f));
    assert_int_equal(f->refs, 1);
    assert_null(frame_unref(f));            /* freed here; ASan checks no leak and no reuse */
    assert_null(frame_unref(NULL));
}

static void test_frame_empty_and_big(void **state)
{
    size_t n = 1 << 20;
    unsigned char *big = malloc(n);
    frame_t *f;
    (void)state;

    f = frame_new("", 0);
    assert_non_null(f);
    assert_int_equal(f->len, 0);
    frame_unref(f);
    for (size_t i = 0; i < n; i++) big[i] = (unsigned char)(i * 31);
    f = frame_new(big, n);
    assert_non_null(f);
    assert_int_equal(f->len, n);
    assert_memory_equal(frame_payload(f), big, n);
    frame_unref(f);
    free(big);
}

static void test_wbuf_growth(void **state)
{
    wbuf_t b;
    size_t total = 0;
    (void)state;

    wbuf_init(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.oom, 0);

    wbuf_putc(&b, 'a');
    assert_int_equal(b.len, 1);
    assert_true(b.cap >= 1);
    for (int i = 0; i < 10000; i++) {
        char tmp[32];
        int n = snprintf(tmp, sizeof tmp, "<%d>", i);
        wbuf_put(&b, tmp, (size_t)n);
        total += (size_t)n;
        assert_true(b.cap >= b.len);
        assert_int_equal(b.cap & (b.cap - 1), 0);    /* doubling from a power of two */
    }
    assert_int_equal(b.len, 1 + total);
    assert_memory_equal(b.p, "a<0><1><2>", 10);
    assert_memory_equal(b.p + b.len - 6, "<9999>", 6);

    /* One large write grows in one step. */
    {
        size_t before = b.len;
        char *big = malloc(1 << 20);
        memset(big, 'z', 1 << 20);
        wbuf_put(&b, big, 1 << 20);
        assert_int_equal(b.len, before + (1 << 20));
        assert_int_equal(b.p[b.len - 1], 'z');
        free(big);
    }

    /* reset keeps the memory. */
    {
        unsigned char *p = b.p;
        size_t cap = b.cap;
        wbuf_reset(&b);
        assert_int_equal(b.len, 0);
        assert_ptr_equal(b.p, p);
        assert_int_equal(b.cap, cap);
    }
    wbuf_printf(&b, "%s=%d;", "x", 42);
    wbuf_printf(&b, "%05.1f", 2.5);
    wbuf_put(&b, "!", strlen("!"));
    assert_bytes_equal(b.p, b.len, "x=42;002.5!", 11);
    wbuf_deinit(&b);
    assert_null(b.p);
    assert_int_equal(b.cap, 0);
}

static void test_wbuf_reserve(void **state)
{
    wbuf_t b;
    (void)state;

    wbuf_init(&b);
    assert_int_equal(wbuf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1000);
    assert_int_equal(b.len, 0);
    assert_int_equal(wbuf_reserve(&b, 0), 0);
    wbuf_deinit(&b);
}

static void test_wbuf_oom_sticky(void **state)
{
    wbuf_t b;
    unsigned char *p;
    size_t cap;
    (void)state;

    wbuf_init(&b);
    wbuf_put(&b, "hello", strlen("hello"));
    p = b.p;
    cap = b.cap;

    /* A request no allocator can meet fails without touching the contents. */
    assert_int_equal(wbuf_reserve(&b, SIZE_MAX - 8), -1);
    assert_int_equal(b.oom, 1);
    assert_int_equal(b.len, 5);
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.cap, cap);

    /* Sticky: every later write is ignored, even ones that would fit. */
    wbuf_putc(&b, '!');
    wbuf_put(&b, "abc", 3);
    wbuf_put(&b, "xyz", strlen("xyz"));
    wbuf_printf(&b, "%d", 12345);
    assert_int_equal(b.len, 5);
    assert_int_equal(b.oom, 1);
    assert_int_equal(wbuf_reserve(&b, 1), -1);
    assert_int_equal(wbuf_grow(&b, 1), -1);
    assert_memory_equal(b.p, "hello", 5);

    /* reset clears it and the buffer works again. */
    wbuf_reset(&b);
    assert_int_equal(b.oom, 0);
    wbuf_put(&b, "ok", strlen("ok"));
    assert_bytes_equal(b.p, b.len, "ok", 2);

    /* The overflow guard in wbuf_grow: len + n wrapping around. */
    assert_int_equal(wbuf_grow(&b, SIZE_MAX), -1);
    assert_int_equal(b.oom, 1);
    wbuf_deinit(&b);
    assert_int_equal(b.oom, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_new),
        cmocka_unit_test(test_frame_refs),
        cmocka_unit_test(test_frame_empty_and_big),
        cmocka_unit_test(test_wbuf_growth),
        cmocka_unit_test(test_wbuf_reserve),
        cmocka_unit_test(test_wbuf_oom_sticky),
    };
    return cmocka_run_group_tests_name("frame_wbuf", tests, NULL, NULL);
}
