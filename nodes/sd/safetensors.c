/* Reading .safetensors files (reference §1.1): the whole header is validated before any
 * tensor is handed out, so later code can trust every offset, shape and dtype; tensor data
 * stays in a read-only mapping that float32 tensors share without copying.
 *
 * A file is untrusted input (checkpoints are downloaded from anywhere): every number in the
 * header is checked against the real size of the buffer with overflow-safe arithmetic, and
 * nothing is dereferenced until the tiling check has proved that the tensors cover the data
 * buffer exactly. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "err.h"
#include "json.h"
#include "map.h"
#include "sd/sd.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

#define ST_MAX_HEADER 100000000ull /* the reference implementation's MAX_HEADER_SIZE */

/* The bytes of one file, shared by the file object and every zero-copy tensor made from
 * it; freed when the last of them lets go (tensors may be released on any thread). */
typedef struct {
    atomic_size_t refs;
    void *base;
    size_t len;
    bool mapped; /* munmap, else free */
} st_blob_t;

struct st_file_s {
    st_blob_t *blob;      /* one reference held by the file object */
    const uint8_t *data;  /* start of the tensor byte buffer inside blob */
    size_t data_len;
    st_tensor_t *ents;    /* header order */
    size_t n;
    base_map_t index;     /* name -> st_tensor_t *; keys live in arena */
    const char **meta;    /* key, value pairs; strings live in arena */
    size_t nmeta;
    base_arena_t arena;
    char *label;          /* file name for messages (owned) */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [ST_BOOL] = {"BOOL", 1},     [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},       [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},     [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},       [ST_I64] = {"I64", 8}, [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},       [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

size_t st_dtype_size(st_dtype_t d)
{
    return (unsigned)d < N_DTYPES ? dtypes[d].size : 0;
}

const char *st_dtype_name(st_dtype_t d)
{
    return (unsigned)d < N_DTYPES ? dtypes[d].name : "?";
}

static bool dtype_from_name(const char *s, size_t len, st_dtype_t *out)
{
    for (size_t i = 0; i < N_DTYPES; i++) {
        if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, s, len) == 0) {
            *out = (st_dtype_t)i;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ errors */

static void set_err(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* "label: message", BASE_E_MODEL_FORMAT. */
static int bad(char *err, size_t errsz, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(char *err, size_t errsz, const char *label, const char *fmt, ...)
{
    if (err && errsz) {
        int k = snprintf(err, errsz, "%s: ", label);
        if (k >= 0 && (size_t)k < errsz) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + k, errsz - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return BASE_E_MODEL_FORMAT;
}

/* "[2,3,4]" into buf (truncated with "..." when it does not fit). */
static const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = 0;
    buf[k++] = '[';
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k + 2 <= cap) {
        buf[k++] = ']';
        buf[k] = '\0';
    } else if (cap >= 4) {
        strcpy(buf + cap - 4, "...");
    }
    return buf;
}

/* A tensor name for a message: cut short (at a character boundary), control bytes escaped.
 * cap >= 16. */
static const char *fmt_name(char *buf, size_t cap, const char *name)
{
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)name;
    for (; *p && k + 8 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f)
            k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", *p);
        else
            buf[k++] = (char)*p;
    }
    if (*p) {
        while (k > 0 && ((unsigned char)buf[k - 1] & 0xc0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)buf[k - 1] >= 0xc0)
            k--;
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ the shared bytes */

static st_blob_t *blob_new(void *base, size_t len, bool mapped)
{
    st_blob_t *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->base = base;
    b->len = len;
    b->mapped = mapped;
    return b;
}

static void blob_ref(st_blob_t *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

/* Also the release callback of zero-copy tensors. */
static void blob_unref(void *ctx)
{
    st_blob_t *b = ctx;
    if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (b->mapped)
        munmap(b->base, b->len);
    else
        free(b->base);
    free(b);
}

/* ------------------------------------------------------------------ duplicate detection */

/* json_parse keeps the last of repeated keys, so duplicates are found by counting: the text
 * has more keys than the parsed tree exactly when some object repeated a key (a repeat only
 * ever removes keys from the tree). The text is already known to be valid JSON here. */

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\')
            p++;
    return p < end ? p + 1 : end;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Keys in text[p, end). If top is given, the positions of the root object's keys (at most
 * cap) are stored there and their number in *ntop. */
static size_t text_keys(const char *p, const char *end, const char **top, size_t cap, size_t *ntop)
{
    size_t n = 0, nt = 0;
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            const char *s = p;
            p = skip_ws(skip_string(p, end), end);
            if (p < end && *p == ':') {
                n++;
                if (depth == 1 && top && nt < cap)
                    top[nt] = s;
                if (depth == 1)
                    nt++;
            }
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        p++;
    }
    if (ntop)
        *ntop = nt;
    return n;
}

static size_t tree_keys(const json_t *j)
{
    if (!j || (j->type != JSON_OBJECT && j->type != JSON_ARRAY))
        return 0;
    size_t n = j->type == JSON_OBJECT ? json_len(j) : 0;
    for (size_t i = 0; i < json_len(j); i++)
        n += tree_keys(json_at(j, i));
    return n;
}

/* Names the repeat for the message: a repeated tensor name, else the tensor whose entry
 * repeats a field. Only runs on the error path. */
static int report_duplicate(const char *text, const char *end, const json_t *root, const char *label,
                            char *err, size_t errsz)
{
    size_t ntop = 0;
    text_keys(text, end, NULL, 0, &ntop);
    const char **top = calloc(ntop ? ntop : 1, sizeof *top);
    json_t **names = calloc(ntop ? ntop : 1, sizeof *names);
    base_map_t seen = BASE_MAP_INIT;
    char nb[160];
    int rc = BASE_E_NOMEM;
    if (!top || !names) {
        set_err(err, errsz, "out of memory");
        goto out;
    }
    text_keys(text, end, top, ntop, &ntop);
    for (size_t i = 0; i < ntop; i++) {
        const char *ks = top[i], *ke = skip_string(ks, end);
        if (json_parse(ks, (size_t)(ke - ks), &names[i], NULL, 0) != 0 || !json_str(names[i]))
            continue; /* cannot happen for text json_parse accepted as a whole */
        const char *name = json_str(names[i]);
        if (base_map_get(&seen, name, NULL)) {
            rc = bad(err, errsz, label, "the header lists '%s' twice",
                     fmt_name(nb, sizeof nb, name));
            goto out;
        }
        if (base_map_put(&seen, name, NULL) != 0) {
            set_err(err, errsz, "out of memory");
            goto out;
        }
    }
    /* No repeated top-level name: top[i] is the text of the tree's entry i. */
    for (size_t i = 0; i < ntop && i < json_len(root); i++) {
        const char *vs = top[i], *ve = i + 1 < ntop ? top[i + 1] : end;
        if (text_keys(vs, ve, NULL, 0, NULL) != 1 + tree_keys(json_at(root, i))) {
            rc = bad(err, errsz, label, "'%s' repeats a field in the header",
                     fmt_name(nb, sizeof nb, json_key_at(root, i)));
            goto out;
        }
    }
    rc = bad(err, errsz, label, "the header repeats a key");
out:
    for (size_t i = 0; names && i < ntop; i++)
        json_free(names[i]);
    free(names);
    free(top);
    base_map_free(&seen);
    return rc;
}

/* ------------------------------------------------------------------ header validation */

static bool has_nul(const json_t *s)
{
    return memchr(s->u.str.s, '\0', s->u.str.len) != NULL;
}

static int parse_metadata(st_file_t *f, const json_t *m, char *err, size_t errsz)
{
    char nb[160];
    if (m->type != JSON_OBJECT)
        return bad(err, errsz, f->label, "__metadata__ must be an object of strings");
    size_t n = json_len(m);
    if (!n)
        return 0;
    f->meta = base_arena_calloc(&f->arena, 2 * n, sizeof *f->meta);
    if (!f->meta) {
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = json_key_at(m, i);
        const json_t *v = json_at(m, i);
        if (!json_is_string(v))
            return bad(err, errsz, f->label, "__metadata__ value of '%s' is not a string",
                       fmt_name(nb, sizeof nb, k));
        if (has_nul(v))
            return bad(err, errsz, f->label, "__metadata__ value of '%s' contains a NUL byte",
                       fmt_name(nb, sizeof nb, k));
        const char *kc = base_arena_strdup(&f->arena, k), *vc = base_arena_strdup(&f->arena, json_str(v));
        if (!kc || !vc) {
            set_err(err, errsz, "out of memory");
            return BASE_E_NOMEM;
        }
        f->meta[2 * f->nmeta] = kc;
        f->meta[2 * f->nmeta + 1] = vc;
        f->nmeta++;
    }
    return 0;
}

/* One tensor entry: {"dtype", "shape", "data_offsets"} and nothing else. */
static int parse_entry(st_file_t *f, const char *name, const json_t *v, st_tensor_t *e, uint64_t off[2],
                       char *err, size_t errsz)
{
    char nb[160], sb[200];
    const char *qn = fmt_name(nb, sizeof nb, name);
    if (v->type != JSON_OBJECT)
        return bad(err, errsz, f->label, "tensor '%s': entry is not an object", qn);
    const json_t *dt = NULL, *sh = NULL, *of = NULL;
    for (size_t i = 0; i < json_len(v); i++) {
        const char *k = json_key_at(v, i);
        if (strcmp(k, "dtype") == 0)
            dt = json_at(v, i);
        else if (strcmp(k, "shape") == 0)
            sh = json_at(v, i);
        else if (strcmp(k, "data_offsets") == 0)
            of = json_at(v, i);
        else
            return bad(err, errsz, f->label, "tensor '%s' has an unknown field '%s'", qn,
                       fmt_name(sb, sizeof sb, k));
    }
    if (!dt || !sh || !of)
        return bad(err, errsz, f->label, "tensor '%s' has no '%s'", qn,
                   !dt ? "dtype" : !sh ? "shape" : "data_offsets");

    if (!json_is_string(dt) || has_nul(dt))
        return bad(err, errsz, f->label, "tensor '%s': dtype is not a string", qn);
    if (!dtype_from_name(dt->u.str.s, dt->u.str.len, &e->dtype))
        return bad(err, errsz, f->label, "tensor '%s' has unsupported dtype '%s'", qn,
                   fmt_name(sb, sizeof sb, json_str(dt)));

    if (sh->type != JSON_ARRAY)
        return bad(err, errsz, f->label, "tensor '%s': shape is not an array", qn);
    if (json_len(sh) > TS_MAX_DIMS)
        return bad(err, errsz, f->label, "tensor '%s' has %zu dimensions (at most %d are supported)", qn,
                   json_len(sh), TS_MAX_DIMS);
    e->ndim = (int)json_len(sh);
    bool zero = false;
    for (int i = 0; i < e->ndim; i++) {
        const json_t *d = json_at(sh, (size_t)i);
        if (!json_get_i64(d, &e->shape[i]))
            return bad(err, errsz, f->label,
                       "tensor '%s': shape entry %d is not a non-negative integer", qn, i);
        if (e->shape[i] < 0)
            return bad(err, errsz, f->label, "tensor '%s' has a negative dimension (%lld)", qn,
                       (long long)e->shape[i]);
        zero |= e->shape[i] == 0;
    }
    /* A zero dimension makes any other size harmless, so only non-empty shapes can overflow. */
    int64_t numel = 1;
    for (int i = 0; i < e->ndim && !zero; i++) {
        if (__builtin_mul_overflow(numel, e->shape[i], &numel))
            return bad(err, errsz, f->label, "tensor '%s' shape %s has too many elements", qn,
                       fmt_shape(sb, sizeof sb, e->shape, e->ndim));
    }
    e->numel = zero ? 0 : numel;
    size_t nbytes;
    if ((uint64_t)e->numel > SIZE_MAX || __builtin_mul_overflow((size_t)e->numel, st_dtype_size(e->dtype), &nbytes))
        return bad(err, errsz, f->label, "tensor '%s' shape %s has too many elements", qn,
                   fmt_shape(sb, sizeof sb, e->shape, e->ndim));
    e->nbytes = nbytes;

    if (of->type != JSON_ARRAY || json_len(of) != 2 || !json_get_u64(json_at(of, 0), &off[0]) ||
        !json_get_u64(json_at(of, 1), &off[1]))
        return bad(err, errsz, f->label, "tensor '%s': data_offsets must be two non-negative integers", qn);
    if (off[1] < off[0])
        return bad(err, errsz, f->label, "tensor '%s' data_offsets [%llu, %llu] end before they begin", qn,
                   (unsigned long long)off[0], (unsigned long long)off[1]);
    if (off[1] > f->data_len)
        return bad(err, errsz, f->label,
                   "tensor '%s' data_offsets [%llu, %llu] lie outside the data buffer (%zu bytes)", qn,
                   (unsigned long long)off[0], (unsigned long long)off[1], f->data_len);
    if (off[1] - off[0] != nbytes)
        return bad(err, errsz, f->label,
                   "tensor '%s' data_offsets [%llu, %llu] do not match dtype %s shape %s (%zu bytes)", qn,
                   (unsigned long long)off[0], (unsigned long long)off[1], st_dtype_name(e->dtype),
                   fmt_shape(sb, sizeof sb, e->shape, e->ndim), nbytes);
    return 0;
}

typedef struct {
    uint64_t begin, end;
    size_t idx;
} span_t;

static int span_cmp(const void *a, const void *b)
{
    const span_t *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorted by offset, the tensors must tile the buffer: no byte unaccounted for, none shared. */
static int check_tiling(st_file_t *f, span_t *sp, size_t n, char *err, size_t errsz)
{
    char nb[160], nb2[160];
    qsort(sp, n, sizeof *sp, span_cmp);
    uint64_t at = 0;
    size_t prev = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        const char *name = f->ents[sp[i].idx].name;
        if (sp[i].begin < at)
            return bad(err, errsz, f->label, "tensor '%s' data_offsets [%llu, %llu] overlap tensor '%s'",
                       fmt_name(nb, sizeof nb, name), (unsigned long long)sp[i].begin,
                       (unsigned long long)sp[i].end, fmt_name(nb2, sizeof nb2, f->ents[sp[prev].idx].name));
        if (sp[i].begin > at)
            return bad(err, errsz, f->label, "%llu unused bytes before tensor '%s' (data_offsets [%llu, %llu])",
                       (unsigned long long)(sp[i].begin - at), fmt_name(nb, sizeof nb, name),
                       (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end);
        at = sp[i].end;
        prev = i;
    }
    if (at != f->data_len)
        return bad(err, errsz, f->label, "%llu bytes of data after the last tensor",
                   (unsigned long long)(f->data_len - at));
    return 0;
}

static int parse_header(st_file_t *f, const char *text, size_t len, char *err, size_t errsz)
{
    char jerr[160];
    json_t *root = NULL;
    span_t *sp = NULL;
    int rc;
    if (len == 0 || text[0] != '{')
        return bad(err, errsz, f->label, "the header does not start with '{' (not a safetensors file?)");
    rc = json_parse(text, len, &root, jerr, sizeof jerr);
    if (rc == BASE_E_NOMEM) {
        set_err(err, errsz, "out of memory");
        return rc;
    }
    if (rc)
        return bad(err, errsz, f->label, "the header is not valid JSON (%s)", jerr);
    if (root->type != JSON_OBJECT) {
        rc = bad(err, errsz, f->label, "the header is not a JSON object");
        goto out;
    }
    if (text_keys(text, text + len, NULL, 0, NULL) != tree_keys(root)) {
        rc = report_duplicate(text, text + len, root, f->label, err, errsz);
        goto out;
    }

    size_t n = json_len(root);
    f->ents = calloc(n ? n : 1, sizeof *f->ents);
    sp = calloc(n ? n : 1, sizeof *sp);
    if (!f->ents || !sp) {
        set_err(err, errsz, "out of memory");
        rc = BASE_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *key = json_key_at(root, i);
        const json_t *v = json_at(root, i);
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(f, v, err, errsz)))
                goto out;
            continue;
        }
        st_tensor_t *e = &f->ents[f->n];
        uint64_t off[2];
        if ((rc = parse_entry(f, key, v, e, off, err, errsz)))
            goto out;
        if (!(e->name = base_arena_strdup(&f->arena, key))) {
            set_err(err, errsz, "out of memory");
            rc = BASE_E_NOMEM;
            goto out;
        }
        sp[f->n] = (span_t){off[0], off[1], f->n};
        e->data = f->data + off[0];
        f->n++;
    }
    if ((rc = check_tiling(f, sp, f->n, err, errsz)))
        goto out;
    for (size_t i = 0; i < f->n; i++) {
        if (base_map_put(&f->index, f->ents[i].name, &f->ents[i]) != 0) {
            set_err(err, errsz, "out of memory");
            rc = BASE_E_NOMEM;
            goto out;
        }
    }
out:
    free(sp);
    json_free(root);
    return rc;
}

/* ------------------------------------------------------------------ opening */

void st_close(st_file_t *f)
{
    if (!f)
        return;
    blob_unref(f->blob);
    free(f->ents);
    base_map_free(&f->index);
    base_arena_free(&f->arena);
    free(f->label);
    free(f);
}

/* Takes the blob reference (dropped on failure through st_close). */
static int open_blob(st_file_t **out, st_blob_t *blob, const char *label, char *err, size_t errsz)
{
    st_file_t *f = calloc(1, sizeof *f);
    if (!f || !(f->label = strdup(label))) {
        free(f);
        blob_unref(blob);
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    f->blob = blob;
    const uint8_t *b = blob->base;
    size_t len = blob->len;
    int rc;
    if (len < 8) {
        rc = bad(err, errsz, label,
                 "the file is %zu bytes long, too short for a safetensors header (at least 8 bytes)", len);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > ST_MAX_HEADER) {
        rc = bad(err, errsz, label, "header length %llu is larger than the limit of %llu bytes",
                 (unsigned long long)hlen, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > len - 8) {
        rc = bad(err, errsz, label, "header length %llu runs past the end of the file (%zu bytes)",
                 (unsigned long long)hlen, len);
        goto fail;
    }
    f->data = b + 8 + hlen;
    f->data_len = len - 8 - (size_t)hlen;
    if ((rc = parse_header(f, (const char *)b + 8, (size_t)hlen, err, errsz)))
        goto fail;
    *out = f;
    return 0;
fail:
    st_close(f);
    return rc;
}

int st_open_mem(st_file_t **out, const void *bytes, size_t len, char *err, size_t errsz)
{
    if (!out || (!bytes && len)) {
        set_err(err, errsz, "st_open_mem: no output or no bytes");
        return BASE_E_INVAL;
    }
    void *copy = malloc(len ? len : 1);
    st_blob_t *blob = copy ? blob_new(copy, len, false) : NULL;
    if (!blob) {
        free(copy);
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    if (len)
        memcpy(copy, bytes, len);
    return open_blob(out, blob, "<memory>", err, errsz);
}

/* Whole-file read for files that cannot be mapped. 0, BASE_E_NOMEM or BASE_E_IO (*eno). */
static int read_all(int fd, size_t len, void **out, int *eno)
{
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return BASE_E_NOMEM;
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *eno = r < 0 ? errno : EIO; /* r == 0: the file shrank while being read */
            free(buf);
            return BASE_E_IO;
        }
        got += (size_t)r;
    }
    *out = buf;
    return 0;
}

int st_open(st_file_t **out, const char *path, char *err, size_t errsz)
{
    if (!out || !path || !*path) {
        set_err(err, errsz, "st_open: no path");
        return BASE_E_INVAL;
    }
    const char *slash = strrchr(path, '/');
    const char *label = slash && slash[1] ? slash + 1 : path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_err(err, errsz, "cannot open %s: %s", path, strerror(e));
        return e == ENOENT || e == ENOTDIR ? BASE_E_NOENT : BASE_E_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errsz, "cannot read %s: %s", path, strerror(errno));
        close(fd);
        return BASE_E_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errsz, "cannot read %s: %s", path, S_ISDIR(st.st_mode) ? "it is a folder" : "not a regular file");
        close(fd);
        return BASE_E_IO;
    }
    size_t len = (size_t)st.st_size;
    st_blob_t *blob = NULL;
    void *base = NULL;
    int rc = 0, eno = 0;
    if (len >= 8) {
        base = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (base == MAP_FAILED)
            base = NULL;
        else if (!(blob = blob_new(base, len, true))) {
            munmap(base, len);
            rc = BASE_E_NOMEM;
        }
    }
    if (!base) {
        /* Too short to map (open_blob reports that) or not mappable: read it. */
        rc = read_all(fd, len, &base, &eno);
        if (!rc && !(blob = blob_new(base, len, false))) {
            free(base);
            rc = BASE_E_NOMEM;
        }
    }
    close(fd);
    if (rc == BASE_E_IO) {
        set_err(err, errsz, "cannot read %s: %s", path, strerror(eno));
        return rc;
    }
    if (rc) {
        set_err(err, errsz, "out of memory");
        return rc;
    }
    return open_blob(out, blob, label, err, errsz);
}

