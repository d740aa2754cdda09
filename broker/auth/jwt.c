/* broker/auth/jwt.c - see jwt.h.
 *
 * Owns: the key set and the verification of one compact JWS against it.
 * Does not own: where keys come from (config) or what the claims grant.
 *
 * DESIGN: the alg a key verifies is decided once, from the key's own type,
 * when the key is added; the token's alg only selects among keys that were
 * already of that alg. Nothing read from a token can turn a key into another
 * kind of key, which is what rules out algorithm confusion. Verification
 * works on a copy of the token's parts in a stack buffer (the token is at
 * most JWT_MAX_TOKEN_LEN bytes), and each call creates its own OpenSSL
 * contexts, so concurrent calls on one set share nothing mutable. The payload
 * is parsed only after its signature verified, so unauthenticated input
 * reaches the JSON parser only through the (small) header. */
#include "auth/jwt.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

enum alg { ALG_HS256, ALG_RS256, ALG_ES256 };

static const char *const alg_names[] = { [ALG_HS256] = "HS256", [ALG_RS256] = "RS256", [ALG_ES256] = "ES256" };

struct jwt_key {
    enum alg alg;                 /* the one alg this key verifies */
    char *kid;                    /* NULL: none */
    size_t kid_len;
    unsigned char *secret;        /* HS256 only */
    size_t secret_len;
    EVP_PKEY *pkey;               /* RS256 and ES256 only */
};

struct jwt_keys {
    struct jwt_key *v;
    size_t n, cap;
};

#define SHA256_LEN 32
#define ES256_SIG_LEN 64          /* R || S, 32 bytes each (RFC 7518 section 3.4) */
#define ES256_DER_MAX 80          /* SEQUENCE of two INTEGERs of at most 33 bytes: 72 */

/* ------------------------------------------------------------------ */
/* Key set                                                             */

int jwt_keys_new(jwt_keys_t **out)
{
    jwt_keys_t *k;

    if (!out) return -EINVAL;
    k = calloc(1, sizeof *k);
    if (!k) return -ENOMEM;
    *out = k;
    return 0;
}

static void key_deinit(struct jwt_key *key)
{
    free(key->kid);
    if (key->secret) {
        OPENSSL_cleanse(key->secret, key->secret_len);
        free(key->secret);
    }
    EVP_PKEY_free(key->pkey);
}

void jwt_keys_free(jwt_keys_t *k)
{
    size_t i;

    if (!k) return;
    for (i = 0; i < k->n; i++) key_deinit(&k->v[i]);
    free(k->v);
    free(k);
}

size_t jwt_keys_count(const jwt_keys_t *k)
{
    return k ? k->n : 0;
}

static const struct jwt_key *find_kid(const jwt_keys_t *k, const char *kid, size_t len)
{
    size_t i;

    for (i = 0; i < k->n; i++)
        if (k->v[i].kid && k->v[i].kid_len == len && memcmp(k->v[i].kid, kid, len) == 0) return &k->v[i];
    return NULL;
}

/* Checks that @kid may be added to @k. Return: 0, -EINVAL, -EEXIST. */
static int check_kid(const jwt_keys_t *k, const char *kid, char *err, size_t errlen)
{
    size_t len;

    if (!kid) return 0;
    len = strlen(kid);
    if (len == 0 || len > JWT_MAX_KID_LEN) {
        if (errlen) snprintf(err, errlen, "kid must be 1 to %d bytes", JWT_MAX_KID_LEN);
        return -EINVAL;
    }
    if (find_kid(k, kid, len)) {
        if (errlen) snprintf(err, errlen, "kid \"%s\" is already in use", kid);
        return -EEXIST;
    }
    return 0;
}

/* Appends a key to @k, taking @secret and @pkey on success only.
 * Return: 0, -ENOMEM. */
static int add_key(jwt_keys_t *k, const char *kid, enum alg alg, unsigned char *secret, size_t secret_len,
                   EVP_PKEY *pkey)
{
    struct jwt_key key = { .alg = alg, .secret = secret, .secret_len = secret_len, .pkey = pkey };

    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        struct jwt_key *v = realloc(k->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        k->v = v;
        k->cap = cap;
    }
    if (kid) {
        key.kid_len = strlen(kid);
        key.kid = malloc(key.kid_len + 1);
        if (!key.kid) return -ENOMEM;
        memcpy(key.kid, kid, key.kid_len + 1);
    }
    k->v[k->n++] = key;
    return 0;
}

