/* The auth handle: configuration defaults, opening and closing, and the clock. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <argon2.h>
#include <openssl/crypto.h>

#include "auth_internal.h"
#include "log.h"

void auth_config_init(auth_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->session_ttl_s = 7u * 24 * 3600;
    c->key_cache_ttl_s = 300;
    /* OWASP's argon2id minimum (t=2, 19 MiB, p=1): about 20-40 ms per hash on a server core. */
    c->argon_t = 2;
    c->argon_m_kib = 19456;
    c->argon_p = 1;
}

static int check_config(const char *path, const auth_config_t *c)
{
    const char *why = NULL;
    if (c->session_ttl_s == 0)
        why = "session_ttl_s must be at least 1";
    else if (c->argon_t < ARGON2_MIN_TIME)
        why = "argon_t must be at least 1";
    else if (c->argon_p < ARGON2_MIN_LANES || c->argon_p > 64)
        why = "argon_p must be 1..64";
    else if (c->argon_m_kib < 8 * c->argon_p || c->argon_m_kib > 4u * 1024 * 1024)
        why = "argon_m_kib must be 8*argon_p..4194304";
    if (!why)
        return 0;
    BASE_LOG(ERROR, "auth %s: bad configuration: %s", path, why);
    return BASE_E_INVAL;
}

int auth_open(const char *db_path, const auth_config_t *cfg, auth_t **out)
{
    if (!out)
        return BASE_E_INVAL;
    *out = NULL;
    if (!db_path || !*db_path)
        return BASE_E_INVAL;
    auth_t *a = calloc(1, sizeof *a);
    if (!a)
        return BASE_E_NOMEM;
    int rc = BASE_E_NOMEM;
    if (cfg)
        a->cfg = *cfg;
    else
        auth_config_init(&a->cfg);
    if (!(a->path = strdup(db_path)))
        goto out;
    if ((rc = check_config(db_path, &a->cfg)) || (rc = auth__limits_init(a)) || (rc = auth__db_open(a)))
        goto out;
    *out = a;
    return 0;
out:
    auth_close(a);
    return rc;
}

void auth_close(auth_t *a)
{
    if (!a)
        return;
    for (int i = 0; i < AUTH__STMT_COUNT; i++)
        sqlite3_finalize(a->stmt[i]);
    if (a->db && sqlite3_close(a->db) != SQLITE_OK)
        BASE_LOG(WARN, "auth %s: close: %s", a->path, sqlite3_errmsg(a->db));
    auth__limits_free(a);
    free(a->dummy_hash);
    free(a->path);
    /* The key cache holds principals only (no secrets), but wiping is cheap. */
    OPENSSL_cleanse(a->kc, sizeof a->kc);
    free(a);
}

double auth__now(const auth_t *a)
{
    if (a->now_override != 0)
        return a->now_override;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

json_t *auth__push_or_drop(json_t *arr, json_t *item)
{
    if (!item || json_array_push(arr, item)) {
        json_free(arr);
        return NULL;
    }
    return arr;
}
