/* tests/unit/test_shop.c - storage/shop.c (the commerce adapter's rules)
 * through the real store (storage/hist.c on a temporary LMDB environment):
 * the lifecycle table, reservations all or none and never below zero,
 * restoring exactly what was reserved and only once, refused requests that
 * write nothing, and a random walk of orders after which stock always equals
 * the initial stock minus what live orders hold. */
#define STORE_NAME "shop"
#include "store.h"

#include "hist.h"
#include "msg.h"
#include "mpack.h"
#include "shop.h"

#define CHAN "stock:all"

static int64_t clock_ms = 1000;

/* Runs @r. Return: the write's status (0 or HIST_E_REFUSED); *@res the
 * report (NULL: dropped); *@appended whether a delta was appended. */
/* The side publications of the last run: "channel@offset," each. */
static char sides[1024];

static int run(shop_req_t *r, json_t **res, int *appended)
{
    hist_state_op_t op = { .type = HIST_OP_CUSTOM, .custom = shop_apply, .arg = r };
    hist_write_t w = { .chan = CHAN, .chanlen = strlen(CHAN), .ts = clock_ms++, .keep = 1000, .ops = &op, .nops = 1 };
    int rc;

    r->orders_ns = "orders";
    r->admin_channel = "admin:orders";
    rc = hist_write_batch(h, &w, 1);
    assert_int_equal(rc, 0);
    sides[0] = '\0';
    for (hist_side_t *s = w.side; s; s = s->next)
        snprintf(sides + strlen(sides), sizeof sides - strlen(sides), "%s@%llu,", s->chan,
                 (unsigned long long)s->offset);
    hist_sides_free(w.side);
    free(w.state_rec);
    if (appended) *appended = w.status == 0 && !w.unchanged;
    if (res) *res = w.result;
    else json_decref(w.result);
    return w.status;
}

/* The refusal code of the report @res (taken). */
static int code_of(json_t *res)
{
    int c = (int)json_integer_value(json_object_get(res, "code"));
    json_decref(res);
    return c;
}

static json_int_t stock(const char *sku)
{
    hist_state_t st;
    json_int_t n = -1;

    assert_int_equal(hist_state_read(h, CHAN, strlen(CHAN), "", 0, NULL, 0, 0, &st), 0);
    for (size_t i = 0; i < st.n; i++) {
        char reason[PROTO_REASON_MAX];
        json_t *v = NULL;
        if (st.kv[i].keylen != strlen(sku) || memcmp(st.kv[i].key, sku, st.kv[i].keylen)) continue;
        assert_int_equal(mpack_decode(st.kv[i].val, st.kv[i].vallen, &v, reason), 0);
        n = json_integer_value(v);
        json_decref(v);
    }
    hist_state_free(&st);
    return n;
}

static int set_stock(const char *sku, json_int_t n)
{
    shop_req_t r = { .action = SHOP_STOCK_SET, .items = json_pack("{s:I}", sku, n) };
    int rc = run(&r, NULL, NULL);
    json_decref(r.items);
    return rc;
}

static int create(const char *id, const char *owner, json_t *lines, json_t **res)
{
    shop_req_t r = { .action = SHOP_ORDER_CREATE, .order = id, .owner = owner, .items = lines };
    int rc = run(&r, res, NULL);
    json_decref(lines);
    return rc;
}

static int move(const char *id, const char *to, json_t **res)
{
    shop_req_t r = { .action = SHOP_ORDER_MOVE, .order = id, .status = to };
    return run(&r, res, NULL);
}

static const char *status_of(const char *id)
{
    static char buf[32];
    shop_req_t r = { .action = SHOP_ORDER_GET, .order = id };
    json_t *res;
    if (run(&r, &res, NULL)) { json_decref(res); return NULL; }
    snprintf(buf, sizeof buf, "%s", json_string_value(json_object_get(json_object_get(res, "order"), "status")));
    json_decref(res);
    return buf;
}