/* ------------------------------------------------------------------ lookup */

size_t st_count(const st_file_t *f)
{
    return f ? f->n : 0;
}

const st_tensor_t *st_at(const st_file_t *f, size_t i)
{
    return f && i < f->n ? &f->ents[i] : NULL;
}

const st_tensor_t *st_find(const st_file_t *f, const char *name)
{
    void *v = NULL;
    if (!f || !name || !base_map_get(&f->index, name, &v))
        return NULL;
    return v;
}

const char *st_meta(const st_file_t *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* ------------------------------------------------------------------ conversion to float32 */

/* The converters read through memcpy because the data need not be aligned, and are
 * branch-free so the compiler vectorises them (a 2 GB F16 checkpoint goes through
 * conv_f16). */

static inline uint32_t f16_bits(uint16_t h)
{
    uint32_t em = h & 0x7fffu;
    /* Normal numbers: shift exponent+mantissa into place and rebias 15 -> 127. */
    uint32_t bits = (em << 13) + 0x38000000u;
    /* Inf/NaN: exponent 31 must become 255, i.e. rebias twice. Masks, not branches, keep
     * the loop vectorisable. */
    uint32_t special = 0u - (uint32_t)(em >= 0x7c00u);
    bits += special & 0x38000000u;
    /* Zero and subnormals: mantissa * 2^-24, exact in float. */
    float sub = (float)(int32_t)em * 0x1p-24f;
    uint32_t subbits, small = 0u - (uint32_t)(em < 0x0400u);
    memcpy(&subbits, &sub, 4);
    bits = (subbits & small) | (bits & ~small);
    return bits | (uint32_t)(h & 0x8000u) << 16;
}

static inline uint32_t bf16_bits(uint16_t h)
{
    return (uint32_t)h << 16;
}

/* Blocks of a fixed 16 let gcc vectorise at -O2 too (its cheap cost model refuses loops
 * that need a scalar remainder). */
#define CONV_16BIT(fname, elem)                                                    \
    static void fname(float *restrict dst, const uint8_t *restrict src, size_t n)  \
    {                                                                              \
        size_t i = 0;                                                              \
        for (; i + 16 <= n; i += 16) {                                             \
            for (size_t j = 0; j < 16; j++) {                                      \
                uint16_t h;                                                        \
                memcpy(&h, src + 2 * (i + j), 2);                                  \
                uint32_t bits = elem(h);                                           \
                memcpy(&dst[i + j], &bits, 4);                                     \
            }                                                                      \
        }                                                                          \
        for (; i < n; i++) {                                                       \
            uint16_t h;                                                            \
            memcpy(&h, src + 2 * i, 2);                                            \
            uint32_t bits = elem(h);                                               \
            memcpy(&dst[i], &bits, 4);                                             \
        }                                                                          \
    }
CONV_16BIT(conv_f16, f16_bits)
CONV_16BIT(conv_bf16, bf16_bits)
#undef CONV_16BIT

/* E5M2 is the top byte of an IEEE half. */
static void conv_f8_e5m2(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = f16_bits((uint16_t)(src[i] << 8));
        memcpy(&dst[i], &bits, 4);
    }
}

