/* The audit log: rows are only ever inserted and read. This file (and all of weft) has no
 * UPDATE or DELETE for audit_log, and the schema's triggers refuse both, so changing history
 * takes a deliberate act outside weft. Callers pass names, addresses and ids, never secrets. */
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "log.h"

#define AUDIT_FIELD_MAX 1024
#define AUDIT_DETAIL_MAX 16384
#define AUDIT_LIST_DEFAULT 100
#define AUDIT_LIST_MAX 1000

static bool field_ok(const char *s, bool required)
{
    if (!s)
        return !required;
    size_t n = strnlen(s, AUDIT_FIELD_MAX + 1);
    return n <= AUDIT_FIELD_MAX && (n > 0 || !required);
}

static int bind_opt(sqlite3_stmt *s, int idx, const char *v)
{
    return v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, idx);
}

int auth_audit(auth_t *a, const char *who, const char *ip, const char *action, const char *target,
               const json_t *detail)
{
    if (!a || !field_ok(who, false) || !field_ok(ip, false) || !field_ok(action, true) ||
        !field_ok(target, false) || (detail && detail->type != JSON_OBJECT)) {
        BASE_LOG(WARN,
                 "auth: refused an audit entry: action is required, fields are at most %d bytes, "
                 "detail is an object",
                 AUDIT_FIELD_MAX);
        return BASE_E_INVAL;
    }
    char *text = NULL;
    if (detail) {
        if (!(text = json_dump(detail, JSON_COMPACT)))
            return BASE_E_NOMEM;
        if (strlen(text) > AUDIT_DETAIL_MAX) {
            BASE_LOG(WARN, "auth: refused an audit entry: detail is over %d bytes", AUDIT_DETAIL_MAX);
            free(text);
            return BASE_E_TOOBIG;
        }
    }
    sqlite3_stmt *s = a->stmt[AUTH__AUDIT_ADD];
    int rc = 0;
    if (sqlite3_bind_int64(s, 1, (int64_t)auth__now(a)) != SQLITE_OK || bind_opt(s, 2, who) != SQLITE_OK ||
        bind_opt(s, 3, ip) != SQLITE_OK || bind_opt(s, 4, action) != SQLITE_OK ||
        bind_opt(s, 5, target) != SQLITE_OK || bind_opt(s, 6, text) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_DONE)
        rc = auth__fail(a, "cannot append to the audit log");
    auth__done(s);
    free(text);
    return rc;
}

static json_t *opt_string(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    return t ? json_new_string(t) : json_new_null();
}

static json_t *row_json(sqlite3_stmt *s)
{
    json_t *detail = NULL;
    const char *dt = (const char *)sqlite3_column_text(s, 6);
    /* Written by auth_audit as compact JSON; a row edited by hand into garbage shows null. */
    if (!dt || json_parse(dt, strlen(dt), &detail, NULL, 0) != 0)
        detail = json_new_null();
    json_t *o = json_new_object();
    if (!o || json_object_set(o, "id", json_new_int(sqlite3_column_int64(s, 0))) ||
        json_object_set(o, "time", json_new_int(sqlite3_column_int64(s, 1))) ||
        json_object_set(o, "who", opt_string(s, 2)) || json_object_set(o, "ip", opt_string(s, 3)) ||
        json_object_set(o, "action", opt_string(s, 4)) || json_object_set(o, "target", opt_string(s, 5))) {
        json_free(detail);
        json_free(o);
        return NULL;
    }
    if (json_object_set(o, "detail", detail)) {
        json_free(o);
        return NULL;
    }
    return o;
}

json_t *auth_audit_list(auth_t *a, int64_t limit, int64_t before_id)
{
    if (!a)
        return NULL;
    if (limit <= 0)
        limit = AUDIT_LIST_DEFAULT;
    if (limit > AUDIT_LIST_MAX)
        limit = AUDIT_LIST_MAX;
    sqlite3_stmt *s = a->stmt[AUTH__AUDIT_LIST];
    json_t *arr = NULL;
    if (sqlite3_bind_int64(s, 1, before_id > 0 ? before_id : INT64_MAX) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, limit) != SQLITE_OK) {
        auth__fail(a, "bind");
        goto out;
    }
    arr = json_new_array();
    int src = SQLITE_DONE;
    while (arr && (src = sqlite3_step(s)) == SQLITE_ROW)
        arr = auth__push_or_drop(arr, row_json(s));
    if (arr && src != SQLITE_DONE) {
        auth__fail(a, "cannot read the audit log");
        json_free(arr);
        arr = NULL;
    }
out:
    auth__done(s);
    return arr;
}
