/* tests/unit/test_client_flush.c - the client library's mid-turn flush
 * (clients/herald_client.c, on_read() and herald_ctx_flush()): output queued
 * during a loop turn that reads for a long time leaves before the turn ends,
 * once the last flush is FLUSH_MAX_WAIT_NS old, instead of waiting for the
 * uv_prepare_t of the next turn.
 *
 * Owns: a fake WebSocket server on a thread (plain sockets on 127.0.0.1: the
 * upgrade, the "connect" frame, then publications streamed as fast as the
 * socket takes them) and a client on a loop in the main thread that falls
 * behind that stream on purpose. Does not own: the real broker (the recovery
 * scenario this fix came from runs in tests/e2e/test_bench.py).
 *
 * DESIGN: every pub costs the client PUB_SPIN_NS of busy wait, so a 64 KiB
 * read takes milliseconds and, the socket staying full, libuv goes on reading
 * (up to 32 reads per socket per turn; the client's receive buffer is
 * enlarged so that it does, grow_rcvbuf()). At the first read of a turn, once
 * the backlog is built, one pub queues a publish request. A uv_check_t marks
 * the end of each turn. The server thread raises a counter when the request's
 * bytes arrive; the test passes if a pub of the SAME turn, from a later read,
 * sees the counter raised. Without the mid-turn flush the request leaves only
 * at the next prepare phase, after the turn, so that cannot happen. A turn
 * that ends (a short read) before the flush was due proves nothing either
 * way: it is retried with a new request, up to ATTEMPTS times. Callbacks
 * only record; every assertion runs after the loop and the thread are done. */
#include "unit.h"

#include "herald_client.h"
#include "fakews.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PUB_SPIN_NS 10000ULL          /* each pub's cost on the client */
#define WARM_BYTES (1024 * 1024)      /* pub bytes read before the first request */
#define SEND_CAP (48u * 1024 * 1024)  /* the server stops after this many bytes */
#define SERVER_SECS 10                /* ... or after this long */
#define WAIT_NS 3000000000ULL         /* longest wait for the server thread to see a request */
#define ATTEMPTS 5
/* Reads after the queueing read within its turn by which the flush must have
 * happened: every full read holds >= 16 KiB (> 1 ms of pubs), so the 2 ms are
 * up by the end of the second read after; the third read's pubs see it. One
 * read more for a conclusive "it did not flush". */
#define READS_CONCLUSIVE 4

/* ---- the fake server ---- */

struct server {
    int lfd, port;
    pthread_t thread;
    atomic_uint requests;         /* request frames received after "connect" */
    atomic_uint bad_requests;     /* ... that were not the expected publish */
    atomic_int failed;            /* the handshake or the connect frame went wrong */
    size_t sent;                  /* pub bytes written */
};


/* Whole pub frames, ~140 bytes each, filling about 1 MiB: streamed round and round. */
static unsigned char *pub_block(size_t *len)
{
    size_t cap = 1024 * 1024, n = 0;
    unsigned char *b = malloc(cap);
    char msg[256];

    assert_non_null(b);
    for (unsigned off = 1; ; off++) {
        int ml = snprintf(msg, sizeof msg,
                          "{\"op\":\"pub\",\"channel\":\"c\",\"offset\":%u,\"ts\":0,\"data\":{\"v\":\"%.100s\"}}", off,
                          "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv");
        if (n + (size_t)ml + 4 > cap) break;
        n += server_frame(b + n, msg, (size_t)ml);
    }
    *len = n;
    return b;
}

/* Accepts one connection, answers the upgrade and "connect", then streams
 * pubs while reading what the client sends, until the client goes away,
 * SEND_CAP bytes or SERVER_SECS. */
