/* The VAE's configs (SD1.5 and the tiny demo), its layout walk (§3.2) shared by the loader
 * and sd_vae_keys, and config detection from tensor shapes (§3.1). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/vae_internal.h"

void sd_vae_config_sd15(sd_vae_config_t *c)
{
    *c = (sd_vae_config_t){0};
    c->ch = 128;
    c->levels = 4;
    c->ch_mult[0] = 1;
    c->ch_mult[1] = 2;
    c->ch_mult[2] = 4;
    c->ch_mult[3] = 4;
    c->num_res_blocks = 2;
    c->z_channels = 4;
    c->embed_dim = 4;
    c->in_channels = 3;
    c->out_ch = 3;
}

void sd_vae_config_tiny(sd_vae_config_t *c)
{
    sd_vae_config_sd15(c);
    c->ch = 32;
    c->num_res_blocks = 1;
}

/* ------------------------------------------------------------------ the walk */

static int visit(vae_walk_t *k, ts_tensor_t **slot, const char *name, const int64_t *shape, int nd)
{
    if (k->store)
        return sdw_need(k->store, name, shape, nd, slot, k->err, k->errsz);
    char full[256];
    int n = snprintf(full, sizeof full, "%s%s", k->prefix ? k->prefix : "", name);
    if (n < 0 || (size_t)n >= sizeof full)
        return BASE_E_INVAL;
    return k->cb(k->ctx, full, shape, nd);
}

/* Visits <base>.weight with wshape and <base>.bias with [wshape[0]]. */
static int visit_wb(vae_walk_t *k, vae_wb_t *s, const int64_t *wshape, int nd, const char *base)
{
    char name[240];
    snprintf(name, sizeof name, "%s.weight", base);
    int rc = visit(k, &s->w, name, wshape, nd);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "%s.bias", base);
    return visit(k, &s->b, name, wshape, 1);
}

