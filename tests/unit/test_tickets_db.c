/* tests/unit/test_tickets_db.c - storage/tickets_db.c (the support-tickets
 * adapter's rules) through the real store (storage/hist.c on a temporary
 * LMDB environment): the status machine, unique and generated ids, comments
 * numbered beside the ticket, a bulk update that is all or none, refusals
 * and reads that write nothing, and a random walk after which every stored
 * ticket is in the status the machine says it reached. */
#define STORE_NAME "tickets"
#include "store.h"

#include "hist.h"
#include "msg.h"
#include "mpack.h"
#include "tickets_db.h"

#define CHAN "helpdesk:tickets"

static int64_t clock_ms = 1000;

/* The timeline entries the last run() wrote in its transaction: how many,
 * and the channels of the first two ("" when fewer). */
static size_t sides;
static char side_chan[2][64];

/* Runs @r. Return: the write's status (0 or HIST_E_REFUSED); *@res the
 * report (NULL: dropped); *@appended whether a delta was appended. */
static int run(tickets_req_t *r, json_t **res, int *appended)
{
    hist_state_op_t op = { .type = HIST_OP_CUSTOM, .custom = tickets_apply, .arg = r };
    hist_write_t w = { .chan = CHAN, .chanlen = strlen(CHAN), .ts = clock_ms++, .keep = 1000, .ops = &op, .nops = 1 };
    int rc = hist_write_batch(h, &w, 1);

    assert_int_equal(rc, 0);
    free(w.state_rec);
    sides = 0;
    side_chan[0][0] = side_chan[1][0] = '\0';
    for (const hist_side_t *s = w.side; s; s = s->next, sides++)
        if (sides < 2) snprintf(side_chan[sides], sizeof side_chan[0], "%.*s", (int)s->chanlen, s->chan);
    hist_sides_free(w.side);
    if (appended) *appended = w.status == 0 && !w.unchanged;
    if (res) *res = w.result;
    else json_decref(w.result);
    return w.status;
}

static int code_of(json_t *res)
{
    int c = (int)json_integer_value(json_object_get(res, "code"));
    json_decref(res);
    return c;
}

/* The stored status of ticket @id ("" when absent). */
static void status_of(const char *id, char *out, size_t len)
{
    char key[96];
    hist_state_t st;

    snprintf(key, sizeof key, "ticket:%s", id);
    *out = '\0';
    assert_int_equal(hist_state_read(h, CHAN, strlen(CHAN), "", 0, NULL, 0, 0, &st), 0);
    for (size_t i = 0; i < st.n; i++) {
        char reason[PROTO_REASON_MAX];
        json_t *v = NULL;
        if (st.kv[i].keylen != strlen(key) || memcmp(st.kv[i].key, key, st.kv[i].keylen)) continue;
        assert_int_equal(mpack_decode(st.kv[i].val, st.kv[i].vallen, &v, reason), 0);
        snprintf(out, len, "%s", json_string_value(json_object_get(v, "status")));
        json_decref(v);
    }
    hist_state_free(&st);
}

static int create(const char *id, json_t **res)
{
    tickets_req_t r = { .action = TICKETS_CREATE };
    int rc;
    r.ticket = json_pack("{s:s,s:s,s:s,s:s}", "title", "t", "description", "", "requester", "u", "priority", "normal");
    if (id) json_object_set_new(r.ticket, "id", json_string(id));
    rc = run(&r, res, NULL);
    json_decref(r.ticket);
    return rc;
}

static int move(const char *id, const char *status, json_t **res, int *appended)
{
    tickets_req_t r = { .action = TICKETS_STATUS, .id = id, .status = status };
    return run(&r, res, appended);
}

