/* The executor: runs a validated graph from a ready set, reusing cached outputs the way
 * ComfyUI does (comfyui-api.md 6.2-6.4, 6.9, 6.10, 6.12).
 *
 * Per-node state lives in arrays indexed by node index and every walk is iterative, so a
 * 100k-node chain costs about the same per node as a 10-node one. The graph is read by
 * name once (check_structure) into a compact argument list; later passes only touch that
 * list and the state array, because at 100k nodes each visit to a scattered graph node is
 * a cache miss. Running one node only goes through run_node(), which is what lets a later
 * change hand ready nodes to several lanes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine-internal.h"

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
} arg_t;

typedef struct {
    eng_centry_t *entry; /* where the node's outputs live once available (borrowed) */
    size_t arg_off;      /* its inputs: args[arg_off .. arg_off + n_args) */
    size_t cons_off;     /* its consumers: cons[cons_off .. cons_off + n_cons) */
    uint32_t n_args, n_cons, indeg;
    uint8_t flags;
} nstate_t;

typedef struct {
    eng_t *e;
    const eng_job_t *job;
    const graph_t *g;
    eng_result_t *r;

    size_t *order; /* pruned order, sources first (from graph_prune) */
    size_t n_order;
    nstate_t *st;                   /* per node */
    uint8_t (*sigs)[GRAPH_SIG_LEN]; /* per node */
    arg_t *args;
    size_t n_args, cap_args;

    size_t *cons;  /* consumer lists, see nstate_t */
    size_t *ready; /* FIFO of runnable nodes */
    size_t ready_head, ready_tail, n_needed;

    size_t *executed; /* node indices run this prompt, in execution order */
    size_t n_exec;

    /* Scratch of the one lane: inputs, outputs and the node context. */
    node_value_t **in, **out;
    size_t max_in, max_out;
    node_ctx_t ctx;
} run_t;

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Index of the declared, non-hidden input a prompt input feeds; -1 when validation ignores
 * it (undeclared names, hidden inputs). */
static int decl_index(const node_def_t *def, const char *name)
{
    int k = node_def_input_index(def, name);
    if (k < 0 || def->inputs[k].section == NODE_HIDDEN)
        return -1;
    return k;
}

static void set_error(eng_result_t *r, int rc, const char *node_id, const char *msg)
{
    r->status = rc;
    free(r->error_node);
    free(r->error_message);
    r->error_node = node_id ? strdup(node_id) : NULL;
    r->error_message = strdup(msg && *msg ? msg : base_strerror(rc));
}

/* Hands an event to the job's callback, recording lifecycle events in r->messages. */
static void emit(run_t *R, const char *type, json_t *data, bool lifecycle)
{
    if (!data)
        return;
    if (lifecycle) {
        json_t *pair = json_new_array();
        if (pair && !json_array_push(pair, json_new_string(type)) &&
            !json_array_push(pair, json_clone(data)))
            json_array_push(R->r->messages, pair);
        else
            json_free(pair);
    }
    if (R->job->on_event)
        R->job->on_event(R->job->ud, type, data);
    else
        json_free(data);
}

static void add_timing(run_t *R, size_t node, double ms, bool cached)
{
    eng_result_t *r = R->r;
    eng_timing_t *t = &r->timings[r->n_timings];
    t->node_id = strdup(R->g->nodes[node].id);
    if (!t->node_id)
        return; /* out of memory: the timing is lost, the run is not */
    t->ms = ms;
    t->cached = cached;
    r->n_timings++;
    if (cached)
        r->n_cached++;
    else
        r->n_executed++;
}

static void on_progress(void *engine, const char *node_id, uint64_t value, uint64_t max)
{
    run_t *R = engine;
    if (R->job->on_event)
        emit(R, "progress", eng__ev_progress(value, max, R->job->prompt_id, node_id), false);
}

