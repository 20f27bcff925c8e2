/* Any thread (no shared state). weft's PNG codec over libpng, private to nodes/ but kept
 * small so the server (/view, /upload/mask) and the CLI (reading the "workflow" and
 * "prompt" chunks of a dropped PNG) can reuse it.
 *
 * Decoding accepts every PNG colour type and bit depth and hands back 8-bit RGBA: palette
 * and tRNS become an alpha channel, grey is replicated, 16-bit samples keep their high
 * byte (what PIL does, so pixels match ComfyUI's). Width and height are checked against
 * NODE_PNG_MAX_SIDE / NODE_PNG_MAX_PIXELS before any pixel memory is allocated.
 *
 * Errors: every failure returns a negative base_err_t code and writes a one-line message
 * into err (when errsz > 0): BASE_E_PNG for anything wrong with the bytes (empty, not a
 * PNG, bad CRC in any chunk, truncated, corrupt zlib stream, dimensions over the limits),
 * BASE_E_NOENT/BASE_E_IO for files, BASE_E_NOMEM, BASE_E_INVAL for bad arguments. */
#ifndef WEFT_NODES_PNG_H
#define WEFT_NODES_PNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define NODE_PNG_MAX_SIDE 16384u
#define NODE_PNG_MAX_PIXELS (1u << 28)
/* Largest single chunk (e.g. a text chunk holding a workflow) we accept, also the cap on
 * a decompressed zTXt/iTXt, so a zip bomb cannot exhaust memory. */
#define NODE_PNG_MAX_CHUNK (64u << 20)

/* One text chunk. key and value are UTF-8 (tEXt/zTXt Latin-1 is converted), NUL-
 * terminated; value_len excludes the NUL. */
typedef struct {
    char *key;   /* owned */
    char *value; /* owned */
    size_t value_len;
} node_png_text_t;

typedef struct {
    node_png_text_t *items; /* owned; in file order (chunks before IDAT, then after) */
    size_t n;
} node_png_texts_t;

/* Colour types of the source file (values of the PNG spec). */
enum {
    NODE_PNG_GRAY = 0,
    NODE_PNG_RGB = 2,
    NODE_PNG_PALETTE = 3,
    NODE_PNG_GRAY_ALPHA = 4,
    NODE_PNG_RGBA = 6,
};

typedef struct {
    uint32_t width, height;
    uint8_t *rgba;         /* owned: width*height*4 bytes, rows top to bottom; alpha 255 when
                              the source has none */
    bool has_alpha;        /* an alpha channel or a tRNS chunk was present */
    bool has_trns;         /* a tRNS chunk was present */
    int color_type;        /* NODE_PNG_* of the source */
    int bit_depth;         /* 1, 2, 4, 8 or 16 in the source */
    node_png_texts_t text; /* every tEXt, zTXt and iTXt chunk */
} node_png_image_t;

/* Decodes a whole PNG from memory / from a file. On success *out owns its buffers (free
 * with node_png_image_free); on failure *out is zeroed. */
int node_png_decode(const void *data, size_t len, node_png_image_t *out, char *err, size_t errsz);
int node_png_decode_file(const char *path, node_png_image_t *out, char *err, size_t errsz);
void node_png_image_free(node_png_image_t *img); /* NULL and zeroed structs are fine */

/* Reads only the text chunks (the pixel data is still checked, so a truncated or corrupt
 * file fails the same way as in decode). On failure *out is empty. */
int node_png_read_text(const void *data, size_t len, node_png_texts_t *out, char *err,
                       size_t errsz);
int node_png_read_text_file(const char *path, node_png_texts_t *out, char *err, size_t errsz);
/* Borrowed value of the first chunk named key, NULL when absent. */
const char *node_png_text_get(const node_png_texts_t *t, const char *key);
void node_png_texts_free(node_png_texts_t *t);

/* A text chunk to write. Written as tEXt when value is ASCII (always the case for
 * json_dump(..., JSON_PYTHON) output, as in ComfyUI), else as uncompressed iTXt. */
typedef struct {
    const char *key;   /* must satisfy node_png_key_valid() */
    const char *value; /* NUL-terminated UTF-8 */
} node_png_kv_t;

/* PNG keyword rules: 1..79 printable ASCII characters, no leading, trailing or double
 * spaces (libpng would otherwise rewrite the key silently). */
bool node_png_key_valid(const char *key);

/* Pixels to encode: 8-bit, channels 3 (RGB) or 4 (RGBA), rows packed top to bottom. */
typedef struct {
    const uint8_t *pixels; /* borrowed: width*height*channels bytes */
    uint32_t width, height;
    int channels;
    const node_png_kv_t *text; /* borrowed, written in this order before IDAT */
    size_t n_text;
    int level; /* zlib level 0..9 */
    /* node_png_write_file only: fail with BASE_E_EXIST instead of replacing an existing
     * file, atomically, so concurrent savers never overwrite each other's outputs. */
    bool no_replace;
} node_png_write_t;

/* Writes path atomically: encodes into a temporary file in the same folder, flushes it to
 * disk and renames it to path, so readers never see a half-written PNG. The caller has
 * already confined path (base_path_resolve). */
int node_png_write_file(const char *path, const node_png_write_t *w, char *err, size_t errsz);
/* Encodes into memory, appending to out (on failure out is unchanged in length). */
int node_png_encode(const node_png_write_t *w, base_buf_t *out, char *err, size_t errsz);

#endif