static void test_machine_table(void **state)
{
    const char *const all[] = { "open", "in_progress", "closed" };
    /* [from][to]: whether the move is allowed. */
    const int ok[3][3] = { { 0, 1, 1 }, { 1, 0, 1 }, { 1, 0, 0 } };
    (void)state;
    for (int f = 0; f < 3; f++) {
        const char *const *next = tickets_next(all[f]);
        assert_non_null(next);
        for (int t = 0; t < 3; t++) {
            int found = 0;
            for (size_t i = 0; next[i]; i++) found |= !strcmp(next[i], all[t]);
            assert_int_equal(found, ok[f][t]);
        }
    }
    assert_null(tickets_next("OPEN"));
    assert_null(tickets_next(NULL));
    assert_false(tickets_status_valid("done"));
}

static void test_create_and_move(void **state)
{
    json_t *res;
    int appended;
    char st[32];
    (void)state;

    assert_int_equal(create("a", &res), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "ticket"), "status")), "open");
    json_decref(res);
    /* Its timeline entry is written in the same transaction (the default namespace "ticket"). */
    assert_int_equal(sides, 1);
    assert_string_equal(side_chan[0], "ticket:a");
    assert_int_equal(create("a", &res), HIST_E_REFUSED);
    assert_int_equal(code_of(res), PROTO_E_TICKET_EXISTS);
    assert_int_equal(sides, 0);                   /* refused: no timeline entry either */
    /* Generated ids skip one a backend chose. */
    assert_int_equal(create("T000002", NULL), 0);
    assert_int_equal(create(NULL, &res), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "ticket"), "id")), "T000001");
    json_decref(res);
    assert_int_equal(create(NULL, &res), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "ticket"), "id")), "T000003");
    json_decref(res);

    assert_int_equal(move("a", "open", &res, &appended), HIST_E_REFUSED);
    assert_false(appended);
    assert_string_equal(json_string_value(json_object_get(res, "status")), "open");
    assert_int_equal(json_array_size(json_object_get(res, "allowed")), 2);
    assert_int_equal(code_of(res), PROTO_E_BAD_TRANSITION);
    assert_int_equal(move("nope", "closed", &res, NULL), HIST_E_REFUSED);
    assert_int_equal(code_of(res), PROTO_E_UNKNOWN_TICKET);
    assert_int_equal(move("a", "closed", &res, &appended), 0);
    assert_true(appended);
    assert_string_equal(json_string_value(json_object_get(res, "from")), "open");
    json_decref(res);
    assert_int_equal(move("a", "in_progress", &res, NULL), HIST_E_REFUSED);
    assert_int_equal(code_of(res), PROTO_E_BAD_TRANSITION);
    assert_int_equal(move("a", "open", NULL, NULL), 0);
    status_of("a", st, sizeof st);
    assert_string_equal(st, "open");
}

static void test_comments_and_reads(void **state)
{
    tickets_req_t c = { .action = TICKETS_COMMENT, .id = "a" }, g = { .action = TICKETS_GET, .id = "a" };
    json_t *res;
    int appended;
    (void)state;

    for (int i = 1; i <= 3; i++) {
        c.comment = json_pack("{s:s,s:s}", "author", "ag", "text", "hello");
        assert_int_equal(run(&c, &res, NULL), 0);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "comment"), "n")), i);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "ticket"), "comments")), i);
        json_decref(res);
        json_decref(c.comment);
    }
    assert_int_equal(run(&g, &res, &appended), 0);
    assert_false(appended);                       /* a read writes nothing */
    assert_int_equal(json_array_size(json_object_get(res, "comments")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(res, "comments"), 0), "n")), 1);
    json_decref(res);
    g.id = "nope";
    assert_int_equal(run(&g, &res, NULL), HIST_E_REFUSED);
    assert_int_equal(code_of(res), PROTO_E_UNKNOWN_TICKET);
}

