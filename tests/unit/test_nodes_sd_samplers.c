/* The samplers (nodes/sd/samplers*.c) on the "Gaussian toy" of sd15-reference.md §6: data
 * ~ N(0, 1) has the exact denoiser D(x, σ) = x/(1+σ²), and the probability-flow ODE carries
 * x = √(1+σ_0²) at σ_0 to exactly 1 at σ = 0. Expected values come from §6 and from the
 * independent Python implementation in tests/reference/samplers.py (float64, noise drawn
 * from the same torch generator stream as ts_randn_gen); the C samplers run in float32
 * tensors; they agree with the reference to < 1e-6 and are asserted to 1e-5 (1e-4 for the
 * 6-decimal §6 values). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "sd/samplers_internal.h"
#include "sd/sd.h"

static const ts_device_t CPU = {TS_CPU, 0};
static sd_sched_t S;

static int setup(void **state)
{
    (void)state;
    sd_sched_init(&S);
    return ts_init(0);
}

/* ------------------------------------------------------------------ the toy model */

typedef struct {
    int calls;
    int fail_at; /* 1-based evaluation that fails; 0 = never */
    int fail_rc;
    bool null_out;      /* succeed without a prediction */
    bool zero;          /* D = 0 instead of the Gaussian denoiser */
    int bad_shape_from; /* from this evaluation on, predictions of shape [3] */
    char *err;
    size_t errsz;
} toy_t;

static int toy_denoise(void *ctx, const ts_tensor_t *x, double sigma, ts_tensor_t **out)
{
    toy_t *t = ctx;
    t->calls++;
    if (t->fail_at && t->calls == t->fail_at) {
        snprintf(t->err, t->errsz, "toy model failed on purpose");
        return t->fail_rc;
    }
    if (t->null_out)
        return 0;
    if (t->bad_shape_from && t->calls >= t->bad_shape_from) {
        const int64_t shape[1] = {3};
        return ts_full(out, shape, 1, 0.5, TS_F32, (ts_device_t){TS_CPU, 0});
    }
    return ts_affine(out, x, t->zero ? 0.0 : 1.0 / (1.0 + sigma * sigma), 0.0);
}

typedef struct {
    int calls, n, stop_at; /* stop_at < 0: never */
    bool out_of_order;
    int model_calls_at_stop;
    toy_t *toy;
    float last_x, last_den;
} steps_t;

static int on_step(void *ctx, int i, int n, const ts_tensor_t *x, const ts_tensor_t *den)
{
    steps_t *s = ctx;
    if (i != s->calls || !x || !den)
        s->out_of_order = true;
    s->calls++;
    s->n = n;
    if (ts_numel(x) == 1) {
        ts_to_host(x, TS_F32, &s->last_x, sizeof s->last_x);
        ts_to_host(den, TS_F32, &s->last_den, sizeof s->last_den);
    }
    if (s->stop_at >= 0 && i == s->stop_at) {
        s->model_calls_at_stop = s->toy ? s->toy->calls : 0;
        return BASE_E_INTERRUPTED;
    }
    return 0;
}

static ts_tensor_t *scalar(double v)
{
    float f = (float)v;
    const int64_t shape[1] = {1};
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_from_host(&t, &f, TS_F32, shape, 1, CPU), 0);
    return t;
}

static double value(const ts_tensor_t *t)
{
    float f = 0;
    assert_int_equal(ts_to_host(t, TS_F32, &f, sizeof f), 0);
    return f;
}

typedef struct {
    int rc;
    double x;
    toy_t toy;
    steps_t steps;
    char err[256];
} result_t;

/* Runs a sampler on the toy from x = √(1+σ_0²) (the max_denoise start) over sigmas;
 * seed 0 means no noise generator. */
