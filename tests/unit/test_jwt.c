/* tests/unit/test_jwt.c - broker/auth/jwt.c: HS256, RS256 and ES256 tokens signed
 * here with keys generated here; tampering, wrong keys, alg none and
 * confusion, strict base64url, JSON shape, exp/nbf edges, the range of
 * exp/nbf/iat, kid selection, ES256 signature form, key loading and its
 * refusals, and concurrent use. */
#include "unit.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth/jwt.h"

#define NOW ((int64_t)1700000000)

/* Keys generated once for the whole run (RSA generation is slow). */
static EVP_PKEY *rsa, *rsa_b, *ec, *ec_b;
static char *rsa_pem, *rsa_b_pem, *ec_pem, *ec_b_pem;
/* One HMAC secret, rsa and ec, none with a kid. */
static jwt_keys_t *all;

static const unsigned char S1[] = "first shared secret, long enough for HS256";
static const unsigned char S2[] = "second shared secret, also long enough!!";
#define SLEN(s) (sizeof(s) - 1)

static char tmpdir[] = "/tmp/herald-test-jwt-XXXXXX";

/* ------------------------------------------------------------------ */
/* Helpers: encoding, signing, building tokens                         */

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

/* printf into a new string. */
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, f);
    n = vasprintf(&s, f, ap);
    va_end(ap);
    assert_true(n >= 0);
    return s;
}

/* Unpadded base64url of @n bytes, written independently of the module. */
static char *b64url(const void *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *in = p;
    char *out = malloc(n / 3 * 4 + 5), *o = out;
    size_t i;

    assert_non_null(out);
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

/* "<b64url(hdr)>.<b64url(payload)>" */
static char *signing_input(const char *hdr, const char *payload)
{
    char *h = b64url(hdr, strlen(hdr)), *p = b64url(payload, strlen(payload));
    char *s = fmt("%s.%s", h, p);
    free(h);
    free(p);
    return s;
}

/* "<input>.<b64url(sig)>"; frees @input. */
static char *attach(char *input, const unsigned char *sig, size_t n)
{
    char *e = b64url(sig, n);
    char *t = fmt("%s.%s", input, e);
    free(e);
    free(input);
    return t;
}

static void hmac256(const void *key, size_t klen, const char *input, unsigned char mac[32])
{
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)input, strlen(input), mac, &n));
    assert_int_equal(n, 32);
}

/* EVP_DigestSign with SHA-256: PKCS#1 v1.5 for RSA, DER ECDSA for EC. */
static unsigned char *digest_sign(EVP_PKEY *k, const char *input, size_t *n)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig;

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, NULL, n, (const unsigned char *)input, strlen(input)), 1);
    sig = malloc(*n);
    assert_non_null(sig);
    assert_int_equal(EVP_DigestSign(ctx, sig, n, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    return sig;
}

/* DER ECDSA-Sig-Value -> JWS R || S, each left-padded to 32 bytes. */
static void der_to_raw(const unsigned char *der, size_t n, unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)n);
    const BIGNUM *r, *sv;

    assert_non_null(s);
    ECDSA_SIG_get0(s, &r, &sv);
    assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
    assert_int_equal(BN_bn2binpad(sv, raw + 32, 32), 32);
    ECDSA_SIG_free(s);
}

static char *tok_hs(const char *hdr, const char *payload, const void *secret, size_t len)
{
    char *in = signing_input(hdr, payload);
    unsigned char mac[32];
    hmac256(secret, len, in, mac);
    return attach(in, mac, sizeof mac);
}

static char *tok_rs(const char *hdr, const char *payload, EVP_PKEY *k)
{
    char *in = signing_input(hdr, payload), *t;
    size_t n;
    unsigned char *sig = digest_sign(k, in, &n);
    t = attach(in, sig, n);
    free(sig);
    return t;
}

static char *tok_es(const char *hdr, const char *payload, EVP_PKEY *k)
{
    char *in = signing_input(hdr, payload);
    size_t n;
    unsigned char raw[64], *der = digest_sign(k, in, &n);
    der_to_raw(der, n, raw);
    free(der);
    return attach(in, raw, sizeof raw);
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"
#define PL "{\"sub\":\"alice\",\"exp\":1700000600}"

/* Verifies @len bytes of @t and checks the out-parameter contract. */
static int vfy_len(const jwt_keys_t *k, const char *t, size_t len, int64_t now, unsigned leeway)
{
    json_t *claims = (json_t *)&claims;   /* must be overwritten */
    const char *why = "unset";
    int r = jwt_verify(k, t, len, now, leeway, &claims, &why);

    if (r == JWT_OK) {
        assert_non_null(claims);
        assert_true(json_is_object(claims));
        assert_null(why);
        json_decref(claims);
    } else {
        assert_null(claims);
        assert_non_null(why);
        assert_true(why[0] != '\0');
    }
    return r;
}

/* Asserts that @t (freed here) verifies to @want. */
static void expect_at(int want, const jwt_keys_t *k, char *t, int64_t now, unsigned leeway, int line)
{
    const char *why = NULL;
    int r = vfy_len(k, t, strlen(t), now, leeway);
    if (r != want) {
        jwt_verify(k, t, strlen(t), now, leeway, NULL, &why);
        print_error("line %d: token %s: got %s (%s), want %s\n", line, t, jwt_err_name(r), why ? why : "-",
                    jwt_err_name(want));
        free(t);
        fail();
    }
    free(t);
}
#define EXPECT(want, k, t) expect_at((want), (k), (t), NOW, 0, __LINE__)
#define EXPECT_AT(want, k, t, now, leeway) expect_at((want), (k), (t), (now), (leeway), __LINE__)

/* Public key of @k as "-----BEGIN PUBLIC KEY-----" text. */
static char *pem_of(EVP_PKEY *k, int private)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *s;
    long n;

    assert_non_null(b);
    if (private)
        assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &data);
    assert_true(n > 0);
    s = strndup(data, (size_t)n);
    assert_non_null(s);
    BIO_free(b);
    return s;
}

/* PEM "<label>" block around @n bytes of DER. */
static char *pem_block(const char *label, const unsigned char *der, long n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *s;
    long len;

    assert_non_null(b);
    assert_true(PEM_write_bio(b, label, "", der, n) > 0);
    len = BIO_get_mem_data(b, &data);
    s = strndup(data, (size_t)len);
    assert_non_null(s);
    BIO_free(b);
    return s;
}

