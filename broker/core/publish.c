/* broker/core/publish.c - see publish.h. */
#include "core/publish.h"
#include "core/pubpipe.h"
#include "auth/auth.h"
#include "herald.h"

#include <stdio.h>
#include <string.h>

/* The broker's own namespace: sys:stats and whatever operators read. */
static int is_sys(const char *name, size_t len)
{
    return len > 4 && !memcmp(name, "sys:", 4);
}

int publish(const char *name, size_t len, const json_t *data, const json_t *from, uint64_t reply_to,
            const char *kind, origin_t *origin, char *reason)
{
    chan_t *c;
    int r;

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
    if (r == 0 && c->ns->state) {
        snprintf(reason, PROTO_REASON_MAX, "a state channel changes through state operations, not publish");
        origin_clear(origin);
        chan_maybe_drop(c);
        return PROTO_E_DISABLED;
    }
    if (r == 0) {
        if (reply_to && reply_to > c->last_offset) {
            snprintf(reason, PROTO_REASON_MAX, "reply_to %llu is not an offset of this channel (last is %llu)",
                     (unsigned long long)reply_to, (unsigned long long)c->last_offset);
            origin_clear(origin);
            chan_maybe_drop(c);
            return PROTO_E_BAD_FIELD;
        }
        r = pubpipe_publish(c, data, from, reply_to, kind, origin);
        if (r) chan_maybe_drop(c);
    } else {
        origin_clear(origin);
    }
    if (r) {
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        return PROTO_E_INTERNAL;
    }
    return 0;
}

int publish_parse_reply(const json_t *msg, uint64_t *reply_to, const char **kind, char *reason)
{
    static const char *const kinds[] = { "reaction", "edit", "delete" };
    const char *k;
    int64_t r = 0;
    int rc;

    *reply_to = 0;
    *kind = NULL;
    if ((rc = msg_get_int(msg, "reply_to", &r, reason)) > 1 || (rc == 0 && r < 1)) {
        snprintf(reason, PROTO_REASON_MAX, "field \"reply_to\" must be the offset (>= 1) of a publication");
        return PROTO_E_BAD_FIELD;
    }
    *reply_to = (uint64_t)r;
    if ((rc = msg_get_str(msg, "kind", &k, NULL, reason)) > 1) return rc;
    if (rc == 1 || !strcmp(k, "message")) return 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(k, kinds[i])) {
            if (!*reply_to) {
                snprintf(reason, PROTO_REASON_MAX, "a %s needs \"reply_to\": the offset it refers to", k);
                return PROTO_E_BAD_FIELD;
            }
            *kind = kinds[i];
            return 0;
        }
    snprintf(reason, PROTO_REASON_MAX, "field \"kind\" must be message, reaction, edit or delete");
    return PROTO_E_BAD_FIELD;
}
