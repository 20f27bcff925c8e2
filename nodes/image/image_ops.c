/* Small IMAGE nodes: ImageScale, ImageInvert, ImageBatch, EmptyImage (ComfyUI nodes.py). */
#include <math.h>
#include <string.h>

#include "image/resize.h"
#include "nodes.h"

#define MAX_RESOLUTION 16384
#define MAX_ELEMS (1ull << 32)

static int set_tensor_out(node_ctx_t *ctx, size_t i, ts_tensor_t *t)
{
    node_value_t *v = node_value_tensor(t); /* takes t even on failure */
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, i, v);
    return 0;
}

static int image_shape(node_ctx_t *ctx, const ts_tensor_t *t, const char *what, int64_t s[4])
{
    int64_t all[TS_MAX_DIMS];
    if (!t || ts_shape(t, all) != 4)
        return node_fail(ctx, "%s: expected an IMAGE of shape [batch, height, width, channels]",
                         what);
    memcpy(s, all, 4 * sizeof *s);
    return 0;
}

/* ------------------------------------------------------------------ ImageScale */

static int scale_execute(node_ctx_t *ctx)
{
    ts_tensor_t *image = node_in_tensor(ctx, "image");
    int64_t s[4] = {0};
    int rc = image_shape(ctx, image, "ImageScale", s);
    if (rc)
        return rc;
    node_resize_t method;
    if (node_resize_from_name(node_in_str(ctx, "upscale_method"), &method))
        return node_fail(ctx, "ImageScale: unknown upscale_method \"%s\"",
                         node_in_str(ctx, "upscale_method"));
    int64_t width = node_in_i64(ctx, "width"), height = node_in_i64(ctx, "height");
    if (width < 0 || height < 0 || width > MAX_RESOLUTION || height > MAX_RESOLUTION)
        return node_fail(ctx, "ImageScale: width and height must be in 0..%d", MAX_RESOLUTION);
    if (width == 0 && height == 0)
        return set_tensor_out(ctx, 0, ts_ref(image));
    if (s[1] < 1 || s[2] < 1)
        return node_fail(ctx, "ImageScale: the image is empty");
    /* One zero side keeps the aspect: Python round(W * height / H), at least 1. */
    if (width == 0)
        width = (int64_t)fmax(1.0, nearbyint((double)s[2] * (double)height / (double)s[1]));
    else if (height == 0)
        height = (int64_t)fmax(1.0, nearbyint((double)s[1] * (double)width / (double)s[2]));
    ts_tensor_t *out = NULL;
    bool center = strcmp(node_in_str(ctx, "crop"), "center") == 0;
    if ((rc = node_image_resize(ctx, image, width, height, method, center, &out)))
        return rc;
    return set_tensor_out(ctx, 0, out);
}

/* ------------------------------------------------------------------ ImageInvert */

static int invert_execute(node_ctx_t *ctx)
{
    ts_tensor_t *image = node_in_tensor(ctx, "image"), *out = NULL;
    if (!image)
        return node_fail(ctx, "ImageInvert: no image");
    if (ts_affine(&out, image, -1.0, 1.0))
        return node_fail_ts(ctx, "ImageInvert");
    return set_tensor_out(ctx, 0, out);
}

/* ------------------------------------------------------------------ ImageBatch */

static int batch_execute(node_ctx_t *ctx)
{
    ts_tensor_t *a = node_in_tensor(ctx, "image1"), *b = node_in_tensor(ctx, "image2");
    int64_t sa[4] = {0}, sb[4] = {0};
    int rc = image_shape(ctx, a, "ImageBatch image1", sa);
    if (!rc)
        rc = image_shape(ctx, b, "ImageBatch image2", sb);
    if (rc)
        return rc;
    if (sa[3] != sb[3])
        return node_fail(ctx, "ImageBatch: images have %lld and %lld channels", (long long)sa[3],
                         (long long)sb[3]);
    ts_tensor_t *resized = NULL;
    if (sa[1] != sb[1] || sa[2] != sb[2]) {
        if ((rc = node_image_resize(ctx, b, sa[2], sa[1], NODE_RESIZE_BILINEAR, true, &resized)))
            return rc;
        b = resized;
    }
    ts_tensor_t *pair[2] = {a, b}, *out = NULL;
    rc = ts_cat(&out, pair, 2, 0);
    ts_free(resized);
    if (rc)
        return node_fail_ts(ctx, "ImageBatch");
    return set_tensor_out(ctx, 0, out);
}

/* ------------------------------------------------------------------ EmptyImage */

