/* LoRA loading (nodes/sd/lora.c, lora_cache.c, node_lora.c) over the tiny demo checkpoint
 * with small hand-made LoRA files. The factors are multiples of 1/8 in -3/8..3/8 and every
 * scale a power of two times the strength, so up @ down is exact in float32 and W + k * ΔW
 * has one rounding: the patched weights are compared bit for bit with the formula
 * (sd15-reference.md §7.5) evaluated here in double from the factors and the base weights.
 *
 * Covered: the §7.2 name map (SD1.5 layout, every weight), the key spellings of §7.1/§7.3/§7.4
 * (kohya LDM and diffusers names, LyCORIS, PEFT with and without ".processor." and ".weight",
 * to_out.0 and to_out, lora_linear_layer, text-encoder keys), linear, 3x3 LoCon, 1x1, Tucker
 * and no-alpha merges, negative and zero strengths, chaining, unknown-key reports, sharing of
 * unpatched tensors, the base staying bit-identical to the file, the patch cache, rebuilding
 * after the model cache unloads a patched model, bad files, and KSampler/CLIPTextEncode runs. */
#include "testutil.h"
#include "nodes_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "nodes.h"
#include "sd/lora.h"
#include "sd/sd.h"
#include "sd/sd_nodes.h"

typedef struct {
    char *base, *models, *loras, *ckpt, *input, *output, *temp;
    node_env_t env;
} fix_t;

static fix_t F;

static int setup(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    F.base = tu_fresh_dir("sd_lora");
    F.models = nt_join(F.base, "models");
    F.loras = nt_join(F.models, "loras");
    F.input = nt_join(F.base, "input");
    F.output = nt_join(F.base, "output");
    F.temp = nt_join(F.base, "temp");
    /* No models/clip_tokenizer/: the tables that ship with weft are found last. */
    char *ck = nt_join(F.models, "checkpoints");
    assert_int_equal(mkdir(F.models, 0755), 0);
    assert_int_equal(mkdir(ck, 0755), 0);
    assert_int_equal(mkdir(F.loras, 0755), 0);
    char *sub = nt_join(F.loras, "styles");
    assert_int_equal(mkdir(sub, 0755), 0);
    free(sub);
    F.ckpt = nt_join(ck, "tiny.safetensors");
    char err[512] = "";
    assert_int_equal(sd_demo_write(F.ckpt, SD_DEMO_TINY, ST_F32, 1, err, sizeof err), 0);
    free(ck);
    F.env = (node_env_t){.base_dir = F.base,
                         .input_dir = F.input,
                         .output_dir = F.output,
                         .temp_dir = F.temp,
                         .models_dir = F.models};
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sdn_lora_cache_clear();
    node_models_release();
    free(F.base);
    free(F.models);
    free(F.loras);
    free(F.ckpt);
    free(F.input);
    free(F.output);
    free(F.temp);
    return 0;
}

/* ------------------------------------------------------------------ writing LoRA files */

#define LW_MAX 64

typedef struct {
    st_write_entry_t e[LW_MAX];
    char *names[LW_MAX];
    float *data[LW_MAX];
    size_t n;
} lw_t;

static uint32_t rng_state = 12345;

/* -3/8 .. 3/8 in steps of 1/8. */
static float small(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((int)((rng_state >> 16) % 7) - 3) / 8.0f;
}

static const float *lw_add(lw_t *w, const char *name, int ndim, const int64_t *shape)
{
    assert_true(w->n < LW_MAX);
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    float *d = malloc(n * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = small();
    size_t k = w->n++;
    w->names[k] = strdup(name);
    assert_non_null(w->names[k]);
    w->data[k] = d;
    w->e[k] = (st_write_entry_t){.name = w->names[k], .dtype = ST_F32, .ndim = ndim, .data = d};
    if (ndim)
        memcpy(w->e[k].shape, shape, (size_t)ndim * sizeof *shape);
    return d;
}

static void lw_scalar(lw_t *w, const char *name, float v)
{
    float *d = (float *)lw_add(w, name, 0, NULL);
    d[0] = v;
}

/* Writes the entries (as F16 when f16: most published LoRAs are; the values are exact in
 * half precision) and frees them. */
static void lw_write_as(lw_t *w, const char *file, bool f16)
{
    char *path = nt_join(F.loras, file), err[512] = "";
    void *half[LW_MAX] = {0};
    for (size_t i = 0; f16 && i < w->n; i++) {
        ts_tensor_t *a = NULL, *b = NULL;
        const int64_t one = 1;
        int nd = w->e[i].ndim;
        assert_int_equal(ts_from_host(&a, w->data[i], TS_F32, nd ? w->e[i].shape : &one, nd ? nd : 1,
                                      (ts_device_t){TS_CPU, 0}),
                         0);
        assert_int_equal(ts_to(&b, a, TS_F16, (ts_device_t){TS_CPU, 0}), 0);
        size_t bytes = (size_t)ts_numel(b) * 2;
        assert_non_null(half[i] = malloc(bytes));
        assert_int_equal(ts_to_host(b, TS_F16, half[i], bytes), 0);
        w->e[i].dtype = ST_F16;
        w->e[i].data = half[i];
        ts_free(a);
        ts_free(b);
    }
    if (st_write(path, w->e, w->n, NULL, err, sizeof err))
        fail_msg("st_write %s: %s", file, err);
    free(path);
    for (size_t i = 0; i < w->n; i++) {
        free(w->names[i]);
        free(w->data[i]);
        free(half[i]);
    }
    w->n = 0;
}

static void lw_write(lw_t *w, const char *file)
{
    lw_write_as(w, file, false);
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ADD(w, name, ...) lw_add(w, name, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

/* ------------------------------------------------------------------ expected values */

/* Host copy of a float32 tensor. */
static float *host(const ts_tensor_t *t, size_t *n)
{
    *n = (size_t)ts_numel(t);
    float *f = malloc(*n * sizeof *f + 1);
    assert_non_null(f);
    assert_int_equal(ts_to_host(t, TS_F32, f, *n * sizeof *f), 0);
    return f;
}

typedef struct {
    const char *name;
    ts_tensor_t *t;
} find_t;

static int find_cb(void *ctx, const char *name, ts_tensor_t *t)
{
    find_t *f = ctx;
    if (strcmp(name, f->name))
        return 0;
    f->t = t;
    return 1;
}

static ts_tensor_t *weight(const sdw_t *w, const char *name)
{
    find_t f = {name, NULL};
    sdw_each(w, find_cb, &f);
    if (!f.t)
        fail_msg("no tensor %s", name);
    return f.t;
}

/* W' = W + k * (up @ down) with up [out, r] and down [r, rest] (conv factors flattened), in
 * double, rounded once. */
static float *expect_plain(const float *w, size_t n, int64_t out, int64_t r, const float *up,
                           const float *down, double k)
{
    int64_t rest = (int64_t)n / out;
    float *e = malloc(n * sizeof *e);
    assert_non_null(e);
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < rest; j++) {
            double d = 0;
            for (int64_t a = 0; a < r; a++)
                d += (double)up[o * r + a] * (double)down[a * rest + j];
            e[o * rest + j] = (float)((double)w[o * rest + j] + k * d);
        }
    return e;
}

/* Tucker: ΔW[o,i,y,x] = Σ_a Σ_b up[o,a] mid[a,b,y,x] down[b,i]. */
static float *expect_tucker(const float *w, int64_t out, int64_t in, int64_t kh, int64_t kw, const float *up,
                            const float *mid, const float *down, int64_t ru, int64_t r, double k)
{
    size_t n = (size_t)(out * in * kh * kw);
    float *e = malloc(n * sizeof *e);
    assert_non_null(e);
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++)
            for (int64_t y = 0; y < kh; y++)
                for (int64_t x = 0; x < kw; x++) {
                    double d = 0;
                    for (int64_t a = 0; a < ru; a++)
                        for (int64_t b = 0; b < r; b++)
                            d += (double)up[o * ru + a] * (double)mid[((a * r + b) * kh + y) * kw + x] *
                                 (double)down[b * in + i];
                    size_t at = (size_t)(((o * in + i) * kh + y) * kw + x);
                    e[at] = (float)((double)w[at] + k * d);
                }
    return e;
}

/* Every element of t equals want exactly. */
static void expect_bits(const ts_tensor_t *t, const float *want, size_t n, const char *what)
{
    size_t got_n;
    float *got = host(t, &got_n);
    assert_int_equal(got_n, n);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof got[i]))
            fail_msg("%s[%zu] = %.9g, want %.9g", what, i, (double)got[i], (double)want[i]);
    free(got);
}

