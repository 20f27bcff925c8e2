/* The tensor shim: a plain-C API over ATen (libtorch), implemented in tensor.cpp, the only
 * C++ file of weft, built as a module that tensor_loader.c opens on the first call that needs
 * it, so a process that never touches a tensor never pays for libtorch. C++ exceptions never cross this boundary: every call returns a status
 * (0 or a negative base_err_t code, BASE_E_TENSOR for ATen failures, BASE_E_INVAL for bad
 * arguments caught before ATen, BASE_E_NOMEM) and ts_last_error() gives the message of the
 * last failure on the calling thread.
 *
 * Threads: any thread; a handle may be used from several threads only for reading.
 * All computation runs in inference mode (no autograd). dtype and device are explicit so a
 * CUDA libtorch build works unchanged.
 *
 * Ownership: every ts_tensor_t * returned through an OUT parameter is a NEW reference that
 * the caller releases with ts_free(). Input handles are borrowed. ts_ref() adds a reference.
 * Tensors are immutable values from C's point of view: no op modifies its inputs. */
#ifndef WEFT_TS_TENSOR_H
#define WEFT_TS_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TS_MAX_DIMS 8

typedef struct ts_tensor_s ts_tensor_t;
typedef struct ts_stream_s ts_stream_t; /* a CUDA stream on CUDA builds; a no-op token on CPU */

typedef enum { TS_F32, TS_F16, TS_BF16, TS_F64, TS_I64, TS_I32, TS_U8, TS_BOOL } ts_dtype_t;
typedef enum { TS_CPU, TS_CUDA } ts_device_type_t;
typedef struct {
    ts_device_type_t type;
    int index; /* CUDA ordinal; 0 for CPU */
} ts_device_t;

typedef enum {
    TS_INTERP_NEAREST,       /* torch "nearest" */
    TS_INTERP_NEAREST_EXACT, /* torch "nearest-exact" */
    TS_INTERP_BILINEAR,      /* align_corners=False */
    TS_INTERP_BICUBIC,       /* align_corners=False */
    TS_INTERP_AREA,          /* adaptive average pooling */
} ts_interp_t;

/* Initialises the backend once per process (idempotent, thread-safe): inference mode,
 * intra-op threads = number of cores (or `threads` when > 0). */
int ts_init(int threads);
int ts_set_num_threads(int threads);
int ts_get_num_threads(void);
/* True when the backend was built with CUDA and a device is present. */
bool ts_cuda_available(void);
/* Static description such as "libtorch 1.13.1 (CPU)". Does not load the backend. */
const char *ts_backend_name(void);
/* True once the backend module has been opened (libtorch loads on the first tensor call;
 * see tensor_loader.c). */
bool ts_loaded(void);

/* Message of the last failed call on this thread ("" when none). Valid until the next call. */
const char *ts_last_error(void);

/* --- lifetime --- */
ts_tensor_t *ts_ref(ts_tensor_t *t); /* returns t */
void ts_free(ts_tensor_t *t);        /* drops one reference; NULL is fine */

/* --- creation --- */
/* Copies n = prod(shape) elements of `dtype` from host memory into a new tensor on dev. */
int ts_from_host(ts_tensor_t **out, const void *data, ts_dtype_t dtype, const int64_t *shape,
                 int ndim, ts_device_t dev);
int ts_zeros(ts_tensor_t **out, const int64_t *shape, int ndim, ts_dtype_t dtype, ts_device_t dev);
int ts_full(ts_tensor_t **out, const int64_t *shape, int ndim, double value, ts_dtype_t dtype,
            ts_device_t dev);
/* Standard normal noise identical to torch.manual_seed(seed); torch.randn(shape) on CPU
 * (a generator private to the call; the global generator is untouched). Always generated on
 * CPU in float32, then moved to dev, as ComfyUI does. */
int ts_randn(ts_tensor_t **out, const int64_t *shape, int ndim, uint64_t seed, ts_device_t dev);

/* --- inspection --- */
int ts_ndim(const ts_tensor_t *t);
int64_t ts_size(const ts_tensor_t *t, int dim); /* negative dim counts from the end; -1 if bad */
int ts_shape(const ts_tensor_t *t, int64_t *shape /* TS_MAX_DIMS */); /* returns ndim */
int64_t ts_numel(const ts_tensor_t *t);
ts_dtype_t ts_dtype(const ts_tensor_t *t);
ts_device_t ts_device(const ts_tensor_t *t);
/* Copies the tensor (converted to `dtype`, made contiguous, moved to CPU) into dst, which
 * has room for cap bytes. BASE_E_INVAL when it does not fit. */
