/* The executor: runs a validated graph from a ready set, reusing cached outputs the way
 * ComfyUI does (comfyui-api.md 6.2-6.4, 6.9, 6.10, 6.12).
 *
 * Per-node state lives in arrays indexed by node index and every walk is iterative, so a
 * 100k-node chain costs about the same per node as a 10-node one. The graph is read by
 * name once (check_structure) into a compact argument list; later passes only touch that
 * list and the state array, because at 100k nodes each visit to a scattered graph node is
 * a cache miss. Running one node only goes through eng__process(), which either the calling
 * thread's loop (run_serial) or the lanes (lanes.c) call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine-internal.h"

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

/* Parallel runs serialise their callbacks and result bookkeeping; serial runs have one
 * thread and skip the lock. */
static void lock_ev(eng_run_t *R)
{
    if (R->parallel)
        pthread_mutex_lock(&R->ev_mu);
}

static void unlock_ev(eng_run_t *R)
{
    if (R->parallel)
        pthread_mutex_unlock(&R->ev_mu);
}

/* Hands an event to the job's callback, recording lifecycle events in r->messages. */
static void emit(eng_run_t *R, const char *type, json_t *data, bool lifecycle)
{
    if (!data)
        return;
    lock_ev(R);
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
    unlock_ev(R);
}

/* Under lock_ev in parallel runs. */
static void add_timing(eng_run_t *R, size_t node, double ms, bool cached)
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
    eng_run_t *R = engine;
    if (R->job->on_event)
        emit(R, "progress", eng__ev_progress(value, max, R->job->prompt_id, node_id), false);
}

static void on_preview(void *engine, const char *node_id, const void *png, size_t len)
{
    eng_run_t *R = engine;
    if (R->job->on_preview) {
        lock_ev(R);
        R->job->on_preview(R->job->ud, node_id, png, len);
        unlock_ev(R);
    }
}

/* ------------------------------------------------------------------ preparation */

static int push_arg(eng_run_t *R, eng_arg_t a)
{
    if (R->n_args == R->cap_args) {
        size_t cap = R->cap_args ? R->cap_args * 2 : 256;
        eng_arg_t *p = cap > SIZE_MAX / sizeof *p ? NULL : realloc(R->args, cap * sizeof *p);
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
static int check_structure(eng_run_t *R, const size_t *outs, size_t n_outs, size_t *stack)
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
            eng_arg_t a = {.value = in->value, .in = (uint32_t)d};
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
static int compute_signatures(eng_run_t *R)
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
                            (unsigned long long)(atomic_fetch_add(&R->e->fp_serial, 1) + 1));
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

/* Parallel runs: for every node that will run, the first earlier node of the prompt with the
 * same signature (SIZE_MAX when none), in dup[]. Such a node then waits for that one and
 * finds its result in the cache, as it does when one thread runs the ready set in order;
 * otherwise two lanes would compute the same thing at once. 0 or BASE_E_NOMEM. */
static int find_duplicates(eng_run_t *R, size_t *dup)
{
    size_t cap = 64;
    while (cap / 2 < R->n_needed)
        cap *= 2;
    size_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < cap; i++)
        slots[i] = SIZE_MAX;
    for (size_t o = 0; o < R->n_order; o++) {
        size_t j = R->order[o];
        dup[j] = SIZE_MAX;
        if ((R->st[j].flags & (F_NEEDED | F_CACHED)) != F_NEEDED)
            continue;
        uint64_t h;
        memcpy(&h, R->sigs[j], sizeof h);
        size_t k = (size_t)h & (cap - 1);
        while (slots[k] != SIZE_MAX && memcmp(R->sigs[slots[k]], R->sigs[j], GRAPH_SIG_LEN))
            k = (k + 1) & (cap - 1);
        if (slots[k] == SIZE_MAX)
            slots[k] = j;
        else
            dup[j] = slots[k];
    }
    free(slots);
    return 0;
}

/* Which nodes go through the ready set, and their dependency counts (6.2): the outputs,
 * always, and every non-cached source of a non-cached node. Cached nodes are read from the
 * cache and the walk stops there. Parallel runs add an edge from a node to each later
 * duplicate of it (find_duplicates). */
