/* Tests of the neural-network part of the tensor shim (nodes/tensor/tensor.h): zero-copy
 * wrapping, seeded generators, the elementwise and reduction helpers, and the layers the SD
 * models are built from. Expected values are hand-computed where that is practical and
 * otherwise come from an independent PyTorch computation (tests/reference/tensor_nn.py,
 * float64, pasted below); the attention chunking case is checked against an unchunked
 * computation made here from ts_matmul/ts_softmax. */
#include "testutil.h"

#include <math.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "tensor.h"

static const ts_device_t CPU = {TS_CPU, 0};

/* A shape literal and its length, for the (shape, ndim) argument pairs. */
#define SHAPE(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

/* --- expected values from tests/reference/tensor_nn.py --- */
static const float GEN42_DRAW1[16] = {1.92691529, 1.48728406, 0.900717199, -2.10552096, 0.678418458, -1.23454487, -0.0430674776, -1.60466695, -0.752135277, 1.64872301, -0.392478645, -1.40360713, -0.727881312, -0.559430182, -0.768838882, 0.76244539};
static const float GEN42_DRAW2[16] = {1.64231694, -0.159597471, -0.497397542, 0.439589262, -0.758131146, 1.07831764, 0.800800562, 1.68062055, 1.27912438, 1.29642284, 0.61046648, 1.33473778, -0.23162432, 0.041759491, -0.251575291, 0.859858513};
static const float GEN42_SMALL5[5] = {0.336690366, 0.128809407, 0.234462366, 0.23033303, -1.12285638};
static const float GEN42_AFTER_SMALL5[16] = {-0.248257503, -1.20821476, -0.477667451, 0.520131171, 1.64231694, -0.159597471, -0.497397542, 0.439589262, 2.00241542, 0.466431886, 1.57302725, -0.922828853, 1.27912438, 1.29642284, 0.61046648, 1.33473778};
static const float UN_EXP[8] = {0.0497870684, 0.22313016, 0.60653066, 1, 1.28402542, 2.71828183, 7.3890561, 54.59815};
static const float UN_SIGMOID[8] = {0.0474258732, 0.182425524, 0.377540669, 0.5, 0.562176501, 0.731058579, 0.880797078, 0.98201379};
static const float UN_SILU[8] = {-0.14227762, -0.273638286, -0.188770334, 0, 0.140544125, 0.731058579, 1.76159416, 3.92805516};
static const float UN_GELU[8] = {-0.00404969409, -0.100210802, -0.154268769, 0, 0.149676581, 0.841344746, 1.95449974, 3.99987332};
static const float UN_QUICK_GELU[8] = {-0.0180713097, -0.108337802, -0.149611563, 0, 0.15119965, 0.845795766, 1.93565862, 3.99558528};
static const float UN_LOG[4] = {-1.38629436, 0, 0.693147181, 1.38629436};
static const float UN_SQRT[4] = {0.5, 1, 1.41421356, 2};
static const float SOFTMAX_D1[6] = {0.0900305732, 0.244728471, 0.665240956, 0.00657326319, 0.0178679819, 0.975558755};
static const float SOFTMAX_D0[6] = {0.880797078, 0.880797078, 0.268941421, 0.119202922, 0.119202922, 0.731058579};
static const float CONV_S2P1[27] = {1.375, -1.125, -0.125, -1, -0.75, 1.125, 1.625, 2.875, -0.75, -2.5, -0.125, 0.75, -0.5, 0.375, -2.375, -0.625, -2.5, -0.75, 3.75, 2.875, 0.5, 2, -0.25, 3.625, 1, 1.625, 1.875};
static const float CONV_S1P0_NOBIAS[27] = {3.625, 2.375, 2, -2.625, -1.25, 3.625, -1.875, -2.25, -2.625, -1.125, -2.75, -1.75, 4.75, 1.375, -1.125, 0.125, -0.625, 4.75, 0.375, 2.125, -0.5, -2.25, -2.25, 0.375, 2.125, 0.375, -2.25};
static const float CONV_GROUPS2[8] = {0.75, 2.25, -0.5, -2.5, 1.5, -1.75, -2.5, 1.25};
static const float GN_EPS1E6[16] = {-1.52752497, -1.09108927, -0.65465356, -0.218217853, 1.43643571, 2.30930712, 3.18217853, 4.05504995, -0.12390432, -1.72590785, -1.52565741, -1.32540697, 0.750313051, 0.349812169, -0.0506887132, -0.451189596};
static const float GN_EPS1[16] = {-1.32025869, -0.94304192, -0.565825152, -0.188608384, 1.37721677, 2.1316503, 2.88608384, 3.64051738, -0.227188723, -1.64032934, -1.46368677, -1.28704419, 0.720803222, 0.367518067, 0.0142329116, -0.339052244};
static const float GN_NOAFFINE[16] = {-1.34163125, -0.447210415, 0.447210415, 1.34163125, -1.34163125, -0.447210415, 0.447210415, 1.34163125, 1.68675904, -0.883540451, -0.562253014, -0.240965578, -1.34163125, -0.447210415, 0.447210415, 1.34163125};
static const float LN_AFFINE[8] = {-0.81904344, 0.53452172, -0.5, 4.20713032, -1.03745121, 0.117041019, -0.558520509, 4.04306649};
static const float LN_PLAIN_EPS1[8] = {-0.942809042, -0.471404521, 5.55111512e-17, 1.41421356, -1.16599767, -0.105999788, -0.105999788, 1.37799724};
static const float BN_EPS1E3[8] = {-3.49950009, -2.49962507, -1.49975005, -0.499875023, 3.99202392, 5.98803588, 7.98404784, 9.9800598};
static const float MAXPOOL_K2S2[4] = {4, 5, 7, 6};
static const float MAXPOOL_K3S1P1[16] = {4, 5, 5, 5, 4, 5, 6, 6, 7, 7, 6, 6, 7, 7, 6, 6};
static const float MAXPOOL_K3S2P1[4] = {4, 5, 7, 6};
static const float ATTN_SMALL[12] = {-0.223061858, 0.776938142, -0.35496342, 0.64503658, 0, 1, -0.268771829, 0.731228171, -0.0333162809, 0.966683719, -0.197590953, 0.802409047};
static const float ATTN_SMALL_CAUSAL[12] = {-2, -1, 0, 1, 0, 1, -0.825041998, 0.174958002, 0.72739023, 1.72739023, 0.103152816, 1.10315282};
static const float ATTN_SMALL_1HEAD[12] = {-0.103095277, 0.896904723, -0.16943358, 0.83056642, -0.199351416, 0.800648584, -0.304987788, 0.695012212, -0.524333679, 0.475666321, -0.374825176, 0.625174824};

/* --- helpers --- */

static ts_tensor_t *mk(const float *v, const int64_t *shape, int ndim) {
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_from_host(&t, v, TS_F32, shape, ndim, CPU), 0);
    assert_non_null(t);
    return t;
}

/* t converted to dtype (a new reference; t is released). */
static ts_tensor_t *as(ts_tensor_t *t, ts_dtype_t dtype) {
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_to(&r, t, dtype, CPU), 0);
    ts_free(t);
    return r;
}

/* Asserts the shape of t and that every element is within tol * max(1, |want|) of want. */
static void expect_close(const ts_tensor_t *t, const int64_t *shape, int ndim, const float *want,
                         double tol) {
    int64_t got[TS_MAX_DIMS];
    assert_non_null(t);
    assert_int_equal(ts_shape(t, got), ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (got[i] != shape[i])
            fail_msg("dim %d: got %lld, want %lld", i, (long long)got[i], (long long)shape[i]);
        n *= shape[i];
    }
    assert_int_equal(ts_numel(t), n);
    float *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
    assert_non_null(buf);
    assert_int_equal(ts_to_host(t, TS_F32, buf, (size_t)n * sizeof *buf), 0);
    for (int64_t i = 0; i < n; i++) {
        double lim = tol * fmax(1.0, fabs((double)want[i]));
        if (!(fabs((double)buf[i] - (double)want[i]) <= lim)) {
            float g = buf[i];
            free(buf);
            fail_msg("element %lld: got %.9g, want %.9g (tol %g)", (long long)i, g, want[i], lim);
        }
    }
    free(buf);
}

/* Largest |a - b| over two tensors of equal numel, read back as float32. */
static double max_abs_diff(const ts_tensor_t *a, const ts_tensor_t *b) {
    int64_t n = ts_numel(a);
    assert_int_equal(ts_numel(b), n);
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(ts_to_host(a, TS_F32, x, (size_t)n * sizeof *x), 0);
    assert_int_equal(ts_to_host(b, TS_F32, y, (size_t)n * sizeof *y), 0);
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (!(d <= m))
            m = d; /* NaN propagates */
    }
    free(x);
    free(y);
    return m;
}

