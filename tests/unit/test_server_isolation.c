/* Isolation between principals in the route handlers: queue, history, interrupt and
 * deletion; /view and uploads by file owner; per-user library folders; workflow sharing and
 * share links; the node class policy; quotas; and the owner on WebSocket targets. The
 * handlers are called directly with a real store, a real auth database (cheap argon2) and
 * an env on a temp dir, as alice and bob (role user), carol (editor), vera (viewer) and
 * root (admin). */
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app_internal.h"
#include "ownership.h"
#include "routes_share.h"
#include "srv_auth.h"

typedef void (*handler_fn)(srv_t *s, http_req_t *req, http_res_t *res);

#define BOUNDARY "----weftIsolationBoundary"

/* ------------------------------------------------------------------ WebSocket stand-in */

/* The hub is replaced at link time (nothing here pulls ws_hub.o): every message the server
 * routes is recorded with its target, so the tests see exactly who would receive it. */
typedef struct {
    char type[32];
    char client[64];
    char prompt[64];
    char owner[64];
    bool has_client, has_owner;
    auth_scopes_t any;
} sent_t;

static sent_t sent[64];
static size_t n_sent;

static void record(ws_target_t to, const char *type)
{
    if (n_sent == sizeof sent / sizeof sent[0])
        return;
    sent_t *m = &sent[n_sent++];
    memset(m, 0, sizeof *m);
    snprintf(m->type, sizeof m->type, "%s", type);
    m->has_client = to.client_id != NULL;
    snprintf(m->client, sizeof m->client, "%s", to.client_id ? to.client_id : "");
    snprintf(m->prompt, sizeof m->prompt, "%s", to.prompt_id ? to.prompt_id : "");
    m->has_owner = to.owner != NULL;
    snprintf(m->owner, sizeof m->owner, "%s", to.owner ? to.owner : "");
    m->any = to.any_scopes;
}

void ws_send_json(ws_hub_t *h, ws_target_t to, const char *type, const json_t *data)
{
    (void)h;
    (void)data;
    record(to, type);
}

void ws_send_binary(ws_hub_t *h, ws_target_t to, uint32_t event, const void *payload, size_t n)
{
    (void)h;
    (void)event;
    (void)payload;
    (void)n;
    record(to, "<binary>");
}

void ws_send_preview(ws_hub_t *h, ws_target_t to, const char *node_id, const char *prompt_id, uint32_t format,
                     const void *img, size_t n)
{
    (void)h;
    (void)node_id;
    (void)prompt_id;
    (void)format;
    (void)img;
    (void)n;
    record(to, "<binary>");
}

/* The gate's client address, replaced for the same reason (auth_gate.o would bring the
 * router and with it the hub): the peer without its port. */
void srv__client_ip(const srv_t *s, const http_req_t *req, char out[64])
{
    (void)s;
    snprintf(out, 64, "%.*s", (int)strcspn(req->peer, ":"), req->peer);
}

/* ------------------------------------------------------------------ fixture */

typedef struct {
    srv_t s;
    char *dir, *db;
    auth_principal_t alice, bob, carol, vera, root, nobody;
} fx_t;

static fx_t fx;
static int hub_dummy;

static int privileged_execute(node_ctx_t *ctx)
{
    (void)ctx;
    return 0;
}

static const node_input_t priv_inputs[] = {{.name = "images", .type = "IMAGE", .section = NODE_REQUIRED}};
/* A node that would write anywhere: only prompt:any_node may run it. */
static const node_def_t priv_def = {.name = "TestWriteAnywhere",
                                    .inputs = priv_inputs,
                                    .n_inputs = 1,
                                    .flags = NODE_OUTPUT_NODE | NODE_PRIVILEGED,
                                    .execute = privileged_execute};

static void principal(auth_principal_t *p, const char *name, auth_role_t role)
{
    memset(p, 0, sizeof *p);
    int64_t id = 0;
    assert_int_equal(auth_user_add(fx.s.auth, name, "correct horse", role, &id), 0);
    p->user_id = id;
    snprintf(p->user, sizeof p->user, "%s", name);
    p->role = role;
    p->scopes = auth_role_scopes(role);
    p->via = AUTH_VIA_KEY;
}

static int fx_setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    n_sent = 0;
    fx.dir = tu_fresh_dir("iso");
    srv_t *s = &fx.s;
    /* No srv_config_parse: it would pull in the real hub (ws_limits_init); the handlers
     * under test read no configuration. */
    assert_int_equal(srv_env_open(&s->env, fx.dir), 0);
    assert_int_equal(node_registry_new(&s->reg), 0);
    assert_int_equal(node_registry_add_builtins(s->reg), 0);
    assert_int_equal(node_registry_add(s->reg, &priv_def), 0);
    size_t n = strlen(fx.dir) + 16;
    fx.db = malloc(n);
    snprintf(fx.db, n, "%s/weft.db", fx.dir);
    /* The store first: it refuses a file that already holds someone else's tables. */
    assert_int_equal(store_open(fx.db, &s->store), 0);
    auth_config_t ac;
    auth_config_init(&ac);
    ac.argon_t = 1;
    ac.argon_m_kib = 64;
    assert_int_equal(auth_open(fx.db, &ac, &s->auth), 0);
    assert_int_equal(srv_queue_init(&s->queue), 0);
    s->ws = (ws_hub_t *)&hub_dummy;
    principal(&fx.alice, "alice", AUTH_ROLE_USER);
    principal(&fx.bob, "bob", AUTH_ROLE_USER);
    principal(&fx.carol, "carol", AUTH_ROLE_EDITOR);
    principal(&fx.vera, "vera", AUTH_ROLE_VIEWER);
    principal(&fx.root, "root", AUTH_ROLE_ADMIN);
    return 0;
}

static int fx_teardown(void **state)
{
    srv_t *s = &fx.s;
    srv_queue_destroy(&s->queue);
    auth_close(s->auth);
    store_close(s->store);
    node_registry_free(s->reg);
    srv_env_close(&s->env);
    free(s->cur_prompt_id);
    free(s->cur_client_id);
    free(s->cur_node);
    free(fx.db);
    free(fx.dir);
    return 0;
}

/* ------------------------------------------------------------------ requests */

typedef struct {
    http_req_t req;
    http_res_t res;
    http_header_t hdr;
    json_t *json; /* the answer, when JSON */
} call_t;

/* Runs h as principal p (NULL = no principal). query may be NULL; p0/p1 are the router's
 * decoded captures; ctype a Content-Type header. */
static void callx(call_t *c, const auth_principal_t *p, handler_fn h, const char *method, const char *query,
                  const char *p0, const char *p1, const void *body, size_t body_len, const char *ctype)
{
    memset(c, 0, sizeof *c);
    c->req.method = method;
    c->req.path = strdup("/x");
    c->req.query = strdup(query ? query : "");
    snprintf(c->req.peer, sizeof c->req.peer, "192.0.2.7:50123");
    if (p)
        c->req.principal = *p;
    if (body)
        assert_int_equal(base_buf_append(&c->req.body, body, body_len), 0);
    if (p0)
        c->req.params[c->req.n_params++] = strdup(p0);
    if (p1)
        c->req.params[c->req.n_params++] = strdup(p1);
    if (ctype) {
        c->hdr.name = "content-type";
        c->hdr.value = (char *)ctype;
        c->req.headers = &c->hdr;
        c->req.n_headers = 1;
    }
    h(&fx.s, &c->req, &c->res);
    assert_int_not_equal(c->res.status, 0);
    if (c->res.body.len && c->res.content_type && strstr(c->res.content_type, "json") &&
        json_parse(c->res.body.data, c->res.body.len, &c->json, NULL, 0))
        c->json = NULL;
}

