/* tests/unit/unit.h - what every unit test includes: cmocka (1.1.5 needs
 * these four headers first) and a few helpers shared by the codec tests. */
#ifndef HERALD_TEST_UNIT_H
#define HERALD_TEST_UNIT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A deterministic PRNG (xorshift64*), so a failing random test fails the
 * same way on every run. */
static inline uint64_t test_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Asserts that @len bytes at @got equal the literal string @want (which may
 * contain NUL bytes when @wantlen is given explicitly). */
#define assert_bytes_equal(got, gotlen, want, wantlen)                         \
    do {                                                                       \
        size_t gl_ = (gotlen), wl_ = (wantlen);                                \
        if (gl_ != wl_ || memcmp((got), (want), wl_)) {                        \
            print_error("bytes differ: got %zu bytes, want %zu\n", gl_, wl_); \
            fail();                                                            \
        }                                                                      \
    } while (0)

#endif
