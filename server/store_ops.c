/* The store's operations on the prompts table: queue (enqueue, running, finish, recovery,
 * pending list and deletion) and history (pages, lookup, deletion, count). Writes that touch
 * more than one row or read-then-write run in one IMMEDIATE transaction. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_internal.h"

#define ST(name) (st->stmt[STORE__##name])

/* Steps a statement that returns no rows (or ignores them). */
static int step_done(store_t *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store__fail(st, what);
}

/* One integer from a one-row query; *out = 0 when the query yields no row. */
static int query_i64(store_t *st, sqlite3_stmt *s, const char *what, int64_t *out, bool *found)
{
    int rc = sqlite3_step(s);
    if (found)
        *found = rc == SQLITE_ROW;
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    store__done(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store__fail(st, what);
}

static int bind_text(store_t *st, sqlite3_stmt *s, int idx, const char *t)
{
    /* Stepped before the caller's string can change, so no copy. */
    int rc = t ? sqlite3_bind_text(s, idx, t, -1, SQLITE_STATIC) : sqlite3_bind_null(s, idx);
    return rc == SQLITE_OK ? 0 : store__fail(st, "bind");
}

static int bind_double(store_t *st, sqlite3_stmt *s, int idx, double v)
{
    return sqlite3_bind_double(s, idx, v) == SQLITE_OK ? 0 : store__fail(st, "bind");
}

static int bind_i64(store_t *st, sqlite3_stmt *s, int idx, int64_t v)
{
    return sqlite3_bind_int64(s, idx, v) == SQLITE_OK ? 0 : store__fail(st, "bind");
}

static int bind_id(store_t *st, sqlite3_stmt *s, const char *prompt_id)
{
    return bind_text(st, s, 1, prompt_id);
}

static int status_of(store_t *st, const char *prompt_id, int64_t *status, bool *found)
{
    int rc = bind_id(st, ST(STATUS_OF), prompt_id);
    if (rc) {
        store__done(ST(STATUS_OF));
        return rc;
    }
    return query_i64(st, ST(STATUS_OF), "look up a prompt", status, found);
}

/* Reads every row a bound SELECT yields into a malloc'ed array. */
static int read_rows(store_t *st, sqlite3_stmt *s, const char *what, store_prompt_t **items, size_t *n)
{
    store_prompt_t *arr = NULL;
    size_t len = 0, cap = 0;
    int rc = 0, src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            store_prompt_t *na = realloc(arr, ncap * sizeof *na);
            if (!na) {
                rc = BASE_E_NOMEM;
                break;
            }
            arr = na;
            cap = ncap;
        }
        if ((rc = store__row_read(st, s, &arr[len])))
            break;
        len++;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = store__fail(st, what);
    store__done(s);
    if (rc) {
        for (size_t i = 0; i < len; i++)
            store_prompt_free(&arr[i]);
        free(arr);
        return rc;
    }
    *items = arr;
    *n = len;
    return 0;
}

static bool finite_ms(double v)
{
    return isfinite(v) && v >= 0;
}

int store_enqueue(store_t *st, store_prompt_t *p)
{
    if (!st || !p || !p->prompt_id || !*p->prompt_id || !isfinite(p->number) || !finite_ms(p->created_ms))
        return BASE_E_INVAL;
    int rc = store__tx_begin(st, true);
    if (rc)
        return rc;
    int64_t status = 0, seq = 0;
    bool found = false;
    if ((rc = status_of(st, p->prompt_id, &status, &found)))
        goto out;
    if (found && (status == STORE_PENDING || status == STORE_RUNNING)) {
        rc = BASE_E_EXIST;
        goto out;
    }
    if (found) {
        /* A finished prompt submitted again: its old history entry goes. */
        sqlite3_stmt *d = ST(DELETE_ID);
        if (!(rc = bind_id(st, d, p->prompt_id)))
            rc = step_done(st, d, "replace a finished prompt");
        store__done(d);
        if (rc)
            goto out;
    }
    if ((rc = query_i64(st, ST(NEXT_SEQ), "next queue position", &seq, NULL)))
        goto out;
    sqlite3_stmt *s = ST(INSERT);
    if ((rc = bind_id(st, s, p->prompt_id)) || (rc = bind_double(st, s, 2, p->number)) ||
        (rc = bind_i64(st, s, 3, seq)) || (rc = store__bind_json(st, s, 4, p->prompt)) ||
        (rc = store__bind_json(st, s, 5, p->extra_data)) ||
        (rc = store__bind_json(st, s, 6, p->outputs_to_execute)) ||
        (rc = bind_text(st, s, 7, p->client_id)) || (rc = bind_text(st, s, 8, p->owner)) ||
        (rc = bind_double(st, s, 9, p->created_ms)) || (rc = store__bind_json(st, s, 10, p->outputs)) ||
        (rc = store__bind_json(st, s, 11, p->messages)) || (rc = store__bind_json(st, s, 12, p->meta)) ||
        (rc = bind_text(st, s, 13, p->error)) || (rc = step_done(st, s, "enqueue"))) {
        /* rc says which step failed */
    }
    store__done(s);
out:
    rc = store__tx_end(st, rc);
    if (rc == 0) {
        p->seq = seq;
        p->status = STORE_PENDING;
        p->started_ms = p->finished_ms = 0;
    }
    return rc;
}

