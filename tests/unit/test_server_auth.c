/* Authentication in front of the routes: srv_route with hand-built requests on a server with
 * a real auth store (cheap argon2): public routes, 401/403/429 with their exact types and
 * headers, CSRF and cross-site refusal for cookie sessions, --no-auth's loopback rule, login
 * cookies, keys shown once, revocation, user administration, the audit trail, the route
 * table, first-start bootstrap and the WebSocket owner filter. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app_internal.h"
#include "srv_auth.h"
#include "ws_internal.h"

/* ------------------------------------------------------------------ fixture */

typedef struct {
    srv_t s;
    char *dir;
    char *admin_key; /* an admin key made directly in the store */
    char *viewer_key;
} fx_t;

static fx_t fx;

static void cheap_config(auth_config_t *c)
{
    auth_config_init(c);
    c->argon_t = 1;
    c->argon_m_kib = 64;
    c->argon_p = 1;
}

static int fx_setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    fx.dir = tu_fresh_dir("auth");
    srv_t *s = &fx.s;
    assert_int_equal(srv_config_parse(&s->cfg, 1, (char *[]){"serve", NULL}), 0);
    assert_false(s->cfg.no_auth);
    assert_int_equal(srv_env_open(&s->env, fx.dir), 0);
    assert_int_equal(node_registry_new(&s->reg), 0);
    assert_int_equal(node_registry_add_builtins(s->reg), 0);
    char db[4096];
    snprintf(db, sizeof db, "%s/weft.db", fx.dir);
    assert_int_equal(store_open(db, &s->store), 0);
    assert_int_equal(srv_queue_init(&s->queue), 0);
    auth_config_t ac;
    cheap_config(&ac);
    assert_int_equal(auth_open(db, &ac, &s->auth), 0);
    assert_int_equal(auth_user_add(s->auth, "root", "root-password", AUTH_ROLE_ADMIN, NULL), 0);
    assert_int_equal(auth_user_add(s->auth, "vera", "vera-password", AUTH_ROLE_VIEWER, NULL), 0);
    assert_int_equal(auth_user_add(s->auth, "uma", "uma-password", AUTH_ROLE_USER, NULL), 0);
    char id[32];
    assert_int_equal(auth_key_create(s->auth, "root", 0, 0, "t", &fx.admin_key, id), 0);
    assert_int_equal(auth_key_create(s->auth, "vera", 0, 0, "t", &fx.viewer_key, id), 0);
    return 0;
}

static int fx_teardown(void **state)
{
    srv_t *s = &fx.s;
    auth_close(s->auth);
    srv_queue_destroy(&s->queue);
    store_close(s->store);
    node_registry_free(s->reg);
    srv_env_close(&s->env);
    free(s->cur_prompt_id);
    free(s->cur_client_id);
    free(s->cur_node);
    free(fx.admin_key);
    free(fx.viewer_key);
    free(fx.dir);
    return 0;
}

/* ------------------------------------------------------------------ requests */

#define MAX_HDR 8

typedef struct {
    http_req_t req;
    http_res_t res;
    http_header_t hdr[MAX_HDR];
    char *owned[MAX_HDR]; /* header values built with a format */
    json_t *json;         /* parsed response body, when JSON */
} call_t;

static const char *peer = "127.0.0.1:40000";

/* Builds a request (headers as "name", "value" pairs, NULL-terminated) and routes it. */
static void call(call_t *c, const char *method, const char *target, const char *body, ...)
{
    memset(c, 0, sizeof *c);
    c->req.method = method;
    c->req.target = strdup(target);
    const char *qm = strchr(target, '?');
    c->req.path = qm ? strndup(target, (size_t)(qm - target)) : strdup(target);
    c->req.query = strdup(qm ? qm + 1 : "");
    va_list ap;
    va_start(ap, body);
    const char *name;
    while ((name = va_arg(ap, const char *)) && c->req.n_headers < MAX_HDR) {
        c->hdr[c->req.n_headers].name = (char *)name;
        c->hdr[c->req.n_headers++].value = (char *)va_arg(ap, const char *);
    }
    va_end(ap);
    c->req.headers = c->hdr;
    if (body)
        assert_int_equal(base_buf_puts(&c->req.body, body), 0);
    c->req.keep_alive = true;
    c->req.http_minor = 1;
    snprintf(c->req.peer, sizeof c->req.peer, "%s", peer);
    srv_route(&fx.s, &c->req, &c->res);
    assert_int_not_equal(c->res.status, 0);
    if (c->res.body.len && c->res.content_type && strstr(c->res.content_type, "json"))
        assert_int_equal(json_parse(c->res.body.data, c->res.body.len, &c->json, NULL, 0), 0);
}

static void call_free(call_t *c)
{
    free(c->req.target);
    free(c->req.path);
    free(c->req.query);
    base_buf_free(&c->req.body);
    for (size_t i = 0; i < c->req.n_params; i++)
        free(c->req.params[i]);
    base_buf_free(&c->res.headers);
    base_buf_free(&c->res.body);
    json_free(c->json);
}

static const char *err_type(const call_t *c)
{
    return json_str(json_object_get(json_object_get(c->json, "error"), "type"));
}

