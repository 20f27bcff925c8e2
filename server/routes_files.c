/* GET /view, POST /upload/image, POST /upload/mask (comfyui-api.md 2.8-2.10).
 *
 * Only the input, output and temp folders of the base dir are reachable. Request names are
 * checked lexically first (clear 400/403 answers) and then resolved with base_path_resolve,
 * which follows symlinks, so a link inside a folder that leads out of it is refused too.
 * Uploads are written atomically (temp file in the target folder, then rename) and never
 * through a symlink. /view never serves an active type (HTML, SVG, JS, CSS, XML) as such:
 * those go out as application/octet-stream attachments, and every answer carries nosniff and
 * a sandbox CSP, so an uploaded page cannot run script in the server's origin.
 *
 * Not supported: /view's preview=<fmt>;<quality> (weft has no JPEG or WebP encoder); the
 * parameter is ignored and the original file is served, which clients display the same. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app_internal.h"
#include "image/png.h"
#include "multipart.h"
#include "ownership.h"

#define FILES_MAX_NAME 255
#define FILES_MAX_SUBFOLDER 1024
#define FILES_VIEW_MAX_BYTES ((size_t)512 << 20)
#define FILES_MAX_COLLISIONS 10000
#define FILES_MASK_LEVEL 4 /* ComfyUI saves masks with compress_level=4 */

/* ------------------------------------------------------------------ names and folders */

static const char *type_dir(const srv_t *s, const char *type)
{
    if (strcmp(type, "input") == 0)
        return s->env.env.input_dir;
    if (strcmp(type, "output") == 0)
        return s->env.env.output_dir;
    if (strcmp(type, "temp") == 0)
        return s->env.env.temp_dir;
    return NULL;
}

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Strict UTF-8 (no overlong forms, surrogates or values past U+10FFFF): names end up in JSON
 * answers and in headers, where invalid bytes have no faithful spelling. */
