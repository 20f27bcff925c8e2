/* The sampler entry point (sd_sample), the list of samplers weft offers in ComfyUI's order,
 * and the helpers every update rule uses (samplers_internal.h). The rules themselves live in
 * samplers_single.c (one-step methods), samplers_multistep.c (methods with a history) and
 * samplers_unipc.c.
 *
 * Noise: ancestral and SDE samplers draw standard normal noise of x's shape from
 * a->noise_gen, one draw per use, in the order ComfyUI's noise sampler is called. ComfyUI's
 * dpmpp_sde, dpmpp_2m_sde and dpmpp_3m_sde take their noise from a torchsde Brownian tree
 * instead; plain Gaussian draws are statistically the same process but not the same
 * numbers, so those samplers do not reproduce ComfyUI images bit for bit. The *_gpu names
 * differ from their CPU twins in ComfyUI only in where that tree lives, so here they are
 * the same sampler. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "sd/samplers_internal.h"

/* ComfyUI 0.3.64 KSampler.SAMPLERS order; not offered: the *_cfg_pp variants (they need the
 * unconditional prediction, which sd_denoise_fn does not expose), dpm_fast and dpm_adaptive
 * (they ignore the schedule), sa_solver and sa_solver_pece. */
const char *const sd_sampler_names[] = {
    "euler",
    "euler_ancestral",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
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
    "res_multistep_ancestral",
    "gradient_estimation",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
    NULL,
};

/* In the order of sd_sampler_names. */
static const smp_fn sampler_fns[] = {
    smp_euler,                   /* euler */
    smp_euler_ancestral,         /* euler_ancestral */
    smp_heun,                    /* heun */
    smp_heunpp2,                 /* heunpp2 */
    smp_dpm_2,                   /* dpm_2 */
    smp_dpm_2_ancestral,         /* dpm_2_ancestral */
    smp_lms,                     /* lms */
    smp_dpmpp_2s_ancestral,      /* dpmpp_2s_ancestral */
    smp_dpmpp_sde,               /* dpmpp_sde */
    smp_dpmpp_sde,               /* dpmpp_sde_gpu */
    smp_dpmpp_2m,                /* dpmpp_2m */
    smp_dpmpp_2m_sde,            /* dpmpp_2m_sde */
    smp_dpmpp_2m_sde,            /* dpmpp_2m_sde_gpu */
    smp_dpmpp_2m_sde_heun,       /* dpmpp_2m_sde_heun */
    smp_dpmpp_2m_sde_heun,       /* dpmpp_2m_sde_heun_gpu */
    smp_dpmpp_3m_sde,            /* dpmpp_3m_sde */
    smp_dpmpp_3m_sde,            /* dpmpp_3m_sde_gpu */
    smp_ddpm,                    /* ddpm */
    smp_lcm,                     /* lcm */
    smp_ipndm,                   /* ipndm */
    smp_ipndm_v,                 /* ipndm_v */
    smp_deis,                    /* deis */
    smp_res_multistep,           /* res_multistep */
    smp_res_multistep_ancestral, /* res_multistep_ancestral */
    smp_gradient_estimation,     /* gradient_estimation */
    smp_er_sde,                  /* er_sde */
    smp_seeds_2,                 /* seeds_2 */
    smp_seeds_3,                 /* seeds_3 */
    smp_euler,                   /* ddim: deterministic DDIM is Euler in sigma space, as in ComfyUI */
    smp_uni_pc,                  /* uni_pc */
    smp_uni_pc_bh2,              /* uni_pc_bh2 */
};

_Static_assert(sizeof sampler_fns / sizeof *sampler_fns ==
                   sizeof sd_sampler_names / sizeof *sd_sampler_names - 1,
               "one function per sampler name");

/* ------------------------------------------------------------------ helpers */

static void vmsg(const sd_sampler_args_t *a, const char *fmt, va_list ap)
{
    if (a && a->err && a->errsz)
        vsnprintf(a->err, a->errsz, fmt, ap);
}

