/* common/clock.h - the two clocks Herald reads: wall time for the `ts` that
 * clients see, monotonic time for durations and timeouts. */
#ifndef HERALD_CLOCK_H
#define HERALD_CLOCK_H

#include <stdint.h>

/* clock_wall_ms() - milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_wall_ms(void);

/* clock_mono_ns() - nanoseconds on CLOCK_MONOTONIC; only differences mean anything. */
uint64_t clock_mono_ns(void);

#endif
