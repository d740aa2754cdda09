/* tests/unit/test_jwtmint.c - tokens signed by herald-cli (clients/cli/jwtmint.c)
 * verify with the broker's verifier (broker/auth/jwt.c), for each algorithm; and
 * keys the broker would refuse are refused when loading. */
#include "unit.h"

#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "jwtmint.h"

#define SECRET "0123456789abcdef0123456789abcdef"

/* Writes @k's private and public PEM to temporary files. */
static void write_pems(EVP_PKEY *k, char *priv, char *pub)
{
    int fd;
    FILE *f;

    strcpy(priv, "/tmp/jwtmint-priv-XXXXXX");
    strcpy(pub, "/tmp/jwtmint-pub-XXXXXX");
    assert_true((fd = mkstemp(priv)) >= 0);
    assert_non_null(f = fdopen(fd, "w"));
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    assert_true((fd = mkstemp(pub)) >= 0);
    assert_non_null(f = fdopen(fd, "w"));
    assert_int_equal(PEM_write_PUBKEY(f, k), 1);
    fclose(f);
}

static json_t *claims(void)
{
    return json_pack("{s:s,s:I,s:I,s:[s]}", "sub", "alice", "iat", (json_int_t)1000, "exp",
                     (json_int_t)4000000000LL, "channels", "orders:*");
}

/* Signs with @key (NULL: the secret) and verifies against @keys; returns the verify result. */
static int roundtrip(jwt_keys_t *keys, EVP_PKEY *key, const char *kid)
{
    json_t *c = claims(), *out = NULL;
    char *tok = NULL, why[256];
    int r;

    assert_int_equal(jwtmint_sign(c, key, SECRET, strlen(SECRET), kid, &tok, why, sizeof why), 0);
    r = jwt_verify(keys, tok, strlen(tok), 2000, 0, &out, NULL);
    if (r == JWT_OK) {
        assert_string_equal(json_string_value(json_object_get(out, "sub")), "alice");
        assert_int_equal(json_array_size(json_object_get(out, "channels")), 1);
    }
    json_decref(out);
    json_decref(c);
    free(tok);
    return r;
}

static void test_hs256(void **state)
{
    jwt_keys_t *keys, *other;

    (void)state;
    assert_int_equal(jwt_keys_new(&keys), 0);
    assert_int_equal(jwt_keys_add_secret(keys, NULL, (const unsigned char *)SECRET, strlen(SECRET)), 0);
    assert_int_equal(roundtrip(keys, NULL, NULL), JWT_OK);
    assert_int_equal(roundtrip(keys, NULL, "k1"), JWT_OK);
    assert_int_equal(jwt_keys_new(&other), 0);
    assert_int_equal(jwt_keys_add_secret(other, NULL, (const unsigned char *)"another-secret-0123456789abcdefgh", 33), 0);
    assert_int_equal(roundtrip(other, NULL, NULL), JWT_E_SIGNATURE);
    jwt_keys_free(keys);
    jwt_keys_free(other);
}

static void check_pkey(EVP_PKEY *gen, const char *want_alg)
{
    char priv[64], pub[64], why[256];
    EVP_PKEY *key = NULL;
    const char *alg = NULL;
    jwt_keys_t *keys, *hs;

    write_pems(gen, priv, pub);
    assert_int_equal(jwtmint_load_key(priv, &key, &alg, why, sizeof why), 0);
    assert_string_equal(alg, want_alg);
    assert_int_equal(jwt_keys_new(&keys), 0);
    assert_int_equal(jwt_keys_add_pem_file(keys, NULL, pub, why, sizeof why), 0);
    assert_int_equal(roundtrip(keys, key, NULL), JWT_OK);
    /* A broker with only an HMAC secret finds no key for this alg. */
    assert_int_equal(jwt_keys_new(&hs), 0);
    assert_int_equal(jwt_keys_add_secret(hs, NULL, (const unsigned char *)SECRET, strlen(SECRET)), 0);
    assert_int_not_equal(roundtrip(hs, key, NULL), JWT_OK);
    /* The public key alone cannot sign. */
    assert_int_equal(jwtmint_load_key(pub, &(EVP_PKEY *){ NULL }, &alg, why, sizeof why), -1);
    jwt_keys_free(keys);
    jwt_keys_free(hs);
    EVP_PKEY_free(key);
    unlink(priv);
    unlink(pub);
}

static void test_rs256(void **state)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);

    (void)state;
    assert_non_null(k);
    check_pkey(k, "RS256");
    EVP_PKEY_free(k);
}

static void test_es256(void **state)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    (void)state;
    assert_non_null(k);
    /* ECDSA signatures vary in DER length; sign several to hit short r or s. */
    for (int i = 0; i < 8; i++) check_pkey(k, "ES256");
    EVP_PKEY_free(k);
}

static void test_refused_keys(void **state)
{
    EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *key = NULL;
    char priv[64], pub[64], why[256];
    const char *alg;

    (void)state;
    write_pems(weak, priv, pub);
    assert_int_equal(jwtmint_load_key(priv, &key, &alg, why, sizeof why), -1);
    assert_non_null(strstr(why, "1024"));
    unlink(priv);
    unlink(pub);
    write_pems(p384, priv, pub);
    assert_int_equal(jwtmint_load_key(priv, &key, &alg, why, sizeof why), -1);
    assert_non_null(strstr(why, "P-256"));
    unlink(priv);
    unlink(pub);
    assert_int_equal(jwtmint_load_key("/nonexistent.pem", &key, &alg, why, sizeof why), -1);
    EVP_PKEY_free(weak);
    EVP_PKEY_free(p384);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256),
        cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_refused_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
