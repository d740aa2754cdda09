/* broker/config.c - see config.h. */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_type { T_STR, T_PORT, T_UINT, T_SIZE, T_MS, T_LEVEL, T_FORMAT };

struct opt {
    const char *section;
    const char *key;
    const char *flag;       /* --flag; NULL: the key with '_' as '-' */
    enum opt_type type;
    size_t off;
    size_t size;            /* T_STR: buffer size */
    const char *def;
    const char *help;
};

#define O(f) offsetof(config_t, f)
static const struct opt opts[] = {
    { "server", "bind", NULL, T_STR, O(bind), sizeof(((config_t *)0)->bind), "127.0.0.1",
      "address to listen on (IPv4 or IPv6 literal; 0.0.0.0 or :: for all)" },
    { "server", "port", NULL, T_PORT, O(port), 0, "8080", "TCP port for WebSocket (/ws) and HTTP (/api)" },
    { "server", "data_dir", NULL, T_STR, O(data_dir), sizeof(((config_t *)0)->data_dir), "./herald-data",
      "data directory (created if missing)" },
    { "server", "shutdown_timeout", NULL, T_MS, O(shutdown_timeout_ms), 0, "5s",
      "on SIGINT/SIGTERM, how long to flush queued messages before exiting" },
    { "limits", "max_message_size", NULL, T_SIZE, O(max_message_size), 0, "64k",
      "largest client message or REST body accepted" },
    { "limits", "send_queue_max", NULL, T_SIZE, O(send_queue_max), 0, "1m",
      "bytes queued for one connection before it is closed as a slow consumer (4000)" },
    { "limits", "max_connections", NULL, T_UINT, O(max_connections), 0, "0",
      "connections accepted at once; 0 = as many as the file limit allows" },
    { "limits", "max_subscriptions", NULL, T_UINT, O(max_subscriptions), 0, "1024",
      "channels one connection may subscribe to" },
    { "limits", "max_channels", NULL, T_UINT, O(max_channels), 0, "1000000", "channels the broker keeps at once" },
    { "websocket", "connect_timeout", NULL, T_MS, O(connect_timeout_ms), 0, "10s",
      "time a new connection has to send its connect message (close 4002)" },
    { "websocket", "ping_interval", NULL, T_MS, O(ping_interval_ms), 0, "25s",
      "idle time before the broker pings a client; no answer within 2x closes it (0 = never)" },
    { "websocket", "write_batch_max", NULL, T_SIZE, O(write_batch_max), 0, "64k",
      "most bytes coalesced into one WebSocket frame per write" },
    { "log", "level", "log-level", T_LEVEL, O(log_level), 0, "info", "error, warn, info or debug" },
    { "log", "format", "log-format", T_FORMAT, O(log_format), 0, "text", "text, or json (one object per line)" },
};
#define NOPTS (sizeof opts / sizeof opts[0])

/* Parses "<n>[k|m|g]" (binary multiples) into bytes. */
static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    unsigned long long mul = 1;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-') return -1;
    if (*end) {
        switch (*end | 0x20) {
        case 'k': mul = 1024; break;
        case 'm': mul = 1024 * 1024; break;
        case 'g': mul = 1024ULL * 1024 * 1024; break;
        default: return -1;
        }
        end++;
        if ((*end | 0x20) == 'b') end++;       /* "64kb", "1MB" */
        if (*end) return -1;
    }
    if (v > SIZE_MAX / mul) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

/* Parses "<n>[ms|s|m]" into milliseconds; a bare number is milliseconds. */
static int parse_ms(const char *s, unsigned *out)
{
    char *end;
    unsigned long long v, mul = 1;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-') return -1;
    if (!strcmp(end, "s")) mul = 1000;
    else if (!strcmp(end, "m")) mul = 60000;
    else if (*end && strcmp(end, "ms")) return -1;
    if (v > UINT_MAX / mul) return -1;
    *out = (unsigned)(v * mul);
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (end == s || *end || errno || *s == '-' || v > max) return -1;
    *out = v;
    return 0;
}

