/* tests/unit/test_hc_codec.c - the C client library's codec (clients/hc_codec.c)
 * for state channels and seat maps: requests that carry "ops" or extra fields,
 * and the "state" and "changes" views of subscribed, snapshot, updated and
 * seats messages, in JSON and in MessagePack. MessagePack bytes are checked
 * by decoding them with the broker's own decoder (protocol/mpack.c). */
#include "unit.h"

#include <jansson.h>

#include "hc_codec.h"
#include "mpack.h"

static void test_json_requests(void **unused)
{
    static const char ops[] = "[{\"op\":\"incr\",\"key\":\"home\"}]";
    struct hc_extra x = { .dkey = "ops", .data = ops, .dlen = sizeof ops - 1 };
    unsigned char out[512];
    size_t n;
    (void)unused;

    n = hc_encode_request(HERALD_JSON, "state", 7, "scores:g", 8, &x, out, sizeof out);
    assert_bytes_equal(out, n, "{\"op\":\"state\",\"id\":7,\"channel\":\"scores:g\",\"ops\":[{\"op\":\"incr\",\"key\":\"home\"}]}",
                       strlen("{\"op\":\"state\",\"id\":7,\"channel\":\"scores:g\",\"ops\":[{\"op\":\"incr\",\"key\":\"home\"}]}"));

    memset(&x, 0, sizeof x);
    x.fields = " { \"action\":\"hold\", \"ttl\":5 } ";
    x.flen = strlen(x.fields);
    n = hc_encode_request(HERALD_JSON, "seats", 1, "seats:e1", 8, &x, out, sizeof out);
    assert_bytes_equal(out, n, "{\"op\":\"seats\",\"id\":1,\"channel\":\"seats:e1\",\"action\":\"hold\", \"ttl\":5}",
                       strlen("{\"op\":\"seats\",\"id\":1,\"channel\":\"seats:e1\",\"action\":\"hold\", \"ttl\":5}"));
    x.fields = "{}";
    x.flen = 2;
    n = hc_encode_request(HERALD_JSON, "ping", 2, NULL, 0, &x, out, sizeof out);
    assert_bytes_equal(out, n, "{\"op\":\"ping\",\"id\":2}", strlen("{\"op\":\"ping\",\"id\":2}"));
    /* Too small a buffer: the size needed, nothing written past it. */
    assert_true(hc_encode_request(HERALD_JSON, "seats", 1, "seats:e1", 8, &x, out, 8) > 8);

    assert_true(hc_fields_ok(HERALD_JSON, "{}", 2));
    assert_false(hc_fields_ok(HERALD_JSON, "[1]", 3));
    assert_false(hc_fields_ok(HERALD_JSON, "5", 1));
    assert_true(hc_fields_ok(HERALD_MSGPACK, "\x80", 1));
    assert_false(hc_fields_ok(HERALD_MSGPACK, "\x91\x01", 2));
}

/* Decodes @n MessagePack bytes into JSON text (compact, sorted keys). */
static char *mp_text(const unsigned char *p, size_t n)
{
    char reason[PROTO_REASON_MAX];
    json_t *v = NULL;
    char *s;

    assert_int_equal(mpack_decode(p, n, &v, reason), 0);
    s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

/* JSON strings with escaped quotes and runs of backslashes: where each one
 * ends decides where the value and the message end (skip_jstr() finds the
 * closing quote with memchr() and counts the backslashes before it). */
static void test_json_string_escapes(void **unused)
{
    static const struct { const char *data; int ok; } cases[] = {
        { "\"plain\"", 1 },
        { "\"a\\\"b\"", 1 },                    /* "a\"b": an escaped quote inside */
        { "\"a\\\\\"", 1 },                     /* "a\\": the backslash is escaped, the quote ends it */
        { "\"a\\\\\\\"b\"", 1 },                /* "a\\\"b": two escape one, the third the quote */
        { "\"\\\\\\\\\"", 1 },                  /* "\\\\" */
        { "\"\\\"\"", 1 },                      /* "\"" */
        { "\"\"", 1 },
        { "{\"q\":\"}\\\"]\",\"r\":[\"\\\\\"]}", 1 }, /* brackets and quotes inside strings */
        { "\"abc\\\"", 0 },                     /* "abc\" : never closed */
        { "\"abc\\\\\\\"", 0 },                 /* "abc\\\" : never closed */
        { "\"abc", 0 },
    };
    char msg[256];
    herald_msg_t m;
    (void)unused;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *d = cases[i].data;
        /* The pub fast path, then the general reader (fields out of order). */
        int n = snprintf(msg, sizeof msg, "{\"op\":\"pub\",\"channel\":\"c\",\"offset\":7,\"ts\":1,\"data\":%s}", d);
        int r = hc_json_parse(msg, (size_t)n, &m, NULL);
        if (cases[i].ok) {
            assert_int_equal(r, 0);
            assert_int_equal(m.op, HERALD_OP_PUB);
            assert_int_equal(m.offset, 7);
            assert_int_equal(m.data_len, strlen(d));
            assert_memory_equal(m.data, d, strlen(d));
        } else {
            assert_int_not_equal(r, 0);
        }
        n = snprintf(msg, sizeof msg, "{\"data\":%s,\"offset\":9,\"op\":\"pub\",\"channel\":\"c\"}", d);
        r = hc_json_parse(msg, (size_t)n, &m, NULL);
        if (cases[i].ok) {
            assert_int_equal(r, 0);
            assert_int_equal(m.offset, 9);
            assert_int_equal(m.data_len, strlen(d));
        } else {
            assert_int_not_equal(r, 0);
        }
    }
    /* A key with an escaped quote is skipped whole, not ended early. */
    snprintf(msg, sizeof msg, "{\"x\\\"y\":1,\"op\":\"pong\",\"id\":3}");
    assert_int_equal(hc_json_parse(msg, strlen(msg), &m, NULL), 0);
    assert_int_equal(m.op, HERALD_OP_PONG);
    assert_int_equal(m.id, 3);
}

