/* Text conditioning: CLIPTextEncode, CLIPSetLastLayer, ConditioningCombine. */
#include <string.h>

#include "sd/sd_nodes.h"

/* Prompts are bounded so a hostile one fails with a message instead of exhausting memory:
 * the tokenizer needs about 12 bytes per input byte and the encoder 77 tokens per row. */
#define MAX_PROMPT_BYTES (1u << 20)
#define MAX_PROMPT_ROWS 64 /* 4,800 tokens */

static int encode_execute(node_ctx_t *ctx)
{
    const sdn_clip_t *clip = sdn_in_clip(ctx, "clip");
    if (!clip || !clip->ck || !(clip->ck->have & SDN_CLIP))
        return node_fail(ctx, "ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint "
                              "loader node your checkpoint does not contain a valid clip or text encoder model.");
    const clipt_t *tok = NULL;
    int rc = sdn_tokenizer_for(ctx->env, clip->ck, &tok, ctx->err, sizeof ctx->err);
    if (rc)
        return BASE_E_NODE_FAILED;
    const char *text = node_in_str(ctx, "text");
    if (strlen(text) > MAX_PROMPT_BYTES)
        return node_fail(ctx, "CLIPTextEncode: the prompt is longer than %u bytes", MAX_PROMPT_BYTES);
    clipt_rows_t rows = {0};
    if ((rc = clipt_tokenize_weighted(tok, text, &rows)))
        return node_fail(ctx, "CLIPTextEncode: cannot tokenize the prompt: %s", base_strerror(rc));
    if (rows.rows > MAX_PROMPT_ROWS) {
        size_t n = rows.rows;
        clipt_rows_free(&rows);
        return node_fail(ctx, "CLIPTextEncode: the prompt needs %zu rows of 75 tokens; at most %d are encoded", n,
                         MAX_PROMPT_ROWS);
    }
    ts_tensor_t *cond = NULL, *pooled = NULL;
    if (sdn_use(clip->ck, ctx->err, sizeof ctx->err)) {
        clipt_rows_free(&rows);
        return BASE_E_NODE_FAILED;
    }
    rc = sd_clip_encode(clip->ck->clip, &rows, clip->layer_idx, &cond, &pooled, ctx->err, sizeof ctx->err);
    sdn_unuse(clip->ck);
    clipt_rows_free(&rows);
    if (rc)
        return BASE_E_NODE_FAILED;
    node_value_t *v = sdn_cond_value(cond, pooled);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

static int last_layer_execute(node_ctx_t *ctx)
{
    const sdn_clip_t *clip = sdn_in_clip(ctx, "clip");
    if (!clip || !clip->ck || !(clip->ck->have & SDN_CLIP))
        return node_fail(ctx, "CLIPSetLastLayer: clip input is invalid");
    int64_t layer = node_in_i64(ctx, "stop_at_clip_layer");
    if (sdn_use(clip->ck, ctx->err, sizeof ctx->err))
        return BASE_E_NODE_FAILED;
    int layers = sd_clip_config(clip->ck->clip)->layers;
    sdn_unuse(clip->ck);
    if (layer < -layers || layer > -1)
        return node_fail(ctx, "CLIPSetLastLayer: stop_at_clip_layer %lld is outside -%d..-1 for this model",
                         (long long)layer, layers);
    node_value_t *v = sdn_clip_value(sdn_ckpt_ref(clip->ck), (int)layer);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

static int combine_execute(node_ctx_t *ctx)
{
    const node_value_t *a = node_in(ctx, "conditioning_1"), *b = node_in(ctx, "conditioning_2");
    size_t na = sdn_cond_count(a), nb = sdn_cond_count(b);
    node_value_t *out = node_value_list(na + nb);
    if (!out)
        return node_fail(ctx, "out of memory");
    for (size_t i = 0; i < na; i++)
        node_value_list_set(out, i, node_value_ref(a->u.list.items[i]));
    for (size_t i = 0; i < nb; i++)
        node_value_list_set(out, na + i, node_value_ref(b->u.list.items[i]));
    node_set_out(ctx, 0, out);
    return 0;
}

static const node_input_t encode_in[] = {
    {.name = "text", .type = "STRING", .section = NODE_REQUIRED,
     .flags = NODE_IN_MULTILINE | NODE_IN_DYNAMIC_PROMPTS, .tooltip = "The text to be encoded."},
    {.name = "clip", .type = "CLIP", .section = NODE_REQUIRED,
     .tooltip = "The CLIP model used for encoding the text."},
};
static const node_output_t cond_out[] = {
    {.type = "CONDITIONING", .tooltip = "A conditioning containing the embedded text used to guide the diffusion model."},
};

static const node_input_t last_layer_in[] = {
    {.name = "clip", .type = "CLIP", .section = NODE_REQUIRED},
    {.name = "stop_at_clip_layer", .type = "INT", .section = NODE_REQUIRED,
     .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX, .idef = BASE_INT(-1), .imin = BASE_INT(-24),
     .imax = BASE_INT(-1), .istep = 1},
};
static const node_output_t clip_out[] = {{.type = "CLIP"}};

static const node_input_t combine_in[] = {
    {.name = "conditioning_1", .type = "CONDITIONING", .section = NODE_REQUIRED},
    {.name = "conditioning_2", .type = "CONDITIONING", .section = NODE_REQUIRED},
};
static const node_output_t combine_out[] = {{.type = "CONDITIONING"}};

const node_def_t node_def_CLIPTextEncode = {
    .name = "CLIPTextEncode", .display_name = "CLIP Text Encode (Prompt)", .category = "conditioning",
    .description = "Encodes a text prompt using a CLIP model into an embedding that can be used to guide "
                   "the diffusion model towards generating specific images.",
    .inputs = encode_in, .n_inputs = 2, .outputs = cond_out, .n_outputs = 1, .execute = encode_execute,
};

const node_def_t node_def_CLIPSetLastLayer = {
    .name = "CLIPSetLastLayer", .display_name = "CLIP Set Last Layer", .category = "conditioning",
    .inputs = last_layer_in, .n_inputs = 2, .outputs = clip_out, .n_outputs = 1, .execute = last_layer_execute,
};

const node_def_t node_def_ConditioningCombine = {
    .name = "ConditioningCombine", .display_name = "Conditioning (Combine)", .category = "conditioning",
    .inputs = combine_in, .n_inputs = 2, .outputs = combine_out, .n_outputs = 1, .execute = combine_execute,
};
