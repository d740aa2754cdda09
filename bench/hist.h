/* bench/hist.h - a log-linear latency histogram with under 0.8% error.
 *
 * Owns: its bucket counts. Values are unsigned 64-bit (nanoseconds here).
 * Like HdrHistogram, each power of two is split into 128 linear sub-buckets,
 * so a recorded value is known to within 1/128 of itself at any magnitude,
 * recording is a count-leading-zeros and an increment, and the whole range of
 * uint64 fits in 7424 counters (58 KiB). Not thread-safe. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t min, max;
    double sum;
    uint64_t b[HIST_BUCKETS];
} hist_t;

static inline unsigned hist_index(uint64_t v)
{
    unsigned e;
    if (v < HIST_SUB) return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v);
    return ((e - HIST_SUB_BITS + 1) << HIST_SUB_BITS) | (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* hist_new() - an empty histogram on the heap, or NULL. hist_free() frees it. */
hist_t *hist_new(void);
void hist_free(hist_t *h);

/* hist_reset() - forget every value. */
void hist_reset(hist_t *h);

/* hist_record() - count one value @v. */
static inline void hist_record(hist_t *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
    if (v < h->min) h->min = v;
}

/* hist_add() - add every value of @src to @dst. */
void hist_add(hist_t *dst, const hist_t *src);

/* hist_percentile() - the value at or below which @p percent (0..100) of
 * values lie: the middle of its bucket, clamped to [min, max]. 0 if empty. */
uint64_t hist_percentile(const hist_t *h, double p);

/* hist_bucket_value() - the middle of bucket @i. */
uint64_t hist_bucket_value(unsigned i);

#endif
