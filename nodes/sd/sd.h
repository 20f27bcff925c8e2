/* Stable Diffusion 1.5 for weft: safetensors files, the weights store, the CLIP tokenizer,
 * the CLIP text encoder, the UNet, the VAE, the noise schedule, schedulers and samplers, and
 * the random "demo" checkpoint. The nodes that expose them (nodes/sd/node_*.c) use only this
 * header, nodes.h and the tensor shim. References: ../shared/docs/sd15-reference.md (§ below).
 *
 * Prefixes: st_ safetensors files, sdw_ weights store, clipt_ tokenizer, sd_clip_ text
 * encoder, sd_unet_ UNet, sd_vae_ VAE, sd_sched_ schedule and schedulers, sd_sampler_ samplers,
 * sd_demo_ demo checkpoints.
 *
 * Errors: every function returns 0 or a negative base_err_t code; where a message buffer is
 * given (char *err, size_t errsz) it receives a sentence a user can act on ("tensor
 * 'model.diffusion_model.out.2.weight' has shape [4,32,3,3], expected [4,320,3,3]").
 * Threads: loaded models are immutable and may be used by several threads at once; a
 * tokenizer likewise. Nothing here aborts on bad input. */
#ifndef WEFT_SD_H
#define WEFT_SD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

/* ================================================================== safetensors (§1.1) */

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32, ST_I64,
    ST_U64, ST_F64, ST_F8_E4M3, ST_F8_E5M2,
} st_dtype_t;

typedef struct {
    const char *name;   /* borrowed from the file object */
    st_dtype_t dtype;
    int ndim;           /* 0..TS_MAX_DIMS */
    int64_t shape[TS_MAX_DIMS];
    int64_t numel;
    const void *data;   /* into the mapping; NOT necessarily aligned */
    size_t nbytes;
} st_tensor_t;

typedef struct st_file_s st_file_t;

/* Opens and memory-maps a .safetensors file, validating everything before returning: header
 * length (<= 100,000,000 and inside the file), JSON well-formed, starts with '{', every entry
 * has a known dtype, a shape of non-negative dims (<= TS_MAX_DIMS, numel without overflow),
 * data_offsets within the buffer, END-BEGIN == numel*size, no overlaps, no holes, no duplicate
 * names, __metadata__ a flat string->string object. BASE_E_MODEL_FORMAT with a message in err
 * for any violation; BASE_E_NOENT/BASE_E_IO for file errors. *out is owned by the caller
 * (st_close). The mapping lives until the file object AND every tensor made from it with
 * st_to_tensor are gone (refcounted). */
int st_open(st_file_t **out, const char *path, char *err, size_t errsz);
/* Same from a caller-owned memory buffer (copied); for tests and fuzzing. */
int st_open_mem(st_file_t **out, const void *bytes, size_t len, char *err, size_t errsz);
void st_close(st_file_t *f); /* NULL is fine */
size_t st_count(const st_file_t *f);
const st_tensor_t *st_at(const st_file_t *f, size_t i); /* in header order */
const st_tensor_t *st_find(const st_file_t *f, const char *name); /* NULL when absent */
/* Value of a __metadata__ key (borrowed), NULL when absent. */
const char *st_meta(const st_file_t *f, const char *key);
/* A tensor for entry e of f, in float32 on CPU (the compute dtype; §1.3): F32 data that is
 * 4-byte aligned is wrapped without copying (keeping the mapping alive), F16/BF16/F64/ints
 * are converted. Other dtypes give BASE_E_MODEL_FORMAT. */
int st_to_tensor(st_file_t *f, const st_tensor_t *e, ts_tensor_t **out, char *err, size_t errsz);

/* Writer (demo checkpoints, tests): tensors are written in the order given, header padded
 * with spaces to a multiple of 8, atomically (temp file + rename). data is host memory of
 * numel * size bytes. meta_kv is a NULL-terminated key, value, key, value... list or NULL. */
