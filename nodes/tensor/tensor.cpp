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
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>
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

struct ts_gen_s {
    at::Generator gen; /* a CPUGeneratorImpl */
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


/* --- argument checks of the NN ops: they run before ATen so a caller gets BASE_E_INVAL and
 * a message naming the argument rather than an ATen backtrace. --- */

/* "CPU" or "CUDA:<n>" into buf (no allocation, so usable outside guarded()). */
const char *device_label(const at::Tensor &t, char *buf, size_t cap) {
    if (t.is_cuda())
        snprintf(buf, cap, "CUDA:%d", (int)t.get_device());
    else
        snprintf(buf, cap, "%s", t.is_cpu() ? "CPU" : "another device");
    return buf;
}

int check_rank(const char *fn, const char *what, const at::Tensor &t, int64_t lo, int64_t hi) {
    int64_t nd = t.dim();
    if (nd >= lo && nd <= hi)
        return 0;
    if (lo == hi)
        return fail(BASE_E_INVAL, "%s: %s must have %lld dims, got %lld", fn, what, (long long)lo,
                    (long long)nd);
    if (hi >= TS_MAX_DIMS)
        return fail(BASE_E_INVAL, "%s: %s must have at least %lld dims, got %lld", fn, what,
                    (long long)lo, (long long)nd);
    return fail(BASE_E_INVAL, "%s: %s must have %lld to %lld dims, got %lld", fn, what,
                (long long)lo, (long long)hi, (long long)nd);
}

int check_float(const char *fn, const char *what, const at::Tensor &t) {
    if (at::isFloatingType(t.scalar_type()))
        return 0;
    return fail(BASE_E_INVAL, "%s: %s must be a floating-point tensor, got %s", fn, what,
                c10::toString(t.scalar_type()));
}

int check_same_device(const char *fn, const char *what, const at::Tensor &t, const at::Tensor &ref) {
    if (t.device() == ref.device())
        return 0;
    char a[32], b[32];
    return fail(BASE_E_INVAL, "%s: %s is on %s but the input is on %s", fn, what,
                device_label(t, a, sizeof a), device_label(ref, b, sizeof b));
}

/* t must match the reference input in dtype and device (ATen would not convert for us). */
int check_like(const char *fn, const char *what, const at::Tensor &t, const at::Tensor &ref) {
    if (t.scalar_type() != ref.scalar_type())
        return fail(BASE_E_INVAL, "%s: %s has dtype %s but the input has %s", fn, what,
                    c10::toString(t.scalar_type()), c10::toString(ref.scalar_type()));
    return check_same_device(fn, what, t, ref);
}

/* An optional per-channel parameter: NULL, or 1-D of n elements like the input. */
int check_channel(const char *fn, const char *what, const ts_tensor_t *p, int64_t n,
                  const at::Tensor &ref) {
    if (!p)
        return 0;
    if (p->t.dim() != 1 || p->t.size(0) != n)
        return fail(BASE_E_INVAL, "%s: %s must be 1-D of %lld elements, got %lld dims of %lld",
                    fn, what, (long long)n, (long long)p->t.dim(), (long long)p->t.numel());
    return check_like(fn, what, p->t, ref);
}

c10::optional<at::Tensor> optional_of(const ts_tensor_t *p) {
    return p ? c10::optional<at::Tensor>(p->t) : c10::nullopt;
}

/* Releases a ts_from_blob buffer when ATen drops the storage. Armed only once the handle
 * exists, so a failure half-way through ts_from_blob never calls release (the contract). */
struct blob_owner {
    void (*release)(void *);
    void *ctx;
    std::atomic<bool> armed{false};
};

/* Size of the [B*heads, chunk, M] score block ts_attention materialises at once. */
constexpr int64_t ATTENTION_SCORE_BUDGET = (int64_t)256 << 20;

/* softmax(q k^T * d^-0.5) v per head; shapes checked by ts_attention. Heads move to the
 * batch dim so each step is one bmm over B*heads. Queries go in chunks: a chunk's scores
 * are written, soft-maxed in place and consumed from one preallocated buffer, so the
 * biggest allocation is the budget and nothing is re-allocated per chunk. */
at::Tensor attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, int64_t heads,
                     bool causal) {
    const int64_t B = q.size(0), N = q.size(1), C = q.size(2), M = k.size(1);
    const int64_t d = C / heads, BH = B * heads;
    const double scale = 1.0 / std::sqrt((double)d);

    /* [B, M, h*d] -> [B*h, M, d]: one copy of k and v, small beside the scores. */
    at::Tensor kh = k.reshape({B, M, heads, d}).permute({0, 2, 1, 3}).reshape({BH, M, d});
    at::Tensor vh = v.reshape({B, M, heads, d}).permute({0, 2, 1, 3}).reshape({BH, M, d});
    at::Tensor kt = kh.transpose(1, 2); /* a view: BLAS reads k transposed */
    at::Tensor q4 = q.reshape({B, N, heads, d});
    at::Tensor out = at::empty({B, N, C}, q.options());
    at::Tensor out4 = out.view({B, N, heads, d});
    if (N == 0 || B == 0)
        return out; /* nothing to compute (and no chunk size to derive) */

    int64_t row_bytes = BH * M * (int64_t)q.element_size();
    int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, ATTENTION_SCORE_BUDGET / row_bytes));
    /* Flat buffers, so the shorter last chunk is still a contiguous prefix. */
    at::Tensor scores_buf = at::empty({BH * chunk * M}, q.options());
    at::Tensor q_buf = at::empty({BH * chunk * d}, q.options());
    at::Tensor o_buf = at::empty({BH * chunk * d}, q.options());
    at::Tensor cols;
    if (causal)
        cols = at::arange(M, at::TensorOptions().dtype(at::kLong).device(q.device()));

    for (int64_t i0 = 0; i0 < N; i0 += chunk) {
        const int64_t c = std::min(chunk, N - i0);
        /* Splitting the heads and scaling by d^-0.5 is one pass over the query chunk. */
        at::Tensor qc = q_buf.narrow(0, 0, BH * c * d).view({B, heads, c, d});
        at::mul_out(qc, q4.narrow(1, i0, c).permute({0, 2, 1, 3}), at::Scalar(scale));
        at::Tensor s = scores_buf.narrow(0, 0, BH * c * M).view({BH, c, M});
        at::bmm_out(s, qc.view({BH, c, d}), kt);
        if (causal) {
            at::Tensor rows = at::arange(i0, i0 + c, cols.options()).unsqueeze(1);
            s.masked_fill_(cols.gt(rows), -std::numeric_limits<double>::infinity());
        }
        at::_softmax_out(s, s, -1, false); /* row-wise kernel: in place is safe */
        at::Tensor oc = o_buf.narrow(0, 0, BH * c * d).view({BH, c, d});
        at::bmm_out(oc, s, vh);
        /* Merge the heads back straight into the output rows of this chunk. */
        out4.narrow(1, i0, c).copy_(oc.view({B, heads, c, d}).permute({0, 2, 1, 3}));
    }
    return out;
}

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
    at::ScalarType st = at::kFloat;
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
    at::ScalarType st = at::kFloat;
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
    int64_t d = 0;
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
    at::ScalarType st = at::kFloat;
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
    at::ScalarType st = at::kFloat;
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
    int64_t d = 0;
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
    int64_t d = 0;
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

