/* What a node's execute() uses to read its inputs, report progress and fail. Accessors are
 * forgiving (0/""/NULL) because validation has already enforced the types; a mismatch here
 * is a bug in a node table, not bad user input. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nodes.h"

int node_fail(node_ctx_t *ctx, const char *fmt, ...)
{
    if (!ctx)
        return BASE_E_NODE_FAILED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt ? fmt : "node failed", ap);
    va_end(ap);
    return BASE_E_NODE_FAILED;
}

int node_fail_ts(node_ctx_t *ctx, const char *what)
{
    const char *msg = ts_last_error();
    if (!what)
        what = "tensor operation";
    if (msg && *msg)
        return node_fail(ctx, "%s: %s", what, msg);
    return node_fail(ctx, "%s failed", what);
}

bool node_interrupted(const node_ctx_t *ctx)
{
    return ctx && ctx->interrupt && atomic_load_explicit(ctx->interrupt, memory_order_relaxed);
}

int node_progress(node_ctx_t *ctx, uint64_t value, uint64_t max)
{
    if (!ctx)
        return 0;
    if (ctx->progress_cb)
        ctx->progress_cb(ctx->engine, ctx->node_id, value, max);
    return node_interrupted(ctx) ? BASE_E_INTERRUPTED : 0;
}

bool node_preview_wanted(const node_ctx_t *ctx)
{
    return ctx && ctx->preview_cb;
}

void node_preview_png(node_ctx_t *ctx, const void *png, size_t len)
{
    if (ctx && ctx->preview_cb && png && len)
        ctx->preview_cb(ctx->engine, ctx->node_id, png, len);
}

node_value_t *node_in(const node_ctx_t *ctx, const char *name)
{
    if (!ctx || !ctx->in)
        return NULL;
    int i = node_def_input_index(ctx->def, name);
    return i < 0 ? NULL : ctx->in[i];
}

int64_t node_in_i64(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    if (!v || v->kind != NODE_V_INT)
        return 0;
    int64_t r;
    if (!base_int_to_i64(v->u.i, &r))
        r = v->u.i.neg ? INT64_MIN : INT64_MAX; /* saturate: only seeds exceed int64 */
    return r;
}

uint64_t node_in_u64(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    return v && v->kind == NODE_V_INT ? v->u.i.mag : 0;
}

double node_in_f64(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    if (!v)
        return 0.0;
    if (v->kind == NODE_V_FLOAT)
        return v->u.f;
    if (v->kind == NODE_V_INT)
        return base_int_to_double(v->u.i);
    return 0.0;
}

bool node_in_bool(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    return v && v->kind == NODE_V_BOOL && v->u.b;
}

const char *node_in_str(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    return v && v->kind == NODE_V_STRING && v->u.str.s ? v->u.str.s : "";
}

ts_tensor_t *node_in_tensor(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    return v && v->kind == NODE_V_TENSOR ? v->u.t : NULL;
}

void node_set_out(node_ctx_t *ctx, size_t i, node_value_t *v)
{
    if (!ctx || !ctx->out || !ctx->def || i >= ctx->def->n_outputs) {
        node_value_unref(v); /* the reference was handed over; never leak it */
        return;
    }
    node_value_unref(ctx->out[i]);
    ctx->out[i] = v;
}

const json_t *node_args_get(const node_args_t *a, const char *name)
{
    if (!a || !a->values)
        return NULL;
    int i = node_def_input_index(a->def, name);
    return i < 0 ? NULL : a->values[i];
}
