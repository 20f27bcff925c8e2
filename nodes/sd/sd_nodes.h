/* Private to the Stable Diffusion node files (nodes/sd/node_*.c): the values that travel
 * between them (MODEL, CLIP, VAE objects, CONDITIONING lists, LATENT dicts), the process-wide
 * cache of loaded checkpoints and tokenizers, and the sampling glue (CFG, noise, previews).
 *
 * Threads: loaded models are immutable and shared; the caches lock internally. */
#ifndef WEFT_SD_NODES_H
#define WEFT_SD_NODES_H

#include <stdatomic.h>
#include <sys/types.h>
#include <time.h>

#include "nodes.h"
#include "sd/sd.h"

/* ------------------------------------------------------------------ loaded checkpoints */

enum { SDN_UNET = 1u << 0, SDN_CLIP = 1u << 1, SDN_VAE = 1u << 2 };

/* One model file (or a model derived from one): a handle that MODEL/CLIP/VAE values hold,
 * whose weights the cache may unload when memory is needed and load again on the next use.
 * Refcounted; the cache holds one extra reference while the weights are resident.
 *
 * The component pointers are valid only between sdn_use() and sdn_unuse(): a node pins the
 * holder for as long as it computes with it, and a pinned holder is never unloaded. */
typedef struct sdn_ckpt_s {
    atomic_int refs;
    char *path;      /* the file, for messages, reloads and the tokenizer search */
    char *name;      /* as the user chose it (ckpt_name / vae_name) */
    sd_unet_t *unet; /* NULL when absent or unloaded */
    sd_clip_t *clip;
    sd_vae_t *vae;
    void *extra;     /* another kind of model (an image classifier), freed with extra_free */
    void (*extra_free)(void *extra);
    size_t bytes;    /* weights held in memory while resident (mapped F32 counts too) */
    sd_sched_t sched;
    unsigned have;   /* components the model has (known after the first load) */
    /* Rebuilds the components after an unload; NULL = load `want` from path. A holder whose
     * weights cannot be rebuilt sets `pinned_forever`. */
    int (*reload)(struct sdn_ckpt_s *c, char *err, size_t errsz);
    void *reload_ctx;
    void (*reload_ctx_free)(void *ctx);
    bool pinned_forever;
    /* A model built on another (a LoRA-patched UNet): while `shares_parent`, its tensors
     * include the parent's, which stay in memory even if the parent is unloaded, so the
     * budget then counts the parent's bytes against this holder. parent is borrowed (the
     * reload context holds the reference). */
    struct sdn_ckpt_s *parent;
    bool shares_parent;
    /* Cache bookkeeping (under the cache lock). */
    unsigned want;
    int pins;
    bool resident;
    uint64_t used;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct sdn_ckpt_s *prev, *next;
} sdn_ckpt_t;

/* An empty holder (refs 1, schedule initialised), registered with the cache, for components
 * built elsewhere (a LoRA-patched UNet sharing its base's tensors): set the components, bytes
 * and `reload` (or pinned_forever), then sdn_ckpt_adopt() to make it resident. path is the
 * base file (the tokenizer search starts beside it). NULL on OOM. */
sdn_ckpt_t *sdn_ckpt_new(const char *path, const char *name);
/* Counts a holder built by hand as resident (may unload others to make room). */
void sdn_ckpt_adopt(sdn_ckpt_t *c);
sdn_ckpt_t *sdn_ckpt_ref(sdn_ckpt_t *c);
void sdn_ckpt_unref(sdn_ckpt_t *c); /* NULL is fine */

/* Finds or loads the components `want` of the safetensors file at path; components the file
 * lacks are an error only when listed in `need`. The result is a new reference, resident
 * (and not pinned). name is how the user referred to it. Errors are BASE_E_* with a message. */
int sdn_ckpt_get(const char *path, const char *name, unsigned want, unsigned need, sdn_ckpt_t **out,
                 char *err, size_t errsz);
/* Pins c, loading its weights again first if they were unloaded. Pair with sdn_unuse. */
int sdn_use(sdn_ckpt_t *c, char *err, size_t errsz);
void sdn_unuse(sdn_ckpt_t *c);
/* Unloads every unpinned model (POST /free); their values stay valid handles. */
void sdn_cache_clear(void);
/* Resident models and their bytes (for /system_stats). */
void sdn_cache_stats(size_t *files, size_t *bytes);
/* Drops the LoRA cache's references (nodes/sd/lora_cache.c): the patched holders it keeps so
 * a repeated LoraLoader does not merge again, and their bases. Handles only: their weights
 * are resident or not as the model cache decides. */
