/* The weights store: the float32 tensors of one model component, looked up by name, each
 * with a "used" mark so a loader can prove it consumed every tensor it was given (an unused
 * tensor means the detected architecture differs from the file's). Tensors read from a
 * file keep that file's mapping alive, so the file object may be closed right after. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "map.h"
#include "sd/sd.h"

typedef struct {
    char *name;      /* owned; the file's name minus the store's prefix */
    ts_tensor_t *t;  /* owned reference */
    bool used;       /* set with atomics: models may fetch from several threads */
} sdw_ent_t;

struct sdw_s {
    sdw_ent_t *ents; /* insertion order */
    size_t n, cap;
    base_map_t index; /* name -> (void *)(index + 1); keys are ents[i].name */
    char *prefix;     /* owned; put back in front of names in messages */
};

/* ComfyUI's SD1.x text-encoder fix-up: "cond_stage_model.transformer.X" without
 * "text_model." becomes "cond_stage_model.transformer.text_model.X". */
static const char clip_root[] = "cond_stage_model.transformer.";
static const char clip_model[] = "text_model.";

/* VAE mid-block attention weights that some converted files store as [C,C]. */
static const char *const vae_attn[] = {
    "mid.attn_1.q.weight",
    "mid.attn_1.k.weight",
    "mid.attn_1.v.weight",
    "mid.attn_1.proj_out.weight",
};

static void set_err(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

static bool starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static bool is_vae_attn(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof vae_attn / sizeof vae_attn[0]; i++) {
        size_t k = strlen(vae_attn[i]);
        if (n >= k && strcmp(name + n - k, vae_attn[i]) == 0 && (n == k || name[n - k - 1] == '.'))
            return true;
    }
    return false;
}

static const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = 0;
    buf[k++] = '[';
    for (int i = 0; i < ndim && k < cap; i++) {
        if (shape[i] < 0)
            k += (size_t)snprintf(buf + k, cap - k, i ? ",*" : "*");
        else
            k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    }
    if (k + 2 <= cap) {
        buf[k++] = ']';
        buf[k] = '\0';
    } else if (cap >= 4) {
        strcpy(buf + cap - 4, "...");
    }
    return buf;
}

/* ------------------------------------------------------------------ the store */

int sdw_new(sdw_t **out)
{
    if (!out)
        return BASE_E_INVAL;
    sdw_t *w = calloc(1, sizeof *w);
    if (!w || !(w->prefix = strdup(""))) {
        free(w);
        return BASE_E_NOMEM;
    }
    *out = w;
    return 0;
}

void sdw_free(sdw_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->ents[i].name);
        ts_free(w->ents[i].t);
    }
    free(w->ents);
    base_map_free(&w->index);
    free(w->prefix);
    free(w);
}

/* Takes t (released on failure). BASE_E_EXIST when the name is taken. */
static int put(sdw_t *w, const char *name, size_t namelen, ts_tensor_t *t)
{
    int rc = 0;
    char *copy = NULL;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        sdw_ent_t *e = realloc(w->ents, cap * sizeof *e);
        if (!e) {
            rc = BASE_E_NOMEM;
            goto fail;
        }
        w->ents = e;
        w->cap = cap;
    }
    if (!(copy = strndup(name, namelen))) {
        rc = BASE_E_NOMEM;
        goto fail;
    }
    if (base_map_get(&w->index, copy, NULL)) {
        rc = BASE_E_EXIST;
        goto fail;
    }
    if ((rc = base_map_put(&w->index, copy, (void *)(uintptr_t)(w->n + 1))))
        goto fail;
    w->ents[w->n++] = (sdw_ent_t){copy, t, false};
    return 0;
fail:
    free(copy);
    ts_free(t);
    return rc;
}

int sdw_put(sdw_t *w, const char *name, ts_tensor_t *t)
{
    if (!w || !name || !*name || !t) {
        ts_free(t);
        return BASE_E_INVAL;
    }
    int rc = put(w, name, strlen(name), t);
    return rc == BASE_E_EXIST ? BASE_E_INVAL : rc;
}