/* rc is the failure code and the thread's message names fn and mentions needle (either may
 * be NULL: not checked). */
static void expect_fail(int rc, int code, const char *fn, const char *needle) {
    const char *msg = ts_last_error();
    if (rc != code)
        fail_msg("%s: got rc %d, want %d (%s)", fn ? fn : "", rc, code, msg);
    if ((fn && !strstr(msg, fn)) || (needle && !strstr(msg, needle)))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", msg, fn ? fn : "", needle ? needle : "");
}

static int setup(void **state) {
    (void)state;
    return ts_init(0);
}

/* --- ts_from_blob --- */

static int g_released;
static void *g_release_ctx;
static void count_release(void *ctx) {
    g_released++;
    g_release_ctx = ctx;
}

static void test_from_blob_zero_copy(void **state) {
    (void)state;
    static alignas(64) float data[6] = {1, 2, 3, 4, 5, 6};
    int ctx_marker = 0;
    g_released = 0;
    g_release_ctx = NULL;
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_from_blob(&t, data, TS_F32, SHAPE(2, 3), count_release, &ctx_marker), 0);
    assert_ptr_equal(ts_data(t), data); /* no copy */
    assert_int_equal(ts_dtype(t), TS_F32);
    const float want[6] = {1, 2, 3, 4, 5, 6};
    expect_close(t, SHAPE(2, 3), want, 0);

    /* A view keeps the storage alive after the original handle goes. */
    ts_tensor_t *row = NULL;
    assert_int_equal(ts_slice(&row, t, 0, 1, 2), 0);
    assert_ptr_equal(ts_data(row), data + 3);
    ts_tensor_t *again = ts_ref(t);
    ts_free(t);
    ts_free(again);
    assert_int_equal(g_released, 0);
    const float want_row[3] = {4, 5, 6};
    expect_close(row, SHAPE(1, 3), want_row, 0);

    /* Ops read the blob but never write it. */
    ts_tensor_t *sum = NULL;
    assert_int_equal(ts_add(&sum, row, row), 0);
    const float want_sum[3] = {8, 10, 12};
    expect_close(sum, SHAPE(1, 3), want_sum, 0);
    assert_true(data[3] == 4 && data[4] == 5 && data[5] == 6);
    ts_free(sum);
    assert_int_equal(g_released, 0);
    ts_free(row);
    assert_int_equal(g_released, 1);
    assert_ptr_equal(g_release_ctx, &ctx_marker);

    /* release with a NULL ctx is still called; a NULL release is allowed. */
    g_released = 0;
    g_release_ctx = &ctx_marker;
    assert_int_equal(ts_from_blob(&t, data, TS_F32, SHAPE(6), count_release, NULL), 0);
    ts_free(t);
    assert_int_equal(g_released, 1);
    assert_null(g_release_ctx);
    assert_int_equal(ts_from_blob(&t, data, TS_F32, SHAPE(3, 2), NULL, NULL), 0);
    const float want32[6] = {1, 2, 3, 4, 5, 6};
    expect_close(t, SHAPE(3, 2), want32, 0);
    ts_free(t);

    /* U8 needs no alignment: an odd address works and is still not copied. */
    static const unsigned char bytes[5] = {9, 8, 7, 6, 5};
    g_released = 0;
    assert_int_equal(ts_from_blob(&t, bytes + 1, TS_U8, SHAPE(4), count_release, NULL), 0);
    assert_ptr_equal(ts_data(t), bytes + 1);
    const float want_u8[4] = {8, 7, 6, 5};
    expect_close(t, SHAPE(4), want_u8, 0);
    ts_free(t);
    assert_int_equal(g_released, 1);

    /* bf16 blob: 1.0, -2.0, 0.5 as raw bfloat16 bits. */
    static alignas(2) const uint16_t bf[3] = {0x3f80, 0xc000, 0x3f00};
    assert_int_equal(ts_from_blob(&t, bf, TS_BF16, SHAPE(3), NULL, NULL), 0);
    assert_int_equal(ts_dtype(t), TS_BF16);
    const float want_bf[3] = {1, -2, 0.5f};
    expect_close(t, SHAPE(3), want_bf, 0);
    ts_free(t);
}

static void test_from_blob_rejects(void **state) {
    (void)state;
    static alignas(64) unsigned char raw[64];
    ts_tensor_t *t = (ts_tensor_t *)raw; /* must be reset to NULL on failure */
    g_released = 0;
    /* Misaligned F32 / I64 / BF16. */
    expect_fail(ts_from_blob(&t, raw + 1, TS_F32, SHAPE(4), count_release, NULL), BASE_E_INVAL,
                "ts_from_blob", "aligned");
    assert_null(t);
    expect_fail(ts_from_blob(&t, raw + 4, TS_I64, SHAPE(2), count_release, NULL), BASE_E_INVAL,
                "ts_from_blob", "aligned");
    expect_fail(ts_from_blob(&t, raw + 1, TS_BF16, SHAPE(2), count_release, NULL), BASE_E_INVAL,
                "ts_from_blob", "aligned");
    expect_fail(ts_from_blob(&t, NULL, TS_F32, SHAPE(4), count_release, NULL), BASE_E_INVAL,
                "ts_from_blob", "NULL");
    expect_fail(ts_from_blob(&t, raw, TS_F32, SHAPE(2, -1), count_release, NULL), BASE_E_INVAL,
                NULL, "negative");
    expect_fail(ts_from_blob(&t, raw, (ts_dtype_t)99, SHAPE(2), count_release, NULL), BASE_E_INVAL,
                NULL, "dtype");
    expect_fail(ts_from_blob(&t, raw, TS_F32, NULL, 2, count_release, NULL), BASE_E_INVAL, NULL,
                "shape");
    expect_fail(ts_from_blob(NULL, raw, TS_F32, SHAPE(2), count_release, NULL), BASE_E_INVAL,
                "ts_from_blob", "out");
    assert_null(t);
    assert_int_equal(g_released, 0); /* release never runs on failure */
}

/* --- generators --- */

static void draw(ts_gen_t *g, int64_t n, float *dst) {
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_randn_gen(&t, &n, 1, g, CPU), 0);
    assert_int_equal(ts_dtype(t), TS_F32);
    assert_int_equal(ts_numel(t), n);
    assert_int_equal(ts_to_host(t, TS_F32, dst, (size_t)n * sizeof *dst), 0);
    ts_free(t);
}

static void expect_floats(const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

static void test_generator_sequence(void **state) {
    (void)state;
    /* sd15-reference.md 5.5: seed 42 -> 1.92691529, 1.48728406, 0.90071720, -2.10552096. */
    const float doc[4] = {1.92691529f, 1.48728406f, 0.90071720f, -2.10552096f};
    ts_gen_t *g = NULL;
    assert_int_equal(ts_gen_new(&g, 42), 0);
    float a[16], b[16];
    draw(g, 16, a);
    for (int i = 0; i < 4; i++)
        assert_true(fabsf(a[i] - doc[i]) <= 1e-7f);
    expect_floats(a, GEN42_DRAW1, 16);
    draw(g, 16, b); /* continues the stream, like a second torch.randn(generator=g) */
    expect_floats(b, GEN42_DRAW2, 16);
    ts_gen_free(g);

    /* ts_randn(seed) is the first draw of a fresh generator. */
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_randn(&t, SHAPE(16), 42, CPU), 0);
    float c[16];
    assert_int_equal(ts_to_host(t, TS_F32, c, sizeof c), 0);
    expect_floats(c, GEN42_DRAW1, 16);
    ts_free(t);

    /* Shaped draws use the same stream: [2, 8] equals the flat 16. */
    assert_int_equal(ts_gen_new(&g, 42), 0);
    assert_int_equal(ts_randn_gen(&t, SHAPE(2, 8), g, CPU), 0);
    expect_close(t, SHAPE(2, 8), GEN42_DRAW1, 0);
    ts_free(t);
    ts_gen_free(g);

    /* Below 16 elements torch takes a scalar path; the stream still continues after it. */
    assert_int_equal(ts_gen_new(&g, 42), 0);
    float s5[5], after[16];
    draw(g, 5, s5);
    expect_floats(s5, GEN42_SMALL5, 5);
    draw(g, 16, after);
    expect_floats(after, GEN42_AFTER_SMALL5, 16);
    ts_gen_free(g);

    /* Two generators with one seed are independent streams with equal values. */
    ts_gen_t *g1 = NULL, *g2 = NULL;
    assert_int_equal(ts_gen_new(&g1, 7), 0);
    assert_int_equal(ts_gen_new(&g2, 7), 0);
    draw(g1, 16, a);
    draw(g1, 16, b);
    draw(g2, 16, c);
    expect_floats(c, a, 16);
    assert_true(memcmp(a, b, sizeof a) != 0);
    ts_gen_free(g1);
    ts_gen_free(g2);

    ts_gen_free(NULL);
    expect_fail(ts_gen_new(NULL, 1), BASE_E_INVAL, "ts_gen_new", "out");
    t = (ts_tensor_t *)&g;
    expect_fail(ts_randn_gen(&t, SHAPE(4), NULL, CPU), BASE_E_INVAL, "ts_randn_gen", "g is NULL");
    assert_null(t);
    assert_int_equal(ts_gen_new(&g, 1), 0);
    expect_fail(ts_randn_gen(&t, SHAPE(-4), g, CPU), BASE_E_INVAL, NULL, "negative");
    ts_device_t bad = {(ts_device_type_t)7, 0};
    expect_fail(ts_randn_gen(&t, SHAPE(4), g, bad), BASE_E_INVAL, NULL, "device");
    ts_gen_free(g);
}

