/* What a principal may submit: the node class policy (privileged classes need
 * prompt:any_node) and the per-role limits (queued prompts, daily quota). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "log.h"
#include "ownership.h"

/* Upward walks from the outputs stop after this many steps in all: a hostile prompt cannot
 * make the refusal itself expensive (dependent_outputs may then be incomplete). */
#define POLICY_WALK_BUDGET 2000000u

static bool privileged(const srv_t *s, const graph_node_t *n)
{
    const node_def_t *def = n->class_type ? node_registry_find(s->reg, n->class_type) : NULL;
    return def && (def->flags & NODE_PRIVILEGED);
}

static bool is_output(const srv_t *s, const graph_node_t *n)
{
    const node_def_t *def = n->class_type ? node_registry_find(s->reg, n->class_type) : NULL;
    return def && (def->flags & NODE_OUTPUT_NODE);
}

/* A ComfyUI validation refusal being built: node_errors entries and the details lines. */
typedef struct {
    json_t *node_errors;
    base_buf_t details;
    bool *flagged; /* per graph node: has an entry */
    int rc;
} refusal_t;

/* {"type", "message", "details", "extra_info"}; extra is taken (NULL = {}). */
static json_t *error_obj(const char *type, const char *message, const char *details, json_t *extra)
{
    json_t *e = json_new_object();
    if (!e || json_object_set(e, "type", json_new_string(type)) ||
        json_object_set(e, "message", json_new_string(message)) ||
        json_object_set(e, "details", json_new_string(details))) {
        json_free(extra);
        json_free(e);
        return NULL;
    }
    if (json_object_set(e, "extra_info", extra ? extra : json_new_object())) { /* took extra */
        json_free(e);
        return NULL;
    }
    return e;
}

/* Adds err (taken) to node i's entry, creating it. */
static void refusal_add(refusal_t *r, const graph_t *g, size_t i, json_t *err, const char *message,
                        const char *details)
{
    if (r->rc || !err) {
        json_free(err);
        r->rc = r->rc ? r->rc : BASE_E_NOMEM;
        return;
    }
    const graph_node_t *n = &g->nodes[i];
    json_t *entry = json_object_get(r->node_errors, n->id);
    if (!entry) {
        entry = json_new_object();
        if (!entry || json_object_set(entry, "errors", json_new_array()) ||
            json_object_set(entry, "dependent_outputs", json_new_array()) ||
            json_object_set(entry, "class_type", json_new_string(n->class_type ? n->class_type : ""))) {
            json_free(entry);
            json_free(err);
            r->rc = BASE_E_NOMEM;
            return;
        }
        if (json_object_set(r->node_errors, n->id, entry)) { /* took entry */
            json_free(err);
            r->rc = BASE_E_NOMEM;
            return;
        }
        entry = json_object_get(r->node_errors, n->id);
    }
    r->flagged[i] = true;
    if (json_array_push(json_object_get(entry, "errors"), err) ||
        base_buf_printf(&r->details, "%s%s: %s", r->details.len ? "\n" : "", message, details))
        r->rc = BASE_E_NOMEM;
}

/* Adds output id `out` to the dependent_outputs of every flagged ancestor of node o. */
static int mark_dependents(const graph_t *g, const bool *flagged, size_t o, json_t *node_errors,
                           uint8_t *seen, size_t *stack, size_t *budget)
{
    memset(seen, 0, g->n);
    size_t top = 0;
    stack[top++] = o;
    seen[o] = 1;
    while (top && *budget) {
        size_t i = stack[--top];
        (*budget)--;
        if (flagged[i]) {
            json_t *deps = json_object_get(json_object_get(node_errors, g->nodes[i].id), "dependent_outputs");
            if (deps && json_array_push(deps, json_new_string(g->nodes[o].id)))
                return BASE_E_NOMEM;
        }
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++) {
            int64_t src = g->nodes[i].inputs[k].is_link ? g->nodes[i].inputs[k].src : -1;
            if (src >= 0 && (size_t)src < g->n && !seen[src]) {
                seen[src] = 1;
                stack[top++] = (size_t)src;
            }
        }
    }
    return 0;
}