static void *server_main(void *arg)
{
    struct server *s = arg;
    struct timeval tv = { .tv_sec = 5 };
    struct pollfd pf = { .fd = s->lfd, .events = POLLIN };
    unsigned char in[4096], *pl, *block;
    size_t have = 0, pll, blen, pos = 0;
    uint64_t end = now_ns() + SERVER_SECS * 1000000000ULL;
    int fd;

    if (poll(&pf, 1, 5000) != 1 || (fd = accept(s->lfd, NULL, NULL)) < 0) {
        atomic_store(&s->failed, 1);
        return NULL;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (handshake(fd)) {
        atomic_store(&s->failed, 1);
        close(fd);
        return NULL;
    }
    block = pub_block(&blen);
    pf.fd = fd;
    while (s->sent < SEND_CAP && now_ns() < end) {
        ssize_t n;

        pf.events = POLLIN | POLLOUT;
        if (poll(&pf, 1, 100) < 0) break;
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            n = recv(fd, in + have, sizeof in - have, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
            if (n > 0) have += (size_t)n;
            /* Counted per frame, so the main thread sees a request only once it is whole. */
            for (size_t fl; (fl = client_frame(in, have, &pl, &pll)); ) {
                if (!memmem(pl, pll, "\"op\":\"publish\"", 14)) atomic_fetch_add(&s->bad_requests, 1);
                atomic_fetch_add(&s->requests, 1);
                memmove(in, in + fl, have - fl);
                have -= fl;
            }
            if (have == sizeof in) break;       /* not frames this test expects */
        }
        if (pf.revents & POLLOUT) {
            n = send(fd, block + pos, blen - pos, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) break;
            if (n > 0) {
                s->sent += (size_t)n;
                pos = (pos + (size_t)n) % blen;
            }
        }
    }
    free(block);
    close(fd);
    return NULL;
}

static void server_start(struct server *s)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;

    memset(s, 0, sizeof *s);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 1), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &l), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

/* ---- the client: falls behind, queues a request, watches for it ---- */

struct run {
    struct server *srv;
    uv_check_t check;
    uv_timer_t guard;             /* aborts the client if the run takes too long */
    herald_ctx_t *ctx;
    herald_client_t *c;
    int rcvbuf_set;               /* TCP handles whose receive buffer grow_rcvbuf() set */
    int opened, closed, close_err, publish_err, guard_fired;
    uint64_t turn;                /* loop turns ended (check callbacks) */
    uint64_t rx;                  /* rx_ns of the read being parsed */
    unsigned reads_in_turn;
    size_t pub_bytes;
    unsigned prev_turn_reads;

    /* The attempt in flight: a request queued in turn q_turn at its read q_read. */
    int attempt;                  /* requests queued so far */
    int in_flight;
    uint64_t q_turn;
    unsigned q_read;
    int waited;

    /* The outcome. */
    int done, passed;
    unsigned seen_read;           /* the read (of the queueing turn) whose pub saw the request */
    unsigned turn_reads;          /* reads of the deciding turn */
    unsigned reads_after;         /* reads of the deciding turn after the queueing read */
    size_t queued_left;           /* herald_client_queued() at the deciding turn's end */
};

static void spin(uint64_t ns)
{
    uint64_t t = uv_hrtime() + ns;

    while (uv_hrtime() < t) {}
}

/* The client's socket is the loop's only TCP handle. Linux sizes a receive
 * buffer by how fast its reader drains it, so this slow reader's loopback
 * socket holds about 64 KiB and a turn ends after two or three reads (seen:
 * 3). A fixed buffer (even one clamped to a default rmem_max of 208 KiB) lets
 * the backlog build as it does for a subscriber behind a busy broker, and
 * libuv read 32 times per turn. */
static void grow_rcvbuf(uv_handle_t *h, void *arg)
{
    int *set = arg, size = 4 * 1024 * 1024;

    if (h->type == UV_TCP && uv_recv_buffer_size(h, &size) == 0) (*set)++;
}

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct run *r = ud;

    (void)c;
    (void)m;
    r->opened = 1;
    uv_walk(herald_ctx_loop(r->ctx), grow_rcvbuf, &r->rcvbuf_set);
}

static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct run *r = ud;

    if (m->rx_ns != r->rx) {
        r->rx = m->rx_ns;
        r->reads_in_turn++;
    }
    r->pub_bytes += m->data_len;
    spin(PUB_SPIN_NS);
    if (r->done) return;
    if (!r->in_flight) {
        /* Queue at the first read of a turn that follows a turn of several
         * reads: the socket is full, so this turn goes on reading. */
        if (r->pub_bytes < WARM_BYTES || r->reads_in_turn != 1 || r->prev_turn_reads < 4) return;
        r->publish_err = herald_publish(c, "c", 1, "{\"n\":1}", 7, NULL, NULL, NULL);
        if (r->publish_err) {
            r->done = 1;
            herald_client_abort(c);
            return;
        }
        r->attempt++;
        r->in_flight = 1;
        r->q_turn = r->turn;
        r->q_read = r->reads_in_turn;
        r->waited = 0;
        return;
    }
    if (r->passed || r->turn != r->q_turn || r->reads_in_turn == r->q_read) return;
    /* Once the library has written the request, give the server thread time to read it. */
    if (!r->waited && herald_client_queued(c) == 0) {
        uint64_t t = uv_hrtime() + WAIT_NS;

        r->waited = 1;
        while (atomic_load(&r->srv->requests) < (unsigned)r->attempt && uv_hrtime() < t) {}
    }
    if (!r->passed && atomic_load(&r->srv->requests) >= (unsigned)r->attempt) {
        r->passed = 1;
        r->seen_read = r->reads_in_turn;
        r->queued_left = herald_client_queued(c);
    }
}

