/* The checks ComfyUI's validate_inputs makes on one node, with its exact error objects
 * (comfyui-api.md 5.1). Whether the node's sources are valid is decided by the walk in
 * validate.c; here we only record which sources to visit. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphs-internal.h"

typedef struct {
    graph__vctx_t *c;
    size_t i;
    graph_node_t *nd;
    json_t *errors;       /* this node's error list */
    int rc;               /* sticky BASE_E_NOMEM */
    const char *exc_type; /* set when a Python exception would have ended the check */
    char exc_msg[512];
} chk_t;

/* ------------------------------------------------------------------ caches */

static json_t *def_info(graph__vctx_t *c, const node_def_t *def)
{
    for (size_t i = 0; i < c->n_defs; i++)
        if (c->defs[i].def == def)
            return c->defs[i].info;
    if (c->n_defs == c->cap_defs) {
        size_t cap = c->cap_defs ? c->cap_defs * 2 : 8;
        graph__def_cache_t *d = realloc(c->defs, cap * sizeof *d);
        if (!d)
            return NULL;
        c->defs = d;
        c->cap_defs = cap;
    }
    json_t *info = node_def_to_json(def, c->env);
    c->defs[c->n_defs].def = def;
    c->defs[c->n_defs++].info = info;
    return info;
}

/* Options of a combo, listed once per run (they may come from a folder listing). */
static int combo_options(graph__vctx_t *c, const node_input_t *in, const node_strlist_t **out)
{
    for (size_t i = 0; i < c->n_opts; i++)
        if (c->opts[i].in == in) {
            *out = &c->opts[i].opts;
            return 0;
        }
    if (c->n_opts == c->cap_opts) {
        size_t cap = c->cap_opts ? c->cap_opts * 2 : 8;
        graph__opt_cache_t *o = realloc(c->opts, cap * sizeof *o);
        if (!o)
            return BASE_E_NOMEM;
        c->opts = o;
        c->cap_opts = cap;
    }
    node_strlist_t l = {NULL, 0};
    int rc = node_input_options(in, c->env, &l);
    if (rc == BASE_E_NOMEM)
        return rc;
    if (rc) { /* an unreadable folder offers no choices, as /object_info shows it */
        l.items = NULL;
        l.n = 0;
    }
    c->opts[c->n_opts].in = in;
    c->opts[c->n_opts].opts = l;
    *out = &c->opts[c->n_opts++].opts;
    return 0;
}

void graph__vctx_free_caches(graph__vctx_t *c)
{
    for (size_t i = 0; i < c->n_defs; i++)
        json_free(c->defs[i].info);
    free(c->defs);
    for (size_t i = 0; i < c->n_opts; i++)
        node_strlist_free(&c->opts[i].opts);
    free(c->opts);
    c->defs = NULL;
    c->opts = NULL;
    c->n_defs = c->cap_defs = c->n_opts = c->cap_opts = 0;
}

static bool is_type(const node_input_t *in, const char *t)
{
    return in->type && !strcmp(in->type, t);
}

static json_t *strlist_json(const node_strlist_t *l)
{
    json_t *a = json_new_array();
    for (size_t i = 0; a && i < l->n; i++)
        if (json_array_push(a, json_new_string(l->items[i]))) {
            json_free(a);
            return NULL;
        }
    return a;
}

/* ComfyUI's input_config: the (type, options) pair of INPUT_TYPES, i.e. the input's
 * /object_info entry, always with its options object. */
