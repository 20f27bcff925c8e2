/* Workflow sharing (grants to users, roles or everyone on files of one's library) and share
 * links (a secret URL giving read access to one workflow or output without an account).
 * See routes_share.h for the routes and shapes.
 *
 * Grantees only read: the library routes (/userdata) always act on the caller's own root,
 * and the only route that reaches another user's file is the read-only GET below. Share
 * link tokens are 32 random bytes; only their SHA-256 is stored, and a link that is unknown,
 * revoked or expired answers 404 like a missing file. */
#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "app_internal.h"
#include "ownership.h"
#include "routes_share.h"

#define SHARE_MAX_GRANTEES 256
#define TOKEN_BYTES 32
#define TOKEN_CHARS 43 /* base64url of 32 bytes, unpadded */

/* ------------------------------------------------------------------ helpers */

static const char *param(const http_req_t *req, size_t i)
{
    return i < req->n_params ? req->params[i] : NULL;
}

/* The caller's user name, or a 403 answered (a principal without a name owns nothing). */
static const char *caller(const http_req_t *req, http_res_t *res)
{
    const char *u = own_user(&req->principal);
    if (!u)
        http_res_error(res, 403, "forbidden", "this principal has no user");
    return u;
}

static bool is_admin(const http_req_t *req)
{
    return auth_has(&req->principal, AUTH_SCOPE(SYSTEM_ADMIN));
}

static void oom(http_res_t *res)
{
    http_res_error(res, 500, "out_of_memory", "Out of memory");
}

static void no_store(http_res_t *res)
{
    http_res_error(res, 500, "store_error", "Cannot read or change the sharing tables");
}

/* Answers a library path that cannot be used. */
static void bad_path(http_res_t *res, int rc)
{
    if (rc == BASE_E_NOMEM)
        oom(res);
    else if (rc == BASE_E_NOENT)
        http_res_error(res, 404, "not_found", "file not found");
    else
        http_res_error(res, 400, "invalid_path", "path must name a file inside your user folder");
}

static bool valid_user_name(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len < 1 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)n[i]) && n[i] != '.' && n[i] != '_' && n[i] != '-')
            return false;
    return true;
}

/* The stored spelling of a user name (names compare without case), NULL when unknown. */
static const char *known_user(const json_t *list, const char *name)
{
    for (size_t i = 0; i < json_len(list); i++) {
        const char *n = json_str(json_object_get(json_at(list, i), "name"));
        if (n && !strcasecmp(n, name))
            return n;
    }
    return NULL;
}

/* The distinct strings of an optional JSON array into *out (borrowed from arr). false with
 * the 400 answered when it is not an array of strings. */
static bool string_list(const json_t *arr, const char *field, const char ***out, size_t *n, http_res_t *res)
{
    *out = NULL;
    *n = 0;
    if (!arr || arr->type == JSON_NULL)
        return true;
    char msg[128];
    if (arr->type != JSON_ARRAY || json_len(arr) > SHARE_MAX_GRANTEES) {
        snprintf(msg, sizeof msg, "%s must be an array of at most %d names", field, SHARE_MAX_GRANTEES);
        http_res_error(res, 400, "invalid_request", msg);
        return false;
    }
    const char **v = malloc((json_len(arr) ? json_len(arr) : 1) * sizeof *v);
    if (!v) {
        oom(res);
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < json_len(arr); i++) {
        const json_t *e = json_at(arr, i);
        const char *str = json_str(e);
        if (!str || strlen(str) != e->u.str.len) {
            snprintf(msg, sizeof msg, "%s must hold strings only", field);
            http_res_error(res, 400, "invalid_request", msg);
            free(v);
            return false;
        }
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = !strcmp(v[j], str);
        if (!dup)
            v[k++] = str;
    }
    *out = v;
    *n = k;
    return true;
}

/* Unpadded base64url. */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tab[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tab[v & 63];
    }
    out[o] = '\0';
}