static int norm(vae_walk_t *k, vae_wb_t *s, int64_t c, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int norm(vae_walk_t *k, vae_wb_t *s, int64_t c, const char *fmt, ...)
{
    char base[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(base, sizeof base, fmt, ap);
    va_end(ap);
    const int64_t shape[1] = {c};
    return visit_wb(k, s, shape, 1, base);
}

static int conv(vae_walk_t *k, vae_wb_t *s, int64_t co, int64_t ci, int64_t ks, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int conv(vae_walk_t *k, vae_wb_t *s, int64_t co, int64_t ci, int64_t ks, const char *fmt, ...)
{
    char base[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(base, sizeof base, fmt, ap);
    va_end(ap);
    const int64_t shape[4] = {co, ci, ks, ks};
    return visit_wb(k, s, shape, 4, base);
}

static int res(vae_walk_t *k, vae_res_t *r, int64_t cin, int64_t cout, const char *base)
{
    int rc;
    if ((rc = norm(k, &r->norm1, cin, "%s.norm1", base)) ||
        (rc = conv(k, &r->conv1, cout, cin, 3, "%s.conv1", base)) ||
        (rc = norm(k, &r->norm2, cout, "%s.norm2", base)) ||
        (rc = conv(k, &r->conv2, cout, cout, 3, "%s.conv2", base)))
        return rc;
    if (cin != cout)
        return conv(k, &r->nin, cout, cin, 1, "%s.nin_shortcut", base);
    return 0;
}

static int attn(vae_walk_t *k, vae_attn_t *a, int64_t c, const char *base)
{
    int rc;
    if ((rc = norm(k, &a->norm, c, "%s.norm", base)) || (rc = conv(k, &a->q, c, c, 1, "%s.q", base)) ||
        (rc = conv(k, &a->k, c, c, 1, "%s.k", base)) || (rc = conv(k, &a->v, c, c, 1, "%s.v", base)))
        return rc;
    return conv(k, &a->proj, c, c, 1, "%s.proj_out", base);
}

static int mid(vae_walk_t *k, vae_coder_t *m, int64_t c, const char *coder)
{
    char base[64];
    int rc;
    snprintf(base, sizeof base, "%s.mid.block_1", coder);
    if ((rc = res(k, &m->mid1, c, c, base)))
        return rc;
    snprintf(base, sizeof base, "%s.mid.attn_1", coder);
    if ((rc = attn(k, &m->attn, c, base)))
        return rc;
    snprintf(base, sizeof base, "%s.mid.block_2", coder);
    return res(k, &m->mid2, c, c, base);
}

static bool config_ok(const sd_vae_config_t *c)
{
    if (c->ch <= 0 || c->levels < 1 || c->levels > VAE_MAX_LEVELS || c->num_res_blocks < 1 ||
        c->num_res_blocks + 1 > VAE_MAX_BLOCKS || c->z_channels <= 0 || c->embed_dim <= 0 ||
        c->in_channels <= 0 || c->out_ch <= 0)
        return false;
    for (int l = 0; l < c->levels; l++)
        if (c->ch_mult[l] <= 0)
            return false;
    return true;
}

int vae_walk(const sd_vae_config_t *cfg, bool encoder, vae_weights_t *wt, vae_walk_t *k)
{
    if (!config_ok(cfg))
        return BASE_E_INVAL;
    const int64_t ch = cfg->ch, z = cfg->z_channels, e = cfg->embed_dim;
    const int levels = cfg->levels, nrb = cfg->num_res_blocks;
    const int64_t top = ch * cfg->ch_mult[levels - 1];
    char base[64];
    int rc;

    if (encoder) {
        vae_coder_t *en = &wt->enc;
        if ((rc = conv(k, &en->conv_in, ch, cfg->in_channels, 3, "encoder.conv_in")))
            return rc;
        int64_t cin = ch;
        for (int l = 0; l < levels; l++) {
            int64_t cout = ch * cfg->ch_mult[l];
            for (int b = 0; b < nrb; b++) {
                snprintf(base, sizeof base, "encoder.down.%d.block.%d", l, b);
                if ((rc = res(k, &en->block[l][b], cin, cout, base)))
                    return rc;
                cin = cout;
            }
            if (l != levels - 1 &&
                (rc = conv(k, &en->resample[l], cout, cout, 3, "encoder.down.%d.downsample.conv", l)))
                return rc;
        }
        if ((rc = mid(k, en, top, "encoder")) || (rc = norm(k, &en->norm_out, top, "encoder.norm_out")) ||
            (rc = conv(k, &en->conv_out, 2 * z, top, 3, "encoder.conv_out")) ||
            (rc = conv(k, &wt->quant, 2 * e, 2 * z, 1, "quant_conv")))
            return rc;
    }

    vae_coder_t *de = &wt->dec;
    if ((rc = conv(k, &wt->post_quant, z, e, 1, "post_quant_conv")) ||
        (rc = conv(k, &de->conv_in, top, z, 3, "decoder.conv_in")) || (rc = mid(k, de, top, "decoder")))
        return rc;
    int64_t cin = top;
    for (int l = levels - 1; l >= 0; l--) {
        int64_t cout = ch * cfg->ch_mult[l];
        for (int b = 0; b <= nrb; b++) {
            snprintf(base, sizeof base, "decoder.up.%d.block.%d", l, b);
            if ((rc = res(k, &de->block[l][b], cin, cout, base)))
                return rc;
            cin = cout;
        }
        if (l != 0 && (rc = conv(k, &de->resample[l], cout, cout, 3, "decoder.up.%d.upsample.conv", l)))
            return rc;
    }
    if ((rc = norm(k, &de->norm_out, ch, "decoder.norm_out")))
        return rc;
    return conv(k, &de->conv_out, cfg->out_ch, ch, 3, "decoder.conv_out");
}

int sd_vae_keys(const sd_vae_config_t *cfg, const char *prefix, sd_key_fn cb, void *ctx)
{
    if (!cfg || !cb)
        return BASE_E_INVAL;
    vae_weights_t *wt = calloc(1, sizeof *wt); /* slots nobody reads; the walk needs somewhere */
    if (!wt)
        return BASE_E_NOMEM;
    vae_walk_t k = {.store = NULL, .cb = cb, .ctx = ctx, .prefix = prefix, .err = NULL, .errsz = 0};
    int rc = vae_walk(cfg, true, wt, &k);
    free(wt);
    return rc;
}

/* ------------------------------------------------------------------ detection */

/* The tensor name (fetched, so it counts as used: every tensor read here is part of the
 * layout) when present with nd dimensions; else a message and NULL. */
static ts_tensor_t *peek(sdw_t *w, const char *name, int nd, char *err, size_t errsz)
{
    ts_tensor_t *t = sdw_get(w, name);
    if (!t) {
        snprintf(err, errsz, "VAE: tensor '%s' is missing; this is not an SD1.x VAE (kl-f8) state dict",
                 name);
        return NULL;
    }
    if (ts_ndim(t) != nd) {
        snprintf(err, errsz, "VAE: tensor '%s' has %d dimensions, expected %d", name, ts_ndim(t), nd);
        return NULL;
    }
    return t;
}

static int count_prefixed(const sdw_t *w, const char *fmt, int limit)
{
    char p[96];
    int n = 0;
    for (; n <= limit; n++) {
        snprintf(p, sizeof p, fmt, n);
        if (!sdw_has_prefix(w, p))
            break;
    }
    return n;
}

int vae_config_detect(sdw_t *w, sd_vae_config_t *cfg, bool *has_encoder, char *err, size_t errsz)
{
    *cfg = (sd_vae_config_t){0};
    ts_tensor_t *dec_in = peek(w, "decoder.conv_in.weight", 4, err, errsz);
    ts_tensor_t *dec_out = dec_in ? peek(w, "decoder.conv_out.weight", 4, err, errsz) : NULL;
    ts_tensor_t *post = dec_out ? peek(w, "post_quant_conv.weight", 4, err, errsz) : NULL;
    if (!post)
        return BASE_E_MODEL_LAYOUT;
    cfg->z_channels = (int)ts_size(dec_in, 1);
    cfg->out_ch = (int)ts_size(dec_out, 0);
    cfg->ch = (int)ts_size(dec_out, 1);
    cfg->embed_dim = (int)ts_size(post, 1);

    *has_encoder = sdw_has_prefix(w, "encoder.");
    cfg->in_channels = 3;
    if (*has_encoder) {
        ts_tensor_t *enc_in = peek(w, "encoder.conv_in.weight", 4, err, errsz);
        if (!enc_in)
            return BASE_E_MODEL_LAYOUT;
        cfg->in_channels = (int)ts_size(enc_in, 1);
    }

    cfg->levels = count_prefixed(w, "decoder.up.%d.", VAE_MAX_LEVELS);
    if (cfg->levels < 1 || cfg->levels > VAE_MAX_LEVELS) {
        snprintf(err, errsz, "VAE: expected 1 to %d decoder levels (decoder.up.N), found %d", VAE_MAX_LEVELS,
                 cfg->levels);
        return BASE_E_MODEL_LAYOUT;
    }
    int blocks = count_prefixed(w, "decoder.up.0.block.%d.", VAE_MAX_BLOCKS);
    if (blocks < 2 || blocks > VAE_MAX_BLOCKS) {
        snprintf(err, errsz, "VAE: expected 2 to %d ResnetBlocks in decoder.up.0, found %d", VAE_MAX_BLOCKS,
                 blocks);
        return BASE_E_MODEL_LAYOUT;
    }
    cfg->num_res_blocks = blocks - 1;

    if (cfg->ch <= 0 || cfg->ch % VAE_GROUPS) {
        snprintf(err, errsz,
                 "VAE: decoder.conv_out.weight has %d input channels; expected a positive multiple of %d",
                 cfg->ch, VAE_GROUPS);
        return BASE_E_MODEL_LAYOUT;
    }
    for (int l = 0; l < cfg->levels; l++) {
        char name[64];
        snprintf(name, sizeof name, "decoder.up.%d.block.0.conv1.weight", l);
        ts_tensor_t *t = peek(w, name, 4, err, errsz);
        if (!t)
            return BASE_E_MODEL_LAYOUT;
        int64_t c = ts_size(t, 0);
        if (c <= 0 || c % cfg->ch || c % VAE_GROUPS) {
            snprintf(err, errsz,
                     "VAE: tensor '%s' has %lld output channels; expected a multiple of the base width %d "
                     "and of %d",
                     name, (long long)c, cfg->ch, VAE_GROUPS);
            return BASE_E_MODEL_LAYOUT;
        }
        cfg->ch_mult[l] = (int)(c / cfg->ch);
    }
    if (cfg->z_channels <= 0 || cfg->embed_dim <= 0 || cfg->out_ch <= 0 || cfg->in_channels <= 0) {
        snprintf(err, errsz, "VAE: empty channel dimension in conv_in/conv_out/post_quant_conv");
        return BASE_E_MODEL_LAYOUT;
    }
    return 0;
}
