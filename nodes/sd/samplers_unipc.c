/* UniPC (Zhao et al., "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
 * Diffusion Models", NeurIPS 2023), multistep, data prediction, variants B(h) = h ("bh1",
 * ComfyUI's uni_pc) and B(h) = e^h - 1 ("bh2", uni_pc_bh2), as ComfyUI schedules it.
 *
 * What is implemented, in the paper's notation with λ = -ln σ (half log-SNR of the EPS model
 * in variance-exploding form, where every α_t is 1) and m_k the model's data predictions:
 *
 *   order p = min(3, steps - 1): the first p-1 steps warm up with orders 1, 2, ...; after
 *   that every step is order p, except that the final ones drop to the steps left
 *   ("lower order final"). A step from σ_s to σ_t of order k, h = λ_t - λ_s, hh = -h:
 *     r_i = (λ_{s_i} - λ_s)/h for the k-1 earlier points, D1_i = (m_{s_i} - m_s)/r_i;
 *     φ_1 = e^{hh} - 1 (the factor h·φ_1(h) in the paper); with g_1 = φ_1/hh - 1 and
 *     g_{i+1} = g_i/hh - 1/(i+1)!, b_i = g_i · i! / B(h), R_{ij} = r_j^(i-1) (r_k = 1);
 *     base    x_t' = (σ_t/σ_s)·x - φ_1·m_s  (DPM-Solver++ first order);
 *     UniP    x_t  = x_t' - B(h)·Σ ρp_i·D1_i, ρp solving the top-left (k-1)×(k-1) system
 *                    (ρp = 1/2 for k = 2);
 *     UniC    m_t  = D(x_t, σ_t);  x_t = x_t' - B(h)·(Σ ρc_i·D1_i + ρc_k·(m_t - m_s)), ρc
 *                    solving the full k×k system (ρc = 1/2 for k = 1).
 *   The corrector runs on every step but the last, and its model evaluation m_t is reused
 *   as the next step's m_s (one model call per step, as in the paper).
 *
 * ComfyUI specifics kept: the last sigma 0 is replaced by 0.001 (the result is the state at
 * σ = 0.001, not the prediction), and KSampler removes the penultimate sigma of the
 * schedule for uni_pc (schedulers.c). ComfyUI works on the variance-preserving latent
 * x/√(1+σ²) in float32; this works on x directly with double coefficients, which is the
 * same recursion (the VP factors cancel) without ComfyUI's float32 cancellation in
 * 1 - 1/(1+σ²) at σ = 0.001; on the Gaussian toy the two differ by < 5e-6 over 20 steps and
 * < 3e-5 over 2..5 steps (tests/reference/samplers.py). Deliberate difference: for a single
 * step ComfyUI computes order 0, takes no step and returns x/√(1+σ_0²), i.e. the noise;
 * here a single step is a first-order step. */
#include <math.h>
#include <string.h>

#include "err.h"
#include "sd/samplers_internal.h"

enum { MAX_ORDER = 3 };

/* Solves the n×n system a·x = b (n <= 3) by Gaussian elimination with partial pivoting;
 * false when it is singular. */
static bool solve(int n, double a[MAX_ORDER][MAX_ORDER], double *b, double *x)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int i = c + 1; i < n; i++) {
            if (fabs(a[i][c]) > fabs(a[p][c]))
                p = i;
        }
        if (!(fabs(a[p][c]) > 1e-300))
            return false;
        for (int j = 0; j < n; j++) {
            double t = a[c][j];
            a[c][j] = a[p][j];
            a[p][j] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int i = c + 1; i < n; i++) {
            double f = a[i][c] / a[c][c];
            for (int j = c; j < n; j++)
                a[i][j] -= f * a[c][j];
            b[i] -= f * b[c];
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        double sum = b[i];
        for (int j = i + 1; j < n; j++)
            sum -= a[i][j] * x[j];
        x[i] = sum / a[i][i];
    }
    return true;
}

typedef struct {
    ts_tensor_t *m[MAX_ORDER]; /* model predictions, newest last */
    double s[MAX_ORDER];       /* their sigmas */
    int len;
} unipc_hist_t;

/* One UniPC step of the given order from the newest history point to sigma t. On success
 * *out is the new state and *mt the corrector's model evaluation at the predicted state
 * (NULL without corrector). */
