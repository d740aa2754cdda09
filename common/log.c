/* common/log.c - see log.h. Each line is formatted into a stack buffer and
 * written with a single write(2), so lines from the loop thread and from a
 * storage thread never interleave. */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int log_current_level = LOG_INFO;

/* The last warn/error lines, for operators' eyes (log_recent()). */
static struct recent {
    int64_t ts;
    int level;
    char component[16];
    char msg[200];
} recent[LOG_RECENT_MAX];
static unsigned recent_next, recent_count;
static pthread_mutex_t recent_mu = PTHREAD_MUTEX_INITIALIZER;

void log_recent(void (*fn)(void *, int64_t, int, const char *, const char *), void *ctx)
{
    pthread_mutex_lock(&recent_mu);
    for (unsigned i = 0; i < recent_count; i++) {
        const struct recent *r = &recent[(recent_next + LOG_RECENT_MAX - recent_count + i) % LOG_RECENT_MAX];
        fn(ctx, r->ts, r->level, r->component, r->msg);
    }
    pthread_mutex_unlock(&recent_mu);
}
static enum log_format log_fmt = LOG_FMT_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level) { log_current_level = (int)level; }
void log_set_format(enum log_format fmt) { log_fmt = fmt; }

const char *log_level_name(enum log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(s, level_names[i])) { *out = (enum log_level)i; return 0; }
    if (!strcasecmp(s, "warning")) { *out = LOG_WARN; return 0; }
    return -1;
}

/* Appends @s to @p as the inside of a JSON string, escaping what JSON needs. */
static size_t json_escape(char *p, size_t room, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < room; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { p[n++] = '\\'; p[n++] = (char)c; }
        else if (c == '\n') { p[n++] = '\\'; p[n++] = 'n'; }
        else if (c < 0x20) n += (size_t)snprintf(p + n, room - n, "\\u%04x", c);
        else p[n++] = (char)c;
    }
    return n;
}

void log_write(enum log_level level, const char *component, const char *fmt, ...)
{
    char msg[1024], line[2300];
    struct timespec ts;
    struct tm tm;
    char when[64];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = '\0';   /* lws lines end in \n */

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (level <= LOG_WARN && strcmp(component, "lws")) {
        pthread_mutex_lock(&recent_mu);
        struct recent *r = &recent[recent_next];
        r->ts = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        r->level = (int)level;
        snprintf(r->component, sizeof r->component, "%s", component);
        snprintf(r->msg, sizeof r->msg, "%s", msg);
        recent_next = (recent_next + 1) % LOG_RECENT_MAX;
        if (recent_count < LOG_RECENT_MAX) recent_count++;
        pthread_mutex_unlock(&recent_mu);
    }
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    if (log_fmt == LOG_FMT_JSON) {
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"",
                             when, log_level_name(level));
        n += json_escape(line + n, sizeof line - n, component);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"msg\":\"");
        n += json_escape(line + n, sizeof line - n - 4, msg);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s %-5s %s: %s\n", when, log_level_name(level),
                             component, msg);
    }
    if (n >= sizeof line) n = sizeof line - 1;
    /* A failed log write has nowhere to be reported; ignore it deliberately. */
    if (write(STDERR_FILENO, line, n) < 0) { /* nothing to do */ }
}
