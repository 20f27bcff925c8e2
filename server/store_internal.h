/* Private to server/store*.c: what the store's files share. Nothing else includes this. */
#ifndef WEFT_SRV_STORE_INTERNAL_H
#define WEFT_SRV_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

/* Every statement the store runs, prepared once at open and reset after each use. */
#define STORE_COLS                                                                                           \
    "prompt_id, number, seq, prompt, extra_data, outputs_to_execute, client_id, owner, status, "             \
    "created_ms, started_ms, finished_ms, outputs, messages, meta, error"

#define STORE_STMT_MAP(XX)                                                                                   \
    XX(BEGIN_WRITE, "BEGIN IMMEDIATE")                                                                       \
    XX(BEGIN_READ, "BEGIN")                                                                                  \
    XX(COMMIT, "COMMIT")                                                                                     \
    XX(ROLLBACK, "ROLLBACK")                                                                                 \
    XX(STATUS_OF, "SELECT status FROM prompts WHERE prompt_id = ?1")                                         \
    XX(NEXT_SEQ, "SELECT COALESCE(MAX(seq), 0) + 1 FROM prompts")                                            \
    XX(NEXT_FINISHED_SEQ, "SELECT COALESCE(MAX(finished_seq), 0) + 1 FROM prompts")                          \
    XX(DELETE_ID, "DELETE FROM prompts WHERE prompt_id = ?1")                                                \
    XX(INSERT, "INSERT INTO prompts (" STORE_COLS ", finished_seq) VALUES "                                  \
               "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, 0, 0, ?10, ?11, ?12, ?13, NULL)")                    \
    XX(MARK_RUNNING, "UPDATE prompts SET status = 1, started_ms = ?2 "                                       \
                     "WHERE prompt_id = ?1 AND status = 0")                                                  \
    XX(FINISH, "UPDATE prompts SET status = ?2, finished_ms = ?3, outputs = ?4, messages = ?5, "             \
               "meta = ?6, error = ?7, finished_seq = ?8 WHERE prompt_id = ?1")                              \
    XX(RUNNING, "SELECT prompt_id, messages FROM prompts WHERE status = 1 "                                  \
                "ORDER BY started_ms, seq")                                                                  \
    XX(RECOVER, "UPDATE prompts SET status = 3, error = ?2, messages = ?3, finished_ms = ?4, "               \
                "finished_seq = ?5 WHERE prompt_id = ?1 AND status = 1")                                     \
    XX(LIST_PENDING, "SELECT " STORE_COLS " FROM prompts WHERE status = 0 ORDER BY number, seq")             \
    XX(DELETE_PENDING_ALL, "DELETE FROM prompts WHERE status = 0")                                           \
    XX(DELETE_PENDING_ID, "DELETE FROM prompts WHERE status = 0 AND prompt_id = ?1")                         \
    XX(HISTORY_COUNT, "SELECT count(*) FROM prompts WHERE finished_seq IS NOT NULL")                         \
    XX(HISTORY_PAGE, "SELECT " STORE_COLS " FROM prompts WHERE finished_seq IS NOT NULL "                    \
                     "ORDER BY finished_seq LIMIT ?1 OFFSET ?2")                                             \
    XX(HISTORY_DELETE_ALL, "DELETE FROM prompts WHERE finished_seq IS NOT NULL")                             \
    XX(HISTORY_DELETE_ID, "DELETE FROM prompts WHERE finished_seq IS NOT NULL AND prompt_id = ?1")           \
    XX(GET, "SELECT " STORE_COLS " FROM prompts WHERE prompt_id = ?1")                                     \
    /* schema 2: ownership (store_own.c, store_share.c) */                                                  \
    XX(HISTORY_COUNT_OWNED, "SELECT count(*) FROM prompts WHERE finished_seq IS NOT NULL AND owner = ?1")    \
    XX(HISTORY_PAGE_OWNED, "SELECT " STORE_COLS " FROM prompts WHERE finished_seq IS NOT NULL "             \
                           "AND owner = ?3 ORDER BY finished_seq LIMIT ?1 OFFSET ?2")                        \
    XX(HISTORY_DELETE_OWNED_ALL, "DELETE FROM prompts WHERE finished_seq IS NOT NULL AND owner = ?1")       \
    XX(HISTORY_DELETE_OWNED_ID, "DELETE FROM prompts WHERE finished_seq IS NOT NULL AND owner = ?1 "        \
                                "AND prompt_id = ?2")                                                        \
    XX(FILE_RECORD, "INSERT OR REPLACE INTO files (folder, path, owner, prompt_id, created_ms) "             \
                    "VALUES (?1, ?2, ?3, ?4, ?5)")                                                           \
    XX(FILE_OWNER, "SELECT owner FROM files WHERE folder = ?1 AND path = ?2")                                \
    XX(SHARE_CLEAR, "DELETE FROM workflow_shares WHERE owner = ?1 AND path = ?2")                            \
    XX(SHARE_ADD, "INSERT OR IGNORE INTO workflow_shares (owner, path, kind, grantee, created_ms) "          \
                  "VALUES (?1, ?2, ?3, ?4, ?5)")                                                             \
    XX(SHARE_MOVE, "UPDATE OR REPLACE workflow_shares SET path = ?3 WHERE owner = ?1 AND path = ?2")         \
    XX(SHARE_GET, "SELECT kind, grantee FROM workflow_shares WHERE owner = ?1 AND path = ?2 "                \
                  "ORDER BY kind, grantee")                                                                  \
    XX(SHARE_ALLOWS, "SELECT 1 FROM workflow_shares WHERE owner = ?1 AND path = ?2 AND "                     \
                     "((kind = 'user' AND grantee = ?3) OR (kind = 'role' AND grantee = ?4) "                \
                     "OR kind = 'public') LIMIT 1")                                                          \
    XX(SHARE_LIST_FOR, "SELECT DISTINCT owner, path FROM workflow_shares WHERE owner <> ?1 AND "             \
                       "((kind = 'user' AND grantee = ?1) OR (kind = 'role' AND grantee = ?2) "              \
                       "OR kind = 'public') ORDER BY owner, path")                                           \
    XX(LINK_ADD, "INSERT INTO share_links (id, token_sha256, owner, kind, folder, path, expires_ms, "        \
                 "revoked, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)")                          \
    XX(LINK_LIST, "SELECT id, owner, kind, folder, path, expires_ms, created_ms, revoked FROM share_links " \
                  "WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_ms, rowid")                                  \
    XX(LINK_REVOKE, "UPDATE share_links SET revoked = 1 WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)")     \
    XX(LINK_FIND, "SELECT id, owner, kind, folder, path, expires_ms, created_ms, revoked FROM share_links " \
                  "WHERE token_sha256 = ?1 AND revoked = 0 AND expires_ms > ?2")

