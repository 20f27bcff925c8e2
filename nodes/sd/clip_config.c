/* The CLIP text encoder's configs (SD1.5's ViT-L/14 text tower and the tiny demo one), its
 * layout walk (§4.4) shared by the loader and sd_clip_keys, and config detection from
 * tensor shapes plus the "clip.num_heads" metadata. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/clip_internal.h"

void sd_clip_config_sd15(sd_clip_config_t *c)
{
    *c = (sd_clip_config_t){
        .layers = 12, .hidden = 768, .heads = 12, .intermediate = 3072, .vocab = 49408, .positions = 77};
}

void sd_clip_config_tiny(sd_clip_config_t *c)
{
    *c = (sd_clip_config_t){
        .layers = 2, .hidden = 32, .heads = 2, .intermediate = 64, .vocab = 49408, .positions = 77};
}

/* ------------------------------------------------------------------ the walk */

static int visit(clip_walk_t *k, ts_tensor_t **slot, const char *name, const int64_t *shape, int nd)
{
    if (k->store)
        return sdw_need(k->store, name, shape, nd, slot, k->err, k->errsz);
    char full[256];
    int n = snprintf(full, sizeof full, "%s%s", k->prefix ? k->prefix : "", name);
    if (n < 0 || (size_t)n >= sizeof full)
        return BASE_E_INVAL;
    return k->cb(k->ctx, full, shape, nd);
}

/* <base>.weight [rows, cols] (or [rows] when cols is 0) and <base>.bias [rows]. */
static int visit_wb(clip_walk_t *k, clip_wb_t *s, int64_t rows, int64_t cols, const char *base)
{
    char name[160];
    const int64_t shape[2] = {rows, cols};
    snprintf(name, sizeof name, "%s.weight", base);
    int rc = visit(k, &s->w, name, shape, cols ? 2 : 1);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "%s.bias", base);
    return visit(k, &s->b, name, shape, 1);
}

static bool config_ok(const sd_clip_config_t *c)
{
    return c->layers >= 1 && c->layers <= CLIP_MAX_LAYERS && c->hidden > 0 && c->heads > 0 &&
           c->hidden % c->heads == 0 && c->intermediate > 0 && c->vocab > 0 && c->positions > 0;
}

int clip_walk(const sd_clip_config_t *cfg, clip_weights_t *wt, clip_walk_t *k)
{
    if (!config_ok(cfg))
        return BASE_E_INVAL;
    const int64_t h = cfg->hidden, inter = cfg->intermediate;
    const int64_t tok[2] = {cfg->vocab, h}, pos[2] = {cfg->positions, h};
    int rc;
    if ((rc = visit(k, &wt->tok, "text_model.embeddings.token_embedding.weight", tok, 2)) ||
        (rc = visit(k, &wt->pos, "text_model.embeddings.position_embedding.weight", pos, 2)))
        return rc;
    for (int i = 0; i < cfg->layers; i++) {
        clip_layer_t *l = &wt->layer[i];
        char p[96], b[128];
        snprintf(p, sizeof p, "text_model.encoder.layers.%d", i);
#define WB(slot, rows, cols, sub)                                                                            \
    do {                                                                                                     \
        snprintf(b, sizeof b, "%s.%s", p, sub);                                                              \
        if ((rc = visit_wb(k, slot, rows, cols, b)))                                                         \
            return rc;                                                                                       \
    } while (0)
        WB(&l->ln1, h, 0, "layer_norm1");
        WB(&l->q, h, h, "self_attn.q_proj");
        WB(&l->k, h, h, "self_attn.k_proj");
        WB(&l->v, h, h, "self_attn.v_proj");
        WB(&l->out, h, h, "self_attn.out_proj");
        WB(&l->ln2, h, 0, "layer_norm2");
        WB(&l->fc1, inter, h, "mlp.fc1");
        WB(&l->fc2, h, inter, "mlp.fc2");
#undef WB
    }
    return visit_wb(k, &wt->final_ln, h, 0, "text_model.final_layer_norm");
}

