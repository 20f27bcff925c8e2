/* Demo checkpoints (nodes/sd/demo.c) and the streaming writer under them
 * (nodes/sd/safetensors_stream.c): the tiny file holds exactly the three components' layouts
 * plus position_ids, with the metadata that makes every loader derive the tiny configs and
 * consume every tensor; weights follow the documented recipe, are deterministic in the
 * seed, and the F16 file is the F32 one rounded to half (checked against libtorch's
 * conversion); the weights carry CLIP -> UNet -> VAE to finite outputs. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "sd/sd.h"
#include "sd_testkit.h"

static const ts_device_t CPU = {TS_CPU, 0};


/* The tiny layout in file order: UNet, VAE, CLIP, position_ids. */
static keys_t tiny_layout(void)
{
    sd_unet_config_t u;
    sd_vae_config_t v;
    sd_clip_config_t c;
    sd_unet_config_tiny(&u);
    sd_vae_config_tiny(&v);
    sd_clip_config_tiny(&c);
    keys_t ks = {0};
    assert_int_equal(sd_unet_keys(&u, "model.diffusion_model.", sdk_collect, &ks), 0);
    assert_int_equal(sd_vae_keys(&v, "first_stage_model.", sdk_collect, &ks), 0);
    assert_int_equal(sd_clip_keys(&c, "cond_stage_model.transformer.", sdk_collect, &ks), 0);
    const int64_t pos[2] = {1, 77};
    sdk_collect(&ks, "cond_stage_model.transformer.text_model.embeddings.position_ids", pos, 2);
    return ks;
}

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_fresh_dir("demo");
    return ts_init(1); /* see test_nodes_sd_vae.c: LeakSanitizer vs OpenMP worker TLS */
}

static int teardown(void **state)
{
    (void)state;
    free(dir);
    return 0;
}

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static st_file_t *open_file(const char *path)
{
    st_file_t *f = NULL;
    char err[512] = "";
    if (st_open(&f, path, err, sizeof err))
        fail_msg("st_open %s: %s", path, err);
    return f;
}

static void write_demo(const char *name, st_dtype_t dtype, uint64_t seed)
{
    char path[1024], err[512] = "";
    path_of(path, sizeof path, name);
    if (sd_demo_write(path, SD_DEMO_TINY, dtype, seed, err, sizeof err))
        fail_msg("sd_demo_write %s: %s", name, err);
}

static size_t unused_count(const sdw_t *w)
{
    const char **names = NULL;
    size_t n = sdw_unused(w, &names);
    for (size_t i = 0; i < n && i < 5; i++)
        printf("unused: %s\n", names[i]);
    free(names);
    return n;
}

typedef struct {
    sd_unet_t *unet;
    sd_vae_t *vae;
    sd_clip_t *clip;
} models_t;

/* Loads the three components the way the checkpoint loader does. */
static models_t load_all(st_file_t *f)
{
    models_t m = {0};
    char err[512] = "";
    sdw_t *w = NULL;
    assert_int_equal(sdw_from_file(&w, f, "model.diffusion_model.", err, sizeof err), 0);
    if (sd_unet_load(&m.unet, w, st_meta(f, "unet.num_heads"), st_meta(f, "unet.num_head_channels"), err,
                     sizeof err))
        fail_msg("UNet: %s", err);
    assert_int_equal(sdw_from_file(&w, f, "first_stage_model.", err, sizeof err), 0);
    if (sd_vae_load(&m.vae, w, err, sizeof err))
        fail_msg("VAE: %s", err);
    assert_int_equal(sdw_from_file(&w, f, "cond_stage_model.transformer.", err, sizeof err), 0);
    if (sd_clip_load(&m.clip, w, st_meta(f, "clip.num_heads"), err, sizeof err))
        fail_msg("CLIP: %s", err);
    return m;
}

static void free_all(models_t *m)
{
    sd_unet_free(m->unet);
    sd_vae_free(m->vae);
    sd_clip_free(m->clip);
}

