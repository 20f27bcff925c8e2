/* The SD1.x VAE (nodes/sd/vae.c, vae_config.c): the key layout and its published counts,
 * config detection for the full SD1.5 size (every tensor a view of one shared zero buffer)
 * and the tiny demo size, every tensor required and shape-checked, decoder-only files, and
 * decode/encode values of the tiny VAE against the independent Python reference
 * tests/reference/vae.py (which reads the weights this test writes). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/sd.h"
#include "sd_testkit.h"

static const ts_device_t CPU = {TS_CPU, 0};

/* ------------------------------------------------------------------ key lists */


static keys_t vae_keys(const sd_vae_config_t *cfg)
{
    keys_t ks = {0};
    assert_int_equal(sd_vae_keys(cfg, "", sdk_collect, &ks), 0);
    return ks;
}

static bool starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* ------------------------------------------------------------------ stores */

static void expect_config(const sd_vae_config_t *got, const sd_vae_config_t *want)
{
    assert_int_equal(got->ch, want->ch);
    assert_int_equal(got->levels, want->levels);
    for (int l = 0; l < want->levels; l++)
        assert_int_equal(got->ch_mult[l], want->ch_mult[l]);
    assert_int_equal(got->num_res_blocks, want->num_res_blocks);
    assert_int_equal(got->z_channels, want->z_channels);
    assert_int_equal(got->embed_dim, want->embed_dim);
    assert_int_equal(got->in_channels, want->in_channels);
    assert_int_equal(got->out_ch, want->out_ch);
}

static size_t unused_count(const sdw_t *w)
{
    const char **names = NULL;
    size_t n = sdw_unused(w, &names);
    free(names);
    return n;
}

/* ------------------------------------------------------------------ tests */

/* One intra-op thread: LeakSanitizer's exit-time scan crashes on the dynamic TLS of the
 * OpenMP workers libtorch starts for larger convolutions (and the machine is shared). */
static int setup(void **state)
{
    (void)state;
    return ts_init(1);
}

/* §1.2/§9: 248 tensors, 83,653,863 parameters, of which encoder + quant_conv 34,163,664
 * and decoder + post_quant_conv 49,490,199; names and shapes of §3.2. */