static int build_schedule(eng_run_t *R, const size_t *outs, size_t n_outs, size_t *stack)
{
    eng_nstate_t *st = R->st;
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
            const eng_arg_t *arg = &R->args[a];
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
    size_t *dup = NULL;
    if (R->parallel) {
        dup = malloc((R->g->n + 1) * sizeof *dup);
        if (!dup || find_duplicates(R, dup)) {
            free(dup);
            return BASE_E_NOMEM;
        }
        for (size_t o = 0; o < R->n_order; o++) {
            size_t j = R->order[o];
            if (dup[j] != SIZE_MAX) {
                st[j].indeg++;
                st[dup[j]].n_cons++;
                n_edges++;
            }
        }
    }
    R->cons = malloc((n_edges ? n_edges : 1) * sizeof *R->cons);
    R->ready = malloc((R->n_needed ? R->n_needed : 1) * sizeof *R->ready);
    if (!R->cons || !R->ready) {
        free(dup);
        return BASE_E_NOMEM;
    }
    size_t off = 0;
    for (size_t o = 0; o < R->n_order; o++) {
        eng_nstate_t *s = &st[R->order[o]];
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
            const eng_arg_t *arg = &R->args[a];
            if (arg->value || (st[arg->src].flags & F_CACHED))
                continue;
            eng_nstate_t *s = &st[arg->src];
            R->cons[s->cons_off + s->n_cons++] = j;
        }
        if (dup && dup[j] != SIZE_MAX) {
            eng_nstate_t *s = &st[dup[j]];
            R->cons[s->cons_off + s->n_cons++] = j;
        }
    }
    free(dup);
    for (size_t o = 0; o < R->n_order; o++) {
        size_t j = R->order[o];
        if ((st[j].flags & F_NEEDED) && st[j].indeg == 0)
            R->ready[R->ready_tail++] = j;
    }
    return 0;
}

/* ------------------------------------------------------------------ running one node */

int eng__lane_reserve(eng_lane_t *L, size_t n, size_t m)
{
    if (n > L->cap_in) {
        node_value_t **p = calloc(n, sizeof *p);
        if (!p)
            return BASE_E_NOMEM;
        free(L->in); /* empty between nodes */
        L->in = p;
        L->cap_in = n;
    }
    if (m > L->cap_out) {
        node_value_t **p = calloc(m, sizeof *p);
        if (!p)
            return BASE_E_NOMEM;
        free(L->out);
        L->out = p;
        L->cap_out = m;
    }
    return 0;
}

void eng__lane_release(eng_lane_t *L)
{
    free(L->in);
    free(L->out);
    L->in = L->out = NULL;
    L->cap_in = L->cap_out = 0;
}

static void release_scratch(eng_lane_t *L, const node_def_t *def)
{
    for (size_t k = 0; k < def->n_inputs; k++) {
        node_value_unref(L->in[k]);
        L->in[k] = NULL;
    }
    for (size_t k = 0; k < def->n_outputs; k++) {
        node_value_unref(L->out[k]);
        L->out[k] = NULL;
    }
    json_free(L->ctx.ui);
    L->ctx.ui = NULL;
}

/* Records what stops the prompt, unless something already did (the first one is reported).
 * The terminal event is sent by report_stop once no lane holds a node of the prompt; in[] is
 * kept (referenced) for its current_inputs. In a parallel run the other lanes' nodes stop at
 * their next interrupt point. */
static void note_stop(eng_run_t *R, size_t j, int rc, const char *msg, const char *type,
                      node_value_t *const *in, size_t n_in)
{
    lock_ev(R);
    eng_stop_t *s = &R->stop;
    if (!s->set) {
        s->set = true;
        s->rc = rc;
        s->node = j;
        s->msg = msg && *msg ? strdup(msg) : NULL; /* out of memory: the generic text */
        s->type = type;
        if (in && n_in && (s->in = calloc(n_in, sizeof *s->in))) {
            s->n_in = n_in;
            for (size_t k = 0; k < n_in; k++)
                s->in[k] = node_value_ref(in[k]);
        }
    }
    unlock_ev(R);
    if (R->parallel)
        atomic_store(&R->interrupt, true);
}

/* Sends the recorded stop (failure or interrupt) and records it in r. Calling thread, after
 * the run. */