/* The tiny F32 file: exactly the layout in order, metadata, position_ids 0..76, all three
 * components load with the tiny configs and no tensor left over. */
static void test_tiny_layout_and_load(void **state)
{
    (void)state;
    write_demo("tiny32.safetensors", ST_F32, 42);
    char path[1024];
    path_of(path, sizeof path, "tiny32.safetensors");
    st_file_t *f = open_file(path);
    keys_t ks = tiny_layout();
    assert_int_equal(st_count(f), ks.n);
    for (size_t i = 0; i < ks.n; i++) {
        const st_tensor_t *e = st_at(f, i);
        assert_string_equal(e->name, ks.k[i].name);
        assert_int_equal(e->ndim, ks.k[i].ndim);
        for (int d = 0; d < e->ndim; d++)
            assert_int_equal(e->shape[d], ks.k[i].shape[d]);
        assert_int_equal(e->dtype, i + 1 == ks.n ? ST_I64 : ST_F32);
    }
    const st_tensor_t *pos = st_at(f, ks.n - 1);
    for (int64_t j = 0; j < 77; j++) {
        int64_t v;
        memcpy(&v, (const char *)pos->data + 8 * j, 8);
        assert_int_equal(v, j);
    }
    assert_string_equal(st_meta(f, "weft.demo"), "tiny");
    assert_string_equal(st_meta(f, "unet.num_heads"), "1"); /* the demo runs one head */
    assert_string_equal(st_meta(f, "clip.num_heads"), "2");
    assert_string_equal(st_meta(f, "modelspec.title"), "weft demo (random weights)");

    models_t m = load_all(f);
    st_close(f); /* the stores keep the mapping alive */
    sd_unet_config_t uc;
    sd_vae_config_t vc;
    sd_clip_config_t cc;
    sd_unet_config_tiny(&uc);
    uc.num_heads = 1;
    sd_vae_config_tiny(&vc);
    sd_clip_config_tiny(&cc);
    const sd_unet_config_t *ug = sd_unet_config(m.unet);
    assert_int_equal(ug->model_channels, uc.model_channels);
    assert_int_equal(ug->levels, uc.levels);
    assert_int_equal(ug->num_res_blocks, uc.num_res_blocks);
    assert_int_equal(ug->context_dim, uc.context_dim);
    assert_int_equal(ug->num_heads, uc.num_heads);
    assert_int_equal(ug->time_embed_dim, uc.time_embed_dim);
    assert_memory_equal(sd_vae_config(m.vae), &vc, sizeof vc);
    assert_memory_equal(sd_clip_config(m.clip), &cc, sizeof cc);
    assert_int_equal(unused_count(sd_unet_weights(m.unet)), 0);
    assert_int_equal(unused_count(sd_vae_weights(m.vae)), 0);
    assert_int_equal(unused_count(sd_clip_weights(m.clip)), 0);
    free_all(&m);
    keys_free(&ks);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n > 0);
    rewind(fp);
    char *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static const float *f32_of(const st_tensor_t *e)
{
    assert_int_equal(e->dtype, ST_F32);
    assert_int_equal((uintptr_t)e->data % 4, 0); /* the writer aligns data to 8 */
    return e->data;
}

/* The recipe: biases 0, norm weights 1, other weights N(0, 1/fan_in) from a seed per tensor;
 * same seed, same bytes; another seed, other weights (but the same layout). */