int jwt_keys_add_secret(jwt_keys_t *k, const char *kid, const unsigned char *secret, size_t len)
{
    unsigned char *copy;
    int r;

    /* HMAC() takes the key length as an int. */
    if (!k || !secret || len < JWT_MIN_SECRET_LEN || len > INT_MAX) return -EINVAL;
    r = check_kid(k, kid, NULL, 0);
    if (r) return r;
    copy = malloc(len);
    if (!copy) return -ENOMEM;
    memcpy(copy, secret, len);
    r = add_key(k, kid, ALG_HS256, copy, len, NULL);
    if (r) {
        OPENSSL_cleanse(copy, len);
        free(copy);
    }
    return r;
}

/* Returns -ENOMEM if the last OpenSSL error was an allocation failure, else
 * @otherwise. */
static int ossl_errno(int otherwise)
{
    return ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_MALLOC_FAILURE ? -ENOMEM : otherwise;
}

/* Decides which alg @pkey verifies, refusing keys too weak or of other types.
 * Return: 0, or -EINVAL with @err set. */
static int classify_key(EVP_PKEY *pkey, enum alg *alg, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < JWT_RSA_MIN_BITS) {
            snprintf(err, errlen, "RSA key of %d bits is too small (at least %d)", bits, JWT_RSA_MIN_BITS);
            return -EINVAL;
        }
        if (bits > JWT_RSA_MAX_BITS) {
            snprintf(err, errlen, "RSA key of %d bits is too large (at most %d)", bits, JWT_RSA_MAX_BITS);
            return -EINVAL;
        }
        *alg = ALG_RS256;
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[80];
        size_t glen = 0;
        /* A key with explicit curve parameters has no group name: refused,
         * since ES256 is defined only on the named curve P-256. */
        if (!EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen)) {
            snprintf(err, errlen, "EC key without a named curve (ES256 needs P-256)");
            return -EINVAL;
        }
        if (OBJ_txt2nid(group) != NID_X9_62_prime256v1) {
            snprintf(err, errlen, "EC key on curve %s (ES256 needs P-256)", group);
            return -EINVAL;
        }
        *alg = ALG_ES256;
        return 0;
    }
    snprintf(err, errlen, "unsupported key type %s (need RSA or EC P-256)",
             EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "unknown");
    return -EINVAL;
}

/* Parses the first PEM block of @pem into a public key.
 * @out: [out] a new key on success.
 * Return: 0, -EINVAL or -ENOMEM with @err set. */
static int parse_pem(const char *pem, size_t len, EVP_PKEY **out, char *err, size_t errlen)
{
    BIO *bio;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    const unsigned char *p;
    long dlen = 0;
    EVP_PKEY *pkey = NULL;
    int r = -EINVAL;

    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!PEM_read_bio(bio, &name, &header, &data, &dlen)) {
        r = ossl_errno(-EINVAL);
        snprintf(err, errlen, r == -ENOMEM ? "out of memory" : "no valid PEM block found");
        goto out;
    }
    if (header && header[0]) {
        snprintf(err, errlen, "PEM block \"%.40s\" has headers (encrypted?), which are not supported", name);
        goto out;
    }
    p = data;
    if (strstr(name, "PRIVATE KEY")) {
        snprintf(err, errlen, "PEM block \"%.40s\" is a private key; give the public key", name);
        goto out;
    } else if (strcmp(name, "PUBLIC KEY") == 0) {
        pkey = d2i_PUBKEY(NULL, &p, dlen);
    } else if (strcmp(name, "RSA PUBLIC KEY") == 0) {
        pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, dlen);
    } else if (strcmp(name, "CERTIFICATE") == 0) {
        X509 *x = d2i_X509(NULL, &p, dlen);
        if (x) pkey = X509_get_pubkey(x);
        X509_free(x);
    } else {
        snprintf(err, errlen, "PEM block \"%.40s\" is not a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", name);
        goto out;
    }
    if (!pkey) {
        r = ossl_errno(-EINVAL);
        snprintf(err, errlen, r == -ENOMEM ? "out of memory" : "cannot parse the %.40s", name);
        goto out;
    }
    if (p != data + dlen) {
        snprintf(err, errlen, "trailing bytes inside the %.40s block", name);
        EVP_PKEY_free(pkey);
        goto out;
    }
    *out = pkey;
    r = 0;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    return r;
}

