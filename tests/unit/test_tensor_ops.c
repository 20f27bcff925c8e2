/* Tests of the tensor shim (nodes/tensor/tensor.h) over libtorch on CPU: every entry point,
 * exact values from hand computation or torch's documented outputs, and the error paths. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "tensor.h"

static const ts_device_t CPU = {TS_CPU, 0};
static const ts_device_t CUDA0 = {TS_CUDA, 0};

/* A float32 CPU tensor from a literal. */
static ts_tensor_t *mk_f32(const float *v, const int64_t *shape, int ndim) {
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_from_host(&t, v, TS_F32, shape, ndim, CPU), 0);
    assert_non_null(t);
    return t;
}

/* Asserts shape and float32 contents of t (read back with ts_to_host). */
static void expect_f32(const ts_tensor_t *t, const int64_t *shape, int ndim, const float *want,
                       double tol) {
    int64_t got_shape[TS_MAX_DIMS];
    assert_int_equal(ts_shape(t, got_shape), ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(got_shape[i], shape[i]);
        n *= shape[i];
    }
    assert_int_equal(ts_numel(t), n);
    float buf[64];
    assert_true(n <= 64);
    assert_int_equal(ts_to_host(t, TS_F32, buf, sizeof buf), 0);
    for (int64_t i = 0; i < n; i++) {
        if (fabs((double)buf[i] - (double)want[i]) > tol)
            fail_msg("element %lld: got %.9g, want %.9g", (long long)i, buf[i], want[i]);
    }
}

static int setup(void **state) {
    (void)state;
    return ts_init(0);
}

static void test_init_and_backend(void **state) {
    (void)state;
    assert_int_equal(ts_init(0), 0);
    assert_int_equal(ts_init(3), 0); /* idempotent */
    assert_int_equal(ts_init(-1), BASE_E_INVAL);
    int n = ts_get_num_threads();
    assert_true(n >= 1);
    assert_int_equal(ts_set_num_threads(1), 0);
    assert_int_equal(ts_get_num_threads(), 1);
    assert_int_equal(ts_set_num_threads(0), BASE_E_INVAL);
    assert_int_equal(ts_set_num_threads(n), 0);
    assert_int_equal(ts_get_num_threads(), n);

    const char *name = ts_backend_name();
    assert_non_null(name);
    assert_int_equal(strncmp(name, "libtorch 1.", 11), 0);
    assert_non_null(strstr(name, "(CPU)"));
    assert_false(ts_cuda_available());
    assert_non_null(ts_last_error());
}