int sd_clip_keys(const sd_clip_config_t *cfg, const char *prefix, sd_key_fn cb, void *ctx)
{
    if (!cfg || !cb || !config_ok(cfg))
        return BASE_E_INVAL;
    clip_weights_t wt = {0};
    wt.layer = calloc((size_t)cfg->layers, sizeof *wt.layer); /* slots nobody reads */
    if (!wt.layer)
        return BASE_E_NOMEM;
    clip_walk_t k = {.store = NULL, .cb = cb, .ctx = ctx, .prefix = prefix, .err = NULL, .errsz = 0};
    int rc = clip_walk(cfg, &wt, &k);
    free(wt.layer);
    return rc;
}

/* ------------------------------------------------------------------ detection */

/* The 2-D tensor name (fetched: every tensor read here belongs to the layout), or NULL and a
 * message. */
static ts_tensor_t *peek2(sdw_t *w, const char *name, char *err, size_t errsz)
{
    ts_tensor_t *t = sdw_get(w, name);
    if (!t) {
        snprintf(err, errsz, "CLIP: tensor '%s' is missing; this is not a CLIP text encoder state dict",
                 name);
        return NULL;
    }
    if (ts_ndim(t) != 2 || ts_size(t, 0) < 1 || ts_size(t, 1) < 1) {
        snprintf(err, errsz, "CLIP: tensor '%s' must be a non-empty matrix", name);
        return NULL;
    }
    return t;
}

int clip_config_detect(sdw_t *w, const char *heads_meta, sd_clip_config_t *cfg, char *err, size_t errsz)
{
    *cfg = (sd_clip_config_t){0};
    ts_tensor_t *tok = peek2(w, "text_model.embeddings.token_embedding.weight", err, errsz);
    ts_tensor_t *pos = tok ? peek2(w, "text_model.embeddings.position_embedding.weight", err, errsz) : NULL;
    ts_tensor_t *fc1 = pos ? peek2(w, "text_model.encoder.layers.0.mlp.fc1.weight", err, errsz) : NULL;
    if (!fc1)
        return BASE_E_MODEL_LAYOUT;
    /* position_ids (0..76, I64 or F32 in the wild) is redundant: positions are always 0..76. */
    (void)sdw_get(w, "text_model.embeddings.position_ids");

    cfg->vocab = (int)ts_size(tok, 0);
    cfg->hidden = (int)ts_size(tok, 1);
    cfg->positions = (int)ts_size(pos, 0);
    cfg->intermediate = (int)ts_size(fc1, 0);
    char p[64];
    while (cfg->layers <= CLIP_MAX_LAYERS) {
        snprintf(p, sizeof p, "text_model.encoder.layers.%d.", cfg->layers);
        if (!sdw_has_prefix(w, p))
            break;
        cfg->layers++;
    }
    if (cfg->layers > CLIP_MAX_LAYERS) {
        snprintf(err, errsz, "CLIP: more than %d encoder layers", CLIP_MAX_LAYERS);
        return BASE_E_MODEL_LAYOUT;
    }
    if (cfg->positions < CLIPT_ROW) {
        snprintf(
            err, errsz,
            "CLIP: tensor 'text_model.embeddings.position_embedding.weight' has %d rows; prompts need %d",
            cfg->positions, CLIPT_ROW);
        return BASE_E_MODEL_LAYOUT;
    }
    if (cfg->vocab <= CLIPT_EOS) {
        snprintf(err, errsz,
                 "CLIP: tensor 'text_model.embeddings.token_embedding.weight' has %d rows; the CLIP "
                 "tokenizer needs %d",
                 cfg->vocab, CLIPT_EOS + 1);
        return BASE_E_MODEL_LAYOUT;
    }

    if (heads_meta) {
        char *end = NULL;
        errno = 0;
        long v = strtol(heads_meta, &end, 10);
        if (errno || end == heads_meta || *end || v < 1 || v > cfg->hidden || cfg->hidden % v) {
            snprintf(err, errsz,
                     "CLIP: metadata clip.num_heads = \"%.32s\" is not a head count dividing the width %d",
                     heads_meta, cfg->hidden);
            return BASE_E_MODEL_FORMAT;
        }
        cfg->heads = (int)v;
    } else if (cfg->hidden % 64 == 0) {
        cfg->heads = cfg->hidden / 64; /* CLIP's heads are 64 wide (12 for ViT-L/14's 768) */
    } else {
        snprintf(err, errsz,
                 "CLIP: width %d is not a multiple of 64, so the head count cannot be derived; add "
                 "\"clip.num_heads\" to the file's metadata",
                 cfg->hidden);
        return BASE_E_MODEL_FORMAT;
    }
    return 0;
}