static void call(call_t *c, const auth_principal_t *p, handler_fn h, const char *method, const char *query,
                 const char *p0, const char *p1, const char *body)
{
    callx(c, p, h, method, query, p0, p1, body, body ? strlen(body) : 0, NULL);
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

static char *dump(const json_t *j)
{
    char *s = json_dump(j, JSON_COMPACT);
    assert_non_null(s);
    return s;
}

static void assert_json(const json_t *j, const char *expected)
{
    assert_non_null(j);
    char *s = dump(j);
    if (strcmp(s, expected))
        fail_msg("json %s\n   expected %s", s, expected);
    free(s);
}

static void expect_status(const call_t *c, int status)
{
    if (c->res.status != status)
        fail_msg("status %d, expected %d (body %.*s)", c->res.status, status, (int)c->res.body.len,
                 c->res.body.data ? c->res.body.data : "");
}

static const char *err_type(const call_t *c)
{
    return json_str(json_object_get(json_object_get(c->json, "error"), "type"));
}

/* Runs a request and checks status (and error type, when given); nothing is kept. */
static void expect(const auth_principal_t *p, handler_fn h, const char *method, const char *query,
                   const char *p0, const char *p1, const char *body, int status, const char *type)
{
    call_t c;
    call(&c, p, h, method, query, p0, p1, body);
    expect_status(&c, status);
    if (type)
        assert_string_equal(err_type(&c), type);
    call_free(&c);
}

static bool has_header(const call_t *c, const char *line)
{
    return c->res.headers.data && strstr(c->res.headers.data, line) != NULL;
}

/* ------------------------------------------------------------------ helpers */

static char *invert_body(const char *extra)
{
    char *wf = tu_read_source("workflows/invert.api.json", NULL);
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_printf(&b, "{\"prompt\": %s%s%s}", wf, extra ? ", " : "", extra ? extra : ""),
                     0);
    free(wf);
    return base_buf_take(&b);
}

/* POST /prompt as p with an explicit id; the status must be as given. */
static void submit(const auth_principal_t *p, const char *id, int status)
{
    char extra[160];
    snprintf(extra, sizeof extra, "\"prompt_id\": \"%s\", \"client_id\": \"shared-cid\"", id);
    char *body = invert_body(extra);
    call_t c;
    call(&c, p, srv_h_prompt_post, "POST", NULL, NULL, NULL, body);
    free(body);
    expect_status(&c, status);
    call_free(&c);
}

/* Ids in the queue view ("running|pending,pending") of GET /queue as p. */
static void expect_queue(const auth_principal_t *p, const char *expected)
{
    call_t c;
    call(&c, p, srv_h_queue_get, "GET", NULL, NULL, NULL, NULL);
    expect_status(&c, 200);
    char got[512] = "";
    const json_t *run = json_object_get(c.json, "queue_running"),
                 *pend = json_object_get(c.json, "queue_pending");
    for (size_t i = 0; i < json_len(run); i++) {
        strcat(got, json_str(json_at(json_at(run, i), 1)));
        strcat(got, ",");
    }
    strcat(got, "|");
    for (size_t i = 0; i < json_len(pend); i++) {
        strcat(got, json_str(json_at(json_at(pend, i), 1)));
        strcat(got, ",");
    }
    if (strcmp(got, expected))
        fail_msg("queue as %s: %s, expected %s", p->user, got, expected);
    call_free(&c);
}

/* Whether the audit log holds action on target. */
static bool audited(const char *who, const char *action, const char *target)
{
    json_t *log = auth_audit_list(fx.s.auth, 1000, 0);
    assert_non_null(log);
    bool found = false;
    for (size_t i = 0; i < json_len(log) && !found; i++) {
        const json_t *e = json_at(log, i);
        const char *w = json_str(json_object_get(e, "who")), *a = json_str(json_object_get(e, "action"));
        const char *t = json_str(json_object_get(e, "target"));
        const char *ip = json_str(json_object_get(e, "ip"));
        found = w && a && t && !strcmp(w, who) && !strcmp(a, action) && !strcmp(t, target);
        if (found)
            assert_string_equal(ip, "192.0.2.7");
    }
    json_free(log);
    return found;
}

/* A finished history row owned by owner (NULL = none). */
static void finished_row(const char *id, const char *owner)
{
    json_t *prompt = json_new_object();
    store_prompt_t row = {
        .prompt_id = (char *)id, .number = 1, .prompt = prompt, .owner = (char *)owner, .created_ms = 1};
    assert_int_equal(store_enqueue(fx.s.store, &row), 0);
    json_free(prompt);
    assert_int_equal(store_mark_running(fx.s.store, id, 2), 0);
    json_t *o = json_new_object(), *m = json_new_array();
    assert_int_equal(store_finish(fx.s.store, id, STORE_SUCCESS, 3, o, m, NULL, NULL), 0);
    json_free(o);
    json_free(m);
}

static void write_file(const char *folder, const char *rel, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", fx.dir, folder, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    assert_int_equal(base_mkdir_p(path), 0);
    *slash = '/';
    tu_write_file(path, text, strlen(text));
}

static char *read_file(const char *folder, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", fx.dir, folder, rel);
    char *data = NULL;
    size_t n = 0;
    return base_read_file(path, 1 << 20, &data, &n) ? NULL : data;
}

static void record_file(const char *folder, const char *rel, const char *owner)
{
    store_file_ref_t ref = {folder, rel};
    assert_int_equal(store_files_record(fx.s.store, &ref, 1, owner, "p", 1), 0);
}

/* ------------------------------------------------------------------ queue, interrupt */

static void test_queue_isolation(void **state)
{
    srv_t *s = &fx.s;
    submit(&fx.alice, "a1", 200);
    submit(&fx.alice, "a2", 200);
    submit(&fx.bob, "b1", 200);
    submit(&fx.carol, "c1", 200);
    assert_true(audited("alice", "prompt.submit", "a1"));
    assert_true(audited("bob", "prompt.submit", "b1"));

    /* The owner is in the store row and the queue item. */
    store_prompt_t row;
    assert_int_equal(store_get(s->store, "b1", &row), 0);
    assert_string_equal(row.owner, "bob");
    store_prompt_free(&row);

    expect_queue(&fx.alice, "|a1,a2,");
    expect_queue(&fx.bob, "|b1,");
    /* Pending prompts are listed in the order they start: round-robin across users (issue 8),
     * each user's own in (number, seq) order. */
    expect_queue(&fx.carol, "|a1,b1,c1,a2,"); /* editor: queue:read:any */
    expect_queue(&fx.root, "|a1,b1,c1,a2,");
    expect_queue(&fx.nobody, "|");

    /* a1 runs: someone else's running item is left out. */
    srv_item_t *run = srv_queue_pop(&s->queue);
    assert_string_equal(run->prompt_id, "a1");
    assert_string_equal(run->owner, "alice");
    expect_queue(&fx.alice, "a1,|a2,");
    expect_queue(&fx.bob, "|b1,");
    expect_queue(&fx.carol, "a1,|b1,c1,a2,"); /* alice just had her turn */

    /* Interrupt: only the owner or queue:cancel:any; 403 otherwise. */
    expect(&fx.bob, srv_h_interrupt, "POST", NULL, NULL, NULL, "{\"prompt_id\": \"a1\"}", 403, "forbidden");
    expect(&fx.bob, srv_h_interrupt, "POST", NULL, NULL, NULL, NULL, 403, "forbidden");
    expect(&fx.carol, srv_h_interrupt, "POST", NULL, NULL, NULL, "{}", 403, "forbidden"); /* no cancel:any */
    expect(&fx.bob, srv_h_interrupt, "POST", NULL, NULL, NULL, "{\"prompt_id\": \"a2\"}", 403, "forbidden");
    expect(&fx.bob, srv_h_interrupt, "POST", NULL, NULL, NULL, "{\"prompt_id\": \"nope\"}", 200, NULL);
    expect(&fx.bob, srv_h_interrupt, "POST", NULL, NULL, NULL, "{\"prompt_id\": \"b1\"}", 200, NULL);
    expect(&fx.alice, srv_h_interrupt, "POST", NULL, NULL, NULL, "{\"prompt_id\": \"a1\"}", 200, NULL);
    expect(&fx.alice, srv_h_interrupt, "POST", NULL, NULL, NULL, "not json", 200, NULL);
    expect(&fx.root, srv_h_interrupt, "POST", NULL, NULL, NULL, NULL, 200, NULL);
    assert_true(audited("alice", "prompt.interrupt", "a1"));
    assert_true(audited("root", "prompt.interrupt", "a1"));
    assert_false(audited("bob", "prompt.interrupt", "a1"));

    /* Delete and clear reach only one's own pending prompts. */
    expect(&fx.bob, srv_h_queue_post, "POST", NULL, NULL, NULL, "{\"delete\": [\"a2\", \"c1\"]}", 200, NULL);
    expect_queue(&fx.root, "a1,|b1,c1,a2,");
    expect(&fx.bob, srv_h_queue_post, "POST", NULL, NULL, NULL, "{\"clear\": true}", 200, NULL);
    expect_queue(&fx.root, "a1,|c1,a2,");
    assert_true(audited("bob", "prompt.cancel", "b1"));
    expect(&fx.carol, srv_h_queue_post, "POST", NULL, NULL, NULL, "{\"clear\": true, \"delete\": [\"a2\"]}",
           200, NULL);
    expect_queue(&fx.root, "a1,|a2,");
    expect(&fx.alice, srv_h_queue_post, "POST", NULL, NULL, NULL, "{\"delete\": [\"a1\"]}", 200, NULL);
    expect_queue(&fx.root, "a1,|a2,"); /* running: never deleted */
    expect(&fx.root, srv_h_queue_post, "POST", NULL, NULL, NULL, "{\"delete\": [\"a2\"]}", 200, NULL);
    expect_queue(&fx.root, "a1,|");
    assert_true(audited("root", "prompt.cancel", "a2"));
    /* The store agrees (a1 is still a pending row: no worker marked it running). */
    store_prompt_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_list_pending(s->store, &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].prompt_id, "a1");
    store_prompt_free(&rows[0]);
    free(rows);

    srv_queue_done(&s->queue);
    srv_item_free(run);
}

