/* clients/cli/seats.c - `herald-cli seats ACTION CHANNEL ...`: act on a seat
 * map (docs/rest-api.md, seat maps).
 *
 * Over WebSocket the `seats` op acts for the token's user; over REST (an API
 * key given) the backend acts for --user, through /api/events/{event}/..., so
 * CHANNEL must then be seats:EVENT. */
#include "cli.h"
#include "out.h"
#include "rest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: herald-cli seats hold CHANNEL SEAT... [--ttl SECONDS]\n"
    "       herald-cli seats confirm|release CHANNEL SEAT...\n"
    "       herald-cli seats waitlist|waitlist-leave CHANNEL --section NAME\n"
    "       (each with [--user ID] when an API key is given)\n"
    "\n"
    "Act on the seat map CHANNEL (seats:EVENT). `hold` holds every SEAT or none, for --ttl\n"
    "seconds (default 120). Over WebSocket the token's user acts (anonymous connections are\n"
    "refused); with an API key the backend acts over REST for --user, which is then required.\n"
    "Prints the reply's fields (--json: the reply). Exit 1 if the broker refuses (119\n"
    "seats_taken, 120 unknown_seat, 121 not_held: the reply names the seats).\n";

static void print(const struct cli *g, const herald_msg_t *m)
{
    out_reply(g->json, m->raw, m->raw_len);
}

int cmd_seats(struct cli *g, int argc, char **argv)
{
    const char *pos[2] = { NULL, NULL }, *ttl = NULL, *section = NULL, *user = NULL, *action;
    json_t *body = json_object(), *seats = json_array();
    char *text = NULL;
    int npos = 0, r;
    uint64_t t;

    for (int i = 1; i < argc;) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); r = CLI_OK; goto out; }
        if ((r = cli_take(g, argc, argv, &i, "--ttl", &ttl)) ||
            (r = cli_take(g, argc, argv, &i, "--section", &section)) ||
            (r = cli_take(g, argc, argv, &i, "--user", &user))) {
            if (r < 0) { r = CLI_E_USAGE; goto out; }
            continue;
        }
        if (argv[i][0] == '-') { r = cli_usage_err(g, "seats", "unknown option '%s'", argv[i]); goto out; }
        if (npos < 2) pos[npos++] = argv[i];
        else json_array_append_new(seats, json_string(argv[i]));
        i++;
    }
    if (npos < 2) { r = cli_usage_err(g, "seats", npos ? "missing CHANNEL" : "missing ACTION"); goto out; }
    action = pos[0];
    if (!strcmp(action, "hold") || !strcmp(action, "confirm") || !strcmp(action, "release")) {
        if (!json_array_size(seats)) { r = cli_usage_err(g, "seats", "%s needs at least one SEAT", action); goto out; }
        if (section) { r = cli_usage_err(g, "seats", "--section is for waitlist"); goto out; }
        json_object_set(body, "seats", seats);
        if (!strcmp(action, "hold")) {
            if (ttl && cli_u64(ttl, 1, 86400 * 365, &t)) { r = cli_usage_err(g, "seats", "--ttl %s: expected seconds", ttl); goto out; }
            json_object_set_new(body, "ttl", json_integer(ttl ? (json_int_t)t : 120));
        } else if (ttl) {
            r = cli_usage_err(g, "seats", "--ttl is for hold");
            goto out;
        }
    } else if (!strcmp(action, "waitlist") || !strcmp(action, "waitlist-leave")) {
        if (!section) { r = cli_usage_err(g, "seats", "%s needs --section", action); goto out; }
        if (json_array_size(seats) || ttl) { r = cli_usage_err(g, "seats", "%s takes --section only", action); goto out; }
        json_object_set_new(body, "section", json_string(section));
    } else {
        r = cli_usage_err(g, "seats", "unknown action '%s' (hold, confirm, release, waitlist, waitlist-leave)", action);
        goto out;
    }
    if (g->api_key) {
        char path[1200] = "/api/events/";
        struct rest_resp resp;
        if (strncmp(pos[1], "seats:", 6) || !pos[1][6]) {
            r = cli_usage_err(g, "seats", "over REST, CHANNEL must be seats:EVENT");
            goto out;
        }
        if (!user) { r = cli_usage_err(g, "seats", "over REST (an API key is given), --user is required"); goto out; }
        json_object_set_new(body, "user", json_string(user));
        if (rest_path_escape(path, sizeof path - 32, pos[1] + 6)) { r = cli_usage_err(g, "seats", "CHANNEL too long"); goto out; }
        strcat(path, !strcmp(action, "waitlist-leave") ? "/waitlist/leave" : "/");
        if (strcmp(action, "waitlist-leave")) strcat(path, action);
        if (!(text = json_dumps(body, JSON_COMPACT))) { cli_err(g, "out of memory"); r = CLI_E_CONN; goto out; }
        if (rest_request(g, "POST", path, text, &resp)) { r = CLI_E_CONN; goto out; }
        if ((r = rest_check(g, &resp)) == CLI_OK) out_reply(g->json, resp.body, resp.len);
        rest_resp_free(&resp);
    } else {
        if (user) { r = cli_usage_err(g, "seats", "--user needs an API key (over WebSocket the token's user acts)"); goto out; }
        json_object_set_new(body, "action", json_string(!strcmp(action, "waitlist-leave") ? "waitlist_leave" : action));
        if (!(text = json_dumps(body, JSON_COMPACT))) { cli_err(g, "out of memory"); r = CLI_E_CONN; goto out; }
        r = cli_request(g, "seats", pos[1], text, print);
    }
out:
    free(text);
    json_decref(seats);
    json_decref(body);
    return r;
}
