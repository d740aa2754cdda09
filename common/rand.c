/* common/rand.c - see rand.h. getrandom(2) needs no open descriptor, so it
 * works in a chroot and after fd exhaustion. */
#include "rand.h"
#include "clock.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>

void rand_bytes(void *out, size_t n)
{
    static _Thread_local uint64_t counter;
    unsigned char *p = out;
    size_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    while (got < n) {
        uint64_t v = clock_mono_ns() * 0x9e3779b97f4a7c15ULL ^ ++counter;
        size_t k = n - got < sizeof v ? n - got : sizeof v;
        memcpy(p + got, &v, k);
        got += k;
    }
}

void rand_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];

    for (size_t i = 0; i < n; i += 2 * sizeof raw) {
        size_t chunk = (n - i + 1) / 2 < sizeof raw ? (n - i + 1) / 2 : sizeof raw;
        rand_bytes(raw, chunk);
        for (size_t j = 0; j < chunk && i + 2 * j < n; j++) {
            out[i + 2 * j] = hex[raw[j] >> 4];
            if (i + 2 * j + 1 < n) out[i + 2 * j + 1] = hex[raw[j] & 15];
        }
    }
    out[n] = '\0';
}