static void test_extra_data_credentials(void **state)
{
    char *body = invert_body("\"prompt_id\": \"x1\", \"extra_data\": {\"api_key_comfy_org\": \"s1\", "
                             "\"authorization\": \"Bearer weft_abc_def\", \"mine\": \"weft_k1_secretpart\", "
                             "\"keep\": \"ok\", \"auth_token_comfy_org\": \"s2\"}");
    call_t c;
    call(&c, &fx.alice, srv_h_prompt_post, "POST", NULL, NULL, NULL, body);
    free(body);
    expect_status(&c, 200);
    call_free(&c);
    call(&c, &fx.alice, srv_h_queue_get, "GET", NULL, NULL, NULL, NULL);
    assert_json(json_at(json_at(json_object_get(c.json, "queue_pending"), 0), 3), "{\"keep\":\"ok\"}");
    assert_null(strstr(c.res.body.data, "weft_k1"));
    assert_null(strstr(c.res.body.data, "weft_abc"));
    call_free(&c);
}

/* ------------------------------------------------------------------ history */

static char *history_ids(const call_t *c)
{
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_puts(&b, ""), 0);
    for (size_t i = 0; i < json_len(c->json); i++)
        assert_int_equal(base_buf_printf(&b, "%s,", json_key_at(c->json, i)), 0);
    return base_buf_take(&b);
}

static void expect_history(const auth_principal_t *p, const char *query, const char *expected)
{
    call_t c;
    call(&c, p, srv_h_history_get, "GET", query, NULL, NULL, NULL);
    expect_status(&c, 200);
    char *ids = history_ids(&c);
    if (strcmp(ids, expected))
        fail_msg("history as %s (%s): %s, expected %s", p->user, query ? query : "", ids, expected);
    free(ids);
    call_free(&c);
}

static void test_history_isolation(void **state)
{
    finished_row("h-a1", "alice");
    finished_row("h-b1", "bob");
    finished_row("h-a2", "alice");
    finished_row("h-x", NULL); /* from before ownership */
    finished_row("h-a3", "alice");

    expect_history(&fx.alice, NULL, "h-a1,h-a2,h-a3,");
    expect_history(&fx.bob, NULL, "h-b1,");
    expect_history(&fx.carol, NULL, ""); /* editor: no history:read:any */
    expect_history(&fx.nobody, NULL, "");
    expect_history(&fx.root, NULL, "h-a1,h-b1,h-a2,h-x,h-a3,");
    /* Paging runs over one's own entries. */
    expect_history(&fx.alice, "max_items=1", "h-a3,");
    expect_history(&fx.alice, "max_items=2&offset=0", "h-a1,h-a2,");
    expect_history(&fx.alice, "max_items=5&offset=2", "h-a3,");
    expect_history(&fx.bob, "max_items=1", "h-b1,");

    /* One entry: others' answer {} exactly like unknown ids. */
    call_t c;
    call(&c, &fx.bob, srv_h_history_one, "GET", NULL, "h-a1", NULL, NULL);
    expect_status(&c, 200);
    assert_json(c.json, "{}");
    call_free(&c);
    call(&c, &fx.bob, srv_h_history_one, "GET", NULL, "h-x", NULL, NULL);
    assert_json(c.json, "{}");
    call_free(&c);
    call(&c, &fx.alice, srv_h_history_one, "GET", NULL, "h-a1", NULL, NULL);
    assert_int_equal(json_len(c.json), 1);
    assert_non_null(json_object_get(c.json, "h-a1"));
    call_free(&c);
    call(&c, &fx.root, srv_h_history_one, "GET", NULL, "h-x", NULL, NULL);
    assert_non_null(json_object_get(c.json, "h-x"));
    call_free(&c);

    /* Deletion: own only; clear clears one's own; admins reach any. */
    expect(&fx.bob, srv_h_history_post, "POST", NULL, NULL, NULL, "{\"delete\": [\"h-a1\", \"h-x\"]}", 200,
           NULL);
    expect_history(&fx.root, NULL, "h-a1,h-b1,h-a2,h-x,h-a3,");
    expect(&fx.bob, srv_h_history_post, "POST", NULL, NULL, NULL, "{\"clear\": true}", 200, NULL);
    expect_history(&fx.root, NULL, "h-a1,h-a2,h-x,h-a3,");
    assert_true(audited("bob", "history.clear", "bob"));
    expect(&fx.alice, srv_h_history_post, "POST", NULL, NULL, NULL, "{\"delete\": [\"h-a2\"]}", 200, NULL);
    expect_history(&fx.root, NULL, "h-a1,h-x,h-a3,");
    assert_true(audited("alice", "history.delete", "h-a2"));
    expect(&fx.root, srv_h_history_post, "POST", NULL, NULL, NULL, "{\"delete\": [\"h-x\", \"h-a1\"]}", 200,
           NULL);
    expect_history(&fx.root, NULL, "h-a3,");
    expect(&fx.root, srv_h_history_post, "POST", NULL, NULL, NULL, "{\"clear\": true}", 200, NULL);
    expect_history(&fx.root, NULL, "");
}

/* ------------------------------------------------------------------ /view, uploads */

static void view_as(call_t *c, const auth_principal_t *p, const char *query)
{
    call(c, p, srv_h_view, "GET", query, NULL, NULL, NULL);
    assert_true(has_header(c, "X-Content-Type-Options: nosniff\r\n"));
    assert_true(has_header(c, "Content-Security-Policy: sandbox\r\n"));
}

static void expect_view(const auth_principal_t *p, const char *query, int status, const char *body)
{
    call_t c;
    view_as(&c, p, query);
    expect_status(&c, status);
    if (body) {
        assert_int_equal(c.res.body.len, strlen(body));
        assert_memory_equal(c.res.body.data, body, strlen(body));
    } else {
        assert_string_equal(err_type(&c), "not_found");
    }
    call_free(&c);
}

static void test_view_ownership(void **state)
{
    write_file("output", "alice_00001_.png", "ALICE");
    write_file("output", "sub/dir/bob.txt", "BOB");
    write_file("output", "stray.txt", "STRAY");
    write_file("temp", "alice_preview.png", "PREVIEW");
    record_file("output", "alice_00001_.png", "alice");
    record_file("output", "sub/dir/bob.txt", "bob");
    record_file("temp", "alice_preview.png", "alice");

    expect_view(&fx.alice, "filename=alice_00001_.png&type=output", 200, "ALICE");
    expect_view(&fx.alice, "filename=alice_00001_.png", 200, "ALICE"); /* output is the default */
    expect_view(&fx.alice, "filename=alice_00001_.png%20%5Boutput%5D", 200, "ALICE");
    expect_view(&fx.bob, "filename=alice_00001_.png&type=output", 404, NULL);
    expect_view(&fx.carol, "filename=alice_00001_.png", 404, NULL); /* editors: own outputs only */
    expect_view(&fx.nobody, "filename=alice_00001_.png", 404, NULL);
    expect_view(&fx.root, "filename=alice_00001_.png", 200, "ALICE");
    expect_view(&fx.alice, "filename=alice_preview.png&type=temp", 200, "PREVIEW");
    expect_view(&fx.bob, "filename=alice_preview.png&type=temp", 404, NULL);
    /* The same name in another folder is another file. */
    expect_view(&fx.alice, "filename=alice_00001_.png&type=temp", 404, NULL);
    /* Subfolders normalise to the recorded path. */
    expect_view(&fx.bob, "filename=bob.txt&subfolder=sub/./dir/", 200, "BOB");
    expect_view(&fx.bob, "filename=bob.txt&subfolder=sub/x/../dir", 200, "BOB");
    expect_view(&fx.alice, "filename=bob.txt&subfolder=sub/dir", 404, NULL);
    /* Unowned files: outputs:read:any only; absent files look the same. */
    expect_view(&fx.alice, "filename=stray.txt", 404, NULL);
    expect_view(&fx.root, "filename=stray.txt", 200, "STRAY");
    expect_view(&fx.alice, "filename=nothing.png", 404, NULL);
    expect_view(&fx.root, "filename=nothing.png", 404, NULL);
    /* Recorded but gone from disk. */
    record_file("output", "gone.png", "alice");
    expect_view(&fx.alice, "filename=gone.png", 404, NULL);
}