static const char *err_msg(const call_t *c)
{
    return json_str(json_object_get(json_object_get(c->json, "error"), "message"));
}

static bool has_header(const call_t *c, const char *line)
{
    return c->res.headers.data && strstr(c->res.headers.data, line);
}

static char *bearer(const char *key)
{
    char *h = malloc(strlen(key) + 8);
    assert_non_null(h);
    sprintf(h, "Bearer %s", key);
    return h;
}

static void expect(call_t *c, int status, const char *type)
{
    if (c->res.status != status)
        fail_msg("%s %s: status %d, expected %d (body %.*s)", c->req.method, c->req.target, c->res.status, status,
                 (int)c->res.body.len, c->res.body.data ? c->res.body.data : "");
    if (type) {
        assert_non_null(err_type(c));
        assert_string_equal(err_type(c), type);
    }
}

/* Routes a request with a key and expects status (and error type). */
static void with_key(const char *key, const char *method, const char *target, const char *body, int status,
                     const char *type)
{
    char *h = bearer(key);
    call_t c;
    call(&c, method, target, body, "authorization", h, NULL);
    expect(&c, status, type);
    call_free(&c);
    free(h);
}

/* Extracts "weft_session=<v>" from the Set-Cookie header of a login answer. */
static char *session_cookie(const call_t *c)
{
    const char *p = strstr(c->res.headers.data ? c->res.headers.data : "", "Set-Cookie: weft_session=");
    assert_non_null(p);
    p += strlen("Set-Cookie: ");
    size_t n = strcspn(p, ";\r");
    return strndup(p, n);
}

typedef struct {
    char *cookie; /* "weft_session=..." */
    char *csrf;
} session_t;

static void login(const char *user, const char *pw, session_t *out)
{
    char body[256];
    snprintf(body, sizeof body, "{\"username\": \"%s\", \"password\": \"%s\"}", user, pw);
    call_t c;
    call(&c, "POST", "/auth/login", body, NULL);
    expect(&c, 200, NULL);
    out->cookie = session_cookie(&c);
    const char *csrf = json_str(json_object_get(c.json, "csrf_token"));
    assert_non_null(csrf);
    out->csrf = strdup(csrf);
    call_free(&c);
}

static void session_free(session_t *s)
{
    free(s->cookie);
    free(s->csrf);
}

static bool audit_has(const char *action, const char *target)
{
    json_t *l = auth_audit_list(fx.s.auth, 1000, 0);
    bool hit = false;
    for (size_t i = 0; i < json_len(l) && !hit; i++) {
        const json_t *e = json_at(l, i);
        const char *a = json_str(json_object_get(e, "action")), *t = json_str(json_object_get(e, "target"));
        hit = a && !strcmp(a, action) && (!target || (t && !strcmp(t, target)));
    }
    json_free(l);
    return hit;
}

/* ------------------------------------------------------------------ tests */

