/* clients/cli/rest.h - one blocking HTTP/1.1 request to the broker's REST API.
 *
 * Owns: the connection of one request (opened, used once, closed: a CLI makes
 * a handful of requests, so keep-alive would buy nothing), percent-encoding
 * of a path segment, and the mapping of a REST answer to an exit code. Does
 * not own: what the bodies mean (the subcommands). Main thread only; every
 * call blocks for at most g->timeout_ms per socket operation. */
#ifndef HERALD_CLI_REST_H
#define HERALD_CLI_REST_H

#include <stddef.h>
#include "cli.h"

struct rest_resp {
    int status;                   /* the HTTP status */
    char *body;                   /* NUL-terminated; the caller frees it with rest_resp_free() */
    size_t len;
};

/* rest_request() - send @method @path (e.g. "/api/publish", already encoded)
 * to g->http_base with @body (NULL for none; sent as application/json) and
 * g->api_key as a bearer key, and read the whole answer. A refusal made
 * before the broker did anything (503 with error 135, overloaded; 429, a
 * rate limit) is sent again after the answer's Retry-After, saying so on
 * stderr, as long as the waits fit in g->timeout_ms; the last answer is
 * returned otherwise.
 * @resp: [out] filled on success; the caller frees it with rest_resp_free().
 * Return: 0 (whatever the status), or -1 after printing why the request
 * could not be made (cannot connect, timeout, TLS, a malformed answer). */
int rest_request(const struct cli *g, const char *method, const char *path, const char *body,
                 struct rest_resp *resp);

void rest_resp_free(struct rest_resp *resp);

/* rest_path_escape() - append @s to @out (NUL-terminated, @cap bytes) with
 * every byte outside A-Z a-z 0-9 - . _ ~ : @ , = percent-encoded (so "#" and
 * "/" in a channel name stay inside one path segment).
 * Return: 0, or -1 if it does not fit. */
int rest_path_escape(char *out, size_t cap, const char *s);

/* rest_check() - the exit code for @resp: CLI_OK for a 2xx status; otherwise
 * print the broker's error ("error 104 (HTTP 400): reason") and return
 * CLI_E_REFUSED. */
int rest_check(const struct cli *g, const struct rest_resp *resp);

#endif
