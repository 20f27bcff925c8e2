/* The node ABI: values passed between nodes, node definitions (schema + callbacks), the
 * registry, and the context a node's execute() receives. Node implementations live beside
 * this header and use only it, base/ and the tensor shim; a node never calls the engine or
 * the server.
 *
 * Threads: definitions and the registry are immutable after start-up and may be read from
 * any thread. Values are refcounted with atomic counts and immutable once built, so they
 * may be shared between threads. A node_ctx_t belongs to the thread running the node. */
#ifndef WEFT_NODES_H
#define WEFT_NODES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "tensor/tensor.h"

/* ------------------------------------------------------------------ values */

typedef enum {
    NODE_V_NONE,
    NODE_V_INT,    /* u.i */
    NODE_V_FLOAT,  /* u.f */
    NODE_V_BOOL,   /* u.b */
    NODE_V_STRING, /* u.str */
    NODE_V_TENSOR, /* u.t: IMAGE (B×H×W×C float 0..1), MASK (B×H×W), any tensor */
    NODE_V_LIST,   /* u.list without keys: CONDITIONING = list of [tensor, dict] pairs */
    NODE_V_DICT,   /* u.list with keys: LATENT = {"samples": B×4×h×w, "noise_mask"?, ...} */
    NODE_V_OBJECT, /* u.obj: models and other opaque handles */
} node_vkind_t;

typedef struct node_value_s node_value_t;

struct node_value_s {
    atomic_int refs;
    node_vkind_t kind;
    union {
        base_int_t i;
        double f;
        bool b;
        struct {
            char *s; /* owned, NUL-terminated */
            size_t len;
        } str;
        ts_tensor_t *t; /* owned reference */
        struct {
            node_value_t **items; /* owned references */
            char **keys;          /* owned; NULL for NODE_V_LIST */
            size_t n;
        } list;
        struct {
            void *ptr;               /* owned: released with free_cb when the value dies */
            void (*free_cb)(void *); /* may be NULL */
            const char *tag;         /* static type tag, e.g. "MODEL" */
        } obj;
    } u;
};

/* Constructors return a NEW reference (refs = 1), or NULL on out of memory. */
node_value_t *node_value_none(void);
node_value_t *node_value_int(base_int_t v);
node_value_t *node_value_i64(int64_t v);
node_value_t *node_value_float(double v);
node_value_t *node_value_bool(bool v);
node_value_t *node_value_string(const char *s); /* copies */
/* Takes ownership of t (even on failure). */
node_value_t *node_value_tensor(ts_tensor_t *t);
/* Empty list/dict of capacity n; fill with node_value_list_set / node_value_dict_set while
 * the value is still private to its creator. */
node_value_t *node_value_list(size_t n);
node_value_t *node_value_dict(size_t n);
/* Takes ownership of item (reference) into slot i (< n). */
void node_value_list_set(node_value_t *list, size_t i, node_value_t *item);
/* Takes ownership of item; copies key. 0 or BASE_E_NOMEM. Slot i < n. */
int node_value_dict_set(node_value_t *dict, size_t i, const char *key, node_value_t *item);
/* Borrowed; NULL when absent. */
node_value_t *node_value_dict_get(const node_value_t *dict, const char *key);
/* Takes ownership of ptr: free_cb(ptr) runs when the last reference goes (also on failure). */
node_value_t *node_value_object(void *ptr, void (*free_cb)(void *), const char *tag);
/* Builds a value from a constant JSON input (already coerced by validation): numbers,
 * strings, booleans, null; arrays/objects become lists/dicts. NULL on OOM. */
node_value_t *node_value_from_json(const json_t *j);
/* A short human-readable rendering for error reports (malloc'ed). */
char *node_value_describe(const node_value_t *v);

node_value_t *node_value_ref(node_value_t *v); /* returns v; NULL is fine */
void node_value_unref(node_value_t *v);        /* NULL is fine */

