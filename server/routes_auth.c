/* The /auth routes (also under /api): browser login and logout, who am I, users (admin),
 * API keys (own, or every user's with admin:keys) and the audit log. Every change is written
 * to the audit log with who, from where, what and on what. A key's secret is in exactly one
 * answer: the one that created it. Loop thread. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_internal.h"
#include "srv_auth.h"

/* Longest key lifetime a request may ask for: ten years. */
#define KEY_MAX_LIFETIME_S (10LL * 366 * 24 * 3600)
#define LABEL_MAX 128
#define AUDIT_DEFAULT_LIMIT 100
#define AUDIT_MAX_LIMIT 1000

/* ------------------------------------------------------------------ helpers */

static bool need_auth(srv_t *s, http_res_t *res)
{
    if (s->auth)
        return true;
    http_res_error(res, 503, "unavailable", "authentication is not available");
    return false;
}

static void audit(srv_t *s, const http_req_t *req, const char *who, const char *action, const char *target,
                  const json_t *detail)
{
    char ip[64];
    srv__client_ip(s, req, ip);
    int rc = auth_audit(s->auth, who, ip, action, target, detail);
    if (rc)
        BASE_LOG(ERROR, "audit: cannot record %s: %s", action, base_strerror(rc));
}

/* What a principal is called in the audit log. */
static const char *who_of(const http_req_t *req)
{
    return req->principal.user[0] ? req->principal.user : NULL;
}

/* User names as auth accepts them; anything else is not echoed into the audit log. */
static bool plausible_name(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (!len || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

static void answer_code(http_res_t *res, int rc, const char *what)
{
    char msg[200];
    switch (rc) {
    case BASE_E_NOENT:
        snprintf(msg, sizeof msg, "%s not found", what);
        http_res_error(res, 404, "not_found", msg);
        break;
    case BASE_E_EXIST:
        snprintf(msg, sizeof msg, "%s already exists", what);
        http_res_error(res, 409, "conflict", msg);
        break;
    case BASE_E_INVAL:
    case BASE_E_RANGE:
        snprintf(msg, sizeof msg, "invalid %s", what);
        http_res_error(res, 400, "invalid_request", msg);
        break;
    default:
        snprintf(msg, sizeof msg, "%s: %s", what, base_strerror(rc));
        http_res_error(res, rc == BASE_E_NOMEM || rc == BASE_E_IO ? 500 : base_err_http_status(rc),
                       rc == BASE_E_NOMEM || rc == BASE_E_IO ? "internal_error" : "invalid_request", msg);
    }
}

/* application/x-www-form-urlencoded into an object of strings (the last duplicate wins). */
static int parse_form(const char *body, size_t n, json_t **out)
{
    json_t *o = json_new_object();
    if (!o)
        return BASE_E_NOMEM;
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && body[e] != '&')
            e++;
        const char *eq = memchr(body + i, '=', e - i);
        size_t kl = eq ? (size_t)(eq - (body + i)) : e - i;
        char *k = NULL, *v = NULL;
        int rc = 0;
        if (kl) {
            rc = http_pct_decode(body + i, kl, true, &k);
            if (!rc)
                rc = eq ? http_pct_decode(eq + 1, (size_t)(body + e - eq - 1), true, &v) : ((v = strdup("")) ? 0 : BASE_E_NOMEM);
            if (!rc)
                rc = json_object_set(o, k, json_new_string(v));
        }
        if (v)
            OPENSSL_cleanse(v, strlen(v));
        free(k);
        free(v);
        if (rc) {
            json_free(o);
            return rc;
        }
        i = e + 1;
    }
    *out = o;
    return 0;
}

/* The body as an object: JSON, or a form for browsers posting the login page. */
static bool body_object(const http_req_t *req, http_res_t *res, json_t **out)
{
    const char *ct = http_req_header(req, "content-type");
    if (ct && !strncasecmp(ct, "application/x-www-form-urlencoded", 33)) {
        int rc = parse_form(req->body.data ? req->body.data : "", req->body.len, out);
        if (rc) {
            http_res_error(res, rc == BASE_E_NOMEM ? 500 : 400, rc == BASE_E_NOMEM ? "internal_error" : "invalid_request",
                           "malformed form body");
            return false;
        }
        return true;
    }
    return srv__body_json(req, res, true, out);
}