static void test_public_and_required(void **state)
{
    call_t c;
    call(&c, "GET", "/health", NULL, NULL);
    expect(&c, 200, NULL);
    assert_int_equal(c.req.principal.via, AUTH_VIA_NONE);
    call_free(&c);
    call(&c, "GET", "/api/health", NULL, NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    /* Static files (the login page) need nothing. */
    call(&c, "GET", "/", NULL, NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    /* Login is reachable without a principal (and refuses bad passwords). */
    call(&c, "POST", "/auth/login", "{\"username\":\"root\",\"password\":\"wrong-password\"}", NULL);
    expect(&c, 401, "invalid_credentials");
    call_free(&c);

    static const char *const protected_[][2] = {
        {"GET", "/queue"},       {"GET", "/api/prompt"},  {"POST", "/prompt"},      {"GET", "/history"},
        {"GET", "/object_info"}, {"GET", "/system_stats"}, {"GET", "/view?filename=a.png"},
        {"POST", "/upload/image"}, {"GET", "/userdata?dir=workflows"}, {"GET", "/ws"},
        {"GET", "/auth/me"},     {"GET", "/auth/keys"},   {"DELETE", "/auth/keys/abc"}, {"POST", "/free"},
        {"PATCH", "/api/auth/users/root"},
    };
    for (size_t i = 0; i < sizeof protected_ / sizeof protected_[0]; i++) {
        call(&c, protected_[i][0], protected_[i][1], "{}", NULL);
        expect(&c, 401, "auth_required");
        assert_true(has_header(&c, "WWW-Authenticate: Bearer realm=\"weft\"\r\n"));
        call_free(&c);
    }
    /* Unknown routes stay 404 and wrong methods 405. */
    call(&c, "GET", "/api/nope", NULL, NULL);
    expect(&c, 404, "not_found");
    call_free(&c);
    call(&c, "PUT", "/auth/keys", NULL, NULL);
    expect(&c, 405, "method_not_allowed");
    assert_true(has_header(&c, "Allow: GET, POST\r\n"));
    call_free(&c);
}

static void test_bad_credentials(void **state)
{
    call_t c;
    const char *bad[] = {"Bearer weft_nope_nope", "Bearer ", "Basic cm9vdDpyb290", "Bearer x y",
                         "bearer weft_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        peer = i % 2 ? "10.1.0.1:1" : "10.1.0.2:1"; /* stay under the failure throttle */
        call(&c, "GET", "/queue", NULL, "authorization", bad[i], NULL);
        expect(&c, 401, "invalid_credentials");
        assert_true(has_header(&c, "WWW-Authenticate: Bearer realm=\"weft\""));
        /* Nothing of the credential comes back. */
        assert_null(strstr(c.res.body.data, "weft_nope"));
        call_free(&c);
    }
    peer = "10.1.0.3:1";
    /* A stale cookie is refused and cleared. */
    call(&c, "GET", "/queue", NULL, "cookie", "theme=dark; weft_session=stale-token", NULL);
    expect(&c, 401, "invalid_credentials");
    assert_true(has_header(&c, "Set-Cookie: weft_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0\r\n"));
    call_free(&c);
    /* Keys in the query string are never accepted. */
    char target[512];
    snprintf(target, sizeof target, "/queue?token=%s&key=%s", fx.admin_key, fx.admin_key);
    call(&c, "GET", target, NULL, NULL);
    expect(&c, 401, "auth_required");
    call_free(&c);
    /* A valid key works; the principal reaches the handler. */
    char *h = bearer(fx.admin_key);
    call(&c, "GET", "/api/queue", NULL, "authorization", h, NULL);
    expect(&c, 200, NULL);
    assert_int_equal(c.req.principal.via, AUTH_VIA_KEY);
    assert_string_equal(c.req.principal.user, "root");
    call_free(&c);
    free(h);
    peer = "127.0.0.1:40000";
}

static void test_scopes(void **state)
{
    with_key(fx.viewer_key, "GET", "/queue", NULL, 200, NULL);
    with_key(fx.viewer_key, "GET", "/history", NULL, 200, NULL);
    call_t c;
    char *h = bearer(fx.viewer_key);
    call(&c, "POST", "/prompt", "{}", "authorization", h, NULL);
    expect(&c, 403, "forbidden");
    assert_non_null(strstr(err_msg(&c), "'prompt:submit'"));
    call_free(&c);
    call(&c, "POST", "/api/free", "{}", "authorization", h, NULL);
    expect(&c, 403, "forbidden");
    assert_non_null(strstr(err_msg(&c), "'system:admin'"));
    call_free(&c);
    call(&c, "GET", "/auth/users", NULL, "authorization", h, NULL);
    expect(&c, 403, "forbidden");
    assert_non_null(strstr(err_msg(&c), "'admin:users'"));
    call_free(&c);
    call(&c, "GET", "/auth/audit", NULL, "authorization", h, NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    /* Every viewer may see who it is. */
    call(&c, "GET", "/auth/me", NULL, "authorization", h, NULL);
    expect(&c, 200, NULL);
    assert_string_equal(json_str(json_object_get(c.json, "user")), "vera");
    assert_string_equal(json_str(json_object_get(c.json, "role")), "viewer");
    assert_string_equal(json_str(json_object_get(c.json, "via")), "key");
    call_free(&c);
    free(h);

    /* A key narrower than its role: only queue:read. */
    char *narrow = NULL, id[32];
    assert_int_equal(auth_key_create(fx.s.auth, "uma", AUTH_SCOPE(QUEUE_READ), 0, "n", &narrow, id), 0);
    with_key(narrow, "GET", "/queue", NULL, 200, NULL);
    with_key(narrow, "GET", "/history", NULL, 403, "forbidden");
    with_key(narrow, "POST", "/prompt", "{}", 403, "forbidden");
    /* ... and it cannot mint a wider key. */
    with_key(narrow, "POST", "/auth/keys", "{\"scopes\":[\"history:read\"]}", 403, "forbidden");
    free(narrow);
    with_key(fx.admin_key, "GET", "/auth/users", NULL, 200, NULL);
}

static void test_csrf_and_origin(void **state)
{
    call_t c;
    call(&c, "POST", "/auth/login", "{\"username\":\"uma\",\"password\":\"uma-password\"}", NULL);
    expect(&c, 200, NULL);
    char expect_cookie[160];
    auth_config_t ac;
    auth_config_init(&ac);
    snprintf(expect_cookie, sizeof expect_cookie, "; HttpOnly; SameSite=Strict; Path=/; Max-Age=%u\r\n",
             ac.session_ttl_s);
    assert_true(has_header(&c, expect_cookie));
    assert_false(has_header(&c, "Secure"));
    assert_string_equal(json_str(json_object_get(c.json, "user")), "uma");
    assert_string_equal(json_str(json_object_get(c.json, "role")), "user");
    assert_non_null(json_object_get(c.json, "scopes"));
    char *cookie = session_cookie(&c);
    char *csrf = strdup(json_str(json_object_get(c.json, "csrf_token")));
    call_free(&c);
    assert_true(audit_has("login", "uma"));

    call(&c, "GET", "/queue", NULL, "cookie", cookie, NULL);
    expect(&c, 200, NULL);
    assert_int_equal(c.req.principal.via, AUTH_VIA_SESSION);
    call_free(&c);
    call(&c, "GET", "/auth/me", NULL, "cookie", cookie, NULL);
    expect(&c, 200, NULL);
    assert_string_equal(json_str(json_object_get(c.json, "via")), "session");
    call_free(&c);
    /* State changes with a cookie need the CSRF token. */
    call(&c, "POST", "/interrupt", "{}", "cookie", cookie, NULL);
    expect(&c, 403, "csrf");
    call_free(&c);
    call(&c, "POST", "/interrupt", "{}", "cookie", cookie, "x-csrf-token", "not-the-token", NULL);
    expect(&c, 403, "csrf");
    call_free(&c);
    call(&c, "DELETE", "/userdata/a.json", NULL, "cookie", cookie, NULL);
    expect(&c, 403, "csrf");
    call_free(&c);
    call(&c, "POST", "/interrupt", "{}", "cookie", cookie, "x-csrf-token", csrf, NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    /* Bearer requests need none. */
    with_key(fx.admin_key, "POST", "/interrupt", "{}", 200, NULL);

    /* Cross-site: a cookie request whose Origin is another host is refused, whatever the
     * token; no Origin (non-browser) or the same host passes. */
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "weft.example.com", "origin", "https://evil.example",
         NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    call(&c, "POST", "/interrupt", "{}", "cookie", cookie, "x-csrf-token", csrf, "host", "weft.example.com",
         "origin", "https://evil.example", NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "weft.example.com", "origin", "null", NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "weft.example.com", "origin",
         "https://weft.example.com", NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "weft.example.com", "origin",
         "https://weft.example.com", "sec-fetch-site", "cross-site", NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "weft.example.com", NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    /* Behind a trusted proxy the public host is X-Forwarded-Host; untrusted, it is ignored. */
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "127.0.0.1:8188", "x-forwarded-host",
         "weft.example.com", "origin", "https://weft.example.com", NULL);
    expect(&c, 403, "forbidden"); /* the loopback origin check of ComfyUI */
    call_free(&c);
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "10.0.0.5:8188", "x-forwarded-host",
         "weft.example.com", "origin", "https://weft.example.com", NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    fx.s.cfg.trust_proxy = true;
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "10.0.0.5:8188", "x-forwarded-host",
         "weft.example.com", "origin", "https://weft.example.com", NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    /* A proxy on the same machine: Host is its loopback hop. */
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "127.0.0.1:8188", "x-forwarded-host",
         "weft.example.com", "origin", "https://weft.example.com", NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    call(&c, "GET", "/queue", NULL, "cookie", cookie, "host", "127.0.0.1:8188", "x-forwarded-host",
         "weft.example.com", "origin", "https://evil.example", NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    /* Bearer requests from another origin are not cookie-driven: they pass. */
    char *h = bearer(fx.admin_key);
    call(&c, "GET", "/queue", NULL, "authorization", h, "host", "weft.example.com", "origin", "https://evil.example",
         NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    free(h);
    /* Secure cookies when the trusted proxy says the client used https; a form body works. */
    call(&c, "POST", "/api/auth/login", "username=uma&password=uma-password", "content-type",
         "application/x-www-form-urlencoded", "x-forwarded-proto", "https", NULL);
    expect(&c, 200, NULL);
    assert_true(has_header(&c, "; Secure\r\n"));
    call_free(&c);
    fx.s.cfg.trust_proxy = false;

    /* Logout ends the session: the cookie is cleared and no longer works. */
    call(&c, "POST", "/auth/logout", NULL, "cookie", cookie, "x-csrf-token", csrf, NULL);
    expect(&c, 204, NULL);
    assert_true(has_header(&c, "Set-Cookie: weft_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0\r\n"));
    call_free(&c);
    call(&c, "GET", "/queue", NULL, "cookie", cookie, NULL);
    expect(&c, 401, "invalid_credentials");
    call_free(&c);
    free(cookie);
    free(csrf);

    /* Missing fields are a 400, not a login attempt. */
    call(&c, "POST", "/auth/login", "{\"username\":\"uma\"}", NULL);
    expect(&c, 400, "invalid_request");
    call_free(&c);
    call(&c, "POST", "/auth/login", "not json", NULL);
    expect(&c, 400, NULL);
    call_free(&c);
    assert_true(audit_has("login_failed", NULL) == false);
}

static void test_login_failures_throttled(void **state)
{
    peer = "10.9.9.9:5000";
    call_t c;
    int throttled_at = -1;
    for (int i = 0; i < 12 && throttled_at < 0; i++) {
        call(&c, "POST", "/auth/login", "{\"username\":\"uma\",\"password\":\"wrong-password\"}", NULL);
        if (c.res.status == 429) {
            throttled_at = i;
            assert_string_equal(err_type(&c), "rate_limited");
            assert_true(has_header(&c, "Retry-After: "));
        } else {
            expect(&c, 401, "invalid_credentials");
        }
        call_free(&c);
    }
    assert_true(throttled_at >= 3);
    assert_true(audit_has("login_failed", "uma"));
    /* The throttled address cannot even use a good key; another address can. */
    call(&c, "GET", "/queue", NULL, "authorization", "Bearer whatever", NULL);
    expect(&c, 429, "rate_limited");
    call_free(&c);
    call(&c, "POST", "/auth/login", "{\"username\":\"uma\",\"password\":\"uma-password\"}", NULL);
    expect(&c, 429, "rate_limited");
    call_free(&c);
    peer = "10.9.9.10:5000";
    with_key(fx.admin_key, "GET", "/queue", NULL, 200, NULL);
    /* Invalid keys count too. */
    int n401 = 0;
    for (int i = 0; i < 12; i++) {
        call(&c, "GET", "/queue", NULL, "authorization", "Bearer weft_aaaa_bbbb", NULL);
        if (c.res.status == 401)
            n401++;
        else
            expect(&c, 429, "rate_limited");
        call_free(&c);
    }
    assert_true(n401 >= 3 && n401 < 12);
    peer = "127.0.0.1:40000";
}

static void test_no_auth_config(void **state)
{
    srv_config_t c;
    static const char *const refused[] = {"0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "::ffff:10.0.0.1"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *argv[] = {"serve", "--no-auth", "--listen", (char *)refused[i], NULL};
        assert_int_equal(srv_config_parse(&c, 4, argv), 2);
        char *argv2[] = {"serve", "--listen", (char *)refused[i], "--no-auth", NULL};
        assert_int_equal(srv_config_parse(&c, 4, argv2), 2);
        /* Without --no-auth the same address is fine. */
        assert_int_equal(srv_config_parse(&c, 3, argv2), 0);
        assert_false(c.no_auth);
    }
    static const char *const allowed[] = {"127.0.0.1", "127.8.9.10", "::1", "localhost", "::ffff:127.0.0.1"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        char *argv[] = {"serve", "--no-auth", "--listen", (char *)allowed[i], NULL};
        assert_int_equal(srv_config_parse(&c, 4, argv), 0);
        assert_true(c.no_auth);
    }
    char *def[] = {"serve", "--no-auth", "--trust-proxy", NULL};
    assert_int_equal(srv_config_parse(&c, 3, def), 0);
    assert_true(c.no_auth);
    assert_true(c.trust_proxy);
}

static void test_no_auth_principal(void **state)
{
    fx.s.cfg.no_auth = true;
    call_t c;
    call(&c, "GET", "/auth/me", NULL, NULL);
    expect(&c, 200, NULL);
    assert_string_equal(json_str(json_object_get(c.json, "user")), "local");
    assert_string_equal(json_str(json_object_get(c.json, "role")), "admin");
    assert_string_equal(json_str(json_object_get(c.json, "via")), "noauth");
    call_free(&c);
    call(&c, "GET", "/auth/keys?all=true", NULL, NULL);
    expect(&c, 200, NULL);
    call_free(&c);
    /* ComfyUI's loopback origin check still holds. */
    call(&c, "GET", "/queue", NULL, "host", "localhost:8188", "origin", "http://evil.example", NULL);
    expect(&c, 403, "forbidden");
    call_free(&c);
    fx.s.cfg.no_auth = false;
    /* Without an auth store and without --no-auth nothing protected is served. */
    auth_t *a = fx.s.auth;
    fx.s.auth = NULL;
    call(&c, "GET", "/queue", NULL, NULL);
    expect(&c, 503, "unavailable");
    call_free(&c);
    fx.s.auth = a;
}

static void test_keys_lifecycle(void **state)
{
    call_t c;
    char *h = bearer(fx.admin_key);
    call(&c, "POST", "/auth/keys", "{\"label\":\"ci\",\"scopes\":[\"queue:read\",\"history:read\"],\"expires_in_s\":3600}",
         "authorization", h, NULL);
    expect(&c, 201, NULL);
    const char *key = json_str(json_object_get(c.json, "key"));
    assert_non_null(key);
    assert_int_equal(strncmp(key, "weft_", 5), 0);
    char *secret = strdup(key);
    char *id = strdup(json_str(json_object_get(c.json, "id")));
    assert_string_equal(json_str(json_object_get(c.json, "user")), "root");
    assert_string_equal(json_str(json_object_get(c.json, "label")), "ci");
    assert_int_equal(json_len(json_object_get(c.json, "scopes")), 2);
    assert_true(has_header(&c, "Cache-Control: no-store\r\n"));
    int64_t exp = 0;
    assert_true(json_get_i64(json_object_get(c.json, "expires"), &exp));
    assert_true(exp > 0);
    call_free(&c);
    assert_true(audit_has("key_create", id));

    /* Listing never shows a secret. */
    const char *secret_part = secret + 5 + strlen(id) + 1;
    call(&c, "GET", "/auth/keys", NULL, "authorization", h, NULL);
    expect(&c, 200, NULL);
    assert_null(strstr(c.res.body.data, secret_part));
    assert_non_null(strstr(c.res.body.data, id));
    call_free(&c);
    call(&c, "GET", "/auth/keys?all=true", NULL, "authorization", h, NULL);
    expect(&c, 200, NULL);
    assert_null(strstr(c.res.body.data, secret_part));
    assert_non_null(strstr(c.res.body.data, "\"vera\""));
    call_free(&c);

    with_key(secret, "GET", "/queue", NULL, 200, NULL);
    with_key(secret, "POST", "/prompt", "{}", 403, "forbidden");
    /* Other users' keys: listing all needs admin:keys; revoking them answers like unknown. */
    with_key(fx.viewer_key, "GET", "/auth/keys?all=true", NULL, 403, "forbidden");
    with_key(fx.viewer_key, "GET", "/auth/keys?user=root", NULL, 403, "forbidden");
    char target[128];
    snprintf(target, sizeof target, "/auth/keys/%s", id);
    with_key(fx.viewer_key, "DELETE", target, NULL, 404, "not_found");
    with_key(secret, "GET", "/queue", NULL, 200, NULL);
    with_key(fx.viewer_key, "DELETE", "/auth/keys/nonexistent", NULL, 404, "not_found");

    /* Revocation: the next request with the key is refused. */
    call(&c, "DELETE", target, NULL, "authorization", h, NULL);
    expect(&c, 204, NULL);
    call_free(&c);
    with_key(secret, "GET", "/queue", NULL, 401, "invalid_credentials");
    assert_true(audit_has("key_revoke", id));
    call(&c, "DELETE", target, NULL, "authorization", h, NULL);
    expect(&c, 204, NULL); /* revoking twice is harmless */
    call_free(&c);

    /* A user makes keys for itself within its role; for others it needs admin:keys. */
    with_key(fx.viewer_key, "POST", "/auth/keys", "{\"scopes\":[\"prompt:submit\"]}", 400, "invalid_request");
    with_key(fx.viewer_key, "POST", "/auth/keys", "{\"user\":\"uma\"}", 403, "forbidden");
    with_key(fx.viewer_key, "POST", "/auth/keys", "{\"scopes\":[\"no:such\"]}", 400, "invalid_request");
    with_key(fx.viewer_key, "POST", "/auth/keys", "{\"scopes\":\"queue:read\"}", 400, "invalid_request");
    with_key(fx.viewer_key, "POST", "/auth/keys", "{\"expires_in_s\":0}", 400, "invalid_request");
    with_key(fx.viewer_key, "POST", "/auth/keys", "{\"label\":\"mine\"}", 201, NULL);
    with_key(fx.admin_key, "POST", "/auth/keys", "{\"user\":\"nobody\"}", 404, "not_found");
    call(&c, "POST", "/auth/keys", "{\"user\":\"uma\",\"label\":\"for uma\"}", "authorization", h, NULL);
    expect(&c, 201, NULL);
    assert_string_equal(json_str(json_object_get(c.json, "user")), "uma");
    call_free(&c);
    /* The key owner may revoke its own key. */
    char *own = NULL, oid[32];
    assert_int_equal(auth_key_create(fx.s.auth, "vera", 0, 0, "x", &own, oid), 0);
    snprintf(target, sizeof target, "/api/auth/keys/%s", oid);
    with_key(fx.viewer_key, "DELETE", target, NULL, 204, NULL);
    with_key(own, "GET", "/queue", NULL, 401, "invalid_credentials");
    free(own);
    free(h);
    free(secret);
    free(id);
}

static void test_users_admin(void **state)
{
    call_t c;
    char *h = bearer(fx.admin_key);
    call(&c, "POST", "/auth/users", "{\"name\":\"ed\",\"password\":\"ed-password\",\"role\":\"editor\"}",
         "authorization", h, NULL);
    expect(&c, 201, NULL);
    assert_string_equal(json_str(json_object_get(c.json, "name")), "ed");
    assert_string_equal(json_str(json_object_get(c.json, "role")), "editor");
    call_free(&c);
    assert_true(audit_has("user_create", "ed"));
    with_key(fx.admin_key, "POST", "/auth/users", "{\"name\":\"ed\",\"password\":\"ed-password\"}", 409, "conflict");
    with_key(fx.admin_key, "POST", "/auth/users", "{\"name\":\"bad name\",\"password\":\"ed-password\"}", 400,
             "invalid_request");
    with_key(fx.admin_key, "POST", "/auth/users", "{\"name\":\"x\",\"password\":\"short\"}", 400, "invalid_request");
    with_key(fx.admin_key, "POST", "/auth/users", "{\"name\":\"y\",\"password\":\"long-enough\",\"role\":\"god\"}",
             400, "invalid_request");
    with_key(fx.admin_key, "PATCH", "/auth/users/nobody", "{\"disabled\":true}", 404, "not_found");
    with_key(fx.admin_key, "PATCH", "/auth/users/ed", "{}", 400, "invalid_request");
    with_key(fx.admin_key, "PATCH", "/auth/users/ed", "{\"disabled\":\"yes\"}", 400, "invalid_request");

    char *ed_key = NULL, id[32];
    assert_int_equal(auth_key_create(fx.s.auth, "ed", 0, 0, "e", &ed_key, id), 0);
    char *eh = bearer(ed_key);
    call(&c, "POST", "/upload/image", "", "authorization", eh, NULL);
    /* The handler runs (and refuses the empty body); the gate let it through. */
    assert_true(c.res.status != 401 && c.res.status != 403);
    call_free(&c);
    free(eh);
    /* Role change takes effect on the next request. */
    call(&c, "PATCH", "/auth/users/ed", "{\"role\":\"viewer\"}", "authorization", h, NULL);
    expect(&c, 200, NULL);
    assert_string_equal(json_str(json_object_get(c.json, "role")), "viewer");
    call_free(&c);
    assert_true(audit_has("user_role", "ed"));
    eh = bearer(ed_key);
    call(&c, "POST", "/upload/image", "", "authorization", eh, NULL);
    expect(&c, 403, "forbidden");
    assert_non_null(strstr(err_msg(&c), "'upload'"));
    call_free(&c);
    free(eh);
    /* Disabling: the user's keys stop working at once. */
    with_key(fx.admin_key, "PATCH", "/api/auth/users/ed", "{\"disabled\":true}", 200, NULL);
    assert_true(audit_has("user_disable", "ed"));
    with_key(ed_key, "GET", "/queue", NULL, 401, "invalid_credentials");
    with_key(fx.admin_key, "PATCH", "/auth/users/ed", "{\"disabled\":false,\"password\":\"new-ed-password\"}", 200,
             NULL);
    assert_true(audit_has("user_enable", "ed"));
    assert_true(audit_has("user_passwd", "ed"));
    with_key(ed_key, "GET", "/queue", NULL, 200, NULL);
    session_t s;
    login("ed", "new-ed-password", &s);
    session_free(&s);
    /* The last admin can be neither demoted nor disabled. */
    with_key(fx.admin_key, "PATCH", "/auth/users/root", "{\"role\":\"user\"}", 409, "conflict");
    with_key(fx.admin_key, "PATCH", "/auth/users/root", "{\"disabled\":true}", 409, "conflict");
    with_key(fx.admin_key, "GET", "/auth/users", NULL, 200, NULL);
    free(ed_key);
    free(h);
}

static void test_audit_route(void **state)
{
    with_key(fx.admin_key, "POST", "/auth/keys", "{\"label\":\"a\"}", 201, NULL);
    call_t c;
    call(&c, "POST", "/auth/login", "{\"username\":\"root\",\"password\":\"nope-nope\"}", NULL);
    call_free(&c);
    char *h = bearer(fx.admin_key);
    call(&c, "GET", "/auth/audit?limit=1", NULL, "authorization", h, NULL);
    expect(&c, 200, NULL);
    assert_int_equal(json_len(c.json), 1);
    const json_t *e = json_at(c.json, 0);
    assert_string_equal(json_str(json_object_get(e, "action")), "login_failed");
    assert_string_equal(json_str(json_object_get(e, "target")), "root");
    assert_string_equal(json_str(json_object_get(e, "ip")), "127.0.0.1");
    int64_t newest = 0;
    assert_true(json_get_i64(json_object_get(e, "id"), &newest));
    call_free(&c);
    char t[96];
    snprintf(t, sizeof t, "/auth/audit?before=%lld", (long long)newest);
    call(&c, "GET", t, NULL, "authorization", h, NULL);
    expect(&c, 200, NULL);
    e = json_at(c.json, 0);
    assert_string_equal(json_str(json_object_get(e, "action")), "key_create");
    assert_string_equal(json_str(json_object_get(e, "who")), "root");
    call_free(&c);
    with_key(fx.admin_key, "GET", "/auth/audit?limit=0", NULL, 400, "invalid_request");
    with_key(fx.admin_key, "GET", "/auth/audit?limit=abc", NULL, 400, "invalid_request");
    free(h);
}

static void test_routes_json(void **state)
{
    json_t *r = srv_routes_json();
    assert_non_null(r);
    bool saw_prompt = false, saw_health = false, saw_login = false, saw_ws = false;
    for (size_t i = 0; i < json_len(r); i++) {
        const json_t *e = json_at(r, i);
        const char *m = json_str(json_object_get(e, "method")), *p = json_str(json_object_get(e, "path"));
        const json_t *sc = json_object_get(e, "scopes"), *pub = json_object_get(e, "public");
        assert_non_null(m);
        assert_non_null(p);
        assert_non_null(sc);
        assert_non_null(pub);
        char *d = json_dump(sc, JSON_COMPACT);
        if (!strcmp(m, "POST") && !strcmp(p, "/prompt")) {
            saw_prompt = true;
            assert_string_equal(d, "[\"prompt:submit\"]");
            assert_false(srv__truthy(pub));
        }
        if (!strcmp(p, "/health")) {
            saw_health = true;
            assert_true(srv__truthy(pub));
        }
        if (!strcmp(p, "/auth/login")) {
            saw_login = true;
            assert_true(srv__truthy(pub));
        }
        if (!strcmp(p, "/ws")) {
            saw_ws = true;
            assert_string_equal(d, "[]");
            assert_false(srv__truthy(pub));
        }
        if (!strcmp(p, "/auth/audit"))
            assert_string_equal(d, "[\"system:admin\"]");
        if (!strcmp(p, "/share/{token}"))
            assert_true(srv__truthy(pub));
        free(d);
    }
    assert_true(saw_prompt && saw_health && saw_login && saw_ws);
    json_free(r);
}

static char *read_all(FILE *f)
{
    fflush(f);
    rewind(f);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    return buf;
}

static void test_bootstrap(void **state)
{
    char *dir = tu_fresh_dir("bootstrap");
    char db[4096], keyf[4096];
    snprintf(db, sizeof db, "%s/weft.db", dir);
    snprintf(keyf, sizeof keyf, "%s/admin.key", dir);
    auth_config_t ac;
    cheap_config(&ac);
    auth_t *a = NULL;
    assert_int_equal(auth_open(db, &ac, &a), 0);
    FILE *out = tmpfile();
    assert_non_null(out);
    assert_int_equal(srv_auth_bootstrap(a, dir, out), 0);
    char *text = read_all(out);
    char *kp = strstr(text, "(also in ");
    assert_non_null(kp);
    assert_non_null(strstr(text, "weft: created admin user 'admin' and API key (also in "));
    char *key = strstr(kp, "): ") + 3;
    size_t kl = strcspn(key, "\n");
    char *printed = strndup(key, kl);
    assert_non_null(strstr(text, "weft: admin password"));
    fclose(out);
    struct stat st;
    assert_int_equal(lstat(keyf, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    char *data = NULL;
    size_t n = 0;
    assert_int_equal(base_read_file(keyf, 4096, &data, &n), 0);
    assert_int_equal(n, kl + 1);
    assert_memory_equal(data, printed, kl);
    assert_int_equal(data[kl], '\n');
    auth_principal_t p;
    assert_int_equal(auth_verify_key(a, printed, &p), 0);
    assert_string_equal(p.user, "admin");
    assert_int_equal(p.role, AUTH_ROLE_ADMIN);
    assert_int_equal(auth_user_count(a), 1);
    /* The second start does nothing. */
    out = tmpfile();
    assert_int_equal(srv_auth_bootstrap(a, dir, out), 0);
    assert_string_equal(read_all(out), "");
    fclose(out);
    assert_int_equal(auth_user_count(a), 1);
    json_t *l = auth_audit_list(a, 10, 0);
    assert_string_equal(json_str(json_object_get(json_at(l, 0), "action")), "bootstrap");
    json_free(l);
    auth_close(a);
    free(data);
    free(printed);

    /* A planted symlink at admin.key is never followed. */
    char *dir2 = tu_fresh_dir("bootstrap2");
    snprintf(db, sizeof db, "%s/weft.db", dir2);
    char victim[4096], link[4096];
    snprintf(victim, sizeof victim, "%s/victim", dir2);
    snprintf(link, sizeof link, "%s/admin.key", dir2);
    tu_write_file(victim, "keep", 4);
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(auth_open(db, &ac, &a), 0);
    out = tmpfile();
    assert_int_equal(srv_auth_bootstrap(a, dir2, out), 0);
    text = read_all(out);
    assert_null(strstr(text, "(also in"));
    assert_non_null(strstr(text, "weft: created admin user 'admin' and API key: weft_"));
    fclose(out);
    assert_int_equal(base_read_file(victim, 4096, &data, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(data, "keep", 4);
    free(data);
    auth_close(a);
    free(dir);
    free(dir2);
}

static void test_ws_owner_filter(void **state)
{
    ws_sock_t k;
    memset(&k, 0, sizeof k);
    /* No owner: everyone. */
    assert_true(ws__sock_sees(&k, NULL, 0));
    /* A socket without a principal never sees an owned event. */
    assert_false(ws__sock_sees(&k, "uma", 0));
    k.principal.via = AUTH_VIA_KEY;
    snprintf(k.principal.user, sizeof k.principal.user, "vera");
    k.principal.scopes = auth_role_scopes(AUTH_ROLE_VIEWER);
    assert_false(ws__sock_sees(&k, "uma", 0));
    assert_true(ws__sock_sees(&k, "vera", 0));
    assert_false(ws__sock_sees(&k, "uma", AUTH_SCOPE(QUEUE_READ_ANY)));
    k.principal.scopes |= AUTH_SCOPE(QUEUE_READ_ANY);
    assert_true(ws__sock_sees(&k, "uma", AUTH_SCOPE(QUEUE_READ_ANY)));
    assert_false(ws__sock_sees(&k, "uma", 0));
    srv__principal_noauth(&k.principal);
    assert_true(ws__sock_sees(&k, "uma", 0));
}

static void test_client_ip(void **state)
{
    call_t c;
    memset(&c, 0, sizeof c);
    c.req.headers = c.hdr;
    char ip[64];
    snprintf(c.req.peer, sizeof c.req.peer, "[::1]:555");
    srv__client_ip(&fx.s, &c.req, ip);
    assert_string_equal(ip, "::1");
    snprintf(c.req.peer, sizeof c.req.peer, "192.0.2.7:8080");
    c.hdr[0].name = "x-forwarded-for";
    c.hdr[0].value = "6.6.6.6, 198.51.100.9";
    c.req.n_headers = 1;
    srv__client_ip(&fx.s, &c.req, ip);
    assert_string_equal(ip, "192.0.2.7"); /* not trusted */
    fx.s.cfg.trust_proxy = true;
    srv__client_ip(&fx.s, &c.req, ip);
    assert_string_equal(ip, "198.51.100.9"); /* the hop our proxy added, not the client's claim */
    c.hdr[0].value = "garbage";
    srv__client_ip(&fx.s, &c.req, ip);
    assert_string_equal(ip, "192.0.2.7");
    fx.s.cfg.trust_proxy = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_auth_config),
        cmocka_unit_test(test_routes_json),
        cmocka_unit_test(test_bootstrap),
        cmocka_unit_test(test_ws_owner_filter),
        cmocka_unit_test_setup_teardown(test_client_ip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_public_and_required, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_credentials, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_scopes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_csrf_and_origin, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_login_failures_throttled, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_auth_principal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keys_lifecycle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_users_admin, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_audit_route, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