typedef struct {
    const char *name;
    st_dtype_t dtype;
    int ndim;
    int64_t shape[TS_MAX_DIMS];
    const void *data;
} st_write_entry_t;
int st_write(const char *path, const st_write_entry_t *entries, size_t n, const char *const *meta_kv,
             char *err, size_t errsz);
/* The same file, for outputs too big to hold in memory (the full demo checkpoint): the
 * header comes from entries (their data pointers are ignored), then fill(ctx, i, buf,
 * nbytes) produces the nbytes of entry i into buf, in order; a non-zero return from fill
 * aborts the write (no file is left behind) and is returned. (nodes/sd/safetensors_stream.c) */
typedef int (*st_fill_fn)(void *ctx, size_t i, void *buf, size_t nbytes, char *err, size_t errsz);
int st_write_stream(const char *path, const st_write_entry_t *entries, size_t n, const char *const *meta_kv,
                    st_fill_fn fill, void *ctx, char *err, size_t errsz);
size_t st_dtype_size(st_dtype_t d);
const char *st_dtype_name(st_dtype_t d);

/* ================================================================== weights store */

/* The tensors of one model component (UNet, VAE or CLIP) under a key prefix, as float32 CPU
 * tensors, with a "used" mark per tensor so a loader can prove it consumed everything. */
typedef struct sdw_s sdw_t;

/* Collects every tensor of f whose name starts with prefix (the prefix is stripped from the
 * names in the store). Applies the §1.2 normalisations for CLIP ("transformer." without
 * "text_model." gets it inserted) and VAE attention weights stored as [C,C] (reshaped to
 * [C,C,1,1]). The store keeps f's mapping alive through its tensors; f may be closed after. */
int sdw_from_file(sdw_t **out, st_file_t *f, const char *prefix, char *err, size_t errsz);
/* An empty store, filled by sdw_put (tests, demo models). */
int sdw_new(sdw_t **out);
int sdw_put(sdw_t *w, const char *name, ts_tensor_t *t); /* takes the reference */
void sdw_free(sdw_t *w);
size_t sdw_count(const sdw_t *w);
/* Borrowed tensor, marking it used; NULL when absent. */
ts_tensor_t *sdw_get(sdw_t *w, const char *name);
/* Like sdw_get, but a missing tensor or one whose shape differs from shape[0..ndim) (a -1
 * entry matches any size) is BASE_E_MODEL_LAYOUT with a message naming the tensor. */
int sdw_need(sdw_t *w, const char *name, const int64_t *shape, int ndim, ts_tensor_t **out,
             char *err, size_t errsz);
