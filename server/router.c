/* Method + path -> handler. Every route is served at its path and under /api (ComfyUI
 * registers each twice); path parameters match one still-encoded segment and reach the
 * handler percent-decoded in req->params. Loop thread. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_internal.h"

typedef void (*handler_fn)(srv_t *s, http_req_t *req, http_res_t *res);

typedef struct {
    const char *method;
    const char *pattern; /* segments; "*" captures one */
    handler_fn fn;
} route_t;

static void h_ws(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!s->ws) {
        http_res_error(res, 503, "unavailable", "WebSocket hub not running");
        return;
    }
    ws_handle_upgrade(s->ws, req, res);
}

static const route_t routes[] = {
    {"GET", "/ws", h_ws},
    {"GET", "/prompt", srv_h_prompt_get},
    {"POST", "/prompt", srv_h_prompt_post},
    {"GET", "/queue", srv_h_queue_get},
    {"POST", "/queue", srv_h_queue_post},
    {"POST", "/interrupt", srv_h_interrupt},
    {"POST", "/free", srv_h_free},
    {"GET", "/history", srv_h_history_get},
    {"POST", "/history", srv_h_history_post},
    {"GET", "/history/*", srv_h_history_one},
    {"GET", "/object_info", srv_h_object_info},
    {"GET", "/object_info/*", srv_h_object_info_one},
    {"GET", "/system_stats", srv_h_system_stats},
    {"GET", "/features", srv_h_features},
    {"GET", "/embeddings", srv_h_embeddings},
    {"GET", "/extensions", srv_h_extensions},
    {"GET", "/models", srv_h_models},
    {"GET", "/models/*", srv_h_models_folder},
    {"GET", "/health", srv_h_health},
    {"GET", "/view", srv_h_view},
    {"POST", "/upload/image", srv_h_upload_image},
    {"POST", "/upload/mask", srv_h_upload_mask},
    {"GET", "/userdata", srv_h_userdata_list},
    {"GET", "/v2/userdata", srv_h_userdata_v2},
    {"GET", "/userdata/*", srv_h_userdata_get},
    {"POST", "/userdata/*", srv_h_userdata_post},
    {"DELETE", "/userdata/*", srv_h_userdata_delete},
    {"POST", "/userdata/*/move/*", srv_h_userdata_move},
};

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
        if (pl == 1 && *p == '*') {
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
static bool origin_allowed(const http_req_t *req)
{
    const char *host = http_req_header(req, "host"), *origin = http_req_header(req, "origin");
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

/* ------------------------------------------------------------------ dispatch */

static bool method_is(const http_req_t *req, const char *m)
{
    return req->method && !strcmp(req->method, m);
}

void srv_route(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!origin_allowed(req)) {
        http_res_error(res, 403, "forbidden", "Origin does not match Host");
        return;
    }
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
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
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
            srv_h_static(s, req, res);
        } else {
            http_res_error(res, 404, "not_found", "No such route");
        }
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
