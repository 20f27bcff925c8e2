/* /object_info: node definitions rendered in exactly ComfyUI's V1 shape, because the stock
 * editor builds its widgets from it. Key order follows what ComfyUI's nodes.py produces
 * (default, min, max, step, round, flags, tooltip), so a byte diff against a real server
 * stays small. */
#include <string.h>

#include "nodes.h"

/* Adds key → value (taking value) and reports OOM through *ok, so the builders below read
 * as a flat list of fields instead of a ladder of error checks. */
static void put(json_t *obj, const char *key, json_t *value, bool *ok)
{
    if (!*ok) {
        json_free(value);
        return;
    }
    if (!value || json_object_set(obj, key, value) != 0)
        *ok = false;
}

static void push(json_t *arr, json_t *value, bool *ok)
{
    if (!*ok) {
        json_free(value);
        return;
    }
    if (!value || json_array_push(arr, value) != 0)
        *ok = false;
}

static bool is_type(const node_input_t *in, const char *t)
{
    return in->type && strcmp(in->type, t) == 0;
}

static json_t *combo_options(const node_input_t *in, const node_env_t *env)
{
    node_strlist_t opts;
    int rc = node_input_options(in, env, &opts);
    if (rc == BASE_E_NOMEM)
        return NULL;
    if (rc) {
        /* A missing models folder must not take /object_info down: show no choices. */
        BASE_LOG(WARN, "options of input %s: %s", in->name, base_strerror(rc));
        opts.items = NULL;
        opts.n = 0;
    }
    json_t *arr = json_new_array();
    bool ok = arr != NULL;
    for (size_t i = 0; i < opts.n && ok; i++)
        push(arr, json_new_string(opts.items[i]), &ok);
    node_strlist_free(&opts);
    if (!ok) {
        json_free(arr);
        return NULL;
    }
    return arr;
}

