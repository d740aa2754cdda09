/* clients/cli/pub.c - `herald-cli pub CHANNEL [DATA]`: publish DATA, or each
 * line of stdin, and wait for every acknowledgement.
 *
 * Owns: turning an argument or a line into one encoded value (data_encode,
 * shared with state.c through pub.h) and the two ways to publish: over
 * WebSocket (the connection's token decides what is allowed) or, with an API
 * key, over REST (the backend's way; the only way into `publish = server`
 * namespaces). Stdin is read as it arrives, so `tail -f log | herald-cli pub
 * ch` publishes each line at once; at most PUB_WINDOW publications wait for
 * their acknowledgement at a time. The first refusal ends the run (exit 1):
 * later lines are not published. (Over REST, rest.c first sends again what
 * the broker shed or rate-limited, one line at a time, so order holds.) */
#include "cli.h"
#include "out.h"
#include "pub.h"
#include "rest.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PUB_WINDOW 256

static const char help[] =
    "usage: herald-cli pub CHANNEL [DATA] [--string]\n"
    "\n"
    "Publish DATA to CHANNEL and wait for the broker's acknowledgement. Without DATA (or with\n"
    "DATA '-'), publish each non-empty line of stdin, in order, as it arrives.\n"
    "DATA is a JSON value ('{\"text\":\"hi\"}', 42, true, '\"quoted\"'); text that does not look\n"
    "like JSON is published as a string (hello -> \"hello\").\n"
    "\n"
    "  --string     publish DATA (or each line) as a string, whatever it looks like\n"
    "\n"
    "Over WebSocket (with --token if the broker needs one), or over REST when an API key is\n"
    "given (--api-key or $HERALD_API_KEY). Prints 'CHANNEL #OFFSET' per publication, or the\n"
    "broker's reply with --json. Exit 0 when all were acknowledged, 1 at the first refusal.\n";

static int looks_like_json(const char *text)
{
    const char *p = text + strspn(text, " \t\r\n");

    return (*p && strchr("{[\"-0123456789", *p)) || !strcmp(p, "true") || !strcmp(p, "false") ||
           !strcmp(p, "null");
}

