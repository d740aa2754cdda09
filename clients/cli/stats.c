/* clients/cli/stats.c - `herald-cli stats [CHANNEL]`: the broker's channel
 * statistics, from the operator endpoints GET /api/channels and
 * GET /api/channels/{channel} (an admin API key when keys are configured). */
#include "cli.h"
#include "out.h"
#include "rest.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char help[] =
    "usage: herald-cli stats [CHANNEL] [--prefix P] [--limit N] [--cursor C]\n"
    "\n"
    "Without CHANNEL: the channels the broker holds, one line each (a page; --cursor reads the\n"
    "next). With CHANNEL: that channel's statistics. Uses the REST operator endpoints, so a\n"
    "broker with API keys needs an admin key (--api-key or $HERALD_API_KEY).\n"
    "--json: the broker's answer, one line. Exit 1 if the broker refuses (401/403: no admin key;\n"
    "404: an unknown channel).\n";

static void print_channel(const json_t *c)
{
    json_t *h = json_object_get(c, "history");
    printf("%-32s subscribers %-6lld last_offset %-8lld pub/s %-8.1f history %lld (%lld bytes)\n",
           json_string_value(json_object_get(c, "channel")) ?: "?",
           (long long)json_integer_value(json_object_get(c, "subscribers")),
           (long long)json_integer_value(json_object_get(c, "last_offset")),
           json_number_value(json_object_get(c, "publications_per_second")),
           (long long)json_integer_value(json_object_get(h, "length")),
           (long long)json_integer_value(json_object_get(h, "bytes")));
}

int cmd_stats(struct cli *g, int argc, char **argv)
{
    const char *channel = NULL, *prefix = NULL, *limit = NULL, *cursor = NULL;
    char path[2048] = "/api/channels";
    struct rest_resp resp;
    json_t *j, *list, *c;
    size_t i;
    int r;
    uint64_t v;

    for (int k = 1; k < argc;) {
        if (cli_is_help(argv, k)) { fputs(help, stdout); return CLI_OK; }
        if ((r = cli_take(g, argc, argv, &k, "--prefix", &prefix)) ||
            (r = cli_take(g, argc, argv, &k, "--limit", &limit)) ||
            (r = cli_take(g, argc, argv, &k, "--cursor", &cursor))) {
            if (r < 0) return CLI_E_USAGE;
            continue;
        }
        if (argv[k][0] == '-') return cli_usage_err(g, "stats", "unknown option '%s'", argv[k]);
        if (channel) return cli_usage_err(g, "stats", "unexpected argument '%s'", argv[k]);
        channel = argv[k++];
    }
    if (channel && (prefix || limit || cursor))
        return cli_usage_err(g, "stats", "--prefix, --limit and --cursor list channels: give no CHANNEL");
    if (limit && cli_u64(limit, 1, 1000, &v)) return cli_usage_err(g, "stats", "--limit %s: expected 1-1000", limit);
    if (channel) {
        strcat(path, "/");
        if (rest_path_escape(path, sizeof path, channel)) return cli_usage_err(g, "stats", "CHANNEL too long");
    } else {
        const char *sep = "?";
        if (prefix) { strcat(path, "?prefix="); if (rest_path_escape(path, sizeof path - 600, prefix)) return CLI_E_USAGE; sep = "&"; }
        if (limit) { strcat(path, sep); strcat(path, "limit="); strcat(path, limit); sep = "&"; }
        if (cursor) { strcat(path, sep); strcat(path, "cursor="); if (rest_path_escape(path, sizeof path, cursor)) return CLI_E_USAGE; }
    }
    if (rest_request(g, "GET", path, NULL, &resp)) return CLI_E_CONN;
    if ((r = rest_check(g, &resp)) != CLI_OK || g->json) {
        if (r == CLI_OK) out_line(resp.body, resp.len);
        rest_resp_free(&resp);
        return r;
    }
    j = json_loadb(resp.body, resp.len, 0, NULL);
    if (channel) {
        out_fields(j);
    } else {
        list = json_object_get(j, "channels");
        json_array_foreach(list, i, c) {
            if (json_is_object(c)) print_channel(c);
            else if (json_is_string(c)) printf("%s\n", json_string_value(c));
        }
        if (!json_is_null(json_object_get(j, "next_cursor")) && json_object_get(j, "next_cursor")) {
            char *nc = json_dumps(json_object_get(j, "next_cursor"), JSON_ENCODE_ANY);
            fprintf(stderr, "(more: --cursor %s)\n", nc ? nc : "?");
            free(nc);
        }
    }
    json_decref(j);
    rest_resp_free(&resp);
    return CLI_OK;
}
