/* ClassifierThreshold and ImageGate: a classification turned into pass/fail, and that result
 * gating a workflow branch.
 *
 * weft, like ComfyUI without its ExecutionBlocker, evaluates every branch that leads to an
 * output, so a BOOLEAN cannot stop a branch from running. ImageGate therefore decides what the
 * branch receives: the image when the gate is open; when it is closed, an empty batch (0
 * images of the same size: SaveImage and PreviewImage then write nothing, and the rest of the
 * prompt carries on) or, if asked, an error that stops the prompt with a clear message. Two
 * gates with opposite open_when settings route an image to one of two branches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "classify/classify.h"

/* ------------------------------------------------------------------ ClassifierThreshold */

static const char *const require_opts[] = {"all images", "any image", NULL};

/* Index of label in the classifier's labels: exact match first, then ignoring case; -1. */
static long find_label(const cls_model_t *m, const char *label)
{
    for (size_t i = 0; i < m->labels.n; i++)
        if (strcmp(m->labels.items[i], label) == 0)
            return (long)i;
    for (size_t i = 0; i < m->labels.n; i++)
        if (strcasecmp(m->labels.items[i], label) == 0)
            return (long)i;
    return -1;
}

static int threshold_execute(node_ctx_t *ctx)
{
    const clsn_result_t *r = clsn_in_result(ctx, "classification");
    if (!r || !r->model || r->batch < 1 || !r->classes)
        return node_fail(ctx, "ClassifierThreshold: the classification input is not a CLASSIFICATION");
    double threshold = node_in_f64(ctx, "threshold");
    bool any = strcmp(node_in_str(ctx, "require"), "any image") == 0;
    /* Blanks around the label are typing accidents, not part of a class name. */
    char label[256];
    const char *in = node_in_str(ctx, "label");
    while (*in == ' ' || *in == '\t')
        in++;
    snprintf(label, sizeof label, "%s", in);
    for (size_t n = strlen(label); n && (label[n - 1] == ' ' || label[n - 1] == '\t');)
        label[--n] = '\0';
    long want = -1;
    if (*label && (want = find_label(r->model, label)) < 0) {
        const cls_labels_t *l = &r->model->labels;
        return node_fail(ctx, "ClassifierThreshold: '%s' is not one of the classifier's %zu labels (%s%s%s%s%s); "
                              "leave label empty to use each image's best label", label, l->n, l->items[0],
                         l->n > 1 ? ", " : "", l->n > 1 ? l->items[1] : "", l->n > 2 ? ", " : "",
                         l->n > 2 ? "..." : "");
    }
    /* The deciding score: the weakest image when all must pass, the strongest when any may. */
    double score = any ? -INFINITY : INFINITY;
    long score_class = 0;
    for (int64_t b = 0; b < r->batch; b++) {
        const float *p = r->probs + (size_t)b * r->classes;
        size_t c = 0;
        if (want >= 0)
            c = (size_t)want;
        else
            cls_topk(p, r->classes, 1, &c);
        double s = isnan(p[c]) ? 0.0 : (double)p[c];
        if (any ? s > score : s < score) {
            score = s;
            score_class = (long)c;
        }
    }
    bool passed = score >= threshold;
    node_value_t *vp = node_value_bool(passed), *vs = node_value_float(score);
    json_t *ui = json_new_object(), *texts = json_new_array();
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s %.4f %s %.4f%s", passed ? "passed" : "failed",
             r->model->labels.items[score_class], score, passed ? ">=" : "<", threshold,
             r->batch > 1 ? (any ? " (best image)" : " (weakest image)") : "");
    bool ok = vp && vs && ui && texts;
    if (ok) {
        ok = json_object_set(ui, "text", texts) == 0; /* ui owns texts from here */
        texts = NULL;
    }
    ok = ok && json_array_push(json_object_get(ui, "text"), json_new_string(msg)) == 0;
    if (!ok) {
        node_value_unref(vp);
        node_value_unref(vs);
        json_free(ui);
        json_free(texts);
        return node_fail(ctx, "out of memory");
    }
    node_set_out(ctx, 0, vp);
    node_set_out(ctx, 1, vs);
    ctx->ui = ui;
    return 0;
}