static void on_preview(void *engine, const char *node_id, const void *png, size_t len)
{
    run_t *R = engine;
    if (R->job->on_preview)
        R->job->on_preview(R->job->ud, node_id, png, len);
}

/* ------------------------------------------------------------------ preparation */

static int push_arg(run_t *R, arg_t a)
{
    if (R->n_args == R->cap_args) {
        size_t cap = R->cap_args ? R->cap_args * 2 : 256;
        arg_t *p = cap > SIZE_MAX / sizeof *p ? NULL : realloc(R->args, cap * sizeof *p);
        if (!p)
            return BASE_E_NOMEM;
        R->args = p;
        R->cap_args = cap;
    }
    R->args[R->n_args++] = a;
    return 0;
}

/* Walks from the outputs along declared links, checks what the executor relies on (every
 * reached node has a definition, every link a real source with that output slot; a graph
 * that passed graph_validate always does) and records each reached node's arguments. */
static int check_structure(run_t *R, const size_t *outs, size_t n_outs, size_t *stack)
{
    const graph_t *g = R->g;
    size_t top = 0;
    for (size_t i = 0; i < n_outs; i++) {
        if (!(R->st[outs[i]].flags & F_CHECKED)) {
            R->st[outs[i]].flags |= F_CHECKED;
            stack[top++] = outs[i];
        }
    }
    char msg[512];
    while (top) {
        size_t j = stack[--top];
        const graph_node_t *n = &g->nodes[j];
        if (!n->def) {
            snprintf(msg, sizeof msg, "node %s (%s) was not validated", n->id,
                     n->class_type ? n->class_type : "no class_type");
            set_error(R->r, BASE_E_INVAL, n->id, msg);
            return BASE_E_INVAL;
        }
        R->st[j].arg_off = R->n_args;
        if (n->def->is_changed)
            R->st[j].flags |= F_FP;
        if (n->def->n_inputs > R->max_in)
            R->max_in = n->def->n_inputs;
        if (n->def->n_outputs > R->max_out)
            R->max_out = n->def->n_outputs;
        for (size_t k = 0; k < n->n_inputs; k++) {
            const graph_input_t *in = &n->inputs[k];
            int d = decl_index(n->def, in->name);
            if (d < 0 || (!in->is_link && !in->value))
                continue;
            arg_t a = {.value = in->value, .in = (uint32_t)d};
            if (in->is_link) {
                const graph_node_t *src =
                    in->src >= 0 && (size_t)in->src < g->n ? &g->nodes[in->src] : NULL;
                if (!src || !src->def || in->src_slot < 0 ||
                    (uint64_t)in->src_slot >= src->def->n_outputs || in->src_slot > INT32_MAX) {
                    snprintf(msg, sizeof msg, "node %s input %s: bad link", n->id, in->name);
                    set_error(R->r, BASE_E_INVAL, n->id, msg);
                    return BASE_E_INVAL;
                }
                a.value = NULL;
                a.src = (size_t)in->src;
                a.slot = (uint32_t)in->src_slot;
                if (!(R->st[a.src].flags & F_CHECKED)) {
                    R->st[a.src].flags |= F_CHECKED;
                    stack[top++] = a.src;
                }
            }
            if (push_arg(R, a)) {
                set_error(R->r, BASE_E_NOMEM, NULL, NULL);
                return BASE_E_NOMEM;
            }
            R->st[j].n_args++;
        }
    }
    return 0;
}

/* is_changed of every node that may run (constants only, like ComfyUI), then signatures.
 * A failing is_changed gets a fingerprint never seen before, so the node always re-runs.
 * ComfyUI fingerprints every node of the prompt; nodes reached only through links that
 * validation ignores never run here, so they get none. */
