/* The cache of LoRA-patched components, so running a prompt again (or another prompt with
 * the same LoRA stack) does not merge again. An entry is keyed by which component was
 * patched, the base holder it was patched from (a checkpoint, or an already patched holder
 * when LoRAs are chained), the LoRA file's identity and the strength. Entries hold handles
 * (references to holders), not memory: whether a patched holder's weights are resident is
 * the model cache's decision, and an unloaded one rebuilds itself on its next use. An entry
 * holds its base too, so a base address cannot be reused by another model while an entry
 * names it. Merges run under the lock: a second prompt asking for the same patch waits for
 * the first instead of merging twice. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "err.h"
#include "sd/lora.h"

typedef struct {
    lora_side_t side;
    sdn_ckpt_t *base; /* the entry's reference; NULL = empty slot */
    lora_fid_t id;
    double strength;
    sdn_ckpt_t *patched; /* the entry's reference */
    uint64_t used;       /* LRU clock */
} entry_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry_t ents[LORA_CACHE_ENTRIES];
static uint64_t clock_;

int lora_fid(const char *path, lora_fid_t *id)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? BASE_E_NOENT : BASE_E_IO;
    *id = (lora_fid_t){.dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim};
    return 0;
}

static bool same_file(const lora_fid_t *a, const lora_fid_t *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int lora_cache_get(lora_side_t side, sdn_ckpt_t *base, const lora_fid_t *id, double strength,
                   lora_make_fn make, void *ctx, sdn_ckpt_t **out, bool *hit)
{
    *out = NULL;
    *hit = false;
    pthread_mutex_lock(&mu);
    entry_t *victim = &ents[0];
    for (size_t i = 0; i < LORA_CACHE_ENTRIES; i++) {
        entry_t *e = &ents[i];
        if (e->base && e->side == side && e->base == base && e->strength == strength &&
            same_file(&e->id, id)) {
            e->used = ++clock_;
            *out = sdn_ckpt_ref(e->patched);
            *hit = true;
            pthread_mutex_unlock(&mu);
            return 0;
        }
        if (!e->base || (victim->base && e->used < victim->used))
            victim = e;
    }
    int rc = make(ctx, out);
    if (!rc) {
        sdn_ckpt_unref(victim->base); /* values using the old entry keep their own references */
        sdn_ckpt_unref(victim->patched);
        *victim = (entry_t){.side = side,
                            .base = sdn_ckpt_ref(base),
                            .id = *id,
                            .strength = strength,
                            .patched = sdn_ckpt_ref(*out),
                            .used = ++clock_};
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

void sdn_lora_cache_clear(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < LORA_CACHE_ENTRIES; i++) {
        sdn_ckpt_unref(ents[i].base);
        sdn_ckpt_unref(ents[i].patched);
        ents[i] = (entry_t){0};
    }
    pthread_mutex_unlock(&mu);
}
