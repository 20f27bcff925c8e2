/* One-step samplers: each step uses only the current state (plus extra model evaluations
 * inside the step). Update rules as in k-diffusion / ComfyUI comfy/k_diffusion/sampling.py
 * (sd15-reference.md §5.6), written for the EPS model in variance-exploding form, where
 * x = x0 + σ·ε, the data-prediction D(x, σ) comes from the caller, d = (x - D)/σ is the
 * probability-flow ODE derivative and λ = -ln σ the half log-SNR (so every α_t is 1).
 * ComfyUI's defaults throughout: η = 1 and s_noise = 1 for the stochastic samplers, no
 * churn for the deterministic ones. */
#include <math.h>

#include "err.h"
#include "sd/samplers_internal.h"

enum { TMP = 10 };

int smp_euler(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1];
        ts_tensor_t *t[TMP] = {0}; /* den, new x */
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc)
            rc = smp_lin2(r, &t[1], s1 / s, *x, 1.0 - s1 / s, t[0]);
        if ((rc = smp_step_end(r, i, x, t, TMP, 1, rc)))
            return rc;
    }
    return 0;
}

int smp_euler_ancestral(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1], down, up;
        smp_ancestral_step(s, s1, 1.0, &down, &up);
        ts_tensor_t *t[TMP] = {0};
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc)
            rc = smp_lin2(r, &t[1], down / s, *x, 1.0 - down / s, t[0]);
        if (!rc && down != 0.0)
            rc = smp_add_noise(r, &t[1], up);
        if ((rc = smp_step_end(r, i, x, t, TMP, 1, rc)))
            return rc;
    }
    return 0;
}

int smp_heun(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1], dt = s1 - s;
        ts_tensor_t *t[TMP] = {0}; /* den, x2, den2, new x */
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc)
            rc = smp_lin2(r, &t[1], s1 / s, *x, 1.0 - s1 / s, t[0]); /* Euler predictor */
        if (!rc && s1 != 0.0) {
            rc = smp_model(r, t[1], s1, &t[2]);
            /* x + dt * (d + d2) / 2 with d = (x - den)/s, d2 = (x2 - den2)/s1 */
            const double c[4] = {1.0 + dt / (2 * s), -dt / (2 * s), dt / (2 * s1), -dt / (2 * s1)};
            ts_tensor_t *const v[4] = {*x, t[0], t[1], t[2]};
            if (!rc)
                rc = smp_lin(r, &t[3], 4, c, v);
            if (!rc) {
                smp_set(&t[1], t[3]);
                t[3] = NULL;
            }
        }
        if ((rc = smp_step_end(r, i, x, t, TMP, 1, rc)))
            return rc;
    }
    return 0;
}

/* Heun++ (Carzit/sd-webui-samplers-scheduler): a third evaluation at the step after next
 * while there is one, with weights proportional to the sigmas relative to 2σ_0 or 3σ_0. */
int smp_heunpp2(smp_t *r, ts_tensor_t **x)
{
    double s_end = r->sig[r->n], s0 = r->sig[0];
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1], dt = s1 - s;
        /* den, d, x2, den2, d2, x3, den3, d3, new x */
        ts_tensor_t *t[TMP] = {0};
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc)
            rc = smp_deriv(r, &t[1], *x, t[0], s);
        if (!rc)
            rc = smp_lin2(r, &t[2], 1.0, *x, dt, t[1]);
        if (!rc && !(s1 == s_end || i + 2 > r->n)) {
            rc = smp_model(r, t[2], s1, &t[3]);
            if (!rc)
                rc = smp_deriv(r, &t[4], t[2], t[3], s1);
            if (!rc && r->sig[i + 2] == s_end) {
                double w2 = s1 / (2 * s0), w1 = 1.0 - w2;
                rc = smp_lin3(r, &t[8], 1.0, *x, dt * w1, t[1], dt * w2, t[4]);
            } else if (!rc) {
                double s2 = r->sig[i + 2];
                rc = smp_lin2(r, &t[5], 1.0, t[2], s2 - s1, t[4]);
                if (!rc)
                    rc = smp_model(r, t[5], s2, &t[6]);
                if (!rc)
                    rc = smp_deriv(r, &t[7], t[5], t[6], s2);
                double w2 = s1 / (3 * s0), w3 = s2 / (3 * s0), w1 = 1.0 - w2 - w3;
                const double c[4] = {1.0, dt * w1, dt * w2, dt * w3};
                ts_tensor_t *const v[4] = {*x, t[1], t[4], t[7]};
                if (!rc)
                    rc = smp_lin(r, &t[8], 4, c, v);
            }
        } else if (!rc) {
            t[8] = t[2]; /* Euler */
            t[2] = NULL;
        }
        if ((rc = smp_step_end(r, i, x, t, TMP, 8, rc)))
            return rc;
    }
    return 0;
}

