#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "image/png.h"

/* The handlers of /view, /upload/image and /upload/mask called directly with a hand-built
 * srv_t (only its env is used) and hand-built requests. */

#define BOUNDARY "----weftTestBoundary7MA4YWxkTrZu0gW"

typedef struct {
    char *root;  /* WEFT_TEST_TMP/files: nothing may appear here but base/ */
    char *base;  /* root/base: the base dir */
    srv_t s;
} fx_t;

static int fx_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->root = tu_fresh_dir("files");
    size_t n = strlen(fx->root) + 8;
    fx->base = malloc(n);
    snprintf(fx->base, n, "%s/base", fx->root);
    assert_int_equal(srv_env_open(&fx->s.env, fx->base), 0);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    srv_env_close(&fx->s.env);
    free(fx->base);
    free(fx->root);
    free(fx);
    return 0;
}

/* ------------------------------------------------------------------ requests and responses */

typedef struct {
    const char *name, *filename, *ctype;
    const void *data;
    size_t len; /* 0 with data: strlen */
} fpart_t;

typedef struct {
    http_req_t req;
    http_header_t hdr;
    char query[2048];
} req_t;

static void req_init(req_t *r, const char *method, const char *query, const char *ctype)
{
    memset(r, 0, sizeof *r);
    r->req.method = method;
    /* What the router gives every request under --no-auth: admin "local". */
    snprintf(r->req.principal.user, sizeof r->req.principal.user, "local");
    r->req.principal.role = AUTH_ROLE_ADMIN;
    r->req.principal.scopes = auth_role_scopes(AUTH_ROLE_ADMIN);
    r->req.principal.via = AUTH_VIA_NOAUTH;
    snprintf(r->query, sizeof r->query, "%s", query ? query : "");
    r->req.query = r->query;
    if (ctype) {
        r->hdr.name = strdup("content-type");
        r->hdr.value = strdup(ctype);
        r->req.headers = &r->hdr;
        r->req.n_headers = 1;
    }
}

static void req_free(req_t *r)
{
    free(r->hdr.name);
    free(r->hdr.value);
    base_buf_free(&r->req.body);
}

static void res_free(http_res_t *res)
{
    base_buf_free(&res->headers);
    base_buf_free(&res->body);
    memset(res, 0, sizeof *res);
}

/* Value of a response header (copied into buf), NULL when absent. */
static const char *res_header(const http_res_t *res, const char *name, char *buf, size_t bufsz)
{
    size_t n = strlen(name);
    for (const char *p = res->headers.data; p && *p;) {
        const char *e = strstr(p, "\r\n");
        assert_non_null(e);
        if ((size_t)(e - p) > n + 1 && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            snprintf(buf, bufsz, "%.*s", (int)(e - p - n - 2), p + n + 2);
            return buf;
        }
        p = e + 2;
    }
    return NULL;
}

static void upload(fx_t *fx, void (*h)(srv_t *, http_req_t *, http_res_t *), const fpart_t *parts, size_t n,
                   http_res_t *res)
{
    req_t r;
    req_init(&r, "POST", "", "multipart/form-data; boundary=" BOUNDARY);
    base_buf_t *b = &r.req.body;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(base_buf_printf(b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", BOUNDARY,
                                         parts[i].name),
                         0);
        if (parts[i].filename) {
            /* The name goes in quoted with its quotes escaped, as curl does. */
            assert_int_equal(base_buf_puts(b, "; filename=\""), 0);
            for (const char *c = parts[i].filename; *c; c++) {
                if (*c == '"' || *c == '\\')
                    assert_int_equal(base_buf_putc(b, '\\'), 0);
                assert_int_equal(base_buf_putc(b, *c), 0);
            }
            assert_int_equal(base_buf_putc(b, '"'), 0);
        }
        assert_int_equal(base_buf_puts(b, "\r\n"), 0);
        if (parts[i].ctype)
            assert_int_equal(base_buf_printf(b, "Content-Type: %s\r\n", parts[i].ctype), 0);
        assert_int_equal(base_buf_puts(b, "\r\n"), 0);
        size_t len = parts[i].len ? parts[i].len : strlen(parts[i].data);
        assert_int_equal(base_buf_append(b, parts[i].data, len), 0);
        assert_int_equal(base_buf_puts(b, "\r\n"), 0);
    }
    assert_int_equal(base_buf_printf(b, "--%s--\r\n", BOUNDARY), 0);
    res_free(res);
    h(&fx->s, &r.req, res);
    req_free(&r);
}

static void view(fx_t *fx, const char *query, http_res_t *res)
{
    req_t r;
    req_init(&r, "GET", query, NULL);
    res_free(res);
    srv_h_view(&fx->s, &r.req, res);
    req_free(&r);
    /* Every /view answer, errors included. */
    char v[256];
    assert_non_null(res_header(res, "X-Content-Type-Options", v, sizeof v));
    assert_string_equal(v, "nosniff");
    assert_non_null(res_header(res, "Content-Security-Policy", v, sizeof v));
    assert_string_equal(v, "sandbox");
}

