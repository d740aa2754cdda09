/* bench/proc.h - what the kernel tells about the broker and the bench: the
 * broker's resident memory, and the CPU both use during a step.
 *
 * Owns: reading /proc/PID/status and /proc/PID/stat (PID: --pid), the
 * bench's getrusage(), and the CPU clocks of the current step. Does not own:
 * the steps (run.c, staterun.c), what is done with the figures (report.c,
 * the scenarios). proc_rss() needs no loop (main.c checks --pid with it);
 * the rest runs on the loop's thread. */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

#include "bench.h"

/* proc_rss() - the resident set of process @pid in bytes, or -1. */
long proc_rss(int pid);

/* proc_ticks() - the CPU time (user + system) process @pid has used, in
 * clock ticks (sysconf(_SC_CLK_TCK) a second), or -1 if it cannot be read. */
long proc_ticks(int pid);

/* proc_cpu_start() - start the CPU clocks of a step: the bench's own and,
 * with --pid, the broker's (each node's with a list, nodes.h). */
void proc_cpu_start(void);

/* proc_cpu_stop() - the CPU use of @st from proc_cpu_start() to st->t_end,
 * in percent of one core: st->bench_cpu, and st->broker_cpu (the sum over
 * the --pid list; -1 without --pid or when one cannot be read). */
void proc_cpu_stop(step_t *st);

#endif