static int unipc_update(smp_t *r, bool bh2, const ts_tensor_t *x, const unipc_hist_t *hs, double t, int order,
                        bool corrector, ts_tensor_t **out, ts_tensor_t **mt)
{
    *out = NULL;
    *mt = NULL;
    double s0 = hs->s[hs->len - 1];
    ts_tensor_t *m0 = hs->m[hs->len - 1];
    double h = log(s0) - log(t), hh = -h;
    double rk[MAX_ORDER];
    for (int i = 1; i < order; i++)
        rk[i - 1] = (log(s0) - log(hs->s[hs->len - 1 - i])) / h;
    rk[order - 1] = 1.0;

    double phi1 = expm1(hh), g = phi1 / hh - 1.0, bh = bh2 ? expm1(hh) : hh, fact = 1.0;
    double R[MAX_ORDER][MAX_ORDER], b[MAX_ORDER];
    for (int i = 1; i <= order; i++) {
        for (int j = 0; j < order; j++)
            R[i - 1][j] = pow(rk[j], i - 1);
        b[i - 1] = g * fact / bh;
        fact *= i + 1;
        g = g / hh - 1.0 / fact;
    }

    double rho_p[MAX_ORDER] = {0}, rho_c[MAX_ORDER] = {0};
    if (order == 2) {
        rho_p[0] = 0.5;
    } else if (order > 2) {
        double a[MAX_ORDER][MAX_ORDER], bb[MAX_ORDER];
        memcpy(a, R, sizeof a);
        memcpy(bb, b, sizeof bb);
        if (!solve(order - 1, a, bb, rho_p))
            return smp_failf(r, BASE_E_INVAL, "sampler '%s': repeated sigmas in the schedule", r->name);
    }
    if (corrector && order == 1) {
        rho_c[0] = 0.5;
    } else if (corrector) {
        if (!solve(order, R, b, rho_c))
            return smp_failf(r, BASE_E_INVAL, "sampler '%s': repeated sigmas in the schedule", r->name);
    }

    /* Every term is a weighted sum of x, m0 and the earlier predictions m_i (the D1_i
     * expanded), so each stage is one linear combination. */
    double c[MAX_ORDER + 2];
    ts_tensor_t *v[MAX_ORDER + 2];
    int k = 0;
    c[k] = t / s0;
    v[k++] = (ts_tensor_t *)x;
    c[k] = -phi1;
    v[k++] = m0;
    for (int i = 1; i < order; i++) {
        double w = -bh * rho_p[i - 1] / rk[i - 1];
        c[1] -= w;
        c[k] = w;
        v[k++] = hs->m[hs->len - 1 - i];
    }
    int rc = smp_lin(r, out, k, c, v);
    if (rc || !corrector)
        return rc;

    rc = smp_model(r, *out, t, mt);
    if (rc)
        return rc;
    k = 0;
    c[k] = t / s0;
    v[k++] = (ts_tensor_t *)x;
    c[k] = -phi1 + bh * rho_c[order - 1];
    v[k++] = m0;
    for (int i = 1; i < order; i++) {
        double w = -bh * rho_c[i - 1] / rk[i - 1];
        c[1] -= w;
        c[k] = w;
        v[k++] = hs->m[hs->len - 1 - i];
    }
    c[k] = -bh * rho_c[order - 1];
    v[k++] = *mt;
    ts_tensor_t *corrected = NULL;
    rc = smp_lin(r, &corrected, k, c, v);
    if (rc)
        return rc;
    smp_set(out, corrected);
    return 0;
}

static int unipc(smp_t *r, ts_tensor_t **x, bool bh2)
{
    int n = r->n;
    int order = n - 1 < MAX_ORDER ? n - 1 : MAX_ORDER;
    if (order < 1)
        order = 1;
    unipc_hist_t hs = {0};
    int rc = smp_model(r, *x, r->sig[0], &hs.m[0]);
    if (rc)
        return rc;
    hs.s[0] = r->sig[0];
    hs.len = 1;
    for (int k = 1; !rc && k <= n; k++) {
        double t = r->sig[k];
        if (k == n && t == 0.0)
            t = 0.001;
        int step_order = k < order ? k : (order < n + 1 - k ? order : n + 1 - k);
        bool corrector = k < n;
        ts_tensor_t *nx = NULL, *mt = NULL;
        rc = unipc_update(r, bh2, *x, &hs, t, step_order, corrector, &nx, &mt);
        if (rc) {
            ts_free(nx);
            ts_free(mt);
            break;
        }
        smp_set(x, nx);
        if (k < n && !mt) /* not reached: the corrector always evaluates before the end */
            rc = smp_model(r, *x, t, &mt);
        if (mt) {
            if (hs.len == order) { /* full: drop the oldest */
                ts_free(hs.m[0]);
                for (int i = 1; i < hs.len; i++) {
                    hs.m[i - 1] = hs.m[i];
                    hs.s[i - 1] = hs.s[i];
                }
                hs.len--;
            }
            hs.m[hs.len] = mt;
            hs.s[hs.len++] = t;
        }
        if (!rc)
            rc = smp_done(r, k - 1, *x, hs.m[hs.len - 1]);
    }
    for (int i = 0; i < hs.len; i++)
        ts_free(hs.m[i]);
    return rc;
}

int smp_uni_pc(smp_t *r, ts_tensor_t **x)
{
    return unipc(r, x, false);
}

int smp_uni_pc_bh2(smp_t *r, ts_tensor_t **x)
{
    return unipc(r, x, true);
}
