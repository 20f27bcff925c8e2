/* Private to engine/: the output cache, the event payload builders, the per-prompt run state
 * and the engine struct shared by executor.c, lanes.c, cache.c and events.c. Nothing outside
 * engine/ includes this. */
#ifndef WEFT_ENGINE_INTERNAL_H
#define WEFT_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine.h"

/* ------------------------------------------------------------------ cache */

/* One cached node result, keyed by the node's signature. Values are shared with whoever
 * reads them (refcounted), so evicting an entry never frees a value a running node holds. */
typedef struct {
    uint8_t sig[GRAPH_SIG_LEN];
    uint64_t gen;          /* last prompt generation whose signatures included this entry */
    json_t *ui;            /* owned; NULL when the node produced no UI */
    /* Engines running several prompts at once (eng_t.mt): how many nodes of running prompts
     * hold this entry. A sweep or clear never frees a pinned entry. Under eng_t.cache_mu. */
    uint32_t pins;
    int lane;              /* lane that produced it; -1 = the calling thread (serial runs) */
    ts_event_t *ready;     /* owned: where that lane's stream was when it was done (CUDA) */
    size_t n_out;
    node_value_t *out[];   /* owned references, one per output slot */
} eng_centry_t;

/* A slot keeps the entry's hash beside the pointer so probing does not touch entries
 * (at 100k nodes each touch would be a cache miss). */
typedef struct {
    uint64_t h;
    eng_centry_t *e; /* NULL = empty */
} eng_cslot_t;

/* Open addressing on the first 8 signature bytes (SHA-256 output is already uniform).
 * Entries are separately allocated so their addresses survive rehashing and sweeps. */
typedef struct {
    eng_cslot_t *slots; /* owned */
    size_t cap;         /* 0 or a power of two */
    size_t n;
} eng_cache_t;

/* Borrowed entry, NULL when absent. */
eng_centry_t *eng__cache_get(const eng_cache_t *c, const uint8_t *sig);
/* Inserts e (taking ownership). The signature must not be present. 0 or BASE_E_NOMEM (then
 * e is still the caller's). */
int eng__cache_put(eng_cache_t *c, eng_centry_t *e);
/* Makes room for n more entries without rehashing. 0 or BASE_E_NOMEM. */
int eng__cache_reserve(eng_cache_t *c, size_t n);
/* A new entry with n_out empty slots and no UI, or NULL on out of memory. */
eng_centry_t *eng__centry_new(const uint8_t *sig, size_t n_out, uint64_t gen);
void eng__centry_free(eng_centry_t *e);
/* Classic ComfyUI mode: drops every entry whose gen differs from gen (not part of the
 * current prompt) and that no running prompt pins. Never fails: on out of memory it keeps
 * the old table layout. ENG_GEN_NONE drops every unpinned entry. */
#define ENG_GEN_NONE UINT64_MAX
void eng__cache_sweep(eng_cache_t *c, uint64_t gen);
void eng__cache_clear(eng_cache_t *c);

/* ------------------------------------------------------------------ events */

/* Integer milliseconds since the epoch, as ComfyUI stamps lifecycle messages. */
int64_t eng__now_ms(void);

/* Builders return a NEW object, or NULL on out of memory (the event is then dropped). */
json_t *eng__ev_lifecycle(const char *prompt_id);
/* ids[i] are node indices into g, already in prompt order. */
json_t *eng__ev_cached(const graph_t *g, const size_t *ids, size_t n, const char *prompt_id);
json_t *eng__ev_executing(const char *node_id, const char *prompt_id);
json_t *eng__ev_progress(uint64_t value, uint64_t max, const char *prompt_id,
                         const char *node_id);
/* ui is borrowed (cloned); NULL sends "output": null. */
json_t *eng__ev_executed(const char *node_id, const json_t *ui, const char *prompt_id);

/* What execution_error / execution_interrupted report about the stopped node. */
typedef struct {
    const char *prompt_id;
    const graph_t *g;
    size_t node;               /* index of the failing/interrupted node */
    const size_t *executed;    /* node indices executed so far, in execution order */
    size_t n_executed;
    const char *message;       /* node's message (without the trailing "\n") */
    const char *type;          /* exception type name */
    node_value_t *const *in;   /* the node's inputs (indexed like def->inputs); may be NULL */
} eng_stop_info_t;

json_t *eng__ev_error(const eng_stop_info_t *s);
json_t *eng__ev_interrupted(const eng_stop_info_t *s);

/* ------------------------------------------------------------------ runs */

enum {
    F_CHECKED = 1u << 0, /* visited by the structure check (its args are known) */
    F_ORDER = 1u << 1,   /* in the pruned order (part of this prompt) */
    F_CACHED = 1u << 2,  /* outputs were in the cache when the prompt started */
    F_OUTPUT = 1u << 3,  /* one of the job's outputs: always visited, even when cached */
    F_NEEDED = 1u << 4,  /* goes through the ready set */
    F_FP = 1u << 5,      /* has is_changed */
};

/* One declared input of a node: a constant (value) or a link to src's output slot. */
typedef struct {
    const json_t *value; /* borrowed from the graph; NULL for links */
    size_t src;
    uint32_t slot;
    uint32_t in; /* index in def->inputs */
} eng_arg_t;

