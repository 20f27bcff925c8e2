/* Private to auth/: the auth_t struct, the prepared statements and the helpers shared between
 * the files of this folder. Nothing outside auth/ includes this (tests may, to steer the clock). */
#ifndef WEFT_AUTH_INTERNAL_H
#define WEFT_AUTH_INTERNAL_H

#include <sqlite3.h>

#include "auth.h"

/* ------------------------------------------------------------------ prepared statements */

/* Every statement auth runs more than once, prepared at open. The audit_log rows appear in
 * INSERT and SELECT only: the log is append-only, and the schema's triggers refuse the rest. */
#define AUTH_STMT_MAP(XX)                                                                                    \
    XX(BEGIN, "BEGIN IMMEDIATE")                                                                             \
    XX(COMMIT, "COMMIT")                                                                                     \
    XX(ROLLBACK, "ROLLBACK")                                                                                 \
    XX(EPOCH_GET, "SELECT epoch FROM auth_state WHERE id = 1")                                               \
    XX(EPOCH_BUMP, "UPDATE auth_state SET epoch = epoch + 1 WHERE id = 1")                                   \
    XX(USER_ADD, "INSERT INTO users (name, pw_hash, role, disabled, created) VALUES (?, ?, ?, 0, ?)")        \
    XX(USER_GET, "SELECT id, name, pw_hash, role, disabled FROM users WHERE name = ?")                       \
    XX(USER_SET_PW, "UPDATE users SET pw_hash = ? WHERE id = ?")                                             \
    XX(USER_SET_ROLE, "UPDATE users SET role = ? WHERE id = ?")                                              \
    XX(USER_SET_DISABLED, "UPDATE users SET disabled = ? WHERE id = ?")                                      \
    XX(USER_LIST, "SELECT id, name, role, disabled, created FROM users ORDER BY id")                         \
    XX(USER_COUNT, "SELECT count(*) FROM users")                                                             \
    XX(KEY_ADD, "INSERT INTO api_keys (id, user_id, label, scopes, hash, created, expires, "                 \
                "last_used, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)")                                    \
    XX(KEY_GET, "SELECT k.hash, k.scopes, k.expires, k.revoked, k.last_used, u.id, u.name, "                 \
                "u.role, u.disabled FROM api_keys k JOIN users u ON u.id = k.user_id "                       \
                "WHERE k.id = ?")                                                                            \
    XX(KEY_OWNER, "SELECT u.name FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?")           \
    XX(KEY_REVOKE, "UPDATE api_keys SET revoked = 1 WHERE id = ?")                                           \
    XX(KEY_TOUCH, "UPDATE api_keys SET last_used = ? WHERE id = ?")                                          \
    XX(KEY_LIST, "SELECT k.id, u.name, k.label, k.scopes, u.role, k.created, k.expires, "                    \
                 "k.last_used, k.revoked FROM api_keys k JOIN users u ON u.id = k.user_id "                  \
                 "WHERE ?1 IS NULL OR u.name = ?1 ORDER BY k.created, k.id")                                 \
    XX(SESSION_ADD, "INSERT INTO sessions (user_id, token_hash, csrf, created, expires) "                    \
                    "VALUES (?, ?, ?, ?, ?)")                                                                \
    XX(SESSION_GET, "SELECT s.id, s.csrf, s.expires, u.id, u.name, u.role, u.disabled "                      \
                    "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?")               \
    XX(SESSION_DEL, "DELETE FROM sessions WHERE token_hash = ?")                                             \
    XX(SESSION_DEL_ID, "DELETE FROM sessions WHERE id = ?")                                                  \
    XX(SESSION_DEL_USER, "DELETE FROM sessions WHERE user_id = ?")                                           \
    XX(SESSION_PURGE, "DELETE FROM sessions WHERE expires <= ?")                                             \
    XX(QUOTA_TAKE, "INSERT INTO quota_usage (user_id, day, count) VALUES (?1, ?2, 1) "                       \
                   "ON CONFLICT (user_id, day) DO UPDATE SET count = count + 1 WHERE count < ?3")            \
    XX(QUOTA_PURGE, "DELETE FROM quota_usage WHERE day < ?")                                                 \
    XX(AUDIT_ADD, "INSERT INTO audit_log (time, who, ip, action, target, detail) "                           \
                  "VALUES (?, ?, ?, ?, ?, ?)")                                                               \
    XX(AUDIT_LIST, "SELECT id, time, who, ip, action, target, detail FROM audit_log "                        \
                   "WHERE id < ? ORDER BY id DESC LIMIT ?")

typedef enum {
#define AUTH_STMT_ENUM_(name, sql) AUTH__##name,
    AUTH_STMT_MAP(AUTH_STMT_ENUM_)
#undef AUTH_STMT_ENUM_
        AUTH__STMT_COUNT
} auth__stmt_id_t;

/* ------------------------------------------------------------------ in-memory tables */

/* The verified-key cache: set-associative, indexed by the SHA-256 of the full key string. */
#define AUTH__KC_SETS 64
#define AUTH__KC_WAYS 4

typedef struct {
    unsigned char digest[32]; /* SHA-256 of "weft_<id>_<secret>" */
    bool used;
    double expires; /* wall clock; min(verified + key_cache_ttl_s, key expiry) */
    double touched; /* when last_used was last written for this key */
    auth_principal_t p;
} auth__kc_entry_t;

/* A bounded string-keyed table with least-recently-used eviction (rate buckets and failure
 * throttles). Keys longer than AUTH__LRU_KEY-1 bytes are replaced by their SHA-256 in hex. */
