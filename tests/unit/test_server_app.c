/* The application core of `weft serve` without sockets: the pending queue's order, the
 * router (/api duplicates, path parameters, 404/405/OPTIONS, the origin check), the prompt
 * and queue routes over a real store, the worker-event handling and the history JSON. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"

/* ------------------------------------------------------------------ helpers */

static srv_item_t *item(const char *id, double number, int64_t seq)
{
    srv_item_t *it = calloc(1, sizeof *it);
    assert_non_null(it);
    it->prompt_id = strdup(id);
    it->number = number;
    it->seq = seq;
    return it;
}

static void assert_pop(srv_queue_t *q, const char *id)
{
    srv_item_t *it = srv_queue_pop(q);
    assert_non_null(it);
    assert_string_equal(it->prompt_id, id);
    assert_ptr_equal(q->running, it);
    srv_queue_done(q);
    assert_null(q->running);
    srv_item_free(it);
}

static json_t *J(const char *text)
{
    json_t *j = NULL;
    assert_int_equal(json_parse(text, strlen(text), &j, NULL, 0), 0);
    return j;
}

static char *dump(const json_t *j)
{
    char *s = json_dump(j, JSON_COMPACT);
    assert_non_null(s);
    return s;
}

static void assert_json(const json_t *j, const char *expected)
{
    char *s = dump(j);
    assert_string_equal(s, expected);
    free(s);
}

/* ------------------------------------------------------------------ queue */

static void test_queue_order(void **state)
{
    srv_queue_t q;
    assert_int_equal(srv_queue_init(&q), 0);
    /* Numbers first, then insertion order among equal numbers; "front" items carry -counter. */
    assert_int_equal(srv_queue_push(&q, item("c", 3, 1)), 0);
    assert_int_equal(srv_queue_push(&q, item("a", 1, 2)), 0);
    assert_int_equal(srv_queue_push(&q, item("b1", 2, 3)), 0);
    assert_int_equal(srv_queue_push(&q, item("b2", 2, 4)), 0);
    assert_int_equal(srv_queue_push(&q, item("front1", -4, 5)), 0);
    assert_int_equal(srv_queue_push(&q, item("front2", -5, 6)), 0);
    assert_int_equal(srv_queue_push(&q, item("b0", 2, 0)), 0);
    assert_int_equal(srv_queue_remaining(&q), 7);
    assert_pop(&q, "front2");
    assert_pop(&q, "front1");
    assert_pop(&q, "a");
    assert_pop(&q, "b0");
    assert_pop(&q, "b1");
    assert_pop(&q, "b2");
    assert_pop(&q, "c");
    assert_int_equal(srv_queue_remaining(&q), 0);
    srv_queue_destroy(&q);
}

typedef struct {
    char seen[256];
} each_t;

static void each_cb(void *ud, const srv_item_t *it, bool running)
{
    each_t *e = ud;
    strcat(e->seen, running ? "*" : "");
    strcat(e->seen, it->prompt_id);
    strcat(e->seen, ",");
}

static void test_queue_remove_each_stop(void **state)
{
    srv_queue_t q;
    assert_int_equal(srv_queue_init(&q), 0);
    for (int i = 0; i < 6; i++) {
        char id[8];
        snprintf(id, sizeof id, "p%d", i);
        assert_int_equal(srv_queue_push(&q, item(id, i, i)), 0);
    }
    srv_item_t *run = srv_queue_pop(&q); /* p0 runs */
    assert_string_equal(run->prompt_id, "p0");
    assert_int_equal(srv_queue_remaining(&q), 6);

    /* The running item is never removed; unknown ids are ignored. */
    const char *ids[] = {"p0", "p2", "nope", "p4"};
    assert_int_equal(srv_queue_remove(&q, ids, 4), 2);
    each_t e = {""};
    srv_queue_each(&q, each_cb, &e);
    assert_string_equal(e.seen, "*p0,p1,p3,p5,");
    assert_int_equal(srv_queue_remaining(&q), 4);

    srv_item_t **got = NULL;
    assert_int_equal(srv__queue_take(&q, NULL, 0, &got), 3);
    assert_string_equal(got[0]->prompt_id, "p1");
    assert_string_equal(got[2]->prompt_id, "p5");
    for (int i = 0; i < 3; i++)
        srv_item_free(got[i]);
    free(got);
    assert_int_equal(srv_queue_remaining(&q), 1);
    assert_int_equal(srv_queue_remove(&q, NULL, 0), 0);

    /* The loop clears the running item only while it is still the one that finished. */
    srv_item_t other;
    assert_false(srv__queue_finished(&q, &other));
    assert_ptr_equal(q.running, run);
    assert_true(srv__queue_finished(&q, run));
    assert_null(q.running);
    assert_false(srv__queue_finished(&q, run));
    srv_item_free(run);
    assert_int_equal(srv_queue_remaining(&q), 0);
    /* Stop wakes the worker with NULL even when items remain; destroy frees them. */
    assert_int_equal(srv_queue_push(&q, item("left", 1, 9)), 0);
    srv_queue_stop(&q);
    assert_null(srv_queue_pop(&q));
    srv_queue_destroy(&q);
}

