/* clients/cli/sub.c - `herald-cli sub CHANNEL...`: print every publication of
 * the channels until Ctrl-C (or --count publications), across reconnects.
 *
 * Owns: the run of one herald_session (herald_session.h): the loop, the
 * signal handlers, and how reconnects, recoveries and losses are reported.
 * The session resubscribes with the last epoch and offset printed, so a
 * broker restart or a dropped connection costs no publication and prints
 * none twice; when the broker cannot give everything back, stderr says
 * "NOT recovered". Only the first connection must succeed: if the broker
 * cannot be reached at the start, sub exits 3 rather than wait. */
#include "cli.h"
#include "herald_session.h"
#include "out.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: herald-cli sub CHANNEL... [--since OFFSET --epoch EPOCH] [--count N] [--token-command CMD]\n"
    "                                  [--subscribe-token JWT]\n"
    "\n"
    "Subscribe to each CHANNEL and print its publications as they arrive, until Ctrl-C\n"
    "(SIGINT or SIGTERM: a clean close, exit 0). When the connection is lost (the broker\n"
    "restarts, the network drops) sub reconnects with backoff and resumes every channel from\n"
    "the last publication it printed: each publication is printed exactly once, in order, or\n"
    "stderr says 'NOT recovered' when the broker no longer has what was missed.\n"
    "\n"
    "  --since OFFSET --epoch EPOCH  (one CHANNEL) start after OFFSET of log EPOCH (from an\n"
    "                                earlier subscribed line): print what was missed first\n"
    "  --count N                     exit 0 after N publications\n"
    "  --token-command CMD           run CMD (with sh -c) for a fresh token before each\n"
    "                                reconnect and when the broker asks for a refresh;\n"
    "                                its first line of output is the token\n"
    "  --subscribe-token JWT         (one CHANNEL) a subscribe token for it (herald-cli token\n"
    "                                --channel), for namespaces with subscribe = granted\n"
    "\n"
    "Text: 'TIME CHANNEL #OFFSET DATA' per publication; subscriptions and reconnects are\n"
    "reported on stderr. --json: one JSON line per message: the \"subscribed\" replies (with\n"
    "\"recovered\" after a reconnect), then {\"op\":\"pub\",...} lines (recovered publications\n"
    "carry channel, offset, ts and data only).\n"
    "Exit 1 if a subscription or the token is refused, 3 if the broker cannot be reached.\n";

struct sub {
    const struct cli *g;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    herald_ctx_t *ctx;
    herald_session_t *s;
    char **channels;
    int nchannels;
    const char *epoch;
    uint64_t since;
    uint64_t count, seen;
    const char *token_cmd;
    const char *sub_token;        /* --subscribe-token */
    char token[8192];
    int opened;                   /* a connection reached on_open */
    int code;                     /* the exit code, once decided */
    int decided;
};

