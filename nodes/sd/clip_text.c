/* The CLIP text encoder (HF CLIPTextModel layout, §4.4) with clip skip (§4.5) and ComfyUI's
 * prompt weighting against the empty prompt (§4.3): loading from a weights store and the
 * batched forward pass over the tensor shim. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "sd/clip_internal.h"

struct sd_clip_s {
    sd_clip_config_t cfg;
    sdw_t *store; /* owns every tensor in wt */
    clip_weights_t wt;
};

/* ------------------------------------------------------------------ loading */

int sd_clip_load(sd_clip_t **out, sdw_t *w, const char *heads_meta, char *err, size_t errsz)
{
    if (!out || !w) {
        sdw_free(w);
        snprintf(err, errsz, "CLIP: no weights given");
        return BASE_E_INVAL;
    }
    *out = NULL;
    sd_clip_t *c = calloc(1, sizeof *c);
    if (!c) {
        sdw_free(w);
        return BASE_E_NOMEM;
    }
    c->store = w;
    int rc = clip_config_detect(w, heads_meta, &c->cfg, err, errsz);
    if (!rc) {
        c->wt.layer = calloc((size_t)c->cfg.layers, sizeof *c->wt.layer);
        if (!c->wt.layer) {
            rc = BASE_E_NOMEM;
        } else {
            clip_walk_t k = {.store = w, .cb = NULL, .ctx = NULL, .prefix = NULL, .err = err, .errsz = errsz};
            rc = clip_walk(&c->cfg, &c->wt, &k);
        }
    }
    if (rc) {
        sd_clip_free(c);
        return rc;
    }
    const char **extra = NULL;
    size_t n = sdw_unused(w, &extra);
    if (n)
        BASE_LOG(WARN, "CLIP: %zu tensor(s) in the file are not used (ignored), e.g. '%s'", n, extra[0]);
    free(extra);
    *out = c;
    return 0;
}

void sd_clip_free(sd_clip_t *c)
{
    if (!c)
        return;
    sdw_free(c->store);
    free(c->wt.layer);
    free(c);
}

const sd_clip_config_t *sd_clip_config(const sd_clip_t *c)
{
    return c ? &c->cfg : NULL;
}

const sdw_t *sd_clip_weights(const sd_clip_t *c)
{
    return c ? c->store : NULL;
}

/* ------------------------------------------------------------------ forward */

typedef struct {
    char *err;
    size_t errsz;
} run_t;

static int fail(const run_t *r, int rc, const char *op)
{
    snprintf(r->err, r->errsz, "CLIP encode: %s failed: %s", op, ts_last_error());
    return rc;
}

/* x + f where f is consumed. */
static int add_into(const run_t *r, ts_tensor_t **x, ts_tensor_t *f)
{
    ts_tensor_t *t = NULL;
    int rc = ts_add(&t, *x, f);
    ts_free(f);
    if (rc)
        return fail(r, rc, "add");
    ts_free(*x);
    *x = t;
    return 0;
}

static int linear(const run_t *r, const ts_tensor_t *x, const clip_wb_t *l, ts_tensor_t **out)
{
    int rc = ts_linear(out, x, l->w, l->b);
    return rc ? fail(r, rc, "linear") : 0;
}

static int layer_norm(const run_t *r, const ts_tensor_t *x, const clip_wb_t *n, ts_tensor_t **out)
{
    int rc = ts_layer_norm(out, x, n->w, n->b, CLIP_EPS);
    return rc ? fail(r, rc, "layer_norm") : 0;
}

/* x += out_proj(causal MHA(layer_norm1(x))) */
static int attn_block(const run_t *r, const clip_layer_t *l, int heads, ts_tensor_t **x)
{
    ts_tensor_t *h = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL, *o = NULL;
    int rc;
    if ((rc = layer_norm(r, *x, &l->ln1, &h)) || (rc = linear(r, h, &l->q, &q)) ||
        (rc = linear(r, h, &l->k, &k)) || (rc = linear(r, h, &l->v, &v)))
        goto done;
    if ((rc = ts_attention(&a, q, k, v, heads, true))) {
        rc = fail(r, rc, "attention");
        goto done;
    }
    if (!(rc = linear(r, a, &l->out, &o))) {
        rc = add_into(r, x, o);
        o = NULL;
    }
done:
    ts_free(h);
    ts_free(q);
    ts_free(k);
    ts_free(v);
    ts_free(a);
    ts_free(o);
    return rc;
}

