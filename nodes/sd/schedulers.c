/* ComfyUI's schedulers (SCHEDULER_HANDLERS, sd15-reference.md §5.4): how n sampling steps
 * become a list of sigmas, and KSampler's adjustments on top (discard-penultimate samplers,
 * denoise < 1). Where ComfyUI computes with float32 torch tensors (linspace, the ρ-power of
 * karras, exp, tan) the same steps run here in float, so the values agree with torch's to
 * within one float32 ulp (libm vs SLEEF in exp, log, pow, tan; linspace is bit-exact); the
 * rest is double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sd/sd.h"

/* Far beyond any real use (ComfyUI caps steps at 10000; denoise 0.01 multiplies by 100) but
 * small enough that a schedule always fits in memory. */
#define SCHED_MAX_STEPS 1000000

const char *const sd_scheduler_names[] = {
    "simple", "sgm_uniform", "karras",           "exponential", "ddim_uniform",
    "beta",   "normal",      "linear_quadratic", "kl_optimal",  NULL,
};

/* ------------------------------------------------------------------ float32 helpers */

/* start + step * k as ATen's AVX2 kernels compute it: the compiler fuses it into one FMA. */
static float fused(float start, float step, int k)
{
    return fmaf(step, (float)k, start);
}

/* Element i of torch.linspace(start, end, steps) in float32 on CPU, rounding included
 * (checked bit for bit against torch 1.13 for n up to 2000 by tests/reference/samplers.py):
 * start and end rounded to float; an element is counted up from start in the first half and
 * down from end in the second. ATen's kernel fills blocks of 16 with two 8-float vectors
 * (AVX2, the capability PyTorch uses by default on x86 even where AVX-512 exists); each
 * vector starts like a single element and adds k * step to it without fusing; the tail goes
 * element by element. */
static float linspace_f32(double start, double end, int steps, int i)
{
    enum { VEC = 8 };
    float a = (float)start, b = (float)end;
    if (steps == 1)
        return a;
    float step = (b - a) / (float)(steps - 1);
    int half = steps / 2;
    if (i < steps - steps % (2 * VEC)) {
        int i0 = i - i % VEC;
        float base = i0 < half ? fused(a, step, i0) : fused(b, -step, steps - i0 - 1);
        volatile float k_step = (float)(i - i0) * step; /* two roundings, never an FMA */
        return base + k_step;
    }
    return i < half ? fused(a, step, i) : fused(b, -step, steps - i - 1);
}

/* ------------------------------------------------------------------ beta distribution */

/* 1 + d1/(1 + d2/(1 + ...)) for the continued fraction of the regularised incomplete beta
 * function, evaluated front to back with the modified Lentz method. */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double f = 1.0, c = 1.0, d = 0.0;
    for (int j = 1; j <= 2000; j++) {
        int m = j / 2;
        double dj;
        if (j % 2 == 0)
            dj = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        else
            dj = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 + dj * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1.0 + dj / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double delta = c * d;
        f *= delta;
        if (fabs(delta - 1.0) < 1e-16)
            break;
    }
    return f;
}

/* ln B(a, b) for the small shape parameters used here; tgamma rather than lgamma, which
 * writes the global signgam and so races between threads. */
static double log_beta(double a, double b)
{
    return log(tgamma(a)) + log(tgamma(b)) - log(tgamma(a + b));
}

/* I_x(a, b), the beta(a, b) CDF. The continued fraction converges fast below the mean-ish
 * point (a+1)/(a+b+2); above it the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) is used. */
static double beta_cdf(double x, double a, double b)
{
    if (x <= 0.0)
        return 0.0;
    if (x >= 1.0)
        return 1.0;
    if (x > (a + 1.0) / (a + b + 2.0))
        return 1.0 - beta_cdf(1.0 - x, b, a);
    double front = exp(a * log(x) + b * log1p(-x) - log_beta(a, b)) / a;
    return front / beta_cf(a, b, x);
}

/* scipy.stats.beta.ppf(q, a, b): Newton's method kept inside a shrinking bracket, falling
 * back to bisection whenever a Newton step would leave it. */
static double beta_ppf(double q, double a, double b)
{
    if (!(q > 0.0))
        return 0.0;
    if (q >= 1.0)
        return 1.0;
    double lo = 0.0, hi = 1.0, x = q, lb = log_beta(a, b);
    for (int it = 0; it < 200; it++) {
        double f = beta_cdf(x, a, b) - q;
        if (f == 0.0)
            return x;
        if (f < 0.0)
            lo = x;
        else
            hi = x;
        double pdf = exp((a - 1.0) * log(x) + (b - 1.0) * log1p(-x) - lb);
        double nx = x - f / pdf;
        if (!(nx > lo && nx < hi))
            nx = 0.5 * (lo + hi);
        if (nx == x || hi - lo < 1e-17)
            break;
        x = nx;
    }
    return x;
}