static int empty_execute(node_ctx_t *ctx)
{
    int64_t w = node_in_i64(ctx, "width"), h = node_in_i64(ctx, "height");
    int64_t bn = node_in_i64(ctx, "batch_size"), color = node_in_i64(ctx, "color");
    if (w < 1 || h < 1 || bn < 1 || w > MAX_RESOLUTION || h > MAX_RESOLUTION || bn > 4096)
        return node_fail(ctx, "EmptyImage: invalid size %lldx%lld, batch %lld", (long long)w,
                         (long long)h, (long long)bn);
    if ((uint64_t)bn * 3 > MAX_ELEMS / ((uint64_t)w * (uint64_t)h))
        return node_fail(ctx, "EmptyImage: %lldx%lldx%lld images are too large", (long long)bn,
                         (long long)h, (long long)w);
    /* Python: ((color >> 16) & 0xFF) / 0xFF as a double, stored as float32 by torch.full. */
    float rgb[3] = {(float)((double)((color >> 16) & 0xFF) / 255.0),
                    (float)((double)((color >> 8) & 0xFF) / 255.0),
                    (float)((double)(color & 0xFF) / 255.0)};
    const int64_t px[4] = {1, 1, 1, 3}, reps[4] = {bn, h, w, 1};
    ts_tensor_t *one = NULL, *out = NULL;
    int rc = ts_from_host(&one, rgb, TS_F32, px, 4, (ts_device_t){TS_CPU, 0});
    if (!rc)
        rc = ts_repeat(&out, one, reps, 4);
    ts_free(one);
    if (rc)
        return node_fail_ts(ctx, "EmptyImage");
    return set_tensor_out(ctx, 0, out);
}

/* ------------------------------------------------------------------ tables */

static const node_output_t out_image[] = {{.type = "IMAGE"}};

static const char *const upscale_methods[] = {"nearest-exact", "bilinear", "area", "bicubic",
                                              "lanczos", NULL};
static const char *const crop_methods[] = {"disabled", "center", NULL};

#define SIDE_INPUT(nm, mn)                                                                    \
    {.name = nm, .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX, \
     .idef = BASE_INT(512), .imin = BASE_INT(mn), .imax = BASE_INT(MAX_RESOLUTION), .istep = 1}

static const node_input_t scale_in[] = {
    {.name = "image", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "upscale_method", .type = "COMBO", .section = NODE_REQUIRED,
     .options = upscale_methods},
    SIDE_INPUT("width", 0),
    SIDE_INPUT("height", 0),
    {.name = "crop", .type = "COMBO", .section = NODE_REQUIRED, .options = crop_methods},
};

static const node_input_t invert_in[] = {
    {.name = "image", .type = "IMAGE", .section = NODE_REQUIRED},
};

static const node_input_t batch_in[] = {
    {.name = "image1", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "image2", .type = "IMAGE", .section = NODE_REQUIRED},
};

static const node_input_t empty_in[] = {
    SIDE_INPUT("width", 1),
    SIDE_INPUT("height", 1),
    {.name = "batch_size", .type = "INT", .section = NODE_REQUIRED,
     .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX, .idef = BASE_INT(1), .imin = BASE_INT(1),
     .imax = BASE_INT(4096)},
    {.name = "color", .type = "INT", .section = NODE_REQUIRED,
     .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX, .idef = BASE_INT(0), .imin = BASE_INT(0),
     .imax = BASE_INT(0xFFFFFF), .istep = 1},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

const node_def_t node_def_ImageScale = {
    .name = "ImageScale", .display_name = "Upscale Image", .category = "image/upscaling",
    .inputs = scale_in, .n_inputs = N(scale_in), .outputs = out_image, .n_outputs = 1,
    .execute = scale_execute,
};

const node_def_t node_def_ImageInvert = {
    .name = "ImageInvert", .display_name = "Invert Image", .category = "image",
    .inputs = invert_in, .n_inputs = N(invert_in), .outputs = out_image, .n_outputs = 1,
    .execute = invert_execute,
};

const node_def_t node_def_ImageBatch = {
    .name = "ImageBatch", .display_name = "Batch Images", .category = "image",
    .inputs = batch_in, .n_inputs = N(batch_in), .outputs = out_image, .n_outputs = 1,
    .execute = batch_execute,
};

const node_def_t node_def_EmptyImage = {
    .name = "EmptyImage", .category = "image",
    .inputs = empty_in, .n_inputs = N(empty_in), .outputs = out_image, .n_outputs = 1,
    .execute = empty_execute,
};
