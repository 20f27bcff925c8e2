/* graph_validate: ComfyUI's validate_prompt (comfyui-api.md 5), without its recursion.
 * Each node is checked once (check.c) when the walk first reaches it; the walk itself is
 * Tarjan's strongly-connected-components algorithm on an explicit stack, so a 100k-node
 * chain costs linear time and no C stack, and cycles (which ComfyUI v0.3.64 recurses on
 * until it crashes) come out as components to report as dependency_cycle. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphs-internal.h"

/* A dependency_cycle error lists at most this many ids, so a huge cycle cannot turn the
 * error report into gigabytes (every node of the cycle carries the list). */
#define CYCLE_LIST_MAX 256

void graph_validation_free(graph_validation_t *v)
{
    if (!v)
        return;
    json_free(v->error);
    json_free(v->node_errors);
    for (size_t i = 0; i < v->n_outputs; i++)
        free(v->outputs[i]);
    free(v->outputs);
    json_free(v->prompt);
    memset(v, 0, sizeof *v);
}

static int set_error(graph_validation_t *res, json_t *err)
{
    json_free(res->error);
    res->error = err;
    return err ? BASE_E_GRAPH_INVALID : BASE_E_NOMEM;
}

/* ------------------------------------------------------------------ step 2: classes */

static int check_classes(graph_t *g, const node_registry_t *reg, graph_validation_t *res)
{
    for (size_t i = 0; i < g->n; i++) {
        graph_node_t *nd = &g->nodes[i];
        base_buf_t d = BASE_BUF_INIT;
        if (base_buf_printf(&d, "Node ID '#%s'", nd->id))
            return BASE_E_NOMEM;
        if (!nd->class_type) {
            int rc = set_error(
                res, graph__error("invalid_prompt",
                                  "Cannot execute because a node is missing the class_type property.", d.data,
                                  NULL));
            base_buf_free(&d);
            return rc;
        }
        nd->def = node_registry_find(reg, nd->class_type);
        if (!nd->def) {
            base_buf_t m = BASE_BUF_INIT;
            json_t *extra = json_new_object();
            int rc = BASE_E_NOMEM;
            if (extra &&
                !base_buf_printf(&m, "Cannot execute because node %s does not exist.", nd->class_type) &&
                graph__put_str(extra, "node_id", nd->id) &&
                graph__put_str(extra, "class_type", nd->class_type) &&
                graph__put_str(extra, "node_title", nd->title ? nd->title : nd->class_type)) {
                rc = set_error(res, graph__error("invalid_prompt", m.data, d.data, extra));
                extra = NULL;
            }
            json_free(extra);
            base_buf_free(&m);
            base_buf_free(&d);
            return rc;
        }
        base_buf_free(&d);
    }
    return 0;
}

/* ------------------------------------------------------------------ step 3: outputs */

/* Output nodes in prompt order, restricted to partial_targets when given (an array of
 * ids; non-string entries never match, like Python's `in` on a list of ids). */
static int collect_outputs(const graph_t *g, const json_t *targets, size_t **outs, size_t *n_outs)
{
    base_map_t set = BASE_MAP_INIT;
    bool restrict_ = targets && targets->type != JSON_NULL;
    for (size_t i = 0; restrict_ && i < json_len(targets) && targets->type == JSON_ARRAY; i++) {
        const char *s = json_str(json_at(targets, i));
        if (s && base_map_put(&set, s, NULL)) {
            base_map_free(&set);
            return BASE_E_NOMEM;
        }
    }
    *outs = malloc((g->n ? g->n : 1) * sizeof **outs);
    if (!*outs) {
        base_map_free(&set);
        return BASE_E_NOMEM;
    }
    *n_outs = 0;
    for (size_t i = 0; i < g->n; i++) {
        const node_def_t *def = g->nodes[i].def;
        if (!def || !(def->flags & NODE_OUTPUT_NODE))
            continue;
        if (restrict_ && !base_map_get(&set, g->nodes[i].id, NULL))
            continue;
        (*outs)[(*n_outs)++] = i;
    }
    base_map_free(&set);
    return 0;
}

/* ------------------------------------------------------------------ step 4: the walk */

