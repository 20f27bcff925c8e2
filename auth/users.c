/* Users: names, argon2id password hashes, roles and the disabled flag. Changing a password,
 * a role or the disabled flag forgets every verified key at once (the next request re-reads
 * the database); a new password or disabling also ends the user's browser sessions. */
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "log.h"

#define PASSWORD_MIN 8
#define PASSWORD_MAX 1024

bool auth__name_ok(const char *name)
{
    if (!name)
        return false;
    size_t n = strnlen(name, 64);
    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    /* Names become folder names and path segments elsewhere; "." and ".." would escape. */
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int check_name(const char *name)
{
    if (auth__name_ok(name))
        return 0;
    BASE_LOG(WARN, "auth: a user name is 1 to 63 characters of A-Z a-z 0-9 . _ - (not . or ..)");
    return BASE_E_INVAL;
}

static int check_password(const char *pw)
{
    size_t n = pw ? strnlen(pw, PASSWORD_MAX + 1) : 0;
    if (n >= PASSWORD_MIN && n <= PASSWORD_MAX)
        return 0;
    BASE_LOG(WARN, "auth: a password is %d to %d bytes long", PASSWORD_MIN, PASSWORD_MAX);
    return BASE_E_INVAL;
}

int auth__role_col(auth_t *a, sqlite3_stmt *s, int col, auth_role_t *role)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    if (auth_role_from_name(t, role) == 0)
        return 0;
    BASE_LOG(ERROR, "auth %s: a stored role is unknown to this weft; the row is refused", a->path);
    return BASE_E_IO;
}

void auth__user_clear(auth__user_t *u)
{
    free(u->pw_hash);
    memset(u, 0, sizeof *u);
}

int auth__user_get(auth_t *a, const char *name, auth__user_t *u)
{
    memset(u, 0, sizeof *u);
    if (!auth__name_ok(name))
        return BASE_E_NOENT;
    sqlite3_stmt *s = a->stmt[AUTH__USER_GET];
    int rc;
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK) {
        rc = auth__fail(a, "bind");
        goto out;
    }
    int src = sqlite3_step(s);
    if (src == SQLITE_DONE) {
        rc = BASE_E_NOENT;
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = auth__fail(a, "cannot read a user");
        goto out;
    }
    u->id = sqlite3_column_int64(s, 0);
    auth__col_text(s, 1, u->name, sizeof u->name);
    const char *h = (const char *)sqlite3_column_text(s, 2);
    if ((rc = auth__role_col(a, s, 3, &u->role)))
        goto out;
    u->disabled = sqlite3_column_int(s, 4) != 0;
    rc = (u->pw_hash = strdup(h ? h : "")) ? 0 : BASE_E_NOMEM;
out:
    auth__done(s);
    if (rc)
        auth__user_clear(u);
    return rc;
}

/* Runs a cached statement that changes rows, binding up to two values (text or int64). */
static int run_update(auth_t *a, auth__stmt_id_t id, const char *text1, int64_t int1, int64_t int2,
                      bool use_int1, const char *what)
{
    sqlite3_stmt *s = a->stmt[id];
    int ok = use_int1 ? sqlite3_bind_int64(s, 1, int1) : sqlite3_bind_text(s, 1, text1, -1, SQLITE_STATIC);
    if (ok == SQLITE_OK && sqlite3_bind_parameter_count(s) >= 2)
        ok = sqlite3_bind_int64(s, 2, int2);
    int rc = ok == SQLITE_OK && sqlite3_step(s) == SQLITE_DONE ? 0 : auth__fail(a, what);
    auth__done(s);
    return rc;
}