/* E4M3 "fn": bias 7, subnormals, no infinities, S.1111.111 is NaN. */
static void conv_f8_e4m3(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t b = src[i], em = b & 0x7fu, bits;
        if (em == 0x7fu) {
            bits = 0x7fc00000u;
        } else if (em < 0x08u) {
            float sub = (float)em * 0x1p-9f;
            memcpy(&bits, &sub, 4);
        } else {
            bits = (em << 20) + (120u << 23);
        }
        bits |= (b & 0x80u) << 24;
        memcpy(&dst[i], &bits, 4);
    }
}

#define CONV_INT(fname, type)                                                  \
    static void fname(float *restrict dst, const uint8_t *restrict src, size_t n) \
    {                                                                          \
        for (size_t i = 0; i < n; i++) {                                       \
            type v;                                                            \
            memcpy(&v, src + sizeof(type) * i, sizeof(type));                  \
            dst[i] = (float)v;                                                 \
        }                                                                      \
    }
CONV_INT(conv_u8, uint8_t)
CONV_INT(conv_i8, int8_t)
CONV_INT(conv_i16, int16_t)
CONV_INT(conv_u16, uint16_t)
CONV_INT(conv_i32, int32_t)
CONV_INT(conv_u32, uint32_t)
CONV_INT(conv_f32, float)
CONV_INT(conv_i64, int64_t)
CONV_INT(conv_u64, uint64_t)
CONV_INT(conv_f64, double)
#undef CONV_INT