static json_t *input_config(graph__vctx_t *c, const node_def_t *def, const node_input_t *in)
{
    static const char *const sections[] = {"required", "optional", "hidden"};
    const char *sec = (unsigned)in->section <= NODE_HIDDEN ? sections[in->section] : "required";
    json_t *info = def_info(c, def);
    const json_t *spec = json_object_get(json_object_get(json_object_get(info, "input"), sec), in->name);
    json_t *cfg = spec && spec->type == JSON_ARRAY ? json_clone(spec) : NULL;
    if (!cfg) { /* no /object_info entry to copy: build the bare pair */
        const node_strlist_t *opts = NULL;
        cfg = json_new_array();
        if (!cfg)
            return NULL;
        json_t *t;
        if (is_type(in, "COMBO"))
            t = combo_options(c, in, &opts) ? NULL : strlist_json(opts);
        else
            t = json_new_string(in->type ? in->type : "*");
        if (json_array_push(cfg, t)) {
            json_free(cfg);
            return NULL;
        }
    }
    if (json_len(cfg) < 2 && json_array_push(cfg, json_new_object())) {
        json_free(cfg);
        return NULL;
    }
    return cfg;
}

/* ------------------------------------------------------------------ helpers */

static graph_input_t *find_input(graph_node_t *nd, const char *name)
{
    for (size_t k = 0; k < nd->n_inputs; k++)
        if (!strcmp(nd->inputs[k].name, name))
            return &nd->inputs[k];
    return NULL;
}

static const node_input_t *find_def_input(const node_def_t *def, const char *name)
{
    int at = def ? node_def_input_index(def, name) : -1;
    return at >= 0 ? &def->inputs[at] : NULL;
}

static bool custom_checked(const node_def_t *def, const char *name)
{
    if (!def->validate || !def->validate_inputs)
        return false;
    for (const char *const *v = def->validate_inputs; *v; v++)
        if (!strcmp(*v, name))
            return true;
    return false;
}

/* The value ComfyUI holds for an input: the constant, or the [id, slot] list of a link. */
static json_t *raw_value(const graph_input_t *gi)
{
    if (!gi->is_link)
        return gi->value ? json_clone(gi->value) : json_new_null();
    json_t *l = json_new_array();
    if (!l || json_array_push(l, json_new_string(gi->src_id)) ||
        json_array_push(l, json_new_int(gi->src_slot))) {
        json_free(l);
        return NULL;
    }
    return l;
}

static void add_error(chk_t *k, json_t *err)
{
    if (!err || json_array_push(k->errors, err))
        k->rc = BASE_E_NOMEM;
}

/* extra_info {"input_name", "input_config", <key>: <value>} as most errors carry it. */
static json_t *extra3(chk_t *k, const node_input_t *in, const char *key, json_t *value)
{
    json_t *e = json_new_object();
    if (!e || !graph__put_str(e, "input_name", in->name) ||
        !graph__put(e, "input_config", input_config(k->c, k->nd->def, in))) {
        json_free(e);
        json_free(value);
        return NULL;
    }
    if (!graph__put(e, key, value)) {
        json_free(e);
        return NULL;
    }
    return e;
}

static char *py_str_dup(const json_t *v)
{
    base_buf_t b = BASE_BUF_INIT;
    if (graph__py_str(&b, v)) {
        base_buf_free(&b);
        return NULL;
    }
    return base_buf_take(&b);
}

static int throw_exc(chk_t *k, const char *type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int throw_exc(chk_t *k, const char *type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->exc_msg, sizeof k->exc_msg, fmt, ap);
    va_end(ap);
    k->exc_type = type;
    return 1;
}

/* ------------------------------------------------------------------ links */

