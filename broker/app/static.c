/* broker/app/static.c - see static.h. */
#include "app/static.h"

#include <string.h>

/* Five minutes: a page reloaded often does not even ask; after that, the
 * ETag makes the check a 304 until the broker (and so the file) changes. */
#define STATIC_CACHE "public, max-age=300"

/* Widgets load their scripts and styles from this origin only; they talk to
 * the broker over its WebSocket and, in development mode, its REST API. */
#define STATIC_CSP "default-src 'self'; script-src 'self'; style-src 'self'; " \
                   "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'"

const struct static_file *static_find(const char *path)
{
    for (size_t i = 0; i < static_files_count; i++)
        if (!strcmp(static_files[i].path, path)) return &static_files[i];
    return NULL;
}

int static_serve(http_req_t *r, const struct static_file *f)
{
    r->cache = STATIC_CACHE;
    r->etag = f->etag;
    if (!strncmp(f->type, "text/html", 9)) r->csp = STATIC_CSP;
    if (http_if_none_match(r, f->etag)) return http_respond_not_modified(r);
    return http_respond(r, 200, f->type, f->data, f->len);
}
