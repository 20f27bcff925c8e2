/* The tensor shim over ATen (see tensor.h). The only C++ file of weft.
 *
 * Every extern "C" entry point runs its body through guarded(), which turns any C++
 * exception into a status code plus a per-thread message, so nothing ever unwinds into C.
 * Each body also holds a c10::InferenceMode guard: the mode is thread-local, so a
 * process-wide switch in ts_init would not cover worker threads, and the guard is a
 * couple of thread-local stores. */
#include "tensor.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#ifdef WEFT_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <array>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

extern "C" {
#include "err.h"
}

struct ts_tensor_s {
    at::Tensor t;
    std::atomic<int> refs;
};

struct ts_stream_s {
    ts_device_t dev;
#ifdef WEFT_WITH_CUDA
    c10::optional<c10::cuda::CUDAStream> cuda; /* pool streams live as long as the process */
#endif
};

namespace {

thread_local char g_last_error[1024];

int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
    return code;
}

/* Runs body (returning a status) with inference mode on and every exception mapped to a
 * status. CPU allocation failures arrive as a plain c10::Error, hence the message test. */
template <class F> int guarded(const char *fn, F &&body) {
    try {
        c10::InferenceMode inference;
        return body();
    } catch (const c10::OutOfMemoryError &e) {
        return fail(BASE_E_NOMEM, "%s: %s", fn, e.what_without_backtrace());
    } catch (const c10::Error &e) {
        const char *msg = e.what_without_backtrace();
        int code = std::strstr(msg, "not enough memory") ? BASE_E_NOMEM : BASE_E_TENSOR;
        return fail(code, "%s: %s", fn, msg);
    } catch (const std::bad_alloc &) {
        return fail(BASE_E_NOMEM, "%s: out of memory", fn);
    } catch (const std::exception &e) {
        return fail(BASE_E_TENSOR, "%s: %s", fn, e.what());
    } catch (...) {
        return fail(BASE_E_TENSOR, "%s: unknown C++ exception", fn);
    }
}

/* C callers may pass any int in an enum; in C++ loading an out-of-range enum value is
 * undefined, so enum arguments are read through their bytes. */
