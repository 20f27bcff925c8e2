/* Private to the UNet files (unet.c, unet_config.c, unet_layout.c, unet_blocks.c): the model
 * skeleton, the walk that names every tensor of a config, and the block forward passes.
 *
 * One walk (unet_walk) visits every weight of a config in a fixed order with its name and
 * shape. The loader's visitor fetches the tensor into the skeleton slot (sdw_need); the key
 * enumerator's visitor reports the name. So the enumerated layout and the tensors the loader
 * consumes are the same list by construction. */
#ifndef WEFT_SD_UNET_INTERNAL_H
#define WEFT_SD_UNET_INTERNAL_H

#include "sd/sd.h"

/* A weight and its bias (bias NULL where the layer has none); norms, convs and linears.
 * The tensors are borrowed from the model's store. */
typedef struct {
    ts_tensor_t *w, *b;
} unet_param_t;

typedef struct {
    int cin, cout;
    unet_param_t in_norm, in_conv, emb, out_norm, out_conv;
    unet_param_t skip; /* skip.w NULL: identity (cin == cout) */
} unet_res_t;

typedef struct {
    unet_param_t norm1, norm2, norm3;
    unet_param_t q1, k1, v1, out1; /* self-attention; q/k/v have no bias */
    unet_param_t q2, k2, v2, out2; /* cross-attention; k/v read the context */
    unet_param_t ff_in, ff_out;    /* GEGLU projection [8C, C] and Linear 4C -> C */
} unet_tblock_t;

typedef struct {
    int channels, heads, depth;
    bool linear; /* proj_in/proj_out are Linear [C, C] (SD2 style), else 1x1 Conv2d */
    unet_param_t norm, proj_in, proj_out;
    unet_tblock_t *blocks; /* depth entries, owned */
} unet_st_t;

typedef enum {
    UNET_CONV_NONE,
    UNET_CONV_IN,   /* input_blocks.0.0: 3x3 pad 1 */
    UNET_CONV_DOWN, /* <p>.0.op: 3x3 stride 2 pad 1 */
    UNET_CONV_UP,   /* <p>.<k>.conv: nearest to the next skip's size, then 3x3 pad 1 */
} unet_conv_kind_t;

/* One entry of input_blocks / middle_block / output_blocks: a ResBlock, then optionally a
 * SpatialTransformer, then optionally an up/down/input conv (never all three). A middle
 * block is res, st, res2. */
typedef struct {
    bool has_res, has_st, has_res2;
    unet_res_t res, res2;
    unet_st_t st;
    unet_conv_kind_t conv_kind;
    unet_param_t conv;
} unet_block_t;

struct sd_unet_s {
    sd_unet_config_t cfg;
    sdw_t *w; /* owned; every tensor pointer below is borrowed from it */
    unet_param_t time_in, time_out;
    int n_in, n_out;
    unet_block_t *in_blocks, *out_blocks; /* owned */
    bool has_middle;
    unet_block_t middle;
    unet_param_t out_norm, out_conv;
};

/* Visitor of unet_walk: slot is where the tensor goes (never NULL). Returns 0 to go on. */
typedef int (*unet_visit_fn)(void *ctx, const char *name, const int64_t *shape, int ndim,
                             ts_tensor_t **slot);

/* Checks that cfg describes a UNet the forward pass can run (GroupNorm(32) divisibility,
 * heads dividing the widths, ranges). BASE_E_MODEL_LAYOUT with a message otherwise. */
int unet_config_check(const sd_unet_config_t *cfg, char *err, size_t errsz);
/* Heads of a SpatialTransformer of width c under cfg (num_head_channels wins when > 0). */
int unet_heads_for(const sd_unet_config_t *cfg, int c);
/* Detects the config from the shapes in w (§2.8); heads from the metadata strings. */
int unet_config_detect(sdw_t *w, const char *heads_meta, const char *head_channels_meta,
                       sd_unet_config_t *cfg, char *err, size_t errsz);

/* Allocates the skeleton of cfg into m (cfg already checked); m->w is left alone. */
int unet_skeleton_new(struct sd_unet_s *m, const sd_unet_config_t *cfg);
void unet_skeleton_free(struct sd_unet_s *m);
/* Visits every tensor of the skeleton in the stable layout order. */
int unet_walk(struct sd_unet_s *m, unet_visit_fn fn, void *ctx);

/* Block forward passes (unet_blocks.c). All inputs borrowed; *out a new reference.
 * emb_act is SiLU(time embedding) [B, time_embed_dim]. */
int unet_res_forward(const unet_res_t *r, const ts_tensor_t *x, const ts_tensor_t *emb_act,
                     ts_tensor_t **out);
int unet_st_forward(const unet_st_t *s, const ts_tensor_t *x, const ts_tensor_t *context,
                    ts_tensor_t **out);

#endif
