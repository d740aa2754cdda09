/* tests/fuzz/fuzz_jwt.c - libFuzzer target: jwt_verify() (broker/jwt.c) on
 * tokens from an unauthenticated client.
 *
 * The key set is built on the first call: an HS256 secret and the RSA-2048
 * and EC P-256 public keys below, each added once without a kid and once with
 * one ("hs", "rs", "es"), so that both ways of choosing a key are reachable.
 * Only public keys are here: the seeds corpus/fuzz_jwt/signed-* were signed
 * with the matching private keys, which were then thrown away (see
 * make_corpus.py to make new ones).
 *
 * Each input is verified twice: as it is, and with everything after its last
 * '.' replaced by a valid HS256 signature over what comes before. Mutated
 * bytes practically never carry a valid signature, so without the second call
 * the payload parser and the claim checks would only ever see the seeds'
 * payloads.
 *
 * Invariants (a violation abort()s, which libFuzzer reports as a crash): the
 * return is JWT_OK, a JWT_E_* code or -ENOMEM; claims is set exactly when it
 * is JWT_OK and why exactly when it is not, as a non-empty string; an accepted
 * token has three parts and a payload object whose exp, nbf and iat are
 * numbers in 0..JWT_MAX_TIME that hold at FUZZ_NOW, and whose sub is a
 * string; the same call without out-parameters returns the same; the
 * thread's OpenSSL error queue is left empty. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s: ", #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* The seeds' iat is FUZZ_NOW and their exp an hour later. */
#define FUZZ_NOW ((int64_t)1700000000)
#define FUZZ_LEEWAY 30u

/* make_corpus.py signs the HS256 seeds with the same bytes. */
static const char hs_secret[] = "herald fuzz_jwt HS256 secret, 32 bytes or more";