template <class E> int raw_enum(const E &e) {
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

int to_scalar_type(const ts_dtype_t &dt, at::ScalarType *st) {
    int d = raw_enum(dt);
    switch (d) {
    case TS_F32: *st = at::kFloat; return 0;
    case TS_F16: *st = at::kHalf; return 0;
    case TS_BF16: *st = at::kBFloat16; return 0;
    case TS_F64: *st = at::kDouble; return 0;
    case TS_I64: *st = at::kLong; return 0;
    case TS_I32: *st = at::kInt; return 0;
    case TS_U8: *st = at::kByte; return 0;
    case TS_BOOL: *st = at::kBool; return 0;
    }
    return fail(BASE_E_INVAL, "unknown dtype %d", d);
}

int from_scalar_type(at::ScalarType st, ts_dtype_t *d) {
    switch (st) {
    case at::kFloat: *d = TS_F32; return 0;
    case at::kHalf: *d = TS_F16; return 0;
    case at::kBFloat16: *d = TS_BF16; return 0;
    case at::kDouble: *d = TS_F64; return 0;
    case at::kLong: *d = TS_I64; return 0;
    case at::kInt: *d = TS_I32; return 0;
    case at::kByte: *d = TS_U8; return 0;
    case at::kBool: *d = TS_BOOL; return 0;
    default: break;
    }
    return fail(BASE_E_TENSOR, "tensor has dtype %s, which the shim does not map",
                c10::toString(st));
}

/* CUDA requests on a build or machine without CUDA fail here, before ATen would throw. */
int to_device(const ts_device_t &dev, c10::Device *out) {
    int type = raw_enum(dev.type);
    if (type == TS_CPU) {
        *out = c10::Device(c10::kCPU);
        return 0;
    }
    if (type != TS_CUDA)
        return fail(BASE_E_INVAL, "unknown device type %d", type);
    if (dev.index < 0 || dev.index > 127)
        return fail(BASE_E_INVAL, "bad CUDA device index %d", dev.index);
    if (!torch::cuda::is_available())
        return fail(BASE_E_TENSOR_NOTSUP, "CUDA requested but %s",
#ifdef WEFT_WITH_CUDA
                    "no CUDA device is present"
#else
                    "this libtorch build has no CUDA support"
#endif
        );
    if ((size_t)dev.index >= torch::cuda::device_count())
        return fail(BASE_E_INVAL, "CUDA device %d does not exist (%zu present)", dev.index,
                    torch::cuda::device_count());
    *out = c10::Device(c10::kCUDA, (c10::DeviceIndex)dev.index);
    return 0;
}

int check_shape(const int64_t *shape, int ndim, std::vector<int64_t> *v) {
    if (ndim < 0 || ndim > TS_MAX_DIMS)
        return fail(BASE_E_INVAL, "ndim %d outside 0..%d", ndim, TS_MAX_DIMS);
    if (ndim > 0 && !shape)
        return fail(BASE_E_INVAL, "shape is NULL");
    v->assign(shape, shape + ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return fail(BASE_E_INVAL, "negative size %lld at dim %d", (long long)shape[i], i);
    return 0;
}

/* Element count of a validated shape; BASE_E_INVAL when it overflows. */
int shape_numel(const std::vector<int64_t> &shape, int64_t *n) {
    int64_t acc = 1;
    for (int64_t s : shape)
        if (__builtin_mul_overflow(acc, s, &acc))
            return fail(BASE_E_INVAL, "shape has too many elements");
    *n = acc;
    return 0;
}

/* Wraps a dim index python-style; BASE_E_INVAL when out of range. */
int wrap_dim(int dim, int64_t ndim, int64_t *out) {
    int64_t d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim)
        return fail(BASE_E_INVAL, "dim %d out of range for a %lld-d tensor", dim, (long long)ndim);
    *out = d;
    return 0;
}

int emit(ts_tensor_t **out, at::Tensor t) {
    *out = new ts_tensor_s{std::move(t), {1}};
    return 0;
}

#define TS_CHECK_OUT(out)                                                                       \
    do {                                                                                        \
        if (!(out))                                                                             \
            return fail(BASE_E_INVAL, "%s: out is NULL", __func__);                             \
        *(out) = nullptr;                                                                       \
    } while (0)

#define TS_CHECK_ARG(p)                                                                         \
    do {                                                                                        \
        if (!(p))                                                                               \
            return fail(BASE_E_INVAL, "%s: %s is NULL", __func__, #p);                          \
    } while (0)

#define TS_RC(expr)                                                                             \
    do {                                                                                        \
        int rc_ = (expr);                                                                       \
        if (rc_ != 0)                                                                           \
            return rc_;                                                                         \
    } while (0)

int binary(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b, const char *fn,
           at::Tensor (*op)(const at::Tensor &, const at::Tensor &)) {
    if (!out)
        return fail(BASE_E_INVAL, "%s: out is NULL", fn);
    *out = nullptr;
    if (!a || !b)
        return fail(BASE_E_INVAL, "%s: operand is NULL", fn);
    return guarded(fn, [&] { return emit(out, op(a->t, b->t)); });
}

at::Tensor op_add(const at::Tensor &a, const at::Tensor &b) { return at::add(a, b); }
at::Tensor op_sub(const at::Tensor &a, const at::Tensor &b) { return at::sub(a, b); }
at::Tensor op_mul(const at::Tensor &a, const at::Tensor &b) { return at::mul(a, b); }
at::Tensor op_div(const at::Tensor &a, const at::Tensor &b) { return at::div(a, b); }

std::once_flag g_init_once;

#ifdef WEFT_WITH_CUDA
/* Device whose current stream this thread last replaced, to restore on set_current(NULL). */
thread_local int g_stream_dev = -1;
#endif

} // namespace

extern "C" {

const char *ts_last_error(void) { return g_last_error; }

int ts_init(int threads) {
    if (threads < 0)
        return fail(BASE_E_INVAL, "ts_init: negative thread count %d", threads);
    return guarded("ts_init", [&] {
        std::call_once(g_init_once, [threads] {
            int n = threads;
            if (n <= 0)
                n = (int)std::thread::hardware_concurrency();
            if (n <= 0)
                n = 1;
            at::set_num_threads(n);
        });
        return 0;
    });
}

int ts_set_num_threads(int threads) {
    if (threads <= 0)
        return fail(BASE_E_INVAL, "ts_set_num_threads: thread count %d must be > 0", threads);
    return guarded("ts_set_num_threads", [&] {
        at::set_num_threads(threads);
        return 0;
    });
}

int ts_get_num_threads(void) {
    int n = 0;
    int rc = guarded("ts_get_num_threads", [&] {
        n = at::get_num_threads();
        return 0;
    });
    return rc ? rc : n;
}

bool ts_cuda_available(void) {
    bool yes = false;
    guarded("ts_cuda_available", [&] {
        yes = torch::cuda::is_available();
        return 0;
    });
    return yes;
}

const char *ts_backend_name(void) {
#ifdef WEFT_WITH_CUDA
    return "libtorch " TORCH_VERSION " (CUDA)";
#else
    return "libtorch " TORCH_VERSION " (CPU)";
#endif
}

/* --- lifetime --- */

ts_tensor_t *ts_ref(ts_tensor_t *t) {
    if (t)
        t->refs.fetch_add(1, std::memory_order_relaxed);
    return t;
}

void ts_free(ts_tensor_t *t) {
    if (t && t->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
        delete t;
}

/* --- creation --- */

int ts_from_host(ts_tensor_t **out, const void *data, ts_dtype_t dtype, const int64_t *shape,
                 int ndim, ts_device_t dev) {
    TS_CHECK_OUT(out);
    std::vector<int64_t> sv;
    at::ScalarType st;
    c10::Device device(c10::kCPU);
    int64_t n = 0;
    TS_RC(check_shape(shape, ndim, &sv));
    TS_RC(shape_numel(sv, &n));
    TS_RC(to_scalar_type(dtype, &st));
    TS_RC(to_device(dev, &device));
    size_t bytes;
    if (__builtin_mul_overflow((size_t)n, c10::elementSize(st), &bytes))
        return fail(BASE_E_INVAL, "ts_from_host: tensor too large");
    if (bytes > 0 && !data)
        return fail(BASE_E_INVAL, "ts_from_host: data is NULL");
    return guarded("ts_from_host", [&] {
        at::Tensor t = at::empty(sv, at::TensorOptions().dtype(st));
        if (bytes > 0)
            std::memcpy(t.data_ptr(), data, bytes);
        return emit(out, device.is_cpu() ? t : t.to(device));
    });
}

int ts_zeros(ts_tensor_t **out, const int64_t *shape, int ndim, ts_dtype_t dtype, ts_device_t dev) {
    return ts_full(out, shape, ndim, 0.0, dtype, dev);
}

int ts_full(ts_tensor_t **out, const int64_t *shape, int ndim, double value, ts_dtype_t dtype,
            ts_device_t dev) {
    TS_CHECK_OUT(out);
    std::vector<int64_t> sv;
    at::ScalarType st;
    c10::Device device(c10::kCPU);
    int64_t n = 0;
    TS_RC(check_shape(shape, ndim, &sv));
    TS_RC(shape_numel(sv, &n));
    TS_RC(to_scalar_type(dtype, &st));
    TS_RC(to_device(dev, &device));
    return guarded("ts_full", [&] {
        return emit(out, at::full(sv, value, at::TensorOptions().dtype(st).device(device)));
    });
}

int ts_randn(ts_tensor_t **out, const int64_t *shape, int ndim, uint64_t seed, ts_device_t dev) {
    TS_CHECK_OUT(out);
    std::vector<int64_t> sv;
    c10::Device device(c10::kCPU);
    int64_t n = 0;
    TS_RC(check_shape(shape, ndim, &sv));
    TS_RC(shape_numel(sv, &n));
    TS_RC(to_device(dev, &device));
    return guarded("ts_randn", [&] {
        /* A fresh generator seeded like torch.manual_seed(seed), so the sequence matches
         * torch.randn right after manual_seed and the global generator stays untouched. */
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
        at::Tensor t = at::randn(sv, gen, at::TensorOptions().dtype(at::kFloat));
        return emit(out, device.is_cpu() ? t : t.to(device));
    });
}

/* --- inspection --- */

int ts_ndim(const ts_tensor_t *t) {
    if (!t)
        return fail(BASE_E_INVAL, "ts_ndim: t is NULL");
    return (int)t->t.dim();
}

int64_t ts_size(const ts_tensor_t *t, int dim) {
    if (!t) {
        fail(BASE_E_INVAL, "ts_size: t is NULL");
        return -1;
    }
    int64_t d;
    if (wrap_dim(dim, t->t.dim(), &d))
        return -1;
    return t->t.size(d);
}

int ts_shape(const ts_tensor_t *t, int64_t *shape) {
    TS_CHECK_ARG(t);
    TS_CHECK_ARG(shape);
    int64_t nd = t->t.dim();
    if (nd > TS_MAX_DIMS)
        return fail(BASE_E_INVAL, "ts_shape: tensor has %lld dims, more than %d", (long long)nd,
                    TS_MAX_DIMS);
    for (int64_t i = 0; i < nd; i++)
        shape[i] = t->t.size(i);
    return (int)nd;
}

int64_t ts_numel(const ts_tensor_t *t) {
    if (!t) {
        fail(BASE_E_INVAL, "ts_numel: t is NULL");
        return -1;
    }
    return t->t.numel();
}

ts_dtype_t ts_dtype(const ts_tensor_t *t) {
    ts_dtype_t d = TS_F32;
    if (!t) {
        fail(BASE_E_INVAL, "ts_dtype: t is NULL");
        return d;
    }
    from_scalar_type(t->t.scalar_type(), &d);
    return d;
}

ts_device_t ts_device(const ts_tensor_t *t) {
    ts_device_t d = {TS_CPU, 0};
    if (!t) {
        fail(BASE_E_INVAL, "ts_device: t is NULL");
        return d;
    }
    if (t->t.is_cuda()) {
        d.type = TS_CUDA;
        d.index = t->t.get_device();
    }
    return d;
}

int ts_to_host(const ts_tensor_t *t, ts_dtype_t dtype, void *dst, size_t cap) {
    TS_CHECK_ARG(t);
    at::ScalarType st;
    TS_RC(to_scalar_type(dtype, &st));
    size_t bytes;
    if (__builtin_mul_overflow((size_t)t->t.numel(), c10::elementSize(st), &bytes))
        return fail(BASE_E_INVAL, "ts_to_host: tensor too large");
    if (bytes > cap)
        return fail(BASE_E_INVAL, "ts_to_host: needs %zu bytes, buffer has %zu", bytes, cap);
    if (bytes > 0 && !dst)
        return fail(BASE_E_INVAL, "ts_to_host: dst is NULL");
    return guarded("ts_to_host", [&] {
        at::Tensor h = t->t.to(c10::Device(c10::kCPU), st).contiguous();
        if (bytes > 0)
            std::memcpy(dst, h.data_ptr(), bytes);
        return 0;
    });
}

const void *ts_data(const ts_tensor_t *t) {
    if (!t) {
        fail(BASE_E_INVAL, "ts_data: t is NULL");
        return nullptr;
    }
    if (!t->t.is_cpu() || !t->t.is_contiguous()) {
        fail(BASE_E_INVAL, "ts_data: tensor is not a contiguous CPU tensor");
        return nullptr;
    }
    return t->t.data_ptr();
}

int ts_item(const ts_tensor_t *t, const int64_t *index, double *out) {
    TS_CHECK_ARG(t);
    TS_CHECK_ARG(out);
    int64_t nd = t->t.dim();
    if (nd > 0 && !index)
        return fail(BASE_E_INVAL, "ts_item: index is NULL");
    for (int64_t i = 0; i < nd; i++) {
        int64_t n = t->t.size(i);
        if (index[i] < -n || index[i] >= n)
            return fail(BASE_E_INVAL, "ts_item: index %lld out of range for dim %lld of size %lld",
                        (long long)index[i], (long long)i, (long long)n);
    }
    return guarded("ts_item", [&] {
        at::Tensor x = t->t;
        for (int64_t i = 0; i < nd; i++)
            x = x.select(0, index[i]);
        *out = x.item<double>();
        return 0;
    });
}

/* --- conversion and layout --- */

int ts_to(ts_tensor_t **out, const ts_tensor_t *t, ts_dtype_t dtype, ts_device_t dev) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    at::ScalarType st;
    c10::Device device(c10::kCPU);
    TS_RC(to_scalar_type(dtype, &st));
    TS_RC(to_device(dev, &device));
    return guarded("ts_to", [&] { return emit(out, t->t.to(device, st)); });
}

int ts_contiguous(ts_tensor_t **out, const ts_tensor_t *t) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    return guarded("ts_contiguous", [&] { return emit(out, t->t.contiguous()); });
}

/* One -1 may stand for the inferred size, as in torch.reshape. */
int ts_reshape(ts_tensor_t **out, const ts_tensor_t *t, const int64_t *shape, int ndim) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    if (ndim < 0 || ndim > TS_MAX_DIMS)
        return fail(BASE_E_INVAL, "ts_reshape: ndim %d outside 0..%d", ndim, TS_MAX_DIMS);
    if (ndim > 0 && !shape)
        return fail(BASE_E_INVAL, "ts_reshape: shape is NULL");
    for (int i = 0; i < ndim; i++)
        if (shape[i] < -1)
            return fail(BASE_E_INVAL, "ts_reshape: negative size %lld at dim %d",
                        (long long)shape[i], i);
    std::vector<int64_t> sv(shape, shape + ndim);
    return guarded("ts_reshape", [&] { return emit(out, t->t.reshape(sv)); });
}

