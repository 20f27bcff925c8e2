#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/png.h"
#include "image/resize.h"
#include "nodes.h"

/* ------------------------------------------------------------------ fixture */

typedef struct {
    char *base, *input, *output, *temp, *outside;
    node_env_t env;
} env_fix_t;

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

static void env_init(env_fix_t *f, const char *name)
{
    assert_int_equal(ts_init(1), 0);
    f->base = tu_fresh_dir(name);
    f->input = join(f->base, "input");
    f->output = join(f->base, "output");
    f->temp = join(f->base, "temp");
    f->outside = join(f->base, "outside");
    assert_int_equal(mkdir(f->input, 0755), 0);
    assert_int_equal(mkdir(f->output, 0755), 0);
    assert_int_equal(mkdir(f->outside, 0755), 0);
    /* temp/ is left missing: PreviewImage must create it. */
    f->env = (node_env_t){.base_dir = f->base, .input_dir = f->input, .output_dir = f->output,
                          .temp_dir = f->temp, .models_dir = f->base};
}

static void env_free(env_fix_t *f)
{
    free(f->base);
    free(f->input);
    free(f->output);
    free(f->temp);
    free(f->outside);
}

typedef struct {
    node_ctx_t ctx;
    node_value_t *in[8];
    node_value_t *out[4];
    atomic_bool intr;
} run_t;

static void run_init(run_t *r, const node_def_t *def, const node_env_t *env)
{
    memset(r, 0, sizeof *r);
    atomic_init(&r->intr, false);
    r->ctx.def = def;
    r->ctx.node_id = "9";
    r->ctx.env = env;
    r->ctx.in = r->in;
    r->ctx.out = r->out;
    r->ctx.interrupt = &r->intr;
}

static void run_set(run_t *r, const char *name, node_value_t *v)
{
    int i = node_def_input_index(r->ctx.def, name);
    assert_true(i >= 0);
    assert_non_null(v);
    node_value_unref(r->in[i]);
    r->in[i] = v;
}

static int run_exec(run_t *r)
{
    r->ctx.err[0] = '\0';
    return r->ctx.def->execute(&r->ctx);
}

static void run_free(run_t *r)
{
    for (size_t i = 0; i < 8; i++)
        node_value_unref(r->in[i]);
    for (size_t i = 0; i < 4; i++)
        node_value_unref(r->out[i]);
    json_free(r->ctx.ui);
    memset(r, 0, sizeof *r);
}

static node_value_t *image_value(const float *data, int64_t b, int64_t h, int64_t w, int64_t c)
{
    int64_t shape[4] = {b, h, w, c};
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_from_host(&t, data, TS_F32, shape, 4, (ts_device_t){TS_CPU, 0}), 0);
    return node_value_tensor(t);
}

/* Copies an output tensor to a malloc'ed float array, checking its shape. */
static float *out_floats(const run_t *r, size_t i, int nd, const int64_t *shape)
{
    assert_non_null(r->out[i]);
    assert_int_equal(r->out[i]->kind, NODE_V_TENSOR);
    const ts_tensor_t *t = r->out[i]->u.t;
    int64_t s[TS_MAX_DIMS];
    assert_int_equal(ts_shape(t, s), nd);
    size_t n = 1;
    for (int d = 0; d < nd; d++) {
        if (s[d] != shape[d])
            fail_msg("dim %d: %lld != %lld", d, (long long)s[d], (long long)shape[d]);
        n *= (size_t)s[d];
    }
    float *f = malloc(n * sizeof *f + 1);
    assert_int_equal(ts_to_host(t, TS_F32, f, n * sizeof *f), 0);
    return f;
}

static void write_png(const char *path, const uint8_t *px, uint32_t w, uint32_t h, int ch)
{
    node_png_write_t wr = {.pixels = px, .width = w, .height = h, .channels = ch, .level = 1};
    char err[256];
    assert_int_equal(node_png_write_file(path, &wr, err, sizeof err), 0);
}

static char *file_in(const char *dir, const char *name)
{
    return join(dir, name);
}

static bool exists(const char *dir, const char *name)
{
    char *p = join(dir, name);
    struct stat st;
    bool ok = lstat(p, &st) == 0;
    free(p);
    return ok;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ LoadImage */

static void test_load_image_alpha(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "load_alpha");
    const uint8_t px[2 * 3 * 4] = {0,  1,  2,  0,   255, 254, 253, 255, 10, 20,  30,  128,
                                   40, 50, 60, 1,   70,  80,  90,  254, 5,  6,   7,   77};
    char *p = file_in(f.input, "a.png");
    write_png(p, px, 3, 2, 4);
    free(p);

    run_t r;
    run_init(&r, &node_def_LoadImage, &f.env);
    run_set(&r, "image", node_value_string("a.png"));
    assert_int_equal(run_exec(&r), 0);
    const int64_t ishape[4] = {1, 2, 3, 3}, mshape[3] = {1, 2, 3};
    float *img = out_floats(&r, 0, 4, ishape), *mask = out_floats(&r, 1, 3, mshape);
    for (size_t i = 0; i < 6; i++) {
        for (int c = 0; c < 3; c++)
            assert_true(img[i * 3 + (size_t)c] == (float)px[i * 4 + (size_t)c] / 255.0f);
        assert_true(mask[i] == 1.0f - (float)px[i * 4 + 3] / 255.0f);
    }
    assert_true(mask[0] == 1.0f);
    assert_true(mask[1] == 0.0f);
    free(img);
    free(mask);
    run_free(&r);
    env_free(&f);
}

