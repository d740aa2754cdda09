/* clients/cli/checkconf.c - `herald-cli check-config FILE`: would the broker
 * start with this config file?
 *
 * Owns: nothing of the parsing: the file goes through the broker's own
 * config_parse_args() (broker/config.c), so the syntax, every value and the
 * cross-checks are exactly the broker's, with the same "FILE:LINE: reason"
 * messages. On top, what the broker checks only while starting: that the
 * auth.public_keys files are usable public keys and that server.tls_cert and
 * server.tls_key load and match, each error naming the line that set it. */
#include "cli.h"
#include "config.h"
#include "out.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static const char help[] =
    "usage: herald-cli check-config FILE\n"
    "\n"
    "Check a broker config file with the broker's own parser: syntax, every value, the\n"
    "cross-checks, and that the auth.public_keys, server.tls_cert and server.tls_key files load.\n"
    "Prints 'FILE: ok' (--json: {\"file\":..,\"ok\":true}) and exits 0, or prints\n"
    "'FILE:LINE: reason' and exits 2.\n";

/* "FILE:LINE: " for @option, or "" when it was not set in the file. */
static void where(const config_t *c, const char *option, char *buf, size_t len)
{
    if (config_where(c, option, buf, len) > 0) strncat(buf, ": ", len - strlen(buf) - 1);
}

static void ssl_err(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, buf, len);
    else snprintf(buf, len, "unknown error");
    ERR_clear_error();
}

/* One public key file: a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE that holds
 * an RSA key of 2048+ bits or an EC P-256 key. Return: 0, or -1 with @why. */
static int check_pubkey(const char *path, char *why, size_t len)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = NULL;
    char *name = NULL, *header = NULL, group[64] = "";
    unsigned char *data = NULL;
    const unsigned char *p;
    long dlen = 0;
    int r = -1;

    if (!f) {
        snprintf(why, len, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* The three PEM blocks the broker reads, by their names. */
    if (PEM_read(f, &name, &header, &data, &dlen)) {
        p = data;
        if (!strcmp(name, "PUBLIC KEY")) k = d2i_PUBKEY(NULL, &p, dlen);
        else if (!strcmp(name, "RSA PUBLIC KEY")) k = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, dlen);
        else if (!strcmp(name, "CERTIFICATE")) {
            X509 *x = d2i_X509(NULL, &p, dlen);
            if (x) k = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    fclose(f);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (!k) {
        ERR_clear_error();
        snprintf(why, len, "%s: not a PEM PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", path);
        return -1;
    }
    if (EVP_PKEY_base_id(k) == EVP_PKEY_RSA) {
        if (EVP_PKEY_bits(k) >= 2048) r = 0;
        else snprintf(why, len, "%s: RSA key of %d bits is too small (at least 2048)", path, EVP_PKEY_bits(k));
    } else if (EVP_PKEY_base_id(k) == EVP_PKEY_EC &&
               EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) &&
               !strcmp(group, "prime256v1")) {
        r = 0;
    } else {
        snprintf(why, len, "%s: unsupported key (RSA for RS256, EC P-256 for ES256)", path);
    }
    EVP_PKEY_free(k);
    return r;
}

/* Return: 0, or -1 with @err ("FILE:LINE: ..."). */
static int check_files(const config_t *c, char *err, size_t len)
{
    char w[1100] = "", why[2200] = "", list[sizeof c->public_keys], *save = NULL, *p;
    SSL_CTX *ctx;

    snprintf(list, sizeof list, "%s", c->public_keys);
    for (p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ') p++;
        for (char *e = p + strlen(p); e > p && e[-1] == ' ';) *--e = '\0';
        if (!*p) continue;
        if (check_pubkey(p, why, sizeof why)) {
            where(c, "auth.public_keys", w, sizeof w);
            snprintf(err, len, "%sauth.public_keys: %s", w, why);
            return -1;
        }
    }
    if (!*c->tls_cert) return 0;
    if (!(ctx = SSL_CTX_new(TLS_server_method()))) {
        snprintf(err, len, "out of memory");
        return -1;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
        ssl_err(why, sizeof why);
        where(c, "server.tls_cert", w, sizeof w);
        snprintf(err, len, "%sserver.tls_cert: %s: %s", w, c->tls_cert, why);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1 &&
               ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
        ssl_err(why, sizeof why);
        where(c, "server.tls_key", w, sizeof w);
        snprintf(err, len, "%sserver.tls_key: %s: %s", w, c->tls_key, why);
    } else if (ERR_peek_last_error() || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        where(c, "server.tls_key", w, sizeof w);
        snprintf(err, len, "%sserver.tls_key: %s does not match server.tls_cert %s", w, c->tls_key, c->tls_cert);
    } else {
        SSL_CTX_free(ctx);
        return 0;
    }
    SSL_CTX_free(ctx);
    return -1;
}

int cmd_check_config(struct cli *g, int argc, char **argv)
{
    const char *file = NULL;
    config_t c;
    char err[4096];
    int bad;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv, i)) { fputs(help, stdout); return CLI_OK; }
        if (argv[i][0] == '-' && argv[i][1]) return cli_usage_err(g, "check-config", "unknown option '%s'", argv[i]);
        if (file) return cli_usage_err(g, "check-config", "unexpected argument '%s'", argv[i]);
        file = argv[i];
    }
    if (!file) return cli_usage_err(g, "check-config", "missing FILE");
    {
        char *cargv[] = { (char *)g->prog, "--config", (char *)file, NULL };
        bad = config_parse_args(&c, 3, cargv, err, sizeof err) != CONFIG_ARGS_RUN || check_files(&c, err, sizeof err);
    }
    if (g->json) {
        json_t *o = bad ? json_pack("{s:s,s:b,s:s}", "file", file, "ok", 0, "error", err)
                        : json_pack("{s:s,s:b}", "file", file, "ok", 1);
        out_value("", o);
        json_decref(o);
    }
    if (bad) fprintf(stderr, "%s\n", err);
    else if (!g->json) printf("%s: ok (port %d, %zu namespace section%s, %zu API key%s, %s)\n", file, c.port, c.nns,
                              c.nns == 1 ? "" : "s", c.napikeys, c.napikeys == 1 ? "" : "s",
                              *c.hmac_secret || *c.public_keys ? (c.anonymous ? "tokens, anonymous allowed" : "tokens required")
                                                                : "anonymous");
    config_free(&c);
    return bad ? CLI_E_USAGE : CLI_OK;
}
