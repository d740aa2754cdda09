/* broker/stats.c - see stats.h. */
#include "stats.h"
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct herald_metrics metrics;

/* The configuration whose namespaces the per-namespace counters follow. */
static const config_t *conf;

static const double latency_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5, 1, 2.5, 5, 10 };
/* Loop turns are microseconds when all is well; the top buckets are stalls. */
static const double turn_bounds[] = { 0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025, 0.05, 0.1, 0.25, 1 };
static const double batch_bounds[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 4096 };

#define NB(a) (sizeof a / sizeof a[0])

void histo_observe(histo_t *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

int stats_init(const config_t *cfg)
{
    memset(&metrics, 0, sizeof metrics);
    conf = cfg;
    metrics.publish_fanout_seconds.bounds = latency_bounds;
    metrics.publish_fanout_seconds.n = NB(latency_bounds);
    metrics.commit_seconds.bounds = latency_bounds;
    metrics.commit_seconds.n = NB(latency_bounds);
    metrics.commit_batch.bounds = batch_bounds;
    metrics.commit_batch.n = NB(batch_bounds);
    metrics.loop_turn_seconds.bounds = turn_bounds;
    metrics.loop_turn_seconds.n = NB(turn_bounds);
    metrics.ns_publications = calloc(conf->nns + 2, sizeof *metrics.ns_publications);
    metrics.ns_deliveries = calloc(conf->nns + 2, sizeof *metrics.ns_deliveries);
    return metrics.ns_publications && metrics.ns_deliveries ? 0 : -ENOMEM;
}

void stats_deinit(void)
{
    free(metrics.ns_publications);
    free(metrics.ns_deliveries);
    metrics.ns_publications = NULL;
    metrics.ns_deliveries = NULL;
}

size_t stats_ns_index(const void *ns)
{
    const ns_config_t *n = ns;
    if (n >= conf->ns && n < conf->ns + conf->nns) return (size_t)(n - conf->ns);
    if (n == &conf->ns_sys) return conf->nns + 1;
    return conf->nns;
}