static void test_load_image_no_alpha(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "load_rgb");
    const uint8_t px[2 * 2 * 3] = {0, 51, 102, 153, 204, 255, 1, 2, 3, 4, 5, 6};
    char *p = join(f.input, "sub");
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);
    p = file_in(f.input, "sub/b.png");
    write_png(p, px, 2, 2, 3);
    free(p);

    run_t r;
    run_init(&r, &node_def_LoadImage, &f.env);
    run_set(&r, "image", node_value_string("sub/b.png"));
    assert_int_equal(run_exec(&r), 0);
    const int64_t ishape[4] = {1, 2, 2, 3}, mshape[3] = {1, 64, 64};
    float *img = out_floats(&r, 0, 4, ishape), *mask = out_floats(&r, 1, 3, mshape);
    for (size_t i = 0; i < 12; i++)
        assert_true(img[i] == (float)px[i] / 255.0f);
    assert_true(img[1] == 0.2f);
    for (size_t i = 0; i < 64 * 64; i++)
        assert_true(mask[i] == 0.0f);
    free(img);
    free(mask);
    run_free(&r);
    env_free(&f);
}

/* Palette + tRNS gets a mask (PIL mode P with transparency), as in ComfyUI. */
static void png_cb(png_structp png, png_bytep d, size_t n)
{
    assert_int_equal(base_buf_append(png_get_io_ptr(png), d, n), 0);
}

static void test_load_image_palette(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "load_palette");
    base_buf_t b = BASE_BUF_INIT;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng");
    png_set_write_fn(png, &b, png_cb, NULL);
    png_set_IHDR(png, info, 2, 1, 8, PNG_COLOR_TYPE_PALETTE, 0, 0, 0);
    const png_color pal[2] = {{255, 0, 0}, {0, 0, 255}};
    const png_byte trns[1] = {51};
    png_set_PLTE(png, info, pal, 2);
    png_set_tRNS(png, info, trns, 1, NULL);
    png_write_info(png, info);
    const png_byte row[2] = {0, 1};
    png_write_row(png, row);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    char *p = file_in(f.input, "p.png");
    tu_write_file(p, b.data, b.len);
    free(p);
    base_buf_free(&b);

    run_t r;
    run_init(&r, &node_def_LoadImage, &f.env);
    run_set(&r, "image", node_value_string("p.png"));
    assert_int_equal(run_exec(&r), 0);
    const int64_t ishape[4] = {1, 1, 2, 3}, mshape[3] = {1, 1, 2};
    float *img = out_floats(&r, 0, 4, ishape), *mask = out_floats(&r, 1, 3, mshape);
    assert_true(img[0] == 1.0f && img[1] == 0.0f && img[2] == 0.0f);
    assert_true(img[3] == 0.0f && img[4] == 0.0f && img[5] == 1.0f);
    assert_true(mask[0] == 1.0f - 51.0f / 255.0f);
    assert_true(mask[1] == 0.0f);
    free(img);
    free(mask);
    run_free(&r);
    env_free(&f);
}

static int validate_name(const env_fix_t *f, const char *name, char *msg, size_t msgsz)
{
    json_t *j = name ? json_new_string(name) : NULL;
    const json_t *vals[1] = {j};
    node_args_t a = {.def = &node_def_LoadImage, .values = vals};
    msg[0] = '\0';
    int rc = node_def_LoadImage.validate(&f->env, &a, msg, msgsz);
    json_free(j);
    return rc;
}

static void test_load_image_validate(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "load_validate");
    const uint8_t px[3] = {1, 2, 3};
    char *p;
    p = file_in(f.input, "x.png");
    write_png(p, px, 1, 1, 3);
    free(p);
    p = join(f.input, "sub");
    mkdir(p, 0755);
    free(p);
    p = file_in(f.input, "sub/y.png");
    write_png(p, px, 1, 1, 3);
    free(p);
    p = file_in(f.output, "o.png");
    write_png(p, px, 1, 1, 3);
    free(p);
    assert_int_equal(mkdir(f.temp, 0755), 0);
    p = file_in(f.temp, "t.png");
    write_png(p, px, 1, 1, 3);
    free(p);
    char *secret = file_in(f.outside, "secret.png");
    write_png(secret, px, 1, 1, 3);
    p = file_in(f.input, "link.png");
    assert_int_equal(symlink(secret, p), 0);
    free(p);
    free(secret);

    char msg[512];
    assert_int_equal(validate_name(&f, "x.png", msg, sizeof msg), 0);
    assert_int_equal(validate_name(&f, "sub/y.png", msg, sizeof msg), 0);
    assert_int_equal(validate_name(&f, "x.png [input]", msg, sizeof msg), 0);
    assert_int_equal(validate_name(&f, "o.png [output]", msg, sizeof msg), 0);
    assert_int_equal(validate_name(&f, "t.png [temp]", msg, sizeof msg), 0);
    assert_int_equal(validate_name(&f, NULL, msg, sizeof msg), 0); /* linked */

    static const char *const bad[] = {"../x.png",  "/etc/passwd", "missing.png",
                                      "link.png",  "sub",         "",
                                      "o.png",     "x.png [output]", "../input/x.png",
                                      "sub/../../outside/secret.png"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (validate_name(&f, bad[i], msg, sizeof msg) == 0)
            fail_msg("\"%s\" accepted", bad[i]);
        char want[256];
        snprintf(want, sizeof want, "Invalid image file: %s", bad[i]);
        assert_string_equal(msg, want);
    }

    /* execute refuses the same names */
    run_t r;
    run_init(&r, &node_def_LoadImage, &f.env);
    run_set(&r, "image", node_value_string("link.png"));
    assert_int_equal(run_exec(&r), BASE_E_NODE_FAILED);
    assert_string_equal(r.ctx.err, "Invalid image file: link.png");
    assert_null(r.out[0]);
    run_free(&r);
    run_init(&r, &node_def_LoadImage, &f.env);
    run_set(&r, "image", node_value_string("o.png [output]"));
    assert_int_equal(run_exec(&r), 0);
    run_free(&r);
    env_free(&f);
}

