/* The workflow library and other per-user files (/userdata, /v2/userdata), with ComfyUI's
 * success shapes. Every name goes through base_path_* under the user's root before any file
 * is touched; refusals are JSON errors and change nothing. Writes are atomic (temp file in
 * the same folder, then rename), so a crash never leaves half a workflow behind. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app_internal.h"
#include "ownership.h"

/* User folders are trees of workflows; deeper ones are not worth walking. */
#define UD_MAX_DEPTH 32
#define UD_MAX_READ ((size_t)1 << 30)

/* The folder holding the requesting user's files: <base>/user/<name> (with --no-auth the
 * principal is "local"). The one place that decides whose files a request sees. A request
 * without a user name has no folder: BASE_E_AUTH_FORBIDDEN. */
static int user_root(srv_t *s, const http_req_t *req, char **out)
{
    int rc = own_user_root(s, own_user(&req->principal), out);
    return rc == BASE_E_PATH ? BASE_E_AUTH_FORBIDDEN : rc;
}

/* ------------------------------------------------------------------ errors */

/* Answers a failed path or file operation. path_status: what a refused name gets (ComfyUI
 * answers 403 on /userdata and 400 on /v2/userdata). */
static void fail_rc(http_res_t *res, int rc, int path_status)
{
    switch (rc) {
    case BASE_E_PATH:
        http_res_error(res, path_status, path_status == 403 ? "forbidden" : "invalid_path",
                       "path escapes the user folder or is not a valid name");
        break;
    case BASE_E_INVAL:
        http_res_error(res, 400, "invalid_path", "missing or malformed file name");
        break;
    case BASE_E_NOENT:
        http_res_error(res, 404, "not_found", "file not found");
        break;
    case BASE_E_EXIST:
        http_res_error(res, 409, "file_exists", "File already exists");
        break;
    case BASE_E_TOOBIG:
        http_res_error(res, 413, "too_large", base_strerror(rc));
        break;
    case BASE_E_AUTH_FORBIDDEN:
        http_res_error(res, 403, "forbidden", "this principal has no user folder");
        break;
    default:
        http_res_error(res, base_err_http_status(rc), "io_error", base_strerror(rc));
        break;
    }
}

/* ------------------------------------------------------------------ names */

/* True when p equals root or lies below it (both real paths). */
static bool inside(const char *root, const char *p)
{
    size_t n = strlen(root);
    return strncmp(root, p, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Python's urllib.parse.unquote as ComfyUI applies it: valid %XX escapes decode and anything
 * else stays literal (a file may be called "100%.json"). %00 is refused: no name holds NUL. */
static int unquote(const char *in, char **out)
{
    size_t n = strlen(in), k = 0;
    char *o = malloc(n + 1);
    if (!o)
        return BASE_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < n && (hi = hexval(in[i + 1])) >= 0 && (lo = hexval(in[i + 2])) >= 0) {
            char c = (char)(hi * 16 + lo);
            if (c == '\0') {
                free(o);
                return BASE_E_INVAL;
            }
            o[k++] = c;
            i += 2;
        } else {
            o[k++] = in[i];
        }
    }
    o[k] = '\0';
    *out = o;
    return 0;
}

/* ComfyUI decodes a name holding '%' once more, so double-encoded names still work. */
static int decode_name(const char *raw, char **out)
{
    if (!raw || !*raw)
        return BASE_E_INVAL;
    if (strchr(raw, '%'))
        return unquote(raw, out);
    *out = strdup(raw);
    return *out ? 0 : BASE_E_NOMEM;
}

/* The name as ComfyUI's relpath reports it: "." and empty components dropped ("" = root).
 * rel already passed base_path_check_rel, so it has no "..". */
static char *normalize(const char *rel)
{
    base_buf_t b = BASE_BUF_INIT;
    int rc = base_buf_puts(&b, "");
    for (const char *c = rel; !rc && *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n && !(n == 1 && c[0] == '.'))
            rc = (b.len && base_buf_putc(&b, '/')) || base_buf_append(&b, c, n) ? BASE_E_NOMEM : 0;
        c += n;
        if (*c == '/')
            c++;
    }
    if (rc) {
        base_buf_free(&b);
        return NULL;
    }
    return base_buf_take(&b);
}

/* A request-supplied name resolved under the user root. */
typedef struct {
    char *root; /* user root */
    char *rel;  /* normalized name relative to root ("" = root) */
    char *abs;  /* resolved absolute path; NULL until resolved */
} upath_t;

