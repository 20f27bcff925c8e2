/* The demo classifier: a torchvision ResNet layout filled with deterministic random weights
 * (the recipe is in classify.h and tests/reference/resnet.py reproduces it), in memory for
 * tests or written as safetensors with a labels file, so the classification workflows run
 * without downloading a model. Its predictions mean nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "err.h"

void cls_demo_config(cls_resnet_config_t *c)
{
    cls_resnet_config_std(c, 18, 10);
    c->stem = 8;
    for (int l = 0; l < CLS_LAYERS; l++)
        c->inner[l] = c->out[l] = 8 << l;
}

/* ------------------------------------------------------------------ the layout as a list */

typedef struct {
    char *name;
    int ndim;
    int64_t shape[TS_MAX_DIMS];
    int64_t numel;
    void *data; /* float, or one int64 for num_batches_tracked */
} ent_t;

typedef struct {
    ent_t *e;
    size_t n, cap;
} list_t;

static void list_free(list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->e[i].name);
        free(l->e[i].data);
    }
    free(l->e);
    memset(l, 0, sizeof *l);
}

static int collect(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    list_t *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 128;
        ent_t *e = realloc(l->e, cap * sizeof *e);
        if (!e)
            return BASE_E_NOMEM;
        l->e = e;
        l->cap = cap;
    }
    ent_t *e = &l->e[l->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name)))
        return BASE_E_NOMEM;
    l->n++;
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= shape[i];
    }
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* splitmix64 of the run seed and the tensor's index, as the SD demo checkpoint does. */
static uint64_t tensor_seed(uint64_t seed, size_t index)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Entry i's values (float32 arithmetic, matching the reference script). */
static int generate(ent_t *e, uint64_t seed, size_t i, char *err, size_t errsz)
{
    if (ends_with(e->name, "num_batches_tracked")) {
        e->data = calloc(1, sizeof(int64_t));
        return e->data ? 0 : BASE_E_NOMEM;
    }
    float *v = malloc((size_t)e->numel * sizeof *v);
    if (!(e->data = v))
        return BASE_E_NOMEM;
    const ts_device_t cpu = {TS_CPU, 0};
    ts_tensor_t *t = NULL;
    int rc = ts_randn(&t, e->shape, e->ndim, tensor_seed(seed, i), cpu);
    if (!rc)
        rc = ts_to_host(t, TS_F32, v, (size_t)e->numel * sizeof *v);
    ts_free(t);
    if (rc) {
        snprintf(err, errsz, "demo classifier: random weights for '%s': %s", e->name, ts_last_error());
        return rc;
    }
    bool bn = strstr(e->name, "bn") || strstr(e->name, "downsample.1");
    if (e->ndim >= 2) { /* conv and fc weights: He scaling */
        int64_t fan_in = 1;
        for (int k = 1; k < e->ndim; k++)
            fan_in *= e->shape[k];
        const float s = (float)sqrt(2.0 / (double)fan_in);
        for (int64_t j = 0; j < e->numel; j++)
            v[j] *= s;
    } else if (bn && ends_with(e->name, ".weight")) {
        for (int64_t j = 0; j < e->numel; j++)
            v[j] = 1.0f + 0.1f * v[j];
    } else if (bn && ends_with(e->name, ".running_var")) {
        for (int64_t j = 0; j < e->numel; j++)
            v[j] = 1.0f + 0.5f * fabsf(v[j]);
    } else { /* biases and running means */
        for (int64_t j = 0; j < e->numel; j++)
            v[j] = 0.1f * v[j];
    }
    return 0;
}

static int build(const cls_resnet_config_t *c, uint64_t seed, list_t *l, char *err, size_t errsz)
{
    memset(l, 0, sizeof *l);
    int rc = cls_resnet_keys(c, collect, l);
    if (rc) {
        snprintf(err, errsz, rc == BASE_E_NOMEM ? "out of memory" : "demo classifier: invalid config");
        list_free(l);
        return rc;
    }
    for (size_t i = 0; !rc && i < l->n; i++)
        if ((rc = generate(&l->e[i], seed, i, err, errsz)) == BASE_E_NOMEM)
            snprintf(err, errsz, "out of memory");
    if (rc)
        list_free(l);
    return rc;
}