static void test_lifecycle_table(void **state)
{
    static const char *const all[] = { "PENDING", "PAID", "PROCESSING", "PICKING", "PACKED", "SHIPPED",
                                       "DELIVERED", "PAYMENT_FAILED", "CANCELLED", "REFUNDED", "RETURNED" };
    /* The allowed transitions, row by row, in the order of all[]. */
    static const char *const want[][4] = {
        { "PAID", "PAYMENT_FAILED", "CANCELLED" }, { "PROCESSING", "CANCELLED", "REFUNDED" },
        { "PICKING", "CANCELLED", "REFUNDED" }, { "PACKED", "REFUNDED" }, { "SHIPPED", "REFUNDED" },
        { "DELIVERED", "REFUNDED" }, { "RETURNED", "REFUNDED" }, { NULL }, { NULL }, { NULL }, { "REFUNDED" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *const *next = shop_next(all[i]);
        size_t k;
        assert_true(shop_status_valid(all[i]));
        assert_non_null(next);
        for (k = 0; want[i][k]; k++) assert_string_equal(next[k], want[i][k]);
        assert_null(next[k]);
    }
    assert_false(shop_status_valid("LOST"));
    assert_false(shop_status_valid("paid"));
    assert_null(shop_next(NULL));
}

static void test_reserve_all_or_none(void **state)
{
    json_t *res;
    int appended;
    (void)state;
    assert_int_equal(set_stock("A", 3), 0);
    assert_int_equal(set_stock("B", 1), 0);
    /* B is short and C was never stocked: nothing is taken from A. */
    assert_int_equal(create("o1", "alice", json_pack("[{s:s,s:i},{s:s,s:i},{s:s,s:i}]", "sku", "A", "qty", 2, "sku",
                                                     "B", "qty", 2, "sku", "C", "qty", 1), &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_OUT_OF_STOCK);
    assert_int_equal(json_array_size(json_object_get(res, "short")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(res, "short"), 1), "sku")), "C");
    json_decref(res);
    assert_int_equal(stock("A"), 3);
    assert_null(status_of("o1"));
    /* Exactly the last units. */
    assert_int_equal(create("o1", "alice", json_pack("[{s:s,s:i},{s:s,s:i}]", "sku", "A", "qty", 3, "sku", "B", "qty",
                                                     1), &res), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "order"), "status")), "PENDING");
    json_decref(res);
    assert_int_equal(stock("A"), 0);
    assert_int_equal(stock("B"), 0);
    /* The same id again: refused, whatever the stock. */
    assert_int_equal(set_stock("A", 5), 0);
    assert_int_equal(create("o1", "bob", json_pack("[{s:s,s:i}]", "sku", "A", "qty", 1), &res), HIST_E_REFUSED);
    assert_int_equal(code_of(res), PROTO_E_ORDER_EXISTS);
    assert_int_equal(stock("A"), 5);
    /* An adjustment below zero changes nothing, not even the other SKUs. */
    {
        shop_req_t r = { .action = SHOP_STOCK_ADJUST, .items = json_pack("{s:i,s:i}", "A", 1, "B", -1) };
        assert_int_equal(run(&r, &res, &appended), HIST_E_REFUSED);
        assert_int_equal(code_of(res), PROTO_E_OUT_OF_STOCK);
        assert_false(appended);
        json_decref(r.items);
    }
    assert_int_equal(stock("A"), 5);
    assert_int_equal(set_stock("A", 3), 0);
}

