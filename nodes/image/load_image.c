/* LoadImage: a PNG from input/ (or output/ or temp/ through an annotation suffix) to an
 * IMAGE and a MASK, as ComfyUI's LoadImage does for single-frame images. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/png.h"
#include "nodes.h"

static const char *const image_exts[] = {".png",  ".jpg", ".jpeg", ".webp", ".bmp", ".gif",
                                         ".tif",  ".tiff", ".ppm", ".pgm", NULL};

static int list_input_images(const node_env_t *env, node_strlist_t *out)
{
    out->items = NULL;
    out->n = 0;
    if (!env || !env->input_dir)
        return 0;
    return node_list_files(env->input_dir, image_exts, false, out);
}

/* ComfyUI's annotated names: "x.png [output]" picks output/, " [input]" input/, " [temp]"
 * temp/; anything else is relative to input/. Like ComfyUI, the suffix and the one
 * character before it (the space) are cut. Returns the folder, *rel malloc'ed. */
static const char *split_annotation(const node_env_t *env, const char *name, char **rel)
{
    static const struct {
        const char *suffix;
        int which;
    } tags[] = {{"[output]", 1}, {"[input]", 0}, {"[temp]", 2}};
    size_t n = strlen(name);
    int which = 0;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        size_t sl = strlen(tags[i].suffix);
        if (n >= sl && strcmp(name + n - sl, tags[i].suffix) == 0) {
            which = tags[i].which;
            n = n > sl ? n - sl - 1 : 0;
            break;
        }
    }
    *rel = strndup(name, n);
    if (!env)
        return NULL;
    return which == 1 ? env->output_dir : which == 2 ? env->temp_dir : env->input_dir;
}

/* Resolves an image name to an existing regular file inside its folder. 0, BASE_E_PATH,
 * BASE_E_NOENT or BASE_E_NOMEM; *path malloc'ed on success. */
