/* LoraLoader and LoraLoaderModelOnly: a LoRA from models/loras/ (safetensors) merged into the
 * MODEL and CLIP values, as new holders that share every unpatched tensor with their input
 * (nodes/sd/lora.c) and are cached by (input, file, strength) (nodes/sd/lora_cache.c). A
 * zero strength passes that input through untouched, as ComfyUI does. Keys of the file that
 * match nothing in the model are listed in the node's UI output and the log. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "path.h"
#include "sd/lora.h"

static const char *const lora_exts[] = {".safetensors", ".sft", NULL};

#define SHOW_UNKNOWN 10 /* keys named in the UI text; the rest are counted */

static void loras_dir(const node_env_t *env, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/loras", env && env->models_dir ? env->models_dir : "models");
}

static int list_loras(const node_env_t *env, node_strlist_t *out)
{
    char dir[PATH_MAX];
    loras_dir(env, dir, sizeof dir);
    return node_list_files(dir, lora_exts, true, out);
}

/* The file's identity: a LoRA rewritten on disk re-runs the node. */
static int is_changed(const node_env_t *env, const node_args_t *args, base_buf_t *out)
{
    const char *name = json_str(node_args_get(args, "lora_name"));
    char dir[PATH_MAX], *path = NULL;
    loras_dir(env, dir, sizeof dir);
    if (!name)
        return BASE_E_INVAL;
    int rc = base_path_resolve(dir, name, true, &path);
    lora_fid_t id;
    if (!rc)
        rc = lora_fid(path, &id);
    free(path);
    if (rc)
        return rc;
    return base_buf_printf(out, "%ju:%ju:%jd:%jd.%09ld", (uintmax_t)id.dev, (uintmax_t)id.ino,
                           (intmax_t)id.size, (intmax_t)id.mtime.tv_sec, id.mtime.tv_nsec);
}

typedef struct {
    node_ctx_t *ctx;
    sdn_ckpt_t *base;
    const lora_t *l;
    lora_side_t side;
    double strength;
    const char *path, *name;
} make_t;

static int make(void *p, sdn_ckpt_t **out)
{
    make_t *m = p;
    return lora_holder_new(m->base, m->l, m->side, m->strength, m->path, m->name, out, m->ctx->err,
                           sizeof m->ctx->err);
}

/* The patched holder for one side, or NULL (pass the input through) when nothing applies. */
static int patch_side(make_t *m, const lora_fid_t *id, sdn_ckpt_t **out)
{
    *out = NULL;
    if (m->strength == 0 || !m->l->matched[m->side])
        return 0;
    bool hit = false;
    int rc = lora_cache_get(m->side, m->base, id, m->strength, make, m, out, &hit);
    if (!rc)
        BASE_LOG(DEBUG, "LoRA %s on %s: %s", m->name, m->side == LORA_UNET ? "UNet" : "CLIP",
                 hit ? "cached" : "merged");
    return rc;
}

/* {"text": [summary, unknown keys?]} and the matching log lines. */
static int report(node_ctx_t *ctx, const lora_t *l, const char *name, bool with_clip, double sm, double sc)
{
    base_buf_t b = BASE_BUF_INIT, u = BASE_BUF_INIT;
    int rc = base_buf_printf(&b, "%s: %zu UNet module(s) at strength %g", name, l->matched[LORA_UNET], sm);
    if (!rc && with_clip)
        rc = base_buf_printf(&b, ", %zu text-encoder module(s) at strength %g", l->matched[LORA_CLIP], sc);
    if (!rc && l->skipped_te)
        rc = base_buf_printf(&b, "; %zu text-encoder key(s) ignored (no CLIP input)", l->skipped_te);
    if (!rc && l->n_unknown) {
        rc = base_buf_printf(&u, "%zu key(s) not loaded (nothing in the model matches them):", l->n_unknown);
        for (size_t i = 0; !rc && i < l->n_unknown && i < SHOW_UNKNOWN; i++)
            rc = base_buf_printf(&u, "%s %s", i ? "," : "", l->unknown[i]);
        if (!rc && l->n_unknown > SHOW_UNKNOWN)
            rc = base_buf_printf(&u, " (and %zu more)", l->n_unknown - SHOW_UNKNOWN);
    }
    json_t *ui = rc ? NULL : json_new_object(), *text = ui ? json_new_array() : NULL;
    if (!text || json_object_set(ui, "text", text) || json_array_push(text, json_new_string(b.data)) ||
        (u.len && json_array_push(text, json_new_string(u.data)))) {
        json_free(ui);
        base_buf_free(&b);
        base_buf_free(&u);
        return node_fail(ctx, "out of memory");
    }
    BASE_LOG(INFO, "LoRA %s", b.data);
    if (u.len)
        BASE_LOG(WARN, "LoRA %s: %s", name, u.data);
    json_free(ctx->ui);
    ctx->ui = ui;
    base_buf_free(&b);
    base_buf_free(&u);
    return 0;
}

