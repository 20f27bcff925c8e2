/* The C side of the tensor shim: every ts_* call of tensor.h lands here and is forwarded to
 * tensor.cpp, which is built as a separate module (libweft_torch.so) and opened on the first
 * call that needs it.
 *
 * Why: libtorch's static initialisers cost about half a second and 150 MB of resident memory
 * at process start. A server that has not run a tensor node yet should start in milliseconds
 * and stay small, so libtorch loads only when a node first needs it.
 *
 * Where the module is looked for: $WEFT_TORCH_MODULE, then beside the running executable,
 * then the path the build wrote it to (WEFT_TORCH_MODULE_BUILT). */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "tensor.h"

#ifndef WEFT_TORCH_MODULE_BUILT
#define WEFT_TORCH_MODULE_BUILT ""
#endif
#ifndef WEFT_TORCH_DESC
#define WEFT_TORCH_DESC "libtorch"
#endif
#define MODULE_NAME "libweft_torch.so"

/* Every forwarded function: return type, name, parameters, arguments, value when the module
 * cannot be loaded. ts_init, ts_backend_name, ts_last_error, ts_ref, ts_free, ts_gen_free,
 * ts_stream_free and the lane calls (ts_set_thread_budget, ts_event_*, ts_record_stream) are
 * written out below because they must work without the module, and the lanes must not load
 * libtorch for prompts that never compute. */
