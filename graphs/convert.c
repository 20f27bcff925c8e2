/* UI workflow -> API prompt, doing what the editor's graphToPrompt does before it queues
 * (comfyui-api.md 4.3), so `weft run workflow.json` and a server receiving only a saved
 * workflow behave like the editor: virtual nodes (Reroute, PrimitiveNode, notes) resolved
 * or dropped, muted nodes dropped, bypassed nodes passed through. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "graphs-internal.h"

enum { MODE_NEVER = 2, MODE_BYPASS = 4 };

typedef struct {
    const json_t *j;
    char *id; /* String(node.id) */
    const char *type;
    int64_t mode;
    size_t pos; /* index in the nodes array */
    bool emitted;
} ui_node_t;

typedef struct {
    int64_t id;
    size_t origin;
    int64_t origin_slot;
    const char *type;
} ui_link_t;

typedef struct {
    ui_node_t *nodes;
    size_t n;
    base_map_t by_id; /* id -> index + 1 */
    ui_link_t *links; /* sorted by id */
    size_t n_links;
    char *err;
    size_t errsz;
} ui_t;

static int fail(ui_t *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ui_t *u, const char *fmt, ...)
{
    if (u->err && u->errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->err, u->errsz, fmt, ap);
        va_end(ap);
    }
    return BASE_E_GRAPH_FORMAT;
}

bool graph_is_ui_workflow(const json_t *j)
{
    const json_t *nodes = json_object_get(j, "nodes"), *links = json_object_get(j, "links");
    return nodes && nodes->type == JSON_ARRAY && links && links->type == JSON_ARRAY;
}

/* litegraph ids are numbers (or strings in newer schemas); the API uses String(id). */
static char *id_string(const json_t *v)
{
    int64_t i;
    if (json_get_i64(v, &i)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, i);
        return strdup(buf);
    }
    const char *s = json_str(v);
    return s && *s ? strdup(s) : NULL;
}

static bool is_virtual(const char *type)
{
    return !strcmp(type, "Reroute") || !strcmp(type, "PrimitiveNode") || !strcmp(type, "Note") ||
           !strcmp(type, "MarkdownNote");
}

static ui_node_t *node_by_id(const ui_t *u, const json_t *idv)
{
    char *id = id_string(idv);
    void *v = NULL;
    bool found = id && base_map_get(&u->by_id, id, &v);
    free(id);
    return found ? &u->nodes[(uintptr_t)v - 1] : NULL;
}

