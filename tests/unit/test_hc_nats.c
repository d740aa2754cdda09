/* tests/unit/test_hc_nats.c - the client library's NATS reader and writer
 * (clients/hc_nats.c): every server operation, a stream cut at every byte
 * (nats-server over WebSocket cuts its output where it likes), bad input
 * and oversized payloads, and the bytes of CONNECT, SUB and PUB. */
#include "unit.h"

#include "hc_nats.h"

static long next(const char *s, size_t n, struct hc_nats_msg *m)
{
    const char *why = NULL;
    return hc_nats_next((const unsigned char *)s, n, 1 << 20, m, &why);
}

static void test_ops(void **unused)
{
    static const char info[] = "INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n";
    static const char msg[] = "MSG bench.ab.7 12 5\r\nhello\r\n";
    static const char reply[] = "MSG a.b 3 _INBOX.x 0\r\n\r\n";
    static const char err[] = "-ERR 'Slow Consumer'\r\n";
    struct hc_nats_msg m;
    (void)unused;

    assert_int_equal(next(info, sizeof info - 1, &m), sizeof info - 1);
    assert_int_equal(m.op, HN_INFO);
    assert_bytes_equal(m.payload, m.len, "{\"server_id\":\"x\",\"max_payload\":1048576}",
                       strlen("{\"server_id\":\"x\",\"max_payload\":1048576}"));
    assert_int_equal(next(msg, sizeof msg - 1, &m), sizeof msg - 1);
    assert_int_equal(m.op, HN_MSG);
    assert_bytes_equal((const unsigned char *)m.subject, m.subject_len, "bench.ab.7", 10);
    assert_bytes_equal(m.payload, m.len, "hello", 5);
    /* With a reply subject, and an empty payload. */
    assert_int_equal(next(reply, sizeof reply - 1, &m), sizeof reply - 1);
    assert_int_equal(m.op, HN_MSG);
    assert_int_equal(m.len, 0);
    assert_bytes_equal((const unsigned char *)m.subject, m.subject_len, "a.b", 3);
    assert_int_equal(next("PING\r\n", 6, &m), 6);
    assert_int_equal(m.op, HN_PING);
    assert_int_equal(next("pong\r\n", 6, &m), 6);      /* names are case-insensitive */
    assert_int_equal(m.op, HN_PONG);
    assert_int_equal(next("+OK\r\nPING\r\n", 11, &m), 5);
    assert_int_equal(m.op, HN_OK);
    assert_int_equal(next(err, sizeof err - 1, &m), sizeof err - 1);
    assert_int_equal(m.op, HN_ERR);
    assert_bytes_equal(m.payload, m.len, "'Slow Consumer'", 15);
}

/* Two MSGs and a PONG cut at every byte: 0 (read more) until an operation
 * is whole, then exactly its length, and the same views. */
static void test_cut_anywhere(void **unused)
{
    static const char s[] = "MSG x.1 1 3\r\nabc\r\nMSG x.2 1 4\r\nde\r\n\r\nPONG\r\n";
    static const size_t ends[] = { 18, 37, 43 };
    (void)unused;

    for (size_t cut = 0; cut <= sizeof s - 1; cut++) {
        size_t off = 0;
        for (int k = 0; k < 3; k++) {
            struct hc_nats_msg m;
            long r = next(s + off, cut > off ? cut - off : 0, &m);
            if (cut < ends[k]) {
                assert_int_equal(r, 0);
                break;
            }
            assert_int_equal(r, (long)(ends[k] - off));
            if (k == 1) assert_bytes_equal(m.payload, m.len, "de\r\n", 4);   /* CRLF inside a payload */
            if (k == 2) assert_int_equal(m.op, HN_PONG);
            off = ends[k];
        }
    }
}

static void test_bad(void **unused)
{
    struct hc_nats_msg m;
    const char *why = NULL;
    static const char big[] = "MSG a 1 2000000\r\n";
    char herald[] = "{\"op\":\"error\",\"code\":101}\r\n";
    (void)unused;

    /* What Herald would say is not NATS. */
    assert_int_equal(next(herald, strlen(herald), &m), -1);
    assert_int_equal(next("MSG a 1\r\n", 9, &m), -1);                 /* no size */
    assert_int_equal(next("MSG a 1 x\r\n", 11, &m), -1);              /* size not a number */
    assert_int_equal(next("MSG a 1 2\r\nabcd\r\n", 17, &m), -1);      /* payload longer than said */
    assert_int_equal(next("MSG a 1 2 3 4\r\n", 15, &m), -1);          /* too many arguments */
    assert_int_equal(hc_nats_next((const unsigned char *)big, sizeof big - 1, 1 << 20, &m, &why), -2);
    assert_int_equal(next("HELLO\r\n", 7, &m), -1);
    assert_non_null(why == NULL ? "unset" : why);
}

static void test_writers(void **unused)
{
    unsigned char out[512];
    size_t n;
    (void)unused;

    n = hc_nats_sub("bench.r.3", 9, 42, out, sizeof out);
    assert_bytes_equal(out, n, "SUB bench.r.3 42\r\n", 18);
    n = hc_nats_pub("bench.r.3", 9, "\"xy\"", 4, out, sizeof out);
    assert_bytes_equal(out, n, "PUB bench.r.3 4\r\n\"xy\"\r\n", 23);
    /* Too small: the size needed, nothing written. */
    memset(out, 0, sizeof out);
    assert_int_equal(hc_nats_pub("bench.r.3", 9, "\"xy\"", 4, out, 10), 23);
    assert_int_equal(out[0], 0);
    n = hc_nats_connect(out, sizeof out);
    assert_true(n < sizeof out);
    assert_memory_equal(out, "CONNECT {", 9);
    assert_non_null(memmem(out, n, "\"verbose\":false", 15));
    assert_non_null(memmem(out, n, "\"headers\":false", 15));
    assert_memory_equal(out + n - 8, "}\r\nPING\r\n" + 1, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops),
        cmocka_unit_test(test_cut_anywhere),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
