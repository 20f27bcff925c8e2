/* Any thread (no shared state). String-keyed open-addressing hash map.
 * Keys are BORROWED: the caller keeps each key string alive and unchanged while it is in
 * the map (graphs point the map at their own node-id strings). Values are opaque. */
#ifndef WEFT_BASE_MAP_H
#define WEFT_BASE_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    unsigned long long hash; /* compared before the key so probes rarely touch key memory */
    const char *key;         /* borrowed; NULL = empty slot */
    void *val;
} base_map_slot_t;

typedef struct {
    base_map_slot_t *slots; /* owned array */
    size_t n, cap;          /* cap is 0 or a power of two */
} base_map_t;

#define BASE_MAP_INIT {NULL, 0, 0}

/* Inserts or replaces. 0 or BASE_E_NOMEM. */
int base_map_put(base_map_t *m, const char *key, void *val);
/* True and *val set when present (val may be NULL). */
bool base_map_get(const base_map_t *m, const char *key, void **val);
void base_map_free(base_map_t *m);

/* 64-bit FNV-1a, exposed for other hash tables. */
unsigned long long base_hash_str(const char *s);

#endif
