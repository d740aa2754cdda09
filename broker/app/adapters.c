/* broker/app/adapters.c - see adapters.h. */
#include "app/adapters.h"
#include "chname.h"
#include "msg.h"

#include <stdio.h>
#include <string.h>

/* Team names become part of a key: letters, digits, '_' and '-' only. */
static int team_ok(const char *t, size_t len)
{
    if (len == 0 || len > 64) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
              t[i] == '_' || t[i] == '-'))
            return 0;
    return 1;
}

int scoreboard_channel(const char *game, size_t glen, char *out, size_t len)
{
    int n = snprintf(out, len, SCOREBOARD_NS ":%.*s", (int)glen, game);
    if (n < 0 || (size_t)n >= len || memchr(game, '/', glen) || !chname_valid(out, (size_t)n, NULL)) return -1;
    return 0;
}

json_t *scoreboard_ops(const char *action, const json_t *body, char *reason)
{
    if (!strcmp(action, "score")) {
        json_t *team = json_object_get(body, "team"), *points = json_object_get(body, "points");
        char key[80];
        if (!json_is_string(team) || !team_ok(json_string_value(team), json_string_length(team))) {
            snprintf(reason, PROTO_REASON_MAX, "\"team\" must be a team id: 1-64 letters, digits, '_' or '-'");
            return NULL;
        }
        if (!json_is_integer(points) || json_integer_value(points) < -1000 || json_integer_value(points) > 1000) {
            snprintf(reason, PROTO_REASON_MAX, "\"points\" must be an integer from -1000 to 1000");
            return NULL;
        }
        snprintf(key, sizeof key, "score:%s", json_string_value(team));
        return json_pack("[{s:s,s:s,s:I}]", "op", "incr", "key", key, "by", (json_int_t)json_integer_value(points));
    }
    if (!strcmp(action, "teams")) {
        const char *side;
        json_t *name;
        if (!json_is_object(body) || json_object_size(body) == 0 || json_object_size(body) > 16) {
            snprintf(reason, PROTO_REASON_MAX, "the body must map team ids to names, e.g. {\"home\":\"Lakers\"}");
            return NULL;
        }
        json_object_foreach((json_t *)body, side, name) {
            if (!team_ok(side, strlen(side)) || !json_is_string(name) || json_string_length(name) > 128) {
                snprintf(reason, PROTO_REASON_MAX, "team ids are 1-64 letters, digits, '_' or '-'; names strings "
                         "of at most 128 bytes");
                return NULL;
            }
        }
        return json_pack("[{s:s,s:s,s:O}]", "op", "set", "key", "teams", "value", body);
    }
    if (!strcmp(action, "reset")) return json_pack("[{s:s}]", "op", "reset");
    snprintf(reason, PROTO_REASON_MAX, "no such scoreboard action (score, teams, reset)");
    return NULL;
}