/* printf-style name helpers for model code: sdw_needf(w, &t, err, errsz, "%s.weight", p). */
ts_tensor_t *sdw_getf(sdw_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool sdw_has_prefix(const sdw_t *w, const char *prefix);
/* Names never fetched (malloc'ed array of borrowed names; caller frees the array). */
size_t sdw_unused(const sdw_t *w, const char ***names);
/* Total bytes of the stored tensors. */
size_t sdw_bytes(const sdw_t *w);
/* Calls cb for every tensor in insertion order (borrowed name and tensor, not marked used);
 * a non-zero return from cb stops the walk and is returned. */
typedef int (*sdw_each_fn)(void *ctx, const char *name, ts_tensor_t *t);
int sdw_each(const sdw_t *w, sdw_each_fn cb, void *ctx);
/* A new store with w's names and prefix holding new references to the same tensors (no data
 * is copied; used marks start clear), e.g. the base of a LoRA-patched model. */
int sdw_share(sdw_t **out, const sdw_t *w);
/* Puts t (taken, also on failure) under an existing name, releasing the old reference.
 * BASE_E_NOENT when the name is absent. */
int sdw_replace(sdw_t *w, const char *name, ts_tensor_t *t);

/* ================================================================== CLIP tokenizer (§4) */

#define CLIPT_BOS 49406
#define CLIPT_EOS 49407
#define CLIPT_ROW 77

typedef struct clipt_s clipt_t;

/* Loads vocab.json and merges.txt from dir. BASE_E_TOKENIZER with a message naming the file
 * when either is absent or malformed. */
int clipt_load(clipt_t **out, const char *dir, char *err, size_t errsz);
void clipt_free(clipt_t *t);
/* Tokenises text (cleaning, pre-tokeniser regex, byte-level BPE; no BOS/EOS) into a new
 * malloc'ed array. */
int clipt_encode(const clipt_t *t, const char *text, int32_t **ids, size_t *n);

/* ComfyUI prompt weighting and 77-token chunking (§4.3): rows of CLIPT_ROW ids and
 * weights, each BOS + <= 75 tokens + EOS + EOS padding. */
typedef struct {
    size_t rows;
    int32_t *ids;  /* rows * CLIPT_ROW, owned */
    float *weights; /* rows * CLIPT_ROW, owned */
} clipt_rows_t;
int clipt_tokenize_weighted(const clipt_t *t, const char *prompt, clipt_rows_t *out);
void clipt_rows_free(clipt_rows_t *r);

/* ================================================================== CLIP text encoder (§4.4) */

typedef struct {
    int layers, hidden, heads, intermediate, vocab, positions;
} sd_clip_config_t;

typedef struct sd_clip_s sd_clip_t;

/* Builds the encoder from a store holding "text_model.*" names (prefix already stripped).
 * The config comes from shapes; heads from meta "clip.num_heads" (may be NULL) else
 * hidden/64. Takes ownership of w (freed with the model, also on failure). Every tensor the
 * model needs is fetched at load, so sdw_unused() afterwards lists exactly the extras. */
int sd_clip_load(sd_clip_t **out, sdw_t *w, const char *heads_meta, char *err, size_t errsz);
void sd_clip_free(sd_clip_t *c);
const sd_clip_config_t *sd_clip_config(const sd_clip_t *c);
const sdw_t *sd_clip_weights(const sd_clip_t *c);
/* Encodes rows (from clipt_tokenize_weighted) with ComfyUI's weighting: out cond
 * [1, 77*rows, hidden], pooled [1, hidden] (final-normed state at the first EOS of row 0).
 * layer_idx: -1 = last layer, -2 = one before (clip skip), ... down to -layers. */
int sd_clip_encode(const sd_clip_t *c, const clipt_rows_t *rows, int layer_idx, ts_tensor_t **cond,
                   ts_tensor_t **pooled, char *err, size_t errsz);

/* ================================================================== UNet (§2) */

typedef struct {
    int in_channels, out_channels, model_channels, time_embed_dim;
    int levels;                 /* len(channel_mult) */
    int channel_mult[8];
    int num_res_blocks;
    int transformer_depth[8];   /* per level, 0 = none */
    int middle_depth;
    int context_dim;
    int num_heads;              /* 8 for SD1.x; heads = C / ... see num_head_channels */
    int num_head_channels;      /* -1 = use num_heads */
    bool linear_in_transformer;
} sd_unet_config_t;

typedef struct sd_unet_s sd_unet_t;

/* Detects the config from shapes (§2.8) and checks every tensor's shape. heads_meta /
 * head_channels_meta come from "unet.num_heads" / "unet.num_head_channels" metadata (may be
 * NULL; default 8 heads). Takes ownership of w. */
int sd_unet_load(sd_unet_t **out, sdw_t *w, const char *heads_meta, const char *head_channels_meta,
                 char *err, size_t errsz);
void sd_unet_free(sd_unet_t *u);
const sd_unet_config_t *sd_unet_config(const sd_unet_t *u);
const sdw_t *sd_unet_weights(const sd_unet_t *u);
/* eps prediction: x [B, in, h, w], timesteps [B] (float32 tensor), context [B, L, ctx_dim]. */
int sd_unet_forward(const sd_unet_t *u, const ts_tensor_t *x, const ts_tensor_t *timesteps,
                    const ts_tensor_t *context, ts_tensor_t **eps, char *err, size_t errsz);
/* timestep_embedding(t, dim) of §2.6: [B, dim]. */
int sd_timestep_embedding(const ts_tensor_t *timesteps, int dim, ts_tensor_t **out);

/* ================================================================== VAE (§3) */

typedef struct {
    int ch, levels, ch_mult[8], num_res_blocks, z_channels, embed_dim, in_channels, out_ch;
} sd_vae_config_t;

typedef struct sd_vae_s sd_vae_t;

/* From a store with "encoder.*", "decoder.*", "quant_conv.*", "post_quant_conv.*" names.
 * A decoder-only store (no encoder) loads; sd_vae_encode then fails clearly. Takes
 * ownership of w. */
int sd_vae_load(sd_vae_t **out, sdw_t *w, char *err, size_t errsz);
void sd_vae_free(sd_vae_t *v);
const sd_vae_config_t *sd_vae_config(const sd_vae_t *v);
const sdw_t *sd_vae_weights(const sd_vae_t *v);
/* z [B, 4, h, w] unscaled latent -> image [B, 3, 8h, 8w] in about [-1, 1]. */
int sd_vae_decode(const sd_vae_t *v, const ts_tensor_t *z, ts_tensor_t **img, char *err, size_t errsz);
/* image [B, 3, H, W] in [-1, 1] (H, W multiples of 8) -> mean latent [B, 4, H/8, W/8]. */
int sd_vae_encode(const sd_vae_t *v, const ts_tensor_t *img, ts_tensor_t **mean, char *err, size_t errsz);

#define SD_LATENT_SCALE 0.18215

/* ================================================================== schedule (§5.1, §5.3, §5.4) */

#define SD_TIMESTEPS 1000

/* The discrete SD1.5 schedule: sigmas[i] and log_sigmas[i] as float32 values (stored in
 * doubles), i = 0..999. */
typedef struct {
    double sigmas[SD_TIMESTEPS];
    double log_sigmas[SD_TIMESTEPS];
    double sigma_min, sigma_max;
} sd_sched_t;

void sd_sched_init(sd_sched_t *s); /* β linear in sqrt from 0.00085 to 0.012 */
double sd_sched_sigma_to_t(const sd_sched_t *s, double sigma); /* nearest integer t */
double sd_sched_t_to_sigma(const sd_sched_t *s, double t);     /* log-interpolated */

/* Scheduler names in ComfyUI's order (for /object_info), NULL-terminated. */
extern const char *const sd_scheduler_names[];
/* Sampler names as ComfyUI lists them (KSampler.SAMPLERS), NULL-terminated. Those weft does
 * not implement are not listed. */
extern const char *const sd_sampler_names[];

/* Room a sigma array needs for n steps: n+1 values, but ComfyUI's "ddim_uniform" takes every
 * floor(1000/n)-th timestep and so gives up to 1000 values (n = 7 gives 9, n = 501 gives
 * 1000); callers allocate this many doubles. */
#define SD_SIGMAS_ROOM(n) ((n) + 1 > SD_TIMESTEPS + 1 ? (n) + 1 : SD_TIMESTEPS + 1)

/* n steps -> the schedule (float32 values in doubles, normally n+1 of them ending in 0) into
 * out (room for SD_SIGMAS_ROOM(n)); *count receives how many were written: n+1, except for
 * "beta", which drops repeated timesteps as ComfyUI does (fewer for large n), and
 * "ddim_uniform" (see above). BASE_E_INVAL for an unknown name or n < 1. */
int sd_scheduler(const sd_sched_t *s, const char *name, int n, double *out, int *count);
/* KSampler.calculate_sigmas + set_steps: handles the discard-penultimate samplers (dpm_2,
 * dpm_2_ancestral, uni_pc, uni_pc_bh2) and denoise < 1. *count receives the number of sigmas
 * (steps+1, or 0 when denoise <= 0, or what sd_scheduler gives). out must have room for
 * SD_SIGMAS_ROOM(steps). sampler may be NULL (no discard); an unknown sampler or scheduler
 * is BASE_E_INVAL. */
int sd_sigmas_for(const sd_sched_t *s, const char *scheduler, const char *sampler, int steps,
                  double denoise, double *out, int *count);

/* ================================================================== samplers (§5.6) */

/* The model as the sampler sees it: denoised = D(x, sigma) for the whole batch (CFG and the
 * UNet are inside). Returns a new reference in *denoised. */
typedef int (*sd_denoise_fn)(void *ctx, const ts_tensor_t *x, double sigma, ts_tensor_t **denoised);
/* After each step i (0-based) of n: x is the new state, denoised the last prediction. A
 * non-zero return (BASE_E_INTERRUPTED) stops the sampler, which returns that code. */
typedef int (*sd_step_fn)(void *ctx, int i, int n, const ts_tensor_t *x, const ts_tensor_t *denoised);

typedef struct {
    sd_denoise_fn denoise;
    void *denoise_ctx;
    sd_step_fn step;     /* may be NULL */
    void *step_ctx;
    ts_gen_t *noise_gen; /* ancestral/SDE noise; seeded with the prompt's seed (§5.5) */
    const sd_sched_t *sched; /* for samplers that need t or the alphas (lcm, uni_pc) */
    char *err;
    size_t errsz;
} sd_sampler_args_t;

/* Runs the named sampler from x over sigmas[0..count). *out is a new reference (x itself,
 * referenced, when count < 2). BASE_E_INVAL for an unknown sampler, a schedule with a
 * non-finite, negative or (before the last) zero sigma, or a noise-adding sampler without
 * noise_gen. a->err is cleared on entry; on failure it holds the denoiser's or the step
 * callback's message, or the sampler's own. */
int sd_sample(const char *sampler, const sd_sampler_args_t *a, const ts_tensor_t *x,
              const double *sigmas, int count, ts_tensor_t **out);

/* ================================================================== demo checkpoints */

typedef enum {
    SD_DEMO_TINY, /* reduced widths, same key structure: runs in well under a second per step */
    SD_DEMO_FULL, /* the real SD1.5 sizes (1.07 B parameters), random weights; for benchmarks */
} sd_demo_size_t;

/* Writes a single-file SD1.5-layout checkpoint with deterministic random weights (seeded),
 * in dtype ST_F32 or ST_F16, with __metadata__ naming the head counts so sd_*_load derive the
 * same config. Every key of the layout and nothing else (§1.2, §2.2, §3.2, §4.4), plus
 * "cond_stage_model.transformer.text_model.embeddings.position_ids". */
int sd_demo_write(const char *path, sd_demo_size_t size, st_dtype_t dtype, uint64_t seed, char *err,
                  size_t errsz);
/* The tensor names and shapes of a layout, for tests and the writer. cb returns non-zero to
 * stop. */
typedef int (*sd_key_fn)(void *ctx, const char *name, const int64_t *shape, int ndim);
int sd_unet_keys(const sd_unet_config_t *cfg, const char *prefix, sd_key_fn cb, void *ctx);
int sd_vae_keys(const sd_vae_config_t *cfg, const char *prefix, sd_key_fn cb, void *ctx);
int sd_clip_keys(const sd_clip_config_t *cfg, const char *prefix, sd_key_fn cb, void *ctx);
/* The SD1.5 configs (full) and the tiny demo configs. */
void sd_unet_config_sd15(sd_unet_config_t *c);
void sd_vae_config_sd15(sd_vae_config_t *c);
void sd_clip_config_sd15(sd_clip_config_t *c);
void sd_unet_config_tiny(sd_unet_config_t *c);
void sd_vae_config_tiny(sd_vae_config_t *c);
void sd_clip_config_tiny(sd_clip_config_t *c);

#endif
