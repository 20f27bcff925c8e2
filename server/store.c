/* The store's connection: opening and checking the database file, pragmas, the statement
 * cache, transactions and the row codec. The operations are in store_ops.c.
 *
 * Durability: journal_mode=WAL with synchronous=NORMAL. A commit appends to the WAL file with
 * write(2) before sqlite3_step returns, so once store_enqueue returns (and the route answers
 * 200) the prompt is in the kernel's page cache and survives kill -9 or any crash of this
 * process. What NORMAL gives up is an fsync per commit: a power loss or kernel crash may lose
 * the last few commits (never corrupting the file). FULL would close that gap at the price of
 * one fsync per enqueue, mark_running and finish, which on slow disks costs more than running a
 * small prompt. Losing the last moments of submissions on power loss is still far better than
 * ComfyUI, whose queue lives in memory and is lost on any crash. */
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_internal.h"

static const char *const stmt_sql[STORE__STMT_COUNT] = {
#define STORE_STMT_SQL_(name, sql) [STORE__##name] = sql,
    STORE_STMT_MAP(STORE_STMT_SQL_)
#undef STORE_STMT_SQL_
};

int store__fail(store_t *st, const char *what)
{
    int code = sqlite3_extended_errcode(st->db);
    BASE_LOG(ERROR, "store %s: %s: %s (SQLite code %d)", st->path, what, sqlite3_errmsg(st->db), code);
    return (code & 0xff) == SQLITE_NOMEM ? BASE_E_NOMEM : BASE_E_IO;
}

void store__done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static int exec_cached(store_t *st, store__stmt_id_t id, const char *what)
{
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store__fail(st, what);
}

int store__tx_begin(store_t *st, bool write)
{
    return exec_cached(st, write ? STORE__BEGIN_WRITE : STORE__BEGIN_READ, "cannot begin a transaction");
}

int store__tx_end(store_t *st, int rc)
{
    if (rc == 0) {
        rc = exec_cached(st, STORE__COMMIT, "cannot commit");
        if (rc == 0)
            return 0;
    }
    /* After some errors (a full disk, I/O) SQLite has already rolled back. */
    if (!sqlite3_get_autocommit(st->db)) {
        sqlite3_stmt *s = st->stmt[STORE__ROLLBACK];
        if (sqlite3_step(s) != SQLITE_DONE)
            store__fail(st, "cannot roll back");
        sqlite3_reset(s);
    }
    return rc;
}

/* Runs a pragma and returns its first result column in buf ("" when it yields no row). */
static int pragma(store_t *st, const char *sql, char *buf, size_t bufsz)
{
    sqlite3_stmt *s = NULL;
    buf[0] = '\0';
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store__fail(st, sql);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        if (t && !buf[0])
            snprintf(buf, bufsz, "%s", (const char *)t);
    }
    int out = rc == SQLITE_DONE ? 0 : store__fail(st, sql);
    sqlite3_finalize(s);
    return out;
}

/* The first read of the file happens here: a file that is not SQLite (or whose header is
 * damaged) fails with SQLITE_NOTADB / SQLITE_CORRUPT, which we report as such. */
static int configure(store_t *st)
{
    char mode[32];
    int rc = pragma(st, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (rc) {
        BASE_LOG(ERROR,
                 "store %s: not a SQLite database, or damaged; move it away to start with "
                 "an empty queue and history",
                 st->path);
        return rc;
    }
    if (strcmp(mode, "wal") != 0) {
        /* A file system without shared memory (some network mounts) refuses WAL; the store
         * still works, only without concurrent readers. */
        BASE_LOG(WARN, "store %s: WAL mode unavailable (journal_mode is %s)", st->path, mode);
    }
    char ignore[8];
    if ((rc = pragma(st, "PRAGMA synchronous = NORMAL", ignore, sizeof ignore)) ||
        (rc = pragma(st, "PRAGMA foreign_keys = ON", ignore, sizeof ignore)))
        return rc;
    return 0;
}

int store_open(const char *path, store_t **out)
{
    if (!out)
        return BASE_E_INVAL;
    *out = NULL;
    if (!path || !*path)
        return BASE_E_INVAL;
    store_t *st = calloc(1, sizeof *st);
    if (!st)
        return BASE_E_NOMEM;
    int rc = BASE_E_NOMEM;
    if (!(st->path = strdup(path)))
        goto out;
    /* The file holds password and key hashes: create it owner-only (SQLite would use 0644;
     * its -wal and -shm files copy the main file's mode). Only when it does not exist yet:
     * closing any descriptor of a file drops every POSIX lock this process holds on it, which
     * would corrupt a database another connection of ours has open. */
    int fd0 = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd0 >= 0)
        close(fd0);
    /* NOMUTEX: each thread opens its own store_t, so SQLite's per-connection lock is waste. */
    int src = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                              NULL);
    if (src != SQLITE_OK) {
        if (!st->db)
            goto out;
        rc = store__fail(st, "cannot open the database");
        goto out;
    }
    sqlite3_extended_result_codes(st->db, 1);
    /* Two store_t on one file (or two processes) wait for each other's write locks. */
    sqlite3_busy_timeout(st->db, 5000);
    if ((rc = configure(st)))
        goto out;
    if ((rc = store__migrate(st->db, st->path, &st->version)))
        goto out;
    for (int i = 0; i < STORE__STMT_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL) !=
            SQLITE_OK) {
            rc = store__fail(st, "cannot prepare a statement (damaged schema?)");
            goto out;
        }
    }
    *out = st;
    return 0;
