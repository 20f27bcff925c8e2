/* Loaded checkpoints and tokenizers, shared by every prompt of the process.
 *
 * A checkpoint is keyed by its file identity (device, inode, size, mtime) and the components
 * asked for, so a replaced file is reloaded and two prompts naming the same file share one
 * copy. The cache keeps the SDN_CACHE_FILES most recently used files; values hold their own
 * references, so evicting never frees a model a running prompt uses. (A memory budget
 * replaces the count once model memory management lands.) Loads run under the cache lock:
 * a second prompt asking for the same file waits for the first load instead of reading the
 * file twice. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "sd/sd_nodes.h"

#define SDN_CACHE_FILES 2

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    unsigned want;
    sdn_ckpt_t *ck; /* the cache's reference */
    uint64_t used;  /* LRU clock */
} slot_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static slot_t slots[SDN_CACHE_FILES];
static uint64_t clock_;

sdn_ckpt_t *sdn_ckpt_ref(sdn_ckpt_t *c)
{
    if (c)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void sdn_ckpt_unref(sdn_ckpt_t *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    sd_unet_free(c->unet);
    sd_clip_free(c->clip);
    sd_vae_free(c->vae);
    free(c->path);
    free(c->name);
    free(c);
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

static int load(const char *path, const char *name, unsigned want, unsigned need, sdn_ckpt_t **out,
                char *err, size_t errsz)
{
    st_file_t *f = NULL;
    int rc = st_open(&f, path, err, errsz);
    if (rc)
        return rc;
    sdn_ckpt_t *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path)) || !(c->name = strdup(name))) {
        if (c)
            free(c->path);
        free(c);
        st_close(f);
        snprintf(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    atomic_init(&c->refs, 1);
    sd_sched_init(&c->sched);
    const char *pu = unet_prefix(f), *pc = clip_prefix(f), *pv = vae_prefix(f);
    unsigned have = (pu ? SDN_UNET : 0) | (pc ? SDN_CLIP : 0) | (pv ? SDN_VAE : 0);
    if ((need & have) != need) {
        unsigned miss = need & ~have;
        snprintf(err, errsz, "%s has no %s weights (expected keys starting with '%s')", name,
                 miss & SDN_UNET ? "UNet" : miss & SDN_CLIP ? "CLIP text encoder" : "VAE",
                 miss & SDN_UNET ? "model.diffusion_model." : miss & SDN_CLIP ? "cond_stage_model." : "first_stage_model.");
        rc = BASE_E_MODEL_LAYOUT;
        goto fail;
    }
    sdw_t *w = NULL;
    if ((want & SDN_UNET) && pu) {
        if ((rc = sdw_from_file(&w, f, pu, err, errsz)) ||
            (rc = sd_unet_load(&c->unet, w, st_meta(f, "unet.num_heads"), st_meta(f, "unet.num_head_channels"), err,
                               errsz)))
            goto fail;
        warn_unused(name, "UNet", sd_unet_weights(c->unet));
        c->bytes += sdw_bytes(sd_unet_weights(c->unet));
    }
    if ((want & SDN_CLIP) && pc) {
        if ((rc = sdw_from_file(&w, f, pc, err, errsz)) ||
            (rc = sd_clip_load(&c->clip, w, st_meta(f, "clip.num_heads"), err, errsz)))
            goto fail;
        warn_unused(name, "CLIP", sd_clip_weights(c->clip));
        c->bytes += sdw_bytes(sd_clip_weights(c->clip));
    }
    if ((want & SDN_VAE) && pv) {
        if ((rc = sdw_from_file(&w, f, pv, err, errsz)) || (rc = sd_vae_load(&c->vae, w, err, errsz)))
            goto fail;
        warn_unused(name, "VAE", sd_vae_weights(c->vae));
        c->bytes += sdw_bytes(sd_vae_weights(c->vae));
    }
    st_close(f); /* the tensors keep the mapping alive */
    *out = c;
    return 0;
fail:
    st_close(f);
    sdn_ckpt_unref(c);
    return rc;
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
    pthread_mutex_lock(&mu);
    slot_t *hit = NULL, *victim = &slots[0];
    for (size_t i = 0; i < SDN_CACHE_FILES; i++) {
        slot_t *s = &slots[i];
        if (s->ck && s->dev == st.st_dev && s->ino == st.st_ino && s->size == st.st_size &&
            s->mtime.tv_sec == st.st_mtim.tv_sec && s->mtime.tv_nsec == st.st_mtim.tv_nsec &&
            (s->want & want) == want) {
            hit = s;
            break;
        }
        if (!s->ck || (victim->ck && s->used < victim->used))
            victim = s;
    }
    int rc = 0;
    if (hit) {
        hit->used = ++clock_;
        *out = sdn_ckpt_ref(hit->ck);
    } else if (!(rc = load(path, name, want, need, out, err, errsz))) {
        sdn_ckpt_unref(victim->ck); /* models in use stay alive through their values */
        *victim = (slot_t){.dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim,
                           .want = want, .ck = sdn_ckpt_ref(*out), .used = ++clock_};
        BASE_LOG(INFO, "loaded %s (%.1f MB of weights)", name, (double)(*out)->bytes / 1e6);
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

void sdn_cache_clear(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < SDN_CACHE_FILES; i++) {
        sdn_ckpt_unref(slots[i].ck);
        slots[i] = (slot_t){0};
    }
    pthread_mutex_unlock(&mu);
}

void sdn_cache_stats(size_t *files, size_t *bytes)
{
    size_t n = 0, b = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < SDN_CACHE_FILES; i++)
        if (slots[i].ck) {
            n++;
            b += slots[i].ck->bytes;
        }
    pthread_mutex_unlock(&mu);
    if (files)
        *files = n;
    if (bytes)
        *bytes = b;
}

void node_models_release(void)
{
    sdn_cache_clear();
}

void node_models_stats(size_t *files, size_t *bytes)
{
    sdn_cache_stats(files, bytes);
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
    const char *dir = have_beside && has_tokenizer_files(beside)   ? beside
                      : have_shared && has_tokenizer_files(shared) ? shared
                                                                   : NULL;
    if (!dir) {
        int n = snprintf(err, errsz,
                 "CLIP tokenizer files not found: put vocab.json and merges.txt of "
                 "openai/clip-vit-large-patch14 in models/clip_tokenizer/ (looked in %s and %s)",
                 shared, beside);
        (void)n; /* a cut message is fine */
        return BASE_E_TOKENIZER;
    }
    pthread_mutex_lock(&tok_mu);
    int rc = tokenizer_at(dir, out, err, errsz);
    pthread_mutex_unlock(&tok_mu);
    return rc;
}