/* --- creation without copying --- */

int ts_from_blob(ts_tensor_t **out, const void *data, ts_dtype_t dtype, const int64_t *shape,
                 int ndim, void (*release)(void *ctx), void *ctx) {
    TS_CHECK_OUT(out);
    std::vector<int64_t> sv;
    at::ScalarType st = at::kFloat;
    int64_t n = 0;
    TS_RC(check_shape(shape, ndim, &sv));
    TS_RC(shape_numel(sv, &n));
    TS_RC(to_scalar_type(dtype, &st));
    size_t esize = c10::elementSize(st), bytes;
    if (__builtin_mul_overflow((size_t)n, esize, &bytes))
        return fail(BASE_E_INVAL, "ts_from_blob: tensor too large");
    if (bytes > 0 && !data)
        return fail(BASE_E_INVAL, "ts_from_blob: data is NULL");
    /* ATen's vectorised kernels assume naturally aligned elements. */
    if ((uintptr_t)data % esize != 0)
        return fail(BASE_E_INVAL,
                    "ts_from_blob: data at %p is not aligned to its %zu-byte %s elements "
                    "(copy it with ts_from_host instead)",
                    data, esize, c10::toString(st));
    return guarded("ts_from_blob", [&] {
        auto owner = std::make_shared<blob_owner>();
        owner->release = release;
        owner->ctx = ctx;
        /* The storage outlives every view; its deleter runs once, when the last one goes. */
        at::Tensor t = at::from_blob(
            const_cast<void *>(data), sv,
            [owner](void *) {
                if (owner->armed.load(std::memory_order_acquire) && owner->release)
                    owner->release(owner->ctx);
            },
            at::TensorOptions().dtype(st));
        std::unique_ptr<ts_tensor_s> h(new ts_tensor_s{std::move(t), {1}});
        owner->armed.store(true, std::memory_order_release);
        *out = h.release();
        return 0;
    });
}

