/* The system, static and userdata route handlers, called directly with hand-built requests. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"

typedef void (*handler_fn)(srv_t *s, http_req_t *req, http_res_t *res);

typedef struct {
    srv_t s;
    char *base;
    char *outside; /* a folder next to the base dir that nothing may touch */
    char *front;
} fx_t;

static fx_t fx;

/* ------------------------------------------------------------------ helpers */

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *p = strdup(buf);
    assert_non_null(p);
    return p;
}

static void write_at(const char *root, const char *rel, const char *text)
{
    char *p = pathf("%s/%s", root, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    assert_int_equal(base_mkdir_p(p), 0);
    *slash = '/';
    tu_write_file(p, text, strlen(text));
    free(p);
}

static bool exists_at(const char *root, const char *rel)
{
    char *p = pathf("%s/%s", root, rel);
    struct stat st;
    bool e = lstat(p, &st) == 0;
    free(p);
    return e;
}

static char *read_at(const char *root, const char *rel)
{
    char *p = pathf("%s/%s", root, rel);
    char *data = NULL;
    size_t n;
    int rc = base_read_file(p, 1 << 20, &data, &n);
    free(p);
    return rc ? NULL : data;
}

static size_t count_entries(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "find '%s' | wc -l", dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = 0;
    assert_int_equal(fscanf(f, "%zu", &n), 1);
    pclose(f);
    return n;
}

typedef struct {
    http_req_t req;
    http_res_t res;
    json_t *json; /* parsed body when JSON */
} call_t;

/* Runs h on a request. p0/p1: the router's decoded captures (NULL = none). */
static void call(call_t *c, handler_fn h, const char *method, const char *path, const char *query,
                 const char *p0, const char *p1, const char *body)
{
    memset(c, 0, sizeof *c);
    c->req.method = method;
    /* What the router gives every request under --no-auth: admin "local" (user/local). */
    snprintf(c->req.principal.user, sizeof c->req.principal.user, "local");
    c->req.principal.role = AUTH_ROLE_ADMIN;
    c->req.principal.scopes = auth_role_scopes(AUTH_ROLE_ADMIN);
    c->req.principal.via = AUTH_VIA_NOAUTH;
    c->req.path = strdup(path);
    c->req.query = strdup(query ? query : "");
    if (body)
        assert_int_equal(base_buf_append(&c->req.body, body, strlen(body)), 0);
    if (p0)
        c->req.params[c->req.n_params++] = strdup(p0);
    if (p1)
        c->req.params[c->req.n_params++] = strdup(p1);
    h(&fx.s, &c->req, &c->res);
    assert_int_not_equal(c->res.status, 0);
    /* Raw user files are served as application/json too and need not parse. */
    if (c->res.content_type && strncmp(c->res.content_type, "application/json", 16) == 0) {
        char err[128];
        if (json_parse(c->res.body.data ? c->res.body.data : "", c->res.body.len, &c->json, err, sizeof err))
            c->json = NULL;
    }
}

static void call_free(call_t *c)
{
    free(c->req.path);
    free(c->req.query);
    base_buf_free(&c->req.body);
    for (size_t i = 0; i < c->req.n_params; i++)
        free(c->req.params[i]);
    base_buf_free(&c->res.headers);
    base_buf_free(&c->res.body);
    json_free(c->json);
}

static bool has_header(const call_t *c, const char *line)
{
    return c->res.headers.data && strstr(c->res.headers.data, line) != NULL;
}

/* Compact JSON of the response body, for exact comparisons. */
static char *dump(const call_t *c)
{
    assert_non_null(c->json);
    char *s = json_dump(c->json, JSON_COMPACT);
    assert_non_null(s);
    return s;
}

static void assert_body(const call_t *c, const char *expected_compact)
{
    char *s = dump(c);
    if (strcmp(s, expected_compact) != 0)
        fail_msg("body %s\n   expected %s", s, expected_compact);
    free(s);
}

static void assert_error(const call_t *c, int status)
{
    if (c->res.status != status)
        fail_msg("status %d, expected %d (body %s)", c->res.status, status,
                 c->res.body.data ? c->res.body.data : "");
    assert_non_null(c->json);
    const json_t *e = json_object_get(c->json, "error");
    assert_non_null(e);
    assert_non_null(json_str(json_object_get(e, "message")));
}

/* Runs a request expecting a JSON error with status. */
static void expect_error(handler_fn h, const char *method, const char *query, const char *p0, const char *p1,
                         const char *body, int status)
{
    call_t c;
    call(&c, h, method, "/x", query, p0, p1, body);
    assert_error(&c, status);
    call_free(&c);
}

static void expect_body(handler_fn h, const char *method, const char *query, const char *p0, const char *p1,
                        const char *body, int status, const char *expected)
{
    call_t c;
    call(&c, h, method, "/x", query, p0, p1, body);
    if (c.res.status != status)
        fail_msg("status %d, expected %d (body %s)", c.res.status, status,
                 c.res.body.data ? c.res.body.data : "");
    assert_body(&c, expected);
    call_free(&c);
}

/* ------------------------------------------------------------------ fixture */

static int setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    fx.base = tu_fresh_dir("base");
    fx.outside = tu_fresh_dir("outside");
    fx.front = tu_fresh_dir("front");
    write_at(fx.outside, "secret.txt", "secret");
    if (srv_env_open(&fx.s.env, fx.base))
        return -1;
    if (node_registry_new(&fx.s.reg) || node_registry_add_builtins(fx.s.reg))
        return -1;
    fx.s.cfg.max_upload_mb = 100;
    return 0;
}

