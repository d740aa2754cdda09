/* tests/helpers/pause_sub.c - herald-pause-sub, a subscriber that pauses, for
 * tests/e2e/test_client_pause.py: the client library's flow control
 * (herald_client_pause() / herald_client_resume(), and with --session
 * herald_session_pause() / herald_session_resume()) against the real broker.
 *
 * Owns: one client (or session) on one channel; a pause after N pubs (0: as
 * soon as the first subscribe is answered), and again every M pubs; each
 * resumed when a file appears or after a time, from a timer; the lines it
 * prints. Does not own: any check (the test reads the lines). Not installed:
 * a test tool, not part of herald-cli.
 *
 * Prints one line per event on stdout, flushed at once:
 *   open | subscribed <reply> | paused <pubs so far> | resumed |
 *   msg <message> (pubs and pushes: snapshot, ...) | disconnect <code> <err> |
 *   lost <last offset> | close <code> <err> <reason>
 * where <reply>/<message> is JSON: the message as the broker wrote it, except
 * a session's pubs, printed as {"op":"pub","offset":..,"data":..} (one it
 * recovered carries no raw message), and with --msgpack, where pubs are
 * printed as {"op":"pub","offset":..} and other messages as {"op":"?"}. Exit status: 0 after on_close; 2 bad
 * usage; 3 it could not start. */
#include "herald_client.h"
#include "herald_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct app {
    herald_ctx_t *ctx;
    herald_client_t *c;           /* without --session */
    herald_session_t *s;          /* with --session */
    int live;                     /* until on_close */
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
    int resumed, first_pause_done;
};

static void on_timer(uv_timer_t *t);

static void set_rcvbuf(uv_handle_t *h, void *arg)
{
    int size = *(int *)arg;

    if (h->type == UV_TCP) uv_recv_buffer_size(h, &size);
}

static void stop(struct app *a, const char *why, int err)
{
    fprintf(stderr, "herald-pause-sub: %s: %s\n", why, herald_strerror(err));
    if (a->s) herald_session_close(a->s);
    else herald_client_abort(a->c);
}

static void pause_now(struct app *a)
{
    int r = a->s ? herald_session_pause(a->s) : herald_client_pause(a->c);

    if (r) {
        stop(a, "pause", r);
        return;
    }
    a->first_pause_done = 1;
    printf("paused %ld\n", a->pubs);
    a->resumed = 0;
    a->paused_at = uv_hrtime();
    uv_timer_start(&a->timer, on_timer, 10, 10);
}

static void on_timer(uv_timer_t *t)
{
    struct app *a = t->data;
    uint64_t now = uv_hrtime();

    if (!a->live) return;
    if (a->resumed) {
        if (a->idle_exit_ms && now - a->last_msg >= (uint64_t)a->idle_exit_ms * 1000000ULL) {
            uv_timer_stop(t);
            if (a->s) herald_session_close(a->s);
            else herald_close(a->c, 1000, NULL);
        }
        return;
    }
    if ((a->resume_file && access(a->resume_file, F_OK) == 0) ||
        (a->resume_ms >= 0 && now - a->paused_at >= (uint64_t)a->resume_ms * 1000000ULL)) {
        int r = a->s ? herald_session_resume(a->s) : herald_client_resume(a->c);
        if (r) {
            stop(a, "resume", r);
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
        stop(a, "pause", HERALD_E_TIMEOUT);
    }
}

static int msgpack;

static void print_raw(const char *what, const herald_msg_t *m)
{
    if (!msgpack) printf("%s %.*s\n", what, (int)m->raw_len, (const char *)m->raw);
    else if (m->op == HERALD_OP_PUB) printf("%s {\"op\":\"pub\",\"offset\":%llu}\n", what, (unsigned long long)m->offset);
    else printf("%s {\"op\":\"?\"}\n", what);
}

static void got_pub(struct app *a)
{
    a->last_msg = uv_hrtime();
    ++a->pubs;
    if (a->pubs == a->pause_after ||
        (a->pause_every && a->pubs > a->pause_after && (a->pubs - a->pause_after) % a->pause_every == 0))
        pause_now(a);
}

static void opened(struct app *a)
{
    printf("open\n");
    if (a->rcvbuf) uv_walk(herald_ctx_loop(a->ctx), set_rcvbuf, &a->rcvbuf);
}

static void subscribed(struct app *a, const herald_msg_t *m)
{
    print_raw("subscribed", m);
    if (a->pause_after == 0 && !a->first_pause_done) pause_now(a);
}

/* ---- a client ---- */

static void c_subscribed(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    if (m->op != HERALD_OP_SUBSCRIBED) {
        print_raw("error", m);
        herald_close(c, 1000, NULL);
        return;
    }
    subscribed(arg, m);
}

static void c_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct app *a = ud;
    int r;

    (void)m;
    opened(a);
    if ((r = herald_subscribe(c, a->channel, strlen(a->channel), c_subscribed, a, NULL))) stop(a, "subscribe", r);
}

