/* The SD1.5 noise schedule and ComfyUI's schedulers (nodes/sd/schedule.c, schedulers.c)
 * against the check values of sd15-reference.md §6 and, where §6 has none, values from the
 * independent Python re-implementation in tests/reference/samplers.py (torch float32 where
 * ComfyUI uses float32 tensors, scipy's beta.ppf for "beta"). */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "err.h"
#include "sd/sd.h"

static sd_sched_t S;

static int setup(void **state)
{
    (void)state;
    sd_sched_init(&S);
    return 0;
}

static void near_rel(double got, double want, double rel, const char *what, int i)
{
    double tol = rel * fabs(want);
    if (tol < 1e-12)
        tol = 1e-12;
    if (!(fabs(got - want) <= tol))
        fail_msg("%s[%d]: got %.10g, want %.10g (rel tol %g)", what, i, got, want, rel);
}

/* ------------------------------------------------------------------ §5.1 table */

static void test_table(void **state)
{
    (void)state;
    /* sigma_min / sigma_max are float32 values: exact */
    assert_true(S.sigma_min == 0.029167158529162407);
    assert_true(S.sigma_max == 14.614641189575195);
    assert_true(S.sigmas[0] == S.sigma_min);
    assert_true(S.sigmas[999] == S.sigma_max);
    near_rel(S.sigmas[1], 0.041314411908388138, 1e-9, "sigma", 1);
    near_rel(S.sigmas[500], 1.6182788610458374, 1e-9, "sigma", 500);
    for (int i = 0; i < SD_TIMESTEPS; i++) {
        assert_true(S.sigmas[i] == (float)S.sigmas[i]); /* stored as float32 values */
        assert_true(S.log_sigmas[i] == (float)S.log_sigmas[i]);
        /* log taken in float64 before rounding: within a float32 ulp of log(float σ) */
        assert_true(fabs(S.log_sigmas[i] - log(S.sigmas[i])) < 5e-7);
        if (i)
            assert_true(S.sigmas[i] > S.sigmas[i - 1]);
    }
    /* The sums pin every entry: one float32 ulp anywhere (>= 1.8e-9) would move them. */
    double sum = 0.0, sum_log = 0.0;
    for (int i = 0; i < SD_TIMESTEPS; i++) {
        sum += S.sigmas[i];
        sum_log += S.log_sigmas[i];
    }
    assert_true(fabs(sum - 3021.308942863718) < 1e-9);
    assert_true(fabs(sum_log - 483.260973179247) < 1e-9);

    /* β and ᾱ recovered from the sigmas: ᾱ = 1/(1+σ²), β_i = 1 - ᾱ_i/ᾱ_{i-1} */
    double ac0 = 1.0 / (1.0 + S.sigmas[0] * S.sigmas[0]);
    double ac1 = 1.0 / (1.0 + S.sigmas[1] * S.sigmas[1]);
    double ac998 = 1.0 / (1.0 + S.sigmas[998] * S.sigmas[998]);
    double ac999 = 1.0 / (1.0 + S.sigmas[999] * S.sigmas[999]);
    near_rel(ac0, 0.99915, 1e-7, "alphas_cumprod", 0);
    near_rel(ac1, 0.9982960278384514, 1e-7, "alphas_cumprod", 1);
    near_rel(ac999, 0.0046600985130772, 1e-6, "alphas_cumprod", 999);
    near_rel(1.0 - ac0, 0.00085, 1e-5, "beta", 0);
    near_rel(1.0 - ac999 / ac998, 0.012, 1e-4, "beta", 999);
    /* the EPS denoiser's input scale and the max_denoise noise multiplier */
    near_rel(1.0 / sqrt(S.sigma_max * S.sigma_max + 1.0), 0.06826491, 1e-6, "c_in", 999);
    near_rel(sqrt(1.0 + S.sigma_max * S.sigma_max), 14.648814, 1e-6, "noise mult", 0);
}

