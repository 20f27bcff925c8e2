/* auth/: principals (users, API keys, browser sessions), the role -> scope table, rate limits,
 * quotas and the audit log, stored in SQLite (its own connection to <base>/weft.db and its own
 * schema version table, so auth never depends on the server's store).
 *
 * Threads: an auth_t is used by ONE thread (the server's loop thread). The CLI opens its own.
 * Secrets (passwords, API keys, session tokens) are never logged and never returned except the
 * one time a key or session is created. */
#ifndef WEFT_AUTH_H
#define WEFT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* ------------------------------------------------------------------ roles and scopes */

/* One bit per scope. The role table in roles.c is the single source of truth. */
#define AUTH_SCOPE_MAP(XX)                                                                        \
    XX(PROMPT_SUBMIT, "prompt:submit")        /* POST /prompt */                                  \
    XX(PROMPT_ANY_NODE, "prompt:any_node")    /* may run node classes outside the user policy */  \
    XX(QUEUE_READ, "queue:read")              /* own queue entries */                             \
    XX(QUEUE_READ_ANY, "queue:read:any")                                                          \
    XX(QUEUE_CANCEL, "queue:cancel")          /* own prompts: delete pending, interrupt */        \
    XX(QUEUE_CANCEL_ANY, "queue:cancel:any")                                                      \
    XX(HISTORY_READ, "history:read")          /* own history */                                   \
    XX(HISTORY_READ_ANY, "history:read:any")                                                      \
    XX(HISTORY_WRITE, "history:write")        /* delete own history entries */                    \
    XX(OUTPUTS_READ, "outputs:read")          /* own files in output/ temp/ input/ via /view */   \
    XX(OUTPUTS_READ_ANY, "outputs:read:any")                                                      \
    XX(UPLOAD, "upload")                      /* /upload/image, /upload/mask */                   \
    XX(WORKFLOWS_READ, "workflows:read")      /* own + shared workflows */                        \
    XX(WORKFLOWS_WRITE, "workflows:write")    /* own workflow library */                          \
    XX(WORKFLOWS_SHARE, "workflows:share")                                                        \
    XX(MODELS_READ, "models:read")            /* /models, /embeddings, /object_info */            \
    XX(SYSTEM_READ, "system:read")            /* /system_stats, /features, /extensions */         \
    XX(SYSTEM_ADMIN, "system:admin")          /* /free, /interrupt of anything, audit log */      \
    XX(ADMIN_KEYS, "admin:keys")              /* every user's keys */                             \
    XX(ADMIN_USERS, "admin:users")

typedef enum {
#define AUTH_SCOPE_ENUM_(name, str) AUTH_SCOPE_BIT_##name,
    AUTH_SCOPE_MAP(AUTH_SCOPE_ENUM_)
#undef AUTH_SCOPE_ENUM_
        AUTH_SCOPE_COUNT
} auth_scope_bit_t;

typedef uint64_t auth_scopes_t;
#define AUTH_SCOPE(name) ((auth_scopes_t)1 << AUTH_SCOPE_BIT_##name)

typedef enum { AUTH_ROLE_ADMIN, AUTH_ROLE_EDITOR, AUTH_ROLE_USER, AUTH_ROLE_VIEWER, AUTH_ROLE_COUNT } auth_role_t;

const char *auth_role_name(auth_role_t r);
int auth_role_from_name(const char *name, auth_role_t *out); /* BASE_E_INVAL when unknown */
auth_scopes_t auth_role_scopes(auth_role_t r);
const char *auth_scope_name(auth_scope_bit_t b);
/* Parses "a,b,c" scope names into a set; BASE_E_INVAL naming the unknown one in err. */
int auth_scopes_parse(const char *list, auth_scopes_t *out, char *err, size_t errsz);
/* JSON array of scope names (new). */
json_t *auth_scopes_json(auth_scopes_t s);

/* ------------------------------------------------------------------ principals */

typedef enum { AUTH_VIA_NONE, AUTH_VIA_KEY, AUTH_VIA_SESSION, AUTH_VIA_NOAUTH } auth_via_t;

typedef struct {
    int64_t user_id;
    char user[64];        /* user name */
    auth_role_t role;
    auth_scopes_t scopes; /* effective: role scopes ∩ key scopes */
    auth_via_t via;
    char key_id[32];      /* public id part of the key, when via == KEY */
    int64_t session_id;   /* when via == SESSION */
    char csrf[48];        /* session's CSRF token (via == SESSION) */
} auth_principal_t;

