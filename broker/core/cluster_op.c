/* broker/core/cluster_op.c - see cluster_op.h. */
#include "core/cluster_op.h"
#include "core/cluster.h"

#include <errno.h>
#include <stdlib.h>

int cluster_op_refuse(chan_t *c, pub_ops_t *ops, origin_t *origin, int code, const char *reason)
{
    if (ops->done) ops->done(c, ops, code, NULL);
    reply_error(origin, 0, code, reason, NULL);
    origin_clear(origin);
    pub_ops_free(ops);
    chan_maybe_drop(c);
    return 0;
}

cluster_op_t *cluster_op_new(chan_t *c, pub_ops_t *ops, origin_t *origin)
{
    cluster_op_t *x = malloc(sizeof *x);

    if (!x) {
        pub_ops_free(ops);
        origin_clear(origin);
        return NULL;
    }
    x->chan = c;
    x->ops = ops;
    x->origin = *origin;
    origin->id = NULL;
    c->inflight++;
    return x;
}

void cluster_op_unavailable(cluster_op_t *x, const char *maybe)
{
    if (x->ops->done) x->ops->done(x->chan, x->ops, PROTO_E_ENGINE_UNAVAILABLE, NULL);
    cluster_reply_unavailable(&x->origin, maybe);
}

void cluster_op_not_sent(cluster_op_t *x, int rc, const char *why)
{
    if (rc == -ENOTCONN) cluster_op_unavailable(x, "");
    else reply_error(&x->origin, 0, PROTO_E_INTERNAL, why ? why : "out of memory", NULL);
    cluster_op_free(x);
}

void cluster_op_free(cluster_op_t *x)
{
    chan_t *c = x->chan;

    origin_clear(&x->origin);
    pub_ops_free(x->ops);
    c->inflight--;
    chan_maybe_drop(c);
    free(x);
}
