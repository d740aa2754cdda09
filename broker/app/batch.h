/* broker/app/batch.c - POST /api/publish/batch: many publications in one
 * request and one commit, answered with one result per item.
 *
 * Owns: checking a batch's envelope, publishing its items through the one
 * publish() (each item a request of its own inside the broker: an origin
 * of kind ORIGIN_CALL, net/reply.h), collecting their outcomes in item
 * order, and answering the HTTP request once the last one is known.
 * Does not own: the route, the API key and its rate limit (app/api.c), or
 * the pipeline (core/pubpipe.c). Loop thread only. */
#ifndef HERALD_APP_BATCH_H
#define HERALD_APP_BATCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* The most items of one batch (the body is also bounded by
 * limits.max_message_size, as every REST body). */
#define BATCH_MAX_ITEMS 1000
/* The most bytes of a batch's Idempotency-Key header: each item's key is
 * the header, '#' and the item's index, within HIST_IDEM_MAX. */
#define BATCH_IDEM_MAX 60

/* batch_init() - route the answers of batch items here (reply_set_call()).
 * Call once at start, before any batch. */
void batch_init(void);

/* batch_check() - check the envelope of a batch @msg (borrowed):
 * {"items":[...]} with 1 to BATCH_MAX_ITEMS items; the items themselves are
 * checked one by one by batch_publish().
 * @n: [out] the number of items.
 * @reason: [out] on failure (PROTO_REASON_MAX bytes).
 * Return: 0, or PROTO_E_BAD_FIELD. */
int batch_check(const json_t *msg, size_t *n, char *reason);

/* batch_publish() - publish the items of @msg (borrowed, passed by
 * batch_check()) for the parked HTTP request @serial, as API key @key
 * (NULL: the REST API is open) may: each item {"channel","data", and the
 * optional fields of a publish} is checked and queued in this loop turn,
 * so the items commit together; an item refused is a result of its own and
 * stops no other. @idem (NULL: none; @idemlen bytes, 1..BATCH_IDEM_MAX) is
 * the request's Idempotency-Key: item i is published with the key
 * "<idem>#<i>", and an item carrying "idempotency_key" too is refused.
 * The answer, 200 {"results":[{"channel","offset"[,"duplicate"]} |
 * {"error":{"code","reason",...}}]} in item order, goes to @serial once
 * every outcome is known.
 * Return: 0, or -ENOMEM (nothing was queued or answered). */
int batch_publish(uint64_t serial, const json_t *msg, const apikey_t *key, const char *idem, size_t idemlen);

#endif