static bool utf8_valid(const char *str)
{
    const unsigned char *p = (const unsigned char *)str;
    while (*p) {
        unsigned c = *p;
        size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
        if (n == 4)
            return false;
        uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1f) : n == 2 ? (c & 0x0f) : (c & 0x07);
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

/* A file name of its own (no folder part). 0 or a message for the 400. */
static const char *bad_filename(const char *name)
{
    if (!name || !*name)
        return "empty file name";
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return "file name may not be \".\" or \"..\"";
    if (strchr(name, '/') || strchr(name, '\\'))
        return "file name may not contain '/' or '\\'";
    if (has_ctl(name))
        return "file name may not contain control characters";
    if (strlen(name) > FILES_MAX_NAME)
        return "file name longer than 255 bytes";
    if (!utf8_valid(name))
        return "file name is not valid UTF-8";
    return NULL;
}

/* Lexically normalises a request subfolder: "." and empty components dropped, ".." pops one.
 * *out is malloc'ed ("" for the folder itself). BASE_E_PATH when it is absolute, climbs above
 * the folder, or holds a backslash or control character; BASE_E_NOMEM. */
static int norm_subfolder(const char *in, char **out)
{
    *out = NULL;
    if (!in)
        in = "";
    size_t n = strlen(in);
    if (in[0] == '/' || strchr(in, '\\') || has_ctl(in) || n > FILES_MAX_SUBFOLDER || !utf8_valid(in))
        return BASE_E_PATH;
    char *res = malloc(n + 1);
    if (!res)
        return BASE_E_NOMEM;
    size_t len = 0;
    for (const char *c = in; *c;) {
        const char *slash = strchr(c, '/');
        size_t k = slash ? (size_t)(slash - c) : strlen(c);
        if (k == 2 && c[0] == '.' && c[1] == '.') {
            if (len == 0) {
                free(res);
                return BASE_E_PATH;
            }
            while (len > 0 && res[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the separator before the popped component */
        } else if (k > FILES_MAX_NAME) {
            free(res);
            return BASE_E_PATH;
        } else if (k && !(k == 1 && c[0] == '.')) {
            if (len)
                res[len++] = '/';
            memcpy(res + len, c, k);
            len += k;
        }
        c += k;
        if (*c == '/')
            c++;
    }
    res[len] = '\0';
    *out = res;
    return 0;
}

/* "sub/name" or "name" (malloc'ed, NULL on OOM). */
static char *join_rel(const char *sub, const char *name)
{
    size_t n = strlen(sub) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s", sub, *sub ? "/" : "", name);
    return p;
}

/* ComfyUI's annotated names: "x.png [output]" means x.png in output/. Strips the suffix in
 * place and returns the folder type, or NULL when there is none. */
static const char *strip_annotation(char *name)
{
    static const char *const types[] = {"output", "input", "temp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < 3; i++) {
        char suffix[16];
        snprintf(suffix, sizeof suffix, " [%s]", types[i]);
        size_t k = strlen(suffix);
        if (n >= k && strcmp(name + n - k, suffix) == 0) {
            name[n - k] = '\0';
            return types[i];
        }
    }
    return NULL;
}

/* Reads a regular file without following a final symlink and without blocking on a FIFO.
 * *data malloc'ed. 0, BASE_E_NOENT (missing or not a regular file), BASE_E_TOOBIG,
 * BASE_E_NOMEM, BASE_E_IO. */
static int read_regular(const char *path, size_t max, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? BASE_E_NOENT : BASE_E_IO;
    int rc = 0;
    char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = BASE_E_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = BASE_E_NOENT;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = BASE_E_TOOBIG;
        goto out;
    }
    size_t n = (size_t)st.st_size, got = 0;
    buf = malloc(n + 1);
    if (!buf) {
        rc = BASE_E_NOMEM;
        goto out;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = BASE_E_IO; /* shrank while reading */
            goto out;
        }
        got += (size_t)r;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ storing an upload */

/* Whether the file at path holds exactly data. ComfyUI compares SHA-256 digests; comparing
 * the bytes answers the same question without hashing and stops at the first difference. */
static int file_equals(const char *path, const void *data, size_t n, bool *eq)
{
    *eq = false;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return BASE_E_IO;
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = BASE_E_IO;
        goto out;
    }
    if ((uint64_t)st.st_size != (uint64_t)n)
        goto out;
    char chunk[65536];
    size_t off = 0;
    while (off < n) {
        size_t want = n - off < sizeof chunk ? n - off : sizeof chunk;
        ssize_t r = read(fd, chunk, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = BASE_E_IO;
            goto out;
        }
        if (memcmp(chunk, (const char *)data + off, (size_t)r) != 0)
            goto out;
        off += (size_t)r;
    }
    *eq = true;
out:
    close(fd);
    return rc;
}

/* Writes data to path atomically: a temp file in the same folder, flushed, then renamed.
 * rename() replaces a symlink at path rather than writing through it. With !replace an
 * existing path is left alone and BASE_E_EXIST returned (a racing writer won). */
static int write_atomic(const char *path, const void *data, size_t n, bool replace)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return BASE_E_INVAL;
    size_t dlen = (size_t)(slash - path);
    char *tmp = malloc(dlen + 32);
    if (!tmp)
        return BASE_E_NOMEM;
    snprintf(tmp, dlen + 32, "%.*s/.weft-upload-XXXXXX", (int)dlen, path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        free(tmp);
        return BASE_E_IO;
    }
    int rc = 0;
    bool tmp_gone = false;
    (void)fchmod(fd, 0644); /* mkstemp's 0600 would hide uploads from other local readers */
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, (const char *)data + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = BASE_E_IO;
            break;
        }
        off += (size_t)w;
    }
    if (!rc && fsync(fd) != 0)
        rc = BASE_E_IO;
    if (close(fd) != 0 && !rc)
        rc = BASE_E_IO;
    if (!rc) {
        if (replace) {
            if (rename(tmp, path) != 0)
                rc = BASE_E_IO;
            else
                tmp_gone = true;
        } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
            tmp_gone = true;
        } else {
            if (errno == EEXIST) {
                rc = BASE_E_EXIST;
            } else if (errno == EINVAL || errno == ENOSYS) {
                /* File systems without RENAME_NOREPLACE: link() also refuses an existing name. */
                if (link(tmp, path) != 0)
                    rc = errno == EEXIST ? BASE_E_EXIST : BASE_E_IO;
            } else {
                rc = BASE_E_IO;
            }
        }
    }
    if (!tmp_gone)
        unlink(tmp); /* after a failure, or a link() that gave the file its real name */
    free(tmp);
    return rc;
}