/* --- random generators --- */

int ts_gen_new(ts_gen_t **out, uint64_t seed) {
    TS_CHECK_OUT(out);
    return guarded("ts_gen_new", [&] {
        /* Same seeding as torch.Generator().manual_seed(seed) and as ts_randn. */
        *out = new ts_gen_s{at::make_generator<at::CPUGeneratorImpl>(seed)};
        return 0;
    });
}

void ts_gen_free(ts_gen_t *g) { delete g; }

int ts_randn_gen(ts_tensor_t **out, const int64_t *shape, int ndim, ts_gen_t *g, ts_device_t dev) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(g);
    std::vector<int64_t> sv;
    c10::Device device(c10::kCPU);
    int64_t n = 0;
    TS_RC(check_shape(shape, ndim, &sv));
    TS_RC(shape_numel(sv, &n));
    TS_RC(to_device(dev, &device));
    return guarded("ts_randn_gen", [&] {
        /* No lock here: ATen's CPU normal kernel takes the generator's mutex itself (a
         * second lock_guard on the same std::mutex would deadlock). */
        at::Tensor t = at::randn(sv, g->gen, at::TensorOptions().dtype(at::kFloat));
        return emit(out, device.is_cpu() ? t : t.to(device));
    });
}

/* --- more arithmetic --- */

int ts_add_scaled(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b, double alpha) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(a);
    TS_CHECK_ARG(b);
    TS_RC(check_same_device("ts_add_scaled", "b", b->t, a->t));
    return guarded("ts_add_scaled", [&] { return emit(out, at::add(a->t, b->t, alpha)); });
}

int ts_unary(ts_tensor_t **out, const ts_tensor_t *t, ts_unary_t op) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    int o = raw_enum(op);
    if (o < TS_UNARY_EXP || o > TS_UNARY_RELU)
        return fail(BASE_E_INVAL, "ts_unary: unknown op %d", o);
    /* abs, neg and relu are defined on integers too; the rest need a float input. */
    if (o != TS_UNARY_ABS && o != TS_UNARY_NEG && o != TS_UNARY_RELU)
        TS_RC(check_float("ts_unary", "t", t->t));
    return guarded("ts_unary", [&] {
        const at::Tensor &x = t->t;
        switch (o) {
        case TS_UNARY_EXP: return emit(out, at::exp(x));
        case TS_UNARY_LOG: return emit(out, at::log(x));
        case TS_UNARY_SQRT: return emit(out, at::sqrt(x));
        case TS_UNARY_ABS: return emit(out, at::abs(x));
        case TS_UNARY_NEG: return emit(out, at::neg(x));
        case TS_UNARY_SIGMOID: return emit(out, at::sigmoid(x));
        case TS_UNARY_SILU: return emit(out, at::silu(x));
        case TS_UNARY_GELU: return emit(out, at::gelu(x, "none"));
        case TS_UNARY_QUICK_GELU: {
            at::Tensor r = at::sigmoid(x * 1.702);
            r.mul_(x); /* r is our own temporary */
            return emit(out, std::move(r));
        }
        default: return emit(out, at::relu(x));
        }
    });
}

