/* The CLIP text encoder (nodes/sd/clip_text.c, clip_config.c): the ViT-L/14 key layout and
 * its published parameter count, config detection for the full size (every tensor a view
 * of one shared zero buffer) with position_ids tolerated, head counts from metadata, every
 * tensor required and shape-checked, and the tiny encoder's outputs (last layer, clip skip,
 * ComfyUI weighting against the empty prompt, two 77-token rows) against the independent
 * Python reference tests/reference/clip_text.py (which reads the weights this test writes). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/sd.h"
#include "sd_testkit.h"


/* ------------------------------------------------------------------ key lists and stores */


static keys_t clip_keys(const sd_clip_config_t *cfg)
{
    keys_t ks = {0};
    assert_int_equal(sd_clip_keys(cfg, "", sdk_collect, &ks), 0);
    return ks;
}

static void add_position_ids(sdw_t *w, const float *zbuf)
{
    ts_tensor_t *t = NULL;
    const int64_t s[2] = {1, 77};
    assert_int_equal(ts_from_blob(&t, zbuf, TS_F32, s, 2, NULL, NULL), 0);
    assert_int_equal(sdw_put(w, "text_model.embeddings.position_ids", t), 0);
}

static size_t unused_count(const sdw_t *w)
{
    const char **names = NULL;
    size_t n = sdw_unused(w, &names);
    free(names);
    return n;
}

static void expect_config(const sd_clip_config_t *got, const sd_clip_config_t *want)
{
    assert_int_equal(got->layers, want->layers);
    assert_int_equal(got->hidden, want->hidden);
    assert_int_equal(got->heads, want->heads);
    assert_int_equal(got->intermediate, want->intermediate);
    assert_int_equal(got->vocab, want->vocab);
    assert_int_equal(got->positions, want->positions);
}

/* ------------------------------------------------------------------ layout and loading */

/* One intra-op thread: LeakSanitizer's exit-time scan crashes on the dynamic TLS of the
 * OpenMP workers libtorch starts for larger operations (and the machine is shared). */
static int setup(void **state)
{
    (void)state;
    return ts_init(1);
}