/* DPM-Solver-2 in Karras' form: Euler to the log-midpoint sigma, then the full step with the
 * derivative found there. */
static int dpm2_step(smp_t *r, const ts_tensor_t *x, const ts_tensor_t *den, double s, double to,
                     ts_tensor_t **out)
{
    ts_tensor_t *x2 = NULL, *den2 = NULL;
    double mid = exp(log(s) + 0.5 * (log(to) - log(s)));
    int rc = smp_lin2(r, &x2, mid / s, (ts_tensor_t *)x, 1.0 - mid / s, (ts_tensor_t *)den);
    if (!rc)
        rc = smp_model(r, x2, mid, &den2);
    /* x + (to - s) * (x2 - den2) / mid */
    if (!rc)
        rc = smp_lin3(r, out, 1.0, (ts_tensor_t *)x, (to - s) / mid, x2, -(to - s) / mid, den2);
    ts_free(x2);
    ts_free(den2);
    return rc;
}

int smp_dpm_2(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1];
        ts_tensor_t *t[TMP] = {0};
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc && s1 == 0.0)
            rc = smp_lin2(r, &t[1], 0.0, *x, 1.0, t[0]);
        else if (!rc)
            rc = dpm2_step(r, *x, t[0], s, s1, &t[1]);
        if ((rc = smp_step_end(r, i, x, t, TMP, 1, rc)))
            return rc;
    }
    return 0;
}

int smp_dpm_2_ancestral(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1], down, up;
        smp_ancestral_step(s, s1, 1.0, &down, &up);
        ts_tensor_t *t[TMP] = {0};
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc && down == 0.0) {
            rc = smp_lin2(r, &t[1], 0.0, *x, 1.0, t[0]);
        } else if (!rc) {
            rc = dpm2_step(r, *x, t[0], s, down, &t[1]);
            if (!rc)
                rc = smp_add_noise(r, &t[1], up);
        }
        if ((rc = smp_step_end(r, i, x, t, TMP, 1, rc)))
            return rc;
    }
    return 0;
}

/* DPM-Solver++(2S) to the ancestral step's sigma_down, midpoint in λ, then noise. */
int smp_dpmpp_2s_ancestral(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1], down, up;
        smp_ancestral_step(s, s1, 1.0, &down, &up);
        ts_tensor_t *t[TMP] = {0}; /* den, x2, den2, new x */
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc && down == 0.0) {
            rc = smp_lin2(r, &t[3], 0.0, *x, 1.0, t[0]);
        } else if (!rc) {
            double h = log(s) - log(down), smid = exp(-(-log(s) + 0.5 * h));
            rc = smp_lin2(r, &t[1], smid / s, *x, -expm1(-0.5 * h), t[0]);
            if (!rc)
                rc = smp_model(r, t[1], smid, &t[2]);
            if (!rc)
                rc = smp_lin2(r, &t[3], down / s, *x, -expm1(-h), t[2]);
        }
        if (!rc && s1 > 0.0)
            rc = smp_add_noise(r, &t[3], up);
        if ((rc = smp_step_end(r, i, x, t, TMP, 3, rc)))
            return rc;
    }
    return 0;
}

/* DPM-Solver++ (stochastic, r = 1/2): a half step in λ and a full step, each an ancestral
 * step in σ with fresh noise; the full step uses the midpoint prediction (weight 1/(2r)). */