static void msg(const sd_sampler_args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void msg(const sd_sampler_args_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(a, fmt, ap);
    va_end(ap);
}

int smp_failf(smp_t *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(r->a, fmt, ap);
    va_end(ap);
    return rc;
}

int smp_fail(smp_t *r, int rc, const char *what)
{
    return smp_failf(r, rc, "sampler '%s': %s failed: %s", r->name, what, ts_last_error());
}

int smp_model(smp_t *r, const ts_tensor_t *x, double sigma, ts_tensor_t **den)
{
    *den = NULL;
    int rc = r->a->denoise(r->a->denoise_ctx, x, sigma, den);
    if (rc) {
        ts_free(*den); /* a misbehaving denoiser may set it anyway */
        *den = NULL;
        if (r->a->err && r->a->errsz && !r->a->err[0])
            msg(r->a, "sampler '%s': the model failed at sigma %g (%s)", r->name, sigma, base_strerror(rc));
        return rc;
    }
    if (!*den)
        return smp_failf(r, BASE_E_TENSOR, "sampler '%s': the model returned no prediction", r->name);
    return 0;
}

int smp_noise(smp_t *r, const ts_tensor_t *like, ts_tensor_t **z)
{
    *z = NULL;
    if (!r->a->noise_gen)
        return smp_failf(r, BASE_E_INVAL, "sampler '%s' adds noise and needs a noise generator", r->name);
    int64_t shape[TS_MAX_DIMS];
    int nd = ts_shape(like, shape);
    int rc = ts_randn_gen(z, shape, nd, r->a->noise_gen, ts_device(like));
    return rc ? smp_fail(r, rc, "drawing noise") : 0;
}

int smp_done(smp_t *r, int i, const ts_tensor_t *x, const ts_tensor_t *den)
{
    if (!r->a->step)
        return 0;
    int rc = r->a->step(r->a->step_ctx, i, r->n, x, den);
    if (rc && r->a->err && r->a->errsz && !r->a->err[0])
        msg(r->a, "sampling stopped after step %d of %d (%s)", i + 1, r->n, base_strerror(rc));
    return rc;
}

void smp_set(ts_tensor_t **slot, ts_tensor_t *v)
{
    ts_free(*slot);
    *slot = v;
}

void smp_drop(ts_tensor_t **t, int n)
{
    for (int i = 0; i < n; i++) {
        ts_free(t[i]);
        t[i] = NULL;
    }
}

int smp_step_end(smp_t *r, int i, ts_tensor_t **x, ts_tensor_t **t, int n, int next, int rc)
{
    if (!rc) {
        smp_set(x, t[next]);
        t[next] = NULL;
        rc = smp_done(r, i, *x, t[0]);
    }
    smp_drop(t, n);
    return rc;
}

int smp_lin(smp_t *r, ts_tensor_t **out, int k, const double *c, ts_tensor_t *const *t)
{
    *out = NULL;
    int first = 0;
    while (first < k - 1 && c[first] == 0.0)
        first++;
    ts_tensor_t *acc = NULL;
    int rc = 0;
    if (c[first] == 1.0)
        acc = ts_ref(t[first]);
    else
        rc = ts_affine(&acc, t[first], c[first], 0.0);
    for (int i = first + 1; !rc && i < k; i++) {
        if (c[i] == 0.0)
            continue;
        ts_tensor_t *nx = NULL;
        rc = ts_add_scaled(&nx, acc, t[i], c[i]);
        smp_set(&acc, nx);
    }
    if (rc) {
        ts_free(acc);
        return smp_fail(r, rc, "a linear combination of tensors");
    }
    *out = acc;
    return 0;
}

int smp_lin2(smp_t *r, ts_tensor_t **out, double c0, ts_tensor_t *t0, double c1, ts_tensor_t *t1)
{
    const double c[2] = {c0, c1};
    ts_tensor_t *const t[2] = {t0, t1};
    return smp_lin(r, out, 2, c, t);
}

int smp_lin3(smp_t *r, ts_tensor_t **out, double c0, ts_tensor_t *t0, double c1, ts_tensor_t *t1, double c2,
             ts_tensor_t *t2)
{
    const double c[3] = {c0, c1, c2};
    ts_tensor_t *const t[3] = {t0, t1, t2};
    return smp_lin(r, out, 3, c, t);
}

int smp_axpy(smp_t *r, ts_tensor_t **x, double c, const ts_tensor_t *t)
{
    if (c == 0.0)
        return 0;
    ts_tensor_t *nx = NULL;
    int rc = ts_add_scaled(&nx, *x, t, c);
    if (rc)
        return smp_fail(r, rc, "an update of the state");
    smp_set(x, nx);
    return 0;
}

int smp_add_noise(smp_t *r, ts_tensor_t **x, double c)
{
    if (c == 0.0)
        return 0;
    ts_tensor_t *z = NULL;
    int rc = smp_noise(r, *x, &z);
    if (!rc)
        rc = smp_axpy(r, x, c, z);
    ts_free(z);
    return rc;
}

int smp_deriv(smp_t *r, ts_tensor_t **d, const ts_tensor_t *x, const ts_tensor_t *den, double sigma)
{
    return smp_lin2(r, d, 1.0 / sigma, (ts_tensor_t *)x, -1.0 / sigma, (ts_tensor_t *)den);
}

void smp_ancestral_step(double from, double to, double eta, double *down, double *up)
{
    if (eta == 0.0 || from <= 0.0) {
        *down = to;
        *up = 0.0;
        return;
    }
    double v = to * to * (from * from - to * to) / (from * from);
    double u = eta * sqrt(v > 0.0 ? v : 0.0);
    if (u > to)
        u = to;
    *up = u;
    *down = sqrt(to * to - u * u);
}

/* ------------------------------------------------------------------ entry point */

int sd_sample(const char *sampler, const sd_sampler_args_t *a, const ts_tensor_t *x, const double *sigmas,
              int count, ts_tensor_t **out)
{
    if (out)
        *out = NULL;
    if (a && a->err && a->errsz)
        a->err[0] = '\0';
    if (!a || !x || !out || count < 0 || (count > 0 && !sigmas)) {
        msg(a, "sd_sample: missing argument");
        return BASE_E_INVAL;
    }
    int idx = -1;
    for (int i = 0; sampler && sd_sampler_names[i]; i++) {
        if (strcmp(sampler, sd_sampler_names[i]) == 0) {
            idx = i;
            break;
        }
    }
    if (idx < 0) {
        msg(a, "unknown sampler '%s'", sampler ? sampler : "(none)");
        return BASE_E_INVAL;
    }
    if (!a->denoise) {
        msg(a, "sampler '%s': no model to sample with", sampler);
        return BASE_E_INVAL;
    }
    /* Every rule divides by sigma[i] for i < n; a zero or negative level there is a bug in
     * the caller's schedule rather than something to sample. */
    for (int i = 0; i < count; i++) {
        double s = sigmas[i];
        if (!isfinite(s) || s < 0.0 || (s == 0.0 && i < count - 1)) {
            msg(a,
                "sampler '%s': sigma %d of %d is %g; sigmas must be finite and positive, "
                "only the last may be 0",
                sampler, i, count, s);
            return BASE_E_INVAL;
        }
    }
    if (count < 2) {
        *out = ts_ref((ts_tensor_t *)x); /* a reference, not a write: x stays unchanged */
        return 0;
    }
    smp_t r = {.a = a, .name = sd_sampler_names[idx], .sig = sigmas, .n = count - 1};
    ts_tensor_t *cur = ts_ref((ts_tensor_t *)x);
    int rc = sampler_fns[idx](&r, &cur);
    if (rc) {
        ts_free(cur);
        return rc;
    }
    *out = cur;
    return 0;
}
