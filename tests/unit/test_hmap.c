/* tests/unit/test_hmap.c - common/hmap.c: put/get/del, a 100k-key random
 * workload against a reference, iteration, backward-shift deletion inside
 * probe runs (with keys chosen to collide), and keys sharing prefixes. */
#include "unit.h"

#include "hmap.h"
#include "siphash.h"

/* The map's own hash for @key (hmap.c forces 0 to 1). */
static uint64_t hash_of(const hmap_t *m, const void *key, size_t len)
{
    uint64_t h = siphash13(key, len, m->seed);
    return h ? h : 1;
}

/* Every entry is reachable from its home slot without crossing an empty
 * slot, hashes are right, and count matches the occupied slots. */
static void check_invariants(const hmap_t *m)
{
    size_t mask = m->cap - 1, used = 0;

    assert_true(m->cap >= 16 && (m->cap & mask) == 0);
    for (size_t i = 0; i < m->cap; i++) {
        const struct hmap_slot *s = &m->slots[i];
        if (!s->hash) continue;
        used++;
        assert_true(s->hash == hash_of(m, s->key, s->keylen));
        for (size_t j = s->hash & mask; j != i; j = (j + 1) & mask)
            if (!m->slots[j].hash) {
                print_error("slot %zu (home %zu) is cut off by the empty slot %zu\n", i,
                            (size_t)(s->hash & mask), j);
                fail();
            }
        assert_ptr_equal(hmap_get(m, s->key, s->keylen), s->value);
    }
    assert_int_equal(used, m->count);
    assert_true(m->count * 4 <= m->cap * 3);
}

static void test_basic(void **state)
{
    int a = 1, b = 2, c = 3;
    hmap_t m;
    (void)state;

    assert_int_equal(hmap_init(&m, 0), 0);
    assert_null(hmap_get(&m, "a", 1));
    assert_null(hmap_del(&m, "a", 1));
    assert_int_equal(hmap_put(&m, "a", 1, &a), 0);
    assert_int_equal(hmap_put(&m, "b", 1, &b), 0);
    assert_int_equal(hmap_put(&m, "", 0, &c), 0);         /* the empty key is a key */
    assert_ptr_equal(hmap_get(&m, "a", 1), &a);
    assert_ptr_equal(hmap_get(&m, "b", 1), &b);
    assert_ptr_equal(hmap_get(&m, "", 0), &c);
    assert_null(hmap_get(&m, "ab", 2));
    assert_null(hmap_get(&m, "a", 0 + 2));
    assert_int_equal(m.count, 3);
    assert_ptr_equal(hmap_del(&m, "a", 1), &a);
    assert_null(hmap_get(&m, "a", 1));
    assert_null(hmap_del(&m, "a", 1));
    assert_ptr_equal(hmap_get(&m, "b", 1), &b);
    assert_int_equal(m.count, 2);
    /* Keys are bytes, not C strings. */
    assert_int_equal(hmap_put(&m, "x\0y", 3, &a), 0);
    assert_ptr_equal(hmap_get(&m, "x\0y", 3), &a);
    assert_null(hmap_get(&m, "x\0z", 3));
    assert_null(hmap_get(&m, "x", 1));
    check_invariants(&m);
    hmap_deinit(&m);
    assert_null(m.slots);
}

static void test_hint(void **state)
{
    hmap_t m;
    (void)state;
    assert_int_equal(hmap_init(&m, 1000), 0);
    assert_true(m.cap * 3 / 4 >= 1000);
    hmap_deinit(&m);
    assert_int_equal(hmap_init(&m, 12), 0);
    assert_int_equal(m.cap, 16);
    hmap_deinit(&m);
}

#define NKEYS 100000

struct ent { char key[24]; size_t len; int present; };

static void test_random_workload(void **state)
{
    struct ent *e = calloc(NKEYS, sizeof *e);
    uint64_t rng = 42;
    size_t live = 0, pos;
    unsigned char *seen;
    hmap_t m;
    void *v;
    (void)state;

    assert_non_null(e);
    assert_int_equal(hmap_init(&m, 16), 0);
    for (size_t i = 0; i < NKEYS; i++) e[i].len = (size_t)snprintf(e[i].key, sizeof e[i].key, "k%zu", i * 7919);

    for (int round = 0; round < 6; round++) {
        for (size_t n = 0; n < NKEYS; n++) {
            size_t i = test_rand(&rng) % NKEYS;
            uint64_t op = test_rand(&rng) % 3;
            if (op < 2 && !e[i].present) {
                assert_int_equal(hmap_put(&m, e[i].key, e[i].len, &e[i]), 0);
                e[i].present = 1;
                live++;
            } else if (op == 2 || e[i].present) {
                void *got = hmap_del(&m, e[i].key, e[i].len);
                assert_ptr_equal(got, e[i].present ? &e[i] : NULL);
                if (e[i].present) live--;
                e[i].present = 0;
            }
        }
        assert_int_equal(m.count, live);
        for (size_t i = 0; i < NKEYS; i++)
            assert_ptr_equal(hmap_get(&m, e[i].key, e[i].len), e[i].present ? &e[i] : NULL);
        check_invariants(&m);
    }

    /* Iteration visits each live value exactly once. */
    seen = calloc(NKEYS, 1);
    pos = 0;
    size_t visited = 0;
    while ((v = hmap_next(&m, &pos))) {
        struct ent *x = v;
        size_t i = (size_t)(x - e);
        assert_true(i < NKEYS);
        assert_true(x->present);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        visited++;
    }
    assert_int_equal(visited, live);
    assert_null(hmap_next(&m, &pos));   /* stays at the end */

    /* Delete everything; the map is empty and still usable. */
    for (size_t i = 0; i < NKEYS; i++)
        if (e[i].present) assert_ptr_equal(hmap_del(&m, e[i].key, e[i].len), &e[i]);
    assert_int_equal(m.count, 0);
    pos = 0;
    assert_null(hmap_next(&m, &pos));
    assert_int_equal(hmap_put(&m, e[0].key, e[0].len, &e[0]), 0);
    assert_ptr_equal(hmap_get(&m, e[0].key, e[0].len), &e[0]);
    hmap_deinit(&m);
    free(seen);
    free(e);
}