static json_t *res_json(const http_res_t *res)
{
    assert_non_null(res->content_type);
    assert_non_null(strstr(res->content_type, "application/json"));
    json_t *j = NULL;
    char err[128];
    assert_int_equal(json_parse(res->body.data, res->body.len, &j, err, sizeof err), 0);
    return j;
}

/* Checks a JSON error answer: status and error.type. */
static void expect_error(http_res_t *res, int status, const char *type)
{
    if (res->status != status)
        fail_msg("status %d, want %d: %s", res->status, status, res->body.data ? res->body.data : "");
    json_t *j = res_json(res);
    const char *t = json_str(json_object_get(json_object_get(j, "error"), "type"));
    assert_non_null(t);
    assert_string_equal(t, type);
    assert_non_null(json_str(json_object_get(json_object_get(j, "error"), "message")));
    json_free(j);
    res_free(res);
}

/* Checks a 200 upload answer. */
static void expect_uploaded(http_res_t *res, const char *name, const char *sub, const char *type)
{
    if (res->status != 200)
        fail_msg("status %d: %s", res->status, res->body.data ? res->body.data : "");
    json_t *j = res_json(res);
    assert_int_equal(json_len(j), 3);
    assert_string_equal(json_key_at(j, 0), "name");
    assert_string_equal(json_str(json_object_get(j, "name")), name);
    assert_string_equal(json_str(json_object_get(j, "subfolder")), sub);
    assert_string_equal(json_str(json_object_get(j, "type")), type);
    json_free(j);
    res_free(res);
}

static void upload_simple(fx_t *fx, const char *filename, const char *data, const char *type, const char *sub,
                          const char *overwrite, http_res_t *res)
{
    fpart_t parts[4] = {{"image", filename, "image/png", data, 0}};
    size_t n = 1;
    if (type)
        parts[n++] = (fpart_t){"type", NULL, NULL, type, 0};
    if (sub)
        parts[n++] = (fpart_t){"subfolder", NULL, NULL, sub, 0};
    if (overwrite)
        parts[n++] = (fpart_t){"overwrite", NULL, NULL, overwrite, 0};
    upload(fx, srv_h_upload_image, parts, n, res);
}

static char *path_of(fx_t *fx, const char *rel)
{
    size_t n = strlen(fx->base) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", fx->base, rel);
    return p;
}

static char *read_rel(fx_t *fx, const char *rel, size_t *len)
{
    char *p = path_of(fx, rel), *data = NULL;
    size_t n = 0;
    int rc = base_read_file(p, 1u << 30, &data, &n);
    free(p);
    if (rc)
        return NULL;
    if (len)
        *len = n;
    return data;
}

static void expect_file(fx_t *fx, const char *rel, const char *content)
{
    size_t n;
    char *d = read_rel(fx, rel, &n);
    if (!d)
        fail_msg("%s is missing", rel);
    assert_int_equal(n, strlen(content));
    assert_memory_equal(d, content, n);
    free(d);
}

/* Regular files and links below dir (recursive), so stray temp files show up too. */
static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        assert_int_equal(lstat(p, &st), 0);
        n += S_ISDIR(st.st_mode) ? count_files(p) : 1;
    }
    closedir(d);
    return n;
}

static char *png_bytes(uint32_t w, uint32_t h, int channels, const uint8_t *px, const node_png_kv_t *kv, size_t nkv,
                       size_t *len)
{
    base_buf_t b = BASE_BUF_INIT;
    node_png_write_t pw = {.pixels = px, .width = w, .height = h, .channels = channels, .text = kv,
                           .n_text = nkv, .level = 6};
    char err[128];
    assert_int_equal(node_png_encode(&pw, &b, err, sizeof err), 0);
    *len = b.len;
    return base_buf_take(&b);
}

/* ------------------------------------------------------------------ tests */

static void test_roundtrip(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    static const uint8_t px[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    size_t len;
    char *png = png_bytes(2, 2, 3, px, NULL, 0, &len);
    fpart_t parts[] = {{"image", "a.png", "image/png", png, len}};
    upload(fx, srv_h_upload_image, parts, 1, &res);
    expect_uploaded(&res, "a.png", "", "input");

    view(fx, "filename=a.png&type=input", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.content_type, "image/png");
    assert_int_equal(res.body.len, len);
    assert_memory_equal(res.body.data, png, len);
    char v[256];
    assert_non_null(res_header(&res, "Content-Disposition", v, sizeof v));
    assert_string_equal(v, "inline; filename=\"a.png\"");
    res_free(&res);

    /* The annotation overrides type; type defaults to output where a.png is not. */
    view(fx, "filename=a.png%20%5Binput%5D&type=output", &res);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, len);
    res_free(&res);
    view(fx, "filename=a.png", &res);
    expect_error(&res, 404, "not_found");
    free(png);
}