static void upload_as(call_t *c, const auth_principal_t *p, handler_fn h, const char *filename,
                      const char *data, bool overwrite, const char *original_ref)
{
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(
        base_buf_printf(&b,
                        "--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"%s\"\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n%s\r\n",
                        BOUNDARY, filename, data),
        0);
    if (overwrite)
        assert_int_equal(
            base_buf_printf(&b, "--%s\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n",
                            BOUNDARY),
            0);
    if (original_ref)
        assert_int_equal(
            base_buf_printf(&b, "--%s\r\nContent-Disposition: form-data; name=\"original_ref\"\r\n\r\n%s\r\n",
                            BOUNDARY, original_ref),
            0);
    assert_int_equal(base_buf_printf(&b, "--%s--\r\n", BOUNDARY), 0);
    callx(c, p, h, "POST", NULL, NULL, NULL, b.data, b.len, "multipart/form-data; boundary=" BOUNDARY);
    base_buf_free(&b);
}

static void expect_upload(const auth_principal_t *p, const char *filename, const char *data, bool overwrite,
                          const char *name)
{
    call_t c;
    upload_as(&c, p, srv_h_upload_image, filename, data, overwrite, NULL);
    expect_status(&c, 200);
    assert_string_equal(json_str(json_object_get(c.json, "name")), name);
    assert_string_equal(json_str(json_object_get(c.json, "type")), "input");
    call_free(&c);
}

static void test_upload_collisions(void **state)
{
    expect_upload(&fx.alice, "pic.png", "XXXX", false, "pic.png");
    assert_true(audited("alice", "upload", "pic.png"));
    /* The same bytes under another user's name: never matched against it, never reused. */
    expect_upload(&fx.bob, "pic.png", "XXXX", false, "pic (1).png");
    /* overwrite=true does not reach another user's file either. */
    expect_upload(&fx.bob, "pic.png", "YYYY", true, "pic (1).png");
    char *a = read_file("input", "pic.png"), *b = read_file("input", "pic (1).png");
    assert_string_equal(a, "XXXX");
    assert_string_equal(b, "YYYY");
    free(a);
    free(b);
    /* One's own file: the same bytes are found, overwrite replaces. */
    expect_upload(&fx.alice, "pic.png", "XXXX", false, "pic.png");
    expect_upload(&fx.alice, "pic.png", "ZZZZ", true, "pic.png");
    a = read_file("input", "pic.png");
    assert_string_equal(a, "ZZZZ");
    free(a);
    expect_upload(&fx.alice, "pic.png", "WWWW", false, "pic (2).png");
    /* A file nobody owns belongs to the admins. */
    write_file("input", "old.png", "OLD");
    expect_upload(&fx.bob, "old.png", "OLD", true, "old (1).png");
    expect_upload(&fx.root, "old.png", "OLD", false, "old.png");
    a = read_file("input", "old.png");
    assert_string_equal(a, "OLD");
    free(a);

    /* Each sees its own uploads only. */
    expect_view(&fx.alice, "filename=pic.png&type=input", 200, "ZZZZ");
    expect_view(&fx.bob, "filename=pic.png&type=input", 404, NULL);
    expect_view(&fx.bob, "filename=pic%20(1).png&type=input", 200, "YYYY");
    expect_view(&fx.alice, "filename=pic%20(1).png&type=input", 404, NULL);

    /* A mask needs an original the uploader may read. */
    call_t c;
    upload_as(&c, &fx.bob, srv_h_upload_mask, "mask.png", "MMMM", false,
              "{\"filename\": \"pic.png\", \"type\": \"input\", \"subfolder\": \"\"}");
    expect_status(&c, 404);
    assert_string_equal(err_type(&c), "not_found");
    call_free(&c);
    upload_as(&c, &fx.alice, srv_h_upload_mask, "mask.png", "MMMM", false,
              "{\"filename\": \"pic.png\", \"type\": \"input\", \"subfolder\": \"\"}");
    expect_status(&c, 400); /* readable, but not a PNG: past the ownership check */
    assert_string_equal(err_type(&c), "invalid_image");
    call_free(&c);
}

/* ------------------------------------------------------------------ user folders */

static void test_user_roots(void **state)
{
    expect(&fx.alice, srv_h_userdata_post, "POST", NULL, "workflows/a.json", NULL, "{\"a\": 1}", 200, NULL);
    expect(&fx.bob, srv_h_userdata_post, "POST", NULL, "workflows/a.json", NULL, "{\"b\": 2}", 200, NULL);
    char *a = read_file("user", "alice/workflows/a.json"), *b = read_file("user", "bob/workflows/a.json");
    assert_string_equal(a, "{\"a\": 1}");
    assert_string_equal(b, "{\"b\": 2}");
    free(a);
    free(b);
    call_t c;
    call(&c, &fx.bob, srv_h_userdata_get, "GET", NULL, "workflows/a.json", NULL, NULL);
    expect_status(&c, 200);
    assert_memory_equal(c.res.body.data, "{\"b\": 2}", 8);
    call_free(&c);
    /* carol has no library yet, and nothing reaches the others' folders. */
    expect(&fx.carol, srv_h_userdata_get, "GET", NULL, "workflows/a.json", NULL, NULL, 404, "not_found");
    expect(&fx.carol, srv_h_userdata_get, "GET", NULL, "../alice/workflows/a.json", NULL, NULL, 403, NULL);
    call(&c, &fx.carol, srv_h_userdata_v2, "GET", NULL, NULL, NULL, NULL);
    expect_status(&c, 200);
    assert_json(c.json, "[]");
    call_free(&c);
    call(&c, &fx.alice, srv_h_userdata_list, "GET", "dir=workflows", NULL, NULL, NULL);
    assert_json(c.json, "[\"a.json\"]");
    call_free(&c);
    /* An existing but empty folder lists as empty. */
    expect(&fx.bob, srv_h_userdata_delete, "DELETE", NULL, "workflows/a.json", NULL, NULL, 204, NULL);
    call(&c, &fx.bob, srv_h_userdata_list, "GET", "dir=workflows", NULL, NULL, NULL);
    expect_status(&c, 200);
    assert_json(c.json, "[]");
    call_free(&c);
    call(&c, &fx.bob, srv_h_userdata_v2, "GET", "path=workflows", NULL, NULL, NULL);
    expect_status(&c, 200);
    assert_json(c.json, "[]");
    call_free(&c);
    /* A principal without a user name has no folder. */
    expect(&fx.nobody, srv_h_userdata_get, "GET", NULL, "workflows/a.json", NULL, NULL, 403, "forbidden");
    expect(&fx.nobody, srv_h_userdata_post, "POST", NULL, "x.json", NULL, "{}", 403, "forbidden");
    expect(&fx.nobody, srv_h_userdata_v2, "GET", NULL, NULL, NULL, NULL, 403, "forbidden");
    /* --no-auth's principal is "local". */
    auth_principal_t local = {.role = AUTH_ROLE_ADMIN, .via = AUTH_VIA_NOAUTH};
    snprintf(local.user, sizeof local.user, "local");
    local.scopes = auth_role_scopes(AUTH_ROLE_ADMIN);
    expect(&local, srv_h_userdata_post, "POST", NULL, "settings.json", NULL, "{}", 200, NULL);
    struct stat st;
    char path[4096];
    snprintf(path, sizeof path, "%s/user/local/settings.json", fx.dir);
    assert_int_equal(stat(path, &st), 0);
}