static void respond_upload(http_res_t *res, const char *name, const char *sub, const char *type)
{
    json_t *o = json_new_object();
    if (!o || json_object_set(o, "name", json_new_string(name)) ||
        json_object_set(o, "subfolder", json_new_string(sub)) ||
        json_object_set(o, "type", json_new_string(type))) {
        json_free(o);
        http_res_error(res, 500, "server_error", base_strerror(BASE_E_NOMEM));
        return;
    }
    http_res_json(res, 200, o);
}

/* The uploader owns what it stored; recorded before the answer so the name it is told can be
 * viewed at once. */
static void upload_done(srv_t *s, const http_req_t *req, http_res_t *res, const char *type, const char *sub,
                        const char *name, const char *rel)
{
    const char *user = own_user(&req->principal);
    if (s->store && user) {
        store_file_ref_t ref = {type, rel};
        int rc = store_files_record(s->store, &ref, 1, user, NULL, srv__now_ms());
        if (rc)
            BASE_LOG(ERROR, "upload %s/%s: cannot record its owner: %s", type, rel, base_strerror(rc));
    }
    json_t *detail = json_new_object();
    if (detail && json_object_set(detail, "type", json_new_string(type)))
        json_free(detail), detail = NULL;
    own_audit(s, req, "upload", rel, detail);
    respond_upload(res, name, sub, type);
}

/* Stores data as root/sub/filename with ComfyUI's collision rule and answers the request. A
 * file the uploader may not write over (another user's, or nobody's for a user without
 * outputs:read:any) counts as a collision whatever overwrite says, and is never compared
 * with the upload: its content stays unknown to the uploader. */
static void store_upload(srv_t *s, const http_req_t *req, http_res_t *res, const char *root, const char *type,
                         const char *sub, const char *filename, const void *data, size_t n, bool overwrite)
{
    char *cand = NULL, *rel = NULL, *path = NULL, *stem = NULL;
    int rc = base_path_mkdirs(root, sub);
    if (rc == BASE_E_PATH) {
        http_res_error(res, 400, "invalid_subfolder", "subfolder escapes its folder");
        return;
    }
    if (rc) {
        http_res_error(res, 500, "server_error", "cannot create the subfolder");
        return;
    }
    /* "name (1).ext": the extension starts at the last dot that is not leading
     * (os.path.splitext), so ".hidden" has none. */
    const char *dot = strrchr(filename, '.');
    const char *ext = filename + strlen(filename);
    if (dot) {
        const char *p = filename;
        while (p < dot && *p == '.')
            p++;
        if (p < dot)
            ext = dot;
    }
    stem = strndup(filename, (size_t)(ext - filename));
    if (!stem)
        goto oom;
    for (int i = 0; i <= FILES_MAX_COLLISIONS; i++) {
        free(cand);
        free(rel);
        free(path);
        cand = rel = path = NULL;
        if (i == 0) {
            cand = strdup(filename);
        } else {
            size_t m = strlen(stem) + strlen(ext) + 24;
            if ((cand = malloc(m)))
                snprintf(cand, m, "%s (%d)%s", stem, i, ext);
        }
        if (!cand || !(rel = join_rel(sub, cand)))
            goto oom;
        if (strlen(cand) > FILES_MAX_NAME) {
            http_res_error(res, 400, "invalid_filename", "file name longer than 255 bytes");
            goto out;
        }
        rc = base_path_resolve(root, rel, false, &path);
        if (rc == BASE_E_PATH) {
            http_res_error(res, 403, "forbidden", "upload path escapes its folder");
            goto out;
        }
        if (rc) {
            http_res_error(res, 500, "server_error", "cannot resolve the upload path");
            goto out;
        }
        struct stat st;
        bool exists = lstat(path, &st) == 0;
        if (exists && S_ISLNK(st.st_mode)) {
            http_res_error(res, 403, "forbidden", "refusing to write through a symlink");
            goto out;
        }
        if (exists && !own_file_writable(s, &req->principal, type, rel))
            continue;
        if (exists && !overwrite) {
            bool eq = false;
            if (S_ISREG(st.st_mode) && file_equals(path, data, n, &eq) == 0 && eq) {
                upload_done(s, req, res, type, sub, cand, rel); /* same bytes already there */
                goto out;
            }
            continue;
        }
        if (exists && !S_ISREG(st.st_mode)) {
            http_res_error(res, 409, "conflict", "a folder or special file has that name");
            goto out;
        }
        rc = write_atomic(path, data, n, overwrite);
        if (rc == BASE_E_EXIST)
            continue; /* created meanwhile: treat like any other collision */
        if (rc) {
            http_res_error(res, 500, "server_error", "cannot write the uploaded file");
            goto out;
        }
        upload_done(s, req, res, type, sub, cand, rel);
        goto out;
    }
    http_res_error(res, 409, "conflict", "too many files with that name");
    goto out;
oom:
    http_res_error(res, 500, "server_error", base_strerror(BASE_E_NOMEM));
out:
    free(stem);
    free(cand);
    free(rel);
    free(path);
}

