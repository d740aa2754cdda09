/* clients/cli/out.c - see out.h. */
#include "out.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void out_flush(void)
{
    if (fflush(stdout) == 0 && !ferror(stdout)) return;
    if (errno == EPIPE) _exit(0);
    fprintf(stderr, "herald-cli: cannot write the output: %s\n", strerror(errno));
    _exit(3);
}

void out_line(const void *p, size_t n)
{
    fwrite(p, 1, n, stdout);
    fputc('\n', stdout);
    out_flush();
}

void out_raw(const herald_msg_t *m)
{
    out_line(m->raw, m->raw_len);
}

json_t *out_parse(const herald_msg_t *m)
{
    return json_loadb(m->raw, m->raw_len, 0, NULL);
}

void out_ts(int64_t ts, char *buf)
{
    time_t s = (time_t)(ts / 1000);
    struct tm tm;

    localtime_r(&s, &tm);
    strftime(buf, 24, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf + strlen(buf), 8, ".%03d", (int)(ts % 1000));
}

void out_pub(int json, const char *channel, size_t chlen, uint64_t offset, int64_t ts, const void *data,
             size_t dlen)
{
    if (json) {
        json_t *ch = json_stringn(channel, chlen);
        char *chs = ch ? json_dumps(ch, JSON_ENCODE_ANY) : NULL;
        printf("{\"op\":\"pub\",\"channel\":%s,\"offset\":%llu,\"ts\":%lld,\"data\":%.*s}\n", chs ? chs : "null",
               (unsigned long long)offset, (long long)ts, (int)dlen, (const char *)data);
        free(chs);
        json_decref(ch);
    } else {
        char t[32];
        out_ts(ts, t);
        printf("%s %.*s #%llu %.*s\n", t, (int)chlen, channel, (unsigned long long)offset, (int)dlen,
               (const char *)data);
    }
    out_flush();
}

void out_value(const char *prefix, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);

    printf("%s%s\n", prefix, s ? s : "null");
    free(s);
    out_flush();
}

void out_fields(const json_t *j)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)j, k, v) {
        char pre[300];
        if (!strcmp(k, "op") || !strcmp(k, "id")) continue;
        snprintf(pre, sizeof pre, "%s: ", k);
        if (json_is_string(v)) printf("%s%s\n", pre, json_string_value(v));
        else out_value(pre, v);
    }
    out_flush();
}

void out_reply(int json, const void *raw, size_t len)
{
    json_t *j;

    if (json) {
        out_line(raw, len);
        return;
    }
    if (!(j = json_loadb(raw, len, 0, NULL))) {
        out_line(raw, len);
        return;
    }
    out_fields(j);
    json_decref(j);
}