/* Writes @len bytes to a new file in the temp dir; returns its path (static). */
static const char *write_file(const void *data, size_t len)
{
    static char path[256];
    static int nfiles;
    FILE *f;

    snprintf(path, sizeof path, "%s/k%d.pem", tmpdir, nfiles++);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static jwt_keys_t *keys_new(void)
{
    jwt_keys_t *k = NULL;
    assert_int_equal(jwt_keys_new(&k), 0);
    assert_non_null(k);
    return k;
}

static void add_pem_ok(jwt_keys_t *k, const char *kid, const char *pem)
{
    char err[256] = "";
    int r = jwt_keys_add_pem(k, kid, pem, strlen(pem), err, sizeof err);
    if (r) print_error("jwt_keys_add_pem: %d %s\n", r, err);
    assert_int_equal(r, 0);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static int group_setup(void **state)
{
    (void)state;
    rsa = EVP_RSA_gen(2048);
    rsa_b = EVP_RSA_gen(2048);
    ec = EVP_EC_gen("P-256");
    ec_b = EVP_EC_gen("P-256");
    if (!rsa || !rsa_b || !ec || !ec_b || !mkdtemp(tmpdir)) return -1;
    rsa_pem = pem_of(rsa, 0);
    rsa_b_pem = pem_of(rsa_b, 0);
    ec_pem = pem_of(ec, 0);
    ec_b_pem = pem_of(ec_b, 0);
    if (jwt_keys_new(&all) || jwt_keys_add_secret(all, NULL, S1, SLEN(S1)) ||
        jwt_keys_add_pem(all, NULL, rsa_pem, strlen(rsa_pem), NULL, 0) ||
        jwt_keys_add_pem(all, NULL, ec_pem, strlen(ec_pem), NULL, 0))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    (void)state;
    jwt_keys_free(all);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa_b);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec_b);
    free(rsa_pem);
    free(rsa_b_pem);
    free(ec_pem);
    free(ec_b_pem);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_keys_api(void **state)
{
    jwt_keys_t *k = keys_new();
    /* NULs inside, and a last byte that HMAC's zero padding of short keys
     * would not reproduce. */
    unsigned char with_nul[40] = { 'a', 0, 'b', 0 };
    char long_kid[JWT_MAX_KID_LEN + 2];
    (void)state;

    assert_int_equal(jwt_keys_new(NULL), -EINVAL);
    assert_int_equal(jwt_keys_count(k), 0);
    assert_int_equal(jwt_keys_count(NULL), 0);
    with_nul[39] = 'z';
    assert_int_equal(jwt_keys_add_secret(NULL, NULL, S1, SLEN(S1)), -EINVAL);
    assert_int_equal(jwt_keys_add_secret(k, NULL, NULL, 32), -EINVAL);
    /* RFC 7518: HS256 keys of at least 256 bits. */
    assert_int_equal(jwt_keys_add_secret(k, NULL, S1, JWT_MIN_SECRET_LEN - 1), -EINVAL);
    assert_int_equal(jwt_keys_add_secret(k, "", S1, SLEN(S1)), -EINVAL);
    memset(long_kid, 'k', sizeof long_kid - 1);
    long_kid[sizeof long_kid - 1] = '\0';
    assert_int_equal(jwt_keys_add_secret(k, long_kid, S1, SLEN(S1)), -EINVAL);
    assert_int_equal(jwt_keys_count(k), 0);

    assert_int_equal(jwt_keys_add_secret(k, NULL, S1, JWT_MIN_SECRET_LEN), 0);
    assert_int_equal(jwt_keys_add_secret(k, NULL, S2, SLEN(S2)), 0);   /* several without kid */
    assert_int_equal(jwt_keys_add_secret(k, "a", S1, SLEN(S1)), 0);
    assert_int_equal(jwt_keys_add_secret(k, "a", S2, SLEN(S2)), -EEXIST);
    assert_int_equal(jwt_keys_add_pem(k, "a", rsa_pem, strlen(rsa_pem), NULL, 0), -EEXIST);
    assert_int_equal(jwt_keys_add_secret(k, "nul", with_nul, sizeof with_nul), 0);
    assert_int_equal(jwt_keys_count(k), 4);

    /* A secret with NUL bytes is used whole, not up to its first NUL. */
    EXPECT(JWT_OK, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"nul\"}", "{}", with_nul, sizeof with_nul));
    EXPECT(JWT_E_SIGNATURE, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"nul\"}", "{}", with_nul, 32));
    /* Many keys: the array grows. */
    for (int i = 0; i < 20; i++) {
        char kid[16];
        snprintf(kid, sizeof kid, "k%d", i);
        assert_int_equal(jwt_keys_add_secret(k, kid, S2, SLEN(S2)), 0);
    }
    assert_int_equal(jwt_keys_count(k), 24);
    EXPECT(JWT_OK, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"k19\"}", "{}", S2, SLEN(S2)));
    jwt_keys_free(k);
    jwt_keys_free(NULL);
}

/* A vector computed once, outside this program, from these exact bytes
 * (Python hmac/hashlib), pinned so the encoding of the signing input and the
 * MAC cannot drift together unnoticed. */
#define KAT_SECRET "herald known-answer secret, 32+ bytes long"
#define KAT_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define KAT_PAYLOAD "{\"sub\":\"herald-kat\",\"iat\":1700000000,\"exp\":4102444800}"
#define KAT_INPUT                                        \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."             \
    "eyJzdWIiOiJoZXJhbGQta2F0IiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjQxMDI0NDQ4MDB9"
#define KAT_MAC_HEX "324e813f1cf0fb834e3bd88c095e25be0d9617a539f61f03ab06a77a7c3f6af7"
#define KAT_TOKEN KAT_INPUT ".Mk6BPxzw-4NOO9iMCV4lvg2WF6U59h8Dqwanenw_avc"

static void test_hs256_known_answer(void **state)
{
    jwt_keys_t *k = keys_new();
    unsigned char mac[32];
    char hex[65];
    char *in, *t;
    json_t *claims = NULL;
    const char *why = NULL;
    (void)state;

    assert_int_equal(jwt_keys_add_secret(k, NULL, (const unsigned char *)KAT_SECRET, SLEN(KAT_SECRET)), 0);

    /* The helpers here reproduce the pinned vector... */
    in = signing_input(KAT_HDR, KAT_PAYLOAD);
    assert_string_equal(in, KAT_INPUT);
    hmac256(KAT_SECRET, SLEN(KAT_SECRET), in, mac);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    assert_string_equal(hex, KAT_MAC_HEX);
    t = attach(in, mac, sizeof mac);
    assert_string_equal(t, KAT_TOKEN);
    free(t);

    /* ...and the verifier accepts it, returning the payload. */
    assert_int_equal(jwt_verify(k, KAT_TOKEN, strlen(KAT_TOKEN), NOW, 0, &claims, &why), JWT_OK);
    assert_null(why);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "herald-kat");
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")), 4102444800LL);
    json_decref(claims);
    /* claims and why are optional. */
    assert_int_equal(jwt_verify(k, KAT_TOKEN, strlen(KAT_TOKEN), NOW, 0, NULL, NULL), JWT_OK);

    /* The MAC covers the encoded text, not the decoded JSON: the same JSON
     * re-encoded differently (here: with a space) does not carry it. */
    in = signing_input(KAT_HDR, "{\"sub\": \"herald-kat\",\"iat\":1700000000,\"exp\":4102444800}");
    t = fmt("%s.%s", in, strrchr(KAT_TOKEN, '.') + 1);
    free(in);
    EXPECT(JWT_E_SIGNATURE, k, t);
    /* A MAC over the decoded bytes "<header>.<payload>" is not the JWS MAC. */
    hmac256(KAT_SECRET, SLEN(KAT_SECRET), KAT_HDR "." KAT_PAYLOAD, mac);
    EXPECT(JWT_E_SIGNATURE, k, attach(xstrdup(KAT_INPUT), mac, sizeof mac));
    /* A MAC over the header part alone. */
    hmac256(KAT_SECRET, SLEN(KAT_SECRET), "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", mac);
    EXPECT(JWT_E_SIGNATURE, k, attach(xstrdup(KAT_INPUT), mac, sizeof mac));
    /* The right MAC under another secret. */
    EXPECT(JWT_E_SIGNATURE, k, tok_hs(KAT_HDR, KAT_PAYLOAD, S1, SLEN(S1)));
    jwt_keys_free(k);
}

static void test_valid_all_algs(void **state)
{
    json_t *claims = NULL;
    char *t;
    (void)state;

    EXPECT(JWT_OK, all, tok_hs(HS, PL, S1, SLEN(S1)));
    EXPECT(JWT_OK, all, tok_rs(RS, PL, rsa));
    EXPECT(JWT_OK, all, tok_es(ES, PL, ec));
    /* typ is optional; other header fields are ignored. */
    EXPECT(JWT_OK, all, tok_hs("{\"alg\":\"HS256\"}", "{}", S1, SLEN(S1)));
    EXPECT(JWT_OK, all, tok_es("{\"alg\":\"ES256\",\"x5u\":\"http://evil/\",\"typ\":\"at+jwt\"}", "{}", ec));

    t = tok_es(ES, "{\"sub\":\"bob\",\"scope\":[\"a\",\"b\"]}", ec);
    assert_int_equal(jwt_verify(all, t, strlen(t), NOW, 0, &claims, NULL), JWT_OK);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "bob");
    assert_int_equal(json_array_size(json_object_get(claims, "scope")), 2);
    json_decref(claims);
    /* @len bounds the token: a NUL-terminated prefix is not required. */
    t = realloc(t, strlen(t) + 8);
    memcpy(t + strlen(t), "GARBAGE", 8);
    assert_int_equal(vfy_len(all, t, strlen(t) - 7, NOW, 0), JWT_OK);
    assert_int_equal(vfy_len(all, t, strlen(t), NOW, 0), JWT_E_MALFORMED);
    free(t);
}