static void test_sigma_t(void **state)
{
    (void)state;
    assert_true(sd_sched_sigma_to_t(&S, S.sigma_max) == 999.0);
    assert_true(sd_sched_sigma_to_t(&S, S.sigma_min) == 0.0);
    assert_true(sd_sched_sigma_to_t(&S, 1.0) == 354.0);
    assert_true(sd_sched_sigma_to_t(&S, 1000.0) == 999.0); /* beyond the table: nearest end */
    assert_true(sd_sched_sigma_to_t(&S, 1e-6) == 0.0);
    for (int t = 0; t < SD_TIMESTEPS; t += 37)
        assert_true(sd_sched_sigma_to_t(&S, S.sigmas[t]) == t);

    near_rel(sd_sched_t_to_sigma(&S, 500.5), 1.62098324, 1e-7, "sigma(t)", 500);
    for (int t = 0; t < SD_TIMESTEPS; t += 111) /* integer t gives the table value */
        near_rel(sd_sched_t_to_sigma(&S, t), S.sigmas[t], 1e-6, "sigma(t)", t);
    near_rel(sd_sched_t_to_sigma(&S, -5.0), S.sigma_min, 1e-6, "sigma(t<0)", 0);
    near_rel(sd_sched_t_to_sigma(&S, 5000.0), S.sigma_max, 1e-6, "sigma(t>999)", 0);
    near_rel(sd_sched_t_to_sigma(&S, NAN), S.sigma_min, 1e-6, "sigma(NaN)", 0);
}

/* ------------------------------------------------------------------ §5.4 schedulers */

/* 20 steps, from tests/reference/samplers.py. §6 lists the first/last three of the first
 * seven and all of karras and normal; those agree with these to the 6 digits given. */
static const struct {
    const char *name;
    double v[21];
} TWENTY[] = {
    {"simple", {14.6146412,  10.9042358, 8.30280304,  6.44295502, 5.08776331,  4.08172941,  3.32108307,
                2.7354691,   2.27646303, 1.91025078,  1.61288619, 1.36717272,  1.16057837,  0.98381722,
                0.829859555, 0.69320488, 0.569284916, 0.45381853, 0.341673821, 0.223003134, 0}},
    {"sgm_uniform", {14.6146402,  10.9073172,  8.30717087,  6.44768953,  5.09240818, 4.08608103,  3.32506895,
                     2.73908281,  2.27973056,  1.91321015,  1.61558044,  1.36964345, 1.16286469,  0.985955358,
                     0.831883729, 0.695149601, 0.571188867, 0.455735713, 0.34370482, 0.225452274, 0}},
    {"karras", {14.6146431, 11.7253685,  9.34020233, 7.38361788,   5.78941345,   4.49983454,   3.46474743,
                2.64084101, 1.99091625,  1.48321104, 1.0907861,    0.790946066,  0.564721584,  0.396389842,
                0.27303797, 0.184167996, 0.12134143, 0.0778600648, 0.0484813713, 0.0291671772, 0}},
    {"exponential",
     {14.6146402,  10.5363073,  7.59606647,   5.47632265,  3.94811106,  2.84635901,   2.05205941,
      1.47941589,  1.06657302,  0.76893729,   0.554359138, 0.399660766, 0.288132221,  0.207726628,
      0.149758831, 0.107967429, 0.0778382719, 0.056116879, 0.040457014, 0.0291671604, 0}},
    {"ddim_uniform",
     {11.0283308,  8.39068508,  6.50639772,  5.13443089,  4.11669636,  3.34776354,   2.75619578,
      2.29285383,  1.92344332,  1.62369204,  1.37617886,  1.16821599,  0.990408897,  0.835652828,
      0.698398113, 0.574050248, 0.458332688, 0.346186697, 0.228146732, 0.0413144119, 0}},
    {"beta", {14.6146412,  13.5156956,  11.5427704, 9.38892365,  7.37184429,  5.68659163,  4.37280178,
              3.37472486,  2.61523581,  2.04731178, 1.61827886,  1.28462112,  1.02732933,  0.821221173,
              0.654885352, 0.515390635, 0.39550969, 0.291283935, 0.199058622, 0.111418821, 0}},
    {"normal", {14.6146402,  10.7467995, 8.08151913,  6.20493507,  4.85565233,  3.8653779,    3.12376142,
                2.5571661,   2.11565757, 1.76482224,  1.48058057,  1.24581313,  1.04814196,   0.878428102,
                0.729718626, 0.59643352, 0.473584712, 0.355545402, 0.232164234, 0.0291671604, 0}},
    {"linear_quadratic", {14.6146412, 14.578105,  14.5415678, 14.5050316, 14.4684954, 14.4319582, 14.395422,
                          14.3588848, 14.3223486, 14.2858124, 14.2492752, 14.0738993, 13.6208448, 12.8901138,
                          11.8817034, 10.5956154, 9.03184795, 7.19040346, 5.07128048, 2.67447925, 0}},
    {"kl_optimal", {14.6146326,  6.80714798,  4.40147114,  3.22191191,  2.51468801,  2.03865862,   1.69281542,
                    1.42737389,  1.21493244,  1.03913999,  0.889613509, 0.759421885, 0.643738449,  0.53907603,
                    0.442828983, 0.352984756, 0.267937243, 0.18635869,  0.107108787, 0.0291671585, 0}},
};

