/* Private to vae.c and vae_config.c: the VAE's table of weights and the single walk over its
 * layout (§3.2). The loader walks with a store (fetching and shape-checking every tensor into
 * the table) and sd_vae_keys walks with a callback (listing names and shapes), so the two can
 * never disagree about the layout. */
#ifndef WEFT_SD_VAE_INTERNAL_H
#define WEFT_SD_VAE_INTERNAL_H

#include "sd/sd.h"

#define VAE_MAX_LEVELS 8
#define VAE_MAX_BLOCKS 8 /* ResnetBlocks per decoder level: num_res_blocks + 1 */
#define VAE_GROUPS 32
#define VAE_EPS 1e-6

/* A weight and its bias, borrowed from the store (which the model owns). */
typedef struct {
    ts_tensor_t *w, *b;
} vae_wb_t;

typedef struct {
    vae_wb_t norm1, conv1, norm2, conv2;
    vae_wb_t nin; /* 1x1 shortcut; w NULL when the block keeps its channel count */
} vae_res_t;

typedef struct {
    vae_wb_t norm, q, k, v, proj;
} vae_attn_t;

typedef struct {
    vae_wb_t conv_in, norm_out, conv_out;
    vae_res_t block[VAE_MAX_LEVELS][VAE_MAX_BLOCKS];
    /* Encoder: down.L.downsample.conv (all levels but the last); decoder: up.L.upsample.conv
     * (all levels but 0). w NULL where the level has none. */
    vae_wb_t resample[VAE_MAX_LEVELS];
    vae_res_t mid1, mid2;
    vae_attn_t attn;
} vae_coder_t;

typedef struct {
    bool has_encoder;
    vae_coder_t enc, dec;
    vae_wb_t quant, post_quant;
} vae_weights_t;

/* How a walk visits each tensor: with store set, sdw_need fetches it into its slot (names
 * relative to the component, errors in err); otherwise cb gets prefix + name and the shape. */
typedef struct {
    sdw_t *store;
    sd_key_fn cb;
    void *ctx;
    const char *prefix;
    char *err;
    size_t errsz;
} vae_walk_t;

/* Visits every tensor of cfg's layout in a fixed order (encoder and quant_conv only when
 * encoder is true, then post_quant_conv and the decoder). wt receives the fetched tensors. */
int vae_walk(const sd_vae_config_t *cfg, bool encoder, vae_weights_t *wt, vae_walk_t *k);

/* Derives the config from the shapes in w (§3.1: ch, levels, ch_mult, num_res_blocks,
 * z_channels, embed_dim) and whether the store has an encoder. BASE_E_MODEL_LAYOUT with a
 * message naming the tensor when the store is not a VAE of this family. */
int vae_config_detect(sdw_t *w, sd_vae_config_t *cfg, bool *has_encoder, char *err, size_t errsz);

#endif