static void test_msgpack_requests(void **unused)
{
    const unsigned char ops[] = { 0x91, 0x82, 0xa2, 'o', 'p', 0xa4, 'i', 'n', 'c', 'r', 0xa3, 'k', 'e', 'y', 0xa1, 'h' };
    struct hc_extra x = { .dkey = "ops", .data = ops, .dlen = sizeof ops };
    unsigned char out[1024], fields[512];
    size_t n, f = 0;
    char *text;
    (void)unused;

    n = hc_encode_request(HERALD_MSGPACK, "state", 7, "scores:g", 8, &x, out, sizeof out);
    text = mp_text(out, n);
    assert_string_equal(text, "{\"channel\":\"scores:g\",\"id\":7,\"op\":\"state\",\"ops\":[{\"key\":\"h\",\"op\":\"incr\"}]}");
    free(text);

    /* 15 extra fields make 18 entries: past a fixmap's 15, so the header grows. */
    fields[f++] = 0x8f;
    for (int i = 0; i < 15; i++) {
        fields[f++] = 0xa2;
        fields[f++] = 'k';
        fields[f++] = (unsigned char)('a' + i);
        fields[f++] = (unsigned char)i;
    }
    memset(&x, 0, sizeof x);
    x.fields = fields;
    x.flen = f;
    n = hc_encode_request(HERALD_MSGPACK, "seats", 300, "seats:e1", 8, &x, out, sizeof out);
    text = mp_text(out, n);
    assert_non_null(strstr(text, "\"ka\":0"));
    assert_non_null(strstr(text, "\"ko\":14"));
    assert_non_null(strstr(text, "\"op\":\"seats\""));
    assert_non_null(strstr(text, "\"id\":300"));
    free(text);
}