int ts_to_host(const ts_tensor_t *t, ts_dtype_t dtype, void *dst, size_t cap);
/* Borrowed pointer to the data of a contiguous CPU tensor (NULL otherwise); valid while t
 * lives. Read only. */
const void *ts_data(const ts_tensor_t *t);
/* Single element of a CPU or CUDA tensor as double, index given per dimension. */
int ts_item(const ts_tensor_t *t, const int64_t *index, double *out);

/* --- conversion and layout --- */
int ts_to(ts_tensor_t **out, const ts_tensor_t *t, ts_dtype_t dtype, ts_device_t dev);
int ts_contiguous(ts_tensor_t **out, const ts_tensor_t *t);
int ts_reshape(ts_tensor_t **out, const ts_tensor_t *t, const int64_t *shape, int ndim);
int ts_permute(ts_tensor_t **out, const ts_tensor_t *t, const int *dims, int ndim);
/* Narrow along dim: elements [start, end) (python slice semantics for negatives). */
int ts_slice(ts_tensor_t **out, const ts_tensor_t *t, int dim, int64_t start, int64_t end);
int ts_cat(ts_tensor_t **out, ts_tensor_t *const *ts, int n, int dim);
/* Repeats along each dim (torch.Tensor.repeat). */
int ts_repeat(ts_tensor_t **out, const ts_tensor_t *t, const int64_t *reps, int ndim);

/* --- arithmetic (broadcasting like torch) --- */
int ts_add(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b);
int ts_sub(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b);
int ts_mul(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b);
int ts_div(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b);
/* out = t * mul + add (one fused call covers scale, shift and 1 - x). */
int ts_affine(ts_tensor_t **out, const ts_tensor_t *t, double mul, double add);
int ts_clamp(ts_tensor_t **out, const ts_tensor_t *t, double lo, double hi);

/* --- image ops --- */
/* Resizes the last two dims of an N×C×H×W tensor to h×w. */
int ts_interpolate(ts_tensor_t **out, const ts_tensor_t *t, int64_t h, int64_t w, ts_interp_t mode);

/* --- creation without copying --- */
/* Wraps host memory as a CPU tensor without copying (the weights of a memory-mapped
 * checkpoint). data must stay valid until release(ctx) runs, which happens when the last
 * reference to the tensor (or to any view of it) goes; release may be NULL. data needs no
 * particular alignment for TS_U8; for wider dtypes it must be aligned to the element size
 * (BASE_E_INVAL otherwise: copy with ts_from_host instead). The tensor must be treated as
 * read-only. On failure release is NOT called. */
int ts_from_blob(ts_tensor_t **out, const void *data, ts_dtype_t dtype, const int64_t *shape,
                 int ndim, void (*release)(void *ctx), void *ctx);

/* --- random generators (sequential draws, as torch.Generator) --- */
typedef struct ts_gen_s ts_gen_t;
/* A CPU generator seeded like torch.Generator().manual_seed(seed): successive
 * ts_randn_gen calls continue its stream. Not thread-safe; one owner at a time. */
int ts_gen_new(ts_gen_t **out, uint64_t seed);
void ts_gen_free(ts_gen_t *g); /* NULL is fine */
/* float32 standard normal drawn from g on CPU, then moved to dev. */
int ts_randn_gen(ts_tensor_t **out, const int64_t *shape, int ndim, ts_gen_t *g, ts_device_t dev);

/* --- more arithmetic --- */
/* out = a + alpha * b (broadcasting); the sampler's axpy. */
int ts_add_scaled(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b, double alpha);
typedef enum {
    TS_UNARY_EXP,
    TS_UNARY_LOG,
    TS_UNARY_SQRT,
    TS_UNARY_ABS,
    TS_UNARY_NEG,
    TS_UNARY_SIGMOID,
    TS_UNARY_SILU,       /* x * sigmoid(x) */
    TS_UNARY_GELU,       /* exact, erf form */
    TS_UNARY_QUICK_GELU, /* x * sigmoid(1.702 x) */
    TS_UNARY_RELU,
} ts_unary_t;
int ts_unary(ts_tensor_t **out, const ts_tensor_t *t, ts_unary_t op);
typedef enum { TS_REDUCE_SUM, TS_REDUCE_MEAN, TS_REDUCE_MAX, TS_REDUCE_MIN, TS_REDUCE_MAX_ABS } ts_reduce_t;
/* Whole-tensor reduction to one double (any dtype; computed in float64 where it matters). */
int ts_reduce_all(const ts_tensor_t *t, ts_reduce_t op, double *out);
/* out = softmax(t) along dim (float32 accumulation). */
int ts_softmax(ts_tensor_t **out, const ts_tensor_t *t, int dim);
/* Batched matrix product with torch.matmul broadcasting rules. */
int ts_matmul(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b);
/* Elementwise blend: out = a * (1 - m) + b * m (m broadcast), for latent noise masks. */
int ts_lerp(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b, const ts_tensor_t *m);
/* Rows of weight [V, C] picked by integer ids [...] (I64 or I32) -> [..., C]. */
int ts_embedding(ts_tensor_t **out, const ts_tensor_t *weight, const ts_tensor_t *ids);