int data_encode(const char *text, int as_string, char **out, char *why, size_t whylen)
{
    json_t *v;
    json_error_t e;

    *out = NULL;
    if (!as_string && looks_like_json(text)) {
        if (!(v = json_loads(text, JSON_DECODE_ANY, &e))) {
            snprintf(why, whylen, "not valid JSON (%s); use --string to publish it as a string", e.text);
            return -1;
        }
        json_decref(v);
        /* The text as given, not jansson's re-encoding: 0.1 stays 0.1 and big
         * integers reach the broker, which has the last word (error 101). */
        *out = strdup(text);
    } else {
        v = json_string(text);
        if (!v) {
            snprintf(why, whylen, "not valid UTF-8");
            return -1;
        }
        *out = json_dumps(v, JSON_ENCODE_ANY);
        json_decref(v);
    }
    if (!*out) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

struct pub {
    const struct cli *g;
    const char *channel;
    const char *data;             /* the DATA argument, or NULL for stdin */
    int as_string;
    /* stdin over WebSocket: a pipe or terminal is polled (a read in the
     * thread pool could not be cancelled at a refusal, and would hold the
     * loop until the next line); a file is read in the thread pool. */
    struct cli_ws *w;
    uv_poll_t poll;
    int polling;                  /* poll is initialised */
    uv_fs_t req;
    char rbuf[65536];
    char *line;                   /* a line cut by the end of a read */
    size_t llen, lcap;
    int reading, eof;
    unsigned inflight;
    unsigned long lineno;
};

static void print_ack(const struct cli *g, const char *channel, uint64_t offset, const void *raw, size_t rawlen)
{
    if (g->json) out_line(raw, rawlen);
    else {
        printf("%s #%llu\n", channel, (unsigned long long)offset);
        out_flush();
    }
}

/* ---- WebSocket ---- */

static void read_more(struct pub *p);

static void maybe_done(struct pub *p)
{
    if (p->eof && !p->inflight) cli_ws_done(p->w, CLI_OK);
}

static void on_ack(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    struct pub *p = arg;

    (void)c;
    p->inflight--;
    cli_ws_waiting(p->w, p->inflight > 0);       /* progress: the broker answers */
    if (cli_ws_reply_error(p->w, m)) return;
    print_ack(p->g, p->channel, m->offset, m->raw, m->raw_len);
    if (!p->eof && !p->reading && p->inflight < PUB_WINDOW / 2) read_more(p);
    maybe_done(p);
}

/* Return: 0, or -1 after ending the run. */
static int publish_text(struct pub *p, const char *text)
{
    char *enc, why[256];
    int r;

    if (data_encode(text, p->as_string, &enc, why, sizeof why)) {
        if (p->data) cli_err(p->g, "DATA: %s", why);
        else cli_err(p->g, "stdin line %lu: %s", p->lineno, why);
        cli_ws_done(p->w, CLI_E_USAGE);
        return -1;
    }
    r = herald_publish(cli_ws_client(p->w), p->channel, strlen(p->channel), enc, strlen(enc), on_ack, p, NULL);
    free(enc);
    if (cli_ws_check(p->w, r)) return -1;
    if (!p->inflight++) cli_ws_waiting(p->w, 1);
    return 0;
}

static int take_line(struct pub *p)
{
    p->lineno++;
    while (p->llen && (p->line[p->llen - 1] == '\r')) p->llen--;
    p->line[p->llen] = '\0';
    if (p->llen && publish_text(p, p->line)) return -1;
    p->llen = 0;
    return 0;
}

static void on_bytes(struct pub *p, ssize_t n)
{
    p->reading = 0;
    if (!cli_ws_client(p->w)) return;           /* the run already ended */
    if (n < 0) {
        cli_err(p->g, "reading stdin: %s", uv_strerror((int)n));
        cli_ws_done(p->w, CLI_E_USAGE);
        return;
    }
    if (n == 0) {
        p->eof = 1;
        if (p->llen && take_line(p)) return;
        maybe_done(p);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (p->rbuf[i] == '\n') {
            if (take_line(p)) return;
            continue;
        }
        if (p->llen + 2 > p->lcap) {
            size_t nc = p->lcap ? p->lcap * 2 : 4096;
            char *nl = realloc(p->line, nc);
            if (!nl) {
                cli_err(p->g, "out of memory");
                cli_ws_done(p->w, CLI_E_CONN);
                return;
            }
            p->line = nl;
            p->lcap = nc;
        }
        p->line[p->llen++] = p->rbuf[i];
    }
    if (p->inflight < PUB_WINDOW) read_more(p);
}

static void on_fs_read(uv_fs_t *req)
{
    ssize_t n = req->result;

    uv_fs_req_cleanup(req);
    on_bytes(req->data, n);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pub *p = h->data;
    ssize_t n;

    (void)events;
    uv_poll_stop(h);
    if (status < 0) {
        on_bytes(p, status);
        return;
    }
    n = read(0, p->rbuf, sizeof p->rbuf);
    on_bytes(p, n < 0 ? -errno : n);
}

static void read_more(struct pub *p)
{
    uv_buf_t b = uv_buf_init(p->rbuf, sizeof p->rbuf);

    p->reading = 1;
    if (!p->polling && uv_poll_init(cli_ws_loop(p->w), &p->poll, 0) == 0) {
        p->polling = 1;
        p->poll.data = p;
    }
    if (p->polling) {
        uv_poll_start(&p->poll, UV_READABLE | UV_DISCONNECT, on_poll);
        return;
    }
    p->req.data = p;
    if (uv_fs_read(cli_ws_loop(p->w), &p->req, 0, &b, 1, -1, on_fs_read)) {
        p->reading = 0;
        cli_err(p->g, "cannot read stdin");
        cli_ws_done(p->w, CLI_E_USAGE);
    }
}

static void ws_open(struct cli_ws *w)
{
    struct pub *p = cli_ws_ud(w);

    p->w = w;
    cli_ws_waiting(w, 0);
    if (p->data) {
        p->eof = 1;
        publish_text(p, p->data);
        return;
    }
    read_more(p);
}

/* ---- REST ---- */

static int rest_publish(struct pub *p, const char *text, unsigned long lineno)
{
    char *enc, *body = NULL, why[256], *chj;
    json_t *ch = json_string(p->channel), *j;
    struct rest_resp resp;
    int r;

    if (data_encode(text, p->as_string, &enc, why, sizeof why)) {
        if (lineno) cli_err(p->g, "stdin line %lu: %s", lineno, why);
        else cli_err(p->g, "DATA: %s", why);
        json_decref(ch);
        return CLI_E_USAGE;
    }
    chj = json_dumps(ch, JSON_ENCODE_ANY);
    json_decref(ch);
    if (!chj || asprintf(&body, "{\"channel\":%s,\"data\":%s}", chj, enc) < 0) body = NULL;
    free(chj);
    free(enc);
    if (!body) {
        cli_err(p->g, "out of memory");
        return CLI_E_CONN;
    }
    r = rest_request(p->g, "POST", "/api/publish", body, &resp);
    free(body);
    if (r) return CLI_E_CONN;
    if ((r = rest_check(p->g, &resp)) == CLI_OK) {
        j = json_loadb(resp.body, resp.len, 0, NULL);
        print_ack(p->g, p->channel, (uint64_t)json_integer_value(json_object_get(j, "offset")), resp.body,
                  resp.len);
        json_decref(j);
    }
    rest_resp_free(&resp);
    return r;
}

static int rest_run(struct pub *p)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0;
    int r = CLI_OK;

    if (p->data) return rest_publish(p, p->data, 0);
    while (r == CLI_OK && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n) r = rest_publish(p, line, lineno);
    }
    free(line);
    return r;
}

int cmd_pub(struct cli *g, int argc, char **argv)
{
    static const struct cli_ws_ops ops = { .on_open = ws_open };
    struct pub p = { .g = g };
    const char *pos[2];
    int npos = 0, r;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); return CLI_OK; }
        if (cli_flag(argv, i, "--string")) { p.as_string = 1; continue; }
        if (cli_flag(argv, i, "--")) {
            while (++i < argc && npos < 2) pos[npos++] = argv[i];
            if (i < argc) return cli_usage_err(g, "pub", "unexpected argument '%s'", argv[i]);
            break;
        }
        if (argv[i][0] == '-' && argv[i][1]) return cli_usage_err(g, "pub", "unknown option '%s'", argv[i]);
        if (npos == 2) return cli_usage_err(g, "pub", "unexpected argument '%s' (quote DATA)", argv[i]);
        pos[npos++] = argv[i];
    }
    if (npos < 1) return cli_usage_err(g, "pub", "missing CHANNEL");
    p.channel = pos[0];
    p.data = npos == 2 && strcmp(pos[1], "-") ? pos[1] : NULL;
    if (!*p.channel) return cli_usage_err(g, "pub", "CHANNEL is empty");
    if (g->api_key) return rest_run(&p);
    r = cli_ws_run(g, &ops, &p, 1);     /* the connect; then only while acks are due */
    free(p.line);
    return r;
}