static void run_on(const char *sampler, const double *sig, int count, uint64_t seed, result_t *r)
{
    r->toy.err = r->err;
    r->toy.errsz = sizeof r->err;
    r->steps.toy = &r->toy;
    ts_gen_t *gen = NULL;
    if (seed)
        assert_int_equal(ts_gen_new(&gen, seed), 0);
    sd_sampler_args_t a = {
        .denoise = toy_denoise,
        .denoise_ctx = &r->toy,
        .step = on_step,
        .step_ctx = &r->steps,
        .noise_gen = gen,
        .sched = &S,
        .err = r->err,
        .errsz = sizeof r->err,
    };
    ts_tensor_t *x = scalar(count > 0 ? sqrt(1.0 + sig[0] * sig[0]) : 1.0), *out = NULL;
    r->rc = sd_sample(sampler, &a, x, sig, count, &out);
    r->x = out ? value(out) : NAN;
    if (r->rc)
        assert_null(out);
    ts_free(out);
    ts_free(x);
    ts_gen_free(gen);
}

static double toy(const char *sampler, const char *scheduler, int steps, uint64_t seed)
{
    double sig[SD_SIGMAS_ROOM(20)];
    int count = 0;
    assert_true(steps <= 20);
    assert_int_equal(sd_sigmas_for(&S, scheduler, sampler, steps, 1.0, sig, &count), 0);
    result_t r = {.steps.stop_at = -1};
    run_on(sampler, sig, count, seed, &r);
    if (r.rc)
        fail_msg("%s on %s: %d %s", sampler, scheduler, r.rc, r.err);
    assert_int_equal(r.steps.calls, count - 1);
    return r.x;
}

static void expect(const char *what, const char *sched, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s on %s: got %.7f, want %.7f (tol %g)", what, sched, got, want, tol);
}

/* ------------------------------------------------------------------ names */

static const char *const COMFY_SAMPLERS[] = {
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
};

/* Samplers that add noise (and so need a generator). */
static bool stochastic(const char *name)
{
    static const char *const names[] = {
        "euler_ancestral",
        "dpm_2_ancestral",
        "dpmpp_2s_ancestral",
        "dpmpp_sde",
        "dpmpp_sde_gpu",
        "dpmpp_2m_sde",
        "dpmpp_2m_sde_gpu",
        "dpmpp_2m_sde_heun",
        "dpmpp_2m_sde_heun_gpu",
        "dpmpp_3m_sde",
        "dpmpp_3m_sde_gpu",
        "ddpm",
        "lcm",
        "res_multistep_ancestral",
        "er_sde",
        "seeds_2",
        "seeds_3",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (strcmp(name, names[i]) == 0)
            return true;
    }
    return false;
}

static void test_names(void **state)
{
    (void)state;
    static const char *const required[] = {
        "euler",
        "euler_ancestral",
        "heun",
        "dpm_2",
        "dpm_2_ancestral",
        "lms",
        "dpmpp_2s_ancestral",
        "dpmpp_sde",
        "dpmpp_2m",
        "dpmpp_2m_sde",
        "ddpm",
        "lcm",
        "ddim",
        "uni_pc",
        "uni_pc_bh2",
        "heunpp2",
        "ipndm",
        "ipndm_v",
        "deis",
        "dpmpp_3m_sde",
        "res_multistep",
    };
    /* a subsequence of ComfyUI's list, in its order */
    size_t j = 0, n = 0;
    for (; sd_sampler_names[n]; n++) {
        while (j < 42 && strcmp(COMFY_SAMPLERS[j], sd_sampler_names[n]) != 0)
            j++;
        if (j == 42)
            fail_msg("'%s' is not in ComfyUI's order", sd_sampler_names[n]);
        j++;
    }
    assert_true(n >= sizeof required / sizeof *required);
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        bool found = false;
        for (size_t k = 0; k < n; k++)
            found |= strcmp(sd_sampler_names[k], required[i]) == 0;
        if (!found)
            fail_msg("sampler '%s' missing", required[i]);
    }
    for (size_t k = 0; k < n; k++) /* no *_cfg_pp: they need the uncond prediction */
        assert_null(strstr(sd_sampler_names[k], "cfg_pp"));
}

/* ------------------------------------------------------------------ deterministic values */

