/* SaveImage and PreviewImage: IMAGE batches to 8-bit PNG files in output/ (or temp/),
 * named, numbered and tagged with metadata exactly as ComfyUI does (comfyui-api.md 10.2,
 * 10.3, 6.13), and never outside their folder. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image/png.h"
#include "image/resize.h"
#include "nodes.h"

#define OUTSIDE_MSG "Saving image outside the output folder is not allowed."

typedef struct {
    const char *root;      /* output_dir or temp_dir */
    const char *type;      /* "output" or "temp" (UI) */
    int level;             /* zlib level */
} save_kind_t;

/* ------------------------------------------------------------------ naming */

/* Replaces every occurrence of tok in *s (malloc'ed) by val, like Python str.replace. */
static int replace_all(char **s, const char *tok, const char *val)
{
    if (!strstr(*s, tok))
        return 0;
    base_buf_t b = BASE_BUF_INIT;
    size_t tl = strlen(tok);
    const char *p = *s, *hit;
    int rc = 0;
    while (!rc && (hit = strstr(p, tok))) {
        rc = base_buf_append(&b, p, (size_t)(hit - p));
        if (!rc)
            rc = base_buf_puts(&b, val);
        p = hit + tl;
    }
    if (!rc)
        rc = base_buf_puts(&b, p);
    char *out = rc ? NULL : base_buf_take(&b);
    if (!out) {
        base_buf_free(&b);
        return BASE_E_NOMEM;
    }
    free(*s);
    *s = out;
    return 0;
}