/* ------------------------------------------------------------------ sharing */

static char *shared_list(const auth_principal_t *p)
{
    call_t c;
    call(&c, p, srv_h_shared_list, "GET", NULL, NULL, NULL, NULL);
    expect_status(&c, 200);
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_puts(&b, ""), 0);
    for (size_t i = 0; i < json_len(c.json); i++) {
        const json_t *e = json_at(c.json, i);
        assert_int_equal(json_len(e), 4);
        assert_non_null(json_object_get(e, "size"));
        assert_true(json_object_get(e, "modified")->u.num.d > 1.6e9);
        assert_int_equal(base_buf_printf(&b, "%s:%s,", json_str(json_object_get(e, "owner")),
                                         json_str(json_object_get(e, "path"))),
                         0);
    }
    call_free(&c);
    return base_buf_take(&b);
}

static void expect_shared(const auth_principal_t *p, const char *expected)
{
    char *got = shared_list(p);
    if (strcmp(got, expected))
        fail_msg("shared with %s: %s, expected %s", p->user, got, expected);
    free(got);
}

static void expect_open(const auth_principal_t *p, const char *owner, const char *path, int status,
                        const char *body)
{
    call_t c;
    call(&c, p, srv_h_shared_get, "GET", NULL, owner, path, NULL);
    expect_status(&c, status);
    if (body) {
        assert_int_equal(c.res.body.len, strlen(body));
        assert_memory_equal(c.res.body.data, body, strlen(body));
        assert_string_equal(c.res.content_type, "application/json");
        assert_true(has_header(&c, "X-Content-Type-Options: nosniff\r\n"));
    } else {
        assert_string_equal(err_type(&c), "not_found");
    }
    call_free(&c);
}

static void share(const auth_principal_t *p, const char *body, int status, const char *answer)
{
    call_t c;
    call(&c, p, srv_h_share_workflow, "POST", NULL, NULL, NULL, body);
    expect_status(&c, status);
    if (answer)
        assert_json(c.json, answer);
    call_free(&c);
}

static void test_sharing(void **state)
{
    const char *wf = "{\"nodes\": []}";
    expect(&fx.alice, srv_h_userdata_post, "POST", NULL, "workflows/a.json", NULL, wf, 200, NULL);
    expect(&fx.alice, srv_h_userdata_post, "POST", NULL, "workflows/b.json", NULL, "{}", 200, NULL);
    expect(&fx.carol, srv_h_userdata_post, "POST", NULL, "workflows/c.json", NULL, "{\"c\": 1}", 200, NULL);
    expect_shared(&fx.bob, "");

    /* With one user. */
    share(&fx.alice, "{\"path\": \"workflows/a.json\", \"users\": [\"bob\", \"BOB\"]}", 200,
          "{\"path\":\"workflows/a.json\",\"users\":[\"bob\"],\"roles\":[],\"public\":false}");
    assert_true(audited("alice", "workflow.share", "workflows/a.json"));
    expect_shared(&fx.bob, "alice:workflows/a.json,");
    expect_shared(&fx.alice, ""); /* one's own are not "shared with me" */
    expect_shared(&fx.carol, "");
    expect_open(&fx.bob, "alice", "workflows/a.json", 200, wf);
    expect_open(&fx.bob, "alice", "workflows/./a.json", 200, wf);
    expect_open(&fx.carol, "alice", "workflows/a.json", 404, NULL);
    expect_open(&fx.bob, "alice", "workflows/b.json", 404, NULL); /* not shared */
    expect_open(&fx.bob, "alice", "workflows/zzz.json", 404, NULL);
    expect_open(&fx.bob, "alice", "../bob/workflows/a.json", 404, NULL);
    expect_open(&fx.bob, "..", "alice/workflows/a.json", 404, NULL);
    expect_open(&fx.alice, "alice", "workflows/b.json", 200, "{}"); /* one's own */

    /* A grantee reads only: the library routes act on its own folder. */
    expect(&fx.bob, srv_h_userdata_post, "POST", NULL, "workflows/a.json", NULL, "{\"evil\": 1}", 200, NULL);
    char *a = read_file("user", "alice/workflows/a.json");
    assert_string_equal(a, wf);
    free(a);
    expect(&fx.bob, srv_h_userdata_delete, "DELETE", NULL, "workflows/a.json", NULL, NULL, 204, NULL);
    expect_open(&fx.bob, "alice", "workflows/a.json", 200, wf);

    /* With a role (replacing the user grant), then publicly. */
    share(&fx.alice, "{\"path\": \"workflows/a.json\", \"roles\": [\"editor\"], \"public\": false}", 200,
          "{\"path\":\"workflows/a.json\",\"users\":[],\"roles\":[\"editor\"],\"public\":false}");
    expect_shared(&fx.bob, "");
    expect_shared(&fx.carol, "alice:workflows/a.json,");
    expect_open(&fx.carol, "alice", "workflows/a.json", 200, wf);
    expect_open(&fx.bob, "alice", "workflows/a.json", 404, NULL);
    share(&fx.carol, "{\"path\": \"workflows/c.json\", \"public\": true}", 200,
          "{\"path\":\"workflows/c.json\",\"users\":[],\"roles\":[],\"public\":true}");
    expect_shared(&fx.vera, "carol:workflows/c.json,");
    expect_shared(&fx.carol, "alice:workflows/a.json,");
    expect_shared(&fx.alice, "carol:workflows/c.json,");
    expect_open(&fx.vera, "carol", "workflows/c.json", 200, "{\"c\": 1}");

    /* Refusals change nothing. */
    share(&fx.alice, "{\"path\": \"workflows/none.json\", \"users\": [\"bob\"]}", 404, NULL);
    share(&fx.alice, "{\"path\": \"../carol/workflows/c.json\", \"users\": [\"bob\"]}", 400, NULL);
    share(&fx.alice, "{\"path\": \"workflows/a.json\", \"users\": [\"mallory\"]}", 400, NULL);
    share(&fx.alice, "{\"path\": \"workflows/a.json\", \"roles\": [\"god\"]}", 400, NULL);
    share(&fx.alice, "{\"path\": \"workflows/a.json\", \"users\": \"bob\"}", 400, NULL);
    share(&fx.alice, "{\"path\": \"workflows/a.json\", \"public\": \"yes\"}", 400, NULL);
    share(&fx.alice, "{\"path\": 3}", 400, NULL);
    share(&fx.alice, "[]", 400, NULL);
    share(&fx.nobody, "{\"path\": \"workflows/a.json\"}", 403, NULL);
    expect_shared(&fx.carol, "alice:workflows/a.json,");

    /* A moved file keeps its grants; a deleted one loses them. */
    expect(&fx.alice, srv_h_userdata_move, "POST", NULL, "workflows/a.json", "workflows/renamed.json", NULL,
           200, NULL);
    expect_shared(&fx.carol, "alice:workflows/renamed.json,");
    expect(&fx.alice, srv_h_userdata_delete, "DELETE", NULL, "workflows/renamed.json", NULL, NULL, 204, NULL);
    assert_true(audited("alice", "workflow.delete", "workflows/renamed.json"));
    expect(&fx.alice, srv_h_userdata_post, "POST", NULL, "workflows/renamed.json", NULL, "{}", 200, NULL);
    expect_shared(&fx.carol, "");

    /* Unshare. */
    expect_shared(&fx.vera, "carol:workflows/c.json,");
    expect(&fx.carol, srv_h_unshare_workflow, "DELETE", "path=workflows%2Fc.json", NULL, NULL, NULL, 204,
           NULL);
    assert_true(audited("carol", "workflow.unshare", "workflows/c.json"));
    expect_shared(&fx.vera, "");
    expect_open(&fx.vera, "carol", "workflows/c.json", 404, NULL);
    expect(&fx.carol, srv_h_unshare_workflow, "DELETE", NULL, NULL, NULL, NULL, 400, "invalid_path");
    expect(&fx.carol, srv_h_unshare_workflow, "DELETE", "path=..%2Fx", NULL, NULL, NULL, 400, "invalid_path");
}

/* ------------------------------------------------------------------ share links */

typedef struct {
    char id[64], token[64];
} link_t;