int ts_reduce_all(const ts_tensor_t *t, ts_reduce_t op, double *out) {
    TS_CHECK_ARG(t);
    TS_CHECK_ARG(out);
    int o = raw_enum(op);
    if (o < TS_REDUCE_SUM || o > TS_REDUCE_MAX_ABS)
        return fail(BASE_E_INVAL, "ts_reduce_all: unknown reduction %d", o);
    if (o != TS_REDUCE_SUM && t->t.numel() == 0)
        return fail(BASE_E_INVAL, "ts_reduce_all: reduction %d of an empty tensor", o);
    return guarded("ts_reduce_all", [&] {
        const at::Tensor &x = t->t;
        switch (o) {
        case TS_REDUCE_SUM: *out = at::sum(x, at::kDouble).item<double>(); break;
        case TS_REDUCE_MEAN: *out = at::mean(x, at::kDouble).item<double>(); break;
        case TS_REDUCE_MAX: *out = x.max().item<double>(); break;
        case TS_REDUCE_MIN: *out = x.min().item<double>(); break;
        default: {
            /* max(|min|, |max|): no |x| copy of a possibly large tensor. */
            double hi = x.max().item<double>(), lo = x.min().item<double>();
            if (std::isnan(hi) || std::isnan(lo))
                *out = std::numeric_limits<double>::quiet_NaN();
            else
                *out = std::max(std::fabs(hi), std::fabs(lo));
        }
        }
        return 0;
    });
}

int ts_softmax(ts_tensor_t **out, const ts_tensor_t *t, int dim) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(t);
    int64_t d = 0;
    TS_RC(wrap_dim(dim, t->t.dim(), &d));
    TS_RC(check_float("ts_softmax", "t", t->t));
    return guarded("ts_softmax", [&] {
        at::ScalarType st = t->t.scalar_type();
        if (st == at::kFloat || st == at::kDouble)
            return emit(out, at::softmax(t->t, d));
        return emit(out, at::softmax(t->t, d, at::kFloat).to(st));
    });
}

int ts_matmul(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(a);
    TS_CHECK_ARG(b);
    TS_RC(check_rank("ts_matmul", "a", a->t, 1, TS_MAX_DIMS));
    TS_RC(check_rank("ts_matmul", "b", b->t, 1, TS_MAX_DIMS));
    TS_RC(check_like("ts_matmul", "b", b->t, a->t));
    return guarded("ts_matmul", [&] { return emit(out, at::matmul(a->t, b->t)); });
}

int ts_lerp(ts_tensor_t **out, const ts_tensor_t *a, const ts_tensor_t *b, const ts_tensor_t *m) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(a);
    TS_CHECK_ARG(b);
    TS_CHECK_ARG(m);
    TS_RC(check_like("ts_lerp", "b", b->t, a->t));
    TS_RC(check_same_device("ts_lerp", "m", m->t, a->t));
    TS_RC(check_float("ts_lerp", "m", m->t));
    return guarded("ts_lerp", [&] {
        /* Literally a*(1-m) + b*m (not at::lerp's a + m*(b-a)): m = 1 gives b exactly. */
        at::Tensor r = at::mul(a->t, at::rsub(m->t, 1));
        return emit(out, at::add(r, at::mul(b->t, m->t)));
    });
}

int ts_embedding(ts_tensor_t **out, const ts_tensor_t *weight, const ts_tensor_t *ids) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(weight);
    TS_CHECK_ARG(ids);
    TS_RC(check_rank("ts_embedding", "weight", weight->t, 2, 2));
    at::ScalarType it = ids->t.scalar_type();
    if (it != at::kLong && it != at::kInt)
        return fail(BASE_E_INVAL, "ts_embedding: ids must be I64 or I32, got %s", c10::toString(it));
    TS_RC(check_same_device("ts_embedding", "ids", ids->t, weight->t));
    return guarded("ts_embedding", [&] { return emit(out, at::embedding(weight->t, ids->t)); });
}

/* --- neural-network layers --- */

