/* torchvision's ResNet (§8 Option A): the config read from the state dict's shapes, the
 * layout's names for writers and tests, loading with a shape check of every tensor, and the
 * eval-mode forward pass (BatchNorm with running statistics, eps 1e-5). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "err.h"

#define BN_EPS 1e-5

typedef struct {
    ts_tensor_t *w, *b, *mean, *var; /* borrowed from the store */
} bn_t;

typedef struct {
    ts_tensor_t *conv1, *conv2, *conv3, *ds; /* conv3: Bottleneck only; ds: when present */
    bn_t bn1, bn2, bn3, ds_bn;
    int stride;
} block_t;

struct cls_resnet_s {
    cls_resnet_config_t cfg;
    sdw_t *w; /* owns every tensor below */
    ts_tensor_t *conv1, *fc_w, *fc_b;
    bn_t bn1;
    block_t *blocks; /* layer by layer */
    int nblocks;
    int first[CLS_LAYERS + 1]; /* index of each layer's first block; first[4] = nblocks */
};

static void set_err(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ configs */

int cls_resnet_config_std(cls_resnet_config_t *c, int depth, int num_classes)
{
    static const struct {
        int depth, b[4];
        bool bottleneck;
    } std[] = {
        {18, {2, 2, 2, 2}, false},  {34, {3, 4, 6, 3}, false}, {50, {3, 4, 6, 3}, true},
        {101, {3, 4, 23, 3}, true}, {152, {3, 8, 36, 3}, true},
    };
    if (!c || num_classes < 1)
        return BASE_E_INVAL;
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++) {
        if (std[i].depth != depth)
            continue;
        memset(c, 0, sizeof *c);
        c->bottleneck = std[i].bottleneck;
        c->stem = 64;
        c->groups = 1;
        c->num_classes = num_classes;
        for (int l = 0; l < CLS_LAYERS; l++) {
            c->blocks[l] = std[i].b[l];
            c->inner[l] = 64 << l;
            c->out[l] = (64 << l) * (c->bottleneck ? 4 : 1);
        }
        return 0;
    }
    return BASE_E_INVAL;
}

/* The torchvision rule: a projection shortcut where the shape changes. */
static bool has_downsample(const cls_resnet_config_t *c, int l, int k, int in)
{
    return k == 0 && (l > 0 || in != c->out[l]);
}

static int block_stride(int l, int k)
{
    return k == 0 && l > 0 ? 2 : 1;
}

/* ------------------------------------------------------------------ layout names */

typedef struct {
    sd_key_fn cb;
    void *ctx;
    char name[128];
} keys_t;

static int key(keys_t *k, const int64_t *shape, int ndim, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int key(keys_t *k, const int64_t *shape, int ndim, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->name, sizeof k->name, fmt, ap);
    va_end(ap);
    return k->cb(k->ctx, k->name, shape, ndim);
}

static int conv_key(keys_t *k, const char *p, const char *n, int64_t co, int64_t ci, int64_t ks)
{
    int64_t s[4] = {co, ci, ks, ks};
    return key(k, s, 4, "%s%s.weight", p, n);
}

static int bn_keys(keys_t *k, const char *p, const char *n, int64_t ch)
{
    static const char *const parts[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        int rc = key(k, &ch, 1, "%s%s.%s", p, n, parts[i]);
        if (rc)
            return rc;
    }
    return key(k, NULL, 0, "%s%s.num_batches_tracked", p, n);
}

static bool config_ok(const cls_resnet_config_t *c)
{
    if (!c || c->stem < 1 || c->num_classes < 1 || c->groups < 1)
        return false;
    for (int l = 0; l < CLS_LAYERS; l++)
        if (c->blocks[l] < 1 || c->inner[l] < 1 || c->out[l] < 1 || c->inner[l] % c->groups ||
            (!c->bottleneck && (c->inner[l] != c->out[l] || c->groups != 1)))
            return false;
    return true;
}

