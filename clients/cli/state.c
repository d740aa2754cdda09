/* clients/cli/state.c - `herald-cli state get|set|incr|del|reset CHANNEL ...`:
 * read a state channel's snapshot, or apply one operation to it.
 *
 * Reads subscribe over WebSocket and print the snapshot the reply carries
 * (then close): the one way a viewer's token can read state. Writes go over
 * WebSocket (the `state` op), or over REST when an API key is given, since
 * state namespaces are usually `publish = server`. */
#include "cli.h"
#include "out.h"
#include "pub.h"
#include "rest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: herald-cli state get CHANNEL\n"
    "       herald-cli state set CHANNEL KEY VALUE [--string]\n"
    "       herald-cli state incr CHANNEL KEY [BY]\n"
    "       herald-cli state del CHANNEL KEY\n"
    "       herald-cli state reset CHANNEL\n"
    "\n"
    "Read or change a state channel (a namespace with state = on). `get` prints every key as\n"
    "'KEY = VALUE (vVERSION)' (--json: the subscribe reply with its \"state\"). The others apply\n"
    "one operation, all or nothing, and print the changes (--json: the broker's reply).\n"
    "VALUE is JSON, or a string when it does not look like JSON (as in `pub`); BY is an integer\n"
    "(default 1). Writes go over WebSocket, or over REST when an API key is given.\n"
    "Exit 1 if the broker refuses (116: not a state namespace; 118: incr of a non-integer).\n";

static void print_get(const struct cli *g, const herald_msg_t *m)
{
    json_t *j, *st, *e;
    const char *k;

    if (g->json) {
        out_raw(m);
        return;
    }
    if (!(j = out_parse(m))) return;
    st = json_object_get(j, "state");
    json_object_foreach(st, k, e) {
        char *v = json_dumps(json_object_get(e, "value"), JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%s = %s (v%lld)\n", k, v ? v : "null", (long long)json_integer_value(json_object_get(e, "version")));
        free(v);
    }
    fprintf(stderr, "(%zu keys at offset %lld)\n", json_object_size(st),
            (long long)json_integer_value(json_object_get(j, "offset")));
    json_decref(j);
}

static void print_update(const struct cli *g, const herald_msg_t *m)
{
    out_reply(g->json, m->raw, m->raw_len);
}

int cmd_state(struct cli *g, int argc, char **argv)
{
    const char *pos[5], *verb;
    int npos = 0, as_string = 0, r;
    char *op = NULL, *value = NULL, *body = NULL, why[256];
    json_t *key = NULL;
    char *keyj = NULL;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); return CLI_OK; }
        if (cli_flag(argv, i, "--string")) { as_string = 1; continue; }
        if (argv[i][0] == '-' && argv[i][1] && !(npos >= 3 && argv[i][1] >= '0' && argv[i][1] <= '9'))
            return cli_usage_err(g, "state", "unknown option '%s'", argv[i]);
        if (npos == 5) return cli_usage_err(g, "state", "unexpected argument '%s'", argv[i]);
        pos[npos++] = argv[i];
    }
    if (npos < 2) return cli_usage_err(g, "state", npos ? "missing CHANNEL" : "missing get, set, incr, del or reset");
    verb = pos[0];
    if (!strcmp(verb, "get")) {
        if (npos != 2) return cli_usage_err(g, "state", "get takes CHANNEL only");
        return cli_request(g, "subscribe", pos[1], NULL, print_get);
    }
    if (npos >= 3) {
        if (!(key = json_string(pos[2]))) return cli_usage_err(g, "state", "KEY is not UTF-8");
        keyj = json_dumps(key, JSON_ENCODE_ANY);
        json_decref(key);
    }
    if (!strcmp(verb, "set")) {
        if (npos != 4) { r = cli_usage_err(g, "state", "set takes CHANNEL KEY VALUE"); goto out; }
        if (data_encode(pos[3], as_string, &value, why, sizeof why)) {
            r = cli_usage_err(g, "state", "VALUE: %s", why);
            goto out;
        }
        r = asprintf(&op, "{\"op\":\"set\",\"key\":%s,\"value\":%s}", keyj, value);
    } else if (!strcmp(verb, "incr")) {
        char *end;
        long long by = 1;
        if (npos != 3 && npos != 4) { r = cli_usage_err(g, "state", "incr takes CHANNEL KEY [BY]"); goto out; }
        if (npos == 4) {
            by = strtoll(pos[3], &end, 10);
            if (end == pos[3] || *end) { r = cli_usage_err(g, "state", "BY %s: expected an integer", pos[3]); goto out; }
        }
        r = asprintf(&op, "{\"op\":\"incr\",\"key\":%s,\"by\":%lld}", keyj, by);
    } else if (!strcmp(verb, "del")) {
        if (npos != 3) { r = cli_usage_err(g, "state", "del takes CHANNEL KEY"); goto out; }
        r = asprintf(&op, "{\"op\":\"delete\",\"key\":%s}", keyj);
    } else if (!strcmp(verb, "reset")) {
        if (npos != 2) { r = cli_usage_err(g, "state", "reset takes CHANNEL only"); goto out; }
        r = asprintf(&op, "{\"op\":\"reset\"}");
    } else {
        r = cli_usage_err(g, "state", "unknown action '%s' (get, set, incr, del or reset)", verb);
        goto out;
    }
    if (r < 0 || asprintf(&body, "{\"ops\":[%s]}", op) < 0) {
        op = body = NULL;
        cli_err(g, "out of memory");
        r = CLI_E_CONN;
        goto out;
    }
    if (g->api_key) {
        char path[1200] = "/api/channels/";
        struct rest_resp resp;
        if (rest_path_escape(path, sizeof path - 8, pos[1])) { r = cli_usage_err(g, "state", "CHANNEL too long"); goto out; }
        strcat(path, "/state");
        if (rest_request(g, "POST", path, body, &resp)) { r = CLI_E_CONN; goto out; }
        if ((r = rest_check(g, &resp)) == CLI_OK) out_reply(g->json, resp.body, resp.len);
        rest_resp_free(&resp);
    } else {
        r = cli_request(g, "state", pos[1], body, print_update);
    }
out:
    free(keyj);
    free(value);
    free(op);
    free(body);
    return r;
}