/* Lower-case hex SHA-256 of s. */
static int sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (!EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) || len != 32)
        return BASE_E_IO;
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ------------------------------------------------------------------ workflow shares */

void srv_h_share_workflow(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *user = caller(req, res);
    if (!user)
        return;
    json_t *body = NULL, *users_j = NULL, *roles_j = NULL, *ans = NULL, *known = NULL;
    const char **users = NULL, **roles = NULL;
    size_t n_users = 0, n_roles = 0;
    char *rel = NULL;
    if (!srv__body_json(req, res, true, &body))
        return;
    const json_t *jp = json_object_get(body, "path"), *pub = json_object_get(body, "public");
    if (!json_str(jp) || strlen(json_str(jp)) != jp->u.str.len) {
        http_res_error(res, 400, "invalid_request", "path must be a string");
        goto out;
    }
    if (pub && pub->type != JSON_BOOL && pub->type != JSON_NULL) {
        http_res_error(res, 400, "invalid_request", "public must be true or false");
        goto out;
    }
    bool is_pub = pub && pub->type == JSON_BOOL && pub->u.b;
    if (!string_list(json_object_get(body, "users"), "users", &users, &n_users, res) ||
        !string_list(json_object_get(body, "roles"), "roles", &roles, &n_roles, res))
        goto out;
    if (s->auth && n_users && !(known = auth_user_list(s->auth))) {
        oom(res);
        goto out;
    }
    for (size_t i = 0; i < n_users; i++) {
        const char *canon = known ? known_user(known, users[i]) : users[i];
        if (!valid_user_name(users[i]) || !canon) {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown user '%.64s'", users[i]);
            http_res_error(res, 400, "unknown_user", msg);
            goto out;
        }
        users[i] = canon; /* grants match principals by their stored name */
    }
    for (size_t i = 0; i < n_roles; i++) {
        auth_role_t r;
        if (auth_role_from_name(roles[i], &r)) {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown role '%.64s'", roles[i]);
            http_res_error(res, 400, "unknown_role", msg);
            goto out;
        }
    }
    int rc = srv__userdata_norm(json_str(jp), &rel);
    if (!rc)
        rc = srv__userdata_read(s, user, rel, NULL, NULL, NULL);
    if (rc) {
        bad_path(res, rc);
        goto out;
    }
    bool now_pub = false;
    if (!s->store ||
        store_share_set(s->store, user, rel, users, n_users, roles, n_roles, is_pub, srv__now_ms()) ||
        store_share_get(s->store, user, rel, &users_j, &roles_j, &now_pub)) {
        no_store(res);
        goto out;
    }
    /* json_object_set takes the value even when it fails. */
    ans = json_new_object();
    rc = ans ? json_object_set(ans, "path", json_new_string(rel)) : BASE_E_NOMEM;
    if (!rc) {
        rc = json_object_set(ans, "users", users_j);
        users_j = NULL;
    }
    if (!rc) {
        rc = json_object_set(ans, "roles", roles_j);
        roles_j = NULL;
    }
    if (!rc)
        rc = json_object_set(ans, "public", json_new_bool(now_pub));
    if (rc) {
        oom(res);
        goto out;
    }
    own_audit(s, req, "workflow.share", rel, json_clone(ans));
    http_res_json(res, 200, ans);
    ans = NULL;
out:
    json_free(ans);
    json_free(users_j);
    json_free(roles_j);
    json_free(known);
    free(users);
    free(roles);
    free(rel);
    json_free(body);
}

void srv_h_unshare_workflow(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *user = caller(req, res);
    if (!user)
        return;
    char *q = http_query_get(req, "path"), *rel = NULL;
    size_t n = 0;
    int rc = q ? srv__userdata_norm(q, &rel) : BASE_E_INVAL;
    if (rc) {
        bad_path(res, rc);
    } else if (!s->store || store_share_clear(s->store, user, rel, &n)) {
        no_store(res);
    } else {
        json_t *detail = json_new_object();
        if (detail && json_object_set(detail, "grants_removed", json_new_int((int64_t)n)))
            json_free(detail), detail = NULL;
        own_audit(s, req, "workflow.unshare", rel, detail);
        http_res_empty(res, 204);
    }
    free(q);
    free(rel);
}

