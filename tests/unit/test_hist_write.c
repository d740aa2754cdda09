/* tests/unit/test_hist_write.c - the conditions of a write in storage/hist.c
 * on a temporary LMDB environment: idempotency keys (a repeat within the
 * window appends nothing and answers the first offset, in one batch or
 * across batches; the window ends; hist_idem_prune() forgets keys by the
 * age of their last use; a key reused with another request digest is told
 * apart, a record or request without a digest matches any) and the check on another offset's record (refusal
 * appends nothing, the rest of the batch goes on), with the author rule of
 * protocol/record.c (rec_same_author()) that the broker plugs into it; and
 * the publications a custom operation makes on other channels
 * (hist_tx_publish(), hist_tx_event()): offsets continue after the stored
 * log under its epoch, a new log starts at 1, a channel without history is
 * handed back unstored, keep trims, and a refused operation leaves nothing. */
#define STORE_NAME "hist-write"
#include "store.h"

#include <errno.h>

#include "hist.h"
#include "record.h"

#define CHAN "chat:t"


/* A record by @user (NULL: the server; "~id": anonymous client id), replying to @reply_to. */
static void record(wbuf_t *b, const char *user, uint64_t reply_to)
{
    json_t *from = NULL, *data = json_string("x");
    if (user && user[0] == '~') from = json_pack("{s:s}", "client", user + 1);
    else if (user) from = json_pack("{s:s,s:s}", "user", user, "client", "c0ffee");
    wbuf_reset(b);
    rec_build(b, 1000, data, from, reply_to, reply_to ? "edit" : NULL);
    json_decref(from);
    json_decref(data);
}

static hist_write_t item(const wbuf_t *rec, int64_t ts, const char *key)
{
    hist_write_t w = { .chan = CHAN, .chanlen = strlen(CHAN), .rec = rec->p, .reclen = rec->len, .ts = ts,
                       .keep = 100, .idem_key = key, .idem_len = key ? strlen(key) : 0, .idem_window_ms = 1000 };
    return w;
}

static uint64_t entries(void)
{
    uint64_t n, bytes;
    assert_int_equal(hist_stat(h, CHAN, strlen(CHAN), &n, &bytes), 0);
    return n;
}

static void test_idempotency_keys(void **state)
{
    hist_write_t w[3];
    wbuf_t rec;

    (void)state;
    wbuf_init(&rec);
    record(&rec, "alice", 0);
    /* The first use appends; a repeat in the same batch answers it. */
    w[0] = item(&rec, 10000, "k1");
    w[1] = item(&rec, 10001, "k1");
    w[2] = item(&rec, 10002, "k2");
    assert_int_equal(hist_write_batch(h, w, 3), 0);
    assert_int_equal(w[0].offset, 1);
    assert_false(w[0].duplicate);
    assert_true(w[1].duplicate);
    assert_int_equal(w[1].offset, 1);
    assert_int_equal(w[2].offset, 2);
    assert_int_equal(entries(), 2);
    /* Across batches, within the window. */
    w[0] = item(&rec, 10900, "k1");
    assert_int_equal(hist_write_batch(h, w, 1), 0);
    assert_true(w[0].duplicate);
    assert_int_equal(w[0].offset, 1);
    /* After the window the key makes a new publication, and is remembered anew. */
    w[0] = item(&rec, 11500, "k1");
    assert_int_equal(hist_write_batch(h, w, 1), 0);
    assert_false(w[0].duplicate);
    assert_int_equal(w[0].offset, 3);
    /* Pruning forgets k2 (used at 10002), not k1, whose use at 10000 was
     * replaced by the one at 11500. */
    assert_int_equal(hist_idem_prune(h, 11000, 100), 1);
    w[0] = item(&rec, 11600, "k1");
    w[1] = item(&rec, 11600, "k2");
    assert_int_equal(hist_write_batch(h, w, 2), 0);
    assert_true(w[0].duplicate);
    assert_int_equal(w[0].offset, 3);
    assert_false(w[1].duplicate);
    assert_int_equal(w[1].offset, 4);
    assert_int_equal(hist_idem_prune(h, 11000, 100), 0);
    wbuf_deinit(&rec);
}

static int author_check(const unsigned char *rec, size_t len, const unsigned char *target, size_t tlen)
{
    if (!target) return 2;
    return rec_same_author(rec, len, target, tlen) ? 0 : 1;
}

