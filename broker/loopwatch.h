/* broker/loopwatch.h - how busy the event loop is, turn by turn.
 *
 * Owns: a uv_prepare_t on the loop and the loop's idle-time accounting
 * (UV_METRICS_IDLE_TIME). Each loop iteration, just before the loop polls,
 * it takes the time the iteration spent working (wall time since the last
 * poll minus the time spent waiting in it) and counts it in
 * metrics.loop_turn_seconds; it also keeps the share of wall time spent
 * working over the last second (metrics.loop_busy_ppm).
 * DESIGN: a long turn delays every connection's reads and writes by its
 * length, whatever the CPU figure says: a loop at 60% CPU whose turns take
 * 200 ms has a latency problem a busy ratio hides. The cost is two clock
 * reads per turn (vDSO), nothing per message.
 * Does not own: the loop. Loop thread only. */
#ifndef HERALD_LOOPWATCH_H
#define HERALD_LOOPWATCH_H

#include <uv.h>

/* loopwatch_configure() - turn on the idle-time accounting of @loop; call
 * after uv_loop_init() and before uv_run(). Return: 0, or a UV_* code
 * (logged; the watch then counts whole turns, waiting included). */
int loopwatch_configure(uv_loop_t *loop);

/* loopwatch_start() - start watching @loop (the handle does not keep the
 * loop alive). */
void loopwatch_start(uv_loop_t *loop);

/* loopwatch_stop() - stop and close the handle (before the loop's last run). */
void loopwatch_stop(void);

#endif