static const ui_link_t *link_by_id(const ui_t *u, const json_t *idv)
{
    int64_t id;
    if (!json_get_i64(idv, &id))
        return NULL;
    size_t lo = 0, hi = u->n_links;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->links[mid].id == id)
            return &u->links[mid];
        if (u->links[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int cmp_link(const void *a, const void *b)
{
    const ui_link_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* ------------------------------------------------------------------ reading */

static int read_nodes(ui_t *u, const json_t *nodes)
{
    u->nodes = calloc(json_len(nodes) ? json_len(nodes) : 1, sizeof *u->nodes);
    if (!u->nodes)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < json_len(nodes); i++) {
        const json_t *j = json_at(nodes, i);
        if (!j || j->type != JSON_OBJECT)
            return fail(u, "nodes[%zu] is not an object", i);
        ui_node_t *nd = &u->nodes[u->n];
        nd->j = j;
        nd->pos = i;
        const json_t *idv = json_object_get(j, "id");
        if (!idv || !(nd->id = id_string(idv)))
            return idv ? fail(u, "nodes[%zu] has an id that is neither an integer nor a string", i)
                       : fail(u, "nodes[%zu] has no id", i);
        u->n++;
        nd->type = json_str(json_object_get(j, "type"));
        if (!nd->type)
            return fail(u, "node %s has no type", nd->id);
        if (!json_get_i64(json_object_get(j, "mode"), &nd->mode))
            nd->mode = 0;
        if (base_map_get(&u->by_id, nd->id, NULL))
            return fail(u, "node id %s appears twice", nd->id);
        if (base_map_put(&u->by_id, nd->id, (void *)(uintptr_t)(u->n)))
            return BASE_E_NOMEM;
    }
    return 0;
}

/* Link arrays (schema 0.4) or link objects (schema 1). */
static int read_links(ui_t *u, const json_t *links)
{
    if (links && links->type != JSON_ARRAY)
        return fail(u, "\"links\" is not an array");
    u->links = calloc(json_len(links) ? json_len(links) : 1, sizeof *u->links);
    if (!u->links)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < json_len(links); i++) {
        const json_t *l = json_at(links, i);
        const json_t *idv, *origin, *oslot, *target, *type;
        if (l->type == JSON_NULL)
            continue;
        if (l->type == JSON_ARRAY && json_len(l) >= 5) {
            idv = json_at(l, 0), origin = json_at(l, 1), oslot = json_at(l, 2), target = json_at(l, 3);
            type = json_at(l, 5);
        } else if (l->type == JSON_OBJECT) {
            idv = json_object_get(l, "id"), origin = json_object_get(l, "origin_id");
            oslot = json_object_get(l, "origin_slot"), target = json_object_get(l, "target_id");
            type = json_object_get(l, "type");
        } else {
            return fail(u, "links[%zu] is neither [id, origin, slot, target, slot, type] nor a link object",
                        i);
        }
        ui_link_t *lk = &u->links[u->n_links];
        if (!json_get_i64(idv, &lk->id) || !json_get_i64(oslot, &lk->origin_slot))
            return fail(u, "links[%zu] has a malformed id or origin slot", i);
        const ui_node_t *o = node_by_id(u, origin), *t = node_by_id(u, target);
        if (!o || !t) {
            char *bad = id_string(o ? target : origin);
            int rc = fail(u, "link %" PRId64 " refers to node %s, which is not in the workflow", lk->id,
                          bad ? bad : "(malformed id)");
            free(bad);
            return rc;
        }
        lk->origin = (size_t)(o - u->nodes);
        lk->type = json_str(type);
        u->n_links++;
    }
    qsort(u->links, u->n_links, sizeof *u->links, cmp_link);
    for (size_t i = 1; i < u->n_links; i++)
        if (u->links[i].id == u->links[i - 1].id)
            return fail(u, "link id %" PRId64 " appears twice", u->links[i].id);
    return 0;
}

/* ------------------------------------------------------------------ link resolution */

/* LiteGraph.isValidConnection: equal (ignoring case), a wildcard, or overlapping lists. */
static bool type_ok(const char *a, const char *b)
{
    if (!a || !b || !*a || !*b || !strcmp(a, "*") || !strcmp(b, "*") || !strcasecmp(a, b))
        return true;
    if (!strchr(a, ',') && !strchr(b, ','))
        return false;
    for (const char *p = a; *p;) {
        size_t la = strcspn(p, ",");
        for (const char *q = b; *q;) {
            size_t lb = strcspn(q, ",");
            if (la == lb && !strncasecmp(p, q, la))
                return true;
            q += lb + (q[lb] == ',');
        }
        p += la + (p[la] == ',');
    }
    return false;
}

/* Which input of a bypassed node stands in for output `slot`, as the editor picks it:
 * the input at the same index when its type fits, else the first input of exactly the
 * requested type; -1 when none (the consumer then loses the input). */
static int64_t bypass_input(const ui_node_t *nd, int64_t slot, const char *type)
{
    const json_t *ins = json_object_get(nd->j, "inputs");
    int64_t n = (int64_t)json_len(ins);
    if (!type || !*type || !strcmp(type, "*"))
        return slot >= 0 && slot < n ? slot : n ? 0 : -1;
    const char *out_type =
        json_str(json_object_get(json_at(json_object_get(nd->j, "outputs"), (size_t)slot), "type"));
    if (slot >= 0 && slot < n) {
        const char *t = json_str(json_object_get(json_at(ins, (size_t)slot), "type"));
        if (type_ok(t, out_type) && type_ok(t, type))
            return slot;
    }
    for (int64_t i = 0; i < n; i++) {
        const char *t = json_str(json_object_get(json_at(ins, (size_t)i), "type"));
        if (t && !strcmp(t, type))
            return i;
    }
    return -1;
}

typedef enum { RES_NONE, RES_LINK, RES_VALUE } res_kind_t;

typedef struct {
    res_kind_t kind;
    size_t node;         /* RES_LINK: origin */
    int64_t slot;        /* RES_LINK */
    const json_t *value; /* RES_VALUE (borrowed) */
} res_t;

/* Follows the link of a node input through Reroutes, PrimitiveNodes and bypassed nodes to
 * a real output or a value. Each step moves to another link, so more steps than links
 * means the links loop. */
static int resolve(ui_t *u, const json_t *input, res_t *r)
{
    r->kind = RES_NONE;
    const ui_link_t *lk = link_by_id(u, json_object_get(input, "link"));
    if (!lk)
        return 0; /* unconnected, or a stale link id the editor would ignore too */
    const char *type = json_str(json_object_get(input, "type"));
    if (!type)
        type = lk->type;
    for (size_t steps = 0;; steps++) {
        if (steps > u->n_links)
            return fail(u, "links loop through Reroute or bypassed nodes (at node %s)",
                        u->nodes[lk->origin].id);
        const ui_node_t *o = &u->nodes[lk->origin];
        const json_t *next_input;
        if (!strcmp(o->type, "Reroute")) {
            next_input = json_at(json_object_get(o->j, "inputs"), 0);
        } else if (!strcmp(o->type, "PrimitiveNode")) {
            const json_t *wv = json_object_get(o->j, "widgets_values");
            if (json_len(wv) && wv->type == JSON_ARRAY) {
                r->kind = RES_VALUE;
                r->value = json_at(wv, 0);
            }
            return 0;
        } else if (is_virtual(o->type)) {
            return 0;
        } else if (o->mode == MODE_BYPASS) {
            int64_t at = bypass_input(o, lk->origin_slot, type);
            if (at < 0)
                return 0;
            next_input = json_at(json_object_get(o->j, "inputs"), (size_t)at);
        } else {
            r->kind = RES_LINK;
            r->node = lk->origin;
            r->slot = lk->origin_slot;
            return 0;
        }
        if (!(lk = link_by_id(u, json_object_get(next_input, "link"))))
            return 0;
    }
}

/* ------------------------------------------------------------------ emitting */

static int node_inputs(ui_t *u, const ui_node_t *nd, const node_def_t *def, const node_env_t *env,
                       json_t *inputs)
{
    int rc = graph__ui_widgets(nd->j, def, env, inputs);
    if (rc)
        return rc;
    const json_t *ins = json_object_get(nd->j, "inputs");
    for (size_t i = 0; i < json_len(ins); i++) {
        const json_t *in = json_at(ins, i);
        const char *name = json_str(json_object_get(in, "name"));
        if (!name)
            continue;
        res_t r;
        if ((rc = resolve(u, in, &r)))
            return rc;
        if (r.kind == RES_VALUE) {
            json_t *v = graph__ui_wrap(r.value);
            if (!v || json_object_set(inputs, name, v))
                return BASE_E_NOMEM;
        } else if (r.kind == RES_LINK) {
            if (!u->nodes[r.node].emitted) {
                /* The source was muted or bypassed away: the input goes, widget value too. */
                json_object_del(inputs, name);
                continue;
            }
            json_t *l = json_new_array();
            if (!l || json_array_push(l, json_new_string(u->nodes[r.node].id)) ||
                json_array_push(l, json_new_int(r.slot))) {
                json_free(l);
                return BASE_E_NOMEM;
            }
            if (json_object_set(inputs, name, l))
                return BASE_E_NOMEM;
        }
    }
    return 0;
}

static json_t *emit_node(ui_t *u, const ui_node_t *nd, const node_registry_t *reg, const node_env_t *env,
                         int *rc)
{
    const node_def_t *def = reg ? node_registry_find(reg, nd->type) : NULL;
    json_t *o = json_new_object(), *inputs = json_new_object(), *meta = json_new_object();
    *rc = BASE_E_NOMEM;
    if (!o || !inputs || !meta)
        goto fail;
    if ((*rc = node_inputs(u, nd, def, env, inputs)))
        goto fail;
    *rc = BASE_E_NOMEM;
    const char *title = json_str(json_object_get(nd->j, "title"));
    if (!title)
        title = def ? (def->display_name ? def->display_name : def->name) : nd->type;
    if (!graph__put_str(meta, "title", title))
        goto fail;
    bool ok = graph__put(o, "inputs", inputs);
    inputs = NULL;
    ok = ok && graph__put_str(o, "class_type", nd->type);
    ok = ok && graph__put(o, "_meta", meta);
    meta = NULL;
    if (!ok)
        goto fail;
    *rc = 0;
    return o;
fail:
    json_free(o);
    json_free(inputs);
    json_free(meta);
    return NULL;
}

/* A JavaScript object lists integer-like keys ("0".."4294967294") first, ascending, then
 * the others in insertion order; JSON.stringify of the editor's prompt follows that. */
static bool js_index(const char *s, uint64_t *v)
{
    if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 10)
        return false;
    uint64_t x = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return x < 4294967295u;
}

