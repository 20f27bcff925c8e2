/* ImageClassifierLoader and ImageClassify: a ResNet classifier from models/classifiers/ and
 * the top-k labels of every image of a batch, shown in the editor as UI text and passed on as
 * STRING/FLOAT outputs and as a CLASSIFICATION for ClassifierThreshold (node_gate.c). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "classify/classify.h"
#include "path.h"
#include "sd/sd_nodes.h"

#define SUBDIR "classifiers"
#define CHUNK 8 /* images per forward pass: bounds activation memory, paces progress */

static const char *const model_exts[] = {".safetensors", ".sft", NULL};

/* ------------------------------------------------------------------ values */

static void holder_free(void *p)
{
    sdn_ckpt_unref(p);
}

static void model_unref(void *p)
{
    cls_model_unref(p);
}

/* The cache's reload: the classifier file again (the holder's path). */
static int reload_classifier(sdn_ckpt_t *h, char *err, size_t errsz)
{
    cls_model_t *m = NULL;
    int rc = cls_model_load(h->path, h->name, &m, err, errsz);
    if (rc)
        return rc;
    h->extra = m;
    h->bytes = m->bytes;
    return 0;
}

node_value_t *clsn_classifier_value(cls_model_t *m)
{
    sdn_ckpt_t *h = m ? sdn_ckpt_new(m->path ? m->path : "", m->name) : NULL;
    if (!h) {
        cls_model_unref(m);
        return NULL;
    }
    h->extra = m;
    h->extra_free = model_unref;
    h->bytes = m->bytes;
    /* A classifier built in memory (tests) cannot be read again: it stays resident. */
    if (m->path && *m->path)
        h->reload = reload_classifier;
    else
        h->pinned_forever = true;
    sdn_ckpt_adopt(h);
    return node_value_object(h, holder_free, "CLASSIFIER");
}

static sdn_ckpt_t *in_holder(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    if (!v || v->kind != NODE_V_OBJECT || !v->u.obj.tag || strcmp(v->u.obj.tag, "CLASSIFIER"))
        return NULL;
    return v->u.obj.ptr;
}

cls_model_t *clsn_use_classifier(node_ctx_t *ctx, const char *name)
{
    sdn_ckpt_t *h = in_holder(ctx, name);
    if (!h) {
        snprintf(ctx->err, sizeof ctx->err, "the %s input is not a CLASSIFIER", name);
        return NULL;
    }
    if (sdn_use(h, ctx->err, sizeof ctx->err))
        return NULL;
    return h->extra;
}

void clsn_unuse_classifier(node_ctx_t *ctx, const char *name)
{
    sdn_unuse(in_holder(ctx, name));
}

static void result_free(void *p)
{
    clsn_result_t *r = p;
    if (!r)
        return;
    cls_model_unref(r->model);
    free(r->probs);
    free(r);
}

node_value_t *clsn_result_value(cls_model_t *m, float *probs, int64_t batch)
{
    clsn_result_t *r = calloc(1, sizeof *r);
    if (!r) {
        cls_model_unref(m);
        free(probs);
        return NULL;
    }
    *r = (clsn_result_t){.model = m, .probs = probs, .batch = batch, .classes = m ? m->labels.n : 0};
    return node_value_object(r, result_free, "CLASSIFICATION");
}

const clsn_result_t *clsn_in_result(const node_ctx_t *ctx, const char *name)
{
    const node_value_t *v = node_in(ctx, name);
    if (!v || v->kind != NODE_V_OBJECT || !v->u.obj.tag || strcmp(v->u.obj.tag, "CLASSIFICATION"))
        return NULL;
    return v->u.obj.ptr;
}

/* ------------------------------------------------------------------ ImageClassifierLoader */

static void models_root(const node_env_t *env, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/%s", env && env->models_dir ? env->models_dir : "models", SUBDIR);
}

static int list_classifiers(const node_env_t *env, node_strlist_t *out)
{
    char dir[PATH_MAX];
    models_root(env, dir, sizeof dir);
    return node_list_files(dir, model_exts, true, out);
}

/* Fingerprint: size and modification time of the model file and of each labels file that
 * could sit beside it, so fixing a labels file re-runs the loader. */
