/* engine/: executes validated graphs through the node registry, with an output cache across
 * prompts, cooperative interrupt, per-node timings and ComfyUI's execution events. It knows
 * no HTTP and no storage.
 *
 * Threads: eng_execute runs a prompt on the calling thread, or, with lanes, on the engine's
 * lane threads while the caller waits; up to max_prompts eng_execute calls may run at once
 * (from different threads), sharing the output cache. eng_interrupt may be called from any
 * thread. */
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
 * on the thread running the node (the caller's, or a lane), never twice at once for one job.
 * Per node the order is always executing, progress..., executed; with lanes, events of
 * independent nodes interleave. The lifecycle events come from the calling thread:
 * execution_start and execution_cached first, and the terminal one (success, error or
 * interrupted) last, once no lane holds a node of the prompt. */
typedef void (*eng_event_cb)(void *ud, const char *type, json_t *data);
/* Receives a node's preview image (PNG bytes, borrowed for the call) on the thread running
 * the node, never twice at once for one job. */
typedef void (*eng_preview_cb)(void *ud, const char *node_id, const void *png, size_t len);

typedef struct {
    const node_registry_t *reg; /* borrowed, outlives the engine */
    const node_env_t *env;      /* borrowed, outlives the engine */
    /* Executor threads ("lanes", engine/lanes.c). 0 or 1: every node runs on the thread
     * calling eng_execute, one at a time. N > 1: independent ready nodes run on N threads,
     * shared by every running prompt (round-robin between prompts). */
    unsigned lanes;
    /* How many eng_execute calls may run at once (0 = 1); more get BASE_E_ENGINE_BUSY. */
    unsigned max_prompts;
    /* NODE_HEAVY nodes running at once with lanes. 0: a second heavy node starts only while
     * the loaded models leave at least half of the model memory budget free (mem below);
     * N: up to N, whatever the memory. */
    unsigned heavy_lanes;
    /* Intra-op threads of a busy lane. 0: the cores divided by the lanes busy when a node
     * starts (at least 1). A fixed count makes results bit-identical whatever the lanes. */
    unsigned lane_threads;
    /* Model memory in use and its budget (0 = unlimited); NULL = node_models_stats() and
     * node_models_budget(). Asked outside the scheduler's lock (it may wait for a load). */
    void (*mem)(size_t *used, size_t *budget);
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

/* Interrupts the running prompt (prompt_id NULL = every running prompt; otherwise only that
 * prompt, when it is running). Each prompt starts with its flag cleared. */
void eng_interrupt(eng_t *e, const char *prompt_id);

/* Drops every cached output (POST /free {"free_memory": true}). On an engine that runs one
 * prompt at a time, not while executing; with lanes or max_prompts > 1 it may be called any
 * time and keeps what running prompts hold. */
void eng_cache_clear(eng_t *e);
size_t eng_cache_count(const eng_t *e);

#endif
