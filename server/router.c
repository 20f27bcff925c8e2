/* Method + path -> required scopes -> handler. Every route is served at its path and under
 * /api (ComfyUI registers each twice); path parameters ({name} segments) match one
 * still-encoded segment and reach the handler percent-decoded in req->params.
 *
 * The table below is the single source of truth for which scope each route needs (`weft
 * routes --json` prints it for the role x route test). Handlers do the finer checks (own
 * versus any). Loop thread. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_internal.h"
#include "routes_share.h"
#include "srv_auth.h"

typedef void (*handler_fn)(srv_t *s, http_req_t *req, http_res_t *res);

typedef struct {
    const char *method;
    const char *pattern; /* segments; "{name}" captures one */
    handler_fn fn;
    auth_scopes_t scopes; /* every one of these is needed; 0 = any principal */
    bool is_public;       /* answers without a principal */
} route_t;

static void h_ws(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!s->ws) {
        http_res_error(res, 503, "unavailable", "WebSocket hub not running");
        return;
    }
    ws_handle_upgrade(s->ws, req, res);
}

#define S(name) AUTH_SCOPE(name)
#define AUTHED 0
#define PUBLIC true

static const route_t routes[] = {
    {"GET", "/ws", h_ws, AUTHED, false},
    {"GET", "/prompt", srv_h_prompt_get, S(QUEUE_READ), false},
    {"POST", "/prompt", srv_h_prompt_post, S(PROMPT_SUBMIT), false},
    {"GET", "/queue", srv_h_queue_get, S(QUEUE_READ), false},
    {"POST", "/queue", srv_h_queue_post, S(QUEUE_CANCEL), false},
    {"POST", "/interrupt", srv_h_interrupt, S(QUEUE_CANCEL), false},
    {"POST", "/free", srv_h_free, S(SYSTEM_ADMIN), false},
    {"GET", "/history", srv_h_history_get, S(HISTORY_READ), false},
    {"POST", "/history", srv_h_history_post, S(HISTORY_WRITE), false},
    {"GET", "/history/{prompt_id}", srv_h_history_one, S(HISTORY_READ), false},
    {"GET", "/object_info", srv_h_object_info, S(MODELS_READ), false},
    {"GET", "/object_info/{node_class}", srv_h_object_info_one, S(MODELS_READ), false},
    {"GET", "/system_stats", srv_h_system_stats, S(SYSTEM_READ), false},
    {"GET", "/features", srv_h_features, S(SYSTEM_READ), false},
    {"GET", "/embeddings", srv_h_embeddings, S(MODELS_READ), false},
    {"GET", "/extensions", srv_h_extensions, S(SYSTEM_READ), false},
    {"GET", "/models", srv_h_models, S(MODELS_READ), false},
    {"GET", "/models/{folder}", srv_h_models_folder, S(MODELS_READ), false},
    {"GET", "/health", srv_h_health, AUTHED, PUBLIC},
    {"GET", "/view", srv_h_view, S(OUTPUTS_READ), false},
    {"POST", "/upload/image", srv_h_upload_image, S(UPLOAD), false},
    {"POST", "/upload/mask", srv_h_upload_mask, S(UPLOAD), false},
    {"GET", "/userdata", srv_h_userdata_list, S(WORKFLOWS_READ), false},
    {"GET", "/v2/userdata", srv_h_userdata_v2, S(WORKFLOWS_READ), false},
    {"GET", "/userdata/{file}", srv_h_userdata_get, S(WORKFLOWS_READ), false},
    {"POST", "/userdata/{file}", srv_h_userdata_post, S(WORKFLOWS_WRITE), false},
    {"DELETE", "/userdata/{file}", srv_h_userdata_delete, S(WORKFLOWS_WRITE), false},
    {"POST", "/userdata/{file}/move/{dest}", srv_h_userdata_move, S(WORKFLOWS_WRITE), false},
    /* Workflow sharing and share links (routes_share.c). Links are listed and revoked by
     * their owner (the handlers check); opening one needs only its token. */
    {"POST", "/weft/workflows/share", srv_h_share_workflow, S(WORKFLOWS_SHARE), false},
    {"DELETE", "/weft/workflows/share", srv_h_unshare_workflow, S(WORKFLOWS_SHARE), false},
    {"GET", "/weft/workflows/shared", srv_h_shared_list, S(WORKFLOWS_READ), false},
    {"GET", "/weft/workflows/shared/{owner}/{path}", srv_h_shared_get, S(WORKFLOWS_READ), false},
    {"POST", "/weft/share_links", srv_h_share_link_create, S(WORKFLOWS_SHARE), false},
    {"GET", "/weft/share_links", srv_h_share_link_list, AUTHED, false},
    {"DELETE", "/weft/share_links/{id}", srv_h_share_link_revoke, AUTHED, false},
    {"GET", "/share/{token}", srv_h_share_open, AUTHED, PUBLIC},
    /* Authentication. Own keys need no scope; every user's keys need admin:keys (checked by
     * the handlers, which also serve ?all=true and other users' key ids). */
    {"POST", "/auth/login", srv_h_auth_login, AUTHED, PUBLIC},
    {"POST", "/auth/logout", srv_h_auth_logout, AUTHED, false},
    {"GET", "/auth/me", srv_h_auth_me, AUTHED, false},
    {"GET", "/auth/users", srv_h_auth_users_list, S(ADMIN_USERS), false},
    {"POST", "/auth/users", srv_h_auth_users_add, S(ADMIN_USERS), false},
    {"PATCH", "/auth/users/{name}", srv_h_auth_users_patch, S(ADMIN_USERS), false},
    {"GET", "/auth/keys", srv_h_auth_keys_list, AUTHED, false},
    {"POST", "/auth/keys", srv_h_auth_keys_create, AUTHED, false},
    {"DELETE", "/auth/keys/{id}", srv_h_auth_keys_revoke, AUTHED, false},
    {"GET", "/auth/audit", srv_h_auth_audit, S(SYSTEM_ADMIN), false},
};

