/* The store's sharing tables: read grants on workflow library files (workflow_shares) and
 * share links (share_links, keyed by the SHA-256 of their token). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define ST(name) (st->stmt[STORE__##name])

static int bind_double(store_t *st, sqlite3_stmt *s, int idx, double v)
{
    return sqlite3_bind_double(s, idx, v) == SQLITE_OK ? 0 : store__fail(st, "bind");
}

static int col_dup(sqlite3_stmt *s, int col, char **out)
{
    *out = NULL;
    const unsigned char *t = sqlite3_column_text(s, col);
    if (!t)
        return sqlite3_column_type(s, col) == SQLITE_NULL ? 0 : BASE_E_NOMEM;
    return (*out = strdup((const char *)t)) ? 0 : BASE_E_NOMEM;
}

/* ------------------------------------------------------------------ workflow shares */

static int share_clear_locked(store_t *st, const char *owner, const char *path, size_t *n)
{
    sqlite3_stmt *s = ST(SHARE_CLEAR);
    int rc = store__bind_text(st, s, 1, owner);
    if (!rc && !(rc = store__bind_text(st, s, 2, path)))
        rc = store__step(st, s, "clear shares");
    store__done(s);
    if (!rc && n)
        *n = (size_t)sqlite3_changes(st->db);
    return rc;
}

static int share_add(store_t *st, const char *owner, const char *path, const char *kind, const char *grantee,
                     double now_ms)
{
    sqlite3_stmt *s = ST(SHARE_ADD);
    int rc;
    if ((rc = store__bind_text(st, s, 1, owner)) || (rc = store__bind_text(st, s, 2, path)) ||
        (rc = store__bind_text(st, s, 3, kind)) || (rc = store__bind_text(st, s, 4, grantee)) ||
        (rc = bind_double(st, s, 5, now_ms)) || (rc = store__step(st, s, "add a share"))) {
        /* rc says which step failed */
    }
    store__done(s);
    return rc;
}

int store_share_set(store_t *st, const char *owner, const char *path, const char *const *users,
                    size_t n_users, const char *const *roles, size_t n_roles, bool pub, double now_ms)
{
    if (!st || !owner || !*owner || !path || !*path || (n_users && !users) || (n_roles && !roles) ||
        !isfinite(now_ms))
        return BASE_E_INVAL;
    for (size_t i = 0; i < n_users; i++)
        if (!users[i] || !*users[i])
            return BASE_E_INVAL;
    for (size_t i = 0; i < n_roles; i++)
        if (!roles[i] || !*roles[i])
            return BASE_E_INVAL;
    int rc = store__tx_begin(st, true);
    if (rc)
        return rc;
    rc = share_clear_locked(st, owner, path, NULL);
    for (size_t i = 0; !rc && i < n_users; i++)
        rc = share_add(st, owner, path, "user", users[i], now_ms);
    for (size_t i = 0; !rc && i < n_roles; i++)
        rc = share_add(st, owner, path, "role", roles[i], now_ms);
    if (!rc && pub)
        rc = share_add(st, owner, path, "public", "", now_ms);
    return store__tx_end(st, rc);
}

int store_share_clear(store_t *st, const char *owner, const char *path, size_t *n)
{
    if (n)
        *n = 0;
    if (!st || !owner || !path)
        return BASE_E_INVAL;
    return share_clear_locked(st, owner, path, n);
}

int store_share_move(store_t *st, const char *owner, const char *from, const char *to)
{
    if (!st || !owner || !from || !to || !*to)
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(SHARE_MOVE);
    int rc;
    if ((rc = store__bind_text(st, s, 1, owner)) || (rc = store__bind_text(st, s, 2, from)) ||
        (rc = store__bind_text(st, s, 3, to)) || (rc = store__step(st, s, "move shares"))) {
        /* rc says which step failed */
    }
    store__done(s);
    return rc;
}

