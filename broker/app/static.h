/* broker/app/static.h - files compiled into the binary and served as they
 * are: the browser client /herald.js and the widgets under /widgets/.
 *
 * Owns: the table of embedded files (generated at build time by
 * app/embed.py --bundle from clients/js/ and broker/app/widgets/) and how they
 * are answered: Content-Type by extension, an ETag (a hash of the bytes, so it
 * changes with them), Cache-Control with a max-age, 304 to a matching
 * If-None-Match, and a Content-Security-Policy on HTML pages. Does not own:
 * routing (app/api.c) or the response machinery (net/http.c).
 * Loop thread only. */
#ifndef HERALD_STATIC_H
#define HERALD_STATIC_H

#include <stddef.h>

#include "net/http.h"

struct static_file {
    const char *path;             /* the URL path, "/herald.js" */
    const char *type;             /* Content-Type */
    const char *etag;             /* quoted, "\"3f2a...\"" */
    const unsigned char *data;
    size_t len;
};

/* The generated table (static_files.c) and its length. */
extern const struct static_file static_files[];
extern const size_t static_files_count;

/* static_find() - the embedded file at URL path @path, or NULL. */
const struct static_file *static_find(const char *path);

/* static_serve() - answer @r with @f (200, or 304 when the client's copy is
 * current). Return: as http_respond(). */
int static_serve(http_req_t *r, const struct static_file *f);

#endif