/* Applies @val to option @o in @c. Return: NULL, or why the value is bad. */
static const char *apply(config_t *c, const struct opt *o, const char *val)
{
    char *field = (char *)c + o->off;
    unsigned long ul;

    switch (o->type) {
    case T_STR:
        if (strlen(val) >= o->size) return "value too long";
        if (!*val) return "value is empty";
        strcpy(field, val);
        return NULL;
    case T_PORT:
        if (parse_uint(val, 65535, &ul)) return "expected a port number 0-65535";
        *(int *)field = (int)ul;
        return NULL;
    case T_UINT:
        if (parse_uint(val, UINT_MAX, &ul)) return "expected a non-negative integer";
        *(unsigned *)field = (unsigned)ul;
        return NULL;
    case T_SIZE:
        if (parse_size(val, (size_t *)field)) return "expected a size such as 65536, 64k or 1m";
        return NULL;
    case T_MS:
        if (parse_ms(val, (unsigned *)field)) return "expected a duration such as 500ms, 10s or 2m";
        return NULL;
    case T_LEVEL:
        if (log_level_parse(val, (enum log_level *)field)) return "expected error, warn, info or debug";
        return NULL;
    case T_FORMAT:
        if (!strcasecmp(val, "text")) *(enum log_format *)field = LOG_FMT_TEXT;
        else if (!strcasecmp(val, "json")) *(enum log_format *)field = LOG_FMT_JSON;
        else return "expected text or json";
        return NULL;
    }
    return "unknown option type";
}

/* Cross-option checks that no single value can make. */
static const char *validate(const config_t *c)
{
    if (c->max_message_size < 256) return "limits.max_message_size must be at least 256 bytes";
    if (c->max_message_size > 64u * 1024 * 1024) return "limits.max_message_size must be at most 64m";
    if (c->send_queue_max < c->max_message_size)
        return "limits.send_queue_max must be at least limits.max_message_size";
    if (c->write_batch_max < 1024 || c->write_batch_max > 16u * 1024 * 1024)
        return "websocket.write_batch_max must be between 1k and 16m";
    if (c->max_subscriptions == 0) return "limits.max_subscriptions must be at least 1";
    if (c->max_channels == 0) return "limits.max_channels must be at least 1";
    return NULL;
}

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTS; i++)
        apply(c, &opts[i], opts[i].def);
}

struct ini_state {
    config_t *c;
    char *err;
    size_t errlen;
    int failed;
};

/* Debian's libinih passes no line number to the handler; ini_parse_file()
 * returns the line of the first handler failure instead, so messages here
 * leave the line out and config_load_file() puts it in front. */
static int on_ini(void *user, const char *section, const char *key, const char *value)
{
    struct ini_state *st = user;
    const char *why = NULL;
    size_t i;

    if (st->failed) return 1;
    for (i = 0; i < NOPTS; i++)
        if (!strcmp(opts[i].section, section) && !strcmp(opts[i].key, key)) break;
    if (i == NOPTS) {
        int known_section = 0;
        for (size_t j = 0; j < NOPTS; j++) known_section |= !strcmp(opts[j].section, section);
        snprintf(st->err, st->errlen, "%s [%s]%s%s",
                 known_section ? "unknown key" : "unknown section", section,
                 known_section ? " " : "", known_section ? key : "");
        st->failed = 1;
        return 0;
    }
    if ((why = apply(st->c, &opts[i], value))) {
        snprintf(st->err, st->errlen, "%s.%s = \"%s\": %s", section, key, value, why);
        st->failed = 1;
        return 0;
    }
    return 1;
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen)
{
    char why[512] = "";
    struct ini_state st = { c, why, sizeof why, 0 };
    FILE *f = fopen(path, "r");
    int r;

    if (!f) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    r = ini_parse_file(f, on_ini, &st);
    fclose(f);
    if (st.failed) {
        snprintf(err, errlen, "%s:%d: %s", path, r, why);
        return -1;
    }
    if (r > 0) {
        snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)", path, r);
        return -1;
    }
    if (r < 0) {
        snprintf(err, errlen, "%s: cannot read", path);
        return -1;
    }
    return 0;
}

