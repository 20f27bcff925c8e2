/* safetensors reader and writer (nodes/sd/safetensors*.c): round trips for every dtype,
 * zero-copy mapping and its lifetime, exact float conversions, and hostile files (each
 * malformed header, every truncation, random byte mutations) that must fail cleanly. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "sd/sd.h"
#include "tensor/tensor.h"

static const ts_device_t cpu = {TS_CPU, 0};

/* ------------------------------------------------------------------ helpers */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* A file image: 8-byte length (hlen, or strlen(hdr) when hlen == UINT64_MAX), the header
 * text, then dlen data bytes 0, 1, 2, ... */
static uint8_t *mk_raw(uint64_t hlen, const char *hdr, size_t dlen, size_t *len)
{
    size_t hl = strlen(hdr);
    if (hlen == UINT64_MAX)
        hlen = hl;
    uint8_t *b = malloc(8 + hl + dlen + 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < dlen; i++)
        b[8 + hl + i] = (uint8_t)i;
    *len = 8 + hl + dlen;
    return b;
}

static uint8_t *mk(const char *hdr, size_t dlen, size_t *len)
{
    return mk_raw(UINT64_MAX, hdr, dlen, len);
}

/* Opening must fail with MODEL_FORMAT and a message containing want. */
static void expect_bad(const uint8_t *b, size_t len, const char *want, const char *what)
{
    st_file_t *f = NULL;
    char err[512] = "";
    int rc = st_open_mem(&f, b, len, err, sizeof err);
    if (rc != BASE_E_MODEL_FORMAT || !strstr(err, want)) {
        print_error("case '%s': rc %d, message \"%s\", expected MODEL_FORMAT with \"%s\"\n", what, rc, err,
                    want);
        fail();
    }
    assert_null(f);
    assert_non_null(strstr(err, "<memory>: "));
}

static bool in_maps(const char *path)
{
    FILE *m = fopen("/proc/self/maps", "r");
    assert_non_null(m);
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, m))
        if (strstr(line, path))
            found = true;
    fclose(m);
    return found;
}

static void read_f32(const ts_tensor_t *t, float *dst, size_t n)
{
    assert_int_equal(ts_numel(t), (int64_t)n);
    assert_int_equal(ts_dtype(t), TS_F32);
    assert_int_equal(ts_to_host(t, TS_F32, dst, n * sizeof *dst), 0);
}

/* ------------------------------------------------------------------ round trip */

/* Raw data for every dtype: 6 elements each, with values whose float32 images are known. */
typedef struct {
    st_dtype_t dt;
    uint8_t bytes[48];
    float want[6];
} dt_case_t;

static void fill_cases(dt_case_t *c)
{
    memset(c, 0, 15 * sizeof *c);
    int k = 0;
    { c[k].dt = ST_BOOL; uint8_t v[6] = {0, 1, 2, 0, 255, 1}; memcpy(c[k].bytes, v, 6);
      float w[6] = {0, 1, 1, 0, 1, 1}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_U8; uint8_t v[6] = {0, 1, 2, 127, 128, 255}; memcpy(c[k].bytes, v, 6);
      float w[6] = {0, 1, 2, 127, 128, 255}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_I8; int8_t v[6] = {0, 1, -1, 127, -128, 5}; memcpy(c[k].bytes, v, 6);
      float w[6] = {0, 1, -1, 127, -128, 5}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_I16; int16_t v[6] = {0, 1, -1, 32767, -32768, 300}; memcpy(c[k].bytes, v, 12);
      float w[6] = {0, 1, -1, 32767, -32768, 300}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_U16; uint16_t v[6] = {0, 1, 2, 65535, 32768, 300}; memcpy(c[k].bytes, v, 12);
      float w[6] = {0, 1, 2, 65535, 32768, 300}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_F16; uint16_t v[6] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x3555, 0x8000}; memcpy(c[k].bytes, v, 12);
      float w[6] = {1.0f, -2.0f, 0x1p-24f, 65504.0f, 0.333251953125f, -0.0f}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_BF16; uint16_t v[6] = {0x3F80, 0xC000, 0x4049, 0x0001, 0x7F7F, 0xBF00}; memcpy(c[k].bytes, v, 12);
      float w[6] = {1.0f, -2.0f, 3.140625f, 0x1p-133f, 0x1.fep127f, -0.5f}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_I32; int32_t v[6] = {0, 1, -1, 16777216, -7, 123456}; memcpy(c[k].bytes, v, 24);
      float w[6] = {0, 1, -1, 16777216, -7, 123456}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_U32; uint32_t v[6] = {0, 1, 2, 4294967295u, 7, 65536}; memcpy(c[k].bytes, v, 24);
      float w[6] = {0, 1, 2, 4294967296.0f, 7, 65536}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_F32; float v[6] = {1.5f, -2.25f, 0.0f, 1e-40f, 3.0e38f, -0.0f}; memcpy(c[k].bytes, v, 24);
      memcpy(c[k].want, v, sizeof v); k++; }
    { c[k].dt = ST_I64; int64_t v[6] = {0, 1, 76, -1, 1ll << 40, -(1ll << 33)}; memcpy(c[k].bytes, v, 48);
      float w[6] = {0, 1, 76, -1, 0x1p40f, -0x1p33f}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_U64; uint64_t v[6] = {0, 1, 2, 1ull << 63, 9, 10}; memcpy(c[k].bytes, v, 48);
      float w[6] = {0, 1, 2, 0x1p63f, 9, 10}; memcpy(c[k].want, w, sizeof w); k++; }
    { c[k].dt = ST_F64; double v[6] = {0.5, -1.25, 1e300, 0.1, -3.0, 1e-50}; memcpy(c[k].bytes, v, 48);
      float w[6] = {0.5f, -1.25f, INFINITY, 0.1f, -3.0f, 0.0f}; memcpy(c[k].want, w, sizeof w); k++; }
    /* E4M3 (fn): 0x38 = 1, 0x7E = 448 (largest), 0x01 = 2^-9 (smallest subnormal), 0xB8 = -1,
     * 0x40 = 2, 0x08 = 2^-6 (smallest normal). */
    { c[k].dt = ST_F8_E4M3; uint8_t v[6] = {0x38, 0x7E, 0x01, 0xB8, 0x40, 0x08}; memcpy(c[k].bytes, v, 6);
      float w[6] = {1.0f, 448.0f, 0x1p-9f, -1.0f, 2.0f, 0x1p-6f}; memcpy(c[k].want, w, sizeof w); k++; }
    /* E5M2: 0x3C = 1, 0x7B = 57344 (largest), 0x01 = 2^-16, 0xC0 = -2, 0x7C = inf, 0x04 = 2^-14. */
    { c[k].dt = ST_F8_E5M2; uint8_t v[6] = {0x3C, 0x7B, 0x01, 0xC0, 0x7C, 0x04}; memcpy(c[k].bytes, v, 6);
      float w[6] = {1.0f, 57344.0f, 0x1p-16f, -2.0f, INFINITY, 0x1p-14f}; memcpy(c[k].want, w, sizeof w); k++; }
    assert_int_equal(k, 15);
}