static const char *str_field(const json_t *o, const char *k)
{
    return json_str(json_object_get(o, k));
}

static json_t *principal_json(const auth_principal_t *p, bool with_via)
{
    json_t *o = json_new_object();
    if (!o)
        return NULL;
    if (json_object_set(o, "user", json_new_string(p->user)) ||
        json_object_set(o, "role", json_new_string(auth_role_name(p->role))) ||
        json_object_set(o, "scopes", auth_scopes_json(p->scopes)) ||
        (with_via && json_object_set(o, "via", json_new_string(srv__via_name(p->via))))) {
        json_free(o);
        return NULL;
    }
    return o;
}

static void answer_json(http_res_t *res, int status, json_t *body)
{
    if (!body) {
        http_res_error(res, 500, "internal_error", "out of memory");
        return;
    }
    http_res_header(res, "Cache-Control", "no-store");
    http_res_json(res, status, body);
}

/* A user's record from the list (new object), NULL when there is no such user. */
static json_t *user_record(auth_t *a, const char *name)
{
    json_t *all = auth_user_list(a), *hit = NULL;
    for (size_t i = 0; i < json_len(all); i++) {
        const json_t *u = json_at(all, i);
        const char *n = str_field(u, "name");
        if (n && !strcmp(n, name)) {
            hit = json_clone(u);
            break;
        }
    }
    json_free(all);
    return hit;
}

static bool truthy_disabled(const json_t *u)
{
    return srv__truthy(json_object_get(u, "disabled"));
}

/* Enabled admins other than `name`. */
static size_t other_active_admins(auth_t *a, const char *name)
{
    json_t *all = auth_user_list(a);
    size_t n = 0;
    for (size_t i = 0; i < json_len(all); i++) {
        const json_t *u = json_at(all, i);
        const char *un = str_field(u, "name"), *role = str_field(u, "role");
        if (un && strcmp(un, name) && role && !strcmp(role, "admin") && !truthy_disabled(u))
            n++;
    }
    json_free(all);
    return n;
}

static bool cookie_secure(const srv_t *s, const http_req_t *req)
{
    if (!s->cfg.trust_proxy)
        return false;
    const char *p = http_req_header(req, "x-forwarded-proto");
    if (!p)
        return false;
    size_t n = strcspn(p, ", ");
    return n == 5 && !strncasecmp(p, "https", 5);
}

/* ------------------------------------------------------------------ login, logout, me */

void srv_h_auth_login(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!need_auth(s, res))
        return;
    char ip[64];
    srv__client_ip(s, req, ip);
    double now = srv__now_ms() / 1000.0;
    unsigned retry = 0;
    char bucket[80];
    snprintf(bucket, sizeof bucket, "ip:%s", ip);
    if (auth_throttled(s->auth, ip, now, &retry) || !auth_rate_allow(s->auth, bucket, now, &retry)) {
        srv__answer_rate(res, retry);
        return;
    }
    json_t *body = NULL;
    if (!body_object(req, res, &body))
        return;
    const char *name = str_field(body, "username");
    if (!name)
        name = str_field(body, "name");
    const char *pw = str_field(body, "password");
    if (!name || !pw) {
        json_free(body);
        http_res_error(res, 400, "invalid_request", "send {\"username\": ..., \"password\": ...}");
        return;
    }
    char *token = NULL, *csrf = NULL;
    auth_principal_t p;
    memset(&p, 0, sizeof p);
    int rc = auth_login(s->auth, name, pw, &token, &csrf, &p);
    const char *target = plausible_name(name) ? name : "(invalid name)";
    if (rc == BASE_E_NOMEM || rc == BASE_E_IO) {
        json_free(body);
        http_res_error(res, 500, "internal_error", "could not log in");
        return;
    }
    if (rc) {
        /* One answer for an unknown user, a wrong password and a disabled account. */
        auth_fail_note(s->auth, ip, now);
        audit(s, req, NULL, "login_failed", target, NULL);
        json_free(body);
        http_res_header(res, "WWW-Authenticate", "Bearer realm=\"weft\"");
        http_res_error(res, 401, "invalid_credentials", "invalid user name or password");
        return;
    }
    json_free(body);
    auth_config_t ac;
    auth_config_init(&ac);
    http_res_header(res, "Set-Cookie", "%s=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%u%s", SRV_SESSION_COOKIE,
                    token, ac.session_ttl_s, cookie_secure(s, req) ? "; Secure" : "");
    json_t *out = principal_json(&p, false);
    if (out && json_object_set(out, "csrf_token", json_new_string(csrf))) {
        json_free(out);
        out = NULL;
    }
    audit(s, req, p.user, "login", p.user, NULL);
    OPENSSL_cleanse(token, strlen(token));
    free(token);
    free(csrf);
    answer_json(res, 200, out);
}