/* Replaces the payload of a validly signed token. */
static void test_tampered_payload(void **state)
{
    (void)state;

    for (int i = 0; i < 3; i++) {
        char *t = i == 0 ? tok_hs(HS, PL, S1, SLEN(S1)) : i == 1 ? tok_rs(RS, PL, rsa) : tok_es(ES, PL, ec);
        char *forged = b64url("{\"sub\":\"admin\",\"exp\":1700000600}", 33);
        char *d1, *d2;
        if (!t) { fail(); return; }
        d1 = strchr(t, '.');
        d2 = strrchr(t, '.');
        char *u = fmt("%.*s.%s%s", (int)(d1 - t), t, forged, d2);
        EXPECT(JWT_E_SIGNATURE, all, u);
        /* One flipped bit in the header part too. */
        u = xstrdup(t);
        u[5] ^= 0x01;   /* stays in the alphabet: changes one base64 digit */
        assert_int_not_equal(vfy_len(all, u, strlen(u), NOW, 0), JWT_OK);
        free(u);
        free(forged);
        free(t);
    }
}

/* Flips one bit of the decoded signature and re-encodes it. */
static char *flip_sig_bit(const char *t, size_t byte, unsigned bit)
{
    const char *d2 = strrchr(t, '.') + 1;
    size_t n = strlen(d2);
    unsigned char sig[600];
    char *in, *out;
    size_t len = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    /* Decode with the test's own loop (the module's decoder is static). */
    for (size_t i = 0; i < n; i++) {
        const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        acc = acc << 6 | (uint32_t)(strchr(tbl, d2[i]) - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            sig[len++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    assert_true(byte < len);
    sig[byte] ^= (unsigned char)(1u << bit);
    in = strndup(t, (size_t)(d2 - 1 - t));
    out = attach(in, sig, len);
    return out;
}

static void test_tampered_signature(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        char *t = i == 0 ? tok_hs(HS, PL, S1, SLEN(S1)) : i == 1 ? tok_rs(RS, PL, rsa) : tok_es(ES, PL, ec);
        EXPECT(JWT_E_SIGNATURE, all, flip_sig_bit(t, 0, 7));
        EXPECT(JWT_E_SIGNATURE, all, flip_sig_bit(t, 31, 0));
        EXPECT(JWT_OK, all, xstrdup(t));
        free(t);
    }
}

static void test_wrong_key(void **state)
{
    (void)state;
    EXPECT(JWT_E_SIGNATURE, all, tok_hs(HS, PL, S2, SLEN(S2)));
    EXPECT(JWT_E_SIGNATURE, all, tok_rs(RS, PL, rsa_b));
    EXPECT(JWT_E_SIGNATURE, all, tok_es(ES, PL, ec_b));
}

static void test_alg_none(void **state)
{
    const char *hdrs[] = { "{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}", "{\"alg\":\"nOnE\"}",
                           "{\"alg\":\"none\",\"typ\":\"JWT\"}" };
    (void)state;

    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        unsigned char junk[32] = { 1, 2, 3 };
        /* Unsecured JWS: empty signature... */
        EXPECT(JWT_E_ALG, all, attach(signing_input(hdrs[i], PL), NULL, 0));
        /* ...or any signature at all. */
        EXPECT(JWT_E_ALG, all, attach(signing_input(hdrs[i], PL), junk, sizeof junk));
        EXPECT(JWT_E_ALG, all, tok_hs(hdrs[i], PL, S1, SLEN(S1)));
    }
}

static void test_alg_unsupported(void **state)
{
    const char *algs[] = { "HS384", "HS512", "RS384", "RS512", "PS256", "ES384", "ES512", "EdDSA", "ES256K",
                           "hs256", "Hs256", "HS256 ", " HS256", "", "HS2560", "dir", "RSA-OAEP" };
    (void)state;

    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        char *h = fmt("{\"alg\":\"%s\"}", algs[i]);
        EXPECT(JWT_E_ALG, all, tok_hs(h, PL, S1, SLEN(S1)));
        free(h);
    }
    /* "HS256\0...": NUL in a JSON string is refused outright. */
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"HS256\\u0000x\"}", PL, S1, SLEN(S1)));
    /* Missing or non-string alg. */
    EXPECT(JWT_E_ALG, all, tok_hs("{\"typ\":\"JWT\"}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_ALG, all, tok_hs("{}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_ALG, all, tok_hs("{\"alg\":null}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_ALG, all, tok_hs("{\"alg\":256}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_ALG, all, tok_hs("{\"alg\":[\"HS256\"]}", PL, S1, SLEN(S1)));
    /* crit: we support no extensions, so every crit is refused, even one
     * naming no field and one with b64 (RFC 7797). */
    EXPECT(JWT_E_ALG, all, tok_hs("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_ALG, all, tok_hs("{\"alg\":\"HS256\",\"b64\":false,\"crit\":[\"b64\"]}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_ALG, all, tok_hs("{\"alg\":\"HS256\",\"crit\":[]}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_ALG, all, tok_rs("{\"alg\":\"RS256\",\"crit\":null}", PL, rsa));
    /* Bad kid or typ types. */
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"HS256\",\"kid\":5}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"HS256\",\"kid\":null}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"HS256\",\"typ\":{}}", PL, S1, SLEN(S1)));
}

/* The classic attack: an HS256 token whose "secret" is the verifier's own
 * public key text, which the attacker knows. */
static void test_alg_confusion(void **state)
{
    jwt_keys_t *only_rsa = keys_new(), *only_ec = keys_new(), *with_kid = keys_new(), *only_hmac = keys_new();
    unsigned char *der = NULL;
    int dlen;
    (void)state;

    add_pem_ok(only_rsa, NULL, rsa_pem);
    add_pem_ok(only_ec, NULL, ec_pem);
    add_pem_ok(with_kid, "rsa1", rsa_pem);
    add_pem_ok(with_kid, "ec1", ec_pem);
    assert_int_equal(jwt_keys_add_secret(only_hmac, "h", S1, SLEN(S1)), 0);

    /* Against a set holding only public keys there is no HMAC key at all. */
    EXPECT(JWT_E_KEY, only_rsa, tok_hs(HS, PL, rsa_pem, strlen(rsa_pem)));
    EXPECT(JWT_E_KEY, only_rsa, tok_hs(HS, PL, rsa_pem, strlen(rsa_pem) - 1));   /* without the last \n */
    EXPECT(JWT_E_KEY, only_ec, tok_hs(HS, PL, ec_pem, strlen(ec_pem)));
    dlen = i2d_PUBKEY(rsa, &der);
    assert_true(dlen > 0);
    EXPECT(JWT_E_KEY, only_rsa, tok_hs(HS, PL, der, (size_t)dlen));
    OPENSSL_free(der);
    der = NULL;
    dlen = i2d_PublicKey(rsa, &der);   /* PKCS#1 RSAPublicKey */
    assert_true(dlen > 0);
    EXPECT(JWT_E_KEY, only_rsa, tok_hs(HS, PL, der, (size_t)dlen));
    OPENSSL_free(der);

    /* With HMAC keys present too, only they are tried. */
    EXPECT(JWT_E_SIGNATURE, all, tok_hs(HS, PL, rsa_pem, strlen(rsa_pem)));
    EXPECT(JWT_E_SIGNATURE, all, tok_hs(HS, PL, ec_pem, strlen(ec_pem)));

    /* A kid naming a public key cannot make it an HMAC key. */
    EXPECT(JWT_E_KEY, with_kid, tok_hs("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", PL, rsa_pem, strlen(rsa_pem)));
    EXPECT(JWT_E_KEY, with_kid, tok_hs("{\"alg\":\"HS256\",\"kid\":\"ec1\"}", PL, ec_pem, strlen(ec_pem)));
    /* Nor swap RSA and EC, nor make a secret verify RS256. */
    EXPECT(JWT_E_KEY, with_kid, tok_rs("{\"alg\":\"RS256\",\"kid\":\"ec1\"}", PL, rsa));
    EXPECT(JWT_E_KEY, with_kid, tok_es("{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", PL, ec));
    EXPECT(JWT_OK, with_kid, tok_rs("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", PL, rsa));
    EXPECT(JWT_E_KEY, only_ec, tok_rs(RS, PL, rsa));
    EXPECT(JWT_E_KEY, only_rsa, tok_es(ES, PL, ec));
    EXPECT(JWT_E_KEY, only_hmac, tok_rs(RS, PL, rsa));
    EXPECT(JWT_E_KEY, only_hmac, tok_rs("{\"alg\":\"RS256\",\"kid\":\"h\"}", PL, rsa));
    /* An RS256-labelled token carrying an HMAC over the input. */
    {
        unsigned char mac[32];
        char *in = signing_input(RS, PL);
        hmac256(S1, SLEN(S1), in, mac);
        EXPECT(JWT_E_SIGNATURE, all, attach(in, mac, sizeof mac));
    }
    jwt_keys_free(only_rsa);
    jwt_keys_free(only_ec);
    jwt_keys_free(with_kid);
    jwt_keys_free(only_hmac);
}

/* Returns a copy of @t with the part @part (0..2) replaced by @repl. */
static char *replace_part(const char *t, int part, const char *repl)
{
    const char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.');
    if (part == 0) return fmt("%s%s", repl, d1);
    if (part == 1) return fmt("%.*s.%s%s", (int)(d1 - t), t, repl, d2);
    return fmt("%.*s.%s", (int)(d2 - t), t, repl);
}

/* Each variant below decodes to the same bytes under a lenient decoder, so
 * accepting it would mean the decoder is not strict. */
static void test_malformed_base64url(void **state)
{
    /* The payload's encoding contains both '-' and '_', so the standard
     * alphabet's '+' and '/' have something to stand in for. */
    const char *pl = "{\"n\":\"~~~???\",\"exp\":1700000600}";
    char *t = tok_hs(HS, pl, S1, SLEN(S1)), *u;
    char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.');
    size_t siglen = strlen(d2 + 1);
    (void)state;

    EXPECT(JWT_OK, all, xstrdup(t));
    assert_non_null(memchr(d1, '-', (size_t)(d2 - d1)));
    assert_non_null(memchr(d1, '_', (size_t)(d2 - d1)));

    /* Standard alphabet. */
    u = xstrdup(t);
    for (char *p = u; *p; p++) *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    EXPECT(JWT_E_MALFORMED, all, u);
    u = xstrdup(t);
    *strchr(u, '-') = '+';
    EXPECT(JWT_E_MALFORMED, all, u);
    u = xstrdup(t);
    *strchr(u, '_') = '/';
    EXPECT(JWT_E_MALFORMED, all, u);

    /* Padding. A 32-byte MAC is 43 characters: one '=' of padding. */
    assert_int_equal(siglen, 43);
    EXPECT(JWT_E_MALFORMED, all, fmt("%s=", t));
    EXPECT(JWT_E_MALFORMED, all, fmt("%s==", t));
    u = fmt("%.*s=%s", (int)(d2 - t), t, d2);   /* '=' at the end of the payload part */
    EXPECT(JWT_E_MALFORMED, all, u);
    u = fmt("%.*s==%s", (int)(d1 - t), t, d1);   /* and of the header part */
    EXPECT(JWT_E_MALFORMED, all, u);

    /* Whitespace anywhere. */
    EXPECT(JWT_E_MALFORMED, all, fmt("%s\n", t));
    EXPECT(JWT_E_MALFORMED, all, fmt("%s\r\n", t));
    EXPECT(JWT_E_MALFORMED, all, fmt(" %s", t));
    EXPECT(JWT_E_MALFORMED, all, fmt("%.*s %s", (int)(d1 - t + 5), t, d1 + 5));
    EXPECT(JWT_E_MALFORMED, all, fmt("%.*s\t%s", (int)(d2 - t + 10), t, d2 + 10));
    EXPECT(JWT_E_MALFORMED, all, fmt("%.*s\n%s", (int)(d1 - t), t, d1));

    /* Non-canonical unused bits: the 43rd character carries 2 unused bits
     * (must be 0); set the lowest. Same 32 bytes to a lenient decoder. */
    {
        const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        u = xstrdup(t);
        char *last = u + strlen(u) - 1;
        int v = (int)(strchr(tbl, *last) - tbl);
        assert_int_equal(v & 3, 0);
        *last = tbl[v | 1];
        EXPECT(JWT_E_MALFORMED, all, u);
    }
    /* A part of 4k+1 characters cannot be base64. */
    EXPECT(JWT_E_MALFORMED, all, fmt("%sAA", t));
    EXPECT(JWT_E_MALFORMED, all, replace_part(t, 0, "eyJhbGciOiJIUzI1NiJ9A"));
    /* Characters outside the alphabet. */
    u = xstrdup(t);
    u[d2 - t + 3] = '!';
    EXPECT(JWT_E_MALFORMED, all, u);
    u = xstrdup(t);
    u[2] = (char)0xc3;
    EXPECT(JWT_E_MALFORMED, all, u);
    /* An embedded NUL within @len. */
    u = xstrdup(t);
    u[d2 - t + 3] = '\0';
    assert_int_equal(vfy_len(all, u, strlen(t), NOW, 0), JWT_E_MALFORMED);
    free(u);
    free(t);
}

static void test_malformed_structure(void **state)
{
    char *t = tok_hs(HS, PL, S1, SLEN(S1)), *h = b64url(HS, strlen(HS)), *p = b64url(PL, strlen(PL));
    const char *sig = strrchr(t, '.') + 1;
    (void)state;

    /* Part counts. */
    EXPECT(JWT_E_MALFORMED, all, fmt("%s.%s", h, p));
    EXPECT(JWT_E_MALFORMED, all, fmt("%s", h));
    EXPECT(JWT_E_MALFORMED, all, fmt("%s.", t));
    EXPECT(JWT_E_MALFORMED, all, fmt("%s.%s", t, sig));
    EXPECT(JWT_E_MALFORMED, all, fmt("%s.%s.%s.%s.%s", h, p, sig, h, p));   /* JWE has five */
    EXPECT(JWT_E_MALFORMED, all, xstrdup(".."));
    EXPECT(JWT_E_MALFORMED, all, xstrdup("..."));
    EXPECT(JWT_E_MALFORMED, all, xstrdup("."));
    /* Empty parts. */
    EXPECT(JWT_E_MALFORMED, all, fmt(".%s.%s", p, sig));
    EXPECT(JWT_E_MALFORMED, all, fmt("%s..%s", h, sig));
    EXPECT(JWT_E_SIGNATURE, all, fmt("%s.%s.", h, p));   /* empty signature: no HMAC is 0 bytes */
    EXPECT(JWT_E_SIGNATURE, all, attach(signing_input(RS, PL), NULL, 0));
    EXPECT(JWT_E_SIGNATURE, all, attach(signing_input(ES, PL), NULL, 0));
    /* Empty, NULL. */
    assert_int_equal(vfy_len(all, "", 0, NOW, 0), JWT_E_MALFORMED);
    assert_int_equal(vfy_len(all, NULL, 10, NOW, 0), JWT_E_MALFORMED);
    /* NULL key set: a documented outcome, not a crash. */
    assert_int_equal(vfy_len(NULL, t, strlen(t), NOW, 0), JWT_E_KEY);
    free(h);
    free(p);
    free(t);
}

/* The length cap: a valid token of exactly JWT_MAX_TOKEN_LEN bytes passes,
 * one byte more fails before any parsing. */
static void test_length_cap(void **state)
{
    size_t hit = 0;
    char *t = NULL;
    (void)state;

    for (size_t pad = 6000; pad < 6200 && !hit; pad++) {
        char *fill = malloc(pad + 1), *pl;
        memset(fill, 'x', pad);
        fill[pad] = '\0';
        pl = fmt("{\"sub\":\"a\",\"pad\":\"%s\"}", fill);
        free(fill);
        t = tok_hs(HS, pl, S1, SLEN(S1));
        free(pl);
        if (strlen(t) == JWT_MAX_TOKEN_LEN) hit = pad;
        else free(t);
    }
    assert_true(hit > 0);
    assert_int_equal(vfy_len(all, t, strlen(t), NOW, 0), JWT_OK);
    free(t);

    {
        char *fill = malloc(hit + 2), *pl;
        memset(fill, 'x', hit + 1);
        fill[hit + 1] = '\0';
        pl = fmt("{\"sub\":\"a\",\"pad\":\"%s\"}", fill);
        free(fill);
        t = tok_hs(HS, pl, S1, SLEN(S1));
        free(pl);
        assert_true(strlen(t) > JWT_MAX_TOKEN_LEN);
        assert_int_equal(vfy_len(all, t, strlen(t), NOW, 0), JWT_E_MALFORMED);
        free(t);
    }
    /* Huge lengths are refused on the length alone. */
    assert_int_equal(vfy_len(all, "a.b.c", SIZE_MAX, NOW, 0), JWT_E_MALFORMED);
}

static void test_non_object(void **state)
{
    const char *bad[] = { "[]", "[{\"alg\":\"HS256\"}]", "\"HS256\"", "1", "null", "true", "{",
                          "{\"alg\":\"HS256\"}x", "{\"alg\":\"HS256\"} {}", "{\"alg\":\"HS256\",}", "\xff" };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* As the header... */
        EXPECT(JWT_E_MALFORMED, all, tok_hs(bad[i], PL, S1, SLEN(S1)));
        /* ...and, validly signed, as the payload. */
        EXPECT(JWT_E_MALFORMED, all, tok_hs(HS, bad[i], S1, SLEN(S1)));
        EXPECT(JWT_E_MALFORMED, all, tok_es(ES, bad[i], ec));
    }
    /* Invalid UTF-8 inside a string. */
    EXPECT(JWT_E_MALFORMED, all, tok_hs(HS, "{\"sub\":\"\xc3\x28\"}", S1, SLEN(S1)));
    /* Unsigned garbage payload fails on the signature, before parsing. */
    EXPECT(JWT_E_SIGNATURE, all, replace_part(KAT_TOKEN, 1, "Wzld"));
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"none\",\"alg\":\"HS256\"}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"HS256\",\"alg\":\"none\"}", PL, S1, SLEN(S1)));
    EXPECT(JWT_E_MALFORMED, all, tok_hs("{\"alg\":\"HS256\",\"kid\":\"a\",\"kid\":\"b\"}", PL, S1, SLEN(S1)));
    /* In the payload: first-wins and last-wins readers would disagree. */
    EXPECT(JWT_E_MALFORMED, all, tok_hs(HS, "{\"sub\":\"alice\",\"sub\":\"admin\"}", S1, SLEN(S1)));
    EXPECT(JWT_E_MALFORMED, all, tok_hs(HS, "{\"exp\":1,\"exp\":9999999999}", S1, SLEN(S1)));
    EXPECT(JWT_E_MALFORMED, all, tok_rs(RS, "{\"exp\":9999999999,\"exp\":1}", rsa));
    /* Same key at different depths is fine. */
    EXPECT(JWT_OK, all, tok_hs(HS, "{\"sub\":\"a\",\"x\":{\"sub\":\"b\"}}", S1, SLEN(S1)));
}

