#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "err.h"
#include "sd/sd.h"
#include "sd/unet_internal.h"
#include "tensor/tensor.h"

/* The UNet (nodes/sd/unet*.c): timestep embedding check values of the reference (§6), the
 * key layout and config detection for the full SD1.5 layout (every tensor a view of one
 * shared zero buffer, so no GBs), the tiny demo layout and a variant, load errors, and the
 * forward pass against tests/reference/unet.py on deterministic random weights.
 *
 * Regenerating the expected numbers: WEFT_UNET_DUMP=<dir> build-x/tests/test_nodes_sd_unet
 * writes <dir>/tiny.safetensors and <dir>/variant.safetensors (weights + inputs); then
 * /usr/bin/python3 tests/reference/unet.py <dir>/tiny.safetensors <dir>/variant.safetensors */

static const ts_device_t cpu = {TS_CPU, 0};

/* ------------------------------------------------------------------ layouts */

typedef struct {
    size_t n, cap;
    char **names;
    int64_t (*shapes)[4];
    int *ndims;
} keys_t;

static int collect(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    keys_t *k = ctx;
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 256;
        k->names = realloc(k->names, k->cap * sizeof *k->names);
        k->shapes = realloc(k->shapes, k->cap * sizeof *k->shapes);
        k->ndims = realloc(k->ndims, k->cap * sizeof *k->ndims);
        assert_non_null(k->names);
        assert_non_null(k->shapes);
        assert_non_null(k->ndims);
    }
    assert_true(ndim >= 1 && ndim <= 4);
    k->names[k->n] = strdup(name);
    assert_non_null(k->names[k->n]);
    memset(k->shapes[k->n], 0, sizeof k->shapes[k->n]);
    memcpy(k->shapes[k->n], shape, (size_t)ndim * sizeof *shape);
    k->ndims[k->n] = ndim;
    k->n++;
    return 0;
}

static keys_t keys_of(const sd_unet_config_t *cfg, const char *prefix)
{
    keys_t k = {0};
    assert_int_equal(sd_unet_keys(cfg, prefix, collect, &k), 0);
    return k;
}

static void keys_free(keys_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->names[i]);
    free(k->names);
    free(k->shapes);
    free(k->ndims);
    memset(k, 0, sizeof *k);
}

static int64_t numel_of(const keys_t *k, size_t i)
{
    int64_t n = 1;
    for (int d = 0; d < k->ndims[i]; d++)
        n *= k->shapes[i][d];
    return n;
}

static ssize_t key_index(const keys_t *k, const char *name)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->names[i], name) == 0)
            return (ssize_t)i;
    return -1;
}

/* A change to a layout: leave a tensor out, or give one a different shape. */
typedef struct {
    const char *omit;
    const char *reshape;
    int64_t shape[4];
    int ndim;
} tweak_t;

/* Deterministic weights: key i is ts_randn(seed i + 1) scaled by 1/sqrt(fan_in) for
 * conv/linear weights; norm weights 1 + 0.1 randn; biases 0.1 randn. */
static ts_tensor_t *random_weight(const keys_t *k, size_t i)
{
    ts_tensor_t *r = NULL, *t = NULL;
    assert_int_equal(ts_randn(&r, k->shapes[i], k->ndims[i], (uint64_t)i + 1, cpu), 0);
    double mul = 0.1, add = 0.0;
    size_t len = strlen(k->names[i]);
    if (k->ndims[i] >= 2)
        mul = 1.0 / sqrt((double)(numel_of(k, i) / k->shapes[i][0]));
    else if (len > 7 && strcmp(k->names[i] + len - 7, ".weight") == 0)
        add = 1.0;
    assert_int_equal(ts_affine(&t, r, mul, add), 0);
    ts_free(r);
    return t;
}

/* A store for layout k: random weights, or (shared != NULL) views of one zero buffer big
 * enough for the largest tensor. */
static sdw_t *make_store(const keys_t *k, const float *shared, const tweak_t *tw)
{
    sdw_t *w = NULL;
    assert_int_equal(sdw_new(&w), 0);
    for (size_t i = 0; i < k->n; i++) {
        if (tw && tw->omit && strcmp(tw->omit, k->names[i]) == 0)
            continue;
        const int64_t *shape = k->shapes[i];
        int ndim = k->ndims[i];
        if (tw && tw->reshape && strcmp(tw->reshape, k->names[i]) == 0) {
            shape = tw->shape;
            ndim = tw->ndim;
        }
        ts_tensor_t *t = NULL;
        if (shared)
            assert_int_equal(ts_from_blob(&t, shared, TS_F32, shape, ndim, NULL, NULL), 0);
        else
            t = random_weight(k, i);
        assert_int_equal(sdw_put(w, k->names[i], t), 0);
    }
    return w;
}

static float *shared_zeros(const keys_t *k, int64_t extra)
{
    int64_t most = 0;
    for (size_t i = 0; i < k->n; i++)
        if (numel_of(k, i) > most)
            most = numel_of(k, i);
    float *buf = calloc((size_t)(most + extra), sizeof *buf);
    assert_non_null(buf);
    return buf;
}