/* 0: checked (maybe with an error), 1: an exception ends the node's check. */
static int check_link(chk_t *k, const node_input_t *in, graph_input_t *gi)
{
    graph_t *g = k->c->g;
    const char *id = k->nd->id;
    if (!gi->is_link) {
        /* A two-element list that is not [string, integer]: Python fails to look it up. */
        const json_t *first = json_at(gi->value, 0);
        char *txt = NULL;
        base_buf_t b = BASE_BUF_INIT;
        if (graph__py_repr(&b, gi->value) == 0)
            txt = base_buf_take(&b);
        base_buf_free(&b);
        int r = throw_exc(k, first && first->type != JSON_STRING ? "KeyError" : "TypeError",
                          "Input '%s' of node '%s' has a malformed link %s: a link must be "
                          "[node_id (string), output_index (integer)]",
                          gi->name, id, txt ? txt : "");
        free(txt);
        return r;
    }
    if (gi->src < 0 || (size_t)gi->src >= g->n)
        return throw_exc(k, "KeyError",
                         "Input '%s' of node '%s' is linked to node '%s', which does not exist", gi->name, id,
                         gi->src_id);
    const graph_node_t *src = &g->nodes[gi->src];
    const node_def_t *sdef = src->def;
    size_t nout = sdef ? sdef->n_outputs : 0;
    if (gi->src_slot < 0 || (uint64_t)gi->src_slot >= nout) {
        if (!nout)
            return throw_exc(
                k, "IndexError",
                "Input '%s' of node '%s' is linked to output %lld of node '%s' (%s), which has no outputs",
                gi->name, id, (long long)gi->src_slot, src->id, src->class_type ? src->class_type : "?");
        return throw_exc(
            k, "IndexError",
            "Input '%s' of node '%s' is linked to output %lld of node '%s' (%s), which has only %zu output%s",
            gi->name, id, (long long)gi->src_slot, src->id, src->class_type ? src->class_type : "?", nout,
            nout == 1 ? "" : "s");
    }
    const char *received = sdef->outputs[gi->src_slot].type ? sdef->outputs[gi->src_slot].type : "*";
    if (in) {
        bool ok = is_type(in, "COMBO") ? !strcmp(received, "*")
                                       : node_types_compatible(received, in->type ? in->type : "*");
        if (!ok) {
            base_buf_t d = BASE_BUF_INIT;
            int rc = base_buf_printf(&d, "%s, received_type(%s) mismatch input_type(", in->name, received);
            if (!rc && is_type(in, "COMBO")) {
                const node_strlist_t *opts;
                rc = combo_options(k->c, in, &opts);
                json_t *arr = rc ? NULL : strlist_json(opts);
                rc = arr ? graph__py_repr(&d, arr) : BASE_E_NOMEM;
                json_free(arr);
            } else if (!rc) {
                rc = base_buf_puts(&d, in->type ? in->type : "*");
            }
            if (!rc)
                rc = base_buf_putc(&d, ')');
            json_t *extra = NULL;
            if (!rc) {
                extra = extra3(k, in, "received_type", json_new_string(received));
                if (!extra || !graph__put(extra, "linked_node", raw_value(gi))) {
                    json_free(extra);
                    extra = NULL;
                }
            }
            add_error(k, extra ? graph__error("return_type_mismatch",
                                              "Return type mismatch between linked nodes", d.data, extra)
                               : NULL);
            base_buf_free(&d);
            return 0;
        }
    }
    graph__vctx_t *c = k->c;
    if (c->n_edges == c->cap_edges) {
        size_t cap = c->cap_edges ? c->cap_edges * 2 : 64;
        graph__edge_t *e = realloc(c->edges, cap * sizeof *e);
        if (!e) {
            k->rc = BASE_E_NOMEM;
            return 0;
        }
        c->edges = e;
        c->cap_edges = cap;
    }
    c->edges[c->n_edges].src = (size_t)gi->src;
    c->edges[c->n_edges++].input = (size_t)(gi - k->nd->inputs);
    c->edge_count[k->i]++;
    return 0;
}

/* ------------------------------------------------------------------ constants */

