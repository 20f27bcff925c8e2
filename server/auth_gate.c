/* The authentication step the router runs before every non-public handler: credentials from
 * `Authorization: Bearer <key>`, the WebSocket subprotocol pair "weft.bearer, <key>" or the
 * weft_session cookie; throttles and rate limits; the route's scopes; and for cookie
 * requests the cross-site defences (Origin must name our host, CSRF token on state changes).
 *
 * Credentials never come from the query string (URLs end up in logs and browser history),
 * and no secret is ever logged or echoed in an answer. Loop thread. */
#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_internal.h"
#include "srv_auth.h"

/* Longer than any key or session token we mint: not worth hashing. */
#define GATE_MAX_SECRET 512

/* ------------------------------------------------------------------ small helpers */

const char *srv__via_name(auth_via_t v)
{
    switch (v) {
    case AUTH_VIA_KEY:
        return "key";
    case AUTH_VIA_SESSION:
        return "session";
    case AUTH_VIA_NOAUTH:
        return "noauth";
    default:
        return "none";
    }
}

void srv__principal_noauth(auth_principal_t *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->user, sizeof p->user, "local");
    p->role = AUTH_ROLE_ADMIN;
    p->scopes = auth_role_scopes(AUTH_ROLE_ADMIN);
    p->via = AUTH_VIA_NOAUTH;
}

/* Copies an IP literal of n bytes when it parses as one. */
static bool take_ip(const char *s, size_t n, char out[64])
{
    char tmp[64];
    unsigned char buf[sizeof(struct in6_addr)];
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n && *s == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (!n || n >= sizeof tmp)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET, tmp, buf) != 1 && inet_pton(AF_INET6, tmp, buf) != 1)
        return false;
    memcpy(out, tmp, n + 1);
    return true;
}

void srv__client_ip(const srv_t *s, const http_req_t *req, char out[64])
{
    snprintf(out, 64, "unknown");
    if (s->cfg.trust_proxy) {
        const char *xff = http_req_header(req, "x-forwarded-for");
        if (xff) {
            /* Earlier entries are whatever the client claimed; the last one is the address
             * our proxy saw. */
            const char *last = strrchr(xff, ',');
            last = last ? last + 1 : xff;
            if (take_ip(last, strlen(last), out))
                return;
        }
    }
    const char *p = req->peer;
    size_t n = strlen(p);
    if (n && p[0] == '[') {
        const char *close = strchr(p, ']');
        if (close && take_ip(p + 1, (size_t)(close - p - 1), out))
            return;
    } else {
        const char *colon = strrchr(p, ':');
        if (take_ip(p, colon ? (size_t)(colon - p) : n, out))
            return;
    }
}

char *srv__session_cookie(const http_req_t *req)
{
    const char *c = http_req_header(req, "cookie");
    static const char name[] = SRV_SESSION_COOKIE;
    while (c && *c) {
        while (*c == ' ' || *c == '\t' || *c == ';')
            c++;
        size_t n = strcspn(c, ";");
        const char *eq = memchr(c, '=', n);
        if (eq && (size_t)(eq - c) == sizeof name - 1 && !memcmp(c, name, sizeof name - 1)) {
            const char *v = eq + 1;
            size_t vl = n - (size_t)(v - c);
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v++;
                vl -= 2;
            }
            return vl ? strndup(v, vl) : NULL;
        }
        c += n;
    }
    return NULL;
}

void srv__answer_rate(http_res_t *res, unsigned retry_after_s)
{
    if (retry_after_s == 0)
        retry_after_s = 1;
    http_res_header(res, "Retry-After", "%u", retry_after_s);
    http_res_error(res, 429, "rate_limited", "too many requests; retry later");
}

static bool is_state_changing(const http_req_t *req)
{
    const char *m = req->method ? req->method : "";
    return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH") || !strcmp(m, "DELETE");
}

/* ------------------------------------------------------------------ credentials */

typedef struct {
    char *key;     /* API key (Bearer or WebSocket subprotocol), malloc'ed */
    char *session; /* cookie value, malloc'ed */
    bool present;  /* something that claims to be a credential was sent */
} creds_t;

/* "Bearer <token>" (scheme case-insensitive). */
static void bearer(const char *h, creds_t *c)
{
    if (!h)
        return;
    c->present = true;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "bearer", 6) || (h[6] != ' ' && h[6] != '\t'))
        return; /* another scheme: present but unusable -> invalid */
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    if (n)
        c->key = strndup(h, n);
}

/* Browsers cannot set headers on a WebSocket, but they can offer subprotocols:
 * `new WebSocket(url, ["weft.bearer", key])` sends "weft.bearer, <key>". The key is the
 * entry right after "weft.bearer"; the server answers with "weft.bearer" only. */
static void ws_protocol(const char *h, creds_t *c)
{
    bool next_is_key = false;
    while (h && *h) {
        while (*h == ' ' || *h == '\t' || *h == ',')
            h++;
        size_t n = strcspn(h, ",");
        size_t m = n;
        while (m && (h[m - 1] == ' ' || h[m - 1] == '\t'))
            m--;
        if (next_is_key) {
            c->present = true;
            if (m)
                c->key = strndup(h, m);
            return;
        }
        if (m == sizeof SRV_WS_BEARER_PROTO - 1 && !memcmp(h, SRV_WS_BEARER_PROTO, m)) {
            next_is_key = true;
            c->present = true; /* "weft.bearer" alone is a broken credential, not none */
        }
        h += n;
    }
}

static void creds_free(creds_t *c)
{
    if (c->key)
        OPENSSL_cleanse(c->key, strlen(c->key));
    if (c->session)
        OPENSSL_cleanse(c->session, strlen(c->session));
    free(c->key);
    free(c->session);
}