/* --- elementwise helpers --- */

static void test_add_scaled_and_lerp(void **state) {
    (void)state;
    ts_tensor_t *a = mk((const float[]){1, 2, 3}, SHAPE(3));
    ts_tensor_t *b = mk((const float[]){10, 20, 30}, SHAPE(3));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_add_scaled(&r, a, b, -0.5), 0);
    expect_close(r, SHAPE(3), (const float[]){-4, -8, -12}, 0);
    ts_free(r);
    /* broadcasting: [2,1] + 2 * [3] -> [2, 3] */
    ts_tensor_t *col = mk((const float[]){1, -1}, SHAPE(2, 1));
    assert_int_equal(ts_add_scaled(&r, col, a, 2.0), 0);
    expect_close(r, SHAPE(2, 3), (const float[]){3, 5, 7, 1, 3, 5}, 0);
    ts_free(r);
    ts_free(col);
    ts_free(a);
    ts_free(b);

    a = mk((const float[]){0, 10, -2, 4}, SHAPE(4));
    b = mk((const float[]){1, 20, 2, 0}, SHAPE(4));
    ts_tensor_t *m = mk((const float[]){0, 0.5f, 0.25f, 1}, SHAPE(4));
    assert_int_equal(ts_lerp(&r, a, b, m), 0);
    expect_close(r, SHAPE(4), (const float[]){0, 15, -1, 0}, 0);
    ts_free(r);
    ts_free(m);
    m = mk((const float[]){0.75f}, SHAPE(1)); /* broadcast mask */
    assert_int_equal(ts_lerp(&r, a, b, m), 0);
    expect_close(r, SHAPE(4), (const float[]){0.75f, 17.5f, 1, 1}, 0);
    ts_free(r);
    ts_free(m);

    expect_fail(ts_lerp(&r, a, b, NULL), BASE_E_INVAL, "ts_lerp", "m is NULL");
    ts_tensor_t *b16 = as(mk((const float[]){1, 2, 3, 4}, SHAPE(4)), TS_BF16);
    expect_fail(ts_lerp(&r, a, b16, a), BASE_E_INVAL, "ts_lerp", "dtype");
    expect_fail(ts_add_scaled(&r, a, NULL, 1), BASE_E_INVAL, "ts_add_scaled", "NULL");
    assert_null(r);
    ts_free(b16);
    ts_free(a);
    ts_free(b);
}

static void test_unary(void **state) {
    (void)state;
    const float xs[8] = {-3, -1.5f, -0.5f, 0, 0.25f, 1, 2, 4};
    ts_tensor_t *x = mk(xs, SHAPE(2, 4));
    struct {
        ts_unary_t op;
        const float *want;
    } cases[] = {
        {TS_UNARY_EXP, UN_EXP},   {TS_UNARY_SIGMOID, UN_SIGMOID},       {TS_UNARY_SILU, UN_SILU},
        {TS_UNARY_GELU, UN_GELU}, {TS_UNARY_QUICK_GELU, UN_QUICK_GELU},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ts_tensor_t *r = NULL;
        assert_int_equal(ts_unary(&r, x, cases[i].op), 0);
        expect_close(r, SHAPE(2, 4), cases[i].want, 2e-7);
        ts_free(r);
    }
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_unary(&r, x, TS_UNARY_RELU), 0);
    expect_close(r, SHAPE(2, 4), (const float[]){0, 0, 0, 0, 0.25f, 1, 2, 4}, 0);
    ts_free(r);
    assert_int_equal(ts_unary(&r, x, TS_UNARY_ABS), 0);
    expect_close(r, SHAPE(2, 4), (const float[]){3, 1.5f, 0.5f, 0, 0.25f, 1, 2, 4}, 0);
    ts_free(r);
    assert_int_equal(ts_unary(&r, x, TS_UNARY_NEG), 0);
    expect_close(r, SHAPE(2, 4), (const float[]){3, 1.5f, 0.5f, 0, -0.25f, -1, -2, -4}, 0);
    ts_free(r);
    ts_free(x);

    x = mk((const float[]){0.25f, 1, 2, 4}, SHAPE(4));
    assert_int_equal(ts_unary(&r, x, TS_UNARY_LOG), 0);
    expect_close(r, SHAPE(4), UN_LOG, 2e-7);
    ts_free(r);
    assert_int_equal(ts_unary(&r, x, TS_UNARY_SQRT), 0);
    expect_close(r, SHAPE(4), UN_SQRT, 2e-7);
    ts_free(r);

    /* Integer input: abs/neg/relu fine, the float-only ops refused before ATen. */
    ts_tensor_t *xi = as(mk((const float[]){-2, 3}, SHAPE(2)), TS_I64);
    assert_int_equal(ts_unary(&r, xi, TS_UNARY_ABS), 0);
    assert_int_equal(ts_dtype(r), TS_I64);
    expect_close(r, SHAPE(2), (const float[]){2, 3}, 0);
    ts_free(r);
    expect_fail(ts_unary(&r, xi, TS_UNARY_GELU), BASE_E_INVAL, "ts_unary", "floating");
    expect_fail(ts_unary(&r, x, (ts_unary_t)99), BASE_E_INVAL, "ts_unary", "unknown op 99");
    expect_fail(ts_unary(&r, x, (ts_unary_t)-1), BASE_E_INVAL, "ts_unary", "unknown op");
    expect_fail(ts_unary(&r, NULL, TS_UNARY_EXP), BASE_E_INVAL, "ts_unary", "NULL");
    assert_null(r);
    ts_free(xi);
    ts_free(x);
}

static void test_reduce_all(void **state) {
    (void)state;
    ts_tensor_t *x = mk((const float[]){1, -5, 2.5f, 3}, SHAPE(2, 2));
    double v = 0;
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_SUM, &v), 0);
    assert_true(v == 1.5);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_MEAN, &v), 0);
    assert_true(v == 0.375);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_MAX, &v), 0);
    assert_true(v == 3);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_MIN, &v), 0);
    assert_true(v == -5);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_MAX_ABS, &v), 0);
    assert_true(v == 5);
    ts_free(x);

    /* float64 accumulation: 2^24 + 1 + 1 is not representable in float32 sums. */
    x = mk((const float[]){16777216.0f, 1, 1}, SHAPE(3));
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_SUM, &v), 0);
    assert_true(v == 16777218.0);
    ts_free(x);

    /* bf16 and integer inputs. */
    x = as(mk((const float[]){0.5f, -0.25f, 4}, SHAPE(3)), TS_BF16);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_SUM, &v), 0);
    assert_true(v == 4.25);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_MIN, &v), 0);
    assert_true(v == -0.25);
    ts_free(x);
    x = as(mk((const float[]){7, -9, 2}, SHAPE(3)), TS_I32);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_MEAN, &v), 0);
    assert_true(v == 0);
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_MAX_ABS, &v), 0);
    assert_true(v == 9);
    ts_free(x);

    /* Empty: the sum is 0, the rest are refused. */
    assert_int_equal(ts_zeros(&x, SHAPE(0, 3), TS_F32, CPU), 0);
    v = -1;
    assert_int_equal(ts_reduce_all(x, TS_REDUCE_SUM, &v), 0);
    assert_true(v == 0);
    expect_fail(ts_reduce_all(x, TS_REDUCE_MAX, &v), BASE_E_INVAL, "ts_reduce_all", "empty");
    expect_fail(ts_reduce_all(x, (ts_reduce_t)12, &v), BASE_E_INVAL, "ts_reduce_all", "unknown");
    expect_fail(ts_reduce_all(x, TS_REDUCE_SUM, NULL), BASE_E_INVAL, "ts_reduce_all", "NULL");
    expect_fail(ts_reduce_all(NULL, TS_REDUCE_SUM, &v), BASE_E_INVAL, "ts_reduce_all", "NULL");
    ts_free(x);
}

