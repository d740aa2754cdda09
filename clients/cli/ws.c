/* clients/cli/ws.c - one WebSocket connection for one herald-cli command.
 *
 * Owns: the loop, the client library context and client, the SIGINT/SIGTERM
 * handlers and the timeout of a request command. Does not own: what is sent
 * (the subcommands, through struct cli_ws_ops). `sub` does not use this: it
 * needs a connection that survives the broker (sub.c, herald_session). */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

struct cli_ws {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t timer;
    herald_ctx_t *ctx;
    herald_client_t *c;           /* NULL once on_close ran */
    const struct cli *g;
    const struct cli_ws_ops *ops;
    void *ud;
    int code;                     /* the exit code */
    int done;                     /* cli_ws_done() was called */
};

herald_client_t *cli_ws_client(struct cli_ws *w) { return w->c; }
void *cli_ws_ud(struct cli_ws *w) { return w->ud; }
const struct cli *cli_ws_cli(struct cli_ws *w) { return w->g; }
uv_loop_t *cli_ws_loop(struct cli_ws *w) { return &w->loop; }

static void stop_handles(struct cli_ws *w)
{
    uv_timer_stop(&w->timer);
    uv_signal_stop(&w->sigint);
    uv_signal_stop(&w->sigterm);
}

static void on_timeout(uv_timer_t *t);

void cli_ws_waiting(struct cli_ws *w, int on)
{
    if (w->done) return;
    if (on) uv_timer_start(&w->timer, on_timeout, w->g->timeout_ms, 0);
    else uv_timer_stop(&w->timer);
}

void cli_ws_done(struct cli_ws *w, int code)
{
    if (w->done) return;
    w->done = 1;
    w->code = code;
    stop_handles(w);
    if (w->c) herald_close(w->c, 1000, NULL);
}

int cli_ws_check(struct cli_ws *w, int r)
{
    if (!r) return 0;
    cli_err(w->g, "cannot send: %s", herald_strerror(r));
    cli_ws_done(w, CLI_E_CONN);
    return -1;
}

int cli_ws_reply_error(struct cli_ws *w, const herald_msg_t *m)
{
    if (m->op != HERALD_OP_ERROR) return 0;
    cli_err(w->g, "error %d: %.*s", m->code, (int)m->reason_len, m->reason ? m->reason : "");
    cli_ws_done(w, CLI_E_REFUSED);
    return 1;
}

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct cli_ws *w = ud;

    (void)c;
    (void)m;
    if (w->done) {
        herald_close(c, 1000, NULL);
        return;
    }
    w->ops->on_open(w);
}

static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct cli_ws *w = ud;

    (void)c;
    if (!w->done && w->ops->on_pub) w->ops->on_pub(w, m);
}

static void on_reply(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct cli_ws *w = ud;

    (void)c;
    if (w->done) return;
    if (w->ops->on_push) w->ops->on_push(w, m);
    else if (m->op == HERALD_OP_ERROR) cli_ws_reply_error(w, m);
}

static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    struct cli_ws *w = ud;

    (void)c;
    w->c = NULL;
    stop_handles(w);
    /* The run ends with the connection, whatever a subcommand still has
     * active (a poll on stdin): cli_ws_run() closes what is left. */
    uv_stop(&w->loop);
    if (w->done) return;            /* our own close */
    w->done = 1;
    if (info->err == HERALD_E_REFUSED) {
        cli_err(w->g, "%s", info->reason);
        w->code = CLI_E_REFUSED;
    } else if (!info->was_open) {
        int same = !strcmp(info->reason, herald_strerror(info->err));
        cli_err(w->g, "cannot connect to %s: %s%s%s", w->g->ws_url, herald_strerror(info->err),
                *info->reason && !same ? ": " : "", same ? "" : info->reason);
        w->code = CLI_E_CONN;
    } else {
        cli_err(w->g, "connection closed (%d%s%s)", info->code, *info->reason ? " " : "", info->reason);
        w->code = CLI_E_CONN;
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    cli_ws_done(s->data, CLI_OK);
}

