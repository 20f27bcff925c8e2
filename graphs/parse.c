/* API prompt -> graph. Parsing is deliberately lenient inside nodes: ComfyUI reports a
 * missing class_type or an odd input through validation errors, not as a malformed
 * request, so everything but the outer shape is kept for graph_validate to judge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphs-internal.h"

static void free_node(graph_node_t *nd)
{
    for (size_t k = 0; k < nd->n_inputs; k++)
        json_free(nd->inputs[k].value);
}

void graph_free(graph_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        free_node(&g->nodes[i]);
    free(g->nodes);
    base_map_free(&g->by_id);
    base_arena_free(&g->arena);
    free(g);
}

int64_t graph_find(const graph_t *g, const char *id)
{
    void *v;
    if (!g || !id || !base_map_get(&g->by_id, id, &v))
        return -1;
    return (int64_t)(uintptr_t)v - 1;
}

/* [string, integer] is a link; anything else stays a constant for validation to judge. */
static int parse_input(base_arena_t *a, graph_input_t *in, const char *name, const json_t *v)
{
    in->name = base_arena_strdup(a, name);
    in->src = -1;
    if (!in->name)
        return BASE_E_NOMEM;
    int64_t slot;
    if (v->type == JSON_ARRAY && json_len(v) == 2 && json_is_string(json_at(v, 0)) &&
        json_get_i64(json_at(v, 1), &slot)) {
        in->is_link = true;
        in->src_slot = slot;
        in->src_id = base_arena_strdup(a, json_str(json_at(v, 0)));
        return in->src_id ? 0 : BASE_E_NOMEM;
    }
    in->value = json_clone(v);
    return in->value ? 0 : BASE_E_NOMEM;
}

static int parse_node(base_arena_t *a, graph_node_t *nd, const char *id, const json_t *v)
{
    nd->id = base_arena_strdup(a, id);
    if (!nd->id)
        return BASE_E_NOMEM;
    if (!v || v->type != JSON_OBJECT)
        return 0; /* validation reports it as a node without class_type */

    const json_t *ct = json_object_get(v, "class_type");
    if (ct) {
        if (json_is_string(ct)) {
            nd->class_type = base_arena_strdup(a, json_str(ct));
        } else {
            /* ComfyUI looks the value up as is and names it with str() in its message. */
            base_buf_t b = BASE_BUF_INIT;
            if (graph__py_str(&b, ct) == 0)
                nd->class_type = base_arena_strdup(a, b.data ? b.data : "");
            base_buf_free(&b);
        }
        if (!nd->class_type)
            return BASE_E_NOMEM;
    }
    const json_t *meta = json_object_get(v, "_meta");
    const char *title = json_str(json_object_get(meta, "title"));
    if (title && !(nd->title = base_arena_strdup(a, title)))
        return BASE_E_NOMEM;

    const json_t *inputs = json_object_get(v, "inputs");
    size_t n = inputs && inputs->type == JSON_OBJECT ? json_len(inputs) : 0;
    if (!n)
        return 0;
    nd->inputs = base_arena_calloc(a, n, sizeof *nd->inputs);
    if (!nd->inputs)
        return BASE_E_NOMEM;
    for (size_t k = 0; k < n; k++) {
        int rc = parse_input(a, &nd->inputs[nd->n_inputs++], json_key_at(inputs, k), json_at(inputs, k));
        if (rc)
            return rc;
    }
    return 0;
}

int graph_parse(const json_t *prompt, graph_t **out, char *err, size_t errsz)
{
    *out = NULL;
    if (err && errsz)
        err[0] = '\0';
    if (!prompt || prompt->type != JSON_OBJECT) {
        if (err && errsz)
            snprintf(err, errsz, "the prompt must be a JSON object mapping node ids to nodes");
        return BASE_E_GRAPH_FORMAT;
    }
    graph_t *g = calloc(1, sizeof *g);
    if (!g)
        return BASE_E_NOMEM;
    size_t n = json_len(prompt);
    int rc = 0;
    if (n && !(g->nodes = calloc(n, sizeof *g->nodes))) {
        rc = BASE_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        graph_node_t *nd = &g->nodes[g->n++];
        if ((rc = parse_node(&g->arena, nd, json_key_at(prompt, i), json_at(prompt, i))))
            goto out;
        if (graph_find(g, nd->id) >= 0) {
            if (err && errsz)
                snprintf(err, errsz, "node id '%s' appears twice in the prompt", nd->id);
            rc = BASE_E_GRAPH_FORMAT;
            goto out;
        }
        if ((rc = base_map_put(&g->by_id, nd->id, (void *)(uintptr_t)(i + 1))))
            goto out;
    }
    for (size_t i = 0; i < g->n; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++) {
            graph_input_t *in = &g->nodes[i].inputs[k];
            if (in->is_link)
                in->src = graph_find(g, in->src_id);
        }
out:
    if (rc) {
        if (rc == BASE_E_NOMEM && err && errsz)
            snprintf(err, errsz, "out of memory while reading the prompt");
        graph_free(g);
        return rc;
    }
    *out = g;
    return 0;
}
