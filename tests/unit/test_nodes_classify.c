/* The image classifier (nodes/classify/): torchvision ResNet layouts and their detection,
 * the forward pass against an independent float64 reference (tests/reference/resnet.py:
 * torch.nn.functional, itself checked against torchvision's modules) at the stem, after
 * layer1 and at the logits for BasicBlock, Bottleneck and grouped (ResNeXt) configs and for
 * real ResNet-18 widths; torchvision's preprocessing (antialiased resize, centre crop with
 * Python rounding, normalisation); labels files and their errors; wrong-layout files; top-k
 * ranking and ties; and the nodes (loader, classify, threshold, gate, and SaveImage on the
 * empty batch a closed gate produces). */
#include "testutil.h"
#include "nodes_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "classify/classify.h"
#include "nodes.h"
#include "sd/sd.h"

static const ts_device_t CPU = {TS_CPU, 0};

/* ================================================================== reference values
 * Printed by /usr/bin/python3 tests/reference/resnet.py (torch 1.13, torchvision 0.14). */

static const int64_t demo_s0_idx[12] = {0, 263, 526, 789, 1052, 1315, 1578, 1841, 2104, 2367, 2630, 2893};
static const double demo_s0_val[12] = {
    0, 1.1814332, 1.71494926, 3.04288849, 4.5909175, 3.71028785, 1.86373952, 2.5415088, 1.62622614,
    1.08152437, 1.57894712, 2.81691257
};
static const double demo_s0_sum = 6277.52803378;
static const int64_t demo_s1_idx[12] = {0, 263, 526, 789, 1052, 1315, 1578, 1841, 2104, 2367, 2630, 2893};
static const double demo_s1_val[12] = {
    0, 4.85348219, 0.536376171, 6.14255306, 8.71193008, 0, 0, 5.76263106, 0, 4.18270723, 2.92511937,
    2.83001633
};
static const double demo_s1_sum = 10260.4492602;
static const double demo_logits[20] = {
    23.1659202, -4.06886184, -9.81181253, 36.0538761, -3.95115872, -24.4550928, 5.0722451, -10.0382047,
    5.6508566, 10.6560213, 21.5804852, -4.91138099, -11.0500454, 36.590438, -8.33332696, -25.2681355,
    5.4051434, -10.7044656, 7.07974933, 11.2189158
};
static const double r50s_logits[12] = {
    -25.8930391, 30.2939812, 4.65710925, -9.368868, -19.0441261, 23.1929234, -25.7604796, 30.8526162,
    6.33044781, -10.6765541, -19.5309454, 23.2637063
};
static const double rxs_logits[10] = {
    -2.92448635, -1.05847243, 0.308562696, -2.66177868, -0.941624167, -2.42213497, -1.60342174,
    -0.184177125, -1.78551878, -1.17975226
};
static const double r18_logits_first[8] = {
    0.0214326952, -4.47974363, 12.3972724, 0.973940246, -3.89082487, 7.39861121, -5.92137256, 2.16702838
};
static const int r18_argmax = 475;
static const double r18_sum = 228.892840982, r18_abs = 3469.60582276;
static const double aa_down[36] = {
    0.0758928582, 0.815476239, 0.544642866, 0.145892844, 0.885476112, 0.614642799, 0.224642828,
    0.730386913, 0.693392873, 0.294642836, 0.289535969, 0.763392746, 0.1875, 0.82171911, 0.656250119,
    0.257499993, 0.542990208, 0.726249993, 0.336250007, 0.205686286, 0.805000007, 0.40624997,
    0.138118312, 0.856088519, 0.299107164, 0.323525518, 0.767857194, 0.369107127, 0.106934547,
    0.837857127, 0.447857112, 0.177023783, 0.902172625, 0.517857134, 0.247023791, 0.586377203
};
static const double aa_up[264] = {
    0, 0.739583313, 0.46875, 0, 0.739583313, 0.46875, 0.00568181835, 0.745265126, 0.474431813,
    0.0142045468, 0.753787875, 0.482954562, 0.0227272734, 0.762310565, 0.491477281, 0.03125,
    0.770833313, 0.5, 0.0397727303, 0.779356003, 0.508522749, 0.0482954532, 0.787878752, 0.517045438,
    0.0568181872, 0.796401501, 0.525568187, 0.0625, 0.802083313, 0.53125, 0.0625, 0.802083313, 0.53125,
    0.0227864571, 0.762369812, 0.491536438, 0.0227864571, 0.762369812, 0.491536438, 0.0284682773,
    0.768051624, 0.497218281, 0.0369910076, 0.776574373, 0.505741, 0.0455137342, 0.785097063,
    0.51426369, 0.0540364608, 0.793619812, 0.522786438, 0.0625591874, 0.802142501, 0.531309187,
    0.071081914, 0.81066525, 0.539831877, 0.0796046481, 0.819187999, 0.548354626, 0.0852864608,
    0.824869812, 0.554036438, 0.0852864608, 0.824869812, 0.554036438, 0.0553385429, 0.794921875,
    0.524088502, 0.0553385429, 0.794921875, 0.524088502, 0.0610203631, 0.800603747, 0.529770374,
    0.0695430934, 0.809126496, 0.538293064, 0.0780658126, 0.817649126, 0.546815753, 0.0865885392,
    0.826171875, 0.555338562, 0.0951112732, 0.834694624, 0.563861251, 0.103634, 0.843217313, 0.57238394,
    0.112156734, 0.851740062, 0.580906689, 0.117838539, 0.857421875, 0.586588562, 0.117838539,
    0.857421875, 0.586588562, 0.087890625, 0.827473998, 0.556640625, 0.087890625, 0.827473998,
    0.556640625, 0.0935724452, 0.833155811, 0.562322438, 0.102095172, 0.8416785, 0.570845187,
    0.110617898, 0.85020119, 0.579367876, 0.119140632, 0.858723998, 0.587890625, 0.127663359,
    0.867246687, 0.596413374, 0.136186078, 0.875769377, 0.604936063, 0.144708812, 0.884292185,
    0.613458812, 0.150390625, 0.889973998, 0.619140625, 0.150390625, 0.889973998, 0.619140625,
    0.120442703, 0.860026062, 0.589192748, 0.120442703, 0.860026062, 0.589192748, 0.126124531,
    0.865707874, 0.594874561, 0.13464725, 0.874230564, 0.60339731, 0.143169984, 0.882753313,
    0.611919999, 0.151692718, 0.891276062, 0.620442748, 0.160215452, 0.899798751, 0.628965497,
    0.168738171, 0.9083215, 0.637488186, 0.177260906, 0.916844249, 0.646010876, 0.182942718,
    0.922526062, 0.651692748, 0.182942718, 0.922526062, 0.651692748, 0.152994797, 0.892578125,
    0.621744812, 0.152994797, 0.892578125, 0.621744812, 0.158676609, 0.898259938, 0.627426624,
    0.167199343, 0.906782687, 0.635949373, 0.175722077, 0.915305376, 0.644472063, 0.184244797,
    0.923828125, 0.652994812, 0.192767531, 0.932350874, 0.66151756, 0.20129025, 0.940873563,
    0.670040309, 0.209812984, 0.949396312, 0.678562999, 0.215494797, 0.955078125, 0.684244812,
    0.215494797, 0.955078125, 0.684244812, 0.185546875, 0.925130188, 0.654296875, 0.185546875,
    0.925130188, 0.654296875, 0.191228703, 0.930812001, 0.659978688, 0.199751422, 0.93933475,
    0.668501437, 0.208274156, 0.94785744, 0.677024126, 0.216796875, 0.956380188, 0.685546875,
    0.225319609, 0.809895813, 0.694069624, 0.233842328, 0.663411438, 0.702592313, 0.242365062,
    0.516927004, 0.711115062, 0.248046875, 0.419270813, 0.716796875, 0.248046875, 0.419270813,
    0.716796875, 0.208333328, 0.947916687, 0.677083313, 0.208333328, 0.947916687, 0.677083313,
    0.214015156, 0.953598499, 0.682765126, 0.222537875, 0.962121248, 0.691287875, 0.231060609,
    0.970643938, 0.699810565, 0.239583328, 0.979166687, 0.708333313, 0.248106062, 0.712121129,
    0.716856062, 0.256628782, 0.44507581, 0.725378752, 0.265151531, 0.178030133, 0.733901501,
    0.270833343, 0, 0.739583313, 0.270833343, 0, 0.739583313
};
static const int64_t pre_land_idx[8] = {0, 18823, 37646, 56469, 75292, 94115, 112938, 131761};
static const double pre_land_val[8] = {
    -1.7854501, -0.308205336, 1.10639131, -0.867515802, 0.636571586, 2.12017465, 0.214364663, 1.66796148
};
static const double pre_land_sum = 34091.9135128;
static const int64_t pre_port_idx[8] = {0, 18823, 37646, 56469, 75292, 94115, 112938, 131761};
static const double pre_port_val[8] = {
    -1.63985312, -0.141521603, 1.29299033, -0.688687086, 0.793126404, 2.24060941, 0.379069775,
    1.83765244
};
static const double pre_port_sum = 34095.2552549;
static const int64_t pre_small_idx[8] = {0, 18823, 37646, 56469, 75292, 94115, 112938, 131761};
static const double pre_small_val[8] = {
    -0.679357886, -1.95727587, 1.17710614, -0.299118847, -1.60556173, 1.59878397, 0.189189777,
    -1.11144674
};
static const double pre_small_sum = 34097.5331103;
static const int64_t pre_pad_idx[8] = {0, 18823, 37646, 56469, 75292, 94115, 112938, 131761};
static const double pre_pad_val[8] = {
    -2.11790395, 1.79884791, 1.01251376, 1.55550539, 1.40338671, 0.590086877, 1.8568536, 1.05088484
};
static const double pre_pad_sum = -1599.51554669;
static const double demo_probs[20] = {
    7.71024004e-10, 1.7228498e-05, 1.3872618e-25, 2.62381376e-17, 0.994653475, 0.00532926905,
    2.15816813e-19, 4.78164589e-11, 9.17936666e-29, 2.6783122e-08, 5.11846866e-10, 1.98415713e-05,
    1.03831127e-25, 1.66218053e-17, 0.993610628, 0.00636949795, 2.38645323e-19, 4.75427701e-11,
    6.86090041e-29, 3.23776267e-08
};

