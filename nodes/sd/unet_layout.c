/* The UNet's block structure for a config (openaimodel UNetModel, reference §2.2) and the
 * walk that names every weight with its shape in one stable order: time_embed, input_blocks,
 * middle_block, output_blocks, out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/unet_internal.h"

/* ------------------------------------------------------------------ skeleton */

static void res_init(unet_res_t *r, int cin, int cout)
{
    memset(r, 0, sizeof *r);
    r->cin = cin;
    r->cout = cout;
}

static int st_init(unet_st_t *s, const sd_unet_config_t *cfg, int c, int depth)
{
    memset(s, 0, sizeof *s);
    s->channels = c;
    s->heads = unet_heads_for(cfg, c);
    s->depth = depth;
    s->linear = cfg->linear_in_transformer;
    s->blocks = calloc((size_t)depth, sizeof *s->blocks);
    return s->blocks ? 0 : BASE_E_NOMEM;
}

static void block_free(unet_block_t *b)
{
    free(b->st.blocks);
    b->st.blocks = NULL;
}

void unet_skeleton_free(struct sd_unet_s *m)
{
    for (int i = 0; m->in_blocks && i < m->n_in; i++)
        block_free(&m->in_blocks[i]);
    for (int i = 0; m->out_blocks && i < m->n_out; i++)
        block_free(&m->out_blocks[i]);
    free(m->in_blocks);
    free(m->out_blocks);
    block_free(&m->middle);
    m->in_blocks = m->out_blocks = NULL;
    m->n_in = m->n_out = 0;
}

int unet_skeleton_new(struct sd_unet_s *m, const sd_unet_config_t *cfg)
{
    m->cfg = *cfg;
    int levels = cfg->levels, nrb = cfg->num_res_blocks, mc = cfg->model_channels;
    m->n_in = 1 + levels * nrb + (levels - 1);
    m->n_out = levels * (nrb + 1);
    m->in_blocks = calloc((size_t)m->n_in, sizeof *m->in_blocks);
    m->out_blocks = calloc((size_t)m->n_out, sizeof *m->out_blocks);
    if (!m->in_blocks || !m->out_blocks)
        goto nomem;
    /* Channel bookkeeping exactly as UNetModel.__init__: chans[] are the widths of the skips
     * the input blocks leave for the output blocks. */
    int chans[1 + 8 * 65 + 8], nch = 0, ch = mc, bi = 0;
    unet_block_t *b = &m->in_blocks[bi++];
    b->conv_kind = UNET_CONV_IN;
    chans[nch++] = ch;
    for (int l = 0; l < levels; l++) {
        int out = mc * cfg->channel_mult[l], depth = cfg->transformer_depth[l];
        for (int r = 0; r < nrb; r++) {
            b = &m->in_blocks[bi++];
            b->has_res = true;
            res_init(&b->res, ch, out);
            ch = out;
            if (depth > 0) {
                b->has_st = true;
                if (st_init(&b->st, cfg, ch, depth))
                    goto nomem;
            }
            chans[nch++] = ch;
        }
        if (l != levels - 1) {
            b = &m->in_blocks[bi++];
            b->conv_kind = UNET_CONV_DOWN;
            b->res.cout = ch; /* width of the conv, read by the walk */
            chans[nch++] = ch;
        }
    }
    m->has_middle = cfg->middle_depth >= -1;
    if (m->has_middle) {
        b = &m->middle;
        b->has_res = true;
        res_init(&b->res, ch, ch);
        if (cfg->middle_depth >= 0) {
            b->has_st = true;
            b->has_res2 = true;
            res_init(&b->res2, ch, ch);
            if (st_init(&b->st, cfg, ch, cfg->middle_depth))
                goto nomem;
        }
    }
    bi = 0;
    for (int l = levels - 1; l >= 0; l--) {
        int out = mc * cfg->channel_mult[l], depth = cfg->transformer_depth[l];
        for (int r = 0; r <= nrb; r++) {
            b = &m->out_blocks[bi++];
            int skip = chans[--nch];
            b->has_res = true;
            res_init(&b->res, ch + skip, out);
            ch = out;
            if (depth > 0) {
                b->has_st = true;
                if (st_init(&b->st, cfg, ch, depth))
                    goto nomem;
            }
            if (l > 0 && r == nrb)
                b->conv_kind = UNET_CONV_UP;
        }
    }
    return 0;
nomem:
    unet_skeleton_free(m);
    return BASE_E_NOMEM;
}