static void test_load_image_is_changed_and_options(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "load_changed");
    char *p = file_in(f.input, "abc.png");
    tu_write_file(p, "abc", 3);
    json_t *j = json_new_string("abc.png");
    const json_t *vals[1] = {j};
    node_args_t a = {.def = &node_def_LoadImage, .values = vals};
    base_buf_t out = BASE_BUF_INIT;
    assert_int_equal(node_def_LoadImage.is_changed(&f.env, &a, &out), 0);
    assert_string_equal(out.data,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    base_buf_free(&out);
    tu_write_file(p, "abd", 3);
    assert_int_equal(node_def_LoadImage.is_changed(&f.env, &a, &out), 0);
    assert_string_not_equal(out.data,
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(out.len, 64);
    base_buf_free(&out);
    free(p);
    json_free(j);
    j = json_new_string("../outside/x.png");
    vals[0] = j;
    assert_int_not_equal(node_def_LoadImage.is_changed(&f.env, &a, &out), 0);
    base_buf_free(&out);
    json_free(j);

    /* options: image files directly in input/, sorted, no folders, no other types */
    static const char *const files[] = {"b.JPG", "c.txt", "a.webp", "z.tiff"};
    for (size_t i = 0; i < 4; i++) {
        p = file_in(f.input, files[i]);
        tu_write_file(p, "x", 1);
        free(p);
    }
    p = join(f.input, "sub");
    mkdir(p, 0755);
    free(p);
    p = file_in(f.input, "sub/d.png");
    tu_write_file(p, "x", 1);
    free(p);
    node_strlist_t l;
    assert_int_equal(node_input_options(&node_def_LoadImage.inputs[0], &f.env, &l), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.items[0], "a.webp");
    assert_string_equal(l.items[1], "abc.png");
    assert_string_equal(l.items[2], "b.JPG");
    assert_string_equal(l.items[3], "z.tiff");
    node_strlist_free(&l);
    assert_true(node_def_LoadImage.inputs[0].flags & NODE_IN_IMAGE_UPLOAD);
    env_free(&f);
}

static void expect_load_fails(env_fix_t *f, const char *name, const void *data, size_t len,
                              const char *needle)
{
    char *p = file_in(f->input, name);
    tu_write_file(p, data, len);
    free(p);
    run_t r;
    run_init(&r, &node_def_LoadImage, &f->env);
    run_set(&r, "image", node_value_string(name));
    assert_int_equal(run_exec(&r), BASE_E_NODE_FAILED);
    if (!strstr(r.ctx.err, needle))
        fail_msg("\"%s\" lacks \"%s\"", r.ctx.err, needle);
    assert_null(r.out[0]);
    assert_null(r.out[1]);
    run_free(&r);
}

static void test_load_image_bad_files(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "load_bad");
    static const uint8_t jpeg[16] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F',
                                     'I',  'F',  0,    1,    1, 0,    0,   1};
    expect_load_fails(&f, "photo.jpg", jpeg, sizeof jpeg, "unsupported image format (only PNG)");
    expect_load_fails(&f, "fake.png", "GIF89a........", 14, "unsupported image format (only PNG)");
    expect_load_fails(&f, "empty.png", "", 0, "empty");

    const uint8_t px[3 * 8 * 8] = {0};
    node_png_write_t wr = {.pixels = px, .width = 8, .height = 8, .channels = 3, .level = 0};
    base_buf_t b = BASE_BUF_INIT;
    char err[256];
    assert_int_equal(node_png_encode(&wr, &b, err, sizeof err), 0);
    expect_load_fails(&f, "trunc.png", b.data, b.len / 2, "truncated");
    b.data[b.len - 30] ^= 0x10; /* inside IDAT: CRC mismatch */
    expect_load_fails(&f, "crc.png", b.data, b.len, "invalid PNG");
    base_buf_free(&b);
    env_free(&f);
}

/* ------------------------------------------------------------------ SaveImage */

static const char *const PROMPT_JSON =
    "{\"3\":{\"class_type\":\"CLIPTextEncode\",\"inputs\":{\"text\":\"caf\xc3\xa9\",\"w\":0.5}}}";
static const char *const PROMPT_PY =
    "{\"3\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"caf\\u00e9\", \"w\": "
    "0.5}}}";
static const char *const EXTRA_JSON =
    "{\"workflow\":{\"nodes\":[{\"id\":3}],\"extra\":{\"ds\":{\"scale\":1.0}}},\"bad  key\":1,"
    "\"second\":\"\xe2\x98\x83\"}";

typedef struct {
    json_t *prompt, *extra;
} meta_fix_t;

static void meta_init(meta_fix_t *m)
{
    assert_int_equal(json_parse(PROMPT_JSON, strlen(PROMPT_JSON), &m->prompt, NULL, 0), 0);
    assert_int_equal(json_parse(EXTRA_JSON, strlen(EXTRA_JSON), &m->extra, NULL, 0), 0);
}

