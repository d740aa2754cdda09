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

static void tell(chan_t *c, const char *node)
{
    int rc = engine_views_subs(cluster_engine(), c->name, c->namelen, node, c->nsubs);

    if (!rc) c->views_told = c->nsubs;
    else if (rc != -ENOTCONN)
        hlog(LOG_WARN, "cluster", "cannot write the subscriber count of %s: %s", c->name, strerror(-rc));
}

static void on_flush(uv_timer_t *t)
{
    unsigned gen;
    const char *node = cluster_presence_node(&gen);
    size_t pos = 0;
    chan_t *c;

    (void)t;
    if (!engine_up(cluster_engine())) return;
    if (gen != cv.gen) {
        /* A new id: what the old one wrote no longer counts. */
        pos = 0;
        while ((c = hmap_next(&srv.channels, &pos))) c->views_told = 0;
        cv.gen = gen;
        pos = 0;
    }
    while ((c = hmap_next(&srv.channels, &pos)))
        if (c->nsubs != c->views_told && cluster_routes(c)) tell(c, node);
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