int ts_permute(ts_tensor_t **out, const ts_tensor_t *t, const int *dims, int ndim) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    if (ndim < 0 || ndim > TS_MAX_DIMS || ndim != t->t.dim())
        return fail(BASE_E_INVAL, "ts_permute: %d dims given for a %lld-d tensor", ndim,
                    (long long)t->t.dim());
    if (ndim > 0 && !dims)
        return fail(BASE_E_INVAL, "ts_permute: dims is NULL");
    std::vector<int64_t> dv((size_t)ndim);
    bool seen[TS_MAX_DIMS] = {false};
    for (int i = 0; i < ndim; i++) {
        TS_RC(wrap_dim(dims[i], ndim, &dv[(size_t)i]));
        if (seen[dv[(size_t)i]])
            return fail(BASE_E_INVAL, "ts_permute: dim %d repeated", dims[i]);
        seen[dv[(size_t)i]] = true;
    }
    return guarded("ts_permute", [&] { return emit(out, t->t.permute(dv)); });
}

int ts_slice(ts_tensor_t **out, const ts_tensor_t *t, int dim, int64_t start, int64_t end) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    int64_t d;
    TS_RC(wrap_dim(dim, t->t.dim(), &d));
    int64_t n = t->t.size(d);
    /* Python slice bounds: negatives count from the end, then clamp to [0, n]. */
    if (start < 0)
        start = start < -n ? 0 : start + n;
    if (end < 0)
        end = end < -n ? 0 : end + n;
    if (start > n)
        start = n;
    if (end > n)
        end = n;
    if (end < start)
        end = start;
    return guarded("ts_slice", [&] { return emit(out, t->t.narrow(d, start, end - start)); });
}