static void meta_free(meta_fix_t *m)
{
    json_free(m->prompt);
    json_free(m->extra);
}

static int save(env_fix_t *f, const node_def_t *def, const char *prefix, const float *data,
                int64_t b, int64_t h, int64_t w, int64_t c, const meta_fix_t *m, run_t *r)
{
    run_init(r, def, &f->env);
    run_set(r, "images", image_value(data, b, h, w, c));
    if (prefix)
        run_set(r, "filename_prefix", node_value_string(prefix));
    if (m) {
        r->ctx.prompt = m->prompt;
        r->ctx.extra_pnginfo = m->extra;
    }
    return run_exec(r);
}

static void test_save_image_pixels_metadata_counter(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "save_basic");
    meta_fix_t m;
    meta_init(&m);
    const float px[2 * 3 * 3] = {0.999f, 1.5f, -1.0f, 0.0f, 0.5f, 1.0f, NAN, 0.2f, 0.1f,
                                 1.0f / 255.0f, 254.9f / 255.0f, 0.9999999f, 2.0f / 255.0f,
                                 INFINITY, -INFINITY, 0.25f, 0.75f, 0.004f};
    const uint8_t want[18] = {254, 255, 0, 0, 127, 255, 0, 51, 25, 1, 254, 254, 2, 255, 0, 63,
                              191, 1};
    run_t r;
    assert_int_equal(save(&f, &node_def_SaveImage, "ComfyUI", px, 1, 2, 3, 3, &m, &r), 0);
    char *ui = json_dump(r.ctx.ui, JSON_COMPACT);
    assert_string_equal(
        ui, "{\"images\":[{\"filename\":\"ComfyUI_00001_.png\",\"subfolder\":\"\",\"type\":\"output\"}]}");
    free(ui);
    assert_null(r.out[0]);
    run_free(&r);

    char *p = file_in(f.output, "ComfyUI_00001_.png");
    node_png_image_t img;
    char err[256];
    assert_int_equal(node_png_decode_file(p, &img, err, sizeof err), 0);
    free(p);
    assert_int_equal(img.width, 3);
    assert_int_equal(img.height, 2);
    assert_int_equal(img.color_type, NODE_PNG_RGB);
    for (size_t i = 0; i < 6; i++)
        for (size_t c = 0; c < 3; c++)
            if (img.rgba[i * 4 + c] != want[i * 3 + c])
                fail_msg("pixel %zu channel %zu: %d != %d", i, c, img.rgba[i * 4 + c],
                         want[i * 3 + c]);
    assert_int_equal(img.text.n, 3);
    assert_string_equal(img.text.items[0].key, "prompt");
    assert_string_equal(img.text.items[0].value, PROMPT_PY);
    assert_string_equal(img.text.items[1].key, "workflow");
    assert_string_equal(img.text.items[1].value,
                        "{\"nodes\": [{\"id\": 3}], \"extra\": {\"ds\": {\"scale\": 1.0}}}");
    assert_string_equal(img.text.items[2].key, "second");
    assert_string_equal(img.text.items[2].value, "\"\\u2603\"");
    node_png_image_free(&img);

    /* second run counts on */
    assert_int_equal(save(&f, &node_def_SaveImage, "ComfyUI", px, 1, 2, 3, 3, NULL, &r), 0);
    ui = json_dump(r.ctx.ui, JSON_COMPACT);
    assert_non_null(strstr(ui, "ComfyUI_00002_.png"));
    free(ui);
    run_free(&r);
    p = file_in(f.output, "ComfyUI_00002_.png");
    node_png_texts_t t;
    assert_int_equal(node_png_read_text_file(p, &t, err, sizeof err), 0);
    assert_int_equal(t.n, 0); /* no prompt, no extra_pnginfo: no chunks */
    node_png_texts_free(&t);
    free(p);

    meta_free(&m);
    env_free(&f);
}

static void test_save_image_existing_counter_and_batch(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "save_counter");
    static const char *const pre[] = {"ComfyUI_00041_.png", "ComfyUI_abc_.png",
                                      "Other_00099_.png",   "ComfyUI_00050.png",
                                      "ComfyUIx_00077_.png", "ComfyUI_temp_abcde_00093_.png"};
    for (size_t i = 0; i < 6; i++) {
        char *p = file_in(f.output, pre[i]);
        tu_write_file(p, "", 0);
        free(p);
    }
    float px[2 * 2 * 2 * 3];
    for (size_t i = 0; i < 24; i++)
        px[i] = (float)i / 24.0f;
    run_t r;
    assert_int_equal(save(&f, &node_def_SaveImage, "ComfyUI", px, 2, 2, 2, 3, NULL, &r), 0);
    char *ui = json_dump(r.ctx.ui, JSON_COMPACT);
    assert_string_equal(ui, "{\"images\":[{\"filename\":\"ComfyUI_00042_.png\",\"subfolder\":\"\","
                            "\"type\":\"output\"},{\"filename\":\"ComfyUI_00043_.png\","
                            "\"subfolder\":\"\",\"type\":\"output\"}]}");
    free(ui);
    run_free(&r);
    /* the second image of the batch holds the second slice */
    char *p = file_in(f.output, "ComfyUI_00043_.png");
    node_png_image_t img;
    char err[256];
    assert_int_equal(node_png_decode_file(p, &img, err, sizeof err), 0);
    uint8_t q[3];
    node_image_quantize_u8(px + 12, q, 3);
    assert_memory_equal(img.rgba, q, 3);
    node_png_image_free(&img);
    free(p);
    env_free(&f);
}