/* ================================================================== helpers */

static char *tmp;

static void near(double got, double want, double tol, const char *what, size_t i)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s[%zu]: got %.9g, want %.9g (tolerance %g)", what, i, got, want, tol);
}

static void expect_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("expected \"%s\" in \"%s\"", part, text);
}

/* Host copy of a float32 tensor (malloc'ed). */
static float *host(const ts_tensor_t *t, size_t *n)
{
    *n = (size_t)ts_numel(t);
    float *p = malloc(*n * sizeof *p + 1);
    assert_non_null(p);
    assert_int_equal(ts_to_host(t, TS_F32, p, *n * sizeof *p), 0);
    return p;
}

static void expect_shape(const ts_tensor_t *t, const int64_t *want, int nd)
{
    int64_t s[TS_MAX_DIMS];
    assert_int_equal(ts_shape(t, s), nd);
    for (int i = 0; i < nd; i++)
        assert_int_equal(s[i], want[i]);
}

static ts_tensor_t *randn(const int64_t *shape, int nd, uint64_t seed)
{
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_randn(&t, shape, nd, seed, CPU), 0);
    return t;
}

/* The reference script's test image: ((x*3 + y*5 + c*71 + b*11) % 97) / 96, [B, H, W, C]
 * (channels beyond 3 get the same formula). */
static ts_tensor_t *test_image(int64_t b_n, int64_t h, int64_t w, int64_t c)
{
    size_t n = (size_t)(b_n * h * w * c), i = 0;
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (int64_t b = 0; b < b_n; b++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                for (int64_t k = 0; k < c; k++)
                    p[i++] = (float)((x * 3 + y * 5 + k * 71 + b * 11) % 97) / 96.0f;
    int64_t shape[4] = {b_n, h, w, c};
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_from_host(&t, p, TS_F32, shape, 4, CPU), 0);
    free(p);
    return t;
}

static void cfg_r50s(cls_resnet_config_t *c)
{
    assert_int_equal(cls_resnet_config_std(c, 50, 6), 0);
    c->stem = 8;
    for (int l = 0; l < CLS_LAYERS; l++) {
        c->inner[l] = 8 << l;
        c->out[l] = 32 << l;
    }
}

static void cfg_rxs(cls_resnet_config_t *c)
{
    *c = (cls_resnet_config_t){.bottleneck = true, .stem = 8, .blocks = {1, 2, 1, 1}, .inner = {16, 32, 64, 128},
                               .out = {32, 64, 128, 256}, .groups = 4, .num_classes = 5};
}

static cls_resnet_t *net_for(const cls_resnet_config_t *c, uint64_t seed)
{
    sdw_t *w = NULL;
    char err[512] = "";
    if (cls_demo_weights(c, seed, &w, err, sizeof err))
        fail_msg("demo weights: %s", err);
    cls_resnet_t *r = NULL;
    if (cls_resnet_load(&r, w, err, sizeof err))
        fail_msg("load: %s", err);
    const cls_resnet_config_t *got = cls_resnet_config(r);
    assert_int_equal(got->bottleneck, c->bottleneck);
    assert_int_equal(got->stem, c->stem);
    assert_int_equal(got->groups, c->groups);
    assert_int_equal(got->num_classes, c->num_classes);
    for (int l = 0; l < CLS_LAYERS; l++) {
        assert_int_equal(got->blocks[l], c->blocks[l]);
        assert_int_equal(got->inner[l], c->inner[l]);
        assert_int_equal(got->out[l], c->out[l]);
    }
    return r;
}

static void check_values(const ts_tensor_t *t, const int64_t *idx, const double *val, size_t n, double sum,
                         double tol, const char *what)
{
    size_t total = 0;
    float *p = host(t, &total);
    double s = 0;
    for (size_t i = 0; i < total; i++)
        s += p[i];
    for (size_t i = 0; i < n; i++) {
        assert_true((size_t)idx[i] < total);
        near(p[idx[i]], val[i], tol, what, i);
    }
    near(s, sum, 1e-5 * fabs(sum) + 1e-3, what, 999);
    free(p);
}

static void check_all(const ts_tensor_t *t, const double *want, size_t n, double tol, const char *what)
{
    size_t total = 0;
    float *p = host(t, &total);
    assert_int_equal(total, n);
    for (size_t i = 0; i < n; i++)
        near(p[i], want[i], tol, what, i);
    free(p);
}

