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
static size_t find_slot(const base_map_slot_t *slots, size_t cap, const char *key, unsigned long long h)
{
    size_t mask = cap - 1;
    size_t i = (size_t)h & mask;
    while (slots[i].key && (slots[i].hash != h || strcmp(slots[i].key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

static int grow(base_map_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    if (cap < m->cap || cap > SIZE_MAX / sizeof(base_map_slot_t))
        return BASE_E_NOMEM;
    base_map_slot_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = find_slot(slots, cap, m->slots[i].key, m->slots[i].hash);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int base_map_put(base_map_t *m, const char *key, void *val)
{
    unsigned long long h = base_hash_str(key);
    if (m->cap) {
        size_t i = find_slot(m->slots, m->cap, key, h);
        if (m->slots[i].key) {
            m->slots[i].key = key;
            m->slots[i].val = val;
            return 0;
        }
    }
    /* Keep the load factor at or below 0.7 so probe chains stay short. */
    if ((m->n + 1) * 10 > m->cap * 7) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    size_t i = find_slot(m->slots, m->cap, key, h);
    m->slots[i] = (base_map_slot_t){h, key, val};
    m->n++;
    return 0;
}

bool base_map_get(const base_map_t *m, const char *key, void **val)
{
    if (!m->cap)
        return false;
    size_t i = find_slot(m->slots, m->cap, key, base_hash_str(key));
    if (!m->slots[i].key)
        return false;
    if (val)
        *val = m->slots[i].val;
    return true;
}

void base_map_free(base_map_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->n = m->cap = 0;
}