static const struct {
    const char *name;
    double karras, normal; /* 20 steps; dpm_2 and uni_pc with the discard rule */
} DET[] = {
    /* §6 */
    {"euler", 0.922876, 0.931296},
    {"heun", 1.011428, 1.005157},
    {"dpmpp_2m", 1.011960, 1.059617},
    {"lms", 0.994042, 0.997755},
    {"dpm_2", 1.005034, 0.978275493},
    /* tests/reference/samplers.py */
    {"ddim", 0.922876309, 0.931295730},
    {"heunpp2", 0.935610017, 0.940909567},
    {"ipndm", 1.003528607, 0.993088204},
    {"ipndm_v", 1.002755673, 1.017171983},
    {"deis", 0.997990640, 0.999011884},
    {"res_multistep", 1.017952022, 1.088702138},
    {"gradient_estimation", 1.060747172, 1.038077648},
    {"uni_pc", 0.998356508, 0.980559002},
    {"uni_pc_bh2", 0.998174637, 0.978565784},
};

static void test_deterministic_values(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof DET / sizeof *DET; k++) {
        /* §6 gives 6 decimals and asks for ~1e-4; against the 9-digit reference values the
         * float32 samplers agree to < 1e-6 (measured), asserted at 1e-5 */
        double tol = k < 5 ? 1e-4 : 1e-5;
        expect(DET[k].name, "karras", toy(DET[k].name, "karras", 20, 0), DET[k].karras, tol);
        expect(DET[k].name, "normal", toy(DET[k].name, "normal", 20, 0), DET[k].normal, tol);
    }
}

/* Short schedules run UniPC's warm-up and lower-order-final paths (and a single step, where
 * ComfyUI returns its input and weft takes one first-order step). */
static void test_uni_pc_short(void **state)
{
    (void)state;
    static const double want[5][2] = {
        {0.069262573, 0.069262573}, {0.511643422, 0.511378379}, {0.844195569, 0.702816626},
        {1.123259940, 0.904725411}, {1.237360899, 1.071540184},
    };
    for (int n = 1; n <= 5; n++) {
        expect("uni_pc", "karras short", toy("uni_pc", "karras", n, 0), want[n - 1][0], 1e-5);
        expect("uni_pc_bh2", "karras short", toy("uni_pc_bh2", "karras", n, 0), want[n - 1][1], 1e-5);
    }
}

/* Every sampler runs; the deterministic ones need no generator and end near the exact 1.0.
 * Tolerance 0.08: the largest error on karras(20) is the first-order Euler/DDIM one (0.077;
 * everything of higher order is within 0.061, gradient estimation). */
static void test_all_samplers_run(void **state)
{
    (void)state;
    for (size_t k = 0; sd_sampler_names[k]; k++) {
        const char *name = sd_sampler_names[k];
        bool sto = stochastic(name);
        double x = toy(name, "karras", 20, sto ? 1234 : 0);
        if (!isfinite(x))
            fail_msg("%s: not finite", name);
        if (!sto && fabs(x - 1.0) > 0.08)
            fail_msg("%s ends at %.6f, more than 0.08 from 1", name, x);
        if (sto && fabs(x) > 6.0)
            fail_msg("%s ends at %.6f, beyond any plausible N(0,1) draw", name, x);
    }
}

/* ------------------------------------------------------------------ stochastic samplers */

static const struct {
    const char *name;
    double seed42, seed7; /* karras(20) without the discard rule */
} STO[] = {
    {"euler_ancestral", 0.922775800, 0.607075439},
    {"dpm_2_ancestral", 1.134075771, 0.668650780},
    {"dpmpp_2s_ancestral", 1.068714994, 0.649745843},
    {"dpmpp_sde", 0.774666263, 0.990632369},
    {"dpmpp_sde_gpu", 0.774666263, 0.990632369},
    {"dpmpp_2m_sde", 1.088548458, 0.793552618},
    {"dpmpp_2m_sde_gpu", 1.088548458, 0.793552618},
    {"dpmpp_2m_sde_heun", 1.112776063, 0.835549390},
    {"dpmpp_2m_sde_heun_gpu", 1.112776063, 0.835549390},
    {"dpmpp_3m_sde", 1.114720423, 0.876582645},
    {"dpmpp_3m_sde_gpu", 1.114720423, 0.876582645},
    {"ddpm", 0.922775800, 0.607075439}, /* DDPM's posterior step is the ancestral Euler step */
    {"lcm", 0.478754765, 0.639915931},
    {"res_multistep_ancestral", 1.112776063, 0.835549390},
    {"er_sde", 1.223176451, 1.104583052},
    {"seeds_2", 1.249020695, 3.144229170},
    {"seeds_3", 0.825294510, 1.262434765},
};

