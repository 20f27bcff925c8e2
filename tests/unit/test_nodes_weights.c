/* The weights store (nodes/sd/weights.c): prefix filtering and stripping, the two §1.2
 * normalisations (CLIP "text_model." insertion, VAE [C,C] attention weights), used/unused
 * tracking, shape checks with their messages, and the file mapping's lifetime. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/sd.h"
#include "tensor/tensor.h"

static const ts_device_t cpu = {TS_CPU, 0};

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

static bool in_maps(const char *path)
{
    FILE *m = fopen("/proc/self/maps", "r");
    assert_non_null(m);
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, m))
        if (strstr(line, path))
            found = true;
    fclose(m);
    return found;
}

static void assert_shape(const ts_tensor_t *t, int ndim, const int64_t *want)
{
    assert_non_null(t);
    int64_t s[TS_MAX_DIMS];
    assert_int_equal(ts_shape(t, s), ndim);
    for (int i = 0; i < ndim; i++)
        assert_int_equal(s[i], want[i]);
}

static float at(const ts_tensor_t *t, int64_t i)
{
    float buf[64];
    assert_true(ts_numel(t) <= 64);
    assert_int_equal(ts_to_host(t, TS_F32, buf, sizeof buf), 0);
    return buf[i];
}

/* Values v[i] = base + i. */
static float *ramp(float *v, int n, float base)
{
    for (int i = 0; i < n; i++)
        v[i] = base + (float)i;
    return v;
}

/* An SD1.5-like file: UNet, VAE (one attention weight stored [C,C]), CLIP keys in both the
 * normal and the short layout, and top-level keys that no component uses. */
typedef struct {
    char *dir, *path;
    float unet_w[6], unet_b[2], q[16], proj[16], norm[4], qb[4], tok[12], fln[3], ac[5];
    uint16_t half[4];
    int64_t pos[3];
} fixture_t;