int jwt_keys_add_pem(jwt_keys_t *k, const char *kid, const char *pem, size_t len, char *err, size_t errlen)
{
    char dummy[1];
    EVP_PKEY *pkey = NULL;
    enum alg alg;
    int r;

    /* Every error path writes @err; point it somewhere harmless when the
     * caller does not want it. */
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!k || !pem) {
        snprintf(err, errlen, "no key set or no PEM text");
        return -EINVAL;
    }
    if (len > JWT_MAX_PEM_LEN) {
        snprintf(err, errlen, "PEM text larger than %d bytes", JWT_MAX_PEM_LEN);
        return -EFBIG;
    }
    r = check_kid(k, kid, err, errlen);
    if (r) return r;

    /* The caller's OpenSSL error queue is left as it was: our failures are
     * reported through @err. */
    ERR_set_mark();
    r = parse_pem(pem, len, &pkey, err, errlen);
    if (!r) r = classify_key(pkey, &alg, err, errlen);
    if (!r) {
        r = add_key(k, kid, alg, NULL, 0, pkey);
        if (r) snprintf(err, errlen, "out of memory");
    }
    if (r) EVP_PKEY_free(pkey);
    ERR_pop_to_mark();
    return r;
}

int jwt_keys_add_pem_file(jwt_keys_t *k, const char *kid, const char *path, char *err, size_t errlen)
{
    char dummy[1];
    char reason[256];
    FILE *f;
    char *buf = NULL;
    size_t n;
    int r;

    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!path) {
        snprintf(err, errlen, "no path");
        return -EINVAL;
    }
    f = fopen(path, "rb");
    if (!f) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    /* One byte more than the limit tells "too large" from "exactly full". */
    buf = malloc(JWT_MAX_PEM_LEN + 1);
    if (!buf) {
        r = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    n = fread(buf, 1, JWT_MAX_PEM_LEN + 1, f);
    if (ferror(f)) {
        r = errno ? -errno : -EIO;
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        goto out;
    }
    if (n > JWT_MAX_PEM_LEN) {
        r = -EFBIG;
        snprintf(err, errlen, "%s: larger than %d bytes", path, JWT_MAX_PEM_LEN);
        goto out;
    }
    r = jwt_keys_add_pem(k, kid, buf, n, reason, sizeof reason);
    if (r) snprintf(err, errlen, "%s: %s", path, reason);
out:
    free(buf);
    fclose(f);
    return r;
}

/* ------------------------------------------------------------------ */
/* Verification                                                        */

/* The value of one base64url character, or -1 for anything outside the
 * URL-safe alphabet (which excludes '+', '/', '=' and whitespace). */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decodes @n characters at @s, unpadded base64url, into @out (room for
 * n * 3 / 4 bytes). Refuses a length that leaves a lone character, and
 * non-zero unused bits in the last character, so each byte string has
 * exactly one accepted encoding.
 * Return: the decoded length, or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t i, o = 0;

    if (n % 4 == 1) return -1;
    for (i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc) return -1;
    return (long)o;
}

/* The parts of one token. The signing input points into the token; the
 * decoded parts point into the caller's buffer. */
struct jws {
    const char *input;            /* "<header>.<payload>", as sent */
    size_t input_len;
    const unsigned char *header, *payload, *sig;
    size_t header_len, payload_len, sig_len;
};

/* Splits and decodes @token into @j, using @buf (@len bytes) for the decoded
 * parts. Return: JWT_OK or JWT_E_MALFORMED with @why set. */
static int split_token(const char *token, size_t len, unsigned char *buf, struct jws *j, const char **why)
{
    const char *dot1, *dot2, *end = token + len;
    long n;

    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1))) {
        *why = "not three dot-separated parts";
        return JWT_E_MALFORMED;
    }
    if (dot1 == token || dot2 == dot1 + 1) {
        *why = "empty header or payload";
        return JWT_E_MALFORMED;
    }
    j->input = token;
    j->input_len = (size_t)(dot2 - token);

    n = b64url_decode(token, (size_t)(dot1 - token), buf);
    if (n < 0) goto bad;
    j->header = buf;
    j->header_len = (size_t)n;
    buf += n;
    n = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf);
    if (n < 0) goto bad;
    j->payload = buf;
    j->payload_len = (size_t)n;
    buf += n;
    n = b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), buf);
    if (n < 0) goto bad;
    j->sig = buf;
    j->sig_len = (size_t)n;
    return JWT_OK;