/* ------------------------------------------------------------------ running nodes */

typedef struct {
    node_value_t *model, *clip, *vae;
} ckpt_t;

typedef nt_run_t run_t;

static run_t *run_new(const node_def_t *def)
{
    return nt_run_new(def, &F.env, "7");
}

static ckpt_t load_ckpt(void)
{
    run_t *r = run_new(&node_def_CheckpointLoaderSimple);
    nt_set_in(r, "ckpt_name", node_value_string("tiny.safetensors"));
    if (nt_exec(r))
        fail_msg("CheckpointLoaderSimple: %s", r->ctx.err);
    ckpt_t c = {node_value_ref(r->out[0]), node_value_ref(r->out[1]), node_value_ref(r->out[2])};
    nt_run_free(r);
    return c;
}

static void ckpt_free(ckpt_t *c)
{
    node_value_unref(c->model);
    node_value_unref(c->clip);
    node_value_unref(c->vae);
}

/* One LoraLoader (clip non-NULL) or LoraLoaderModelOnly run. */
typedef struct {
    int rc;
    node_value_t *model, *clip;
    char *ui; /* compact JSON of ctx->ui, or NULL */
    char err[1024];
} lora_res_t;

static lora_res_t lora_run(node_value_t *model, node_value_t *clip, const char *name, double sm, double sc)
{
    run_t *r = run_new(clip ? &node_def_LoraLoader : &node_def_LoraLoaderModelOnly);
    nt_set_in(r, "model", node_value_ref(model));
    if (clip) {
        nt_set_in(r, "clip", node_value_ref(clip));
        nt_set_in(r, "strength_clip", node_value_float(sc));
    }
    nt_set_in(r, "lora_name", node_value_string(name));
    nt_set_in(r, "strength_model", node_value_float(sm));
    lora_res_t res = {0};
    res.rc = nt_exec(r);
    snprintf(res.err, sizeof res.err, "%s", r->ctx.err);
    if (!res.rc) {
        res.model = node_value_ref(r->out[0]);
        assert_non_null(res.model);
        if (clip) {
            res.clip = node_value_ref(r->out[1]);
            assert_non_null(res.clip);
        }
    }
    if (r->ctx.ui)
        res.ui = json_dump(r->ctx.ui, JSON_COMPACT);
    nt_run_free(r);
    return res;
}

static lora_res_t lora_ok(node_value_t *model, node_value_t *clip, const char *name, double sm, double sc)
{
    lora_res_t res = lora_run(model, clip, name, sm, sc);
    if (res.rc)
        fail_msg("LoRA %s: %s", name, res.err);
    return res;
}

static void lora_res_free(lora_res_t *r)
{
    node_value_unref(r->model);
    node_value_unref(r->clip);
    free(r->ui);
}

static sdn_ckpt_t *model_ck(const node_value_t *v)
{
    assert_string_equal(v->u.obj.tag, "MODEL");
    return ((const sdn_model_t *)v->u.obj.ptr)->ck;
}

static sdn_ckpt_t *clip_ck(const node_value_t *v)
{
    assert_string_equal(v->u.obj.tag, "CLIP");
    return ((const sdn_clip_t *)v->u.obj.ptr)->ck;
}

/* The UNet / CLIP store of a holder, pinned until unpin(). */
static const sdw_t *unet_w(sdn_ckpt_t *ck)
{
    char err[512];
    if (sdn_use(ck, err, sizeof err))
        fail_msg("sdn_use: %s", err);
    return sd_unet_weights(ck->unet);
}

static const sdw_t *clip_w(sdn_ckpt_t *ck)
{
    char err[512];
    if (sdn_use(ck, err, sizeof err))
        fail_msg("sdn_use: %s", err);
    return sd_clip_weights(ck->clip);
}

/* base's weight `target` patched with up @ down (plain) at k, compared bit for bit. */
static void check_plain(const sdw_t *base, const sdw_t *patched, const char *target, int64_t r,
                        const float *up, const float *down, double k)
{
    size_t n;
    ts_tensor_t *bw = weight(base, target), *pw = weight(patched, target);
    assert_ptr_not_equal(bw, pw);
    float *w = host(bw, &n);
    float *e = expect_plain(w, n, ts_size(bw, 0), r, up, down, k);
    expect_bits(pw, e, n, target);
    free(w);
    free(e);
}

typedef struct {
    const sdw_t *other;
    size_t same;
} cmp_t;

static int cmp_cb(void *ctx, const char *name, ts_tensor_t *t)
{
    cmp_t *c = ctx;
    c->same += weight(c->other, name) == t;
    return 0;
}

/* How many names of a hold the very same tensor in b. */
static size_t shared_count(const sdw_t *a, const sdw_t *b)
{
    cmp_t c = {b, 0};
    assert_int_equal(sdw_count(a), sdw_count(b));
    sdw_each(a, cmp_cb, &c);
    return c.same;
}

/* ------------------------------------------------------------------ name maps */

typedef struct {
    const sd_unet_config_t *cfg;
    char (*names)[160];
    size_t n, missing;
} cover_t;

static int cover_cb(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    (void)shape;
    (void)ndim;
    cover_t *c = ctx;
    size_t len = strlen(name);
    if (len < 8 || strcmp(name + len - 7, ".weight"))
        return 0;
    char ldm[160];
    snprintf(ldm, sizeof ldm, "%.*s", (int)(len - 7), name);
    if (!lora_unet_diffusers_name(c->cfg, ldm, c->names[c->n], sizeof c->names[c->n])) {
        print_error("no diffusers name for %s\n", ldm);
        c->missing++;
        return 0;
    }
    c->n++;
    return 0;
}

static void expect_diffusers(const sd_unet_config_t *cfg, const char *ldm, const char *want)
{
    char buf[200];
    if (!want) {
        assert_false(lora_unet_diffusers_name(cfg, ldm, buf, sizeof buf));
        return;
    }
    assert_true(lora_unet_diffusers_name(cfg, ldm, buf, sizeof buf));
    assert_string_equal(buf, want);
}

/* §7.2 on the real SD1.5 layout: spot checks, and every weight of the layout has a distinct
 * diffusers name. */