static void test_names(void **state)
{
    (void)state;
    static const char *const want[] = {"simple",      "sgm_uniform",      "karras",
                                       "exponential", "ddim_uniform",     "beta",
                                       "normal",      "linear_quadratic", "kl_optimal"};
    size_t n = 0;
    while (sd_scheduler_names[n])
        n++;
    assert_int_equal(n, 9);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(sd_scheduler_names[i], want[i]);
}

static void test_twenty_steps(void **state)
{
    (void)state;
    double out[SD_SIGMAS_ROOM(20)];
    for (size_t k = 0; k < sizeof TWENTY / sizeof *TWENTY; k++) {
        int count = -1;
        memset(out, 0, sizeof out);
        assert_int_equal(sd_scheduler(&S, TWENTY[k].name, 20, out, &count), 0);
        assert_int_equal(count, 21);
        /* One float32 ulp (6e-8..1.2e-7 relative): torch evaluates exp, log, pow and tan with
         * SLEEF's vector functions, libm rounds correctly, so a value may differ by an ulp;
         * the 9-digit literals add at most 5e-9. */
        for (int i = 0; i < 21; i++)
            near_rel(out[i], TWENTY[k].v[i], 1.5e-7, TWENTY[k].name, i);
        for (int i = 0; i < 20; i++) /* float32 values */
            assert_true(out[i] == (float)out[i]);
        assert_true(out[20] == 0.0);
        /* and sd_sigmas_for with a plain sampler and full denoise is the same list */
        double via[SD_SIGMAS_ROOM(20)];
        assert_int_equal(sd_sigmas_for(&S, TWENTY[k].name, "euler", 20, 1.0, via, &count), 0);
        assert_int_equal(count, 21);
        assert_memory_equal(via, out, 21 * sizeof *out);
    }
}