/* The 400 body in ComfyUI's validation shape; NULL on out of memory. */
static json_t *refusal_body(const srv_t *s, const graph_t *g, refusal_t *r)
{
    uint8_t *seen = malloc(g->n ? g->n : 1);
    size_t *stack = malloc((g->n ? g->n : 1) * sizeof *stack);
    int rc = r->rc ? r->rc : seen && stack ? 0 : BASE_E_NOMEM;
    size_t budget = POLICY_WALK_BUDGET;
    for (size_t o = 0; !rc && o < g->n && budget; o++)
        if (is_output(s, &g->nodes[o]))
            rc = mark_dependents(g, r->flagged, o, r->node_errors, seen, stack, &budget);
    free(seen);
    free(stack);
    json_t *err = rc ? NULL
                     : error_obj("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                 r->details.data ? r->details.data : "", NULL);
    json_t *body = err ? json_new_object() : NULL;
    if (!body || json_object_set(body, "error", err)) {
        if (!body)
            json_free(err);
        json_free(body);
        return NULL;
    }
    rc = json_object_set(body, "node_errors", r->node_errors);
    r->node_errors = NULL;
    if (rc) {
        json_free(body);
        return NULL;
    }
    return body;
}

/* ------------------------------------------------------------------ privileged classes */

static void check_classes(const srv_t *s, const graph_t *g, refusal_t *r)
{
    for (size_t i = 0; i < g->n && !r->rc; i++) {
        if (!privileged(s, &g->nodes[i]))
            continue;
        const char *cls = g->nodes[i].class_type;
        refusal_add(r, g, i,
                    error_obj("forbidden_node_class", "Node class not allowed for your role", cls, NULL),
                    "Node class not allowed for your role", cls);
    }
}

/* ------------------------------------------------------------------ others' files as inputs */

/* LoadImage's rule for annotated names ("x.png [output]"): the folder and the name inside
 * it; *rel malloc'ed (NULL on out of memory). */
static const char *split_annotation(const char *name, char **rel)
{
    static const struct {
        const char *suffix, *folder;
    } tags[] = {{"[output]", "output"}, {"[input]", "input"}, {"[temp]", "temp"}};
    size_t n = strlen(name);
    const char *folder = "input";
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        size_t sl = strlen(tags[i].suffix);
        if (n >= sl && strcmp(name + n - sl, tags[i].suffix) == 0) {
            folder = tags[i].folder;
            n = n > sl ? n - sl - 1 : 0;
            break;
        }
    }
    *rel = strndup(name, n);
    return folder;
}

/* 1: p may read the file a file-picking input names, 0: it may not, <0: out of memory.
 * Names that cannot be a file inside a folder are left to validation (1). */
static int may_read_named(srv_t *s, const auth_principal_t *p, const char *name)
{
    char *rel = NULL, *path = NULL;
    const char *folder = split_annotation(name, &rel);
    if (!rel)
        return BASE_E_NOMEM;
    char *slash = strrchr(rel, '/');
    if (slash)
        *slash = '\0';
    int rc = own_file_path(slash ? rel : "", slash ? slash + 1 : rel, &path);
    free(rel);
    if (rc == BASE_E_NOMEM)
        return rc;
    int ok = rc ? 1 : own_file_readable(s, p, folder, path);
    free(path);
    return ok;
}

/* [options p may read, {"image_upload": true}]: what validation reports as input_config. */
static json_t *input_config(srv_t *s, const auth_principal_t *p, const node_input_t *in)
{
    node_strlist_t opts = {0};
    json_t *list = json_new_array(), *flags = json_new_object(), *cfg = json_new_array();
    int rc = list && flags && cfg ? node_input_options(in, &s->env.env, &opts) : BASE_E_NOMEM;
    for (size_t i = 0; !rc && i < opts.n; i++) {
        int ok = may_read_named(s, p, opts.items[i]);
        rc = ok < 0 ? ok : ok ? json_array_push(list, json_new_string(opts.items[i])) : 0;
    }
    node_strlist_free(&opts);
    if (!rc)
        rc = json_object_set(flags, "image_upload", json_new_bool(true));
    if (!rc) {
        rc = json_array_push(cfg, list);
        list = NULL;
    }
    if (!rc) {
        rc = json_array_push(cfg, flags);
        flags = NULL;
    }
    json_free(list);
    json_free(flags);
    if (rc) {
        json_free(cfg);
        return NULL;
    }
    return cfg;
}