#undef S

#define N_ROUTES (sizeof routes / sizeof routes[0])

json_t *srv_routes_json(void)
{
    json_t *arr = json_new_array();
    bool ok = arr != NULL;
    for (size_t i = 0; ok && i < N_ROUTES; i++) {
        json_t *o = json_new_object();
        ok = o && !json_object_set(o, "method", json_new_string(routes[i].method)) &&
             !json_object_set(o, "path", json_new_string(routes[i].pattern)) &&
             !json_object_set(o, "scopes", auth_scopes_json(routes[i].scopes)) &&
             !json_object_set(o, "public", json_new_bool(routes[i].is_public));
        if (!ok) {
            json_free(o);
            break;
        }
        ok = !json_array_push(arr, o);
    }
    /* Everything no route matches is a static file of the editor (the login page): public. */
    json_t *st = ok ? json_new_object() : NULL;
    ok = st && !json_object_set(st, "method", json_new_string("GET")) &&
         !json_object_set(st, "path", json_new_string("/")) &&
         !json_object_set(st, "scopes", json_new_array()) &&
         !json_object_set(st, "public", json_new_bool(true)) &&
         !json_object_set(st, "static", json_new_bool(true));
    if (!ok || json_array_push(arr, st)) {
        if (!ok)
            json_free(st);
        json_free(arr);
        return NULL;
    }
    return arr;
}

/* Matches path against pattern segment by segment; spans of the captured (still encoded)
 * segments go to cap. */
static bool match(const char *pattern, const char *path, const char *cap[4], size_t cap_len[4], size_t *n_cap)
{
    *n_cap = 0;
    const char *p = pattern, *q = path;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return false;
        p++;
        q++;
        const char *pe = strchr(p, '/'), *qe = strchr(q, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p), ql = qe ? (size_t)(qe - q) : strlen(q);
        if (pl >= 2 && *p == '{' && p[pl - 1] == '}') {
            if (!ql || *n_cap == 4)
                return false;
            cap[*n_cap] = q;
            cap_len[(*n_cap)++] = ql;
        } else if (pl != ql || memcmp(p, q, pl)) {
            return false;
        }
        p += pl;
        q += ql;
    }
    return !*p && !*q;
}