static void clear_cookie(http_res_t *res)
{
    http_res_header(res, "Set-Cookie", "%s=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", SRV_SESSION_COOKIE);
}

void srv_h_auth_logout(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (req->principal.via == AUTH_VIA_SESSION && s->auth) {
        char *tok = srv__session_cookie(req);
        if (tok) {
            int rc = auth_logout(s->auth, tok);
            OPENSSL_cleanse(tok, strlen(tok));
            free(tok);
            if (rc && rc != BASE_E_NOENT && rc != BASE_E_AUTH_INVALID) {
                http_res_error(res, 500, "internal_error", "could not end the session");
                return;
            }
        }
        srv__ws_close_session(s->ws, req->principal.session_id);
        audit(s, req, who_of(req), "logout", req->principal.user, NULL);
    }
    clear_cookie(res);
    http_res_empty(res, 204);
}

void srv_h_auth_me(srv_t *s, http_req_t *req, http_res_t *res)
{
    /* A browser session also gets its CSRF token back, so a page reloaded with only the
     * cookie can act again (other sites cannot read this response: no CORS for them). */
    json_t *o = principal_json(&req->principal, true);
    if (o && req->principal.via == AUTH_VIA_SESSION && req->principal.csrf[0] &&
        json_object_set(o, "csrf_token", json_new_string(req->principal.csrf))) {
        json_free(o);
        o = NULL;
    }
    answer_json(res, 200, o);
}

/* ------------------------------------------------------------------ users (admin:users) */

void srv_h_auth_users_list(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (need_auth(s, res))
        answer_json(res, 200, auth_user_list(s->auth));
}

static bool role_field(const json_t *body, const char *key, auth_role_t *out, http_res_t *res)
{
    const json_t *r = json_object_get(body, key);
    if (!r)
        return true;
    if (!json_str(r) || auth_role_from_name(json_str(r), out)) {
        http_res_error(res, 400, "invalid_request", "role must be one of admin, editor, user, viewer");
        return false;
    }
    return true;
}

void srv_h_auth_users_add(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!need_auth(s, res))
        return;
    json_t *body = NULL;
    if (!srv__body_json(req, res, true, &body))
        return;
    const char *name = str_field(body, "name"), *pw = str_field(body, "password");
    auth_role_t role = AUTH_ROLE_USER;
    if (!role_field(body, "role", &role, res))
        goto out;
    if (!name || !pw) {
        http_res_error(res, 400, "invalid_request", "send {\"name\", \"password\", \"role\"}");
        goto out;
    }
    int64_t id = 0;
    int rc = auth_user_add(s->auth, name, pw, role, &id);
    if (rc == BASE_E_INVAL) {
        http_res_error(res, 400, "invalid_request",
                       "user names are 1 to 63 of A-Z a-z 0-9 . _ -; passwords 8 to 1024 bytes");
        goto out;
    }
    if (rc) {
        answer_code(res, rc, "user");
        goto out;
    }
    json_t *d = json_new_object();
    if (d)
        json_object_set(d, "role", json_new_string(auth_role_name(role)));
    audit(s, req, who_of(req), "user_create", name, d);
    json_free(d);
    answer_json(res, 201, user_record(s->auth, name));
