/* tests/unit/test_coalesce.c - the write gap sized to the cost of writes
 * (sess_coalesce_need_ms(), net/session.h): the gap at which every writer
 * writing once per gap keeps the flush passes within SESS_WRITE_SHARE
 * percent of the loop. How the broker uses it under load is tested end to
 * end in tests/e2e/test_batched_sends.py. */
#include "unit.h"

#include "net/session.h"

static void test_need_fits_the_share(void **state)
{
    (void)state;
    assert_int_equal(SESS_WRITE_SHARE, 50);
    /* 10,000 readers at 8 us a write: 80 ms of writing per round, which is
     * half of a 160 ms gap. */
    assert_int_equal(sess_coalesce_need_ms(10000, 8000), 160);
    /* 1,000 readers at 10 us: 20 ms. */
    assert_int_equal(sess_coalesce_need_ms(1000, 10000), 20);
    /* At the gap found, the writes take exactly the share or a little less. */
    for (uint64_t w = 1; w < 100000; w = w * 3 + 1)
        for (uint64_t c = 100; c < 200000; c = c * 5 + 3) {
            uint64_t ms = sess_coalesce_need_ms(w, c);
            assert_true(w * c * 100 <= ms * 1000000 * SESS_WRITE_SHARE);
            assert_true(ms == 0 || w * c * 100 > (ms - 1) * 1000000 * SESS_WRITE_SHARE);
        }
}

static void test_need_edges(void **state)
{
    (void)state;
    /* Nobody wrote, or nothing measured yet: no gap needed. */
    assert_int_equal(sess_coalesce_need_ms(0, 8000), 0);
    assert_int_equal(sess_coalesce_need_ms(5000, 0), 0);
    /* Any cost at all rounds up to a whole millisecond. */
    assert_int_equal(sess_coalesce_need_ms(1, 1), 1);
    /* Absurd figures saturate instead of wrapping to a short gap. */
    assert_int_equal(sess_coalesce_need_ms(1ull << 40, 1ull << 20), UINT32_MAX);
    assert_int_equal(sess_coalesce_need_ms(1ull << 44, 1ull << 20), UINT32_MAX);
    assert_int_equal(sess_coalesce_need_ms(UINT64_MAX, UINT64_MAX), UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_need_fits_the_share),
        cmocka_unit_test(test_need_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
