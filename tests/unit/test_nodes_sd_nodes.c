/* The Stable Diffusion nodes over the tiny random demo checkpoint (written by sd_demo_write
 * into a temp models/ folder) with the real CLIP tokenizer tables: loaders and the model
 * cache, text encoding and clip skip, latent nodes, VAE nodes (tiled = untiled when one tile
 * covers the image), and KSampler semantics that must hold exactly: a denoise of 0 returns the
 * input, the same seed gives the same latent, two chained KSamplerAdvanced halves equal one
 * full KSampler, batch_index noise equals the matching item of a batch, a zero noise mask
 * keeps the source latent, progress and previews per step, and interrupt. */
#include "testutil.h"
#include "nodes_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nodes.h"
#include "sd/sd.h"
#include "sd/sd_nodes.h"

static const ts_device_t CPU = {TS_CPU, 0};

typedef struct {
    char *base, *models, *input, *output, *temp;
    node_env_t env;
} fix_t;

static fix_t F;

static int setup(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    F.base = tu_fresh_dir("sd_nodes");
    F.models = nt_join(F.base, "models");
    F.input = nt_join(F.base, "input");
    F.output = nt_join(F.base, "output");
    F.temp = nt_join(F.base, "temp");
    char *ck = nt_join(F.models, "checkpoints"), *tok = nt_join(F.models, "clip_tokenizer");
    assert_int_equal(mkdir(F.models, 0755), 0);
    assert_int_equal(mkdir(ck, 0755), 0);
    assert_int_equal(mkdir(tok, 0755), 0);
    assert_int_equal(mkdir(F.input, 0755), 0);
    assert_int_equal(mkdir(F.output, 0755), 0);
    char *file = nt_join(ck, "tiny.safetensors"), err[512] = "";
    assert_int_equal(sd_demo_write(file, SD_DEMO_TINY, ST_F32, 1, err, sizeof err), 0);
    const char *names[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        char from[1024];
        snprintf(from, sizeof from, "%s/nodes/sd/clip_tokenizer/%s", WEFT_SOURCE_DIR, names[i]);
        char *to = nt_join(tok, names[i]);
        nt_copy_file(from, to);
        free(to);
    }
    free(file);
    free(ck);
    free(tok);
    F.env = (node_env_t){.base_dir = F.base, .input_dir = F.input, .output_dir = F.output, .temp_dir = F.temp,
                         .models_dir = F.models};
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    node_models_release();
    free(F.base);
    free(F.models);
    free(F.input);
    free(F.output);
    free(F.temp);
    return 0;
}

/* ------------------------------------------------------------------ running one node */

/* The loader's three outputs. */
typedef struct {
    node_value_t *model, *clip, *vae;
} ckpt_t;

typedef nt_run_t run_t;

static run_t *run_new(const node_def_t *def)
{
    return nt_run_new(def, &F.env, "3");
}

static ckpt_t load_ckpt(void)
{
    run_t *r = run_new(&node_def_CheckpointLoaderSimple);
    nt_set_in(r, "ckpt_name", node_value_string("tiny.safetensors"));
    if (nt_exec(r))
        fail_msg("CheckpointLoaderSimple: %s", r->ctx.err);
    ckpt_t c = {nt_take_out(r, 0), nt_take_out(r, 1), nt_take_out(r, 2)};
    nt_run_free(r);
    return c;
}

static void ckpt_free(ckpt_t *c)
{
    node_value_unref(c->model);
    node_value_unref(c->clip);
    node_value_unref(c->vae);
}

static node_value_t *encode(const ckpt_t *c, const char *text, int layer)
{
    node_value_t *clip = node_value_ref(c->clip);
    if (layer != -1) {
        run_t *s = run_new(&node_def_CLIPSetLastLayer);
        nt_set_in(s, "clip", clip);
        nt_set_in(s, "stop_at_clip_layer", node_value_i64(layer));
        assert_int_equal(nt_exec(s), 0);
        clip = nt_take_out(s, 0);
        nt_run_free(s);
    }
    run_t *r = run_new(&node_def_CLIPTextEncode);
    nt_set_in(r, "clip", clip);
    nt_set_in(r, "text", node_value_string(text));
    if (nt_exec(r))
        fail_msg("CLIPTextEncode: %s", r->ctx.err);
    node_value_t *v = nt_take_out(r, 0);
    nt_run_free(r);
    return v;
}