static int cmp_emit(const void *a, const void *b)
{
    const ui_node_t *x = *(const ui_node_t *const *)a, *y = *(const ui_node_t *const *)b;
    uint64_t vx = 0, vy = 0;
    bool ix = js_index(x->id, &vx), iy = js_index(y->id, &vy);
    if (ix != iy)
        return ix ? -1 : 1;
    if (ix)
        return vx < vy ? -1 : vx > vy;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int graph_convert_ui(const json_t *workflow, const node_registry_t *reg, const node_env_t *env,
                     json_t **prompt, char *err, size_t errsz)
{
    *prompt = NULL;
    if (err && errsz)
        err[0] = '\0';
    ui_t u = {.err = err, .errsz = errsz};
    const json_t *nodes = json_object_get(workflow, "nodes");
    json_t *out = NULL;
    const ui_node_t **order = NULL;
    int rc;
    if (!workflow || workflow->type != JSON_OBJECT || !nodes || nodes->type != JSON_ARRAY) {
        rc = fail(&u, "the workflow has no \"nodes\" array");
        goto done;
    }
    if ((rc = read_nodes(&u, nodes)) || (rc = read_links(&u, json_object_get(workflow, "links"))))
        goto done;
    rc = BASE_E_NOMEM;
    if (!(order = malloc((u.n ? u.n : 1) * sizeof *order)) || !(out = json_new_object()))
        goto done;
    size_t n_emit = 0;
    for (size_t i = 0; i < u.n; i++) {
        ui_node_t *nd = &u.nodes[i];
        nd->emitted = !is_virtual(nd->type) && nd->mode != MODE_NEVER && nd->mode != MODE_BYPASS;
        if (nd->emitted)
            order[n_emit++] = nd;
    }
    qsort(order, n_emit, sizeof *order, cmp_emit);
    rc = 0;
    for (size_t i = 0; !rc && i < n_emit; i++) {
        json_t *o = emit_node(&u, order[i], reg, env, &rc);
        if (!rc && !graph__append(out, order[i]->id, o))
            rc = BASE_E_NOMEM;
    }
done:
    if (rc == BASE_E_NOMEM && err && errsz)
        snprintf(err, errsz, "out of memory while converting the workflow");
    for (size_t i = 0; i < u.n; i++)
        free(u.nodes[i].id);
    free(u.nodes);
    free(u.links);
    free(order);
    base_map_free(&u.by_id);
    if (rc) {
        json_free(out);
        return rc;
    }
    *prompt = out;
    return 0;
}