/* Finds keys "c<n>" whose home slot in a map of @m's capacity is @home. */
static size_t keys_at(const hmap_t *m, size_t home, char (*out)[16], size_t want, size_t *counter)
{
    size_t got = 0;
    while (got < want) {
        int len = snprintf(out[got], 16, "c%zu", (*counter)++);
        if ((hash_of(m, out[got], (size_t)len) & (m->cap - 1)) == home) got++;
    }
    return got;
}

/* Builds probe runs that wrap around the end of the table and interleave
 * two home slots, deletes each entry in turn from a fresh map and checks
 * that every other entry is still found. */
static void test_backward_shift(void **state)
{
    static const uint8_t seed[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    char keys[10][16];
    size_t counter = 0;
    hmap_t m;
    (void)state;

    assert_int_equal(hmap_init(&m, 0), 0);
    assert_int_equal(m.cap, 16);
    memcpy(m.seed, seed, sizeof seed);       /* fixed seed: the layout below is reproducible */
    /* 4 keys homed at 14 (run 14,15,0,1), 3 homed at 15, 3 homed at 0:
     * 10 entries, under the 12 that make a 16-slot map grow. */
    keys_at(&m, 14, keys, 4, &counter);
    keys_at(&m, 15, keys + 4, 3, &counter);
    keys_at(&m, 0, keys + 7, 3, &counter);

    /* Several insertion orders, so homes interleave differently in the run. */
    static const int orders[3][10] = {
        { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
        { 4, 0, 7, 5, 1, 8, 6, 2, 9, 3 },
        { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0 },
    };
    for (int o = 0; o < 3; o++) {
        for (int victim = 0; victim < 10; victim++) {
            hmap_deinit(&m);
            assert_int_equal(hmap_init(&m, 0), 0);
            memcpy(m.seed, seed, sizeof seed);
            for (int i = 0; i < 10; i++) {
                int k = orders[o][i];
                assert_int_equal(hmap_put(&m, keys[k], strlen(keys[k]), keys[k]), 0);
            }
            assert_int_equal(m.cap, 16);
            check_invariants(&m);
            assert_ptr_equal(hmap_del(&m, keys[victim], strlen(keys[victim])), keys[victim]);
            check_invariants(&m);
            for (int k = 0; k < 10; k++)
                assert_ptr_equal(hmap_get(&m, keys[k], strlen(keys[k])), k == victim ? NULL : keys[k]);
            /* Then delete the rest one by one, checking as we go. */
            for (int k = 0; k < 10; k++) {
                if (k == victim) continue;
                assert_ptr_equal(hmap_del(&m, keys[k], strlen(keys[k])), keys[k]);
                check_invariants(&m);
                for (int j = k + 1; j < 10; j++)
                    if (j != victim) assert_ptr_equal(hmap_get(&m, keys[j], strlen(keys[j])), keys[j]);
            }
            assert_int_equal(m.count, 0);
        }
    }
    hmap_deinit(&m);
}

static void test_prefix_keys(void **state)
{
    char buf[200];
    hmap_t m;
    static char vals[200];
    (void)state;

    memset(buf, 'p', sizeof buf);
    assert_int_equal(hmap_init(&m, 0), 0);
    /* "p", "pp", ... 199 keys that are all prefixes of each other, all
     * borrowing the same bytes; lengths cross the 8-byte block boundaries. */
    for (size_t n = 0; n < 200; n++) assert_int_equal(hmap_put(&m, buf, n, &vals[n]), 0);
    for (size_t n = 0; n < 200; n++) assert_ptr_equal(hmap_get(&m, buf, n), &vals[n]);
    for (size_t n = 0; n < 200; n += 2) assert_ptr_equal(hmap_del(&m, buf, n), &vals[n]);
    for (size_t n = 0; n < 200; n++) assert_ptr_equal(hmap_get(&m, buf, n), n % 2 ? &vals[n] : NULL);
    check_invariants(&m);
    hmap_deinit(&m);
}

static void test_seed_per_map(void **state)
{
    hmap_t a, b;
    (void)state;
    assert_int_equal(hmap_init(&a, 0), 0);
    assert_int_equal(hmap_init(&b, 0), 0);
    assert_memory_not_equal(a.seed, b.seed, sizeof a.seed);
    hmap_deinit(&a);
    hmap_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_hint),
        cmocka_unit_test(test_random_workload),
        cmocka_unit_test(test_backward_shift),
        cmocka_unit_test(test_prefix_keys),
        cmocka_unit_test(test_seed_per_map),
    };
    return cmocka_run_group_tests_name("hmap", tests, NULL, NULL);
}