/* ------------------------------------------------------------------ the schedulers */

typedef int (*sched_fn)(const sd_sched_t *s, int n, double *out, int *count);

static int sched_simple(const sd_sched_t *s, int n, double *out, int *count)
{
    double ss = (double)SD_TIMESTEPS / n;
    for (int k = 0; k < n; k++)
        out[k] = s->sigmas[SD_TIMESTEPS - 1 - (int)(k * ss)];
    out[n] = 0.0;
    *count = n + 1;
    return 0;
}

/* normal and sgm_uniform: timesteps evenly spaced from t(σ_max) to t(σ_min), mapped back
 * through the log-interpolated table. */
static int sched_normal_impl(const sd_sched_t *s, int n, double *out, int *count, bool sgm)
{
    double start = sd_sched_sigma_to_t(s, s->sigma_max);
    double end = sd_sched_sigma_to_t(s, s->sigma_min);
    int k = 0;
    if (sgm) {
        for (; k < n; k++)
            out[k] = (float)sd_sched_t_to_sigma(s, linspace_f32(start, end, n + 1, k));
        out[k++] = 0.0;
    } else if (fabs(sd_sched_t_to_sigma(s, end)) <= 1e-5) {
        /* a schedule whose smallest sigma is ~0 ends there instead of appending 0 */
        for (; k < n + 1; k++)
            out[k] = (float)sd_sched_t_to_sigma(s, linspace_f32(start, end, n + 1, k));
    } else {
        for (; k < n; k++)
            out[k] = (float)sd_sched_t_to_sigma(s, linspace_f32(start, end, n, k));
        out[k++] = 0.0;
    }
    *count = k;
    return 0;
}

static int sched_normal(const sd_sched_t *s, int n, double *out, int *count)
{
    return sched_normal_impl(s, n, out, count, false);
}

static int sched_sgm_uniform(const sd_sched_t *s, int n, double *out, int *count)
{
    return sched_normal_impl(s, n, out, count, true);
}

/* Karras et al. (2022), ρ = 7, with the ramp and the power in float32 as k-diffusion does;
 * the float rounding makes the first value exceed σ_max slightly, which is ComfyUI's value. */
static int sched_karras(const sd_sched_t *s, int n, double *out, int *count)
{
    const double rho = 7.0;
    double min_inv = pow(s->sigma_min, 1.0 / rho), max_inv = pow(s->sigma_max, 1.0 / rho);
    float span = (float)(min_inv - max_inv);
    for (int k = 0; k < n; k++) {
        volatile float ramp_span = linspace_f32(0.0, 1.0, n, k) * span; /* two tensor ops: no FMA */
        float v = (float)max_inv + ramp_span;
        out[k] = powf(v, (float)rho);
    }
    out[n] = 0.0;
    *count = n + 1;
    return 0;
}

static int sched_exponential(const sd_sched_t *s, int n, double *out, int *count)
{
    double a = log(s->sigma_max), b = log(s->sigma_min);
    for (int k = 0; k < n; k++)
        out[k] = expf(linspace_f32(a, b, n, k));
    out[n] = 0.0;
    *count = n + 1;
    return 0;
}

/* Every ⌊1000/n⌋-th table entry from index 1 upwards, reversed; as in ComfyUI this gives more
 * than n steps when 1000 is not a multiple of n (SD_SIGMAS_ROOM). */
static int sched_ddim_uniform(const sd_sched_t *s, int n, double *out, int *count)
{
    int steps = n, k = 0;
    bool zero_first = fabs(s->sigmas[1]) > 1e-5;
    if (!zero_first)
        steps++;
    int ss = SD_TIMESTEPS / steps;
    if (ss < 1)
        ss = 1;
    if (zero_first)
        out[k++] = 0.0;
    for (int x = 1; x < SD_TIMESTEPS; x += ss)
        out[k++] = s->sigmas[x];
    for (int i = 0, j = k - 1; i < j; i++, j--) {
        double t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
    *count = k;
    return 0;
}

/* Lee et al. 2024 (arXiv 2407.12173): timesteps at the beta(0.6, 0.6) quantiles of
 * 1 - k/n, rounded half to even, repeated timesteps dropped. */
static int sched_beta(const sd_sched_t *s, int n, double *out, int *count)
{
    const double alpha = 0.6, beta = 0.6;
    double step = 1.0 / n, last = -1.0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        double u = 1.0 - i * step; /* numpy.linspace(0, 1, n, endpoint=False) */
        double t = nearbyint(beta_ppf(u, alpha, beta) * (SD_TIMESTEPS - 1));
        if (t != last)
            out[k++] = s->sigmas[(int)t];
        last = t;
    }
    out[k++] = 0.0;
    *count = k;
    return 0;
}

/* The Mochi schedule (genmoai/models infer.py): linear in the first half of the steps up to
 * a threshold of 0.025, quadratic after, as 1 - value, scaled by σ_max in float32. */