/* ------------------------------------------------------------------ server fixture */

typedef struct {
    srv_t s;
    char *dir;
} fx_t;

static fx_t fx;

static int fx_setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    fx.dir = tu_fresh_dir("app");
    srv_t *s = &fx.s;
    /* The router's authentication has its own test (test_server_auth.c); here every
     * request acts as the --no-auth admin. */
    assert_int_equal(srv_config_parse(&s->cfg, 2, (char *[]){"serve", "--no-auth", NULL}), 0);
    assert_int_equal(srv_env_open(&s->env, fx.dir), 0);
    assert_int_equal(node_registry_new(&s->reg), 0);
    assert_int_equal(node_registry_add_builtins(s->reg), 0);
    char db[4096];
    snprintf(db, sizeof db, "%s/weft.db", fx.dir);
    assert_int_equal(store_open(db, &s->store), 0);
    assert_int_equal(srv_queue_init(&s->queue), 0);
    return 0;
}

static int fx_teardown(void **state)
{
    srv_t *s = &fx.s;
    srv_queue_destroy(&s->queue);
    store_close(s->store);
    node_registry_free(s->reg);
    srv_env_close(&s->env);
    free(s->cur_prompt_id);
    free(s->cur_client_id);
    free(s->cur_node);
    free(fx.dir);
    return 0;
}

typedef struct {
    http_req_t req;
    http_res_t res;
    http_header_t hdr[4];
    json_t *json; /* parsed response body, when JSON */
} call_t;

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
    while ((name = va_arg(ap, const char *)) && c->req.n_headers < 4) {
        c->hdr[c->req.n_headers].name = (char *)name;
        c->hdr[c->req.n_headers++].value = (char *)va_arg(ap, const char *);
    }
    va_end(ap);
    c->req.headers = c->hdr;
    if (body)
        assert_int_equal(base_buf_puts(&c->req.body, body), 0);
    c->req.keep_alive = true;
    c->req.http_minor = 1;
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

/* ------------------------------------------------------------------ router */