static void test_dtype_table(void **state)
{
    (void)state;
    static const char *names[] = {"BOOL", "U8",  "I8",  "I16", "U16", "F16", "BF16",   "I32",
                                  "U32",  "F32", "I64", "U64", "F64", "F8_E4M3", "F8_E5M2"};
    static const size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};
    for (int d = 0; d < 15; d++) {
        assert_string_equal(st_dtype_name((st_dtype_t)d), names[d]);
        assert_int_equal(st_dtype_size((st_dtype_t)d), sizes[d]);
    }
    assert_int_equal(st_dtype_size((st_dtype_t)99), 0);
    assert_string_equal(st_dtype_name((st_dtype_t)99), "?");
}

static void test_roundtrip_every_dtype(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    char *dir = tu_fresh_dir("roundtrip");
    char *path = join(dir, "all.safetensors");
    dt_case_t c[15];
    fill_cases(c);
    /* Shapes alternate between [6], [2,3] and [3,1,2]; plus a scalar and an empty tensor. */
    st_write_entry_t e[17];
    memset(e, 0, sizeof e);
    char names[15][32];
    for (int i = 0; i < 15; i++) {
        snprintf(names[i], sizeof names[i], "t%02d.%s", i, st_dtype_name(c[i].dt));
        e[i].name = names[i];
        e[i].dtype = c[i].dt;
        e[i].data = c[i].bytes;
        if (i % 3 == 0) {
            e[i].ndim = 1, e[i].shape[0] = 6;
        } else if (i % 3 == 1) {
            e[i].ndim = 2, e[i].shape[0] = 2, e[i].shape[1] = 3;
        } else {
            e[i].ndim = 3, e[i].shape[0] = 3, e[i].shape[1] = 1, e[i].shape[2] = 2;
        }
    }
    float scalar = 42.5f;
    e[15] = (st_write_entry_t){.name = "scalar", .dtype = ST_F32, .ndim = 0, .shape = {0}, .data = &scalar};
    e[16] = (st_write_entry_t){.name = "empty", .dtype = ST_F16, .ndim = 2, .shape = {0, 3}, .data = NULL};
    const char *meta[] = {"format", "pt", "weft.note", "h\xc3\xa9llo \"quoted\"", NULL};
    char err[512] = "";
    assert_int_equal(st_write(path, e, 17, meta, err, sizeof err), 0);

    /* On disk: the header length is a multiple of 8 and the padding is spaces. */
    size_t flen = 0;
    char *raw = NULL;
    {
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        fseek(fp, 0, SEEK_END);
        flen = (size_t)ftell(fp);
        fseek(fp, 0, SEEK_SET);
        raw = malloc(flen);
        assert_non_null(raw);
        assert_int_equal(fread(raw, 1, flen, fp), flen);
        fclose(fp);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (uint8_t)raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(raw[8], '{');
    size_t data_len = 0;
    for (int i = 0; i < 15; i++)
        data_len += 6 * st_dtype_size(c[i].dt);
    data_len += 4;
    assert_int_equal(flen, 8 + hlen + data_len);
    const char *brace = memrchr(raw + 8, '}', hlen);
    assert_non_null(brace);
    for (const char *p = brace + 1; p < raw + 8 + hlen; p++)
        assert_int_equal(*p, ' ');
    free(raw);
    /* Its mode lets other local users read the model. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    st_file_t *f = NULL;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), 17);
    assert_string_equal(st_meta(f, "format"), "pt");
    assert_string_equal(st_meta(f, "weft.note"), "h\xc3\xa9llo \"quoted\"");
    assert_null(st_meta(f, "absent"));
    assert_null(st_find(f, "absent"));
    assert_null(st_at(f, 17));
    for (int i = 0; i < 15; i++) {
        const st_tensor_t *t = st_at(f, (size_t)i);
        assert_non_null(t);
        assert_string_equal(t->name, names[i]); /* header order = order given */
        assert_ptr_equal(st_find(f, names[i]), t);
        assert_int_equal(t->dtype, c[i].dt);
        assert_int_equal(t->ndim, e[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], e[i].shape[d]);
        assert_int_equal(t->numel, 6);
        assert_int_equal(t->nbytes, 6 * st_dtype_size(c[i].dt));
        assert_memory_equal(t->data, c[i].bytes, t->nbytes);

        ts_tensor_t *x = NULL;
        assert_int_equal(st_to_tensor(f, t, &x, err, sizeof err), 0);
        int64_t shape[TS_MAX_DIMS];
        assert_int_equal(ts_shape(x, shape), e[i].ndim);
        for (int d = 0; d < e[i].ndim; d++)
            assert_int_equal(shape[d], e[i].shape[d]);
        float got[6];
        read_f32(x, got, 6);
        for (int j = 0; j < 6; j++) {
            if (memcmp(&got[j], &c[i].want[j], 4) != 0) {
                print_error("%s[%d]: got %a, want %a\n", names[i], j, (double)got[j], (double)c[i].want[j]);
                fail();
            }
        }
        ts_free(x);
    }
    const st_tensor_t *s = st_find(f, "scalar");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    ts_tensor_t *x = NULL;
    assert_int_equal(st_to_tensor(f, s, &x, err, sizeof err), 0);
    assert_int_equal(ts_ndim(x), 0);
    float v = 0;
    read_f32(x, &v, 1);
    assert_true(v == 42.5f);
    ts_free(x);
    const st_tensor_t *em = st_find(f, "empty");
    assert_int_equal(em->numel, 0);
    assert_int_equal(em->nbytes, 0);
    assert_int_equal(st_to_tensor(f, em, &x, err, sizeof err), 0);
    assert_int_equal(ts_numel(x), 0);
    assert_int_equal(ts_size(x, 1), 3);
    ts_free(x);
    st_close(f);

    /* No metadata at all: st_meta finds nothing. Rewriting replaces the file atomically and
     * leaves no temporary behind. */
    assert_int_equal(st_write(path, e, 2, NULL, err, sizeof err), 0);
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), 2);
    assert_null(st_meta(f, "format"));
    st_close(f);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = all.safetensors", dir);
    assert_int_equal(system(cmd), 0);
    free(path);
    free(dir);
}