static void test_sd15_layout(void **state)
{
    (void)state;
    sd_vae_config_t cfg;
    sd_vae_config_sd15(&cfg);
    keys_t ks = vae_keys(&cfg);
    assert_int_equal(ks.n, 248);
    int64_t total = 0, enc = 0, dec = 0;
    for (size_t i = 0; i < ks.n; i++) {
        int64_t n = numel_of(&ks.k[i]);
        total += n;
        if (starts(ks.k[i].name, "encoder.") || starts(ks.k[i].name, "quant_conv."))
            enc += n;
        else if (starts(ks.k[i].name, "decoder.") || starts(ks.k[i].name, "post_quant_conv."))
            dec += n;
        else
            fail_msg("unexpected key %s", ks.k[i].name);
    }
    assert_int_equal(total, 83653863);
    assert_int_equal(enc, 34163664);
    assert_int_equal(dec, 49490199);

    /* Spot checks of §3.2's table. */
    struct {
        const char *name;
        int ndim;
        int64_t shape[4];
    } want[] = {
        {"encoder.conv_in.weight", 4, {128, 3, 3, 3}},
        {"encoder.down.1.block.0.nin_shortcut.weight", 4, {256, 128, 1, 1}},
        {"encoder.down.2.downsample.conv.weight", 4, {512, 512, 3, 3}},
        {"encoder.mid.attn_1.q.weight", 4, {512, 512, 1, 1}},
        {"encoder.conv_out.weight", 4, {8, 512, 3, 3}},
        {"quant_conv.weight", 4, {8, 8, 1, 1}},
        {"post_quant_conv.weight", 4, {4, 4, 1, 1}},
        {"decoder.conv_in.weight", 4, {512, 4, 3, 3}},
        {"decoder.up.3.block.2.conv2.weight", 4, {512, 512, 3, 3}},
        {"decoder.up.1.block.0.nin_shortcut.weight", 4, {256, 512, 1, 1}},
        {"decoder.up.0.block.0.nin_shortcut.weight", 4, {128, 256, 1, 1}},
        {"decoder.up.1.upsample.conv.weight", 4, {256, 256, 3, 3}},
        {"decoder.norm_out.bias", 1, {128}},
        {"decoder.conv_out.weight", 4, {3, 128, 3, 3}},
    };
    for (size_t j = 0; j < sizeof want / sizeof *want; j++) {
        size_t i = 0;
        while (i < ks.n && strcmp(ks.k[i].name, want[j].name))
            i++;
        if (i == ks.n)
            fail_msg("missing key %s", want[j].name);
        assert_int_equal(ks.k[i].ndim, want[j].ndim);
        for (int d = 0; d < want[j].ndim; d++)
            assert_int_equal(ks.k[i].shape[d], want[j].shape[d]);
    }
    for (size_t i = 0; i < ks.n; i++) /* no upsample at level 0, no downsample at the last */
        assert_true(!starts(ks.k[i].name, "decoder.up.0.upsample") &&
                    !starts(ks.k[i].name, "encoder.down.3.down"));
    keys_free(&ks);

    /* The prefix is prepended; a stop request from the callback is passed back. */
    keys_t pk = {0};
    assert_int_equal(sd_vae_keys(&cfg, "first_stage_model.", sdk_collect, &pk), 0);
    assert_string_equal(pk.k[0].name, "first_stage_model.encoder.conv_in.weight");
    keys_free(&pk);
    sd_vae_config_t bad = cfg;
    bad.levels = 0;
    assert_int_equal(sd_vae_keys(&bad, "", sdk_collect, &pk), BASE_E_INVAL);
}

/* The full-size layout loads from shared zero views: config detected exactly as SD1.5,
 * every tensor consumed; an extra tensor is tolerated but reported by sdw_unused. */
static void test_sd15_detect_and_consume(void **state)
{
    (void)state;
    sd_vae_config_t want;
    sd_vae_config_sd15(&want);
    keys_t ks = vae_keys(&want);
    float *zbuf = sdk_zero_buffer(&ks);
    char err[512] = "";

    sdw_t *w = sdk_zero_store(&ks, zbuf, NULL, NULL, -1);
    ts_tensor_t *extra = NULL;
    const int64_t es[1] = {7};
    assert_int_equal(ts_from_blob(&extra, zbuf, TS_F32, es, 1, NULL, NULL), 0);
    assert_int_equal(sdw_put(w, "decoder.some_extra", extra), 0);
    sd_vae_t *v = NULL;
    assert_int_equal(sd_vae_load(&v, w, err, sizeof err), 0);
    expect_config(sd_vae_config(v), &want);
    const char **names = NULL;
    assert_int_equal(sdw_unused(sd_vae_weights(v), &names), 1);
    assert_string_equal(names[0], "decoder.some_extra");
    free(names);
    sd_vae_free(v);
    keys_free(&ks);
    free(zbuf);
}

/* Every tensor is required: leaving any one out, or giving it a wrong shape, fails with
 * BASE_E_MODEL_LAYOUT and a message naming it. */
static void test_every_tensor_required(void **state)
{
    (void)state;
    sd_vae_config_t cfg;
    sd_vae_config_tiny(&cfg);
    keys_t ks = vae_keys(&cfg);
    float *zbuf = sdk_zero_buffer(&ks);
    char err[512];
    for (size_t i = 0; i < ks.n; i++) {
        for (int mode = 0; mode < 2; mode++) {
            const char *name = ks.k[i].name;
            sdw_t *w = sdk_zero_store(&ks, zbuf, mode ? NULL : name, mode ? name : NULL, -1);
            sd_vae_t *v = NULL;
            err[0] = '\0';
            int rc = sd_vae_load(&v, w, err, sizeof err);
            if (rc != BASE_E_MODEL_LAYOUT || !strstr(err, name))
                fail_msg("%s %s: rc %d, err '%s'", mode ? "mis-shaped" : "missing", name, rc, err);
            assert_null(v);
        }
    }
    keys_free(&ks);
    free(zbuf);
}

