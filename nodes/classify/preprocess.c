/* The classifier's input transform (§8 Option A), torchvision's ImageNet evaluation
 * transform for tensors: resize the shorter side with antialiased bilinear resampling, crop the
 * centre, normalise. The resampling runs on host floats with torch's arithmetic (float32
 * weights built per output pixel, width pass then height pass), so the result agrees with
 * torch.nn.functional.interpolate(..., antialias=True) to float rounding. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "err.h"

void cls_pre_default(cls_pre_t *p)
{
    *p = (cls_pre_t){.resize = 256,
                     .crop = 224,
                     .mean = {0.485f, 0.456f, 0.406f},
                     .std = {0.229f, 0.224f, 0.225f}};
}

static int meta_int(const st_file_t *f, const char *key, int *out, char *err, size_t errsz)
{
    const char *s = st_meta(f, key);
    if (!s)
        return 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 4096) {
        snprintf(err, errsz, "metadata \"%s\" is \"%s\", expected a whole number of pixels from 1 to 4096", key, s);
        return BASE_E_MODEL_FORMAT;
    }
    *out = (int)v;
    return 0;
}

static int meta_rgb(const st_file_t *f, const char *key, float out[3], bool positive, char *err, size_t errsz)
{
    const char *s = st_meta(f, key);
    if (!s)
        return 0;
    float v[3];
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end = NULL;
        errno = 0;
        double d = strtod(p, &end);
        if (errno || end == p || !isfinite(d) || (positive && d <= 0))
            goto bad;
        v[i] = (float)d;
        while (*end == ' ')
            end++;
        if (i < 2 && *end++ != ',')
            goto bad;
        if (i == 2 && *end)
            goto bad;
        p = end;
    }
    memcpy(out, v, sizeof v);
    return 0;
bad:
    snprintf(err, errsz, "metadata \"%s\" is \"%s\", expected three %snumbers \"r,g,b\"", key, s,
             positive ? "positive " : "");
    return BASE_E_MODEL_FORMAT;
}

int cls_pre_from_meta(cls_pre_t *p, const st_file_t *f, char *err, size_t errsz)
{
    int rc = meta_int(f, "classifier.resize_size", &p->resize, err, errsz);
    rc = rc ? rc : meta_int(f, "classifier.crop_size", &p->crop, err, errsz);
    rc = rc ? rc : meta_rgb(f, "classifier.mean", p->mean, false, err, errsz);
    rc = rc ? rc : meta_rgb(f, "classifier.std", p->std, true, err, errsz);
    return rc;
}

void cls_pre_resized_size(int h, int w, int shorter, int *oh, int *ow)
{
    /* torchvision: the longer side is int(size * long / short) in Python floats. */
    int s = w <= h ? w : h, l = w <= h ? h : w;
    int nl = (int)((double)shorter * (double)l / (double)s);
    *ow = w <= h ? shorter : nl;
    *oh = w <= h ? nl : shorter;
}

int cls_pre_crop_offset(int size, int crop)
{
    if (size < crop) /* torchvision pads (crop - size) // 2 on the leading side */
        return -((crop - size) / 2);
    int d = size - crop, half = d / 2;
    /* int(round(d / 2)) with Python's round half to even. */
    return (d % 2) && (half % 2) ? half + 1 : half;
}

/* ------------------------------------------------------------------ antialiased resampling */

/* For each output index: first source index, count, and weights (count <= max). */
typedef struct {
    int *first, *count;
    float *w; /* n_out * max */
    int max;
} taps_t;

static void taps_free(taps_t *t)
{
    free(t->first);
    free(t->count);
    free(t->w);
}

static float triangle(float x)
{
    x = x < 0 ? -x : x;
    return x < 1.0f ? 1.0f - x : 0.0f;
}

/* Torch's weights: the triangle filter stretched by the scale when shrinking, evaluated at
 * source pixel centres within the support, normalised to sum 1; float32 as for float input. */
