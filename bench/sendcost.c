/* bench/sendcost.c - herald-sendcost: what one small send to a quiet
 * connection costs the sender, one send() per socket against io_uring
 * batches of several sends per system call. The measurement behind
 * broker/net/sendring.c (docs/benchmarks.md, "Cheaper small deliveries").
 *
 * usage: herald-sendcost [CONNECTIONS [ROUNDS [BATCH]]]   BATCH 0 = send()
 *
 * One process accepts CONNECTIONS loopback TCP connections from a child
 * that only reads (epoll; it sleeps between rounds, so each round's sends
 * wake it as a remote, mostly idle reader would be woken), then sends one
 * 110-byte message to every connection per round, ROUNDS times, 20 ms apart.
 * It prints the sender's CPU time per send (process CPU, so io_uring
 * workers would be counted too; with MSG_DONTWAIT none are used). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The child: connects @n sockets to @a and reads until nothing comes for 2 s. */
static void reader(const struct sockaddr_in *a, int n)
{
    int ep = epoll_create1(0);
    char buf[65536];
    struct epoll_event ev[256];

    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (const struct sockaddr *)a, sizeof *a)) {
            perror("herald-sendcost: connect");
            exit(1);
        }
        fcntl(c, F_SETFL, O_NONBLOCK);
        struct epoll_event e = { .events = EPOLLIN, .data.fd = c };
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
    }
    for (;;) {
        int k = epoll_wait(ep, ev, 256, 2000);
        if (k <= 0) break;
        for (int i = 0; i < k; i++)
            if (read(ev[i].data.fd, buf, sizeof buf) == 0) close(ev[i].data.fd);   /* the sender is done */
    }
    exit(0);
}

static void fail(const char *what, int err)
{
    fprintf(stderr, "herald-sendcost: %s: %s\n", what, strerror(err));
    exit(1);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000, rounds = argc > 2 ? atoi(argv[2]) : 50;
    int batch = argc > 3 ? atoi(argv[3]) : 0, one = 1, ls, *fds;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    char msg[110];
    struct io_uring ring;
    long sends = 0;
    pid_t kid;

    if (n < 1 || rounds < 1 || batch < 0 || batch > 4096) {
        fprintf(stderr, "usage: herald-sendcost [CONNECTIONS [ROUNDS [BATCH]]]  (BATCH 0..4096, 0 = send())\n");
        return 2;
    }
    if ((ls = socket(AF_INET, SOCK_STREAM, 0)) < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) ||
        listen(ls, 4096) || getsockname(ls, (struct sockaddr *)&a, &al))
        fail("listen", errno);
    if (!(fds = calloc((size_t)n, sizeof *fds))) fail("calloc", ENOMEM);
    if ((kid = fork()) < 0) fail("fork", errno);
    if (kid == 0) reader(&a, n);
    for (int i = 0; i < n; i++) {
        if ((fds[i] = accept(ls, NULL, NULL)) < 0) fail("accept", errno);
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    memset(msg, 'x', sizeof msg);
    if (batch) {
        int rc = io_uring_queue_init((unsigned)batch, &ring, 0);
        if (rc < 0) fail("io_uring_queue_init", -rc);
    }
    double c0 = cpu_seconds();
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i += batch ? batch : n) {
            if (!batch) {
                for (int j = 0; j < n; j++)
                    if (send(fds[j], msg, sizeof msg, MSG_NOSIGNAL) != (ssize_t)sizeof msg) fail("send", errno);
                sends += n;
                continue;
            }
            int k = i + batch > n ? n - i : batch;
            unsigned head, seen = 0;
            struct io_uring_cqe *cqe;
            for (int j = 0; j < k; j++)
                io_uring_prep_send(io_uring_get_sqe(&ring), fds[i + j], msg, sizeof msg, MSG_DONTWAIT | MSG_NOSIGNAL);
            io_uring_submit_and_wait(&ring, (unsigned)k);
            io_uring_for_each_cqe(&ring, head, cqe) {
                if (cqe->res != (int)sizeof msg) fail("io_uring send", cqe->res < 0 ? -cqe->res : EIO);
                seen++;
            }
            io_uring_cq_advance(&ring, seen);
            sends += k;
        }
        usleep(20000);                            /* the reader goes idle again */
    }
    double c1 = cpu_seconds();
    printf("connections %d  rounds %d  batch %d  sends %ld  cpu per send %.2f us\n", n, rounds, batch, sends,
           (c1 - c0) * 1e6 / (double)sends);
    for (int i = 0; i < n; i++) close(fds[i]);
    waitpid(kid, NULL, 0);
    if (batch) io_uring_queue_exit(&ring);
    free(fds);
    return 0;
}
