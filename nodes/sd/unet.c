/* The SD1.5 UNet (openaimodel UNetModel, reference §2): loading a store into the block
 * skeleton, the timestep embedding and the eps-prediction forward pass. The structure lives
 * in unet_layout.c, detection in unet_config.c, the blocks in unet_blocks.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "sd/unet_internal.h"

#define GN_GROUPS 32
#define OUT_GN_EPS 1e-5
#define MAX_PERIOD 10000.0

static int fail(char *err, size_t errsz, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errsz, int code, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ------------------------------------------------------------------ loading */

typedef struct {
    sdw_t *w;
    char *err;
    size_t errsz;
} load_ctx_t;

static int load_visit(void *ctx, const char *name, const int64_t *shape, int ndim, ts_tensor_t **slot)
{
    load_ctx_t *l = ctx;
    return sdw_need(l->w, name, shape, ndim, slot, l->err, l->errsz);
}

int sd_unet_load(sd_unet_t **out, sdw_t *w, const char *heads_meta, const char *head_channels_meta,
                 char *err, size_t errsz)
{
    if (err && errsz)
        err[0] = '\0';
    if (!out || !w) {
        sdw_free(w);
        return fail(err, errsz, BASE_E_INVAL, "sd_unet_load: no output or no weights");
    }
    *out = NULL;
    sd_unet_t *u = calloc(1, sizeof *u);
    if (!u) {
        sdw_free(w);
        return fail(err, errsz, BASE_E_NOMEM, "out of memory loading the UNet");
    }
    u->w = w;
    sd_unet_config_t cfg;
    int rc = unet_config_detect(w, heads_meta, head_channels_meta, &cfg, err, errsz);
    if (!rc && (rc = unet_skeleton_new(u, &cfg)))
        fail(err, errsz, rc, "out of memory loading the UNet");
    if (!rc) {
        load_ctx_t l = {.w = w, .err = err, .errsz = errsz};
        rc = unet_walk(u, load_visit, &l);
    }
    if (rc) {
        sd_unet_free(u);
        return rc;
    }
    const char **extra = NULL;
    size_t n = sdw_unused(w, &extra);
    if (n)
        BASE_LOG(WARN, "UNet: the checkpoint has %zu tensor(s) the model does not use (first: '%s'); "
                       "ignored",
                 n, extra ? extra[0] : "?");
    free(extra);
    *out = u;
    return 0;
}

void sd_unet_free(sd_unet_t *u)
{
    if (!u)
        return;
    unet_skeleton_free(u);
    sdw_free(u->w);
    free(u);
}

const sd_unet_config_t *sd_unet_config(const sd_unet_t *u)
{
    return u ? &u->cfg : NULL;
}

const sdw_t *sd_unet_weights(const sd_unet_t *u)
{
    return u ? u->w : NULL;
}

/* ------------------------------------------------------------------ timestep embedding */

/* float32 throughout, in the order torch evaluates exp(-ln(10000) * arange(half) / half)
 * and t * freqs. The exponential goes through ATen's exp, whose vectorised float kernel
 * differs from a correctly rounded expf by an ulp for about a third of the frequencies; t up
 * to 999 turns that ulp into 6e-5 of phase, so using it keeps ComfyUI's exact values. */
