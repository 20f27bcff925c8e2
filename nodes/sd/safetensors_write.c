/* Writing .safetensors files (demo checkpoints, tests): the header JSON lists the tensors in
 * the caller's order with back-to-back data_offsets, padded with spaces to a multiple of 8
 * so the data starts 8-byte aligned; the file appears under its name only once complete
 * (hidden temporary in the same folder, fsync, rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "map.h"
#include "sd/sd.h"

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

/* The header is JSON, so every name must be UTF-8 (the reader rejects anything else). */
static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n;
        unsigned min;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (p[i] & 0x3fu);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

/* Checks every entry and sets nbytes[i]. */
static int check_entries(const st_write_entry_t *entries, size_t n, size_t *nbytes, bool need_data, char *err,
                         size_t errsz)
{
    base_map_t seen = BASE_MAP_INIT;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const st_write_entry_t *e = &entries[i];
        if (!e->name || !*e->name || strcmp(e->name, "__metadata__") == 0 || !utf8_ok(e->name)) {
            set_err(err, errsz, "tensor %zu: the name must be non-empty UTF-8 other than __metadata__", i);
            rc = BASE_E_INVAL;
            break;
        }
        size_t esz = st_dtype_size(e->dtype);
        if (!esz) {
            set_err(err, errsz, "tensor '%s': unknown dtype %d", e->name, (int)e->dtype);
            rc = BASE_E_INVAL;
            break;
        }
        if (e->ndim < 0 || e->ndim > TS_MAX_DIMS) {
            set_err(err, errsz, "tensor '%s': %d dimensions (0 to %d allowed)", e->name, e->ndim, TS_MAX_DIMS);
            rc = BASE_E_INVAL;
            break;
        }
        size_t total = esz;
        bool zero = false, over = false;
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0) {
                set_err(err, errsz, "tensor '%s': negative dimension %lld", e->name, (long long)e->shape[d]);
                rc = BASE_E_INVAL;
                break;
            }
            zero |= e->shape[d] == 0;
            over |= (uint64_t)e->shape[d] > SIZE_MAX || __builtin_mul_overflow(total, (size_t)e->shape[d], &total);
        }
        if (rc)
            break;
        if (over && !zero) {
            set_err(err, errsz, "tensor '%s': too many elements", e->name);
            rc = BASE_E_INVAL;
            break;
        }
        nbytes[i] = zero ? 0 : total;
        if (need_data && nbytes[i] && !e->data) {
            set_err(err, errsz, "tensor '%s': no data", e->name);
            rc = BASE_E_INVAL;
            break;
        }
        if (base_map_get(&seen, e->name, NULL)) {
            set_err(err, errsz, "tensor '%s' is listed twice", e->name);
            rc = BASE_E_INVAL;
            break;
        }
        if (base_map_put(&seen, e->name, NULL) != 0) {
            set_err(err, errsz, "out of memory");
            rc = BASE_E_NOMEM;
        }
    }
    base_map_free(&seen);
    return rc;
}

static json_t *tensor_json(const st_write_entry_t *e, size_t begin, size_t end)
{
    json_t *o = json_new_object(), *shape = json_new_array(), *offs = json_new_array();
    json_t *dt = json_new_string(st_dtype_name(e->dtype));
    bool ok = o && shape && offs && dt;
    for (int d = 0; ok && d < e->ndim; d++)
        ok = json_array_push(shape, json_new_int(e->shape[d])) == 0;
    ok = ok && json_array_push(offs, json_new_uint(begin)) == 0 && json_array_push(offs, json_new_uint(end)) == 0;
    if (!ok) {
        json_free(o);
        json_free(shape);
        json_free(offs);
        json_free(dt);
        return NULL;
    }
    /* json_object_set takes the values even when it fails. */
    if (json_object_set(o, "dtype", dt) || json_object_set(o, "shape", shape) ||
        json_object_set(o, "data_offsets", offs)) {
        json_free(o);
        return NULL;
    }
    return o;
}