size_t sdw_count(const sdw_t *w)
{
    return w ? w->n : 0;
}

static sdw_ent_t *find(const sdw_t *w, const char *name)
{
    void *v = NULL;
    if (!w || !name || !base_map_get(&w->index, name, &v))
        return NULL;
    return &w->ents[(uintptr_t)v - 1];
}

ts_tensor_t *sdw_get(sdw_t *w, const char *name)
{
    sdw_ent_t *e = find(w, name);
    if (!e)
        return NULL;
    __atomic_store_n(&e->used, true, __ATOMIC_RELAXED);
    return e->t;
}

ts_tensor_t *sdw_getf(sdw_t *w, const char *fmt, ...)
{
    char small[256], *name = small;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (k < 0)
        return NULL;
    if ((size_t)k >= sizeof small) {
        if (!(name = malloc((size_t)k + 1)))
            return NULL;
        va_start(ap, fmt);
        vsnprintf(name, (size_t)k + 1, fmt, ap);
        va_end(ap);
    }
    ts_tensor_t *t = sdw_get(w, name);
    if (name != small)
        free(name);
    return t;
}

int sdw_need(sdw_t *w, const char *name, const int64_t *shape, int ndim, ts_tensor_t **out, char *err,
             size_t errsz)
{
    if (!w || !name || !out || ndim < 0 || ndim > TS_MAX_DIMS || (ndim && !shape)) {
        set_err(err, errsz, "sdw_need: bad arguments");
        return BASE_E_INVAL;
    }
    sdw_ent_t *e = find(w, name);
    if (!e) {
        set_err(err, errsz, "tensor '%s%s' is missing from the model", w->prefix, name);
        return BASE_E_MODEL_LAYOUT;
    }
    int64_t have[TS_MAX_DIMS];
    int hn = ts_shape(e->t, have);
    bool match = hn == ndim;
    for (int i = 0; match && i < ndim; i++)
        match = shape[i] < 0 || shape[i] == have[i];
    if (!match) {
        char hs[200], ws[200];
        set_err(err, errsz, "tensor '%s%s' has shape %s, expected %s", w->prefix, name,
                hn >= 0 ? fmt_shape(hs, sizeof hs, have, hn) : "(unknown)", fmt_shape(ws, sizeof ws, shape, ndim));
        return BASE_E_MODEL_LAYOUT;
    }
    __atomic_store_n(&e->used, true, __ATOMIC_RELAXED);
    *out = e->t;
    return 0;
}

bool sdw_has_prefix(const sdw_t *w, const char *prefix)
{
    if (!w || !prefix)
        return false;
    for (size_t i = 0; i < w->n; i++)
        if (starts_with(w->ents[i].name, prefix))
            return true;
    return false;
}

size_t sdw_unused(const sdw_t *w, const char ***names)
{
    if (!names)
        return 0;
    *names = NULL;
    size_t k = 0;
    for (size_t i = 0; w && i < w->n; i++)
        k += !__atomic_load_n(&w->ents[i].used, __ATOMIC_RELAXED);
    if (!k || !(*names = malloc(k * sizeof **names)))
        return 0;
    k = 0;
    for (size_t i = 0; i < w->n; i++)
        if (!__atomic_load_n(&w->ents[i].used, __ATOMIC_RELAXED))
            (*names)[k++] = w->ents[i].name;
    return k;
}

static size_t ts_elem_size(ts_dtype_t d)
{
    switch (d) {
    case TS_F64:
    case TS_I64:
        return 8;
    case TS_F32:
    case TS_I32:
        return 4;
    case TS_F16:
    case TS_BF16:
        return 2;
    case TS_U8:
    case TS_BOOL:
        return 1;
    }
    return 0;
}

size_t sdw_bytes(const sdw_t *w)
{
    size_t total = 0;
    for (size_t i = 0; w && i < w->n; i++) {
        int64_t n = ts_numel(w->ents[i].t);
        if (n > 0)
            total += (size_t)n * ts_elem_size(ts_dtype(w->ents[i].t));
    }
    return total;
}

