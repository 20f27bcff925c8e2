/* PNG decode/encode over libpng (see png.h).
 *
 * libpng reports errors by longjmp. To keep that safe every resource and every value that
 * changes after setjmp lives in a state struct owned by the caller's frame (dec_t/enc_t);
 * the function that calls setjmp touches only that struct through a pointer it never
 * reassigns, so nothing it needs after a longjmp is an indeterminate local. The caller
 * frees whatever the struct holds, on success and failure alike. */
#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/png.h"

#define MSG_SIZE 256

static void set_err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ text helpers */

/* Latin-1 (tEXt/zTXt) to UTF-8; malloc'ed. */
static char *latin1_to_utf8(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += *p < 0x80 ? 1 : 2;
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80) {
            *o++ = (char)*p;
        } else {
            *o++ = (char)(0xC0 | (*p >> 6));
            *o++ = (char)(0x80 | (*p & 0x3F));
        }
    }
    *o = '\0';
    return out;
}

void node_png_texts_free(node_png_texts_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->items[i].key);
        free(t->items[i].value);
    }
    free(t->items);
    t->items = NULL;
    t->n = 0;
}

const char *node_png_text_get(const node_png_texts_t *t, const char *key)
{
    if (!t || !key)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->items[i].key, key) == 0)
            return t->items[i].value;
    return NULL;
}

/* Appends the text chunks libpng collected in info. 0 or BASE_E_NOMEM. */
static int texts_append(node_png_texts_t *t, png_structp png, png_infop info)
{
    png_textp tp = NULL;
    int num = 0;
    png_get_text(png, info, &tp, &num);
    if (num <= 0 || !tp)
        return 0;
    node_png_text_t *items = realloc(t->items, (t->n + (size_t)num) * sizeof *items);
    if (!items)
        return BASE_E_NOMEM;
    t->items = items;
    for (int i = 0; i < num; i++) {
        bool itxt = tp[i].compression >= PNG_ITXT_COMPRESSION_NONE;
        node_png_text_t *it = &t->items[t->n];
        it->key = latin1_to_utf8(tp[i].key ? tp[i].key : "");
        it->value = itxt ? strdup(tp[i].text ? tp[i].text : "")
                         : latin1_to_utf8(tp[i].text ? tp[i].text : "");
        if (!it->key || !it->value) {
            free(it->key);
            free(it->value);
            return BASE_E_NOMEM;
        }
        it->value_len = strlen(it->value);
        t->n++;
    }
    return 0;
}

/* ------------------------------------------------------------------ decoding */

typedef struct {
    /* source: memory (data/len/pos) or a file */
    const uint8_t *data;
    size_t len, pos;
    FILE *fp;
    bool want_pixels;
    /* The first bytes as they stream past, to refuse oversized IHDR dimensions before
     * libpng acts on them. */
    uint8_t head[24];
    size_t seen;
    bool dims_checked;
    /* resources, freed by dec_cleanup */
    png_structp png;
    png_infop info, end;
    uint8_t *pixels;
    png_bytep *rows;
    node_png_texts_t text;
    /* results */
    uint32_t width, height;
    int color_type, bit_depth;
    bool has_trns;
    int rc;
    char msg[MSG_SIZE];
} dec_t;

