/* Stable Diffusion compute benchmark (run by hand; figures go in the README).
 *
 *   sd_unet CHECKPOINT [--size 512] [--steps 2] [--batch 2]
 *
 * Measures on this machine:
 *   - checkpoint load: st_open + all three components (warm page cache: run twice),
 *   - seconds per UNet evaluation at size x size (latent size/8) with batch 2 (one CFG step),
 *   - achieved GFLOP/s of that step from the analytic count of sd15-reference.md §9
 *     (conv + linear + attention multiply-accumulates, 2 FLOP each), computed for the
 *     checkpoint's detected config, against a large at::mm on the same machine,
 *   - peak RSS, with the fp32 weight bytes for comparison.
 * Write a full-size random checkpoint with `weft demo-model --size full`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sd/sd.h"

static const ts_device_t CPU = {TS_CPU, 0};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Multiply-accumulates of one UNet evaluation per batch item at latent h x w, from the
 * config: convs and linears by their weight shapes and output sizes, attention QK^T and AV. */
static double unet_macs(const sd_unet_config_t *c, int64_t h, int64_t w)
{
    double macs = 0;
    int64_t mc = c->model_channels, ctx_len = 77;
    int64_t ch = mc, hh = h, ww = w;
    double temb = (double)mc * c->time_embed_dim + (double)c->time_embed_dim * c->time_embed_dim;
    macs += temb;
#define CONV(cin, cout, k, n) (macs += (double)(cin) * (cout) * (k) * (k) * (double)(n))
#define RES(cin, cout, n)                                                                               \
    do {                                                                                                 \
        CONV(cin, cout, 3, n);                                                                           \
        CONV(cout, cout, 3, n);                                                                          \
        if ((cin) != (cout))                                                                             \
            CONV(cin, cout, 1, n);                                                                       \
        macs += (double)c->time_embed_dim * (cout);                                                      \
    } while (0)
#define XF(C, n, depth)                                                                                  \
    do {                                                                                                 \
        double N = (double)(n);                                                                          \
        macs += 2.0 * (double)(C) * (C) * N; /* proj_in, proj_out */                                     \
        for (int d_ = 0; d_ < (depth); d_++) {                                                           \
            macs += 4.0 * (double)(C) * (C) * N;             /* self q k v out */                        \
            macs += 2.0 * N * N * (double)(C);               /* self QK^T and AV */                      \
            macs += 2.0 * (double)(C) * (C) * N;             /* cross q and out */                       \
            macs += 2.0 * (double)c->context_dim * (C) * ctx_len; /* cross k v */                       \
            macs += 2.0 * N * ctx_len * (double)(C);         /* cross QK^T and AV */                     \
            macs += (double)(C) * 8 * (C) * N + 4.0 * (double)(C) * (C) * N; /* GEGLU ff */              \
        }                                                                                                \
    } while (0)
    int64_t skips[64], ns = 0;
    CONV(c->in_channels, mc, 3, hh * ww);
    skips[ns++] = mc;
    for (int l = 0; l < c->levels; l++) {
        int64_t out = mc * c->channel_mult[l];
        for (int r = 0; r < c->num_res_blocks; r++) {
            RES(ch, out, hh * ww);
            ch = out;
            if (c->transformer_depth[l])
                XF(ch, hh * ww, c->transformer_depth[l]);
            skips[ns++] = ch;
        }
        if (l != c->levels - 1) {
            hh = (hh + 1) / 2;
            ww = (ww + 1) / 2;
            CONV(ch, ch, 3, hh * ww);
            skips[ns++] = ch;
        }
    }
    RES(ch, ch, hh * ww);
    if (c->middle_depth > 0)
        XF(ch, hh * ww, c->middle_depth);
    RES(ch, ch, hh * ww);
    for (int l = c->levels - 1; l >= 0; l--) {
        int64_t out = mc * c->channel_mult[l];
        for (int r = 0; r <= c->num_res_blocks; r++) {
            int64_t skip = skips[--ns];
            RES(ch + skip, out, hh * ww);
            ch = out;
            if (c->transformer_depth[l])
                XF(ch, hh * ww, c->transformer_depth[l]);
        }
        if (l) {
            hh *= 2;
            ww *= 2;
            CONV(ch, ch, 3, hh * ww);
        }
    }
    CONV(mc, c->out_channels, 3, hh * ww);
    return macs;
}

/* Sustained at::mm rate: repeated 4096x1280x1280 products for about 3 s, so the figure sees
 * the same machine conditions as a UNet step (a best-of-5 burst flatters a shared machine). */
