/* Listing model and image files for COMBO inputs. The result feeds both /object_info and
 * validation, so it must be deterministic: sorted by bytes, hidden files skipped. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "nodes.h"

/* Deeper trees than this are not model folders; the cap also bounds the work a symlink
 * farm can cause. */
#define LIST_MAX_DEPTH 32

void node_strlist_free(node_strlist_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

typedef struct {
    node_strlist_t *out;
    size_t cap;
    const char *const *exts;
    bool recursive;
    /* Directories on the current descent path, so a symlink back up is not followed. */
    struct {
        dev_t dev;
        ino_t ino;
    } stack[LIST_MAX_DEPTH + 1];
    int depth;
} lister_t;

static bool ext_matches(const char *name, const char *const *exts)
{
    if (!exts)
        return true;
    size_t n = strlen(name);
    for (size_t i = 0; exts[i]; i++) {
        size_t e = strlen(exts[i]);
        if (e <= n && strcasecmp(name + n - e, exts[i]) == 0)
            return true;
    }
    return false;
}

static int push_name(lister_t *L, const char *rel)
{
    if (L->out->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 16;
        char **items = realloc(L->out->items, cap * sizeof *items);
        if (!items)
            return BASE_E_NOMEM;
        L->out->items = items;
        L->cap = cap;
    }
    char *s = strdup(rel);
    if (!s)
        return BASE_E_NOMEM;
    L->out->items[L->out->n++] = s;
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

/* dir: absolute/cwd path of the folder; rel: its path relative to the root ("" at the root). */
static int walk(lister_t *L, const char *dir, const char *rel)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        if (L->depth > 0 && (errno == EACCES || errno == ELOOP))
            return 0; /* an unreadable subfolder should not hide the rest of the list */
        return BASE_E_IO;
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* hidden files, and "." / ".." */
        char *path = join(dir, e->d_name);
        char *relpath = *rel ? join(rel, e->d_name) : strdup(e->d_name);
        struct stat st;
        if (!path || !relpath) {
            rc = BASE_E_NOMEM;
        } else if (stat(path, &st) != 0) {
            /* dangling symlink or a file removed meanwhile: not listable, skip */
        } else if (S_ISREG(st.st_mode)) {
            if (ext_matches(e->d_name, L->exts))
                rc = push_name(L, relpath);
        } else if (S_ISDIR(st.st_mode) && L->recursive && L->depth < LIST_MAX_DEPTH) {
            bool loop = false;
            for (int i = 0; i <= L->depth; i++)
                if (L->stack[i].dev == st.st_dev && L->stack[i].ino == st.st_ino)
                    loop = true;
            if (!loop) {
                L->depth++;
                L->stack[L->depth].dev = st.st_dev;
                L->stack[L->depth].ino = st.st_ino;
                rc = walk(L, path, relpath);
                L->depth--;
            }
        }
        free(path);
        free(relpath);
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int node_list_files(const char *dir, const char *const *exts, bool recursive, node_strlist_t *out)
{
    if (!out)
        return BASE_E_INVAL;
    out->items = NULL;
    out->n = 0;
    if (!dir || !*dir)
        return BASE_E_INVAL;
    lister_t L = {.out = out, .exts = exts, .recursive = recursive};
    struct stat st;
    if (stat(dir, &st) == 0) {
        L.stack[0].dev = st.st_dev;
        L.stack[0].ino = st.st_ino;
    }
    int rc = walk(&L, dir, "");
    if (rc) {
        node_strlist_free(out);
        return rc;
    }
    if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_str);
    return 0;
}