int auth_user_add(auth_t *a, const char *name, const char *password, auth_role_t role, int64_t *id)
{
    if (!a)
        return BASE_E_INVAL;
    int rc;
    if ((rc = check_name(name)) || (rc = check_password(password)))
        return rc;
    if ((unsigned)role >= AUTH_ROLE_COUNT)
        return BASE_E_INVAL;
    char *hash = NULL;
    if ((rc = auth__hash_secret(a, password, &hash)))
        return rc;
    sqlite3_stmt *s = a->stmt[AUTH__USER_ADD];
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(s, 2, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(s, 3, auth_role_name(role), -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(s, 4, (int64_t)auth__now(a)) != SQLITE_OK) {
        rc = auth__fail(a, "bind");
    } else {
        int src = sqlite3_step(s);
        if (src == SQLITE_DONE) {
            if (id)
                *id = sqlite3_last_insert_rowid(a->db);
        } else if (sqlite3_extended_errcode(a->db) == SQLITE_CONSTRAINT_UNIQUE) {
            BASE_LOG(WARN, "auth: user '%s' already exists", name);
            rc = BASE_E_EXIST;
        } else {
            rc = auth__fail(a, "cannot add a user");
        }
    }
    auth__done(s);
    free(hash);
    return rc;
}

int auth_user_set_password(auth_t *a, const char *name, const char *password)
{
    if (!a)
        return BASE_E_INVAL;
    int rc = check_password(password);
    if (rc)
        return rc;
    auth__user_t u;
    if ((rc = auth__user_get(a, name, &u)))
        return rc;
    char *hash = NULL;
    if ((rc = auth__hash_secret(a, password, &hash)))
        goto out;
    if ((rc = auth__tx_begin(a)))
        goto out;
    sqlite3_stmt *s = a->stmt[AUTH__USER_SET_PW];
    if (sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, u.id) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE)
        rc = auth__fail(a, "cannot change a password");
    auth__done(s);
    /* Whoever knew the old password may hold a session made with it. */
    if (!rc)
        rc = run_update(a, AUTH__SESSION_DEL_USER, NULL, u.id, 0, true, "cannot end the user's sessions");
    if (!rc)
        rc = auth__kc_bump(a);
    rc = auth__tx_end(a, rc);
    if (!rc)
        auth__kc_clear(a);
out:
    free(hash);
    auth__user_clear(&u);
    return rc;
}

int auth_user_set_role(auth_t *a, const char *name, auth_role_t role)
{
    if (!a || (unsigned)role >= AUTH_ROLE_COUNT)
        return BASE_E_INVAL;
    auth__user_t u;
    int rc = auth__user_get(a, name, &u);
    if (rc)
        return rc;
    /* Sessions read the role from users on every request; cached keys must be forgotten. */
    if ((rc = auth__tx_begin(a)))
        goto out;
    rc = run_update(a, AUTH__USER_SET_ROLE, auth_role_name(role), 0, u.id, false, "cannot change a role");
    if (!rc)
        rc = auth__kc_bump(a);
    rc = auth__tx_end(a, rc);
    if (!rc)
        auth__kc_clear(a);
out:
    auth__user_clear(&u);
    return rc;
}

int auth_user_set_disabled(auth_t *a, const char *name, bool disabled)
{
    if (!a)
        return BASE_E_INVAL;
    auth__user_t u;
    int rc = auth__user_get(a, name, &u);
    if (rc)
        return rc;
    if ((rc = auth__tx_begin(a)))
        goto out;
    rc = run_update(a, AUTH__USER_SET_DISABLED, NULL, disabled ? 1 : 0, u.id, true, "cannot change a user");
    if (!rc && disabled)
        rc = run_update(a, AUTH__SESSION_DEL_USER, NULL, u.id, 0, true, "cannot end the user's sessions");
    if (!rc)
        rc = auth__kc_bump(a);
    rc = auth__tx_end(a, rc);
    if (!rc)
        auth__kc_clear(a);
out:
    auth__user_clear(&u);
    return rc;
}

json_t *auth_user_list(auth_t *a)
{
    if (!a)
        return NULL;
    json_t *arr = json_new_array();
    sqlite3_stmt *s = a->stmt[AUTH__USER_LIST];
    int src = SQLITE_DONE;
    while (arr && (src = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *o = json_new_object();
        const char *name = (const char *)sqlite3_column_text(s, 1);
        const char *role = (const char *)sqlite3_column_text(s, 2);
        if (!o || json_object_set(o, "id", json_new_int(sqlite3_column_int64(s, 0))) ||
            json_object_set(o, "name", json_new_string(name ? name : "")) ||
            json_object_set(o, "role", json_new_string(role ? role : "")) ||
            json_object_set(o, "disabled", json_new_bool(sqlite3_column_int(s, 3) != 0)) ||
            json_object_set(o, "created", json_new_int(sqlite3_column_int64(s, 4)))) {
            json_free(o);
            o = NULL;
        }
        arr = auth__push_or_drop(arr, o);
    }
    if (arr && src != SQLITE_DONE) {
        auth__fail(a, "cannot list users");
        json_free(arr);
        arr = NULL;
    }
    auth__done(s);
    return arr;
}

int64_t auth_user_count(auth_t *a)
{
    if (!a)
        return BASE_E_INVAL;
    sqlite3_stmt *s = a->stmt[AUTH__USER_COUNT];
    int64_t n =
        sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : auth__fail(a, "cannot count users");
    auth__done(s);
    return n;
}