/* x += fc2(quick_gelu(fc1(layer_norm2(x)))) */
static int mlp_block(const run_t *r, const clip_layer_t *l, ts_tensor_t **x)
{
    ts_tensor_t *h = NULL, *t = NULL;
    int rc;
    if ((rc = layer_norm(r, *x, &l->ln2, &h)) || (rc = linear(r, h, &l->fc1, &t)))
        goto done;
    ts_free(h);
    h = NULL;
    if ((rc = ts_unary(&h, t, TS_UNARY_QUICK_GELU))) {
        rc = fail(r, rc, "quick_gelu");
        goto done;
    }
    ts_free(t);
    t = NULL;
    if (!(rc = linear(r, h, &l->fc2, &t))) {
        rc = add_into(r, x, t);
        t = NULL;
    }
done:
    ts_free(h);
    ts_free(t);
    return rc;
}

/* Runs every layer over ids [R, 77]: *last = final_layer_norm(output of the last layer),
 * *skip = final_layer_norm(output of layer index `stop`) (the same tensor when stop is the
 * last layer). */
static int forward(const run_t *r, const sd_clip_t *c, const ts_tensor_t *ids, int stop, ts_tensor_t **last,
                   ts_tensor_t **skip)
{
    const sd_clip_config_t *cfg = &c->cfg;
    ts_tensor_t *x = NULL, *pos = NULL, *kept = NULL;
    int rc;
    if ((rc = ts_embedding(&x, c->wt.tok, ids))) {
        rc = fail(r, rc, "embedding");
        goto done;
    }
    if ((rc = ts_slice(&pos, c->wt.pos, 0, 0, CLIPT_ROW))) {
        rc = fail(r, rc, "slice");
        goto done;
    }
    if ((rc = add_into(r, &x, pos)))
        goto done;
    pos = NULL;
    for (int i = 0; i < cfg->layers; i++) {
        if ((rc = attn_block(r, &c->wt.layer[i], cfg->heads, &x)) || (rc = mlp_block(r, &c->wt.layer[i], &x)))
            goto done;
        if (i == stop && i != cfg->layers - 1)
            kept = ts_ref(x);
    }
    if ((rc = layer_norm(r, x, &c->wt.final_ln, last)))
        goto done;
    if (!kept)
        *skip = ts_ref(*last);
    else if ((rc = layer_norm(r, kept, &c->wt.final_ln, skip))) {
        ts_free(*last);
        *last = NULL;
    }
done:
    ts_free(x);
    ts_free(pos);
    ts_free(kept);
    return rc;
}

/* The pooled output: row 0 of last at the first EOS of ids row 0 (position 0 when there is
 * none, as argmax over an all-false mask gives), as its own [1, hidden] tensor. */
static int pooled_at_eos(const run_t *r, const ts_tensor_t *last, const int64_t *ids, int hidden,
                         ts_tensor_t **pooled)
{
    int p = 0;
    while (p < CLIPT_ROW && ids[p] != CLIPT_EOS)
        p++;
    if (p == CLIPT_ROW)
        p = 0;
    float *buf = malloc((size_t)CLIPT_ROW * (size_t)hidden * sizeof *buf);
    if (!buf)
        return BASE_E_NOMEM;
    ts_tensor_t *row = NULL;
    int rc = ts_slice(&row, last, 0, 0, 1);
    if (!rc)
        rc = ts_to_host(row, TS_F32, buf, (size_t)CLIPT_ROW * (size_t)hidden * sizeof *buf);
    ts_free(row);
    if (!rc) {
        const int64_t shape[2] = {1, hidden};
        const ts_device_t cpu = {TS_CPU, 0};
        rc = ts_from_host(pooled, buf + (size_t)p * (size_t)hidden, TS_F32, shape, 2, cpu);
    }
    free(buf);
    return rc ? fail(r, rc, "pooled output") : 0;
}

/* ComfyUI's weighting: z[k][j] = (z[k][j] - z_empty[j]) * w + z_empty[j] for every token with
 * w != 1, in float32 steps like torch; rows k < n of z [n + 1, 77, hidden] (the empty row is
 * last). Result [1, 77 n, hidden]. */
