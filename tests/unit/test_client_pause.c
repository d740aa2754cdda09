/* tests/unit/test_client_pause.c - flow control in the client library
 * (clients/herald_client.c, herald_client_pause() / herald_client_resume()):
 * a pause stops delivery between two messages and stops reading; what the
 * read had brought in behind it (the rest of a WebSocket message holding
 * several messages, whole frames after it, a frame cut by the end of the
 * read) is delivered on resume, in order, before anything read later; and
 * nothing is delivered inside the resume call itself.
 *
 * Owns: a fake server on a thread (fakews.h) that, after the handshake,
 * writes pubs 1..20 in two writes: the first holds one WebSocket message
 * with pubs 1..5 (JSON lines), frames 6..10 and half of frame 11; the second,
 * sent only when the client says so (while it is paused), the rest of frame
 * 11 and frames 12..20. It counts the client's requests and echoes its close.
 * Does not own: the broker (tests/e2e/test_client_pause.py runs the real one).
 *
 * DESIGN: callbacks only record and drive the script (pause at given
 * offsets, resume from a timer or from the callback itself); assertions run
 * after the loop and the server thread are done. Waits are polls bounded by
 * WAIT_MS, never bare sleeps the result depends on. */
#include "unit.h"

#include "herald_client.h"
#include "fakews.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define NPUB 20
#define WAIT_MS 5000                  /* longest wait for the other side, either thread */
#define POLL_MS 5                     /* the client's timer step while it waits */

/* ---- the fake server ---- */

struct server {
    int lfd, port;
    pthread_t thread;
    atomic_int go;                /* the client asks for the second write */
    atomic_int sent2;             /* ... which has been written */
    atomic_uint requests;         /* request frames after "connect" (not the close) */
    atomic_int closed;            /* the client's close frame arrived and was echoed */
    atomic_int failed;
    size_t len2;                  /* bytes of the second write */
};

static size_t pub_json(char *out, size_t cap, unsigned off)
{
    return (size_t)snprintf(out, cap, "{\"op\":\"pub\",\"channel\":\"c\",\"offset\":%u,\"ts\":0,\"data\":%u}", off, off);
}

/* The two writes, as described at the top. */
static void build_writes(unsigned char *w1, size_t *l1, unsigned char *w2, size_t *l2)
{
    char batch[1024], one[128];
    unsigned char f11[160];
    size_t n = 0, k, f11len;

    for (unsigned off = 1; off <= 5; off++) {
        if (off > 1) batch[n++] = '\n';
        n += pub_json(batch + n, sizeof batch - n, off);
    }
    *l1 = server_frame(w1, batch, n);
    for (unsigned off = 6; off <= 10; off++) {
        k = pub_json(one, sizeof one, off);
        *l1 += server_frame(w1 + *l1, one, k);
    }
    k = pub_json(one, sizeof one, 11);
    f11len = server_frame(f11, one, k);
    memcpy(w1 + *l1, f11, f11len / 2);
    *l1 += f11len / 2;
    memcpy(w2, f11 + f11len / 2, f11len - f11len / 2);
    *l2 = f11len - f11len / 2;
    for (unsigned off = 12; off <= NPUB; off++) {
        k = pub_json(one, sizeof one, off);
        *l2 += server_frame(w2 + *l2, one, k);
    }
}

/* Reads what the client sent; counts its requests and echoes a close.
 * Return: 1 once the close was echoed or the client went away, else 0. */