static int loader_changed(const node_env_t *env, const node_args_t *args, base_buf_t *out)
{
    const char *name = json_str(node_args_get(args, "classifier_name"));
    if (!name)
        return BASE_E_INVAL;
    char root[PATH_MAX], *path = NULL;
    models_root(env, root, sizeof root);
    int rc = base_path_resolve(root, name, true, &path);
    if (rc)
        return rc;
    static const char *const sfx[] = {"", ".labels.txt", ".txt", ".labels.json", ".json"};
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - path) : strlen(path);
    for (size_t i = 0; !rc && i < sizeof sfx / sizeof sfx[0]; i++) {
        char p[PATH_MAX];
        if (i == 0)
            snprintf(p, sizeof p, "%s", path);
        else
            snprintf(p, sizeof p, "%.*s%s", (int)stem, path, sfx[i]);
        struct stat st;
        if (stat(p, &st) != 0)
            rc = base_buf_puts(out, "-;");
        else
            rc = base_buf_printf(out, "%lld:%lld.%09ld;", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                                 st.st_mtim.tv_nsec);
    }
    free(path);
    return rc;
}

static int loader_execute(node_ctx_t *ctx)
{
    const char *name = node_in_str(ctx, "classifier_name");
    char root[PATH_MAX], *path = NULL;
    models_root(ctx->env, root, sizeof root);
    int rc = base_path_resolve(root, name, true, &path);
    if (rc == BASE_E_NOENT)
        return node_fail(ctx, "classifier file not found: models/%s/%s", SUBDIR, name);
    if (rc)
        return node_fail(ctx, "invalid classifier name '%s': %s", name, base_strerror(rc));
    cls_model_t *m = NULL;
    rc = cls_model_load(path, name, &m, ctx->err, sizeof ctx->err);
    free(path);
    if (rc)
        return BASE_E_NODE_FAILED;
    node_value_t *v = clsn_classifier_value(m);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

/* ------------------------------------------------------------------ ImageClassify */

static int on_chunk(void *c, int64_t done, int64_t total)
{
    return node_progress(c, (uint64_t)done, (uint64_t)total);
}

/* One image's top-k as "label: score" lines (scores to 4 decimals). */
static int format_topk(base_buf_t *b, const cls_model_t *m, const float *p, const size_t *idx, size_t k)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < k; i++)
        rc = base_buf_printf(b, "%s%s: %.4f", i ? "\n" : "", m->labels.items[idx[i]], (double)p[idx[i]]);
    return rc;
}

static int classify_pinned(node_ctx_t *ctx, cls_model_t *m);

static int classify_execute(node_ctx_t *ctx)
{
    cls_model_t *m = clsn_use_classifier(ctx, "classifier");
    if (!m)
        return BASE_E_NODE_FAILED;
    int rc = classify_pinned(ctx, m);
    clsn_unuse_classifier(ctx, "classifier");
    return rc;
}

