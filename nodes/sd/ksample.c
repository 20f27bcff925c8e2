/* One KSampler call as ComfyUI makes it (sd15-reference.md §5): the noise from the seed, the
 * sigma schedule, the eps denoiser with classifier-free guidance, optional inpainting mask,
 * then the sampler loop with progress, interrupt and previews after each step.
 *
 * Guidance: D = D_uncond + (D_cond - D_uncond) * cfg on denoised outputs; cond and uncond go
 * through the UNet as one batch when each side has one entry (the common case); with several
 * entries (ConditioningCombine) each side is the mean of its entries' predictions; cfg == 1
 * skips the uncond side. Prompts of different lengths are repeated to their least common
 * multiple of 77-token rows, which leaves cross-attention unchanged. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sd/sd_nodes.h"

static const ts_device_t CPU = {TS_CPU, 0};

typedef struct {
    node_ctx_t *ctx;
    const sd_unet_t *unet;
    const sd_sched_t *sched;
    ts_tensor_t **conds, **unconds; /* borrowed [1 or B, L, C] */
    size_t n_cond, n_uncond;
    double cfg;
    ts_tensor_t *mask;         /* owned: [B, 4, h, w] 1 = denoise; NULL = whole latent */
    ts_tensor_t *latent_image; /* owned: scaled latent */
    ts_tensor_t *noise;        /* owned */
    char *err;
    size_t errsz;
} guider_t;

static int ts_err(guider_t *g, const char *what)
{
    snprintf(g->err, g->errsz, "%s: %s", what, ts_last_error());
    return BASE_E_TENSOR;
}