static void config_variant(sd_unet_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->in_channels = 4;
    c->out_channels = 8;
    c->model_channels = 32;
    c->time_embed_dim = 128;
    c->levels = 3;
    c->channel_mult[0] = 1;
    c->channel_mult[1] = 2;
    c->channel_mult[2] = 2;
    c->num_res_blocks = 2;
    c->transformer_depth[0] = 1;
    c->transformer_depth[1] = 0;
    c->transformer_depth[2] = 2;
    c->middle_depth = 2;
    c->context_dim = 24;
    c->num_heads = -1;
    c->num_head_channels = 16;
    c->linear_in_transformer = true;
}

static void assert_config_equal(const sd_unet_config_t *a, const sd_unet_config_t *b)
{
    assert_int_equal(a->in_channels, b->in_channels);
    assert_int_equal(a->out_channels, b->out_channels);
    assert_int_equal(a->model_channels, b->model_channels);
    assert_int_equal(a->time_embed_dim, b->time_embed_dim);
    assert_int_equal(a->levels, b->levels);
    for (int l = 0; l < 8; l++) {
        assert_int_equal(a->channel_mult[l], b->channel_mult[l]);
        assert_int_equal(a->transformer_depth[l], b->transformer_depth[l]);
    }
    assert_int_equal(a->num_res_blocks, b->num_res_blocks);
    assert_int_equal(a->middle_depth, b->middle_depth);
    assert_int_equal(a->context_dim, b->context_dim);
    assert_int_equal(a->num_heads, b->num_heads);
    assert_int_equal(a->num_head_channels, b->num_head_channels);
    assert_int_equal(a->linear_in_transformer, b->linear_in_transformer);
}

static void assert_all_used(const sd_unet_t *u)
{
    const char **names = NULL;
    size_t n = sdw_unused(sd_unet_weights(u), &names);
    if (n)
        fprintf(stderr, "unused: %s\n", names[0]);
    free(names);
    assert_int_equal(n, 0);
}

/* ------------------------------------------------------------------ timestep embedding */

