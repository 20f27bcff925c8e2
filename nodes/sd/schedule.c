/* The discrete SD1.5 noise schedule (sd15-reference.md §5.1, §5.3): the 1000 sigmas of the
 * "scaled linear" β schedule, and the conversions between sigma and timestep that ComfyUI's
 * ModelSamplingDiscrete performs. The table is computed in float64 and stored as float32
 * values; the conversions run in float32 like the torch code they mirror, so schedules built
 * from them round the same way. */
#include <math.h>

#include "sd/sd.h"

#define BETA_START 0.00085
#define BETA_END 0.012

/* torch.linspace in float64 (CPU): the first half counts up from start, the second half
 * down from end, which keeps both endpoints exact. */
static double linspace64(double start, double end, int steps, int i)
{
    double step = (end - start) / (double)(steps - 1);
    return i < steps / 2 ? start + step * i : end - step * (double)(steps - i - 1);
}

void sd_sched_init(sd_sched_t *s)
{
    double a = sqrt(BETA_START), b = sqrt(BETA_END);
    double cumprod = 1.0;
    for (int i = 0; i < SD_TIMESTEPS; i++) {
        double r = linspace64(a, b, SD_TIMESTEPS, i);
        cumprod *= 1.0 - r * r;
        double sigma = sqrt((1.0 - cumprod) / cumprod);
        s->sigmas[i] = (float)sigma;
        s->log_sigmas[i] = (float)log(sigma);
    }
    s->sigma_min = s->sigmas[0];
    s->sigma_max = s->sigmas[SD_TIMESTEPS - 1];
}

double sd_sched_sigma_to_t(const sd_sched_t *s, double sigma)
{
    float ls = logf((float)sigma);
    int best = 0;
    float best_d = INFINITY;
    for (int i = 0; i < SD_TIMESTEPS; i++) {
        float d = fabsf(ls - (float)s->log_sigmas[i]);
        if (d < best_d) { /* strict: the first of equal distances wins, as argmin does */
            best_d = d;
            best = i;
        }
    }
    return best;
}

double sd_sched_t_to_sigma(const sd_sched_t *s, double t)
{
    float tf = (float)t;
    if (!(tf > 0.0f)) /* also maps NaN to 0 rather than indexing with it */
        tf = 0.0f;
    if (tf > (float)(SD_TIMESTEPS - 1))
        tf = (float)(SD_TIMESTEPS - 1);
    int lo = (int)floorf(tf), hi = (int)ceilf(tf);
    float w = tf - floorf(tf);
    float ls = (1.0f - w) * (float)s->log_sigmas[lo] + w * (float)s->log_sigmas[hi];
    return expf(ls);
}