/* An input naming a file the principal may not read is refused the way LoadImage refuses a
 * missing file, so another user's file and no file look the same. */
static void check_inputs(srv_t *s, const auth_principal_t *p, const graph_t *g, refusal_t *r)
{
    for (size_t i = 0; i < g->n && !r->rc; i++) {
        const graph_node_t *n = &g->nodes[i];
        const node_def_t *def = n->class_type ? node_registry_find(s->reg, n->class_type) : NULL;
        for (size_t k = 0; def && k < n->n_inputs && !r->rc; k++) {
            const graph_input_t *gi = &n->inputs[k];
            int idx = gi->is_link ? -1 : node_def_input_index(def, gi->name);
            const char *name = idx >= 0 ? json_str(gi->value) : NULL;
            if (!name || !(def->inputs[idx].flags & NODE_IN_IMAGE_UPLOAD))
                continue;
            int ok = may_read_named(s, p, name);
            if (ok < 0) {
                r->rc = ok;
                break;
            }
            if (ok)
                continue;
            base_buf_t d = BASE_BUF_INIT;
            json_t *extra = json_new_object();
            if (base_buf_printf(&d, "%s - Invalid image file: %s", gi->name, name) || !extra ||
                json_object_set(extra, "input_name", json_new_string(gi->name)) ||
                json_object_set(extra, "input_config", input_config(s, p, &def->inputs[idx])) ||
                json_object_set(extra, "received_value", json_new_string(name))) {
                json_free(extra);
                base_buf_free(&d);
                r->rc = BASE_E_NOMEM;
                break;
            }
            refusal_add(
                r, g, i,
                error_obj("custom_validation_failed", "Custom validation failed for node", d.data, extra),
                "Custom validation failed for node", d.data);
            base_buf_free(&d);
        }
    }
}

bool own_refuse_forbidden_nodes(srv_t *s, const auth_principal_t *p, const json_t *prompt, http_res_t *res)
{
    bool any_node = auth_has(p, AUTH_SCOPE(PROMPT_ANY_NODE)),
         any_file = auth_has(p, AUTH_SCOPE(OUTPUTS_READ_ANY));
    if ((any_node && any_file) || !prompt || prompt->type != JSON_OBJECT)
        return false;
    graph_t *g = NULL;
    char err[128];
    /* A prompt that does not parse never runs: validation answers it. */
    if (graph_parse(prompt, &g, err, sizeof err))
        return false;
    refusal_t r = {.node_errors = json_new_object(), .flagged = calloc(g->n ? g->n : 1, sizeof(bool))};
    r.rc = r.node_errors && r.flagged ? 0 : BASE_E_NOMEM;
    if (!any_node)
        check_classes(s, g, &r);
    /* Only when the classes pass: a forbidden class is the one thing to report then. */
    if (!r.rc && !any_file && !json_len(r.node_errors))
        check_inputs(s, p, g, &r);
    bool refused = r.rc || json_len(r.node_errors);
    json_t *body = refused && !r.rc ? refusal_body(s, g, &r) : NULL;
    json_free(r.node_errors);
    base_buf_free(&r.details);
    free(r.flagged);
    graph_free(g);
    if (!refused)
        return false;
    if (body)
        http_res_json(res, 400, body);
    else
        http_res_error(res, 500, "out_of_memory", "Out of memory");
    return true;
}

/* ------------------------------------------------------------------ /object_info */

/* A copy of spec ([options, {"image_upload": true, ...}, ...]) keeping the options p may
 * read; NULL on out of memory. */