int store_share_get(store_t *st, const char *owner, const char *path, json_t **users, json_t **roles,
                    bool *pub)
{
    if (!users || !roles || !pub)
        return BASE_E_INVAL;
    *users = *roles = NULL;
    *pub = false;
    if (!st || !owner || !path)
        return BASE_E_INVAL;
    json_t *u = json_new_array(), *r = json_new_array();
    sqlite3_stmt *s = ST(SHARE_GET);
    int rc = !u || !r ? BASE_E_NOMEM : 0;
    if (!rc && !(rc = store__bind_text(st, s, 1, owner)))
        rc = store__bind_text(st, s, 2, path);
    int src = SQLITE_DONE;
    while (!rc && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(s, 0);
        const char *grantee = (const char *)sqlite3_column_text(s, 1);
        if (!kind || !grantee)
            rc = BASE_E_NOMEM;
        else if (!strcmp(kind, "public"))
            *pub = true;
        else if (json_array_push(!strcmp(kind, "user") ? u : r, json_new_string(grantee)))
            rc = BASE_E_NOMEM;
    }
    if (!rc && src != SQLITE_DONE)
        rc = store__fail(st, "read shares");
    store__done(s);
    if (rc) {
        json_free(u);
        json_free(r);
        *pub = false;
        return rc;
    }
    *users = u;
    *roles = r;
    return 0;
}

int store_share_allows(store_t *st, const char *owner, const char *path, const char *user, const char *role,
                       bool *ok)
{
    if (!ok)
        return BASE_E_INVAL;
    *ok = false;
    if (!st || !owner || !path)
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(SHARE_ALLOWS);
    int64_t one = 0;
    int rc;
    /* A NULL user or role matches no grant of that kind (= NULL is never true). */
    if ((rc = store__bind_text(st, s, 1, owner)) || (rc = store__bind_text(st, s, 2, path)) ||
        (rc = store__bind_text(st, s, 3, user && *user ? user : NULL)) ||
        (rc = store__bind_text(st, s, 4, role && *role ? role : NULL))) {
        store__done(s);
        return rc;
    }
    rc = store__query_i64(st, s, "check a share", &one, ok);
    return rc;
}

void store_shared_free(store_shared_t *items, size_t n)
{
    for (size_t i = 0; items && i < n; i++) {
        free(items[i].owner);
        free(items[i].path);
    }
    free(items);
}

int store_share_list_for(store_t *st, const char *user, const char *role, store_shared_t **items, size_t *n)
{
    if (!items || !n)
        return BASE_E_INVAL;
    *items = NULL;
    *n = 0;
    if (!st)
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(SHARE_LIST_FOR);
    /* "" rather than NULL for a missing user: owner <> NULL would hide every row. */
    int rc = store__bind_text(st, s, 1, user ? user : "");
    if (!rc)
        rc = store__bind_text(st, s, 2, role && *role ? role : NULL);
    store_shared_t *arr = NULL;
    size_t len = 0, cap = 0;
    int src = SQLITE_DONE;
    while (!rc && (src = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            store_shared_t *na = realloc(arr, ncap * sizeof *na);
            if (!na) {
                rc = BASE_E_NOMEM;
                break;
            }
            arr = na;
            cap = ncap;
        }
        memset(&arr[len], 0, sizeof arr[len]);
        len++;
        if ((rc = col_dup(s, 0, &arr[len - 1].owner)) || (rc = col_dup(s, 1, &arr[len - 1].path)))
            break;
        if (!arr[len - 1].owner || !arr[len - 1].path)
            rc = BASE_E_IO;
    }
    if (!rc && src != SQLITE_DONE)
        rc = store__fail(st, "list shares");
    store__done(s);
    if (rc) {
        store_shared_free(arr, len);
        return rc;
    }
    *items = arr;
    *n = len;
    return 0;
}

/* ------------------------------------------------------------------ share links */

void store_link_free(store_link_t *l)
{
    if (!l)
        return;
    free(l->id);
    free(l->owner);
    free(l->kind);
    free(l->folder);
    free(l->path);
    memset(l, 0, sizeof *l);
}

void store_links_free(store_link_t *items, size_t n)
{
    for (size_t i = 0; items && i < n; i++)
        store_link_free(&items[i]);
    free(items);
}

