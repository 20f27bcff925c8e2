/* LATENT nodes: EmptyLatentImage, LatentUpscale, LatentUpscaleBy, SetLatentNoiseMask.
 * Sizes follow ComfyUI: pixels / 8 per latent cell, Python rounding where it rounds. */
#include <math.h>
#include <string.h>

#include "sd/sd_nodes.h"

#define MAX_RESOLUTION 16384
/* An upper bound on latent elements (1 GiB of float32, e.g. 16 latents of 16384x16384
 * pixels) so a hostile size fails cleanly instead of exhausting memory. */
#define MAX_LATENT_ELEMS (1ll << 28)

static const ts_device_t CPU = {TS_CPU, 0};

static int empty_execute(node_ctx_t *ctx)
{
    int64_t w = node_in_i64(ctx, "width"), h = node_in_i64(ctx, "height"), b = node_in_i64(ctx, "batch_size");
    if (w < 16 || h < 16 || w > MAX_RESOLUTION || h > MAX_RESOLUTION || b < 1 || b > 4096)
        return node_fail(ctx, "EmptyLatentImage: width and height must be 16..%d and batch_size 1..4096",
                         MAX_RESOLUTION);
    int64_t shape[4] = {b, 4, h / 8, w / 8};
    if (shape[0] * shape[1] * shape[2] * shape[3] > MAX_LATENT_ELEMS)
        return node_fail(ctx, "EmptyLatentImage: %lld x %lld x %lld is too large", (long long)b, (long long)w,
                         (long long)h);
    ts_tensor_t *z = NULL;
    if (ts_zeros(&z, shape, 4, TS_F32, CPU))
        return node_fail_ts(ctx, "EmptyLatentImage");
    node_value_t *v = sdn_latent_value(NULL, z);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

static int method_of(const char *name, ts_interp_t *m)
{
    static const struct {
        const char *name;
        ts_interp_t m;
    } map[] = {{"nearest-exact", TS_INTERP_NEAREST_EXACT},
               {"bilinear", TS_INTERP_BILINEAR},
               {"area", TS_INTERP_AREA},
               {"bicubic", TS_INTERP_BICUBIC}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (name && !strcmp(name, map[i].name)) {
            *m = map[i].m;
            return 0;
        }
    return BASE_E_INVAL;
}

/* ComfyUI's common_upscale: optional centre crop to the new aspect, then resize to w x h
 * (latent cells). */
static int upscale(node_ctx_t *ctx, const ts_tensor_t *s, int64_t w, int64_t h, const char *method, bool center,
                   ts_tensor_t **out)
{
    ts_interp_t m;
    if (method_of(method, &m))
        return node_fail(ctx, "unknown upscale_method '%s'", method ? method : "");
    if (w < 1 || h < 1 || w > MAX_RESOLUTION / 8 || h > MAX_RESOLUTION / 8)
        return node_fail(ctx, "latent size %lld x %lld is out of range", (long long)w, (long long)h);
    int64_t ow = ts_size(s, -1), oh = ts_size(s, -2);
    ts_tensor_t *src = ts_ref((ts_tensor_t *)s), *tmp = NULL;
    if (center && ow > 0 && oh > 0) {
        double old_aspect = (double)ow / (double)oh, new_aspect = (double)w / (double)h;
        int64_t x = 0, y = 0;
        if (old_aspect > new_aspect)
            x = (int64_t)nearbyint(((double)ow - (double)ow * (new_aspect / old_aspect)) / 2);
        else if (old_aspect < new_aspect)
            y = (int64_t)nearbyint(((double)oh - (double)oh * (old_aspect / new_aspect)) / 2);
        int rc = 0;
        if (y && !(rc = ts_slice(&tmp, src, -2, y, oh - y)))
            sdn_swap(&src, tmp);
        if (!rc && x && !(rc = ts_slice(&tmp, src, -1, x, ow - x)))
            sdn_swap(&src, tmp);
        if (rc) {
            ts_free(src);
            return node_fail_ts(ctx, "upscale crop");
        }
    }
    int rc = ts_interpolate(out, src, h, w, m);
    ts_free(src);
    return rc ? node_fail_ts(ctx, "upscale") : 0;
}

static int set_latent(node_ctx_t *ctx, const node_value_t *like, ts_tensor_t *samples)
{
    node_value_t *v = sdn_latent_value(like, samples);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

static int upscale_execute(node_ctx_t *ctx)
{
    const node_value_t *lat = node_in(ctx, "samples");
    ts_tensor_t *s = sdn_latent_samples(lat);
    if (!s || ts_ndim(s) != 4)
        return node_fail(ctx, "LatentUpscale: samples is not a LATENT");
    int64_t w = node_in_i64(ctx, "width"), h = node_in_i64(ctx, "height");
    if (w == 0 && h == 0) {
        node_set_out(ctx, 0, node_value_ref((node_value_t *)lat));
        return 0;
    }
    int64_t lw = ts_size(s, -1), lh = ts_size(s, -2);
    if (w == 0) {
        h = h > 64 ? h : 64;
        w = (int64_t)nearbyint((double)lw * (double)h / (double)lh);
        w = w > 64 ? w : 64;
    } else if (h == 0) {
        w = w > 64 ? w : 64;
        h = (int64_t)nearbyint((double)lh * (double)w / (double)lw);
        h = h > 64 ? h : 64;
    } else {
        w = w > 64 ? w : 64;
        h = h > 64 ? h : 64;
    }
    ts_tensor_t *out = NULL;
    int rc = upscale(ctx, s, w / 8, h / 8, node_in_str(ctx, "upscale_method"),
                     !strcmp(node_in_str(ctx, "crop"), "center"), &out);
    return rc ? rc : set_latent(ctx, lat, out);
}

static int upscale_by_execute(node_ctx_t *ctx)
{
    const node_value_t *lat = node_in(ctx, "samples");
    ts_tensor_t *s = sdn_latent_samples(lat);
    if (!s || ts_ndim(s) != 4)
        return node_fail(ctx, "LatentUpscaleBy: samples is not a LATENT");
    double k = node_in_f64(ctx, "scale_by");
    int64_t w = (int64_t)nearbyint((double)ts_size(s, -1) * k), h = (int64_t)nearbyint((double)ts_size(s, -2) * k);
    ts_tensor_t *out = NULL;
    int rc = upscale(ctx, s, w, h, node_in_str(ctx, "upscale_method"), false, &out);
    return rc ? rc : set_latent(ctx, lat, out);
}

static int mask_execute(node_ctx_t *ctx)
{
    const node_value_t *lat = node_in(ctx, "samples");
    ts_tensor_t *s = sdn_latent_samples(lat), *mask = node_in_tensor(ctx, "mask"), *m = NULL;
    if (!s || !mask || ts_ndim(mask) < 2)
        return node_fail(ctx, "SetLatentNoiseMask: needs a LATENT and a MASK");
    int64_t shape[4] = {-1, 1, ts_size(mask, -2), ts_size(mask, -1)};
    if (ts_reshape(&m, mask, shape, 4))
        return node_fail_ts(ctx, "SetLatentNoiseMask");
    node_value_t *v = sdn_latent_with_mask(lat, ts_ref(s), m);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

#define SIDE(nm, mn)                                                                                   \
    {.name = nm, .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,  \
     .idef = BASE_INT(512), .imin = BASE_INT(mn), .imax = BASE_INT(MAX_RESOLUTION), .istep = 8}

static const node_input_t empty_in[] = {
    SIDE("width", 16),
    SIDE("height", 16),
    {.name = "batch_size", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .idef = BASE_INT(1), .imin = BASE_INT(1), .imax = BASE_INT(4096),
     .tooltip = "The number of latent images in the batch."},
};

/* bislerp is not offered: weft has no spherical interpolation kernel yet. */
static const char *const latent_methods[] = {"nearest-exact", "bilinear", "area", "bicubic", NULL};
static const char *const crops[] = {"disabled", "center", NULL};

static const node_input_t upscale_in[] = {
    {.name = "samples", .type = "LATENT", .section = NODE_REQUIRED},
    {.name = "upscale_method", .type = "COMBO", .section = NODE_REQUIRED, .options = latent_methods},
    SIDE("width", 0),
    SIDE("height", 0),
    {.name = "crop", .type = "COMBO", .section = NODE_REQUIRED, .options = crops},
};

static const node_input_t upscale_by_in[] = {
    {.name = "samples", .type = "LATENT", .section = NODE_REQUIRED},
    {.name = "upscale_method", .type = "COMBO", .section = NODE_REQUIRED, .options = latent_methods},
    {.name = "scale_by", .type = "FLOAT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .fdef = 1.5, .fmin = 0.01, .fmax = 8.0, .fstep = 0.01},
};

static const node_input_t mask_in[] = {
    {.name = "samples", .type = "LATENT", .section = NODE_REQUIRED},
    {.name = "mask", .type = "MASK", .section = NODE_REQUIRED},
};

static const node_output_t latent_out[] = {{.type = "LATENT"}};
static const node_output_t empty_out[] = {{.type = "LATENT", .tooltip = "The empty latent image batch."}};

const node_def_t node_def_EmptyLatentImage = {
    .name = "EmptyLatentImage", .display_name = "Empty Latent Image", .category = "latent",
    .description = "Create a new batch of empty latent images to be denoised via sampling.",
    .inputs = empty_in, .n_inputs = 3, .outputs = empty_out, .n_outputs = 1, .execute = empty_execute,
};

const node_def_t node_def_LatentUpscale = {
    .name = "LatentUpscale", .display_name = "Upscale Latent", .category = "latent",
    .inputs = upscale_in, .n_inputs = 5, .outputs = latent_out, .n_outputs = 1, .execute = upscale_execute,
};

const node_def_t node_def_LatentUpscaleBy = {
    .name = "LatentUpscaleBy", .display_name = "Upscale Latent By", .category = "latent",
    .inputs = upscale_by_in, .n_inputs = 3, .outputs = latent_out, .n_outputs = 1, .execute = upscale_by_execute,
};

const node_def_t node_def_SetLatentNoiseMask = {
    .name = "SetLatentNoiseMask", .display_name = "Set Latent Noise Mask", .category = "latent/inpaint",
    .inputs = mask_in, .n_inputs = 2, .outputs = latent_out, .n_outputs = 1, .execute = mask_execute,
};
