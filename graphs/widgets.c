/* widgets_values -> API inputs for one UI node. The editor saves widget values by
 * position, in the order it created the widgets from /object_info: required inputs, then
 * the image-upload button, then optional inputs, each widget-capable input followed by its
 * control_after_generate combo when it has one. Those frontend-only values are skipped. */
#include <string.h>

#include "graphs-internal.h"

static bool is_widget(const node_input_t *in)
{
    if (in->section == NODE_HIDDEN || !in->name || !in->type || (in->flags & NODE_IN_FORCE_INPUT))
        return false;
    static const char *const types[] = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(in->type, types[i]))
            return true;
    return false;
}

static bool is_control_value(const json_t *v)
{
    static const char *const words[] = {"fixed", "increment", "decrement", "randomize"};
    const char *s = json_str(v);
    for (size_t i = 0; s && i < sizeof words / sizeof words[0]; i++)
        if (!strcmp(s, words[i]))
            return true;
    return false;
}

/* Arrays would read as links in the API format, so the editor wraps them. */
json_t *graph__ui_wrap(const json_t *v)
{
    json_t *c = json_clone(v);
    if (!c || c->type != JSON_ARRAY)
        return c;
    json_t *o = json_new_object();
    if (!o || json_object_set(o, "__value__", c)) {
        if (!o)
            json_free(c);
        json_free(o);
        return NULL;
    }
    return o;
}

/* The value a fresh widget shows: what the editor saves when a position is missing. 0 with
 * *out NULL when there is none (a combo without options). */
static int default_value(const node_input_t *in, const node_env_t *env, json_t **out)
{
    *out = NULL;
    if (!strcmp(in->type, "INT"))
        *out = json_new_bint(in->idef);
    else if (!strcmp(in->type, "FLOAT"))
        *out = json_new_real(in->fdef);
    else if (!strcmp(in->type, "STRING"))
        *out = json_new_string(in->sdef ? in->sdef : "");
    else if (!strcmp(in->type, "BOOLEAN"))
        *out = json_new_bool(in->bdef);
    else if (in->cdef)
        *out = json_new_string(in->cdef);
    else {
        node_strlist_t l;
        int rc = node_input_options(in, env, &l);
        if (rc == BASE_E_NOMEM)
            return rc;
        if (rc || !l.n)
            return 0;
        *out = json_new_string(l.items[0]);
        node_strlist_free(&l);
    }
    return *out ? 0 : BASE_E_NOMEM;
}

static int put_value(json_t *inputs, const char *name, const json_t *v)
{
    json_t *w = graph__ui_wrap(v);
    if (!w || json_object_set(inputs, name, w))
        return BASE_E_NOMEM;
    return 0;
}

static int put_default(json_t *inputs, const node_input_t *in, const node_env_t *env)
{
    json_t *d;
    int rc = default_value(in, env, &d);
    if (rc || !d)
        return rc;
    return json_object_set(inputs, in->name, d) ? BASE_E_NOMEM : 0;
}

/* A node type weft does not know: map values onto the widget inputs the node lists. */
static int unknown_widgets(const json_t *node, json_t *inputs)
{
    const json_t *wv = json_object_get(node, "widgets_values");
    if (wv && wv->type == JSON_OBJECT) {
        for (size_t i = 0; i < json_len(wv); i++)
            if (put_value(inputs, json_key_at(wv, i), json_at(wv, i)))
                return BASE_E_NOMEM;
        return 0;
    }
    const json_t *ins = json_object_get(node, "inputs");
    size_t pos = 0;
    for (size_t i = 0; i < json_len(ins) && pos < json_len(wv); i++) {
        const json_t *in = json_at(ins, i);
        const char *wname = json_str(json_object_get(json_object_get(in, "widget"), "name"));
        if (!wname)
            continue;
        if (put_value(inputs, wname, json_at(wv, pos++)))
            return BASE_E_NOMEM;
    }
    return 0;
}

int graph__ui_widgets(const json_t *node, const node_def_t *def, const node_env_t *env, json_t *inputs)
{
    if (!def)
        return unknown_widgets(node, inputs);
    const json_t *wv = json_object_get(node, "widgets_values");
    bool by_name = wv && wv->type == JSON_OBJECT;
    size_t n = wv && wv->type == JSON_ARRAY ? json_len(wv) : 0, pos = 0;
    bool upload = false;
    for (int sec = NODE_REQUIRED; sec <= NODE_OPTIONAL; sec++) {
        for (size_t d = 0; d < def->n_inputs; d++) {
            const node_input_t *in = &def->inputs[d];
            if ((int)in->section != sec || !is_widget(in))
                continue;
            upload = upload || (in->flags & NODE_IN_IMAGE_UPLOAD);
            const json_t *v = by_name ? json_object_get(wv, in->name) : pos < n ? json_at(wv, pos++) : NULL;
            int rc = v ? put_value(inputs, in->name, v) : put_default(inputs, in, env);
            if (rc)
                return rc;
            if (!by_name && (in->flags & NODE_IN_CONTROL_AFTER_GENERATE) && pos < n &&
                is_control_value(json_at(wv, pos)))
                pos++;
        }
        /* The upload button's value ("image") sits after the required widgets. */
        if (sec == NODE_REQUIRED && upload && !by_name && pos < n) {
            const char *s = json_str(json_at(wv, pos));
            if (s && !strcmp(s, "image"))
                pos++;
        }
    }
    return 0;
}