static void test_check_another_record(void **state)
{
    hist_write_t w[3];
    wbuf_t a, b, e1, e2;
    uint64_t before;

    (void)state;
    wbuf_init(&a);
    wbuf_init(&b);
    wbuf_init(&e1);
    wbuf_init(&e2);
    record(&a, "alice", 0);
    w[0] = item(&a, 20000, NULL);
    assert_int_equal(hist_write_batch(h, w, 1), 0);
    before = entries();
    /* bob's edit is refused, alice's in the same batch goes on. */
    record(&e1, "bob", w[0].offset);
    record(&e2, "alice", w[0].offset);
    w[1] = item(&e1, 20001, NULL);
    w[1].check_offset = w[0].offset;
    w[1].check = author_check;
    w[2] = item(&e2, 20002, NULL);
    w[2].check_offset = w[0].offset;
    w[2].check = author_check;
    assert_int_equal(hist_write_batch(h, w + 1, 2), 0);
    assert_int_equal(w[1].status, HIST_E_CHECK);
    assert_int_equal(w[1].check_result, 1);
    assert_int_equal(w[1].offset, 0);
    assert_int_equal(w[2].status, 0);
    assert_int_equal(entries(), before + 1);
    /* An offset with no record: the check sees NULL. */
    w[1].check_offset = 999;
    assert_int_equal(hist_write_batch(h, w + 1, 1), 0);
    assert_int_equal(w[1].status, HIST_E_CHECK);
    assert_int_equal(w[1].check_result, 2);
    wbuf_deinit(&a);
    wbuf_deinit(&b);
    wbuf_deinit(&e1);
    wbuf_deinit(&e2);
}

static void test_same_author(void **state)
{
    wbuf_t a, b;
    (void)state;
    wbuf_init(&a);
    wbuf_init(&b);
    record(&a, "alice", 0);
    record(&b, "alice", 1);
    assert_true(rec_same_author(b.p, b.len, a.p, a.len));
    record(&b, "bob", 1);
    assert_false(rec_same_author(b.p, b.len, a.p, a.len));
    /* Anonymous: the same client id, never a user's publication. */
    record(&a, "~c0ffee", 0);
    record(&b, "~c0ffee", 1);
    assert_true(rec_same_author(b.p, b.len, a.p, a.len));
    record(&b, "alice", 1);                     /* a user whose client id happens to match */
    assert_false(rec_same_author(b.p, b.len, a.p, a.len));
    record(&b, "~other", 1);
    assert_false(rec_same_author(b.p, b.len, a.p, a.len));
    /* The server's publications have no author. */
    record(&a, NULL, 0);
    record(&b, NULL, 1);
    assert_false(rec_same_author(b.p, b.len, a.p, a.len));
    /* Damaged records are nobody's. */
    assert_false(rec_same_author((const unsigned char *)"\x81\xa4" "from", 6, a.p, a.len));
    wbuf_deinit(&a);
    wbuf_deinit(&b);
}

/* A key kept with a digest answers the same digest as a retry and another
 * one as a reuse (idem_differs); without a digest on either side, any
 * request is a retry, as before digests. Offsets are relative: the channel
 * is shared with the tests before. */
static void test_idempotency_digests(void **state)
{
    unsigned char d1[HIST_IDEM_DIGEST], d2[HIST_IDEM_DIGEST];
    hist_write_t w[2];
    uint64_t first, n;
    wbuf_t rec;

    (void)state;
    memset(d1, 1, sizeof d1);
    memset(d2, 2, sizeof d2);
    wbuf_init(&rec);
    record(&rec, "alice", 0);
    w[0] = item(&rec, 50000, "dg");
    w[0].idem_digest = d1;
    assert_int_equal(hist_write_batch(h, w, 1), 0);
    assert_false(w[0].duplicate);
    first = w[0].offset;
    n = entries();
    /* The same digest: a retry. Another: a reuse, nothing appended. */
    w[0] = item(&rec, 50100, "dg");
    w[0].idem_digest = d1;
    w[1] = item(&rec, 50100, "dg");
    w[1].idem_digest = d2;
    assert_int_equal(hist_write_batch(h, w, 2), 0);
    assert_true(w[0].duplicate);
    assert_false(w[0].idem_differs);
    assert_int_equal(w[0].offset, first);
    assert_true(w[1].duplicate);
    assert_true(w[1].idem_differs);
    assert_int_equal(w[1].offset, first);
    /* A request without a digest cannot be compared: a retry. */
    w[0] = item(&rec, 50200, "dg");
    assert_int_equal(hist_write_batch(h, w, 1), 0);
    assert_true(w[0].duplicate);
    assert_false(w[0].idem_differs);
    /* A key kept without a digest (as before digests) matches any. */
    w[0] = item(&rec, 50300, "nodg");
    assert_int_equal(hist_write_batch(h, w, 1), 0);
    assert_false(w[0].duplicate);
    w[1] = item(&rec, 50400, "nodg");
    w[1].idem_digest = d2;
    assert_int_equal(hist_write_batch(h, &w[1], 1), 0);
    assert_true(w[1].duplicate);
    assert_false(w[1].idem_differs);
    assert_int_equal(w[1].offset, w[0].offset);
    assert_int_equal(entries(), n + 1);
    /* Pruning forgets keys with digests as it does the others. */
    assert_true(hist_idem_prune(h, 60000, 100) >= 2);
    w[0] = item(&rec, 60000, "dg");
    w[0].idem_digest = d2;
    assert_int_equal(hist_write_batch(h, w, 1), 0);
    assert_false(w[0].duplicate);
    wbuf_deinit(&rec);
}