/* The §6 spellings, independent of the table above. */
static void test_doc_values(void **state)
{
    (void)state;
    static const double karras[21] = {14.614643, 11.725368, 9.340202, 7.383618, 5.789413, 4.499835, 3.464747,
                                      2.640841,  1.990916,  1.483211, 1.090786, 0.790946, 0.564722, 0.396390,
                                      0.273038,  0.184168,  0.121341, 0.077860, 0.048481, 0.029167, 0};
    static const double normal[21] = {14.614640, 10.746799, 8.081519, 6.204935, 4.855652, 3.865378, 3.123761,
                                      2.557166,  2.115658,  1.764822, 1.480581, 1.245813, 1.048142, 0.878428,
                                      0.729719,  0.596434,  0.473585, 0.355545, 0.232164, 0.029167, 0};
    double out[SD_SIGMAS_ROOM(20)];
    int count = 0;
    assert_int_equal(sd_scheduler(&S, "karras", 20, out, &count), 0);
    /* 6-decimal literals: half a unit of the 6th decimal plus an ulp (1e-6 at 14) */
    for (int i = 0; i < 21; i++)
        assert_true(fabs(out[i] - karras[i]) < 1.6e-6);
    assert_true(out[0] > S.sigma_max); /* float32 rounding of the ρ-power, as in ComfyUI */
    assert_int_equal(sd_scheduler(&S, "normal", 20, out, &count), 0);
    for (int i = 0; i < 21; i++)
        assert_true(fabs(out[i] - normal[i]) < 1.6e-6);
    /* first / last three of the others */
    static const struct {
        const char *name;
        double first[3], last[2];
    } fl[] = {
        {"exponential", {14.614640, 10.536307, 7.596066}, {0.040457, 0.029167}},
        {"sgm_uniform", {14.614640, 10.907317, 8.307171}, {0.343705, 0.225452}},
        {"simple", {14.614641, 10.904236, 8.302803}, {0.341674, 0.223003}},
        {"ddim_uniform", {11.028331, 8.390685, 6.506398}, {0.228147, 0.041314}},
        {"beta", {14.614641, 13.515696, 11.542770}, {0.199059, 0.111419}},
    };
    for (size_t k = 0; k < sizeof fl / sizeof *fl; k++) {
        assert_int_equal(sd_scheduler(&S, fl[k].name, 20, out, &count), 0);
        assert_int_equal(count, 21);
        for (int i = 0; i < 3; i++)
            assert_true(fabs(out[i] - fl[k].first[i]) < 1.6e-6);
        assert_true(fabs(out[18] - fl[k].last[0]) < 6e-7);
        assert_true(fabs(out[19] - fl[k].last[1]) < 6e-7);
        assert_true(out[20] == 0.0);
    }
}

static void test_edge_counts(void **state)
{
    (void)state;
    double out[SD_SIGMAS_ROOM(600)];
    int count = 0;
    /* ddim_uniform takes every 142nd timestep for 7 steps: 8 sigmas + 0 (ComfyUI's result) */
    static const double ddim7[9] = {14.2651091,  6.57064962,  3.4854548,    2.04731178, 1.2720629,
                                    0.790060937, 0.440309018, 0.0413144119, 0};
    assert_int_equal(sd_scheduler(&S, "ddim_uniform", 7, out, &count), 0);
    assert_int_equal(count, 9);
    for (int i = 0; i < 9; i++)
        near_rel(out[i], ddim7[i], 1.5e-7, "ddim_uniform(7)", i);
    assert_int_equal(sd_scheduler(&S, "ddim_uniform", 501, out, &count), 0);
    assert_int_equal(count, 1000); /* every timestep 1..999, plus 0: SD_SIGMAS_ROOM */
    assert_true(SD_SIGMAS_ROOM(501) >= 1000 && SD_SIGMAS_ROOM(5000) == 5001);

    /* beta drops repeated timesteps: 200 steps give 199 distinct ones */
    assert_int_equal(sd_scheduler(&S, "beta", 200, out, &count), 0);
    assert_int_equal(count, 200);
    near_rel(out[0], 14.614641189575195, 1e-9, "beta(200)", 0);
    near_rel(out[1], 14.526275634765625, 1e-9, "beta(200)", 1);
    near_rel(out[2], 14.438569068908691, 1e-9, "beta(200)", 2);
    near_rel(out[197], 0.04131441190838814, 1e-9, "beta(200)", 197);
    near_rel(out[198], 0.029167158529162407, 1e-9, "beta(200)", 198);
    assert_true(out[199] == 0.0);
    for (int i = 1; i < count; i++)
        assert_true(out[i] < out[i - 1]);

    /* one step */
    assert_int_equal(sd_scheduler(&S, "linear_quadratic", 1, out, &count), 0);
    assert_int_equal(count, 2);
    assert_true(out[0] == S.sigma_max && out[1] == 0.0);
    /* kl_optimal: ComfyUI divides by n-1 (NaN for one step); weft gives σ_max */
    assert_int_equal(sd_scheduler(&S, "kl_optimal", 1, out, &count), 0);
    assert_int_equal(count, 2);
    near_rel(out[0], 14.6146326, 1.5e-7, "kl_optimal(1)", 0);
    assert_int_equal(sd_scheduler(&S, "kl_optimal", 2, out, &count), 0);
    assert_int_equal(count, 3);
    near_rel(out[0], 14.614632606506348, 1e-9, "kl_optimal(2)", 0);
    near_rel(out[1], 0.029167158529162407, 1e-7, "kl_optimal(2)", 1);
    for (size_t k = 0; sd_scheduler_names[k]; k++) {
        assert_int_equal(sd_scheduler(&S, sd_scheduler_names[k], 1, out, &count), 0);
        assert_true(count == 2 && out[1] == 0.0 && isfinite(out[0]));
        /* ddim_uniform's single step starts at σ_1 (timestep 1), as in ComfyUI */
        if (strcmp(sd_scheduler_names[k], "ddim_uniform") == 0)
            assert_true(out[0] == S.sigmas[1]);
        else
            assert_true(out[0] > 14.6);
    }
    /* large n stays well-formed for every scheduler */
    for (size_t k = 0; sd_scheduler_names[k]; k++) {
        assert_int_equal(sd_scheduler(&S, sd_scheduler_names[k], 600, out, &count), 0);
        assert_true(count >= 2 && count <= SD_SIGMAS_ROOM(600));
        assert_true(out[count - 1] == 0.0);
        for (int i = 0; i < count - 1; i++)
            assert_true(isfinite(out[i]) && out[i] > 0.0);
    }
}

