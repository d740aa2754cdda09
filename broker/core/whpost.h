/* broker/core/whpost.h - the small HTTP/1.1 client a webhook posts with:
 * one signed POST per call, over plain TCP or TLS (docs/webhooks.md, "The
 * request" and "HTTPS").
 *
 * Owns: the connection of one request (opened, used and closed inside
 * whpost_send()), and the TLS context of an https webhook. Does not own: the
 * queue, retries or ordering (core/webhook.c), the webhook's settings
 * (config.h).
 *
 * DESIGN: blocking calls on a non-blocking socket, each wait cut into short
 * slices that ask the owner whether to give up, so a shutdown is seen within
 * ~100 ms even in the middle of a 5 s timeout. TLS verification is always
 * on: the peer's chain against the system store or the webhook's ca_file,
 * and its certificate against the url's host (a name, also sent as SNI, or an
 * IP address). Only the status line of the answer is read. One whpost_t
 * belongs to one delivery thread: nothing here is shared between threads. */
#ifndef HERALD_WHPOST_H
#define HERALD_WHPOST_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"

typedef struct whpost {
    const webhook_conf_t *conf;
    SSL_CTX *tls;                     /* https only: made by whpost_init() */
    int (*stopping)(void *arg);       /* polled while waiting: nonzero gives up */
    void *arg;
} whpost_t;

/* whpost_init() - set up @w (caller's storage) to post to webhook @c, which
 * must outlive it; @stopping(@arg) is asked during waits. For an https url,
 * loads the trusted CAs (@c->ca_file, else the system store).
 * Return: 0, or -1 (logged: the CAs could not be loaded). Any thread. */
int whpost_init(whpost_t *w, const webhook_conf_t *c, int (*stopping)(void *arg), void *arg);

/* whpost_deinit() - free what whpost_init() made. */
void whpost_deinit(whpost_t *w);

/* whpost_send() - POST @body (@blen bytes of JSON) to the webhook's url with
 * the Herald-Webhook, Herald-Event-Id (@ids) and Herald-Signature headers,
 * within the webhook's timeout. A 3xx is a failure (redirects are not
 * followed); a 2xx is a delivery whatever its body.
 * @err: [out] why it failed (@errlen bytes), written only on failure.
 * Return: 0 on a 2xx answer, -1 otherwise (also when @stopping said so).
 * The webhook's delivery thread. */
int whpost_send(whpost_t *w, const char *body, size_t blen, const char *ids, char *err, size_t errlen);

#endif
