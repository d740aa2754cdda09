/* tests/unit/test_admit.c - broker/core/admit.c: the shed decision at its
 * boundaries, and the log that says at most one line a second. */
#include "unit.h"

#include "core/admit.h"

#define MS 1000000ULL
#define SEC 1000000000ULL

static void test_shed_decision(void **state)
{
    const uint64_t t0 = 5 * SEC;
    (void)state;

    /* Nothing waiting, or shedding off: always admitted. */
    assert_int_equal(admit_shed(0, t0, 500), 0);
    assert_int_equal(admit_shed(t0, t0 + 3600 * SEC, 0), 0);
    /* Refused only once the oldest write is strictly older than the limit. */
    assert_int_equal(admit_shed(t0, t0, 500), 0);
    assert_int_equal(admit_shed(t0, t0 + 500 * MS, 500), 0);
    assert_int_equal(admit_shed(t0, t0 + 500 * MS + 1, 500), 1);
    assert_int_equal(admit_shed(t0, t0 + 10 * SEC, 500), 1);
    assert_int_equal(admit_shed(t0, t0 + MS + 1, 1), 1);
    /* A write stamped after "now" (read on another thread a moment before) is not old. */
    assert_int_equal(admit_shed(t0 + MS, t0, 1), 0);
    /* The largest limit does not overflow: 4294967295 ms is about 49.7 days. */
    assert_int_equal(admit_shed(1, 1 + 4294967295ULL * MS, 4294967295u), 0);
    assert_int_equal(admit_shed(1, 2 + 4294967295ULL * MS, 4294967295u), 1);
}

static void test_log_once_a_second(void **state)
{
    admit_log_t l = { 0 };
    uint64_t t = 7 * SEC, n = 99;
    (void)state;

    /* Admissions without refusals say nothing. */
    assert_int_equal(admit_log_end(&l, t, &n), 0);
    /* The first refusal is reported at once; the next ones wait out the second. */
    assert_int_equal(admit_log_note(&l, t), 1);
    for (int i = 1; i <= 1000; i++) assert_int_equal(admit_log_note(&l, t + (uint64_t)i * MS - 1), 0);
    /* A second after the last report, one line counts everything since it. */
    assert_int_equal(admit_log_note(&l, t + SEC), 1001);
    assert_int_equal(admit_log_note(&l, t + SEC + 1), 0);
    assert_int_equal(admit_log_note(&l, t + SEC + 2), 0);
    /* Admissions within the second of the last line say nothing yet ... */
    assert_int_equal(admit_log_end(&l, t + SEC + 3, &n), 0);
    assert_int_equal(admit_log_end(&l, t + 2 * SEC - 1, &n), 0);
    /* ... the first one after it ends the spell, with the two not reported yet; once. */
    assert_int_equal(admit_log_end(&l, t + 2 * SEC, &n), 1);
    assert_int_equal(n, 2);
    assert_int_equal(admit_log_end(&l, t + 5 * SEC, &n), 0);
    /* Spells that start and end within a second share one line: refusal and end alike wait. */
    assert_int_equal(admit_log_note(&l, t + 2 * SEC + 3), 0);
    assert_int_equal(admit_log_end(&l, t + 2 * SEC + 4, &n), 0);
    assert_int_equal(admit_log_note(&l, t + 2 * SEC + 5), 0);
    assert_int_equal(admit_log_end(&l, t + 3 * SEC + 5, &n), 1);
    assert_int_equal(n, 2);
    /* A refusal at clock 0 still counts as a report made. */
    l = (admit_log_t){ 0 };
    assert_int_equal(admit_log_note(&l, 0), 1);
    assert_int_equal(admit_log_note(&l, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shed_decision),
        cmocka_unit_test(test_log_once_a_second),
    };
    return cmocka_run_group_tests_name("admit", tests, NULL, NULL);
}