static ts_tensor_t *forward(const cls_resnet_t *r, const ts_tensor_t *x, cls_stage_t st)
{
    ts_tensor_t *y = NULL;
    char err[512] = "";
    if (cls_resnet_forward(r, x, st, &y, err, sizeof err))
        fail_msg("forward: %s", err);
    return y;
}

/* ================================================================== layouts */

typedef struct {
    size_t entries;
    int64_t params, numel;
} count_t;

static int count_key(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    count_t *c = ctx;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    c->entries++;
    c->numel += n;
    if (!strstr(name, "running_") && !strstr(name, "num_batches_tracked"))
        c->params += n;
    return 0;
}

/* torchvision's entry and parameter counts (§8, and resnet.py's check against torchvision). */
static void test_std_layouts(void **state)
{
    (void)state;
    static const struct {
        int depth;
        size_t entries;
        int64_t params;
    } want[] = {{18, 122, 11689512}, {34, 218, 21797672}, {50, 320, 25557032},
                {101, 626, 44549160}, {152, 932, 60192808}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cls_resnet_config_t c;
        assert_int_equal(cls_resnet_config_std(&c, want[i].depth, 1000), 0);
        count_t n = {0, 0, 0};
        assert_int_equal(cls_resnet_keys(&c, count_key, &n), 0);
        assert_int_equal(n.entries, want[i].entries);
        assert_int_equal(n.params, want[i].params);
    }
    cls_resnet_config_t c;
    assert_int_equal(cls_resnet_config_std(&c, 20, 1000), BASE_E_INVAL);
}

/* ================================================================== forward pass */

/* Demo layout (ResNet-18 keys, widths 8..64), weights seed 7, input randn seed 11. */
static void test_forward_basic(void **state)
{
    (void)state;
    cls_resnet_config_t c;
    cls_demo_config(&c);
    cls_resnet_t *r = net_for(&c, 7);
    int64_t xs[4] = {2, 3, 64, 48};
    ts_tensor_t *x = randn(xs, 4, 11);

    ts_tensor_t *y = forward(r, x, CLS_STAGE_STEM);
    int64_t s0[4] = {2, 8, 16, 12};
    expect_shape(y, s0, 4);
    check_values(y, demo_s0_idx, demo_s0_val, 12, demo_s0_sum, 1e-4, "stem");
    ts_free(y);

    y = forward(r, x, CLS_STAGE_LAYER1);
    expect_shape(y, s0, 4);
    check_values(y, demo_s1_idx, demo_s1_val, 12, demo_s1_sum, 1e-4, "layer1");
    ts_free(y);

    y = forward(r, x, CLS_STAGE_POOL);
    int64_t sp[2] = {2, 64};
    expect_shape(y, sp, 2);
    ts_free(y);

    y = forward(r, x, CLS_STAGE_LOGITS);
    int64_t sl[2] = {2, 10};
    expect_shape(y, sl, 2);
    check_all(y, demo_logits, 20, 1e-4, "logits");

    /* Batch of 2 = each image alone. */
    ts_tensor_t *x1 = NULL;
    assert_int_equal(ts_slice(&x1, x, 0, 1, 2), 0);
    ts_tensor_t *y1 = forward(r, x1, CLS_STAGE_LOGITS);
    check_all(y1, demo_logits + 10, 10, 1e-4, "logits of image 2 alone");
    ts_free(y1);
    ts_free(x1);
    ts_free(y);
    ts_free(x);

    /* Not a [N, 3, H, W] float tensor. */
    int64_t bad[4] = {1, 4, 16, 16};
    x = randn(bad, 4, 1);
    char err[256] = "";
    assert_int_equal(cls_resnet_forward(r, x, CLS_STAGE_LOGITS, &y, err, sizeof err), BASE_E_INVAL);
    expect_contains(err, "float32 [batch, 3, height, width]");
    ts_free(x);
    cls_resnet_free(r);
}

/* Bottleneck blocks: the ResNet-50 layout at 1/8 width, and a grouped (ResNeXt) variant. */
static void test_forward_bottleneck(void **state)
{
    (void)state;
    int64_t xs[4] = {2, 3, 64, 48};
    ts_tensor_t *x = randn(xs, 4, 11);
    cls_resnet_config_t c;
    cfg_r50s(&c);
    count_t n = {0, 0, 0};
    assert_int_equal(cls_resnet_keys(&c, count_key, &n), 0);
    assert_int_equal(n.entries, 320);
    cls_resnet_t *r = net_for(&c, 8);
    ts_tensor_t *y = forward(r, x, CLS_STAGE_LOGITS);
    check_all(y, r50s_logits, 12, 1e-4, "resnet50 layout logits");
    ts_free(y);
    cls_resnet_free(r);

    cfg_rxs(&c);
    r = net_for(&c, 9);
    y = forward(r, x, CLS_STAGE_LOGITS);
    check_all(y, rxs_logits, 10, 1e-4, "grouped bottleneck logits");
    ts_free(y);
    cls_resnet_free(r);
    ts_free(x);
}

/* Real ResNet-18 widths (11.7 M parameters, 1000 classes) on a 32x32 input. */
static void test_forward_resnet18(void **state)
{
    (void)state;
    cls_resnet_config_t c;
    assert_int_equal(cls_resnet_config_std(&c, 18, 1000), 0);
    cls_resnet_t *r = net_for(&c, 3);
    /* Parameters and running statistics in float32, the 20 counters as int64. */
    assert_int_equal(cls_resnet_bytes(r), (size_t)(11689512 + 9600) * 4 + 20 * 8);
    int64_t xs[4] = {1, 3, 32, 32};
    ts_tensor_t *x = randn(xs, 4, 12);
    ts_tensor_t *y = forward(r, x, CLS_STAGE_LOGITS);
    size_t n = 0;
    float *p = host(y, &n);
    assert_int_equal(n, 1000);
    double sum = 0, abs_sum = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        sum += p[i];
        abs_sum += fabs(p[i]);
        if (p[i] > p[best])
            best = i;
    }
    for (size_t i = 0; i < 8; i++)
        near(p[i], r18_logits_first[i], 1e-4, "resnet18 logits", i);
    assert_int_equal(best, r18_argmax);
    near(sum, r18_sum, 1e-2, "resnet18 logit sum", 0);
    near(abs_sum, r18_abs, 1e-2, "resnet18 |logit| sum", 0);
    free(p);
    ts_free(y);
    ts_free(x);
    cls_resnet_free(r);
}

/* ================================================================== wrong layouts */

typedef struct {
    sdw_t *src, *dst;
    const char *skip;
} copy_t;

static int copy_key(void *ctx, const char *name, const int64_t *shape, int ndim)
{
    copy_t *c = ctx;
    if (c->skip && strcmp(name, c->skip) == 0)
        return 0;
    ts_tensor_t *t = sdw_get(c->src, name);
    assert_non_null(t);
    assert_int_equal(sdw_put(c->dst, name, ts_ref(t)), 0);
    return 0;
}