/* ------------------------------------------------------------------ the upload form */

typedef struct {
    mp_form_t form;
    const mp_part_t *image;
    char *type_s, *subfolder, *original_ref; /* field values, NUL-terminated copies */
    const char *type;                        /* "input" (default), "temp" or "output" */
    const char *root;
    char *sub;                               /* normalised subfolder */
    bool overwrite;
} upload_t;

static void upload_free(upload_t *u)
{
    mp_form_free(&u->form);
    free(u->type_s);
    free(u->subfolder);
    free(u->original_ref);
    free(u->sub);
}

/* A text field as a C string: *out NULL when absent. BASE_E_INVAL when it holds a NUL. */
static int field(const upload_t *u, const char *name, char **out)
{
    *out = NULL;
    const mp_part_t *p = mp_form_get(&u->form, name);
    if (!p)
        return 0;
    if (memchr(p->data, '\0', p->len))
        return BASE_E_INVAL;
    *out = strndup(p->data, p->len);
    return *out ? 0 : BASE_E_NOMEM;
}

/* Parses and checks the fields shared by both upload routes; on failure the error answer is
 * already set and false returned. */
static bool upload_parse(srv_t *s, http_req_t *req, http_res_t *res, upload_t *u)
{
    char err[256];
    int rc = mp_parse(http_req_header(req, "content-type"), req->body.data, req->body.len, &u->form,
                      err, sizeof err);
    if (rc == BASE_E_NOMEM) {
        http_res_error(res, 500, "server_error", base_strerror(rc));
        return false;
    }
    if (rc) {
        http_res_error(res, 400, "invalid_multipart", err);
        return false;
    }
    char *overwrite = NULL;
    if ((rc = field(u, "type", &u->type_s)) || (rc = field(u, "subfolder", &u->subfolder)) ||
        (rc = field(u, "overwrite", &overwrite)) || (rc = field(u, "original_ref", &u->original_ref))) {
        if (rc == BASE_E_NOMEM)
            http_res_error(res, 500, "server_error", base_strerror(rc));
        else
            http_res_error(res, 400, "invalid_field", "a form field contains a NUL byte");
        free(overwrite);
        return false;
    }
    u->overwrite = overwrite && (strcmp(overwrite, "true") == 0 || strcmp(overwrite, "1") == 0);
    free(overwrite);

    u->image = mp_form_get(&u->form, "image");
    if (!u->image || !u->image->filename) {
        http_res_error(res, 400, "missing_image", "the form has no file in its \"image\" field");
        return false;
    }
    const char *why = bad_filename(u->image->filename);
    if (why) {
        http_res_error(res, 400, "invalid_filename", why);
        return false;
    }
    u->type = u->type_s ? u->type_s : "input";
    u->root = type_dir(s, u->type);
    if (!u->root) {
        http_res_error(res, 400, "invalid_type", "type must be \"input\", \"temp\" or \"output\"");
        return false;
    }
    rc = norm_subfolder(u->subfolder, &u->sub);
    if (rc == BASE_E_NOMEM) {
        http_res_error(res, 500, "server_error", base_strerror(rc));
        return false;
    }
    if (rc) {
        http_res_error(res, 400, "invalid_subfolder", "subfolder escapes its folder");
        return false;
    }
    return true;
}

void srv_h_upload_image(srv_t *s, http_req_t *req, http_res_t *res)
{
    upload_t u;
    memset(&u, 0, sizeof u);
    if (upload_parse(s, req, res, &u))
        store_upload(s, req, res, u.root, u.type, u.sub, u.image->filename, u.image->data, u.image->len,
                     u.overwrite);
    upload_free(&u);
}

/* ------------------------------------------------------------------ /upload/mask */