/* Whatever the header's natural length, it is padded with 0..7 spaces to a multiple of 8. */
static void test_writer_padding(void **state)
{
    (void)state;
    char *dir = tu_fresh_dir("padding");
    char *path = join(dir, "p.safetensors");
    float d[2] = {1, 2};
    st_write_entry_t e = {.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = d};
    char value[16], err[256];
    int seen[8] = {0};
    for (int k = 0; k < 8; k++) {
        memset(value, 'v', (size_t)k);
        value[k] = '\0';
        const char *meta[] = {"k", value, NULL};
        assert_int_equal(st_write(path, &e, 1, meta, err, sizeof err), 0);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        uint8_t b[256];
        size_t n = fread(b, 1, sizeof b, fp);
        fclose(fp);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | b[i];
        assert_int_equal(hlen % 8, 0);
        assert_int_equal(n, 8 + hlen + 8);
        size_t spaces = 0;
        while (b[8 + hlen - 1 - spaces] == ' ')
            spaces++;
        assert_true(spaces < 8);
        assert_int_equal(b[8 + hlen - 1 - spaces], '}');
        seen[spaces] = 1;
        assert_memory_equal(b + 8 + hlen, d, 8);
    }
    for (int i = 0; i < 8; i++)
        assert_true(seen[i]); /* every padding amount occurred */
    free(path);
    free(dir);
}