/* The demo weights without `skip`, plus `extra` (a [n] tensor) when given. */
static sdw_t *demo_variant(const char *skip, const char *extra, int64_t n)
{
    cls_resnet_config_t c;
    cls_demo_config(&c);
    sdw_t *src = NULL, *dst = NULL;
    char err[256];
    assert_int_equal(cls_demo_weights(&c, 1, &src, err, sizeof err), 0);
    assert_int_equal(sdw_new(&dst), 0);
    copy_t cp = {src, dst, skip};
    assert_int_equal(cls_resnet_keys(&c, copy_key, &cp), 0);
    sdw_free(src);
    if (extra) {
        ts_tensor_t *t = NULL;
        assert_int_equal(ts_zeros(&t, &n, 1, TS_F32, CPU), 0);
        assert_int_equal(sdw_put(dst, extra, t), 0);
    }
    return dst;
}

static void expect_load_error(sdw_t *w, const char *part)
{
    cls_resnet_t *r = NULL;
    char err[512] = "";
    assert_int_equal(cls_resnet_load(&r, w, err, sizeof err), BASE_E_MODEL_LAYOUT);
    assert_null(r);
    expect_contains(err, part);
}

static void test_wrong_layouts(void **state)
{
    (void)state;
    sdw_t *w = NULL;
    assert_int_equal(sdw_new(&w), 0);
    int64_t s4[4] = {320, 4, 3, 3};
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_zeros(&t, s4, 4, TS_F32, CPU), 0);
    assert_int_equal(sdw_put(w, "model.diffusion_model.input_blocks.0.0.weight", t), 0);
    expect_load_error(w, "not a torchvision ResNet");

    expect_load_error(demo_variant("layer2.0.bn1.running_var", NULL, 0),
                      "tensor 'layer2.0.bn1.running_var' is missing");
    /* fc.bias of 9 values against fc.weight's 10 classes. */
    sdw_t *v = demo_variant("fc.bias", "fc.bias", 9);
    expect_load_error(v, "tensor 'fc.bias' has shape [9], expected [10]");
    expect_load_error(demo_variant(NULL, "layer1.0.conv1.bias", 8), "1 unexpected tensor ('layer1.0.conv1.bias')");
    /* A third block in layer1 that has only a bias: detection stops at the missing weight. */
    expect_load_error(demo_variant(NULL, "layer1.2.bn1.bias", 8), "unexpected tensor ('layer1.2.bn1.bias')");
    /* The optional counter may be absent. */
    cls_resnet_t *r = NULL;
    char err[256] = "";
    if (cls_resnet_load(&r, demo_variant("bn1.num_batches_tracked", NULL, 0), err, sizeof err))
        fail_msg("%s", err);
    cls_resnet_free(r);
}

/* ================================================================== preprocessing */

static void resample(int h, int w, int oh, int ow, const double *want, const char *what)
{
    ts_tensor_t *img = test_image(1, h, w, 3);
    size_t n = 0;
    float *in = host(img, &n), *out = malloc((size_t)(oh * ow * 3) * sizeof *out);
    assert_non_null(out);
    assert_int_equal(cls_pre_resize_aa(in, h, w, 3, out, oh, ow), 0);
    for (size_t i = 0; i < (size_t)(oh * ow * 3); i++)
        near(out[i], want[i], 1e-6, what, i);
    free(in);
    free(out);
    ts_free(img);
}

static void test_resize_antialias(void **state)
{
    (void)state;
    resample(7, 10, 3, 4, aa_down, "antialiased shrink");
    resample(5, 3, 8, 11, aa_up, "bilinear enlarge");
    assert_int_equal(cls_pre_resize_aa(NULL, 1, 1, 3, NULL, 1, 1), BASE_E_INVAL);
}

static void test_preprocess_geometry(void **state)
{
    (void)state;
    int oh, ow;
    cls_pre_resized_size(300, 400, 256, &oh, &ow);
    assert_int_equal(oh, 256);
    assert_int_equal(ow, 341); /* int(256 * 400 / 300) = int(341.33) */
    cls_pre_resized_size(517, 300, 256, &oh, &ow);
    assert_int_equal(oh, 441);
    assert_int_equal(ow, 256);
    cls_pre_resized_size(40, 50, 256, &oh, &ow);
    assert_int_equal(oh, 256);
    assert_int_equal(ow, 320);
    /* int(round(d / 2)) rounds halves to even, as Python does. */
    assert_int_equal(cls_pre_crop_offset(441, 224), 108); /* 108.5 */
    assert_int_equal(cls_pre_crop_offset(259, 224), 18);  /* 17.5 */
    assert_int_equal(cls_pre_crop_offset(341, 224), 58);  /* 58.5 */
    assert_int_equal(cls_pre_crop_offset(256, 224), 16);
    assert_int_equal(cls_pre_crop_offset(224, 224), 0);
    assert_int_equal(cls_pre_crop_offset(221, 224), -1); /* padded: (224 - 221) // 2 on top */
}

static ts_tensor_t *preprocess_with(const ts_tensor_t *img, int resize)
{
    cls_pre_t p;
    cls_pre_default(&p);
    p.resize = resize;
    ts_tensor_t *x = NULL;
    char err[256] = "";
    if (cls_preprocess(img, &p, &x, err, sizeof err))
        fail_msg("preprocess: %s", err);
    int64_t want[4] = {ts_size(img, 0), 3, 224, 224};
    expect_shape(x, want, 4);
    return x;
}

static ts_tensor_t *preprocess(const ts_tensor_t *img)
{
    return preprocess_with(img, 256);
}

static void check_pre(int64_t h, int64_t w, int resize, const int64_t *idx, const double *val, double sum,
                      const char *what)
{
    ts_tensor_t *img = test_image(1, h, w, 3), *x = preprocess_with(img, resize);
    check_values(x, idx, val, 8, sum, 1e-5, what);
    ts_free(x);
    ts_free(img);
}

static void expect_same(const ts_tensor_t *a, const ts_tensor_t *b)
{
    size_t na = 0, nb = 0;
    float *pa = host(a, &na), *pb = host(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof *pa);
    free(pa);
    free(pb);
}

static void test_preprocess(void **state)
{
    (void)state;
    check_pre(300, 400, 256, pre_land_idx, pre_land_val, pre_land_sum, "landscape 300x400");
    check_pre(517, 300, 256, pre_port_idx, pre_port_val, pre_port_sum, "portrait 517x300");
    check_pre(40, 50, 256, pre_small_idx, pre_small_val, pre_small_sum, "small 40x50");
    /* Resized below the crop: zero padding, then normalisation. */
    check_pre(300, 400, 200, pre_pad_idx, pre_pad_val, pre_pad_sum, "padded 300x400 at 200");

    /* Alpha is dropped; grey is repeated into three channels. */
    ts_tensor_t *rgb = test_image(1, 30, 20, 3), *rgba = test_image(1, 30, 20, 4);
    ts_tensor_t *a = preprocess(rgb), *b = preprocess(rgba);
    expect_same(a, b);
    ts_free(a);
    ts_free(b);
    ts_tensor_t *grey = NULL, *grey3 = NULL;
    assert_int_equal(ts_slice(&grey, rgb, 3, 1, 2), 0);
    int64_t reps[4] = {1, 1, 1, 3};
    assert_int_equal(ts_repeat(&grey3, grey, reps, 4), 0);
    a = preprocess(grey);
    b = preprocess(grey3);
    expect_same(a, b);
    ts_free(a);
    ts_free(b);
    ts_free(grey);
    ts_free(grey3);
    ts_free(rgb);
    ts_free(rgba);

    /* Shapes the classifier cannot take. */
    cls_pre_t p;
    cls_pre_default(&p);
    char err[256] = "";
    ts_tensor_t *x = NULL, *two = test_image(1, 8, 8, 2), *none = NULL;
    assert_int_equal(cls_preprocess(two, &p, &x, err, sizeof err), BASE_E_INVAL);
    expect_contains(err, "[batch, height, width, 1, 3 or 4 channels]");
    int64_t es[4] = {0, 8, 8, 3};
    assert_int_equal(ts_zeros(&none, es, 4, TS_F32, CPU), 0);
    assert_int_equal(cls_preprocess(none, &p, &x, err, sizeof err), BASE_E_INVAL);
    expect_contains(err, "the batch is empty");
    assert_null(x);
    ts_free(two);
    ts_free(none);
}

