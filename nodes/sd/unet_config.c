/* UNet configs: the SD1.5 and tiny demo configs, the check that a config can run, detection
 * of the config from a checkpoint's shapes (reference §2.8) and the key enumerator. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/unet_internal.h"

#define GN_GROUPS 32
#define MAX_DEPTH 64    /* transformer blocks per SpatialTransformer; SDXL uses 10 */
#define MAX_HEADS 4096

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

void sd_unet_config_sd15(sd_unet_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->in_channels = 4;
    c->out_channels = 4;
    c->model_channels = 320;
    c->time_embed_dim = 1280;
    c->levels = 4;
    const int mult[4] = {1, 2, 4, 4}, depth[4] = {1, 1, 1, 0};
    for (int i = 0; i < 4; i++) {
        c->channel_mult[i] = mult[i];
        c->transformer_depth[i] = depth[i];
    }
    c->num_res_blocks = 2;
    c->middle_depth = 1;
    c->context_dim = 768;
    c->num_heads = 8;
    c->num_head_channels = -1;
    c->linear_in_transformer = false;
}

void sd_unet_config_tiny(sd_unet_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->in_channels = 4;
    c->out_channels = 4;
    c->model_channels = 32;
    c->time_embed_dim = 128;
    c->levels = 2;
    c->channel_mult[0] = 1;
    c->channel_mult[1] = 2;
    c->transformer_depth[0] = 1;
    c->transformer_depth[1] = 1;
    c->num_res_blocks = 1;
    c->middle_depth = 1;
    c->context_dim = 32;
    c->num_heads = 8;
    c->num_head_channels = -1;
    c->linear_in_transformer = false;
}

int unet_heads_for(const sd_unet_config_t *cfg, int c)
{
    return cfg->num_head_channels > 0 ? c / cfg->num_head_channels : cfg->num_heads;
}

/* A transformer of width c: heads must split c evenly. */
static int check_heads(const sd_unet_config_t *cfg, int c, const char *where, char *err,
                       size_t errsz)
{
    if (cfg->num_head_channels > 0) {
        if (c % cfg->num_head_channels)
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet %s has %d channels, not a multiple of num_head_channels %d", where,
                        c, cfg->num_head_channels);
    } else if (c % cfg->num_heads) {
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet %s has %d channels, which %d attention heads cannot split evenly; set "
                    "the \"unet.num_heads\" metadata to a divisor of %d",
                    where, c, cfg->num_heads, c);
    }
    return 0;
}

int unet_config_check(const sd_unet_config_t *cfg, char *err, size_t errsz)
{
    if (!cfg)
        return fail(err, errsz, BASE_E_INVAL, "no UNet config");
    if (cfg->in_channels < 1 || cfg->out_channels < 1 || cfg->time_embed_dim < 1)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet in/out channels and time embedding width must be positive");
    if (cfg->model_channels < 1 || cfg->model_channels % GN_GROUPS)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet model_channels %d is not a positive multiple of %d (GroupNorm groups)",
                    cfg->model_channels, GN_GROUPS);
    if (cfg->levels < 1 || cfg->levels > 8)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet has %d levels; 1..8 are supported",
                    cfg->levels);
    if (cfg->num_res_blocks < 1 || cfg->num_res_blocks > 64)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet num_res_blocks %d is outside 1..64", cfg->num_res_blocks);
    if (cfg->num_head_channels <= 0 && (cfg->num_heads < 1 || cfg->num_heads > MAX_HEADS))
        return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet num_heads %d is outside 1..%d",
                    cfg->num_heads, MAX_HEADS);
    if (cfg->middle_depth < -2 || cfg->middle_depth > MAX_DEPTH)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet middle transformer depth %d is not supported",
                    cfg->middle_depth);
    bool any_st = cfg->middle_depth > 0;
    for (int l = 0; l < cfg->levels; l++) {
        int m = cfg->channel_mult[l], d = cfg->transformer_depth[l];
        /* Channel counts are model_channels * mult, so divisibility by 32 holds for every
         * GroupNorm, including the skip concatenations. */
        if (m < 1 || m > 64)
            return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet channel_mult[%d] = %d is outside 1..64",
                        l, m);
        if (d < 0 || d > MAX_DEPTH)
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet transformer depth %d at level %d is outside 0..%d", d, l, MAX_DEPTH);
        if (d > 0) {
            char where[32];
            snprintf(where, sizeof where, "level %d", l);
            int rc = check_heads(cfg, cfg->model_channels * m, where, err, errsz);
            if (rc)
                return rc;
            any_st = true;
        }
    }
    if (cfg->middle_depth > 0) {
        int rc = check_heads(cfg, cfg->model_channels * cfg->channel_mult[cfg->levels - 1],
                             "middle block", err, errsz);
        if (rc)
            return rc;
    }
    if (any_st && cfg->context_dim < 1)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet context_dim must be positive");
    return 0;
}

/* ------------------------------------------------------------------ detection (§2.8) */

