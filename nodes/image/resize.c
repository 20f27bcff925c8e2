/* ComfyUI's common_upscale for IMAGE tensors: optional centre crop to the target aspect,
 * then torch interpolation, or for "lanczos" PIL's resampler on 8-bit data (ComfyUI goes
 * through PIL there, so it quantises first; we do the same to give the same pixels). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/resize.h"

#define PRECISION_BITS 22 /* PIL's fixed-point weights for 8-bit images */
#define MAX_SIDE 16384
#define MAX_ELEMS (1ull << 32) /* refuse absurd outputs before allocating them */

int node_resize_from_name(const char *name, node_resize_t *out)
{
    static const char *const names[] = {"nearest-exact", "bilinear", "area", "bicubic",
                                        "lanczos"};
    for (int i = 0; name && i < 5; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (node_resize_t)i;
            return 0;
        }
    }
    return BASE_E_INVAL;
}

void node_image_quantize_u8(const float *src, uint8_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = 255.0f * src[i];
        dst[i] = !(v > 0.0f) ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
    }
}

/* ------------------------------------------------------------------ Lanczos (PIL) */

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double lanczos3(double x)
{
    return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
}

typedef struct {
    int ksize;
    int *bounds; /* per output pixel: first input index, number of taps */
    int32_t *k;  /* per output pixel: ksize fixed-point weights */
} coeffs_t;

static void coeffs_free(coeffs_t *c)
{
    free(c->bounds);
    free(c->k);
}

/* Weights of every output pixel along one axis. The filter widens by the scale factor
 * when shrinking, so downscaling averages instead of aliasing. */