int ts_cat(ts_tensor_t **out, ts_tensor_t *const *ts, int n, int dim) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(ts);
    if (n <= 0)
        return fail(BASE_E_INVAL, "ts_cat: needs at least one tensor, got %d", n);
    for (int i = 0; i < n; i++)
        if (!ts[i])
            return fail(BASE_E_INVAL, "ts_cat: tensor %d is NULL", i);
    int64_t d;
    TS_RC(wrap_dim(dim, ts[0]->t.dim(), &d));
    return guarded("ts_cat", [&] {
        std::vector<at::Tensor> v;
        v.reserve((size_t)n);
        for (int i = 0; i < n; i++)
            v.push_back(ts[i]->t);
        return emit(out, at::cat(v, d));
    });
}

int ts_repeat(ts_tensor_t **out, const ts_tensor_t *t, const int64_t *reps, int ndim) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    std::vector<int64_t> rv;
    TS_RC(check_shape(reps, ndim, &rv));
    int64_t nd = t->t.dim();
    if (ndim < nd)
        return fail(BASE_E_INVAL, "ts_repeat: %d repeats given for a %lld-d tensor", ndim,
                    (long long)nd);
    /* ATen multiplies the sizes unchecked; refuse results whose element count overflows. */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        int64_t src = i < ndim - nd ? 1 : t->t.size(i - (ndim - nd));
        if (__builtin_mul_overflow(n, src, &n) || __builtin_mul_overflow(n, reps[i], &n))
            return fail(BASE_E_INVAL, "ts_repeat: result has too many elements");
    }
    return guarded("ts_repeat", [&] { return emit(out, t->t.repeat(rv)); });
}

