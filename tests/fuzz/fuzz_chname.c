/* tests/fuzz/fuzz_chname.c - libFuzzer target: chname_valid() against a
 * straightforward reading of docs/protocol.md §5, written here without the
 * table or memchr() the real one uses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "chname.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_alnum(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int in_name(uint8_t c)
{
    switch (c) {
    case '_': case '-': case '.': case ':': case '@': case ',': case '#': case '=': case '/': case '~':
        return 1;
    default:
        return is_alnum(c);
    }
}

static int in_namespace(uint8_t c) { return is_alnum(c) || c == '_' || c == '-'; }

/* Returns validity; *ns gets the namespace length (0: default namespace). */
static int reference(const uint8_t *s, size_t n, size_t *ns)
{
    size_t colon = n;

    *ns = 0;
    if (n < 1 || n > 255) return 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_name(s[i])) return 0;
        if (s[i] == ':' && colon == n) colon = i;
    }
    if (colon == n) return 1;                 /* no ':': default namespace */
    if (colon < 1 || colon > 64) return 0;
    for (size_t i = 0; i < colon; i++)
        if (!in_namespace(s[i])) return 0;
    if (colon + 1 == n) return 0;             /* nothing after the ':' */
    *ns = colon;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    size_t ns;
    int want = reference(data, size, &ns);
    int got = chname_valid((const char *)data, size, &why);

    if (got != want) {
        fprintf(stderr, "chname_valid(%zu bytes) = %d, reference says %d (%s)\n", size, got, want,
                why ? why : "no reason");
        abort();
    }
    if (!got && (!why || !why[0])) {
        fprintf(stderr, "invalid name without a reason\n");
        abort();
    }
    if (got && chname_namespace((const char *)data, size) != ns) {
        fprintf(stderr, "chname_namespace = %zu, want %zu\n", chname_namespace((const char *)data, size), ns);
        abort();
    }
    /* NULL @why is allowed. */
    if (chname_valid((const char *)data, size, NULL) != got) abort();
    return 0;
}