static char *tok_claims(const char *payload)
{
    return tok_hs(HS, payload, S1, SLEN(S1));
}

static void test_exp_nbf(void **state)
{
    const char *e = "{\"exp\":1000}", *n = "{\"nbf\":1000}";
    (void)state;

    /* exp: expired when now > exp + leeway. */
    EXPECT_AT(JWT_OK, all, tok_claims(e), 999, 0);
    EXPECT_AT(JWT_OK, all, tok_claims(e), 1000, 0);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims(e), 1001, 0);
    EXPECT_AT(JWT_OK, all, tok_claims(e), 1030, 30);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims(e), 1031, 30);
    /* nbf: not yet valid when now + leeway < nbf. */
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_claims(n), 999, 0);
    EXPECT_AT(JWT_OK, all, tok_claims(n), 1000, 0);
    EXPECT_AT(JWT_OK, all, tok_claims(n), 1001, 0);
    EXPECT_AT(JWT_OK, all, tok_claims(n), 970, 30);
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_claims(n), 969, 30);
    /* Both: a window. */
    EXPECT_AT(JWT_OK, all, tok_claims("{\"nbf\":1000,\"exp\":1000}"), 1000, 0);
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_claims("{\"nbf\":1000,\"exp\":2000}"), 999, 0);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims("{\"nbf\":1000,\"exp\":2000}"), 2001, 0);
    /* Reals. */
    EXPECT_AT(JWT_OK, all, tok_claims("{\"exp\":1000.5}"), 1000, 0);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims("{\"exp\":1000.5}"), 1001, 0);
    EXPECT_AT(JWT_OK, all, tok_claims("{\"exp\":1000.0}"), 1000, 0);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims("{\"exp\":1000.0}"), 1001, 0);
    EXPECT_AT(JWT_OK, all, tok_claims("{\"exp\":1000.0}"), 1005, 5);
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_claims("{\"nbf\":1000.5}"), 1000, 0);
    EXPECT_AT(JWT_OK, all, tok_claims("{\"nbf\":1000.5}"), 1001, 0);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims("{\"exp\":0.0}"), INT64_MAX, UINT_MAX);
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_claims("{\"nbf\":253402300799.0}"), INT64_MIN, UINT_MAX);
    EXPECT_AT(JWT_OK, all, tok_claims("{\"exp\":253402300799.0}"), INT64_MIN, UINT_MAX);
    /* The ends of the accepted range (test_time_range) against the ends of
     * int64 and the largest leeway: no overflow (UBSan). */
    EXPECT_AT(JWT_OK, all, tok_claims("{\"exp\":253402300799}"), 253402300799 + (int64_t)UINT_MAX, UINT_MAX);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims("{\"exp\":253402300799}"), 253402300799 + (int64_t)UINT_MAX + 1,
              UINT_MAX);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims("{\"exp\":253402300799}"), INT64_MAX, UINT_MAX);
    EXPECT_AT(JWT_E_EXPIRED, all, tok_claims("{\"exp\":0}"), INT64_MAX, UINT_MAX);
    EXPECT_AT(JWT_OK, all, tok_claims("{\"exp\":0}"), INT64_MIN, 0);
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_claims("{\"nbf\":253402300799}"), INT64_MIN, UINT_MAX);
    EXPECT_AT(JWT_OK, all, tok_claims("{\"nbf\":0}"), INT64_MAX, 0);
    EXPECT_AT(JWT_OK, all, tok_claims("{\"nbf\":253402300799}"), 253402300799 - (int64_t)UINT_MAX, UINT_MAX);
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_claims("{\"nbf\":253402300799}"), 253402300799 - (int64_t)UINT_MAX - 1,
              UINT_MAX);
    /* No exp is not an error here: the caller decides. */
    EXPECT_AT(JWT_OK, all, tok_claims("{}"), INT64_MAX, 0);
    /* The time check applies to every alg. */
    EXPECT_AT(JWT_E_EXPIRED, all, tok_rs(RS, e, rsa), 1001, 0);
    EXPECT_AT(JWT_E_NOT_YET_VALID, all, tok_es(ES, n, ec), 999, 0);
}