/* ComfyUI's compute_vars: the same tokens, replaced in the same order. */
static int expand_tokens(char **prefix, int64_t width, int64_t height)
{
    if (!strchr(*prefix, '%'))
        return 0;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char v[8][24];
    snprintf(v[0], sizeof v[0], "%lld", (long long)width);
    snprintf(v[1], sizeof v[1], "%lld", (long long)height);
    snprintf(v[2], sizeof v[2], "%d", tm.tm_year + 1900);
    snprintf(v[3], sizeof v[3], "%02d", tm.tm_mon + 1);
    snprintf(v[4], sizeof v[4], "%02d", tm.tm_mday);
    snprintf(v[5], sizeof v[5], "%02d", tm.tm_hour);
    snprintf(v[6], sizeof v[6], "%02d", tm.tm_min);
    snprintf(v[7], sizeof v[7], "%02d", tm.tm_sec);
    static const char *const toks[8] = {"%width%", "%height%", "%year%",   "%month%",
                                        "%day%",   "%hour%",   "%minute%", "%second%"};
    for (int i = 0; i < 8; i++) {
        int rc = replace_all(prefix, toks[i], v[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* Splits a prefix like Python's normpath + dirname/basename, refusing what would leave the
 * folder: an absolute prefix or any ".." component (even "a/../b", which stays inside,
 * because refusing is simpler to reason about than lexical resolution). Empty and "."
 * components vanish; no component at all gives ".", as normpath does. */
static int split_prefix(const char *prefix, char **subfolder, char **filename)
{
    *subfolder = *filename = NULL;
    if (prefix[0] == '/')
        return BASE_E_PATH;
    base_buf_t sub = BASE_BUF_INIT;
    const char *last = NULL;
    size_t last_len = 0;
    int rc = 0;
    for (const char *p = prefix; *p && !rc;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            rc = BASE_E_PATH;
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (last) {
                if (sub.len)
                    rc = base_buf_putc(&sub, '/');
                if (!rc)
                    rc = base_buf_append(&sub, last, last_len);
            }
            last = p;
            last_len = n;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    if (!rc) {
        *filename = last ? strndup(last, last_len) : strdup(".");
        *subfolder = base_buf_take(&sub);
        if (!*filename || !*subfolder)
            rc = BASE_E_NOMEM;
    }
    base_buf_free(&sub);
    if (rc) {
        free(*subfolder);
        free(*filename);
        *subfolder = *filename = NULL;
    }
    return rc;
}

/* Python int() of the text between "<filename>_" and the next '_': optional blanks and
 * sign around decimal digits, anything else counts as 0. */
static int64_t parse_counter(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && isspace((unsigned char)s[i]))
        i++;
    while (n > i && isspace((unsigned char)s[n - 1]))
        n--;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i == n)
        return 0;
    int64_t v = 0;
    for (; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
        if (v < INT64_MAX / 16)
            v = v * 10 + (s[i] - '0'); /* saturates far above any real counter */
    }
    return neg ? -v : v;
}

/* max(number in "<filename>_<number>_...") + 1 over the folder, or 1. */
static int64_t next_counter(const char *dir, const char *filename)
{
    DIR *d = opendir(dir);
    if (!d)
        return 1;
    size_t fl = strlen(filename);
    bool any = false;
    int64_t best = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (strncmp(name, filename, fl) != 0 || name[fl] != '_')
            continue;
        const char *num = name + fl + 1, *end = strchr(num, '_');
        int64_t v = parse_counter(num, end ? (size_t)(end - num) : strlen(num));
        if (!any || v > best)
            best = v;
        any = true;
    }
    closedir(d);
    return any && best < INT64_MAX / 2 ? best + 1 : 1;
}

/* ------------------------------------------------------------------ pixels and metadata */

typedef struct {
    node_png_kv_t *kv; /* keys borrowed, values owned */
    size_t n;
} meta_t;

static void meta_free(meta_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        free((char *)m->kv[i].value);
    free(m->kv);
}

static int meta_build(const node_ctx_t *ctx, meta_t *m)
{
    m->kv = NULL;
    m->n = 0;
    const json_t *extra = ctx->extra_pnginfo;
    size_t cap = 1 + (extra && extra->type == JSON_OBJECT ? json_len(extra) : 0);
    m->kv = calloc(cap, sizeof *m->kv);
    if (!m->kv)
        return BASE_E_NOMEM;
    if (ctx->prompt) {
        m->kv[0].key = "prompt";
        if (!(m->kv[0].value = json_dump(ctx->prompt, JSON_PYTHON)))
            return BASE_E_NOMEM;
        m->n = 1;
    }
    for (size_t i = 0; i + 1 < cap; i++) {
        const char *key = json_key_at(extra, i);
        if (!node_png_key_valid(key)) {
            BASE_LOG(WARN, "SaveImage: extra_pnginfo key \"%s\" is not a valid PNG keyword; "
                           "not written", key ? key : "");
            continue;
        }
        m->kv[m->n].key = key;
        if (!(m->kv[m->n].value = json_dump(json_at(extra, i), JSON_PYTHON)))
            return BASE_E_NOMEM;
        m->n++;
    }
    return 0;
}

/* ------------------------------------------------------------------ the node */

typedef struct {
    char *filename, *subfolder, *dir;
    float *f;
    uint8_t *u8;
    meta_t meta;
    json_t *ui, *list;
} save_state_t;

static void save_state_free(save_state_t *s)
{
    free(s->filename);
    free(s->subfolder);
    free(s->dir);
    free(s->f);
    free(s->u8);
    meta_free(&s->meta);
    json_free(s->ui);
}

/* A name taken by a concurrent saver between our folder scan and our write moves us on to
 * the next number, at most this many times. */
#define MAX_NAME_TRIES 1000

/* Writes image b as <filename with %batch_num%>_<*counter>_.png, never replacing a file;
 * advances *counter past the number used and appends the UI entry. */
static int save_one(node_ctx_t *ctx, const save_kind_t *k, save_state_t *s,
                    const ts_tensor_t *images, int64_t b, int64_t *counter, int64_t h, int64_t w,
                    int64_t c)
{
    ts_tensor_t *one = NULL;
    size_t n = (size_t)(h * w * c);
    if (ts_slice(&one, images, 0, b, b + 1) || ts_to_host(one, TS_F32, s->f, n * sizeof(float))) {
        ts_free(one);
        return node_fail_ts(ctx, ctx->def->name);
    }
    ts_free(one);
    node_image_quantize_u8(s->f, s->u8, n);

    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)b);
    char *base = strdup(s->filename);
    if (!base || replace_all(&base, "%batch_num%", num)) {
        free(base);
        return node_fail(ctx, "out of memory");
    }
    base_buf_t file = BASE_BUF_INIT, rel = BASE_BUF_INIT;
    char *path = NULL;
    node_png_write_t wr = {.pixels = s->u8, .width = (uint32_t)w, .height = (uint32_t)h,
                           .channels = (int)c, .text = s->meta.kv, .n_text = s->meta.n,
                           .level = k->level, .no_replace = true};
    int rc = BASE_E_EXIST;
    for (int tries = 0; rc == BASE_E_EXIST && tries < MAX_NAME_TRIES; tries++) {
        file.len = rel.len = 0;
        free(path);
        path = NULL;
        rc = base_buf_printf(&file, "%s_%05lld_.png", base, (long long)(*counter)++);
        if (!rc && s->subfolder[0])
            rc = base_buf_printf(&rel, "%s/", s->subfolder);
        if (!rc)
            rc = base_buf_puts(&rel, file.data);
        if (rc) {
            rc = node_fail(ctx, "out of memory");
            goto out;
        }
        if (base_path_resolve(k->root, rel.data, false, &path)) {
            rc = node_fail(ctx, OUTSIDE_MSG);
            goto out;
        }
        char err[256];
        rc = node_png_write_file(path, &wr, err, sizeof err);
        if (rc && rc != BASE_E_EXIST) {
            rc = node_fail(ctx, "cannot save %s: %s", file.data, err);
            goto out;
        }
    }
    if (rc) {
        rc = node_fail(ctx, "cannot save %s: no free file name", file.data);
        goto out;
    }
    json_t *entry = json_new_object();
    if (!entry || json_object_set(entry, "filename", json_new_string(file.data)) ||
        json_object_set(entry, "subfolder", json_new_string(s->subfolder)) ||
        json_object_set(entry, "type", json_new_string(k->type))) {
        json_free(entry);
        rc = node_fail(ctx, "out of memory");
        goto out;
    }
    if (json_array_push(s->list, entry)) { /* takes entry even on failure */
        rc = node_fail(ctx, "out of memory");
        goto out;
    }
out:
    free(base);
    free(path);
    base_buf_free(&file);
    base_buf_free(&rel);
    return rc;
}