static node_value_t *empty_latent(int64_t w, int64_t h, int64_t b)
{
    run_t *r = run_new(&node_def_EmptyLatentImage);
    nt_set_in(r, "width", node_value_i64(w));
    nt_set_in(r, "height", node_value_i64(h));
    nt_set_in(r, "batch_size", node_value_i64(b));
    assert_int_equal(nt_exec(r), 0);
    node_value_t *v = nt_take_out(r, 0);
    nt_run_free(r);
    return v;
}

typedef struct {
    uint64_t seed;
    int steps;
    double cfg, denoise;
    const char *sampler, *scheduler;
} ks_args_t;

static run_t *ksampler_run(const ckpt_t *c, node_value_t *pos, node_value_t *neg, node_value_t *latent,
                           ks_args_t a)
{
    run_t *r = run_new(&node_def_KSampler);
    nt_set_in(r, "model", node_value_ref(c->model));
    nt_set_in(r, "positive", node_value_ref(pos));
    nt_set_in(r, "negative", node_value_ref(neg));
    nt_set_in(r, "latent_image", node_value_ref(latent));
    nt_set_in(r, "seed", node_value_int((base_int_t){.mag = a.seed}));
    nt_set_in(r, "steps", node_value_i64(a.steps));
    nt_set_in(r, "cfg", node_value_float(a.cfg));
    nt_set_in(r, "sampler_name", node_value_string(a.sampler));
    nt_set_in(r, "scheduler", node_value_string(a.scheduler));
    nt_set_in(r, "denoise", node_value_float(a.denoise));
    return r;
}

static node_value_t *ksample(const ckpt_t *c, node_value_t *pos, node_value_t *neg, node_value_t *latent,
                             ks_args_t a)
{
    run_t *r = ksampler_run(c, pos, neg, latent, a);
    if (nt_exec(r))
        fail_msg("KSampler: %s", r->ctx.err);
    node_value_t *v = nt_take_out(r, 0);
    nt_run_free(r);
    return v;
}

static node_value_t *advanced(const ckpt_t *c, node_value_t *pos, node_value_t *neg, node_value_t *latent,
                              bool add_noise, int start, int end, bool leftover)
{
    run_t *r = run_new(&node_def_KSamplerAdvanced);
    nt_set_in(r, "model", node_value_ref(c->model));
    nt_set_in(r, "positive", node_value_ref(pos));
    nt_set_in(r, "negative", node_value_ref(neg));
    nt_set_in(r, "latent_image", node_value_ref(latent));
    nt_set_in(r, "add_noise", node_value_string(add_noise ? "enable" : "disable"));
    nt_set_in(r, "noise_seed", node_value_i64(77));
    nt_set_in(r, "steps", node_value_i64(4));
    nt_set_in(r, "cfg", node_value_float(5.0));
    nt_set_in(r, "sampler_name", node_value_string("euler"));
    nt_set_in(r, "scheduler", node_value_string("karras"));
    nt_set_in(r, "start_at_step", node_value_i64(start));
    nt_set_in(r, "end_at_step", node_value_i64(end));
    nt_set_in(r, "return_with_leftover_noise", node_value_string(leftover ? "enable" : "disable"));
    if (nt_exec(r))
        fail_msg("KSamplerAdvanced: %s", r->ctx.err);
    node_value_t *v = nt_take_out(r, 0);
    nt_run_free(r);
    return v;
}

static float *floats(const ts_tensor_t *t, size_t *n)
{
    *n = (size_t)ts_numel(t);
    float *f = malloc(*n * sizeof *f + 1);
    assert_non_null(f);
    assert_int_equal(ts_to_host(t, TS_F32, f, *n * sizeof *f), 0);
    return f;
}