typedef enum {
#define STORE_STMT_ENUM_(name, sql) STORE__##name,
    STORE_STMT_MAP(STORE_STMT_ENUM_)
#undef STORE_STMT_ENUM_
        STORE__STMT_COUNT
} store__stmt_id_t;

struct store_s {
    sqlite3 *db;
    char *path;  /* owned: for log lines */
    int version; /* schema version after migrating */
    sqlite3_stmt *stmt[STORE__STMT_COUNT];
};

/* Logs "store <path>: <what>: <SQLite message>"; BASE_E_NOMEM or BASE_E_IO. */
int store__fail(store_t *st, const char *what);

/* Transactions. store__tx_end commits when rc == 0 (returning the commit's error, if any) and
 * otherwise rolls back and returns rc unchanged. */
int store__tx_begin(store_t *st, bool write);
int store__tx_end(store_t *st, int rc);

/* Fills *out (zeroed first) from a row selected with STORE_COLS; BASE_E_IO when a stored
 * JSON column does not parse (a damaged database). */
int store__row_read(store_t *st, sqlite3_stmt *s, store_prompt_t *out);

/* Binds j as compact JSON (NULL binds SQL NULL). 0 or BASE_E_NOMEM/BASE_E_IO. */
int store__bind_json(store_t *st, sqlite3_stmt *s, int idx, const json_t *j);

/* Resets a cached statement for its next use. */
void store__done(sqlite3_stmt *s);

/* store_ops.c's helpers for the other store files. store__step: a statement run for its
 * effect. store__query_i64: one integer (0 and !*found when no row), statement reset.
 * store__bind_text: NULL binds SQL NULL; the text must outlive the step. store__read_rows:
 * every row of a bound SELECT of STORE_COLS into a malloc'ed array, statement reset. */
int store__step(store_t *st, sqlite3_stmt *s, const char *what);
int store__query_i64(store_t *st, sqlite3_stmt *s, const char *what, int64_t *out, bool *found);
int store__bind_text(store_t *st, sqlite3_stmt *s, int idx, const char *t);
int store__read_rows(store_t *st, sqlite3_stmt *s, const char *what, store_prompt_t **items, size_t *n);

/* The schema version this build writes; store_schema.c's migration array has this many steps. */
extern const int store__schema_current;

/* Brings db up to store__schema_current, one transaction per step. *version = the version
 * after migrating. BASE_E_NOTSUP for a database written by a newer weft, BASE_E_IO for a
 * file that is not a weft database; both logged with path. */
int store__migrate(sqlite3 *db, const char *path, int *version);

#endif