static json_t *filtered_spec(srv_t *s, const auth_principal_t *p, const json_t *spec)
{
    json_t *out = json_new_array(), *list = json_new_array();
    const json_t *opts = json_at(spec, 0);
    int rc = out && list ? 0 : BASE_E_NOMEM;
    for (size_t i = 0; !rc && i < json_len(opts); i++) {
        const char *name = json_str(json_at(opts, i));
        int ok = name ? may_read_named(s, p, name) : 0;
        rc = ok < 0 ? ok : ok ? json_array_push(list, json_new_string(name)) : 0;
    }
    if (!rc) {
        rc = json_array_push(out, list);
        list = NULL;
    }
    for (size_t i = 1; !rc && i < json_len(spec); i++)
        rc = json_array_push(out, json_clone(json_at(spec, i)));
    json_free(list);
    if (rc) {
        json_free(out);
        return NULL;
    }
    return out;
}

void own_filter_object_info(srv_t *s, const auth_principal_t *p, json_t *object_info)
{
    if (auth_has(p, AUTH_SCOPE(OUTPUTS_READ_ANY)))
        return;
    static const char *const sections[] = {"required", "optional"};
    for (size_t c = 0; c < json_len(object_info); c++) {
        json_t *input = json_object_get(json_at(object_info, c), "input");
        for (size_t k = 0; k < 2; k++) {
            json_t *sec = json_object_get(input, sections[k]);
            for (size_t i = 0; i < json_len(sec); i++) {
                const json_t *spec = json_at(sec, i);
                const json_t *up = json_object_get(json_at(spec, 1), "image_upload");
                if (!json_at(spec, 0) || json_at(spec, 0)->type != JSON_ARRAY || !up ||
                    up->type != JSON_BOOL || !up->u.b)
                    continue;
                char *key = strdup(json_key_at(sec, i));
                json_t *f = key ? filtered_spec(s, p, spec) : NULL;
                /* Out of memory: an empty spec rather than one that shows others' files. */
                if (!f || json_object_set(sec, key, f)) {
                    json_t *empty = json_new_array();
                    if (key && empty && !json_array_push(empty, json_new_array()))
                        json_object_set(sec, key, empty);
                    else
                        json_free(empty);
                }
                free(key);
            }
        }
    }
}

/* ------------------------------------------------------------------ limits */

typedef struct {
    const char *user;
    size_t n;
} count_t;

static void count_own(void *ud, const srv_item_t *it, bool running)
{
    count_t *c = ud;
    if (!running && !strcmp(it->owner, c->user))
        c->n++;
}

bool own_refuse_limits(srv_t *s, const http_req_t *req, http_res_t *res)
{
    const auth_principal_t *p = &req->principal;
    const char *user = own_user(p);
    unsigned per_day = 0, max_queued = 0;
    auth_role_limits(p->role, &per_day, &max_queued);
    if (user && max_queued) {
        count_t c = {user, 0};
        srv_queue_each(&s->queue, count_own, &c);
        if (c.n >= max_queued) {
            char msg[160];
            snprintf(msg, sizeof msg, "You already have %zu prompts queued; your role allows %u at once", c.n,
                     max_queued);
            http_res_error(res, 429, "too_many_queued", msg);
            return true;
        }
    }
    if (!s->auth || !user)
        return false;
    double now_s = srv__now_ms() / 1000.0;
    int rc = auth_quota_take(s->auth, p, now_s);
    if (rc == BASE_E_AUTH_QUOTA) {
        /* Daily quotas restart at midnight UTC. */
        long long left = 86400 - ((long long)now_s % 86400);
        http_res_header(res, "Retry-After", "%lld", left > 0 ? left : 1);
        char msg[160];
        snprintf(msg, sizeof msg, "Daily prompt quota of your role (%u) reached", per_day);
        http_res_error(res, 429, "quota_exceeded", msg);
        return true;
    }
    if (rc) {
        BASE_LOG(ERROR, "quota of %s: %s", user, base_strerror(rc));
        http_res_error(res, 500, "quota_error", "Cannot check the prompt quota");
        return true;
    }
    return false;
}