static void test_from_host_and_inspection(void **state) {
    (void)state;
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[2] = {2, 3};
    ts_tensor_t *t = mk_f32(v, shape, 2);
    assert_int_equal(ts_ndim(t), 2);
    assert_int_equal(ts_size(t, 0), 2);
    assert_int_equal(ts_size(t, 1), 3);
    assert_int_equal(ts_size(t, -1), 3);
    assert_int_equal(ts_size(t, -2), 2);
    assert_int_equal(ts_size(t, 2), -1);
    assert_int_equal(ts_size(t, -3), -1);
    assert_int_equal(ts_numel(t), 6);
    assert_int_equal(ts_dtype(t), TS_F32);
    ts_device_t d = ts_device(t);
    assert_int_equal(d.type, TS_CPU);
    assert_int_equal(d.index, 0);

    const float *p = ts_data(t);
    assert_non_null(p);
    assert_memory_equal(p, v, sizeof v);
    assert_true(p != v); /* a copy, not the caller's buffer */

    double x = 0;
    int64_t idx[2] = {1, 2};
    assert_int_equal(ts_item(t, idx, &x), 0);
    assert_true(x == 6.0);
    idx[0] = -1;
    idx[1] = -3;
    assert_int_equal(ts_item(t, idx, &x), 0);
    assert_true(x == 4.0);
    idx[1] = 3;
    assert_int_equal(ts_item(t, idx, &x), BASE_E_INVAL);
    assert_int_equal(ts_item(t, NULL, &x), BASE_E_INVAL);
    assert_int_equal(ts_item(t, idx, NULL), BASE_E_INVAL);

    int32_t iv[6];
    assert_int_equal(ts_to_host(t, TS_I32, iv, sizeof iv), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(iv[i], i + 1);

    assert_int_equal(ts_ndim(NULL), BASE_E_INVAL);
    assert_int_equal(ts_numel(NULL), -1);
    assert_int_equal(ts_size(NULL, 0), -1);
    assert_null(ts_data(NULL));
    int64_t sh[TS_MAX_DIMS];
    assert_int_equal(ts_shape(NULL, sh), BASE_E_INVAL);
    assert_int_equal(ts_shape(t, NULL), BASE_E_INVAL);
    ts_free(t);
}

/* Every dtype survives a host round trip bit for bit and reports itself. */
static void test_dtypes_roundtrip(void **state) {
    (void)state;
    const int64_t shape[1] = {3};
    const uint16_t f16[3] = {0x3c00, 0xc000, 0x3800};  /* 1, -2, 0.5 */
    const uint16_t bf16[3] = {0x3f80, 0xc000, 0x3f00}; /* 1, -2, 0.5 */
    const double f64[3] = {1, -2, 0.5};
    const int64_t i64[3] = {1, -2, 5000000000LL};
    const int32_t i32[3] = {1, -2, 7};
    const uint8_t u8[3] = {1, 200, 7};
    const bool bo[3] = {true, false, true};
    const float f32[3] = {1, -2, 0.5};
    struct {
        ts_dtype_t dt;
        const void *data;
        size_t bytes;
        double second;
    } cases[] = {
        {TS_F32, f32, sizeof f32, -2},   {TS_F16, f16, sizeof f16, -2},
        {TS_BF16, bf16, sizeof bf16, -2}, {TS_F64, f64, sizeof f64, -2},
        {TS_I64, i64, sizeof i64, -2},   {TS_I32, i32, sizeof i32, -2},
        {TS_U8, u8, sizeof u8, 200},     {TS_BOOL, bo, sizeof bo, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ts_tensor_t *t = NULL;
        assert_int_equal(ts_from_host(&t, cases[c].data, cases[c].dt, shape, 1, CPU), 0);
        assert_int_equal(ts_dtype(t), cases[c].dt);
        unsigned char back[32];
        assert_int_equal(ts_to_host(t, cases[c].dt, back, sizeof back), 0);
        assert_memory_equal(back, cases[c].data, cases[c].bytes);
        assert_memory_equal(ts_data(t), cases[c].data, cases[c].bytes);
        int64_t i = 1;
        double x = 99;
        assert_int_equal(ts_item(t, &i, &x), 0);
        assert_true(x == cases[c].second);
        /* every dtype converts to float32 on the way out */
        float fv[3];
        assert_int_equal(ts_to_host(t, TS_F32, fv, sizeof fv), 0);
        assert_true(fv[1] == (float)cases[c].second);
        ts_free(t);
    }
}

static void test_ref_free(void **state) {
    (void)state;
    ts_tensor_t *t = NULL;
    const int64_t shape[1] = {4};
    assert_int_equal(ts_zeros(&t, shape, 1, TS_F32, CPU), 0);
    assert_ptr_equal(ts_ref(t), t);
    ts_free(t);
    assert_int_equal(ts_numel(t), 4); /* still alive: one reference left */
    ts_free(t);
    ts_free(NULL);
    assert_null(ts_ref(NULL));
}

static void test_zeros_full(void **state) {
    (void)state;
    const int64_t shape[2] = {2, 2};
    ts_tensor_t *z = NULL, *f = NULL, *b = NULL, *s = NULL, *e = NULL;
    assert_int_equal(ts_zeros(&z, shape, 2, TS_F64, CPU), 0);
    assert_int_equal(ts_dtype(z), TS_F64);
    const float zeros[4] = {0, 0, 0, 0};
    expect_f32(z, shape, 2, zeros, 0);

    assert_int_equal(ts_full(&f, shape, 2, 7.0, TS_I32, CPU), 0);
    int32_t iv[4];
    assert_int_equal(ts_to_host(f, TS_I32, iv, sizeof iv), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(iv[i], 7);

    assert_int_equal(ts_full(&b, shape, 2, 1.0, TS_BOOL, CPU), 0);
    assert_int_equal(ts_dtype(b), TS_BOOL);
    uint8_t bv[4];
    assert_int_equal(ts_to_host(b, TS_U8, bv, sizeof bv), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(bv[i], 1);

    /* 0-d scalar and an empty tensor */
    assert_int_equal(ts_full(&s, NULL, 0, 2.5, TS_F32, CPU), 0);
    assert_int_equal(ts_ndim(s), 0);
    assert_int_equal(ts_numel(s), 1);
    double x = 0;
    assert_int_equal(ts_item(s, NULL, &x), 0);
    assert_true(x == 2.5);
    const int64_t empty_shape[2] = {0, 3};
    assert_int_equal(ts_from_host(&e, NULL, TS_F32, empty_shape, 2, CPU), 0);
    assert_int_equal(ts_numel(e), 0);
    assert_int_equal(ts_to_host(e, TS_F32, NULL, 0), 0);

    ts_free(z);
    ts_free(f);
    ts_free(b);
    ts_free(s);
    ts_free(e);
}

static void test_randn(void **state) {
    (void)state;
    /* torch.manual_seed(0); torch.randn(5) */
    const int64_t s5[1] = {5};
    const float want5[5] = {1.5409961f, -0.2934289f, -2.1787894f, 0.5684313f, -1.0845224f};
    ts_tensor_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    assert_int_equal(ts_randn(&a, s5, 1, 0, CPU), 0);
    assert_int_equal(ts_dtype(a), TS_F32);
    expect_f32(a, s5, 1, want5, 1e-6);

    /* torch.manual_seed(0); torch.randn(2, 3): the sixth value continues the sequence */
    const int64_t s23[2] = {2, 3};
    const float want23[6] = {1.5410f, -0.2934f, -2.1788f, 0.5684f, -1.0845f, -1.3986f};
    assert_int_equal(ts_randn(&b, s23, 2, 0, CPU), 0);
    expect_f32(b, s23, 2, want23, 1e-4); /* torch prints 4 decimals */
    ts_free(a);
    ts_free(b);

    /* The largest seed works, is deterministic and differs from seed 0. */
    assert_int_equal(ts_randn(&a, s5, 1, UINT64_MAX, CPU), 0);
    assert_int_equal(ts_randn(&b, s5, 1, UINT64_MAX, CPU), 0);
    float va[5], vb[5];
    assert_int_equal(ts_to_host(a, TS_F32, va, sizeof va), 0);
    assert_int_equal(ts_to_host(b, TS_F32, vb, sizeof vb), 0);
    assert_memory_equal(va, vb, sizeof va);
    assert_true(fabsf(va[0] - want5[0]) > 1e-3f);
    ts_free(a);
    ts_free(b);

    /* numel >= 16 takes torch's vectorised Box-Muller path. torch.manual_seed(0);
     * torch.randn(4, 4) starts -1.1258, -1.1524, -0.2506, -0.4339; for 20 elements the
     * last block is recomputed from fresh uniforms. */
    const int64_t s20[2] = {4, 5};
    const float want20[20] = {
        -1.1258398f, -1.1523602f, -0.2505786f, -0.4338789f, 0.5988395f,
        -1.5550952f, -0.3413603f, 1.8530062f,  0.4680964f,  -0.1577124f,
        1.4436602f,  0.2660494f,  1.3893663f,  1.5863343f,  0.9462984f,
        -0.8436769f, 0.9318266f,  1.2590093f,  2.0049806f,  0.0537369f,
    };
    assert_int_equal(ts_randn(&c, s20, 2, 0, CPU), 0);
    assert_int_equal(ts_randn(&d, s20, 2, 0, CPU), 0);
    float vc[20], vd[20];
    assert_int_equal(ts_to_host(c, TS_F32, vc, sizeof vc), 0);
    assert_int_equal(ts_to_host(d, TS_F32, vd, sizeof vd), 0);
    assert_memory_equal(vc, vd, sizeof vc);
    expect_f32(c, s20, 2, want20, 1e-6);
    ts_free(c);
    ts_free(d);

    assert_int_equal(ts_randn(NULL, s5, 1, 0, CPU), BASE_E_INVAL);
    assert_int_equal(ts_randn(&a, s5, 1, 0, CUDA0), BASE_E_TENSOR_NOTSUP);
    assert_null(a);
}

static void test_to_and_contiguous(void **state) {
    (void)state;
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[2] = {2, 3};
    ts_tensor_t *t = mk_f32(v, shape, 2);
    ts_tensor_t *d = NULL, *h = NULL, *p = NULL, *c = NULL;

    assert_int_equal(ts_to(&d, t, TS_F64, CPU), 0);
    assert_int_equal(ts_dtype(d), TS_F64);
    double dv[6];
    assert_int_equal(ts_to_host(d, TS_F64, dv, sizeof dv), 0);
    for (int i = 0; i < 6; i++)
        assert_true(dv[i] == (double)(i + 1));
    assert_int_equal(ts_to(&h, t, TS_F16, CPU), 0);
    assert_int_equal(ts_dtype(h), TS_F16);
    expect_f32(h, shape, 2, v, 0);

    /* transpose: a non-contiguous view has no data pointer until made contiguous */
    const int perm[2] = {1, 0};
    assert_int_equal(ts_permute(&p, t, perm, 2), 0);
    const int64_t tshape[2] = {3, 2};
    const float tv[6] = {1, 4, 2, 5, 3, 6};
    expect_f32(p, tshape, 2, tv, 0);
    assert_null(ts_data(p));
    assert_int_equal(ts_contiguous(&c, p), 0);
    assert_non_null(ts_data(c));
    assert_memory_equal(ts_data(c), tv, sizeof tv);
    /* the input is untouched */
    assert_memory_equal(ts_data(t), v, sizeof v);

    ts_tensor_t *bad = NULL;
    assert_int_equal(ts_to(&bad, t, TS_F32, CUDA0), BASE_E_TENSOR_NOTSUP);
    assert_null(bad);
    assert_true(strlen(ts_last_error()) > 0);
    assert_int_equal(ts_to(&bad, t, (ts_dtype_t)42, CPU), BASE_E_INVAL);
    const ts_device_t weird = {(ts_device_type_t)7, 0};
    assert_int_equal(ts_to(&bad, t, TS_F32, weird), BASE_E_INVAL);
    assert_int_equal(ts_contiguous(&bad, NULL), BASE_E_INVAL);
    assert_int_equal(ts_contiguous(NULL, t), BASE_E_INVAL);

    ts_free(t);
    ts_free(d);
    ts_free(h);
    ts_free(p);
    ts_free(c);
}

static void test_reshape_permute(void **state) {
    (void)state;
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[2] = {2, 3};
    ts_tensor_t *t = mk_f32(v, shape, 2);
    ts_tensor_t *r = NULL, *bad = NULL;

    const int64_t s32[2] = {3, -1};
    assert_int_equal(ts_reshape(&r, t, s32, 2), 0);
    const int64_t want_shape[2] = {3, 2};
    expect_f32(r, want_shape, 2, v, 0);
    ts_free(r);

    const int64_t s4[1] = {4};
    assert_int_equal(ts_reshape(&bad, t, s4, 1), BASE_E_TENSOR);
    assert_null(bad);
    const int64_t sneg[2] = {-2, -3};
    assert_int_equal(ts_reshape(&bad, t, sneg, 2), BASE_E_INVAL);
    assert_int_equal(ts_reshape(&bad, t, s4, 9), BASE_E_INVAL);

    const int twice[2] = {0, 0};
    assert_int_equal(ts_permute(&bad, t, twice, 2), BASE_E_INVAL);
    const int out_of_range[2] = {0, 2};
    assert_int_equal(ts_permute(&bad, t, out_of_range, 2), BASE_E_INVAL);
    const int negative[2] = {-1, 0}; /* same as {1, 0} */
    assert_int_equal(ts_permute(&r, t, negative, 2), 0);
    const float tv[6] = {1, 4, 2, 5, 3, 6};
    expect_f32(r, want_shape, 2, tv, 0);
    ts_free(r);
    const int one[1] = {0};
    assert_int_equal(ts_permute(&bad, t, one, 1), BASE_E_INVAL);
    ts_free(t);
}

static void test_slice(void **state) {
    (void)state;
    const float v[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    const int64_t shape[1] = {10};
    ts_tensor_t *t = mk_f32(v, shape, 1);
    ts_tensor_t *s = NULL;
    struct {
        int64_t start, end, n;
        float first;
    } cases[] = {
        {2, 5, 3, 2},   {-3, INT64_MAX, 3, 7}, {-100, 2, 2, 0}, {5, 2, 0, 0},
        {0, -1, 9, 0},  {8, 100, 2, 8},        {-2, -1, 1, 8},  {20, 30, 0, 0},
        {INT64_MIN, INT64_MAX, 10, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ts_slice(&s, t, 0, cases[i].start, cases[i].end), 0);
        assert_int_equal(ts_numel(s), cases[i].n);
        if (cases[i].n > 0) {
            /* a contiguous slice of a 1-d tensor exposes its data at the right offset */
            const float *p = ts_data(s);
            assert_non_null(p);
            assert_true(p[0] == cases[i].first);
        }
        ts_free(s);
    }
    assert_int_equal(ts_slice(&s, t, 1, 0, 1), BASE_E_INVAL);
    assert_int_equal(ts_slice(&s, t, -2, 0, 1), BASE_E_INVAL);
    assert_int_equal(ts_slice(&s, NULL, 0, 0, 1), BASE_E_INVAL);

    /* along the last dim of a 2-d tensor */
    const int64_t s2[2] = {2, 5};
    ts_tensor_t *m = mk_f32(v, s2, 2);
    assert_int_equal(ts_slice(&s, m, -1, 1, 3), 0);
    const int64_t ws[2] = {2, 2};
    const float wv[4] = {1, 2, 6, 7};
    expect_f32(s, ws, 2, wv, 0);
    ts_free(s);
    ts_free(m);
    ts_free(t);
}

static void test_cat(void **state) {
    (void)state;
    const float a[2] = {1, 2}, b[2] = {3, 4};
    const int64_t shape[2] = {1, 2};
    ts_tensor_t *ta = mk_f32(a, shape, 2), *tb = mk_f32(b, shape, 2);
    ts_tensor_t *both[2] = {ta, tb};
    ts_tensor_t *c = NULL;

    assert_int_equal(ts_cat(&c, both, 2, 0), 0);
    const int64_t s0[2] = {2, 2};
    const float v0[4] = {1, 2, 3, 4};
    expect_f32(c, s0, 2, v0, 0);
    ts_free(c);
    assert_int_equal(ts_cat(&c, both, 2, -1), 0);
    const int64_t s1[2] = {1, 4};
    expect_f32(c, s1, 2, v0, 0);
    ts_free(c);
    assert_int_equal(ts_cat(&c, both, 1, 0), 0);
    expect_f32(c, shape, 2, a, 0);
    ts_free(c);

    assert_int_equal(ts_cat(&c, both, 0, 0), BASE_E_INVAL);
    assert_int_equal(ts_cat(&c, NULL, 1, 0), BASE_E_INVAL);
    assert_int_equal(ts_cat(&c, both, 2, 2), BASE_E_INVAL);
    ts_tensor_t *with_null[2] = {ta, NULL};
    assert_int_equal(ts_cat(&c, with_null, 2, 0), BASE_E_INVAL);
    ts_free(ta);
    ts_free(tb);
}

static void test_repeat(void **state) {
    (void)state;
    const float v[2] = {1, 2};
    const int64_t shape[1] = {2};
    ts_tensor_t *t = mk_f32(v, shape, 1), *r = NULL;
    const int64_t reps[2] = {2, 2};
    assert_int_equal(ts_repeat(&r, t, reps, 2), 0);
    const int64_t ws[2] = {2, 4};
    const float wv[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    expect_f32(r, ws, 2, wv, 0);
    ts_free(r);
    const int64_t neg[1] = {-1};
    assert_int_equal(ts_repeat(&r, t, neg, 1), BASE_E_INVAL);
    assert_int_equal(ts_repeat(&r, t, reps, 0), BASE_E_INVAL);
    const int64_t huge[2] = {INT64_MAX / 2, 2};
    assert_int_equal(ts_repeat(&r, t, huge, 2), BASE_E_INVAL);
    assert_null(r);
    ts_free(t);
}

static void test_arithmetic(void **state) {
    (void)state;
    const float av[2] = {1, 2}, bv[3] = {10, 20, 40};
    const int64_t sa[2] = {2, 1}, sb[2] = {1, 3}, so[2] = {2, 3};
    ts_tensor_t *a = mk_f32(av, sa, 2), *b = mk_f32(bv, sb, 2), *r = NULL;

    assert_int_equal(ts_add(&r, a, b), 0);
    const float add[6] = {11, 21, 41, 12, 22, 42};
    expect_f32(r, so, 2, add, 0);
    ts_free(r);
    assert_int_equal(ts_sub(&r, a, b), 0);
    const float sub[6] = {-9, -19, -39, -8, -18, -38};
    expect_f32(r, so, 2, sub, 0);
    ts_free(r);
    assert_int_equal(ts_mul(&r, a, b), 0);
    const float mul[6] = {10, 20, 40, 20, 40, 80};
    expect_f32(r, so, 2, mul, 0);
    ts_free(r);
    assert_int_equal(ts_div(&r, a, b), 0);
    const float dv[6] = {0.1f, 0.05f, 0.025f, 0.2f, 0.1f, 0.05f};
    expect_f32(r, so, 2, dv, 1e-7);
    ts_free(r);

    /* integer division is true division, as in torch */
    const int32_t one[1] = {1}, two[1] = {2};
    const int64_t s1[1] = {1};
    ts_tensor_t *i1 = NULL, *i2 = NULL;
    assert_int_equal(ts_from_host(&i1, one, TS_I32, s1, 1, CPU), 0);
    assert_int_equal(ts_from_host(&i2, two, TS_I32, s1, 1, CPU), 0);
    assert_int_equal(ts_div(&r, i1, i2), 0);
    assert_int_equal(ts_dtype(r), TS_F32);
    const float half[1] = {0.5f};
    expect_f32(r, s1, 1, half, 0);
    ts_free(r);
    ts_free(i1);
    ts_free(i2);

    const int64_t s4[1] = {4};
    const float v4[4] = {1, 2, 3, 4};
    ts_tensor_t *c = mk_f32(v4, s4, 1);
    assert_int_equal(ts_add(&r, b, c), BASE_E_TENSOR); /* 3 vs 4: no broadcast */
    assert_null(r);
    assert_true(strlen(ts_last_error()) > 0);
    assert_int_equal(ts_mul(&r, a, NULL), BASE_E_INVAL);
    assert_int_equal(ts_sub(NULL, a, b), BASE_E_INVAL);
    ts_free(a);
    ts_free(b);
    ts_free(c);
}

static void test_affine_clamp(void **state) {
    (void)state;
    const float v[3] = {0, 1, 2};
    const int64_t s[1] = {3};
    ts_tensor_t *t = mk_f32(v, s, 1), *r = NULL;
    assert_int_equal(ts_affine(&r, t, -1.0, 1.0), 0);
    const float inv[3] = {1, 0, -1};
    expect_f32(r, s, 1, inv, 0);
    ts_free(r);
    assert_int_equal(ts_affine(&r, t, 0.5, 0.25), 0);
    const float sc[3] = {0.25f, 0.75f, 1.25f};
    expect_f32(r, s, 1, sc, 0);
    assert_memory_equal(ts_data(t), v, sizeof v);
    ts_free(r);

    const float cv[3] = {-1, 0.5f, 2};
    ts_tensor_t *c = mk_f32(cv, s, 1);
    assert_int_equal(ts_clamp(&r, c, 0.0, 1.0), 0);
    const float cl[3] = {0, 0.5f, 1};
    expect_f32(r, s, 1, cl, 0);
    ts_free(r);
    assert_int_equal(ts_affine(&r, NULL, 1, 0), BASE_E_INVAL);
    assert_int_equal(ts_clamp(NULL, c, 0, 1), BASE_E_INVAL);
    ts_free(c);
    ts_free(t);
}

static void interp(const float *in, const int64_t *ishape, int64_t h, int64_t w, ts_interp_t mode,
                   const float *want, double tol) {
    ts_tensor_t *t = mk_f32(in, ishape, 4), *r = NULL;
    assert_int_equal(ts_interpolate(&r, t, h, w, mode), 0);
    const int64_t os[4] = {ishape[0], ishape[1], h, w};
    expect_f32(r, os, 4, want, tol);
    ts_free(r);
    ts_free(t);
}

static void test_interpolate(void **state) {
    (void)state;
    const float q[4] = {1, 2, 3, 4};
    const int64_t s22[4] = {1, 1, 2, 2};
    const float near44[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    interp(q, s22, 4, 4, TS_INTERP_NEAREST, near44, 0);

    /* 3 -> 2: "nearest" picks floor(i * 1.5) = {0, 1}, "nearest-exact" picks
     * floor((i + 0.5) * 1.5) = {0, 2} */
    const float row3[3] = {10, 20, 30};
    const int64_t s13[4] = {1, 1, 1, 3};
    const float near2[2] = {10, 20}, exact2[2] = {10, 30};
    interp(row3, s13, 1, 2, TS_INTERP_NEAREST, near2, 0);
    interp(row3, s13, 1, 2, TS_INTERP_NEAREST_EXACT, exact2, 0);

    const float ramp[2] = {0, 1};
    const int64_t s12[4] = {1, 1, 1, 2};
    const float bil[4] = {0, 0.25f, 0.75f, 1};
    interp(ramp, s12, 1, 4, TS_INTERP_BILINEAR, bil, 1e-6);
    /* Keys cubic (A = -0.75) at source x = -0.25, 0.25, 0.75, 1.25 with clamped taps */
    const float bic[4] = {-0.10546875f, 0.2265625f, 0.7734375f, 1.10546875f};
    interp(ramp, s12, 1, 4, TS_INTERP_BICUBIC, bic, 1e-6);

    float grid[16];
    for (int i = 0; i < 16; i++)
        grid[i] = (float)i;
    const int64_t s44[4] = {1, 1, 4, 4};
    const float area[4] = {2.5f, 4.5f, 10.5f, 12.5f};
    interp(grid, s44, 2, 2, TS_INTERP_AREA, area, 1e-6);

    /* channels and batch are kept apart */
    const float two_ch[8] = {1, 2, 3, 4, 10, 20, 30, 40};
    const int64_t s1222[4] = {1, 2, 2, 2};
    const float area_ch[2] = {2.5f, 25};
    interp(two_ch, s1222, 1, 1, TS_INTERP_AREA, area_ch, 1e-6);

    ts_tensor_t *t = mk_f32(q, s22, 4), *r = NULL, *flat = NULL;
    assert_int_equal(ts_interpolate(&r, t, 0, 4, TS_INTERP_NEAREST), BASE_E_INVAL);
    assert_int_equal(ts_interpolate(&r, t, 4, -1, TS_INTERP_BILINEAR), BASE_E_INVAL);
    assert_int_equal(ts_interpolate(&r, t, 4, 4, (ts_interp_t)99), BASE_E_INVAL);
    const int64_t s3[3] = {1, 2, 2};
    assert_int_equal(ts_reshape(&flat, t, s3, 3), 0);
    assert_int_equal(ts_interpolate(&r, flat, 4, 4, TS_INTERP_NEAREST), BASE_E_INVAL);
    assert_null(r);
    ts_free(flat);
    ts_free(t);
}

static void test_streams(void **state) {
    (void)state;
    ts_stream_t *s = NULL;
    assert_int_equal(ts_stream_new(&s, CPU), 0);
    assert_non_null(s);
    assert_int_equal(ts_stream_set_current(s), 0);
    assert_int_equal(ts_stream_synchronize(s), 0);
    assert_int_equal(ts_stream_set_current(NULL), 0);
    ts_stream_free(s);
    ts_stream_free(NULL);

    s = NULL;
    assert_int_equal(ts_stream_new(&s, CUDA0), BASE_E_TENSOR_NOTSUP);
    assert_null(s);
    assert_int_equal(ts_stream_new(NULL, CPU), BASE_E_INVAL);
}

static void test_errors(void **state) {
    (void)state;
    ts_tensor_t *t = NULL;
    const float v[4] = {1, 2, 3, 4};
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 4};
    assert_int_equal(ts_from_host(&t, v, TS_F32, nine, 9, CPU), BASE_E_INVAL);
    assert_null(t);
    assert_true(strlen(ts_last_error()) > 0);
    /* eight dims is the maximum and works */
    assert_int_equal(ts_from_host(&t, v, TS_F32, nine + 1, 8, CPU), 0);
    assert_int_equal(ts_ndim(t), 8);
    ts_free(t);
    t = NULL;

    const int64_t s4[1] = {4}, neg[2] = {2, -2};
    assert_int_equal(ts_from_host(&t, v, TS_F32, s4, -1, CPU), BASE_E_INVAL);
    assert_int_equal(ts_from_host(&t, v, TS_F32, neg, 2, CPU), BASE_E_INVAL);
    assert_int_equal(ts_from_host(&t, NULL, TS_F32, s4, 1, CPU), BASE_E_INVAL);
    assert_int_equal(ts_from_host(&t, v, TS_F32, NULL, 1, CPU), BASE_E_INVAL);
    assert_int_equal(ts_from_host(&t, v, (ts_dtype_t)-1, s4, 1, CPU), BASE_E_INVAL);
    assert_int_equal(ts_from_host(NULL, v, TS_F32, s4, 1, CPU), BASE_E_INVAL);
    const int64_t huge[2] = {INT64_MAX, 4};
    assert_int_equal(ts_zeros(&t, huge, 2, TS_F32, CPU), BASE_E_INVAL);
    assert_int_equal(ts_zeros(&t, s4, 1, TS_F32, CUDA0), BASE_E_TENSOR_NOTSUP);
    assert_null(t);
    assert_non_null(strstr(ts_last_error(), "CUDA"));
    /* a fill value the dtype cannot hold is an ATen error, not undefined behaviour */
    assert_int_equal(ts_full(&t, s4, 1, 1e30, TS_I32, CPU), BASE_E_TENSOR);
    assert_int_equal(ts_full(&t, s4, 1, NAN, TS_U8, CPU), BASE_E_TENSOR);
    assert_null(t);
    const ts_device_t bad_index = {TS_CUDA, -1};
    assert_int_equal(ts_full(&t, s4, 1, 1.0, TS_F32, bad_index), BASE_E_INVAL);

    t = mk_f32(v, s4, 1);
    float small[3];
    assert_int_equal(ts_to_host(t, TS_F32, small, sizeof small), BASE_E_INVAL);
    uint8_t bytes[4];
    assert_int_equal(ts_to_host(t, TS_U8, bytes, sizeof bytes), 0); /* exact fit */
    assert_int_equal(bytes[3], 4);
    assert_int_equal(ts_to_host(t, TS_F64, bytes, sizeof bytes), BASE_E_INVAL);
    assert_int_equal(ts_to_host(t, TS_F32, NULL, 16), BASE_E_INVAL);
    assert_int_equal(ts_to_host(NULL, TS_F32, small, sizeof small), BASE_E_INVAL);

    /* an ATen failure: cat of mismatched shapes */
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const int64_t s23[2] = {2, 3}, s22[2] = {2, 2};
    ts_tensor_t *a = mk_f32(w, s23, 2), *b = mk_f32(v, s22, 2), *c = NULL;
    ts_tensor_t *pair[2] = {a, b};
    assert_int_equal(ts_cat(&c, pair, 2, 0), BASE_E_TENSOR);
    assert_null(c);
    assert_true(strlen(ts_last_error()) > 0);
    assert_non_null(strstr(ts_last_error(), "ts_cat"));
    ts_free(a);
    ts_free(b);
    ts_free(t);
}

static void *other_thread(void *arg) {
    (void)arg;
    /* the message buffer is per thread: nothing failed here yet */
    return (void *)(uintptr_t)strlen(ts_last_error());
}

static void test_last_error_per_thread(void **state) {
    (void)state;
    assert_int_equal(ts_ndim(NULL), BASE_E_INVAL);
    assert_true(strlen(ts_last_error()) > 0);
    pthread_t th;
    void *res = (void *)1;
    assert_int_equal(pthread_create(&th, NULL, other_thread, NULL), 0);
    assert_int_equal(pthread_join(th, &res), 0);
    assert_int_equal((uintptr_t)res, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_backend),
        cmocka_unit_test(test_from_host_and_inspection),
        cmocka_unit_test(test_dtypes_roundtrip),
        cmocka_unit_test(test_ref_free),
        cmocka_unit_test(test_zeros_full),
        cmocka_unit_test(test_randn),
        cmocka_unit_test(test_to_and_contiguous),
        cmocka_unit_test(test_reshape_permute),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_cat),
        cmocka_unit_test(test_repeat),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_affine_clamp),
        cmocka_unit_test(test_interpolate),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_last_error_per_thread),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