static void test_claim_types(void **state)
{
    const char *bad[] = { "{\"exp\":\"1700000600\"}", "{\"exp\":null}", "{\"exp\":true}", "{\"exp\":{}}",
                          "{\"exp\":[1700000600]}", "{\"nbf\":\"0\"}", "{\"nbf\":false}", "{\"iat\":\"now\"}",
                          "{\"sub\":123}", "{\"sub\":null}", "{\"sub\":[\"alice\"]}", "{\"sub\":{}}" };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        EXPECT(JWT_E_CLAIMS, all, tok_claims(bad[i]));
        EXPECT(JWT_E_CLAIMS, all, tok_rs(RS, bad[i], rsa));
    }
    /* A bad type fails even when the time would also fail. */
    EXPECT_AT(JWT_E_CLAIMS, all, tok_claims("{\"exp\":1,\"sub\":5}"), NOW, 0);
    EXPECT(JWT_OK, all, tok_claims("{\"sub\":\"\",\"iat\":1.5,\"aud\":[\"x\"],\"iss\":7}"));
}

/* exp, nbf and iat outside 0..253402300799 (JWT_MAX_TIME, the last second
 * of year 9999) are JWT_E_CLAIMS at any @now: a real beyond int64 cannot be
 * converted to one, and a caller adding a leeway to an exp near INT64_MAX
 * overflows (an exp of 2^63 - 1 used to pass here and then close the
 * connection at once as expired, reporting a negative "expires"). */