static void report_stop(eng_run_t *R)
{
    eng_stop_t *st = &R->stop;
    const graph_node_t *n = &R->g->nodes[st->node];
    const char *msg = st->msg ? st->msg : base_strerror(st->rc);
    eng_stop_info_t s = {
        .prompt_id = R->job->prompt_id,
        .g = R->g,
        .node = st->node,
        .executed = R->executed,
        .n_executed = R->n_exec,
        .message = msg,
        .type = st->type,
        .in = st->in,
    };
    if (st->rc == BASE_E_INTERRUPTED) {
        set_error(R->r, st->rc, n->id, NULL);
        emit(R, "execution_interrupted", eng__ev_interrupted(&s), true);
        return;
    }
    BASE_LOG(ERROR, "prompt %s node %s (%s): %s", R->job->prompt_id ? R->job->prompt_id : "-",
             n->id, n->class_type ? n->class_type : "-", msg);
    set_error(R->r, st->rc, n->id, msg);
    emit(R, "execution_error", eng__ev_error(&s), true);
}

static void free_stop(eng_stop_t *s)
{
    for (size_t k = 0; k < s->n_in; k++)
        node_value_unref(s->in[k]);
    free(s->in);
    free(s->msg);
    memset(s, 0, sizeof *s);
}

/* A node that returned UI tells the client what it shows; an output node served from the
 * cache re-sends its cached UI, or null when it has none (comfyui-api.md 3.3, 6.4). */
static void send_executed(eng_run_t *R, size_t j, const json_t *ui, bool from_cache)
{
    if (R->job->on_event && (ui || (from_cache && (R->st[j].flags & F_OUTPUT))))
        emit(R, "executed", eng__ev_executed(R->g->nodes[j].id, ui, R->job->prompt_id), false);
}

/* The tensors of v that another lane's stream produced get used on this lane's stream: the
 * CUDA allocator must not recycle their memory before that use is done. Models and other
 * objects are shared read-only and live in the model cache. */
static void mark_used_here(const node_value_t *v, int depth)
{
    if (!v || depth > 8)
        return;
    if (v->kind == NODE_V_TENSOR)
        ts_record_stream(v->u.t);
    else if (v->kind == NODE_V_LIST || v->kind == NODE_V_DICT)
        for (size_t i = 0; i < v->u.list.n; i++)
            mark_used_here(v->u.list.items[i], depth + 1);
}

/* The entry for sig from the cache, pinned for this run when threads share the cache. */
static eng_centry_t *cache_take(eng_run_t *R, const uint8_t *sig)
{
    eng_t *e = R->e;
    if (!e->mt)
        return eng__cache_get(&e->cache, sig);
    pthread_mutex_lock(&e->cache_mu);
    eng_centry_t *c = eng__cache_get(&e->cache, sig);
    if (c)
        c->pins++;
    pthread_mutex_unlock(&e->cache_mu);
    return c;
}

/* Inserts n's new entry; with threads sharing the cache another prompt may have put the same
 * signature meanwhile, and then that entry is used (the results are the same computation).
 * The entry used is returned (pinned for this run when shared); NULL on out of memory. */
static eng_centry_t *cache_add(eng_run_t *R, eng_centry_t *n)
{
    eng_t *e = R->e;
    if (!e->mt)
        return eng__cache_put(&e->cache, n) ? NULL : n;
    pthread_mutex_lock(&e->cache_mu);
    eng_centry_t *have = eng__cache_get(&e->cache, n->sig), *got = have;
    if (!have && !eng__cache_put(&e->cache, n))
        got = n;
    if (got)
        got->pins++;
    pthread_mutex_unlock(&e->cache_mu);
    if (have)
        eng__centry_free(n);
    return got;
}

