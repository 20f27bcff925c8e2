/* A loaded classifier: the ResNet of a safetensors file, its labels and its preprocessing,
 * refcounted so node values and the model cache can share it; and classification of IMAGE
 * batches (preprocess, forward, softmax) with the top-k ranking. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "err.h"

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cls_model_wrap(cls_resnet_t *net, cls_labels_t *labels, const cls_pre_t *pre, const char *name,
                   cls_model_t **out, char *err, size_t errsz)
{
    const cls_resnet_config_t *c = cls_resnet_config(net);
    if (!net || !labels || !pre || !out || (size_t)c->num_classes != labels->n) {
        snprintf(err, errsz, "cls_model_wrap: %s", net && labels ? "label count differs from the class count"
                                                                  : "bad arguments");
        cls_resnet_free(net);
        cls_labels_free(labels);
        return BASE_E_INVAL;
    }
    cls_model_t *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name ? name : "")) || !(m->path = strdup(""))) {
        if (m)
            free(m->name);
        free(m);
        cls_resnet_free(net);
        cls_labels_free(labels);
        snprintf(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    atomic_init(&m->refs, 1);
    m->net = net;
    m->labels = *labels;
    memset(labels, 0, sizeof *labels);
    m->pre = *pre;
    m->bytes = cls_resnet_bytes(net);
    *out = m;
    return 0;
}

/* Where the ResNet's names start: torchvision's own state dicts have none; DataParallel
 * checkpoints prefix "module.", some wrappers "model.". */
static const char *key_prefix(const st_file_t *f)
{
    static const char *const prefixes[] = {"module.", "model."};
    if (st_find(f, "conv1.weight"))
        return "";
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        char k[32];
        snprintf(k, sizeof k, "%sconv1.weight", prefixes[i]);
        if (st_find(f, k))
            return prefixes[i];
    }
    return "";
}

int cls_model_load(const char *path, const char *name, cls_model_t **out, char *err, size_t errsz)
{
    if (!path || !out)
        return BASE_E_INVAL;
    *out = NULL;
    char msg[768] = "";
    st_file_t *f = NULL;
    sdw_t *w = NULL;
    cls_resnet_t *net = NULL;
    cls_labels_t labels = {0};
    cls_pre_t pre;
    cls_pre_default(&pre);
    int rc = st_open(&f, path, msg, sizeof msg);
    if (!rc)
        rc = cls_pre_from_meta(&pre, f, msg, sizeof msg);
    if (!rc)
        rc = sdw_from_file(&w, f, key_prefix(f), msg, sizeof msg);
    st_close(f); /* the store keeps the mapping alive */
    if (!rc) {
        rc = cls_resnet_load(&net, w, msg, sizeof msg); /* takes w */
        w = NULL;
    }
    if (rc) {
        sdw_free(w);
        snprintf(err, errsz, "classifier %s: %s", base_name(path), msg[0] ? msg : base_strerror(rc));
        return rc;
    }
    /* Label errors already name their file. */
    if ((rc = cls_labels_for_model(path, (size_t)cls_resnet_config(net)->num_classes, &labels, err, errsz))) {
        cls_resnet_free(net);
        return rc;
    }
    rc = cls_model_wrap(net, &labels, &pre, name ? name : base_name(path), out, err, errsz);
    if (!rc) {
        char *p = strdup(path);
        if (!p) {
            cls_model_unref(*out);
            *out = NULL;
            snprintf(err, errsz, "out of memory");
            return BASE_E_NOMEM;
        }
        free((*out)->path);
        (*out)->path = p;
    }
    return rc;
}

cls_model_t *cls_model_ref(cls_model_t *m)
{
    if (m)
        atomic_fetch_add(&m->refs, 1);
    return m;
}

void cls_model_unref(cls_model_t *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    cls_resnet_free(m->net);
    cls_labels_free(&m->labels);
    free(m->path);
    free(m->name);
    free(m);
}

/* ------------------------------------------------------------------ classification */

/* Probabilities of images [from, to) of the batch into dst. */
static int classify_chunk(const cls_model_t *m, const ts_tensor_t *image, int64_t from, int64_t to, float *dst,
                          char *err, size_t errsz)
{
    ts_tensor_t *part = NULL, *x = NULL, *logits = NULL, *probs = NULL;
    int rc = ts_slice(&part, image, 0, from, to);
    if (rc) {
        snprintf(err, errsz, "classifier input: %s", ts_last_error());
        return rc;
    }
    rc = cls_preprocess(part, &m->pre, &x, err, errsz);
    ts_free(part);
    if (!rc)
        rc = cls_resnet_forward(m->net, x, CLS_STAGE_LOGITS, &logits, err, errsz);
    ts_free(x);
    if (!rc && (rc = ts_softmax(&probs, logits, 1)))
        snprintf(err, errsz, "classifier softmax: %s", ts_last_error());
    ts_free(logits);
    size_t k = (size_t)m->labels.n;
    if (!rc && (rc = ts_to_host(probs, TS_F32, dst, (size_t)(to - from) * k * sizeof *dst)))
        snprintf(err, errsz, "classifier output: %s", ts_last_error());
    ts_free(probs);
    return rc;
}

int cls_model_classify(const cls_model_t *m, const ts_tensor_t *image, int64_t chunk, cls_check_fn check,
                       void *check_ctx, float **probs, int64_t *batch, char *err, size_t errsz)
{
    if (!m || !image || !probs || !batch) {
        snprintf(err, errsz, "cls_model_classify: bad arguments");
        return BASE_E_INVAL;
    }
    *probs = NULL;
    *batch = 0;
    int64_t n = ts_ndim(image) == 4 ? ts_size(image, 0) : -1;
    if (n < 1) {
        snprintf(err, errsz, n == 0 ? "the image batch is empty: there is nothing to classify"
                                    : "the classifier takes an IMAGE of shape [batch, height, width, channels]");
        return BASE_E_INVAL;
    }
    size_t k = m->labels.n;
    float *p = malloc((size_t)n * k * sizeof *p);
    if (!p) {
        snprintf(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    if (chunk < 1)
        chunk = n;
    int rc = 0;
    for (int64_t i = 0; !rc && i < n; i += chunk) {
        int64_t to = i + chunk < n ? i + chunk : n;
        rc = classify_chunk(m, image, i, to, p + (size_t)i * k, err, errsz);
        if (!rc && check)
            rc = check(check_ctx, to, n);
    }
    if (rc) {
        free(p);
        return rc;
    }
    *probs = p;
    *batch = n;
    return 0;
}

/* a ranks before b: higher score, then lower index; NaN after every number. */
static bool before(const float *s, size_t a, size_t b)
{
    bool na = isnan(s[a]), nb = isnan(s[b]);
    if (na != nb)
        return nb;
    if (!na && s[a] != s[b])
        return s[a] > s[b];
    return a < b;
}

void cls_topk(const float *scores, size_t n, size_t k, size_t *idx)
{
    if (k > n)
        k = n;
    if (!k)
        return;
    /* Insertion into a sorted list of k: O(n k), fine for k <= 100. */
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        if (have == k && !before(scores, i, idx[k - 1]))
            continue;
        size_t j = have < k ? have++ : k - 1;
        while (j > 0 && before(scores, i, idx[j - 1])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}
