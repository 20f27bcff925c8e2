/* graphs/: the workflow model. Parses API-format prompts into graphs, converts UI-format
 * workflows (what the ComfyUI editor saves) into API format, validates graphs against the
 * node registry exactly as ComfyUI does (comfyui-api.md section 5), prunes to outputs and
 * computes per-node cache signatures. Nothing here executes a node.
 *
 * Threads: any thread; a graph is used by one thread at a time until validated, after which
 * it is immutable and may be read from several threads. */
#ifndef WEFT_GRAPHS_H
#define WEFT_GRAPHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "nodes.h"

typedef struct {
    char *name;       /* in graph->arena */
    bool is_link;     /* [src_id, src_slot] */
    char *src_id;     /* in graph->arena; links only */
    int64_t src_slot; /* links only */
    int64_t src;      /* index of the source node in graph->nodes, -1 when it does not exist */
    json_t *value;    /* owned constant (coerced by graph_validate); NULL for links */
} graph_input_t;

typedef struct {
    char *id;               /* in graph->arena */
    char *class_type;       /* in graph->arena; NULL when the node has none */
    char *title;            /* in graph->arena; _meta.title or NULL */
    const node_def_t *def;  /* set by graph_validate; NULL when the class is unknown */
    graph_input_t *inputs;  /* in graph->arena, in the prompt's key order */
    size_t n_inputs;
} graph_node_t;

typedef struct graph_s {
    graph_node_t *nodes; /* owned, in the prompt's key order */
    size_t n;
    base_map_t by_id;    /* node id -> (void *)(uintptr_t)(index + 1) */
    base_arena_t arena;  /* owns every string and input array of the nodes: a 100k-node
                            graph is then a few hundred allocations, not a million */
} graph_t;

/* API format -> graph. Everything a client can get wrong inside a node (missing class_type,
 * unknown inputs shapes) is kept for graph_validate to report; only a prompt that is not a
 * JSON object of objects fails here (BASE_E_GRAPH_FORMAT, message in err). */
int graph_parse(const json_t *prompt, graph_t **out, char *err, size_t errsz);
void graph_free(graph_t *g);
/* Index of a node, -1 when absent. */
int64_t graph_find(const graph_t *g, const char *id);

/* ---------------------------------------------------------------- validation */

typedef struct {
    /* NULL when valid; else {"type","message","details","extra_info"} (owned). */
    json_t *error;
    /* Always an object (owned): node id -> {"errors": [...], "dependent_outputs": [...],
     * "class_type": "..."} exactly like ComfyUI. May be non-empty on success (outputs that
     * failed were dropped). */
    json_t *node_errors;
    /* Ids of the outputs that passed validation, in prompt order (owned strings). */
    char **outputs;
    size_t n_outputs;
    /* The coerced API prompt (owned): what history and PNG "prompt" chunks store. */
    json_t *prompt;
} graph_validation_t;

void graph_validation_free(graph_validation_t *v);

/* Validates g (and coerces its constants in place). partial_targets: NULL, or a JSON array
 * of node ids restricting which outputs run (comfyui-api.md 5.2). Returns 0 when at least
 * one output survived, BASE_E_GRAPH_INVALID otherwise; res is filled in both cases. Cycles
 * are reported as "dependency_cycle" errors on the nodes of the cycle, never followed. */
int graph_validate(graph_t *g, const node_registry_t *reg, const node_env_t *env,
                   const json_t *partial_targets, graph_validation_t *res);

/* The whole POST /prompt check: body must have "prompt" (else no_prompt), which is parsed
 * and validated. *g is the validated graph on success (caller frees). */
int graph_check_request(const json_t *body, const node_registry_t *reg, const node_env_t *env,
                        graph_t **g, graph_validation_t *res);

/* ---------------------------------------------------------------- UI format */

/* True when j looks like a UI-format workflow ("nodes" array + "links"). */
bool graph_is_ui_workflow(const json_t *j);
/* UI workflow -> API prompt (new object), using the node schemas: widgets_values map onto
 * widget inputs in input order, control_after_generate values are skipped, Reroute and
 * PrimitiveNode are resolved, Note/MarkdownNote dropped, muted (mode 2) nodes dropped and
 * bypassed (mode 4) nodes passed through. BASE_E_GRAPH_FORMAT with a message on bad input. */
int graph_convert_ui(const json_t *workflow, const node_registry_t *reg, const node_env_t *env,
                     json_t **prompt, char *err, size_t errsz);

/* ---------------------------------------------------------------- scheduling support */

/* Outputs and all their ancestors, sources before consumers (iterative; no recursion
 * limit). *order is malloc'ed node indices. BASE_E_GRAPH_CYCLE when they are not acyclic. */
int graph_prune(const graph_t *g, char *const *outputs, size_t n_outputs, size_t **order,
                size_t *n_order);

#define GRAPH_SIG_LEN 32
/* Signature of every node in order (which must list sources first): SHA-256 over the class,
 * the fingerprint (may be NULL per node; from is_changed), the node id when the class is
 * NODE_NOT_IDEMPOTENT, each input in sorted name order as a constant's canonical JSON or
 * its source's signature and slot. Node ids otherwise do not matter, so identical
 * sub-graphs share signatures. sigs is indexed by node index (g->n entries). */
int graph_signatures(const graph_t *g, const size_t *order, size_t n_order,
                     const char *const *fingerprints, uint8_t (*sigs)[GRAPH_SIG_LEN]);

#endif
