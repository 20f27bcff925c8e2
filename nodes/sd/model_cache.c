/* Loaded models, shared by every prompt of the process, within a memory budget.
 *
 * A model value (MODEL, CLIP, VAE) holds a holder (sdn_ckpt_t), not the weights: the cache
 * decides which holders are resident. Nodes pin a holder while they compute (sdn_use /
 * sdn_unuse); when a load would exceed the budget (weft serve --model-memory), the least
 * recently used unpinned holders are unloaded; their values stay valid and load the weights
 * again on the next use. A pinned holder (a model a running node uses) is never unloaded, so
 * the budget can be exceeded when the models in use alone exceed it (logged).
 *
 * Holders are keyed by file identity (device, inode, size, mtime) and the components asked
 * for: a replaced file is reloaded, and two prompts naming the same file share one copy. The
 * cache lock is held during loads, so a second prompt asking for the same file waits for the
 * first load instead of reading the file twice. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sd/sd_nodes.h"

#ifndef WEFT_CLIP_TOKENIZER_BUILTIN
#define WEFT_CLIP_TOKENIZER_BUILTIN "nodes/sd/clip_tokenizer"
#endif

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sdn_ckpt_t *holders; /* every live holder (weak: a holder unlinks itself when freed) */
static uint64_t clock_;
/* SIZE_MAX until chosen (then half of physical memory on first use); 0 = unlimited. */
static _Atomic size_t budget = SIZE_MAX;
/* What is resident, republished at every unlock: readers (GET /system_stats on the server's
 * loop thread, the lanes' heavy-node check) never wait behind a load holding the lock. */
static _Atomic size_t pub_files, pub_bytes;

static size_t budget_now(void)
{
    size_t b = atomic_load(&budget);
    if (b != SIZE_MAX)
        return b;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    size_t half = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 2 : 0;
    atomic_compare_exchange_strong(&budget, &b, half); /* a concurrent set wins */
    return atomic_load(&budget);
}

void sdn_cache_set_budget(size_t bytes)
{
    atomic_store(&budget, bytes == SIZE_MAX ? SIZE_MAX - 1 : bytes);
}

size_t sdn_cache_budget(void)
{
    return budget_now();
}

static size_t held_bytes_locked(const sdn_ckpt_t *c);

/* Publishes the resident totals, then releases the cache lock. */
static void unlock(void)
{
    size_t n = 0, b = 0;
    for (sdn_ckpt_t *c = holders; c; c = c->next)
        if (c->resident) {
            n++;
            b += held_bytes_locked(c);
        }
    atomic_store(&pub_files, n);
    atomic_store(&pub_bytes, b);
    pthread_mutex_unlock(&mu);
}

static void unload_locked(sdn_ckpt_t *c)
{
    sd_unet_free(c->unet);
    sd_clip_free(c->clip);
    sd_vae_free(c->vae);
    c->unet = NULL;
    c->clip = NULL;
    c->vae = NULL;
    if (c->extra && c->extra_free)
        c->extra_free(c->extra);
    c->extra = NULL;
    c->resident = false;
}

sdn_ckpt_t *sdn_ckpt_new(const char *path, const char *name)
{
    sdn_ckpt_t *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path ? path : "")) || !(c->name = strdup(name ? name : ""))) {
        if (c)
            free(c->path);
        free(c);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    sd_sched_init(&c->sched);
    pthread_mutex_lock(&mu);
    c->next = holders;
    if (holders)
        holders->prev = c;
    holders = c;
    unlock();
    return c;
}