static double max_abs_diff(const ts_tensor_t *a, const ts_tensor_t *b)
{
    size_t na, nb;
    float *x = floats(a, &na), *y = floats(b, &nb);
    assert_int_equal(na, nb);
    double m = 0;
    for (size_t i = 0; i < na; i++) {
        assert_true(isfinite(x[i]) && isfinite(y[i]));
        m = fmax(m, fabs((double)x[i] - (double)y[i]));
    }
    free(x);
    free(y);
    return m;
}

static void expect_shape(const ts_tensor_t *t, int nd, const int64_t *want)
{
    int64_t s[TS_MAX_DIMS];
    assert_int_equal(ts_shape(t, s), nd);
    for (int i = 0; i < nd; i++)
        if (s[i] != want[i])
            fail_msg("dim %d: %lld, want %lld", i, (long long)s[i], (long long)want[i]);
}

/* ------------------------------------------------------------------ tests */

static void test_loader_and_cache(void **state)
{
    (void)state;
    node_models_release();
    ckpt_t a = load_ckpt(), b = load_ckpt();
    assert_string_equal(a.model->u.obj.tag, "MODEL");
    assert_string_equal(a.clip->u.obj.tag, "CLIP");
    assert_string_equal(a.vae->u.obj.tag, "VAE");
    const sdn_model_t *ma = a.model->u.obj.ptr, *mb = b.model->u.obj.ptr;
    assert_ptr_equal(ma->ck, mb->ck); /* read once, shared */
    size_t files = 0, bytes = 0;
    node_models_stats(&files, &bytes);
    assert_int_equal(files, 1);
    assert_true(bytes > 1000000);
    /* POST /free: the weights go, the values stay valid handles that load them again. */
    node_models_release();
    node_models_stats(&files, &bytes);
    assert_int_equal(files, 0);
    assert_null(ma->ck->unet);
    char err[256];
    assert_int_equal(sdn_use(ma->ck, err, sizeof err), 0);
    assert_non_null(sd_unet_config(ma->ck->unet));
    node_models_stats(&files, NULL);
    assert_int_equal(files, 1);
    sdn_unuse(ma->ck);
    ckpt_t c = load_ckpt();
    assert_ptr_equal(((const sdn_model_t *)c.model->u.obj.ptr)->ck, ma->ck);
    ckpt_free(&a);
    ckpt_free(&b);
    ckpt_free(&c);

    /* Missing, escaping and corrupt files fail with a message, nothing crashes. */
    const char *bad[] = {"nope.safetensors", "../outside.safetensors", "broken.safetensors"};
    char *broken = nt_join(F.models, "checkpoints/broken.safetensors");
    tu_write_file(broken, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 13);
    free(broken);
    const char *want[] = {"not found", "invalid model name", "broken.safetensors"};
    for (int i = 0; i < 3; i++) {
        run_t *r = run_new(&node_def_CheckpointLoaderSimple);
        nt_set_in(r, "ckpt_name", node_value_string(bad[i]));
        assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
        if (!strstr(r->ctx.err, want[i]))
            fail_msg("'%s' does not mention '%s'", r->ctx.err, want[i]);
        nt_run_free(r);
    }
}

/* The memory budget: loading past it unloads the least recently used model that is not in
 * use; a pinned model stays even when that means going over. */
static void test_memory_budget(void **state)
{
    (void)state;
    node_models_release();
    char *src = nt_join(F.models, "checkpoints/tiny.safetensors"), *dst = nt_join(F.models, "checkpoints/tiny2.safetensors");
    nt_copy_file(src, dst);
    ckpt_t a = load_ckpt();
    sdn_ckpt_t *ha = ((const sdn_model_t *)a.model->u.obj.ptr)->ck;
    size_t one = 0;
    node_models_stats(NULL, &one);
    node_models_set_budget(one + one / 2); /* room for one model, not two */
    char err[256];
    sdn_ckpt_t *hb = NULL;
    assert_int_equal(sdn_ckpt_get(dst, "tiny2.safetensors", SDN_UNET | SDN_CLIP | SDN_VAE, SDN_UNET, &hb, err, sizeof err), 0);
    size_t files = 0;
    node_models_stats(&files, NULL);
    assert_int_equal(files, 1);
    assert_null(ha->unet); /* a, least recently used and not in use, was unloaded */
    assert_non_null(hb->unet);
    /* Pin b, then use a again: b stays (in use), so both are resident, over the budget. */
    assert_int_equal(sdn_use(hb, err, sizeof err), 0);
    assert_int_equal(sdn_use(ha, err, sizeof err), 0);
    node_models_stats(&files, NULL);
    assert_int_equal(files, 2);
    assert_non_null(hb->unet);
    sdn_unuse(ha);
    sdn_unuse(hb);
    /* /free unloads both; nothing is in use. */
    node_models_release();
    node_models_stats(&files, NULL);
    assert_int_equal(files, 0);
    node_models_set_budget(0);
    sdn_ckpt_unref(hb);
    ckpt_free(&a);
    free(src);
    free(dst);
}