static void test_writer_rejects(void **state)
{
    (void)state;
    char *dir = tu_fresh_dir("writer");
    char *path = join(dir, "w.safetensors");
    float d[4] = {1, 2, 3, 4};
    char err[512];
    st_write_entry_t ok = {.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {4}, .data = d};
    st_write_entry_t two[2] = {ok, ok};
    assert_int_equal(st_write(path, two, 2, NULL, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "'a' is listed twice"));
    st_write_entry_t bad = ok;
    bad.dtype = (st_dtype_t)77;
    assert_int_equal(st_write(path, &bad, 1, NULL, err, sizeof err), BASE_E_INVAL);
    bad = ok;
    bad.shape[0] = -4;
    assert_int_equal(st_write(path, &bad, 1, NULL, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "negative"));
    bad = ok;
    bad.ndim = 9;
    assert_int_equal(st_write(path, &bad, 1, NULL, err, sizeof err), BASE_E_INVAL);
    bad = ok;
    bad.data = NULL;
    assert_int_equal(st_write(path, &bad, 1, NULL, err, sizeof err), BASE_E_INVAL);
    bad = ok;
    bad.name = "__metadata__";
    assert_int_equal(st_write(path, &bad, 1, NULL, err, sizeof err), BASE_E_INVAL);
    bad.name = "bad\xff";
    assert_int_equal(st_write(path, &bad, 1, NULL, err, sizeof err), BASE_E_INVAL);
    bad = ok;
    bad.ndim = 2, bad.shape[0] = INT64_MAX, bad.shape[1] = 4;
    assert_int_equal(st_write(path, &bad, 1, NULL, err, sizeof err), BASE_E_INVAL);
    const char *odd[] = {"k", NULL};
    assert_int_equal(st_write(path, &ok, 1, odd, err, sizeof err), BASE_E_INVAL);
    const char *dup[] = {"k", "1", "k", "2", NULL};
    assert_int_equal(st_write(path, &ok, 1, dup, err, sizeof err), BASE_E_INVAL);
    assert_non_null(strstr(err, "twice"));
    /* Nothing was created by the failures; a missing folder is an I/O error. */
    assert_int_equal(access(path, F_OK), -1);
    char *nodir = join(dir, "missing/w.safetensors");
    assert_int_equal(st_write(nodir, &ok, 1, NULL, err, sizeof err), BASE_E_IO);
    assert_non_null(strstr(err, "missing/w.safetensors"));
    free(nodir);
    /* Zero tensors is a valid file ("{}" padded). */
    assert_int_equal(st_write(path, NULL, 0, NULL, err, sizeof err), 0);
    st_file_t *f = NULL;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), 0);
    st_close(f);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------------ zero copy and lifetime */

static void test_zero_copy_and_lifetime(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    char *dir = tu_fresh_dir("zerocopy");
    char *path = join(dir, "zc.safetensors");
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint8_t one = 7;
    st_write_entry_t e[3] = {
        {.name = "aligned", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "byte", .dtype = ST_U8, .ndim = 1, .shape = {1}, .data = &one},
        {.name = "odd", .dtype = ST_F32, .ndim = 1, .shape = {6}, .data = w},
    };
    char err[512];
    assert_int_equal(st_write(path, e, 3, NULL, err, sizeof err), 0);
    st_file_t *f = NULL;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_true(in_maps(path));
    const st_tensor_t *a = st_find(f, "aligned"), *odd = st_find(f, "odd");
    assert_int_equal((uintptr_t)a->data % 4, 0);
    assert_int_equal((uintptr_t)odd->data % 4, 1); /* after the 1-byte tensor */
    ts_tensor_t *ta = NULL, *to = NULL;
    assert_int_equal(st_to_tensor(f, a, &ta, err, sizeof err), 0);
    assert_int_equal(st_to_tensor(f, odd, &to, err, sizeof err), 0);
    /* Aligned F32 is the mapping itself; unaligned is a copy. */
    assert_ptr_equal(ts_data(ta), a->data);
    assert_ptr_not_equal(ts_data(to), odd->data);
    float got[6];
    read_f32(to, got, 6);
    assert_memory_equal(got, w, sizeof w);
    ts_free(to);

    /* The mapping outlives the file object while a tensor uses it, and goes with the last. */
    st_close(f);
    assert_true(in_maps(path));
    const float *p = ts_data(ta);
    for (int i = 0; i < 6; i++)
        assert_true(p[i] == w[i]);
    ts_tensor_t *view = NULL;
    int64_t flat[1] = {6};
    assert_int_equal(ts_reshape(&view, ta, flat, 1), 0);
    ts_free(ta);
    assert_true(in_maps(path)); /* a view still holds it */
    read_f32(view, got, 6);
    assert_memory_equal(got, w, sizeof w);
    ts_free(view);
    assert_false(in_maps(path));

    /* Entries of another file are refused. */
    st_file_t *g = NULL, *h = NULL;
    assert_int_equal(st_open(&g, path, err, sizeof err), 0);
    assert_int_equal(st_open(&h, path, err, sizeof err), 0);
    ts_tensor_t *x = NULL;
    assert_int_equal(st_to_tensor(g, st_at(h, 0), &x, err, sizeof err), BASE_E_INVAL);
    assert_null(x);
    st_close(g);
    st_close(h);
    assert_false(in_maps(path));
    free(path);
    free(dir);
}

