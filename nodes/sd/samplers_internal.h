/* Private to the sampler files (samplers*.c): the state of one sampling run and the small
 * tensor vocabulary the update rules are written in.
 *
 * Conventions for a sampler function: it receives the run and *x, an owned reference to the
 * current state, and replaces *x as it goes (the old reference freed), so on any error the
 * caller only has to free *x. Every intermediate tensor is freed before returning. Scalar
 * coefficients are computed in double; the tensor ops run in the tensor's dtype. */
#ifndef WEFT_SD_SAMPLERS_INTERNAL_H
#define WEFT_SD_SAMPLERS_INTERNAL_H

#include "sd/sd.h"

typedef struct {
    const sd_sampler_args_t *a;
    const char *name;  /* the sampler, for messages */
    const double *sig; /* sig[0..n]: positive except possibly sig[n] */
    int n;             /* number of steps */
} smp_t;

typedef int (*smp_fn)(smp_t *r, ts_tensor_t **x);

/* Writes "sampler '<name>': <what>: <ts_last_error()>" to the error buffer; returns rc. */
int smp_fail(smp_t *r, int rc, const char *what);
/* printf-style message to the error buffer; returns rc. */
int smp_failf(smp_t *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* D(x, sigma) through the caller's denoiser; its error code passes through unchanged (and its
 * message, or a generic one when it left none). */
int smp_model(smp_t *r, const ts_tensor_t *x, double sigma, ts_tensor_t **den);
/* Standard normal noise of x's shape from the run's generator (the next draw in its stream). */
int smp_noise(smp_t *r, const ts_tensor_t *like, ts_tensor_t **z);
/* The step callback after step i; its non-zero return stops the run. */
int smp_done(smp_t *r, int i, const ts_tensor_t *x, const ts_tensor_t *den);

/* out = sum of c[i] * t[i] over the k terms; terms with c[i] == 0 are skipped (a zero
 * weight must not turn an inf into a NaN). */
int smp_lin(smp_t *r, ts_tensor_t **out, int k, const double *c, ts_tensor_t *const *t);
int smp_lin2(smp_t *r, ts_tensor_t **out, double c0, ts_tensor_t *t0, double c1, ts_tensor_t *t1);
int smp_lin3(smp_t *r, ts_tensor_t **out, double c0, ts_tensor_t *t0, double c1, ts_tensor_t *t1, double c2,
             ts_tensor_t *t2);
/* *x += c * t (no-op for c == 0). */
int smp_axpy(smp_t *r, ts_tensor_t **x, double c, const ts_tensor_t *t);
/* *x += c * z with z a fresh noise draw (no draw at all for c == 0). */
int smp_add_noise(smp_t *r, ts_tensor_t **x, double c);
/* The ODE derivative d = (x - den) / sigma. */
int smp_deriv(smp_t *r, ts_tensor_t **d, const ts_tensor_t *x, const ts_tensor_t *den, double sigma);
/* Replaces *slot by v (freeing the old reference). */
void smp_set(ts_tensor_t **slot, ts_tensor_t *v);
/* Frees and clears t[0..n). */
void smp_drop(ts_tensor_t **t, int n);
/* The shared tail of a sampler step: when rc is 0, t[next] becomes the new *x and the step
 * callback runs with the prediction t[0]; then t[0..n) are freed. Returns rc, or the
 * callback's code (BASE_E_INTERRUPTED stops the sampler). */
int smp_step_end(smp_t *r, int i, ts_tensor_t **x, ts_tensor_t **t, int n, int next, int rc);

/* k-diffusion's get_ancestral_step: the sigma to step down to and the noise to add so the
 * marginal at `to` is right (eta 1 = full ancestral, 0 = deterministic). */
void smp_ancestral_step(double from, double to, double eta, double *down, double *up);

/* The samplers, by file. */
int smp_euler(smp_t *r, ts_tensor_t **x);
int smp_euler_ancestral(smp_t *r, ts_tensor_t **x);
int smp_heun(smp_t *r, ts_tensor_t **x);
int smp_heunpp2(smp_t *r, ts_tensor_t **x);
int smp_dpm_2(smp_t *r, ts_tensor_t **x);
int smp_dpm_2_ancestral(smp_t *r, ts_tensor_t **x);
int smp_dpmpp_2s_ancestral(smp_t *r, ts_tensor_t **x);
int smp_dpmpp_sde(smp_t *r, ts_tensor_t **x);
int smp_ddpm(smp_t *r, ts_tensor_t **x);
int smp_lcm(smp_t *r, ts_tensor_t **x);
int smp_seeds_2(smp_t *r, ts_tensor_t **x);
int smp_seeds_3(smp_t *r, ts_tensor_t **x);

int smp_lms(smp_t *r, ts_tensor_t **x);
int smp_dpmpp_2m(smp_t *r, ts_tensor_t **x);
int smp_dpmpp_2m_sde(smp_t *r, ts_tensor_t **x);
int smp_dpmpp_2m_sde_heun(smp_t *r, ts_tensor_t **x);
int smp_dpmpp_3m_sde(smp_t *r, ts_tensor_t **x);
int smp_ipndm(smp_t *r, ts_tensor_t **x);
int smp_ipndm_v(smp_t *r, ts_tensor_t **x);
int smp_deis(smp_t *r, ts_tensor_t **x);
int smp_res_multistep(smp_t *r, ts_tensor_t **x);
int smp_res_multistep_ancestral(smp_t *r, ts_tensor_t **x);
int smp_gradient_estimation(smp_t *r, ts_tensor_t **x);
int smp_er_sde(smp_t *r, ts_tensor_t **x);

int smp_uni_pc(smp_t *r, ts_tensor_t **x);
int smp_uni_pc_bh2(smp_t *r, ts_tensor_t **x);

#endif