static void upath_free(upath_t *p)
{
    free(p->root);
    free(p->rel);
    free(p->abs);
    memset(p, 0, sizeof *p);
}

/* Decodes and checks raw (no file system access). */
static int upath_parse(srv_t *s, const http_req_t *req, const char *raw, upath_t *p)
{
    memset(p, 0, sizeof *p);
    char *dec = NULL;
    int rc = decode_name(raw, &dec);
    if (!rc)
        rc = base_path_check_rel(dec);
    if (!rc && !(rc = user_root(s, req, &p->root)) && !(p->rel = normalize(dec)))
        rc = BASE_E_NOMEM;
    free(dec);
    if (rc)
        upath_free(p);
    return rc;
}

/* For a name that does not resolve: BASE_E_PATH when its longest existing prefix already
 * lies outside the root (so "absent" cannot be used to probe folders behind a symlink), else
 * BASE_E_NOENT. */
static int classify_missing(const upath_t *p)
{
    char *root_real = realpath(p->root, NULL);
    if (!root_real)
        return BASE_E_NOENT;
    size_t n = strlen(p->root) + strlen(p->rel) + 2;
    char *path = malloc(n);
    int rc = BASE_E_NOENT;
    if (path) {
        snprintf(path, n, "%s/%s", p->root, p->rel);
        size_t floor = strlen(p->root);
        for (;;) {
            char *real = realpath(path, NULL);
            if (real) {
                if (!inside(root_real, real))
                    rc = BASE_E_PATH;
                free(real);
                break;
            }
            char *slash = strrchr(path, '/');
            if (!slash || (size_t)(slash - path) <= floor)
                break;
            *slash = '\0';
        }
    }
    free(path);
    free(root_real);
    return rc;
}

/* existing: the file must exist and symlinks are followed (inside the root only); otherwise
 * the path names the entry itself (a symlink is not followed but must not lead outside). */
static int upath_resolve(upath_t *p, bool existing)
{
    free(p->abs);
    p->abs = NULL;
    if (!*p->rel) {
        if (!existing)
            return BASE_E_PATH; /* the root itself is not a file */
        p->abs = realpath(p->root, NULL);
        return p->abs ? 0 : (errno == ENOMEM ? BASE_E_NOMEM : BASE_E_NOENT);
    }
    int rc = base_path_resolve(p->root, p->rel, existing, &p->abs);
    return rc == BASE_E_NOENT ? classify_missing(p) : rc;
}

/* upath_resolve(!existing), creating missing parent folders first (inside the root). */
static int upath_resolve_creating(upath_t *p)
{
    int rc = upath_resolve(p, false);
    if (rc != BASE_E_NOENT)
        return rc;
    char *slash = strrchr(p->rel, '/');
    if (!slash)
        return rc;
    *slash = '\0';
    rc = base_path_mkdirs(p->root, p->rel);
    *slash = '/';
    return rc ? rc : upath_resolve(p, false);
}

/* ------------------------------------------------------------------ JSON helpers */

static double ts_seconds(struct timespec t)
{
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static json_t *obj_or_null(json_t *o, bool ok)
{
    if (!ok) {
        json_free(o);
        return NULL;
    }
    return o;
}

/* ComfyUI's get_file_info: {"path", "size", "modified", "created"}. */
static json_t *file_info(const char *rel, const struct stat *st)
{
    json_t *o = json_new_object();
    bool ok = o && !json_object_set(o, "path", json_new_string(rel)) &&
              !json_object_set(o, "size", json_new_int((int64_t)st->st_size)) &&
              !json_object_set(o, "modified", json_new_real(ts_seconds(st->st_mtim))) &&
              !json_object_set(o, "created", json_new_real(ts_seconds(st->st_ctim)));
    return obj_or_null(o, ok);
}

static bool query_true(const http_req_t *req, const char *name)
{
    char *v = http_query_get(req, name);
    bool t = v && strcasecmp(v, "true") == 0;
    free(v);
    return t;
}

/* ComfyUI overwrites unless told exactly "false". */
static bool query_overwrite(const http_req_t *req)
{
    char *v = http_query_get(req, "overwrite");
    bool t = !(v && strcmp(v, "false") == 0);
    free(v);
    return t;
}

/* The answer of a write or move: the path relative to the user root as a JSON string, or
 * with full_info the file-info object. */
static void reply_written(http_res_t *res, const http_req_t *req, const upath_t *p)
{
    json_t *j;
    struct stat st;
    if (query_true(req, "full_info")) {
        if (stat(p->abs, &st) != 0) {
            fail_rc(res, BASE_E_IO, 400);
            return;
        }
        j = file_info(p->rel, &st);
    } else {
        j = json_new_string(p->rel);
    }
    if (j)
        http_res_json(res, 200, j);
    else
        fail_rc(res, BASE_E_NOMEM, 400);
}

/* ------------------------------------------------------------------ directory walks */

typedef struct {
    char *rel;  /* relative to the walk's base (v1: the listed folder; v2: the user root) */
    char *name; /* last component (points into rel) */
    bool is_dir;
    struct stat st;
} ud_entry_t;

typedef struct {
    const char *root_real; /* symlinks must resolve inside this */
    bool recurse;
    bool v2; /* os.walk semantics: hidden entries and folders listed */
    ud_entry_t *v;
    size_t n, cap;
} ud_walk_t;

static void walk_free(ud_walk_t *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i].rel);
    free(w->v);
    w->v = NULL;
    w->n = w->cap = 0;
}