/* After an UPDATE that matched nothing: NOENT for an unknown id, INVAL for a row in the wrong
 * state. */
static int why_unchanged(store_t *st, const char *prompt_id)
{
    int64_t status;
    bool found = false;
    int rc = status_of(st, prompt_id, &status, &found);
    return rc ? rc : found ? BASE_E_INVAL : BASE_E_NOENT;
}

int store_mark_running(store_t *st, const char *prompt_id, double started_ms)
{
    if (!st || !prompt_id || !finite_ms(started_ms))
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(MARK_RUNNING);
    int rc = bind_id(st, s, prompt_id);
    if (!rc && !(rc = bind_double(st, s, 2, started_ms)))
        rc = step_done(st, s, "mark running");
    store__done(s);
    if (!rc && sqlite3_changes(st->db) == 0)
        rc = why_unchanged(st, prompt_id);
    return rc;
}

int store_finish(store_t *st, const char *prompt_id, store_status_t status, double finished_ms,
                 const json_t *outputs, const json_t *messages, const json_t *meta, const char *error)
{
    if (!st || !prompt_id || (status != STORE_SUCCESS && status != STORE_ERROR) || !finite_ms(finished_ms))
        return BASE_E_INVAL;
    int rc = store__tx_begin(st, true);
    if (rc)
        return rc;
    int64_t fseq = 0;
    if ((rc = query_i64(st, ST(NEXT_FINISHED_SEQ), "next history position", &fseq, NULL)))
        goto out;
    sqlite3_stmt *s = ST(FINISH);
    if ((rc = bind_id(st, s, prompt_id)) || (rc = bind_i64(st, s, 2, status)) ||
        (rc = bind_double(st, s, 3, finished_ms)) || (rc = store__bind_json(st, s, 4, outputs)) ||
        (rc = store__bind_json(st, s, 5, messages)) || (rc = store__bind_json(st, s, 6, meta)) ||
        (rc = bind_text(st, s, 7, error)) || (rc = bind_i64(st, s, 8, fseq)) ||
        (rc = step_done(st, s, "finish"))) {
        /* rc says which step failed */
    }
    store__done(s);
    if (!rc && sqlite3_changes(st->db) == 0)
        rc = BASE_E_NOENT;
out:
    return store__tx_end(st, rc);
}

/* ["execution_error", {...}] shaped like the event a failing node sends, so clients that
 * read history messages show the reason. NULL on out of memory. */
static json_t *stopped_message(const char *prompt_id, const char *message, double now_ms)
{
    json_t *d = json_new_object(), *m = json_new_array();
    if (!d || !m)
        goto fail;
    if (json_object_set(d, "prompt_id", json_new_string(prompt_id)) ||
        json_object_set(d, "node_id", json_new_null()) || json_object_set(d, "node_type", json_new_null()) ||
        json_object_set(d, "executed", json_new_array()) ||
        json_object_set(d, "exception_message", json_new_string(message)) ||
        json_object_set(d, "exception_type", json_new_string("weft.ServerStopped")) ||
        json_object_set(d, "traceback", json_new_array()) ||
        json_object_set(d, "current_inputs", json_new_object()) ||
        json_object_set(d, "current_outputs", json_new_array()) ||
        json_object_set(d, "timestamp", json_new_int((int64_t)now_ms)))
        goto fail;
    if (json_array_push(m, json_new_string("execution_error")))
        goto fail;
    if (json_array_push(m, d)) { /* took d, even on failure */
        json_free(m);
        return NULL;
    }
    return m;
fail:
    json_free(d);
    json_free(m);
    return NULL;
}

