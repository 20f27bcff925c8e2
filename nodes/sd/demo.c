/* Demo checkpoints: a single-file SD1.5-layout .safetensors (UNet, VAE, CLIP text encoder
 * under their §1.2 prefixes, plus position_ids) filled with deterministic random weights, so
 * the whole pipeline runs without downloading a model. The layout comes from the components'
 * key enumerators, the bytes are produced tensor by tensor while streaming the file out
 * (the full size is 4.3 GB in F32). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/sd.h"

#define POSITION_IDS "cond_stage_model.transformer.text_model.embeddings.position_ids"

typedef struct {
    st_write_entry_t *e; /* names owned (strdup) */
    size_t n, cap;
    st_dtype_t dtype;
    uint64_t seed;
    float *scratch; /* float32 staging for F16 output */
    size_t scratch_cap;
} demo_t;

static int collect(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    demo_t *d = ctx;
    if (ndim < 0 || ndim > TS_MAX_DIMS)
        return BASE_E_INVAL;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 1024;
        st_write_entry_t *e = realloc(d->e, cap * sizeof *e);
        if (!e)
            return BASE_E_NOMEM;
        d->e = e;
        d->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return BASE_E_NOMEM;
    st_write_entry_t *e = &d->e[d->n++];
    *e = (st_write_entry_t){.name = copy, .dtype = d->dtype, .ndim = ndim, .shape = {0}, .data = NULL};
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

/* Per-tensor seed: splitmix64 of the run seed and the tensor's index (torch's CPU generator
 * then uses the low 32 bits). */
static uint64_t tensor_seed(uint64_t seed, size_t index)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* IEEE binary16 of f with round-to-nearest-even; overflow gives infinity, NaN stays NaN. */
static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff)
        return sign | 0x7c00 | (man ? 0x200 : 0);
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return sign | 0x7c00;
    if (e <= 0) {
        if (e < -10)
            return sign; /* below half the smallest subnormal: rounds to zero */
        man |= 0x800000; /* implicit bit; shift into the subnormal range */
        int shift = 14 - e;
        uint32_t half = man >> shift, rest = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1)))
            half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
        half++; /* a carry into the exponent is the correct rounding, up to infinity */
    return sign | (uint16_t)half;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Entry i's values as float32 into out: biases 0, norm weights (the 1-D weights) 1, other
 * weights N(0,1) / sqrt(fan_in) so activations stay bounded through the deep stacks. */
static int generate(demo_t *d, size_t i, int64_t numel, float *out, char *err, size_t errsz)
{
    const st_write_entry_t *e = &d->e[i];
    if (ends_with(e->name, ".bias") || e->ndim < 2) {
        float v = ends_with(e->name, ".bias") ? 0.0f : 1.0f;
        for (int64_t j = 0; j < numel; j++)
            out[j] = v;
        return 0;
    }
    int64_t fan_in = 1;
    for (int k = 1; k < e->ndim; k++)
        fan_in *= e->shape[k];
    const ts_device_t cpu = {TS_CPU, 0};
    ts_tensor_t *t = NULL;
    int rc = ts_randn(&t, e->shape, e->ndim, tensor_seed(d->seed, i), cpu);
    if (!rc)
        rc = ts_to_host(t, TS_F32, out, (size_t)numel * sizeof *out);
    ts_free(t);
    if (rc) {
        snprintf(err, errsz, "demo checkpoint: random weights for '%s': %s", e->name, ts_last_error());
        return rc;
    }
    const float scale = (float)(1.0 / sqrt((double)fan_in));
    for (int64_t j = 0; j < numel; j++)
        out[j] *= scale;
    return 0;
}

