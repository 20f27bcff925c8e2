/* The store's per-owner views of the prompts table (one user's history page and deletions)
 * and the files table (who made each output, temp and input file). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define ST(name) (st->stmt[STORE__##name])

static int bind_i64(store_t *st, sqlite3_stmt *s, int idx, int64_t v)
{
    return sqlite3_bind_int64(s, idx, v) == SQLITE_OK ? 0 : store__fail(st, "bind");
}

static void free_rows(store_prompt_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_prompt_free(&items[i]);
    free(items);
}

int store_history_page_owned(store_t *st, const char *owner, int64_t max_items, int64_t offset,
                             store_prompt_t **items, size_t *n)
{
    if (!owner)
        return store_history_page(st, max_items, offset, items, n);
    if (!items || !n)
        return BASE_E_INVAL;
    *items = NULL;
    *n = 0;
    if (!st)
        return BASE_E_INVAL;
    /* One read transaction so the count and the page see the same history. */
    int rc = store__tx_begin(st, false);
    if (rc)
        return rc;
    if (offset < 0) {
        offset = 0;
        if (max_items >= 0) {
            int64_t count = 0;
            if ((rc = store__bind_text(st, ST(HISTORY_COUNT_OWNED), 1, owner))) {
                store__done(ST(HISTORY_COUNT_OWNED));
                goto out;
            }
            if ((rc = store__query_i64(st, ST(HISTORY_COUNT_OWNED), "count history", &count, NULL)))
                goto out;
            offset = count > max_items ? count - max_items : 0;
        }
    }
    sqlite3_stmt *s = ST(HISTORY_PAGE_OWNED);
    /* LIMIT -1 is SQLite's "no limit". */
    if ((rc = bind_i64(st, s, 1, max_items < 0 ? -1 : max_items)) || (rc = bind_i64(st, s, 2, offset)) ||
        (rc = store__bind_text(st, s, 3, owner))) {
        store__done(s);
        goto out;
    }
    rc = store__read_rows(st, s, "read a history page", items, n);
out:
    rc = store__tx_end(st, rc);
    if (rc && *items) {
        free_rows(*items, *n);
        *items = NULL;
        *n = 0;
    }
    return rc;
}

int store_history_delete_owned(store_t *st, const char *owner, const char *const *ids, size_t n_ids,
                               size_t *n)
{
    if (!owner)
        return store_history_delete(st, ids, n_ids, n);
    if (n)
        *n = 0;
    if (!st)
        return BASE_E_INVAL;
    int rc = store__tx_begin(st, true);
    if (rc)
        return rc;
    size_t total = 0;
    if (!ids) {
        sqlite3_stmt *s = ST(HISTORY_DELETE_OWNED_ALL);
        if (!(rc = store__bind_text(st, s, 1, owner)))
            rc = store__step(st, s, "delete history");
        store__done(s);
        total = rc ? 0 : (size_t)sqlite3_changes(st->db);
    }
    for (size_t i = 0; ids && i < n_ids && !rc; i++) {
        if (!ids[i])
            continue;
        sqlite3_stmt *s = ST(HISTORY_DELETE_OWNED_ID);
        if (!(rc = store__bind_text(st, s, 1, owner)) && !(rc = store__bind_text(st, s, 2, ids[i])))
            rc = store__step(st, s, "delete history");
        store__done(s);
        if (!rc)
            total += (size_t)sqlite3_changes(st->db);
    }
    rc = store__tx_end(st, rc);
    if (rc == 0 && n)
        *n = total;
    return rc;
}

/* ------------------------------------------------------------------ files */

static bool valid_folder(const char *f)
{
    return f && (!strcmp(f, "output") || !strcmp(f, "input") || !strcmp(f, "temp"));
}

int store_files_record(store_t *st, const store_file_ref_t *files, size_t n, const char *owner,
                       const char *prompt_id, double created_ms)
{
    if (!st || (n && !files) || !isfinite(created_ms))
        return BASE_E_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid_folder(files[i].folder) || !files[i].path || !*files[i].path)
            return BASE_E_INVAL;
    if (!n)
        return 0;
    int rc = store__tx_begin(st, true);
    if (rc)
        return rc;
    sqlite3_stmt *s = ST(FILE_RECORD);
    for (size_t i = 0; i < n && !rc; i++) {
        if ((rc = store__bind_text(st, s, 1, files[i].folder)) ||
            (rc = store__bind_text(st, s, 2, files[i].path)) ||
            (rc = store__bind_text(st, s, 3, owner && *owner ? owner : NULL)) ||
            (rc = store__bind_text(st, s, 4, prompt_id)) ||
            (rc = sqlite3_bind_double(s, 5, created_ms) == SQLITE_OK ? 0 : store__fail(st, "bind")) ||
            (rc = store__step(st, s, "record a file"))) {
            /* rc says which step failed */
        }
        store__done(s);
    }
    return store__tx_end(st, rc);
}

int store_file_owner(store_t *st, const char *folder, const char *path, char **owner)
{
    if (!owner)
        return BASE_E_INVAL;
    *owner = NULL;
    if (!st || !folder || !path)
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(FILE_OWNER);
    int rc = store__bind_text(st, s, 1, folder);
    if (!rc)
        rc = store__bind_text(st, s, 2, path);
    if (!rc) {
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            if (t && !(*owner = strdup((const char *)t)))
                rc = BASE_E_NOMEM;
        } else if (src == SQLITE_DONE) {
            rc = BASE_E_NOENT;
        } else {
            rc = store__fail(st, "look up a file's owner");
        }
    }
    store__done(s);
    return rc;
}