static void test_text_encode(void **state)
{
    (void)state;
    ckpt_t c = load_ckpt();
    node_value_t *p = encode(&c, "a photo of a cat", -1), *q = encode(&c, "a photo of a cat", -2);
    assert_int_equal(sdn_cond_count(p), 1);
    int64_t want[3] = {1, 77, 32};
    expect_shape(sdn_cond_at(p, 0), 3, want);
    assert_true(max_abs_diff(sdn_cond_at(p, 0), sdn_cond_at(q, 0)) > 1e-3); /* clip skip changes it */
    /* More than 75 tokens: two rows. */
    char long_prompt[1200] = "";
    for (int i = 0; i < 100; i++)
        strcat(long_prompt, "cat ");
    node_value_t *l = encode(&c, long_prompt, -1);
    int64_t want2[3] = {1, 154, 32};
    expect_shape(sdn_cond_at(l, 0), 3, want2);
    /* ConditioningCombine concatenates the lists. */
    run_t *r = run_new(&node_def_ConditioningCombine);
    nt_set_in(r, "conditioning_1", node_value_ref(p));
    nt_set_in(r, "conditioning_2", node_value_ref(l));
    assert_int_equal(nt_exec(r), 0);
    assert_int_equal(sdn_cond_count(r->out[0]), 2);
    assert_ptr_equal(sdn_cond_at(r->out[0], 1), sdn_cond_at(l, 0));
    nt_run_free(r);
    /* A prompt past the row limit (64 rows of 75 tokens) fails with a message. */
    size_t big = 70 * 75 * 4 + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    huge[0] = '\0';
    for (int i = 0; i < 70 * 75; i++)
        strcat(huge + (size_t)i * 4, "cat ");
    run_t *h = run_new(&node_def_CLIPTextEncode);
    nt_set_in(h, "clip", node_value_ref(c.clip));
    nt_set_in(h, "text", node_value_string(huge));
    assert_int_equal(nt_exec(h), BASE_E_NODE_FAILED);
    assert_non_null(strstr(h->ctx.err, "at most 64"));
    nt_run_free(h);
    free(huge);
    /* The tiny CLIP has 2 layers: -3 is out of range. */
    r = run_new(&node_def_CLIPSetLastLayer);
    nt_set_in(r, "clip", node_value_ref(c.clip));
    nt_set_in(r, "stop_at_clip_layer", node_value_i64(-3));
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    assert_non_null(strstr(r->ctx.err, "-2..-1"));
    nt_run_free(r);
    node_value_unref(p);
    node_value_unref(q);
    node_value_unref(l);
    ckpt_free(&c);
}

