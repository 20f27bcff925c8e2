#include "testutil.h"

#include <dirent.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "image/png.h"
#include "nodes.h"

/* ------------------------------------------------------------------ helpers */

/* A PNG written straight with libpng, for colour types and chunk layouts our encoder does
 * not produce. */
typedef struct {
    uint32_t w, h;
    int ctype, depth, interlace;
    const uint8_t *data; /* packed rows as libpng expects them for ctype/depth */
    size_t stride;
    const png_color *pal;
    int npal;
    const png_byte *trns;
    int ntrns;
    const png_color_16 *trns_color;
    png_text *pre, *post;
    int npre, npost;
} raw_png_t;

static void raw_write_cb(png_structp png, png_bytep d, size_t n)
{
    base_buf_t *b = png_get_io_ptr(png);
    assert_int_equal(base_buf_append(b, d, n), 0);
}

static void raw_flush_cb(png_structp png) { (void)png; }

static char *raw_png(const raw_png_t *p, size_t *len)
{
    base_buf_t b = BASE_BUF_INIT;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png), end = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed writing a test PNG");
    png_set_write_fn(png, &b, raw_write_cb, raw_flush_cb);
    png_set_IHDR(png, info, p->w, p->h, p->depth, p->ctype, p->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (p->pal)
        png_set_PLTE(png, info, p->pal, p->npal);
    if (p->trns || p->trns_color)
        png_set_tRNS(png, info, p->trns, p->ntrns, p->trns_color);
    if (p->npre)
        png_set_text(png, info, p->pre, p->npre);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int pass = 0; pass < passes; pass++)
        for (uint32_t y = 0; y < p->h; y++)
            png_write_row(png, p->data + y * p->stride);
    if (p->npost)
        png_set_text(png, end, p->post, p->npost);
    png_write_end(png, end);
    png_destroy_info_struct(png, &end);
    png_destroy_write_struct(&png, &info);
    *len = b.len;
    return b.data;
}

/* A PNG made of the signature and an IHDR only, for the dimension limit. */
static size_t ihdr_only(uint8_t *out, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    memcpy(out, sig, 8);
    uint8_t *c = out + 8;
    const uint8_t body[21] = {0,
                              0,
                              0,
                              13,
                              'I',
                              'H',
                              'D',
                              'R',
                              (uint8_t)(w >> 24),
                              (uint8_t)(w >> 16),
                              (uint8_t)(w >> 8),
                              (uint8_t)w,
                              (uint8_t)(h >> 24),
                              (uint8_t)(h >> 16),
                              (uint8_t)(h >> 8),
                              (uint8_t)h,
                              8,
                              2,
                              0,
                              0,
                              0};
    memcpy(c, body, sizeof body);
    uLong crc = crc32(0, c + 4, 17);
    c[21] = (uint8_t)(crc >> 24);
    c[22] = (uint8_t)(crc >> 16);
    c[23] = (uint8_t)(crc >> 8);
    c[24] = (uint8_t)crc;
    return 8 + 25;
}

/* Offset of the first chunk of the given type (its length field), or 0. */
static size_t find_chunk(const uint8_t *d, size_t len, const char *type)
{
    size_t pos = 8;
    while (pos + 8 <= len) {
        uint32_t n = ((uint32_t)d[pos] << 24) | ((uint32_t)d[pos + 1] << 16) |
                     ((uint32_t)d[pos + 2] << 8) | d[pos + 3];
        if (memcmp(d + pos + 4, type, 4) == 0)
            return pos;
        pos += 12 + n;
    }
    return 0;
}

static void fix_crc(uint8_t *d, size_t chunk)
{
    uint32_t n = ((uint32_t)d[chunk] << 24) | ((uint32_t)d[chunk + 1] << 16) |
                 ((uint32_t)d[chunk + 2] << 8) | d[chunk + 3];
    uLong crc = crc32(0, d + chunk + 4, 4 + n);
    uint8_t *c = d + chunk + 8 + n;
    c[0] = (uint8_t)(crc >> 24);
    c[1] = (uint8_t)(crc >> 16);
    c[2] = (uint8_t)(crc >> 8);
    c[3] = (uint8_t)crc;
}