static void test_save_image_subfolders_and_tokens(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "save_sub");
    const float px[2 * 3 * 3] = {0};
    run_t r;
    assert_int_equal(save(&f, &node_def_SaveImage, "portraits/cat", px, 1, 2, 3, 3, NULL, &r), 0);
    char *ui = json_dump(r.ctx.ui, JSON_COMPACT);
    assert_string_equal(ui, "{\"images\":[{\"filename\":\"cat_00001_.png\",\"subfolder\":"
                            "\"portraits\",\"type\":\"output\"}]}");
    free(ui);
    run_free(&r);
    assert_true(exists(f.output, "portraits/cat_00001_.png"));

    assert_int_equal(
        save(&f, &node_def_SaveImage, "a/./b//img_%width%x%height%", px, 1, 2, 3, 3, NULL, &r), 0);
    ui = json_dump(r.ctx.ui, JSON_COMPACT);
    assert_string_equal(ui, "{\"images\":[{\"filename\":\"img_3x2_00001_.png\",\"subfolder\":"
                            "\"a/b\",\"type\":\"output\"}]}");
    free(ui);
    run_free(&r);
    assert_true(exists(f.output, "a/b/img_3x2_00001_.png"));

    float px2[2 * 1 * 1 * 3] = {0};
    assert_int_equal(save(&f, &node_def_SaveImage, "b%batch_num%", px2, 2, 1, 1, 3, NULL, &r), 0);
    run_free(&r);
    assert_true(exists(f.output, "b0_00001_.png"));
    assert_true(exists(f.output, "b1_00002_.png"));
    /* The scan looks for "b%batch_num%_..." and finds nothing, so the counter restarts at 1;
     * the taken name is skipped instead of overwritten (ComfyUI would overwrite). */
    assert_int_equal(save(&f, &node_def_SaveImage, "b%batch_num%", px2, 1, 1, 1, 3, NULL, &r), 0);
    ui = json_dump(r.ctx.ui, JSON_COMPACT);
    assert_non_null(strstr(ui, "\"b0_00002_.png\""));
    free(ui);
    run_free(&r);
    assert_true(exists(f.output, "b0_00002_.png"));

    /* %year% is four digits and the rest two */
    assert_int_equal(save(&f, &node_def_SaveImage, "d/%year%-%month%-%day%T%hour%%minute%%second%",
                          px, 1, 2, 3, 3, NULL, &r),
                     0);
    const char *fn = json_str(json_object_get(json_at(json_object_get(r.ctx.ui, "images"), 0), "filename"));
    assert_non_null(fn);
    assert_int_equal(strlen(fn), strlen("2025-01-02T030405_00001_.png"));
    assert_true(fn[4] == '-' && fn[7] == '-' && fn[10] == 'T');
    run_free(&r);

    /* a trailing slash names the file after the folder, like normpath */
    assert_int_equal(save(&f, &node_def_SaveImage, "portraits/", px, 1, 2, 3, 3, NULL, &r), 0);
    run_free(&r);
    assert_true(exists(f.output, "portraits_00001_.png"));
    env_free(&f);
}

static void test_save_image_refuses_escape(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "save_escape");
    char *link = join(f.output, "link");
    assert_int_equal(symlink(f.outside, link), 0);
    free(link);
    const float px[3] = {0.5f, 0.5f, 0.5f};
    static const char *const bad[] = {"../evil", "/abs/x", "a/../../x", "sub/../x", "..",
                                      "link/x", "link/deeper/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_t r;
        int rc = save(&f, &node_def_SaveImage, bad[i], px, 1, 1, 1, 3, NULL, &r);
        if (rc != BASE_E_NODE_FAILED)
            fail_msg("prefix \"%s\" accepted", bad[i]);
        assert_string_equal(r.ctx.err, "Saving image outside the output folder is not allowed.");
        assert_null(r.ctx.ui);
        run_free(&r);
    }
    assert_int_equal(count_entries(f.outside), 0);
    /* nothing next to output/ either: input, output, outside */
    assert_int_equal(count_entries(f.base), 3);
    assert_false(exists(f.base, "evil_00001_.png"));
    env_free(&f);
}

static void test_save_image_bad_input_and_interrupt(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "save_bad");
    const float px[3 * 2 * 2 * 3] = {0};
    run_t r;
    assert_int_equal(save(&f, &node_def_SaveImage, "x", px, 1, 2, 2, 2, NULL, &r), BASE_E_NODE_FAILED);
    assert_non_null(strstr(r.ctx.err, "expected an IMAGE"));
    run_free(&r);

    run_init(&r, &node_def_SaveImage, &f.env);
    int64_t shape[3] = {2, 2, 3};
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_from_host(&t, px, TS_F32, shape, 3, (ts_device_t){TS_CPU, 0}), 0);
    run_set(&r, "images", node_value_tensor(t));
    run_set(&r, "filename_prefix", node_value_string("x"));
    assert_int_equal(run_exec(&r), BASE_E_NODE_FAILED);
    run_free(&r);
    assert_int_equal(count_entries(f.output), 0);

    /* An interrupt stops the batch after the image in progress. */
    run_init(&r, &node_def_SaveImage, &f.env);
    run_set(&r, "images", image_value(px, 3, 2, 2, 3));
    run_set(&r, "filename_prefix", node_value_string("int"));
    atomic_store(&r.intr, true);
    assert_int_equal(run_exec(&r), BASE_E_INTERRUPTED);
    assert_null(r.ctx.ui);
    run_free(&r);
    assert_int_equal(count_entries(f.output), 1);
    env_free(&f);
}