static int walk_push(ud_walk_t *w, char *rel, bool is_dir, const struct stat *st)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        ud_entry_t *v = realloc(w->v, cap * sizeof *v);
        if (!v) {
            free(rel);
            return BASE_E_NOMEM;
        }
        w->v = v;
        w->cap = cap;
    }
    const char *slash = strrchr(rel, '/');
    w->v[w->n++] = (ud_entry_t){rel, slash ? (char *)slash + 1 : rel, is_dir, *st};
    return 0;
}

static char *join(const char *a, const char *b)
{
    if (!*a)
        return strdup(b);
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Symlinks are listed only when they resolve inside the user root, and never descended:
 * that keeps names and sizes of outside files out of the answer and link loops out of the
 * walk. */
static int walk_dir(ud_walk_t *w, const char *dir, const char *rel, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return depth > 0 ? 0 : BASE_E_IO; /* an unreadable subfolder should not hide the rest */
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0 || (!w->v2 && nm[0] == '.'))
            continue;
        char *path = join(dir, nm);
        char *erel = join(rel, nm);
        struct stat st;
        if (!path || !erel) {
            rc = BASE_E_NOMEM;
            goto next;
        }
        if (lstat(path, &st) != 0)
            goto next; /* removed meanwhile */
        bool link = S_ISLNK(st.st_mode);
        if (link) {
            char *real = realpath(path, NULL);
            bool ok = real && inside(w->root_real, real) && stat(real, &st) == 0;
            free(real);
            if (!ok)
                goto next;
        }
        if (S_ISDIR(st.st_mode)) {
            if (w->v2) {
                char *copy = strdup(erel);
                rc = copy ? walk_push(w, copy, true, &st) : BASE_E_NOMEM;
            }
            if (!rc && !link && (w->recurse || w->v2) && depth < UD_MAX_DEPTH)
                rc = walk_dir(w, path, erel, depth + 1);
        } else if (S_ISREG(st.st_mode) || w->v2) {
            rc = walk_push(w, erel, false, &st);
            erel = NULL;
        }
    next:
        free(path);
        free(erel);
    }
    closedir(d);
    return rc;
}

static int cmp_rel(const void *a, const void *b)
{
    return strcmp(((const ud_entry_t *)a)->rel, ((const ud_entry_t *)b)->rel);
}

/* ComfyUI's v2 order: folders first, then by lower-cased name; the path breaks ties so the
 * answer does not depend on directory order. */
static int cmp_v2(const void *a, const void *b)
{
    const ud_entry_t *x = a, *y = b;
    if (x->is_dir != y->is_dir)
        return x->is_dir ? -1 : 1;
    int c = strcasecmp(x->name, y->name);
    return c ? c : strcmp(x->rel, y->rel);
}

/* ------------------------------------------------------------------ GET /userdata */

static json_t *v1_item(const ud_entry_t *e, bool full_info, bool split)
{
    if (full_info)
        return file_info(e->rel, &e->st);
    if (!split)
        return json_new_string(e->rel);
    /* [rel, component, component, ...] like [rel_path] + rel_path.split('/') */
    json_t *a = json_new_array();
    bool ok = a && !json_array_push(a, json_new_string(e->rel));
    for (const char *c = e->rel; ok;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        ok = !json_array_push(a, json_new_stringn(c, n));
        if (!slash)
            break;
        c = slash + 1;
    }
    return obj_or_null(a, ok);
}