static inline bool auth_has(const auth_principal_t *p, auth_scopes_t need)
{
    return p && (p->scopes & need) == need;
}

/* ------------------------------------------------------------------ the store */

typedef struct auth_s auth_t;

typedef struct {
    unsigned session_ttl_s;      /* browser sessions, default 7 days */
    unsigned key_cache_ttl_s;    /* how long a verified key stays verified without argon2, 300 s */
    /* argon2id cost (t, m KiB, p); tests lower them. Defaults 2, 19456, 1 (OWASP). */
    uint32_t argon_t, argon_m_kib, argon_p;
} auth_config_t;

void auth_config_init(auth_config_t *c);

/* Opens (creating/migrating its tables in) the SQLite file. */
int auth_open(const char *db_path, const auth_config_t *cfg, auth_t **out);
void auth_close(auth_t *a);

/* Users. Names: 1..63 chars of [A-Za-z0-9._-]. Passwords: 8..1024 bytes. */
int auth_user_add(auth_t *a, const char *name, const char *password, auth_role_t role, int64_t *id);
int auth_user_set_password(auth_t *a, const char *name, const char *password);
int auth_user_set_role(auth_t *a, const char *name, auth_role_t role);
int auth_user_set_disabled(auth_t *a, const char *name, bool disabled); /* revokes its sessions */
/* [{"id","name","role","disabled","created"}] (new). */
json_t *auth_user_list(auth_t *a);
int64_t auth_user_count(auth_t *a);

/* API keys: "weft_<id>_<secret>"; *key_out (malloc'ed) is the only time the secret exists
 * outside the caller. scopes 0 = all of the owner's role. expires_s 0 = never (unix seconds). */
int auth_key_create(auth_t *a, const char *user, auth_scopes_t scopes, int64_t expires_s,
                    const char *label, char **key_out, char key_id[32]);
int auth_key_revoke(auth_t *a, const char *key_id); /* BASE_E_NOENT when unknown */
/* [{"id","user","label","scopes":[...],"created","expires","last_used","revoked"}] (new);
 * user NULL = every user's keys. Never includes secrets. */
json_t *auth_key_list(auth_t *a, const char *user);
/* Owner of a key id (for "own key" checks); BASE_E_NOENT when unknown. */
int auth_key_owner(auth_t *a, const char *key_id, char user[64]);

/* Verifies "weft_<id>_<secret>". 0 and *p filled; BASE_E_AUTH_INVALID for unknown, wrong,
 * revoked or expired keys and for disabled users (one code: the client learns nothing more).
 * Verified keys are cached (keyed by a SHA-256 of the full key, compared in constant time)
 * for key_cache_ttl_s so argon2 does not run on every request; revocation, role change or
 * disabling clears the cache at once. */
int auth_verify_key(auth_t *a, const char *key, auth_principal_t *p);

/* Browser sessions. Login verifies the password (argon2id) and creates a session; *token and
 * *csrf are malloc'ed (the cookie value and the CSRF token). */
int auth_login(auth_t *a, const char *user, const char *password, char **token, char **csrf,
               auth_principal_t *p);
int auth_verify_session(auth_t *a, const char *token, auth_principal_t *p);
int auth_logout(auth_t *a, const char *token);

/* Rate limits and throttles (in memory; per key or per IP). Returns true when allowed; when
 * not, *retry_after_s is how long to wait. */
bool auth_rate_allow(auth_t *a, const char *bucket, double now_s, unsigned *retry_after_s);
/* Failed logins / invalid keys per IP: record a failure; auth_throttled says whether that IP
 * must wait. */
void auth_fail_note(auth_t *a, const char *ip, double now_s);
bool auth_throttled(auth_t *a, const char *ip, double now_s, unsigned *retry_after_s);

/* Daily prompt quota per user (counted in SQLite, survives restart): consumes one unit and
 * returns BASE_E_AUTH_QUOTA when the role's daily limit is reached. */
int auth_quota_take(auth_t *a, const auth_principal_t *p, double now_s);
/* Per-role limits: prompts per day (0 = unlimited) and queued prompts (0 = unlimited). */
void auth_role_limits(auth_role_t r, unsigned *per_day, unsigned *max_queued);

/* Audit log: append-only. who = user name or NULL, ip may be NULL, detail is a JSON object
 * (borrowed; may be NULL). */
int auth_audit(auth_t *a, const char *who, const char *ip, const char *action, const char *target,
               const json_t *detail);
/* Newest first: [{"id","time","who","ip","action","target","detail"}] (new). */
json_t *auth_audit_list(auth_t *a, int64_t limit, int64_t before_id);

#endif