static void test_errors(void **state)
{
    (void)state;
    double out[SD_SIGMAS_ROOM(20)];
    int count = 7;
    assert_int_equal(sd_scheduler(&S, "nope", 20, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_scheduler(&S, NULL, 20, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_scheduler(&S, "karras", 0, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_scheduler(&S, "karras", -3, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_scheduler(NULL, "karras", 20, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_scheduler(&S, "karras", 20, NULL, &count), BASE_E_INVAL);
    assert_int_equal(sd_scheduler(&S, "karras", 20, out, NULL), BASE_E_INVAL);
    assert_int_equal(sd_sigmas_for(&S, "nope", "euler", 20, 1.0, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_sigmas_for(&S, "karras", "nope", 20, 1.0, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_sigmas_for(&S, "karras", "euler", 0, 1.0, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_sigmas_for(&S, "karras", "euler", 20, NAN, out, &count), BASE_E_INVAL);
    assert_int_equal(sd_sigmas_for(&S, "karras", "euler", 20, 1e-300, out, &count), BASE_E_RANGE);
    /* a NULL sampler is allowed: no discard rule */
    assert_int_equal(sd_sigmas_for(&S, "karras", NULL, 20, 1.0, out, &count), 0);
    assert_int_equal(count, 21);
}

/* ------------------------------------------------------------------ KSampler rules */

static void test_discard_penultimate(void **state)
{
    (void)state;
    static const char *const discard[] = {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"};
    double out[SD_SIGMAS_ROOM(21)], k21[SD_SIGMAS_ROOM(21)];
    int count = 0, n21 = 0;
    assert_int_equal(sd_scheduler(&S, "karras", 21, k21, &n21), 0);
    assert_int_equal(n21, 22);
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(sd_sigmas_for(&S, "karras", discard[k], 20, 1.0, out, &count), 0);
        assert_int_equal(count, 21);
        near_rel(out[18], 0.074363, 1e-5, discard[k], 18);
        near_rel(out[19], 0.047306, 1e-5, discard[k], 19);
        assert_true(out[20] == 0.0);
        /* karras(21) without its penultimate entry */
        assert_memory_equal(out, k21, 20 * sizeof *out);
        assert_true(out[19] == k21[19] && k21[20] > 0.029 && k21[20] < 0.03);
    }
    /* euler keeps karras(20) */
    assert_int_equal(sd_sigmas_for(&S, "karras", "euler", 20, 1.0, out, &count), 0);
    near_rel(out[19], 0.0291671772, 1.5e-7, "euler karras", 19);
}

static void test_denoise(void **state)
{
    (void)state;
    double out[SD_SIGMAS_ROOM(20)];
    int count = 0;
    /* steps 20, denoise 0.5: the last 21 of the 40-step schedule */
    assert_int_equal(sd_sigmas_for(&S, "normal", "euler", 20, 0.5, out, &count), 0);
    assert_int_equal(count, 21);
    near_rel(out[0], 1.548160, 1e-6, "normal d0.5", 0);
    near_rel(out[1], 1.422527, 1e-6, "normal d0.5", 1);
    near_rel(out[2], 1.307809, 1e-6, "normal d0.5", 2);
    near_rel(out[19], 0.029167160391807556, 1e-7, "normal d0.5", 19);
    assert_true(out[20] == 0.0);
    double n40[SD_SIGMAS_ROOM(40)];
    int c40 = 0;
    assert_int_equal(sd_scheduler(&S, "normal", 40, n40, &c40), 0);
    assert_memory_equal(out, n40 + 20, 21 * sizeof *out);

    assert_int_equal(sd_sigmas_for(&S, "karras", "euler", 20, 0.5, out, &count), 0);
    assert_int_equal(count, 21);
    near_rel(out[0], 1.181744, 1e-6, "karras d0.5", 0);
    near_rel(out[1], 1.014122, 1e-6, "karras d0.5", 1);
    near_rel(out[2], 0.867306, 1e-6, "karras d0.5", 2);

    /* with a discard sampler: karras(int(10/0.5)+1 = 21) minus its penultimate, last 11 */
    assert_int_equal(sd_sigmas_for(&S, "karras", "uni_pc", 10, 0.5, out, &count), 0);
    assert_int_equal(count, 11);
    near_rel(out[0], 1.2741007804870605, 1e-7, "uni_pc d0.5", 0);
    near_rel(out[8], 0.07436291128396988, 1e-7, "uni_pc d0.5", 8);
    near_rel(out[9], 0.047305695712566376, 1e-7, "uni_pc d0.5", 9);
    assert_true(out[10] == 0.0);

    /* int(steps/denoise) truncates: 20/0.3 = 66.67 -> 66 steps, keep the last 21 */
    double n66[SD_SIGMAS_ROOM(66)];
    int c66 = 0;
    assert_int_equal(sd_scheduler(&S, "simple", 66, n66, &c66), 0);
    assert_int_equal(sd_sigmas_for(&S, "simple", "heun", 20, 0.3, out, &count), 0);
    assert_int_equal(count, 21);
    assert_memory_equal(out, n66 + 46, 21 * sizeof *out);

    /* denoise above 0.9999 is full; 0 or below is an empty schedule */
    double full[SD_SIGMAS_ROOM(20)];
    assert_int_equal(sd_sigmas_for(&S, "simple", "euler", 20, 1.0, full, &count), 0);
    assert_int_equal(sd_sigmas_for(&S, "simple", "euler", 20, 0.99995, out, &count), 0);
    assert_int_equal(count, 21);
    assert_memory_equal(out, full, 21 * sizeof *out);
    count = 5;
    assert_int_equal(sd_sigmas_for(&S, "simple", "euler", 20, 0.0, out, &count), 0);
    assert_int_equal(count, 0);
    count = 5;
    assert_int_equal(sd_sigmas_for(&S, "simple", "euler", 20, -1.0, out, &count), 0);
    assert_int_equal(count, 0);

    /* a schedule shorter than steps+1 (beta dedupes) is kept whole */
    double b[SD_SIGMAS_ROOM(200)];
    assert_int_equal(sd_sigmas_for(&S, "beta", "euler", 199, 0.999, b, &count), 0);
    assert_int_equal(count, 199); /* beta(int(199/0.999) = 199) has 198 distinct t, + 0 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),      cmocka_unit_test(test_sigma_t),
        cmocka_unit_test(test_names),      cmocka_unit_test(test_twenty_steps),
        cmocka_unit_test(test_doc_values), cmocka_unit_test(test_edge_counts),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_discard_penultimate),
        cmocka_unit_test(test_denoise),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
