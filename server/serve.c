/* `weft serve`: wires the base dir, node registry, engine, store, queue, worker thread,
 * WebSocket hub and HTTP listener together on one libuv loop, and shuts them down in order
 * on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "srv_auth.h"

#define SRV_STOPPED_MSG "weft stopped while this prompt was running"
/* Connections get at least this long to finish after a signal (and more than the header
 * timeout, so slow clients are closed by the HTTP layer itself). */
#define SRV_SHUTDOWN_GRACE_MS 5000
/* Seconds a verified API key stays verified without argon2 (see auth_config_t). */
#define SRV_KEY_CACHE_TTL_S 60

/* ------------------------------------------------------------------ start-up: pending rows */

int srv__finish_invalid(store_t *st, const char *prompt_id, const char *text)
{
    double now = srv__now_ms();
    json_t *d = json_new_object(), *m = json_new_array(), *msgs = json_new_array();
    json_t *outputs = json_new_object(), *meta = json_new_object();
    int rc = BASE_E_NOMEM;
    if (!d || !m || !msgs || !outputs || !meta)
        goto out;
    if (json_object_set(d, "prompt_id", json_new_string(prompt_id)) ||
        json_object_set(d, "node_id", json_new_null()) || json_object_set(d, "node_type", json_new_null()) ||
        json_object_set(d, "executed", json_new_array()) ||
        json_object_set(d, "exception_message", json_new_string(text)) ||
        json_object_set(d, "exception_type", json_new_string("weft.ValidationError")) ||
        json_object_set(d, "traceback", json_new_array()) ||
        json_object_set(d, "current_inputs", json_new_object()) ||
        json_object_set(d, "current_outputs", json_new_array()) ||
        json_object_set(d, "timestamp", json_new_int((int64_t)now)) ||
        json_array_push(m, json_new_string("execution_error")))
        goto out;
    rc = json_array_push(m, d);
    d = NULL; /* taken */
    if (rc)
        goto out;
    rc = json_array_push(msgs, m);
    m = NULL;
    if (rc)
        goto out;
    rc = store_finish(st, prompt_id, STORE_ERROR, now, outputs, msgs, meta, text);
out:
    json_free(d);
    json_free(m);
    json_free(msgs);
    json_free(outputs);
    json_free(meta);
    return rc;
}

/* "message: details" of a failed validation, for the history entry. */
static char *validation_text(const graph_validation_t *v)
{
    const char *msg = json_str(json_object_get(v->error, "message"));
    const char *det = json_str(json_object_get(v->error, "details"));
    base_buf_t b = BASE_BUF_INIT;
    if (base_buf_printf(&b, "The prompt no longer validates: %s", msg ? msg : "invalid prompt") ||
        (det && *det && base_buf_printf(&b, ": %s", det))) {
        base_buf_free(&b);
        return NULL;
    }
    return base_buf_take(&b);
}

/* How many prompts of a stored prompt's owner may run at once: by the owner's role now
 * (users lists them); no cap for an owner the user table does not know (--no-auth's "local",
 * or "" for prompts from before ownership). */
static unsigned owner_run_cap(const json_t *users, const char *owner)
{
    for (size_t i = 0; owner && *owner && i < json_len(users); i++) {
        const json_t *u = json_at(users, i);
        const char *name = json_str(json_object_get(u, "name")), *rn = json_str(json_object_get(u, "role"));
        auth_role_t role;
        if (name && rn && !strcmp(name, owner) && auth_role_from_name(rn, &role) == 0)
            return srv_role_run_cap(role);
    }
    return 0;
}

/* Re-validates one stored pending prompt against this build's nodes; an item on success,
 * NULL after recording why it cannot run (or on out of memory). */