static link_t make_link(const auth_principal_t *p, const char *body)
{
    call_t c;
    call(&c, p, srv_h_share_link_create, "POST", NULL, NULL, NULL, body);
    expect_status(&c, 201);
    link_t l;
    snprintf(l.id, sizeof l.id, "%s", json_str(json_object_get(c.json, "id")));
    snprintf(l.token, sizeof l.token, "%s", json_str(json_object_get(c.json, "token")));
    assert_int_equal(strlen(l.token), 43);
    char url[128];
    snprintf(url, sizeof url, "/share/%s", l.token);
    assert_string_equal(json_str(json_object_get(c.json, "url")), url);
    int64_t exp = 0;
    assert_true(json_get_i64(json_object_get(c.json, "expires"), &exp));
    assert_true(exp > srv__now_ms() / 1000);
    call_free(&c);
    return l;
}

/* GET /share/{token} without a principal. */
static void expect_link(const char *token, int status, const char *body)
{
    call_t c;
    call(&c, NULL, srv_h_share_open, "GET", NULL, token, NULL, NULL);
    expect_status(&c, status);
    assert_true(has_header(&c, "X-Content-Type-Options: nosniff\r\n"));
    assert_true(has_header(&c, "Referrer-Policy: no-referrer\r\n"));
    assert_true(has_header(&c, "Cache-Control: no-store\r\n"));
    if (body) {
        assert_int_equal(c.res.body.len, strlen(body));
        assert_memory_equal(c.res.body.data, body, strlen(body));
        assert_true(has_header(&c, "Content-Security-Policy: sandbox\r\n"));
    } else {
        assert_string_equal(err_type(&c), "not_found");
    }
    call_free(&c);
}

static void raw_exec(const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx.db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_share_links(void **state)
{
    const char *wf = "{\"w\": true}";
    expect(&fx.carol, srv_h_userdata_post, "POST", NULL, "workflows/w.json", NULL, wf, 200, NULL);
    write_file("output", "o/carol_1.png", "PNGDATA");
    record_file("output", "o/carol_1.png", "carol");
    write_file("output", "page.html", "<script>x</script>");
    record_file("output", "page.html", "carol");

    link_t w = make_link(&fx.carol,
                         "{\"kind\": \"workflow\", \"path\": \"workflows/w.json\", \"expires_in_s\": 60}");
    link_t o =
        make_link(&fx.carol, "{\"kind\": \"output\", \"path\": \"o/carol_1.png\", \"folder\": \"output\"}");
    link_t h = make_link(&fx.carol, "{\"kind\": \"output\", \"path\": \"page.html\"}");
    assert_true(audited("carol", "share_link.create", w.id));
    expect_link(w.token, 200, wf);
    expect_link(o.token, 200, "PNGDATA");
    {
        /* Active types go out as attachments, as from /view. */
        call_t c;
        call(&c, NULL, srv_h_share_open, "GET", NULL, h.token, NULL, NULL);
        expect_status(&c, 200);
        assert_string_equal(c.res.content_type, "application/octet-stream");
        assert_true(has_header(&c, "Content-Disposition: attachment"));
        call_free(&c);
    }

    /* Listing: one's own, never a token; admins see all. */
    call_t c;
    call(&c, &fx.carol, srv_h_share_link_list, "GET", NULL, NULL, NULL, NULL);
    expect_status(&c, 200);
    assert_int_equal(json_len(c.json), 3);
    const json_t *first = json_at(c.json, 0);
    assert_string_equal(json_str(json_object_get(first, "kind")), "workflow");
    assert_string_equal(json_str(json_object_get(first, "path")), "workflows/w.json");
    assert_json(json_object_get(first, "revoked"), "false");
    assert_null(strstr(c.res.body.data, w.token));
    assert_null(strstr(c.res.body.data, "token"));
    call_free(&c);
    call(&c, &fx.bob, srv_h_share_link_list, "GET", NULL, NULL, NULL, NULL);
    assert_json(c.json, "[]");
    call_free(&c);
    call(&c, &fx.root, srv_h_share_link_list, "GET", NULL, NULL, NULL, NULL);
    assert_int_equal(json_len(c.json), 3);
    call_free(&c);

    /* Revocation: own or admin; others get 404. */
    expect(&fx.bob, srv_h_share_link_revoke, "DELETE", NULL, w.id, NULL, NULL, 404, "not_found");
    expect_link(w.token, 200, wf);
    expect(&fx.carol, srv_h_share_link_revoke, "DELETE", NULL, w.id, NULL, NULL, 204, NULL);
    assert_true(audited("carol", "share_link.revoke", w.id));
    expect_link(w.token, 404, NULL);
    expect(&fx.root, srv_h_share_link_revoke, "DELETE", NULL, o.id, NULL, NULL, 204, NULL);
    expect_link(o.token, 404, NULL);
    expect(&fx.carol, srv_h_share_link_revoke, "DELETE", NULL, "nope", NULL, NULL, 404, NULL);

    /* Expiry. */
    expect_link(h.token, 200, "<script>x</script>");
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE share_links SET expires_ms = 1000 WHERE id = '%s'", h.id);
    raw_exec(sql);
    expect_link(h.token, 404, NULL);

    /* Tokens: only the hash is stored; malformed ones are simply unknown. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx.db, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT token_sha256 FROM share_links", -1, &st, NULL),
                     SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        assert_int_equal(strlen(t), 64);
        assert_string_not_equal(t, w.token);
        rows++;
    }
    assert_int_equal(rows, 3);
    sqlite3_finalize(st);
    sqlite3_close(db);
    expect_link("short", 404, NULL);
    expect_link("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 404, NULL);
    expect_link("../../../../etc/passwd/AAAAAAAAAAAAAAAAAAAAA", 404, NULL);

    /* Creation refusals: others' files are "not found". */
    write_file("output", "alice.png", "A");
    record_file("output", "alice.png", "alice");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"output\", \"path\": \"alice.png\"}", 404, "not_found");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"output\", \"path\": \"missing.png\"}", 404, "not_found");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"workflow\", \"path\": \"workflows/none.json\"}", 404, "not_found");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"output\", \"path\": \"../alice.png\"}", 400, "invalid_path");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"output\", \"path\": \"o/carol_1.png\", \"folder\": \"models\"}", 400,
           "invalid_request");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"thing\", \"path\": \"x\"}", 400, "invalid_request");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"workflow\", \"path\": \"workflows/w.json\", \"expires_in_s\": 0}", 400,
           "invalid_request");
    expect(&fx.carol, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"workflow\", \"path\": \"workflows/w.json\", \"expires_in_s\": 1e12}", 400,
           "invalid_request");
    expect(&fx.nobody, srv_h_share_link_create, "POST", NULL, NULL, NULL,
           "{\"kind\": \"workflow\", \"path\": \"workflows/w.json\"}", 403, "forbidden");
    /* Admins may link any output. */
    link_t r = make_link(&fx.root, "{\"kind\": \"output\", \"path\": \"alice.png\"}");
    expect_link(r.token, 200, "A");
}

/* ------------------------------------------------------------------ node class policy */

static const char *priv_prompt =
    "{\"prompt\": {\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 8, "
    "\"height\": 8, \"batch_size\": 1, \"color\": 0}}, \"2\": {\"class_type\": "
    "\"TestWriteAnywhere\", \"inputs\": {\"images\": [\"1\", 0]}}, \"3\": "
    "{\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"1\", 0], "
    "\"filename_prefix\": \"x\"}}}}";

static void test_forbidden_node_class(void **state)
{
    call_t c;
    call(&c, &fx.alice, srv_h_prompt_post, "POST", NULL, NULL, NULL, priv_prompt);
    expect_status(&c, 400);
    assert_json(
        c.json,
        "{\"error\":{\"type\":\"prompt_outputs_failed_validation\",\"message\":\"Prompt outputs failed "
        "validation\",\"details\":\"Node class not allowed for your role: TestWriteAnywhere\","
        "\"extra_info\":{}},\"node_errors\":{\"2\":{\"errors\":[{\"type\":\"forbidden_node_class\","
        "\"message\":\"Node class not allowed for your role\",\"details\":\"TestWriteAnywhere\","
        "\"extra_info\":{}}],\"dependent_outputs\":[\"2\"],\"class_type\":\"TestWriteAnywhere\"}}}");
    call_free(&c);
    assert_int_equal(srv_queue_remaining(&fx.s.queue), 0);
    /* Refused before validation: an otherwise invalid prompt gets the same refusal. */
    call(&c, &fx.bob, srv_h_prompt_post, "POST", NULL, NULL, NULL,
         "{\"prompt\": {\"9\": {\"class_type\": \"TestWriteAnywhere\", \"inputs\": {}}}}");
    expect_status(&c, 400);
    const json_t *e9 = json_object_get(json_object_get(c.json, "node_errors"), "9");
    assert_string_equal(json_str(json_object_get(json_at(json_object_get(e9, "errors"), 0), "type")),
                        "forbidden_node_class");
    call_free(&c);
    /* prompt:any_node (editor, admin) runs it. */
    call(&c, &fx.carol, srv_h_prompt_post, "POST", NULL, NULL, NULL, priv_prompt);
    expect_status(&c, 200);
    call_free(&c);
    call(&c, &fx.root, srv_h_prompt_post, "POST", NULL, NULL, NULL, priv_prompt);
    expect_status(&c, 200);
    call_free(&c);
    assert_int_equal(srv_queue_remaining(&fx.s.queue), 2);
    /* Ordinary classes stay open to users. */
    submit(&fx.alice, "fine", 200);
}

