/* broker/core/publish.c - see publish.h. */
#include "core/publish.h"
#include "core/pubpipe.h"
#include "core/cluster.h"
#include "auth/auth.h"
#include "herald.h"

#include <stdio.h>
#include <string.h>

/* The broker's own namespace: sys:stats and whatever operators read. */
static int is_sys(const char *name, size_t len)
{
    return len > 4 && !memcmp(name, "sys:", 4);
}

int publish(const char *name, size_t len, const json_t *data, const pub_meta_t *meta, origin_t *origin,
            char *reason)
{
    static const pub_meta_t plain;
    chan_t *c;
    int r;

    if (!meta) meta = &plain;
    if (origin->kind != ORIGIN_NONE && is_sys(name, len)) {
        snprintf(reason, PROTO_REASON_MAX, "only the broker publishes in the sys namespace");
        origin_clear(origin);
        return PROTO_E_FORBIDDEN;
    }
    if ((r = auth_check_name(name, len, reason))) {
        origin_clear(origin);
        return r;
    }
    r = chan_open(name, len, &c);
    if (r == PROTO_E_LIMIT) {
        snprintf(reason, PROTO_REASON_MAX, "the broker holds limits.max_channels (%u) channels",
                 srv.cfg.max_channels);
        origin_clear(origin);
        return r;
    }
    if (r) {
        origin_clear(origin);
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    if (c->ns->state) {
        snprintf(reason, PROTO_REASON_MAX, "a state channel changes through state operations, not publish");
        r = PROTO_E_DISABLED;
    } else if (meta->reply_to && !cluster_routes(c) && meta->reply_to > c->last_offset) {
        /* With a shared engine this node may not know the last offset: the engine checks. */
        snprintf(reason, PROTO_REASON_MAX, "reply_to %llu is not an offset of this channel (last is %llu)",
                 (unsigned long long)meta->reply_to, (unsigned long long)c->last_offset);
        r = PROTO_E_BAD_FIELD;
    } else if (meta->idem_key && (!c->ns->history || !pubpipe_store())) {
        /* The keys live beside the log, in the same transaction. */
        snprintf(reason, PROTO_REASON_MAX, "\"idempotency_key\" needs a namespace that keeps history");
        r = PROTO_E_BAD_FIELD;
    } else if (meta->check_author && (!c->ns->history || !pubpipe_store())) {
        snprintf(reason, PROTO_REASON_MAX, "this namespace keeps no history, so the author of offset %llu is not "
                 "known: only moderators may edit or delete", (unsigned long long)meta->reply_to);
        srv.stats.permission_denied++;
        r = PROTO_E_FORBIDDEN;
    }
    if (r) {
        origin_clear(origin);
        chan_maybe_drop(c);
        return r;
    }
    if (pubpipe_publish(c, data, meta, origin)) {
        chan_maybe_drop(c);
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    return 0;
}

int publish_is_edit(const char *kind)
{
    return kind && (!strcmp(kind, "edit") || !strcmp(kind, "delete"));
}

int publish_parse_meta(const json_t *msg, pub_meta_t *meta, char *reason)
{
    static const char *const kinds[] = { "reaction", "edit", "delete" };
    const char *k;
    size_t klen;
    int64_t r = 0;
    int rc;

    memset(meta, 0, sizeof *meta);
    if ((rc = msg_get_int(msg, "reply_to", &r, reason)) > 1 || (rc == 0 && r < 1)) {
        snprintf(reason, PROTO_REASON_MAX, "field \"reply_to\" must be the offset (>= 1) of a publication");
        return PROTO_E_BAD_FIELD;
    }
    meta->reply_to = (uint64_t)r;
    if ((rc = msg_get_str(msg, "idempotency_key", &k, &klen, reason)) > 1 ||
        (rc == 0 && (klen < 1 || klen > HIST_IDEM_MAX))) {
        snprintf(reason, PROTO_REASON_MAX, "field \"idempotency_key\" must be a string of 1 to %d bytes",
                 HIST_IDEM_MAX);
        return PROTO_E_BAD_FIELD;
    }
    if (rc == 0) {
        meta->idem_key = k;
        meta->idem_len = klen;
    }
    if ((rc = msg_get_str(msg, "kind", &k, NULL, reason)) > 1) return rc;
    if (rc == 1 || !strcmp(k, "message")) return 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(k, kinds[i])) {
            if (!meta->reply_to) {
                snprintf(reason, PROTO_REASON_MAX, "a %s needs \"reply_to\": the offset it refers to", k);
                return PROTO_E_BAD_FIELD;
            }
            meta->kind = kinds[i];
            return 0;
        }
    snprintf(reason, PROTO_REASON_MAX, "field \"kind\" must be message, reaction, edit or delete");
    return PROTO_E_BAD_FIELD;
}