/* --- arithmetic --- */

int ts_add(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b) {
    return binary(out, a, b, "ts_add", op_add);
}
int ts_sub(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b) {
    return binary(out, a, b, "ts_sub", op_sub);
}
int ts_mul(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b) {
    return binary(out, a, b, "ts_mul", op_mul);
}
int ts_div(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b) {
    return binary(out, a, b, "ts_div", op_div);
}

int ts_affine(ts_tensor_t **out, const ts_tensor_t *t, double mul, double add) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    return guarded("ts_affine", [&] {
        at::Tensor r = t->t.mul(mul);
        r.add_(add); /* r is our own temporary: adding in place saves one allocation */
        return emit(out, std::move(r));
    });
}

int ts_clamp(ts_tensor_t **out, const ts_tensor_t *t, double lo, double hi) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    return guarded("ts_clamp", [&] { return emit(out, at::clamp(t->t, lo, hi)); });
}

/* --- image ops --- */

/* Same ops torch.nn.functional.interpolate picks for an explicit size (no scale factors). */
int ts_interpolate(ts_tensor_t **out, const ts_tensor_t *t, int64_t h, int64_t w,
                   ts_interp_t mode) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    if (t->t.dim() != 4)
        return fail(BASE_E_INVAL, "ts_interpolate: needs an N x C x H x W tensor, got %lld dims",
                    (long long)t->t.dim());
    if (h <= 0 || w <= 0)
        return fail(BASE_E_INVAL, "ts_interpolate: output size %lld x %lld must be positive",
                    (long long)h, (long long)w);
    std::array<int64_t, 2> sz = {h, w};
    at::IntArrayRef size(sz.data(), sz.size());
    c10::optional<double> none;
    int m = raw_enum(mode);
    switch (m) {
    case TS_INTERP_NEAREST:
        return guarded("ts_interpolate",
                       [&] { return emit(out, at::upsample_nearest2d(t->t, size, none, none)); });
    case TS_INTERP_NEAREST_EXACT:
        return guarded("ts_interpolate", [&] {
            return emit(out, at::_upsample_nearest_exact2d(t->t, size, none, none));
        });
    case TS_INTERP_BILINEAR:
        return guarded("ts_interpolate", [&] {
            return emit(out, at::upsample_bilinear2d(t->t, size, false, none, none));
        });
    case TS_INTERP_BICUBIC:
        return guarded("ts_interpolate", [&] {
            return emit(out, at::upsample_bicubic2d(t->t, size, false, none, none));
        });
    case TS_INTERP_AREA:
        return guarded("ts_interpolate",
                       [&] { return emit(out, at::adaptive_avg_pool2d(t->t, size)); });
    }
    return fail(BASE_E_INVAL, "ts_interpolate: unknown mode %d", m);
}

