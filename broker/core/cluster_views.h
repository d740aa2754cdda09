/* broker/core/cluster_views.h - what a node tells the shared engine for the
 * operator views across nodes (docs/cluster.md#operator-views).
 *
 * Owns: writing this node's local subscriber count of each channel into
 * the engine (engine_views_subs()), under its presence id, so that any
 * node can answer GET /api/channels/{channel} with every node's sum. Does
 * not own: the reads and the answers (app/admin.c), the node's id and
 * lease (core/cluster_presence.c).
 * DESIGN: counts change with every subscribe and unsubscribe; writing each
 * change would add a Redis command to every subscription (thousands in a
 * reconnection storm). Instead, once every VIEWS_FLUSH_MS a pass over the
 * channels with engine state (cluster_foreach()) writes those whose count
 * differs from what was last written (chan_t's views_told): one command
 * per changed channel, whatever the churn in between; a channel freed
 * deletes its field at once. When the node's id changes (its command connection
 * came back, or its lease was lost), what was written is under the old id,
 * which readers ignore once its lease is gone: every count is written
 * again under the new one. Loop thread only. */
#ifndef HERALD_CLUSTER_VIEWS_H
#define HERALD_CLUSTER_VIEWS_H

#include "core/channel.h"

/* How often local subscriber counts are written (ms). */
#define VIEWS_FLUSH_MS 1000

/* cluster_views_start() / _stop() - the flush timer (cluster.c calls them). */
void cluster_views_start(void);
void cluster_views_stop(void);

/* cluster_views_chan_free() - @c is being freed: its count on this node
 * goes (core/cluster.c's cluster_chan_free()). */
void cluster_views_chan_free(chan_t *c);

#endif