static void test_timestep_embedding(void **state)
{
    (void)state;
    const float t[2] = {999.0f, 0.0f};
    const int64_t shape[1] = {2};
    ts_tensor_t *ts = NULL, *e = NULL;
    assert_int_equal(ts_from_host(&ts, t, TS_F32, shape, 1, cpu), 0);
    assert_int_equal(sd_timestep_embedding(ts, 320, &e), 0);
    int64_t s[TS_MAX_DIMS];
    assert_int_equal(ts_shape(e, s), 2);
    assert_int_equal(s[0], 2);
    assert_int_equal(s[1], 320);
    static float v[2 * 320];
    assert_int_equal(ts_to_host(e, TS_F32, v, sizeof v), 0);
    /* Reference §6: cos first, frequencies exp(-ln(1e4) i / 160). */
    const struct {
        int i;
        double v;
    } want[] = {{0, 0.999650},    {1, 0.802678},   {2, -0.278062}, {160, -0.026461},
                {161, 0.596413},  {162, -0.960563}, {319, 0.105622}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_float_equal(v[want[i].i], want[i].v, 2e-6);
    /* t = 0: cos 1, sin 0 everywhere. */
    for (int i = 0; i < 320; i++)
        assert_float_equal(v[320 + i], i < 160 ? 1.0 : 0.0, 0.0);
    ts_free(e);
    /* An odd width leaves the last column zero. */
    assert_int_equal(sd_timestep_embedding(ts, 5, &e), 0);
    assert_int_equal(ts_size(e, 1), 5);
    float o[10];
    assert_int_equal(ts_to_host(e, TS_F32, o, sizeof o), 0);
    assert_float_equal(o[0], cos(999.0), 1e-4);
    assert_float_equal(o[2], sin(999.0), 1e-4);
    assert_float_equal(o[4], 0.0, 0.0);
    assert_float_equal(o[9], 0.0, 0.0);
    ts_free(e);
    e = NULL;
    assert_int_equal(sd_timestep_embedding(ts, 0, &e), BASE_E_INVAL);
    assert_null(e);
    ts_free(ts);
}

/* ------------------------------------------------------------------ layouts and detection */

static void test_keys_sd15(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    sd_unet_config_sd15(&cfg);
    keys_t k = keys_of(&cfg, "model.diffusion_model.");
    /* Reference §1.2 / §9: 686 tensors, 859,520,964 parameters. */
    assert_int_equal(k.n, 686);
    int64_t params = 0;
    for (size_t i = 0; i < k.n; i++) {
        params += numel_of(&k, i);
        assert_int_equal(strncmp(k.names[i], "model.diffusion_model.", 22), 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(k.names[i], k.names[j]);
    }
    assert_int_equal(params, 859520964);
    const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
    } spot[] = {
        {"time_embed.0.weight", 2, {1280, 320}},
        {"input_blocks.0.0.weight", 4, {320, 4, 3, 3}},
        {"input_blocks.3.0.op.weight", 4, {320, 320, 3, 3}},
        {"input_blocks.4.0.skip_connection.weight", 4, {640, 320, 1, 1}},
        {"input_blocks.4.0.emb_layers.1.weight", 2, {640, 1280}},
        {"input_blocks.1.1.proj_in.weight", 4, {320, 320, 1, 1}},
        {"input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight", 2, {2560, 320}},
        {"input_blocks.1.1.transformer_blocks.0.ff.net.2.weight", 2, {320, 1280}},
        {"input_blocks.11.0.out_layers.3.bias", 1, {1280}},
        {"middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2, {1280, 768}},
        {"middle_block.2.in_layers.0.weight", 1, {1280}},
        {"output_blocks.0.0.in_layers.2.weight", 4, {1280, 2560, 3, 3}},
        {"output_blocks.2.1.conv.weight", 4, {1280, 1280, 3, 3}},
        {"output_blocks.5.0.skip_connection.weight", 4, {1280, 1920, 1, 1}},
        {"output_blocks.5.2.conv.weight", 4, {1280, 1280, 3, 3}},
        {"output_blocks.8.0.in_layers.0.weight", 1, {960}},
        {"output_blocks.8.2.conv.bias", 1, {640}},
        {"output_blocks.11.1.transformer_blocks.0.attn1.to_out.0.bias", 1, {320}},
        {"out.0.weight", 1, {320}},
        {"out.2.weight", 4, {4, 320, 3, 3}},
    };
    for (size_t i = 0; i < sizeof spot / sizeof spot[0]; i++) {
        char full[256];
        snprintf(full, sizeof full, "model.diffusion_model.%s", spot[i].name);
        ssize_t at = key_index(&k, full);
        if (at < 0)
            fail_msg("missing key %s", full);
        assert_int_equal(k.ndims[at], spot[i].ndim);
        for (int d = 0; d < spot[i].ndim; d++)
            assert_int_equal(k.shapes[at][d], spot[i].shape[d]);
    }
    /* No transformer at level 3, no upsample after the last output block, no bias on q/k/v. */
    assert_true(key_index(&k, "model.diffusion_model.input_blocks.10.1.norm.weight") < 0);
    assert_true(key_index(&k, "model.diffusion_model.output_blocks.11.2.conv.weight") < 0);
    assert_true(key_index(&k, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.bias") < 0);
    keys_free(&k);

    /* Configs the forward pass cannot run are refused. */
    cfg.model_channels = 48;
    assert_int_equal(sd_unet_keys(&cfg, "", collect, &k), BASE_E_INVAL);
    sd_unet_config_sd15(&cfg);
    cfg.num_heads = 3;
    assert_int_equal(sd_unet_keys(&cfg, "", collect, &k), BASE_E_INVAL);
    assert_int_equal(k.n, 0);
}

static int stop_at_3(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    (void)name;
    (void)shape;
    (void)ndim;
    int *n = ctx;
    return ++*n == 3 ? 42 : 0;
}

static void test_keys_stop(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    sd_unet_config_tiny(&cfg);
    int n = 0;
    assert_int_equal(sd_unet_keys(&cfg, NULL, stop_at_3, &n), 42);
    assert_int_equal(n, 3);
}

static void test_detect_sd15_full(void **state)
{
    (void)state;
    sd_unet_config_t want;
    sd_unet_config_sd15(&want);
    keys_t k = keys_of(&want, "");
    float *zeros = shared_zeros(&k, 0);
    sdw_t *w = make_store(&k, zeros, NULL);
    assert_int_equal(sdw_count(w), 686);
    sd_unet_t *u = NULL;
    char err[512] = "";
    int rc = sd_unet_load(&u, w, NULL, NULL, err, sizeof err);
    if (rc)
        fail_msg("load: %s", err);
    assert_config_equal(sd_unet_config(u), &want);
    assert_all_used(u);
    sd_unet_free(u);
    /* With the metadata ComfyUI's SD15 config implies, the same. */
    w = make_store(&k, zeros, NULL);
    assert_int_equal(sd_unet_load(&u, w, "8", NULL, err, sizeof err), 0);
    assert_config_equal(sd_unet_config(u), &want);
    sd_unet_free(u);
    keys_free(&k);
    free(zeros);
}

static void expect_load_error(const keys_t *k, const float *zeros, const tweak_t *tw,
                              const char *heads, const char *head_channels, int code,
                              const char *needle)
{
    sdw_t *w = make_store(k, zeros, tw);
    sd_unet_t *u = (sd_unet_t *)(uintptr_t)1;
    char err[512] = "";
    assert_int_equal(sd_unet_load(&u, w, heads, head_channels, err, sizeof err), code);
    assert_null(u);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void test_full_layout_errors(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    sd_unet_config_sd15(&cfg);
    keys_t k = keys_of(&cfg, "");
    float *zeros = shared_zeros(&k, 0);
    tweak_t tw = {.omit = "middle_block.1.proj_out.bias"};
    expect_load_error(&k, zeros, &tw, NULL, NULL, BASE_E_MODEL_LAYOUT, "middle_block.1.proj_out.bias");
    tw = (tweak_t){.reshape = "output_blocks.5.1.transformer_blocks.0.ff.net.2.weight",
                   .shape = {1280, 5000},
                   .ndim = 2};
    expect_load_error(&k, zeros, &tw, NULL, NULL, BASE_E_MODEL_LAYOUT,
                      "output_blocks.5.1.transformer_blocks.0.ff.net.2.weight");
    tw = (tweak_t){.reshape = "input_blocks.7.0.skip_connection.weight", .shape = {1280, 640, 3, 3}, .ndim = 4};
    expect_load_error(&k, zeros, &tw, NULL, NULL, BASE_E_MODEL_LAYOUT,
                      "input_blocks.7.0.skip_connection.weight");
    tw = (tweak_t){.reshape = "out.2.bias", .shape = {4, 1}, .ndim = 2};
    expect_load_error(&k, zeros, &tw, NULL, NULL, BASE_E_MODEL_LAYOUT, "out.2.bias");
    /* The cross-attention width must agree everywhere: context_dim comes from the first
     * transformer. */
    tw = (tweak_t){.reshape = "output_blocks.11.1.transformer_blocks.0.attn2.to_v.weight",
                   .shape = {320, 1024},
                   .ndim = 2};
    expect_load_error(&k, zeros, &tw, NULL, NULL, BASE_E_MODEL_LAYOUT,
                      "output_blocks.11.1.transformer_blocks.0.attn2.to_v.weight");
    /* Heads that cannot split the widths (320 % 3), bad metadata. */
    expect_load_error(&k, zeros, NULL, "3", NULL, BASE_E_MODEL_LAYOUT, "heads");
    expect_load_error(&k, zeros, NULL, "eight", NULL, BASE_E_MODEL_FORMAT, "unet.num_heads");
    expect_load_error(&k, zeros, NULL, NULL, "0", BASE_E_MODEL_FORMAT, "unet.num_head_channels");
    expect_load_error(&k, zeros, NULL, NULL, "48", BASE_E_MODEL_LAYOUT, "num_head_channels 48");
    /* An output transformer missing: the level structure is inconsistent. */
    keys_t k2 = {0};
    for (size_t i = 0; i < k.n; i++)
        if (strncmp(k.names[i], "output_blocks.3.1.transformer_blocks.", 37) != 0)
            collect(&k2, k.names[i], k.shapes[i], k.ndims[i]);
    expect_load_error(&k2, zeros, NULL, NULL, NULL, BASE_E_MODEL_LAYOUT, "output_blocks.3");
    keys_free(&k2);
    /* Not a UNet at all. */
    tw = (tweak_t){.omit = "input_blocks.0.0.weight"};
    expect_load_error(&k, zeros, &tw, NULL, NULL, BASE_E_MODEL_LAYOUT, "input_blocks.0.0.weight");
    keys_free(&k);
    free(zeros);
}

static void test_detect_tiny_and_variant(void **state)
{
    (void)state;
    sd_unet_config_t want;
    sd_unet_config_tiny(&want);
    /* The tiny demo config of the brief: heads dims 4 and 8 (8 heads over 32 and 64). */
    assert_int_equal(want.model_channels, 32);
    assert_int_equal(want.levels, 2);
    assert_int_equal(want.context_dim, 32);
    keys_t k = keys_of(&want, "");
    float *zeros = shared_zeros(&k, 0);
    sd_unet_t *u = NULL;
    char err[512] = "";
    assert_int_equal(sd_unet_load(&u, make_store(&k, zeros, NULL), "8", NULL, err, sizeof err), 0);
    assert_config_equal(sd_unet_config(u), &want);
    assert_all_used(u);
    sd_unet_free(u);
    /* An extra tensor loads (with a warning) and is the only unused one. */
    sdw_t *w = make_store(&k, zeros, NULL);
    ts_tensor_t *extra = NULL;
    const int64_t one[1] = {1};
    assert_int_equal(ts_zeros(&extra, one, 1, TS_F32, cpu), 0);
    assert_int_equal(sdw_put(w, "extra.weight", extra), 0);
    assert_int_equal(sd_unet_load(&u, w, NULL, NULL, err, sizeof err), 0);
    const char **names = NULL;
    assert_int_equal(sdw_unused(sd_unet_weights(u), &names), 1);
    assert_string_equal(names[0], "extra.weight");
    free(names);
    sd_unet_free(u);
    /* A class/ADM embedding (SDXL) is refused rather than silently ignored. */
    w = make_store(&k, zeros, NULL);
    extra = NULL;
    const int64_t le[2] = {128, 16}; /* fits the shared buffer */
    assert_int_equal(ts_from_blob(&extra, zeros, TS_F32, le, 2, NULL, NULL), 0);
    assert_int_equal(sdw_put(w, "label_emb.0.0.weight", extra), 0);
    assert_int_equal(sd_unet_load(&u, w, NULL, NULL, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_null(u);
    assert_non_null(strstr(err, "label_emb"));
    /* model_channels 48: the shapes detection reads say so; GroupNorm(32) cannot run it. */
    keys_t k48 = {0};
    for (size_t i = 0; i < k.n; i++) {
        int64_t s[4];
        memcpy(s, k.shapes[i], sizeof s);
        if (strcmp(k.names[i], "input_blocks.0.0.weight") == 0)
            s[0] = 48;
        if (strcmp(k.names[i], "input_blocks.1.0.out_layers.3.weight") == 0)
            s[0] = 48;
        if (strcmp(k.names[i], "input_blocks.3.0.out_layers.3.weight") == 0)
            s[0] = 96;
        collect(&k48, k.names[i], s, k.ndims[i]);
    }
    expect_load_error(&k48, zeros, NULL, NULL, NULL, BASE_E_MODEL_LAYOUT, "model_channels 48");
    keys_free(&k48);
    keys_free(&k);
    free(zeros);

    /* Variant: 3 levels, 2 ResBlocks, depths 1/0/2, middle depth 2, Linear proj_in (SD2
     * style), 16-channel heads, context 24, 8 output channels. */
    config_variant(&want);
    k = keys_of(&want, "");
    zeros = shared_zeros(&k, 0);
    assert_int_equal(sd_unet_load(&u, make_store(&k, zeros, NULL), NULL, "16", err, sizeof err), 0);
    assert_config_equal(sd_unet_config(u), &want);
    assert_all_used(u);
    sd_unet_free(u);
    assert_true(key_index(&k, "input_blocks.5.1.norm.weight") < 0);          /* level 1: none */
    assert_true(key_index(&k, "input_blocks.7.1.transformer_blocks.1.norm3.bias") >= 0);
    assert_true(key_index(&k, "middle_block.1.transformer_blocks.1.attn2.to_k.weight") >= 0);
    ssize_t at = key_index(&k, "input_blocks.1.1.proj_in.weight");
    assert_true(at >= 0);
    assert_int_equal(k.ndims[at], 2);
    /* 8 heads over 32 channels also work for the variant. */
    assert_int_equal(sd_unet_load(&u, make_store(&k, zeros, NULL), "8", NULL, err, sizeof err), 0);
    assert_int_equal(sd_unet_config(u)->num_heads, 8);
    assert_int_equal(sd_unet_config(u)->num_head_channels, -1);
    sd_unet_free(u);
    /* Dropping a whole ResBlock makes the level structure inconsistent. */
    keys_t k2 = {0};
    for (size_t i = 0; i < k.n; i++)
        if (strncmp(k.names[i], "input_blocks.2.", 15) != 0)
            collect(&k2, k.names[i], k.shapes[i], k.ndims[i]);
    expect_load_error(&k2, zeros, NULL, NULL, "16", BASE_E_MODEL_LAYOUT, "UNet");
    keys_free(&k2);
    keys_free(&k);
    free(zeros);
}

/* A load that fails after most tensors were fetched frees everything (ASan checks). */
static void test_load_fails_late(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    sd_unet_config_tiny(&cfg);
    keys_t k = keys_of(&cfg, "");
    tweak_t tw = {.omit = "out.2.bias"};
    sdw_t *w = make_store(&k, NULL, &tw);
    sd_unet_t *u = NULL;
    char err[512] = "";
    assert_int_equal(sd_unet_load(&u, w, NULL, NULL, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_null(u);
    assert_non_null(strstr(err, "out.2.bias"));
    assert_int_equal(sd_unet_load(&u, NULL, NULL, NULL, err, sizeof err), BASE_E_INVAL);
    keys_free(&k);
}

/* ------------------------------------------------------------------ forward */

/* A forward case: the whole UNet on x, t, ctx; or (prefix set) the one module named by
 * prefix on x, ctx (t unused). */
typedef struct {
    const char *name, *prefix;
    ts_tensor_t *x, *t, *ctx;
} fcase_t;

/* x = scale * randn(seed), context = randn(seed + 1). */
static fcase_t make_case(const char *name, int64_t b, int64_t c, int64_t h, int64_t w, int64_t l,
                         int64_t ctx_dim, const float *t, uint64_t seed, double scale)
{
    fcase_t fc = {.name = name, .prefix = NULL, .x = NULL, .t = NULL, .ctx = NULL};
    const int64_t xs[4] = {b, c, h, w}, cs[3] = {b, l, ctx_dim}, tsh[1] = {b};
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_randn(&r, xs, 4, seed, cpu), 0);
    assert_int_equal(ts_affine(&fc.x, r, scale, 0.0), 0);
    ts_free(r);
    assert_int_equal(ts_randn(&fc.ctx, cs, 3, seed + 1, cpu), 0);
    if (t)
        assert_int_equal(ts_from_host(&fc.t, t, TS_F32, tsh, 1, cpu), 0);
    return fc;
}

static void case_free(fcase_t *fc)
{
    ts_free(fc->x);
    ts_free(fc->t);
    ts_free(fc->ctx);
}

static void *host_copy(const ts_tensor_t *t)
{
    size_t n = (size_t)ts_numel(t) * sizeof(float);
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    assert_int_equal(ts_to_host(t, TS_F32, p, n), 0);
    return p;
}

/* WEFT_UNET_DUMP=<dir>: writes the weights and the cases for tests/reference/unet.py. */
static void maybe_dump(const char *file, const keys_t *k, const fcase_t *cases, size_t nc,
                       const char *meta_key, const char *meta_val)
{
    const char *dir = getenv("WEFT_UNET_DUMP");
    if (!dir)
        return;
    size_t n = k->n + 3 * nc, nm = 0;
    st_write_entry_t *e = calloc(n, sizeof *e);
    ts_tensor_t **owned = calloc(n, sizeof *owned);
    void **host = calloc(n, sizeof *host);
    char **names = calloc(n, sizeof *names);
    char **meta_keys = calloc(nc + 1, sizeof *meta_keys);
    const char **meta = calloc(2 * nc + 3, sizeof *meta);
    assert_true(e && owned && host && names && meta_keys && meta);
    meta[nm++] = meta_key;
    meta[nm++] = meta_val;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const ts_tensor_t *t = NULL;
        if (i < k->n) {
            owned[i] = random_weight(k, i);
            t = owned[i];
            names[i] = strdup(k->names[i]);
        } else {
            const fcase_t *fc = &cases[(i - k->n) / 3];
            int part = (int)((i - k->n) % 3);
            t = part == 0 ? fc->x : part == 1 ? fc->t : fc->ctx;
            if (!t)
                continue; /* a module case has no timesteps */
            names[i] = malloc(96);
            assert_non_null(names[i]);
            snprintf(names[i], 96, "%s.%s.%s", fc->prefix ? "block" : "case", fc->name,
                     part == 0 ? "x" : part == 1 ? "t" : "context");
            if (fc->prefix && part == 0) {
                meta_keys[nc] = malloc(96);
                assert_non_null(meta_keys[nc]);
                snprintf(meta_keys[nc], 96, "block.%s.prefix", fc->name);
                meta[nm++] = meta_keys[nc];
                meta[nm++] = fc->prefix;
                meta_keys[(i - k->n) / 3] = meta_keys[nc];
                meta_keys[nc] = NULL;
            }
        }
        host[m] = host_copy(t);
        e[m].name = names[i];
        e[m].dtype = ST_F32;
        e[m].ndim = ts_shape(t, e[m].shape);
        e[m].data = host[m];
        m++;
    }
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (st_write(path, e, m, meta, err, sizeof err))
        fail_msg("dump %s: %s", path, err);
    fprintf(stderr, "wrote %s\n", path);
    for (size_t i = 0; i < n; i++) {
        ts_free(owned[i]);
        free(host[i]);
        free(names[i]);
    }
    for (size_t i = 0; i <= nc; i++)
        free(meta_keys[i]);
    free(meta_keys);
    free(meta);
    free(e);
    free(owned);
    free(host);
    free(names);
}

typedef struct {
    int64_t i;
    double v;
} probe_t;

/* eps at the probed flat indices and its sum / abs-sum against tests/reference/unet.py. */
static void check_eps(const ts_tensor_t *eps, const probe_t *p, size_t np, double sum, double abs_sum)
{
    float *v = host_copy(eps);
    int64_t n = ts_numel(eps);
    double s = 0, a = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(isfinite(v[i]));
        s += v[i];
        a += fabs(v[i]);
    }
    for (size_t i = 0; i < np; i++) {
        assert_true(p[i].i < n);
        double tol = 1e-4 * fmax(1.0, fabs(p[i].v));
        if (fabs(v[p[i].i] - p[i].v) > tol)
            fail_msg("eps[%lld] = %.8g, reference %.8g", (long long)p[i].i, v[p[i].i], p[i].v);
    }
    fprintf(stderr, "eps sum %.10g abs-sum %.10g (reference %.10g %.10g)\n", s, a, sum, abs_sum);
    if (fabs(s - sum) > 1e-5 * abs_sum || fabs(a - abs_sum) > 1e-5 * abs_sum)
        fail_msg("eps sum %.10g abs-sum %.10g, reference %.10g %.10g", s, a, sum, abs_sum);
    free(v);
}

static ts_tensor_t *run(const sd_unet_t *u, const fcase_t *fc)
{
    ts_tensor_t *eps = NULL;
    char err[512] = "";
    int rc = sd_unet_forward(u, fc->x, fc->t, fc->ctx, &eps, err, sizeof err);
    if (rc)
        fail_msg("forward %s: %s", fc->name, err);
    int64_t xs[TS_MAX_DIMS], es[TS_MAX_DIMS];
    assert_int_equal(ts_shape(eps, es), 4);
    ts_shape(fc->x, xs);
    assert_int_equal(es[0], xs[0]);
    assert_int_equal(es[1], sd_unet_config(u)->out_channels);
    assert_int_equal(es[2], xs[2]);
    assert_int_equal(es[3], xs[3]);
    return eps;
}

/* One SpatialTransformer alone (white box: the model's internal block list). */
static ts_tensor_t *run_st(const unet_st_t *st, const fcase_t *fc)
{
    ts_tensor_t *y = NULL;
    assert_int_equal(unet_st_forward(st, fc->x, fc->ctx, &y), 0);
    int64_t xs[TS_MAX_DIMS], ys[TS_MAX_DIMS];
    assert_int_equal(ts_shape(y, ys), ts_shape(fc->x, xs));
    assert_memory_equal(xs, ys, 4 * sizeof *xs);
    return y;
}

static sd_unet_t *load_random(const sd_unet_config_t *cfg, const char *heads, const char *hc, keys_t *k)
{
    *k = keys_of(cfg, "");
    sd_unet_t *u = NULL;
    char err[512] = "";
    if (sd_unet_load(&u, make_store(k, NULL, NULL), heads, hc, err, sizeof err))
        fail_msg("load: %s", err);
    return u;
}

/* Expected values: tests/reference/unet.py on the WEFT_UNET_DUMP files. */
static const probe_t tiny_main[] = {
    {0, 0.022116799},   {1, -0.036985911},  {2, -0.3325001},   {37, 0.87153476},
    {100, -0.20618387}, {251, -0.21095601}, {255, -0.27600765}, {256, 0.24643804},
    {300, -1.363516},   {511, 0.3938936},
};
static const double tiny_main_sum = -28.53624015, tiny_main_abs = 214.5433667;
static const probe_t tiny_odd[] = {
    {0, 0.20730215},   {1, -0.1061414},   {2, 0.25719121},
    {37, -0.73248947}, {100, 0.36712685}, {251, 0.02490247},
};
static const double tiny_odd_sum = -6.661818316, tiny_odd_abs = 100.5388944;
static const probe_t tiny_quiet[] = {
    {0, 0.63730764}, {1, -0.5548718}, {2, -0.46006501}, {37, 0.44555122},
    {100, 0.55229908}, {251, -0.49689385}, {255, -0.21325091}, {256, 0.32869378},
    {300, 0.28088915}, {511, 0.11806497},
};
static const double tiny_quiet_sum = -30.067112, tiny_quiet_abs = 222.4977837;
static const probe_t tiny_st0[] = {
    {0, 0.95638275}, {1, 1.2470205}, {2, 0.69559765}, {37, 0.51078618},
    {100, 0.012032324}, {251, 1.0712153}, {255, -3.1955237}, {256, 0.80431271},
    {300, -0.048463229}, {511, 1.3997145},
};
static const double tiny_st0_sum = -42.62477276, tiny_st0_abs = 892.2116964;
static const probe_t tiny_st1[] = {
    {0, 0.51803774}, {1, 1.4307324}, {2, 0.03843075}, {37, -1.3877758},
    {100, -0.010294042}, {251, -0.47920701}, {255, -0.33513603}, {256, -1.0154157},
    {300, -0.16052715}, {511, -0.67140973},
};
static const double tiny_st1_sum = 0.2693577685, tiny_st1_abs = 862.6223492;
static const probe_t variant_main[] = {
    {0, -0.068719238}, {1, 0.40229082},    {2, -0.14551432},  {37, 0.15488136},
    {100, -0.22775507}, {251, 0.28996062}, {255, 0.057212062}, {256, -0.54752725},
    {300, -0.78233927}, {511, 0.63295764},
};
static const double variant_main_sum = -54.39331841, variant_main_abs = 459.8833875;

#define NPROBE(a) (sizeof(a) / sizeof((a)[0]))

static void test_forward_tiny(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    sd_unet_config_tiny(&cfg);
    keys_t k;
    sd_unet_t *u = load_random(&cfg, "8", NULL, &k);
    const float t2[2] = {999.0f, 500.0f}, t1[1] = {250.0f}, tq[2] = {10.0f, 900.0f};
    fcase_t cases[5] = {
        make_case("main", 2, 4, 8, 8, 77, 32, t2, 9001, 1.0),
        /* odd latent size (upsample to the skip's 5x4 -> 9x7) and a two-chunk prompt */
        make_case("odd", 1, 4, 9, 7, 154, 32, t1, 9101, 1.0),
        /* a near-silent latent: the ResBlock GroupNorm eps (1e-5) dominates the variance */
        make_case("quiet", 2, 4, 8, 8, 77, 32, tq, 9301, 1e-3),
        /* SpatialTransformers alone on near-silent inputs: their GroupNorm eps is 1e-6 */
        make_case("st0", 2, 32, 4, 4, 77, 32, NULL, 9401, 1e-3),
        make_case("st1", 1, 64, 3, 5, 77, 32, NULL, 9501, 1e-3),
    };
    cases[3].prefix = "input_blocks.1.1.";
    cases[4].prefix = "output_blocks.1.1.";
    maybe_dump("tiny.safetensors", &k, cases, 5, "unet.num_heads", "8");
    ts_tensor_t *eps = run(u, &cases[0]);
    check_eps(eps, tiny_main, NPROBE(tiny_main), tiny_main_sum, tiny_main_abs);

    /* Batch items are independent: item 0 alone gives the same eps (CFG batches of 2). */
    fcase_t one = {.name = "one", .prefix = NULL, .x = NULL, .t = NULL, .ctx = NULL};
    assert_int_equal(ts_slice(&one.x, cases[0].x, 0, 0, 1), 0);
    assert_int_equal(ts_slice(&one.t, cases[0].t, 0, 0, 1), 0);
    assert_int_equal(ts_slice(&one.ctx, cases[0].ctx, 0, 0, 1), 0);
    ts_tensor_t *e1 = run(u, &one);
    float *a = host_copy(eps), *b = host_copy(e1);
    for (int64_t i = 0; i < ts_numel(e1); i++)
        assert_float_equal(a[i], b[i], 1e-5);
    free(a);
    free(b);
    ts_free(e1);
    case_free(&one);
    ts_free(eps);

    eps = run(u, &cases[1]);
    check_eps(eps, tiny_odd, NPROBE(tiny_odd), tiny_odd_sum, tiny_odd_abs);
    ts_free(eps);
    eps = run(u, &cases[2]);
    check_eps(eps, tiny_quiet, NPROBE(tiny_quiet), tiny_quiet_sum, tiny_quiet_abs);
    ts_free(eps);
    assert_true(u->in_blocks[1].has_st && u->out_blocks[1].has_st);
    eps = run_st(&u->in_blocks[1].st, &cases[3]);
    check_eps(eps, tiny_st0, NPROBE(tiny_st0), tiny_st0_sum, tiny_st0_abs);
    ts_free(eps);
    eps = run_st(&u->out_blocks[1].st, &cases[4]);
    check_eps(eps, tiny_st1, NPROBE(tiny_st1), tiny_st1_sum, tiny_st1_abs);
    ts_free(eps);
    for (int i = 0; i < 5; i++)
        case_free(&cases[i]);
    sd_unet_free(u);
    keys_free(&k);
}

static void test_forward_variant(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    config_variant(&cfg);
    keys_t k;
    sd_unet_t *u = load_random(&cfg, NULL, "16", &k);
    const float t2[2] = {1.0f, 730.0f};
    fcase_t c = make_case("main", 2, 4, 8, 8, 77, 24, t2, 9201, 1.0);
    maybe_dump("variant.safetensors", &k, &c, 1, "unet.num_head_channels", "16");
    ts_tensor_t *eps = run(u, &c);
    check_eps(eps, variant_main, NPROBE(variant_main), variant_main_sum, variant_main_abs);
    ts_free(eps);
    case_free(&c);
    sd_unet_free(u);
    keys_free(&k);
}

static void test_forward_bad_inputs(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    sd_unet_config_tiny(&cfg);
    keys_t k;
    sd_unet_t *u = load_random(&cfg, NULL, NULL, &k);
    const float t2[2] = {999.0f, 500.0f};
    fcase_t ok = make_case("ok", 2, 4, 8, 8, 77, 32, t2, 1, 1.0);
    fcase_t c3 = make_case("c3", 2, 3, 8, 8, 77, 32, t2, 1, 1.0);
    fcase_t wide = make_case("wide", 2, 4, 8, 8, 77, 768, t2, 1, 1.0);
    ts_tensor_t *eps = NULL, *t1 = NULL;
    char err[512] = "";
    assert_int_equal(sd_unet_forward(u, c3.x, ok.t, ok.ctx, &eps, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "[2,3,8,8]"));
    assert_int_equal(sd_unet_forward(u, ok.x, ok.t, wide.ctx, &eps, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "context"));
    assert_int_equal(sd_unet_forward(u, ok.x, ok.t, NULL, &eps, err, sizeof err), BASE_E_INVAL);
    assert_int_equal(ts_slice(&t1, ok.t, 0, 0, 1), 0);
    assert_int_equal(sd_unet_forward(u, ok.x, t1, ok.ctx, &eps, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "timesteps"));
    assert_null(eps);
    /* A failure deep inside (float64 context meets float32 weights in the first
     * cross-attention) frees the skips and intermediates and reports the tensor error. */
    ts_tensor_t *ctx64 = NULL;
    assert_int_equal(ts_to(&ctx64, ok.ctx, TS_F64, cpu), 0);
    int rc = sd_unet_forward(u, ok.x, ok.t, ctx64, &eps, err, sizeof err);
    assert_true(rc < 0);
    assert_null(eps);
    assert_non_null(strstr(err, "UNet forward pass failed"));
    ts_free(ctx64);
    ts_free(t1);
    case_free(&ok);
    case_free(&c3);
    case_free(&wide);
    sd_unet_free(u);
    keys_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestep_embedding),
        cmocka_unit_test(test_keys_sd15),
        cmocka_unit_test(test_keys_stop),
        cmocka_unit_test(test_detect_sd15_full),
        cmocka_unit_test(test_full_layout_errors),
        cmocka_unit_test(test_detect_tiny_and_variant),
        cmocka_unit_test(test_load_fails_late),
        cmocka_unit_test(test_forward_tiny),
        cmocka_unit_test(test_forward_variant),
        cmocka_unit_test(test_forward_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