static void test_diffusers_map_sd15(void **state)
{
    (void)state;
    sd_unet_config_t cfg;
    sd_unet_config_sd15(&cfg);
    expect_diffusers(&cfg, "input_blocks.0.0", "conv_in");
    expect_diffusers(&cfg, "time_embed.0", "time_embedding.linear_1");
    expect_diffusers(&cfg, "time_embed.2", "time_embedding.linear_2");
    expect_diffusers(&cfg, "out.0", "conv_norm_out");
    expect_diffusers(&cfg, "out.2", "conv_out");
    expect_diffusers(&cfg, "input_blocks.1.1.transformer_blocks.0.attn1.to_q",
                     "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q");
    expect_diffusers(&cfg, "input_blocks.2.0.in_layers.2", "down_blocks.0.resnets.1.conv1");
    expect_diffusers(&cfg, "input_blocks.3.0.op", "down_blocks.0.downsamplers.0.conv");
    expect_diffusers(&cfg, "input_blocks.4.1.proj_in", "down_blocks.1.attentions.0.proj_in");
    expect_diffusers(&cfg, "input_blocks.4.0.skip_connection", "down_blocks.1.resnets.0.conv_shortcut");
    expect_diffusers(&cfg, "input_blocks.9.0.op", "down_blocks.2.downsamplers.0.conv");
    expect_diffusers(&cfg, "input_blocks.11.0.in_layers.2", "down_blocks.3.resnets.1.conv1");
    expect_diffusers(&cfg, "middle_block.0.emb_layers.1", "mid_block.resnets.0.time_emb_proj");
    expect_diffusers(&cfg, "middle_block.1.proj_out", "mid_block.attentions.0.proj_out");
    expect_diffusers(&cfg, "middle_block.2.out_layers.3", "mid_block.resnets.1.conv2");
    expect_diffusers(&cfg, "output_blocks.0.0.in_layers.0", "up_blocks.0.resnets.0.norm1");
    expect_diffusers(&cfg, "output_blocks.2.1.conv", "up_blocks.0.upsamplers.0.conv");
    expect_diffusers(&cfg, "output_blocks.3.1.proj_in", "up_blocks.1.attentions.0.proj_in");
    expect_diffusers(&cfg, "output_blocks.5.2.conv", "up_blocks.1.upsamplers.0.conv");
    expect_diffusers(&cfg, "output_blocks.8.2.conv", "up_blocks.2.upsamplers.0.conv");
    expect_diffusers(&cfg, "output_blocks.11.0.skip_connection", "up_blocks.3.resnets.2.conv_shortcut");
    expect_diffusers(&cfg, "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj",
                     "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj");
    expect_diffusers(&cfg, "output_blocks.1.0.out_layers.3", "up_blocks.0.resnets.1.conv2");
    expect_diffusers(&cfg, "input_blocks.1.0.in_layers.1", NULL); /* the SiLU has no weight */
    expect_diffusers(&cfg, "label_emb.0.0", NULL);

    cover_t c = {&cfg, calloc(1024, sizeof *c.names), 0, 0};
    assert_non_null(c.names);
    assert_int_equal(sd_unet_keys(&cfg, "", cover_cb, &c), 0);
    assert_int_equal(c.missing, 0);
    assert_true(c.n > 300);
    for (size_t i = 0; i < c.n; i++)
        for (size_t j = i + 1; j < c.n; j++)
            if (!strcmp(c.names[i], c.names[j]))
                fail_msg("two weights map to %s", c.names[i]);
    free(c.names);
}

static void expect_target(const lora_keymap_t *m, const char *module, const char *want)
{
    const char *got = lora_keymap_find(m, module);
    if (!want) {
        if (got)
            fail_msg("%s maps to %s, want nothing", module, got);
        return;
    }
    if (!got)
        fail_msg("%s maps to nothing, want %s", module, want);
    assert_string_equal(got, want);
}