static int sched_linear_quadratic(const sd_sched_t *s, int n, double *out, int *count)
{
    const double threshold = 0.025;
    float smax = (float)s->sigma_max;
    if (n == 1) {
        out[0] = smax;
        out[1] = 0.0;
        *count = 2;
        return 0;
    }
    int lin = n / 2, quad = n - lin;
    double diff = lin - threshold * n;
    double qcoef = diff / (lin * (double)quad * quad);
    double lcoef = threshold / lin - 2.0 * diff / ((double)quad * quad);
    double cnst = qcoef * ((double)lin * lin);
    for (int i = 0; i < n; i++) {
        double v = i < lin ? i * threshold / lin : qcoef * ((double)i * i) + lcoef * i + cnst;
        out[i] = (float)(1.0 - v) * smax;
    }
    out[n] = 0.0;
    *count = n + 1;
    return 0;
}

/* "KL-optimal" (AUTOMATIC1111 PR 15608, from Align Your Steps): tan of a linear blend of
 * atan(σ_max) and atan(σ_min), in float32. ComfyUI divides by n - 1 and so gives NaN for a
 * single step; here one step is just σ_max. */
static int sched_kl_optimal(const sd_sched_t *s, int n, double *out, int *count)
{
    float amin = (float)atan(s->sigma_min), amax = (float)atan(s->sigma_max);
    for (int k = 0; k < n; k++) {
        float w = n > 1 ? (float)k / (float)(n - 1) : 0.0f;
        out[k] = tanf(w * amin + (1.0f - w) * amax);
    }
    out[n] = 0.0;
    *count = n + 1;
    return 0;
}

static const sched_fn sched_fns[] = {
    sched_simple, sched_sgm_uniform, sched_karras,           sched_exponential, sched_ddim_uniform,
    sched_beta,   sched_normal,      sched_linear_quadratic, sched_kl_optimal,
};

static sched_fn sched_find(const char *name)
{
    for (size_t i = 0; name && sd_scheduler_names[i]; i++) {
        if (strcmp(name, sd_scheduler_names[i]) == 0)
            return sched_fns[i];
    }
    return NULL;
}

int sd_scheduler(const sd_sched_t *s, const char *name, int n, double *out, int *count)
{
    sched_fn fn = sched_find(name);
    if (!s || !fn || !out || !count || n < 1 || n > SCHED_MAX_STEPS)
        return BASE_E_INVAL;
    return fn(s, n, out, count);
}

/* ------------------------------------------------------------------ KSampler */

static bool discards_penultimate(const char *sampler)
{
    static const char *const names[] = {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"};
    for (size_t i = 0; sampler && i < sizeof names / sizeof *names; i++) {
        if (strcmp(sampler, names[i]) == 0)
            return true;
    }
    return false;
}

static bool known_sampler(const char *sampler)
{
    for (size_t i = 0; sd_sampler_names[i]; i++) {
        if (strcmp(sampler, sd_sampler_names[i]) == 0)
            return true;
    }
    return false;
}

/* KSampler.calculate_sigmas into a new array of SD_SIGMAS_ROOM(steps + 1) doubles. */
static int calculate_sigmas(const sd_sched_t *s, const char *scheduler, const char *sampler, int steps,
                            double **out, int *count)
{
    bool discard = discards_penultimate(sampler);
    if (discard)
        steps++;
    double *v = malloc((size_t)SD_SIGMAS_ROOM(steps) * sizeof *v);
    if (!v)
        return BASE_E_NOMEM;
    int n = 0, rc = sd_scheduler(s, scheduler, steps, v, &n);
    if (rc) {
        free(v);
        return rc;
    }
    if (discard && n >= 2) {
        v[n - 2] = v[n - 1];
        n--;
    }
    *out = v;
    *count = n;
    return 0;
}

int sd_sigmas_for(const sd_sched_t *s, const char *scheduler, const char *sampler, int steps, double denoise,
                  double *out, int *count)
{
    if (!s || !out || !count || !sched_find(scheduler) || (sampler && !known_sampler(sampler)) || steps < 1 ||
        steps > SCHED_MAX_STEPS || isnan(denoise))
        return BASE_E_INVAL;
    *count = 0;
    if (denoise <= 0.0)
        return 0;
    int total = steps;
    bool partial = denoise <= 0.9999;
    if (partial) {
        double t = steps / denoise; /* int(steps/denoise) truncates */
        if (t > SCHED_MAX_STEPS)
            return BASE_E_RANGE;
        total = (int)t;
    }
    double *v = NULL;
    int n = 0, rc = calculate_sigmas(s, scheduler, sampler, total, &v, &n);
    if (rc)
        return rc;
    int first = 0;
    if (partial && n > steps + 1) /* img2img keeps the last steps+1 */
        first = n - (steps + 1);
    memcpy(out, v + first, (size_t)(n - first) * sizeof *out);
    *count = n - first;
    free(v);
    return 0;
}
