/* KSampler and KSamplerAdvanced with ComfyUI's inputs and semantics; the work is in
 * ksample.c. */
#include <string.h>

#include "sd/sd_nodes.h"

static int ksampler_execute(node_ctx_t *ctx)
{
    sdn_sample_req_t q = {
        .model = sdn_in_model(ctx, "model"),
        .positive = node_in(ctx, "positive"),
        .negative = node_in(ctx, "negative"),
        .latent = node_in(ctx, "latent_image"),
        .seed = node_in_u64(ctx, "seed"),
        .steps = (int)node_in_i64(ctx, "steps"),
        .cfg = node_in_f64(ctx, "cfg"),
        .sampler = node_in_str(ctx, "sampler_name"),
        .scheduler = node_in_str(ctx, "scheduler"),
        .denoise = node_in_f64(ctx, "denoise"),
        .add_noise = true,
        .start_step = 0,
        .last_step = 10000,
        .force_full_denoise = false,
    };
    return sdn_ksample(ctx, &q);
}

static int advanced_execute(node_ctx_t *ctx)
{
    sdn_sample_req_t q = {
        .model = sdn_in_model(ctx, "model"),
        .positive = node_in(ctx, "positive"),
        .negative = node_in(ctx, "negative"),
        .latent = node_in(ctx, "latent_image"),
        .seed = node_in_u64(ctx, "noise_seed"),
        .steps = (int)node_in_i64(ctx, "steps"),
        .cfg = node_in_f64(ctx, "cfg"),
        .sampler = node_in_str(ctx, "sampler_name"),
        .scheduler = node_in_str(ctx, "scheduler"),
        .denoise = 1.0,
        .add_noise = strcmp(node_in_str(ctx, "add_noise"), "disable") != 0,
        .start_step = (int)node_in_i64(ctx, "start_at_step"),
        .last_step = (int)node_in_i64(ctx, "end_at_step"),
        .force_full_denoise = strcmp(node_in_str(ctx, "return_with_leftover_noise"), "enable") != 0,
    };
    return sdn_ksample(ctx, &q);
}

#define MODEL_IN {.name = "model", .type = "MODEL", .section = NODE_REQUIRED, \
                  .tooltip = "The model used for denoising the input latent."}
#define SEED_IN(nm)                                                                                       \
    {.name = nm, .type = "INT", .section = NODE_REQUIRED,                                                 \
     .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX | NODE_IN_CONTROL_AFTER_GENERATE, .idef = BASE_INT(0),     \
     .imin = BASE_INT(0), .imax = BASE_INT_U64MAX, .tooltip = "The random seed used for creating the noise."}
#define STEPS_IN {.name = "steps", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX, \
                  .idef = BASE_INT(20), .imin = BASE_INT(1), .imax = BASE_INT(10000), \
                  .tooltip = "The number of steps used in the denoising process."}
#define CFG_IN {.name = "cfg", .type = "FLOAT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX, \
                .fdef = 8.0, .fmin = 0.0, .fmax = 100.0, .fstep = 0.1, .fround = 0.01, \
                .tooltip = "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. " \
                           "Higher values result in images more closely matching the prompt however too high " \
                           "values will negatively impact quality."}
#define SAMPLER_IN {.name = "sampler_name", .type = "COMBO", .section = NODE_REQUIRED, .options = sd_sampler_names, \
                    .tooltip = "The algorithm used when sampling, this can affect the quality, speed, and style of " \
                               "the generated output."}
#define SCHEDULER_IN {.name = "scheduler", .type = "COMBO", .section = NODE_REQUIRED, \
                      .options = sd_scheduler_names, \
                      .tooltip = "The scheduler controls how noise is gradually removed to form the image."}
#define POS_IN {.name = "positive", .type = "CONDITIONING", .section = NODE_REQUIRED, \
                .tooltip = "The conditioning describing the attributes you want to include in the image."}
#define NEG_IN {.name = "negative", .type = "CONDITIONING", .section = NODE_REQUIRED, \
                .tooltip = "The conditioning describing the attributes you want to exclude from the image."}
#define LATENT_IN {.name = "latent_image", .type = "LATENT", .section = NODE_REQUIRED, \
                   .tooltip = "The latent image to denoise."}

static const char *const enable_disable[] = {"enable", "disable", NULL};
static const char *const disable_enable[] = {"disable", "enable", NULL};

static const node_input_t ksampler_in[] = {
    MODEL_IN, SEED_IN("seed"), STEPS_IN, CFG_IN, SAMPLER_IN, SCHEDULER_IN, POS_IN, NEG_IN, LATENT_IN,
    {.name = "denoise", .type = "FLOAT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .fdef = 1.0, .fmin = 0.0, .fmax = 1.0, .fstep = 0.01,
     .tooltip = "The amount of denoising applied, lower values will maintain the structure of the initial image "
                "allowing for image to image sampling."},
};

#define STEP_IN(nm, def)                                                                                  \
    {.name = nm, .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,      \
     .idef = BASE_INT(def), .imin = BASE_INT(0), .imax = BASE_INT(10000)}

static const node_input_t advanced_in[] = {
    MODEL_IN,
    {.name = "add_noise", .type = "COMBO", .section = NODE_REQUIRED, .options = enable_disable},
    SEED_IN("noise_seed"), STEPS_IN, CFG_IN, SAMPLER_IN, SCHEDULER_IN, POS_IN, NEG_IN, LATENT_IN,
    STEP_IN("start_at_step", 0), STEP_IN("end_at_step", 10000),
    {.name = "return_with_leftover_noise", .type = "COMBO", .section = NODE_REQUIRED, .options = disable_enable},
};

static const node_output_t latent_out[] = {{.type = "LATENT", .tooltip = "The denoised latent."}};

const node_def_t node_def_KSampler = {
    .name = "KSampler", .category = "sampling",
    .description = "Uses the provided model, positive and negative conditioning to denoise the latent image.",
    .inputs = ksampler_in, .n_inputs = sizeof ksampler_in / sizeof ksampler_in[0], .outputs = latent_out,
    .n_outputs = 1, .flags = NODE_HEAVY, .execute = ksampler_execute,
};

const node_def_t node_def_KSamplerAdvanced = {
    .name = "KSamplerAdvanced", .display_name = "KSampler (Advanced)", .category = "sampling",
    .inputs = advanced_in, .n_inputs = sizeof advanced_in / sizeof advanced_in[0], .outputs = latent_out,
    .n_outputs = 1, .flags = NODE_HEAVY, .execute = advanced_execute,
};
