/* auth's SQLite connection: opening the file, pragmas, the append-only list of schema steps
 * (versioned in auth's own table auth_schema_version, so the server's store and auth migrate
 * independently in one weft.db), the statement cache and transactions. */
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "auth_internal.h"
#include "log.h"

/* Step i (1-based) takes the auth tables from version i-1 to i in one transaction. Never edit
 * a released step: append one. Times are unix seconds. */
static const char *const migrations[] = {
    /* 1: users, keys, sessions, quotas and the audit log. Names compare case-insensitively so
     * "Admin" cannot be created next to "admin". Roles and key scopes are stored by name, so a
     * reordering of the enums in auth.h never changes what a stored row means. Sessions keep
     * only the SHA-256 of their token; keys only an argon2id hash of their secret. */
    "CREATE TABLE auth_schema_version ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  version INTEGER NOT NULL);"
    /* epoch counts changes that invalidate verified keys (revoke, role, disable, password),
     * so a server sees a revocation made by another process (the CLI) on its next request. */
    "CREATE TABLE auth_state ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  epoch INTEGER NOT NULL);"
    "INSERT INTO auth_state (id, epoch) VALUES (1, 0);"
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    "  pw_hash TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  disabled INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE api_keys ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  label TEXT NOT NULL DEFAULT '',"
    "  scopes TEXT NOT NULL DEFAULT '',"
    "  hash TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL DEFAULT 0,"
    "  last_used INTEGER NOT NULL DEFAULT 0,"
    "  revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_user ON api_keys (user_id);"
    "CREATE TABLE sessions ("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  token_hash BLOB NOT NULL UNIQUE,"
    "  csrf TEXT NOT NULL,"
    "  created REAL NOT NULL,"
    "  expires REAL NOT NULL);"
    "CREATE INDEX sessions_user ON sessions (user_id);"
    "CREATE INDEX sessions_expires ON sessions (expires);"
    "CREATE TABLE quota_usage ("
    "  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  day INTEGER NOT NULL,"
    "  count INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, day)) WITHOUT ROWID;"
    /* AUTOINCREMENT: an id is never reused, so paging by id is stable. */
    "CREATE TABLE audit_log ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time INTEGER NOT NULL,"
    "  who TEXT,"
    "  ip TEXT,"
    "  action TEXT NOT NULL,"
    "  target TEXT,"
    "  detail TEXT);"
    /* Append-only also for anyone with a SQLite shell who forgets: rewriting history must be
     * a deliberate act (dropping the trigger), never an accident. */
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    /* INSERT OR REPLACE deletes the old row without firing delete triggers. */
    "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
    "  WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
};

static const int schema_current = (int)(sizeof migrations / sizeof migrations[0]);

static const char *const stmt_sql[AUTH__STMT_COUNT] = {
#define AUTH_STMT_SQL_(name, sql) [AUTH__##name] = sql,
    AUTH_STMT_MAP(AUTH_STMT_SQL_)
#undef AUTH_STMT_SQL_
};

int auth__fail(auth_t *a, const char *what)
{
    int code = sqlite3_extended_errcode(a->db);
    BASE_LOG(ERROR, "auth %s: %s: %s (SQLite code %d)", a->path, what, sqlite3_errmsg(a->db), code);
    return (code & 0xff) == SQLITE_NOMEM ? BASE_E_NOMEM : BASE_E_IO;
}

void auth__done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static int exec_cached(auth_t *a, auth__stmt_id_t id, const char *what)
{
    sqlite3_stmt *s = a->stmt[id];
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : auth__fail(a, what);
}

int auth__tx_begin(auth_t *a)
{
    return exec_cached(a, AUTH__BEGIN, "cannot begin a transaction");
}

int auth__tx_end(auth_t *a, int rc)
{
    if (rc == 0) {
        rc = exec_cached(a, AUTH__COMMIT, "cannot commit");
        if (rc == 0)
            return 0;
    }
    /* After some errors (a full disk, I/O) SQLite has already rolled back. */
    if (!sqlite3_get_autocommit(a->db)) {
        sqlite3_stmt *s = a->stmt[AUTH__ROLLBACK];
        if (sqlite3_step(s) != SQLITE_DONE)
            auth__fail(a, "cannot roll back");
        sqlite3_reset(s);
    }
    return rc;
}

void auth__col_text(sqlite3_stmt *s, int col, char *buf, size_t bufsz)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(buf, bufsz, "%s", t ? (const char *)t : "");
}

/* Integer result of a one-row query; a SQLite code on failure, SQLITE_NOTFOUND for no row. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_NOTFOUND;
    }
    sqlite3_finalize(s);
    return rc;
}

/* 0 when auth has never touched this database. Other tables (the server's store) may exist:
 * weft.db is shared, and only auth_schema_version says whether auth's tables are there. */
