/* broker/core/cluster_occ.c - see cluster_occ.h. */
#include "core/cluster_occ.h"
#include "core/cluster.h"
#include "core/cluster_presence.h"
#include "core/webhook.h"
#include "herald.h"
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static void on_done(void *arg, int status, uint64_t queued)
{
    if (status == ENGINE_E_NO_LEASE) {
        /* Taken for dead: a new id writes every occupied channel again. */
        cluster_presence_no_lease((unsigned)(uintptr_t)arg);
        return;
    }
    if (status && status != -ECANCELED)
        hlog(LOG_WARN, "cluster", "writing a channel's occupancy to redis failed (%s); it is written again when the "
             "connection is back", strerror(-status));
    else if (!status && queued)
        webhook_kick();                         /* this node may be the deliverer */
}

void cluster_occ_change(chan_t *c, int occupied)
{
    char occ[WEBHOOK_MAX * 66], vac[WEBHOOK_MAX * 66];
    const char *node;
    unsigned gen;
    int rc;

    if (!cluster_engine() || !srv.cfg.nwebhooks) return;
    cluster_presence_hooks(c, WH_EV_OCCUPIED, occ, sizeof occ);
    cluster_presence_hooks(c, WH_EV_VACATED, vac, sizeof vac);
    if (!occ[0] && !vac[0]) return;
    node = cluster_presence_node(&gen);
    rc = engine_occupancy(cluster_engine(), c->name, c->namelen, node, occupied, occ, vac, on_done,
                          (void *)(uintptr_t)gen);
    if (rc && rc != -ENOTCONN)
        hlog(LOG_WARN, "cluster", "cannot write the occupancy of %s to redis (%s)", c->name, strerror(-rc));
}

void cluster_occ_resync(chan_t *c)
{
    if (c->nsubs && cluster_routes(c)) cluster_occ_change(c, 1);
}
