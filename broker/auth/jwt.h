/* broker/auth/jwt.h - verifying JSON Web Tokens (RFC 7519) signed as compact JWS.
 *
 * Owns: a set of verification keys (HS256 shared secrets, RS256 and ES256
 * public keys) and the check of one token against it: the compact form, the
 * JOSE header, the signature, and the registered time claims exp and nbf.
 * Does not own: policy. Which issuer and audience to accept, whether exp is
 * required, and what the claims grant are the caller's to decide on the
 * claims object this module returns.
 *
 * Only HS256, RS256 and ES256 exist here; every other alg, "none" included,
 * is refused. Each key verifies exactly one alg, fixed by its type when it is
 * added: a secret verifies only HS256, an RSA key only RS256, an EC P-256 key
 * only ES256. So a token can never make a public key serve as an HMAC secret
 * (the classic RS256 -> HS256 confusion). The header fields jku, jwk, x5u and
 * x5c are never used to find a key: keys come only from the set.
 *
 * Threads: build the set on one thread; once built, any number of threads may
 * call jwt_verify() on it at once (it holds no mutable state). Adding keys
 * while another thread verifies is not allowed. */
#ifndef HERALD_JWT_H
#define HERALD_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Longest token jwt_verify() reads; longer ones are JWT_E_MALFORMED. Bounds
 * the work an unauthenticated client can cause before its signature is
 * checked. */
#define JWT_MAX_TOKEN_LEN 8192

/* Shortest HS256 secret accepted: RFC 7518 section 3.2 requires a key at least
 * as long as the hash output (256 bits). */
#define JWT_MIN_SECRET_LEN 32

/* RSA moduli accepted, in bits. Below 2048 is breakable; above 16384 only
 * makes every verification slow. */
#define JWT_RSA_MIN_BITS 2048
#define JWT_RSA_MAX_BITS 16384

/* Largest PEM text (file or memory) read for one key. */
#define JWT_MAX_PEM_LEN (1024 * 1024)

/* Longest kid stored with a key, in bytes (without the NUL). */
#define JWT_MAX_KID_LEN 256

/* Latest exp, nbf or iat accepted, Unix seconds: 9999-12-31T23:59:59Z. The
 * earliest is 0 (1970). A time outside 0..JWT_MAX_TIME is JWT_E_CLAIMS, so a
 * caller can convert any accepted time to int64_t (reals included) and add a
 * leeway of up to UINT_MAX to it without overflow. */
#define JWT_MAX_TIME INT64_C(253402300799)

typedef struct jwt_keys jwt_keys_t;

/* Outcomes of jwt_verify(). Positive, so that they never collide with the
 * negative errno values it also returns. */
enum jwt_err {
    JWT_OK = 0,
    JWT_E_MALFORMED = 1,          /* not a compact JWS of JSON objects, too long, bad base64url, bad kid/typ */
    JWT_E_ALG,                    /* alg missing, "none", unsupported, or a crit header */
    JWT_E_SIGNATURE,              /* no candidate key verifies the signature */
    JWT_E_EXPIRED,                /* now > exp + leeway */
    JWT_E_NOT_YET_VALID,          /* now + leeway < nbf */
    JWT_E_CLAIMS,                 /* exp, nbf or iat not a number in 0..JWT_MAX_TIME; sub not a string */
    JWT_E_KEY,                    /* no key to try: unknown kid (and no key without a kid), kid of a key for another alg, or no key for alg */
};

/* jwt_keys_new() - an empty key set.
 * @out: [out] the new set; the caller frees it with jwt_keys_free(). Written
 *       only on success.
 * Return: 0, or -ENOMEM. */
int jwt_keys_new(jwt_keys_t **out);

/* jwt_keys_free() - free @k and every key in it (secrets are wiped first).
 * NULL is a no-op. No jwt_verify() on @k may be running. */
void jwt_keys_free(jwt_keys_t *k);

/* jwt_keys_add_secret() - add an HS256 shared secret to @k.
 * @kid: [in] key id (copied), or NULL for a key without one. A non-NULL kid
 *       must be 1..JWT_MAX_KID_LEN bytes and unique within @k.
 * @secret: [in] @len bytes, copied; any bytes, NULs included.
 * @len: at least JWT_MIN_SECRET_LEN.
 * Return: 0; -EINVAL (NULL @k or @secret, @len too short, bad kid); -EEXIST
 * (@kid already in @k); -ENOMEM. On failure @k is unchanged. */