int sd_timestep_embedding(const ts_tensor_t *timesteps, int dim, ts_tensor_t **out)
{
    if (!out)
        return BASE_E_INVAL;
    *out = NULL;
    if (!timesteps || ts_ndim(timesteps) != 1 || dim < 1 || dim > (1 << 20))
        return BASE_E_INVAL;
    int64_t b = ts_size(timesteps, 0);
    if (b < 1 || b > (1 << 20))
        return BASE_E_INVAL;
    int half = dim / 2;
    float *t = malloc((size_t)b * sizeof *t);
    float *f = malloc((size_t)(half ? half : 1) * sizeof *f);
    float *e = calloc((size_t)b * (size_t)dim, sizeof *e);
    int rc = t && f && e ? 0 : BASE_E_NOMEM;
    if (!rc)
        rc = ts_to_host(timesteps, TS_F32, t, (size_t)b * sizeof *t);
    if (!rc && half > 0) {
        const float neg_log = (float)-log(MAX_PERIOD);
        for (int i = 0; i < half; i++)
            f[i] = neg_log * (float)i / (float)half;
        ts_tensor_t *ft = NULL, *ex = NULL;
        const int64_t n[1] = {half};
        rc = ts_from_host(&ft, f, TS_F32, n, 1, (ts_device_t){TS_CPU, 0});
        if (!rc)
            rc = ts_unary(&ex, ft, TS_UNARY_EXP);
        if (!rc)
            rc = ts_to_host(ex, TS_F32, f, (size_t)half * sizeof *f);
        ts_free(ft);
        ts_free(ex);
    }
    if (!rc) {
        for (int i = 0; i < half; i++) {
            for (int64_t r = 0; r < b; r++) {
                float arg = t[r] * f[i];
                e[r * dim + i] = cosf(arg);
                e[r * dim + half + i] = sinf(arg);
            }
        }
        /* an odd dim leaves the last column zero */
        const int64_t shape[2] = {b, dim};
        rc = ts_from_host(out, e, TS_F32, shape, 2, ts_device(timesteps));
    }
    free(t);
    free(f);
    free(e);
    return rc;
}

/* ------------------------------------------------------------------ forward */

/* One input/middle/output block. up_h/up_w: target size of an Upsample (the next skip's).
 * x is borrowed; *out is new. */