static void test_stochastic_values(void **state)
{
    (void)state;
    double sig[21];
    int count = 0;
    assert_int_equal(sd_scheduler(&S, "karras", 20, sig, &count), 0);
    for (size_t k = 0; k < sizeof STO / sizeof *STO; k++) {
        result_t a = {.steps.stop_at = -1}, b = {.steps.stop_at = -1}, c = {.steps.stop_at = -1};
        run_on(STO[k].name, sig, count, 42, &a);
        run_on(STO[k].name, sig, count, 42, &b);
        run_on(STO[k].name, sig, count, 7, &c);
        assert_int_equal(a.rc, 0);
        assert_int_equal(c.rc, 0);
        expect(STO[k].name, "seed 42", a.x, STO[k].seed42, 1e-5);
        expect(STO[k].name, "seed 7", c.x, STO[k].seed7, 1e-5);
        assert_true(a.x == b.x); /* same seed, same result, bit for bit */
        assert_true(fabs(a.x - c.x) > 1e-3);
        assert_true(stochastic(STO[k].name));
    }
}

/* The stochastic samplers must keep the toy's data distribution N(0, 1): 4096 independent
 * chains from x_T = √(1+σ_0²)·z. With 4096 samples the standard error of the std is 0.011
 * and of the mean 0.016; discretisation on karras(20) moves the std to 0.86 (first-order
 * ancestral Euler / DDPM) .. 1.06 (Python reference, 20000 chains), hence [0.80, 1.12] and
 * |mean| < 0.07. lcm is excluded: re-noising D is not a sampler of this data. */
static void test_stochastic_distribution(void **state)
{
    (void)state;
    enum { N = 4096 };
    double sig[21];
    int count = 0;
    assert_int_equal(sd_scheduler(&S, "karras", 20, sig, &count), 0);
    const int64_t shape[1] = {N};
    static float buf[N];
    for (size_t k = 0; k < sizeof STO / sizeof *STO; k++) {
        if (strcmp(STO[k].name, "lcm") == 0)
            continue;
        ts_gen_t *g0 = NULL, *g = NULL;
        ts_tensor_t *z = NULL, *x = NULL, *out = NULL;
        assert_int_equal(ts_gen_new(&g0, 1), 0);
        assert_int_equal(ts_gen_new(&g, 2), 0);
        assert_int_equal(ts_randn_gen(&z, shape, 1, g0, CPU), 0);
        assert_int_equal(ts_affine(&x, z, sqrt(1.0 + sig[0] * sig[0]), 0.0), 0);
        toy_t toy = {0};
        char err[256] = "";
        toy.err = err;
        toy.errsz = sizeof err;
        sd_sampler_args_t a = {
            .denoise = toy_denoise, .denoise_ctx = &toy, .noise_gen = g, .err = err, .errsz = sizeof err};
        assert_int_equal(sd_sample(STO[k].name, &a, x, sig, count, &out), 0);
        assert_int_equal(ts_to_host(out, TS_F32, buf, sizeof buf), 0);
        double m = 0, m2 = 0;
        for (int i = 0; i < N; i++) {
            m += buf[i];
            m2 += (double)buf[i] * buf[i];
        }
        m /= N;
        double sd = sqrt(m2 / N - m * m);
        if (!(fabs(m) < 0.07 && sd > 0.80 && sd < 1.12))
            fail_msg("%s: mean %.4f std %.4f", STO[k].name, m, sd);
        ts_free(out);
        ts_free(x);
        ts_free(z);
        ts_gen_free(g);
        ts_gen_free(g0);
    }
}

/* §6: the first euler_ancestral step of karras(20) goes down to σ_down = 9.407296 and adds
 * σ_up = 6.999075 of noise. Measured through the public API with D = 0: from x = 0 the step
 * gives z·σ_up, from x = 1 it gives σ_down/σ_0 + z·σ_up. */