typedef struct {
    char *id;
    json_t *messages; /* the stored array, or a new one when there was none */
} running_row_t;

static void free_running(running_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].id);
        json_free(rows[i].messages);
    }
    free(rows);
}

/* Reads every RUNNING row before updating any, so the SELECT never sees its own writes. */
static int read_running(store_t *st, running_row_t **out, size_t *n)
{
    sqlite3_stmt *s = ST(RUNNING);
    running_row_t *rows = NULL;
    size_t len = 0, cap = 0;
    int rc = 0, src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            running_row_t *nr = realloc(rows, ncap * sizeof *nr);
            if (!nr) {
                rc = BASE_E_NOMEM;
                break;
            }
            rows = nr;
            cap = ncap;
        }
        running_row_t *r = &rows[len];
        memset(r, 0, sizeof *r);
        len++;
        const char *id = (const char *)sqlite3_column_text(s, 0);
        if (!id || !(r->id = strdup(id))) {
            rc = BASE_E_NOMEM;
            break;
        }
        const char *text = (const char *)sqlite3_column_text(s, 1);
        if (text && json_parse(text, (size_t)sqlite3_column_bytes(s, 1), &r->messages, NULL, 0) == 0 &&
            r->messages->type != JSON_ARRAY) {
            json_free(r->messages);
            r->messages = NULL;
        }
        if (!r->messages) {
            if (text)
                BASE_LOG(WARN, "store %s: messages of prompt %s were not a JSON array; replaced", st->path,
                         id);
            if (!(r->messages = json_new_array())) {
                rc = BASE_E_NOMEM;
                break;
            }
        }
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = store__fail(st, "list running prompts");
    sqlite3_reset(s);
    if (rc) {
        free_running(rows, len);
        return rc;
    }
    *out = rows;
    *n = len;
    return 0;
}

int store_recover_running(store_t *st, const char *message, double now_ms, size_t *n)
{
    if (n)
        *n = 0;
    if (!st || !message || !finite_ms(now_ms))
        return BASE_E_INVAL;
    int rc = store__tx_begin(st, true);
    if (rc)
        return rc;
    running_row_t *rows = NULL;
    size_t count = 0;
    int64_t fseq = 0;
    if ((rc = read_running(st, &rows, &count)) ||
        (rc = query_i64(st, ST(NEXT_FINISHED_SEQ), "next history position", &fseq, NULL)))
        goto out;
    for (size_t i = 0; i < count && !rc; i++) {
        json_t *entry = stopped_message(rows[i].id, message, now_ms);
        if (!entry || json_array_push(rows[i].messages, entry)) {
            rc = BASE_E_NOMEM;
            break;
        }
        sqlite3_stmt *s = ST(RECOVER);
        if ((rc = bind_id(st, s, rows[i].id)) || (rc = bind_text(st, s, 2, message)) ||
            (rc = store__bind_json(st, s, 3, rows[i].messages)) || (rc = bind_double(st, s, 4, now_ms)) ||
            (rc = bind_i64(st, s, 5, fseq + (int64_t)i)) ||
            (rc = step_done(st, s, "recover a running prompt"))) {
            /* rc says which step failed */
        }
        store__done(s);
    }
out:
    free_running(rows, count);
    rc = store__tx_end(st, rc);
    if (rc == 0 && n)
        *n = count;
    if (rc == 0 && count)
        BASE_LOG(WARN, "store %s: %zu prompt(s) were running when weft stopped; marked failed", st->path,
                 count);
    return rc;
}

int store_list_pending(store_t *st, store_prompt_t **items, size_t *n)
{
    if (!items || !n)
        return BASE_E_INVAL;
    *items = NULL;
    *n = 0;
    if (!st)
        return BASE_E_INVAL;
    return read_rows(st, ST(LIST_PENDING), "list pending prompts", items, n);
}