#define TS_FORWARDED(X)                                                                                  \
    X(int, ts_set_num_threads, (int threads), (threads), BASE_E_TENSOR_NOTSUP)                           \
    X(int, ts_get_num_threads, (void), (), 0)                                                             \
    X(bool, ts_cuda_available, (void), (), false)                                                         \
    X(int, ts_from_host,                                                                                  \
      (ts_tensor_t * *out, const void *data, ts_dtype_t dtype, const int64_t *shape, int ndim,           \
       ts_device_t dev),                                                                                  \
      (out, data, dtype, shape, ndim, dev), BASE_E_TENSOR_NOTSUP)                                         \
    X(int, ts_zeros, (ts_tensor_t * *out, const int64_t *shape, int ndim, ts_dtype_t dtype, ts_device_t dev), \
      (out, shape, ndim, dtype, dev), BASE_E_TENSOR_NOTSUP)                                               \
    X(int, ts_full,                                                                                       \
      (ts_tensor_t * *out, const int64_t *shape, int ndim, double value, ts_dtype_t dtype, ts_device_t dev), \
      (out, shape, ndim, value, dtype, dev), BASE_E_TENSOR_NOTSUP)                                        \
    X(int, ts_randn, (ts_tensor_t * *out, const int64_t *shape, int ndim, uint64_t seed, ts_device_t dev), \
      (out, shape, ndim, seed, dev), BASE_E_TENSOR_NOTSUP)                                                \
    X(int, ts_ndim, (const ts_tensor_t *t), (t), BASE_E_TENSOR_NOTSUP)                                    \
    X(int64_t, ts_size, (const ts_tensor_t *t, int dim), (t, dim), -1)                                    \
    X(int, ts_shape, (const ts_tensor_t *t, int64_t *shape), (t, shape), BASE_E_TENSOR_NOTSUP)             \
    X(int64_t, ts_numel, (const ts_tensor_t *t), (t), -1)                                                 \
    X(ts_dtype_t, ts_dtype, (const ts_tensor_t *t), (t), TS_F32)                                          \
    X(ts_device_t, ts_device, (const ts_tensor_t *t), (t), cpu_device)                                    \
    X(int, ts_to_host, (const ts_tensor_t *t, ts_dtype_t dtype, void *dst, size_t cap), (t, dtype, dst, cap), \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(const void *, ts_data, (const ts_tensor_t *t), (t), NULL)                                           \
    X(int, ts_item, (const ts_tensor_t *t, const int64_t *index, double *out), (t, index, out),           \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_to, (ts_tensor_t * *out, const ts_tensor_t *t, ts_dtype_t dtype, ts_device_t dev),          \
      (out, t, dtype, dev), BASE_E_TENSOR_NOTSUP)                                                         \
    X(int, ts_contiguous, (ts_tensor_t * *out, const ts_tensor_t *t), (out, t), BASE_E_TENSOR_NOTSUP)     \
    X(int, ts_reshape, (ts_tensor_t * *out, const ts_tensor_t *t, const int64_t *shape, int ndim),        \
      (out, t, shape, ndim), BASE_E_TENSOR_NOTSUP)                                                        \
    X(int, ts_permute, (ts_tensor_t * *out, const ts_tensor_t *t, const int *dims, int ndim),             \
      (out, t, dims, ndim), BASE_E_TENSOR_NOTSUP)                                                         \
    X(int, ts_slice, (ts_tensor_t * *out, const ts_tensor_t *t, int dim, int64_t start, int64_t end),     \
      (out, t, dim, start, end), BASE_E_TENSOR_NOTSUP)                                                    \
    X(int, ts_cat, (ts_tensor_t * *out, ts_tensor_t *const *ts, int n, int dim), (out, ts, n, dim),       \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_repeat, (ts_tensor_t * *out, const ts_tensor_t *t, const int64_t *reps, int ndim),          \
      (out, t, reps, ndim), BASE_E_TENSOR_NOTSUP)                                                         \
    X(int, ts_add, (ts_tensor_t * *out, const ts_tensor_t *a, const ts_tensor_t *b), (out, a, b),         \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_sub, (ts_tensor_t * *out, const ts_tensor_t *a, const ts_tensor_t *b), (out, a, b),         \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_mul, (ts_tensor_t * *out, const ts_tensor_t *a, const ts_tensor_t *b), (out, a, b),         \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_div, (ts_tensor_t * *out, const ts_tensor_t *a, const ts_tensor_t *b), (out, a, b),         \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_affine, (ts_tensor_t * *out, const ts_tensor_t *t, double mul, double add), (out, t, mul, add), \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_clamp, (ts_tensor_t * *out, const ts_tensor_t *t, double lo, double hi), (out, t, lo, hi),  \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_interpolate, (ts_tensor_t * *out, const ts_tensor_t *t, int64_t h, int64_t w, ts_interp_t mode), \
      (out, t, h, w, mode), BASE_E_TENSOR_NOTSUP)                                                         \
    X(int, ts_from_blob,                                                                                  \
      (ts_tensor_t * *out, const void *data, ts_dtype_t dtype, const int64_t *shape, int ndim,           \
       void (*release)(void *ctx), void *ctx),                                                            \
      (out, data, dtype, shape, ndim, release, ctx), BASE_E_TENSOR_NOTSUP)                                \
    X(int, ts_gen_new, (ts_gen_t * *out, uint64_t seed), (out, seed), BASE_E_TENSOR_NOTSUP)              \
    X(int, ts_randn_gen, (ts_tensor_t * *out, const int64_t *shape, int ndim, ts_gen_t *g, ts_device_t dev), \
      (out, shape, ndim, g, dev), BASE_E_TENSOR_NOTSUP)                                                   \
    X(int, ts_add_scaled, (ts_tensor_t * *out, const ts_tensor_t *a, const ts_tensor_t *b, double alpha), \
      (out, a, b, alpha), BASE_E_TENSOR_NOTSUP)                                                           \
    X(int, ts_unary, (ts_tensor_t * *out, const ts_tensor_t *t, ts_unary_t op), (out, t, op),            \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_reduce_all, (const ts_tensor_t *t, ts_reduce_t op, double *out), (t, op, out),             \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_softmax, (ts_tensor_t * *out, const ts_tensor_t *t, int dim), (out, t, dim),               \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_matmul, (ts_tensor_t * *out, const ts_tensor_t *a, const ts_tensor_t *b), (out, a, b),      \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_lerp, (ts_tensor_t * *out, const ts_tensor_t *a, const ts_tensor_t *b, const ts_tensor_t *m), \
      (out, a, b, m), BASE_E_TENSOR_NOTSUP)                                                               \
    X(int, ts_embedding, (ts_tensor_t * *out, const ts_tensor_t *weight, const ts_tensor_t *ids),         \
      (out, weight, ids), BASE_E_TENSOR_NOTSUP)                                                           \
    X(int, ts_conv2d,                                                                                     \
      (ts_tensor_t * *out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b, int stride,  \
       int padding),                                                                                      \
      (out, x, w, b, stride, padding), BASE_E_TENSOR_NOTSUP)                                              \
    X(int, ts_pad2d,                                                                                      \
      (ts_tensor_t * *out, const ts_tensor_t *x, int left, int right, int top, int bottom, double value), \
      (out, x, left, right, top, bottom, value), BASE_E_TENSOR_NOTSUP)                                    \
    X(int, ts_linear, (ts_tensor_t * *out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b), \
      (out, x, w, b), BASE_E_TENSOR_NOTSUP)                                                               \
    X(int, ts_group_norm,                                                                                 \
      (ts_tensor_t * *out, const ts_tensor_t *x, int groups, const ts_tensor_t *w, const ts_tensor_t *b,  \
       double eps),                                                                                       \
      (out, x, groups, w, b, eps), BASE_E_TENSOR_NOTSUP)                                                  \
    X(int, ts_layer_norm,                                                                                 \
      (ts_tensor_t * *out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b, double eps), \
      (out, x, w, b, eps), BASE_E_TENSOR_NOTSUP)                                                          \
    X(int, ts_batch_norm,                                                                                 \
      (ts_tensor_t * *out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b,              \
       const ts_tensor_t *mean, const ts_tensor_t *var, double eps),                                      \
      (out, x, w, b, mean, var, eps), BASE_E_TENSOR_NOTSUP)                                               \
    X(int, ts_max_pool2d, (ts_tensor_t * *out, const ts_tensor_t *x, int k, int s, int p), (out, x, k, s, p), \
      BASE_E_TENSOR_NOTSUP)                                                                               \
    X(int, ts_global_avg_pool, (ts_tensor_t * *out, const ts_tensor_t *x), (out, x), BASE_E_TENSOR_NOTSUP) \
    X(int, ts_attention,                                                                                  \
      (ts_tensor_t * *out, const ts_tensor_t *q, const ts_tensor_t *k, const ts_tensor_t *v, int heads,   \
       bool causal),                                                                                      \
      (out, q, k, v, heads, causal), BASE_E_TENSOR_NOTSUP)                                                \
    X(int, ts_stream_new, (ts_stream_t * *out, ts_device_t dev), (out, dev), BASE_E_TENSOR_NOTSUP)        \
    X(int, ts_stream_set_current, (ts_stream_t * s), (s), BASE_E_TENSOR_NOTSUP)                          \
    X(int, ts_stream_synchronize, (ts_stream_t * s), (s), BASE_E_TENSOR_NOTSUP)

static const ts_device_t cpu_device = {TS_CPU, 0};

#define DECLARE_PTR(ret, name, params, args, fallback) static ret(*p_##name) params;
TS_FORWARDED(DECLARE_PTR)
static int (*p_ts_init)(int);
static const char *(*p_ts_backend_name)(void);
static const char *(*p_ts_last_error)(void);
static ts_tensor_t *(*p_ts_ref)(ts_tensor_t *);
static void (*p_ts_free)(ts_tensor_t *);
static void (*p_ts_stream_free)(ts_stream_t *);
static void (*p_ts_gen_free)(ts_gen_t *);
static int (*p_ts_set_thread_budget)(int);
static int (*p_ts_event_record)(ts_event_t **);
static int (*p_ts_event_wait)(const ts_event_t *);
static void (*p_ts_event_free)(ts_event_t *);
static int (*p_ts_record_stream)(const ts_tensor_t *);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/* Atomic: lanes ask ts_loaded() while another thread may be loading the module; the pointers
 * are written before it becomes true. */
static atomic_bool loaded;
static int requested_threads; /* from ts_init before the module was opened */
static char load_error[1024] = "";

/* The folder of the running executable + MODULE_NAME, or "" when unknown. */
static void beside_exe(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = '\0';
    if (n <= 0)
        return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = '\0';
        snprintf(out, cap, "%s/" MODULE_NAME, exe);
    }
}