static int taps_init(taps_t *t, int n_in, int n_out)
{
    memset(t, 0, sizeof *t);
    float scale = (float)n_in / (float)n_out;
    float support = scale >= 1.0f ? scale : 1.0f;
    float invscale = scale >= 1.0f ? (float)(1.0 / scale) : 1.0f;
    t->max = (int)ceil(support) * 2 + 1;
    t->first = malloc((size_t)n_out * sizeof *t->first);
    t->count = malloc((size_t)n_out * sizeof *t->count);
    t->w = calloc((size_t)n_out * (size_t)t->max, sizeof *t->w);
    if (!t->first || !t->count || !t->w) {
        taps_free(t);
        return BASE_E_NOMEM;
    }
    for (int i = 0; i < n_out; i++) {
        float center = (float)((double)scale * (i + 0.5));
        int64_t lo = (int64_t)((double)(center - support) + 0.5);
        int64_t hi = (int64_t)((double)(center + support) + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > n_in)
            hi = n_in;
        int n = (int)(hi - lo);
        if (n > t->max)
            n = t->max;
        if (n < 1) /* cannot happen for n_in >= 1; keep the nearest pixel */
            n = 1;
        float *w = t->w + (size_t)i * (size_t)t->max, total = 0.0f;
        for (int j = 0; j < n; j++) {
            float x = (float)(((double)((float)(j + lo) - center) + 0.5) * (double)invscale);
            w[j] = triangle(x);
            total += w[j];
        }
        if (total != 0.0f)
            for (int j = 0; j < n; j++)
                w[j] /= total;
        t->first[i] = (int)lo;
        t->count[i] = n;
    }
    return 0;
}

int cls_pre_resize_aa(const float *in, int h, int w, int c, float *out, int oh, int ow)
{
    if (!in || !out || h < 1 || w < 1 || c < 1 || oh < 1 || ow < 1)
        return BASE_E_INVAL;
    taps_t tx, ty;
    int rc = taps_init(&tx, w, ow);
    if (rc)
        return rc;
    if ((rc = taps_init(&ty, h, oh))) {
        taps_free(&tx);
        return rc;
    }
    float *mid = malloc((size_t)h * (size_t)ow * (size_t)c * sizeof *mid);
    if (!mid) {
        taps_free(&tx);
        taps_free(&ty);
        return BASE_E_NOMEM;
    }
    /* Width pass: in h x w -> mid h x ow. */
    for (int y = 0; y < h; y++) {
        const float *row = in + (size_t)y * (size_t)w * (size_t)c;
        float *dst = mid + (size_t)y * (size_t)ow * (size_t)c;
        for (int x = 0; x < ow; x++) {
            const float *wt = tx.w + (size_t)x * (size_t)tx.max;
            const float *src = row + (size_t)tx.first[x] * (size_t)c;
            for (int k = 0; k < c; k++) {
                float acc = src[k] * wt[0];
                for (int j = 1; j < tx.count[x]; j++)
                    acc += src[(size_t)j * (size_t)c + (size_t)k] * wt[j];
                dst[(size_t)x * (size_t)c + (size_t)k] = acc;
            }
        }
    }
    /* Height pass: mid h x ow -> out oh x ow. */
    size_t stride = (size_t)ow * (size_t)c;
    for (int y = 0; y < oh; y++) {
        const float *wt = ty.w + (size_t)y * (size_t)ty.max;
        const float *src = mid + (size_t)ty.first[y] * stride;
        float *dst = out + (size_t)y * stride;
        for (size_t i = 0; i < stride; i++) {
            float acc = src[i] * wt[0];
            for (int j = 1; j < ty.count[y]; j++)
                acc += src[(size_t)j * stride + i] * wt[j];
            dst[i] = acc;
        }
    }
    free(mid);
    taps_free(&tx);
    taps_free(&ty);
    return 0;
}

/* ------------------------------------------------------------------ the whole transform */

/* Largest side accepted (IMAGE tensors from weft's nodes stay far below). */
#define MAX_SIDE 32768