static void test_router_api_and_methods(void **state)
{
    call_t c;
    call(&c, "GET", "/prompt", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_json(c.json, "{\"exec_info\":{\"queue_remaining\":0}}");
    call_free(&c);
    /* Every route also under /api, and unknown query parameters are ignored. */
    call(&c, "GET", "/api/prompt?clientId=abc&x=1", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_json(c.json, "{\"exec_info\":{\"queue_remaining\":0}}");
    call_free(&c);

    call(&c, "GET", "/api/nope", NULL, NULL);
    assert_int_equal(c.res.status, 404);
    assert_string_equal(err_type(&c), "not_found");
    call_free(&c);
    call(&c, "POST", "/nope", "{}", NULL);
    assert_int_equal(c.res.status, 404);
    assert_string_equal(err_type(&c), "not_found");
    call_free(&c);
    /* Trailing and extra segments are other paths. */
    call(&c, "POST", "/api/prompt/", "{}", NULL);
    assert_int_equal(c.res.status, 404);
    call_free(&c);

    call(&c, "DELETE", "/api/prompt", NULL, NULL);
    assert_int_equal(c.res.status, 405);
    assert_string_equal(err_type(&c), "method_not_allowed");
    assert_non_null(strstr(c.res.headers.data, "Allow: GET, POST\r\n"));
    call_free(&c);
    call(&c, "GET", "/interrupt", NULL, NULL);
    assert_int_equal(c.res.status, 405);
    assert_non_null(strstr(c.res.headers.data, "Allow: POST\r\n"));
    call_free(&c);
    call(&c, "PUT", "/api/userdata/a.json", NULL, NULL);
    assert_int_equal(c.res.status, 405);
    assert_non_null(strstr(c.res.headers.data, "Allow: GET, POST, DELETE\r\n"));
    call_free(&c);

    /* OPTIONS answers 200 empty for anything, without running a handler. */
    call(&c, "OPTIONS", "/api/prompt", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_int_equal(c.res.body.len, 0);
    call_free(&c);
    call(&c, "OPTIONS", "/whatever/else", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    call_free(&c);

    /* Without a hub the WebSocket route says so instead of crashing. */
    call(&c, "GET", "/api/ws?clientId=x", NULL, NULL);
    assert_int_equal(c.res.status, 503);
    call_free(&c);
}

static void test_router_params(void **state)
{
    call_t c;
    call(&c, "GET", "/history/abc%2Fdef%20x", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_int_equal(c.req.n_params, 1);
    assert_string_equal(c.req.params[0], "abc/def x");
    assert_json(c.json, "{}");
    call_free(&c);

    call(&c, "POST", "/api/userdata/workflows%2Fa.json/move/workflows%2Fb.json", NULL, NULL);
    assert_int_equal(c.req.n_params, 2);
    assert_string_equal(c.req.params[0], "workflows/a.json");
    assert_string_equal(c.req.params[1], "workflows/b.json");
    call_free(&c);

    /* One segment each: an unencoded slash is another path. */
    call(&c, "GET", "/api/history/a/b", NULL, NULL);
    assert_int_equal(c.res.status, 404);
    assert_int_equal(c.req.n_params, 0);
    call_free(&c);

    call(&c, "GET", "/api/history/%zz", NULL, NULL);
    assert_int_equal(c.res.status, 400);
    assert_string_equal(err_type(&c), "invalid_path");
    call_free(&c);
    call(&c, "GET", "/api/history/a%00b", NULL, NULL);
    assert_int_equal(c.res.status, 400);
    call_free(&c);
}

static void test_router_origin(void **state)
{
    call_t c;
    static const struct {
        const char *host, *origin;
        int status;
    } cases[] = {
        {"127.0.0.1:8188", "http://127.0.0.1:8188", 200},
        {"localhost:8188", "http://localhost:8188", 200},
        {"localhost:8188", "http://evil.example", 403},
        {"localhost:8188", "http://localhost:9999", 403},
        {"localhost:8188", "http://localhost", 200},      /* ports only when both have one */
        {"localhost", "http://localhost:3000", 200},
        {"LOCALHOST:8188", "http://LocalHost:8188", 200}, /* case-insensitive */
        {"127.0.0.1:8188", "http://localhost:8188", 403}, /* names are compared, not resolved */
        {"[::1]:8188", "http://[::1]:8188", 200},
        {"[::1]:8188", "https://[::2]:8188", 403},
        {"127.1.2.3", "http://attacker.test", 403},
        {"example.com", "http://evil.example", 200},      /* only loopback hosts are guarded */
        {"192.168.1.5:8188", "http://evil.example", 200},
        {"localhost:8188", "null", 200},
        {"localhost:8188", "http://localhost:80x", 403},  /* malformed port */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        call(&c, "GET", "/api/prompt", NULL, "host", cases[i].host, "origin", cases[i].origin, NULL);
        if (c.res.status != cases[i].status)
            fail_msg("Host %s Origin %s: %d, expected %d", cases[i].host, cases[i].origin, c.res.status,
                     cases[i].status);
        if (cases[i].status == 403)
            assert_string_equal(err_type(&c), "forbidden");
        call_free(&c);
    }
    /* Either header alone passes. */
    call(&c, "GET", "/api/prompt", NULL, "origin", "http://evil.example", NULL);
    assert_int_equal(c.res.status, 200);
    call_free(&c);
    /* The check comes before OPTIONS, as in ComfyUI. */
    call(&c, "OPTIONS", "/api/prompt", NULL, "host", "localhost:8188", "origin", "http://evil.example", NULL);
    assert_int_equal(c.res.status, 403);
    call_free(&c);
}

/* ------------------------------------------------------------------ prompt + queue routes */

static char *invert_body(const char *extra)
{
    size_t n;
    char *wf = tu_read_source("workflows/invert.api.json", &n);
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_printf(&b, "{\"prompt\": %s%s%s}", wf, extra ? ", " : "", extra ? extra : ""), 0);
    free(wf);
    return base_buf_take(&b);
}

static char *post_prompt(const char *extra, int status)
{
    char *body = invert_body(extra);
    call_t c;
    call(&c, "POST", "/api/prompt", body, NULL);
    free(body);
    assert_int_equal(c.res.status, status);
    char *id = NULL;
    if (status == 200) {
        assert_int_equal(json_len(c.json), 3);
        assert_string_equal(json_key_at(c.json, 0), "prompt_id");
        assert_string_equal(json_key_at(c.json, 1), "number");
        assert_json(json_object_get(c.json, "node_errors"), "{}");
        id = strdup(json_str(json_object_get(c.json, "prompt_id")));
    }
    call_free(&c);
    return id;
}

static void test_prompt_post_and_queue(void **state)
{
    srv_t *s = &fx.s;
    char *a = post_prompt("\"client_id\": \"cli\", \"extra_data\": {\"client_id\": \"old\", "
                          "\"api_key_comfy_org\": \"secret\", \"extra_pnginfo\": {\"workflow\": {}}}",
                          200);
    assert_int_equal(strlen(a), 36); /* uuid4 */
    char *b = post_prompt("\"prompt_id\": \"mine-1\", \"front\": true", 200);
    assert_string_equal(b, "mine-1");
    char *c3 = post_prompt("\"prompt_id\": \"explicit\", \"number\": 0.5", 200);
    /* The same id again while pending: refused, nothing changes. */
    assert_null(post_prompt("\"prompt_id\": \"mine-1\"", 400));
    assert_null(post_prompt("\"prompt_id\": \"\"", 400));
    assert_null(post_prompt("\"prompt_id\": \"has space\"", 400));
    assert_null(post_prompt("\"prompt_id\": 12", 400));
    assert_null(post_prompt("\"number\": \"x\"", 400));
    assert_null(post_prompt("\"extra_data\": []", 400));
    assert_int_equal(srv_queue_remaining(&s->queue), 3);
    assert_true(s->counter == 2); /* a got 0, mine-1 got -1; explicit numbers do not count */

    call_t c;
    call(&c, "GET", "/queue", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    assert_json(json_object_get(c.json, "queue_running"), "[]");
    const json_t *pend = json_object_get(c.json, "queue_pending");
    assert_int_equal(json_len(pend), 3);
    /* Order: mine-1 (-1), a (0), explicit (0.5). */
    assert_string_equal(json_str(json_at(json_at(pend, 0), 1)), "mine-1");
    assert_json(json_at(json_at(pend, 0), 0), "-1");
    assert_string_equal(json_str(json_at(json_at(pend, 1), 1)), a);
    assert_json(json_at(json_at(pend, 1), 0), "0");
    assert_json(json_at(json_at(pend, 2), 0), "0.5");
    const json_t *t = json_at(pend, 1);
    assert_int_equal(json_len(t), 5);
    /* client_id at the top level wins; credentials are never stored. */
    assert_json(json_at(t, 3), "{\"client_id\":\"cli\",\"extra_pnginfo\":{\"workflow\":{}}}");
    assert_json(json_at(t, 4), "[\"3\"]");
    assert_string_equal(json_str(json_object_get(json_object_get(json_at(t, 2), "3"), "class_type")), "SaveImage");
    call_free(&c);

    /* Durable: the rows are in the store as pending. */
    store_prompt_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_list_pending(s->store, &rows, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].prompt_id, "mine-1");
    assert_string_equal(rows[1].client_id, "cli");
    for (size_t i = 0; i < n; i++)
        store_prompt_free(&rows[i]);
    free(rows);

    /* Delete one, then clear: memory and store agree. */
    call(&c, "POST", "/api/queue", "{\"delete\": [\"explicit\", 5, \"unknown\"]}", NULL);
    assert_int_equal(c.res.status, 200);
    assert_int_equal(c.res.body.len, 0);
    call_free(&c);
    assert_int_equal(srv_queue_remaining(&s->queue), 2);
    call(&c, "POST", "/queue", "{\"clear\": true}", NULL);
    assert_int_equal(c.res.status, 200);
    call_free(&c);
    assert_int_equal(srv_queue_remaining(&s->queue), 0);
    assert_int_equal(store_list_pending(s->store, &rows, &n), 0);
    assert_int_equal(n, 0);
    free(rows);
    call(&c, "POST", "/queue", "clear", NULL);
    assert_int_equal(c.res.status, 400);
    assert_string_equal(err_type(&c), "invalid_json");
    call_free(&c);

    free(a);
    free(b);
    free(c3);
}

static void test_prompt_errors(void **state)
{
    call_t c;
    /* Not JSON, whatever the content type. */
    call(&c, "POST", "/prompt", "{\"prompt\": ", "content-type", "text/plain", NULL);
    assert_int_equal(c.res.status, 400);
    assert_string_equal(err_type(&c), "invalid_json");
    assert_non_null(strstr(json_str(json_object_get(json_object_get(c.json, "error"), "message")), "line 1"));
    call_free(&c);
    call(&c, "POST", "/prompt", "[1]", NULL);
    assert_int_equal(c.res.status, 400);
    assert_string_equal(err_type(&c), "invalid_request");
    call_free(&c);
    call(&c, "POST", "/prompt", "", NULL);
    assert_int_equal(c.res.status, 400);
    call_free(&c);

    /* Validation failures keep ComfyUI's body exactly. */
    call(&c, "POST", "/prompt", "{\"client_id\": \"x\"}", NULL);
    assert_int_equal(c.res.status, 400);
    assert_json(c.json, "{\"error\":{\"type\":\"no_prompt\",\"message\":\"No prompt provided\",\"details\":"
                        "\"No prompt provided\",\"extra_info\":{}},\"node_errors\":{}}");
    call_free(&c);
    call(&c, "POST", "/prompt",
         "{\"prompt\": {\"1\": {\"class_type\": \"ImageInvert\", \"inputs\": {}}, "
         "\"2\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"1\", 0]}}}}",
         NULL);
    assert_int_equal(c.res.status, 400);
    assert_string_equal(err_type(&c), "prompt_outputs_failed_validation");
    assert_non_null(json_object_get(json_object_get(c.json, "node_errors"), "1"));
    call_free(&c);
    assert_int_equal(srv_queue_remaining(&fx.s.queue), 0);

    /* Too many nodes: refused before any validation work. */
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_puts(&b, "{\"prompt\": {"), 0);
    for (int i = 0; i <= SRV_MAX_PROMPT_NODES; i++)
        assert_int_equal(base_buf_printf(&b, "%s\"%d\": {}", i ? "," : "", i), 0);
    assert_int_equal(base_buf_puts(&b, "}}"), 0);
    call(&c, "POST", "/prompt", b.data, NULL);
    base_buf_free(&b);
    assert_int_equal(c.res.status, 413);
    assert_string_equal(err_type(&c), "prompt_too_large");
    call_free(&c);

    /* /free needs JSON; /interrupt takes anything. */
    call(&c, "POST", "/free", "nope", NULL);
    assert_int_equal(c.res.status, 400);
    call_free(&c);
    call(&c, "POST", "/free", "{\"free_memory\": true}", NULL);
    assert_int_equal(c.res.status, 200);
    call_free(&c);
    call(&c, "POST", "/interrupt", "nope", NULL);
    assert_int_equal(c.res.status, 200);
    call_free(&c);
}

/* ------------------------------------------------------------------ events + history */

static srv_ev_t *ev(srv_ev_kind_t kind, const char *id)
{
    srv_ev_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->kind = kind;
    e->prompt_id = strdup(id);
    e->client_id = strdup("cli");
    return e;
}

static void test_events_and_history(void **state)
{
    srv_t *s = &fx.s;
    char *id = post_prompt("\"prompt_id\": \"run-1\", \"client_id\": \"cli\"", 200);
    srv_item_t *it = srv_queue_pop(&s->queue);
    assert_non_null(it);
    srv_queue_done(&s->queue);

    /* What the worker would post: started, progress, then success travelling with DONE. */
    srv_ev_t *e1 = ev(SRV_EV_STARTED, "run-1");
    e1->item = it;
    srv_ev_t *e2 = ev(SRV_EV_ENGINE, "run-1");
    e2->type = strdup("progress");
    e2->data = J("{\"value\": 3, \"max\": 9, \"prompt_id\": \"run-1\", \"node\": \"2\"}");
    e1->next = e2;
    s->ev_head = e1;
    s->ev_tail = e2;
    srv__events_drain(s);
    assert_string_equal(s->cur_prompt_id, "run-1");
    assert_string_equal(s->cur_client_id, "cli");
    assert_string_equal(s->cur_node, "2");
    assert_int_equal(s->cur_value, 3);
    assert_int_equal(s->cur_max, 9);
    store_prompt_t p;
    assert_int_equal(store_get(s->store, "run-1", &p), 0);
    assert_int_equal(p.status, STORE_RUNNING);
    store_prompt_free(&p);
    call_t c;
    call(&c, "GET", "/history/run-1", NULL, NULL);
    assert_json(c.json, "{}"); /* running is not history yet */
    call_free(&c);

    srv_ev_t *done = ev(SRV_EV_DONE, "run-1");
    done->item = it;
    done->result.outputs = J("{\"3\": {\"images\": [{\"filename\": \"f.png\", \"subfolder\": \"\", \"type\": "
                                "\"output\"}]}}");
    done->result.messages = J("[[\"execution_start\", {\"prompt_id\": \"run-1\", \"timestamp\": 1}]]");
    s->ev_head = s->ev_tail = done;
    srv__events_drain(s);
    assert_null(s->cur_prompt_id);
    assert_null(s->cur_node);

    call(&c, "GET", "/api/history/run-1", NULL, NULL);
    assert_int_equal(c.res.status, 200);
    const json_t *entry = json_object_get(c.json, "run-1");
    assert_non_null(entry);
    assert_json(json_object_get(entry, "outputs"),
                "{\"3\":{\"images\":[{\"filename\":\"f.png\",\"subfolder\":\"\",\"type\":\"output\"}]}}");
    assert_json(json_object_get(entry, "status"),
                "{\"status_str\":\"success\",\"completed\":true,\"messages\":[[\"execution_start\","
                "{\"prompt_id\":\"run-1\",\"timestamp\":1}]]}");
    assert_json(json_object_get(entry, "meta"),
                "{\"3\":{\"node_id\":\"3\",\"display_node\":\"3\",\"parent_node\":null,\"real_node_id\":\"3\"}}");
    const json_t *tuple = json_object_get(entry, "prompt");
    assert_int_equal(json_len(tuple), 5);
    assert_json(json_at(tuple, 0), "0");
    assert_string_equal(json_str(json_at(tuple, 1)), "run-1");
    assert_json(json_at(tuple, 3), "{\"client_id\":\"cli\"}");
    assert_json(json_at(tuple, 4), "[\"3\"]");
    call_free(&c);

    /* A failed prompt; then paging and deleting. */
    char *id2 = post_prompt("\"prompt_id\": \"run-2\"", 200);
    it = srv_queue_pop(&s->queue);
    srv_queue_done(&s->queue);
    e1 = ev(SRV_EV_STARTED, "run-2");
    e1->item = it;
    done = ev(SRV_EV_DONE, "run-2");
    done->item = it;
    done->result.status = BASE_E_NODE_FAILED;
    done->result.error_message = strdup("boom");
    e1->next = done;
    s->ev_head = e1;
    s->ev_tail = done;
    srv__events_drain(s);
    assert_int_equal(store_get(s->store, "run-2", &p), 0);
    assert_int_equal(p.status, STORE_ERROR);
    assert_string_equal(p.error, "boom");
    store_prompt_free(&p);

    call(&c, "GET", "/history", NULL, NULL);
    assert_int_equal(json_len(c.json), 2);
    assert_string_equal(json_key_at(c.json, 0), "run-1");
    assert_string_equal(json_key_at(c.json, 1), "run-2");
    assert_json(json_object_get(json_object_get(c.json, "run-2"), "status"),
                "{\"status_str\":\"error\",\"completed\":false,\"messages\":[]}");
    call_free(&c);
    call(&c, "GET", "/history?max_items=1", NULL, NULL);
    assert_int_equal(json_len(c.json), 1);
    assert_string_equal(json_key_at(c.json, 0), "run-2");
    call_free(&c);
    call(&c, "GET", "/history?max_items=1&offset=0", NULL, NULL);
    assert_string_equal(json_key_at(c.json, 0), "run-1");
    call_free(&c);
    call(&c, "GET", "/history?max_items=abc", NULL, NULL);
    assert_int_equal(c.res.status, 400);
    call_free(&c);
    call(&c, "GET", "/history?offset=1.5", NULL, NULL);
    assert_int_equal(c.res.status, 400);
    call_free(&c);

    call(&c, "POST", "/history", "{\"delete\": [\"run-1\"]}", NULL);
    assert_int_equal(c.res.status, 200);
    call_free(&c);
    assert_int_equal(store_history_count(s->store), 1);
    call(&c, "POST", "/history", "{\"clear\": true}", NULL);
    call_free(&c);
    assert_int_equal(store_history_count(s->store), 0);
    call(&c, "POST", "/history", "]", NULL);
    assert_int_equal(c.res.status, 400);
    call_free(&c);
    free(id);
    free(id2);
}

/* Shutdown: an interrupted running prompt goes back to pending, not into history. */
static void test_shutdown_requeue(void **state)
{
    srv_t *s = &fx.s;
    char *id = post_prompt("\"prompt_id\": \"sd-1\"", 200);
    srv_item_t *it = srv_queue_pop(&s->queue);
    srv_queue_done(&s->queue);
    srv_ev_t *e1 = ev(SRV_EV_STARTED, "sd-1");
    e1->item = it;
    s->ev_head = s->ev_tail = e1;
    srv__events_drain(s);

    s->stopping = true;
    srv_ev_t *done = ev(SRV_EV_DONE, "sd-1");
    done->item = it;
    done->result.status = BASE_E_INTERRUPTED;
    s->ev_head = s->ev_tail = done;
    srv__events_drain(s);
    s->stopping = false;

    store_prompt_t p;
    assert_int_equal(store_get(s->store, "sd-1", &p), 0);
    assert_int_equal(p.status, STORE_PENDING);
    assert_true(p.number == 0);
    store_prompt_free(&p);
    assert_int_equal(store_history_count(s->store), 0);
    assert_int_equal(store_requeue(s->store, "sd-1"), BASE_E_NOENT); /* only RUNNING rows */

    /* The same row recorded as invalid at start-up becomes an ERROR entry with its reason. */
    assert_int_equal(srv__finish_invalid(s->store, "sd-1", "The prompt no longer validates: x"), 0);
    assert_int_equal(store_get(s->store, "sd-1", &p), 0);
    assert_int_equal(p.status, STORE_ERROR);
    assert_string_equal(p.error, "The prompt no longer validates: x");
    json_t *entry = srv_history_entry_json(&p);
    const json_t *msg = json_at(json_object_get(json_object_get(entry, "status"), "messages"), 0);
    assert_string_equal(json_str(json_at(msg, 0)), "execution_error");
    assert_string_equal(json_str(json_object_get(json_at(msg, 1), "exception_message")),
                        "The prompt no longer validates: x");
    json_free(entry);
    store_prompt_free(&p);
    free(id);
}

static void test_history_entry_shape(void **state)
{
    store_prompt_t p = {.prompt_id = "id1", .number = 7, .status = STORE_ERROR};
    p.prompt = J("{\"1\": {\"class_type\": \"X\", \"inputs\": {}}}");
    p.outputs_to_execute = J("[\"1\"]");
    json_t *e = srv_history_entry_json(&p);
    assert_non_null(e);
    /* Missing stored fields still give ComfyUI's full shape. */
    assert_json(e, "{\"prompt\":[7,\"id1\",{\"1\":{\"class_type\":\"X\",\"inputs\":{}}},{},[\"1\"]],"
                   "\"outputs\":{},\"status\":{\"status_str\":\"error\",\"completed\":false,\"messages\":[]},"
                   "\"meta\":{}}");
    json_free(e);
    p.number = -2.5;
    p.status = STORE_SUCCESS;
    e = srv_history_entry_json(&p);
    assert_json(json_at(json_object_get(e, "prompt"), 0), "-2.5");
    assert_json(json_object_get(e, "status"), "{\"status_str\":\"success\",\"completed\":true,\"messages\":[]}");
    json_free(e);
    json_free(p.prompt);
    json_free(p.outputs_to_execute);
}

/* ------------------------------------------------------------------ config */

static void test_config(void **state)
{
    srv_config_t c;
    char *ok[] = {"serve", "--listen", "::1", "--port=0", "--base-dir", "/tmp/x", "--max-upload-size", "7",
                  "--quiet", NULL};
    assert_int_equal(srv_config_parse(&c, 9, ok), 0);
    assert_string_equal(c.listen, "::1");
    assert_int_equal(c.port, 0);
    assert_string_equal(c.base_dir, "/tmp/x");
    assert_int_equal(c.max_upload_mb, 7);
    assert_int_equal(c.http.max_body_bytes, (size_t)7 << 20);
    assert_true(c.quiet);
    char *def[] = {"serve", NULL};
    assert_int_equal(srv_config_parse(&c, 1, def), 0);
    assert_string_equal(c.listen, "127.0.0.1");
    assert_int_equal(c.port, 8188);
    assert_string_equal(c.base_dir, "weft-data");
    assert_int_equal(c.http.max_body_bytes, (size_t)100 << 20);
    assert_int_equal(c.ws.max_msg_bytes, (size_t)1 << 20);
    assert_true(c.previews); /* latent previews are on unless turned off */
    assert_int_equal(c.model_memory_mb, 0); /* 0 = the default budget, half of RAM */
    char *sd[] = {"serve", "--preview-method", "none", "--model-memory", "2048", NULL};
    assert_int_equal(srv_config_parse(&c, 5, sd), 0);
    assert_false(c.previews);
    assert_int_equal(c.model_memory_mb, 2048);
    char *sd2[] = {"serve", "--preview-method", "latent2rgb", NULL};
    assert_int_equal(srv_config_parse(&c, 3, sd2), 0);
    assert_true(c.previews);

    static const char *const bad[][3] = {
        {"--preview-method", "taesd"}, {"--preview-method", NULL}, {"--model-memory", "0"},
        {"--model-memory", "1.5"}, {"--model-memory", "-3"},
        {"--port", "65536"}, {"--port", "-1"}, {"--port", "12a"}, {"--port", NULL},
        {"--listen", "not an ip"}, {"--max-upload-size", "0"}, {"--max-upload-size", "1.5"},
        {"--frontend", "/definitely/not/here"}, {"--bogus", NULL}, {"--base-dir", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {"serve", (char *)bad[i][0], (char *)bad[i][1], NULL};
        assert_int_equal(srv_config_parse(&c, bad[i][1] ? 3 : 2, argv), 2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_order),
        cmocka_unit_test(test_queue_remove_each_stop),
        cmocka_unit_test(test_history_entry_shape),
        cmocka_unit_test(test_config),
        cmocka_unit_test_setup_teardown(test_router_api_and_methods, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_router_params, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_router_origin, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prompt_post_and_queue, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prompt_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_and_history, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_requeue, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
