/* clients/cli/sub.c - `herald-cli sub CHANNEL...`: print every publication of
 * the channels until Ctrl-C (or --count publications). */
#include "cli.h"
#include "out.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: herald-cli sub CHANNEL... [--since OFFSET --epoch EPOCH] [--count N]\n"
    "\n"
    "Subscribe to each CHANNEL and print its publications as they arrive, until Ctrl-C\n"
    "(SIGINT or SIGTERM: a clean close, exit 0).\n"
    "\n"
    "  --since OFFSET --epoch EPOCH  (one CHANNEL) first print what was published after OFFSET\n"
    "                                in log EPOCH (from an earlier subscribed line)\n"
    "  --count N                     exit 0 after N publications\n"
    "\n"
    "Text: 'TIME CHANNEL #OFFSET DATA' per publication; subscriptions are reported on stderr.\n"
    "--json: one JSON line per message: the \"subscribed\" replies, then {\"op\":\"pub\",...} lines\n"
    "(recovered publications carry channel, offset, ts and data only).\n"
    "Exit 1 if a subscription is refused, 3 if the connection fails.\n";

struct sub {
    const struct cli *g;
    char **channels;
    int nchannels;
    const char *epoch;
    uint64_t since;
    uint64_t count, seen;
};

static void count_one(struct cli_ws *w, struct sub *s)
{
    if (s->count && ++s->seen >= s->count) cli_ws_done(w, CLI_OK);
}

static void on_subscribed(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    struct cli_ws *w = arg;
    struct sub *s = cli_ws_ud(w);
    herald_pubs_t it;
    herald_msg_t p;

    (void)c;
    if (cli_ws_reply_error(w, m)) return;
    if (s->g->json) out_raw(m);
    else
        fprintf(stderr, "subscribed to %.*s at offset %llu (epoch %.*s)%s\n", (int)m->channel_len, m->channel,
                (unsigned long long)m->offset, (int)m->epoch_len, m->epoch,
                m->has_recovered ? (m->recovered ? ", recovered" : ", NOT recovered: publications were missed") : "");
    herald_pubs_init(&it, HERALD_JSON, m);
    while (herald_pubs_next(&it, &p) == 1) {
        out_pub(s->g->json, m->channel, m->channel_len, p.offset, p.ts, p.data, p.data_len);
        count_one(w, s);
    }
}

static void on_open(struct cli_ws *w)
{
    struct sub *s = cli_ws_ud(w);

    for (int i = 0; i < s->nchannels; i++) {
        const char *ch = s->channels[i];
        int r = s->epoch ? herald_subscribe_since(cli_ws_client(w), ch, strlen(ch), s->epoch, strlen(s->epoch), s->since,
                                                  on_subscribed, w, NULL)
                         : herald_subscribe(cli_ws_client(w), ch, strlen(ch), on_subscribed, w, NULL);
        if (cli_ws_check(w, r)) return;
    }
}

static void on_pub(struct cli_ws *w, const herald_msg_t *m)
{
    struct sub *s = cli_ws_ud(w);

    if (s->g->json) out_raw(m);
    else out_pub(0, m->channel, m->channel_len, m->offset, m->ts, m->data, m->data_len);
    count_one(w, s);
}

static void on_push(struct cli_ws *w, const herald_msg_t *m)
{
    struct sub *s = cli_ws_ud(w);

    if (cli_ws_reply_error(w, m)) return;
    if (s->g->json) out_raw(m);
    else out_reply(0, m->raw, m->raw_len);
}

int cmd_sub(struct cli *g, int argc, char **argv)
{
    static const struct cli_ws_ops ops = { .on_open = on_open, .on_pub = on_pub, .on_push = on_push };
    struct sub s = { .g = g };
    const char *since = NULL, *count = NULL;
    int r;

    s.channels = calloc((size_t)argc, sizeof *s.channels);
    if (!s.channels) return CLI_E_CONN;
    for (int i = 1; i < argc;) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); free(s.channels); return CLI_OK; }
        if ((r = cli_take(g, argc, argv, &i, "--since", &since)) || (r = cli_take(g, argc, argv, &i, "--epoch", &s.epoch)) ||
            (r = cli_take(g, argc, argv, &i, "--count", &count))) {
            if (r < 0) { free(s.channels); return CLI_E_USAGE; }
            continue;
        }
        if (argv[i][0] == '-') { free(s.channels); return cli_usage_err(g, "sub", "unknown option '%s'", argv[i]); }
        s.channels[s.nchannels++] = argv[i++];
    }
    r = CLI_OK;
    if (!s.nchannels) r = cli_usage_err(g, "sub", "missing CHANNEL");
    else if (!since != !s.epoch) r = cli_usage_err(g, "sub", "--since and --epoch go together");
    else if (since && s.nchannels != 1) r = cli_usage_err(g, "sub", "--since and --epoch take one CHANNEL");
    else if (since && cli_u64(since, 0, INT64_MAX, &s.since)) r = cli_usage_err(g, "sub", "--since %s: expected an offset", since);
    else if (count && cli_u64(count, 1, UINT64_MAX, &s.count)) r = cli_usage_err(g, "sub", "--count %s: expected a number", count);
    if (r == CLI_OK) r = cli_ws_run(g, &ops, &s, 0);
    free(s.channels);
    return r;
}