static void test_weights_recipe_and_seed(void **state)
{
    (void)state;
    char a[1024], b[1024], c[1024];
    path_of(a, sizeof a, "tiny32.safetensors");
    write_demo("again.safetensors", ST_F32, 42);
    write_demo("seed43.safetensors", ST_F32, 43);
    path_of(b, sizeof b, "again.safetensors");
    path_of(c, sizeof c, "seed43.safetensors");
    size_t la = 0, lb = 0, lc = 0;
    char *da = slurp(a, &la), *db = slurp(b, &lb), *dc = slurp(c, &lc);
    assert_int_equal(la, lb);
    assert_memory_equal(da, db, la);
    assert_int_equal(la, lc);
    assert_true(memcmp(da, dc, la) != 0);
    free(da);
    free(db);
    free(dc);

    st_file_t *f = open_file(a), *g = open_file(c);
    size_t weights = 0;
    for (size_t i = 0; i + 1 < st_count(f); i++) {
        const st_tensor_t *e = st_at(f, i);
        const float *v = f32_of(e);
        size_t len = strlen(e->name);
        if (len > 5 && strcmp(e->name + len - 5, ".bias") == 0) {
            for (int64_t j = 0; j < e->numel; j++)
                assert_true(v[j] == 0.0f);
        } else if (e->ndim == 1) {
            for (int64_t j = 0; j < e->numel; j++)
                assert_true(v[j] == 1.0f);
        } else {
            int64_t fan_in = e->numel / e->shape[0];
            double ss = 0;
            for (int64_t j = 0; j < e->numel; j++)
                ss += (double)v[j] * v[j];
            double var = ss / (double)e->numel * (double)fan_in; /* about 1 */
            /* Every weight has at least 16 elements (the 1x1 quant convs); the bounds are
             * loose enough for that and catch a missing or doubled scale. */
            if (var < (e->numel >= 4096 ? 0.9 : 0.3) || var > (e->numel >= 4096 ? 1.1 : 2.5))
                fail_msg("%s: variance * fan_in = %g", e->name, var);
            assert_memory_not_equal(v, f32_of(st_at(g, i)), e->nbytes); /* seed matters */
            weights++;
        }
    }
    assert_true(weights > 100);
    /* Two tensors with the same shape still get different values (seed per tensor). */
    const st_tensor_t *q = st_find(f, "first_stage_model.encoder.mid.attn_1.q.weight");
    const st_tensor_t *k = st_find(f, "first_stage_model.encoder.mid.attn_1.k.weight");
    assert_non_null(q);
    assert_non_null(k);
    assert_memory_not_equal(q->data, k->data, q->nbytes);
    st_close(f);
    st_close(g);
}

/* The F16 file is the F32 one with every weight rounded to the nearest half (ties to even),
 * compared against libtorch's float -> half conversion. */
static void test_f16_is_rounded_f32(void **state)
{
    (void)state;
    write_demo("tiny16.safetensors", ST_F16, 42);
    char a[1024], b[1024];
    path_of(a, sizeof a, "tiny32.safetensors");
    path_of(b, sizeof b, "tiny16.safetensors");
    st_file_t *f = open_file(a), *h = open_file(b);
    assert_int_equal(st_count(f), st_count(h));
    assert_string_equal(st_meta(h, "weft.demo"), "tiny");
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor_t *e = st_at(f, i), *x = st_at(h, i);
        assert_string_equal(e->name, x->name);
        if (e->dtype == ST_I64) {
            assert_int_equal(x->dtype, ST_I64);
            assert_memory_equal(e->data, x->data, e->nbytes);
            continue;
        }
        assert_int_equal(x->dtype, ST_F16);
        assert_int_equal(x->nbytes, e->nbytes / 2);
        ts_tensor_t *t = NULL, *t16 = NULL;
        assert_int_equal(ts_from_host(&t, e->data, TS_F32, e->shape, e->ndim, CPU), 0);
        assert_int_equal(ts_to(&t16, t, TS_F16, CPU), 0);
        uint16_t *want = malloc(x->nbytes);
        assert_non_null(want);
        assert_int_equal(ts_to_host(t16, TS_F16, want, x->nbytes), 0);
        if (memcmp(want, x->data, x->nbytes))
            fail_msg("%s: F16 data differs from the rounded F32 data", e->name);
        free(want);
        ts_free(t);
        ts_free(t16);
    }
    st_close(f);

    /* And the F16 file loads to the same configs with nothing left over. */
    models_t m = load_all(h);
    st_close(h);
    assert_int_equal(unused_count(sd_unet_weights(m.unet)), 0);
    assert_int_equal(unused_count(sd_vae_weights(m.vae)), 0);
    assert_int_equal(unused_count(sd_clip_weights(m.clip)), 0);
    free_all(&m);
}