static void test_softmax_and_matmul(void **state) {
    (void)state;
    ts_tensor_t *s = mk((const float[]){1, 2, 3, -1, 0, 4}, SHAPE(2, 3));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_softmax(&r, s, 1), 0);
    expect_close(r, SHAPE(2, 3), SOFTMAX_D1, 2e-7);
    ts_free(r);
    assert_int_equal(ts_softmax(&r, s, -1), 0);
    expect_close(r, SHAPE(2, 3), SOFTMAX_D1, 2e-7);
    ts_free(r);
    assert_int_equal(ts_softmax(&r, s, 0), 0);
    expect_close(r, SHAPE(2, 3), SOFTMAX_D0, 2e-7);
    ts_free(r);
    /* bf16 in, bf16 out. */
    ts_tensor_t *sb = as(ts_ref(s), TS_BF16);
    assert_int_equal(ts_softmax(&r, sb, 1), 0);
    assert_int_equal(ts_dtype(r), TS_BF16);
    expect_close(r, SHAPE(2, 3), SOFTMAX_D1, 8e-3);
    ts_free(r);
    expect_fail(ts_softmax(&r, s, 2), BASE_E_INVAL, NULL, "out of range");
    ts_tensor_t *si = as(ts_ref(s), TS_I64);
    expect_fail(ts_softmax(&r, si, 0), BASE_E_INVAL, "ts_softmax", "floating");
    ts_free(si);

    /* [2,3] @ [3,2], by hand. */
    ts_tensor_t *b = mk((const float[]){1, 0, 0, 1, 2, -1}, SHAPE(3, 2));
    assert_int_equal(ts_matmul(&r, s, b), 0);
    expect_close(r, SHAPE(2, 2), (const float[]){7, -1, 7, -4}, 0);
    ts_free(r);
    /* batched with broadcasting: [2,1,3] @ [3,2] -> [2,1,2]; and matrix @ vector. */
    ts_tensor_t *s3 = NULL;
    assert_int_equal(ts_reshape(&s3, s, SHAPE(2, 1, 3)), 0);
    assert_int_equal(ts_matmul(&r, s3, b), 0);
    expect_close(r, SHAPE(2, 1, 2), (const float[]){7, -1, 7, -4}, 0);
    ts_free(r);
    ts_tensor_t *vec = mk((const float[]){1, 1, 1}, SHAPE(3));
    assert_int_equal(ts_matmul(&r, s, vec), 0);
    expect_close(r, SHAPE(2), (const float[]){6, 3}, 0);
    ts_free(r);
    /* Errors: dtype mismatch (ours), inner sizes (ATen's). */
    expect_fail(ts_matmul(&r, sb, b), BASE_E_INVAL, "ts_matmul", "dtype");
    int rc = ts_matmul(&r, s, s);
    assert_int_equal(rc, BASE_E_TENSOR);
    assert_non_null(strstr(ts_last_error(), "ts_matmul"));
    assert_null(r);
    ts_tensor_t *scalar = NULL;
    assert_int_equal(ts_full(&scalar, NULL, 0, 2.0, TS_F32, CPU), 0);
    expect_fail(ts_matmul(&r, scalar, b), BASE_E_INVAL, "ts_matmul", "dims");
    ts_free(scalar);
    ts_free(vec);
    ts_free(s3);
    ts_free(b);
    ts_free(sb);
    ts_free(s);
}

static void test_embedding(void **state) {
    (void)state;
    float wv[12];
    for (int i = 0; i < 12; i++)
        wv[i] = (float)i;
    ts_tensor_t *w = mk(wv, SHAPE(4, 3));
    const int64_t ids64[4] = {3, 0, 1, 3};
    ts_tensor_t *ids = NULL, *r = NULL;
    assert_int_equal(ts_from_host(&ids, ids64, TS_I64, SHAPE(2, 2), CPU), 0);
    assert_int_equal(ts_embedding(&r, w, ids), 0);
    const float want[12] = {9, 10, 11, 0, 1, 2, 3, 4, 5, 9, 10, 11};
    expect_close(r, SHAPE(2, 2, 3), want, 0);
    ts_free(r);
    ts_free(ids);
    const int32_t ids32[3] = {2, 2, 0};
    assert_int_equal(ts_from_host(&ids, ids32, TS_I32, SHAPE(3), CPU), 0);
    assert_int_equal(ts_embedding(&r, w, ids), 0);
    expect_close(r, SHAPE(3, 3), (const float[]){6, 7, 8, 6, 7, 8, 0, 1, 2}, 0);
    ts_free(r);
    ts_free(ids);

    /* Out-of-range id: ATen's error, as a status. */
    const int64_t bad[2] = {1, 4};
    assert_int_equal(ts_from_host(&ids, bad, TS_I64, SHAPE(2), CPU), 0);
    int rc = ts_embedding(&r, w, ids);
    assert_int_equal(rc, BASE_E_TENSOR);
    assert_non_null(strstr(ts_last_error(), "ts_embedding"));
    assert_null(r);
    ts_free(ids);
    ts_tensor_t *fids = mk((const float[]){0, 1}, SHAPE(2));
    expect_fail(ts_embedding(&r, w, fids), BASE_E_INVAL, "ts_embedding", "I64 or I32");
    expect_fail(ts_embedding(&r, fids, fids), BASE_E_INVAL, "ts_embedding", "2 dims");
    expect_fail(ts_embedding(&r, w, NULL), BASE_E_INVAL, "ts_embedding", "ids is NULL");
    ts_free(fids);
    ts_free(w);
}

/* --- layers --- */

/* ((i % mod) - off) * scale for i in [0, n), as in tensor_nn.py's pattern(). */
static ts_tensor_t *pattern(int64_t n, int mod, int off, float scale, const int64_t *shape, int ndim) {
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)((int)(i % mod) - off) * scale;
    ts_tensor_t *t = mk(v, shape, ndim);
    free(v);
    return t;
}

static void test_conv2d(void **state) {
    (void)state;
    ts_tensor_t *x = pattern(50, 7, 3, 0.5f, SHAPE(1, 2, 5, 5));
    ts_tensor_t *w = pattern(54, 5, 2, 0.25f, SHAPE(3, 2, 3, 3));
    ts_tensor_t *b = mk((const float[]){0.5f, -1, 2}, SHAPE(3));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_conv2d(&r, x, w, b, 2, 1), 0);
    expect_close(r, SHAPE(1, 3, 3, 3), CONV_S2P1, 0); /* multiples of 1/8: exact */
    ts_free(r);
    assert_int_equal(ts_conv2d(&r, x, w, NULL, 1, 0), 0);
    expect_close(r, SHAPE(1, 3, 3, 3), CONV_S1P0_NOBIAS, 0);
    ts_free(r);
    /* Hand check of one output: channel 0 at (0,0), stride 1, no padding, is the dot
     * product of the top-left 3x3 windows of both input channels with w[0]. */
    {
        float xv[50], wv[54], acc = 0;
        for (int i = 0; i < 50; i++)
            xv[i] = (float)(i % 7 - 3) * 0.5f;
        for (int i = 0; i < 54; i++)
            wv[i] = (float)(i % 5 - 2) * 0.25f;
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    acc += xv[c * 25 + i * 5 + j] * wv[c * 9 + i * 3 + j];
        assert_true(acc == CONV_S1P0_NOBIAS[0]);
    }
    /* Groups come from the weight: [2, 1, 3, 3] on 2 channels is depthwise. */
    ts_tensor_t *gw = pattern(18, 4, 1, 0.5f, SHAPE(2, 1, 3, 3));
    assert_int_equal(ts_conv2d(&r, x, gw, NULL, 2, 0), 0);
    expect_close(r, SHAPE(1, 2, 2, 2), CONV_GROUPS2, 0);
    ts_free(r);
    /* Batch of 2 (the same image twice) gives the same result twice. */
    ts_tensor_t *x2 = NULL;
    ts_tensor_t *pair[2] = {x, x};
    assert_int_equal(ts_cat(&x2, pair, 2, 0), 0);
    assert_int_equal(ts_conv2d(&r, x2, w, b, 2, 1), 0);
    float both[54];
    memcpy(both, CONV_S2P1, sizeof CONV_S2P1);
    memcpy(both + 27, CONV_S2P1, sizeof CONV_S2P1);
    expect_close(r, SHAPE(2, 3, 3, 3), both, 0);
    ts_free(r);

    /* Errors. */
    ts_tensor_t *x3 = pattern(50, 7, 3, 0.5f, SHAPE(2, 5, 5));
    expect_fail(ts_conv2d(&r, x3, w, b, 1, 0), BASE_E_INVAL, "ts_conv2d", "4 dims");
    ts_tensor_t *wb = as(ts_ref(w), TS_BF16);
    expect_fail(ts_conv2d(&r, x, wb, b, 1, 0), BASE_E_INVAL, "ts_conv2d", "dtype");
    ts_tensor_t *b2 = mk((const float[]){1, 2}, SHAPE(2));
    expect_fail(ts_conv2d(&r, x, w, b2, 1, 0), BASE_E_INVAL, "ts_conv2d", "b must be 1-D of 3");
    expect_fail(ts_conv2d(&r, x, w, b, 0, 0), BASE_E_INVAL, "ts_conv2d", "stride");
    expect_fail(ts_conv2d(&r, x, w, b, 1, -1), BASE_E_INVAL, "ts_conv2d", "padding");
    ts_tensor_t *w3 = pattern(81, 5, 2, 0.25f, SHAPE(3, 3, 3, 3)); /* 3 in-channels vs 2 */
    expect_fail(ts_conv2d(&r, x, w3, b, 1, 0), BASE_E_INVAL, "ts_conv2d", "channels");
    ts_tensor_t *wbig = pattern(2 * 36, 5, 2, 0.25f, SHAPE(1, 2, 6, 6));
    expect_fail(ts_conv2d(&r, x, wbig, NULL, 1, 0), BASE_E_INVAL, "ts_conv2d", "does not fit");
    assert_int_equal(ts_conv2d(&r, x, wbig, NULL, 1, 1), 0); /* fits once padded */
    ts_free(r);
    expect_fail(ts_conv2d(&r, x, NULL, b, 1, 0), BASE_E_INVAL, "ts_conv2d", "w is NULL");
    expect_fail(ts_conv2d(NULL, x, w, b, 1, 0), BASE_E_INVAL, "ts_conv2d", "out is NULL");
    ts_tensor_t *xi = as(ts_ref(x), TS_I64);
    ts_tensor_t *wi = as(ts_ref(w), TS_I64);
    expect_fail(ts_conv2d(&r, xi, wi, NULL, 1, 0), BASE_E_INVAL, "ts_conv2d", "floating");
    assert_null(r);
    ts_free(xi);
    ts_free(wi);
    ts_free(wbig);
    ts_free(w3);
    ts_free(b2);
    ts_free(wb);
    ts_free(x3);
    ts_free(x2);
    ts_free(gw);
    ts_free(b);
    ts_free(w);
    ts_free(x);
}