typedef struct {
    graph__vctx_t c;
    size_t *tidx, *low; /* Tarjan discovery index (0 = not reached) and low-link */
    bool *onstack, *selfloop, *valid;
    size_t *scc; /* Tarjan's component stack */
    size_t n_scc;
    struct frame {
        size_t v, pos;
    } * cs; /* the explicit call stack */
} walk_t;

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static int cycle_error(walk_t *w, size_t v, const size_t *members, size_t n)
{
    graph__vctx_t *c = &w->c;
    json_t *list = json_new_array(), *extra = json_new_object();
    for (size_t i = 0; list && i < n && i < CYCLE_LIST_MAX; i++)
        if (json_array_push(list, json_new_string(c->g->nodes[members[i]].id))) {
            json_free(list);
            list = NULL;
        }
    if (!list || !extra || !graph__put(extra, "cycle_nodes", list)) {
        if (!extra)
            json_free(list);
        json_free(extra);
        return BASE_E_NOMEM;
    }
    char d[512];
    snprintf(d, sizeof d, "Node '%s' is part of a dependency cycle of %zu node%s", c->g->nodes[v].id, n,
             n == 1 ? "" : "s");
    json_t *err = graph__error("dependency_cycle", "Dependency cycle detected", d, extra);
    if (!err)
        return BASE_E_NOMEM;
    if (!c->errors[v] && !(c->errors[v] = json_new_array())) {
        json_free(err);
        return BASE_E_NOMEM;
    }
    return json_array_push(c->errors[v], err);
}

/* A finished component: a cycle (several nodes or a self-link) invalidates all of its
 * nodes; a lone node is valid when it and all its sources are (sources finish first). */
static int finish_component(walk_t *w, size_t v)
{
    graph__vctx_t *c = &w->c;
    size_t start = w->n_scc;
    do
        start--;
    while (w->scc[start] != v);
    size_t n = w->n_scc - start;
    size_t *members = &w->scc[start];
    for (size_t i = 0; i < n; i++)
        w->onstack[members[i]] = false;
    if (n > 1 || w->selfloop[v]) {
        qsort(members, n, sizeof *members, cmp_size);
        for (size_t i = 0; i < n; i++) {
            w->valid[members[i]] = false;
            int rc = cycle_error(w, members[i], members, n);
            if (rc)
                return rc;
        }
    } else {
        bool ok = c->local_ok[v];
        for (size_t e = 0; ok && e < c->edge_count[v]; e++)
            ok = w->valid[c->edges[c->edge_start[v] + e].src];
        w->valid[v] = ok;
    }
    w->n_scc = start;
    return 0;
}

static int discover(walk_t *w, size_t v, size_t from, size_t from_input, size_t *counter, size_t *depth)
{
    int rc = graph__check_node(&w->c, v, from, from_input);
    if (rc)
        return rc;
    w->tidx[v] = w->low[v] = ++*counter;
    w->scc[w->n_scc++] = v;
    w->onstack[v] = true;
    w->cs[*depth].v = v;
    w->cs[(*depth)++].pos = 0;
    return 0;
}