bad:
    *why = "invalid base64url";
    return JWT_E_MALFORMED;
}

/* Parses @len bytes of JSON that must be one object.
 * Return: JWT_OK with *out a new reference, JWT_E_MALFORMED, or -ENOMEM. */
static int parse_object(const unsigned char *s, size_t len, json_t **out)
{
    json_error_t e;
    json_t *v = json_loadb((const char *)s, len, JSON_REJECT_DUPLICATES, &e);

    if (!v) return json_error_code(&e) == json_error_out_of_memory ? -ENOMEM : JWT_E_MALFORMED;
    if (!json_is_object(v)) {
        json_decref(v);
        return JWT_E_MALFORMED;
    }
    *out = v;
    return JWT_OK;
}

/* Reads alg, crit, kid and typ from the header.
 * @kid: [out] the kid (borrowed from @hdr), or NULL.
 * Return: JWT_OK, JWT_E_ALG or JWT_E_MALFORMED with @why set. */
static int check_header(const json_t *hdr, enum alg *alg, const json_t **kid, const char **why)
{
    const json_t *v = json_object_get(hdr, "alg");
    const char *name;
    size_t i;

    if (!v) {
        *why = "no alg in header";
        return JWT_E_ALG;
    }
    if (!json_is_string(v)) {
        *why = "alg is not a string";
        return JWT_E_ALG;
    }
    name = json_string_value(v);
    if (strcasecmp(name, "none") == 0) {
        *why = "alg none is never accepted";
        return JWT_E_ALG;
    }
    /* Exact, case-sensitive match over the whole string (a NUL inside the
     * JSON string would otherwise cut it short). */
    for (i = 0; i < sizeof alg_names / sizeof alg_names[0]; i++)
        if (json_string_length(v) == strlen(alg_names[i]) && strcmp(name, alg_names[i]) == 0) break;
    if (i == sizeof alg_names / sizeof alg_names[0]) {
        *why = "unsupported alg";
        return JWT_E_ALG;
    }
    *alg = (enum alg)i;
    /* crit lists extensions the recipient must understand (RFC 7515 section
     * 4.1.11); we understand none, so any crit fails closed. */
    if (json_object_get(hdr, "crit")) {
        *why = "crit header: no extensions are supported";
        return JWT_E_ALG;
    }
    v = json_object_get(hdr, "kid");
    if (v && !json_is_string(v)) {
        *why = "kid is not a string";
        return JWT_E_MALFORMED;
    }
    *kid = v;
    v = json_object_get(hdr, "typ");
    if (v && !json_is_string(v)) {
        *why = "typ is not a string";
        return JWT_E_MALFORMED;
    }
    return JWT_OK;
}

/* The signature converted once per token into what OpenSSL verifies. */
struct sig {
    const unsigned char *p;
    size_t len;
    unsigned char der[ES256_DER_MAX];   /* ES256: R || S re-encoded as DER */
};

/* Turns a JWS ES256 signature (R || S) into DER for OpenSSL.
 * Return: 1, 0 (wrong length: DER input and anything else), or -ENOMEM. */
static int es256_to_der(const unsigned char *raw, size_t len, struct sig *s)
{
    ECDSA_SIG *es;
    BIGNUM *r, *sv;
    unsigned char *p = s->der;
    int n, ret = -ENOMEM;

    if (len != ES256_SIG_LEN) return 0;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(raw, 32, NULL);
    sv = BN_bin2bn(raw + 32, 32, NULL);
    if (!es || !r || !sv) {
        BN_free(r);
        BN_free(sv);
        goto out;
    }
    ECDSA_SIG_set0(es, r, sv);   /* cannot fail with both non-NULL; takes them */
    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || n > (int)sizeof s->der) goto out;
    if (i2d_ECDSA_SIG(es, &p) != n) goto out;
    s->p = s->der;
    s->len = (size_t)n;
    ret = 1;
out:
    ECDSA_SIG_free(es);
    return ret;
}

/* Whether @key verifies @s over @j's signing input.
 * Return: 1 verified, 0 not, -ENOMEM. */
