/* broker/app/carts.c - see carts.h. */
#include "app/carts.h"
#include "app/fields.h"
#include "auth/auth.h"
#include "core/publish.h"
#include "chname.h"
#include "clock.h"
#include "herald.h"
#include "shop.h"

#include <stdio.h>
#include <string.h>

/* The event types, and the fields each takes (beyond "type"). */
enum { F_SKU = 1 << 0, F_QUANTITY = 1 << 1, F_PRICE = 1 << 2, F_ORDER = 1 << 3 };

static const struct {
    const char *type;
    unsigned required, optional;
} types[] = {
    { "item_added", F_SKU | F_QUANTITY, F_PRICE },
    { "item_updated", F_SKU | F_QUANTITY, F_PRICE },
    { "item_removed", F_SKU, 0 },
    { "cleared", 0, 0 },
    { "checked_out", 0, F_ORDER },
};

static const struct {
    const char *name;
    unsigned flag;
} fields[] = {
    { "sku", F_SKU }, { "quantity", F_QUANTITY }, { "price", F_PRICE }, { "order", F_ORDER },
};

/* Whether @v is an integer from @min to @max. */
static int int_in(const json_t *v, json_int_t min, json_int_t max)
{
    return json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max;
}

int carts_channel(const char *user, char *out, size_t len, char *reason)
{
    const char *why;
    int n;

    if (!auth_user_valid(user, strlen(user)))
        return field_bad(reason, "the user in the path must be a user id, as in a token's \"sub\": 1 to 128 bytes "
                           "without ',' or '#'");
    n = snprintf(out, len, "user:%s", user);
    if (n < 0 || (size_t)n >= len || !chname_valid(out, (size_t)n, &why))
        return field_bad(reason, "user:{user} would not be a valid channel name: no spaces or control characters");
    return 0;
}

/* Checks @body's fields against its type's (index @t). Return: 0 or
 * PROTO_E_BAD_FIELD with @reason. */
static int check_fields(const json_t *body, size_t t, char *reason)
{
    unsigned allowed = types[t].required | types[t].optional, seen = 0;
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)body, k, v) {
        unsigned flag = 0;
        if (!strcmp(k, "type")) continue;
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            if (!strcmp(k, fields[i].name)) flag = fields[i].flag;
        if (!(flag & allowed)) {
            snprintf(reason, PROTO_REASON_MAX, "a %s event takes no field \"%.64s\"", types[t].type, k);
            return PROTO_E_BAD_FIELD;
        }
        seen |= flag;
        if (flag == F_SKU && !field_id_ok(json_string_value(v), json_string_length(v), SHOP_ID_MAX))
            return field_bad(reason, "field \"sku\" must be 1-64 letters, digits, '_', '-' or '.'");
        if (flag == F_ORDER && !field_id_ok(json_string_value(v), json_string_length(v), SHOP_ID_MAX))
            return field_bad(reason, "field \"order\" must be an order id: 1-64 letters, digits, '_', '-' or '.'");
        if (flag == F_QUANTITY && !int_in(v, 1, CART_QUANTITY_MAX)) {
            snprintf(reason, PROTO_REASON_MAX, "field \"quantity\" must be an integer from 1 to %d",
                     CART_QUANTITY_MAX);
            return PROTO_E_BAD_FIELD;
        }
        if (flag == F_PRICE && !int_in(v, 0, (json_int_t)1 << 53))
            return field_bad(reason, "field \"price\" must be an integer >= 0: the unit price in minor units (cents)");
    }
    if ((seen & types[t].required) != types[t].required) {
        snprintf(reason, PROTO_REASON_MAX, "a %s event needs %s", types[t].type,
                 types[t].required & F_QUANTITY ? "\"sku\" and \"quantity\"" : "\"sku\"");
        return PROTO_E_BAD_FIELD;
    }
    return 0;
}

int carts_event(const char *user, const json_t *body, origin_t *origin, char *reason)
{
    char chan[CHNAME_MAX + 1], type[32];
    const char *ty = json_string_value(json_object_get(body, "type"));
    size_t t = sizeof types / sizeof types[0];
    json_t *data;
    int code;

    if ((code = carts_channel(user, chan, sizeof chan, reason))) goto fail;
    if (!json_is_object(body)) {
        code = field_bad(reason, "the body must be a JSON object {\"type\", ...}");
        goto fail;
    }
    for (size_t i = 0; ty && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(ty, types[i].type)) t = i;
    if (t == sizeof types / sizeof types[0]) {
        code = field_bad(reason, "field \"type\" must be item_added, item_updated, item_removed, cleared or checked_out");
        goto fail;
    }
    if ((code = check_fields(body, t, reason))) goto fail;
    snprintf(type, sizeof type, "cart_%s", types[t].type);
    if (!(data = json_deep_copy(body))) {
        code = PROTO_E_INTERNAL;
        snprintf(reason, PROTO_REASON_MAX, "out of memory");
        goto fail;
    }
    json_object_set_new(data, "type", json_string(type));
    json_object_set_new(data, "user", json_string(user));
    json_object_set_new(data, "at", json_integer((json_int_t)clock_wall_ms()));
    code = publish(chan, strlen(chan), data, NULL, origin, reason);
    json_decref(data);
    return code;
fail:
    origin_clear(origin);
    return code;
}
