/* clients/cli/jwtmint.c - see jwtmint.h. */
#include "jwtmint.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#define RSA_MIN_BITS 2048

/* Appends base64url (no padding) of @n bytes at @p to @out at *@len. @out has room. */
static void b64url(const unsigned char *p, size_t n, char *out, size_t *len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = *len;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        if (i + 1 < n) out[o++] = tab[v >> 6 & 63];
        if (i + 2 < n) out[o++] = tab[v & 63];
    }
    out[o] = '\0';
    *len = o;
}

static void ssl_why(char *why, size_t whylen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";

    if (e) ERR_error_string_n(e, buf, sizeof buf);
    snprintf(why, whylen, "%s%s%s", what, *buf ? ": " : "", buf);
    ERR_clear_error();
}

int jwtmint_load_key(const char *path, EVP_PKEY **out, const char **alg, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;
    char group[64] = "";

    if (!f) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k) {
        ssl_why(why, whylen, "not a PEM private key");
        return -1;
    }
    if (EVP_PKEY_base_id(k) == EVP_PKEY_RSA) {
        if (EVP_PKEY_bits(k) < RSA_MIN_BITS) {
            snprintf(why, whylen, "RSA key of %d bits is too small (the broker needs at least %d)", EVP_PKEY_bits(k),
                     RSA_MIN_BITS);
            EVP_PKEY_free(k);
            return -1;
        }
        *alg = "RS256";
    } else if (EVP_PKEY_base_id(k) == EVP_PKEY_EC &&
               EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) &&
               (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"))) {
        *alg = "ES256";
    } else {
        snprintf(why, whylen, "unsupported key%s%s: RS256 needs RSA, ES256 an EC key on P-256", *group ? " on " : "",
                 group);
        EVP_PKEY_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

/* An ECDSA signature from DER to the fixed 64-byte r || s of JWS. */
static int ecdsa_raw(const unsigned char *der, size_t len, unsigned char out[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    const BIGNUM *r, *s;
    int ok;

    if (!sig) return -1;
    ECDSA_SIG_get0(sig, &r, &s);
    ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? 0 : -1;
}

int jwtmint_sign(const json_t *claims, EVP_PKEY *key, const char *secret, size_t secret_len, const char *kid,
                 char **out, char *why, size_t whylen)
{
    const char *alg = "HS256";
    json_t *hdr;
    char *h = NULL, *c = NULL, *tok = NULL;
    unsigned char sig[1024], raw[64];
    size_t siglen = sizeof sig, len = 0, cap;
    unsigned hlen = 0;
    EVP_MD_CTX *md = NULL;
    int r = -1;

    if (key) alg = EVP_PKEY_base_id(key) == EVP_PKEY_RSA ? "RS256" : "ES256";
    hdr = json_pack("{s:s,s:s}", "alg", alg, "typ", "JWT");
    if (hdr && kid) json_object_set_new(hdr, "kid", json_string(kid));
    h = hdr ? json_dumps(hdr, JSON_COMPACT) : NULL;
    c = json_dumps(claims, JSON_COMPACT);
    json_decref(hdr);
    if (!h || !c) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    cap = (strlen(h) + strlen(c) + sizeof sig) * 4 / 3 + 16;
    if (!(tok = malloc(cap))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    b64url((const unsigned char *)h, strlen(h), tok, &len);
    tok[len++] = '.';
    b64url((const unsigned char *)c, strlen(c), tok, &len);
    if (!key) {
        if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)tok, len, sig, &hlen)) {
            ssl_why(why, whylen, "HMAC failed");
            goto out;
        }
        siglen = hlen;
    } else {
        if (!(md = EVP_MD_CTX_new()) || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
            EVP_DigestSign(md, sig, &siglen, (const unsigned char *)tok, len) != 1) {
            ssl_why(why, whylen, "signing failed");
            goto out;
        }
        if (EVP_PKEY_base_id(key) == EVP_PKEY_EC) {
            if (ecdsa_raw(sig, siglen, raw)) {
                snprintf(why, whylen, "bad ECDSA signature");
                goto out;
            }
            memcpy(sig, raw, 64);
            siglen = 64;
        }
    }
    tok[len++] = '.';
    b64url(sig, siglen, tok, &len);
    *out = tok;
    tok = NULL;
    r = 0;
out:
    EVP_MD_CTX_free(md);
    free(h);
    free(c);
    free(tok);
    return r;
}