/* --- neural-network layers (float32 or bfloat16; inputs must share dtype and device) --- */
/* x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw] (groups = Cin / w's dim 1), b [Cout] or NULL.
 * Same stride and symmetric zero padding on both spatial dims. */
int ts_conv2d(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b,
              int stride, int padding);
/* Constant padding of the last two dims of a tensor with >= 2 dims (left, right, top, bottom
 * are >= 0; 0 leaves that side alone). */
int ts_pad2d(ts_tensor_t **out, const ts_tensor_t *x, int left, int right, int top, int bottom,
             double value);
/* y = x @ w^T + b over the last dim. w [out, in], b [out] or NULL. */
int ts_linear(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b);
/* GroupNorm over dim 1 of [N, C, ...]; w, b [C] or NULL. */
int ts_group_norm(ts_tensor_t **out, const ts_tensor_t *x, int groups, const ts_tensor_t *w,
                  const ts_tensor_t *b, double eps);
/* LayerNorm over the last dim; w, b [C] or NULL. */
int ts_layer_norm(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b,
                  double eps);
/* Eval-mode BatchNorm over dim 1: (x - mean) / sqrt(var + eps) * w + b. */
int ts_batch_norm(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b,
                  const ts_tensor_t *mean, const ts_tensor_t *var, double eps);
/* Max pooling over the last two dims of [N, C, H, W] or [C, H, W] (kernel k, stride s,
 * padding p <= k/2, padded with -inf), and global average pooling of [N, C, H, W] to [N, C]. */
int ts_max_pool2d(ts_tensor_t **out, const ts_tensor_t *x, int k, int s, int p);
int ts_global_avg_pool(ts_tensor_t **out, const ts_tensor_t *x);
/* Multi-head scaled dot-product attention. q [B, N, heads*d], k and v [B, M, heads*d]
 * -> [B, N, heads*d]; channel index = head*d + j; scale d^-0.5; causal masks key j > query i.
 * M >= 1. Computed in query chunks so the score tensor stays under a fixed budget (~256 MiB). */
int ts_attention(ts_tensor_t **out, const ts_tensor_t *q, const ts_tensor_t *k, const ts_tensor_t *v,
                 int heads, bool causal);

/* --- streams (CUDA builds; on CPU every call succeeds and does nothing) --- */
int ts_stream_new(ts_stream_t **out, ts_device_t dev);
void ts_stream_free(ts_stream_t *s);
/* Makes s current on this thread until ts_stream_set_current(NULL). */
int ts_stream_set_current(ts_stream_t *s);
int ts_stream_synchronize(ts_stream_t *s);

/* --- lanes: per-thread compute budgets and ordering between executor threads ---
 * The engine runs nodes on several threads ("lanes", engine/lanes.c). ATen's
 * at::set_num_threads is process-wide, but with OpenMP (the parallel backend of Debian's
 * libtorch) the size of a parallel region is a per-thread setting, so each lane gets its own
 * share of the cores. Before the module is loaded these calls do nothing and succeed. */

/* Intra-op threads (> 0) for the ops this thread runs from now on; ts_get_num_threads()
 * then reports it on this thread only. BLAS's own threads are process-wide, so they follow
 * the most recent budget of any thread. Without OpenMP it falls back to ATen's process-wide
 * setting (the last caller wins). */
int ts_set_thread_budget(int threads);

typedef struct ts_event_s ts_event_t;
/* The point this thread's current stream has reached, as a new event (CUDA builds with a
 * CUDA stream current). *out = NULL when there is nothing to wait for (CPU: the work is
 * complete when the call returns). */
int ts_event_record(ts_event_t **out);
/* Makes this thread's current stream wait for ev before its later work (NULL: no-op). */
int ts_event_wait(const ts_event_t *ev);
void ts_event_free(ts_event_t *ev); /* NULL is fine */
/* Tells the CUDA caching allocator that t is used on this thread's current stream, so its
 * memory is not handed out again before that work is done (a tensor made on another lane's
 * stream). No-op on CPU. */
int ts_record_stream(const ts_tensor_t *t);

#ifdef __cplusplus
}
#endif
#endif