/* ================================================================== top-k */

static void test_topk(void **state)
{
    (void)state;
    const float s[6] = {0.1f, 0.5f, 0.5f, NAN, 0.9f, 0.1f};
    size_t idx[6];
    cls_topk(s, 6, 6, idx);
    const size_t all[6] = {4, 1, 2, 0, 5, 3}; /* ties keep class order; NaN last */
    assert_memory_equal(idx, all, sizeof all);
    cls_topk(s, 6, 2, idx);
    assert_int_equal(idx[0], 4);
    assert_int_equal(idx[1], 1);
    cls_topk(s, 6, 3, idx);
    assert_int_equal(idx[2], 2);
    const float t[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    cls_topk(t, 4, 2, idx);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
}

/* ================================================================== labels */

static char *write_in(const char *dir, const char *name, const char *text)
{
    char *p = nt_join(dir, name);
    tu_write_file(p, text, strlen(text));
    return p;
}

static void expect_labels(const char *dir, const char *name, const char *text, size_t n, const char *const *want)
{
    char *p = write_in(dir, name, text), err[512] = "";
    cls_labels_t l;
    if (cls_labels_load(p, &l, err, sizeof err))
        fail_msg("%s: %s", name, err);
    assert_int_equal(l.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l.items[i], want[i]);
    assert_string_equal(l.path, p);
    cls_labels_free(&l);
    free(p);
}

static void expect_labels_error(const char *dir, const char *name, const char *text, const char *part)
{
    char *p = write_in(dir, name, text), err[512] = "";
    cls_labels_t l;
    assert_int_equal(cls_labels_load(p, &l, err, sizeof err), BASE_E_MODEL_FORMAT);
    expect_contains(err, part);
    assert_null(l.items);
    free(p);
}

static void test_labels_files(void **state)
{
    (void)state;
    char *dir = nt_join(tmp, "labels");
    assert_int_equal(mkdir(dir, 0755), 0);
    static const char *const ab[] = {"tabby, tabby cat", "crane", "crane"};
    expect_labels(dir, "a.txt", "\xEF\xBB\xBF  tabby, tabby cat \r\ncrane\r\ncrane\r\n\r\n \n", 3, ab);
    expect_labels(dir, "b.json", "[\"tabby, tabby cat\", \"crane\", \"crane\"]", 3, ab);
    expect_labels(dir, "c.json", "{\"1\": [\"n2\", \"crane\"], \"0\": [\"n1\", \"tabby, tabby cat\"], \"2\": \"crane\"}", 3,
                  ab);
    expect_labels_error(dir, "d.txt", "cat\ndog\n\nbird\n", "labels file d.txt: line 3 is empty");
    expect_labels_error(dir, "e.txt", "\n \n", "labels file e.txt is empty");
    expect_labels_error(dir, "f.json", "[\"cat\", 3]", "labels file f.json: item 1 of the list is not a non-empty string");
    expect_labels_error(dir, "g.json", "{\"0\": \"cat\", \"2\": \"dog\"}", "labels file g.json: the object has no key \"1\"");
    expect_labels_error(dir, "h.json", "[\"cat\",", "labels file h.json is not valid JSON: line 1");
    expect_labels_error(dir, "i.json", "[]", "must hold a non-empty JSON list");
    char *nul = nt_join(dir, "j.txt"), err0[256] = "";
    tu_write_file(nul, "a\0b", 3);
    cls_labels_t l0;
    assert_int_equal(cls_labels_load(nul, &l0, err0, sizeof err0), BASE_E_MODEL_FORMAT);
    expect_contains(err0, "labels file j.txt is not text");
    free(nul);

    /* Beside a model: the first existing candidate, its count checked. */
    char *model = nt_join(dir, "m.safetensors"), err[512] = "";
    cls_labels_t l;
    assert_int_equal(cls_labels_for_model(model, 2, &l, err, sizeof err), BASE_E_NOENT);
    expect_contains(err, "no labels file for m.safetensors: put the class names, one per line, in m.labels.txt");
    free(write_in(dir, "m.json", "[\"x\", \"y\"]"));
    assert_int_equal(cls_labels_for_model(model, 2, &l, err, sizeof err), 0);
    assert_string_equal(l.items[1], "y");
    cls_labels_free(&l);
    free(write_in(dir, "m.txt", "one\ntwo\n"));
    assert_int_equal(cls_labels_for_model(model, 2, &l, err, sizeof err), 0);
    assert_string_equal(l.items[1], "two");
    cls_labels_free(&l);
    free(write_in(dir, "m.labels.txt", "uno\ndos\ntres\n"));
    assert_int_equal(cls_labels_for_model(model, 2, &l, err, sizeof err), BASE_E_MODEL_FORMAT);
    expect_contains(err, "labels file m.labels.txt has 3 labels but the classifier has 2 classes");
    assert_int_equal(cls_labels_for_model(model, 3, &l, err, sizeof err), 0);
    assert_string_equal(l.items[2], "tres");
    cls_labels_free(&l);
    free(model);
    free(dir);
}

/* ================================================================== classifier files */

static char *models_dir, *cls_dir, *out_dir, *temp_dir, *demo_path;

static void expect_probs(const float *p, int64_t batch)
{
    assert_int_equal(batch, 2);
    for (size_t i = 0; i < 20; i++)
        near(p[i], demo_probs[i], 2e-5, "demo classifier probabilities", i);
}

static int count_chunks(void *ctx, int64_t done, int64_t total)
{
    int *calls = ctx;
    (*calls)++;
    assert_int_equal(total, 2);
    assert_int_equal(done, *calls);
    return 0;
}

static int stop_now(void *ctx, int64_t done, int64_t total)
{
    (void)ctx;
    (void)done;
    (void)total;
    return BASE_E_INTERRUPTED;
}

/* Same tensors under "module." (a DataParallel checkpoint). */
static void write_prefixed(const char *from, const char *to)
{
    st_file_t *f = NULL;
    char err[256] = "";
    assert_int_equal(st_open(&f, from, err, sizeof err), 0);
    size_t n = st_count(f);
    st_write_entry_t *e = calloc(n, sizeof *e);
    char **names = calloc(n, sizeof *names);
    assert_non_null(e);
    assert_non_null(names);
    for (size_t i = 0; i < n; i++) {
        const st_tensor_t *t = st_at(f, i);
        names[i] = nt_join("module", t->name);
        names[i][6] = '.';
        e[i] = (st_write_entry_t){.name = names[i], .dtype = t->dtype, .ndim = t->ndim, .shape = {0}, .data = t->data};
        memcpy(e[i].shape, t->shape, sizeof t->shape);
    }
    assert_int_equal(st_write(to, e, n, NULL, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(e);
    st_close(f);
}

static void test_model_files(void **state)
{
    (void)state;
    /* The demo writer: 122 entries plus a CIFAR-10 labels file. */
    st_file_t *f = NULL;
    char err[512] = "";
    assert_int_equal(st_open(&f, demo_path, err, sizeof err), 0);
    assert_int_equal(st_count(f), 122);
    assert_int_equal(st_find(f, "layer4.1.bn2.num_batches_tracked")->dtype, ST_I64);
    st_close(f);
    char *lp = nt_join(cls_dir, "demo.labels.txt"), *text = NULL;
    size_t len = 0;
    assert_int_equal(base_read_file(lp, 4096, &text, &len), 0);
    assert_string_equal(text, "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n");
    free(text);

    cls_model_t *m = NULL;
    if (cls_model_load(demo_path, "demo.safetensors", &m, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(m->name, "demo.safetensors");
    assert_int_equal(m->labels.n, 10);
    assert_string_equal(m->labels.items[4], "deer");
    cls_resnet_config_t c;
    cls_demo_config(&c);
    count_t n = {0, 0, 0};
    assert_int_equal(cls_resnet_keys(&c, count_key, &n), 0);
    assert_int_equal(m->bytes, (size_t)n.numel * 4); /* F32 in memory, the I64 counters too */
    assert_int_equal(m->pre.resize, 256);
    assert_int_equal(m->pre.crop, 224);

    /* A batch of two, whole and one image per chunk (the callback sees each chunk). */
    ts_tensor_t *img = test_image(2, 300, 400, 3);
    float *p = NULL;
    int64_t batch = 0;
    assert_int_equal(cls_model_classify(m, img, 0, NULL, NULL, &p, &batch, err, sizeof err), 0);
    expect_probs(p, batch);
    free(p);
    int calls = 0;
    assert_int_equal(cls_model_classify(m, img, 1, count_chunks, &calls, &p, &batch, err, sizeof err), 0);
    assert_int_equal(calls, 2);
    expect_probs(p, batch);
    free(p);
    assert_int_equal(cls_model_classify(m, img, 1, stop_now, NULL, &p, &batch, err, sizeof err), BASE_E_INTERRUPTED);
    assert_null(p);

    /* "module." prefixed names load to the same classifier. */
    char *mod = nt_join(cls_dir, "dp.safetensors");
    write_prefixed(demo_path, mod);
    free(write_in(cls_dir, "dp.json", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\"]"));
    cls_model_t *m2 = NULL;
    if (cls_model_load(mod, NULL, &m2, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(m2->name, "dp.safetensors");
    assert_string_equal(m2->labels.items[9], "j");
    assert_int_equal(cls_model_classify(m2, img, 0, NULL, NULL, &p, &batch, err, sizeof err), 0);
    expect_probs(p, batch);
    free(p);
    cls_model_unref(m2);
    free(mod);
    ts_free(img);
    cls_model_unref(m);

    /* Files that are not classifiers. */
    char *junk = write_in(cls_dir, "junk.safetensors", "not a safetensors file at all");
    assert_true(cls_model_load(junk, NULL, &m, err, sizeof err) < 0);
    expect_contains(err, "classifier junk.safetensors: ");
    assert_null(m);
    char *sdp = nt_join(cls_dir, "sd.safetensors");
    float z[4] = {0};
    st_write_entry_t e = {.name = "model.diffusion_model.out.2.bias", .dtype = ST_F32, .ndim = 1, .shape = {4}, .data = z};
    assert_int_equal(st_write(sdp, &e, 1, NULL, err, sizeof err), 0);
    assert_int_equal(cls_model_load(sdp, NULL, &m, err, sizeof err), BASE_E_MODEL_LAYOUT);
    expect_contains(err, "classifier sd.safetensors: not a torchvision ResNet");
    free(junk);
    free(sdp);
    free(lp);
}

/* Preprocessing settings from the file's metadata. */
static void test_meta(void **state)
{
    (void)state;
    char *path = nt_join(tmp, "meta.safetensors"), err[512] = "";
    float z = 0;
    st_write_entry_t e = {.name = "x", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = &z};
    static const char *const good[] = {"classifier.resize_size", "232", "classifier.crop_size", "200",
                                       "classifier.mean", "0.5, 0.25,0", "classifier.std", "1,2,4", NULL};
    assert_int_equal(st_write(path, &e, 1, good, err, sizeof err), 0);
    st_file_t *f = NULL;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    cls_pre_t p;
    cls_pre_default(&p);
    assert_int_equal(cls_pre_from_meta(&p, f, err, sizeof err), 0);
    assert_int_equal(p.resize, 232);
    assert_int_equal(p.crop, 200);
    assert_true(p.mean[0] == 0.5f && p.mean[1] == 0.25f && p.mean[2] == 0.0f);
    assert_true(p.std[0] == 1.0f && p.std[1] == 2.0f && p.std[2] == 4.0f);
    st_close(f);
    static const char *const bad[][3] = {
        {"classifier.crop_size", "big", "metadata \"classifier.crop_size\" is \"big\""},
        {"classifier.std", "1,0,1", "expected three positive numbers"},
        {"classifier.mean", "1,2", "expected three numbers \"r,g,b\""},
    };
    for (size_t i = 0; i < 3; i++) {
        const char *kv[] = {bad[i][0], bad[i][1], NULL};
        assert_int_equal(st_write(path, &e, 1, kv, err, sizeof err), 0);
        assert_int_equal(st_open(&f, path, err, sizeof err), 0);
        assert_int_equal(cls_pre_from_meta(&p, f, err, sizeof err), BASE_E_MODEL_FORMAT);
        expect_contains(err, bad[i][2]);
        st_close(f);
    }
    free(path);
}

/* ================================================================== nodes */

static node_env_t env;

typedef nt_run_t run_t;

static run_t *run_new(const node_def_t *def)
{
    return nt_run_new(def, &env, "7");
}

static node_value_t *load_classifier(const char *name)
{
    run_t *r = run_new(&node_def_ImageClassifierLoader);
    nt_set_in(r, "classifier_name", node_value_string(name));
    if (nt_exec(r))
        fail_msg("loader: %s", r->ctx.err);
    node_value_t *v = node_value_ref(r->out[0]);
    assert_int_equal(v->kind, NODE_V_OBJECT);
    assert_string_equal(v->u.obj.tag, "CLASSIFIER");
    nt_run_free(r);
    return v;
}

static void expect_ui_text(const json_t *ui, size_t i, const char *want)
{
    const json_t *t = json_object_get(ui, "text");
    assert_true(i < json_len(t));
    assert_string_equal(json_str(json_at(t, i)), want);
}

static void test_node_loader(void **state)
{
    (void)state;
    node_strlist_t opts = {0};
    assert_int_equal(node_input_options(&node_def_ImageClassifierLoader.inputs[0], &env, &opts), 0);
    bool found = false;
    for (size_t i = 0; i < opts.n; i++)
        found |= strcmp(opts.items[i], "demo.safetensors") == 0;
    assert_true(found);
    node_strlist_free(&opts);
    node_value_unref(load_classifier("demo.safetensors"));

    run_t *r = run_new(&node_def_ImageClassifierLoader);
    nt_set_in(r, "classifier_name", node_value_string("nope.safetensors"));
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    assert_string_equal(r->ctx.err, "classifier file not found: models/classifiers/nope.safetensors");
    nt_set_in(r, "classifier_name", node_value_string("../classifiers/demo.safetensors"));
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    expect_contains(r->ctx.err, "invalid classifier name");
    /* The same weights without a labels file. */
    char *bare = nt_join(cls_dir, "bare.safetensors");
    cls_resnet_config_t c;
    cls_demo_config(&c);
    char err[256];
    assert_int_equal(cls_demo_write(bare, &c, 1, err, sizeof err), 0);
    char *bl = nt_join(cls_dir, "bare.labels.txt");
    assert_int_equal(remove(bl), 0);
    nt_set_in(r, "classifier_name", node_value_string("bare.safetensors"));
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    expect_contains(r->ctx.err, "no labels file for bare.safetensors");
    nt_run_free(r);

    /* The fingerprint follows the labels file. */
    const json_t *vals[1];
    json_t *name = json_new_string("bare.safetensors");
    vals[0] = name;
    node_args_t args = {&node_def_ImageClassifierLoader, vals};
    base_buf_t a = BASE_BUF_INIT, b = BASE_BUF_INIT;
    assert_int_equal(node_def_ImageClassifierLoader.is_changed(&env, &args, &a), 0);
    tu_write_file(bl, "x\n", 2);
    assert_int_equal(node_def_ImageClassifierLoader.is_changed(&env, &args, &b), 0);
    assert_true(a.len > 0 && b.len > 0);
    assert_string_not_equal(a.data, b.data);
    base_buf_free(&a);
    base_buf_free(&b);
    json_free(name);
    free(bare);
    free(bl);
}

static run_t *classify(node_value_t *cls, ts_tensor_t *img, int64_t k)
{
    run_t *r = run_new(&node_def_ImageClassify);
    nt_set_in(r, "classifier", node_value_ref(cls));
    nt_set_in(r, "image", node_value_tensor(img));
    nt_set_in(r, "top_k", node_value_i64(k));
    return r;
}

static void test_node_classify(void **state)
{
    (void)state;
    node_value_t *cls = load_classifier("demo.safetensors");
    run_t *r = classify(cls, test_image(2, 300, 400, 3), 3);
    if (nt_exec(r))
        fail_msg("%s", r->ctx.err);
    const char *img1 = "image 1\ndeer: 0.9947\ndog: 0.0053\nautomobile: 0.0000";
    const char *img2 = "image 2\ndeer: 0.9936\ndog: 0.0064\nautomobile: 0.0000";
    char both[256];
    snprintf(both, sizeof both, "%s\n\n%s", img1, img2);
    assert_string_equal(r->out[0]->u.str.s, both);
    assert_string_equal(r->out[1]->u.str.s, "deer");
    near(r->out[2]->u.f, demo_probs[4], 2e-5, "top_score", 0);
    assert_string_equal(r->out[3]->u.obj.tag, "CLASSIFICATION");
    assert_int_equal(json_len(json_object_get(r->ctx.ui, "text")), 2);
    expect_ui_text(r->ctx.ui, 0, img1);
    expect_ui_text(r->ctx.ui, 1, img2);
    assert_int_equal(r->last_value, 2);
    assert_int_equal(r->last_max, 2);
    /* Interrupted at the end of the first chunk. */
    atomic_store(&r->intr, true);
    assert_int_equal(nt_exec(r), BASE_E_INTERRUPTED);
    nt_run_free(r);

    /* One image: no header; top_k above the class count lists every class. */
    r = classify(cls, test_image(1, 300, 400, 3), 2);
    assert_int_equal(nt_exec(r), 0);
    assert_string_equal(r->out[0]->u.str.s, "deer: 0.9947\ndog: 0.0053");
    nt_set_in(r, "top_k", node_value_i64(100));
    assert_int_equal(nt_exec(r), 0);
    const char *s = r->out[0]->u.str.s;
    size_t lines = 1;
    for (; *s; s++)
        lines += *s == '\n';
    assert_int_equal(lines, 10);
    nt_run_free(r);

    /* An empty batch. */
    ts_tensor_t *none = NULL;
    int64_t es[4] = {0, 8, 8, 3};
    assert_int_equal(ts_zeros(&none, es, 4, TS_F32, CPU), 0);
    r = classify(cls, none, 5);
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    assert_string_equal(r->ctx.err, "the image batch is empty: there is nothing to classify");
    nt_run_free(r);
    node_value_unref(cls);
}

static node_value_t *classification(void)
{
    node_value_t *cls = load_classifier("demo.safetensors");
    run_t *r = classify(cls, test_image(2, 300, 400, 3), 5);
    assert_int_equal(nt_exec(r), 0);
    node_value_t *v = node_value_ref(r->out[3]);
    nt_run_free(r);
    node_value_unref(cls);
    return v;
}

/* Runs ClassifierThreshold; returns passed and the score, or fails the test. */
static bool threshold(node_value_t *res, double thr, const char *label, const char *require, double *score,
                      const char *ui)
{
    run_t *r = run_new(&node_def_ClassifierThreshold);
    nt_set_in(r, "classification", node_value_ref(res));
    nt_set_in(r, "threshold", node_value_float(thr));
    nt_set_in(r, "label", node_value_string(label));
    nt_set_in(r, "require", node_value_string(require));
    if (nt_exec(r))
        fail_msg("%s", r->ctx.err);
    assert_int_equal(r->out[0]->kind, NODE_V_BOOL);
    bool passed = r->out[0]->u.b;
    *score = r->out[1]->u.f;
    if (ui)
        expect_ui_text(r->ctx.ui, 0, ui);
    nt_run_free(r);
    return passed;
}

/* A loaded classifier counts in the model memory budget: /free unloads it, and the next
 * ImageClassify reads it from its file again with the same result. */
static void test_node_memory(void **state)
{
    (void)state;
    node_models_release();
    size_t files0 = 0, bytes0 = 0, files = 0, bytes = 0;
    node_models_stats(&files0, &bytes0);
    node_value_t *cls = load_classifier("demo.safetensors");
    node_models_stats(&files, &bytes);
    assert_int_equal(files, files0 + 1);
    assert_true(bytes > bytes0);
    run_t *r = classify(cls, test_image(1, 300, 400, 3), 2);
    assert_int_equal(nt_exec(r), 0);
    char first[256];
    snprintf(first, sizeof first, "%s", r->out[0]->u.str.s);
    node_models_release();
    node_models_stats(&files, &bytes);
    assert_int_equal(files, files0);
    assert_int_equal(nt_exec(r), 0);
    assert_string_equal(r->out[0]->u.str.s, first);
    node_models_stats(&files, NULL);
    assert_int_equal(files, files0 + 1);
    nt_run_free(r);
    node_value_unref(cls);
}

static void test_node_threshold(void **state)
{
    (void)state;
    node_value_t *res = classification();
    double s = 0;
    assert_true(threshold(res, 0.5, "", "all images", &s, "passed: deer 0.9936 >= 0.5000 (weakest image)"));
    near(s, demo_probs[14], 2e-5, "weakest best score", 0);
    assert_false(threshold(res, 0.994, "", "all images", &s, "failed: deer 0.9936 < 0.9940 (weakest image)"));
    assert_true(threshold(res, 0.994, "", "any image", &s, "passed: deer 0.9947 >= 0.9940 (best image)"));
    near(s, demo_probs[4], 2e-5, "best score", 0);
    assert_false(threshold(res, 0.006, "DOG", "all images", &s, NULL));
    near(s, demo_probs[5], 2e-5, "weakest dog score", 0);
    assert_true(threshold(res, 0.006, " dog ", "any image", &s, "passed: dog 0.0064 >= 0.0060 (best image)"));
    near(s, demo_probs[15], 2e-5, "best dog score", 0);

    run_t *r = run_new(&node_def_ClassifierThreshold);
    nt_set_in(r, "classification", node_value_ref(res));
    nt_set_in(r, "threshold", node_value_float(0.5));
    nt_set_in(r, "label", node_value_string("unicorn"));
    nt_set_in(r, "require", node_value_string("all images"));
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    assert_string_equal(r->ctx.err, "ClassifierThreshold: 'unicorn' is not one of the classifier's 10 labels "
                                    "(airplane, automobile, ...); leave label empty to use each image's best label");
    nt_run_free(r);
    node_value_unref(res);
}

static run_t *gate(ts_tensor_t *img, bool passed, const char *open_when, const char *when_closed)
{
    run_t *r = run_new(&node_def_ImageGate);
    nt_set_in(r, "image", node_value_tensor(ts_ref(img)));
    nt_set_in(r, "passed", node_value_bool(passed));
    nt_set_in(r, "open_when", node_value_string(open_when));
    nt_set_in(r, "when_closed", node_value_string(when_closed));
    return r;
}

static size_t files_in(const char *dir)
{
    node_strlist_t l = {0};
    assert_int_equal(node_list_files(dir, NULL, true, &l), 0);
    size_t n = l.n;
    node_strlist_free(&l);
    return n;
}

static void test_node_gate(void **state)
{
    (void)state;
    ts_tensor_t *img = test_image(1, 6, 5, 3);
    run_t *r = gate(img, true, "passed", "empty batch");
    assert_int_equal(nt_exec(r), 0);
    assert_ptr_equal(r->out[0]->u.t, img); /* the same image, not a copy */
    nt_run_free(r);
    r = gate(img, false, "failed", "empty batch");
    assert_int_equal(nt_exec(r), 0);
    assert_ptr_equal(r->out[0]->u.t, img);
    nt_run_free(r);

    r = gate(img, true, "failed", "empty batch");
    assert_int_equal(nt_exec(r), 0);
    int64_t empty[4] = {0, 6, 5, 3};
    expect_shape(r->out[0]->u.t, empty, 4);
    /* SaveImage and PreviewImage accept the empty batch and save nothing. */
    const node_def_t *savers[2] = {&node_def_SaveImage, &node_def_PreviewImage};
    for (int i = 0; i < 2; i++) {
        run_t *s = run_new(savers[i]);
        nt_set_in(s, "images", node_value_ref(r->out[0]));
        if (i == 0)
            nt_set_in(s, "filename_prefix", node_value_string("gated"));
        if (nt_exec(s))
            fail_msg("%s: %s", savers[i]->name, s->ctx.err);
        char *ui = json_dump(s->ctx.ui, JSON_COMPACT);
        assert_string_equal(ui, "{\"images\":[]}");
        free(ui);
        nt_run_free(s);
    }
    assert_int_equal(files_in(out_dir) + files_in(temp_dir), 0);
    nt_run_free(r);

    r = gate(img, false, "passed", "stop with error");
    assert_int_equal(nt_exec(r), BASE_E_NODE_FAILED);
    assert_string_equal(r->ctx.err, "ImageGate: the check failed, so this gate (open when passed) stopped the "
                                    "workflow here");
    nt_run_free(r);
    ts_free(img);
}

/* What /object_info shows the editor. */
static void test_node_schemas(void **state)
{
    (void)state;
    json_t *j = node_def_to_json(&node_def_ImageGate, &env);
    char *s = json_dump(json_object_get(j, "input"), JSON_COMPACT);
    assert_string_equal(s, "{\"required\":{\"image\":[\"IMAGE\"],\"passed\":[\"BOOLEAN\",{\"default\":true,"
                           "\"forceInput\":true,\"tooltip\":\"A pass/fail result, e.g. from ClassifierThreshold.\"}],"
                           "\"open_when\":[[\"passed\",\"failed\"],{\"default\":\"passed\",\"tooltip\":\"Let the image "
                           "through when the check passed, or when it failed.\"}],\"when_closed\":[[\"empty batch\","
                           "\"stop with error\"],{\"default\":\"empty batch\",\"tooltip\":\"What a closed gate outputs: an "
                           "empty batch (SaveImage and PreviewImage then save nothing and the workflow goes on) or an "
                           "error that stops the workflow.\"}]}}");
    free(s);
    json_free(j);
    j = node_def_to_json(&node_def_ImageClassify, &env);
    s = json_dump(json_object_get(j, "output"), JSON_COMPACT);
    assert_string_equal(s, "[\"STRING\",\"STRING\",\"FLOAT\",\"CLASSIFICATION\"]");
    free(s);
    s = json_dump(json_object_get(j, "output_name"), JSON_COMPACT);
    assert_string_equal(s, "[\"labels\",\"top_label\",\"top_score\",\"classification\"]");
    free(s);
    assert_true(json_object_get(j, "output_node")->u.b);
    assert_string_equal(json_str(json_object_get(j, "category")), "image/classification");
    json_free(j);
    j = node_def_to_json(&node_def_ImageClassifierLoader, &env);
    const json_t *names = json_at(json_object_get(json_object_get(json_object_get(j, "input"), "required"),
                                                  "classifier_name"), 0);
    bool listed = false;
    for (size_t i = 0; i < json_len(names); i++)
        listed |= strcmp(json_str(json_at(names, i)), "demo.safetensors") == 0;
    assert_true(listed);
    json_free(j);
}

/* ================================================================== main */

static int setup(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    tmp = tu_fresh_dir("classify");
    models_dir = nt_join(tmp, "models");
    cls_dir = nt_join(models_dir, "classifiers");
    out_dir = nt_join(tmp, "output");
    temp_dir = nt_join(tmp, "temp");
    assert_int_equal(base_mkdir_p(cls_dir), 0);
    assert_int_equal(base_mkdir_p(out_dir), 0);
    demo_path = nt_join(cls_dir, "demo.safetensors");
    char err[256] = "";
    if (cls_demo_write(demo_path, NULL, 1, err, sizeof err))
        fail_msg("%s", err);
    env = (node_env_t){.base_dir = tmp, .input_dir = tmp, .output_dir = out_dir, .temp_dir = temp_dir,
                       .models_dir = models_dir};
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(demo_path);
    free(temp_dir);
    free(out_dir);
    free(cls_dir);
    free(models_dir);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_std_layouts),
        cmocka_unit_test(test_forward_basic),
        cmocka_unit_test(test_forward_bottleneck),
        cmocka_unit_test(test_forward_resnet18),
        cmocka_unit_test(test_wrong_layouts),
        cmocka_unit_test(test_resize_antialias),
        cmocka_unit_test(test_preprocess_geometry),
        cmocka_unit_test(test_preprocess),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_labels_files),
        cmocka_unit_test(test_model_files),
        cmocka_unit_test(test_meta),
        cmocka_unit_test(test_node_loader),
        cmocka_unit_test(test_node_classify),
        cmocka_unit_test(test_node_memory),
        cmocka_unit_test(test_node_threshold),
        cmocka_unit_test(test_node_gate),
        cmocka_unit_test(test_node_schemas),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