static void test_latent_nodes(void **state)
{
    (void)state;
    /* A latent batch past 1 GiB is refused, not allocated. */
    run_t *big = run_new(&node_def_EmptyLatentImage);
    nt_set_in(big, "width", node_value_i64(16384));
    nt_set_in(big, "height", node_value_i64(16384));
    nt_set_in(big, "batch_size", node_value_i64(64));
    assert_int_equal(nt_exec(big), BASE_E_NODE_FAILED);
    assert_non_null(strstr(big->ctx.err, "too large"));
    nt_run_free(big);
    node_value_t *e = empty_latent(64, 48, 2);
    int64_t want[4] = {2, 4, 6, 8};
    expect_shape(sdn_latent_samples(e), 4, want);
    /* LatentUpscale keeps the aspect when one side is 0 (at least 64 px). */
    run_t *r = run_new(&node_def_LatentUpscale);
    nt_set_in(r, "samples", node_value_ref(e));
    nt_set_in(r, "upscale_method", node_value_string("bilinear"));
    nt_set_in(r, "width", node_value_i64(0));
    nt_set_in(r, "height", node_value_i64(96));
    nt_set_in(r, "crop", node_value_string("disabled"));
    assert_int_equal(nt_exec(r), 0);
    int64_t up[4] = {2, 4, 12, 16};
    expect_shape(sdn_latent_samples(r->out[0]), 4, up);
    nt_run_free(r);
    r = run_new(&node_def_LatentUpscaleBy);
    nt_set_in(r, "samples", node_value_ref(e));
    nt_set_in(r, "upscale_method", node_value_string("nearest-exact"));
    nt_set_in(r, "scale_by", node_value_float(1.5));
    assert_int_equal(nt_exec(r), 0);
    int64_t by[4] = {2, 4, 9, 12};
    expect_shape(sdn_latent_samples(r->out[0]), 4, by);
    nt_run_free(r);
    /* SetLatentNoiseMask stores the mask as [B, 1, H, W] beside the samples. */
    r = run_new(&node_def_SetLatentNoiseMask);
    ts_tensor_t *m = NULL;
    int64_t ms[3] = {1, 48, 64};
    assert_int_equal(ts_zeros(&m, ms, 3, TS_F32, CPU), 0);
    nt_set_in(r, "samples", node_value_ref(e));
    nt_set_in(r, "mask", node_value_tensor(m));
    assert_int_equal(nt_exec(r), 0);
    const node_value_t *nm = node_value_dict_get(r->out[0], "noise_mask");
    assert_non_null(nm);
    int64_t mw[4] = {1, 1, 48, 64};
    expect_shape(nm->u.t, 4, mw);
    assert_ptr_equal(sdn_latent_samples(r->out[0]), sdn_latent_samples(e));
    nt_run_free(r);
    node_value_unref(e);
}