/* The options object of one input; *ok false on OOM. */
static json_t *input_options(const node_input_t *in, bool *ok)
{
    json_t *o = json_new_object();
    if (!o) {
        *ok = false;
        return NULL;
    }
    if (is_type(in, "INT")) {
        put(o, "default", json_new_bint(in->idef), ok);
        if (in->flags & NODE_IN_HAS_MIN)
            put(o, "min", json_new_bint(in->imin), ok);
        if (in->flags & NODE_IN_HAS_MAX)
            put(o, "max", json_new_bint(in->imax), ok);
        if (in->istep)
            put(o, "step", json_new_int(in->istep), ok);
    } else if (is_type(in, "FLOAT")) {
        put(o, "default", json_new_real(in->fdef), ok);
        if (in->flags & NODE_IN_HAS_MIN)
            put(o, "min", json_new_real(in->fmin), ok);
        if (in->flags & NODE_IN_HAS_MAX)
            put(o, "max", json_new_real(in->fmax), ok);
        if (in->fstep > 0)
            put(o, "step", json_new_real(in->fstep), ok);
        if (in->flags & NODE_IN_ROUND_FALSE)
            put(o, "round", json_new_bool(false), ok);
        else if (in->fround > 0)
            put(o, "round", json_new_real(in->fround), ok);
    } else if (is_type(in, "STRING")) {
        if (in->sdef)
            put(o, "default", json_new_string(in->sdef), ok);
    } else if (is_type(in, "BOOLEAN")) {
        put(o, "default", json_new_bool(in->bdef), ok);
    } else if (is_type(in, "COMBO")) {
        if (in->cdef)
            put(o, "default", json_new_string(in->cdef), ok);
    }
    static const struct {
        unsigned flag;
        const char *key;
    } flags[] = {
        {NODE_IN_CONTROL_AFTER_GENERATE, "control_after_generate"},
        {NODE_IN_MULTILINE, "multiline"},
        {NODE_IN_DYNAMIC_PROMPTS, "dynamicPrompts"},
        {NODE_IN_IMAGE_UPLOAD, "image_upload"},
        {NODE_IN_FORCE_INPUT, "forceInput"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (in->flags & flags[i].flag)
            put(o, flags[i].key, json_new_bool(true), ok);
    if (in->tooltip)
        put(o, "tooltip", json_new_string(in->tooltip), ok);
    return o;
}

/* [type, options?]: the options object is left out when empty, as ("IMAGE",) gives. */
static json_t *input_spec(const node_input_t *in, const node_env_t *env)
{
    json_t *spec = json_new_array();
    if (!spec)
        return NULL;
    bool ok = true;
    if (is_type(in, "COMBO"))
        push(spec, combo_options(in, env), &ok);
    else
        push(spec, json_new_string(in->type ? in->type : "*"), &ok);
    json_t *o = input_options(in, &ok);
    if (o && json_len(o) == 0) {
        json_free(o);
        o = NULL;
    }
    if (o)
        push(spec, o, &ok);
    if (!ok) {
        json_free(spec);
        return NULL;
    }
    return spec;
}

static json_t *outputs_json(const node_def_t *def, int field, bool *ok)
{
    json_t *arr = json_new_array();
    if (!arr) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < def->n_outputs && *ok; i++) {
        const node_output_t *o = &def->outputs[i];
        const char *type = o->type ? o->type : "*";
        switch (field) {
        case 0:
            push(arr, json_new_string(type), ok);
            break;
        case 1:
            push(arr, json_new_bool(o->is_list), ok);
            break;
        case 2:
            push(arr, json_new_string(o->name ? o->name : type), ok);
            break;
        default:
            push(arr, json_new_string(o->tooltip ? o->tooltip : ""), ok);
            break;
        }
    }
    return arr;
}

json_t *node_def_to_json(const node_def_t *def, const node_env_t *env)
{
    if (!def || !def->name)
        return NULL;
    static const char *const section_names[] = {"required", "optional", "hidden"};
    json_t *info = json_new_object();
    json_t *input = json_new_object();
    json_t *order = json_new_object();
    json_t *sec[3] = {NULL, NULL, NULL}, *sec_order[3] = {NULL, NULL, NULL};
    bool ok = info && input && order;

    for (int s = 0; s < 3 && ok; s++) {
        bool any = s == NODE_REQUIRED; /* "required" is always present, as in INPUT_TYPES */
        for (size_t i = 0; i < def->n_inputs && !any; i++)
            any = def->inputs[i].section == (node_section_t)s;
        if (!any)
            continue;
        sec[s] = json_new_object();
        sec_order[s] = json_new_array();
        put(input, section_names[s], sec[s], &ok);
        put(order, section_names[s], sec_order[s], &ok);
    }
    for (size_t i = 0; i < def->n_inputs && ok; i++) {
        const node_input_t *in = &def->inputs[i];
        unsigned s = (unsigned)in->section;
        if (s > NODE_HIDDEN || !in->name)
            continue;
        json_t *spec = s == NODE_HIDDEN ? json_new_string(in->type ? in->type : "")
                                        : input_spec(in, env);
        put(sec[s], in->name, spec, &ok);
        push(sec_order[s], json_new_string(in->name), &ok);
    }
    put(info, "input", input, &ok); /* both are owned by info (or freed) from here on */
    put(info, "input_order", order, &ok);
    put(info, "output", outputs_json(def, 0, &ok), &ok);
    put(info, "output_is_list", outputs_json(def, 1, &ok), &ok);
    put(info, "output_name", outputs_json(def, 2, &ok), &ok);
    put(info, "name", json_new_string(def->name), &ok);
    put(info, "display_name", json_new_string(def->display_name ? def->display_name : def->name),
        &ok);
    put(info, "description", json_new_string(def->description ? def->description : ""), &ok);
    put(info, "python_module",
        json_new_string(def->python_module ? def->python_module : "nodes"), &ok);
    put(info, "category", json_new_string(def->category ? def->category : "sd"), &ok);
    put(info, "output_node", json_new_bool((def->flags & NODE_OUTPUT_NODE) != 0), &ok);
    bool tooltips = false;
    for (size_t i = 0; i < def->n_outputs; i++)
        tooltips = tooltips || def->outputs[i].tooltip;
    if (tooltips)
        put(info, "output_tooltips", outputs_json(def, 3, &ok), &ok);
    if (def->flags & NODE_DEPRECATED)
        put(info, "deprecated", json_new_bool(true), &ok);
    if (def->flags & NODE_EXPERIMENTAL)
        put(info, "experimental", json_new_bool(true), &ok);

    if (!ok) {
        json_free(info);
        return NULL;
    }
    return info;
}

json_t *node_registry_object_info(const node_registry_t *r, const node_env_t *env)
{
    json_t *all = json_new_object();
    if (!all)
        return NULL;
    size_t n = node_registry_count(r);
    for (size_t i = 0; i < n; i++) {
        const node_def_t *def = node_registry_at(r, i);
        json_t *one = node_def_to_json(def, env);
        if (!one || json_object_set(all, def->name, one) != 0) {
            json_free(all);
            return NULL;
        }
    }
    return all;
}