static int save_images(node_ctx_t *ctx, const save_kind_t *k, const char *prefix_in)
{
    const ts_tensor_t *images = node_in_tensor(ctx, "images");
    if (!images)
        return node_fail(ctx, "%s: no images", ctx->def->name);
    int64_t shape[TS_MAX_DIMS];
    int nd = ts_shape(images, shape);
    if (nd != 4 || (shape[3] != 3 && shape[3] != 4))
        return node_fail(ctx, "%s: expected an IMAGE of shape [batch, height, width, 3 or 4]",
                         ctx->def->name);
    int64_t bn = shape[0], h = shape[1], w = shape[2], c = shape[3];
    if (bn < 1) { /* an empty batch (a closed ImageGate) saves nothing */
        json_t *ui = json_new_object();
        if (!ui || json_object_set(ui, "images", json_new_array())) {
            json_free(ui);
            return node_fail(ctx, "out of memory");
        }
        ctx->ui = ui;
        return 0;
    }
    if (h < 1 || w < 1 || h > NODE_PNG_MAX_SIDE || w > NODE_PNG_MAX_SIDE)
        return node_fail(ctx, "%s: cannot save a %lldx%lld image as PNG (limit %u)",
                         ctx->def->name, (long long)w, (long long)h, NODE_PNG_MAX_SIDE);
    if (!k->root)
        return node_fail(ctx, "%s: no %s folder configured", ctx->def->name, k->type);

    save_state_t s;
    memset(&s, 0, sizeof s);
    char *prefix = strdup(prefix_in);
    int rc = prefix ? expand_tokens(&prefix, w, h) : BASE_E_NOMEM;
    if (!rc)
        rc = split_prefix(prefix, &s.subfolder, &s.filename);
    free(prefix);
    if (rc) {
        rc = rc == BASE_E_PATH ? node_fail(ctx, OUTSIDE_MSG) : node_fail(ctx, "out of memory");
        goto out;
    }
    rc = base_mkdir_p(k->root);
    if (!rc)
        rc = base_path_mkdirs(k->root, s.subfolder);
    if (!rc)
        rc = s.subfolder[0] ? base_path_resolve(k->root, s.subfolder, true, &s.dir)
                            : ((s.dir = strdup(k->root)) ? 0 : BASE_E_NOMEM);
    if (rc) {
        rc = rc == BASE_E_PATH ? node_fail(ctx, OUTSIDE_MSG)
                               : node_fail(ctx, "cannot create the folder for \"%s\": %s",
                                           prefix_in, base_strerror(rc));
        goto out;
    }
    int64_t counter = next_counter(s.dir, s.filename);

    size_t n = (size_t)(h * w * c);
    s.f = malloc(n * sizeof *s.f);
    s.u8 = malloc(n);
    s.ui = json_new_object();
    s.list = json_new_array();
    /* s.ui owns the list from here on, even when the set fails. */
    bool listed = s.ui && s.list && json_object_set(s.ui, "images", s.list) == 0;
    if (!listed && !s.ui)
        json_free(s.list);
    if (!listed || !s.f || !s.u8 || meta_build(ctx, &s.meta)) {
        rc = node_fail(ctx, "out of memory");
        goto out;
    }
    for (int64_t b = 0; b < bn; b++) {
        if ((rc = save_one(ctx, k, &s, images, b, &counter, h, w, c)))
            goto out;
        if ((rc = node_progress(ctx, (uint64_t)(b + 1), (uint64_t)bn)))
            goto out;
    }
    ctx->ui = s.ui;
    s.ui = NULL;
out:
    save_state_free(&s);
    return rc;
}