void sdn_lora_cache_clear(void);
/* The budget in bytes (0 = none). */
void sdn_cache_set_budget(size_t bytes);
size_t sdn_cache_budget(void);

/* The tokenizer for a checkpoint: "<file without extension>.tokenizer/" beside it, then
 * models/clip_tokenizer/. Cached for the life of the process; borrowed. */
int sdn_tokenizer_for(const node_env_t *env, const sdn_ckpt_t *ck, const clipt_t **out, char *err,
                      size_t errsz);

/* ------------------------------------------------------------------ node values */

/* MODEL, CLIP and VAE values are NODE_V_OBJECT with these payloads and tags. */
typedef struct {
    sdn_ckpt_t *ck; /* owned reference */
} sdn_model_t;

typedef struct {
    sdn_ckpt_t *ck; /* owned reference */
    int layer_idx;  /* -1 = last layer (CLIPSetLastLayer) */
} sdn_clip_t;

typedef struct {
    sdn_ckpt_t *ck; /* owned reference */
} sdn_vae_t;

node_value_t *sdn_model_value(sdn_ckpt_t *ck);            /* takes the reference */
node_value_t *sdn_clip_value(sdn_ckpt_t *ck, int layer);  /* takes the reference */
node_value_t *sdn_vae_value(sdn_ckpt_t *ck);              /* takes the reference */
/* Borrowed payload of an input, NULL when the input is absent or of another type. */
const sdn_model_t *sdn_in_model(const node_ctx_t *ctx, const char *name);
const sdn_clip_t *sdn_in_clip(const node_ctx_t *ctx, const char *name);
const sdn_vae_t *sdn_in_vae(const node_ctx_t *ctx, const char *name);

/* CONDITIONING: a list of [cond tensor [1, 77k, C], {"pooled_output": [1, C]}] pairs. */
node_value_t *sdn_cond_value(ts_tensor_t *cond, ts_tensor_t *pooled); /* takes both */
/* Number of entries, and the borrowed cond tensor of entry i (NULL if malformed). */
size_t sdn_cond_count(const node_value_t *v);
ts_tensor_t *sdn_cond_at(const node_value_t *v, size_t i);

/* LATENT: {"samples": [B, 4, h, w], "noise_mask"?: [B?, 1?, H, W], "batch_index"?: [...]}. */
/* A new LATENT dict copying every key of `like` (may be NULL) except samples, which becomes
 * `samples` (taken). */
node_value_t *sdn_latent_value(const node_value_t *like, ts_tensor_t *samples);
/* Same, also replacing (or adding) noise_mask (taken). */
node_value_t *sdn_latent_with_mask(const node_value_t *like, ts_tensor_t *samples, ts_tensor_t *mask);
ts_tensor_t *sdn_latent_samples(const node_value_t *latent); /* borrowed; NULL if absent */

/* Stores a new tensor in output slot i (takes t); node_fail on OOM. */
int sdn_out_tensor(node_ctx_t *ctx, size_t i, ts_tensor_t *t);
/* Replaces *t by the result of an op that already stored it in *tmp (frees the old one). */
void sdn_swap(ts_tensor_t **t, ts_tensor_t *tmp);

/* ------------------------------------------------------------------ sampling */

typedef struct {
    const sdn_model_t *model;
    const node_value_t *positive, *negative; /* CONDITIONING */
    const node_value_t *latent;              /* LATENT */
    uint64_t seed;
    int steps;
    double cfg;
    const char *sampler, *scheduler;
    double denoise;        /* KSampler */
    bool add_noise;        /* KSamplerAdvanced */
    int start_step, last_step; /* KSamplerAdvanced: 0 and 10000 for KSampler */
    bool force_full_denoise;
} sdn_sample_req_t;

/* Runs one KSampler(Advanced) call with progress per step, interrupt within a step and
 * latent previews. Stores the LATENT output in ctx->out[0]. */
int sdn_ksample(node_ctx_t *ctx, const sdn_sample_req_t *req);

/* PNG bytes of a latent2rgb preview of x0 (scaled latent [B, 4, h, w], first item). */
int sdn_preview_png(const ts_tensor_t *x0, base_buf_t *png);

#endif