static int compute_signatures(run_t *R)
{
    const graph_t *g = R->g;
    char **fps = NULL;
    const json_t **args = NULL;
    int rc = 0;
    for (size_t o = 0; o < R->n_order && !rc; o++) {
        size_t i = R->order[o];
        if (!(R->st[i].flags & F_FP))
            continue;
        const graph_node_t *n = &g->nodes[i];
        if (!fps) {
            fps = calloc(g->n, sizeof *fps);
            args = calloc(R->max_in ? R->max_in : 1, sizeof *args);
            if (!fps || !args) {
                rc = BASE_E_NOMEM;
                break;
            }
        }
        for (size_t k = 0; k < n->def->n_inputs; k++)
            args[k] = NULL;
        for (size_t k = 0; k < n->n_inputs; k++) {
            int d = n->inputs[k].is_link ? -1 : decl_index(n->def, n->inputs[k].name);
            if (d >= 0)
                args[d] = n->inputs[k].value;
        }
        node_args_t a = {.def = n->def, .values = args};
        base_buf_t b = BASE_BUF_INIT;
        if (n->def->is_changed(R->e->env, &a, &b) != 0) {
            base_buf_free(&b);
            base_buf_printf(&b, "\x01is_changed failed #%llu",
                            (unsigned long long)++R->e->fp_serial);
        }
        fps[i] = base_buf_take(&b);
        if (!fps[i])
            rc = BASE_E_NOMEM;
    }
    if (!rc)
        rc = graph_signatures(g, R->order, R->n_order, (const char *const *)fps, R->sigs);
    if (fps)
        for (size_t i = 0; i < g->n; i++)
            free(fps[i]);
    free(fps);
    free(args);
    return rc;
}

/* Which nodes go through the ready set, and their dependency counts (6.2): the outputs,
 * always, and every non-cached source of a non-cached node. Cached nodes are read from the
 * cache and the walk stops there. */
static int build_schedule(run_t *R, const size_t *outs, size_t n_outs, size_t *stack)
{
    nstate_t *st = R->st;
    size_t top = 0;
    for (size_t i = 0; i < n_outs; i++) {
        if (!(st[outs[i]].flags & F_NEEDED)) {
            st[outs[i]].flags |= F_NEEDED;
            stack[top++] = outs[i];
        }
    }
    R->n_needed = 0;
    size_t n_edges = 0;
    while (top) {
        size_t j = stack[--top];
        R->n_needed++;
        if (st[j].flags & F_CACHED)
            continue;
        for (size_t a = st[j].arg_off; a < st[j].arg_off + st[j].n_args; a++) {
            const arg_t *arg = &R->args[a];
            if (arg->value || (st[arg->src].flags & F_CACHED))
                continue;
            /* Each count is bounded by the args of one node (< 2^32 by the arg list). */
            st[j].indeg++;
            st[arg->src].n_cons++;
            n_edges++;
            if (!(st[arg->src].flags & F_NEEDED)) {
                st[arg->src].flags |= F_NEEDED;
                stack[top++] = arg->src;
            }
        }
    }
    R->cons = malloc((n_edges ? n_edges : 1) * sizeof *R->cons);
    R->ready = malloc((R->n_needed ? R->n_needed : 1) * sizeof *R->ready);
    if (!R->cons || !R->ready)
        return BASE_E_NOMEM;
    size_t off = 0;
    for (size_t o = 0; o < R->n_order; o++) {
        nstate_t *s = &st[R->order[o]];
        s->cons_off = off;
        off += s->n_cons;
        s->n_cons = 0; /* refilled below */
    }
    /* Consumers in pruned order, so readiness follows the prompt's dependency order. */
    for (size_t o = 0; o < R->n_order; o++) {
        size_t j = R->order[o];
        if ((st[j].flags & (F_NEEDED | F_CACHED)) != F_NEEDED)
            continue;
        for (size_t a = st[j].arg_off; a < st[j].arg_off + st[j].n_args; a++) {
            const arg_t *arg = &R->args[a];
            if (arg->value || (st[arg->src].flags & F_CACHED))
                continue;
            nstate_t *s = &st[arg->src];
            R->cons[s->cons_off + s->n_cons++] = j;
        }
    }
    for (size_t o = 0; o < R->n_order; o++) {
        size_t j = R->order[o];
        if ((st[j].flags & F_NEEDED) && st[j].indeg == 0)
            R->ready[R->ready_tail++] = j;
    }
    return 0;
}