static int save_execute(node_ctx_t *ctx)
{
    save_kind_t k = {ctx->env ? ctx->env->output_dir : NULL, "output", 4};
    return save_images(ctx, &k, node_in_str(ctx, "filename_prefix"));
}

static int preview_execute(node_ctx_t *ctx)
{
    /* ComfyUI fixes the 5 letters per node instance; fresh letters per run only change
     * which (always new) file name a preview gets. */
    unsigned char rnd[5];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return node_fail(ctx, "PreviewImage: no random bytes available");
    char prefix[32] = "ComfyUI_temp_";
    size_t l = strlen(prefix);
    for (size_t i = 0; i < sizeof rnd; i++)
        prefix[l + i] = (char)('a' + rnd[i] % 26);
    prefix[l + sizeof rnd] = '\0';
    save_kind_t k = {ctx->env ? ctx->env->temp_dir : NULL, "temp", 1};
    return save_images(ctx, &k, prefix);
}

static const node_input_t save_inputs[] = {
    {.name = "images", .type = "IMAGE", .section = NODE_REQUIRED,
     .tooltip = "The images to save."},
    {.name = "filename_prefix", .type = "STRING", .section = NODE_REQUIRED, .sdef = "ComfyUI",
     .tooltip = "The prefix for the file to save. This may include formatting information such "
                "as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from "
                "nodes."},
    {.name = "prompt", .type = "PROMPT", .section = NODE_HIDDEN},
    {.name = "extra_pnginfo", .type = "EXTRA_PNGINFO", .section = NODE_HIDDEN},
};

static const node_input_t preview_inputs[] = {
    {.name = "images", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "prompt", .type = "PROMPT", .section = NODE_HIDDEN},
    {.name = "extra_pnginfo", .type = "EXTRA_PNGINFO", .section = NODE_HIDDEN},
};

const node_def_t node_def_SaveImage = {
    .name = "SaveImage",
    .display_name = "Save Image",
    .category = "image",
    .description = "Saves the input images to your ComfyUI output directory.",
    .inputs = save_inputs,
    .n_inputs = sizeof save_inputs / sizeof save_inputs[0],
    .flags = NODE_OUTPUT_NODE,
    .execute = save_execute,
};

/* PreviewImage subclasses SaveImage in ComfyUI and so inherits its description. */
const node_def_t node_def_PreviewImage = {
    .name = "PreviewImage",
    .display_name = "Preview Image",
    .category = "image",
    .description = "Saves the input images to your ComfyUI output directory.",
    .inputs = preview_inputs,
    .n_inputs = sizeof preview_inputs / sizeof preview_inputs[0],
    .flags = NODE_OUTPUT_NODE,
    .execute = preview_execute,
};