/* Resolves original_ref to an existing file; on failure the error answer is set and NULL
 * returned. The path is malloc'ed. */
static char *mask_original(srv_t *s, const http_req_t *req, const char *ref_text, http_res_t *res)
{
    char err[128];
    json_t *ref = NULL;
    char *name = NULL, *sub = NULL, *rel = NULL, *path = NULL;
    if (!ref_text) {
        http_res_error(res, 400, "missing_original_ref", "the form has no \"original_ref\" field");
        return NULL;
    }
    if (json_parse(ref_text, strlen(ref_text), &ref, err, sizeof err) != 0 ||
        !json_str(json_object_get(ref, "filename"))) {
        http_res_error(res, 400, "invalid_original_ref",
                       "original_ref must be a JSON object with a string \"filename\"");
        goto out;
    }
    const json_t *jsub = json_object_get(ref, "subfolder"), *jtype = json_object_get(ref, "type");
    if ((jsub && !json_is_string(jsub)) || (jtype && !json_is_string(jtype))) {
        http_res_error(res, 400, "invalid_original_ref", "original_ref subfolder and type must be strings");
        goto out;
    }
    const json_t *jname = json_object_get(ref, "filename");
    if (strlen(jname->u.str.s) != jname->u.str.len) {
        http_res_error(res, 400, "invalid_filename", "original_ref filename contains a NUL byte");
        goto out;
    }
    if (!(name = strdup(jname->u.str.s)))
        goto oom;
    const char *type = strip_annotation(name);
    if (!type)
        type = jtype ? json_str(jtype) : "output";
    if (!*name || name[0] == '/' || strstr(name, "..") || strchr(name, '\\') || has_ctl(name)) {
        http_res_error(res, 400, "invalid_filename", "original_ref filename is not a plain relative name");
        goto out;
    }
    const char *root = type_dir(s, type);
    if (!root) {
        http_res_error(res, 400, "invalid_type", "original_ref type must be \"input\", \"temp\" or \"output\"");
        goto out;
    }
    int rc = norm_subfolder(jsub ? json_str(jsub) : "", &sub);
    if (rc == BASE_E_NOMEM)
        goto oom;
    if (rc) {
        http_res_error(res, 403, "forbidden", "original_ref subfolder escapes its folder");
        goto out;
    }
    if (!(rel = join_rel(sub, name)))
        goto oom;
    if (!own_file_readable(s, &req->principal, type, rel)) {
        http_res_error(res, 404, "not_found", "the original image does not exist");
        goto out;
    }
    rc = base_path_resolve(root, rel, true, &path);
    if (rc == BASE_E_NOENT)
        http_res_error(res, 404, "not_found", "the original image does not exist");
    else if (rc == BASE_E_PATH)
        http_res_error(res, 403, "forbidden", "the original image is outside its folder");
    else if (rc == BASE_E_NOMEM)
        goto oom;
    else if (rc)
        http_res_error(res, 500, "server_error", "cannot resolve the original image");
    goto out;
oom:
    http_res_error(res, 500, "server_error", base_strerror(BASE_E_NOMEM));
out:
    json_free(ref);
    free(name);
    free(sub);
    free(rel);
    return path;
}

/* The original's pixels with the mask's alpha (nearest-neighbour when the sizes differ;
 * ComfyUI fails on that), its text chunks kept, encoded as PNG into out. */
static int mask_merge(node_png_image_t *orig, const node_png_image_t *mask, base_buf_t *out,
                      char *err, size_t errsz)
{
    uint32_t ow = orig->width, oh = orig->height, mw = mask->width, mh = mask->height;
    for (uint32_t y = 0; y < oh; y++) {
        uint64_t sy = (uint64_t)y * mh / oh;
        for (uint32_t x = 0; x < ow; x++) {
            uint64_t sx = (uint64_t)x * mw / ow;
            orig->rgba[((size_t)y * ow + x) * 4 + 3] = mask->rgba[((size_t)sy * mw + sx) * 4 + 3];
        }
    }
    node_png_kv_t *kv = calloc(orig->text.n ? orig->text.n : 1, sizeof *kv);
    if (!kv)
        return BASE_E_NOMEM;
    size_t nkv = 0;
    for (size_t i = 0; i < orig->text.n; i++)
        if (node_png_key_valid(orig->text.items[i].key))
            kv[nkv++] = (node_png_kv_t){orig->text.items[i].key, orig->text.items[i].value};
    node_png_write_t w = {.pixels = orig->rgba, .width = ow, .height = oh, .channels = 4,
                          .text = kv, .n_text = nkv, .level = FILES_MASK_LEVEL};
    int rc = node_png_encode(&w, out, err, errsz);
    free(kv);
    return rc;
}