static int key_verifies(const struct jwt_key *key, const struct jws *j, const struct sig *s)
{
    EVP_MD_CTX *ctx;
    EVP_PKEY_CTX *pctx = NULL;
    int ok = 0;

    if (key->alg == ALG_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (s->len != SHA256_LEN) return 0;
        if (!HMAC(EVP_sha256(), key->secret, (int)key->secret_len, (const unsigned char *)j->input, j->input_len,
                  mac, &maclen) || maclen != SHA256_LEN)
            return 0;
        ok = CRYPTO_memcmp(mac, s->p, SHA256_LEN) == 0;
        OPENSSL_cleanse(mac, sizeof mac);
        return ok;
    }
    /* RSA PKCS#1 v1.5 signatures are exactly the modulus length. */
    if (key->alg == ALG_RS256 && s->len != (size_t)EVP_PKEY_get_size(key->pkey)) return 0;
    ctx = EVP_MD_CTX_new();
    if (!ctx) return -ENOMEM;
    if (EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, key->pkey) != 1) goto out;
    if (key->alg == ALG_RS256 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) goto out;
    ok = EVP_DigestVerify(ctx, s->p, s->len, (const unsigned char *)j->input, j->input_len) == 1;
out:
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Verifies the signature with the key the header names, or with every key of
 * the alg. Return: JWT_OK, JWT_E_KEY, JWT_E_SIGNATURE, or -ENOMEM. */
static int check_signature(const jwt_keys_t *k, enum alg alg, const json_t *kid, const struct jws *j,
                           const char **why)
{
    struct sig s = { .p = j->sig, .len = j->sig_len };
    size_t i;
    int tried = 0, r;

    if (alg == ALG_ES256) {
        r = es256_to_der(j->sig, j->sig_len, &s);
        if (r < 0) return r;
        if (r == 0) {
            *why = "ES256 signature is not 64 bytes of R || S";
            return JWT_E_SIGNATURE;
        }
    }
    if (kid) {
        const struct jwt_key *key = find_kid(k, json_string_value(kid), json_string_length(kid));
        /* Identity providers put a kid in every token; keys configured
         * without one stand in for any kid, so only a kid that names none of
         * the keys when every key has a kid is refused. */
        if (!key) {
            for (i = 0; i < k->n; i++) {
                if (k->v[i].kid || k->v[i].alg != alg) continue;
                tried = 1;
                r = key_verifies(&k->v[i], j, &s);
                if (r < 0) return r;
                if (r) return JWT_OK;
            }
            *why = tried ? "signature does not verify" : "no key with the token's kid";
            return tried ? JWT_E_SIGNATURE : JWT_E_KEY;
        }
        if (key->alg != alg) {
            *why = "the key with the token's kid is not for its alg";
            return JWT_E_KEY;
        }
        r = key_verifies(key, j, &s);
        if (r < 0) return r;
        if (r) return JWT_OK;
        *why = "signature does not verify";
        return JWT_E_SIGNATURE;
    }
    for (i = 0; i < k->n; i++) {
        if (k->v[i].alg != alg) continue;
        tried = 1;
        r = key_verifies(&k->v[i], j, &s);
        if (r < 0) return r;
        if (r) return JWT_OK;
    }
    if (!tried) {
        *why = "no key for the token's alg";
        return JWT_E_KEY;
    }
    *why = "signature does not verify";
    return JWT_E_SIGNATURE;
}

/* exp: whether @now is past @v + @leeway. Integers are compared exactly over
 * the whole int64 range: the difference of two int64 values where the larger
 * comes first always fits a uint64. */
static int past_exp(const json_t *v, int64_t now, unsigned leeway)
{
    if (json_is_integer(v)) {
        int64_t exp = json_integer_value(v);
        return now > exp && (uint64_t)now - (uint64_t)exp > leeway;
    }
    return (long double)now > (long double)json_real_value(v) + leeway;
}

/* nbf: whether @now + @leeway is before @v. */
static int before_nbf(const json_t *v, int64_t now, unsigned leeway)
{
    if (json_is_integer(v)) {
        int64_t nbf = json_integer_value(v);
        return nbf > now && (uint64_t)nbf - (uint64_t)now > leeway;
    }
    return (long double)now + leeway < (long double)json_real_value(v);
}

/* Whether the number @v is a time in 0..JWT_MAX_TIME. A real is compared as
 * a double, never converted, since converting one beyond int64 is undefined;
 * NaN fails both comparisons. */