/* --- streams --- */

int ts_stream_new(ts_stream_t **out, ts_device_t dev) {
    TS_CHECK_OUT(out);
    c10::Device device(c10::kCPU);
    TS_RC(to_device(dev, &device));
    return guarded("ts_stream_new", [&] {
        std::unique_ptr<ts_stream_s> s(new ts_stream_s());
        s->dev = dev;
#ifdef WEFT_WITH_CUDA
        if (device.is_cuda())
            s->cuda = c10::cuda::getStreamFromPool(false, device.index());
#endif
        *out = s.release();
        return 0;
    });
}

void ts_stream_free(ts_stream_t *s) { delete s; }

int ts_stream_set_current(ts_stream_t *s) {
#ifdef WEFT_WITH_CUDA
    return guarded("ts_stream_set_current", [&] {
        if (s && s->cuda) {
            c10::cuda::setCurrentCUDAStream(*s->cuda);
            g_stream_dev = s->cuda->device_index();
        } else if (!s && g_stream_dev >= 0) {
            c10::cuda::setCurrentCUDAStream(
                c10::cuda::getDefaultCUDAStream((c10::DeviceIndex)g_stream_dev));
            g_stream_dev = -1;
        }
        return 0;
    });
#else
    return 0;
#endif
}

int ts_stream_synchronize(ts_stream_t *s) {
#ifdef WEFT_WITH_CUDA
    return guarded("ts_stream_synchronize", [&] {
        if (s && s->cuda)
            s->cuda->synchronize();
        else if (!s && torch::cuda::is_available())
            c10::cuda::device_synchronize();
        return 0;
    });
#else
    return 0;
#endif
}

} /* extern "C" */
