/* tests/unit/test_seatmap.c - storage/seatmap.c through the real store
 * (storage/hist.c on a temporary LMDB environment): holds all or none,
 * confirm only by the holder and only before expiry, expiry timers, the
 * waitlist, map redefinition, section counts that always agree with the
 * seats, re-holds that never shorten a hold, the report of holds that ran
 * out, reading a waitlist position, and state versions that never repeat
 * for a key (the floor kept in hist.c). Time is the write's timestamp, so
 * expiry is tested without sleeping. */
#define STORE_NAME "seatmap"
#include "store.h"

#include "hist.h"
#include "msg.h"
#include "mpack.h"
#include "seatmap.h"

#define CHAN "seats:e1"


/* Runs one seat request at time @ts. Return: the write's status; *@res the report. */
/* The channels the last run published on (hist_tx_publish()), "name," each. */
static char sides[512];

static int run(seat_req_t *r, int64_t ts, json_t **res)
{
    hist_state_op_t op = { .type = HIST_OP_CUSTOM, .custom = seatmap_apply, .arg = r };
    hist_write_t w = { .chan = CHAN, .chanlen = strlen(CHAN), .ts = ts, .keep = 1000, .ops = &op, .nops = 1 };
    int rc = hist_write_batch(h, &w, 1);

    assert_true(rc == 0 || rc == HIST_E_REFUSED);
    sides[0] = '\0';
    for (hist_side_t *s = w.side; s; s = s->next)
        snprintf(sides + strlen(sides), sizeof sides - strlen(sides), "%s,", s->chan);
    hist_sides_free(w.side);
    free(w.state_rec);
    if (res) *res = w.result;
    else json_decref(w.result);
    return w.status;
}

/* The channel's state as {key: value}. */
static json_t *state(void)
{
    hist_state_t st;
    json_t *o = json_object();

    assert_int_equal(hist_state_read(h, CHAN, strlen(CHAN), "", 0, NULL, 0, 0, &st), 0);
    for (size_t i = 0; i < st.n; i++) {
        char reason[PROTO_REASON_MAX], key[300];
        json_t *v = NULL;
        assert_int_equal(mpack_decode(st.kv[i].val, st.kv[i].vallen, &v, reason), 0);
        snprintf(key, sizeof key, "%.*s", (int)st.kv[i].keylen, st.kv[i].key);
        json_object_set_new(o, key, v);
    }
    hist_state_free(&st);
    return o;
}

static const char *status_of(json_t *st, const char *seat)
{
    char key[80];
    snprintf(key, sizeof key, "seat:%s", seat);
    return json_string_value(json_object_get(json_object_get(st, key), "status"));
}

/* Every section's counts equal what its seats say. */
static void check_counts(json_t *st)
{
    json_t *want = json_object(), *v;
    const char *key;

    json_object_foreach(st, key, v) {
        json_t *n;
        char name[80];
        if (strncmp(key, "seat:", 5)) continue;
        snprintf(name, sizeof name, "section:%s", json_string_value(json_object_get(v, "section")));
        if (!(n = json_object_get(want, name))) {
            n = json_pack("{s:i,s:i,s:i,s:i}", "total", 0, "free", 0, "held", 0, "booked", 0);
            json_object_set_new(want, name, n);
        }
        json_object_set_new(n, "total", json_integer(json_integer_value(json_object_get(n, "total")) + 1));
        json_object_set_new(n, json_string_value(json_object_get(v, "status")),
                            json_integer(json_integer_value(json_object_get(n,
                                json_string_value(json_object_get(v, "status")))) + 1));
    }
    json_object_foreach(want, key, v) {
        json_t *got = json_object_get(st, key);
        assert_non_null(got);
        json_t *copy = json_deep_copy(got);
        json_object_del(copy, "waiting");
        if (!json_equal(copy, v)) {
            char *a = json_dumps(copy, 0), *b = json_dumps(v, 0);
            print_error("%s: stored %s, seats say %s\n", key, a, b);
            free(a);
            free(b);
            fail();
        }
        json_decref(copy);
    }
    json_decref(want);
}

static seat_req_t req(enum seat_action a, const char *user, json_t *seats)
{
    seat_req_t r = { .action = a, .user = user, .seats = seats, .offer_ttl_ms = 60000, .waitlist_max = 2 };
    return r;
}

