/* Private to engine/: the output cache, the event payload builders and the engine struct
 * shared by executor.c, cache.c and events.c. Nothing outside engine/ includes this. */
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
 * current prompt). Never fails: on out of memory it keeps the old table layout. */
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

/* ------------------------------------------------------------------ engine */

struct eng_s {
    const node_registry_t *reg;
    const node_env_t *env;
    eng_cache_t cache;
    uint64_t gen;          /* bumped at every prompt; marks the cache entries it uses */
    uint64_t fp_serial;    /* makes failed is_changed fingerprints unique */
    atomic_bool interrupt; /* set by eng_interrupt, cleared when a prompt starts */
    pthread_mutex_t lock;  /* guards running_id against eng_interrupt's threads */
    char *running_id;      /* owned copy of the running prompt id; NULL when idle */
};

#endif