static int read_version(auth_t *a, int64_t *version)
{
    int64_t has = 0;
    if (query_int(a->db,
                  "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'auth_schema_version'",
                  &has) != SQLITE_OK)
        return auth__fail(a, "cannot read the schema (not a SQLite database, or damaged)");
    if (!has) {
        *version = 0;
        return 0;
    }
    int rc = query_int(a->db, "SELECT version FROM auth_schema_version WHERE id = 1", version);
    if (rc == SQLITE_NOTFOUND || (rc == SQLITE_OK && *version < 1)) {
        BASE_LOG(ERROR, "auth %s: auth_schema_version has no valid row; the database is damaged", a->path);
        return BASE_E_IO;
    }
    return rc == SQLITE_OK ? 0 : auth__fail(a, "cannot read auth_schema_version");
}

static int too_new(const auth_t *a, int64_t version)
{
    BASE_LOG(ERROR,
             "auth %s: auth schema version %lld is newer than this weft understands (%d); "
             "run a newer weft or use another base directory",
             a->path, (long long)version, schema_current);
    return BASE_E_NOTSUP;
}

/* Runs step `target` unless another connection got there first: the version is re-read under
 * the write lock, so two processes (a server and `weft users add`) migrate once. */
static int apply_step(auth_t *a, int target)
{
    if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return auth__fail(a, "cannot start a migration");
    int64_t version = 0;
    int rc = read_version(a, &version);
    if (rc)
        goto out;
    if (version > schema_current) {
        rc = too_new(a, version);
        goto out;
    }
    if (version >= target)
        goto out;
    char what[64];
    snprintf(what, sizeof what, "migration to auth schema version %d failed", target);
    if (sqlite3_exec(a->db, migrations[target - 1], NULL, NULL, NULL) != SQLITE_OK) {
        rc = auth__fail(a, what);
        goto out;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO auth_schema_version (id, version) VALUES (1, %d)",
             target);
    if (sqlite3_exec(a->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        rc = auth__fail(a, what);
out:
    if (rc == 0 && sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = auth__fail(a, "cannot commit a migration");
    if (rc && !sqlite3_get_autocommit(a->db))
        sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int migrate(auth_t *a)
{
    int64_t v = 0;
    int rc = read_version(a, &v);
    if (rc)
        return rc;
    if (v > schema_current)
        return too_new(a, v);
    for (int target = (int)v + 1; target <= schema_current; target++) {
        if ((rc = apply_step(a, target)))
            return rc;
        BASE_LOG(INFO, "auth %s: schema migrated to version %d", a->path, target);
    }
    return 0;
}

/* Runs a pragma and returns its first result column in buf ("" when it yields no row). */
static int pragma(auth_t *a, const char *sql, char *buf, size_t bufsz)
{
    sqlite3_stmt *s = NULL;
    buf[0] = '\0';
    if (sqlite3_prepare_v2(a->db, sql, -1, &s, NULL) != SQLITE_OK)
        return auth__fail(a, sql);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        if (t && !buf[0])
            snprintf(buf, bufsz, "%s", (const char *)t);
    }
    int out = rc == SQLITE_DONE ? 0 : auth__fail(a, sql);
    sqlite3_finalize(s);
    return out;
}

int auth__db_open(auth_t *a)
{
    /* The file holds password and key hashes: create it owner-only (SQLite would use 0644;
     * its -wal and -shm files copy the main file's mode). Only when it does not exist yet:
     * closing any descriptor of a file drops every POSIX lock this process holds on it, which
     * would corrupt a database another connection of ours has open. */
    int fd0 = open(a->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd0 >= 0)
        close(fd0);
    /* NOMUTEX: an auth_t is used by one thread. */
    int src = sqlite3_open_v2(a->path, &a->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK)
        return a->db ? auth__fail(a, "cannot open the database") : BASE_E_NOMEM;
    sqlite3_extended_result_codes(a->db, 1);
    /* The server's store, the CLI and auth share the file; wait for each other's locks. */
    sqlite3_busy_timeout(a->db, 5000);
    char mode[32], ignore[8];
    int rc = pragma(a, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (rc) {
        BASE_LOG(ERROR, "auth %s: not a SQLite database, or damaged", a->path);
        return rc;
    }
    if (strcmp(mode, "wal") != 0)
        BASE_LOG(WARN, "auth %s: WAL mode unavailable (journal_mode is %s)", a->path, mode);
    if ((rc = pragma(a, "PRAGMA synchronous = NORMAL", ignore, sizeof ignore)) ||
        (rc = pragma(a, "PRAGMA foreign_keys = ON", ignore, sizeof ignore)))
        return rc;
    if ((rc = migrate(a)))
        return rc;
    for (int i = 0; i < AUTH__STMT_COUNT; i++) {
        if (sqlite3_prepare_v3(a->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &a->stmt[i], NULL) !=
            SQLITE_OK)
            return auth__fail(a, "cannot prepare a statement (damaged schema?)");
    }
    return 0;
}