static const uint8_t px_rgb[4 * 3 * 3] = {
    0,  1,  2,  10, 20, 30, 255, 254, 253, 128, 127, 126, 7,  8,  9,  40, 50, 60,
    70, 80, 90, 1,  2,  3,  4,   5,   6,   200, 201, 202, 33, 34, 35, 99, 98, 97,
};

/* Encodes px_rgb (4x3) with two text chunks into memory. */
static char *sample_png(size_t *len)
{
    node_png_kv_t kv[2] = {{"prompt", "{\"a\": 1}"}, {"workflow", "{\"b\": [1, 2]}"}};
    node_png_write_t w = {.pixels = px_rgb, .width = 4, .height = 3, .channels = 3, .text = kv,
                          .n_text = 2, .level = 4};
    base_buf_t b = BASE_BUF_INIT;
    char err[256];
    assert_int_equal(node_png_encode(&w, &b, err, sizeof err), 0);
    *len = b.len;
    return b.data;
}

/* ------------------------------------------------------------------ round trips */

static void test_roundtrip_file_text(void **state)
{
    (void)state;
    char *dir = tu_fresh_dir("roundtrip");
    char path[1024];
    snprintf(path, sizeof path, "%s/out.png", dir);

    /* The metadata exactly as SaveImage makes it: JSON_PYTHON escapes non-ASCII. */
    json_t *prompt = NULL, *wf = NULL;
    const char *ptxt = "{\"3\":{\"class_type\":\"CLIPTextEncode\",\"inputs\":{\"text\":\"caf\xc3\xa9 \xe2\x98\x83\",\"seed\":18446744073709551615}}}";
    const char *wtxt = "{\"nodes\":[],\"version\":0.4}";
    assert_int_equal(json_parse(ptxt, strlen(ptxt), &prompt, NULL, 0), 0);
    assert_int_equal(json_parse(wtxt, strlen(wtxt), &wf, NULL, 0), 0);
    char *pj = json_dump(prompt, JSON_PYTHON), *wj = json_dump(wf, JSON_PYTHON);
    assert_string_equal(pj, "{\"3\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": "
                            "\"caf\\u00e9 \\u2603\", \"seed\": 18446744073709551615}}}");
    node_png_kv_t kv[2] = {{"prompt", pj}, {"workflow", wj}};
    node_png_write_t w = {.pixels = px_rgb, .width = 4, .height = 3, .channels = 3, .text = kv,
                          .n_text = 2, .level = 4};
    char err[256] = "";
    assert_int_equal(node_png_write_file(path, &w, err, sizeof err), 0);

    /* No temporary left behind. */
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);

    node_png_image_t img;
    assert_int_equal(node_png_decode_file(path, &img, err, sizeof err), 0);
    assert_int_equal(img.width, 4);
    assert_int_equal(img.height, 3);
    assert_false(img.has_alpha);
    assert_int_equal(img.color_type, NODE_PNG_RGB);
    assert_int_equal(img.bit_depth, 8);
    for (size_t i = 0; i < 12; i++) {
        assert_int_equal(img.rgba[i * 4 + 0], px_rgb[i * 3 + 0]);
        assert_int_equal(img.rgba[i * 4 + 1], px_rgb[i * 3 + 1]);
        assert_int_equal(img.rgba[i * 4 + 2], px_rgb[i * 3 + 2]);
        assert_int_equal(img.rgba[i * 4 + 3], 255);
    }
    assert_int_equal(img.text.n, 2);
    assert_string_equal(img.text.items[0].key, "prompt");
    assert_string_equal(img.text.items[0].value, pj);
    assert_int_equal(img.text.items[0].value_len, strlen(pj));
    assert_string_equal(img.text.items[1].key, "workflow");
    assert_string_equal(img.text.items[1].value, "{\"nodes\": [], \"version\": 0.4}");
    node_png_image_free(&img);

    node_png_texts_t t;
    assert_int_equal(node_png_read_text_file(path, &t, err, sizeof err), 0);
    assert_int_equal(t.n, 2);
    assert_string_equal(node_png_text_get(&t, "prompt"), pj);
    assert_string_equal(node_png_text_get(&t, "workflow"), wj);
    assert_null(node_png_text_get(&t, "missing"));
    node_png_texts_free(&t);

    /* no_replace refuses an existing name and leaves it and the folder untouched. */
    w.no_replace = true;
    w.n_text = 0;
    assert_int_equal(node_png_write_file(path, &w, err, sizeof err), BASE_E_EXIST);
    node_png_texts_t t0;
    assert_int_equal(node_png_read_text_file(path, &t0, err, sizeof err), 0);
    assert_int_equal(t0.n, 2);
    node_png_texts_free(&t0);
    d = opendir(dir);
    entries = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);
    w.no_replace = false;

    /* Overwriting an existing file works (rename over it). */
    w.n_text = 0;
    assert_int_equal(node_png_write_file(path, &w, err, sizeof err), 0);
    assert_int_equal(node_png_read_text_file(path, &t, err, sizeof err), 0);
    assert_int_equal(t.n, 0);
    node_png_texts_free(&t);

    free(pj);
    free(wj);
    json_free(prompt);
    json_free(wf);
    free(dir);
}