/* ---- side publications: a custom op publishing on other channels ---- */

/* "feed:" keeps no history, "state:" takes no side publications, "user:"
 * channels keep 3 entries and go to webhook "h1". */
static void target(const char *chan, size_t len, hist_target_t *out)
{
    (void)len;
    out->refused = !strncmp(chan, "state:", 6);
    out->history = strncmp(chan, "feed:", 5) != 0;
    out->keep = 3;
    out->nhooks = 0;
    if (!strncmp(chan, "user:", 5)) {
        out->hooks[0] = "h1";
        out->nhooks = 1;
    }
    if (!strcmp(chan, "kept:x")) {              /* forgotten by the store, kept by the loop at 41 */
        out->base_offset = 41;
        strcpy(out->epoch, "fedcba9876543210");
    }
}

struct side_arg {
    const wbuf_t *rec;
    const char *const *chans;     /* NULL-terminated */
    int refuse;                   /* publish, then refuse */
    int change;                   /* also change the op's own state */
    int rc[8];                    /* [out] hist_tx_publish() per channel */
    uint64_t off[8];
};

static int side_op(hist_tx_t *tx, const void *varg)
{
    struct side_arg *a = (struct side_arg *)varg;
    static const char *const hooks[] = { "h1" };
    json_t *v = json_integer(1), *ev = json_pack("{s:s}", "type", "order.status");
    int rc = 0;

    if (a->change) rc = hist_tx_put(tx, "k", 1, v);
    for (int i = 0; !rc && a->chans[i]; i++) {
        a->rc[i] = hist_tx_publish(tx, a->chans[i], strlen(a->chans[i]), a->rec->p, a->rec->len, &a->off[i]);
        if (a->rc[i] && a->rc[i] != EINVAL) rc = a->rc[i];
    }
    if (!rc) rc = hist_tx_event(tx, hooks, 1, ev);
    json_decref(v);
    json_decref(ev);
    if (!rc && a->refuse) {
        hist_tx_result(tx, json_pack("{s:i,s:s}", "code", 107, "reason", "no"));
        return HIST_E_REFUSED;
    }
    return rc;
}

static hist_write_t op_item(const hist_state_op_t *op, int64_t ts)
{
    hist_write_t w = { .chan = "stock:s", .chanlen = 7, .ts = ts, .keep = 100, .ops = op, .nops = 1,
                       .target = target };
    return w;
}

static size_t queued(const char *hook)
{
    uint64_t n;
    int64_t oldest;
    assert_int_equal(hist_outbox_depth(h, hook, 0, &n, &oldest), 0);
    return (size_t)n;
}

