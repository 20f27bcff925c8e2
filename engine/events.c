/* ComfyUI's execution event payloads (comfyui-api.md 3.3), field order included, because
 * clients and the history entry show them verbatim. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine-internal.h"

int64_t eng__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sets key unless an earlier step failed; v is consumed either way. */
static void put(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (!*ok || !v) {
        json_free(v);
        *ok = false;
        return;
    }
    if (json_object_set(o, key, v))
        *ok = false;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_new_string(s) : json_new_null();
}

static json_t *finish(json_t *o, bool ok)
{
    if (ok)
        return o;
    json_free(o);
    return NULL;
}

json_t *eng__ev_lifecycle(const char *prompt_id)
{
    json_t *o = json_new_object();
    bool ok = o != NULL;
    put(o, "prompt_id", str_or_null(prompt_id), &ok);
    put(o, "timestamp", json_new_int(eng__now_ms()), &ok);
    return finish(o, ok);
}

static json_t *id_array(const graph_t *g, const size_t *ids, size_t n)
{
    json_t *a = json_new_array();
    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (json_array_push(a, json_new_string(g->nodes[ids[i]].id))) {
            json_free(a);
            return NULL;
        }
    }
    return a;
}

json_t *eng__ev_cached(const graph_t *g, const size_t *ids, size_t n, const char *prompt_id)
{
    json_t *o = json_new_object();
    bool ok = o != NULL;
    put(o, "nodes", id_array(g, ids, n), &ok);
    put(o, "prompt_id", str_or_null(prompt_id), &ok);
    put(o, "timestamp", json_new_int(eng__now_ms()), &ok);
    return finish(o, ok);
}

json_t *eng__ev_executing(const char *node_id, const char *prompt_id)
{
    json_t *o = json_new_object();
    bool ok = o != NULL;
    put(o, "node", str_or_null(node_id), &ok);
    put(o, "display_node", str_or_null(node_id), &ok);
    put(o, "prompt_id", str_or_null(prompt_id), &ok);
    return finish(o, ok);
}

json_t *eng__ev_progress(uint64_t value, uint64_t max, const char *prompt_id,
                         const char *node_id)
{
    json_t *o = json_new_object();
    bool ok = o != NULL;
    put(o, "value", json_new_uint(value), &ok);
    put(o, "max", json_new_uint(max), &ok);
    put(o, "prompt_id", str_or_null(prompt_id), &ok);
    put(o, "node", str_or_null(node_id), &ok);
    return finish(o, ok);
}

json_t *eng__ev_executed(const char *node_id, const json_t *ui, const char *prompt_id)
{
    json_t *o = json_new_object();
    bool ok = o != NULL;
    put(o, "node", str_or_null(node_id), &ok);
    put(o, "display_node", str_or_null(node_id), &ok);
    put(o, "output", ui ? json_clone(ui) : json_new_null(), &ok);
    put(o, "prompt_id", str_or_null(prompt_id), &ok);
    return finish(o, ok);
}

/* Python's format_value: primitives as themselves, everything else as its str(). */
static json_t *render_value(const node_value_t *v)
{
    switch (v->kind) {
    case NODE_V_NONE:
        return json_new_null();
    case NODE_V_INT:
        return json_new_bint(v->u.i);
    case NODE_V_FLOAT:
        return json_new_real(v->u.f);
    case NODE_V_BOOL:
        return json_new_bool(v->u.b);
    case NODE_V_STRING:
        return json_new_stringn(v->u.str.s, v->u.str.len);
    default: {
        char *s = node_value_describe(v);
        json_t *j = s ? json_new_string(s) : NULL;
        free(s);
        return j;
    }
    }
}

/* The constant JSON of input k of node, NULL when the input is linked or absent. */
static const json_t *constant_of(const graph_node_t *node, const char *name)
{
    for (size_t i = 0; i < node->n_inputs; i++)
        if (!node->inputs[i].is_link && strcmp(node->inputs[i].name, name) == 0)
            return node->inputs[i].value;
    return NULL;
}

/* {name: [value]}: one element per call, and weft calls a node once. */
static json_t *current_inputs(const graph_node_t *node, node_value_t *const *in)
{
    json_t *o = json_new_object();
    if (!o || !in || !node->def)
        return o;
    bool ok = true;
    const node_def_t *def = node->def;
    for (size_t k = 0; k < def->n_inputs && ok; k++) {
        if (!in[k])
            continue;
        const json_t *c = constant_of(node, def->inputs[k].name);
        json_t *item = c ? json_clone(c) : render_value(in[k]);
        json_t *list = json_new_array();
        if (!item || !list || json_array_push(list, item)) {
            if (!list)
                json_free(item);
            json_free(list);
            ok = false;
            break;
        }
        put(o, def->inputs[k].name, list, &ok);
    }
    return finish(o, ok);
}

static json_t *all_ids(const graph_t *g)
{
    json_t *a = json_new_array();
    if (!a)
        return NULL;
    for (size_t i = 0; i < g->n; i++) {
        if (json_array_push(a, json_new_string(g->nodes[i].id))) {
            json_free(a);
            return NULL;
        }
    }
    return a;
}

json_t *eng__ev_error(const eng_stop_info_t *s)
{
    const graph_node_t *node = &s->g->nodes[s->node];
    json_t *o = json_new_object();
    bool ok = o != NULL;
    put(o, "prompt_id", str_or_null(s->prompt_id), &ok);
    put(o, "node_id", json_new_string(node->id), &ok);
    put(o, "node_type", str_or_null(node->class_type), &ok);
    put(o, "executed", id_array(s->g, s->executed, s->n_executed), &ok);
    if (ok) {
        /* str(ex) + "\n" + tips, and weft has no tips. */
        base_buf_t b = BASE_BUF_INIT;
        if (base_buf_puts(&b, s->message ? s->message : "") || base_buf_putc(&b, '\n'))
            ok = false;
        char *msg = ok ? base_buf_take(&b) : NULL;
        base_buf_free(&b);
        put(o, "exception_message", msg ? json_new_string(msg) : NULL, &ok);
        free(msg);
    }
    put(o, "exception_type", json_new_string(s->type ? s->type : "RuntimeError"), &ok);
    put(o, "traceback", json_new_array(), &ok);
    put(o, "current_inputs", current_inputs(node, s->in), &ok);
    put(o, "current_outputs", all_ids(s->g), &ok);
    put(o, "timestamp", json_new_int(eng__now_ms()), &ok);
    return finish(o, ok);
}

json_t *eng__ev_interrupted(const eng_stop_info_t *s)
{
    const graph_node_t *node = &s->g->nodes[s->node];
    json_t *o = json_new_object();
    bool ok = o != NULL;
    put(o, "prompt_id", str_or_null(s->prompt_id), &ok);
    put(o, "node_id", json_new_string(node->id), &ok);
    put(o, "node_type", str_or_null(node->class_type), &ok);
    put(o, "executed", id_array(s->g, s->executed, s->n_executed), &ok);
    put(o, "timestamp", json_new_int(eng__now_ms()), &ok);
    return finish(o, ok);
}