int ts_conv2d(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b,
              int stride, int padding) {
    static const char fn[] = "ts_conv2d";
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_CHECK_ARG(w);
    TS_RC(check_rank(fn, "x", x->t, 4, 4));
    TS_RC(check_rank(fn, "w", w->t, 4, 4));
    TS_RC(check_float(fn, "x", x->t));
    TS_RC(check_like(fn, "w", w->t, x->t));
    if (stride < 1)
        return fail(BASE_E_INVAL, "%s: stride %d must be >= 1", fn, stride);
    if (padding < 0)
        return fail(BASE_E_INVAL, "%s: padding %d must be >= 0", fn, padding);
    const int64_t cin = x->t.size(1), cout = w->t.size(0), wcin = w->t.size(1);
    if (wcin < 1 || cin % wcin != 0)
        return fail(BASE_E_INVAL, "%s: input has %lld channels, not a multiple of the weight's %lld",
                    fn, (long long)cin, (long long)wcin);
    const int64_t groups = cin / wcin;
    if (cout < 1 || cout % groups != 0)
        return fail(BASE_E_INVAL, "%s: %lld output channels do not split into %lld groups", fn,
                    (long long)cout, (long long)groups);
    TS_RC(check_channel(fn, "b", b, cout, x->t));
    const int64_t kh = w->t.size(2), kw = w->t.size(3);
    if (kh < 1 || kw < 1 || x->t.size(2) + 2 * padding < kh || x->t.size(3) + 2 * padding < kw)
        return fail(BASE_E_INVAL, "%s: kernel %lldx%lld does not fit the padded %lldx%lld input", fn,
                    (long long)kh, (long long)kw, (long long)x->t.size(2), (long long)x->t.size(3));
    std::array<int64_t, 2> st = {stride, stride}, pad = {padding, padding}, dil = {1, 1};
    return guarded(fn, [&] {
        return emit(out, at::conv2d(x->t, w->t, optional_of(b), st, pad, dil, groups));
    });
}

int ts_pad2d(ts_tensor_t **out, const ts_tensor_t *x, int left, int right, int top, int bottom,
             double value) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_RC(check_rank("ts_pad2d", "x", x->t, 2, TS_MAX_DIMS));
    if (left < 0 || right < 0 || top < 0 || bottom < 0)
        return fail(BASE_E_INVAL, "ts_pad2d: negative padding (%d, %d, %d, %d)", left, right, top,
                    bottom);
    std::array<int64_t, 4> pad = {left, right, top, bottom};
    return guarded("ts_pad2d", [&] { return emit(out, at::constant_pad_nd(x->t, pad, value)); });
}

int ts_linear(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b) {
    static const char fn[] = "ts_linear";
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_CHECK_ARG(w);
    TS_RC(check_rank(fn, "x", x->t, 1, TS_MAX_DIMS));
    TS_RC(check_rank(fn, "w", w->t, 2, 2));
    TS_RC(check_float(fn, "x", x->t));
    TS_RC(check_like(fn, "w", w->t, x->t));
    if (x->t.size(-1) != w->t.size(1))
        return fail(BASE_E_INVAL, "%s: input has %lld features, the weight expects %lld", fn,
                    (long long)x->t.size(-1), (long long)w->t.size(1));
    TS_RC(check_channel(fn, "b", b, w->t.size(0), x->t));
    return guarded(fn, [&] { return emit(out, at::linear(x->t, w->t, optional_of(b))); });
}

int ts_group_norm(ts_tensor_t **out, const ts_tensor_t *x, int groups, const ts_tensor_t *w,
                  const ts_tensor_t *b, double eps) {
    static const char fn[] = "ts_group_norm";
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_RC(check_rank(fn, "x", x->t, 2, TS_MAX_DIMS));
    TS_RC(check_float(fn, "x", x->t));
    const int64_t c = x->t.size(1);
    if (groups < 1 || c % groups != 0)
        return fail(BASE_E_INVAL, "%s: %lld channels do not split into %d groups", fn, (long long)c,
                    groups);
    if (!(eps >= 0) || std::isinf(eps))
        return fail(BASE_E_INVAL, "%s: eps %g must be finite and >= 0", fn, eps);
    TS_RC(check_channel(fn, "w", w, c, x->t));
    TS_RC(check_channel(fn, "b", b, c, x->t));
    return guarded(fn, [&] {
        return emit(out, at::group_norm(x->t, groups, optional_of(w), optional_of(b), eps, false));
    });
}