static void define(const char *spec, int64_t ts)
{
    json_error_t e;
    json_t *seats = json_loads(spec, 0, &e);
    seat_req_t r = req(SEAT_DEFINE, NULL, seats);
    assert_non_null(seats);
    assert_int_equal(run(&r, ts, NULL), 0);
    json_decref(seats);
}

/* A hold of @a and @b by @user is refused with @code, naming only @named. */
static void refused_hold(const char *user, const char *a, const char *b, int code, const char *named)
{
    json_t *res, *ids = json_pack("[s,s]", a, b);
    seat_req_t r = req(SEAT_HOLD, user, ids);

    r.ttl_ms = 5000;
    assert_int_equal(run(&r, 1100, &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), code);
    assert_int_equal(json_array_size(json_object_get(res, "seats")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(res, "seats"), 0)), named);
    json_decref(res);
    json_decref(ids);
}

static void test_hold_all_or_none(void **unused)
{
    json_t *res, *st, *ids;
    seat_req_t r;
    (void)unused;

    define("[{\"id\":\"A1\",\"section\":\"A\"},{\"id\":\"A2\",\"section\":\"A\"},{\"id\":\"A3\",\"section\":\"A\"},"
           "{\"id\":\"B1\",\"section\":\"B\",\"price_class\":\"vip\"}]", 1000);
    ids = json_pack("[s,s]", "A1", "A2");
    r = req(SEAT_HOLD, "alice", ids);
    r.ttl_ms = 5000;
    assert_int_equal(run(&r, 1000, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "expires")), 6000);
    json_decref(res);
    json_decref(ids);

    /* bob wants A2 (alice's) and A3 (free): nothing is held. */
    refused_hold("bob", "A3", "A2", PROTO_E_SEATS_TAKEN, "A2");
    /* Unknown seats are named. */
    refused_hold("bob", "A3", "Z9", PROTO_E_UNKNOWN_SEAT, "Z9");

    st = state();
    assert_string_equal(status_of(st, "A1"), "held");
    assert_string_equal(status_of(st, "A2"), "held");
    assert_string_equal(status_of(st, "A3"), "free");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "section:A"), "held")), 2);
    check_counts(st);
    json_decref(st);
}

/* Counts due timers; the only one is A2's. */
static void collect(void *ctx, int64_t at, const char *chan, size_t cl, const char *key, size_t kl)
{
    (void)at;
    assert_int_equal(cl, strlen(CHAN));
    assert_memory_equal(chan, CHAN, cl);
    assert_int_equal(kl, 7);
    assert_memory_equal(key, "seat:A2", 7);
    (*(int *)ctx)++;
}

