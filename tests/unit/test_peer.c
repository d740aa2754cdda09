/* tests/unit/test_peer.c - broker/net/peer.c: which address of a forwarding
 * header is the client, with broker/auth/ratelimit.c deciding whom to trust;
 * and ratelimit.c's token buckets taking several tokens at once (a batch
 * against an API key's limit). */
#include "unit.h"

#include "herald.h"
#include "auth/ratelimit.h"
#include "net/peer.h"

static int setup(void **state)
{
    char err[256];
    (void)state;
    config_defaults(&srv.cfg);
    snprintf(srv.cfg.trusted_proxies, sizeof srv.cfg.trusted_proxies, "127.0.0.1, 10.0.0.0/8, fd00::/8");
    if (rl_init(err, sizeof err)) {
        fprintf(stderr, "rl_init: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rl_deinit();
    config_free(&srv.cfg);
    return 0;
}

/* The client peer_forwarded_pick() finds for TCP peer @peer. */
static const char *pick(const char *peer, const char *xff, const char *fwd)
{
    static char out[PEER_ADDR_LEN];
    peer_forwarded_pick(peer, xff, fwd, out, sizeof out);
    return out;
}

static void test_untrusted_peer_is_the_client(void **state)
{
    (void)state;
    assert_string_equal(pick("203.0.113.1", "198.51.100.7", NULL), "203.0.113.1");
    assert_int_equal(peer_forwarded_pick("203.0.113.1", "198.51.100.7", NULL, (char[PEER_ADDR_LEN]){ 0 },
                                         PEER_ADDR_LEN), 0);
}

static void test_x_forwarded_for(void **state)
{
    (void)state;
    assert_string_equal(pick("127.0.0.1", "198.51.100.7", NULL), "198.51.100.7");
    /* Right to left; what the client wrote on the left is not believed. */
    assert_string_equal(pick("127.0.0.1", "1.1.1.1, 198.51.100.7", NULL), "198.51.100.7");
    /* Trusted hops are skipped. */
    assert_string_equal(pick("127.0.0.1", "198.51.100.7,10.0.0.2, 10.9.9.9", NULL), "198.51.100.7");
    /* All trusted: the left-most. */
    assert_string_equal(pick("127.0.0.1", "10.0.0.2", NULL), "10.0.0.2");
    /* Not an address: the last trusted hop. */
    assert_string_equal(pick("127.0.0.1", "198.51.100.7, unknown", NULL), "127.0.0.1");
    assert_string_equal(pick("127.0.0.1", "198.51.100.7, 10.0.0.2, bogus", NULL), "127.0.0.1");
    assert_string_equal(pick("127.0.0.1", "198.51.100.7, bogus, 10.0.0.2", NULL), "10.0.0.2");
    assert_string_equal(pick("127.0.0.1", "", NULL), "127.0.0.1");
    assert_string_equal(pick("127.0.0.1", ",,", NULL), "127.0.0.1");
    /* Canonical forms, ports, brackets. */
    assert_string_equal(pick("127.0.0.1", "2001:DB8::0:1", NULL), "2001:db8::1");
    assert_string_equal(pick("127.0.0.1", "[2001:db8::1]:443", NULL), "2001:db8::1");
    assert_string_equal(pick("127.0.0.1", "198.51.100.7:5000", NULL), "198.51.100.7");
    assert_string_equal(pick("127.0.0.1", " 198.51.100.7 ", NULL), "198.51.100.7");
    /* IPv6 proxies. */
    assert_string_equal(pick("fd00::1", "198.51.100.9", NULL), "198.51.100.9");
    /* A header too long for an address. */
    assert_string_equal(pick("127.0.0.1", "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb", NULL), "127.0.0.1");
}

static void test_forwarded(void **state)
{
    (void)state;
    assert_string_equal(pick("127.0.0.1", NULL, "for=198.51.100.7"), "198.51.100.7");
    assert_string_equal(pick("127.0.0.1", NULL, "For=\"[2001:db8:cafe::17]:4711\""), "2001:db8:cafe::17");
    assert_string_equal(pick("127.0.0.1", NULL, "for=192.0.2.43, for=198.51.100.17;proto=https;by=10.0.0.1"),
                        "198.51.100.17");
    assert_string_equal(pick("127.0.0.1", NULL, "proto=https; for=198.51.100.17"), "198.51.100.17");
    assert_string_equal(pick("127.0.0.1", NULL, "for=198.51.100.1, for=10.1.1.1"), "198.51.100.1");
    assert_string_equal(pick("127.0.0.1", NULL, "for=unknown"), "127.0.0.1");
    assert_string_equal(pick("127.0.0.1", NULL, "for=_hidden, for=198.51.100.2"), "198.51.100.2");
    /* An element without for= stops the walk. */
    assert_string_equal(pick("127.0.0.1", NULL, "for=198.51.100.1, proto=http"), "127.0.0.1");
    /* X-Forwarded-For wins when both are given. */
    assert_string_equal(pick("127.0.0.1", "203.0.113.5", "for=198.51.100.1"), "203.0.113.5");
}

/* bucket_take_n(): @n tokens or none; refilled at the rate, capped at the burst. */
static void test_bucket_take_n(void **state)
{
    bucket_t b = { 0, 0 };
    (void)state;
    assert_true(bucket_take_n(&b, 1.0, 10, 8, 1000));        /* a new bucket is full: 10 -> 2 */
    assert_false(bucket_take_n(&b, 1.0, 10, 3, 1000));       /* 2 < 3: nothing is taken ... */
    assert_true(bucket_take_n(&b, 1.0, 10, 2, 1000));        /* ... so 2 still are */
    assert_false(bucket_take(&b, 1.0, 10, 1500));            /* half a token */
    assert_int_equal(bucket_wait_ms(&b, 1.0, 1500), 501);
    assert_true(bucket_take(&b, 1.0, 10, 2000));
    assert_true(bucket_take_n(&b, 1.0, 10, 10, 100000));     /* a long wait fills it to the burst, not beyond */
    assert_false(bucket_take(&b, 1.0, 10, 100000));
    assert_true(bucket_take_n(&b, 0, 10, 1000, 100000));     /* rate 0: no limit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untrusted_peer_is_the_client),
        cmocka_unit_test(test_x_forwarded_for),
        cmocka_unit_test(test_forwarded),
        cmocka_unit_test(test_bucket_take_n),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
