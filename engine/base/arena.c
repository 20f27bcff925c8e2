#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (64u * 1024u)

struct base_arena_chunk_s {
    base_arena_chunk_t *next;
    alignas(max_align_t) unsigned char data[];
};

void *base_arena_alloc(base_arena_t *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    if (n > SIZE_MAX - align)
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    if (!a->head || a->cap - a->used < n) {
        /* Oversized requests get a chunk of their own so small ones keep filling the head. */
        size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        base_arena_chunk_t *c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        if (cap != ARENA_CHUNK && a->head) {
            c->next = a->head->next;
            a->head->next = c;
            return c->data;
        }
        c->next = a->head;
        a->head = c;
        a->used = 0;
        a->cap = cap;
    }
    void *p = a->head->data + a->used;
    a->used += n;
    return p;
}

void *base_arena_calloc(base_arena_t *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = base_arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

char *base_arena_strdup(base_arena_t *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = base_arena_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void base_arena_free(base_arena_t *a)
{
    for (base_arena_chunk_t *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    *a = (base_arena_t)BASE_ARENA_INIT;
}