static void c_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    (void)c;
    print_raw("msg", m);
    got_pub(ud);
}

static void c_reply(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    struct app *a = ud;

    (void)c;
    print_raw("msg", m);
    a->last_msg = uv_hrtime();
}

static void ended(struct app *a, const herald_close_info_t *info)
{
    printf("close %d %d %s\n", info->code, info->err, info->reason);
    a->live = 0;
    uv_close((uv_handle_t *)&a->timer, NULL);
}

static void c_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    (void)c;
    ended(ud, info);
}

/* ---- a session ---- */

static void s_open(herald_session_t *s, const herald_msg_t *m, int reconnect, void *ud)
{
    (void)s;
    (void)m;
    (void)reconnect;
    opened(ud);
}

static void s_subscribed(herald_session_t *s, const herald_msg_t *reply, int resumed, void *ud)
{
    (void)s;
    (void)resumed;
    subscribed(ud, reply);
}

static void s_pub(herald_session_t *s, const herald_msg_t *m, void *ud)
{
    (void)s;
    printf("msg {\"op\":\"pub\",\"offset\":%llu,\"data\":%.*s}\n", (unsigned long long)m->offset,
           (int)m->data_len, (const char *)m->data);
    got_pub(ud);
}

static void s_reply(herald_session_t *s, const herald_msg_t *m, void *ud)
{
    struct app *a = ud;

    (void)s;
    print_raw("msg", m);
    a->last_msg = uv_hrtime();
}

static void s_disconnect(herald_session_t *s, const herald_close_info_t *info, unsigned retry_ms, void *ud)
{
    (void)s;
    (void)retry_ms;
    (void)ud;
    printf("disconnect %d %d\n", info->code, info->err);
}

static void s_lost(herald_session_t *s, const char *channel, size_t chlen, uint64_t last, const herald_msg_t *reply,
                   void *ud)
{
    (void)s;
    (void)channel;
    (void)chlen;
    (void)reply;
    (void)ud;
    printf("lost %llu\n", (unsigned long long)last);
}

static void s_close(herald_session_t *s, const herald_close_info_t *info, void *ud)
{
    (void)s;
    ended(ud, info);
}

static int usage(void)
{
    fprintf(stderr, "usage: herald-pause-sub URL CHANNEL [--session] [--msgpack] [--pause-after N] [--pause-every N]\n"
                    "       [--resume-file PATH] [--resume-ms MS] [--idle-exit-ms MS] [--max-wait-ms MS]\n"
                    "       [--rcvbuf BYTES] [--cafile PEM]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct app a = { .resume_ms = -1, .pause_after = 0, .max_wait_ms = 60000 };
    herald_callbacks_t cb = { .on_open = c_open, .on_pub = c_pub, .on_reply = c_reply, .on_close = c_close };
    herald_session_callbacks_t scb = { .on_open = s_open, .on_disconnect = s_disconnect,
                                       .on_subscribed = s_subscribed, .on_lost = s_lost, .on_pub = s_pub,
                                       .on_reply = s_reply, .on_close = s_close };
    herald_session_opts_t so = { .backoff_min_ms = 100, .backoff_max_ms = 1000, .max_attempts = 20 };
    herald_opts_t co = { 0 };
    herald_tls_opts_t tls = { 0 };
    uv_loop_t *loop = uv_default_loop();
    herald_url_t url;
    int r, session = 0;

    if (argc < 3) return usage();
    a.channel = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(o, "--session")) {
            session = 1;
            continue;
        }
        if (!strcmp(o, "--msgpack")) {
            msgpack = 1;
            continue;
        }
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
    if (session) {
        so.client.encoding = msgpack ? HERALD_MSGPACK : HERALD_JSON;
        r = herald_session_new(a.ctx, &url, &so, &scb, &a, &a.s);
        if (!r) r = herald_session_subscribe(a.s, a.channel, strlen(a.channel), NULL, 0, 0);
    } else {
        co.encoding = msgpack ? HERALD_MSGPACK : HERALD_JSON;
        r = herald_client_new(a.ctx, &url, &co, &cb, &a, &a.c);
    }
    if (r) {
        fprintf(stderr, "herald-pause-sub: %s\n", herald_strerror(r));
        return 3;
    }
    a.live = 1;
    uv_run(loop, UV_RUN_DEFAULT);        /* until on_close */
    herald_ctx_free(a.ctx);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
