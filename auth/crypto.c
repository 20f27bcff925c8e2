/* The primitives auth builds on: CSPRNG bytes, unpadded base64url, SHA-256 and argon2id.
 * Nothing here logs a secret; argon2's own error strings never contain the input. */
#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "log.h"

static const char b64url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int auth__random(void *buf, size_t n)
{
    if (n > (size_t)INT32_MAX || RAND_bytes(buf, (int)n) != 1) {
        BASE_LOG(ERROR, "auth: the system random generator failed");
        return BASE_E_IO;
    }
    return 0;
}

void auth__b64url(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
        out[o++] = b64url_chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
    }
    out[o] = '\0';
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

bool auth__b64url_canonical(const char *s, size_t bytes)
{
    size_t want = bytes / 3 * 4 + (bytes % 3 ? bytes % 3 + 1 : 0);
    if (!s || strnlen(s, want + 1) != want)
        return false;
    int last = 0;
    for (size_t i = 0; i < want; i++)
        if ((last = b64url_value((unsigned char)s[i])) < 0)
            return false;
    /* The spare low bits of the last character must be zero, so each value has exactly one
     * spelling (and one cache entry). */
    unsigned spare = bytes % 3 == 1 ? 4 : bytes % 3 == 2 ? 2 : 0;
    return (last & ((1 << spare) - 1)) == 0;
}

char *auth__random_b64url(size_t n)
{
    unsigned char raw[64];
    if (n > sizeof raw || auth__random(raw, n))
        return NULL;
    char *out = malloc(n / 3 * 4 + 5);
    if (out)
        auth__b64url(raw, n, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return out;
}

void auth__sha256(const void *data, size_t n, unsigned char out[32])
{
    SHA256(data, n, out);
}

int auth__hash_secret(const auth_t *a, const char *secret, char **encoded)
{
    *encoded = NULL;
    unsigned char salt[AUTH__SALT_LEN];
    int rc = auth__random(salt, sizeof salt);
    if (rc)
        return rc;
    size_t len = argon2_encodedlen(a->cfg.argon_t, a->cfg.argon_m_kib, a->cfg.argon_p, AUTH__SALT_LEN,
                                   AUTH__HASH_LEN, Argon2_id);
    char *enc = malloc(len);
    if (!enc)
        return BASE_E_NOMEM;
    int arc = argon2id_hash_encoded(a->cfg.argon_t, a->cfg.argon_m_kib, a->cfg.argon_p, secret,
                                    strlen(secret), salt, sizeof salt, AUTH__HASH_LEN, enc, len);
    if (arc != ARGON2_OK) {
        BASE_LOG(ERROR, "auth: argon2id failed: %s", argon2_error_message(arc));
        free(enc);
        return arc == ARGON2_MEMORY_ALLOCATION_ERROR ? BASE_E_NOMEM : BASE_E_IO;
    }
    *encoded = enc;
    return 0;
}

bool auth__verify_secret(auth_t *a, const char *encoded, const char *secret)
{
    if (!encoded) {
        /* Made once per auth_t with the configured costs, from a secret nobody knows. */
        if (!a->dummy_hash) {
            char *junk = auth__random_b64url(32);
            if (junk) {
                auth__hash_secret(a, junk, &a->dummy_hash);
                free(junk);
            }
        }
        if (a->dummy_hash)
            argon2id_verify(a->dummy_hash, secret, strlen(secret));
        return false;
    }
    return argon2id_verify(encoded, secret, strlen(secret)) == ARGON2_OK;
}
