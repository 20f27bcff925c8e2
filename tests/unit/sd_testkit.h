/* Shared by the Stable Diffusion model tests: a growable list of (name, shape) pairs that
 * sd_unet_keys / sd_vae_keys / sd_clip_keys fill through `sdk_collect`. Include after
 * testutil.h. */
#ifndef WEFT_SD_TESTKIT_H
#define WEFT_SD_TESTKIT_H

#include <math.h>
#include <stdbool.h>
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

/* Test weights, regenerated identically on every run: randn(seed = key index), biases
 * scaled by 0.1, 1-D (norm) weights 1 + 0.1 randn, others randn / sqrt(fan_in). */
static inline ts_tensor_t *sdk_test_weight(const key_t_ *k, size_t index)
{
    ts_tensor_t *r = NULL, *t = NULL;
    assert_int_equal(ts_randn(&r, k->shape, k->ndim, (uint64_t)index, (ts_device_t){TS_CPU, 0}), 0);
    size_t len = strlen(k->name);
    bool bias = len > 5 && strcmp(k->name + len - 5, ".bias") == 0;
    int64_t fan_in = 1;
    for (int d = 1; d < k->ndim; d++)
        fan_in *= k->shape[d];
    double mul = bias || k->ndim == 1 ? 0.1 : 1.0 / sqrt((double)fan_in);
    double add = !bias && k->ndim == 1 ? 1.0 : 0.0;
    assert_int_equal(ts_affine(&t, r, mul, add), 0);
    ts_free(r);
    return t;
}

/* A store of sdk_test_weight tensors for the keys `keep` accepts (NULL = all). */
static inline sdw_t *sdk_random_store(const keys_t *ks, bool (*keep)(const char *name))
{
    sdw_t *w = NULL;
    assert_int_equal(sdw_new(&w), 0);
    for (size_t i = 0; i < ks->n; i++)
        if (!keep || keep(ks->k[i].name))
            assert_int_equal(sdw_put(w, ks->k[i].name, sdk_test_weight(&ks->k[i], i)), 0);
    return w;
}

/* Every tensor a view of one zero buffer (sdk_zero_buffer), so a full-size layout costs no
 * more than that buffer. skip: a name left out; bad: a name given a wrong shape, one short in
 * dimension bad_dim (-1 = the last). */
static inline sdw_t *sdk_zero_store(const keys_t *ks, const float *zbuf, const char *skip, const char *bad,
                                    int bad_dim)
{
    sdw_t *w = NULL;
    assert_int_equal(sdw_new(&w), 0);
    for (size_t i = 0; i < ks->n; i++) {
        const key_t_ *k = &ks->k[i];
        if (skip && strcmp(k->name, skip) == 0)
            continue;
        int64_t shape[TS_MAX_DIMS];
        memcpy(shape, k->shape, sizeof shape);
        if (bad && strcmp(k->name, bad) == 0)
            shape[bad_dim < 0 ? k->ndim - 1 : bad_dim] -= 1;
        ts_tensor_t *t = NULL;
        assert_int_equal(ts_from_blob(&t, zbuf, TS_F32, shape, k->ndim, NULL, NULL), 0);
        assert_int_equal(sdw_put(w, k->name, t), 0);
    }
    return w;
}

/* Zeros big enough for the largest tensor of ks (freed by the caller once every view died). */
static inline float *sdk_zero_buffer(const keys_t *ks)
{
    int64_t big = 77;
    for (size_t i = 0; i < ks->n; i++)
        if (numel_of(&ks->k[i]) > big)
            big = numel_of(&ks->k[i]);
    float *z = calloc((size_t)big, sizeof *z);
    assert_non_null(z);
    return z;
}

#endif