int ts_layer_norm(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b,
                  double eps) {
    static const char fn[] = "ts_layer_norm";
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_RC(check_rank(fn, "x", x->t, 1, TS_MAX_DIMS));
    TS_RC(check_float(fn, "x", x->t));
    if (!(eps >= 0) || std::isinf(eps))
        return fail(BASE_E_INVAL, "%s: eps %g must be finite and >= 0", fn, eps);
    const int64_t c = x->t.size(-1);
    TS_RC(check_channel(fn, "w", w, c, x->t));
    TS_RC(check_channel(fn, "b", b, c, x->t));
    std::array<int64_t, 1> shape = {c};
    return guarded(fn, [&] {
        return emit(out, at::layer_norm(x->t, shape, optional_of(w), optional_of(b), eps, false));
    });
}

int ts_batch_norm(ts_tensor_t **out, const ts_tensor_t *x, const ts_tensor_t *w, const ts_tensor_t *b,
                  const ts_tensor_t *mean, const ts_tensor_t *var, double eps) {
    static const char fn[] = "ts_batch_norm";
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_CHECK_ARG(mean);
    TS_CHECK_ARG(var);
    TS_RC(check_rank(fn, "x", x->t, 2, TS_MAX_DIMS));
    TS_RC(check_float(fn, "x", x->t));
    if (!(eps >= 0) || std::isinf(eps))
        return fail(BASE_E_INVAL, "%s: eps %g must be finite and >= 0", fn, eps);
    const int64_t c = x->t.size(1);
    TS_RC(check_channel(fn, "w", w, c, x->t));
    TS_RC(check_channel(fn, "b", b, c, x->t));
    TS_RC(check_channel(fn, "mean", mean, c, x->t));
    TS_RC(check_channel(fn, "var", var, c, x->t));
    return guarded(fn, [&] {
        return emit(out, at::batch_norm(x->t, optional_of(w), optional_of(b), mean->t, var->t,
                                         false, 0.0, eps, false));
    });
}

int ts_max_pool2d(ts_tensor_t **out, const ts_tensor_t *x, int k, int s, int p) {
    static const char fn[] = "ts_max_pool2d";
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_RC(check_rank(fn, "x", x->t, 3, 4));
    if (k < 1 || s < 1 || p < 0 || p > k / 2)
        return fail(BASE_E_INVAL, "%s: kernel %d, stride %d, padding %d: need k, s >= 1 and "
                    "0 <= padding <= k/2", fn, k, s, p);
    const int64_t h = x->t.size(-2), wd = x->t.size(-1);
    if (h + 2 * p < k || wd + 2 * p < k)
        return fail(BASE_E_INVAL, "%s: kernel %d does not fit the padded %lldx%lld input", fn, k,
                    (long long)h, (long long)wd);
    std::array<int64_t, 2> ks = {k, k}, ss = {s, s}, ps = {p, p};
    return guarded(fn, [&] { return emit(out, at::max_pool2d(x->t, ks, ss, ps)); });
}

int ts_global_avg_pool(ts_tensor_t **out, const ts_tensor_t *x) {
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(x);
    TS_RC(check_rank("ts_global_avg_pool", "x", x->t, 4, 4));
    TS_RC(check_float("ts_global_avg_pool", "x", x->t));
    std::array<int64_t, 2> dims = {2, 3};
    return guarded("ts_global_avg_pool", [&] { return emit(out, x->t.mean(dims)); });
}

