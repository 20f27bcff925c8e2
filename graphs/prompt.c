/* Graph -> API prompt. History and PNG "prompt" chunks store the prompt after validation
 * coerced its constants, so it is rebuilt from the graph rather than kept from the request. */
#include <inttypes.h>

#include "graphs-internal.h"

static json_t *input_value(const graph_input_t *in)
{
    if (!in->is_link)
        return in->value ? json_clone(in->value) : json_new_null();
    json_t *l = json_new_array();
    if (!l || json_array_push(l, json_new_string(in->src_id)) ||
        json_array_push(l, json_new_int(in->src_slot))) {
        json_free(l);
        return NULL;
    }
    return l;
}

static json_t *node_json(const graph_node_t *nd)
{
    json_t *o = json_new_object(), *inputs = json_new_object();
    if (!o || !inputs)
        goto fail;
    for (size_t k = 0; k < nd->n_inputs; k++)
        if (!graph__append(inputs, nd->inputs[k].name, input_value(&nd->inputs[k])))
            goto fail;
    if (!graph__put(o, "inputs", inputs)) {
        inputs = NULL;
        goto fail;
    }
    inputs = NULL;
    if (nd->class_type && !graph__put_str(o, "class_type", nd->class_type))
        goto fail;
    if (nd->title) {
        json_t *meta = json_new_object();
        if (!meta || !graph__put_str(meta, "title", nd->title)) {
            json_free(meta);
            goto fail;
        }
        if (!graph__put(o, "_meta", meta))
            goto fail;
    }
    return o;
fail:
    json_free(inputs);
    json_free(o);
    return NULL;
}

json_t *graph__to_prompt(const graph_t *g)
{
    json_t *p = json_new_object();
    for (size_t i = 0; p && i < g->n; i++)
        if (!graph__append(p, g->nodes[i].id, node_json(&g->nodes[i]))) {
            json_free(p);
            return NULL;
        }
    return p;
}