out:
    store_close(st);
    return rc;
}

void store_close(store_t *st)
{
    if (!st)
        return;
    for (int i = 0; i < STORE__STMT_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    /* The last connection to close checkpoints the WAL into the main file. */
    if (st->db && sqlite3_close(st->db) != SQLITE_OK)
        BASE_LOG(WARN, "store %s: close: %s", st->path, sqlite3_errmsg(st->db));
    free(st->path);
    free(st);
}

int store_schema_version(store_t *st)
{
    return st ? st->version : BASE_E_INVAL;
}

void store_prompt_free(store_prompt_t *p)
{
    if (!p)
        return;
    free(p->prompt_id);
    json_free(p->prompt);
    json_free(p->extra_data);
    json_free(p->outputs_to_execute);
    free(p->client_id);
    free(p->owner);
    json_free(p->outputs);
    json_free(p->messages);
    json_free(p->meta);
    free(p->error);
    memset(p, 0, sizeof *p);
}

int store__bind_json(store_t *st, sqlite3_stmt *s, int idx, const json_t *j)
{
    if (!j)
        return sqlite3_bind_null(s, idx) == SQLITE_OK ? 0 : store__fail(st, "bind");
    char *text = json_dump(j, JSON_COMPACT);
    if (!text)
        return BASE_E_NOMEM;
    /* SQLite frees text with the destructor, also when the bind fails. */
    if (sqlite3_bind_text(s, idx, text, (int)strlen(text), free) != SQLITE_OK)
        return store__fail(st, "bind");
    return 0;
}

static int col_str(sqlite3_stmt *s, int col, char **out)
{
    *out = NULL;
    const unsigned char *t = sqlite3_column_text(s, col);
    if (!t)
        return sqlite3_column_type(s, col) == SQLITE_NULL ? 0 : BASE_E_NOMEM;
    return (*out = strdup((const char *)t)) ? 0 : BASE_E_NOMEM;
}

static int col_json(store_t *st, sqlite3_stmt *s, int col, json_t **out)
{
    *out = NULL;
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return 0;
    const char *t = (const char *)sqlite3_column_text(s, col);
    if (!t)
        return BASE_E_NOMEM;
    size_t len = (size_t)sqlite3_column_bytes(s, col);
    char err[128];
    int rc = json_parse(t, len, out, err, sizeof err);
    if (rc == BASE_E_JSON) {
        BASE_LOG(ERROR, "store %s: column %s of prompt %s is not JSON (%s); the database is damaged",
                 st->path, sqlite3_column_name(s, col), (const char *)sqlite3_column_text(s, 0), err);
        return BASE_E_IO;
    }
    return rc;
}

int store__row_read(store_t *st, sqlite3_stmt *s, store_prompt_t *out)
{
    memset(out, 0, sizeof *out);
    int64_t status = sqlite3_column_int64(s, 8);
    if (status < STORE_PENDING || status > STORE_ERROR) {
        BASE_LOG(ERROR, "store %s: prompt %s has status %lld; the database is damaged", st->path,
                 (const char *)sqlite3_column_text(s, 0), (long long)status);
        return BASE_E_IO;
    }
    int rc;
    if ((rc = col_str(s, 0, &out->prompt_id)) || (rc = col_json(st, s, 3, &out->prompt)) ||
        (rc = col_json(st, s, 4, &out->extra_data)) || (rc = col_json(st, s, 5, &out->outputs_to_execute)) ||
        (rc = col_str(s, 6, &out->client_id)) || (rc = col_str(s, 7, &out->owner)) ||
        (rc = col_json(st, s, 12, &out->outputs)) || (rc = col_json(st, s, 13, &out->messages)) ||
        (rc = col_json(st, s, 14, &out->meta)) || (rc = col_str(s, 15, &out->error))) {
        store_prompt_free(out);
        return rc;
    }
    out->number = sqlite3_column_double(s, 1);
    out->seq = sqlite3_column_int64(s, 2);
    out->status = (store_status_t)status;
    out->created_ms = sqlite3_column_double(s, 9);
    out->started_ms = sqlite3_column_double(s, 10);
    out->finished_ms = sqlite3_column_double(s, 11);
    return 0;
}
