/* clients/cli/presence.c - `herald-cli presence CHANNEL`: who is subscribed
 * (the `presence` op; namespaces with presence = on). */
#include "cli.h"
#include "out.h"

#include <stdio.h>
#include <string.h>

static const char help[] =
    "usage: herald-cli presence CHANNEL\n"
    "\n"
    "Print CHANNEL's members (users, or client ids of anonymous connections) and how many\n"
    "connections each has. Above the namespace's presence_tier the list is a sample.\n"
    "--json: the broker's reply, one line. Exit 1 if the broker refuses (116: presence is off\n"
    "in the namespace; 114: not allowed).\n";

static void print(const struct cli *g, const herald_msg_t *m)
{
    json_t *j, *members, *mem;
    size_t i;

    if (g->json) {
        out_raw(m);
        return;
    }
    if (!(j = out_parse(m))) return;
    members = json_object_get(j, "members");
    json_array_foreach(members, i, mem) {
        const char *who = json_string_value(json_object_get(mem, "user"));
        json_t *info = json_object_get(mem, "info");
        char pre[300];
        if (!who) who = json_string_value(json_object_get(mem, "client"));
        snprintf(pre, sizeof pre, "%s (%lld connection%s)%s", who ? who : "?",
                 (long long)json_integer_value(json_object_get(mem, "connections")),
                 json_integer_value(json_object_get(mem, "connections")) == 1 ? "" : "s", info ? " " : "");
        if (info) out_value(pre, info);
        else printf("%s\n", pre);
    }
    printf("%lld member%s, %lld connection%s%s\n", (long long)m->count, m->count == 1 ? "" : "s",
           (long long)m->connections, m->connections == 1 ? "" : "s",
           json_is_true(json_object_get(j, "tiered")) ? " (members above: a sample)" : "");
    json_decref(j);
}

int cmd_presence(struct cli *g, int argc, char **argv)
{
    const char *channel = NULL;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); return CLI_OK; }
        if (argv[i][0] == '-') return cli_usage_err(g, "presence", "unknown option '%s'", argv[i]);
        if (channel) return cli_usage_err(g, "presence", "unexpected argument '%s'", argv[i]);
        channel = argv[i];
    }
    if (!channel) return cli_usage_err(g, "presence", "missing CHANNEL");
    return cli_request(g, "presence", channel, NULL, print);
}