static void test_bulk_all_or_none(void **state)
{
    tickets_req_t r = { .action = TICKETS_BULK_STATUS, .status = "closed" };
    json_t *res;
    char st[32];
    int appended;
    (void)state;

    assert_int_equal(create("b1", NULL), 0);
    assert_int_equal(create("b2", NULL), 0);
    assert_int_equal(create("b3", NULL), 0);
    assert_int_equal(move("b3", "closed", NULL, NULL), 0);
    r.ids = json_pack("[s,s,s]", "b1", "zz", "b2");
    assert_int_equal(run(&r, &res, &appended), HIST_E_REFUSED);
    assert_false(appended);
    assert_int_equal(json_array_size(json_object_get(res, "unknown")), 1);
    assert_int_equal(code_of(res), PROTO_E_UNKNOWN_TICKET);
    json_decref(r.ids);
    r.ids = json_pack("[s,s,s]", "b1", "b3", "b2");
    assert_int_equal(run(&r, &res, &appended), HIST_E_REFUSED);
    assert_false(appended);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(res, "refused"), 0), "id")),
                        "b3");
    assert_int_equal(code_of(res), PROTO_E_BAD_TRANSITION);
    status_of("b1", st, sizeof st);
    assert_string_equal(st, "open");
    json_decref(r.ids);
    r.ids = json_pack("[s,s]", "b2", "b1");
    assert_int_equal(run(&r, &res, &appended), 0);
    assert_true(appended);
    assert_int_equal(sides, 2);                   /* one timeline entry per ticket, in the order asked */
    assert_string_equal(side_chan[0], "ticket:b2");
    assert_string_equal(side_chan[1], "ticket:b1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(res, "tickets"), 0), "id")),
                        "b2");
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "from"), "b1")), "open");
    json_decref(res);
    json_decref(r.ids);
    status_of("b1", st, sizeof st);
    assert_string_equal(st, "closed");
    status_of("b2", st, sizeof st);
    assert_string_equal(st, "closed");
}

/* Random moves and bulk moves over a few tickets: the store always agrees
 * with a model that applies only the moves the machine allows. */
static void test_random_walk(void **state)
{
    const char *const all[] = { "open", "in_progress", "closed" };
    const char *const ids[] = { "w0", "w1", "w2", "w3", "w4" };
    int model[5] = { 0 };
    uint64_t seed = 42;
    char st[32];
    (void)state;

    for (int i = 0; i < 5; i++) assert_int_equal(create(ids[i], NULL), 0);
    for (int step = 0; step < 300; step++) {
        int to = (int)(test_rand(&seed) % 3);
        if (test_rand(&seed) % 4) {
            int k = (int)(test_rand(&seed) % 5);
            int legal = model[k] != to && !(model[k] == 2 && to == 1);
            json_t *res = NULL;
            int rc = move(ids[k], all[to], &res, NULL);
            assert_int_equal(rc, legal ? 0 : HIST_E_REFUSED);
            json_decref(res);
            if (legal) model[k] = to;
        } else {
            tickets_req_t r = { .action = TICKETS_BULK_STATUS, .status = all[to] };
            int legal = 1, pick[5], n = 0;
            r.ids = json_array();
            for (int k = 0; k < 5; k++)
                if (test_rand(&seed) % 2) {
                    pick[n++] = k;
                    json_array_append_new(r.ids, json_string(ids[k]));
                    legal &= model[k] != to && !(model[k] == 2 && to == 1);
                }
            if (n) {
                assert_int_equal(run(&r, NULL, NULL), legal ? 0 : HIST_E_REFUSED);
                if (legal)
                    for (int i = 0; i < n; i++) model[pick[i]] = to;
            }
            json_decref(r.ids);
        }
        for (int k = 0; k < 5; k++) {
            status_of(ids[k], st, sizeof st);
            assert_string_equal(st, all[model[k]]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* In order: each starts from the store the previous one left. */
        cmocka_unit_test(test_machine_table),
        cmocka_unit_test(test_create_and_move),
        cmocka_unit_test(test_comments_and_reads),
        cmocka_unit_test(test_bulk_all_or_none),
        cmocka_unit_test(test_random_walk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
