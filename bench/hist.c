/* bench/hist.c - see hist.h. */
#include "hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

hist_t *hist_new(void)
{
    hist_t *h = malloc(sizeof *h);
    if (h) hist_reset(h);
    return h;
}

void hist_free(hist_t *h) { free(h); }

void hist_reset(hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_add(hist_t *dst, const hist_t *src)
{
    if (!src->count) return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max) dst->max = src->max;
    if (src->min < dst->min) dst->min = src->min;
}

uint64_t hist_bucket_value(unsigned i)
{
    unsigned e, sub;
    uint64_t low, width;

    if (i < HIST_SUB) return i;
    e = (i >> HIST_SUB_BITS) + HIST_SUB_BITS - 1;
    sub = i & (HIST_SUB - 1);
    width = 1ULL << (e - HIST_SUB_BITS);
    low = (uint64_t)(HIST_SUB | sub) << (e - HIST_SUB_BITS);
    return low + width / 2;
}

uint64_t hist_percentile(const hist_t *h, double p)
{
    uint64_t want, seen = 0;

    if (!h->count) return 0;
    if (p >= 100.0) return h->max;
    want = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (want < 1) want = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = hist_bucket_value(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}