static void test_roundtrip_rgba_memory(void **state)
{
    (void)state;
    uint8_t px[2 * 2 * 4] = {1, 2, 3, 0, 4, 5, 6, 255, 7, 8, 9, 128, 250, 251, 252, 1};
    node_png_kv_t kv[1] = {{"note", "caf\xc3\xa9"}}; /* non-ASCII: written as iTXt */
    node_png_write_t w = {.pixels = px, .width = 2, .height = 2, .channels = 4, .text = kv,
                          .n_text = 1, .level = 1};
    base_buf_t b = BASE_BUF_INIT;
    char err[256];
    assert_int_equal(node_png_encode(&w, &b, err, sizeof err), 0);
    assert_true(find_chunk((uint8_t *)b.data, b.len, "iTXt") > 0);
    assert_int_equal(find_chunk((uint8_t *)b.data, b.len, "tEXt"), 0);
    node_png_image_t img;
    assert_int_equal(node_png_decode(b.data, b.len, &img, err, sizeof err), 0);
    assert_true(img.has_alpha);
    assert_int_equal(img.color_type, NODE_PNG_RGBA);
    assert_memory_equal(img.rgba, px, sizeof px);
    assert_int_equal(img.text.n, 1);
    assert_string_equal(img.text.items[0].value, "caf\xc3\xa9");
    node_png_image_free(&img);
    base_buf_free(&b);
}

