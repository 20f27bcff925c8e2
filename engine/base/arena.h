/* Any thread (no shared state). Bump allocator for memory that dies all at once, such as a
 * parsed graph's strings: one free instead of one per string, and neighbours in memory. */
#ifndef WEFT_BASE_ARENA_H
#define WEFT_BASE_ARENA_H

#include <stddef.h>

typedef struct base_arena_chunk_s base_arena_chunk_t;

typedef struct {
    base_arena_chunk_t *head; /* owned chain of chunks, newest first */
    size_t used, cap;         /* of the head chunk */
} base_arena_t;

#define BASE_ARENA_INIT {NULL, 0, 0}

/* n bytes aligned for any type; NULL on out of memory. Valid until base_arena_free. */
void *base_arena_alloc(base_arena_t *a, size_t n);
void *base_arena_calloc(base_arena_t *a, size_t count, size_t size);
char *base_arena_strdup(base_arena_t *a, const char *s);
void base_arena_free(base_arena_t *a);

#endif