void srv_h_upload_mask(srv_t *s, http_req_t *req, http_res_t *res)
{
    upload_t u;
    memset(&u, 0, sizeof u);
    node_png_image_t orig, mask;
    memset(&orig, 0, sizeof orig);
    memset(&mask, 0, sizeof mask);
    base_buf_t png = BASE_BUF_INIT;
    char *path = NULL, *data = NULL;
    size_t len = 0;
    char err[200], msg[300];
    if (!upload_parse(s, req, res, &u))
        goto out;
    if (!(path = mask_original(s, req, u.original_ref, res)))
        goto out;
    int rc = read_regular(path, FILES_VIEW_MAX_BYTES, &data, &len);
    if (rc) {
        http_res_error(res, base_err_http_status(rc), rc == BASE_E_NOENT ? "not_found" : "server_error",
                       rc == BASE_E_NOENT ? "the original image does not exist" : base_strerror(rc));
        goto out;
    }
    if ((rc = node_png_decode(data, len, &orig, err, sizeof err))) {
        snprintf(msg, sizeof msg, "the original image is not a readable PNG: %s", err);
        http_res_error(res, rc == BASE_E_NOMEM ? 500 : 400, "invalid_image", msg);
        goto out;
    }
    if ((rc = node_png_decode(u.image->data, u.image->len, &mask, err, sizeof err))) {
        snprintf(msg, sizeof msg, "the uploaded mask is not a readable PNG: %s", err);
        http_res_error(res, rc == BASE_E_NOMEM ? 500 : 400, "invalid_image", msg);
        goto out;
    }
    if ((rc = mask_merge(&orig, &mask, &png, err, sizeof err))) {
        http_res_error(res, 500, "server_error", rc == BASE_E_NOMEM ? base_strerror(rc) : err);
        goto out;
    }
    store_upload(s, req, res, u.root, u.type, u.sub, u.image->filename, png.data, png.len, u.overwrite);
out:
    node_png_image_free(&orig);
    node_png_image_free(&mask);
    base_buf_free(&png);
    free(data);
    free(path);
    upload_free(&u);
}

/* ------------------------------------------------------------------ /view */

typedef struct {
    const char *ext;
    const char *ctype;
    bool active; /* a browser could run script from it: never served as such */
} ctype_t;

static const ctype_t ctypes[] = {
    {"png", "image/png", false},        {"jpg", "image/jpeg", false},
    {"jpeg", "image/jpeg", false},      {"webp", "image/webp", false},
    {"gif", "image/gif", false},        {"bmp", "image/bmp", false},
    {"tif", "image/tiff", false},       {"tiff", "image/tiff", false},
    {"json", "application/json", false}, {"txt", "text/plain; charset=utf-8", false},
    {"mp4", "video/mp4", false},        {"webm", "video/webm", false},
    {"flac", "audio/flac", false},      {"mp3", "audio/mpeg", false},
    {"wav", "audio/wav", false},        {"ogg", "audio/ogg", false},
    {"html", NULL, true},               {"htm", NULL, true},
    {"xhtml", NULL, true},              {"shtml", NULL, true},
    {"svg", NULL, true},                {"svgz", NULL, true},
    {"js", NULL, true},                 {"mjs", NULL, true},
    {"css", NULL, true},                {"xml", NULL, true},
    {"xsl", NULL, true},                {"xslt", NULL, true},
};

static const ctype_t *ctype_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < sizeof ctypes / sizeof ctypes[0]; i++)
        if (strcasecmp(dot + 1, ctypes[i].ext) == 0)
            return &ctypes[i];
    return NULL;
}

/* Content-Disposition with name quoted (and as RFC 5987 filename* when not ASCII). Control
 * characters never reach the header: they could split it. */