static void expect_finite(const char *what, const ts_tensor_t *t, double *max_abs)
{
    double m = 0;
    assert_int_equal(ts_reduce_all(t, TS_REDUCE_MAX_ABS, &m), 0);
    printf("%s: max |x| = %g\n", what, m);
    if (!isfinite(m) || m == 0)
        fail_msg("%s: max |x| = %g", what, m);
    *max_abs = m;
}

/* CLIP -> UNet (cond + uncond batch) -> VAE decode on the tiny random weights: finite and
 * not degenerate. */
static void test_pipeline_finite(void **state)
{
    (void)state;
    char path[1024], err[512] = "";
    path_of(path, sizeof path, "tiny16.safetensors");
    st_file_t *f = open_file(path);
    models_t m = load_all(f);
    st_close(f);

    clipt_rows_t rows = {.rows = 1, .ids = calloc(77, sizeof(int32_t)), .weights = calloc(77, sizeof(float))};
    assert_true(rows.ids && rows.weights);
    const int32_t toks[] = {CLIPT_BOS, 320, 1125, 539, 320, 2368};
    for (int j = 0; j < 77; j++) {
        rows.ids[j] = j < 6 ? toks[j] : CLIPT_EOS;
        rows.weights[j] = j == 2 ? 1.2f : 1.0f;
    }
    ts_tensor_t *cond = NULL, *pooled = NULL, *ctx = NULL, *x = NULL, *t = NULL, *eps = NULL, *img = NULL;
    double mx;
    if (sd_clip_encode(m.clip, &rows, -2, &cond, &pooled, err, sizeof err))
        fail_msg("clip: %s", err);
    expect_finite("cond", cond, &mx);
    expect_finite("pooled", pooled, &mx);
    const int64_t reps[3] = {2, 1, 1}, xs[4] = {2, 4, 16, 16}, ts1[1] = {2};
    assert_int_equal(ts_repeat(&ctx, cond, reps, 3), 0);
    assert_int_equal(ts_randn(&x, xs, 4, 5, CPU), 0);
    const float steps[2] = {999.0f, 10.0f};
    assert_int_equal(ts_from_host(&t, steps, TS_F32, ts1, 1, CPU), 0);
    if (sd_unet_forward(m.unet, x, t, ctx, &eps, err, sizeof err))
        fail_msg("unet: %s", err);
    assert_int_equal(ts_size(eps, 1), 4);
    expect_finite("eps", eps, &mx);
    assert_true(mx < 1e3);
    if (sd_vae_decode(m.vae, eps, &img, err, sizeof err))
        fail_msg("vae: %s", err);
    assert_int_equal(ts_size(img, 2), 128);
    expect_finite("image", img, &mx);
    assert_true(mx < 1e3);
    ts_free(cond);
    ts_free(pooled);
    ts_free(ctx);
    ts_free(x);
    ts_free(t);
    ts_free(eps);
    ts_free(img);
    clipt_rows_free(&rows);
    free_all(&m);
}

/* ------------------------------------------------------------------ st_write_stream */

static int fill_counting(void *ctx, size_t i, void *buf, size_t nbytes, char *err, size_t errsz)
{
    int *fail_at = ctx;
    if ((int)i == *fail_at) {
        snprintf(err, errsz, "generator gave up at %zu", i);
        return BASE_E_INTERRUPTED;
    }
    memset(buf, (int)(0x10 + i), nbytes);
    return 0;
}

static size_t count_entries(const char *d)
{
    DIR *dp = opendir(d);
    assert_non_null(dp);
    size_t n = 0;
    for (struct dirent *de; (de = readdir(dp));)
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(dp);
    return n;
}