static void write_fixture(fixture_t *x, const char *name)
{
    x->dir = tu_fresh_dir(name);
    x->path = join(x->dir, "sd.safetensors");
    ramp(x->unet_w, 6, 1);
    ramp(x->unet_b, 2, 100);
    ramp(x->q, 16, 200);
    ramp(x->proj, 16, 300);
    ramp(x->norm, 4, 400);
    ramp(x->qb, 4, 500);
    ramp(x->tok, 12, 600);
    ramp(x->fln, 3, 700);
    ramp(x->ac, 5, 800);
    x->half[0] = 0x3C00, x->half[1] = 0xC000, x->half[2] = 0x3800, x->half[3] = 0x0001;
    x->pos[0] = 0, x->pos[1] = 1, x->pos[2] = 2;
    st_write_entry_t e[] = {
        {.name = "model.diffusion_model.out.2.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = x->unet_w},
        {.name = "model.diffusion_model.out.2.bias", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = x->unet_b},
        {.name = "model.diffusion_model.half", .dtype = ST_F16, .ndim = 2, .shape = {2, 2}, .data = x->half},
        {.name = "first_stage_model.decoder.mid.attn_1.q.weight", .dtype = ST_F32, .ndim = 2, .shape = {4, 4},
         .data = x->q},
        {.name = "first_stage_model.encoder.mid.attn_1.proj_out.weight", .dtype = ST_F32, .ndim = 4,
         .shape = {4, 4, 1, 1}, .data = x->proj},
        {.name = "first_stage_model.decoder.mid.attn_1.norm.weight", .dtype = ST_F32, .ndim = 1, .shape = {4},
         .data = x->norm},
        {.name = "first_stage_model.decoder.mid.attn_1.q.bias", .dtype = ST_F32, .ndim = 1, .shape = {4},
         .data = x->qb},
        {.name = "cond_stage_model.transformer.embeddings.token_embedding.weight", .dtype = ST_F32, .ndim = 2,
         .shape = {3, 4}, .data = x->tok},
        {.name = "cond_stage_model.transformer.text_model.final_layer_norm.weight", .dtype = ST_F32, .ndim = 1,
         .shape = {3}, .data = x->fln},
        {.name = "cond_stage_model.transformer.text_model.embeddings.position_ids", .dtype = ST_I64, .ndim = 2,
         .shape = {1, 3}, .data = x->pos},
        {.name = "alphas_cumprod", .dtype = ST_F32, .ndim = 1, .shape = {5}, .data = x->ac},
    };
    char err[256];
    assert_int_equal(st_write(x->path, e, sizeof e / sizeof e[0], NULL, err, sizeof err), 0);
}

static void free_fixture(fixture_t *x)
{
    free(x->path);
    free(x->dir);
}

static sdw_t *load(const char *path, const char *prefix)
{
    st_file_t *f = NULL;
    char err[256];
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    sdw_t *w = NULL;
    assert_int_equal(sdw_from_file(&w, f, prefix, err, sizeof err), 0);
    st_close(f); /* the store keeps what it needs */
    return w;
}

static void test_prefix_filter_and_strip(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    fixture_t x;
    write_fixture(&x, "prefix");
    sdw_t *w = load(x.path, "model.diffusion_model.");
    assert_int_equal(sdw_count(w), 3);
    ts_tensor_t *t = sdw_get(w, "out.2.weight");
    assert_shape(t, 2, (int64_t[]){2, 3});
    for (int i = 0; i < 6; i++)
        assert_true(at(t, i) == x.unet_w[i]);
    assert_true(at(sdw_get(w, "out.2.bias"), 1) == 101.0f);
    /* F16 arrives as exact float32. */
    t = sdw_get(w, "half");
    assert_int_equal(ts_dtype(t), TS_F32);
    assert_true(at(t, 0) == 1.0f && at(t, 1) == -2.0f && at(t, 2) == 0.5f && at(t, 3) == 0x1p-24f);
    assert_null(sdw_get(w, "model.diffusion_model.out.2.weight")); /* stored without prefix */
    assert_null(sdw_get(w, "alphas_cumprod"));
    assert_int_equal(sdw_bytes(w), (6 + 2 + 4) * 4);
    assert_true(sdw_has_prefix(w, "out."));
    assert_false(sdw_has_prefix(w, "input_blocks."));
    sdw_free(w);

    /* Empty prefix: everything, with the normalised names. */
    w = load(x.path, "");
    assert_int_equal(sdw_count(w), 11);
    assert_non_null(sdw_get(w, "alphas_cumprod"));
    assert_non_null(sdw_get(w, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"));
    assert_null(sdw_get(w, "cond_stage_model.transformer.embeddings.token_embedding.weight"));
    sdw_free(w);
    w = load(x.path, NULL);
    assert_int_equal(sdw_count(w), 11);
    sdw_free(w);

    /* A prefix nothing has: an empty store. */
    w = load(x.path, "model_ema.");
    assert_int_equal(sdw_count(w), 0);
    assert_int_equal(sdw_bytes(w), 0);
    const char **names = NULL;
    assert_int_equal(sdw_unused(w, &names), 0);
    assert_null(names);
    sdw_free(w);
    free_fixture(&x);
}

static void test_clip_normalisation(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    fixture_t x;
    write_fixture(&x, "clip");
    /* The prefix the CLIP loader uses: both layouts end up as text_model.*. */
    sdw_t *w = load(x.path, "cond_stage_model.transformer.");
    assert_int_equal(sdw_count(w), 3);
    ts_tensor_t *tok = sdw_get(w, "text_model.embeddings.token_embedding.weight");
    assert_shape(tok, 2, (int64_t[]){3, 4});
    assert_true(at(tok, 11) == 611.0f);
    assert_non_null(sdw_get(w, "text_model.final_layer_norm.weight"));
    ts_tensor_t *pos = sdw_get(w, "text_model.embeddings.position_ids");
    assert_true(at(pos, 2) == 2.0f); /* I64 converted */
    assert_null(sdw_get(w, "embeddings.token_embedding.weight"));
    sdw_free(w);
    /* Other prefixes see the same normalised names. */
    w = load(x.path, "cond_stage_model.");
    assert_int_equal(sdw_count(w), 3);
    assert_non_null(sdw_get(w, "transformer.text_model.embeddings.token_embedding.weight"));
    sdw_free(w);
    w = load(x.path, "cond_stage_model.transformer.text_model.");
    assert_int_equal(sdw_count(w), 3);
    assert_non_null(sdw_get(w, "embeddings.token_embedding.weight"));
    assert_non_null(sdw_get(w, "final_layer_norm.weight"));
    sdw_free(w);
    free_fixture(&x);

    /* Both spellings of one tensor in a file is an error naming it. */
    char *dir = tu_fresh_dir("clipdup");
    char *path = join(dir, "dup.safetensors");
    float v[2] = {1, 2};
    st_write_entry_t e[2] = {
        {.name = "cond_stage_model.transformer.text_model.a", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = v},
        {.name = "cond_stage_model.transformer.a", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = v},
    };
    char err[256];
    assert_int_equal(st_write(path, e, 2, NULL, err, sizeof err), 0);
    st_file_t *f = NULL;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    sdw_t *bad = (sdw_t *)0x1;
    assert_int_equal(sdw_from_file(&bad, f, "cond_stage_model.", err, sizeof err), BASE_E_MODEL_FORMAT);
    assert_ptr_equal(bad, (sdw_t *)0x1); /* untouched on failure */
    assert_non_null(strstr(err, "'cond_stage_model.transformer.text_model.a' is in the file twice"));
    st_close(f);
    assert_false(in_maps(path)); /* the failed store released its tensors */
    free(path);
    free(dir);
}

static void test_vae_attention_reshape(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    fixture_t x;
    write_fixture(&x, "vae");
    sdw_t *w = load(x.path, "first_stage_model.");
    assert_int_equal(sdw_count(w), 4);
    ts_tensor_t *q = sdw_get(w, "decoder.mid.attn_1.q.weight");
    assert_shape(q, 4, (int64_t[]){4, 4, 1, 1});
    for (int i = 0; i < 16; i++)
        assert_true(at(q, i) == x.q[i]);
    /* Already 4-D: unchanged; other attention tensors (1-D) are not reshaped. */
    assert_shape(sdw_get(w, "encoder.mid.attn_1.proj_out.weight"), 4, (int64_t[]){4, 4, 1, 1});
    assert_shape(sdw_get(w, "decoder.mid.attn_1.norm.weight"), 1, (int64_t[]){4});
    assert_shape(sdw_get(w, "decoder.mid.attn_1.q.bias"), 1, (int64_t[]){4});
    /* The reshaped view passes the shape check a VAE loader makes. */
    ts_tensor_t *t = NULL;
    char err[256];
    assert_int_equal(sdw_need(w, "decoder.mid.attn_1.q.weight", (int64_t[]){4, 4, 1, 1}, 4, &t, err, sizeof err), 0);
    assert_ptr_equal(t, q);
    sdw_free(w);
    /* Also with the prefix reaching into the component. */
    w = load(x.path, "first_stage_model.decoder.");
    assert_shape(sdw_get(w, "mid.attn_1.q.weight"), 4, (int64_t[]){4, 4, 1, 1});
    sdw_free(w);
    free_fixture(&x);
}

static void test_used_tracking_and_need(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    fixture_t x;
    write_fixture(&x, "need");
    sdw_t *w = load(x.path, "model.diffusion_model.");
    const char **names = NULL;
    assert_int_equal(sdw_unused(w, &names), 3);
    assert_string_equal(names[0], "out.2.weight");
    assert_string_equal(names[1], "out.2.bias");
    assert_string_equal(names[2], "half");
    free(names);

    char err[256];
    ts_tensor_t *t = NULL;
    /* Missing, wrong size, wrong rank: MODEL_LAYOUT naming the full tensor name; no mark. */
    assert_int_equal(sdw_need(w, "out.9.weight", (int64_t[]){2, 3}, 2, &t, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_string_equal(err, "tensor 'model.diffusion_model.out.9.weight' is missing from the model");
    assert_int_equal(sdw_need(w, "out.2.weight", (int64_t[]){2, 30}, 2, &t, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_string_equal(err, "tensor 'model.diffusion_model.out.2.weight' has shape [2,3], expected [2,30]");
    assert_int_equal(sdw_need(w, "out.2.weight", (int64_t[]){2, 3, 1, 1}, 4, &t, err, sizeof err),
                     BASE_E_MODEL_LAYOUT);
    assert_string_equal(err, "tensor 'model.diffusion_model.out.2.weight' has shape [2,3], expected [2,3,1,1]");
    assert_int_equal(sdw_need(w, "out.2.bias", (int64_t[]){-1, 3}, 2, &t, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_string_equal(err, "tensor 'model.diffusion_model.out.2.bias' has shape [2], expected [*,3]");
    assert_null(t);
    assert_int_equal(sdw_unused(w, &names), 3);
    free(names);
    assert_int_equal(sdw_need(w, "x", NULL, 2, &t, err, sizeof err), BASE_E_INVAL);

    /* A -1 matches any size; success marks the tensor used. */
    assert_int_equal(sdw_need(w, "out.2.weight", (int64_t[]){-1, 3}, 2, &t, err, sizeof err), 0);
    assert_shape(t, 2, (int64_t[]){2, 3});
    assert_int_equal(sdw_unused(w, &names), 2);
    assert_string_equal(names[0], "out.2.bias");
    assert_string_equal(names[1], "half");
    free(names);
    /* sdw_getf formats the name; a long formatted name works too. */
    assert_ptr_equal(sdw_getf(w, "out.%d.%s", 2, "bias"), sdw_get(w, "out.2.bias"));
    char longname[400];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_null(sdw_getf(w, "%s.%d", longname, 1));
    assert_int_equal(sdw_unused(w, &names), 1);
    assert_string_equal(names[0], "half");
    free(names);
    assert_null(sdw_get(w, "nothing")); /* misses do not disturb anything */
    assert_non_null(sdw_get(w, "half"));
    assert_int_equal(sdw_unused(w, &names), 0);
    assert_null(names);
    sdw_free(w);
    free_fixture(&x);
}

static void test_mapping_lifetime(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    fixture_t x;
    write_fixture(&x, "lifetime");
    /* The store holds the mapping after the file is closed; a tensor borrowed then
     * referenced outlives the store too. */
    sdw_t *w = load(x.path, "model.diffusion_model.");
    assert_true(in_maps(x.path));
    ts_tensor_t *keep = ts_ref(sdw_get(w, "out.2.weight"));
    sdw_free(w);
    assert_true(in_maps(x.path));
    assert_true(at(keep, 5) == 6.0f);
    ts_free(keep);
    assert_false(in_maps(x.path));
    free_fixture(&x);
}

static void test_new_and_put(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    sdw_t *w = NULL;
    assert_int_equal(sdw_new(&w), 0);
    assert_int_equal(sdw_count(w), 0);
    ts_tensor_t *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(ts_zeros(&a, (int64_t[]){3, 5}, 2, TS_F32, cpu), 0);
    assert_int_equal(ts_zeros(&b, (int64_t[]){7}, 1, TS_F32, cpu), 0);
    assert_int_equal(ts_zeros(&c, (int64_t[]){2}, 1, TS_F32, cpu), 0);
    assert_int_equal(sdw_put(w, "a.weight", a), 0);
    assert_int_equal(sdw_put(w, "b", b), 0);
    /* A second "a.weight" is refused and its reference released (leak check). */
    assert_int_equal(sdw_put(w, "a.weight", c), BASE_E_INVAL);
    assert_int_equal(sdw_put(w, NULL, NULL), BASE_E_INVAL);
    assert_int_equal(sdw_count(w), 2);
    assert_int_equal(sdw_bytes(w), (15 + 7) * 4);
    assert_ptr_equal(sdw_get(w, "a.weight"), a);
    char err[256];
    ts_tensor_t *t = NULL;
    /* Stores built in memory have no prefix to add to messages. */
    assert_int_equal(sdw_need(w, "b", (int64_t[]){8}, 1, &t, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_string_equal(err, "tensor 'b' has shape [7], expected [8]");
    /* Many entries: the index grows and every name still resolves. */
    for (int i = 0; i < 500; i++) {
        ts_tensor_t *z = NULL;
        assert_int_equal(ts_zeros(&z, (int64_t[]){1}, 1, TS_F32, cpu), 0);
        char name[32];
        snprintf(name, sizeof name, "blocks.%d.w", i);
        assert_int_equal(sdw_put(w, name, z), 0);
    }
    for (int i = 0; i < 500; i++)
        assert_non_null(sdw_getf(w, "blocks.%d.w", i));
    const char **names = NULL;
    assert_int_equal(sdw_unused(w, &names), 1);
    assert_string_equal(names[0], "b");
    free(names);
    sdw_free(w);
    sdw_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_filter_and_strip),
        cmocka_unit_test(test_clip_normalisation),
        cmocka_unit_test(test_vae_attention_reshape),
        cmocka_unit_test(test_used_tracking_and_need),
        cmocka_unit_test(test_mapping_lifetime),
        cmocka_unit_test(test_new_and_put),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
