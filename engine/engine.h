/* engine/: executes validated graphs through the node registry, with an output cache across
 * prompts, cooperative interrupt, per-node timings and ComfyUI's execution events. It knows
 * no HTTP and no storage.
 *
 * Threads: eng_execute runs on the calling (worker) thread; eng_interrupt may be called from
 * any thread; one eng_execute at a time per engine. */
#ifndef WEFT_ENGINE_H
#define WEFT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graphs.h"
#include "nodes.h"

typedef struct eng_s eng_t;

/* Receives each event: type is ComfyUI's name ("execution_start", "execution_cached",
 * "executing", "progress", "executed", "execution_success", "execution_error",
 * "execution_interrupted"); data is the event payload, a NEW object the callback owns. Called
 * on the executing thread, in order. */
typedef void (*eng_event_cb)(void *ud, const char *type, json_t *data);
/* Receives a node's preview image (PNG bytes, borrowed for the call) on the executing
 * thread. */
typedef void (*eng_preview_cb)(void *ud, const char *node_id, const void *png, size_t len);

typedef struct {
    const node_registry_t *reg; /* borrowed, outlives the engine */
    const node_env_t *env;      /* borrowed, outlives the engine */
} eng_config_t;

int eng_new(const eng_config_t *cfg, eng_t **out);
void eng_free(eng_t *e);

typedef struct {
    const char *prompt_id;
    const graph_t *graph;          /* validated (graph_validate returned 0) */
    const json_t *prompt;          /* the coerced prompt (hidden PROMPT input) */
    const json_t *extra_pnginfo;   /* may be NULL */
    char *const *outputs;          /* output node ids to execute */
    size_t n_outputs;
    eng_event_cb on_event;         /* may be NULL */
    eng_preview_cb on_preview;     /* may be NULL: nodes then skip making previews */
    void *ud;
} eng_job_t;

typedef struct {
    char *node_id;   /* owned */
    double ms;       /* wall time of execute() */
    bool cached;
} eng_timing_t;

typedef struct {
    int status;          /* 0 success, BASE_E_INTERRUPTED, or the failing node's code */
    json_t *outputs;     /* owned: node id -> UI output, as in history "outputs" */
    json_t *messages;    /* owned: [[event, data], ...] of the execution_* lifecycle events */
    char *error_node;    /* owned: node id that failed or was interrupted; NULL on success */
    char *error_message; /* owned */
    eng_timing_t *timings; /* owned, in execution order */
    size_t n_timings;
    size_t n_executed, n_cached;
    double total_ms;
} eng_result_t;

void eng_result_free(eng_result_t *r);

/* Runs the job to completion, failure or interrupt. Returns r->status. */
int eng_execute(eng_t *e, const eng_job_t *job, eng_result_t *r);

/* Interrupts the running prompt (prompt_id NULL = whatever runs; otherwise only when that
 * prompt is running). The flag is cleared when the next prompt starts. */
void eng_interrupt(eng_t *e, const char *prompt_id);

/* Drops every cached output (POST /free {"free_memory": true}). Not while executing. */
void eng_cache_clear(eng_t *e);
size_t eng_cache_count(const eng_t *e);

#endif