static void test_open_errors(void **state)
{
    (void)state;
    char *dir = tu_fresh_dir("openerr");
    char *missing = join(dir, "missing.safetensors");
    char err[512];
    st_file_t *f = NULL;
    assert_int_equal(st_open(&f, missing, err, sizeof err), BASE_E_NOENT);
    assert_non_null(strstr(err, "missing.safetensors"));
    assert_null(f);
    assert_int_equal(st_open(&f, dir, err, sizeof err), BASE_E_IO);
    assert_non_null(strstr(err, "folder"));
    /* Messages name the file (not its folder). */
    char *bad = join(dir, "model.safetensors");
    size_t len;
    uint8_t *b = mk("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, &len);
    tu_write_file(bad, b, len);
    assert_int_equal(st_open(&f, bad, err, sizeof err), BASE_E_MODEL_FORMAT);
    assert_string_equal(err, "model.safetensors: tensor 'x' data_offsets [0, 12] do not match dtype F32 shape "
                             "[2,2] (16 bytes)");
    free(b);
    tu_write_file(bad, "", 0);
    assert_int_equal(st_open(&f, bad, err, sizeof err), BASE_E_MODEL_FORMAT);
    assert_non_null(strstr(err, "model.safetensors: the file is 0 bytes long"));
    tu_write_file(bad, "\x02\0\0\0\0\0\0", 7);
    assert_int_equal(st_open(&f, bad, err, sizeof err), BASE_E_MODEL_FORMAT);
    assert_non_null(strstr(err, "7 bytes long"));
    assert_null(f);
    free(bad);
    free(missing);
    free(dir);
}

/* ------------------------------------------------------------------ conversions */

/* Independent reading of an IEEE half: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals
 * 2^-14 * m/1024. */
static float half_ref(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexpf((float)m, -24);
    else
        v = ldexpf((float)(1024 + m), e - 25);
    return s ? -v : v;
}

static void test_half_conversion_exhaustive(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    /* Every F16 and BF16 bit pattern through the reader, against the formula above and
     * against ATen's own conversion. */
    enum { N = 65536 };
    uint16_t *bits = malloc(N * 2);
    float *got = malloc(N * 4), *aten = malloc(N * 4);
    assert_non_null(bits);
    assert_non_null(got);
    assert_non_null(aten);
    for (int i = 0; i < N; i++)
        bits[i] = (uint16_t)i;
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[65536],\"data_offsets\":[0,131072]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[256,256],\"data_offsets\":[131072,262144]}}");
    size_t hl = strlen(hdr), len = 8 + hl + 2 * N * 2;
    uint8_t *file = malloc(len);
    assert_non_null(file);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(file + 8, hdr, hl);
    memcpy(file + 8 + hl, bits, N * 2);
    memcpy(file + 8 + hl + N * 2, bits, N * 2);
    st_file_t *f = NULL;
    char err[512];
    assert_int_equal(st_open_mem(&f, file, len, err, sizeof err), 0);

    ts_tensor_t *t = NULL, *ref = NULL;
    assert_int_equal(st_to_tensor(f, st_find(f, "h"), &t, err, sizeof err), 0);
    read_f32(t, got, N);
    int64_t shape[1] = {N};
    assert_int_equal(ts_from_host(&ref, bits, TS_F16, shape, 1, cpu), 0);
    assert_int_equal(ts_to_host(ref, TS_F32, aten, N * 4), 0);
    for (int i = 0; i < N; i++) {
        float want = half_ref((uint16_t)i);
        bool ok = isnan(want) ? isnan(got[i]) && isnan(aten[i])
                              : memcmp(&got[i], &want, 4) == 0 && memcmp(&aten[i], &want, 4) == 0;
        if (!ok) {
            print_error("F16 0x%04x: got %a, formula %a, ATen %a\n", i, (double)got[i], (double)want,
                        (double)aten[i]);
            fail();
        }
    }
    /* The named check values. */
    assert_true(got[0x3C00] == 1.0f);
    assert_true(got[0xC000] == -2.0f);
    assert_true(got[0x0001] == 0x1p-24f);
    assert_true(got[0x03FF] == 1023 * 0x1p-24f);
    assert_true(got[0x7C00] == INFINITY);
    assert_true(got[0xFC00] == -INFINITY);
    assert_true(isnan(got[0x7E00]));
    assert_true(got[0x8000] == 0.0f && signbit(got[0x8000]));
    ts_free(t);
    ts_free(ref);

    assert_int_equal(st_to_tensor(f, st_find(f, "b"), &t, err, sizeof err), 0);
    read_f32(t, got, N);
    assert_int_equal(ts_from_host(&ref, bits, TS_BF16, shape, 1, cpu), 0);
    assert_int_equal(ts_to_host(ref, TS_F32, aten, N * 4), 0);
    for (int i = 0; i < N; i++) {
        uint32_t want = (uint32_t)i << 16, g, a;
        memcpy(&g, &got[i], 4);
        memcpy(&a, &aten[i], 4);
        float wf;
        memcpy(&wf, &want, 4);
        bool ok = isnan(wf) ? isnan(got[i]) && isnan(aten[i]) : g == want && a == want;
        if (!ok) {
            print_error("BF16 0x%04x: got %08x, want %08x, ATen %08x\n", i, g, want, a);
            fail();
        }
    }
    assert_true(got[0x3F80] == 1.0f);
    assert_true(got[0xC000] == -2.0f);
    assert_true(got[0x0001] == 0x1p-133f);
    assert_true(got[0x7F80] == INFINITY);
    assert_true(got[0xFF80] == -INFINITY);
    ts_free(t);
    ts_free(ref);
    st_close(f);
    free(file);
    free(bits);
    free(got);
    free(aten);
}