static void set_disposition(http_res_t *res, const char *name, bool attachment)
{
    base_buf_t b = BASE_BUF_INIT;
    bool ascii = true;
    base_buf_puts(&b, attachment ? "attachment; filename=\"" : "inline; filename=\"");
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p >= 0x80) {
            ascii = false;
            base_buf_putc(&b, '_');
        } else if (*p < 0x20 || *p == 0x7f) {
            base_buf_putc(&b, '_');
        } else {
            if (*p == '"' || *p == '\\')
                base_buf_putc(&b, '\\');
            base_buf_putc(&b, (char)*p);
        }
    }
    base_buf_putc(&b, '"');
    if (!ascii) {
        base_buf_puts(&b, "; filename*=UTF-8''");
        for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
            bool plain = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                         strchr("!#$&+-.^_`|~", *p);
            if (plain)
                base_buf_putc(&b, (char)*p);
            else
                base_buf_printf(&b, "%%%02X", *p);
        }
    }
    if (b.data)
        http_res_header(res, "Content-Disposition", "%s", b.data);
    base_buf_free(&b);
}

/* channel=rgb / channel=a of a PNG (ComfyUI's re-encodes), into out. */
static int view_channel(const char *data, size_t len, bool alpha_only, base_buf_t *out, char *err,
                        size_t errsz)
{
    node_png_image_t img;
    int rc = node_png_decode(data, len, &img, err, errsz);
    if (rc)
        return rc;
    size_t n = (size_t)img.width * img.height;
    uint8_t *px = malloc(n * (alpha_only ? 4 : 3) + 1);
    if (!px) {
        node_png_image_free(&img);
        return BASE_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = img.rgba + i * 4;
        if (alpha_only) {
            uint8_t *d = px + i * 4;
            d[0] = d[1] = d[2] = 0;
            d[3] = s[3]; /* decoding already made it 255 when the source has no alpha */
        } else {
            memcpy(px + i * 3, s, 3);
        }
    }
    node_png_write_t w = {.pixels = px, .width = img.width, .height = img.height,
                          .channels = alpha_only ? 4 : 3, .level = 1};
    rc = node_png_encode(&w, out, err, errsz);
    free(px);
    node_png_image_free(&img);
    return rc;
}

/* Answers with root/rel (base: its last component), re-encoded to one channel when channel
 * is "rgb" or "a". */
static void serve_file(http_res_t *res, const char *root, const char *rel, const char *base, const char *channel)
{
    char *path = NULL, *data = NULL;
    size_t len = 0;
    base_buf_t png = BASE_BUF_INIT;
    int rc = base_path_resolve(root, rel, true, &path);
    if (!rc)
        rc = read_regular(path, FILES_VIEW_MAX_BYTES, &data, &len);
    if (rc == BASE_E_NOENT) {
        http_res_error(res, 404, "not_found", "file not found");
        goto out;
    }
    if (rc == BASE_E_PATH) {
        http_res_error(res, 403, "forbidden", "the file is outside its folder");
        goto out;
    }
    if (rc == BASE_E_TOOBIG) {
        http_res_error(res, 413, "too_large", "file larger than 512 MiB");
        goto out;
    }
    if (rc == BASE_E_NOMEM)
        goto oom;
    if (rc) {
        http_res_error(res, 500, "server_error", "cannot read the file");
        goto out;
    }
    bool rgb = channel && strcmp(channel, "rgb") == 0, alpha = channel && strcmp(channel, "a") == 0;
    if (rgb || alpha) {
        const ctype_t *ct = ctype_of(base);
        char err[160], msg[240];
        if (!ct || strcmp(ct->ext, "png") != 0) {
            http_res_error(res, 400, "invalid_channel", "channel=rgb and channel=a need a PNG file");
            goto out;
        }
        rc = view_channel(data, len, alpha, &png, err, sizeof err);
        if (rc == BASE_E_NOMEM)
            goto oom;
        if (rc) {
            snprintf(msg, sizeof msg, "cannot read the PNG: %s", err);
            http_res_error(res, 400, "invalid_image", msg);
            goto out;
        }
        http_res_bytes(res, 200, "image/png", png.data, png.len);
        set_disposition(res, base, false);
        goto out;
    }
    const ctype_t *ct = ctype_of(base);
    bool active = ct && ct->active;
    /* The file can be large: hand its buffer (malloc'ed, NUL after len) to the response
     * instead of copying it as http_res_bytes would. */
    base_buf_free(&res->body);
    res->body = (base_buf_t){data, len, len + 1};
    data = NULL;
    res->status = 200;
    res->content_type = ct && ct->ctype ? ct->ctype : "application/octet-stream";
    set_disposition(res, base, active);
    goto out;
oom:
    http_res_error(res, 500, "server_error", base_strerror(BASE_E_NOMEM));
out:
    base_buf_free(&png);
    free(data);
    free(path);
}