static void test_preview_image(void **state)
{
    (void)state;
    env_fix_t f;
    env_init(&f, "preview");
    meta_fix_t m;
    meta_init(&m);
    const float px[3] = {0.2f, 0.4f, 0.6f};
    run_t r;
    assert_int_equal(save(&f, &node_def_PreviewImage, NULL, px, 1, 1, 1, 3, &m, &r), 0);
    const json_t *e = json_at(json_object_get(r.ctx.ui, "images"), 0);
    const char *fn = json_str(json_object_get(e, "filename"));
    assert_non_null(fn);
    assert_string_equal(json_str(json_object_get(e, "type")), "temp");
    assert_string_equal(json_str(json_object_get(e, "subfolder")), "");
    assert_int_equal(strlen(fn), strlen("ComfyUI_temp_abcde_00001_.png"));
    assert_int_equal(strncmp(fn, "ComfyUI_temp_", 13), 0);
    for (int i = 13; i < 18; i++)
        assert_true(fn[i] >= 'a' && fn[i] <= 'z');
    assert_string_equal(fn + 18, "_00001_.png");
    assert_true(exists(f.temp, fn));
    assert_int_equal(count_entries(f.output), 0);
    char *p = file_in(f.temp, fn);
    node_png_texts_t t;
    char err[256];
    assert_int_equal(node_png_read_text_file(p, &t, err, sizeof err), 0);
    assert_string_equal(node_png_text_get(&t, "prompt"), PROMPT_PY);
    node_png_texts_free(&t);
    free(p);
    run_free(&r);
    meta_free(&m);
    env_free(&f);
}

/* ------------------------------------------------------------------ ImageScale */

static int scale(const float *data, int64_t h, int64_t w, const char *method, int64_t tw,
                 int64_t th, const char *crop, run_t *r)
{
    run_init(r, &node_def_ImageScale, NULL);
    run_set(r, "image", image_value(data, 1, h, w, 3));
    run_set(r, "upscale_method", node_value_string(method));
    run_set(r, "width", node_value_i64(tw));
    run_set(r, "height", node_value_i64(th));
    run_set(r, "crop", node_value_string(crop));
    return run_exec(r);
}

static void test_image_scale_sizes(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    float src[4 * 8 * 3];
    for (size_t i = 0; i < 96; i++)
        src[i] = (float)i / 100.0f;
    run_t r;
    /* 0 x 0: unchanged (the same tensor) */
    assert_int_equal(scale(src, 4, 8, "bilinear", 0, 0, "disabled", &r), 0);
    assert_ptr_equal(r.out[0]->u.t, r.in[0]->u.t);
    run_free(&r);
    /* one zero side keeps the aspect */
    assert_int_equal(scale(src, 4, 8, "bilinear", 4, 0, "disabled", &r), 0);
    const int64_t s1[4] = {1, 2, 4, 3};
    free(out_floats(&r, 0, 4, s1));
    run_free(&r);
    assert_int_equal(scale(src, 4, 8, "area", 0, 3, "disabled", &r), 0);
    const int64_t s2[4] = {1, 3, 6, 3};
    free(out_floats(&r, 0, 4, s2));
    run_free(&r);
    /* Python round: 5 * 1 / 2 = 2.5 -> 2 (half to even) */
    assert_int_equal(scale(src, 2, 5, "nearest-exact", 0, 1, "disabled", &r), 0);
    const int64_t s3[4] = {1, 1, 2, 3};
    free(out_floats(&r, 0, 4, s3));
    run_free(&r);
    /* 7 * 1 / 2 = 3.5 -> 4 */
    assert_int_equal(scale(src, 2, 7, "bicubic", 0, 1, "disabled", &r), 0);
    const int64_t s4[4] = {1, 1, 4, 3};
    free(out_floats(&r, 0, 4, s4));
    run_free(&r);
    /* never below 1 */
    assert_int_equal(scale(src, 4, 1, "bilinear", 0, 1, "disabled", &r), 0);
    const int64_t s5[4] = {1, 1, 1, 3};
    free(out_floats(&r, 0, 4, s5));
    run_free(&r);

    assert_int_equal(scale(src, 4, 8, "bislerp", 4, 4, "disabled", &r), BASE_E_NODE_FAILED);
    run_free(&r);
}

static void test_image_scale_center_crop(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    float src[4 * 8 * 3];
    for (size_t i = 0; i < 96; i++)
        src[i] = (float)i / 100.0f;
    run_t r;
    /* 8 wide, 4 high to 4x4: x = round((8 - 8 * 0.5) / 2) = 2, columns 2..5 */
    assert_int_equal(scale(src, 4, 8, "nearest-exact", 4, 4, "center", &r), 0);
    const int64_t s[4] = {1, 4, 4, 3};
    float *o = out_floats(&r, 0, 4, s);
    for (size_t y = 0; y < 4; y++)
        for (size_t x = 0; x < 4; x++)
            for (size_t c = 0; c < 3; c++)
                assert_true(o[(y * 4 + x) * 3 + c] == src[(y * 8 + x + 2) * 3 + c]);
    free(o);
    run_free(&r);
    /* 4 wide, 8 high to 4x4: rows 2..5 */
    assert_int_equal(scale(src, 8, 4, "nearest-exact", 4, 4, "center", &r), 0);
    o = out_floats(&r, 0, 4, s);
    for (size_t i = 0; i < 48; i++)
        assert_true(o[i] == src[2 * 4 * 3 + i]);
    free(o);
    run_free(&r);
    /* disabled: the whole image is squeezed; nearest-exact takes column (x + 0.5) * 2 */
    assert_int_equal(scale(src, 4, 8, "nearest-exact", 4, 4, "disabled", &r), 0);
    o = out_floats(&r, 0, 4, s);
    for (size_t x = 0; x < 4; x++)
        assert_true(o[x * 3] == src[(2 * x + 1) * 3]);
    free(o);
    run_free(&r);
}

