/* Private to graphs/: helpers shared between the files of this folder. Nothing outside
 * graphs/ may include this header. */
#ifndef WEFT_GRAPHS_INTERNAL_H
#define WEFT_GRAPHS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "graphs.h"

/* ---------------------------------------------------------------- pyfmt.c */
/* ComfyUI writes values into its error messages with Python's str()/repr(); clients show
 * those texts, so we render JSON values the same way. All append to b and return 0 or
 * BASE_E_NOMEM. */

/* repr(float): shortest round-trip digits, exponent form outside 1e-4 <= |d| < 1e16. */
int graph__py_float(base_buf_t *b, double d);
/* repr(str) of s[0..len): single quotes unless the text holds ' and no ". */
int graph__py_repr_str(base_buf_t *b, const char *s, size_t len);
/* repr() of a JSON value as the Python object json.loads would give. */
int graph__py_repr(base_buf_t *b, const json_t *j);
/* str(): like repr() except that a top-level string is written raw. */
int graph__py_str(base_buf_t *b, const json_t *j);
/* Python's type name of a JSON value: NoneType, bool, int, float, str, list, dict. */
const char *graph__py_type(const json_t *j);

/* ---------------------------------------------------------------- coerce.c */

/* What validation does to a constant of a widget type (comfyui-api.md 5.1): INT -> int(v),
 * FLOAT -> float(v), STRING -> str(v), BOOLEAN -> bool(v). Returns 0 with *out a new value
 * (NULL when type needs no conversion), 1 when Python would raise (msg = the exception text,
 * *exc_type = its class name), or BASE_E_NOMEM. */
int graph__coerce(const char *type, const json_t *v, json_t **out, char *msg, size_t msgsz,
                  const char **exc_type);

/* ---------------------------------------------------------------- errors.c */

/* {"type", "message", "details", "extra_info"}; takes extra (NULL = {}). NULL on OOM. */
json_t *graph__error(const char *type, const char *message, const char *details, json_t *extra);
/* Adds key -> value to obj (takes value); returns false on OOM (value freed). */
bool graph__put(json_t *obj, const char *key, json_t *value);
bool graph__put_str(json_t *obj, const char *key, const char *s);

/* Appends key -> value to an object WITHOUT looking for an existing key (json_object_set
 * scans, which is quadratic over 100k-node prompts). Only for keys known to be new. Takes
 * value; false on OOM. */
bool graph__append(json_t *obj, const char *key, json_t *value);

/* ---------------------------------------------------------------- check.c */

/* An edge the validation walk follows: node -> one of its sources. */
typedef struct {
    size_t src;   /* index of the source node */
    size_t input; /* index of the link in the consumer's inputs */
} graph__edge_t;

typedef struct {
    const node_def_t *def;
    json_t *info; /* node_def_to_json(def) (owned), NULL when it could not be built */
} graph__def_cache_t;

typedef struct {
    const node_input_t *in;
    node_strlist_t opts; /* owned */
} graph__opt_cache_t;

/* State of one graph_validate run. */
typedef struct {
    graph_t *g;
    const node_env_t *env;
    json_t **errors;    /* per node: error list (owned), NULL while it has none */
    bool *local_ok;     /* per node: no error of its own */
    size_t *edge_start; /* per node: its edges are edges[edge_start .. +edge_count) */
    size_t *edge_count;
    graph__edge_t *edges;
    size_t n_edges, cap_edges;
    graph__def_cache_t *defs; /* small caches: one entry per class / combo input seen */
    size_t n_defs, cap_defs;
    graph__opt_cache_t *opts;
    size_t n_opts, cap_opts;
} graph__vctx_t;

#define GRAPH__FROM_OUTPUT SIZE_MAX

/* Checks node i on its own (inputs present, link shapes and types, coercion, ranges,
 * combos, custom validation) and records the edges to the sources it links to. from is
 * the consumer whose input from_input first reached i, or GRAPH__FROM_OUTPUT: ComfyUI
 * words an exception differently depending on who was validating. 0 or BASE_E_NOMEM. */
int graph__check_node(graph__vctx_t *c, size_t i, size_t from, size_t from_input);
void graph__vctx_free_caches(graph__vctx_t *c);

/* ---------------------------------------------------------------- widgets.c */

/* A copy of v, arrays wrapped as {"__value__": v} like the editor sends them. */
json_t *graph__ui_wrap(const json_t *v);
/* Writes the widget values of one UI node into inputs (an object) in widget order; def
 * NULL for a type weft does not know (best effort from the node's widget inputs). */
int graph__ui_widgets(const json_t *node, const node_def_t *def, const node_env_t *env, json_t *inputs);

/* ---------------------------------------------------------------- prompt.c */

/* The API prompt a graph stands for: {id: {"inputs", "class_type", "_meta"}} in node order
 * with links as [id, slot] (new object, NULL on OOM). */
json_t *graph__to_prompt(const graph_t *g);

#endif
