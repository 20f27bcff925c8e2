/* POST/GET /prompt, GET/POST /queue, POST /interrupt, POST /free (comfyui-api.md 2.1-2.5).
 * Loop thread: validation happens here, execution on the worker. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "ownership.h"
#include "srv_uuid.h"

bool srv__body_json(const http_req_t *req, http_res_t *res, bool want_object, json_t **out)
{
    *out = NULL;
    char err[256] = "";
    json_t *j = NULL;
    int rc = json_parse(req->body.data ? req->body.data : "", req->body.len, &j, err, sizeof err);
    if (rc == BASE_E_NOMEM) {
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return false;
    }
    if (rc) {
        char msg[320];
        snprintf(msg, sizeof msg, "Request body is not valid JSON: %s", err);
        http_res_error(res, 400, "invalid_json", msg);
        return false;
    }
    if (want_object && j->type != JSON_OBJECT) {
        json_free(j);
        http_res_error(res, 400, "invalid_request", "Request body must be a JSON object");
        return false;
    }
    *out = j;
    return true;
}

bool srv__truthy(const json_t *j)
{
    if (!j)
        return false;
    switch (j->type) {
    case JSON_NULL:
        return false;
    case JSON_BOOL:
        return j->u.b;
    case JSON_NUMBER:
        return j->u.num.is_int ? j->u.num.i.mag != 0 : j->u.num.d != 0;
    case JSON_STRING:
        return j->u.str.len != 0;
    default:
        return json_len(j) != 0;
    }
}

json_t *srv__queue_tuple(double number, const char *id, const json_t *prompt, const json_t *extra_data,
                         char *const *outputs, size_t n_outputs)
{
    json_t *outs = json_new_array();
    for (size_t i = 0; outs && i < n_outputs; i++)
        if (json_array_push(outs, json_new_string(outputs[i]))) {
            json_free(outs);
            outs = NULL;
        }
    json_t *t = json_new_array();
    if (!t || !outs || json_array_push(t, srv__number_json(number)) || json_array_push(t, json_new_string(id)) ||
        json_array_push(t, prompt ? json_clone(prompt) : json_new_object()) ||
        json_array_push(t, extra_data ? json_clone(extra_data) : json_new_object()) ||
        json_array_push(t, outs)) {
        if (!t)
            json_free(outs);
        json_free(t);
        return NULL;
    }
    return t;
}

/* ------------------------------------------------------------------ POST /prompt */