/* The gate's precedence: a Bearer header wins, then (upgrades only) the subprotocol pair,
 * then the cookie. */
static void creds_get(const http_req_t *req, creds_t *c)
{
    bearer(http_req_header(req, "authorization"), c);
    if (!c->key && !c->present && req->upgrade)
        ws_protocol(http_req_header(req, "sec-websocket-protocol"), c);
    if (!c->key && !c->present) {
        c->session = srv__session_cookie(req);
        c->present = c->session != NULL;
    }
}

char *srv__request_credential(const http_req_t *req)
{
    creds_t c = {0};
    creds_get(req, &c);
    char *out = c.key ? c.key : c.session;
    if (out == c.key)
        c.key = NULL;
    else
        c.session = NULL;
    creds_free(&c);
    return out;
}

/* ------------------------------------------------------------------ answers */

static void answer_required(http_res_t *res)
{
    http_res_header(res, "WWW-Authenticate", "Bearer realm=\"weft\"");
    http_res_error(res, 401, "auth_required",
                   "authentication required: send \"Authorization: Bearer <API key>\" or log in "
                   "with POST /auth/login");
}

static void answer_invalid(http_res_t *res, bool had_cookie)
{
    http_res_header(res, "WWW-Authenticate", "Bearer realm=\"weft\", error=\"invalid_token\"");
    /* A stale cookie would otherwise fail every request the browser makes. */
    if (had_cookie)
        http_res_header(res, "Set-Cookie", "%s=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                        SRV_SESSION_COOKIE);
    http_res_error(res, 401, "invalid_credentials", "invalid credentials");
}

static void answer_forbidden_scope(http_res_t *res, auth_scopes_t need, auth_scopes_t have)
{
    const char *missing = "unknown";
    for (int b = 0; b < AUTH_SCOPE_COUNT; b++) {
        auth_scopes_t bit = (auth_scopes_t)1 << b;
        if ((need & bit) && !(have & bit)) {
            missing = auth_scope_name((auth_scope_bit_t)b);
            break;
        }
    }
    char msg[160];
    snprintf(msg, sizeof msg, "this route needs the scope '%s'", missing);
    http_res_error(res, 403, "forbidden", msg);
}

/* ------------------------------------------------------------------ the gate */

/* Token buckets per client address and per principal. */
static bool rate_ok(srv_t *s, http_res_t *res, const char *kind, const char *id, double now)
{
    char bucket[128];
    unsigned retry = 0;
    snprintf(bucket, sizeof bucket, "%s:%s", kind, id);
    if (auth_rate_allow(s->auth, bucket, now, &retry))
        return true;
    srv__answer_rate(res, retry);
    return false;
}

bool srv_auth_gate(srv_t *s, http_req_t *req, http_res_t *res, auth_scopes_t need)
{
    memset(&req->principal, 0, sizeof req->principal);
    if (s->cfg.no_auth) {
        srv__principal_noauth(&req->principal);
        return true;
    }
    if (!s->auth) { /* never serve a protected route without the means to check it */
        http_res_error(res, 503, "unavailable", "authentication is not available");
        return false;
    }
    char ip[64];
    srv__client_ip(s, req, ip);
    double now = srv__now_ms() / 1000.0;
    unsigned retry = 0;
    /* A throttled address learns nothing, not even whether its next guess is right. */
    if (auth_throttled(s->auth, ip, now, &retry)) {
        srv__answer_rate(res, retry);
        return false;
    }
    if (!rate_ok(s, res, "ip", ip, now))
        return false;

    creds_t c = {0};
    creds_get(req, &c);
    if (!c.present) {
        answer_required(res);
        return false;
    }

    auth_principal_t p;
    memset(&p, 0, sizeof p);
    int rc = BASE_E_AUTH_INVALID;
    if (c.key && strlen(c.key) <= GATE_MAX_SECRET)
        rc = auth_verify_key(s->auth, c.key, &p);
    else if (c.session && strlen(c.session) <= GATE_MAX_SECRET)
        rc = auth_verify_session(s->auth, c.session, &p);
    bool had_cookie = c.session != NULL;
    creds_free(&c);
    if (rc == BASE_E_NOMEM || rc == BASE_E_IO) {
        http_res_error(res, 500, "internal_error", "could not check the credentials");
        return false;
    }
    if (rc) {
        auth_fail_note(s->auth, ip, now);
        answer_invalid(res, had_cookie);
        return false;
    }
    if (p.via == AUTH_VIA_KEY ? !rate_ok(s, res, "key", p.key_id, now) : !rate_ok(s, res, "user", p.user, now))
        return false;

    if (p.via == AUTH_VIA_SESSION) {
        /* SameSite=Strict already keeps the cookie off cross-site requests; these checks
         * hold even for browsers that ignore it. */
        if (!srv__origin_same_host(req, s->cfg.trust_proxy)) {
            http_res_error(res, 403, "forbidden", "cross-site request refused: Origin does not match Host");
            return false;
        }
        if (is_state_changing(req)) {
            const char *tok = http_req_header(req, "x-csrf-token");
            size_t want = strnlen(p.csrf, sizeof p.csrf);
            if (!tok || !want || strlen(tok) != want || CRYPTO_memcmp(tok, p.csrf, want) != 0) {
                http_res_error(res, 403, "csrf",
                               "missing or wrong X-CSRF-Token header (the csrf_token POST /auth/login returned)");
                return false;
            }
        }
    }
    if (!auth_has(&p, need)) {
        answer_forbidden_scope(res, need, p.scopes);
        return false;
    }
    req->principal = p;
    return true;
}
