/* broker/loopwatch.c - see loopwatch.h. */
#include "loopwatch.h"
#include "stats.h"
#include "log.h"

#include <stdint.h>

static struct {
    uv_prepare_t prepare;
    int idle_ok;                  /* UV_METRICS_IDLE_TIME is on */
    uint64_t last_ns, last_idle_ns;
    uint64_t window_ns, window_busy_ns;   /* the current one-second window */
} lw;

#define WINDOW_NS 1000000000ull

int loopwatch_configure(uv_loop_t *loop)
{
    int r = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
    if (r) hlog(LOG_WARN, "server", "loop idle time not available (%s): loop turns count their waits", uv_strerror(r));
    lw.idle_ok = r == 0;
    metrics.loop_busy_ok = lw.idle_ok;
    return r;
}

/* Runs once per loop iteration, right before the loop polls: everything
 * since the last call is one turn, of which the poll's wait was idle. */
static void on_prepare(uv_prepare_t *h)
{
    uint64_t now = uv_hrtime(), idle = lw.idle_ok ? uv_metrics_idle_time(h->loop) : lw.last_idle_ns;
    uint64_t wall = now - lw.last_ns, waited = idle - lw.last_idle_ns;
    uint64_t busy = waited < wall ? wall - waited : 0;

    lw.last_ns = now;
    lw.last_idle_ns = idle;
    histo_observe(&metrics.loop_turn_seconds, (double)busy / 1e9);
    metrics.loop_busy_ns += busy;
    lw.window_busy_ns += busy;
    if (now - lw.window_ns >= WINDOW_NS) {
        metrics.loop_busy_ppm = (uint32_t)(lw.window_busy_ns * 1000000u / (now - lw.window_ns));
        if (metrics.loop_busy_ppm > 1000000u) metrics.loop_busy_ppm = 1000000u;
        lw.window_ns = now;
        lw.window_busy_ns = 0;
    }
}

void loopwatch_start(uv_loop_t *loop)
{
    uv_prepare_init(loop, &lw.prepare);
    lw.last_ns = lw.window_ns = uv_hrtime();
    lw.last_idle_ns = lw.idle_ok ? uv_metrics_idle_time(loop) : 0;
    uv_prepare_start(&lw.prepare, on_prepare);
    uv_unref((uv_handle_t *)&lw.prepare);
}

void loopwatch_stop(void)
{
    if (!uv_is_active((uv_handle_t *)&lw.prepare) || uv_is_closing((uv_handle_t *)&lw.prepare)) return;
    uv_prepare_stop(&lw.prepare);
    uv_close((uv_handle_t *)&lw.prepare, NULL);
}
