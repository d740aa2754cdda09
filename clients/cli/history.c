/* clients/cli/history.c - `herald-cli history CHANNEL`: one page of a
 * channel's stored publications (the `history` op over WebSocket, so a
 * token's read permission applies as for subscribing). */
#include "cli.h"
#include "out.h"

#include <stdio.h>
#include <string.h>

static const char help[] =
    "usage: herald-cli history CHANNEL [--limit N] [--since OFFSET] [--before OFFSET] [--reverse]\n"
    "\n"
    "Print a page of CHANNEL's stored publications, oldest first (newest first with --reverse).\n"
    "\n"
    "  --limit N        at most N publications, 1-1000 (default 100)\n"
    "  --since OFFSET   only offsets greater than OFFSET\n"
    "  --before OFFSET  only offsets less than OFFSET\n"
    "  --reverse        newest first\n"
    "\n"
    "Text output: one line per publication, then the options that read the next page.\n"
    "--json: the broker's reply, one line ({\"op\":\"history\",\"publications\":[...],\"next\":...}).\n"
    "Exit 1 if the broker refuses (112: the namespace keeps no history; 114: not allowed).\n";

static void print(const struct cli *g, const herald_msg_t *m)
{
    json_t *j, *pubs, *pub, *next;
    size_t i;

    if (g->json) {
        out_raw(m);
        return;
    }
    if (!(j = out_parse(m))) return;
    pubs = json_object_get(j, "publications");
    json_array_foreach(pubs, i, pub) {
        char t[32], pre[400];
        out_ts(json_integer_value(json_object_get(pub, "ts")), t);
        snprintf(pre, sizeof pre, "%s #%lld ", t, (long long)json_integer_value(json_object_get(pub, "offset")));
        out_value(pre, json_object_get(pub, "data"));
    }
    next = json_object_get(j, "next");
    fprintf(stderr, "(%zu publications; channel at offset %lld, epoch %s)\n", json_array_size(pubs),
            (long long)json_integer_value(json_object_get(j, "offset")),
            json_string_value(json_object_get(j, "epoch")) ?: "-");
    if (json_is_object(next)) {
        json_t *since = json_object_get(next, "since"), *before = json_object_get(next, "before");
        if (since) fprintf(stderr, "(next page: --since %lld)\n", (long long)json_integer_value(since));
        if (before) fprintf(stderr, "(next page: --before %lld --reverse)\n", (long long)json_integer_value(before));
    }
    json_decref(j);
}

int cmd_history(struct cli *g, int argc, char **argv)
{
    const char *channel = NULL, *limit = NULL, *since = NULL, *before = NULL;
    int reverse = 0, r;
    uint64_t v;
    char fields[256];
    size_t n = 0;

    for (int i = 1; i < argc;) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); return CLI_OK; }
        if ((r = cli_take(g, argc, argv, &i, "--limit", &limit)) ||
            (r = cli_take(g, argc, argv, &i, "--since", &since)) ||
            (r = cli_take(g, argc, argv, &i, "--before", &before))) {
            if (r < 0) return CLI_E_USAGE;
            continue;
        }
        if (cli_flag(argv, i, "--reverse")) { reverse = 1; i++; continue; }
        if (argv[i][0] == '-') return cli_usage_err(g, "history", "unknown option '%s'", argv[i]);
        if (channel) return cli_usage_err(g, "history", "unexpected argument '%s'", argv[i]);
        channel = argv[i++];
    }
    if (!channel) return cli_usage_err(g, "history", "missing CHANNEL");
    n += (size_t)snprintf(fields + n, sizeof fields - n, "{\"reverse\":%s", reverse ? "true" : "false");
    if (limit) {
        if (cli_u64(limit, 1, 1000, &v)) return cli_usage_err(g, "history", "--limit %s: expected 1-1000", limit);
        n += (size_t)snprintf(fields + n, sizeof fields - n, ",\"limit\":%llu", (unsigned long long)v);
    }
    if (since) {
        if (cli_u64(since, 0, INT64_MAX, &v)) return cli_usage_err(g, "history", "--since %s: expected an offset", since);
        n += (size_t)snprintf(fields + n, sizeof fields - n, ",\"since\":%llu", (unsigned long long)v);
    }
    if (before) {
        if (cli_u64(before, 1, INT64_MAX, &v)) return cli_usage_err(g, "history", "--before %s: expected an offset", before);
        n += (size_t)snprintf(fields + n, sizeof fields - n, ",\"before\":%llu", (unsigned long long)v);
    }
    snprintf(fields + n, sizeof fields - n, "}");
    return cli_request(g, "history", channel, fields, print);
}