static void test_ksampler_semantics(void **state)
{
    (void)state;
    ckpt_t c = load_ckpt();
    node_value_t *pos = encode(&c, "a (red:1.3) lighthouse", -1), *neg = encode(&c, "blurry", -1);
    node_value_t *lat = empty_latent(32, 32, 1);
    ks_args_t a = {.seed = 42, .steps = 4, .cfg = 5.0, .denoise = 1.0, .sampler = "euler", .scheduler = "karras"};

    /* Same seed -> same latent; another seed -> another latent. */
    node_value_t *x1 = ksample(&c, pos, neg, lat, a), *x2 = ksample(&c, pos, neg, lat, a);
    assert_true(max_abs_diff(sdn_latent_samples(x1), sdn_latent_samples(x2)) == 0.0);
    ks_args_t b = a;
    b.seed = 43;
    node_value_t *x3 = ksample(&c, pos, neg, lat, b);
    assert_true(max_abs_diff(sdn_latent_samples(x1), sdn_latent_samples(x3)) > 1e-3);

    /* Two KSamplerAdvanced halves (with leftover noise, then without adding noise) are one
     * full KSampler run. */
    node_value_t *h1 = advanced(&c, pos, neg, lat, true, 0, 2, true);
    node_value_t *h2 = advanced(&c, pos, neg, h1, false, 2, 10000, false);
    node_value_t *full = advanced(&c, pos, neg, lat, true, 0, 10000, false);
    assert_true(max_abs_diff(sdn_latent_samples(h2), sdn_latent_samples(full)) < 1e-4);
    ks_args_t s77 = a;
    s77.seed = 77;
    node_value_t *ks77 = ksample(&c, pos, neg, lat, s77);
    assert_true(max_abs_diff(sdn_latent_samples(full), sdn_latent_samples(ks77)) < 1e-5);

    /* denoise 0: the input comes back untouched. */
    ks_args_t z = a;
    z.denoise = 0.0;
    node_value_t *same = ksample(&c, pos, neg, x1, z);
    assert_ptr_equal(sdn_latent_samples(same), sdn_latent_samples(x1));

    /* batch_index [1] gets the noise of item 1 of a batch of two. */
    node_value_t *lat2 = empty_latent(32, 32, 2);
    node_value_t *both = ksample(&c, pos, neg, lat2, a);
    node_value_t *one = node_value_dict(2);
    node_value_t *idx = node_value_list(1);
    node_value_list_set(idx, 0, node_value_i64(1));
    assert_int_equal(node_value_dict_set(one, 0, "samples", node_value_tensor(ts_ref(sdn_latent_samples(lat)))), 0);
    assert_int_equal(node_value_dict_set(one, 1, "batch_index", idx), 0);
    node_value_t *item1 = ksample(&c, pos, neg, one, a);
    ts_tensor_t *second = NULL;
    assert_int_equal(ts_slice(&second, sdn_latent_samples(both), 0, 1, 2), 0);
    /* Equal up to the rounding of batch-size-dependent kernels (the noise itself is equal). */
    double bd = max_abs_diff(second, sdn_latent_samples(item1)), mag = 0;
    assert_int_equal(ts_reduce_all(second, TS_REDUCE_MAX_ABS, &mag), 0);
    if (bd > 1e-4 * mag)
        fail_msg("batch_index item differs by %g (values up to %g)", bd, mag);
    ts_free(second);

    /* A zero noise mask keeps the source latent everywhere. */
    run_t *r = run_new(&node_def_SetLatentNoiseMask);
    ts_tensor_t *m = NULL;
    int64_t ms[3] = {1, 32, 32};
    assert_int_equal(ts_zeros(&m, ms, 3, TS_F32, CPU), 0);
    nt_set_in(r, "samples", node_value_ref(x1));
    nt_set_in(r, "mask", node_value_tensor(m));
    assert_int_equal(nt_exec(r), 0);
    node_value_t *masked_in = nt_take_out(r, 0);
    nt_run_free(r);
    ks_args_t hm = a;
    hm.denoise = 0.6;
    node_value_t *kept = ksample(&c, pos, neg, masked_in, hm);
    double kd = max_abs_diff(sdn_latent_samples(kept), sdn_latent_samples(x1)), km = 0;
    assert_int_equal(ts_reduce_all(sdn_latent_samples(x1), TS_REDUCE_MAX_ABS, &km), 0);
    if (kd > 1e-6 * km) /* only the rounding of x * 0.18215 / 0.18215 */
        fail_msg("a zero mask changed the latent by %g (values up to %g)", kd, km);
    assert_non_null(node_value_dict_get(kept, "noise_mask"));

    node_value_unref(kept);
    node_value_unref(masked_in);
    node_value_unref(item1);
    node_value_unref(one);
    node_value_unref(both);
    node_value_unref(lat2);
    node_value_unref(same);
    node_value_unref(ks77);
    node_value_unref(full);
    node_value_unref(h2);
    node_value_unref(h1);
    node_value_unref(x3);
    node_value_unref(x2);
    node_value_unref(x1);
    node_value_unref(lat);
    node_value_unref(pos);
    node_value_unref(neg);
    ckpt_free(&c);
}

static void test_progress_previews_interrupt(void **state)
{
    (void)state;
    ckpt_t c = load_ckpt();
    node_value_t *pos = encode(&c, "x", -1), *neg = encode(&c, "", -1), *lat = empty_latent(32, 32, 1);
    ks_args_t a = {.seed = 1, .steps = 3, .cfg = 8.0, .denoise = 1.0, .sampler = "dpmpp_2m", .scheduler = "normal"};
    run_t *r = ksampler_run(&c, pos, neg, lat, a);
    r->ctx.preview_cb = nt_on_preview;
    assert_int_equal(nt_exec(r), 0);
    assert_int_equal(r->previews, 3);
    assert_int_equal(r->last_value, 3);
    assert_int_equal(r->last_max, 3);
    nt_run_free(r);

    /* An interrupt pending before the first step stops after it. */
    a.steps = 50;
    r = ksampler_run(&c, pos, neg, lat, a);
    atomic_store(&r->intr, true);
    assert_int_equal(nt_exec(r), BASE_E_INTERRUPTED);
    assert_true(r->last_value <= 1);
    assert_null(r->out[0]);
    nt_run_free(r);

    /* Unknown sampler names are refused (validation normally catches them first). */
    a.steps = 2;
    a.sampler = "no_such_sampler";
    r = ksampler_run(&c, pos, neg, lat, a);
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    nt_run_free(r);
    node_value_unref(pos);
    node_value_unref(neg);
    node_value_unref(lat);
    ckpt_free(&c);
}

