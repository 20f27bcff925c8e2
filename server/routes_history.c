/* GET/POST /history and GET /history/{prompt_id} (comfyui-api.md 2.6, 7.2), read from the
 * store page by page. Loop thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "ownership.h"

/* Takes v into o under key; false (v freed) on failure. */
static bool put(json_t *o, const char *key, json_t *v)
{
    if (!v)
        return false;
    return json_object_set(o, key, v) == 0;
}

json_t *srv_history_entry_json(const store_prompt_t *p)
{
    json_t *e = json_new_object(), *status = json_new_object();
    if (!e || !status)
        goto fail;
    size_t n_out = json_len(p->outputs_to_execute);
    json_t *tuple = json_new_array();
    json_t *outs = json_new_array();
    for (size_t i = 0; outs && i < n_out; i++) {
        const json_t *o = json_at(p->outputs_to_execute, i);
        if (json_array_push(outs, json_clone(o))) {
            json_free(outs);
            outs = NULL;
        }
    }
    if (!tuple || !outs || json_array_push(tuple, srv__number_json(p->number)) ||
        json_array_push(tuple, json_new_string(p->prompt_id ? p->prompt_id : "")) ||
        json_array_push(tuple, p->prompt ? json_clone(p->prompt) : json_new_object()) ||
        json_array_push(tuple, p->extra_data ? json_clone(p->extra_data) : json_new_object())) {
        json_free(tuple);
        json_free(outs);
        goto fail;
    }
    if (json_array_push(tuple, outs)) {
        json_free(tuple);
        goto fail;
    }
    if (!put(e, "prompt", tuple) ||
        !put(e, "outputs", p->outputs ? json_clone(p->outputs) : json_new_object()))
        goto fail;
    bool ok = p->status == STORE_SUCCESS;
    if (!put(status, "status_str", json_new_string(ok ? "success" : "error")) ||
        !put(status, "completed", json_new_bool(ok)) ||
        !put(status, "messages", p->messages ? json_clone(p->messages) : json_new_array()))
        goto fail;
    json_t *st = status;
    status = NULL;
    if (!put(e, "status", st) || !put(e, "meta", p->meta ? json_clone(p->meta) : json_new_object()))
        goto fail;
    return e;
fail:
    json_free(status);
    json_free(e);
    return NULL;
}

static bool finished(const store_prompt_t *p)
{
    return p->status == STORE_SUCCESS || p->status == STORE_ERROR;
}

/* An optional integer query parameter; negative values mean "not given" like ComfyUI's -1. */
static bool int_param(const http_req_t *req, const char *name, int64_t *out, http_res_t *res)
{
    *out = -1;
    char *v = http_query_get(req, name);
    if (!v)
        return true;
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    bool ok = *v && !*end && !errno;
    if (!ok) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be an integer", name);
        http_res_error(res, 400, "invalid_request", msg);
    } else if (n >= 0) {
        *out = n;
    }
    free(v);
    return ok;
}

void srv_h_history_get(srv_t *s, http_req_t *req, http_res_t *res)
{
    int64_t max_items, offset;
    if (!int_param(req, "max_items", &max_items, res) || !int_param(req, "offset", &offset, res))
        return;
    store_prompt_t *rows = NULL;
    size_t n = 0;
    /* Without history:read:any the page is one of the requester's own history: a principal
     * without a name (owner "") owns nothing. */
    const auth_principal_t *who = &req->principal;
    const char *owner = auth_has(who, AUTH_SCOPE(HISTORY_READ_ANY)) ? NULL : own_user(who) ? own_user(who) : "";
    int rc = store_history_page_owned(s->store, owner, max_items, offset, &rows, &n);
    if (rc) {
        http_res_error(res, 500, "store_error", "Cannot read the history");
        return;
    }
    json_t *o = json_new_object();
    for (size_t i = 0; i < n; i++) {
        if (o && !put(o, rows[i].prompt_id ? rows[i].prompt_id : "", srv_history_entry_json(&rows[i]))) {
            json_free(o);
            o = NULL;
        }
        store_prompt_free(&rows[i]);
    }
    free(rows);
    if (!o) {
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    http_res_json(res, 200, o);
}

void srv_h_history_one(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *id = req->n_params ? req->params[0] : NULL;
    json_t *o = json_new_object();
    if (!o) {
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    store_prompt_t p;
    memset(&p, 0, sizeof p);
    int rc = id ? store_get(s->store, id, &p) : BASE_E_NOENT;
    if (rc && rc != BASE_E_NOENT) {
        json_free(o);
        http_res_error(res, 500, "store_error", "Cannot read the history");
        return;
    }
    /* Unknown and not-yet-finished prompts both answer {}, as in ComfyUI; so do other users'
     * prompts, which must not be told apart from unknown ones. */
    bool visible = !rc && own_may(&req->principal, p.owner, AUTH_SCOPE(HISTORY_READ_ANY));
    if (visible && finished(&p) && !put(o, id, srv_history_entry_json(&p))) {
        json_free(o);
        o = NULL;
    }
    if (!rc)
        store_prompt_free(&p);
    if (!o) {
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    http_res_json(res, 200, o);
}

void srv_h_history_post(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *body;
    if (!srv__body_json(req, res, true, &body))
        return;
    int rc = 0;
    size_t n = 0;
    /* Own entries only; admins any. */
    const auth_principal_t *who = &req->principal;
    const char *owner = auth_has(who, AUTH_SCOPE(SYSTEM_ADMIN)) ? NULL : own_user(who) ? own_user(who) : "";
    bool clear = srv__truthy(json_object_get(body, "clear"));
    if (clear) {
        rc = store_history_delete_owned(s->store, owner, NULL, 0, &n);
        json_t *detail = rc ? NULL : json_new_object();
        if (detail && json_object_set(detail, "deleted", json_new_int((int64_t)n)))
            json_free(detail), detail = NULL;
        if (!rc)
            own_audit(s, req, "history.clear", owner ? owner : "*", detail);
    }
    const json_t *del = json_object_get(body, "delete");
    if (!rc && del && del->type == JSON_ARRAY && json_len(del)) {
        const char **ids = malloc(json_len(del) * sizeof *ids);
        size_t k = 0;
        for (size_t i = 0; ids && i < json_len(del); i++)
            if (json_str(json_at(del, i)))
                ids[k++] = json_str(json_at(del, i));
        rc = !ids ? BASE_E_NOMEM : k ? store_history_delete_owned(s->store, owner, ids, k, &n) : 0;
        for (size_t i = 0; !rc && i < k; i++)
            own_audit(s, req, "history.delete", ids[i], NULL);
        free(ids);
    }
    json_free(body);
    if (rc) {
        http_res_error(res, 500, "store_error", "Cannot change the history");
        return;
    }
    http_res_empty(res, 200);
}