static int walk(walk_t *w, const size_t *outs, size_t n_outs)
{
    graph__vctx_t *c = &w->c;
    size_t counter = 0, depth = 0;
    for (size_t oi = 0; oi < n_outs; oi++) {
        if (w->tidx[outs[oi]])
            continue;
        int rc = discover(w, outs[oi], GRAPH__FROM_OUTPUT, 0, &counter, &depth);
        while (!rc && depth) {
            struct frame *f = &w->cs[depth - 1];
            size_t v = f->v;
            if (f->pos < c->edge_count[v]) {
                graph__edge_t e = c->edges[c->edge_start[v] + f->pos++];
                if (!w->tidx[e.src]) {
                    rc = discover(w, e.src, v, e.input, &counter, &depth);
                } else if (w->onstack[e.src]) {
                    if (w->tidx[e.src] < w->low[v])
                        w->low[v] = w->tidx[e.src];
                    if (e.src == v)
                        w->selfloop[v] = true;
                }
                continue;
            }
            depth--;
            if (w->low[v] == w->tidx[v])
                rc = finish_component(w, v);
            if (depth && w->low[v] < w->low[w->cs[depth - 1].v])
                w->low[w->cs[depth - 1].v] = w->low[v];
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ step 5: report */

/* Adds output o to dependent_outputs of every node with errors in its failed ancestry.
 * Only invalid nodes can lead to an error, so valid sub-graphs are not entered. */
static int mark_dependents(walk_t *w, size_t o, size_t stamp, size_t *seen, size_t *stack, json_t **deps)
{
    graph__vctx_t *c = &w->c;
    size_t top = 0;
    stack[top++] = o;
    seen[o] = stamp;
    while (top) {
        size_t v = stack[--top];
        if (c->errors[v]) {
            if (!deps[v] && !(deps[v] = json_new_array()))
                return BASE_E_NOMEM;
            if (json_array_push(deps[v], json_new_string(c->g->nodes[o].id)))
                return BASE_E_NOMEM;
        }
        for (size_t e = 0; e < c->edge_count[v]; e++) {
            size_t s = c->edges[c->edge_start[v] + e].src;
            if (seen[s] != stamp && !w->valid[s]) {
                seen[s] = stamp;
                stack[top++] = s;
            }
        }
    }
    return 0;
}

static int report(walk_t *w, const size_t *outs, size_t n_outs, graph_validation_t *res)
{
    graph__vctx_t *c = &w->c;
    graph_t *g = c->g;
    size_t n_good = 0;
    for (size_t oi = 0; oi < n_outs; oi++)
        n_good += w->valid[outs[oi]];
    if (n_good && !(res->outputs = calloc(n_good, sizeof *res->outputs)))
        return BASE_E_NOMEM;
    for (size_t oi = 0; oi < n_outs; oi++)
        if (w->valid[outs[oi]] && !(res->outputs[res->n_outputs++] = strdup(g->nodes[outs[oi]].id)))
            return BASE_E_NOMEM;

    int rc = 0;
    json_t **deps = calloc(g->n, sizeof *deps);
    size_t *seen = calloc(g->n, sizeof *seen), *stack = malloc(g->n * sizeof *stack);
    if (!deps || !seen || !stack)
        rc = BASE_E_NOMEM;
    for (size_t oi = 0; !rc && oi < n_outs; oi++)
        if (!w->valid[outs[oi]])
            rc = mark_dependents(w, outs[oi], oi + 1, seen, stack, deps);
    for (size_t i = 0; !rc && i < g->n; i++) {
        if (!c->errors[i] || !deps[i])
            continue;
        json_t *entry = json_new_object();
        bool ok = entry && graph__put(entry, "errors", c->errors[i]);
        c->errors[i] = NULL;
        ok = ok && graph__put(entry, "dependent_outputs", deps[i]);
        deps[i] = NULL;
        ok = ok && graph__put_str(entry, "class_type", g->nodes[i].class_type);
        if (!ok) {
            json_free(entry);
            rc = BASE_E_NOMEM;
        } else if (!graph__append(res->node_errors, g->nodes[i].id, entry)) {
            rc = BASE_E_NOMEM;
        }
    }
    if (deps)
        for (size_t i = 0; i < g->n; i++)
            json_free(deps[i]);
    free(deps);
    free(seen);
    free(stack);
    /* The summary joins every reported error ("message: details"), upstream ones included,
     * as comfyui-api.md 5.1 describes, so a client that shows only `details` still sees why. */
    base_buf_t details = BASE_BUF_INIT;
    if (!rc)
        rc = base_buf_puts(&details, "");
    for (size_t i = 0; !rc && i < json_len(res->node_errors); i++) {
        const json_t *errs = json_object_get(json_at(res->node_errors, i), "errors");
        for (size_t e = 0; !rc && e < json_len(errs); e++) {
            const json_t *err = json_at(errs, e);
            rc = base_buf_printf(&details, "%s%s: %s", details.len ? "\n" : "",
                                 json_str(json_object_get(err, "message")),
                                 json_str(json_object_get(err, "details")));
        }
    }
    if (!rc && !n_good)
        rc = set_error(res, graph__error("prompt_outputs_failed_validation",
                                         "Prompt outputs failed validation", details.data, NULL));
    base_buf_free(&details);
    return rc;
}

static void walk_free(walk_t *w, size_t n)
{
    graph__vctx_t *c = &w->c;
    if (c->errors)
        for (size_t i = 0; i < n; i++)
            json_free(c->errors[i]);
    free(c->errors);
    free(c->local_ok);
    free(c->edge_start);
    free(c->edge_count);
    free(c->edges);
    graph__vctx_free_caches(c);
    free(w->tidx);
    free(w->low);
    free(w->onstack);
    free(w->selfloop);
    free(w->valid);
    free(w->scc);
    free(w->cs);
}

static int validate_outputs(graph_t *g, const node_env_t *env, const size_t *outs, size_t n_outs,
                            graph_validation_t *res)
{
    size_t n = g->n ? g->n : 1;
    walk_t w = {.c = {.g = g, .env = env}};
    graph__vctx_t *c = &w.c;
    int rc = BASE_E_NOMEM;
    c->errors = calloc(n, sizeof *c->errors);
    c->local_ok = calloc(n, sizeof *c->local_ok);
    c->edge_start = calloc(n, sizeof *c->edge_start);
    c->edge_count = calloc(n, sizeof *c->edge_count);
    w.tidx = calloc(n, sizeof *w.tidx);
    w.low = calloc(n, sizeof *w.low);
    w.onstack = calloc(n, sizeof *w.onstack);
    w.selfloop = calloc(n, sizeof *w.selfloop);
    w.valid = calloc(n, sizeof *w.valid);
    w.scc = malloc(n * sizeof *w.scc);
    w.cs = malloc(n * sizeof *w.cs);
    if (c->errors && c->local_ok && c->edge_start && c->edge_count && w.tidx && w.low && w.onstack &&
        w.selfloop && w.valid && w.scc && w.cs) {
        rc = walk(&w, outs, n_outs);
        if (!rc)
            rc = report(&w, outs, n_outs, res);
    }
    walk_free(&w, g->n);
    return rc;
}

/* ------------------------------------------------------------------ API */

int graph_validate(graph_t *g, const node_registry_t *reg, const node_env_t *env,
                   const json_t *partial_targets, graph_validation_t *res)
{
    memset(res, 0, sizeof *res);
    if (!(res->node_errors = json_new_object()))
        return BASE_E_NOMEM;
    if (!g || !reg)
        return BASE_E_INVAL;
    int rc = check_classes(g, reg, res);
    size_t *outs = NULL, n_outs = 0;
    if (!rc)
        rc = collect_outputs(g, partial_targets, &outs, &n_outs);
    if (!rc && !n_outs)
        rc = set_error(res, graph__error("prompt_no_outputs", "Prompt has no outputs", "", NULL));
    if (!rc)
        rc = validate_outputs(g, env, outs, n_outs, res);
    free(outs);
    if (rc == BASE_E_NOMEM)
        return rc;
    /* Built last: the prompt carries the constants as validation coerced them. */
    if (!(res->prompt = graph__to_prompt(g)))
        return BASE_E_NOMEM;
    return rc ? rc : (res->error ? BASE_E_GRAPH_INVALID : 0);
}

int graph_check_request(const json_t *body, const node_registry_t *reg, const node_env_t *env, graph_t **g,
                        graph_validation_t *res)
{
    *g = NULL;
    memset(res, 0, sizeof *res);
    const json_t *prompt = json_object_get(body, "prompt");
    if (!prompt) {
        if (!(res->node_errors = json_new_object()))
            return BASE_E_NOMEM;
        return set_error(res, graph__error("no_prompt", "No prompt provided", "No prompt provided", NULL));
    }
    char err[256];
    graph_t *gg;
    int rc = graph_parse(prompt, &gg, err, sizeof err);
    if (rc) {
        if (!(res->node_errors = json_new_object()) || rc == BASE_E_NOMEM)
            return BASE_E_NOMEM;
        int src = set_error(res, graph__error("invalid_prompt",
                                              "Cannot execute because the prompt is malformed.", err, NULL));
        return src == BASE_E_NOMEM ? src : rc;
    }
    rc = graph_validate(gg, reg, env, json_object_get(body, "partial_execution_targets"), res);
    if (rc) {
        graph_free(gg);
        return rc;
    }
    *g = gg;
    return 0;
}