static void test_overwrite(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    upload_simple(fx, "x.png", "AAAA", NULL, NULL, NULL, &res);
    expect_uploaded(&res, "x.png", "", "input");
    upload_simple(fx, "x.png", "BBBB", NULL, NULL, "true", &res);
    expect_uploaded(&res, "x.png", "", "input");
    expect_file(fx, "input/x.png", "BBBB");
    upload_simple(fx, "x.png", "CC", NULL, NULL, "1", &res);
    expect_uploaded(&res, "x.png", "", "input");
    expect_file(fx, "input/x.png", "CC");
    /* Anything else is not an overwrite. */
    upload_simple(fx, "x.png", "DD", NULL, NULL, "yes", &res);
    expect_uploaded(&res, "x (1).png", "", "input");
    upload_simple(fx, "x.png", "DD", NULL, NULL, "TRUE", &res);
    expect_uploaded(&res, "x (1).png", "", "input");
    expect_file(fx, "input/x.png", "CC");
    expect_file(fx, "input/x (1).png", "DD");
    assert_int_equal(count_files(fx->root), 2);
}

static void test_collisions(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    upload_simple(fx, "x.png", "one", NULL, NULL, NULL, &res);
    expect_uploaded(&res, "x.png", "", "input");
    upload_simple(fx, "x.png", "one", NULL, NULL, NULL, &res); /* identical: kept, nothing written */
    expect_uploaded(&res, "x.png", "", "input");
    assert_int_equal(count_files(fx->root), 1);
    upload_simple(fx, "x.png", "two", NULL, NULL, NULL, &res);
    expect_uploaded(&res, "x (1).png", "", "input");
    upload_simple(fx, "x.png", "three", NULL, NULL, NULL, &res);
    expect_uploaded(&res, "x (2).png", "", "input");
    upload_simple(fx, "x.png", "two", NULL, NULL, NULL, &res); /* equals "x (1).png" */
    expect_uploaded(&res, "x (1).png", "", "input");
    expect_file(fx, "input/x.png", "one");
    expect_file(fx, "input/x (1).png", "two");
    expect_file(fx, "input/x (2).png", "three");
    assert_int_equal(count_files(fx->root), 3);
    /* os.path.splitext rules: no extension, a leading dot, several dots. */
    upload_simple(fx, "noext", "a", NULL, NULL, NULL, &res);
    upload_simple(fx, "noext", "b", NULL, NULL, NULL, &res);
    expect_uploaded(&res, "noext (1)", "", "input");
    upload_simple(fx, ".hidden", "a", NULL, NULL, NULL, &res);
    upload_simple(fx, ".hidden", "b", NULL, NULL, NULL, &res);
    expect_uploaded(&res, ".hidden (1)", "", "input");
    upload_simple(fx, "a.b.png", "a", NULL, NULL, NULL, &res);
    upload_simple(fx, "a.b.png", "b", NULL, NULL, NULL, &res);
    expect_uploaded(&res, "a.b (1).png", "", "input");
    res_free(&res);
}

static void test_subfolder_and_types(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    upload_simple(fx, "s.png", "sub", NULL, "pasted/deep", NULL, &res);
    expect_uploaded(&res, "s.png", "pasted/deep", "input");
    expect_file(fx, "input/pasted/deep/s.png", "sub");
    upload_simple(fx, "n.png", "norm", NULL, "./a//b/../c/", NULL, &res);
    expect_uploaded(&res, "n.png", "a/c", "input");
    expect_file(fx, "input/a/c/n.png", "norm");
    upload_simple(fx, "t.png", "temp", "temp", NULL, NULL, &res);
    expect_uploaded(&res, "t.png", "", "temp");
    expect_file(fx, "temp/t.png", "temp");
    upload_simple(fx, "o.png", "out", "output", "x", NULL, &res);
    expect_uploaded(&res, "o.png", "x", "output");
    expect_file(fx, "output/x/o.png", "out");
    upload_simple(fx, "i.png", "in", "input", "", NULL, &res);
    expect_uploaded(&res, "i.png", "", "input");

    view(fx, "filename=o.png&subfolder=x", &res);
    assert_int_equal(res.status, 200);
    assert_memory_equal(res.body.data, "out", 3);
    res_free(&res);
    view(fx, "filename=t.png&type=temp", &res);
    assert_int_equal(res.status, 200);
    res_free(&res);
    view(fx, "filename=n.png&type=input&subfolder=a%2Fb%2F..%2Fc", &res);
    assert_int_equal(res.status, 200);
    res_free(&res);

    upload_simple(fx, "b.png", "bad", "models", NULL, NULL, &res);
    expect_error(&res, 400, "invalid_type");
    upload_simple(fx, "b.png", "bad", "", NULL, NULL, &res);
    expect_error(&res, 400, "invalid_type");
    view(fx, "filename=o.png&type=models", &res);
    expect_error(&res, 400, "invalid_type");
    assert_int_equal(count_files(fx->root), 5);
}