static void test_color_types(void **state)
{
    (void)state;
    char err[256];
    node_png_image_t img;
    size_t len;
    char *png;

    /* grey 8-bit */
    const uint8_t g8[3] = {0, 100, 255};
    raw_png_t p = {.w = 3, .h = 1, .ctype = PNG_COLOR_TYPE_GRAY, .depth = 8, .data = g8,
                   .stride = 3};
    png = raw_png(&p, &len);
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    const uint8_t g8_exp[12] = {0, 0, 0, 255, 100, 100, 100, 255, 255, 255, 255, 255};
    assert_memory_equal(img.rgba, g8_exp, 12);
    assert_false(img.has_alpha);
    node_png_image_free(&img);
    free(png);

    /* grey 1-bit: 0b10100000 -> 255, 0, 255 */
    const uint8_t g1[1] = {0xA0};
    p = (raw_png_t){.w = 3, .h = 1, .ctype = PNG_COLOR_TYPE_GRAY, .depth = 1, .data = g1,
                    .stride = 1};
    png = raw_png(&p, &len);
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    const uint8_t g1_exp[12] = {255, 255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 255};
    assert_memory_equal(img.rgba, g1_exp, 12);
    node_png_image_free(&img);
    free(png);

    /* grey + alpha */
    const uint8_t ga[4] = {10, 0, 20, 200};
    p = (raw_png_t){.w = 2, .h = 1, .ctype = PNG_COLOR_TYPE_GRAY_ALPHA, .depth = 8, .data = ga,
                    .stride = 4};
    png = raw_png(&p, &len);
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    const uint8_t ga_exp[8] = {10, 10, 10, 0, 20, 20, 20, 200};
    assert_memory_equal(img.rgba, ga_exp, 8);
    assert_true(img.has_alpha);
    assert_int_equal(img.color_type, NODE_PNG_GRAY_ALPHA);
    node_png_image_free(&img);
    free(png);

    /* palette with tRNS (entry 1 half transparent, entry 2 has no alpha entry = opaque) */
    const png_color pal[3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
    const png_byte trns[2] = {0, 128};
    const uint8_t pi[3] = {0, 1, 2};
    p = (raw_png_t){.w = 3, .h = 1, .ctype = PNG_COLOR_TYPE_PALETTE, .depth = 8, .data = pi,
                    .stride = 3, .pal = pal, .npal = 3, .trns = trns, .ntrns = 2};
    png = raw_png(&p, &len);
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    const uint8_t pal_exp[12] = {1, 2, 3, 0, 4, 5, 6, 128, 7, 8, 9, 255};
    assert_memory_equal(img.rgba, pal_exp, 12);
    assert_true(img.has_alpha);
    assert_true(img.has_trns);
    assert_int_equal(img.color_type, NODE_PNG_PALETTE);
    node_png_image_free(&img);
    free(png);

    /* RGB 16-bit keeps the high byte (PIL) */
    const uint8_t c16[6] = {0x12, 0xFF, 0xAB, 0x01, 0x00, 0x80};
    p = (raw_png_t){.w = 1, .h = 1, .ctype = PNG_COLOR_TYPE_RGB, .depth = 16, .data = c16,
                    .stride = 6};
    png = raw_png(&p, &len);
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    const uint8_t c16_exp[4] = {0x12, 0xAB, 0x00, 255};
    assert_memory_equal(img.rgba, c16_exp, 4);
    assert_int_equal(img.bit_depth, 16);
    node_png_image_free(&img);
    free(png);

    /* RGB with a tRNS colour key */
    const uint8_t ck[6] = {9, 9, 9, 1, 2, 3};
    const png_color_16 key = {.red = 9, .green = 9, .blue = 9};
    p = (raw_png_t){.w = 2, .h = 1, .ctype = PNG_COLOR_TYPE_RGB, .depth = 8, .data = ck,
                    .stride = 6, .trns_color = &key};
    png = raw_png(&p, &len);
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    const uint8_t ck_exp[8] = {9, 9, 9, 0, 1, 2, 3, 255};
    assert_memory_equal(img.rgba, ck_exp, 8);
    assert_true(img.has_trns);
    assert_int_equal(img.color_type, NODE_PNG_RGB);
    node_png_image_free(&img);
    free(png);

    /* interlaced RGB */
    p = (raw_png_t){.w = 4, .h = 3, .ctype = PNG_COLOR_TYPE_RGB, .depth = 8, .data = px_rgb,
                    .stride = 12, .interlace = PNG_INTERLACE_ADAM7};
    png = raw_png(&p, &len);
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    for (size_t i = 0; i < 12; i++)
        assert_memory_equal(img.rgba + i * 4, px_rgb + i * 3, 3);
    node_png_image_free(&img);
    node_png_texts_t t;
    assert_int_equal(node_png_read_text(png, len, &t, err, sizeof err), 0);
    node_png_texts_free(&t);
    free(png);
}

static void test_text_kinds_and_order(void **state)
{
    (void)state;
    png_text pre[3], post[1];
    memset(pre, 0, sizeof pre);
    memset(post, 0, sizeof post);
    pre[0].compression = PNG_TEXT_COMPRESSION_NONE;
    pre[0].key = (char *)"Latin";
    pre[0].text = (char *)"caf\xe9"; /* Latin-1 e-acute */
    pre[1].compression = PNG_TEXT_COMPRESSION_zTXt;
    pre[1].key = (char *)"zipped";
    pre[1].text = (char *)"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    pre[2].compression = PNG_ITXT_COMPRESSION_zTXt;
    pre[2].key = (char *)"intl";
    pre[2].text = (char *)"\xe2\x98\x83 snow";
    post[0].compression = PNG_TEXT_COMPRESSION_NONE;
    post[0].key = (char *)"after";
    post[0].text = (char *)"idat";
    raw_png_t p = {.w = 4, .h = 3, .ctype = PNG_COLOR_TYPE_RGB, .depth = 8, .data = px_rgb,
                   .stride = 12, .pre = pre, .npre = 3, .post = post, .npost = 1};
    size_t len;
    char *png = raw_png(&p, &len);
    char err[256];
    node_png_texts_t t;
    assert_int_equal(node_png_read_text(png, len, &t, err, sizeof err), 0);
    assert_int_equal(t.n, 4);
    assert_string_equal(t.items[0].key, "Latin");
    assert_string_equal(t.items[0].value, "caf\xc3\xa9");
    assert_string_equal(t.items[1].key, "zipped");
    assert_string_equal(t.items[1].value, pre[1].text);
    assert_string_equal(t.items[2].key, "intl");
    assert_string_equal(t.items[2].value, "\xe2\x98\x83 snow");
    assert_string_equal(t.items[3].key, "after");
    assert_string_equal(t.items[3].value, "idat");
    node_png_texts_free(&t);
    node_png_image_t img;
    assert_int_equal(node_png_decode(png, len, &img, err, sizeof err), 0);
    assert_int_equal(img.text.n, 4);
    assert_string_equal(img.text.items[3].key, "after");
    node_png_image_free(&img);
    free(png);
}

/* ------------------------------------------------------------------ broken input */

static void expect_png_error(const void *data, size_t len, const char *needle)
{
    char err[256] = "";
    node_png_image_t img;
    int rc = node_png_decode(data, len, &img, err, sizeof err);
    assert_int_equal(rc, BASE_E_PNG);
    assert_null(img.rgba);
    assert_int_equal(img.text.n, 0);
    if (needle && !strstr(err, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err, needle);
    node_png_texts_t t;
    err[0] = '\0';
    assert_int_equal(node_png_read_text(data, len, &t, err, sizeof err), BASE_E_PNG);
    assert_true(err[0] != '\0');
    assert_int_equal(t.n, 0);
}

static void test_empty_and_not_png(void **state)
{
    (void)state;
    expect_png_error("", 0, "empty");
    expect_png_error("hello world, not an image", 25, "not a PNG");
    expect_png_error("\x89PNG", 4, "not a PNG");
    static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F', 0};
    expect_png_error(jpeg, sizeof jpeg, "not a PNG");

    char *dir = tu_fresh_dir("broken");
    char path[1024];
    snprintf(path, sizeof path, "%s/empty.png", dir);
    tu_write_file(path, "", 0);
    char err[256] = "";
    node_png_image_t img;
    assert_int_equal(node_png_decode_file(path, &img, err, sizeof err), BASE_E_PNG);
    assert_non_null(strstr(err, "empty"));
    snprintf(path, sizeof path, "%s/missing.png", dir);
    assert_int_equal(node_png_decode_file(path, &img, err, sizeof err), BASE_E_NOENT);
    node_png_texts_t t;
    assert_int_equal(node_png_read_text_file(path, &t, err, sizeof err), BASE_E_NOENT);
    free(dir);
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len;
    char *png = sample_png(&len);
    for (size_t cut = 0; cut < len; cut++)
        expect_png_error(png, cut, NULL);

    /* and the same through a file */
    char *dir = tu_fresh_dir("truncated");
    char path[1024];
    snprintf(path, sizeof path, "%s/t.png", dir);
    tu_write_file(path, png, len - 20);
    char err[256] = "";
    node_png_image_t img;
    assert_int_equal(node_png_decode_file(path, &img, err, sizeof err), BASE_E_PNG);
    assert_non_null(strstr(err, "truncated"));
    free(dir);
    free(png);
}

static void test_bad_crc_and_corrupt_data(void **state)
{
    (void)state;
    size_t len;
    char *png = sample_png(&len);
    uint8_t *d = (uint8_t *)png;
    static const char *const chunks[] = {"IHDR", "tEXt", "IDAT", "IEND"};
    for (int i = 0; i < 4; i++) {
        size_t at = find_chunk(d, len, chunks[i]);
        assert_true(at > 0);
        uint8_t *copy = malloc(len);
        memcpy(copy, d, len);
        uint32_t n = ((uint32_t)d[at] << 24) | ((uint32_t)d[at + 1] << 16) |
                     ((uint32_t)d[at + 2] << 8) | d[at + 3];
        copy[at + 8 + n + 3] ^= 0x01; /* the CRC itself */
        expect_png_error(copy, len, "CRC");
        if (n) {
            /* A data byte instead: zlib may notice before the CRC does (IDAT). */
            copy[at + 8 + n + 3] ^= 0x01;
            copy[at + 8 + n - 1] ^= 0x5A;
            expect_png_error(copy, len, i == 2 ? NULL : "CRC");
        }
        free(copy);
    }
    /* A damaged zlib stream with a correct CRC. */
    size_t at = find_chunk(d, len, "IDAT");
    uint8_t *copy = malloc(len);
    memcpy(copy, d, len);
    copy[at + 8] = 0xFF; /* zlib header byte: invalid compression method */
    copy[at + 9] = 0xFF;
    fix_crc(copy, at);
    expect_png_error(copy, len, "invalid PNG");
    free(copy);
    free(png);
}

static void test_huge_dimensions(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = ihdr_only(buf, 20000, 20000);
    expect_png_error(buf, n, "exceed the limit");
    n = ihdr_only(buf, 16384, 16385);
    expect_png_error(buf, n, "exceed the limit");
    n = ihdr_only(buf, 2000000, 1);
    expect_png_error(buf, n, "exceed the limit");
    n = ihdr_only(buf, 0x7FFFFFFF, 0x7FFFFFFF);
    expect_png_error(buf, n, "exceed the limit");
    /* Exactly at the limit passes the size check and fails later (no pixel data). */
    n = ihdr_only(buf, 16384, 16384);
    node_png_texts_t t;
    char err[256] = "";
    assert_int_equal(node_png_read_text(buf, n, &t, err, sizeof err), BASE_E_PNG);
    assert_null(strstr(err, "exceed"));
}

static void test_write_errors(void **state)
{
    (void)state;
    assert_true(node_png_key_valid("prompt"));
    assert_true(node_png_key_valid("a b"));
    assert_false(node_png_key_valid(""));
    assert_false(node_png_key_valid(" lead"));
    assert_false(node_png_key_valid("trail "));
    assert_false(node_png_key_valid("two  spaces"));
    assert_false(node_png_key_valid("caf\xc3\xa9"));
    assert_false(node_png_key_valid(NULL));
    char k80[81];
    memset(k80, 'k', 80);
    k80[80] = '\0';
    assert_false(node_png_key_valid(k80));
    k80[79] = '\0';
    assert_true(node_png_key_valid(k80));

    char err[256];
    base_buf_t b = BASE_BUF_INIT;
    node_png_kv_t bad[1] = {{"bad  key", "v"}};
    node_png_write_t w = {.pixels = px_rgb, .width = 4, .height = 3, .channels = 3, .text = bad,
                          .n_text = 1, .level = 4};
    assert_int_equal(node_png_encode(&w, &b, err, sizeof err), BASE_E_INVAL);
    w.n_text = 0;
    w.channels = 2;
    assert_int_equal(node_png_encode(&w, &b, err, sizeof err), BASE_E_INVAL);
    w.channels = 3;
    w.level = 10;
    assert_int_equal(node_png_encode(&w, &b, err, sizeof err), BASE_E_INVAL);
    w.level = 9;
    w.width = 0;
    assert_int_equal(node_png_encode(&w, &b, err, sizeof err), BASE_E_INVAL);
    w.width = 4;
    assert_int_equal(b.len, 0);

    char *dir = tu_fresh_dir("write_errors");
    char path[1024];
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", dir);
    assert_int_equal(node_png_write_file(path, &w, err, sizeof err), BASE_E_IO);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_file_text),
        cmocka_unit_test(test_roundtrip_rgba_memory),
        cmocka_unit_test(test_color_types),
        cmocka_unit_test(test_text_kinds_and_order),
        cmocka_unit_test(test_empty_and_not_png),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_bad_crc_and_corrupt_data),
        cmocka_unit_test(test_huge_dimensions),
        cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