/* Keys bound against the inputs' key maps; both inputs are pinned by the caller. */
static int bind(node_ctx_t *ctx, lora_t *l, const sdn_ckpt_t *model, const sdn_ckpt_t *clip)
{
    lora_keymap_t *mu = NULL, *mc = NULL;
    int rc = lora_keymap_unet(&mu, model->unet);
    if (!rc && clip)
        rc = lora_keymap_clip(&mc, clip->clip);
    if (!rc)
        rc = lora_bind(l, mu, mc);
    lora_keymap_free(mu);
    lora_keymap_free(mc);
    return rc ? node_fail(ctx, "out of memory matching the LoRA's keys") : 0;
}

static int run(node_ctx_t *ctx, bool with_clip)
{
    const sdn_model_t *model = sdn_in_model(ctx, "model");
    const sdn_clip_t *clip = with_clip ? sdn_in_clip(ctx, "clip") : NULL;
    node_value_t *mv = node_in(ctx, "model"), *cv = with_clip ? node_in(ctx, "clip") : NULL;
    const char *name = node_in_str(ctx, "lora_name");
    double sm = node_in_f64(ctx, "strength_model"), sc = with_clip ? node_in_f64(ctx, "strength_clip") : 0.0;
    if (!model || !model->ck || !(model->ck->have & SDN_UNET))
        return node_fail(ctx, "model input is invalid");
    /* A checkpoint without a text encoder gives a None CLIP: passed through, as ComfyUI does. */
    bool clip_none = cv && cv->kind == NODE_V_NONE;
    if (with_clip && !clip_none && (!clip || !clip->ck || !(clip->ck->have & SDN_CLIP)))
        return node_fail(ctx, "clip input is invalid");
    if (!isfinite(sm) || !isfinite(sc))
        return node_fail(ctx, "LoRA strengths must be finite numbers");
    if (sm == 0 && sc == 0) { /* nothing to do: not even the file is read */
        node_set_out(ctx, 0, node_value_ref(mv));
        if (with_clip)
            node_set_out(ctx, 1, node_value_ref(cv));
        return 0;
    }

    char dir[PATH_MAX], *path = NULL;
    loras_dir(ctx->env, dir, sizeof dir);
    int rc = base_path_resolve(dir, name, true, &path);
    if (rc == BASE_E_NOENT)
        return node_fail(ctx, "LoRA file not found: models/loras/%s", name);
    if (rc)
        return node_fail(ctx, "invalid LoRA name '%s': %s", name, base_strerror(rc));
    lora_fid_t id;
    lora_t *l = NULL;
    if ((rc = lora_fid(path, &id))) {
        free(path);
        return node_fail(ctx, "cannot read models/loras/%s: %s", name, base_strerror(rc));
    }
    if ((rc = lora_open(&l, path, ctx->err, sizeof ctx->err))) {
        free(path);
        return BASE_E_NODE_FAILED;
    }
    sdn_ckpt_t *mk = model->ck, *ck = clip ? clip->ck : NULL, *pm = NULL, *pc = NULL;
    bool pinned_m = false, pinned_c = false;
    if (!(rc = sdn_use(mk, ctx->err, sizeof ctx->err) ? BASE_E_NODE_FAILED : 0))
        pinned_m = true;
    if (!rc && ck && !(rc = sdn_use(ck, ctx->err, sizeof ctx->err) ? BASE_E_NODE_FAILED : 0))
        pinned_c = true;
    if (!rc)
        rc = bind(ctx, l, mk, ck);
    make_t m = {ctx, mk, l, LORA_UNET, sm, path, name};
    if (!rc)
        rc = patch_side(&m, &id, &pm) ? BASE_E_NODE_FAILED : 0;
    if (!rc && ck) {
        m = (make_t){ctx, ck, l, LORA_CLIP, sc, path, name};
        rc = patch_side(&m, &id, &pc) ? BASE_E_NODE_FAILED : 0;
    }
    if (pinned_m)
        sdn_unuse(mk);
    if (pinned_c)
        sdn_unuse(ck);
    if (!rc)
        rc = report(ctx, l, name, ck != NULL, sm, sc);
    lora_free(l);
    free(path);
    if (rc) {
        sdn_ckpt_unref(pm);
        sdn_ckpt_unref(pc);
        return rc;
    }
    node_value_t *om = pm ? sdn_model_value(pm) : node_value_ref(mv);
    node_value_t *oc = !with_clip ? NULL : pc ? sdn_clip_value(pc, clip->layer_idx) : node_value_ref(cv);
    if (!om || (with_clip && !oc)) {
        node_value_unref(om);
        node_value_unref(oc);
        return node_fail(ctx, "out of memory");
    }
    node_set_out(ctx, 0, om);
    if (with_clip)
        node_set_out(ctx, 1, oc);
    return 0;
}

