/* clients/cli/token.c - `herald-cli token`: mint a connect or subscribe token
 * with the key a broker verifies (docs/security.md).
 *
 * --config reads the broker's own config file with the broker's parser
 * (broker/config.c), so the secret is the one the broker will use; a config
 * with only public keys cannot sign, and says which private key is needed. */
#include "cli.h"
#include "config.h"
#include "jwtmint.h"
#include "out.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

static const char help[] =
    "usage: herald-cli token --sub USER (--config FILE | --secret SECRET | --key PEM)\n"
    "                        [--ttl DURATION] [--channel CHANNEL] [--info JSON] [--claims JSON] [--kid ID]\n"
    "\n"
    "Print a JWT for USER that a broker accepts in connect (or, with --channel, in subscribe).\n"
    "\n"
    "  --sub USER         the user id (1-128 characters, no ',' or '#')\n"
    "  --config FILE      sign HS256 with the auth.hmac_secret of this broker config file\n"
    "  --secret SECRET    sign HS256 with SECRET (at least 32 characters, as the broker requires)\n"
    "  --key PEM          sign with a private key: RSA (2048+ bits) -> RS256, EC P-256 -> ES256;\n"
    "                     the broker verifies with the public key in auth.public_keys\n"
    "  --ttl DURATION     expires after DURATION: 90, 90s, 15m, 1h, 7d (default 1h); 0: never\n"
    "  --channel CHANNEL  a subscribe token for CHANNEL (claim \"channel\")\n"
    "  --info JSON        the \"info\" claim: an object the broker attaches to publications\n"
    "  --claims JSON      more claims, an object merged last (\"channels\", \"role\", ...)\n"
    "  --kid ID           a key id in the header\n"
    "\n"
    "Prints the token (--json: {\"token\",\"alg\",\"sub\",\"exp\"}). Exit 2 for bad options, an\n"
    "unusable key or config.\n";

static int sub_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 128 && !strpbrk(s, ",#");
}

int cmd_token(struct cli *g, int argc, char **argv)
{
    const char *sub = NULL, *config = NULL, *secret = NULL, *keyfile = NULL, *ttl = NULL, *channel = NULL,
               *info = NULL, *claims = NULL, *kid = NULL, *alg = "HS256";
    json_t *cl = NULL, *extra = NULL, *infoj = NULL;
    json_error_t je;
    EVP_PKEY *key = NULL;
    config_t cfg;
    int have_cfg = 0, r;
    uint64_t ttl_s = 3600;
    char why[512], *tok = NULL;
    time_t now = time(NULL);

    for (int i = 1; i < argc;) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); return CLI_OK; }
        if ((r = cli_take(g, argc, argv, &i, "--sub", &sub)) || (r = cli_take(g, argc, argv, &i, "--config", &config)) ||
            (r = cli_take(g, argc, argv, &i, "--secret", &secret)) || (r = cli_take(g, argc, argv, &i, "--key", &keyfile)) ||
            (r = cli_take(g, argc, argv, &i, "--ttl", &ttl)) || (r = cli_take(g, argc, argv, &i, "--channel", &channel)) ||
            (r = cli_take(g, argc, argv, &i, "--info", &info)) || (r = cli_take(g, argc, argv, &i, "--claims", &claims)) ||
            (r = cli_take(g, argc, argv, &i, "--kid", &kid))) {
            if (r < 0) return CLI_E_USAGE;
            continue;
        }
        return cli_usage_err(g, "token", "unexpected argument '%s'", argv[i]);
    }
    if (!sub) return cli_usage_err(g, "token", "missing --sub USER");
    if (!sub_ok(sub)) return cli_usage_err(g, "token", "--sub: 1-128 characters without ',' or '#'");
    if (!!config + !!secret + !!keyfile != 1)
        return cli_usage_err(g, "token", "give exactly one of --config FILE, --secret SECRET, --key PEM");
    if (ttl && cli_duration_s(ttl, &ttl_s)) return cli_usage_err(g, "token", "--ttl %s: expected a duration (90, 15m, 1h, 7d)", ttl);
    /* json_is_object() is a macro that evaluates its argument twice: load first. */
    if (info) infoj = json_loads(info, 0, &je);
    if (info && !json_is_object(infoj)) {
        json_decref(infoj);
        return cli_usage_err(g, "token", "--info: expected a JSON object");
    }
    if (claims) extra = json_loads(claims, 0, &je);
    if (claims && !json_is_object(extra)) {
        r = cli_usage_err(g, "token", "--claims: expected a JSON object%s%s", extra ? "" : ": ", extra ? "" : je.text);
        goto out;
    }
    if (config) {
        char *cargv[] = { (char *)g->prog, "--config", (char *)config, NULL };
        if (config_parse_args(&cfg, 3, cargv, why, sizeof why) != CONFIG_ARGS_RUN) {
            cli_err(g, "%s", why);
            have_cfg = 1;
            r = CLI_E_USAGE;
            goto out;
        }
        have_cfg = 1;
        if (!*cfg.hmac_secret) {
            char where[1100] = "";
            config_where(&cfg, "auth.public_keys", where, sizeof where);
            if (*cfg.public_keys)
                cli_err(g, "%s%sthe broker verifies tokens with public keys (auth.public_keys = %s): "
                        "sign with the matching private key, --key PEM", where, *where ? ": " : "", cfg.public_keys);
            else
                cli_err(g, "%s: no auth.hmac_secret: this broker verifies no tokens", config);
            r = CLI_E_USAGE;
            goto out;
        }
        secret = cfg.hmac_secret;
    }
    if (secret && strlen(secret) < 32) {
        r = cli_usage_err(g, "token", "the HS256 secret has %zu characters; the broker needs at least 32", strlen(secret));
        goto out;
    }
    if (keyfile && jwtmint_load_key(keyfile, &key, &alg, why, sizeof why)) {
        cli_err(g, "--key %s: %s", keyfile, why);
        r = CLI_E_USAGE;
        goto out;
    }
    cl = json_pack("{s:s,s:I}", "sub", sub, "iat", (json_int_t)now);
    if (ttl_s) json_object_set_new(cl, "exp", json_integer((json_int_t)(now + (time_t)ttl_s)));
    if (channel) json_object_set_new(cl, "channel", json_string(channel));
    if (infoj) json_object_set(cl, "info", infoj);
    if (extra) json_object_update(cl, extra);
    if (!json_is_string(json_object_get(cl, "sub")) || !sub_ok(json_string_value(json_object_get(cl, "sub")))) {
        r = cli_usage_err(g, "token", "--claims: \"sub\" must stay a valid user id");
        goto out;
    }
    if (jwtmint_sign(cl, key, secret, secret ? strlen(secret) : 0, kid, &tok, why, sizeof why)) {
        cli_err(g, "%s", why);
        r = CLI_E_USAGE;
        goto out;
    }
    if (g->json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:O}", "token", tok, "alg", alg, "sub",
                              json_string_value(json_object_get(cl, "sub")), "exp",
                              json_object_get(cl, "exp") ? json_object_get(cl, "exp") : json_null());
        out_value("", o);
        json_decref(o);
    } else {
        printf("%s\n", tok);
    }
    r = CLI_OK;
out:
    free(tok);
    EVP_PKEY_free(key);
    json_decref(cl);
    json_decref(extra);
    json_decref(infoj);
    if (have_cfg) {
        OPENSSL_cleanse(cfg.hmac_secret, sizeof cfg.hmac_secret);
        config_free(&cfg);
    }
    return r;
}
