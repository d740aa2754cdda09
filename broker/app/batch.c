/* broker/app/batch.c - see batch.h.
 *
 * DESIGN: a batch is a list of ordinary publications. Each item goes
 * through publish() with an origin of kind ORIGIN_CALL whose serial is the
 * batch's id and the item's index, so its answer, which the pipeline gives
 * after the commit like any other, comes back here instead of to a
 * transport. The items are queued between pubpipe_hold() and
 * pubpipe_release(), so the storage thread takes them as one batch: one
 * transaction, one fsync. The batch counts the outcomes still to come;
 * the count starts one higher while items are being queued, because an
 * item on a channel without history is answered before publish() returns. */
#include "app/batch.h"
#include "auth/auth.h"
#include "core/publish.h"
#include "core/pubpipe.h"
#include "net/http.h"
#include "net/reply.h"
#include "herald.h"
#include "msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An item's origin serial: the batch id above, the item's index below. */
#define INDEX_BITS 16

typedef struct batch {
    struct batch *next;
    uint64_t id;
    uint64_t serial;              /* the parked HTTP request */
    size_t pending;               /* outcomes still to come */
    json_t *results;              /* one slot per item, in item order */
} batch_t;

static struct {
    batch_t *live;                /* batches waiting for outcomes: few at a time */
    uint64_t next_id;
} bt;

/* The item result of an error. */
static json_t *error_result(int code, const char *reason, const json_t *extra)
{
    json_t *e = json_pack("{s:i,s:s}", "code", code, "reason", reason ? reason : "refused");

    if (e && extra) json_object_update_missing(e, (json_t *)extra);
    return e ? json_pack("{s:o}", "error", e) : NULL;
}

/* One outcome of @b is known: answers the request when it was the last. */
static void count_down(batch_t *b)
{
    batch_t **pp;

    if (--b->pending) return;
    for (pp = &bt.live; *pp != b; pp = &(*pp)->next) {}
    *pp = b->next;
    http_finish_json(b->serial, 200, json_pack("{s:o}", "results", b->results));
    free(b);
}

/* Records item @i's result @v (taken; NULL: out of memory) in @b. */
static void settle(batch_t *b, size_t i, json_t *v)
{
    if (!v) v = error_result(PROTO_E_INTERNAL, "out of memory", NULL);
    if (v) json_array_set_new(b->results, i, v);
    count_down(b);
}

/* reply_call_fn: an item's outcome from the pipeline. */
static void on_answer(uint64_t serial, int code, const char *reason, const json_t *fields)
{
    uint64_t id = serial >> INDEX_BITS;
    size_t i = (size_t)(serial & ((1u << INDEX_BITS) - 1));
    batch_t *b;

    for (b = bt.live; b && b->id != id; b = b->next) {}
    if (!b || i >= json_array_size(b->results)) return;
    settle(b, i, code ? error_result(code, reason, fields) : json_deep_copy(fields));
}

void batch_init(void)
{
    reply_set_call(on_answer);
}

int batch_check(const json_t *msg, size_t *n, char *reason)
{
    const json_t *items = json_object_get(msg, "items");

    if (!json_is_array(items) || json_array_size(items) < 1 || json_array_size(items) > BATCH_MAX_ITEMS) {
        snprintf(reason, PROTO_REASON_MAX, "field \"items\" must be an array of 1 to %d publications",
                 BATCH_MAX_ITEMS);
        return PROTO_E_BAD_FIELD;
    }
    *n = json_array_size(items);
    return 0;
}

/* Checks and queues item @i (@item, borrowed) of @b. Return: 0 when its
 * outcome will come through on_answer(), else a PROTO_E_* code with
 * @reason (the item's result). */
static int publish_item(batch_t *b, size_t i, const json_t *item, const apikey_t *key, const char *idem,
                        size_t idemlen, char *reason)
{
    char ikey[HIST_IDEM_MAX + 1];
    origin_t origin = { ORIGIN_CALL, 0, NULL };
    const char *name;
    const json_t *data;
    pub_meta_t meta;
    size_t len;
    int code;

    if (!json_is_object(item)) {
        snprintf(reason, PROTO_REASON_MAX, "an item must be an object {\"channel\",\"data\"}");
        return PROTO_E_BAD_FIELD;
    }
    if ((code = msg_get_channel(item, &name, &len, reason))) return code;
    if (!(data = json_object_get(item, "data"))) {
        snprintf(reason, PROTO_REASON_MAX, "field \"data\" is required");
        return PROTO_E_BAD_FIELD;
    }
    if (key && !auth_key_may_publish(key, name, len)) {
        srv.stats.rest_unauthorized++;
        snprintf(reason, PROTO_REASON_MAX, "this API key may not publish to this namespace");
        return PROTO_E_FORBIDDEN;
    }
    if ((code = publish_parse_meta(item, &meta, reason))) return code;
    if (idem) {
        if (meta.idem_key) {
            snprintf(reason, PROTO_REASON_MAX, "an item's \"idempotency_key\" and the request's Idempotency-Key "
                     "header cannot both be given: the header names every item's key");
            return PROTO_E_BAD_FIELD;
        }
        meta.idem_len = (size_t)snprintf(ikey, sizeof ikey, "%.*s#%zu", (int)idemlen, idem, i);
        meta.idem_key = ikey;
    }
    origin.serial = b->id << INDEX_BITS | i;
    return publish(name, len, data, &meta, &origin, reason);
}

int batch_publish(uint64_t serial, const json_t *msg, const apikey_t *key, const char *idem, size_t idemlen)
{
    const json_t *items = json_object_get(msg, "items");
    size_t n = json_array_size(items);
    char reason[PROTO_REASON_MAX];
    batch_t *b = calloc(1, sizeof *b);
    int code;

    if (!b || !(b->results = json_array())) {
        free(b);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(b->results, json_null())) {
            json_decref(b->results);
            free(b);
            return -ENOMEM;
        }
    b->id = ++bt.next_id;
    b->serial = serial;
    b->pending = n + 1;
    b->next = bt.live;
    bt.live = b;
    pubpipe_hold();
    for (size_t i = 0; i < n; i++)
        if ((code = publish_item(b, i, json_array_get(items, i), key, idem, idemlen, reason)))
            settle(b, i, error_result(code, reason, NULL));
    pubpipe_release();
    count_down(b);
    return 0;
}