static srv_item_t *revive(srv_t *s, store_prompt_t *p, const json_t *users)
{
    char err[256] = "";
    graph_t *g = NULL;
    graph_validation_t v = {0};
    srv_item_t *it = NULL;
    char *why = NULL;
    int rc = p->prompt ? graph_parse(p->prompt, &g, err, sizeof err) : BASE_E_GRAPH_FORMAT;
    if (rc == BASE_E_NOMEM)
        goto out;
    if (rc) {
        base_buf_t b = BASE_BUF_INIT;
        if (!base_buf_printf(&b, "The prompt no longer validates: %s", err[0] ? err : "no prompt stored"))
            why = base_buf_take(&b);
        base_buf_free(&b);
    } else {
        /* The stored outputs become the partial targets, so the same outputs run. */
        const json_t *targets = p->outputs_to_execute && p->outputs_to_execute->type == JSON_ARRAY
                                    ? p->outputs_to_execute
                                    : NULL;
        rc = graph_validate(g, s->reg, &s->env.env, targets, &v);
        if (rc == BASE_E_NOMEM)
            goto out;
        if (rc)
            why = validation_text(&v);
    }
    if (rc) {
        int frc = why ? srv__finish_invalid(s->store, p->prompt_id, why) : BASE_E_NOMEM;
        BASE_LOG(WARN, "pending prompt %s dropped: %s%s", p->prompt_id, why ? why : "out of memory",
                 frc ? " (and the store could not record it)" : "");
        goto out;
    }
    if (!(it = calloc(1, sizeof *it)))
        goto out;
    it->prompt_id = p->prompt_id;
    p->prompt_id = NULL;
    it->number = p->number;
    it->seq = p->seq;
    it->prompt = v.prompt;
    v.prompt = NULL;
    it->extra_data = p->extra_data ? p->extra_data : json_new_object();
    p->extra_data = NULL;
    it->outputs = v.outputs;
    it->n_outputs = v.n_outputs;
    v.outputs = NULL;
    v.n_outputs = 0;
    const char *cid = json_str(json_object_get(it->extra_data, "client_id"));
    it->client_id = cid ? strdup(cid) : NULL;
    it->graph = g;
    g = NULL;
    it->created_ms = p->created_ms;
    /* The owner survives the restart, or only ":any" scopes would see the prompt again. */
    snprintf(it->owner, sizeof it->owner, "%s", p->owner ? p->owner : "");
    it->run_cap = owner_run_cap(users, it->owner);
    if (!it->extra_data || (cid && !it->client_id)) {
        srv_item_free(it);
        it = NULL;
    }
out:
    free(why);
    graph_free(g);
    graph_validation_free(&v);
    return it;
}

/* Pending rows back into the in-memory queue, in (number, seq) order; the counter continues
 * above every number seen so new prompts queue behind them. */
static int reload_pending(srv_t *s)
{
    store_prompt_t *rows = NULL;
    size_t n = 0;
    int rc = store_list_pending(s->store, &rows, &n);
    if (rc)
        return rc;
    double top = -1;
    size_t revived = 0;
    json_t *users = n && s->auth ? auth_user_list(s->auth) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].number > top)
            top = rows[i].number;
        srv_item_t *it = rc ? NULL : revive(s, &rows[i], users);
        if (it && !(rc = srv_queue_push(&s->queue, it)))
            revived++;
        store_prompt_free(&rows[i]);
    }
    json_free(users);
    free(rows);
    store_prompt_t *last = NULL;
    size_t nl = 0;
    if (store_history_page(s->store, 1, -1, &last, &nl) == 0) {
        for (size_t i = 0; i < nl; i++) {
            if (last[i].number > top)
                top = last[i].number;
            store_prompt_free(&last[i]);
        }
        free(last);
    }
    s->counter = top >= 0 ? (double)(int64_t)top + 1 : 0;
    if (revived)
        BASE_LOG(INFO, "%zu pending prompt(s) restored from the store", revived);
    return rc;
}

/* ------------------------------------------------------------------ shutdown */

static uv_timer_t shutdown_timer;
static bool shutdown_timer_on, shutdown_abandoned;
/* A server whose connections outlived the grace period: kept reachable so that leak checkers
 * do not report the handles the process exit reclaims. */
static srv_t *abandoned_server;
static uv_loop_t *abandoned_loop;

static void on_grace_over(uv_timer_t *t)
{
    BASE_LOG(WARN, "connections still open %llu ms after shutdown began; exiting without them",
             (unsigned long long)uv_timer_get_repeat(t));
    /* Closing another layer's handles under it is unsafe; stop the loop and leave them. */
    shutdown_abandoned = true;
    uv_stop(t->loop);
}