static void stop(struct sub *s, int code)
{
    if (!s->decided) {
        s->decided = 1;
        s->code = code;
    }
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    if (s->s) herald_session_close(s->s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    stop(h->data, CLI_OK);
}

static void count_one(struct sub *s)
{
    if (s->count && ++s->seen == s->count) stop(s, CLI_OK);
}

static void on_open(herald_session_t *ss, const herald_msg_t *m, int reconnect, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    (void)m;
    s->opened = 1;
    if (reconnect && !s->g->json) fprintf(stderr, "reconnected to %s\n", s->g->ws_url);
}

static void on_disconnect(herald_session_t *ss, const herald_close_info_t *info, unsigned retry_ms, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    if (!s->opened) {
        cli_err(s->g, "cannot connect to %s: %s", s->g->ws_url,
                info->err == HERALD_E_REFUSED || !*info->reason ? herald_strerror(info->err) : info->reason);
        stop(s, info->err == HERALD_E_REFUSED ? CLI_E_REFUSED : CLI_E_CONN);
        return;
    }
    fprintf(stderr, "%s: connection lost (%d%s%s); reconnecting in %u ms\n", s->g->prog, info->code,
            *info->reason ? " " : "", info->reason, retry_ms);
}

static void on_subscribed(herald_session_t *ss, const herald_msg_t *m, int resumed, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    if (s->g->json) {
        out_raw(m);
        return;
    }
    fprintf(stderr, "%s %.*s at offset %llu (epoch %.*s)%s\n", resumed ? "resumed" : "subscribed to",
            (int)m->channel_len, m->channel, (unsigned long long)m->offset, (int)m->epoch_len, m->epoch,
            m->has_recovered && m->recovered ? ", recovered" : "");
}

static void on_lost(herald_session_t *ss, const char *ch, size_t chlen, uint64_t last, const herald_msg_t *m, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    (void)m;
    fprintf(stderr, "%s: %.*s: NOT recovered: publications after #%llu were missed (the broker no longer has "
            "them, or the channel's log started over)\n", s->g->prog, (int)chlen, ch, (unsigned long long)last);
}

static void on_pub(herald_session_t *ss, const herald_msg_t *m, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    if (s->decided) return;
    if (s->g->json && m->raw) out_raw(m);
    else out_pub(s->g->json, m->channel, m->channel_len, m->offset, m->ts, m->data, m->data_len);
    count_one(s);
}

static void on_sub_error(herald_session_t *ss, const char *ch, size_t chlen, const herald_msg_t *m, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    cli_err(s->g, "%.*s: error %d: %.*s", (int)chlen, ch, m->code, (int)m->reason_len, m->reason ? m->reason : "");
    stop(s, CLI_E_REFUSED);
}

static void on_reply(herald_session_t *ss, const herald_msg_t *m, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    if (m->op == HERALD_OP_ERROR) {
        cli_err(s->g, "error %d: %.*s", m->code, (int)m->reason_len, m->reason ? m->reason : "");
        return;
    }
    if (m->op == HERALD_OP_REFRESHED || m->op == HERALD_OP_REFRESH_REQUIRED || m->op == HERALD_OP_UNSUBSCRIBED) {
        if (!s->g->json) return;
    }
    if (s->g->json) out_raw(m);
    else out_reply(0, m->raw, m->raw_len);
}

/* --token-command: blocks the loop while the command runs; acceptable for a
 * command-line subscriber, which has nothing else to do meanwhile. */
static const char *on_token(herald_session_t *ss, void *ud)
{
    struct sub *s = ud;
    FILE *f;
    size_t n;
    int st;

    (void)ss;
    if (!s->token_cmd || !(f = popen(s->token_cmd, "r"))) return NULL;
    if (!fgets(s->token, sizeof s->token, f)) s->token[0] = '\0';
    st = pclose(f);
    n = strcspn(s->token, "\r\n");
    s->token[n] = '\0';
    if (st != 0 || !n) {
        cli_err(s->g, "--token-command failed (status %d); keeping the current token", st);
        return NULL;
    }
    return s->token;
}

static void on_close(herald_session_t *ss, const herald_close_info_t *info, void *ud)
{
    struct sub *s = ud;

    (void)ss;
    s->s = NULL;
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    if (s->decided) return;
    s->decided = 1;
    if (info->err == HERALD_E_REFUSED) {
        cli_err(s->g, "%s", info->reason);
        s->code = CLI_E_REFUSED;
    } else {
        cli_err(s->g, "giving up: %s", *info->reason ? info->reason : herald_strerror(info->err));
        s->code = CLI_E_CONN;
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int run(struct sub *s)
{
    static const herald_session_callbacks_t cbs = {
        .on_open = on_open, .on_disconnect = on_disconnect, .on_subscribed = on_subscribed, .on_lost = on_lost,
        .on_pub = on_pub, .on_sub_error = on_sub_error, .on_reply = on_reply, .on_token = on_token,
        .on_close = on_close,
    };
    herald_session_callbacks_t cb = cbs;
    herald_session_opts_t o = { .client = { .encoding = HERALD_JSON, .connect_timeout_ms = s->g->timeout_ms,
                                            .token = s->g->token } };
    herald_url_t url;
    int r;

    if (!s->token_cmd) cb.on_token = NULL;     /* a refused token is then final */
    uv_loop_init(&s->loop);
    if ((r = herald_ctx_new(&s->loop, &s->ctx))) {
        uv_loop_close(&s->loop);
        cli_err(s->g, "%s", herald_strerror(r));
        return CLI_E_CONN;
    }
    if ((r = cli_connect_prep(s->g, s->ctx, &url))) {
        herald_ctx_free(s->ctx);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        return r;
    }
    if (s->token_cmd && !s->g->token) o.client.token = on_token(NULL, s);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    if ((r = herald_session_new(s->ctx, &url, &o, &cb, s, &s->s))) {
        cli_err(s->g, "%s", herald_strerror(r));
        stop(s, CLI_E_CONN);
    }
    for (int i = 0; s->s && i < s->nchannels; i++) {
        const char *ch = s->channels[i];
        if ((r = herald_session_subscribe_token(s->s, ch, strlen(ch), s->epoch, s->epoch ? strlen(s->epoch) : 0,
                                                s->since, s->sub_token))) {
            cli_err(s->g, "%s: %s", ch, r == UV_EEXIST ? "given twice" : herald_strerror(r));
            stop(s, r == UV_EEXIST || r == UV_EINVAL ? CLI_E_USAGE : CLI_E_CONN);
        }
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    herald_ctx_free(s->ctx);
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    return s->code;
}

int cmd_sub(struct cli *g, int argc, char **argv)
{
    struct sub *s = calloc(1, sizeof *s);
    const char *since = NULL, *count = NULL;
    int r;

    if (!s || !(s->channels = calloc((size_t)argc, sizeof *s->channels))) {
        free(s);
        return CLI_E_CONN;
    }
    s->g = g;
    for (int i = 1; i < argc;) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); r = CLI_OK; goto out; }
        if ((r = cli_take(g, argc, argv, &i, "--since", &since)) || (r = cli_take(g, argc, argv, &i, "--epoch", &s->epoch)) ||
            (r = cli_take(g, argc, argv, &i, "--count", &count)) ||
            (r = cli_take(g, argc, argv, &i, "--token-command", &s->token_cmd)) ||
            (r = cli_take(g, argc, argv, &i, "--subscribe-token", &s->sub_token))) {
            if (r < 0) { r = CLI_E_USAGE; goto out; }
            continue;
        }
        if (argv[i][0] == '-') { r = cli_usage_err(g, "sub", "unknown option '%s'", argv[i]); goto out; }
        s->channels[s->nchannels++] = argv[i++];
    }
    r = CLI_OK;
    if (!s->nchannels) r = cli_usage_err(g, "sub", "missing CHANNEL");
    else if (!since != !s->epoch) r = cli_usage_err(g, "sub", "--since and --epoch go together");
    else if (since && s->nchannels != 1) r = cli_usage_err(g, "sub", "--since and --epoch take one CHANNEL");
    else if (s->sub_token && s->nchannels != 1) r = cli_usage_err(g, "sub", "--subscribe-token takes one CHANNEL");
    else if (since && cli_u64(since, 0, INT64_MAX, &s->since)) r = cli_usage_err(g, "sub", "--since %s: expected an offset", since);
    else if (count && cli_u64(count, 1, UINT64_MAX, &s->count)) r = cli_usage_err(g, "sub", "--count %s: expected a number", count);
    if (r == CLI_OK) r = run(s);
out:
    free(s->channels);
    free(s);
    return r;
}
