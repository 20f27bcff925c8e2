/* Private to nodes/classify/: image classification with torchvision ResNets (ResNet-18/34/50/
 * 101/152 and, since the config comes from tensor shapes, wide ResNets and ResNeXt too) stored
 * as safetensors in models/classifiers/ with a labels file beside them. References:
 * ../shared/docs/sd15-reference.md §8 Option A.
 *
 * Prefixes: cls_resnet_ the network, cls_pre_ preprocessing, cls_labels_ label files,
 * cls_model_ a loaded classifier (network + labels + preprocessing), cls_demo_ the random demo
 * classifier, clsn_ node values.
 *
 * Errors: 0 or a negative base_err_t code; where err/errsz is given it receives a sentence a
 * user can act on. Threads: loaded classifiers are immutable and may be shared. */
#ifndef WEFT_NODES_CLASSIFY_H
#define WEFT_NODES_CLASSIFY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodes.h"
#include "sd/sd.h"

/* ================================================================== ResNet (resnet.c) */

#define CLS_LAYERS 4

/* torchvision's ResNet as its state dict shows it. Block i of layer l maps in -> out[l]
 * channels; its 3x3 convolutions have inner[l] channels (Bottleneck: 1x1 in -> inner, 3x3
 * inner -> inner in `groups` groups, 1x1 inner -> out; BasicBlock: 3x3 in -> out, 3x3 out ->
 * out, so inner == out). The first block of layers 2-4 has stride 2, as in torchvision. */
typedef struct {
    bool bottleneck;
    int stem;              /* conv1 output channels (64) */
    int blocks[CLS_LAYERS];
    int inner[CLS_LAYERS];
    int out[CLS_LAYERS];
    int groups;            /* 1, or 32 for ResNeXt */
    int num_classes;       /* fc.weight dim 0 */
} cls_resnet_config_t;

typedef struct cls_resnet_s cls_resnet_t;

/* The torchvision configs: depth 18, 34 (BasicBlock), 50, 101, 152 (Bottleneck).
 * BASE_E_INVAL for another depth. */
int cls_resnet_config_std(cls_resnet_config_t *c, int depth, int num_classes);
/* Detects the config from the shapes in w (the tensors it reads are marked used; they are
 * all part of the layout). BASE_E_MODEL_LAYOUT with a message when w does not hold a
 * torchvision ResNet. */
int cls_resnet_detect(sdw_t *w, cls_resnet_config_t *c, char *err, size_t errsz);
/* Every state-dict name and shape of the layout, in torchvision's order (the BN entries
 * weight, bias, running_mean, running_var, num_batches_tracked with shape []). */
int cls_resnet_keys(const cls_resnet_config_t *c, sd_key_fn cb, void *ctx);
/* Detects the config and checks every tensor's shape; a tensor that is not part of the layout
 * is an error too (as torch's strict load_state_dict). Takes ownership of w (freed with the
 * network, also on failure). */
int cls_resnet_load(cls_resnet_t **out, sdw_t *w, char *err, size_t errsz);
void cls_resnet_free(cls_resnet_t *r); /* NULL is fine */
const cls_resnet_config_t *cls_resnet_config(const cls_resnet_t *r);
size_t cls_resnet_bytes(const cls_resnet_t *r); /* weights held */

/* How far cls_resnet_forward runs: after conv1+bn1+relu+maxpool, after layer1..4, after the
 * global average pool ([N, features]) or the whole network (logits [N, num_classes]). */
typedef enum {
    CLS_STAGE_STEM = 0,
    CLS_STAGE_LAYER1 = 1,
    CLS_STAGE_LAYER4 = 4,
    CLS_STAGE_POOL = 5,
    CLS_STAGE_LOGITS = 6,
} cls_stage_t;

/* x: float32 [N, 3, H, W], already normalised. *out is a new reference. */
int cls_resnet_forward(const cls_resnet_t *r, const ts_tensor_t *x, cls_stage_t stage, ts_tensor_t **out,
                       char *err, size_t errsz);

/* ================================================================== preprocessing (preprocess.c) */

/* torchvision's ImageNet evaluation transform for tensors: resize the shorter side to
 * `resize` (bilinear with antialias; the longer side becomes int(resize * long / short)),
 * centre-crop crop x crop (offsets int(round((size - crop) / 2)), Python rounding), then
 * (x - mean) / std per channel. */
typedef struct {
    int resize, crop;
    float mean[3], std[3];
} cls_pre_t;

void cls_pre_default(cls_pre_t *p); /* 256, 224, ImageNet mean and std */
/* Overrides from safetensors metadata "classifier.resize_size", "classifier.crop_size",
 * "classifier.mean", "classifier.std" (the last two "r,g,b"). BASE_E_MODEL_FORMAT with a
 * message naming the key for a malformed value. */
int cls_pre_from_meta(cls_pre_t *p, const st_file_t *f, char *err, size_t errsz);

/* Output size of the resize step for an h x w image. */
void cls_pre_resized_size(int h, int w, int shorter, int *oh, int *ow);
/* Offset of a centred crop of `crop` in `size` (may be negative when size < crop). */
int cls_pre_crop_offset(int size, int crop);
/* torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=True) of
 * one interleaved h x w x c float image into oh x ow x c (separable: width first). */
int cls_pre_resize_aa(const float *in, int h, int w, int c, float *out, int oh, int ow);
/* image: IMAGE [B, H, W, C] float (C = 1, 3 or 4: grey is repeated, alpha dropped) ->
 * *out new float32 [B, 3, crop, crop] on the CPU. An image smaller than the crop after
 * resizing (only possible with resize < crop) is zero-padded as torchvision does. */
