/* broker/core/cluster_views.c - see cluster_views.h. */
#include "core/cluster_views.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "herald.h"
#include "log.h"

#include <errno.h>
#include <string.h>

static struct {
    uv_timer_t timer;
    int timer_on;
    unsigned gen;                 /* the id generation the views_told counts were written under */
} cv;

/* The id the pass in progress writes under (cluster_foreach() takes no argument). */
static const char *pass_node;

static void forget(chan_t *c) { c->views_told = 0; }

static void tell(chan_t *c)
{
    int rc;

    if (c->nsubs == c->views_told || !cluster_routes(c)) return;
    rc = engine_views_subs(cluster_engine(), c->name, c->namelen, pass_node, c->nsubs);
    if (!rc) c->views_told = c->nsubs;
    else if (rc != -ENOTCONN)
        hlog(LOG_WARN, "cluster", "cannot write the subscriber count of %s: %s", c->name, strerror(-rc));
}

/* Only the channels with engine state can have local subscribers (the
 * first one gives a channel its state, which lasts until it is freed), so
 * the pass costs what the node's own channels cost, not the registry. */
static void on_flush(uv_timer_t *t)
{
    static unsigned gen;          /* static: pass_node outlives this call, and GCC cannot see it is not &gen */

    (void)t;
    pass_node = cluster_presence_node(&gen);
    if (!engine_up(cluster_engine())) return;
    if (gen != cv.gen) {
        /* A new id: what the old one wrote no longer counts. */
        cluster_foreach(forget);
        cv.gen = gen;
    }
    cluster_foreach(tell);
}

void cluster_views_chan_free(chan_t *c)
{
    unsigned gen;
    const char *node = cluster_presence_node(&gen);

    /* A channel is freed without subscribers; its field goes now rather
     * than at the next flush, which will not find it. */
    if (c->views_told && gen == cv.gen && cluster_engine())
        engine_views_subs(cluster_engine(), c->name, c->namelen, node, 0);
    c->views_told = 0;
}

void cluster_views_start(void)
{
    uv_timer_init(&srv.loop, &cv.timer);
    cv.timer_on = 1;
    cv.gen = 0;
    uv_timer_start(&cv.timer, on_flush, VIEWS_FLUSH_MS, VIEWS_FLUSH_MS);
}

void cluster_views_stop(void)
{
    if (!cv.timer_on) return;
    cv.timer_on = 0;
    uv_timer_stop(&cv.timer);
    uv_close((uv_handle_t *)&cv.timer, NULL);
}
