/* broker/net/frame.c - see frame.h. */
#include "net/frame.h"

#include <stdlib.h>
#include <string.h>

frame_t *frame_new(const void *payload, size_t len)
{
    frame_t *f;

    if (len > UINT32_MAX) return NULL;
    f = malloc(sizeof *f + FRAME_HEADROOM + len);
    if (!f) return NULL;
    f->refs = 1;
    f->len = (uint32_t)len;
    f->offset = 0;
    memcpy(f->buf + FRAME_HEADROOM, payload, len);
    return f;
}

frame_t *frame_unref(frame_t *f)
{
    if (f && --f->refs == 0) free(f);
    return NULL;
}
