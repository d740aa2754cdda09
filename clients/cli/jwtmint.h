/* clients/cli/jwtmint.h - signing JSON Web Tokens for Herald (herald-cli token).
 *
 * Owns: the compact JWS of a claims object, signed HS256 with a shared secret
 * or RS256/ES256 with a private key, as the broker's verifier
 * (broker/auth/jwt.c) expects them: an RS256 key of 2048 bits or more, an
 * ES256 key on P-256 with the signature as r || s (RFC 7518 3.4), base64url
 * without padding. Does not own: which claims a token carries (token.c).
 * Stateless; any thread. */
#ifndef HERALD_CLI_JWTMINT_H
#define HERALD_CLI_JWTMINT_H

#include <jansson.h>
#include <stddef.h>
#include <openssl/evp.h>

/* jwtmint_load_key() - read a PEM private key (RSA of 2048 bits or more, or
 * EC on P-256) from @path.
 * @out: [out] the key; the caller frees it with EVP_PKEY_free().
 * @alg: [out] "RS256" or "ES256" (static).
 * Return: 0, or -1 with @why. */
int jwtmint_load_key(const char *path, EVP_PKEY **out, const char **alg, char *why, size_t whylen);

/* jwtmint_sign() - the token for @claims (borrowed), signed with @key (a
 * private key from jwtmint_load_key()) or, when @key is NULL, HS256 with the
 * @secret_len bytes at @secret. @kid: NULL, or a key id for the header.
 * @out: [out] a NUL-terminated token the caller frees with free().
 * Return: 0, or -1 with @why. */
int jwtmint_sign(const json_t *claims, EVP_PKEY *key, const char *secret, size_t secret_len, const char *kid,
                 char **out, char *why, size_t whylen);

#endif