static int teardown(void **state)
{
    node_registry_free(fx.s.reg);
    srv_env_close(&fx.s.env);
    free(fx.base);
    free(fx.outside);
    free(fx.front);
    return 0;
}

/* ------------------------------------------------------------------ system routes */

static void test_object_info(void **state)
{
    call_t c;
    call(&c, srv_h_object_info, "GET", "/object_info", NULL, NULL, NULL, NULL);
    assert_int_equal(c.res.status, 200);
    const json_t *save = json_object_get(c.json, "SaveImage");
    assert_non_null(save);
    const json_t *on = json_object_get(save, "output_node");
    assert_true(on && on->type == JSON_BOOL && on->u.b);
    const json_t *req = json_object_get(json_object_get(save, "input_order"), "required");
    assert_int_equal(json_len(req), 2);
    assert_string_equal(json_str(json_at(req, 0)), "images");
    assert_string_equal(json_str(json_at(req, 1)), "filename_prefix");
    assert_non_null(json_object_get(c.json, "LoadImage"));
    assert_int_equal(json_len(c.json), node_registry_count(fx.s.reg));
    call_free(&c);

    call(&c, srv_h_object_info_one, "GET", "/object_info/SaveImage", NULL, "SaveImage", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_int_equal(json_len(c.json), 1);
    assert_string_equal(json_key_at(c.json, 0), "SaveImage");
    assert_string_equal(json_str(json_object_get(json_at(c.json, 0), "name")), "SaveImage");
    call_free(&c);

    expect_body(srv_h_object_info_one, "GET", NULL, "NoSuchNode", NULL, NULL, 200, "{}");
}

static void test_system_stats(void **state)
{
    call_t c;
    call(&c, srv_h_system_stats, "GET", "/system_stats", NULL, NULL, NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_int_equal(json_len(c.json), 3); /* system, devices and weft's models */
    const json_t *models = json_object_get(c.json, "models");
    assert_int_equal(json_len(models), 3);
    assert_non_null(json_object_get(models, "loaded"));
    assert_true(json_object_get(models, "budget")->u.num.d > 0);
    const json_t *sys = json_object_get(c.json, "system");
    static const char *const keys[] = {"os",
                                       "ram_total",
                                       "ram_free",
                                       "comfyui_version",
                                       "weft_version",
                                       "required_frontend_version",
                                       "python_version",
                                       "pytorch_version",
                                       "embedded_python",
                                       "argv"};
    assert_int_equal(json_len(sys), 10);
    for (size_t i = 0; i < 10; i++)
        assert_string_equal(json_key_at(sys, i), keys[i]);
    assert_string_equal(json_str(json_object_get(sys, "os")), "posix");
    assert_string_equal(json_str(json_object_get(sys, "comfyui_version")), "0.3.64");
    assert_string_equal(json_str(json_object_get(sys, "weft_version")), "0.1.0");
    assert_string_equal(json_str(json_object_get(sys, "pytorch_version")), ts_backend_name());
    assert_int_equal(json_object_get(sys, "embedded_python")->type, JSON_BOOL);
    assert_false(json_object_get(sys, "embedded_python")->u.b);
    uint64_t total = 0, avail = 0;
    assert_true(json_get_u64(json_object_get(sys, "ram_total"), &total));
    assert_true(json_get_u64(json_object_get(sys, "ram_free"), &avail));
    assert_true(total > 0);
    assert_true(avail > 0 && avail <= total);
    const json_t *argv = json_object_get(sys, "argv");
    assert_int_equal(json_len(argv), 2);
    assert_string_equal(json_str(json_at(argv, 0)), "weft");

    const json_t *devs = json_object_get(c.json, "devices");
    assert_int_equal(json_len(devs), 1);
    const json_t *d = json_at(devs, 0);
    assert_string_equal(json_str(json_object_get(d, "name")), "cpu");
    assert_string_equal(json_str(json_object_get(d, "type")), "cpu");
    assert_int_equal(json_object_get(d, "index")->type, JSON_NULL);
    uint64_t vt = 0, tv = 1;
    assert_true(json_get_u64(json_object_get(d, "vram_total"), &vt));
    assert_true(vt == total);
    assert_true(json_get_u64(json_object_get(d, "torch_vram_free"), &tv));
    assert_true(tv == 0);
    assert_non_null(json_object_get(d, "vram_free"));
    assert_non_null(json_object_get(d, "torch_vram_total"));
    call_free(&c);
}

static void test_features_health_models(void **state)
{
    expect_body(srv_h_features, "GET", NULL, NULL, NULL, NULL, 200,
                "{\"supports_preview_metadata\":true,\"max_upload_size\":104857600}");
    expect_body(srv_h_health, "GET", NULL, NULL, NULL, NULL, 200, "{\"status\":\"ok\"}");
    expect_body(srv_h_models, "GET", NULL, NULL, NULL, NULL, 200,
                "[\"checkpoints\",\"configs\",\"loras\",\"vae\",\"text_encoders\",\"diffusion_models\","
                "\"clip_vision\",\"style_models\",\"embeddings\",\"diffusers\",\"vae_approx\",\"controlnet\","
                "\"gligen\",\"upscale_models\",\"hypernetworks\",\"photomaker\",\"classifiers\","
                "\"model_patches\",\"audio_encoders\"]");
}

static void test_models_folder(void **state)
{
    const char *m = fx.s.env.models_dir;
    write_at(m, "loras/b.safetensors", "x");
    write_at(m, "loras/a.PT", "x");
    write_at(m, "loras/sub/c.ckpt", "x");
    write_at(m, "loras/notes.txt", "x");
    write_at(m, "loras/.hidden.safetensors", "x");
    write_at(m, "configs/v1.yaml", "x");
    write_at(m, "configs/w.pt", "x");
    write_at(m, "classifiers/labels.txt", "x");
    write_at(m, "classifiers/net.safetensors", "x");
    expect_body(srv_h_models_folder, "GET", NULL, "loras", NULL, NULL, 200,
                "[\"a.PT\",\"b.safetensors\",\"sub/c.ckpt\"]");
    expect_body(srv_h_models_folder, "GET", NULL, "configs", NULL, NULL, 200, "[\"v1.yaml\"]");
    expect_body(srv_h_models_folder, "GET", NULL, "classifiers", NULL, NULL, 200,
                "[\"labels.txt\",\"net.safetensors\"]");
    expect_body(srv_h_models_folder, "GET", NULL, "vae_approx", NULL, NULL, 200, "[]"); /* no folder yet */
    expect_error(srv_h_models_folder, "GET", NULL, "clip", NULL, NULL, 404);
    expect_error(srv_h_models_folder, "GET", NULL, "../loras", NULL, NULL, 404);
    expect_error(srv_h_models_folder, "GET", NULL, NULL, NULL, NULL, 404);
}

static void test_embeddings_extensions(void **state)
{
    expect_body(srv_h_embeddings, "GET", NULL, NULL, NULL, NULL, 200, "[]");
    write_at(fx.s.env.models_dir, "embeddings/easy.pt", "x");
    write_at(fx.s.env.models_dir, "embeddings/sub/neg.v2.safetensors", "x");
    write_at(fx.s.env.models_dir, "embeddings/readme.md", "x");
    expect_body(srv_h_embeddings, "GET", NULL, NULL, NULL, NULL, 200, "[\"easy\",\"sub/neg.v2\"]");

    fx.s.cfg.frontend_dir = NULL;
    expect_body(srv_h_extensions, "GET", NULL, NULL, NULL, NULL, 200, "[]");
    char *front = tu_fresh_dir("ext_front");
    fx.s.cfg.frontend_dir = front;
    expect_body(srv_h_extensions, "GET", NULL, NULL, NULL, NULL, 200, "[]"); /* no extensions folder */
    write_at(front, "extensions/core/a.js", "x");
    write_at(front, "extensions/b.js", "x");
    write_at(front, "extensions/c.css", "x");
    write_at(front, "other.js", "x");
    expect_body(srv_h_extensions, "GET", NULL, NULL, NULL, NULL, 200,
                "[\"/extensions/b.js\",\"/extensions/core/a.js\"]");
    fx.s.cfg.frontend_dir = NULL;
    free(front);
}

/* ------------------------------------------------------------------ userdata */

/* GET /v2/userdata with query; checks names, paths and types in order. */
static void assert_v2(const char *query, const char *const *names, const char *const *paths, size_t n_dirs,
                      size_t n)
{
    call_t c;
    call(&c, srv_h_userdata_v2, "GET", "/x", query, NULL, NULL, NULL);
    if (c.res.status != 200)
        fail_msg("status %d (%s)", c.res.status, c.res.body.data ? c.res.body.data : "");
    if (json_len(c.json) != n) {
        char *d = dump(&c);
        fail_msg("%zu entries, expected %zu: %s", json_len(c.json), n, d);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_at(c.json, i);
        assert_string_equal(json_str(json_object_get(e, "name")), names[i]);
        assert_string_equal(json_str(json_object_get(e, "path")), paths[i]);
        assert_string_equal(json_str(json_object_get(e, "type")), i < n_dirs ? "directory" : "file");
        assert_int_equal(json_len(e), i < n_dirs ? 3 : 5);
        if (i >= n_dirs) {
            int64_t sz = -1;
            assert_true(json_get_i64(json_object_get(e, "size"), &sz));
            assert_true(sz >= 0);
            assert_true(json_object_get(e, "modified")->u.num.d > 1.6e9);
        }
    }
    call_free(&c);
}

static char *user_dir(void)
{
    return pathf("%s/user/local", fx.base);
}

static void test_userdata_fresh_user(void **state)
{
    /* No user folder yet: v2 lists nothing, v1 finds no directory, GET finds no file, and
     * none of these create anything. */
    char *ud = user_dir();
    assert_false(exists_at(ud, ""));
    expect_body(srv_h_userdata_v2, "GET", NULL, NULL, NULL, NULL, 200, "[]");
    expect_error(srv_h_userdata_v2, "GET", "path=workflows", NULL, NULL, NULL, 404);
    expect_error(srv_h_userdata_list, "GET", "dir=workflows", NULL, NULL, NULL, 404);
    expect_error(srv_h_userdata_get, "GET", NULL, "workflows/a.json", NULL, NULL, 404);
    expect_error(srv_h_userdata_delete, "DELETE", NULL, "workflows/a.json", NULL, NULL, 404);
    expect_error(srv_h_userdata_move, "POST", NULL, "a.json", "b.json", NULL, 404);
    assert_false(exists_at(ud, ""));
    free(ud);
}

static void test_userdata_cycle(void **state)
{
    char *ud = user_dir();
    call_t c;

    /* POST: a JSON string answer, parents created, bytes stored as sent. */
    expect_body(srv_h_userdata_post, "POST", NULL, "workflows/a.json", NULL, "{\"a\": 1}", 200,
                "\"workflows/a.json\"");
    char *got = read_at(ud, "workflows/a.json");
    assert_string_equal(got, "{\"a\": 1}");
    free(got);

    call(&c, srv_h_userdata_post, "POST", "/x", "overwrite=true&full_info=true", "workflows/sub/b.json", NULL,
         "bbbb");
    assert_int_equal(c.res.status, 200);
    assert_int_equal(json_len(c.json), 4);
    assert_string_equal(json_key_at(c.json, 0), "path");
    assert_string_equal(json_key_at(c.json, 1), "size");
    assert_string_equal(json_key_at(c.json, 2), "modified");
    assert_string_equal(json_key_at(c.json, 3), "created");
    assert_string_equal(json_str(json_object_get(c.json, "path")), "workflows/sub/b.json");
    int64_t size = 0;
    assert_true(json_get_i64(json_object_get(c.json, "size"), &size));
    assert_int_equal(size, 4);
    const json_t *mod = json_object_get(c.json, "modified");
    assert_true(mod->type == JSON_NUMBER && !mod->u.num.is_int && mod->u.num.d > 1.6e9);
    call_free(&c);

    /* overwrite=false on an existing file: 409, content kept. Anything else overwrites. */
    expect_error(srv_h_userdata_post, "POST", "overwrite=false", "workflows/a.json", NULL, "new", 409);
    got = read_at(ud, "workflows/a.json");
    assert_string_equal(got, "{\"a\": 1}");
    free(got);
    expect_body(srv_h_userdata_post, "POST", "overwrite=FALSE", "workflows/a.json", NULL, "{\"a\": 2}", 200,
                "\"workflows/a.json\"");
    got = read_at(ud, "workflows/a.json");
    assert_string_equal(got, "{\"a\": 2}");
    free(got);
    /* "./" and doubled slashes are tolerated and reported normalised. */
    expect_body(srv_h_userdata_post, "POST", NULL, "./notes//todo.txt", NULL, "todo", 200,
                "\"notes/todo.txt\"");
    expect_body(srv_h_userdata_post, "POST", NULL, "workflows/.hidden.json", NULL, "{}", 200,
                "\"workflows/.hidden.json\"");
    expect_body(srv_h_userdata_post, "POST", NULL, "Readme.txt", NULL, "hi", 200, "\"Readme.txt\"");
    /* An empty body is a valid (empty) file. */
    expect_body(srv_h_userdata_post, "POST", NULL, "empty.json", NULL, NULL, 200, "\"empty.json\"");
    got = read_at(ud, "empty.json");
    assert_string_equal(got, "");
    free(got);
    /* A folder of that name cannot be replaced by a file. */
    expect_error(srv_h_userdata_post, "POST", NULL, "workflows/sub", NULL, "x", 400);
    expect_error(srv_h_userdata_post, "POST", "overwrite=false", "workflows/sub", NULL, "x", 409);

    /* GET: raw bytes, a JSON type for .json, a double-encoded name decoded once more. */
    call(&c, srv_h_userdata_get, "GET", "/x", NULL, "workflows/a.json", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_string_equal(c.res.content_type, "application/json");
    assert_int_equal(c.res.body.len, 8);
    assert_memory_equal(c.res.body.data, "{\"a\": 2}", 8);
    assert_true(has_header(&c, "X-Content-Type-Options: nosniff\r\n"));
    call_free(&c);
    call(&c, srv_h_userdata_get, "GET", "/x", NULL, "workflows%2Fsub%2Fb.json", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_string_equal(c.res.content_type, "application/json");
    assert_memory_equal(c.res.body.data, "bbbb", 4);
    call_free(&c);
    call(&c, srv_h_userdata_get, "GET", "/x", NULL, "notes/todo.txt", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_string_equal(c.res.content_type, "text/plain; charset=utf-8");
    call_free(&c);
    expect_error(srv_h_userdata_get, "GET", NULL, "workflows/none.json", NULL, NULL, 404);
    expect_error(srv_h_userdata_get, "GET", NULL, "workflows", NULL, NULL, 404); /* a folder */

    /* GET /userdata: each flag combination as ComfyUI shapes it; hidden files left out. */
    expect_error(srv_h_userdata_list, "GET", NULL, NULL, NULL, NULL, 400);
    expect_error(srv_h_userdata_list, "GET", "dir=", NULL, NULL, NULL, 400);
    expect_error(srv_h_userdata_list, "GET", "dir=nope", NULL, NULL, NULL, 404);
    expect_body(srv_h_userdata_list, "GET", "dir=workflows", NULL, NULL, NULL, 200, "[\"a.json\"]");
    expect_body(srv_h_userdata_list, "GET", "dir=workflows&recurse=false&split=false", NULL, NULL, NULL, 200,
                "[\"a.json\"]");
    expect_body(srv_h_userdata_list, "GET", "dir=workflows&recurse=True", NULL, NULL, NULL, 200,
                "[\"a.json\",\"sub/b.json\"]");
    expect_body(srv_h_userdata_list, "GET", "dir=workflows&recurse=true&split=true", NULL, NULL, NULL, 200,
                "[[\"a.json\",\"a.json\"],[\"sub/b.json\",\"sub\",\"b.json\"]]");
    expect_body(srv_h_userdata_list, "GET", "dir=workflows&split=true", NULL, NULL, NULL, 200,
                "[[\"a.json\",\"a.json\"]]");
    expect_body(srv_h_userdata_list, "GET", "dir=workflows%2Fsub", NULL, NULL, NULL, 200, "[\"b.json\"]");
    expect_body(srv_h_userdata_list, "GET", "dir=workflows%252Fsub", NULL, NULL, NULL, 200, "[\"b.json\"]");
    expect_body(
        srv_h_userdata_list, "GET", "dir=.&recurse=true", NULL, NULL, NULL, 200,
        "[\"Readme.txt\",\"empty.json\",\"notes/todo.txt\",\"workflows/a.json\",\"workflows/sub/b.json\"]");
    expect_body(srv_h_userdata_list, "GET", "dir=workflows/a.json", NULL, NULL, NULL, 200, "[]");
    for (int split = 0; split < 2; split++) {
        /* full_info wins over split */
        call(&c, srv_h_userdata_list, "GET", "/x",
             split ? "dir=workflows&recurse=true&full_info=true&split=true"
                   : "dir=workflows&recurse=true&full_info=true",
             NULL, NULL, NULL);
        assert_int_equal(c.res.status, 200);
        assert_int_equal(json_len(c.json), 2);
        const json_t *a = json_at(c.json, 0), *b = json_at(c.json, 1);
        assert_int_equal(json_len(a), 4);
        assert_string_equal(json_str(json_object_get(a, "path")), "a.json");
        assert_string_equal(json_str(json_object_get(b, "path")), "sub/b.json");
        assert_true(json_get_i64(json_object_get(a, "size"), &size));
        assert_int_equal(size, 8);
        assert_true(json_object_get(b, "created")->u.num.d > 1.6e9);
        call_free(&c);
    }

    /* GET /v2/userdata: folders first, then by lower-cased name; paths from the user root;
     * files carry size and modified, folders do not; hidden files included (os.walk). */
    static const char *const v2_names[] = {"notes",  "sub",        "workflows",  ".hidden.json", "a.json",
                                           "b.json", "empty.json", "Readme.txt", "todo.txt"};
    static const char *const v2_paths[] = {"notes",
                                           "workflows/sub",
                                           "workflows",
                                           "workflows/.hidden.json",
                                           "workflows/a.json",
                                           "workflows/sub/b.json",
                                           "empty.json",
                                           "Readme.txt",
                                           "notes/todo.txt"};
    assert_v2(NULL, v2_names, v2_paths, 3, 9);
    assert_v2("path=", v2_names, v2_paths, 3, 9);
    assert_v2("path=.", v2_names, v2_paths, 3, 9);
    static const char *const sub_names[] = {"b.json"}, *const sub_paths[] = {"workflows/sub/b.json"};
    assert_v2("path=workflows%2Fsub", sub_names, sub_paths, 0, 1);
    assert_v2("path=workflows%252Fsub", sub_names, sub_paths, 0, 1);
    assert_v2("path=workflows%25252Fsub", sub_names, sub_paths, 0, 1); /* unquoted twice by ComfyUI */
    call(&c, srv_h_userdata_v2, "GET", "/x", "path=workflows/sub", NULL, NULL, NULL);
    int64_t v2size = 0;
    assert_true(json_get_i64(json_object_get(json_at(c.json, 0), "size"), &v2size));
    assert_int_equal(v2size, 4);
    call_free(&c);
    expect_error(srv_h_userdata_v2, "GET", "path=nope", NULL, NULL, NULL, 404);
    expect_error(srv_h_userdata_v2, "GET", "path=workflows/a.json", NULL, NULL, NULL, 400);

    /* move: 404 absent source, 409 existing dest without overwrite, parents created. */
    expect_body(srv_h_userdata_move, "POST", "overwrite=false", "workflows/a.json", "workflows/c.json", NULL,
                200, "\"workflows/c.json\"");
    assert_false(exists_at(ud, "workflows/a.json"));
    got = read_at(ud, "workflows/c.json");
    assert_string_equal(got, "{\"a\": 2}");
    free(got);
    expect_error(srv_h_userdata_move, "POST", NULL, "workflows/a.json", "workflows/d.json", NULL, 404);
    expect_error(srv_h_userdata_move, "POST", "overwrite=false", "workflows/sub/b.json", "workflows/c.json",
                 NULL, 409);
    got = read_at(ud, "workflows/c.json");
    assert_string_equal(got, "{\"a\": 2}");
    free(got);
    assert_true(exists_at(ud, "workflows/sub/b.json"));
    expect_body(srv_h_userdata_move, "POST", "overwrite=true", "workflows%2Fsub%2Fb.json", "workflows/c.json",
                NULL, 200, "\"workflows/c.json\"");
    got = read_at(ud, "workflows/c.json");
    assert_string_equal(got, "bbbb");
    free(got);
    assert_false(exists_at(ud, "workflows/sub/b.json"));
    call(&c, srv_h_userdata_move, "POST", "/x", "full_info=true", "workflows/c.json", "archive/2024/c.json",
         NULL);
    assert_int_equal(c.res.status, 200);
    assert_string_equal(json_str(json_object_get(c.json, "path")), "archive/2024/c.json");
    assert_true(json_get_i64(json_object_get(c.json, "size"), &size));
    assert_int_equal(size, 4);
    call_free(&c);
    assert_true(exists_at(ud, "archive/2024/c.json"));
    expect_error(srv_h_userdata_move, "POST", NULL, "archive/2024/c.json", NULL, NULL, 400); /* no dest */

    /* DELETE: 204 with an empty body, then 404. */
    call(&c, srv_h_userdata_delete, "DELETE", "/x", NULL, "archive/2024/c.json", NULL, NULL);
    assert_int_equal(c.res.status, 204);
    assert_int_equal(c.res.body.len, 0);
    call_free(&c);
    assert_false(exists_at(ud, "archive/2024/c.json"));
    expect_error(srv_h_userdata_delete, "DELETE", NULL, "archive/2024/c.json", NULL, NULL, 404);
    expect_error(srv_h_userdata_delete, "DELETE", NULL, "archive", NULL, NULL, 400); /* a folder */
    assert_true(exists_at(ud, "archive"));
    free(ud);
}

static void test_userdata_traversal(void **state)
{
    char *ud = tu_fresh_dir("base/user/local");
    write_at(ud, "keep.json", "keep");
    /* A folder link and a file link out of the user root. */
    char *link_dir = pathf("%s/evil", ud), *link_file = pathf("%s/link.txt", ud);
    char *secret = pathf("%s/secret.txt", fx.outside);
    assert_int_equal(symlink(fx.outside, link_dir), 0);
    assert_int_equal(symlink(secret, link_file), 0);
    size_t base_before = count_entries(fx.base), outside_before = count_entries(fx.outside);

    /* The router hands over decoded captures; "%2e%2e/x" is what a double-encoded "../x"
     * looks like after it, and gets decoded once more here. */
    static const char *const bad[] = {"../x",
                                      "%2e%2e/x",
                                      "/etc/passwd",
                                      "a\\b",
                                      "x/../../y",
                                      "..",
                                      "%2E%2E%2Fx",
                                      "a%00b",
                                      "evil/secret.txt",
                                      "evil/new.txt",
                                      "link.txt",
                                      "evil",
                                      "%2fetc%2fpasswd",
                                      "workflows/%2e%2e/%2e%2e/z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call_t c;
        call(&c, srv_h_userdata_post, "POST", "/x", NULL, bad[i], NULL, "pwned");
        if (c.res.status != 403 && c.res.status != 400)
            fail_msg("POST %s answered %d", bad[i], c.res.status);
        assert_error(&c, c.res.status);
        call_free(&c);
        call(&c, srv_h_userdata_get, "GET", "/x", NULL, bad[i], NULL, NULL);
        if (c.res.status != 403 && c.res.status != 400)
            fail_msg("GET %s answered %d", bad[i], c.res.status);
        assert_null(strstr(c.res.body.data ? c.res.body.data : "", "secret"));
        call_free(&c);
        call(&c, srv_h_userdata_delete, "DELETE", "/x", NULL, bad[i], NULL, NULL);
        if (c.res.status != 403 && c.res.status != 400)
            fail_msg("DELETE %s answered %d", bad[i], c.res.status);
        call_free(&c);
        call(&c, srv_h_userdata_move, "POST", "/x", NULL, "keep.json", bad[i], NULL);
        if (c.res.status != 403 && c.res.status != 400)
            fail_msg("move to %s answered %d", bad[i], c.res.status);
        call_free(&c);
        call(&c, srv_h_userdata_move, "POST", "/x", NULL, bad[i], "moved.json", NULL);
        if (c.res.status != 403 && c.res.status != 400)
            fail_msg("move from %s answered %d", bad[i], c.res.status);
        call_free(&c);
    }
    expect_error(srv_h_userdata_list, "GET", "dir=evil", NULL, NULL, NULL, 403);
    expect_error(srv_h_userdata_list, "GET", "dir=..", NULL, NULL, NULL, 403);
    expect_error(srv_h_userdata_list, "GET", "dir=%2e%2e", NULL, NULL, NULL, 403);
    expect_error(srv_h_userdata_list, "GET", "dir=%252e%252e", NULL, NULL, NULL, 403);
    expect_error(srv_h_userdata_list, "GET", "dir=/etc", NULL, NULL, NULL, 403);
    expect_error(srv_h_userdata_v2, "GET", "path=evil", NULL, NULL, NULL, 400);
    expect_error(srv_h_userdata_v2, "GET", "path=..", NULL, NULL, NULL, 400);
    expect_error(srv_h_userdata_v2, "GET", "path=%252e%252e", NULL, NULL, NULL, 400);
    expect_error(srv_h_userdata_v2, "GET", "path=/etc", NULL, NULL, NULL, 400);
    /* Listings show neither the links leading out nor what lies behind them. */
    expect_body(srv_h_userdata_list, "GET", "dir=.&recurse=true", NULL, NULL, NULL, 200, "[\"keep.json\"]");
    static const char *const names[] = {"keep.json"}, *const paths[] = {"keep.json"};
    assert_v2(NULL, names, paths, 0, 1);

    assert_int_equal(count_entries(fx.base), base_before);
    assert_int_equal(count_entries(fx.outside), outside_before);
    char *s = read_at(fx.outside, "secret.txt");
    assert_string_equal(s, "secret");
    free(s);
    s = read_at(ud, "keep.json");
    assert_string_equal(s, "keep");
    free(s);
    assert_false(exists_at(fx.base, "x"));
    assert_false(exists_at(fx.base, "user/x"));
    assert_false(exists_at(fx.base, "user/local/moved.json"));

    /* A link that stays inside the root is an ordinary name. */
    char *inner = pathf("%s/inner.json", ud);
    assert_int_equal(symlink("keep.json", inner), 0);
    call_t c;
    call(&c, srv_h_userdata_get, "GET", "/x", NULL, "inner.json", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_memory_equal(c.res.body.data, "keep", 4);
    call_free(&c);

    unlink(inner);
    unlink(link_dir);
    unlink(link_file);
    free(inner);
    free(link_dir);
    free(link_file);
    free(secret);
    free(ud);
}

/* ------------------------------------------------------------------ static files */

static void get_static(call_t *c, const char *method, const char *path)
{
    call(c, srv_h_static, method, path, NULL, NULL, NULL, NULL);
}

static void expect_static(const char *path, const char *ctype, const char *body, bool no_cache)
{
    call_t c;
    get_static(&c, "GET", path);
    if (c.res.status != 200)
        fail_msg("GET %s: %d", path, c.res.status);
    assert_string_equal(c.res.content_type, ctype);
    assert_int_equal(c.res.body.len, strlen(body));
    assert_memory_equal(c.res.body.data, body, strlen(body));
    assert_true(has_header(&c, "X-Content-Type-Options: nosniff\r\n"));
    assert_int_equal(has_header(&c, "Cache-Control: no-cache\r\n"), no_cache);
    call_free(&c);
}

static void expect_static_error(const char *path, int status)
{
    call_t c;
    get_static(&c, "GET", path);
    assert_error(&c, status);
    assert_null(strstr(c.res.body.data, "secret"));
    call_free(&c);
}

static void test_static(void **state)
{
    const char *f = fx.front;
    write_at(f, "index.html", "<html>editor</html>");
    write_at(f, "assets/app.js", "js");
    write_at(f, "assets/app.mjs", "mjs");
    write_at(f, "assets/style.css", "css");
    write_at(f, "assets/app.js.map", "{}");
    write_at(f, "index-en.json", "{}");
    write_at(f, "data.json", "[]");
    write_at(f, "img.png", "png");
    write_at(f, "photo.JPG", "jpg");
    write_at(f, "icon.svg", "svg");
    write_at(f, "pic.webp", "webp");
    write_at(f, "favicon.ico", "ico");
    write_at(f, "mod.wasm", "wasm");
    write_at(f, "robots.txt", "txt");
    write_at(f, "fonts/a b.woff2", "font");
    write_at(f, "blob.xyz", "blob");
    char *leak = pathf("%s/leak.txt", f), *leak_dir = pathf("%s/leakdir", f);
    char *secret = pathf("%s/secret.txt", fx.outside);
    assert_int_equal(symlink(secret, leak), 0);
    assert_int_equal(symlink(fx.outside, leak_dir), 0);

    fx.s.cfg.frontend_dir = f;
    expect_static("/", "text/html; charset=utf-8", "<html>editor</html>", true);
    expect_static("/index.html", "text/html; charset=utf-8", "<html>editor</html>", false);
    expect_static("/assets/app.js", "text/javascript; charset=utf-8", "js", true);
    expect_static("/assets/app.mjs", "text/javascript; charset=utf-8", "mjs", false);
    expect_static("/assets/style.css", "text/css; charset=utf-8", "css", true);
    expect_static("/assets/app.js.map", "application/json", "{}", false);
    expect_static("/index-en.json", "application/json", "{}", true);
    expect_static("/data.json", "application/json", "[]", false);
    expect_static("/img.png", "image/png", "png", false);
    expect_static("/photo.JPG", "image/jpeg", "jpg", false);
    expect_static("/icon.svg", "image/svg+xml", "svg", false);
    expect_static("/pic.webp", "image/webp", "webp", false);
    expect_static("/favicon.ico", "image/x-icon", "ico", false);
    expect_static("/mod.wasm", "application/wasm", "wasm", false);
    expect_static("/robots.txt", "text/plain; charset=utf-8", "txt", false);
    expect_static("/fonts/a%20b.woff2", "font/woff2", "font", false);
    expect_static("/blob.xyz", "application/octet-stream", "blob", false);
    expect_static("//assets/./app.js", "text/javascript; charset=utf-8", "js", true);

    call_t c;
    get_static(&c, "HEAD", "/");
    assert_int_equal(c.res.status, 200);
    assert_string_equal(c.res.content_type, "text/html; charset=utf-8");
    assert_int_equal(c.res.body.len, strlen("<html>editor</html>"));
    call_free(&c);
    get_static(&c, "POST", "/");
    assert_error(&c, 405);
    call_free(&c);

    expect_static_error("/missing.js", 404);
    expect_static_error("/assets", 404);
    expect_static_error("/assets/", 404);
    expect_static_error("/../outside/secret.txt", 403);
    expect_static_error("/%2e%2e/outside/secret.txt", 403);
    expect_static_error("/assets/%2E%2E/%2e%2e/outside/secret.txt", 403);
    expect_static_error("/leak.txt", 403);
    expect_static_error("/leakdir/secret.txt", 403);
    expect_static_error("/assets%5capp.js", 403);
    expect_static_error("/index.html%00.png", 400);
    expect_static_error("/%zz", 400);

    /* A frontend folder without a build: "/" still answers the built-in page. */
    char *empty = tu_fresh_dir("front_empty");
    fx.s.cfg.frontend_dir = empty;
    get_static(&c, "GET", "/");
    assert_int_equal(c.res.status, 200);
    assert_non_null(strstr(c.res.body.data, "weft is running"));
    call_free(&c);
    expect_static_error("/assets/app.js", 404);

    /* No frontend at all. */
    fx.s.cfg.frontend_dir = NULL;
    get_static(&c, "GET", "/");
    assert_int_equal(c.res.status, 200);
    assert_string_equal(c.res.content_type, "text/html; charset=utf-8");
    assert_non_null(strstr(c.res.body.data, "weft is running"));
    assert_non_null(strstr(c.res.body.data, "href=\"/object_info\""));
    assert_non_null(strstr(c.res.body.data, "href=\"/system_stats\""));
    assert_true(has_header(&c, "Cache-Control: no-cache\r\n"));
    call_free(&c);
    expect_static_error("/index.html", 404);
    expect_static_error("/assets/app.js", 404);

    unlink(leak);
    unlink(leak_dir);
    free(leak);
    free(leak_dir);
    free(secret);
    free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_info),
        cmocka_unit_test(test_system_stats),
        cmocka_unit_test(test_features_health_models),
        cmocka_unit_test(test_models_folder),
        cmocka_unit_test(test_embeddings_extensions),
        cmocka_unit_test(test_userdata_fresh_user),
        cmocka_unit_test(test_userdata_cycle),
        cmocka_unit_test(test_userdata_traversal),
        cmocka_unit_test(test_static),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