static void error_number(chk_t *k, const node_input_t *in, const json_t *val, bool smaller)
{
    base_buf_t m = BASE_BUF_INIT;
    int rc = base_buf_puts(&m, "Value ");
    if (!rc)
        rc = graph__py_repr(&m, val);
    if (!rc)
        rc = base_buf_puts(&m, smaller ? " smaller than min of " : " bigger than max of ");
    if (!rc) {
        if (is_type(in, "INT")) {
            base_int_t lim = smaller ? in->imin : in->imax;
            rc = base_buf_printf(&m, "%s%llu", lim.neg && lim.mag ? "-" : "", (unsigned long long)lim.mag);
        } else {
            rc = graph__py_float(&m, smaller ? in->fmin : in->fmax);
        }
    }
    json_t *extra = rc ? NULL : extra3(k, in, "received_value", json_clone(val));
    add_error(k, extra ? graph__error(smaller ? "value_smaller_than_min" : "value_bigger_than_max", m.data,
                                      in->name, extra)
                       : NULL);
    base_buf_free(&m);
}

static void check_combo(chk_t *k, const node_input_t *in, const json_t *val)
{
    const node_strlist_t *opts;
    if (combo_options(k->c, in, &opts)) {
        k->rc = BASE_E_NOMEM;
        return;
    }
    if (val->type == JSON_STRING)
        for (size_t i = 0; i < opts->n; i++)
            if (strlen(opts->items[i]) == val->u.str.len &&
                !memcmp(opts->items[i], val->u.str.s, val->u.str.len))
                return;
    /* Long lists (model folders) are summarised and their config left out, like ComfyUI. */
    bool long_list = opts->n > 20;
    base_buf_t d = BASE_BUF_INIT;
    int rc = base_buf_printf(&d, "%s: '", in->name);
    if (!rc)
        rc = graph__py_str(&d, val);
    if (!rc)
        rc = base_buf_puts(&d, "' not in ");
    if (!rc && long_list) {
        rc = base_buf_printf(&d, "(list of length %zu)", opts->n);
    } else if (!rc) {
        json_t *arr = strlist_json(opts);
        rc = arr ? graph__py_repr(&d, arr) : BASE_E_NOMEM;
        json_free(arr);
    }
    json_t *extra = NULL;
    if (!rc && (extra = json_new_object())) {
        if (!graph__put_str(extra, "input_name", in->name) ||
            !graph__put(extra, "input_config",
                        long_list ? json_new_null() : input_config(k->c, k->nd->def, in)) ||
            !graph__put(extra, "received_value", json_clone(val))) {
            json_free(extra);
            extra = NULL;
        }
    }
    add_error(k, extra ? graph__error("value_not_in_list", "Value not in list", d.data, extra) : NULL);
    base_buf_free(&d);
}

static void check_constant(chk_t *k, const node_input_t *in, graph_input_t *gi)
{
    /* {"__value__": v} carries list-valued widgets; the unwrapped value replaces it. */
    const json_t *wrapped = gi->value->type == JSON_OBJECT ? json_object_get(gi->value, "__value__") : NULL;
    if (wrapped) {
        json_t *inner = json_clone(wrapped);
        if (!inner) {
            k->rc = BASE_E_NOMEM;
            return;
        }
        json_free(gi->value);
        gi->value = inner;
    }
    json_t *out = NULL;
    char msg[512] = "";
    const char *exc_type = NULL;
    int rc = graph__coerce(in->type, gi->value, &out, msg, sizeof msg, &exc_type);
    if (rc < 0) {
        k->rc = rc;
        return;
    }
    if (rc == 1) {
        char *vs = py_str_dup(gi->value);
        base_buf_t m = BASE_BUF_INIT, d = BASE_BUF_INIT;
        json_t *extra = NULL;
        if (vs && !base_buf_printf(&m, "Failed to convert an input value to a %s value", in->type) &&
            !base_buf_printf(&d, "%s, %s, %s", in->name, vs, msg)) {
            extra = extra3(k, in, "received_value", json_clone(gi->value));
            if (extra && !graph__put_str(extra, "exception_message", msg)) {
                json_free(extra);
                extra = NULL;
            }
        }
        add_error(k, extra ? graph__error("invalid_input_type", m.data, d.data, extra) : NULL);
        free(vs);
        base_buf_free(&m);
        base_buf_free(&d);
        return;
    }
    if (out) {
        json_free(gi->value);
        gi->value = out;
    }
    if (custom_checked(k->nd->def, in->name))
        return;
    const json_t *val = gi->value;
    if (is_type(in, "INT") && val->type == JSON_NUMBER && val->u.num.is_int) {
        if ((in->flags & NODE_IN_HAS_MIN) && base_int_cmp(val->u.num.i, in->imin) < 0)
            error_number(k, in, val, true);
        else if ((in->flags & NODE_IN_HAS_MAX) && base_int_cmp(val->u.num.i, in->imax) > 0)
            error_number(k, in, val, false);
    } else if (is_type(in, "FLOAT") && val->type == JSON_NUMBER) {
        double d = val->u.num.d;
        if ((in->flags & NODE_IN_HAS_MIN) && d < in->fmin)
            error_number(k, in, val, true);
        else if ((in->flags & NODE_IN_HAS_MAX) && d > in->fmax)
            error_number(k, in, val, false);
    } else if (is_type(in, "COMBO")) {
        check_combo(k, in, val);
    }
}