int smp_dpmpp_sde(smp_t *r, ts_tensor_t **x)
{
    const double rr = 0.5, eta = 1.0, fac = 1.0 / (2 * rr);
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1];
        ts_tensor_t *t[TMP] = {0}; /* den, x2, den2, new x */
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc && s1 == 0.0) {
            rc = smp_lin2(r, &t[3], 0.0, *x, 1.0, t[0]);
        } else if (!rc) {
            double ls = -log(s), lt = -log(s1), h = lt - ls, ls1 = ls + rr * h;
            double smid = exp(-ls1), down, up;
            smp_ancestral_step(s, smid, eta, &down, &up);
            double h_ = -log(down) - ls;
            rc = smp_lin2(r, &t[1], exp(-h_), *x, -expm1(-h_), t[0]);
            if (!rc)
                rc = smp_add_noise(r, &t[1], up);
            if (!rc)
                rc = smp_model(r, t[1], smid, &t[2]);
            smp_ancestral_step(s, s1, eta, &down, &up);
            h_ = -log(down) - ls;
            double cd = -expm1(-h_);
            if (!rc)
                rc = smp_lin3(r, &t[3], exp(-h_), *x, cd * (1.0 - fac), t[0], cd * fac, t[2]);
            if (!rc)
                rc = smp_add_noise(r, &t[3], up);
        }
        if ((rc = smp_step_end(r, i, x, t, TMP, 3, rc)))
            return rc;
    }
    return 0;
}

/* Ancestral DDPM (Ho et al. 2020) posterior sampling, in the variance-preserving latent
 * x/√(1+σ²) with ᾱ = 1/(1+σ²); the complements are written out so that small sigmas do
 * not cancel. */
int smp_ddpm(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1];
        double a = 1.0 + s * s, b = 1.0 + s1 * s1;
        double one_m_ac = s * s / a, one_m_alpha = (s * s - s1 * s1) / a, k = sqrt(a / b);
        double m = one_m_alpha / sqrt(one_m_ac), scale = s1 != 0.0 ? sqrt(b) : 1.0;
        double cx = k * (1.0 / sqrt(a) - m / s) * scale, cd = k * m / s * scale;
        double cz = s1 > 0.0 ? sqrt(one_m_alpha * (s1 * s1 / b) / one_m_ac) * scale : 0.0;
        ts_tensor_t *t[TMP] = {0};
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc)
            rc = smp_lin2(r, &t[1], cx, *x, cd, t[0]);
        if (!rc)
            rc = smp_add_noise(r, &t[1], cz);
        if ((rc = smp_step_end(r, i, x, t, TMP, 1, rc)))
            return rc;
    }
    return 0;
}

/* Latent consistency sampling: jump to the prediction, re-noise to the next level. */
int smp_lcm(smp_t *r, ts_tensor_t **x)
{
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1];
        ts_tensor_t *t[TMP] = {0};
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc) {
            t[1] = ts_ref(t[0]);
            if (s1 > 0.0)
                rc = smp_add_noise(r, &t[1], s1);
        }
        if ((rc = smp_step_end(r, i, x, t, TMP, 1, rc)))
            return rc;
    }
    return 0;
}

/* SEEDS (Gonzalez et al. 2023, arXiv 2305.14267), data prediction, η = 1: exponential
 * integrator stages at fractions r_k of the λ-step, with the stage noises chained so the
 * total noise over the step has the right variance. ei_phi1(h) = e^h - 1,
 * ei_phi2(h) = (e^h - 1 - h)/h. */
static double ei_phi1(double h)
{
    return expm1(h);
}

static double ei_phi2(double h)
{
    return (expm1(h) - h) / h;
}

