/* VAEDecode, VAEEncode and VAEDecodeTiled: LATENT <-> IMAGE with ComfyUI's conventions
 * (sd15-reference.md §3.3–3.4): IMAGE is [B, H, W, C] in 0..1, the VAE works on NCHW in
 * -1..1, LATENT samples are unscaled. Batches are decoded one item at a time so peak memory
 * does not grow with the batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd/sd_nodes.h"

static const ts_device_t CPU = {TS_CPU, 0};

/* Runs body with the VAE input pinned in memory. */
static int with_vae(node_ctx_t *ctx, int (*body)(node_ctx_t *ctx, const sd_vae_t *vae))
{
    const sdn_vae_t *v = sdn_in_vae(ctx, "vae");
    if (!v || !v->ck || !(v->ck->have & SDN_VAE))
        return node_fail(ctx, "ERROR: vae input is invalid: None\n\nIf the vae is from a checkpoint loader node "
                              "your checkpoint does not contain a valid vae.");
    if (sdn_use(v->ck, ctx->err, sizeof ctx->err))
        return BASE_E_NODE_FAILED;
    int rc = body(ctx, v->ck->vae);
    sdn_unuse(v->ck);
    return rc;
}

/* [1, 3, H, W] in -1..1 -> [1, H, W, 3] in 0..1. */
static int to_image(const ts_tensor_t *x, ts_tensor_t **out)
{
    ts_tensor_t *a = NULL, *b = NULL, *c = NULL;
    static const int nhwc[4] = {0, 2, 3, 1};
    int rc = ts_affine(&a, x, 0.5, 0.5);
    if (!rc)
        rc = ts_clamp(&b, a, 0.0, 1.0);
    if (!rc)
        rc = ts_permute(&c, b, nhwc, 4);
    if (!rc)
        rc = ts_contiguous(out, c);
    ts_free(a);
    ts_free(b);
    ts_free(c);
    return rc;
}

/* Decodes items of z one by one, calling step after each. */
static int decode_batch(node_ctx_t *ctx, const sd_vae_t *vae, const ts_tensor_t *z, ts_tensor_t **out)
{
    int64_t n = ts_size(z, 0);
    ts_tensor_t **items = calloc((size_t)(n > 0 ? n : 1), sizeof *items);
    if (!items)
        return node_fail(ctx, "out of memory");
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        ts_tensor_t *zi = NULL, *img = NULL;
        if ((rc = ts_slice(&zi, z, 0, i, i + 1))) {
            rc = node_fail_ts(ctx, "VAEDecode");
            break;
        }
        rc = sd_vae_decode(vae, zi, &img, ctx->err, sizeof ctx->err);
        ts_free(zi);
        if (rc) {
            rc = BASE_E_NODE_FAILED;
            break;
        }
        rc = to_image(img, &items[i]);
        ts_free(img);
        if (rc)
            rc = node_fail_ts(ctx, "VAEDecode");
        else if (n > 1 && node_interrupted(ctx))
            rc = BASE_E_INTERRUPTED;
    }
    if (!rc && (rc = ts_cat(out, items, (int)n, 0)))
        rc = node_fail_ts(ctx, "VAEDecode");
    for (int64_t i = 0; i < n; i++)
        ts_free(items[i]);
    free(items);
    return rc;
}

static int decode_body(node_ctx_t *ctx, const sd_vae_t *vae)
{
    ts_tensor_t *z = sdn_latent_samples(node_in(ctx, "samples")), *img = NULL;
    if (!z || ts_ndim(z) != 4 || ts_size(z, 0) < 1)
        return node_fail(ctx, "VAEDecode: samples is not a LATENT batch");
    int rc = decode_batch(ctx, vae, z, &img);
    return rc ? rc : sdn_out_tensor(ctx, 0, img);
}

static int encode_body(node_ctx_t *ctx, const sd_vae_t *vae)
{
    ts_tensor_t *px = node_in_tensor(ctx, "pixels");
    int64_t s[TS_MAX_DIMS];
    if (!px || ts_shape(px, s) != 4 || s[3] < 3)
        return node_fail(ctx, "VAEEncode: pixels must be an IMAGE [batch, height, width, channels]");
    int64_t h = s[1] / 8 * 8, w = s[2] / 8 * 8;
    if (h < 8 || w < 8)
        return node_fail(ctx, "VAEEncode: the image is smaller than 8x8 pixels");
    int64_t y0 = (s[1] % 8) / 2, x0 = (s[2] % 8) / 2;
    static const int nchw[4] = {0, 3, 1, 2};
    int64_t n = s[0];
    ts_tensor_t **items = calloc((size_t)n, sizeof *items);
    if (!items)
        return node_fail(ctx, "out of memory");
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        ts_tensor_t *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL;
        /* Centre crop to multiples of 8, drop alpha, 0..1 -> -1..1, NHWC -> NCHW. */
        rc = ts_slice(&a, px, 0, i, i + 1);
        if (!rc)
            rc = ts_slice(&b, a, 1, y0, y0 + h);
        if (!rc)
            rc = ts_slice(&c, b, 2, x0, x0 + w);
        if (!rc)
            rc = ts_slice(&d, c, 3, 0, 3);
        if (!rc)
            rc = ts_affine(&e, d, 2.0, -1.0);
        if (!rc)
            rc = ts_permute(&f, e, nchw, 4);
        if (rc)
            rc = node_fail_ts(ctx, "VAEEncode");
        else if (sd_vae_encode(vae, f, &items[i], ctx->err, sizeof ctx->err))
            rc = BASE_E_NODE_FAILED;
        ts_free(a);
        ts_free(b);
        ts_free(c);
        ts_free(d);
        ts_free(e);
        ts_free(f);
    }
    ts_tensor_t *lat = NULL;
    if (!rc && ts_cat(&lat, items, (int)n, 0))
        rc = node_fail_ts(ctx, "VAEEncode");
    for (int64_t i = 0; i < n; i++)
        ts_free(items[i]);
    free(items);
    if (rc)
        return rc;
    node_value_t *v = sdn_latent_value(NULL, lat);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