/* ------------------------------------------------------------------ others' files as inputs */

static char *load_prompt(const char *image)
{
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(
        base_buf_printf(&b,
                        "{\"prompt\": {\"1\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": "
                        "\"%s\"}}, \"2\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": "
                        "[\"1\", 0], \"filename_prefix\": \"x\"}}}}",
                        image),
        0);
    return base_buf_take(&b);
}

/* The answer to a LoadImage prompt as p, with the input_config list cut out (it lists
 * what p may read, so it differs by principal by design). */
static char *load_answer(const auth_principal_t *p, const char *image, int status, char **options)
{
    char *body = load_prompt(image);
    call_t c;
    call(&c, p, srv_h_prompt_post, "POST", NULL, NULL, NULL, body);
    free(body);
    expect_status(&c, status);
    char *out = NULL;
    if (status == 400) {
        json_t *extra = json_object_get(
            json_at(json_object_get(json_object_get(json_object_get(c.json, "node_errors"), "1"), "errors"),
                    0),
            "extra_info");
        assert_non_null(extra);
        *options = dump(json_at(json_object_get(extra, "input_config"), 0));
        json_object_set(extra, "input_config", json_new_null());
        out = dump(c.json);
    }
    call_free(&c);
    return out;
}

static void test_foreign_inputs(void **state)
{
    write_file("input", "alice_in.png", "not really a png");
    record_file("input", "alice_in.png", "alice");
    write_file("output", "alice_out.png", "x");
    record_file("output", "alice_out.png", "alice");
    write_file("input", "bob_in.png", "b");
    record_file("input", "bob_in.png", "bob");

    /* Bob's graph cannot load alice's input, nor her output through an annotation: the
     * refusal reads exactly like the one for a file that does not exist. */
    char *opts = NULL, *opts_root = NULL;
    char *theirs = load_answer(&fx.bob, "alice_in.png", 400, &opts);
    assert_string_equal(opts, "[\"bob_in.png\"]");
    free(opts);
    char *missing_root = load_answer(&fx.root, "alice_in.pngX", 400, &opts_root);
    assert_string_equal(opts_root, "[\"alice_in.png\",\"bob_in.png\"]");
    free(opts_root);
    char *missing_bob = load_answer(&fx.bob, "alice_in.pngX", 400, &opts);
    free(opts);
    /* Same shape as validation's own refusal (root, any), name aside. */
    char *want = strdup(missing_root);
    for (char *x = strstr(want, "alice_in.pngX"); x; x = strstr(x, "alice_in.pngX"))
        memmove(x + 12, x + 13, strlen(x + 13) + 1);
    assert_string_equal(theirs, want);
    assert_string_equal(missing_bob, missing_root);
    assert_non_null(strstr(theirs, "\"type\":\"custom_validation_failed\""));
    assert_non_null(strstr(theirs, "\"details\":\"image - Invalid image file: alice_in.png\""));
    assert_non_null(strstr(theirs, "\"dependent_outputs\":[\"2\"]"));
    free(theirs);
    free(missing_root);
    free(missing_bob);
    free(want);
    char *out = load_answer(&fx.bob, "alice_out.png [output]", 400, &opts);
    assert_non_null(strstr(out, "Invalid image file: alice_out.png [output]"));
    free(out);
    free(opts);
    assert_int_equal(srv_queue_remaining(&fx.s.queue), 0);
    /* Her own file passes the check (what validation then says is its business). */
    char *body = load_prompt("alice_in.png");
    call_t c;
    call(&c, &fx.alice, srv_h_prompt_post, "POST", NULL, NULL, NULL, body);
    assert_null(strstr(c.res.body.data, "Invalid image file"));
    call_free(&c);
    free(body);
    expect(&fx.bob, srv_h_prompt_post, "POST", NULL, NULL, NULL, NULL, 400, NULL);

    /* /object_info's file lists show each principal its own. */
    json_t *info = node_registry_object_info(fx.s.reg, &fx.s.env.env);
    assert_non_null(info);
    json_t *bob = json_clone(info), *root = json_clone(info);
    own_filter_object_info(&fx.s, &fx.bob, bob);
    own_filter_object_info(&fx.s, &fx.root, root);
    const char *path[] = {"LoadImage", "input", "required", "image"};
    const json_t *jb = bob, *jr = root;
    for (size_t i = 0; i < 4; i++) {
        jb = json_object_get(jb, path[i]);
        jr = json_object_get(jr, path[i]);
    }
    assert_json(jb, "[[\"bob_in.png\"],{\"image_upload\":true}]");
    assert_json(jr, "[[\"alice_in.png\",\"bob_in.png\"],{\"image_upload\":true}]");
    /* Nothing else changed. */
    json_object_set(json_object_get(json_object_get(json_object_get(bob, "LoadImage"), "input"), "required"),
                    "image", json_clone(jr));
    assert_true(json_equal(bob, info));
    json_free(info);
    json_free(bob);
    json_free(root);
}

/* ------------------------------------------------------------------ limits */

static void test_limits(void **state)
{
    unsigned per_day = 0, max_queued = 0;
    auth_role_limits(AUTH_ROLE_USER, &per_day, &max_queued);
    assert_true(max_queued > 0 && max_queued < 100);
    for (unsigned i = 0; i < max_queued; i++) {
        char id[16];
        snprintf(id, sizeof id, "q%u", i);
        submit(&fx.alice, id, 200);
    }
    call_t c;
    char *body = invert_body("\"prompt_id\": \"one-too-many\"");
    call(&c, &fx.alice, srv_h_prompt_post, "POST", NULL, NULL, NULL, body);
    expect_status(&c, 429);
    assert_string_equal(err_type(&c), "too_many_queued");
    call_free(&c);
    /* Others are not held up by alice's queue. */
    submit(&fx.bob, "b-ok", 200);
    /* Once one of hers is gone, she may queue again. */
    expect(&fx.alice, srv_h_queue_post, "POST", NULL, NULL, NULL, "{\"delete\": [\"q0\"]}", 200, NULL);
    call(&c, &fx.alice, srv_h_prompt_post, "POST", NULL, NULL, NULL, body);
    expect_status(&c, 200);
    call_free(&c);

    /* The daily quota: spend bob's, then the next prompt is refused with Retry-After. */
    assert_true(per_day > 0);
    double now = srv__now_ms() / 1000.0;
    for (unsigned i = 1; i < per_day; i++) /* b-ok took one */
        assert_int_equal(auth_quota_take(fx.s.auth, &fx.bob, now), 0);
    call(&c, &fx.bob, srv_h_prompt_post, "POST", NULL, NULL, NULL, body);
    expect_status(&c, 429);
    assert_string_equal(err_type(&c), "quota_exceeded");
    assert_true(has_header(&c, "Retry-After: "));
    call_free(&c);
    free(body);
    assert_int_equal(srv_queue_remaining(&fx.s.queue), max_queued + 1);
    /* Editors have no daily quota. */
    submit(&fx.carol, "c-ok", 200);
}

/* ------------------------------------------------------------------ events */

static srv_ev_t *ev(srv_ev_kind_t kind, const char *id, const char *owner)
{
    srv_ev_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->kind = kind;
    e->prompt_id = strdup(id);
    e->client_id = strdup("shared-cid");
    snprintf(e->owner, sizeof e->owner, "%s", owner);
    return e;
}

