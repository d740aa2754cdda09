/* broker/app/metrics.h - GET /metrics.
 *
 * Owns: the rendering of every metric (the counters and histograms of
 * stats.h, the gauges read from the registry, the store and /proc) in the
 * Prometheus text exposition format. Does not own the counting (stats.h).
 * Loop thread only. */
#ifndef HERALD_METRICS_H
#define HERALD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "wbuf.h"

/* metrics_render() - append the whole exposition to @b. */
void metrics_render(wbuf_t *b);

#endif