static const char rsa_pub[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAk+uRAhPKXLf3KxnhNbER\n"
    "F124u5Ma5OVA1Sc2mdwxfYnpUl+/EV0VSNNbucGzPJ/WREl8P74Om1cnVjBu7rFb\n"
    "2JH+pkho7yG8GTVPMd5nsK+Njabd8CiTmh9LueR5eqBd3vkLQVnQfNIEApuA7NLK\n"
    "FeTE0sQHwnRME8yHpRqx8A11eWcEeObuCH5lGo+18sQPzgU48n5qqxIZtxLpY35A\n"
    "hK6CmW8d73Y8K417mVjXM2FvC6PaNtAM/qQHgkikBkBzPzlOwlAHKQgEEYy4oFrB\n"
    "Qvgxtv3YEP+rLtQLjF7DJ3iZyBCNvNifbo6ofV3aV2SOXDQzDSEV7DZd3klrm2t5\n"
    "9wIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char ec_pub[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEHAMHMcDBL0jx2hwO3md5nhBYP42u\n"
    "4ct9hmDXp9FPIx4PdX/YEtQnX7gR78QCPBLetC8XKau8dwJeLWBfBr4ClQ==\n"
    "-----END PUBLIC KEY-----\n";

static jwt_keys_t *keys;

static void keys_build(void)
{
    char err[256] = "";
    size_t slen = sizeof hs_secret - 1;
    int r;

    r = jwt_keys_new(&keys);
    FUZZ_CHECK(r == 0, "jwt_keys_new: %d", r);
    r = jwt_keys_add_secret(keys, NULL, (const unsigned char *)hs_secret, slen);
    if (!r) r = jwt_keys_add_secret(keys, "hs", (const unsigned char *)hs_secret, slen);
    FUZZ_CHECK(r == 0, "jwt_keys_add_secret: %d", r);
    r = jwt_keys_add_pem(keys, NULL, rsa_pub, sizeof rsa_pub - 1, err, sizeof err);
    if (!r) r = jwt_keys_add_pem(keys, "rs", rsa_pub, sizeof rsa_pub - 1, err, sizeof err);
    if (!r) r = jwt_keys_add_pem(keys, NULL, ec_pub, sizeof ec_pub - 1, err, sizeof err);
    if (!r) r = jwt_keys_add_pem(keys, "es", ec_pub, sizeof ec_pub - 1, err, sizeof err);
    FUZZ_CHECK(r == 0, "jwt_keys_add_pem: %d %s", r, err);
    /* Start every input with an empty queue, so that one left non-empty is
     * jwt_verify()'s doing. */
    ERR_clear_error();
}

/* A time claim of an accepted token. */
static void check_time(const json_t *claims, const char *name)
{
    const json_t *v = json_object_get(claims, name);
    double t;

    if (!v) return;
    FUZZ_CHECK(json_is_number(v), "accepted %s is not a number", name);
    t = json_number_value(v);
    FUZZ_CHECK(t >= 0 && t <= (double)JWT_MAX_TIME, "accepted %s %g is out of range", name, t);
    if (!strcmp(name, "exp"))
        FUZZ_CHECK((double)FUZZ_NOW <= t + FUZZ_LEEWAY, "accepted exp %g is past", t);
    else if (!strcmp(name, "nbf"))
        FUZZ_CHECK((double)FUZZ_NOW + FUZZ_LEEWAY >= t, "accepted nbf %g is in the future", t);
}

/* Verifies @len bytes at @tok (a heap block of exactly that size, so that
 * ASan sees any read past the end) and checks the invariants. */
static void verify_one(const char *tok, size_t len)
{
    json_t *claims = (json_t *)&claims;   /* must be overwritten */
    const char *why = "unset";
    int r, again;

    FUZZ_CHECK(ERR_peek_error() == 0, "OpenSSL error queue not empty before the call");
    r = jwt_verify(keys, tok, len, FUZZ_NOW, FUZZ_LEEWAY, &claims, &why);
    FUZZ_CHECK(ERR_peek_error() == 0, "jwt_verify() left an entry on the OpenSSL error queue (returned %s)",
               jwt_err_name(r));
    FUZZ_CHECK(strcmp(jwt_err_name(r), "unknown") != 0, "unknown return %d", r);
    if (r == JWT_OK) {
        size_t dots = 0;

        FUZZ_CHECK(claims && json_is_object(claims), "JWT_OK without a claims object");
        FUZZ_CHECK(why == NULL, "JWT_OK with a reason: %s", why);
        for (size_t i = 0; i < len; i++) dots += tok[i] == '.';
        FUZZ_CHECK(dots == 2, "accepted a token with %zu dots", dots);
        check_time(claims, "exp");
        check_time(claims, "nbf");
        check_time(claims, "iat");
        FUZZ_CHECK(!json_object_get(claims, "sub") || json_is_string(json_object_get(claims, "sub")),
                   "accepted a non-string sub");
        json_decref(claims);
    } else {
        FUZZ_CHECK(claims == NULL, "%s but claims set", jwt_err_name(r));
        FUZZ_CHECK(why && why[0], "%s without a reason", jwt_err_name(r));
    }
    /* An -ENOMEM may not repeat; any other outcome must. */
    again = jwt_verify(keys, tok, len, FUZZ_NOW, FUZZ_LEEWAY, NULL, NULL);
    FUZZ_CHECK(again == r || r == -ENOMEM || again == -ENOMEM, "second call returned %s, first %s",
               jwt_err_name(again), jwt_err_name(r));
    FUZZ_CHECK(ERR_peek_error() == 0, "jwt_verify() without out-parameters left an OpenSSL error");
}

/* Unpadded base64url of the 32 bytes at @in into @out (43 characters). */
static void b64url32(const unsigned char *in, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t v;
    size_t i;

    for (i = 0; i + 2 < 32; i += 3) {
        v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = tbl[v >> 18];
        *out++ = tbl[(v >> 12) & 63];
        *out++ = tbl[(v >> 6) & 63];
        *out++ = tbl[v & 63];
    }
    /* 32 = 3 * 10 + 2: two bytes left, three characters. */
    v = (uint32_t)in[30] << 16 | (uint32_t)in[31] << 8;
    *out++ = tbl[v >> 18];
    *out++ = tbl[(v >> 12) & 63];
    *out = tbl[(v >> 6) & 63];
}

/* "<everything before the last '.'>.<its HS256 signature>" */
static void verify_resigned(const uint8_t *data, size_t size)
{
    const uint8_t *dot = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t silen, len;
    char *tok;

    for (size_t i = size; i > 0; i--)
        if (data[i - 1] == '.') {
            dot = &data[i - 1];
            break;
        }
    silen = dot ? (size_t)(dot - data) : size;
    if (silen > JWT_MAX_TOKEN_LEN) return;
    FUZZ_CHECK(HMAC(EVP_sha256(), hs_secret, (int)(sizeof hs_secret - 1), data, silen, mac, &maclen) &&
               maclen == 32, "HMAC failed");
    len = silen + 1 + 43;
    tok = malloc(len);
    FUZZ_CHECK(tok, "out of memory");
    memcpy(tok, data, silen);
    tok[silen] = '.';
    b64url32(mac, tok + silen + 1);
    verify_one(tok, len);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!keys) keys_build();
    verify_one((const char *)data, size);
    verify_resigned(data, size);
    return 0;
}
