/* broker/net/sendring.c - see sendring.h.
 *
 * DESIGN (threads): a flush pass is fork-join. The loop thread records the
 * sends (sendring_add() only fills an array) and splits them into lanes by
 * socket (fd % lanes). sendring_submit() wakes the helper threads and sends
 * lane 0 itself; each helper that wakes claims a lane and prepares, submits
 * and reaps its sends on its own ring. Lanes no helper has claimed by the
 * time the loop is done with lane 0 the loop takes back and sends on its own
 * ring: a helper whose core is busy with something else (the load
 * generator in a benchmark, an application server) costs a wakeup, never a
 * stall. sendring_submit() returns only when every lane is done, so no send
 * is in flight outside it (a socket cannot be closed and its fd reused under
 * a helper), a ring is used by one thread at a time, two sends to one socket
 * stay in order on one lane, and the callers' bookkeeping (ring_done() in
 * session.c) stays on the loop thread. A pass shorter than SPLIT_MIN is not
 * worth a wakeup and stays on the loop thread. */
#include "net/sendring.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Fewer sends than this in a pass go on the loop thread alone: waking a
 * helper costs a few microseconds, one send about four (docs/benchmarks.md). */
#define SPLIT_MIN 16

struct entry {
    void *owner;
    const unsigned char *buf;
    size_t len;
    int fd;
};

struct lane {
    pthread_t tid;
    struct io_uring ring;
    unsigned idx;                 /* 1..nlanes-1; lane 0 is the loop thread's sr.ring */
    int started;
    int claimed;                  /* lane idx of the current pass is taken (by its helper or the loop); sr.mu */
};

static struct {
    int ready;
    struct io_uring ring;         /* lane 0 */
    struct entry *e;
    int *res;                     /* apart from e: helpers write res while other lanes read e */
    unsigned cap, n;
    unsigned char *arena;
    size_t arena_cap, arena_used;
    /* helper threads */
    unsigned nlanes;              /* 1 + helpers */
    struct lane *lanes;           /* [nlanes], [0] unused */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;                 /* passes handed out; a helper looks once per increment */
    unsigned busy;                /* helpers working on a lane of the current pass */
    unsigned pass_n;              /* sends in the current pass */
    int broken, stop;
    uint64_t offloaded;           /* sends made by helper threads (counted on the loop thread) */
} sr;

/* Prepares, submits and reaps the sends of lane @lane of @nlanes (all of
 * them when @nlanes is 1) among the first @n entries, on @ring.
 * Return: 0, or -1 if the ring failed and must not be used again. */
static int run_lane(struct io_uring *ring, unsigned lane, unsigned nlanes, unsigned n)
{
    unsigned mine = 0, seen = 0, head;
    struct io_uring_cqe *cqe;

    for (unsigned i = 0; i < n; i++) {
        struct io_uring_sqe *sqe;
        if (nlanes > 1 && (unsigned)sr.e[i].fd % nlanes != lane) continue;
        /* The ring has room for cap entries and n <= cap. */
        if (!(sqe = io_uring_get_sqe(ring))) return -1;
        /* MSG_DONTWAIT: complete now (whole, partial or -EAGAIN), never wait
         * for room - the loop must not stall on one slow reader. */
        io_uring_prep_send(sqe, sr.e[i].fd, sr.e[i].buf, sr.e[i].len, MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, i);
        mine++;
    }
    while (seen < mine) {
        int rc = io_uring_submit_and_wait(ring, mine - seen);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) break;
        unsigned got = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            uint64_t i = io_uring_cqe_get_data64(cqe);
            if (i < n) sr.res[i] = cqe->res;
            got++;
        }
        io_uring_cq_advance(ring, got);
        seen += got;
    }
    /* A ring that failed to submit may still hold sends the kernel took:
     * their completions would be read as another pass's. */
    return seen < mine ? -1 : 0;
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    uint64_t seen = 0;
    char name[16];

    /* Named so top -H, perf and /proc/PID/task show what the loop gave away. */
    snprintf(name, sizeof name, "herald-send%u", l->idx);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&sr.mu);
    for (;;) {
        while (sr.gen == seen && !sr.stop) pthread_cond_wait(&sr.go, &sr.mu);
        if (sr.stop) break;
        seen = sr.gen;
        /* Woken late, the loop may have sent this lane already. */
        if (l->claimed) continue;
        l->claimed = 1;
        sr.busy++;
        unsigned n = sr.pass_n, nlanes = sr.nlanes;
        pthread_mutex_unlock(&sr.mu);
        int bad = run_lane(&l->ring, l->idx, nlanes, n);
        pthread_mutex_lock(&sr.mu);
        if (bad) sr.broken = 1;
        if (--sr.busy == 0) pthread_cond_signal(&sr.done);
    }
    pthread_mutex_unlock(&sr.mu);
    return NULL;
}

static void stop_lanes(void)
{
    if (!sr.lanes) return;
    pthread_mutex_lock(&sr.mu);
    sr.stop = 1;
    pthread_cond_broadcast(&sr.go);
    pthread_mutex_unlock(&sr.mu);
    for (unsigned k = 1; k < sr.nlanes; k++) {
        if (!sr.lanes[k].started) continue;
        pthread_join(sr.lanes[k].tid, NULL);
        io_uring_queue_exit(&sr.lanes[k].ring);
    }
    free(sr.lanes);
    sr.lanes = NULL;
    pthread_mutex_destroy(&sr.mu);
    pthread_cond_destroy(&sr.go);
    pthread_cond_destroy(&sr.done);
}