static void stop_server(srv_t *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    http_stop(s);
    if (s->eng)
        eng_interrupt(s->eng, NULL);
    srv_queue_stop(&s->queue);
    /* The workers leave at the next interrupt point, after posting their DONE. */
    for (unsigned i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    s->n_workers = 0;
    srv__events_drain(s); /* an interrupted prompt goes back to PENDING here */
    if (s->ws) {
        ws_hub_free(s->ws);
        s->ws = NULL;
    }
    uv_close((uv_handle_t *)&s->ev_async, NULL);
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    if (uv_timer_init(s->loop, &shutdown_timer) == 0) {
        uint64_t grace = SRV_SHUTDOWN_GRACE_MS;
        if ((uint64_t)s->cfg.http.header_timeout_ms + 1000u > grace)
            grace = (uint64_t)s->cfg.http.header_timeout_ms + 1000u;
        shutdown_timer_on = true;
        uv_timer_start(&shutdown_timer, on_grace_over, grace, grace);
        uv_unref((uv_handle_t *)&shutdown_timer); /* only a safety net: never keeps the loop alive */
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    srv_t *s = h->data;
    if (!s->cfg.quiet)
        fprintf(stderr, "weft: %s received, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_server(s);
}

static void on_events(uv_async_t *a)
{
    srv__events_drain(a->data);
}

/* ------------------------------------------------------------------ the command */

/* Our codes, or libuv's (which the HTTP layer passes through unchanged). */
static const char *err_text(int rc)
{
    const char *t = base_strerror(rc);
    return strcmp(t, "unknown error") ? t : uv_strerror(rc);
}

static char *db_path(const char *base)
{
    base_buf_t b = BASE_BUF_INIT;
    if (base_buf_printf(&b, "%s/weft.db", base)) {
        base_buf_free(&b);
        return NULL;
    }
    return base_buf_take(&b);
}

int srv_cmd_serve(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    srv_t *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "weft serve: out of memory\n");
        return 1;
    }
    int rc = srv_config_parse(&s->cfg, argc, argv);
    if (rc) {
        free(s);
        return rc == 1 ? 0 : rc; /* 1: --help was printed */
    }
    if (s->cfg.quiet)
        base_log_threshold = BASE_LOG_WARN;
    s->started_ms = srv__now_ms();
    int exit_code = 1;
    bool queue_ok = false, ev_mu_ok = false, loop_ok = false;
    uv_loop_t *loop = NULL;
    char *dbp = NULL;

    if ((rc = srv_env_open(&s->env, s->cfg.base_dir)))
        goto out; /* srv_env_open printed why */
    if (s->cfg.model_memory_mb)
        node_models_set_budget(s->cfg.model_memory_mb << 20);
    if ((rc = node_registry_new(&s->reg)) || (rc = node_registry_add_builtins(s->reg))) {
        fprintf(stderr, "weft serve: node registry: %s\n", base_strerror(rc));
        goto out;
    }
    /* No ts_init here: libtorch loads on the first tensor call (tensor_loader.c), so the
     * server answers within milliseconds and stays small until a prompt computes. */
    /* --lanes N: N lane threads and N prompts at once (one worker each). */
    unsigned lanes = s->cfg.lanes ? s->cfg.lanes : 1;
    eng_config_t ec = {.reg = s->reg,
                       .env = &s->env.env,
                       .lanes = lanes > 1 ? lanes : 0,
                       .max_prompts = lanes,
                       .heavy_lanes = s->cfg.lanes_heavy};
    if ((rc = eng_new(&ec, &s->eng))) {
        fprintf(stderr, "weft serve: engine: %s\n", base_strerror(rc));
        goto out;
    }
    if (!(dbp = db_path(s->env.base_dir)) || (rc = store_open(dbp, &s->store))) {
        fprintf(stderr, "weft serve: cannot open the database %s: %s\n", dbp ? dbp : "", base_strerror(rc));
        goto out;
    }
    /* Users, keys and sessions share weft.db but have their own connection and tables. A
     * verified key stays cached at most SRV_KEY_CACHE_TTL_S; revocations and disabling drop
     * the cache at once, also when made by another process (the CLI). */
    auth_config_t ac;
    auth_config_init(&ac);
    ac.key_cache_ttl_s = SRV_KEY_CACHE_TTL_S;
    if ((rc = auth_open(dbp, &ac, &s->auth))) {
        fprintf(stderr, "weft serve: cannot open the users and keys in %s: %s\n", dbp, base_strerror(rc));
        goto out;
    }
    /* Also under --no-auth, so the same base dir later serves with authentication. */
    if ((rc = srv_auth_bootstrap(s->auth, s->env.base_dir, stdout)))
        goto out;
    if (s->cfg.no_auth && !s->cfg.quiet)
        fprintf(stderr, "weft: --no-auth: every request acts as admin 'local' (loopback only)\n");
    size_t recovered = 0;
    if ((rc = store_recover_running(s->store, SRV_STOPPED_MSG, srv__now_ms(), &recovered))) {
        fprintf(stderr, "weft serve: cannot recover interrupted prompts: %s\n", base_strerror(rc));
        goto out;
    }
    if ((rc = srv_queue_init(&s->queue)))
        goto out;
    queue_ok = true;
    if ((rc = reload_pending(s))) {
        fprintf(stderr, "weft serve: cannot reload the pending queue: %s\n", base_strerror(rc));
        goto out;
    }
    if (pthread_mutex_init(&s->ev_mu, NULL))
        goto out;
    ev_mu_ok = true;
    /* On the heap and referenced from s: an abandoned shutdown leaves it reachable. */
    if (!(loop = malloc(sizeof *loop)) || uv_loop_init(loop))
        goto out;
    loop_ok = true;
    s->loop = loop;
    uv_async_init(loop, &s->ev_async, on_events);
    s->ev_async.data = s;
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;

    if ((rc = ws_hub_new(s, &s->cfg.ws, &s->ws))) {
        fprintf(stderr, "weft serve: WebSocket hub: %s\n", err_text(rc));
        goto fail_loop;
    }
    if ((rc = http_listen(s, loop, s->cfg.listen, s->cfg.port, &s->cfg.http, srv_route))) {
        fprintf(stderr, "weft serve: cannot listen on %s:%d: %s\n", s->cfg.listen, s->cfg.port, err_text(rc));
        goto fail_loop;
    }
    if (!(s->workers = calloc(lanes, sizeof *s->workers))) {
        fprintf(stderr, "weft serve: out of memory\n");
        goto fail_loop;
    }
    for (unsigned i = 0; i < lanes; i++) {
        if (pthread_create(&s->workers[i], NULL, srv_worker_main, s)) {
            fprintf(stderr, "weft serve: cannot start the worker threads\n");
            goto fail_loop;
        }
        s->n_workers++;
    }
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);

    int port = http_bound_port(s);
    bool v6 = strchr(s->cfg.listen, ':') != NULL;
    printf("weft: listening on http://%s%s%s:%d\n", v6 ? "[" : "", s->cfg.listen, v6 ? "]" : "",
           port >= 0 ? port : s->cfg.port);
    fflush(stdout);

    uv_run(loop, UV_RUN_DEFAULT);
    exit_code = 0;
    goto close_loop;

fail_loop:
    stop_server(s); /* unwinds what start-up created; the closes complete below */
close_loop:
    uv_run(loop, UV_RUN_DEFAULT);
    if (shutdown_abandoned) {
        /* The loop still holds another layer's handles: they go with the process. */
        abandoned_server = s;
        if (queue_ok)
            srv_queue_destroy(&s->queue);
        store_close(s->store);
        s->store = NULL;
        auth_close(s->auth);
        s->auth = NULL;
        free(dbp);
        return exit_code;
    }
    if (shutdown_timer_on) {
        uv_close((uv_handle_t *)&shutdown_timer, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        shutdown_timer_on = false;
    }
    if (uv_loop_close(loop)) {
        BASE_LOG(WARN, "event loop not empty at exit");
        abandoned_loop = loop; /* its handles may still point into it */
        loop = NULL;
    }
    loop_ok = false;
out:
    if (loop_ok) /* start-up failed before any handle existed */
        uv_loop_close(loop);
    free(loop);
    if (ev_mu_ok)
        pthread_mutex_destroy(&s->ev_mu);
    if (queue_ok)
        srv_queue_destroy(&s->queue);
    store_close(s->store);
    auth_close(s->auth);
    eng_free(s->eng);
    node_registry_free(s->reg);
    srv_env_close(&s->env);
    free(s->cur_prompt_id);
    free(s->cur_client_id);
    free(s->cur_node);
    free(s->workers);
    free(dbp);
    free(s);
    return exit_code;
}