static void test_upload_traversal(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    static const char *const names[] = {"../../x", "/abs", "a/../../b", "..\\x", "..", ".", "", "a/b.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        upload_simple(fx, names[i], "evil", NULL, NULL, NULL, &res);
        expect_error(&res, 400, "invalid_filename");
    }
    /* Control characters cannot even reach the name: the multipart parser refuses them. */
    upload_simple(fx, "a\x01" "b", "evil", NULL, NULL, NULL, &res);
    expect_error(&res, 400, "invalid_multipart");
    upload_simple(fx, "x\x7f", "evil", NULL, NULL, NULL, &res);
    expect_error(&res, 400, "invalid_multipart");
    upload_simple(fx, "\xff.png", "evil", NULL, NULL, NULL, &res); /* not UTF-8 */
    expect_error(&res, 400, "invalid_filename");
    upload_simple(fx, "\xc0\xae.png", "evil", NULL, NULL, NULL, &res); /* overlong '.' */
    expect_error(&res, 400, "invalid_filename");
    upload_simple(fx, "\xed\xa0\x80.png", "evil", NULL, NULL, NULL, &res); /* surrogate */
    expect_error(&res, 400, "invalid_filename");
    char longname[300];
    memset(longname, 'a', 256);
    strcpy(longname + 256, "");
    upload_simple(fx, longname, "evil", NULL, NULL, NULL, &res);
    expect_error(&res, 400, "invalid_filename");
    longname[255] = '\0';
    upload_simple(fx, longname, "ok", NULL, NULL, NULL, &res);
    expect_uploaded(&res, longname, "", "input");
    upload_simple(fx, longname, "ok2", NULL, NULL, NULL, &res); /* "(1)" would pass 255 bytes */
    expect_error(&res, 400, "invalid_filename");

    static const char *const subs[] = {"../../x", "/abs", "a/../../b", "..\\x", "..", "a/\x01", "\xc0\xaf"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        upload_simple(fx, "s.png", "evil", i % 2 ? "output" : "temp", subs[i], NULL, &res);
        expect_error(&res, 400, "invalid_subfolder");
    }
    /* A subfolder that is a symlink leading out is not followed. */
    char *link = path_of(fx, "input/out");
    assert_int_equal(symlink(fx->root, link), 0);
    upload_simple(fx, "s.png", "evil", NULL, "out", NULL, &res);
    expect_error(&res, 400, "invalid_subfolder");
    upload_simple(fx, "s.png", "evil", NULL, "out/new", NULL, &res);
    expect_error(&res, 400, "invalid_subfolder");
    unlink(link);
    free(link);
    /* Nothing was written anywhere but the one long name. */
    assert_int_equal(count_files(fx->root), 1);
}

static void test_upload_symlink_target(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    char outside[4096];
    snprintf(outside, sizeof outside, "%s/outside.png", fx->root);
    tu_write_file(outside, "secret", 6);
    char *link = path_of(fx, "output/evil.png");
    assert_int_equal(symlink(outside, link), 0);
    upload_simple(fx, "evil.png", "pwned", "output", NULL, "true", &res);
    expect_error(&res, 403, "forbidden");
    upload_simple(fx, "evil.png", "pwned", "output", NULL, NULL, &res);
    expect_error(&res, 403, "forbidden");
    /* Even a link that stays inside is never written through. */
    char *inside = path_of(fx, "output/real.png");
    tu_write_file(inside, "real", 4);
    char *link2 = path_of(fx, "output/alias.png");
    assert_int_equal(symlink(inside, link2), 0);
    upload_simple(fx, "alias.png", "pwned", "output", NULL, "1", &res);
    expect_error(&res, 403, "forbidden");
    expect_file(fx, "output/real.png", "real");
    size_t n;
    char *d = NULL;
    assert_int_equal(base_read_file(outside, 100, &d, &n), 0);
    assert_string_equal(d, "secret");
    free(d);
    /* A folder where the file would go. */
    char *dir = path_of(fx, "output/dir.png");
    assert_int_equal(mkdir(dir, 0755), 0);
    upload_simple(fx, "dir.png", "x", "output", NULL, "true", &res);
    expect_error(&res, 409, "conflict");
    upload_simple(fx, "dir.png", "x", "output", NULL, NULL, &res);
    expect_uploaded(&res, "dir (1).png", "", "output");
    free(dir);
    free(inside);
    free(link2);
    free(link);
}