static void *open_module(void)
{
    char near[PATH_MAX + sizeof MODULE_NAME + 2];
    beside_exe(near, sizeof near);
    const char *env = getenv("WEFT_TORCH_MODULE");
    const char *candidates[] = {env, near, WEFT_TORCH_MODULE_BUILT};
    size_t used = 0;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        const char *p = candidates[i];
        if (!p || !*p || access(p, R_OK) != 0)
            continue;
        void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
        used += (size_t)snprintf(load_error + used, used < sizeof load_error ? sizeof load_error - used : 0,
                                 "%s%s", used ? "; " : "", dlerror());
        if (used >= sizeof load_error)
            return NULL;
    }
    if (!used)
        snprintf(load_error, sizeof load_error,
                 "tensor backend not available: " MODULE_NAME " not found (set WEFT_TORCH_MODULE)");
    return NULL;
}

#define RESOLVE(ret, name, params, args, fallback)                                                       \
    if (ok && !(p_##name = (ret(*) params)dlsym(h, #name)))                                              \
        ok = false;

/* Debian's OpenBLAS 0.3.21 (a DYNAMIC_ARCH build) does not recognise some current x86 models
 * (e.g. Intel family 6 model 207 under KVM) and falls back to its generic "Prescott" SSE3
 * kernels: sgemm, hence every linear layer and attention bmm, runs 4-5x slower (measured
 * 4096x1280x1280: 47 vs 248 GFLOP/s on 2 cores). OpenBLAS reads OPENBLAS_CORETYPE once, when
 * libtorch pulls it in, so name the kernel family of the CPU's vector ISA before anything can
 * load it, unless the user chose one. This runs before main, while the process has one
 * thread, because setenv is not safe against concurrent getenv. Other BLAS ignore it. */
#if defined(__x86_64__) || defined(__i386__)
__attribute__((constructor)) static void pick_openblas_kernels(void)
{
    if (getenv("OPENBLAS_CORETYPE"))
        return;
    __builtin_cpu_init();
    const char *core = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (core)
        setenv("OPENBLAS_CORETYPE", core, 0);
}
#endif

static void load(void)
{
    void *h = open_module();
    if (!h) {
        BASE_LOG(ERROR, "%s", load_error);
        return;
    }
    bool ok = true;
    TS_FORWARDED(RESOLVE)
    ok = ok && (p_ts_init = (int (*)(int))dlsym(h, "ts_init")) &&
         (p_ts_backend_name = (const char *(*)(void))dlsym(h, "ts_backend_name")) &&
         (p_ts_last_error = (const char *(*)(void))dlsym(h, "ts_last_error")) &&
         (p_ts_ref = (ts_tensor_t * (*)(ts_tensor_t *)) dlsym(h, "ts_ref")) &&
         (p_ts_free = (void (*)(ts_tensor_t *))dlsym(h, "ts_free")) &&
         (p_ts_stream_free = (void (*)(ts_stream_t *))dlsym(h, "ts_stream_free")) &&
         (p_ts_gen_free = (void (*)(ts_gen_t *))dlsym(h, "ts_gen_free")) &&
         (p_ts_set_thread_budget = (int (*)(int))dlsym(h, "ts_set_thread_budget")) &&
         (p_ts_event_record = (int (*)(ts_event_t **))dlsym(h, "ts_event_record")) &&
         (p_ts_event_wait = (int (*)(const ts_event_t *))dlsym(h, "ts_event_wait")) &&
         (p_ts_event_free = (void (*)(ts_event_t *))dlsym(h, "ts_event_free")) &&
         (p_ts_record_stream = (int (*)(const ts_tensor_t *))dlsym(h, "ts_record_stream"));
    if (!ok) {
        snprintf(load_error, sizeof load_error, "tensor backend module is incomplete: %s", dlerror());
        BASE_LOG(ERROR, "%s", load_error);
        return; /* the handle stays open: closing a half-initialised libtorch is not safe */
    }
    /* Intra-op threads = cores unless ts_init asked for a number before the first use. */
    int rc = p_ts_init(requested_threads);
    if (rc) {
        snprintf(load_error, sizeof load_error, "tensor backend failed to start: %s", p_ts_last_error());
        BASE_LOG(ERROR, "%s", load_error);
        return;
    }
    loaded = true;
}

static bool ensure(void)
{
    pthread_once(&load_once, load);
    return loaded;
}

#define DEFINE_FORWARD(ret, name, params, args, fallback)                                                \
    ret name params                                                                                      \
    {                                                                                                    \
        if (!ensure())                                                                                   \
            return fallback;                                                                             \
        return p_##name args;                                                                            \
    }
TS_FORWARDED(DEFINE_FORWARD)

int ts_init(int threads)
{
    requested_threads = threads;
    if (!ensure())
        return BASE_E_TENSOR_NOTSUP;
    return p_ts_init(threads);
}

bool ts_loaded(void)
{
    return loaded;
}

const char *ts_backend_name(void)
{
    return loaded ? p_ts_backend_name() : WEFT_TORCH_DESC;
}

const char *ts_last_error(void)
{
    return loaded ? p_ts_last_error() : load_error;
}

/* A handle can only exist once the module is loaded; without one these have nothing to do. */
ts_tensor_t *ts_ref(ts_tensor_t *t)
{
    return t && loaded ? p_ts_ref(t) : t;
}

void ts_free(ts_tensor_t *t)
{
    if (t && loaded)
        p_ts_free(t);
}

void ts_stream_free(ts_stream_t *s)
{
    if (s && loaded)
        p_ts_stream_free(s);
}

void ts_gen_free(ts_gen_t *g)
{
    if (g && loaded)
        p_ts_gen_free(g);
}

/* Lanes: nothing to divide or order before libtorch is loaded (and no reason to load it). */
int ts_set_thread_budget(int threads)
{
    if (threads <= 0)
        return BASE_E_INVAL;
    return loaded ? p_ts_set_thread_budget(threads) : 0;
}

int ts_event_record(ts_event_t **out)
{
    if (!out)
        return BASE_E_INVAL;
    *out = NULL;
    return loaded ? p_ts_event_record(out) : 0;
}

int ts_event_wait(const ts_event_t *ev)
{
    return ev && loaded ? p_ts_event_wait(ev) : 0;
}

void ts_event_free(ts_event_t *ev)
{
    if (ev && loaded)
        p_ts_event_free(ev);
}

int ts_record_stream(const ts_tensor_t *t)
{
    return t && loaded ? p_ts_record_stream(t) : 0;
}
