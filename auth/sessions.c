/* Browser sessions. The cookie value is 32 random bytes (base64url); the database keeps only
 * its SHA-256, so a copy of weft.db lets no one take over a session. A lookup by that digest
 * is safe against timing: learning digest prefixes tells nothing about a token. The CSRF token
 * (24 random bytes) is not a credential on its own and is stored as is, because it must be
 * handed back to the page. Role and disabled flag are read with every verification, so a
 * role change applies to the next request. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "log.h"

#define TOKEN_BYTES 32
#define CSRF_BYTES 24
#define PASSWORD_MAX 1024

static bool token_ok(const char *token)
{
    return auth__b64url_canonical(token, TOKEN_BYTES);
}

static int insert_session(auth_t *a, const auth__user_t *u, const unsigned char digest[32], const char *csrf,
                          double now, int64_t *id)
{
    sqlite3_stmt *purge = a->stmt[AUTH__SESSION_PURGE];
    /* Expired rows go away here, at the rate sessions are made, so the table stays small. */
    if (sqlite3_bind_double(purge, 1, now) != SQLITE_OK || sqlite3_step(purge) != SQLITE_DONE)
        auth__fail(a, "cannot drop expired sessions");
    auth__done(purge);
    sqlite3_stmt *s = a->stmt[AUTH__SESSION_ADD];
    int rc = 0;
    if (sqlite3_bind_int64(s, 1, u->id) != SQLITE_OK ||
        sqlite3_bind_blob(s, 2, digest, 32, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(s, 3, csrf, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_double(s, 4, now) != SQLITE_OK ||
        sqlite3_bind_double(s, 5, now + a->cfg.session_ttl_s) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE)
        rc = auth__fail(a, "cannot store a session");
    else
        *id = sqlite3_last_insert_rowid(a->db);
    auth__done(s);
    return rc;
}

int auth_login(auth_t *a, const char *user, const char *password, char **token, char **csrf,
               auth_principal_t *p)
{
    if (!a || !token || !csrf)
        return BASE_E_INVAL;
    *token = *csrf = NULL;
    if (p)
        memset(p, 0, sizeof *p);
    /* Oversized input is refused before any lookup, so it says nothing about the name. */
    if (!password || strnlen(password, PASSWORD_MAX + 1) > PASSWORD_MAX)
        return BASE_E_AUTH_INVALID;
    auth__user_t u;
    int rc = auth__user_get(a, user, &u);
    if (rc && rc != BASE_E_NOENT)
        return rc;
    bool ok = auth__verify_secret(a, rc ? NULL : u.pw_hash, password);
    if (!ok || u.disabled) {
        BASE_LOG(DEBUG, "auth: login refused (%s)",
                 rc    ? "unknown user"
                 : !ok ? "wrong password"
                       : "user disabled");
        auth__user_clear(&u);
        return BASE_E_AUTH_INVALID;
    }
    unsigned char digest[32];
    int64_t sid = 0;
    char *t = auth__random_b64url(TOKEN_BYTES), *c = auth__random_b64url(CSRF_BYTES);
    if (!t || !c) {
        rc = BASE_E_NOMEM;
        goto out;
    }
    auth__sha256(t, strlen(t), digest);
    double now = auth__now(a);
    if ((rc = insert_session(a, &u, digest, c, now, &sid)))
        goto out;
    if (p) {
        p->user_id = u.id;
        memcpy(p->user, u.name, sizeof p->user);
        p->role = u.role;
        p->scopes = auth_role_scopes(u.role);
        p->via = AUTH_VIA_SESSION;
        p->session_id = sid;
        snprintf(p->csrf, sizeof p->csrf, "%s", c);
    }
    *token = t;
    *csrf = c;
    t = c = NULL;
out:
    if (t)
        OPENSSL_cleanse(t, strlen(t));
    free(t);
    free(c);
    auth__user_clear(&u);
    return rc;
}

static int delete_id(auth_t *a, int64_t id)
{
    sqlite3_stmt *s = a->stmt[AUTH__SESSION_DEL_ID];
    int rc = sqlite3_bind_int64(s, 1, id) == SQLITE_OK && sqlite3_step(s) == SQLITE_DONE
                 ? 0
                 : auth__fail(a, "cannot delete a session");
    auth__done(s);
    return rc;
}

int auth_verify_session(auth_t *a, const char *token, auth_principal_t *p)
{
    if (!p)
        return BASE_E_INVAL;
    memset(p, 0, sizeof *p);
    if (!a || !token_ok(token))
        return BASE_E_AUTH_INVALID;
    unsigned char digest[32];
    auth__sha256(token, strlen(token), digest);
    sqlite3_stmt *s = a->stmt[AUTH__SESSION_GET];
    int rc = 0;
    if (sqlite3_bind_blob(s, 1, digest, 32, SQLITE_STATIC) != SQLITE_OK) {
        rc = auth__fail(a, "bind");
        goto out;
    }
    int src = sqlite3_step(s);
    if (src == SQLITE_DONE) {
        rc = BASE_E_AUTH_INVALID;
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = auth__fail(a, "cannot read a session");
        goto out;
    }
    int64_t sid = sqlite3_column_int64(s, 0);
    double expires = sqlite3_column_double(s, 2);
    bool disabled = sqlite3_column_int(s, 6) != 0;
    auth_role_t role;
    if (disabled || auth__role_col(a, s, 5, &role)) {
        rc = BASE_E_AUTH_INVALID;
        goto out;
    }
    if (auth__now(a) >= expires) {
        auth__done(s);
        delete_id(a, sid);
        return BASE_E_AUTH_INVALID;
    }
    p->user_id = sqlite3_column_int64(s, 3);
    auth__col_text(s, 4, p->user, sizeof p->user);
    p->role = role;
    p->scopes = auth_role_scopes(role);
    p->via = AUTH_VIA_SESSION;
    p->session_id = sid;
    auth__col_text(s, 1, p->csrf, sizeof p->csrf);
out:
    auth__done(s);
    if (rc)
        memset(p, 0, sizeof *p);
    return rc;
}

int auth_logout(auth_t *a, const char *token)
{
    if (!a)
        return BASE_E_INVAL;
    if (!token_ok(token))
        return BASE_E_AUTH_INVALID;
    unsigned char digest[32];
    auth__sha256(token, strlen(token), digest);
    sqlite3_stmt *s = a->stmt[AUTH__SESSION_DEL];
    int rc = 0;
    if (sqlite3_bind_blob(s, 1, digest, 32, SQLITE_STATIC) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE)
        rc = auth__fail(a, "cannot delete a session");
    else if (sqlite3_changes(a->db) == 0)
        rc = BASE_E_AUTH_INVALID;
    auth__done(s);
    return rc;
}
