/* broker/net/sendring.c - see sendring.h. */
#include "net/sendring.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct entry {
    void *owner;
    const unsigned char *buf;
    size_t len;
    int res;
};

static struct {
    int ready;
    struct io_uring ring;
    struct entry *e;
    unsigned cap, n;
    unsigned char *arena;
    size_t arena_cap, arena_used;
} sr;

int sendring_init(unsigned entries, size_t arena)
{
    int rc;

    memset(&sr, 0, sizeof sr);
    if ((rc = io_uring_queue_init(entries, &sr.ring, 0)) < 0) return rc;
    sr.e = calloc(entries, sizeof *sr.e);
    sr.arena = malloc(arena);
    if (!sr.e || !sr.arena) {
        io_uring_queue_exit(&sr.ring);
        free(sr.e);
        free(sr.arena);
        memset(&sr, 0, sizeof sr);
        return -ENOMEM;
    }
    /* The ring may have been rounded up; use what was asked for. */
    sr.cap = entries;
    sr.arena_cap = arena;
    sr.ready = 1;
    return 0;
}

void sendring_deinit(void)
{
    if (!sr.ready) return;
    io_uring_queue_exit(&sr.ring);
    free(sr.e);
    free(sr.arena);
    memset(&sr, 0, sizeof sr);
}

int sendring_ready(void) { return sr.ready; }

unsigned sendring_pending(void) { return sr.n; }

int sendring_full(void) { return sr.n == sr.cap; }

size_t sendring_room(void) { return sr.arena_cap - sr.arena_used; }

unsigned char *sendring_stage(size_t len)
{
    unsigned char *p;

    if (len > sr.arena_cap - sr.arena_used) return NULL;
    p = sr.arena + sr.arena_used;
    sr.arena_used += len;
    return p;
}

int sendring_add(int fd, const void *buf, size_t len, void *owner)
{
    struct io_uring_sqe *sqe;

    if (sr.n == sr.cap || !(sqe = io_uring_get_sqe(&sr.ring))) return -ENOSPC;
    /* MSG_DONTWAIT: complete now (whole, partial or -EAGAIN), never wait
     * for room - the loop must not stall on one slow reader. */
    io_uring_prep_send(sqe, fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, sr.n);
    sr.e[sr.n] = (struct entry){ owner, buf, len, -EIO };
    sr.n++;
    return 0;
}

void sendring_submit(void (*done)(void *owner, const unsigned char *buf, size_t len, int res))
{
    unsigned seen = 0, head;
    struct io_uring_cqe *cqe;

    if (!sr.n) return;
    while (seen < sr.n) {
        int rc = io_uring_submit_and_wait(&sr.ring, sr.n - seen);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) break;
        unsigned got = 0;
        io_uring_for_each_cqe(&sr.ring, head, cqe) {
            uint64_t i = io_uring_cqe_get_data64(cqe);
            if (i < sr.n) sr.e[i].res = cqe->res;
            got++;
        }
        io_uring_cq_advance(&sr.ring, got);
        seen += got;
    }
    /* The completions are in; report in the order the sends were added so
     * the caller's bookkeeping follows its own queue order. An entry whose
     * completion never came (the submit itself failed) reports -EIO. */
    for (unsigned i = 0; i < sr.n; i++) done(sr.e[i].owner, sr.e[i].buf, sr.e[i].len, sr.e[i].res);
    /* A ring that failed to submit may still hold sends the kernel took:
     * their completions would be read as another batch's. Stop using it;
     * callers fall back to one send at a time. */
    if (seen < sr.n) sr.ready = 0;
    sr.n = 0;
    sr.arena_used = 0;
}