/* Shape of a tensor of w (marking it used: every tensor looked at here is one the forward
 * pass needs). Returns ndim, or -1 when absent. */
static int shape_of(sdw_t *w, int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int shape_of(sdw_t *w, int64_t *shape, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    ts_tensor_t *t = sdw_get(w, name);
    if (!t)
        return -1;
    return ts_shape(t, shape);
}

static bool has(const sdw_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool has(const sdw_t *w, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sdw_has_prefix(w, name);
}

/* Number of consecutive "<block>.transformer_blocks.<n>." indices. */
static int count_tblocks(const sdw_t *w, const char *block)
{
    int n = 0;
    while (n <= MAX_DEPTH && has(w, "%s.transformer_blocks.%d.", block, n))
        n++;
    return n;
}

/* Positive decimal integer metadata; *out untouched when s is NULL. */
static int parse_meta(const char *s, const char *key, int *out, char *err, size_t errsz)
{
    if (!s)
        return 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > MAX_HEADS)
        return fail(err, errsz, BASE_E_MODEL_FORMAT,
                    "checkpoint metadata \"%s\" is \"%s\"; expected a whole number 1..%d", key,
                    s, MAX_HEADS);
    *out = (int)v;
    return 0;
}

/* The transformer seen first gives context_dim and the proj_in kind. */
static int note_transformer(sdw_t *w, const char *block, sd_unet_config_t *cfg, bool *seen,
                            char *err, size_t errsz)
{
    if (*seen)
        return 0;
    int64_t s[TS_MAX_DIMS];
    if (shape_of(w, s, "%s.transformer_blocks.0.attn2.to_k.weight", block) != 2)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet tensor '%s.transformer_blocks.0.attn2.to_k.weight' is missing or not 2-D",
                    block);
    int nd = shape_of(w, s + 2, "%s.proj_in.weight", block);
    if (nd != 2 && nd != 4)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet tensor '%s.proj_in.weight' is missing or neither a Linear nor a 1x1 conv",
                    block);
    if (s[1] < 1 || s[1] > (1 << 20))
        return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet context width %lld is not supported",
                    (long long)s[1]);
    cfg->context_dim = (int)s[1];
    cfg->linear_in_transformer = nd == 2;
    *seen = true;
    return 0;
}