int cls_resnet_keys(const cls_resnet_config_t *c, sd_key_fn cb, void *ctx)
{
    if (!config_ok(c) || !cb)
        return BASE_E_INVAL;
    keys_t k = {.cb = cb, .ctx = ctx, .name = ""};
    int rc = conv_key(&k, "", "conv1", c->stem, 3, 7);
    if (!rc)
        rc = bn_keys(&k, "", "bn1", c->stem);
    int in = c->stem;
    for (int l = 0; l < CLS_LAYERS && !rc; l++) {
        for (int b = 0; b < c->blocks[l] && !rc; b++) {
            char p[48];
            snprintf(p, sizeof p, "layer%d.%d.", l + 1, b);
            int mid = c->inner[l], out = c->out[l];
            if (c->bottleneck) {
                rc = conv_key(&k, p, "conv1", mid, in, 1);
                rc = rc ? rc : bn_keys(&k, p, "bn1", mid);
                rc = rc ? rc : conv_key(&k, p, "conv2", mid, mid / c->groups, 3);
                rc = rc ? rc : bn_keys(&k, p, "bn2", mid);
                rc = rc ? rc : conv_key(&k, p, "conv3", out, mid, 1);
                rc = rc ? rc : bn_keys(&k, p, "bn3", out);
            } else {
                rc = conv_key(&k, p, "conv1", out, in, 3);
                rc = rc ? rc : bn_keys(&k, p, "bn1", out);
                rc = rc ? rc : conv_key(&k, p, "conv2", out, out, 3);
                rc = rc ? rc : bn_keys(&k, p, "bn2", out);
            }
            if (!rc && has_downsample(c, l, b, in)) {
                rc = conv_key(&k, p, "downsample.0", out, in, 1);
                rc = rc ? rc : bn_keys(&k, p, "downsample.1", out);
            }
            in = out;
        }
    }
    if (!rc) {
        int64_t fw[2] = {c->num_classes, in}, fb = c->num_classes;
        rc = key(&k, fw, 2, "fc.weight");
        rc = rc ? rc : key(&k, &fb, 1, "fc.bias");
    }
    return rc;
}

/* ------------------------------------------------------------------ detection */

/* Dim d of the named tensor, or -1 when it is absent or has fewer dims. sdw_get marks the
 * tensor used: detection reads only names the layout has, so the unused check still sees
 * every extra tensor. */
static int64_t dim_of(sdw_t *w, const char *name, int d)
{
    ts_tensor_t *t = sdw_get(w, name);
    if (!t || ts_ndim(t) <= d)
        return -1;
    return ts_size(t, d);
}

int cls_resnet_detect(sdw_t *w, cls_resnet_config_t *c, char *err, size_t errsz)
{
    if (!w || !c)
        return BASE_E_INVAL;
    memset(c, 0, sizeof *c);
    char n[96];
    c->stem = (int)dim_of(w, "conv1.weight", 0);
    if (c->stem < 1 || dim_of(w, "fc.weight", 0) < 1 || dim_of(w, "layer1.0.conv1.weight", 0) < 1) {
        set_err(err, errsz, "not a torchvision ResNet: it needs the tensors conv1.weight, layer1.0.conv1.weight "
                            "and fc.weight");
        return BASE_E_MODEL_LAYOUT;
    }
    c->bottleneck = dim_of(w, "layer1.0.conv3.weight", 0) > 0;
    c->groups = 1;
    for (int l = 0; l < CLS_LAYERS; l++) {
        for (;;) {
            snprintf(n, sizeof n, "layer%d.%d.conv1.weight", l + 1, c->blocks[l]);
            if (dim_of(w, n, 0) < 1 || c->blocks[l] >= 1000)
                break;
            c->blocks[l]++;
        }
        if (!c->blocks[l]) {
            set_err(err, errsz, "not a torchvision ResNet: tensor 'layer%d.0.conv1.weight' is missing", l + 1);
            return BASE_E_MODEL_LAYOUT;
        }
        snprintf(n, sizeof n, "layer%d.0.conv%d.weight", l + 1, c->bottleneck ? 2 : 1);
        c->inner[l] = (int)dim_of(w, n, 0);
        snprintf(n, sizeof n, "layer%d.0.conv%d.weight", l + 1, c->bottleneck ? 3 : 2);
        c->out[l] = (int)dim_of(w, n, 0);
        if (c->bottleneck) {
            snprintf(n, sizeof n, "layer%d.0.conv2.weight", l + 1);
            int64_t per = dim_of(w, n, 1);
            if (per > 0 && c->inner[l] > 0 && c->inner[l] % per == 0 && (l == 0 || c->inner[l] / per == c->groups))
                c->groups = (int)(c->inner[l] / per);
            else
                c->groups = 0; /* reported below */
        }
    }
    c->num_classes = (int)dim_of(w, "fc.weight", 0);
    if (!config_ok(c)) {
        set_err(err, errsz, "not a torchvision ResNet: the shapes of its layer tensors do not fit BasicBlock or "
                            "Bottleneck blocks");
        return BASE_E_MODEL_LAYOUT;
    }
    return 0;
}

/* ------------------------------------------------------------------ loading */

typedef struct {
    sdw_t *w;
    char *err;
    size_t errsz;
} need_t;