/* ------------------------------------------------------------------ running one node */

static void release_scratch(run_t *R, const node_def_t *def)
{
    for (size_t k = 0; k < def->n_inputs; k++) {
        node_value_unref(R->in[k]);
        R->in[k] = NULL;
    }
    for (size_t k = 0; k < def->n_outputs; k++) {
        node_value_unref(R->out[k]);
        R->out[k] = NULL;
    }
    json_free(R->ctx.ui);
    R->ctx.ui = NULL;
}

/* Reports a node that stopped the prompt (failure or interrupt) and records it in r. */
static void report_stop(run_t *R, size_t j, int rc, const char *msg, const char *type,
                        node_value_t *const *in)
{
    const graph_node_t *n = &R->g->nodes[j];
    eng_stop_info_t s = {
        .prompt_id = R->job->prompt_id,
        .g = R->g,
        .node = j,
        .executed = R->executed,
        .n_executed = R->n_exec,
        .message = msg,
        .type = type,
        .in = in,
    };
    if (rc == BASE_E_INTERRUPTED) {
        set_error(R->r, rc, n->id, NULL);
        emit(R, "execution_interrupted", eng__ev_interrupted(&s), true);
        return;
    }
    BASE_LOG(ERROR, "prompt %s node %s (%s): %s", R->job->prompt_id ? R->job->prompt_id : "-",
             n->id, n->class_type ? n->class_type : "-", msg);
    set_error(R->r, rc, n->id, msg);
    emit(R, "execution_error", eng__ev_error(&s), true);
}

/* A node that returned UI tells the client what it shows; an output node served from the
 * cache re-sends its cached UI, or null when it has none (comfyui-api.md 3.3, 6.4). */
static void send_executed(run_t *R, size_t j, const json_t *ui, bool from_cache)
{
    if (R->job->on_event && (ui || (from_cache && (R->st[j].flags & F_OUTPUT))))
        emit(R, "executed", eng__ev_executed(R->g->nodes[j].id, ui, R->job->prompt_id), false);
}

static int run_node(run_t *R, size_t j)
{
    const graph_node_t *n = &R->g->nodes[j];
    const node_def_t *def = n->def;
    const nstate_t *s = &R->st[j];

    for (size_t a = s->arg_off; a < s->arg_off + s->n_args; a++) {
        const arg_t *arg = &R->args[a];
        node_value_t *v = arg->value ? node_value_from_json(arg->value)
                                     : node_value_ref(R->st[arg->src].entry->out[arg->slot]);
        if (!v) {
            report_stop(R, j, BASE_E_NOMEM, "out of memory while gathering inputs",
                        "MemoryError", NULL);
            release_scratch(R, def);
            return BASE_E_NOMEM;
        }
        node_value_unref(R->in[arg->in]); /* a repeated name: the last one wins */
        R->in[arg->in] = v;
    }

    node_ctx_t *ctx = &R->ctx;
    ctx->def = def;
    ctx->node_id = n->id;
    ctx->in = R->in;
    ctx->out = R->out;
    ctx->ui = NULL;
    ctx->err[0] = '\0';
    ctx->err_type = NULL;

    if (R->job->on_event)
        emit(R, "executing", eng__ev_executing(n->id, R->job->prompt_id), false);
    double t0 = mono_ms();
    int rc = def->execute ? def->execute(ctx)
                          : node_fail(ctx, "%s has no implementation", def->name);
    double ms = mono_ms() - t0;

    if (rc == 0) {
        for (size_t k = 0; k < def->n_outputs; k++) {
            if (!R->out[k]) {
                rc = node_fail(ctx, "%s returned no value for output %zu (%s)", def->name, k,
                               def->outputs[k].type);
                break;
            }
        }
    }
    if (rc) {
        ctx->err[sizeof ctx->err - 1] = '\0';
        report_stop(R, j, rc, ctx->err[0] ? ctx->err : base_strerror(rc), ctx->err_type, R->in);
        release_scratch(R, def);
        return rc;
    }

    eng_centry_t *e = eng__centry_new(R->sigs[j], def->n_outputs, R->e->gen);
    if (!e || eng__cache_put(&R->e->cache, e)) {
        eng__centry_free(e);
        report_stop(R, j, BASE_E_NOMEM, "out of memory while caching outputs", "MemoryError",
                    R->in);
        release_scratch(R, def);
        return BASE_E_NOMEM;
    }
    for (size_t k = 0; k < def->n_outputs; k++) {
        e->out[k] = R->out[k];
        R->out[k] = NULL;
    }
    e->ui = ctx->ui;
    ctx->ui = NULL;
    R->st[j].entry = e;
    release_scratch(R, def);

    R->executed[R->n_exec++] = j;
    add_timing(R, j, ms, false);
    send_executed(R, j, e->ui, false);
    return 0;
}