/* ------------------------------------------------------------------ environment */

/* Folders the nodes may touch, all under the base dir. Set up by the composition root.
 * Strings are borrowed for the life of the process. */
typedef struct node_env_s {
    const char *base_dir;
    const char *input_dir;
    const char *output_dir;
    const char *temp_dir;
    const char *models_dir;
} node_env_t;

typedef struct {
    char **items; /* owned strings */
    size_t n;
} node_strlist_t;

void node_strlist_free(node_strlist_t *l);
/* Files (not folders) directly in dir (or, when recursive, below it, as relative paths with
 * '/'), whose lower-cased name ends in one of exts (NULL-terminated; NULL = any), skipping
 * hidden files, sorted by byte order. A missing dir gives an empty list. */
int node_list_files(const char *dir, const char *const *exts, bool recursive, node_strlist_t *out);

/* ------------------------------------------------------------------ definitions */

typedef enum { NODE_REQUIRED, NODE_OPTIONAL, NODE_HIDDEN } node_section_t;

enum {
    NODE_IN_MULTILINE = 1u << 0,
    NODE_IN_DYNAMIC_PROMPTS = 1u << 1,
    NODE_IN_IMAGE_UPLOAD = 1u << 2,
    NODE_IN_CONTROL_AFTER_GENERATE = 1u << 3, /* seed-like INT: the editor adds a combo after it */
    NODE_IN_FORCE_INPUT = 1u << 4,
    NODE_IN_HAS_MIN = 1u << 5,
    NODE_IN_HAS_MAX = 1u << 6,
    NODE_IN_ROUND_FALSE = 1u << 7, /* FLOAT "round": false */
};

typedef struct node_def_s node_def_t;
typedef struct node_ctx_s node_ctx_t;

typedef struct node_input_s {
    const char *name;
    /* "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", or a socket type ("IMAGE", "*",
     * "FLOAT,INT"). For NODE_HIDDEN: "PROMPT", "EXTRA_PNGINFO" or "UNIQUE_ID". */
    const char *type;
    node_section_t section;
    unsigned flags;
    /* INT */
    base_int_t idef, imin, imax;
    int64_t istep; /* 0 = not given */
    /* FLOAT */
    double fdef, fmin, fmax, fstep, fround; /* fstep/fround 0 = not given */
    /* STRING (sdef may be NULL = no default), BOOLEAN */
    const char *sdef;
    bool bdef;
    /* COMBO: a fixed NULL-terminated list, or a function computing it (files on disk). */
    const char *const *options;
    int (*options_fn)(const node_env_t *env, node_strlist_t *out);
    const char *cdef; /* COMBO default; NULL = none declared */
    const char *tooltip;
} node_input_t;

typedef struct {
    const char *type; /* socket type, e.g. "IMAGE" */
    const char *name; /* output_name; NULL = type */
    bool is_list;
    const char *tooltip;
} node_output_t;

enum {
    NODE_OUTPUT_NODE = 1u << 0,    /* an output: validation starts here, always executed */
    NODE_NOT_IDEMPOTENT = 1u << 1, /* node id enters the cache signature */
    NODE_HEAVY = 1u << 2,          /* heavy on device memory (samplers, VAE, model loads) */
    NODE_DEPRECATED = 1u << 3,
    NODE_EXPERIMENTAL = 1u << 4,
    /* Writes outside output/ or reads arbitrary files: only principals with prompt:any_node
     * may run it (the server refuses the prompt with forbidden_node_class). No built-in node
     * is privileged today. */
    NODE_PRIVILEGED = 1u << 5,
};

/* Constant inputs as seen by validate/is_changed: values[i] is the coerced JSON constant of
 * def->inputs[i], or NULL when the input is absent or linked (validation never executes). */
typedef struct {
    const node_def_t *def;
    const json_t *const *values;
} node_args_t;

/* Borrowed; NULL when absent/linked/unknown name. */
const json_t *node_args_get(const node_args_t *a, const char *name);