void srv_h_userdata_list(srv_t *s, http_req_t *req, http_res_t *res)
{
    char *dir = http_query_get(req, "dir");
    if (!dir || !*dir) {
        free(dir);
        http_res_error(res, 400, "invalid_path", "Directory not provided");
        return;
    }
    upath_t p;
    ud_walk_t w = {0};
    char *root_real = NULL;
    json_t *arr = NULL;
    int rc = upath_parse(s, req, dir, &p);
    if (!rc)
        rc = upath_resolve(&p, true);
    if (rc) {
        fail_rc(res, rc, 403);
        goto out;
    }
    struct stat st;
    if (stat(p.abs, &st) != 0 || !S_ISDIR(st.st_mode)) {
        http_res_json(res, 200, json_new_array()); /* ComfyUI's glob finds nothing in a file */
        goto out;
    }
    root_real = realpath(p.root, NULL);
    if (!root_real) {
        fail_rc(res, BASE_E_IO, 403);
        goto out;
    }
    w.root_real = root_real;
    w.recurse = query_true(req, "recurse");
    if ((rc = walk_dir(&w, p.abs, "", 0))) {
        fail_rc(res, rc, 403);
        goto out;
    }
    if (w.n) /* qsort may not be given NULL, even for no elements */
        qsort(w.v, w.n, sizeof *w.v, cmp_rel);
    bool full_info = query_true(req, "full_info"), split = query_true(req, "split");
    arr = json_new_array();
    for (size_t i = 0; arr && i < w.n; i++) {
        if (json_array_push(arr, v1_item(&w.v[i], full_info, split))) {
            json_free(arr);
            arr = NULL;
        }
    }
    if (arr)
        http_res_json(res, 200, arr);
    else
        fail_rc(res, BASE_E_NOMEM, 403);
out:
    walk_free(&w);
    free(root_real);
    upath_free(&p);
    free(dir);
}

/* ------------------------------------------------------------------ GET /v2/userdata */

static json_t *v2_item(const ud_entry_t *e)
{
    json_t *o = json_new_object();
    bool ok = o && !json_object_set(o, "name", json_new_string(e->name)) &&
              !json_object_set(o, "path", json_new_string(e->rel)) &&
              !json_object_set(o, "type", json_new_string(e->is_dir ? "directory" : "file"));
    if (ok && !e->is_dir)
        ok = !json_object_set(o, "size", json_new_int((int64_t)e->st.st_size)) &&
             !json_object_set(o, "modified", json_new_real(ts_seconds(e->st.st_mtim)));
    return obj_or_null(o, ok);
}

void srv_h_userdata_v2(srv_t *s, http_req_t *req, http_res_t *res)
{
    upath_t p = {0};
    ud_walk_t w = {0};
    char *root_real = NULL, *once = NULL;
    char *q = http_query_get(req, "path");
    /* ComfyUI unquotes the (already decoded) parameter, then its path helper once more. */
    int rc = unquote(q ? q : "", &once);
    if (rc) {
        fail_rc(res, rc, 400);
        goto out;
    }
    if (*once) {
        rc = upath_parse(s, req, once, &p);
    } else {
        rc = user_root(s, req, &p.root);
        if (!rc && !(p.rel = strdup("")))
            rc = BASE_E_NOMEM;
    }
    if (rc) {
        fail_rc(res, rc, 400);
        goto out;
    }
    rc = upath_resolve(&p, true);
    if (rc == BASE_E_NOENT && !*p.rel) {
        http_res_json(res, 200, json_new_array()); /* a new user has no folder yet */
        goto out;
    }
    if (rc) {
        fail_rc(res, rc, 400);
        goto out;
    }
    struct stat st;
    if (stat(p.abs, &st) != 0 || !S_ISDIR(st.st_mode)) {
        http_res_error(res, 400, "invalid_path", "Requested path is not a directory");
        goto out;
    }
    root_real = realpath(p.root, NULL);
    if (!root_real) {
        fail_rc(res, BASE_E_IO, 400);
        goto out;
    }
    w.root_real = root_real;
    w.v2 = true;
    if ((rc = walk_dir(&w, p.abs, p.rel, 0))) {
        fail_rc(res, rc, 400);
        goto out;
    }
    if (w.n)
        qsort(w.v, w.n, sizeof *w.v, cmp_v2);
    json_t *arr = json_new_array();
    for (size_t i = 0; arr && i < w.n; i++) {
        if (json_array_push(arr, v2_item(&w.v[i]))) {
            json_free(arr);
            arr = NULL;
        }
    }
    if (arr)
        http_res_json(res, 200, arr);
    else
        fail_rc(res, BASE_E_NOMEM, 400);
out:
    walk_free(&w);
    free(root_real);
    upath_free(&p);
    free(once);
    free(q);
}