/* ImageClassify with its classifier pinned in memory. */
static int classify_pinned(node_ctx_t *ctx, cls_model_t *m)
{
    const ts_tensor_t *image = node_in_tensor(ctx, "image");
    if (!image)
        return node_fail(ctx, "ImageClassify: no image");
    int64_t k64 = node_in_i64(ctx, "top_k");
    size_t classes = m->labels.n, k = k64 < 1 ? 1 : (size_t)k64 > classes ? classes : (size_t)k64;
    float *probs = NULL;
    int64_t batch = 0;
    int rc = cls_model_classify(m, image, CHUNK, on_chunk, ctx, &probs, &batch, ctx->err, sizeof ctx->err);
    if (rc == BASE_E_INTERRUPTED)
        return rc;
    if (rc)
        return BASE_E_NODE_FAILED;

    size_t *idx = malloc(k * sizeof *idx), best = 0;
    base_buf_t all = BASE_BUF_INIT, one = BASE_BUF_INIT;
    json_t *ui = json_new_object(), *texts = json_new_array();
    bool ok = ui && texts;
    if (ok) {
        ok = json_object_set(ui, "text", texts) == 0; /* ui owns texts from here, even on failure */
    } else {
        json_free(texts);
        texts = NULL;
    }
    ok = ok && idx;
    for (int64_t b = 0; ok && b < batch; b++) {
        const float *p = probs + (size_t)b * classes;
        cls_topk(p, classes, k, idx);
        if (b == 0)
            best = idx[0];
        one.len = 0;
        if (one.data)
            one.data[0] = '\0';
        if (batch > 1)
            ok = base_buf_printf(&one, "image %lld\n", (long long)(b + 1)) == 0;
        ok = ok && format_topk(&one, m, p, idx, k) == 0;
        ok = ok && base_buf_printf(&all, "%s%.*s", b ? "\n\n" : "", (int)one.len, one.data ? one.data : "") == 0;
        ok = ok && json_array_push(texts, json_new_stringn(one.data ? one.data : "", one.len)) == 0;
    }
    node_value_t *v_labels = ok ? node_value_string(all.data ? all.data : "") : NULL;
    node_value_t *v_top = ok ? node_value_string(m->labels.items[best]) : NULL;
    node_value_t *v_score = ok ? node_value_float((double)probs[best]) : NULL;
    free(idx);
    base_buf_free(&all);
    base_buf_free(&one);
    node_value_t *v_res = ok ? clsn_result_value(cls_model_ref(m), probs, batch) : NULL;
    if (!ok)
        free(probs);
    if (!v_labels || !v_top || !v_score || !v_res) {
        node_value_unref(v_labels);
        node_value_unref(v_top);
        node_value_unref(v_score);
        node_value_unref(v_res);
        json_free(ui);
        return node_fail(ctx, "out of memory");
    }
    node_set_out(ctx, 0, v_labels);
    node_set_out(ctx, 1, v_top);
    node_set_out(ctx, 2, v_score);
    node_set_out(ctx, 3, v_res);
    ctx->ui = ui;
    return 0;
}

/* ------------------------------------------------------------------ tables */

static const node_input_t loader_in[] = {
    {.name = "classifier_name", .type = "COMBO", .section = NODE_REQUIRED, .options_fn = list_classifiers,
     .tooltip = "A torchvision ResNet (18/34/50/101/152) in safetensors format from models/classifiers/, with its "
                "class names beside it in <name>.labels.txt (one per line) or <name>.json (a list)."},
};
static const node_output_t loader_out[] = {{.type = "CLASSIFIER"}};

const node_def_t node_def_ImageClassifierLoader = {
    .name = "ImageClassifierLoader", .display_name = "Load Image Classifier",
    .category = "image/classification",
    .description = "Loads an ImageNet-style image classifier (torchvision ResNet) and its labels.",
    .inputs = loader_in, .n_inputs = 1, .outputs = loader_out, .n_outputs = 1, .flags = NODE_HEAVY,
    .execute = loader_execute, .is_changed = loader_changed,
};

static const node_input_t classify_in[] = {
    {.name = "classifier", .type = "CLASSIFIER", .section = NODE_REQUIRED},
    {.name = "image", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "top_k", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .idef = BASE_INT(5), .imin = BASE_INT(1), .imax = BASE_INT(100),
     .tooltip = "How many of the best labels to list per image."},
};
static const node_output_t classify_out[] = {
    {.type = "STRING", .name = "labels",
     .tooltip = "The top_k labels of each image, one \"label: score\" per line (images of a batch are separated "
                "by a blank line)."},
    {.type = "STRING", .name = "top_label", .tooltip = "The best label of the first image."},
    {.type = "FLOAT", .name = "top_score", .tooltip = "Its probability (0 to 1)."},
    {.type = "CLASSIFICATION", .name = "classification",
     .tooltip = "Every class probability of every image, for ClassifierThreshold."},
};

const node_def_t node_def_ImageClassify = {
    .name = "ImageClassify", .display_name = "Classify Image", .category = "image/classification",
    .description = "Classifies every image of a batch (resize 256, centre crop 224, ImageNet normalisation) and "
                   "shows the top labels with their probabilities.",
    .inputs = classify_in, .n_inputs = 3, .outputs = classify_out, .n_outputs = 4,
    .flags = NODE_OUTPUT_NODE | NODE_HEAVY, .execute = classify_execute,
};