int smp_seeds_2(smp_t *r, ts_tensor_t **x)
{
    const double eta = 1.0, rr = 0.5, fac = 1.0 / (2 * rr);
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1];
        ts_tensor_t *t[TMP] = {0}; /* den, x2, z1, den2, new x */
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc && s1 == 0.0) {
            rc = smp_lin2(r, &t[4], 0.0, *x, 1.0, t[0]);
        } else if (!rc) {
            double ls = -log(s), h = -log(s1) - ls, h_eta = h * (eta + 1.0);
            double sm = exp(-(ls + rr * h));
            double c1 = sqrt(-expm1(-2.0 * rr * h * eta));
            rc = smp_lin2(r, &t[1], sm / s * exp(-rr * h * eta), *x, -ei_phi1(-rr * h_eta), t[0]);
            if (!rc)
                rc = smp_noise(r, *x, &t[2]);
            if (!rc)
                rc = smp_axpy(r, &t[1], c1 * sm, t[2]);
            if (!rc)
                rc = smp_model(r, t[1], sm, &t[3]);
            double cd = -ei_phi1(-h_eta);
            if (!rc)
                rc = smp_lin3(r, &t[4], s1 / s * exp(-h * eta), *x, cd * (1.0 - fac), t[0], cd * fac, t[3]);
            double seg = (rr - 1.0) * h * eta;
            if (!rc)
                rc = smp_axpy(r, &t[4], s1 * exp(seg) * c1, t[2]);
            if (!rc)
                rc = smp_add_noise(r, &t[4], s1 * sqrt(-expm1(2.0 * seg)));
        }
        if ((rc = smp_step_end(r, i, x, t, TMP, 4, rc)))
            return rc;
    }
    return 0;
}

int smp_seeds_3(smp_t *r, ts_tensor_t **x)
{
    const double eta = 1.0, r1 = 1.0 / 3, r2 = 2.0 / 3;
    for (int i = 0; i < r->n; i++) {
        double s = r->sig[i], s1 = r->sig[i + 1];
        ts_tensor_t *t[TMP] = {0}; /* den, x2, noise, den2, x3, den3, new x, z, tmp */
        int rc = smp_model(r, *x, s, &t[0]);
        if (!rc && s1 == 0.0) {
            rc = smp_lin2(r, &t[6], 0.0, *x, 1.0, t[0]);
        } else if (!rc) {
            double ls = -log(s), h = -log(s1) - ls, h_eta = h * (eta + 1.0);
            double sa = exp(-(ls + r1 * h)), sb = exp(-(ls + r2 * h));
            /* stage 1 */
            rc = smp_lin2(r, &t[1], sa / s * exp(-r1 * h * eta), *x, -ei_phi1(-r1 * h_eta), t[0]);
            if (!rc)
                rc = smp_noise(r, *x, &t[7]);
            double c1 = sqrt(-expm1(-2.0 * r1 * h * eta));
            if (!rc) /* the chained noise, before the sigma factor */
                rc = smp_lin(r, &t[2], 1, &c1, &t[7]);
            if (!rc)
                rc = smp_axpy(r, &t[1], sa, t[2]);
            if (!rc)
                rc = smp_model(r, t[1], sa, &t[3]);
            /* stage 2 */
            double a32 = r2 / r1 * ei_phi2(-r2 * h_eta), a31 = ei_phi1(-r2 * h_eta) - a32;
            if (!rc)
                rc = smp_lin3(r, &t[4], sb / s * exp(-r2 * h * eta), *x, -a31, t[0], -a32, t[3]);
            double seg = (r1 - r2) * h * eta;
            smp_set(&t[7], NULL);
            if (!rc)
                rc = smp_noise(r, *x, &t[7]);
            if (!rc)
                rc = smp_lin2(r, &t[8], exp(seg), t[2], sqrt(-expm1(2.0 * seg)), t[7]);
            if (!rc) {
                smp_set(&t[2], t[8]);
                t[8] = NULL;
                rc = smp_axpy(r, &t[4], sb, t[2]);
            }
            if (!rc)
                rc = smp_model(r, t[4], sb, &t[5]);
            /* stage 3 */
            double b3 = ei_phi2(-h_eta) / r2, b1 = ei_phi1(-h_eta) - b3;
            if (!rc)
                rc = smp_lin3(r, &t[6], s1 / s * exp(-h * eta), *x, -b1, t[0], -b3, t[5]);
            seg = (r2 - 1.0) * h * eta;
            if (!rc)
                rc = smp_axpy(r, &t[6], s1 * exp(seg), t[2]);
            if (!rc)
                rc = smp_add_noise(r, &t[6], s1 * sqrt(-expm1(2.0 * seg)));
        }
        if ((rc = smp_step_end(r, i, x, t, TMP, 6, rc)))
            return rc;
    }
    return 0;
}