static void test_ancestral_step(void **state)
{
    (void)state;
    double k20[21];
    int count = 0;
    assert_int_equal(sd_scheduler(&S, "karras", 20, k20, &count), 0);
    double down, up;
    smp_ancestral_step(k20[0], k20[1], 1.0, &down, &up);
    assert_true(fabs(down - 9.407296) < 2e-6 && fabs(up - 6.999075) < 2e-6);
    smp_ancestral_step(k20[0], k20[1], 0.0, &down, &up);
    assert_true(down == k20[1] && up == 0.0);
    smp_ancestral_step(k20[0], 0.0, 1.0, &down, &up);
    assert_true(down == 0.0 && up == 0.0);

    ts_gen_t *g = NULL;
    ts_tensor_t *z = NULL;
    const int64_t shape[1] = {1};
    assert_int_equal(ts_gen_new(&g, 99), 0);
    assert_int_equal(ts_randn_gen(&z, shape, 1, g, CPU), 0);
    double zv = value(z);
    ts_free(z);
    ts_gen_free(g);
    double got[2];
    for (int start = 0; start < 2; start++) {
        toy_t toy = {.zero = true};
        char err[128] = "";
        toy.err = err;
        toy.errsz = sizeof err;
        assert_int_equal(ts_gen_new(&g, 99), 0);
        sd_sampler_args_t a = {
            .denoise = toy_denoise, .denoise_ctx = &toy, .noise_gen = g, .err = err, .errsz = sizeof err};
        ts_tensor_t *x = scalar(start), *out = NULL;
        assert_int_equal(sd_sample("euler_ancestral", &a, x, k20, 2, &out), 0);
        got[start] = value(out);
        ts_free(out);
        ts_free(x);
        ts_gen_free(g);
    }
    expect("sigma_up", "karras(20) step 0", got[0] / zv, 6.999075, 1e-5);
    expect("sigma_down", "karras(20) step 0", (got[1] - got[0]) * k20[0], 9.407296, 1e-5);
}

/* ------------------------------------------------------------------ callback and errors */

static void test_callback_and_interrupt(void **state)
{
    (void)state;
    double sig[SD_SIGMAS_ROOM(10)];
    for (size_t k = 0; sd_sampler_names[k]; k++) {
        const char *name = sd_sampler_names[k];
        int count = 0;
        assert_int_equal(sd_sigmas_for(&S, "karras", name, 10, 1.0, sig, &count), 0);
        result_t r = {.steps.stop_at = -1};
        run_on(name, sig, count, 5, &r);
        assert_int_equal(r.rc, 0);
        if (r.steps.calls != count - 1 || r.steps.n != count - 1 || r.steps.out_of_order)
            fail_msg("%s: %d callbacks (n=%d), want %d in order", name, r.steps.calls, r.steps.n, count - 1);
        assert_true(r.steps.last_x == (float)r.x); /* the last callback saw the result */
        assert_true(isfinite(r.steps.last_den));

        for (int stop = 0; stop < 3; stop++) {
            result_t q = {.steps.stop_at = stop};
            run_on(name, sig, count, 5, &q);
            if (q.rc != BASE_E_INTERRUPTED || q.steps.calls != stop + 1)
                fail_msg("%s: stop at %d gave rc %d after %d callbacks", name, stop, q.rc, q.steps.calls);
            /* stopped within the step: no model evaluation after the callback said stop */
            assert_int_equal(q.toy.calls, q.steps.model_calls_at_stop);
            assert_true(q.err[0] != '\0');
        }
    }
}