static int serve_input(struct server *s, int fd, unsigned char *in, size_t cap, size_t *have)
{
    unsigned char *pl;
    size_t pll, fl;
    ssize_t n = recv(fd, in + *have, cap - *have, MSG_DONTWAIT);

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return 1;
    if (n > 0) *have += (size_t)n;
    while ((fl = client_frame(in, *have, &pl, &pll))) {
        if ((in[0] & 0x0f) == 0x8) {
            unsigned char echo[4] = { 0x88, 2, pll >= 2 ? pl[0] : 0x03, pll >= 2 ? pl[1] : 0xe8 };
            send(fd, echo, sizeof echo, MSG_NOSIGNAL);
            atomic_store(&s->closed, 1);
            return 1;
        }
        atomic_fetch_add(&s->requests, 1);
        memmove(in, in + fl, *have - fl);
        *have -= fl;
    }
    return *have == cap;           /* not frames this test expects */
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    struct timeval tv = { .tv_sec = 5 };
    struct pollfd pf = { .fd = s->lfd, .events = POLLIN };
    unsigned char w1[4096], w2[4096], in[4096];
    size_t l1, l2, have = 0;
    uint64_t end;
    int fd, done = 0;

    if (poll(&pf, 1, WAIT_MS) != 1 || (fd = accept(s->lfd, NULL, NULL)) < 0) {
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
    build_writes(w1, &l1, w2, &l2);
    s->len2 = l2;
    if (send(fd, w1, l1, MSG_NOSIGNAL) != (ssize_t)l1) atomic_store(&s->failed, 1);
    pf.fd = fd;
    pf.events = POLLIN;
    end = now_ns() + WAIT_MS * 1000000ULL;
    while (!done && now_ns() < end) {
        if (atomic_load(&s->go) && !atomic_load(&s->sent2)) {
            if (send(fd, w2, l2, MSG_NOSIGNAL) != (ssize_t)l2) atomic_store(&s->failed, 1);
            atomic_store(&s->sent2, 1);
        }
        if (poll(&pf, 1, 2) > 0) done = serve_input(s, fd, in, sizeof in, &have);
    }
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

/* ---- the client ---- */

enum script { MID_BATCH, CLOSE_WHILE_PAUSED, BEFORE_OPEN };

/* What the client's timer waits for before its next step. */
enum step { ST_NONE, RESUME_AT_3, RESUME_AFTER_REQUEST, RESUME_AFTER_WRITE2, CLOSE_AFTER_WRITE2, OPENED_PAUSED };

struct run {
    enum script script;
    struct server *srv;
    herald_ctx_t *ctx;
    herald_client_t *c;
    uv_timer_t timer, guard;
    enum step step;
    uint64_t step_end;            /* uv_hrtime() by which the step gives up */

    unsigned got[NPUB + 8];
    uint64_t rx_ns[NPUB + 8];
    int ngot;
    int depth, reentered;         /* an on_pub inside another */
    int pub_while_paused, pub_in_resume, in_resume;
    int pause_err, resume_err, publish_err, pause_after_close;
    int unread_while_paused;      /* FIONREAD of the client's socket with the second write in it */
    int unread_after;             /* ... at the close */
    int opened, closed, close_err, close_code, guard_fired, timed_out;
    size_t len2;                  /* the server's second write, for the checks after the run */
};

static void find_fd(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TCP) uv_fileno(h, (uv_os_fd_t *)arg);
}

/* Bytes waiting unread in the client's socket. */
static int unread(struct run *r)
{
    uv_os_fd_t fd = -1;
    int n = -1;

    uv_walk(herald_ctx_loop(r->ctx), find_fd, &fd);
    if (fd < 0 || ioctl(fd, FIONREAD, &n)) return -1;
    return n;
}

static void do_resume(struct run *r)
{
    r->in_resume = 1;
    r->resume_err |= herald_client_resume(r->c);
    r->in_resume = 0;
    if (herald_client_paused(r->c)) r->resume_err |= 1;
}

static void on_timer(uv_timer_t *t)
{
    struct run *r = t->data;
    int ready = 0;

    if (!r->c) return;
    switch (r->step) {
    case RESUME_AT_3: ready = 1; break;
    case RESUME_AFTER_REQUEST: ready = atomic_load(&r->srv->requests) >= 1; break;
    case RESUME_AFTER_WRITE2:
    case CLOSE_AFTER_WRITE2:
    case OPENED_PAUSED:
        /* Paused, the client leaves the second write in its socket. */
        ready = atomic_load(&r->srv->sent2) && unread(r) >= (int)r->srv->len2;
        break;
    default: return;
    }
    if (!ready && uv_hrtime() < r->step_end) {
        uv_timer_start(t, on_timer, POLL_MS, 0);
        return;
    }
    if (!ready) {
        r->timed_out = r->step;
        herald_client_abort(r->c);
        return;
    }
    if (r->step != RESUME_AT_3 && r->step != RESUME_AFTER_REQUEST) r->unread_while_paused = unread(r);
    if (r->step == CLOSE_AFTER_WRITE2) {
        herald_close(r->c, 1000, "bye");
        r->pause_after_close = herald_client_pause(r->c);
        if (herald_client_paused(r->c)) r->resume_err |= 2;
    } else {
        do_resume(r);
    }
    r->step = ST_NONE;
}

/* Starts the timer's polling for step @st. */
static void wait_then(struct run *r, enum step st)
{
    r->step = st;
    r->step_end = uv_hrtime() + WAIT_MS * 1000000ULL;
    uv_timer_start(&r->timer, on_timer, POLL_MS, 0);
}

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct run *r = ud;

    (void)m;
    r->opened = 1;
    if (r->script == BEFORE_OPEN) {
        if (!herald_client_paused(c)) r->pause_err |= 4;
        atomic_store(&r->srv->go, 1);
        wait_then(r, OPENED_PAUSED);
    }
}

