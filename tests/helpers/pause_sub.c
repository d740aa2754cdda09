/* tests/helpers/pause_sub.c - herald-pause-sub, a subscriber that pauses, for
 * tests/e2e/test_client_pause.py: the client library's flow control
 * (herald_client_pause() / herald_client_resume()) against the real broker.
 *
 * Owns: one client on one channel; a pause after N pubs (0: as soon as the
 * subscribe is answered), and again every M pubs; each resumed when a file
 * appears or after a time, from a timer; the lines it prints. Does not own: any check (the test reads the lines). Not
 * installed: a test tool, not part of herald-cli.
 *
 * Prints one line per event on stdout, flushed at once:
 *   open | subscribed <reply> | paused <pubs so far> | resumed |
 *   msg <message> (pubs and pushes: snapshot, ...) | close <code> <err> <reason>
 * where <reply>/<message> is the message as the broker wrote it (JSON).
 * Exit status: 0 after on_close; 2 bad usage; 3 it could not start. */
#include "herald_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct app {
    herald_ctx_t *ctx;
    herald_client_t *c;
    uv_timer_t timer;             /* resume polling, then the idle exit */
    const char *channel;
    const char *resume_file;      /* resume once this exists */
    long resume_ms;               /* ... or after this long paused (-1: never by time) */
    long pause_after;             /* pubs before the pause (-1: never) */
    long pause_every;             /* then again after every this many pubs (0: once) */
    long idle_exit_ms;            /* after the resume, close once nothing came for this long (0: never) */
    long max_wait_ms;             /* longest pause: then the client is aborted */
    int rcvbuf;                   /* SO_RCVBUF of the client's socket, 0 to leave it */
    long pubs;
    uint64_t paused_at, last_msg;
    int resumed;
};

static void on_timer(uv_timer_t *t);

static void set_rcvbuf(uv_handle_t *h, void *arg)
{
    int size = *(int *)arg;

    if (h->type == UV_TCP) uv_recv_buffer_size(h, &size);
}

static void pause_now(struct app *a)
{
    int r = herald_client_pause(a->c);

    if (r) {
        fprintf(stderr, "herald-pause-sub: pause: %s\n", herald_strerror(r));
        herald_client_abort(a->c);
        return;
    }
    printf("paused %ld\n", a->pubs);
    a->resumed = 0;
    a->paused_at = uv_hrtime();
    uv_timer_start(&a->timer, on_timer, 10, 10);
}

static void on_timer(uv_timer_t *t)
{
    struct app *a = t->data;
    uint64_t now = uv_hrtime();

    if (!a->c) return;
    if (a->resumed) {
        if (a->idle_exit_ms && now - a->last_msg >= (uint64_t)a->idle_exit_ms * 1000000ULL) {
            uv_timer_stop(t);
            herald_close(a->c, 1000, NULL);
        }
        return;
    }
    if ((a->resume_file && access(a->resume_file, F_OK) == 0) ||
        (a->resume_ms >= 0 && now - a->paused_at >= (uint64_t)a->resume_ms * 1000000ULL)) {
        int r = herald_client_resume(a->c);
        if (r) {
            fprintf(stderr, "herald-pause-sub: resume: %s\n", herald_strerror(r));
            herald_client_abort(a->c);
            return;
        }
        a->resumed = 1;
        a->last_msg = now;
        printf("resumed\n");
        if (!a->idle_exit_ms) uv_timer_stop(t);
        return;
    }
    if (now - a->paused_at >= (uint64_t)a->max_wait_ms * 1000000ULL) {
        fprintf(stderr, "herald-pause-sub: no resume within %ld ms\n", a->max_wait_ms);
        herald_client_abort(a->c);
    }
}

static void print_msg(const char *what, const herald_msg_t *m)
{
    printf("%s %.*s\n", what, (int)m->raw_len, (const char *)m->raw);
}

static void on_subscribed(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    struct app *a = arg;

    print_msg(m->op == HERALD_OP_SUBSCRIBED ? "subscribed" : "error", m);
    if (m->op != HERALD_OP_SUBSCRIBED) {
        herald_close(c, 1000, NULL);
        return;
    }
    if (a->pause_after == 0) pause_now(a);
}

static void on_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct app *a = ud;
    int r;

    (void)m;
    printf("open\n");
    if (a->rcvbuf) uv_walk(herald_ctx_loop(a->ctx), set_rcvbuf, &a->rcvbuf);
    if ((r = herald_subscribe(c, a->channel, strlen(a->channel), on_subscribed, a, NULL))) {
        fprintf(stderr, "herald-pause-sub: subscribe: %s\n", herald_strerror(r));
        herald_client_abort(c);
    }
}

static void on_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct app *a = ud;

    (void)c;
    print_msg("msg", m);
    a->last_msg = uv_hrtime();
    ++a->pubs;
    if (a->pubs == a->pause_after ||
        (a->pause_every && a->pubs > a->pause_after && (a->pubs - a->pause_after) % a->pause_every == 0))
        pause_now(a);
}

static void on_reply(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct app *a = ud;

    (void)c;
    print_msg("msg", m);
    a->last_msg = uv_hrtime();
}

static void on_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    struct app *a = ud;

    (void)c;
    printf("close %d %d %s\n", info->code, info->err, info->reason);
    a->c = NULL;
    uv_close((uv_handle_t *)&a->timer, NULL);
}

static int usage(void)
{
    fprintf(stderr, "usage: herald-pause-sub URL CHANNEL [--pause-after N] [--pause-every N] [--resume-file PATH]\n"
                    "       [--resume-ms MS] [--idle-exit-ms MS] [--max-wait-ms MS] [--rcvbuf BYTES] [--cafile PEM]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct app a = { .resume_ms = -1, .pause_after = 0, .max_wait_ms = 60000 };
    herald_callbacks_t cb = { .on_open = on_open, .on_pub = on_pub, .on_reply = on_reply, .on_close = on_close };
    herald_tls_opts_t tls = { 0 };
    uv_loop_t *loop = uv_default_loop();
    herald_url_t url;
    int r;

    if (argc < 3) return usage();
    a.channel = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!v) return usage();
        i++;
        if (!strcmp(o, "--pause-after")) a.pause_after = atol(v);
        else if (!strcmp(o, "--pause-every")) a.pause_every = atol(v);
        else if (!strcmp(o, "--resume-file")) a.resume_file = v;
        else if (!strcmp(o, "--resume-ms")) a.resume_ms = atol(v);
        else if (!strcmp(o, "--idle-exit-ms")) a.idle_exit_ms = atol(v);
        else if (!strcmp(o, "--max-wait-ms")) a.max_wait_ms = atol(v);
        else if (!strcmp(o, "--rcvbuf")) a.rcvbuf = atoi(v);
        else if (!strcmp(o, "--cafile")) tls.ca_file = v;
        else return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((r = herald_url_parse(argv[1], &url)) || (r = herald_ctx_new(loop, &a.ctx)) ||
        (url.tls && (r = herald_ctx_set_tls(a.ctx, &tls)))) {
        fprintf(stderr, "herald-pause-sub: %s\n", herald_strerror(r));
        return 3;
    }
    uv_timer_init(loop, &a.timer);
    a.timer.data = &a;
    if ((r = herald_client_new(a.ctx, &url, NULL, &cb, &a, &a.c))) {
        fprintf(stderr, "herald-pause-sub: %s\n", herald_strerror(r));
        return 3;
    }
    uv_run(loop, UV_RUN_DEFAULT);        /* until on_close */
    herald_ctx_free(a.ctx);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