static int need(need_t *n, ts_tensor_t **out, const int64_t *shape, int ndim, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int need(need_t *n, ts_tensor_t **out, const int64_t *shape, int ndim, const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sdw_need(n->w, name, shape, ndim, out, n->err, n->errsz);
}

static int need_conv(need_t *n, ts_tensor_t **out, const char *p, const char *c, int64_t co, int64_t ci,
                     int64_t k)
{
    int64_t s[4] = {co, ci, k, k};
    return need(n, out, s, 4, "%s%s.weight", p, c);
}

static int need_bn(need_t *n, bn_t *bn, const char *p, const char *b, int64_t ch)
{
    int rc = need(n, &bn->w, &ch, 1, "%s%s.weight", p, b);
    rc = rc ? rc : need(n, &bn->b, &ch, 1, "%s%s.bias", p, b);
    rc = rc ? rc : need(n, &bn->mean, &ch, 1, "%s%s.running_mean", p, b);
    rc = rc ? rc : need(n, &bn->var, &ch, 1, "%s%s.running_var", p, b);
    /* Optional: some exports drop the counter, and eval mode never reads it. */
    sdw_getf(n->w, "%s%s.num_batches_tracked", p, b);
    return rc;
}

static int load_blocks(cls_resnet_t *r, need_t *n)
{
    const cls_resnet_config_t *c = &r->cfg;
    int in = c->stem, i = 0, rc = 0;
    for (int l = 0; l < CLS_LAYERS && !rc; l++) {
        r->first[l] = i;
        for (int k = 0; k < c->blocks[l] && !rc; k++, i++) {
            block_t *b = &r->blocks[i];
            char p[48];
            snprintf(p, sizeof p, "layer%d.%d.", l + 1, k);
            int mid = c->inner[l], out = c->out[l];
            b->stride = block_stride(l, k);
            if (c->bottleneck) {
                rc = need_conv(n, &b->conv1, p, "conv1", mid, in, 1);
                rc = rc ? rc : need_bn(n, &b->bn1, p, "bn1", mid);
                rc = rc ? rc : need_conv(n, &b->conv2, p, "conv2", mid, mid / c->groups, 3);
                rc = rc ? rc : need_bn(n, &b->bn2, p, "bn2", mid);
                rc = rc ? rc : need_conv(n, &b->conv3, p, "conv3", out, mid, 1);
                rc = rc ? rc : need_bn(n, &b->bn3, p, "bn3", out);
            } else {
                rc = need_conv(n, &b->conv1, p, "conv1", out, in, 3);
                rc = rc ? rc : need_bn(n, &b->bn1, p, "bn1", out);
                rc = rc ? rc : need_conv(n, &b->conv2, p, "conv2", out, out, 3);
                rc = rc ? rc : need_bn(n, &b->bn2, p, "bn2", out);
            }
            if (!rc && has_downsample(c, l, k, in)) {
                rc = need_conv(n, &b->ds, p, "downsample.0", out, in, 1);
                rc = rc ? rc : need_bn(n, &b->ds_bn, p, "downsample.1", out);
            }
            in = out;
        }
    }
    r->first[CLS_LAYERS] = i;
    return rc;
}

/* Names the first tensors nothing used, as torch's strict loading does. */
static int check_unused(const sdw_t *w, char *err, size_t errsz)
{
    const char **names = NULL;
    size_t k = sdw_unused(w, &names);
    if (!k)
        return 0;
    char list[400] = "";
    size_t len = 0;
    for (size_t i = 0; i < k && i < 3 && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", i ? ", " : "", names[i]);
    set_err(err, errsz, "not a torchvision ResNet of the detected shape: %zu unexpected tensor%s (%s%s)", k,
            k == 1 ? "" : "s", list, k > 3 ? ", ..." : "");
    free(names);
    return BASE_E_MODEL_LAYOUT;
}

int cls_resnet_load(cls_resnet_t **out, sdw_t *w, char *err, size_t errsz)
{
    if (!out || !w) {
        sdw_free(w);
        set_err(err, errsz, "cls_resnet_load: no weights");
        return BASE_E_INVAL;
    }
    *out = NULL;
    cls_resnet_t *r = calloc(1, sizeof *r);
    if (!r) {
        sdw_free(w);
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    r->w = w;
    int rc = cls_resnet_detect(w, &r->cfg, err, errsz);
    const cls_resnet_config_t *c = &r->cfg;
    if (!rc) {
        for (int l = 0; l < CLS_LAYERS; l++)
            r->nblocks += c->blocks[l];
        if (!(r->blocks = calloc((size_t)r->nblocks, sizeof *r->blocks))) {
            set_err(err, errsz, "out of memory");
            rc = BASE_E_NOMEM;
        }
    }
    need_t n = {w, err, errsz};
    if (!rc)
        rc = need_conv(&n, &r->conv1, "", "conv1", c->stem, 3, 7);
    if (!rc)
        rc = need_bn(&n, &r->bn1, "", "bn1", c->stem);
    if (!rc)
        rc = load_blocks(r, &n);
    if (!rc) {
        int64_t fw[2] = {c->num_classes, c->out[CLS_LAYERS - 1]}, fb = c->num_classes;
        rc = need(&n, &r->fc_w, fw, 2, "fc.weight");
        rc = rc ? rc : need(&n, &r->fc_b, &fb, 1, "fc.bias");
    }
    if (!rc)
        rc = check_unused(w, err, errsz);
    if (rc) {
        cls_resnet_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void cls_resnet_free(cls_resnet_t *r)
{
    if (!r)
        return;
    sdw_free(r->w);
    free(r->blocks);
    free(r);
}

const cls_resnet_config_t *cls_resnet_config(const cls_resnet_t *r)
{
    return r ? &r->cfg : NULL;
}

size_t cls_resnet_bytes(const cls_resnet_t *r)
{
    return r ? sdw_bytes(r->w) : 0;
}

/* ------------------------------------------------------------------ forward */

/* *x = op result, freeing the old *x; the new tensor is always taken. */
static void swap(ts_tensor_t **x, ts_tensor_t *t)
{
    ts_free(*x);
    *x = t;
}

/* out = [relu](bn(conv(x))). */
static int conv_bn(const ts_tensor_t *x, ts_tensor_t *w, const bn_t *bn, int stride, int pad, bool relu,
                   ts_tensor_t **out)
{
    ts_tensor_t *a = NULL, *t = NULL;
    int rc = ts_conv2d(&a, x, w, NULL, stride, pad);
    if (!rc && !(rc = ts_batch_norm(&t, a, bn->w, bn->b, bn->mean, bn->var, BN_EPS)))
        swap(&a, t);
    if (!rc && relu && !(rc = ts_unary(&t, a, TS_UNARY_RELU)))
        swap(&a, t);
    if (rc) {
        ts_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

static int block_forward(const cls_resnet_t *r, const block_t *b, const ts_tensor_t *x, ts_tensor_t **out)
{
    ts_tensor_t *y = NULL, *t = NULL, *id = NULL;
    int rc;
    if (r->cfg.bottleneck) {
        rc = conv_bn(x, b->conv1, &b->bn1, 1, 0, true, &y);
        if (!rc && !(rc = conv_bn(y, b->conv2, &b->bn2, b->stride, 1, true, &t)))
            swap(&y, t);
        if (!rc && !(rc = conv_bn(y, b->conv3, &b->bn3, 1, 0, false, &t)))
            swap(&y, t);
    } else {
        rc = conv_bn(x, b->conv1, &b->bn1, b->stride, 1, true, &y);
        if (!rc && !(rc = conv_bn(y, b->conv2, &b->bn2, 1, 1, false, &t)))
            swap(&y, t);
    }
    if (!rc && b->ds)
        rc = conv_bn(x, b->ds, &b->ds_bn, b->stride, 0, false, &id);
    if (!rc && !(rc = ts_add(&t, y, id ? id : x)))
        swap(&y, t);
    if (!rc && !(rc = ts_unary(&t, y, TS_UNARY_RELU)))
        swap(&y, t);
    ts_free(id);
    if (rc) {
        ts_free(y);
        return rc;
    }
    *out = y;
    return 0;
}

int cls_resnet_forward(const cls_resnet_t *r, const ts_tensor_t *x, cls_stage_t stage, ts_tensor_t **out,
                       char *err, size_t errsz)
{
    if (!r || !x || !out || stage < CLS_STAGE_STEM || stage > CLS_STAGE_LOGITS) {
        set_err(err, errsz, "cls_resnet_forward: bad arguments");
        return BASE_E_INVAL;
    }
    *out = NULL;
    if (ts_ndim(x) != 4 || ts_size(x, 1) != 3 || ts_dtype(x) != TS_F32) {
        set_err(err, errsz, "the classifier takes a float32 [batch, 3, height, width] tensor");
        return BASE_E_INVAL;
    }
    ts_tensor_t *y = NULL, *t = NULL;
    int rc = conv_bn(x, r->conv1, &r->bn1, 2, 3, true, &y);
    if (!rc && !(rc = ts_max_pool2d(&t, y, 3, 2, 1)))
        swap(&y, t);
    int layers = stage < CLS_STAGE_POOL ? (int)stage : CLS_LAYERS;
    for (int i = 0; !rc && i < r->first[layers]; i++)
        if (!(rc = block_forward(r, &r->blocks[i], y, &t)))
            swap(&y, t);
    if (!rc && stage >= CLS_STAGE_POOL && !(rc = ts_global_avg_pool(&t, y)))
        swap(&y, t);
    if (!rc && stage == CLS_STAGE_LOGITS && !(rc = ts_linear(&t, y, r->fc_w, r->fc_b)))
        swap(&y, t);
    if (rc) {
        set_err(err, errsz, "classifier forward pass: %s", ts_last_error());
        ts_free(y);
        return rc;
    }
    *out = y;
    return 0;
}