static void test_image_scale_lanczos(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    /* Reference bytes from PIL 9.4 Image.resize(LANCZOS) of the same 5x3 image. */
    uint8_t in[3 * 5 * 3];
    for (int i = 0; i < 15; i++)
        for (int c = 0; c < 3; c++)
            in[i * 3 + c] = (uint8_t)((i * 37 + c * 91) % 256);
    static const uint8_t want_3x2[18] = {87, 64, 182, 57, 142, 111, 103, 209, 59,
                                         167, 157, 68, 153, 77, 156, 77, 95, 152};
    static const uint8_t want_2x3[18] = {30, 121, 152, 118, 209, 39, 155, 50, 156,
                                         42, 138, 139, 159, 175, 70, 142, 62, 158};
    static const uint8_t want_5x7_head[15] = {0, 109, 189, 7, 146, 226, 92, 172, 0, 129, 209, 7,
                                              155, 246, 92};
    uint8_t out[8 * 7 * 3];
    assert_int_equal(node_lanczos_u8(in, 5, 3, 3, out, 3, 2), 0);
    assert_memory_equal(out, want_3x2, 18);
    assert_int_equal(node_lanczos_u8(in, 5, 3, 3, out, 2, 3), 0);
    assert_memory_equal(out, want_2x3, 18);
    assert_int_equal(node_lanczos_u8(in, 5, 3, 3, out, 5, 7), 0);
    assert_memory_equal(out, want_5x7_head, 15);
    assert_int_equal(node_lanczos_u8(in, 5, 3, 3, out, 8, 5), 0);
    static const uint8_t want_8x5_last[6] = {97, 85, 186, 0, 95, 214};
    assert_memory_equal(out + 8 * 5 * 3 - 6, want_8x5_last, 6);
    assert_int_equal(node_lanczos_u8(in, 5, 3, 3, out, 0, 3), BASE_E_INVAL);

    /* Through the node: quantised like ComfyUI (truncation), then /255. */
    float src[3 * 5 * 3];
    for (size_t i = 0; i < 45; i++)
        src[i] = ((float)in[i] + 0.7f) / 255.0f; /* truncates back to in[i] */
    run_t r;
    assert_int_equal(scale(src, 3, 5, "lanczos", 3, 2, "disabled", &r), 0);
    const int64_t s[4] = {1, 2, 3, 3};
    float *o = out_floats(&r, 0, 4, s);
    for (size_t i = 0; i < 18; i++)
        assert_true(o[i] == (float)want_3x2[i] / 255.0f);
    free(o);
    run_free(&r);
    /* same size: just the 8-bit round trip */
    assert_int_equal(scale(src, 3, 5, "lanczos", 5, 3, "disabled", &r), 0);
    const int64_t s2[4] = {1, 3, 5, 3};
    o = out_floats(&r, 0, 4, s2);
    for (size_t i = 0; i < 45; i++)
        assert_true(o[i] == (float)in[i] / 255.0f);
    free(o);
    run_free(&r);
}

/* ------------------------------------------------------------------ Invert, Batch, Empty */

static void test_image_invert(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    const float px[6] = {0.0f, 1.0f, 0.25f, 0.1f, 0.7f, -0.5f};
    run_t r;
    run_init(&r, &node_def_ImageInvert, NULL);
    run_set(&r, "image", image_value(px, 1, 1, 2, 3));
    assert_int_equal(run_exec(&r), 0);
    const int64_t s[4] = {1, 1, 2, 3};
    float *o = out_floats(&r, 0, 4, s);
    for (size_t i = 0; i < 6; i++)
        assert_true(o[i] == 1.0f - px[i]);
    assert_true(o[1] == 0.0f && o[5] == 1.5f);
    free(o);
    run_free(&r);
}

static void test_image_batch(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    float a[4 * 4 * 3], b[2 * 2 * 2 * 3];
    for (size_t i = 0; i < 48; i++)
        a[i] = 0.25f;
    for (size_t i = 0; i < 24; i++)
        b[i] = 0.75f;
    run_t r;
    run_init(&r, &node_def_ImageBatch, NULL);
    run_set(&r, "image1", image_value(a, 1, 4, 4, 3));
    run_set(&r, "image2", image_value(b, 2, 2, 2, 3));
    assert_int_equal(run_exec(&r), 0);
    const int64_t s[4] = {3, 4, 4, 3};
    float *o = out_floats(&r, 0, 4, s);
    assert_true(o[0] == 0.25f && o[47] == 0.25f);
    for (size_t i = 48; i < 144; i++)
        assert_true(fabsf(o[i] - 0.75f) < 1e-6f);
    free(o);
    run_free(&r);

    /* same sizes: a plain concatenation */
    run_init(&r, &node_def_ImageBatch, NULL);
    run_set(&r, "image1", image_value(b, 2, 2, 2, 3));
    run_set(&r, "image2", image_value(b, 1, 2, 2, 3));
    assert_int_equal(run_exec(&r), 0);
    const int64_t s2[4] = {3, 2, 2, 3};
    o = out_floats(&r, 0, 4, s2);
    for (size_t i = 0; i < 36; i++)
        assert_true(o[i] == 0.75f);
    free(o);
    run_free(&r);

    /* channel counts must agree */
    run_init(&r, &node_def_ImageBatch, NULL);
    run_set(&r, "image1", image_value(a, 1, 4, 4, 3));
    run_set(&r, "image2", image_value(a, 1, 4, 3, 4));
    assert_int_equal(run_exec(&r), BASE_E_NODE_FAILED);
    assert_non_null(strstr(r.ctx.err, "channels"));
    run_free(&r);
}

