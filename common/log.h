/* common/log.h - leveled log lines to stderr or a file.
 *
 * Owns: the process-wide log level, format and sink. Does not own: what is
 * logged. hlog() checks the level before formatting anything, so a disabled
 * level costs one comparison; nothing is logged per message on the hot path.
 * Loop thread only, except hlog() itself, which is safe from any thread
 * (one write(2) per line, no shared formatting buffer). */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };

extern int log_current_level;

/* log_set_level() - lines above @level are dropped from now on. */
void log_set_level(enum log_level level);

/* log_set_format() - plain text ("2026-11-21T06:00:00.123Z WARN  ws: ...")
 * or one JSON object per line ({"ts":..,"level":..,"component":..,"msg":..}). */
void log_set_format(enum log_format fmt);

/* log_level_parse() - "error", "warn", "info" or "debug" to a level.
 * Return: 0 and *@out set, or -1 if @s names no level. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

/* hlog() - format and write one line if @level is enabled. @component is a
 * short static word ("ws", "rest", "config"). */
#define hlog(level, component, ...) \
    do { if ((int)(level) <= log_current_level) log_write((level), (component), __VA_ARGS__); } while (0)

void log_write(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* log_recent() - call @fn for each of the last LOG_RECENT_MAX warn and error
 * lines, oldest first (for the admin page). Thread-safe. */
#define LOG_RECENT_MAX 20
void log_recent(void (*fn)(void *ctx, int64_t ts_ms, int level, const char *component, const char *msg), void *ctx);

#endif