/* ------------------------------------------------------------------ custom validation */

static void check_custom(chk_t *k)
{
    const node_def_t *def = k->nd->def;
    if (!def->validate || !def->validate_inputs || !def->validate_inputs[0])
        return; /* ComfyUI only calls VALIDATE_INPUTS when it names inputs */
    const json_t **values = calloc(def->n_inputs ? def->n_inputs : 1, sizeof *values);
    if (!values) {
        k->rc = BASE_E_NOMEM;
        return;
    }
    for (size_t d = 0; d < def->n_inputs; d++) {
        if (def->inputs[d].section == NODE_HIDDEN || !def->inputs[d].name)
            continue;
        graph_input_t *gi = find_input(k->nd, def->inputs[d].name);
        if (gi && !gi->is_link)
            values[d] = gi->value;
    }
    node_args_t args = {.def = def, .values = values};
    char msg[1024] = "";
    int rc = def->validate(k->c->env, &args, msg, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    free(values);
    if (!rc)
        return;
    /* One error per named input the node actually has, in the prompt's order. */
    for (size_t j = 0; j < k->nd->n_inputs && !k->rc; j++) {
        graph_input_t *gi = &k->nd->inputs[j];
        if (!custom_checked(def, gi->name))
            continue;
        const node_input_t *in = find_def_input(def, gi->name);
        base_buf_t d = BASE_BUF_INIT;
        json_t *extra = json_new_object();
        if (base_buf_puts(&d, gi->name) || (msg[0] && base_buf_printf(&d, " - %s", msg)) || !extra ||
            !graph__put_str(extra, "input_name", gi->name) ||
            !graph__put(extra, "input_config", in ? input_config(k->c, def, in) : json_new_null()) ||
            !graph__put(extra, "received_value", raw_value(gi))) {
            json_free(extra);
            extra = NULL;
        }
        add_error(k, extra ? graph__error("custom_validation_failed", "Custom validation failed for node",
                                          d.data, extra)
                           : NULL);
        base_buf_free(&d);
    }
}

/* ------------------------------------------------------------------ one node */

static json_t *exception_error(chk_t *k, size_t from, size_t from_input)
{
    json_t *tb = json_new_array(), *extra = json_new_object();
    if (!tb || !extra)
        goto fail;
    if (from == GRAPH__FROM_OUTPUT) {
        if (!graph__put_str(extra, "exception_type", k->exc_type) || !graph__put(extra, "traceback", tb)) {
            tb = NULL;
            goto fail;
        }
        return graph__error("exception_during_validation", "Exception when validating node", k->exc_msg,
                            extra);
    }
    graph_node_t *cons = &k->c->g->nodes[from];
    graph_input_t *cgi = &cons->inputs[from_input];
    const node_input_t *cin = find_def_input(cons->def, cgi->name);
    if (cin && cin->section == NODE_HIDDEN)
        cin = NULL;
    if (!graph__put_str(extra, "input_name", cgi->name) ||
        !graph__put(extra, "input_config", cin ? input_config(k->c, cons->def, cin) : json_new_null()) ||
        !graph__put_str(extra, "exception_message", k->exc_msg) ||
        !graph__put_str(extra, "exception_type", k->exc_type)) {
        goto fail;
    }
    if (!graph__put(extra, "traceback", tb)) {
        tb = NULL;
        goto fail;
    }
    tb = NULL;
    if (!graph__put(extra, "linked_node", raw_value(cgi)))
        goto fail;
    return graph__error("exception_during_inner_validation", "Exception when validating inner node",
                        k->exc_msg, extra);
fail:
    json_free(tb);
    json_free(extra);
    return NULL;
}

int graph__check_node(graph__vctx_t *c, size_t i, size_t from, size_t from_input)
{
    chk_t k = {.c = c, .i = i, .nd = &c->g->nodes[i]};
    const node_def_t *def = k.nd->def;
    c->edge_start[i] = c->n_edges;
    c->edge_count[i] = 0;
    if (!(k.errors = json_new_array()))
        return BASE_E_NOMEM;

    int stop = 0;
    /* Required inputs first, then optional ones, each in declaration order. */
    for (int sec = NODE_REQUIRED; sec <= NODE_OPTIONAL && !stop && !k.rc; sec++) {
        for (size_t d = 0; d < def->n_inputs && !stop && !k.rc; d++) {
            const node_input_t *in = &def->inputs[d];
            if ((int)in->section != sec || !in->name)
                continue;
            graph_input_t *gi = find_input(k.nd, in->name);
            if (!gi) {
                if (sec == NODE_REQUIRED) {
                    json_t *extra = json_new_object();
                    if (extra && !graph__put_str(extra, "input_name", in->name)) {
                        json_free(extra);
                        extra = NULL;
                    }
                    add_error(&k, extra ? graph__error("required_input_missing", "Required input is missing",
                                                       in->name, extra)
                                        : NULL);
                }
                continue;
            }
            if (gi->is_link || (gi->value && gi->value->type == JSON_ARRAY)) {
                if (!gi->is_link && json_len(gi->value) != 2) {
                    json_t *extra = extra3(&k, in, "received_value", json_clone(gi->value));
                    add_error(
                        &k, extra ? graph__error(
                                        "bad_linked_input",
                                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                        in->name, extra)
                                  : NULL);
                    continue;
                }
                stop = check_link(&k, in, gi);
            } else if (gi->value) {
                check_constant(&k, in, gi);
            }
        }
    }
    /* Links through inputs the class does not declare still feed the node when it runs
     * (variadic nodes rely on this), so their sources are checked as well. */
    for (size_t j = 0; j < k.nd->n_inputs && !stop && !k.rc; j++) {
        graph_input_t *gi = &k.nd->inputs[j];
        const node_input_t *in = find_def_input(def, gi->name);
        if (gi->is_link && (!in || in->section == NODE_HIDDEN))
            stop = check_link(&k, NULL, gi);
    }
    if (!stop && !k.rc)
        check_custom(&k);

    if (stop && !k.rc) {
        /* The exception replaces whatever the node had collected so far. */
        json_free(k.errors);
        k.errors = json_new_array();
        if (!k.errors || json_array_push(k.errors, exception_error(&k, from, from_input)))
            k.rc = BASE_E_NOMEM;
    }
    if (k.rc) {
        json_free(k.errors);
        return k.rc;
    }
    c->local_ok[i] = json_len(k.errors) == 0;
    if (c->local_ok[i])
        json_free(k.errors);
    else
        c->errors[i] = k.errors;
    return 0;
}
