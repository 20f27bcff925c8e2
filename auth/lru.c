/* A bounded string-keyed table with least-recently-used eviction: hash chains over a fixed
 * array of entries plus a doubly linked recency list, so lookup, insert and eviction are O(1)
 * and memory never grows past the capacity, however many clients an attacker invents. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"

int auth__lru_init(auth__lru_t *t, size_t cap)
{
    memset(t, 0, sizeof *t);
    size_t nheads = 16;
    while (nheads < cap * 2)
        nheads *= 2;
    t->e = calloc(cap, sizeof *t->e);
    t->heads = malloc(nheads * sizeof *t->heads);
    if (!t->e || !t->heads) {
        auth__lru_free(t);
        return BASE_E_NOMEM;
    }
    for (size_t i = 0; i < nheads; i++)
        t->heads[i] = -1;
    t->cap = cap;
    t->nheads = nheads;
    t->oldest = t->newest = -1;
    return 0;
}

void auth__lru_free(auth__lru_t *t)
{
    free(t->e);
    free(t->heads);
    memset(t, 0, sizeof *t);
}

static void list_unlink(auth__lru_t *t, int32_t i)
{
    auth__lru_entry_t *e = &t->e[i];
    if (e->older >= 0)
        t->e[e->older].newer = e->newer;
    else
        t->oldest = e->newer;
    if (e->newer >= 0)
        t->e[e->newer].older = e->older;
    else
        t->newest = e->older;
    e->older = e->newer = -1;
}

static void list_push_newest(auth__lru_t *t, int32_t i)
{
    auth__lru_entry_t *e = &t->e[i];
    e->older = t->newest;
    e->newer = -1;
    if (t->newest >= 0)
        t->e[t->newest].newer = i;
    t->newest = i;
    if (t->oldest < 0)
        t->oldest = i;
}

static void chain_unlink(auth__lru_t *t, int32_t i)
{
    int32_t *link = &t->heads[t->e[i].hash & (t->nheads - 1)];
    while (*link >= 0 && *link != i)
        link = &t->e[*link].next;
    if (*link == i)
        *link = t->e[i].next;
}

/* Long keys would not fit an entry; their digest stands in for them (no truncation, which
 * could merge two clients into one bucket). */
static void normalise(const char *key, char out[AUTH__LRU_KEY])
{
    size_t n = strlen(key);
    if (n < AUTH__LRU_KEY) {
        memcpy(out, key, n + 1);
        return;
    }
    unsigned char d[32];
    SHA256((const unsigned char *)key, n, d);
    out[0] = '#';
    for (int i = 0; i < 32; i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", d[i]);
}

auth__lru_entry_t *auth__lru_get(auth__lru_t *t, const char *key, bool create)
{
    if (!t->cap)
        return NULL;
    char k[AUTH__LRU_KEY];
    normalise(key, k);
    unsigned long long h = base_hash_str(k);
    for (int32_t i = t->heads[h & (t->nheads - 1)]; i >= 0; i = t->e[i].next) {
        if (t->e[i].hash == h && !strcmp(t->e[i].key, k)) {
            list_unlink(t, i);
            list_push_newest(t, i);
            return &t->e[i];
        }
    }
    if (!create)
        return NULL;
    int32_t i;
    if (t->n < t->cap) {
        i = (int32_t)t->n++;
    } else {
        i = t->oldest;
        chain_unlink(t, i);
        list_unlink(t, i);
    }
    auth__lru_entry_t *e = &t->e[i];
    memset(e, 0, sizeof *e);
    memcpy(e->key, k, sizeof e->key);
    e->hash = h;
    e->used = true;
    int32_t *head = &t->heads[h & (t->nheads - 1)];
    e->next = *head;
    *head = i;
    list_push_newest(t, i);
    return e;
}