/* ------------------------------------------------------------------ tiled decode */

/* Start offsets of tiles of size t with overlap o covering n cells; the last tile ends at n. */
static int tile_starts(int64_t n, int64_t t, int64_t o, int64_t *starts, int max)
{
    if (t >= n) {
        starts[0] = 0;
        return 1;
    }
    int k = 0;
    for (int64_t p = 0;; p += t - o) {
        if (k == max)
            return -1;
        if (p + t >= n) {
            starts[k++] = n - t;
            break;
        }
        starts[k++] = p;
    }
    return k;
}

/* A [1, 1, th, tw] weight that ramps linearly over `feather` pixels at the edges that touch
 * another tile, so overlapping tiles blend without seams. */
static int feather_mask(int64_t th, int64_t tw, int64_t feather, bool top, bool bottom, bool left, bool right,
                        ts_tensor_t **out)
{
    float *m = malloc((size_t)(th * tw) * sizeof *m);
    if (!m)
        return BASE_E_NOMEM;
    for (int64_t y = 0; y < th; y++)
        for (int64_t x = 0; x < tw; x++) {
            float v = 1.0f;
            if (feather > 0) {
                if (top && y < feather)
                    v *= (float)(y + 1) / (float)feather;
                if (bottom && th - 1 - y < feather)
                    v *= (float)(th - y) / (float)feather;
                if (left && x < feather)
                    v *= (float)(x + 1) / (float)feather;
                if (right && tw - 1 - x < feather)
                    v *= (float)(tw - x) / (float)feather;
            }
            m[y * tw + x] = v;
        }
    int64_t shape[4] = {1, 1, th, tw};
    int rc = ts_from_host(out, m, TS_F32, shape, 4, CPU);
    free(m);
    return rc;
}

#define MAX_TILES 256