static void test_confirm_and_expiry(void **unused)
{
    json_t *res, *st, *ids = json_pack("[s]", "A1");
    seat_req_t r;
    int64_t next;
    int due = 0;
    (void)unused;

    /* Only the holder confirms. */
    r = req(SEAT_CONFIRM, "bob", ids);
    assert_int_equal(run(&r, 2000, &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_NOT_HELD);
    json_decref(res);
    /* Not after the hold expired (6000), even before its timer freed it. */
    r = req(SEAT_CONFIRM, "alice", ids);
    assert_int_equal(run(&r, 6000, &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_NOT_HELD);
    json_decref(res);
    assert_string_equal(sides, "");              /* refused: no ticket */
    r.feed = "feed:tickets";
    assert_int_equal(run(&r, 5999, NULL), 0);
    assert_string_equal(sides, "user:alice,feed:tickets,");   /* the ticket, with the booking */
    json_decref(ids);

    /* A1 booked: its timer is gone; A2's is due at 6000. */
    assert_int_equal(hist_timers_due(h, 5999, 100, collect, &due, &next), 0);
    assert_int_equal(due, 0);
    assert_int_equal(next, 6000);
    assert_int_equal(hist_timers_due(h, 6000, 100, collect, &due, &next), 0);
    assert_int_equal(due, 1);

    /* The expiry frees A2, once. */
    ids = json_pack("[s]", "A2");
    r = req(SEAT_EXPIRE, NULL, ids);
    r.at_ms = 6000;
    assert_int_equal(run(&r, 6001, &res), 0);
    assert_int_equal(json_array_size(json_object_get(res, "seats")), 1);
    json_decref(res);
    assert_int_equal(run(&r, 6002, &res), 0);
    assert_int_equal(json_array_size(json_object_get(res, "seats")), 0);
    json_decref(res);
    json_decref(ids);
    due = 0;
    assert_int_equal(hist_timers_due(h, 99999, 100, collect, &due, &next), 0);
    assert_int_equal(due, 0);

    st = state();
    assert_string_equal(status_of(st, "A1"), "booked");
    assert_string_equal(status_of(st, "A2"), "free");
    check_counts(st);
    json_decref(st);
}


static void test_waitlist(void **unused)
{
    json_t *res, *st, *ids = json_pack("[s,s]", "A2", "A3");
    seat_req_t r;
    (void)unused;

    r = req(SEAT_HOLD, "carol", ids);
    r.ttl_ms = 60000;
    assert_int_equal(run(&r, 7000, NULL), 0);           /* section A: booked, held, held */
    r = req(SEAT_WAIT, "dave", NULL);
    r.section = "A";
    assert_int_equal(run(&r, 7001, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "position")), 1);
    json_decref(res);
    assert_int_equal(run(&r, 7002, &res), 0);           /* twice: same place */
    assert_int_equal(json_integer_value(json_object_get(res, "position")), 1);
    json_decref(res);
    r.user = "erin";
    assert_int_equal(run(&r, 7003, NULL), 0);
    r.user = "frank";                                   /* waitlist_max is 2 */
    assert_int_equal(run(&r, 7004, &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_LIMIT);
    json_decref(res);
    r.section = "nope";
    assert_int_equal(run(&r, 7004, &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_UNKNOWN_SEAT);
    json_decref(res);

    /* carol lets A3 go: it is offered to dave, the head of the queue. */
    json_decref(ids);
    ids = json_pack("[s]", "A3");
    r = req(SEAT_RELEASE, "carol", ids);
    assert_int_equal(run(&r, 8000, &res), 0);
    assert_int_equal(json_array_size(json_object_get(res, "offers")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(res, "offers"), 0), "user")),
                        "dave");
    json_decref(res);
    st = state();
    assert_string_equal(json_string_value(json_object_get(json_object_get(st, "seat:A3"), "holder")), "dave");
    assert_true(json_is_true(json_object_get(json_object_get(st, "seat:A3"), "offer")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "section:A"), "waiting")), 1);
    check_counts(st);
    json_decref(st);

    /* erin leaves the queue. */
    r = req(SEAT_UNWAIT, "erin", NULL);
    r.section = "A";
    assert_int_equal(run(&r, 8001, NULL), 0);
    st = state();
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "section:A"), "waiting")), 0);
    json_decref(st);
    json_decref(ids);
}

static void test_redefine(void **unused)
{
    json_t *res, *st, *seats;
    json_error_t e;
    seat_req_t r;
    (void)unused;

    /* Dropping A2 (held by carol) is refused; nothing changes. */
    seats = json_loads("[{\"id\":\"A1\",\"section\":\"A\"},{\"id\":\"A3\",\"section\":\"A\"}]", 0, &e);
    r = req(SEAT_DEFINE, NULL, seats);
    assert_int_equal(run(&r, 9000, &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_SEATS_TAKEN);
    assert_string_equal(json_string_value(json_array_get(json_object_get(res, "seats"), 0)), "A2");
    json_decref(res);
    json_decref(seats);

    /* Dropping free B1, moving A3 (held) to section C, adding C2: statuses stay, counts follow. */
    seats = json_loads("[{\"id\":\"A1\",\"section\":\"A\"},{\"id\":\"A2\",\"section\":\"A\"},"
                       "{\"id\":\"A3\",\"section\":\"C\"},{\"id\":\"C2\",\"section\":\"C\"}]", 0, &e);
    r = req(SEAT_DEFINE, NULL, seats);
    assert_int_equal(run(&r, 9001, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "seats")), 4);
    json_decref(res);
    json_decref(seats);
    st = state();
    assert_null(json_object_get(st, "seat:B1"));
    assert_null(json_object_get(st, "section:B"));
    assert_string_equal(status_of(st, "A1"), "booked");
    assert_string_equal(status_of(st, "A3"), "held");
    assert_string_equal(status_of(st, "C2"), "free");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "section:C"), "total")), 2);
    check_counts(st);
    json_decref(st);
}


static int64_t expires_of(json_t *st, const char *seat)
{
    char key[80];
    snprintf(key, sizeof key, "seat:%s", seat);
    return json_integer_value(json_object_get(json_object_get(st, key), "expires"));
}

