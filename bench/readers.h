/* bench/readers.h - fanout's and channels' subscribers in separate reader
 * processes (--readers P), so that the broker writes to mostly idle readers.
 *
 * Owns: the P child processes, the control socket to each, the messages on
 * it, and both ends of them: the parent's (merging the readers' counts,
 * latency histograms and CPU into the steps) and the reader's (its share of
 * the subscriber connections, read and checked exactly as run.c checks its
 * own). Does not own: the steps, the publications, their acks and the
 * judging of a step (run.c), the report (pubs.c, report.c).
 *
 * Why: a subscriber in the bench's own busy loop is read while the loop is
 * awake anyway, so the broker's write to it rarely pays for waking a
 * sleeping reader. Real subscribers are on other machines and mostly idle.
 * A reader process does nothing but read and check, sleeps in epoll between
 * messages, and so makes every write of the broker pay that wakeup.
 *
 * The parent side runs on the loop's thread; readers_spawn() before the loop
 * exists (fork() must not copy an epoll set or a libwebsockets context). */
#ifndef BENCH_READERS_H
#define BENCH_READERS_H

#include "bench.h"

/* The most reader processes. */
#define READERS_MAX 64

/* readers_spawn() - fork B.o.readers reader processes; reader k takes the
 * subscribers k, k+P, k+2P... of B.peers[0, B.nsubs) (each on channel
 * i % channels, as run.c places them). Call after the channels' names exist
 * and before loop_start(). A child never returns from here.
 * Return: 0, or -1 with the reason on stderr (nothing is left running). */
int readers_spawn(void);

/* readers_attach() - watch the readers' sockets on B.loop and send them B.t0,
 * which lets them connect. Each reader then connects and subscribes its
 * share and, once all of them are subscribed, the parent counts them ready
 * (bench_remote_ready(), run.h); a reader that cannot fails the run. */
void readers_attach(void);

/* readers_cpu_start() / readers_cpu_stop() - the readers' CPU during a step:
 * st->readers_cpu (sum over the readers, percent of one core) and
 * st->readers_cpu_max (the busiest one), from st->t_start to st->t_end. */
void readers_cpu_start(void);
void readers_cpu_stop(step_t *st);

/* readers_collect() - step @st's drain is over: tell every reader which of
 * its publications went unacknowledged, and ask for its figures. As they
 * come in, st->received, gaps, dups, late, t_last_rx and lat get each
 * reader's share; @done(st) is called once all are in. */
void readers_collect(step_t *st, void (*done)(step_t *st));

/* readers_stop() - teardown: close the sockets, so each reader closes its
 * connections and exits. readers_reap() - after the loop: wait for them. */
void readers_stop(void);
void readers_reap(void);

#endif
