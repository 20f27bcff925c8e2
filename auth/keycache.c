/* The verified-key cache: argon2 runs once per key per key_cache_ttl_s instead of once per
 * request. Entries are found by the SHA-256 of the whole key string, so the cache holds no
 * secret and a key that differs in any byte misses. The set index comes from the digest's
 * first bytes (knowing it tells nothing about a secret); the full digest is compared with
 * CRYPTO_memcmp so the comparison time does not depend on how many bytes match.
 *
 * Changes that end a key's validity bump auth_state.epoch in the same transaction; every
 * verification reads the epoch (one indexed row) and drops the cache when it moved, so a key
 * revoked by `weft keys revoke` in another process fails on the server's next request. */
#include <openssl/crypto.h>
#include <string.h>

#include "auth_internal.h"

static unsigned set_of(const unsigned char digest[32])
{
    return ((unsigned)digest[0] | (unsigned)digest[1] << 8) % AUTH__KC_SETS;
}

bool auth__kc_get(auth_t *a, const unsigned char digest[32], double now, auth__kc_entry_t **hit)
{
    auth__kc_entry_t *set = a->kc[set_of(digest)];
    for (int w = 0; w < AUTH__KC_WAYS; w++) {
        auth__kc_entry_t *e = &set[w];
        if (e->used && CRYPTO_memcmp(e->digest, digest, 32) == 0) {
            if (now < e->expires) {
                *hit = e;
                return true;
            }
            e->used = false;
        }
    }
    return false;
}

void auth__kc_put(auth_t *a, const unsigned char digest[32], const auth_principal_t *p, double expires,
                  double touched)
{
    if (a->cfg.key_cache_ttl_s == 0)
        return;
    auth__kc_entry_t *set = a->kc[set_of(digest)];
    /* The same key's way, else a free way, else the one that expires first. */
    auth__kc_entry_t *victim = NULL;
    for (int w = 0; w < AUTH__KC_WAYS && !victim; w++)
        if (set[w].used && CRYPTO_memcmp(set[w].digest, digest, 32) == 0)
            victim = &set[w];
    for (int w = 0; w < AUTH__KC_WAYS && !victim; w++)
        if (!set[w].used)
            victim = &set[w];
    if (!victim) {
        victim = &set[0];
        for (int w = 1; w < AUTH__KC_WAYS; w++)
            if (set[w].expires < victim->expires)
                victim = &set[w];
    }
    memcpy(victim->digest, digest, 32);
    victim->p = *p;
    victim->expires = expires;
    victim->touched = touched;
    victim->used = true;
}

void auth__kc_clear(auth_t *a)
{
    OPENSSL_cleanse(a->kc, sizeof a->kc);
}

void auth__kc_sync(auth_t *a)
{
    sqlite3_stmt *s = a->stmt[AUTH__EPOCH_GET];
    int64_t epoch = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        epoch = sqlite3_column_int64(s, 0);
    else
        auth__fail(a, "cannot read auth_state");
    auth__done(s);
    /* An unreadable epoch (-1) also clears: the database then decides every verification. */
    if (epoch != a->kc_epoch || epoch < 0) {
        auth__kc_clear(a);
        a->kc_epoch = epoch;
    }
}

int auth__kc_bump(auth_t *a)
{
    sqlite3_stmt *s = a->stmt[AUTH__EPOCH_BUMP];
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : auth__fail(a, "cannot update auth_state");
    auth__done(s);
    return rc;
}