out:
    json_free(body);
}

void srv_h_auth_users_patch(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!need_auth(s, res))
        return;
    const char *name = req->n_params ? req->params[0] : "";
    json_t *body = NULL, *cur = NULL;
    if (!srv__body_json(req, res, true, &body))
        return;
    auth_role_t role = AUTH_ROLE_USER;
    bool set_role = json_object_get(body, "role") != NULL;
    const json_t *dis = json_object_get(body, "disabled"), *pwj = json_object_get(body, "password");
    if (!role_field(body, "role", &role, res))
        goto out;
    if (dis && dis->type != JSON_BOOL) {
        http_res_error(res, 400, "invalid_request", "disabled must be true or false");
        goto out;
    }
    if (pwj && !json_str(pwj)) {
        http_res_error(res, 400, "invalid_request", "password must be a string");
        goto out;
    }
    if (!set_role && !dis && !pwj) {
        http_res_error(res, 400, "invalid_request", "nothing to change: send role, disabled and/or password");
        goto out;
    }
    if (!(cur = user_record(s->auth, name))) {
        http_res_error(res, 404, "not_found", "no such user");
        goto out;
    }
    bool disable = dis && srv__truthy(dis);
    const char *cur_role = str_field(cur, "role");
    /* Somebody must stay able to manage users. */
    bool admin_now = cur_role && !strcmp(cur_role, "admin") && !truthy_disabled(cur);
    if (admin_now && ((set_role && role != AUTH_ROLE_ADMIN) || disable) && other_active_admins(s->auth, name) == 0) {
        http_res_error(res, 409, "conflict", "this is the last enabled admin");
        goto out;
    }
    int rc = 0;
    if (pwj) {
        if ((rc = auth_user_set_password(s->auth, name, json_str(pwj)))) {
            if (rc == BASE_E_INVAL)
                http_res_error(res, 400, "invalid_request", "passwords are 8 to 1024 bytes");
            else
                answer_code(res, rc, "user");
            goto out;
        }
        audit(s, req, who_of(req), "user_passwd", name, NULL);
    }
    if (set_role) {
        if ((rc = auth_user_set_role(s->auth, name, role))) {
            answer_code(res, rc, "user");
            goto out;
        }
        json_t *d = json_new_object();
        if (d) {
            json_object_set(d, "from", json_new_string(cur_role ? cur_role : ""));
            json_object_set(d, "to", json_new_string(auth_role_name(role)));
        }
        audit(s, req, who_of(req), "user_role", name, d);
        json_free(d);
    }
    if (dis) {
        if ((rc = auth_user_set_disabled(s->auth, name, disable))) {
            answer_code(res, rc, "user");
            goto out;
        }
        audit(s, req, who_of(req), disable ? "user_disable" : "user_enable", name, NULL);
    }
    /* Open sockets carry the scopes they were opened with: a changed role or a disabled
     * account must not keep listening. */
    if (set_role || disable)
        ws_close_principal(s->ws, name, NULL);
    answer_json(res, 200, user_record(s->auth, name));
out:
    json_free(cur);
    json_free(body);
}

/* ------------------------------------------------------------------ keys */

static bool want_all(const http_req_t *req)
{
    char *v = http_query_get(req, "all");
    bool all = v && (!strcmp(v, "true") || !strcmp(v, "1"));
    free(v);
    return all;
}

static void forbid_scope(http_res_t *res, const char *scope)
{
    char msg[160];
    snprintf(msg, sizeof msg, "this needs the scope '%s'", scope);
    http_res_error(res, 403, "forbidden", msg);
}

void srv_h_auth_keys_list(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!need_auth(s, res))
        return;
    char *user = http_query_get(req, "user");
    bool all = want_all(req);
    bool other = user && strcmp(user, req->principal.user);
    if ((all || other) && !auth_has(&req->principal, AUTH_SCOPE(ADMIN_KEYS))) {
        free(user);
        forbid_scope(res, "admin:keys");
        return;
    }
    json_t *list = auth_key_list(s->auth, all ? NULL : user ? user : req->principal.user);
    free(user);
    answer_json(res, 200, list);
}