/* §1.2/§4.4: 196 weights, 123,060,480 parameters, HF CLIPTextModel names. */
static void test_sd15_layout(void **state)
{
    (void)state;
    sd_clip_config_t cfg;
    sd_clip_config_sd15(&cfg);
    keys_t ks = {0};
    assert_int_equal(sd_clip_keys(&cfg, "cond_stage_model.transformer.", sdk_collect, &ks), 0);
    assert_int_equal(ks.n, 196);
    int64_t total = 0;
    for (size_t i = 0; i < ks.n; i++) {
        total += numel_of(&ks.k[i]);
        assert_int_equal(strncmp(ks.k[i].name, "cond_stage_model.transformer.text_model.", 40), 0);
    }
    assert_int_equal(total, 123060480);
    assert_string_equal(ks.k[0].name,
                        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight");
    assert_true(ks.k[0].shape[0] == 49408 && ks.k[0].shape[1] == 768);
    assert_string_equal(ks.k[1].name,
                        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight");
    assert_true(ks.k[1].shape[0] == 77 && ks.k[1].shape[1] == 768);
    assert_string_equal(ks.k[ks.n - 1].name, "cond_stage_model.transformer.text_model.final_layer_norm.bias");
    struct {
        const char *name;
        int64_t s0, s1;
    } want[] = {
        {"text_model.encoder.layers.11.self_attn.q_proj.weight", 768, 768},
        {"text_model.encoder.layers.0.self_attn.out_proj.bias", 768, 0},
        {"text_model.encoder.layers.5.mlp.fc1.weight", 3072, 768},
        {"text_model.encoder.layers.5.mlp.fc1.bias", 3072, 0},
        {"text_model.encoder.layers.7.mlp.fc2.weight", 768, 3072},
        {"text_model.encoder.layers.3.layer_norm2.weight", 768, 0},
    };
    for (size_t j = 0; j < sizeof want / sizeof *want; j++) {
        size_t i = 0;
        while (i < ks.n && strcmp(ks.k[i].name + strlen("cond_stage_model.transformer."), want[j].name))
            i++;
        if (i == ks.n)
            fail_msg("missing key %s", want[j].name);
        assert_int_equal(ks.k[i].ndim, want[j].s1 ? 2 : 1);
        assert_int_equal(ks.k[i].shape[0], want[j].s0);
        if (want[j].s1)
            assert_int_equal(ks.k[i].shape[1], want[j].s1);
    }
    keys_free(&ks);
    cfg.heads = 7; /* 768 is not divisible by 7 */
    assert_int_equal(sd_clip_keys(&cfg, "", sdk_collect, &ks), BASE_E_INVAL);
}

/* The full size loads from shared zero views: config exactly SD1.5's (12 heads = 768/64
 * without metadata), every tensor consumed, position_ids accepted and not reported. */
static void test_sd15_detect_and_consume(void **state)
{
    (void)state;
    sd_clip_config_t want;
    sd_clip_config_sd15(&want);
    keys_t ks = clip_keys(&want);
    float *zbuf = sdk_zero_buffer(&ks);
    char err[512] = "";

    sdw_t *w = sdk_zero_store(&ks, zbuf, NULL, NULL, -1);
    add_position_ids(w, zbuf);
    sd_clip_t *c = NULL;
    if (sd_clip_load(&c, w, NULL, err, sizeof err))
        fail_msg("load: %s", err);
    expect_config(sd_clip_config(c), &want);
    assert_int_equal(unused_count(sd_clip_weights(c)), 0);
    sd_clip_free(c);

    /* Heads from metadata; unusable values are refused naming the key. */
    assert_int_equal(sd_clip_load(&c, sdk_zero_store(&ks, zbuf, NULL, NULL, -1), "16", err, sizeof err), 0);
    assert_int_equal(sd_clip_config(c)->heads, 16);
    sd_clip_free(c);
    const char *bad[] = {"5", "0", "-12", "12x", "", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(sd_clip_load(&c, sdk_zero_store(&ks, zbuf, NULL, NULL, -1), bad[i], err, sizeof err),
                         BASE_E_MODEL_FORMAT);
        assert_null(c);
        assert_non_null(strstr(err, "clip.num_heads"));
    }
    keys_free(&ks);
    free(zbuf);
}

/* Every tensor is required: leaving any one out, or giving it a wrong shape, fails with
 * BASE_E_MODEL_LAYOUT and a message naming it. Not a CLIP at all: same. */
static void test_every_tensor_required(void **state)
{
    (void)state;
    sd_clip_config_t cfg;
    sd_clip_config_tiny(&cfg);
    keys_t ks = clip_keys(&cfg);
    float *zbuf = sdk_zero_buffer(&ks);
    char err[512];
    sd_clip_t *c = NULL;
    for (size_t i = 0; i < ks.n; i++) {
        for (int mode = 0; mode < 2; mode++) {
            const char *name = ks.k[i].name;
            /* The token embedding's last dimension sets the width others are checked against. */
            int dim = strstr(name, "token_embedding") ? 0 : -1;
            sdw_t *w = sdk_zero_store(&ks, zbuf, mode ? NULL : name, mode ? name : NULL, dim);
            err[0] = '\0';
            int rc = sd_clip_load(&c, w, "2", err, sizeof err);
            if (rc != BASE_E_MODEL_LAYOUT || !strstr(err, name))
                fail_msg("%s %s: rc %d, err '%s'", mode ? "mis-shaped" : "missing", name, rc, err);
            assert_null(c);
        }
    }
    /* The tiny width 32 is no multiple of 64: heads must come from metadata. */
    assert_int_equal(sd_clip_load(&c, sdk_zero_store(&ks, zbuf, NULL, NULL, -1), NULL, err, sizeof err),
                     BASE_E_MODEL_FORMAT);
    assert_non_null(strstr(err, "clip.num_heads"));
    sdw_t *empty = NULL;
    assert_int_equal(sdw_new(&empty), 0);
    assert_int_equal(sd_clip_load(&c, empty, "2", err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_non_null(strstr(err, "token_embedding"));
    assert_int_equal(sd_clip_load(&c, NULL, "2", err, sizeof err), BASE_E_INVAL);
    keys_free(&ks);
    free(zbuf);
}

/* ------------------------------------------------------------------ numbers */

#define ROW CLIPT_ROW

typedef struct {
    int ndim;
    int64_t shape[3];
    double sum, abs_sum;
    int64_t idx[4];
    double val[4];
} check_t;

/* Printed by tests/reference/clip_text.py (float64) for the weights this test writes. */
static const struct {
    const char *label;
    check_t cond, pooled;
} REF[] = {
    {"A last",
     {3,
      {1, 77, 32},
      -25.2145782,
      2035.28009,
      {0, 70, 777, 2463},
      {-0.0473402907, 1.10982438, 0.863275908, 1.07007989}},
     {2,
      {1, 32},
      -0.722715507,
      26.457259,
      {0, 1, 9, 31},
      {0.16717197, 1.0706178, 0.469636906, -0.419081921}}},
    {"B skip",
     {3,
      {1, 77, 32},
      -40.2903884,
      2067.27914,
      {0, 70, 777, 2463},
      {0.0209902266, 2.2664775, 0.915092868, -0.0862781652}},
     {2,
      {1, 32},
      -0.722715507,
      26.457259,
      {0, 1, 9, 31},
      {0.16717197, 1.0706178, 0.469636906, -0.419081921}}},
    {"C weighted",
     {3,
      {1, 77, 32},
      -25.2871552,
      2035.71871,
      {0, 70, 777, 2463},
      {-0.0473402907, 1.03524962, 0.863275908, 1.07007989}},
     {2,
      {1, 32},
      -0.722715507,
      26.457259,
      {0, 1, 9, 31},
      {0.16717197, 1.0706178, 0.469636906, -0.419081921}}},
    {"D two rows",
     {3,
      {1, 154, 32},
      -37.2005671,
      4074.21703,
      {70, 777, 2500, 4927},
      {1.10982438, 0.863275908, -0.85547305, 1.02454856}},
     {2,
      {1, 32},
      -0.722715507,
      26.457259,
      {0, 1, 9, 31},
      {0.16717197, 1.0706178, 0.469636906, -0.419081921}}},
    {"E two rows weighted skip",
     {3,
      {1, 154, 32},
      -80.3491329,
      4129.05832,
      {70, 777, 2500, 4927},
      {2.2664775, 0.915092868, -0.837149829, -0.0389448295}},
     {2,
      {1, 32},
      -0.722715507,
      26.457259,
      {0, 1, 9, 31},
      {0.16717197, 1.0706178, 0.469636906, -0.419081921}}},
};

static float *read_all(const ts_tensor_t *t, int64_t *n)
{
    *n = ts_numel(t);
    float *v = malloc((size_t)*n * sizeof *v);
    assert_non_null(v);
    assert_int_equal(ts_to_host(t, TS_F32, v, (size_t)*n * sizeof *v), 0);
    return v;
}

static void expect_ref(const char *label, const ts_tensor_t *t, const check_t *want)
{
    int64_t s[TS_MAX_DIMS], n = 0;
    assert_int_equal(ts_shape(t, s), want->ndim);
    for (int d = 0; d < want->ndim; d++)
        assert_int_equal(s[d], want->shape[d]);
    float *v = read_all(t, &n);
    double sum = 0, abs_sum = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(isfinite(v[i]));
        sum += v[i];
        abs_sum += fabs(v[i]);
    }
    printf("%s sum %.9g abs_sum %.9g [%lld] %.9g [%lld] %.9g [%lld] %.9g [%lld] %.9g\n", label, sum, abs_sum,
           (long long)want->idx[0], v[want->idx[0]], (long long)want->idx[1], v[want->idx[1]],
           (long long)want->idx[2], v[want->idx[2]], (long long)want->idx[3], v[want->idx[3]]);
    /* float32 against float64: 1e-4 relative, sums relative to the absolute sum. */
    if (fabs(abs_sum - want->abs_sum) > 1e-4 * want->abs_sum || fabs(sum - want->sum) > 1e-4 * want->abs_sum)
        fail_msg("%s: sum %.9g abs_sum %.9g, want %.9g %.9g", label, sum, abs_sum, want->sum, want->abs_sum);
    for (int j = 0; j < 4; j++) {
        double g = v[want->idx[j]], e = want->val[j];
        if (fabs(g - e) > 1e-4 * fmax(1.0, fabs(e)))
            fail_msg("%s[%lld] = %.9g, want %.9g", label, (long long)want->idx[j], g, e);
    }
    free(v);
}

/* Rows as clipt_tokenize_weighted would give them: BOS, tokens, EOS padding. */
static void set_row(clipt_rows_t *r, size_t k, const int32_t *tokens, size_t n)
{
    int32_t *ids = r->ids + k * ROW;
    ids[0] = CLIPT_BOS;
    for (size_t j = 0; j < n; j++)
        ids[1 + j] = tokens[j];
    for (size_t j = n + 1; j < ROW; j++)
        ids[j] = CLIPT_EOS;
    for (size_t j = 0; j < ROW; j++)
        r->weights[k * ROW + j] = 1.0f;
}

static clipt_rows_t make_rows(size_t n)
{
    clipt_rows_t r = {.rows = n,
                      .ids = calloc(n * ROW + 1, sizeof(int32_t)),
                      .weights = calloc(n * ROW + 1, sizeof(float))};
    assert_true(r.ids && r.weights);
    return r;
}

static const int32_t CAT[] = {320, 1125, 539, 320, 2368}; /* "a photo of a cat" */
static const int32_t RED[] = {736};                       /* "red" */

static void dump_reference(sdw_t *w, const keys_t *ks)
{
    st_write_entry_t *e = calloc(ks->n, sizeof *e);
    assert_non_null(e);
    for (size_t i = 0; i < ks->n; i++) {
        const ts_tensor_t *t = sdw_get(w, ks->k[i].name);
        e[i].name = ks->k[i].name;
        e[i].dtype = ST_F32;
        e[i].ndim = ts_shape(t, e[i].shape);
        e[i].data = ts_data(t);
        assert_non_null(e[i].data);
    }
    char *dir = tu_fresh_dir("ref"), path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/clip_ref.safetensors", dir);
    if (st_write(path, e, ks->n, NULL, err, sizeof err))
        fail_msg("st_write: %s", err);
    printf("reference weights: %s\n", path);
    free(dir);
    free(e);
}

static void encode(const sd_clip_t *c, const clipt_rows_t *r, int layer, ts_tensor_t **cond,
                   ts_tensor_t **pooled)
{
    char err[512] = "";
    if (sd_clip_encode(c, r, layer, cond, pooled, err, sizeof err))
        fail_msg("encode: %s", err);
}

/* Max |a - b| over the first n elements of both. */
static double max_diff(const ts_tensor_t *a, const ts_tensor_t *b, int64_t n)
{
    int64_t na = 0, nb = 0;
    float *va = read_all(a, &na), *vb = read_all(b, &nb);
    assert_true(na >= n && nb >= n);
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)va[i] - (double)vb[i]));
    free(va);
    free(vb);
    return m;
}