static int lora_execute(node_ctx_t *ctx)
{
    return run(ctx, true);
}

static int model_only_execute(node_ctx_t *ctx)
{
    return run(ctx, false);
}

#define STRENGTH_IN(nm, tip)                                                                              \
    {.name = nm, .type = "FLOAT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX, \
     .fdef = 1.0, .fmin = -100.0, .fmax = 100.0, .fstep = 0.01, .tooltip = tip}
#define MODEL_IN                                                      \
    {.name = "model", .type = "MODEL", .section = NODE_REQUIRED,      \
     .tooltip = "The diffusion model the LoRA will be applied to."}
#define LORA_NAME_IN                                                                            \
    {.name = "lora_name", .type = "COMBO", .section = NODE_REQUIRED, .options_fn = list_loras, \
     .tooltip = "The name of the LoRA."}
#define LORA_DESCRIPTION                                                                                 \
    "LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are denoised " \
    "such as applying styles. Multiple LoRA nodes can be linked together."

static const node_input_t lora_in[] = {
    MODEL_IN,
    {.name = "clip", .type = "CLIP", .section = NODE_REQUIRED,
     .tooltip = "The CLIP model the LoRA will be applied to."},
    LORA_NAME_IN,
    STRENGTH_IN("strength_model", "How strongly to modify the diffusion model. This value can be negative."),
    STRENGTH_IN("strength_clip", "How strongly to modify the CLIP model. This value can be negative."),
};
static const node_output_t lora_out[] = {
    {.type = "MODEL", .tooltip = "The modified diffusion model."},
    {.type = "CLIP", .tooltip = "The modified CLIP model."},
};

static const node_input_t model_only_in[] = {
    MODEL_IN,
    LORA_NAME_IN,
    STRENGTH_IN("strength_model", "How strongly to modify the diffusion model. This value can be negative."),
};
static const node_output_t model_only_out[] = {{.type = "MODEL", .tooltip = "The modified diffusion model."}};

const node_def_t node_def_LoraLoader = {
    .name = "LoraLoader", .display_name = "Load LoRA", .category = "loaders",
    .description = LORA_DESCRIPTION,
    .inputs = lora_in, .n_inputs = 5, .outputs = lora_out, .n_outputs = 2, .flags = NODE_HEAVY,
    .execute = lora_execute, .is_changed = is_changed,
};

const node_def_t node_def_LoraLoaderModelOnly = {
    .name = "LoraLoaderModelOnly", .display_name = "LoraLoaderModelOnly", .category = "loaders",
    .description = LORA_DESCRIPTION,
    .inputs = model_only_in, .n_inputs = 3, .outputs = model_only_out, .n_outputs = 1,
    .flags = NODE_HEAVY,
    .execute = model_only_execute, .is_changed = is_changed,
};