static void test_pad2d(void **state) {
    (void)state;
    ts_tensor_t *x = mk((const float[]){1, 2, 3, 4}, SHAPE(1, 1, 2, 2));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_pad2d(&r, x, 1, 0, 0, 2, -1), 0);
    const float want[12] = {-1, 1, 2, -1, 3, 4, -1, -1, -1, -1, -1, -1};
    expect_close(r, SHAPE(1, 1, 4, 3), want, 0);
    ts_free(r);
    /* The SD downsample pad (0, 1, 0, 1) on a 2-D tensor. */
    ts_tensor_t *x2 = mk((const float[]){1, 2, 3, 4}, SHAPE(2, 2));
    assert_int_equal(ts_pad2d(&r, x2, 0, 1, 0, 1, 0), 0);
    expect_close(r, SHAPE(3, 3), (const float[]){1, 2, 0, 3, 4, 0, 0, 0, 0}, 0);
    ts_free(r);
    assert_int_equal(ts_pad2d(&r, x2, 0, 0, 0, 0, 5), 0);
    expect_close(r, SHAPE(2, 2), (const float[]){1, 2, 3, 4}, 0);
    ts_free(r);
    expect_fail(ts_pad2d(&r, x, -1, 0, 0, 0, 0), BASE_E_INVAL, "ts_pad2d", "negative");
    ts_tensor_t *x1 = mk((const float[]){1, 2}, SHAPE(2));
    expect_fail(ts_pad2d(&r, x1, 1, 1, 0, 0, 0), BASE_E_INVAL, "ts_pad2d", "at least 2 dims");
    assert_null(r);
    ts_free(x1);
    ts_free(x2);
    ts_free(x);
}

static void test_linear(void **state) {
    (void)state;
    /* By hand: rows . [0.5,-1,2] and . [1,1,1]. */
    ts_tensor_t *x = mk((const float[]){1, 2, 3, -1, 0.5f, 2}, SHAPE(2, 3));
    ts_tensor_t *w = mk((const float[]){0.5f, -1, 2, 1, 1, 1}, SHAPE(2, 3));
    ts_tensor_t *b = mk((const float[]){0.25f, -0.5f}, SHAPE(2));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_linear(&r, x, w, b), 0);
    expect_close(r, SHAPE(2, 2), (const float[]){4.75f, 5.5f, 3.25f, 1}, 0);
    ts_free(r);
    assert_int_equal(ts_linear(&r, x, w, NULL), 0);
    expect_close(r, SHAPE(2, 2), (const float[]){4.5f, 6, 3, 1.5f}, 0);
    ts_free(r);
    /* Any leading dims: [2, 1, 3] -> [2, 1, 2]; and a 1-D input. */
    ts_tensor_t *x3 = NULL;
    assert_int_equal(ts_reshape(&x3, x, SHAPE(2, 1, 3)), 0);
    assert_int_equal(ts_linear(&r, x3, w, b), 0);
    expect_close(r, SHAPE(2, 1, 2), (const float[]){4.75f, 5.5f, 3.25f, 1}, 0);
    ts_free(r);
    ts_tensor_t *x1 = mk((const float[]){1, 2, 3}, SHAPE(3));
    assert_int_equal(ts_linear(&r, x1, w, b), 0);
    expect_close(r, SHAPE(2), (const float[]){4.75f, 5.5f}, 0);
    ts_free(r);

    /* A BLAS-sized case against a hand loop: x[i][k] = (i+k)%5-2, w[j][k] = (2j+k)%3-1. */
    enum { R = 70, K = 96, O = 40 };
    float *xv = malloc(sizeof(float) * R * K), *wv = malloc(sizeof(float) * O * K);
    float *want = malloc(sizeof(float) * R * O);
    assert_true(xv && wv && want);
    for (int i = 0; i < R; i++)
        for (int k = 0; k < K; k++)
            xv[i * K + k] = (float)((i + k) % 5 - 2);
    for (int j = 0; j < O; j++)
        for (int k = 0; k < K; k++)
            wv[j * K + k] = (float)((2 * j + k) % 3 - 1);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < O; j++) {
            float acc = 0;
            for (int k = 0; k < K; k++)
                acc += xv[i * K + k] * wv[j * K + k];
            want[i * O + j] = acc;
        }
    ts_tensor_t *bx = mk(xv, SHAPE(R, K)), *bw = mk(wv, SHAPE(O, K));
    assert_int_equal(ts_linear(&r, bx, bw, NULL), 0);
    expect_close(r, SHAPE(R, O), want, 0); /* small integers: exact in any order */
    ts_free(r);
    ts_free(bx);
    ts_free(bw);
    free(xv);
    free(wv);
    free(want);

    ts_tensor_t *w4 = mk((const float[]){1, 2, 3, 4, 5, 6, 7, 8}, SHAPE(2, 4));
    expect_fail(ts_linear(&r, x, w4, NULL), BASE_E_INVAL, "ts_linear", "3 features");
    expect_fail(ts_linear(&r, x, x1, NULL), BASE_E_INVAL, "ts_linear", "w must have 2 dims");
    expect_fail(ts_linear(&r, x, w, x1), BASE_E_INVAL, "ts_linear", "b must be 1-D of 2");
    ts_tensor_t *wb = as(ts_ref(w), TS_BF16);
    expect_fail(ts_linear(&r, x, wb, NULL), BASE_E_INVAL, "ts_linear", "dtype");
    assert_null(r);
    ts_free(wb);
    ts_free(w4);
    ts_free(x1);
    ts_free(x3);
    ts_free(b);
    ts_free(w);
    ts_free(x);
}