/* The scope names of a JSON array as one set; false after answering 400. */
static bool scopes_field(const json_t *arr, auth_scopes_t *out, http_res_t *res)
{
    *out = 0;
    if (!arr || arr->type != JSON_ARRAY) {
        http_res_error(res, 400, "invalid_request", "scopes must be an array of scope names");
        return false;
    }
    for (size_t i = 0; i < json_len(arr); i++) {
        const char *n = json_str(json_at(arr, i));
        auth_scopes_t one = 0;
        char err[128] = "";
        if (!n || strchr(n, ',') || auth_scopes_parse(n, &one, err, sizeof err) || !one) {
            http_res_error(res, 400, "invalid_request", err[0] ? err : "scopes must be an array of scope names");
            return false;
        }
        *out |= one;
    }
    if (!*out) {
        http_res_error(res, 400, "invalid_request", "scopes must name at least one scope (omit it for all)");
        return false;
    }
    return true;
}

static const char *first_missing(auth_scopes_t want, auth_scopes_t have)
{
    for (int b = 0; b < AUTH_SCOPE_COUNT; b++)
        if ((want >> b & 1) && !(have >> b & 1))
            return auth_scope_name((auth_scope_bit_t)b);
    return NULL;
}

void srv_h_auth_keys_create(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!need_auth(s, res))
        return;
    const auth_principal_t *me = &req->principal;
    json_t *body = NULL, *urec = NULL, *out = NULL;
    char *key = NULL;
    if (!srv__body_json(req, res, true, &body))
        return;
    const json_t *uj = json_object_get(body, "user"), *lj = json_object_get(body, "label");
    const json_t *sj = json_object_get(body, "scopes"), *ej = json_object_get(body, "expires_in_s");
    if ((uj && !json_str(uj)) || (lj && !json_str(lj))) {
        http_res_error(res, 400, "invalid_request", "user and label must be strings");
        goto out;
    }
    const char *user = uj ? json_str(uj) : me->user;
    const char *label = lj ? json_str(lj) : "";
    bool label_ok = strlen(label) <= LABEL_MAX;
    for (const char *c = label; label_ok && *c; c++)
        label_ok = (unsigned char)*c >= 0x20 && *c != 0x7f;
    if (!label_ok) {
        http_res_error(res, 400, "invalid_request", "label: at most 128 bytes, no control characters");
        goto out;
    }
    if (strcmp(user, me->user) && !auth_has(me, AUTH_SCOPE(ADMIN_KEYS))) {
        forbid_scope(res, "admin:keys");
        goto out;
    }
    int64_t life = 0;
    if (ej && (!json_get_i64(ej, &life) || life < 1 || life > KEY_MAX_LIFETIME_S)) {
        http_res_error(res, 400, "invalid_request", "expires_in_s must be a whole number of seconds, 1 to ten years");
        goto out;
    }
    if (!(urec = user_record(s->auth, user))) {
        http_res_error(res, 404, "not_found", "no such user");
        goto out;
    }
    auth_role_t role;
    if (auth_role_from_name(str_field(urec, "role"), &role)) {
        http_res_error(res, 500, "internal_error", "the user's role is unknown");
        goto out;
    }
    auth_scopes_t role_scopes = auth_role_scopes(role), scopes = 0;
    if (sj) {
        if (!scopes_field(sj, &scopes, res))
            goto out;
        const char *m = first_missing(scopes, role_scopes);
        if (m) {
            char msg[200];
            snprintf(msg, sizeof msg, "the scope '%s' is not part of the role '%s'", m, auth_role_name(role));
            http_res_error(res, 400, "invalid_request", msg);
            goto out;
        }
        /* Nobody hands out more than they hold. */
        if ((m = first_missing(scopes, me->scopes))) {
            char msg[200];
            snprintf(msg, sizeof msg, "cannot grant the scope '%s' you do not hold", m);
            http_res_error(res, 403, "forbidden", msg);
            goto out;
        }
    } else if ((role_scopes & me->scopes) != role_scopes) {
        scopes = role_scopes & me->scopes; /* a narrowed key mints keys no wider than itself */
        if (!scopes) {
            http_res_error(res, 403, "forbidden", "you hold none of the scopes of that user's role");
            goto out;
        }
    }
    int64_t expires = life ? (int64_t)(srv__now_ms() / 1000.0) + life : 0;
    char id[32] = "";
    int rc = auth_key_create(s->auth, user, scopes, expires, label, &key, id);
    if (rc == BASE_E_INVAL) {
        http_res_error(res, 400, "invalid_request", "cannot create a key for a disabled user");
        goto out;
    }
    if (rc) {
        answer_code(res, rc, "key");
        goto out;
    }
    auth_scopes_t eff = scopes ? scopes : role_scopes;
    out = json_new_object();
    if (out && (json_object_set(out, "key", json_new_string(key)) || json_object_set(out, "id", json_new_string(id)) ||
                json_object_set(out, "user", json_new_string(user)) ||
                json_object_set(out, "label", json_new_string(label)) ||
                json_object_set(out, "scopes", auth_scopes_json(eff)) ||
                json_object_set(out, "expires", expires ? json_new_int(expires) : json_new_null()))) {
        json_free(out);
        out = NULL;
    }
    json_t *d = json_new_object();
    if (d) {
        json_object_set(d, "user", json_new_string(user));
        json_object_set(d, "label", json_new_string(label));
        json_object_set(d, "scopes", auth_scopes_json(eff));
    }
    audit(s, req, who_of(req), "key_create", id, d);
    json_free(d);
    answer_json(res, 201, out);
    out = NULL;