static void test_side_publications(void **state)
{
    static const char *const chans[] = { "user:bob", "user:new", "feed:x", "stock:s", "state:y", "kept:x", NULL };
    struct side_arg a = { 0 };
    hist_state_op_t op = { .type = HIST_OP_CUSTOM, .custom = side_op, .arg = &a };
    hist_write_t w, pre[2];
    hist_result_t res;
    hist_side_t *s;
    wbuf_t rec;

    (void)state;
    wbuf_init(&rec);
    record(&rec, NULL, 0);
    a.rec = &rec;
    a.chans = chans;
    /* user:bob has a log already: offsets 1-2 under the epoch the loop gave it. */
    pre[0] = item(&rec, 20000, NULL);
    pre[0].chan = "user:bob";
    pre[0].chanlen = 8;
    pre[0].epoch = "0123456789abcdef";
    pre[1] = pre[0];
    assert_int_equal(hist_write_batch(h, pre, 2), 0);
    assert_int_equal(pre[1].offset, 2);

    /* A refused operation leaves no side publication and no event behind. */
    a.refuse = 1;
    a.change = 1;
    w = op_item(&op, 20100);
    assert_int_equal(hist_write_batch(h, &w, 1), 0);
    assert_int_equal(w.status, HIST_E_REFUSED);
    assert_null(w.side);
    assert_int_equal(a.off[0], 3);               /* it was written, then went with the transaction */
    assert_int_equal(queued("h1"), 0);
    assert_int_equal(hist_read(h, "user:bob", 8, 0, 0, 10, 0, &res), 0);
    assert_int_equal(res.chan.last_offset, 2);
    assert_int_equal(res.n, 2);
    hist_result_free(&res);
    assert_int_equal(hist_read(h, "user:new", 8, 0, 0, 10, 0, &res), 0);
    assert_false(res.found);
    hist_result_free(&res);
    json_decref(w.result);

    /* Committed: offsets continue after the stored ones, under the stored epoch. */
    a.refuse = 0;
    w = op_item(&op, 20200);
    assert_int_equal(hist_write_batch(h, &w, 1), 0);
    assert_int_equal(w.status, 0);
    assert_false(w.unchanged);
    assert_int_equal(a.rc[3], EINVAL);           /* its own channel */
    assert_int_equal(a.rc[4], EINVAL);           /* refused by the policy */
    s = w.side;
    assert_non_null(s);
    assert_string_equal(s->chan, "user:bob");
    assert_int_equal(s->offset, 3);
    assert_string_equal(s->epoch, "0123456789abcdef");
    assert_int_equal(s->ts, 20200);
    assert_memory_equal(s->rec, rec.p, rec.len);
    s = s->next;
    assert_string_equal(s->chan, "user:new");    /* a new log: offset 1, an epoch of its own */
    assert_int_equal(s->offset, 1);
    assert_int_equal(strlen(s->epoch), HIST_EPOCH_LEN);
    s = s->next;
    assert_string_equal(s->chan, "feed:x");      /* no history: handed back unnumbered, not stored */
    assert_int_equal(s->offset, 0);
    s = s->next;
    assert_string_equal(s->chan, "kept:x");      /* a new log continues the policy's base and epoch */
    assert_int_equal(s->offset, 42);
    assert_string_equal(s->epoch, "fedcba9876543210");
    assert_null(s->next);
    assert_int_equal(hist_read(h, "feed:x", 6, 0, 0, 10, 0, &res), 0);
    assert_false(res.found);
    hist_result_free(&res);
    assert_int_equal(hist_read(h, "user:bob", 8, 0, 0, 10, 0, &res), 0);
    assert_int_equal(res.n, 3);
    assert_int_equal(res.entries[2].offset, 3);
    assert_int_equal(res.entries[2].ts, 20200);
    assert_memory_equal(res.entries[2].rec, rec.p, rec.len);
    hist_result_free(&res);
    /* Two "publication" events (the user: channels) and the op's own event. */
    assert_int_equal(queued("h1"), 3);
    hist_sides_free(w.side);
    free(w.state_rec);
    json_decref(w.result);

    /* An op that changes no state of its own still commits what it published;
     * keep (3) trims user:bob's oldest entry. */
    a.change = 0;
    w = op_item(&op, 20300);
    assert_int_equal(hist_write_batch(h, &w, 1), 0);
    assert_int_equal(w.status, 0);
    assert_true(w.unchanged);
    assert_non_null(w.side);
    assert_int_equal(w.side->offset, 4);
    assert_int_equal(w.side->next->offset, 2);
    assert_int_equal(hist_read(h, "user:bob", 8, 0, 0, 10, 0, &res), 0);
    assert_int_equal(res.chan.first_offset, 2);
    assert_int_equal(res.chan.last_offset, 4);
    assert_int_equal(res.n, 3);
    hist_result_free(&res);
    /* A later publication of its own continues after the side ones. */
    pre[0] = item(&rec, 20400, NULL);
    pre[0].chan = "user:bob";
    pre[0].chanlen = 8;
    assert_int_equal(hist_write_batch(h, pre, 1), 0);
    assert_int_equal(pre[0].offset, 5);
    assert_string_equal(pre[0].stored_epoch, "0123456789abcdef");
    hist_sides_free(w.side);
    free(w.state_rec);
    json_decref(w.result);
    wbuf_deinit(&rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idempotency_keys),
        cmocka_unit_test(test_check_another_record),
        cmocka_unit_test(test_same_author),
        cmocka_unit_test(test_idempotency_digests),
        cmocka_unit_test(test_side_publications),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