/* ------------------------------------------------------------------ from a file */

/* [C,C] -> [C,C,1,1]; takes *t and replaces it. */
static int to_conv1x1(ts_tensor_t **t, const char *name, char *err, size_t errsz)
{
    int64_t s[TS_MAX_DIMS];
    if (ts_shape(*t, s) != 2)
        return 0;
    s[2] = s[3] = 1;
    ts_tensor_t *r = NULL;
    int rc = ts_reshape(&r, *t, s, 4);
    if (rc) {
        set_err(err, errsz, "tensor '%s': %s", name, ts_last_error());
        return rc;
    }
    ts_free(*t);
    *t = r;
    return 0;
}

int sdw_from_file(sdw_t **out, st_file_t *f, const char *prefix, char *err, size_t errsz)
{
    if (!out || !f) {
        set_err(err, errsz, "sdw_from_file: no file");
        return BASE_E_INVAL;
    }
    if (!prefix)
        prefix = "";
    if (err && errsz)
        err[0] = '\0';
    sdw_t *w = calloc(1, sizeof *w);
    int rc = w && (w->prefix = strdup(prefix)) ? 0 : BASE_E_NOMEM;
    size_t plen = strlen(prefix), cl = strlen(clip_root);
    char *full = NULL;
    for (size_t i = 0; !rc && i < st_count(f); i++) {
        const st_tensor_t *e = st_at(f, i);
        const char *name = e->name;
        if (starts_with(name, clip_root) && !starts_with(name + cl, clip_model)) {
            size_t n = strlen(name) + sizeof clip_model;
            if (!(full = malloc(n))) {
                rc = BASE_E_NOMEM;
                break;
            }
            snprintf(full, n, "%s%s%s", clip_root, clip_model, name + cl);
            name = full;
        }
        if (!starts_with(name, prefix) || !name[plen]) {
            free(full);
            full = NULL;
            continue;
        }
        ts_tensor_t *t = NULL;
        if ((rc = st_to_tensor(f, e, &t, err, errsz)))
            break;
        if (is_vae_attn(name) && (rc = to_conv1x1(&t, e->name, err, errsz))) {
            ts_free(t);
            break;
        }
        rc = put(w, name + plen, strlen(name + plen), t);
        if (rc == BASE_E_EXIST) {
            set_err(err, errsz, "tensor '%s' is in the file twice (with and without '%s')", name, clip_model);
            rc = BASE_E_MODEL_FORMAT;
        }
        free(full);
        full = NULL;
    }
    free(full);
    if (rc) {
        if (rc == BASE_E_NOMEM && err && errsz && !err[0])
            set_err(err, errsz, "out of memory loading the weights");
        sdw_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ------------------------------------------------------------------ sharing (LoRA) */

int sdw_each(const sdw_t *w, sdw_each_fn cb, void *ctx)
{
    if (!w || !cb)
        return BASE_E_INVAL;
    for (size_t i = 0; i < w->n; i++) {
        int rc = cb(ctx, w->ents[i].name, w->ents[i].t);
        if (rc)
            return rc;
    }
    return 0;
}

int sdw_share(sdw_t **out, const sdw_t *w)
{
    if (!out || !w)
        return BASE_E_INVAL;
    *out = NULL;
    sdw_t *s = calloc(1, sizeof *s);
    if (!s || !(s->prefix = strdup(w->prefix))) {
        free(s);
        return BASE_E_NOMEM;
    }
    for (size_t i = 0; i < w->n; i++) {
        const char *name = w->ents[i].name;
        int rc = put(s, name, strlen(name), ts_ref(w->ents[i].t));
        if (rc) {
            sdw_free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

int sdw_replace(sdw_t *w, const char *name, ts_tensor_t *t)
{
    sdw_ent_t *e = t ? find(w, name) : NULL;
    if (!e) {
        ts_free(t);
        return t ? BASE_E_NOENT : BASE_E_INVAL;
    }
    ts_free(e->t);
    e->t = t;
    return 0;
}
