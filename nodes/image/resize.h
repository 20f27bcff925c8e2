/* Any thread. Private to nodes/image: ComfyUI's comfy.utils.common_upscale for IMAGE
 * tensors, shared by ImageScale and ImageBatch. */
#ifndef WEFT_NODES_IMAGE_RESIZE_H
#define WEFT_NODES_IMAGE_RESIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "nodes.h"

typedef enum {
    NODE_RESIZE_NEAREST_EXACT,
    NODE_RESIZE_BILINEAR,
    NODE_RESIZE_AREA,
    NODE_RESIZE_BICUBIC,
    NODE_RESIZE_LANCZOS,
} node_resize_t;

/* ImageScale's option names ("nearest-exact", "bilinear", "area", "bicubic", "lanczos").
 * 0 or BASE_E_INVAL. */
int node_resize_from_name(const char *name, node_resize_t *out);

/* Resizes img (B×H×W×C float) to h×w (each 1..16384). center: first crop the source
 * centrally to the target aspect ratio, as ComfyUI's crop="center". *out is a NEW
 * contiguous reference. On failure returns a code with the message set in ctx (node_fail),
 * or BASE_E_INTERRUPTED from node_progress. */
int node_image_resize(node_ctx_t *ctx, const ts_tensor_t *img, int64_t w, int64_t h,
                      node_resize_t method, bool center, ts_tensor_t **out);

/* PIL's Image.resize(LANCZOS) of one 8-bit image: in h_in×w_in×c → out h_out×w_out×c,
 * separable (horizontal pass, 8-bit intermediate, vertical pass) with 22-bit fixed-point
 * weights, so results match PIL's byte for byte. 0 or BASE_E_NOMEM/BASE_E_INVAL. */
int node_lanczos_u8(const uint8_t *in, int w_in, int h_in, int c, uint8_t *out, int w_out,
                    int h_out);

/* ComfyUI's float→8-bit rule (SaveImage, and the PIL round trip of lanczos):
 * clip(255 * x, 0, 255) computed in float32, then truncated; NaN gives 0. */
void node_image_quantize_u8(const float *src, uint8_t *dst, size_t n);

#endif
