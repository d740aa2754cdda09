/* clients/cli/main.c - herald-cli: global options, the environment, and the
 * table of subcommands.
 *
 * Owns: argv before the subcommand sees it. Global options are accepted
 * anywhere on the command line (before or after the subcommand) and removed
 * from argv, so each subcommand parses only its own. Does not own: what a
 * subcommand does (one file each). */
#include "cli.h"
#include "out.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_URL "ws://127.0.0.1:8080/ws"

static const struct command {
    const char *name;
    int (*run)(struct cli *g, int argc, char **argv);
    const char *summary;
} commands[] = {
    { "pub", cmd_pub, "publish DATA (or each line of stdin) to a channel" },
    { "sub", cmd_sub, "print what is published to channels, resuming after reconnects" },
    { "history", cmd_history, "read a page of a channel's stored publications" },
    { "presence", cmd_presence, "list who is subscribed to a channel" },
    { "state", cmd_state, "read or change a state channel (get, set, incr, del, reset)" },
    { "seats", cmd_seats, "hold, confirm or release seats; join or leave a waitlist" },
    { "stats", cmd_stats, "channel statistics (an operator endpoint)" },
    { "token", cmd_token, "mint a connect or subscribe token (HS256, RS256, ES256)" },
    { "check-config", cmd_check_config, "check a broker config file with the broker's own parser" },
};

void cli_err(const struct cli *g, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", g->prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_err(const struct cli *g, const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s %s: ", g->prog, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see %s %s --help)\n", g->prog, cmd);
    return CLI_E_USAGE;
}

int cli_flag(char **argv, int i, const char *name)
{
    return !strcmp(argv[i], name);
}

int cli_is_help(char **argv, int i)
{
    return !strcmp(argv[i], "-h") || !strcmp(argv[i], "--help");
}

int cli_take(const struct cli *g, int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n)) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        (*i)++;
        return 1;
    }
    if (a[n]) return 0;
    if (*i + 1 >= argc) {
        cli_err(g, "%s needs a value", name);
        return -1;
    }
    *val = argv[*i + 1];
    *i += 2;
    return 1;
}

int cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!s || *s < '0' || *s > '9') return -1;
    v = strtoull(s, &end, 10);
    if (*end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int cli_duration_s(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mul = 1;

    if (!s || *s < '0' || *s > '9') return -1;
    v = strtoull(s, &end, 10);
    if (!strcmp(end, "") || !strcmp(end, "s")) mul = 1;
    else if (!strcmp(end, "m")) mul = 60;
    else if (!strcmp(end, "h")) mul = 3600;
    else if (!strcmp(end, "d")) mul = 86400;
    else return -1;
    if (v > UINT64_MAX / mul / 1000) return -1;
    *out = v * mul;
    return 0;
}

/* Derives the WebSocket URL and the REST base from one URL, so that one
 * --url serves both transports: ws://h:p[/path] and http://h:p name the same
 * broker. Return: 0, or -1 for a scheme that is neither. */
static int derive_urls(struct cli *g)
{
    const char *u = g->url, *rest;
    int tls;
    size_t hl;

    if (!strncasecmp(u, "ws://", 5)) { tls = 0; rest = u + 5; }
    else if (!strncasecmp(u, "wss://", 6)) { tls = 1; rest = u + 6; }
    else if (!strncasecmp(u, "http://", 7)) { tls = 0; rest = u + 7; }
    else if (!strncasecmp(u, "https://", 8)) { tls = 1; rest = u + 8; }
    else return -1;
    hl = strcspn(rest, "/?");
    if (!hl || hl > 512) return -1;
    snprintf(g->http_base, sizeof g->http_base, "%s://%.*s", tls ? "https" : "http", (int)hl, rest);
    if (rest[hl] == '/' && (u[0] == 'w' || u[0] == 'W') && rest[hl + 1])
        snprintf(g->ws_url, sizeof g->ws_url, "%s://%s", tls ? "wss" : "ws", rest);
    else
        snprintf(g->ws_url, sizeof g->ws_url, "%s://%.*s/ws", tls ? "wss" : "ws", (int)hl, rest);
    return 0;
}

static void usage(FILE *f, const char *prog)
{
    fprintf(f, "usage: %s [GLOBAL OPTIONS] COMMAND [ARGS]\n\ncommands:\n", prog);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\nglobal options (anywhere on the line):\n"
            "  --url URL        the broker: ws://, wss://, http:// or https://HOST[:PORT]\n"
            "                   [$HERALD_URL; default %s]\n"
            "  --token JWT      a token for connect [$HERALD_TOKEN]\n"
            "  --api-key KEY    a REST API key: pub, state and seats writes then use REST [$HERALD_API_KEY]\n"
            "  --cafile FILE    CA certificates to verify a wss:// or https:// broker\n"
            "  --tls-name NAME  verify the certificate for NAME (and send it as SNI), not the URL's host\n"
            "  --insecure       do not verify the broker's certificate\n"
            "  --json           print JSON lines instead of text\n"
            "  --timeout DUR    how long to wait for the broker (default 10s)\n"
            "  -h, --help       this help; COMMAND --help for a command's own\n"
            "  -V, --version    print the version\n"
            "\nexit codes: 0 ok, 1 the broker refused, 2 bad usage or input (or an invalid config),\n"
            "            3 the broker could not be reached or the connection failed\n",
            DEFAULT_URL);
}