static int run_node(eng_run_t *R, size_t j, eng_lane_t *L)
{
    const graph_node_t *n = &R->g->nodes[j];
    const node_def_t *def = n->def;
    const eng_nstate_t *s = &R->st[j];

    if (R->parallel && eng__lane_reserve(L, def->n_inputs + 1, def->n_outputs + 1)) {
        note_stop(R, j, BASE_E_NOMEM, "out of memory while gathering inputs", "MemoryError", NULL, 0);
        return BASE_E_NOMEM;
    }
    for (size_t a = s->arg_off; a < s->arg_off + s->n_args; a++) {
        const eng_arg_t *arg = &R->args[a];
        node_value_t *v;
        if (arg->value) {
            v = node_value_from_json(arg->value);
        } else {
            const eng_centry_t *src = R->st[arg->src].entry;
            v = node_value_ref(src->out[arg->slot]);
            /* Made on another lane's stream: this lane's stream waits for it (CUDA). */
            if (src->lane != L->index && src->ready) {
                ts_event_wait(src->ready);
                mark_used_here(v, 0);
            }
        }
        if (!v) {
            note_stop(R, j, BASE_E_NOMEM, "out of memory while gathering inputs", "MemoryError", NULL, 0);
            release_scratch(L, def);
            return BASE_E_NOMEM;
        }
        node_value_unref(L->in[arg->in]); /* a repeated name: the last one wins */
        L->in[arg->in] = v;
    }

    node_ctx_t *ctx = &L->ctx;
    ctx->def = def;
    ctx->node_id = n->id;
    ctx->in = L->in;
    ctx->out = L->out;
    ctx->ui = NULL;
    ctx->err[0] = '\0';
    ctx->err_type = NULL;
    ctx->env = R->e->env;
    ctx->prompt = R->job->prompt;
    ctx->extra_pnginfo = R->job->extra_pnginfo;
    ctx->engine = R;
    ctx->progress_cb = on_progress;
    ctx->preview_cb = R->job->on_preview ? on_preview : NULL;
    ctx->interrupt = &R->interrupt;

    if (R->job->on_event)
        emit(R, "executing", eng__ev_executing(n->id, R->job->prompt_id), false);
    double t0 = mono_ms();
    int rc = def->execute ? def->execute(ctx)
                          : node_fail(ctx, "%s has no implementation", def->name);
    double ms = mono_ms() - t0;

    if (rc == 0) {
        for (size_t k = 0; k < def->n_outputs; k++) {
            if (!L->out[k]) {
                rc = node_fail(ctx, "%s returned no value for output %zu (%s)", def->name, k,
                               def->outputs[k].type);
                break;
            }
        }
    }
    if (rc) {
        ctx->err[sizeof ctx->err - 1] = '\0';
        note_stop(R, j, rc, ctx->err[0] ? ctx->err : base_strerror(rc), ctx->err_type, L->in,
                  def->n_inputs);
        release_scratch(L, def);
        return rc;
    }

    eng_centry_t *e = eng__centry_new(R->sigs[j], def->n_outputs, R->gen), *got = NULL;
    if (e) {
        for (size_t k = 0; k < def->n_outputs; k++) {
            e->out[k] = L->out[k];
            L->out[k] = NULL;
        }
        e->ui = ctx->ui;
        ctx->ui = NULL;
        if (L->stream) { /* consumers on other lanes wait for this point of our stream */
            e->lane = L->index;
            ts_event_record(&e->ready);
        }
        got = cache_add(R, e);
    }
    if (!got) {
        note_stop(R, j, BASE_E_NOMEM, "out of memory while caching outputs", "MemoryError", L->in,
                  def->n_inputs);
        if (e) { /* give the outputs back so they are released with the scratch */
            for (size_t k = 0; k < def->n_outputs; k++) {
                L->out[k] = e->out[k];
                e->out[k] = NULL;
            }
        }
        eng__centry_free(e);
        release_scratch(L, def);
        return BASE_E_NOMEM;
    }
    R->st[j].entry = got;
    release_scratch(L, def);

    lock_ev(R);
    R->executed[R->n_exec++] = j;
    add_timing(R, j, ms, false);
    unlock_ev(R);
    send_executed(R, j, got->ui, false);
    return 0;
}

/* One node taken from the ready set: re-send a cached output, reuse a result an identical
 * node produced earlier in this prompt (same signature), or execute. */
static int visit(eng_run_t *R, size_t j, eng_lane_t *L)
{
    if (R->st[j].flags & F_CACHED) {
        send_executed(R, j, R->st[j].entry->ui, true);
        return 0;
    }
    eng_centry_t *hit = cache_take(R, R->sigs[j]);
    if (hit) {
        R->st[j].entry = hit;
        lock_ev(R);
        add_timing(R, j, 0, true);
        unlock_ev(R);
        send_executed(R, j, hit->ui, true);
        return 0;
    }
    return run_node(R, j, L);
}