out:
    if (key) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    json_free(out);
    json_free(urec);
    json_free(body);
}

void srv_h_auth_keys_revoke(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!need_auth(s, res))
        return;
    const char *id = req->n_params ? req->params[0] : "";
    char owner[64] = "";
    int rc = auth_key_owner(s->auth, id, owner);
    /* Someone else's key id answers like an unknown one. */
    if (rc == BASE_E_NOENT || rc == BASE_E_INVAL ||
        (!rc && strcmp(owner, req->principal.user) && !auth_has(&req->principal, AUTH_SCOPE(ADMIN_KEYS)))) {
        http_res_error(res, 404, "not_found", "no such key");
        return;
    }
    if (!rc && (rc = auth_key_revoke(s->auth, id)) == BASE_E_NOENT)
        rc = 0; /* it exists (owner found): revoked already, or by a racing request */
    if (rc) {
        answer_code(res, rc, "key");
        return;
    }
    ws_close_principal(s->ws, NULL, id);
    json_t *d = json_new_object();
    if (d)
        json_object_set(d, "user", json_new_string(owner));
    audit(s, req, who_of(req), "key_revoke", id, d);
    json_free(d);
    http_res_empty(res, 204);
}

/* ------------------------------------------------------------------ audit (system:admin) */

static bool int_query(const http_req_t *req, const char *name, int64_t lo, int64_t hi, int64_t *v, http_res_t *res)
{
    char *t = http_query_get(req, name);
    if (!t)
        return true;
    char *end = NULL;
    long long n = strtoll(t, &end, 10);
    bool ok = *t && !*end && n >= lo && n <= hi;
    free(t);
    if (!ok) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be a whole number from %lld to %lld", name, (long long)lo, (long long)hi);
        http_res_error(res, 400, "invalid_request", msg);
        return false;
    }
    *v = n;
    return true;
}

void srv_h_auth_audit(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!need_auth(s, res))
        return;
    int64_t limit = AUDIT_DEFAULT_LIMIT, before = 0;
    if (!int_query(req, "limit", 1, AUDIT_MAX_LIMIT, &limit, res) ||
        !int_query(req, "before", 1, INT64_MAX, &before, res))
        return;
    answer_json(res, 200, auth_audit_list(s->auth, limit, before));
}