static void test_tiny_against_reference(void **state)
{
    (void)state;
    sd_clip_config_t cfg;
    sd_clip_config_tiny(&cfg);
    keys_t ks = clip_keys(&cfg);
    sdw_t *w = sdk_random_store(&ks, NULL);
    dump_reference(w, &ks);
    char err[512] = "";
    sd_clip_t *c = NULL;
    assert_int_equal(sd_clip_load(&c, w, "2", err, sizeof err), 0);
    expect_config(sd_clip_config(c), &cfg);

    clipt_rows_t one = make_rows(1), two = make_rows(2);
    set_row(&one, 0, CAT, 5);
    set_row(&two, 0, CAT, 5);
    set_row(&two, 1, RED, 1);
    ts_tensor_t *cond[5] = {0}, *pooled[5] = {0};
    encode(c, &one, -1, &cond[0], &pooled[0]);
    encode(c, &one, -2, &cond[1], &pooled[1]);
    one.weights[2] = 1.5f; /* (photo:1.5) */
    encode(c, &one, -1, &cond[2], &pooled[2]);
    encode(c, &two, -1, &cond[3], &pooled[3]);
    two.weights[ROW + 1] = 0.5f; /* (red:0.5) in the second row */
    encode(c, &two, -2, &cond[4], &pooled[4]);
    for (int i = 0; i < 5; i++) {
        char label[64];
        snprintf(label, sizeof label, "%s cond", REF[i].label);
        expect_ref(label, cond[i], &REF[i].cond);
        snprintf(label, sizeof label, "%s pooled", REF[i].label);
        expect_ref(label, pooled[i], &REF[i].pooled);
    }
    /* Pooled comes from the last layer whatever the clip skip; the weighting touches only
     * tokens whose weight differs from 1; a second row leaves the first one alone. */
    assert_true(max_diff(pooled[0], pooled[1], 32) == 0);
    assert_true(max_diff(pooled[0], pooled[2], 32) < 1e-5);
    assert_true(max_diff(cond[0], cond[2], 2 * 32) < 1e-5);
    assert_true(max_diff(cond[0], cond[2], 3 * 32) > 1e-3);
    assert_true(max_diff(cond[0], cond[3], ROW * 32) < 1e-5);

    /* ComfyUI treats a layer index past the first layer as "last"; past the last is an
     * error; no rows encode the empty prompt. */
    ts_tensor_t *x = NULL, *y = NULL;
    one.weights[2] = 1.0f;
    encode(c, &one, -3, &x, &y);
    assert_true(max_diff(x, cond[0], ROW * 32) == 0);
    ts_free(x);
    ts_free(y);
    assert_int_equal(sd_clip_encode(c, &one, 2, &x, &y, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "layer 2"));
    assert_null(x);
    clipt_rows_t none = {.rows = 0, .ids = NULL, .weights = NULL}, empty = make_rows(1);
    set_row(&empty, 0, NULL, 0);
    ts_tensor_t *ex = NULL, *ey = NULL;
    encode(c, &none, -1, &x, &y);
    encode(c, &empty, -1, &ex, &ey);
    assert_int_equal(ts_size(x, 1), ROW);
    assert_true(max_diff(x, ex, ROW * 32) == 0 && max_diff(y, ey, 32) == 0);
    ts_free(x);
    ts_free(y);
    ts_free(ex);
    ts_free(ey);
    one.ids[3] = 49408;
    assert_int_equal(sd_clip_encode(c, &one, -1, &x, &y, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "49408"));
    assert_int_equal(sd_clip_encode(c, NULL, -1, &x, &y, err, sizeof err), BASE_E_INVAL);

    for (int i = 0; i < 5; i++) {
        ts_free(cond[i]);
        ts_free(pooled[i]);
    }
    clipt_rows_free(&one);
    clipt_rows_free(&two);
    clipt_rows_free(&empty);
    sd_clip_free(c);
    keys_free(&ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sd15_layout),
        cmocka_unit_test(test_sd15_detect_and_consume),
        cmocka_unit_test(test_every_tensor_required),
        cmocka_unit_test(test_tiny_against_reference),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
