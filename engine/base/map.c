#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

unsigned long long base_hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Linear probing: the slot holding key, or the empty slot where it belongs. */
static size_t find_slot(const char **keys, size_t cap, const char *key)
{
    size_t mask = cap - 1;
    size_t i = (size_t)base_hash_str(key) & mask;
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & mask;
    return i;
}

static int grow(base_map_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    if (cap < m->cap || cap > SIZE_MAX / sizeof(void *))
        return BASE_E_NOMEM;
    const char **keys = calloc(cap, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return BASE_E_NOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = find_slot(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int base_map_put(base_map_t *m, const char *key, void *val)
{
    if (m->cap) {
        size_t i = find_slot(m->keys, m->cap, key);
        if (m->keys[i]) {
            m->keys[i] = key;
            m->vals[i] = val;
            return 0;
        }
    }
    /* Keep the load factor at or below 0.7 so probe chains stay short. */
    if ((m->n + 1) * 10 > m->cap * 7) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    size_t i = find_slot(m->keys, m->cap, key);
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return 0;
}

bool base_map_get(const base_map_t *m, const char *key, void **val)
{
    if (!m->cap)
        return false;
    size_t i = find_slot(m->keys, m->cap, key);
    if (!m->keys[i])
        return false;
    if (val)
        *val = m->vals[i];
    return true;
}

void base_map_free(base_map_t *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->n = m->cap = 0;
}