static int time_in_range(const json_t *v)
{
    double d;

    if (json_is_integer(v)) return json_integer_value(v) >= 0 && json_integer_value(v) <= JWT_MAX_TIME;
    d = json_real_value(v);
    return d >= 0 && d <= (double)JWT_MAX_TIME;
}

/* Return: JWT_OK, JWT_E_CLAIMS, JWT_E_EXPIRED or JWT_E_NOT_YET_VALID. */
static int check_claims(const json_t *c, int64_t now, unsigned leeway, const char **why)
{
    const json_t *exp = json_object_get(c, "exp");
    const json_t *nbf = json_object_get(c, "nbf");
    const json_t *iat = json_object_get(c, "iat");
    const json_t *sub = json_object_get(c, "sub");

    if ((exp && !json_is_number(exp)) || (nbf && !json_is_number(nbf)) || (iat && !json_is_number(iat))) {
        *why = "exp, nbf or iat is not a number";
        return JWT_E_CLAIMS;
    }
    if ((exp && !time_in_range(exp)) || (nbf && !time_in_range(nbf)) || (iat && !time_in_range(iat))) {
        *why = "exp, nbf or iat is not a time from 1970 to 9999";
        return JWT_E_CLAIMS;
    }
    if (sub && !json_is_string(sub)) {
        *why = "sub is not a string";
        return JWT_E_CLAIMS;
    }
    if (exp && past_exp(exp, now, leeway)) {
        *why = "token expired";
        return JWT_E_EXPIRED;
    }
    if (nbf && before_nbf(nbf, now, leeway)) {
        *why = "token not yet valid";
        return JWT_E_NOT_YET_VALID;
    }
    return JWT_OK;
}

int jwt_verify(const jwt_keys_t *k, const char *token, size_t len, int64_t now, unsigned leeway,
               json_t **claims, const char **why)
{
    /* Decoded parts are shorter than their encodings, so all three fit in
     * as many bytes as the token has. */
    unsigned char buf[JWT_MAX_TOKEN_LEN];
    const char *reason = NULL;
    struct jws j;
    json_t *hdr = NULL, *payload = NULL;
    const json_t *kid = NULL;
    enum alg alg = ALG_HS256;
    int r;

    if (claims) *claims = NULL;
    if (!token || len == 0) {
        reason = "empty token";
        r = JWT_E_MALFORMED;
        goto done;
    }
    if (len > JWT_MAX_TOKEN_LEN) {
        reason = "token too long";
        r = JWT_E_MALFORMED;
        goto done;
    }
    r = split_token(token, len, buf, &j, &reason);
    if (r) goto done;
    r = parse_object(j.header, j.header_len, &hdr);
    if (r) {
        reason = r < 0 ? "out of memory" : "header is not a JSON object";
        goto done;
    }
    r = check_header(hdr, &alg, &kid, &reason);
    if (r) goto done;
    if (!k) {
        reason = "no key set";
        r = JWT_E_KEY;
        goto done;
    }
    ERR_set_mark();
    r = check_signature(k, alg, kid, &j, &reason);
    /* Failed verifications leave entries on this thread's OpenSSL error
     * queue; TLS code on the same thread reads that queue, so drop ours. */
    ERR_pop_to_mark();
    if (r) {
        if (r < 0) reason = "out of memory";
        goto done;
    }
    r = parse_object(j.payload, j.payload_len, &payload);
    if (r) {
        reason = r < 0 ? "out of memory" : "payload is not a JSON object";
        goto done;
    }
    r = check_claims(payload, now, leeway, &reason);
    if (r) goto done;
    if (claims) {
        *claims = payload;
        payload = NULL;
    }
done:
    json_decref(hdr);
    json_decref(payload);
    if (why) *why = r ? reason : NULL;
    return r;
}

const char *jwt_err_name(int err)
{
    switch (err) {
    case JWT_OK: return "ok";
    case JWT_E_MALFORMED: return "malformed";
    case JWT_E_ALG: return "alg";
    case JWT_E_SIGNATURE: return "signature";
    case JWT_E_EXPIRED: return "expired";
    case JWT_E_NOT_YET_VALID: return "not_yet_valid";
    case JWT_E_CLAIMS: return "claims";
    case JWT_E_KEY: return "key";
    case -ENOMEM: return "nomem";
    default: return "unknown";
    }
}