int cls_preprocess(const ts_tensor_t *image, const cls_pre_t *p, ts_tensor_t **out, char *err, size_t errsz)
{
    if (!image || !p || !out || p->resize < 1 || p->crop < 1) {
        snprintf(err, errsz, "cls_preprocess: bad arguments");
        return BASE_E_INVAL;
    }
    *out = NULL;
    int64_t s[TS_MAX_DIMS];
    int nd = ts_shape(image, s);
    if (nd != 4 || s[0] < 1 || s[1] < 1 || s[2] < 1 || (s[3] != 1 && s[3] != 3 && s[3] != 4)) {
        snprintf(err, errsz, "the classifier takes an IMAGE of shape [batch, height, width, 1, 3 or 4 channels]%s",
                 nd == 4 && s[0] == 0 ? "; the batch is empty" : "");
        return BASE_E_INVAL;
    }
    if (s[1] > MAX_SIDE || s[2] > MAX_SIDE) {
        snprintf(err, errsz, "the image is %lldx%lld; the classifier takes at most %d pixels a side",
                 (long long)s[2], (long long)s[1], MAX_SIDE);
        return BASE_E_INVAL;
    }
    int64_t b_n = s[0];
    int h = (int)s[1], w = (int)s[2], c = (int)s[3], oh, ow, cr = p->crop;
    cls_pre_resized_size(h, w, p->resize, &oh, &ow);
    if (oh < 1 || ow < 1 || oh > MAX_SIDE * 8 || ow > MAX_SIDE * 8) {
        snprintf(err, errsz, "the image is %dx%d; resizing its shorter side to %d gives an unusable size", w, h,
                 p->resize);
        return BASE_E_INVAL;
    }
    size_t px = (size_t)h * (size_t)w, opx = (size_t)oh * (size_t)ow, plane = (size_t)cr * (size_t)cr;
    float *all = malloc(px * (size_t)c * (size_t)b_n * sizeof *all);
    float *rgb = malloc(px * 3 * sizeof *rgb);
    float *big = malloc(opx * 3 * sizeof *big);
    float *res = malloc(plane * 3 * (size_t)b_n * sizeof *res);
    int rc = all && rgb && big && res ? 0 : BASE_E_NOMEM;
    if (rc)
        snprintf(err, errsz, "out of memory preprocessing a %dx%d image batch", w, h);
    if (!rc && (rc = ts_to_host(image, TS_F32, all, px * (size_t)c * (size_t)b_n * sizeof *all)))
        snprintf(err, errsz, "reading the image: %s", ts_last_error());
    int top = cls_pre_crop_offset(oh, cr), left = cls_pre_crop_offset(ow, cr);
    for (int64_t b = 0; !rc && b < b_n; b++) {
        const float *src = all + (size_t)b * px * (size_t)c;
        for (size_t i = 0; i < px; i++)
            for (int k = 0; k < 3; k++)
                rgb[i * 3 + (size_t)k] = src[i * (size_t)c + (size_t)(c == 1 ? 0 : k)];
        if ((rc = cls_pre_resize_aa(rgb, h, w, 3, big, oh, ow))) {
            snprintf(err, errsz, "out of memory resizing the image");
            break;
        }
        float *dst = res + (size_t)b * plane * 3;
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < cr; y++)
                for (int x = 0; x < cr; x++) {
                    int sy = top + y, sx = left + x;
                    float v = sy >= 0 && sy < oh && sx >= 0 && sx < ow
                                  ? big[((size_t)sy * (size_t)ow + (size_t)sx) * 3 + (size_t)k]
                                  : 0.0f;
                    dst[(size_t)k * plane + (size_t)y * (size_t)cr + (size_t)x] = (v - p->mean[k]) / p->std[k];
                }
    }
    if (!rc) {
        int64_t shape[4] = {b_n, 3, cr, cr};
        const ts_device_t cpu = {TS_CPU, 0};
        if ((rc = ts_from_host(out, res, TS_F32, shape, 4, cpu)))
            snprintf(err, errsz, "classifier input: %s", ts_last_error());
    }
    free(all);
    free(rgb);
    free(big);
    free(res);
    return rc;
}