static void test_view_traversal(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    char *p = path_of(fx, "output/ok.png");
    tu_write_file(p, "ok", 2);
    free(p);
    p = path_of(fx, "output/sub");
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);

    static const struct {
        const char *query;
        int status;
        const char *type;
    } cases[] = {
        {"", 404, "not_found"},
        {"type=output", 404, "not_found"},
        {"filename=", 400, "invalid_filename"},
        {"filename=%5Boutput%5D", 404, "not_found"}, /* no space: not an annotation */
        {"filename=%20%5Boutput%5D", 400, "invalid_filename"},
        {"filename=../x", 400, "invalid_filename"},
        {"filename=%2e%2e%2fbase%2foutput%2fok.png", 400, "invalid_filename"},
        {"filename=/etc/passwd", 400, "invalid_filename"},
        {"filename=%2Fetc%2Fpasswd", 400, "invalid_filename"},
        {"filename=..%5Cx", 400, "invalid_filename"},
        {"filename=a%5Cb.png", 400, "invalid_filename"},
        {"filename=ok.png%00", 404, "not_found"}, /* %00 is refused by the query parser */
        {"filename=sub/", 400, "invalid_filename"},
        {"filename=ok.png&subfolder=../../", 403, "forbidden"},
        {"filename=ok.png&subfolder=..%2F..", 403, "forbidden"},
        {"filename=passwd&subfolder=/etc", 403, "forbidden"},
        {"filename=ok.png&subfolder=a/../../output", 403, "forbidden"},
        {"filename=ok.png&subfolder=..%5Coutput", 403, "forbidden"},
        {"filename=missing.png", 404, "not_found"},
        {"filename=sub", 404, "not_found"},
        {"filename=ok.png&subfolder=nope", 404, "not_found"},
        {"filename=ok.png&type=bogus", 400, "invalid_type"},
        {"filename=ok.png&type=", 400, "invalid_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        view(fx, cases[i].query, &res);
        if (res.status != cases[i].status)
            fail_msg("%s: status %d, want %d", cases[i].query, res.status, cases[i].status);
        expect_error(&res, cases[i].status, cases[i].type);
    }
    /* Harmless forms that still resolve inside. */
    view(fx, "filename=sub/../ok.png", &res); /* contains "..": refused like ComfyUI */
    expect_error(&res, 400, "invalid_filename");
    view(fx, "filename=x/ok.png", &res); /* only the basename counts */
    assert_int_equal(res.status, 200);
    res_free(&res);
    view(fx, "filename=ok.png&subfolder=sub/..", &res);
    assert_int_equal(res.status, 200);
    res_free(&res);
    view(fx, "filename=ok.png&subfolder=.", &res);
    assert_int_equal(res.status, 200);
    res_free(&res);
}

static void test_view_symlinks(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    char *p = path_of(fx, "output/link.png");
    assert_int_equal(symlink("/etc/passwd", p), 0);
    free(p);
    p = path_of(fx, "output/etc");
    assert_int_equal(symlink("/etc", p), 0);
    free(p);
    view(fx, "filename=link.png", &res);
    expect_error(&res, 403, "forbidden");
    view(fx, "filename=passwd&subfolder=etc", &res);
    expect_error(&res, 403, "forbidden");
    /* A link from input/ into output/ leaves input/ too. */
    char *target = path_of(fx, "output/real.png");
    tu_write_file(target, "real", 4);
    p = path_of(fx, "input/cross.png");
    assert_int_equal(symlink(target, p), 0);
    free(p);
    view(fx, "filename=cross.png&type=input", &res);
    expect_error(&res, 403, "forbidden");
    /* A link that stays inside its folder is served. */
    p = path_of(fx, "output/alias.png");
    assert_int_equal(symlink("real.png", p), 0);
    free(p);
    view(fx, "filename=alias.png", &res);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, 4);
    assert_memory_equal(res.body.data, "real", 4);
    res_free(&res);
    /* A dangling link and a FIFO are "not found", without blocking. */
    p = path_of(fx, "output/dangling.png");
    assert_int_equal(symlink("nowhere.png", p), 0);
    free(p);
    view(fx, "filename=dangling.png", &res);
    expect_error(&res, 404, "not_found");
    p = path_of(fx, "output/fifo.png");
    assert_int_equal(mkfifo(p, 0644), 0);
    free(p);
    view(fx, "filename=fifo.png", &res);
    expect_error(&res, 404, "not_found");
    free(target);
}