/* ------------------------------------------------------------------ ImageGate */

static const char *const open_opts[] = {"passed", "failed", NULL};
static const char *const closed_opts[] = {"empty batch", "stop with error", NULL};

static int gate_execute(node_ctx_t *ctx)
{
    ts_tensor_t *image = node_in_tensor(ctx, "image");
    if (!image)
        return node_fail(ctx, "ImageGate: no image");
    bool passed = node_in_bool(ctx, "passed");
    bool open_on_pass = strcmp(node_in_str(ctx, "open_when"), "failed") != 0;
    if (passed == open_on_pass) {
        node_value_t *v = node_value_tensor(ts_ref(image));
        if (!v)
            return node_fail(ctx, "out of memory");
        node_set_out(ctx, 0, v);
        return 0;
    }
    if (strcmp(node_in_str(ctx, "when_closed"), "stop with error") == 0) {
        ctx->err_type = "GateClosed";
        return node_fail(ctx, "ImageGate: the check %s, so this gate (open when %s) stopped the workflow here",
                         passed ? "passed" : "failed", open_on_pass ? "passed" : "failed");
    }
    ts_tensor_t *empty = NULL;
    if (ts_slice(&empty, image, 0, 0, 0))
        return node_fail_ts(ctx, "ImageGate");
    node_value_t *v = node_value_tensor(empty);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, 0, v);
    return 0;
}

/* ------------------------------------------------------------------ tables */

static const node_input_t threshold_in[] = {
    {.name = "classification", .type = "CLASSIFICATION", .section = NODE_REQUIRED},
    {.name = "threshold", .type = "FLOAT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .fdef = 0.5, .fmin = 0.0, .fmax = 1.0, .fstep = 0.01,
     .tooltip = "The check passes when the score is at least this probability."},
    {.name = "label", .type = "STRING", .section = NODE_REQUIRED, .sdef = "",
     .tooltip = "The class to score (one of the classifier's labels, any case); empty scores each image's best "
                "label."},
    {.name = "require", .type = "COMBO", .section = NODE_REQUIRED, .options = require_opts, .cdef = "all images",
     .tooltip = "For a batch: every image must pass, or one is enough."},
};
static const node_output_t threshold_out[] = {
    {.type = "BOOLEAN", .name = "passed"},
    {.type = "FLOAT", .name = "score", .tooltip = "The score that decided (weakest or best image)."},
};

const node_def_t node_def_ClassifierThreshold = {
    .name = "ClassifierThreshold", .display_name = "Classifier Threshold", .category = "image/classification",
    .description = "Passes when the probability of a label (or of the best label) reaches a threshold.",
    .inputs = threshold_in, .n_inputs = 4, .outputs = threshold_out, .n_outputs = 2,
    .execute = threshold_execute,
};

static const node_input_t gate_in[] = {
    {.name = "image", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "passed", .type = "BOOLEAN", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT, .bdef = true,
     .tooltip = "A pass/fail result, e.g. from ClassifierThreshold."},
    {.name = "open_when", .type = "COMBO", .section = NODE_REQUIRED, .options = open_opts, .cdef = "passed",
     .tooltip = "Let the image through when the check passed, or when it failed."},
    {.name = "when_closed", .type = "COMBO", .section = NODE_REQUIRED, .options = closed_opts,
     .cdef = "empty batch",
     .tooltip = "What a closed gate outputs: an empty batch (SaveImage and PreviewImage then save nothing and "
                "the workflow goes on) or an error that stops the workflow."},
};
static const node_output_t gate_out[] = {{.type = "IMAGE"}};

const node_def_t node_def_ImageGate = {
    .name = "ImageGate", .display_name = "Image Gate", .category = "image/classification",
    .description = "Passes the image on when a pass/fail result opens the gate; otherwise an empty batch (or an "
                   "error), so a classifier can decide which branch of a workflow gets an image.",
    .inputs = gate_in, .n_inputs = 4, .outputs = gate_out, .n_outputs = 1, .execute = gate_execute,
};
