/* Ownership checks, per-user folders, the record of who made each file, and audit entries
 * (see ownership.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ownership.h"
#include "srv_auth.h"

const char *own_user(const auth_principal_t *p)
{
    return p && p->user[0] ? p->user : NULL;
}

bool own_is(const auth_principal_t *p, const char *owner)
{
    const char *u = own_user(p);
    return u && owner && strcmp(u, owner) == 0;
}

bool own_may(const auth_principal_t *p, const char *owner, auth_scopes_t any)
{
    return own_is(p, owner) || (any && auth_has(p, any));
}

int own_user_root(const srv_t *s, const char *user, char **out)
{
    *out = NULL;
    if (!user || !*user || !strcmp(user, ".") || !strcmp(user, "..") || strlen(user) >= 64)
        return BASE_E_PATH;
    for (const char *c = user; *c; c++)
        if (*c == '/' || *c == '\\' || (unsigned char)*c < 0x20 || *c == 0x7f)
            return BASE_E_PATH;
    size_t n = strlen(s->env.base_dir) + strlen(user) + sizeof "/user/";
    char *p = malloc(n);
    if (!p)
        return BASE_E_NOMEM;
    snprintf(p, n, "%s/user/%s", s->env.base_dir, user);
    *out = p;
    return 0;
}

void own_audit(srv_t *s, const http_req_t *req, const char *action, const char *target, json_t *detail)
{
    if (s->auth) {
        /* The address as the gate sees it (no port; the proxy's view with --trust-proxy). */
        char ip[64] = "";
        if (req)
            srv__client_ip(s, req, ip);
        int rc = auth_audit(s->auth, req ? own_user(&req->principal) : NULL, ip[0] ? ip : NULL, action,
                            target, detail);
        if (rc)
            BASE_LOG(ERROR, "audit %s %s: cannot record: %s", action, target ? target : "",
                     base_strerror(rc));
    }
    json_free(detail);
}

/* ------------------------------------------------------------------ files */

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

int own_file_path(const char *sub, const char *name, char **out)
{
    *out = NULL;
    if (!sub)
        sub = "";
    if (!name || !*name || strchr(name, '/') || strchr(name, '\\') || has_ctl(name) || !strcmp(name, ".") ||
        !strcmp(name, ".."))
        return BASE_E_PATH;
    if (strchr(sub, '\\') || has_ctl(sub) || sub[0] == '/')
        return BASE_E_PATH;
    base_buf_t b = BASE_BUF_INIT;
    int rc = 0;
    for (const char *c = sub; !rc && *c;) {
        const char *slash = strchr(c, '/');
        size_t k = slash ? (size_t)(slash - c) : strlen(c);
        if (k == 2 && c[0] == '.' && c[1] == '.')
            rc = BASE_E_PATH;
        else if (k && !(k == 1 && c[0] == '.'))
            rc = (b.len && base_buf_putc(&b, '/')) || base_buf_append(&b, c, k) ? BASE_E_NOMEM : 0;
        c += k;
        if (*c == '/')
            c++;
    }
    if (!rc)
        rc = (b.len && base_buf_putc(&b, '/')) || base_buf_puts(&b, name) ? BASE_E_NOMEM : 0;
    if (rc) {
        base_buf_free(&b);
        return rc;
    }
    *out = base_buf_take(&b);
    return *out ? 0 : BASE_E_NOMEM;
}

/* 1: recorded with an owner (*owner malloc'ed), 0: not recorded or recorded without one,
 * <0: the store failed (logged by the store). */
static int recorded_owner(srv_t *s, const char *folder, const char *path, char **owner)
{
    *owner = NULL;
    if (!s->store)
        return 0;
    int rc = store_file_owner(s->store, folder, path, owner);
    if (rc == BASE_E_NOENT)
        return 0;
    if (rc)
        return rc;
    return *owner ? 1 : 0;
}

bool own_file_readable(srv_t *s, const auth_principal_t *p, const char *folder, const char *path)
{
    if (auth_has(p, AUTH_SCOPE(OUTPUTS_READ_ANY)))
        return true;
    if (!own_user(p))
        return false;
    char *owner = NULL;
    bool ok = recorded_owner(s, folder, path, &owner) == 1 && own_is(p, owner);
    free(owner);
    return ok;
}

bool own_file_writable(srv_t *s, const auth_principal_t *p, const char *folder, const char *path)
{
    char *owner = NULL;
    int rc = recorded_owner(s, folder, path, &owner);
    bool ok = rc == 1 ? own_is(p, owner) : rc == 0 && auth_has(p, AUTH_SCOPE(OUTPUTS_READ_ANY));
    free(owner);
    return ok;
}

typedef struct {
    store_file_ref_t *v;
    char **paths; /* owned, parallel to v */
    size_t n, cap;
    bool oom;
} refs_t;

static void refs_add(refs_t *r, const json_t *o)
{
    const char *name = json_str(json_object_get(o, "filename"));
    const char *type = json_str(json_object_get(o, "type"));
    const char *sub = json_str(json_object_get(o, "subfolder"));
    if (!name || !type)
        return;
    static const char *const folders[] = {"output", "input", "temp"};
    const char *folder = NULL;
    for (size_t i = 0; i < 3; i++)
        if (!strcmp(type, folders[i]))
            folder = folders[i];
    char *path = NULL;
    if (!folder || own_file_path(sub, name, &path))
        return; /* names a node could not have written inside its folder */
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        store_file_ref_t *v = realloc(r->v, cap * sizeof *v);
        char **p = v ? realloc(r->paths, cap * sizeof *p) : NULL;
        if (v)
            r->v = v;
        if (!v || !p) {
            free(path);
            r->oom = true;
            return;
        }
        r->paths = p;
        r->cap = cap;
    }
    r->paths[r->n] = path;
    r->v[r->n++] = (store_file_ref_t){folder, path};
}

static void refs_add_ui(refs_t *r, const json_t *ui)
{
    for (size_t k = 0; ui && ui->type == JSON_OBJECT && k < json_len(ui); k++) {
        const json_t *arr = json_at(ui, k);
        for (size_t j = 0; arr && arr->type == JSON_ARRAY && j < json_len(arr); j++)
            if (json_at(arr, j)->type == JSON_OBJECT)
                refs_add(r, json_at(arr, j));
    }
}

static void record(store_t *st, const char *owner, const char *prompt_id, const json_t *outputs,
                   const json_t *ui, double now_ms)
{
    if (!st || !owner || !*owner)
        return;
    refs_t r = {0};
    for (size_t i = 0; outputs && outputs->type == JSON_OBJECT && i < json_len(outputs); i++)
        refs_add_ui(&r, json_at(outputs, i));
    refs_add_ui(&r, ui);
    if (!r.n && !r.oom)
        return;
    int rc = r.oom ? BASE_E_NOMEM : store_files_record(st, r.v, r.n, owner, prompt_id, now_ms);
    if (rc)
        BASE_LOG(ERROR, "prompt %s: cannot record its %zu output file(s): %s", prompt_id ? prompt_id : "",
                 r.n, base_strerror(rc));
    for (size_t i = 0; i < r.n; i++)
        free(r.paths[i]);
    free(r.paths);
    free(r.v);
}

void own_record_outputs(store_t *st, const char *owner, const char *prompt_id, const json_t *outputs,
                        double now_ms)
{
    record(st, owner, prompt_id, outputs, NULL, now_ms);
}

void own_record_ui(store_t *st, const char *owner, const char *prompt_id, const json_t *ui, double now_ms)
{
    record(st, owner, prompt_id, NULL, ui, now_ms);
}