int eng__process(eng_run_t *R, size_t j, eng_lane_t *L)
{
    if (atomic_load(&R->interrupt)) {
        note_stop(R, j, BASE_E_INTERRUPTED, NULL, NULL, NULL, 0);
        return BASE_E_INTERRUPTED;
    }
    return visit(R, j, L);
}

bool eng__heavy(const eng_run_t *R, size_t j)
{
    return !(R->st[j].flags & F_CACHED) && (R->g->nodes[j].def->flags & NODE_HEAVY);
}

/* The calling thread runs the ready set in FIFO order, one node at a time. */
static int run_serial(eng_run_t *R, eng_lane_t *L)
{
    while (R->ready_head < R->ready_tail) {
        size_t j = R->ready[R->ready_head++];
        int rc = eng__process(R, j, L);
        if (rc)
            return rc;
        R->n_done++;
        const eng_nstate_t *s = &R->st[j];
        for (size_t c = s->cons_off; c < s->cons_off + s->n_cons; c++)
            if (--R->st[R->cons[c]].indeg == 0)
                R->ready[R->ready_tail++] = R->cons[c];
    }
    return 0;
}

/* After the run: a prompt that neither stopped nor ran every needed node has a cycle
 * (validation rejects cycles, so this only guards against a corrupted graph). */
static void check_complete(eng_run_t *R)
{
    if (R->stop.set || R->n_done >= R->n_needed)
        return;
    size_t j = 0;
    for (size_t o = 0; o < R->n_order; o++) {
        j = R->order[o];
        if ((R->st[j].flags & F_NEEDED) && R->st[j].indeg)
            break;
    }
    note_stop(R, j, BASE_E_GRAPH_CYCLE, "Dependency cycle detected", "graph.DependencyCycleError",
              NULL, 0);
}

/* ------------------------------------------------------------------ public API */

static void default_mem(size_t *used, size_t *budget)
{
    node_models_stats(NULL, used);
    *budget = node_models_budget();
}

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
    if (pthread_mutex_init(&e->cache_mu, NULL) != 0) {
        pthread_mutex_destroy(&e->lock);
        free(e);
        return BASE_E_NOMEM;
    }
    e->reg = cfg->reg;
    e->env = cfg->env;
    e->max_prompts = cfg->max_prompts ? cfg->max_prompts : 1;
    atomic_init(&e->fp_serial, 0);
    if (cfg->lanes > 1) {
        eng_pool_config_t pc = {.lanes = cfg->lanes,
                                .heavy = cfg->heavy_lanes,
                                .threads = cfg->lane_threads,
                                .mem = cfg->mem ? cfg->mem : default_mem};
        int rc = eng__pool_new(&pc, &e->pool);
        if (rc) {
            eng_free(e);
            return rc;
        }
    }
    e->mt = e->pool || e->max_prompts > 1;
    *out = e;
    return 0;
}