static int tiled_body(node_ctx_t *ctx, const sd_vae_t *vae)
{
    ts_tensor_t *z = sdn_latent_samples(node_in(ctx, "samples"));
    if (!z || ts_ndim(z) != 4 || ts_size(z, 0) < 1)
        return node_fail(ctx, "VAEDecodeTiled: samples is not a LATENT batch");
    int64_t tile = node_in_i64(ctx, "tile_size"), overlap = node_in_i64(ctx, "overlap");
    if (tile < 64)
        return node_fail(ctx, "VAEDecodeTiled: tile_size must be at least 64");
    if (tile < overlap * 4) /* as ComfyUI: the overlap is at most a quarter of the tile */
        overlap = tile / 4;
    int64_t t = tile / 8, o = overlap / 8, lh = ts_size(z, 2), lw = ts_size(z, 3);
    int64_t ys[MAX_TILES], xs[MAX_TILES];
    int ny = tile_starts(lh, t, o, ys, MAX_TILES), nx = tile_starts(lw, t, o, xs, MAX_TILES);
    if (ny < 0 || nx < 0 || (int64_t)ny * nx > MAX_TILES)
        return node_fail(ctx, "VAEDecodeTiled: too many tiles; use a larger tile_size");
    if (ny == 1 && nx == 1)
        return decode_body(ctx, vae);
    int64_t H = lh * 8, W = lw * 8, B = ts_size(z, 0);
    ts_tensor_t *acc = NULL, *div = NULL;
    int64_t acc_shape[4] = {B, 3, H, W}, div_shape[4] = {1, 1, H, W};
    if (ts_zeros(&acc, acc_shape, 4, TS_F32, CPU) || ts_zeros(&div, div_shape, 4, TS_F32, CPU)) {
        ts_free(acc);
        return node_fail_ts(ctx, "VAEDecodeTiled");
    }
    int rc = 0, done = 0, total = ny * nx;
    for (int iy = 0; iy < ny && !rc; iy++)
        for (int ix = 0; ix < nx && !rc; ix++) {
            int64_t y0 = ys[iy], x0 = xs[ix], th = t < lh ? t : lh, tw = t < lw ? t : lw;
            ts_tensor_t *a = NULL, *zt = NULL, *img = NULL, *mask = NULL, *wimg = NULL, *pimg = NULL, *pm = NULL,
                        *tmp = NULL;
            rc = ts_slice(&a, z, 2, y0, y0 + th);
            if (!rc)
                rc = ts_slice(&zt, a, 3, x0, x0 + tw);
            if (rc) {
                rc = node_fail_ts(ctx, "VAEDecodeTiled");
            } else if (sd_vae_decode(vae, zt, &img, ctx->err, sizeof ctx->err)) {
                rc = BASE_E_NODE_FAILED;
            } else {
                int py = (int)(y0 * 8), px = (int)(x0 * 8), ph = (int)(th * 8), pw = (int)(tw * 8);
                rc = feather_mask(ph, pw, o * 8, iy > 0, iy < ny - 1, ix > 0, ix < nx - 1, &mask);
                if (!rc)
                    rc = ts_mul(&wimg, img, mask);
                if (!rc)
                    rc = ts_pad2d(&pimg, wimg, px, (int)W - px - pw, py, (int)H - py - ph, 0.0);
                if (!rc && !(rc = ts_add(&tmp, acc, pimg)))
                    sdn_swap(&acc, tmp);
                if (!rc)
                    rc = ts_pad2d(&pm, mask, px, (int)W - px - pw, py, (int)H - py - ph, 0.0);
                if (!rc && !(rc = ts_add(&tmp, div, pm)))
                    sdn_swap(&div, tmp);
                if (rc)
                    rc = node_fail_ts(ctx, "VAEDecodeTiled");
            }
            ts_free(a);
            ts_free(zt);
            ts_free(img);
            ts_free(mask);
            ts_free(wimg);
            ts_free(pimg);
            ts_free(pm);
            if (!rc)
                rc = node_progress(ctx, (uint64_t)++done, (uint64_t)total);
        }
    ts_tensor_t *x = NULL, *out = NULL;
    if (!rc && (ts_div(&x, acc, div) || to_image(x, &out)))
        rc = node_fail_ts(ctx, "VAEDecodeTiled");
    ts_free(acc);
    ts_free(div);
    ts_free(x);
    return rc ? rc : sdn_out_tensor(ctx, 0, out);
}

static int decode_execute(node_ctx_t *ctx)
{
    return with_vae(ctx, decode_body);
}

static int encode_execute(node_ctx_t *ctx)
{
    return with_vae(ctx, encode_body);
}

static int tiled_execute(node_ctx_t *ctx)
{
    return with_vae(ctx, tiled_body);
}

static const node_input_t decode_in[] = {
    {.name = "samples", .type = "LATENT", .section = NODE_REQUIRED, .tooltip = "The latent to be decoded."},
    {.name = "vae", .type = "VAE", .section = NODE_REQUIRED, .tooltip = "The VAE model used for decoding the latent."},
};
static const node_output_t image_out[] = {{.type = "IMAGE", .tooltip = "The decoded image."}};

static const node_input_t encode_in[] = {
    {.name = "pixels", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "vae", .type = "VAE", .section = NODE_REQUIRED},
};
static const node_output_t latent_out[] = {{.type = "LATENT"}};

#define TILE_INT(nm, def, mn, st)                                                                      \
    {.name = nm, .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,  \
     .idef = BASE_INT(def), .imin = BASE_INT(mn), .imax = BASE_INT(4096), .istep = st}

static const node_input_t tiled_in[] = {
    {.name = "samples", .type = "LATENT", .section = NODE_REQUIRED},
    {.name = "vae", .type = "VAE", .section = NODE_REQUIRED},
    TILE_INT("tile_size", 512, 64, 32),
    TILE_INT("overlap", 64, 0, 32),
    /* Video models only; accepted for workflow compatibility and unused for images. */
    TILE_INT("temporal_size", 64, 8, 4),
    TILE_INT("temporal_overlap", 8, 4, 4),
};

const node_def_t node_def_VAEDecode = {
    .name = "VAEDecode", .display_name = "VAE Decode", .category = "latent",
    .description = "Decodes latent images back into pixel space images.",
    .inputs = decode_in, .n_inputs = 2, .outputs = image_out, .n_outputs = 1, .flags = NODE_HEAVY,
    .execute = decode_execute,
};

const node_def_t node_def_VAEEncode = {
    .name = "VAEEncode", .display_name = "VAE Encode", .category = "latent",
    .inputs = encode_in, .n_inputs = 2, .outputs = latent_out, .n_outputs = 1, .flags = NODE_HEAVY,
    .execute = encode_execute,
};

const node_def_t node_def_VAEDecodeTiled = {
    .name = "VAEDecodeTiled", .display_name = "VAE Decode (Tiled)", .category = "_for_testing",
    .inputs = tiled_in, .n_inputs = 6, .outputs = image_out, .n_outputs = 1, .flags = NODE_HEAVY,
    .execute = tiled_execute,
};