static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct run *r = ud;
    unsigned off = (unsigned)m->offset;

    if (r->depth++) r->reentered++;
    if (herald_client_paused(c)) r->pub_while_paused++;
    if (r->in_resume) r->pub_in_resume++;
    if (r->ngot < NPUB + 8) {
        r->rx_ns[r->ngot] = m->rx_ns;
        r->got[r->ngot++] = off;
    }
    if (r->script == MID_BATCH) {
        switch (off) {
        case 3:                    /* inside the 1..5 message: 4 and 5 are held */
            r->pause_err |= herald_client_pause(c);
            wait_then(r, RESUME_AT_3);
            break;
        case 4:                    /* again, while the held rest is being delivered; and a request */
            r->pause_err |= herald_client_pause(c);
            r->publish_err |= herald_publish(c, "c", 1, "1", 1, NULL, NULL, NULL);
            wait_then(r, RESUME_AFTER_REQUEST);
            break;
        case 7:                    /* frames 8..10 and half of 11 stay behind it; then more arrives */
            r->pause_err |= herald_client_pause(c);
            r->pause_err |= herald_client_pause(c);   /* harmless twice */
            atomic_store(&r->srv->go, 1);
            wait_then(r, RESUME_AFTER_WRITE2);
            break;
        case 9:                    /* paused and resumed in one callback: delivery just goes on */
            r->pause_err |= herald_client_pause(c);
            do_resume(r);
            break;
        case NPUB:
            r->unread_after = unread(r);
            herald_close(c, 1000, NULL);
            break;
        }
    } else if (r->script == CLOSE_WHILE_PAUSED && off == 2) {
        r->pause_err |= herald_client_pause(c);
        atomic_store(&r->srv->go, 1);
        wait_then(r, CLOSE_AFTER_WRITE2);
    } else if (r->script == BEFORE_OPEN && off == NPUB) {
        herald_close(c, 1000, NULL);
    }
    r->depth--;
}

static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    struct run *r = ud;

    (void)c;
    r->closed = 1;
    r->close_err = info->err;
    r->close_code = info->code;
    r->c = NULL;
    uv_close((uv_handle_t *)&r->timer, NULL);
    uv_close((uv_handle_t *)&r->guard, NULL);
}

static void on_guard(uv_timer_t *t)
{
    struct run *r = t->data;

    r->guard_fired = 1;
    if (r->c) herald_client_abort(r->c);
}

static void run_script(struct run *r)
{
    struct server srv;
    herald_callbacks_t cb = { .on_open = on_open, .on_pub = on_pub, .on_close = on_close };
    herald_url_t url;
    uv_loop_t loop;
    char u[64];

    r->srv = &srv;
    server_start(&srv);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(herald_ctx_new(&loop, &r->ctx), 0);
    snprintf(u, sizeof u, "ws://127.0.0.1:%d/ws", srv.port);
    assert_int_equal(herald_url_parse(u, &url), 0);
    uv_timer_init(&loop, &r->timer);
    r->timer.data = r;
    uv_timer_init(&loop, &r->guard);
    r->guard.data = r;
    uv_timer_start(&r->guard, on_guard, 4 * WAIT_MS, 0);
    assert_int_equal(herald_client_new(r->ctx, &url, NULL, &cb, r, &r->c), 0);
    if (r->script == BEFORE_OPEN) {
        assert_int_equal(herald_client_pause(r->c), 0);
        assert_int_equal(herald_client_paused(r->c), 1);
    }
    uv_run(&loop, UV_RUN_DEFAULT);               /* until on_close and its handles are closed */
    herald_ctx_free(r->ctx);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    pthread_join(srv.thread, NULL);
    close(srv.lfd);

    assert_int_equal(atomic_load(&srv.failed), 0);
    assert_int_equal(r->timed_out, 0);
    assert_false(r->guard_fired);
    assert_true(r->opened);
    assert_true(r->closed);
    assert_int_equal(r->reentered, 0);
    assert_int_equal(r->pub_while_paused, 0);
    assert_int_equal(r->pub_in_resume, 0);
    assert_int_equal(r->pause_err, 0);
    assert_int_equal(r->resume_err, 0);
    /* Orderly: the client's close was echoed and the server then closed. */
    assert_int_equal(atomic_load(&srv.closed), 1);
    assert_int_equal(r->close_err, 0);
    assert_int_equal(r->close_code, 1000);
    /* While paused, the second write waited in the socket: nothing read it
     * (paused before open, the first may wait there too). */
    assert_true(r->unread_while_paused >= (int)srv.len2);
    r->len2 = srv.len2;
    r->srv = NULL;
}

static void assert_in_order(const struct run *r, int n)
{
    assert_int_equal(r->ngot, n);
    for (int i = 0; i < n; i++) assert_int_equal(r->got[i], (unsigned)(i + 1));
}

static void test_pause_mid_batch(void **state)
{
    struct run r = { .script = MID_BATCH };

    (void)state;
    run_script(&r);
    assert_in_order(&r, NPUB);
    assert_int_equal(r.publish_err, 0);
    assert_int_equal(r.unread_while_paused, (int)r.len2);
    assert_int_equal(r.unread_after, 0);
    /* Held messages keep the time their bytes were read: 4 and 5 came in pub 3's read. */
    assert_true(r.rx_ns[3] == r.rx_ns[2] && r.rx_ns[4] == r.rx_ns[2]);
}

static void test_close_while_paused(void **state)
{
    struct run r = { .script = CLOSE_WHILE_PAUSED };

    (void)state;
    run_script(&r);
    /* The kept messages are dropped as any after a close: nothing after 2. */
    assert_in_order(&r, 2);
    assert_int_equal(r.pause_after_close, HERALD_E_STATE);
}

static void test_pause_before_open(void **state)
{
    struct run r = { .script = BEFORE_OPEN };

    (void)state;
    run_script(&r);
    assert_in_order(&r, NPUB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pause_mid_batch),
        cmocka_unit_test(test_close_while_paused),
        cmocka_unit_test(test_pause_before_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