/* One node taken from the ready set: re-send a cached output, reuse a result an identical
 * node produced earlier in this prompt (same signature), or execute. */
static int visit(run_t *R, size_t j)
{
    if (R->st[j].flags & F_CACHED) {
        send_executed(R, j, R->st[j].entry->ui, true);
        return 0;
    }
    eng_centry_t *hit = eng__cache_get(&R->e->cache, R->sigs[j]);
    if (hit) {
        R->st[j].entry = hit;
        add_timing(R, j, 0, true);
        send_executed(R, j, hit->ui, true);
        return 0;
    }
    return run_node(R, j);
}

static int run_ready(run_t *R)
{
    size_t done = 0;
    while (R->ready_head < R->ready_tail) {
        size_t j = R->ready[R->ready_head++];
        if (atomic_load(&R->e->interrupt)) {
            report_stop(R, j, BASE_E_INTERRUPTED, NULL, NULL, NULL);
            return BASE_E_INTERRUPTED;
        }
        int rc = visit(R, j);
        if (rc)
            return rc;
        done++;
        const nstate_t *s = &R->st[j];
        for (size_t c = s->cons_off; c < s->cons_off + s->n_cons; c++)
            if (--R->st[R->cons[c]].indeg == 0)
                R->ready[R->ready_tail++] = R->cons[c];
    }
    if (done < R->n_needed) {
        /* Validation rejects cycles, so this only guards against a corrupted graph. */
        size_t j = 0;
        for (size_t o = 0; o < R->n_order; o++) {
            j = R->order[o];
            if ((R->st[j].flags & F_NEEDED) && R->st[j].indeg)
                break;
        }
        report_stop(R, j, BASE_E_GRAPH_CYCLE, "Dependency cycle detected",
                    "graph.DependencyCycleError", NULL);
        return BASE_E_GRAPH_CYCLE;
    }
    return 0;
}

/* ------------------------------------------------------------------ public API */

int eng_new(const eng_config_t *cfg, eng_t **out)
{
    if (!out)
        return BASE_E_INVAL;
    *out = NULL;
    if (!cfg || !cfg->reg || !cfg->env)
        return BASE_E_INVAL;
    eng_t *e = calloc(1, sizeof *e);
    if (!e)
        return BASE_E_NOMEM;
    if (pthread_mutex_init(&e->lock, NULL) != 0) {
        free(e);
        return BASE_E_NOMEM;
    }
    e->reg = cfg->reg;
    e->env = cfg->env;
    atomic_init(&e->interrupt, false);
    *out = e;
    return 0;
}

