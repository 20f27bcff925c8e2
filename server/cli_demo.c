/* `weft demo-model`: writes a random-weight checkpoint with the exact SD1.5 key structure
 * into models/checkpoints/, so a fresh install can run the standard workflows end to end
 * before any real model is downloaded. It draws noise, not pictures.
 *
 * Beside it goes "<name>.tokenizer/", a byte-level CLIP tokenizer (the 512 byte symbols and
 * the two special tokens, no merges): the real BPE tables are not ours to ship, and the
 * demo text encoder has random weights anyway. Real checkpoints use models/clip_tokenizer/. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app.h"
#include "buf.h"
#include "sd/sd.h"
#include "srv.h"

/* GPT-2/CLIP bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 + n in
 * byte order. Returns the code point for byte b. */
static unsigned byte_symbol(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)))
            n++;
    return 256 + n;
}

static int append_symbol(base_buf_t *b, unsigned cp, bool word_end)
{
    char tmp[24];
    if (cp == '"' || cp == '\\')
        snprintf(tmp, sizeof tmp, "\\%c", (char)cp);
    else if (cp >= 32 && cp < 127)
        snprintf(tmp, sizeof tmp, "%c", (char)cp);
    else
        snprintf(tmp, sizeof tmp, "\\u%04x", cp);
    return base_buf_append(b, tmp, strlen(tmp)) || (word_end && base_buf_append(b, "</w>", 4));
}

static int write_tokenizer(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return BASE_E_IO;
    /* vocab ids: 0..255 the byte symbols in bytes_to_unicode order (printable ones first),
     * 256..511 the same with </w>, then the special tokens at their CLIP ids. */
    unsigned order[256], k = 0;
    for (unsigned b = 0; b < 256; b++)
        if (byte_symbol(b) == b)
            order[k++] = b;
    for (unsigned b = 0; b < 256; b++)
        if (byte_symbol(b) != b)
            order[k++] = b;
    base_buf_t v = {0};
    int rc = base_buf_append(&v, "{", 1);
    for (unsigned end = 0; end < 2 && !rc; end++)
        for (unsigned i = 0; i < 256 && !rc; i++) {
            char id[32];
            rc = base_buf_append(&v, "\"", 1) || append_symbol(&v, byte_symbol(order[i]), end == 1);
            snprintf(id, sizeof id, "\": %u, ", end * 256 + i);
            rc = rc || base_buf_append(&v, id, strlen(id));
        }
    const char *tail = "\"<|startoftext|>\": 49406, \"<|endoftext|>\": 49407}\n";
    rc = rc || base_buf_append(&v, tail, strlen(tail));
    char path[PATH_MAX + 16];
    FILE *f = NULL;
    if ((size_t)snprintf(path, sizeof path, "%s/vocab.json", dir) >= sizeof path)
        rc = BASE_E_IO;
    if (!rc && (!(f = fopen(path, "wb")) || fwrite(v.data, 1, v.len, f) != v.len))
        rc = BASE_E_IO;
    if (f && fclose(f) != 0)
        rc = BASE_E_IO;
    base_buf_free(&v);
    if (!rc && (size_t)snprintf(path, sizeof path, "%s/merges.txt", dir) >= sizeof path)
        rc = BASE_E_IO;
    if (!rc && (!(f = fopen(path, "wb")) || fputs("#version: 0.2\n", f) < 0 || fclose(f) != 0))
        rc = BASE_E_IO;
    return rc ? BASE_E_IO : 0;
}

static void demo_usage(FILE *f)
{
    fputs("usage: weft demo-model [--base-dir DIR] [--size tiny|full] [--dtype f32|f16] [--force]\n"
          "\n"
          "Writes models/checkpoints/weft-demo-<size>.safetensors: random weights in the exact\n"
          "Stable Diffusion 1.5 layout (tiny: reduced widths, fast; full: the real sizes, 1.07 B\n"
          "parameters, for benchmarks). It generates noise, not pictures: put real checkpoints in\n"
          "models/checkpoints/ and the CLIP tokenizer (vocab.json, merges.txt) in\n"
          "models/clip_tokenizer/. Does nothing when the file exists, unless --force.\n",
          f);
}

int srv_cmd_demo_model(int argc, char **argv)
{
    const char *base = "weft-data", *size = "tiny", *dtype = "f32";
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            demo_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (i + 1 < argc && !strcmp(a, "--base-dir")) {
            base = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--size")) {
            size = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--dtype")) {
            dtype = argv[++i];
        } else {
            fprintf(stderr, "weft demo-model: unknown or incomplete option '%s'\n\n", a);
            demo_usage(stderr);
            return 2;
        }
    }
    bool tiny = !strcmp(size, "tiny"), f16 = !strcmp(dtype, "f16");
    if ((!tiny && strcmp(size, "full")) || (!f16 && strcmp(dtype, "f32"))) {
        fprintf(stderr, "weft demo-model: --size is tiny or full, --dtype f32 or f16\n");
        return 2;
    }
    srv_env_t env;
    int rc = srv_env_open(&env, base);
    if (rc)
        return 1;
    char path[PATH_MAX], tok[PATH_MAX], err[512] = "";
    if ((size_t)snprintf(path, sizeof path, "%s/checkpoints/weft-demo-%s.safetensors", env.models_dir, size) >=
            sizeof path ||
        (size_t)snprintf(tok, sizeof tok, "%s/checkpoints/weft-demo-%s.tokenizer", env.models_dir, size) >= sizeof tok) {
        fprintf(stderr, "weft demo-model: the base dir path is too long\n");
        srv_env_close(&env);
        return 2;
    }
    struct stat st;
    if (!force && stat(path, &st) == 0) {
        printf("%s exists\n", path);
    } else {
        rc = sd_demo_write(path, tiny ? SD_DEMO_TINY : SD_DEMO_FULL, f16 ? ST_F16 : ST_F32, 1, err, sizeof err);
        if (rc)
            fprintf(stderr, "weft demo-model: %s\n", err[0] ? err : base_strerror(rc));
        else
            printf("wrote %s (random weights: it draws noise, not pictures)\n", path);
    }
    if (!rc && (rc = write_tokenizer(tok)))
        fprintf(stderr, "weft demo-model: cannot write %s: %s\n", tok, strerror(errno));
    /* The demo image classifier (random weights too) for workflows/classify*.json. */
    char cls[PATH_MAX + 64];
    snprintf(cls, sizeof cls, "%s/classifiers/weft-demo-classifier.safetensors", env.models_dir);
    if (!rc && (force || stat(cls, &st) != 0)) {
        if ((rc = node_demo_classifier_write(cls, err, sizeof err)))
            fprintf(stderr, "weft demo-model: %s\n", err[0] ? err : base_strerror(rc));
        else
            printf("wrote %s (random weights)\n", cls);
    }
    srv_env_close(&env);
    return rc ? 1 : 0;
}
