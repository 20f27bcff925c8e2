/* LoRA adapters for SD1.5 (sd15-reference.md §7), private to nodes/sd/: reading a LoRA
 * safetensors file into per-module low-rank factors, mapping the file's module names onto
 * the weights of a loaded UNet or CLIP text encoder (kohya, LDM, diffusers, PEFT and LyCORIS
 * spellings), merging them into a new store that shares every unpatched tensor with its base,
 * and the cache of patched components (lora_cache.c).
 *
 * Errors: BASE_E_* codes with a message in err. Threads: a lora_t or key map belongs to one
 * thread; the cache locks internally. */
#ifndef WEFT_SD_LORA_H
#define WEFT_SD_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "sd/sd_nodes.h"

typedef enum { LORA_UNET, LORA_CLIP } lora_side_t;

/* One adapted module: the factors the file holds under one module name. */
typedef struct {
    char *name;                         /* module name as the file spells it (owned) */
    const st_tensor_t *up, *down, *mid; /* borrowed from the file; NULL when absent */
    const st_tensor_t *alpha, *dora;    /* scalar alpha, DoRA magnitude (unsupported) */
    int side;                           /* -1 until bound, else a lora_side_t */
    char *target;                       /* store name of the weight it patches (owned) */
} lora_mod_t;

typedef struct {
    st_file_t *f;
    lora_mod_t *mods; /* file order of each module's first key */
    size_t n;
    /* After lora_bind: modules bound per side, keys not loaded (owned copies: stray keys,
     * then those of unmatched modules), and text-encoder keys skipped because no CLIP map was
     * given (LoraLoaderModelOnly). */
    size_t matched[2];
    char **unknown;
    size_t n_unknown;
    size_t skipped_te;
} lora_t;

/* Opens path and groups its keys into modules (suffixes of §7.4: lora_up/lora_down/lora_mid,
 * lora_A/lora_B with or without ".weight"/".default.weight", "_lora.up", ".lora.up",
 * "lora_linear_layer.up", alpha, dora_scale). Not a safetensors file, or no module with both
 * an up and a down factor, is BASE_E_MODEL_FORMAT with a message. */
int lora_open(lora_t **out, const char *path, char *err, size_t errsz);
void lora_free(lora_t *l); /* NULL is fine */

/* Module name -> store weight name for one loaded component, every spelling of §7.4. */
typedef struct lora_keymap_s lora_keymap_t;
int lora_keymap_unet(lora_keymap_t **out, const sd_unet_t *u);
int lora_keymap_clip(lora_keymap_t **out, const sd_clip_t *c);
void lora_keymap_free(lora_keymap_t *m);
/* Borrowed store name (e.g. "input_blocks.1.1.proj_in.weight"), NULL when unknown. */
const char *lora_keymap_find(const lora_keymap_t *m, const char *module);

/* The diffusers name of an LDM UNet module path (no ".weight"), e.g. "input_blocks.1.1.proj_in"
 * -> "down_blocks.0.attentions.0.proj_in" (§7.2), into buf. False when it has none. */
bool lora_unet_diffusers_name(const sd_unet_config_t *cfg, const char *ldm, char *buf, size_t cap);

/* Sets side/target of every module found in unet or clip (either may be NULL; UNet first) and
 * fills the report fields of l (once per lora_t: unknown keys are appended). Without a CLIP
 * map, complete text-encoder modules are counted in skipped_te rather than listed. DoRA
 * modules are not applied (listed and logged). Only out-of-memory fails. */
int lora_bind(lora_t *l, const lora_keymap_t *unet, const lora_keymap_t *clip);

/* A new store sharing base's tensors, where the target of every module bound to side becomes
 * W + strength * (alpha / rank) * (up @ down) in float32 (§7.5: conv factors flattened, a
 * Tucker core contracted in between, no alpha = factor 1), in file order. Factors that do
 * not fit their weight are BASE_E_MODEL_LAYOUT with a message naming both. */
int lora_apply(const lora_t *l, lora_side_t side, double strength, const sdw_t *base, sdw_t **out, char *err,
               size_t errsz);

/* A new holder whose UNet (side LORA_UNET) or CLIP (LORA_CLIP) is parent's patched by l
 * (bound with lora_bind) at strength, adopted by the model cache (resident, counted with the
 * bytes of its new tensors only, unloadable under the memory budget). parent must be pinned
 * by the caller (sdn_use) and is not modified; the holder keeps a reference to it. When the
 * cache unloads the holder and it is used again, it rebuilds itself (under the cache lock)
 * from its nearest resident ancestor, or else from the checkpoint file, re-reading the LoRA
 * files of the chain from lora_path. path of the new holder is parent's (the tokenizer). */
int lora_holder_new(sdn_ckpt_t *parent, const lora_t *l, lora_side_t side, double strength,
                    const char *lora_path, const char *lora_name, sdn_ckpt_t **out, char *err, size_t errsz);

/* ------------------------------------------------------------------ cache (lora_cache.c) */

/* A file's identity: a replaced or rewritten file is a different LoRA. */
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} lora_fid_t;

int lora_fid(const char *path, lora_fid_t *id); /* 0, BASE_E_NOENT or BASE_E_IO */

/* Makes the patched holder on a miss (new reference in *out). */
typedef int (*lora_make_fn)(void *ctx, sdn_ckpt_t **out);

/* The patched holder for (side, base, file, strength): from the cache (*hit true), or made
 * by make() under the cache lock (so two prompts never merge the same thing twice) and
 * cached. The cache keeps up to LORA_CACHE_ENTRIES results, least recently used first out;
 * an entry holds a reference to its base so the base's address stays its identity. */
#define LORA_CACHE_ENTRIES 4
int lora_cache_get(lora_side_t side, sdn_ckpt_t *base, const lora_fid_t *id, double strength,
                   lora_make_fn make, void *ctx, sdn_ckpt_t **out, bool *hit);

#endif
