/* The SD1.x VAE (AutoencoderKL "kl-f8", §3): loading from a weights store and the encode /
 * decode passes over the tensor shim. Intermediates are freed as soon as they are dead: at
 * 512x512 a single decoder activation is 128-256 MiB per image. */
#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "sd/vae_internal.h"

struct sd_vae_s {
    sd_vae_config_t cfg;
    sdw_t *store; /* owns every tensor in wt */
    vae_weights_t wt;
};

/* ------------------------------------------------------------------ loading */

int sd_vae_load(sd_vae_t **out, sdw_t *w, char *err, size_t errsz)
{
    if (!out || !w) {
        sdw_free(w);
        snprintf(err, errsz, "VAE: no weights given");
        return BASE_E_INVAL;
    }
    *out = NULL;
    sd_vae_t *v = calloc(1, sizeof *v);
    if (!v) {
        sdw_free(w);
        return BASE_E_NOMEM;
    }
    v->store = w;
    bool has_encoder = false;
    int rc = vae_config_detect(w, &v->cfg, &has_encoder, err, errsz);
    if (!rc) {
        vae_walk_t k = {.store = w, .cb = NULL, .ctx = NULL, .prefix = NULL, .err = err, .errsz = errsz};
        v->wt.has_encoder = has_encoder;
        rc = vae_walk(&v->cfg, has_encoder, &v->wt, &k);
    }
    if (rc) {
        sd_vae_free(v);
        return rc;
    }
    const char **extra = NULL;
    size_t n = sdw_unused(w, &extra);
    if (n)
        BASE_LOG(WARN, "VAE: %zu tensor(s) in the file are not used (ignored), e.g. '%s'", n, extra[0]);
    free(extra);
    *out = v;
    return 0;
}

void sd_vae_free(sd_vae_t *v)
{
    if (!v)
        return;
    sdw_free(v->store);
    free(v);
}

const sd_vae_config_t *sd_vae_config(const sd_vae_t *v)
{
    return v ? &v->cfg : NULL;
}

const sdw_t *sd_vae_weights(const sd_vae_t *v)
{
    return v ? v->store : NULL;
}

/* ------------------------------------------------------------------ layers */

typedef struct {
    const char *what; /* "VAE decode" / "VAE encode" */
    char *err;
    size_t errsz;
} run_t;

static int fail(const run_t *r, int rc, const char *op)
{
    snprintf(r->err, r->errsz, "%s: %s failed: %s", r->what, op, ts_last_error());
    return rc;
}

/* Frees *x and puts next in its place (the "x = f(x)" of the passes below). */
static void adopt(ts_tensor_t **x, ts_tensor_t *next)
{
    ts_free(*x);
    *x = next;
}

static int conv(const run_t *r, const ts_tensor_t *x, const vae_wb_t *c, int stride, int pad,
                ts_tensor_t **out)
{
    int rc = ts_conv2d(out, x, c->w, c->b, stride, pad);
    return rc ? fail(r, rc, "conv2d") : 0;
}

/* GroupNorm(32, eps 1e-6), then SiLU when silu. */
static int norm(const run_t *r, const ts_tensor_t *x, const vae_wb_t *n, bool silu, ts_tensor_t **out)
{
    ts_tensor_t *t = NULL;
    int rc = ts_group_norm(&t, x, VAE_GROUPS, n->w, n->b, VAE_EPS);
    if (rc)
        return fail(r, rc, "group_norm");
    if (!silu) {
        *out = t;
        return 0;
    }
    rc = ts_unary(out, t, TS_UNARY_SILU);
    ts_free(t);
    return rc ? fail(r, rc, "silu") : 0;
}

/* ResnetBlock: shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))). */
static int resblock(const run_t *r, const ts_tensor_t *x, const vae_res_t *b, ts_tensor_t **out)
{
    ts_tensor_t *h = NULL, *t = NULL, *s = NULL;
    int rc;
    if ((rc = norm(r, x, &b->norm1, true, &h)) || (rc = conv(r, h, &b->conv1, 1, 1, &t)))
        goto done;
    adopt(&h, t);
    if ((rc = norm(r, h, &b->norm2, true, &t)))
        goto done;
    adopt(&h, t);
    if ((rc = conv(r, h, &b->conv2, 1, 1, &t)))
        goto done;
    adopt(&h, t);
    if (b->nin.w) {
        if ((rc = conv(r, x, &b->nin, 1, 0, &s)))
            goto done;
        rc = ts_add(out, s, h);
    } else {
        rc = ts_add(out, x, h);
    }
    if (rc)
        rc = fail(r, rc, "add");
done:
    ts_free(h);
    ts_free(s);
    return rc;
}

