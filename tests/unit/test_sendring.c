/* tests/unit/test_sendring.c - broker/net/sendring.c over real sockets:
 * sends reported in the order they were added with what the kernel did
 * (whole, partial, -EAGAIN on a full socket, an error on a bad one), the
 * arena's bounds, and a full ring. Skipped where io_uring is not allowed. */
#include "unit.h"

#include "net/sendring.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

struct seen {
    void *owner[256];
    size_t len[256];
    int res[256];
    int n;
};
static struct seen seen;

static void done(void *owner, const unsigned char *buf, size_t len, int res)
{
    (void)buf;
    if (seen.n < 256) {
        seen.owner[seen.n] = owner;
        seen.len[seen.n] = len;
        seen.res[seen.n] = res;
    }
    seen.n++;
}

static int setup(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sendring_deinit();
    return 0;
}

/* A connected pair, the sending end non-blocking with a small send buffer. */
static void pair(int sv[2])
{
    int small = 4096;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
}

static int ring_or_skip_threads(unsigned entries, size_t arena, unsigned threads)
{
    int rc = sendring_init(entries, arena, threads);
    if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES) {
        print_message("io_uring not available here (%s): skipped\n", strerror(-rc));
        return 0;
    }
    assert_int_equal(rc, 0);
    assert_true(sendring_ready());
    return 1;
}

static int ring_or_skip(unsigned entries, size_t arena)
{
    return ring_or_skip_threads(entries, arena, 1);
}

static void test_order_and_bytes(void **state)
{
    int a[2], b[2], owners[3];
    char got[64];
    (void)state;
    if (!ring_or_skip(8, 4096)) { skip(); return; }
    pair(a);
    pair(b);
    unsigned char *p = sendring_stage(5);
    assert_non_null(p);
    memcpy(p, "hello", 5);
    assert_int_equal(sendring_add(a[0], p, 5, &owners[0]), 0);
    assert_int_equal(sendring_add(b[0], "second", 6, &owners[1]), 0);
    assert_int_equal(sendring_add(a[0], " world", 6, &owners[2]), 0);
    assert_int_equal(sendring_pending(), 3);
    sendring_submit(done);
    assert_int_equal(sendring_pending(), 0);
    assert_int_equal(seen.n, 3);
    for (int i = 0; i < 3; i++) assert_ptr_equal(seen.owner[i], &owners[i]);
    assert_int_equal(seen.res[0], 5);
    assert_int_equal(seen.res[1], 6);
    assert_int_equal(seen.res[2], 6);
    /* Sends to one socket keep their order within a submit. */
    assert_int_equal(read(a[1], got, sizeof got), 11);
    assert_memory_equal(got, "hello world", 11);
    assert_int_equal(read(b[1], got, sizeof got), 6);
    assert_memory_equal(got, "second", 6);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
}

/* A socket that cannot take it all reports a partial write, then -EAGAIN,
 * at once: the loop never waits for a slow reader. */
static void test_full_socket_never_waits(void **state)
{
    static unsigned char big[1 << 20];
    int sv[2], owner;
    (void)state;
    if (!ring_or_skip(8, 4096)) { skip(); return; }
    pair(sv);
    assert_int_equal(sendring_add(sv[0], big, sizeof big, &owner), 0);
    assert_int_equal(sendring_add(sv[0], big, sizeof big, &owner), 0);
    sendring_submit(done);
    assert_int_equal(seen.n, 2);
    assert_true(seen.res[0] > 0 && (size_t)seen.res[0] < sizeof big);
    assert_int_equal(seen.res[1], -EAGAIN);
    close(sv[0]), close(sv[1]);
}

static void test_bad_socket_reports_error(void **state)
{
    int sv[2], owner;
    (void)state;
    if (!ring_or_skip(8, 4096)) { skip(); return; }
    pair(sv);
    close(sv[1]);                              /* the reader is gone */
    assert_int_equal(sendring_add(sv[0], "x", 1, &owner), 0);
    assert_int_equal(sendring_add(-1, "x", 1, &owner), 0);
    sendring_submit(done);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.res[0], -EPIPE);     /* MSG_NOSIGNAL: an error, not SIGPIPE */
    assert_int_equal(seen.res[1], -EBADF);
    close(sv[0]);
}

