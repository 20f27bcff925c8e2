/* Sampler previews: a linear projection of the 4 SD1.5 latent channels to RGB (the published
 * "latent2rgb" factors), at latent resolution, PNG-encoded. Cheap enough for every step. */
#include <stdlib.h>

#include "image/png.h"
#include "sd/sd_nodes.h"

static const float sd15_rgb_factors[4][3] = {
    {0.3512f, 0.2297f, 0.3227f},
    {0.3250f, 0.4974f, 0.2350f},
    {-0.2829f, 0.1762f, 0.2721f},
    {-0.2120f, -0.2616f, -0.5009f},
};

int sdn_preview_png(const ts_tensor_t *x0, base_buf_t *png)
{
    int64_t s[TS_MAX_DIMS];
    if (!x0 || ts_shape(x0, s) != 4 || s[1] != 4 || s[0] < 1 || s[2] < 1 || s[3] < 1 || s[2] * s[3] > (1 << 22))
        return BASE_E_INVAL;
    int64_t h = s[2], w = s[3];
    size_t n = (size_t)(h * w);
    float *lat = malloc(4 * n * sizeof *lat);
    uint8_t *rgb = malloc(3 * n);
    ts_tensor_t *first = NULL;
    int rc = lat && rgb ? 0 : BASE_E_NOMEM;
    if (!rc)
        rc = ts_slice(&first, x0, 0, 0, 1);
    if (!rc)
        rc = ts_to_host(first, TS_F32, lat, 4 * n * sizeof *lat);
    ts_free(first);
    if (!rc) {
        for (size_t p = 0; p < n; p++)
            for (int c = 0; c < 3; c++) {
                float v = 0.0f;
                for (int k = 0; k < 4; k++)
                    v += lat[k * n + p] * sd15_rgb_factors[k][c];
                v = (v + 1.0f) * 0.5f;
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                rgb[3 * p + (size_t)c] = (uint8_t)(v * 255.0f);
            }
        node_png_write_t wr = {.pixels = rgb, .width = (uint32_t)w, .height = (uint32_t)h, .channels = 3, .level = 1};
        rc = node_png_encode(&wr, png, NULL, 0);
    }
    free(lat);
    free(rgb);
    return rc;
}