/* [B, C, H, W] -> [B, H*W, C] token view (row-major over H then W). */
static int to_tokens(const run_t *r, const ts_tensor_t *x, ts_tensor_t **out)
{
    int64_t s[TS_MAX_DIMS];
    ts_shape(x, s);
    const int64_t flat[3] = {s[0], s[1], s[2] * s[3]};
    const int perm[3] = {0, 2, 1};
    ts_tensor_t *t = NULL;
    int rc = ts_reshape(&t, x, flat, 3);
    if (!rc)
        rc = ts_permute(out, t, perm, 3);
    ts_free(t);
    return rc ? fail(r, rc, "reshape") : 0;
}

/* Mid-block AttnBlock: x + proj_out(attention(q, k, v)) with one head over H*W tokens; the
 * 1/sqrt(C) scale is ts_attention's d^-0.5 with d = C. */
static int attention(const run_t *r, const ts_tensor_t *x, const vae_attn_t *a, ts_tensor_t **out)
{
    int64_t s[TS_MAX_DIMS];
    ts_shape(x, s);
    ts_tensor_t *h = NULL, *q = NULL, *k = NULL, *v = NULL, *t = NULL;
    int rc;
    if ((rc = norm(r, x, &a->norm, false, &h)))
        goto done;
    if ((rc = conv(r, h, &a->q, 1, 0, &t)) || (rc = to_tokens(r, t, &q)))
        goto done;
    adopt(&t, NULL);
    if ((rc = conv(r, h, &a->k, 1, 0, &t)) || (rc = to_tokens(r, t, &k)))
        goto done;
    adopt(&t, NULL);
    if ((rc = conv(r, h, &a->v, 1, 0, &t)) || (rc = to_tokens(r, t, &v)))
        goto done;
    adopt(&t, NULL);
    adopt(&h, NULL);
    if ((rc = ts_attention(&h, q, k, v, 1, false))) {
        rc = fail(r, rc, "attention");
        goto done;
    }
    adopt(&q, NULL);
    adopt(&k, NULL);
    adopt(&v, NULL);
    const int perm[3] = {0, 2, 1};
    if ((rc = ts_permute(&t, h, perm, 3))) {
        rc = fail(r, rc, "permute");
        goto done;
    }
    adopt(&h, NULL);
    if ((rc = ts_reshape(&h, t, s, 4))) {
        rc = fail(r, rc, "reshape");
        goto done;
    }
    adopt(&t, NULL);
    if ((rc = conv(r, h, &a->proj, 1, 0, &t)))
        goto done;
    if ((rc = ts_add(out, x, t)))
        rc = fail(r, rc, "add");
done:
    ts_free(h);
    ts_free(q);
    ts_free(k);
    ts_free(v);
    ts_free(t);
    return rc;
}

/* Nearest x2, then the 3x3 conv. */
static int upsample(const run_t *r, const ts_tensor_t *x, const vae_wb_t *c, ts_tensor_t **out)
{
    ts_tensor_t *t = NULL;
    int rc = ts_interpolate(&t, x, 2 * ts_size(x, 2), 2 * ts_size(x, 3), TS_INTERP_NEAREST);
    if (rc)
        return fail(r, rc, "nearest upsample");
    rc = conv(r, t, c, 1, 1, out);
    ts_free(t);
    return rc;
}

/* §3.2: pad right and bottom by one, then a 3x3 stride-2 conv without padding (the UNet's
 * downsample pads symmetrically instead). */
static int downsample(const run_t *r, const ts_tensor_t *x, const vae_wb_t *c, ts_tensor_t **out)
{
    ts_tensor_t *t = NULL;
    int rc = ts_pad2d(&t, x, 0, 1, 0, 1, 0.0);
    if (rc)
        return fail(r, rc, "pad");
    rc = conv(r, t, c, 2, 0, out);
    ts_free(t);
    return rc;
}

/* Channels [0, n) of the moments [mean, logvar], as their own tensor. */
static int first_channels(const run_t *r, const ts_tensor_t *x, int n, ts_tensor_t **out)
{
    ts_tensor_t *t = NULL;
    int rc = ts_slice(&t, x, 1, 0, n);
    if (!rc)
        rc = ts_contiguous(out, t);
    ts_free(t);
    return rc ? fail(r, rc, "slice") : 0;
}

/* Applies layer(x) and replaces x with the result. */
#define STEP(call)                                                                                           \
    do {                                                                                                     \
        ts_tensor_t *next_ = NULL;                                                                           \
        if ((rc = (call)))                                                                                   \
            goto done;                                                                                       \
        adopt(&x, next_);                                                                                    \
    } while (0)
#define OUT (&next_)

static int mid_block(const run_t *r, const vae_coder_t *c, ts_tensor_t **xp)
{
    ts_tensor_t *x = *xp;
    int rc = 0;
    STEP(resblock(r, x, &c->mid1, OUT));
    STEP(attention(r, x, &c->attn, OUT));
    STEP(resblock(r, x, &c->mid2, OUT));
done:
    *xp = x;
    return rc;
}