int ts_attention(ts_tensor_t **out, const ts_tensor_t *q, const ts_tensor_t *k, const ts_tensor_t *v,
                 int heads, bool causal) {
    static const char fn[] = "ts_attention";
    TS_CHECK_OUT(out);
    TS_CHECK_ARG(q);
    TS_CHECK_ARG(k);
    TS_CHECK_ARG(v);
    TS_RC(check_rank(fn, "q", q->t, 3, 3));
    TS_RC(check_rank(fn, "k", k->t, 3, 3));
    TS_RC(check_rank(fn, "v", v->t, 3, 3));
    TS_RC(check_float(fn, "q", q->t));
    TS_RC(check_like(fn, "k", k->t, q->t));
    TS_RC(check_like(fn, "v", v->t, q->t));
    const int64_t B = q->t.size(0), C = q->t.size(2), M = k->t.size(1);
    if (k->t.size(0) != B || v->t.size(0) != B || v->t.size(1) != M)
        return fail(BASE_E_INVAL, "%s: k and v must be [%lld, M, C] with the same M", fn,
                    (long long)B);
    if (k->t.size(2) != C || v->t.size(2) != C)
        return fail(BASE_E_INVAL, "%s: q, k and v have %lld, %lld and %lld channels", fn,
                    (long long)C, (long long)k->t.size(2), (long long)v->t.size(2));
    if (heads < 1 || C % heads != 0 || C == 0)
        return fail(BASE_E_INVAL, "%s: %lld channels do not split into %d heads", fn, (long long)C,
                    heads);
    if (M == 0)
        return fail(BASE_E_INVAL, "%s: no keys (k has 0 rows)", fn);
    return guarded(fn, [&] { return emit(out, attention(q->t, k->t, v->t, heads, causal)); });
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

/* --- lanes --- */

struct ts_event_s {
#ifdef WEFT_WITH_CUDA
    c10::Event ev{c10::DeviceType::CUDA};
#endif
};

namespace {
using set_threads_fn = void (*)(int);
std::once_flag g_lane_once;
set_threads_fn g_omp_set;  /* OpenMP's omp_set_num_threads: a per-thread setting */
set_threads_fn g_blas_set; /* OpenBLAS's thread count: process-wide */
std::atomic<int> g_blas_threads{0};
bool g_openmp; /* ATen's parallel backend is OpenMP: omp_set_num_threads sizes its regions */

/* Found in the libraries libtorch already loaded (nothing new is loaded): linking them here
 * would tie the module to one OpenMP and one BLAS. */
void find_thread_setters() {
    g_openmp = std::strstr(at::get_parallel_info().c_str(), "OpenMP") != nullptr;
    if (void *h = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD))
        g_omp_set = reinterpret_cast<set_threads_fn>(dlsym(h, "omp_set_num_threads"));
    for (const char *lib : {"libopenblas.so.0", "libblas.so.3", "libopenblasp-r0.3.21.so"}) {
        void *h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
        if (h && (g_blas_set = reinterpret_cast<set_threads_fn>(dlsym(h, "openblas_set_num_threads"))))
            break;
    }
}
} // namespace

int ts_set_thread_budget(int threads) {
    if (threads <= 0)
        return fail(BASE_E_INVAL, "ts_set_thread_budget: thread count %d must be > 0", threads);
    return guarded("ts_set_thread_budget", [&] {
        std::call_once(g_lane_once, find_thread_setters);
        /* ATen sets this thread's count from the process-wide one the first time the thread
         * asks; let that happen now so it does not undo the budget later. */
        (void)at::get_num_threads();
        if (g_omp_set && g_openmp)
            g_omp_set(threads);
        else
            at::set_num_threads(threads);
        if (g_blas_set && g_blas_threads.exchange(threads) != threads)
            g_blas_set(threads);
        return 0;
    });
}

int ts_event_record(ts_event_t **out) {
    TS_CHECK_OUT(out);
#ifdef WEFT_WITH_CUDA
    if (g_stream_dev < 0)
        return 0;
    return guarded("ts_event_record", [&] {
        std::unique_ptr<ts_event_s> e(new ts_event_s());
        e->ev.record(c10::cuda::getCurrentCUDAStream((c10::DeviceIndex)g_stream_dev).unwrap());
        *out = e.release();
        return 0;
    });
#else
    return 0;
#endif
}

int ts_event_wait(const ts_event_t *ev) {
#ifdef WEFT_WITH_CUDA
    if (!ev || g_stream_dev < 0)
        return 0;
    return guarded("ts_event_wait", [&] {
        ev->ev.block(c10::cuda::getCurrentCUDAStream((c10::DeviceIndex)g_stream_dev).unwrap());
        return 0;
    });
#else
    return 0;
#endif
}

void ts_event_free(ts_event_t *ev) { delete ev; }

int ts_record_stream(const ts_tensor_t *t) {
#ifdef WEFT_WITH_CUDA
    if (!t || g_stream_dev < 0 || !t->t.is_cuda())
        return 0;
    return guarded("ts_record_stream", [&] {
        c10::cuda::CUDACachingAllocator::recordStream(
            t->t.storage().data_ptr(), c10::cuda::getCurrentCUDAStream((c10::DeviceIndex)g_stream_dev));
        return 0;
    });
#else
    return 0;
#endif
}

} /* extern "C" */
