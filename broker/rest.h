/* broker/rest.h - the HTTP API on the broker's port.
 *
 * Owns: rest_req_t (one HTTP request's state, kept in libwebsockets'
 * per-session data), routing, request bodies and JSON responses.
 * Routes: GET /api/health, POST /api/publish,
 * GET /api/channels/{channel}/history; everything else is a JSON 404 (or 405
 * for a known path with the wrong method). Every error is
 * {"error":{"code":N,"reason":"..."}} with the codes of docs/protocol.md.
 * A request whose answer comes later (a publication waiting for its commit,
 * a history read) is registered in conns.h under its serial and answered
 * with rest_finish(); if the client has gone by then, the answer is dropped.
 * Loop thread only. */
#ifndef HERALD_REST_H
#define HERALD_REST_H

#include <stddef.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdint.h>
#include "config.h"

#define REST_KIND 0x4854

typedef struct rest_req {
    uint16_t kind;                /* REST_KIND while a request is in flight */
    uint8_t route;
    uint8_t enc;                  /* request body encoding */
    uint8_t too_large;
    uint8_t close_after;          /* answered before the body was read: close */
    uint8_t pipelined;            /* another request came before this one was answered: ignore it, close */
    uint8_t body_done;            /* the body was taken: lws 4.1.6 repeats BODY_COMPLETION when
                                     pipelined bytes follow it */
    unsigned char *body;
    size_t blen, bcap;
    unsigned char *resp;          /* FRAME_HEADROOM + response body */
    size_t resp_len;
    struct lws *wsi;
    uint64_t serial;              /* conns.h key while an answer is awaited */
    const apikey_t *key;          /* the API key the request carried, if any */
    unsigned retry_after;         /* seconds, for a 429 */
    char cors_origin[256];        /* the request's Origin when CORS allows it */
    char peer[46];                /* client address */
    const char *method;           /* for the request log */
    char path[128];
    uint64_t start_ns;
    const char *csp;              /* Content-Security-Policy to send, or NULL */
    char state_chan[256];         /* POST .../state: the channel, until the body is in */
    char adapter_action[16];      /* a scoreboard call: score, teams or reset */
} rest_req_t;

/* rest_on_http() - a request line and headers arrived for @uri.
 * Return: 0, or -1 to close. */
int rest_on_http(rest_req_t *r, struct lws *wsi, const char *uri);
int rest_on_body(rest_req_t *r, struct lws *wsi, const void *in, size_t len);
int rest_on_body_complete(rest_req_t *r, struct lws *wsi);
int rest_on_writable(rest_req_t *r, struct lws *wsi);

/* rest_on_closed() - free what @r holds; @r may be NULL. */
void rest_on_closed(rest_req_t *r);

/* rest_finish() - answer the awaiting request @serial with @status and the
 * JSON @body (copied; NULL for a bare 500). Nothing happens if it is gone. */
void rest_finish(uint64_t serial, unsigned status, const void *body, size_t len);

/* rest_finish_json() - the same with a JSON value (reference taken). */
void rest_finish_json(uint64_t serial, unsigned status, json_t *v);

/* rest_finish_error() - the same with {"error":{"code","reason"}}. */
void rest_finish_error(uint64_t serial, unsigned status, int code, const char *reason);

#endif