static void test_norms(void **state) {
    (void)state;
    ts_tensor_t *x = pattern(16, 9, 2, 0.75f, SHAPE(1, 4, 2, 2));
    ts_tensor_t *w = mk((const float[]){1, 2, 0.5f, -1}, SHAPE(4));
    ts_tensor_t *b = mk((const float[]){0, 1, -1, 0.5f}, SHAPE(4));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_group_norm(&r, x, 2, w, b, 1e-6), 0);
    expect_close(r, SHAPE(1, 4, 2, 2), GN_EPS1E6, 1e-6);
    ts_free(r);
    /* eps is used (a large one changes every value) */
    assert_int_equal(ts_group_norm(&r, x, 2, w, b, 1.0), 0);
    expect_close(r, SHAPE(1, 4, 2, 2), GN_EPS1, 1e-6);
    ts_free(r);
    assert_int_equal(ts_group_norm(&r, x, 4, NULL, NULL, 1e-5), 0);
    expect_close(r, SHAPE(1, 4, 2, 2), GN_NOAFFINE, 1e-6);
    ts_free(r);
    /* Hand check: a group of {0, 1.5, 3, 4.5} (mean 2.25, var 2.8125) normalises to
     * +-1.34164, +-0.44721 with eps 0. */
    ts_tensor_t *hx = mk((const float[]){0, 1.5f, 3, 4.5f}, SHAPE(1, 1, 4));
    assert_int_equal(ts_group_norm(&r, hx, 1, NULL, NULL, 0), 0);
    const double sd = sqrt(2.8125);
    expect_close(r, SHAPE(1, 1, 4),
                 (const float[]){(float)(-2.25 / sd), (float)(-0.75 / sd), (float)(0.75 / sd),
                                 (float)(2.25 / sd)},
                 1e-6);
    ts_free(r);
    ts_free(hx);
    expect_fail(ts_group_norm(&r, x, 3, w, b, 1e-5), BASE_E_INVAL, "ts_group_norm", "3 groups");
    expect_fail(ts_group_norm(&r, x, 0, w, b, 1e-5), BASE_E_INVAL, "ts_group_norm", "groups");
    expect_fail(ts_group_norm(&r, x, 2, w, b, -1), BASE_E_INVAL, "ts_group_norm", "eps");
    expect_fail(ts_group_norm(&r, x, 2, w, b, NAN), BASE_E_INVAL, "ts_group_norm", "eps");
    ts_tensor_t *w3 = mk((const float[]){1, 2, 3}, SHAPE(3));
    expect_fail(ts_group_norm(&r, x, 2, w3, b, 1e-5), BASE_E_INVAL, "ts_group_norm", "w must be");
    ts_tensor_t *x1 = mk((const float[]){1, 2, 3}, SHAPE(3));
    expect_fail(ts_group_norm(&r, x1, 1, NULL, NULL, 1e-5), BASE_E_INVAL, "ts_group_norm", "dims");
    ts_free(w);
    ts_free(b);

    /* layer_norm over the last dim. */
    ts_tensor_t *lx = mk((const float[]){1, 2, 3, 6, -2, 0.5f, 0.5f, 4}, SHAPE(2, 4));
    w = mk((const float[]){1, -1, 0.5f, 2}, SHAPE(4));
    b = mk((const float[]){0.25f, 0, -0.5f, 1}, SHAPE(4));
    assert_int_equal(ts_layer_norm(&r, lx, w, b, 1e-5), 0);
    expect_close(r, SHAPE(2, 4), LN_AFFINE, 1e-6);
    ts_free(r);
    assert_int_equal(ts_layer_norm(&r, lx, NULL, NULL, 1.0), 0);
    expect_close(r, SHAPE(2, 4), LN_PLAIN_EPS1, 1e-6);
    ts_free(r);
    expect_fail(ts_layer_norm(&r, lx, w3, NULL, 1e-5), BASE_E_INVAL, "ts_layer_norm", "w must be");
    expect_fail(ts_layer_norm(&r, lx, w, w3, 1e-5), BASE_E_INVAL, "ts_layer_norm", "b must be");
    expect_fail(ts_layer_norm(&r, NULL, w, b, 1e-5), BASE_E_INVAL, "ts_layer_norm", "x is NULL");
    ts_tensor_t *wb = as(ts_ref(w), TS_BF16);
    expect_fail(ts_layer_norm(&r, lx, wb, NULL, 1e-5), BASE_E_INVAL, "ts_layer_norm", "dtype");
    assert_null(r);
    ts_free(wb);
    ts_free(lx);
    ts_free(x1);
    ts_free(w3);
    ts_free(w);
    ts_free(b);
    ts_free(x);
}

static void test_batch_norm(void **state) {
    (void)state;
    /* x = [-3..4] over 2 channels of 2x2. */
    ts_tensor_t *x = pattern(8, 8, 3, 1.0f, SHAPE(1, 2, 2, 2));
    ts_tensor_t *mean = mk((const float[]){1, -1}, SHAPE(2));
    ts_tensor_t *var = mk((const float[]){4, 0.25f}, SHAPE(2));
    ts_tensor_t *w = mk((const float[]){2, 1}, SHAPE(2));
    ts_tensor_t *b = mk((const float[]){0.5f, 0}, SHAPE(2));
    ts_tensor_t *r = NULL;
    /* By hand with eps 0: channel 0 (x-1)/2*2+0.5 = x-0.5; channel 1 (x+1)/0.5 = 2x+2. */
    assert_int_equal(ts_batch_norm(&r, x, w, b, mean, var, 0), 0);
    expect_close(r, SHAPE(1, 2, 2, 2), (const float[]){-3.5f, -2.5f, -1.5f, -0.5f, 4, 6, 8, 10}, 0);
    ts_free(r);
    assert_int_equal(ts_batch_norm(&r, x, w, b, mean, var, 1e-3), 0);
    expect_close(r, SHAPE(1, 2, 2, 2), BN_EPS1E3, 1e-6);
    ts_free(r);
    /* No affine: channel 0 (x-1)/2, channel 1 (x+1)*2. */
    assert_int_equal(ts_batch_norm(&r, x, NULL, NULL, mean, var, 0), 0);
    expect_close(r, SHAPE(1, 2, 2, 2), (const float[]){-2, -1.5f, -1, -0.5f, 4, 6, 8, 10}, 0);
    ts_free(r);
    expect_fail(ts_batch_norm(&r, x, w, b, NULL, var, 0), BASE_E_INVAL, "ts_batch_norm", "mean is NULL");
    expect_fail(ts_batch_norm(&r, x, w, b, mean, x, 0), BASE_E_INVAL, "ts_batch_norm", "var must be");
    assert_null(r);
    ts_free(b);
    ts_free(w);
    ts_free(var);
    ts_free(mean);
    ts_free(x);
}

static void test_pools(void **state) {
    (void)state;
    ts_tensor_t *x =
        mk((const float[]){-1, 4, 0, 2, 3, -2, 5, -3, 0, 1, -4, 6, 7, -5, 2, 1}, SHAPE(1, 1, 4, 4));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_max_pool2d(&r, x, 2, 2, 0), 0);
    expect_close(r, SHAPE(1, 1, 2, 2), MAXPOOL_K2S2, 0);
    ts_free(r);
    assert_int_equal(ts_max_pool2d(&r, x, 3, 1, 1), 0);
    expect_close(r, SHAPE(1, 1, 4, 4), MAXPOOL_K3S1P1, 0);
    ts_free(r);
    assert_int_equal(ts_max_pool2d(&r, x, 3, 2, 1), 0);
    expect_close(r, SHAPE(1, 1, 2, 2), MAXPOOL_K3S2P1, 0);
    ts_free(r);
    ts_tensor_t *x3 = NULL;
    assert_int_equal(ts_reshape(&x3, x, SHAPE(1, 4, 4)), 0); /* C x H x W also works */
    assert_int_equal(ts_max_pool2d(&r, x3, 2, 2, 0), 0);
    expect_close(r, SHAPE(1, 2, 2), MAXPOOL_K2S2, 0);
    ts_free(r);
    expect_fail(ts_max_pool2d(&r, x, 2, 2, 2), BASE_E_INVAL, "ts_max_pool2d", "padding");
    expect_fail(ts_max_pool2d(&r, x, 0, 1, 0), BASE_E_INVAL, "ts_max_pool2d", "kernel");
    expect_fail(ts_max_pool2d(&r, x, 5, 1, 0), BASE_E_INVAL, "ts_max_pool2d", "does not fit");
    ts_tensor_t *x2 = NULL;
    assert_int_equal(ts_reshape(&x2, x, SHAPE(4, 4)), 0);
    expect_fail(ts_max_pool2d(&r, x2, 2, 2, 0), BASE_E_INVAL, "ts_max_pool2d", "3 to 4 dims");

    /* Global average: means of 0..3, 4..7, ... */
    float v[16];
    for (int i = 0; i < 16; i++)
        v[i] = (float)i;
    ts_tensor_t *g = mk(v, SHAPE(2, 2, 2, 2));
    assert_int_equal(ts_global_avg_pool(&r, g), 0);
    expect_close(r, SHAPE(2, 2), (const float[]){1.5f, 5.5f, 9.5f, 13.5f}, 0);
    ts_free(r);
    expect_fail(ts_global_avg_pool(&r, x3), BASE_E_INVAL, "ts_global_avg_pool", "4 dims");
    ts_tensor_t *gi = as(ts_ref(g), TS_I64);
    expect_fail(ts_global_avg_pool(&r, gi), BASE_E_INVAL, "ts_global_avg_pool", "floating");
    assert_null(r);
    ts_free(gi);
    ts_free(g);
    ts_free(x2);
    ts_free(x3);
    ts_free(x);
}