/* Unaligned F16 data (odd offset) converts just as well. */
static void test_unaligned_half(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    size_t len;
    uint8_t *b = mk("{\"pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[1,5]}}     ",
                    5, &len);
    /* h = {0x3C00 (1.0), 0xC500 (-5.0)} at data offset 1. */
    size_t d = len - 5;
    b[d + 1] = 0x00, b[d + 2] = 0x3C, b[d + 3] = 0x00, b[d + 4] = 0xC5;
    st_file_t *f = NULL;
    char err[512];
    assert_int_equal(st_open_mem(&f, b, len, err, sizeof err), 0);
    ts_tensor_t *t = NULL;
    assert_int_equal(st_to_tensor(f, st_find(f, "h"), &t, err, sizeof err), 0);
    float got[2];
    read_f32(t, got, 2);
    assert_true(got[0] == 1.0f && got[1] == -5.0f);
    ts_free(t);
    st_close(f);
    free(b);
}

/* ------------------------------------------------------------------ hostile headers */

#define T1 "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"

typedef struct {
    const char *what;
    const char *hdr;
    size_t dlen;
    const char *msg;
} hostile_t;

static const hostile_t hostile[] = {
    {"header not an object", "[1,2]", 0, "does not start with '{'"},
    {"leading space", " {}", 0, "does not start with '{'"},
    {"empty header", "", 0, "does not start with '{'"},
    {"bad JSON", "{\"a\":", 0, "not valid JSON"},
    {"bad UTF-8 in a name", "{\"\xff\":" T1 "}", 4, "not valid JSON"},
    {"overlong UTF-8", "{\"\xc0\xaf\":" T1 "}", 4, "not valid JSON"},
    {"NUL in a name", "{\"a\\u0000b\":" T1 "}", 4, "not valid JSON"},
    {"trailing garbage", "{\"a\":" T1 "} x", 4, "not valid JSON"},
    {"trailing second object", "{\"a\":" T1 "}{}", 4, "not valid JSON"},
    {"offsets past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}", 16,
     "tensor 'a' data_offsets [0, 64] lie outside the data buffer (16 bytes)"},
    {"huge offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551615]}}",
     4, "lie outside the data buffer"},
    {"offsets beyond u64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 4,
     "data_offsets must be two non-negative integers"},
    {"end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
     "tensor 'a' data_offsets [4, 0] end before they begin"},
    {"size mismatch", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12,
     "tensor 'x' data_offsets [0, 12] do not match dtype F32 shape [2,2] (16 bytes)"},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     "tensor 'b' data_offsets [4, 12] overlap tensor 'a'"},
    {"same range twice", "{\"a\":" T1 ",\"b\":" T1 "}", 4, "overlap tensor"},
    {"hole", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
     "4 unused bytes before tensor 'b' (data_offsets [8, 12])"},
    {"first not at 0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     "4 unused bytes before tensor 'a'"},
    {"data after the last tensor", "{\"a\":" T1 "}", 8, "4 bytes of data after the last tensor"},
    {"data without tensors", "{}", 3, "3 bytes of data after the last tensor"},
    {"numel overflow 2^80", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}",
     4, "tensor 'a' shape [1099511627776,1099511627776] has too many elements"},
    {"bytes overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952,2],\"data_offsets\":[0,8]}}", 8,
     "has too many elements"},
    {"dim beyond i64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}", 4,
     "shape entry 0 is not a non-negative integer"},
    {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16,
     "tensor 'a' has a negative dimension (-2)"},
    {"float dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
     "shape entry 0 is not a non-negative integer"},
    {"exponent dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", 8,
     "shape entry 0 is not a non-negative integer"},
    {"string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
     "shape entry 0 is not a non-negative integer"},
    {"NaN dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,8]}}", 8,
     "shape entry 0 is not a non-negative integer"},
    {"nine dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'a' has 9 dimensions (at most 8 are supported)"},
    {"shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4,
     "tensor 'a': shape is not an array"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'a' has unsupported dtype 'F99'"},
    {"lowercase dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "unsupported dtype 'f32'"},
    {"dtype with NUL", "{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'a': dtype is not a string"},
    {"numeric dtype", "{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'a': dtype is not a string"},
    {"no dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no 'dtype'"},
    {"no shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no 'shape'"},
    {"no offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a' has no 'data_offsets'"},
    {"extra field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offsets\":[0,4]}}", 4,
     "tensor 'a' has an unknown field 'offsets'"},
    {"one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
     "data_offsets must be two non-negative integers"},
    {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4,
     "data_offsets must be two non-negative integers"},
    {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
     "data_offsets must be two non-negative integers"},
    {"entry not an object", "{\"a\":[1,2]}", 0, "tensor 'a': entry is not an object"},
    {"duplicate name", "{\"w\":" T1 ",\"v\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},\"w\":" T1 "}",
     4, "the header lists 'w' twice"},
    {"duplicate escaped name", "{\"w\":" T1 ",\"\\u0077\":" T1 "}", 4, "the header lists 'w' twice"},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "'a' repeats a field in the header"},
    {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"},\"a\":" T1 "}", 4,
     "'__metadata__' repeats a field"},
    {"duplicate metadata", "{\"__metadata__\":{},\"a\":" T1 ",\"__metadata__\":{}}", 4,
     "the header lists '__metadata__' twice"},
    {"metadata number", "{\"__metadata__\":{\"k\":1},\"a\":" T1 "}", 4, "__metadata__ value of 'k' is not a string"},
    {"metadata nested", "{\"__metadata__\":{\"k\":{\"x\":\"y\"}},\"a\":" T1 "}", 4,
     "__metadata__ value of 'k' is not a string"},
    {"metadata null", "{\"__metadata__\":{\"k\":null}}", 0, "__metadata__ value of 'k' is not a string"},
    {"metadata array", "{\"__metadata__\":[\"a\"]}", 0, "__metadata__ must be an object of strings"},
    {"metadata string", "{\"__metadata__\":\"x\"}", 0, "__metadata__ must be an object of strings"},
    {"metadata NUL", "{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "contains a NUL byte"},
};

static void test_hostile_headers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        size_t len;
        uint8_t *b = mk(hostile[i].hdr, hostile[i].dlen, &len);
        expect_bad(b, len, hostile[i].msg, hostile[i].what);
        free(b);
    }
    /* The NUL padding case: strlen stops at the NUL, so build it by hand. */
    {
        const char *h = "{\"a\":" T1 "}";
        size_t hl = strlen(h), len;
        uint8_t *b = mk_raw(hl + 1, h, 0, &len);
        uint8_t *c = malloc(len + 1 + 4);
        assert_non_null(c);
        memcpy(c, b, len);
        c[len] = '\0';
        memset(c + len + 1, 0, 4);
        expect_bad(c, len + 5, "not valid JSON", "NUL after the object");
        free(b);
        free(c);
    }
}

