/* broker/net/sendring.h - many small socket writes in one system call.
 *
 * Owns: one io_uring and a staging arena, both loop-thread only.
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
 * Where io_uring is missing or forbidden (old kernels, seccomp, valgrind)
 * sendring_init() fails and callers write one send at a time as before. */
#ifndef HERALD_SENDRING_H
#define HERALD_SENDRING_H

#include <stddef.h>

/* sendring_init() - set up a ring of @entries sends and an arena of @arena
 * bytes for the bodies callers build (sendring_stage()).
 * Return: 0, or a negative errno (io_uring not available; nothing to undo). */
int sendring_init(unsigned entries, size_t arena);

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