/* --- attention --- */

static void test_attention_small(void **state) {
    (void)state;
    ts_tensor_t *q = pattern(12, 5, 2, 0.5f, SHAPE(1, 3, 4));
    ts_tensor_t *k = pattern(20, 7, 3, 0.25f, SHAPE(1, 5, 4));
    ts_tensor_t *v = pattern(20, 6, 2, 1.0f, SHAPE(1, 5, 4));
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_attention(&r, q, k, v, 2, false), 0);
    expect_close(r, SHAPE(1, 3, 4), ATTN_SMALL, 1e-6);
    ts_free(r);
    assert_int_equal(ts_attention(&r, q, k, v, 2, true), 0);
    expect_close(r, SHAPE(1, 3, 4), ATTN_SMALL_CAUSAL, 1e-6);
    ts_free(r);
    assert_int_equal(ts_attention(&r, q, k, v, 1, false), 0);
    expect_close(r, SHAPE(1, 3, 4), ATTN_SMALL_1HEAD, 1e-6);
    ts_free(r);

    /* By hand: zero queries weight every key equally, so each output row is the mean of
     * the visible rows of v (all of them; causal: rows 0..i). v rows (pattern 6, 2, 1):
     * [-2 -1 0 1], [2 3 -2 -1], [0 1 2 3], [-2 -1 0 1], [2 3 -2 -1]. */
    ts_tensor_t *q0 = NULL;
    assert_int_equal(ts_zeros(&q0, SHAPE(1, 3, 4), TS_F32, CPU), 0);
    assert_int_equal(ts_attention(&r, q0, k, v, 2, false), 0);
    const float mean5[4] = {0, 1, -0.4f, 0.6f};
    float want[12];
    for (int i = 0; i < 3; i++)
        memcpy(want + 4 * i, mean5, sizeof mean5);
    expect_close(r, SHAPE(1, 3, 4), want, 1e-6);
    ts_free(r);
    assert_int_equal(ts_attention(&r, q0, k, v, 2, true), 0);
    const float causal[12] = {-2, -1, 0, 1, 0, 1, -1, 0, 0, 1, 0, 1};
    expect_close(r, SHAPE(1, 3, 4), causal, 1e-6);
    ts_free(r);
    ts_free(q0);

    /* Batch items are independent: [q; q] gives the single result twice. */
    ts_tensor_t *q2 = NULL, *k2 = NULL, *v2 = NULL;
    ts_tensor_t *qq[2] = {q, q}, *kk[2] = {k, k}, *vv[2] = {v, v};
    assert_int_equal(ts_cat(&q2, qq, 2, 0), 0);
    assert_int_equal(ts_cat(&k2, kk, 2, 0), 0);
    assert_int_equal(ts_cat(&v2, vv, 2, 0), 0);
    assert_int_equal(ts_attention(&r, q2, k2, v2, 2, true), 0);
    float two[24];
    memcpy(two, ATTN_SMALL_CAUSAL, sizeof ATTN_SMALL_CAUSAL);
    memcpy(two + 12, ATTN_SMALL_CAUSAL, sizeof ATTN_SMALL_CAUSAL);
    expect_close(r, SHAPE(2, 3, 4), two, 1e-6);
    ts_free(r);

    /* Empty batch or no queries: an empty result, no division by zero. */
    ts_tensor_t *e0 = NULL, *ek = NULL;
    assert_int_equal(ts_zeros(&e0, SHAPE(0, 3, 4), TS_F32, CPU), 0);
    assert_int_equal(ts_zeros(&ek, SHAPE(0, 5, 4), TS_F32, CPU), 0);
    assert_int_equal(ts_attention(&r, e0, ek, ek, 2, true), 0);
    expect_close(r, SHAPE(0, 3, 4), NULL, 0);
    ts_free(r);
    ts_free(e0);
    ts_free(ek);
    assert_int_equal(ts_zeros(&e0, SHAPE(1, 0, 4), TS_F32, CPU), 0);
    assert_int_equal(ts_attention(&r, e0, k, v, 2, false), 0);
    expect_close(r, SHAPE(1, 0, 4), NULL, 0);
    ts_free(r);
    ts_free(e0);

    /* Errors. */
    expect_fail(ts_attention(&r, q, k, v, 3, false), BASE_E_INVAL, "ts_attention", "3 heads");
    expect_fail(ts_attention(&r, q, k, v, 0, false), BASE_E_INVAL, "ts_attention", "heads");
    expect_fail(ts_attention(&r, q, k2, v, 2, false), BASE_E_INVAL, "ts_attention", "same M");
    expect_fail(ts_attention(&r, q, k, q, 2, false), BASE_E_INVAL, "ts_attention", "same M");
    ts_tensor_t *q2d = NULL;
    assert_int_equal(ts_reshape(&q2d, q, SHAPE(3, 4)), 0);
    expect_fail(ts_attention(&r, q2d, k, v, 2, false), BASE_E_INVAL, "ts_attention", "3 dims");
    ts_tensor_t *kb = as(ts_ref(k), TS_BF16);
    expect_fail(ts_attention(&r, q, kb, v, 2, false), BASE_E_INVAL, "ts_attention", "dtype");
    ts_tensor_t *k6 = pattern(30, 7, 3, 0.25f, SHAPE(1, 5, 6));
    expect_fail(ts_attention(&r, q, k6, k6, 2, false), BASE_E_INVAL, "ts_attention", "channels");
    ts_tensor_t *k0 = NULL;
    assert_int_equal(ts_zeros(&k0, SHAPE(1, 0, 4), TS_F32, CPU), 0);
    expect_fail(ts_attention(&r, q, k0, k0, 2, false), BASE_E_INVAL, "ts_attention", "no keys");
    expect_fail(ts_attention(&r, q, k, NULL, 2, false), BASE_E_INVAL, "ts_attention", "v is NULL");
    assert_null(r);
    ts_free(k0);
    ts_free(k6);
    ts_free(kb);
    ts_free(q2d);
    ts_free(q2);
    ts_free(k2);
    ts_free(v2);
    ts_free(q);
    ts_free(k);
    ts_free(v);
}

/* Unchunked reference for query rows [r0, r1): per batch item and head,
 * softmax(q k^T / sqrt(d) + mask) v with ts_matmul and ts_softmax over all M keys in one
 * piece; returns the largest difference from the same rows of got. */
static double attention_reference_diff(const ts_tensor_t *q, const ts_tensor_t *k, const ts_tensor_t *v,
                                       int heads, bool causal, int64_t r0, int64_t r1,
                                       const ts_tensor_t *got) {
    const int64_t B = ts_size(q, 0), C = ts_size(q, 2), M = ts_size(k, 1), d = C / heads;
    ts_tensor_t *mask = NULL;
    if (causal) {
        float *mv = malloc(sizeof(float) * (size_t)((r1 - r0) * M));
        assert_non_null(mv);
        for (int64_t i = r0; i < r1; i++)
            for (int64_t j = 0; j < M; j++)
                mv[(i - r0) * M + j] = j > i ? -INFINITY : 0.0f;
        mask = mk(mv, SHAPE(r1 - r0, M));
        free(mv);
    }
    double worst = 0;
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++) {
            ts_tensor_t *qb, *kb, *vb, *gb, *qr, *gr, *qh, *kh, *vh, *gh, *kt, *s, *ss, *p, *o;
            assert_int_equal(ts_slice(&qb, q, 0, b, b + 1), 0);
            assert_int_equal(ts_slice(&kb, k, 0, b, b + 1), 0);
            assert_int_equal(ts_slice(&vb, v, 0, b, b + 1), 0);
            assert_int_equal(ts_slice(&gb, got, 0, b, b + 1), 0);
            assert_int_equal(ts_slice(&qr, qb, 1, r0, r1), 0);
            assert_int_equal(ts_slice(&gr, gb, 1, r0, r1), 0);
            assert_int_equal(ts_slice(&qh, qr, 2, h * d, (h + 1) * d), 0);
            assert_int_equal(ts_slice(&kh, kb, 2, h * d, (h + 1) * d), 0);
            assert_int_equal(ts_slice(&vh, vb, 2, h * d, (h + 1) * d), 0);
            assert_int_equal(ts_slice(&gh, gr, 2, h * d, (h + 1) * d), 0);
            assert_int_equal(ts_permute(&kt, kh, (const int[]){0, 2, 1}, 3), 0);
            assert_int_equal(ts_matmul(&s, qh, kt), 0);
            assert_int_equal(ts_affine(&ss, s, 1.0 / sqrt((double)d), 0), 0);
            ts_free(s);
            if (mask) {
                assert_int_equal(ts_add(&s, ss, mask), 0);
                ts_free(ss);
                ss = s;
            }
            assert_int_equal(ts_softmax(&p, ss, -1), 0);
            assert_int_equal(ts_matmul(&o, p, vh), 0);
            double diff = max_abs_diff(o, gh);
            if (!(diff <= worst))
                worst = diff;
            ts_tensor_t *all[] = {qb, kb, vb, gb, qr, gr, qh, kh, vh, gh, kt, ss, p, o};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                ts_free(all[i]);
        }
    ts_free(mask);
    return worst;
}