static void test_events_targeted(void **state)
{
    srv_t *s = &fx.s;
    submit(&fx.alice, "ev-1", 200);
    srv_item_t *it = srv_queue_pop(&s->queue);
    assert_string_equal(it->owner, "alice");
    n_sent = 0;

    srv_ev_t *e1 = ev(SRV_EV_STARTED, "ev-1", it->owner);
    e1->item = it;
    srv_ev_t *e2 = ev(SRV_EV_ENGINE, "ev-1", it->owner);
    e2->type = strdup("progress");
    const char *prog = "{\"value\": 1, \"max\": 2, \"prompt_id\": \"ev-1\", \"node\": \"2\"}";
    assert_int_equal(json_parse(prog, strlen(prog), &e2->data, NULL, 0), 0);
    srv_ev_t *e2b = ev(SRV_EV_ENGINE, "ev-1", it->owner);
    e2b->type = strdup("executed");
    const char *exe =
        "{\"node\": \"3\", \"display_node\": \"3\", \"prompt_id\": \"ev-1\", \"output\": "
        "{\"images\": [{\"filename\": \"mid.png\", \"subfolder\": \"\", \"type\": \"output\"}]}}";
    assert_int_equal(json_parse(exe, strlen(exe), &e2b->data, NULL, 0), 0);
    srv_ev_t *e3 = ev(SRV_EV_PREVIEW, "ev-1", it->owner);
    free(e3->client_id);
    e3->client_id = NULL;
    e3->bin_type = 1;
    srv_ev_t *e4 = ev(SRV_EV_DONE, "ev-1", it->owner);
    e4->item = it;
    e4->result.outputs = NULL;
    const char *outs =
        "{\"3\": {\"images\": [{\"filename\": \"ev_00001_.png\", \"subfolder\": \"s\", \"type\": "
        "\"output\"}, {\"filename\": \"../../etc/x\", \"subfolder\": \"\", \"type\": \"output\"}, "
        "{\"filename\": \"p.png\", \"subfolder\": \"\", \"type\": \"temp\"}]}}";
    assert_int_equal(json_parse(outs, strlen(outs), &e4->result.outputs, NULL, 0), 0);
    e1->next = e2;
    e2->next = e2b;
    e2b->next = e3;
    e3->next = e4;
    s->ev_head = e1;
    s->ev_tail = e4;
    srv__events_drain(s);

    /* Every prompt event targets alice, with queue:read:any as the only other way in;
     * status broadcasts carry no owner. */
    size_t prompt_events = 0, statuses = 0;
    for (size_t i = 0; i < n_sent; i++) {
        if (!strcmp(sent[i].type, "status")) {
            assert_false(sent[i].has_owner);
            assert_false(sent[i].has_client);
            statuses++;
            continue;
        }
        prompt_events++;
        assert_true(sent[i].has_owner);
        assert_string_equal(sent[i].owner, "alice");
        assert_true(sent[i].any == AUTH_SCOPE(QUEUE_READ_ANY));
        assert_string_equal(sent[i].prompt, "ev-1");
        if (!strcmp(sent[i].type, "<binary>") || !strcmp(sent[i].type, "progress"))
            continue;
        assert_string_equal(sent[i].client, "shared-cid");
    }
    assert_int_equal(prompt_events, 4); /* progress, executed, the preview, executing with node null */
    assert_true(statuses >= 2);
    assert_string_equal(s->cur_owner, "");

    /* The outputs were recorded as alice's. */
    char *owner = NULL;
    assert_int_equal(store_file_owner(s->store, "output", "s/ev_00001_.png", &owner), 0);
    assert_string_equal(owner, "alice");
    free(owner);
    assert_int_equal(store_file_owner(s->store, "output", "mid.png", &owner), 0); /* from "executed" */
    assert_string_equal(owner, "alice");
    free(owner);
    assert_int_equal(store_file_owner(s->store, "temp", "p.png", &owner), 0);
    assert_string_equal(owner, "alice");
    free(owner);
    assert_int_equal(store_file_owner(s->store, "output", "../../etc/x", &owner), BASE_E_NOENT);
    write_file("output", "s/ev_00001_.png", "EV");
    expect_view(&fx.alice, "filename=ev_00001_.png&subfolder=s", 200, "EV");
    expect_view(&fx.bob, "filename=ev_00001_.png&subfolder=s", 404, NULL);

    /* An ownerless prompt's events reach the "any" sockets only (owner "", never NULL). */
    n_sent = 0;
    s->cur_prompt_id = strdup("legacy");
    srv__send_prompt_event(s, NULL, "legacy", "executing", NULL);
    assert_int_equal(n_sent, 1);
    assert_true(sent[0].has_owner);
    assert_string_equal(sent[0].owner, "");
}

/* ------------------------------------------------------------------ schema upgrade */

/* A database written before ownership (schema 1) gains the new tables and keeps its rows,
 * which belong to nobody. */
static void test_store_upgrade(void **state)
{
    char *dir = tu_fresh_dir("iso-upgrade");
    char path[4096];
    snprintf(path, sizeof path, "%s/weft.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    const char *v1 =
        "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);"
        "CREATE TABLE prompts (prompt_id TEXT PRIMARY KEY NOT NULL, number REAL NOT NULL, seq INTEGER NOT "
        "NULL,"
        " prompt TEXT, extra_data TEXT, outputs_to_execute TEXT, client_id TEXT, owner TEXT,"
        " status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 3), created_ms REAL NOT NULL DEFAULT 0,"
        " started_ms REAL NOT NULL DEFAULT 0, finished_ms REAL NOT NULL DEFAULT 0, outputs TEXT, messages "
        "TEXT,"
        " meta TEXT, error TEXT, finished_seq INTEGER, CHECK ((status >= 2) = (finished_seq IS NOT NULL)));"
        "CREATE INDEX prompts_pending ON prompts (status, number, seq);"
        "CREATE INDEX prompts_seq ON prompts (seq);"
        "CREATE UNIQUE INDEX prompts_history ON prompts (finished_seq);"
        "INSERT INTO schema_version VALUES (1, 1);"
        "INSERT INTO prompts (prompt_id, number, seq, prompt, status, finished_seq, outputs, messages)"
        " VALUES ('old', 1, 1, '{}', 2, 1, '{}', '[]');";
    assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    store_t *st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    assert_int_equal(store_schema_version(st), 2);
    store_prompt_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_history_page_owned(st, "alice", -1, 0, &rows, &n), 0);
    assert_int_equal(n, 0);
    free(rows);
    assert_int_equal(store_history_page_owned(st, NULL, -1, 0, &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].prompt_id, "old");
    assert_null(rows[0].owner);
    store_prompt_free(&rows[0]);
    free(rows);
    size_t deleted = 9;
    assert_int_equal(store_history_delete_owned(st, "alice", NULL, 0, &deleted), 0);
    assert_int_equal(deleted, 0);
    store_file_ref_t ref = {"output", "a.png"};
    assert_int_equal(store_files_record(st, &ref, 1, "alice", "old", 5), 0);
    char *owner = NULL;
    assert_int_equal(store_file_owner(st, "output", "a.png", &owner), 0);
    assert_string_equal(owner, "alice");
    free(owner);
    /* Recorded again by someone else (the file was written again): the new owner. */
    assert_int_equal(store_files_record(st, &ref, 1, "bob", "new", 6), 0);
    assert_int_equal(store_file_owner(st, "output", "a.png", &owner), 0);
    assert_string_equal(owner, "bob");
    free(owner);
    /* Without an owner: recorded, but nobody's. */
    assert_int_equal(store_files_record(st, &ref, 1, NULL, NULL, 7), 0);
    assert_int_equal(store_file_owner(st, "output", "a.png", &owner), 0);
    assert_null(owner);
    store_file_ref_t bad = {"models", "x"};
    assert_int_equal(store_files_record(st, &bad, 1, "bob", NULL, 1), BASE_E_INVAL);
    assert_int_equal(store_file_owner(st, "output", "nope.png", &owner), BASE_E_NOENT);
    store_close(st);
    /* Reopening migrates nothing more. */
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    assert_int_equal(store_schema_version(st), 2);
    store_close(st);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_isolation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_extra_data_credentials, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_history_isolation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_view_ownership, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upload_collisions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_roots, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sharing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_share_links, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_forbidden_node_class, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_inputs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_limits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_targeted, fx_setup, fx_teardown),
        cmocka_unit_test(test_store_upgrade),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