/* Nothing under /view or a share link may be sniffed into HTML or run script with the
 * server's origin; set on every answer, errors included. */
static void safe_headers(http_res_t *res)
{
    http_res_header(res, "X-Content-Type-Options", "nosniff");
    http_res_header(res, "Content-Security-Policy", "sandbox");
}

static void view_impl(srv_t *s, http_req_t *req, http_res_t *res)
{
    char *filename = http_query_get(req, "filename");
    char *qtype = NULL, *qsub = NULL, *channel = NULL, *sub = NULL, *rel = NULL;
    if (!filename) {
        http_res_error(res, 404, "not_found", "missing filename");
        goto out;
    }
    const char *type = strip_annotation(filename);
    if (!*filename || filename[0] == '/' || strstr(filename, "..") || strchr(filename, '\\') ||
        has_ctl(filename)) {
        http_res_error(res, 400, "invalid_filename", "filename must be a plain name inside its folder");
        goto out;
    }
    const char *base = strrchr(filename, '/'); /* ComfyUI uses only the basename */
    base = base ? base + 1 : filename;
    if (!*base) {
        http_res_error(res, 400, "invalid_filename", "filename names a folder");
        goto out;
    }
    if (!type) {
        qtype = http_query_get(req, "type");
        type = qtype ? qtype : "output";
    }
    const char *root = type_dir(s, type);
    if (!root) {
        http_res_error(res, 400, "invalid_type", "type must be \"output\", \"input\" or \"temp\"");
        goto out;
    }
    qsub = http_query_get(req, "subfolder");
    int rc = norm_subfolder(qsub, &sub);
    if (rc == BASE_E_NOMEM)
        goto oom;
    if (rc) {
        http_res_error(res, 403, "forbidden", "subfolder escapes its folder");
        goto out;
    }
    if (!(rel = join_rel(sub, base)))
        goto oom;
    /* Someone else's file and a missing one answer alike, so existence does not leak. */
    if (!own_file_readable(s, &req->principal, type, rel)) {
        http_res_error(res, 404, "not_found", "file not found");
        goto out;
    }
    channel = http_query_get(req, "channel");
    serve_file(res, root, rel, base, channel);
    goto out;
oom:
    http_res_error(res, 500, "server_error", base_strerror(BASE_E_NOMEM));
out:
    free(rel);
    free(sub);
    free(channel);
    free(qsub);
    free(qtype);
    free(filename);
}

bool srv__files_exists(srv_t *s, const char *folder, const char *path)
{
    const char *root = folder ? type_dir(s, folder) : NULL;
    char *abs = NULL;
    struct stat st;
    bool ok = root && path && base_path_resolve(root, path, true, &abs) == 0 && stat(abs, &st) == 0 &&
              S_ISREG(st.st_mode);
    free(abs);
    return ok;
}

void srv__files_serve(srv_t *s, http_res_t *res, const char *folder, const char *path)
{
    const char *root = folder ? type_dir(s, folder) : NULL;
    const char *slash = path ? strrchr(path, '/') : NULL;
    const char *base = slash ? slash + 1 : path;
    char *sub = NULL, *norm = NULL, *rel = NULL;
    if (!root || !base || bad_filename(base)) {
        http_res_error(res, 404, "not_found", "file not found");
    } else if (!(sub = strndup(path, slash ? (size_t)(slash - path) : 0))) {
        http_res_error(res, 500, "server_error", base_strerror(BASE_E_NOMEM));
    } else if (norm_subfolder(sub, &norm) || !(rel = join_rel(norm, base))) {
        http_res_error(res, 404, "not_found", "file not found");
    } else {
        serve_file(res, root, rel, base, NULL);
        if (res->status == 403)
            http_res_error(res, 404, "not_found", "file not found");
    }
    free(sub);
    free(norm);
    free(rel);
    safe_headers(res);
}

void srv_h_view(srv_t *s, http_req_t *req, http_res_t *res)
{
    view_impl(s, req, res);
    safe_headers(res);
}