/* ------------------------------------------------------------------ one file */

/* User files are served, not run: types that could carry script (HTML, SVG, JS) go out as
 * octet-stream. user.css is loaded by the editor as a stylesheet, so CSS keeps its type. */
static const char *user_mime(const char *name)
{
    static const struct {
        const char *ext, *type;
    } t[] = {{"json", "application/json"},
             {"txt", "text/plain; charset=utf-8"},
             {"css", "text/css; charset=utf-8"},
             {"png", "image/png"},
             {"jpg", "image/jpeg"},
             {"jpeg", "image/jpeg"},
             {"webp", "image/webp"}};
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash + 1 : name, '.');
    if (dot)
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            if (strcasecmp(dot + 1, t[i].ext) == 0)
                return t[i].type;
    return "application/octet-stream";
}

static const char *param(const http_req_t *req, size_t i)
{
    return i < req->n_params ? req->params[i] : NULL;
}

void srv_h_userdata_get(srv_t *s, http_req_t *req, http_res_t *res)
{
    upath_t p;
    char *data = NULL;
    size_t len = 0;
    struct stat st;
    int rc = upath_parse(s, req, param(req, 0), &p);
    if (!rc && !(rc = upath_resolve(&p, true)) && (stat(p.abs, &st) != 0 || !S_ISREG(st.st_mode)))
        rc = BASE_E_NOENT;
    if (!rc)
        rc = base_read_file(p.abs, UD_MAX_READ, &data, &len);
    if (rc) {
        fail_rc(res, rc, 403);
    } else {
        http_res_bytes(res, 200, user_mime(p.rel), data, len);
        http_res_header(res, "X-Content-Type-Options", "nosniff");
    }
    free(data);
    upath_free(&p);
}

/* Writes data to abs through a temp file in the same folder and a rename. */
static int write_atomic(const char *abs, const void *data, size_t n)
{
    const char *slash = strrchr(abs, '/');
    size_t dn = slash ? (size_t)(slash - abs) : 0;
    size_t tn = dn + sizeof "/.weft-tmp-XXXXXX";
    char *tmp = malloc(tn);
    if (!tmp)
        return BASE_E_NOMEM;
    snprintf(tmp, tn, "%.*s/.weft-tmp-XXXXXX", (int)dn, abs);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(tmp);
        return BASE_E_IO;
    }
    int rc = 0;
    (void)fchmod(fd, 0644); /* mkstemp's 0600 would hide the file from other readers */
    const char *c = data;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = BASE_E_IO;
            break;
        }
        c += w;
        n -= (size_t)w;
    }
    if (!rc && fsync(fd) != 0)
        rc = BASE_E_IO;
    if (close(fd) != 0 && !rc)
        rc = BASE_E_IO;
    if (!rc && rename(tmp, abs) != 0)
        rc = BASE_E_IO;
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

void srv_h_userdata_post(srv_t *s, http_req_t *req, http_res_t *res)
{
    upath_t p;
    struct stat st;
    int rc = upath_parse(s, req, param(req, 0), &p);
    if (rc) {
        fail_rc(res, rc, 403);
        return;
    }
    /* Refused names were caught above, so creating the trusted root here is safe. */
    if ((rc = base_mkdir_p(p.root)) || (rc = upath_resolve_creating(&p))) {
        fail_rc(res, rc, 403);
        goto out;
    }
    if (lstat(p.abs, &st) == 0) {
        if (!query_overwrite(req)) {
            fail_rc(res, BASE_E_EXIST, 403);
            goto out;
        }
        if (S_ISDIR(st.st_mode)) {
            http_res_error(res, 400, "invalid_path", "a folder of that name exists");
            goto out;
        }
        /* Writing an existing symlink writes its target, which resolve keeps inside root. */
        if (S_ISLNK(st.st_mode) && (rc = upath_resolve(&p, true))) {
            fail_rc(res, rc, 403);
            goto out;
        }
    }
    if ((rc = write_atomic(p.abs, req->body.data ? req->body.data : "", req->body.len))) {
        http_res_error(res, 400, "write_failed", "cannot write the file");
        goto out;
    }
    reply_written(res, req, &p);
out:
    upath_free(&p);
}

