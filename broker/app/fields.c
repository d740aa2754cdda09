/* broker/app/fields.c - see fields.h. */
#include "app/fields.h"
#include "msg.h"

#include <stdio.h>

int field_id_ok(const char *s, size_t len, size_t max)
{
    if (!s || len == 0 || len > max) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

int field_bad(char *reason, const char *what)
{
    snprintf(reason, PROTO_REASON_MAX, "%s", what);
    return PROTO_E_BAD_FIELD;
}

int field_oom(char *reason)
{
    snprintf(reason, PROTO_REASON_MAX, "out of memory");
    return PROTO_E_INTERNAL;
}