/* §7.4 spellings against the tiny model's own weights. */
static void test_key_maps(void **state)
{
    (void)state;
    ckpt_t c = load_ckpt();
    sdn_ckpt_t *ck = model_ck(c.model);
    unet_w(ck);
    clip_w(ck);
    lora_keymap_t *mu = NULL, *mc = NULL;
    assert_int_equal(lora_keymap_unet(&mu, ck->unet), 0);
    assert_int_equal(lora_keymap_clip(&mc, ck->clip), 0);
    const char *to_q = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight";
    expect_target(mu, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", to_q);
    expect_target(mu, "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q", to_q);
    expect_target(mu, "lycoris_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", to_q);
    expect_target(mu, "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q", to_q);
    expect_target(mu, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", to_q);
    expect_target(mu, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", to_q);
    expect_target(mu, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q", to_q);
    expect_target(mu, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q", to_q);
    const char *out0 = "middle_block.1.transformer_blocks.0.attn2.to_out.0.weight";
    expect_target(mu, "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0", out0);
    expect_target(mu, "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out", out0);
    expect_target(mu, "unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out", out0);
    expect_target(mu, "unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out.0", out0);
    expect_target(mu, "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0", out0);
    expect_target(mu, "lora_unet_down_blocks_0_resnets_0_conv1", "input_blocks.1.0.in_layers.2.weight");
    expect_target(mu, "lora_unet_down_blocks_0_resnets_0_time_emb_proj",
                  "input_blocks.1.0.emb_layers.1.weight");
    expect_target(mu, "lora_unet_down_blocks_0_downsamplers_0_conv", "input_blocks.2.0.op.weight");
    expect_target(mu, "lora_unet_up_blocks_0_upsamplers_0_conv", "output_blocks.1.2.conv.weight");
    expect_target(mu, "lora_unet_up_blocks_1_resnets_1_conv_shortcut",
                  "output_blocks.3.0.skip_connection.weight");
    expect_target(mu, "lora_unet_up_blocks_1_attentions_1_proj_in", "output_blocks.3.1.proj_in.weight");
    expect_target(mu, "lora_unet_mid_block_resnets_1_conv2", "middle_block.2.out_layers.3.weight");
    expect_target(mu, "lora_unet_time_embedding_linear_2", "time_embed.2.weight");
    expect_target(mu, "lora_unet_conv_in", "input_blocks.0.0.weight");
    expect_target(mu, "unet.conv_out", "out.2.weight");
    expect_target(mu, "lora_unet_down_blocks_1_downsamplers_0_conv", NULL); /* the last level has none */
    expect_target(mu, "lora_unet_down_blocks_0_attentions_0_proj_in_bias", NULL);
    expect_target(mu, "lora_te_text_model_encoder_layers_0_self_attn_q_proj", NULL);
    const char *q = "text_model.encoder.layers.0.self_attn.q_proj.weight";
    expect_target(mc, "lora_te_text_model_encoder_layers_0_self_attn_q_proj", q);
    expect_target(mc, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", q);
    expect_target(mc, "text_encoder.text_model.encoder.layers.0.self_attn.q_proj", q);
    expect_target(mc, "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj", q);
    expect_target(mc, "text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj", q);
    expect_target(mc, "lora_te_text_model_encoder_layers_1_mlp_fc2",
                  "text_model.encoder.layers.1.mlp.fc2.weight");
    expect_target(mc, "lora_te_text_model_encoder_layers_2_mlp_fc2", NULL); /* two layers only */
    expect_target(mc, "lora_unet_conv_in", NULL);
    lora_keymap_free(mu);
    lora_keymap_free(mc);
    sdn_unuse(ck);
    sdn_unuse(ck);
    ckpt_free(&c);
}

/* ------------------------------------------------------------------ merges */

/* Factors of the "formats" file, kept to compute the expected weights. */
typedef struct {
    const float *m1u, *m1d, *m2u, *m2d, *m3u, *m3d, *m4u, *m4m, *m4d, *m5u, *m5d, *m6u, *m6d, *m7a, *m7b,
        *m8a, *m8b, *m9u, *m9d, *m10a, *m10b, *c1u, *c1d, *c2u, *c2d;
} formats_t;

static formats_t write_formats(const char *file)
{
    lw_t w = {0};
    formats_t f;
    /* M1 kohya, diffusers naming, linear, alpha 2 / rank 4 = 0.5 */
    f.m1u =
        ADD(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", 32, 4);
    f.m1d = ADD(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
                4, 32);
    lw_scalar(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha", 2.0f);
    /* M2 LoCon 3x3 on a ResBlock conv (in_layers.2 = resnets conv1), alpha 1 / rank 2 */
    f.m2u = ADD(&w, "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight", 32, 2, 1, 1);
    f.m2d = ADD(&w, "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight", 2, 32, 3, 3);
    lw_scalar(&w, "lora_unet_down_blocks_0_resnets_0_conv1.alpha", 1.0f);
    /* M3 kohya with LDM naming, 1x1 conv proj_in, alpha 4 / rank 4 = 1 */
    f.m3u = ADD(&w, "lora_unet_input_blocks_3_1_proj_in.lora_up.weight", 64, 4, 1, 1);
    f.m3d = ADD(&w, "lora_unet_input_blocks_3_1_proj_in.lora_down.weight", 4, 64, 1, 1);
    lw_scalar(&w, "lora_unet_input_blocks_3_1_proj_in.alpha", 4.0f);
    /* M4 LyCORIS Tucker on the Upsample conv: core [3, 2, 3, 3], alpha 1 / rank 2 */
    f.m4u = ADD(&w, "lora_unet_up_blocks_0_upsamplers_0_conv.lora_up.weight", 64, 3, 1, 1);
    f.m4m = ADD(&w, "lora_unet_up_blocks_0_upsamplers_0_conv.lora_mid.weight", 3, 2, 3, 3);
    f.m4d = ADD(&w, "lora_unet_up_blocks_0_upsamplers_0_conv.lora_down.weight", 2, 64, 1, 1);
    lw_scalar(&w, "lora_unet_up_blocks_0_upsamplers_0_conv.alpha", 1.0f);
    /* M5 no alpha (factor 1), linear-shaped factors on a 1x1 conv */
    f.m5u = ADD(&w, "lora_unet_mid_block_attentions_0_proj_out.lora_up.weight", 64, 2);
    f.m5d = ADD(&w, "lora_unet_mid_block_attentions_0_proj_out.lora_down.weight", 2, 64);
    /* M6 old diffusers attention processor */
    f.m6u =
        ADD(&w, "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.up.weight",
            64, 4);
    f.m6d =
        ADD(&w, "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight",
            4, 32);
    /* M7 PEFT, plain diffusers path */
    f.m7a = ADD(&w, "unet.up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2.lora_A.weight", 4, 128);
    f.m7b = ADD(&w, "unet.up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2.lora_B.weight", 32, 4);
    /* M8 PEFT to_out.0 */
    f.m8a = ADD(&w, "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight", 2, 64);
    f.m8b = ADD(&w, "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight", 64, 2);
    /* M9 processor to_out (no .0) */
    f.m9u =
        ADD(&w, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight",
            32, 2);
    f.m9d = ADD(
        &w, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight", 2,
        32);
    /* M10 LyCORIS name, PEFT factors without ".weight", 1x1 conv shortcut */
    f.m10a = ADD(&w, "lycoris_up_blocks_1_resnets_1_conv_shortcut.lora_A", 2, 64, 1, 1);
    f.m10b = ADD(&w, "lycoris_up_blocks_1_resnets_1_conv_shortcut.lora_B", 32, 2, 1, 1);
    /* C1 kohya text encoder, alpha 8 / rank 4 = 2 */
    f.c1u = ADD(&w, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", 32, 4);
    f.c1d = ADD(&w, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", 4, 32);
    lw_scalar(&w, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha", 8.0f);
    /* C2 diffusers text encoder */
    f.c2u = ADD(&w, "text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_linear_layer.up.weight", 64, 2);
    f.c2d = ADD(&w, "text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_linear_layer.down.weight", 2, 32);
    /* Not in this model (3 keys) and not a LoRA factor (1 key). */
    ADD(&w, "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight", 32, 2);
    ADD(&w, "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight", 2, 32);
    lw_scalar(&w, "lora_unet_down_blocks_7_attentions_0_proj_in.alpha", 2.0f);
    ADD(&w, "some_random_tensor", 3);
    /* The file's data pointers die with the writer: keep copies for the checks. */
    const float **all = (const float **)&f;
    for (size_t i = 0; i < sizeof f / sizeof *all; i++) {
        size_t k = 0;
        while (k < w.n && w.data[k] != all[i])
            k++;
        assert_true(k < w.n);
        size_t n = 1;
        for (int d = 0; d < w.e[k].ndim; d++)
            n *= (size_t)w.e[k].shape[d];
        float *copy = malloc(n * sizeof *copy);
        assert_non_null(copy);
        memcpy(copy, all[i], n * sizeof *copy);
        all[i] = copy;
    }
    lw_write(&w, file);
    return f;
}

static void formats_free(formats_t *f)
{
    const float **all = (const float **)f;
    for (size_t i = 0; i < sizeof *f / sizeof *all; i++)
        free((void *)all[i]);
}

/* Every format of the file merged exactly (strength 0.75 on the UNet, -0.5 on CLIP), the
 * rest shared, the report, and the base still equal to the file. */
static void test_merge_formats(void **state)
{
    (void)state;
    formats_t f = write_formats("formats.safetensors");
    ckpt_t c = load_ckpt();
    /* The CLIP value's layer choice survives the patch. */
    node_value_t *clip2 = sdn_clip_value(sdn_ckpt_ref(clip_ck(c.clip)), -2);
    const double sm = 0.75, sc = -0.5;
    lora_res_t r = lora_ok(c.model, clip2, "formats.safetensors", sm, sc);
    sdn_ckpt_t *b = model_ck(c.model), *pm = model_ck(r.model), *pc = clip_ck(r.clip);
    assert_ptr_not_equal(pm, b);
    assert_ptr_not_equal(pc, b);
    assert_ptr_not_equal(pm, pc);
    assert_int_equal(((const sdn_clip_t *)r.clip->u.obj.ptr)->layer_idx, -2);
    assert_int_equal(pm->have, SDN_UNET);
    assert_int_equal(pc->have, SDN_CLIP);
    assert_string_equal(pc->path, b->path); /* the tokenizer is found beside the base file */

    const sdw_t *bu = unet_w(b), *bc = clip_w(b), *u = unet_w(pm), *cw = clip_w(pc);
    check_plain(bu, u, "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 4, f.m1u, f.m1d, sm * 0.5);
    check_plain(bu, u, "input_blocks.1.0.in_layers.2.weight", 2, f.m2u, f.m2d, sm * 0.5);
    check_plain(bu, u, "input_blocks.3.1.proj_in.weight", 4, f.m3u, f.m3d, sm * 1.0);
    {
        const char *t = "output_blocks.1.2.conv.weight";
        size_t n;
        float *w = host(weight(bu, t), &n);
        float *e = expect_tucker(w, 64, 64, 3, 3, f.m4u, f.m4m, f.m4d, 3, 2, sm * 0.5);
        expect_bits(weight(u, t), e, n, t);
        free(w);
        free(e);
    }
    check_plain(bu, u, "middle_block.1.proj_out.weight", 2, f.m5u, f.m5d, sm);
    check_plain(bu, u, "input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight", 4, f.m6u, f.m6d, sm);
    check_plain(bu, u, "output_blocks.3.1.transformer_blocks.0.ff.net.2.weight", 4, f.m7b, f.m7a, sm);
    check_plain(bu, u, "middle_block.1.transformer_blocks.0.attn1.to_out.0.weight", 2, f.m8b, f.m8a, sm);
    check_plain(bu, u, "input_blocks.1.1.transformer_blocks.0.attn2.to_out.0.weight", 2, f.m9u, f.m9d, sm);
    check_plain(bu, u, "output_blocks.3.0.skip_connection.weight", 2, f.m10b, f.m10a, sm);
    check_plain(bc, cw, "text_model.encoder.layers.0.self_attn.q_proj.weight", 4, f.c1u, f.c1d, sc * 2.0);
    check_plain(bc, cw, "text_model.encoder.layers.1.mlp.fc1.weight", 2, f.c2u, f.c2d, sc);

    /* Everything else is the base's own tensor; the holders count their new tensors only. */
    assert_int_equal(shared_count(bu, u), sdw_count(bu) - 10);
    assert_int_equal(shared_count(bc, cw), sdw_count(bc) - 2);
    size_t unet_new = (size_t)(32 * 32 + 32 * 32 * 9 + 64 * 64 + 64 * 64 * 9 + 64 * 64 + 64 * 32 + 32 * 128 +
                               64 * 64 + 32 * 32 + 32 * 64) *
                      4;
    assert_int_equal(pm->bytes, unet_new);
    assert_int_equal(pc->bytes, (size_t)(32 * 32 + 64 * 32) * 4);
    assert_ptr_equal(weight(u, "input_blocks.0.0.weight"), weight(bu, "input_blocks.0.0.weight"));
    assert_ptr_equal(weight(u, "input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight"),
                     weight(bu, "input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight"));
    assert_ptr_equal(weight(cw, "text_model.encoder.layers.0.self_attn.k_proj.weight"),
                     weight(bc, "text_model.encoder.layers.0.self_attn.k_proj.weight"));

    /* The report: counts and the keys nothing matched. */
    assert_non_null(r.ui);
    assert_non_null(strstr(r.ui, "formats.safetensors: 10 UNet module(s) at strength 0.75, 2 text-encoder "
                                 "module(s) at strength -0.5"));
    assert_non_null(strstr(r.ui, "4 key(s) not loaded"));
    assert_non_null(strstr(r.ui, "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight"));
    assert_non_null(strstr(r.ui, "some_random_tensor"));

    sdn_unuse(b);
    sdn_unuse(b);
    sdn_unuse(pm);
    sdn_unuse(pc);
    lora_res_free(&r);
    node_value_unref(clip2);
    ckpt_free(&c);
    formats_free(&f);
}

/* ------------------------------------------------------------------ base untouched */

typedef struct {
    const sdw_t *held;
    size_t n;
} same_t;

static int same_cb(void *ctx, const char *name, ts_tensor_t *t)
{
    same_t *s = ctx;
    size_t a, b;
    float *x = host(t, &a), *y = host(weight(s->held, name), &b);
    assert_int_equal(a, b);
    if (memcmp(x, y, a * sizeof *x))
        fail_msg("base tensor %s differs from the file", name);
    free(x);
    free(y);
    s->n++;
    return 0;
}

/* Every tensor of the component in the checkpoint file, read afresh, equals the base's. */
static void expect_base_is_file(const sdw_t *held, const char *prefix)
{
    st_file_t *f = NULL;
    sdw_t *w = NULL;
    char err[512];
    assert_int_equal(st_open(&f, F.ckpt, err, sizeof err), 0);
    assert_int_equal(sdw_from_file(&w, f, prefix, err, sizeof err), 0);
    st_close(f);
    same_t s = {held, 0};
    assert_int_equal(sdw_each(w, same_cb, &s), 0);
    assert_int_equal(s.n, sdw_count(held));
    sdw_free(w);
}

/* ------------------------------------------------------------------ strengths and chains */

/* A LoRA on to_q (kohya), proj_in (PEFT, 1x1) and the text encoder's layer-1 v_proj. */
typedef struct {
    const float *qu, *qd, *pu, *pd, *tu, *td;
} small_t;

/* Returns copies of the factors (the writer's buffers die with the file write). */
static small_t write_small_as(const char *file, float alpha, bool f16)
{
    lw_t w = {0};
    small_t f;
    f.qu =
        ADD(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", 32, 4);
    f.qd = ADD(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", 4,
               32);
    lw_scalar(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha", alpha);
    f.pu = ADD(&w, "unet.down_blocks.1.attentions.0.proj_in.lora_B.weight", 64, 2, 1, 1);
    f.pd = ADD(&w, "unet.down_blocks.1.attentions.0.proj_in.lora_A.weight", 2, 64, 1, 1);
    f.tu = ADD(&w, "lora_te_text_model_encoder_layers_1_self_attn_v_proj.lora_up.weight", 32, 2);
    f.td = ADD(&w, "lora_te_text_model_encoder_layers_1_self_attn_v_proj.lora_down.weight", 2, 32);
    const float **all = (const float **)&f;
    static const size_t sizes[6] = {128, 128, 128, 128, 64, 64};
    for (size_t i = 0; i < 6; i++) {
        float *x = malloc(sizes[i] * sizeof *x);
        assert_non_null(x);
        memcpy(x, all[i], sizes[i] * sizeof *x);
        all[i] = x;
    }
    lw_write_as(&w, file, f16);
    return f;
}

static small_t write_small(const char *file, float alpha)
{
    return write_small_as(file, alpha, false);
}

static void small_free(small_t *f)
{
    const float **all = (const float **)f;
    for (size_t i = 0; i < 6; i++)
        free((void *)all[i]);
}

/* Zero strength passes the input value itself through; a negative one subtracts. */
static void test_zero_and_negative(void **state)
{
    (void)state;
    small_t f = write_small("small.safetensors", 4.0f); /* alpha 4 / rank 4 = 1 on to_q */
    ckpt_t c = load_ckpt();
    lora_res_t z = lora_ok(c.model, c.clip, "small.safetensors", 0.0, 0.0);
    assert_ptr_equal(z.model, c.model);
    assert_ptr_equal(z.clip, c.clip);
    assert_null(z.ui);
    lora_res_t zc = lora_ok(c.model, c.clip, "small.safetensors", -1.25, 0.0);
    assert_ptr_equal(zc.clip, c.clip);
    assert_ptr_not_equal(zc.model, c.model);
    lora_res_t zm = lora_ok(c.model, c.clip, "small.safetensors", 0.0, 2.0);
    assert_ptr_equal(zm.model, c.model);
    assert_ptr_not_equal(zm.clip, c.clip);

    sdn_ckpt_t *b = model_ck(c.model), *pm = model_ck(zc.model), *pc = clip_ck(zm.clip);
    const sdw_t *bu = unet_w(b), *bc = clip_w(b), *u = unet_w(pm), *cw = clip_w(pc);
    check_plain(bu, u, "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 4, f.qu, f.qd, -1.25);
    check_plain(bu, u, "input_blocks.3.1.proj_in.weight", 2, f.pu, f.pd, -1.25);
    check_plain(bc, cw, "text_model.encoder.layers.1.self_attn.v_proj.weight", 2, f.tu, f.td, 2.0);
    assert_int_equal(shared_count(bu, u), sdw_count(bu) - 2);
    assert_int_equal(shared_count(bc, cw), sdw_count(bc) - 1);
    sdn_unuse(b);
    sdn_unuse(b);
    sdn_unuse(pm);
    sdn_unuse(pc);
    lora_res_free(&z);
    lora_res_free(&zc);
    lora_res_free(&zm);
    ckpt_free(&c);
    small_free(&f);
}

/* Two LoRAs chained: each applies on top of the other's output, so the result is the base
 * plus both deltas (each rounded once, in order), and the first patched model is unchanged. */
static void test_chain(void **state)
{
    (void)state;
    small_t a = write_small("styles/a.safetensors", 2.0f);   /* 0.5 on to_q */
    small_t b = write_small_as("b.safetensors", 8.0f, true); /* 2 on to_q; F16 factors */
    ckpt_t c = load_ckpt();
    lora_res_t ra = lora_ok(c.model, c.clip, "styles/a.safetensors", 1.0, 0.5);
    lora_res_t rb = lora_ok(ra.model, ra.clip, "b.safetensors", -0.75, 1.0);
    sdn_ckpt_t *base = model_ck(c.model), *pa = model_ck(ra.model), *pb = model_ck(rb.model);
    const sdw_t *w0 = unet_w(base), *wa = unet_w(pa), *wb = unet_w(pb);
    const sdw_t *c0 = clip_w(base), *ca = clip_w(clip_ck(ra.clip)), *cb = clip_w(clip_ck(rb.clip));

    struct {
        const sdw_t *w0, *wa, *wb;
        const char *name;
        int64_t ra, rb;
        const float *ua, *da, *ub, *db;
        double ka, kb;
    } cases[] = {
        {w0, wa, wb, "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 4, 4, a.qu, a.qd, b.qu, b.qd,
         0.5, -0.75 * 2.0},
        {w0, wa, wb, "input_blocks.3.1.proj_in.weight", 2, 2, a.pu, a.pd, b.pu, b.pd, 1.0, -0.75},
        {c0, ca, cb, "text_model.encoder.layers.1.self_attn.v_proj.weight", 2, 2, a.tu, a.td, b.tu, b.td, 0.5,
         1.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        ts_tensor_t *t0 = weight(cases[i].w0, cases[i].name);
        float *w = host(t0, &n);
        float *ea = expect_plain(w, n, ts_size(t0, 0), cases[i].ra, cases[i].ua, cases[i].da, cases[i].ka);
        float *eb = expect_plain(ea, n, ts_size(t0, 0), cases[i].rb, cases[i].ub, cases[i].db, cases[i].kb);
        expect_bits(weight(cases[i].wa, cases[i].name), ea, n, "first LoRA");
        expect_bits(weight(cases[i].wb, cases[i].name), eb, n, "chained LoRAs");
        free(w);
        free(ea);
        free(eb);
    }
    /* The chain shares down to the checkpoint's own tensors. */
    assert_int_equal(shared_count(w0, wb), sdw_count(w0) - 2);
    assert_int_equal(pb->bytes, (size_t)(32 * 32 + 64 * 64) * 4);
    assert_non_null(strstr(pb->name, "tiny.safetensors + styles/a.safetensors + b.safetensors"));
    expect_base_is_file(w0, "model.diffusion_model.");
    expect_base_is_file(c0, "cond_stage_model.transformer.");

    for (int i = 0; i < 3; i++)
        sdn_unuse(base);
    sdn_unuse(pa);
    sdn_unuse(pb);
    sdn_unuse(clip_ck(ra.clip));
    sdn_unuse(clip_ck(rb.clip));
    lora_res_free(&ra);
    lora_res_free(&rb);
    ckpt_free(&c);
    small_free(&a);
    small_free(&b);
}

/* ------------------------------------------------------------------ caching and rebuilding */

/* Same request -> the same patched holder; another strength or a rewritten file -> a new one;
 * the cache keeps LORA_CACHE_ENTRIES patches, least recently used out first. */
static void test_cache(void **state)
{
    (void)state;
    small_t f = write_small("cache.safetensors", 4.0f);
    ckpt_t c = load_ckpt();
    lora_res_t r1 = lora_ok(c.model, c.clip, "cache.safetensors", 1.0, 1.0);
    lora_res_t r2 = lora_ok(c.model, c.clip, "cache.safetensors", 1.0, 1.0);
    assert_ptr_not_equal(r1.model, r2.model);                 /* new values... */
    assert_ptr_equal(model_ck(r1.model), model_ck(r2.model)); /* ...over the same patched weights */
    assert_ptr_equal(clip_ck(r1.clip), clip_ck(r2.clip));
    lora_res_t r3 = lora_ok(c.model, c.clip, "cache.safetensors", 0.5, 1.0);
    assert_ptr_not_equal(model_ck(r3.model), model_ck(r1.model));
    assert_ptr_equal(clip_ck(r3.clip), clip_ck(r1.clip));

    /* A rewritten file (a new inode through the atomic write) is another LoRA. */
    small_t g = write_small("cache.safetensors", 4.0f);
    lora_res_t r4 = lora_ok(c.model, c.clip, "cache.safetensors", 1.0, 1.0);
    assert_ptr_not_equal(model_ck(r4.model), model_ck(r1.model));
    assert_ptr_not_equal(clip_ck(r4.clip), clip_ck(r1.clip));
    sdn_ckpt_t *b = model_ck(c.model), *p4 = model_ck(r4.model);
    const sdw_t *bu = unet_w(b), *u4 = unet_w(p4);
    check_plain(bu, u4, "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 4, g.qu, g.qd, 1.0);
    sdn_unuse(b);
    sdn_unuse(p4);

    /* LRU: model-only patches at five strengths; the first is gone, the last is kept. */
    lora_res_t s[5];
    for (int i = 0; i < 5; i++)
        s[i] = lora_ok(c.model, NULL, "cache.safetensors", 1.0 + i, 0);
    lora_res_t again0 = lora_ok(c.model, NULL, "cache.safetensors", 1.0, 0);
    lora_res_t again4 = lora_ok(c.model, NULL, "cache.safetensors", 5.0, 0);
    assert_ptr_not_equal(model_ck(again0.model), model_ck(s[0].model));
    assert_ptr_equal(model_ck(again4.model), model_ck(s[4].model));
    /* Cleared: the next request merges again. */
    sdn_lora_cache_clear();
    lora_res_t again4b = lora_ok(c.model, NULL, "cache.safetensors", 5.0, 0);
    assert_ptr_not_equal(model_ck(again4b.model), model_ck(s[4].model));

    for (int i = 0; i < 5; i++)
        lora_res_free(&s[i]);
    lora_res_free(&again0);
    lora_res_free(&again4);
    lora_res_free(&again4b);
    lora_res_free(&r1);
    lora_res_free(&r2);
    lora_res_free(&r3);
    lora_res_free(&r4);
    ckpt_free(&c);
    small_free(&f);
    small_free(&g);
}

/* Host copy of one weight of a holder's component (pins and unpins). */
static float *holder_weight(sdn_ckpt_t *ck, bool unet, const char *name, size_t *n)
{
    const sdw_t *w = unet ? unet_w(ck) : clip_w(ck);
    float *x = host(weight(w, name), n);
    sdn_unuse(ck);
    return x;
}

static void expect_same_floats(const float *a, const float *b, size_t n, const char *what)
{
    if (memcmp(a, b, n * sizeof *a))
        fail_msg("%s: values changed", what);
}

/* The model cache unloads patched models like any other; on their next use they rebuild to
 * the same weights: from the checkpoint file when nothing is resident, sharing the base's
 * tensors when it is. */
static void test_rebuild_after_unload(void **state)
{
    (void)state;
    small_t a = write_small("r1.safetensors", 2.0f), b = write_small("r2.safetensors", 4.0f);
    ckpt_t c = load_ckpt();
    lora_res_t ra = lora_ok(c.model, c.clip, "r1.safetensors", 1.0, 0.5);
    lora_res_t rb = lora_ok(ra.model, ra.clip, "r2.safetensors", -2.0, 1.0);
    sdn_ckpt_t *base = model_ck(c.model), *pa = model_ck(ra.model), *pb = model_ck(rb.model),
               *cb = clip_ck(rb.clip);
    const char *q = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
               *p = "input_blocks.3.1.proj_in.weight";
    const char *v = "text_model.encoder.layers.1.self_attn.v_proj.weight";
    size_t nq, np, nv, n;
    float *wq = holder_weight(pb, true, q, &nq), *wp = holder_weight(pb, true, p, &np),
          *wv = holder_weight(cb, false, v, &nv);
    size_t patched_bytes = pb->bytes;

    /* Nothing resident: rebuilt from the file through both LoRAs. */
    node_models_release();
    assert_null(base->unet);
    assert_null(pa->unet);
    assert_null(pb->unet);
    assert_null(cb->clip);
    float *x = holder_weight(pb, true, q, &n);
    expect_same_floats(x, wq, nq, "to_q rebuilt from the file");
    free(x);
    x = holder_weight(pb, true, p, &n);
    expect_same_floats(x, wp, np, "proj_in rebuilt from the file");
    free(x);
    x = holder_weight(cb, false, v, &n);
    expect_same_floats(x, wv, nv, "v_proj rebuilt from the file");
    free(x);
    assert_null(pa->unet); /* ancestors stay as they were */
    assert_null(base->unet);
    assert_int_equal(pb->bytes, sdw_bytes(unet_w(pb))); /* it owns every tensor now */
    sdn_unuse(pb);

    /* The base resident (pinned here): rebuilt on top of it, sharing its tensors. */
    node_models_release();
    assert_null(pb->unet);
    const sdw_t *bu = unet_w(base);
    x = holder_weight(pb, true, q, &n);
    expect_same_floats(x, wq, nq, "to_q rebuilt from the base");
    free(x);
    assert_null(pa->unet);
    const sdw_t *ub = unet_w(pb);
    assert_int_equal(shared_count(bu, ub), sdw_count(bu) - 2);
    assert_int_equal(pb->bytes, patched_bytes);
    expect_base_is_file(bu, "model.diffusion_model.");
    sdn_unuse(pb);
    sdn_unuse(base);

    free(wq);
    free(wp);
    free(wv);
    lora_res_free(&ra);
    lora_res_free(&rb);
    ckpt_free(&c);
    small_free(&a);
    small_free(&b);
}

/* A patched model sharing its base's tensors keeps them alive when the base is unloaded: the
 * budget then counts them against the patched model. */
static void test_shared_bytes_counted(void **state)
{
    (void)state;
    small_t a = write_small("s1.safetensors", 2.0f);
    ckpt_t c = load_ckpt();
    lora_res_t ra = lora_ok(c.model, c.clip, "s1.safetensors", 1.0, 0.0);
    sdn_ckpt_t *base = model_ck(c.model), *pa = model_ck(ra.model);
    char err[256];
    assert_int_equal(sdn_use(pa, err, sizeof err), 0);
    assert_int_equal(sdn_use(base, err, sizeof err), 0); /* resident, so its size is known */
    size_t base_bytes = base->bytes;
    sdn_unuse(base);
    node_models_release(); /* the base goes; the pinned patched model stays */
    assert_null(base->unet);
    assert_non_null(pa->unet);
    size_t files = 0, bytes = 0;
    node_models_stats(&files, &bytes);
    assert_int_equal(files, 1);
    assert_int_equal(bytes, pa->bytes + base_bytes);
    sdn_unuse(pa);
    lora_res_free(&ra);
    ckpt_free(&c);
    small_free(&a);
}

/* ------------------------------------------------------------------ bad input */

static void expect_failure(const ckpt_t *c, const char *name, const char *want)
{
    lora_res_t r = lora_run(c->model, c->clip, name, 1.0, 1.0);
    assert_int_not_equal(r.rc, 0);
    if (!strstr(r.err, want))
        fail_msg("LoRA %s failed with '%s', expected '%s' in it", name, r.err, want);
    lora_res_free(&r);
}

static void test_bad_files(void **state)
{
    (void)state;
    char *path = nt_join(F.loras, "garbage.safetensors");
    tu_write_file(path, "this is not a safetensors file at all", 37);
    free(path);
    lw_t w = {0};
    ADD(&w, "foo", 3);
    ADD(&w, "bar.weight", 2, 2);
    ADD(&w, "lora_unet_conv_in.lora_up.weight", 32, 2, 1, 1); /* an up without its down */
    lw_write(&w, "nolora.safetensors");
    ADD(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", 32, 4);
    ADD(&w, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", 4, 16);
    lw_write(&w, "mismatch.safetensors");
    ADD(&w, "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", 64, 2);
    ADD(&w, "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", 3, 32); /* rank 3 vs 2 */
    lw_write(&w, "rank.safetensors");

    ckpt_t c = load_ckpt();
    expect_failure(&c, "garbage.safetensors", "safetensors");
    expect_failure(&c, "nolora.safetensors", "not a LoRA file");
    expect_failure(
        &c, "mismatch.safetensors",
        "LoRA module 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q' does not "
        "fit weight 'input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight' [32,32]: up [32,4], "
        "down [4,16]");
    expect_failure(&c, "rank.safetensors",
                   "does not fit weight 'text_model.encoder.layers.0.mlp.fc1.weight'");
    expect_failure(&c, "absent.safetensors", "LoRA file not found: models/loras/absent.safetensors");
    expect_failure(&c, "../checkpoints/tiny.safetensors", "invalid LoRA name");
    /* A failed CLIP side leaves nothing behind: the same file at CLIP strength 0 works. */
    lora_res_t ok = lora_ok(c.model, c.clip, "rank.safetensors", 1.0, 0.0);
    assert_ptr_equal(ok.model, c.model); /* no UNet module in it */
    assert_ptr_equal(ok.clip, c.clip);
    assert_non_null(strstr(ok.ui, "0 UNet module(s)"));
    lora_res_free(&ok);
    ckpt_free(&c);
}

/* ------------------------------------------------------------------ through the samplers */

static node_value_t *encode(node_value_t *clip, const char *text)
{
    run_t *r = run_new(&node_def_CLIPTextEncode);
    nt_set_in(r, "clip", node_value_ref(clip));
    nt_set_in(r, "text", node_value_string(text));
    if (nt_exec(r))
        fail_msg("CLIPTextEncode: %s", r->ctx.err);
    node_value_t *v = node_value_ref(r->out[0]);
    nt_run_free(r);
    return v;
}

static node_value_t *empty_latent(void)
{
    run_t *r = run_new(&node_def_EmptyLatentImage);
    nt_set_in(r, "width", node_value_i64(64));
    nt_set_in(r, "height", node_value_i64(64));
    nt_set_in(r, "batch_size", node_value_i64(1));
    assert_int_equal(nt_exec(r), 0);
    node_value_t *v = node_value_ref(r->out[0]);
    nt_run_free(r);
    return v;
}

static node_value_t *ksample(node_value_t *model, node_value_t *pos, node_value_t *neg, node_value_t *latent)
{
    run_t *r = run_new(&node_def_KSampler);
    nt_set_in(r, "model", node_value_ref(model));
    nt_set_in(r, "positive", node_value_ref(pos));
    nt_set_in(r, "negative", node_value_ref(neg));
    nt_set_in(r, "latent_image", node_value_ref(latent));
    nt_set_in(r, "seed", node_value_i64(42));
    nt_set_in(r, "steps", node_value_i64(3));
    nt_set_in(r, "cfg", node_value_float(6.0));
    nt_set_in(r, "sampler_name", node_value_string("euler"));
    nt_set_in(r, "scheduler", node_value_string("normal"));
    nt_set_in(r, "denoise", node_value_float(1.0));
    if (nt_exec(r))
        fail_msg("KSampler: %s", r->ctx.err);
    node_value_t *v = node_value_ref(r->out[0]);
    nt_run_free(r);
    return v;
}

static double max_diff(const ts_tensor_t *a, const ts_tensor_t *b)
{
    size_t na, nb;
    float *x = host(a, &na), *y = host(b, &nb);
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

/* Strength 0 samples exactly like no LoRA; strength 1 changes the latent and the text
 * conditioning. */
static void test_ksampler(void **state)
{
    (void)state;
    small_t f = write_small("ks.safetensors", 4.0f);
    ckpt_t c = load_ckpt();
    lora_res_t z = lora_ok(c.model, c.clip, "ks.safetensors", 0.0, 0.0);
    lora_res_t one = lora_ok(c.model, c.clip, "ks.safetensors", 1.0, 1.0);
    node_value_t *pos = encode(c.clip, "a red fox in the snow"), *neg = encode(c.clip, "blurry");
    node_value_t *pos1 = encode(one.clip, "a red fox in the snow"),
                 *pos0 = encode(z.clip, "a red fox in the snow");
    assert_true(max_diff(sdn_cond_at(pos1, 0), sdn_cond_at(pos, 0)) > 1e-4);
    assert_true(max_diff(sdn_cond_at(pos0, 0), sdn_cond_at(pos, 0)) == 0);
    node_value_t *lat = empty_latent();
    node_value_t *x = ksample(c.model, pos, neg, lat);
    node_value_t *x0 = ksample(z.model, pos, neg, lat);
    node_value_t *x1 = ksample(one.model, pos, neg, lat);
    assert_true(max_diff(sdn_latent_samples(x0), sdn_latent_samples(x)) == 0);
    double d = max_diff(sdn_latent_samples(x1), sdn_latent_samples(x));
    if (!(d > 1e-4))
        fail_msg("a LoRA at strength 1 changed the latent by only %g", d);
    node_value_unref(x);
    node_value_unref(x0);
    node_value_unref(x1);
    node_value_unref(lat);
    node_value_unref(pos);
    node_value_unref(neg);
    node_value_unref(pos1);
    node_value_unref(pos0);
    lora_res_free(&z);
    lora_res_free(&one);
    ckpt_free(&c);
    small_free(&f);
}

/* LoraLoaderModelOnly: the UNet part only; the text-encoder keys are counted as skipped. */
static void test_model_only_and_schema(void **state)
{
    (void)state;
    formats_t f = write_formats("formats2.safetensors");
    ckpt_t c = load_ckpt();
    lora_res_t r = lora_ok(c.model, NULL, "formats2.safetensors", 1.0, 0);
    assert_null(r.clip);
    assert_ptr_not_equal(model_ck(r.model), model_ck(c.model));
    assert_non_null(strstr(r.ui,
                           "formats2.safetensors: 10 UNet module(s) at strength 1; 5 text-encoder key(s) "
                           "ignored (no CLIP input)"));
    assert_non_null(strstr(r.ui, "4 key(s) not loaded"));
    sdn_ckpt_t *b = model_ck(c.model), *pm = model_ck(r.model);
    check_plain(unet_w(b), unet_w(pm), "input_blocks.3.1.proj_in.weight", 4, f.m3u, f.m3d, 1.0);
    sdn_unuse(b);
    sdn_unuse(pm);
    /* LoraLoader with a None CLIP (a checkpoint without a text encoder): passed through. */
    node_value_t *none = node_value_none();
    lora_res_t rn = lora_ok(c.model, none, "formats2.safetensors", 1.0, 1.0);
    assert_ptr_equal(rn.clip, none);
    assert_ptr_equal(model_ck(rn.model), pm); /* the same patch, from the cache */
    assert_non_null(strstr(rn.ui, "5 text-encoder key(s) ignored (no CLIP input)"));
    lora_res_free(&rn);
    node_value_unref(none);
    lora_res_free(&r);
    ckpt_free(&c);
    formats_free(&f);

    /* ComfyUI's inputs: lora_name lists models/loras recursively. */
    json_t *j = node_def_to_json(&node_def_LoraLoader, &F.env);
    char *s = json_dump(j, JSON_COMPACT);
    assert_non_null(s);
    assert_non_null(strstr(s, "\"category\":\"loaders\""));
    assert_non_null(strstr(s, "\"output\":[\"MODEL\",\"CLIP\"]"));
    assert_non_null(strstr(s, "\"styles/a.safetensors\""));
    assert_non_null(strstr(s, "\"strength_model\":[\"FLOAT\",{\"default\":1.0,\"min\":-100.0,\"max\":100.0,"
                              "\"step\":0.01"));
    assert_non_null(strstr(s, "\"strength_clip\":[\"FLOAT\",{\"default\":1.0,\"min\":-100.0,\"max\":100.0,"
                              "\"step\":0.01"));
    free(s);
    json_free(j);
    j = node_def_to_json(&node_def_LoraLoaderModelOnly, &F.env);
    s = json_dump(j, JSON_COMPACT);
    assert_non_null(s);
    assert_non_null(strstr(s, "\"output\":[\"MODEL\"]"));
    assert_null(strstr(s, "strength_clip"));
    free(s);
    json_free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diffusers_map_sd15),
        cmocka_unit_test(test_key_maps),
        cmocka_unit_test(test_merge_formats),
        cmocka_unit_test(test_zero_and_negative),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_rebuild_after_unload),
        cmocka_unit_test(test_shared_bytes_counted),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_ksampler),
        cmocka_unit_test(test_model_only_and_schema),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