static int decode_pass(const run_t *r, const sd_vae_t *m, const ts_tensor_t *z, ts_tensor_t **img)
{
    const sd_vae_config_t *cfg = &m->cfg;
    const vae_coder_t *d = &m->wt.dec;
    ts_tensor_t *x = NULL;
    int rc = conv(r, z, &m->wt.post_quant, 1, 0, &x);
    if (rc)
        return rc;
    STEP(conv(r, x, &d->conv_in, 1, 1, OUT));
    if ((rc = mid_block(r, d, &x)))
        goto done;
    for (int l = cfg->levels - 1; l >= 0; l--) {
        for (int b = 0; b <= cfg->num_res_blocks; b++)
            STEP(resblock(r, x, &d->block[l][b], OUT));
        if (l != 0)
            STEP(upsample(r, x, &d->resample[l], OUT));
    }
    STEP(norm(r, x, &d->norm_out, true, OUT));
    STEP(conv(r, x, &d->conv_out, 1, 1, OUT));
    *img = x;
    return 0;
done:
    ts_free(x);
    return rc;
}

static int encode_pass(const run_t *r, const sd_vae_t *m, const ts_tensor_t *img, ts_tensor_t **mean)
{
    const sd_vae_config_t *cfg = &m->cfg;
    const vae_coder_t *e = &m->wt.enc;
    ts_tensor_t *x = NULL;
    int rc = conv(r, img, &e->conv_in, 1, 1, &x);
    if (rc)
        return rc;
    for (int l = 0; l < cfg->levels; l++) {
        for (int b = 0; b < cfg->num_res_blocks; b++)
            STEP(resblock(r, x, &e->block[l][b], OUT));
        if (l != cfg->levels - 1)
            STEP(downsample(r, x, &e->resample[l], OUT));
    }
    if ((rc = mid_block(r, e, &x)))
        goto done;
    STEP(norm(r, x, &e->norm_out, true, OUT));
    STEP(conv(r, x, &e->conv_out, 1, 1, OUT));
    STEP(conv(r, x, &m->wt.quant, 1, 0, OUT));
    /* ComfyUI's VAEEncode keeps the mean, not a sample of the posterior. */
    STEP(first_channels(r, x, cfg->embed_dim, OUT));
    *mean = x;
    return 0;
done:
    ts_free(x);
    return rc;
}

#undef STEP
#undef OUT

/* x as float32 (a new reference) after checking it is [B, channels, H, W] with H and W
 * multiples of mult. */
static int check_input(const run_t *r, const ts_tensor_t *x, int channels, int64_t mult, const char *name,
                       ts_tensor_t **out)
{
    int64_t s[TS_MAX_DIMS];
    if (!x || ts_shape(x, s) != 4 || s[0] < 1 || s[1] != channels || s[2] < 1 || s[3] < 1 || s[2] % mult ||
        s[3] % mult) {
        snprintf(r->err, r->errsz,
                 "%s: expected %s of shape [batch, %d, height, width] with height and width positive "
                 "multiples of %lld",
                 r->what, name, channels, (long long)mult);
        return BASE_E_INVAL;
    }
    if (ts_dtype(x) == TS_F32) {
        *out = ts_ref((ts_tensor_t *)x);
        return 0;
    }
    const ts_device_t cpu = {TS_CPU, 0};
    int rc = ts_to(out, x, TS_F32, cpu);
    return rc ? fail(r, rc, "conversion to float32") : 0;
}

int sd_vae_decode(const sd_vae_t *v, const ts_tensor_t *z, ts_tensor_t **img, char *err, size_t errsz)
{
    run_t r = {.what = "VAE decode", .err = err, .errsz = errsz};
    if (!v || !img) {
        snprintf(err, errsz, "VAE decode: no model or output");
        return BASE_E_INVAL;
    }
    *img = NULL;
    ts_tensor_t *x = NULL;
    int rc = check_input(&r, z, v->cfg.embed_dim, 1, "a latent", &x);
    if (rc)
        return rc;
    rc = decode_pass(&r, v, x, img);
    ts_free(x);
    return rc;
}

int sd_vae_encode(const sd_vae_t *v, const ts_tensor_t *img, ts_tensor_t **mean, char *err, size_t errsz)
{
    run_t r = {.what = "VAE encode", .err = err, .errsz = errsz};
    if (!v || !mean) {
        snprintf(err, errsz, "VAE encode: no model or output");
        return BASE_E_INVAL;
    }
    *mean = NULL;
    if (!v->wt.has_encoder) {
        snprintf(err, errsz,
                 "VAE encode: this VAE has no encoder (its file holds only the decoder); load a full VAE "
                 "with encoder.* weights to encode images");
        return BASE_E_MODEL_LAYOUT;
    }
    ts_tensor_t *x = NULL;
    int rc = check_input(&r, img, v->cfg.in_channels, (int64_t)1 << (v->cfg.levels - 1), "an image", &x);
    if (rc)
        return rc;
    rc = encode_pass(&r, v, x, mean);
    ts_free(x);
    return rc;
}