static void test_view_active_types(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    static const char html[] = "<html><script>alert(1)</script></html>";
    static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>";
    upload_simple(fx, "evil.html", html, NULL, NULL, NULL, &res);
    expect_uploaded(&res, "evil.html", "", "input");
    upload_simple(fx, "x.svg", svg, NULL, NULL, NULL, &res);
    expect_uploaded(&res, "x.svg", "", "input");
    static const char *const active[] = {"evil.html", "x.svg", "a.JS", "b.mjs", "c.css", "d.xml", "e.xhtml", "f.HTM"};
    for (size_t i = 2; i < sizeof active / sizeof active[0]; i++) {
        upload_simple(fx, active[i], "x", NULL, NULL, NULL, &res);
        expect_uploaded(&res, active[i], "", "input");
    }
    char q[128], v[256], want[128];
    for (size_t i = 0; i < sizeof active / sizeof active[0]; i++) {
        snprintf(q, sizeof q, "filename=%s&type=input", active[i]);
        view(fx, q, &res);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.content_type, "application/octet-stream");
        assert_non_null(res_header(&res, "Content-Disposition", v, sizeof v));
        snprintf(want, sizeof want, "attachment; filename=\"%s\"", active[i]);
        assert_string_equal(v, want);
        if (i == 0) {
            assert_int_equal(res.body.len, strlen(html));
            assert_memory_equal(res.body.data, html, strlen(html));
        }
        res_free(&res);
    }
    /* Known passive types keep their type and are shown inline; unknown ones are bytes. */
    static const struct {
        const char *name, *ctype;
    } passive[] = {{"p.JPG", "image/jpeg"}, {"p.webp", "image/webp"}, {"p.json", "application/json"},
                   {"p.txt", "text/plain; charset=utf-8"}, {"p.mp4", "video/mp4"}, {"p.bin", "application/octet-stream"},
                   {"noext", "application/octet-stream"}};
    for (size_t i = 0; i < sizeof passive / sizeof passive[0]; i++) {
        upload_simple(fx, passive[i].name, "x", "output", NULL, NULL, &res);
        expect_uploaded(&res, passive[i].name, "", "output");
        snprintf(q, sizeof q, "filename=%s", passive[i].name);
        view(fx, q, &res);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.content_type, passive[i].ctype);
        assert_non_null(res_header(&res, "Content-Disposition", v, sizeof v));
        snprintf(want, sizeof want, "inline; filename=\"%s\"", passive[i].name);
        assert_string_equal(v, want);
        res_free(&res);
    }
    /* Quotes are escaped, non-ASCII goes to filename*. */
    upload_simple(fx, "q\"u.png", "x", "output", NULL, NULL, &res);
    expect_uploaded(&res, "q\"u.png", "", "output");
    view(fx, "filename=q%22u.png", &res);
    assert_non_null(res_header(&res, "Content-Disposition", v, sizeof v));
    assert_string_equal(v, "inline; filename=\"q\\\"u.png\"");
    res_free(&res);
    upload_simple(fx, "caf\xc3\xa9.png", "x", "output", NULL, NULL, &res);
    expect_uploaded(&res, "caf\xc3\xa9.png", "", "output");
    view(fx, "filename=caf%C3%A9.png", &res);
    assert_non_null(res_header(&res, "Content-Disposition", v, sizeof v));
    assert_string_equal(v, "inline; filename=\"caf__.png\"; filename*=UTF-8''caf%C3%A9.png");
    res_free(&res);
}

static void test_view_channels(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    /* 3x2 RGBA with distinct colours and alphas. */
    uint8_t px[3 * 2 * 4];
    for (int i = 0; i < 6; i++) {
        px[i * 4 + 0] = (uint8_t)(10 + i);
        px[i * 4 + 1] = (uint8_t)(100 + i);
        px[i * 4 + 2] = (uint8_t)(200 + i);
        px[i * 4 + 3] = (uint8_t)(i * 50);
    }
    size_t len;
    char *png = png_bytes(3, 2, 4, px, NULL, 0, &len);
    char *p = path_of(fx, "output/c.png");
    tu_write_file(p, png, len);
    free(p);
    free(png);

    node_png_image_t img;
    char err[128];
    view(fx, "filename=c.png&channel=rgb", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.content_type, "image/png");
    assert_int_equal(node_png_decode(res.body.data, res.body.len, &img, err, sizeof err), 0);
    assert_int_equal(img.width, 3);
    assert_int_equal(img.height, 2);
    assert_int_equal(img.color_type, NODE_PNG_RGB);
    assert_false(img.has_alpha);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(img.rgba[i * 4 + 0], 10 + i);
        assert_int_equal(img.rgba[i * 4 + 1], 100 + i);
        assert_int_equal(img.rgba[i * 4 + 2], 200 + i);
        assert_int_equal(img.rgba[i * 4 + 3], 255);
    }
    node_png_image_free(&img);
    res_free(&res);

    view(fx, "filename=c.png&channel=a&preview=webp%3B90", &res); /* preview is ignored */
    assert_int_equal(res.status, 200);
    assert_string_equal(res.content_type, "image/png");
    assert_int_equal(node_png_decode(res.body.data, res.body.len, &img, err, sizeof err), 0);
    assert_int_equal(img.color_type, NODE_PNG_RGBA);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(img.rgba[i * 4 + 0], 0);
        assert_int_equal(img.rgba[i * 4 + 1], 0);
        assert_int_equal(img.rgba[i * 4 + 2], 0);
        assert_int_equal(img.rgba[i * 4 + 3], i * 50);
    }
    node_png_image_free(&img);
    res_free(&res);

    /* No alpha in the source: channel=a is opaque. */
    uint8_t rgb[3 * 2 * 3];
    memset(rgb, 77, sizeof rgb);
    png = png_bytes(3, 2, 3, rgb, NULL, 0, &len);
    p = path_of(fx, "output/rgb.png");
    tu_write_file(p, png, len);
    free(p);
    view(fx, "filename=rgb.png&channel=a", &res);
    assert_int_equal(res.status, 200);
    assert_int_equal(node_png_decode(res.body.data, res.body.len, &img, err, sizeof err), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(img.rgba[i * 4 + 3], 255);
    assert_int_equal(img.rgba[0], 0);
    node_png_image_free(&img);
    res_free(&res);
    /* Other channel values and preview alone serve the file unchanged. */
    view(fx, "filename=rgb.png&channel=rgba&preview=jpeg%3B50", &res);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, len);
    assert_memory_equal(res.body.data, png, len);
    res_free(&res);
    free(png);

    p = path_of(fx, "output/t.txt");
    tu_write_file(p, "text", 4);
    free(p);
    view(fx, "filename=t.txt&channel=rgb", &res);
    expect_error(&res, 400, "invalid_channel");
    p = path_of(fx, "output/bad.png");
    tu_write_file(p, "not a png", 9);
    free(p);
    view(fx, "filename=bad.png&channel=a", &res);
    expect_error(&res, 400, "invalid_image");
    view(fx, "filename=bad.png", &res); /* served as stored */
    assert_int_equal(res.status, 200);
    res_free(&res);
}