static void test_bounds(void **state)
{
    int sv[2], owner;
    (void)state;
    if (!ring_or_skip(2, 100)) { skip(); return; }
    assert_non_null(sendring_stage(60));
    assert_null(sendring_stage(41));           /* 60 + 41 > 100 */
    assert_non_null(sendring_stage(40));
    pair(sv);
    assert_false(sendring_full());
    assert_int_equal(sendring_add(sv[0], "a", 1, &owner), 0);
    assert_int_equal(sendring_add(sv[0], "b", 1, &owner), 0);
    assert_true(sendring_full());
    assert_int_equal(sendring_add(sv[0], "c", 1, &owner), -ENOSPC);
    sendring_submit(done);
    assert_int_equal(seen.n, 2);
    /* Submitting empties the ring and the arena. */
    assert_false(sendring_full());
    assert_non_null(sendring_stage(100));
    close(sv[0]), close(sv[1]);
}

/* server.threads: a pass of many sends is shared with helper threads, and
 * still reports every send in the order it was added, keeps two sends to one
 * socket in order, and reports partial writes and errors as the loop thread
 * alone would. Many passes in a row, so ThreadSanitizer sees the handoffs. */
static void test_threads_share_a_pass(void **state)
{
    enum { N = 40, ROUNDS = 50 };
    static unsigned char big[1 << 20];
    int sv[N][2], full[3][2], owners[2 * N + 4];
    char want[32], got[64];
    (void)state;
    if (!ring_or_skip_threads(128, 4096, 3)) { skip(); return; }
    assert_int_equal(sendring_threads(), 3);
    for (int i = 0; i < N; i++) pair(sv[i]);
    /* Three pairs made one after another take consecutive descriptors, so
     * their sending ends fall on all three lanes (fd % 3). */
    for (int k = 0; k < 3; k++) pair(full[k]);
    for (int r = 0; r < ROUNDS; r++) {
        memset(&seen, 0, sizeof seen);
        for (int i = 0; i < N; i++) {
            char *p = (char *)sendring_stage(8);
            assert_non_null(p);
            snprintf(p, 8, "A%03d", i);
            assert_int_equal(sendring_add(sv[i][0], p, 4, &owners[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            char *p = (char *)sendring_stage(8);
            snprintf(p, 8, "B%03d", i);
            assert_int_equal(sendring_add(sv[i][0], p, 4, &owners[N + i]), 0);
        }
        for (int k = 0; k < 3; k++) assert_int_equal(sendring_add(full[k][0], big, sizeof big, &owners[2 * N + k]), 0);
        assert_int_equal(sendring_add(-1, "x", 1, &owners[2 * N + 3]), 0);
        sendring_submit(done);
        assert_int_equal(seen.n, 2 * N + 4);
        for (int k = 0; k < 2 * N + 4; k++) assert_ptr_equal(seen.owner[k], &owners[k]);
        for (int k = 0; k < 2 * N; k++) assert_int_equal(seen.res[k], 4);
        /* The first pass fills the small sockets in part; later ones find them full. */
        for (int k = 2 * N; k < 2 * N + 3; k++) {
            if (r == 0) assert_true(seen.res[k] > 0 && (size_t)seen.res[k] < sizeof big);
            else assert_int_equal(seen.res[k], -EAGAIN);
        }
        assert_int_equal(seen.res[2 * N + 3], -EBADF);
        for (int i = 0; i < N; i++) {
            snprintf(want, sizeof want, "A%03dB%03d", i, i);
            assert_int_equal(read(sv[i][1], got, sizeof got), 8);
            assert_memory_equal(got, want, 8);
        }
    }
    /* The loop takes back a lane no helper has claimed yet, so a helper
     * that wakes late sends nothing: keep passing until the helpers have
     * sent something (they wake within microseconds; bounded anyway). */
    for (int r = 0; r < 5000 && !sendring_offloaded(); r++) {
        memset(&seen, 0, sizeof seen);
        for (int i = 0; i < N; i++) assert_int_equal(sendring_add(sv[i][0], "q", 1, &owners[i]), 0);
        sendring_submit(done);
        assert_int_equal(seen.n, N);
        for (int i = 0; i < N; i++) assert_int_equal(read(sv[i][1], got, sizeof got), 1);
    }
    assert_true(sendring_offloaded() > 0);
    /* A pass too short to be worth a wakeup stays on the loop thread. */
    uint64_t before = sendring_offloaded();
    memset(&seen, 0, sizeof seen);
    for (int i = 0; i < 4; i++) assert_int_equal(sendring_add(sv[i][0], "z", 1, &owners[i]), 0);
    sendring_submit(done);
    assert_int_equal(seen.n, 4);
    assert_int_equal(sendring_offloaded(), before);
    for (int i = 0; i < N; i++) close(sv[i][0]), close(sv[i][1]);
    for (int k = 0; k < 3; k++) close(full[k][0]), close(full[k][1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_socket_never_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_socket_reports_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_a_pass, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