static void test_restore_once(void **state)
{
    json_t *res;
    (void)state;
    /* o1 holds A:3, B:1 (and A was reset to 3 after). */
    assert_int_equal(move("o1", "PAYMENT_FAILED", &res), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "restored"), "A")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "restored"), "B")), 1);
    json_decref(res);
    assert_int_equal(stock("A"), 6);
    assert_int_equal(stock("B"), 1);
    assert_int_equal(move("o1", "CANCELLED", &res), HIST_E_REFUSED);
    assert_string_equal(json_string_value(json_object_get(res, "status")), "PAYMENT_FAILED");
    assert_int_equal(json_array_size(json_object_get(res, "allowed")), 0);
    assert_int_equal(code_of(res), PROTO_E_BAD_TRANSITION);
    assert_int_equal(stock("A"), 6);
    /* A refund after shipping restores nothing. */
    assert_int_equal(create("o2", "bob", json_pack("[{s:s,s:i}]", "sku", "A", "qty", 2), NULL), 0);
    assert_int_equal(move("o2", "PAID", NULL), 0);
    assert_int_equal(move("o2", "REFUNDED", &res), 0);
    assert_null(json_object_get(res, "restored"));
    json_decref(res);
    assert_int_equal(stock("A"), 4);
    assert_int_equal(move("nope", "PAID", &res), HIST_E_REFUSED);
    assert_int_equal(code_of(res), PROTO_E_UNKNOWN_ORDER);
}

static int pay(const char *event, const char *type, const char *order, int64_t window, json_t **res)
{
    shop_req_t r = { .action = SHOP_PAYMENT, .event = event, .event_type = type, .order = order,
                     .status = strcmp(type, "payment.succeeded") ? "PAYMENT_FAILED" : "PAID", .window_ms = window };
    return run(&r, res, NULL);
}

static void test_payments_once_per_event(void **state)
{
    json_t *res;
    (void)state;
    assert_int_equal(set_stock("P", 4), 0);
    assert_int_equal(create("p1", "alice", json_pack("[{s:s,s:i}]", "sku", "P", "qty", 4), NULL), 0);
    assert_int_equal(stock("P"), 0);
    assert_int_equal(pay("e1", "payment.failed", "p1", 60000, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "restored"), "P")), 4);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "event"), "outcome")), "PAYMENT_FAILED");
    json_decref(res);
    assert_int_equal(stock("P"), 4);
    /* The same event again: a duplicate, never an error, nothing restored twice. */
    assert_int_equal(pay("e1", "payment.failed", "p1", 60000, &res), 0);
    assert_true(json_is_true(json_object_get(res, "duplicate")));
    json_decref(res);
    assert_int_equal(stock("P"), 4);
    /* A new event the status does not lead to: ignored, remembered. */
    assert_int_equal(pay("e2", "payment.succeeded", "p1", 60000, &res), 0);
    assert_true(json_is_true(json_object_get(res, "ignored")));
    assert_string_equal(json_string_value(json_object_get(res, "status")), "PAYMENT_FAILED");
    json_decref(res);
    assert_string_equal(status_of("p1"), "PAYMENT_FAILED");
    /* An unknown order: kept (a repeat is a duplicate), not refused. */
    assert_int_equal(pay("e3", "payment.succeeded", "ghost", 60000, &res), 0);
    assert_true(json_is_true(json_object_get(res, "unmatched")));
    json_decref(res);
    assert_int_equal(pay("e3", "payment.succeeded", "ghost", 60000, &res), 0);
    assert_true(json_is_true(json_object_get(res, "duplicate")));
    json_decref(res);
    /* Past the window an id counts as new (here: a window of 0 ms, and the clock moves). */
    assert_int_equal(pay("e3", "payment.succeeded", "ghost", 0, &res), 0);
    assert_null(json_object_get(res, "duplicate"));
    json_decref(res);
}

/* A create or a status change publishes on the order's channel, its
 * owner's and the admins' in its own transaction; a refusal, a read or a
 * stock change publishes nothing; an unmatched payment goes to the admins. */
