/* The node registry: a hash map for lookups during validation and a name-sorted array so
 * /object_info and `weft nodes` list classes in a stable order. Built at start-up, then
 * read-only, so it needs no lock. */
#include <stdlib.h>
#include <string.h>

#include "nodes.h"

struct node_registry_s {
    base_map_t by_name;       /* keys borrowed from def->name */
    const node_def_t **defs;  /* owned array of borrowed defs, sorted by name */
    size_t n, cap;
};

int node_registry_new(node_registry_t **out)
{
    if (!out)
        return BASE_E_INVAL;
    *out = calloc(1, sizeof **out);
    return *out ? 0 : BASE_E_NOMEM;
}

void node_registry_free(node_registry_t *r)
{
    if (!r)
        return;
    base_map_free(&r->by_name);
    free(r->defs);
    free(r);
}

/* First index whose name is >= name. */
static size_t lower_bound(const node_registry_t *r, const char *name)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->defs[mid]->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int node_registry_add(node_registry_t *r, const node_def_t *def)
{
    if (!r || !def || !def->name || !*def->name)
        return BASE_E_INVAL;
    if (def->n_inputs && !def->inputs)
        return BASE_E_INVAL;
    if (def->n_outputs && !def->outputs)
        return BASE_E_INVAL;
    if (base_map_get(&r->by_name, def->name, NULL))
        return BASE_E_NODE_DUPLICATE;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        const node_def_t **defs = realloc(r->defs, cap * sizeof *defs);
        if (!defs)
            return BASE_E_NOMEM;
        r->defs = defs;
        r->cap = cap;
    }
    int rc = base_map_put(&r->by_name, def->name, (void *)def);
    if (rc)
        return rc;
    size_t at = lower_bound(r, def->name);
    memmove(r->defs + at + 1, r->defs + at, (r->n - at) * sizeof *r->defs);
    r->defs[at] = def;
    r->n++;
    return 0;
}

const node_def_t *node_registry_find(const node_registry_t *r, const char *name)
{
    void *v = NULL;
    if (!r || !name || !base_map_get(&r->by_name, name, &v))
        return NULL;
    return v;
}

size_t node_registry_count(const node_registry_t *r)
{
    return r ? r->n : 0;
}

const node_def_t *node_registry_at(const node_registry_t *r, size_t i)
{
    return r && i < r->n ? r->defs[i] : NULL;
}

int node_def_input_index(const node_def_t *def, const char *name)
{
    if (!def || !name || !def->inputs)
        return -1;
    for (size_t i = 0; i < def->n_inputs; i++)
        if (def->inputs[i].name && strcmp(def->inputs[i].name, name) == 0)
            return (int)i;
    return -1;
}

int node_input_options(const node_input_t *in, const node_env_t *env, node_strlist_t *out)
{
    if (!out)
        return BASE_E_INVAL;
    out->items = NULL;
    out->n = 0;
    if (!in)
        return BASE_E_INVAL;
    if (in->options_fn) {
        int rc = in->options_fn(env, out);
        if (rc)
            node_strlist_free(out); /* a half-filled list must not escape */
        return rc;
    }
    if (!in->options)
        return 0;
    size_t n = 0;
    while (in->options[n])
        n++;
    if (!n)
        return 0;
    out->items = calloc(n, sizeof *out->items);
    if (!out->items)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        out->items[i] = strdup(in->options[i]);
        if (!out->items[i]) {
            out->n = i;
            node_strlist_free(out);
            return BASE_E_NOMEM;
        }
    }
    out->n = n;
    return 0;
}

/* Next comma-separated token of *s with surrounding spaces trimmed (Python's str.strip). */
static bool next_token(const char **s, const char **tok, size_t *len)
{
    const char *p = *s;
    if (!p)
        return false;
    const char *end = strchr(p, ',');
    const char *stop = end ? end : p + strlen(p);
    while (p < stop && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    const char *q = stop;
    while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n' || q[-1] == '\r'))
        q--;
    *tok = p;
    *len = (size_t)(q - p);
    *s = end ? end + 1 : NULL;
    return true;
}

bool node_types_compatible(const char *received, const char *expected)
{
    if (!received || !expected)
        return false;
    if (strcmp(received, expected) == 0)
        return true;
    if (strcmp(received, "*") == 0 || strcmp(expected, "*") == 0)
        return true;
    const char *a = received, *ta;
    size_t la;
    while (next_token(&a, &ta, &la)) {
        if (!la)
            continue; /* "IMAGE," must not match every other list through the empty name */
        const char *b = expected, *tb;
        size_t lb;
        while (next_token(&b, &tb, &lb))
            if (la == lb && memcmp(ta, tb, la) == 0)
                return true;
    }
    return false;
}