static bool decoder_only(const char *name)
{
    return !starts(name, "encoder.") && !starts(name, "quant_conv.");
}

static bool has_encoder_only(const char *name)
{
    return !decoder_only(name);
}

static void read_all(const ts_tensor_t *t, float *buf, size_t n)
{
    assert_int_equal(ts_numel(t), (int64_t)n);
    assert_int_equal(ts_to_host(t, TS_F32, buf, n * sizeof *buf), 0);
}

/* A decoder-only store loads with the tiny config (in_channels defaulting to 3), decodes
 * exactly like the full VAE, and refuses to encode with a clear message. A store without a
 * decoder is not a VAE. */
static void test_decoder_only(void **state)
{
    (void)state;
    sd_vae_config_t want;
    sd_vae_config_tiny(&want);
    keys_t ks = vae_keys(&want);
    char err[512] = "";
    sd_vae_t *full = NULL, *dec = NULL;
    assert_int_equal(sd_vae_load(&full, sdk_random_store(&ks, NULL), err, sizeof err), 0);
    assert_int_equal(sd_vae_load(&dec, sdk_random_store(&ks, decoder_only), err, sizeof err), 0);
    expect_config(sd_vae_config(full), &want);
    expect_config(sd_vae_config(dec), &want);
    assert_int_equal(unused_count(sd_vae_weights(full)), 0);
    assert_int_equal(unused_count(sd_vae_weights(dec)), 0);

    ts_tensor_t *z = NULL, *a = NULL, *b = NULL, *mean = NULL;
    const int64_t zs[4] = {1, 4, 2, 3};
    assert_int_equal(ts_randn(&z, zs, 4, 7, CPU), 0);
    assert_int_equal(sd_vae_decode(full, z, &a, err, sizeof err), 0);
    assert_int_equal(sd_vae_decode(dec, z, &b, err, sizeof err), 0);
    int64_t s[TS_MAX_DIMS];
    assert_int_equal(ts_shape(b, s), 4);
    assert_true(s[0] == 1 && s[1] == 3 && s[2] == 16 && s[3] == 24);
    float fa[3 * 16 * 24], fb[3 * 16 * 24];
    read_all(a, fa, 3 * 16 * 24);
    read_all(b, fb, 3 * 16 * 24);
    assert_memory_equal(fa, fb, sizeof fa);

    err[0] = '\0';
    assert_int_equal(sd_vae_encode(dec, b, &mean, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_null(mean);
    assert_non_null(strstr(err, "no encoder"));

    /* Bad inputs are refused with a message, not an abort. */
    assert_int_equal(sd_vae_decode(full, b, &mean, err, sizeof err), BASE_E_INVAL); /* 3 channels */
    assert_non_null(strstr(err, "[batch, 4, height, width]"));
    ts_tensor_t *odd = NULL;
    const int64_t os[4] = {1, 3, 12, 16};
    assert_int_equal(ts_zeros(&odd, os, 4, TS_F32, CPU), 0);
    assert_int_equal(sd_vae_encode(full, odd, &mean, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "multiples of 8"));
    ts_free(odd);
    ts_free(z);
    ts_free(a);
    ts_free(b);
    sd_vae_free(full);
    sd_vae_free(dec);

    sd_vae_t *none = NULL;
    assert_int_equal(sd_vae_load(&none, sdk_random_store(&ks, has_encoder_only), err, sizeof err),
                     BASE_E_MODEL_LAYOUT);
    assert_non_null(strstr(err, "decoder.conv_in.weight"));
    assert_int_equal(sd_vae_load(&none, NULL, err, sizeof err), BASE_E_INVAL);
    keys_free(&ks);
}

/* Check values printed by tests/reference/vae.py (float64 torch.nn.functional) for the
 * weights and inputs this test writes. */
typedef struct {
    int64_t shape[4];
    double sum, abs_sum;
    int64_t idx[4];
    double val[4];
} check_t;

static const check_t DECODE_REF = {
    {2, 3, 32, 32},
    -567.96229,
    2672.32801,
    {0, 1, 777, 6143},
    {-0.209215976, -0.166171452, 0.289375473, -0.170420689},
};
static const check_t ENCODE_REF = {
    {2, 4, 4, 4},
    -1.37947828,
    53.0236221,
    {0, 1, 9, 127},
    {-0.407452444, 0.821558121, 0.610146906, -0.280871865},
};

static void expect_ref(const char *label, const ts_tensor_t *t, const check_t *want)
{
    int64_t s[TS_MAX_DIMS];
    assert_int_equal(ts_shape(t, s), 4);
    int64_t n = 1;
    for (int d = 0; d < 4; d++) {
        assert_int_equal(s[d], want->shape[d]);
        n *= s[d];
    }
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    read_all(t, v, (size_t)n);
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

/* Writes the weights and inputs for tests/reference/vae.py. */
static void dump_reference(const sdw_t *w, const keys_t *ks, ts_tensor_t *z, ts_tensor_t *img)
{
    size_t n = ks->n + 2;
    st_write_entry_t *e = calloc(n, sizeof *e);
    assert_non_null(e);
    sdw_t *ww = (sdw_t *)w; /* sdw_get only marks the tensor used */
    for (size_t i = 0; i < n; i++) {
        const ts_tensor_t *t = i < ks->n ? sdw_get(ww, ks->k[i].name) : i == ks->n ? z : img;
        e[i].name = i < ks->n ? ks->k[i].name : i == ks->n ? "input.z" : "input.image";
        e[i].dtype = ST_F32;
        e[i].ndim = ts_shape(t, e[i].shape);
        e[i].data = ts_data(t);
        assert_non_null(e[i].data);
    }
    char *dir = tu_fresh_dir("ref"), path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/vae_ref.safetensors", dir);
    if (st_write(path, e, n, NULL, err, sizeof err))
        fail_msg("st_write: %s", err);
    printf("reference inputs: %s\n", path);
    free(dir);
    free(e);
}

static void test_tiny_against_reference(void **state)
{
    (void)state;
    sd_vae_config_t cfg;
    sd_vae_config_tiny(&cfg);
    keys_t ks = vae_keys(&cfg);
    sdw_t *w = sdk_random_store(&ks, NULL);
    ts_tensor_t *z = NULL, *img = NULL, *out = NULL, *mean = NULL;
    const int64_t zs[4] = {2, 4, 4, 4}, is[4] = {2, 3, 32, 32};
    assert_int_equal(ts_randn(&z, zs, 4, 1000, CPU), 0);
    assert_int_equal(ts_randn(&img, is, 4, 1001, CPU), 0);
    dump_reference(w, &ks, z, img);

    char err[512] = "";
    sd_vae_t *v = NULL;
    assert_int_equal(sd_vae_load(&v, w, err, sizeof err), 0);
    if (sd_vae_decode(v, z, &out, err, sizeof err))
        fail_msg("decode: %s", err);
    if (sd_vae_encode(v, img, &mean, err, sizeof err))
        fail_msg("encode: %s", err);
    expect_ref("decode", out, &DECODE_REF);
    expect_ref("encode", mean, &ENCODE_REF);
    ts_free(out);
    ts_free(mean);
    ts_free(z);
    ts_free(img);
    sd_vae_free(v);
    keys_free(&ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sd15_layout),
        cmocka_unit_test(test_sd15_detect_and_consume),
        cmocka_unit_test(test_every_tensor_required),
        cmocka_unit_test(test_decoder_only),
        cmocka_unit_test(test_tiny_against_reference),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