static void test_stream_writer(void **state)
{
    (void)state;
    char *d = tu_fresh_dir("stream"), path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/s.safetensors", d);
    st_write_entry_t e[3] = {
        {.name = "a", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = NULL},
        {.name = "b\"q", .dtype = ST_F16, .ndim = 1, .shape = {5}, .data = NULL},
        {.name = "empty", .dtype = ST_U8, .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    const char *meta[] = {"k", "v", NULL};
    int fail_at = -1;
    assert_int_equal(st_write_stream(path, e, 3, meta, fill_counting, &fail_at, err, sizeof err), 0);
    st_file_t *f = open_file(path);
    assert_int_equal(st_count(f), 3);
    assert_string_equal(st_meta(f, "k"), "v");
    const st_tensor_t *b = st_find(f, "b\"q");
    assert_non_null(b);
    assert_int_equal(b->nbytes, 10);
    for (size_t j = 0; j < 10; j++)
        assert_int_equal(((const uint8_t *)b->data)[j], 0x11);
    assert_int_equal(st_find(f, "a")->nbytes, 24);
    assert_int_equal(st_find(f, "empty")->nbytes, 0);
    st_close(f);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(((size_t)sb.st_size - 24 - 10) % 8, 0); /* header padded to 8 */

    /* A failing generator aborts: its code and message come back, and neither the file nor
     * a temporary is left behind. */
    snprintf(path, sizeof path, "%s/t.safetensors", d);
    fail_at = 1;
    assert_int_equal(st_write_stream(path, e, 3, NULL, fill_counting, &fail_at, err, sizeof err),
                     BASE_E_INTERRUPTED);
    assert_string_equal(err, "generator gave up at 1");
    assert_int_equal(count_entries(d), 1);

    /* Bad entries are refused before anything is written. */
    st_write_entry_t dup[2] = {e[0], e[0]};
    assert_int_equal(st_write_stream(path, dup, 2, NULL, fill_counting, &fail_at, err, sizeof err),
                     BASE_E_INVAL);
    assert_non_null(strstr(err, "twice"));
    st_write_entry_t neg = e[0];
    neg.shape[1] = -3;
    assert_int_equal(st_write_stream(path, &neg, 1, NULL, fill_counting, &fail_at, err, sizeof err),
                     BASE_E_INVAL);
    neg = e[0];
    neg.name = "bad\xff";
    assert_int_equal(st_write_stream(path, &neg, 1, NULL, fill_counting, &fail_at, err, sizeof err),
                     BASE_E_INVAL);
    neg.name = "__metadata__";
    assert_int_equal(st_write_stream(path, &neg, 1, NULL, fill_counting, &fail_at, err, sizeof err),
                     BASE_E_INVAL);
    const char *odd_meta[] = {"k", NULL};
    assert_int_equal(st_write_stream(path, e, 1, odd_meta, fill_counting, &fail_at, err, sizeof err),
                     BASE_E_INVAL);
    assert_int_equal(count_entries(d), 1);
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", d);
    assert_int_equal(st_write_stream(path, e, 1, NULL, fill_counting, &fail_at, err, sizeof err), BASE_E_IO);

    /* sd_demo_write's own argument checks. */
    assert_int_equal(sd_demo_write(path, SD_DEMO_TINY, ST_BF16, 1, err, sizeof err), BASE_E_INVAL);
    assert_int_equal(sd_demo_write(NULL, SD_DEMO_TINY, ST_F32, 1, err, sizeof err), BASE_E_INVAL);
    assert_int_equal(sd_demo_write(path, SD_DEMO_TINY, ST_F32, 1, err, sizeof err), BASE_E_IO);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_layout_and_load), cmocka_unit_test(test_weights_recipe_and_seed),
        cmocka_unit_test(test_f16_is_rounded_f32),   cmocka_unit_test(test_pipeline_finite),
        cmocka_unit_test(test_stream_writer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