static void test_time_range(void **state)
{
    const char *bad[] = {
        "{\"exp\":9223372036854775807}",      /* 2^63 - 1: a JSON integer to jansson */
        "{\"exp\":1e19}", "{\"exp\":-1e19}", "{\"exp\":1e300}", "{\"exp\":-1e300}",
        "{\"exp\":-9223372036854775808}", "{\"exp\":-1}", "{\"exp\":-0.5}",
        "{\"exp\":253402300800}", "{\"exp\":253402300799.5}",
        "{\"nbf\":9223372036854775807}", "{\"nbf\":1e19}", "{\"nbf\":-1e19}", "{\"nbf\":-1}",
        "{\"nbf\":253402300800}",
        "{\"iat\":9223372036854775807}", "{\"iat\":1e19}", "{\"iat\":-1e19}", "{\"iat\":-1}",
        "{\"iat\":253402300800}",
        /* One bad claim among good ones. */
        "{\"sub\":\"alice\",\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1e19}",
        "{\"sub\":\"alice\",\"iat\":1e19,\"nbf\":1700000000,\"exp\":1700000600}",
    };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        EXPECT_AT(JWT_E_CLAIMS, all, tok_claims(bad[i]), NOW, 0);
        EXPECT_AT(JWT_E_CLAIMS, all, tok_claims(bad[i]), 0, UINT_MAX);
        EXPECT_AT(JWT_E_CLAIMS, all, tok_claims(bad[i]), INT64_MAX, UINT_MAX);
        EXPECT_AT(JWT_E_CLAIMS, all, tok_claims(bad[i]), INT64_MIN, 0);
    }
    EXPECT(JWT_E_CLAIMS, all, tok_rs(RS, "{\"exp\":9223372036854775807}", rsa));
    /* jansson refuses an integer literal beyond int64 (it does not fall back
     * to a real), so 2^63 written as an integer never reaches the check. */
    EXPECT(JWT_E_MALFORMED, all, tok_claims("{\"exp\":9223372036854775808}"));
    EXPECT(JWT_E_CLAIMS, all, tok_es(ES, "{\"nbf\":-1e19}", ec));
    /* Far-future and boundary values are fine. */
    EXPECT(JWT_OK, all, tok_claims("{\"sub\":\"alice\",\"exp\":4102444800}"));        /* 2100 */
    EXPECT(JWT_OK, all, tok_claims("{\"exp\":253402300799}"));
    EXPECT(JWT_OK, all, tok_claims("{\"exp\":253402300799.0,\"iat\":253402300799}"));
    EXPECT(JWT_OK, all, tok_claims("{\"exp\":2e11,\"iat\":0,\"nbf\":0}"));
    EXPECT(JWT_OK, all, tok_claims("{\"iat\":-0.0,\"nbf\":0.0}"));
    EXPECT(JWT_OK, all, tok_rs(RS, "{\"exp\":253402300799}", rsa));
}

static void test_kid_selection(void **state)
{
    jwt_keys_t *k = keys_new(), *nokid = keys_new();
    (void)state;

    assert_int_equal(jwt_keys_add_secret(k, "a", S1, SLEN(S1)), 0);
    assert_int_equal(jwt_keys_add_secret(k, "b", S2, SLEN(S2)), 0);
    assert_int_equal(jwt_keys_add_secret(k, NULL, (const unsigned char *)KAT_SECRET, SLEN(KAT_SECRET)), 0);
    add_pem_ok(k, "r", rsa_pem);
    add_pem_ok(k, "r2", rsa_b_pem);
    add_pem_ok(k, "e", ec_pem);
    assert_int_equal(jwt_keys_add_secret(nokid, NULL, S2, SLEN(S2)), 0);

    EXPECT(JWT_OK, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"b\"}", PL, S2, SLEN(S2)));
    EXPECT(JWT_OK, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"a\"}", PL, S1, SLEN(S1)));
    /* The named key only: "b" would verify this, but the token names "a". */
    EXPECT(JWT_E_SIGNATURE, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"a\"}", PL, S2, SLEN(S2)));
    EXPECT(JWT_E_SIGNATURE, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"a\"}", PL, KAT_SECRET, SLEN(KAT_SECRET)));
    EXPECT(JWT_E_SIGNATURE, k, tok_rs("{\"alg\":\"RS256\",\"kid\":\"r\"}", PL, rsa_b));
    EXPECT(JWT_OK, k, tok_rs("{\"alg\":\"RS256\",\"kid\":\"r2\"}", PL, rsa_b));
    /* Unknown kid: only the keys without a kid stand in (here KAT_SECRET),
     * never the keys with another kid. */
    EXPECT(JWT_E_SIGNATURE, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"zzz\"}", PL, S2, SLEN(S2)));
    EXPECT(JWT_OK, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"zzz\"}", PL, KAT_SECRET, SLEN(KAT_SECRET)));
    EXPECT(JWT_E_SIGNATURE, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"\"}", PL, S2, SLEN(S2)));
    EXPECT(JWT_E_SIGNATURE, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"B\"}", PL, S2, SLEN(S2)));
    EXPECT(JWT_E_MALFORMED, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"b\\u0000x\"}", PL, S2, SLEN(S2)));
    EXPECT(JWT_E_SIGNATURE, k, tok_hs("{\"alg\":\"HS256\",\"kid\":\"bb\"}", PL, S2, SLEN(S2)));
    /* An RS256 token with an unknown kid: no RSA key lacks a kid, so no key. */
    EXPECT(JWT_E_KEY, k, tok_rs("{\"alg\":\"RS256\",\"kid\":\"zzz\"}", PL, rsa_b));
    /* A set whose keys have no kids accepts tokens that carry one. */
    EXPECT(JWT_OK, nokid, tok_hs("{\"alg\":\"HS256\",\"kid\":\"b\"}", PL, S2, SLEN(S2)));
    /* Without kid, every key of the alg is tried, kid or not. */
    EXPECT(JWT_OK, k, tok_hs(HS, PL, S2, SLEN(S2)));
    EXPECT(JWT_OK, k, tok_hs(HS, PL, KAT_SECRET, SLEN(KAT_SECRET)));
    EXPECT(JWT_OK, k, tok_rs(RS, PL, rsa_b));
    EXPECT(JWT_OK, k, tok_es(ES, PL, ec));
    EXPECT(JWT_E_SIGNATURE, k, tok_es(ES, PL, ec_b));
    jwt_keys_free(k);
    jwt_keys_free(nokid);
}