/* The header text, padded to a multiple of 8 (malloc'ed; *len set). */
static int build_header(const st_write_entry_t *entries, size_t n, const size_t *nbytes,
                        const char *const *meta_kv, char **out, size_t *len, char *err, size_t errsz)
{
    json_t *root = json_new_object();
    int rc = root ? 0 : BASE_E_NOMEM;
    if (!rc && meta_kv && meta_kv[0]) {
        json_t *m = json_new_object();
        rc = m ? 0 : BASE_E_NOMEM;
        for (size_t i = 0; !rc && meta_kv[i]; i += 2) {
            if (!meta_kv[i + 1] || !utf8_ok(meta_kv[i]) || !utf8_ok(meta_kv[i + 1])) {
                set_err(err, errsz, "metadata '%s': %s", meta_kv[i],
                        meta_kv[i + 1] ? "not valid UTF-8" : "no value (the list needs key, value pairs)");
                json_free(m);
                json_free(root);
                return BASE_E_INVAL;
            }
            if (json_object_get(m, meta_kv[i])) {
                set_err(err, errsz, "metadata key '%s' is given twice", meta_kv[i]);
                json_free(m);
                json_free(root);
                return BASE_E_INVAL;
            }
            rc = json_object_set(m, meta_kv[i], json_new_string(meta_kv[i + 1]));
        }
        if (rc)
            json_free(m);
        else
            rc = json_object_set(root, "__metadata__", m);
    }
    size_t at = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *t = tensor_json(&entries[i], at, at + nbytes[i]);
        rc = t ? json_object_set(root, entries[i].name, t) : BASE_E_NOMEM;
        at += nbytes[i];
    }
    char *text = rc ? NULL : json_dump(root, JSON_COMPACT);
    json_free(root);
    if (!text) {
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
    char *buf = realloc(text, padded + 1);
    if (!buf) {
        free(text);
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    memset(buf + tl, ' ', padded - tl);
    buf[padded] = '\0';
    *out = buf;
    *len = padded;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes the file through a hidden sibling and a rename. Tensor i's bytes come from
 * entries[i].data, or from fill into a buffer the size of the largest tensor when fill is set. */
static int write_file(const char *path, const st_write_entry_t *entries, size_t n, const char *const *meta_kv,
                      st_fill_fn fill, void *ctx, char *err, size_t errsz)
{
    if (!path || !*path || (n && !entries)) {
        set_err(err, errsz, "st_write: no path or no entries");
        return BASE_E_INVAL;
    }
    size_t *nbytes = calloc(n ? n : 1, sizeof *nbytes);
    if (!nbytes) {
        set_err(err, errsz, "out of memory");
        return BASE_E_NOMEM;
    }
    char *header = NULL, *tmp = NULL;
    void *buf = NULL;
    size_t hlen = 0, biggest = 0;
    int fd = -1, rc = check_entries(entries, n, nbytes, !fill, err, errsz);
    if (!rc)
        rc = build_header(entries, n, nbytes, meta_kv, &header, &hlen, err, errsz);
    if (rc)
        goto out;
    for (size_t i = 0; i < n; i++)
        biggest = nbytes[i] > biggest ? nbytes[i] : biggest;
    if (fill && !(buf = malloc(biggest ? biggest : 1))) {
        set_err(err, errsz, "out of memory (%zu bytes for the largest tensor)", biggest);
        rc = BASE_E_NOMEM;
        goto out;
    }

    /* Hidden sibling: same file system for rename, never listed as a model meanwhile. */
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    size_t tlen = strlen(path) + 10;
    if (!(tmp = malloc(tlen))) {
        set_err(err, errsz, "out of memory");
        rc = BASE_E_NOMEM;
        goto out;
    }
    snprintf(tmp, tlen, "%.*s.%s.XXXXXX", (int)dirlen, path, path + dirlen);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errsz, "cannot create %s: %s", path, strerror(errno));
        rc = BASE_E_IO;
        free(tmp);
        tmp = NULL;
        goto out;
    }
    (void)fchmod(fd, 0644); /* mkstemp's 0600 would hide the model from other local readers */
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    bool ok = write_all(fd, prefix, 8) == 0 && write_all(fd, header, hlen) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        if (fill && (rc = fill(ctx, i, buf, nbytes[i], err, errsz)))
            break;
        ok = write_all(fd, fill ? buf : entries[i].data, nbytes[i]) == 0;
    }
    int e = errno;
    ok = ok && !rc && fsync(fd) == 0;
    if (!ok && !rc)
        e = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    fd = -1;
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        if (!rc) {
            set_err(err, errsz, "cannot write %s: %s", path, strerror(e));
            rc = BASE_E_IO;
        }
        unlink(tmp);
        goto out;
    }
    /* Make the rename itself durable; failure here leaves a complete file either way. */
    char *dir = strndup(path, dirlen ? dirlen : 1);
    if (dir) {
        int dfd = open(dirlen ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
out:
    free(tmp);
    free(header);
    free(buf);
    free(nbytes);
    return rc;
}

int st_write(const char *path, const st_write_entry_t *entries, size_t n, const char *const *meta_kv,
             char *err, size_t errsz)
{
    return write_file(path, entries, n, meta_kv, NULL, NULL, err, errsz);
}

int st_write_stream(const char *path, const st_write_entry_t *entries, size_t n, const char *const *meta_kv,
                    st_fill_fn fill, void *ctx, char *err, size_t errsz)
{
    if (n && !fill) {
        set_err(err, errsz, "st_write_stream: no fill callback");
        return BASE_E_INVAL;
    }
    return write_file(path, entries, n, meta_kv, fill, ctx, err, errsz);
}