int unet_config_detect(sdw_t *w, const char *heads_meta, const char *head_channels_meta,
                       sd_unet_config_t *cfg, char *err, size_t errsz)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->num_heads = 8;
    cfg->num_head_channels = -1;
    int hc = -1, rc;
    if ((rc = parse_meta(heads_meta, "unet.num_heads", &cfg->num_heads, err, errsz)) ||
        (rc = parse_meta(head_channels_meta, "unet.num_head_channels", &hc, err, errsz)))
        return rc;
    if (hc > 0) {
        cfg->num_head_channels = hc;
        cfg->num_heads = -1;
    }

    /* A class/ADM embedding (SDXL's pooled-text and size conditioning) changes the time
     * embedding; running without it would give wrong output silently. */
    if (has(w, "label_emb."))
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "this UNet has a class/ADM embedding ('label_emb.*', e.g. SDXL); only SD1.x/"
                    "SD2.x-style UNets are supported");
    int64_t s[TS_MAX_DIMS];
    if (shape_of(w, s, "input_blocks.0.0.weight") != 4)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "not a UNet: tensor 'input_blocks.0.0.weight' (the input conv) is missing or "
                    "not 4-D");
    if (s[0] < 1 || s[0] > 65536 || s[1] < 1 || s[1] > 65536)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet input conv shape is not supported");
    int mc = (int)s[0];
    cfg->model_channels = mc;
    cfg->in_channels = (int)s[1];
    if (shape_of(w, s, "out.2.weight") != 4 || s[0] < 1 || s[0] > 65536)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet tensor 'out.2.weight' (the output conv) is missing or not 4-D");
    cfg->out_channels = (int)s[0];
    if (shape_of(w, s, "time_embed.0.weight") != 2 || s[0] < 1 || s[0] > 1 << 20)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet tensor 'time_embed.0.weight' is missing or not 2-D");
    cfg->time_embed_dim = (int)s[0];

    /* Walk the input blocks: ResBlocks (with an optional transformer) fill a level, a
     * Downsample closes it. */
    int res_in_level = 0, level = 0, res_per_level = -1;
    bool seen_st = false;
    char block[64];
    for (int i = 1;; i++) {
        if (!has(w, "input_blocks.%d.", i))
            break;
        snprintf(block, sizeof block, "input_blocks.%d", i);
        if (has(w, "%s.0.op.", block)) {
            if (res_in_level == 0)
                return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                            "UNet %s is a Downsample with no ResBlock before it in its level",
                            block);
            if (res_per_level >= 0 && res_per_level != res_in_level)
                return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                            "UNet levels have different ResBlock counts (%d and %d); not supported",
                            res_per_level, res_in_level);
            res_per_level = res_in_level;
            res_in_level = 0;
            if (++level >= 8)
                return fail(err, errsz, BASE_E_MODEL_LAYOUT, "UNet has more than 8 levels");
            continue;
        }
        if (!has(w, "%s.0.in_layers.", block))
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet %s is neither a ResBlock nor a Downsample", block);
        if (shape_of(w, s, "%s.0.out_layers.3.weight", block) != 4)
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet tensor '%s.0.out_layers.3.weight' is missing or not 4-D", block);
        if (s[0] % mc || s[0] / mc < 1 || s[0] / mc > 64)
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet %s has %lld output channels, not a multiple 1..64 of model_channels %d",
                        block, (long long)s[0], mc);
        int mult = (int)(s[0] / mc);
        char st[80];
        snprintf(st, sizeof st, "%s.1", block);
        int depth = count_tblocks(w, st);
        if (depth > 0 && (rc = note_transformer(w, st, cfg, &seen_st, err, errsz)))
            return rc;
        if (res_in_level == 0) {
            cfg->channel_mult[level] = mult;
            cfg->transformer_depth[level] = depth;
        } else if (cfg->channel_mult[level] != mult || cfg->transformer_depth[level] != depth) {
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet %s differs from the other ResBlocks of level %d (width or transformer "
                        "depth); not supported",
                        block, level);
        }
        res_in_level++;
    }
    if (res_in_level == 0)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    level == 0 ? "UNet has no input ResBlocks ('input_blocks.1.' missing)"
                               : "UNet input blocks end with a Downsample");
    if (res_per_level >= 0 && res_per_level != res_in_level)
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet levels have different ResBlock counts (%d and %d); not supported",
                    res_per_level, res_in_level);
    cfg->levels = level + 1;
    cfg->num_res_blocks = res_in_level;

    /* Middle: ResBlock, SpatialTransformer, ResBlock; or one ResBlock (-1); or none (-2). */
    int md = count_tblocks(w, "middle_block.1");
    if (md > 0) {
        if ((rc = note_transformer(w, "middle_block.1", cfg, &seen_st, err, errsz)))
            return rc;
        cfg->middle_depth = md;
    } else if (has(w, "middle_block.1.") || has(w, "middle_block.2.")) {
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet middle_block.1 is not a SpatialTransformer; not supported");
    } else {
        cfg->middle_depth = has(w, "middle_block.0.") ? -1 : -2;
    }

    /* Output blocks: levels * (num_res_blocks + 1), deepest level first, transformer depth as
     * on the way down. */
    int per = cfg->num_res_blocks + 1, n_out = cfg->levels * per;
    for (int j = 0; j < n_out; j++) {
        int l = cfg->levels - 1 - j / per;
        if (!has(w, "output_blocks.%d.", j))
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet tensors 'output_blocks.%d.*' are missing (expected %d output blocks "
                        "for %d levels of %d ResBlocks)",
                        j, n_out, cfg->levels, cfg->num_res_blocks);
        char st[64];
        snprintf(st, sizeof st, "output_blocks.%d.1", j);
        int d = count_tblocks(w, st);
        if (d != cfg->transformer_depth[l])
            return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                        "UNet output_blocks.%d has transformer depth %d but level %d has %d on the "
                        "way down; not supported",
                        j, d, l, cfg->transformer_depth[l]);
    }
    if (has(w, "output_blocks.%d.", n_out))
        return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                    "UNet has more than the %d output blocks its input blocks imply", n_out);
    if (!seen_st)
        cfg->context_dim = 0;
    return unet_config_check(cfg, err, errsz);
}

/* ------------------------------------------------------------------ key enumerator */

typedef struct {
    const char *prefix;
    sd_key_fn cb;
    void *ctx;
} keys_ctx_t;

static int keys_visit(void *ctx, const char *name, const int64_t *shape, int ndim, ts_tensor_t **slot)
{
    (void)slot;
    keys_ctx_t *k = ctx;
    char full[512];
    int n = snprintf(full, sizeof full, "%s%s", k->prefix, name);
    if (n < 0 || (size_t)n >= sizeof full)
        return BASE_E_INVAL;
    return k->cb(k->ctx, full, shape, ndim);
}

/* Returns 0 after the last key, the callback's value when it stops the walk, BASE_E_INVAL
 * for a config the forward pass could not run, BASE_E_NOMEM. */
int sd_unet_keys(const sd_unet_config_t *cfg, const char *prefix, sd_key_fn cb, void *ctx)
{
    if (!cfg || !cb)
        return BASE_E_INVAL;
    if (unet_config_check(cfg, NULL, 0))
        return BASE_E_INVAL;
    struct sd_unet_s m;
    memset(&m, 0, sizeof m);
    int rc = unet_skeleton_new(&m, cfg);
    if (!rc) {
        keys_ctx_t k = {.prefix = prefix ? prefix : "", .cb = cb, .ctx = ctx};
        rc = unet_walk(&m, keys_visit, &k);
    }
    unet_skeleton_free(&m);
    return rc;
}