/* ------------------------------------------------------------------ origin check */

/* Loopback without a DNS lookup on the loop thread: localhost names and loopback IPs. */
static bool is_loopback(const char *host)
{
    if (!strcasecmp(host, "localhost"))
        return true;
    size_t n = strlen(host);
    if (n > 10 && !strcasecmp(host + n - 10, ".localhost"))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

typedef struct {
    char host[256]; /* lower-cased, IPv6 brackets removed */
    char port[8];   /* "" when none */
} hostport_t;

/* "name[:port]" or "[v6][:port]" (an authority with userinfo dropped). false when malformed. */
static bool split_hostport(const char *s, size_t n, hostport_t *out)
{
    memset(out, 0, sizeof *out);
    const char *at = memchr(s, '@', n);
    while (at) { /* the last '@' ends the userinfo */
        n -= (size_t)(at + 1 - s);
        s = at + 1;
        at = memchr(s, '@', n);
    }
    const char *h = s, *port = NULL;
    size_t hl;
    if (n && *s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        h = s + 1;
        hl = (size_t)(close - h);
        const char *rest = close + 1;
        size_t rl = n - (size_t)(rest - s);
        if (rl) {
            if (*rest != ':')
                return false;
            port = rest + 1;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        hl = colon ? (size_t)(colon - s) : n;
        if (colon)
            port = colon + 1;
    }
    if (hl >= sizeof out->host)
        return false;
    for (size_t i = 0; i < hl; i++)
        out->host[i] = (char)tolower((unsigned char)h[i]);
    if (port) {
        size_t pl = n - (size_t)(port - s);
        if (!pl || pl >= sizeof out->port)
            return false;
        for (size_t i = 0; i < pl; i++)
            if (!isdigit((unsigned char)port[i]))
                return false;
        memcpy(out->port, port, pl);
    }
    return true;
}

/* ComfyUI's origin-only guard against cross-site requests to a local server: when the Host
 * is a loopback name, the Origin's host (and port, when both carry one) must match it. */
static bool origin_allowed(const http_req_t *req, bool trust_proxy)
{
    const char *host = http_req_header(req, "host"), *origin = http_req_header(req, "origin");
    /* Behind a trusted proxy on the same machine, Host is the proxy's loopback hop; the host
     * the browser asked for is the forwarded one. */
    char fwd[256];
    const char *xfh = trust_proxy ? http_req_header(req, "x-forwarded-host") : NULL;
    if (xfh) {
        size_t n = strcspn(xfh, ",");
        while (n && (xfh[n - 1] == ' ' || xfh[n - 1] == '\t'))
            n--;
        if (n && n < sizeof fwd) {
            memcpy(fwd, xfh, n);
            fwd[n] = '\0';
            host = fwd;
        }
    }
    if (!host || !origin || !*host)
        return true;
    hostport_t h;
    if (!split_hostport(host, strlen(host), &h) || !is_loopback(h.host))
        return true;
    /* The origin's authority: after "scheme://", up to the next '/', '?' or '#'. */
    const char *auth = strstr(origin, "://");
    if (!auth)
        return true; /* "null" and other opaque origins name no host */
    auth += 3;
    size_t al = strcspn(auth, "/?#");
    if (!al)
        return true; /* no host to compare, as ComfyUI lets it through */
    hostport_t o;
    if (!split_hostport(auth, al, &o))
        return false;
    if (strcmp(h.host, o.host))
        return false;
    return !h.port[0] || !o.port[0] || !strcmp(h.port, o.port);
}

/* The host (and port) an Origin header names; false when it names none ("null", opaque or
 * malformed origins). */
static bool origin_host(const char *origin, hostport_t *o)
{
    const char *auth = strstr(origin, "://");
    if (!auth)
        return false;
    auth += 3;
    size_t al = strcspn(auth, "/?#");
    return al && split_hostport(auth, al, o);
}

bool srv__origin_same_host(const http_req_t *req, bool trust_proxy)
{
    const char *origin = http_req_header(req, "origin");
    if (!origin)
        return true; /* not a browser, or a same-origin GET: nothing cross-site about it */
    /* Browsers say where a request comes from; a cookie request from another site is
     * refused even when its Origin was stripped by a privacy proxy. */
    const char *site = http_req_header(req, "sec-fetch-site");
    if (site && strcasecmp(site, "same-origin") && strcasecmp(site, "none") && strcasecmp(site, "same-site"))
        return false;
    const char *host = NULL;
    if (trust_proxy)
        host = http_req_header(req, "x-forwarded-host");
    if (host) {
        /* A chain of proxies lists hosts; the first is what the browser asked for. */
        size_t n = strcspn(host, ",");
        while (n && (host[n - 1] == ' ' || host[n - 1] == '\t'))
            n--;
        hostport_t h, o;
        if (!split_hostport(host, n, &h) || !origin_host(origin, &o))
            return false;
        return !strcmp(h.host, o.host) && (!h.port[0] || !o.port[0] || !strcmp(h.port, o.port));
    }
    host = http_req_header(req, "host");
    hostport_t h, o;
    if (!host || !*host || !split_hostport(host, strlen(host), &h) || !origin_host(origin, &o))
        return false;
    return !strcmp(h.host, o.host) && (!h.port[0] || !o.port[0] || !strcmp(h.port, o.port));
}

/* ------------------------------------------------------------------ dispatch */

static bool method_is(const http_req_t *req, const char *m)
{
    return req->method && !strcmp(req->method, m);
}

void srv_route(srv_t *s, http_req_t *req, http_res_t *res)
{
    memset(&req->principal, 0, sizeof req->principal);
    if (!origin_allowed(req, s->cfg.trust_proxy)) {
        http_res_error(res, 403, "forbidden", "Origin does not match Host");
        return;
    }
    /* CORS preflights carry no credentials and change nothing. */
    if (method_is(req, "OPTIONS")) {
        http_res_empty(res, 200);
        return;
    }
    const char *path = req->path ? req->path : "/";
    bool api = !strncmp(path, "/api/", 5);
    const char *rel = api ? path + 4 : path;

    const char *cap[4];
    size_t cap_len[4], n_cap = 0;
    const route_t *hit = NULL;
    bool path_known = false;
    char allow[64] = "";
    for (size_t i = 0; i < N_ROUTES; i++) {
        const char *c2[4];
        size_t l2[4], n2;
        if (!match(routes[i].pattern, rel, c2, l2, &n2))
            continue;
        path_known = true;
        if (!strstr(allow, routes[i].method)) {
            if (allow[0])
                strcat(allow, ", ");
            strcat(allow, routes[i].method);
        }
        if (!hit && (method_is(req, routes[i].method) ||
                     (method_is(req, "HEAD") && !strcmp(routes[i].method, "GET")))) {
            hit = &routes[i];
            memcpy(cap, c2, sizeof cap);
            memcpy(cap_len, l2, sizeof cap_len);
            n_cap = n2;
        }
    }
    if (!hit) {
        if (path_known) {
            http_res_header(res, "Allow", "%s", allow);
            http_res_error(res, 405, "method_not_allowed", "Method not allowed for this path");
        } else if (!api && (method_is(req, "GET") || method_is(req, "HEAD"))) {
            /* The editor's files, the login page among them, need no principal. */
            if (s->cfg.no_auth)
                srv__principal_noauth(&req->principal);
            srv_h_static(s, req, res);
        } else {
            http_res_error(res, 404, "not_found", "No such route");
        }
        return;
    }
    if (hit->is_public) {
        if (s->cfg.no_auth)
            srv__principal_noauth(&req->principal);
    } else if (!srv_auth_gate(s, req, res, hit->scopes)) {
        return;
    }
    for (size_t i = 0; i < req->n_params; i++) {
        free(req->params[i]);
        req->params[i] = NULL;
    }
    req->n_params = 0;
    for (size_t i = 0; i < n_cap; i++) {
        char *v = NULL;
        if (http_pct_decode(cap[i], cap_len[i], false, &v)) {
            http_res_error(res, 400, "invalid_path", "Malformed percent-encoding in the path");
            return;
        }
        req->params[req->n_params++] = v;
    }
    hit->fn(s, req, res);
}
