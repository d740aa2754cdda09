/* protocol/chname.c - see chname.h. A 256-entry table keeps the check to one
 * load per byte. */
#include "chname.h"

#include <string.h>

enum { C_NONE = 0, C_NS = 1, C_NAME = 2 };

static unsigned char classes[256];
static int classes_ready;

static void init_classes(void)
{
    const char *extra = ".:@,#=/~";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (alnum || c == '_' || c == '-') classes[c] = C_NS | C_NAME;
        else if (c && strchr(extra, c)) classes[c] = C_NAME;
    }
    classes_ready = 1;
}

int chname_valid(const char *s, size_t len, const char **why)
{
    const char *colon;
    const char *dummy;

    if (!why) why = &dummy;
    if (!classes_ready) init_classes();
    if (len == 0) { *why = "channel name is empty"; return 0; }
    if (len > CHNAME_MAX) { *why = "channel name is longer than 255 bytes"; return 0; }
    for (size_t i = 0; i < len; i++)
        if (!(classes[(unsigned char)s[i]] & C_NAME)) {
            *why = "channel name has a character outside A-Z a-z 0-9 _ - . : @ , # = / ~";
            return 0;
        }
    colon = memchr(s, ':', len);
    if (!colon) return 1;
    if (colon == s) { *why = "channel namespace is empty"; return 0; }
    if ((size_t)(colon - s) > CHNAME_NS_MAX) { *why = "channel namespace is longer than 64 bytes"; return 0; }
    for (const char *p = s; p < colon; p++)
        if (!(classes[(unsigned char)*p] & C_NS)) {
            *why = "channel namespace has a character outside A-Z a-z 0-9 _ -";
            return 0;
        }
    if ((size_t)(colon - s) + 1 == len) { *why = "channel name after the namespace is empty"; return 0; }
    return 1;
}

size_t chname_namespace(const char *s, size_t len)
{
    const char *colon = memchr(s, ':', len);
    return colon ? (size_t)(colon - s) : 0;
}