#define AUTH__LRU_KEY 72

typedef struct {
    char key[AUTH__LRU_KEY];
    unsigned long long hash;
    int32_t next;         /* hash chain; -1 ends it */
    int32_t older, newer; /* LRU list; -1 ends it */
    bool used;
    double a, b, c, d; /* the owner's state (see limits.c) */
    unsigned n;
} auth__lru_entry_t;

typedef struct {
    auth__lru_entry_t *e; /* owned, cap entries */
    int32_t *heads;       /* owned, nheads chain heads */
    size_t cap, nheads, n;
    int32_t oldest, newest;
} auth__lru_t;

int auth__lru_init(auth__lru_t *t, size_t cap);
void auth__lru_free(auth__lru_t *t);
/* The entry for key, marked most recently used; NULL when absent and !create. A created
 * entry is zeroed (evicting the least recently used one when the table is full). */
auth__lru_entry_t *auth__lru_get(auth__lru_t *t, const char *key, bool create);

/* ------------------------------------------------------------------ the handle */

struct auth_s {
    sqlite3 *db;
    char *path; /* owned */
    auth_config_t cfg;
    sqlite3_stmt *stmt[AUTH__STMT_COUNT];
    double now_override; /* tests: when nonzero, the wall clock auth uses */
    char *dummy_hash;    /* owned; lazily made; verified against for unknown names */
    auth__kc_entry_t kc[AUTH__KC_SETS][AUTH__KC_WAYS];
    int64_t kc_epoch;         /* auth_state.epoch the cache's entries were made under */
    auth__lru_t buckets;      /* rate limits */
    auth__lru_t fails;        /* failed credentials per IP */
    int64_t quota_purged_day; /* last day old quota rows were dropped */
};

/* db.c */
int auth__db_open(auth_t *a);
/* Logs what failed with SQLite's message and maps the error to BASE_E_IO / BASE_E_NOMEM. */
int auth__fail(auth_t *a, const char *what);
/* Resets and clears the bindings of a cached statement. */
void auth__done(sqlite3_stmt *s);
int auth__tx_begin(auth_t *a);
/* Commits when rc == 0, else rolls back; returns rc (or the commit's failure). */
int auth__tx_end(auth_t *a, int rc);

/* auth.c: the clock (unix seconds) every stored time uses. */
double auth__now(const auth_t *a);

/* crypto.c */
#define AUTH__SALT_LEN 16
#define AUTH__HASH_LEN 32
/* Fills buf with n bytes from the OpenSSL CSPRNG; BASE_E_IO when it fails. */
int auth__random(void *buf, size_t n);
/* base64url without padding of n bytes into out (4*ceil(n/3) + 1 bytes is always enough). */
void auth__b64url(const unsigned char *in, size_t n, char *out);
/* True when s (exactly len chars, NUL after) is the canonical unpadded base64url of `bytes`
 * bytes: right length, right alphabet, zero spare bits. */
bool auth__b64url_canonical(const char *s, size_t bytes);
/* n random bytes as base64url, malloc'ed; NULL on failure. */
char *auth__random_b64url(size_t n);
void auth__sha256(const void *data, size_t n, unsigned char out[32]);
/* argon2id with the configured costs and a fresh 16-byte salt; *encoded is malloc'ed. */
int auth__hash_secret(const auth_t *a, const char *secret, char **encoded);
/* True when secret matches the encoded hash. A NULL hash verifies against a dummy hash of
 * the same cost, so an unknown name or key id costs as long as a wrong secret. */
bool auth__verify_secret(auth_t *a, const char *encoded, const char *secret);

/* keycache.c */
bool auth__kc_get(auth_t *a, const unsigned char digest[32], double now, auth__kc_entry_t **hit);
void auth__kc_put(auth_t *a, const unsigned char digest[32], const auth_principal_t *p, double expires,
                  double touched);
/* Forgets every verified key: the next request of each key runs argon2 and re-reads the
 * database. */
void auth__kc_clear(auth_t *a);
/* Clears the cache when another connection (or this one) changed the epoch since. */
void auth__kc_sync(auth_t *a);
/* Inside the caller's transaction: records a change that invalidates verified keys (revoke,
 * role change, disable, password change), for every process using the file. */
int auth__kc_bump(auth_t *a);

/* users.c: lookups shared with the other files. */
typedef struct {
    int64_t id;
    char name[64];
    char *pw_hash; /* owned; free with auth__user_clear */
    auth_role_t role;
    bool disabled;
} auth__user_t;

bool auth__name_ok(const char *name);
/* 0, BASE_E_NOENT (also for a name that breaks the rules) or a database error. */
int auth__user_get(auth_t *a, const char *name, auth__user_t *u);
void auth__user_clear(auth__user_t *u);
/* A stored role name; BASE_E_IO (logged: the row is damaged) when unknown. */
int auth__role_col(auth_t *a, sqlite3_stmt *s, int col, auth_role_t *role);

/* limits.c */
int auth__limits_init(auth_t *a);
void auth__limits_free(auth_t *a);

/* auth.c: appends item (owned; NULL means it could not be built) to arr; on any failure frees
 * both and returns NULL, so list builders stop at the first out-of-memory. */
json_t *auth__push_or_drop(json_t *arr, json_t *item);

/* Copies a column's text into a fixed buffer (truncating, always terminated). */
void auth__col_text(sqlite3_stmt *s, int col, char *buf, size_t bufsz);

#endif