static void test_es256_signature_form(void **state)
{
    char *in = signing_input(ES, PL);
    size_t n;
    unsigned char *der = digest_sign(ec, in, &n), raw[64], longer[65], zero[64] = { 0 };
    (void)state;

    der_to_raw(der, n, raw);
    EXPECT(JWT_OK, all, attach(xstrdup(in), raw, sizeof raw));
    /* The DER that OpenSSL produced, as is: not JWS. */
    assert_true(n >= 8 && n <= 72);
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), der, n));
    /* Wrong lengths. */
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), raw, 63));
    memcpy(longer, raw, 64);
    longer[64] = 0;
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), longer, 65));
    longer[0] = 0;
    memcpy(longer + 1, raw, 64);   /* a leading zero byte */
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), longer, 65));
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), raw, 32));
    /* r = s = 0, and r = s = all ones (above the group order). */
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), zero, sizeof zero));
    memset(zero, 0xff, sizeof zero);
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), zero, sizeof zero));
    /* R and S swapped. */
    memcpy(longer, raw + 32, 32);
    memcpy(longer + 32, raw, 32);
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), longer, 64));
    free(der);
    free(in);
}

static void test_rs256_signature_form(void **state)
{
    char *in = signing_input(RS, PL);
    size_t n;
    unsigned char *sig = digest_sign(rsa, in, &n), *longer;
    (void)state;

    assert_int_equal(n, 256);
    EXPECT(JWT_OK, all, attach(xstrdup(in), sig, n));
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), sig, n - 1));
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), sig + 1, n - 1));
    longer = calloc(1, n + 1);
    memcpy(longer + 1, sig, n);
    EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), longer, n + 1));
    free(longer);
    /* An RSA-PSS signature by the same key is not RS256. */
    {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        unsigned char pss[256];
        size_t plen = sizeof pss;
        assert_int_equal(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, rsa), 1);
        assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
        assert_int_equal(EVP_DigestSign(ctx, pss, &plen, (const unsigned char *)in, strlen(in)), 1);
        EVP_MD_CTX_free(ctx);
        EXPECT(JWT_E_SIGNATURE, all, attach(xstrdup(in), pss, plen));
    }
    free(sig);
    free(in);
}

static void test_key_formats(void **state)
{
    jwt_keys_t *k = keys_new();
    unsigned char *der = NULL;
    char *pkcs1, *cert_pem, *two;
    int dlen;
    X509 *x;
    BIO *b;
    char *data;
    long n;
    (void)state;

    /* "RSA PUBLIC KEY" (PKCS#1). */
    dlen = i2d_PublicKey(rsa_b, &der);
    assert_true(dlen > 0);
    pkcs1 = pem_block("RSA PUBLIC KEY", der, dlen);
    OPENSSL_free(der);
    add_pem_ok(k, "pkcs1", pkcs1);
    EXPECT(JWT_OK, k, tok_rs("{\"alg\":\"RS256\",\"kid\":\"pkcs1\"}", PL, rsa_b));

    /* A self-signed certificate around the EC key. */
    x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    assert_int_equal(X509_set_pubkey(x, ec_b), 1);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"jwt", -1, -1, 0);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    assert_true(X509_sign(x, ec_b, EVP_sha256()) > 0);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    n = BIO_get_mem_data(b, &data);
    cert_pem = strndup(data, (size_t)n);
    BIO_free(b);
    X509_free(x);
    add_pem_ok(k, "cert", cert_pem);
    EXPECT(JWT_OK, k, tok_es("{\"alg\":\"ES256\",\"kid\":\"cert\"}", PL, ec_b));
    EXPECT(JWT_E_SIGNATURE, k, tok_es("{\"alg\":\"ES256\",\"kid\":\"cert\"}", PL, ec));

    /* Text before the block, not NUL-terminated, and from a file. */
    two = fmt("comment line\n%s", rsa_pem);
    assert_int_equal(jwt_keys_add_pem(k, "pre", two, strlen(two), NULL, 0), 0);
    free(two);
    {
        char *copy = malloc(strlen(ec_pem));
        memcpy(copy, ec_pem, strlen(ec_pem));
        assert_int_equal(jwt_keys_add_pem(k, "nonul", copy, strlen(ec_pem), NULL, 0), 0);
        free(copy);
    }
    {
        char err[256] = "x";
        const char *path = write_file(cert_pem, strlen(cert_pem));
        assert_int_equal(jwt_keys_add_pem_file(k, "file", path, err, sizeof err), 0);
        assert_string_equal(err, "");
    }
    assert_int_equal(jwt_keys_count(k), 5);
    EXPECT(JWT_OK, k, tok_es("{\"alg\":\"ES256\",\"kid\":\"file\"}", PL, ec_b));
    free(pkcs1);
    free(cert_pem);
    jwt_keys_free(k);
}

/* Asserts that adding @pem fails with @want and an error mentioning @needle,
 * leaving the set unchanged. */
static void refuse_pem(jwt_keys_t *k, const char *pem, size_t len, int want, const char *needle)
{
    char err[256] = "";
    size_t before = jwt_keys_count(k);
    int r = jwt_keys_add_pem(k, NULL, pem, len, err, sizeof err);
    if (r != want || !strstr(err, needle)) {
        print_error("add_pem: got %d \"%s\", want %d \"...%s...\"\n", r, err, want, needle);
        fail();
    }
    assert_int_equal(jwt_keys_count(k), before);
}

static void test_key_refusals(void **state)
{
    jwt_keys_t *k = keys_new();
    EVP_PKEY *weak = EVP_RSA_gen(1024), *p384 = EVP_EC_gen("P-384"), *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char *pem, *trunc;
    char small[8];
    unsigned char junk[64];
    (void)state;

    assert_non_null(weak);
    assert_non_null(p384);
    assert_non_null(ed);

    /* RSA below 2048 bits. */
    pem = pem_of(weak, 0);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "1024 bits is too small");
    free(pem);
    /* Other curves and key types. */
    pem = pem_of(p384, 0);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "P-256");
    free(pem);
    pem = pem_of(ed, 0);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "unsupported key type");
    free(pem);
    /* Private keys, even good ones. */
    pem = pem_of(rsa, 1);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "private key");
    free(pem);
    pem = pem_of(ec, 1);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "private key");
    free(pem);
    /* Garbage, empty, truncated, wrong label, undecodable DER, trailing DER. */
    refuse_pem(k, "hello world\n", 12, -EINVAL, "no valid PEM block");
    refuse_pem(k, "", 0, -EINVAL, "no valid PEM block");
    trunc = strndup(rsa_pem, strlen(rsa_pem) / 2);
    refuse_pem(k, trunc, strlen(trunc), -EINVAL, "no valid PEM block");
    free(trunc);
    memset(junk, 0x30, sizeof junk);
    pem = pem_block("PUBLIC KEY", junk, sizeof junk);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "cannot parse");
    free(pem);
    pem = pem_block("CERTIFICATE", junk, sizeof junk);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "cannot parse");
    free(pem);
    pem = pem_block("DH PARAMETERS", junk, sizeof junk);
    refuse_pem(k, pem, strlen(pem), -EINVAL, "not a PUBLIC KEY");
    free(pem);
    {
        unsigned char *der = NULL, *more;
        int dlen = i2d_PUBKEY(ec, &der);
        more = malloc((size_t)dlen + 4);
        memcpy(more, der, (size_t)dlen);
        memset(more + dlen, 0, 4);
        pem = pem_block("PUBLIC KEY", more, dlen + 4);
        refuse_pem(k, pem, strlen(pem), -EINVAL, "trailing bytes");
        free(pem);
        free(more);
        OPENSSL_free(der);
    }
    /* Too large. */
    assert_int_equal(jwt_keys_add_pem(k, NULL, rsa_pem, JWT_MAX_PEM_LEN + 1, NULL, 0), -EFBIG);
    assert_int_equal(jwt_keys_add_pem(NULL, NULL, rsa_pem, strlen(rsa_pem), NULL, 0), -EINVAL);
    assert_int_equal(jwt_keys_add_pem(k, NULL, NULL, 0, NULL, 0), -EINVAL);
    /* A small error buffer is truncated and terminated. */
    memset(small, 'x', sizeof small);
    assert_int_equal(jwt_keys_add_pem(k, NULL, "junk", 4, small, sizeof small), -EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(jwt_keys_count(k), 0);

    EVP_PKEY_free(weak);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
    jwt_keys_free(k);
}

