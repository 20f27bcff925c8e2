/* Shared by the Stable Diffusion model tests: a growable list of (name, shape) pairs that
 * sd_unet_keys / sd_vae_keys / sd_clip_keys fill through `sdk_collect`. Include after
 * testutil.h. */
#ifndef WEFT_SD_TESTKIT_H
#define WEFT_SD_TESTKIT_H

#include <stdlib.h>
#include <string.h>

#include "sd/sd.h"

typedef struct {
    char *name;
    int ndim;
    int64_t shape[TS_MAX_DIMS];
} key_t_;

typedef struct {
    key_t_ *k;
    size_t n, cap;
} keys_t;

/* An sd_key_fn appending to the keys_t at ctx. */
static inline int sdk_collect(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    keys_t *ks = ctx;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? 2 * ks->cap : 256;
        ks->k = realloc(ks->k, ks->cap * sizeof *ks->k);
        assert_non_null(ks->k);
    }
    key_t_ *k = &ks->k[ks->n++];
    k->name = strdup(name);
    assert_non_null(k->name);
    k->ndim = ndim;
    memcpy(k->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

static inline void keys_free(keys_t *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        free(ks->k[i].name);
    free(ks->k);
}

static inline int64_t numel_of(const key_t_ *k)
{
    int64_t n = 1;
    for (int d = 0; d < k->ndim; d++)
        n *= k->shape[d];
    return n;
}

#endif