static void test_denoiser_errors(void **state)
{
    (void)state;
    double sig[SD_SIGMAS_ROOM(10)];
    static const int fail_at[] = {1, 2, 3, 5, 8, 13};
    for (size_t k = 0; sd_sampler_names[k]; k++) {
        const char *name = sd_sampler_names[k];
        int count = 0;
        assert_int_equal(sd_sigmas_for(&S, "karras", name, 10, 1.0, sig, &count), 0);
        for (size_t f = 0; f < sizeof fail_at / sizeof *fail_at; f++) {
            result_t r = {.steps.stop_at = -1, .toy.fail_at = fail_at[f], .toy.fail_rc = BASE_E_TENSOR};
            run_on(name, sig, count, 3, &r);
            if (r.toy.calls < fail_at[f]) { /* the sampler needed fewer evaluations */
                assert_int_equal(r.rc, 0);
                continue;
            }
            if (r.rc != BASE_E_TENSOR || strcmp(r.err, "toy model failed on purpose") != 0)
                fail_msg("%s, failure at call %d: rc %d '%s'", name, fail_at[f], r.rc, r.err);
            assert_int_equal(r.toy.calls, fail_at[f]); /* nothing evaluated after it */
        }
        /* a denoiser that reports success without a prediction */
        result_t r = {.steps.stop_at = -1, .toy.null_out = true};
        run_on(name, sig, count, 3, &r);
        assert_int_equal(r.rc, BASE_E_TENSOR);
        assert_non_null(strstr(r.err, "no prediction"));
        /* an error code without a message still gets one */
        result_t m = {.steps.stop_at = -1, .toy.fail_at = 1, .toy.fail_rc = BASE_E_NOMEM};
        m.toy.errsz = 0;
        ts_gen_t *g = NULL;
        assert_int_equal(ts_gen_new(&g, 1), 0);
        m.toy.err = m.err;
        sd_sampler_args_t a = {.denoise = toy_denoise,
                               .denoise_ctx = &m.toy,
                               .noise_gen = g,
                               .err = m.err,
                               .errsz = sizeof m.err};
        ts_tensor_t *x = scalar(1.0), *out = NULL;
        assert_int_equal(sd_sample(name, &a, x, sig, count, &out), BASE_E_NOMEM);
        assert_null(out);
        assert_non_null(strstr(m.err, "model failed"));
        ts_free(x);
        ts_gen_free(g);
    }
}

/* Tensor ops that fail inside a sampler (here: a prediction that cannot broadcast against
 * the state, from the k-th evaluation on) end the run with BASE_E_TENSOR, a message naming
 * the sampler, and every intermediate freed (ASan's leak check runs at exit). */
static void test_tensor_failures(void **state)
{
    (void)state;
    double sig[SD_SIGMAS_ROOM(10)];
    int failed = 0, runs = 0;
    for (size_t k = 0; sd_sampler_names[k]; k++) {
        const char *name = sd_sampler_names[k];
        int count = 0;
        assert_int_equal(sd_sigmas_for(&S, "karras", name, 10, 1.0, sig, &count), 0);
        for (int from = 1; from <= 6; from++) {
            result_t r = {.steps.stop_at = -1, .toy.bad_shape_from = from};
            r.toy.err = r.err;
            r.toy.errsz = sizeof r.err;
            ts_gen_t *g = NULL;
            assert_int_equal(ts_gen_new(&g, 11), 0);
            const int64_t shape[1] = {2};
            ts_tensor_t *x = NULL, *out = NULL;
            assert_int_equal(ts_full(&x, shape, 1, 3.0, TS_F32, CPU), 0);
            sd_sampler_args_t a = {.denoise = toy_denoise,
                                   .denoise_ctx = &r.toy,
                                   .step = on_step,
                                   .step_ctx = &r.steps,
                                   .noise_gen = g,
                                   .err = r.err,
                                   .errsz = sizeof r.err};
            int rc = sd_sample(name, &a, x, sig, count, &out);
            runs++;
            if (rc) {
                failed++;
                assert_int_equal(rc, BASE_E_TENSOR);
                assert_null(out);
                char want[64];
                snprintf(want, sizeof want, "sampler '%s'", name);
                if (!strstr(r.err, want))
                    fail_msg("%s: message '%s'", name, r.err);
            }
            ts_free(out);
            ts_free(x);
            ts_gen_free(g);
        }
    }
    assert_true(failed > runs * 3 / 4); /* all but the few that only pass predictions on */
}