static int resolve_image(const node_env_t *env, const char *name, char **path)
{
    *path = NULL;
    char *rel = NULL;
    const char *root = split_annotation(env, name, &rel);
    if (!rel)
        return BASE_E_NOMEM;
    if (!root) {
        free(rel);
        return BASE_E_NOENT;
    }
    int rc = base_path_resolve(root, rel, true, path);
    free(rel);
    if (rc)
        return rc;
    struct stat st;
    if (stat(*path, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(*path);
        *path = NULL;
        return BASE_E_NOENT;
    }
    return 0;
}

static int validate(const node_env_t *env, const node_args_t *args, char *msg, size_t msgsz)
{
    const char *name = json_str(node_args_get(args, "image"));
    if (!name)
        return 0; /* linked: nothing to check before execution */
    char *path = NULL;
    int rc = resolve_image(env, name, &path);
    free(path);
    if (rc) {
        snprintf(msg, msgsz, "Invalid image file: %s", name);
        return rc;
    }
    return 0;
}

/* Fingerprint = hex SHA-256 of the file's bytes, so a re-uploaded file re-runs the node. */
static int is_changed(const node_env_t *env, const node_args_t *args, base_buf_t *out)
{
    const char *name = json_str(node_args_get(args, "image"));
    if (!name)
        return BASE_E_INVAL;
    char *path = NULL;
    int rc = resolve_image(env, name, &path);
    if (rc)
        return rc;
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f)
        return BASE_E_IO;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *chunk = malloc(1 << 16);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    rc = BASE_E_NOMEM;
    if (!md || !chunk || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        goto out;
    size_t got;
    while ((got = fread(chunk, 1, 1 << 16, f)) > 0)
        if (!EVP_DigestUpdate(md, chunk, got))
            goto out;
    rc = BASE_E_IO;
    if (ferror(f) || !EVP_DigestFinal_ex(md, digest, &dlen))
        goto out;
    rc = 0;
    for (unsigned int i = 0; i < dlen && !rc; i++)
        rc = base_buf_printf(out, "%02x", digest[i]);
out:
    EVP_MD_CTX_free(md);
    free(chunk);
    fclose(f);
    return rc;
}

static bool file_is_png(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    if (!f)
        return true; /* let the decoder report the open error */
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    /* Too short to tell: the decoder says "empty" or "not a PNG" precisely. */
    return n < sizeof head || memcmp(head, sig, sizeof sig) == 0;
}

static int make_outputs(node_ctx_t *ctx, const node_png_image_t *img)
{
    size_t w = img->width, h = img->height, npx = w * h;
    /* PIL semantics: a mask exists for an alpha channel or a palette with tRNS; grey or
     * RGB with a tRNS colour key get the empty 64×64 mask, as in ComfyUI. */
    bool has_mask = (img->color_type & 4) || (img->color_type == NODE_PNG_PALETTE && img->has_trns);
    float *rgb = malloc(npx * 3 * sizeof *rgb);
    float *mask = has_mask ? malloc(npx * sizeof *mask) : NULL;
    if (!rgb || (has_mask && !mask)) {
        free(rgb);
        free(mask);
        return node_fail(ctx, "out of memory loading a %zux%zu image", w, h);
    }
    for (size_t i = 0; i < npx; i++) {
        const uint8_t *p = img->rgba + i * 4;
        rgb[i * 3 + 0] = (float)p[0] / 255.0f;
        rgb[i * 3 + 1] = (float)p[1] / 255.0f;
        rgb[i * 3 + 2] = (float)p[2] / 255.0f;
        if (mask)
            mask[i] = 1.0f - (float)p[3] / 255.0f;
    }
    const ts_device_t cpu = {TS_CPU, 0};
    int64_t ishape[4] = {1, (int64_t)h, (int64_t)w, 3};
    ts_tensor_t *ti = NULL, *tm = NULL;
    int rc = ts_from_host(&ti, rgb, TS_F32, ishape, 4, cpu);
    free(rgb);
    if (!rc) {
        if (mask) {
            int64_t mshape[3] = {1, (int64_t)h, (int64_t)w};
            rc = ts_from_host(&tm, mask, TS_F32, mshape, 3, cpu);
        } else {
            int64_t mshape[3] = {1, 64, 64};
            rc = ts_zeros(&tm, mshape, 3, TS_F32, cpu);
        }
    }
    free(mask);
    if (rc) {
        ts_free(ti);
        return node_fail_ts(ctx, "LoadImage");
    }
    node_value_t *vi = node_value_tensor(ti), *vm = node_value_tensor(tm);
    if (!vi || !vm) {
        node_value_unref(vi);
        node_value_unref(vm);
        return node_fail(ctx, "out of memory");
    }
    node_set_out(ctx, 0, vi);
    node_set_out(ctx, 1, vm);
    return 0;
}

static int execute(node_ctx_t *ctx)
{
    const char *name = node_in_str(ctx, "image");
    char *path = NULL;
    int rc = resolve_image(ctx->env, name, &path);
    if (rc == BASE_E_NOMEM)
        return node_fail(ctx, "out of memory");
    if (rc)
        return node_fail(ctx, "Invalid image file: %s", name);
    if (!file_is_png(path)) {
        free(path);
        return node_fail(ctx, "unsupported image format (only PNG): %s", name);
    }
    node_png_image_t img;
    char err[256];
    rc = node_png_decode_file(path, &img, err, sizeof err);
    free(path);
    if (rc)
        return node_fail(ctx, "cannot load image %s: %s", name, err);
    rc = make_outputs(ctx, &img);
    node_png_image_free(&img);
    return rc;
}

static const node_input_t inputs[] = {
    {.name = "image",
     .type = "COMBO",
     .section = NODE_REQUIRED,
     .flags = NODE_IN_IMAGE_UPLOAD,
     .options_fn = list_input_images},
};
static const node_output_t outputs[] = {{.type = "IMAGE"}, {.type = "MASK"}};
static const char *const validated[] = {"image", NULL};

const node_def_t node_def_LoadImage = {
    .name = "LoadImage",
    .display_name = "Load Image",
    .category = "image",
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .outputs = outputs,
    .n_outputs = sizeof outputs / sizeof outputs[0],
    .execute = execute,
    .is_changed = is_changed,
    .validate = validate,
    .validate_inputs = validated,
};