void srv_h_userdata_delete(srv_t *s, http_req_t *req, http_res_t *res)
{
    upath_t p;
    struct stat st;
    int rc = upath_parse(s, req, param(req, 0), &p);
    if (!rc && !(rc = upath_resolve(&p, false)) && lstat(p.abs, &st) != 0)
        rc = BASE_E_NOENT;
    if (rc) {
        fail_rc(res, rc, 403);
    } else if (S_ISDIR(st.st_mode)) {
        http_res_error(res, 400, "invalid_path", "not a file");
    } else if (unlink(p.abs) != 0) {
        fail_rc(res, errno == ENOENT ? BASE_E_NOENT : BASE_E_IO, 403);
    } else {
        /* Grants on a deleted file must not reach a new file saved under its name. */
        size_t n = 0;
        if (s->store && store_share_clear(s->store, own_user(&req->principal), p.rel, &n))
            BASE_LOG(ERROR, "workflow %s: cannot drop its shares", p.rel);
        json_t *detail = json_new_object();
        if (detail && json_object_set(detail, "shares_dropped", json_new_int((int64_t)n)))
            json_free(detail), detail = NULL;
        own_audit(s, req, "workflow.delete", p.rel, detail);
        http_res_empty(res, 204);
    }
    upath_free(&p);
}

void srv_h_userdata_move(srv_t *s, http_req_t *req, http_res_t *res)
{
    upath_t src, dst = {0};
    struct stat st;
    int rc = upath_parse(s, req, param(req, 0), &src);
    if (!rc && !(rc = upath_resolve(&src, false)) && lstat(src.abs, &st) != 0)
        rc = BASE_E_NOENT;
    if (rc) {
        fail_rc(res, rc, 403);
        upath_free(&src);
        return;
    }
    if ((rc = upath_parse(s, req, param(req, 1), &dst)) || (rc = upath_resolve_creating(&dst))) {
        fail_rc(res, rc, 403);
        goto out;
    }
    if (!query_overwrite(req) && lstat(dst.abs, &st) == 0) {
        fail_rc(res, BASE_E_EXIST, 403);
        goto out;
    }
    if (rename(src.abs, dst.abs) != 0) {
        http_res_error(res, 400, "move_failed",
                       errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST
                           ? "a folder of that name exists"
                           : "cannot move the file");
        goto out;
    }
    if (s->store && store_share_move(s->store, own_user(&req->principal), src.rel, dst.rel))
        BASE_LOG(ERROR, "workflow %s: its shares did not follow the move to %s", src.rel, dst.rel);
    reply_written(res, req, &dst);
out:
    upath_free(&src);
    upath_free(&dst);
}

/* ------------------------------------------------------------------ for sharing */

int srv__userdata_norm(const char *rel, char **out)
{
    *out = NULL;
    if (!rel || !*rel)
        return BASE_E_INVAL;
    int rc = base_path_check_rel(rel);
    if (rc)
        return rc;
    char *n = normalize(rel);
    if (!n)
        return BASE_E_NOMEM;
    if (!*n) {
        free(n);
        return BASE_E_INVAL; /* the root itself */
    }
    *out = n;
    return 0;
}

const char *srv__userdata_mime(const char *rel)
{
    return user_mime(rel);
}

int srv__userdata_read(srv_t *s, const char *user, const char *rel, char **data, size_t *len, struct stat *st)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    upath_t p = {0};
    struct stat sb;
    int rc = own_user_root(s, user, &p.root);
    if (!rc)
        rc = srv__userdata_norm(rel, &p.rel);
    if (!rc)
        rc = upath_resolve(&p, true);
    if (!rc && (stat(p.abs, &sb) != 0 || !S_ISREG(sb.st_mode)))
        rc = BASE_E_NOENT;
    if (!rc && data)
        rc = base_read_file(p.abs, UD_MAX_READ, data, len);
    if (!rc && st)
        *st = sb;
    upath_free(&p);
    return rc;
}