static int block_forward(const unet_block_t *b, const ts_tensor_t *x, const ts_tensor_t *emb_act,
                         const ts_tensor_t *context, int64_t up_h, int64_t up_w, ts_tensor_t **out)
{
    ts_tensor_t *h = NULL, *t = NULL;
    int rc = 0;
    if (b->has_res)
        rc = unet_res_forward(&b->res, x, emb_act, &h);
    if (!rc && b->has_st) {
        rc = unet_st_forward(&b->st, h ? h : x, context, &t);
        ts_free(h);
        h = t;
        t = NULL;
    }
    if (!rc && b->has_res2) {
        rc = unet_res_forward(&b->res2, h ? h : x, emb_act, &t);
        ts_free(h);
        h = t;
        t = NULL;
    }
    if (!rc && b->conv_kind != UNET_CONV_NONE) {
        const ts_tensor_t *in = h ? h : x;
        switch (b->conv_kind) {
        case UNET_CONV_IN:
            rc = ts_conv2d(&t, in, b->conv.w, b->conv.b, 1, 1);
            break;
        case UNET_CONV_DOWN:
            rc = ts_conv2d(&t, in, b->conv.w, b->conv.b, 2, 1);
            break;
        case UNET_CONV_UP: {
            /* nearest to the size of the skip this output joins (odd latent sizes) */
            ts_tensor_t *up = NULL;
            rc = ts_interpolate(&up, in, up_h, up_w, TS_INTERP_NEAREST);
            if (!rc)
                rc = ts_conv2d(&t, up, b->conv.w, b->conv.b, 1, 1);
            ts_free(up);
            break;
        }
        case UNET_CONV_NONE:
            break;
        }
        ts_free(h);
        h = t;
    }
    if (rc) {
        ts_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

static void shape_str(const ts_tensor_t *t, char *buf, size_t n)
{
    int64_t s[TS_MAX_DIMS];
    int nd = t ? ts_shape(t, s) : -1;
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)s[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

static int check_inputs(const sd_unet_t *u, const ts_tensor_t *x, const ts_tensor_t *ts,
                        const ts_tensor_t *ctx, char *err, size_t errsz)
{
    const sd_unet_config_t *c = &u->cfg;
    char got[128];
    int64_t s[TS_MAX_DIMS];
    if (!x || ts_shape(x, s) != 4 || s[1] != c->in_channels || s[0] < 1 || s[2] < 1 || s[3] < 1) {
        shape_str(x, got, sizeof got);
        return fail(err, errsz, BASE_E_INVAL,
                    "UNet input must be [batch, %d, height, width], got %s", c->in_channels, got);
    }
    int64_t b = s[0];
    if (!ts || ts_ndim(ts) != 1 || ts_size(ts, 0) != b) {
        shape_str(ts, got, sizeof got);
        return fail(err, errsz, BASE_E_INVAL, "UNet timesteps must be [%lld], got %s",
                    (long long)b, got);
    }
    if (c->context_dim > 0 &&
        (!ctx || ts_shape(ctx, s) != 3 || s[0] != b || s[1] < 1 || s[2] != c->context_dim)) {
        shape_str(ctx, got, sizeof got);
        return fail(err, errsz, BASE_E_INVAL,
                    "UNet context must be [%lld, tokens, %d], got %s", (long long)b,
                    c->context_dim, got);
    }
    return 0;
}

static int time_embed(const sd_unet_t *u, const ts_tensor_t *timesteps, ts_tensor_t **emb_act)
{
    ts_tensor_t *e = NULL, *h = NULL;
    int rc = sd_timestep_embedding(timesteps, u->cfg.model_channels, &e);
    if (!rc)
        rc = ts_linear(&h, e, u->time_in.w, u->time_in.b);
    ts_free(e);
    e = NULL;
    if (!rc)
        rc = ts_unary(&e, h, TS_UNARY_SILU);
    ts_free(h);
    h = NULL;
    if (!rc)
        rc = ts_linear(&h, e, u->time_out.w, u->time_out.b);
    ts_free(e);
    e = NULL;
    /* Every ResBlock applies SiLU to the embedding first: do it once. */
    if (!rc)
        rc = ts_unary(&e, h, TS_UNARY_SILU);
    ts_free(h);
    *emb_act = e;
    return rc;
}

int sd_unet_forward(const sd_unet_t *u, const ts_tensor_t *x, const ts_tensor_t *timesteps,
                    const ts_tensor_t *context, ts_tensor_t **eps, char *err, size_t errsz)
{
    if (err && errsz)
        err[0] = '\0';
    if (!eps || !u)
        return fail(err, errsz, BASE_E_INVAL, "sd_unet_forward: no model or no output");
    *eps = NULL;
    int rc = check_inputs(u, x, timesteps, context, err, errsz);
    if (rc)
        return rc;
    ts_tensor_t *emb = NULL, *h = NULL, *t = NULL;
    /* skips[i] is the output of input block i; the output blocks pop them in reverse. */
    ts_tensor_t **skips = calloc((size_t)u->n_in, sizeof *skips);
    int n = 0;
    if (!skips)
        return fail(err, errsz, BASE_E_NOMEM, "out of memory running the UNet");
    rc = time_embed(u, timesteps, &emb);
    for (int i = 0; !rc && i < u->n_in; i++) {
        rc = block_forward(&u->in_blocks[i], i ? skips[i - 1] : x, emb, context, 0, 0, &skips[i]);
        if (!rc)
            n = i + 1;
    }
    if (!rc && u->has_middle)
        rc = block_forward(&u->middle, skips[n - 1], emb, context, 0, 0, &h);
    else if (!rc)
        h = ts_ref(skips[n - 1]);
    for (int j = 0; !rc && j < u->n_out; j++) {
        ts_tensor_t *pair[2] = {h, skips[n - 1]};
        rc = ts_cat(&t, pair, 2, 1);
        ts_free(h);
        ts_free(skips[--n]);
        skips[n] = NULL;
        h = t;
        t = NULL;
        if (rc)
            break;
        int64_t uh = 0, uw = 0;
        if (n > 0) {
            uh = ts_size(skips[n - 1], 2);
            uw = ts_size(skips[n - 1], 3);
        }
        rc = block_forward(&u->out_blocks[j], h, emb, context, uh, uw, &t);
        ts_free(h);
        h = t;
        t = NULL;
    }
    if (!rc) {
        rc = ts_group_norm(&t, h, GN_GROUPS, u->out_norm.w, u->out_norm.b, OUT_GN_EPS);
        ts_free(h);
        h = NULL;
        if (!rc)
            rc = ts_unary(&h, t, TS_UNARY_SILU);
        ts_free(t);
        t = NULL;
        if (!rc)
            rc = ts_conv2d(&t, h, u->out_conv.w, u->out_conv.b, 1, 1);
        ts_free(h);
        h = t;
    }
    for (int i = 0; i < n; i++)
        ts_free(skips[i]);
    free(skips);
    ts_free(emb);
    if (rc) {
        ts_free(h);
        return fail(err, errsz, rc, "UNet forward pass failed: %s",
                    rc == BASE_E_NOMEM ? "out of memory" : ts_last_error());
    }
    *eps = h;
    return 0;
}
