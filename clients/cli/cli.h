/* clients/cli/cli.h - what herald-cli's subcommands share.
 *
 * Owns: the global options (struct cli), the exit codes, argument helpers and
 * the one-connection WebSocket runner (cli_ws_*, ws.c) that every request
 * subcommand is built on. Each subcommand lives in its own file and exports
 * one `cmd_<name>(cli, argc, argv)` that returns an exit code; main.c picks
 * it. Does not own: output formatting (out.h), HTTP (rest.h), tokens
 * (token.h). Everything runs on the main thread. */
#ifndef HERALD_CLI_H
#define HERALD_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "herald_client.h"

/* Exit codes (docs/cli.md). */
enum cli_exit {
    CLI_OK = 0,          /* done */
    CLI_E_REFUSED = 1,   /* the broker refused: an error reply, an HTTP error status, connect refused */
    CLI_E_USAGE = 2,     /* bad usage or bad input (check-config: the file is invalid) */
    CLI_E_CONN = 3,      /* the broker could not be reached, or the connection failed or timed out */
};

/* Global options: flags win over the environment (HERALD_URL, HERALD_TOKEN,
 * HERALD_API_KEY), which wins over the defaults. Strings are borrowed from
 * argv/environ. */
struct cli {
    const char *prog;             /* "herald-cli" */
    const char *url;              /* as given: ws[s]:// or http[s]:// */
    char ws_url[1024];            /* derived: ws[s]://host:port/path (path /ws by default) */
    char http_base[1024];         /* derived: http[s]://host:port */
    const char *token;            /* --token: a JWT for connect; NULL for anonymous */
    const char *api_key;          /* --api-key: REST bearer key; writes then go over REST */
    const char *cafile;           /* --cafile: CA bundle for wss:// and https:// */
    int insecure;                 /* --insecure: do not verify the server certificate */
    const char *tls_name;         /* --tls-name: the name to verify (and send as SNI) instead of the URL's host */
    int json;                     /* --json: JSON lines instead of human-readable text */
    unsigned timeout_ms;          /* --timeout: each request and the connection (default 10 s) */
};

/* cli_err() - print "herald-cli: " and the message to stderr. */
void cli_err(const struct cli *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_usage_err() - cli_err(), a hint to run `herald-cli CMD --help`; returns CLI_E_USAGE. */
int cli_usage_err(const struct cli *g, const char *cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* cli_take() - if argv[*i] is option @name ("--limit"), as "--limit V" or
 * "--limit=V", set *@val to V, advance *@i past it and return 1. Return 0 if
 * it is another argument; -1 if the option has no value (after printing why).
 * For flags without a value use cli_flag(). */
int cli_take(const struct cli *g, int argc, char **argv, int *i, const char *name, const char **val);

/* cli_flag() - 1 if argv[i] is exactly @name. */
int cli_flag(char **argv, int i, const char *name);

/* cli_is_help() - 1 if argv[i] is -h or --help. */
int cli_is_help(char **argv, int i);

/* cli_u64() - parse a decimal in [@min, @max]. Return 0, or -1. */
int cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* cli_duration_s() - parse seconds, or a number with a suffix s, m, h or d
 * ("90", "15m", "1h"). Return 0, or -1. */
int cli_duration_s(const char *s, uint64_t *out);

/* ---- one WebSocket connection (ws.c) ---- */

struct cli_ws;

/* What a subcommand does with its connection. on_open sends its requests;
 * the others may be NULL. The subcommand ends the run with cli_ws_done(). */
struct cli_ws_ops {
    void (*on_open)(struct cli_ws *w);
    void (*on_pub)(struct cli_ws *w, const herald_msg_t *m);
    void (*on_push)(struct cli_ws *w, const herald_msg_t *m);   /* every other push or unmatched reply */
};

/* cli_connect_prep() - resolve g->ws_url into @url (with --tls-name) and give
 * @ctx the TLS settings (--cafile, --insecure).
 * Return: CLI_OK, or an exit code after printing why. */
int cli_connect_prep(const struct cli *g, herald_ctx_t *ctx, herald_url_t *url);

/* cli_ws_run() - connect to g->ws_url (JSON encoding, g->token), call
 * @ops, and run the loop until cli_ws_done() or a failure. SIGINT and SIGTERM
 * end the run with CLI_OK after a clean close. With @idle_timeout set, the
 * run fails with CLI_E_CONN after g->timeout_ms without cli_ws_done().
 * Return: the exit code given to cli_ws_done(), or CLI_E_CONN / CLI_E_REFUSED
 * (after printing why) when the connection fails or is refused. */
int cli_ws_run(const struct cli *g, const struct cli_ws_ops *ops, void *ud, int idle_timeout);

/* cli_ws_waiting() - @on 1: the command waits for the broker from now on, so
 * fail the run (CLI_E_CONN) after g->timeout_ms without another call; @on 0:
 * it waits for something else (stdin), no timeout. */
void cli_ws_waiting(struct cli_ws *w, int on);

/* cli_ws_done() - close the connection cleanly and end the run with @code.
 * The first call wins. */
void cli_ws_done(struct cli_ws *w, int code);

/* Accessors for a run's state. */
herald_client_t *cli_ws_client(struct cli_ws *w);
void *cli_ws_ud(struct cli_ws *w);
const struct cli *cli_ws_cli(struct cli_ws *w);
uv_loop_t *cli_ws_loop(struct cli_ws *w);

/* cli_ws_check() - after a request call returned @r: 0 if it is 0, else
 * print why, end the run with CLI_E_CONN and return -1. */
int cli_ws_check(struct cli_ws *w, int r);

/* cli_ws_reply_error() - if @m is an error reply: print it ("error 104
 * bad_channel: reason"), end the run with CLI_E_REFUSED and return 1; else 0. */
int cli_ws_reply_error(struct cli_ws *w, const herald_msg_t *m);

/* cli_request() - connect, send one request {"op":@op,"channel":@channel,
 * ...@fields} (@fields: NULL or a JSON object text), and hand its reply to
 * @print (not called for an error reply, which is printed and exits 1).
 * Return: the exit code: CLI_OK after @print, or as cli_ws_run(). */
int cli_request(const struct cli *g, const char *op, const char *channel, const char *fields,
                void (*print)(const struct cli *g, const herald_msg_t *reply));

/* ---- subcommands ---- */
int cmd_pub(struct cli *g, int argc, char **argv);
int cmd_sub(struct cli *g, int argc, char **argv);
int cmd_history(struct cli *g, int argc, char **argv);
int cmd_presence(struct cli *g, int argc, char **argv);
int cmd_state(struct cli *g, int argc, char **argv);
int cmd_seats(struct cli *g, int argc, char **argv);
int cmd_stats(struct cli *g, int argc, char **argv);
int cmd_token(struct cli *g, int argc, char **argv);
int cmd_check_config(struct cli *g, int argc, char **argv);

#endif
