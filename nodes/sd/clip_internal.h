/* Private to clip_text.c and clip_config.c: the CLIP text encoder's table of weights and the
 * single walk over its layout (§4.4), used both by the loader (fetching and shape-checking
 * every tensor) and by sd_clip_keys (listing names and shapes), so they cannot disagree. */
#ifndef WEFT_SD_CLIP_INTERNAL_H
#define WEFT_SD_CLIP_INTERNAL_H

#include "sd/sd.h"

#define CLIP_MAX_LAYERS 256
#define CLIP_EPS 1e-5

/* A weight and its bias, borrowed from the store (which the model owns). */
typedef struct {
    ts_tensor_t *w, *b;
} clip_wb_t;

typedef struct {
    clip_wb_t ln1, q, k, v, out, ln2, fc1, fc2;
} clip_layer_t;

typedef struct {
    ts_tensor_t *tok, *pos; /* token_embedding [vocab, hidden], position_embedding [positions, hidden] */
    clip_layer_t *layer;    /* cfg.layers entries, owned by whoever set up the walk */
    clip_wb_t final_ln;
} clip_weights_t;

/* With store set, sdw_need fetches each tensor into its slot (errors in err); otherwise cb
 * gets prefix + name and the shape. */
typedef struct {
    sdw_t *store;
    sd_key_fn cb;
    void *ctx;
    const char *prefix;
    char *err;
    size_t errsz;
} clip_walk_t;

/* Visits every tensor of cfg's layout in a fixed order; wt->layer must have cfg->layers
 * entries. */
int clip_walk(const sd_clip_config_t *cfg, clip_weights_t *wt, clip_walk_t *k);

/* Derives the config from shapes (layers, hidden, intermediate, vocab, positions) and the
 * head count from heads_meta (NULL: hidden / 64). BASE_E_MODEL_LAYOUT naming the tensor when
 * the store is not a CLIP text model, BASE_E_MODEL_FORMAT for an unusable heads_meta. */
int clip_config_detect(sdw_t *w, const char *heads_meta, sd_clip_config_t *cfg, char *err, size_t errsz);

#endif