static double mtime_s(const struct stat *st)
{
    return (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9;
}

void srv_h_shared_list(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *user = caller(req, res);
    if (!user)
        return;
    store_shared_t *items = NULL;
    size_t n = 0;
    if (!s->store || store_share_list_for(s->store, user, auth_role_name(req->principal.role), &items, &n)) {
        no_store(res);
        return;
    }
    json_t *arr = json_new_array();
    for (size_t i = 0; arr && i < n; i++) {
        struct stat st;
        /* Grants outlive files only until the owner deletes them through /userdata; a file
         * removed some other way is simply not listed. */
        if (srv__userdata_read(s, items[i].owner, items[i].path, NULL, NULL, &st))
            continue;
        json_t *o = json_new_object();
        if (!o || json_object_set(o, "owner", json_new_string(items[i].owner)) ||
            json_object_set(o, "path", json_new_string(items[i].path)) ||
            json_object_set(o, "size", json_new_int((int64_t)st.st_size)) ||
            json_object_set(o, "modified", json_new_real(mtime_s(&st))) || json_array_push(arr, o)) {
            json_free(o);
            json_free(arr);
            arr = NULL;
        }
    }
    store_shared_free(items, n);
    if (!arr) {
        oom(res);
        return;
    }
    http_res_json(res, 200, arr);
}

/* Answers with a library file's bytes (read only; nothing may run from it). */
static void serve_workflow(srv_t *s, http_res_t *res, const char *owner, const char *rel)
{
    char *data = NULL;
    size_t len = 0;
    int rc = srv__userdata_read(s, owner, rel, &data, &len, NULL);
    if (rc == BASE_E_NOMEM)
        oom(res);
    else if (rc == BASE_E_TOOBIG)
        http_res_error(res, 413, "too_large", base_strerror(rc));
    else if (rc)
        http_res_error(res, 404, "not_found", "file not found");
    else
        http_res_bytes(res, 200, srv__userdata_mime(rel), data, len);
    free(data);
    http_res_header(res, "X-Content-Type-Options", "nosniff");
    http_res_header(res, "Content-Security-Policy", "sandbox");
}

void srv_h_shared_get(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *user = caller(req, res);
    if (!user)
        return;
    const char *owner = param(req, 0);
    char *rel = NULL;
    int rc = owner && valid_user_name(owner) ? srv__userdata_norm(param(req, 1), &rel) : BASE_E_NOENT;
    bool ok = false;
    if (!rc && strcmp(owner, user) != 0) {
        if (!s->store ||
            store_share_allows(s->store, owner, rel, user, auth_role_name(req->principal.role), &ok)) {
            no_store(res);
            free(rel);
            return;
        }
        rc = ok ? 0 : BASE_E_NOENT; /* not shared with the caller: as if missing */
    }
    if (rc) {
        http_res_error(res, rc == BASE_E_NOMEM ? 500 : 404,
                       rc == BASE_E_NOMEM ? "out_of_memory" : "not_found",
                       rc == BASE_E_NOMEM ? "Out of memory" : "file not found");
    } else {
        serve_workflow(s, res, owner, rel);
    }
    free(rel);
}

/* ------------------------------------------------------------------ share links */

static json_t *link_json(const store_link_t *l)
{
    json_t *o = json_new_object();
    if (!o || json_object_set(o, "id", json_new_string(l->id)) ||
        json_object_set(o, "owner", json_new_string(l->owner)) ||
        json_object_set(o, "kind", json_new_string(l->kind)) ||
        json_object_set(o, "folder", l->folder ? json_new_string(l->folder) : json_new_null()) ||
        json_object_set(o, "path", json_new_string(l->path)) ||
        json_object_set(o, "created", json_new_int((int64_t)(l->created_ms / 1000))) ||
        json_object_set(o, "expires", json_new_int((int64_t)(l->expires_ms / 1000))) ||
        json_object_set(o, "revoked", json_new_bool(l->revoked))) {
        json_free(o);
        return NULL;
    }
    return o;
}

/* What a new link points at, checked: *folder NULL and *path in the caller's library for a
 * workflow; an output folder and a readable file inside it for an output. false with the
 * answer set. */
static bool link_target(srv_t *s, const http_req_t *req, const json_t *body, const char *user,
                        const char **kind, const char **folder, char **path, http_res_t *res)
{
    const json_t *jk = json_object_get(body, "kind");
    const char *k = !jk || jk->type == JSON_NULL ? "workflow" : json_str(jk); /* a workflow unless told */
    const json_t *jp = json_object_get(body, "path");
    const char *p = json_str(jp);
    if (!k || (strcmp(k, "workflow") && strcmp(k, "output"))) {
        http_res_error(res, 400, "invalid_request", "kind must be \"workflow\" or \"output\"");
        return false;
    }
    if (!p || strlen(p) != jp->u.str.len) {
        http_res_error(res, 400, "invalid_request", "path must be a string");
        return false;
    }
    *kind = !strcmp(k, "workflow") ? "workflow" : "output";
    *folder = NULL;
    if (!strcmp(k, "workflow")) {
        int rc = srv__userdata_norm(p, path);
        if (!rc)
            rc = srv__userdata_read(s, user, *path, NULL, NULL, NULL);
        if (rc)
            bad_path(res, rc);
        return rc == 0;
    }
    const json_t *jf = json_object_get(body, "folder");
    const char *f = jf && jf->type != JSON_NULL ? json_str(jf) : "output";
    static const char *const folders[] = {"output", "input", "temp"};
    for (size_t i = 0; f && i < 3; i++)
        if (!strcmp(f, folders[i]))
            *folder = folders[i];
    if (!*folder) {
        http_res_error(res, 400, "invalid_request", "folder must be \"output\", \"input\" or \"temp\"");
        return false;
    }
    const char *slash = strrchr(p, '/');
    char *sub = strndup(p, slash ? (size_t)(slash - p) : 0);
    int rc = sub ? own_file_path(sub, slash ? slash + 1 : p, path) : BASE_E_NOMEM;
    free(sub);
    if (rc) {
        http_res_error(res, rc == BASE_E_NOMEM ? 500 : 400,
                       rc == BASE_E_NOMEM ? "out_of_memory" : "invalid_path",
                       rc == BASE_E_NOMEM ? "Out of memory" : "path must name a file inside its folder");
        return false;
    }
    /* Only what the caller may read itself can be shared; anything else is "not found". */
    if (!own_file_readable(s, &req->principal, *folder, *path) || !srv__files_exists(s, *folder, *path)) {
        http_res_error(res, 404, "not_found", "file not found");
        free(*path);
        *path = NULL;
        return false;
    }
    return true;
}

void srv_h_share_link_create(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *user = caller(req, res);
    if (!user)
        return;
    json_t *body = NULL;
    char *path = NULL;
    if (!srv__body_json(req, res, true, &body))
        return;
    const char *kind = NULL, *folder = NULL;
    const json_t *je = json_object_get(body, "expires_in_s");
    if (!je)
        je = json_object_get(body, "expires_in"); /* also accepted: seconds as well */
    int64_t ttl = SHARE_LINK_DEFAULT_S;
    if (je && je->type != JSON_NULL && (!json_get_i64(je, &ttl) || ttl < 1 || ttl > SHARE_LINK_MAX_S)) {
        char msg[128];
        snprintf(msg, sizeof msg, "expires_in_s must be an integer from 1 to %u", SHARE_LINK_MAX_S);
        http_res_error(res, 400, "invalid_request", msg);
        goto out;
    }
    if (!link_target(s, req, body, user, &kind, &folder, &path, res))
        goto out;
    unsigned char raw[TOKEN_BYTES], rid[9];
    char token[TOKEN_CHARS + 1], id[13], hash[65];
    if (RAND_bytes(raw, sizeof raw) != 1 || RAND_bytes(rid, sizeof rid) != 1) {
        http_res_error(res, 500, "internal_error", "Cannot draw a random token");
        goto out;
    }
    b64url(raw, sizeof raw, token);
    b64url(rid, sizeof rid, id);
    if (sha256_hex(token, hash)) {
        http_res_error(res, 500, "internal_error", "Cannot hash the token");
        goto out;
    }
    double now = srv__now_ms();
    store_link_t l = {.id = id,
                      .owner = (char *)user,
                      .kind = (char *)kind,
                      .folder = (char *)folder,
                      .path = path,
                      .expires_ms = now + (double)ttl * 1000.0,
                      .created_ms = now};
    if (!s->store || store_link_add(s->store, &l, hash)) {
        no_store(res);
        goto out;
    }
    char url[8 + TOKEN_CHARS];
    snprintf(url, sizeof url, "/share/%s", token);
    json_t *ans = json_new_object();
    if (!ans || json_object_set(ans, "id", json_new_string(id)) ||
        json_object_set(ans, "token", json_new_string(token)) ||
        json_object_set(ans, "url", json_new_string(url)) ||
        json_object_set(ans, "expires", json_new_int((int64_t)(l.expires_ms / 1000)))) {
        json_free(ans);
        oom(res);
        goto out;
    }
    /* The audit entry names the link, never its token. */
    json_t *detail = link_json(&l);
    own_audit(s, req, "share_link.create", id, detail);
    http_res_json(res, 201, ans);
out:
    free(path);
    json_free(body);
}

void srv_h_share_link_list(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *user = caller(req, res);
    if (!user)
        return;
    store_link_t *links = NULL;
    size_t n = 0;
    if (!s->store || store_link_list(s->store, is_admin(req) ? NULL : user, &links, &n)) {
        no_store(res);
        return;
    }
    json_t *arr = json_new_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_push(arr, link_json(&links[i]))) {
            json_free(arr);
            arr = NULL;
        }
    store_links_free(links, n);
    if (!arr)
        oom(res);
    else
        http_res_json(res, 200, arr);
}