/* Deletes with `all` when ids is NULL, else with `one` per id, in one transaction. */
static int delete_rows(store_t *st, sqlite3_stmt *all, sqlite3_stmt *one, const char *const *ids,
                       size_t n_ids, size_t *n)
{
    if (n)
        *n = 0;
    if (!st)
        return BASE_E_INVAL;
    int rc = store__tx_begin(st, true);
    if (rc)
        return rc;
    size_t total = 0;
    if (!ids) {
        rc = step_done(st, all, "delete");
        sqlite3_reset(all);
        total = rc ? 0 : (size_t)sqlite3_changes(st->db);
    }
    for (size_t i = 0; ids && i < n_ids && !rc; i++) {
        if (!ids[i])
            continue;
        if (!(rc = bind_id(st, one, ids[i])))
            rc = step_done(st, one, "delete");
        store__done(one);
        if (!rc)
            total += (size_t)sqlite3_changes(st->db);
    }
    rc = store__tx_end(st, rc);
    if (rc == 0 && n)
        *n = total;
    return rc;
}

int store_delete_pending(store_t *st, const char *const *ids, size_t n_ids, size_t *n)
{
    return delete_rows(st, st ? ST(DELETE_PENDING_ALL) : NULL, st ? ST(DELETE_PENDING_ID) : NULL, ids, n_ids,
                       n);
}

int store_history_delete(store_t *st, const char *const *ids, size_t n_ids, size_t *n)
{
    return delete_rows(st, st ? ST(HISTORY_DELETE_ALL) : NULL, st ? ST(HISTORY_DELETE_ID) : NULL, ids, n_ids,
                       n);
}

int64_t store_history_count(store_t *st)
{
    if (!st)
        return BASE_E_INVAL;
    int64_t count = 0;
    int rc = query_i64(st, ST(HISTORY_COUNT), "count history", &count, NULL);
    return rc ? rc : count;
}

int store_history_page(store_t *st, int64_t max_items, int64_t offset, store_prompt_t **items, size_t *n)
{
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
            if ((rc = query_i64(st, ST(HISTORY_COUNT), "count history", &count, NULL)))
                goto out;
            offset = count > max_items ? count - max_items : 0;
        }
    }
    sqlite3_stmt *s = ST(HISTORY_PAGE);
    /* LIMIT -1 is SQLite's "no limit". */
    if (sqlite3_bind_int64(s, 1, max_items < 0 ? -1 : max_items) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, offset) != SQLITE_OK) {
        rc = store__fail(st, "bind");
        store__done(s);
        goto out;
    }
    rc = read_rows(st, s, "read a history page", items, n);
out:
    rc = store__tx_end(st, rc);
    if (rc && *items) {
        for (size_t i = 0; i < *n; i++)
            store_prompt_free(&(*items)[i]);
        free(*items);
        *items = NULL;
        *n = 0;
    }
    return rc;
}

int store_get(store_t *st, const char *prompt_id, store_prompt_t *out)
{
    if (!out)
        return BASE_E_INVAL;
    memset(out, 0, sizeof *out);
    if (!st || !prompt_id)
        return BASE_E_INVAL;
    sqlite3_stmt *s = ST(GET);
    int rc = bind_id(st, s, prompt_id);
    if (!rc) {
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW)
            rc = store__row_read(st, s, out);
        else if (src == SQLITE_DONE)
            rc = BASE_E_NOENT;
        else
            rc = store__fail(st, "get");
    }
    store__done(s);
    return rc;
}

/* ------------------------------------------------------------------ for the other store files */

int store__step(store_t *st, sqlite3_stmt *s, const char *what)
{
    return step_done(st, s, what);
}

int store__query_i64(store_t *st, sqlite3_stmt *s, const char *what, int64_t *out, bool *found)
{
    return query_i64(st, s, what, out, found);
}

int store__bind_text(store_t *st, sqlite3_stmt *s, int idx, const char *t)
{
    return bind_text(st, s, idx, t);
}

int store__read_rows(store_t *st, sqlite3_stmt *s, const char *what, store_prompt_t **items, size_t *n)
{
    return read_rows(st, s, what, items, n);
}