static void test_empty_image(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    run_t r;
    run_init(&r, &node_def_EmptyImage, NULL);
    run_set(&r, "width", node_value_i64(4));
    run_set(&r, "height", node_value_i64(3));
    run_set(&r, "batch_size", node_value_i64(2));
    run_set(&r, "color", node_value_i64(0xFF8001));
    assert_int_equal(run_exec(&r), 0);
    const int64_t s[4] = {2, 3, 4, 3};
    float *o = out_floats(&r, 0, 4, s);
    for (size_t i = 0; i < 24; i++) {
        assert_true(o[i * 3 + 0] == 1.0f);
        assert_true(o[i * 3 + 1] == (float)(128.0 / 255.0));
        assert_true(o[i * 3 + 2] == (float)(1.0 / 255.0));
    }
    free(o);
    run_free(&r);

    run_init(&r, &node_def_EmptyImage, NULL);
    run_set(&r, "width", node_value_i64(1));
    run_set(&r, "height", node_value_i64(1));
    run_set(&r, "batch_size", node_value_i64(1));
    run_set(&r, "color", node_value_i64(0));
    assert_int_equal(run_exec(&r), 0);
    const int64_t s1[4] = {1, 1, 1, 3};
    o = out_floats(&r, 0, 4, s1);
    assert_true(o[0] == 0.0f && o[1] == 0.0f && o[2] == 0.0f);
    free(o);
    run_free(&r);

    run_init(&r, &node_def_EmptyImage, NULL);
    run_set(&r, "width", node_value_i64(0));
    run_set(&r, "height", node_value_i64(1));
    run_set(&r, "batch_size", node_value_i64(1));
    run_set(&r, "color", node_value_i64(0));
    assert_int_equal(run_exec(&r), BASE_E_NODE_FAILED);
    run_free(&r);
}

/* ------------------------------------------------------------------ schemas */

static void test_registry_and_schemas(void **state)
{
    (void)state;
    node_registry_t *reg = NULL;
    assert_int_equal(node_registry_new(&reg), 0);
    assert_int_equal(node_registry_add_builtins(reg), 0);
    static const char *const names[] = {"LoadImage",   "SaveImage",  "PreviewImage", "ImageScale",
                                        "ImageInvert", "ImageBatch", "EmptyImage"};
    for (size_t i = 0; i < 7; i++)
        assert_non_null(node_registry_find(reg, names[i]));
    node_registry_free(reg);

    const node_def_t *d = &node_def_ImageScale;
    assert_string_equal(d->display_name, "Upscale Image");
    assert_string_equal(d->category, "image/upscaling");
    int wi = node_def_input_index(d, "width");
    assert_true(wi >= 0);
    assert_int_equal(d->inputs[wi].idef.mag, 512);
    assert_int_equal(d->inputs[wi].imin.mag, 0);
    assert_int_equal(d->inputs[wi].imax.mag, 16384);
    assert_string_equal(d->inputs[node_def_input_index(d, "upscale_method")].options[4], "lanczos");
    d = &node_def_SaveImage;
    assert_true(d->flags & NODE_OUTPUT_NODE);
    assert_int_equal(d->n_outputs, 0);
    assert_string_equal(d->inputs[node_def_input_index(d, "filename_prefix")].sdef, "ComfyUI");
    assert_true(node_def_PreviewImage.flags & NODE_OUTPUT_NODE);
    d = &node_def_EmptyImage;
    assert_int_equal(d->inputs[node_def_input_index(d, "color")].imax.mag, 0xFFFFFF);
    assert_int_equal(d->inputs[node_def_input_index(d, "width")].imin.mag, 1);
    assert_int_equal(d->inputs[node_def_input_index(d, "batch_size")].imax.mag, 4096);
    assert_string_equal(node_def_LoadImage.outputs[1].type, "MASK");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_image_alpha),
        cmocka_unit_test(test_load_image_no_alpha),
        cmocka_unit_test(test_load_image_palette),
        cmocka_unit_test(test_load_image_validate),
        cmocka_unit_test(test_load_image_is_changed_and_options),
        cmocka_unit_test(test_load_image_bad_files),
        cmocka_unit_test(test_save_image_pixels_metadata_counter),
        cmocka_unit_test(test_save_image_existing_counter_and_batch),
        cmocka_unit_test(test_save_image_subfolders_and_tokens),
        cmocka_unit_test(test_save_image_refuses_escape),
        cmocka_unit_test(test_save_image_bad_input_and_interrupt),
        cmocka_unit_test(test_preview_image),
        cmocka_unit_test(test_image_scale_sizes),
        cmocka_unit_test(test_image_scale_center_crop),
        cmocka_unit_test(test_image_scale_lanczos),
        cmocka_unit_test(test_image_invert),
        cmocka_unit_test(test_image_batch),
        cmocka_unit_test(test_empty_image),
        cmocka_unit_test(test_registry_and_schemas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