/* Columns: id, owner, kind, folder, path, expires_ms, created_ms, revoked. */
static int link_read(sqlite3_stmt *s, store_link_t *out)
{
    memset(out, 0, sizeof *out);
    int rc;
    if ((rc = col_dup(s, 0, &out->id)) || (rc = col_dup(s, 1, &out->owner)) ||
        (rc = col_dup(s, 2, &out->kind)) || (rc = col_dup(s, 3, &out->folder)) ||
        (rc = col_dup(s, 4, &out->path))) {
        store_link_free(out);
        return rc;
    }
    if (!out->id || !out->owner || !out->kind || !out->path) {
        store_link_free(out);
        return BASE_E_IO;
    }
    out->expires_ms = sqlite3_column_double(s, 5);
    out->created_ms = sqlite3_column_double(s, 6);
    out->revoked = sqlite3_column_int64(s, 7) != 0;
    return 0;
}

int store_link_add(store_t *st, const store_link_t *l, const char *token_sha256)
{
    if (!st || !l || !l->id || !*l->id || !l->owner || !*l->owner || !l->kind || !l->path || !*l->path ||
        !token_sha256 || !*token_sha256 || !isfinite(l->expires_ms) || !isfinite(l->created_ms))
        return BASE_E_INVAL;
    if (strcmp(l->kind, "workflow") && strcmp(l->kind, "output"))
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(LINK_ADD);
    int rc;
    if ((rc = store__bind_text(st, s, 1, l->id)) || (rc = store__bind_text(st, s, 2, token_sha256)) ||
        (rc = store__bind_text(st, s, 3, l->owner)) || (rc = store__bind_text(st, s, 4, l->kind)) ||
        (rc = store__bind_text(st, s, 5, l->folder)) || (rc = store__bind_text(st, s, 6, l->path)) ||
        (rc = bind_double(st, s, 7, l->expires_ms)) || (rc = bind_double(st, s, 8, l->created_ms))) {
        store__done(s);
        return rc;
    }
    int src = sqlite3_step(s);
    if (src == SQLITE_DONE)
        rc = 0;
    else if ((sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_CONSTRAINT)
        rc = BASE_E_EXIST;
    else
        rc = store__fail(st, "add a share link");
    store__done(s);
    return rc;
}

int store_link_list(store_t *st, const char *owner, store_link_t **items, size_t *n)
{
    if (!items || !n)
        return BASE_E_INVAL;
    *items = NULL;
    *n = 0;
    if (!st)
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(LINK_LIST);
    int rc = store__bind_text(st, s, 1, owner);
    store_link_t *arr = NULL;
    size_t len = 0, cap = 0;
    int src = SQLITE_DONE;
    while (!rc && (src = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            store_link_t *na = realloc(arr, ncap * sizeof *na);
            if (!na) {
                rc = BASE_E_NOMEM;
                break;
            }
            arr = na;
            cap = ncap;
        }
        if ((rc = link_read(s, &arr[len])))
            break;
        len++;
    }
    if (!rc && src != SQLITE_DONE)
        rc = store__fail(st, "list share links");
    store__done(s);
    if (rc) {
        store_links_free(arr, len);
        return rc;
    }
    *items = arr;
    *n = len;
    return 0;
}

int store_link_revoke(store_t *st, const char *id, const char *owner)
{
    if (!st || !id)
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(LINK_REVOKE);
    int rc;
    if ((rc = store__bind_text(st, s, 1, id)) || (rc = store__bind_text(st, s, 2, owner)) ||
        (rc = store__step(st, s, "revoke a share link"))) {
        /* rc says which step failed */
    }
    store__done(s);
    if (!rc && sqlite3_changes(st->db) == 0)
        rc = BASE_E_NOENT;
    return rc;
}

int store_link_find(store_t *st, const char *token_sha256, double now_ms, store_link_t *out)
{
    if (!out)
        return BASE_E_INVAL;
    memset(out, 0, sizeof *out);
    if (!st || !token_sha256 || !isfinite(now_ms))
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(LINK_FIND);
    int rc = store__bind_text(st, s, 1, token_sha256);
    if (!rc)
        rc = bind_double(st, s, 2, now_ms);
    if (!rc) {
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW)
            rc = link_read(s, out);
        else if (src == SQLITE_DONE)
            rc = BASE_E_NOENT;
        else
            rc = store__fail(st, "find a share link");
    }
    store__done(s);
    return rc;
}