static void test_state_views(void **unused)
{
    static const char snap[] = "{\"op\":\"snapshot\",\"channel\":\"s:x\",\"offset\":9,\"epoch\":\"0123456789abcdef\","
                               "\"state\":{\"a\":{\"value\":1,\"version\":2}}}";
    static const char upd[] = "{\"op\":\"updated\",\"id\":3,\"channel\":\"s:x\",\"offset\":4,"
                              "\"changes\":[{\"key\":\"a\",\"value\":1,\"version\":2}]}";
    static const char seats[] = "{\"op\":\"seats\",\"id\":5,\"channel\":\"seats:e\",\"offset\":6,\"changes\":[],"
                                "\"action\":\"hold\",\"expires\":1}";
    char scratch[HC_REASON_MAX];
    herald_msg_t m;
    (void)unused;

    assert_int_equal(hc_json_parse(snap, sizeof snap - 1, &m, scratch), 0);
    assert_int_equal(m.op, HERALD_OP_SNAPSHOT);
    assert_int_equal(m.offset, 9);
    assert_bytes_equal(m.state, m.state_len, "{\"a\":{\"value\":1,\"version\":2}}",
                       strlen("{\"a\":{\"value\":1,\"version\":2}}"));
    assert_int_equal(hc_json_parse(upd, sizeof upd - 1, &m, scratch), 0);
    assert_int_equal(m.op, HERALD_OP_UPDATED);
    assert_true(m.has_id && m.id == 3);
    assert_bytes_equal(m.changes, m.changes_len, "[{\"key\":\"a\",\"value\":1,\"version\":2}]",
                       strlen("[{\"key\":\"a\",\"value\":1,\"version\":2}]"));
    assert_int_equal(hc_json_parse(seats, sizeof seats - 1, &m, scratch), 0);
    assert_int_equal(m.op, HERALD_OP_SEATS);
    assert_bytes_equal(m.changes, m.changes_len, "[]", 2);

    /* The same messages in MessagePack, as the broker would send them. */
    {
        const char *docs[] = { snap, upd };
        for (int i = 0; i < 2; i++) {
            json_error_t e;
            json_t *v = json_loads(docs[i], 0, &e);
            wbuf_t b;
            size_t used;
            char *text;
            assert_non_null(v);
            wbuf_init(&b);
            mpack_emit(&b, v);
            assert_int_equal(hc_mpack_parse(b.p, b.len, &m, &used), 0);
            assert_int_equal(used, b.len);
            if (i == 0) {
                assert_int_equal(m.op, HERALD_OP_SNAPSHOT);
                text = mp_text(m.state, m.state_len);
                assert_string_equal(text, "{\"a\":{\"value\":1,\"version\":2}}");
            } else {
                assert_int_equal(m.op, HERALD_OP_UPDATED);
                text = mp_text(m.changes, m.changes_len);
                assert_string_equal(text, "[{\"key\":\"a\",\"value\":1,\"version\":2}]");
            }
            free(text);
            wbuf_deinit(&b);
            json_decref(v);
        }
    }
}

/* The replies and pushes of tokens and history, and a subscribe that carries
 * both "since" and a subscribe token (herald_subscribe_ex()). */
static void test_tokens_and_history(void **unused)
{
    static const char rr[] = "{\"op\":\"refresh_required\",\"expires\":1795246000}";
    static const char hist[] = "{\"op\":\"history\",\"id\":3,\"channel\":\"c\",\"epoch\":\"a2313cb861e8f615\","
                               "\"offset\":2,\"next\":null,\"publications\":[{\"offset\":2,\"ts\":5,\"data\":7}]}";
    struct hc_since since = { "a2313cb861e8f615", 16, 41 };
    struct hc_extra x = { .fields = "{\"token\":\"t.k.n\"}", .flen = 17, .since = &since };
    static const char want[] = "{\"op\":\"subscribe\",\"id\":4,\"channel\":\"orders:9\",\"token\":\"t.k.n\","
                               "\"since\":{\"epoch\":\"a2313cb861e8f615\",\"offset\":41}}";
    const unsigned char *pp;
    uint32_t left;
    herald_msg_t m, p;
    unsigned char out[512];
    size_t n;
    (void)unused;

    assert_int_equal(hc_op_parse("refreshed", 9), HERALD_OP_REFRESHED);
    memset(&m, 0, sizeof m);
    assert_int_equal(hc_json_parse(rr, sizeof rr - 1, &m, NULL), 0);
    assert_int_equal(m.op, HERALD_OP_REFRESH_REQUIRED);
    memset(&m, 0, sizeof m);
    assert_int_equal(hc_json_parse(hist, sizeof hist - 1, &m, NULL), 0);
    assert_int_equal(m.op, HERALD_OP_HISTORY);
    assert_int_equal(m.offset, 2);
    assert_int_equal(m.epoch_len, 16);
    assert_non_null(m.publications);
    assert_int_equal(hc_pubs_start(HERALD_JSON, m.publications, m.publications_len, &pp, &left), 0);
    memset(&p, 0, sizeof p);
    assert_int_equal(hc_pubs_next(HERALD_JSON, &pp, (const unsigned char *)m.publications + m.publications_len,
                                  &left, &p), 1);
    assert_int_equal(p.offset, 2);
    assert_bytes_equal(p.data, p.data_len, "7", 1);

    n = hc_encode_request(HERALD_JSON, "subscribe", 4, "orders:9", 8, &x, out, sizeof out);
    assert_bytes_equal(out, n, want, sizeof want - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_requests),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_msgpack_requests),
        cmocka_unit_test(test_state_views),
        cmocka_unit_test(test_tokens_and_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