static void test_vae_nodes(void **state)
{
    (void)state;
    ckpt_t c = load_ckpt();
    node_value_t *lat = empty_latent(128, 64, 1);
    ts_tensor_t *z = NULL;
    int64_t zs[4] = {1, 4, 8, 16};
    assert_int_equal(ts_randn(&z, zs, 4, 5, CPU), 0);
    node_value_t *zl = sdn_latent_value(lat, z);

    run_t *d = run_new(&node_def_VAEDecode);
    nt_set_in(d, "samples", node_value_ref(zl));
    nt_set_in(d, "vae", node_value_ref(c.vae));
    assert_int_equal(nt_exec(d), 0);
    int64_t img_shape[4] = {1, 64, 128, 3};
    expect_shape(d->out[0]->u.t, 4, img_shape);
    double lo = 0, hi = 0;
    assert_int_equal(ts_reduce_all(d->out[0]->u.t, TS_REDUCE_MIN, &lo), 0);
    assert_int_equal(ts_reduce_all(d->out[0]->u.t, TS_REDUCE_MAX, &hi), 0);
    assert_true(lo >= 0.0 && hi <= 1.0);

    /* One tile covering the latent: exactly VAEDecode. Several tiles: same shape, progress per tile. */
    run_t *t = run_new(&node_def_VAEDecodeTiled);
    nt_set_in(t, "samples", node_value_ref(zl));
    nt_set_in(t, "vae", node_value_ref(c.vae));
    nt_set_in(t, "tile_size", node_value_i64(512));
    nt_set_in(t, "overlap", node_value_i64(64));
    nt_set_in(t, "temporal_size", node_value_i64(64));
    nt_set_in(t, "temporal_overlap", node_value_i64(8));
    assert_int_equal(nt_exec(t), 0);
    assert_true(max_abs_diff(t->out[0]->u.t, d->out[0]->u.t) == 0.0);
    nt_set_in(t, "tile_size", node_value_i64(64));
    nt_set_in(t, "overlap", node_value_i64(32)); /* clamped to 16 = tile / 4 */
    t->progress_calls = 0;
    assert_int_equal(nt_exec(t), 0);
    expect_shape(t->out[0]->u.t, 4, img_shape);
    assert_int_equal(t->progress_calls, 3); /* latent 8 x 16, tiles of 8 stepping 6: 1 x 3 */
    nt_run_free(t);

    /* VAEEncode centre-crops to multiples of 8 and drops alpha. */
    ts_tensor_t *px = NULL;
    int64_t ps[4] = {2, 70, 67, 4};
    assert_int_equal(ts_full(&px, ps, 4, 0.5, TS_F32, CPU), 0);
    run_t *e = run_new(&node_def_VAEEncode);
    nt_set_in(e, "pixels", node_value_tensor(px));
    nt_set_in(e, "vae", node_value_ref(c.vae));
    assert_int_equal(nt_exec(e), 0);
    int64_t ls[4] = {2, 4, 8, 8};
    expect_shape(sdn_latent_samples(e->out[0]), 4, ls);
    nt_run_free(e);

    nt_run_free(d);
    node_value_unref(zl);
    node_value_unref(lat);
    ckpt_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader_and_cache),
        cmocka_unit_test(test_memory_budget),
        cmocka_unit_test(test_text_encode),
        cmocka_unit_test(test_latent_nodes),
        cmocka_unit_test(test_ksampler_semantics),
        cmocka_unit_test(test_progress_previews_interrupt),
        cmocka_unit_test(test_vae_nodes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