/* ctx repeated along the batch to b and along tokens to `tokens`. */
static int expand_context(const ts_tensor_t *c, int64_t b, int64_t tokens, ts_tensor_t **out)
{
    int64_t cb = ts_size(c, 0), cl = ts_size(c, 1);
    int64_t reps[3] = {cb == b ? 1 : b, tokens / cl, 1};
    if (cb != b && cb != 1)
        return BASE_E_INVAL;
    return ts_repeat(out, c, reps, 3);
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* denoised = x - sigma * UNet(x * c_in, t(sigma), ctx), for the batch x. */
static int eps_denoise(guider_t *g, const ts_tensor_t *x, double sigma, const ts_tensor_t *context, ts_tensor_t **out)
{
    int64_t b = ts_size(x, 0);
    float *tv = malloc((size_t)b * sizeof *tv);
    if (!tv)
        return BASE_E_NOMEM;
    float t = (float)sd_sched_sigma_to_t(g->sched, sigma);
    for (int64_t i = 0; i < b; i++)
        tv[i] = t;
    ts_tensor_t *ts = NULL, *xin = NULL, *eps = NULL;
    int rc = ts_from_host(&ts, tv, TS_F32, &b, 1, CPU);
    free(tv);
    if (rc || (rc = ts_affine(&xin, x, 1.0 / sqrt(sigma * sigma + 1.0), 0.0))) {
        ts_free(ts);
        return ts_err(g, "denoise");
    }
    rc = sd_unet_forward(g->unet, xin, ts, context, &eps, g->err, g->errsz);
    ts_free(ts);
    ts_free(xin);
    if (rc)
        return rc;
    rc = ts_add_scaled(out, x, eps, -sigma);
    ts_free(eps);
    return rc ? ts_err(g, "denoise") : 0;
}

/* The mean denoised prediction over a list of conditionings. */
static int side_mean(guider_t *g, const ts_tensor_t *x, double sigma, ts_tensor_t **conds, size_t n, ts_tensor_t **out)
{
    ts_tensor_t *sum = NULL;
    for (size_t i = 0; i < n; i++) {
        ts_tensor_t *ctxt = NULL, *d = NULL, *tmp = NULL;
        int rc = expand_context(conds[i], ts_size(x, 0), ts_size(conds[i], 1), &ctxt);
        if (rc) {
            ts_free(sum);
            return ts_err(g, "conditioning");
        }
        rc = eps_denoise(g, x, sigma, ctxt, &d);
        ts_free(ctxt);
        if (rc) {
            ts_free(sum);
            return rc;
        }
        if (!sum) {
            sum = d;
            continue;
        }
        rc = ts_add(&tmp, sum, d);
        ts_free(d);
        ts_free(sum);
        if (rc)
            return ts_err(g, "conditioning");
        sum = tmp;
    }
    if (n == 1) {
        *out = sum;
        return 0;
    }
    int rc = ts_affine(out, sum, 1.0 / (double)n, 0.0);
    ts_free(sum);
    return rc ? ts_err(g, "conditioning") : 0;
}

/* cond and uncond in one UNet batch: [x; x] with [cond; uncond] contexts. */
static int batched_cfg(guider_t *g, const ts_tensor_t *x, double sigma, ts_tensor_t **dc, ts_tensor_t **du)
{
    int64_t b = ts_size(x, 0), lc = ts_size(g->conds[0], 1), lu = ts_size(g->unconds[0], 1);
    int64_t l = lc / gcd64(lc, lu) * lu;
    if (l / lc > 4 || l / lu > 4) /* too much padding: run the sides separately */
        return 1;
    ts_tensor_t *cc = NULL, *cu = NULL, *ctxt = NULL, *xx = NULL, *d = NULL;
    int rc = expand_context(g->conds[0], b, l, &cc);
    if (!rc)
        rc = expand_context(g->unconds[0], b, l, &cu);
    if (!rc) {
        ts_tensor_t *pair[2] = {cc, cu};
        rc = ts_cat(&ctxt, pair, 2, 0);
    }
    if (!rc) {
        ts_tensor_t *xs[2] = {(ts_tensor_t *)x, (ts_tensor_t *)x};
        rc = ts_cat(&xx, xs, 2, 0);
    }
    ts_free(cc);
    ts_free(cu);
    if (rc) {
        ts_free(ctxt);
        ts_free(xx);
        return ts_err(g, "guidance");
    }
    rc = eps_denoise(g, xx, sigma, ctxt, &d);
    ts_free(ctxt);
    ts_free(xx);
    if (rc)
        return rc;
    if (ts_slice(dc, d, 0, 0, b) || ts_slice(du, d, 0, b, 2 * b)) {
        ts_free(*dc);
        *dc = NULL;
        ts_free(d);
        return ts_err(g, "guidance");
    }
    ts_free(d);
    return 0;
}

static int guided_denoise(void *ud, const ts_tensor_t *x_in, double sigma, ts_tensor_t **out)
{
    guider_t *g = ud;
    ts_tensor_t *x = ts_ref((ts_tensor_t *)x_in), *dc = NULL, *du = NULL, *d = NULL, *tmp = NULL;
    int rc = 0;
    if (g->mask) { /* outside the mask the state is the source latent at this noise level */
        ts_tensor_t *noised = NULL;
        if (ts_add_scaled(&noised, g->latent_image, g->noise, sigma) || ts_lerp(&tmp, noised, x, g->mask)) {
            ts_free(noised);
            ts_free(x);
            return ts_err(g, "noise mask");
        }
        ts_free(noised);
        sdn_swap(&x, tmp);
    }
    if (g->cfg == 1.0 || g->n_uncond == 0) {
        rc = side_mean(g, x, sigma, g->conds, g->n_cond, &d);
    } else {
        rc = g->n_cond == 1 && g->n_uncond == 1 ? batched_cfg(g, x, sigma, &dc, &du) : 1;
        if (rc == 1) {
            rc = side_mean(g, x, sigma, g->conds, g->n_cond, &dc);
            if (!rc)
                rc = side_mean(g, x, sigma, g->unconds, g->n_uncond, &du);
        }
        if (!rc) {
            ts_tensor_t *diff = NULL;
            if (ts_sub(&diff, dc, du) || ts_add_scaled(&d, du, diff, g->cfg))
                rc = ts_err(g, "guidance");
            ts_free(diff);
        }
    }
    ts_free(dc);
    ts_free(du);
    ts_free(x);
    if (!rc && g->mask) {
        if (ts_lerp(&tmp, g->latent_image, d, g->mask))
            rc = ts_err(g, "noise mask");
        else
            sdn_swap(&d, tmp);
    }
    if (rc) {
        ts_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ------------------------------------------------------------------ steps */

typedef struct {
    node_ctx_t *ctx;
    int offset, total; /* progress counts across a whole call */
} stepper_t;

static int on_step(void *ud, int i, int n, const ts_tensor_t *x, const ts_tensor_t *denoised)
{
    stepper_t *s = ud;
    (void)x;
    if (node_preview_wanted(s->ctx) && denoised) {
        base_buf_t png = {0};
        if (sdn_preview_png(denoised, &png) == 0)
            node_preview_png(s->ctx, png.data, png.len);
        base_buf_free(&png);
    }
    (void)n;
    return node_progress(s->ctx, (uint64_t)(s->offset + i + 1), (uint64_t)s->total);
}

/* ------------------------------------------------------------------ noise */

/* ComfyUI's prepare_noise: one draw for the whole batch, or with batch_index, draws of one
 * item each in index order keeping the ones asked for. */
static int make_noise(node_ctx_t *ctx, const node_value_t *latent, const ts_tensor_t *samples, uint64_t seed,
                      ts_tensor_t **out)
{
    int64_t shape[TS_MAX_DIMS];
    int nd = ts_shape(samples, shape);
    const node_value_t *bi = node_value_dict_get(latent, "batch_index");
    if (!bi || bi->kind != NODE_V_LIST || bi->u.list.n == 0)
        return ts_randn(out, shape, nd, seed, CPU) ? node_fail_ts(ctx, "noise") : 0;
    size_t n = bi->u.list.n;
    int64_t maxi = 0;
    int64_t *idx = malloc(n * sizeof *idx);
    ts_tensor_t **items = calloc(n, sizeof *items);
    if (!idx || !items) {
        free(idx);
        free(items);
        return node_fail(ctx, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const node_value_t *v = bi->u.list.items[i];
        if (!v || v->kind != NODE_V_INT || !base_int_to_i64(v->u.i, &idx[i]) || idx[i] < 0 || idx[i] > 4096) {
            rc = node_fail(ctx, "LATENT batch_index must hold indexes 0..4096");
            break;
        }
        maxi = idx[i] > maxi ? idx[i] : maxi;
    }
    ts_gen_t *gen = NULL;
    if (!rc && ts_gen_new(&gen, seed))
        rc = node_fail_ts(ctx, "noise");
    shape[0] = 1;
    for (int64_t k = 0; !rc && k <= maxi; k++) {
        ts_tensor_t *t = NULL;
        if (ts_randn_gen(&t, shape, nd, gen, CPU)) {
            rc = node_fail_ts(ctx, "noise");
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (idx[i] == k && !items[i])
                items[i] = ts_ref(t);
        ts_free(t);
    }
    ts_gen_free(gen);
    if (!rc && ts_cat(out, items, (int)n, 0))
        rc = node_fail_ts(ctx, "noise");
    for (size_t i = 0; i < n; i++)
        ts_free(items[i]);
    free(items);
    free(idx);
    return rc;
}

/* The noise mask as [B, C, h, w] at latent size (bilinear, as ComfyUI's prepare_mask). */
static int prepare_mask(node_ctx_t *ctx, const ts_tensor_t *mask, const ts_tensor_t *samples, ts_tensor_t **out)
{
    int64_t s[TS_MAX_DIMS];
    ts_shape(samples, s);
    int64_t mshape[4] = {-1, 1, ts_size(mask, -2), ts_size(mask, -1)};
    ts_tensor_t *a = NULL, *b = NULL;
    int rc = ts_reshape(&a, mask, mshape, 4);
    if (!rc)
        rc = ts_interpolate(&b, a, s[2], s[3], TS_INTERP_BILINEAR);
    ts_free(a);
    if (rc)
        return node_fail_ts(ctx, "noise mask");
    int64_t mb = ts_size(b, 0);
    if (mb != s[0] && s[0] % mb != 0) {
        ts_free(b);
        return node_fail(ctx, "noise mask batch %lld does not divide the latent batch %lld", (long long)mb,
                         (long long)s[0]);
    }
    int64_t reps[4] = {s[0] / mb, s[1], 1, 1};
    rc = ts_repeat(out, b, reps, 4);
    ts_free(b);
    return rc ? node_fail_ts(ctx, "noise mask") : 0;
}

static ts_tensor_t **cond_list(const node_value_t *v, size_t *n)
{
    *n = sdn_cond_count(v);
    ts_tensor_t **l = calloc(*n ? *n : 1, sizeof *l);
    if (!l)
        return NULL;
    for (size_t i = 0; i < *n; i++)
        if (!(l[i] = sdn_cond_at(v, i))) {
            free(l);
            return NULL;
        }
    return l;
}

static int ksample_pinned(node_ctx_t *ctx, const sdn_sample_req_t *q);

int sdn_ksample(node_ctx_t *ctx, const sdn_sample_req_t *q)
{
    if (!q->model || !q->model->ck || !(q->model->ck->have & SDN_UNET))
        return node_fail(ctx, "model input is invalid");
    if (sdn_use(q->model->ck, ctx->err, sizeof ctx->err))
        return BASE_E_NODE_FAILED;
    int rc = ksample_pinned(ctx, q);
    sdn_unuse(q->model->ck);
    return rc;
}

/* The sampling itself, with the model's weights pinned in memory. */
static int ksample_pinned(node_ctx_t *ctx, const sdn_sample_req_t *q)
{
    const sdn_ckpt_t *ck = q->model->ck;
    ts_tensor_t *samples = sdn_latent_samples(q->latent);
    if (!samples || ts_ndim(samples) != 4)
        return node_fail(ctx, "latent_image is not a LATENT");
    if (ts_size(samples, 1) != sd_unet_config(ck->unet)->in_channels)
        return node_fail(ctx, "the latent has %lld channels but the model expects %d", (long long)ts_size(samples, 1),
                         sd_unet_config(ck->unet)->in_channels);
    if (q->steps < 1 || q->steps > 10000)
        return node_fail(ctx, "steps must be 1..10000");

    /* Sigmas: the full schedule (or the denoise tail), then the Advanced node's window. */
    double *sig = malloc((size_t)SD_SIGMAS_ROOM(q->steps) * sizeof *sig);
    if (!sig)
        return node_fail(ctx, "out of memory");
    int count = 0;
    int rc = sd_sigmas_for(&ck->sched, q->scheduler, q->sampler, q->steps, q->denoise, sig, &count);
    if (rc) {
        free(sig);
        return node_fail(ctx, "unknown scheduler '%s' or sampler '%s'", q->scheduler, q->sampler);
    }
    double *sigmas = sig;
    if (q->last_step < count - 1) {
        count = q->last_step + 1;
        if (q->force_full_denoise)
            sigmas[count - 1] = 0.0;
    }
    if (q->start_step > 0) {
        if (q->start_step < count - 1) {
            sigmas += q->start_step;
            count -= q->start_step;
        } else {
            count = 0;
        }
    }
    if (count < 2) { /* nothing to do: the latent comes back unchanged */
        free(sig);
        node_set_out(ctx, 0, node_value_ref((node_value_t *)q->latent));
        return 0;
    }

    guider_t g = {.ctx = ctx, .unet = ck->unet, .sched = &ck->sched, .cfg = q->cfg, .err = ctx->err,
                  .errsz = sizeof ctx->err};
    ts_tensor_t *x = NULL, *result = NULL, *out = NULL, *tmp = NULL;
    ts_gen_t *gen = NULL;
    g.conds = cond_list(q->positive, &g.n_cond);
    g.unconds = cond_list(q->negative, &g.n_uncond);
    if (!g.conds || !g.unconds || g.n_cond == 0) {
        rc = node_fail(ctx, "positive conditioning is empty or malformed");
        goto done;
    }
    if ((rc = ts_affine(&g.latent_image, samples, SD_LATENT_SCALE, 0.0))) {
        rc = node_fail_ts(ctx, "latent");
        goto done;
    }
    if (q->add_noise) {
        if ((rc = make_noise(ctx, q->latent, samples, q->seed, &g.noise)))
            goto done;
    } else if (ts_zeros(&g.noise, (int64_t[]){ts_size(samples, 0), ts_size(samples, 1), ts_size(samples, 2),
                                              ts_size(samples, 3)},
                        4, TS_F32, CPU)) {
        rc = node_fail_ts(ctx, "noise");
        goto done;
    }
    const node_value_t *nm = node_value_dict_get(q->latent, "noise_mask");
    if (nm && nm->kind == NODE_V_TENSOR && (rc = prepare_mask(ctx, nm->u.t, samples, &g.mask)))
        goto done;
    /* x = latent + noise * s0, with s0 = sqrt(1 + sigma^2) when starting from sigma_max. */
    double s0 = sigmas[0];
    bool max_denoise = fabs(s0 - ck->sched.sigma_max) <= 1e-5 * fmax(fabs(s0), fabs(ck->sched.sigma_max)) ||
                       s0 > ck->sched.sigma_max;
    if (ts_add_scaled(&x, g.latent_image, g.noise, max_denoise ? sqrt(1.0 + s0 * s0) : s0)) {
        rc = node_fail_ts(ctx, "noise");
        goto done;
    }
    if (ts_gen_new(&gen, q->seed)) {
        rc = node_fail_ts(ctx, "noise");
        goto done;
    }
    stepper_t st = {.ctx = ctx, .offset = 0, .total = count - 1};
    sd_sampler_args_t a = {.denoise = guided_denoise, .denoise_ctx = &g, .step = on_step, .step_ctx = &st,
                           .noise_gen = gen, .sched = &ck->sched, .err = ctx->err, .errsz = sizeof ctx->err};
    node_progress(ctx, 0, (uint64_t)(count - 1));
    rc = sd_sample(q->sampler, &a, x, sigmas, count, &result);
    if (rc == BASE_E_INTERRUPTED || rc == BASE_E_NODE_FAILED)
        goto done;
    if (rc) {
        if (!ctx->err[0])
            snprintf(ctx->err, sizeof ctx->err, "sampling failed: %s", base_strerror(rc));
        rc = BASE_E_NODE_FAILED;
        goto done;
    }
    if (g.mask && !ts_lerp(&tmp, g.latent_image, result, g.mask))
        sdn_swap(&result, tmp);
    if (ts_affine(&out, result, 1.0 / SD_LATENT_SCALE, 0.0)) {
        rc = node_fail_ts(ctx, "latent");
        goto done;
    }
    node_value_t *v = sdn_latent_value(q->latent, out);
    out = NULL;
    if (!v) {
        rc = node_fail(ctx, "out of memory");
        goto done;
    }
    node_set_out(ctx, 0, v);
done:
    ts_gen_free(gen);
    ts_free(x);
    ts_free(result);
    ts_free(out);
    ts_free(g.mask);
    ts_free(g.latent_image);
    ts_free(g.noise);
    free(g.conds);
    free(g.unconds);
    free(sig);
    return rc;
}
