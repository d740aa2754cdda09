/* tests/unit/test_outbox.c - the webhook queues of storage/outbox.c on a
 * temporary LMDB environment: events read back with the channel they are
 * ordered by; failed attempts counted with the event (hist_outbox_tried():
 * count, first and last time, kept across a reopen of the store); picking
 * by channel from a position (hist_outbox_pick()); dead letters keep the
 * attempts, and a revived one starts from 0. */
#include "unit.h"

#include "hist.h"

static char base[] = "/tmp/herald-test-outbox-XXXXXX";
static hist_t *h;

static int open_store(void)
{
    struct hist_opts o = { .dir = base, .map_size = 1 << 20, .map_size_max = 64 << 20 };
    char err[256];
    return hist_open(&h, &o, err, sizeof err);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(base)) return -1;
    return open_store();
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    hist_close(h);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void add(const char *hook, const char *chan, int n)
{
    const char *hooks[1] = { hook };
    char json[128];
    int len = snprintf(json, sizeof json, "{\"type\":\"channel.occupied\",\"channel\":\"%s\",\"n\":%d}", chan, n);
    assert_int_equal(hist_outbox_add(h, hooks, 1, 1000 + n, json, (size_t)len), 0);
}

/* Takes every event except those of channel @ctx. */
static int skip_chan(void *ctx, const char *chan, size_t len, unsigned attempts)
{
    (void)attempts;
    return !(strlen(ctx) == len && !memcmp(ctx, chan, len));
}

static void test_attempts_and_pick(void **state)
{
    hist_ob_item_t *it;
    size_t n;
    uint64_t ids[2], seen, dn;
    unsigned att[2];
    int64_t oldest;

    (void)state;
    add("a", "orders:1", 0);
    add("a", "orders:2", 1);
    add("a", "orders:1", 2);
    add("a", "orders:2", 3);
    assert_int_equal(hist_outbox_read(h, "a", 0, 0, 10, &it, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(it[0].chan, "orders:1");
    assert_int_equal(it[0].chanlen, 8);
    assert_int_equal(it[0].attempts, 0);
    assert_int_equal(it[0].first_attempt, 0);
    ids[0] = it[0].id;
    ids[1] = it[2].id;
    hist_ob_items_free(it, n);

    /* Two failed posts of orders:1's events, at 5000 and 7000. */
    assert_int_equal(hist_outbox_tried(h, "a", ids, 2, 5000, att), 0);
    assert_int_equal(att[0], 1);
    assert_int_equal(hist_outbox_tried(h, "a", ids, 2, 7000, att), 0);
    assert_int_equal(att[1], 2);

    /* They survive closing and reopening the store, and the payload is intact. */
    hist_close(h);
    assert_int_equal(open_store(), 0);
    assert_int_equal(hist_outbox_read(h, "a", 0, 0, 10, &it, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(it[0].attempts, 2);
    assert_int_equal(it[0].first_attempt, 5000);
    assert_int_equal(it[0].last_attempt, 7000);
    assert_int_equal(it[0].ts, 1000);
    assert_int_equal(json_integer_value(json_object_get(it[0].event, "n")), 0);
    assert_string_equal(it[2].chan, "orders:1");
    assert_int_equal(json_integer_value(json_object_get(it[2].event, "n")), 2);
    assert_int_equal(it[1].attempts, 0);
    hist_ob_items_free(it, n);

    /* Picking without orders:1: orders:2's events, in order. */
    assert_int_equal(hist_outbox_pick(h, "a", 0, 100, 10, skip_chan, "orders:1", &it, &n, &seen), 0);
    assert_int_equal(n, 2);
    assert_int_equal(json_integer_value(json_object_get(it[0].event, "n")), 1);
    assert_int_equal(json_integer_value(json_object_get(it[1].event, "n")), 3);
    assert_int_equal(seen, it[1].id);
    hist_ob_items_free(it, n);
    /* From past the last one seen: nothing; a scan limit of 1 looks at one event. */
    assert_int_equal(hist_outbox_pick(h, "a", seen, 100, 10, skip_chan, "orders:1", &it, &n, &seen), 0);
    assert_int_equal(n, 0);
    hist_ob_items_free(it, n);
    assert_int_equal(hist_outbox_pick(h, "a", 0, 1, 10, skip_chan, "orders:1", &it, &n, &seen), 0);
    assert_int_equal(n, 0);
    assert_int_equal(seen, ids[0]);
    hist_ob_items_free(it, n);

    /* Dead letters keep the attempts and the reason; a revived event starts again. */
    assert_int_equal(hist_outbox_bury(h, "a", ids, 1, "gave up after 2 attempts: HTTP 500"), 0);
    assert_int_equal(hist_outbox_read(h, "a", 1, 0, 10, &it, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(it[0].attempts, 2);
    assert_int_equal(it[0].last_attempt, 7000);
    assert_string_equal(it[0].error, "gave up after 2 attempts: HTTP 500");
    hist_ob_items_free(it, n);
    assert_int_equal(hist_outbox_depth(h, "a", 1, &dn, &oldest), 0);
    assert_int_equal(dn, 1);
    assert_int_equal(oldest, 1000);
    assert_int_equal(hist_outbox_revive(h, "a", ids[0]), 1);
    assert_int_equal(hist_outbox_read(h, "a", 0, 0, 1, &it, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(it[0].id, ids[0]);
    assert_int_equal(it[0].attempts, 0);
    assert_int_equal(it[0].first_attempt, 0);
    hist_ob_items_free(it, n);

    /* An id no longer queued counts 0; another webhook's queue is untouched. */
    assert_int_equal(hist_outbox_ack(h, "a", ids, 1), 0);
    assert_int_equal(hist_outbox_tried(h, "a", ids, 1, 9000, att), 0);
    assert_int_equal(att[0], 0);
    assert_int_equal(hist_outbox_depth(h, "b", 0, &dn, &oldest), 0);
    assert_int_equal(dn, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attempts_and_pick, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