int jwt_keys_add_secret(jwt_keys_t *k, const char *kid, const unsigned char *secret, size_t len);

/* jwt_keys_add_pem() - add the public key in the PEM text @pem (@len bytes,
 * need not be NUL-terminated) to @k. The first PEM block is used and must be
 * "PUBLIC KEY" (SubjectPublicKeyInfo), "RSA PUBLIC KEY" (PKCS#1) or
 * "CERTIFICATE" (X.509: only its public key is used; its validity dates,
 * issuer and chain are not checked). Private keys are refused: the broker
 * never needs one. The key type decides the alg the key verifies: RSA
 * (JWT_RSA_MIN_BITS..JWT_RSA_MAX_BITS bits) -> RS256, EC on the named curve
 * P-256 -> ES256; any other type or curve is refused.
 * @kid: [in] as for jwt_keys_add_secret().
 * @err: [out] on failure, a NUL-terminated reason for the operator (@errlen
 *       bytes, truncated to fit); may be NULL when @errlen is 0.
 * Return: 0; -EINVAL (bad arguments, unusable text or key); -EEXIST (@kid
 * already in @k); -EFBIG (more than JWT_MAX_PEM_LEN bytes); -ENOMEM. On
 * failure @k is unchanged. */
int jwt_keys_add_pem(jwt_keys_t *k, const char *kid, const char *pem, size_t len, char *err, size_t errlen);

/* jwt_keys_add_pem_file() - jwt_keys_add_pem() on the contents of the file
 * @path.
 * @err: [out] on failure, "<path>: <reason>".
 * Return: as jwt_keys_add_pem(), plus -errno when the file cannot be opened
 * or read (-ENOENT, -EACCES, -EISDIR, ...). */
int jwt_keys_add_pem_file(jwt_keys_t *k, const char *kid, const char *path, char *err, size_t errlen);

/* jwt_keys_count() - number of keys in @k (0 for NULL). */
size_t jwt_keys_count(const jwt_keys_t *k);

/* jwt_verify() - check the compact JWS @token against the keys in @k.
 *
 * @token: [in] @len bytes, need not be NUL-terminated; at most
 *         JWT_MAX_TOKEN_LEN. Exactly three base64url parts (RFC 7515 section 2:
 *         no padding, no '+', '/' or whitespace, no non-zero unused bits)
 *         joined by '.'. The header and, once the signature is good, the
 *         payload must be JSON objects without duplicate keys or "\u0000"
 *         in strings.
 * Key choice: if the header has a kid that names a key, only that key is
 *         tried, and it must be of the type the header's alg needs (else
 *         JWT_E_KEY). If the kid names no key, the keys added WITHOUT a kid
 *         for that alg are tried in the order added (identity providers put
 *         a kid in every token, and a key configured without one stands in
 *         for any); with none such, JWT_E_KEY. Keys added with a different
 *         kid are never tried for it.
 *         Without a kid, every key of that type is tried, in the order added.
 * @now: the current time, Unix seconds.
 * @leeway: seconds of clock skew allowed on exp and nbf. The token is expired
 *         when @now > exp + @leeway and not yet valid when @now + @leeway <
 *         nbf, so @now == exp + @leeway is still accepted. exp, nbf and iat,
 *         when present, must be numbers (integers or reals) from 0 to
 *         JWT_MAX_TIME and sub a string, else JWT_E_CLAIMS, whatever @now;
 *         iat is not compared with @now. Tokens without exp are accepted:
 *         requiring one is the caller's policy.
 * @claims: [out] on JWT_OK, a new reference to the payload object (the caller
 *         json_decref()s it); on any other return, NULL. May be NULL.
 * @why: [out] on failure, a static English reason for logs (never the token's
 *         contents); on JWT_OK, NULL. May be NULL.
 * Return: JWT_OK, a positive JWT_E_* code, or -ENOMEM. Any thread; see the
 * file comment. Leaves the calling thread's OpenSSL error queue as it was. */
int jwt_verify(const jwt_keys_t *k, const char *token, size_t len, int64_t now, unsigned leeway,
               json_t **claims, const char **why);

/* jwt_err_name() - a short lowercase name for a jwt_verify() return
 * ("ok", "malformed", ..., "nomem"), "unknown" for any other value.
 * Return: a static string. */
const char *jwt_err_name(int err);

#endif
