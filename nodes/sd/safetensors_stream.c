/* Streaming .safetensors writer: the header is built from the entry list alone and each
 * tensor's bytes are produced by a callback just before they are written, so a file larger
 * than memory (the full demo checkpoint, 4.3 GB in F32) needs one tensor's buffer at a time.
 * Same layout and atomicity as st_write: header padded with spaces to a multiple of 8,
 * hidden temporary in the same folder, fsync, rename. */
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

static int say(char *err, size_t errsz, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int say(char *err, size_t errsz, int rc, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF): JSON requires it. */
static bool utf8_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned c = *p, n;
        if (c < 0x80)
            n = 0;
        else if ((c & 0xe0) == 0xc0)
            n = 1;
        else if ((c & 0xf0) == 0xe0)
            n = 2;
        else if ((c & 0xf8) == 0xf0)
            n = 3;
        else
            return false;
        c &= n ? 0x3fu >> n : 0x7fu;
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (p[i] & 0x3fu);
        }
        static const unsigned min[4] = {0, 0x80, 0x800, 0x10000};
        if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

/* Validates the entries, fills nbytes[i], and builds the padded header (malloc'ed). */
static int header(const st_write_entry_t *e, size_t n, const char *const *meta_kv, size_t *nbytes, char **out,
                  size_t *len, char *err, size_t errsz)
{
    base_map_t seen = BASE_MAP_INIT;
    json_t *root = json_new_object(), *meta = NULL;
    int rc = root ? 0 : BASE_E_NOMEM;
    for (size_t i = 0; !rc && meta_kv && meta_kv[i]; i += 2) {
        if (!meta_kv[i + 1] || !utf8_valid(meta_kv[i]) || !utf8_valid(meta_kv[i + 1]) ||
            (meta && json_object_get(meta, meta_kv[i]))) {
            rc = say(err, errsz, BASE_E_INVAL, "metadata '%s': missing value, not UTF-8, or given twice",
                     meta_kv[i]);
            break;
        }
        if (!meta && (!(meta = json_new_object()) || json_object_set(root, "__metadata__", meta)))
            rc = BASE_E_NOMEM; /* json_object_set took meta */
        else
            rc = json_object_set(meta, meta_kv[i], json_new_string(meta_kv[i + 1]));
    }
    size_t at = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const char *name = e[i].name;
        size_t esz = st_dtype_size(e[i].dtype), total = esz;
        if (!name || !*name || !strcmp(name, "__metadata__") || !utf8_valid(name) || !esz || e[i].ndim < 0 ||
            e[i].ndim > TS_MAX_DIMS) {
            rc = say(err, errsz, BASE_E_INVAL, "tensor %zu ('%s'): bad name, dtype or rank", i,
                     name ? name : "");
            break;
        }
        if (base_map_get(&seen, name, NULL)) {
            rc = say(err, errsz, BASE_E_INVAL, "tensor '%s' is listed twice", name);
            break;
        }
        /* Each value is handed to its parent as soon as it exists (json_object_set takes it
         * even on failure), so freeing root cleans up on every path. */
        json_t *t = json_new_object(), *shape = NULL, *offs = NULL;
        if (json_object_set(root, name, t) || base_map_put(&seen, name, NULL) ||
            json_object_set(t, "dtype", json_new_string(st_dtype_name(e[i].dtype))) ||
            json_object_set(t, "shape", shape = json_new_array()) ||
            json_object_set(t, "data_offsets", offs = json_new_array())) {
            rc = say(err, errsz, BASE_E_NOMEM, "out of memory");
            break;
        }
        for (int d = 0; !rc && d < e[i].ndim; d++) {
            int64_t s = e[i].shape[d];
            if (s < 0 || __builtin_mul_overflow(total, (uint64_t)s, &total))
                rc = say(err, errsz, BASE_E_INVAL, "tensor '%s': negative or too large shape", name);
            else if (json_array_push(shape, json_new_int(s)))
                rc = say(err, errsz, BASE_E_NOMEM, "out of memory");
        }
        if (!rc && (__builtin_add_overflow(at, total, &nbytes[i]) || nbytes[i] > (size_t)INT64_MAX))
            rc = say(err, errsz, BASE_E_INVAL, "tensor '%s': the file would be too large", name);
        if (!rc &&
            (json_array_push(offs, json_new_uint(at)) || json_array_push(offs, json_new_uint(at + total))))
            rc = say(err, errsz, BASE_E_NOMEM, "out of memory");
        nbytes[i] = total;
        at += total;
    }
    char *text = rc ? NULL : json_dump(root, JSON_COMPACT);
    json_free(root);
    base_map_free(&seen);
    if (rc)
        return rc;
    if (!text)
        return say(err, errsz, BASE_E_NOMEM, "out of memory");
    size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
    char *buf = realloc(text, padded + 1);
    if (!buf) {
        free(text);
        return say(err, errsz, BASE_E_NOMEM, "out of memory");
    }
    memset(buf + tl, ' ', padded - tl);
    buf[padded] = '\0';
    *out = buf;
    *len = padded;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    for (const char *c = p; n;) {
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

int st_write_stream(const char *path, const st_write_entry_t *entries, size_t n, const char *const *meta_kv,
                    st_fill_fn fill, void *ctx, char *err, size_t errsz)
{
    if (!path || !*path || (n && (!entries || !fill)))
        return say(err, errsz, BASE_E_INVAL, "st_write_stream: no path, entries or fill callback");
    size_t *nbytes = calloc(n ? n : 1, sizeof *nbytes), hlen = 0, biggest = 0;
    char *head = NULL, *tmp = NULL;
    void *buf = NULL;
    int fd = -1, rc = nbytes ? header(entries, n, meta_kv, nbytes, &head, &hlen, err, errsz) : BASE_E_NOMEM;
    if (rc)
        goto out;
    for (size_t i = 0; i < n; i++)
        biggest = nbytes[i] > biggest ? nbytes[i] : biggest;
    size_t tlen = strlen(path) + 10;
    if (!(buf = malloc(biggest ? biggest : 1)) || !(tmp = malloc(tlen))) {
        rc = say(err, errsz, BASE_E_NOMEM, "out of memory (%zu bytes for the largest tensor)", biggest);
        goto out;
    }
    /* Hidden sibling: same file system for the rename, never listed as a model meanwhile. */
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) + 1 : 0;
    snprintf(tmp, tlen, "%.*s.%s.XXXXXX", dirlen, path, path + dirlen);
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        rc = say(err, errsz, BASE_E_IO, "cannot create %s: %s", path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    (void)fchmod(fd, 0644);
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    bool ok = write_all(fd, prefix, 8) == 0 && write_all(fd, head, hlen) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        if ((rc = fill(ctx, i, buf, nbytes[i], err, errsz)))
            break;
        ok = write_all(fd, buf, nbytes[i]) == 0;
    }
    int e = errno;
    ok = ok && !rc && fsync(fd) == 0;
    if (!ok && !rc)
        e = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        if (!rc)
            rc = say(err, errsz, BASE_E_IO, "cannot write %s: %s", path, strerror(e));
        unlink(tmp);
    }
out:
    free(tmp);
    free(head);
    free(buf);
    free(nbytes);
    return rc;
}
