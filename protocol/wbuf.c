/* protocol/wbuf.c - see wbuf.h. */
#include "wbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void wbuf_init(wbuf_t *b) { memset(b, 0, sizeof *b); }

void wbuf_deinit(wbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

int wbuf_grow(wbuf_t *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 256;
    unsigned char *p;

    if (b->oom) return -1;
    if (n > SIZE_MAX / 2 - b->len) { b->oom = 1; return -1; }
    while (cap - b->len < n) cap *= 2;
    p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

void wbuf_printf(wbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom) return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || wbuf_reserve(b, (size_t)n + 1)) return;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