static void test_pem_file_errors(void **state)
{
    jwt_keys_t *k = keys_new();
    char err[512], *missing, *big;
    const char *path;
    (void)state;

    missing = fmt("%s/no-such-key.pem", tmpdir);
    assert_int_equal(jwt_keys_add_pem_file(k, NULL, missing, err, sizeof err), -ENOENT);
    assert_true(strncmp(err, missing, strlen(missing)) == 0);
    assert_non_null(strstr(err, ": No such file"));
    free(missing);

    path = write_file("not a key at all\n", 17);
    assert_int_equal(jwt_keys_add_pem_file(k, NULL, path, err, sizeof err), -EINVAL);
    assert_true(strncmp(err, path, strlen(path)) == 0);
    assert_non_null(strstr(err, ": no valid PEM block"));

    path = write_file("", 0);
    assert_int_equal(jwt_keys_add_pem_file(k, NULL, path, err, sizeof err), -EINVAL);

    {
        EVP_PKEY *weak = EVP_RSA_gen(1024);
        char *pem = pem_of(weak, 0);
        path = write_file(pem, strlen(pem));
        assert_int_equal(jwt_keys_add_pem_file(k, NULL, path, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "too small"));
        free(pem);
        EVP_PKEY_free(weak);
    }

    assert_int_equal(jwt_keys_add_pem_file(k, NULL, tmpdir, err, sizeof err), -EISDIR);
    assert_true(strncmp(err, tmpdir, strlen(tmpdir)) == 0);

    big = malloc(JWT_MAX_PEM_LEN + 1);
    memset(big, '\n', JWT_MAX_PEM_LEN + 1);
    path = write_file(big, JWT_MAX_PEM_LEN + 1);
    assert_int_equal(jwt_keys_add_pem_file(k, NULL, path, err, sizeof err), -EFBIG);
    free(big);

    if (geteuid() != 0) {
        path = write_file(rsa_pem, strlen(rsa_pem));
        assert_int_equal(chmod(path, 0), 0);
        assert_int_equal(jwt_keys_add_pem_file(k, NULL, path, err, sizeof err), -EACCES);
    }
    assert_int_equal(jwt_keys_add_pem_file(k, NULL, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(jwt_keys_count(k), 0);

    path = write_file(rsa_pem, strlen(rsa_pem));
    assert_int_equal(jwt_keys_add_pem_file(k, "ok", path, NULL, 0), 0);
    assert_int_equal(jwt_keys_add_pem_file(k, "ok", path, err, sizeof err), -EEXIST);
    assert_int_equal(jwt_keys_count(k), 1);
    jwt_keys_free(k);
}

/* Failed verifications must not leave errors on the thread's OpenSSL queue,
 * where TLS code on the same thread would find them. */
static void test_error_queue_untouched(void **state)
{
    unsigned char raw[64] = { 1 };
    char *t;
    (void)state;

    ERR_clear_error();
    t = tok_rs(RS, PL, rsa_b);
    assert_int_equal(vfy_len(all, t, strlen(t), NOW, 0), JWT_E_SIGNATURE);
    free(t);
    t = attach(signing_input(ES, PL), raw, sizeof raw);
    assert_int_equal(vfy_len(all, t, strlen(t), NOW, 0), JWT_E_SIGNATURE);
    free(t);
    assert_int_equal(jwt_keys_add_pem(all, NULL, "junk", 4, NULL, 0), -EINVAL);
    assert_int_equal(ERR_peek_error(), 0);
}

struct worker {
    int failures;
};

static char *conc_tokens[6];
static const int conc_want[6] = { JWT_OK, JWT_OK, JWT_OK, JWT_E_SIGNATURE, JWT_E_SIGNATURE, JWT_E_SIGNATURE };

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 150; i++) {
        for (int j = 0; j < 6; j++) {
            json_t *c = NULL;
            int r = jwt_verify(all, conc_tokens[j], strlen(conc_tokens[j]), NOW, 0, &c, NULL);
            if (r != conc_want[j] || (r == JWT_OK) != (c != NULL)) w->failures++;
            json_decref(c);
        }
    }
    return NULL;
}

/* Several threads verify against one set at once (run under TSan to check
 * races; here it checks results and, under ASan, memory). */
static void test_concurrent_verify(void **state)
{
    pthread_t th[4];
    struct worker w[4];
    (void)state;

    conc_tokens[0] = tok_hs(HS, PL, S1, SLEN(S1));
    conc_tokens[1] = tok_rs(RS, PL, rsa);
    conc_tokens[2] = tok_es(ES, PL, ec);
    conc_tokens[3] = tok_hs(HS, PL, S2, SLEN(S2));
    conc_tokens[4] = tok_rs(RS, PL, rsa_b);
    conc_tokens[5] = tok_es(ES, PL, ec_b);
    for (int i = 0; i < 4; i++) {
        w[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    for (int j = 0; j < 6; j++) free(conc_tokens[j]);
}

static void test_err_name(void **state)
{
    (void)state;
    assert_string_equal(jwt_err_name(JWT_OK), "ok");
    assert_string_equal(jwt_err_name(JWT_E_MALFORMED), "malformed");
    assert_string_equal(jwt_err_name(JWT_E_ALG), "alg");
    assert_string_equal(jwt_err_name(JWT_E_SIGNATURE), "signature");
    assert_string_equal(jwt_err_name(JWT_E_EXPIRED), "expired");
    assert_string_equal(jwt_err_name(JWT_E_NOT_YET_VALID), "not_yet_valid");
    assert_string_equal(jwt_err_name(JWT_E_CLAIMS), "claims");
    assert_string_equal(jwt_err_name(JWT_E_KEY), "key");
    assert_string_equal(jwt_err_name(-ENOMEM), "nomem");
    assert_string_equal(jwt_err_name(99), "unknown");
    assert_string_equal(jwt_err_name(-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_api),
        cmocka_unit_test(test_hs256_known_answer),
        cmocka_unit_test(test_valid_all_algs),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_tampered_signature),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_unsupported),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_malformed_base64url),
        cmocka_unit_test(test_malformed_structure),
        cmocka_unit_test(test_length_cap),
        cmocka_unit_test(test_non_object),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_exp_nbf),
        cmocka_unit_test(test_claim_types),
        cmocka_unit_test(test_time_range),
        cmocka_unit_test(test_kid_selection),
        cmocka_unit_test(test_es256_signature_form),
        cmocka_unit_test(test_rs256_signature_form),
        cmocka_unit_test(test_key_formats),
        cmocka_unit_test(test_key_refusals),
        cmocka_unit_test(test_pem_file_errors),
        cmocka_unit_test(test_error_queue_untouched),
        cmocka_unit_test(test_concurrent_verify),
        cmocka_unit_test(test_err_name),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