/* Section R (R1, R2, R3) is added beside what the tests above left. */
static void test_rehold_never_shortens(void **unused)
{
    json_t *res, *st, *seats, *ids;
    json_error_t e;
    seat_req_t r;
    (void)unused;

    seats = json_loads("[{\"id\":\"R1\",\"section\":\"R\"},{\"id\":\"R2\",\"section\":\"R\"},"
                       "{\"id\":\"R3\",\"section\":\"R\"}]", 0, &e);
    r = req(SEAT_ADD, NULL, seats);
    assert_int_equal(run(&r, 10000, NULL), 0);
    json_decref(seats);

    ids = json_pack("[s]", "R1");
    r = req(SEAT_HOLD, "alice", ids);
    r.ttl_ms = 60000;
    assert_int_equal(run(&r, 10000, NULL), 0);          /* until 70000 */
    r.ttl_ms = 1000;
    assert_int_equal(run(&r, 11000, &res), 0);          /* asks for 12000: keeps 70000 */
    assert_int_equal(json_integer_value(json_object_get(res, "expires")), 70000);
    json_decref(res);
    json_decref(ids);

    /* R1 (long) with R2 (new): each keeps the later expiry; the answer is the earliest. */
    ids = json_pack("[s,s]", "R1", "R2");
    r = req(SEAT_HOLD, "alice", ids);
    r.ttl_ms = 2000;
    assert_int_equal(run(&r, 12000, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "expires")), 14000);
    json_decref(res);
    st = state();
    assert_int_equal(expires_of(st, "R1"), 70000);
    assert_int_equal(expires_of(st, "R2"), 14000);
    check_counts(st);
    json_decref(st);
    /* A longer ttl extends. */
    r.ttl_ms = 100000;
    assert_int_equal(run(&r, 13000, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "expires")), 113000);
    json_decref(res);
    json_decref(ids);
}

/* A timer freeing a hold, and another user taking a hold that ran out
 * before its timer, both report it in "expired". */
static void test_expired_reported(void **unused)
{
    json_t *res, *ids, *x;
    seat_req_t r;
    (void)unused;

    ids = json_pack("[s]", "R3");
    r = req(SEAT_HOLD, "bob", ids);
    r.ttl_ms = 1000;
    assert_int_equal(run(&r, 20000, NULL), 0);          /* until 21000 */
    r = req(SEAT_EXPIRE, NULL, ids);
    r.at_ms = 21000;
    assert_int_equal(run(&r, 21001, &res), 0);
    assert_int_equal(json_array_size(json_object_get(res, "expired")), 1);
    x = json_array_get(json_object_get(res, "expired"), 0);
    assert_string_equal(json_string_value(json_object_get(x, "user")), "bob");
    assert_string_equal(json_string_value(json_object_get(x, "seat")), "R3");
    assert_string_equal(json_string_value(json_object_get(x, "section")), "R");
    assert_int_equal(json_integer_value(json_object_get(x, "expires")), 21000);
    assert_true(json_is_false(json_object_get(x, "offer")));
    json_decref(res);

    r = req(SEAT_HOLD, "bob", ids);
    r.ttl_ms = 1000;
    assert_int_equal(run(&r, 30000, NULL), 0);          /* until 31000; its timer has not run */
    r = req(SEAT_HOLD, "carol", ids);
    r.ttl_ms = 1000;
    assert_int_equal(run(&r, 32000, &res), 0);
    assert_int_equal(json_array_size(json_object_get(res, "expired")), 1);
    x = json_array_get(json_object_get(res, "expired"), 0);
    assert_string_equal(json_string_value(json_object_get(x, "user")), "bob");
    assert_int_equal(json_integer_value(json_object_get(x, "expires")), 31000);
    json_decref(res);
    /* A re-hold by the holder reports nothing. */
    assert_int_equal(run(&r, 32500, &res), 0);
    assert_int_equal(json_array_size(json_object_get(res, "expired")), 0);
    json_decref(res);
    json_decref(ids);
}

static void test_waitlist_position(void **unused)
{
    json_t *res, *st;
    seat_req_t r;
    const char *who[] = { "u1", "u2" };
    (void)unused;

    /* Section R is all held: u1, u2 queue. */
    for (size_t i = 0; i < 2; i++) {
        r = req(SEAT_WAIT, who[i], NULL);
        r.section = "R";
        assert_int_equal(run(&r, 33000, NULL), 0);
    }
    st = state();
    r = req(SEAT_POSITION, "u2", NULL);
    r.section = "R";
    assert_int_equal(run(&r, 33001, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "position")), 2);
    assert_int_equal(json_integer_value(json_object_get(res, "waiting")), 2);
    json_decref(res);
    r.user = "nobody";
    assert_int_equal(run(&r, 33002, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "position")), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "waiting")), 2);
    json_decref(res);
    r.section = "nope";
    assert_int_equal(run(&r, 33003, &res), HIST_E_REFUSED);
    assert_int_equal(json_integer_value(json_object_get(res, "code")), PROTO_E_UNKNOWN_SEAT);
    json_decref(res);
    /* A read: the state is as it was. */
    res = state();
    assert_true(json_equal(res, st));
    json_decref(res);
    json_decref(st);
}