int cls_demo_weights(const cls_resnet_config_t *c, uint64_t seed, sdw_t **out, char *err, size_t errsz)
{
    if (!out)
        return BASE_E_INVAL;
    *out = NULL;
    list_t l;
    int rc = build(c, seed, &l, err, errsz);
    if (rc)
        return rc;
    sdw_t *w = NULL;
    if ((rc = sdw_new(&w)))
        snprintf(err, errsz, "out of memory");
    const ts_device_t cpu = {TS_CPU, 0};
    for (size_t i = 0; !rc && i < l.n; i++) {
        ent_t *e = &l.e[i];
        bool i64 = ends_with(e->name, "num_batches_tracked");
        ts_tensor_t *t = NULL;
        if ((rc = ts_from_host(&t, e->data, i64 ? TS_I64 : TS_F32, e->shape, e->ndim, cpu)))
            snprintf(err, errsz, "demo classifier: '%s': %s", e->name, ts_last_error());
        else if ((rc = sdw_put(w, e->name, t)))
            snprintf(err, errsz, "demo classifier: cannot store '%s'", e->name);
    }
    list_free(&l);
    if (rc) {
        sdw_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ------------------------------------------------------------------ files */

static const char *const cifar10[] = {"airplane", "automobile", "bird", "cat", "deer",
                                      "dog",      "frog",       "horse", "ship", "truck"};

static int write_labels(const char *model_path, int n, char *err, size_t errsz)
{
    const char *slash = strrchr(model_path, '/'), *dot = strrchr(model_path, '.');
    size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - model_path) : strlen(model_path);
    size_t cap = stem + 16;
    char *path = malloc(cap), *tmp = malloc(cap + 8);
    if (!path || !tmp) {
        free(path);
        free(tmp);
        snprintf(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    snprintf(path, cap, "%.*s.labels.txt", (int)stem, model_path);
    snprintf(tmp, cap + 8, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = f ? 0 : BASE_E_IO;
    for (int i = 0; !rc && i < n; i++)
        if ((n == 10 ? fprintf(f, "%s\n", cifar10[i]) : fprintf(f, "class %d\n", i)) < 0)
            rc = BASE_E_IO;
    if (f && fclose(f) && !rc)
        rc = BASE_E_IO;
    if (!rc && rename(tmp, path))
        rc = BASE_E_IO;
    if (rc) {
        remove(tmp);
        snprintf(err, errsz, "cannot write %s", path);
    }
    free(path);
    free(tmp);
    return rc;
}

int cls_demo_write(const char *path, const cls_resnet_config_t *c, uint64_t seed, char *err, size_t errsz)
{
    if (!path)
        return BASE_E_INVAL;
    cls_resnet_config_t demo;
    if (!c) {
        cls_demo_config(&demo);
        c = &demo;
    }
    list_t l;
    int rc = build(c, seed, &l, err, errsz);
    if (rc)
        return rc;
    st_write_entry_t *ents = calloc(l.n, sizeof *ents);
    if (!ents) {
        list_free(&l);
        snprintf(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    for (size_t i = 0; i < l.n; i++) {
        const ent_t *e = &l.e[i];
        ents[i] = (st_write_entry_t){.name = e->name,
                                     .dtype = ends_with(e->name, "num_batches_tracked") ? ST_I64 : ST_F32,
                                     .ndim = e->ndim,
                                     .shape = {0},
                                     .data = e->data};
        memcpy(ents[i].shape, e->shape, sizeof e->shape);
    }
    static const char *const meta[] = {"format", "pt", "weft.demo", "random ResNet weights: predictions mean nothing",
                                       NULL};
    rc = st_write(path, ents, l.n, meta, err, errsz);
    free(ents);
    list_free(&l);
    if (!rc)
        rc = write_labels(path, c->num_classes, err, errsz);
    return rc;
}

int node_demo_classifier_write(const char *path, char *err, size_t errsz)
{
    return cls_demo_write(path, NULL, 1, err, errsz);
}