void eng_free(eng_t *e)
{
    if (!e)
        return;
    eng__cache_clear(&e->cache);
    pthread_mutex_destroy(&e->lock);
    free(e->running_id);
    free(e);
}

void eng_interrupt(eng_t *e, const char *prompt_id)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    /* An interrupt while idle is dropped like ComfyUI's (the flag is cleared at the next
     * start anyway); one naming another prompt must not stop this one. */
    if (e->running_id && (!prompt_id || strcmp(prompt_id, e->running_id) == 0))
        atomic_store(&e->interrupt, true);
    pthread_mutex_unlock(&e->lock);
}

void eng_result_free(eng_result_t *r)
{
    if (!r)
        return;
    json_free(r->outputs);
    json_free(r->messages);
    free(r->error_node);
    free(r->error_message);
    for (size_t i = 0; i < r->n_timings; i++)
        free(r->timings[i].node_id);
    free(r->timings);
    memset(r, 0, sizeof *r);
}

static int begin(eng_t *e, const char *prompt_id)
{
    char *id = strdup(prompt_id ? prompt_id : "");
    if (!id)
        return BASE_E_NOMEM;
    pthread_mutex_lock(&e->lock);
    if (e->running_id) {
        pthread_mutex_unlock(&e->lock);
        free(id);
        return BASE_E_ENGINE_BUSY;
    }
    e->running_id = id;
    /* Cleared under the lock, so an interrupt aimed at this prompt cannot be lost. */
    atomic_store(&e->interrupt, false);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

static void end(eng_t *e)
{
    pthread_mutex_lock(&e->lock);
    free(e->running_id);
    e->running_id = NULL;
    pthread_mutex_unlock(&e->lock);
}

/* UI of every node of the prompt whose result is known (cached or run), in prompt order,
 * like v0.3.64's history "outputs" (which includes results cached by earlier prompts). */
static void collect_outputs(run_t *R)
{
    const graph_t *g = R->g;
    for (size_t i = 0; i < g->n; i++) {
        const eng_centry_t *c = R->st[i].entry;
        if ((R->st[i].flags & F_ORDER) && c && c->ui)
            json_object_set(R->r->outputs, g->nodes[i].id, json_clone(c->ui));
    }
}

static void free_run(run_t *R)
{
    free(R->order);
    free(R->st);
    free(R->sigs);
    free(R->args);
    free(R->cons);
    free(R->ready);
    free(R->executed);
    free(R->in);
    free(R->out);
}

int eng_execute(eng_t *e, const eng_job_t *job, eng_result_t *r)
{
    if (!r)
        return BASE_E_INVAL;
    memset(r, 0, sizeof *r);
    double t_start = mono_ms();
    r->outputs = json_new_object();
    r->messages = json_new_array();
    if (!r->outputs || !r->messages) {
        set_error(r, BASE_E_NOMEM, NULL, NULL);
        return r->status;
    }
    if (!e || !job || !job->graph || (!job->outputs && job->n_outputs)) {
        set_error(r, BASE_E_INVAL, NULL, "eng_execute: missing engine, job or graph");
        return r->status;
    }
    if (job->n_outputs == 0) {
        set_error(r, BASE_E_GRAPH_NO_OUTPUTS, NULL, "Prompt has no outputs");
        return r->status;
    }

    const graph_t *g = job->graph;
    run_t R = {.e = e, .job = job, .g = g, .r = r};
    size_t *outs = malloc(job->n_outputs * sizeof *outs);
    size_t *stack = malloc((g->n + 1) * sizeof *stack);
    R.st = calloc(g->n + 1, sizeof *R.st);
    R.sigs = malloc((g->n + 1) * sizeof *R.sigs);
    R.executed = malloc((g->n + 1) * sizeof *R.executed);
    int rc = outs && stack && R.st && R.sigs && R.executed ? 0 : BASE_E_NOMEM;
    if (rc) {
        set_error(r, rc, NULL, NULL);
        goto out;
    }

    for (size_t i = 0; i < job->n_outputs; i++) {
        int64_t idx = job->outputs[i] ? graph_find(g, job->outputs[i]) : -1;
        if (idx < 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "output node %.200s is not in the prompt",
                     job->outputs[i] ? job->outputs[i] : "(null)");
            rc = BASE_E_INVAL;
            set_error(r, rc, job->outputs[i], msg);
            goto out;
        }
        outs[i] = (size_t)idx;
        R.st[idx].flags |= F_OUTPUT;
    }
    if ((rc = check_structure(&R, outs, job->n_outputs, stack)))
        goto out;
    if (R.n_args > UINT32_MAX) {
        rc = BASE_E_TOOBIG;
        set_error(r, rc, NULL, "prompt has too many links");
        goto out;
    }
    if ((rc = graph_prune(g, job->outputs, job->n_outputs, &R.order, &R.n_order))) {
        set_error(r, rc, NULL, "cannot order the prompt's nodes");
        goto out;
    }
    for (size_t o = 0; o < R.n_order; o++)
        R.st[R.order[o]].flags |= F_ORDER;
    R.in = calloc(R.max_in + 1, sizeof *R.in);
    R.out = calloc(R.max_out + 1, sizeof *R.out);
    r->timings = calloc(R.n_order + 1, sizeof *r->timings);
    if (!R.in || !R.out || !r->timings) {
        rc = BASE_E_NOMEM;
        set_error(r, rc, NULL, NULL);
        goto out;
    }
    R.ctx.env = e->env;
    R.ctx.prompt = job->prompt;
    R.ctx.extra_pnginfo = job->extra_pnginfo;
    R.ctx.engine = &R;
    R.ctx.progress_cb = on_progress;
    R.ctx.preview_cb = job->on_preview ? on_preview : NULL;
    R.ctx.interrupt = &e->interrupt;

    if ((rc = begin(e, job->prompt_id))) {
        set_error(r, rc, NULL, NULL);
        goto out;
    }
    e->gen++;
    emit(&R, "execution_start", eng__ev_lifecycle(job->prompt_id), true);

    if ((rc = compute_signatures(&R))) {
        set_error(r, rc, NULL, "cannot compute cache signatures");
        goto ended;
    }
    /* Classic cache mode: the prompt's signatures are now known; what it does not use
     * goes, what it does use is marked and read in place. */
    for (size_t o = 0; o < R.n_order; o++) {
        size_t i = R.order[o];
        eng_centry_t *c = eng__cache_get(&e->cache, R.sigs[i]);
        if (c) {
            c->gen = e->gen;
            R.st[i].entry = c;
            R.st[i].flags |= F_CACHED;
        }
    }
    eng__cache_sweep(&e->cache, e->gen);
    {
        size_t m = 0;
        for (size_t i = 0; i < g->n; i++) {
            if ((R.st[i].flags & (F_ORDER | F_CACHED)) == (F_ORDER | F_CACHED)) {
                stack[m++] = i;
                add_timing(&R, i, 0, true);
            }
        }
        emit(&R, "execution_cached", eng__ev_cached(g, stack, m, job->prompt_id), true);
    }

    if ((rc = build_schedule(&R, outs, job->n_outputs, stack))) {
        set_error(r, rc, NULL, NULL);
        goto ended;
    }
    /* Room for every result up front: growing the table while running would rehash it
     * several times. Failure is harmless, cache_put grows it as needed. */
    (void)eng__cache_reserve(&e->cache, R.n_needed);
    rc = run_ready(&R);
    if (rc == 0)
        emit(&R, "execution_success", eng__ev_lifecycle(job->prompt_id), true);

ended:
    collect_outputs(&R);
    end(e);
out:
    free(outs);
    free(stack);
    free_run(&R);
    r->status = rc;
    r->total_ms = mono_ms() - t_start;
    return rc;
}