typedef struct {
    eng_centry_t *entry; /* where the node's outputs live once available (borrowed) */
    size_t arg_off;      /* its inputs: args[arg_off .. arg_off + n_args) */
    size_t cons_off;     /* its consumers: cons[cons_off .. cons_off + n_cons) */
    uint32_t n_args, n_cons, indeg;
    uint8_t flags;
} eng_nstate_t;

/* What stopped a prompt: the first failure or interrupt seen, reported once every lane has
 * let go of the prompt (so nothing of the prompt follows its last event). */
typedef struct {
    bool set;
    int rc;
    size_t node;
    char *msg;             /* owned; NULL = base_strerror(rc) */
    const char *type;      /* static exception type name; NULL = RuntimeError */
    node_value_t **in;     /* owned references, indexed like the node's def->inputs */
    size_t n_in;
} eng_stop_t;

/* The thread a node runs on: the calling thread (serial runs) or a pool lane. */
typedef struct eng_lane_s {
    int index;                  /* -1 = the calling thread */
    node_value_t **in, **out;   /* scratch: a node's inputs and outputs */
    size_t cap_in, cap_out;
    node_ctx_t ctx;
    int want_threads;           /* intra-op budget the scheduler gave the current node */
    int threads;                /* budget last applied to this thread (0 = none) */
    ts_stream_t *stream;        /* this lane's CUDA stream, once libtorch runs with CUDA */
    bool stream_tried;
    struct eng_pool_s *pool;
} eng_lane_t;

/* One prompt being executed. Written by the calling thread while it prepares; during the run
 * the lanes write st[].entry/indeg and the ready FIFO under the pool lock, and the results
 * (executed, timings, events, stop) under ev_mu. */
typedef struct eng_run_s {
    eng_t *e;
    const eng_job_t *job;
    const graph_t *g;
    eng_result_t *r;
    uint64_t gen;

    size_t *order; /* pruned order, sources first (from graph_prune) */
    size_t n_order;
    eng_nstate_t *st;               /* per node */
    uint8_t (*sigs)[GRAPH_SIG_LEN]; /* per node */
    eng_arg_t *args;
    size_t n_args, cap_args;
    size_t max_in, max_out;

    size_t *cons;  /* consumer lists, see eng_nstate_t */
    size_t *ready; /* FIFO of runnable nodes */
    size_t ready_head, ready_tail, n_needed;

    size_t *executed; /* node indices run this prompt, in completion order */
    size_t n_exec;

    atomic_bool interrupt; /* eng_interrupt, or another branch failed (parallel runs) */
    bool parallel;         /* nodes run on the pool's lanes */
    pthread_mutex_t ev_mu; /* parallel runs: one callback at a time, results bookkeeping */
    eng_stop_t stop;

    /* Pool state, under the pool lock. */
    size_t in_flight, n_done;
    bool stopping, finished;
    struct eng_run_s *pool_next;
    /* The engine's running prompts, under eng_t.lock. */
    const char *id; /* job->prompt_id or "" */
    struct eng_run_s *active_next;
} eng_run_t;

/* executor.c, for the lanes: runs ready node j of R on L (interrupt check, cache, execute,
 * events). 0, or the code that stops the prompt (recorded in R->stop). */
int eng__process(eng_run_t *R, size_t j, eng_lane_t *L);
/* Whether node j is NODE_HEAVY and will really run (not replayed from the cache). */
bool eng__heavy(const eng_run_t *R, size_t j);
/* Grows L's scratch to n inputs and m outputs (zeroed). 0 or BASE_E_NOMEM. */
int eng__lane_reserve(eng_lane_t *L, size_t n, size_t m);
void eng__lane_release(eng_lane_t *L);

/* ------------------------------------------------------------------ lanes */

typedef struct eng_pool_s eng_pool_t;

typedef struct {
    unsigned lanes;
    unsigned heavy;      /* see eng_config_t.heavy_lanes */
    unsigned threads;    /* see eng_config_t.lane_threads */
    void (*mem)(size_t *used, size_t *budget);
} eng_pool_config_t;

int eng__pool_new(const eng_pool_config_t *cfg, eng_pool_t **out);
void eng__pool_free(eng_pool_t *p);
/* Runs R's ready set on the lanes (R->ready holds the first ready nodes); returns once no
 * lane holds a node of R any more: everything ran, or R stopped. */
void eng__pool_run(eng_pool_t *p, eng_run_t *R);

/* ------------------------------------------------------------------ engine */

struct eng_s {
    const node_registry_t *reg;
    const node_env_t *env;
    eng_cache_t cache;
    /* Several prompts at once, or lanes: the cache is shared between threads and guarded by
     * cache_mu; serial engines never take it (their speed is the per-node budget). */
    bool mt;
    pthread_mutex_t cache_mu;
    eng_pool_t *pool;      /* NULL: nodes run on the calling thread */
    unsigned max_prompts;
    atomic_uint_fast64_t fp_serial; /* makes failed is_changed fingerprints unique */
    pthread_mutex_t lock;  /* guards gen and the running prompts against other threads */
    uint64_t gen;          /* bumped at every prompt; marks the cache entries it uses */
    eng_run_t *active;     /* running prompts (eng_interrupt finds them here) */
    unsigned n_active;
};

#endif