static void test_bad_arguments(void **state)
{
    (void)state;
    double k20[21];
    int count = 0;
    assert_int_equal(sd_scheduler(&S, "karras", 20, k20, &count), 0);
    result_t r = {.steps.stop_at = -1};

    run_on("nope", k20, 21, 1, &r);
    assert_int_equal(r.rc, BASE_E_INVAL);
    assert_non_null(strstr(r.err, "unknown sampler 'nope'"));
    assert_int_equal(r.toy.calls, 0);
    memset(&r, 0, sizeof r);
    r.steps.stop_at = -1;
    run_on(NULL, k20, 21, 1, &r);
    assert_int_equal(r.rc, BASE_E_INVAL);

    /* noise samplers without a generator */
    for (size_t k = 0; sd_sampler_names[k]; k++) {
        memset(&r, 0, sizeof r);
        r.steps.stop_at = -1;
        run_on(sd_sampler_names[k], k20, 21, 0, &r);
        if (stochastic(sd_sampler_names[k])) {
            assert_int_equal(r.rc, BASE_E_INVAL);
            assert_non_null(strstr(r.err, "noise generator"));
        } else {
            assert_int_equal(r.rc, 0);
        }
    }

    /* schedules no sampler can take */
    static const double zero_mid[4] = {14.6, 0.0, 0.5, 0.0};
    static const double negative[2] = {-1.0, 0.0};
    const double nan_sig[3] = {14.6, NAN, 0.0};
    const double *bad[3] = {zero_mid, negative, nan_sig};
    const int bad_n[3] = {4, 2, 3};
    for (int i = 0; i < 3; i++) {
        memset(&r, 0, sizeof r);
        r.steps.stop_at = -1;
        run_on("euler", bad[i], bad_n[i], 0, &r);
        assert_int_equal(r.rc, BASE_E_INVAL);
        assert_non_null(strstr(r.err, "sigma"));
        assert_int_equal(r.toy.calls, 0);
    }

    /* fewer than two sigmas: the input itself, untouched, no model call */
    for (int n = 0; n < 2; n++) {
        toy_t toy = {0};
        char err[64] = "";
        toy.err = err;
        toy.errsz = sizeof err;
        sd_sampler_args_t a = {.denoise = toy_denoise, .denoise_ctx = &toy, .err = err, .errsz = sizeof err};
        ts_tensor_t *x = scalar(3.5), *out = NULL;
        assert_int_equal(sd_sample("dpmpp_2m", &a, x, k20, n, &out), 0);
        assert_ptr_equal(out, x);
        assert_true(value(out) == 3.5);
        assert_int_equal(toy.calls, 0);
        ts_free(out);
        ts_free(x);
    }

    /* missing pieces */
    ts_tensor_t *x = scalar(1.0), *out = NULL;
    char err[64] = "";
    sd_sampler_args_t none = {.err = err, .errsz = sizeof err};
    assert_int_equal(sd_sample("euler", &none, x, k20, 21, &out), BASE_E_INVAL);
    assert_non_null(strstr(err, "no model"));
    toy_t toy = {.err = err, .errsz = sizeof err};
    sd_sampler_args_t a = {.denoise = toy_denoise, .denoise_ctx = &toy, .err = err, .errsz = sizeof err};
    assert_int_equal(sd_sample("euler", NULL, x, k20, 21, &out), BASE_E_INVAL);
    assert_int_equal(sd_sample("euler", &a, NULL, k20, 21, &out), BASE_E_INVAL);
    assert_int_equal(sd_sample("euler", &a, x, NULL, 21, &out), BASE_E_INVAL);
    assert_int_equal(sd_sample("euler", &a, x, k20, -1, &out), BASE_E_INVAL);
    assert_int_equal(sd_sample("euler", &a, x, k20, 21, NULL), BASE_E_INVAL);
    assert_null(out);
    /* the input is a value: sampling never changes it */
    assert_int_equal(sd_sample("euler", &a, x, k20, 21, &out), 0);
    assert_true(value(x) == 1.0f);
    assert_true(fabs(value(out) - 1.0 / sqrt(1.0 + k20[0] * k20[0]) * 0.922876) < 1e-4);
    ts_free(out);
    ts_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_deterministic_values),
        cmocka_unit_test(test_uni_pc_short),
        cmocka_unit_test(test_all_samplers_run),
        cmocka_unit_test(test_stochastic_values),
        cmocka_unit_test(test_stochastic_distribution),
        cmocka_unit_test(test_ancestral_step),
        cmocka_unit_test(test_callback_and_interrupt),
        cmocka_unit_test(test_denoiser_errors),
        cmocka_unit_test(test_tensor_failures),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
