/* broker/net/sendring.h - many small socket writes in one system call.
 *
 * Owns: one io_uring and a staging arena used from the loop thread, and the
 * helper threads (server.threads) that share a big flush pass's sends, each
 * with an io_uring of its own. Every function here is loop-thread only.
 * DESIGN: when many quiet connections each get a message (5,000 chat rooms
 * with two members, say), the broker's core goes to one send() per delivery.
 * Handing the kernel a whole flush pass of sends in one io_uring_enter()
 * costs a third less CPU per send on this project's test machine
 * (docs/benchmarks.md, "Cheaper small deliveries"). Every send carries
 * MSG_DONTWAIT, which makes io_uring complete it at once - whole, partial or
 * -EAGAIN - instead of parking it until the socket drains; sendring_submit()
 * then waits for all of them, so nothing is in flight once it returns: the
 * buffers need to live only until then, and an entry can never write to a
 * socket that a later turn closed and the kernel gave to someone else.
 * With server.threads above 1 the sockets of a pass of SPLIT_MIN (16) sends
 * or more are split between the loop thread and the helpers by descriptor;
 * sendring_submit() returns only when all of them are done (sendring.c).
 * Where io_uring is missing or forbidden (old kernels, seccomp, valgrind)
 * sendring_init() fails and callers write one send at a time as before. */
#ifndef HERALD_SENDRING_H
#define HERALD_SENDRING_H

#include <stddef.h>
#include <stdint.h>

/* sendring_init() - set up a ring of @entries sends and an arena of @arena
 * bytes for the bodies callers build (sendring_stage()), and @threads - 1
 * helper threads (0 or 1: none). A helper that cannot start (no thread, no
 * ring) is left out; sendring_threads() says how many lanes run.
 * Return: 0, or a negative errno (io_uring not available; nothing to undo). */
int sendring_init(unsigned entries, size_t arena, unsigned threads);

/* More helpers than this would each get too few sends of a pass to pay for
 * their wakeup; server.threads is capped here. */
#define SENDRING_THREADS_MAX 16

/* sendring_deinit() - tear down; nothing may be pending. */
void sendring_deinit(void);

/* sendring_ready() - whether sendring_init() succeeded (and deinit has not run). */
int sendring_ready(void);

/* sendring_stage() - @len bytes of the arena, valid until the next
 * sendring_submit(). Return: the space, or NULL when the arena lacks room
 * (submit, then ask again; a @len over the arena's size never fits). */
unsigned char *sendring_stage(size_t len);

/* sendring_add() - queue a send of @len bytes at @buf (which must stay valid
 * until sendring_submit() returns) on socket @fd, reported to @owner.
 * Return: 0, or -ENOSPC when the ring is full (submit first). */
int sendring_add(int fd, const void *buf, size_t len, void *owner);

/* sendring_threads() - the threads that make the sends: 1 (the loop thread)
 * plus the helpers running; 0 when the ring is not ready. */
unsigned sendring_threads(void);

/* sendring_offloaded() - sends the helper threads have made since init. */
uint64_t sendring_offloaded(void);

/* sendring_pending() - sends queued and not yet submitted. */
unsigned sendring_pending(void);

/* sendring_full() - whether sendring_add() would fail (submit first). */
int sendring_full(void);

/* sendring_room() - bytes sendring_stage() can still give before a submit. */
size_t sendring_room(void);

/* sendring_submit() - send everything queued in one system call and call
 * @done for each send, in the order they were added, with what the kernel
 * did: @res = bytes written (possibly fewer than @len), or a negative errno
 * (-EAGAIN: the socket was full, nothing written). @done may queue nothing.
 * Afterwards the ring and the arena are empty. */
void sendring_submit(void (*done)(void *owner, const unsigned char *buf, size_t len, int res));

#endif