sdn_ckpt_t *sdn_ckpt_ref(sdn_ckpt_t *c)
{
    if (c)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

/* A reference to a holder found in the list, unless its last reference is already being
 * dropped (its count reached 0 and it is waiting for the lock to unlink itself). */
static bool ref_if_alive(sdn_ckpt_t *c)
{
    int n = atomic_load(&c->refs);
    while (n > 0)
        if (atomic_compare_exchange_weak(&c->refs, &n, n + 1))
            return true;
    return false;
}

void sdn_ckpt_unref(sdn_ckpt_t *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    pthread_mutex_lock(&mu);
    if (c->prev)
        c->prev->next = c->next;
    else if (holders == c)
        holders = c->next;
    if (c->next)
        c->next->prev = c->prev;
    unlock();
    unload_locked(c); /* no one else can reach it any more */
    if (c->reload_ctx_free)
        c->reload_ctx_free(c->reload_ctx);
    free(c->path);
    free(c->name);
    free(c);
}

/* The memory a resident holder keeps: its own bytes, and its parent's when it shares the
 * parent's tensors and the parent itself was unloaded (they stay alive through this one). */
static size_t held_bytes_locked(const sdn_ckpt_t *c)
{
    if (!c->resident)
        return 0;
    return c->bytes + (c->shares_parent && c->parent && !c->parent->resident ? c->parent->bytes : 0);
}

/* Resident bytes of all holders. */
static size_t resident_bytes_locked(void)
{
    size_t b = 0;
    for (sdn_ckpt_t *c = holders; c; c = c->next)
        b += held_bytes_locked(c);
    return b;
}

/* Unloads least recently used unpinned holders until `need` more bytes fit. The cache's
 * references of the unloaded holders are returned in *drop (released after unlocking: the
 * last release frees the holder, which takes the lock). */
static size_t make_room_locked(size_t need, const sdn_ckpt_t *keep, sdn_ckpt_t **drop, size_t cap)
{
    size_t limit = budget_now(), n = 0;
    while (limit && resident_bytes_locked() + need > limit && n < cap) {
        sdn_ckpt_t *victim = NULL;
        for (sdn_ckpt_t *c = holders; c; c = c->next)
            if (c->resident && c->pins == 0 && !c->pinned_forever && c != keep && (!victim || c->used < victim->used))
                victim = c;
        if (!victim)
            break;
        BASE_LOG(INFO, "unloading %s (%.1f MB) to stay within the model memory budget", victim->name,
                 (double)victim->bytes / 1e6);
        unload_locked(victim);
        drop[n++] = victim;
    }
    if (limit && resident_bytes_locked() + need > limit)
        BASE_LOG(WARN, "models in use need %.1f MB, over the %.1f MB model memory budget",
                 (double)(resident_bytes_locked() + need) / 1e6, (double)limit / 1e6);
    return n;
}

static void drop_all(sdn_ckpt_t **drop, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sdn_ckpt_unref(drop[i]);
}

void sdn_ckpt_adopt(sdn_ckpt_t *c)
{
    sdn_ckpt_t *drop[64];
    pthread_mutex_lock(&mu);
    size_t n = make_room_locked(c->bytes, c, drop, 64);
    if (!c->resident) {
        c->resident = true;
        /* The cache's reference while resident; a holder that can never be unloaded lives
         * exactly as long as its values. */
        if (!c->pinned_forever)
            sdn_ckpt_ref(c);
    }
    c->used = ++clock_;
    unlock();
    drop_all(drop, n);
}

/* The key prefix of a component in f, or NULL when f does not have it. */
static const char *unet_prefix(const st_file_t *f)
{
    return st_find(f, "model.diffusion_model.input_blocks.0.0.weight") ? "model.diffusion_model." : NULL;
}

static const char *clip_prefix(const st_file_t *f)
{
    if (st_find(f, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") ||
        st_find(f, "cond_stage_model.transformer.embeddings.token_embedding.weight"))
        return "cond_stage_model.transformer.";
    return NULL;
}

static const char *vae_prefix(const st_file_t *f)
{
    if (st_find(f, "first_stage_model.decoder.conv_in.weight"))
        return "first_stage_model.";
    if (st_find(f, "decoder.conv_in.weight")) /* a standalone VAE file */
        return "";
    return NULL;
}

static void warn_unused(const char *path, const char *what, const sdw_t *w)
{
    const char **names = NULL;
    size_t n = sdw_unused(w, &names);
    if (n)
        BASE_LOG(WARN, "%s: %zu %s tensor(s) not used, e.g. '%s'", path, n, what, names[0]);
    free(names);
}

/* Loads c->want from c->path into c (components must be unloaded). */
static int load_file(sdn_ckpt_t *c, unsigned need, char *err, size_t errsz)
{
    st_file_t *f = NULL;
    int rc = st_open(&f, c->path, err, errsz);
    if (rc)
        return rc;
    const char *pu = unet_prefix(f), *pc = clip_prefix(f), *pv = vae_prefix(f);
    c->have = (pu ? SDN_UNET : 0) | (pc ? SDN_CLIP : 0) | (pv ? SDN_VAE : 0);
    if ((need & c->have) != need) {
        unsigned miss = need & ~c->have;
        snprintf(err, errsz, "%s has no %s weights (expected keys starting with '%s')", c->name,
                 miss & SDN_UNET ? "UNet" : miss & SDN_CLIP ? "CLIP text encoder" : "VAE",
                 miss & SDN_UNET ? "model.diffusion_model." : miss & SDN_CLIP ? "cond_stage_model." : "first_stage_model.");
        st_close(f);
        return BASE_E_MODEL_LAYOUT;
    }
    sdw_t *w = NULL;
    size_t bytes = 0;
    if ((c->want & SDN_UNET) && pu) {
        if ((rc = sdw_from_file(&w, f, pu, err, errsz)) ||
            (rc = sd_unet_load(&c->unet, w, st_meta(f, "unet.num_heads"), st_meta(f, "unet.num_head_channels"), err,
                               errsz)))
            goto fail;
        warn_unused(c->name, "UNet", sd_unet_weights(c->unet));
        bytes += sdw_bytes(sd_unet_weights(c->unet));
    }
    if ((c->want & SDN_CLIP) && pc) {
        if ((rc = sdw_from_file(&w, f, pc, err, errsz)) ||
            (rc = sd_clip_load(&c->clip, w, st_meta(f, "clip.num_heads"), err, errsz)))
            goto fail;
        warn_unused(c->name, "CLIP", sd_clip_weights(c->clip));
        bytes += sdw_bytes(sd_clip_weights(c->clip));
    }
    if ((c->want & SDN_VAE) && pv) {
        if ((rc = sdw_from_file(&w, f, pv, err, errsz)) || (rc = sd_vae_load(&c->vae, w, err, errsz)))
            goto fail;
        warn_unused(c->name, "VAE", sd_vae_weights(c->vae));
        bytes += sdw_bytes(sd_vae_weights(c->vae));
    }
    st_close(f); /* the tensors keep the mapping alive */
    c->bytes = bytes;
    return 0;
fail:
    st_close(f);
    unload_locked(c);
    return rc;
}

/* Makes c resident (under the lock). */
static int ensure_resident_locked(sdn_ckpt_t *c, unsigned need, sdn_ckpt_t **drop, size_t *ndrop, char *err,
                                  size_t errsz)
{
    if (c->resident)
        return 0;
    if (c->pinned_forever) {
        snprintf(err, errsz, "%s was unloaded and cannot be rebuilt", c->name);
        return BASE_E_NOENT;
    }
    *ndrop += make_room_locked(c->bytes, c, drop + *ndrop, 64 - *ndrop);
    int rc = c->reload ? c->reload(c, err, errsz) : load_file(c, need, err, errsz);
    if (rc)
        return rc;
    c->resident = true;
    sdn_ckpt_ref(c);
    /* The estimate may have been low (first load): trim again now the size is known. */
    *ndrop += make_room_locked(0, c, drop + *ndrop, 64 - *ndrop);
    BASE_LOG(INFO, "loaded %s (%.1f MB of weights)", c->name, (double)c->bytes / 1e6);
    return 0;
}

int sdn_use(sdn_ckpt_t *c, char *err, size_t errsz)
{
    if (!c) {
        snprintf(err, errsz, "no model");
        return BASE_E_INVAL;
    }
    sdn_ckpt_t *drop[64];
    size_t n = 0;
    pthread_mutex_lock(&mu);
    int rc = ensure_resident_locked(c, 0, drop, &n, err, errsz);
    if (!rc) {
        c->pins++;
        c->used = ++clock_;
    }
    unlock();
    drop_all(drop, n);
    return rc;
}

void sdn_unuse(sdn_ckpt_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&mu);
    if (c->pins > 0)
        c->pins--;
    unlock();
}

int sdn_ckpt_get(const char *path, const char *name, unsigned want, unsigned need, sdn_ckpt_t **out,
                 char *err, size_t errsz)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errsz, "%s: %s", name, strerror(errno));
        return errno == ENOENT ? BASE_E_NOENT : BASE_E_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errsz, "%s is not a file", name);
        return BASE_E_INVAL;
    }
    sdn_ckpt_t *drop[64], *c = NULL;
    size_t n = 0;
    pthread_mutex_lock(&mu);
    for (sdn_ckpt_t *h = holders; h; h = h->next)
        if (!h->reload && !h->pinned_forever && h->ino == st.st_ino && h->dev == st.st_dev &&
            h->size == st.st_size && h->mtime.tv_sec == st.st_mtim.tv_sec &&
            h->mtime.tv_nsec == st.st_mtim.tv_nsec && (h->want & want) == want && (h->have & need) == need &&
            ref_if_alive(h)) {
            c = h;
            break;
        }
    unlock();
    if (!c) {
        if (!(c = sdn_ckpt_new(path, name))) {
            snprintf(err, errsz, "out of memory");
            return BASE_E_NOMEM;
        }
        c->want = want;
        c->dev = st.st_dev;
        c->ino = st.st_ino;
        c->size = st.st_size;
        c->mtime = st.st_mtim;
        c->bytes = (size_t)st.st_size; /* an estimate until loaded (F16 files grow to twice this) */
    }
    pthread_mutex_lock(&mu);
    int rc = ensure_resident_locked(c, need, drop, &n, err, errsz);
    if (!rc)
        c->used = ++clock_;
    unlock();
    drop_all(drop, n);
    if (rc) {
        sdn_ckpt_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sdn_cache_clear(void)
{
    sdn_ckpt_t *drop[256];
    size_t n = 0;
    pthread_mutex_lock(&mu);
    for (sdn_ckpt_t *c = holders; c && n < 256; c = c->next)
        if (c->resident && c->pins == 0 && !c->pinned_forever) {
            unload_locked(c);
            drop[n++] = c;
        }
    unlock();
    drop_all(drop, n);
}

void sdn_cache_stats(size_t *files, size_t *bytes)
{
    if (files)
        *files = atomic_load(&pub_files);
    if (bytes)
        *bytes = atomic_load(&pub_bytes);
}

void node_models_release(void)
{
    sdn_cache_clear();
}

void node_models_stats(size_t *files, size_t *bytes)
{
    sdn_cache_stats(files, bytes);
}

void node_models_set_budget(size_t bytes)
{
    sdn_cache_set_budget(bytes);
}

size_t node_models_budget(void)
{
    return sdn_cache_budget();
}

/* ------------------------------------------------------------------ tokenizers */

typedef struct tok_s {
    char *dir;
    clipt_t *tok;
    struct tok_s *next;
} tok_t;

static pthread_mutex_t tok_mu = PTHREAD_MUTEX_INITIALIZER;
static tok_t *toks; /* kept for the life of the process: a handful of small tables */

static bool has_tokenizer_files(const char *dir)
{
    char p[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%s/vocab.json", dir) >= sizeof p || stat(p, &st) != 0)
        return false;
    if ((size_t)snprintf(p, sizeof p, "%s/merges.txt", dir) >= sizeof p)
        return false;
    return stat(p, &st) == 0;
}

static int tokenizer_at(const char *dir, const clipt_t **out, char *err, size_t errsz)
{
    for (tok_t *t = toks; t; t = t->next)
        if (!strcmp(t->dir, dir)) {
            *out = t->tok;
            return 0;
        }
    tok_t *t = calloc(1, sizeof *t);
    if (!t || !(t->dir = strdup(dir))) {
        free(t);
        snprintf(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    int rc = clipt_load(&t->tok, dir, err, errsz);
    if (rc) {
        free(t->dir);
        free(t);
        return rc;
    }
    t->next = toks;
    toks = t;
    *out = t->tok;
    return 0;
}

int sdn_tokenizer_for(const node_env_t *env, const sdn_ckpt_t *ck, const clipt_t **out, char *err,
                      size_t errsz)
{
    char beside[PATH_MAX], shared[PATH_MAX];
    bool have_beside = ck && ck->path &&
                       (size_t)snprintf(beside, sizeof beside, "%s", ck->path) < sizeof beside - 16;
    if (have_beside) {
        char *dot = strrchr(beside, '.'), *slash = strrchr(beside, '/');
        if (dot && (!slash || dot > slash))
            *dot = '\0';
        strcat(beside, ".tokenizer");
    } else {
        snprintf(beside, sizeof beside, "(no checkpoint folder)");
    }
    bool have_shared = (size_t)snprintf(shared, sizeof shared, "%s/clip_tokenizer",
                                        env && env->models_dir ? env->models_dir : "models") < sizeof shared;
    /* Last, the tables that ship with weft (nodes/sd/clip_tokenizer/). */
    const char *dir = have_beside && has_tokenizer_files(beside)   ? beside
                      : have_shared && has_tokenizer_files(shared) ? shared
                      : has_tokenizer_files(WEFT_CLIP_TOKENIZER_BUILTIN) ? WEFT_CLIP_TOKENIZER_BUILTIN
                                                                   : NULL;
    if (!dir) {
        int n = snprintf(err, errsz,
                 "CLIP tokenizer files not found: put vocab.json and merges.txt of "
                 "openai/clip-vit-large-patch14 in models/clip_tokenizer/ (looked in %s, %s and %s)",
                 shared, beside, WEFT_CLIP_TOKENIZER_BUILTIN);
        (void)n; /* a cut message is fine */
        return BASE_E_TOKENIZER;
    }
    pthread_mutex_lock(&tok_mu);
    int rc = tokenizer_at(dir, out, err, errsz);
    pthread_mutex_unlock(&tok_mu);
    return rc;
}