static void test_view_too_big(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    char *p = path_of(fx, "output/huge.bin");
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, ((off_t)512 << 20) + 1), 0); /* sparse: costs no disk */
    close(fd);
    free(p);
    view(fx, "filename=huge.bin", &res);
    expect_error(&res, 413, "too_large");
}

static void test_mask(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    /* Original: 4x4 RGB with two text chunks, in input/. */
    uint8_t orig[4 * 4 * 3];
    for (int i = 0; i < 16; i++) {
        orig[i * 3 + 0] = (uint8_t)i;
        orig[i * 3 + 1] = (uint8_t)(i * 2);
        orig[i * 3 + 2] = (uint8_t)(i * 3);
    }
    node_png_kv_t kv[] = {{"prompt", "{\"1\": {\"class_type\": \"X\"}}"}, {"workflow", "{\"nodes\": []}"}};
    size_t olen;
    char *opng = png_bytes(4, 4, 3, orig, kv, 2, &olen);
    char *p = path_of(fx, "input/orig.png");
    tu_write_file(p, opng, olen);
    free(p);
    free(opng);
    /* Mask: 2x2 RGBA whose alpha is 10, 20 / 30, 40 (scaled 2x by nearest). */
    uint8_t mask[2 * 2 * 4] = {255, 0, 0, 10, 0, 255, 0, 20, 0, 0, 255, 30, 1, 1, 1, 40};
    size_t mlen;
    char *mpng = png_bytes(2, 2, 4, mask, NULL, 0, &mlen);

    const char *ref = "{\"filename\": \"orig.png\", \"subfolder\": \"\", \"type\": \"input\"}";
    fpart_t parts[] = {{"image", "mask.png", "image/png", mpng, mlen},
                       {"original_ref", NULL, NULL, ref, 0},
                       {"type", NULL, NULL, "input", 0},
                       {"subfolder", NULL, NULL, "clipspace", 0}};
    upload(fx, srv_h_upload_mask, parts, 4, &res);
    expect_uploaded(&res, "mask.png", "clipspace", "input");

    node_png_image_t img;
    char err[128];
    p = path_of(fx, "input/clipspace/mask.png");
    assert_int_equal(node_png_decode_file(p, &img, err, sizeof err), 0);
    free(p);
    assert_int_equal(img.width, 4);
    assert_int_equal(img.height, 4);
    assert_int_equal(img.color_type, NODE_PNG_RGBA);
    static const uint8_t want_a[16] = {10, 10, 20, 20, 10, 10, 20, 20, 30, 30, 40, 40, 30, 30, 40, 40};
    for (int i = 0; i < 16; i++) {
        assert_int_equal(img.rgba[i * 4 + 0], i);
        assert_int_equal(img.rgba[i * 4 + 1], i * 2);
        assert_int_equal(img.rgba[i * 4 + 2], i * 3);
        assert_int_equal(img.rgba[i * 4 + 3], want_a[i]);
    }
    assert_int_equal(img.text.n, 2);
    assert_string_equal(node_png_text_get(&img.text, "prompt"), kv[0].value);
    assert_string_equal(node_png_text_get(&img.text, "workflow"), kv[1].value);
    node_png_image_free(&img);

    /* The same mask again gives the same bytes: kept. An annotation overrides ref's type. */
    const char *ref2 = "{\"filename\": \"orig.png [input]\", \"type\": \"output\"}";
    parts[1].data = ref2;
    upload(fx, srv_h_upload_mask, parts, 4, &res);
    expect_uploaded(&res, "mask.png", "clipspace", "input");
    assert_int_equal(count_files(fx->root), 2);

    /* Errors. */
    static const struct {
        const char *ref;
        int status;
        const char *type;
    } bad[] = {
        {"{\"filename\": \"missing.png\", \"type\": \"input\"}", 404, "not_found"},
        {"{\"filename\": \"orig.png\"}", 404, "not_found"}, /* type defaults to output */
        {"not json", 400, "invalid_original_ref"},
        {"[1]", 400, "invalid_original_ref"},
        {"{\"filename\": 3}", 400, "invalid_original_ref"},
        {"{\"filename\": \"orig.png\", \"subfolder\": 1}", 400, "invalid_original_ref"},
        {"{\"filename\": \"../orig.png\", \"type\": \"input\"}", 400, "invalid_filename"},
        {"{\"filename\": \"/etc/passwd\"}", 400, "invalid_filename"},
        {"{\"filename\": \"\"}", 400, "invalid_filename"},
        {"{\"filename\": \"orig.png\", \"type\": \"models\"}", 400, "invalid_type"},
        {"{\"filename\": \"orig.png\", \"subfolder\": \"../input\"}", 403, "forbidden"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parts[1].data = bad[i].ref;
        upload(fx, srv_h_upload_mask, parts, 4, &res);
        expect_error(&res, bad[i].status, bad[i].type);
    }
    upload(fx, srv_h_upload_mask, (fpart_t[]){parts[0], parts[2]}, 2, &res);
    expect_error(&res, 400, "missing_original_ref");
    /* A bad mask PNG and a bad original. */
    parts[1].data = ref;
    parts[0].data = "not a png";
    parts[0].len = 0;
    upload(fx, srv_h_upload_mask, parts, 4, &res);
    expect_error(&res, 400, "invalid_image");
    p = path_of(fx, "input/notpng.png");
    tu_write_file(p, "garbage", 7);
    free(p);
    parts[0].data = mpng;
    parts[0].len = mlen;
    parts[1].data = "{\"filename\": \"notpng.png\", \"type\": \"input\"}";
    upload(fx, srv_h_upload_mask, parts, 4, &res);
    expect_error(&res, 400, "invalid_image");
    assert_int_equal(count_files(fx->root), 3);
    free(mpng);
}

static void test_malformed(void **state)
{
    fx_t *fx = *state;
    http_res_t res = {0};
    static const struct {
        const char *ctype, *body;
    } cases[] = {
        {NULL, "--" BOUNDARY "--"},
        {"application/json", "{}"},
        {"multipart/form-data", "--" BOUNDARY "--"},
        {"multipart/form-data; boundary=" BOUNDARY,
         "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nabc"},
        {"multipart/form-data; boundary=" BOUNDARY, "--" BOUNDARY "\nContent-Disposition: form-data; name=\"a\"\n\nv\n--" BOUNDARY "--"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int mask = 0; mask < 2; mask++) {
            req_t r;
            req_init(&r, "POST", "", cases[i].ctype);
            assert_int_equal(base_buf_puts(&r.req.body, cases[i].body), 0);
            memset(&res, 0, sizeof res);
            (mask ? srv_h_upload_mask : srv_h_upload_image)(&fx->s, &r.req, &res);
            req_free(&r);
            expect_error(&res, 400, "invalid_multipart");
        }
    }
    /* Well-formed forms without a usable image part. */
    fpart_t no_image[] = {{"type", NULL, NULL, "input", 0}};
    upload(fx, srv_h_upload_image, no_image, 1, &res);
    expect_error(&res, 400, "missing_image");
    fpart_t text_image[] = {{"image", NULL, NULL, "just text", 0}};
    upload(fx, srv_h_upload_image, text_image, 1, &res);
    expect_error(&res, 400, "missing_image");
    fpart_t nul_type[] = {{"image", "a.png", NULL, "x", 0}, {"type", NULL, NULL, "input\0x", 7}};
    upload(fx, srv_h_upload_image, nul_type, 2, &res);
    expect_error(&res, 400, "invalid_field");
    assert_int_equal(count_files(fx->root), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_overwrite, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_collisions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subfolder_and_types, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upload_traversal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upload_symlink_target, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_view_traversal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_view_symlinks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_view_active_types, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_view_channels, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_view_too_big, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mask, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_malformed, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