struct node_def_s {
    const char *name;          /* class_type */
    const char *display_name;  /* NULL = name */
    const char *category;      /* NULL = "sd" */
    const char *description;   /* NULL = "" */
    const char *python_module; /* NULL = "nodes" (what /object_info reports) */
    const node_input_t *inputs;
    size_t n_inputs;
    const node_output_t *outputs;
    size_t n_outputs;
    unsigned flags;
    /* Runs the node. Reads ctx->in, stores one new reference per output in ctx->out and
     * optionally a UI object in ctx->ui. Returns 0, BASE_E_INTERRUPTED when it stopped at an
     * interrupt point, or another code with a message set through node_fail(). */
    int (*execute)(node_ctx_t *ctx);
    /* (optional) defaults to "never changes". Appends a fingerprint of external state (e.g.
     * the SHA-256 of a file) to out; a changed fingerprint re-runs the node. A failure makes
     * the node always re-run. */
    int (*is_changed)(const node_env_t *env, const node_args_t *args, base_buf_t *out);
    /* (optional) defaults to none. Custom validation of the inputs named in validate_inputs
     * (which then skip the built-in min/max/combo checks). Returns 0, or non-zero with a
     * message in msg, reported as custom_validation_failed. */
    int (*validate)(const node_env_t *env, const node_args_t *args, char *msg, size_t msgsz);
    const char *const *validate_inputs; /* NULL-terminated; NULL = none */
};

/* Index of an input in def->inputs, -1 when absent. */
int node_def_input_index(const node_def_t *def, const char *name);
/* The options of a COMBO input (copied strings; caller frees with node_strlist_free). */
int node_input_options(const node_input_t *in, const node_env_t *env, node_strlist_t *out);
/* Socket compatibility as ComfyUI checks it: equal, "*" on either side, or intersecting
 * comma-separated lists. */
bool node_types_compatible(const char *received, const char *expected);

/* ------------------------------------------------------------------ execution context */

struct node_ctx_s {
    const node_def_t *def;
    const char *node_id;       /* borrowed */
    const node_env_t *env;     /* borrowed */
    node_value_t *const *in;   /* borrowed, indexed like def->inputs; NULL = absent/hidden */
    node_value_t **out;        /* OUT: def->n_outputs slots, each a new reference */
    json_t *ui;                /* OUT: optional UI object ({"images": [...]}); engine takes it */
    const json_t *prompt;      /* hidden PROMPT: the validated API prompt (borrowed) */
    const json_t *extra_pnginfo; /* hidden EXTRA_PNGINFO (borrowed; may be NULL) */
    /* Engine hooks (set by the executor). */
    void *engine;
    void (*progress_cb)(void *engine, const char *node_id, uint64_t value, uint64_t max);
    const atomic_bool *interrupt; /* may be NULL */
    /* Sends an encoded preview image (PNG) of the running node to the submitting client;
     * NULL when previews are off (weft serve --preview-method none, weft run). */
    void (*preview_cb)(void *engine, const char *node_id, const void *png, size_t len);
    char err[1024];               /* message when execute fails */
    const char *err_type;         /* exception-like type name; NULL = "RuntimeError" */
};