static int apply_weights(const run_t *r, const ts_tensor_t *z, const float *weights, size_t n, int hidden,
                         ts_tensor_t **cond)
{
    const size_t per_row = (size_t)CLIPT_ROW * (size_t)hidden;
    float *buf = malloc((n + 1) * per_row * sizeof *buf);
    if (!buf)
        return BASE_E_NOMEM;
    int rc = ts_to_host(z, TS_F32, buf, (n + 1) * per_row * sizeof *buf);
    if (!rc) {
        const float *empty = buf + n * per_row;
        for (size_t k = 0; k < n; k++) {
            for (size_t j = 0; j < CLIPT_ROW; j++) {
                float w = weights[k * CLIPT_ROW + j];
                if (w == 1.0f)
                    continue;
                float *zr = buf + k * per_row + j * (size_t)hidden;
                const float *er = empty + j * (size_t)hidden;
                for (int i = 0; i < hidden; i++) {
                    float d = zr[i] - er[i];
                    float s = d * w;
                    zr[i] = s + er[i];
                }
            }
        }
        const int64_t shape[3] = {1, (int64_t)(n * CLIPT_ROW), hidden};
        const ts_device_t cpu = {TS_CPU, 0};
        rc = ts_from_host(cond, buf, TS_F32, shape, 3, cpu);
    }
    free(buf);
    return rc ? fail(r, rc, "weighting") : 0;
}

int sd_clip_encode(const sd_clip_t *c, const clipt_rows_t *rows, int layer_idx, ts_tensor_t **cond,
                   ts_tensor_t **pooled, char *err, size_t errsz)
{
    run_t r = {.err = err, .errsz = errsz};
    if (!c || !rows || !cond || !pooled || (rows->rows && (!rows->ids || !rows->weights)) ||
        rows->rows > 4096) {
        snprintf(err, errsz, "CLIP encode: missing model, token rows or output");
        return BASE_E_INVAL;
    }
    *cond = *pooled = NULL;
    const sd_clip_config_t *cfg = &c->cfg;
    /* layer_idx < 0 counts from the end; past the first layer means "last" as in ComfyUI. */
    int stop = layer_idx < 0 ? cfg->layers + layer_idx : layer_idx;
    if (layer_idx < -cfg->layers)
        stop = cfg->layers - 1;
    if (stop >= cfg->layers) {
        snprintf(err, errsz, "CLIP encode: layer %d does not exist; the model has %d layers (use -1 to -%d)",
                 layer_idx, cfg->layers, cfg->layers);
        return BASE_E_INVAL;
    }

    const size_t n = rows->rows;
    bool weighted = n == 0;
    for (size_t i = 0; i < n * CLIPT_ROW && !weighted; i++)
        weighted = rows->weights[i] != 1.0f;
    /* The empty prompt [BOS, EOS, pad x 75] goes last in the same batch. */
    const size_t total = n + (weighted ? 1 : 0);
    int64_t *ids = malloc(total * CLIPT_ROW * sizeof *ids);
    if (!ids)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < n * CLIPT_ROW; i++) {
        if (rows->ids[i] < 0 || rows->ids[i] >= cfg->vocab) {
            snprintf(err, errsz, "CLIP encode: token id %d is outside the vocabulary (0..%d)",
                     (int)rows->ids[i], cfg->vocab - 1);
            free(ids);
            return BASE_E_INVAL;
        }
        ids[i] = rows->ids[i];
    }
    if (weighted) {
        int64_t *e = ids + n * CLIPT_ROW;
        e[0] = CLIPT_BOS;
        for (int j = 1; j < CLIPT_ROW; j++)
            e[j] = CLIPT_EOS;
    }

    ts_tensor_t *tids = NULL, *last = NULL, *z = NULL;
    const int64_t shape[2] = {(int64_t)total, CLIPT_ROW};
    const ts_device_t cpu = {TS_CPU, 0};
    int rc = ts_from_host(&tids, ids, TS_I64, shape, 2, cpu);
    if (rc) {
        rc = fail(&r, rc, "token ids");
        goto done;
    }
    if ((rc = forward(&r, c, tids, stop, &last, &z)) ||
        (rc = pooled_at_eos(&r, last, ids, cfg->hidden, pooled)))
        goto done;
    if (n == 0) {
        /* Nothing to encode: ComfyUI returns the empty prompt's encoding. */
        *cond = ts_ref(z);
    } else if (weighted) {
        rc = apply_weights(&r, z, rows->weights, n, cfg->hidden, cond);
    } else {
        const int64_t flat[3] = {1, (int64_t)(n * CLIPT_ROW), cfg->hidden};
        if ((rc = ts_reshape(cond, z, flat, 3)))
            rc = fail(&r, rc, "reshape");
    }
    if (rc) {
        ts_free(*pooled);
        *pooled = NULL;
    }
done:
    free(ids);
    ts_free(tids);
    ts_free(last);
    ts_free(z);
    return rc;
}