int cls_preprocess(const ts_tensor_t *image, const cls_pre_t *p, ts_tensor_t **out, char *err, size_t errsz);

/* ================================================================== labels (labels.c) */

typedef struct {
    char **items; /* owned */
    size_t n;
    char *path;   /* the file they came from (owned); NULL when built in memory */
} cls_labels_t;

/* Reads a labels file: ".json" is a list of strings, or an object {"0": name or [id, name],
 * ...} with keys 0..n-1 (torchvision's imagenet_class_index.json); anything else is text with
 * one label per line (UTF-8, optional BOM, \n or \r\n, trailing blank lines ignored, surrounding
 * blanks trimmed). An empty label is refused (BASE_E_MODEL_FORMAT with a message naming the
 * file and line); duplicates are allowed (ImageNet has two "crane" classes). */
int cls_labels_load(const char *path, cls_labels_t *out, char *err, size_t errsz);
/* The labels beside a model file "<dir>/<stem>.safetensors": the first existing of
 * <stem>.labels.txt, <stem>.txt, <stem>.labels.json, <stem>.json. Their count must equal
 * num_classes. BASE_E_NOENT naming the files looked for when none exists. */
int cls_labels_for_model(const char *model_path, size_t num_classes, cls_labels_t *out, char *err,
                         size_t errsz);
void cls_labels_free(cls_labels_t *l);

/* ================================================================== a loaded classifier (model.c) */

typedef struct cls_model_s {
    atomic_int refs;
    char *path;     /* resolved file */
    char *name;     /* as the user chose it */
    cls_resnet_t *net;
    cls_labels_t labels;
    cls_pre_t pre;
    size_t bytes;   /* weights held in memory, for the model memory budget */
} cls_model_t;

/* Loads a classifier file (safetensors, torchvision ResNet keys, optionally all under
 * "module." or "model.") with its labels file and preprocessing metadata. *out has refs 1. */
int cls_model_load(const char *path, const char *name, cls_model_t **out, char *err, size_t errsz);
cls_model_t *cls_model_ref(cls_model_t *m);
void cls_model_unref(cls_model_t *m); /* NULL is fine */
/* Builds a classifier from parts (tests, the demo): takes net and labels (freed on failure). */
int cls_model_wrap(cls_resnet_t *net, cls_labels_t *labels, const cls_pre_t *pre, const char *name,
                   cls_model_t **out, char *err, size_t errsz);

/* Class probabilities (softmax of the logits) of every image of an IMAGE batch, as a new
 * malloc'ed B x num_classes float array. Runs in chunks of `chunk` images (0 = all at once),
 * calling check(ctx, done, total) after each; a non-zero return stops with that code. */
typedef int (*cls_check_fn)(void *ctx, int64_t done, int64_t total);
int cls_model_classify(const cls_model_t *m, const ts_tensor_t *image, int64_t chunk, cls_check_fn check,
                       void *check_ctx, float **probs, int64_t *batch, char *err, size_t errsz);

/* The k best of n scores into idx: descending score, equal scores in class order (lower
 * index first); NaN ranks last. k <= n. */
void cls_topk(const float *scores, size_t n, size_t k, size_t *idx);

/* ================================================================== demo classifier (demo.c) */

/* The demo layout: ResNet-18 keys (BasicBlock, [2, 2, 2, 2]) with widths 8/16/32/64 and 10
 * classes, so it loads and runs in milliseconds. */
void cls_demo_config(cls_resnet_config_t *c);
/* Deterministic random weights for any config, in memory: conv and fc weights N(0,1) *
 * sqrt(2 / fan_in), fc.bias 0.1 N, BN weight 1 + 0.1 N, bias 0.1 N, running_mean 0.1 N,
 * running_var 1 + 0.5 |N|, num_batches_tracked 0 (I64 []). Tensor i of cls_resnet_keys'
 * order draws N from torch.manual_seed(splitmix64(seed, i)); torch.randn(shape), which
 * tests/reference/resnet.py reproduces. */
int cls_demo_weights(const cls_resnet_config_t *c, uint64_t seed, sdw_t **out, char *err, size_t errsz);
/* Writes the weights of config c (NULL = cls_demo_config) as F32 safetensors at path, and the
 * labels beside it as "<stem>.labels.txt" (CIFAR-10's class names for 10 classes, "class N"
 * otherwise). */
int cls_demo_write(const char *path, const cls_resnet_config_t *c, uint64_t seed, char *err, size_t errsz);

/* ================================================================== node values (node_*.c) */

/* CLASSIFIER: NODE_V_OBJECT tagged "CLASSIFIER" holding a cls_model_t reference.
 * CLASSIFICATION: NODE_V_OBJECT tagged "CLASSIFICATION": the probabilities of a batch. */
typedef struct {
    cls_model_t *model; /* owned reference (for the labels) */
    float *probs;       /* owned, batch x classes */
    int64_t batch;
    size_t classes;
} clsn_result_t;

/* A CLASSIFIER value holds a model-cache handle (sd/sd_nodes.h), so classifiers share the
 * model memory budget with checkpoints: an unloaded classifier is read again from its file on
 * its next use. Takes the reference. */
node_value_t *clsn_classifier_value(cls_model_t *m);
/* Pins the classifier of input `name` in memory and returns it (borrowed until
 * clsn_unuse_classifier); NULL with ctx->err set when absent or unloadable. */
cls_model_t *clsn_use_classifier(node_ctx_t *ctx, const char *name);
void clsn_unuse_classifier(node_ctx_t *ctx, const char *name);
node_value_t *clsn_result_value(cls_model_t *m, float *probs, int64_t batch); /* takes both */
const clsn_result_t *clsn_in_result(const node_ctx_t *ctx, const char *name); /* borrowed */

#endif