static void conv_bool(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ? 1.0f : 0.0f;
}

typedef void (*conv_fn)(float *restrict, const uint8_t *restrict, size_t);
static const conv_fn convs[N_DTYPES] = {
    [ST_BOOL] = conv_bool,       [ST_U8] = conv_u8,     [ST_I8] = conv_i8,     [ST_I16] = conv_i16,
    [ST_U16] = conv_u16,         [ST_F16] = conv_f16,   [ST_BF16] = conv_bf16, [ST_I32] = conv_i32,
    [ST_U32] = conv_u32,         [ST_F32] = conv_f32,   [ST_I64] = conv_i64,   [ST_U64] = conv_u64,
    [ST_F64] = conv_f64,         [ST_F8_E4M3] = conv_f8_e4m3, [ST_F8_E5M2] = conv_f8_e5m2,
};

static void free_ctx(void *p)
{
    free(p);
}

int st_to_tensor(st_file_t *f, const st_tensor_t *e, ts_tensor_t **out, char *err, size_t errsz)
{
    if (!f || !e || !out || e < f->ents || e >= f->ents + f->n) {
        set_err(err, errsz, "st_to_tensor: the entry does not belong to this file");
        return BASE_E_INVAL;
    }
    char nb[160];
    if ((unsigned)e->dtype >= N_DTYPES || !convs[e->dtype])
        return bad(err, errsz, f->label, "tensor '%s' has dtype %s, which cannot be converted to F32",
                   fmt_name(nb, sizeof nb, e->name), st_dtype_name(e->dtype));
    const ts_device_t cpu = {TS_CPU, 0};
    int rc;
    if (e->numel == 0) {
        rc = ts_zeros(out, e->shape, e->ndim, TS_F32, cpu);
    } else if (e->dtype == ST_F32 && ((uintptr_t)e->data & 3u) == 0) {
        blob_ref(f->blob);
        rc = ts_from_blob(out, e->data, TS_F32, e->shape, e->ndim, blob_unref, f->blob);
        if (rc)
            blob_unref(f->blob);
    } else {
        float *buf = malloc((size_t)e->numel * sizeof *buf);
        if (!buf) {
            set_err(err, errsz, "out of memory converting tensor '%s' (%lld elements)",
                    fmt_name(nb, sizeof nb, e->name), (long long)e->numel);
            return BASE_E_NOMEM;
        }
        convs[e->dtype](buf, e->data, (size_t)e->numel);
        rc = ts_from_blob(out, buf, TS_F32, e->shape, e->ndim, free_ctx, buf);
        if (rc)
            free(buf);
    }
    if (rc)
        set_err(err, errsz, "%s: tensor '%s': %s", f->label, fmt_name(nb, sizeof nb, e->name),
                ts_last_error());
    return rc;
}