static void on_timeout(uv_timer_t *t)
{
    struct cli_ws *w = t->data;

    cli_err(w->g, "no answer from %s within %u ms", w->g->ws_url, w->g->timeout_ms);
    cli_ws_done(w, CLI_E_CONN);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int cli_connect_prep(const struct cli *g, herald_ctx_t *ctx, herald_url_t *url)
{
    herald_tls_opts_t tls = { .ca_file = g->cafile, .insecure = g->insecure };
    int r;

    if ((r = herald_url_parse(g->ws_url, url))) {
        cli_err(g, "%s: %s", g->ws_url, herald_strerror(r));
        return r == HERALD_E_URL ? CLI_E_USAGE : CLI_E_CONN;
    }
    if (g->tls_name) snprintf(url->sni, sizeof url->sni, "%s", g->tls_name);
    if (url->tls && (r = herald_ctx_set_tls(ctx, &tls))) {
        cli_err(g, "cannot load the CA certificates%s%s: %s", g->cafile ? " of " : "", g->cafile ? g->cafile : "",
                herald_strerror(r));
        return CLI_E_USAGE;
    }
    return CLI_OK;
}

int cli_ws_run(const struct cli *g, const struct cli_ws_ops *ops, void *ud, int idle_timeout)
{
    static const herald_callbacks_t cbs = { on_open, on_reply, on_pub, on_close };
    struct cli_ws w = { .g = g, .ops = ops, .ud = ud };
    herald_url_t url;
    herald_opts_t opts = { .encoding = HERALD_JSON, .connect_timeout_ms = g->timeout_ms, .token = g->token };
    int r;

    uv_loop_init(&w.loop);
    if ((r = herald_ctx_new(&w.loop, &w.ctx))) {
        cli_err(g, "%s", herald_strerror(r));
        uv_loop_close(&w.loop);
        return CLI_E_CONN;
    }
    uv_timer_init(&w.loop, &w.timer);
    uv_signal_init(&w.loop, &w.sigint);
    uv_signal_init(&w.loop, &w.sigterm);
    w.timer.data = w.sigint.data = w.sigterm.data = &w;
    if ((r = cli_connect_prep(g, w.ctx, &url))) {
        w.code = r;
        goto out;
    }
    uv_signal_start(&w.sigint, on_signal, SIGINT);
    uv_signal_start(&w.sigterm, on_signal, SIGTERM);
    if (idle_timeout) uv_timer_start(&w.timer, on_timeout, g->timeout_ms, 0);
    if ((r = herald_client_new(w.ctx, &url, &opts, &cbs, &w, &w.c))) {
        cli_err(g, "cannot connect to %s: %s", g->ws_url, herald_strerror(r));
        w.code = CLI_E_CONN;
        w.done = 1;
        stop_handles(&w);
    }
    uv_run(&w.loop, UV_RUN_DEFAULT);
out:
    herald_ctx_free(w.ctx);
    uv_walk(&w.loop, close_walk, NULL);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    uv_loop_close(&w.loop);
    return w.code;
}

/* ---- one request ---- */

struct one {
    const char *op, *channel, *fields;
    void (*print)(const struct cli *g, const herald_msg_t *reply);
};

static void one_reply(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    struct cli_ws *w = arg;
    struct one *o = w->ud;

    (void)c;
    if (cli_ws_reply_error(w, m)) return;
    o->print(w->g, m);
    cli_ws_done(w, CLI_OK);
}

static void one_open(struct cli_ws *w)
{
    struct one *o = w->ud;

    cli_ws_check(w, herald_request(w->c, o->op, o->channel, o->channel ? strlen(o->channel) : 0, o->fields,
                                   o->fields ? strlen(o->fields) : 0, one_reply, w, NULL));
}

int cli_request(const struct cli *g, const char *op, const char *channel, const char *fields,
                void (*print)(const struct cli *g, const herald_msg_t *reply))
{
    static const struct cli_ws_ops ops = { .on_open = one_open };
    struct one o = { op, channel, fields, print };

    return cli_ws_run(g, &ops, &o, 1);
}