static int fill(void *ctx, size_t i, void *buf, size_t nbytes, char *err, size_t errsz)
{
    demo_t *d = ctx;
    const st_write_entry_t *e = &d->e[i];
    int64_t numel = 1;
    for (int k = 0; k < e->ndim; k++)
        numel *= e->shape[k];
    if (nbytes != (size_t)numel * st_dtype_size(e->dtype))
        return BASE_E_INVAL;  /* the writer and this table disagree: a bug, not bad input */
    if (e->dtype == ST_I64) { /* position_ids: 0, 1, ..., little-endian */
        uint8_t *p = buf;
        for (int64_t j = 0; j < numel; j++)
            for (int b = 0; b < 8; b++)
                p[8 * j + b] = (uint8_t)((uint64_t)j >> (8 * b));
        return 0;
    }
    if (e->dtype == ST_F32)
        return generate(d, i, numel, buf, err, errsz);
    if ((size_t)numel > d->scratch_cap) {
        float *s = realloc(d->scratch, (size_t)numel * sizeof *s);
        if (!s)
            return BASE_E_NOMEM;
        d->scratch = s;
        d->scratch_cap = (size_t)numel;
    }
    int rc = generate(d, i, numel, d->scratch, err, errsz);
    uint8_t *p = buf;
    for (int64_t j = 0; !rc && j < numel; j++) {
        uint16_t h = f32_to_f16(d->scratch[j]);
        p[2 * j] = (uint8_t)h;
        p[2 * j + 1] = (uint8_t)(h >> 8);
    }
    return rc;
}

int sd_demo_write(const char *path, sd_demo_size_t size, st_dtype_t dtype, uint64_t seed, char *err,
                  size_t errsz)
{
    if (!path || (size != SD_DEMO_TINY && size != SD_DEMO_FULL) || (dtype != ST_F32 && dtype != ST_F16)) {
        snprintf(err, errsz, "demo checkpoint: need a path, size TINY or FULL, and dtype F32 or F16");
        return BASE_E_INVAL;
    }
    sd_unet_config_t unet;
    sd_vae_config_t vae;
    sd_clip_config_t clip;
    if (size == SD_DEMO_TINY) {
        sd_unet_config_tiny(&unet);
        sd_vae_config_tiny(&vae);
        sd_clip_config_tiny(&clip);
        /* One attention head per transformer: with 8 heads of 4 channels the 4096-token
         * softmax at 512x512 dominated the demo's time (about 4x slower per step). */
        unet.num_heads = 1;
    } else {
        sd_unet_config_sd15(&unet);
        sd_vae_config_sd15(&vae);
        sd_clip_config_sd15(&clip);
    }
    demo_t d = {.e = NULL, .n = 0, .cap = 0, .dtype = dtype, .seed = seed, .scratch = NULL, .scratch_cap = 0};
    int rc = sd_unet_keys(&unet, "model.diffusion_model.", collect, &d);
    if (!rc)
        rc = sd_vae_keys(&vae, "first_stage_model.", collect, &d);
    if (!rc)
        rc = sd_clip_keys(&clip, "cond_stage_model.transformer.", collect, &d);
    const int64_t pos_shape[2] = {1, CLIPT_ROW};
    if (!rc && !(rc = collect(&d, POSITION_IDS, pos_shape, 2)))
        d.e[d.n - 1].dtype = ST_I64;
    if (rc) {
        snprintf(err, errsz, "demo checkpoint: cannot list the layout (%s)", base_strerror(rc));
    } else {
        char unet_heads[16], clip_heads[16];
        snprintf(unet_heads, sizeof unet_heads, "%d", unet.num_heads);
        snprintf(clip_heads, sizeof clip_heads, "%d", clip.heads);
        const char *meta[] = {"weft.demo",
                              size == SD_DEMO_TINY ? "tiny" : "full",
                              "unet.num_heads",
                              unet_heads,
                              "clip.num_heads",
                              clip_heads,
                              "modelspec.title",
                              "weft demo (random weights)",
                              NULL};
        rc = st_write_stream(path, d.e, d.n, meta, fill, &d, err, errsz);
    }
    for (size_t i = 0; i < d.n; i++)
        free((char *)d.e[i].name);
    free(d.e);
    free(d.scratch);
    return rc;
}