void eng_free(eng_t *e)
{
    if (!e)
        return;
    eng__pool_free(e->pool);
    eng__cache_clear(&e->cache);
    pthread_mutex_destroy(&e->cache_mu);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void eng_interrupt(eng_t *e, const char *prompt_id)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    /* An interrupt while idle is dropped like ComfyUI's (each prompt starts with its flag
     * cleared anyway); one naming another prompt must not stop this one. */
    for (eng_run_t *R = e->active; R; R = R->active_next)
        if (!prompt_id || strcmp(prompt_id, R->id) == 0)
            atomic_store(&R->interrupt, true);
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

/* Registers R as running (eng_interrupt finds it from here on) and gives it its cache
 * generation. BASE_E_ENGINE_BUSY when max_prompts already run. */
static int begin(eng_t *e, eng_run_t *R)
{
    pthread_mutex_lock(&e->lock);
    if (e->n_active >= e->max_prompts) {
        pthread_mutex_unlock(&e->lock);
        return BASE_E_ENGINE_BUSY;
    }
    R->active_next = e->active;
    e->active = R;
    e->n_active++;
    R->gen = ++e->gen;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

static void end(eng_t *e, eng_run_t *R)
{
    pthread_mutex_lock(&e->lock);
    for (eng_run_t **p = &e->active; *p; p = &(*p)->active_next) {
        if (*p == R) {
            *p = R->active_next;
            e->n_active--;
            break;
        }
    }
    pthread_mutex_unlock(&e->lock);
}

/* UI of every node of the prompt whose result is known (cached or run), in prompt order,
 * like v0.3.64's history "outputs" (which includes results cached by earlier prompts). */
static void collect_outputs(eng_run_t *R)
{
    const graph_t *g = R->g;
    for (size_t i = 0; i < g->n; i++) {
        const eng_centry_t *c = R->st[i].entry;
        if ((R->st[i].flags & F_ORDER) && c && c->ui)
            json_object_set(R->r->outputs, g->nodes[i].id, json_clone(c->ui));
    }
}

/* Classic cache mode: the prompt's signatures are now known; what it does not use goes
 * (unless a running prompt holds it), what it does use is marked and read in place. */
static void take_cached(eng_run_t *R)
{
    eng_t *e = R->e;
    if (e->mt)
        pthread_mutex_lock(&e->cache_mu);
    for (size_t o = 0; o < R->n_order; o++) {
        size_t i = R->order[o];
        eng_centry_t *c = eng__cache_get(&e->cache, R->sigs[i]);
        if (c) {
            c->gen = R->gen;
            if (e->mt)
                c->pins++;
            R->st[i].entry = c;
            R->st[i].flags |= F_CACHED;
        }
    }
    eng__cache_sweep(&e->cache, R->gen);
    if (e->mt)
        pthread_mutex_unlock(&e->cache_mu);
}

/* Lets go of every entry this run pinned (one pin per node holding an entry). */
static void unpin_all(eng_run_t *R)
{
    eng_t *e = R->e;
    if (!e->mt)
        return;
    pthread_mutex_lock(&e->cache_mu);
    for (size_t o = 0; o < R->n_order; o++) {
        eng_centry_t *c = R->st[R->order[o]].entry;
        if (c && c->pins)
            c->pins--;
    }
    pthread_mutex_unlock(&e->cache_mu);
}

static void free_run(eng_run_t *R)
{
    free(R->order);
    free(R->st);
    free(R->sigs);
    free(R->args);
    free(R->cons);
    free(R->ready);
    free(R->executed);
    free_stop(&R->stop);
    if (R->parallel)
        pthread_mutex_destroy(&R->ev_mu);
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
    eng_run_t R = {.e = e, .job = job, .g = g, .r = r, .id = job->prompt_id ? job->prompt_id : ""};
    atomic_init(&R.interrupt, false);
    eng_lane_t lane = {.index = -1};
    bool registered = false;
    if (e->pool) {
        if (pthread_mutex_init(&R.ev_mu, NULL) != 0) {
            set_error(r, BASE_E_NOMEM, NULL, NULL);
            return r->status;
        }
        R.parallel = true;
    }
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
    r->timings = calloc(R.n_order + 1, sizeof *r->timings);
    if (!r->timings || eng__lane_reserve(&lane, R.max_in + 1, R.max_out + 1)) {
        rc = BASE_E_NOMEM;
        set_error(r, rc, NULL, NULL);
        goto out;
    }

    if ((rc = begin(e, &R))) {
        set_error(r, rc, NULL, NULL);
        goto out;
    }
    registered = true;
    emit(&R, "execution_start", eng__ev_lifecycle(job->prompt_id), true);

    if ((rc = compute_signatures(&R))) {
        set_error(r, rc, NULL, "cannot compute cache signatures");
        goto ended;
    }
    take_cached(&R);
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
    if (e->mt)
        pthread_mutex_lock(&e->cache_mu);
    (void)eng__cache_reserve(&e->cache, R.n_needed);
    if (e->mt)
        pthread_mutex_unlock(&e->cache_mu);
    if (R.parallel)
        eng__pool_run(e->pool, &R);
    else
        run_serial(&R, &lane);
    check_complete(&R);
    if (R.stop.set) {
        rc = R.stop.rc;
        report_stop(&R);
    } else {
        emit(&R, "execution_success", eng__ev_lifecycle(job->prompt_id), true);
    }

ended:
    collect_outputs(&R);
    unpin_all(&R);
out:
    if (registered)
        end(e, &R);
    eng__lane_release(&lane);
    free(outs);
    free(stack);
    free_run(&R);
    r->status = rc;
    r->total_ms = mono_ms() - t_start;
    return rc;
}