static const struct opt *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *k = opts[i].flag ? opts[i].flag : opts[i].key;
        size_t j;
        if (strlen(k) != len) continue;
        for (j = 0; j < len; j++)
            if ((k[j] == '_' ? '-' : k[j]) != name[j]) break;
        if (j == len) return &opts[i];
    }
    return NULL;
}

void config_usage(FILE *out)
{
    fprintf(out,
        "Usage: herald [OPTIONS]\n"
        "       herald --config FILE [OPTIONS]\n\n"
        "Herald %s, a real-time pub/sub broker: WebSocket clients at /ws\n"
        "(subprotocols herald.json and herald.msgpack), REST at /api.\n\n"
        "  -h, --help           print this help and exit\n"
        "  -V, --version        print the version and exit\n"
        "  -c, --config FILE    read settings from an INI file (see conf/herald.conf)\n\n"
        "Every setting can be given as a flag (--name VALUE or --name=VALUE) or in the\n"
        "config file as `name = value` under its [section]; flags win.\n", HERALD_VERSION);
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64];
        size_t n = (size_t)snprintf(flag, sizeof flag, "--%s", opts[i].flag ? opts[i].flag : opts[i].key);
        for (size_t j = 2; j < n; j++) if (flag[j] == '_') flag[j] = '-';
        if (i == 0 || strcmp(opts[i].section, opts[i - 1].section)) fprintf(out, "\n[%s]\n", opts[i].section);
        fprintf(out, "  %-22s %s (default %s)\n", flag, opts[i].help, opts[i].def);
    }
}

enum config_args config_parse_args(config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    const char *config_path = NULL;

    config_defaults(c);
    /* First pass: --help, --version and --config, so the file is applied
     * before any flag overrides it, wherever the flags stand. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { config_usage(stdout); return CONFIG_ARGS_EXIT_OK; }
        if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("herald %s\n", HERALD_VERSION);
            return CONFIG_ARGS_EXIT_OK;
        }
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc) { snprintf(err, errlen, "%s needs a file name", a); return CONFIG_ARGS_ERROR; }
            config_path = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            config_path = a + 9;
        }
    }
    if (config_path && config_load_file(c, config_path, err, errlen)) return CONFIG_ARGS_ERROR;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val, *eq, *why;
        const struct opt *o;

        if (!strcmp(a, "-c") || !strcmp(a, "--config")) { i++; continue; }
        if (!strncmp(a, "--config=", 9)) continue;
        if (strncmp(a, "--", 2)) {
            snprintf(err, errlen, "unexpected argument '%s' (see herald --help)", a);
            return CONFIG_ARGS_ERROR;
        }
        eq = strchr(a, '=');
        o = find_flag(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
        if (!o) { snprintf(err, errlen, "unknown option '%s' (see herald --help)", a); return CONFIG_ARGS_ERROR; }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else { snprintf(err, errlen, "%s needs a value", a); return CONFIG_ARGS_ERROR; }
        if ((why = apply(c, o, val))) {
            snprintf(err, errlen, "--%.*s %s: %s", (int)(eq ? (size_t)(eq - a - 2) : strlen(a + 2)), a + 2, val, why);
            return CONFIG_ARGS_ERROR;
        }
    }
    {
        const char *why = validate(c);
        if (why) {
            snprintf(err, errlen, "%s%s%s", config_path ? config_path : "", config_path ? ": " : "", why);
            return CONFIG_ARGS_ERROR;
        }
    }
    return CONFIG_ARGS_RUN;
}
