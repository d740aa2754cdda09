/* protocol/wbuf.h - a growable output buffer for the encoders.
 *
 * Owns: its bytes. Out of memory is sticky: once a write fails, @oom stays
 * set and further writes are ignored, so encoders check once at the end
 * instead of after every byte. Encoders write into one reusable wbuf per
 * loop, so steady-state encoding allocates nothing. */
#ifndef HERALD_WBUF_H
#define HERALD_WBUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct wbuf {
    unsigned char *p;
    size_t len;
    size_t cap;
    int oom;
} wbuf_t;

void wbuf_init(wbuf_t *b);
void wbuf_deinit(wbuf_t *b);

/* wbuf_reset() - empty the buffer but keep its memory; clears @oom. */
static inline void wbuf_reset(wbuf_t *b) { b->len = 0; b->oom = 0; }

/* wbuf_reserve() - make room for @n more bytes. Return: 0, or -1 (oom set). */
int wbuf_grow(wbuf_t *b, size_t n);
static inline int wbuf_reserve(wbuf_t *b, size_t n)
{
    return (b->cap - b->len >= n && !b->oom) ? 0 : wbuf_grow(b, n);
}

static inline void wbuf_put(wbuf_t *b, const void *d, size_t n)
{
    if (n == 0 || wbuf_reserve(b, n)) return;   /* d may be NULL when n is 0 */
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static inline void wbuf_putc(wbuf_t *b, unsigned char c)
{
    if (wbuf_reserve(b, 1)) return;
    b->p[b->len++] = c;
}


/* wbuf_printf() - append formatted text. */
void wbuf_printf(wbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