static double mm_gflops(void)
{
    int64_t a_shape[2] = {4096, 1280}, b_shape[2] = {1280, 1280};
    ts_tensor_t *a = NULL, *b = NULL, *c = NULL;
    if (ts_randn(&a, a_shape, 2, 1, CPU) || ts_randn(&b, b_shape, 2, 2, CPU))
        return 0;
    if (ts_matmul(&c, a, b) == 0) /* warm-up */
        ts_free(c);
    int n = 0;
    double t0 = now(), t = 0;
    while ((t = now() - t0) < 3.0 && ts_matmul(&c, a, b) == 0) {
        ts_free(c);
        n++;
    }
    ts_free(a);
    ts_free(b);
    return n ? 2.0 * 4096 * 1280 * 1280 * n / t / 1e9 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CHECKPOINT [--size 512] [--steps 2] [--batch 2]\n", argv[0]);
        return 2;
    }
    int size = 512, steps = 2, batch = 2;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size"))
            size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
    }
    ts_init(0);
    char err[512] = "";
    double t0 = now();
    st_file_t *f = NULL;
    sdw_t *wu = NULL, *wc = NULL, *wv = NULL;
    sd_unet_t *u = NULL;
    sd_clip_t *clip = NULL;
    sd_vae_t *vae = NULL;
    if (st_open(&f, argv[1], err, sizeof err) || sdw_from_file(&wu, f, "model.diffusion_model.", err, sizeof err) ||
        sd_unet_load(&u, wu, st_meta(f, "unet.num_heads"), st_meta(f, "unet.num_head_channels"), err, sizeof err) ||
        sdw_from_file(&wc, f, "cond_stage_model.transformer.", err, sizeof err) ||
        sd_clip_load(&clip, wc, st_meta(f, "clip.num_heads"), err, sizeof err) ||
        sdw_from_file(&wv, f, "first_stage_model.", err, sizeof err) || sd_vae_load(&vae, wv, err, sizeof err)) {
        fprintf(stderr, "load failed: %s\n", err);
        return 1;
    }
    st_close(f);
    double load_s = now() - t0;
    const sd_unet_config_t *cfg = sd_unet_config(u);
    size_t weight_bytes = sdw_bytes(sd_unet_weights(u)) + sdw_bytes(sd_clip_weights(clip)) + sdw_bytes(sd_vae_weights(vae));
    printf("checkpoint load: %.3f s (%.2f GB of fp32 weights; rss %.0f MB)\n", load_s, (double)weight_bytes / 1e9,
           peak_rss_mb());

    int64_t lh = size / 8, lw = size / 8;
    int64_t xs[4] = {batch, cfg->in_channels, lh, lw}, cs[3] = {batch, 77, cfg->context_dim};
    ts_tensor_t *x = NULL, *ctx = NULL, *t = NULL, *eps = NULL;
    float tv[64];
    for (int i = 0; i < batch && i < 64; i++)
        tv[i] = 500.0f;
    int64_t tn = batch;
    if (ts_randn(&x, xs, 4, 1, CPU) || ts_randn(&ctx, cs, 3, 2, CPU) || ts_from_host(&t, tv, TS_F32, &tn, 1, CPU)) {
        fprintf(stderr, "inputs: %s\n", ts_last_error());
        return 1;
    }
    double best = 1e9, total = 0;
    for (int i = 0; i < steps; i++) {
        double s0 = now();
        if (sd_unet_forward(u, x, t, ctx, &eps, err, sizeof err)) {
            fprintf(stderr, "forward: %s\n", err);
            return 1;
        }
        double s = now() - s0;
        ts_free(eps);
        total += s;
        best = s < best ? s : best;
        printf("  step %d: %.2f s\n", i + 1, s);
    }
    double flop = 2.0 * unet_macs(cfg, lh, lw) * batch;
    double mm = mm_gflops();
    printf("UNet %dx%d batch %d: best %.2f s/step, mean %.2f s/step\n", size, size, batch, best, total / steps);
    printf("  %.1f GFLOP per step -> %.1f GFLOP/s; at::mm 4096x1280x1280 sustained: %.1f GFLOP/s (%.0f%%)\n", flop / 1e9,
           flop / best / 1e9, mm, 100.0 * (flop / best / 1e9) / mm);
    /* VAE decode of one latent at this size, and one CLIP row. */
    int64_t zs[4] = {1, 4, lh, lw};
    ts_tensor_t *z = NULL, *img = NULL, *cond = NULL, *pooled = NULL;
    if (ts_randn(&z, zs, 4, 3, CPU) == 0) {
        double v0 = now();
        if (sd_vae_decode(vae, z, &img, err, sizeof err) == 0)
            printf("VAE decode %dx%d: %.2f s\n", size, size, now() - v0);
        else
            fprintf(stderr, "vae: %s\n", err);
        ts_free(img);
        ts_free(z);
    }
    int32_t ids[CLIPT_ROW];
    float wts[CLIPT_ROW];
    for (int i = 0; i < CLIPT_ROW; i++) {
        ids[i] = i == 0 ? CLIPT_BOS : i < 10 ? 320 + i : CLIPT_EOS;
        wts[i] = 1.0f;
    }
    clipt_rows_t rows = {.rows = 1, .ids = ids, .weights = wts};
    double c0 = now();
    if (sd_clip_encode(clip, &rows, -1, &cond, &pooled, err, sizeof err) == 0)
        printf("CLIP encode (one 77-token row): %.3f s\n", now() - c0);
    ts_free(cond);
    ts_free(pooled);
    printf("peak RSS: %.0f MB (fp32 weights %.0f MB)\n", peak_rss_mb(), (double)weight_bytes / 1e6);
    ts_free(x);
    ts_free(ctx);
    ts_free(t);
    sd_unet_free(u);
    sd_clip_free(clip);
    sd_vae_free(vae);
    return 0;
}