static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    struct run *r = ud;

    (void)c;
    r->closed = 1;
    r->close_err = info->err;
    r->c = NULL;
    uv_close((uv_handle_t *)&r->check, NULL);
    uv_close((uv_handle_t *)&r->guard, NULL);
}

/* The end of a loop turn: decide an attempt whose turn this was. */
static void on_check(uv_check_t *h)
{
    struct run *r = h->data;

    if (r->in_flight && !r->done && r->turn == r->q_turn) {
        unsigned after = r->reads_in_turn - r->q_read;

        r->in_flight = 0;
        /* Passed; or enough reads that the flush was due, or the request
         * left and the server never saw it: the mid-turn flush did not work.
         * Otherwise the turn was too short to tell; the next attempt tries
         * again. */
        if (r->passed || after >= READS_CONCLUSIVE || r->waited || r->attempt >= ATTEMPTS) {
            r->done = 1;
            r->reads_after = after;
            r->turn_reads = r->reads_in_turn;
            if (!r->passed) r->queued_left = r->c ? herald_client_queued(r->c) : 0;
        }
    }
    if (r->reads_in_turn) r->prev_turn_reads = r->reads_in_turn;
    r->reads_in_turn = 0;
    r->turn++;
    if (r->done && r->c) herald_client_abort(r->c);
}

static void on_guard(uv_timer_t *t)
{
    struct run *r = t->data;

    r->guard_fired = 1;
    if (r->c) herald_client_abort(r->c);
}

static void test_flush_within_turn(void **state)
{
    struct server srv;
    struct run r = { .srv = &srv };
    herald_callbacks_t cb = { .on_open = on_open, .on_pub = on_pub, .on_close = on_close };
    herald_ctx_t *ctx;
    herald_url_t url;
    uv_loop_t loop;
    char u[64];

    (void)state;
    server_start(&srv);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(herald_ctx_new(&loop, &ctx), 0);
    r.ctx = ctx;
    snprintf(u, sizeof u, "ws://127.0.0.1:%d/ws", srv.port);
    assert_int_equal(herald_url_parse(u, &url), 0);
    uv_check_init(&loop, &r.check);
    r.check.data = &r;
    uv_check_start(&r.check, on_check);
    uv_timer_init(&loop, &r.guard);
    r.guard.data = &r;
    uv_timer_start(&r.guard, on_guard, 20000, 0);
    assert_int_equal(herald_client_new(ctx, &url, NULL, &cb, &r, &r.c), 0);

    uv_run(&loop, UV_RUN_DEFAULT);               /* until on_close and its handles are closed */
    herald_ctx_free(ctx);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    pthread_join(srv.thread, NULL);
    close(srv.lfd);

    assert_int_equal(atomic_load(&srv.failed), 0);
    assert_true(r.opened);
    assert_int_equal(r.rcvbuf_set, 1);
    assert_true(r.closed);
    assert_false(r.guard_fired);
    assert_int_equal(r.publish_err, 0);
    assert_int_equal(r.close_err, HERALD_E_ABORTED);
    print_message("attempts %d, deciding turn: %u reads, %u after the queueing read, request seen by read %u; "
                  "%zu bytes still queued; server sent %zu bytes\n", r.attempt, r.turn_reads, r.reads_after,
                  r.seen_read, r.queued_left, srv.sent);
    if (!r.passed) {
        print_error("the request queued in a turn of %u reads did not reach the server within that turn "
                    "(%u reads after it, %zu bytes still queued at its end)\n",
                    r.turn_reads, r.reads_after, r.queued_left);
    }
    assert_true(r.passed);
    /* Not vacuous: the turn went on reading after the request was queued, and
     * the server got exactly the requests queued, each a well-formed publish. */
    assert_true(r.seen_read > r.q_read);
    assert_true(r.reads_after >= r.seen_read - r.q_read);
    assert_int_equal(r.queued_left, 0);
    assert_int_equal(atomic_load(&srv.requests), (unsigned)r.attempt);
    assert_int_equal(atomic_load(&srv.bad_requests), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flush_within_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