void srv_h_share_link_revoke(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *user = caller(req, res);
    if (!user)
        return;
    const char *id = param(req, 0);
    int rc = !id         ? BASE_E_NOENT
             : !s->store ? BASE_E_IO
                         : store_link_revoke(s->store, id, is_admin(req) ? NULL : user);
    if (rc == BASE_E_NOENT) {
        http_res_error(res, 404, "not_found", "no such share link");
    } else if (rc) {
        no_store(res);
    } else {
        own_audit(s, req, "share_link.revoke", id, NULL);
        http_res_empty(res, 204);
    }
}

static bool token_shaped(const char *t)
{
    if (!t || strlen(t) != TOKEN_CHARS)
        return false;
    for (const char *c = t; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
            return false;
    return true;
}

void srv_h_share_open(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *token = param(req, 0);
    char hash[65];
    store_link_t l;
    memset(&l, 0, sizeof l);
    int rc = !token_shaped(token) ? BASE_E_NOENT : sha256_hex(token, hash);
    if (!rc)
        rc = s->store ? store_link_find(s->store, hash, srv__now_ms(), &l) : BASE_E_NOENT;
    if (rc == BASE_E_NOENT) {
        http_res_error(res, 404, "not_found", "This link does not exist, expired or was revoked");
        http_res_header(res, "X-Content-Type-Options", "nosniff");
    } else if (rc) {
        no_store(res);
    } else if (!strcmp(l.kind, "workflow")) {
        serve_workflow(s, res, l.owner, l.path);
    } else {
        srv__files_serve(s, res, l.folder, l.path);
    }
    store_link_free(&l);
    /* The token is in the URL: keep it out of Referer headers and shared caches. */
    http_res_header(res, "Referrer-Policy", "no-referrer");
    http_res_header(res, "Cache-Control", "no-store");
}
