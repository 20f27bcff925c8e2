/* Confining request-supplied names to a folder, plus small trusted file helpers. */
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"

int base_path_check_rel(const char *rel)
{
    if (!rel || !*rel || rel[0] == '/' || strchr(rel, '\\'))
        return BASE_E_PATH;
    for (const char *c = rel; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return BASE_E_PATH;
        c += n;
        if (*c == '/')
            c++;
    }
    return 0;
}

/* True when p equals dir or lies below it; both are real paths. */
static bool is_inside(const char *dir, const char *p)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return p[0] == '/';
    return strncmp(dir, p, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

static int errno_code(int e)
{
    if (e == ENOENT || e == ENOTDIR)
        return BASE_E_NOENT;
    if (e == ENOMEM)
        return BASE_E_NOMEM;
    return BASE_E_IO;
}

/* Appends rel's components to b, dropping "." and empty ones; returns the offset in b
 * where the last component starts, or (size_t)-1 when rel has no component. */
static int join_components(base_buf_t *b, const char *rel, size_t *last)
{
    *last = (size_t)-1;
    for (const char *c = rel; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n && !(n == 1 && c[0] == '.')) {
            if (!(b->len == 1 && b->data[0] == '/') && base_buf_putc(b, '/'))
                return BASE_E_NOMEM;
            *last = b->len;
            if (base_buf_append(b, c, n))
                return BASE_E_NOMEM;
        }
        c += n;
        if (*c == '/')
            c++;
    }
    return 0;
}

int base_path_resolve(const char *root, const char *rel, bool must_exist, char **out)
{
    int rc = base_path_check_rel(rel);
    if (rc)
        return rc;
    if (!root || !*root)
        return BASE_E_INVAL;
    base_buf_t b = BASE_BUF_INIT;
    char *real = NULL, *parent_real = NULL;
    char *root_real = realpath(root, NULL);
    if (!root_real)
        return errno_code(errno);
    if ((rc = base_buf_puts(&b, root_real)))
        goto out;
    size_t last;
    if ((rc = join_components(&b, rel, &last)))
        goto out;
    if (must_exist) {
        real = realpath(b.data, NULL);
        if (!real) {
            rc = errno_code(errno);
            goto out;
        }
        if (!is_inside(root_real, real)) {
            rc = BASE_E_PATH;
            goto out;
        }
        *out = real;
        real = NULL;
        goto out;
    }
    /* A new file needs a name of its own: "." alone would name root itself. */
    if (last == (size_t)-1) {
        rc = BASE_E_PATH;
        goto out;
    }
    char *name = b.data + last;
    name[-1] = '\0';
    parent_real = realpath(last == 1 ? "/" : b.data, NULL);
    name[-1] = '/';
    if (!parent_real) {
        rc = errno_code(errno);
        goto out;
    }
    struct stat st;
    if (stat(parent_real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = BASE_E_NOENT; /* realpath accepts a regular file as the "folder" */
        goto out;
    }
    if (!is_inside(root_real, parent_real)) {
        rc = BASE_E_PATH;
        goto out;
    }
    base_buf_t full = BASE_BUF_INIT;
    if (base_buf_puts(&full, parent_real) || (strcmp(parent_real, "/") != 0 && base_buf_putc(&full, '/')) ||
        base_buf_puts(&full, name)) {
        base_buf_free(&full);
        rc = BASE_E_NOMEM;
        goto out;
    }
    if (lstat(full.data, &st) == 0 && S_ISLNK(st.st_mode)) {
        /* Writing through a symlink writes its target: that must stay inside too, and a
         * dangling link could create a file anywhere. */
        real = realpath(full.data, NULL);
        if (!real || !is_inside(root_real, real)) {
            base_buf_free(&full);
            rc = BASE_E_PATH;
            goto out;
        }
    }
    *out = base_buf_take(&full);
    if (!*out)
        rc = BASE_E_NOMEM;
out:
    free(real);
    free(parent_real);
    free(root_real);
    base_buf_free(&b);
    return rc;
}

int base_path_mkdirs(const char *root, const char *rel_dir)
{
    if (!root || !*root || !rel_dir)
        return BASE_E_INVAL;
    char *root_real = realpath(root, NULL);
    if (!root_real)
        return BASE_E_IO;
    int rc = 0;
    if (!*rel_dir)
        goto out;
    if ((rc = base_path_check_rel(rel_dir)))
        goto out;
    base_buf_t b = BASE_BUF_INIT;
    if ((rc = base_buf_puts(&b, root_real)))
        goto out;
    /* One component at a time, checking each before descending, so a symlinked component
     * never gets a directory created beyond it. */
    for (const char *c = rel_dir; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n && !(n == 1 && c[0] == '.')) {
            if ((!(b.len == 1 && b.data[0] == '/') && base_buf_putc(&b, '/')) || base_buf_append(&b, c, n)) {
                rc = BASE_E_NOMEM;
                break;
            }
            if (mkdir(b.data, 0755) != 0 && errno != EEXIST) {
                rc = BASE_E_IO;
                break;
            }
            char *real = realpath(b.data, NULL);
            if (!real) {
                rc = BASE_E_IO;
                break;
            }
            struct stat st;
            if (!is_inside(root_real, real)) {
                rc = BASE_E_PATH;
            } else if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
                rc = BASE_E_IO;
            } else {
                b.len = 0;
                rc = base_buf_puts(&b, real);
            }
            free(real);
            if (rc)
                break;
        }
        c += n;
        if (*c == '/')
            c++;
    }
    base_buf_free(&b);
out:
    free(root_real);
    return rc;
}

int base_mkdir_p(const char *path)
{
    if (!path || !*path)
        return BASE_E_INVAL;
    char *p = strdup(path);
    if (!p)
        return BASE_E_NOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rc = BASE_E_IO;
            break;
        }
        *s = saved;
        if (!saved)
            break;
    }
    struct stat st;
    if (!rc && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = BASE_E_IO;
    free(p);
    return rc;
}

int base_read_file(const char *path, size_t max, char **data, size_t *len)
{
    if (!path || !data)
        return BASE_E_INVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno_code(errno);
    int rc = 0;
    char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = BASE_E_IO;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = BASE_E_IO;
        goto out;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
        rc = BASE_E_TOOBIG;
        goto out;
    }
    /* Sized from fstat when possible, but read until EOF: pipes and /proc report 0.
     * Reading one byte past max tells "exactly max" from "too big". */
    size_t limit = max < SIZE_MAX - 1 ? max + 1 : SIZE_MAX - 1;
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096;
    if (cap > limit)
        cap = limit;
    size_t n = 0;
    buf = malloc(cap + 1);
    if (!buf) {
        rc = BASE_E_NOMEM;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= limit) {
                rc = BASE_E_TOOBIG;
                goto out;
            }
            size_t ncap = cap > limit / 2 ? limit : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                rc = BASE_E_NOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = BASE_E_IO;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        rc = BASE_E_TOOBIG;
        goto out;
    }
    buf[n] = '\0';
    *data = buf;
    buf = NULL;
    if (len)
        *len = n;
out:
    free(buf);
    close(fd);
    return rc;
}
