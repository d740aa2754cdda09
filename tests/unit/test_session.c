/* tests/unit/test_session.c - the client library's reconnect delays
 * (herald_backoff_ms(), clients/herald_session.c): doubling from the minimum,
 * capped, with equal jitter in [d/2, d]. The resume itself (exactly once,
 * in order, across a broker restart) is tested end to end in
 * tests/e2e/test_cli.py, against the real broker. */
#include "unit.h"

#include "herald_session.h"

static void test_backoff_bounds(void **state)
{
    uint64_t rng = 42;

    (void)state;
    for (unsigned attempt = 0; attempt < 40; attempt++) {
        unsigned d = 250;
        for (unsigned i = 0; i < attempt && d < 10000; i++) d *= 2;
        if (d > 10000) d = 10000;
        for (int k = 0; k < 1000; k++) {
            unsigned ms = herald_backoff_ms(attempt, 250, 10000, (uint32_t)test_rand(&rng));
            assert_true(ms >= d / 2);
            assert_true(ms <= d);
        }
        assert_int_equal(herald_backoff_ms(attempt, 250, 10000, 0), d / 2);
        assert_int_equal(herald_backoff_ms(attempt, 250, 10000, UINT32_MAX), d);
    }
}

static void test_backoff_spreads(void **state)
{
    uint64_t rng = 7;
    unsigned lo = UINT32_MAX, hi = 0;

    (void)state;
    /* Clients dropped together must not come back together. */
    for (int k = 0; k < 1000; k++) {
        unsigned ms = herald_backoff_ms(3, 250, 10000, (uint32_t)test_rand(&rng));
        if (ms < lo) lo = ms;
        if (ms > hi) hi = ms;
    }
    assert_true(hi - lo > 800);
    /* Huge attempt counts do not overflow. */
    assert_true(herald_backoff_ms(UINT32_MAX, 1, UINT32_MAX, 5) <= UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_backoff_spreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