/* B*heads*N*M*4 bytes of scores is well over twice the 256 MiB budget, so ts_attention must
 * work in several query chunks (B=2, 4 heads, M=4200: 1997, 1997 and 206 rows, so the last
 * one is short); causal masking must use each chunk's row offset. The reference covers the
 * first and last rows and both chunk boundaries. */
static void test_attention_chunked(void **state) {
    (void)state;
    enum { B = 2, H = 4, D = 4, N = 4200, M = 4200 };
    static const int64_t rows[][2] = {{0, 40}, {1957, 2037}, {3954, 4034}, {4160, 4200}};
    ts_tensor_t *q, *k, *v, *r = NULL;
    assert_int_equal(ts_randn(&q, SHAPE(B, N, H * D), 1, CPU), 0);
    assert_int_equal(ts_randn(&k, SHAPE(B, M, H * D), 2, CPU), 0);
    assert_int_equal(ts_randn(&v, SHAPE(B, M, H * D), 3, CPU), 0);
    assert_true((double)B * H * N * M * 4 > 2.0 * (256 << 20)); /* at least 3 chunks */

    for (int causal = 0; causal <= 1; causal++) {
        assert_int_equal(ts_attention(&r, q, k, v, H, causal), 0);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            double diff = attention_reference_diff(q, k, v, H, causal, rows[i][0], rows[i][1], r);
            if (!(diff < 2e-5))
                fail_msg("%s attention rows %lld..%lld differ from the unchunked result by %g",
                         causal ? "causal" : "full", (long long)rows[i][0], (long long)rows[i][1],
                         diff);
        }
        if (causal) {
            /* Row 0 sees only key 0: exactly v[:, 0]. */
            ts_tensor_t *r0, *v0;
            assert_int_equal(ts_slice(&r0, r, 1, 0, 1), 0);
            assert_int_equal(ts_slice(&v0, v, 1, 0, 1), 0);
            assert_true(max_abs_diff(r0, v0) == 0);
            ts_free(r0);
            ts_free(v0);
        }
        ts_free(r);
    }
    ts_free(q);
    ts_free(k);
    ts_free(v);
}

/* --- bfloat16 --- */

/* op on bf16 copies of its inputs gives bf16 within bf16 rounding of the float32 result. */
static void expect_bf16_close(ts_tensor_t *got16, ts_tensor_t *want32, double tol) {
    assert_int_equal(ts_dtype(got16), TS_BF16);
    int64_t n = ts_numel(want32);
    assert_int_equal(ts_numel(got16), n);
    float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    assert_true(a && b);
    assert_int_equal(ts_to_host(got16, TS_F32, a, (size_t)n * sizeof *a), 0);
    assert_int_equal(ts_to_host(want32, TS_F32, b, (size_t)n * sizeof *b), 0);
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - (double)b[i]) <= tol * fmax(1.0, fabs((double)b[i])))) {
            float x = a[i], y = b[i];
            free(a);
            free(b);
            fail_msg("bf16 element %lld: %.6g vs float32 %.6g", (long long)i, x, y);
        }
    free(a);
    free(b);
    ts_free(got16);
    ts_free(want32);
}

static ts_tensor_t *bf(const ts_tensor_t *t) {
    ts_tensor_t *r = NULL;
    assert_int_equal(ts_to(&r, t, TS_BF16, CPU), 0);
    return r;
}

static void test_bf16(void **state) {
    (void)state;
    ts_tensor_t *x, *w, *b, *r32, *r16;
    assert_int_equal(ts_randn(&x, SHAPE(2, 8, 6, 6), 11, CPU), 0);
    assert_int_equal(ts_randn(&w, SHAPE(4, 8, 3, 3), 12, CPU), 0);
    assert_int_equal(ts_randn(&b, SHAPE(4), 13, CPU), 0);
    ts_tensor_t *x16 = bf(x), *w16 = bf(w), *b16 = bf(b);
    assert_int_equal(ts_conv2d(&r32, x, w, b, 2, 1), 0);
    assert_int_equal(ts_conv2d(&r16, x16, w16, b16, 2, 1), 0);
    expect_bf16_close(r16, r32, 0.1); /* sums of 72 bf16 products */
    assert_int_equal(ts_group_norm(&r32, x, 4, NULL, NULL, 1e-5), 0);
    assert_int_equal(ts_group_norm(&r16, x16, 4, NULL, NULL, 1e-5), 0);
    expect_bf16_close(r16, r32, 2e-2);
    assert_int_equal(ts_unary(&r32, x, TS_UNARY_GELU), 0);
    assert_int_equal(ts_unary(&r16, x16, TS_UNARY_GELU), 0);
    expect_bf16_close(r16, r32, 2e-2);
    assert_int_equal(ts_unary(&r32, x, TS_UNARY_QUICK_GELU), 0);
    assert_int_equal(ts_unary(&r16, x16, TS_UNARY_QUICK_GELU), 0);
    expect_bf16_close(r16, r32, 3e-2);
    assert_int_equal(ts_unary(&r32, x, TS_UNARY_SILU), 0);
    assert_int_equal(ts_unary(&r16, x16, TS_UNARY_SILU), 0);
    expect_bf16_close(r16, r32, 2e-2);
    assert_int_equal(ts_max_pool2d(&r32, x, 2, 2, 0), 0);
    assert_int_equal(ts_max_pool2d(&r16, x16, 2, 2, 0), 0);
    expect_bf16_close(r16, r32, 1e-2);
    assert_int_equal(ts_global_avg_pool(&r32, x), 0);
    assert_int_equal(ts_global_avg_pool(&r16, x16), 0);
    expect_bf16_close(r16, r32, 2e-2);
    ts_free(x);
    ts_free(w);
    ts_free(b);
    ts_free(x16);
    ts_free(w16);
    ts_free(b16);

    /* linear, layer_norm and attention on [2, 10, 16] tokens. */
    assert_int_equal(ts_randn(&x, SHAPE(2, 10, 16), 21, CPU), 0);
    assert_int_equal(ts_randn(&w, SHAPE(8, 16), 22, CPU), 0);
    assert_int_equal(ts_randn(&b, SHAPE(8), 23, CPU), 0);
    x16 = bf(x);
    w16 = bf(w);
    b16 = bf(b);
    assert_int_equal(ts_linear(&r32, x, w, b), 0);
    assert_int_equal(ts_linear(&r16, x16, w16, b16), 0);
    expect_bf16_close(r16, r32, 0.1);
    assert_int_equal(ts_layer_norm(&r32, x, NULL, NULL, 1e-5), 0);
    assert_int_equal(ts_layer_norm(&r16, x16, NULL, NULL, 1e-5), 0);
    expect_bf16_close(r16, r32, 2e-2);
    ts_tensor_t *kv, *kv16;
    assert_int_equal(ts_randn(&kv, SHAPE(2, 7, 16), 24, CPU), 0);
    kv16 = bf(kv);
    assert_int_equal(ts_attention(&r32, x, kv, kv, 4, false), 0);
    assert_int_equal(ts_attention(&r16, x16, kv16, kv16, 4, false), 0);
    expect_bf16_close(r16, r32, 5e-2);
    assert_int_equal(ts_attention(&r32, x, x, x, 2, true), 0);
    assert_int_equal(ts_attention(&r16, x16, x16, x16, 2, true), 0);
    expect_bf16_close(r16, r32, 5e-2);
    ts_free(kv);
    ts_free(kv16);
    ts_free(x);
    ts_free(w);
    ts_free(b);
    ts_free(x16);
    ts_free(w16);
    ts_free(b16);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_blob_zero_copy),
        cmocka_unit_test(test_from_blob_rejects),
        cmocka_unit_test(test_generator_sequence),
        cmocka_unit_test(test_add_scaled_and_lerp),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_reduce_all),
        cmocka_unit_test(test_softmax_and_matmul),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_pad2d),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_batch_norm),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_attention_small),
        cmocka_unit_test(test_attention_chunked),
        cmocka_unit_test(test_bf16),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