/* Generic state ops on another channel: @n ops at time @ts; the versions of
 * the changes written go to @versions (in order). Return: the status. */
static int run_ops(const hist_state_op_t *ops, size_t n, int64_t ts, uint64_t *versions, size_t *nver)
{
    static const char chan[] = "scores:v";
    hist_write_t w = { .chan = chan, .chanlen = strlen(chan), .ts = ts, .keep = 1000, .ops = ops, .nops = n };
    char reason[PROTO_REASON_MAX];
    json_t *rec = NULL, *ch;
    size_t i;

    assert_int_equal(hist_write_batch(h, &w, 1), 0);
    *nver = 0;
    if (!w.status) {
        assert_int_equal(mpack_decode(w.state_rec, w.state_reclen, &rec, reason), 0);
        json_array_foreach(json_object_get(json_object_get(rec, "data"), "changes"), i, ch)
            if (json_object_get(ch, "version"))
                versions[(*nver)++] = (uint64_t)json_integer_value(json_object_get(ch, "version"));
        json_decref(rec);
    }
    free(w.state_rec);
    json_decref(w.result);
    return w.status;
}

/* A key's versions never repeat: not after a delete, not after a reset. */
static void test_versions_never_repeat(void **unused)
{
    static const unsigned char one[] = { 0x01 };       /* MessagePack 1 */
    hist_state_op_t set_k = { .type = HIST_OP_SET, .key = "k", .keylen = 1, .val = one, .vallen = 1 };
    hist_state_op_t set_j = { .type = HIST_OP_SET, .key = "j", .keylen = 1, .val = one, .vallen = 1 };
    hist_state_op_t del_k = { .type = HIST_OP_DELETE, .key = "k", .keylen = 1 };
    hist_state_op_t reset = { .type = HIST_OP_RESET };
    hist_state_op_t cas_k = { .type = HIST_OP_CAS, .key = "k", .keylen = 1, .val = one, .vallen = 1 };
    hist_state_op_t two[2];
    uint64_t v[4];
    size_t n;
    (void)unused;

    assert_int_equal(run_ops(&set_k, 1, 40000, v, &n), 0);
    assert_int_equal(v[0], 1);
    assert_int_equal(run_ops(&set_k, 1, 40001, v, &n), 0);
    assert_int_equal(run_ops(&set_k, 1, 40002, v, &n), 0);
    assert_int_equal(v[0], 3);
    assert_int_equal(run_ops(&set_j, 1, 40003, v, &n), 0);
    assert_int_equal(v[0], 1);                          /* no key was deleted yet */
    assert_int_equal(run_ops(&del_k, 1, 40004, v, &n), 0);
    assert_int_equal(run_ops(&set_k, 1, 40005, v, &n), 0);
    assert_int_equal(v[0], 4);                          /* above the deleted k's 3 */
    cas_k.version = 1;                                  /* a cas from k's first life */
    assert_int_equal(run_ops(&cas_k, 1, 40006, v, &n), HIST_E_CONFLICT);
    cas_k.version = 4;
    assert_int_equal(run_ops(&cas_k, 1, 40007, v, &n), 0);
    assert_int_equal(v[0], 5);
    /* A reset, then both keys in the same request: above 5. */
    two[0] = reset;
    two[1] = set_j;
    assert_int_equal(run_ops(two, 2, 40008, v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0], 6);
    assert_int_equal(run_ops(&set_k, 1, 40009, v, &n), 0);
    assert_int_equal(v[0], 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* In order: each starts from the map the previous one left. */
        cmocka_unit_test(test_hold_all_or_none),
        cmocka_unit_test(test_confirm_and_expiry),
        cmocka_unit_test(test_waitlist),
        cmocka_unit_test(test_redefine),
        cmocka_unit_test(test_rehold_never_shortens),
        cmocka_unit_test(test_expired_reported),
        cmocka_unit_test(test_waitlist_position),
        cmocka_unit_test(test_versions_never_repeat),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