static void test_hostile_lengths(void **state)
{
    (void)state;
    size_t len;
    expect_bad((const uint8_t *)"", 0, "the file is 0 bytes long", "empty");
    expect_bad((const uint8_t *)"\x02\0\0\0\0\0\0", 7, "the file is 7 bytes long", "7 bytes");
    /* Header length lies: longer than the file, far longer, over the limit, max u64. */
    uint8_t *b = mk_raw(100, "{}", 0, &len);
    expect_bad(b, len, "header length 100 runs past the end of the file (10 bytes)", "lying length");
    free(b);
    b = mk_raw(99999999, "{}", 0, &len);
    expect_bad(b, len, "runs past the end", "long length");
    free(b);
    b = mk_raw(100000001, "{}", 0, &len);
    expect_bad(b, len, "header length 100000001 is larger than the limit of 100000000 bytes", "over limit");
    free(b);
    b = mk_raw(UINT64_MAX - 1, "{}", 0, &len);
    expect_bad(b, len, "larger than the limit", "max length");
    free(b);
    b = mk_raw(0, "{}", 0, &len);
    expect_bad(b, len, "does not start with '{'", "zero length");
    free(b);
    /* A length that cuts the JSON short, with the rest taken as data. */
    b = mk_raw(10, "{\"a\":" T1 "}", 0, &len);
    expect_bad(b, len, "not valid JSON", "short length");
    free(b);
    /* Valid minimal files: "{}" alone, with spaces, with a zero-size tensor and no data. */
    st_file_t *f = NULL;
    char err[256];
    b = mk("{}", 0, &len);
    assert_int_equal(st_open_mem(&f, b, len, err, sizeof err), 0);
    assert_int_equal(st_count(f), 0);
    st_close(f);
    free(b);
    b = mk("{\"e\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[0,0]}} \t\n\r  ", 0, &len);
    assert_int_equal(st_open_mem(&f, b, len, err, sizeof err), 0);
    assert_int_equal(st_find(f, "e")->numel, 0);
    st_close(f);
    free(b);
    /* A huge dim next to a zero is a valid empty tensor, not an overflow. */
    b = mk("{\"e\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,0],\"data_offsets\":[0,0]}}", 0, &len);
    assert_int_equal(st_open_mem(&f, b, len, err, sizeof err), 0);
    st_close(f);
    free(b);
}

