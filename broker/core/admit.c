/* broker/core/admit.c - see admit.h. */
#include "core/admit.h"

#define NS_PER_MS 1000000ULL
#define LOG_EVERY_NS 1000000000ULL

int admit_shed(uint64_t oldest_ns, uint64_t now_ns, unsigned max_ms)
{
    if (!max_ms || !oldest_ns || now_ns <= oldest_ns) return 0;
    return now_ns - oldest_ns > (uint64_t)max_ms * NS_PER_MS;
}

uint64_t admit_log_note(admit_log_t *l, uint64_t now_ns)
{
    uint64_t n;

    l->pending++;
    l->shedding = 1;
    if (l->last_ns && now_ns - l->last_ns < LOG_EVERY_NS) return 0;
    n = l->pending;
    l->pending = 0;
    l->last_ns = now_ns ? now_ns : 1;
    return n;
}

int admit_log_end(admit_log_t *l, uint64_t now_ns, uint64_t *unreported)
{
    if (!l->shedding || now_ns - l->last_ns < LOG_EVERY_NS) return 0;
    *unreported = l->pending;
    l->pending = 0;
    l->shedding = 0;
    l->last_ns = now_ns ? now_ns : 1;
    return 1;
}
