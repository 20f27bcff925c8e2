/* The store's schema as an append-only list of migrations. Step i (1-based) takes a database
 * from version i-1 to version i inside one transaction, so a crash mid-migration leaves the
 * previous version intact. Never edit a released step: append a new one (a new table for
 * users or keys is one more array entry). */
#include <stdio.h>

#include "log.h"
#include "store_internal.h"

static const char *const migrations[] = {
    /* 1: the queue and history share one table; status says which a row belongs to.
     * finished_seq orders history by completion and is set exactly for finished rows (the
     * CHECK keeps that true whatever the code does). JSON columns are compact JSON text. */
    "CREATE TABLE schema_version ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  version INTEGER NOT NULL);"
    "CREATE TABLE prompts ("
    "  prompt_id TEXT PRIMARY KEY NOT NULL,"
    "  number REAL NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  prompt TEXT,"
    "  extra_data TEXT,"
    "  outputs_to_execute TEXT,"
    "  client_id TEXT,"
    "  owner TEXT,"
    "  status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 3),"
    "  created_ms REAL NOT NULL DEFAULT 0,"
    "  started_ms REAL NOT NULL DEFAULT 0,"
    "  finished_ms REAL NOT NULL DEFAULT 0,"
    "  outputs TEXT,"
    "  messages TEXT,"
    "  meta TEXT,"
    "  error TEXT,"
    "  finished_seq INTEGER,"
    "  CHECK ((status >= 2) = (finished_seq IS NOT NULL)));"
    /* Pending order; also finds RUNNING rows at start-up. */
    "CREATE INDEX prompts_pending ON prompts (status, number, seq);"
    /* MAX(seq) for the next insertion without a table scan. */
    "CREATE INDEX prompts_seq ON prompts (seq);"
    /* History order and MAX(finished_seq); NULLs (unfinished rows) do not collide. */
    "CREATE UNIQUE INDEX prompts_history ON prompts (finished_seq);",
    /* 2: ownership. files: who made each file in output/, input/ and temp/ (path is the
     * normalized "subfolder/name" inside folder). workflow_shares: read grants on a file of
     * an owner's workflow library, to a user, a role or everyone ('public', grantee '').
     * share_links: capability URLs for one workflow or output; only the SHA-256 of the token
     * is kept, so a copy of the database grants nothing. */
    "CREATE TABLE files ("
    "  folder TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  owner TEXT,"
    "  prompt_id TEXT,"
    "  created_ms REAL NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (folder, path));"
    "CREATE TABLE workflow_shares ("
    "  owner TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('user', 'role', 'public')),"
    "  grantee TEXT NOT NULL DEFAULT '',"
    "  created_ms REAL NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (owner, path, kind, grantee));"
    "CREATE INDEX workflow_shares_grantee ON workflow_shares (kind, grantee);"
    "CREATE TABLE share_links ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  token_sha256 TEXT NOT NULL UNIQUE,"
    "  owner TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('workflow', 'output')),"
    "  folder TEXT,"
    "  path TEXT NOT NULL,"
    "  expires_ms REAL NOT NULL,"
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  created_ms REAL NOT NULL DEFAULT 0);"
    "CREATE INDEX share_links_owner ON share_links (owner);"
    /* One user's history page and pending count without a scan of everyone's rows. */
    "CREATE INDEX prompts_owner ON prompts (owner, finished_seq);",
};

const int store__schema_current = (int)(sizeof migrations / sizeof migrations[0]);

static int fail(sqlite3 *db, const char *path, const char *what)
{
    BASE_LOG(ERROR, "store %s: %s: %s", path, what, sqlite3_errmsg(db));
    return sqlite3_errcode(db) == SQLITE_NOMEM ? BASE_E_NOMEM : BASE_E_IO;
}

/* Integer result of a one-row query; SQLite error code on failure. */
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

/* Current version: 0 for an empty database. A database with tables but no schema_version is
 * some other program's file, which we must not add tables to. */
static int read_version(sqlite3 *db, const char *path, int64_t *version)
{
    int64_t has = 0, tables = 0;
    if (query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
                  &has) != SQLITE_OK)
        return fail(db, path, "cannot read the schema (not a SQLite database, or corrupt)");
    if (!has) {
        /* auth/ keeps its own tables (and auth_schema_version) in the same file and may have
         * created them first (`weft users add` before the first `weft serve`): those do not
         * make the file foreign. */
        if (query_int(db,
                      "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND "
                      "NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                      "name = 'auth_schema_version')",
                      &tables) != SQLITE_OK)
            return fail(db, path, "cannot read the schema");
        if (tables) {
            BASE_LOG(ERROR,
                     "store %s: the database holds tables but no schema_version: not a weft "
                     "database; refusing to modify it",
                     path);
            return BASE_E_IO;
        }
        *version = 0;
        return 0;
    }
    int rc = query_int(db, "SELECT version FROM schema_version WHERE id = 1", version);
    if (rc == SQLITE_NOTFOUND || (rc == SQLITE_OK && *version < 1)) {
        BASE_LOG(ERROR, "store %s: schema_version has no valid row; the database is damaged", path);
        return BASE_E_IO;
    }
    if (rc != SQLITE_OK)
        return fail(db, path, "cannot read schema_version");
    return 0;
}

static int too_new(const char *path, int64_t version)
{
    BASE_LOG(ERROR,
             "store %s: schema version %lld is newer than this weft understands (%d); "
             "run a newer weft or use another base directory",
             path, (long long)version, store__schema_current);
    return BASE_E_NOTSUP;
}

/* Runs step `target` (1-based) unless another connection got there first: the version is
 * re-read under the write lock, so two processes opening one file migrate once. */
static int apply_step(sqlite3 *db, const char *path, int target)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, path, "cannot start a migration");
    int64_t version = 0;
    int rc = read_version(db, path, &version);
    if (rc)
        goto out;
    if (version > store__schema_current) {
        rc = too_new(path, version);
        goto out;
    }
    if (version >= target)
        goto out;
    char what[64];
    snprintf(what, sizeof what, "migration to schema version %d failed", target);
    if (sqlite3_exec(db, migrations[target - 1], NULL, NULL, NULL) != SQLITE_OK) {
        rc = fail(db, path, what);
        goto out;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO schema_version (id, version) VALUES (1, %d)", target);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        rc = fail(db, path, what);
out:
    if (rc == 0) {
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            rc = fail(db, path, "cannot commit a migration");
    }
    if (rc && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int store__migrate(sqlite3 *db, const char *path, int *version)
{
    int64_t v = 0;
    int rc = read_version(db, path, &v);
    if (rc)
        return rc;
    if (v > store__schema_current)
        return too_new(path, v);
    for (int target = (int)v + 1; target <= store__schema_current; target++) {
        if ((rc = apply_step(db, path, target)))
            return rc;
        BASE_LOG(INFO, "store %s: schema migrated to version %d", path, target);
    }
    *version = store__schema_current;
    return 0;
}