/* Starts @nlanes - 1 helper threads with a ring of @entries each.
 * Return: the lanes running (1: the loop thread alone). */
static unsigned start_lanes(unsigned nlanes, unsigned entries)
{
    unsigned k;

    if (nlanes <= 1 || !(sr.lanes = calloc(nlanes, sizeof *sr.lanes))) return 1;
    pthread_mutex_init(&sr.mu, NULL);
    pthread_cond_init(&sr.go, NULL);
    pthread_cond_init(&sr.done, NULL);
    for (k = 1; k < nlanes; k++) {
        struct lane *l = &sr.lanes[k];
        l->idx = k;
        if (io_uring_queue_init(entries, &l->ring, 0) < 0) break;
        if (pthread_create(&l->tid, NULL, lane_main, l)) {
            io_uring_queue_exit(&l->ring);
            break;
        }
        l->started = 1;
    }
    sr.nlanes = k;    /* the lanes that started; fd % nlanes then covers only them */
    if (k == 1) {
        stop_lanes();
        sr.nlanes = 1;
    }
    return sr.nlanes;
}

int sendring_init(unsigned entries, size_t arena, unsigned threads)
{
    int rc;

    memset(&sr, 0, sizeof sr);
    if ((rc = io_uring_queue_init(entries, &sr.ring, 0)) < 0) return rc;
    sr.e = calloc(entries, sizeof *sr.e);
    sr.res = calloc(entries, sizeof *sr.res);
    sr.arena = malloc(arena);
    if (!sr.e || !sr.res || !sr.arena) {
        io_uring_queue_exit(&sr.ring);
        free(sr.e);
        free(sr.res);
        free(sr.arena);
        memset(&sr, 0, sizeof sr);
        return -ENOMEM;
    }
    /* The ring may have been rounded up; use what was asked for. */
    sr.cap = entries;
    sr.arena_cap = arena;
    sr.nlanes = 1;
    start_lanes(threads, entries);
    sr.ready = 1;
    return 0;
}

void sendring_deinit(void)
{
    if (!sr.e) return;
    stop_lanes();
    io_uring_queue_exit(&sr.ring);
    free(sr.e);
    free(sr.res);
    free(sr.arena);
    memset(&sr, 0, sizeof sr);
}

int sendring_ready(void) { return sr.ready; }

unsigned sendring_threads(void) { return sr.ready ? sr.nlanes : 0; }

uint64_t sendring_offloaded(void) { return sr.offloaded; }

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
    if (sr.n == sr.cap) return -ENOSPC;
    sr.e[sr.n] = (struct entry){ owner, buf, len, fd };
    sr.res[sr.n] = -EIO;
    sr.n++;
    return 0;
}

void sendring_submit(void (*done)(void *owner, const unsigned char *buf, size_t len, int res))
{
    unsigned n = sr.n, nlanes = sr.nlanes;
    int bad;

    if (!n) return;
    if (nlanes > 1 && n >= SPLIT_MIN) {
        uint64_t mine = 0;
        pthread_mutex_lock(&sr.mu);
        sr.pass_n = n;
        for (unsigned k = 1; k < nlanes; k++) sr.lanes[k].claimed = 0;
        sr.gen++;
        pthread_cond_broadcast(&sr.go);
        pthread_mutex_unlock(&sr.mu);
        bad = run_lane(&sr.ring, 0, nlanes, n);
        for (unsigned i = 0; i < n; i++) mine += (unsigned)sr.e[i].fd % nlanes == 0;
        /* Take back what no helper has started. */
        for (unsigned k = 1; k < nlanes; k++) {
            int taken;
            pthread_mutex_lock(&sr.mu);
            taken = sr.lanes[k].claimed;
            sr.lanes[k].claimed = 1;
            pthread_mutex_unlock(&sr.mu);
            if (taken) continue;
            if (run_lane(&sr.ring, k, nlanes, n)) bad = -1;
            for (unsigned i = 0; i < n; i++) mine += (unsigned)sr.e[i].fd % nlanes == k;
        }
        pthread_mutex_lock(&sr.mu);
        while (sr.busy) pthread_cond_wait(&sr.done, &sr.mu);
        if (sr.broken) bad = -1;
        pthread_mutex_unlock(&sr.mu);
        sr.offloaded += n - mine;
    } else {
        bad = run_lane(&sr.ring, 0, 1, n);
    }
    /* The completions are in; report in the order the sends were added so
     * the caller's bookkeeping follows its own queue order. An entry whose
     * completion never came (a submit failed) reports -EIO. */
    for (unsigned i = 0; i < n; i++) done(sr.e[i].owner, sr.e[i].buf, sr.e[i].len, sr.res[i]);
    /* A failed ring may still hold sends the kernel took: stop using the
     * rings; callers fall back to one send at a time. */
    if (bad) sr.ready = 0;
    sr.n = 0;
    sr.arena_used = 0;
}
