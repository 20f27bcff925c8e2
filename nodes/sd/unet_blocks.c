/* UNet building blocks: ResBlock (reference §2.3) and SpatialTransformer with its
 * BasicTransformerBlocks (§2.4). Every intermediate is freed as soon as it is dead: peak
 * memory is a benchmarked figure. */
#include "err.h"
#include "sd/unet_internal.h"

#define GN_GROUPS 32
#define RES_GN_EPS 1e-5
#define ST_GN_EPS 1e-6
#define LN_EPS 1e-5

/* Runs op, which leaves its result in `nx`, and replaces x by that result (freeing the old x)
 * when everything so far succeeded. */
#define STEP(rc, x, op)                                                                        \
    do {                                                                                       \
        if (!(rc)) {                                                                           \
            ts_tensor_t *nx = NULL;                                                            \
            (rc) = (op);                                                                       \
            if (!(rc)) {                                                                       \
                ts_free(x);                                                                    \
                (x) = nx;                                                                      \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* x += y, consuming y. */
static int add_into(ts_tensor_t **x, ts_tensor_t *y)
{
    ts_tensor_t *s = NULL;
    int rc = ts_add(&s, *x, y);
    ts_free(y);
    if (!rc) {
        ts_free(*x);
        *x = s;
    }
    return rc;
}

int unet_res_forward(const unet_res_t *r, const ts_tensor_t *x, const ts_tensor_t *emb_act,
                     ts_tensor_t **out)
{
    *out = NULL;
    ts_tensor_t *h = NULL, *e = NULL;
    int rc = ts_group_norm(&h, x, GN_GROUPS, r->in_norm.w, r->in_norm.b, RES_GN_EPS);
    STEP(rc, h, ts_unary(&nx, h, TS_UNARY_SILU));
    STEP(rc, h, ts_conv2d(&nx, h, r->in_conv.w, r->in_conv.b, 1, 1));
    /* The time embedding adds one value per channel: [B, C] -> [B, C, 1, 1]. */
    if (!rc)
        rc = ts_linear(&e, emb_act, r->emb.w, r->emb.b);
    if (!rc) {
        const int64_t s4[4] = {ts_size(e, 0), r->cout, 1, 1};
        STEP(rc, e, ts_reshape(&nx, e, s4, 4));
    }
    if (!rc) {
        rc = add_into(&h, e);
        e = NULL;
    }
    STEP(rc, h, ts_group_norm(&nx, h, GN_GROUPS, r->out_norm.w, r->out_norm.b, RES_GN_EPS));
    STEP(rc, h, ts_unary(&nx, h, TS_UNARY_SILU));
    STEP(rc, h, ts_conv2d(&nx, h, r->out_conv.w, r->out_conv.b, 1, 1));
    if (!rc) {
        if (r->skip.w) {
            ts_tensor_t *s = NULL;
            rc = ts_conv2d(&s, x, r->skip.w, r->skip.b, 1, 0);
            if (!rc)
                rc = add_into(&h, s);
        } else {
            STEP(rc, h, ts_add(&nx, h, x));
        }
    }
    ts_free(e);
    if (rc) {
        ts_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

/* Multi-head attention with the output projection: q from x, k/v from ctx (x itself for
 * self-attention). Result [B, N, C]. */
static int attention(const unet_tblock_t *t, bool cross, int heads, const ts_tensor_t *x,
                     const ts_tensor_t *ctx, ts_tensor_t **out)
{
    const unet_param_t *wq = cross ? &t->q2 : &t->q1, *wk = cross ? &t->k2 : &t->k1,
                       *wv = cross ? &t->v2 : &t->v1, *wo = cross ? &t->out2 : &t->out1;
    ts_tensor_t *q = NULL, *k = NULL, *v = NULL, *a = NULL;
    int rc = ts_linear(&q, x, wq->w, NULL);
    if (!rc)
        rc = ts_linear(&k, ctx, wk->w, NULL);
    if (!rc)
        rc = ts_linear(&v, ctx, wv->w, NULL);
    if (!rc)
        rc = ts_attention(&a, q, k, v, heads, false);
    ts_free(q);
    ts_free(k);
    ts_free(v);
    STEP(rc, a, ts_linear(&nx, a, wo->w, wo->b));
    if (rc) {
        ts_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* GEGLU feed-forward: proj to 8C, value = first 4C, gate = second 4C, value * GELU(gate)
 * (exact erf GELU), then Linear 4C -> C. */
static int feed_forward(const unet_tblock_t *t, int c, const ts_tensor_t *x, ts_tensor_t **out)
{
    ts_tensor_t *p = NULL, *val = NULL, *gate = NULL;
    int rc = ts_linear(&p, x, t->ff_in.w, t->ff_in.b);
    if (!rc)
        rc = ts_slice(&val, p, 2, 0, 4 * (int64_t)c);
    if (!rc)
        rc = ts_slice(&gate, p, 2, 4 * (int64_t)c, 8 * (int64_t)c);
    ts_free(p); /* the views keep the storage alive */
    STEP(rc, gate, ts_unary(&nx, gate, TS_UNARY_GELU));
    STEP(rc, gate, ts_mul(&nx, val, gate));
    ts_free(val);
    STEP(rc, gate, ts_linear(&nx, gate, t->ff_out.w, t->ff_out.b));
    if (rc) {
        ts_free(gate);
        return rc;
    }
    *out = gate;
    return 0;
}

static int tblock_forward(const unet_tblock_t *t, int c, int heads, ts_tensor_t **h,
                          const ts_tensor_t *context)
{
    ts_tensor_t *n = NULL, *o = NULL;
    int rc = ts_layer_norm(&n, *h, t->norm1.w, t->norm1.b, LN_EPS);
    if (!rc)
        rc = attention(t, false, heads, n, n, &o);
    ts_free(n);
    n = NULL;
    if (!rc)
        rc = add_into(h, o);
    if (!rc)
        rc = ts_layer_norm(&n, *h, t->norm2.w, t->norm2.b, LN_EPS);
    if (!rc)
        rc = attention(t, true, heads, n, context, &o);
    ts_free(n);
    n = NULL;
    if (!rc)
        rc = add_into(h, o);
    if (!rc)
        rc = ts_layer_norm(&n, *h, t->norm3.w, t->norm3.b, LN_EPS);
    if (!rc)
        rc = feed_forward(t, c, n, &o);
    ts_free(n);
    if (!rc)
        rc = add_into(h, o);
    return rc;
}

int unet_st_forward(const unet_st_t *s, const ts_tensor_t *x, const ts_tensor_t *context,
                    ts_tensor_t **out)
{
    *out = NULL;
    int64_t shape[TS_MAX_DIMS];
    if (ts_shape(x, shape) != 4)
        return BASE_E_INVAL;
    const int64_t b = shape[0], c = shape[1], hh = shape[2], ww = shape[3];
    const int64_t tok[3] = {b, hh * ww, c}, nhwc[4] = {b, hh, ww, c};
    static const int to_tokens[4] = {0, 2, 3, 1}, to_nchw[4] = {0, 3, 1, 2};
    ts_tensor_t *h = NULL;
    int rc = ts_group_norm(&h, x, GN_GROUPS, s->norm.w, s->norm.b, ST_GN_EPS);
    if (!s->linear)
        STEP(rc, h, ts_conv2d(&nx, h, s->proj_in.w, s->proj_in.b, 1, 0));
    /* [B, C, H, W] -> [B, H*W, C], tokens row-major over H then W (one copy). */
    STEP(rc, h, ts_permute(&nx, h, to_tokens, 4));
    STEP(rc, h, ts_reshape(&nx, h, tok, 3));
    if (s->linear)
        STEP(rc, h, ts_linear(&nx, h, s->proj_in.w, s->proj_in.b));
    for (int i = 0; !rc && i < s->depth; i++)
        rc = tblock_forward(&s->blocks[i], (int)c, s->heads, &h, context);
    if (s->linear)
        STEP(rc, h, ts_linear(&nx, h, s->proj_out.w, s->proj_out.b));
    STEP(rc, h, ts_reshape(&nx, h, nhwc, 4));
    STEP(rc, h, ts_permute(&nx, h, to_nchw, 4));
    STEP(rc, h, ts_contiguous(&nx, h));
    if (!s->linear)
        STEP(rc, h, ts_conv2d(&nx, h, s->proj_out.w, s->proj_out.b, 1, 0));
    STEP(rc, h, ts_add(&nx, h, x));
    if (rc) {
        ts_free(h);
        return rc;
    }
    *out = h;
    return 0;
}