/* ------------------------------------------------------------------ walk */

typedef struct {
    unet_visit_fn fn;
    void *ctx;
    char name[256];
} walker_t;

static int visit(walker_t *k, const char *prefix, const char *suffix, ts_tensor_t **slot,
                 int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t shape[4] = {d0, d1, d2, d3};
    int n = snprintf(k->name, sizeof k->name, "%s%s", prefix, suffix);
    if (n < 0 || (size_t)n >= sizeof k->name)
        return BASE_E_INVAL;
    return k->fn(k->ctx, k->name, shape, ndim, slot);
}

/* Weight + bias of a layer: norm (1-D), linear (2-D) or conv (4-D, square kernel k). */
static int norm(walker_t *k, const char *p, const char *layer, unet_param_t *t, int c)
{
    char s[96];
    snprintf(s, sizeof s, "%s.weight", layer);
    int rc = visit(k, p, s, &t->w, 1, c, 0, 0, 0);
    snprintf(s, sizeof s, "%s.bias", layer);
    return rc ? rc : visit(k, p, s, &t->b, 1, c, 0, 0, 0);
}

static int linear(walker_t *k, const char *p, const char *layer, unet_param_t *t, int out, int in,
                  bool bias)
{
    char s[96];
    snprintf(s, sizeof s, "%s.weight", layer);
    int rc = visit(k, p, s, &t->w, 2, out, in, 0, 0);
    if (rc || !bias)
        return rc;
    snprintf(s, sizeof s, "%s.bias", layer);
    return visit(k, p, s, &t->b, 1, out, 0, 0, 0);
}

static int conv(walker_t *k, const char *p, const char *layer, unet_param_t *t, int out, int in,
                int ks)
{
    char s[96];
    snprintf(s, sizeof s, "%s.weight", layer);
    int rc = visit(k, p, s, &t->w, 4, out, in, ks, ks);
    snprintf(s, sizeof s, "%s.bias", layer);
    return rc ? rc : visit(k, p, s, &t->b, 1, out, 0, 0, 0);
}

static int walk_res(walker_t *k, const char *p, unet_res_t *r, int emb_dim)
{
    int rc;
    if ((rc = norm(k, p, "in_layers.0", &r->in_norm, r->cin)) ||
        (rc = conv(k, p, "in_layers.2", &r->in_conv, r->cout, r->cin, 3)) ||
        (rc = linear(k, p, "emb_layers.1", &r->emb, r->cout, emb_dim, true)) ||
        (rc = norm(k, p, "out_layers.0", &r->out_norm, r->cout)) ||
        (rc = conv(k, p, "out_layers.3", &r->out_conv, r->cout, r->cout, 3)))
        return rc;
    if (r->cin != r->cout)
        rc = conv(k, p, "skip_connection", &r->skip, r->cout, r->cin, 1);
    return rc;
}

static int walk_st(walker_t *k, const char *p, unet_st_t *s, int ctx_dim)
{
    int c = s->channels, rc;
    if ((rc = norm(k, p, "norm", &s->norm, c)))
        return rc;
    rc = s->linear ? linear(k, p, "proj_in", &s->proj_in, c, c, true)
                   : conv(k, p, "proj_in", &s->proj_in, c, c, 1);
    if (rc)
        return rc;
    for (int i = 0; i < s->depth; i++) {
        unet_tblock_t *t = &s->blocks[i];
        char bp[200];
        snprintf(bp, sizeof bp, "%stransformer_blocks.%d.", p, i);
        if ((rc = linear(k, bp, "attn1.to_q", &t->q1, c, c, false)) ||
            (rc = linear(k, bp, "attn1.to_k", &t->k1, c, c, false)) ||
            (rc = linear(k, bp, "attn1.to_v", &t->v1, c, c, false)) ||
            (rc = linear(k, bp, "attn1.to_out.0", &t->out1, c, c, true)) ||
            (rc = linear(k, bp, "attn2.to_q", &t->q2, c, c, false)) ||
            (rc = linear(k, bp, "attn2.to_k", &t->k2, c, ctx_dim, false)) ||
            (rc = linear(k, bp, "attn2.to_v", &t->v2, c, ctx_dim, false)) ||
            (rc = linear(k, bp, "attn2.to_out.0", &t->out2, c, c, true)) ||
            (rc = linear(k, bp, "ff.net.0.proj", &t->ff_in, 8 * c, c, true)) ||
            (rc = linear(k, bp, "ff.net.2", &t->ff_out, c, 4 * c, true)) ||
            (rc = norm(k, bp, "norm1", &t->norm1, c)) || (rc = norm(k, bp, "norm2", &t->norm2, c)) ||
            (rc = norm(k, bp, "norm3", &t->norm3, c)))
            return rc;
    }
    return s->linear ? linear(k, p, "proj_out", &s->proj_out, c, c, true)
                     : conv(k, p, "proj_out", &s->proj_out, c, c, 1);
}