static int coeffs_init(coeffs_t *c, int in_size, int out_size)
{
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 3.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    size_t n = (size_t)out_size * (size_t)ksize;
    c->ksize = ksize;
    c->bounds = malloc((size_t)out_size * 2 * sizeof *c->bounds);
    c->k = malloc(n * sizeof *c->k);
    double *w = malloc((size_t)ksize * sizeof *w);
    if (!c->bounds || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return BASE_E_NOMEM;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ss = 1.0 / filterscale, ww = 0.0;
        int xmin = (int)(center - support + 0.5); /* truncation, as PIL */
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = lanczos3((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)xx * (size_t)ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            v *= (double)(1 << PRECISION_BITS);
            k[x] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int64_t ss)
{
    if (ss < 0)
        return 0;
    ss >>= PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

int node_lanczos_u8(const uint8_t *in, int w_in, int h_in, int c, uint8_t *out, int w_out,
                    int h_out)
{
    if (!in || !out || w_in < 1 || h_in < 1 || w_out < 1 || h_out < 1 || c < 1)
        return BASE_E_INVAL;
    const int64_t half = (int64_t)1 << (PRECISION_BITS - 1);
    coeffs_t cx = {0}, cy = {0};
    uint8_t *tmp = NULL;
    int rc = 0;
    /* Horizontal pass into an 8-bit intermediate (PIL rounds and clips between passes). */
    const uint8_t *rows = in;
    if (w_out != w_in) {
        if ((rc = coeffs_init(&cx, w_in, w_out)))
            goto out;
        tmp = malloc((size_t)h_in * (size_t)w_out * (size_t)c);
        if (!tmp) {
            rc = BASE_E_NOMEM;
            goto out;
        }
        for (size_t y = 0; y < (size_t)h_in; y++) {
            const uint8_t *src = in + y * (size_t)w_in * (size_t)c;
            uint8_t *dst = tmp + y * (size_t)w_out * (size_t)c;
            for (int xx = 0; xx < w_out; xx++) {
                int xmin = cx.bounds[xx * 2], taps = cx.bounds[xx * 2 + 1];
                const int32_t *k = cx.k + (size_t)xx * (size_t)cx.ksize;
                for (int ch = 0; ch < c; ch++) {
                    int64_t ss = half;
                    for (int j = 0; j < taps; j++)
                        ss += (int64_t)src[(size_t)(xmin + j) * (size_t)c + (size_t)ch] * k[j];
                    dst[(size_t)xx * (size_t)c + (size_t)ch] = clip8(ss);
                }
            }
        }
        rows = tmp;
    }
    size_t row_bytes = (size_t)w_out * (size_t)c;
    if (h_out == h_in) {
        memcpy(out, rows, (size_t)h_out * row_bytes);
        goto out;
    }
    if ((rc = coeffs_init(&cy, h_in, h_out)))
        goto out;
    for (int yy = 0; yy < h_out; yy++) {
        int ymin = cy.bounds[yy * 2], taps = cy.bounds[yy * 2 + 1];
        const int32_t *k = cy.k + (size_t)yy * (size_t)cy.ksize;
        uint8_t *dst = out + (size_t)yy * row_bytes;
        for (size_t i = 0; i < row_bytes; i++) {
            int64_t ss = half;
            for (int j = 0; j < taps; j++)
                ss += (int64_t)rows[(size_t)(ymin + j) * row_bytes + i] * k[j];
            dst[i] = clip8(ss);
        }
    }
out:
    coeffs_free(&cx);
    coeffs_free(&cy);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------------ tensors */

static int lanczos_tensor(node_ctx_t *ctx, const ts_tensor_t *src, int64_t w, int64_t h,
                          ts_tensor_t **out)
{
    int64_t s[TS_MAX_DIMS];
    ts_shape(src, s);
    int64_t bn = s[0], hi = s[1], wi = s[2], c = s[3];
    size_t n_in = (size_t)(hi * wi * c), n_out = (size_t)(h * w * c);
    float *f = malloc(n_in * sizeof *f);
    uint8_t *u_in = malloc(n_in), *u_out = malloc(n_out);
    float *res = malloc((size_t)bn * n_out * sizeof *res);
    int rc = 0;
    if (!f || !u_in || !u_out || !res) {
        rc = node_fail(ctx, "out of memory resizing a %lldx%lld image", (long long)w,
                       (long long)h);
        goto out;
    }
    for (int64_t b = 0; b < bn; b++) {
        ts_tensor_t *one = NULL;
        if (ts_slice(&one, src, 0, b, b + 1) || ts_to_host(one, TS_F32, f, n_in * sizeof *f)) {
            ts_free(one);
            rc = node_fail_ts(ctx, "lanczos");
            goto out;
        }
        ts_free(one);
        node_image_quantize_u8(f, u_in, n_in);
        if (node_lanczos_u8(u_in, (int)wi, (int)hi, (int)c, u_out, (int)w, (int)h)) {
            rc = node_fail(ctx, "out of memory in lanczos resampling");
            goto out;
        }
        float *dst = res + (size_t)b * n_out;
        for (size_t i = 0; i < n_out; i++)
            dst[i] = (float)u_out[i] / 255.0f;
        if ((rc = node_progress(ctx, (uint64_t)(b + 1), (uint64_t)bn)))
            goto out;
    }
    int64_t shape[4] = {bn, h, w, c};
    if (ts_from_host(out, res, TS_F32, shape, 4, ts_device(src)))
        rc = node_fail_ts(ctx, "lanczos");
out:
    free(f);
    free(u_in);
    free(u_out);
    free(res);
    return rc;
}

static int interp_tensor(node_ctx_t *ctx, const ts_tensor_t *src, int64_t w, int64_t h,
                         ts_interp_t mode, ts_tensor_t **out)
{
    static const int to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};
    ts_tensor_t *a = NULL, *b = NULL, *c = NULL;
    int rc = ts_permute(&a, src, to_nchw, 4);
    if (!rc)
        rc = ts_interpolate(&b, a, h, w, mode);
    if (!rc)
        rc = ts_permute(&c, b, to_nhwc, 4);
    if (!rc)
        rc = ts_contiguous(out, c);
    ts_free(a);
    ts_free(b);
    ts_free(c);
    return rc ? node_fail_ts(ctx, "resize") : 0;
}

int node_image_resize(node_ctx_t *ctx, const ts_tensor_t *img, int64_t w, int64_t h,
                      node_resize_t method, bool center, ts_tensor_t **out)
{
    *out = NULL;
    int64_t s[TS_MAX_DIMS];
    if (!img || ts_ndim(img) != 4)
        return node_fail(ctx, "expected an IMAGE of shape [batch, height, width, channels]");
    ts_shape(img, s);
    int64_t bn = s[0], old_h = s[1], old_w = s[2], c = s[3];
    if (bn < 1 || old_h < 1 || old_w < 1 || c < 1)
        return node_fail(ctx, "cannot resize an empty image (%lldx%lldx%lldx%lld)",
                         (long long)bn, (long long)old_h, (long long)old_w, (long long)c);
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE)
        return node_fail(ctx, "invalid target size %lldx%lld (1..%d)", (long long)w,
                         (long long)h, MAX_SIDE);
    if ((uint64_t)bn * (uint64_t)c > MAX_ELEMS / ((uint64_t)w * (uint64_t)h))
        return node_fail(ctx, "resized batch %lldx%lldx%lldx%lld is too large", (long long)bn,
                         (long long)h, (long long)w, (long long)c);

    ts_tensor_t *crop = NULL;
    const ts_tensor_t *src = img;
    if (center) {
        /* ComfyUI's arithmetic (doubles, Python round = half to even). */
        double old_aspect = (double)old_w / (double)old_h, new_aspect = (double)w / (double)h;
        int64_t x = 0, y = 0;
        if (old_aspect > new_aspect)
            x = (int64_t)nearbyint((old_w - old_w * (new_aspect / old_aspect)) / 2);
        else if (old_aspect < new_aspect)
            y = (int64_t)nearbyint((old_h - old_h * (old_aspect / new_aspect)) / 2);
        if (old_h - 2 * y < 1 || old_w - 2 * x < 1)
            return node_fail(ctx, "cannot crop a %lldx%lld image to the aspect of %lldx%lld",
                             (long long)old_w, (long long)old_h, (long long)w, (long long)h);
        if (x || y) {
            ts_tensor_t *t = NULL;
            int rc = ts_slice(&t, img, 1, y, old_h - y);
            if (!rc)
                rc = ts_slice(&crop, t, 2, x, old_w - x);
            ts_free(t);
            if (rc)
                return node_fail_ts(ctx, "crop");
            src = crop;
        }
    }
    int rc;
    switch (method) {
    case NODE_RESIZE_LANCZOS:
        rc = lanczos_tensor(ctx, src, w, h, out);
        break;
    case NODE_RESIZE_NEAREST_EXACT:
        rc = interp_tensor(ctx, src, w, h, TS_INTERP_NEAREST_EXACT, out);
        break;
    case NODE_RESIZE_BILINEAR:
        rc = interp_tensor(ctx, src, w, h, TS_INTERP_BILINEAR, out);
        break;
    case NODE_RESIZE_AREA:
        rc = interp_tensor(ctx, src, w, h, TS_INTERP_AREA, out);
        break;
    case NODE_RESIZE_BICUBIC:
        rc = interp_tensor(ctx, src, w, h, TS_INTERP_BICUBIC, out);
        break;
    default:
        rc = node_fail(ctx, "unknown resize method");
        break;
    }
    ts_free(crop);
    return rc;
}