static void png_error_cb(png_structp png, png_const_charp msg)
{
    dec_t *d = png_get_error_ptr(png);
    /* Only the first message counts: later ones come from unwinding. */
    if (!d->msg[0])
        snprintf(d->msg, sizeof d->msg, "invalid PNG: %s", msg);
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg)
{
    (void)png;
    BASE_LOG(DEBUG, "libpng warning: %s", msg);
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static bool dims_ok(dec_t *d, uint32_t w, uint32_t h)
{
    if (w <= NODE_PNG_MAX_SIDE && h <= NODE_PNG_MAX_SIDE && (uint64_t)w * h <= NODE_PNG_MAX_PIXELS)
        return true;
    snprintf(d->msg, sizeof d->msg, "PNG dimensions %lux%lu exceed the limit (%ux%u, %u pixels)",
             (unsigned long)w, (unsigned long)h, NODE_PNG_MAX_SIDE, NODE_PNG_MAX_SIDE,
             NODE_PNG_MAX_PIXELS);
    d->rc = BASE_E_PNG;
    return false;
}

/* Watches the stream for the IHDR width and height (bytes 16..23 of every PNG). */
static void dec_sniff(png_structp png, dec_t *d, const uint8_t *p, size_t n)
{
    if (d->dims_checked)
        return;
    for (size_t i = 0; i < n && d->seen < sizeof d->head; i++)
        d->head[d->seen++] = p[i];
    if (d->seen < sizeof d->head)
        return;
    d->dims_checked = true;
    if (memcmp(d->head + 12, "IHDR", 4) == 0 && !dims_ok(d, be32(d->head + 16), be32(d->head + 20)))
        png_longjmp(png, 1);
}

static void dec_read_raw(png_structp png, dec_t *d, png_bytep out, size_t n)
{
    if (d->fp) {
        size_t got = fread(out, 1, n, d->fp);
        if (got == n)
            return;
        if (ferror(d->fp)) {
            snprintf(d->msg, sizeof d->msg, "PNG read error: %s", strerror(errno));
            d->rc = BASE_E_IO;
        } else {
            snprintf(d->msg, sizeof d->msg, "truncated PNG (unexpected end of file)");
        }
        png_longjmp(png, 1);
    }
    if (d->len - d->pos < n) {
        snprintf(d->msg, sizeof d->msg, "truncated PNG (unexpected end of data)");
        png_longjmp(png, 1);
    }
    memcpy(out, d->data + d->pos, n);
    d->pos += n;
}

static void dec_read_cb(png_structp png, png_bytep out, size_t n)
{
    dec_t *d = png_get_io_ptr(png);
    dec_read_raw(png, d, out, n);
    dec_sniff(png, d, out, n);
}

/* Runs libpng over the source. All state is in *d (see the file comment). */
static void dec_run(dec_t *d)
{
    if (setjmp(png_jmpbuf(d->png))) {
        if (!d->rc)
            d->rc = BASE_E_PNG;
        return;
    }
    png_structp png = d->png;
    png_set_read_fn(png, d, dec_read_cb);
    png_set_sig_bytes(png, 8);
    /* PIL refuses a bad CRC in any chunk; so do we, rather than dropping chunks quietly. */
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    /* Our own limit below gives the clearer message, so lift libpng's default one. */
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);
    png_set_chunk_malloc_max(png, NODE_PNG_MAX_CHUNK);
    png_read_info(png, d->info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, d->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (!dims_ok(d, w, h))
        return;
    d->width = w;
    d->height = h;
    d->bit_depth = depth;
    d->color_type = ctype;
    d->has_trns = png_get_valid(png, d->info, PNG_INFO_tRNS) != 0;
    if ((d->rc = texts_append(&d->text, png, d->info)))
        return;

    /* Everything to 8-bit RGBA. strip_16 keeps the high byte, as PIL does. */
    if (depth == 16)
        png_set_strip_16(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (d->has_trns)
        png_set_tRNS_to_alpha(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (!(ctype & PNG_COLOR_MASK_ALPHA) && !d->has_trns)
        png_set_filler(png, 0xFF, PNG_FILLER_AFTER);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, d->info);
    if (png_get_rowbytes(png, d->info) != (size_t)w * 4) {
        snprintf(d->msg, sizeof d->msg, "unsupported PNG layout");
        d->rc = BASE_E_PNG;
        return;
    }

    if (d->want_pixels) {
        d->pixels = malloc((size_t)w * h * 4);
        d->rows = malloc((size_t)h * sizeof *d->rows);
        if (!d->pixels || !d->rows) {
            d->rc = BASE_E_NOMEM;
            return;
        }
        for (size_t y = 0; y < h; y++)
            d->rows[y] = d->pixels + y * (size_t)w * 4;
        png_read_image(png, d->rows);
    } else {
        /* Still inflate every row so that text-only reads refuse the same broken files. */
        d->pixels = malloc((size_t)w * 4);
        if (!d->pixels) {
            d->rc = BASE_E_NOMEM;
            return;
        }
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++)
                png_read_row(png, d->pixels, NULL);
    }
    png_read_end(png, d->end);
    if ((d->rc = texts_append(&d->text, png, d->end)))
        return;
    d->rc = 0;
}

static void dec_cleanup(dec_t *d)
{
    png_destroy_read_struct(d->png ? &d->png : NULL, d->info ? &d->info : NULL,
                            d->end ? &d->end : NULL);
    free(d->pixels);
    free(d->rows);
    node_png_texts_free(&d->text);
}

/* Checks the signature (for a clearer message than libpng's), then decodes. */
static int dec_go(dec_t *d, const uint8_t sig[8], size_t siglen, char *err, size_t errsz)
{
    if (siglen == 0) {
        set_err(err, errsz, "invalid PNG: empty file");
        return BASE_E_PNG;
    }
    if (siglen < 8 || png_sig_cmp(sig, 0, 8) != 0) {
        set_err(err, errsz, "invalid PNG: not a PNG file");
        return BASE_E_PNG;
    }
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_error_cb, png_warning_cb);
    if (d->png) {
        d->info = png_create_info_struct(d->png);
        d->end = png_create_info_struct(d->png);
    }
    if (!d->png || !d->info || !d->end) {
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    dec_run(d);
    if (d->rc) {
        if (d->rc == BASE_E_NOMEM && !d->msg[0])
            snprintf(d->msg, sizeof d->msg, "out of memory decoding PNG");
        set_err(err, errsz, "%s", d->msg[0] ? d->msg : "invalid PNG");
    }
    return d->rc;
}

static void dec_take(dec_t *d, node_png_image_t *out)
{
    out->width = d->width;
    out->height = d->height;
    out->rgba = d->pixels;
    d->pixels = NULL;
    out->color_type = d->color_type;
    out->bit_depth = d->bit_depth;
    out->has_trns = d->has_trns;
    out->has_alpha = (d->color_type & PNG_COLOR_MASK_ALPHA) || d->has_trns;
    out->text = d->text;
    d->text.items = NULL;
    d->text.n = 0;
}

static int open_file(const char *path, FILE **fp, uint8_t sig[8], size_t *siglen, char *err,
                     size_t errsz)
{
    *fp = fopen(path, "rb");
    if (!*fp) {
        int e = errno;
        set_err(err, errsz, "cannot open %s: %s", path, strerror(e));
        return e == ENOENT || e == ENOTDIR ? BASE_E_NOENT : BASE_E_IO;
    }
    *siglen = fread(sig, 1, 8, *fp);
    if (ferror(*fp)) {
        set_err(err, errsz, "cannot read %s: %s", path, strerror(errno));
        fclose(*fp);
        *fp = NULL;
        return BASE_E_IO;
    }
    return 0;
}

static int decode_any(const void *data, size_t len, const char *path, bool want_pixels,
                      node_png_image_t *img, node_png_texts_t *texts, char *err, size_t errsz)
{
    dec_t d;
    memset(&d, 0, sizeof d);
    d.want_pixels = want_pixels;
    uint8_t sig[8] = {0};
    size_t siglen = 0;
    int rc;
    if (path) {
        if ((rc = open_file(path, &d.fp, sig, &siglen, err, errsz)))
            return rc;
    } else {
        if (!data && len) {
            set_err(err, errsz, "no data");
            return BASE_E_INVAL;
        }
        d.data = data;
        d.len = len;
        siglen = len < 8 ? len : 8;
        if (siglen)
            memcpy(sig, data, siglen);
        d.pos = siglen;
    }
    memcpy(d.head, sig, 8);
    d.seen = 8;
    rc = dec_go(&d, sig, siglen, err, errsz);
    if (!rc) {
        if (img) {
            dec_take(&d, img);
        } else {
            *texts = d.text;
            d.text.items = NULL;
            d.text.n = 0;
        }
    }
    dec_cleanup(&d);
    if (d.fp)
        fclose(d.fp);
    return rc;
}

int node_png_decode(const void *data, size_t len, node_png_image_t *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    return decode_any(data, len, NULL, true, out, NULL, err, errsz);
}

int node_png_decode_file(const char *path, node_png_image_t *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    if (!path) {
        set_err(err, errsz, "no path");
        return BASE_E_INVAL;
    }
    return decode_any(NULL, 0, path, true, out, NULL, err, errsz);
}

void node_png_image_free(node_png_image_t *img)
{
    if (!img)
        return;
    free(img->rgba);
    img->rgba = NULL;
    node_png_texts_free(&img->text);
}

int node_png_read_text(const void *data, size_t len, node_png_texts_t *out, char *err,
                       size_t errsz)
{
    memset(out, 0, sizeof *out);
    return decode_any(data, len, NULL, false, NULL, out, err, errsz);
}

int node_png_read_text_file(const char *path, node_png_texts_t *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    if (!path) {
        set_err(err, errsz, "no path");
        return BASE_E_INVAL;
    }
    return decode_any(NULL, 0, path, false, NULL, out, err, errsz);
}

/* ------------------------------------------------------------------ encoding */

bool node_png_key_valid(const char *key)
{
    if (!key)
        return false;
    size_t n = strlen(key);
    if (n < 1 || n > 79 || key[0] == ' ' || key[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x20 || c > 0x7E || (c == ' ' && key[i + 1] == ' '))
            return false;
    }
    return true;
}

typedef struct {
    FILE *fp;        /* sink: a file ... */
    base_buf_t *buf; /* ... or memory */
    png_structp png;
    png_infop info;
    png_textp text; /* owned array; strings borrowed from the caller */
    int rc;
    char msg[MSG_SIZE];
} enc_t;

static void enc_error_cb(png_structp png, png_const_charp msg)
{
    enc_t *e = png_get_error_ptr(png);
    if (!e->msg[0])
        snprintf(e->msg, sizeof e->msg, "PNG encoding failed: %s", msg);
    png_longjmp(png, 1);
}

static void enc_write_cb(png_structp png, png_bytep data, size_t n)
{
    enc_t *e = png_get_io_ptr(png);
    if (e->fp) {
        if (fwrite(data, 1, n, e->fp) == n)
            return;
        snprintf(e->msg, sizeof e->msg, "PNG write failed: %s", strerror(errno));
        e->rc = BASE_E_IO;
    } else {
        if (base_buf_append(e->buf, data, n) == 0)
            return;
        snprintf(e->msg, sizeof e->msg, "out of memory encoding PNG");
        e->rc = BASE_E_NOMEM;
    }
    png_longjmp(png, 1);
}

static void enc_flush_cb(png_structp png)
{
    (void)png; /* the file is flushed and synced once at the end */
}

static void enc_run(enc_t *e, const node_png_write_t *w)
{
    if (setjmp(png_jmpbuf(e->png))) {
        if (!e->rc)
            e->rc = BASE_E_IO;
        return;
    }
    png_structp png = e->png;
    png_set_write_fn(png, e, enc_write_cb, enc_flush_cb);
    png_set_IHDR(png, e->info, w->width, w->height, 8,
                 w->channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, w->level);
    if (w->n_text)
        png_set_text(png, e->info, e->text, (int)w->n_text);
    png_write_info(png, e->info);
    size_t stride = (size_t)w->width * (size_t)w->channels;
    for (uint32_t y = 0; y < w->height; y++)
        png_write_row(png, w->pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    e->rc = 0;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

static int enc_check(const node_png_write_t *w, char *err, size_t errsz)
{
    if (!w || !w->pixels || (w->channels != 3 && w->channels != 4) || w->width == 0 ||
        w->height == 0 || w->width > NODE_PNG_MAX_SIDE || w->height > NODE_PNG_MAX_SIDE ||
        w->level < 0 || w->level > 9 || (w->n_text && !w->text) || w->n_text > INT32_MAX) {
        set_err(err, errsz, "invalid PNG encoding parameters");
        return BASE_E_INVAL;
    }
    for (size_t i = 0; i < w->n_text; i++) {
        if (!node_png_key_valid(w->text[i].key) || !w->text[i].value) {
            set_err(err, errsz, "invalid PNG text key \"%s\"",
                    w->text[i].key ? w->text[i].key : "(null)");
            return BASE_E_INVAL;
        }
    }
    return 0;
}

/* Encodes into e's sink; the caller owns e and cleans up with enc_cleanup. */
static int enc_go(enc_t *e, const node_png_write_t *w, char *err, size_t errsz)
{
    if (w->n_text) {
        e->text = calloc(w->n_text, sizeof *e->text);
        if (!e->text) {
            set_err(err, errsz, "out of memory");
            return BASE_E_NOMEM;
        }
        for (size_t i = 0; i < w->n_text; i++) {
            png_textp t = &e->text[i];
            /* libpng copies keys and texts in png_set_text; the casts only drop const. */
            t->key = (png_charp)(uintptr_t)w->text[i].key;
            t->text = (png_charp)(uintptr_t)w->text[i].value;
            if (is_ascii(w->text[i].value)) {
                t->compression = PNG_TEXT_COMPRESSION_NONE;
                t->text_length = strlen(w->text[i].value);
            } else {
                t->compression = PNG_ITXT_COMPRESSION_NONE;
                t->itxt_length = strlen(w->text[i].value);
            }
        }
    }
    e->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, enc_error_cb, png_warning_cb);
    if (e->png)
        e->info = png_create_info_struct(e->png);
    if (!e->png || !e->info) {
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    enc_run(e, w);
    if (e->rc)
        set_err(err, errsz, "%s", e->msg[0] ? e->msg : "PNG encoding failed");
    return e->rc;
}

static void enc_cleanup(enc_t *e)
{
    png_destroy_write_struct(e->png ? &e->png : NULL, e->info ? &e->info : NULL);
    free(e->text);
}

int node_png_encode(const node_png_write_t *w, base_buf_t *out, char *err, size_t errsz)
{
    int rc = enc_check(w, err, errsz);
    if (rc)
        return rc;
    if (!out) {
        set_err(err, errsz, "no output buffer");
        return BASE_E_INVAL;
    }
    enc_t e;
    memset(&e, 0, sizeof e);
    e.buf = out;
    size_t old_len = out->len;
    rc = enc_go(&e, w, err, errsz);
    enc_cleanup(&e);
    if (rc && out->data) {
        out->len = old_len;
        out->data[old_len] = '\0';
    }
    return rc;
}

/* Moves the finished temporary to its name. */
static int publish(const char *tmp, const char *path, bool no_replace, char *err, size_t errsz)
{
    int r;
    if (!no_replace) {
        r = rename(tmp, path);
    } else {
        r = renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
        if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
            /* File systems without RENAME_NOREPLACE: link() refuses existing names too. */
            r = link(tmp, path);
            if (r == 0)
                unlink(tmp);
        }
    }
    if (r == 0)
        return 0;
    int e = errno;
    set_err(err, errsz, "cannot create %s: %s", path, strerror(e));
    return e == EEXIST ? BASE_E_EXIST : BASE_E_IO;
}

int node_png_write_file(const char *path, const node_png_write_t *w, char *err, size_t errsz)
{
    int rc = enc_check(w, err, errsz);
    if (rc)
        return rc;
    if (!path || !*path) {
        set_err(err, errsz, "no path");
        return BASE_E_INVAL;
    }
    /* The temporary is a hidden sibling, so folder listings never show it and the rename
     * stays on one file system. */
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = path + dirlen;
    size_t tlen = dirlen + 1 + strlen(base) + 8 + 1;
    char *tmp = malloc(tlen);
    if (!tmp) {
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    snprintf(tmp, tlen, "%.*s.%s.XXXXXX", (int)dirlen, path, base);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errsz, "cannot create %s: %s", path, strerror(errno));
        free(tmp);
        return BASE_E_IO;
    }
    (void)fchmod(fd, 0644); /* mkstemp makes 0600; outputs are meant to be shared */
    enc_t e;
    memset(&e, 0, sizeof e);
    e.fp = fdopen(fd, "wb");
    if (!e.fp) {
        set_err(err, errsz, "cannot open %s: %s", tmp, strerror(errno));
        close(fd);
        rc = BASE_E_IO;
        goto out;
    }
    rc = enc_go(&e, w, err, errsz);
    if (!rc && (fflush(e.fp) != 0 || fsync(fileno(e.fp)) != 0)) {
        set_err(err, errsz, "cannot write %s: %s", path, strerror(errno));
        rc = BASE_E_IO;
    }
    if (fclose(e.fp) != 0 && !rc) {
        set_err(err, errsz, "cannot write %s: %s", path, strerror(errno));
        rc = BASE_E_IO;
    }
    e.fp = NULL;
    if (!rc)
        rc = publish(tmp, path, w->no_replace, err, errsz);
out:
    enc_cleanup(&e);
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}
