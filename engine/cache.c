/* The output cache: node results keyed by graph signature, kept across prompts. The table
 * itself takes no lock: engines that share it between threads (eng_t.mt) hold
 * eng_t.cache_mu around every call. */
#include <stdlib.h>
#include <string.h>

#include "engine-internal.h"

static uint64_t sig_hash(const uint8_t *sig)
{
    uint64_t h;
    memcpy(&h, sig, sizeof h);
    return h;
}

/* The slot holding sig, or the empty slot where it belongs. cap must be non-zero. */
static size_t find_slot(const eng_cslot_t *slots, size_t cap, uint64_t h, const uint8_t *sig)
{
    size_t mask = cap - 1, i = (size_t)h & mask;
    while (slots[i].e &&
           (slots[i].h != h || memcmp(slots[i].e->sig, sig, GRAPH_SIG_LEN) != 0))
        i = (i + 1) & mask;
    return i;
}

/* Smallest table keeping n entries at a load factor of at most 1/2; 0 on overflow. */
static size_t cap_for(size_t n)
{
    size_t cap = 64;
    while (cap / 2 < n) {
        if (cap > SIZE_MAX / 2 / sizeof(eng_cslot_t))
            return 0;
        cap *= 2;
    }
    return cap;
}

static int rehash(eng_cache_t *c, size_t cap)
{
    eng_cslot_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].e)
            slots[find_slot(slots, cap, c->slots[i].h, c->slots[i].e->sig)] = c->slots[i];
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return 0;
}

int eng__cache_reserve(eng_cache_t *c, size_t n)
{
    if (n > SIZE_MAX - c->n)
        return BASE_E_NOMEM;
    size_t cap = cap_for(c->n + n);
    if (!cap)
        return BASE_E_NOMEM;
    return cap > c->cap ? rehash(c, cap) : 0;
}

eng_centry_t *eng__cache_get(const eng_cache_t *c, const uint8_t *sig)
{
    if (!c->cap)
        return NULL;
    uint64_t h = sig_hash(sig);
    return c->slots[find_slot(c->slots, c->cap, h, sig)].e;
}

int eng__cache_put(eng_cache_t *c, eng_centry_t *e)
{
    int rc = eng__cache_reserve(c, 1);
    if (rc)
        return rc;
    uint64_t h = sig_hash(e->sig);
    size_t i = find_slot(c->slots, c->cap, h, e->sig);
    c->slots[i].h = h;
    c->slots[i].e = e;
    c->n++;
    return 0;
}

eng_centry_t *eng__centry_new(const uint8_t *sig, size_t n_out, uint64_t gen)
{
    if (n_out > (SIZE_MAX - sizeof(eng_centry_t)) / sizeof(node_value_t *))
        return NULL;
    eng_centry_t *e = calloc(1, sizeof *e + n_out * sizeof(node_value_t *));
    if (!e)
        return NULL;
    memcpy(e->sig, sig, GRAPH_SIG_LEN);
    e->gen = gen;
    e->lane = -1;
    e->n_out = n_out;
    return e;
}

void eng__centry_free(eng_centry_t *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_out; i++)
        node_value_unref(e->out[i]);
    json_free(e->ui);
    ts_event_free(e->ready);
    free(e);
}

void eng__cache_sweep(eng_cache_t *c, uint64_t gen)
{
    size_t kept = 0;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].e && (c->slots[i].e->gen == gen || c->slots[i].e->pins))
            kept++;
    if (kept == c->n)
        return;
    /* Removing entries breaks linear-probe chains, so survivors go into a fresh table (which
     * also shrinks after a big prompt). Without memory for it, keep everything: eviction
     * only saves memory, and the next prompt tries again. */
    eng_cslot_t *slots = NULL;
    size_t cap = 0;
    if (kept) {
        cap = cap_for(kept);
        slots = cap ? calloc(cap, sizeof *slots) : NULL;
        if (!slots)
            return;
    }
    for (size_t i = 0; i < c->cap; i++) {
        eng_centry_t *e = c->slots[i].e;
        if (!e)
            continue;
        if (e->gen == gen || e->pins)
            slots[find_slot(slots, cap, c->slots[i].h, e->sig)] = c->slots[i];
        else
            eng__centry_free(e);
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    c->n = kept;
}

void eng__cache_clear(eng_cache_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        eng__centry_free(c->slots[i].e);
    free(c->slots);
    c->slots = NULL;
    c->cap = 0;
    c->n = 0;
}

void eng_cache_clear(eng_t *e)
{
    if (!e)
        return;
    if (!e->mt) {
        eng__cache_clear(&e->cache);
        return;
    }
    /* Running prompts may hold entries: those stay until their prompts end. */
    pthread_mutex_lock(&e->cache_mu);
    eng__cache_sweep(&e->cache, ENG_GEN_NONE);
    pthread_mutex_unlock(&e->cache_mu);
}

size_t eng_cache_count(const eng_t *e)
{
    if (!e)
        return 0;
    if (!e->mt)
        return e->cache.n;
    pthread_mutex_lock((pthread_mutex_t *)&e->cache_mu);
    size_t n = e->cache.n;
    pthread_mutex_unlock((pthread_mutex_t *)&e->cache_mu);
    return n;
}