static void test_notifications_in_txn(void **state)
{
    json_t *res;
    (void)state;
    assert_int_equal(set_stock("N", 5), 0);
    assert_string_equal(sides, "");
    assert_int_equal(create("n1", "dave", json_pack("[{s:s,s:i}]", "sku", "N", "qty", 2), NULL), 0);
    assert_non_null(strstr(sides, "orders:n1#dave@1,user:dave@1,admin:orders@"));
    assert_int_equal(move("n1", "PAID", NULL), 0);
    assert_non_null(strstr(sides, "orders:n1#dave@2,user:dave@2,admin:orders@"));
    assert_int_equal(code_of((move("n1", "DELIVERED", &res), res)), PROTO_E_BAD_TRANSITION);
    assert_string_equal(sides, "");
    assert_int_equal(create("n2", "dave", json_pack("[{s:s,s:i}]", "sku", "N", "qty", 9), &res), HIST_E_REFUSED);
    json_decref(res);
    assert_string_equal(sides, "");
    assert_int_equal(pay("n-e1", "payment.succeeded", "nobody", 60000, &res), 0);
    json_decref(res);
    assert_non_null(strstr(sides, "admin:orders@"));
    assert_null(strstr(sides, "user:"));
    /* The order's timeline is in its channel's log. */
    {
        hist_result_t hr;
        assert_int_equal(hist_read(h, "orders:n1#dave", 14, 0, 0, 10, 0, &hr), 0);
        assert_int_equal(hr.n, 2);
        hist_result_free(&hr);
    }
}

/* Random orders and transitions: stock is always the initial stock minus
 * what the orders still holding a reservation hold, and never negative. */
static void test_random_walk(void **state)
{
    static const char *const skus[] = { "r0", "r1", "r2" };
    static const char *const moves[] = { "PAID", "PAYMENT_FAILED", "CANCELLED", "PROCESSING", "PICKING", "PACKED",
                                         "SHIPPED", "DELIVERED", "RETURNED", "REFUNDED" };
    json_int_t initial[3] = { 20, 10, 5 }, held[64][3];
    int reserved[64] = { 0 };
    uint64_t seed = 42;
    int norders = 0;
    (void)state;
    for (int i = 0; i < 3; i++) assert_int_equal(set_stock(skus[i], initial[i]), 0);
    for (int step = 0; step < 600; step++) {
        json_t *res = NULL;
        if (norders < 64 && test_rand(&seed) % 3 == 0) {
            char id[16];
            json_t *lines = json_array();
            json_int_t want[3] = { 0 };
            for (int i = 0; i < 3; i++)
                if (test_rand(&seed) % 2) {
                    want[i] = 1 + (json_int_t)(test_rand(&seed) % 4);
                    json_array_append_new(lines, json_pack("{s:s,s:I}", "sku", skus[i], "qty", want[i]));
                }
            if (!json_array_size(lines)) { json_decref(lines); continue; }
            snprintf(id, sizeof id, "w%d", norders);
            if (create(id, "u", lines, &res) == 0) {
                memcpy(held[norders], want, sizeof want);
                reserved[norders++] = 1;
            } else {
                assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_OUT_OF_STOCK);
            }
        } else if (norders) {
            int o = (int)(test_rand(&seed) % (uint64_t)norders);
            const char *to = moves[test_rand(&seed) % (sizeof moves / sizeof moves[0])];
            char id[16];
            snprintf(id, sizeof id, "w%d", o);
            if (move(id, to, &res) == 0 && (!strcmp(to, "PAYMENT_FAILED") || !strcmp(to, "CANCELLED"))) {
                assert_true(reserved[o]);
                reserved[o] = 0;
            }
        }
        json_decref(res);
        for (int i = 0; i < 3; i++) {
            json_int_t out = 0;
            for (int o = 0; o < norders; o++) out += reserved[o] ? held[o][i] : 0;
            assert_int_equal(stock(skus[i]), initial[i] - out);
            assert_true(stock(skus[i]) >= 0);
        }
    }
    assert_true(norders > 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* In order: each starts from the store the previous one left. */
        cmocka_unit_test(test_lifecycle_table),
        cmocka_unit_test(test_reserve_all_or_none),
        cmocka_unit_test(test_restore_once),
        cmocka_unit_test(test_payments_once_per_event),
        cmocka_unit_test(test_notifications_in_txn),
        cmocka_unit_test(test_random_walk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