/* Blocks of input_blocks / output_blocks: .0 ResBlock, .1 transformer, then the conv at the
 * next index (.0 for input conv and Downsample, which are alone in their block). */
static int walk_block(walker_t *k, const char *group, int idx, unet_block_t *b,
                      const sd_unet_config_t *cfg)
{
    char p[96];
    int sub = 0, rc;
    if (b->has_res) {
        snprintf(p, sizeof p, "%s.%d.%d.", group, idx, sub++);
        if ((rc = walk_res(k, p, &b->res, cfg->time_embed_dim)))
            return rc;
    }
    if (b->has_st) {
        snprintf(p, sizeof p, "%s.%d.%d.", group, idx, sub++);
        if ((rc = walk_st(k, p, &b->st, cfg->context_dim)))
            return rc;
    }
    if (b->has_res2) {
        snprintf(p, sizeof p, "%s.%d.%d.", group, idx, sub++);
        if ((rc = walk_res(k, p, &b->res2, cfg->time_embed_dim)))
            return rc;
    }
    /* input_blocks.0.0.weight, input_blocks.3.0.op.weight, output_blocks.2.1.conv.weight */
    char layer[32];
    snprintf(p, sizeof p, "%s.%d.", group, idx);
    switch (b->conv_kind) {
    case UNET_CONV_IN:
        snprintf(layer, sizeof layer, "%d", sub);
        return conv(k, p, layer, &b->conv, cfg->model_channels, cfg->in_channels, 3);
    case UNET_CONV_DOWN:
        snprintf(layer, sizeof layer, "%d.op", sub);
        return conv(k, p, layer, &b->conv, b->res.cout, b->res.cout, 3);
    case UNET_CONV_UP:
        snprintf(layer, sizeof layer, "%d.conv", sub);
        return conv(k, p, layer, &b->conv, b->res.cout, b->res.cout, 3);
    case UNET_CONV_NONE:
        break;
    }
    return 0;
}

int unet_walk(struct sd_unet_s *m, unet_visit_fn fn, void *ctx)
{
    const sd_unet_config_t *cfg = &m->cfg;
    walker_t k = {.fn = fn, .ctx = ctx, .name = {0}};
    int rc, mc = cfg->model_channels, ted = cfg->time_embed_dim;
    if ((rc = linear(&k, "", "time_embed.0", &m->time_in, ted, mc, true)) ||
        (rc = linear(&k, "", "time_embed.2", &m->time_out, ted, ted, true)))
        return rc;
    for (int i = 0; i < m->n_in; i++)
        if ((rc = walk_block(&k, "input_blocks", i, &m->in_blocks[i], cfg)))
            return rc;
    if (m->has_middle) {
        /* middle_block has no index level: its parts are middle_block.0/.1/.2. */
        unet_block_t *b = &m->middle;
        char p[64];
        snprintf(p, sizeof p, "middle_block.0.");
        if ((rc = walk_res(&k, p, &b->res, ted)))
            return rc;
        if (b->has_st) {
            snprintf(p, sizeof p, "middle_block.1.");
            if ((rc = walk_st(&k, p, &b->st, cfg->context_dim)))
                return rc;
            snprintf(p, sizeof p, "middle_block.2.");
            if ((rc = walk_res(&k, p, &b->res2, ted)))
                return rc;
        }
    }
    for (int i = 0; i < m->n_out; i++)
        if ((rc = walk_block(&k, "output_blocks", i, &m->out_blocks[i], cfg)))
            return rc;
    int ch = mc * cfg->channel_mult[0];
    if ((rc = norm(&k, "", "out.0", &m->out_norm, ch)) ||
        (rc = conv(&k, "", "out.2", &m->out_conv, cfg->out_channels, ch, 3)))
        return rc;
    return 0;
}