int main(int argc, char **argv)
{
    struct cli g = { .prog = "herald-cli", .timeout_ms = 10000 };
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    const char *timeout = NULL;
    int n = 0, r, opts_done = 0;

    if (!rest) return CLI_E_CONN;
    /* A broker that goes away mid-write must be an error code, not a signal;
     * stdout that goes away (`| head`) is noticed by out.c's flushes. */
    signal(SIGPIPE, SIG_IGN);
    g.url = getenv("HERALD_URL");
    g.token = getenv("HERALD_TOKEN");
    g.api_key = getenv("HERALD_API_KEY");
    if (g.token && !*g.token) g.token = NULL;
    if (g.api_key && !*g.api_key) g.api_key = NULL;
    for (int i = 1; i < argc;) {
        if (opts_done) { rest[n++] = argv[i++]; continue; }
        if (!strcmp(argv[i], "--")) { opts_done = 1; rest[n++] = argv[i++]; continue; }
        if ((r = cli_take(&g, argc, argv, &i, "--url", &g.url)) ||
            (r = cli_take(&g, argc, argv, &i, "--token", &g.token)) ||
            (r = cli_take(&g, argc, argv, &i, "--api-key", &g.api_key)) ||
            (r = cli_take(&g, argc, argv, &i, "--cafile", &g.cafile)) ||
            (r = cli_take(&g, argc, argv, &i, "--tls-name", &g.tls_name)) ||
            (r = cli_take(&g, argc, argv, &i, "--timeout", &timeout))) {
            if (r < 0) { free(rest); return CLI_E_USAGE; }
            continue;
        }
        if (cli_flag(argv, i, "--json")) { g.json = 1; i++; continue; }
        if (cli_flag(argv, i, "--insecure")) { g.insecure = 1; i++; continue; }
        if (n == 0 && (cli_flag(argv, i, "-V") || cli_flag(argv, i, "--version"))) {
            printf("herald-cli %s\n", HERALD_VERSION);
            free(rest);
            return CLI_OK;
        }
        rest[n++] = argv[i++];
    }
    if (!g.url || !*g.url) g.url = DEFAULT_URL;
    if (timeout) {
        uint64_t ms;
        char *end;
        double s = strtod(timeout, &end);
        if (end == timeout || s <= 0 || s > 86400 || (*end && strcmp(end, "s"))) {
            if (!strcmp(end, "ms") && s >= 1 && s <= 86400000) ms = (uint64_t)s;
            else {
                cli_err(&g, "--timeout %s: expected a duration such as 10, 2.5s or 500ms", timeout);
                free(rest);
                return CLI_E_USAGE;
            }
        } else {
            ms = (uint64_t)(s * 1000);
        }
        g.timeout_ms = (unsigned)(ms ? ms : 1);
    }
    if (g.token && !*g.token) g.token = NULL;
    if (g.api_key && !*g.api_key) g.api_key = NULL;
    if (n == 0 || cli_is_help(rest, 0)) {
        usage(n ? stdout : stderr, g.prog);
        free(rest);
        return n ? CLI_OK : CLI_E_USAGE;
    }
    if (derive_urls(&g)) {
        cli_err(&g, "--url %s: expected ws://, wss://, http:// or https://HOST[:PORT][/PATH]", g.url);
        free(rest);
        return CLI_E_USAGE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(rest[0], commands[i].name)) {
            r = commands[i].run(&g, n, rest);
            out_flush();
            free(rest);
            return r;
        }
    cli_err(&g, "unknown command '%s' (see %s --help)", rest[0], g.prog);
    free(rest);
    return CLI_E_USAGE;
}