/* Sets ctx->err from fmt and returns BASE_E_NODE_FAILED. */
int node_fail(node_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a tensor failure (message from ts_last_error) and returns BASE_E_NODE_FAILED. */
int node_fail_ts(node_ctx_t *ctx, const char *what);
bool node_interrupted(const node_ctx_t *ctx);
/* Reports progress; returns BASE_E_INTERRUPTED when an interrupt is pending (so a long
 * loop can `if ((rc = node_progress(...))) return rc;`), else 0. */
int node_progress(node_ctx_t *ctx, uint64_t value, uint64_t max);

/* True when previews are wanted (so a node skips computing them otherwise). */
bool node_preview_wanted(const node_ctx_t *ctx);
/* Hands an encoded PNG preview to the engine (borrowed; copied before return). */
void node_preview_png(node_ctx_t *ctx, const void *png, size_t len);

/* Input accessors by name (borrowed). The typed ones assume validation already ran; they
 * return 0/""/NULL when the input is absent or of another kind. */
node_value_t *node_in(const node_ctx_t *ctx, const char *name);
int64_t node_in_i64(const node_ctx_t *ctx, const char *name);
uint64_t node_in_u64(const node_ctx_t *ctx, const char *name); /* seeds */
double node_in_f64(const node_ctx_t *ctx, const char *name);   /* FLOAT or INT */
bool node_in_bool(const node_ctx_t *ctx, const char *name);
const char *node_in_str(const node_ctx_t *ctx, const char *name);
ts_tensor_t *node_in_tensor(const node_ctx_t *ctx, const char *name);
/* Stores v (takes the reference) into output slot i, replacing any earlier value. */
void node_set_out(node_ctx_t *ctx, size_t i, node_value_t *v);

/* ------------------------------------------------------------------ registry */

typedef struct node_registry_s node_registry_t;

int node_registry_new(node_registry_t **out);
void node_registry_free(node_registry_t *r);
/* def is borrowed (normally a static table) and must outlive the registry.
 * BASE_E_NODE_DUPLICATE when the name is taken. */
int node_registry_add(node_registry_t *r, const node_def_t *def);
/* Registers every built-in node of weft. */
int node_registry_add_builtins(node_registry_t *r);
const node_def_t *node_registry_find(const node_registry_t *r, const char *name);
size_t node_registry_count(const node_registry_t *r);
const node_def_t *node_registry_at(const node_registry_t *r, size_t i); /* sorted by name */

/* /object_info JSON (ComfyUI's shape, section 8 of comfyui-api.md). New objects. */
json_t *node_def_to_json(const node_def_t *def, const node_env_t *env);
json_t *node_registry_object_info(const node_registry_t *r, const node_env_t *env);

/* Built-in node tables, one per file (nodes/image/ *.c). */
extern const node_def_t node_def_LoadImage, node_def_SaveImage, node_def_PreviewImage,
    node_def_ImageScale, node_def_ImageInvert, node_def_ImageBatch, node_def_EmptyImage;
/* Loaded models (checkpoints, VAEs) are shared by the prompts of the process; values hold
 * handles, and the weights are loaded again when a handle is used after an unload. Unloads
 * every model not in use (POST /free). */
void node_models_release(void);
/* How many models are resident and the bytes of their weights. */
void node_models_stats(size_t *files, size_t *bytes);
/* The model memory budget in bytes (0 = unlimited; default half of physical memory). Least
 * recently used models not in use are unloaded to stay within it. */
void node_models_set_budget(size_t bytes);
size_t node_models_budget(void);

/* Stable Diffusion nodes (nodes/sd/node_*.c). */
extern const node_def_t node_def_CheckpointLoaderSimple, node_def_VAELoader, node_def_CLIPTextEncode,
    node_def_CLIPSetLastLayer, node_def_ConditioningCombine, node_def_EmptyLatentImage,
    node_def_LatentUpscale, node_def_LatentUpscaleBy, node_def_SetLatentNoiseMask, node_def_VAEDecode,
    node_def_VAEEncode, node_def_VAEDecodeTiled, node_def_KSampler,
    node_def_KSamplerAdvanced;
extern const node_def_t node_def_LoraLoader, node_def_LoraLoaderModelOnly; /* nodes/sd/node_lora.c */
/* Image classification (nodes/classify/). The demo classifier: a small random ResNet-18-layout
 * file with CIFAR-10 labels beside it (weft demo-model writes it). */
int node_demo_classifier_write(const char *path, char *err, size_t errsz);
extern const node_def_t node_def_ImageClassifierLoader, node_def_ImageClassify, node_def_ClassifierThreshold,
    node_def_ImageGate;

#endif
