/* Private to server/. Durable queue and history in SQLite (WAL) at <base>/weft.db.
 * One store_t per thread (each opens its own connection); the loop thread does all writes
 * in this issue. Every function returns 0 or a base_err_t code (BASE_E_IO with the SQLite
 * message logged). */
#ifndef WEFT_SRV_STORE_H
#define WEFT_SRV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

typedef struct store_s store_t;

/* Opens (creating) the database, sets WAL + foreign keys + busy timeout, and migrates the
 * schema to the current version (schema_version table; migrations are append-only). */
int store_open(const char *path, store_t **out);
void store_close(store_t *st);
int store_schema_version(store_t *st);

typedef enum { STORE_PENDING, STORE_RUNNING, STORE_SUCCESS, STORE_ERROR } store_status_t;

/* One prompt row. JSON fields are owned json_t trees (NULL when absent). */
typedef struct {
    char *prompt_id;
    double number;          /* queue priority (ComfyUI's "number") */
    int64_t seq;            /* insertion order, breaks ties */
    json_t *prompt;         /* the coerced API prompt */
    json_t *extra_data;     /* client_id, extra_pnginfo, ... */
    json_t *outputs_to_execute; /* array of node ids */
    char *client_id;        /* may be NULL */
    char *owner;            /* may be NULL until the auth issue */
    store_status_t status;
    double created_ms, started_ms, finished_ms; /* ms since the epoch; 0 = not yet */
    json_t *outputs;        /* history: node id -> UI output */
    json_t *messages;       /* history: [[event, data], ...] */
    json_t *meta;           /* history: node id -> {node_id, display_node, parent_node, real_node_id} */
    char *error;            /* a short message for failed prompts */
} store_prompt_t;

void store_prompt_free(store_prompt_t *p);

/* Inserts a pending prompt (seq assigned). BASE_E_EXIST when the id is already pending or
 * running. A finished prompt with the same id is replaced, like ComfyUI's history. */
int store_enqueue(store_t *st, store_prompt_t *p);
int store_mark_running(store_t *st, const char *prompt_id, double started_ms);
/* Writes the history fields and status in one transaction. */
int store_finish(store_t *st, const char *prompt_id, store_status_t status, double finished_ms,
                 const json_t *outputs, const json_t *messages, const json_t *meta, const char *error);
/* Graceful shutdown: a RUNNING row goes back to PENDING (same number and seq) so it runs
 * again on the next start. BASE_E_NOENT when the prompt is not running. */
int store_requeue(store_t *st, const char *prompt_id);
/* At start-up: every RUNNING row becomes ERROR with `message` (the process died under it) and
 * gets an execution_error-like entry in messages. *n = rows changed. */
int store_recover_running(store_t *st, const char *message, double now_ms, size_t *n);

/* Pending rows ordered by (number, seq). *items malloc'ed array of rows (caller frees each
 * with store_prompt_free and the array with free). */
int store_list_pending(store_t *st, store_prompt_t **items, size_t *n);
/* Deletes pending rows (ids NULL = all pending). *n = deleted. */
int store_delete_pending(store_t *st, const char *const *ids, size_t n_ids, size_t *n);

/* Finished rows (SUCCESS/ERROR) in completion order, oldest first. max_items < 0 = all;
 * offset < 0 = "the last max_items" (ComfyUI's default when only max_items is given). */
int store_history_page(store_t *st, int64_t max_items, int64_t offset, store_prompt_t **items, size_t *n);
/* One row of any status; BASE_E_NOENT when unknown. */
int store_get(store_t *st, const char *prompt_id, store_prompt_t *out);
/* Deletes finished rows (ids NULL = all finished). */
int store_history_delete(store_t *st, const char *const *ids, size_t n_ids, size_t *n);
int64_t store_history_count(store_t *st);

/* ------------------------------------------------------------------ ownership (schema 2) */

/* store_history_page / store_history_delete restricted to the rows of one owner (rows with
 * no owner never match). owner NULL = every row, exactly like the unrestricted calls. */
int store_history_page_owned(store_t *st, const char *owner, int64_t max_items, int64_t offset,
                             store_prompt_t **items, size_t *n);
int store_history_delete_owned(store_t *st, const char *owner, const char *const *ids, size_t n_ids, size_t *n);

/* Files in output/, input/ and temp/ and who made them. folder is "output", "input" or
 * "temp"; path the normalized "subfolder/name" inside it. Recording a known file replaces
 * its row (the file was written again). All n rows in one transaction. */
typedef struct {
    const char *folder, *path;
} store_file_ref_t;

int store_files_record(store_t *st, const store_file_ref_t *files, size_t n, const char *owner,
                       const char *prompt_id, double created_ms);
/* *owner malloc'ed, NULL for a file recorded without one; BASE_E_NOENT when not recorded. */
int store_file_owner(store_t *st, const char *folder, const char *path, char **owner);

/* Workflow shares: read grants on a file of owner's library (path relative to the user's
 * root, e.g. "workflows/a.json"). store_share_set replaces every grant of (owner, path) in
 * one transaction; no users, no roles and !pub leaves it private. */
int store_share_set(store_t *st, const char *owner, const char *path, const char *const *users, size_t n_users,
                    const char *const *roles, size_t n_roles, bool pub, double now_ms);
int store_share_clear(store_t *st, const char *owner, const char *path, size_t *n);
/* The grants follow a moved file. */
int store_share_move(store_t *st, const char *owner, const char *from, const char *to);
/* The grants of (owner, path): users and roles as JSON arrays of names (new), *pub. */
int store_share_get(store_t *st, const char *owner, const char *path, json_t **users, json_t **roles, bool *pub);
/* *ok: user (whose role is named role) may read owner's path through a grant. */
int store_share_allows(store_t *st, const char *owner, const char *path, const char *user, const char *role,
                       bool *ok);

typedef struct {
    char *owner, *path;
} store_shared_t;

/* Distinct (owner, path) shared with user, with role or publicly, owner != user, ordered by
 * owner then path. Free with store_shared_free. */
int store_share_list_for(store_t *st, const char *user, const char *role, store_shared_t **items, size_t *n);
void store_shared_free(store_shared_t *items, size_t n);

/* Share links: a token grants read access to one workflow (folder NULL, path in the owner's
 * library) or one file (folder "output"/"input"/"temp", path inside it). Only the token's
 * SHA-256 (hex) is stored. */
typedef struct {
    char *id, *owner, *kind, *folder, *path; /* kind "workflow" or "output" */
    double expires_ms, created_ms;
    bool revoked;
} store_link_t;

void store_link_free(store_link_t *l);
void store_links_free(store_link_t *items, size_t n);
/* BASE_E_EXIST when the id or token hash is taken. */
int store_link_add(store_t *st, const store_link_t *l, const char *token_sha256);
/* owner NULL = every owner's links. Oldest first. */
int store_link_list(store_t *st, const char *owner, store_link_t **items, size_t *n);
/* Revokes link id of owner (NULL = any owner); BASE_E_NOENT when there is no such link. */
int store_link_revoke(store_t *st, const char *id, const char *owner);
/* The live link (not revoked, expires_ms > now_ms) with this token hash; BASE_E_NOENT. */
int store_link_find(store_t *st, const char *token_sha256, double now_ms, store_link_t *out);

#endif