/* A small valid file used by the truncation and mutation tests: three dtypes, an empty
 * tensor, metadata, an unaligned F32. */
static uint8_t *small_file(size_t *len)
{
    uint16_t h[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};
    float w[3] = {0.5f, -1.5f, 2.0f};
    uint8_t u[3] = {1, 2, 3};
    int64_t ids[2] = {0, 76};
    st_write_entry_t e[5] = {
        {.name = "h", .dtype = ST_F16, .ndim = 2, .shape = {2, 2}, .data = h},
        {.name = "u", .dtype = ST_U8, .ndim = 1, .shape = {3}, .data = u},
        {.name = "w", .dtype = ST_F32, .ndim = 1, .shape = {3}, .data = w},
        {.name = "z", .dtype = ST_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "ids", .dtype = ST_I64, .ndim = 2, .shape = {1, 2}, .data = ids},
    };
    const char *meta[] = {"format", "pt", NULL};
    char *dir = tu_fresh_dir("small");
    char *path = join(dir, "s.safetensors");
    char err[256];
    assert_int_equal(st_write(path, e, 5, meta, err, sizeof err), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, fp), *len);
    fclose(fp);
    free(path);
    free(dir);
    return b;
}

static void test_every_truncation(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = small_file(&len);
    st_file_t *f = NULL;
    char err[512];
    assert_int_equal(st_open_mem(&f, b, len, err, sizeof err), 0);
    assert_int_equal(st_count(f), 5);
    st_close(f);
    for (size_t n = 0; n < len; n++) {
        /* Exactly sized copies, so ASan sees any read past the end. */
        uint8_t *c = malloc(n ? n : 1);
        assert_non_null(c);
        memcpy(c, b, n);
        f = NULL;
        err[0] = '\0';
        int rc = st_open_mem(&f, c, n, err, sizeof err);
        if (rc != BASE_E_MODEL_FORMAT || f || !strstr(err, "<memory>: ")) {
            print_error("truncated to %zu of %zu: rc %d (%s)\n", n, len, rc, err);
            fail();
        }
        free(c);
    }
    free(b);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void test_random_mutations(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    size_t len;
    uint8_t *b = small_file(&len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    static const char interesting[] = "\"{}[],:0123456789-.eE \\u\xff\x80\0hwuz";
    uint64_t seed = 0x5afe7e45011ull;
    int opened = 0, rejected = 0;
    for (int iter = 0; iter < 4000; iter++) {
        uint8_t *c = malloc(len);
        assert_non_null(c);
        memcpy(c, b, len);
        int muts = 1 + (int)(rng_next(&seed) % 4);
        uint64_t mode = rng_next(&seed) % 10;
        for (int m = 0; m < muts; m++) {
            uint64_t r = rng_next(&seed);
            /* Mostly the header (where the parser lives); sometimes the length prefix or only
             * the tensor data (which keeps the file valid and exercises the converters). */
            size_t pos = mode < 2 ? 8 + hlen + (size_t)(r >> 8) % (len - 8 - hlen)
                         : mode == 2 ? (size_t)(r >> 8) % 8 : 8 + (size_t)(r >> 8) % hlen;
            uint64_t v = rng_next(&seed);
            c[pos] = v % 2 ? (uint8_t)(v >> 8) : (uint8_t)interesting[(v >> 8) % (sizeof interesting - 1)];
        }
        /* Sometimes also cut the file short. */
        size_t n = rng_next(&seed) % 8 == 0 ? (size_t)(rng_next(&seed) % len) : len;
        st_file_t *f = NULL;
        char err[512] = "";
        int rc = st_open_mem(&f, c, n, err, sizeof err);
        if (rc == 0) {
            opened++;
            /* Whatever was accepted must be readable without stepping outside the copy. */
            for (size_t i = 0; i < st_count(f); i++) {
                ts_tensor_t *t = NULL;
                const st_tensor_t *e = st_at(f, i);
                assert_ptr_equal(st_find(f, e->name), e);
                int trc = st_to_tensor(f, e, &t, err, sizeof err);
                assert_true(trc == 0 || trc == BASE_E_NOMEM);
                if (!trc) {
                    double sum = 0;
                    assert_int_equal(ts_reduce_all(t, TS_REDUCE_SUM, &sum), 0);
                    ts_free(t);
                }
            }
            st_close(f);
        } else {
            rejected++;
            if (rc != BASE_E_MODEL_FORMAT || f || !err[0]) {
                print_error("mutation %d: rc %d (%s)\n", iter, rc, err);
                fail();
            }
        }
        free(c);
    }
    print_message("mutations: %d opened, %d rejected\n", opened, rejected);
    /* Both outcomes happen (data-only mutations keep the file valid). */
    assert_true(opened > 500);
    assert_true(rejected > 2000);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_roundtrip_every_dtype),
        cmocka_unit_test(test_writer_padding),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_zero_copy_and_lifetime),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_half_conversion_exhaustive),
        cmocka_unit_test(test_unaligned_half),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_random_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
