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

#endif