static bool valid_prompt_id(const json_t *j)
{
    if (!j || j->type != JSON_STRING || j->u.str.len < 1 || j->u.str.len > 128)
        return false;
    for (size_t i = 0; i < j->u.str.len; i++) {
        unsigned char c = (unsigned char)j->u.str.s[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

/* ComfyUI's float(number): a JSON number or a string holding one. */
static bool number_of(const json_t *j, double *out)
{
    if (json_get_double(j, out))
        return isfinite(*out);
    const char *s = json_str(j);
    if (!s || !*s)
        return false;
    char *end;
    double d = strtod(s, &end);
    while (*end == ' ')
        end++;
    if (*end || !isfinite(d))
        return false;
    *out = d;
    return true;
}

static void validation_failed(http_res_t *res, graph_validation_t *v)
{
    json_t *err = v->error ? v->error : json_new_null();
    json_t *ne = v->node_errors ? v->node_errors : json_new_object();
    v->error = v->node_errors = NULL;
    json_t *body = json_new_object();
    int rc = body ? json_object_set(body, "error", err) : (json_free(err), BASE_E_NOMEM);
    rc = rc ? (json_free(ne), rc) : json_object_set(body, "node_errors", ne);
    if (rc) {
        json_free(body);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    http_res_json(res, 400, body);
}

/* Credentials never reach the store (and so never /queue or /history): comfy.org's, the
 * usual header-like names, and any top-level value shaped like a weft API key. */
static void strip_credentials(json_t *x)
{
    static const char *const names[] = {"auth_token_comfy_org", "api_key_comfy_org", "authorization",
                                        "api_key", "weft_key", "password"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        json_object_del(x, names[i]);
    for (size_t i = json_len(x); i-- > 0;) {
        const char *v = json_str(json_at(x, i));
        if (v && !strncmp(v, "weft_", 5) && strchr(v + 5, '_')) {
            char *key = strdup(json_key_at(x, i));
            if (key)
                json_object_del(x, key);
            free(key);
        }
    }
}

/* The item's copy of the request's extra_data: client_id from the top level wins, and the
 * comfy.org credentials are never stored (they would show in /queue and /history). */
static int extra_data_of(const json_t *body, json_t **out, char **client_id, http_res_t *res)
{
    const json_t *ed = json_object_get(body, "extra_data");
    if (ed && ed->type != JSON_OBJECT && ed->type != JSON_NULL) {
        http_res_error(res, 400, "invalid_request", "extra_data must be an object");
        return -1;
    }
    const json_t *cid = json_object_get(body, "client_id");
    if (cid && cid->type != JSON_STRING && cid->type != JSON_NULL) {
        http_res_error(res, 400, "invalid_request", "client_id must be a string");
        return -1;
    }
    json_t *x = ed && ed->type == JSON_OBJECT ? json_clone(ed) : json_new_object();
    if (!x || (cid && cid->type == JSON_STRING && json_object_set(x, "client_id", json_clone(cid)))) {
        json_free(x);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return -1;
    }
    strip_credentials(x);
    const char *c = json_str(json_object_get(x, "client_id"));
    *client_id = c ? strdup(c) : NULL;
    if (c && !*client_id) {
        json_free(x);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return -1;
    }
    *out = x;
    return 0;
}

static json_t *outputs_json(char *const *outputs, size_t n)
{
    json_t *a = json_new_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_push(a, json_new_string(outputs[i]))) {
            json_free(a);
            return NULL;
        }
    return a;
}

void srv_h_prompt_post(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *body;
    if (!srv__body_json(req, res, true, &body))
        return;
    graph_t *g = NULL;
    graph_validation_t v = {0};
    srv_item_t *it = NULL;
    json_t *outs = NULL;

    const json_t *prompt = json_object_get(body, "prompt");
    if (prompt && prompt->type == JSON_OBJECT && json_len(prompt) > SRV_MAX_PROMPT_NODES) {
        char msg[128];
        snprintf(msg, sizeof msg, "The prompt has %zu nodes; at most %d are accepted", json_len(prompt),
                 SRV_MAX_PROMPT_NODES);
        http_res_error(res, 413, "prompt_too_large", msg);
        goto out;
    }
    const json_t *pid = json_object_get(body, "prompt_id");
    if (pid && pid->type != JSON_NULL && !valid_prompt_id(pid)) {
        http_res_error(res, 400, "invalid_prompt_id",
                       "prompt_id must be a string of 1 to 128 printable ASCII characters without spaces");
        goto out;
    }
    const json_t *num = json_object_get(body, "number");
    double number = 0;
    bool explicit_number = num && num->type != JSON_NULL;
    if (explicit_number && !number_of(num, &number)) {
        http_res_error(res, 400, "invalid_request", "number must be a finite number");
        goto out;
    }

    if (own_refuse_forbidden_nodes(s, &req->principal, prompt, res))
        goto out;
    int rc = graph_check_request(body, s->reg, &s->env.env, &g, &v);
    if (rc == BASE_E_NOMEM) {
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        goto out;
    }
    if (rc) {
        validation_failed(res, &v);
        goto out;
    }

    if (!(it = calloc(1, sizeof *it))) {
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        goto out;
    }
    if (extra_data_of(body, &it->extra_data, &it->client_id, res))
        goto out;
    char uuid[37];
    if (pid && pid->type == JSON_STRING) {
        it->prompt_id = strdup(pid->u.str.s);
    } else if (srv_uuid4(uuid) == 0) {
        it->prompt_id = strdup(uuid);
    } else {
        http_res_error(res, 500, "internal_error", "Cannot draw a random prompt id");
        goto out;
    }
    outs = outputs_json(v.outputs, v.n_outputs);
    if (!it->prompt_id || !outs) {
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        goto out;
    }
    if (!explicit_number)
        number = srv__truthy(json_object_get(body, "front")) ? -s->counter : s->counter;
    it->number = number;
    it->prompt = v.prompt;
    v.prompt = NULL;
    it->outputs = v.outputs;
    it->n_outputs = v.n_outputs;
    v.outputs = NULL;
    v.n_outputs = 0;
    it->graph = g;
    g = NULL;
    it->created_ms = srv__now_ms();
    const char *owner = own_user(&req->principal);
    snprintf(it->owner, sizeof it->owner, "%s", owner ? owner : "");
    it->run_cap = owner ? srv_role_run_cap(req->principal.role) : 0;
    /* Limits last: a prompt refused for any other reason costs no quota. */
    if (own_refuse_limits(s, req, res))
        goto out;

    /* Durable first: a 200 means the prompt survives a crash. */
    store_prompt_t row = {.prompt_id = it->prompt_id, .number = number, .prompt = it->prompt,
                          .extra_data = it->extra_data, .outputs_to_execute = outs,
                          .client_id = it->client_id, .owner = (char *)owner, .created_ms = it->created_ms};
    rc = store_enqueue(s->store, &row);
    if (rc == BASE_E_EXIST) {
        http_res_error(res, 400, "invalid_prompt_id", "A prompt with this prompt_id is already queued or running");
        goto out;
    }
    if (rc) {
        http_res_error(res, 500, "store_error", "Cannot persist the prompt");
        goto out;
    }
    it->seq = row.seq;
    if (!explicit_number)
        s->counter += 1;

    json_t *ne = v.node_errors ? v.node_errors : json_new_object();
    v.node_errors = NULL;
    json_t *ans = json_new_object();
    if (!ans || json_object_set(ans, "prompt_id", json_new_string(it->prompt_id)) ||
        json_object_set(ans, "number", srv__number_json(number))) {
        json_free(ne);
        json_free(ans);
        ans = NULL;
    } else if (json_object_set(ans, "node_errors", ne)) {
        json_free(ans);
        ans = NULL;
    }
    char *id = ans ? strdup(it->prompt_id) : NULL;
    srv_item_t *pushed = it;
    it = id ? NULL : it;
    if (!id || srv_queue_push(&s->queue, pushed)) { /* a failed push freed the item */
        const char *ids[1] = {id ? id : pushed->prompt_id};
        size_t n = 0;
        store_delete_pending(s->store, ids, 1, &n);
        free(id);
        json_free(ans);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        goto out;
    }
    json_t *detail = json_new_object();
    if (detail && json_object_set(detail, "nodes", json_new_int((int64_t)json_len(prompt))))
        json_free(detail), detail = NULL;
    own_audit(s, req, "prompt.submit", id, detail);
    free(id);
    srv_broadcast_status(s);
    http_res_json(res, 200, ans);
out:
    json_free(outs);
    srv_item_free(it);
    graph_free(g);
    graph_validation_free(&v);
    json_free(body);
}

void srv_h_prompt_get(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *st = srv_status_json(s);
    json_t *ei = st ? json_object_get(json_object_get(st, "status"), "exec_info") : NULL;
    json_t *o = json_new_object();
    if (!ei || !o || json_object_set(o, "exec_info", json_clone(ei))) {
        json_free(st);
        json_free(o);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    json_free(st);
    http_res_json(res, 200, o);
}

/* ------------------------------------------------------------------ /queue */

typedef struct {
    json_t *running, *pending;
    const auth_principal_t *who;
    bool oom;
} queue_dump_t;

static void dump_item(void *ud, const srv_item_t *it, bool running)
{
    queue_dump_t *d = ud;
    if (!own_may(d->who, it->owner, AUTH_SCOPE(QUEUE_READ_ANY)))
        return;
    json_t *t = srv__queue_tuple(it->number, it->prompt_id, it->prompt, it->extra_data, it->outputs, it->n_outputs);
    if (!t || json_array_push(running ? d->running : d->pending, t))
        d->oom = true;
}

void srv_h_queue_get(srv_t *s, http_req_t *req, http_res_t *res)
{
    queue_dump_t d = {json_new_array(), json_new_array(), &req->principal, false};
    json_t *o = json_new_object();
    if (d.running && d.pending && o)
        srv_queue_each(&s->queue, dump_item, &d);
    if (!d.running || !d.pending || !o || d.oom) {
        json_free(d.running);
        json_free(d.pending);
        json_free(o);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    if (json_object_set(o, "queue_running", d.running) || json_object_set(o, "queue_pending", d.pending)) {
        json_free(o);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    http_res_json(res, 200, o);
}

typedef struct {
    const auth_principal_t *who;
    const char *const *ids; /* NULL = every pending item */
    size_t n_ids;
    const char **out;       /* borrowed from the items (valid until they are freed) */
    size_t n, cap;
    bool oom;
} own_pick_t;

static void pick_own(void *ud, const srv_item_t *it, bool running)
{
    own_pick_t *p = ud;
    if (running || !own_is(p->who, it->owner))
        return;
    bool listed = !p->ids;
    for (size_t i = 0; !listed && i < p->n_ids; i++)
        listed = p->ids[i] && !strcmp(p->ids[i], it->prompt_id);
    if (!listed)
        return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        const char **v = realloc(p->out, cap * sizeof *v);
        if (!v) {
            p->oom = true;
            return;
        }
        p->out = v;
        p->cap = cap;
    }
    /* Copied out: the id must outlive the lock, and the item may be taken meanwhile. */
    char *copy = strdup(it->prompt_id);
    if (!copy) {
        p->oom = true;
        return;
    }
    p->out[p->n++] = copy;
}

static void pick_free(own_pick_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free((char *)p->out[i]);
    free(p->out);
}

/* Removes pending prompts from memory and then exactly those rows from the store, so a
 * prompt the worker took meanwhile is never deleted under it. Without queue:cancel:any only
 * the requester's own prompts are taken (ids NULL = all of them). */
static void drop_pending(srv_t *s, const http_req_t *req, const char *const *ids, size_t n_ids)
{
    own_pick_t pick = {.who = &req->principal, .ids = ids, .n_ids = n_ids};
    if (!auth_has(&req->principal, AUTH_SCOPE(QUEUE_CANCEL_ANY))) {
        srv_queue_each(&s->queue, pick_own, &pick);
        if (pick.oom || !pick.n) {
            pick_free(&pick);
            return;
        }
        ids = pick.out;
        n_ids = pick.n;
    }
    srv_item_t **got;
    size_t n = srv__queue_take(&s->queue, ids, n_ids, &got);
    pick_free(&pick);
    if (!n)
        return;
    const char **taken = malloc(n * sizeof *taken);
    if (taken) {
        for (size_t i = 0; i < n; i++)
            taken[i] = got[i]->prompt_id;
        size_t deleted = 0;
        int rc = store_delete_pending(s->store, taken, n, &deleted);
        if (rc)
            BASE_LOG(ERROR, "cannot delete %zu pending prompt(s) from the store: %s", n, base_strerror(rc));
    }
    free(taken);
    for (size_t i = 0; i < n; i++) {
        json_t *detail = json_new_object();
        if (detail && json_object_set(detail, "owner", json_new_string(got[i]->owner)))
            json_free(detail), detail = NULL;
        own_audit(s, req, "prompt.cancel", got[i]->prompt_id, detail);
        srv_item_free(got[i]);
    }
    free(got);
}

void srv_h_queue_post(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *body;
    if (!srv__body_json(req, res, true, &body))
        return;
    if (srv__truthy(json_object_get(body, "clear")))
        drop_pending(s, req, NULL, 0);
    const json_t *del = json_object_get(body, "delete");
    if (del && del->type == JSON_ARRAY && json_len(del)) {
        const char **ids = malloc(json_len(del) * sizeof *ids);
        size_t n = 0;
        for (size_t i = 0; ids && i < json_len(del); i++)
            if (json_str(json_at(del, i)))
                ids[n++] = json_str(json_at(del, i));
        if (!ids) {
            json_free(body);
            http_res_error(res, 500, "out_of_memory", "Out of memory");
            return;
        }
        if (n)
            drop_pending(s, req, ids, n);
        free(ids);
    }
    json_free(body);
    srv_broadcast_status(s);
    http_res_empty(res, 200);
}

/* ------------------------------------------------------------------ /interrupt, /free */

/* The running prompts an interrupt is about (several run at once with --lanes). */
enum { MAX_RUNNING = 64 };
typedef struct {
    const char *want; /* NULL = whatever runs */
    struct {
        char id[160];
        char owner[64];
    } hit[MAX_RUNNING];
    size_t n;
    bool found;
} running_t;

static void find_running(void *ud, const srv_item_t *it, bool running)
{
    running_t *r = ud;
    if (!running || (r->want && strcmp(r->want, it->prompt_id)) || r->n == MAX_RUNNING)
        return;
    r->found = true;
    snprintf(r->hit[r->n].id, sizeof r->hit[r->n].id, "%s", it->prompt_id);
    snprintf(r->hit[r->n].owner, sizeof r->hit[r->n].owner, "%s", it->owner);
    r->n++;
}

static bool may_cancel(const auth_principal_t *p, const char *owner)
{
    return own_may(p, owner, AUTH_SCOPE(QUEUE_CANCEL_ANY)) || auth_has(p, AUTH_SCOPE(SYSTEM_ADMIN));
}

void srv_h_interrupt(srv_t *s, http_req_t *req, http_res_t *res)
{
    /* The body is optional and anything that is not JSON counts as none (ComfyUI). */
    json_t *body = NULL;
    if (req->body.len)
        json_parse(req->body.data, req->body.len, &body, NULL, 0);
    const char *id = json_str(json_object_get(body, "prompt_id"));
    running_t *r = calloc(1, sizeof *r);
    if (!r) {
        json_free(body);
        http_res_error(res, 500, "out_of_memory", "Out of memory");
        return;
    }
    r->want = id;
    srv_queue_each(&s->queue, find_running, r);
    if (!r->found && id) {
        /* Not running: nothing to stop, but someone else's prompt is still not ours to name. */
        store_prompt_t p;
        memset(&p, 0, sizeof p);
        bool known = s->store && store_get(s->store, id, &p) == 0;
        bool theirs = known && !may_cancel(&req->principal, p.owner);
        store_prompt_free(&p);
        if (theirs) {
            http_res_error(res, 403, "forbidden", "This prompt belongs to another user");
        } else {
            if (known) /* a no-op (it is not running), but asked for all the same */
                own_audit(s, req, "prompt.interrupt", id, NULL);
            http_res_empty(res, 200);
        }
        free(r);
        json_free(body);
        return;
    }
    json_free(body);
    if (!r->found) {
        free(r);
        http_res_empty(res, 200); /* nothing runs */
        return;
    }
    /* Several prompts may run at once (--lanes): a global interrupt stops those the caller
     * may cancel, and is refused only when it may cancel none of them. By id even then: a
     * prompt that started meanwhile is not stopped. */
    size_t stopped = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!may_cancel(&req->principal, r->hit[i].owner))
            continue;
        if (s->eng)
            eng_interrupt(s->eng, r->hit[i].id);
        own_audit(s, req, "prompt.interrupt", r->hit[i].id, NULL);
        stopped++;
    }
    free(r);
    if (!stopped) {
        http_res_error(res, 403, "forbidden", "The running prompt belongs to another user");
        return;
    }
    http_res_empty(res, 200);
}

void srv_h_free(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *body;
    if (!srv__body_json(req, res, true, &body))
        return;
    if (srv__truthy(json_object_get(body, "unload_models")))
        atomic_store(&s->free_models, true);
    if (srv__truthy(json_object_get(body, "free_memory")))
        atomic_store(&s->free_memory, true);
    json_free(body);
    srv__free_if_idle(s); /* else the worker applies them before its next prompt */
    http_res_empty(res, 200);
}
