/* The editor's built files at / (and everything no route matched), confined to the frontend
 * folder. Without a frontend, "/" answers a small page so a browser shows the server is up. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "app.h"

/* Frontend bundles are a few MB; anything far larger is not something we mean to serve. */
#define STATIC_MAX_FILE ((size_t)512 << 20)

static const char builtin_page[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>weft</title></head>\n"
    "<body><h1>weft is running</h1>\n"
    "<p>No frontend is installed. The API answers at "
    "<a href=\"/object_info\">/object_info</a> and <a href=\"/system_stats\">/system_stats</a>.</p>\n"
    "</body></html>\n";

static const struct {
    const char *ext;
    const char *type;
} mime_table[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"svg", "image/svg+xml"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"wasm", "application/wasm"},
    {"txt", "text/plain; charset=utf-8"},
    {"woff2", "font/woff2"},
};

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static const char *mime_of(const char *name)
{
    const char *dot = strrchr(base_name(name), '.');
    if (dot)
        for (size_t i = 0; i < sizeof mime_table / sizeof mime_table[0]; i++)
            if (strcasecmp(dot + 1, mime_table[i].ext) == 0)
                return mime_table[i].type;
    return "application/octet-stream";
}

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* ComfyUI's cache middleware: these change with every frontend build under the same name. */
static bool wants_no_cache(const char *rel)
{
    const char *b = base_name(rel);
    return ends_with_ci(b, ".js") || ends_with_ci(b, ".css") ||
           (strncasecmp(b, "index", 5) == 0 && ends_with_ci(b, ".json"));
}

static void fail(http_res_t *res, int status, const char *type, const char *msg)
{
    http_res_error(res, status, type, msg);
    http_res_header(res, "X-Content-Type-Options", "nosniff");
}

static void serve_builtin(http_res_t *res)
{
    http_res_bytes(res, 200, "text/html; charset=utf-8", builtin_page, sizeof builtin_page - 1);
    http_res_header(res, "Cache-Control", "no-cache");
    http_res_header(res, "X-Content-Type-Options", "nosniff");
}

/* 0 and the file's bytes, or a code (NOENT for anything that is not a regular file inside). */
static int read_confined(const char *root, const char *rel, char **data, size_t *len)
{
    char *abs = NULL;
    int rc = base_path_resolve(root, rel, true, &abs);
    if (rc)
        return rc;
    struct stat st;
    if (stat(abs, &st) != 0 || !S_ISREG(st.st_mode))
        rc = BASE_E_NOENT;
    else
        rc = base_read_file(abs, STATIC_MAX_FILE, data, len);
    free(abs);
    return rc;
}

void srv_h_static(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        fail(res, 405, "method_not_allowed", "only GET and HEAD are served here");
        return;
    }
    const char *raw = req->path ? req->path : "/";
    char *dec = NULL;
    if (http_pct_decode(raw, strlen(raw), false, &dec)) {
        fail(res, 400, "invalid_path", "malformed percent-encoding in path");
        return;
    }
    const char *rel = dec;
    while (*rel == '/')
        rel++;
    bool index = *rel == '\0';
    if (index)
        rel = "index.html";

    const char *root = s->cfg.frontend_dir;
    if (!root || !*root) {
        if (index)
            serve_builtin(res);
        else
            fail(res, 404, "not_found", "not found");
        free(dec);
        return;
    }

    char *data = NULL;
    size_t len = 0;
    int rc = read_confined(root, rel, &data, &len);
    if (rc == 0) {
        http_res_bytes(res, 200, mime_of(rel), data, len);
        if (index || wants_no_cache(rel))
            http_res_header(res, "Cache-Control", "no-cache");
        http_res_header(res, "X-Content-Type-Options", "nosniff");
    } else if (index && rc == BASE_E_NOENT) {
        serve_builtin(res); /* a frontend folder without a build yet */
    } else if (rc == BASE_E_PATH) {
        fail(res, 403, "forbidden", "path escapes the frontend folder");
    } else if (rc == BASE_E_NOENT) {
        fail(res, 404, "not_found", "not found");
    } else {
        fail(res, base_err_http_status(rc), "read_failed", base_strerror(rc));
    }
    free(data);
    free(dec);
}
