/* CheckpointLoaderSimple and VAELoader: model files from models/checkpoints/ and
 * models/vae/ (safetensors only: pickled .ckpt files can run code and are not read). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "path.h"
#include "sd/sd_nodes.h"

static const char *const model_exts[] = {".safetensors", ".sft", NULL};

static int list_in(const node_env_t *env, const char *sub, node_strlist_t *out)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", env && env->models_dir ? env->models_dir : "models", sub);
    return node_list_files(dir, model_exts, true, out);
}

static int list_checkpoints(const node_env_t *env, node_strlist_t *out)
{
    return list_in(env, "checkpoints", out);
}

static int list_vaes(const node_env_t *env, node_strlist_t *out)
{
    return list_in(env, "vae", out);
}

/* models/<sub>/<name>, confined to that folder. */
static int resolve(node_ctx_t *ctx, const char *sub, const char *name, char **path)
{
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/%s", ctx->env && ctx->env->models_dir ? ctx->env->models_dir : "models", sub);
    int rc = base_path_resolve(root, name, true, path);
    if (rc == BASE_E_NOENT)
        return node_fail(ctx, "model file not found: models/%s/%s", sub, name);
    if (rc)
        return node_fail(ctx, "invalid model name '%s': %s", name, base_strerror(rc));
    return 0;
}

static int ckpt_execute(node_ctx_t *ctx)
{
    const char *name = node_in_str(ctx, "ckpt_name");
    char *path = NULL;
    int rc = resolve(ctx, "checkpoints", name, &path);
    if (rc)
        return rc;
    sdn_ckpt_t *ck = NULL;
    unsigned all = SDN_UNET | SDN_CLIP | SDN_VAE;
    rc = sdn_ckpt_get(path, name, all, SDN_UNET, &ck, ctx->err, sizeof ctx->err);
    free(path);
    if (rc)
        return BASE_E_NODE_FAILED;
    node_value_t *m = sdn_model_value(sdn_ckpt_ref(ck));
    node_value_t *c = ck->have & SDN_CLIP ? sdn_clip_value(sdn_ckpt_ref(ck), -1) : node_value_none();
    node_value_t *v = ck->have & SDN_VAE ? sdn_vae_value(sdn_ckpt_ref(ck)) : node_value_none();
    sdn_ckpt_unref(ck);
    if (!m || !c || !v) {
        node_value_unref(m);
        node_value_unref(c);
        node_value_unref(v);
        return node_fail(ctx, "out of memory");
    }
    node_set_out(ctx, 0, m);
    node_set_out(ctx, 1, c);
    node_set_out(ctx, 2, v);
    return 0;
}

static int vae_execute(node_ctx_t *ctx)
{
    const char *name = node_in_str(ctx, "vae_name");
    char *path = NULL;
    int rc = resolve(ctx, "vae", name, &path);
    if (rc)
        return rc;
    sdn_ckpt_t *ck = NULL;
    rc = sdn_ckpt_get(path, name, SDN_VAE, SDN_VAE, &ck, ctx->err, sizeof ctx->err);
    free(path);
    if (rc)
        return BASE_E_NODE_FAILED;
    node_value_t *v = sdn_vae_value(ck);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

static const node_input_t ckpt_in[] = {
    {.name = "ckpt_name", .type = "COMBO", .section = NODE_REQUIRED, .options_fn = list_checkpoints,
     .tooltip = "The name of the checkpoint (model) to load."},
};
static const node_output_t ckpt_out[] = {
    {.type = "MODEL", .tooltip = "The model used for denoising latents."},
    {.type = "CLIP", .tooltip = "The CLIP model used for encoding text prompts."},
    {.type = "VAE", .tooltip = "The VAE model used for encoding and decoding images to and from latent space."},
};

static const node_input_t vae_in[] = {
    {.name = "vae_name", .type = "COMBO", .section = NODE_REQUIRED, .options_fn = list_vaes},
};
static const node_output_t vae_out[] = {{.type = "VAE"}};

const node_def_t node_def_CheckpointLoaderSimple = {
    .name = "CheckpointLoaderSimple", .display_name = "Load Checkpoint", .category = "loaders",
    .description = "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
    .inputs = ckpt_in, .n_inputs = 1, .outputs = ckpt_out, .n_outputs = 3, .flags = NODE_HEAVY,
    .execute = ckpt_execute,
};

const node_def_t node_def_VAELoader = {
    .name = "VAELoader", .display_name = "Load VAE", .category = "loaders",
    .inputs = vae_in, .n_inputs = 1, .outputs = vae_out, .n_outputs = 1, .flags = NODE_HEAVY,
    .execute = vae_execute,
};
